import KilnBasics

/// `mean_pool(%x: [B, T, C], %mask: i32[B, T]?) -> [B, C]` — the mean over the sequence of each row: over the
/// positions whose mask is 1 (a sentence embedding that ignores padding), or over all T without a mask. A row
/// with no position gets zeros.
public struct MeanPool: Op {
    public init() {}
    public let name = "mean_pool"
    public let summary = "x `[B, T, C]`, mask `i32[B, T]`? → `[B, C]`: the mean over the positions whose mask is 1 (all without a mask); zeros for a row with none"
    public let example = """
        graph G {
          dim B
          dim T <= 8
          %x = input : f32[B, T, 4]
          %mask = input {role: mask} : i32[B, T]
          %0 = mean_pool(%x, %mask) : f32[B, 4]
          output y = %0
        }
        """
    public let arity = 1...2
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let x = ops[0]
        try requireFloat(x, "mean_pool's input")
        guard x.shape.rank == 3 else { throw TypeError("mean_pool expects [B, T, C], got \(x.shape)") }
        if ops.count == 2 {
            try requireInteger(ops[1], "mean_pool's mask")
            guard ops[1].shape.dims == Array(x.shape.dims.prefix(2)) else {
                throw TypeError("mean_pool's mask must be [\(x.shape.dims[0]), \(x.shape.dims[1])], got \(ops[1].shape)")
            }
        }
        return TensorType(x.dtype, [x.shape.dims[0], x.shape.dims[2]])
    }
    /// Each counted position gets dy / count.
    public func differentiate(_ d: inout Differentiation) throws {
        if d.wants(0) { d.give(0, d.emit(.meanPoolGrad, [d.gradient] + d.operands)) }
    }
    /// One add per element of x, one divide per result.
    public func flops(_ c: FlopContext) -> Int { c.count(0) + c.out }
}

/// `mean_pool_grad(%dy: [B, C], %x: [B, T, C], %mask?) -> [B, T, C]` — the gradient of `mean_pool`.
public struct MeanPoolGrad: Op {
    public init() {}
    public let name = "mean_pool_grad"
    public let summary = "dy `[B, C]`, x `[B, T, C]`, mask? → x's type: dy / count at the counted positions, zeros elsewhere"
    public let example = """
        graph G {
          dim B
          dim T <= 8
          %dy = input : f32[B, 4]
          %x = input : f32[B, T, 4]
          %0 = mean_pool_grad(%dy, %x) : f32[B, T, 4]
          output d = %0
        }
        """
    public let arity = 2...3
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let pooled = try MeanPool().inferType(Array(ops.dropFirst()), attrs, env)
        guard ops[0] == pooled else { throw TypeError("mean_pool_grad: dy \(ops[0]) does not match \(pooled)") }
        return ops[1]
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { c.out }
}

extension OpKind {
    public static let meanPool = OpKind("mean_pool")
    public static let meanPoolGrad = OpKind("mean_pool_grad")
}
