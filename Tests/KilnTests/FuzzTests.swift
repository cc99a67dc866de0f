import Testing
import KilnBasics
import KilnFrontend
import KilnIR

/// Feeds many mutated and random sources to the frontend: it must never
/// crash or hang, and must report errors rather than produce a graph from
/// garbage. A deterministic generator keeps failures reproducible.
@Suite struct FuzzTests {
    struct SplitMix {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
    }

    static let fragments: [String] = ["(", ")", "[", "]", "{", "}", ",", ":", "=", "+", "-", "*", "/", "->", "<=", "\n",
        "block", "return", "output", "input", "config", "model", "repeat", "attention", "embed", "layernorm", "linear",
        "ffn", "x", "T", "B", "dim", "99999999999999999999", "1e400", "0", "-1", "f32", "i32", "\u{FF}", "\u{00}", "é", "#"]

    func mutate(_ src: [UInt8], _ rng: inout SplitMix) -> [UInt8] {
        var b = src
        for _ in 0..<(1 + rng.below(4)) {
            guard !b.isEmpty else { break }
            let at = rng.below(b.count)
            switch rng.below(6) {
            case 0: b.remove(at: at)
            case 1: b.insert(UInt8(truncatingIfNeeded: rng.next()), at: at)
            case 2: b.insert(contentsOf: Array(Self.fragments[rng.below(Self.fragments.count)].utf8), at: at)
            case 3: b.removeSubrange(at..<min(b.count, at + rng.below(40)))
            case 4:  // duplicate a slice
                let end = min(b.count, at + rng.below(60))
                b.insert(contentsOf: b[at..<end], at: rng.below(b.count))
            default: b = Array(b[..<at])  // truncate
            }
        }
        return b
    }

    @Test func tenThousandMutatedSourcesNeverCrash() {
        let seeds = ["examples/char-gpt.kiln", "examples/odd-postnorm.kiln", "examples/gpt2-small.kiln"].map { Array(readRepoFile($0).utf8) }
        var rng = SplitMix(state: 2024)
        var accepted = 0, rejected = 0
        for i in 0..<10_000 {
            let src = mutate(seeds[i % seeds.count], &rng)
            let file = SourceFile(path: "fuzz.kiln", bytes: src)
            // Keep the large GPT-2 config small so accepted mutants compile quickly.
            let overrides: [(String, String)] = []
            guard let r = try? Frontend.compile(file, options: FrontendOptions(overrides: overrides)) else { rejected += 1; continue }
            _ = r.diagnostics.render()
            if r.graph != nil { accepted += 1 } else { rejected += 1 }
        }
        #expect(accepted + rejected == 10_000)
        #expect(rejected > 1000)
    }

    @Test func pathologicalInputsAreRejectedQuickly() {
        let cases: [[UInt8]] = [
            Array(("model M\ninput t: i32[B, T] where T <= 4\noutput y = " + String(repeating: "(", count: 100_000)).utf8),
            Array(("model M\ninput t: i32[B, T] where T <= 4\noutput y = " + String(repeating: "-", count: 100_000) + "t").utf8),
            Array(("model M\ninput t: i32[B, T] where T <= 4\noutput y = relu(" + String(repeating: "relu(", count: 50_000)).utf8),
            [0xFF, 0xFE, 0x00, 0xC3, 0x28, 0xE2, 0x82],
            Array(repeating: 0x80, count: 100_000),
            Array(("model M\nconfig { a = " + String(repeating: "9", count: 10_000) + " }").utf8),
            Array(String(repeating: "block B(x: f32[1]) -> f32[1] {\n", count: 2000).utf8),
            [],
        ]
        for c in cases {
            let r = try? Frontend.compile(SourceFile(path: "p.kiln", bytes: c))
            #expect(r?.graph == nil)
            #expect(r?.diagnostics.hasErrors ?? true)
        }
    }
}

/// A fused op's expression comes from IR text, which may be hand-written: mutated and pathological
/// expressions parse or throw, never crash, and what parses prints back to text that parses the same.
@Suite struct FusedExprFuzzTests {
    @Test func mutatedExpressionsParseOrThrow() {
        let seeds = ["sub(add(mul(x0, x1), div(x2, x3)), scale(gelu_tanh(x4), 0.5))", "relu(x0)", "scale(x1, -1e-05)"]
        let pieces = ["(", ")", ",", " ", "x", "x0", "x99999999999999999999", "add", "scale", "relu", "1e400", "-", ".", "e", "gelu"]
        var rng = FuzzTests.SplitMix(state: 7)
        for i in 0..<5000 {
            var b = Array(seeds[i % seeds.count].utf8)
            for _ in 0..<(1 + rng.below(3)) {
                let at = rng.below(b.count + 1)
                switch rng.below(3) {
                case 0: if at < b.count { b.remove(at: at) }
                case 1: b.insert(contentsOf: Array(pieces[rng.below(pieces.count)].utf8), at: at)
                default: b = Array(b[..<at])
                }
            }
            let text = String(decoding: b, as: UTF8.self)
            if let e = try? FusedExpr.parse(text) {
                #expect((try? FusedExpr.parse(e.description)) == e, "\(text)")
            }
        }
        for text in [String(repeating: "relu(", count: 100_000) + "x0", String(repeating: "x", count: 100_000), "scale(x0, nan)",
                     "scale(x0, 1e999)", "add(x0)", "", "x0 x1"] {
            #expect(throws: TypeError.self) { try FusedExpr.parse(text) }
        }
    }
}

/// Crashers and hangs found by the fuzz test, kept as regressions.
@Suite struct FuzzRegressions {
    @Test func strayColonAtTheStartOfAConfigLine() {
        let src = "model M\nconfig {\n: n  vocab = 97\n  dim = 4\n}\ninput t: i32[B, T] where T <= 4\noutput y = embed(t, vocab, dim)\n"
        let (g, text, _) = compile(src)
        #expect(g == nil)
        #expect(text.contains("test.kiln:3:1: error: expected a config name, found ':'"), "\(text)")
    }
}
