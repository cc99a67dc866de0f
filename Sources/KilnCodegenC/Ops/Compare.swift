import KilnBasics
import KilnIR

// The comparisons take the binary ops' kernels (elementwise.c, KILN_BINARY_KERNELS); `where`, its gradient, `pow`
// and `range` are in where.c.

extension Comparison: CLowering {}

/// The shape of the general broadcast kernels: the output's dims and each operand's stride per output dim.
private func broadcastArrays(_ out: [Dim], _ operands: [(String, [Dim])]) -> String {
    (["const size_t dims[\(out.count)] = {\(dimsArray(out))};"]
        + operands.map { "const size_t \($0.0)_stride[\(out.count)] = {\(strides($0.1, in: out))};" }).joined(separator: "\n    ")
}

extension Where: CLowering {
    var kernelFile: String? { "where.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let out = c.type.shape.dims
        guard !out.isEmpty else { return "\(c.dst)[0] = \(c.p[0])[0] != 0 ? \(c.p[1])[0] : \(c.p[2])[0];" }
        return """
        {
            \(broadcastArrays(out, [("c", c.type(0).shape.dims), ("a", c.type(1).shape.dims), ("b", c.type(2).shape.dims)]))
            where_forward(\(c.dst), \(c.p[0]), \(c.p[1]), \(c.p[2]), \(out.count), dims, c_stride, a_stride, b_stride);
        }
        """
    }
}

extension WhereGrad: CLowering {
    var kernelFile: String? { "where.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let out = c.type.shape.dims, keep = c.attrs[Self.keep] ? 1 : 0
        guard !out.isEmpty else { return "\(c.dst)[0] = (\(c.p[1])[0] != 0) == \(keep) ? \(c.p[0])[0] : 0;" }
        return """
        {
            \(broadcastArrays(out, [("c", c.type(1).shape.dims)]))
            where_backward(\(c.dst), \(c.p[0]), \(c.p[1]), \(keep), \(out.count), dims, c_stride);
        }
        """
    }
}

extension Pow: CLowering {
    var kernelFile: String? { "where.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        "pow_forward(\(c.dst), \(c.p[0]), \(c.count), \(c.literal(c.attrs[Self.exponent])));"
    }
}

extension IndexRange: CLowering {
    var kernelFile: String? { "where.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String { "range_forward(\(c.dst), \(c.count));" }
}
