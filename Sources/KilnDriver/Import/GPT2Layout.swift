import Foundation

/// Hugging Face GPT-2 (`GPT2LMHeadModel`, `GPT2Model`): pre-norm decoder, learned positions, GELU (tanh
/// approximation), the output projection tied to the token embedding. Its linear layers are `Conv1D`s that
/// store weights as [in, out], and one `c_attn` holds the query, key and value side by side: the weights
/// section reads each projection as a transposed slice of it.
enum GPT2Layout {
    static func modelFile(_ ck: HFCheckpoint, _ name: String) throws -> String {
        let vocab = try ck.int("vocab_size"), context = try ck.int("n_positions")
        let dim = try ck.int("n_embd"), heads = try ck.int("n_head"), layers = try ck.int("n_layer")
        let hidden = ck.has("n_inner") ? try ck.int("n_inner") : 4 * dim
        let eps = try ck.double("layer_norm_epsilon", default: 1e-5)
        let act = try ck.string("activation_function", default: "gelu_new")
        let activations = ["gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu", "silu": "silu", "swish": "silu"]
        guard let activation = activations[act] else { throw ck.refuse("activation_function", "Kiln has \(activations.keys.sorted().joined(separator: ", "))") }
        guard try ck.bool("scale_attn_weights", default: true) else { throw ck.refuse("scale_attn_weights", "Kiln's attention scales by 1/sqrt(head size)") }
        guard try !ck.bool("scale_attn_by_inverse_layer_idx", default: false) else { throw ck.refuse("scale_attn_by_inverse_layer_idx", "Kiln's attention scales every layer alike") }
        guard try !ck.bool("add_cross_attention", default: false) else { throw ck.refuse("add_cross_attention", "GPT-2 with cross-attention is not imported yet") }
        guard dim % heads == 0 else { throw ck.refuse("n_head", "n_embd \(dim) is not divisible by it") }
        let p = try ck.prefix(for: "wte.weight", candidates: ["transformer.", ""])
        let tied = try ck.bool("tie_word_embeddings", default: true)
        if !tied && ck.tensors["lm_head.weight"] == nil { throw ck.refuse("tie_word_embeddings", "the checkpoint has no lm_head.weight") }
        let head = tied ? "linear(layernorm(h, eps: eps), vocab, bias: false, tied: embed)" : "linear(layernorm(h, eps: eps), vocab, bias: false, name: head)"
        var text = HFImport.header(ck, name: name, summary: "\(layers) layers, \(dim) dim, \(heads) heads, vocabulary \(vocab), context \(context).",
                                   usage: FileManager.default.fileExists(atPath: ck.dir + "/vocab.json") && FileManager.default.fileExists(atPath: ck.dir + "/merges.txt")
                                       ? "out/infer generate --weights \(ck.dir)/model.safetensors --tokenizer \(ck.dir)/vocab.json --prompt 'Hello' --tokens 20"
                                       : "out/infer generate --weights \(ck.dir)/model.safetensors --prompt-ids 0",
                                   config: [("vocab", "\(vocab)"), ("context", "\(context)"), ("dim", "\(dim)"), ("heads", "\(heads)"), ("layers", "\(layers)"), ("hidden", "\(hidden)"), ("eps", "\(eps)")])
        text += """

        input tokens: i32[B, T] where T <= context

        block Layer(x: f32[B, T, dim]) -> f32[B, T, dim] {
          x = x + attention(layernorm(x, eps: eps), heads: heads, mask: causal)
          return x + ffn(layernorm(x, eps: eps), hidden: hidden, activation: \(activation))
        }

        h = embed(tokens, vocab, dim) + positions(learned, T, dim)
        h = repeat(layers, Layer, h)
        output logits = \(head)


        """
        let l = p + "h.*."
        var lines: [(String, String)] = [("embed.weight", "\"\(p)wte.weight\""), ("positions.weight", "\"\(p)wpe.weight\"")]
        for (kiln, hf) in [("layernorm", "ln_1"), ("layernorm_1", "ln_2")] {
            lines += [("layers.*.\(kiln).weight", "\"\(l)\(hf).weight\""), ("layers.*.\(kiln).bias", "\"\(l)\(hf).bias\"")]
        }
        for (i, proj) in ["query", "key", "value"].enumerated() {
            let start = i == 0 ? "0" : i == 1 ? "dim" : "2 * dim"
            lines.append(("layers.*.attention.\(proj).weight", "transpose(slice(\"\(l)attn.c_attn.weight\", axis: 1, start: \(start), size: dim))"))
            lines.append(("layers.*.attention.\(proj).bias", "slice(\"\(l)attn.c_attn.bias\", axis: 0, start: \(start), size: dim)"))
        }
        for (kiln, hf) in [("attention.output", "attn.c_proj"), ("ffn.up", "mlp.c_fc"), ("ffn.down", "mlp.c_proj")] {
            lines += [("layers.*.\(kiln).weight", "transpose(\"\(l)\(hf).weight\")"), ("layers.*.\(kiln).bias", "\"\(l)\(hf).bias\"")]
        }
        lines += [("layernorm.weight", "\"\(p)ln_f.weight\""), ("layernorm.bias", "\"\(p)ln_f.bias\"")]
        if !tied { lines.append(("head.weight", "\"lm_head.weight\"")) }
        // the causal-mask buffers older checkpoints saved, and a tied head saved twice
        var ignore = ["\(l)attn.bias", "\(l)attn.masked_bias"].filter { pat in ck.tensors.keys.contains { HFImport.glob(pat, $0) } }
        if tied && ck.tensors["lm_head.weight"] != nil { ignore.append("lm_head.weight") }
        return text + HFImport.weightsSection(lines, ignore: ignore)
    }
}
