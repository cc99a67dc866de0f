import KilnBasics
import KilnIR

/// What the generation functions (`make-prefill`, `make-decode`, `make-encode`) need to know of a model: that
/// its decoder is causal — the output at position t depends only on positions 0 … t of the sequence inputs
/// and on a memory that does not depend on them — and which dims are its batch and sequence. Then keys and
/// values can be cached: each self-attention gets two `state` tensors, `cache.K.k` and `cache.K.v` of shape
/// [R, S, C] (R rows of the context, S the bound of that attention's key length, C its width), which prefill
/// fills from position 0 and each decode step extends at the positions it is given.
///
/// The *sequence inputs* are the inputs [B, T, …] for one batch dim B and one bounded sequence dim T, the
/// length of the causal self-attentions. Every other input is a *memory input* [B, …] (an encoder–decoder's
/// source and its padding mask). The *memory side* is what depends on memory inputs and not on sequence
/// inputs: the encoder. Its values may reach the decoder only as the keys, values and padding mask of a
/// cross-attention, `attention(q, k, v, mask?)` with q on the decoder and k, v [B, S, C] on the memory side;
/// `encode` computes them once per source into the states `memory.J.k`, `memory.J.v` [R, S, C] and
/// `memory.J.mask` [R, S] (J counts the cross-attentions; S is the bound of their length), and the decoder's
/// functions read them there (`memory_attention`).
///
/// An LSTM's recurrence (`lstm`) carries its last hidden state and cell in the states `state.K.h`, `state.K.c`
/// [R, H] instead (`cached_lstm`), so a step costs the same at every position.
///
/// On the decoder side every attention is causal self-attention over T or such a cross-attention, and every
/// other op works on each position alone: elementwise ops, row-wise ops whose rows are not over T (linear,
/// layernorm, softmax over the last axis), embedding lookups, and the position tables (`slice_rows` and
/// `sinusoidal` of T rows).
public struct KVCachePlan {
    public let batch: String
    public let sequence: String
    /// The bound of the sequence dim: positions lie in [0, context).
    public let context: Int
    /// The name of the state dim that counts a context's rows.
    public let rows: String
    /// The nodes on the memory side (inputs included), which `encode` computes and the decoder's functions
    /// drop; empty for a decoder-only model.
    public let memory: Set<Int>
    /// The nodes that depend on the sequence inputs (the decoder), which `encode` drops.
    public let decoder: Set<Int>
    /// The cross-attentions, in graph order.
    public let crossAttentions: [Int]

    public var hasMemory: Bool { !crossAttentions.isEmpty }

    /// The plan for a model graph, or nil when the model is not causal.
    public init?(_ g: Graph) {
        // the sequence dim: that of the causal attentions, or of every input when there is none
        var bt: (String, String)?
        for n in g.nodes where (n.kind == .attention || n.kind == .relativeAttention) && n.attrs[Attention.causal] {
            let d = n.type.shape.dims
            guard case .sym(let b) = d[0], case .sym(let t) = d[1] else { return nil }
            if let (b0, t0) = bt, b0 != b || t0 != t { return nil }
            bt = (b, t)
        }
        if bt == nil {
            for i in g.inputs where Input.Role(rawValue: g.nodes[i].attrs[Input.role].text) != .seed {
                let d = g.nodes[i].type.shape.dims
                guard d.count >= 2, case .sym(let b) = d[0], case .sym(let t) = d[1] else { return nil }
                if let (b0, t0) = bt, b0 != b || t0 != t { return nil }
                bt = (b, t)
            }
        }
        guard let (b, t) = bt, let context = g.bound(of: .sym(t)) else { return nil }
        let B = Dim.sym(b), T = Dim.sym(t)
        // sequence inputs [B, T, …] (never a mask over T: padding is not per position); memory inputs [B, …]
        var decoder = [Bool](repeating: false, count: g.nodes.count), onMemory = decoder
        for i in g.inputs where Input.Role(rawValue: g.nodes[i].attrs[Input.role].text) != .seed {
            let d = g.nodes[i].type.shape.dims
            guard d.first == B else { return nil }
            if d.count >= 2, d[1] == T {
                guard Input.Role(rawValue: g.nodes[i].attrs[Input.role].text) != .mask else { return nil }
                decoder[i] = true
            } else {
                guard !d.contains(T) else { return nil }
                onMemory[i] = true
            }
        }
        guard decoder.contains(true) else { return nil }
        for (i, n) in g.nodes.enumerated() where n.kind != .input {
            decoder[i] = n.operands.contains { decoder[$0] }
            onMemory[i] = !decoder[i] && n.operands.contains { onMemory[$0] }
        }
        var cross: [Int] = []
        for (i, n) in g.nodes.enumerated() where decoder[i] {
            let k = n.kind
            switch k {
            case .input, .embedding: continue
            case .sliceRows, .sinusoidal:
                guard n.attrs.value(SliceRows.rows) == T || n.attrs.value(Sinusoidal.rows) == T, n.operands.count <= 1 else { return nil }
            case .rotary:
                // per position, given the position: decode_step passes it
                guard n.operands.count == 1, Array(g.nodes[n.operands[0]].type.shape.dims.prefix(2)) == [B, T] else { return nil }
            case .act:
                // adaptive computation time weighs each position's steps by its own halting probabilities
                guard n.operands.allSatisfy({ Array(g.nodes[$0].type.shape.dims.prefix(2)) == [B, T] }) else { return nil }
            case .moeRoute, .moeUp, .moeDown:
                // a mixture of experts routes each position by its own router logits: the generation functions
                // drop no token (dropless-routing), so nothing couples the positions
                guard n.operands.dropFirst().allSatisfy({ decoder[$0] || g.nodes[$0].kind == .param }) else { return nil }
            case .routerLoss, .moeLoad:
                // the auxiliary losses and the loads: over the positions of the call
                break
            case .actPonder:
                // the ponder cost: in the generation functions, the mean over the positions of the call
                break
            case .lstm:
                // a recurrence over T: its state (the last hidden state and cell) is carried between calls
                guard Array(g.nodes[n.operands[0]].type.shape.dims.prefix(2)) == [B, T],
                      n.operands.dropFirst().allSatisfy({ g.nodes[$0].kind == .param }) else { return nil }
                continue
            case .relativeAttention:
                // causal self-attention over T whose table (a parameter) enters by distance
                let types = n.operands.map { g.nodes[$0].type }
                guard n.attrs[Attention.causal], n.operands.count == 4, types[0].shape.dims[1] == T, types[1] == types[2],
                      types[1].shape.dims.prefix(2) == types[0].shape.dims.prefix(2),
                      n.operands[1...2].allSatisfy({ decoder[$0] }), g.nodes[n.operands[3]].kind == .param else { return nil }
                continue
            case .attention:
                let types = n.operands.map { g.nodes[$0].type }
                guard types[0].shape.dims[1] == T else { return nil }
                if n.attrs[Attention.causal] {
                    // self-attention over T (keys and values may have fewer heads: grouped-query attention)
                    guard n.operands.count == 3, types[1] == types[2], types[1].shape.dims.prefix(2) == types[0].shape.dims.prefix(2),
                          n.operands.dropFirst().allSatisfy({ decoder[$0] }) else { return nil }
                } else {
                    // cross-attention: keys, values and mask from the memory side, of a bounded length
                    guard n.operands.dropFirst().allSatisfy({ onMemory[$0] }), g.bound(of: types[1].shape.dims[1]) != nil else { return nil }
                    cross.append(i)
                }
                continue
            default:
                if k.traits.contains(.elementwise) { break }
                guard k.traits.contains(.rowwise), g.nodes[n.operands[0]].type.shape.last != T, n.type.shape.last != T else { return nil }
            }
            // apart from cross-attention, the decoder reads nothing of the memory side
            guard !n.operands.contains(where: { onMemory[$0] }) else { return nil }
        }
        if g.outputs.contains(where: { onMemory[$0.value] }) { return nil }
        batch = b; sequence = t; self.context = context
        memory = Set(onMemory.indices.filter { onMemory[$0] })
        self.decoder = Set(decoder.indices.filter { decoder[$0] })
        crossAttentions = cross
        var r = "R"
        while g.dims.contains(where: { $0.name == r }) { r += "R" }
        rows = r
    }

    /// The three states of the j-th cross-attention (`memory.J.k`, `.v`, `.mask`), added to the builder.
    func memoryStates(_ j: Int, of attention: Node, in g: Graph, _ b: inout GraphBuilder) -> (k: Int, v: Int, mask: Int) {
        let k = g.nodes[attention.operands[1]].type
        let length = Dim.const(g.bound(of: k.shape.dims[1])!)
        let type = TensorType(k.dtype, [.sym(rows), length, k.shape.dims[2]])
        return (b.graph.add(Node(.state, type: type, name: "memory.\(j).k")),
                b.graph.add(Node(.state, type: type, name: "memory.\(j).v")),
                b.graph.add(Node(.state, type: TensorType(k.dtype, [.sym(rows), length]), name: "memory.\(j).mask")))
    }

    /// The decoder's j-th cross-attention, node i of g, as `memory_attention` of the query q (in the builder's
    /// graph) over its memory states.
    func readMemory(_ j: Int, attention i: Int, of g: Graph, query q: Int, _ b: inout GraphBuilder) -> Int {
        let s = memoryStates(j, of: g.nodes[i], in: g, &b)
        return b.emit(.memoryAttention, [q, s.k, s.v, s.mask], Attention.headAttributes(g.nodes[i].attrs))
    }

    /// The two state tensors of the k-th recurrence of the graph (`lstm`, in graph order), `state.K.h` and
    /// `state.K.c` [R, H], added to the builder.
    func recurrentStates(_ k: Int, of lstm: Node, in b: inout GraphBuilder) -> (h: Int, c: Int) {
        let type = TensorType(lstm.type.dtype, [.sym(rows), lstm.type.shape.dims[2]])
        return (b.graph.add(Node(.state, type: type, name: "state.\(k).h")), b.graph.add(Node(.state, type: type, name: "state.\(k).c")))
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
    /// (given the builder and the node with its operands already mapped, -1 for a skipped one); other nodes
    /// are copied, their types inferred again from the new operands; the nodes in `skip` are left out.
    func rebuild(_ g: Graph, function: String, skip: Set<Int> = [],
                 _ rewrite: (inout GraphBuilder, Node, Int) throws -> Int?) rethrows -> (GraphBuilder, map: [Int]) {
        var out = Graph(name: g.name, function: function, dims: g.dims)
        if !out.dims.contains(where: { $0.name == rows }) { out.dims.append(SymbolicDim(rows)) }
        var b = GraphBuilder(graph: out)
        var map = [Int](repeating: -1, count: g.nodes.count)
        for (i, n) in g.nodes.enumerated() where !skip.contains(i) {
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
        b.graph.outputs = g.outputs.filter { map[$0.value] >= 0 }.map { GraphOutput(name: $0.name, value: map[$0.value]) }
        return (b, map)
    }
}

extension Graph {
    /// The graph without the nodes that no output or effect needs (inputs stay), so that a dim only they
    /// mention (the source length of an encoder the decoder's functions leave out) leaves too.
    func pruned() -> Graph {
        var g = self
        _ = try? DeadCodeElimination().run(&g)
        return g
    }

    /// The graph without the symbolic dims that no node's type mentions.
    public func removingUnusedDims() -> Graph {
        var used = Set<String>()
        for n in nodes { for d in n.type.shape.dims { if case .sym(let s) = d { used.insert(s) } } }
        var g = self
        g.dims = dims.filter { used.contains($0.name) }
        return g
    }
}
