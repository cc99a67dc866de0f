import KilnBasics
import KilnIR

/// The tokens (all dims but the last) of a `[..., E]` tensor.
private func tokens(_ t: TensorType) -> SizeExpr { Shape(Array(t.shape.dims.dropLast())).elementCount }

/// (E, H, C) of an expert weight `[E, H, C]`.
private func experts(_ t: TensorType) -> (e: Int, h: Int, c: Int) {
    let d = t.shape.dims.map { $0.constValue ?? 1 }
    return (d[0], d[1], d[2])
}

/// moe.c's `moe_scratch_of`: N·k·(2 + 2·max(C, H) + round64(max(C, H))) for the slot list and places, two grouped
/// blocks and the weight gradients' panels; and, apart, 2E + 1 + the panels of every expert's weight.
private func groupedWork(gates: TensorType, weight: TensorType, k: Int) -> SizeExpr {
    let (_, h, c) = experts(weight), width = max(c, h)
    return tokens(gates) * .const(k * (2 + 2 * width + GemmKernels.roundUp(width)))
}
private func groupedFixed(weight: TensorType) -> [SizeExpr] {
    let (e, h, c) = experts(weight)
    return [SizeExpr(constant: 2 * e + 1 + e * max(c * GemmKernels.roundUp(h), h * GemmKernels.roundUp(c)))]
}
/// The grouped products' lowering: where a node's gates and expert weight are among its operands, and its k.
private protocol GroupedExperts: CLowering {
    /// The operand indices of the gates and of the expert weight.
    var gatesAndWeight: (gates: Int, weight: Int) { get }
    /// Slots per token.
    func slotsPerToken(_ g: Graph, _ n: Node) -> Int
}

extension GroupedExperts {
    var kernelFile: String? { "moe.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        let n = g.nodes[i], (gates, weight) = gatesAndWeight
        return groupedWork(gates: g.nodes[n.operands[gates]].type, weight: g.nodes[n.operands[weight]].type, k: slotsPerToken(g, n))
    }
    func extraWorkspaces(_ g: Graph, _ i: Int, packed: Set<Int>) -> [SizeExpr] {
        groupedFixed(weight: g.nodes[g.nodes[i].operands[gatesAndWeight.weight]].type)
    }
}

/// The slots per token of an `moe_down` family node: k of h `[..., k, H]`.
private func slots(_ h: TensorType) -> Int { h.shape.dims[h.shape.rank - 2].constValue ?? 1 }

/// `moe_route` and its gradient: the choices (N·k) and the experts' counts (E), as 32-bit integers.
private func routeWork(_ g: Graph, _ i: Int, logits: Int) -> SizeExpr {
    let n = g.nodes[i], l = g.nodes[n.operands[logits]].type
    return tokens(l) * .const(n.attrs[MixtureOfExperts.top] + (l.shape.last?.constValue ?? 1))
}

extension MoERoute: CLowering {
    var kernelFile: String? { "moe.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { routeWork(g, i, logits: 0) }
    func call(_ c: CallContext) throws -> String {
        "moe_route_forward(\(c.dst), \(c.p[0]), (int32_t *)\(c.workspace), \(c.rows(c.type)), \(c.lastDim(c.type)), \(c.attrs[MixtureOfExperts.top]), \(c.attrs[MixtureOfExperts.capacity]));"
    }
}

extension MoERouteGrad: CLowering {
    var kernelFile: String? { "moe.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { routeWork(g, i, logits: 1) }
    func call(_ c: CallContext) throws -> String {
        "moe_route_backward(\(c.dst), \(c.p[0]), \(c.p[1]), (int32_t *)\(c.workspace), \(c.rows(c.type)), \(c.lastDim(c.type)), \(c.attrs[MixtureOfExperts.top]), \(c.attrs[MixtureOfExperts.capacity]));"
    }
}

extension MoEUp: GroupedExperts {
    var gatesAndWeight: (gates: Int, weight: Int) { (1, 2) }
    func slotsPerToken(_ g: Graph, _ n: Node) -> Int { n.attrs[MixtureOfExperts.top] }
    func call(_ c: CallContext) throws -> String {
        let (e, h, ch) = experts(c.type(2)), p = c.p
        return "moe_up_forward(\(c.dst), \(p[0]), \(p[1]), \(p[2]), \(c.workspace), \(c.extraWorkspace(0)), \(c.rows(c.type(1))), \(e), \(c.attrs[MixtureOfExperts.top]), \(h), \(ch));"
    }
}

extension MoEUpGrad: GroupedExperts {
    var gatesAndWeight: (gates: Int, weight: Int) { (2, 3) }
    func slotsPerToken(_ g: Graph, _ n: Node) -> Int { slots(g.nodes[n.operands[0]].type) }
    func call(_ c: CallContext) throws -> String {
        let (e, h, ch) = experts(c.type(3)), p = c.p, k = slots(c.type(0))
        let (dx, dw) = c.attrs[Self.wrt].text == "x" ? (c.dst, "NULL") : ("NULL", c.dst)
        return "moe_up_backward(\(dx), \(dw), \(p[0]), \(p[1]), \(p[2]), \(p[3]), \(c.workspace), \(c.extraWorkspace(0)), \(c.rows(c.type(2))), \(e), \(k), \(h), \(ch));"
    }
}

extension MoEDown: GroupedExperts {
    var gatesAndWeight: (gates: Int, weight: Int) { (1, 2) }
    func slotsPerToken(_ g: Graph, _ n: Node) -> Int { slots(g.nodes[n.operands[0]].type) }
    func call(_ c: CallContext) throws -> String {
        let (e, h, ch) = experts(c.type(2)), p = c.p
        return "moe_down_forward(\(c.dst), \(p[0]), \(p[1]), \(p[2]), \(c.workspace), \(c.extraWorkspace(0)), \(c.rows(c.type(1))), \(e), \(slots(c.type(0))), \(h), \(ch), KILN_ACT_\(c.attrs[MixtureOfExperts.activation].text));"
    }
}

extension MoEDownGrad: GroupedExperts {
    var gatesAndWeight: (gates: Int, weight: Int) { (2, 3) }
    func slotsPerToken(_ g: Graph, _ n: Node) -> Int { slots(g.nodes[n.operands[1]].type) }
    func call(_ c: CallContext) throws -> String {
        let (e, h, ch) = experts(c.type(3)), p = c.p
        let wrt = ["h": 0, "gates": 1, "weight": 2][c.attrs[Self.wrt].text] ?? 0
        return "moe_down_backward(\(c.dst), \(p[0]), \(p[1]), \(p[2]), \(p[3]), \(c.workspace), \(c.extraWorkspace(0)), \(c.rows(c.type(2))), \(e), \(slots(c.type(1))), \(h), \(ch), KILN_ACT_\(c.attrs[MixtureOfExperts.activation].text), \(wrt));"
    }
}

/// C arrays of the operands' pointers from `first`: the routers of a `router_loss` or `moe_load`.
private func pointerArray(_ c: CallContext, _ name: String, from first: Int) -> String {
    "const real *const \(name)[] = {\(c.p[first...].joined(separator: ", "))};"
}

extension RouterLoss: CLowering {
    var kernelFile: String? { "moe.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        SizeExpr(constant: 2 * (g.nodes[g.nodes[i].operands[0]].type.shape.last?.constValue ?? 1))
    }
    func call(_ c: CallContext) throws -> String {
        let l = c.type(0), kind = c.attrs[Self.kind].text == "z" ? 1 : 0
        return """
            {
                \(pointerArray(c, "router_logits", from: 0))
                router_loss_forward(\(c.dst), router_logits, \(c.workspace), \(c.operands.count), \(c.rows(l)), \(c.lastDim(l)), \(kind));
            }
            """
    }
}

extension RouterLossGrad: CLowering {
    var kernelFile: String? { "moe.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        SizeExpr(constant: g.nodes[g.nodes[i].operands[1]].type.shape.last?.constValue ?? 1)
    }
    func call(_ c: CallContext) throws -> String {
        let l = c.type(1), kind = c.attrs[RouterLoss.kind].text == "z" ? 1 : 0
        return """
            {
                \(pointerArray(c, "router_logits", from: 1))
                router_loss_backward(\(c.dst), \(c.p[0]), router_logits, \(c.workspace), \(c.operands.count - 1), \(c.rows(l)), \(c.lastDim(l)), \(kind));
            }
            """
    }
}

extension MoELoad: CLowering {
    var kernelFile: String? { "moe.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let gt = c.type(0)
        return """
            {
                \(pointerArray(c, "moe_gates", from: 0))
                moe_load_forward(\(c.dst), moe_gates, \(c.operands.count), \(c.rows(gt)), \(c.lastDim(gt)));
            }
            """
    }
}
