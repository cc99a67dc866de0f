import KilnBasics

/// `layernorm(%x: [..., C], %w: [C], %b: [C]) {eps}` — layer normalisation over the last axis
/// (Ba et al. 2016), with the biased variance: (x − mean) / √(var + eps) · w + b.
public struct LayerNorm: Op, LayerBuiltin {
    public init() {}
    public static let eps = AttrKey<Double>("eps")
    public let name = "layernorm"
    public let summary = "x `[..., C]`, w `[C]`, b `[C]` → x's type: LayerNorm over the last axis (Ba et al. 2016, biased variance)"
    public let example = """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %w = param {init: ones} : f32[4]
          %b = param {init: zeros} : f32[4]
          %0 = layernorm(%x, %w, %b) {eps: 1e-05} : f32[B, 4]
          output y = %0
        }
        """
    public let arity = 3...3
    public var attributes: [AttrSpec] { [Self.eps.spec] }
    public let traits: OpTraits = [.rowwise, .normalization]
    /// `layernorm(x, eps: 1e-5)`: `NAME.weight` (ones) and `NAME.bias` (zeros) of [C].
    public var layerArguments: [(name: String, defaultValue: AttrValue)] { [("eps", .float(1e-5))] }
    public func layerParameters(_ x: TensorType) throws -> [LayerParameter] {
        guard let c = x.shape.last, c.constValue != nil else { throw TypeError("layernorm needs a tensor whose last dimension is a constant, got \(x)") }
        return [LayerParameter("weight", [c], .ones), LayerParameter("bias", [c], .zeros)]
    }
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let x = ops[0]
        try requireFloat(x, "layernorm input")
        let eps = attrs[Self.eps]
        guard eps > 0, eps.isFinite else { throw TypeError("eps must be positive, got \(eps)") }
        guard let c = x.shape.last else { throw TypeError("layernorm needs rank ≥ 1") }
        for (i, p) in ops.dropFirst().enumerated() where p.shape.dims != [c] {
            throw TypeError("layernorm \(i == 0 ? "weight" : "bias") must have shape [\(c)], got \(p.shape)")
        }
        return x
    }
    public func differentiate(_ d: inout Differentiation) throws {
        let eps = d.node.attrs[Self.eps.name]!, o = d.operands, g = d.gradient
        if d.wants(0) { d.give(0, d.emit(.layernormGradInput, [g, o[0], o[1]], [("eps", eps)])) }
        if d.wants(1) { d.give(1, d.emit(.layernormGradWeight, [g, o[0]], [("eps", eps)])) }
        if d.wants(2) { d.give(2, d.sumTo(g, like: o[2])) }
    }
    public func flops(_ c: FlopContext) -> Int { 8 * c.out }
}

/// `layernorm_grad_input(%dy, %x, %w) {eps}` — dx of `layernorm`.
public struct LayerNormGradInput: Op {
    public init() {}
    public let name = "layernorm_grad_input"
    public let summary = "dy, x, w (and acc, x's type, after `fuse-grad-acc`) → x's type: dx of layernorm (+ acc)"
    public let example = """
        graph G {
          dim B
          %dy = input : f32[B, 4]
          %x = input : f32[B, 4]
          %w = param {init: ones} : f32[4]
          %0 = layernorm_grad_input(%dy, %x, %w) {eps: 1e-05} : f32[B, 4]
          output d = %0
        }
        """
    public let arity = 3...4
    public var attributes: [AttrSpec] { [LayerNorm.eps.spec] }
    public let traits: OpTraits = [.gradient, .accumulates]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        guard ops[0] == ops[1], let c = ops[1].shape.last, ops[2].shape.dims == [c] else {
            throw TypeError("layernorm_grad_input: shapes \(ops[0].shape), \(ops[1].shape), \(ops[2].shape) do not match")
        }
        return ops[1]
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { 8 * c.out + c.accumulate }
}

/// `layernorm_grad_weight(%dy, %x) {eps} -> [C]` — Σ over rows of dy · x̂, the gain gradient of `layernorm`.
public struct LayerNormGradWeight: Op {
    public init() {}
    public let name = "layernorm_grad_weight"
    public let summary = "dy, x → `[C]`: Σ over rows of dy · x̂"
    public let example = """
        graph G {
          dim B
          %dy = input : f32[B, 4]
          %x = input : f32[B, 4]
          %0 = layernorm_grad_weight(%dy, %x) {eps: 1e-05} : f32[4]
          output d = %0
        }
        """
    public let arity = 2...2
    public var attributes: [AttrSpec] { [LayerNorm.eps.spec] }
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        guard ops[0] == ops[1], let c = ops[1].shape.last else { throw TypeError("layernorm_grad_weight: shapes \(ops[0].shape) and \(ops[1].shape) do not match") }
        return TensorType(ops[1].dtype, [c])
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { 8 * c.count(0) }
}

extension OpKind {
    public static let layernorm = OpKind("layernorm")
    public static let layernormGradInput = OpKind("layernorm_grad_input")
    public static let layernormGradWeight = OpKind("layernorm_grad_weight")
}
