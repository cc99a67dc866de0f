import KilnBasics
import KilnIR

extension RMSNorm: CLowering {
    var kernelFile: String? { "rmsnorm.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let p = c.p, t = c.type
        return "rmsnorm_forward(\(c.dst), \(p[0]), \(p[1]), \(c.rows(t)), \(c.lastDim(t)), \(c.literal(c.attrs[Self.eps])));"
    }
}

extension RMSNormGradInput: CLowering {
    var kernelFile: String? { "rmsnorm.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let p = c.p, t = c.type
        return "rmsnorm_backward_input(\(c.dst), \(p[0]), \(p[1]), \(p[2]), \(c.accumulated), \(c.rows(t)), \(c.lastDim(t)), \(c.literal(c.attrs[RMSNorm.eps])));"
    }
}

extension RMSNormGradWeight: CLowering {
    var kernelFile: String? { "rmsnorm.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let p = c.p, t = c.type
        return "rmsnorm_backward_weight(\(c.dst), \(p[0]), \(p[1]), \(c.rows(c.type(1))), \(c.lastDim(t)), \(c.literal(c.attrs[RMSNorm.eps])));"
    }
}
