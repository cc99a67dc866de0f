import Foundation
import Testing
import KilnBasics
import KilnIR
@testable import KilnCodegenC

/// Walks every op of the registry and checks that its definition is complete: an example that parses,
/// a derivative (or a refusal, for backward ops), a FLOP count, a C lowering and a kernel file.
@Suite struct OpRegistryTests {
    static let ops = OpRegistry.all.map(\.name)

    @Test func theRegistryHoldsEveryOpOnce() {
        #expect(Set(Self.ops).count == Self.ops.count)
        for name in ["input", "param", "linear", "layernorm", "attention", "relu_grad", "gelu_tanh", "fused", "cross_entropy"] {
            #expect(Self.ops.contains(name), "\(name)")
        }
    }

    /// The node of an op's example that is the op itself.
    func example(_ name: String) throws -> (Graph, Int) {
        let def = try #require(OpRegistry.byName[name])
        let g = try parseIR(def.example)
        let i = try #require(g.nodes.firstIndex { $0.kind.name == name }, "the example of \(name) does not use it")
        return (g, i)
    }

    @Test(arguments: ops)
    func exampleParsesAndHasASummary(_ name: String) throws {
        let (g, i) = try example(name)
        #expect(g.nodes[i].kind.definition.summary.count > 10)
        #expect(g.nodes[i].operands.count <= g.nodes[i].kind.arity.upperBound)
    }

    @Test(arguments: ops)
    func derivativeGivesEachOperandAGradientOfItsType(_ name: String) throws {
        let (g, i) = try example(name)
        let n = g.nodes[i]
        var b = GraphBuilder(graph: g)
        let dy = b.graph.add(Node(.input, type: n.type, name: "dy_of_test"))
        let wanted = Set(n.operands.filter { g.nodes[$0].type.dtype.isFloat })
        var d = Differentiation(builder: b, index: i, gradient: dy, wanted: { wanted.contains($0) })
        if !n.kind.isDifferentiable {
            #expect(throws: (any Error).self) { try n.kind.definition.differentiate(&d) }
            return
        }
        try n.kind.definition.differentiate(&d)
        for (k, grad) in d.given {
            #expect(d.builder.graph.nodes[grad].type == g.nodes[n.operands[k]].type, "\(name): gradient of operand \(k)")
        }
        for k in n.operands.indices where wanted.contains(n.operands[k]) {
            #expect(d.given.contains { $0.0 == k }, "\(name) gives operand \(k) no gradient")
        }
        try Verifier.verify({ var t = d.builder.graph; t.outputs = [GraphOutput(name: "y", value: t.nodes.count - 1)]; return t }())
    }

    /// Ops that only move or look up data count no FLOPs; every other op counts some at these sizes.
    static let dataMovement: Set = ["input", "transpose", "split_last", "merge_last", "unsqueeze", "squeeze", "range", "slice", "slice_grad", "concat", "gather", "param", "state", "scalar", "embedding", "slice_rows", "pad_rows", "select", "sinusoidal",
                                    "take", "take_grad", "shift", "cache_write", "cache_write_mask"]

    @Test(arguments: ops)
    func flopsAreCountedForEveryComputingOp(_ name: String) throws {
        let (g, i) = try example(name)
        let n = g.nodes[i]
        let f = n.kind.definition.flops(FlopContext(node: n, operands: n.operands.map { g.nodes[$0].type }, env: ["B": 2, "T": 3]))
        if Self.dataMovement.contains(name) { #expect(f == 0) } else { #expect(f > 0, "\(name) counts no FLOPs") }
    }

    @Test(arguments: ops)
    func everyOpHasACLoweringAndItsKernelFileExists(_ name: String) throws {
        let kind = OpKind(name)
        let lowering = try kind.lowering()
        if let file = lowering.kernelFile {
            #expect(FileManager.default.fileExists(atPath: repoRoot + "/runtime/kernels/" + file), "\(name): runtime/kernels/\(file)")
        } else {
            #expect(kind.traits.contains(.leaf) || kind.traits.contains(.view) || name == "scalar", "\(name) has no kernel")
        }
    }

    /// docs/ir.md's tables of ops, made from the registry: one row per op with its summary and attributes.
    static func opTables() -> String {
        func row(_ d: any OpDefinition) -> String {
            var attrs = d.attributes
            if d.traits.contains(.accumulates) { attrs.append(accumulateKey.spec) }
            let a = attrs.map { spec -> String in
                let suffix = spec.defaultValue.map { " = \($0)" } ?? (spec.isOptional ? "?" : "")
                return "`\(spec.name)`" + suffix
            }
            return "| `\(d.name)` | \(d.summary.replacingOccurrences(of: "|", with: "\\|")) | \(a.isEmpty ? "—" : a.joined(separator: ", ")) |\n"
        }
        let ops = OpRegistry.all.sorted { $0.name < $1.name }
        var out = "Ops of models (and of the passes and entry-point transforms that rewrite them):\n\n"
        out += "| op | operands → result | attributes (= default; ? optional) |\n|---|---|---|\n"
        for d in ops where !d.traits.contains(.gradient) { out += row(d) }
        out += "\nOps of training graphs (made by autodiff; none of them is differentiated again):\n\n"
        out += "| op | operands → result | attributes (= default; ? optional) |\n|---|---|---|\n"
        for d in ops where d.traits.contains(.gradient) { out += row(d) }
        return out
    }

    /// The tables in docs/ir.md are the registry's; KILN_RECORD=1 rewrites them.
    @Test func docsListEveryOpWithItsSummary() throws {
        let path = repoRoot + "/docs/ir.md"
        let doc = try String(contentsOfFile: path, encoding: .utf8)
        let begin = "<!-- ops: made from the registry by OpRegistryTests; KILN_RECORD=1 swift test rewrites them -->\n"
        let end = "<!-- ops: end -->\n"
        let start = try #require(doc.range(of: begin), "docs/ir.md has no ops section"), stop = try #require(doc.range(of: end))
        let tables = Self.opTables()
        if ProcessInfo.processInfo.environment["KILN_RECORD"] == "1" {
            try (String(doc[..<start.upperBound]) + tables + String(doc[stop.lowerBound...])).write(toFile: path, atomically: true, encoding: .utf8)
            return
        }
        #expect(String(doc[start.upperBound..<stop.lowerBound]) == tables, "docs/ir.md's op tables are stale: run KILN_RECORD=1 swift test")
    }

    // An attribute has one typed default, and the verifier checks its kind against the op's spec.
    @Test func typedAttributesHaveOneDefaultAndAreChecked() throws {
        var a = Attributes()
        #expect(a[Linear.activation] == "none" && a[Linear.residual] == false && a[Param.std] == 0.02)
        a.set(Linear.activation, "gelu")
        #expect(a[Linear.activation] == "gelu" && a.value(Linear.residual) == nil)
        for (attr, expected) in [("{activation: swish}", "attribute 'activation' must be none or relu"),
                                 ("{residual: 3}", "attribute 'residual' must be true or false")] {
            let text = "graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %w = param {init: zeros} : f32[4, 4]\n  %0 = linear(%x, %w) \(attr) : f32[B, 4]\n  output y = %0\n}"
            #expect(throws: (any Error).self) { try IRParser.parse(text) }
            do { _ = try IRParser.parse(text) } catch { #expect("\(error)".contains(expected), "\(error)") }
        }
    }
}
