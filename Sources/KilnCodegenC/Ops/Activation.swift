import KilnBasics
import KilnIR

// Every activation of the table calls the one kernel of activation.c with its code KILN_ACT_NAME, which
// switches to the table's function (runtime/kernels/activations.h).

extension ActivationOp: CLowering {
    var kernelFile: String? { "activation.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        "activation_forward(\(c.dst), \(c.p[0]), \(c.count), KILN_ACT_\(activation.name));"
    }
}

extension ActivationGradOp: CLowering {
    var kernelFile: String? { "activation.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        "activation_backward(\(c.dst), \(c.p[0]), \(c.p[1]), \(c.count), KILN_ACT_\(activation.name));"
    }
}
