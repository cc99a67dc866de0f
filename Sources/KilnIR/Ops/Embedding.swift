import KilnBasics

/// `embedding(%table: [V, C], %ids: i32[...]) -> [..., C]` — the rows of a table for integer ids.
public struct Embedding: Op {
    public init() {}
    public let name = "embedding"
    public let summary = "table `[V, C]`, ids `i32[...]` → `[..., C]`: row `ids[i]` of the table for each id"
    public let example = """
        graph G {
          dim B
          dim T <= 8
          %tokens = input : i32[B, T]
          %embed.weight = param {init: normal, std: 0.02} : f32[11, 4]
          %0 = embedding(%embed.weight, %tokens) : f32[B, T, 4]
          output y = %0
        }
        """
    public let arity = 2...2
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = []
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (table, ids) = (ops[0], ops[1])
        try requireFloat(table, "embedding table")
        guard table.shape.rank == 2 else { throw TypeError("embedding table must be rank 2 [vocab, dim], got \(table.shape)") }
        guard ids.dtype == .i32 || ids.dtype == .i64 else { throw TypeError("embedding ids must be integers, got \(ids)") }
        return TensorType(table.dtype, ids.shape.dims + [table.shape.dims[1]])
    }
    /// The rows of the table that were read get the gradient: a scatter-add.
    public func differentiate(_ d: inout Differentiation) throws {
        let o = d.operands
        if d.wants(0) { d.give(0, d.emit(.embeddingGrad, [d.gradient, o[1], o[0]])) }
    }
    public func flops(_ c: FlopContext) -> Int { 0 }
}

/// `embedding_grad(%dy: [..., C], %ids, %table: [V, C]) -> [V, C]` — the gradient of `embedding`.
public struct EmbeddingGrad: Op {
    public init() {}
    public let name = "embedding_grad"
    public let summary = "dy `[..., C]`, ids, table `[V, C]` (and acc `[V, C]` after `fuse-grad-acc`) → `[V, C]`: scatter-add of the rows of dy at the ids (into acc if given)"
    public let example = """
        graph G {
          dim B
          %dy = input : f32[B, 4]
          %ids = input : i32[B]
          %t = param {init: zeros} : f32[11, 4]
          %0 = embedding_grad(%dy, %ids, %t) : f32[11, 4]
          output d = %0
        }
        """
    public let arity = 3...4
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = [.gradient, .accumulates]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (dy, ids, table) = (ops[0], ops[1], ops[2])
        guard table.shape.rank == 2, dy.shape.dims == ids.shape.dims + [table.shape.dims[1]] else {
            throw TypeError("embedding_grad: dy \(dy.shape) does not match ids \(ids.shape) and table \(table.shape)")
        }
        return table
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    /// One add per element of dy.
    public func flops(_ c: FlopContext) -> Int { c.count(0) + c.accumulate }
}

extension OpKind {
    public static let embedding = OpKind("embedding")
    public static let embeddingGrad = OpKind("embedding_grad")
}
