import KilnBasics

/// `dropout(%x, %seed: i64[]) {p, id}` — zeroes each element with probability p and scales the rest by
/// 1/(1−p) (Srivastava et al. 2014). The mask is a hash of the step's seed (an input of the training step),
/// `id` and the element index, so the backward pass recomputes it. Inference graphs drop it (pass
/// `strip-dropout`).
public struct Dropout: Op {
    public init() {}
    public static let p = AttrKey<Double>("p")
    public static let id = AttrKey<Int>("id")
    public let name = "dropout"
    public let summary = "x, seed `i64[]` → x's type: zeroes each element with probability `p`, scales the rest by 1/(1−p) (Srivastava et al. 2014); the mask is a hash of (seed, `id`, index)"
    public let example = """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %seed = input {role: seed} : i64[]
          %0 = dropout(%x, %seed) {p: 0.1, id: 1} : f32[B, 4]
          output y = %0
        }
        """
    public let arity = 2...2
    public var attributes: [AttrSpec] { [Self.p.spec, Self.id.spec] }
    public let traits: OpTraits = [.elementwise]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        try requireFloat(ops[0], "dropout input")
        guard ops[1].dtype == .i64, ops[1].shape.rank == 0 else { throw TypeError("dropout's seed must be i64[], got \(ops[1])") }
        let p = attrs[Self.p]
        guard p >= 0 && p < 1 else { throw TypeError("dropout probability must be in [0, 1), got \(p)") }
        return ops[0]
    }
    /// The same mask applies to the gradient.
    public func differentiate(_ d: inout Differentiation) throws {
        if d.wants(0) { d.give(0, d.emit(.dropout, [d.gradient, d.operands[1]], d.node.attrs.entries)) }
    }
    public func flops(_ c: FlopContext) -> Int { c.out }
}

extension OpKind {
    public static let dropout = OpKind("dropout")
}
