import KilnBasics
import KilnIR

/// The loss of an objective, built into a graph: each term's target inputs and loss ops, weighted and summed.
enum Objectives {
    /// Appends the objective's loss to the graph and returns its node (a scalar).
    /// The loss reads the model's outputs (`outputs`, the graph's outputs before the function replaced them).
    static func build(_ objective: Objective, _ b: inout GraphBuilder, outputs: [GraphOutput]) throws -> Int {
        var total: Int?
        for term in objective.terms {
            var l = try loss(term.loss, &b, outputs)
            if term.weight != 1 { l = b.emit(.scale, [l], [(Scale.factor.name, .float(term.weight))]) }
            total = total.map { b.emit(.add, [$0, l]) } ?? l
        }
        guard let total else { throw Autodiff.Failure(description: "the objective has no terms") }
        return total
    }

    static func output(_ name: String, _ outputs: [GraphOutput]) throws -> Int {
        guard let o = outputs.first(where: { $0.name == name }) else {
            throw Autodiff.Failure(description: "the objective reads an output named '\(name)', which the model does not have")
        }
        return o.value
    }

    static func input(_ name: String, _ b: GraphBuilder) throws -> Int {
        guard let i = b.graph.inputs.first(where: { b.graph.nodes[$0].name == name }) else {
            throw Autodiff.Failure(description: "the objective reads an input named '\(name)', which the model does not have")
        }
        return i
    }

    static func loss(_ loss: Objective.Loss, _ b: inout GraphBuilder, _ outputs: [GraphOutput]) throws -> Int {
        switch loss {
        case .nextToken(let name), .maskedTokens(let name, _, _):
            // targets: the token after each position (next_token), or the chosen positions' tokens and -1
            // elsewhere (masked_lm), shaped like the logits without their last dim
            let what = if case .nextToken = loss { "next_token" } else { "masked_lm" }
            let logits = try output(name, outputs), t = b.type(logits)
            guard t.dtype.isFloat, t.shape.rank >= 2, let v = t.shape.last?.constValue else {
                throw Autodiff.Failure(description: "\(what) needs logits [B, T, V], got '\(name)' \(t)")
            }
            var attrs = Attributes()
            attrs.set(Input.role, Word(Input.Role.targets.rawValue))
            attrs.set(Input.limit, v)
            let masked = what == "masked_lm"
            if masked { attrs.set(Input.ignore, -1) }
            let targets = b.graph.add(Node(.input, attrs: attrs, type: TensorType(.i32, Array(t.shape.dims.dropLast())), name: "targets"))
            return b.emit(.crossEntropy, [logits, targets], masked ? [(CrossEntropy.ignore.name, .int(-1))] : [])
        case .output(let name):
            let o = try output(name, outputs)
            guard b.type(o).shape.rank == 0, b.type(o).dtype.isFloat else {
                throw Autodiff.Failure(description: "the loss term '\(name)' must be a scalar output, got \(b.type(o))")
            }
            return o
        case .crossEntropy(let name, let targets, let ignore, let smoothing):
            var attrs: [(String, AttrValue)] = []
            if let ignore { attrs.append((CrossEntropy.ignore.name, .int(ignore))) }
            if smoothing != 0 { attrs.append((CrossEntropy.smoothing.name, .float(smoothing))) }
            return b.emit(.crossEntropy, [try output(name, outputs), try input(targets, b)], attrs)
        case .meanSquaredError(let name, let targets):
            return b.emit(.mse, [try output(name, outputs), try input(targets, b)])
        }
    }
}
