import KilnIR

/// The C lowering of `fused` (pass `fuse-elementwise`): one kernel per distinct
/// expression, one loop over the output that reads each operand once per element
/// and keeps the intermediate values in registers. Activations call the functions of
/// the activation table (`runtime/kernels/activations.h`) that the separate kernels
/// call too, so a fused graph computes the same floats as the unfused one.
enum FusedKernels {
    /// The kernel's name: the ops in prefix order (up to four) and a hash of the expression,
    /// e.g. `fused_mul_add_relu_9c1d02aa_forward`.
    static func name(_ e: FusedExpr) -> String {
        var h: UInt32 = 2166136261  // FNV-1a of the expression's text: stable across runs and platforms
        for b in e.description.utf8 { h = (h ^ UInt32(b)) &* 16777619 }
        let hex = String(h, radix: 16)
        let ops = e.ops.prefix(4).map(\.rawValue).joined(separator: "_")
        return "fused_\(ops)_\(String(repeating: "0", count: 8 - hex.count) + hex)_forward"
    }

    static func operandCount(_ e: FusedExpr) -> Int { (e.operandsUsed.max() ?? -1) + 1 }

    /// The kernel's C source.
    static func source(_ e: FusedExpr, real: String) -> String {
        let n = operandCount(e)
        var body: [String] = []
        var temps = 0
        func value(_ e: FusedExpr) -> String {
            let v: String
            switch e {
            case .operand(let k): return "v\(k)"
            case .scale(let a, let f): v = "\(value(a)) * \(cFloat(f, real))"
            case .binary(let k, let a, let b):
                if let act = FusedExpr.gradientOf(k) {  // NAME_grad(dy, x): the table's kiln_act_NAME_grad(x, dy)
                    let dy = value(a)
                    v = "kiln_act_\(act.name)_grad(\(value(b)), \(dy))"
                } else {
                    let op = [OpKind.add: "+", .sub: "-", .mul: "*", .div: "/"][k]!
                    v = "\(value(a)) \(op) \(value(b))"
                }
            case .unary(let k, let a): v = "kiln_act_\(k.rawValue)(\(value(a)))"
            }
            let t = "t\(temps)"
            temps += 1
            body.append("const real \(t) = \(v);")
            return t
        }
        let result = value(e)
        // the parameters, wrapped under the first one
        let head = "static void \(name(e))("
        let params = ["real *restrict out"] + (0..<n).map { "const real *restrict x\($0)" } + ["size_t N"] + (0..<n).map { "size_t n\($0)" }
        var lines: [String] = []
        var line = ""
        for (k, p) in params.enumerated() {
            let piece = p + (k + 1 < params.count ? "," : ") {")
            if !line.isEmpty, head.count + line.count + 1 + piece.count > 116 { lines.append(line); line = "" }
            line += (line.isEmpty ? "" : " ") + piece
        }
        lines.append(line)
        let signature = head + lines.joined(separator: "\n" + String(repeating: " ", count: head.count))
        var out = """
        /* fused elementwise ops (fuse-elementwise): out = \(e)
         * out is (N); operand k is (nk), repeated along out when shorter (a suffix broadcast: nk divides N, and
         * element i reads xk[i % nk]). Rows are the shortest operand's length, or blocks of 4096 when none repeats. */
        \(signature)
            size_t R = n0;

        """
        for k in 1..<max(n, 1) { out += "    if (n\(k) < R) R = n\(k);\n" }
        out += """
            if (R == N) R = N < 4096 ? N : 4096;
            #pragma omp parallel for schedule(static)
            for (size_t r0 = 0; r0 < N; r0 += R) {
                const size_t len = N - r0 < R ? N - r0 : R;
                real *restrict o = out + r0;

        """
        for k in 0..<n { out += "        const real *restrict a\(k) = x\(k) + r0 % n\(k);\n" }
        // libm's math functions do not vectorise: no simd pragma then (clang warns about a simd loop it cannot vectorise)
        let math = Set(Activation.all.filter { !$0.isActivation }.flatMap { [$0.kind, $0.gradKind] })
        let vectorises = !e.ops.contains { math.contains($0) }
        out += (vectorises ? "        #pragma omp simd\n" : "") + "        for (size_t i = 0; i < len; i++) {\n"
        for k in 0..<n { out += "            const real v\(k) = a\(k)[i];\n" }
        for line in body { out += "            \(line)\n" }
        out += "            o[i] = \(result);\n        }\n    }\n}"
        return out
    }
}
