import KilnBasics
import KilnIR

/// The vector–Jacobian product rules, one case per op: given a node and the
/// gradient `g` of the loss with respect to its result, the gradients with
/// respect to its operands (by operand position). Only operands in `wanted`
/// get a gradient. Kernels of the new ops are in KilnCodegenC/Kernels.swift.
enum VJP {
    static func rule(_ b: inout GraphBuilder, node i: Int, g: Int, wanted: (Int) -> Bool) -> [(Int, Int)] {
        let n = b.graph.nodes[i]
        let o = n.operands
        var out: [(Int, Int)] = []
        func want(_ k: Int) -> Bool { k < o.count && wanted(o[k]) }
        switch n.kind {
        case .input, .param, .sinusoidal, .scalar:
            break
        case .embedding:  // rows of the table: scatter-add
            if want(0) { out.append((0, b.emit(.embeddingGrad, [g, o[1], o[0]]))) }
        case .sliceRows:  // first rows of the table
            if want(0) { out.append((0, b.emit(.padRows, [g, o[0]]))) }
        case .linear where n.attrs["activation"] != nil || n.attrs["residual"] != nil:
            preconditionFailure("epilogue-fused linear in a graph to differentiate: fusion runs on inference graphs only")
        case .linearStack:
            preconditionFailure("linear_stack in a graph to differentiate: merge-linears runs on inference graphs only")
        case .fused:
            preconditionFailure("fused op in a graph to differentiate: fuse-elementwise runs after autodiff")
        case .linear:  // y = x·wᵀ + b
            if want(0) { out.append((0, b.emit(.linearGradInput, [g, o[1]]))) }
            if want(1) { out.append((1, b.emit(.linearGradWeight, [g, o[0]]))) }
            if want(2) { out.append((2, b.sumTo(g, like: o[2]))) }
        case .layernorm:
            let eps = n.attrs["eps"]!
            if want(0) { out.append((0, b.emit(.layernormGradInput, [g, o[0], o[1]], [("eps", eps)]))) }
            if want(1) { out.append((1, b.emit(.layernormGradWeight, [g, o[0]], [("eps", eps)]))) }
            if want(2) { out.append((2, b.sumTo(g, like: o[2]))) }
        case .attention:
            let types = o.map { b.type($0) }
            if want(0) && want(1) && want(2) && types[0] == types[1] && types[1] == types[2] {
                // Self-attention: one backward pass for all three, then views of its slices.
                let all = b.emit(.attentionGrad, [g] + o, [("heads", n.attrs["heads"]!), ("causal", n.attrs["causal"]!), ("wrt", .word("all"))])
                for k in 0..<3 { out.append((k, b.emit(.select, [all], [("index", .int(k))]))) }
                break
            }
            for (k, wrt) in ["q", "k", "v"].enumerated() where want(k) {
                out.append((k, b.emit(.attentionGrad, [g] + o, [("heads", n.attrs["heads"]!), ("causal", n.attrs["causal"]!), ("wrt", .word(wrt))])))
            }
        case .add:
            if want(0) { out.append((0, b.sumTo(g, like: o[0]))) }
            if want(1) { out.append((1, b.sumTo(g, like: o[1]))) }
        case .sub:
            if want(0) { out.append((0, b.sumTo(g, like: o[0]))) }
            if want(1) { out.append((1, b.sumTo(b.emit(.scale, [g], [("factor", .float(-1))]), like: o[1]))) }
        case .mul:
            if want(0) { out.append((0, b.sumTo(b.emit(.mul, [g, o[1]]), like: o[0]))) }
            if want(1) { out.append((1, b.sumTo(b.emit(.mul, [g, o[0]]), like: o[1]))) }
        case .div:  // d(a/b)/da = 1/b; d(a/b)/db = −a/b²
            if want(0) { out.append((0, b.sumTo(b.emit(.div, [g, o[1]]), like: o[0]))) }
            if want(1) {
                let num = b.emit(.mul, [g, o[0]]), den = b.emit(.mul, [o[1], o[1]])
                out.append((1, b.sumTo(b.emit(.scale, [b.emit(.div, [num, den])], [("factor", .float(-1))]), like: o[1])))
            }
        case .scale:
            if want(0) { out.append((0, b.emit(.scale, [g], [("factor", n.attrs["factor"]!)]))) }
        case .relu: if want(0) { out.append((0, b.emit(.reluGrad, [g, o[0]]))) }
        case .gelu: if want(0) { out.append((0, b.emit(.geluGrad, [g, o[0]]))) }
        case .geluTanh: if want(0) { out.append((0, b.emit(.geluTanhGrad, [g, o[0]]))) }
        case .softmax: if want(0) { out.append((0, b.emit(.softmaxGrad, [g, i]))) }
        case .dropout:  // the same mask applies to the gradient
            if want(0) { out.append((0, b.emit(.dropout, [g], n.attrs.entries))) }
        case .crossEntropy:
            if want(0) { out.append((0, b.emit(.crossEntropyGrad, [o[0], o[1], g]))) }
        case .crossEntropyGrad, .embeddingGrad, .padRows, .linearGradInput, .linearGradWeight, .sumTo, .layernormGradInput,
             .layernormGradWeight, .attentionGrad, .reluGrad, .geluGrad, .geluTanhGrad, .softmaxGrad, .select:
            preconditionFailure("no second derivatives: \(n.kind.rawValue) has no VJP")
        }
        return out
    }
}
