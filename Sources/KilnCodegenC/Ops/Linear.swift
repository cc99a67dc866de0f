import KilnBasics
import KilnIR

extension Linear: CLowering {
    var kernelFile: String? { "linear.c" }
    /// A packed weight (N, K) keeps its last N % 64 rows as plain rows, which the kernel packs into one K × 64
    /// panel of scratch; an unpacked one is packed whole (K × N rounded up to 64) on every call.
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        let w = g.nodes[g.nodes[i].operands[1]].type
        if packed.contains(g.nodes[i].operands[1]) { return GemmKernels.tailPanel(w) }
        return GemmKernels.panelElements(inner: [w.shape.dims[1]], n: w.shape.dims[0].constValue ?? 1)
    }
    func call(_ c: CallContext) throws -> String {
        let p = c.p, t = c.type, x = c.type(0)
        let residual = c.attrs[Self.residual]
        let bias = c.operands.count - (residual ? 1 : 0) == 3 ? p[2] : "NULL"
        let multiplies = c.attrs[Self.combine] == "mul" ? " | GEMM_RESIDUAL_MULTIPLIES" : ""
        let epilogue = "\(bias), KILN_ACT_\(c.attrs[Self.activation])\(multiplies), \(residual ? p.last! : "NULL")"
        guard c.isPacked(1) else {
            return "linear_forward(\(c.dst), \(p[0]), \(p[1]), \(epilogue), \(c.workspace), \(c.rows(t)), \(c.lastDim(x)), \(c.lastDim(t)));"
        }
        return "linear_packed_forward(\(c.dst), \(p[0]), \(p[1]), \(epilogue), \(c.workspaceOrNull), \(c.rows(t)), \(c.lastDim(x)), \(c.lastDim(t)));"
    }
}

extension LinearStack: CLowering {
    var kernelFile: String? { "linear.c" }
    /// Each (packed) weight's tail panel, if any.
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        let n = g.nodes[i]
        return GemmKernels.tailPanel(g.nodes[n.operands[1]].type).map { $0 * .const(n.attrs[Self.count]) }
    }
    func call(_ c: CallContext) throws -> String {
        let count = c.attrs[Self.count], p = c.p
        guard (1...count).allSatisfy(c.isPacked) else {
            throw CodegenError(description: "linear_stack needs weights used by nothing else (merge-linears checks this)")
        }
        let w = p[1...count].joined(separator: ", ")
        let b = p.count > 1 + count ? p[(1 + count)...].joined(separator: ", ") : Array(repeating: "NULL", count: count).joined(separator: ", ")
        let x = c.type(0)
        return """
        {
            const real *w[\(count)] = {\(w)};
            const real *b[\(count)] = {\(b)};
            linear_stack_packed_forward(\(c.dst), \(p[0]), \(count), w, b, \(c.workspaceOrNull), \(c.rows(x)), \(c.lastDim(x)), \(c.lastDim(c.type)));
        }
        """
    }
}

extension LinearGradInput: CLowering {
    var kernelFile: String? { "linear.c" }
    /// Panels of the weight (N, K): N × K rounded up to 64.
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        let w = g.nodes[g.nodes[i].operands[1]].type.shape.dims
        return GemmKernels.panelElements(inner: [w[0]], n: w[1].constValue ?? 1)
    }
    func call(_ c: CallContext) throws -> String {
        let p = c.p, t = c.type
        return "linear_backward_input(\(c.dst), \(p[0]), \(p[1]), \(c.accumulated), \(c.workspace), \(c.rows(t)), \(c.lastDim(t)), \(c.lastDim(c.type(0))));"
    }
}

extension LinearGradWeight: CLowering {
    var kernelFile: String? { "linear.c" }
    /// Panels of the input (M, K): M × K rounded up to 64.
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        let x = g.nodes[g.nodes[i].operands[1]].type.shape.dims
        return GemmKernels.panelElements(inner: Array(x.dropLast()), n: x.last?.constValue ?? 1)
    }
    func call(_ c: CallContext) throws -> String {
        let p = c.p, t = c.type
        return "linear_backward_weight(\(c.dst), \(p[0]), \(p[1]), \(c.workspace), \(c.rows(c.type(0))), \(c.lastDim(t)), \(t.shape.dims[0]));"
    }
}
