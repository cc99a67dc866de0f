import KilnBasics
import KilnIR

extension SliceRows: CLowering {
    var kernelFile: String? { nil }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    /// A view; a copy only where the result must live elsewhere (a function's output).
    func call(_ c: CallContext) throws -> String {
        if c.isView { return "/* a view: the first \(c.attrs[Self.rows]) rows of \(c.name(0)) */" }
        return "memcpy(\(c.dst), \(c.p[0]), \(c.count) * sizeof(real));"
    }
}

extension PadRows: CLowering {
    var kernelFile: String? { "rows.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let t = c.type, rest = Shape(Array(t.shape.dims.dropFirst())).elementCount.cExpression
        return "pad_rows_forward(\(c.dst), \(c.p[0]), \(c.type(0).shape.dims[0]), \(t.shape.dims[0]), \(rest));"
    }
}

extension Select: CLowering {
    var kernelFile: String? { nil }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    /// A view; a copy only where the result must live elsewhere (a function's output).
    func call(_ c: CallContext) throws -> String {
        if c.isView { return "/* a view: slice \(c.attrs[Self.index]) of \(c.name(0)) */" }
        return "memcpy(\(c.dst), \(c.p[0]) + \(viewOffset(c.node).cExpression), \(c.count) * sizeof(real));"
    }
}

extension Take: CLowering {
    var kernelFile: String? { "rows.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    /// x viewed as (outer, n, inner) around the axis; the slice at index (n + index when negative).
    func call(_ c: CallContext) throws -> String {
        let (outer, n, inner, index) = Self.layout(c.type(0), c.attrs)
        return "take_forward(\(c.dst), \(c.p[0]), \(outer), \(n), \(inner), \(index));"
    }

    /// The sizes around the axis and the index, as C expressions.
    static func layout(_ x: TensorType, _ attrs: Attributes) -> (String, String, String, String) {
        let axis = attrs[Take.axis], i = attrs[Take.index], d = x.shape.dims
        let n = d[axis].description
        return (Shape(Array(d[..<axis])).elementCount.cExpression, n, Shape(Array(d[(axis + 1)...])).elementCount.cExpression,
                i >= 0 ? "\(i)" : "\(n) - \(-i)")
    }
}

extension TakeGrad: CLowering {
    var kernelFile: String? { "rows.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let (outer, n, inner, index) = Take.layout(c.type, c.attrs)
        return "take_backward(\(c.dst), \(c.p[0]), \(outer), \(n), \(inner), \(index));"
    }
}

extension Shift: CLowering {
    var kernelFile: String? { "rows.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let d = c.type.shape.dims
        return "shift_forward(\(c.dst), \(c.p[0]), \(d[0]), \(d[1]), \(Shape(Array(d[2...])).elementCount.cExpression), \(c.attrs[Self.steps]));"
    }
}
