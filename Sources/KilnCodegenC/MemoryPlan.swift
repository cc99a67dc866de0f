import KilnBasics
import KilnIR

/// Where each value of the graph lives when the generated code runs.
public enum Storage: Equatable, Sendable {
    /// A runtime input (the token ids).
    case input
    /// A trained weight at this float offset in the parameter block.
    case param(offset: Int)
    /// A slot of the activation arena.
    case slot(Int)
    /// The caller's output buffer.
    case output
    /// A view of another value's memory (e.g. `slice_rows` of a table: the first rows).
    case view(of: Int)
}

/// Liveness-based assignment of activations to arena slots.
///
/// Nodes run in graph order. A slot is released after the last use of the
/// value in it (views keep their source alive), and a later value whose size
/// is the same expression (e.g. `B*T*384`) reuses a released slot. Slot sizes
/// are symbolic, so the arena is laid out for the actual `[B, T]` of a call;
/// each slot starts on a 64-byte boundary.
public struct MemoryPlan: Sendable {
    public var storage: [Storage]
    /// Size of each slot, in elements.
    public var slotSizes: [SizeExpr]
    /// Total parameter floats.
    public var paramFloats: Int

    public init(_ g: Graph) {
        var storage = [Storage](repeating: .input, count: g.nodes.count)
        var paramOffset = 0
        let outputs = Set(g.outputs.map(\.value))
        // Resolve views to the value that owns the memory.
        func root(_ i: Int) -> Int { if case .view(let s) = storage[i] { return root(s) }; return i }
        var lastUse = Array(g.nodes.indices)
        for (i, n) in g.nodes.enumerated() {
            switch n.kind {
            case .input: storage[i] = .input
            case .param:
                storage[i] = .param(offset: paramOffset)
                paramOffset += n.type.shape.elementCount.evaluate([:])
            case .sliceRows where !outputs.contains(i): storage[i] = .view(of: n.operands[0])
            default: storage[i] = outputs.contains(i) ? .output : .slot(-1)
            }
            for o in n.operands { lastUse[root(o)] = max(lastUse[root(o)], i) }
        }
        var slotSizes: [SizeExpr] = []
        var free: [Int] = []
        var releaseAt: [Int: [Int]] = [:]
        for (i, n) in g.nodes.enumerated() {
            if case .slot = storage[i] {
                let size = n.type.shape.elementCount
                if let k = free.firstIndex(where: { slotSizes[$0] == size }) {
                    storage[i] = .slot(free.remove(at: k))
                } else {
                    slotSizes.append(size)
                    storage[i] = .slot(slotSizes.count - 1)
                }
                releaseAt[lastUse[i], default: []].append(i)
            }
            // Release after this node has been allocated, so no node writes into its own operand.
            for v in releaseAt[i] ?? [] { if case .slot(let s) = storage[v] { free.append(s) } }
        }
        self.storage = storage
        self.slotSizes = slotSizes
        self.paramFloats = paramOffset
    }
}
