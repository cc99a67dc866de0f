import KilnBasics

/// `relative_attention(%q: [B, T, C], %k, %v: [B, S, Ckv], %table, %mask: i32[B, S]?) {heads, kv_heads?,
/// causal, scheme, clip?, buckets?, max_distance?}` — multi-head attention whose scores depend on the distance
/// s − t between key s and query t through a learned table, as `attention` otherwise (heads, grouped-query
/// heads, causal and padding masks):
///
/// - `scheme: shaw` — relative position representations (Shaw et al. 2018): table `[2, 2·clip + 1, d]`
///   (d = C / heads, shared by the heads) holds a^K (row 0) and a^V (row 1) for the clipped distance
///   r = min(max(s − t, −clip), clip); score = q·(k_s + a^K_r)/√d and output = Σ_s p_s (v_s + a^V_r).
/// - `scheme: t5` — T5's bucketed relative attention bias (Raffel et al. 2020): table `[buckets, heads]`, and
///   head h adds table[bucket(s − t), h] to its score q·k/√d. The buckets are those of T5
///   (`_relative_position_bucket` of Hugging Face's T5): half for each direction when not causal, exact for
///   distances below a quarter (half) of them, logarithmic up to `max_distance`, one bucket beyond.
///
/// Both clip (Shaw) or bucket (T5) far distances, so a model runs at any length.
public struct RelativeAttention: Op {
    public init() {}
    public static let scheme = AttrKey<Word>("scheme", words: ["shaw", "t5"])
    public static let clip = AttrKey<Int>("clip", optional: true)
    public static let buckets = AttrKey<Int>("buckets", optional: true)
    public static let maxDistance = AttrKey<Int>("max_distance", optional: true)
    public static var positionAttributes: [AttrSpec] { [scheme.spec, clip.spec, buckets.spec, maxDistance.spec] }

    /// The attributes that say how the table enters (for the ops made from this one).
    public static func schemeAttributes(_ attrs: Attributes) -> [(String, AttrValue)] {
        [(scheme.name, .word(attrs[scheme].text))]
            + [clip, buckets, maxDistance].compactMap { key in attrs.value(key).map { (key.name, AttrValue.int($0)) } }
    }
    public static func isShaw(_ attrs: Attributes) -> Bool { attrs[scheme] == "shaw" }
    /// Rows of a Shaw table: the 2·clip + 1 clipped distances; 0 for T5.
    public static func distances(_ attrs: Attributes) -> Int { isShaw(attrs) ? 2 * (attrs.value(clip) ?? 0) + 1 : 0 }

    /// Checks the scheme's attributes and the table's shape for queries of width c.
    static func checkTable(_ table: TensorType, c: Int, _ attrs: Attributes, _ op: String) throws {
        try requireFloat(table, "\(op)'s table")
        let h = attrs[Attention.heads]
        if isShaw(attrs) {
            guard let k = attrs.value(clip), k > 0, attrs.value(buckets) == nil, attrs.value(maxDistance) == nil else {
                throw TypeError("\(op) with scheme shaw takes clip > 0 and neither buckets nor max_distance")
            }
            guard table.shape.dims == [.const(2), .const(2 * k + 1), .const(c / h)] else {
                throw TypeError("\(op): a Shaw table for clip \(k) and heads of \(c / h) channels is [2, \(2 * k + 1), \(c / h)], got \(table.shape)")
            }
        } else {
            guard let n = attrs.value(buckets), let m = attrs.value(maxDistance), attrs.value(clip) == nil else {
                throw TypeError("\(op) with scheme t5 takes buckets and max_distance, and no clip")
            }
            // the causal buckets split in two exact and logarithmic halves; the bidirectional ones first by direction
            let exact = (attrs[Attention.causal] ? n : n / 2) / 2
            guard exact >= 1, m > exact else {
                throw TypeError("\(op): \(n) buckets up to max_distance \(m) leave no logarithmic buckets (need buckets >= \(attrs[Attention.causal] ? 2 : 4) and max_distance > \(exact))")
            }
            guard table.shape.dims == [.const(n), .const(h)] else {
                throw TypeError("\(op): a T5 bias table for \(n) buckets and \(h) heads is [\(n), \(h)], got \(table.shape)")
            }
        }
    }

    public let name = "relative_attention"
    public let summary = "q `[B, T, C]`, k, v `[B, S, Ckv]`, table, mask `i32[B, S]`? → `[B, T, C]`: attention with scores by distance; `scheme: shaw` (Shaw et al. 2018): table `[2, 2·clip+1, C/heads]` of a^K, a^V added to keys and values at the clipped distance; `scheme: t5` (Raffel et al. 2020): table `[buckets, heads]` added to each head's scores at the distance's bucket"
    public let example = """
        graph G {
          dim B
          dim T <= 8
          %q = input : f32[B, T, 4]
          %table = param {init: normal, std: 0.02} : f32[2, 5, 2]
          %0 = relative_attention(%q, %q, %q, %table) {heads: 2, causal: true, scheme: shaw, clip: 2} : f32[B, T, 4]
          output y = %0
        }
        """
    public let arity = 4...5
    public var attributes: [AttrSpec] { [Attention.heads.spec, Attention.kvHeads.spec, Attention.causal.spec] + Self.positionAttributes }
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        guard ops[0].shape.rank == 3, ops[1].shape.rank == 3, ops[1].shape.dims[1] == ops[0].shape.dims[1] else {
            throw TypeError("relative_attention relates the positions of one sequence: keys \(ops[1].shape) must have the queries' length, \(ops[0].shape)")
        }
        let y = try Attention().inferType([ops[0], ops[1], ops[2]] + ops.dropFirst(4), attrs.removing(Self.positionAttributes), env)
        try Self.checkTable(ops[3], c: ops[0].shape.dims[2].constValue!, attrs, "relative_attention")
        return y
    }
    public func differentiate(_ d: inout Differentiation) throws {
        let attrs = Attention.headAttributes(d.node.attrs) + [(Attention.causal.name, d.node.attrs[Attention.causal.name]!)]
            + Self.schemeAttributes(d.node.attrs)
        for (k, wrt) in ["q", "k", "v", "table"].enumerated() where d.wants(k) {
            d.give(k, d.emit(.relativeAttentionGrad, [d.gradient] + d.operands, attrs + [(RelativeAttentionGrad.wrt.name, .word(wrt))]))
        }
    }
    /// Attention's 4 per (query, key) pair and channel; Shaw adds per query row and head q·a^K and Σ p·a^V over
    /// the table (4 per distance and channel) and 2 per pair and head (the distance's logit, its probability's
    /// sum); T5 adds 1 per pair and head (the bias).
    public func flops(_ c: FlopContext) -> Int {
        Self.flops(c, q: c.operands[0], k: c.operands[1], perPair: 4, shawRows: 4, shawPairs: 2, t5Pairs: 1)
    }

    /// perPair per (query, key) pair and channel; with Shaw shawRows per query row, distance and channel and
    /// shawPairs per pair and head; with T5 t5Pairs per pair and head.
    static func flops(_ c: FlopContext, q: TensorType, k: TensorType, perPair: Int, shawRows: Int, shawPairs: Int, t5Pairs: Int) -> Int {
        let pairs = Attention.pairs(c, q: q, k: k), channels = c.dim(q.shape.dims[2]), heads = c.node.attrs[Attention.heads]
        let rows = c.dim(q.shape.dims[0]) * c.dim(q.shape.dims[1])
        let extra = isShaw(c.node.attrs) ? shawRows * rows * distances(c.node.attrs) * channels + shawPairs * pairs * heads : t5Pairs * pairs * heads
        return perPair * pairs * channels + extra
    }
}

/// `relative_attention_grad(%dy, %q, %k, %v, %table, %mask?) {…, wrt}` — the gradient of `relative_attention`
/// with respect to q, k, v or its table, each one pass that recomputes the probabilities.
public struct RelativeAttentionGrad: Op {
    public init() {}
    public static let wrt = AttrKey<Word>("wrt", words: ["q", "k", "v", "table"])
    public let name = "relative_attention_grad"
    public let summary = "dy, q, k, v, table, mask? → the type of q, k, v or the table (`wrt`): the gradient of `relative_attention`"
    public let example = """
        graph G {
          dim B
          dim T <= 8
          %dy = input : f32[B, T, 4]
          %q = input : f32[B, T, 4]
          %table = param {init: normal, std: 0.02} : f32[6, 2]
          %0 = relative_attention_grad(%dy, %q, %q, %q, %table) {heads: 2, causal: false, scheme: t5, buckets: 6, max_distance: 4, wrt: table} : f32[6, 2]
          output d = %0
        }
        """
    public let arity = 5...6
    public var attributes: [AttrSpec] { [Attention.heads.spec, Attention.kvHeads.spec, Attention.causal.spec] + RelativeAttention.positionAttributes + [Self.wrt.spec] }
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let fwd = try RelativeAttention().inferType(Array(ops[1...]), attrs.removing([Self.wrt.spec]), env)
        guard ops[0] == fwd else { throw TypeError("relative_attention_grad: dy \(ops[0]) does not match the attention output \(fwd)") }
        return ops[1 + ["q", "k", "v", "table"].firstIndex(of: attrs[Self.wrt].text)!]
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    /// Every pass recomputes the scores (2 per pair and channel); dv adds p·dy (2), dq and dk dy·v and ds times
    /// k or q (4), the table dy·v (2). Shaw per query row, distance and channel: the recomputed q·a^K (2), and
    /// for dq, dk and the table dy·a^V (2), for dq Σ ds·a^K (2), for the table both of its rows' sums (4); per
    /// pair and head: the distance's logit (1), but for dv dy·a^V's share of dp (1), and the sums by distance
    /// (dq: 1, the table: 2). T5 per pair and head: the bias (1), and for the table the sum by distance (1).
    public func flops(_ c: FlopContext) -> Int {
        let wrt = c.node.attrs[Self.wrt].text
        let perPair = ["v": 4, "table": 4][wrt] ?? 6
        let shawRows = ["q": 6, "k": 4, "v": 2, "table": 8][wrt]!, shawPairs = ["q": 3, "k": 2, "v": 1, "table": 4][wrt]!
        return RelativeAttention.flops(c, q: c.operands[1], k: c.operands[2], perPair: perPair, shawRows: shawRows, shawPairs: shawPairs,
                                       t5Pairs: wrt == "table" ? 2 : 1)
    }
}

/// `cached_relative_attention(%q: [B, T, C], %k, %v: [R, S, Ckv], %table, %positions: i32[B, T]) {…}` —
/// `relative_attention` over a KV cache (decoding): query (b, t) at position p = positions[b, t] sees
/// positions 0 … p of cache row b, at distances s − p.
public struct CachedRelativeAttention: Op {
    public init() {}
    public let name = "cached_relative_attention"
    public let summary = "q `[B, T, C]`, k, v `[R, S, Ckv]` (caches), table, positions `i32[B, T]` → `[B, T, C]`: `relative_attention` of query (b, t) over positions 0 … positions[b, t] of cache row b"
    public let example = """
        graph G {
          dim R
          dim B
          %q = input : f32[B, 1, 4]
          %kv.0.k = state : f32[R, 8, 4]
          %kv.0.v = state : f32[R, 8, 4]
          %table = param {init: normal, std: 0.02} : f32[8, 2]
          %positions = input {role: positions, limit: 8} : i32[B, 1]
          %0 = cached_relative_attention(%q, %kv.0.k, %kv.0.v, %table, %positions) {heads: 2, causal: true, scheme: t5, buckets: 8, max_distance: 16} : f32[B, 1, 4]
          output y = %0
        }
        """
    public let arity = 5...5
    public var attributes: [AttrSpec] { [Attention.heads.spec, Attention.kvHeads.spec, Attention.causal.spec] + RelativeAttention.positionAttributes }
    public let traits: OpTraits = [.afterAutodiff]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        guard attrs[Attention.causal] else { throw TypeError("cached_relative_attention decodes causal attention: causal must be true") }
        let y = try CachedAttention().inferType([ops[0], ops[1], ops[2], ops[4]], attrs.removing(RelativeAttention.positionAttributes + [Attention.causal.spec]), env)
        try RelativeAttention.checkTable(ops[3], c: ops[0].shape.dims[2].constValue!, attrs, "cached_relative_attention")
        return y
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    /// As `relative_attention`, counted as if every row saw the whole cache (an upper bound).
    public func flops(_ c: FlopContext) -> Int {
        let rows = c.dim(c.operands[0].shape.dims[0]) * c.dim(c.operands[0].shape.dims[1])
        let pairs = rows * c.dim(c.operands[1].shape.dims[1]), channels = c.dim(c.operands[0].shape.dims[2])
        let heads = c.node.attrs[Attention.heads], attrs = c.node.attrs
        let extra = RelativeAttention.isShaw(attrs) ? 4 * rows * RelativeAttention.distances(attrs) * channels + 2 * pairs * heads : pairs * heads
        return 4 * pairs * channels + extra
    }
}

extension OpKind {
    public static let relativeAttention = OpKind("relative_attention")
    public static let relativeAttentionGrad = OpKind("relative_attention_grad")
    public static let cachedRelativeAttention = OpKind("cached_relative_attention")
}
