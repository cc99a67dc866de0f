import KilnBasics
import KilnIR

/// `make-prefill`: the model's `prefill` function — the forward pass of B prompts of T tokens that also fills
/// positions 0 … T-1 of rows 0 … B-1 of the KV cache, and returns each output at the last position only —
/// made from its graph (`KVCachePlan` says when a model has one):
///
/// - each self-attention (`relative_attention` too) writes its keys and values into its caches (`cache_write(kc, k)`, positions 0 … T-1)
///   and attends as in the forward pass; each cross-attention reads the memory that `encode` wrote
///   (`memory_attention`), and the memory side is left out;
/// - each `lstm` runs from zero state and leaves its last hidden state and cell in its states (`cached_lstm`);
/// - each output `[B, T, …]` becomes `take(output) {axis: 1, index: -1}`, `[B, …]`, and the take moves before
///   the row-wise ops that compute the output from one position alone (the final norm and the output head),
///   so they run on the last position only.
public enum MakePrefill {
    public static let name = "make-prefill"

    public static func apply(_ g: Graph) -> Graph? {
        guard let plan = KVCachePlan(g) else { return nil }
        let T = Dim.sym(plan.sequence)
        var attentions = 0, recurrences = 0
        var (b, _) = plan.rebuild(g, function: "prefill", skip: plan.memory) { b, n, i in
            if n.kind == .lstm {
                let (h, c) = plan.recurrentStates(recurrences, of: n, in: &b)
                recurrences += 1
                return b.emit(.cachedLSTM, [n.operands[0], h, c, n.operands[1], n.operands[2]])
            }
            guard n.kind == .attention || n.kind == .relativeAttention else { return nil }
            if let j = plan.crossAttentions.firstIndex(of: i) { return plan.readMemory(j, attention: i, of: g, query: n.operands[0], &b) }
            let (kc, vc) = plan.caches(attentions, of: n, in: &b)
            attentions += 1
            b.emit(.cacheWrite, [kc, n.operands[1]])
            b.emit(.cacheWrite, [vc, n.operands[2]])
            return b.emit(n.kind, n.operands, n.attrs.entries)
        }
        let uses = b.graph.useCounts()
        for (k, o) in b.graph.outputs.enumerated() where b.graph.nodes[o.value].type.shape.dims.dropFirst().first == T {
            // the chain of per-position ops that compute the output (each read only by the next), from the
            // output down to the value x whose last position is taken
            var chain: [Int] = []
            var x = o.value
            while isPerPosition(b.graph.nodes[x], b.graph), x == o.value || uses[x] == 1 {
                let source = b.graph.nodes[x].operands[0]
                guard b.graph.nodes[source].type.shape.dims.dropFirst().first == T else { break }
                chain.append(x)
                x = source
            }
            var v = b.emit(.take, [x], [(Take.axis.name, .int(1)), (Take.index.name, .int(-1))])
            for c in chain.reversed() {
                let n = b.graph.nodes[c]
                v = b.emit(n.kind, [v] + n.operands.dropFirst(), n.attrs.entries)
            }
            b.graph.outputs[k].value = v
        }
        let out = b.graph.pruned().removingUnusedDims()
        return (try? Verifier.verify(out)) != nil ? out : nil
    }

    /// Whether an op computes each position of its first operand from that position alone, its other operands
    /// having no positions (weights): row-wise ops and the unary elementwise ones.
    static func isPerPosition(_ n: Node, _ g: Graph) -> Bool {
        let traits = n.kind.traits
        guard traits.contains(.rowwise) || (traits.contains(.elementwise) && n.operands.count == 1) else { return false }
        return n.operands.dropFirst().allSatisfy { g.nodes[$0].kind == .param }
    }
}
