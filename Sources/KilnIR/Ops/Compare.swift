import KilnBasics

/// The comparisons of the primitive tier: `lt(%a, %b)`, `le`, `gt`, `ge`, `eq`, `ne` — 1 where the comparison
/// holds, else 0, as floats (a mask that multiplies, or the condition of `where`), with NumPy broadcasting.
public enum ComparisonOps: OpFamily {
    /// (op name, C operator, the language's operator).
    public static let table: [(name: String, symbol: String)] = [
        ("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">="), ("eq", "=="), ("ne", "!="),
    ]
    public static var members: [any OpDefinition] { table.map { Comparison(name: $0.name, symbol: $0.symbol) } }
    /// The op of a language operator (`<=` → `le`).
    public static func kind(of symbol: String) -> OpKind? { table.first { $0.symbol == symbol }.map { OpKind($0.name) } }
}

/// One comparison (`ComparisonOps`): a step function, so its gradient is 0 for both operands.
public struct Comparison: BinaryElementwise {
    public let name: String, symbol: String
    public var summary: String { "two tensors, NumPy broadcasting → the broadcast shape: 1 where a \(symbol) b, else 0" }
    public var traits: OpTraits { [.elementwise] }
    public func differentiate(_ d: inout Differentiation) throws {
        for k in 0..<2 where d.wants(k) { d.give(k, d.zeroGradient(k)) }
    }
}

/// `where(%c, %a, %b)` — a where c ≠ 0, else b; the three broadcast together (NumPy's `where`).
public struct Where: Op {
    public init() {}
    public let name = "where"
    public let summary = "c, a, b, NumPy broadcasting → the broadcast shape: a where c ≠ 0, else b (masking scores before a softmax)"
    public let example = """
        graph G {
          dim B
          %c = input : f32[4, 4]
          %a = input : f32[B, 4, 4]
          %b = scalar() {value: -1e9} : f32[]
          %0 = where(%c, %a, %b) : f32[B, 4, 4]
          output y = %0
        }
        """
    public let arity = 3...3
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = [.elementwise]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        try requireFloat(ops[0], "where's condition")
        return try broadcast(name, try broadcast(name, ops[0], ops[1]), ops[2])
    }
    /// The gradient goes to a where c ≠ 0 and to b elsewhere (`where_grad`), summed over broadcast dims; the
    /// condition gets 0.
    public func differentiate(_ d: inout Differentiation) throws {
        let (c, g) = (d.operands[0], d.gradient)
        if d.wants(0) { d.give(0, d.zeroGradient(0)) }
        for (k, keep) in [(1, true), (2, false)] where d.wants(k) {
            d.give(k, d.sumTo(d.emit(.whereGrad, [g, c], [(WhereGrad.keep.name, .bool(keep))]), like: d.operands[k]))
        }
    }
    public func flops(_ c: FlopContext) -> Int { c.out }
}

/// `where_grad(%dy, %c) {keep}` — dy where (c ≠ 0) is keep, else 0: the gradient of `where` for a (keep: true)
/// or b (keep: false).
public struct WhereGrad: Op {
    public init() {}
    public static let keep = AttrKey<Bool>("keep")
    public let name = "where_grad"
    public let summary = "dy, c (broadcast to dy) → dy's type: dy where (c ≠ 0) equals `keep`, else 0"
    public let example = """
        graph G {
          dim B
          %dy = input : f32[B, 4, 4]
          %c = input : f32[4, 4]
          %0 = where_grad(%dy, %c) {keep: true} : f32[B, 4, 4]
          output d = %0
        }
        """
    public let arity = 2...2
    public var attributes: [AttrSpec] { [Self.keep.spec] }
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        guard let b = try? broadcast(name, ops[0], ops[1]), b == ops[0] else {
            throw TypeError("where_grad: the condition \(ops[1].shape) does not broadcast to \(ops[0].shape)")
        }
        return ops[0]
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { c.out }
}

/// `pow(%x) {exponent: p}` — x to a constant power, elementwise.
public struct Pow: Op {
    public init() {}
    public static let exponent = AttrKey<Double>("exponent")
    public let name = "pow"
    public let summary = "x → x's type: x^exponent, elementwise (a constant, finite exponent)"
    public let example = """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %0 = pow(%x) {exponent: 3.0} : f32[B, 4]
          output y = %0
        }
        """
    public let arity = 1...1
    public var attributes: [AttrSpec] { [Self.exponent.spec] }
    public let traits: OpTraits = [.elementwise]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        try requireFloat(ops[0], "pow's input")
        guard attrs[Self.exponent].isFinite else { throw TypeError("pow: the exponent \(attrs[Self.exponent]) is not finite") }
        return ops[0]
    }
    /// dx = dy · p · x^(p−1) (for p = 1: dy; p = 0: 0).
    public func differentiate(_ d: inout Differentiation) throws {
        guard d.wants(0) else { return }
        let p = d.node.attrs[Self.exponent]
        if p == 0 { d.give(0, d.zeroGradient(0)); return }
        if p == 1 { d.give(0, d.gradient); return }
        let slope = p == 2 ? d.operands[0] : d.emit(.pow, [d.operands[0]], [(Self.exponent.name, .float(p - 1))])
        d.give(0, d.emit(.scale, [d.emit(.mul, [d.gradient, slope])], [(Scale.factor.name, .float(p))]))
    }
    /// pow from exp and log: about 20.
    public func flops(_ c: FlopContext) -> Int { 20 * c.out }
}

/// `range() {length: n} -> f32[n]` — 0, 1, …, n − 1 (positions, for masks and biases written by hand).
public struct IndexRange: Op {
    public init() {}
    public static let length = AttrKey<Dim>("length")
    public let name = "range"
    public let summary = "→ `f32[length]`: 0, 1, …, length − 1 (positions for masks and biases written from primitives)"
    public let example = """
        graph G {
          dim T <= 8
          %0 = range() {length: T} : f32[T]
          output y = %0
        }
        """
    public let arity = 0...0
    public var attributes: [AttrSpec] { [Self.length.spec] }
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let n = attrs[Self.length]
        if case .const(let v) = n, v < 1 { throw TypeError("range: the length \(v) is not positive") }
        return TensorType(.f32, [n])
    }
    public func differentiate(_ d: inout Differentiation) throws {}
    public func flops(_ c: FlopContext) -> Int { 0 }
}

extension OpKind {
    public static let `where` = OpKind("where")
    public static let whereGrad = OpKind("where_grad")
    public static let pow = OpKind("pow")
    public static let range = OpKind("range")
}
