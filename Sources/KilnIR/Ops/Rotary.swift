import KilnBasics

/// `rotary(%x: [B, T, C], %positions: i32[B, T]?) {heads, base, inverse}` — rotary position embeddings (Su et
/// al. 2021) in the layout of Hugging Face's Llama (`rotate_half`): in each head of size d = C / heads, the
/// pair (x[i], x[i + d/2]) of position p is rotated by the angle p · base^(−2i/d):
/// y[i] = x[i]·cos − x[i + d/2]·sin, y[i + d/2] = x[i + d/2]·cos + x[i]·sin. The position of token t is t,
/// or positions[b, t] when given (decoding). `inverse` rotates by the opposite angle: the transpose, and so
/// the vector–Jacobian product.
public struct Rotary: Op {
    public init() {}
    public static let heads = AttrKey<Int>("heads")
    public static let base = AttrKey<Double>("base", default: 10000)
    public static let inverse = AttrKey<Bool>("inverse", default: false)
    public let name = "rotary"
    public let summary = "x `[B, T, C]`, positions `i32[B, T]`? → x's type: rotary positions (Su et al. 2021; Llama's rotate_half layout), pair (i, i + d/2) of each head rotated by position · base^(−2i/d); `inverse`: by the opposite angle"
    public let example = """
        graph G {
          dim B
          dim T <= 8
          %x = input : f32[B, T, 8]
          %0 = rotary(%x) {heads: 2, base: 10000.0, inverse: false} : f32[B, T, 8]
          output y = %0
        }
        """
    public let arity = 1...2
    public var attributes: [AttrSpec] { [Self.heads.spec, Self.base.spec, Self.inverse.spec] }
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let x = ops[0]
        try requireFloat(x, "rotary input")
        guard x.shape.rank == 3 else { throw TypeError("rotary expects [B, T, C], got \(x)") }
        let h = attrs[Self.heads]
        guard h > 0, let c = x.shape.dims[2].constValue, c % (2 * h) == 0 else {
            throw TypeError("rotary: each of the \(h) heads of \(x.shape.dims[2]) channels must have an even size")
        }
        guard attrs[Self.base] > 1, attrs[Self.base].isFinite else { throw TypeError("rotary base must be a finite number above 1, got \(attrs[Self.base])") }
        if ops.count == 2 {
            try requireInteger(ops[1], "rotary positions")
            guard ops[1].shape.dims == Array(x.shape.dims.prefix(2)) else {
                throw TypeError("rotary: positions \(ops[1].shape) do not match \(x.shape)")
            }
        }
        return x
    }
    /// A rotation's transpose is the rotation by the opposite angle.
    public func differentiate(_ d: inout Differentiation) throws {
        guard d.wants(0) else { return }
        var attrs = d.node.attrs
        attrs.set(Self.inverse, !attrs[Self.inverse])
        d.give(0, d.emit(.rotary, [d.gradient] + d.operands.dropFirst(), attrs.entries))
    }
    /// Per pair: four products and two sums (the angles' sines and cosines not counted).
    public func flops(_ c: FlopContext) -> Int { 3 * c.out }
}

extension OpKind {
    public static let rotary = OpKind("rotary")
}
