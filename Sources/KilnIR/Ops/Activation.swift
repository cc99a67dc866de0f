import KilnBasics

/// One row of the activation table. The C side of the table is `runtime/kernels/activations.h`
/// (`kiln_act_NAME` and `kiln_act_NAME_grad`); each row here makes two ops, `NAME` and `NAME_grad`,
/// which the plain kernels, the fused elementwise kernels and the GEMM epilogue all compute with those
/// two functions. Adding an activation: a row here and its two functions there.
public struct Activation: Sendable, Hashable {
    /// The op's name in the IR and in the language, and the C functions' suffix.
    public let name: String
    /// What it computes, with its paper.
    public let formula: String
    /// FLOPs per element of the value and of the gradient (the arithmetic of the C functions' bodies).
    public let flops: Int
    public let gradFlops: Int
    /// The name of its gated linear unit in `ffn` (Shazeer 2020: `swiglu` for silu, `geglu`, `reglu`, and
    /// Dauphin et al. 2017's `glu` for sigmoid), if the language offers one: down(act(gate(x)) · up(x)).
    public var gated: String? = nil
    /// False for the elementwise math functions of the primitive tier (`exp`, `log`, …): built-ins, fused and
    /// differentiated like the activations, but not offered as `ffn` activations.
    public var isActivation = true

    /// The table, in the order of `KILN_ACTIVATIONS` in activations.h.
    public static let all: [Activation] = [
        Activation(name: "relu", formula: "max(x, 0) (Nair & Hinton 2010)", flops: 1, gradFlops: 1, gated: "reglu"),
        Activation(name: "gelu", formula: "x·Φ(x), with erf (Hendrycks & Gimpel 2016)", flops: 10, gradFlops: 10, gated: "geglu"),
        Activation(name: "gelu_tanh", formula: "x/2·(1 + tanh(√(2/π)(x + 0.044715x³))), GELU's approximation in GPT-2", flops: 10, gradFlops: 10),
        Activation(name: "silu", formula: "x·σ(x), Swish (Ramachandran et al. 2017) or SiLU (Elfwing et al. 2018)", flops: 5,
                   gradFlops: 8, gated: "swiglu"),
        Activation(name: "sigmoid", formula: "σ(x) = 1/(1 + e^−x); its GLU is Dauphin et al. 2017's", flops: 4, gradFlops: 7, gated: "glu"),
        Activation(name: "elu", formula: "x if x > 0, else e^x − 1 (Clevert et al. 2016, α = 1)", flops: 2, gradFlops: 2),
        Activation(name: "selu", formula: "λ·(x if x > 0, else α(e^x − 1)), λ ≈ 1.0507, α ≈ 1.6733 (Klambauer et al. 2017)", flops: 4, gradFlops: 3),
        Activation(name: "softplus", formula: "log(1 + e^x), computed as max(x, 0) + log(1 + e^−|x|) (Dugas et al. 2001)", flops: 6, gradFlops: 5),
        // the elementwise math of the primitive tier, with libm's values (inf, NaN and all)
        Activation(name: "exp", formula: "e^x", flops: 4, gradFlops: 5, isActivation: false),
        Activation(name: "log", formula: "the natural logarithm (−inf at 0, NaN below)", flops: 4, gradFlops: 1, isActivation: false),
        Activation(name: "sqrt", formula: "√x", flops: 1, gradFlops: 3, isActivation: false),
        Activation(name: "rsqrt", formula: "1/√x", flops: 2, gradFlops: 5, isActivation: false),
        Activation(name: "tanh", formula: "the hyperbolic tangent", flops: 4, gradFlops: 7, isActivation: false),
    ]

    /// The names of the rows that are activations (`ffn`'s and `moe`'s), without the elementwise math.
    public static let activationNames = all.filter(\.isActivation).map(\.name)

    public static func named(_ name: String) -> Activation? { all.first { $0.name == name } }
    /// The activation whose gated linear unit is this (`swiglu` → silu).
    public static func gated(_ name: String) -> Activation? { all.first { $0.gated == name } }
    public var kind: OpKind { OpKind(name) }
    public var gradKind: OpKind { OpKind(name + "_grad") }
}

/// The ops of the activation table: `NAME(%x)` and its gradient `NAME_grad(%dy, %x)`.
public enum ActivationOps: OpFamily {
    public static var members: [any OpDefinition] {
        Activation.all.flatMap { a -> [any OpDefinition] in [ActivationOp(a), ActivationGradOp(a)] }
    }
}

/// `relu(%x)`, `gelu(%x)`, … — an activation of the table, elementwise.
public struct ActivationOp: OpDefinition {
    public let activation: Activation
    public init(_ a: Activation) { activation = a }
    public var name: String { activation.name }
    public var summary: String { "x → x's type: \(activation.formula), elementwise" }
    public var example: String {
        """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %0 = \(name)(%x) : f32[B, 4]
          output y = %0
        }
        """
    }
    public var arity: ClosedRange<Int> { 1...1 }
    public var attributes: [AttrSpec] { [] }
    public var traits: OpTraits { [.elementwise, .fusible] }
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        try requireFloat(ops[0], "\(name) input")
        return ops[0]
    }
    /// dx = dy · act'(x): the gradient op reads the activation's input.
    public func differentiate(_ d: inout Differentiation) throws {
        if d.wants(0) { d.give(0, d.emit(activation.gradKind, [d.gradient, d.operands[0]])) }
    }
    public func flops(_ c: FlopContext) -> Int { activation.flops * c.out }
}

/// `relu_grad(%dy, %x)`, … — dy · act'(x), the gradient of an activation.
public struct ActivationGradOp: OpDefinition {
    public let activation: Activation
    public init(_ a: Activation) { activation = a }
    public var name: String { activation.name + "_grad" }
    public var summary: String { "dy, x → x's type: dy · \(activation.name)'(x)" }
    public var example: String {
        """
        graph G {
          dim B
          %dy = input : f32[B, 4]
          %x = input : f32[B, 4]
          %0 = \(name)(%dy, %x) : f32[B, 4]
          output d = %0
        }
        """
    }
    public var arity: ClosedRange<Int> { 2...2 }
    public var attributes: [AttrSpec] { [] }
    public var traits: OpTraits { [.gradient] }
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        guard ops[0] == ops[1] else { throw TypeError("\(name): \(ops[0]) and \(ops[1]) differ") }
        return ops[0]
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { activation.gradFlops * c.out }
}

extension OpKind {
    public static let relu = OpKind("relu")
    public static let gelu = OpKind("gelu")
    public static let geluTanh = OpKind("gelu_tanh")
    public static let reluGrad = OpKind("relu_grad")
    public static let geluGrad = OpKind("gelu_grad")
    public static let geluTanhGrad = OpKind("gelu_tanh_grad")
}
