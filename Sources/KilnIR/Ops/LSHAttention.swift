import KilnBasics

/// `lsh_attention(%qk: [B, T, C], %v: [B, T, C]) {heads, hashes, buckets, chunk, seed, causal}` — Reformer's
/// locality-sensitive-hashing attention (Kitaev et al. 2020), per head of size D = C / heads:
/// - shared queries and keys: query i is qk_i, key j is qk_j / √(|qk_j|² + 1e-12);
/// - `hashes` rounds; round r hashes every position by a random rotation R_r [D, buckets / 2] (normal entries
///   fixed by the seed, the same for every head): the bucket is the argmax of [x·R_r, −x·R_r];
/// - per round, the positions sorted by (bucket, position) and cut into chunks of `chunk`; a query sees the keys
///   of its chunk and of the previous one (chunk 0 has none before it);
/// - causal: no key after the query; a query's own key scores −1e5 (seen only when nothing else is);
/// - the rounds combine as one softmax over every (round, key) pair a query sees (the rounds' outputs weighted by
///   their normalisers, as the paper's), so a key seen in two rounds counts twice.
/// Time and memory O(T · hashes · chunk) per head.
public struct LSHAttention: Op {
    public init() {}
    public static let heads = AttrKey<Int>("heads")
    public static let hashes = AttrKey<Int>("hashes", default: 2)
    public static let buckets = AttrKey<Int>("buckets")
    public static let chunk = AttrKey<Int>("chunk")
    public static let seed = AttrKey<Int>("seed", default: 1)
    public static let causal = AttrKey<Bool>("causal", default: true)
    /// The score of a query's own key: seen only when nothing else is (the paper's, Hugging Face's value).
    public static let selfScore = -1e5
    public let name = "lsh_attention"
    public let summary = "qk `[B, T, C]`, v → `[B, T, C]`: Reformer's LSH attention (Kitaev et al. 2020): shared query/key (keys normalised), `hashes` rounds of random-rotation hashing into `buckets`, sorted, chunks of `chunk` seeing their own and the previous chunk, `causal`, no attention to itself unless nothing else is visible"
    public let example = """
        graph G {
          dim B
          dim T <= 16
          %qk = input : f32[B, T, 8]
          %v = input : f32[B, T, 8]
          %0 = lsh_attention(%qk, %v) {heads: 2, hashes: 2, buckets: 4, chunk: 4, seed: 1, causal: true} : f32[B, T, 8]
          output y = %0
        }
        """
    public let arity = 2...2
    public var attributes: [AttrSpec] { [Self.heads.spec, Self.hashes.spec, Self.buckets.spec, Self.chunk.spec, Self.seed.spec, Self.causal.spec] }
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (qk, v) = (ops[0], ops[1])
        try requireFloat(qk, "lsh_attention's queries")
        guard qk.shape.rank == 3, qk == v else { throw TypeError("lsh_attention expects queries/keys and values of one type [B, T, C], got \(qk) and \(v)") }
        let (h, n, b, c, s) = (attrs[Self.heads], attrs[Self.hashes], attrs[Self.buckets], attrs[Self.chunk], attrs[Self.seed])
        guard h >= 1, let width = qk.shape.last?.constValue, width % h == 0 else { throw TypeError("lsh_attention: width \(qk.shape.last!) is not divisible by \(h) heads") }
        guard n >= 1, n <= 16 else { throw TypeError("lsh_attention: hashes must be in 1 ... 16, got \(n)") }
        guard b >= 2, b % 2 == 0, b <= 1024 else { throw TypeError("lsh_attention: buckets must be even, in 2 ... 1024, got \(b)") }
        guard c >= 1, c <= 4096 else { throw TypeError("lsh_attention: chunk must be in 1 ... 4096, got \(c)") }
        guard s >= 0, s <= Int(UInt32.max) else { throw TypeError("lsh_attention: the seed must be in 0 ..< 2^32, got \(s)") }
        return qk
    }
    /// One backward pass for both operands (`lsh_attention_grad`, `[2, B, T, C]`), then views of its halves.
    public func differentiate(_ d: inout Differentiation) throws {
        let all = d.emit(.lshAttentionGrad, [d.gradient] + d.operands + [d.index], d.node.attrs.entries)
        for k in 0..<2 where d.wants(k) { d.give(k, d.emit(.select, [all], [("index", .int(k))])) }
    }
    /// Per query, round and seen key (2 chunks): the score and the weighted value, 4 per channel; the hashing,
    /// 2 · buckets / 2 per channel, position and round.
    public func flops(_ c: FlopContext) -> Int {
        let (n, b, ch) = (c.node.attrs[Self.hashes], c.node.attrs[Self.buckets], c.node.attrs[Self.chunk])
        return c.out * n * (4 * 2 * ch + b)
    }
}

/// `lsh_attention_grad(%dy, %qk, %v, %y) {…}` — the gradients of `lsh_attention` for qk and v, stacked
/// `[2, B, T, C]`; y is the forward result.
public struct LSHAttentionGrad: Op {
    public init() {}
    public let name = "lsh_attention_grad"
    public let summary = "dy, qk, v, y (the forward result) → `[2, B, T, C]`: the gradients of `lsh_attention` for qk and v"
    public let example = """
        graph G {
          dim B
          dim T <= 16
          %dy = input : f32[B, T, 8]
          %qk = input : f32[B, T, 8]
          %v = input : f32[B, T, 8]
          %y = input : f32[B, T, 8]
          %0 = lsh_attention_grad(%dy, %qk, %v, %y) {heads: 2, hashes: 2, buckets: 4, chunk: 4, seed: 1, causal: true} : f32[2, B, T, 8]
          output d = %0
        }
        """
    public let arity = 4...4
    public var attributes: [AttrSpec] { LSHAttention().attributes }
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let y = try LSHAttention().inferType([ops[1], ops[2]], attrs, env)
        guard ops[0] == y, ops[3] == y else { throw TypeError("lsh_attention_grad: dy \(ops[0]) and y \(ops[3]) must be \(y)") }
        return TensorType(y.dtype, [.const(2)] + y.shape.dims)
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    /// The forward's scores again (for the normalisers), then per pair the probabilities and four products.
    public func flops(_ c: FlopContext) -> Int { 3 * LSHAttention().flops(FlopContext(node: c.node, operands: [c.operands[1], c.operands[2]], env: c.env)) }
}

extension OpKind {
    public static let lshAttention = OpKind("lsh_attention")
    public static let lshAttentionGrad = OpKind("lsh_attention_grad")
}
