/// Hugging Face BERT (`BertModel`, and the encoder inside `BertFor…` heads): token, position and token-type
/// embeddings with a LayerNorm after them, post-norm layers with GELU, a padding mask. The model outputs the
/// last hidden states and their masked mean (sentence-transformers' pooling; L2-normalise it for cosine
/// similarity). The pooler and task heads of the checkpoint are ignored.
enum BertLayout {
    static func modelFile(_ ck: HFCheckpoint, _ name: String) throws -> String {
        let vocab = try ck.int("vocab_size"), context = try ck.int("max_position_embeddings")
        let dim = try ck.int("hidden_size"), heads = try ck.int("num_attention_heads"), layers = try ck.int("num_hidden_layers")
        let hidden = try ck.int("intermediate_size"), types = try ck.int("type_vocab_size", default: 2)
        let eps = try ck.double("layer_norm_eps", default: 1e-12)
        guard dim % heads == 0 else { throw ck.refuse("num_attention_heads", "hidden_size \(dim) is not divisible by it") }
        let activations = ["gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu", "silu": "silu"]
        let act = try ck.string("hidden_act", default: "gelu")
        guard let activation = activations[act] else { throw ck.refuse("hidden_act", "Kiln has \(activations.keys.sorted().joined(separator: ", "))") }
        guard try ck.string("position_embedding_type", default: "absolute") == "absolute" else {
            throw ck.refuse("position_embedding_type", "Kiln imports BERT's absolute positions")
        }
        guard try !ck.bool("is_decoder", default: false) else { throw ck.refuse("is_decoder", "BERT as a decoder is not imported") }
        guard try !ck.bool("add_cross_attention", default: false) else { throw ck.refuse("add_cross_attention", "BERT with cross-attention is not imported") }
        let p = try ck.prefix(for: "embeddings.word_embeddings.weight", candidates: ["", "bert."])
        var text = HFImport.header(ck, name: name, summary: "\(layers) layers, \(dim) dim, \(heads) heads, vocabulary \(vocab), context \(context).",
                                   usage: "out/infer embed --weights \(ck.dir)/model.safetensors --vocab \(ck.dir)/vocab.txt --text 'A sentence.' --out -",
                                   notes: ["  or: out/infer run --weights \(ck.dir)/model.safetensors --input tokens=T.npy --input mask=M.npy --input token_types=Y.npy --output embedding=E.npy"],
                                   config: [("vocab", "\(vocab)"), ("context", "\(context)"), ("dim", "\(dim)"), ("heads", "\(heads)"), ("layers", "\(layers)"), ("hidden", "\(hidden)"), ("types", "\(types)"), ("eps", "\(eps)")])
        text += """

        input tokens: i32[B, T] where T <= context
        input mask: i32[B, T]           # 1 = token, 0 = padding
        input token_types: i32[B, T]    # segment ids, 0 for a single sentence

        block Layer(x: f32[B, T, dim], m: i32[B, T]) -> f32[B, T, dim] {
          x = layernorm(x + attention(x, heads: heads, padding: m), eps: eps)
          return layernorm(x + ffn(x, hidden: hidden, activation: \(activation)), eps: eps)
        }

        h = embed(tokens, vocab, dim) + positions(learned, T, dim) + embed(token_types, types, dim, name: token_type)
        h = repeat(layers, Layer, layernorm(h, eps: eps), mask)
        output hidden = h
        output embedding = mean_pool(h, mask)


        """
        let e = p + "embeddings.", l = p + "encoder.layer.*."
        var lines: [(String, String)] = [
            ("embed.weight", "\"\(e)word_embeddings.weight\""), ("positions.weight", "\"\(e)position_embeddings.weight\""),
            ("token_type.weight", "\"\(e)token_type_embeddings.weight\""),
            ("layernorm.weight", "\"\(e)LayerNorm.weight\""), ("layernorm.bias", "\"\(e)LayerNorm.bias\""),
        ]
        for (kiln, hf) in [("attention.query", "attention.self.query"), ("attention.key", "attention.self.key"),
                           ("attention.value", "attention.self.value"), ("attention.output", "attention.output.dense"),
                           ("layernorm", "attention.output.LayerNorm"), ("ffn.up", "intermediate.dense"),
                           ("ffn.down", "output.dense"), ("layernorm_1", "output.LayerNorm")] {
            lines += [("layers.*.\(kiln).weight", "\"\(l)\(hf).weight\""), ("layers.*.\(kiln).bias", "\"\(l)\(hf).bias\"")]
        }
        // what the checkpoint has beyond the encoder: the pooler, task heads, position-id buffers
        let ignore = ["\(p)pooler.*", "cls.*", "classifier.*", "qa_outputs.*", "\(e)position_ids"].filter { pat in
            ck.tensors.keys.contains { HFImport.glob(pat, $0) }
        }
        return text + HFImport.weightsSection(lines, ignore: ignore)
    }
}
