import Testing
import KilnBasics
import KilnIR
import KilnFrontend

/// Malformed model files and the diagnostics they must produce
/// (`file:line:col: error: message`, the line, a caret).
@Suite struct DiagnosticTests {
    static let header = "model M\nconfig { vocab = 50, dim = 16, heads = 2, context = 8 }\ninput tokens: i32[B, T] where T <= context\n"

    /// (source after the header, expected "line:col: error: text" fragment)
    static let cases: [(String, String)] = [
        ("h = embed(tokens, vocab, dim)\noutput y = linear(h, vocab\n", "6:1: error: expected ',' or ')' in the call to 'linear', found end of file"),
        ("h = embed(tokens, vocab, dim) + embed(tokens, vocab, 32)\noutput y = h\n", "4:5: error: shapes [B, T, 16] and [B, T, 32] do not match: dim 16 vs 32"),
        ("h = embd(tokens, vocab, dim)\noutput y = h\n", "4:5: error: unknown function 'embd'; did you mean 'embed'?"),
        ("h = embed(tokens, vocab, dim)\noutput y = h * 1e200\n", "5:12: error: scale factor 1e+200 is not a finite f32 number"),
        ("h = embed(tokens, vocab, dim)\noutput y = attention(h, heads: 3)\n", "5:32: error: model dim 16 is not divisible by 3 heads"),
        ("h = embed(tokens, vocab, dim)\noutput y = attention(h, heads: 2, mask: diagonal)\n", "error: mask must be one of none, causal, got unknown name 'diagonal'"),
        ("h = embed(tokens, vocab, dim)\noutput y = ffn(h, hidden: 0)\n", "error: hidden must be positive, got 0"),
        ("h = embed(tokens, vocab, dim)\noutput y = ffn(h, hiden: 4)\n", "error: 'ffn' has no argument named 'hiden'"),
        ("block L(x: f32[B, T, 32]) -> f32[B, T, 32] {\n  return x\n}\nh = embed(tokens, vocab, dim)\noutput y = L(h)\n", "8:14: error: argument 'x' of block 'L' expects f32[B, T, 32], got f32[B, T, 16]"),
        ("block L(x: f32[B, T, dim]) -> f32[B, T, dim] {\n  y = relu(x)\n}\nh = repeat(2, L, embed(tokens, vocab, dim))\noutput y = h\n", "4:7: error: block 'L' has no 'return'"),
        ("h = embed(tokens, vocab, dim)\noutput y = linear(h, 10, tied: nothing)\n", "error: tied: must name an earlier embed"),
        ("h = embed(tokens, vocab, dim) < 1 < 2\noutput y = h\n", "4:35: error: comparisons do not chain"),
        ("h = embed(tokens, vocab, 99999999999999999999999)\noutput y = h\n", "4:26: error: integer '99999999999999999999999' is too large"),
        ("h = embed(tokens, vocab, dim)\noutput y = relu(h) $\n", "5:20: error: unexpected character '$'"),
        ("h = embed(tokens, vocab, dim)\n", "1:7: error: the model has no 'output' statement"),
        ("h = embed(tokens, vocab, dim)\noutput y = positions(learned, B, dim)\n", "error: the sequence length B needs an upper bound"),
        ("block L(x: f32[B, T, dim]) -> f32[B, T, dim] {\n  return L(x)\n}\noutput y = L(embed(tokens, vocab, dim))\n", "error: block 'L' calls itself"),
        ("h = embed(tokens, vocab, dim)\noutput y = repeat(100000, L, h)\n", "error: repeat count 100000 is too large (limit 1000)"),
        ("block L(x: f32[B, T, dim]) -> f32[B, T, dim] {\n  return relu(x)\n}\nh = repeat(2, L, embed(tokens, vocab, dim), halting: 1.5)\noutput y = h\n", "error: halting is adaptive computation time's ε, a number in (0, 1)"),
        ("h = embed(tokens, vocab, dim)\noutput y = ponder_cost(h)\n", "5:24: error: ponder_cost needs the result of a repeat with halting: (adaptive computation time)"),
        ("x = vocab / 0\noutput y = embed(tokens, vocab, dim)\n", "4:5: error: division by zero"),
        ("h = embed(tokens, vocab, dim)\noutput y = layernorm(h, eps: -1.0)\n", "error: eps must be positive"),
        ("h = embed(tokens, vocab, dim)\noutput y = softmax(h, h)\n", "error: too many arguments to 'softmax'"),
        ("input more: q32[B] \noutput y = embed(tokens, vocab, dim)\n", "error: unknown dtype 'q32'"),
        ("input src: i32[B, S] where S <= 6\nm = embed(src, vocab, dim)\nh = embed(tokens, tied: embed)\noutput y = attention(h, heads: 2, memory: m, mask: causal)\n", "7:52: error: mask: causal orders a sequence against itself"),
        ("input src: i32[B, S] where S <= 6\ninput sm: i32[B, S]\nm = embed(src, vocab, dim)\nh = embed(tokens, tied: embed)\noutput y = attention(h, heads: 2, memory: m, padding: tokens)\n", "8:55: error: the padding mask must be an integer tensor [B, S]"),
        ("input src: i32[C, S] where S <= 6\nm = embed(src, vocab, dim)\nh = embed(tokens, vocab, dim, name: e2)\noutput y = attention(h, heads: 2, memory: m)\n", "error: attention's memory must be a [B, S, D] tensor of f32 (one sequence per query sequence), got f32[C, S, 16]"),
        ("h = embed(tokens, vocab, dim)\noutput y = embed(tokens, 40, tied: embed)\n", "5:26: error: vocab 40 does not match the tied table 'embed.weight' of shape [50, 16]"),
        ("output y = embed(tokens, vocab)\n", "4:12: error: missing argument 'dim' in call to 'embed'"),
        ("h = embed(tokens, vocab, 18)\noutput y = attention(h, heads: 2, position: rotary)\n", "5:45: error: rotary positions turn pairs of channels: the head size 9 must be even"),
        ("h = embed(tokens, vocab, dim)\noutput y = attention(h, heads: 2, position: learned)\n", "error: position must be one of none, rotary, alibi, relative, t5"),
        ("h = embed(tokens, vocab, dim)\noutput y = attention(h, heads: 2, position: t5, clip: 4)\n", "5:55: error: clip belongs to position: relative"),
        ("h = embed(tokens, vocab, dim)\noutput y = attention(h, heads: 2, position: t5, buckets: 3)\n", "5:58: error: T5's buckets split in exact and logarithmic ones for each direction: buckets must be at least 4"),
        ("h = embed(tokens, vocab, dim)\noutput y = attention(h, heads: 2, mask: causal, position: t5, buckets: 8, max_distance: 4)\n", "error: max_distance must exceed the 4 exact buckets"),
        ("h = embed(tokens, vocab, dim)\noutput y = attention(h, heads: 4, kv_heads: 3)\n", "5:45: error: kv_heads 3 must divide heads 4"),
        ("output y = embed(tokens, vocab, dim) * sqrt(0 - dim)\n", "error: sqrt of the negative number -16"),
        ("h = embed(tokens, vocab, dim)\noutput y = h * sqrt(causal)\n", "error: the argument of sqrt must be a tensor, got unknown name 'causal'"),
        ("h = embed(tokens, vocab, dim)\noutput y = linear(h, 7)\nweights {\n  \"embed.weight\" = \"wte\"\n}\n", "6:1: error: the weights section gives no source for 2 parameters, e.g. 'linear.weight', 'linear.bias'"),
        ("h = embed(tokens, vocab, dim)\noutput y = linear(h, 7)\nweights {\n  \"embed.weight\" = \"wte\"\n  \"linear.*\" = \"head.*\"\n  \"nothing.*\" = \"x\"\n}\n", "9:3: error: 'nothing.*' matches no parameter of the model (its parameters are named like 'embed.weight')"),
        ("h = embed(tokens, vocab, dim)\noutput y = linear(h, 7)\nweights {\n  \"embed.weight\" = transpose(\"wte\")\n  \"linear.weight\" = slice(\"w\", axis: 0, start: 0, size: 8)\n  \"linear.bias\" = transpose(\"b\")\n}\n", "8:21: error: slice size 8 differs from the parameter's dimension 7 (linear.weight is f32[7, 16])"),
        ("h = embed(tokens, vocab, dim)\noutput y = linear(h, 7)\nweights {\n  \"embed.weight\" = \"wte\"\n  \"linear.bias\" = transpose(\"b\")\n  \"linear.weight\" = \"w.*\"\n}\n", "error: transpose needs a matrix; linear.bias is f32[7]"),
        ("h = embed(tokens, vocab, dim)\noutput y = linear(h, 7)\nweights {\n  \"embed.weight\" = \"wte\"\n  \"linear.*\" = \"w.*.*\"\n}\n", "8:16: error: 'w.*.*' has 2 '*' but the parameter pattern has 1"),
        ("h = embed(tokens, vocab, dim)\noutput y = linear(h, 7)\nweights {\n  \"embed.weight\" = \"wte\n}\n", "7:20: error: unterminated text"),
        ("h = embed(tokens, vocab, dim)\noutput y = linear(h, 7)\nweights {\n  embed.weight = \"wte\"\n}\n", "7:3: error: expected a quoted parameter name pattern"),
        ("h = embed(tokens, vocab, dim)\noutput y = linear(h, 7)\nweights {\n  \"embed.weight\" = reshape(\"wte\")\n}\n", "error: expected a quoted tensor name, transpose(…) or slice(…, axis: A, start: S, size: N), found 'reshape'"),
        ("h = embed(tokens, vocab, dim)\noutput y = linear(h, 7)\nweights {\n  \"linear.*\" = slice(\"w\", axis: 0, start: 0)\n}\n", "error: slice needs axis:, start: and size:"),
    ]

    @Test(arguments: cases)
    func reportsTheExpectedError(_ body: String, _ expected: String) {
        let (g, text, diags) = compile(Self.header + body)
        #expect(g == nil)
        #expect(!diags.isEmpty)
        #expect(text.contains("test.kiln:" + expected) || (expected.hasPrefix("error:") && text.contains(expected)), "got:\n\(text)")
        // Every error is rendered with the source line and a caret line.
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        for (i, l) in lines.enumerated() where l.hasPrefix("test.kiln:") && l.contains(": error: ") {
            #expect(i + 2 < lines.count && lines[i + 2].contains("^"), "no caret for \(l)")
        }
    }

    @Test func reportsSeveralErrorsInOneRun() {
        let (_, text, diags) = compile(Self.header + """
        a = embed(tokens, vocab, dim) + embed(tokens, vocab, 8)
        b = frob(tokens)
        c = relu(tokens, 1, 2)
        output y = embed(tokens, vocab, dim)
        """)
        #expect(diags.filter { $0.severity == .error }.count == 3, "\(text)")
    }

    @Test func parserRecoversAfterASyntaxError() {
        let (_, text, diags) = compile("model M\nconfig { a = 3 + }\ninput t: i32[B, T] where T <= 4\nx = (t\noutput y = frob(t)\n")
        #expect(diags.count >= 3, "\(text)")
        #expect(text.contains("unknown function 'frob'"))
    }

    @Test func caretPointsAtTheColumn() {
        let (_, text, _) = compile(Self.header + "h = embed(tokens, vocab, dim)\noutput y = relu(h, bogus: 1)\n")
        #expect(text.contains("test.kiln:5:20: error: 'relu' has no argument named 'bogus' (it takes x)\noutput y = relu(h, bogus: 1)\n                   ^~~~~\n"), "\(text)")
    }

    @Test func overridesChangeConfig() throws {
        let src = readRepoFile("examples/char-gpt.kiln")
        let (g, d, _) = compile(src, overrides: [("layers", "2"), ("dim", "96")])
        let graph = try #require(g, "\(d)")
        #expect(graph.parameters.contains { graph.nodes[$0].name == "layers.1.ffn.up.weight" })
        #expect(!graph.parameters.contains { graph.nodes[$0].name == "layers.2.ffn.up.weight" })
        #expect(graph.nodes.first { $0.name == "embed.weight" }?.type.description == "f32[256, 96]")
    }

    @Test func unknownOverrideIsAnError() {
        let file = SourceFile(path: "m.kiln", text: readRepoFile("examples/char-gpt.kiln"))
        #expect(throws: OptionError.self) { try Frontend.compile(file, options: FrontendOptions(overrides: [("layerz", "2")])) }
        #expect(throws: OptionError.self) { try Frontend.compile(file, options: FrontendOptions(overrides: [("layers", "two")])) }
    }

    @Test func parameterNamesFollowTheStructure() throws {
        let (g, d, _) = compile(readRepoFile("examples/char-gpt.kiln"))
        let graph = try #require(g, "\(d)")
        let names = graph.parameters.map { graph.nodes[$0].name! }
        #expect(names.prefix(4) == ["embed.weight", "positions.weight", "layers.0.layernorm.weight", "layers.0.layernorm.bias"])
        #expect(names.contains("layers.5.attention.output.bias"))
        #expect(names.contains("layers.3.ffn.down.weight"))
        #expect(names.last == "layernorm.bias")  // tied output: no separate head weight
        #expect(names.count == 2 + 6 * 16 + 2)
    }
}
