import KilnBasics

/// The binary elementwise ops share their type rule: NumPy broadcasting of trailing dims.
public protocol BinaryElementwise: OpDefinition {
    /// The C operator (`+`).
    var symbol: String { get }
}

extension BinaryElementwise {
    public var arity: ClosedRange<Int> { 2...2 }
    public var attributes: [AttrSpec] { [] }
    public var summary: String { "two tensors, NumPy broadcasting → the broadcast shape: a \(symbol) b" }
    public var example: String {
        """
        graph G {
          dim B
          %a = input : f32[B, 4]
          %b = input : f32[4]
          %0 = \(name)(%a, %b) : f32[B, 4]
          output y = %0
        }
        """
    }
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        try broadcast(name, ops[0], ops[1])
    }
    public func flops(_ c: FlopContext) -> Int { c.out }
}

/// `add(%a, %b)` — a + b.
public struct Add: Op, BinaryElementwise {
    public init() {}
    public let name = "add", symbol = "+"
    public let traits: OpTraits = [.elementwise, .fusible, .commutative]
    public func differentiate(_ d: inout Differentiation) throws {
        let o = d.operands, g = d.gradient
        if d.wants(0) { d.give(0, d.sumTo(g, like: o[0])) }
        if d.wants(1) { d.give(1, d.sumTo(g, like: o[1])) }
    }
}

/// `sub(%a, %b)` — a − b.
public struct Sub: Op, BinaryElementwise {
    public init() {}
    public let name = "sub", symbol = "-"
    public let traits: OpTraits = [.elementwise, .fusible]
    public func differentiate(_ d: inout Differentiation) throws {
        let o = d.operands, g = d.gradient
        if d.wants(0) { d.give(0, d.sumTo(g, like: o[0])) }
        if d.wants(1) { d.give(1, d.sumTo(d.emit(.scale, [g], [("factor", .float(-1))]), like: o[1])) }
    }
}

/// `mul(%a, %b)` — a · b.
public struct Mul: Op, BinaryElementwise {
    public init() {}
    public let name = "mul", symbol = "*"
    public let traits: OpTraits = [.elementwise, .fusible, .commutative]
    public func differentiate(_ d: inout Differentiation) throws {
        let o = d.operands, g = d.gradient
        if d.wants(0) { d.give(0, d.sumTo(d.emit(.mul, [g, o[1]]), like: o[0])) }
        if d.wants(1) { d.give(1, d.sumTo(d.emit(.mul, [g, o[0]]), like: o[1])) }
    }
}

/// `div(%a, %b)` — a / b.
public struct Div: Op, BinaryElementwise {
    public init() {}
    public let name = "div", symbol = "/"
    public let traits: OpTraits = [.elementwise, .fusible]
    /// d(a/b)/da = 1/b; d(a/b)/db = −a/b².
    public func differentiate(_ d: inout Differentiation) throws {
        let o = d.operands, g = d.gradient
        if d.wants(0) { d.give(0, d.sumTo(d.emit(.div, [g, o[1]]), like: o[0])) }
        if d.wants(1) {
            let num = d.emit(.mul, [g, o[0]]), den = d.emit(.mul, [o[1], o[1]])
            d.give(1, d.sumTo(d.emit(.scale, [d.emit(.div, [num, den])], [("factor", .float(-1))]), like: o[1]))
        }
    }
}

/// `scale(%x) {factor}` — x · factor, a finite number of x's dtype.
public struct Scale: Op {
    public init() {}
    public static let factor = AttrKey<Double>("factor")
    public let name = "scale"
    public let summary = "x → x's type: x · factor (finite in x's dtype)"
    public let example = """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %0 = scale(%x) {factor: 0.5} : f32[B, 4]
          output y = %0
        }
        """
    public let arity = 1...1
    public var attributes: [AttrSpec] { [Self.factor.spec] }
    public let traits: OpTraits = [.elementwise, .fusible]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        try requireFloat(ops[0], "scale input")
        let f = attrs[Self.factor]
        guard f.isFinite, ops[0].dtype != .f32 || abs(f) <= Double(Float.greatestFiniteMagnitude) else {
            throw TypeError("scale factor \(f) is not a finite \(ops[0].dtype) number")
        }
        return ops[0]
    }
    public func differentiate(_ d: inout Differentiation) throws {
        if d.wants(0) { d.give(0, d.emit(.scale, [d.gradient], [("factor", d.node.attrs[Self.factor.name]!)])) }
    }
    public func flops(_ c: FlopContext) -> Int { c.out }
}

/// `sum_to(%dy, %like)` — dy summed over the dims that broadcasting added or stretched to reach it from
/// like's shape: the gradient of a broadcast operand.
public struct SumTo: Op {
    public init() {}
    public let name = "sum_to"
    public let summary = "dy, like → like's type: dy summed over the dims broadcast to reach it from like's shape"
    public let example = """
        graph G {
          dim B
          %dy = input : f32[B, 4]
          %b = param {init: zeros} : f32[4]
          %0 = sum_to(%dy, %b) : f32[4]
          output d = %0
        }
        """
    public let arity = 2...2
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (dy, like) = (ops[0], ops[1])
        guard let b = try? broadcast(name, dy, like), b == dy else { throw TypeError("sum_to: \(like.shape) does not broadcast to \(dy.shape)") }
        return TensorType(dy.dtype, like.shape)
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { c.count(0) }
}

extension OpKind {
    public static let add = OpKind("add")
    public static let sub = OpKind("sub")
    public static let mul = OpKind("mul")
    public static let div = OpKind("div")
    public static let scale = OpKind("scale")
    public static let sumTo = OpKind("sum_to")
}
