import KilnBasics

/// The definition of one op of the IR: everything the compiler knows about it before code generation,
/// in one value. Each op's definition is a type in `Sources/KilnIR/Ops/` (one file per op or family of
/// ops) that conforms to `Op` (or, for a family such as the activations, an enum that conforms to
/// `OpFamily`); the build plugin `OpRegistry` finds those declarations there, so adding an op takes its
/// definition file, its C lowering (`Sources/KilnCodegenC/Ops/`) and its kernel (`runtime/kernels/`),
/// and no list to extend.
///
/// Every requirement has to be written for every op — there is no default — and a test walks the
/// registry and checks each op's example, type rule, derivative, FLOP count and lowering.
public protocol OpDefinition: Sendable {
    /// The op's name in the IR text (`layernorm`).
    var name: String { get }
    /// What it computes, from what, with the paper it comes from: `docs/ir.md`'s line for the op.
    var summary: String { get }
    /// An IR text that uses the op (a whole `graph`); it parses and verifies (tested).
    var example: String { get }
    /// How many operands it takes.
    var arity: ClosedRange<Int> { get }
    /// Its attributes, each typed, with its one default (or required).
    var attributes: [AttrSpec] { get }
    var traits: OpTraits { get }
    /// The type rule: the result type for these operand types and attributes, or a `TypeError` that names
    /// the dimensions. Arity, attribute kinds and an accumulated operand are checked before it is called.
    func inferType(_ operands: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType
    /// The vector–Jacobian product: given the gradient of the loss with respect to the node's result
    /// (`d.gradient`), the gradients with respect to the operands `d.wants(k)` (`d.give(k, value)`), built
    /// of IR ops. Ops of backward graphs throw `Differentiation.notDifferentiable` (no second derivatives).
    func differentiate(_ d: inout Differentiation) throws
    /// Floating-point operations of one node for the sizes in `c`: multiply–adds count 2; elementwise
    /// and normalisation ops count the arithmetic of their kernels' loop bodies (`kiln stats`).
    func flops(_ c: FlopContext) -> Int
}

/// An op definition the registry creates with `init()`: declare it `public struct NAME: Op` in a file of
/// `Sources/KilnIR/Ops/` and the `OpRegistry` build plugin registers it.
public protocol Op: OpDefinition {
    init()
}

/// Several ops defined by one table (the activations and their gradients): declare it
/// `public enum NAME: OpFamily` in a file of `Sources/KilnIR/Ops/` and the plugin registers its members.
public protocol OpFamily {
    static var members: [any OpDefinition] { get }
}

/// What passes ask of an op instead of switching over ops.
public struct OpTraits: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// A leaf with a declared type and an external name (`input`, `param`): printed `%name = op : type`.
    public static let leaf = OpTraits(rawValue: 1 << 0)
    /// Its value is not a function of its operands and attributes (CSE never merges two of them).
    public static let impure = OpTraits(rawValue: 1 << 1)
    /// `op(a, b) == op(b, a)`.
    public static let commutative = OpTraits(rawValue: 1 << 2)
    /// One output element from the same element of each operand (broadcast operands repeat).
    public static let elementwise = OpTraits(rawValue: 1 << 3)
    /// An op of the backward graph: it has no derivative of its own.
    public static let gradient = OpTraits(rawValue: 1 << 4)
    /// An op that only passes after autodiff create (`fused`, `linear_stack`, `select`): it has no derivative.
    public static let afterAutodiff = OpTraits(rawValue: 1 << 8)
    /// Writes memory that outlives the call (a `state`): dead-code elimination keeps it though nothing reads it.
    public static let effect = OpTraits(rawValue: 1 << 9)
    /// Row-wise over its first operand: each row of the result (all dims but the last) depends only on the same
    /// row of operand 0 and on operands that have no rows (weights); so taking one row commutes with the op.
    public static let rowwise = OpTraits(rawValue: 1 << 10)
    /// A normalisation: operand 1 is a gain, which optimisers do not decay.
    public static let normalization = OpTraits(rawValue: 1 << 11)
    /// Takes `{accumulate: true}` and one more operand of its result type, which it adds to its result
    /// (set by the `fuse-grad-acc` pass).
    public static let accumulates = OpTraits(rawValue: 1 << 5)
    /// May be part of a `fused` expression (pass `fuse-elementwise`).
    public static let fusible = OpTraits(rawValue: 1 << 6)
    /// The result is a part of operand 0's memory (`ViewDefinition` says where); no copy is made.
    public static let view = OpTraits(rawValue: 1 << 7)
}

/// An op that the model language offers as a built-in layer of the same name:
/// `NAME(x, ARG: value, …, name: OWNER)` creates the op's parameters under OWNER (by default the built-in's
/// name, numbered when taken: `rmsnorm`, `rmsnorm_1`) and applies the op to x and them. Its arguments are
/// attributes of the op, with the language's defaults; the op's type rule checks them.
public protocol LayerBuiltin: OpDefinition {
    /// The built-in's arguments after x, each an attribute of the op, with its default in the language.
    var layerArguments: [(name: String, defaultValue: AttrValue)] { get }
    /// The parameters the layer creates for an input of this type, in operand order after x.
    func layerParameters(_ x: TensorType) throws -> [LayerParameter]
}

/// A parameter a built-in layer creates: its name under the layer (`weight`), shape and initialisation.
public struct LayerParameter: Sendable {
    public enum Initialization: Sendable { case zeros, ones, normal(std: Double) }
    public var name: String
    public var dims: [Dim]
    public var initialization: Initialization
    public init(_ name: String, _ dims: [Dim], _ initialization: Initialization) {
        self.name = name; self.dims = dims; self.initialization = initialization
    }
}

/// An op whose result is a view of its first operand's memory.
public protocol ViewDefinition: OpDefinition {
    /// The element offset of the view in the operand.
    func viewOffset(_ n: Node) -> SizeExpr
}

/// An op of the IR, named as in the IR text (`OpKind.layernorm`, `OpKind("layernorm")`).
/// Its definition comes from the registry.
public struct OpKind: Hashable, Sendable, CustomStringConvertible {
    public let name: String
    public init(_ name: String) { self.name = name }
    /// The op of that name, if the registry has one.
    public init?(rawValue: String) {
        guard OpRegistry.byName[rawValue] != nil else { return nil }
        name = rawValue
    }
    public var rawValue: String { name }
    public var description: String { name }
    /// The definition (every `OpKind` in a graph is a registered op: the parser and verifier check it).
    public var definition: any OpDefinition {
        guard let d = OpRegistry.byName[name] else { preconditionFailure("unknown op '\(name)'") }
        return d
    }
    public var traits: OpTraits { definition.traits }

    // Traits, as the passes ask them.
    public var isPure: Bool { !traits.contains(.impure) }
    public var isCommutative: Bool { traits.contains(.commutative) }
    public var isGradientOp: Bool { traits.contains(.gradient) }
    /// Whether autodiff can differentiate the op (not a backward op, nor one made after autodiff).
    public var isDifferentiable: Bool { traits.isDisjoint(with: [.gradient, .afterAutodiff]) }
    public var acceptsAccumulate: Bool { traits.contains(.accumulates) }
    public var hasDeclaredType: Bool { traits.contains(.leaf) }
    public var arity: ClosedRange<Int> { definition.arity }
}

/// Every op of the IR, found by the `OpRegistry` build plugin in `Sources/KilnIR/Ops/`.
public enum OpRegistry {
    /// The ops, in the order of their files and declarations.
    public static var all: [any OpDefinition] { discovered }
    /// The ops by name.
    public static let byName: [String: any OpDefinition] = {
        var m: [String: any OpDefinition] = [:]
        for d in discovered {
            precondition(m[d.name] == nil, "two ops are named '\(d.name)'")
            m[d.name] = d
        }
        return m
    }()
}

/// A type error from a type rule, phrased for users (dims are named).
public struct TypeError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// What a type rule may ask about the graph: the upper bound of a dim (constants are their own bound).
public struct TypeEnvironment {
    public let bound: (Dim) -> Int?
    public init(bound: @escaping (Dim) -> Int?) { self.bound = bound }
}

/// The attribute shared by the ops that accumulate (`OpTraits.accumulates`).
public let accumulateKey = AttrKey<Bool>("accumulate", default: false)

extension OpKind {
    /// The full type check of a node: arity, attribute names and kinds, the accumulated operand of an
    /// accumulating op, then the op's own type rule.
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, bound: @escaping (Dim) -> Int?) throws -> TensorType {
        let def = definition
        guard def.arity.contains(ops.count) else {
            let a = def.arity
            throw TypeError("\(name) takes \(a.lowerBound == a.upperBound ? "\(a.lowerBound)" : "\(a.lowerBound) to \(a.upperBound)") operands, got \(ops.count)")
        }
        var specs = def.attributes
        if def.traits.contains(.accumulates) { specs.append(accumulateKey.spec) }
        for (k, v) in attrs.entries {
            guard let s = specs.first(where: { $0.name == k }) else { throw TypeError("\(name) has no attribute '\(k)'") }
            guard s.kind.accepts(v) else { throw TypeError("\(name): attribute '\(k)' must be \(s.kind), got \(v)") }
        }
        for s in specs where s.isRequired && attrs[s.name] == nil { throw TypeError("\(name) needs the attribute '\(s.name)'") }
        let env = TypeEnvironment(bound: bound)
        // An op with {accumulate: true} adds its last operand (a gradient of the result's type) to its result.
        if def.traits.contains(.accumulates) {
            let accumulate = attrs[accumulateKey], want = def.arity.upperBound - (accumulate ? 0 : 1)
            guard ops.count == want else {
                throw TypeError("\(name)\(accumulate ? " {accumulate: true}" : "") takes \(want) operands, got \(ops.count)")
            }
            guard accumulate else { return try def.inferType(ops, attrs, env) }
            var plain = attrs
            plain[accumulateKey.name] = nil
            let out = try def.inferType(Array(ops.dropLast()), plain, env)
            guard ops.last! == out else { throw TypeError("\(name): the accumulated gradient must have the result's type \(out), got \(ops.last!)") }
            return out
        }
        return try def.inferType(ops, attrs, env)
    }
}

// MARK: helpers of type rules

/// Throws unless t is a float tensor.
public func requireFloat(_ t: TensorType, _ what: String) throws {
    guard t.dtype.isFloat else { throw TypeError("\(what) must be a float tensor, got \(t)") }
}

/// Throws unless t is an integer tensor.
public func requireInteger(_ t: TensorType, _ what: String) throws {
    guard !t.dtype.isFloat else { throw TypeError("\(what) must be an integer tensor, got \(t)") }
}

/// NumPy broadcasting on trailing dims; equal dims or a constant 1 match.
public func broadcast(_ op: String, _ a: TensorType, _ b: TensorType) throws -> TensorType {
    guard a.dtype == b.dtype else { throw TypeError("\(op): dtypes differ: \(a) and \(b)") }
    let n = max(a.shape.rank, b.shape.rank)
    var out: [Dim] = []
    for i in 0..<n {
        let da = i < n - a.shape.rank ? nil : a.shape.dims[i - (n - a.shape.rank)]
        let db = i < n - b.shape.rank ? nil : b.shape.dims[i - (n - b.shape.rank)]
        switch (da, db) {
        case let (x?, y?) where x == y: out.append(x)
        case let (x?, .const(1)?): out.append(x)
        case let (.const(1)?, y?): out.append(y)
        case let (x?, nil): out.append(x)
        case let (nil, y?): out.append(y)
        default:
            throw TypeError("shapes \(a.shape) and \(b.shape) do not match: dim \(da!) vs \(db!)")
        }
    }
    return TensorType(a.dtype, out)
}

// MARK: FLOPs

/// The sizes a FLOP count is evaluated at: the node, its operands' types, and values of the symbolic dims.
public struct FlopContext {
    public let node: Node
    public let operands: [TensorType]
    public let env: [String: Int]
    public init(node: Node, operands: [TensorType], env: [String: Int]) { self.node = node; self.operands = operands; self.env = env }
    /// Elements of a tensor type.
    public func count(_ t: TensorType) -> Int { t.shape.elementCount.evaluate(env) }
    /// The value of a dim.
    public func dim(_ d: Dim) -> Int { d.constValue ?? env[d.description] ?? 1 }
    /// Elements of the result.
    public var out: Int { count(node.type) }
    /// Elements of operand k.
    public func count(_ k: Int) -> Int { count(operands[k]) }
    /// The add of an accumulated gradient (`fuse-grad-acc`): the add it replaced, once per element.
    public var accumulate: Int { node.attrs[accumulateKey] ? out : 0 }
}
