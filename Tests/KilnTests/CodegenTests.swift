import Foundation
import Testing
import KilnBasics
import KilnIR
import KilnCodegenC
import KilnDriver

@Suite struct CodegenTests {
    func graph(_ path: String) throws -> Graph {
        let (g, d, _) = compile(readRepoFile(path))
        return try Pipeline().optimize(try #require(g, "\(d)"))
    }

    /// Every function of a model file, compiled.
    func compiled(_ path: String, fuse: Bool = true) throws -> Pipeline.Compiled {
        var p = Pipeline()
        p.fuse = fuse
        return try p.generate(SourceFile(path: path, text: readRepoFile(path)))
    }

    /// The text of one generated C function.
    func cFunction(_ m: GeneratedModel, _ name: String) throws -> String {
        try #require(m.source.components(separatedBy: "static void fn_\(name)(const kiln_call *call) {").dropFirst().first)
            .components(separatedBy: "\n}\n")[0]
    }

    // The build plugin embeds every .c and .h file of runtime/ (subfolders included) exactly.
    @Test func runtimeSourcesEmbeddedInKilnMatchRuntimeDirectory() throws {
        let dir = repoRoot + "/runtime"
        let onDisk = (FileManager.default.subpaths(atPath: dir) ?? []).filter { $0.hasSuffix(".c") || $0.hasSuffix(".h") }.sorted()
        #expect(onDisk.contains("kernels/linear.c") && onDisk.contains("kiln_rt.c"))
        #expect(RuntimeSources.files.map(\.0) == onDisk)
        for (name, text) in RuntimeSources.files {
            let disk = try String(contentsOfFile: dir + "/" + name, encoding: .utf8)
            #expect(text == disk, "\(name) differs from runtime/\(name)")
        }
    }

    @Test func memoryPlanReusesSlotsOfTheSameSize() throws {
        let g = try graph("examples/char-gpt.kiln")
        let plan = MemoryPlan(g, external: [g.outputs[0].value: "logits"])
        let activations = plan.storage.filter { if case .slot = $0 { true } else { false } }.count
        // 45 activations after epilogue fusion and Q/K/V merging (and the scratch of linear layers and attention)
        // fit in a dozen slots; none is T×T (attention keeps no score matrix).
        #expect(activations > 40)
        #expect(plan.slotSizes.count <= 12, "\(plan.slotSizes)")
        #expect(!plan.slotSizes.contains { $0.symbols.filter { $0 == "T" }.count > 1 })
        #expect(plan.paramCount == 10_844_160)
    }

    @Test func noValueSharesASlotWithALiveValue() throws {
        let g = try graph("examples/odd-postnorm.kiln")
        let plan = MemoryPlan(g, external: [g.outputs[0].value: "logits"])
        var lastUse = Array(g.nodes.indices)
        for (i, n) in g.nodes.enumerated() { for o in n.operands { lastUse[o] = max(lastUse[o], i) } }
        for i in g.nodes.indices {
            guard case .slot(let s) = plan.storage[i] else { continue }
            for j in (i + 1)..<g.nodes.count where plan.storage[j] == .slot(s) {
                #expect(j > lastUse[i], "node \(j) overwrites node \(i) in slot \(s) before its last use \(lastUse[i])")
                break
            }
        }
    }

    @Test func emitsOneKernelPerOpKindAndOneCallPerNode() throws {
        let c = try compiled("examples/char-gpt.kiln")
        let m = c.generated
        #expect(c.functions.map(\.function) == ["forward", "train_step", "loss", "prefill", "decode_step", "attention_maps"])
        // the kernel file of each op kind, once; inference reads packed weights, and the tied embedding reads the packed head
        for k in ["embedding", "linear", "layernorm", "attention", "elementwise"] {
            #expect(m.source.components(separatedBy: "#include \"kernels/\(k).c\"\n").count == 2, "\(k)")
        }
        let forward = try cFunction(m, "forward")
        #expect(forward.contains("    embedding_packed_forward("))
        // GELU runs in the epilogue of the first FFN layer (fuse-epilogue), so it has no kernel call of its own
        #expect(!forward.contains("activation_forward("))
        #expect(forward.contains(", KILN_ACT_gelu, "))
        #expect(!forward.contains("    linear_forward("))
        // per layer the output projection and the FFN's two layers, plus the head; the query, key and value
        // projections are one stacked product (merge-linears); the same in prefill and decode_step
        for f in ["forward", "prefill", "decode_step"] {
            let body = try cFunction(m, f)
            #expect(body.components(separatedBy: "    linear_packed_forward(").count - 1 == 6 * 3 + 1, "\(f)")
            #expect(body.components(separatedBy: "    linear_stack_packed_forward(").count - 1 == 6, "\(f)")
        }
        // the attention maps read the tied table packed too (it stays packed for the head of the others)
        #expect(try cFunction(m, "attention_maps").contains("    embedding_packed_forward("))
        // the prompt's pass: keys and values into each layer's caches, and the final norm and head on the last
        // position only
        let prefill = try cFunction(m, "prefill")
        #expect(prefill.components(separatedBy: "    cache_write_forward(").count - 1 == 2 * 6)
        #expect(prefill.contains("take_forward("))
        #expect(prefill.contains("linear_packed_forward(logits, ") && prefill.contains(", (size_t)B, 384, 256);"))
        // decoding: one token per row at its position, attending over the cache
        let decode = try cFunction(m, "decode_step")
        #expect(decode.components(separatedBy: "    attention_cached_forward(").count - 1 == 6)
        #expect(decode.contains("const int32_t *positions = (const int32_t *)call->inputs[1];"))
        // pack_params packs the 36 layer weights and the tied table once each, and unpack_params reverses it
        #expect(m.source.components(separatedBy: "    pack_weight_in_place(params + ").count - 1 == 6 * 6 + 1)
        #expect(m.source.components(separatedBy: "    unpack_weight_in_place(params + ").count - 1 == 6 * 6 + 1)
        #expect(m.source.contains("#include \"kiln_model.h\"\n") && m.source.hasSuffix("#include \"kiln_lib.c\"\n"))
        // the state: two caches per attention, each sized by its own key length
        #expect(m.source.components(separatedBy: "{\"cache.").count - 1 == 2 * 6)
        #expect(m.source.contains("{\"cache.0.k\", 2, {256, 384}, 98304},"))
        #expect(m.prefix == "char_gpt" && m.apiHeader.contains("kiln_status char_gpt_run(char_gpt_context *ctx, const char *function,"))
    }

    @Test func noKVCacheForBidirectionalAttention() throws {
        // decoding with a cache, token by token or a prompt at once, equals the forward pass only when every
        // attention is causal; all-ops has a bidirectional one
        let c = try compiled("tests/models/all-ops.kiln")
        #expect(c.functions.map(\.function) == ["forward", "train_step", "loss", "attention_maps"])
        #expect(!c.generated.source.contains("fn_prefill") && !c.generated.source.contains("cache_write"))
    }

    // One kernel per distinct expression, however its text is spaced; each fused op calls it with its
    // operands and their element counts.
    @Test func fusedOpsShareAKernelPerExpression() throws {
        let g = try parseIR("""
        graph G {
          dim B
          dim T <= 4
          %tokens = input : i32[B, T]
          %e = param {init: normal, std: 0.02} : f32[5, 3]
          %p = param {init: normal, std: 0.02} : f32[4, 3]
          %0 = embedding(%e, %tokens) : f32[B, T, 3]
          %1 = slice_rows(%p) {rows: T} : f32[T, 3]
          %2 = fused(%0, %1) {expr: "mul(add(x0,x1), x0)"} : f32[B, T, 3]
          %3 = fused(%2, %1) {expr: "mul(add(x0, x1), x0)"} : f32[B, T, 3]
          output logits = %3
        }
        """)
        let m = try CEmitter.emit([g], sourceName: "g.ir")
        let name = "fused_mul_add_"
        #expect(m.source.components(separatedBy: "static void \(name)").count == 2)
        #expect(m.source.contains("#include \"kernels/activations.h\""))
        let forward = try cFunction(m, "forward")
        #expect(forward.components(separatedBy: "    \(name)").count == 3)
        #expect(forward.contains("_forward((arena + off[1]), (arena + off[0]), (params + 15), (size_t)B * (size_t)T * 3, (size_t)B * (size_t)T * 3, (size_t)T * 3);"))
    }

    @Test func tiedEmbeddingGradientIsScatteredInPlaceIntoTheHeadGradient() throws {
        func step(fuse: Bool) throws -> (String, MemoryPlan) {
            let m = try compiled("examples/char-gpt-small.kiln", fuse: fuse).generated
            return (try cFunction(m, "train_step"), try #require(m.trainPlan))
        }
        let table = SizeExpr(constant: 256 * 128)
        // fused: the head's weight gradient is computed straight into grads + 0 and the embedding's rows are
        // added to it there
        let (fused, plan) = try step(fuse: true)
        #expect(fused.contains("linear_backward_weight((grads + 0),"))
        #expect(fused.contains("embedding_backward((grads + 0), (grads + 0),"))
        // unfused: the two vocab x dim gradients live in the arena and an add sums them into grads + 0
        let (unfused, plain) = try step(fuse: false)
        #expect(unfused.contains("embedding_backward((arena + off["))
        // (one such slot is also the scratch of the head's input-gradient product, which fused keeps alone)
        #expect(plain.slotSizes.filter { $0 == table }.count == 2)
        #expect(plan.slotSizes.filter { $0 == table }.count == 1)
    }

    @Test func packsLinearWeightsAndTiedTablesButNotOtherParameters() throws {
        let g = try graph("examples/odd-postnorm.kiln")
        let packed = CEmitter.packedWeights(g)
        let names = Set(packed.map { g.nodes[$0].name! })
        let linearWeights = Set(g.nodes.flatMap { n in
            n.kind == .linear ? [n.operands[1]] : n.kind == .linearStack ? Array(n.operands[1...n.attrs.int("count")!]) : []
        }.map { g.nodes[$0].name! })
        #expect(linearWeights.count == 2 * 6 + 1)
        #expect(names == linearWeights)
        #expect(!names.contains { $0.hasSuffix(".bias") })
        // the head (97 rows) leaves 33 rows outside the panels: its kernel gets a K × 64 tail panel; 60-row weights do not
        let plan = MemoryPlan(g, external: [g.outputs[0].value: "logits"], packed: packed)
        for (i, n) in g.nodes.enumerated() where n.kind == .linear {
            let rows = g.nodes[n.operands[1]].type.shape.dims[0].constValue!
            let k = g.nodes[n.operands[1]].type.shape.dims[1].constValue!
            if rows % 64 == 0 { #expect(plan.workspace[i] == nil) } else { #expect(plan.slotSizes[plan.workspace[i]!].evaluate([:]) == 64 * k) }
        }
    }

    // Any signature compiles: several inputs and outputs of any rank, and the tables the C API reads list them.
    @Test func compilesAnySignature() throws {
        let (g, d, _) = compile("""
        model M
        input x: i32[B, T] where T <= 4
        input y: f32[B, 3]
        h = embed(x, 5, 3)
        output o = h
        output p = linear(y, 2)
        """)
        let m = try CEmitter.emit([try Pipeline().function("forward", of: try #require(g, "\(d)"), train: nil)], sourceName: "m")
        #expect(m.source.contains("{\"x\", KILN_I32, 2, {-1, -1}, {\"B\", \"T\"}, {0, 4}, KILN_ROLE_TOKENS, 5, 0, 0},"))
        #expect(m.source.contains("{\"y\", KILN_F32, 2, {-1, 3}, {\"B\", NULL}, {0, 3}, KILN_ROLE_DATA, 0, 0, 0},"))
        #expect(m.source.contains("{\"o\", KILN_F32, 3, {-1, -1, 3}"))
        #expect(m.source.contains("{\"p\", KILN_F32, 2, {-1, 2}"))
    }
}
