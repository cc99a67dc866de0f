import KilnBasics
import KilnIR

/// What the generation functions (`make-prefill`, `make-decode`) need to know of a model: that it is
/// causal — the output at position t depends only on positions 0 … t — and which dims are its batch and
/// sequence. Then keys and values can be cached: each attention gets two `state` tensors, `cache.K.k` and
/// `cache.K.v` of shape [R, S, C] (R rows of the context, S the bound of that attention's key length, C its
/// width), which prefill fills from position 0 and each decode step extends at the positions it is given.
///
/// A model is causal when every input is [B, T, …] for one batch dim B and one bounded sequence dim T, every
/// attention is causal self-attention over T, and every other op works on each position alone: elementwise
/// ops, row-wise ops whose rows are not over T (linear, layernorm, softmax over the last axis), embedding
/// lookups, and the position tables (`slice_rows` and `sinusoidal` of T rows).
public struct KVCachePlan {
    public let batch: String
    public let sequence: String
    /// The bound of the sequence dim: positions lie in [0, context).
    public let context: Int
    /// The name of the state dim that counts a context's rows.
    public let rows: String

    /// The plan for a model graph, or nil when the model is not causal.
    public init?(_ g: Graph) {
        // the batch and sequence dims, from the inputs
        var bt: (String, String)?
        for i in g.inputs {
            let d = g.nodes[i].type.shape.dims
            guard d.count >= 2, case .sym(let b) = d[0], case .sym(let t) = d[1], g.bound(of: d[1]) != nil else { return nil }
            guard Input.Role(rawValue: g.nodes[i].attrs[Input.role].text) != .mask else { return nil }
            if let (b0, t0) = bt, b0 != b || t0 != t { return nil }
            bt = (b, t)
        }
        guard let (b, t) = bt, let context = g.bound(of: .sym(t)) else { return nil }
        let T = Dim.sym(t)
        for n in g.nodes {
            let k = n.kind
            switch k {
            case .input, .param, .scalar, .embedding: continue
            case .sliceRows, .sinusoidal:
                guard n.attrs.value(SliceRows.rows) == T || n.attrs.value(Sinusoidal.rows) == T, n.operands.count <= 1 else { return nil }
            case .attention:
                let types = n.operands.map { g.nodes[$0].type }
                guard n.operands.count == 3, n.attrs[Attention.causal], types[0].shape.dims[1] == T, types[1] == types[0], types[2] == types[0] else { return nil }
            default:
                if k.traits.contains(.elementwise) { continue }
                guard k.traits.contains(.rowwise), g.nodes[n.operands[0]].type.shape.last != T, n.type.shape.last != T else { return nil }
            }
        }
        batch = b; sequence = t; self.context = context
        var r = "R"
        while g.dims.contains(where: { $0.name == r }) { r += "R" }
        rows = r
    }

    /// The two state tensors of the k-th attention of the graph (in graph order), added to the builder.
    func caches(_ k: Int, of attention: Node, in b: inout GraphBuilder) -> (Int, Int) {
        let c = b.graph.nodes[attention.operands[1]].type
        let type = TensorType(c.dtype, [.sym(rows), .const(context), c.shape.dims[2]])
        let kc = b.graph.add(Node(.state, type: type, name: "cache.\(k).k"))
        let vc = b.graph.add(Node(.state, type: type, name: "cache.\(k).v"))
        return (kc, vc)
    }

    /// The model's graph rebuilt into a function of that name, node by node: `rewrite` may replace a node
    /// (given the builder and the node with its operands already mapped); other nodes are copied, their types
    /// inferred again from the new operands.
    func rebuild(_ g: Graph, function: String,
                 _ rewrite: (inout GraphBuilder, Node, Int) throws -> Int?) rethrows -> GraphBuilder {
        var out = Graph(name: g.name, function: function, dims: g.dims)
        if !out.dims.contains(where: { $0.name == rows }) { out.dims.append(SymbolicDim(rows)) }
        var b = GraphBuilder(graph: out)
        var map = [Int](repeating: -1, count: g.nodes.count)
        for (i, n) in g.nodes.enumerated() {
            var m = n
            m.operands = n.operands.map { map[$0] }
            if let r = try rewrite(&b, m, i) { map[i] = r; continue }
            if m.kind.hasDeclaredType {
                map[i] = b.graph.add(m)
            } else {
                map[i] = b.emit(m.kind, m.operands, m.attrs.entries, name: m.name)
                b.graph.nodes[map[i]].loc = n.loc
            }
        }
        b.graph.outputs = g.outputs.map { GraphOutput(name: $0.name, value: map[$0.value]) }
        return b
    }
}

extension Graph {
    /// The graph without the symbolic dims that no node's type mentions.
    public func removingUnusedDims() -> Graph {
        var used = Set<String>()
        for n in nodes { for d in n.type.shape.dims { if case .sym(let s) = d { used.insert(s) } } }
        var g = self
        g.dims = dims.filter { used.contains($0.name) }
        return g
    }
}
