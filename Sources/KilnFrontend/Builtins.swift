import KilnBasics
import KilnIR

/// The built-in functions of the model language. Each one checks its
/// arguments, creates its parameters (named under the current scope), and
/// emits IR. docs/language.md documents every one.
enum Builtins {
    /// Parameters of each built-in, in positional order; `true` = required.
    static let signatures: [String: [(String, Bool)]] = [
        "embed": [("ids", true), ("vocab", false), ("dim", false), ("tied", false), ("name", false)],
        "positions": [("kind", true), ("length", true), ("dim", true), ("layout", false), ("name", false)],
        "linear": [("x", true), ("out", false), ("bias", false), ("tied", false), ("name", false)],
        "attention": [("x", true), ("heads", true), ("mask", false), ("padding", false), ("bias", false), ("memory", false),
                      ("position", false), ("kv_heads", false), ("rope_base", false), ("clip", false), ("buckets", false),
                      ("max_distance", false), ("window", false), ("lowrank", false), ("block", false), ("global", false),
                      ("random", false), ("seed", false), ("name", false)],
        "sqrt": [("x", true)],
        "mean_pool": [("x", true), ("mask", false)],
        "first_token": [("x", true)],
        "ffn": [("x", true), ("hidden", true), ("activation", false), ("bias", false), ("name", false)],
        "softmax": [("x", true)],
        "dropout": [("x", true), ("p", true)],
        "repeat": [("count", true), ("block", true), ("x", true), ("shared", false), ("timestep", false), ("halting", false), ("name", false)],
        "ponder_cost": [("x", true)],
        "rezero": [("x", true), ("name", false)],
        "lstm": [("x", true), ("hidden", true), ("layers", false), ("dropout", false), ("name", false)],
        "moe": [("x", true), ("experts", true), ("hidden", true), ("top", false), ("capacity", false), ("activation", false), ("name", false)],
        "lsh_attention": [("x", true), ("heads", true), ("buckets", true), ("hashes", false), ("chunk", false), ("seed", false),
                          ("mask", false), ("bias", false), ("name", false)],
        "moe_balance": [("x", true)],
        "moe_zloss": [("x", true)],
        "moe_load": [("x", true)],
        "sum": [("x", true)], "mean": [("x", true)], "max": [("x", true)], "logsumexp": [("x", true)],
        "matmul": [("a", true), ("b", true)], "transpose": [("x", true), ("a", false), ("b", false)],
        "split_last": [("x", true), ("parts", true)], "merge_last": [("x", true)],
        "where": [("c", true), ("a", true), ("b", true)], "pow": [("x", true), ("exponent", true)], "range": [("length", true)],
        "unsqueeze": [("x", true), ("axis", true)], "squeeze": [("x", true), ("axis", true)],
        "einsum": [("equation", true), ("a", true), ("b", true)],
        "gather": [("x", true), ("index", true), ("axis", true)],
        "slice": [("x", true), ("axis", true), ("start", true), ("size", true)], "concat": [("a", true), ("b", true), ("axis", true)],
        "param": [("d1", true), ("d2", false), ("d3", false), ("d4", false), ("init", false), ("std", false), ("name", false)],
    ].merging(Activation.all.map { ($0.name, [("x", true)]) }, uniquingKeysWith: { a, _ in a })
     .merging(layers.map { ($0.key, [("x", true)] + $0.value.layerArguments.map { ($0.name, false) } + [("name", false)]) },
              uniquingKeysWith: { a, _ in a })
    /// The ops that are built-in layers (`layernorm`, `rmsnorm`, …: `LayerBuiltin`), by name.
    static let layers: [String: any LayerBuiltin] = Dictionary(
        uniqueKeysWithValues: OpRegistry.all.compactMap { $0 as? any LayerBuiltin }.map { ($0.name, $0) })
    /// The activations of the IR's table (`relu`, `gelu`, …): each is a built-in and an `ffn` activation.
    static let activations = Activation.all.map(\.name)
    /// `ffn`'s activations: the table's, the gated linear units some of them have (`swiglu`, `geglu`, …), and
    /// the bilinear unit with no activation (`liglu`).
    static let ffnActivations = Activation.activationNames + Activation.all.compactMap(\.gated) + ["liglu"]
    static let names = Set(signatures.keys)
}

/// Arguments of one call after matching positional and named arguments.
struct BoundArgs {
    var values: [String: (Value, SourceRange)] = [:]
    /// Explicit `name:` argument, if any.
    var explicitName: (String, SourceRange)?
    subscript(_ k: String) -> (Value, SourceRange)? { values[k] }
}

extension Lowering {
    /// Matches a call's arguments against a parameter list and evaluates them.
    func bind(_ callee: String, _ params: [(String, Bool)], _ args: [Argument], _ r: SourceRange) throws -> BoundArgs {
        var out = BoundArgs()
        var positional = 0
        var failed = false, tooMany = false
        for a in args {
            let key: String
            if let l = a.label {
                guard params.contains(where: { $0.0 == l }) else {
                    diags.error("'\(callee)' has no argument named '\(l)' (it takes \(params.map(\.0).joined(separator: ", ")))", at: a.labelRange)
                    failed = true; continue
                }
                key = l
            } else {
                guard positional < params.count, params[positional].0 != "name" else {
                    if !tooMany {  // once per call
                        diags.error("too many arguments to '\(callee)' (it takes \(params.count(where: { $0.0 != "name" })))", at: a.value.range)
                    }
                    tooMany = true; failed = true; continue
                }
                key = params[positional].0
                positional += 1
            }
            guard out.values[key] == nil else { diags.error("argument '\(key)' of '\(callee)' is given twice", at: a.value.range); failed = true; continue }
            if key == "name" {
                guard case .name(let n, let nr) = a.value else { diags.error("'name' must be an identifier", at: a.value.range); failed = true; continue }
                out.explicitName = (n, nr)
                continue
            }
            do { out.values[key] = (try eval(a.value), a.value.range) } catch { failed = true }
        }
        for (p, required) in params where required && out.values[p] == nil && !failed {
            diags.error("missing argument '\(p)' in call to '\(callee)'", at: r)
            failed = true
        }
        if failed { throw Reported() }
        return out
    }

    func call(_ name: String, _ nr: SourceRange, _ args: [Argument], _ r: SourceRange) throws -> Value {
        if let block = blocks[name] { return try callBlock(block, args, r, prefixName: nil) }
        guard let sig = Builtins.signatures[name] else {
            var msg = "unknown function '\(name)'"
            if let near = (Array(Builtins.names) + Array(blocks.keys)).first(where: { editDistance($0, name) <= 2 }) { msg += "; did you mean '\(near)'?" }
            throw report(msg, nr)
        }
        // repeat(count, Block, x, extra...): positional arguments after x go to the block's other parameters
        var args = args, extras: [Argument] = []
        if name == "repeat" {
            let positional = args.indices.filter { args[$0].label == nil }
            if positional.count > 3 {
                extras = positional.dropFirst(3).map { args[$0] }
                args = args.enumerated().filter { !positional.dropFirst(3).contains($0.offset) }.map(\.element)
            }
        }
        let a = try bind(name, sig, args, r)
        switch name {
        case "embed": return try embed(a, r)
        case "positions": return try positions(a, r)
        case "linear": return try linear(a, r)
        case "attention": return try attention(a, r)
        case "ffn": return try ffn(a, r)
        case "lstm": return try lstm(a, r)
        case "moe": return try moe(a, r)
        case "lsh_attention": return try lshAttention(a, r)
        case "moe_balance", "moe_zloss", "moe_load": return try moeStatistic(name, a, r)
        case "matmul":
            let x = try tensor(a["a"]!.0, a["a"]!.1, "matmul's first operand"), y = try tensor(a["b"]!.0, a["b"]!.1, "matmul's second operand")
            return try emit(.matmul, [x, y], [:], r)
        case "transpose":
            let x = try tensor(a["x"]!.0, a["x"]!.1, "transpose's argument")
            var axes: [String: AttrValue] = [:]
            for k in ["a", "b"] {
                guard let arg = a[k] else { continue }
                axes[k] = .int(try axis(arg, "transpose"))
            }
            return try emit(.transpose, [x], axes, r, order: ["a", "b"])
        case "split_last":
            let x = try tensor(a["x"]!.0, a["x"]!.1, "split_last's argument")
            return try emit(.splitLast, [x], ["parts": .int(try positiveInt(a["parts"]!.0, a["parts"]!.1, "parts"))], r)
        case "merge_last":
            return try emit(.mergeLast, [try tensor(a["x"]!.0, a["x"]!.1, "merge_last's argument")], [:], r)
        case "where":
            // a tensor or a number on either side: `where(mask, scores, -1e9)`
            let c = try tensor(a["c"]!.0, a["c"]!.1, "where's condition")
            let sides = try ["a", "b"].map { k -> Int in
                let (v, vr) = a[k]!
                if let n = number(v) { return try constant(n, vr) }
                return try tensor(v, vr, "where's \(k == "a" ? "second" : "third") argument")
            }
            return try emit(.where, [c] + sides, [:], r)
        case "pow":
            let x = try tensor(a["x"]!.0, a["x"]!.1, "pow's base")
            return try emit(.pow, [x], ["exponent": .float(try float(a["exponent"]!.0, a["exponent"]!.1, "pow's exponent"))], r)
        case "range":
            return try emit(.range, [], ["length": try dimension(a["length"]!.0, a["length"]!.1, "range's length").attrValue], r)
        case "unsqueeze", "squeeze":
            let x = try tensor(a["x"]!.0, a["x"]!.1, "\(name)'s argument")
            return try emit(OpKind(rawValue: name)!, [x], ["axis": .int(try axis(a["axis"]!, name))], r)
        case "einsum":
            let (e, er) = a["equation"]!
            guard case .text(let equation) = e else { throw report("einsum's equation must be a quoted text such as \"bthd,bshd->bhts\", got \(describe(e))", er) }
            let x = try tensor(a["a"]!.0, a["a"]!.1, "einsum's first operand"), y = try tensor(a["b"]!.0, a["b"]!.1, "einsum's second operand")
            return try emit(.einsum, [x, y], ["equation": .string(equation)], r)
        case "slice":
            let x = try tensor(a["x"]!.0, a["x"]!.1, "slice's argument")
            let start = try nonNegativeInt(a["start"]!.0, a["start"]!.1, "slice's start")
            let size = try dimension(a["size"]!.0, a["size"]!.1, "slice's size")
            return try emit(.slice, [x], ["axis": .int(try axis(a["axis"]!, "slice")), "start": .int(start), "size": size.attrValue], r,
                            order: ["axis", "start", "size"])
        case "gather":
            // the index is an i32 input of positions along a constant axis, checked at run time to lie in [0, N)
            let x = try tensor(a["x"]!.0, a["x"]!.1, "gather's source"), (iv, ir) = a["index"]!
            let index = try tensor(iv, ir, "gather's index")
            let k = try axis(a["axis"]!, "gather"), t = graph.nodes[x].type
            guard graph.nodes[index].kind == .input, !graph.nodes[index].type.dtype.isFloat else {
                throw report("gather's index must be an integer input (its values are checked before each call)", ir)
            }
            guard k >= -t.shape.rank, k < t.shape.rank, let n = t.shape.dims[k < 0 ? k + t.shape.rank : k].constValue else {
                throw report("gather: the axis \(k) of \(t) must exist and be constant", a["axis"]!.1)
            }
            try markInput(index, .positions, limit: n, ir)
            return try emit(.gather, [x, index], ["axis": .int(k)], r)
        case "concat":
            let x = try tensor(a["a"]!.0, a["a"]!.1, "concat's first argument"), y = try tensor(a["b"]!.0, a["b"]!.1, "concat's second argument")
            return try emit(.concat, [x, y], ["axis": .int(try axis(a["axis"]!, "concat"))], r)
        case "param":
            // a learned tensor of up to 4 constant dims, for variants that no built-in covers
            var dims: [Dim] = []
            for k in ["d1", "d2", "d3", "d4"] {
                guard let (v, vr) = a[k] else { break }
                dims.append(.const(try positiveInt(v, vr, "a parameter's dimension")))
            }
            let initKind: Init
            switch a["init"].map({ $0.0 }) {
            case nil, .word("normal")?: initKind = .normal(try a["std"].map { try float($0.0, $0.1, "std") } ?? 0.02)
            case .word("zeros")?: initKind = .zeros
            case .word("ones")?: initKind = .ones
            case let v?: throw report("init must be one of normal, zeros, ones, got \(describe(v))", a["init"]!.1)
            }
            if case .normal(let std) = initKind, !(std >= 0 && std.isFinite) { throw report("std must be a finite number ≥ 0", a["std"]!.1) }
            if a["std"] != nil, case .word(let w)? = a["init"]?.0, w != "normal" { throw report("std: belongs to init: normal", a["std"]!.1) }
            return .tensor(try param(try owner("param", explicit: a.explicitName), dims, initKind, r))
        case "sum", "mean", "max", "logsumexp":
            // the primitive tier's reductions over the last axis, kept as a dim of 1 so that they broadcast back
            let x = try tensor(a["x"]!.0, a["x"]!.1, "the argument of \(name)")
            guard graph.nodes[x].type.shape.rank >= 1 else { throw report("\(name) needs a tensor with a last axis, got \(graph.nodes[x].type)", a["x"]!.1) }
            return try emit(.reduce, [x], ["op": .word(name)], r)
        case "sqrt" where a["x"].map({ number($0.0) != nil }) == true:
            // of a number: folded at compile time (`embed(ids, vocab, dim) * sqrt(dim)`)
            let (v, vr) = a["x"]!
            let x = number(v)!
            guard x >= 0 else { throw report("sqrt of the negative number \(x)", vr) }
            return .float(x.squareRoot())
        case _ where Builtins.activations.contains(name), "softmax":
            let x = try tensor(a["x"]!.0, a["x"]!.1, "the argument of \(name)")
            return try emit(OpKind(rawValue: name)!, [x], [:], r)
        case "repeat": return try repeatBlock(a, extras, r)
        case "ponder_cost":
            // the mean ponder cost of an adaptive-computation repeat, a scalar to add to the objective
            let x = try tensor(a["x"]!.0, a["x"]!.1, "ponder_cost's argument")
            guard let h = halting[x] else { throw report("ponder_cost needs the result of a repeat with halting: (adaptive computation time)", a["x"]!.1) }
            return try emit(.actPonder, h.probabilities, ["threshold": .float(h.threshold)], r)
        case "rezero":
            // Bachlechner et al. 2020: a learned gate on a residual branch, from 0 (the layer starts as identity)
            let x = try tensor(a["x"]!.0, a["x"]!.1, "rezero's input")
            let o = try owner("rezero", explicit: a.explicitName)
            let alpha = try param(o + ".alpha", [.const(1)], .zeros, r)
            return try emit(.mul, [x, alpha], [:], r)
        case _ where Builtins.layers[name] != nil: return try layer(Builtins.layers[name]!, a, r)
        case "mean_pool":
            let x = try tensor(a["x"]!.0, a["x"]!.1, "mean_pool's input")
            guard let (mv, mr) = a["mask"] else { return try emit(.meanPool, [x], [:], r) }
            let m = try tensor(mv, mr, "mean_pool's mask")
            try markInput(m, .mask, mr)
            return try emit(.meanPool, [x, m], [:], r)
        case "first_token":
            let x = try tensor(a["x"]!.0, a["x"]!.1, "first_token's input")
            guard graph.nodes[x].type.shape.rank == 3 else { throw report("first_token expects a [B, T, C] tensor, got \(graph.nodes[x].type)", a["x"]!.1) }
            return try emit(.take, [x], ["axis": .int(1), "index": .int(0)], r, order: ["axis", "index"])
        case "dropout":
            let x = try tensor(a["x"]!.0, a["x"]!.1, "dropout's input")
            let p = try float(a["p"]!.0, a["p"]!.1, "the dropout probability")
            guard p >= 0, p < 1 else { throw report("the dropout probability must be in [0, 1), got \(p)", a["p"]!.1) }
            if p == 0 { return .tensor(x) }
            dropoutCount += 1
            return try emit(.dropout, [x, seedInput()], ["p": .float(p), "id": .int(dropoutCount)], r, order: ["p", "id"])
        default: throw report("unknown function '\(name)'", nr)
        }
    }

    /// An axis argument: an integer, negative from the end.
    private func axis(_ arg: (Value, SourceRange), _ what: String) throws -> Int {
        guard let n = number(arg.0), n == n.rounded(), abs(n) < 64 else { throw report("\(what)'s axis must be an integer, got \(describe(arg.0))", arg.1) }
        return Int(n)
    }

    private func nonNegativeInt(_ v: Value, _ r: SourceRange, _ what: String) throws -> Int {
        guard case .int(let n) = v, n >= 0 else { throw report("\(what) must be an integer ≥ 0, got \(describe(v))", r) }
        return n
    }

    private func lastDim(_ t: Int, _ r: SourceRange, _ what: String) throws -> Int {
        guard let c = graph.nodes[t].type.shape.last?.constValue else {
            throw report("\(what) needs a tensor whose last dimension is a constant, got \(graph.nodes[t].type)", r)
        }
        return c
    }

    /// `embed(ids, vocab, dim)`: token embedding table `NAME.weight` [vocab, dim]; `embed(ids, tied: OWNER)`
    /// looks the ids up in the table of an earlier `embed` (shared source and target embeddings).
    func embed(_ a: BoundArgs, _ r: SourceRange) throws -> Value {
        let ids = try tensor(a["ids"]!.0, a["ids"]!.1, "embed's ids")
        guard !graph.nodes[ids].type.dtype.isFloat else { throw report("embed's ids must be an integer tensor, got \(graph.nodes[ids].type)", a["ids"]!.1) }
        var vocab = try a["vocab"].map { try positiveInt($0.0, $0.1, "vocab") }
        var dim = try a["dim"].map { try positiveInt($0.0, $0.1, "dim") }
        let w: Int
        if let (tv, tr) = a["tied"] {
            w = try tiedWeight(tv, tr)
            let ws = graph.nodes[w].type.shape.dims
            guard ws.count == 2, let v = ws[0].constValue, let d = ws[1].constValue else {
                throw report("cannot look ids up in '\(graph.nodes[w].name!)' of shape \(Shape(ws)): it is not a [vocab, dim] table", tr)
            }
            for (given, want, what) in [(vocab, v, "vocab"), (dim, d, "dim")] where given != nil && given != want {
                throw report("\(what) \(given!) does not match the tied table '\(graph.nodes[w].name!)' of shape \(Shape(ws))", a[what]!.1)
            }
            (vocab, dim) = (v, d)
            if let (n, nr) = a.explicitName { throw report("a tied embed owns no parameters, so it takes no name (got '\(n)')", nr) }
        } else {
            guard vocab != nil else { throw report("missing argument 'vocab' in call to 'embed'", r) }
            guard dim != nil else { throw report("missing argument 'dim' in call to 'embed'", r) }
            let o = try owner("embed", explicit: a.explicitName)
            w = try param(o + ".weight", [.const(vocab!), .const(dim!)], .normal(0.02), r)
            registerWeight(owner: o, w)
        }
        try markInput(ids, .tokens, limit: vocab!, a["ids"]!.1)
        return try emit(.embedding, [w, ids], [:], r)
    }

    /// The weight that `tied: OWNER` names: the table or weight of an earlier call in scope.
    private func tiedWeight(_ tv: Value, _ tr: SourceRange) throws -> Int {
        guard case .word(let target) = tv, let node = scopes.reversed().lazy.compactMap({ $0.ownerWeights[target] }).first else {
            throw report("tied: must name an earlier embed, positions or linear call in scope, got \(describe(tv))", tr)
        }
        return node
    }

    /// `positions(learned|sinusoidal, T, dim)`: a [T, dim] position table.
    func positions(_ a: BoundArgs, _ r: SourceRange) throws -> Value {
        let kind = try word(a["kind"]!.0, a["kind"]!.1, "the position kind", ["learned", "sinusoidal"])
        let len = try dimension(a["length"]!.0, a["length"]!.1, "the sequence length")
        guard let maxLen = graph.bound(of: len) else {
            throw report("the sequence length \(len) needs an upper bound (declare 'where \(len) <= context' on the input)", a["length"]!.1)
        }
        let dim = try positiveInt(a["dim"]!.0, a["dim"]!.1, "dim")
        let rows: AttrValue = len.constValue.map { .int($0) } ?? .word(len.description)
        let layout = try a["layout"].map { (v, lr) -> String in
            guard kind == "sinusoidal" else { throw report("layout: is the column order of sinusoidal positions", lr) }
            return try word(v, lr, "layout", ["interleaved", "halves"])
        } ?? "interleaved"
        if kind == "sinusoidal" {
            if layout == "halves" && dim % 2 != 0 { throw report("layout: halves needs an even dim, got \(dim)", a["dim"]!.1) }
            let halves: [String: AttrValue] = layout == "halves" ? ["halves": .bool(true)] : [:]
            return try emit(.sinusoidal, [], ["rows": rows, "dim": .int(dim)].merging(halves) { a, _ in a }, r, order: ["rows", "dim", "halves"])
        }
        let o = try owner("positions", explicit: a.explicitName)
        let w = try param(o + ".weight", [.const(maxLen), .const(dim)], .normal(0.02), r)
        registerWeight(owner: o, w)
        return try emit(.sliceRows, [w], ["rows": rows], r)
    }

    /// `linear(x, out, bias: true, tied: OWNER)`: x·Wᵀ + b with `NAME.weight` [out, in].
    func linear(_ a: BoundArgs, _ r: SourceRange) throws -> Value {
        let x = try tensor(a["x"]!.0, a["x"]!.1, "linear's input")
        let inDim = try lastDim(x, a["x"]!.1, "linear")
        let hasBias = try a["bias"].map { try bool($0.0, $0.1, "bias") } ?? true
        var out: Int? = try a["out"].map { try positiveInt($0.0, $0.1, "out") }
        var w: Int
        if let (tv, tr) = a["tied"] {
            w = try tiedWeight(tv, tr)
            let ws = graph.nodes[w].type.shape
            guard ws.dims.count == 2, ws.dims[1] == .const(inDim) else {
                throw report("cannot tie to '\(graph.nodes[w].name!)' of shape \(ws): its second dim must equal the input's last dim \(inDim)", tr)
            }
            if let o = out, ws.dims[0] != .const(o) {
                throw report("out \(o) does not match the tied weight '\(graph.nodes[w].name!)' of shape \(ws)", a["out"]!.1)
            }
            out = ws.dims[0].constValue
        } else {
            guard out != nil else { throw report("missing argument 'out' in call to 'linear'", r) }
            w = -1
        }
        let o = try owner("linear", explicit: a.explicitName)
        if w < 0 {
            w = try param(o + ".weight", [.const(out!), .const(inDim)], .normal(0.02), r)
            registerWeight(owner: o, w)
        }
        var ops = [x, w]
        if hasBias { ops.append(try param(o + ".bias", [.const(out!)], .zeros, r)) }
        return try emit(.linear, ops, [:], r)
    }

    /// A built-in layer (`LayerBuiltin`): its parameters under NAME, then its op on x and them, with the
    /// arguments as attributes (checked by the op's type rule).
    func layer(_ def: any LayerBuiltin, _ a: BoundArgs, _ r: SourceRange) throws -> Value {
        let x = try tensor(a["x"]!.0, a["x"]!.1, "\(def.name)'s input")
        var attrs: [String: AttrValue] = [:]
        var order: [String] = []
        for (argument, defaultValue) in def.layerArguments {
            order.append(argument)
            guard let (v, vr) = a[argument] else { attrs[argument] = defaultValue; continue }
            switch (defaultValue, v) {
            case (.float, _): attrs[argument] = .float(try float(v, vr, argument))
            case (.int, _): attrs[argument] = .int(try positiveInt(v, vr, argument))
            case (.bool, _): attrs[argument] = .bool(try bool(v, vr, argument))
            default:
                guard case .word(let w) = v else { throw report("\(argument) must be a word, got \(describe(v))", vr) }
                attrs[argument] = .word(w)
            }
        }
        let params: [LayerParameter]
        do { params = try def.layerParameters(graph.nodes[x].type) } catch let e as TypeError { throw report(e.message, a["x"]!.1) }
        do { _ = try OpKind(def.name).inferType([graph.nodes[x].type] + params.map { TensorType(graph.nodes[x].type.dtype, $0.dims) },
                                                Attributes(order.map { ($0, attrs[$0]!) }), bound: graph.bound(of:)) }
        catch let e as TypeError {
            let at = order.first { e.message.hasPrefix($0) && a[$0] != nil }.map { a[$0]!.1 } ?? r
            throw report(e.message, at)
        }
        let o = try owner(def.name, explicit: a.explicitName)
        var operands = [x]
        for p in params {
            let initKind: Init
            switch p.initialization {
            case .zeros: initKind = .zeros
            case .ones: initKind = .ones
            case .normal(let std): initKind = .normal(std)
            }
            operands.append(try param(o + "." + p.name, p.dims, initKind, r))
        }
        return try emit(OpKind(def.name), operands, attrs, r, order: order)
    }

    /// `lstm(x, hidden: H, layers: 1, dropout: 0)`: a stack of LSTM layers (Hochreiter & Schmidhuber 1997) as
    /// `nn.LSTM(in, H, num_layers: layers, dropout: dropout, batch_first: True)`, with its parameter names and
    /// shapes (`NAME.weight_ih_l0` [4H, in], `NAME.weight_hh_l0` [4H, H], `NAME.bias_ih_l0`, `NAME.bias_hh_l0`
    /// [4H], then `_l1`, …), so its state dict loads. Each layer is the input projection of all positions (a
    /// `linear`) and the recurrence (`lstm`); dropout applies between layers, not after the last. The weights
    /// start at N(0, 1/(3H)), the variance of nn.LSTM's U(−1/√H, 1/√H); the biases at 0.
    func lstm(_ a: BoundArgs, _ r: SourceRange) throws -> Value {
        var x = try tensor(a["x"]!.0, a["x"]!.1, "lstm's input")
        guard graph.nodes[x].type.shape.rank == 3 else { throw report("lstm expects a [B, T, C] tensor, got \(graph.nodes[x].type)", a["x"]!.1) }
        var inDim = try lastDim(x, a["x"]!.1, "lstm")
        let h = try positiveInt(a["hidden"]!.0, a["hidden"]!.1, "hidden")
        guard h <= 16384 else { throw report("hidden \(h) is too large (limit 16384)", a["hidden"]!.1) }
        let layers = try a["layers"].map { try positiveInt($0.0, $0.1, "layers") } ?? 1
        guard layers <= 64 else { throw report("layers \(layers) is too many (limit 64)", a["layers"]!.1) }
        let p = try a["dropout"].map { try float($0.0, $0.1, "dropout") } ?? 0
        guard p >= 0, p < 1 else { throw report("the dropout probability must be in [0, 1), got \(p)", a["dropout"]!.1) }
        let o = try owner("lstm", explicit: a.explicitName)
        let std = 1 / (3 * Double(h)).squareRoot()
        for l in 0..<layers {
            if l > 0 && p > 0 {
                dropoutCount += 1
                guard case .tensor(let d) = try emit(.dropout, [x, seedInput()], ["p": .float(p), "id": .int(dropoutCount)], r, order: ["p", "id"]) else { throw Reported() }
                x = d
            }
            let wih = try param(o + ".weight_ih_l\(l)", [.const(4 * h), .const(inDim)], .normal(std), r)
            let whh = try param(o + ".weight_hh_l\(l)", [.const(4 * h), .const(h)], .normal(std), r)
            let bih = try param(o + ".bias_ih_l\(l)", [.const(4 * h)], .zeros, r)
            let bhh = try param(o + ".bias_hh_l\(l)", [.const(4 * h)], .zeros, r)
            guard case .tensor(let xg) = try emit(.linear, [x, wih, bih], [:], r),
                  case .tensor(let y) = try emit(.lstm, [xg, whh, bhh], [:], r) else { throw Reported() }
            x = y
            inDim = h
        }
        return .tensor(x)
    }

    /// Emits `NAME.SUB.weight` [out, in] and optional bias, and the linear op.
    private func projection(_ x: Int, _ prefix: String, _ out: Int, _ inDim: Int, bias: Bool, std: Double, _ r: SourceRange) throws -> Int {
        var ops = [x, try param(prefix + ".weight", [.const(out), .const(inDim)], .normal(std), r)]
        if bias { ops.append(try param(prefix + ".bias", [.const(out)], .zeros, r)) }
        guard case .tensor(let t) = try emit(.linear, ops, [:], r) else { throw Reported() }
        return t
    }

    /// Standard deviation of residual output projections (GPT-2: 0.02/√(2·layers)).
    private var residualStd: Double { 0.02 / (2.0 * Double(residualDepth)).squareRoot() }

    /// `attention(x, heads: H, mask: none|causal, padding: MASK, bias: true, memory: M)`: multi-head
    /// attention with `NAME.query`, `NAME.key`, `NAME.value` and `NAME.output` projections. Self-attention
    /// without `memory`; with `memory: M` (`[B, S, D]`, an encoder's output) cross-attention: queries from x,
    /// keys and values from M. `padding` is an `i32` input over the keys (`[B, T]`, or `[B, S]` with a
    /// memory), 1 for a token and 0 for padding: no query sees a padding key.
    func attention(_ a: BoundArgs, _ r: SourceRange) throws -> Value {
        let x = try tensor(a["x"]!.0, a["x"]!.1, "attention's input")
        guard graph.nodes[x].type.shape.rank == 3 else { throw report("attention expects a [B, T, C] tensor, got \(graph.nodes[x].type)", a["x"]!.1) }
        let c = try lastDim(x, a["x"]!.1, "attention")
        let heads = try positiveInt(a["heads"]!.0, a["heads"]!.1, "heads")
        guard c % heads == 0 else { throw report("model dim \(c) is not divisible by \(heads) heads", a["heads"]!.1) }
        let mask = try a["mask"].map { try word($0.0, $0.1, "mask", ["none", "causal"]) } ?? "none"
        let bias = try a["bias"].map { try bool($0.0, $0.1, "bias") } ?? true
        let position = try a["position"].map { try word($0.0, $0.1, "position", ["none", "rotary", "alibi", "relative", "t5"]) } ?? "none"
        let kvHeads = try a["kv_heads"].map { try positiveInt($0.0, $0.1, "kv_heads") } ?? heads
        let ropeBase = try a["rope_base"].map { (v, r) -> Double in
            guard position == "rotary" else { throw report("rope_base is the base of rotary positions; write position: rotary", r) }
            guard let b = number(v), b > 1, b.isFinite else { throw report("rope_base must be a number above 1", r) }
            return b
        } ?? 10000
        // the relative schemes' sizes: Shaw's clip distance, T5's buckets and the distance the last one starts at
        func size(_ key: String, for scheme: String, default value: Int) throws -> Int {
            guard let (v, vr) = a[key] else { return value }
            guard position == scheme else { throw report("\(key) belongs to position: \(scheme)", vr) }
            let n = try positiveInt(v, vr, key)
            guard n <= 4096 else { throw report("\(key) \(n) is too large (limit 4096)", vr) }
            return n
        }
        let clip = try size("clip", for: "relative", default: 16)
        let buckets = try size("buckets", for: "t5", default: 32), maxDistance = try size("max_distance", for: "t5", default: 128)
        if position == "t5" {
            let exact = (mask == "causal" ? buckets : buckets / 2) / 2
            guard exact >= 1 else { throw report("T5's buckets split in exact and logarithmic ones\(mask == "causal" ? "" : " for each direction"): buckets must be at least \(mask == "causal" ? 2 : 4)", a["buckets"]?.1 ?? a["position"]!.1) }
            guard maxDistance > exact else { throw report("max_distance must exceed the \(exact) exact buckets", a["max_distance"]?.1 ?? a["position"]!.1) }
        }
        guard heads % kvHeads == 0 else { throw report("kv_heads \(kvHeads) must divide heads \(heads) (each key/value head serves heads / kv_heads query heads)", a["kv_heads"]!.1) }
        let kvWidth = c / heads * kvHeads
        var headAttrs: [String: AttrValue] = ["heads": .int(heads)]
        if kvHeads != heads { headAttrs["kv_heads"] = .int(kvHeads) }
        if position == "alibi" { headAttrs["alibi"] = .bool(true) }
        if let (wv, wr) = a["window"] {
            // local attention: each query sees the keys within window − 1 positions (before it, when causal)
            let w = try positiveInt(wv, wr, "window")
            guard position == "none" || position == "rotary" || position == "alibi" else {
                throw report("window: works with position: none, rotary or alibi, not \(position)", wr)
            }
            guard a["memory"] == nil else { throw report("window: is local self-attention; cross-attention to a memory takes none", wr) }
            headAttrs["window"] = .int(w)
        }
        if position == "rotary", (c / heads) % 2 != 0 {
            throw report("rotary positions turn pairs of channels: the head size \(c / heads) must be even", a["position"]!.1)
        }
        // Linformer (Wang et al. 2020): keys and values projected along the sequence to `lowrank` rows
        let lowrank = try a["lowrank"].map { (v, lr) -> (rows: Int, width: Int) in
            let k = try positiveInt(v, lr, "lowrank")
            guard mask == "none" else { throw report("lowrank: projects keys and values along the whole sequence, so it is bidirectional; it takes no mask: causal", a["mask"]!.1) }
            guard position == "none" else { throw report("lowrank: takes no relative positions (position: \(position)): the projected keys have none; add positions to the input", a["position"]!.1) }
            guard a["window"] == nil, a["memory"] == nil else { throw report("lowrank: is Linformer's self-attention; it takes neither window: nor memory:", lr) }
            let len = graph.nodes[x].type.shape.dims[1]
            guard let n = graph.bound(of: len) else {
                throw report("lowrank: needs the sequence length \(len) bounded (declare 'where \(len) <= context' on the input)", lr)
            }
            guard k <= 65536 else { throw report("lowrank \(k) is too large (limit 65536)", lr) }
            return (k, n)
        }
        // BigBird (Zaheer et al. 2020): blocks, global blocks, a window of three blocks and random ones
        if let (bv, br) = a["block"] {
            let block = try positiveInt(bv, br, "block")
            guard mask == "none" else { throw report("block: is BigBird's bidirectional attention; it takes no mask: causal", a["mask"]!.1) }
            guard position == "none" || position == "rotary" else { throw report("block: works with position: none or rotary, not \(position)", a["position"]!.1) }
            guard a["window"] == nil, a["memory"] == nil, a["lowrank"] == nil else { throw report("block: is BigBird's self-attention; it takes none of window:, memory: and lowrank:", br) }
            // an integer argument in 0 ... limit, or its default
            func count(_ key: String, _ defaultValue: Int, _ limit: Int, _ what: String) throws -> Int {
                guard let (v, r) = a[key] else { return defaultValue }
                guard case .int(let n) = v, n >= 0, n <= limit else { throw report("\(key) must be \(what)", r) }
                return n
            }
            headAttrs["block"] = .int(block)
            headAttrs["global"] = .int(try count("global", 1, Int(Int32.max), "a number of blocks (0 or more)"))
            headAttrs["random"] = .int(try count("random", 1, Attention.maxRandomBlocks, "a number of blocks from 0 to \(Attention.maxRandomBlocks)"))
            headAttrs["seed"] = .int(try count("seed", 0, Int(UInt32.max), "a number from 0 to 4294967295"))
        } else if let key = ["global", "random", "seed"].first(where: { a[$0] != nil }) {
            throw report("\(key): belongs to BigBird's attention: write block: N", a[key]!.1)
        }
        var source = x, sourceDim = c
        if let (mv, mr) = a["memory"] {
            source = try tensor(mv, mr, "attention's memory")
            let mt = graph.nodes[source].type, xt = graph.nodes[x].type
            guard mt.shape.rank == 3, mt.dtype == xt.dtype, mt.shape.dims[0] == xt.shape.dims[0] else {
                throw report("attention's memory must be a [\(xt.shape.dims[0]), S, D] tensor of \(xt.dtype) (one sequence per query sequence), got \(mt)", mr)
            }
            sourceDim = try lastDim(source, mr, "attention's memory")
            if mask == "causal" { throw report("mask: causal orders a sequence against itself; cross-attention to a memory takes only a padding mask", a["mask"]!.1) }
            if position != "none" { throw report("position: \(position) relates positions of one sequence; cross-attention to a memory takes none", a["position"]!.1) }
        }
        var padding: [Int] = []
        if let (pv, pr) = a["padding"] {
            let m = try tensor(pv, pr, "the padding mask")
            let want = Array(graph.nodes[source].type.shape.dims.prefix(2))
            guard !graph.nodes[m].type.dtype.isFloat, graph.nodes[m].type.shape.dims == want else {
                throw report("the padding mask must be an integer tensor [\(want.map(\.description).joined(separator: ", "))] (1 for a token, 0 for padding), got \(graph.nodes[m].type)", pr)
            }
            try markInput(m, .mask, pr)
            padding = [m]
        }
        let o = try owner("attention", explicit: a.explicitName)
        var q = try projection(x, o + ".query", c, c, bias: bias, std: 0.02, r)
        var k = try projection(source, o + ".key", kvWidth, sourceDim, bias: bias, std: 0.02, r)
        if position == "rotary" {
            // Su et al. 2021: queries and keys turned by their positions, so that q·k depends on their distance
            func turn(_ x: Int, heads: Int) throws -> Int {
                let attrs: [String: AttrValue] = ["heads": .int(heads), "base": .float(ropeBase), "inverse": .bool(false)]
                guard case .tensor(let y) = try emit(.rotary, [x], attrs, r, order: ["heads", "base", "inverse"]) else { throw Reported() }
                return y
            }
            (q, k) = (try turn(q, heads: heads), try turn(k, heads: kvHeads))
        }
        var v = try projection(source, o + ".value", kvWidth, sourceDim, bias: bias, std: 0.02, r)
        if let (rows, width) = lowrank {
            // E and F [rows, N] (scaled so that a row of the projection has the scale of one position's key),
            // shared by the heads; padding positions count as zeros, and every projected row is seen
            func project(_ t: Int, _ name: String) throws -> Int {
                let e = try param(o + "." + name, [.const(rows), .const(width)], .normal(1 / Double(width).squareRoot()), r)
                guard case .tensor(let y) = try emit(.projectSequence, [t, e] + padding, [:], r) else { throw Reported() }
                return y
            }
            (k, v) = (try project(k, "project_key"), try project(v, "project_value"))
            padding = []
        }
        let att: Int
        if position == "relative" || position == "t5" {
            // Shaw et al. 2018: a^K and a^V [2, 2·clip + 1, head size]; T5: a bias per bucket and head
            let shaw = position == "relative"
            let table = try param(o + (shaw ? ".relative" : ".relative_bias"),
                                  shaw ? [.const(2), .const(2 * clip + 1), .const(c / heads)] : [.const(buckets), .const(heads)], .normal(0.02), r)
            var attrs = headAttrs.merging(["causal": .bool(mask == "causal"), "scheme": .word(shaw ? "shaw" : "t5")]) { a, _ in a }
            if shaw { attrs["clip"] = .int(clip) } else { attrs["buckets"] = .int(buckets); attrs["max_distance"] = .int(maxDistance) }
            guard case .tensor(let y) = try emit(.relativeAttention, [q, k, v, table] + padding, attrs, r,
                                                 order: ["heads", "kv_heads", "causal", "scheme", "clip", "buckets", "max_distance"]) else { throw Reported() }
            att = y
        } else {
            guard case .tensor(let y) = try emit(.attention, [q, k, v] + padding, headAttrs.merging(["causal": .bool(mask == "causal")]) { a, _ in a }, r, order: ["heads", "kv_heads", "alibi", "causal", "window", "block", "global", "random", "seed"]) else { throw Reported() }
            att = y
        }
        return .tensor(try projection(att, o + ".output", c, c, bias: bias, std: residualStd, r))
    }

    /// `lsh_attention(x, heads:, buckets:, hashes: 2, chunk: 32, seed: 1, mask: none, bias: true)`: Reformer's
    /// LSH self-attention (Kitaev et al. 2020) with one shared query/key projection `NAME.query_key`, `NAME.value`
    /// and `NAME.output` (NAME `lsh_attention`).
    func lshAttention(_ a: BoundArgs, _ r: SourceRange) throws -> Value {
        let x = try tensor(a["x"]!.0, a["x"]!.1, "lsh_attention's input")
        guard graph.nodes[x].type.shape.rank == 3, let c = graph.nodes[x].type.shape.last?.constValue else {
            throw report("lsh_attention expects a [B, T, C] tensor, got \(graph.nodes[x].type)", a["x"]!.1)
        }
        let heads = try positiveInt(a["heads"]!.0, a["heads"]!.1, "heads")
        let buckets = try positiveInt(a["buckets"]!.0, a["buckets"]!.1, "buckets")
        let hashes = try a["hashes"].map { try positiveInt($0.0, $0.1, "hashes") } ?? 2
        let chunk = try a["chunk"].map { try positiveInt($0.0, $0.1, "chunk") } ?? 32
        let seed = try a["seed"].map { try nonNegativeInt($0.0, $0.1, "seed") } ?? 1
        let mask = try a["mask"].map { try word($0.0, $0.1, "mask", ["none", "causal"]) } ?? "none"
        let bias = try a["bias"].map { try bool($0.0, $0.1, "bias") } ?? true
        guard c % heads == 0 else { throw report("model dim \(c) is not divisible by \(heads) heads", a["heads"]!.1) }
        let o = try owner("lsh_attention", explicit: a.explicitName)
        let qk = try projection(x, o + ".query_key", c, c, bias: bias, std: 0.02, r)
        let v = try projection(x, o + ".value", c, c, bias: bias, std: 0.02, r)
        let attrs: [String: AttrValue] = ["heads": .int(heads), "hashes": .int(hashes), "buckets": .int(buckets), "chunk": .int(chunk),
                                          "seed": .int(seed), "causal": .bool(mask == "causal")]
        guard case .tensor(let att) = try emit(.lshAttention, [qk, v], attrs, r, order: ["heads", "hashes", "buckets", "chunk", "seed", "causal"]) else { throw Reported() }
        return .tensor(try projection(att, o + ".output", c, c, bias: bias, std: residualStd, r))
    }

    /// `ffn(x, hidden: N, activation: gelu, bias: true)`: `NAME.up` [N, C], the activation, `NAME.down` [C, N].
    /// A gated linear unit (Shazeer 2020; `activation: swiglu`, `geglu`, `reglu`, `glu`) adds `NAME.gate`
    /// [N, C]: down(act(gate(x)) · up(x)); `liglu` (Shazeer's bilinear) has no activation: down(gate(x) · up(x)).
    func ffn(_ a: BoundArgs, _ r: SourceRange) throws -> Value {
        let x = try tensor(a["x"]!.0, a["x"]!.1, "ffn's input")
        let c = try lastDim(x, a["x"]!.1, "ffn")
        let hidden = try positiveInt(a["hidden"]!.0, a["hidden"]!.1, "hidden")
        let act = try a["activation"].map { try word($0.0, $0.1, "activation", Builtins.ffnActivations) } ?? "gelu"
        let bias = try a["bias"].map { try bool($0.0, $0.1, "bias") } ?? true
        let o = try owner("ffn", explicit: a.explicitName)
        var h: Int
        if act == "liglu" || Activation.gated(act) != nil {
            let gate = try projection(x, o + ".gate", hidden, c, bias: bias, std: 0.02, r)
            let up = try projection(x, o + ".up", hidden, c, bias: bias, std: 0.02, r)
            var g = gate
            if let unit = Activation.gated(act) {
                guard case .tensor(let a) = try emit(unit.kind, [gate], [:], r) else { throw Reported() }
                g = a
            }
            guard case .tensor(let gu) = try emit(.mul, [g, up], [:], r) else { throw Reported() }
            h = gu
        } else {
            let up = try projection(x, o + ".up", hidden, c, bias: bias, std: 0.02, r)
            guard case .tensor(let u) = try emit(OpKind(rawValue: act)!, [up], [:], r) else { throw Reported() }
            h = u
        }
        return .tensor(try projection(h, o + ".down", c, hidden, bias: bias, std: residualStd, r))
    }

    /// `moe(x, experts: E, hidden: H, top: k, capacity: f, activation: act)`: a mixture-of-experts feed-forward
    /// layer (Shazeer et al. 2017; GShard; Switch): a router `NAME.router.weight [E, C]` (no bias), and E experts
    /// `NAME.up.weight`, `NAME.down.weight [E, H, C]` (no biases, as in Switch and Mixtral). Each token goes to
    /// its top k experts, each expert takes at most ⌈f · k · N / E⌉ of the call's N tokens; a token past that
    /// gets nothing from that expert (the residual carries it).
    func moe(_ a: BoundArgs, _ r: SourceRange) throws -> Value {
        let x = try tensor(a["x"]!.0, a["x"]!.1, "moe's input")
        let c = try lastDim(x, a["x"]!.1, "moe")
        let e = try positiveInt(a["experts"]!.0, a["experts"]!.1, "experts")
        guard e >= 2, e <= 1024 else { throw report("experts must be between 2 and 1024, got \(e)", a["experts"]!.1) }
        let hidden = try positiveInt(a["hidden"]!.0, a["hidden"]!.1, "hidden")
        let k = try a["top"].map { try positiveInt($0.0, $0.1, "top") } ?? 1
        guard k <= e else { throw report("top \(k) must be at most the \(e) experts", a["top"]!.1) }
        let factor = try a["capacity"].map { try float($0.0, $0.1, "capacity") } ?? 1.25
        guard factor >= 0, factor.isFinite else { throw report("capacity must be a factor ≥ 0 (0: no limit), got \(factor)", a["capacity"]!.1) }
        let act = try a["activation"].map { try word($0.0, $0.1, "activation", Activation.activationNames) } ?? "gelu"
        let o = try owner("moe", explicit: a.explicitName)
        let router = try param(o + ".router.weight", [.const(e), .const(c)], .normal(0.02), r)
        let up = try param(o + ".up.weight", [.const(e), .const(hidden), .const(c)], .normal(0.02), r)
        let down = try param(o + ".down.weight", [.const(e), .const(hidden), .const(c)], .normal(residualStd), r)
        guard case .tensor(let logits) = try emit(.linear, [x, router], [:], r),
              case .tensor(let gates) = try emit(.moeRoute, [logits], ["top": .int(k), "capacity": .float(factor)], r, order: ["top", "capacity"]),
              case .tensor(let h) = try emit(.moeUp, [x, gates, up], ["top": .int(k)], r),
              case .tensor(let y) = try emit(.moeDown, [h, gates, down], ["activation": .word(act)], r) else { throw Reported() }
        moeLayers.append((logits: logits, gates: gates))
        return .tensor(y)
    }

    /// `moe_balance(h)`, `moe_zloss(h)`, `moe_load(h)`: over the `moe` layers that h depends on, the mean
    /// load-balancing loss and the mean router z-loss (scalars to add to the objective), or each layer's load
    /// `[L, E]` (the fraction of tokens routed to each expert, a statistic).
    func moeStatistic(_ name: String, _ a: BoundArgs, _ r: SourceRange) throws -> Value {
        let x = try tensor(a["x"]!.0, a["x"]!.1, "\(name)'s argument")
        var reaches = Set([x]), stack = [x]
        while let n = stack.popLast() {
            for o in graph.nodes[n].operands where reaches.insert(o).inserted { stack.append(o) }
        }
        let layers = moeLayers.filter { reaches.contains($0.gates) }
        guard !layers.isEmpty else { throw report("\(name) needs a tensor computed by moe layers, and no moe layer leads to this one", a["x"]!.1) }
        let types = Set(layers.map { graph.nodes[$0.logits].type })
        guard types.count == 1 else {
            throw report("\(name) needs moe layers of one shape, got routers of \(types.map(\.description).sorted().joined(separator: " and "))", a["x"]!.1)
        }
        switch name {
        case "moe_load": return try emit(.moeLoad, layers.map(\.gates), [:], r)
        default: return try emit(.routerLoss, layers.map(\.logits), ["kind": .word(name == "moe_zloss" ? "z" : "balance")], r)
        }
    }

    /// `repeat(N, Block, x, extra…)`: N calls of Block, each with its own weights `NAME.i.…`; x is the first
    /// argument of the first call and the result of each call the first argument of the next; the extra
    /// arguments (a padding mask) are the same for every call. `shared: true`: one set of weights `NAME.…` for
    /// all N calls (ALBERT; the Universal Transformer); `timestep: true` adds row i of the sinusoidal table (of
    /// N rows, the width of x) to x before call i (the Universal Transformer's timestep signal); `timestep: s`
    /// (a positive number) adds that row times s, to match the signal to the scale of x.
    func repeatBlock(_ a: BoundArgs, _ extras: [Argument], _ r: SourceRange) throws -> Value {
        let n = try positiveInt(a["count"]!.0, a["count"]!.1, "the repeat count")
        guard n <= Self.maxRepeat else { throw report("repeat count \(n) is too large (limit \(Self.maxRepeat))", a["count"]!.1) }
        let (bv, br) = a["block"]!
        guard case .word(let bn) = bv, let block = blocks[bn] else { throw report("repeat's second argument must be a block, got \(describe(bv))", br) }
        guard block.params.count == 1 + extras.count else {
            throw report("repeat passes \(1 + extras.count) argument\(extras.isEmpty ? "" : "s") to each call, but '\(bn)' has \(block.params.count) parameter\(block.params.count == 1 ? "" : "s")", br)
        }
        let more = try extras.map { (try eval($0.value), $0.value.range) }
        let shared = try a["shared"].map { try bool($0.0, $0.1, "shared") } ?? false
        // timestep: true | false | a positive scale of the signal
        let timestepScale: Double? = try a["timestep"].flatMap { (v, tr) -> Double? in
            if let s = number(v) {
                guard s > 0, s.isFinite else { throw report("timestep takes true, false or a positive scale of the signal, got \(describe(v))", tr) }
                return s
            }
            guard case .word = v else { throw report("timestep takes true, false or a positive scale of the signal, got \(describe(v))", tr) }
            return try bool(v, tr, "timestep") ? 1 : nil
        }
        let epsilon = try a["halting"].map { (v, hr) -> Double in
            guard let e = number(v), e > 0, e < 1 else { throw report("halting is adaptive computation time's ε, a number in (0, 1) (the threshold is 1 − ε; the paper uses 0.01)", hr) }
            return e
        }
        var x = a["x"]!.0
        let o = try owner("layers", explicit: a.explicitName)
        let outerPrefix = scopes[scopes.count - 1].prefix
        var signal: Int?
        if let scale = timestepScale {
            let t = try tensor(x, a["x"]!.1, "repeat's input")
            let width = try lastDim(t, a["x"]!.1, "timestep: true")
            guard case .tensor(var s) = try emit(.sinusoidal, [], ["rows": .int(n), "dim": .int(width)], r, order: ["rows", "dim"]) else { throw Reported() }
            if scale != 1 {
                guard case .tensor(let scaled) = try emit(.scale, [s], ["factor": .float(scale)], r) else { throw Reported() }
                s = scaled
            }
            signal = s
        }
        residualDepth *= n
        let reusing = reuseParams
        defer { residualDepth /= n; reuseParams = reusing }
        // adaptive computation time (Graves 2016; the Universal Transformer's dynamic halting): one halting unit
        // NAME.halting (a sigmoid of a linear map to 1, its bias from 1 as in the paper's code) for every step
        var haltingUnit: (weight: Int, bias: Int)?
        if epsilon != nil {
            let width = try lastDim(try tensor(x, a["x"]!.1, "repeat's input"), a["x"]!.1, "halting")
            haltingUnit = (try param(o + ".halting.weight", [.const(1), .const(width)], .normal(0.02), r), try param(o + ".halting.bias", [.const(1)], .ones, r))
        }
        var probabilities: [Int] = [], states: [Int] = []
        for i in 0..<n {
            if let s = signal {
                let t = try tensor(x, a["x"]!.1, "repeat's input")
                guard case .tensor(let row) = try emit(.take, [s], ["axis": .int(0), "index": .int(i)], r, order: ["axis", "index"]) else { throw Reported() }
                x = try emit(.add, [t, row], [:], r)
            }
            if let (w, b) = haltingUnit {
                let t = try tensor(x, a["x"]!.1, "repeat's input")
                guard case .tensor(let logit) = try emit(.linear, [t, w, b], [:], r),
                      case .tensor(let p) = try emit(OpKind(rawValue: "sigmoid")!, [logit], [:], r) else { throw Reported() }
                probabilities.append(p)
            }
            let name = String(o.dropFirst(outerPrefix.count)) + (shared ? "" : ".\(i)")
            reuseParams = reusing || (shared && i > 0)
            x = try callBlock(block, [], r, prefixName: name, values: [(x, a["x"]!.1)] + more)
            if haltingUnit != nil { states.append(try tensor(x, r, "the result of '\(bn)'")) }
        }
        if let epsilon {
            guard case .tensor(let y) = try emit(.act, probabilities + states, ["steps": .int(n), "threshold": .float(1 - epsilon)], r, order: ["steps", "threshold"]) else { throw Reported() }
            halting[y] = (probabilities, 1 - epsilon)
            return .tensor(y)
        }
        return x
    }

    /// Inlines a block: binds arguments, checks their types against the
    /// declared ones, runs the body in a new scope, checks the result type.
    func callBlock(_ b: BlockDecl, _ args: [Argument], _ r: SourceRange, prefixName: String?, values: [(Value, SourceRange)]? = nil) throws -> Value {
        guard !callStack.contains(b.name) else { throw report("block '\(b.name)' calls itself (recursion is not allowed)", r) }
        var bound: [(Value, SourceRange)]
        var ownerName: String
        if let values {
            bound = values
            ownerName = scopes[scopes.count - 1].prefix + prefixName!
        } else {
            let a = try bind(b.name, b.params.map { ($0.name, true) } + [("name", false)], args, r)
            bound = b.params.map { a[$0.name]! }
            ownerName = try owner(b.name.lowercased(), explicit: a.explicitName)
        }
        var scope = Scope(prefix: ownerName + ".")
        for (p, (v, vr)) in zip(b.params, bound) {
            let t = try tensor(v, vr, "argument '\(p.name)' of block '\(b.name)'")
            let want = try evalTypeInScope(p.type)
            let got = graph.nodes[t].type
            guard want == got else {
                throw report("argument '\(p.name)' of block '\(b.name)' expects \(want), got \(got)", vr)
            }
            scope.vars[p.name] = .tensor(t)
        }
        callStack.append(b.name)
        scopes.append(scope)
        defer { scopes.removeLast(); callStack.removeLast() }
        var result: Value?
        for s in b.body {
            if result != nil { throw report("code after 'return' in block '\(b.name)'", b.range) }
            result = run(s, inBlock: true)
        }
        guard let result else { throw report("block '\(b.name)' has no 'return'", b.range) }
        if case .poison = result { throw Reported() }
        let t = try tensor(result, b.result.range, "the result of block '\(b.name)'")
        let want = try evalType(b.result)
        guard graph.nodes[t].type == want else {
            throw report("block '\(b.name)' returns \(graph.nodes[t].type) but declares \(want)", b.result.range)
        }
        return .tensor(t)
    }

    /// Types of block parameters see config and dims only.
    private func evalTypeInScope(_ t: TypeExpr) throws -> TensorType {
        callStack.append("")
        scopes.append(Scope(prefix: ""))
        defer { scopes.removeLast(); callStack.removeLast() }
        return try evalType(t)
    }
}

/// Levenshtein distance, for "did you mean" hints (short strings only).
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.prefix(64)), b = Array(b.prefix(64))
    var prev = Array(0...b.count)
    for i in 1...max(a.count, 1) where !a.isEmpty {
        var cur = [i] + Array(repeating: 0, count: b.count)
        for j in 1...max(b.count, 1) where !b.isEmpty {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        prev = cur
    }
    return a.isEmpty ? b.count : prev[b.count]
}
