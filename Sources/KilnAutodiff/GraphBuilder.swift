import KilnBasics
import KilnIR

/// Appends type-checked nodes to a graph (used by the VJP rules).
struct GraphBuilder {
    var graph: Graph

    mutating func emit(_ kind: OpKind, _ operands: [Int], _ attrs: [(String, AttrValue)] = []) -> Int {
        let a = Attributes(attrs)
        let types = operands.map { graph.nodes[$0].type }
        do {
            let t = try kind.inferType(types, a, bound: graph.bound(of:))
            return graph.add(Node(kind, operands, attrs: a, type: t))
        } catch {
            // A VJP rule built an ill-typed node: a bug in Kiln, not in the model.
            preconditionFailure("autodiff built an invalid \(kind.rawValue): \(error) for operands \(types)")
        }
    }

    func type(_ i: Int) -> TensorType { graph.nodes[i].type }

    /// `sum_to(g, like)`, or `g` itself when no dims were broadcast.
    mutating func sumTo(_ g: Int, like: Int) -> Int {
        type(g).shape == type(like).shape ? g : emit(.sumTo, [g, like])
    }
}
