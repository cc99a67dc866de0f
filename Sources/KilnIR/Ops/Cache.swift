import KilnBasics

/// `cache_write(%cache: [R, S, C], %x: [B, T, C], %positions: i32[B, T]?) -> [R, S, C]` — writes x into the
/// cache, in place: token t of row b goes to position positions[b, t] of cache row b (position t without
/// positions). The result is the cache after the write. Made by the `make-decode` and `make-prefill`
/// transforms, for the keys and values of each attention.
public struct CacheWrite: Op {
    public init() {}
    public let name = "cache_write"
    public let summary = "cache `[R, S, C]`, x `[B, T, C]`, positions `i32[B, T]`? → the cache: token t of row b written at position positions[b, t] (or t) of cache row b, in place"
    public let example = """
        graph G {
          dim R
          dim B
          dim T <= 8
          %kv.0.k = state : f32[R, 8, 4]
          %x = input : f32[B, T, 4]
          %0 = cache_write(%kv.0.k, %x) : f32[R, 8, 4]
          output y = %0
        }
        """
    public let arity = 2...3
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = [.impure, .effect, .afterAutodiff]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (cache, x) = (ops[0], ops[1])
        guard cache.shape.rank == 3, x.shape.rank == 3, cache.dtype == x.dtype, cache.shape.dims[2] == x.shape.dims[2] else {
            throw TypeError("cache_write: \(x) does not fit the cache \(cache)")
        }
        if let t = env.bound(x.shape.dims[1]), let s = env.bound(cache.shape.dims[1]), t > s {
            throw TypeError("cache_write: \(x.shape.dims[1]) positions (up to \(t)) do not fit a cache of \(cache.shape.dims[1])")
        }
        if ops.count == 3 {
            try requireInteger(ops[2], "cache_write positions")
            guard ops[2].shape.dims == Array(x.shape.dims.prefix(2)) else {
                throw TypeError("cache_write: positions \(ops[2].shape) do not match x \(x.shape)")
            }
        }
        return cache
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { 0 }
}

/// `cached_attention(%q: [B, T, C], %k, %v: [R, S, C], %positions: i32[B, T]) {heads}` — attention over a
/// KV cache: query t of row b sees positions 0 … positions[b, t] of cache row b (causal within the cache).
public struct CachedAttention: Op {
    public init() {}
    public let name = "cached_attention"
    public let summary = "q `[B, T, C]`, k, v `[R, S, C]` (caches), positions `i32[B, T]` → `[B, T, C]`: attention of query (b, t) over positions 0 … positions[b, t] of cache row b"
    public let example = """
        graph G {
          dim R
          dim B
          %q = input : f32[B, 1, 4]
          %kv.0.k = state : f32[R, 8, 4]
          %kv.0.v = state : f32[R, 8, 4]
          %positions = input {role: positions, limit: 8} : i32[B, 1]
          %0 = cached_attention(%q, %kv.0.k, %kv.0.v, %positions) {heads: 2} : f32[B, 1, 4]
          output y = %0
        }
        """
    public let arity = 4...4
    public var attributes: [AttrSpec] { [Attention.heads.spec] }
    public let traits: OpTraits = [.afterAutodiff]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (q, k, v, pos) = (ops[0], ops[1], ops[2], ops[3])
        guard q.shape.rank == 3, k.shape.rank == 3, k == v, k.shape.dims[2] == q.shape.dims[2], k.dtype == q.dtype else {
            throw TypeError("cached_attention: queries \(q) do not match the caches \(k) and \(v)")
        }
        try requireInteger(pos, "cached_attention positions")
        guard pos.shape.dims == Array(q.shape.dims.prefix(2)) else {
            throw TypeError("cached_attention: positions \(pos.shape) do not match queries \(q.shape)")
        }
        let h = attrs[Attention.heads]
        guard h > 0, let c = q.shape.dims[2].constValue, c % h == 0 else {
            throw TypeError("cached_attention: model dim \(q.shape.dims[2]) is not divisible by \(h) heads")
        }
        return q
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    /// q·kᵀ and p·v over the positions seen; counted as if every row saw the whole cache (an upper bound).
    public func flops(_ c: FlopContext) -> Int {
        4 * c.count(0) / c.dim(c.operands[0].shape.dims[2]) * c.dim(c.operands[1].shape.dims[1]) * c.dim(c.operands[0].shape.dims[2])
    }
}

extension OpKind {
    public static let cacheWrite = OpKind("cache_write")
    public static let cachedAttention = OpKind("cached_attention")
}
