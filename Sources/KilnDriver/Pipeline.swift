import Foundation
import KilnBasics
import KilnIR
import KilnFrontend
import KilnTransforms
import KilnAutodiff
import KilnCodegenC

/// A failure the CLI reports as one line (`kiln: error: …`) or, for
/// problems in the model file, as rendered diagnostics.
public enum DriverError: Error, CustomStringConvertible {
    case message(String)
    case diagnostics(String, count: Int)

    public var description: String {
        switch self {
        case .message(let m): return m
        case .diagnostics(let d, _): return d
        }
    }
}

/// The stages of compilation, shared by every `kiln` command.
public struct Pipeline {
    public var overrides: [(String, String)] = []
    /// Whether the inference pipeline runs its fusion passes (`kiln … --no-fuse` turns them off).
    public var fuse = true
    public init(overrides: [(String, String)] = []) { self.overrides = overrides }

    /// Largest model file accepted (a model description is small).
    public static let maxSourceBytes = 16 << 20

    /// Reads a model file, refusing directories, missing and huge files.
    public static func load(_ path: String) throws -> SourceFile {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw DriverError.message("no such file '\(path)'") }
        guard !isDir.boolValue else { throw DriverError.message("'\(path)' is a directory") }
        guard let h = FileHandle(forReadingAtPath: path) else { throw DriverError.message("cannot read '\(path)'") }
        defer { try? h.close() }
        let data = (try? h.read(upToCount: maxSourceBytes + 1)) ?? Data()
        guard data.count <= maxSourceBytes else { throw DriverError.message("'\(path)' is larger than \(maxSourceBytes >> 20) MiB; a model file should be small") }
        return SourceFile(path: path, bytes: Array(data))
    }

    /// Parses and lowers; throws rendered diagnostics on errors.
    public func frontend(_ file: SourceFile) throws -> Graph { try frontendWithTrain(file).0 }

    /// The graph and the `train` section (nil when the file has none).
    public func frontendWithTrain(_ file: SourceFile) throws -> (Graph, TrainConfig?) {
        let (g, t, _) = try frontendAll(file)
        return (g, t)
    }

    /// The graph, the `train` section and the `weights` section (nil when the file has none).
    public func frontendAll(_ file: SourceFile) throws -> (Graph, TrainConfig?, WeightSources?) {
        let r: Frontend.Result
        do { r = try Frontend.compile(file, options: FrontendOptions(overrides: overrides)) } catch let e as OptionError {
            throw DriverError.message(e.description)
        }
        guard let g = r.graph, !r.diagnostics.hasErrors else {
            throw DriverError.diagnostics(r.diagnostics.render(), count: r.diagnostics.errorCount)
        }
        return (g, r.train, r.weights)
    }

    /// Runs the optimisation pipeline; `after` sees the graph after each pass.
    public func optimize(_ g: Graph, training: Bool = false, after: (Int, String, Bool, Graph) -> Void = { _, _, _, _ in }) throws -> Graph {
        var g = g
        try (training ? PassManager.training(fuse: fuse) : PassManager.standard(fuse: fuse)).run(&g) { i, p, changed, g in after(i, p.name, changed, g) }
        return g
    }

    public static var passNames: [String] { PassManager.standard().passNames }
    /// The passes run on the training graph (after autodiff), in order.
    public static var trainingPassNames: [String] { PassManager.training().passNames }

    /// The entry points a model has, in order: `forward` always; `train_step` and `loss` with a train section
    /// (or for an f64 gradient-check build); `prefill` and `decode_step` when the model is causal, after
    /// `encode` when its decoder reads an encoder's memory; `attention_maps` when it has attention.
    public static func functionNames(_ g: Graph, training: Bool) -> [String] {
        let plan = KVCachePlan(g)
        return ["forward"] + (training ? ["train_step", "loss"] : []) + (plan?.hasMemory == true ? ["encode"] : [])
            + (plan != nil ? ["prefill", "decode_step"] : [])
            + (MakeAttentionMaps.attentions(g).isEmpty ? [] : [MakeAttentionMaps.function])
    }

    /// One entry point of the model, before optimisation: the transform that makes it from the model's graph
    /// (`make-train-step` and `make-loss` in KilnAutodiff, `make-prefill` and `make-decode` in KilnTransforms);
    /// the functions other than `train_step` and `loss` first route every token (`dropless-routing`).
    public func unoptimized(_ name: String, of model: Graph, train: TrainConfig?) throws -> Graph {
        let objective = (train ?? TrainConfig()).objective
        // training keeps the experts' capacity; the inference functions route every token (dropless-routing)
        var g = model
        if name != "train_step" && name != "loss" { _ = try DroplessRouting().run(&g) }
        do {
            switch name {
            case "forward": return g.removingUnusedInputs()
            case "train_step": return try Autodiff.trainStep(from: g, objective: objective)
            case "loss": return try Autodiff.loss(from: g, objective: objective)
            case "encode":
                guard let f = MakeEncode.apply(g) else { throw DriverError.message("model \(g.name) has no encode: no causal decoder reads an encoder's memory (docs/ir.md, make-encode)") }
                return f
            case MakeAttentionMaps.function:
                guard let f = MakeAttentionMaps.apply(g) else { throw DriverError.message("model \(g.name) has no attention_maps: it has no attention (docs/ir.md, make-attention-maps)") }
                return f
            case "prefill", "decode_step":
                let f = name == "prefill" ? MakePrefill.apply(g) : MakeDecodeStep.apply(g)
                guard let f else { throw DriverError.message("model \(g.name) has no \(name): it is not causal (docs/ir.md, make-prefill)") }
                return f
            default:
                throw DriverError.message("model \(g.name) has no function '\(name)' (it has \(Self.functionNames(g, training: true).joined(separator: ", ")))")
            }
        } catch let e as Autodiff.Failure {
            throw DriverError.message(e.description)
        }
    }

    /// One entry point, optimised: `train_step` by the training pipeline, the others by the inference one;
    /// `after` sees the graph after each pass. Inputs the passes leave unread (a dropout seed) leave the signature.
    public func function(_ name: String, of g: Graph, train: TrainConfig?,
                         after: (Int, String, Bool, Graph) -> Void = { _, _, _, _ in }) throws -> Graph {
        try optimize(try unoptimized(name, of: g, train: train), training: name == "train_step", after: after).removingUnusedInputs()
    }

    /// The result of compiling a model file.
    public struct Compiled {
        /// The entry points, optimised, `forward` first.
        public var functions: [Graph]
        public var train: TrainConfig?
        public var generated: GeneratedModel
        public var inference: Graph { functions[0] }
        public var training: Graph? { functions.first { $0.function == "train_step" } }
    }

    /// Everything up to generated C. The training functions are built when the file has a `train` section,
    /// or always for f64 (gradient-check) builds.
    public func generate(_ file: SourceFile, dtype: DType = .f32) throws -> Compiled {
        let (g, trainConfig, weights) = try frontendAll(file)
        let training = trainConfig != nil || dtype == .f64
        let functions = try Self.functionNames(g, training: training).map { try function($0, of: g, train: trainConfig) }
        let options = CodegenOptions(dtype: dtype, trainDefaults: trainConfig != nil || dtype == .f64 ? Self.defines(trainConfig ?? TrainConfig()) : [],
                                     weights: weights)
        do {
            let gen = try CEmitter.emit(functions, options: options, sourceName: (file.path as NSString).lastPathComponent)
            return Compiled(functions: functions, train: trainConfig, generated: gen)
        } catch let e as CodegenError {
            throw DriverError.message("\(file.path): \(e.description)")
        }
    }

    /// The `KILN_TRAIN_*` defaults of model.h.
    static func defines(_ c: TrainConfig) -> [(String, String)] {
        func f(_ v: Double) -> String { let s = "\(v)"; return s.contains(".") || s.contains("e") ? s : s + ".0" }
        return [
            ("OPTIMIZER", c.optimizer == .adamw ? "0" : "1"),
            ("LR", f(c.lr)), ("MIN_LR", f(c.minLR)), ("WARMUP", "\(c.warmup)"),
            ("SCHEDULE", ["constant": "0", "cosine": "1", "inverse_sqrt": "2"][c.schedule.rawValue]!), ("STEPS", "\(c.steps)"),
            ("BETA1", f(c.beta1)), ("BETA2", f(c.beta2)), ("EPS", f(c.eps)),
            ("WEIGHT_DECAY", f(c.weightDecay)), ("DECAY_EMBEDDINGS", c.decayEmbeddings ? "1" : "0"),
            ("MOMENTUM", f(c.momentum)), ("CLIP", f(c.clip)),
            ("BATCH", "\(c.batch)"), ("SEQ", "\(c.seq)"), ("ACCUMULATE", "\(c.accumulate)"),
            ("EVAL_INTERVAL", "\(c.evalInterval)"), ("EVAL_ITERS", "\(c.evalIters)"),
            // 1: the data is text cut into windows (next-token prediction); 0: .npy arrays of the inputs
            ("TEXT", c.objective.readsText ? "1" : "0"),
            // masked_lm: the mask id and the rate of chosen positions (0: next-token prediction)
            ("MASK_ID", "\(c.objective.masking?.mask ?? -1)"), ("MASK_RATE", f(c.objective.masking?.rate ?? 0)),
        ]
    }
}
