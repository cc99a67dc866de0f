import Testing
import KilnBasics
import KilnIR
import KilnFrontend

@Suite struct IRTests {
    static let examples = ["examples/char-gpt.kiln", "examples/gpt2-small.kiln", "examples/odd-postnorm.kiln"]

    @Test(arguments: examples)
    func printedIRParsesBackToTheSameText(_ path: String) throws {
        let (g, diags, _) = compile(readRepoFile(path), path: path)
        let graph = try #require(g, "\(diags)")
        let text = IRPrinter.print(graph)
        let reparsed = try IRParser.parse(text)
        #expect(IRPrinter.print(reparsed) == text)
        #expect(reparsed.nodes.count == graph.nodes.count)
        #expect(reparsed.outputs == graph.outputs)
    }

    @Test func parsesAHandWrittenGraph() throws {
        let g = try parseIR("""
        graph Tiny {
          dim B
          dim T <= 8
          %tokens = input : i32[B, T]
          %e.weight = param {init: normal, std: 0.02} : f32[10, 4]
          %0 = embedding(%e.weight, %tokens) : f32[B, T, 4]
          %1 = gelu(%0) : f32[B, T, 4]
          output y = %1
        }
        """)
        #expect(g.nodes.count == 4)
        #expect(g.nodes[3].kind == .gelu)
        #expect(g.bound(of: .sym("T")) == 8)
        #expect(g.nodes[1].attrs.float("std") == 0.02)
    }

    @Test(arguments: [
        ("graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %0 = relu(%x) : f32[B, 5]\n  output y = %0\n}", "type rule gives f32[B, 4]"),
        ("graph G {\n  %x = input : f32[Q, 4]\n  output y = %x\n}", "undeclared dim Q"),
        ("graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %0 = frobnicate(%x) : f32[B, 4]\n  output y = %0\n}", "unknown op 'frobnicate'"),
        ("graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %0 = relu(%y) : f32[B, 4]\n  output y = %0\n}", "unknown operand"),
        ("graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %0 = scale(%x) : f32[B, 4]\n  output y = %0\n}", "missing attribute 'factor'"),
        ("graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %0 = relu(%x) {bogus: 1} : f32[B, 4]\n  output y = %0\n}", "unexpected attribute 'bogus'"),
        ("graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %w = param {init: zeros} : f32[3, 5]\n  %0 = linear(%x, %w) : f32[B, 3]\n  output y = %0\n}", "weight expects 5"),
        ("graph G {\n  dim B\n  %x = input : f32[B, 4]\n}", "graph has no outputs"),
        ("graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %x = relu(%x) : f32[B, 4]\n  output y = %x\n}", "defined twice"),
        ("graph G {\n  dim B\n  %x = input : f32[B, 4\n  output y = %x\n}", "expected ']'"),
        ("graph G {\n  dim B\n  %dy = input : f32[B, 3]\n  %w = param {init: zeros} : f32[3, 4]\n  %0 = linear_grad_input(%dy, %w, %dy) {accumulate: true} : f32[B, 4]\n  output y = %0\n}",
         "the accumulated gradient must have the result's type f32[B, 4], got f32[B, 3]"),
        ("graph G {\n  dim B\n  %dy = input : f32[B, 3]\n  %w = param {init: zeros} : f32[3, 4]\n  %0 = linear_grad_input(%dy, %w, %dy) : f32[B, 4]\n  output y = %0\n}",
         "linear_grad_input takes 2 operands, got 3"),
    ])
    func rejectsInvalidIR(_ text: String, _ expected: String) {
        do {
            _ = try IRParser.parse(text)
            Issue.record("accepted invalid IR")
        } catch {
            #expect("\(error)".contains(expected), "\(error)")
        }
    }

    @Test func attributesRoundTripExactly() throws {
        for v in [0.1, 1e-5, 0.005773502691896258, 2.0, -1.0, 1e300] {
            let text = "graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %0 = scale(%x) {factor: \(AttrValue.float(v))} : f32[B, 4]\n  output y = %0\n}\n"
            let g = try parseIR(text)
            #expect(g.nodes[1].attrs.float("factor") == v)
        }
    }
}
