import Testing
import KilnIR
import KilnTransforms

/// The entry-point transforms of an encoder–decoder: IR text in, IR text out.
@Suite struct EntryPointTests {
    /// A one-layer encoder–decoder at toy sizes: the encoder is an embedding and a padded self-attention over
    /// S; the decoder an embedding, causal self-attention over T, and cross-attention to the encoder.
    static let model = """
    graph M {
      dim B
      dim S <= 6
      dim T <= 5
      %src = input {role: tokens, limit: 9} : i32[B, S]
      %m = input {role: mask} : i32[B, S]
      %tgt = input {role: tokens, limit: 9} : i32[B, T]
      %e = param {init: normal, std: 0.02} : f32[9, 4]
      %0 = embedding(%e, %src) : f32[B, S, 4]
      %1 = attention(%0, %0, %0, %m) {heads: 2, causal: false} : f32[B, S, 4]
      %wk = param {init: normal, std: 0.02} : f32[4, 4]
      %2 = linear(%1, %wk) : f32[B, S, 4]
      %3 = embedding(%e, %tgt) : f32[B, T, 4]
      %4 = attention(%3, %3, %3) {heads: 2, causal: true} : f32[B, T, 4]
      %5 = attention(%4, %2, %1, %m) {heads: 2, causal: false} : f32[B, T, 4]
      %6 = linear(%5, %e) : f32[B, T, 9]
      output logits = %6
    }
    """

    @Test func encodeComputesTheMemoryAndStoresWhatCrossAttentionReads() throws {
        let g = try parseIR(Self.model)
        let plan = try #require(KVCachePlan(g))
        #expect(plan.hasMemory && plan.crossAttentions.count == 1)
        let encode = try #require(MakeEncode.apply(g))
        #expect(IRPrinter.print(encode) == """
        graph M.encode {
          dim B
          dim S <= 6
          dim R
          %src = input {role: tokens, limit: 9} : i32[B, S]
          %m = input {role: mask} : i32[B, S]
          %e = param {init: normal, std: 0.02} : f32[9, 4]
          %0 = embedding(%e, %src) : f32[B, S, 4]
          %1 = attention(%0, %0, %0, %m) {heads: 2, causal: false} : f32[B, S, 4]
          %wk = param {init: normal, std: 0.02} : f32[4, 4]
          %2 = linear(%1, %wk) : f32[B, S, 4]
          %memory.0.k = state : f32[R, 6, 4]
          %memory.0.v = state : f32[R, 6, 4]
          %memory.0.mask = state : f32[R, 6]
          %3 = cache_write(%memory.0.k, %2) : f32[R, 6, 4]
          %4 = cache_write(%memory.0.v, %1) : f32[R, 6, 4]
          %5 = cache_write_mask(%memory.0.mask, %2, %m) : f32[R, 6]
        }

        """)
        // parses back: a function without outputs whose effects are its point
        #expect(IRPrinter.print(try parseIR(IRPrinter.print(encode))) == IRPrinter.print(encode))
    }

    @Test func attentionMapsGiveEveryAttentionsWeightsInGraphOrder() throws {
        let maps = try #require(MakeAttentionMaps.apply(try parseIR(Self.model)))
        #expect(IRPrinter.print(maps) == """
        graph M.attention_maps {
          dim B
          dim S <= 6
          dim T <= 5
          %src = input {role: tokens, limit: 9} : i32[B, S]
          %m = input {role: mask} : i32[B, S]
          %tgt = input {role: tokens, limit: 9} : i32[B, T]
          %e = param {init: normal, std: 0.02} : f32[9, 4]
          %0 = embedding(%e, %src) : f32[B, S, 4]
          %1 = attention(%0, %0, %0, %m) {heads: 2, causal: false} : f32[B, S, 4]
          %wk = param {init: normal, std: 0.02} : f32[4, 4]
          %2 = linear(%1, %wk) : f32[B, S, 4]
          %3 = embedding(%e, %tgt) : f32[B, T, 4]
          %4 = attention(%3, %3, %3) {heads: 2, causal: true} : f32[B, T, 4]
          %5 = attention_probs(%0, %0, %m) {heads: 2, causal: false} : f32[B, 2, S, S]
          %6 = attention_probs(%3, %3) {heads: 2, causal: true} : f32[B, 2, T, T]
          %7 = attention_probs(%4, %2, %m) {heads: 2, causal: false} : f32[B, 2, T, S]
          output attention.0 = %5
          output attention.1 = %6
          output attention.2 = %7
        }

        """)
        #expect(IRPrinter.print(try parseIR(IRPrinter.print(maps))) == IRPrinter.print(maps))
        // a model without attention has no maps
        #expect(MakeAttentionMaps.apply(try parseIR("""
        graph N {
          dim B
          %x = input : f32[B, 4]
          %0 = softmax(%x) : f32[B, 4]
          output y = %0
        }
        """)) == nil)
    }

    @Test func decodeStepLeavesTheEncoderOutAndReadsItsMemory() throws {
        let decode = try #require(MakeDecodeStep.apply(try parseIR(Self.model)))
        #expect(IRPrinter.print(decode) == """
        graph M.decode_step {
          dim B
          dim R
          %tgt = input {role: tokens, limit: 9} : i32[B, 1]
          %e = param {init: normal, std: 0.02} : f32[9, 4]
          %0 = embedding(%e, %tgt) : f32[B, 1, 4]
          %cache.0.k = state : f32[R, 5, 4]
          %cache.0.v = state : f32[R, 5, 4]
          %positions = input {role: positions, limit: 5} : i32[B, 1]
          %1 = cache_write(%cache.0.k, %0, %positions) : f32[R, 5, 4]
          %2 = cache_write(%cache.0.v, %0, %positions) : f32[R, 5, 4]
          %3 = cached_attention(%0, %1, %2, %positions) {heads: 2} : f32[B, 1, 4]
          %memory.0.k = state : f32[R, 6, 4]
          %memory.0.v = state : f32[R, 6, 4]
          %memory.0.mask = state : f32[R, 6]
          %4 = memory_attention(%3, %memory.0.k, %memory.0.v, %memory.0.mask) {heads: 2} : f32[B, 1, 4]
          %5 = linear(%4, %e) : f32[B, 1, 9]
          output logits = %5
        }

        """)
    }

    /// No decoding functions when the memory reaches an output, or when the decoder's self-attention is not
    /// causal.
    @Test(arguments: [
        ("  output logits = %6\n", "  output logits = %6\n  output memory = %1\n"),
        ("%4 = attention(%3, %3, %3) {heads: 2, causal: true}", "%4 = attention(%3, %3, %3) {heads: 2, causal: false}"),
    ])
    func modelsWhoseDecoderIsNotCausalOverItsOwnPositionsHaveNone(_ old: String, _ new: String) throws {
        let text = Self.model.replacingOccurrences(of: old, with: new)
        #expect(text != Self.model)
        #expect(KVCachePlan(try parseIR(text)) == nil)
    }
}
