import KilnBasics
import KilnIR

/// The `weights { … }` section: each parameter of the lowered graph gets its source in the other library's
/// checkpoint (KilnIR's `WeightSources`), checked against the parameter's shape.
extension Lowering {
    func resolveWeights(_ section: WeightsSection) -> WeightSources? {
        let params = graph.nodes.filter { $0.kind == .param }
        var sources: [String: ParamSource] = [:]
        var used = Array(repeating: false, count: section.entries.count)
        var unmatched: [String] = []
        for p in params {
            let name = p.name!
            guard let k = section.entries.firstIndex(where: { WeightSources.match($0.pattern, name) != nil }) else {
                unmatched.append(name)
                continue
            }
            used[k] = true
            let e = section.entries[k]
            let captures = WeightSources.match(e.pattern, name)!
            if let s = source(e.source, param: p, captures: captures) { sources[name] = s }
        }
        for (k, e) in section.entries.enumerated() where !used[k] {
            let example = params.first?.name.map { " (its parameters are named like '\($0)')" } ?? ""
            diags.error("'\(e.pattern)' matches no parameter of the model\(example)", at: e.range)
        }
        if !unmatched.isEmpty {
            let shown = unmatched.prefix(3).map { "'\($0)'" }.joined(separator: ", ")
            diags.error("the weights section gives no source for \(unmatched.count == 1 ? "parameter" : "\(unmatched.count) parameters, e.g.") \(shown)", at: section.range)
        }
        return diags.hasErrors ? nil : WeightSources(params: sources, ignore: section.ignore.map(\.0))
    }

    /// One parameter's source: the file's tensor name with the pattern's captures, and the slice and
    /// transposition, checked against the parameter's shape.
    private func source(_ e: WeightSourceExpr, param p: Node, captures: [Substring]) -> ParamSource? {
        let dims = p.type.shape.dims.map { $0.constValue ?? 0 }
        var slice: (axis: Int, start: Int, size: Int, range: SourceRange)?
        var transposed = false
        var e = e
        // outermost first: transpose(slice(t)) slices the file's tensor; slice(transpose(t)) slices the transposed one
        var sliceOfTransposed = false
        while true {
            switch e {
            case .tensor(let pattern, let r):
                let stars = pattern.filter { $0 == "*" }.count
                guard stars <= captures.count else {
                    diags.error("'\(pattern)' has \(stars) '*' but the parameter pattern has \(captures.count)", at: r)
                    return nil
                }
                guard !pattern.isEmpty else { diags.error("empty tensor name", at: r); return nil }
                var s = ParamSource(tensor: WeightSources.substitute(pattern, captures), transposed: transposed)
                if let sl = slice {
                    // the slice's axis in the file's tensor
                    let axis = sliceOfTransposed ? 1 - sl.axis : sl.axis
                    // its size is the parameter's along the matching axis
                    let paramAxis = transposed ? 1 - axis : axis
                    guard sl.size == dims[paramAxis] else {
                        diags.error("slice size \(sl.size) differs from the parameter's dimension \(dims[paramAxis]) (\(p.name!) is \(p.type))", at: sl.range)
                        return nil
                    }
                    s.sliceAxis = axis
                    s.sliceStart = sl.start
                }
                return s
            case .transpose(let inner, let r):
                guard dims.count == 2 else { diags.error("transpose needs a matrix; \(p.name!) is \(p.type)", at: r); return nil }
                guard !transposed else { diags.error("transpose twice is no transpose", at: r); return nil }
                transposed = true
                if slice != nil { sliceOfTransposed = true }  // slice(transpose(t)): the slice's axis is the transposed one's
                e = inner
            case .slice(let inner, let axisE, let startE, let sizeE, let r):
                guard slice == nil else { diags.error("only one slice per source", at: r); return nil }
                guard let axis = int(axisE, "axis"), let start = int(startE, "start"), let size = int(sizeE, "size") else { return nil }
                guard axis >= 0 && axis < dims.count else {
                    diags.error("slice axis \(axis) is out of range for \(p.name!) of rank \(dims.count)", at: axisE.range)
                    return nil
                }
                guard start >= 0 && size > 0 else { diags.error("slice start must be >= 0 and size > 0", at: r); return nil }
                slice = (axis, start, size, r)
                e = inner
            }
        }
    }

    private func int(_ e: Expr, _ what: String) -> Int? {
        guard let v = try? eval(e) else { return nil }
        if case .int(let i) = v { return i }
        if case .poison = v { return nil }
        diags.error("slice \(what) must be an integer", at: e.range)
        return nil
    }
}
