import KilnBasics

/// `fused(%x0 … %x{n-1}) {expr: "mul(add(x0, x1), relu(x2))"}` — a tree of elementwise ops (`FusedExpr`)
/// computed in one loop (pass `fuse-elementwise`). Every operand's shape is a suffix of the result's
/// (trailing broadcasting only).
public struct Fused: Op {
    public init() {}
    public static let expr = AttrKey<Text>("expr")
    public let name = "fused"
    public let summary = "x₀ … xₙ₋₁ (1 to 16, each used by the expression), each shape a suffix of the result's → the expression's type: a tree of the fusible ops (`add` `sub` `mul` `div`, the activations, `scale(e, factor)`), `expr: \"mul(add(x0, x1), relu(x2))\"`, computed in one loop (set by `fuse-elementwise`)"
    public let example = """
        graph G {
          dim B
          %a = input : f32[B, 4]
          %b = input : f32[4]
          %0 = fused(%a, %b) {expr: "mul(add(x0, x1), relu(x0))"} : f32[B, 4]
          output y = %0
        }
        """
    public let arity = 1...16
    public var attributes: [AttrSpec] { [Self.expr.spec] }
    public let traits: OpTraits = [.elementwise, .afterAutodiff]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let e = try FusedExpr.parse(attrs[Self.expr].text)
        let used = e.operandsUsed
        for k in ops.indices where !used.contains(k) { throw TypeError("fused: operand x\(k) is not used by its expr") }
        let out = try e.inferType(ops, bound: env.bound)
        for (k, t) in ops.enumerated() where Array(out.shape.dims.suffix(t.shape.rank)) != t.shape.dims || t.shape.rank > out.shape.rank {
            throw TypeError("fused: operand x\(k) \(t.shape) is not a suffix of the result's shape \(out.shape)")
        }
        return out
    }
    public func differentiate(_ d: inout Differentiation) throws {
        throw DifferentiationError("a fused op cannot be differentiated: fuse-elementwise runs after autodiff")
    }
    /// Each op of the expression, once per output element, as its own kernel counts.
    public func flops(_ c: FlopContext) -> Int {
        guard let e = try? c.node.fusedExpression() else { return 0 }
        return e.ops.reduce(0) { $0 + (Activation.named($1.name)?.flops ?? FusedExpr.gradientOf($1)?.gradFlops ?? 1) } * c.out
    }
}

extension OpKind {
    public static let fused = OpKind("fused")
}
