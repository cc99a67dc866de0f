import KilnBasics

/// `%tokens = input {role: tokens, limit: 256} : i32[B, T]` — a tensor the caller passes to the function.
/// Its role says what the runtime checks of the values before a call: token ids and targets lie in
/// [0, limit) (targets may also be the `ignore` id), a mask holds 0 and 1, positions lie in [0, limit).
public struct Input: Op {
    public init() {}
    /// What the values are: `data` (anything), `tokens` (ids of an embedding), `mask` (1 = token, 0 =
    /// padding), `targets` (class ids a loss reads), `positions` (of the tokens a decode step writes),
    /// `seed` (the dropout seed of a training step).
    public static let role = AttrKey<Word>("role", default: "data", words: Role.allCases.map(\.rawValue))
    /// Integer values lie in [0, limit).
    public static let limit = AttrKey<Int>("limit", optional: true)
    /// A targets value outside [0, limit) that the loss skips (a padding label).
    public static let ignore = AttrKey<Int>("ignore", optional: true)

    public enum Role: String, CaseIterable, Sendable { case data, tokens, mask, targets, positions, seed }

    public let name = "input"
    public let summary = "→ its declared type: a tensor the caller passes in; `role` (`data`, `tokens`, `mask`, `targets`, `positions`, `seed`), `limit` and `ignore` say which values the runtime accepts"
    public let example = """
        graph G {
          dim B
          dim T <= 8
          %tokens = input {role: tokens, limit: 11} : i32[B, T]
          %x = input : f32[B, 4]
          output y = %x
        }
        """
    public let arity = 0...0
    public var attributes: [AttrSpec] { [Self.role.spec, Self.limit.spec, Self.ignore.spec] }
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

/// `%kv.0.k = state : f32[R, 256, 384]` — memory that persists from one call of a function to the next
/// (a KV cache), owned by the caller's context. Its first dim counts the rows the context holds.
public struct State: Op {
    public init() {}
    public let name = "state"
    public let summary = "→ its declared float type: memory kept from one call to the next (a KV cache), first dim the rows of the context"
    public let example = """
        graph G {
          dim R
          %kv.0.k = state : f32[R, 8, 4]
          output y = %kv.0.k
        }
        """
    public let arity = 0...0
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = [.leaf, .impure]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        throw TypeError("state has a declared type")
    }
    public func differentiate(_ d: inout Differentiation) throws {}
    public func flops(_ c: FlopContext) -> Int { 0 }
}

extension OpKind {
    public static let state = OpKind("state")
    public static let input = OpKind("input")
    public static let param = OpKind("param")
    public static let scalar = OpKind("scalar")
}
