import KilnBasics

/// A symbolic dimension of the graph (batch, sequence), with an optional
/// inclusive upper bound (`T <= 256`) used for memory planning and checks.
public struct SymbolicDim: Sendable, Hashable {
    public var name: String
    public var bound: Int?
    public init(_ name: String, bound: Int? = nil) { self.name = name; self.bound = bound }
}

/// One operation in the graph. Nodes are kept in topological order and
/// refer to their operands by index, so a graph is an SSA list.
public struct Node: Sendable {
    public var kind: OpKind
    public var operands: [Int]
    public var attrs: Attributes
    public var type: TensorType
    /// The external name of an `input` or `param` (`"layers.0.attention.query.weight"`).
    public var name: String?
    /// Where in the model file this node came from (for diagnostics and profiles).
    public var loc: SourceRange?

    public init(_ kind: OpKind, _ operands: [Int] = [], attrs: Attributes = Attributes(), type: TensorType, name: String? = nil, loc: SourceRange? = nil) {
        self.kind = kind; self.operands = operands; self.attrs = attrs; self.type = type; self.name = name; self.loc = loc
    }
}

/// A named graph output.
public struct GraphOutput: Sendable, Hashable {
    public var name: String
    public var value: Int
    public init(name: String, value: Int) { self.name = name; self.value = value }
}

/// A typed tensor graph: the program representation every stage of Kiln
/// works on, from the frontend's output to the C code generator's input.
public struct Graph: Sendable {
    /// The model's name.
    public var name: String
    /// Which of the model's entry points this graph is (`forward`, `train_step`, `decode_step`, …).
    public var function: String
    public var dims: [SymbolicDim]
    public var nodes: [Node] = []
    public var outputs: [GraphOutput] = []

    public init(name: String, function: String = "forward", dims: [SymbolicDim] = []) {
        self.name = name; self.function = function; self.dims = dims
    }

    /// The function's name as the IR text heads it: `CharGPT` for the forward pass, `CharGPT.decode_step`.
    public var qualifiedName: String { function == "forward" ? name : name + "." + function }

    /// Appends a node and returns its index.
    @discardableResult
    public mutating func add(_ node: Node) -> Int { nodes.append(node); return nodes.count - 1 }

    public func bound(of dim: Dim) -> Int? {
        switch dim {
        case .const(let n): return n
        case .sym(let s): return dims.first { $0.name == s }?.bound
        }
    }

    /// Indices of `param` nodes, in graph order (the weights file order).
    public var parameters: [Int] { nodes.indices.filter { nodes[$0].kind == .param } }
    public var inputs: [Int] { nodes.indices.filter { nodes[$0].kind == .input } }
    /// Indices of `state` nodes, in graph order.
    public var states: [Int] { nodes.indices.filter { nodes[$0].kind == .state } }

    /// Number of users of each node (outputs count as users).
    public func useCounts() -> [Int] {
        var uses = [Int](repeating: 0, count: nodes.count)
        for n in nodes { for o in n.operands { uses[o] += 1 } }
        for o in outputs { uses[o.value] += 1 }
        return uses
    }

    /// Every later node and every output that reads node `from` reads `to` instead (a fusion pass
    /// replacing a node by one that now computes its value).
    public mutating func redirectUses(of from: Int, to: Int) {
        for j in (from + 1)..<nodes.count {
            for (k, o) in nodes[j].operands.enumerated() where o == from { nodes[j].operands[k] = to }
        }
        for k in outputs.indices where outputs[k].value == from { outputs[k].value = to }
    }

    /// Rebuilds the graph keeping only the nodes in `keep` (which must be closed
    /// under operands) and redirecting uses through `replace` (old → old index).
    /// Returns the compacted graph; order is preserved.
    public func compacted(keep: [Bool], replace: [Int: Int] = [:]) -> Graph {
        func resolve(_ i: Int) -> Int { var j = i; while let r = replace[j], r != j { j = r }; return j }
        var g = Graph(name: name, function: function, dims: dims)
        var newIndex = [Int](repeating: -1, count: nodes.count)
        for (i, n) in nodes.enumerated() where keep[i] {
            var m = n
            m.operands = n.operands.map { newIndex[resolve($0)] }
            newIndex[i] = g.add(m)
        }
        g.outputs = outputs.map { GraphOutput(name: $0.name, value: newIndex[resolve($0.value)]) }
        return g
    }
}

extension Graph {
    /// The graph without the inputs that nothing reads (a function's signature lists only what it uses:
    /// the forward pass has no training targets).
    public func removingUnusedInputs() -> Graph {
        let uses = useCounts()
        let keep = nodes.indices.map { nodes[$0].kind != .input || uses[$0] > 0 }
        return keep.allSatisfy { $0 } ? self : compacted(keep: keep)
    }
}
