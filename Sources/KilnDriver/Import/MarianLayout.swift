/// Hugging Face Marian (`MarianMTModel`, the OPUS-MT translation models): the encoder–decoder of Vaswani et
/// al. 2017 with post-norm layers, one embedding table shared by source, target and output (scaled by
/// sqrt(d_model)), sinusoidal positions with the sines in the first half of the columns, Swish in the
/// feed-forward, and a `final_logits_bias` added to the logits. Token ids in and out (no SentencePiece):
/// `infer translate --ids … --bos DECODER_START --eos EOS`.
enum MarianLayout {
    static func modelFile(_ ck: HFCheckpoint, _ name: String) throws -> String {
        let vocab = try ck.int("vocab_size"), context = try ck.int("max_position_embeddings"), dim = try ck.int("d_model")
        let encLayers = try ck.int("encoder_layers"), decLayers = try ck.int("decoder_layers")
        let encHeads = try ck.int("encoder_attention_heads"), decHeads = try ck.int("decoder_attention_heads")
        let encHidden = try ck.int("encoder_ffn_dim"), decHidden = try ck.int("decoder_ffn_dim")
        let activations = ["swish": "silu", "silu": "silu", "gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh"]
        let act = try ck.string("activation_function", default: "gelu")
        guard let activation = activations[act] else { throw ck.refuse("activation_function", "Kiln has \(activations.keys.sorted().joined(separator: ", "))") }
        guard dim % encHeads == 0 else { throw ck.refuse("encoder_attention_heads", "d_model \(dim) is not divisible by it") }
        guard dim % decHeads == 0 else { throw ck.refuse("decoder_attention_heads", "d_model \(dim) is not divisible by it") }
        guard dim % 2 == 0 else { throw ck.refuse("d_model", "sinusoidal positions need an even width") }
        if ck.has("decoder_vocab_size"), try ck.int("decoder_vocab_size") != vocab {
            throw ck.refuse("decoder_vocab_size", "Kiln imports Marian models with one vocabulary (vocab_size \(vocab))")
        }
        guard try ck.bool("share_encoder_decoder_embeddings", default: true) else {
            throw ck.refuse("share_encoder_decoder_embeddings", "separate source and target tables are not imported yet")
        }
        guard try !ck.bool("normalize_before", default: false) else { throw ck.refuse("normalize_before", "Marian is post-norm") }
        let scale = try ck.bool("scale_embedding", default: false) ? " * sqrt(dim)" : ""
        let tied = try ck.bool("tie_word_embeddings", default: true)
        if !tied && ck.tensors["lm_head.weight"] == nil { throw ck.refuse("tie_word_embeddings", "the checkpoint has no lm_head.weight") }
        let bias = ck.tensors["final_logits_bias"] != nil
        let pad = try ck.int("pad_token_id", default: vocab - 1), eos = try ck.int("eos_token_id", default: 0)
        let start = try ck.int("decoder_start_token_id", default: pad)
        let p = try ck.prefix(for: "shared.weight", candidates: ["model.", ""])
        let head = tied ? "linear(y, tied: embed, bias: \(bias))" : "linear(y, vocab, bias: \(bias), name: head)"
        var text = HFImport.header(ck, name: name, summary: "\(encLayers) + \(decLayers) layers, \(dim) dim, vocabulary \(vocab), context \(context).",
                                   usage: "out/infer translate --weights \(ck.dir)/model.safetensors --ids 12,7,\(eos) --bos \(start) --eos \(eos)",
                                   notes: ["  inputs:  source i32[B, S] (ids, each ending with eos \(eos)) and source_mask i32[B, S] (1 = token, 0 = padding);", "           target i32[B, T] (decoder_start \(start), then the target's ids)"],
                                   config: [("vocab", "\(vocab)"), ("context", "\(context)"), ("dim", "\(dim)"), ("enc_heads", "\(encHeads)"), ("dec_heads", "\(decHeads)"), ("enc_layers", "\(encLayers)"), ("dec_layers", "\(decLayers)"), ("enc_hidden", "\(encHidden)"), ("dec_hidden", "\(decHidden)")])
        text += """

        input source: i32[B, S] where S <= context
        input source_mask: i32[B, S]
        input target: i32[B, T] where T <= context

        block EncoderLayer(x: f32[B, S, dim], m: i32[B, S]) -> f32[B, S, dim] {
          x = layernorm(x + attention(x, heads: enc_heads, padding: m), eps: 1e-5)
          return layernorm(x + ffn(x, hidden: enc_hidden, activation: \(activation)), eps: 1e-5)
        }

        block DecoderLayer(y: f32[B, T, dim], memory: f32[B, S, dim], m: i32[B, S]) -> f32[B, T, dim] {
          y = layernorm(y + attention(y, heads: dec_heads, mask: causal), eps: 1e-5)
          y = layernorm(y + attention(y, heads: dec_heads, memory: memory, padding: m, name: cross), eps: 1e-5)
          return layernorm(y + ffn(y, hidden: dec_hidden, activation: \(activation)), eps: 1e-5)
        }

        x = embed(source, vocab, dim)\(scale) + positions(sinusoidal, S, dim, layout: halves)
        memory = repeat(enc_layers, EncoderLayer, x, source_mask, name: encoder)
        y = embed(target, tied: embed)\(scale) + positions(sinusoidal, T, dim, layout: halves)
        y = repeat(dec_layers, DecoderLayer, y, memory, source_mask, name: decoder)
        output logits = \(head)


        """
        var lines: [(String, String)] = [("embed.weight", "\"\(p)shared.weight\"")]
        func attention(_ kiln: String, _ hf: String) {
            for (k, h) in [("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"), ("output", "out_proj")] {
                lines += [("\(kiln).\(k).weight", "\"\(hf).\(h).weight\""), ("\(kiln).\(k).bias", "\"\(hf).\(h).bias\"")]
            }
        }
        func pair(_ kiln: String, _ hf: String) { lines += [("\(kiln).weight", "\"\(hf).weight\""), ("\(kiln).bias", "\"\(hf).bias\"")] }
        let e = "\(p)encoder.layers.*", d = "\(p)decoder.layers.*"
        attention("encoder.*.attention", "\(e).self_attn")
        pair("encoder.*.layernorm", "\(e).self_attn_layer_norm")
        pair("encoder.*.ffn.up", "\(e).fc1")
        pair("encoder.*.ffn.down", "\(e).fc2")
        pair("encoder.*.layernorm_1", "\(e).final_layer_norm")
        attention("decoder.*.attention", "\(d).self_attn")
        pair("decoder.*.layernorm", "\(d).self_attn_layer_norm")
        attention("decoder.*.cross", "\(d).encoder_attn")
        pair("decoder.*.layernorm_1", "\(d).encoder_attn_layer_norm")
        pair("decoder.*.ffn.up", "\(d).fc1")
        pair("decoder.*.ffn.down", "\(d).fc2")
        pair("decoder.*.layernorm_2", "\(d).final_layer_norm")
        if !tied { lines.append(("head.weight", "\"lm_head.weight\"")) }
        // final_logits_bias is [1, vocab]: it loads into the [vocab] bias (size-1 axes aside, the same layout)
        if bias { lines.append((tied ? "linear.bias" : "head.bias", "\"final_logits_bias\"")) }
        // the tied copies some checkpoints save, and the sinusoidal tables older versions saved
        let ignore = ["\(p)encoder.embed_tokens.weight", "\(p)decoder.embed_tokens.weight", "*embed_positions.weight"]
            + (tied ? ["lm_head.weight"] : [])
        return text + HFImport.weightsSection(lines, ignore: ignore.filter { pat in ck.tensors.keys.contains { HFImport.glob(pat, $0) } })
    }
}
