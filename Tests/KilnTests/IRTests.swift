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
        ("graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %0 = fused(%x) {expr: \"softmax(x0)\"} : f32[B, 4]\n  output y = %0\n}",
         "'softmax' is not an operand x0, x1, … or an elementwise op"),
        ("graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %0 = fused(%x, %x) {expr: \"relu(x0)\"} : f32[B, 4]\n  output y = %0\n}",
         "operand x1 is not used by its expr"),
        ("graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %0 = fused(%x) {expr: \"add(x0, x1)\"} : f32[B, 4]\n  output y = %0\n}",
         "x1 is not an operand (the op has 1)"),
        ("graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %c = input : f32[B, 1]\n  %0 = fused(%x, %c) {expr: \"mul(x0, x1)\"} : f32[B, 4]\n  output y = %0\n}",
         "operand x1 [B, 1] is not a suffix of the result's shape [B, 4]"),
        ("graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %0 = fused(%x) {expr: \"scale(x0, 2.0\"} : f32[B, 4]\n  output y = %0\n}",
         "bad expr \"scale(x0, 2.0\" at character 14: expected ')'"),
        ("graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %0 = fused(%x) {expr: \"relu(x0)} : f32[B, 4]\n  output y = %0\n}",
         "unterminated string"),
        ("graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %0 = fused(%x) : f32[B, 4]\n  output y = %0\n}",
         "missing attribute 'expr'"),
        ("graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %w = param {init: zeros} : f32[4, 4]\n  %0 = linear(%x, %w) {residual: \"*/ int x; /*\"} : f32[B, 4]\n  output y = %0\n}",
         "attribute 'residual' cannot be a quoted text"),
        ("graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %0 = scale(%x) {factor: 1e300} : f32[B, 4]\n  output y = %0\n}",
         "scale factor 1e+300 is not a finite f32 number"),
    ])
    func rejectsInvalidIR(_ text: String, _ expected: String) {
        do {
            _ = try IRParser.parse(text)
            Issue.record("accepted invalid IR")
        } catch {
            #expect("\(error)".contains(expected), "\(error)")
        }
    }

    // A fused op's expression is a quoted attribute; it prints back as it was read, factors exact.
    @Test func fusedExpressionsRoundTrip() throws {
        let text = """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %c = input : f32[4]
          %0 = fused(%x, %c) {expr: "sub(gelu_tanh(add(x0, x1)), scale(div(relu(x0), gelu(x1)), 0.005773502691896258))"} : f32[B, 4]
          output y = %0
        }

        """
        let g = try parseIR(text)
        #expect(IRPrinter.print(g) == text)
        let e = try FusedExpr.parse(g.nodes[2].attrs.string("expr")!)
        #expect(e.ops == [.sub, .geluTanh, .add, .scale, .div, .relu, .gelu])
        if case .binary(_, _, .scale(_, let f)) = e { #expect(f == 0.005773502691896258) } else { Issue.record("wrong tree \(e)") }
    }

    @Test func attributesRoundTripExactly() throws {
        for v in [0.1, 1e-5, 0.005773502691896258, 2.0, -1.0, 1e300] {
            let text = "graph G {\n  dim B\n  %x = input : f64[B, 4]\n  %0 = scale(%x) {factor: \(AttrValue.float(v))} : f64[B, 4]\n  output y = %0\n}\n"
            let g = try parseIR(text)
            #expect(g.nodes[1].attrs.float("factor") == v)
        }
    }
}

/// Which bounded dims a function needs within their bounds (Sources/KilnIR/LengthLimits.swift).
@Suite struct LengthLimitTests {
    static func graph(_ positions: String) throws -> Graph {
        try parseIR("""
        graph G {
          dim B
          dim T <= 4
          %tokens = input {role: tokens, limit: 5} : i32[B, T]
          %e = param {init: normal, std: 0.02} : f32[5, 4]
          %pos = param {init: normal, std: 0.02} : f32[4, 4]
          %0 = embedding(%e, %tokens) : f32[B, T, 4]
          \(positions)
          %2 = add(%0, %1) : f32[B, T, 4]
          %3 = attention(%2, %2, %2) {heads: 2, causal: true} : f32[B, T, 4]
          output y = %3
        }
        """)
    }

    @Test func learnedPositionsNeedTheBoundComputedOnesDoNot() throws {
        let learned = try Self.graph("%1 = slice_rows(%pos) {rows: T} : f32[T, 4]").lengthLimits()
        #expect(learned["T"] == .some("slice_rows of 'pos' f32[4, 4]"))
        #expect(learned["B"] == nil)  // unbounded dims are not listed
        let computed = try Self.graph("%1 = sinusoidal() {rows: T, dim: 4} : f32[T, 4]").lengthLimits()
        #expect(computed["T"] == .some(nil))
    }
}
