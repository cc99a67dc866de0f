import KilnBasics
import KilnIR

/// Reverse-mode automatic differentiation on the IR, and the training entry points built with it.
///
/// `trainStep(from:objective:)` turns a model's graph into its `train_step` function: it adds the
/// objective's loss (its target inputs and loss ops, `Objectives.swift`), then walks the nodes in reverse
/// order, applying each op's vector–Jacobian product (`OpDefinition.differentiate`). A value used several
/// times receives one gradient contribution per use; they are summed in one place, in use order, when the
/// walk reaches the value. Outputs: `loss`, then `grad.NAME` for every parameter in weights-file order.
/// `loss(from:objective:)` is the `loss` function: the same loss without the backward pass (evaluation).
public enum Autodiff {
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var description: String
        public init(description: String) { self.description = description }
    }

    /// The `train_step` function: loss and the gradient of every parameter.
    public static func trainStep(from model: Graph, objective: Objective) throws -> Graph {
        var b = GraphBuilder(graph: model)
        b.graph.function = "train_step"
        b.graph.outputs = []
        let loss = try Objectives.build(objective, &b, outputs: model.outputs)
        let params = model.parameters
        let grads = try backward(&b, loss: loss, wrt: params)
        b.graph.outputs = [GraphOutput(name: "loss", value: loss)]
        for (p, g) in zip(params, grads) {
            b.graph.outputs.append(GraphOutput(name: "grad." + b.graph.nodes[p].name!, value: g))
        }
        b.graph = b.graph.removingUnusedInputs()
        try Verifier.verify(b.graph)
        return b.graph
    }

    /// The `loss` function: the objective's loss of a batch, without gradients (for validation).
    public static func loss(from model: Graph, objective: Objective) throws -> Graph {
        var b = GraphBuilder(graph: model)
        b.graph.function = "loss"
        b.graph.outputs = []
        let loss = try Objectives.build(objective, &b, outputs: model.outputs)
        b.graph.outputs = [GraphOutput(name: "loss", value: loss)]
        b.graph = b.graph.removingUnusedInputs()
        try Verifier.verify(b.graph)
        return b.graph
    }

    /// Appends the backward pass of scalar `loss` and returns the gradient
    /// node of each node in `wrt`.
    static func backward(_ b: inout GraphBuilder, loss: Int, wrt: [Int]) throws -> [Int] {
        let n = b.graph.nodes.count
        // Which values lie on a path from a parameter to the loss.
        var needs = [Bool](repeating: false, count: n)
        for p in wrt { needs[p] = true }
        for i in 0..<n where !needs[i] {
            let k = b.graph.nodes[i]
            needs[i] = k.type.dtype.isFloat && k.operands.contains { needs[$0] }
        }
        var contributions: [Int: [Int]] = [loss: [b.emit(.scalar, [], [("value", .float(1))])]]
        var gradient: [Int: Int] = [:]
        for i in stride(from: loss, through: 0, by: -1) where needs[i] {
            guard let parts = contributions.removeValue(forKey: i) else { continue }
            // The one place where the contributions of several uses are summed.
            var g = parts[0]
            for p in parts.dropFirst() { g = b.emit(.add, [g, p]) }
            gradient[i] = g
            // The op's vector–Jacobian product (its definition's `differentiate`); the graph is handed to it
            // and back without a copy.
            var d = Differentiation(builder: b, index: i, gradient: g, wanted: { needs[$0] })
            b = GraphBuilder(graph: Graph(name: ""))
            do { try d.node.kind.definition.differentiate(&d) } catch {
                throw Failure(description: "\(error)")
            }
            b = d.builder
            for (k, dg) in d.given {
                contributions[b.graph.nodes[i].operands[k], default: []].append(dg)
            }
        }
        return try wrt.map { p in
            guard let g = gradient[p] else { throw Failure(description: "parameter '\(b.graph.nodes[p].name ?? "")' does not affect the loss") }
            return g
        }
    }
}
