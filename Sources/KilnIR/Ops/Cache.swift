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
/// KV cache: query t of row b sees positions 0 … positions[b, t] of cache row b (causal within the cache; with
/// `window`, the last `window` of them).
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
    public var attributes: [AttrSpec] { [Attention.heads.spec, Attention.kvHeads.spec, Attention.alibi.spec, Attention.window.spec] }
    public let traits: OpTraits = [.afterAutodiff]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (q, k, v, pos) = (ops[0], ops[1], ops[2], ops[3])
        guard q.shape.rank == 3, k.shape.rank == 3, k == v, k.dtype == q.dtype else {
            throw TypeError("cached_attention: queries \(q) do not match the caches \(k) and \(v)")
        }
        try requireInteger(pos, "cached_attention positions")
        guard pos.shape.dims == Array(q.shape.dims.prefix(2)) else {
            throw TypeError("cached_attention: positions \(pos.shape) do not match queries \(q.shape)")
        }
        try Attention.checkHeads(q: q, k: k, attrs, "cached_attention")
        return q
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    /// q·kᵀ and p·v over the positions seen; counted as if every row saw the whole cache or window (an upper bound).
    public func flops(_ c: FlopContext) -> Int {
        let seen = min(c.dim(c.operands[1].shape.dims[1]), c.node.attrs.value(Attention.window) ?? Int.max)
        return 4 * c.count(0) / c.dim(c.operands[0].shape.dims[2]) * seen * c.dim(c.operands[0].shape.dims[2])
    }
}

/// `cache_write_mask(%state: [R, S], %k: [B, L, C], %mask: i32[B, L]?) -> [R, S]` — the padding mask of a
/// memory, in place: row b of the state gets mask[b, l] (1 without a mask) at positions l < L and 0 from L on,
/// so that a later `memory_attention` over all S positions sees this memory's tokens and nothing an earlier,
/// longer one left. Made by `make-encode`.
public struct CacheWriteMask: Op {
    public init() {}
    public let name = "cache_write_mask"
    public let summary = "state `[R, S]`, keys `[B, L, C]`, mask `i32[B, L]`? → the state: row b holds the mask (or 1) at positions below L and 0 from L on, in place"
    public let example = """
        graph G {
          dim R
          dim B
          dim L <= 8
          %memory.0.mask = state : f32[R, 8]
          %k = input : f32[B, L, 4]
          %m = input {role: mask} : i32[B, L]
          %0 = cache_write_mask(%memory.0.mask, %k, %m) : f32[R, 8]
          output y = %0
        }
        """
    public let arity = 2...3
    public let attributes: [AttrSpec] = []
    public let traits: OpTraits = [.impure, .effect, .afterAutodiff]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (state, k) = (ops[0], ops[1])
        guard state.shape.rank == 2, k.shape.rank == 3, state.dtype == k.dtype else {
            throw TypeError("cache_write_mask: keys \(k) do not fit the mask state \(state)")
        }
        if let l = env.bound(k.shape.dims[1]), let s = env.bound(state.shape.dims[1]), l > s {
            throw TypeError("cache_write_mask: \(k.shape.dims[1]) positions (up to \(l)) do not fit a state of \(state.shape.dims[1])")
        }
        if ops.count == 3 {
            try requireInteger(ops[2], "cache_write_mask's mask")
            guard ops[2].shape.dims == Array(k.shape.dims.prefix(2)) else {
                throw TypeError("cache_write_mask: mask \(ops[2].shape) does not match the keys \(k.shape)")
            }
        }
        return state
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    public func flops(_ c: FlopContext) -> Int { 0 }
}

/// `memory_attention(%q: [B, T, C], %k, %v: [R, S, C], %mask: [R, S]) {heads}` — cross-attention over a memory
/// that `encode` stored: query (b, t) attends over the positions of state row b whose mask is not 0.
public struct MemoryAttention: Op {
    public init() {}
    public let name = "memory_attention"
    public let summary = "q `[B, T, C]`, k, v `[R, S, C]`, mask `[R, S]` (states) → `[B, T, C]`: attention of query (b, t) over the positions of memory row b whose mask is not 0"
    public let example = """
        graph G {
          dim R
          dim B
          %q = input : f32[B, 1, 4]
          %memory.0.k = state : f32[R, 8, 4]
          %memory.0.v = state : f32[R, 8, 4]
          %memory.0.mask = state : f32[R, 8]
          %0 = memory_attention(%q, %memory.0.k, %memory.0.v, %memory.0.mask) {heads: 2} : f32[B, 1, 4]
          output y = %0
        }
        """
    public let arity = 4...4
    public var attributes: [AttrSpec] { [Attention.heads.spec, Attention.kvHeads.spec] }
    public let traits: OpTraits = [.afterAutodiff]
    public func inferType(_ ops: [TensorType], _ attrs: Attributes, _ env: TypeEnvironment) throws -> TensorType {
        let (q, k, v, mask) = (ops[0], ops[1], ops[2], ops[3])
        guard q.shape.rank == 3, k.shape.rank == 3, k == v, k.dtype == q.dtype else {
            throw TypeError("memory_attention: queries \(q) do not match the memory \(k) and \(v)")
        }
        guard mask.dtype == k.dtype, mask.shape.dims == Array(k.shape.dims.prefix(2)) else {
            throw TypeError("memory_attention: the mask \(mask) does not match the memory \(k)")
        }
        try Attention.checkHeads(q: q, k: k, attrs, "memory_attention")
        return q
    }
    public func differentiate(_ d: inout Differentiation) throws { throw d.notDifferentiable }
    /// q·kᵀ and p·v over the whole memory (its padding counted: an upper bound).
    public func flops(_ c: FlopContext) -> Int {
        4 * c.count(0) / c.dim(c.operands[0].shape.dims[2]) * c.dim(c.operands[1].shape.dims[1]) * c.dim(c.operands[0].shape.dims[2])
    }
}

extension OpKind {
    public static let cacheWrite = OpKind("cache_write")
    public static let cachedAttention = OpKind("cached_attention")
    public static let cacheWriteMask = OpKind("cache_write_mask")
    public static let memoryAttention = OpKind("memory_attention")
}
