import KilnBasics
import KilnIR

/// `make-decode`: the model's `decode_step` function — one new token per row at a given position, reading
/// and extending the KV cache — made from its graph (`KVCachePlan` says when a model has one):
///
/// - every input `[B, T, …]` becomes `[B, 1, …]`, and an input `positions: i32[B, 1]` gives each row's position;
/// - the position tables read those positions: `slice_rows(table) {rows: T}` → `embedding(table, positions)`,
///   `sinusoidal() {rows: T}` → `sinusoidal(positions)`, and so does `rotary(x)` → `rotary(x, positions)`;
/// - `attention(q, k, v)` → `cached_attention(q, cache_write(kc, k, positions), cache_write(vc, v, positions),
///   positions)`: the new key and value go into the attention's caches, and each row attends over its
///   positions 0 … p (`relative_attention` → `cached_relative_attention`, at distances from p); a cross-attention reads the memory that `encode` wrote (`memory_attention`), and the
///   memory side is left out;
/// - `lstm(xg, w, b)` → `cached_lstm(xg, h, c, w, b, positions)`: one step from the state the previous call left;
/// - every other op is copied, its type inferred again (T is 1 now).
///
/// Rows decode independently: each may be at its own position, so one call advances a batch of sequences of
/// different lengths, or the beams of a search.
public enum MakeDecodeStep {
    public static let name = "make-decode"

    public static func apply(_ g: Graph) -> Graph? {
        guard let plan = KVCachePlan(g) else { return nil }
        let T = Dim.sym(plan.sequence)
        var positions: Int?
        var attentions = 0, recurrences = 0
        func position(_ b: inout GraphBuilder) -> Int {
            if let p = positions { return p }
            var attrs = Attributes()
            attrs.set(Input.role, Word(Input.Role.positions.rawValue))
            attrs.set(Input.limit, plan.context)
            positions = b.graph.add(Node(.input, attrs: attrs, type: TensorType(.i32, [.sym(plan.batch), .const(1)]), name: "positions"))
            return positions!
        }
        var (b, _) = plan.rebuild(g, function: "decode_step", skip: plan.memory) { b, n, i in
            switch n.kind {
            case .input:
                var m = n
                m.type.shape.dims = n.type.shape.dims.map { $0 == T ? .const(1) : $0 }
                return b.graph.add(m)
            case .sliceRows where n.attrs.value(SliceRows.rows) == T:
                return b.emit(.embedding, [n.operands[0], position(&b)])
            case .sinusoidal where n.attrs.value(Sinusoidal.rows) == T:
                return b.emit(.sinusoidal, [position(&b)], [(Sinusoidal.dim.name, .int(n.attrs[Sinusoidal.dim]))]
                              + (n.attrs[Sinusoidal.halves] ? [(Sinusoidal.halves.name, .bool(true))] : []))
            case .rotary:
                return b.emit(.rotary, [n.operands[0], position(&b)], n.attrs.entries)
            case .attention:
                if let j = plan.crossAttentions.firstIndex(of: i) { return plan.readMemory(j, attention: i, of: g, query: n.operands[0], &b) }
                let (kc, vc) = plan.caches(attentions, of: n, in: &b)
                attentions += 1
                let p = position(&b)
                let k = b.emit(.cacheWrite, [kc, n.operands[1], p]), v = b.emit(.cacheWrite, [vc, n.operands[2], p])
                return b.emit(.cachedAttention, [n.operands[0], k, v, p], Attention.headAttributes(n.attrs) + Attention.windowAttribute(n.attrs))
            case .relativeAttention:
                let (kc, vc) = plan.caches(attentions, of: n, in: &b)
                attentions += 1
                let p = position(&b)
                let k = b.emit(.cacheWrite, [kc, n.operands[1], p]), v = b.emit(.cacheWrite, [vc, n.operands[2], p])
                return b.emit(.cachedRelativeAttention, [n.operands[0], k, v, n.operands[3], p], n.attrs.entries)
            case .lstm:
                let (h, c) = plan.recurrentStates(recurrences, of: n, in: &b)
                recurrences += 1
                return b.emit(.cachedLSTM, [n.operands[0], h, c, n.operands[1], n.operands[2], position(&b)])
            default:
                return nil
            }
        }
        // the positions input even where no op reads them (a model without positions or attention)
        _ = position(&b)
        let out = b.graph.pruned().removingUnusedDims()
        return (try? Verifier.verify(out)) != nil ? out : nil
    }
}
