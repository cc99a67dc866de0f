import Foundation

/// The results of a sweep: a Markdown table like Narang et al. 2021's (per variant: parameters, training FLOPs
/// per step, steps per second, early and final losses, mean ± standard deviation over seeds), the same data as
/// CSV (one row per run) and JSON, the held-out loss against sequence length, and two pictures (SVG and PNG):
/// the loss curves and the context-length curve.
struct SweepReport {
    let spec: SweepSpec
    let results: [Sweep.RunResult]
    /// Per variant: parameters and training FLOPs per optimizer step (`kiln stats`).
    let info: [String: (Int, Int)]

    func write(to dir: String) throws {
        try atomicWrite(Data(markdown().utf8), to: dir + "/results.md")
        try atomicWrite(Data(csv().utf8), to: dir + "/results.csv")
        try atomicWrite(try json(), to: dir + "/results.json")
        for (name, chart) in [("loss", lossPlot())] + (spec.lengths.isEmpty ? [] : [("length", lengthPlot())]) {
            try atomicWrite(Data(Plot.svg(chart).utf8), to: "\(dir)/\(name).svg")
            try atomicWrite(Plot.png(chart), to: "\(dir)/\(name).png")
        }
    }

    func runs(_ v: String) -> [Sweep.RunResult] { results.filter { $0.variant == v && $0.failed == nil } }

    /// "mean ± sd" (sd over seeds, n − 1), or the value alone for one seed, or "—".
    func stat(_ xs: [Double], _ digits: Int) -> String {
        guard !xs.isEmpty else { return "—" }
        let mean = xs.reduce(0, +) / Double(xs.count)
        let f = "%.\(digits)f"
        guard xs.count > 1 else { return String(format: f, mean) }
        let sd = (xs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(xs.count - 1)).squareRoot()
        return String(format: f, mean) + " ± " + String(format: f, sd)
    }

    var early: Int { spec.earlyStep }

    func markdown() -> String {
        var out = "# Sweep: \((spec.path as NSString).lastPathComponent)\n\n"
        out += "Data `\((spec.data as NSString).lastPathComponent)`, \(spec.budgetText) per run, seeds \(spec.seeds.map(String.init).joined(separator: ", "))"
        out += spec.trainFlags.isEmpty ? ".\n" : ", train flags `\(spec.trainFlags.joined(separator: " "))`.\n"
        out += "Mean ± standard deviation over the seeds; losses in nats per token on the held-out part of the data.\n\n"
        let timed = spec.seconds != nil  // a time budget: the steps each variant reached in it
        out += "| variant | parameters | training GFLOP/step | steps/s |\(timed ? " steps |" : "") loss at step \(early) | val loss | perplexity | bits/char | runs |\n"
        out += "|---|---|---|---|\(timed ? "---|" : "")---|---|---|---|---|\n"
        var failures: [String] = []
        for v in spec.variants {
            let r = runs(v.name), (params, flops) = info[v.name] ?? (0, 0)
            out += "| \(v.name) | \(params) | \(String(format: "%.3f", Double(flops) / 1e9)) | \(stat(r.compactMap(\.stepsPerSecond), 2)) | "
            if timed { out += "\(stat(r.map { Double($0.steps) }, 0)) | " }
            out += "\(stat(r.compactMap(\.earlyLoss), 3)) | \(stat(r.compactMap(\.valLoss), 3)) | \(stat(r.compactMap(\.valPerplexity), 2)) | "
            out += "\(stat(r.compactMap(\.valBitsPerChar), 3)) | \(r.count)/\(spec.seeds.count) |\n"
            for f in results where f.variant == v.name && f.failed != nil { failures.append("- \(v.name), seed \(f.seed): \(f.failed!)") }
        }
        if !failures.isEmpty { out += "\nFailed runs:\n" + failures.joined(separator: "\n") + "\n" }
        out += "\n![loss curves](loss.svg)\n"
        if !spec.lengths.isEmpty {
            out += "\n## Held-out loss against sequence length\n\n| variant | " + spec.lengths.map { "T=\($0)" }.joined(separator: " | ") + " |\n"
            out += "|---|" + spec.lengths.map { _ in "---|" }.joined() + "\n"
            var reasons: [String] = []
            for v in spec.variants {
                let r = runs(v.name)
                out += "| \(v.name) | " + spec.lengths.map { l in
                    let xs = r.compactMap { $0.lengthLoss[String(l)] }
                    if xs.isEmpty, let why = r.first?.lengthError[String(l)] {
                        if !reasons.contains(where: { $0.hasPrefix("- \(v.name):") }) { reasons.append("- \(v.name): \(why)") }
                        return "—"
                    }
                    return stat(xs, 3)
                }.joined(separator: " | ") + " |\n"
            }
            if !reasons.isEmpty { out += "\nNot run (—), with the binary's reason:\n" + reasons.joined(separator: "\n") + "\n" }
            out += "\n![context-length curve](length.svg)\n"
        }
        return out
    }

    func csv() -> String {
        func n(_ x: Double?) -> String { x.map { String($0) } ?? "" }
        var out = "variant,seed,parameters,train_flops_per_step,steps_per_s,steps,early_step,early_loss,val_loss,val_perplexity,val_bits_per_char,failed"
        out += spec.lengths.map { ",loss_at_\($0)" }.joined() + "\n"
        for r in results {
            let (params, flops) = info[r.variant] ?? (0, 0)
            let failed = (r.failed ?? "").replacingOccurrences(of: "\"", with: "\"\"")
            out += "\(r.variant),\(r.seed),\(params),\(flops),\(n(r.stepsPerSecond)),\(r.steps),\(early),\(n(r.earlyLoss)),\(n(r.valLoss)),"
            out += "\(n(r.valPerplexity)),\(n(r.valBitsPerChar)),\"\(failed)\"" + spec.lengths.map { ",\(n(r.lengthLoss[String($0)]))" }.joined() + "\n"
        }
        return out
    }

    func json() throws -> Data {
        struct Variant: Codable { var name: String; var file: String; var parameters: Int; var trainFlopsPerStep: Int }
        struct Document: Codable { var spec: String; var data: String; var steps: Int; var seconds: Int?; var seeds: [Int]; var lengths: [Int]; var variants: [Variant]; var runs: [Sweep.RunResult] }
        let doc = Document(spec: spec.path, data: spec.data, steps: spec.maxSteps, seconds: spec.seconds, seeds: spec.seeds, lengths: spec.lengths,
                           variants: spec.variants.map { Variant(name: $0.name, file: $0.file, parameters: info[$0.name]?.0 ?? 0, trainFlopsPerStep: info[$0.name]?.1 ?? 0) },
                           runs: results)
        return try JSONEncoder.sorted.encode(doc)
    }

    /// The mean over seeds of a curve, at the steps every run has.
    func meanCurve(_ curves: [[[Double]]]) -> [(Double, Double)] {
        guard let first = curves.first else { return [] }
        return first.compactMap { p in
            let ys = curves.compactMap { c in c.first(where: { $0[0] == p[0] })?[1] }
            return ys.count == curves.count ? (p[0], ys.reduce(0, +) / Double(ys.count)) : nil
        }
    }

    func lossPlot() -> Plot.Chart {
        var series: [Plot.Series] = []
        for (k, v) in spec.variants.enumerated() {
            let r = runs(v.name)
            let train = meanCurve(r.map(\.trainCurve))
            // a moving average over a fiftieth of the run, so the curves can be told apart
            let w = max(train.count / 50, 1)
            let smooth = train.indices.map { i in (train[i].0, train[max(0, i - w + 1)...i].map(\.1).reduce(0, +) / Double(i - max(0, i - w + 1) + 1)) }
            series.append(Plot.Series(name: "\(v.name) train (smoothed)", points: smooth, color: k, dashed: false))
            series.append(Plot.Series(name: "\(v.name) val", points: meanCurve(r.map(\.valCurve)), color: k, dashed: true, markers: true))
        }
        return Plot.chart(title: "Loss against step, mean of \(spec.seeds.count) seed\(spec.seeds.count == 1 ? "" : "s")",
                        xLabel: "step", yLabel: "loss (nats per token)", series: series)
    }

    func lengthPlot() -> Plot.Chart {
        let series = spec.variants.enumerated().map { k, v in
            let r = runs(v.name)
            let points = spec.lengths.compactMap { l -> (Double, Double)? in
                let xs = r.compactMap { $0.lengthLoss[String(l)] }
                return xs.isEmpty ? nil : (Double(l), xs.reduce(0, +) / Double(xs.count))
            }
            return Plot.Series(name: v.name, points: points, color: k, dashed: false, markers: true)
        }
        return Plot.chart(title: "Held-out loss against sequence length", xLabel: "sequence length (log scale)", yLabel: "loss (nats per token)",
                        series: series, logX: true)
    }
}
