import KilnBasics
import KilnIR

extension CacheWrite: CLowering, InPlaceLowering {
    var kernelFile: String? { "attention.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    /// The cache is written where it is: the result is the state tensor itself.
    func call(_ c: CallContext) throws -> String {
        let x = c.type(1).shape.dims, cache = c.type(0).shape.dims
        let positions = c.operands.count == 3 ? c.p[2] : "NULL"
        return "cache_write_forward(\(c.dst), \(c.p[1]), \(positions), \(x[0]), \(x[1]), \(cache[1]), \(cache[2]));"
    }
    func inPlaceOperand(_ n: Node) -> Int? { n.operands[0] }
}

extension CachedAttention: CLowering {
    var kernelFile: String? { "attention.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let p = c.p, q = c.type.shape.dims, cache = c.type(1).shape.dims
        return "attention_cached_forward(\(c.dst), \(p[0]), \(p[1]), \(p[2]), \(p[3]), \(q[0]), \(q[1]), \(cache[1]), \(q[2]), \(c.attrs[Attention.heads]), \(Attention.keyValueHeads(c.attrs)), \(Attention.hasALiBi(c.attrs) ? 1 : 0), \(c.attrs.value(Attention.window) ?? 0));"
    }
}

extension CacheWriteMask: CLowering, InPlaceLowering {
    var kernelFile: String? { "attention.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let k = c.type(1).shape.dims, state = c.type(0).shape.dims
        let mask = c.operands.count == 3 ? c.p[2] : "NULL"
        return "cache_write_mask_forward(\(c.dst), \(mask), \(k[0]), \(k[1]), \(state[1]));"
    }
    func inPlaceOperand(_ n: Node) -> Int? { n.operands[0] }
}

extension MemoryAttention: CLowering {
    var kernelFile: String? { "attention.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let p = c.p, q = c.type.shape.dims, memory = c.type(1).shape.dims
        return "attention_memory_forward(\(c.dst), \(p[0]), \(p[1]), \(p[2]), \(p[3]), \(q[0]), \(q[1]), \(memory[1]), \(q[2]), \(c.attrs[Attention.heads]), \(Attention.keyValueHeads(c.attrs)));"
    }
}
