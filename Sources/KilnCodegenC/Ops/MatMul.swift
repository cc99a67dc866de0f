import KilnBasics
import KilnIR

/// The batch (the product of all dims but the last two) of a type, as a C expression.
private func batch(_ t: TensorType) -> String { Shape(Array(t.shape.dims.dropLast(2))).elementCount.cExpression }

extension MatMul: CLowering {
    var kernelFile: String? { "matmul.c" }
    /// The panels of every batch's b (one for a shared b): K x N rounded up to 64 (N by its bound when symbolic).
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        let b = g.nodes[g.nodes[i].operands[1]].type.shape.dims
        let (k, n) = (b[b.count - 2], b[b.count - 1])
        return Shape(Array(b.dropLast(2))).elementCount * .const(GemmKernels.roundUp(n.constValue ?? g.bound(of: n) ?? 1)) * k
    }
    func call(_ c: CallContext) throws -> String {
        let a = c.type(0).shape.dims, b = c.type(1)
        let (m, k, n) = (a[a.count - 2], a[a.count - 1], b.shape.dims[b.shape.rank - 1])
        return "matmul_forward(\(c.dst), \(c.p[0]), \(c.p[1]), \(c.workspace), \(batch(c.type(0))), \(m), \(n), \(k), \(b.shape.rank == 2 && a.count > 2 ? 1 : 0));"
    }
}

extension Transpose: CLowering {
    var kernelFile: String? { "matmul.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    /// The last two axes: a blocked transpose; others: copies of the rows after the later axis.
    func call(_ c: CallContext) throws -> String {
        let x = c.type(0).shape.dims
        let (a, b) = try Self.axes(c.attrs, rank: x.count)
        if a == x.count - 2 && b == x.count - 1 {
            return "transpose_forward(\(c.dst), \(c.p[0]), \(batch(c.type(0))), \(x[a]), \(x[b]));"
        }
        func product(_ r: Range<Int>) -> String { Shape(Array(x[r])).elementCount.cExpression }
        return "transpose_axes(\(c.dst), \(c.p[0]), \(product(0..<a)), \(x[a]), \(product((a + 1)..<b)), \(x[b]), \(product((b + 1)..<x.count)));"
    }
}

/// A reshape of operand 0's memory: no code where the planner made it a view, else a copy (a function's output).
private func reshapeView(_ c: CallContext, _ what: String) -> String {
    c.isView ? "/* a view: \(what) */" : "memcpy(\(c.dst), \(c.p[0]), \(c.count) * sizeof(real));"
}

extension SplitLast: CLowering {
    var kernelFile: String? { nil }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String { reshapeView(c, "\(c.name(0)) with its last axis in \(c.attrs[Self.parts]) parts") }
}

extension MergeLast: CLowering {
    var kernelFile: String? { nil }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String { reshapeView(c, "\(c.name(0)) with its last two axes as one") }
}

extension Unsqueeze: CLowering {
    var kernelFile: String? { nil }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String { reshapeView(c, "\(c.name(0)) with a new axis of 1") }
}

extension Squeeze: CLowering {
    var kernelFile: String? { nil }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String { reshapeView(c, "\(c.name(0)) without its axis \(c.attrs[Self.axis])") }
}
