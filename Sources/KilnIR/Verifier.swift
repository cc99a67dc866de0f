import KilnBasics

/// Checks the structural and type invariants of a graph:
/// operands precede their users, arities and attributes fit the op,
/// every stated type equals the type rule's result, every symbolic dim is
/// declared, names of inputs and params are unique, outputs exist.
public enum Verifier {
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var messages: [String]
        public var description: String { messages.joined(separator: "\n") }
    }

    public static func verify(_ g: Graph) throws {
        var errors: [String] = []
        let declared = Set(g.dims.map(\.name))
        var names = Set<String>()
        for (i, n) in g.nodes.enumerated() {
            let at = "node %\(i) (\(n.kind.rawValue))"
            for o in n.operands where o < 0 || o >= i { errors.append("\(at): operand %\(o) is not defined before use") }
            if !n.kind.arity.contains(n.operands.count) { errors.append("\(at): wrong number of operands \(n.operands.count)") }
            for d in n.type.shape.dims {
                if case .sym(let s) = d, !declared.contains(s) { errors.append("\(at): undeclared dim \(s)") }
                if case .const(let c) = d, c <= 0 { errors.append("\(at): non-positive dim \(c)") }
            }
            var specs = n.kind.definition.attributes
            if n.kind.acceptsAccumulate { specs.append(accumulateKey.spec) }
            for (k, v) in n.attrs.entries {
                guard let spec = specs.first(where: { $0.name == k }) else { errors.append("\(at): unexpected attribute '\(k)'"); continue }
                if case .string = v, spec.kind != .string { errors.append("\(at): attribute '\(k)' cannot be a quoted text"); continue }
                if !spec.kind.accepts(v) { errors.append("\(at): attribute '\(k)' must be \(spec.kind), got \(v)") }
            }
            for s in specs where s.isRequired && n.attrs[s.name] == nil { errors.append("\(at): missing attribute '\(s.name)'") }
            if n.kind.hasDeclaredType {
                guard let name = n.name, !name.isEmpty else { errors.append("\(at): missing name"); continue }
                if !(name.first.map { $0.isLetter || $0 == "_" } ?? false) { errors.append("\(at): name '\(name)' must start with a letter") }
                if !names.insert(name).inserted { errors.append("\(at): duplicate name '\(name)'") }
                if n.kind == .param, !n.type.dtype.isFloat { errors.append("\(at): param must be a float tensor") }
                continue
            }
            guard n.operands.allSatisfy({ $0 >= 0 && $0 < i }) else { continue }
            do {
                let t = try n.kind.inferType(n.operands.map { g.nodes[$0].type }, n.attrs, bound: g.bound(of:))
                if t != n.type { errors.append("\(at): stated type \(n.type) but the type rule gives \(t)") }
            } catch let e as TypeError {
                errors.append("\(at): \(e.message)")
            }
        }
        if g.outputs.isEmpty && !g.nodes.contains(where: { $0.kind.traits.contains(.effect) }) {
            errors.append("graph has no outputs and no effect (it computes nothing)")
        }
        for o in g.outputs where o.value < 0 || o.value >= g.nodes.count { errors.append("output \(o.name) refers to a missing node") }
        if !errors.isEmpty { throw Failure(messages: errors) }
    }
}
