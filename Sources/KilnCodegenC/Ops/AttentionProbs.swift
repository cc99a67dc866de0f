import KilnBasics
import KilnIR

extension AttentionProbs: CLowering {
    var kernelFile: String? { "attention.c" }
    /// BigBird: per (batch, head) the key blocks of a query block and the mask of the keys they hold.
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        let n = g.nodes[i], q = g.nodes[n.operands[0]].type.shape.dims
        return Attention.bigBird(n.attrs) != nil ? SizeExpr(constant: 2 * n.attrs[Attention.heads]) * q[0] * q[1] : nil
    }
    func call(_ c: CallContext) throws -> String {
        let p = c.p, q = c.type(0).shape.dims, k = c.type(1).shape.dims, mask = p.count > 2 ? p[2] : "NULL"
        if let bb = bigBirdArguments(c.attrs) {
            return "bigbird_attention_probs_forward(\(c.dst), \(p[0]), \(p[1]), \(mask), \(c.workspace), \(q[0]), \(q[1]), \(q[2]), \(c.attrs[Attention.heads]), \(Attention.keyValueHeads(c.attrs)), \(bb));"
        }
        return "attention_probs_forward(\(c.dst), \(p[0]), \(p[1]), \(mask), \(q[0]), \(q[1]), \(k[1]), \(q[2]), \(c.attrs[Attention.heads]), \(Attention.keyValueHeads(c.attrs)), \(c.attrs[Attention.causal] ? 1 : 0), \(Attention.hasALiBi(c.attrs) ? 1 : 0), \(c.attrs.value(Attention.window) ?? 0));"
    }
}

extension RelativeAttentionProbs: CLowering {
    var kernelFile: String? { "relative_attention.c" }
    /// The T5 buckets, then per (batch, head) the R Shaw dots.
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        let n = g.nodes[i]
        return relativeWorkspace(batch: n.type.shape.dims[0], keys: g.nodes[n.operands[1]].type.shape.dims[1],
                                 heads: n.attrs[Attention.heads], perHeadPerKey: 1 + RelativeAttention.distances(n.attrs))
    }
    func call(_ c: CallContext) throws -> String {
        let p = c.p, q = c.type(0).shape.dims, k = c.type(1).shape.dims, mask = p.count > 3 ? p[3] : "NULL"
        return "relative_attention_probs_forward(\(c.dst), \(p[0]), \(p[1]), \(p[2]), \(mask), \(c.workspace), \(q[0]), \(q[1]), \(k[1]), \(q[2]), \(c.attrs[Attention.heads]), \(Attention.keyValueHeads(c.attrs)), \(c.attrs[Attention.causal] ? 1 : 0), \(schemeArguments(c.attrs)));"
    }
}
