import KilnBasics
import KilnIR

/// `make-attention-maps`: the `attention_maps` function of a model — its forward graph, with the inputs of
/// `forward`, whose outputs are the weights of every attention: `attention.J` = `attention_probs` (or
/// `relative_attention_probs`) of the J-th attention in graph order, `[B, heads, T, S]`. Graph order is the
/// order the model computes them in: layer by layer, an encoder's before the decoder that reads it, a
/// decoder layer's self-attention before its cross-attention. What no map needs (the last layer's feed-forward
/// block, the logits) is pruned. Nil when the model has no attention (an LSTM).
public enum MakeAttentionMaps {
    public static let name = "make-attention-maps"
    public static let function = "attention_maps"

    /// The attentions of g, in order.
    public static func attentions(_ g: Graph) -> [Int] {
        g.nodes.indices.filter { g.nodes[$0].kind == .attention || g.nodes[$0].kind == .relativeAttention }
    }

    public static func apply(_ g: Graph) -> Graph? {
        let found = attentions(g)
        guard !found.isEmpty else { return nil }
        var b = GraphBuilder(graph: g)
        b.graph.function = function
        var outputs: [GraphOutput] = []
        for (j, i) in found.enumerated() {
            let n = g.nodes[i], o = n.operands
            let attrs = n.attrs.entries
            let p = n.kind == .attention
                ? b.emit(.attentionProbs, [o[0], o[1]] + o.dropFirst(3), attrs)
                : b.emit(.relativeAttentionProbs, [o[0], o[1]] + o.dropFirst(3), attrs)
            b.graph.nodes[p].loc = n.loc
            outputs.append(GraphOutput(name: "attention.\(j)", value: p))
        }
        b.graph.outputs = outputs
        let out = b.graph.pruned().removingUnusedInputs().removingUnusedDims()
        return (try? Verifier.verify(out)) != nil ? out : nil
    }
}
