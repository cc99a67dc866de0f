import KilnBasics
import KilnIR

extension Sinusoidal: CLowering {
    var kernelFile: String? { "sinusoidal.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    /// The table's first rows, or the rows of the given positions (decoding).
    func call(_ c: CallContext) throws -> String {
        if c.operands.isEmpty {
            return "sinusoidal_forward(\(c.dst), 0, \(c.type.shape.dims[0]), \(c.lastDim(c.type)), \(c.attrs[Self.halves] ? 1 : 0));"
        }
        return "sinusoidal_at_forward(\(c.dst), \(c.p[0]), \(c.count(0)), \(c.lastDim(c.type)), \(c.attrs[Self.halves] ? 1 : 0));"
    }
}
