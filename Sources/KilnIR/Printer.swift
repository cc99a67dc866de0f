import KilnBasics

/// Prints a graph in Kiln's textual IR. The text parses back with
/// `IRParser` to an identical graph (the round-trip tests rely on it).
///
///     graph CharGPT {
///       dim B
///       dim T <= 256
///       %tokens = input : i32[B, T]
///       %embed.weight = param {init: normal, std: 0.02} : f32[256, 384]
///       %0 = embedding(%embed.weight, %tokens) : f32[B, T, 384]
///       output logits = %0
///     }
public enum IRPrinter {
    public static func print(_ g: Graph) -> String {
        var names = [String](repeating: "", count: g.nodes.count)
        var counter = 0
        var out = "graph \(g.qualifiedName) {\n"
        for d in g.dims { out += "  dim \(d.name)" + (d.bound.map { " <= \($0)" } ?? "") + "\n" }
        for (i, n) in g.nodes.enumerated() {
            if let name = n.name { names[i] = "%" + name } else { names[i] = "%\(counter)"; counter += 1 }
            var line = "  \(names[i]) = \(n.kind.rawValue)"
            if !n.operands.isEmpty || !n.kind.hasDeclaredType {
                line += "(" + n.operands.map { names[$0] }.joined(separator: ", ") + ")"
            }
            if !n.attrs.isEmpty {
                line += " {" + n.attrs.entries.map { "\($0.0): \($0.1)" }.joined(separator: ", ") + "}"
            }
            line += " : \(n.type)"
            out += line + "\n"
        }
        for o in g.outputs { out += "  output \(o.name) = \(names[o.value])\n" }
        return out + "}\n"
    }
}
