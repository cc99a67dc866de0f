import Testing
import KilnBasics
import KilnIR
import KilnAutodiff
import KilnFrontend
import KilnDriver

@Suite struct AutodiffTests {
    static let tiny = """
    graph Tiny {
      dim B
      dim T <= 4
      %tokens = input : i32[B, T]
      %e.weight = param {init: normal, std: 0.02} : f32[5, 3]
      %0 = embedding(%e.weight, %tokens) : f32[B, T, 3]
      %1 = mul(%0, %0) : f32[B, T, 3]
      %2 = linear(%1, %e.weight) : f32[B, T, 5]
      output logits = %2
    }
    """

    @Test func trainingGraphHasLossAndOneGradientPerParameter() throws {
        let g = try Autodiff.trainStep(from: try parseIR(Self.tiny), objective: .nextToken("logits"))
        #expect(g.outputs.map(\.name) == ["loss", "grad.e.weight"])
        #expect(g.nodes[g.outputs[0].value].kind == .crossEntropy)
        #expect(g.nodes[g.outputs[0].value].type.description == "f32[]")
        #expect(g.inputs.map { g.nodes[$0].name! } == ["tokens", "targets"])
        // Printed backward IR parses back.
        let text = IRPrinter.print(g)
        #expect(IRPrinter.print(try IRParser.parse(text)) == text)
    }

    @Test func gradientsOfSeveralUsesAreSummedOnce() throws {
        let g = try Autodiff.trainStep(from: try parseIR(Self.tiny), objective: .nextToken("logits"))
        // e.weight is used by the embedding and the (tied) linear: its gradient is one add of the two.
        let grad = g.nodes[g.outputs[1].value]
        #expect(grad.kind == .add)
        let parts = Set(grad.operands.map { g.nodes[$0].kind })
        #expect(parts == [.embeddingGrad, .linearGradWeight])
        // %1 = mul(%0, %0): both uses contribute to %0's gradient, summed by one add.
        let embGrad = g.nodes.first { $0.kind == .embeddingGrad }!
        #expect(g.nodes[embGrad.operands[0]].kind == .add)
    }

    @Test func dropoutGradientReusesTheMask() throws {
        let (g0, d, _) = compile("""
        model M
        input t: i32[B, T] where T <= 4
        output logits = linear(dropout(embed(t, 7, 4), 0.5), 7)
        """)
        let g = try Autodiff.trainStep(from: try #require(g0, "\(d)"), objective: .nextToken("logits"))
        let drops = g.nodes.filter { $0.kind == .dropout }
        #expect(drops.count == 2)
        #expect(drops[0].attrs == drops[1].attrs)
        // both masks come from the step's seed, an input of train_step
        let seed = try #require(g.inputs.first { g.nodes[$0].name == "seed" })
        #expect(drops.allSatisfy { $0.operands[1] == seed })
        #expect(g.nodes[seed].type.description == "i64[]")
        // Inference drops dropout entirely, and with it the seed input.
        let inference = try Pipeline().function("forward", of: try #require(g0), train: nil)
        #expect(!inference.nodes.contains { $0.kind == .dropout })
        #expect(inference.inputs.map { inference.nodes[$0].name! } == ["t"])
    }

    // A model input named `seed` keeps its name; the dropout seed takes another, and the runtime finds it by role.
    @Test func theDropoutSeedAvoidsTheNamesOfInputs() throws {
        let (g0, d, _) = compile("""
        model M
        input t: i32[B, T] where T <= 4
        input seed: f32[B, T, 4]
        input dropout_seed: f32[B, T, 4]
        output logits = linear(dropout(embed(t, 7, 4) + seed + dropout_seed, 0.5), 7)
        """)
        let g = try #require(g0, "\(d)")
        let step = try Autodiff.trainStep(from: g, objective: .nextToken("logits"))
        #expect(step.inputs.map { step.nodes[$0].name! } == ["t", "seed", "dropout_seed", "dropout_seed_1", "targets"])
        let seed = try #require(step.inputs.first { step.nodes[$0].attrs[Input.role] == "seed" })
        #expect(step.nodes[seed].name == "dropout_seed_1" && step.nodes[seed].type.description == "i64[]")
    }

    @Test func trainSectionIsParsedAndChecked() throws {
        let file = SourceFile(path: "t.kiln", text: readRepoFile("examples/char-gpt-small.kiln"))
        let r = try Frontend.compile(file)
        let t = try #require(r.train)
        #expect(t.optimizer == .adamw && t.lr == 1e-3 && t.beta2 == 0.99 && t.weightDecay == 0.1)
        #expect(t.schedule == .cosine && t.warmup == 100 && t.minLR == 1e-4 && t.steps == 2000)
        #expect(t.batch == 12 && t.seq == 64 && t.clip == 1.0)

        let (_, text, _) = compile("""
        model M
        input t: i32[B, T] where T <= 4
        output logits = linear(embed(t, 7, 4), 7)
        train {
          objective = next_token(logits)
          optimizer = adamw(lr: -1)
          seq = 9
          batch = 0
          colour = 3
        }
        """)
        #expect(text.contains("lr must be positive, got -1.0"), "\(text)")
        #expect(text.contains("seq 9 exceeds the context 4"))
        #expect(text.contains("batch must be positive, got 0"))
        #expect(text.contains("unknown train entry 'colour'"))
        let (_, text2, _) = compile("model M\ninput t: i32[B, T] where T <= 4\noutput y = linear(embed(t, 7, 4), 7)\ntrain {\n  batch = 2\n}\n")
        #expect(text2.contains("the train section needs an objective"), "\(text2)")
    }

    @Test func maskedLanguageModelObjective() throws {
        let r = try Frontend.compile(SourceFile(path: "b.kiln", text: readRepoFile("examples/bert-char.kiln")))
        let t = try #require(r.train)
        #expect(t.objective.readsText)
        #expect(t.objective.masking?.mask == 256 && t.objective.masking?.rate == 0.15)
        // the training graph: targets [B, T] ignoring -1, and a cross-entropy that ignores it too
        let step = try Autodiff.trainStep(from: try #require(r.graph), objective: t.objective)
        let targets = try #require(step.inputs.first { step.nodes[$0].name == "targets" })
        #expect(step.nodes[targets].attrs.value(Input.ignore) == -1)
        #expect(step.nodes.contains { $0.kind == .crossEntropy && $0.attrs.value(CrossEntropy.ignore) == -1 })
        for (objective, message) in [
            ("masked_lm(logits)", "masked_lm needs the id of the mask token"),
            ("masked_lm(logits, mask: 7)", "the mask id 7 is not a token: 't' ids lie in [0, 7)"),
            ("masked_lm(logits, mask: 3, rate: 1.5)", "rate must be in (0, 1), got 1.5"),
            ("masked_lm(logits, mask: 3) + next_token(logits)", "an objective reads text once"),
        ] {
            let (_, text, _) = compile("model M\ninput t: i32[B, T] where T <= 4\noutput logits = linear(embed(t, 7, 4), 7)\ntrain {\n  objective = \(objective)\n}\n")
            #expect(text.contains(message), "\(text)")
        }
    }

    @Test func trainingArenaKeepsWhatTheBackwardPassNeeds() throws {
        let (g0, d, _) = compile(readRepoFile("examples/odd-postnorm.kiln"))
        let t = try Pipeline().function("train_step", of: try #require(g0, "\(d)"), train: nil)
        // Every gradient output exists and has its parameter's type.
        for p in t.parameters {
            let name = t.nodes[p].name!
            let out = try #require(t.outputs.first { $0.name == "grad." + name })
            #expect(t.nodes[out.value].type == t.nodes[p].type)
        }
    }
}

@Suite struct AttentionBackwardTests {
    @Test func selfAttentionGetsOneBackwardPassAndThreeViews() throws {
        let (g0, d, _) = compile("""
        model M
        input t: i32[B, T] where T <= 4
        output logits = linear(attention(embed(t, 7, 4), heads: 2, mask: causal), 7)
        """)
        let g = try Autodiff.trainStep(from: try #require(g0, "\(d)"), objective: .nextToken("logits"))
        let grads = g.nodes.filter { $0.kind == .attentionGrad }
        #expect(grads.count == 1)
        #expect(grads.first?.attrs.word("wrt") == "all")
        #expect(grads.first?.type.description == "f32[3, B, T, 4]")
        #expect(g.nodes.filter { $0.kind == .select }.map { $0.attrs.int("index")! } == [0, 1, 2])
    }
}
