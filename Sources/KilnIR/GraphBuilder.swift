import KilnBasics

/// Appends type-checked nodes to a graph: what rewrites of the compiler (derivatives, entry points) build
/// IR with. A node that fails its type rule here is a bug in Kiln, not in the model, so it stops.
public struct GraphBuilder {
    public var graph: Graph
    public init(graph: Graph) { self.graph = graph }

    @discardableResult
    public mutating func emit(_ kind: OpKind, _ operands: [Int], _ attrs: [(String, AttrValue)] = [], name: String? = nil) -> Int {
        let a = Attributes(attrs)
        let types = operands.map { graph.nodes[$0].type }
        do {
            let t = try kind.inferType(types, a, bound: graph.bound(of:))
            return graph.add(Node(kind, operands, attrs: a, type: t, name: name))
        } catch {
            preconditionFailure("Kiln built an invalid \(kind.name): \(error) for operands \(types)")
        }
    }

    public func type(_ i: Int) -> TensorType { graph.nodes[i].type }

    /// `sum_to(g, like)`, or `g` itself when no dims were broadcast.
    public mutating func sumTo(_ g: Int, like: Int) -> Int {
        type(g).shape == type(like).shape ? g : emit(.sumTo, [g, like])
    }
}

/// The work of one op's vector–Jacobian product (`OpDefinition.differentiate`): the node, the gradient of
/// the loss with respect to its result, and the operand gradients the rule gives.
public struct Differentiation {
    /// The graph being extended with the backward pass.
    public var builder: GraphBuilder
    /// The node being differentiated.
    public let index: Int
    /// d(loss)/d(node), a node of the same type as the node.
    public let gradient: Int
    let wanted: (Int) -> Bool
    /// (operand position, its gradient) as the rule gives them.
    public private(set) var given: [(Int, Int)] = []

    public init(builder: GraphBuilder, index: Int, gradient: Int, wanted: @escaping (Int) -> Bool) {
        self.builder = builder; self.index = index; self.gradient = gradient; self.wanted = wanted
    }

    /// The rule of a backward op: it is not differentiated again.
    public struct NotDifferentiable: Error, CustomStringConvertible {
        public let op: String
        public var description: String { "no second derivatives: \(op) has no derivative" }
    }
    public var notDifferentiable: NotDifferentiable { NotDifferentiable(op: node.kind.name) }

    public var node: Node { builder.graph.nodes[index] }
    /// The node's operands.
    public var operands: [Int] { node.operands }
    /// Whether operand k needs a gradient (it lies on a path from a parameter to the loss).
    public func wants(_ k: Int) -> Bool { k < operands.count && wanted(operands[k]) }
    public func type(_ i: Int) -> TensorType { builder.type(i) }

    public mutating func emit(_ kind: OpKind, _ operands: [Int], _ attrs: [(String, AttrValue)] = []) -> Int {
        builder.emit(kind, operands, attrs)
    }
    /// `g` summed down to the shape of `like` (the gradient of a broadcast operand).
    public mutating func sumTo(_ g: Int, like: Int) -> Int { builder.sumTo(g, like: like) }
    /// A zero gradient for operand k (the operand times a constant 0): what a step function gives.
    public mutating func zeroGradient(_ k: Int) -> Int {
        emit(.mul, [operands[k], emit(.scalar, [], [(Scalar.value.name, .float(0))])])
    }
    /// Gives operand k the gradient g.
    public mutating func give(_ k: Int, _ g: Int) { given.append((k, g)) }
}

/// A graph that cannot be differentiated (an op that only later passes create, for example).
public struct DifferentiationError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
