import KilnBasics
import KilnIR

/// Elementwise fusion: a tree of elementwise ops (`add`, `sub`, `mul`, `div`,
/// `scale`, the activations and their gradients) whose inner values have no other use
/// becomes one `fused` op, `fused(%a, %b, %c) {expr: "mul(add(x0, x1), relu(x2))"}`,
/// which the C backend runs as one loop: each operand is read once per element
/// and the intermediate values never reach memory.
///
/// A value joins the op that reads it only when it has that one use, is not a
/// graph output, and has the reader's exact type (so every op of the tree runs
/// once per output element, as before). The exception: an activation of one
/// value whose readers are all elementwise ops of its type is computed again
/// in each of them (a few FLOPs instead of a pass over memory). The tree's operands may repeat along
/// the output (a suffix broadcast, `[B, T, C] + [C]`); an op that needs general
/// broadcasting stays on its own. Runs last, after the epilogue fusions have
/// taken the activations and residual adds they can, on inference and training
/// graphs (the backward graph's ops are already explicit, so nothing needs a
/// derivative of a `fused` op).
public struct FuseElementwise: Pass {
    public let name = "fuse-elementwise"
    public init() {}

    /// At most this many operands (the op's arity); a larger tree, or one nested deeper than
    /// `FusedExpr.maxDepth`, stays as it is.
    static let maxOperands = 16

    public func run(_ g: inout Graph) throws -> Bool {
        let uses = g.useCounts()
        let outputs = Set(g.outputs.map(\.value))
        var user = [Int](repeating: -1, count: g.nodes.count)
        for (j, n) in g.nodes.enumerated() { for o in n.operands { user[o] = j } }

        func fusible(_ i: Int) -> Bool {
            let n = g.nodes[i]
            guard FusedExpr.canFuse(n.kind), n.type.dtype.isFloat else { return false }
            if n.kind == .scale, n.attrs.float("factor")?.isFinite != true { return false }
            let out = n.type.shape.dims
            return n.operands.allSatisfy { o in
                let d = g.nodes[o].type.shape.dims
                return d.count <= out.count && Array(out.suffix(d.count)) == d
            }
        }
        let canFuse = g.nodes.indices.map(fusible)
        // absorbed[i]: node i is computed inside the op that reads it
        let absorbed = g.nodes.indices.map { i in
            canFuse[i] && uses[i] == 1 && !outputs.contains(i) && user[i] >= 0 && canFuse[user[i]]
                && g.nodes[user[i]].type == g.nodes[i].type
        }

        // recomputed[i]: an activation of one value read by several elementwise ops (SwiGLU's silu(gate), read by
        // the product and by the product's gradient) is computed again inside each of them: an activation costs
        // a few FLOPs, its own pass a write and a read of the whole tensor
        let recomputed = g.nodes.indices.map { i in
            let n = g.nodes[i]
            guard FusedExpr.unaryKinds.contains(n.kind), n.operands.count == 1, uses[i] >= 2, !outputs.contains(i),
                  g.nodes[n.operands[0]].type == n.type, !absorbed[n.operands[0]] else { return false }
            // several readers, each an elementwise op of its type that reads it once
            let readers = g.nodes.indices.filter { g.nodes[$0].operands.contains(i) }
            return readers.count >= 2 && readers.allSatisfy {
                canFuse[$0] && g.nodes[$0].type == n.type && g.nodes[$0].operands.filter { $0 == i }.count == 1
            }
        }
        var inlined = [Int](repeating: 0, count: g.nodes.count)

        var keep = [Bool](repeating: true, count: g.nodes.count)
        var changed = false
        for root in g.nodes.indices where canFuse[root] && !absorbed[root] && !recomputed[root]
            && g.nodes[root].operands.contains(where: { absorbed[$0] || recomputed[$0] }) {
            var leaves: [Int] = []
            var inner: [Int] = []
            var again: [Int] = []
            // the tree below node i at the given depth; nil past the depth limit (the walk stops there)
            func build(_ i: Int, _ depth: Int) -> FusedExpr? {
                if i != root && recomputed[i] {
                    again.append(i)
                    let x = g.nodes[i].operands[0]
                    let k = leaves.firstIndex(of: x) ?? { leaves.append(x); return leaves.count - 1 }()
                    return .unary(g.nodes[i].kind, .operand(k))
                }
                if i != root && !absorbed[i] {
                    if let k = leaves.firstIndex(of: i) { return .operand(k) }
                    leaves.append(i)
                    return .operand(leaves.count - 1)
                }
                guard depth < FusedExpr.maxDepth else { return nil }
                if i != root { inner.append(i) }
                let n = g.nodes[i]
                guard let a = build(n.operands[0], depth + 1) else { return nil }
                switch n.kind {
                case .scale: return .scale(a, n.attrs.float("factor")!)
                case _ where FusedExpr.binaryKinds.contains(n.kind):
                    guard let b = build(n.operands[1], depth + 1) else { return nil }
                    return .binary(n.kind, a, b)
                default: return .unary(n.kind, a)
                }
            }
            guard let e = build(root, 0), leaves.count <= Self.maxOperands else { continue }
            let old = g.nodes[root]
            g.nodes[root] = Node(.fused, leaves, attrs: Attributes([("expr", .string(e.description))]), type: old.type, loc: old.loc)
            for i in inner { keep[i] = false }
            for i in again { inlined[i] += 1 }
            changed = true
        }
        // an activation computed again in all of its readers is not computed on its own
        for i in g.nodes.indices where recomputed[i] && inlined[i] == uses[i] { keep[i] = false }
        guard changed else { return false }
        g = g.compacted(keep: keep)
        return true
    }
}
