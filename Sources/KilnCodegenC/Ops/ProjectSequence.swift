import KilnBasics
import KilnIR

/// Scratch of Linformer's projection: the panels of one sequence's matrix (x[b] or dy[b] as B, or x[b]ᵀ),
/// and, for the projection's gradient, one sequence's K × N term. Sizes from T's bound N.
private func projectSequenceScratch(_ g: Graph, _ i: Int, weightGradient: Bool) -> SizeExpr {
    let n = g.nodes[i], x = g.nodes[n.operands[weightGradient ? 1 : 0]].type
    let e = g.nodes[n.operands[weightGradient ? 2 : 1]].type.shape.dims
    let (k, width) = (e[0].constValue ?? 1, e[1].constValue ?? 1), c = x.shape.dims[2].constValue ?? 1
    let rows = max(width, k)
    let panels = max(rows * GemmKernels.roundUp(c), c * GemmKernels.roundUp(width))
    return SizeExpr(constant: panels + (weightGradient ? k * width : 0))
}

extension ProjectSequence: CLowering {
    var kernelFile: String? { "project_sequence.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { projectSequenceScratch(g, i, weightGradient: false) }
    func call(_ c: CallContext) throws -> String {
        let x = c.type(0).shape.dims, e = c.type(1).shape.dims
        return "project_sequence_forward(\(c.dst), \(c.p[0]), \(c.p[1]), \(c.operands.count > 2 ? c.p[2] : "NULL"), \(c.workspace), \(x[0]), \(x[1]), \(x[2]), \(e[0]), \(e[1]));"
    }
}

extension ProjectSequenceGrad: CLowering {
    var kernelFile: String? { "project_sequence.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { projectSequenceScratch(g, i, weightGradient: true) }
    func call(_ c: CallContext) throws -> String {
        let x = c.type(1).shape.dims, e = c.type(2).shape.dims
        let mask = c.operands.count > 3 ? c.p[3] : "NULL"
        // the input's gradient reads the projection, the projection's gradient reads the input
        let (kernel, read) = c.attrs[Self.wrt].text == "x" ? ("project_sequence_backward_input", c.p[2]) : ("project_sequence_backward_projection", c.p[1])
        return "\(kernel)(\(c.dst), \(c.p[0]), \(read), \(mask), \(c.workspace), \(x[0]), \(x[1]), \(x[2]), \(e[0]), \(e[1]));"
    }
}
