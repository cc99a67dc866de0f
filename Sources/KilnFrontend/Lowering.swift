import KilnBasics
import KilnIR

/// A value during lowering: what a name or expression of the model file
/// stands for once evaluated.
enum Value {
    case int(Int)
    case float(Double)
    /// A symbolic dimension such as `T`.
    case dim(Dim)
    /// A tensor: the index of the IR node that computes it.
    case tensor(Int)
    /// An unbound identifier, used as an enum-like word (`causal`, `gelu`, a block name).
    case word(String)
    /// A quoted text (an einsum equation).
    case text(String)
    /// The result of an expression that already reported an error.
    case poison
}

/// Thrown after a diagnostic has been recorded, to abandon the current statement.
struct Reported: Error {}

/// Settings that change what a model file compiles to.
public struct FrontendOptions: Sendable {
    /// `--set name=value` overrides of config entries, in order.
    public var overrides: [(String, String)]
    public init(overrides: [(String, String)] = []) { self.overrides = overrides }
}

/// A problem with the options rather than the file (e.g. an unknown `--set` key).
public struct OptionError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// Turns a parsed program into an IR graph by evaluating it: config
/// arithmetic is folded, blocks are inlined at each call with their own
/// parameter names, `repeat` unrolls, and every tensor operation is checked
/// by its op's type rule as it is emitted (errors name the dimensions).
final class Lowering {
    let diags: DiagnosticEngine
    var graph: Graph
    var config: [String: Value] = [:]
    var configOrder: [String] = []
    var blocks: [String: BlockDecl] = [:]
    var scopes: [Scope] = []
    var callStack: [String] = []
    var paramNames = Set<String>()
    /// Every parameter by name; while a shared `repeat` runs its later calls, a name that exists is reused.
    var paramNodes: [String: Int] = [:]
    var reuseParams = false
    /// The halting probabilities (and the threshold) of each adaptive-computation `repeat`, by its result, for
    /// `ponder_cost`.
    var halting: [Int: (probabilities: [Int], threshold: Double)] = [:]
    var dropoutCount = 0
    /// Every `moe` layer's router logits and gates, in order, for `moe_balance`, `moe_zloss` and `moe_load`.
    var moeLayers: [(logits: Int, gates: Int)] = []
    /// Product of enclosing `repeat` counts: GPT-2 scales residual projections by 1/√(2·layers).
    var residualDepth = 1

    static let maxNodes = 1_000_000
    static let maxRepeat = 1_000
    static let maxDimension = 1 << 31

    /// A naming scope: a block body (or the top level) with its variables and
    /// the parameter-name prefix of everything created in it.
    struct Scope {
        var vars: [String: Value] = [:]
        var prefix: String
        /// Names of parameter-owning calls made in this scope (`attention`, `layernorm_1`).
        var owners: Set<String> = []
        /// The `weight` parameter of each owner, for `tied:`.
        var ownerWeights: [String: Int] = [:]
    }

    init(diags: DiagnosticEngine, modelName: String) {
        self.diags = diags
        self.graph = Graph(name: modelName)
        scopes = [Scope(prefix: "")]
    }

    // MARK: entry point

    static func lower(_ prog: Program, diags: DiagnosticEngine, options: FrontendOptions) throws -> (Graph, TrainConfig?, WeightSources?)? {
        let l = Lowering(diags: diags, modelName: prog.modelName)
        try l.evaluateConfig(prog.config, overrides: options.overrides)
        for b in prog.blocks {
            if l.blocks[b.name] != nil { diags.error("block '\(b.name)' is defined twice", at: b.range) }
            else if Builtins.names.contains(b.name) { diags.error("block '\(b.name)' has the name of a built-in", at: b.range) }
            else { l.blocks[b.name] = b }
        }
        for input in prog.inputs { l.declareInput(input) }
        if prog.inputs.isEmpty { diags.error("the model has no 'input' declaration", at: prog.modelRange) }
        for s in prog.statements { l.run(s, inBlock: false) }
        if l.graph.outputs.isEmpty && !diags.hasErrors {
            diags.error("the model has no 'output' statement", at: prog.modelRange)
        }
        var train: TrainConfig? = nil
        if let entries = prog.train {
            let ctx = l.graph.dims.compactMap(\.bound).max()
            train = l.evaluateTrain(entries, context: ctx)
            if !entries.contains(where: { $0.name == "objective" }) {
                diags.error("the train section needs an objective, e.g. 'objective = next_token(logits)'", at: prog.trainRange)
            }
        }
        var weights: WeightSources? = nil
        if let section = prog.weights, !diags.hasErrors { weights = l.resolveWeights(section) }
        if diags.hasErrors { return nil }
        return (l.graph, train, weights)
    }

    // MARK: config and inputs

    func evaluateConfig(_ entries: [ConfigEntry], overrides: [(String, String)]) throws {
        var pending = Dictionary(overrides.map { ($0.0, $0.1) }, uniquingKeysWith: { _, b in b })
        for e in entries {
            if config[e.name] != nil { diags.error("config entry '\(e.name)' is defined twice", at: e.range); continue }
            var v: Value
            do { v = try eval(e.value) } catch { config[e.name] = .poison; configOrder.append(e.name); continue }
            switch v {
            case .int, .float: break
            default:
                diags.error("config entry '\(e.name)' must be a number", at: e.value.range)
                v = .poison
            }
            if let text = pending.removeValue(forKey: e.name) {
                if case .int = v {
                    guard let i = Int(text) else { throw OptionError(description: "--set \(e.name)=\(text): '\(e.name)' is an integer") }
                    v = .int(i)
                } else if case .float = v {
                    guard let d = Double(text), d.isFinite else { throw OptionError(description: "--set \(e.name)=\(text): '\(e.name)' is a number") }
                    v = .float(d)
                }
            }
            config[e.name] = v
            configOrder.append(e.name)
        }
        if let (k, _) = pending.first {
            let known = configOrder.isEmpty ? "the model has no config" : "known: " + configOrder.joined(separator: ", ")
            throw OptionError(description: "--set \(k): no config entry named '\(k)' (\(known))")
        }
    }

    func declareInput(_ d: InputDecl) {
        guard let dtype = DType(rawValue: d.type.dtype) else {
            diags.error("unknown dtype '\(d.type.dtype)' (expected one of \(DType.allCases.map(\.rawValue).joined(separator: ", ")))", at: d.type.dtypeRange)
            return
        }
        var dims: [Dim] = []
        for e in d.type.dims {
            if case .name(let n, _) = e, config[n] == nil, scopes[0].vars[n] == nil {
                if !graph.dims.contains(where: { $0.name == n }) { graph.dims.append(SymbolicDim(n)) }
                dims.append(.sym(n))
            } else if let v = try? eval(e), let n = try? positiveInt(v, e.range, "a dimension") {
                dims.append(.const(n))
            } else { return }
        }
        for (name, bound, r) in d.bounds {
            guard let i = graph.dims.firstIndex(where: { $0.name == name }) else {
                diags.error("'\(name)' is not a dimension of input '\(d.name)'", at: r); continue
            }
            guard let v = try? eval(bound), let b = try? positiveInt(v, bound.range, "a dimension bound") else { continue }
            graph.dims[i].bound = b
        }
        if scopes[0].vars[d.name] != nil { diags.error("'\(d.name)' is already defined", at: d.range); return }
        let node = graph.add(Node(.input, type: TensorType(dtype, dims), name: d.name, loc: d.range))
        scopes[0].vars[d.name] = .tensor(node)
    }

    // MARK: statements

    /// Runs one statement; returns the value of a `return`.
    @discardableResult
    func run(_ s: Statement, inBlock: Bool) -> Value? {
        switch s {
        case .assign(let name, let r, let e):
            if config[name] != nil { diags.error("'\(name)' is a config entry and cannot be assigned", at: r) }
            if Builtins.names.contains(name) || blocks[name] != nil { diags.error("'\(name)' is the name of a \(blocks[name] != nil ? "block" : "built-in") and cannot be assigned", at: r) }
            let v = (try? eval(e)) ?? .poison
            scopes[scopes.count - 1].vars[name] = v
        case .output(let name, let r, let e):
            guard let v = try? eval(e) else { return nil }
            guard case .tensor(let node) = v else {
                if case .poison = v { return nil }
                diags.error("output '\(name)' must be a tensor", at: e.range); return nil
            }
            if graph.outputs.contains(where: { $0.name == name }) { diags.error("output '\(name)' is defined twice", at: r); return nil }
            graph.outputs.append(GraphOutput(name: name, value: node))
        case .ret(let e, _):
            return (try? eval(e)) ?? .poison
        }
        return nil
    }

    // MARK: expressions

    func eval(_ e: Expr) throws -> Value {
        switch e {
        case .int(let v, _): return .int(v)
        case .float(let v, _): return .float(v)
        case .string(let v, _): return .text(v)
        case .name(let n, _):
            for s in scopes.reversed() {
                if let v = s.vars[n] { return v }
                if callStack.count > 0 { break }  // a block sees only its own names, config and dims
            }
            if let v = config[n] { return v }
            if graph.dims.contains(where: { $0.name == n }) { return .dim(.sym(n)) }
            return .word(n)
        case .unary(_, let x, let r):
            switch try eval(x) {
            case .int(let v):
                guard v != Int.min else { throw report("integer overflow", r) }
                return .int(-v)
            case .float(let v): return .float(-v)
            case .tensor(let t): return try emit(.scale, [t], ["factor": .float(-1)], r)
            case .poison: return .poison
            case let other: throw report("cannot negate \(describe(other))", r)
            }
        case .binary(let op, let a, let b, let r):
            return try binary(op, try eval(a), try eval(b), r, a.range, b.range)
        case .call(let name, let nr, let args, let r):
            return try call(name, nr, args, r)
        }
    }

    func binary(_ op: String, _ a: Value, _ b: Value, _ r: SourceRange, _ ra: SourceRange, _ rb: SourceRange) throws -> Value {
        if let kind = ComparisonOps.kind(of: op) { return try compare(kind, op, a, b, r, ra, rb) }
        switch (a, b) {
        case (.poison, _), (_, .poison): return .poison
        case (.int(let x), .int(let y)):
            let res: (Int, Bool)
            switch op {
            case "+": res = x.addingReportingOverflow(y)
            case "-": res = x.subtractingReportingOverflow(y)
            case "*": res = x.multipliedReportingOverflow(by: y)
            default:
                guard y != 0 else { throw report("division by zero", r) }
                if x % y == 0 { return .int(x / y) }
                return .float(Double(x) / Double(y))
            }
            if res.1 { throw report("integer overflow in '\(op)'", r) }
            return .int(res.0)
        case (.int, .float), (.float, .int), (.float, .float):
            let x = number(a)!, y = number(b)!
            let v: Double
            switch op {
            case "+": v = x + y
            case "-": v = x - y
            case "*": v = x * y
            default:
                guard y != 0 else { throw report("division by zero", r) }
                v = x / y
            }
            guard v.isFinite else { throw report("number overflow in '\(op)'", r) }
            return .float(v)
        case (.tensor(let x), .tensor(let y)):
            let kind: OpKind = ["+": .add, "-": .sub, "*": .mul, "/": .div][op]!
            return try emit(kind, [x, y], [:], r)
        case (.tensor(let x), .int), (.tensor(let x), .float):
            let y = number(b)!
            if op == "*" { return try emit(.scale, [x], ["factor": .float(y)], r) }
            if op == "/" {
                guard y != 0 else { throw report("division by zero", r) }
                return try emit(.scale, [x], ["factor": .float(1 / y)], r)
            }
            return try emit(op == "+" ? .add : .sub, [x, try constant(y, rb)], [:], r)
        case (.int, .tensor(let y)), (.float, .tensor(let y)):
            if op == "*" { return try emit(.scale, [y], ["factor": .float(number(a)!)], r) }
            let kind: OpKind = ["+": .add, "-": .sub, "/": .div][op]!
            return try emit(kind, [try constant(number(a)!, ra), y], [:], r)
        default:
            let bad = isOperand(a) ? (b, rb) : (a, ra)
            throw report("'\(op)' cannot take \(describe(bad.0))", bad.1)
        }
    }

    /// A number as a tensor of rank 0 (`scalar`), which broadcasts against any tensor.
    func constant(_ v: Double, _ r: SourceRange) throws -> Int {
        guard v.isFinite, abs(v) <= Double(Float.greatestFiniteMagnitude) else { throw report("the number \(v) is not a finite f32", r) }
        guard case .tensor(let t) = try emit(.scalar, [], ["value": .float(v)], r) else { throw Reported() }
        return t
    }

    /// `a < b`, `<=`, `>`, `>=`, `==`, `!=`: of numbers a number (1 or 0); with a tensor a mask of 1 and 0 (`lt`, …).
    func compare(_ kind: OpKind, _ op: String, _ a: Value, _ b: Value, _ r: SourceRange, _ ra: SourceRange, _ rb: SourceRange) throws -> Value {
        switch (a, b) {
        case (.poison, _), (_, .poison): return .poison
        case _ where number(a) != nil && number(b) != nil:
            let (x, y) = (number(a)!, number(b)!)
            let holds = ["<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y, "==": x == y, "!=": x != y][op]!
            return .int(holds ? 1 : 0)
        case (.tensor(let x), .tensor(let y)): return try emit(kind, [x, y], [:], r)
        case (.tensor(let x), _) where number(b) != nil: return try emit(kind, [x, try constant(number(b)!, rb)], [:], r)
        case (_, .tensor(let y)) where number(a) != nil: return try emit(kind, [try constant(number(a)!, ra), y], [:], r)
        default:
            let bad = isOperand(a) ? (b, rb) : (a, ra)
            throw report("'\(op)' cannot compare \(describe(bad.0))", bad.1)
        }
    }

    private func isOperand(_ v: Value) -> Bool {
        switch v { case .int, .float, .tensor: true; default: false }
    }

    func number(_ v: Value) -> Double? {
        switch v { case .int(let i): Double(i); case .float(let d): d; default: nil }
    }

    func describe(_ v: Value) -> String {
        switch v {
        case .int(let i): "the integer \(i)"
        case .float(let d): "the number \(d)"
        case .dim(let d): "the symbolic dimension \(d)"
        case .tensor(let t): "a tensor \(graph.nodes[t].type)"
        case .word(let w): blocks[w] != nil ? "the block '\(w)'" : Builtins.names.contains(w) ? "the built-in '\(w)'" : "unknown name '\(w)'"
        case .text(let t): "the text \"\(t)\""
        case .poison: "an invalid value"
        }
    }

    // MARK: helpers used by built-ins

    func report(_ message: String, _ r: SourceRange) -> Reported {
        diags.error(message, at: r)
        return Reported()
    }

    /// Emits a node after checking it with the op's type rule.
    func emit(_ kind: OpKind, _ operands: [Int], _ attrs: [String: AttrValue], _ r: SourceRange, order: [String] = []) throws -> Value {
        let keys = order.isEmpty ? attrs.keys.sorted() : order
        let a = Attributes(keys.compactMap { k in attrs[k].map { (k, $0) } })
        let types = operands.map { graph.nodes[$0].type }
        do {
            let t = try kind.inferType(types, a, bound: graph.bound(of:))
            return .tensor(try add(Node(kind, operands, attrs: a, type: t, loc: r), r))
        } catch let e as TypeError {
            throw report(e.message, r)
        }
    }

    func add(_ n: Node, _ r: SourceRange) throws -> Int {
        guard graph.nodes.count < Self.maxNodes else { throw report("the model is too large (more than \(Self.maxNodes) operations)", r) }
        return graph.add(n)
    }

    func positiveInt(_ v: Value, _ r: SourceRange, _ what: String) throws -> Int {
        switch v {
        case .int(let i):
            guard i > 0 else { throw report("\(what) must be positive, got \(i)", r) }
            guard i <= Self.maxDimension else { throw report("\(what) \(i) is too large (limit \(Self.maxDimension))", r) }
            return i
        case .float(let d) where d == d.rounded() && abs(d) < 1e15: return try positiveInt(.int(Int(d)), r, what)
        case .poison: throw Reported()
        default: throw report("\(what) must be an integer, got \(describe(v))", r)
        }
    }

    func tensor(_ v: Value, _ r: SourceRange, _ what: String) throws -> Int {
        switch v {
        case .tensor(let t): return t
        case .poison: throw Reported()
        default: throw report("\(what) must be a tensor, got \(describe(v))", r)
        }
    }

    func float(_ v: Value, _ r: SourceRange, _ what: String) throws -> Double {
        if case .poison = v { throw Reported() }
        guard let d = number(v) else { throw report("\(what) must be a number, got \(describe(v))", r) }
        return d
    }

    func bool(_ v: Value, _ r: SourceRange, _ what: String) throws -> Bool {
        if case .word("true") = v { return true }
        if case .word("false") = v { return false }
        if case .poison = v { throw Reported() }
        throw report("\(what) must be true or false, got \(describe(v))", r)
    }

    func word(_ v: Value, _ r: SourceRange, _ what: String, _ allowed: [String]) throws -> String {
        if case .word(let w) = v, allowed.contains(w) { return w }
        if case .poison = v { throw Reported() }
        throw report("\(what) must be one of \(allowed.joined(separator: ", ")), got \(describe(v))", r)
    }

    /// A dimension: a symbolic dim (with a bound) or a positive integer.
    func dimension(_ v: Value, _ r: SourceRange, _ what: String) throws -> Dim {
        if case .dim(let d) = v { return d }
        return .const(try positiveInt(v, r, what))
    }

    /// Evaluates a written type such as `f32[B, T, dim]`.
    func evalType(_ t: TypeExpr) throws -> TensorType {
        guard let dtype = DType(rawValue: t.dtype) else {
            throw report("unknown dtype '\(t.dtype)' (expected one of \(DType.allCases.map(\.rawValue).joined(separator: ", ")))", t.dtypeRange)
        }
        var dims: [Dim] = []
        for e in t.dims {
            let v = try eval(e)
            if case .word(let w) = v { throw report("unknown dimension '\(w)'", e.range) }
            dims.append(try dimension(v, e.range, "a dimension"))
        }
        return TensorType(dtype, dims)
    }

    // MARK: parameters and names

    /// Claims a unique name for a parameter-owning call in the current scope
    /// (`attention`, then `attention_1`, …, or the explicit `name:`), and
    /// returns the full prefix of its parameters (`layers.0.attention`).
    func owner(_ base: String, explicit: (String, SourceRange)?) throws -> String {
        var s = scopes[scopes.count - 1]
        var name = base
        if let (n, r) = explicit {
            guard !s.owners.contains(n) else { throw report("the name '\(n)' is already used in this \(callStack.isEmpty ? "model" : "block")", r) }
            name = n
        } else {
            var k = 1
            while s.owners.contains(name) { name = "\(base)_\(k)"; k += 1 }
        }
        s.owners.insert(name)
        scopes[scopes.count - 1] = s
        return s.prefix + name
    }

    enum Init { case zeros, ones, normal(Double) }

    func param(_ fullName: String, _ dims: [Dim], _ initKind: Init, _ r: SourceRange) throws -> Int {
        var count = 1
        for d in dims {
            let (p, o) = count.multipliedReportingOverflow(by: d.constValue ?? 1)
            guard !o, p <= (1 << 34) else { throw report("parameter '\(fullName)' of shape \(Shape(dims)) is too large", r) }
            count = p
        }
        if reuseParams, let p = paramNodes[fullName] {
            guard graph.nodes[p].type.shape.dims == dims else { throw report("the shared parameter '\(fullName)' changes shape: \(graph.nodes[p].type.shape) vs \(Shape(dims))", r) }
            return p
        }
        guard paramNames.insert(fullName).inserted else { throw report("parameter name '\(fullName)' is used twice", r) }
        var attrs = Attributes()
        switch initKind {
        case .zeros: attrs["init"] = .word("zeros")
        case .ones: attrs["init"] = .word("ones")
        case .normal(let std): attrs["init"] = .word("normal"); attrs["std"] = .float(std)
        }
        let p = try add(Node(.param, attrs: attrs, type: TensorType(.f32, dims), name: fullName, loc: r), r)
        paramNodes[fullName] = p
        return p
    }

    /// The dropout seed, an input `seed: i64[]` the first dropout adds (training steps take it; inference
    /// functions, without dropout, do not). Named `seed`, or `dropout_seed`, `dropout_seed_1`, … when the model
    /// declares an input of that name (the runtime finds it by its role, not its name).
    func seedInput() -> Int {
        if let s = graph.inputs.first(where: { graph.nodes[$0].attrs[Input.role].text == Input.Role.seed.rawValue }) { return s }
        let taken = Set(graph.inputs.compactMap { graph.nodes[$0].name })
        var name = "seed", k = 0
        while taken.contains(name) {
            name = k == 0 ? "dropout_seed" : "dropout_seed_\(k)"
            k += 1
        }
        var attrs = Attributes()
        attrs.set(Input.role, Word(Input.Role.seed.rawValue))
        return graph.add(Node(.input, attrs: attrs, type: TensorType(.i64, []), name: name))
    }

    /// When `node` is a model input, records what its values are (its role; for ids, the range they must lie
    /// in), which the runtime checks before each call. An input has one role.
    func markInput(_ node: Int, _ role: Input.Role, limit: Int? = nil, _ r: SourceRange) throws {
        guard graph.nodes[node].kind == .input else { return }
        let n = graph.nodes[node]
        let old = Input.Role(rawValue: n.attrs[Input.role].text) ?? .data
        guard old == .data || old == role else {
            throw report("input '\(n.name ?? "")' is used as \(role.rawValue) here but as \(old.rawValue) before", r)
        }
        graph.nodes[node].attrs.set(Input.role, Word(role.rawValue))
        if let limit { graph.nodes[node].attrs.set(Input.limit, min(limit, n.attrs.value(Input.limit) ?? limit)) }
    }

    func registerWeight(owner fullName: String, _ node: Int) {
        let short = String(fullName.dropFirst(scopes[scopes.count - 1].prefix.count))
        scopes[scopes.count - 1].ownerWeights[short] = node
    }
}
