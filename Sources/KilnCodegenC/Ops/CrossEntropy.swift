import KilnBasics
import KilnIR

/// The arguments of the loss kernels that say which targets count and how labels are smoothed.
func crossEntropyOptions(_ c: CallContext) -> String {
    let ignore = c.attrs.value(CrossEntropy.ignore)
    return "\(ignore.map { "1, \($0)" } ?? "0, 0"), \(c.literal(c.attrs[CrossEntropy.smoothing]))"
}

extension CrossEntropy: CLowering {
    var kernelFile: String? { "losses.c" }
    /// One loss per row, summed in order.
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { g.nodes[g.nodes[i].operands[1]].type.shape.elementCount }
    func call(_ c: CallContext) throws -> String {
        "\(c.dst)[0] = cross_entropy_forward(\(c.p[0]), \(c.p[1]), \(c.workspace), \(c.count(1)), \(c.lastDim(c.type(0))), \(crossEntropyOptions(c)));"
    }
}

extension CrossEntropyGrad: CLowering {
    var kernelFile: String? { "losses.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let p = c.p
        return "cross_entropy_backward(\(c.dst), \(p[0]), \(p[1]), \(p[2]), \(c.count(1)), \(c.lastDim(c.type)), \(crossEntropyOptions(c)));"
    }
}

extension MeanSquaredError: CLowering {
    var kernelFile: String? { "losses.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        "\(c.dst)[0] = mse_forward(\(c.p[0]), \(c.p[1]), \(c.count(0)));"
    }
}

extension MeanSquaredErrorGrad: CLowering {
    var kernelFile: String? { "losses.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        "mse_backward(\(c.dst), \(c.p[0]), \(c.p[1]), \(c.p[2]), \(c.count));"
    }
}
