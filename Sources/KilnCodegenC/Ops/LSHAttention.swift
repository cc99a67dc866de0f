import KilnBasics
import KilnIR

/// The kernels' arguments after the pointers: B, T, C, heads, hashes, buckets, chunk, seed, causal.
private func arguments(_ t: TensorType, _ a: Attributes) -> String {
    let d = t.shape.dims
    return "\(d[0]), \(d[1]), \(d[2]), \(a[LSHAttention.heads]), \(a[LSHAttention.hashes]), \(a[LSHAttention.buckets]), \(a[LSHAttention.chunk]), \(a[LSHAttention.seed])u, \(a[LSHAttention.causal] ? 1 : 0)"
}

/// Scratch: the rotations (hashes x D x buckets / 2), then per (batch, head) pair T (2 D + 3 + 2 hashes) reals;
/// as one monomial, B T (heads (2 D + 3 + 2 hashes) + the rotations) (B T >= 1).
private func scratch(_ t: TensorType, _ a: Attributes) -> SizeExpr {
    let (c, h, n, b) = (t.shape.dims[2].constValue!, a[LSHAttention.heads], a[LSHAttention.hashes], a[LSHAttention.buckets])
    let d = c / h
    return Shape([t.shape.dims[0], t.shape.dims[1], .const(h * (2 * d + 3 + 2 * n) + n * d * (b / 2))]).elementCount
}

extension LSHAttention: CLowering {
    var kernelFile: String? { "lsh.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { scratch(g.nodes[i].type, g.nodes[i].attrs) }
    func call(_ c: CallContext) throws -> String {
        "lsh_attention_forward(\(c.dst), \(c.p[0]), \(c.p[1]), \(c.workspace), \(arguments(c.type, c.attrs)));"
    }
}

extension LSHAttentionGrad: CLowering {
    var kernelFile: String? { "lsh.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { scratch(g.nodes[g.nodes[i].operands[1]].type, g.nodes[i].attrs) }
    func call(_ c: CallContext) throws -> String {
        "lsh_attention_backward(\(c.dst), \(c.dst) + \(c.count(1)), \(c.p[0]), \(c.p[1]), \(c.p[2]), \(c.p[3]), \(c.workspace), \(arguments(c.type(1), c.attrs)));"
    }
}
