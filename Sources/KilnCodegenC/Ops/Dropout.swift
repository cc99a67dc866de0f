import KilnBasics
import KilnIR

extension Dropout: CLowering {
    var kernelFile: String? { "dropout.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    /// `seed` is the training step's dropout seed, a parameter of the function.
    func call(_ c: CallContext) throws -> String {
        "dropout_forward(\(c.dst), \(c.p[0]), \(c.count), \(c.literal(c.attrs[Self.p])), seed, \(c.attrs[Self.id]));"
    }
}
