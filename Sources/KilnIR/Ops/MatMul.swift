import KilnBasics

/// `matmul(%a: [..., M, K], %b: [..., K, N] or [K, N])` — the matrix product over the last two axes, batched over
/// the leading ones (the same in both, or none in b: one matrix for every batch). The primitive tier's product.
public struct MatMul: Op {
    public init() {}
    public let name = "matmul"
    public let summary = "a `[..., M, K]`, b `[..., K, N]` (or `[K, N]`, shared by the batch) → `[..., M, N]`: the matrix product of the last two axes, batched over the leading ones"
    public let example = """
        graph G {
          dim B
          %a = input : f32[B, 3, 4]
          %b = input : f32[B, 4, 5]
          %0 = matmul(%a, %b) : f32[B, 3, 5]
          output y = %0
        }
        """
    public let arity = 2...2
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (a, b) = (ops[0], ops[1])
        try requireFloat(a, "matmul's first operand")
        guard a.dtype == b.dtype else { throw TypeError("matmul: dtypes differ: \(a) and \(b)") }
        guard a.shape.rank >= 2, b.shape.rank >= 2 else { throw TypeError("matmul needs matrices (rank 2 or more), got \(a.shape) and \(b.shape)") }
        let batch = Array(a.shape.dims.dropLast(2))
        guard b.shape.rank == 2 || Array(b.shape.dims.dropLast(2)) == batch else {
            throw TypeError("matmul: the batch dims of \(a.shape) and \(b.shape) differ")
        }
        let (k, k2) = (a.shape.dims[a.shape.rank - 1], b.shape.dims[b.shape.rank - 2])
        guard k == k2 else { throw TypeError("matmul: \(a.shape) times \(b.shape): inner dims \(k) vs \(k2) differ") }
        return TensorType(a.dtype, batch + [a.shape.dims[a.shape.rank - 2], b.shape.dims[b.shape.rank - 1]])
    }
    /// da = dc · bᵀ, db = aᵀ · dc (summed over the batch when b is shared): products and transposes again.
    public func differentiate(_ d: inout Differentiation) throws {
        let (a, b) = (d.operands[0], d.operands[1])
        if d.wants(0) { d.give(0, d.emit(.matmul, [d.gradient, d.emit(.transpose, [b])])) }
        if d.wants(1) {
            let g = d.emit(.matmul, [d.emit(.transpose, [a]), d.gradient])
            d.give(1, d.type(b).shape.rank == d.type(g).shape.rank ? g : d.emit(.sumTo, [g, b]))
        }
    }
    /// One multiply–add per output element and inner index.
    public func flops(_ c: FlopContext) -> Int { 2 * c.out * c.dim(c.operands[0].shape.dims.last!) }
}

/// `transpose(%x) {a, b}` — axes a and b swapped (negative: from the end; by default the last two).
public struct Transpose: Op {
    public init() {}
    public static let a = AttrKey<Int>("a", default: -2)
    public static let b = AttrKey<Int>("b", default: -1)
    public let name = "transpose"
    public let summary = "x → x with axes `a` and `b` swapped (negative: from the end; the last two by default), a copy"
    public let example = """
        graph G {
          dim B
          %x = input : f32[B, 3, 2, 4]
          %0 = transpose(%x) {a: 1, b: 2} : f32[B, 2, 3, 4]
          output y = %0
        }
        """
    public let arity = 1...1
    public var attributes: [AttrSpec] { [Self.a.spec, Self.b.spec] }
    public let traits: OpTraits = []
    /// The two axes, from the front, in increasing order.
    public static func axes(_ attrs: Attributes, rank: Int) throws -> (Int, Int) {
        let (a, b) = (attrs[Self.a], attrs[Self.b])
        let (x, y) = (a < 0 ? a + rank : a, b < 0 ? b + rank : b)
        guard x >= 0, x < rank, y >= 0, y < rank, x != y else { throw TypeError("transpose: axes \(a) and \(b) are not two axes of a rank-\(rank) tensor") }
        return (min(x, y), max(x, y))
    }
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let x = ops[0]
        try requireFloat(x, "transpose's input")
        let (a, b) = try Self.axes(attrs, rank: x.shape.rank)
        var d = x.shape.dims
        d.swapAt(a, b)
        return TensorType(x.dtype, d)
    }
    public func differentiate(_ d: inout Differentiation) throws {
        if d.wants(0) { d.give(0, d.emit(.transpose, [d.gradient], d.node.attrs.entries)) }
    }
    public func flops(_ c: FlopContext) -> Int { 0 }
}

/// `split_last(%x: [..., C]) {parts: n}` — the last axis as n parts: `[..., n, C / n]` (a view).
public struct SplitLast: Op, ViewDefinition {
    public init() {}
    public static let parts = AttrKey<Int>("parts")
    public let name = "split_last"
    public let summary = "x `[..., C]` → `[..., n, C / n]`: the last axis cut into `parts` n (attention's heads), a view"
    public let example = """
        graph G {
          dim B
          %x = input : f32[B, 6]
          %0 = split_last(%x) {parts: 2} : f32[B, 2, 3]
          output y = %0
        }
        """
    public let arity = 1...1
    public var attributes: [AttrSpec] { [Self.parts.spec] }
    public let traits: OpTraits = [.view]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let x = ops[0], n = attrs[Self.parts]
        guard let c = x.shape.last?.constValue, n >= 1, c % n == 0 else {
            throw TypeError("split_last: the last axis of \(x.shape) does not split into \(n) parts")
        }
        return TensorType(x.dtype, Array(x.shape.dims.dropLast()) + [.const(n), .const(c / n)])
    }
    public func differentiate(_ d: inout Differentiation) throws {
        if d.wants(0) { d.give(0, d.emit(.mergeLast, [d.gradient])) }
    }
    public func flops(_ c: FlopContext) -> Int { 0 }
    public func viewOffset(_ n: Node) -> SizeExpr { SizeExpr(constant: 0) }
}

/// `merge_last(%x: [..., n, D])` — the last two axes as one: `[..., n · D]` (a view).
public struct MergeLast: Op, ViewDefinition {
    public init() {}
    public let name = "merge_last"
    public let summary = "x `[..., n, D]` → `[..., n · D]`: the last two axes as one (heads back to channels), a view"
    public let example = """
        graph G {
          dim B
          %x = input : f32[B, 2, 3]
          %0 = merge_last(%x) : f32[B, 6]
          output y = %0
        }
        """
    public let arity = 1...1
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = [.view]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let x = ops[0], d = x.shape.dims
        guard d.count >= 2, let n = d[d.count - 2].constValue, let m = d[d.count - 1].constValue else {
            throw TypeError("merge_last needs its last two axes constant, got \(x.shape)")
        }
        return TensorType(x.dtype, Array(d.dropLast(2)) + [.const(n * m)])
    }
    public func differentiate(_ d: inout Differentiation) throws {
        let n = d.type(d.operands[0]).shape.dims.dropLast().last!.constValue!
        if d.wants(0) { d.give(0, d.emit(.splitLast, [d.gradient], [(SplitLast.parts.name, .int(n))])) }
    }
    public func flops(_ c: FlopContext) -> Int { 0 }
    public func viewOffset(_ n: Node) -> SizeExpr { SizeExpr(constant: 0) }
}

/// `unsqueeze(%x) {axis: k}` — x with a new axis of 1 at k (negative: from the end, −1 appends): a view, so that a
/// vector broadcasts as a column (`unsqueeze(range(T), -1) >= range(T)`, a causal mask).
public struct Unsqueeze: Op, ViewDefinition {
    public init() {}
    public static let axis = AttrKey<Int>("axis")
    public let name = "unsqueeze"
    public let summary = "x → x with a new axis of size 1 at `axis` (negative: from the end, −1 appends), a view"
    public let example = """
        graph G {
          dim T <= 8
          %x = input : f32[T]
          %0 = unsqueeze(%x) {axis: -1} : f32[T, 1]
          output y = %0
        }
        """
    public let arity = 1...1
    public var attributes: [AttrSpec] { [Self.axis.spec] }
    public let traits: OpTraits = [.view]
    /// The new axis's position in the result.
    public static func position(_ attrs: Attributes, rank: Int) throws -> Int {
        let a = attrs[Self.axis], k = a < 0 ? a + rank + 1 : a
        guard k >= 0, k <= rank else { throw TypeError("unsqueeze: \(a) is not an axis position of a rank-\(rank) tensor") }
        return k
    }
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        var d = ops[0].shape.dims
        d.insert(.const(1), at: try Self.position(attrs, rank: d.count))
        return TensorType(ops[0].dtype, d)
    }
    public func differentiate(_ d: inout Differentiation) throws {
        let k = try Self.position(d.node.attrs, rank: d.type(d.operands[0]).shape.rank)
        if d.wants(0) { d.give(0, d.emit(.squeeze, [d.gradient], [(Squeeze.axis.name, .int(k))])) }
    }
    public func flops(_ c: FlopContext) -> Int { 0 }
    public func viewOffset(_ n: Node) -> SizeExpr { SizeExpr(constant: 0) }
}

/// `squeeze(%x) {axis: k}` — x without its axis k, which is 1 (negative: from the end): a view.
public struct Squeeze: Op, ViewDefinition {
    public init() {}
    public static let axis = AttrKey<Int>("axis")
    public let name = "squeeze"
    public let summary = "x → x without its axis `axis` of size 1 (negative: from the end), a view"
    public let example = """
        graph G {
          dim B
          %x = input : f32[B, 1, 4]
          %0 = squeeze(%x) {axis: 1} : f32[B, 4]
          output y = %0
        }
        """
    public let arity = 1...1
    public var attributes: [AttrSpec] { [Self.axis.spec] }
    public let traits: OpTraits = [.view]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        var d = ops[0].shape.dims
        let a = attrs[Self.axis], k = a < 0 ? a + d.count : a
        guard k >= 0, k < d.count, d[k] == .const(1) else { throw TypeError("squeeze: axis \(a) of \(ops[0].shape) is not of size 1") }
        d.remove(at: k)
        return TensorType(ops[0].dtype, d)
    }
    public func differentiate(_ d: inout Differentiation) throws {
        let a = d.node.attrs[Self.axis], rank = d.type(d.operands[0]).shape.rank
        if d.wants(0) { d.give(0, d.emit(.unsqueeze, [d.gradient], [(Unsqueeze.axis.name, .int(a < 0 ? a + rank : a))])) }
    }
    public func flops(_ c: FlopContext) -> Int { 0 }
    public func viewOffset(_ n: Node) -> SizeExpr { SizeExpr(constant: 0) }
}

extension OpKind {
    public static let matmul = OpKind("matmul")
    public static let transpose = OpKind("transpose")
    public static let splitLast = OpKind("split_last")
    public static let mergeLast = OpKind("merge_last")
    public static let unsqueeze = OpKind("unsqueeze")
    public static let squeeze = OpKind("squeeze")
}
