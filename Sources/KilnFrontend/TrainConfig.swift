import KilnBasics
import KilnIR

/// The `train { … }` section of a model file: how the training binary
/// trains the model by default. Every field is overridable on the command
/// line of `DIR/train` (docs/training.md).
public struct TrainConfig: Sendable, Equatable {
    public enum Optimizer: String, Sendable { case adamw, sgd }
    public enum Schedule: String, Sendable { case constant, cosine }

    public var optimizer = Optimizer.adamw
    public var lr = 1e-3
    public var beta1 = 0.9
    public var beta2 = 0.999
    public var eps = 1e-8
    public var weightDecay = 0.0
    public var decayEmbeddings = true
    public var momentum = 0.9
    public var schedule = Schedule.constant
    public var warmup = 0
    public var minLR = 0.0
    public var steps = 1000
    public var clip = 0.0
    public var batch = 8
    public var seq = 64
    public var accumulate = 1
    public var evalInterval = 100
    public var evalIters = 20
    /// What training minimises (`objective = …`).
    public var objective = Objective.nextToken("logits")

    public init() {}
}

extension Lowering {
    /// Evaluates the `train` section. Entries:
    /// `objective = next_token(logits)`,
    /// `optimizer = adamw(lr:, beta1:, beta2:, eps:, weight_decay:, decay_embeddings:) | sgd(lr:, momentum:, weight_decay:)`,
    /// `schedule = constant(warmup:) | cosine(warmup:, min_lr:)`,
    /// `steps`, `clip`, `batch`, `seq`, `accumulate`, `eval_interval`, `eval_iters`.
    func evaluateTrain(_ entries: [ConfigEntry], context: Int?) -> TrainConfig {
        var c = TrainConfig()
        var seen = Set<String>()
        for e in entries {
            guard seen.insert(e.name).inserted else { diags.error("train entry '\(e.name)' is given twice", at: e.range); continue }
            do {
                switch e.name {
                case "objective":
                    guard case .call("next_token", _, let args, _) = e.value, args.count == 1, args[0].label == nil,
                          case .name(let out, let r) = args[0].value else {
                        throw report("objective must be next_token(OUTPUT): cross-entropy of each position's logits against the next token", e.value.range)
                    }
                    guard graph.outputs.contains(where: { $0.name == out }) || diags.hasErrors else { throw report("no output named '\(out)'", r) }
                    c.objective = .nextToken(out)
                case "optimizer":
                    let (name, args) = try callArgs(e.value, ["adamw": ["lr", "beta1", "beta2", "eps", "weight_decay", "decay_embeddings"],
                                                              "sgd": ["lr", "momentum", "weight_decay"]])
                    c.optimizer = TrainConfig.Optimizer(rawValue: name)!
                    if name == "sgd" { c.weightDecay = 0 }
                    for (k, (v, r)) in args {
                        switch k {
                        case "lr": c.lr = try positive(v, r, "lr")
                        case "beta1": c.beta1 = try unit(v, r, "beta1")
                        case "beta2": c.beta2 = try unit(v, r, "beta2")
                        case "eps": c.eps = try positive(v, r, "eps")
                        case "weight_decay": c.weightDecay = try nonNegative(v, r, "weight_decay")
                        case "momentum": c.momentum = try unit(v, r, "momentum")
                        default: c.decayEmbeddings = try bool(v, r, "decay_embeddings")
                        }
                    }
                case "schedule":
                    let (name, args) = try callArgs(e.value, ["constant": ["warmup"], "cosine": ["warmup", "min_lr"]])
                    c.schedule = TrainConfig.Schedule(rawValue: name)!
                    for (k, (v, r)) in args {
                        if k == "warmup" { c.warmup = try count(v, r, "warmup", allowZero: true) } else { c.minLR = try nonNegative(v, r, "min_lr") }
                    }
                case "steps": c.steps = try count(try eval(e.value), e.value.range, "steps")
                case "clip": c.clip = try nonNegative(try eval(e.value), e.value.range, "clip")
                case "batch": c.batch = try count(try eval(e.value), e.value.range, "batch")
                case "seq":
                    c.seq = try count(try eval(e.value), e.value.range, "seq")
                    if let ctx = context, c.seq > ctx { throw report("seq \(c.seq) exceeds the context \(ctx)", e.value.range) }
                case "accumulate": c.accumulate = try count(try eval(e.value), e.value.range, "accumulate")
                case "eval_interval": c.evalInterval = try count(try eval(e.value), e.value.range, "eval_interval")
                case "eval_iters": c.evalIters = try count(try eval(e.value), e.value.range, "eval_iters")
                default:
                    diags.error("unknown train entry '\(e.name)' (known: objective, optimizer, schedule, steps, clip, batch, seq, accumulate, eval_interval, eval_iters)", at: e.range)
                }
            } catch {}
        }
        return c
    }

    private func callArgs(_ e: Expr, _ known: [String: [String]]) throws -> (String, [(String, (Value, SourceRange))]) {
        guard case .call(let name, let nr, let args, _) = e, let allowed = known[name] else {
            throw report("expected one of \(known.keys.sorted().map { $0 + "(…)" }.joined(separator: ", "))", e.range)
        }
        _ = nr
        var out: [(String, (Value, SourceRange))] = []
        for a in args {
            guard let l = a.label, allowed.contains(l) else {
                throw report("\(name) takes named arguments \(allowed.joined(separator: ", "))", a.value.range)
            }
            out.append((l, (try eval(a.value), a.value.range)))
        }
        return (name, out)
    }

    private func positive(_ v: Value, _ r: SourceRange, _ what: String) throws -> Double {
        let d = try float(v, r, what)
        guard d > 0, d.isFinite else { throw report("\(what) must be positive, got \(d)", r) }
        return d
    }
    private func nonNegative(_ v: Value, _ r: SourceRange, _ what: String) throws -> Double {
        let d = try float(v, r, what)
        guard d >= 0, d.isFinite else { throw report("\(what) must not be negative, got \(d)", r) }
        return d
    }
    private func unit(_ v: Value, _ r: SourceRange, _ what: String) throws -> Double {
        let d = try float(v, r, what)
        guard d >= 0, d < 1 else { throw report("\(what) must be in [0, 1), got \(d)", r) }
        return d
    }
    private func count(_ v: Value, _ r: SourceRange, _ what: String, allowZero: Bool = false) throws -> Int {
        if allowZero, case .int(0) = v { return 0 }
        let n = try positiveInt(v, r, what)
        guard n <= 1 << 30 else { throw report("\(what) \(n) is too large", r) }
        return n
    }
}
