import KilnBasics
import KilnIR

extension Sinusoidal: CLowering {
    var kernelFile: String? { "sinusoidal.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        "sinusoidal_forward(\(c.dst), \(c.firstPosition), \(c.type.shape.dims[0]), \(c.lastDim(c.type)));"
    }
}
