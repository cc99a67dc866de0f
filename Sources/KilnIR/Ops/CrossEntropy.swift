import KilnBasics

/// `cross_entropy(%logits: [..., V], %targets: i32[...]) -> f32[]` — the mean over positions of
/// logsumexp(logits) − logits[target].
public struct CrossEntropy: Op {
    public init() {}
    public let name = "cross_entropy"
    public let summary = "logits `[..., V]`, targets `i32[...]` → `f32[]`: mean over positions of −log softmax(logits)[target]"
    public let example = """
        graph G {
          dim B
          %logits = input : f32[B, 5]
          %targets = input : i32[B]
          %0 = cross_entropy(%logits, %targets) : f32[]
          output loss = %0
        }
        """
    public let arity = 2...2
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        try Self.check(ops[0], ops[1])
        return TensorType(ops[0].dtype, [])
    }
    static func check(_ logits: TensorType, _ targets: TensorType) throws {
        try requireFloat(logits, "cross_entropy logits")
        guard targets.dtype == .i32 || targets.dtype == .i64 else { throw TypeError("cross_entropy targets must be integers, got \(targets)") }
        guard logits.shape.rank >= 1, Array(logits.shape.dims.dropLast()) == targets.shape.dims else {
            throw TypeError("cross_entropy: logits \(logits.shape) do not match targets \(targets.shape)")
        }
    }
    public func differentiate(_ d: inout Differentiation) throws {
        let o = d.operands
        if d.wants(0) { d.give(0, d.emit(.crossEntropyGrad, [o[0], o[1], d.gradient])) }
    }
    /// max, exp, sum and the log per logit.
    public func flops(_ c: FlopContext) -> Int { 5 * c.count(0) }
}

/// `cross_entropy_grad(%logits, %targets, %dloss: f32[])` — (softmax − onehot) · dloss / N.
public struct CrossEntropyGrad: Op {
    public init() {}
    public let name = "cross_entropy_grad"
    public let summary = "logits, targets, dloss `f32[]` → logits' type: (softmax(logits) − onehot(targets)) · dloss / N"
    public let example = """
        graph G {
          dim B
          %logits = input : f32[B, 5]
          %targets = input : i32[B]
          %dloss = input : f32[]
          %0 = cross_entropy_grad(%logits, %targets, %dloss) : f32[B, 5]
          output d = %0
        }
        """
    public let arity = 3...3
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        try CrossEntropy.check(ops[0], ops[1])
        guard ops[2].shape.rank == 0 else { throw TypeError("cross_entropy_grad needs a scalar dloss, got \(ops[2])") }
        return ops[0]
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { 5 * c.count(0) }
}

extension OpKind {
    public static let crossEntropy = OpKind("cross_entropy")
    public static let crossEntropyGrad = OpKind("cross_entropy_grad")
}
