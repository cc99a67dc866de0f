import KilnBasics

/// The syntax tree of a `.kiln` file, as written (no names resolved yet).
public indirect enum Expr: Sendable {
    case int(Int, SourceRange)
    case float(Double, SourceRange)
    /// A quoted text (an einsum equation).
    case string(String, SourceRange)
    case name(String, SourceRange)
    case unary(String, Expr, SourceRange)
    case binary(String, Expr, Expr, SourceRange)
    case call(String, SourceRange, [Argument], SourceRange)

    public var range: SourceRange {
        switch self {
        case .int(_, let r), .float(_, let r), .string(_, let r), .name(_, let r), .unary(_, _, let r), .binary(_, _, _, let r), .call(_, _, _, let r): r
        }
    }
}

/// A call argument: positional (`x`) or named (`heads: 6`).
public struct Argument: Sendable {
    public var label: String?
    public var labelRange: SourceRange
    public var value: Expr
}

/// `f32[B, T, dim]`: a dtype and dimension expressions.
public struct TypeExpr: Sendable {
    public var dtype: String
    public var dtypeRange: SourceRange
    public var dims: [Expr]
    public var range: SourceRange
}

public enum Statement: Sendable {
    /// `x = expr`
    case assign(String, SourceRange, Expr)
    /// `return expr` (blocks only)
    case ret(Expr, SourceRange)
    /// `output logits = expr` (top level only)
    case output(String, SourceRange, Expr)
}

public struct ConfigEntry: Sendable {
    public var name: String
    public var range: SourceRange
    public var value: Expr
}

public struct InputDecl: Sendable {
    public var name: String
    public var range: SourceRange
    public var type: TypeExpr
    /// `where T <= context`: dim name, bound expression, range.
    public var bounds: [(String, Expr, SourceRange)]
}

public struct BlockParam: Sendable {
    public var name: String
    public var range: SourceRange
    public var type: TypeExpr
}

public struct BlockDecl: Sendable {
    public var name: String
    public var range: SourceRange
    public var params: [BlockParam]
    public var result: TypeExpr
    public var body: [Statement]
}

public struct Program: Sendable {
    public var modelName: String = "Model"
    public var modelRange = SourceRange.none
    public var config: [ConfigEntry] = []
    public var inputs: [InputDecl] = []
    public var blocks: [BlockDecl] = []
    public var statements: [Statement] = []
    /// The `weights { … }` section, if any: where each parameter comes from in another library's checkpoint.
    public var weights: WeightsSection? = nil
    /// The `train { … }` section, if any.
    public var train: [ConfigEntry]? = nil
    public var trainRange = SourceRange.none
}

/// Where a parameter is read from in a checkpoint with other names (`weights { … }`, docs/language.md):
/// a tensor of the file, optionally a slice of it along one axis, optionally transposed.
public indirect enum WeightSourceExpr: Sendable {
    /// `"h.*.attn.c_attn.weight"`
    case tensor(String, SourceRange)
    /// `transpose(SOURCE)` (rank 2)
    case transpose(WeightSourceExpr, SourceRange)
    /// `slice(SOURCE, axis: A, start: S, size: N)`: rows S ..< S + N of axis A
    case slice(WeightSourceExpr, axis: Expr, start: Expr, size: Expr, SourceRange)

    public var range: SourceRange {
        switch self { case .tensor(_, let r), .transpose(_, let r), .slice(_, _, _, _, let r): r }
    }
}

/// One line `"layers.*.attention.query.weight" = SOURCE` of the weights section.
public struct WeightEntry: Sendable {
    public var pattern: String
    public var range: SourceRange
    public var source: WeightSourceExpr
}

/// The `weights { … }` section: one entry per parameter pattern, and the file's tensors the model ignores.
public struct WeightsSection: Sendable {
    public var range: SourceRange
    public var entries: [WeightEntry] = []
    public var ignore: [(String, SourceRange)] = []
}
