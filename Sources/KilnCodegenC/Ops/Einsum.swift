import KilnBasics
import KilnIR

/// How one einsum runs as a batched product: each operand's permutation to (batch, M, K) / (batch, K, N) and the
/// product's to the output (nil: already in order, no copy), and the sizes of the four groups.
private struct EinsumPlan {
    let aPerm: [Int]?, bPerm: [Int]?, outPerm: [Int]?
    let batch: [Dim], m: [Dim], n: [Dim], k: [Dim]

    init(_ g: Graph, _ node: Node) throws {
        let e = try EinsumEquation(node.attrs[Einsum.equation].text)
        let (x, y) = (g.nodes[node.operands[0]].type, g.nodes[node.operands[1]].type)
        let s = try e.sizes(x, y)
        func perm(_ from: [Character], _ to: [Character]) -> [Int]? {
            let p = to.map { from.firstIndex(of: $0)! }
            return p == Array(p.indices) ? nil : p
        }
        aPerm = perm(e.a, e.batch + e.m + e.k)
        bPerm = perm(e.b, e.batch + e.k + e.n)
        outPerm = perm(e.batch + e.m + e.n, e.out)
        (batch, m, n, k) = (e.batch.map { s[$0]! }, e.m.map { s[$0]! }, e.n.map { s[$0]! }, e.k.map { s[$0]! })
    }
    /// The scratch copies, in slot order: the permuted a, the permuted b, the product before its permutation.
    func copies(_ g: Graph, _ node: Node) -> [(what: String, size: SizeExpr)] {
        var c: [(String, SizeExpr)] = []
        if aPerm != nil { c.append(("a", g.nodes[node.operands[0]].type.shape.elementCount)) }
        if bPerm != nil { c.append(("b", g.nodes[node.operands[1]].type.shape.elementCount)) }
        if outPerm != nil { c.append(("product", node.type.shape.elementCount)) }
        return c
    }
}

private func product(_ d: [Dim]) -> String { Shape(d).elementCount.cExpression }

extension Einsum: CLowering {
    var kernelFile: String? { "einsum.c" }
    /// matmul's panels: every batch's K x N, N rounded up to the panel width (by its bound when symbolic, else
    /// 64 N, which covers any rounding).
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? {
        guard let p = try? EinsumPlan(g, g.nodes[i]) else { return nil }
        let bounds = p.n.map { $0.constValue ?? g.bound(of: $0) }
        let width = bounds.contains(where: { $0 == nil }) ? [Dim.const(64)] + p.n : [Dim.const(GemmKernels.roundUp(bounds.reduce(1) { $0 * $1! }))]
        return Shape(p.batch + p.k + width).elementCount
    }
    func extraWorkspaces(_ g: Graph, _ i: Int, packed: Set<Int>) -> [SizeExpr] {
        (try? EinsumPlan(g, g.nodes[i]))?.copies(g, g.nodes[i]).map(\.size) ?? []
    }
    func call(_ c: CallContext) throws -> String {
        let p = try EinsumPlan(c.f.g, c.node)
        let slots = p.copies(c.f.g, c.node).map(\.what)
        func slot(_ w: String) -> String { c.extraWorkspace(slots.firstIndex(of: w)!) }
        var lines: [String] = []
        func permute(_ to: String, _ from: String, _ dims: [Dim], _ perm: [Int], _ tag: String) {
            lines.append("const size_t \(tag)_dims[\(dims.count)] = {\(dimsArray(dims))};")
            lines.append("const int \(tag)_perm[\(perm.count)] = {\(perm.map(String.init).joined(separator: ", "))};")
            lines.append("permute_forward(\(to), \(from), \(dims.count), \(tag)_dims, \(tag)_perm);")
        }
        var (a, b, prod) = (c.p[0], c.p[1], c.dst)
        if let q = p.aPerm { permute(slot("a"), a, c.type(0).shape.dims, q, "a"); a = slot("a") }
        if let q = p.bPerm { permute(slot("b"), b, c.type(1).shape.dims, q, "b"); b = slot("b") }
        if p.outPerm != nil { prod = slot("product") }
        lines.append("matmul_forward(\(prod), \(a), \(b), \(c.workspace), \(product(p.batch)), \(product(p.m)), \(product(p.n)), \(product(p.k)), 0);")
        if let q = p.outPerm { permute(c.dst, prod, p.batch + p.m + p.n, q, "out") }
        return "{ /* \(c.attrs[Self.equation].text): batch \(p.batch), M \(p.m), N \(p.n), K \(p.k) */\n    " + lines.joined(separator: "\n    ") + "\n}"
    }
}
