import KilnBasics

/// `rmsnorm(%x: [..., C], %w: [C]) {eps}` — root mean square layer normalisation (Zhang & Sennrich 2019):
/// x / √(mean(x²) + eps) · w, with no centring and no bias (as PyTorch's `nn.RMSNorm` and Llama).
/// In the language: `rmsnorm(x, eps: 1e-6)`, which creates `NAME.weight` (ones).
public struct RMSNorm: Op, LayerBuiltin {
    public init() {}
    public static let eps = AttrKey<Double>("eps")
    public let name = "rmsnorm"
    public let summary = "x `[..., C]`, w `[C]` → x's type: RMSNorm over the last axis (Zhang & Sennrich 2019), x / √(mean(x²) + eps) · w"
    public let example = """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %w = param {init: ones} : f32[4]
          %0 = rmsnorm(%x, %w) {eps: 1e-06} : f32[B, 4]
          output y = %0
        }
        """
    public let arity = 2...2
    public var attributes: [AttrSpec] { [Self.eps.spec] }
    public let traits: OpTraits = [.rowwise, .normalization]
    public var layerArguments: [(name: String, defaultValue: AttrValue)] { [("eps", .float(1e-6))] }
    public func layerParameters(_ x: TensorType) throws -> [LayerParameter] {
        guard let c = x.shape.last, c.constValue != nil else { throw TypeError("rmsnorm needs a tensor whose last dimension is a constant, got \(x)") }
        return [LayerParameter("weight", [c], .ones)]
    }
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (x, w) = (ops[0], ops[1])
        try requireFloat(x, "rmsnorm input")
        guard let c = x.shape.last, w.shape.dims == [c] else { throw TypeError("rmsnorm weight must have shape [\(x.shape.last?.description ?? "?")], got \(w.shape)") }
        let eps = attrs[Self.eps]
        guard eps > 0, eps.isFinite else { throw TypeError("eps must be positive, got \(eps)") }
        return x
    }
    /// With r = 1/√(mean(x²) + eps) and g = dy·w: dx = r·(g − x·r²·mean(g·x)), dw = Σ rows dy·x·r.
    public func differentiate(_ d: inout Differentiation) throws {
        let eps = d.node.attrs[Self.eps.name]!, o = d.operands, g = d.gradient
        if d.wants(0) { d.give(0, d.emit(.rmsnormGradInput, [g, o[0], o[1]], [("eps", eps)])) }
        if d.wants(1) { d.give(1, d.emit(.rmsnormGradWeight, [g, o[0]], [("eps", eps)])) }
    }
    /// x², the sum, x·r and ·w per element.
    public func flops(_ c: FlopContext) -> Int { 4 * c.out }
}

/// `rmsnorm_grad_input(%dy, %x, %w) {eps}` — dx of `rmsnorm` (and + acc after `fuse-grad-acc`).
public struct RMSNormGradInput: Op {
    public init() {}
    public let name = "rmsnorm_grad_input"
    public let summary = "dy, x, w (and acc, x's type, after `fuse-grad-acc`) → x's type: dx of rmsnorm (+ acc)"
    public let example = """
        graph G {
          dim B
          %dy = input : f32[B, 4]
          %x = input : f32[B, 4]
          %w = param {init: ones} : f32[4]
          %0 = rmsnorm_grad_input(%dy, %x, %w) {eps: 1e-06} : f32[B, 4]
          output d = %0
        }
        """
    public let arity = 3...4
    public var attributes: [AttrSpec] { [RMSNorm.eps.spec] }
    public let traits: OpTraits = [.gradient, .accumulates]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        guard ops[0] == ops[1], let c = ops[1].shape.last, ops[2].shape.dims == [c] else {
            throw TypeError("rmsnorm_grad_input: shapes \(ops[0].shape), \(ops[1].shape), \(ops[2].shape) do not match")
        }
        return ops[1]
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { 6 * c.out + c.accumulate }
}

/// `rmsnorm_grad_weight(%dy, %x) {eps} -> [C]` — Σ over rows of dy · x · r, the gain gradient of `rmsnorm`.
public struct RMSNormGradWeight: Op {
    public init() {}
    public let name = "rmsnorm_grad_weight"
    public let summary = "dy, x → `[C]`: Σ over rows of dy · x / √(mean(x²) + eps)"
    public let example = """
        graph G {
          dim B
          %dy = input : f32[B, 4]
          %x = input : f32[B, 4]
          %0 = rmsnorm_grad_weight(%dy, %x) {eps: 1e-06} : f32[4]
          output d = %0
        }
        """
    public let arity = 2...2
    public var attributes: [AttrSpec] { [RMSNorm.eps.spec] }
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        guard ops[0] == ops[1], let c = ops[1].shape.last else { throw TypeError("rmsnorm_grad_weight: shapes \(ops[0].shape) and \(ops[1].shape) do not match") }
        return TensorType(ops[1].dtype, [c])
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { 4 * c.count(0) }
}

extension OpKind {
    public static let rmsnorm = OpKind("rmsnorm")
    public static let rmsnormGradInput = OpKind("rmsnorm_grad_input")
    public static let rmsnormGradWeight = OpKind("rmsnorm_grad_weight")
}
