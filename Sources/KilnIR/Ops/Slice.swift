import KilnBasics

/// The parts of a tensor around one axis: P, the product of the dims before it; the axis; Q, the product after.
public func aroundAxis(_ t: TensorType, _ axis: Int) -> (before: [Dim], after: [Dim]) {
    (Array(t.shape.dims[..<axis]), Array(t.shape.dims[(axis + 1)...]))
}

/// An axis attribute from the end when negative, checked against a rank.
public func resolveAxis(_ a: Int, rank: Int, _ what: String) throws -> Int {
    let k = a < 0 ? a + rank : a
    guard k >= 0, k < rank else { throw TypeError("\(what): \(a) is not an axis of a rank-\(rank) tensor") }
    return k
}

/// `slice(%x) {axis, start, size}` — positions start ..< start + size of one axis (size a number or a bounded dim:
/// the first T columns of a table), a copy.
public struct Slice: Op {
    public init() {}
    public static let axis = AttrKey<Int>("axis")
    public static let start = AttrKey<Int>("start", default: 0)
    public static let size = AttrKey<Dim>("size")
    public let name = "slice"
    public let summary = "x → x with axis `axis` (negative: from the end) cut to positions start ..< start + size (size a number or a bounded dim), a copy"
    public let example = """
        graph G {
          dim T <= 8
          %e = param {init: normal, std: 0.02} : f32[3, 8]
          %0 = slice(%e) {axis: 1, start: 0, size: T} : f32[3, T]
          output y = %0
        }
        """
    public let arity = 1...1
    public var attributes: [AttrSpec] { [Self.axis.spec, Self.start.spec, Self.size.spec] }
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let x = ops[0], k = try resolveAxis(attrs[Self.axis], rank: x.shape.rank, "slice")
        let (start, size) = (attrs[Self.start], attrs[Self.size])
        guard let n = x.shape.dims[k].constValue ?? env.bound(x.shape.dims[k]) else { throw TypeError("slice: axis \(k) of \(x.shape) has no bound") }
        guard let m = size.constValue ?? env.bound(size) else { throw TypeError("slice: the size \(size) has no upper bound") }
        guard start >= 0, m >= 1, start + m <= n else {
            throw TypeError("slice: positions \(start) ..< \(start) + \(size) (up to \(start + m)) do not fit axis \(k) of \(x.shape)")
        }
        guard x.shape.dims[k].constValue != nil || (start == 0 && size == x.shape.dims[k]) else {
            throw TypeError("slice: axis \(k) of \(x.shape) is symbolic; slice a constant axis")
        }
        var d = x.shape.dims
        d[k] = size
        return TensorType(x.dtype, d)
    }
    /// The gradient in the sliced positions, zeros elsewhere (`slice_grad`).
    public func differentiate(_ d: inout Differentiation) throws {
        if d.wants(0) { d.give(0, d.emit(.sliceGrad, [d.gradient, d.operands[0]], d.node.attrs.entries)) }
    }
    public func flops(_ c: FlopContext) -> Int { 0 }
}

/// `slice_grad(%dy, %x) {axis, start, size}` — x's type: dy in the positions `slice` took, zeros elsewhere.
public struct SliceGrad: Op {
    public init() {}
    public let name = "slice_grad"
    public let summary = "dy, x → x's type: dy at the positions `slice` took from x, zeros elsewhere"
    public let example = """
        graph G {
          dim T <= 8
          %dy = input : f32[3, T]
          %e = param {init: normal, std: 0.02} : f32[3, 8]
          %0 = slice_grad(%dy, %e) {axis: 1, start: 0, size: T} : f32[3, 8]
          output d = %0
        }
        """
    public let arity = 2...2
    public var attributes: [AttrSpec] { [Slice.axis.spec, Slice.start.spec, Slice.size.spec] }
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let y = try Slice().inferType([ops[1]], attrs, env)
        guard ops[0] == y else { throw TypeError("slice_grad: dy \(ops[0]) does not match \(y)") }
        return ops[1]
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { 0 }
}

/// `concat(%a, %b) {axis}` — a and b joined along a constant axis (the other dims equal), a copy.
public struct Concat: Op {
    public init() {}
    public static let axis = AttrKey<Int>("axis")
    public let name = "concat"
    public let summary = "a, b → a and b joined along the constant axis `axis` (negative: from the end; the other dims equal), a copy"
    public let example = """
        graph G {
          dim B
          %a = input : f32[B, 2, 4]
          %b = input : f32[B, 3, 4]
          %0 = concat(%a, %b) {axis: 1} : f32[B, 5, 4]
          output y = %0
        }
        """
    public let arity = 2...2
    public var attributes: [AttrSpec] { [Self.axis.spec] }
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (a, b) = (ops[0], ops[1])
        guard a.dtype == b.dtype, a.shape.rank == b.shape.rank else { throw TypeError("concat: \(a) and \(b) differ in dtype or rank") }
        let k = try resolveAxis(attrs[Self.axis], rank: a.shape.rank, "concat")
        guard aroundAxis(a, k) == aroundAxis(b, k) else { throw TypeError("concat: \(a.shape) and \(b.shape) differ outside axis \(k)") }
        guard let n = a.shape.dims[k].constValue, let m = b.shape.dims[k].constValue else {
            throw TypeError("concat: axis \(k) of \(a.shape) and \(b.shape) must be constant")
        }
        var d = a.shape.dims
        d[k] = .const(n + m)
        return TensorType(a.dtype, d)
    }
    /// Each operand gets its part of the gradient (`slice`).
    public func differentiate(_ d: inout Differentiation) throws {
        let k = try resolveAxis(d.node.attrs[Self.axis], rank: d.node.type.shape.rank, "concat")
        let n = d.type(d.operands[0]).shape.dims[k].constValue!
        for (i, start) in [(0, 0), (1, n)] where d.wants(i) {
            let size = d.type(d.operands[i]).shape.dims[k]
            d.give(i, d.emit(.slice, [d.gradient], [(Slice.axis.name, .int(k)), (Slice.start.name, .int(start)), (Slice.size.name, size.attrValue)]))
        }
    }
    public func flops(_ c: FlopContext) -> Int { 0 }
}

/// `gather(%x, %index: i32) {axis}` — along one constant axis, the entries of x at the positions index gives
/// (PyTorch's `gather`): index has x's dims but along the axis, and out[..., m, ...] = x[..., index[..., m, ...], ...].
public struct Gather: Op {
    public init() {}
    public static let axis = AttrKey<Int>("axis")
    public let name = "gather"
    public let summary = "x, index `i32` (x's dims but along `axis`) → index's shape: x's entries at the positions index gives along the constant axis `axis` (PyTorch's `gather`)"
    public let example = """
        graph G {
          dim B
          %x = input : f32[B, 5, 4]
          %i = input {role: positions, limit: 5} : i32[B, 2, 4]
          %0 = gather(%x, %i) {axis: 1} : f32[B, 2, 4]
          output y = %0
        }
        """
    public let arity = 2...2
    public var attributes: [AttrSpec] { [Self.axis.spec] }
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (x, index) = (ops[0], ops[1])
        try requireFloat(x, "gather's source")
        try requireInteger(index, "gather's index")
        guard x.shape.rank == index.shape.rank else { throw TypeError("gather: the index \(index.shape) must have the rank of \(x.shape)") }
        let k = try resolveAxis(attrs[Self.axis], rank: x.shape.rank, "gather")
        guard x.shape.dims[k].constValue != nil else { throw TypeError("gather: axis \(k) of \(x.shape) must be constant (the index's limit)") }
        guard aroundAxis(x, k) == aroundAxis(index, k) else { throw TypeError("gather: the index \(index.shape) differs from \(x.shape) outside axis \(k)") }
        return TensorType(x.dtype, index.shape.dims)
    }
    /// Each gathered entry's gradient added back at its position (`gather_grad`).
    public func differentiate(_ d: inout Differentiation) throws {
        if d.wants(0) { d.give(0, d.emit(.gatherGrad, [d.gradient, d.operands[1], d.operands[0]], d.node.attrs.entries)) }
    }
    public func flops(_ c: FlopContext) -> Int { 0 }
}

/// `gather_grad(%dy, %index, %x) {axis}` — x's type: zeros, with each dy entry added at the position `gather` read.
public struct GatherGrad: Op {
    public init() {}
    public let name = "gather_grad"
    public let summary = "dy, index, x → x's type: every dy entry added at the position of x that `gather` read it from"
    public let example = """
        graph G {
          dim B
          %dy = input : f32[B, 2, 4]
          %i = input {role: positions, limit: 5} : i32[B, 2, 4]
          %x = input : f32[B, 5, 4]
          %0 = gather_grad(%dy, %i, %x) {axis: 1} : f32[B, 5, 4]
          output d = %0
        }
        """
    public let arity = 3...3
    public var attributes: [AttrSpec] { [Gather.axis.spec] }
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let y = try Gather().inferType([ops[2], ops[1]], attrs, env)
        guard ops[0] == y else { throw TypeError("gather_grad: dy \(ops[0]) does not match \(y)") }
        return ops[2]
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    /// One addition per gathered entry.
    public func flops(_ c: FlopContext) -> Int { c.count(0) }
}

extension OpKind {
    public static let gather = OpKind("gather")
    public static let gatherGrad = OpKind("gather_grad")
    public static let slice = OpKind("slice")
    public static let sliceGrad = OpKind("slice_grad")
    public static let concat = OpKind("concat")
}
