import KilnBasics
import KilnIR
import KilnCodegenC

/// The text of `kiln stats`: the inference forward pass and, for models with
/// a train section, one training step (forward, loss, backward; the
/// optimiser's own arithmetic is 10–15 FLOPs per parameter and not counted).
public enum StatsReport {
    public static func render(_ p: Pipeline, file: SourceFile, batch: Int, seq: Int?) throws -> String {
        let c = try p.generate(file)
        let g = c.inference
        guard let tdim = g.dims.first(where: { $0.bound != nil }), let bdim = g.dims.first(where: { $0.bound == nil }) else {
            throw DriverError.message("stats needs a model with a batch dim and a bounded sequence dim")
        }
        let t = seq ?? tdim.bound!
        guard t <= tdim.bound! else { throw DriverError.message("--seq \(t) exceeds the context \(tdim.bound!)") }
        let env = [bdim.name: batch, tdim.name: t]
        func fmt(_ n: Int) -> String {
            let s = String(n)
            var out = ""
            for (i, ch) in s.reversed().enumerated() { if i > 0 && i % 3 == 0 { out.append(",") }; out.append(ch) }
            return String(out.reversed())
        }
        func block(_ title: String, _ s: ModelStats) -> String {
            var out = "\(title)\n"
            let w = max(s.flops.map(\.0.count).max() ?? 0, 10)
            for (k, f) in s.flops { out += "  \(k.padding(toLength: w, withPad: " ", startingAt: 0))  \(fmt(f).leftPad(18)) FLOPs\n" }
            out += "  \("total".padding(toLength: w, withPad: " ", startingAt: 0))  \(fmt(s.totalFlops).leftPad(18)) FLOPs\n"
            out += "  activation arena  \(fmt(s.arenaBytes)) bytes\n"
            return out
        }
        let fwd = ModelStats(g, plan: c.generated.forwardPlan, env: env)
        var out = "model \(g.name) at \(bdim.name)=\(batch) \(tdim.name)=\(t)\n"
        out += "parameters        \(fmt(fwd.parameters)) in \(fwd.parameterTensors) tensors\n"
        out += "weights           \(fmt(fwd.parameters * 4)) bytes (f32)\n"
        if let idle = idleExpertParameters(g) {
            out += "active            \(fmt(fwd.parameters - idle.parameters)) parameters per token (\(idle.description))\n"
            out += "forward per token \(fmt(fwd.totalFlops / max(batch * t, 1))) FLOPs (of the active parameters)\n"
        }
        out += block("forward (infer):", fwd)
        if let tg = c.training, let plan = c.generated.trainPlan {
            let tr = ModelStats(tg, plan: plan, env: env)
            let moments = c.train?.optimizer == .sgd ? 1 : 2
            out += block("training step (forward + loss + backward):", tr)
            out += "  gradients         \(fmt(fwd.parameters * 4)) bytes\n"
            out += "  optimiser state   \(fmt(fwd.parameters * 4 * moments)) bytes (\(c.train?.optimizer == .sgd ? "SGD momentum" : "AdamW m and v"))\n"
        }
        return out
    }
}

extension StatsReport {
    /// A mixture-of-experts model's expert weights that one token does not use: each `moe_up` and `moe_down`
    /// reads k of its E experts' `[E, H, C]` weights for a token. Nil for a model without experts.
    static func idleExpertParameters(_ g: Graph) -> (parameters: Int, description: String)? {
        var idle = 0, layers: [String] = []
        for n in g.nodes where n.kind == .moeUp || n.kind == .moeDown {
            let w = g.nodes[n.operands[2]].type.shape.dims.map { $0.constValue ?? 0 }
            let h = g.nodes[n.operands[0]].type  // moe_down's hidden activations [..., k, H]
            let k = n.kind == .moeUp ? n.attrs[MixtureOfExperts.top] : h.shape.dims[h.shape.rank - 2].constValue ?? 1
            idle += (w[0] - k) * w[1] * w[2]
            if n.kind == .moeUp { layers.append("\(k) of \(w[0])") }
        }
        guard !layers.isEmpty else { return nil }
        let kinds = Set(layers)
        let what = kinds.count == 1 ? "\(layers[0]) experts in each of \(layers.count) mixture-of-experts layers" : "experts \(layers.joined(separator: ", ")) in its mixture-of-experts layers"
        return (idle, "the routers and \(what)")
    }

    /// The parameters and the FLOPs of a forward pass and of a training step (nil without a train section) at
    /// batch B and sequence length T (at most the context; default the context).
    public static func totals(_ c: Pipeline.Compiled, batch: Int, seq: Int?) throws -> (parameters: Int, forwardFlops: Int, trainFlops: Int?) {
        let g = c.inference
        guard let tdim = g.dims.first(where: { $0.bound != nil }), let bdim = g.dims.first(where: { $0.bound == nil }) else {
            throw DriverError.message("stats needs a model with a batch dim and a bounded sequence dim")
        }
        let env = [bdim.name: batch, tdim.name: min(seq ?? tdim.bound!, tdim.bound!)]
        let fwd = ModelStats(g, plan: c.generated.forwardPlan, env: env)
        var train: Int?
        if let tg = c.training, let plan = c.generated.trainPlan { train = ModelStats(tg, plan: plan, env: env).totalFlops }
        return (fwd.parameters, fwd.totalFlops, train)
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
