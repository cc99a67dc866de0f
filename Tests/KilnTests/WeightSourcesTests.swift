import Testing
import KilnBasics
import KilnIR
import KilnFrontend

/// The weights section: name patterns, and each parameter's resolved source (slice axis in the file's
/// tensor, transposition) whichever way the model file composes slice and transpose.
@Suite struct WeightSourcesTests {
    @Test func patternsMatchOneNamePartPerStar() {
        #expect(WeightSources.match("layers.*.ffn.up.weight", "layers.11.ffn.up.weight") == ["11"])
        #expect(WeightSources.match("layers.*.ffn.up.weight", "layers.1.ffn.up.bias") == nil)
        #expect(WeightSources.match("layers.*.layernorm.weight", "layers.0.layernorm_1.weight") == nil)
        #expect(WeightSources.match("layers.*.*.weight", "layers.2.ffn.weight") == ["2", "ffn"])
        #expect(WeightSources.match("layers.*", "layers.2.ffn.weight") == nil)  // '*' stops at a '.'
        #expect(WeightSources.match("embed.weight", "embed.weight") == [])
        #expect(WeightSources.match("embed.weight", "embed.weight2") == nil)
        #expect(WeightSources.substitute("h.*.attn.*", ["3", "c_attn"]) == "h.3.attn.c_attn")
    }

    static let model = """
        model M
        config { vocab = 11, dim = 6 }
        input tokens: i32[B, T] where T <= 4
        h = embed(tokens, vocab, dim)
        h = linear(h, 3 * dim, name: qkv)
        output y = linear(h, 5, name: head)

        """

    @Test func slicesAndTranspositionsResolveInTheFilesCoordinates() throws {
        let text = Self.model + """
            weights {
              "embed.weight" = "wte"
              "qkv.weight"   = transpose(slice("c_attn.w", axis: 1, start: 2 * dim, size: 3 * dim))
              "qkv.bias"     = slice("c_attn.b", axis: 0, start: 6, size: 18)
              "head.weight"  = slice(transpose("lm.w"), axis: 0, start: 1, size: 5)
              "head.bias"    = "lm.b"
              ignore "buffers.*"
            }
            """
        let r = try Frontend.compile(SourceFile(path: "m.kiln", text: text))
        #expect(!r.diagnostics.hasErrors, "\(r.diagnostics.render())")
        let w = try #require(r.weights)
        #expect(w.params["embed.weight"] == ParamSource(tensor: "wte"))
        // qkv.weight is [18, 6]: the file holds [6, >=30], cut along its axis 1 from 12, then transposed
        #expect(w.params["qkv.weight"] == ParamSource(tensor: "c_attn.w", sliceAxis: 1, sliceStart: 12, transposed: true))
        #expect(w.params["qkv.bias"] == ParamSource(tensor: "c_attn.b", sliceAxis: 0, sliceStart: 6))
        // a slice of the transposed tensor's axis 0 is a slice of the file tensor's axis 1
        #expect(w.params["head.weight"] == ParamSource(tensor: "lm.w", sliceAxis: 1, sliceStart: 1, transposed: true))
        #expect(w.ignore == ["buffers.*"])
    }

    @Test func aModelWithoutTheSectionHasNoSources() throws {
        let r = try Frontend.compile(SourceFile(path: "m.kiln", text: Self.model))
        #expect(r.weights == nil && r.graph != nil)
    }
}
