import KilnBasics

/// `slice_rows(%table: [N, C]) {rows: T} -> [T, C]` — the first `rows` rows (a view, no copy): learned
/// positions are the first T rows of their table.
public struct SliceRows: Op, ViewDefinition {
    public init() {}
    public static let rows = AttrKey<Dim>("rows")
    public let name = "slice_rows"
    public let summary = "table `[N, ...]` → `[rows, ...]`: the first rows (a view, no copy)"
    public let example = """
        graph G {
          dim T <= 8
          %p = param {init: normal, std: 0.02} : f32[8, 4]
          %0 = slice_rows(%p) {rows: T} : f32[T, 4]
          output y = %0
        }
        """
    public let arity = 1...1
    public var attributes: [AttrSpec] { [Self.rows.spec] }
    public let traits: OpTraits = [.view]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let t = ops[0], rows = attrs[Self.rows]
        guard t.shape.rank >= 1 else { throw TypeError("slice_rows needs a tensor of rank ≥ 1") }
        if let b = env.bound(rows), let n = env.bound(t.shape.dims[0]), b > n {
            throw TypeError("cannot take \(rows) rows (up to \(b)) from a table of \(t.shape.dims[0]) rows")
        }
        if env.bound(rows) == nil { throw TypeError("slice_rows: dim \(rows) has no upper bound") }
        return TensorType(t.dtype, [rows] + t.shape.dims.dropFirst())
    }
    /// The first rows get the gradient, the rest zeros.
    public func differentiate(_ d: inout Differentiation) throws {
        if d.wants(0) { d.give(0, d.emit(.padRows, [d.gradient, d.operands[0]])) }
    }
    public func flops(_ c: FlopContext) -> Int { 0 }
    public func viewOffset(_ n: Node) -> SizeExpr { SizeExpr(constant: 0) }
}

/// `pad_rows(%dy: [T, C], %table: [N, C]) -> [N, C]` — the gradient of `slice_rows`.
public struct PadRows: Op {
    public init() {}
    public let name = "pad_rows"
    public let summary = "dy `[T, C]`, table `[N, C]` → `[N, C]`: dy in the first T rows, zeros after"
    public let example = """
        graph G {
          dim T <= 8
          %dy = input : f32[T, 4]
          %p = param {init: zeros} : f32[8, 4]
          %0 = pad_rows(%dy, %p) : f32[8, 4]
          output d = %0
        }
        """
    public let arity = 2...2
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (dy, table) = (ops[0], ops[1])
        guard dy.shape.rank == table.shape.rank, dy.shape.rank >= 1, Array(dy.shape.dims.dropFirst()) == Array(table.shape.dims.dropFirst()) else {
            throw TypeError("pad_rows: \(dy.shape) does not fit in \(table.shape)")
        }
        return table
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { 0 }
}

/// `select(%x: [N, ...]) {index: i} -> [...]` — slice i of the leading dim (a view, no copy).
public struct Select: Op, ViewDefinition {
    public init() {}
    public static let index = AttrKey<Int>("index")
    public let name = "select"
    public let summary = "x `[N, ...]` → `[...]`: slice `index` of the leading dim (a view)"
    public let example = """
        graph G {
          dim B
          %x = input : f32[3, B, 4]
          %0 = select(%x) {index: 1} : f32[B, 4]
          output y = %0
        }
        """
    public let arity = 1...1
    public var attributes: [AttrSpec] { [Self.index.spec] }
    public let traits: OpTraits = [.view, .afterAutodiff]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let i = attrs[Self.index]
        guard let n = ops[0].shape.dims.first?.constValue, i >= 0, i < n else {
            throw TypeError("select: index out of range for \(ops[0].shape)")
        }
        return TensorType(ops[0].dtype, Array(ops[0].shape.dims.dropFirst()))
    }
    /// Selects appear in backward graphs only (the slices of the all-gradients attention backward, the
    /// merged projections of inference graphs): they are not differentiated.
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { 0 }
    public func viewOffset(_ n: Node) -> SizeExpr { n.type.shape.elementCount * .const(n.attrs[Self.index]) }
}

extension OpKind {
    public static let sliceRows = OpKind("slice_rows")
    public static let padRows = OpKind("pad_rows")
    public static let select = OpKind("select")
}

/// `take(%x) {axis, index}` — the slice at `index` of one axis, which the result no longer has: the last
/// position of a sequence (`{axis: 1, index: -1}`, a prefill's logits) or the first (`{axis: 1, index: 0}`,
/// first-token pooling). A negative index counts from the end.
public struct Take: Op {
    public init() {}
    public static let axis = AttrKey<Int>("axis")
    public static let index = AttrKey<Int>("index")
    public let name = "take"
    public let summary = "x → x without `axis`: the slice at `index` of that axis (negative: from the end), e.g. the last or first position"
    public let example = """
        graph G {
          dim B
          dim T <= 8
          %x = input : f32[B, T, 4]
          %0 = take(%x) {axis: 1, index: -1} : f32[B, 4]
          output y = %0
        }
        """
    public let arity = 1...1
    public var attributes: [AttrSpec] { [Self.axis.spec, Self.index.spec] }
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let x = ops[0], axis = attrs[Self.axis], index = attrs[Self.index]
        guard axis >= 0, axis < x.shape.rank else { throw TypeError("take: axis \(axis) is not an axis of \(x.shape)") }
        let d = x.shape.dims[axis]
        if let n = d.constValue {
            guard index >= -n, index < n else { throw TypeError("take: index \(index) is outside dim \(d)") }
        } else {
            guard index == 0 || index == -1 else { throw TypeError("take: only index 0 or -1 of the symbolic dim \(d)") }
        }
        var dims = x.shape.dims
        dims.remove(at: axis)
        return TensorType(x.dtype, dims)
    }
    public func differentiate(_ d: inout Differentiation) throws {
        if d.wants(0) {
            d.give(0, d.emit(.takeGrad, [d.gradient, d.operands[0]], [(Self.axis.name, .int(d.node.attrs[Self.axis])), (Self.index.name, .int(d.node.attrs[Self.index]))]))
        }
    }
    public func flops(_ c: FlopContext) -> Int { 0 }
}

/// `take_grad(%dy, %x) {axis, index}` — the gradient of `take`: dy at that slice of x's shape, zeros elsewhere.
public struct TakeGrad: Op {
    public init() {}
    public let name = "take_grad"
    public let summary = "dy, x → x's type: dy at slice `index` of `axis`, zeros elsewhere"
    public let example = """
        graph G {
          dim B
          dim T <= 8
          %dy = input : f32[B, 4]
          %x = input : f32[B, T, 4]
          %0 = take_grad(%dy, %x) {axis: 1, index: 0} : f32[B, T, 4]
          output d = %0
        }
        """
    public let arity = 2...2
    public var attributes: [AttrSpec] { [Take.axis.spec, Take.index.spec] }
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let sliced = try Take().inferType([ops[1]], attrs, env)
        guard ops[0] == sliced else { throw TypeError("take_grad: dy \(ops[0]) does not match the slice \(sliced)") }
        return ops[1]
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { 0 }
}

extension OpKind {
    public static let take = OpKind("take")
    public static let takeGrad = OpKind("take_grad")
}

/// `shift(%x: [B, T, ...]) {steps}` — x moved `steps` positions later along axis 1 (earlier when negative),
/// zeros where nothing moves in: out[:, t] = x[:, t - steps]. With steps 1 it gives each position its
/// predecessor's value (an LSTM's h_{t-1}); its gradient is the shift the other way.
public struct Shift: Op {
    public init() {}
    public static let steps = AttrKey<Int>("steps")
    public let name = "shift"
    public let summary = "x `[B, T, ...]` → x's type: out[:, t] = x[:, t − steps] along axis 1, zeros where t − steps is outside 0 … T-1"
    public let example = """
        graph G {
          dim B
          dim T <= 8
          %x = input : f32[B, T, 4]
          %0 = shift(%x) {steps: 1} : f32[B, T, 4]
          output y = %0
        }
        """
    public let arity = 1...1
    public var attributes: [AttrSpec] { [Self.steps.spec] }
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        guard ops[0].shape.rank >= 2 else { throw TypeError("shift needs a tensor of rank ≥ 2 (axis 1 is shifted), got \(ops[0])") }
        return ops[0]
    }
    public func differentiate(_ d: inout Differentiation) throws {
        if d.wants(0) { d.give(0, d.emit(.shift, [d.gradient], [(Self.steps.name, .int(-d.node.attrs[Self.steps]))])) }
    }
    public func flops(_ c: FlopContext) -> Int { 0 }
}

extension OpKind {
    public static let shift = OpKind("shift")
}
