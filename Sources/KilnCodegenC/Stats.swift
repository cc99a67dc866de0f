import KilnBasics
import KilnIR

/// Exact sizes and operation counts of a compiled model, computed from the
/// IR and the memory plan before anything runs (`kiln stats`).
///
/// FLOPs count multiply–adds as 2. Matrix products and attention are exact
/// (causal attention counts only the unmasked positions); elementwise and
/// normalisation kernels count the arithmetic of their loop bodies
/// (e.g. layernorm: 8 per element, GELU: 10, softmax and cross-entropy: 5).
public struct ModelStats: Sendable {
    public var parameters: Int
    public var parameterTensors: Int
    /// FLOPs per op kind for one call, sorted by kind.
    public var flops: [(String, Int)]
    public var totalFlops: Int { flops.reduce(0) { $0 + $1.1 } }
    /// Bytes of the activation arena at these shapes.
    public var arenaBytes: Int

    public init(_ g: Graph, plan: MemoryPlan, env: [String: Int], elementBytes: Int = 4) {
        parameterTensors = g.parameters.count
        parameters = plan.paramCount
        var byKind: [String: Int] = [:]
        for (i, n) in g.nodes.enumerated() {
            let f = Self.flops(g, i, env)
            if f > 0 { byKind[n.kind.rawValue, default: 0] += f }
        }
        flops = byKind.sorted { $0.key < $1.key }
        var arena = 0
        for s in plan.slotSizes {
            let e = s.evaluate(env)
            let align = 64 / elementBytes
            arena += (e + align - 1) / align * align
        }
        arenaBytes = arena * elementBytes
    }

    /// The FLOPs of node i (its op's `OpDefinition.flops`).
    static func flops(_ g: Graph, _ i: Int, _ env: [String: Int]) -> Int {
        let n = g.nodes[i]
        return n.kind.definition.flops(FlopContext(node: n, operands: n.operands.map { g.nodes[$0].type }, env: env))
    }
}
