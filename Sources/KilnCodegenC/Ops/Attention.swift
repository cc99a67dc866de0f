import KilnBasics
import KilnIR

extension Attention: CLowering {
    var kernelFile: String? { "attention.c" }
    /// Per (batch, head): Kᵀ (hs, S) and V (S, hs rounded up to 64).
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        let n = g.nodes[i], k = g.nodes[n.operands[1]].type.shape.dims
        let heads = n.attrs[Self.heads], c = n.type.shape.dims.last?.constValue ?? 0, hs = c / max(heads, 1)
        return SizeExpr(constant: c + heads * GemmKernels.roundUp(hs)) * k[0] * k[1]
    }
    func call(_ c: CallContext) throws -> String {
        let p = c.p, q = c.type.shape.dims, k = c.type(1).shape.dims, mask = p.count > 3 ? p[3] : "NULL"
        return "attention_forward(\(c.dst), \(p[0]), \(p[1]), \(p[2]), \(mask), \(c.workspace), \(q[0]), \(q[1]), \(k[1]), \(q[2]), \(c.attrs[Self.heads]), \(Self.keyValueHeads(c.attrs)), \(c.attrs[Self.causal] ? 1 : 0), \(Self.hasALiBi(c.attrs) ? 1 : 0), \(c.attrs.value(Self.window) ?? 0));"
    }
}

extension AttentionGrad: CLowering {
    var kernelFile: String? { "attention.c" }
    /// All three gradients: ATT_BWD_GROUP (batch, head) pairs at a time, each kᵀ, vᵀ (hs, T), P, dS (T, T64),
    /// q, k, dout (T, hs64), where T64 is at most the context rounded up to 64. One of them, or all three of local
    /// attention (one after another): two rows of S per (batch, head).
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        let n = g.nodes[i], k = g.nodes[n.operands[2]].type.shape.dims, heads = n.attrs[Attention.heads]
        guard n.attrs[Self.wrt] == "all", n.attrs.value(Attention.window) == nil else { return SizeExpr(constant: 2 * heads) * k[0] * k[1] }
        let hs = (k[2].constValue ?? 0) / max(heads, 1)
        let ctx = GemmKernels.roundUp(g.bound(of: k[1]) ?? k[1].constValue ?? 1)
        return SizeExpr(constant: GemmKernels.attentionGradGroup * (2 * hs + 2 * ctx + 3 * GemmKernels.roundUp(hs))) * k[1]
    }
    func call(_ c: CallContext) throws -> String {
        let p = c.p, heads = c.attrs[Attention.heads], causal = c.attrs[Attention.causal] ? 1 : 0
        let alibi = Attention.hasALiBi(c.attrs) ? 1 : 0
        let mask = p.count > 4 ? p[4] : "NULL"
        let window = c.attrs.value(Attention.window) ?? 0
        if c.attrs[Self.wrt] == "all" && window > 0 {
            // local attention: the three row-by-row passes, each O(T · window) (the fused pass keeps T x T scores)
            let q = c.type(1).shape.dims, plane = Shape(q).elementCount.cExpression
            return (0..<3).map { w in
                "attention_backward(\(c.dst) + \(w) * \(plane), \(p[0]), \(p[1]), \(p[2]), \(p[3]), \(mask), \(c.workspace), \(q[0]), \(q[1]), \(q[1]), \(q[2]), \(heads), \(heads), \(causal), \(alibi), \(w), \(window));"
            }.joined(separator: "\n")
        }
        if c.attrs[Self.wrt] == "all" {
            let q = c.type(1).shape.dims
            return "attention_backward_all(\(c.dst), \(p[0]), \(p[1]), \(p[2]), \(p[3]), \(mask), \(c.workspace), \(q[0]), \(q[1]), \(q[2]), \(heads), \(causal), \(alibi));"
        }
        let q = c.type(1).shape.dims, k = c.type(2).shape.dims
        let wrt = ["q", "k", "v"].firstIndex(of: c.attrs[Self.wrt].text)!
        return "attention_backward(\(c.dst), \(p[0]), \(p[1]), \(p[2]), \(p[3]), \(mask), \(c.workspace), \(q[0]), \(q[1]), \(k[1]), \(q[2]), \(heads), \(Attention.keyValueHeads(c.attrs)), \(causal), \(alibi), \(wrt), \(window));"
    }
}
