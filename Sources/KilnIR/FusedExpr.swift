import KilnBasics

/// The body of a `fused` op (pass `fuse-elementwise`): a tree of elementwise
/// ops over the op's operands `x0 … xn-1`, written in the ops' own names,
/// e.g. `mul(add(x0, x1), relu(x2))` or `scale(x0, 0.5)`. Its text is the
/// op's `expr` attribute, and parses back to the same tree.
public indirect enum FusedExpr: Sendable, Hashable, CustomStringConvertible {
    case operand(Int)
    /// An activation of the table (`relu`, `gelu`, …) of one subexpression.
    case unary(OpKind, FusedExpr)
    /// `add`, `sub`, `mul` or `div` of two subexpressions, or an activation's gradient `NAME_grad(dy, x)`.
    case binary(OpKind, FusedExpr, FusedExpr)
    /// `scale(e, factor)`: e · factor.
    case scale(FusedExpr, Double)

    /// The op kinds a fused expression may contain.
    public static let unaryKinds: [OpKind] = Activation.all.map(\.kind)
    public static let binaryKinds: [OpKind] = [.add, .sub, .mul, .div] + Activation.all.map(\.gradKind)
    /// The activation whose gradient op (`silu_grad`) this is, if it is one.
    public static func gradientOf(_ k: OpKind) -> Activation? { Activation.all.first { $0.gradKind == k } }
    public static func canFuse(_ k: OpKind) -> Bool { unaryKinds.contains(k) || binaryKinds.contains(k) || k == .scale }
    /// The deepest nesting of ops the text may have (the parser's limit).
    public static let maxDepth = 64

    /// The nesting depth of ops (an operand alone is 0).
    public var depth: Int {
        switch self {
        case .operand: return 0
        case .unary(_, let a), .scale(let a, _): return 1 + a.depth
        case .binary(_, let a, let b): return 1 + max(a.depth, b.depth)
        }
    }

    public var description: String {
        switch self {
        case .operand(let i): return "x\(i)"
        case .unary(let k, let a): return "\(k.rawValue)(\(a))"
        case .binary(let k, let a, let b): return "\(k.rawValue)(\(a), \(b))"
        case .scale(let a, let f): return "scale(\(a), \(AttrValue.float(f)))"
        }
    }

    /// The ops of the tree in prefix order (root first).
    public var ops: [OpKind] {
        switch self {
        case .operand: return []
        case .unary(let k, let a): return [k] + a.ops
        case .binary(let k, let a, let b): return [k] + a.ops + b.ops
        case .scale(let a, _): return [.scale] + a.ops
        }
    }

    /// The operand indices the tree reads.
    public var operandsUsed: Set<Int> {
        switch self {
        case .operand(let i): return [i]
        case .unary(_, let a), .scale(let a, _): return a.operandsUsed
        case .binary(_, let a, let b): return a.operandsUsed.union(b.operandsUsed)
        }
    }

    /// The result type for operands of the given types: each op's own type rule, applied bottom-up.
    public func inferType(_ operands: [TensorType], bound: @escaping (Dim) -> Int?) throws -> TensorType {
        switch self {
        case .operand(let i):
            guard i < operands.count else { throw TypeError("fused: x\(i) is not an operand (the op has \(operands.count))") }
            return operands[i]
        case .unary(let k, let a):
            return try k.inferType([try a.inferType(operands, bound: bound)], Attributes(), bound: bound)
        case .binary(let k, let a, let b):
            return try k.inferType([try a.inferType(operands, bound: bound), try b.inferType(operands, bound: bound)], Attributes(), bound: bound)
        case .scale(let a, let f):
            return try OpKind.scale.inferType([try a.inferType(operands, bound: bound)], Attributes([(Scale.factor.name, .float(f))]), bound: bound)
        }
    }

    /// Parses the text form; errors are `TypeError`s naming the position.
    public static func parse(_ text: String) throws -> FusedExpr {
        var p = Parser(s: Array(text.utf8))
        let e = try p.expr(depth: 0)
        p.skipSpace()
        guard p.i == p.s.count else { throw p.fail("unexpected text") }
        return e
    }

    private struct Parser {
        let s: [UInt8]
        var i = 0

        func fail(_ m: String) -> TypeError { TypeError("fused: bad expr \"\(String(decoding: s, as: UTF8.self))\" at character \(i + 1): \(m)") }
        mutating func skipSpace() { while i < s.count, s[i] == 32 { i += 1 } }
        mutating func word() -> String {
            skipSpace()
            let start = i
            while i < s.count, (s[i] >= 97 && s[i] <= 122) || (s[i] >= 48 && s[i] <= 57) || s[i] == 95 { i += 1 }
            return String(decoding: s[start..<i], as: UTF8.self)
        }
        mutating func punct(_ c: UInt8) throws {
            skipSpace()
            guard i < s.count, s[i] == c else { throw fail("expected '\(Character(UnicodeScalar(c)))'") }
            i += 1
        }
        mutating func expr(depth: Int) throws -> FusedExpr {
            let w = word()
            if w.first == "x", let n = Int(w.dropFirst()), n >= 0, n < 1 << 16 { return .operand(n) }
            guard depth < FusedExpr.maxDepth else { throw fail("ops nested more than \(FusedExpr.maxDepth) deep") }
            guard let k = OpKind(rawValue: w), FusedExpr.canFuse(k) else {
                throw fail(w.isEmpty ? "expected an operand or an op" : "'\(w)' is not an operand x0, x1, … or an elementwise op")
            }
            try punct(40)
            let a = try expr(depth: depth + 1)
            if k == .scale {
                try punct(44)
                skipSpace()
                let start = i
                while i < s.count, (s[i] >= 48 && s[i] <= 57) || [45, 43, 46, 101, 69].contains(s[i]) { i += 1 }
                guard let f = Double(String(decoding: s[start..<i], as: UTF8.self)), f.isFinite else { throw fail("expected a finite factor") }
                try punct(41)
                return .scale(a, f)
            }
            if FusedExpr.unaryKinds.contains(k) {
                try punct(41)
                return .unary(k, a)
            }
            try punct(44)
            let b = try expr(depth: depth + 1)
            try punct(41)
            return .binary(k, a, b)
        }
    }
}

extension Node {
    /// The expression of a `fused` op, from its `expr` attribute (the verifier has checked it parses).
    public func fusedExpression() throws -> FusedExpr { try FusedExpr.parse(attrs.string("expr") ?? "") }
}
