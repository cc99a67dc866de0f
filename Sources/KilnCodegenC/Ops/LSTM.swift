import KilnBasics
import KilnIR

/// The hidden size H of an lstm-family node, from its recurrent weight [4H, H] (operand `weight`).
private func hidden(_ g: Graph, _ n: Node, weight: Int) -> Int { g.nodes[n.operands[weight]].type.shape.dims[1].constValue ?? 1 }

/// lstm.c's `lstm_panels_size`: the packed recurrent weight, in either orientation.
private func panels(_ h: Int) -> SizeExpr { SizeExpr(constant: 4 * h * GemmKernels.roundUp(h)) }

/// `lstm_forward`'s per-row scratch: (B, 2H), the first hidden state and the cell.
private func rowScratch(_ g: Graph, _ n: Node, _ h: Int) -> SizeExpr { SizeExpr(constant: 2 * h) * n.type.shape.dims[0] }

extension LSTM: CLowering {
    var kernelFile: String? { "lstm.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { rowScratch(g, g.nodes[i], hidden(g, g.nodes[i], weight: 1)) }
    /// The packed recurrent weight, unless the model keeps it packed (`CEmitter.gatePackedWeights`).
    func extraWorkspaces(_ g: Graph, _ i: Int, packed: Set<Int>) -> [SizeExpr] {
        packed.contains(g.nodes[i].operands[1]) ? [] : [panels(hidden(g, g.nodes[i], weight: 1))]
    }
    func call(_ c: CallContext) throws -> String {
        let d = c.type.shape.dims, p = c.p, panels = c.isPacked(1) ? "NULL" : c.extraWorkspace(0)
        return "lstm_forward(\(c.dst), \(p[0]), \(p[1]), \(p[2]), NULL, NULL, NULL, \(panels), \(c.workspace), \(d[0]), \(d[1]), \(d[2]));"
    }
}

extension CachedLSTM: CLowering {
    var kernelFile: String? { "lstm.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { rowScratch(g, g.nodes[i], hidden(g, g.nodes[i], weight: 3)) }
    func extraWorkspaces(_ g: Graph, _ i: Int, packed: Set<Int>) -> [SizeExpr] {
        packed.contains(g.nodes[i].operands[3]) ? [] : [panels(hidden(g, g.nodes[i], weight: 3))]
    }
    func call(_ c: CallContext) throws -> String {
        let d = c.type.shape.dims, p = c.p, positions = p.count > 5 ? p[5] : "NULL", panels = c.isPacked(3) ? "NULL" : c.extraWorkspace(0)
        return "lstm_forward(\(c.dst), \(p[0]), \(p[3]), \(p[4]), \(p[1]), \(p[2]), \(positions), \(panels), \(c.workspace), \(d[0]), \(d[1]), \(d[2]));"
    }
}

extension LSTMGrad: CLowering {
    var kernelFile: String? { "lstm.c" }
    /// The positions' gates, cells and hidden states (B, T, 6H).
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        let dy = g.nodes[g.nodes[i].operands[0]].type
        return dy.shape.elementCount * .const(6)
    }
    /// Both packed orientations of W_hh, and the per-row carries (B, 3H).
    func extraWorkspaces(_ g: Graph, _ i: Int, packed: Set<Int>) -> [SizeExpr] {
        let n = g.nodes[i], h = hidden(g, n, weight: 2)
        return [SizeExpr(constant: 2 * panels(h).constant), SizeExpr(constant: 3 * h) * n.type.shape.dims[0]]
    }
    func call(_ c: CallContext) throws -> String {
        let d = c.type(0).shape.dims, p = c.p
        return "lstm_backward(\(c.dst), \(p[0]), \(p[1]), \(p[2]), \(p[3]), \(c.workspace), \(c.extraWorkspace(0)), \(c.extraWorkspace(1)), \(d[0]), \(d[1]), \(d[2]));"
    }
}
