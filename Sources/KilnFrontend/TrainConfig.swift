import KilnBasics
import KilnIR

/// The `train { … }` section of a model file: how the training binary
/// trains the model by default. Every field is overridable on the command
/// line of `DIR/train` (docs/training.md).
public struct TrainConfig: Sendable, Equatable {
    public enum Optimizer: String, Sendable { case adamw, sgd }
    public enum Schedule: String, Sendable { case constant, cosine, inverseSqrt = "inverse_sqrt" }

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
    /// `objective = next_token(logits) | masked_lm(logits, mask:, rate:) | cross_entropy(logits, labels, ignore:, smoothing:) | classification(…) |
    ///  mse(output, target) | OUTPUT, and weighted sums of them (`next_token(logits) + 0.01 * balance`)`,
    /// `optimizer = adamw(lr:, beta1:, beta2:, eps:, weight_decay:, decay_embeddings:) | sgd(lr:, momentum:, weight_decay:)`,
    /// `schedule = constant(warmup:) | cosine(warmup:, min_lr:) | inverse_sqrt(warmup:)`,
    /// `steps`, `clip`, `batch`, `seq`, `accumulate`, `eval_interval`, `eval_iters`.
    func evaluateTrain(_ entries: [ConfigEntry], context: Int?) -> TrainConfig {
        var c = TrainConfig()
        var seen = Set<String>()
        for e in entries {
            guard seen.insert(e.name).inserted else { diags.error("train entry '\(e.name)' is given twice", at: e.range); continue }
            do {
                switch e.name {
                case "objective":
                    c.objective = Objective(try objectiveTerms(e.value, weight: 1))
                    let text = c.objective.terms.filter(\.loss.readsText).count
                    if text > 1 { throw report("an objective reads text once: one next_token or masked_lm term", e.value.range) }
                    if text == 1 && c.objective.terms.contains(where: { if case .output = $0.loss { false } else { !$0.loss.readsText } }) {
                        throw report("next_token and masked_lm read text; they combine only with scalar outputs of the model, not with losses over target inputs", e.value.range)
                    }
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
                    let (name, args) = try callArgs(e.value, ["constant": ["warmup"], "cosine": ["warmup", "min_lr"], "inverse_sqrt": ["warmup"]])
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
        // the default sequence length, no longer than the context
        if !seen.contains("seq"), let ctx = context, c.seq > ctx { c.seq = ctx }
        return c
    }

    /// The terms of an objective: a sum of weighted losses. A term is `next_token(OUTPUT)`,
    /// `cross_entropy(OUTPUT, TARGETS, ignore: ID, smoothing: ε)` (`classification` is the same for one row of
    /// logits per sequence), `mse(OUTPUT, TARGET)`, or the name of a scalar output (an auxiliary loss), each
    /// optionally multiplied by a number.
    func objectiveTerms(_ e: Expr, weight: Double) throws -> [Objective.Term] {
        let usage = "an objective is a loss, e.g. next_token(logits), masked_lm(logits, mask: 256), cross_entropy(logits, labels, ignore: -100, smoothing: 0.1), classification(logits, label), mse(output, target), the name of a scalar output, or a weighted sum of them"
        switch e {
        case .binary("+", let a, let b, _):
            return try objectiveTerms(a, weight: weight) + objectiveTerms(b, weight: weight)
        case .binary("*", let a, let b, let r):
            if let f = try? float(try eval(a), a.range, "a weight") { return try objectiveTerms(b, weight: weight * f) }
            if let f = try? float(try eval(b), b.range, "a weight") { return try objectiveTerms(a, weight: weight * f) }
            throw report("a term of the objective may be multiplied by a number only", r)
        case .name(let out, let r):
            let o = try objectiveOutput(out, r)
            guard graph.nodes[o].type.shape.rank == 0, graph.nodes[o].type.dtype.isFloat else {
                throw report("the output '\(out)' is \(graph.nodes[o].type); as a term of the objective it must be a scalar f32[]", r)
            }
            return [Objective.Term(weight, .output(out))]
        case .call(let name, let nr, let args, let r):
            let known: [String: ([String], [String])] = [
                "next_token": (["logits"], []), "masked_lm": (["logits"], ["mask", "rate"]),
                "cross_entropy": (["logits", "targets"], ["ignore", "smoothing"]),
                "classification": (["logits", "targets"], ["ignore", "smoothing"]), "mse": (["output", "target"], []),
            ]
            guard let (positional, named) = known[name] else { throw report("unknown loss '\(name)': \(usage)", nr) }
            var names: [String] = []
            var options: [String: (Value, SourceRange)] = [:]
            for a in args {
                if let l = a.label {
                    guard named.contains(l) else { throw report("'\(name)' has no argument '\(l)'\(named.isEmpty ? "" : " (it takes \(named.joined(separator: ", ")))")", a.labelRange) }
                    options[l] = (try eval(a.value), a.value.range)
                } else {
                    guard case .name(let n, _) = a.value, names.count < positional.count else {
                        throw report("'\(name)' takes \(positional.joined(separator: " and ")) by name", a.value.range)
                    }
                    names.append(n)
                }
            }
            guard names.count == positional.count else { throw report("'\(name)' needs \(positional.joined(separator: " and "))", r) }
            let ranges = args.filter { $0.label == nil }.map(\.value.range)
            let out = try objectiveOutput(names[0], ranges[0])
            switch name {
            case "next_token":
                return [Objective.Term(weight, .nextToken(output: names[0]))]
            case "masked_lm":
                guard let (mv, mr) = options["mask"] else { throw report("masked_lm needs the id of the mask token: masked_lm(\(names[0]), mask: ID)", r) }
                guard case .int(let mask) = mv, mask >= 0, mask < Int(Int32.max) else { throw report("mask must be a token id (an integer >= 0), got \(describe(mv))", mr) }
                if let tokens = graph.inputs.first(where: { graph.nodes[$0].attrs[Input.role] == Word(Input.Role.tokens.rawValue) }),
                   let vocab = graph.nodes[tokens].attrs.value(Input.limit), mask >= vocab {
                    throw report("the mask id \(mask) is not a token: '\(graph.nodes[tokens].name ?? "tokens")' ids lie in [0, \(vocab))", mr)
                }
                let rate = try options["rate"].map { try float($0.0, $0.1, "rate") } ?? 0.15
                guard rate > 0, rate < 1 else { throw report("rate must be in (0, 1), got \(rate)", options["rate"]!.1) }
                return [Objective.Term(weight, .maskedTokens(output: names[0], mask: mask, rate: rate))]
            case "mse":
                let t = try objectiveTarget(names[1], ranges[1])
                guard graph.nodes[t].type == graph.nodes[out].type else {
                    throw report("mse's target '\(names[1])' is \(graph.nodes[t].type), but the output '\(names[0])' is \(graph.nodes[out].type)", ranges[1])
                }
                return [Objective.Term(weight, .meanSquaredError(output: names[0], targets: names[1]))]
            default:
                let t = try objectiveTarget(names[1], ranges[1])
                let smoothing = try options["smoothing"].map { try float($0.0, $0.1, "smoothing") } ?? 0
                guard smoothing >= 0, smoothing < 1 else { throw report("smoothing must be in [0, 1), got \(smoothing)", options["smoothing"]!.1) }
                var ignore: Int?
                if let (v, vr) = options["ignore"] {
                    guard case .int(let i) = v, i >= Int(Int32.min), i <= Int(Int32.max) else { throw report("ignore must be a 32-bit integer, got \(describe(v))", vr) }
                    ignore = i
                }
                var attrs = Attributes()
                attrs.set(CrossEntropy.ignore, ignore)
                attrs.set(CrossEntropy.smoothing, smoothing == 0 ? nil : smoothing)
                do { _ = try OpKind.crossEntropy.inferType([graph.nodes[out].type, graph.nodes[t].type], attrs, bound: graph.bound(of:)) }
                catch let err as TypeError { throw report(err.message, r) }
                if let classes = graph.nodes[out].type.shape.last?.constValue {
                    try markInput(t, .targets, limit: classes, ranges[1])
                    if let ignore { graph.nodes[t].attrs.set(Input.ignore, ignore) }
                }
                return [Objective.Term(weight, .crossEntropy(output: names[0], targets: names[1], ignore: ignore, smoothing: smoothing))]
            }
        default:
            throw report(usage, e.range)
        }
    }

    private func objectiveOutput(_ name: String, _ r: SourceRange) throws -> Int {
        guard let o = graph.outputs.first(where: { $0.name == name }) else {
            throw report("no output named '\(name)' (the model's outputs: \(graph.outputs.map(\.name).joined(separator: ", ")))", r)
        }
        return o.value
    }

    private func objectiveTarget(_ name: String, _ r: SourceRange) throws -> Int {
        guard let i = graph.inputs.first(where: { graph.nodes[$0].name == name }) else {
            throw report("no input named '\(name)': declare the targets, e.g. 'input \(name): i32[B]'", r)
        }
        return i
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
