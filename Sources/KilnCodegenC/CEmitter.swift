import KilnBasics
import KilnIR

/// A reason the C backend cannot compile a (valid) graph.
public struct CodegenError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// Settings of the C backend.
public struct CodegenOptions: Sendable {
    /// Element type of weights and activations: f32 (the binaries) or f64 (gradient checks).
    public var dtype: DType = .f32
    /// `#define KILN_TRAIN_*` defaults written into model.h when there is a training graph.
    public var trainDefines: [(String, String)] = []
    public init(dtype: DType = .f32, trainDefines: [(String, String)] = []) { self.dtype = dtype; self.trainDefines = trainDefines }
}

/// The generated sources of one model.
public struct GeneratedModel: Sendable {
    public var header: String
    public var source: String
    public var forwardPlan: MemoryPlan
    public var trainPlan: MemoryPlan?
}

/// Lowers graphs to C: `model.h` (the interface the runtime's programs use:
/// sizes, the parameter table, the training defaults) and `model.c`
/// (kernels, the parameter table, `kiln_forward` and, for a training graph,
/// `kiln_train_step`: one kernel call per IR node with a comment giving the
/// node, buffers from one arena).
public struct CEmitter {
    let inference: Graph
    let training: Graph?
    let options: CodegenOptions
    let sourceName: String

    /// The model's interface, as the programs need it.
    struct Interface {
        var input: Int, output: Int
        var batch: String, seq: String
        var context: Int, vocab: Int, outDim: Int
    }

    public static func emit(_ g: Graph, training: Graph? = nil, options: CodegenOptions = CodegenOptions(), sourceName: String) throws -> GeneratedModel {
        let e = CEmitter(inference: g, training: training, options: options, sourceName: sourceName)
        let iface = try e.interface()
        if let t = training {
            let a = g.parameters.map { g.nodes[$0].name! }, b = t.parameters.map { t.nodes[$0].name! }
            guard a == b else { throw CodegenError(description: "the training graph's parameters differ from the inference graph's") }
        }
        let packed = packedWeights(g)
        let forward = FunctionEmitter(g: g, plan: MemoryPlan(g, external: [iface.output: "logits"], packed: packed), real: e.real,
                                      packed: packed)
        var trainFn: FunctionEmitter?
        if let t = training {
            var ext: [Int: String] = [:]
            var offset = 0
            for p in t.parameters {
                if let out = t.outputs.first(where: { $0.name == "grad." + t.nodes[p].name! }), ext[out.value] == nil {
                    ext[out.value] = "(grads + \(offset))"
                }
                offset += t.nodes[p].type.shape.elementCount.evaluate([:])
            }
            trainFn = FunctionEmitter(g: t, plan: MemoryPlan(t, external: ext), real: e.real)
        }
        return GeneratedModel(header: e.header(iface, forward.plan),
                              source: try e.source(iface, forward, trainFn),
                              forwardPlan: forward.plan, trainPlan: trainFn?.plan)
    }

    var real: String { options.dtype == .f64 ? "double" : "float" }

    /// Whether every attention of the graph is causal: then a position's output depends only on the positions
    /// before it, and a KV cache (`kiln_decode_step`, `kiln_prefill`) computes what the forward pass does.
    /// Models with bidirectional attention generate with a full forward pass per token.
    static func allAttentionCausal(_ g: Graph) -> Bool {
        g.nodes.allSatisfy { $0.kind != .attention || $0.attrs.bool("causal") == true }
    }

    /// The node whose call `kiln_prefill` restricts to the last row: the output's producer, when it is a linear
    /// layer over packed weights without a residual operand (a row-wise product, so the last position's logits
    /// need only the last input row) in a model a KV cache serves; nil otherwise, and then there is no prefill.
    static func prefillHead(_ g: Graph, packed: Set<Int>) -> Int? {
        guard allAttentionCausal(g), g.outputs.count == 1 else { return nil }
        let i = g.outputs[0].value, n = g.nodes[i]
        guard n.kind == .linear, packed.contains(n.operands[1]), n.attrs.bool("residual") != true,
              n.type.shape.rank == 3 else { return nil }
        return i
    }

    /// Which generation entry points the model gets: `kiln_decode_step` (and `kiln_prefill`) need a KV cache.
    var emitsDecode: Bool { Self.allAttentionCausal(inference) }
    var emitsPrefill: Bool { Self.prefillHead(inference, packed: Self.packedWeights(inference)) != nil }

    /// Parameters that `kiln_pack_params` rearranges into the GEMM's panel layout for inference:
    /// weights of linear layers whose every other use is an embedding lookup (a tied output head),
    /// which then reads the packed table.
    public static func packedWeights(_ g: Graph) -> Set<Int> {
        var asWeight = Set<Int>(), otherUse = Set<Int>()
        for n in g.nodes {
            for (k, o) in n.operands.enumerated() {
                let weight = (n.kind == .linear && k == 1) || (n.kind == .linearStack && k >= 1 && k <= n.attrs.int("count")!)
                if weight { asWeight.insert(o) } else if !(n.kind == .embedding && k == 0) { otherUse.insert(o) }
            }
        }
        return Set(g.parameters.filter { asWeight.contains($0) && !otherUse.contains($0) && g.nodes[$0].type.shape.rank == 2 })
    }

    /// Checks the graph has the shape of a language model: one `i32[B, T]`
    /// input with `T` bounded, one float output `[B, T, N]`.
    func interface() throws -> Interface {
        let g = inference
        let inputs = g.inputs
        guard inputs.count == 1 else { throw CodegenError(description: "the C backend needs exactly one input (token ids i32[B, T]); the model has \(inputs.count)") }
        let inp = g.nodes[inputs[0]]
        guard inp.type.dtype == .i32, inp.type.shape.rank == 2, case .sym(let b) = inp.type.shape.dims[0], case .sym(let t) = inp.type.shape.dims[1] else {
            throw CodegenError(description: "input '\(inp.name ?? "")' must be i32[B, T] with symbolic B and T, got \(inp.type)")
        }
        guard let context = g.bound(of: .sym(t)) else { throw CodegenError(description: "the sequence dim \(t) needs a bound: declare 'where \(t) <= context'") }
        guard g.outputs.count == 1 else { throw CodegenError(description: "the C backend needs exactly one output (logits); the model has \(g.outputs.count)") }
        let outIndex = g.outputs[0].value
        let out = g.nodes[outIndex]
        guard out.type.dtype == .f32, out.type.shape.rank == 3, out.type.shape.dims[0] == .sym(b), out.type.shape.dims[1] == .sym(t),
              let outDim = out.type.shape.dims[2].constValue else {
            throw CodegenError(description: "output '\(g.outputs[0].name)' must be f32[\(b), \(t), N], got \(out.type)")
        }
        guard out.kind.isPure, out.kind != .sliceRows else {
            throw CodegenError(description: "output '\(g.outputs[0].name)' must be computed by an operation")
        }
        guard let emb = g.nodes.first(where: { $0.kind == .embedding && $0.operands[1] == inputs[0] }),
              let vocab = g.nodes[emb.operands[0]].type.shape.dims[0].constValue else {
            throw CodegenError(description: "input '\(inp.name ?? "")' must feed an embedding (the vocabulary is its row count)")
        }
        return Interface(input: inputs[0], output: outIndex, batch: b, seq: t, context: context, vocab: vocab, outDim: outDim)
    }

    /// How the optimiser treats a parameter: embedding tables, norm gains, biases, other weights.
    func role(_ p: Int) -> String {
        let g = inference
        if g.nodes.contains(where: { ($0.kind == .embedding || $0.kind == .sliceRows) && $0.operands.first == p }) { return "KILN_ROLE_EMBEDDING" }
        if g.nodes.contains(where: { $0.kind == .layernorm && $0.operands.count > 1 && $0.operands[1] == p }) { return "KILN_ROLE_NORM" }
        if g.nodes[p].type.shape.rank == 1 { return "KILN_ROLE_BIAS" }
        return "KILN_ROLE_WEIGHT"
    }

    // MARK: model.h

    func header(_ i: Interface, _ plan: MemoryPlan) -> String {
        let params = inference.parameters
        var h = """
        /* Generated by kiln from \(sourceName): model \(inference.name). Do not edit; rebuild with kiln. */
        #ifndef KILN_MODEL_H
        #define KILN_MODEL_H
        #include <stddef.h>
        #include <stdint.h>

        #define KILN_MODEL_NAME "\(inference.name)"
        #define KILN_VOCAB \(i.vocab)        /* input token ids must be in [0, KILN_VOCAB) */
        #define KILN_OUT_DIM \(i.outDim)      /* logits last dimension */
        #define KILN_CONTEXT \(i.context)      /* maximum sequence length \(i.seq) */
        #define KILN_NUM_PARAMS \(params.count)    /* number of parameter tensors */
        #define KILN_PARAM_FLOATS \(plan.paramCount) /* total elements of all parameters */

        /* element type of weights and activations */
        typedef \(real) kiln_real;
        #define KILN_REAL_IS_DOUBLE \(options.dtype == .f64 ? 1 : 0)

        typedef enum { KILN_INIT_ZEROS = 0, KILN_INIT_ONES = 1, KILN_INIT_NORMAL = 2 } kiln_init_kind;
        /* how the optimiser treats a parameter (weight decay skips biases and norm gains) */
        typedef enum { KILN_ROLE_WEIGHT = 0, KILN_ROLE_BIAS = 1, KILN_ROLE_NORM = 2, KILN_ROLE_EMBEDDING = 3 } kiln_param_role;

        /* One parameter tensor: its safetensors name, shape, place in the parameter block, initialisation. */
        typedef struct {
            const char *name;      /* safetensors tensor name, e.g. "layers.0.attention.query.weight" */
            int ndim;              /* 1..4 */
            int64_t shape[4];
            size_t offset;         /* offset in elements into the parameter block */
            size_t numel;
            kiln_init_kind init;
            float init_std;        /* for KILN_INIT_NORMAL: N(0, init_std^2) */
            kiln_param_role role;
        } kiln_param_info;

        extern const kiln_param_info kiln_params[KILN_NUM_PARAMS];

        /* elements of scratch memory kiln_forward needs for a batch of shape [B, T] */
        size_t kiln_forward_arena_floats(int B, int T);

        /* Rearranges the weights of the linear layers in params, in place, into the panel layout that kiln_forward and
         * kiln_decode_step read (same size; the parameter block is no longer in weights-file layout afterwards).
         * Call once after loading. Returns 0, or -1 when its scratch (64 x the widest layer input) cannot be allocated. */
        int kiln_pack_params(kiln_real *params);

        /* the matrix-product microkernel this CPU runs: "avx512", "avx2" or "portable" (KILN_ISA overrides) */
        const char *kiln_isa(void);

        /* tokens: [B, T] int32 in [0, KILN_VOCAB); logits out: [B, T, KILN_OUT_DIM];
         * params: KILN_PARAM_FLOATS elements after kiln_pack_params; arena: kiln_forward_arena_floats(B, T) elements */
        void kiln_forward(const kiln_real *params, kiln_real *arena, const int32_t *tokens, int B, int T, kiln_real *logits);

        """
        if emitsDecode {
            h += """
            /* Generation with a KV cache (batch 1): kiln_decode_step(pos) computes the logits of the token at
             * position pos (0 <= pos < KILN_CONTEXT) in O(pos) time, reading and extending the cache that the
             * steps 0 .. pos-1 filled. cache: kiln_decode_cache_floats() elements; arena: kiln_decode_arena_floats(). */
            #define KILN_HAS_DECODE 1
            size_t kiln_decode_cache_floats(void);
            size_t kiln_decode_arena_floats(void);
            void kiln_decode_step(const kiln_real *params, kiln_real *cache, kiln_real *arena, int32_t token, int pos, kiln_real *logits);

            """
        }
        if emitsPrefill {
            h += """
            /* The prompt (batch 1, 1 <= T <= KILN_CONTEXT) in one forward pass: fills cache positions 0 .. T-1 and
             * writes the logits of position T-1, as T kiln_decode_step calls would. arena: kiln_forward_arena_floats(1, T). */
            #define KILN_HAS_PREFILL 1
            void kiln_prefill(const kiln_real *params, kiln_real *cache, kiln_real *arena, const int32_t *tokens, int T, kiln_real *logits);

            """
        }
        if training != nil {
            h += """

            /* ---- training ---- */
            #define KILN_HAS_TRAIN 1
            /* Training defaults from the model file's train section; every one is overridable on train's command line. */

            """
            for (k, v) in options.trainDefines { h += "#define KILN_TRAIN_\(k) \(v)\n" }
            h += """

            /* elements of scratch memory kiln_train_step needs for [B, T] */
            size_t kiln_train_arena_floats(int B, int T);

            /* forward + backward for one micro-batch: tokens and targets are [B, T] int32 in [0, KILN_VOCAB);
             * OVERWRITES grads (KILN_PARAM_FLOATS elements) with d(loss)/d(params), where loss is the mean
             * cross-entropy of logits[b, t] against targets[b, t]; returns the loss. seed drives dropout masks. */
            kiln_real kiln_train_step(const kiln_real *params, kiln_real *grads, kiln_real *arena, const int32_t *tokens,
                                      const int32_t *targets, int B, int T, uint64_t seed);

            """
        }
        return h + "\n#endif\n"
    }

    // MARK: model.c

    /// `kiln_isa` and `kiln_pack_params` (the packing itself is `pack_weight_in_place` of kernels/gemm.h).
    func packFunction(_ f: FunctionEmitter) -> String {
        var out = "const char *kiln_isa(void) { return gemm_isa(); }\n\n"
        let weights = f.packed.sorted()
        if weights.isEmpty {
            return out + "int kiln_pack_params(real *params) { (void)params; return 0; }\n\n"
        }
        let maxK = weights.map { inference.nodes[$0].type.shape.dims[1].constValue ?? 0 }.max()!
        out += """
        int kiln_pack_params(real *params) {
            real *tmp = malloc((size_t)GEMM_NR * \(maxK) * sizeof(real));
            if (!tmp) return -1;

        """
        for p in weights {
            let n = inference.nodes[p]
            guard case .param(let off) = f.plan.storage[p] else { continue }
            let d = n.type.shape.dims.map { $0.constValue ?? 0 }
            out += "    pack_weight_in_place(params + \(off), \(d[0]), \(d[1]), tmp);  /* \(n.name!) (\(d[0]), \(d[1])) */\n"
        }
        return out + "    free(tmp);\n    return 0;\n}\n\n"
    }

    func source(_ i: Interface, _ forward: FunctionEmitter, _ train: FunctionEmitter?) throws -> String {
        var out = """
        /* Generated by kiln from \(sourceName): model \(inference.name). Do not edit; rebuild with kiln.
         * The kernels its ops call (runtime/kernels/), then the parameter table, then kiln_forward\(train != nil ? " and kiln_train_step" : ""):
         * one kernel call per IR op. */
        #include "model.h"
        #include "kernels/kiln_kernel.h"

        /* size in elements rounded up to a 64-byte boundary */
        #define KILN_ALIGN(n) (((n) + (size_t)(64 / sizeof(real)) - 1) & ~((size_t)(64 / sizeof(real)) - 1))

        /* the kernels of this model's ops */

        """
        let fns = [forward] + (train.map { [$0] } ?? [])
        // the matrix-product engine first (kiln_isa reports its choice), then each op's kernel file once
        var files = ["gemm.h"]
        var fused: [String] = []
        var fusedNames: [String: FusedExpr] = [:]
        for f in fns {
            for n in f.g.nodes {
                if let file = try n.kind.lowering().kernelFile, !files.contains(file) { files.append(file) }
                guard n.kind == .fused else { continue }
                // one kernel per distinct expression
                let e = try n.fusedExpression()
                let name = FusedKernels.name(e)
                if let other = fusedNames.updateValue(e, forKey: name) {
                    guard other == e else {  // a 32-bit hash collision
                        throw CodegenError(description: "fused expressions \(other) and \(e) have one kernel name, \(name)")
                    }
                    continue
                }
                fused.append(FusedKernels.source(e, real: real))
            }
        }
        for file in files { out += "#include \"kernels/\(file)\"\n" }
        out += "\n"
        for k in fused { out += k + "\n\n" }
        out += packFunction(forward)

        out += "/* The parameter tensors, in the weights file's order. */\n"
        out += "const kiln_param_info kiln_params[KILN_NUM_PARAMS] = {\n"
        for p in inference.parameters {
            let n = inference.nodes[p]
            guard case .param(let off) = forward.plan.storage[p] else { continue }
            let dims = n.type.shape.dims.map { $0.constValue ?? 0 }
            guard dims.count >= 1, dims.count <= 4 else { throw CodegenError(description: "parameter '\(n.name!)' has rank \(dims.count); the C backend supports 1 to 4") }
            let shape = (dims + Array(repeating: 0, count: 4 - dims.count)).map(String.init).joined(separator: ", ")
            let initKind = ["zeros": "KILN_INIT_ZEROS", "ones": "KILN_INIT_ONES", "normal": "KILN_INIT_NORMAL"][n.attrs.word("init") ?? ""] ?? "KILN_INIT_ZEROS"
            out += "    {\"\(n.name!)\", \(dims.count), {\(shape)}, \(off), \(dims.reduce(1, *)), \(initKind), \(cFloat(n.attrs.float("std") ?? 0, "float")), \(role(p))},\n"
        }
        out += "};\n\n"

        out += forward.layout(name: "forward_layout", b: i.batch, t: i.seq)
        out += """
        size_t kiln_forward_arena_floats(int B, int T) {
            size_t off[\(max(forward.plan.slotSizes.count, 1))];
            return forward_layout(B, T, off);
        }

        void kiln_forward(const real *params, real *arena, const int32_t *tokens, int \(i.batch), int \(i.seq), real *logits) {
            size_t off[\(max(forward.plan.slotSizes.count, 1))];
            forward_layout(\(i.batch), \(i.seq), off);

        """
        out += try forward.body(indent: "    ")
        out += "}\n"
        let slots = max(forward.plan.slotSizes.count, 1)
        if emitsDecode {  // decoding token by token equals the forward pass only then
            let dec = FunctionEmitter(g: inference, plan: forward.plan, real: real, decode: true, packed: forward.packed)
            out += """

            size_t kiln_decode_cache_floats(void) { return \(dec.cacheCount); }

            size_t kiln_decode_arena_floats(void) {
                size_t off[\(slots)];
                return forward_layout(1, 1, off);
            }

            /* One step of generation with a KV cache: the logits (KILN_OUT_DIM) of `token` at position `pos`,
             * given that steps 0 .. pos-1 ran before with the same cache. */
            void kiln_decode_step(const real *params, real *cache, real *arena, int32_t token, int pos, real *logits) {
                size_t off[\(slots)];
                forward_layout(1, 1, off);
                const int \(i.batch) = 1, \(i.seq) = 1;
                const int32_t *tokens = &token;

            """
            out += try dec.body(indent: "    ")
            out += "    (void)\(i.batch); (void)\(i.seq); (void)cache; (void)pos;  /* unused by models without attention or positions */\n}\n"
        }
        if emitsPrefill {
            let pre = FunctionEmitter(g: inference, plan: forward.plan, real: real, prefill: true, packed: forward.packed)
            out += """

            /* The prompt in one pass: fills cache positions 0 .. T-1 with the keys and values of tokens[0 .. T-1] and
             * writes the logits (KILN_OUT_DIM) of the last one, as T calls of kiln_decode_step would. */
            void kiln_prefill(const real *params, real *cache, real *arena, const int32_t *tokens, int \(i.seq), real *logits) {
                size_t off[\(slots)];
                forward_layout(1, \(i.seq), off);
                const int \(i.batch) = 1;

            """
            out += try pre.body(indent: "    ")
            out += "    (void)\(i.batch); (void)cache;\n}\n"
        }
        if let t = train {
            let loss = t.g.outputs.first { $0.name == "loss" }!.value
            out += "\n" + t.layout(name: "train_layout", b: i.batch, t: i.seq)
            out += """
            size_t kiln_train_arena_floats(int B, int T) {
                size_t off[\(max(t.plan.slotSizes.count, 1))];
                return train_layout(B, T, off);
            }

            real kiln_train_step(const real *params, real *grads, real *arena, const int32_t *tokens,
                                 const int32_t *targets, int \(i.batch), int \(i.seq), uint64_t seed) {
                size_t off[\(max(t.plan.slotSizes.count, 1))];
                train_layout(\(i.batch), \(i.seq), off);

            """
            out += try t.body(indent: "    ")
            out += "    (void)seed;\n    return \(t.ptr(loss))[0];\n}\n"
        }
        return out
    }
}

/// Emits the body of one generated function: the arena layout and one
/// kernel call per node.
struct FunctionEmitter {
    let g: Graph
    let plan: MemoryPlan
    let real: String
    let names: [String]
    /// Decode mode: one new token at position `pos` (B = T = 1); attention
    /// appends its key and value to a per-layer cache and attends over it.
    var decode = false
    /// Prefill mode: the forward pass of a prompt (B = 1, positions 0 .. T-1) that also stores each attention's
    /// keys and values in the KV cache, with the output's producing linear run on the last row only.
    var prefill = false
    /// Decode and prefill: element offset of each attention node's K cache (V follows it).
    var cacheOffsets: [Int: Int] = [:]
    var cacheCount = 0
    /// Parameters stored in the GEMM's panel layout (inference only).
    var packed: Set<Int> = []
    /// Prefill mode: the node run on the last row only (`CEmitter.prefillHead`).
    var lastRow: Int?

    init(g: Graph, plan: MemoryPlan, real: String, decode: Bool = false, prefill: Bool = false, packed: Set<Int> = []) {
        self.g = g; self.plan = plan; self.real = real; self.decode = decode; self.prefill = prefill; self.packed = packed
        if prefill { lastRow = CEmitter.prefillHead(g, packed: packed) }
        if decode || prefill {
            let context = g.dims.compactMap(\.bound).max() ?? 1
            for (i, n) in g.nodes.enumerated() where n.kind == .attention {
                cacheOffsets[i] = cacheCount
                cacheCount += 2 * context * (n.type.shape.last?.constValue ?? 0)
            }
        }
        var counter = 0
        names = g.nodes.map { n in
            if let name = n.name { return "%" + name }
            defer { counter += 1 }
            return "%\(counter)"
        }
    }

    /// `static size_t NAME(int B, int T, size_t off[])`: slot k starts at off[k].
    func layout(name: String, b: String, t: String) -> String {
        var out = "/* Activation arena of \(name == "forward_layout" ? "kiln_forward" : "kiln_train_step"): slot k starts at off[k] elements; returns the total. */\n"
        out += "static size_t \(name)(int \(b), int \(t), size_t off[\(max(plan.slotSizes.count, 1))]) {\n"
        out += "    size_t total = 0;\n"
        for (k, s) in plan.slotSizes.enumerated() {
            out += "    off[\(k)] = total; total += KILN_ALIGN(\(s.cExpression));\n"
        }
        if plan.slotSizes.isEmpty { out += "    off[0] = 0;\n" }
        out += "    (void)\(b); (void)\(t);\n    return total;\n}\n\n"
        return out
    }

    func body(indent: String) throws -> String {
        var out = ""
        var written = Set<Int>()
        for (idx, n) in g.nodes.enumerated() where n.kind != .param && n.kind != .input {
            var attrs = ""
            if !n.attrs.isEmpty { attrs = " {" + n.attrs.entries.map { "\($0.0): \($0.1)" }.joined(separator: ", ") + "}" }
            out += "\n\(indent)/* \(names[idx]) = \(n.kind.rawValue)(\(n.operands.map { names[$0] }.joined(separator: ", ")))\(attrs) : \(n.type) */\n"
            out += try call(idx).split(separator: "\n", omittingEmptySubsequences: false).map { indent + $0 }.joined(separator: "\n") + "\n"
            written.insert(idx)
        }
        // A value that is several outputs (two parameters with the same gradient) is copied.
        var placed = Set<Int>()
        for o in g.outputs where o.name.hasPrefix("grad.") {
            if placed.insert(o.value).inserted { continue }
            let p = g.parameters.first { "grad." + g.nodes[$0].name! == o.name }!
            var off = 0
            for q in g.parameters where q < p { off += g.nodes[q].type.shape.elementCount.evaluate([:]) }
            out += "\(indent)memcpy(grads + \(off), \(ptr(o.value)), \(count(o.value)) * sizeof(real));\n"
        }
        return out
    }

    /// A C expression for the memory of a value.
    func ptr(_ i: Int) -> String {
        switch plan.storage[i] {
        case .input(let name): return name == "targets" ? "targets" : "tokens"
        case .param(let off): return "(params + \(off))"
        case .slot(let s): return "(arena + off[\(s)])"
        case .external(let e): return e
        case .view(let src):
            // Decode: the view is row `pos` of a position table.
            if decode, g.nodes[i].kind == .sliceRows {
                let row = Shape(Array(g.nodes[i].type.shape.dims.dropFirst())).elementCount.cExpression
                return "(\(ptr(src)) + (size_t)pos * \(row))"
            }
            if let off = plan.viewOffset[i], off != SizeExpr(constant: 0) { return "(\(ptr(src)) + \(off.cExpression))" }
            return ptr(src)
        }
    }

    func workspace(_ i: Int) -> String { "(arena + off[\(plan.workspace[i]!)])" }

    /// Element count of a value as a C expression.
    func count(_ i: Int) -> String { g.nodes[i].type.shape.elementCount.cExpression }
    func rows(_ t: TensorType) -> String { Shape(Array(t.shape.dims.dropLast())).elementCount.cExpression }
    func lastDim(_ t: TensorType) -> String { t.shape.dims.last.map(\.description) ?? "1" }
    func type(_ i: Int) -> TensorType { g.nodes[i].type }

    /// The C statements of one node: its op's lowering (`CLowering.call`). Decoding and prefilling
    /// rewrite attention here to read and write the KV cache.
    func call(_ idx: Int) throws -> String {
        let n = g.nodes[idx]
        let o = n.operands
        let p = o.map(ptr)
        let dst = ptr(idx)
        let t = n.type
        if n.kind == .attention && decode {
            let c = lastDim(t), off = cacheOffsets[idx]!
            let context = g.dims.compactMap(\.bound).max() ?? 1
            return """
            /* append this token's key and value to the cache, attend over positions 0..pos */
            memcpy(cache + \(off) + (size_t)pos * \(c), \(p[1]), \(c) * sizeof(real));
            memcpy(cache + \(off + context * (t.shape.last!.constValue ?? 0)) + (size_t)pos * \(c), \(p[2]), \(c) * sizeof(real));
            attention_rows_forward(\(dst), \(p[0]), cache + \(off), cache + \(off + context * (t.shape.last!.constValue ?? 0)), 1, 1, pos + 1, \(c), \(n.attrs[Attention.heads]), 0);
            """
        }
        if n.kind == .attention && prefill {
            let q = t.shape.dims, k = type(o[1]).shape.dims, off = cacheOffsets[idx]!
            let c = t.shape.last!.constValue ?? 0, context = g.dims.compactMap(\.bound).max() ?? 1
            return """
            /* keys and values of positions 0..T-1 into the cache (batch 1: rows are positions), then attention */
            memcpy(cache + \(off), \(p[1]), \(count(o[1])) * sizeof(real));
            memcpy(cache + \(off + context * c), \(p[2]), \(count(o[2])) * sizeof(real));
            attention_forward(\(dst), \(p[0]), \(p[1]), \(p[2]), \(workspace(idx)), \(q[0]), \(q[1]), \(k[1]), \(q[2]), \(n.attrs[Attention.heads]), \(n.attrs[Attention.causal] ? 1 : 0));
            """
        }
        return try n.kind.lowering().call(CallContext(f: self, index: idx))
    }
}


/// A floating-point literal for C: shortest round-trip text of the value
/// in the target type (`1e-05f` for float, `1e-05` for double).
func cFloat(_ v: Double, _ real: String) -> String {
    var s = real == "double" ? "\(v)" : "\(Float(v))"
    if !s.contains(".") && !s.contains("e") && !s.contains("n") && !s.contains("i") { s += ".0" }
    return real == "double" ? s : s + "f"
}
