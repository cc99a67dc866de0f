import KilnBasics
import KilnIR

/// The reductions' kernels take an op code: 0 sum, 1 mean, 2 max, 3 logsumexp (runtime/kernels/reduce.c).
private func code(_ a: Attributes) -> Int { ["sum": 0, "mean": 1, "max": 2, "logsumexp": 3][a[Reduction.op].text] ?? 0 }

extension Reduce: CLowering {
    var kernelFile: String? { "reduce.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        "reduce_forward(\(c.dst), \(c.p[0]), \(c.rows(c.type(0))), \(c.lastDim(c.type(0))), \(code(c.attrs)));"
    }
}

extension ReduceGrad: CLowering {
    var kernelFile: String? { "reduce.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        "reduce_backward(\(c.dst), \(c.p[0]), \(c.p[1]), \(c.rows(c.type)), \(c.lastDim(c.type)), \(code(c.attrs)));"
    }
}
