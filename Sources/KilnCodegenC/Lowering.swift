import KilnBasics
import KilnIR

/// How an op becomes C: which kernel file its calls need, how much scratch memory a call takes, and the
/// call of one node. Each op's lowering is an extension of its definition in `Sources/KilnCodegenC/Ops/`,
/// the file that mirrors its definition's file in `Sources/KilnIR/Ops/`; a test checks that every
/// registered op has one.
protocol CLowering {
    /// The file of `runtime/kernels/` with the op's kernels, which `model.c` includes (nil: the op needs
    /// no code: inputs, parameters, views, constants).
    var kernelFile: String? { get }
    /// Elements of scratch memory one node's call needs (nil: none). `packed`: the parameters stored in the
    /// matrix-product engine's panel layout.
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr?
    /// Further scratch buffers of one call, each its own slot (`CallContext.extraWorkspace(k)`): sizes that
    /// one monomial cannot bound well, such as a packed weight beside per-position activations.
    func extraWorkspaces(_ g: Graph, _ i: Int, packed: Set<Int>) -> [SizeExpr]
    /// The C statements that compute one node into `c.dst`.
    func call(_ c: CallContext) throws -> String
}

extension CLowering {
    func extraWorkspaces(_ g: Graph, _ i: Int, packed: Set<Int>) -> [SizeExpr] { [] }
}

/// An op that may write its result into the memory of one of its operands.
protocol InPlaceLowering {
    /// The operand whose memory the node's result may take over, if any.
    func inPlaceOperand(_ n: Node) -> Int?
}

extension OpKind {
    /// The op's C lowering.
    func lowering() throws -> any CLowering {
        guard let l = definition as? any CLowering else { throw CodegenError(description: "the op \(name) has no C lowering") }
        return l
    }
}

/// What an op's lowering sees of the function being emitted: the node, where its operands and result
/// live, and sizes as C expressions.
struct CallContext {
    let f: FunctionEmitter
    let index: Int

    var node: Node { f.g.nodes[index] }
    var attrs: Attributes { node.attrs }
    /// The operands' node indices.
    var operands: [Int] { node.operands }
    /// C expressions for the operands' memory.
    var p: [String] { operands.map(f.ptr) }
    /// A C expression for the result's memory.
    var dst: String { f.ptr(index) }
    /// The result's type.
    var type: TensorType { node.type }
    /// Operand k's type.
    func type(_ k: Int) -> TensorType { f.g.nodes[operands[k]].type }
    /// Elements of the result, as a C expression.
    var count: String { f.count(index) }
    /// Elements of operand k, as a C expression.
    func count(_ k: Int) -> String { f.count(operands[k]) }
    /// The product of all dims but the last (the rows of a row-wise op), as a C expression.
    func rows(_ t: TensorType) -> String { f.rows(t) }
    /// The last dim, as a C expression.
    func lastDim(_ t: TensorType) -> String { f.lastDim(t) }
    /// The node's scratch memory (`CLowering.workspace`).
    var workspace: String { f.workspace(index) }
    /// The node's k-th further scratch buffer (`CLowering.extraWorkspaces`).
    func extraWorkspace(_ k: Int) -> String { "(arena + off[\(f.plan.extraWorkspaces[index]![k])])" }
    /// The node's scratch memory, or NULL when it needs none.
    var workspaceOrNull: String { f.plan.workspace[index] != nil ? f.workspace(index) : "NULL" }
    /// The gradient an accumulating op adds to its result (its last operand, `fuse-grad-acc`), or NULL.
    var accumulated: String { attrs[accumulateKey] ? p.last! : "NULL" }
    /// Whether operand k is a parameter stored in the matrix-product engine's panel layout.
    func isPacked(_ k: Int) -> Bool { f.packed.contains(operands[k]) }
    /// Whether the result is a view of operand 0's memory (no code is needed).
    var isView: Bool { if case .view = f.plan.storage[index] { true } else { false } }
    /// A float literal of the function's element type.
    func literal(_ v: Double) -> String { cFloat(v, f.real) }
    /// The name of operand k in the IR comment above the call.
    func name(_ k: Int) -> String { f.names[operands[k]] }
}
