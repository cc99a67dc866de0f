import KilnBasics

/// `softmax(%x)` over the last axis.
public struct Softmax: Op {
    public init() {}
    public let name = "softmax"
    public let summary = "x → x's type: softmax over the last axis"
    public let example = """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %0 = softmax(%x) : f32[B, 4]
          output y = %0
        }
        """
    public let arity = 1...1
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = [.rowwise]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        try requireFloat(ops[0], "softmax input")
        return ops[0]
    }
    /// The gradient reads the softmax's own output.
    public func differentiate(_ d: inout Differentiation) throws {
        if d.wants(0) { d.give(0, d.emit(.softmaxGrad, [d.gradient, d.index])) }
    }
    public func flops(_ c: FlopContext) -> Int { 5 * c.out }
}

/// `softmax_grad(%dy, %y)` — y ⊙ (dy − Σ dy⊙y) per row, with y the softmax output.
public struct SoftmaxGrad: Op {
    public init() {}
    public let name = "softmax_grad"
    public let summary = "dy, y (the softmax output) → y's type: y ⊙ (dy − Σ dy ⊙ y)"
    public let example = """
        graph G {
          dim B
          %dy = input : f32[B, 4]
          %y = input : f32[B, 4]
          %0 = softmax_grad(%dy, %y) : f32[B, 4]
          output d = %0
        }
        """
    public let arity = 2...2
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        guard ops[0] == ops[1] else { throw TypeError("softmax_grad: \(ops[0]) and \(ops[1]) differ") }
        return ops[0]
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { 5 * c.out }
}

extension OpKind {
    public static let softmax = OpKind("softmax")
    public static let softmaxGrad = OpKind("softmax_grad")
}
