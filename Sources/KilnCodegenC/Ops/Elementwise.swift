import KilnBasics
import KilnIR

/// The binary ops call `NAME_forward` when one operand's shape is a suffix of the other's (it repeats
/// along rows), and `NAME_broadcast_forward` with per-dim strides otherwise.
extension BinaryElementwise {
    var kernelFile: String? { "elementwise.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let out = c.type.shape.dims, a = c.type(0).shape.dims, b = c.type(1).shape.dims, p = c.p
        if a == out || b == out, Array(out.suffix((a == out ? b : a).count)) == (a == out ? b : a) {
            let small = a == out ? b : a
            let r = Shape(Array(out.dropLast(small.count))).elementCount.cExpression, n = Shape(small).elementCount.cExpression
            return "\(name)_forward(\(c.dst), \(p[0]), \(p[1]), \(r), \(n), \(a == out ? 1 : 0), \(b == out ? 1 : 0));"
        }
        return """
        {
            const size_t dims[\(out.count)] = {\(dimsArray(out))};
            const size_t a_stride[\(out.count)] = {\(strides(a, in: out))};
            const size_t b_stride[\(out.count)] = {\(strides(b, in: out))};
            \(name)_broadcast_forward(\(c.dst), \(p[0]), \(p[1]), \(out.count), dims, a_stride, b_stride);
        }
        """
    }
}

extension Add: CLowering {}
extension Sub: CLowering {}
extension Mul: CLowering {}
extension Div: CLowering {}

extension Scale: CLowering {
    var kernelFile: String? { "elementwise.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        "scale_forward(\(c.dst), \(c.p[0]), \(c.count), \(c.literal(c.attrs[Self.factor])));"
    }
}

extension SumTo: CLowering {
    var kernelFile: String? { "elementwise.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    /// Summing over leading dims is a column sum of rows; other broadcasts take the general strided kernel.
    func call(_ c: CallContext) throws -> String {
        let full = c.type(0).shape.dims, small = c.type.shape.dims
        if Array(full.suffix(small.count)) == small {
            let r = Shape(Array(full.dropLast(small.count))).elementCount.cExpression
            return "sum_to_forward(\(c.dst), \(c.p[0]), \(r), \(c.count));"
        }
        return """
        {
            const size_t dims[\(full.count)] = {\(dimsArray(full))};
            const size_t stride[\(full.count)] = {\(strides(small, in: full))};
            sum_to_broadcast_forward(\(c.dst), \(c.p[0]), \(c.count), \(full.count), dims, stride);
        }
        """
    }
}

/// Per-dim strides of `s` (right-aligned) within `out`, 0 where broadcast.
func strides(_ s: [Dim], in out: [Dim]) -> String {
    let padded = Array(repeating: Dim.const(1), count: out.count - s.count) + s
    var res: [String] = []
    for k in 0..<out.count {
        if padded[k] == .const(1) && out[k] != .const(1) { res.append("0"); continue }
        res.append(Shape(Array(padded[(k + 1)...])).elementCount.cExpression)
    }
    return res.joined(separator: ", ")
}

func dimsArray(_ out: [Dim]) -> String { out.map { "(size_t)\($0)" }.joined(separator: ", ") }
