import KilnBasics
import KilnIR

/// Where each value of the graph lives when the generated code runs.
public enum Storage: Equatable, Sendable {
    /// A runtime input (token ids, targets): the C parameter of that name.
    case input(String)
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
/// after them. An accumulating `embedding_grad` works in place in its
/// operand's memory (see `inPlaceOperand`). Slot sizes are symbolic, so the arena is laid out for the
/// actual `[B, T]` of a call; each slot starts on a 64-byte boundary.
public struct MemoryPlan: Sendable {
    public var storage: [Storage]
    /// Element offset of a view into its source (`select`), as a C expression.
    public var viewOffset: [Int: SizeExpr] = [:]
    /// Workspace slot of nodes whose kernel needs scratch memory.
    public var workspace: [Int: Int] = [:]
    /// Size of each slot, in elements.
    public var slotSizes: [SizeExpr]
    /// Total parameter elements.
    public var paramCount: Int

    /// Offset of a `select` slice in its source, as a C expression.
    func viewOffsetExpr(_ g: Graph, _ i: Int) -> String {
        (g.nodes[i].type.shape.elementCount * .const(g.nodes[i].attrs.int("index") ?? 0)).cExpression
    }

    /// A packed weight (N, K) keeps its last N % 64 rows as plain rows; its kernel packs them into one
    /// K × 64 panel of scratch. Nil when N is a multiple of 64.
    static func tailPanel(_ w: TensorType) -> SizeExpr? {
        guard let rows = w.shape.dims[0].constValue, rows % GemmKernels.nr != 0 else { return nil }
        return GemmKernels.panelElements(inner: [w.shape.dims[1]], n: 1)
    }

    /// Scratch elements a node's kernel needs, if any.
    /// `packed`: parameters stored in the GEMM's panel layout (see `PackedWeights`).
    public static func workspaceSize(_ g: Graph, _ i: Int, packed: Set<Int> = []) -> SizeExpr? {
        let n = g.nodes[i]
        switch n.kind {
        case .attentionGrad where n.attrs.word("wrt") == "all":
            // attentionGradGroup (batch, head) pairs at a time, each kᵀ, vᵀ (hs, T), P, dS (T, T64), q, k, dout (T, hs64);
            // T64 is at most the context rounded up to 64
            let k = g.nodes[n.operands[2]].type.shape.dims
            let heads = n.attrs.int("heads") ?? 1, hs = (k[2].constValue ?? 0) / max(heads, 1)
            let round = { (x: Int) in (x + GemmKernels.nr - 1) / GemmKernels.nr * GemmKernels.nr }
            let ctx = round(g.bound(of: k[1]) ?? k[1].constValue ?? 1)
            return SizeExpr(constant: Kernels.attentionGradGroup * (2 * hs + 2 * ctx + 3 * round(hs))) * k[1]
        case .attentionGrad:  // two rows of S per (batch, head)
            let k = g.nodes[n.operands[2]].type.shape.dims
            return SizeExpr(constant: 2 * (n.attrs.int("heads") ?? 1)) * k[0] * k[1]
        case .attention:  // per (batch, head): K^T (hs, S) and V (S, hs rounded up to 64)
            let k = g.nodes[n.operands[1]].type.shape.dims
            let heads = n.attrs.int("heads") ?? 1, c = k.last?.constValue ?? 0, hs = c / max(heads, 1)
            let hs64 = (hs + GemmKernels.nr - 1) / GemmKernels.nr * GemmKernels.nr
            return SizeExpr(constant: c + heads * hs64) * k[0] * k[1]
        case .linearStack:  // each (packed) weight's tail panel, if any
            return tailPanel(g.nodes[n.operands[1]].type).map { $0 * .const(n.attrs.int("count") ?? 1) }
        case .linear where packed.contains(n.operands[1]):
            return tailPanel(g.nodes[n.operands[1]].type)
        case .linear:  // packed panels of the weight: K × N rounded up to 64 columns
            let w = g.nodes[n.operands[1]].type.shape.dims
            return GemmKernels.panelElements(inner: [w[1]], n: w[0].constValue ?? 1)
        case .linearGradInput:  // panels of the weight (N, K): N × K rounded up to 64
            let w = g.nodes[n.operands[1]].type.shape.dims
            return GemmKernels.panelElements(inner: [w[0]], n: w[1].constValue ?? 1)
        case .linearGradWeight:  // panels of the input (M, K): M × K rounded up to 64
            let x = g.nodes[n.operands[1]].type.shape.dims
            return GemmKernels.panelElements(inner: Array(x.dropLast()), n: x.last?.constValue ?? 1)
        case .crossEntropy:  // one loss per row
            return g.nodes[n.operands[1]].type.shape.elementCount
        default: return nil
        }
    }

    /// The operand whose memory a node may write its result into, if any: an `embedding_grad` that accumulates
    /// scatters its rows into that gradient in place (its kernel takes the two pointers without `restrict`).
    static func inPlaceOperand(_ g: Graph, _ i: Int) -> Int? {
        let n = g.nodes[i]
        return n.kind == .embeddingGrad && n.attrs.bool("accumulate") == true ? n.operands.last : nil
    }

    public init(_ g: Graph, external: [Int: String], packed: Set<Int> = []) {
        // An in-place result that the caller passes in (a gradient in `grads`): the operand it accumulates is
        // computed straight into that memory when nothing else reads it (a tied head's weight gradient).
        var external = external
        let uses = g.useCounts()
        for i in g.nodes.indices.reversed() {
            guard let e = external[i], let a = Self.inPlaceOperand(g, i), uses[a] == 1, external[a] == nil else { continue }
            switch g.nodes[a].kind {
            case .input, .param, .sliceRows, .select: continue
            default: external[a] = e
            }
        }
        var storage = [Storage](repeating: .slot(-1), count: g.nodes.count)
        var viewOffset: [Int: SizeExpr] = [:]
        var workspace: [Int: Int] = [:]
        var paramOffset = 0
        func root(_ i: Int) -> Int { if case .view(let s) = storage[i] { return root(s) }; return i }
        var lastUse = Array(g.nodes.indices)
        for (i, n) in g.nodes.enumerated() {
            switch n.kind {
            case .input: storage[i] = .input(n.name ?? "input")
            case .param:
                storage[i] = .param(offset: paramOffset)
                paramOffset += n.type.shape.elementCount.evaluate([:])
            case .sliceRows where external[i] == nil: storage[i] = .view(of: n.operands[0])
            case .select where external[i] == nil:
                storage[i] = .view(of: n.operands[0])
                viewOffset[i] = n.type.shape.elementCount * .const(n.attrs.int("index") ?? 0)
            default: storage[i] = external[i].map { .external($0) } ?? .slot(-1)
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
            // Release after this node's allocations, so no node writes into its own operand.
            for v in releaseAt[i] ?? [] { if case .slot(let s) = storage[v] { free.append(s) } }
            if let w = workspace[i] { free.append(w) }
        }
        self.storage = storage
        self.viewOffset = viewOffset
        self.workspace = workspace
        self.slotSizes = slotSizes
        self.paramCount = paramOffset
    }
}
