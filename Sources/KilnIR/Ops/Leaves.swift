import KilnBasics

/// `%tokens = input : i32[B, T]` — a tensor the caller passes to the function.
public struct Input: Op {
    public init() {}
    public let name = "input"
    public let summary = "→ its declared type: a tensor the caller passes in"
    public let example = """
        graph G {
          dim B
          %x = input : f32[B, 4]
          output y = %x
        }
        """
    public let arity = 0...0
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = [.leaf, .impure]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        throw TypeError("input has a declared type")
    }
    public func differentiate(_ d: inout Differentiation) throws {}
    public func flops(_ c: FlopContext) -> Int { 0 }
}

/// `%embed.weight = param {init: normal, std: 0.02} : f32[V, C]` — a trained weight, by its name in the
/// weights file, with how it is initialised.
public struct Param: Op {
    public init() {}
    public static let initKind = AttrKey<Word>("init", words: ["normal", "zeros", "ones"])
    /// The standard deviation of `init: normal`.
    public static let std = AttrKey<Double>("std", default: 0.02)
    public let name = "param"
    public let summary = "→ its declared float type: a trained weight, initialised `normal` (N(0, std²)), `zeros` or `ones`"
    public let example = """
        graph G {
          %w = param {init: normal, std: 0.02} : f32[3, 4]
          output w = %w
        }
        """
    public let arity = 0...0
    public var attributes: [AttrSpec] { [Self.initKind.spec, Self.std.spec] }
    public let traits: OpTraits = [.leaf, .impure]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        throw TypeError("param has a declared type")
    }
    public func differentiate(_ d: inout Differentiation) throws {}
    public func flops(_ c: FlopContext) -> Int { 0 }
}

/// `scalar() {value: 1.0} -> f32[]` — a constant (the seed 1 of the backward pass).
public struct Scalar: Op {
    public init() {}
    public static let value = AttrKey<Double>("value")
    public let name = "scalar"
    public let summary = "→ `f32[]`: the constant `value` (the seed of the backward pass)"
    public let example = """
        graph G {
          %0 = scalar() {value: 1.0} : f32[]
          output one = %0
        }
        """
    public let arity = 0...0
    public var attributes: [AttrSpec] { [Self.value.spec] }
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        TensorType(.f32, [])
    }
    public func differentiate(_ d: inout Differentiation) throws {}
    public func flops(_ c: FlopContext) -> Int { 0 }
}

extension OpKind {
    public static let input = OpKind("input")
    public static let param = OpKind("param")
    public static let scalar = OpKind("scalar")
}
