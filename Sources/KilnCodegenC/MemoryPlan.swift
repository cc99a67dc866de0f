import KilnBasics
import KilnIR

/// Where each value of the graph lives when the generated code runs.
public enum Storage: Equatable, Sendable {
    /// An input of the function, by its name.
    case input(String)
    /// A state tensor of the model (a KV cache), by its name; also the result of an op that writes it in place.
    case state(String)
    /// A trained weight at this element offset in the parameter block.
    case param(offset: Int)
    /// A slot of the activation arena.
    case slot(Int)
    /// Memory the caller passes in, as a C expression (`logits`, `grads + 120`).
    case external(String)
    /// A view of another value's memory (e.g. `slice_rows` of a table: the first rows).
    case view(of: Int)
}

/// Liveness-based assignment of activations to arena slots.
///
/// Nodes run in graph order. A slot is released after the last use of the
/// value in it (views keep their source alive), and a later value whose size
/// is the same expression (e.g. `B*T*384`) reuses a released slot. Kernels
/// that need scratch memory get a workspace slot that is released right
/// after them. An op with an `InPlaceLowering` (an accumulating `embedding_grad`) works in place in its
/// operand's memory. Slot sizes are symbolic, so the arena is laid out for the
/// actual `[B, T]` of a call; each slot starts on a 64-byte boundary.
public struct MemoryPlan: Sendable {
    public var storage: [Storage]
    /// Element offset of a view into its source (`select`), as a C expression.
    public var viewOffset: [Int: SizeExpr] = [:]
    /// Workspace slot of nodes whose kernel needs scratch memory.
    public var workspace: [Int: Int] = [:]
    /// Further workspace slots of nodes whose kernel needs more than one scratch buffer.
    public var extraWorkspaces: [Int: [Int]] = [:]
    /// Size of each slot, in elements.
    public var slotSizes: [SizeExpr]
    /// Total parameter elements.
    public var paramCount: Int

    /// Scratch elements a node's kernel needs, if any (its op's `CLowering.workspace`).
    /// `packed`: parameters stored in the GEMM's panel layout.
    public static func workspaceSize(_ g: Graph, _ i: Int, packed: Set<Int> = []) -> SizeExpr? {
        (try? g.nodes[i].kind.lowering())?.workspace(g, i, packed: packed)
    }

    /// The operand whose memory a node may write its result into, if any (`InPlaceLowering`).
    static func inPlaceOperand(_ g: Graph, _ i: Int) -> Int? {
        (g.nodes[i].kind.definition as? any InPlaceLowering)?.inPlaceOperand(g.nodes[i])
    }

    /// `paramOffsets`: each parameter's element offset in the model's parameter block, by name (default: the
    /// graph's parameters one after the other).
    public init(_ g: Graph, external: [Int: String], packed: Set<Int> = [], paramOffsets: [String: Int]? = nil) {
        // An in-place result that the caller passes in (a gradient in `grads`): the operand it accumulates is
        // computed straight into that memory when nothing else reads it (a tied head's weight gradient).
        var external = external
        let uses = g.useCounts()
        for i in g.nodes.indices.reversed() {
            guard let e = external[i], let a = Self.inPlaceOperand(g, i), uses[a] == 1, external[a] == nil else { continue }
            let traits = g.nodes[a].kind.traits
            guard !traits.contains(.leaf) && !traits.contains(.view) else { continue }
            external[a] = e
        }
        var storage = [Storage](repeating: .slot(-1), count: g.nodes.count)
        var viewOffset: [Int: SizeExpr] = [:]
        var workspace: [Int: Int] = [:], extraWorkspaces: [Int: [Int]] = [:]
        var paramOffset = 0
        func root(_ i: Int) -> Int { if case .view(let s) = storage[i] { return root(s) }; return i }
        var lastUse = Array(g.nodes.indices)
        for (i, n) in g.nodes.enumerated() {
            switch n.kind {
            case .input: storage[i] = .input(n.name ?? "input")
            case .state: storage[i] = .state(n.name ?? "state")
            case .param:
                storage[i] = .param(offset: paramOffsets?[n.name ?? ""] ?? paramOffset)
                paramOffset += n.type.shape.elementCount.evaluate([:])
            default:
                if let a = Self.inPlaceOperand(g, i), case .state(let s) = storage[a] {
                    storage[i] = .state(s)  // a write into a state tensor: the result is the state
                } else if external[i] == nil, let view = n.kind.definition as? any ViewDefinition {
                    storage[i] = .view(of: n.operands[0])
                    viewOffset[i] = view.viewOffset(n)
                } else {
                    storage[i] = external[i].map { .external($0) } ?? .slot(-1)
                }
            }
            for o in n.operands { lastUse[root(o)] = max(lastUse[root(o)], i) }
        }
        // Outputs the caller reads from the arena (the loss) live to the end.
        for o in g.outputs { lastUse[root(o.value)] = g.nodes.count }
        var slotSizes: [SizeExpr] = []
        var free: [Int] = []
        var releaseAt: [Int: [Int]] = [:]
        func allocate(_ size: SizeExpr) -> Int {
            if let k = free.firstIndex(where: { slotSizes[$0] == size }) { return free.remove(at: k) }
            slotSizes.append(size)
            return slotSizes.count - 1
        }
        for (i, n) in g.nodes.enumerated() {
            if case .slot = storage[i], let a = Self.inPlaceOperand(g, i), root(a) == a, lastUse[a] == i,
               case .slot(let s) = storage[a] {
                // In place: the result takes over the operand's slot, which is released after the result's last use.
                storage[i] = .slot(s)
                releaseAt[i]?.removeAll { $0 == a }
                releaseAt[lastUse[i], default: []].append(i)
            } else if case .slot = storage[i] {
                storage[i] = .slot(allocate(n.type.shape.elementCount))
                releaseAt[lastUse[i], default: []].append(i)
            }
            if let w = Self.workspaceSize(g, i, packed: packed) { workspace[i] = allocate(w) }
            let extra = ((try? n.kind.lowering())?.extraWorkspaces(g, i, packed: packed) ?? []).map { allocate($0) }
            if !extra.isEmpty { extraWorkspaces[i] = extra }
            // Release after this node's allocations, so no node writes into its own operand.
            for v in releaseAt[i] ?? [] { if case .slot(let s) = storage[v] { free.append(s) } }
            if let w = workspace[i] { free.append(w) }
            free += extra
        }
        self.storage = storage
        self.viewOffset = viewOffset
        self.workspace = workspace
        self.extraWorkspaces = extraWorkspaces
        self.slotSizes = slotSizes
        self.paramCount = paramOffset
    }
}
