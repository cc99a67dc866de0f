import KilnBasics
import KilnIR

/// Emits one entry point of a model: its arena layout and its C function, which binds the call's inputs,
/// outputs, state and dims to named locals, then runs one kernel call per IR node (each under a comment that
/// gives the node), with activations in slots of one arena (`MemoryPlan`).
struct FunctionEmitter {
    let g: Graph
    let plan: MemoryPlan
    let real: String
    /// `%name` of each node in the IR text.
    let names: [String]
    /// Parameters stored in the matrix-product engine's panel layout (inference functions only).
    let packed: Set<Int>
    /// The function's symbolic dims, in the order of `call->dims`.
    let dims: [SymbolicDim]
    /// C names of the function's inputs, outputs and state tensors.
    let inputNames: [Int: String]
    let outputNames: [String]
    let stateNames: [Int: String]
    /// Outputs computed elsewhere than in their own memory (an input, a parameter, a view, a second output
    /// of one value): copied at the end.
    let copiedOutputs: [(Int, Int)]
    /// Where each gradient of `train_step` goes in the gradient block (by output name).
    let gradOffsets: [String: Int]

    /// The C name of the function (`fn_forward`).
    var cName: String { "fn_" + g.function }

    /// `stateTable`: the names of the model's state tensors, in the order of its state table.
    init(g: Graph, real: String, packed: Set<Int>, paramOffsets: [String: Int], stateTable: [String]) throws {
        self.g = g; self.real = real; self.packed = packed
        for i in g.states where !stateTable.contains(g.nodes[i].name ?? "") {
            throw CodegenError(description: "\(g.function): state '\(g.nodes[i].name ?? "")' is not in the model's state table")
        }
        self.stateTable = stateTable
        var used = Set<String>()
        for i in g.inputs + g.states { for d in g.nodes[i].type.shape.dims { if case .sym(let s) = d { used.insert(s) } } }
        dims = g.dims.filter { used.contains($0.name) }
        for n in g.nodes {
            for d in n.type.shape.dims {
                if case .sym(let s) = d, !used.contains(s) {
                    throw CodegenError(description: "\(g.function): dim \(s) is not the size of any input, so a call cannot give it")
                }
            }
        }
        // C names: the IR names where they are identifiers that nothing else in the function uses
        var taken: Set<String> = ["params", "grads", "arena", "off", "call", "state", "real", "seed"]
        for d in g.dims { taken.insert(d.name) }
        func cIdentifier(_ name: String, _ fallback: String) -> String {
            var s = String(name.map { $0.isLetter || $0.isNumber || $0 == "_" ? $0 : "_" })
            if s.isEmpty || s.first!.isNumber { s = fallback + "_" + s }
            while taken.contains(s) { s += "_" }
            taken.insert(s)
            return s
        }
        var inputs: [Int: String] = [:], states: [Int: String] = [:]
        for i in g.inputs { inputs[i] = cIdentifier(g.nodes[i].name ?? "input", "in") }
        for i in g.states { states[i] = cIdentifier(g.nodes[i].name ?? "state", "state") }
        inputNames = inputs
        stateNames = states
        let results = g.outputs.filter { !$0.name.hasPrefix("grad.") }
        outputNames = results.map { cIdentifier($0.name, "out") }
        // where outputs live: their own memory when an op computes them there, else a copy at the end
        var external: [Int: String] = [:]
        var copies: [(Int, Int)] = []
        var grads: [String: Int] = [:]
        for (k, o) in results.enumerated() {
            let n = g.nodes[o.value], traits = n.kind.traits
            let inPlace = (n.kind.definition as? any InPlaceLowering)?.inPlaceOperand(n) != nil
            if external[o.value] == nil && !traits.contains(.leaf) && !traits.contains(.view) && !inPlace {
                external[o.value] = outputNames[k]
            } else {
                copies.append((k, o.value))
            }
        }
        for o in g.outputs where o.name.hasPrefix("grad.") {
            guard let off = paramOffsets[String(o.name.dropFirst(5))] else {
                throw CodegenError(description: "\(g.function): output \(o.name) is not the gradient of a parameter")
            }
            grads[o.name] = off
            if external[o.value] == nil { external[o.value] = "(grads + \(off))" }
        }
        gradOffsets = grads
        copiedOutputs = copies
        plan = MemoryPlan(g, external: external, packed: packed, paramOffsets: paramOffsets)
        var counter = 0
        names = g.nodes.map { n in
            if let name = n.name { return "%" + name }
            defer { counter += 1 }
            return "%\(counter)"
        }
    }

    /// The function's signature as a comment: `forward(tokens: i32[B, T]) -> (logits: f32[B, T, 256])`.
    var signature: String {
        let ins = g.inputs.map { "\(g.nodes[$0].name!): \(g.nodes[$0].type)" }.joined(separator: ", ")
        let outs = g.outputs.filter { !$0.name.hasPrefix("grad.") }.map { "\($0.name): \(g.nodes[$0.value].type)" }
        let grads = g.outputs.contains { $0.name.hasPrefix("grad.") } ? ["the gradient of every parameter"] : []
        return "\(g.function)(\(ins)) -> (\((outs + grads).joined(separator: ", ")))"
    }

    /// `static size_t fn_NAME_layout(const int64_t *dims, size_t off[])`: slot k starts at off[k]; and the arena size.
    func layout() -> String {
        let slots = max(plan.slotSizes.count, 1)
        var out = "/* \(g.function)'s activations: slot k of the arena starts at off[k] elements; returns the total */\n"
        out += "static size_t \(cName)_layout(const int64_t *dims, size_t off[\(slots)]) {\n"
        out += dimLocals("dims")
        out += "    size_t total = 0;\n"
        for (k, s) in plan.slotSizes.enumerated() {
            out += "    off[\(k)] = total; total += KILN_ALIGN(\(s.cExpression));\n"
        }
        if plan.slotSizes.isEmpty { out += "    off[0] = 0;\n" }
        out += unusedDims()
        out += "    return total;\n}\n\n"
        out += """
        static size_t \(cName)_arena(const int64_t *dims) {
            size_t off[\(slots)];
            return \(cName)_layout(dims, off);
        }


        """
        return out
    }

    func dimLocals(_ array: String) -> String {
        dims.isEmpty ? "" : "    const int " + dims.enumerated().map { "\($0.element.name) = (int)\(array)[\($0.offset)]" }.joined(separator: ", ") + ";\n"
    }
    func unusedDims() -> String {
        dims.isEmpty ? "" : "    " + dims.map { "(void)\($0.name);" }.joined(separator: " ") + "\n"
    }

    /// The C type of a tensor's elements.
    func cType(_ t: DType) -> String {
        switch t { case .f32, .f64: real; case .i32: "int32_t"; case .i64: "int64_t" }
    }

    /// The function itself.
    func function() throws -> String {
        let slots = max(plan.slotSizes.count, 1)
        var out = "/* \(signature) */\n"
        out += "static void \(cName)(const kiln_call *call) {\n"
        out += dimLocals("call->dims")
        out += "    const real *params = call->params;\n"
        if !gradOffsets.isEmpty { out += "    real *grads = call->grads;\n" }
        out += "    real *arena = call->arena;\n"
        for (k, i) in g.inputs.enumerated() {
            let t = cType(g.nodes[i].type.dtype)
            out += "    const \(t) *\(inputNames[i]!) = (const \(t) *)call->inputs[\(k)];  /* \(g.nodes[i].type) */\n"
        }
        for (k, name) in outputNames.enumerated() {
            let o = g.outputs.filter { !$0.name.hasPrefix("grad.") }[k]
            out += "    real *\(name) = (real *)call->outputs[\(k)];  /* \(g.nodes[o.value].type) */\n"
        }
        for i in g.states {
            out += "    real *\(stateNames[i]!) = call->state[\(stateIndex(i))];  /* \(g.nodes[i].type) */\n"
        }
        out += "    size_t off[\(slots)];\n"
        out += "    \(cName)_layout(call->dims, off);\n"
        out += try body(indent: "    ")
        for (k, v) in copiedOutputs {
            out += "    memcpy(\(outputNames[k]), \(ptr(v)), \(count(v)) * sizeof(real));\n"
        }
        out += unusedDims()
        out += "    (void)params; (void)arena;\n"
        return out + "}\n\n"
    }

    /// The names of the model's state tensors, in table order (the index of each is its `call->state[i]`).
    let stateTable: [String]
    func stateIndex(_ i: Int) -> Int { stateTable.firstIndex(of: g.nodes[i].name!)! }

    func body(indent: String) throws -> String {
        var out = ""
        for (idx, n) in g.nodes.enumerated() where !n.kind.hasDeclaredType {
            var attrs = ""
            if !n.attrs.isEmpty { attrs = " {" + n.attrs.entries.map { "\($0.0): \($0.1)" }.joined(separator: ", ") + "}" }
            out += "\n\(indent)/* \(names[idx]) = \(n.kind.rawValue)(\(n.operands.map { names[$0] }.joined(separator: ", ")))\(attrs) : \(n.type) */\n"
            out += try call(idx).split(separator: "\n", omittingEmptySubsequences: false).map { indent + $0 }.joined(separator: "\n") + "\n"
        }
        // A gradient not computed in its place of the gradient block (two parameters with one gradient) is copied.
        for o in g.outputs where o.name.hasPrefix("grad.") {
            let dst = "(grads + \(gradOffsets[o.name]!))"
            if plan.storage[o.value] != .external(dst) {
                out += "\(indent)memcpy(\(dst), \(ptr(o.value)), \(count(o.value)) * sizeof(real));\n"
            }
        }
        return out
    }

    /// A C expression for the memory of a value.
    func ptr(_ i: Int) -> String {
        switch plan.storage[i] {
        case .input: return inputNames[i]!
        case .state: return stateNames[root(i)]!
        case .param(let off): return "(params + \(off))"
        case .slot(let s): return "(arena + off[\(s)])"
        case .external(let e): return e
        case .view(let src):
            if let off = plan.viewOffset[i], off != SizeExpr(constant: 0) { return "(\(ptr(src)) + \(off.cExpression))" }
            return ptr(src)
        }
    }

    /// The state node a value aliases (itself, or the state an in-place write wrote).
    func root(_ i: Int) -> Int {
        if g.nodes[i].kind == .state { return i }
        if let a = MemoryPlan.inPlaceOperand(g, i) { return root(a) }
        return i
    }

    func workspace(_ i: Int) -> String { "(arena + off[\(plan.workspace[i]!)])" }

    /// Element count of a value as a C expression.
    func count(_ i: Int) -> String { g.nodes[i].type.shape.elementCount.cExpression }
    func rows(_ t: TensorType) -> String { Shape(Array(t.shape.dims.dropLast())).elementCount.cExpression }
    func lastDim(_ t: TensorType) -> String { t.shape.dims.last.map(\.description) ?? "1" }
    func type(_ i: Int) -> TensorType { g.nodes[i].type }

    /// The C statements of one node: its op's lowering (`CLowering.call`).
    func call(_ idx: Int) throws -> String {
        try g.nodes[idx].kind.lowering().call(CallContext(f: self, index: idx))
    }
}
