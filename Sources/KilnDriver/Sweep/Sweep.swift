import Foundation
import KilnBasics

/// `kiln sweep SPEC -o DIR`: builds every variant of a `SweepSpec`, trains each with every seed for the same
/// number of steps on the same data (the train binary's data order depends on the seed only, so every
/// variant sees the same batches), scores the held-out text at the spec's lengths, and writes the comparison:
///
///     DIR/builds/NAME/          each variant's build (reused while its model file and overrides are the same)
///     DIR/runs/NAME/seed-S/     train.log (its output), log.jsonl, ckpt.safetensors, result.json (when done)
///     DIR/results.md, .csv, .json, loss.svg, length.svg
///
/// A run whose result.json exists is not redone; one with a checkpoint resumes from it (exactly, as
/// `train --resume` does), so a sweep that was killed continues where it stopped when started again. A run
/// made with another model, data, budget or train flags (the spec was edited since) is made again.
public struct Sweep {
    public let spec: SweepSpec
    public let directory: String
    /// Progress and notes (stderr).
    public var say: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
    /// Whether progress redraws one line (a terminal) or prints a line now and then (a log).
    public var interactive = isatty(2) != 0

    public init(spec: SweepSpec, directory: String) { self.spec = spec; self.directory = directory }

    /// One run's outcome (result.json).
    public struct RunResult: Codable, Equatable {
        public var variant: String
        public var seed: Int
        public var steps: Int
        public var failed: String?
        public var earlyLoss: Double?
        public var valLoss: Double?
        public var valPerplexity: Double?
        public var valBitsPerChar: Double?
        public var stepsPerSecond: Double?
        /// Held-out loss (nats per token) by sequence length, and why a length could not be scored.
        public var lengthLoss: [String: Double]
        public var lengthError: [String: String]
        /// (step, training loss) and (step, validation loss).
        public var trainCurve: [[Double]]
        public var valCurve: [[Double]]
    }

    /// What a variant's build tells: its parameters and training FLOPs per optimizer step.
    struct VariantInfo { var parameters: Int; var trainFlopsPerStep: Int; var directory: String; var key: String }

    /// The steps a run trains at most.
    var steps: Int { spec.maxSteps }
    /// Progress is counted in steps, or with a time budget in seconds of training steps.
    var unitsPerRun: Int { spec.seconds ?? steps }

    /// The value of a train flag in the spec's flags, if given.
    func flag(_ name: String) -> String? {
        guard let i = spec.trainFlags.firstIndex(of: name), i + 1 < spec.trainFlags.count else { return nil }
        return spec.trainFlags[i + 1]
    }

    /// The plan without training: every variant compiled (no C build), with its parameters and training FLOPs
    /// per step, and the number of runs and steps.
    public func plan(pipeline: (SweepSpec.Variant) -> Pipeline) throws -> String {
        var out = "sweep \(spec.path): \(spec.variants.count) variants × \(spec.seeds.count) seeds × \(spec.budgetText)\n"
        for v in spec.variants {
            let file = SourceFile(path: v.file, text: try v.source())
            let c = try pipeline(v).generate(file)
            let s = try trainingTotals(v, c)
            out += "  \(v.name): \(s.parameters) parameters, \(String(format: "%.3f", Double(s.flopsPerStep) / 1e9)) GFLOP per training step\n"
        }
        return out
    }

    public func run(pipeline: (SweepSpec.Variant) -> Pipeline) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // the held-out text the lengths are scored on: the part of the data the train binary validates on
        let heldout = directory + "/heldout.txt"
        if !spec.lengths.isEmpty {
            guard let data = fm.contents(atPath: spec.data) else { throw DriverError.message("cannot read the data file \(spec.data)") }
            let fraction = Double(flag("--val-fraction") ?? "0.1") ?? 0.1
            let start = data.count - Int((Double(data.count) * fraction).rounded(.down))
            try atomicWrite(data.subdata(in: start..<data.count), to: heldout)
        }
        // builds first: a model that does not compile stops the sweep before anything trains
        var info: [String: VariantInfo] = [:]
        for v in spec.variants {
            say("sweep: building \(v.name) (\(v.file)\(v.overrides.isEmpty ? "" : " " + v.overrides.map { "--set \($0.0)=\($0.1)" }.joined(separator: " ")))")
            info[v.name] = try build(v, pipeline(v))
        }
        // runs, in order; progress over the whole sweep
        let total = spec.variants.count * spec.seeds.count * unitsPerRun
        var done = 0, doneHere = 0
        let began = Date()
        var lastNote = Date.distantPast
        func progress(_ what: String, current: Int) {
            let all = done + current
            let rate = Date().timeIntervalSince(began) / Double(max(doneHere + current, 1))
            let eta = doneHere + current > 0 ? formatDuration(rate * Double(total - all)) : "?"
            let width = 30, filled = total > 0 ? width * all / total : width
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            let line = "[\(bar)] \(100 * all / max(total, 1))%  \(what)  ETA \(eta)"
            if interactive {
                FileHandle.standardError.write(Data(("\r" + line + "\u{1B}[K").utf8))
            } else if Date().timeIntervalSince(lastNote) > 30 || current == 0 {
                say(line)
                lastNote = Date()
            }
        }
        var results: [RunResult] = []
        for v in spec.variants {
            for seed in spec.seeds {
                let dir = "\(directory)/runs/\(v.name)/seed-\(seed)"
                // what a run's results depend on: its model, the data, the budget and the train flags; a run
                // made with others (the spec changed since) starts again
                let runKey = [info[v.name]!.key, spec.data, spec.budgetText, spec.trainFlags.joined(separator: " "),
                              spec.evalInterval.map(String.init) ?? "", spec.lengths.map(String.init).joined(separator: " ")].joined(separator: "\n")
                let keyFile = dir + "/.sweep-key"
                if FileManager.default.fileExists(atPath: dir),
                   FileManager.default.contents(atPath: keyFile).flatMap({ String(data: $0, encoding: .utf8) }) != runKey {
                    say("sweep: \(v.name) seed \(seed): the spec or the model changed since this run; training it again")
                    try FileManager.default.removeItem(atPath: dir)
                }
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                if !FileManager.default.fileExists(atPath: keyFile) { try atomicWrite(Data(runKey.utf8), to: keyFile) }
                if let r = loadResult(dir) {
                    results.append(r)
                    done += unitsPerRun
                    continue
                }
                progress("\(v.name) seed \(seed)", current: 0)
                let r = try train(v, seed: seed, info: info[v.name]!, dir: dir) { step, seconds in
                    if let budget = spec.seconds {
                        progress("\(v.name) seed \(seed) step \(step), \(seconds)/\(budget) s", current: min(seconds, budget))
                    } else {
                        progress("\(v.name) seed \(seed) step \(step)/\(steps)", current: step)
                    }
                }
                if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
                var scored = r
                if r.failed == nil { scored = try score(scored, info: info[v.name]!, dir: dir, heldout: heldout) }
                try atomicWrite(try JSONEncoder.sorted.encode(scored), to: dir + "/result.json")
                if let f = scored.failed { say("sweep: \(v.name) seed \(seed) failed: \(f)") }
                results.append(scored)
                done += unitsPerRun; doneHere += unitsPerRun
            }
        }
        try SweepReport(spec: spec, results: results, info: info.mapValues { ($0.parameters, $0.trainFlopsPerStep) }).write(to: directory)
        say("sweep: \(results.count) runs; results in \(directory)/results.md")
    }

    /// Builds a variant (unless its build is current) and counts its parameters and training FLOPs.
    func build(_ v: SweepSpec.Variant, _ p: Pipeline) throws -> VariantInfo {
        let out = "\(directory)/builds/\(v.name)"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        // the variant's source (its replacements made) beside its build, where diagnostics point
        let sourcePath = out + "/model.kiln"
        let source = try v.source()
        if FileManager.default.contents(atPath: sourcePath) != Data(source.utf8) { try atomicWrite(Data(source.utf8), to: sourcePath) }
        let c = try p.generate(try Pipeline.load(sourcePath))
        let totals = try trainingTotals(v, c)
        let key = source + "\n" + v.overrides.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
        let keyFile = out + "/.sweep-key"
        if FileManager.default.contents(atPath: keyFile).flatMap({ String(data: $0, encoding: .utf8) }) != key
            || !FileManager.default.fileExists(atPath: out + "/train") {
            try BuildDirectory.write(c.generated, modelName: c.inference.name, programs: BuildDirectory.programs(training: true, dtype: .f32),
                                     portable: false, to: out)
            guard let cc = Toolchain.find() else { throw DriverError.message("no C compiler found (install clang and libomp-dev, or gcc, or set CC)") }
            try BuildDirectory.make(out, compiler: cc, verbose: false)
            try atomicWrite(Data(key.utf8), to: keyFile)
        }
        return VariantInfo(parameters: totals.parameters, trainFlopsPerStep: totals.flopsPerStep, directory: out, key: key)
    }

    /// A compiled variant's parameters and training FLOPs per optimizer step, at the batch, sequence length and
    /// accumulation its runs use (the spec's train flags, else the model's train section).
    func trainingTotals(_ v: SweepSpec.Variant, _ c: Pipeline.Compiled) throws -> (parameters: Int, flopsPerStep: Int) {
        guard c.training != nil else { throw DriverError.message("variant '\(v.name)': \(v.file) has no train section, so it cannot be trained") }
        let batch = Int(flag("--batch") ?? "") ?? c.train?.batch ?? 12
        let seq = Int(flag("--seq") ?? "") ?? c.train?.seq
        let accumulate = Int(flag("--accumulate") ?? "") ?? c.train?.accumulate ?? 1
        let s = try StatsReport.totals(c, batch: batch, seq: seq)
        return (s.parameters, (s.trainFlops ?? 0) * accumulate)
    }

    func loadResult(_ dir: String) -> RunResult? {
        FileManager.default.contents(atPath: dir + "/result.json").flatMap { try? JSONDecoder().decode(RunResult.self, from: $0) }
    }

    /// Trains one run to the budget (resuming from its checkpoint if it has one) and reads its log.
    func train(_ v: SweepSpec.Variant, seed: Int, info: VariantInfo, dir: String, progress: (_ step: Int, _ seconds: Int) -> Void) throws -> RunResult {
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let ckpt = dir + "/ckpt.safetensors", log = dir + "/log.jsonl"
        var args = ["--data", spec.data, "--out", ckpt, "--steps", String(steps), "--seed", String(seed), "--log", log]
        if let e = spec.evalInterval { args += ["--eval-interval", String(e)] }
        if let t = spec.seconds { args += ["--time-limit", String(t)] }
        if fm.fileExists(atPath: ckpt) {
            args += ["--resume", ckpt]
            // a run killed while writing its log leaves a partial last line: the resumed run appends after it
            let newline = UInt8(ascii: "\n")
            if let data = fm.contents(atPath: log), let last = data.last, last != newline {
                try atomicWrite(data.lastIndex(of: newline).map { Data(data.prefix(through: $0)) } ?? Data(), to: log)
            }
        }
        args += spec.trainFlags
        let output = dir + "/train.log"
        if !fm.fileExists(atPath: output) { _ = fm.createFile(atPath: output, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: output) else { throw DriverError.message("cannot write \(output)") }
        handle.seekToEndOfFile()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: info.directory + "/train")
        p.arguments = args
        // the run stops if the sweep dies (killed, interrupted), rather than training on unseen
        p.environment = ProcessInfo.processInfo.environment.merging(["KILN_EXIT_WITH_PARENT": "1"]) { _, b in b }
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        while p.isRunning {
            Thread.sleep(forTimeInterval: 0.5)
            if let last = readLog(log).train.last { progress(Int(last[0]), Int(last[3])) }
        }
        try? handle.close()
        var r = RunResult(variant: v.name, seed: seed, steps: 0, failed: nil, lengthLoss: [:], lengthError: [:], trainCurve: [], valCurve: [])
        let l = readLog(log)
        r.trainCurve = l.train.map { [$0[0], $0[1]] }
        r.steps = Int(l.train.last?[0] ?? 0)  // the budget's steps, or those a time budget allowed
        r.valCurve = l.val
        if p.terminationStatus != 0 {
            let text = (fm.contents(atPath: output).flatMap { String(data: $0, encoding: .utf8) } ?? "")
            r.failed = text.split(separator: "\n").last(where: { $0.contains("error") || $0.hasPrefix("train:") }).map(String.init)
                ?? "train exited with status \(p.terminationStatus)"
            return r
        }
        let early = spec.earlyStep
        r.earlyLoss = l.train.first(where: { Int($0[0]) == early })?[1]
        if let last = l.val.last {
            r.valLoss = last[1]
            r.valPerplexity = exp(last[1])
            r.valBitsPerChar = last[1] / Foundation.log(2.0)
        }
        r.stepsPerSecond = l.stepsPerSecond
        return r
    }

    /// The log's training points (step, loss, time, seconds of training steps) and validation points (step,
    /// loss); steps per second
    /// over the steps that no evaluation interrupted.
    func readLog(_ path: String) -> (train: [[Double]], val: [[Double]], stepsPerSecond: Double?) {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else { return ([], [], nil) }
        var train: [[Double]] = [], val: [[Double]] = []
        var intervals = 0, seconds = 0.0, previous: Double?, evalSince = false
        // the numbers as written (Foundation's JSONSerialization can be an ulp off, and the table must hold
        // exactly the logged values)
        func number(_ line: Substring, _ key: String) -> Double? {
            guard let r = line.range(of: "\"\(key)\":") else { return nil }
            let rest = line[r.upperBound...]
            return Double(rest.prefix { "0123456789+-.eE".contains($0) })
        }
        for line in text.split(separator: "\n") {
            guard let step = number(line, "step") else { continue }
            if let v = number(line, "val_loss") {
                // a resumed run repeats nothing, but keep the last value of a step
                val.removeAll { $0[0] == step }
                val.append([step, v])
                evalSince = true
            } else if let loss = number(line, "loss"), let t = number(line, "time_s") {
                train.removeAll { $0[0] == step }
                train.append([step, loss, t, number(line, "train_s") ?? 0])
                if let p = previous, !evalSince, t > p { intervals += 1; seconds += t - p }
                previous = t
                evalSince = false
            }
        }
        return (train, val, seconds > 0 ? Double(intervals) / seconds : nil)
    }

    /// Scores the held-out text at each of the spec's lengths with the run's weights.
    func score(_ r: RunResult, info: VariantInfo, dir: String, heldout: String) throws -> RunResult {
        var r = r
        for length in spec.lengths {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: info.directory + "/infer")
            p.arguments = ["score", "--weights", dir + "/ckpt.safetensors", "--seq", String(length), heldout]
            let out = Pipe(), err = Pipe()
            p.standardOutput = out
            p.standardError = err
            try p.run()
            let o = String(data: out.fileHandleForReading.readDataToEndOfFile(), encoding: .utf8) ?? ""
            let e = String(data: err.fileHandleForReading.readDataToEndOfFile(), encoding: .utf8) ?? ""
            p.waitUntilExit()
            if p.terminationStatus == 0, let range = o.range(of: #"loss ([0-9.]+) nats"#, options: .regularExpression) {
                let number = o[range].dropFirst(5).dropLast(5)
                if let v = Double(number) { r.lengthLoss[String(length)] = v; continue }
            }
            r.lengthError[String(length)] = e.split(separator: "\n").first.map(String.init) ?? "infer score exited with status \(p.terminationStatus)"
        }
        return r
    }
}

/// Writes a file whole or not at all (a temporary file renamed over it).
func atomicWrite(_ data: Data, to path: String) throws {
    let tmp = path + ".tmp-\(getpid())"
    guard FileManager.default.createFile(atPath: tmp, contents: data) else { throw DriverError.message("cannot write \(tmp)") }
    guard rename(tmp, path) == 0 else { throw DriverError.message("cannot replace \(path)") }
}

func formatDuration(_ s: Double) -> String {
    guard s.isFinite, s >= 0 else { return "?" }
    let t = Int(s.rounded())
    return t >= 3600 ? "\(t / 3600)h\(String(format: "%02d", t % 3600 / 60))m" : t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted]
        return e
    }
}
