import KilnBasics
import KilnIR

extension Embedding: CLowering {
    var kernelFile: String? { "embedding.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    /// A table that is also a linear layer's packed weight (a tied output head) is read in its panel layout.
    func call(_ c: CallContext) throws -> String {
        let p = c.p, t = c.type
        if c.isPacked(0) {
            return "embedding_packed_forward(\(c.dst), \(p[0]), \(p[1]), \(c.count(1)), \(c.lastDim(t)), \(c.type(0).shape.dims[0]));"
        }
        return "embedding_forward(\(c.dst), \(p[0]), \(p[1]), \(c.count(1)), \(c.lastDim(t)));"
    }
}

extension EmbeddingGrad: CLowering, InPlaceLowering {
    var kernelFile: String? { "embedding.c" }
    func workspace(_ g: Graph, _ i: Int, packed: Set<Int>) -> SizeExpr? { nil }
    func call(_ c: CallContext) throws -> String {
        let p = c.p, t = c.type
        return "embedding_backward(\(c.dst), \(c.accumulated), \(p[0]), \(p[1]), \(c.count(1)), \(t.shape.dims[0]), \(c.lastDim(t)));"
    }
    /// An accumulating embedding_grad scatters its rows into the accumulated gradient in place (its kernel
    /// takes the two pointers without `restrict`).
    func inPlaceOperand(_ n: Node) -> Int? { n.attrs[accumulateKey] ? n.operands.last : nil }
}
