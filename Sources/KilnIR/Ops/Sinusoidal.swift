import KilnBasics

/// `sinusoidal() {rows: T, dim: C} -> f32[T, C]` — the fixed position table of Vaswani et al. 2017:
/// column 2i of row t is sin(t / 10000^(2i/C)), column 2i+1 the cosine of the same angle. With an operand,
/// `sinusoidal(%positions: i32[...]) {dim: C} -> f32[..., C]`, the rows of the given positions (decoding).
/// `halves: true` puts the sines in the first C/2 columns and the cosines in the last (column i and C/2 + i of
/// the angle t / 10000^(2i/C)), the layout of Hugging Face's Marian and fairseq.
public struct Sinusoidal: Op {
    public init() {}
    public static let rows = AttrKey<Dim>("rows", optional: true)
    public static let dim = AttrKey<Int>("dim")
    public static let halves = AttrKey<Bool>("halves", default: false)
    public let name = "sinusoidal"
    public let summary = "→ `f32[rows, dim]`, or positions `i32[...]` → `f32[..., dim]`: sine/cosine positions (Vaswani et al. 2017), column 2i sin(t/10000^(2i/dim)), 2i+1 the cos; `halves`: sines in the first dim/2 columns, cosines in the rest (Marian, fairseq)"
    public let example = """
        graph G {
          dim T <= 8
          %0 = sinusoidal() {rows: T, dim: 4} : f32[T, 4]
          output y = %0
        }
        """
    public let arity = 0...1
    public var attributes: [AttrSpec] { [Self.rows.spec, Self.dim.spec, Self.halves.spec] }
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let dim = attrs[Self.dim]
        guard dim > 0 else { throw TypeError("sinusoidal dim must be positive, got \(dim)") }
        if attrs[Self.halves] && dim % 2 != 0 { throw TypeError("sinusoidal halves needs an even dim, got \(dim)") }
        if let positions = ops.first {
            try requireInteger(positions, "sinusoidal positions")
            guard attrs.value(Self.rows) == nil else { throw TypeError("sinusoidal takes rows or positions, not both") }
            return TensorType(.f32, positions.shape.dims + [.const(dim)])
        }
        guard let rows = attrs.value(Self.rows) else { throw TypeError("sinusoidal needs rows or positions") }
        return TensorType(.f32, [rows, .const(dim)])
    }
    public func differentiate(_ d: inout Differentiation) throws {}
    public func flops(_ c: FlopContext) -> Int { 0 }
}

extension OpKind {
    public static let sinusoidal = OpKind("sinusoidal")
}
