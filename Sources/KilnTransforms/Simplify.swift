import KilnBasics
import KilnIR

/// Algebraic simplification and folding of constant factors:
/// - `scale(x) {factor: 1}` → `x`;
/// - `scale(scale(x) {factor: a}) {factor: b}` → `scale(x) {factor: a·b}`
///   (the inner one stays if something else reads it; `dce` removes it otherwise);
/// - `add(x, scale(y) {factor: -1})` (either order) → `sub(x, y)` and
///   `sub(x, scale(y) {factor: -1})` → `add(x, y)` (the language lowers `-y` to that scale),
///   where x, y and the result have one type (no broadcasting).
///
/// A value that is a graph output is never replaced by another (the code
/// generator computes each output with an op of its own).
public struct Simplify: Pass {
    public let name = "simplify"
    public init() {}

    public func run(_ g: inout Graph) throws -> Bool {
        var replace: [Int: Int] = [:]
        var keep = [Bool](repeating: true, count: g.nodes.count)
        let outputs = Set(g.outputs.map(\.value))
        func resolve(_ i: Int) -> Int { var j = i; while let r = replace[j] { j = r }; return j }
        func factor(_ i: Int) -> Double? { g.nodes[i].kind == .scale ? g.nodes[i].attrs.float("factor") : nil }
        var changed = false
        for i in g.nodes.indices {
            g.nodes[i].operands = g.nodes[i].operands.map(resolve)
            let n = g.nodes[i]
            switch n.kind {
            case .scale:
                let f = n.attrs.float("factor") ?? 1
                if let inner = factor(n.operands[0]), (inner * f).isFinite,
                   n.type.dtype != .f32 || abs(inner * f) <= Double(Float.greatestFiniteMagnitude) {
                    g.nodes[i].operands = g.nodes[n.operands[0]].operands
                    g.nodes[i].attrs["factor"] = .float(inner * f)
                    changed = true
                }
                if g.nodes[i].attrs.float("factor") == 1, !outputs.contains(i) {
                    replace[i] = g.nodes[i].operands[0]
                    keep[i] = false
                    changed = true
                }
            case .add, .sub:
                // the negated operand: the second one, or for add (commutative) either
                let k = factor(n.operands[1]) == -1 ? 1 : (n.kind == .add && factor(n.operands[0]) == -1 ? 0 : nil)
                guard let k else { continue }
                let neg = n.operands[k], y = g.nodes[neg].operands[0], x = n.operands[1 - k]
                guard g.nodes[neg].type == n.type, g.nodes[y].type == n.type, g.nodes[x].type == n.type else { continue }
                g.nodes[i].kind = n.kind == .add ? .sub : .add
                g.nodes[i].operands = [x, y]
                changed = true
            default: continue
            }
        }
        guard changed else { return false }
        g = g.compacted(keep: keep, replace: replace)
        return true
    }
}
