import KilnBasics
import KilnIR

/// C arrays of the operands' pointers from `first`, `count` of them: the steps of an ACT op.
private func pointerArray(_ c: CallContext, _ name: String, from first: Int, count: Int) -> String {
    "const real *const \(name)[] = {\(c.p[first..<(first + count)].joined(separator: ", "))};"
}

/// Scratch of `act.c`: per position `perStep` elements per step (the weights and the flags of the halting
/// bookkeeping), and one more per position for `act_ponder`'s costs.
private func haltingWorkspace(_ g: Graph, probability: Int, perStep: Int, steps: Int, extra: Int = 0) -> SizeExpr {
    g.nodes[probability].type.shape.elementCount * .const(perStep * steps + extra)
}

extension AdaptiveComputation: CLowering {
    var kernelFile: String? { "act.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        let n = g.nodes[i]
        return haltingWorkspace(g, probability: n.operands[0], perStep: 3, steps: n.attrs[Halting.steps])
    }
    func call(_ c: CallContext) throws -> String {
        let n = c.attrs[Halting.steps]
        return """
            {
                \(pointerArray(c, "act_p", from: 0, count: n))
                \(pointerArray(c, "act_s", from: n, count: n))
                act_forward(\(c.dst), act_p, act_s, \(c.workspace), \(n), \(c.rows(c.type)), \(c.lastDim(c.type)), \(c.literal(c.attrs[Halting.threshold])));
            }
            """
    }
}

extension ActGrad: CLowering {
    var kernelFile: String? { "act.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        let n = g.nodes[i]
        return haltingWorkspace(g, probability: n.operands[1], perStep: 5, steps: n.attrs[Halting.steps])
    }
    func call(_ c: CallContext) throws -> String {
        let n = c.attrs[Halting.steps], s = c.type(1 + n)
        return """
            {
                \(pointerArray(c, "act_p", from: 1, count: n))
                \(pointerArray(c, "act_s", from: 1 + n, count: n))
                act_backward(\(c.dst), \(c.p[0]), act_p, act_s, \(c.workspace), \(n), \(c.rows(s)), \(c.lastDim(s)), \(c.literal(c.attrs[Halting.threshold])), \(c.attrs[Self.wrt] == "p" ? 1 : 0));
            }
            """
    }
}

extension ActPonder: CLowering {
    var kernelFile: String? { "act.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        let n = g.nodes[i]
        return haltingWorkspace(g, probability: n.operands[0], perStep: 3, steps: n.operands.count, extra: 1)
    }
    func call(_ c: CallContext) throws -> String {
        let n = c.operands.count
        return """
            {
                \(pointerArray(c, "act_p", from: 0, count: n))
                act_ponder_forward(\(c.dst), act_p, \(c.workspace), \(n), \(c.rows(c.type(0))), \(c.literal(c.attrs[Halting.threshold])));
            }
            """
    }
}

extension ActPonderGrad: CLowering {
    var kernelFile: String? { "act.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        let n = g.nodes[i]
        return haltingWorkspace(g, probability: n.operands[1], perStep: 3, steps: n.operands.count - 1)
    }
    func call(_ c: CallContext) throws -> String {
        let n = c.operands.count - 1
        return """
            {
                \(pointerArray(c, "act_p", from: 1, count: n))
                act_ponder_backward(\(c.dst), \(c.p[0]), act_p, \(c.workspace), \(n), \(c.rows(c.type(1))), \(c.literal(c.attrs[Halting.threshold])));
            }
            """
    }
}
