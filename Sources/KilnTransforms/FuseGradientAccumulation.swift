import KilnBasics
import KilnIR

/// Backward-graph fusion: a gradient that is the sum of two contributions,
/// `add(a, b)` where `b` is a `linear_grad_input`, `layernorm_grad_input` or
/// `embedding_grad` used only there, becomes `b` with `a` as its accumulated
/// operand (`linear_grad_input {accumulate: true}(dy, w, a)` computes
/// `dy·w + a`). The sum then happens where `b` is produced: in the matrix
/// product's epilogue, in the LayerNorm backward's row loop (the residual
/// stream's gradient meeting the normalised branch's), or, for a tied
/// embedding, by scattering the embedding's rows into the output head's
/// weight gradient in place instead of into a zeroed table of its own.
///
/// Chains fuse one link at a time: `add(add(a, b), c)` becomes
/// `c(…, b(…, a))`, the same sums in the same order. Fuses only where `a` is
/// defined before `b` (the graph stays in order), `a`, `b` and the sum all
/// have one type (no broadcasting), and `b` accumulates nothing yet.
public struct FuseGradientAccumulation: Pass {
    public let name = "fuse-grad-acc"
    public init() {}

    public func run(_ g: inout Graph) throws -> Bool {
        var uses = g.useCounts()
        var replace: [Int: Int] = [:]
        var keep = [Bool](repeating: true, count: g.nodes.count)
        var changed = false
        for i in g.nodes.indices where g.nodes[i].kind == .add {
            let n = g.nodes[i]
            for k in 0..<2 {
                let b = n.operands[1 - k], a = n.operands[k]
                let p = g.nodes[b]
                guard p.kind.acceptsAccumulate, uses[b] == 1, p.attrs["accumulate"] == nil, a < b,
                      g.nodes[a].type == n.type, p.type == n.type else { continue }
                g.nodes[b].operands.append(a)
                g.nodes[b].attrs["accumulate"] = .bool(true)
                g.nodes[b].name = g.nodes[b].name ?? n.name
                g.redirectUses(of: i, to: b)
                uses[b] = uses[i]
                keep[i] = false
                replace[i] = b
                changed = true
                break
            }
        }
        guard changed else { return false }
        g = g.compacted(keep: keep, replace: replace)
        return true
    }
}
