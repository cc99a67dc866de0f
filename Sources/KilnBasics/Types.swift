/// Element types of tensors.
public enum DType: String, Sendable, CaseIterable {
    case f32, f64, i32, i64

    public var isFloat: Bool { self == .f32 || self == .f64 }
    public var byteSize: Int { switch self { case .f32, .i32: 4; case .f64, .i64: 8 } }
}

/// One dimension of a shape: a compile-time constant or a named symbolic size
/// (batch `B`, sequence `T`) that is only known when the binary runs.
public enum Dim: Sendable, Hashable, CustomStringConvertible {
    case const(Int)
    case sym(String)

    public var description: String {
        switch self { case .const(let n): String(n); case .sym(let s): s }
    }
    public var constValue: Int? { if case .const(let n) = self { n } else { nil } }
}

/// A tensor shape: a list of dimensions, outermost first, row-major.
public struct Shape: Sendable, Hashable, CustomStringConvertible {
    public var dims: [Dim]
    public init(_ dims: [Dim]) { self.dims = dims }
    public var rank: Int { dims.count }
    public var last: Dim? { dims.last }
    public var description: String { "[" + dims.map(\.description).joined(separator: ", ") + "]" }

    /// Element count as a product of symbols and a constant, e.g. `B*T*384`.
    public var elementCount: SizeExpr {
        var e = SizeExpr(constant: 1)
        for d in dims { e = e * d }
        return e
    }
}

/// A tensor type: dtype and shape, printed `f32[B, T, 384]`.
public struct TensorType: Sendable, Hashable, CustomStringConvertible {
    public var dtype: DType
    public var shape: Shape
    public init(_ dtype: DType, _ shape: Shape) { self.dtype = dtype; self.shape = shape }
    public init(_ dtype: DType, _ dims: [Dim]) { self.dtype = dtype; self.shape = Shape(dims) }
    public var description: String { dtype.rawValue + shape.description }
}

/// A size that is a monomial: constant × product of symbols (with multiplicity).
/// Shapes in Kiln are products of named symbolic dims and constants, so every
/// buffer size is one of these; they print as C expressions.
public struct SizeExpr: Sendable, Hashable, CustomStringConvertible {
    public var constant: Int
    /// Symbol names, sorted, repeated for powers (`["T", "T"]` is T²).
    public var symbols: [String]

    public init(constant: Int, symbols: [String] = []) { self.constant = constant; self.symbols = symbols.sorted() }

    public static func * (a: SizeExpr, d: Dim) -> SizeExpr {
        switch d {
        case .const(let n):
            let (p, o) = a.constant.multipliedReportingOverflow(by: n)
            return SizeExpr(constant: o ? Int.max : p, symbols: a.symbols)
        case .sym(let s): return SizeExpr(constant: a.constant, symbols: a.symbols + [s])
        }
    }

    /// Evaluates with concrete symbol values (saturating on overflow).
    public func evaluate(_ env: [String: Int]) -> Int {
        var v = constant
        for s in symbols {
            let (p, o) = v.multipliedReportingOverflow(by: env[s] ?? 1)
            v = o ? Int.max : p
        }
        return v
    }

    /// A C expression, e.g. `(size_t)B * T * 384`.
    public var cExpression: String {
        if symbols.isEmpty { return "\(constant)" }
        var parts = symbols.map { "(size_t)\($0)" }
        if constant != 1 { parts.append("\(constant)") }
        return parts.joined(separator: " * ")
    }

    public var description: String {
        if symbols.isEmpty { return "\(constant)" }
        return (constant == 1 ? [] : ["\(constant)"]).joined() + (constant == 1 ? "" : "*") + symbols.joined(separator: "*")
    }
}
