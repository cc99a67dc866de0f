import KilnBasics
import KilnIR

// Inputs and parameters are memory the caller passes in; a scalar is one store.

extension Input: CLowering {
    var kernelFile: String? { nil }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String { "" }
}

extension Param: CLowering {
    var kernelFile: String? { nil }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String { "" }
}

extension Scalar: CLowering {
    var kernelFile: String? { nil }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String { "\(c.dst)[0] = \(c.literal(c.attrs[Self.value]));" }
}

extension State: CLowering {
    var kernelFile: String? { nil }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String { "" }
}
