import KilnBasics

/// `attention(%q: [B, T, C], %k, %v: [B, S, Ckv], %mask: i32[B, S]?) {heads, kv_heads?, causal}` —
/// multi-head scaled dot-product attention (Vaswani et al. 2017): per head softmax(q·kᵀ/√d)·v, with `causal`
/// letting query t see keys 0..t, and the padding mask letting every query see only the keys whose mask is 1
/// (both may apply). A query that sees no key gets zeros. With `kv_heads` (grouped-query attention, Ainslie
/// et al. 2023; multi-query with 1, Shazeer 2019) keys and values have kv_heads heads of the same size d,
/// Ckv = kv_heads·d, and query head h reads key/value head h / (heads / kv_heads). With `window`, query t sees
/// only the keys s with |t − s| < window (local attention). With `block` (and `global`, `random`, `seed`), BigBird's
/// block-sparse layout (Zaheer et al. 2020): global blocks, a window of three blocks and random blocks.
public struct Attention: Op {
    public init() {}
    public static let heads = AttrKey<Int>("heads")
    public static let causal = AttrKey<Bool>("causal")
    public static let kvHeads = AttrKey<Int>("kv_heads", optional: true)
    /// ALiBi (Press et al. 2022): each head adds −slope·|t − s| to its scores, with the paper's slopes.
    public static let alibi = AttrKey<Bool>("alibi", optional: true)
    public static func hasALiBi(_ attrs: Attributes) -> Bool { attrs.value(alibi) ?? false }
    /// Local (sliding-window) attention (Beltagy et al. 2020; Mistral's sliding window with `causal`): query t
    /// sees only the keys s with |t − s| < window, so attention costs O(T · window).
    public static let window = AttrKey<Int>("window", optional: true)
    /// BigBird (Zaheer et al. 2020): blocks of `block` positions; the first `global` blocks see and are seen by
    /// all; every other query block sees them, its window of three blocks and `random` more drawn by `seed`
    /// (runtime/kernels/bigbird.c).
    public static let block = AttrKey<Int>("block", optional: true)
    public static let global = AttrKey<Int>("global", optional: true)
    public static let random = AttrKey<Int>("random", optional: true)
    public static let seed = AttrKey<Int>("seed", optional: true)
    /// The most random blocks per query block (`BIGBIRD_MAX_RANDOM`).
    public static let maxRandomBlocks = 64
    /// The window's attribute, for the ops made from an attention (its gradient, decoding), or none.
    public static func windowAttribute(_ attrs: Attributes) -> [(String, AttrValue)] {
        attrs.value(window).map { [(window.name, AttrValue.int($0))] } ?? []
    }
    /// The attributes that say which keys each query sees (a window, BigBird's blocks), for the ops made from
    /// an attention.
    public static func patternAttributes(_ attrs: Attributes) -> [(String, AttrValue)] {
        windowAttribute(attrs) + [block, global, random, seed].compactMap { key in attrs.value(key).map { (key.name, AttrValue.int($0)) } }
    }
    /// BigBird's sizes (block, global, random, seed), when the attention has them.
    public static func bigBird(_ attrs: Attributes) -> (block: Int, global: Int, random: Int, seed: Int)? {
        attrs.value(block).map { ($0, attrs.value(global) ?? 0, attrs.value(random) ?? 0, attrs.value(seed) ?? 0) }
    }

    /// The key/value heads: `kv_heads`, or `heads` without it.
    public static func keyValueHeads(_ attrs: Attributes) -> Int { attrs.value(kvHeads) ?? attrs[heads] }
    /// The attributes that say how heads attend (their layout, ALiBi), for the ops made from an attention
    /// (its gradient, decoding).
    public static func headAttributes(_ attrs: Attributes) -> [(String, AttrValue)] {
        [(heads.name, .int(attrs[heads]))] + (attrs.value(kvHeads).map { [(kvHeads.name, AttrValue.int($0))] } ?? [])
            + (hasALiBi(attrs) ? [(alibi.name, AttrValue.bool(true))] : [])
    }
    /// Checks heads against the queries' and keys' widths: C divides by heads, kv_heads divides heads, and the
    /// keys have kv_heads heads of C / heads.
    static func checkHeads(q: TensorType, k: TensorType, _ attrs: Attributes, _ op: String) throws {
        let h = attrs[heads], kvh = keyValueHeads(attrs)
        guard h > 0 else { throw TypeError("\(op) needs heads > 0") }
        guard let c = q.shape.dims[2].constValue, c % h == 0 else {
            throw TypeError("\(op): model dim \(q.shape.dims[2]) is not divisible by \(h) heads")
        }
        guard kvh > 0, h % kvh == 0 else { throw TypeError("\(op): kv_heads \(kvh) must divide heads \(h)") }
        guard k.shape.dims[2] == .const(c / h * kvh) else {
            throw TypeError("\(op): keys \(k) need \(kvh) heads of \(c / h) channels (\(c / h * kvh)) for queries \(q)")
        }
    }
    public let name = "attention"
    public let summary = "q `[B, T, C]`, k, v `[B, S, Ckv]`, mask `i32[B, S]`? → `[B, T, C]`: multi-head softmax(q·kᵀ/√d)·v (Vaswani et al. 2017); `causal`: query t sees keys 0..t; the padding mask: keys whose mask is 0 are not seen; `kv_heads`: grouped-query attention (Ckv = kv_heads·C/heads); `window`: local attention; `block`, `global`, `random`, `seed`: BigBird's block-sparse layout (Zaheer et al. 2020)"
    public let example = """
        graph G {
          dim B
          dim T <= 8
          %q = input : f32[B, T, 4]
          %k = input : f32[B, T, 4]
          %v = input : f32[B, T, 4]
          %0 = attention(%q, %k, %v) {heads: 2, causal: true} : f32[B, T, 4]
          output y = %0
        }
        """
    public let arity = 3...4
    public var attributes: [AttrSpec] { [Self.heads.spec, Self.kvHeads.spec, Self.alibi.spec, Self.causal.spec, Self.window.spec] + Self.bigBirdSpecs }
    static var bigBirdSpecs: [AttrSpec] { [Self.block.spec, Self.global.spec, Self.random.spec, Self.seed.spec] }
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (q, k, v) = (ops[0], ops[1], ops[2])
        guard q.shape.rank == 3 else { throw TypeError("attention expects [B, T, C] queries, got \(q.shape)") }
        guard k.shape == v.shape else { throw TypeError("attention keys \(k.shape) and values \(v.shape) differ") }
        guard k.shape.rank == 3, k.shape.dims[0] == q.shape.dims[0] else {
            throw TypeError("attention keys \(k.shape) do not match queries \(q.shape)")
        }
        try Self.checkHeads(q: q, k: k, attrs, "attention")
        if let w = attrs.value(Self.window) {
            guard w > 0 else { throw TypeError("window must be positive, got \(w)") }
            guard k.shape.dims[1] == q.shape.dims[1] else { throw TypeError("a window needs self-attention: keys of the same length as queries, \(k.shape.dims[1]) vs \(q.shape.dims[1])") }
        }
        if let b = Self.bigBird(attrs) {
            guard b.block > 0, b.global >= 0, b.random >= 0, b.random <= Self.maxRandomBlocks, b.seed >= 0, b.seed <= Int(UInt32.max) else {
                throw TypeError("BigBird needs block > 0, global >= 0, 0 <= random <= \(Self.maxRandomBlocks) and a seed in 0 ..< 2^32")
            }
            guard k.shape.dims[1] == q.shape.dims[1], !attrs[Self.causal], attrs.value(Self.window) == nil, !Self.hasALiBi(attrs) else {
                throw TypeError("BigBird's blocks are bidirectional self-attention: keys of the queries' length, no causal mask, window or ALiBi")
            }
        } else if attrs.value(Self.global) != nil || attrs.value(Self.random) != nil || attrs.value(Self.seed) != nil {
            throw TypeError("global, random and seed are BigBird's: they need block")
        }
        if attrs[Self.causal], k.shape.dims[1] != q.shape.dims[1] {
            throw TypeError("causal attention needs keys of the same length as queries: \(k.shape.dims[1]) vs \(q.shape.dims[1])")
        }
        if ops.count == 4 {
            try requireInteger(ops[3], "attention's padding mask")
            guard ops[3].shape.dims == [k.shape.dims[0], k.shape.dims[1]] else {
                throw TypeError("attention's padding mask must be [\(k.shape.dims[0]), \(k.shape.dims[1])] (one per key), got \(ops[3].shape)")
            }
        }
        return q
    }
    public func differentiate(_ d: inout Differentiation) throws {
        let n = d.node, o = d.operands, g = d.gradient
        let types = o.prefix(3).map { d.type($0) }
        let heads = Self.headAttributes(n.attrs) + Self.patternAttributes(n.attrs), causal = n.attrs[Self.causal.name]!
        if d.wants(0) && d.wants(1) && d.wants(2) && types[0] == types[1] && types[1] == types[2] {
            // Self-attention: one backward pass for all three, then views of its slices.
            let all = d.emit(.attentionGrad, [g] + o, heads + [("causal", causal), ("wrt", .word("all"))])
            for k in 0..<3 { d.give(k, d.emit(.select, [all], [("index", .int(k))])) }
            return
        }
        if d.wants(0) {
            d.give(0, d.emit(.attentionGrad, [g] + o, heads + [("causal", causal), ("wrt", .word("q"))]))
        }
        if d.wants(1) && d.wants(2) {
            // Keys and values of another shape (cross-attention, grouped-query heads, Linformer's rows): one pass
            let kv = d.emit(.attentionGrad, [g] + o, heads + [("causal", causal), ("wrt", .word("kv"))])
            for k in 1...2 { d.give(k, d.emit(.select, [kv], [("index", .int(k - 1))])) }
            return
        }
        for (k, wrt) in ["q", "k", "v"].enumerated() where k > 0 && d.wants(k) {
            d.give(k, d.emit(.attentionGrad, [g] + o, heads + [("causal", causal), ("wrt", .word(wrt))]))
        }
    }
    /// q·kᵀ and p·v: 4 FLOPs per (query, key) pair and channel; causal attention counts the unmasked pairs only.
    /// ALiBi adds 2 per pair and head (the slope times the distance, subtracted).
    public func flops(_ c: FlopContext) -> Int {
        let pairs = Self.pairs(c, q: c.operands[0], k: c.operands[1])
        return 4 * pairs * c.dim(c.operands[0].shape.dims[2]) + (Self.hasALiBi(c.node.attrs) ? 2 * pairs * c.node.attrs[Self.heads] : 0)
    }

    /// The (query, key) pairs that attention computes: with a window w, min(t + 1, w) keys for query t when
    /// causal, the keys within w − 1 either side otherwise.
    static func pairs(_ c: FlopContext, q: TensorType, k: TensorType) -> Int {
        let (b, t, s) = (c.dim(q.shape.dims[0]), c.dim(q.shape.dims[1]), c.dim(k.shape.dims[1]))
        let isCausal = c.node.attrs.value(causal) ?? true
        if let bb = bigBird(c.node.attrs) {
            // global query blocks see all t keys; the others (global + 3 + random) blocks, at most all of them
            let nb = (t + bb.block - 1) / bb.block, g = min(bb.global, nb)
            let rows = min(t, g * bb.block), seen = min(nb, g + 3 + bb.random)
            return b * (rows * t + (t - rows) * min(t, seen * bb.block))
        }
        guard let w = c.node.attrs.value(window) else { return isCausal ? b * t * (t + 1) / 2 : b * t * s }
        return b * (0..<t).reduce(0) { n, i in n + (isCausal ? min(i + 1, w) : min(s, i + w) - max(0, i - w + 1)) }
    }
}

/// `attention_grad(%dy, %q, %k, %v, %mask?) {heads, causal, wrt}` — the gradient of `attention` with respect
/// to q, k or v; with `wrt: kv` those of k and v stacked as [2, B, S, Ckv]; with `wrt: all` (self-attention) all
/// three stacked as [3, B, T, C]. Each stack is computed in one pass.
public struct AttentionGrad: Op {
    public init() {}
    public static let wrt = AttrKey<Word>("wrt", words: ["q", "k", "v", "kv", "all"])
    public let name = "attention_grad"
    public let summary = "dy, q, k, v, mask? → q's, k's or v's type; with `wrt: kv` `[2, B, S, Ckv]` holding k's and v's, with `wrt: all` (self-attention) `[3, B, T, C]` holding all three, each computed in one pass"
    public let example = """
        graph G {
          dim B
          dim T <= 8
          %dy = input : f32[B, T, 4]
          %q = input : f32[B, T, 4]
          %0 = attention_grad(%dy, %q, %q, %q) {heads: 2, causal: false, wrt: all} : f32[3, B, T, 4]
          output d = %0
        }
        """
    public let arity = 4...5
    public var attributes: [AttrSpec] { [Attention.heads.spec, Attention.kvHeads.spec, Attention.alibi.spec, Attention.causal.spec, Attention.window.spec] + Attention.bigBirdSpecs + [Self.wrt.spec] }
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        var forward = attrs
        forward[Self.wrt.name] = nil
        let fwd = try Attention().inferType(Array(ops[1...]), forward, env)
        guard ops[0] == fwd else { throw TypeError("attention_grad: dy \(ops[0]) does not match the attention output \(fwd)") }
        let wrt = attrs[Self.wrt].text
        if wrt == "all" {
            guard ops[1] == ops[2] else { throw TypeError("attention_grad with wrt: all needs self-attention shapes, got \(ops[1]) and \(ops[2])") }
            return TensorType(ops[1].dtype, [.const(3)] + ops[1].shape.dims)
        }
        if wrt == "kv" { return TensorType(ops[2].dtype, [.const(2)] + ops[2].shape.dims) }
        return ops[1 + ["q", "k", "v"].firstIndex(of: wrt)!]
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    /// Per (query, key) pair and channel: dv needs q·k and p·dy (4); dq or dk q·k, dy·v and ds·k (6); dk and dv 8;
    /// all three 10.
    /// ALiBi's bias is recomputed with the scores: 2 per pair and head.
    public func flops(_ c: FlopContext) -> Int {
        let perPair = ["v": 4, "kv": 8, "all": 10][c.node.attrs[Self.wrt].text] ?? 6
        let pairs = Attention.pairs(c, q: c.operands[1], k: c.operands[2])
        return perPair * pairs * c.dim(c.operands[1].shape.dims[2]) + (Attention.hasALiBi(c.node.attrs) ? 2 * pairs * c.node.attrs[Attention.heads] : 0)
    }
}

extension OpKind {
    public static let attention = OpKind("attention")
    public static let attentionGrad = OpKind("attention_grad")
}
