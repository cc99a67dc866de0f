import Testing
import KilnIR
import KilnTransforms

/// Pass tests are IR text in, IR text out, plus a no-change case each.
@Suite struct PassTests {
    func run(_ pass: any Pass, _ input: String) throws -> (Bool, String) {
        var g = try parseIR(input)
        let changed = try pass.run(&g)
        try Verifier.verify(g)
        return (changed, IRPrinter.print(g))
    }

    // dce: values no output uses are removed, parameters included; inputs stay.
    @Test func dceRemovesUnusedNodesAndParams() throws {
        let (changed, out) = try run(DeadCodeElimination(), """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %w = param {init: zeros} : f32[3, 4]
          %0 = linear(%x, %w) : f32[B, 3]
          %1 = relu(%x) : f32[B, 4]
          output y = %1
        }
        """)
        #expect(changed)
        #expect(out == """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %0 = relu(%x) : f32[B, 4]
          output y = %0
        }

        """)
    }

    @Test func dceLeavesALiveGraphAlone() throws {
        let input = "graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %0 = relu(%x) : f32[B, 4]\n  output y = %0\n}\n"
        let (changed, out) = try run(DeadCodeElimination(), input)
        #expect(!changed)
        #expect(out == input)
    }

    // cse: add(a, b) and add(b, a) are one value; identical relus are one value.
    @Test func cseMergesIdenticalAndCommutedNodes() throws {
        let (changed, out) = try run(CommonSubexpressionElimination(), """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %y = input : f32[B, 4]
          %0 = add(%x, %y) : f32[B, 4]
          %1 = add(%y, %x) : f32[B, 4]
          %2 = relu(%0) : f32[B, 4]
          %3 = relu(%1) : f32[B, 4]
          %4 = mul(%2, %3) : f32[B, 4]
          output z = %4
        }
        """)
        #expect(changed)
        #expect(out == """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %y = input : f32[B, 4]
          %0 = add(%x, %y) : f32[B, 4]
          %1 = relu(%0) : f32[B, 4]
          %2 = mul(%1, %1) : f32[B, 4]
          output z = %2
        }

        """)
    }

    @Test func cseKeepsDistinctValuesAndParams() throws {
        let input = """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %a = param {init: zeros} : f32[4]
          %b = param {init: zeros} : f32[4]
          %0 = sub(%x, %a) : f32[B, 4]
          %1 = sub(%a, %x) : f32[B, 4]
          %2 = scale(%0) {factor: 2.0} : f32[B, 4]
          %3 = scale(%0) {factor: 3.0} : f32[B, 4]
          %4 = add(%2, %3) : f32[B, 4]
          %5 = add(%4, %1) : f32[B, 4]
          %6 = add(%5, %b) : f32[B, 4]
          output z = %6
        }

        """
        let (changed, out) = try run(CommonSubexpressionElimination(), input)
        #expect(!changed)
        #expect(out == input)
    }

    // fuse-epilogue: gelu of a linear and a residual added to it become the linear's epilogue.
    @Test func fuseEpilogueFoldsActivationAndResidualIntoLinear() throws {
        let (changed, out) = try run(FuseLinearEpilogue(), """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %w1 = param {init: zeros} : f32[8, 4]
          %b1 = param {init: zeros} : f32[8]
          %w2 = param {init: zeros} : f32[4, 8]
          %0 = linear(%x, %w1, %b1) : f32[B, 8]
          %1 = gelu(%0) : f32[B, 8]
          %2 = linear(%1, %w2) : f32[B, 4]
          %3 = add(%x, %2) : f32[B, 4]
          output y = %3
        }
        """)
        #expect(changed)
        #expect(out == """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %w1 = param {init: zeros} : f32[8, 4]
          %b1 = param {init: zeros} : f32[8]
          %w2 = param {init: zeros} : f32[4, 8]
          %0 = linear(%x, %w1, %b1) {activation: gelu} : f32[B, 8]
          %1 = linear(%0, %w2, %x) {residual: true} : f32[B, 4]
          output y = %1
        }

        """)
    }

    // A gated linear unit (SwiGLU): silu goes into the gate's epilogue, and the product with it into the up
    // projection's (the gate, computed first, multiplies).
    @Test func fuseEpilogueMultipliesTheUpProjectionByItsGate() throws {
        let (changed, out) = try run(FuseLinearEpilogue(), """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %wg = param {init: zeros} : f32[8, 4]
          %wu = param {init: zeros} : f32[8, 4]
          %0 = linear(%x, %wg) : f32[B, 8]
          %1 = silu(%0) : f32[B, 8]
          %2 = linear(%x, %wu) : f32[B, 8]
          %3 = mul(%1, %2) : f32[B, 8]
          output y = %3
        }
        """)
        #expect(changed)
        #expect(out == """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %wg = param {init: zeros} : f32[8, 4]
          %wu = param {init: zeros} : f32[8, 4]
          %0 = linear(%x, %wg) {activation: silu} : f32[B, 8]
          %1 = linear(%x, %wu, %0) {residual: true, combine: mul} : f32[B, 8]
          output y = %1
        }

        """)
    }

    // No fusion when the linear's value has another use, when the residual is broadcast,
    // or when the activation would have to run after a fused residual.
    @Test func fuseEpilogueLeavesSharedBroadcastAndMisorderedValues() throws {
        let input = """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %r = input : f32[4]
          %w = param {init: zeros} : f32[4, 4]
          %0 = linear(%x, %w) : f32[B, 4]
          %1 = relu(%0) : f32[B, 4]
          %2 = mul(%0, %1) : f32[B, 4]
          %3 = linear(%2, %w) : f32[B, 4]
          %4 = add(%3, %r) : f32[B, 4]
          output y = %4
        }

        """
        let (changed, out) = try run(FuseLinearEpilogue(), input)
        #expect(!changed)
        #expect(out == input)
        let (changed2, out2) = try run(FuseLinearEpilogue(), """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %w = param {init: zeros} : f32[4, 4]
          %0 = linear(%x, %w) : f32[B, 4]
          %1 = add(%0, %x) : f32[B, 4]
          %2 = relu(%1) : f32[B, 4]
          output y = %2
        }
        """)
        #expect(changed2)
        #expect(out2.contains("%0 = linear(%x, %w, %x) {residual: true} : f32[B, 4]\n  %1 = relu(%0)"))
    }

    // fuse-elementwise: a tree of single-use elementwise values becomes one fused op; a value read twice
    // (%x) is one operand, and an operand may repeat along the batch (%c).
    @Test func fuseElementwiseMakesOneOpOfATree() throws {
        let (changed, out) = try run(FuseElementwise(), """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %y = input : f32[B, 4]
          %c = input : f32[4]
          %0 = add(%x, %c) : f32[B, 4]
          %1 = relu(%y) : f32[B, 4]
          %2 = mul(%0, %1) : f32[B, 4]
          %3 = scale(%x) {factor: 0.5} : f32[B, 4]
          %4 = sub(%2, %3) : f32[B, 4]
          %5 = gelu(%4) : f32[B, 4]
          output y = %5
        }
        """)
        #expect(changed)
        #expect(out == """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %y = input : f32[B, 4]
          %c = input : f32[4]
          %0 = fused(%x, %c, %y) {expr: "gelu(sub(mul(add(x0, x1), relu(x2)), scale(x0, 0.5)))"} : f32[B, 4]
          output y = %0
        }

        """)
        // run again: nothing left to fuse
        let (again, out2) = try run(FuseElementwise(), out)
        #expect(!again && out2 == out)
    }

    // A gated linear unit in training: silu(gate) is read by the product and by the product's gradient, so
    // each computes it again and it is not computed alone; the gate's gradient fuses silu_grad with the
    // product before it. An activation with a reader that is not elementwise (%o) stays.
    @Test func fuseElementwiseComputesAnActivationAgainInEachReader() throws {
        let (changed, out) = try run(FuseElementwise(), """
        graph G {
          dim B
          %gate = input : f32[B, 4]
          %up = input : f32[B, 4]
          %dy = input : f32[B, 4]
          %w = input : f32[3, 4]
          %0 = silu(%gate) : f32[B, 4]
          %1 = mul(%0, %up) : f32[B, 4]
          %2 = mul(%dy, %0) : f32[B, 4]
          %3 = mul(%dy, %up) : f32[B, 4]
          %4 = silu_grad(%3, %gate) : f32[B, 4]
          %5 = relu(%up) : f32[B, 4]
          %6 = add(%5, %dy) : f32[B, 4]
          %7 = linear(%5, %w) : f32[B, 3]
          output y = %1
          output dup = %2
          output dgate = %4
          output z = %6
          output o = %7
        }
        """)
        #expect(changed)
        #expect(out == """
        graph G {
          dim B
          %gate = input : f32[B, 4]
          %up = input : f32[B, 4]
          %dy = input : f32[B, 4]
          %w = input : f32[3, 4]
          %0 = fused(%gate, %up) {expr: "mul(silu(x0), x1)"} : f32[B, 4]
          %1 = fused(%dy, %gate) {expr: "mul(x0, silu(x1))"} : f32[B, 4]
          %2 = fused(%dy, %up, %gate) {expr: "silu_grad(mul(x0, x1), x2)"} : f32[B, 4]
          %3 = relu(%up) : f32[B, 4]
          %4 = add(%3, %dy) : f32[B, 4]
          %5 = linear(%3, %w) : f32[B, 3]
          output y = %0
          output dup = %1
          output dgate = %2
          output z = %4
          output o = %5
        }

        """)
    }

    // A value with a second use, a graph output, a value of another shape than its reader's, and an op that
    // needs general broadcasting ([B, 1] against [B, 4]) stay separate; a lone op stays itself.
    @Test func fuseElementwiseLeavesSharedOutputsReshapedAndBroadcastValues() throws {
        let input = """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %c = input : f32[4]
          %k = input : f32[B, 1]
          %0 = relu(%x) : f32[B, 4]
          %1 = mul(%0, %0) : f32[B, 4]
          %2 = gelu(%x) : f32[B, 4]
          %3 = add(%2, %x) : f32[B, 4]
          %4 = scale(%c) {factor: 2.0} : f32[4]
          %5 = add(%x, %4) : f32[B, 4]
          %6 = relu(%x) : f32[B, 4]
          %7 = mul(%6, %k) : f32[B, 4]
          %8 = relu(%k) : f32[B, 1]
          output a = %1
          output b = %2
          output c = %3
          output d = %5
          output e = %7
          output f = %8
        }

        """
        let (changed, out) = try run(FuseElementwise(), input)
        #expect(!changed)
        #expect(out == input)
    }

    // A tree nested deeper than an expr may be (64 ops) stays as it is; one at the limit fuses.
    @Test func fuseElementwiseKeepsExpressionsWithinTheDepthLimit() throws {
        func chain(_ n: Int) -> String {
            var t = "graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %0 = relu(%x) : f32[B, 4]\n"
            for i in 1..<n { t += "  %\(i) = relu(%\(i - 1)) : f32[B, 4]\n" }
            return t + "  output y = %\(n - 1)\n}\n"
        }
        let (deep, out) = try run(FuseElementwise(), chain(65))
        #expect(!deep && out == chain(65))
        let (long, _) = try run(FuseElementwise(), chain(100_000))  // the walk stops at the limit: no deep recursion
        #expect(!long)
        let (atLimit, fused) = try run(FuseElementwise(), chain(64))
        #expect(atLimit && fused.contains("%0 = fused(%x) {expr: \"" + String(repeating: "relu(", count: 64) + "x0"))
    }

    // Two scales whose product overflows f32 stay apart (one factor would not be a finite f32 number).
    @Test func simplifyLeavesScalesWhoseProductOverflows() throws {
        let input = "graph G {\n  dim B\n  %x = input : f32[B, 4]\n  %0 = scale(%x) {factor: 1e+20} : f32[B, 4]\n"
            + "  %1 = scale(%0) {factor: 1e+20} : f32[B, 4]\n  output y = %1\n}\n"
        let (changed, out) = try run(Simplify(), input)
        #expect(!changed && out == input)
    }

    // simplify: scale by 1 disappears, scales of scales fold into one, x + -y is x - y.
    @Test func simplifyFoldsScalesAndNegations() throws {
        let (changed, out) = try run(Simplify(), """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %y = input : f32[B, 4]
          %0 = scale(%x) {factor: 2.0} : f32[B, 4]
          %1 = scale(%0) {factor: 0.25} : f32[B, 4]
          %2 = scale(%y) {factor: -1.0} : f32[B, 4]
          %3 = add(%2, %1) : f32[B, 4]
          %4 = sub(%3, %2) : f32[B, 4]
          %5 = scale(%4) {factor: 1.0} : f32[B, 4]
          %6 = relu(%5) : f32[B, 4]
          output z = %6
        }
        """)
        #expect(changed)
        #expect(out == """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %y = input : f32[B, 4]
          %0 = scale(%x) {factor: 2.0} : f32[B, 4]
          %1 = scale(%x) {factor: 0.5} : f32[B, 4]
          %2 = scale(%y) {factor: -1.0} : f32[B, 4]
          %3 = sub(%1, %y) : f32[B, 4]
          %4 = add(%3, %y) : f32[B, 4]
          %5 = relu(%4) : f32[B, 4]
          output z = %5
        }

        """)
    }

    // No change: a broadcast negation, a scale that is an output, other factors.
    @Test func simplifyLeavesOtherScalesAlone() throws {
        let input = """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %y = input : f32[4]
          %0 = scale(%y) {factor: -1.0} : f32[4]
          %1 = add(%x, %0) : f32[B, 4]
          %2 = scale(%1) {factor: 1.0} : f32[B, 4]
          %3 = scale(%x) {factor: 3.0} : f32[B, 4]
          output a = %2
          output b = %3
        }

        """
        let (changed, out) = try run(Simplify(), input)
        #expect(!changed)
        #expect(out == input)
    }

    // merge-linears: Q, K and V projections of one input become one linear_stack and three selects.
    @Test func mergeLinearsStacksProjectionsOfOneInput() throws {
        let (changed, out) = try run(MergeParallelLinears(), """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %wq = param {init: zeros} : f32[4, 4]
          %bq = param {init: zeros} : f32[4]
          %q = linear(%x, %wq, %bq) : f32[B, 4]
          %wk = param {init: zeros} : f32[4, 4]
          %bk = param {init: zeros} : f32[4]
          %k = linear(%x, %wk, %bk) : f32[B, 4]
          %wv = param {init: zeros} : f32[4, 4]
          %bv = param {init: zeros} : f32[4]
          %v = linear(%x, %wv, %bv) : f32[B, 4]
          %0 = add(%q, %k) : f32[B, 4]
          %1 = mul(%0, %v) : f32[B, 4]
          output y = %1
        }
        """)
        #expect(changed)
        #expect(out == """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %wq = param {init: zeros} : f32[4, 4]
          %bq = param {init: zeros} : f32[4]
          %wk = param {init: zeros} : f32[4, 4]
          %bk = param {init: zeros} : f32[4]
          %wv = param {init: zeros} : f32[4, 4]
          %bv = param {init: zeros} : f32[4]
          %0 = linear_stack(%x, %wq, %wk, %wv, %bq, %bk, %bv) {count: 3} : f32[3, B, 4]
          %1 = select(%0) {index: 0} : f32[B, 4]
          %2 = select(%0) {index: 1} : f32[B, 4]
          %3 = select(%0) {index: 2} : f32[B, 4]
          %4 = add(%1, %2) : f32[B, 4]
          %5 = mul(%4, %3) : f32[B, 4]
          output y = %5
        }

        """)
    }

    // No merge: different weight shapes, a bias on one only, a weight read elsewhere, a fused
    // activation, or a member used before the last one is computed.
    @Test func mergeLinearsLeavesIncompatibleLinearsAlone() throws {
        let input = """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %w1 = param {init: zeros} : f32[4, 4]
          %0 = linear(%x, %w1) : f32[B, 4]
          %w2 = param {init: zeros} : f32[3, 4]
          %1 = linear(%x, %w2) : f32[B, 3]
          %w3 = param {init: zeros} : f32[4, 4]
          %b3 = param {init: zeros} : f32[4]
          %2 = linear(%x, %w3, %b3) : f32[B, 4]
          %w4 = param {init: zeros} : f32[4, 4]
          %3 = linear(%x, %w4) : f32[B, 4]
          %4 = mul(%w4, %w4) : f32[4, 4]
          %w5 = param {init: zeros} : f32[4, 4]
          %5 = linear(%x, %w5) {activation: relu} : f32[B, 4]
          %6 = relu(%0) : f32[B, 4]
          %w6 = param {init: zeros} : f32[4, 4]
          %7 = linear(%x, %w6) : f32[B, 4]
          output a = %1
          output b = %2
          output c = %4
          output g = %3
          output d = %5
          output e = %6
          output f = %7
        }

        """
        let (changed, out) = try run(MergeParallelLinears(), input)
        #expect(!changed)
        #expect(out == input)
        // without the early use of %0 (by %6), %0 and %7 merge; %3 (weight read by %4) still does not
        let (changed2, out2) = try run(MergeParallelLinears(), input.replacingOccurrences(of: "%6 = relu(%0)", with: "%6 = relu(%x)"))
        #expect(changed2)
        #expect(out2.contains("linear_stack(%x, %w1, %w6) {count: 2} : f32[2, B, 4]"))
        #expect(out2.contains("%2 = linear(%x, %w4) : f32[B, 4]"))
    }

    // fuse-grad-acc: a gradient sum moves into the op that produces one of its terms.
    @Test func fuseGradAccFoldsSumsIntoGradientProducers() throws {
        let (changed, out) = try run(FuseGradientAccumulation(), """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %ids = input : i32[B]
          %dy = input : f32[B, 3]
          %dz = input : f32[B, 5]
          %w = param {init: zeros} : f32[3, 4]
          %v = param {init: zeros} : f32[3, 4]
          %g = param {init: ones} : f32[4]
          %t = param {init: zeros} : f32[5, 4]
          %0 = linear_grad_input(%dy, %w) : f32[B, 4]
          %1 = linear_grad_input(%dy, %v) : f32[B, 4]
          %2 = add(%0, %1) : f32[B, 4]
          %3 = linear_grad_input(%dy, %w) : f32[B, 4]
          %4 = add(%2, %3) : f32[B, 4]
          %5 = layernorm_grad_input(%4, %x, %g) {eps: 1e-05} : f32[B, 4]
          %6 = add(%x, %5) : f32[B, 4]
          %7 = linear_grad_weight(%dz, %x) : f32[5, 4]
          %8 = embedding_grad(%6, %ids, %t) : f32[5, 4]
          %9 = add(%7, %8) : f32[5, 4]
          output a = %6
          output b = %9
        }
        """)
        #expect(changed)
        #expect(out == """
        graph G {
          dim B
          %x = input : f32[B, 4]
          %ids = input : i32[B]
          %dy = input : f32[B, 3]
          %dz = input : f32[B, 5]
          %w = param {init: zeros} : f32[3, 4]
          %v = param {init: zeros} : f32[3, 4]
          %g = param {init: ones} : f32[4]
          %t = param {init: zeros} : f32[5, 4]
          %0 = linear_grad_input(%dy, %w) : f32[B, 4]
          %1 = linear_grad_input(%dy, %v, %0) {accumulate: true} : f32[B, 4]
          %2 = linear_grad_input(%dy, %w, %1) {accumulate: true} : f32[B, 4]
          %3 = layernorm_grad_input(%2, %x, %g, %x) {eps: 1e-05, accumulate: true} : f32[B, 4]
          %4 = linear_grad_weight(%dz, %x) : f32[5, 4]
          %5 = embedding_grad(%3, %ids, %t, %4) {accumulate: true} : f32[5, 4]
          output a = %3
          output b = %5
        }

        """)
        // printed IR parses back
        let (again, _) = try run(DeadCodeElimination(), out)
        #expect(!again)
    }

    @Test func fuseGradAccLeavesSharedBroadcastAndMisorderedTermsAlone() throws {
        let input = """
        graph G {
          dim B
          %dy = input : f32[B, 3]
          %w = param {init: zeros} : f32[3, 4]
          %b = param {init: zeros} : f32[4]
          %0 = linear_grad_input(%dy, %w) : f32[B, 4]
          %1 = add(%0, %0) : f32[B, 4]
          %2 = linear_grad_input(%dy, %w) : f32[B, 4]
          %3 = add(%2, %b) : f32[B, 4]
          %4 = linear_grad_input(%dy, %w) : f32[B, 4]
          %5 = relu(%4) : f32[B, 4]
          %6 = add(%4, %5) : f32[B, 4]
          %7 = linear_grad_weight(%dy, %5) : f32[3, 4]
          %8 = add(%7, %w) : f32[3, 4]
          output a = %1
          output b = %3
          output c = %6
          output d = %8
        }

        """
        let (changed, out) = try run(FuseGradientAccumulation(), input)
        #expect(!changed)
        #expect(out == input)
    }

    @Test func standardPipelineReachesAFixedPoint() throws {
        let (g0, d, _) = compile(readRepoFile("examples/char-gpt.kiln"))
        var g = try #require(g0, "\(d)")
        try PassManager.standard().run(&g)
        var again = g
        var changedAny = false
        try PassManager.standard().run(&again) { _, _, changed, _ in changedAny = changedAny || changed }
        #expect(!changedAny)
        #expect(IRPrinter.print(again) == IRPrinter.print(g))
        #expect(IRPrinter.print(g).contains("linear_stack("))
    }
}
