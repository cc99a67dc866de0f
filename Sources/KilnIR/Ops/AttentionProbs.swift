import KilnBasics

/// `attention_probs(%q: [B, T, C], %k: [B, S, Ckv], %mask: i32[B, S]?) {heads, kv_heads?, alibi?, causal,
/// window?}` → `[B, heads, T, S]` — the weights of an `attention` with the same operands and attributes: per
/// head softmax(q·kᵀ/√d) under its masks (0 where a key is not seen; a query that sees no key has a row of
/// zeros). Made by `make-attention-maps` for the `attention_maps` function (pictures of what heads attend to).
public struct AttentionProbs: Op {
    public init() {}
    public let name = "attention_probs"
    public let summary = "q `[B, T, C]`, k `[B, S, Ckv]`, mask `i32[B, S]`? → `[B, heads, T, S]`: the weights of `attention` with these operands and attributes (0 where a key is not seen)"
    public let example = """
        graph G {
          dim B
          dim T <= 8
          %q = input : f32[B, T, 4]
          %k = input : f32[B, T, 4]
          %0 = attention_probs(%q, %k) {heads: 2, causal: true} : f32[B, 2, T, T]
          output p = %0
        }
        """
    public let arity = 2...3
    public var attributes: [AttrSpec] { Attention().attributes }
    public let traits: OpTraits = [.afterAutodiff]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        // the attention's own rule, with the keys standing in for the values
        _ = try Attention().inferType([ops[0], ops[1], ops[1]] + ops.dropFirst(2), attrs, env)
        return Self.probabilities(q: ops[0], k: ops[1], attrs)
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    /// q·kᵀ: 2 per (query, key) pair and channel; the softmax 5 per pair and head (ALiBi's bias 2 more).
    public func flops(_ c: FlopContext) -> Int {
        let pairs = Attention.pairs(c, q: c.operands[0], k: c.operands[1]), heads = c.node.attrs[Attention.heads]
        return 2 * pairs * c.dim(c.operands[0].shape.dims[2]) + (Attention.hasALiBi(c.node.attrs) ? 7 : 5) * pairs * heads
    }

    /// `[B, heads, T, S]` for queries `[B, T, C]` and keys `[B, S, Ckv]`.
    static func probabilities(q: TensorType, k: TensorType, _ attrs: Attributes) -> TensorType {
        TensorType(q.dtype, [q.shape.dims[0], .const(attrs[Attention.heads]), q.shape.dims[1], k.shape.dims[1]])
    }
}

/// `relative_attention_probs(%q: [B, T, C], %k: [B, T, Ckv], %table, %mask: i32[B, T]?) {…}` → `[B, heads, T, T]`
/// — the weights of a `relative_attention` with the same operands (less the values) and attributes. Made by
/// `make-attention-maps`.
public struct RelativeAttentionProbs: Op {
    public init() {}
    public let name = "relative_attention_probs"
    public let summary = "q `[B, T, C]`, k `[B, T, Ckv]`, table, mask `i32[B, T]`? → `[B, heads, T, T]`: the weights of `relative_attention` with these operands and attributes"
    public let example = """
        graph G {
          dim B
          dim T <= 8
          %q = input : f32[B, T, 4]
          %table = param {init: normal, std: 0.02} : f32[8, 2]
          %0 = relative_attention_probs(%q, %q, %table) {heads: 2, causal: true, scheme: t5, buckets: 8, max_distance: 16} : f32[B, 2, T, T]
          output p = %0
        }
        """
    public let arity = 3...4
    public var attributes: [AttrSpec] { RelativeAttention().attributes }
    public let traits: OpTraits = [.afterAutodiff]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        _ = try RelativeAttention().inferType([ops[0], ops[1], ops[1]] + ops.dropFirst(2), attrs, env)
        return AttentionProbs.probabilities(q: ops[0], k: ops[1], attrs)
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    /// As `relative_attention` without p·v: 2 per pair and channel, Shaw's q·a^K (2 per row, distance and channel)
    /// and 2 per pair and head, T5's bias 1; the softmax 5 per pair and head.
    public func flops(_ c: FlopContext) -> Int {
        let pairs = Attention.pairs(c, q: c.operands[0], k: c.operands[1]), heads = c.node.attrs[Attention.heads]
        return RelativeAttention.flops(c, q: c.operands[0], k: c.operands[1], perPair: 2, shawRows: 2, shawPairs: 2, t5Pairs: 1) + 5 * pairs * heads
    }
}

extension OpKind {
    public static let attentionProbs = OpKind("attention_probs")
    public static let relativeAttentionProbs = OpKind("relative_attention_probs")
}
