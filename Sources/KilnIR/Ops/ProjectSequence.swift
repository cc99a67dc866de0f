import KilnBasics

/// `project_sequence(%x: [B, T, C], %e: [K, N], %mask: i32[B, T]?) -> [B, K, C]` — Linformer's projection
/// along the sequence (Wang et al. 2020): y[b] = E[:, :T] · x[b], K rows that mix the T positions with learned
/// weights, so that attention to them costs O(T · K) and not O(T²). N is the longest sequence (T's bound); a
/// shorter one uses E's first T columns. Positions whose mask is 0 (padding) count as zeros, so a padded row
/// projects as the same row unpadded.
public struct ProjectSequence: Op {
    public init() {}
    public let name = "project_sequence"
    public let summary = "x `[B, T, C]`, e `[K, N]` (N ≥ T's bound), mask `i32[B, T]`? → `[B, K, C]`: Linformer's projection along the sequence, E[:, :T] · x[b] (Wang et al. 2020); masked positions count as zeros"
    public let example = """
        graph G {
          dim B
          dim T <= 8
          %x = input : f32[B, T, 4]
          %e = param {init: normal, std: 0.3} : f32[3, 8]
          %mask = input {role: mask} : i32[B, T]
          %0 = project_sequence(%x, %e, %mask) : f32[B, 3, 4]
          output y = %0
        }
        """
    public let arity = 2...3
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = []

    /// Checks x, e and the mask; returns K.
    static func check(_ ops: [TensorType], _ env: TypeEnvironment, _ op: String) throws -> Dim {
        let (x, e) = (ops[0], ops[1])
        try requireFloat(x, "\(op)'s input")
        guard x.shape.rank == 3 else { throw TypeError("\(op) expects [B, T, C], got \(x.shape)") }
        guard e.shape.rank == 2, e.dtype == x.dtype else { throw TypeError("\(op)'s projection must be a [K, N] matrix of \(x.dtype), got \(e)") }
        guard let n = e.shape.dims[1].constValue, let bound = env.bound(x.shape.dims[1]) else {
            throw TypeError("\(op) needs the sequence \(x.shape.dims[1]) bounded and the projection's width constant")
        }
        guard bound <= n else {
            throw TypeError("\(op): the projection \(e.shape) covers \(n) positions, but the sequence \(x.shape.dims[1]) may be \(bound) long")
        }
        if ops.count == 3 {
            try requireInteger(ops[2], "\(op)'s mask")
            guard ops[2].shape.dims == Array(x.shape.dims.prefix(2)) else {
                throw TypeError("\(op)'s mask must be [\(x.shape.dims[0]), \(x.shape.dims[1])], got \(ops[2].shape)")
            }
        }
        return e.shape.dims[0]
    }
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let k = try Self.check(ops, env, name)
        return TensorType(ops[0].dtype, [ops[0].shape.dims[0], k, ops[0].shape.dims[2]])
    }
    /// dx[b] = E[:, :T]ᵀ · dy[b] (zeros at masked positions); dE[:, :T] = Σ_b dy[b] · x[b]ᵀ, zeros past T.
    public func differentiate(_ d: inout Differentiation) throws {
        for (k, wrt) in ["x", "e"].enumerated() where d.wants(k) {
            d.give(k, d.emit(.projectSequenceGrad, [d.gradient] + d.operands, [("wrt", .word(wrt))]))
        }
    }
    /// One multiply–add per (row of K, position, channel).
    public func flops(_ c: FlopContext) -> Int { 2 * c.count(0) * c.dim(c.operands[1].shape.dims[0]) }
}

/// `project_sequence_grad(%dy: [B, K, C], %x, %e, %mask?) {wrt: x|e}` — the gradient of `project_sequence`
/// with respect to x or to the projection e.
public struct ProjectSequenceGrad: Op {
    public init() {}
    public static let wrt = AttrKey<Word>("wrt", words: ["x", "e"])
    public let name = "project_sequence_grad"
    public let summary = "dy `[B, K, C]`, x, e, mask? → x's type (`wrt: x`, E[:, :T]ᵀ · dy[b], zeros at masked positions) or e's (`wrt: e`, Σ_b dy[b] · x[b]ᵀ, zeros past T)"
    public let example = """
        graph G {
          dim B
          dim T <= 8
          %dy = input : f32[B, 3, 4]
          %x = input : f32[B, T, 4]
          %e = param {init: normal, std: 0.3} : f32[3, 8]
          %0 = project_sequence_grad(%dy, %x, %e) {wrt: e} : f32[3, 8]
          output d = %0
        }
        """
    public let arity = 3...4
    public var attributes: [AttrSpec] { [Self.wrt.spec] }
    public let traits: OpTraits = [.gradient]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        var forward = attrs
        forward[Self.wrt.name] = nil
        let y = try ProjectSequence().inferType(Array(ops.dropFirst()), forward, env)
        guard ops[0] == y else { throw TypeError("project_sequence_grad: dy \(ops[0]) does not match the projection \(y)") }
        return attrs[Self.wrt].text == "x" ? ops[1] : ops[2]
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { 2 * c.count(1) * c.dim(c.operands[2].shape.dims[0]) }
}

extension OpKind {
    public static let projectSequence = OpKind("project_sequence")
    public static let projectSequenceGrad = OpKind("project_sequence_grad")
}
