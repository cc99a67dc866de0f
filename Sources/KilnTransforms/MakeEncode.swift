import KilnBasics
import KilnIR

/// `make-encode`: the `encode` function of an encoder–decoder model — the memory side of its graph (the
/// encoder, on the memory inputs alone), ending in writes of what the decoder's cross-attentions read into
/// their states: `cache_write(memory.J.k, k)`, `cache_write(memory.J.v, v)` and
/// `cache_write_mask(memory.J.mask, k, mask?)` for rows 0 … B-1 (`KVCachePlan` says when a model has a
/// memory). It has no outputs; `prefill` and `decode_step` then run the decoder against that memory, so a
/// source is encoded once however many tokens are decoded from it, and a beam copies its source's row.
public enum MakeEncode {
    public static let name = "make-encode"

    public static func apply(_ g: Graph) -> Graph? {
        guard let plan = KVCachePlan(g), plan.hasMemory else { return nil }
        var (b, map) = plan.rebuild(g, function: "encode", skip: plan.decoder) { _, _, _ in nil }
        for (j, i) in plan.crossAttentions.enumerated() {
            let n = g.nodes[i]
            let s = plan.memoryStates(j, of: n, in: g, &b)
            let k = map[n.operands[1]], v = map[n.operands[2]]
            b.emit(.cacheWrite, [s.k, k])
            b.emit(.cacheWrite, [s.v, v])
            b.emit(.cacheWriteMask, [s.mask, k] + (n.operands.count > 3 ? [map[n.operands[3]]] : []))
        }
        b.graph.outputs = []
        let out = b.graph.pruned().removingUnusedInputs().removingUnusedDims()
        return (try? Verifier.verify(out)) != nil ? out : nil
    }
}
