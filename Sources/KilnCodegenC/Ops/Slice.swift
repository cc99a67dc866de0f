import KilnBasics
import KilnIR

/// (P, N, Q) around an axis, as C expressions.
private func around(_ t: TensorType, _ axis: Int) -> (String, String, String) {
    let (before, after) = aroundAxis(t, axis)
    return (Shape(before).elementCount.cExpression, "(size_t)\(t.shape.dims[axis])", Shape(after).elementCount.cExpression)
}

extension Slice: CLowering {
    var kernelFile: String? { "slice.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let k = try resolveAxis(c.attrs[Self.axis], rank: c.type(0).shape.rank, "slice")
        let (p, n, q) = around(c.type(0), k)
        return "slice_forward(\(c.dst), \(c.p[0]), \(p), \(n), \(q), \(c.attrs[Self.start]), (size_t)\(c.attrs[Self.size]));"
    }
}

extension SliceGrad: CLowering {
    var kernelFile: String? { "slice.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let k = try resolveAxis(c.attrs[Slice.axis], rank: c.type.shape.rank, "slice")
        let (p, n, q) = around(c.type, k)
        return "slice_backward(\(c.dst), \(c.p[0]), \(p), \(n), \(q), \(c.attrs[Slice.start]), (size_t)\(c.attrs[Slice.size]));"
    }
}

extension Concat: CLowering {
    var kernelFile: String? { "slice.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let k = try resolveAxis(c.attrs[Self.axis], rank: c.type.shape.rank, "concat")
        let (p, na, q) = around(c.type(0), k)
        return "concat_forward(\(c.dst), \(c.p[0]), \(c.p[1]), \(p), \(na), (size_t)\(c.type(1).shape.dims[k]), \(q));"
    }
}

extension Gather: CLowering {
    var kernelFile: String? { "slice.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let k = try resolveAxis(c.attrs[Self.axis], rank: c.type(0).shape.rank, "gather")
        let (p, n, q) = around(c.type(0), k)
        return "gather_forward(\(c.dst), \(c.p[0]), \(c.p[1]), \(p), \(n), (size_t)\(c.type(1).shape.dims[k]), \(q));"
    }
}

extension GatherGrad: CLowering {
    var kernelFile: String? { "slice.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let k = try resolveAxis(c.attrs[Gather.axis], rank: c.type.shape.rank, "gather")
        let (p, n, q) = around(c.type, k)
        return "gather_backward(\(c.dst), \(c.p[0]), \(c.p[1]), \(p), \(n), (size_t)\(c.type(1).shape.dims[k]), \(q));"
    }
}
