import KilnBasics
import KilnIR

/// Merges linear layers that read the same input into one `linear_stack`:
/// attention's query, key and value projections (or a GLU's gate and up
/// projections) become one matrix product over all their weights, so the
/// input's rows are read once per tile row and the product runs as one
/// parallel loop instead of three. Each original value becomes a `select`
/// of the stack (a view, no copy).
///
/// Merges linears with the same input and the same weight shape whose
/// weights are parameters used by nothing else, with biases on all or none, and no fused
/// activation or residual. The stack takes the place of the last linear of
/// the group (its weights are defined by then), so the pass merges only
/// when no member is used before that point. For inference graphs; the
/// training pipeline keeps linears separate (their backward pass is per layer).
public struct MergeParallelLinears: Pass {
    public let name = "merge-linears"
    public init() {}

    public func run(_ g: inout Graph) throws -> Bool {
        // candidate linears, grouped by (input, weight type, has bias) in graph order
        struct Key: Hashable { var input: Int; var weight: TensorType; var bias: Bool }
        var groups: [Key: [Int]] = [:]
        let uses = g.useCounts()
        var order: [Key] = []
        for (i, n) in g.nodes.enumerated() where n.kind == .linear && n.attrs["activation"] == nil && n.attrs["residual"] == nil {
            // weights read by nothing else (the code generator keeps them in the product's panel layout)
            guard n.operands[1...].allSatisfy({ g.nodes[$0].kind == .param }), uses[n.operands[1]] == 1 else { continue }
            let key = Key(input: n.operands[0], weight: g.nodes[n.operands[1]].type, bias: n.operands.count == 3)
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(i)
        }
        var firstUse = [Int](repeating: Int.max, count: g.nodes.count)
        for (i, n) in g.nodes.enumerated() { for o in n.operands { firstUse[o] = min(firstUse[o], i) } }
        for o in g.outputs { firstUse[o.value] = min(firstUse[o.value], g.nodes.count) }

        // the groups to merge, keyed by their last member
        var mergeAt: [Int: [Int]] = [:]
        var merged = Set<Int>()
        for key in order {
            // the largest subset whose members are all first used after its last member
            let all = groups[key]!
            var members: [Int] = []
            for last in all.reversed() {
                let subset = Array(all.filter { $0 < last && firstUse[$0] > last }.prefix(15)) + [last]
                if subset.count > members.count { members = subset }
            }
            guard members.count >= 2 else { continue }
            mergeAt[members.last!] = members
            merged.formUnion(members)
        }
        guard !mergeAt.isEmpty else { return false }

        var out = Graph(name: g.name, function: g.function, dims: g.dims)
        var map = [Int](repeating: -1, count: g.nodes.count)
        for (i, n) in g.nodes.enumerated() {
            if let members = mergeAt[i] {
                let nodes = members.map { g.nodes[$0] }
                let weights = nodes.map { map[$0.operands[1]] }
                let biases = hasBias(nodes[0]) ? nodes.map { map[$0.operands[2]] } : []
                var attrs = Attributes()
                attrs["count"] = .int(members.count)
                let t = n.type
                let stackType = TensorType(t.dtype, [.const(members.count)] + t.shape.dims)
                let s = out.add(Node(.linearStack, [map[n.operands[0]]] + weights + biases, attrs: attrs, type: stackType, loc: n.loc))
                for (k, m) in members.enumerated() {
                    var a = Attributes()
                    a["index"] = .int(k)
                    map[m] = out.add(Node(.select, [s], attrs: a, type: g.nodes[m].type, name: g.nodes[m].name, loc: g.nodes[m].loc))
                }
                continue
            }
            if merged.contains(i) { continue }
            var copy = n
            copy.operands = n.operands.map { map[$0] }
            map[i] = out.add(copy)
        }
        out.outputs = g.outputs.map { GraphOutput(name: $0.name, value: map[$0.value]) }
        g = out
        return true
    }

    private func hasBias(_ n: Node) -> Bool { n.operands.count == 3 }
}
