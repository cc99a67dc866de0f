import KilnBasics
import KilnIR

extension Dropout: CLowering {
    var kernelFile: String? { "dropout.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    /// The seed is a scalar input of the training step.
    func call(_ c: CallContext) throws -> String {
        "dropout_forward(\(c.dst), \(c.p[0]), \(c.count), \(c.literal(c.attrs[Self.p])), (uint64_t)\(c.p[1])[0], \(c.attrs[Self.id]));"
    }
}
