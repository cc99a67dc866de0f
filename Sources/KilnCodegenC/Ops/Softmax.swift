import KilnBasics
import KilnIR

extension Softmax: CLowering {
    var kernelFile: String? { "softmax.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        "softmax_forward(\(c.dst), \(c.p[0]), \(c.rows(c.type)), \(c.lastDim(c.type)));"
    }
}

extension SoftmaxGrad: CLowering {
    var kernelFile: String? { "softmax.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        "softmax_backward(\(c.dst), \(c.p[0]), \(c.p[1]), \(c.rows(c.type)), \(c.lastDim(c.type)));"
    }
}
