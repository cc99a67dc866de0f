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

/// `transpose(%x: [..., M, N])` — the last two axes swapped: `[..., N, M]`.
public struct Transpose: Op {
    public init() {}
    public let name = "transpose"
    public let summary = "x `[..., M, N]` → `[..., N, M]`: the last two axes swapped (a copy)"
    public let example = """
        graph G {
          dim B
          %x = input : f32[B, 3, 4]
          %0 = transpose(%x) : f32[B, 4, 3]
          output y = %0
        }
        """
    public let arity = 1...1
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let x = ops[0]
        try requireFloat(x, "transpose's input")
        guard x.shape.rank >= 2 else { throw TypeError("transpose needs rank 2 or more, got \(x.shape)") }
        var d = x.shape.dims
        d.swapAt(d.count - 1, d.count - 2)
        return TensorType(x.dtype, d)
    }
    public func differentiate(_ d: inout Differentiation) throws {
        if d.wants(0) { d.give(0, d.emit(.transpose, [d.gradient])) }
    }
    public func flops(_ c: FlopContext) -> Int { 0 }
}

extension OpKind {
    public static let matmul = OpKind("matmul")
    public static let transpose = OpKind("transpose")
}
