import KilnBasics
import KilnIR

/// GEMM epilogue fusion: an activation applied to a linear layer's output,
/// and a residual added to it (or a gate multiplying it), move into the linear op (`linear {activation:
/// gelu, residual: true}(x, w, b, r)` computes `act(x·wᵀ + b) + r`), so the
/// matrix product's tiles get bias, activation and residual while they are
/// still in cache instead of three more passes over memory.
///
/// Fuses only where the linear's value has no other use, the residual has
/// exactly the output's type and is defined before the linear (so the graph
/// stays in order), and never across a residual already fused. For
/// inference graphs: the training pipeline keeps activations separate
/// because their backward passes need the pre-activation.
public struct FuseLinearEpilogue: Pass {
    public let name = "fuse-epilogue"
    public init() {}

    public func run(_ g: inout Graph) throws -> Bool {
        var uses = g.useCounts()
        var replace: [Int: Int] = [:]
        var keep = [Bool](repeating: true, count: g.nodes.count)
        var changed = false
        for i in g.nodes.indices {
            let n = g.nodes[i]
            // activation(linear) -> linear {activation}
            if let act = Activation.named(n.kind.name), n.operands.count == 1 {
                let l = n.operands[0]
                let lin = g.nodes[l]
                guard lin.kind == .linear, uses[l] == 1, lin.attrs["activation"] == nil, lin.attrs["residual"] == nil,
                      lin.type == n.type else { continue }
                g.nodes[l].attrs.set(Linear.activation, Word(act.name))
                g.nodes[l].name = g.nodes[l].name ?? n.name
                redirect(&g, from: i, to: l, &uses, &replace, &keep)
                changed = true
            }
            // add(linear, r) or add(r, linear) -> linear {residual}(…, r); mul(linear, r) or mul(r, linear)
            // -> linear {residual, combine: mul}(…, r) (a gated linear unit's product with its gate)
            if n.kind == .add || n.kind == .mul {
                for (k, l) in n.operands.enumerated() {
                    let r = n.operands[1 - k]
                    let lin = g.nodes[l]
                    guard lin.kind == .linear, uses[l] == 1, lin.attrs["residual"] == nil, r < l, r != l,
                          g.nodes[r].type == n.type, lin.type == n.type else { continue }
                    g.nodes[l].operands.append(r)
                    g.nodes[l].attrs["residual"] = .bool(true)
                    if n.kind == .mul { g.nodes[l].attrs.set(Linear.combine, "mul") }
                    redirect(&g, from: i, to: l, &uses, &replace, &keep)
                    changed = true
                    break
                }
            }
        }
        guard changed else { return false }
        g = g.compacted(keep: keep, replace: replace)
        return true
    }

    /// Every later use of node `from` reads `to` instead; `from` is dropped.
    private func redirect(_ g: inout Graph, from: Int, to: Int, _ uses: inout [Int], _ replace: inout [Int: Int], _ keep: inout [Bool]) {
        g.redirectUses(of: from, to: to)
        uses[to] = uses[from]
        keep[from] = false
        replace[from] = to
    }
}
