/// Hugging Face Llama (`LlamaForCausalLM`): pre-norm decoder with RMSNorm, rotary positions (rotate_half),
/// SwiGLU feed-forward, grouped-query attention, no biases by default. Its linear layers are stored as
/// [out, in] like Kiln's, so the weights section only renames.
enum LlamaLayout {
    static func modelFile(_ ck: HFCheckpoint, _ name: String) throws -> String {
        let vocab = try ck.int("vocab_size"), context = try ck.int("max_position_embeddings")
        let dim = try ck.int("hidden_size"), heads = try ck.int("num_attention_heads"), layers = try ck.int("num_hidden_layers")
        let kvHeads = try ck.int("num_key_value_heads", default: heads), hidden = try ck.int("intermediate_size")
        let eps = try ck.double("rms_norm_eps", default: 1e-6)
        guard dim % heads == 0 else { throw ck.refuse("num_attention_heads", "hidden_size \(dim) is not divisible by it") }
        guard heads % kvHeads == 0 else { throw ck.refuse("num_key_value_heads", "it must divide num_attention_heads \(heads)") }
        if ck.has("head_dim"), try ck.int("head_dim") != dim / heads {
            throw ck.refuse("head_dim", "Kiln's heads are hidden_size / num_attention_heads = \(dim / heads) wide")
        }
        guard try ck.string("hidden_act", default: "silu") == "silu" else { throw ck.refuse("hidden_act", "Kiln's Llama feed-forward is SwiGLU (silu)") }
        // the rotary base: transformers 5's rope_parameters, or rope_theta and rope_scaling before it
        var base = 10000.0
        if let rope = ck.config["rope_parameters"] as? [String: Any] {
            let type = rope["rope_type"] as? String ?? "default"
            guard type == "default" else { throw ck.refuse("rope_parameters", "rope_type \"\(type)\" (scaled rotary positions) is not implemented; Kiln has the default") }
            if let t = rope["rope_theta"] as? Double { base = t }
        } else {
            base = try ck.double("rope_theta", default: 10000)
            if ck.has("rope_scaling") { throw ck.refuse("rope_scaling", "scaled rotary positions are not implemented") }
        }
        let attnBias = try ck.bool("attention_bias", default: false), mlpBias = try ck.bool("mlp_bias", default: false)
        if try ck.int("pretraining_tp", default: 1) != 1 { throw ck.refuse("pretraining_tp", "only 1 (no tensor-parallel slicing)") }
        let tied = try ck.bool("tie_word_embeddings", default: false)
        if !tied && ck.tensors["lm_head.weight"] == nil { throw ck.refuse("tie_word_embeddings", "the checkpoint has no lm_head.weight") }
        let p = try ck.prefix(for: "embed_tokens.weight", candidates: ["model.", ""])
        let head = tied ? "linear(rmsnorm(h, eps: eps), vocab, bias: false, tied: embed)" : "linear(rmsnorm(h, eps: eps), vocab, bias: false, name: head)"
        var text = HFImport.header(ck, name: name, summary: "\(layers) layers, \(dim) dim, \(heads) heads (\(kvHeads) key/value), vocabulary \(vocab), context \(context).",
                                   usage: "out/infer generate --weights \(ck.dir)/model.safetensors --prompt-ids 1",
                                   config: [("vocab", "\(vocab)"), ("context", "\(context)"), ("dim", "\(dim)"), ("heads", "\(heads)"), ("kv_heads", "\(kvHeads)"), ("layers", "\(layers)"), ("hidden", "\(hidden)"), ("eps", "\(eps)"), ("base", "\(base)")])
        text += """

        input tokens: i32[B, T] where T <= context

        block Layer(x: f32[B, T, dim]) -> f32[B, T, dim] {
          x = x + attention(rmsnorm(x, eps: eps), heads: heads, kv_heads: kv_heads, mask: causal, bias: \(attnBias), position: rotary, rope_base: base)
          return x + ffn(rmsnorm(x, eps: eps), hidden: hidden, activation: swiglu, bias: \(mlpBias))
        }

        h = repeat(layers, Layer, embed(tokens, vocab, dim))
        output logits = \(head)


        """
        let l = p + "layers.*."
        var lines: [(String, String)] = [("embed.weight", "\"\(p)embed_tokens.weight\"")]
        lines += [("layers.*.rmsnorm.weight", "\"\(l)input_layernorm.weight\""), ("layers.*.rmsnorm_1.weight", "\"\(l)post_attention_layernorm.weight\"")]
        for (kiln, hf, bias) in [("attention.query", "self_attn.q_proj", attnBias), ("attention.key", "self_attn.k_proj", attnBias),
                                 ("attention.value", "self_attn.v_proj", attnBias), ("attention.output", "self_attn.o_proj", attnBias),
                                 ("ffn.gate", "mlp.gate_proj", mlpBias), ("ffn.up", "mlp.up_proj", mlpBias), ("ffn.down", "mlp.down_proj", mlpBias)] {
            lines.append(("layers.*.\(kiln).weight", "\"\(l)\(hf).weight\""))
            if bias { lines.append(("layers.*.\(kiln).bias", "\"\(l)\(hf).bias\"")) }
        }
        lines.append(("rmsnorm.weight", "\"\(p)norm.weight\""))
        if !tied { lines.append(("head.weight", "\"lm_head.weight\"")) }
        var ignore: [String] = []
        if ck.tensors.keys.contains(where: { $0.hasSuffix("rotary_emb.inv_freq") }) { ignore.append("*rotary_emb.inv_freq") }
        if tied && ck.tensors["lm_head.weight"] != nil { ignore.append("lm_head.weight") }
        return text + HFImport.weightsSection(lines, ignore: ignore)
    }
}
