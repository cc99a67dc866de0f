import KilnBasics
import KilnIR

extension Rotary: CLowering {
    var kernelFile: String? { "rotary.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let x = c.type.shape.dims, positions = c.operands.count == 2 ? c.p[1] : "NULL"
        return "rotary_forward(\(c.dst), \(c.p[0]), \(positions), \(x[0]), \(x[1]), \(x[2]), \(c.attrs[Self.heads]), \(c.literal(c.attrs[Self.base])), \(c.attrs[Self.inverse] ? 1 : 0));"
    }
}
