import KilnBasics
import KilnIR

extension Fused: CLowering {
    /// The kernel itself is written per expression (`FusedKernels`); it calls the activation table.
    var kernelFile: String? { "activations.h" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let e = try c.node.fusedExpression()
        return "\(FusedKernels.name(e))(\(c.dst), \(c.p.joined(separator: ", ")), \(c.count), \(c.operands.indices.map(c.count).joined(separator: ", ")));"
    }
}
