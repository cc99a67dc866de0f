import KilnBasics
import KilnIR

extension MeanPool: CLowering {
    var kernelFile: String? { "pool.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let x = c.type(0).shape.dims
        return "mean_pool_forward(\(c.dst), \(c.p[0]), \(c.operands.count > 1 ? c.p[1] : "NULL"), \(x[0]), \(x[1]), \(x[2]));"
    }
}

extension MeanPoolGrad: CLowering {
    var kernelFile: String? { "pool.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let x = c.type.shape.dims
        return "mean_pool_backward(\(c.dst), \(c.p[0]), \(c.operands.count > 2 ? c.p[2] : "NULL"), \(x[0]), \(x[1]), \(x[2]));"
    }
}
