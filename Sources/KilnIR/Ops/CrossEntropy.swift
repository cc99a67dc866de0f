import KilnBasics

/// `cross_entropy(%logits: [..., V], %targets: i32[...]) {ignore?, smoothing} -> f32[]` — the mean over the
/// positions whose target is not `ignore` of −log softmax(logits)[target], or with label smoothing ε
/// (Szegedy et al. 2016, as PyTorch's `cross_entropy(label_smoothing: ε)`): (1 − ε)·that + ε·the mean over
/// classes of −log softmax. No counted position: 0.
public struct CrossEntropy: Op {
    public init() {}
    /// A target id that does not count (a padding label).
    public static let ignore = AttrKey<Int>("ignore", optional: true)
    /// Label smoothing ε in [0, 1).
    public static let smoothing = AttrKey<Double>("smoothing", default: 0)
    public let name = "cross_entropy"
    public let summary = "logits `[..., V]`, targets `i32[...]` → `f32[]`: mean over the positions whose target is not `ignore` of −log softmax(logits)[target], with label smoothing ε: (1 − ε)·that + ε·mean over classes of −log softmax"
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
    public var attributes: [AttrSpec] { [Self.ignore.spec, Self.smoothing.spec] }
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        try Self.check(ops[0], ops[1], attrs)
        return TensorType(ops[0].dtype, [])
    }
    static func check(_ logits: TensorType, _ targets: TensorType, _ attrs: Attributes) throws {
        let e = attrs[smoothing]
        guard e >= 0, e < 1 else { throw TypeError("cross_entropy smoothing must be in [0, 1), got \(e)") }
        try requireFloat(logits, "cross_entropy logits")
        guard targets.dtype == .i32 || targets.dtype == .i64 else { throw TypeError("cross_entropy targets must be integers, got \(targets)") }
        guard logits.shape.rank >= 1, Array(logits.shape.dims.dropLast()) == targets.shape.dims else {
            throw TypeError("cross_entropy: logits \(logits.shape) do not match targets \(targets.shape)")
        }
    }
    public func differentiate(_ d: inout Differentiation) throws {
        let o = d.operands
        if d.wants(0) { d.give(0, d.emit(.crossEntropyGrad, [o[0], o[1], d.gradient], d.node.attrs.entries)) }
    }
    /// max, exp, sum and the log per logit.
    public func flops(_ c: FlopContext) -> Int { 5 * c.count(0) }
}

/// `cross_entropy_grad(%logits, %targets, %dloss: f32[]) {ignore?, smoothing}` — (softmax − (1 − ε)·onehot − ε/V)
/// · dloss / N over the N counted positions, zeros at the ignored ones.
public struct CrossEntropyGrad: Op {
    public init() {}
    public let name = "cross_entropy_grad"
    public let summary = "logits, targets, dloss `f32[]` → logits' type: (softmax(logits) − (1 − ε)·onehot(targets) − ε/V) · dloss / N over the N counted positions, zeros at the ignored ones"
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
    public var attributes: [AttrSpec] { [CrossEntropy.ignore.spec, CrossEntropy.smoothing.spec] }
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        try CrossEntropy.check(ops[0], ops[1], attrs)
        guard ops[2].shape.rank == 0 else { throw TypeError("cross_entropy_grad needs a scalar dloss, got \(ops[2])") }
        return ops[0]
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { 5 * c.count(0) }
}

/// `mse(%prediction, %target) -> f32[]` — the mean over all elements of (prediction − target)².
public struct MeanSquaredError: Op {
    public init() {}
    public let name = "mse"
    public let summary = "prediction, target (one type) → `f32[]`: the mean over all elements of (prediction − target)²"
    public let example = """
        graph G {
          dim B
          %p = input : f32[B, 4]
          %t = input : f32[B, 4]
          %0 = mse(%p, %t) : f32[]
          output loss = %0
        }
        """
    public let arity = 2...2
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        try requireFloat(ops[0], "mse's prediction")
        guard ops[0] == ops[1] else { throw TypeError("mse: the target \(ops[1]) must have the prediction's type \(ops[0])") }
        return TensorType(ops[0].dtype, [])
    }
    /// d/dp = 2(p − t)/N; d/dt = −d/dp.
    public func differentiate(_ d: inout Differentiation) throws {
        guard d.wants(0) || d.wants(1) else { return }
        let dp = d.emit(.mseGrad, [d.operands[0], d.operands[1], d.gradient])
        if d.wants(0) { d.give(0, dp) }
        if d.wants(1) { d.give(1, d.emit(.scale, [dp], [(Scale.factor.name, .float(-1))])) }
    }
    public func flops(_ c: FlopContext) -> Int { 3 * c.count(0) }
}

/// `mse_grad(%prediction, %target, %dloss: f32[])` — 2·(prediction − target)·dloss / N.
public struct MeanSquaredErrorGrad: Op {
    public init() {}
    public let name = "mse_grad"
    public let summary = "prediction, target, dloss `f32[]` → the prediction's type: 2·(prediction − target)·dloss / N"
    public let example = """
        graph G {
          dim B
          %p = input : f32[B, 4]
          %t = input : f32[B, 4]
          %dloss = input : f32[]
          %0 = mse_grad(%p, %t, %dloss) : f32[B, 4]
          output d = %0
        }
        """
    public let arity = 3...3
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        _ = try MeanSquaredError().inferType(Array(ops.prefix(2)), attrs, env)
        guard ops[2].shape.rank == 0 else { throw TypeError("mse_grad needs a scalar dloss, got \(ops[2])") }
        return ops[0]
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { 3 * c.out }
}

extension OpKind {
    public static let mse = OpKind("mse")
    public static let mseGrad = OpKind("mse_grad")
    public static let crossEntropy = OpKind("cross_entropy")
    public static let crossEntropyGrad = OpKind("cross_entropy_grad")
}
