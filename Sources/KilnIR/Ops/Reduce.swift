import KilnBasics

/// The reductions of the primitive tier over the last axis, which they keep as 1 (`[..., C]` → `[..., 1]`), so the
/// result broadcasts back against its input (`x - max(x)`, `e / sum(e)`).
public enum Reduction {
    public static let op = AttrKey<Word>("op", words: ["sum", "mean", "max", "logsumexp"])
}

/// `reduce(%x) {op: sum | mean | max | logsumexp}` — a reduction over the last axis, kept as a dim of 1.
public struct Reduce: Op {
    public init() {}
    public let name = "reduce"
    public let summary = "x `[..., C]` → `[..., 1]`: the sum, mean, maximum or logsumexp (log Σ eˣ, computed from the maximum) over the last axis (`op`)"
    public let example = """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %0 = reduce(%x) {op: logsumexp} : f32[B, 1]
          output y = %0
        }
        """
    public let arity = 1...1
    public var attributes: [AttrSpec] { [Reduction.op.spec] }
    public let traits: OpTraits = [.rowwise]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        try requireFloat(ops[0], "reduce's input")
        guard ops[0].shape.rank >= 1 else { throw TypeError("reduce needs a tensor with a last axis, got \(ops[0])") }
        return TensorType(ops[0].dtype, Array(ops[0].shape.dims.dropLast()) + [.const(1)])
    }
    /// sum: dy to every element; mean: dy / C; max: dy to the first maximum; logsumexp: dy · softmax(x).
    public func differentiate(_ d: inout Differentiation) throws {
        if d.wants(0) { d.give(0, d.emit(.reduceGrad, [d.gradient, d.operands[0]], d.node.attrs.entries)) }
    }
    /// One per element (logsumexp: the maximum, the exponential and the sum, about 6).
    public func flops(_ c: FlopContext) -> Int { (c.node.attrs[Reduction.op] == "logsumexp" ? 6 : 1) * c.count(0) }
}

/// `reduce_grad(%dy: [..., 1], %x) {op}` — the gradient of `reduce` for x.
public struct ReduceGrad: Op {
    public init() {}
    public let name = "reduce_grad"
    public let summary = "dy `[..., 1]`, x `[..., C]` → x's type: the gradient of `reduce` (sum: dy; mean: dy / C; max: dy at the first maximum; logsumexp: dy · softmax(x))"
    public let example = """
        graph G {
          dim B
          %dy = input : f32[B, 1]
          %x = input : f32[B, 4]
          %0 = reduce_grad(%dy, %x) {op: max} : f32[B, 4]
          output d = %0
        }
        """
    public let arity = 2...2
    public var attributes: [AttrSpec] { [Reduction.op.spec] }
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let y = try Reduce().inferType([ops[1]], attrs, env)
        guard ops[0] == y else { throw TypeError("reduce_grad: dy \(ops[0]) does not match \(y)") }
        return ops[1]
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { (c.node.attrs[Reduction.op] == "logsumexp" ? 7 : 1) * c.out }
}

extension OpKind {
    public static let reduce = OpKind("reduce")
    public static let reduceGrad = OpKind("reduce_grad")
}
