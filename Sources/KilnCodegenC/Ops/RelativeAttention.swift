import KilnBasics
import KilnIR

/// The arguments that say how the table enters: Shaw's clip (0 for T5), T5's buckets and max_distance (0 for
/// Shaw).
func schemeArguments(_ attrs: Attributes) -> String {
    "\(attrs.value(RelativeAttention.clip) ?? 0), \(attrs.value(RelativeAttention.buckets) ?? 0), \(attrs.value(RelativeAttention.maxDistance) ?? 0)"
}

/// Scratch of `relative_attention.c` for queries of batch b over s keys: the T5 buckets (at most 2s, as the
/// queries are no more than the keys) and per (batch, head) `perHead` elements per key, bounded as b·s·(…).
func relativeWorkspace(batch: Dim, keys: Dim, heads: Int, perHeadPerKey: Int) -> SizeExpr {
    SizeExpr(constant: 3 + heads * perHeadPerKey) * batch * keys
}

extension RelativeAttention: CLowering {
    var kernelFile: String? { "relative_attention.c" }
    /// Per (batch, head): a row of probabilities and the 2R sums by distance (R ≤ R · S).
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        let n = g.nodes[i]
        return relativeWorkspace(batch: n.type.shape.dims[0], keys: g.nodes[n.operands[1]].type.shape.dims[1],
                                 heads: n.attrs[Attention.heads], perHeadPerKey: 1 + 2 * Self.distances(n.attrs))
    }
    func call(_ c: CallContext) throws -> String {
        let p = c.p, q = c.type.shape.dims, k = c.type(1).shape.dims, mask = p.count > 4 ? p[4] : "NULL"
        return "relative_attention_forward(\(c.dst), \(p[0]), \(p[1]), \(p[2]), \(p[3]), \(mask), NULL, \(c.workspace), \(q[0]), \(q[1]), \(k[1]), \(q[2]), \(c.attrs[Attention.heads]), \(Attention.keyValueHeads(c.attrs)), \(c.attrs[Attention.causal] ? 1 : 0), \(schemeArguments(c.attrs)));"
    }
}

extension CachedRelativeAttention: CLowering {
    var kernelFile: String? { "relative_attention.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        let n = g.nodes[i]
        return relativeWorkspace(batch: n.type.shape.dims[0], keys: g.nodes[n.operands[1]].type.shape.dims[1],
                                 heads: n.attrs[Attention.heads], perHeadPerKey: 1 + 2 * RelativeAttention.distances(n.attrs))
    }
    func call(_ c: CallContext) throws -> String {
        let p = c.p, q = c.type.shape.dims, cache = c.type(1).shape.dims
        return "relative_attention_forward(\(c.dst), \(p[0]), \(p[1]), \(p[2]), \(p[3]), NULL, \(p[4]), \(c.workspace), \(q[0]), \(q[1]), \(cache[1]), \(q[2]), \(c.attrs[Attention.heads]), \(Attention.keyValueHeads(c.attrs)), 1, \(schemeArguments(c.attrs)));"
    }
}

extension RelativeAttentionGrad: CLowering {
    var kernelFile: String? { "relative_attention.c" }
    /// Per (batch, head): p, dp (2S) and 3R row sums; for the table the partial sums, Shaw's 2R per query row
    /// or T5's one per distance (< 2S).
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        let n = g.nodes[i], r = RelativeAttention.distances(n.attrs)
        let table = n.attrs[Self.wrt] == "table" ? 2 * max(r, 1) : 0
        return relativeWorkspace(batch: g.nodes[n.operands[1]].type.shape.dims[0], keys: g.nodes[n.operands[2]].type.shape.dims[1],
                                 heads: n.attrs[Attention.heads], perHeadPerKey: 2 + 3 * r + table)
    }
    func call(_ c: CallContext) throws -> String {
        let p = c.p, q = c.type(1).shape.dims, k = c.type(2).shape.dims, mask = p.count > 5 ? p[5] : "NULL"
        let wrt = ["q", "k", "v", "table"].firstIndex(of: c.attrs[Self.wrt].text)!
        return "relative_attention_backward(\(c.dst), \(p[0]), \(p[1]), \(p[2]), \(p[3]), \(p[4]), \(mask), \(c.workspace), \(q[0]), \(q[1]), \(k[1]), \(q[2]), \(c.attrs[Attention.heads]), \(Attention.keyValueHeads(c.attrs)), \(c.attrs[Attention.causal] ? 1 : 0), \(schemeArguments(c.attrs)), \(wrt));"
    }
}
