import KilnBasics
import KilnIR

/// BigBird's arguments of a kernel call (runtime/kernels/bigbird.c): block, global, random, seed.
func bigBirdArguments(_ attrs: Attributes) -> String? {
    Attention.bigBird(attrs).map { "\($0.block), \($0.global), \($0.random), \($0.seed)" }
}

extension Attention: CLowering {
    var kernelFile: String? { "attention.c" }
    /// Per (batch, head): Kᵀ (hs, S) and V (S, hs rounded up to 64); BigBird: those of a query block's keys, their
    /// mask, positions and blocks.
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        let n = g.nodes[i], k = g.nodes[n.operands[1]].type.shape.dims
        let heads = n.attrs[Self.heads], c = n.type.shape.dims.last?.constValue ?? 0, hs = c / max(heads, 1)
        if Self.bigBird(n.attrs) != nil { return SizeExpr(constant: heads * (hs + GemmKernels.roundUp(hs) + 3)) * k[0] * k[1] }
        return SizeExpr(constant: c + heads * GemmKernels.roundUp(hs)) * k[0] * k[1]
    }
    func call(_ c: CallContext) throws -> String {
        let p = c.p, q = c.type.shape.dims, k = c.type(1).shape.dims, mask = p.count > 3 ? p[3] : "NULL"
        if let bb = bigBirdArguments(c.attrs) {
            return "bigbird_attention_forward(\(c.dst), \(p[0]), \(p[1]), \(p[2]), \(mask), \(c.workspace), \(q[0]), \(q[1]), \(q[2]), \(c.attrs[Self.heads]), \(Self.keyValueHeads(c.attrs)), \(bb));"
        }
        return "attention_forward(\(c.dst), \(p[0]), \(p[1]), \(p[2]), \(mask), \(c.workspace), \(q[0]), \(q[1]), \(k[1]), \(q[2]), \(c.attrs[Self.heads]), \(Self.keyValueHeads(c.attrs)), \(c.attrs[Self.causal] ? 1 : 0), \(Self.hasALiBi(c.attrs) ? 1 : 0), \(c.attrs.value(Self.window) ?? 0));"
    }
}

extension AttentionGrad: CLowering {
    var kernelFile: String? { "attention.c" }
    /// The tiled backward's sizes: W, the slot of a row of P and dS (S's bound rounded up to 64, or local
    /// attention's band 2·window + 11 when that is narrower: `attention_band_of` in attention.c), and the
    /// (batch, key/value head) pairs kept at once (`GemmKernels.attentionGradGroup`).
    private func tiled(_ g: Graph, _ i: Int) -> (w: Int, group: Int) {
        let n = g.nodes[i], q = g.nodes[n.operands[1]].type.shape.dims, k = g.nodes[n.operands[2]].type.shape.dims
        let hs = (q[2].constValue ?? 0) / max(n.attrs[Attention.heads], 1), hs64 = GemmKernels.roundUp(hs)
        var w = GemmKernels.roundUp(g.bound(of: k[1]) ?? k[1].constValue ?? 1)
        if let window = n.attrs.value(Attention.window), 2 * window + 11 < w { w = 2 * window + 11 }
        let t = g.bound(of: q[1]) ?? q[1].constValue, s = g.bound(of: k[1]) ?? k[1].constValue
        let pair = t.flatMap { t in s.map { t * (2 * w + 2 * hs64) + $0 * (2 * hs + hs64) } }
        return (w, GemmKernels.attentionGradGroup(pairElements: pair))
    }
    /// `group` (batch, key/value head) pairs at a time, each P and dS (T rows of W) and q, dout (T, hs64).
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        let n = g.nodes[i], q = g.nodes[n.operands[1]].type.shape.dims
        let hs = (q[2].constValue ?? 0) / max(n.attrs[Attention.heads], 1)
        // BigBird: per (batch, key/value head) a query block's keys gathered (kᵀ, vᵀ, k), their mask, positions, blocks
        if Attention.bigBird(n.attrs) != nil {
            return SizeExpr(constant: Attention.keyValueHeads(n.attrs) * (2 * hs + GemmKernels.roundUp(hs) + 3)) * q[0] * q[1]
        }
        let t = tiled(g, i)
        return SizeExpr(constant: t.group * (2 * t.w + 2 * GemmKernels.roundUp(hs))) * q[1]
    }
    /// Each pair's kᵀ, vᵀ (hs, S) and k (S, hs64).
    func extraWorkspaces(_ g: Graph, _ i: Int, packed: Set<Int>) -> [SizeExpr] {
        let n = g.nodes[i], q = g.nodes[n.operands[1]].type.shape.dims, k = g.nodes[n.operands[2]].type.shape.dims
        let hs = (q[2].constValue ?? 0) / max(n.attrs[Attention.heads], 1)
        if let bb = Attention.bigBird(n.attrs) {
            // per (batch, key/value head) P and dS (block, T64) and the block's q and dout (block, hs64)
            let t64 = GemmKernels.roundUp(g.bound(of: q[1]) ?? q[1].constValue ?? 1)
            return [SizeExpr(constant: Attention.keyValueHeads(n.attrs) * 2 * bb.block * (t64 + GemmKernels.roundUp(hs))) * q[0]]
        }
        return [SizeExpr(constant: tiled(g, i).group * (2 * hs + GemmKernels.roundUp(hs))) * k[1]]
    }
    func call(_ c: CallContext) throws -> String {
        let p = c.p, heads = c.attrs[Attention.heads], causal = c.attrs[Attention.causal] ? 1 : 0
        let alibi = Attention.hasALiBi(c.attrs) ? 1 : 0, kvHeads = Attention.keyValueHeads(c.attrs)
        let mask = p.count > 4 ? p[4] : "NULL", window = c.attrs.value(Attention.window) ?? 0
        let q = c.type(1).shape.dims, k = c.type(2).shape.dims
        let qPlane = Shape(q).elementCount.cExpression, kPlane = Shape(k).elementCount.cExpression
        // where each gradient goes: dq, dk, dv (NULL: not wanted)
        let targets: [String] = switch c.attrs[Self.wrt].text {
        case "all": [c.dst, "\(c.dst) + \(qPlane)", "\(c.dst) + 2 * \(qPlane)"]
        case "kv": ["NULL", c.dst, "\(c.dst) + \(kPlane)"]
        case "q": [c.dst, "NULL", "NULL"]
        case "k": ["NULL", c.dst, "NULL"]
        default: ["NULL", "NULL", c.dst]
        }
        if let bb = bigBirdArguments(c.attrs) {
            return "bigbird_attention_backward(\(targets.joined(separator: ", ")), \(p[0]), \(p[1]), \(p[2]), \(p[3]), \(mask), \(c.workspace), \(c.extraWorkspace(0)), \(q[0]), \(q[1]), \(q[2]), \(heads), \(kvHeads), \(bb));"
        }
        return "attention_backward_tiled(\(targets.joined(separator: ", ")), \(p[0]), \(p[1]), \(p[2]), \(p[3]), \(mask), \(c.workspace), \(c.extraWorkspace(0)), \(q[0]), \(q[1]), \(k[1]), \(q[2]), \(heads), \(kvHeads), \(causal), \(alibi), \(window), \(tiled(c.f.g, c.index).group));"
    }
}
