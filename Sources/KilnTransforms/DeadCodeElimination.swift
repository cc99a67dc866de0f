import KilnBasics
import KilnIR

/// Dead-code elimination: removes every node that no output depends on,
/// parameters included (an unused weight is not asked for in the weights file).
/// Inputs are kept: they are the function's interface. So are ops with an effect (a write into a KV cache)
/// and what they read.
public struct DeadCodeElimination: Pass {
    public let name = "dce"
    public init() {}

    public func run(_ g: inout Graph) throws -> Bool {
        var live = [Bool](repeating: false, count: g.nodes.count)
        var stack = g.outputs.map(\.value) + g.nodes.indices.filter { g.nodes[$0].kind.traits.contains(.effect) }
        for i in g.inputs { live[i] = true }
        while let i = stack.popLast() {
            if live[i] { continue }
            live[i] = true
            stack.append(contentsOf: g.nodes[i].operands.filter { !live[$0] })
        }
        guard live.contains(false) else { return false }
        g = g.compacted(keep: live)
        return true
    }
}
