import KilnBasics

/// An einsum equation of two operands, `"bthd,bshd->bhts"`: one letter per axis, each at most once per operand,
/// and the output written out. Every index of an operand appears in the other operand or in the output (an
/// index of one operand alone would be a sum of that operand: `sum` it first), so that the einsum is one batched
/// matrix product. Its indices fall in four groups:
/// - batch: in both operands and the output;
/// - m: in the first operand and the output; n: in the second and the output;
/// - k: in both operands, not the output (summed).
public struct EinsumEquation: Sendable, Hashable, CustomStringConvertible {
    public let a: [Character], b: [Character], out: [Character]

    public init(_ text: String) throws {
        let t = Array(text.filter { $0 != " " })
        guard let arrow = t.indices.first(where: { t[$0] == "-" && $0 + 1 < t.count && t[$0 + 1] == ">" }) else {
            throw TypeError("einsum \"\(text)\": write the output after '->' (\"ij,jk->ik\")")
        }
        let ins = t[..<arrow].split(separator: ",", omittingEmptySubsequences: false)
        guard ins.count == 2 else { throw TypeError("einsum \"\(text)\": takes two operands, found \(ins.count)") }
        let parts: [[Character]] = [Array(ins[0]), Array(ins[1]), Array(t[(arrow + 2)...])]
        for (p, what) in zip(parts, ["the first operand", "the second operand", "the output"]) {
            guard p.allSatisfy({ $0.isASCII && $0.isLowercase }) else { throw TypeError("einsum \"\(text)\": \(what)'s indices must be letters a-z") }
            guard p.count <= 8 else { throw TypeError("einsum \"\(text)\": \(what) has more than 8 indices") }
            guard Set(p).count == p.count else { throw TypeError("einsum \"\(text)\": an index repeats in \(what) (diagonals are not supported)") }
        }
        (a, b, out) = (parts[0], parts[1], parts[2])
        for i in out where !a.contains(i) && !b.contains(i) { throw TypeError("einsum \"\(text)\": the output index \(i) is in neither operand") }
        for i in a where !b.contains(i) && !out.contains(i) { throw TypeError("einsum \"\(text)\": index \(i) is only in the first operand (sum it first)") }
        for i in b where !a.contains(i) && !out.contains(i) { throw TypeError("einsum \"\(text)\": index \(i) is only in the second operand (sum it first)") }
    }

    public var description: String { String(a) + "," + String(b) + "->" + String(out) }
    /// The four groups, batch / m / n in the output's order, k in the first operand's.
    public var batch: [Character] { out.filter { a.contains($0) && b.contains($0) } }
    public var m: [Character] { out.filter { a.contains($0) && !b.contains($0) } }
    public var n: [Character] { out.filter { b.contains($0) && !a.contains($0) } }
    public var k: [Character] { a.filter { b.contains($0) && !out.contains($0) } }
    /// The equation of the gradient for the first operand (dy and b → a) and for the second (a and dy → b).
    public var gradientForA: EinsumEquation { EinsumEquation(out, b, a) }
    public var gradientForB: EinsumEquation { EinsumEquation(a, out, b) }
    private init(_ a: [Character], _ b: [Character], _ out: [Character]) { self.a = a; self.b = b; self.out = out }

    /// Each index's size from the operands' types, checked to agree.
    public func sizes(_ x: TensorType, _ y: TensorType) throws -> [Character: Dim] {
        guard x.shape.rank == a.count else { throw TypeError("einsum \"\(self)\": the first operand has \(a.count) indices, its type \(x) \(x.shape.rank)") }
        guard y.shape.rank == b.count else { throw TypeError("einsum \"\(self)\": the second operand has \(b.count) indices, its type \(y) \(y.shape.rank)") }
        var s: [Character: Dim] = [:]
        for (i, d) in zip(a, x.shape.dims) { s[i] = d }
        for (i, d) in zip(b, y.shape.dims) {
            if let e = s[i], e != d { throw TypeError("einsum \"\(self)\": index \(i) is \(e) in the first operand and \(d) in the second") }
            s[i] = d
        }
        return s
    }
}

/// `einsum(%a, %b) {equation: "bthd,bshd->bhts"}` — Einstein summation of two operands (`EinsumEquation`): one
/// batched matrix product, its operands and result permuted as the equation says.
public struct Einsum: Op {
    public init() {}
    public static let equation = AttrKey<Text>("equation")
    public let name = "einsum"
    public let summary = "a, b → the output's indices: Einstein summation of two operands (`equation` \"ij,jk->ik\"; every index in two of the three), one batched matrix product"
    public let example = """
        graph G {
          dim B
          dim T <= 8
          %q = input : f32[B, T, 2, 4]
          %k = input : f32[B, T, 2, 4]
          %0 = einsum(%q, %k) {equation: "bthd,bshd->bhts"} : f32[B, 2, T, T]
          output y = %0
        }
        """
    public let arity = 2...2
    public var attributes: [AttrSpec] { [Self.equation.spec] }
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        try requireFloat(ops[0], "einsum's first operand")
        guard ops[0].dtype == ops[1].dtype else { throw TypeError("einsum: dtypes differ: \(ops[0]) and \(ops[1])") }
        let e = try EinsumEquation(attrs[Self.equation].text)
        let s = try e.sizes(ops[0], ops[1])
        return TensorType(ops[0].dtype, e.out.map { s[$0]! })
    }
    /// da = einsum(dy, b) and db = einsum(a, dy), with the equation's sides exchanged.
    public func differentiate(_ d: inout Differentiation) throws {
        let e = try EinsumEquation(d.node.attrs[Self.equation].text), (a, b, g) = (d.operands[0], d.operands[1], d.gradient)
        if d.wants(0) { d.give(0, d.emit(.einsum, [g, b], [(Self.equation.name, .string(e.gradientForA.description))])) }
        if d.wants(1) { d.give(1, d.emit(.einsum, [a, g], [(Self.equation.name, .string(e.gradientForB.description))])) }
    }
    /// One multiply–add per combination of all the indices.
    public func flops(_ c: FlopContext) -> Int {
        guard let e = try? EinsumEquation(c.node.attrs[Self.equation].text), let s = try? e.sizes(c.operands[0], c.operands[1]) else { return 0 }
        return 2 * s.values.reduce(1) { $0 * c.dim($1) }
    }
}

extension OpKind {
    public static let einsum = OpKind("einsum")
}
