import KilnBasics
import KilnIR

/// Exact sizes and operation counts of a compiled model, computed from the
/// IR and the memory plan before anything runs (`kiln stats`).
///
/// FLOPs count multiply–adds as 2. Matrix products and attention are exact
/// (causal attention counts only the unmasked positions); elementwise and
/// normalisation kernels count the arithmetic of their loop bodies
/// (e.g. layernorm: 8 per element, GELU: 10, softmax and cross-entropy: 5).
public struct ModelStats: Sendable {
    public var parameters: Int
    public var parameterTensors: Int
    /// FLOPs per op kind for one call, sorted by kind.
    public var flops: [(String, Int)]
    public var totalFlops: Int { flops.reduce(0) { $0 + $1.1 } }
    /// Bytes of the activation arena at these shapes.
    public var arenaBytes: Int

    public init(_ g: Graph, plan: MemoryPlan, env: [String: Int], elementBytes: Int = 4) {
        parameterTensors = g.parameters.count
        parameters = plan.paramCount
        var byKind: [String: Int] = [:]
        for (i, n) in g.nodes.enumerated() {
            let f = Self.flops(g, i, env)
            if f > 0 { byKind[n.kind.rawValue, default: 0] += f }
        }
        flops = byKind.sorted { $0.key < $1.key }
        var arena = 0
        for s in plan.slotSizes {
            let e = s.evaluate(env)
            let align = 64 / elementBytes
            arena += (e + align - 1) / align * align
        }
        arenaBytes = arena * elementBytes
    }

    static func flops(_ g: Graph, _ i: Int, _ env: [String: Int]) -> Int {
        let n = g.nodes[i]
        func count(_ t: TensorType) -> Int { t.shape.elementCount.evaluate(env) }
        func dim(_ d: Dim) -> Int { d.constValue ?? env[d.description] ?? 1 }
        let out = count(n.type)
        // A gradient summed in by a fused producer (fuse-grad-acc) costs the add it replaced.
        let acc = n.attrs.bool("accumulate") == true ? out : 0
        switch n.kind {
        case .linear:  // the product, then the epilogue: bias, activation (as its own kernel counts), residual
            let k = dim(g.nodes[n.operands[0]].type.shape.last!)
            let residual = n.attrs.bool("residual") == true
            let bias = n.operands.count - (residual ? 3 : 2) == 1
            let act = ["relu": 1, "gelu": 10, "gelu_tanh": 10][n.attrs.word("activation") ?? ""] ?? 0
            return 2 * out * k + (bias ? out : 0) + act * out + (residual ? out : 0)
        case .linearStack:
            let k = dim(g.nodes[n.operands[0]].type.shape.last!)
            return 2 * out * k + (n.operands.count > 1 + n.attrs.int("count")! ? out : 0)
        case .linearGradInput:
            return 2 * out * dim(g.nodes[n.operands[0]].type.shape.last!) + acc
        case .linearGradWeight:
            let rows = count(g.nodes[n.operands[0]].type) / dim(g.nodes[n.operands[0]].type.shape.last!)
            return 2 * out * rows
        case .attention, .attentionGrad:
            let q = g.nodes[n.operands[n.kind == .attention ? 0 : 1]].type.shape.dims
            let k = g.nodes[n.operands[n.kind == .attention ? 1 : 2]].type.shape.dims
            let (b, t, c, s) = (dim(q[0]), dim(q[1]), dim(q[2]), dim(k[1]))
            let pairs = n.attrs.bool("causal") == true ? b * t * (t + 1) / 2 : b * t * s
            // per (query, key) pair and channel: forward q·k and p·v; backward dv: q·k, p·dy; dq, dk: q·k, dy·v, ds·k
            let perPair = n.kind == .attention ? 4 : ["v": 4, "all": 10][n.attrs.word("wrt") ?? ""] ?? 6
            return perPair * pairs * c
        case .layernorm: return 8 * out
        case .layernormGradInput: return 8 * out + acc
        case .layernormGradWeight: return 8 * count(g.nodes[n.operands[0]].type)
        case .gelu, .geluTanh, .geluGrad, .geluTanhGrad: return 10 * out
        case .softmax, .softmaxGrad: return 5 * out
        case .crossEntropy, .crossEntropyGrad: return 5 * count(g.nodes[n.operands[0]].type)
        case .add, .sub, .mul, .div, .scale, .relu, .reluGrad, .dropout: return out
        case .fused:  // each op of the expression, once per output element (as its own kernel counts)
            guard let e = try? n.fusedExpression() else { return 0 }
            return e.ops.reduce(0) { $0 + ([.gelu, .geluTanh].contains($1) ? 10 : 1) } * out
        case .sumTo: return count(g.nodes[n.operands[0]].type)
        case .embeddingGrad: return count(g.nodes[n.operands[0]].type) + acc
        default: return 0
        }
    }
}
