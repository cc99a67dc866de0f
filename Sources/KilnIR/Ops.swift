import KilnBasics

/// The op set of Kiln's IR. Each case's doc comment gives its IR form;
/// its type rule is in `inferType`. Passes query traits (`isElementwise`,
/// `isCommutative`, `isPure`) rather than switching on every op.
public enum OpKind: String, Sendable, CaseIterable {
    /// `%tokens = input : i32[B, T]` — a runtime input.
    case input
    /// `%embed.weight = param {init: normal, std: 0.02} : f32[V, C]` — a trained weight.
    case param
    /// `embedding(%table: [V, C], %ids: i32[...]) -> [..., C]` — row lookup.
    case embedding
    /// `slice_rows(%table: [N, C]) {rows: T} -> [T, C]` — the first `rows` rows.
    case sliceRows = "slice_rows"
    /// `sinusoidal() {rows: T, dim: C} -> f32[T, C]` — fixed sine/cosine position
    /// table of Vaswani et al. 2017: even columns sin(p / 10000^(2i/C)), odd columns cos.
    case sinusoidal
    /// `linear(%x: [..., K], %w: [N, K], %b: [N]?) -> [..., N]` — x·wᵀ + b. After epilogue
    /// fusion: `{activation: relu|gelu|gelu_tanh}` applies it to x·wᵀ + b, and `{residual: true}`
    /// takes one more operand `%r: [..., N]` added last: act(x·wᵀ + b) + r.
    case linear
    /// `linear_stack(%x: [..., K], %w0 … %w{n-1}: [N, K], %b0 … %b{n-1}: [N]?) {count: n} -> [n, ..., N]` —
    /// n linear layers of one input as one matrix product (the merged Q, K, V projections; pass
    /// `merge-linears`): slice i (`select {index: i}`) is x·w_iᵀ + b_i. Biases: all or none.
    case linearStack = "linear_stack"
    /// `layernorm(%x: [..., C], %w: [C], %b: [C]) {eps}` — Ba et al. 2016, biased variance.
    case layernorm
    /// `attention(%q, %k, %v: [B, T, C]) {heads, causal}` — multi-head scaled
    /// dot-product attention (Vaswani et al. 2017): per head softmax(q·kᵀ/√d)·v.
    case attention
    /// Elementwise binary ops with NumPy-style broadcasting of trailing dims.
    case add, sub, mul, div
    /// `scale(%x) {factor}` — x · factor.
    case scale
    /// Elementwise activations: ReLU; GELU with erf (Hendrycks & Gimpel 2016);
    /// GELU's tanh approximation (as in GPT-2).
    case relu, gelu
    case geluTanh = "gelu_tanh"
    /// `softmax(%x)` over the last axis.
    case softmax
    /// `dropout(%x) {p, id}` — zeroes each element with probability p and scales
    /// the rest by 1/(1-p) (Srivastava et al. 2014). The mask is a hash of the
    /// step's seed, `id` and the element index, so the backward pass recomputes it.
    /// Inference graphs drop it (pass `strip-dropout`).
    case dropout
    /// `fused(%x0 … %x{n-1}) {expr: "mul(add(x0, x1), relu(x2))"}` — a tree of elementwise ops
    /// (`FusedExpr`) computed in one loop (pass `fuse-elementwise`). Every operand's shape is a
    /// suffix of the result's (trailing broadcasting only).
    case fused

    // MARK: training ops (the loss and the backward graph)

    /// `scalar() {value} -> f32[]` — a constant (the seed of the backward pass).
    case scalar

    /// `cross_entropy(%logits: [..., V], %targets: i32[...]) -> f32[]` — mean over positions.
    case crossEntropy = "cross_entropy"
    /// `cross_entropy_grad(%logits, %targets, %dloss: f32[])` — (softmax − onehot) · dloss / N.
    case crossEntropyGrad = "cross_entropy_grad"
    /// `embedding_grad(%dy: [..., C], %ids, %table: [V, C]) -> [V, C]` — scatter-add of rows.
    case embeddingGrad = "embedding_grad"
    /// `pad_rows(%dy: [T, C], %table: [N, C]) -> [N, C]` — dy in the first T rows, zeros after.
    case padRows = "pad_rows"
    /// `linear_grad_input(%dy: [..., N], %w: [N, K]) -> [..., K]` — dy·w.
    case linearGradInput = "linear_grad_input"
    /// `linear_grad_weight(%dy: [..., N], %x: [..., K]) -> [N, K]` — dyᵀ·x over all rows.
    case linearGradWeight = "linear_grad_weight"
    /// `sum_to(%dy, %like)` — sums dy over the dims broadcast to reach it from like's shape.
    case sumTo = "sum_to"
    /// `layernorm_grad_input(%dy, %x, %w) {eps}` — dx of layernorm.
    case layernormGradInput = "layernorm_grad_input"
    /// `layernorm_grad_weight(%dy, %x) {eps}` — Σ rows dy · x̂, shape [C].
    case layernormGradWeight = "layernorm_grad_weight"
    /// `attention_grad(%dy, %q, %k, %v) {heads, causal, wrt}` — the gradient with respect to q, k or v,
    /// or, with `wrt: all` (self-attention), all three stacked as [3, B, T, C] in one pass.
    case attentionGrad = "attention_grad"
    /// `select(%x: [N, ...]) {index}` — the index-th slice of the leading dim (a view, no copy).
    case select
    /// `relu_grad(%dy, %x)`, `gelu_grad(%dy, %x)`, `gelu_tanh_grad(%dy, %x)` — dy · f'(x).
    case reluGrad = "relu_grad"
    case geluGrad = "gelu_grad"
    case geluTanhGrad = "gelu_tanh_grad"
    /// `softmax_grad(%dy, %y)` — y ⊙ (dy − Σ dy⊙y) with y the softmax output.
    case softmaxGrad = "softmax_grad"

    /// Ops whose value depends only on operands and attributes (CSE may merge them).
    public var isPure: Bool { self != .input && self != .param }
    /// Ops of the backward graph (they have no VJP of their own).
    public var isGradientOp: Bool {
        [.crossEntropyGrad, .embeddingGrad, .padRows, .linearGradInput, .linearGradWeight, .sumTo, .layernormGradInput,
         .layernormGradWeight, .attentionGrad, .reluGrad, .geluGrad, .geluTanhGrad, .softmaxGrad].contains(self)
    }
    /// Gradient ops that can add a gradient of their own type to their result (`{accumulate: true}` and a
    /// last operand; set by the fuse-grad-acc pass).
    public var acceptsAccumulate: Bool { [.linearGradInput, .embeddingGrad, .layernormGradInput].contains(self) }
    public var isElementwiseUnary: Bool { [.relu, .gelu, .geluTanh, .scale, .dropout].contains(self) }
    public var isElementwiseBinary: Bool { [.add, .sub, .mul, .div].contains(self) }
    public var isCommutative: Bool { self == .add || self == .mul }
    /// Ops whose result type is written, not inferred (leaves of the graph).
    public var hasDeclaredType: Bool { self == .input || self == .param }

    /// Allowed operand counts.
    public var arity: ClosedRange<Int> {
        switch self {
        case .input, .param, .sinusoidal, .scalar: 0...0
        case .sliceRows, .scale, .relu, .gelu, .geluTanh, .softmax, .dropout, .select: 1...1
        case .embedding, .add, .sub, .mul, .div, .crossEntropy, .padRows, .linearGradWeight, .sumTo,
             .layernormGradWeight, .reluGrad, .geluGrad, .geluTanhGrad, .softmaxGrad: 2...2
        case .linearGradInput: 2...3  // + the accumulated gradient
        case .linear: 2...4
        case .linearStack: 3...33
        case .fused: 1...16
        case .layernorm, .attention, .crossEntropyGrad: 3...3
        case .embeddingGrad, .layernormGradInput: 3...4  // + the accumulated gradient
        case .attentionGrad: 4...4
        }
    }

    /// The attributes each op requires (others are rejected by the verifier).
    public var requiredAttributes: [String] {
        switch self {
        case .sliceRows: ["rows"]
        case .sinusoidal: ["rows", "dim"]
        case .layernorm, .layernormGradInput, .layernormGradWeight: ["eps"]
        case .attention: ["heads", "causal"]
        case .attentionGrad: ["heads", "causal", "wrt"]
        case .scalar: ["value"]
        case .select: ["index"]
        case .dropout: ["p", "id"]
        case .scale: ["factor"]
        case .param: ["init"]
        case .linearStack: ["count"]
        case .fused: ["expr"]
        default: []
        }
    }
    public var optionalAttributes: [String] {
        switch self {
        case .param: ["std"]
        case .linear: ["activation", "residual"]  // set by the fuse-epilogue pass
        default: acceptsAccumulate ? ["accumulate"] : []
        }
    }
}

/// A type error from a type rule, phrased for users (dims are named).
public struct TypeError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension OpKind {
    /// The type rule: the result type of this op for the given operand types
    /// and attributes, or a `TypeError` that names the offending dimensions.
    /// `bound` gives the upper bound of a dim (constants are their own bound).
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, bound: (Dim) -> Int?) throws -> TensorType {
        guard arity.contains(ops.count) else {
            throw TypeError("\(rawValue) takes \(arity.lowerBound == arity.upperBound ? "\(arity.lowerBound)" : "\(arity.lowerBound) or \(arity.upperBound)") operands, got \(ops.count)")
        }
        // A gradient op with {accumulate: true} adds its last operand (a gradient of the same type) to its result.
        if acceptsAccumulate {
            let accumulate = attrs.bool("accumulate") ?? false
            guard ops.count == arity.upperBound - (accumulate ? 0 : 1) else {
                throw TypeError("\(rawValue)\(accumulate ? " {accumulate: true}" : "") takes \(arity.upperBound - (accumulate ? 0 : 1)) operands, got \(ops.count)")
            }
            if accumulate {
                var plain = attrs
                plain["accumulate"] = nil
                let out = try inferType(Array(ops.dropLast()), plain, bound: bound)
                guard ops.last! == out else { throw TypeError("\(rawValue): the accumulated gradient must have the result's type \(out), got \(ops.last!)") }
                return out
            }
        }
        switch self {
        case .input, .param:
            throw TypeError("\(rawValue) has a declared type")
        case .embedding:
            let (table, ids) = (ops[0], ops[1])
            try requireFloat(table, "embedding table")
            guard table.shape.rank == 2 else { throw TypeError("embedding table must be rank 2 [vocab, dim], got \(table.shape)") }
            guard ids.dtype == .i32 || ids.dtype == .i64 else { throw TypeError("embedding ids must be integers, got \(ids)") }
            return TensorType(table.dtype, ids.shape.dims + [table.shape.dims[1]])
        case .sliceRows:
            let t = ops[0]
            guard t.shape.rank >= 1 else { throw TypeError("slice_rows needs a tensor of rank ≥ 1") }
            guard let rows = attrs.dim("rows") else { throw TypeError("slice_rows needs a `rows` dim") }
            if let b = bound(rows), let n = bound(t.shape.dims[0]), b > n {
                throw TypeError("cannot take \(rows) rows (up to \(b)) from a table of \(t.shape.dims[0]) rows")
            }
            if bound(rows) == nil { throw TypeError("slice_rows: dim \(rows) has no upper bound") }
            return TensorType(t.dtype, [rows] + t.shape.dims.dropFirst())
        case .sinusoidal:
            guard let rows = attrs.dim("rows"), let dim = attrs.int("dim") else { throw TypeError("sinusoidal needs `rows` and `dim`") }
            guard dim > 0 else { throw TypeError("sinusoidal dim must be positive, got \(dim)") }
            return TensorType(.f32, [rows, .const(dim)])
        case .linear:
            let (x, w) = (ops[0], ops[1])
            try requireFloat(x, "linear input")
            guard w.shape.rank == 2 else { throw TypeError("linear weight must be rank 2 [out, in], got \(w.shape)") }
            guard let k = x.shape.last, k == w.shape.dims[1] else {
                throw TypeError("linear: input has last dim \(x.shape.last.map(\.description) ?? "none") but weight expects \(w.shape.dims[1]) (weight shape \(w.shape))")
            }
            let out = TensorType(x.dtype, x.shape.dims.dropLast() + [w.shape.dims[0]])
            let residual = attrs.bool("residual") ?? false
            let biasCount = ops.count - 2 - (residual ? 1 : 0)
            guard biasCount == 0 || biasCount == 1 else { throw TypeError("linear takes x, w, an optional bias\(residual ? " and the residual" : ""); got \(ops.count) operands") }
            if biasCount == 1 {
                guard ops[2].shape.dims == [w.shape.dims[0]] else { throw TypeError("linear bias must have shape [\(w.shape.dims[0])], got \(ops[2].shape)") }
            }
            if residual, ops.last! != out { throw TypeError("linear residual must have the output's type \(out), got \(ops.last!)") }
            if let act = attrs["activation"], !["relu", "gelu", "gelu_tanh"].contains(act.description) {
                throw TypeError("linear activation must be relu, gelu or gelu_tanh, got \(act)")
            }
            return out
        case .linearStack:
            let x = ops[0]
            try requireFloat(x, "linear_stack input")
            guard let n = attrs.int("count"), n >= 2, n <= 16 else { throw TypeError("linear_stack count must be 2 to 16") }
            guard ops.count == 1 + n || ops.count == 1 + 2 * n else {
                throw TypeError("linear_stack {count: \(n)} takes x, \(n) weights and optionally \(n) biases; got \(ops.count) operands")
            }
            let w = ops[1]
            guard w.shape.rank == 2, x.shape.last == w.shape.dims[1] else {
                throw TypeError("linear_stack: input \(x.shape) does not match weight \(w.shape)")
            }
            for (i, t) in ops[1...n].enumerated() where t != w { throw TypeError("linear_stack: weight \(i) is \(t), weight 0 is \(w)") }
            for (i, t) in ops.dropFirst(1 + n).enumerated() where t.shape.dims != [w.shape.dims[0]] {
                throw TypeError("linear_stack: bias \(i) must have shape [\(w.shape.dims[0])], got \(t.shape)")
            }
            return TensorType(x.dtype, [.const(n)] + x.shape.dims.dropLast() + [w.shape.dims[0]])
        case .layernorm:
            let x = ops[0]
            try requireFloat(x, "layernorm input")
            guard let c = x.shape.last else { throw TypeError("layernorm needs rank ≥ 1") }
            for (i, p) in ops.dropFirst().enumerated() where p.shape.dims != [c] {
                throw TypeError("layernorm \(i == 0 ? "weight" : "bias") must have shape [\(c)], got \(p.shape)")
            }
            guard attrs.float("eps") != nil else { throw TypeError("layernorm needs eps") }
            return x
        case .attention:
            let (q, k, v) = (ops[0], ops[1], ops[2])
            guard q.shape.rank == 3 else { throw TypeError("attention expects [B, T, C] queries, got \(q.shape)") }
            guard k.shape == v.shape else { throw TypeError("attention keys \(k.shape) and values \(v.shape) differ") }
            guard k.shape.rank == 3, k.shape.dims[0] == q.shape.dims[0], k.shape.dims[2] == q.shape.dims[2] else {
                throw TypeError("attention keys \(k.shape) do not match queries \(q.shape)")
            }
            guard let h = attrs.int("heads"), h > 0 else { throw TypeError("attention needs heads > 0") }
            guard let c = q.shape.dims[2].constValue, c % h == 0 else {
                throw TypeError("attention: model dim \(q.shape.dims[2]) is not divisible by \(h) heads")
            }
            if attrs.bool("causal") == true, k.shape.dims[1] != q.shape.dims[1] {
                throw TypeError("causal attention needs keys of the same length as queries: \(k.shape.dims[1]) vs \(q.shape.dims[1])")
            }
            return q
        case .add, .sub, .mul, .div:
            return try broadcast(ops[0], ops[1])
        case .scale, .relu, .gelu, .geluTanh, .softmax, .dropout:
            try requireFloat(ops[0], "\(rawValue) input")
            if self == .scale {
                guard let f = attrs.float("factor") else { throw TypeError("scale needs a factor") }
                guard f.isFinite, ops[0].dtype != .f32 || abs(f) <= Double(Float.greatestFiniteMagnitude) else {
                    throw TypeError("scale factor \(f) is not a finite \(ops[0].dtype) number")
                }
            }
            if self == .dropout, let p = attrs.float("p"), !(p >= 0 && p < 1) { throw TypeError("dropout probability must be in [0, 1), got \(p)") }
            return ops[0]
        case .fused:
            guard let text = attrs.string("expr") else { throw TypeError("fused needs an expr, e.g. {expr: \"add(x0, x1)\"}") }
            let e = try FusedExpr.parse(text)
            let used = e.operandsUsed
            for k in ops.indices where !used.contains(k) { throw TypeError("fused: operand x\(k) is not used by its expr") }
            let out = try e.inferType(ops, bound: bound)
            for (k, t) in ops.enumerated() where Array(out.shape.dims.suffix(t.shape.rank)) != t.shape.dims || t.shape.rank > out.shape.rank {
                throw TypeError("fused: operand x\(k) \(t.shape) is not a suffix of the result's shape \(out.shape)")
            }
            return out
        case .scalar:
            guard attrs.float("value") != nil else { throw TypeError("scalar needs a value") }
            return TensorType(.f32, [])
        case .crossEntropy, .crossEntropyGrad:
            let (logits, targets) = (ops[0], ops[1])
            try requireFloat(logits, "cross_entropy logits")
            guard targets.dtype == .i32 || targets.dtype == .i64 else { throw TypeError("cross_entropy targets must be integers, got \(targets)") }
            guard logits.shape.rank >= 1, Array(logits.shape.dims.dropLast()) == targets.shape.dims else {
                throw TypeError("cross_entropy: logits \(logits.shape) do not match targets \(targets.shape)")
            }
            if self == .crossEntropyGrad {
                guard ops[2].shape.rank == 0 else { throw TypeError("cross_entropy_grad needs a scalar dloss, got \(ops[2])") }
                return logits
            }
            return TensorType(logits.dtype, [])
        case .embeddingGrad:
            let (dy, ids, table) = (ops[0], ops[1], ops[2])
            guard table.shape.rank == 2, dy.shape.dims == ids.shape.dims + [table.shape.dims[1]] else {
                throw TypeError("embedding_grad: dy \(dy.shape) does not match ids \(ids.shape) and table \(table.shape)")
            }
            return table
        case .padRows:
            let (dy, table) = (ops[0], ops[1])
            guard dy.shape.rank == table.shape.rank, dy.shape.rank >= 1, Array(dy.shape.dims.dropFirst()) == Array(table.shape.dims.dropFirst()) else {
                throw TypeError("pad_rows: \(dy.shape) does not fit in \(table.shape)")
            }
            return table
        case .linearGradInput:
            let (dy, w) = (ops[0], ops[1])
            guard w.shape.rank == 2, dy.shape.last == w.shape.dims[0] else { throw TypeError("linear_grad_input: dy \(dy.shape) does not match weight \(w.shape)") }
            return TensorType(dy.dtype, dy.shape.dims.dropLast() + [w.shape.dims[1]])
        case .linearGradWeight:
            let (dy, x) = (ops[0], ops[1])
            guard dy.shape.rank == x.shape.rank, Array(dy.shape.dims.dropLast()) == Array(x.shape.dims.dropLast()),
                  let n = dy.shape.last, let k = x.shape.last else {
                throw TypeError("linear_grad_weight: dy \(dy.shape) does not match x \(x.shape)")
            }
            return TensorType(dy.dtype, [n, k])
        case .sumTo:
            let (dy, like) = (ops[0], ops[1])
            guard let b = try? broadcast(dy, like), b == dy else { throw TypeError("sum_to: \(like.shape) does not broadcast to \(dy.shape)") }
            return TensorType(dy.dtype, like.shape)
        case .layernormGradInput:
            guard ops[0] == ops[1], ops[2].shape.dims == [ops[1].shape.last!] else { throw TypeError("layernorm_grad_input: shapes \(ops[0].shape), \(ops[1].shape), \(ops[2].shape) do not match") }
            return ops[1]
        case .layernormGradWeight:
            guard ops[0] == ops[1], let c = ops[1].shape.last else { throw TypeError("layernorm_grad_weight: shapes \(ops[0].shape) and \(ops[1].shape) do not match") }
            return TensorType(ops[1].dtype, [c])
        case .attentionGrad:
            let fwd = try OpKind.attention.inferType(Array(ops[1...3]), attrs, bound: bound)
            guard ops[0] == fwd else { throw TypeError("attention_grad: dy \(ops[0]) does not match the attention output \(fwd)") }
            if attrs.word("wrt") == "all" {
                guard ops[1] == ops[2] else { throw TypeError("attention_grad with wrt: all needs self-attention shapes, got \(ops[1]) and \(ops[2])") }
                return TensorType(ops[1].dtype, [.const(3)] + ops[1].shape.dims)
            }
            guard let wrt = attrs.word("wrt"), let i = ["q", "k", "v"].firstIndex(of: wrt) else { throw TypeError("attention_grad: wrt must be q, k, v or all") }
            return ops[1 + i]
        case .select:
            guard let i = attrs.int("index"), let n = ops[0].shape.dims.first?.constValue, i >= 0, i < n else {
                throw TypeError("select: index out of range for \(ops[0].shape)")
            }
            return TensorType(ops[0].dtype, Array(ops[0].shape.dims.dropFirst()))
        case .reluGrad, .geluGrad, .geluTanhGrad, .softmaxGrad:
            guard ops[0] == ops[1] else { throw TypeError("\(rawValue): \(ops[0]) and \(ops[1]) differ") }
            return ops[0]
        }
    }

    private func requireFloat(_ t: TensorType, _ what: String) throws {
        guard t.dtype.isFloat else { throw TypeError("\(what) must be a float tensor, got \(t)") }
    }

    /// NumPy broadcasting on trailing dims; equal dims or a constant 1 match.
    func broadcast(_ a: TensorType, _ b: TensorType) throws -> TensorType {
        guard a.dtype == b.dtype else { throw TypeError("\(rawValue): dtypes differ: \(a) and \(b)") }
        let n = max(a.shape.rank, b.shape.rank)
        var out: [Dim] = []
        for i in 0..<n {
            let da = i < n - a.shape.rank ? nil : a.shape.dims[i - (n - a.shape.rank)]
            let db = i < n - b.shape.rank ? nil : b.shape.dims[i - (n - b.shape.rank)]
            switch (da, db) {
            case let (x?, y?) where x == y: out.append(x)
            case let (x?, .const(1)?): out.append(x)
            case let (.const(1)?, y?): out.append(y)
            case let (x?, nil): out.append(x)
            case let (nil, y?): out.append(y)
            default:
                throw TypeError("shapes \(a.shape) and \(b.shape) do not match: dim \(da!) vs \(db!)")
            }
        }
        return TensorType(a.dtype, out)
    }
}
