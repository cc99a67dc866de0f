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
    /// `linear(%x: [..., K], %w: [N, K], %b: [N]?) -> [..., N]` — x·wᵀ + b.
    case linear
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

    /// Ops whose value depends only on operands and attributes (CSE may merge them).
    public var isPure: Bool { self != .input && self != .param }
    public var isElementwiseUnary: Bool { [.relu, .gelu, .geluTanh, .scale].contains(self) }
    public var isElementwiseBinary: Bool { [.add, .sub, .mul, .div].contains(self) }
    public var isCommutative: Bool { self == .add || self == .mul }
    /// Ops whose result type is written, not inferred (leaves of the graph).
    public var hasDeclaredType: Bool { self == .input || self == .param }

    /// Allowed operand counts.
    public var arity: ClosedRange<Int> {
        switch self {
        case .input, .param, .sinusoidal: 0...0
        case .sliceRows, .scale, .relu, .gelu, .geluTanh, .softmax: 1...1
        case .embedding, .add, .sub, .mul, .div: 2...2
        case .linear: 2...3
        case .layernorm, .attention: 3...3
        }
    }

    /// The attributes each op requires (others are rejected by the verifier).
    public var requiredAttributes: [String] {
        switch self {
        case .sliceRows: ["rows"]
        case .sinusoidal: ["rows", "dim"]
        case .layernorm: ["eps"]
        case .attention: ["heads", "causal"]
        case .scale: ["factor"]
        case .param: ["init"]
        default: []
        }
    }
    public var optionalAttributes: [String] { self == .param ? ["std"] : [] }
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
            if ops.count == 3 {
                guard ops[2].shape.dims == [w.shape.dims[0]] else { throw TypeError("linear bias must have shape [\(w.shape.dims[0])], got \(ops[2].shape)") }
            }
            return TensorType(x.dtype, x.shape.dims.dropLast() + [w.shape.dims[0]])
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
        case .scale, .relu, .gelu, .geluTanh, .softmax:
            try requireFloat(ops[0], "\(rawValue) input")
            if self == .scale, attrs.float("factor") == nil { throw TypeError("scale needs a factor") }
            return ops[0]
        }
    }

    private func requireFloat(_ t: TensorType, _ what: String) throws {
        guard t.dtype.isFloat else { throw TypeError("\(what) must be a float tensor, got \(t)") }
    }

    /// NumPy broadcasting on trailing dims; equal dims or a constant 1 match.
    private func broadcast(_ a: TensorType, _ b: TensorType) throws -> TensorType {
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
