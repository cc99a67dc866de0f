import KilnBasics
import KilnIR

extension CrossEntropy: CLowering {
    var kernelFile: String? { "cross_entropy.c" }
    /// One loss per row, summed in order.
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { g.nodes[g.nodes[i].operands[1]].type.shape.elementCount }
    func call(_ c: CallContext) throws -> String {
        "\(c.dst)[0] = cross_entropy_forward(\(c.p[0]), \(c.p[1]), \(c.workspace), \(c.count(1)), \(c.lastDim(c.type(0))));"
    }
}

extension CrossEntropyGrad: CLowering {
    var kernelFile: String? { "cross_entropy.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let p = c.p
        return "cross_entropy_backward(\(c.dst), \(p[0]), \(p[1]), \(p[2]), \(c.count(1)), \(c.lastDim(c.type)));"
    }
}
