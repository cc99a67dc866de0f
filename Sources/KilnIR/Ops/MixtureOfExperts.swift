import KilnBasics

/// A mixture-of-experts feed-forward layer (Shazeer et al. 2017; GShard, Lepikhin et al. 2021; Switch,
/// Fedus et al. 2021) as four ops over N tokens (every position of the leading dims) and E experts:
///
///     logits = linear(x, E)                  the router (an ordinary linear op)
///     gates  = moe_route(logits)             [..., E]: each token's combine weights, 0 where it is not routed
///     h      = moe_up(x, gates, up)          [..., k, H]: the pre-activations of the token's k routed experts
///     y      = moe_down(h, gates, down)      [..., C]: Σ over its experts of gate · act(h) · down_e
///
/// The routing lives in `gates` and nothing else: token t's slot j (< k) is the j-th expert, in ascending
/// order, whose gate is not 0; a slot with no expert holds zeros. The experts' products run as grouped matrix
/// products over the tokens routed to each (runtime/kernels/moe.c). Both expert weights are `[E, H, C]`: row
/// j of `up[e]` reads the input of hidden unit j, row j of `down[e]` is what that unit writes.
public enum MixtureOfExperts {
    public static let top = AttrKey<Int>("top", default: 1)
    public static let capacity = AttrKey<Double>("capacity", default: 0)
    public static let activation = AttrKey<Word>("activation", default: "gelu", words: Activation.activationNames)

    /// Checks x `[..., C]`, gates `[..., E]` and an expert weight `[E, H, C]`; returns (E, H, C).
    static func check(x: TensorType, gates: TensorType, weight: TensorType, _ op: String) throws -> (e: Dim, h: Dim, c: Dim) {
        try requireFloat(x, "\(op)'s input")
        try requireFloat(gates, "\(op)'s gates")
        guard weight.shape.rank == 3, weight.dtype == x.dtype else { throw TypeError("\(op)'s expert weight must be [E, H, C] of \(x.dtype), got \(weight)") }
        let (e, h, c) = (weight.shape.dims[0], weight.shape.dims[1], weight.shape.dims[2])
        guard e.constValue != nil, h.constValue != nil, c.constValue != nil else { throw TypeError("\(op)'s expert weight \(weight.shape) must have constant dims") }
        guard gates.shape.last == e else { throw TypeError("\(op): gates \(gates.shape) do not have the \(e) experts of the weight \(weight.shape)") }
        return (e, h, c)
    }

    /// The capacity of each expert for N tokens: ⌈factor · k · N / E⌉ (GShard, Switch), or N · k when the
    /// factor is 0 (no limit).
    public static func capacity(tokens n: Int, experts e: Int, top k: Int, factor: Double) -> Int {
        factor > 0 ? Int((factor * Double(k) * Double(n) / Double(e)).rounded(.up)) : n * k
    }
}

/// `moe_route(%logits: [..., E]) {top: k, capacity: f}` — the combine weights of each token.
public struct MoERoute: Op {
    public init() {}
    public let name = "moe_route"
    public let summary = "logits `[..., E]` → `[..., E]`: each token's combine weights over the experts: p = softmax(logits); its `top` k experts by p; with k = 1 the weight is p (Switch, Fedus et al. 2021), with k ≥ 2 the k probabilities renormalised (Shazeer et al. 2017; GShard); each expert takes at most ⌈`capacity` · k · N / E⌉ tokens (0: no limit), first choices before second ones, in token order, and a token past it gets weight 0 there (it passes through the residual)"
    public let example = """
        graph G {
          dim B
          %l = input : f32[B, 4]
          %0 = moe_route(%l) {top: 2, capacity: 1.25} : f32[B, 4]
          output y = %0
        }
        """
    public let arity = 1...1
    public var attributes: [AttrSpec] { [MixtureOfExperts.top.spec, MixtureOfExperts.capacity.spec] }
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        try requireFloat(ops[0], "moe_route's logits")
        guard let e = ops[0].shape.last?.constValue else { throw TypeError("moe_route's logits must be [..., E] with E constant, got \(ops[0].shape)") }
        let k = attrs[MixtureOfExperts.top], f = attrs[MixtureOfExperts.capacity]
        guard k >= 1, k <= e else { throw TypeError("moe_route: top \(k) must be between 1 and the \(e) experts") }
        guard f >= 0, f.isFinite else { throw TypeError("moe_route: capacity must be a factor ≥ 0 (0: no limit), got \(f)") }
        return ops[0]
    }
    public func differentiate(_ d: inout Differentiation) throws {
        if d.wants(0) { d.give(0, d.emit(.moeRouteGrad, [d.gradient, d.operands[0]], d.node.attrs.entries)) }
    }
    /// The softmax (5 per logit), the top-k scan (k per logit) and the normalisation.
    public func flops(_ c: FlopContext) -> Int { (5 + c.node.attrs[MixtureOfExperts.top]) * c.out }
}

/// `moe_route_grad(%dg, %logits) {top, capacity}` — the gradient of `moe_route` for its logits: through the
/// softmax of the chosen experts that were kept; the choice and the dropping are steps.
public struct MoERouteGrad: Op {
    public init() {}
    public let name = "moe_route_grad"
    public let summary = "dg, logits `[..., E]` → `[..., E]`: the gradient of `moe_route` (the choice and the capacity are steps)"
    public let example = """
        graph G {
          dim B
          %dg = input : f32[B, 4]
          %l = input : f32[B, 4]
          %0 = moe_route_grad(%dg, %l) {top: 2, capacity: 1.25} : f32[B, 4]
          output d = %0
        }
        """
    public let arity = 2...2
    public var attributes: [AttrSpec] { [MixtureOfExperts.top.spec, MixtureOfExperts.capacity.spec] }
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        guard ops[0] == ops[1] else { throw TypeError("moe_route_grad: dg \(ops[0]) does not match the logits \(ops[1])") }
        return try MoERoute().inferType([ops[1]], attrs, env)
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { (8 + c.node.attrs[MixtureOfExperts.top]) * c.out }
}

/// `moe_up(%x: [..., C], %gates: [..., E], %up: [E, H, C]) {top: k}` — per token and routed expert e,
/// up[e] · x: `[..., k, H]`, slot j the j-th routed expert in ascending order, zeros in empty slots.
public struct MoEUp: Op {
    public init() {}
    public let name = "moe_up"
    public let summary = "x `[..., C]`, gates `[..., E]`, up `[E, H, C]` → `[..., k, H]`: up[e] · x for each expert e the token is routed to (gate ≠ 0), slot j the j-th in ascending order, zeros in empty slots; a grouped matrix product per expert"
    public let example = """
        graph G {
          dim B
          %x = input : f32[B, 3]
          %g = input : f32[B, 4]
          %w = param {init: normal, std: 0.02} : f32[4, 5, 3]
          %0 = moe_up(%x, %g, %w) {top: 2} : f32[B, 2, 5]
          output y = %0
        }
        """
    public let arity = 3...3
    public var attributes: [AttrSpec] { [MixtureOfExperts.top.spec] }
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (x, g) = (ops[0], ops[1])
        let (e, h, c) = try MixtureOfExperts.check(x: x, gates: g, weight: ops[2], name)
        guard x.shape.last == c else { throw TypeError("moe_up: the input \(x.shape) does not have the \(c) channels of the experts \(ops[2].shape)") }
        guard Array(x.shape.dims.dropLast()) == Array(g.shape.dims.dropLast()) else { throw TypeError("moe_up: gates \(g.shape) do not match the tokens of \(x.shape)") }
        let k = attrs[MixtureOfExperts.top]
        guard k >= 1, k <= e.constValue! else { throw TypeError("moe_up: top \(k) must be between 1 and the \(e) experts") }
        return TensorType(x.dtype, Array(x.shape.dims.dropLast()) + [.const(k), h])
    }
    /// The gates only route (a step: zero gradient; their values reach the loss through `moe_down`).
    public func differentiate(_ d: inout Differentiation) throws {
        for (k, wrt) in [(0, "x"), (2, "weight")] where d.wants(k) {
            d.give(k, d.emit(.moeUpGrad, [d.gradient] + d.operands, [(MoEUpGrad.wrt.name, .word(wrt))]))
        }
        if d.wants(1) { d.give(1, d.zeroGradient(1)) }
    }
    /// One multiply–add per slot, hidden unit and channel (every slot counted as routed).
    public func flops(_ c: FlopContext) -> Int { 2 * c.out * c.dim(c.operands[2].shape.dims[2]) }
}

/// `moe_up_grad(%dh: [..., k, H], %x, %gates, %up) {wrt: x | weight}` — Σ_j dh[j] · up[e_j] (x's type) or, per
/// expert, Σ over its tokens of dh ⊗ x (`[E, H, C]`).
public struct MoEUpGrad: Op {
    public init() {}
    public static let wrt = AttrKey<Word>("wrt", words: ["x", "weight"])
    public let name = "moe_up_grad"
    public let summary = "dh `[..., k, H]`, x, gates, up → x's type (`wrt: x`) or up's (`wrt: weight`): the gradients of `moe_up`"
    public let example = """
        graph G {
          dim B
          %dh = input : f32[B, 2, 5]
          %x = input : f32[B, 3]
          %g = input : f32[B, 4]
          %w = param {init: normal, std: 0.02} : f32[4, 5, 3]
          %0 = moe_up_grad(%dh, %x, %g, %w) {wrt: weight} : f32[4, 5, 3]
          output d = %0
        }
        """
    public let arity = 4...4
    public var attributes: [AttrSpec] { [Self.wrt.spec] }
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        guard ops[0].shape.rank >= 2, let k = ops[0].shape.dims[ops[0].shape.rank - 2].constValue else {
            throw TypeError("moe_up_grad: dh must be [..., k, H], got \(ops[0])")
        }
        let h = try MoEUp().inferType(Array(ops.dropFirst()), Attributes([(MixtureOfExperts.top.name, .int(k))]), env)
        guard ops[0] == h else { throw TypeError("moe_up_grad: dh \(ops[0]) does not match \(h)") }
        return attrs[Self.wrt] == "x" ? ops[1] : ops[3]
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { 2 * c.count(0) * c.dim(c.operands[3].shape.dims[2]) }
}

/// `moe_down(%h: [..., k, H], %gates: [..., E], %down: [E, H, C]) {activation}` — Σ_j gate · act(h[j]) · down[e_j].
public struct MoEDown: Op {
    public init() {}
    public let name = "moe_down"
    public let summary = "h `[..., k, H]` (moe_up's), gates `[..., E]`, down `[E, H, C]` → `[..., C]`: Σ over the token's routed experts e_j of gate_e · act(h[j]) · down[e_j]; a grouped matrix product per expert"
    public let example = """
        graph G {
          dim B
          %h = input : f32[B, 2, 5]
          %g = input : f32[B, 4]
          %w = param {init: normal, std: 0.02} : f32[4, 5, 3]
          %0 = moe_down(%h, %g, %w) {activation: relu} : f32[B, 3]
          output y = %0
        }
        """
    public let arity = 3...3
    public var attributes: [AttrSpec] { [MixtureOfExperts.activation.spec] }
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (h, g) = (ops[0], ops[1])
        let (e, hidden, c) = try MixtureOfExperts.check(x: h, gates: g, weight: ops[2], name)
        guard h.shape.rank >= 2, h.shape.last == hidden, let k = h.shape.dims[h.shape.rank - 2].constValue, k >= 1, k <= e.constValue! else {
            throw TypeError("moe_down: the hidden activations must be [..., k, \(hidden)] with k at most the \(e) experts, got \(h.shape)")
        }
        guard Array(h.shape.dims.dropLast(2)) == Array(g.shape.dims.dropLast()) else { throw TypeError("moe_down: gates \(g.shape) do not match the tokens of \(h.shape)") }
        return TensorType(h.dtype, Array(g.shape.dims.dropLast()) + [c])
    }
    public func differentiate(_ d: inout Differentiation) throws {
        for (k, wrt) in [(0, "h"), (1, "gates"), (2, "weight")] where d.wants(k) {
            d.give(k, d.emit(.moeDownGrad, [d.gradient] + d.operands, d.node.attrs.entries + [(MoEDownGrad.wrt.name, .word(wrt))]))
        }
    }
    /// One multiply–add per slot, hidden unit and channel, and the activation.
    public func flops(_ c: FlopContext) -> Int {
        let act = Activation.named(c.node.attrs[MixtureOfExperts.activation].text)?.flops ?? 1
        return (2 * c.dim(c.operands[2].shape.dims[2]) + act) * c.count(0)
    }
}

/// `moe_down_grad(%dy: [..., C], %h, %gates, %down) {activation, wrt: h | gates | weight}` — the gradients of
/// `moe_down`: act'(h) ⊙ gate · down[e]ᵀ dy (h's type), dy · act(h) · down[e] at the routed experts (gates'),
/// or per expert Σ over its tokens of act(h) ⊗ gate · dy (`[E, H, C]`).
public struct MoEDownGrad: Op {
    public init() {}
    public static let wrt = AttrKey<Word>("wrt", words: ["h", "gates", "weight"])
    public let name = "moe_down_grad"
    public let summary = "dy `[..., C]`, h, gates, down → h's type, gates' or down's (`wrt: h | gates | weight`): the gradients of `moe_down`"
    public let example = """
        graph G {
          dim B
          %dy = input : f32[B, 3]
          %h = input : f32[B, 2, 5]
          %g = input : f32[B, 4]
          %w = param {init: normal, std: 0.02} : f32[4, 5, 3]
          %0 = moe_down_grad(%dy, %h, %g, %w) {activation: relu, wrt: gates} : f32[B, 4]
          output d = %0
        }
        """
    public let arity = 4...4
    public var attributes: [AttrSpec] { [MixtureOfExperts.activation.spec, Self.wrt.spec] }
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        var forward = attrs
        forward[Self.wrt.name] = nil
        let y = try MoEDown().inferType(Array(ops.dropFirst()), forward, env)
        guard ops[0] == y else { throw TypeError("moe_down_grad: dy \(ops[0]) does not match \(y)") }
        switch attrs[Self.wrt].text {
        case "h": return ops[1]
        case "gates": return ops[2]
        default: return ops[3]
        }
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int {
        let act = Activation.named(c.node.attrs[MixtureOfExperts.activation].text)?.gradFlops ?? 1
        return (2 * c.dim(c.operands[3].shape.dims[2]) + act) * c.count(1)
    }
}

/// `router_loss(%logits_1, …, %logits_L) {kind: balance | z}` — a router's auxiliary loss, averaged over the
/// L layers' routers (all of one type `[..., E]`; N tokens each, p = softmax(logits)):
/// `balance` is the load-balancing loss of Switch (Fedus et al. 2021, eq. 4; GShard's with its mean gates)
/// E · Σ_e f_e · P_e, f_e the fraction of tokens whose first choice is e and P_e the mean of p_e, 1 when
/// balanced; `z` the router z-loss of ST-MoE (Zoph et al. 2022) (1/N) Σ_t logsumexp(logits_t)².
public struct RouterLoss: Op {
    public init() {}
    public static let kind = AttrKey<Word>("kind", words: ["balance", "z"])
    public let name = "router_loss"
    public let summary = "logits_1 … logits_L `[..., E]` → `[]`: the mean over the routers of Switch's load-balancing loss E · Σ_e f_e · P_e (`kind: balance`; f_e the fraction of first choices, P_e the mean probability; Fedus et al. 2021) or ST-MoE's z-loss mean(logsumexp²) (`kind: z`; Zoph et al. 2022)"
    public let example = """
        graph G {
          dim B
          %a = input : f32[B, 4]
          %b = input : f32[B, 4]
          %0 = router_loss(%a, %b) {kind: balance} : f32[]
          output y = %0
        }
        """
    public let arity = 1...1_000
    public var attributes: [AttrSpec] { [Self.kind.spec] }
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        try requireFloat(ops[0], "router_loss's logits")
        guard ops[0].shape.last?.constValue != nil else { throw TypeError("router_loss's logits must be [..., E] with E constant, got \(ops[0].shape)") }
        for t in ops where t != ops[0] { throw TypeError("router_loss: the routers' logits \(t) and \(ops[0]) differ") }
        return TensorType(ops[0].dtype, [])
    }
    public func differentiate(_ d: inout Differentiation) throws {
        let n = d.operands.count
        let all = d.emit(.routerLossGrad, [d.gradient] + d.operands, d.node.attrs.entries)
        for k in 0..<n where d.wants(k) { d.give(k, d.emit(.select, [all], [(Select.index.name, .int(k))])) }
    }
    /// The softmax or logsumexp (5 per logit) and the sums.
    public func flops(_ c: FlopContext) -> Int { 7 * c.count(0) * c.operands.count }
}

/// `router_loss_grad(%dy: [], %logits_1, …, %logits_L) {kind}` — the gradient of `router_loss` for every
/// router's logits, stacked `[L, ..., E]`; the first choices (f) are steps.
public struct RouterLossGrad: Op {
    public init() {}
    public let name = "router_loss_grad"
    public let summary = "dy `[]`, logits_1 … logits_L → `[L, ..., E]`: the gradient of `router_loss`, stacked"
    public let example = """
        graph G {
          dim B
          %dy = input : f32[]
          %a = input : f32[B, 4]
          %0 = router_loss_grad(%dy, %a) {kind: z} : f32[1, B, 4]
          output d = %0
        }
        """
    public let arity = 2...1_001
    public var attributes: [AttrSpec] { [RouterLoss.kind.spec] }
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        guard ops[0].shape.rank == 0 else { throw TypeError("router_loss_grad: dy must be a scalar, got \(ops[0])") }
        _ = try RouterLoss().inferType(Array(ops.dropFirst()), attrs, env)
        return TensorType(ops[1].dtype, [.const(ops.count - 1)] + ops[1].shape.dims)
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { 8 * c.out }
}

/// `moe_load(%gates_1, …, %gates_L) : [L, E]` — each router's load: the fraction of its tokens routed to each
/// expert after the capacity (a row sums to k, less what was dropped). A statistic to watch, not to train:
/// it has no gradient (routing is a step).
public struct MoELoad: Op {
    public init() {}
    public let name = "moe_load"
    public let summary = "gates_1 … gates_L `[..., E]` (moe_route's) → `[L, E]`: the fraction of each router's tokens routed to each expert (a statistic, no gradient)"
    public let example = """
        graph G {
          dim B
          %a = input : f32[B, 4]
          %b = input : f32[B, 4]
          %0 = moe_load(%a, %b) : f32[2, 4]
          output y = %0
        }
        """
    public let arity = 1...1_000
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        try requireFloat(ops[0], "moe_load's gates")
        guard let e = ops[0].shape.last else { throw TypeError("moe_load's gates must be [..., E], got \(ops[0].shape)") }
        for t in ops where t != ops[0] { throw TypeError("moe_load: the routers' gates \(t) and \(ops[0]) differ") }
        return TensorType(ops[0].dtype, [.const(ops.count), e])
    }
    /// Routing is a step: zero gradients.
    public func differentiate(_ d: inout Differentiation) throws {
        for k in d.operands.indices where d.wants(k) { d.give(k, d.zeroGradient(k)) }
    }
    public func flops(_ c: FlopContext) -> Int { c.count(0) * c.operands.count }
}

extension OpKind {
    public static let moeRoute = OpKind("moe_route")
    public static let moeRouteGrad = OpKind("moe_route_grad")
    public static let moeUp = OpKind("moe_up")
    public static let moeUpGrad = OpKind("moe_up_grad")
    public static let moeDown = OpKind("moe_down")
    public static let moeDownGrad = OpKind("moe_down_grad")
    public static let routerLoss = OpKind("router_loss")
    public static let routerLossGrad = OpKind("router_loss_grad")
    public static let moeLoad = OpKind("moe_load")
}
