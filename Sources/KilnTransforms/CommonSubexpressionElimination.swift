import KilnBasics
import KilnIR

/// Common-subexpression elimination: two pure nodes with the same op,
/// attributes and operands compute the same value, so later uses of the
/// second are redirected to the first. `add(a, b)` and `add(b, a)` match
/// because `add` is commutative. The redundant node becomes dead and is
/// dropped here.
public struct CommonSubexpressionElimination: Pass {
    public let name = "cse"
    public init() {}

    private struct Key: Hashable {
        var kind: OpKind
        var operands: [Int]
        var attrs: Attributes
        var type: TensorType
    }

    public func run(_ g: inout Graph) throws -> Bool {
        var seen: [Key: Int] = [:]
        var canonical = Array(g.nodes.indices)
        var keep = [Bool](repeating: true, count: g.nodes.count)
        var changed = false
        for (i, n) in g.nodes.enumerated() {
            var ops = n.operands.map { canonical[$0] }
            guard n.kind.isPure else { continue }
            if n.kind.isCommutative { ops.sort() }
            let key = Key(kind: n.kind, operands: ops, attrs: n.attrs, type: n.type)
            if let first = seen[key] {
                canonical[i] = first
                keep[i] = false
                changed = true
            } else {
                seen[key] = i
            }
        }
        guard changed else { return false }
        var replace: [Int: Int] = [:]
        for (i, c) in canonical.enumerated() where c != i { replace[i] = c }
        g = g.compacted(keep: keep, replace: replace)
        return true
    }
}
