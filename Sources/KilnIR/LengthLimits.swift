import KilnBasics

/// Which bounded dims a function needs to stay within their bounds, and why.
///
/// A bound such as `T <= context` is the length a model declares (and trains at). Whether a function can run
/// past it depends on its ops: a learned position table has `context` rows (`slice_rows` of it cannot take
/// more), a KV cache has `context` positions, and the training step sizes its scratch by the bound. Positions
/// that are computed (sinusoidal, rotary, ALiBi) or absent do not care, so such a model's forward runs at any
/// length — it extrapolates, as Press et al. 2022 measure.
///
/// The analysis asks every op's type rule again with the dim unbounded: a rule that fails needs the bound.
/// Functions with state or gradients keep every bound (their buffers are sized by it).
extension Graph {
    /// For each bounded symbolic dim: nil when the function runs at any size of it, else what needs the bound
    /// (a description of the first node whose type rule fails without it).
    public func lengthLimits() -> [String: String?] {
        var out: [String: String?] = [:]
        let training = nodes.contains { $0.kind.traits.contains(.gradient) } || outputs.contains { $0.name.hasPrefix("grad.") }
        for d in dims where d.bound != nil {
            if !states.isEmpty { out[d.name] = "the KV cache (its \(d.bound!) positions)"; continue }
            if training { out[d.name] = "training (its scratch is sized by the bound)"; continue }
            out[d.name] = .some(nil)
            let unbounded: (Dim) -> Int? = { dim in dim == .sym(d.name) ? nil : self.bound(of: dim) }
            for n in nodes where !n.kind.hasDeclaredType {
                do { _ = try n.kind.inferType(n.operands.map { nodes[$0].type }, n.attrs, bound: unbounded) } catch {
                    out[d.name] = describe(n)
                    break
                }
            }
        }
        return out
    }

    /// "slice_rows of 'pos.weight' f32[256, 64]"
    private func describe(_ n: Node) -> String {
        let operands = n.operands.map { i in nodes[i].name.map { "'\($0)' \(nodes[i].type)" } ?? "\(nodes[i].type)" }
        return "\(n.kind.name) of \(operands.joined(separator: ", "))"
    }
}
