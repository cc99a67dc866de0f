import KilnBasics
import KilnIR

/// Removes dropout for inference: `dropout(x) -> x`. Dropout is a training
/// regulariser; at inference every unit is kept and no scaling is needed
/// (the training kernel scales kept units by 1/(1-p)).
public struct StripDropout: Pass {
    public let name = "strip-dropout"
    public init() {}

    public func run(_ g: inout Graph) throws -> Bool {
        var replace: [Int: Int] = [:]
        for (i, n) in g.nodes.enumerated() where n.kind == .dropout { replace[i] = n.operands[0] }
        guard !replace.isEmpty else { return false }
        g = g.compacted(keep: g.nodes.indices.map { replace[$0] == nil }, replace: replace)
        return true
    }
}
