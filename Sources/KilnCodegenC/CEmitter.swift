import KilnBasics
import KilnIR

/// A reason the C backend cannot compile a (valid) graph.
public struct CodegenError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(description: String) { self.description = description }
}

/// Settings of the C backend.
public struct CodegenOptions: Sendable {
    /// Element type of weights and activations: f32 (the binaries) or f64 (gradient checks).
    public var dtype: DType = .f32
    /// The train section's defaults, (name, C value): `#define KILN_TRAIN_NAME value` in the programs' model.h.
    public var trainDefaults: [(String, String)] = []
    /// The prefix of the library's symbols (`char_gpt`); by default the model's name in snake case.
    public var prefix: String?
    /// The model file's `weights` section: where each parameter is in another library's checkpoint.
    public var weights: WeightSources?
    public init(dtype: DType = .f32, trainDefaults: [(String, String)] = [], prefix: String? = nil, weights: WeightSources? = nil) {
        self.dtype = dtype; self.trainDefaults = trainDefaults; self.prefix = prefix; self.weights = weights
    }
}

/// The generated sources of one model.
public struct GeneratedModel: Sendable {
    /// The prefix of the library's symbols and files (`libPREFIX.a`, `PREFIX.h`).
    public var prefix: String
    /// `PREFIX.h`, the library's documented header.
    public var apiHeader: String
    /// `model.h`, what the build directory's programs include: the API under generic names (`KILN(run)`).
    public var programHeader: String
    /// `model.c`: kernels, functions, tables, and the API implementation included at its end.
    public var source: String
    /// The entry points, in order, with their memory plans.
    public var functions: [(name: String, plan: MemoryPlan)]
    public func plan(_ function: String) -> MemoryPlan? { functions.first { $0.name == function }?.plan }
    public var forwardPlan: MemoryPlan { plan("forward")! }
    public var trainPlan: MemoryPlan? { plan("train_step") }
}

/// Lowers a model's entry points to one C translation unit, `model.c`: the kernels its ops need (included
/// from runtime/kernels/), one C function per entry point (one kernel call per IR node, under a comment giving
/// the node; activations in one arena), the tables that describe the parameters, state and functions to
/// the C API, and the API itself (runtime/kiln_lib.c) with the model's prefix.
public struct CEmitter {
    let functions: [Graph]
    let options: CodegenOptions
    let sourceName: String
    let prefix: String
    /// The parameters, in weights-file order, with their element offsets in the parameter block.
    let params: [(name: String, node: Node, offset: Int)]
    /// Parameters that inference functions read in the matrix-product engine's panel layout, by name.
    let packedNames: Set<String>
    /// The packed weights that are LSTMs' recurrent weights (`gatePackedWeights`), in lstm.c's layout.
    let gatePackedNames: Set<String>
    /// The state tensors (KV caches) by name, in order.
    let states: [(name: String, type: TensorType)]

    var real: String { options.dtype == .f64 ? "double" : "float" }
    var model: Graph { functions[0] }

    public static func emit(_ functions: [Graph], options: CodegenOptions = CodegenOptions(), sourceName: String) throws -> GeneratedModel {
        let e = try CEmitter(functions, options: options, sourceName: sourceName)
        var emitters: [FunctionEmitter] = []
        for f in functions {
            let packed = f.function == "train_step" ? [] : Set(f.parameters.filter { e.packedNames.contains(f.nodes[$0].name!) })
            emitters.append(try FunctionEmitter(g: f, real: e.real, packed: packed, paramOffsets: e.paramOffsets,
                                                stateTable: e.states.map(\.name)))
        }
        return GeneratedModel(prefix: e.prefix, apiHeader: e.apiHeader(), programHeader: e.programHeader(),
                              source: try e.source(emitters), functions: emitters.map { ($0.g.function, $0.plan) })
    }

    init(_ functions: [Graph], options: CodegenOptions, sourceName: String) throws {
        guard let first = functions.first else { throw CodegenError(description: "a model needs at least one function") }
        self.functions = functions
        self.options = options
        self.sourceName = sourceName
        let prefix = options.prefix ?? Self.libraryPrefix(first.name)
        guard Self.isCIdentifier(prefix) else { throw CodegenError(description: "the prefix '\(prefix)' is not a C identifier") }
        guard !Self.reservedPrefixes.contains(prefix) else {
            throw CodegenError(description: "the prefix '\(prefix)' would name the library's header \(prefix).h, which a build directory already has")
        }
        self.prefix = prefix
        // the parameters of all functions, in their order (each function's are in the model's order)
        var order: [String] = []
        var nodes: [String: Node] = [:]
        for f in functions {
            var at = 0
            for p in f.parameters {
                let n = f.nodes[p], name = n.name!
                if let old = nodes[name] {
                    guard old.type == n.type else { throw CodegenError(description: "parameter '\(name)' is \(old.type) in one function and \(n.type) in another") }
                    at = order.firstIndex(of: name)! + 1
                } else {
                    nodes[name] = n
                    order.insert(name, at: at)
                    at += 1
                }
            }
        }
        var offset = 0
        var params: [(String, Node, Int)] = []
        for name in order {
            let n = nodes[name]!
            guard n.type.shape.dims.allSatisfy({ $0.constValue != nil }) else { throw CodegenError(description: "parameter '\(name)' has a symbolic shape \(n.type.shape)") }
            guard (1...4).contains(n.type.shape.rank) else { throw CodegenError(description: "parameter '\(name)' has rank \(n.type.shape.rank); the C backend supports 1 to 4") }
            params.append((name, n, offset))
            offset += n.type.shape.elementCount.evaluate([:])
        }
        self.params = params
        // packed: a weight that some inference function reads as a linear layer's weight and every other reads so
        // too, or only looks rows up in (a tied table: `attention_maps` stops before the output head)
        var packable: Set<String>?, asWeight = Set<String>()
        for f in functions where f.function != "train_step" {
            let mine = Set(Self.packedWeights(f).union(Self.gatePackedWeights(f)).map { f.nodes[$0].name! })
            asWeight.formUnion(mine)
            let used = Set(f.parameters.map { f.nodes[$0].name! })
            let allowed = mine.union(Self.lookedUpOnly(f).map { f.nodes[$0].name! }).union(Set(order).subtracting(used))
            packable = packable.map { $0.intersection(allowed) } ?? allowed
        }
        packedNames = (packable ?? []).intersection(asWeight)
        gatePackedNames = Set(functions.filter { $0.function != "train_step" }.flatMap { f in Self.gatePackedWeights(f).map { f.nodes[$0].name! } })
            .intersection(packedNames)
        // the state tensors
        var states: [(String, TensorType)] = []
        for f in functions {
            for s in f.states {
                let n = f.nodes[s]
                if let old = states.first(where: { $0.0 == n.name! }) {
                    guard old.1 == n.type else { throw CodegenError(description: "state '\(n.name!)' is \(old.1) in one function and \(n.type) in another") }
                } else {
                    states.append((n.name!, n.type))
                }
            }
        }
        self.states = states
    }

    var paramOffsets: [String: Int] { Dictionary(uniqueKeysWithValues: params.map { ($0.name, $0.offset) }) }
    var paramCount: Int { params.reduce(0) { $0 + $1.node.type.shape.elementCount.evaluate([:]) } }

    /// `CharGPTSmall` → `char_gpt_small`, `GPT2Small` → `gpt2_small`.
    public static func snakeCase(_ name: String) -> String {
        let chars = Array(name)
        var out = ""
        for (i, c) in chars.enumerated() {
            if c.isUppercase && i > 0 {
                let prev = chars[i - 1], next = i + 1 < chars.count ? chars[i + 1] : nil
                if prev.isLowercase || prev.isNumber || (prev.isUppercase && next?.isLowercase == true) { out += "_" }
            }
            out += c.isLetter || c.isNumber ? String(c).lowercased() : "_"
        }
        return out.isEmpty || out.first!.isNumber ? "model_" + out : out
    }

    /// Prefixes whose header PREFIX.h would overwrite a file of the build directory (the programs' model.h,
    /// the shared kiln.h).
    static let reservedPrefixes: Set<String> = ["model", "kiln"]

    /// The prefix of a model's C names: its name in snake case, with "_lib" after a reserved one (a model
    /// named Model gets model_lib.h and libmodel_lib.a).
    public static func libraryPrefix(_ name: String) -> String {
        let p = snakeCase(name)
        return reservedPrefixes.contains(p) ? p + "_lib" : p
    }

    static func isCIdentifier(_ s: String) -> Bool {
        guard let f = s.unicodeScalars.first, f.properties.isAlphabetic || f == "_" else { return false }
        return s.unicodeScalars.allSatisfy { ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || $0 == "_" }
    }

    /// Parameters that a function reads in the GEMM's panel layout: weights of linear layers whose every other
    /// use is an embedding lookup (a tied output head), which then reads the packed table.
    /// The recurrent weights [4H, H] of LSTMs (`lstm`, `cached_lstm`) with H a multiple of 16, when nothing else
    /// reads them: stored in lstm.c's gate-interleaved panels (`lstm_pack_gates_in_place`), which take exactly
    /// the weight's elements, so that a decode step does not pack W_hh again.
    public static func gatePackedWeights(_ g: Graph) -> Set<Int> {
        var recurrent = Set<Int>(), otherUse = Set<Int>()
        for n in g.nodes {
            for (k, o) in n.operands.enumerated() {
                if (n.kind == .lstm && k == 1) || (n.kind == .cachedLSTM && k == 3) { recurrent.insert(o) } else { otherUse.insert(o) }
            }
        }
        return Set(g.parameters.filter {
            recurrent.contains($0) && !otherUse.contains($0) && (g.nodes[$0].type.shape.dims[1].constValue ?? 1) % 16 == 0
        })
    }

    /// Matrices whose every use is an embedding lookup, which reads a packed table as well (embedding_packed).
    static func lookedUpOnly(_ g: Graph) -> Set<Int> {
        var lookedUp = Set<Int>(), otherUse = Set<Int>()
        for n in g.nodes {
            for (k, o) in n.operands.enumerated() {
                if n.kind == .embedding && k == 0 { lookedUp.insert(o) } else { otherUse.insert(o) }
            }
        }
        return Set(g.parameters.filter { lookedUp.contains($0) && !otherUse.contains($0) && g.nodes[$0].type.shape.rank == 2 })
    }

    public static func packedWeights(_ g: Graph) -> Set<Int> {
        var asWeight = Set<Int>(), otherUse = Set<Int>()
        for n in g.nodes {
            for (k, o) in n.operands.enumerated() {
                let weight = (n.kind == .linear && k == 1) || (n.kind == .linearStack && k >= 1 && k <= n.attrs[LinearStack.count])
                if weight { asWeight.insert(o) } else if !(n.kind == .embedding && k == 0) { otherUse.insert(o) }
            }
        }
        return Set(g.parameters.filter { asWeight.contains($0) && !otherUse.contains($0) && g.nodes[$0].type.shape.rank == 2 })
    }

    /// How the optimiser treats a parameter: embedding tables, norm gains, biases, other weights.
    func role(_ name: String) -> String {
        for g in functions {
            guard let p = g.parameters.first(where: { g.nodes[$0].name == name }) else { continue }
            if g.nodes.contains(where: { ($0.kind == .embedding || $0.kind == .sliceRows) && $0.operands.first == p }) { return "KILN_PARAM_EMBEDDING" }
            if g.nodes.contains(where: { $0.kind.traits.contains(.normalization) && $0.operands.count > 1 && $0.operands[1] == p }) { return "KILN_PARAM_NORM" }
        }
        return params.first { $0.name == name }!.node.type.shape.rank == 1 ? "KILN_PARAM_BIAS" : "KILN_PARAM_WEIGHT"
    }

    // MARK: model.c

    func source(_ fns: [FunctionEmitter]) throws -> String {
        var out = """
        /* Generated by kiln from \(sourceName): model \(model.name). Do not edit; rebuild with kiln.
         * The kernels its ops call (runtime/kernels/), the parameter table, one C function per entry point (\(fns.map(\.g.function).joined(separator: ", "))),
         * each one kernel call per IR op, then the tables that describe them to the C API (\(prefix).h), which
         * runtime/kiln_lib.c implements, included at the end. */
        #define _POSIX_C_SOURCE 200809L
        #define _DEFAULT_SOURCE
        #define KILN_REAL_IS_DOUBLE \(options.dtype == .f64 ? 1 : 0)
        #include "kiln_model.h"

        /* size in elements rounded up to a 64-byte boundary */
        #define KILN_ALIGN(n) (((n) + (size_t)(64 / sizeof(real)) - 1) & ~((size_t)(64 / sizeof(real)) - 1))

        /* the kernels of this model's ops */

        """
        // the matrix-product engine first (packing and the API's isa use it), then each op's kernel file once
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
        out += paramTable()
        for f in fns {
            out += "/* ---- \(f.g.function) ---- */\n\n"
            out += f.layout()
            out += try f.function()
        }
        out += descriptors(fns)
        out += "/* the C API (\(prefix).h) */\n#define KILN_PREFIX \(prefix)\n#include \"kiln_lib.c\"\n"
        return out
    }

    /// The parameter table and the functions that rearrange the packed weights.
    func paramTable() -> String {
        var out = "/* The parameter tensors, in the weights file's order: name, rank, shape, offset, elements, initialisation, role. */\n"
        out += "static const kiln_param_desc kiln_params[\(max(params.count, 1))] = {\n"
        if params.isEmpty { out += "    {NULL, 0, {0}, 0, 0, KILN_INIT_ZEROS, 0.0f, KILN_PARAM_WEIGHT},\n" }
        for p in params {
            let dims = p.node.type.shape.dims.map { $0.constValue! }
            let shape = (dims + Array(repeating: 0, count: 4 - dims.count)).map(String.init).joined(separator: ", ")
            let initKind = ["zeros": "KILN_INIT_ZEROS", "ones": "KILN_INIT_ONES", "normal": "KILN_INIT_NORMAL"][p.node.attrs[Param.initKind].text]!
            let std = p.node.attrs[Param.initKind] == "normal" ? p.node.attrs[Param.std] : 0
            out += "    {\"\(p.name)\", \(dims.count), {\(shape)}, \(p.offset), \(dims.reduce(1, *)), \(initKind), \(cFloat(std, "float")), \(role(p.name))},\n"
        }
        out += "};\n\n"
        out += sourceTable()
        let packed = params.filter { packedNames.contains($0.name) }
        for (fn, kernel, gateKernel, doc) in [("pack_params", "pack_weight_in_place", "lstm_pack_gates_in_place", "weights-file layout -> the panel layout the inference functions read"),
                                              ("unpack_params", "unpack_weight_in_place", "lstm_unpack_gates_in_place", "the panel layout -> weights-file layout")] {
            out += "/* The linear layers' (and LSTMs' recurrent) weights, in place: \(doc). 0, or -1 when out of memory. */\n"
            guard !packed.isEmpty else {
                out += "static int \(fn)(real *params) { (void)params; return 0; }\n\n"
                continue
            }
            // scratch: 64 rows of the widest linear weight, or the largest recurrent weight whole
            let linearK = packed.filter { !gatePackedNames.contains($0.name) }.map { $0.node.type.shape.dims[1].constValue! }.max() ?? 0
            let recurrent = packed.filter { gatePackedNames.contains($0.name) }.map { $0.node.type.shape.elementCount.evaluate([:]) }.max() ?? 0
            let tmpSize = recurrent > GemmKernels.nr * linearK ? "\(recurrent)" : "GEMM_NR * \(linearK)"
            out += "static int \(fn)(real *params) {\n"
            out += "    real *tmp = malloc((size_t)\(tmpSize) * sizeof(real));\n    if (!tmp) return -1;\n"
            for p in packed {
                let d = p.node.type.shape.dims.map { $0.constValue! }
                if gatePackedNames.contains(p.name) {
                    out += "    \(gateKernel)(params + \(p.offset), \(d[1]), tmp);  /* \(p.name) (\(d[0]), \(d[1])) */\n"
                } else {
                    out += "    \(kernel)(params + \(p.offset), \(d[0]), \(d[1]), tmp);  /* \(p.name) (\(d[0]), \(d[1])) */\n"
                }
            }
            out += "    free(tmp);\n    return 0;\n}\n\n"
        }
        return out
    }

    /// The weights section's table, parallel to the parameter table: each parameter's tensor in the other
    /// library's checkpoint, its slice and transposition; and the patterns of the file's tensors to ignore.
    func sourceTable() -> String {
        guard let w = options.weights else { return "" }
        var out = "/* Where each parameter is in a checkpoint that names it otherwise (the model file's weights section):\n"
        out += " * tensor, slice axis (-1: none), slice start, transposed. */\n"
        out += "static const kiln_param_source kiln_sources[\(max(params.count, 1))] = {\n"
        if params.isEmpty { out += "    {NULL, -1, 0, 0},\n" }
        for p in params {
            let s = w.params[p.name]!
            out += "    {\"\(cString(s.tensor))\", \(s.sliceAxis ?? -1), \(s.sliceStart), \(s.transposed ? 1 : 0)},  /* \(p.name) */\n"
        }
        out += "};\n"
        out += "static const char *const kiln_ignore[\(max(w.ignore.count, 1))] = {\(w.ignore.isEmpty ? "NULL" : w.ignore.map { "\"\(cString($0))\"" }.joined(separator: ", "))};\n\n"
        return out
    }

    /// The text of a C string literal's contents: backslashes and quotes escaped, control characters as spaces.
    func cString(_ s: String) -> String {
        String(s.unicodeScalars.flatMap { c -> [Character] in
            c == "\\" || c == "\"" ? ["\\", Character(c)] : c.value < 0x20 ? [" "] : [Character(c)]
        })
    }

    func cDType(_ t: DType) -> String {
        switch t { case .f32, .f64: options.dtype == .f64 ? "KILN_F64" : "KILN_F32"; case .i32: "KILN_I32"; case .i64: "KILN_I64" }
    }

    /// A `kiln_tensor_desc` initializer.
    func tensorDesc(_ name: String, _ n: Node, _ g: Graph) -> String {
        let d = n.type.shape.dims
        func list(_ items: [String], empty: String) -> String { items.isEmpty ? empty : items.joined(separator: ", ") }
        let shape = list(d.map { $0.constValue.map(String.init) ?? "-1" }, empty: "0")
        let names = list(d.map { if case .sym(let s) = $0 { "\"\(s)\"" } else { "NULL" } }, empty: "NULL")
        let bounds = list(d.map { String(g.bound(of: $0) ?? 0) }, empty: "0")
        var role = "KILN_ROLE_DATA", limit = 0, ignore: Int?
        if n.kind == .input {
            role = "KILN_ROLE_" + n.attrs[Input.role].text.uppercased()
            limit = n.attrs.value(Input.limit) ?? 0
            ignore = n.attrs.value(Input.ignore)
        }
        return "{\"\(name)\", \(cDType(n.type.dtype)), \(d.count), {\(shape)}, {\(names)}, {\(bounds)}, \(role), \(limit), \(ignore != nil ? 1 : 0), \(ignore ?? 0)}"
    }

    /// The tables the API reads: each function's signature, the state, the train section's defaults, the model.
    func descriptors(_ fns: [FunctionEmitter]) -> String {
        var out = "/* ---- the model, as the C API describes it ---- */\n\n"
        var infos: [String] = []
        for f in fns {
            let g = f.g, c = f.cName
            let results = g.outputs.filter { !$0.name.hasPrefix("grad.") }
            let none = "    {NULL, KILN_F32, 0, {0}, {NULL}, {0}, KILN_ROLE_DATA, 0, 0, 0},\n"
            out += "static const kiln_tensor_desc \(c)_inputs[\(max(g.inputs.count, 1))] = {\n"
            for i in g.inputs { out += "    \(tensorDesc(g.nodes[i].name!, g.nodes[i], g)),\n" }
            if g.inputs.isEmpty { out += none }
            out += "};\nstatic const kiln_tensor_desc \(c)_outputs[\(max(results.count, 1))] = {\n"
            for o in results { out += "    \(tensorDesc(o.name, g.nodes[o.value], g)),\n" }
            if results.isEmpty { out += none }
            out += "};\n"
            out += "static const char *const \(c)_dims[\(max(f.dims.count, 1))] = {\(f.dims.isEmpty ? "NULL" : f.dims.map { "\"\($0.name)\"" }.joined(separator: ", "))};\n"
            out += "static const int64_t \(c)_bounds[\(max(f.dims.count, 1))] = {\(f.dims.isEmpty ? "0" : f.dims.map { String($0.bound ?? 0) }.joined(separator: ", "))};\n"
            let limits = g.lengthLimits()
            let limitList = f.dims.map { d in (limits[d.name] ?? nil).map { "\"\(cString($0))\"" } ?? "NULL" }
            out += "/* what needs each dim within its bound (NULL: it may grow past it) */\n"
            out += "static const char *const \(c)_limits[\(max(f.dims.count, 1))] = {\(limitList.isEmpty ? "NULL" : limitList.joined(separator: ", "))};\n\n"
            let grads = g.outputs.contains { $0.name.hasPrefix("grad.") }
            infos.append("{{\"\(g.function)\", \(g.inputs.count), \(c)_inputs, \(results.count), \(c)_outputs, \(g.states.isEmpty ? 0 : 1), \(grads ? 1 : 0)},\n"
                         + "     \(f.dims.count), \(c)_dims, \(c)_bounds, \(c)_limits, \(f.packed.isEmpty ? 0 : 1), \(c)_arena, \(c)}")
        }
        out += "static const kiln_state_info kiln_state[\(max(states.count, 1))] = {\n"
        if states.isEmpty { out += "    {NULL, 0, {0}, 0},\n" }
        for s in states {
            let row = Array(s.type.shape.dims.dropFirst())
            let dims = row.isEmpty ? "0" : row.map { $0.constValue.map(String.init) ?? "0" }.joined(separator: ", ")
            out += "    {\"\(s.name)\", \(row.count), {\(dims)}, \(Shape(row).elementCount.evaluate([:]))},\n"
        }
        out += "};\n\n"
        out += "static const kiln_function_info kiln_functions[\(fns.count)] = {\n" + infos.map { "    " + $0 + ",\n" }.joined() + "};\n\n"
        out += """
        static const kiln_model_info kiln_model = {
            "\(model.name)", \(params.count), kiln_params, \(paramCount), \(states.count), kiln_state, \(fns.count), kiln_functions,
            pack_params, unpack_params, \(options.weights == nil ? "NULL" : "kiln_sources"), \(options.weights?.ignore.count ?? 0), \(options.weights == nil ? "NULL" : "kiln_ignore")
        };


        """
        return out
    }

    // MARK: headers

    /// `PREFIX.h`: the library's documented header.
    func apiHeader() -> String {
        let p = prefix
        var sigs = ""
        for f in functions {
            let ins = f.inputs.map { "\(f.nodes[$0].name!): \(f.nodes[$0].type)" }.joined(separator: ", ")
            let outs = f.outputs.filter { !$0.name.hasPrefix("grad.") }.map { "\($0.name): \(f.nodes[$0.value].type)" }.joined(separator: ", ")
            sigs += " *   \(f.function)(\(ins)) -> (\(outs))\(f.outputs.contains { $0.name.hasPrefix("grad.") } ? " and the gradients" : "")\n"
        }
        var dims = ""
        for d in model.dims { dims += " *   \(d.name)\(d.bound.map { " <= \($0)" } ?? " (unbounded)")\n" }
        return """
        /* \(p).h - the C API of model \(model.name), generated by kiln from \(sourceName) (docs/c-api.md).
         *
         * Link with lib\(p).a (or lib\(p).so) and OpenMP (-fopenmp) and libm; include with -I on this directory.
         * Every symbol of the library starts with \(p)_, so several models link into one program.
         *
         * Its functions, run with \(p)_run (dims are symbolic, each no larger than its bound):
        \(sigs) * Dims:
        \(dims) *
         * Usage:
         *   \(p)_context *ctx;
         *   if (\(p)_open("weights.safetensors", &ctx) != KILN_OK) { puts(\(p)_error(ctx)); \(p)_free(ctx); return 1; }
         *   kiln_tensor in = {"tokens", KILN_I32, 2, {1, 5}, tokens};
         *   kiln_tensor out = {"logits", KILN_F32, 3, {1, 5, 256}, logits};
         *   if (\(p)_run(ctx, "forward", &in, 1, &out, 1) != KILN_OK) puts(\(p)_error(ctx));
         *   \(p)_free(ctx);
         * Each call returns KILN_OK or an error code, with a one-line message for \(p)_error(ctx). The library
         * never prints or exits. A context may be used by one thread at a time. */
        #ifndef \(p.uppercased())_H
        #define \(p.uppercased())_H

        #include "kiln.h"

        #ifdef __cplusplus
        extern "C" {
        #endif

        /* The element type of the model's weights and float tensors. */
        typedef \(real) \(p)_real;

        /* A model instance: its weights, scratch memory, state and last error. */
        typedef struct \(p)_context \(p)_context;

        /* ---- the model ---- */
        const char *\(p)_model_name(void);
        /* The entry points: 0 <= i < \(p)_num_functions(); NULL out of range. */
        int \(p)_num_functions(void);
        const kiln_function_desc *\(p)_function(int i);
        /* The entry point of that name, or NULL. */
        const kiln_function_desc *\(p)_find_function(const char *name);
        /* The parameter tensors, in the weights file's order, and the elements of the parameter block. */
        int \(p)_num_params(void);
        const kiln_param_desc *\(p)_param(int i);
        size_t \(p)_param_elements(void);
        /* The matrix-product microkernel this CPU runs: "avx512", "avx2" or "portable" (KILN_ISA overrides). */
        const char *\(p)_isa(void);

        /* ---- contexts ---- */
        /* A context with all weights zero (KILN_ERR_MEMORY, and *ctx NULL, when out of memory). */
        kiln_status \(p)_create(\(p)_context **ctx);
        /* A context with the weights of a safetensors file. Like sqlite3_open, *ctx is set even on failure (unless
         * out of memory): read \(p)_error(*ctx), then \(p)_free it. */
        kiln_status \(p)_open(const char *weights_path, \(p)_context **ctx);
        void \(p)_free(\(p)_context *ctx);
        /* The message of the last failed call ("" after a success). */
        const char *\(p)_error(const \(p)_context *ctx);
        /* OpenMP threads for this context's calls; 0 (the default): OpenMP's default (OMP_NUM_THREADS). */
        kiln_status \(p)_set_threads(\(p)_context *ctx, int threads);

        /* ---- weights ---- */
        /* Loads weights from a safetensors file, or from the bytes of one in memory (not retained): every parameter
         * as F32 with its exact shape, nothing else (a training checkpoint's "train.*" tensors are skipped). The
         * file is validated first; on failure the weights are unspecified. */
        kiln_status \(p)_load(\(p)_context *ctx, const char *path);
        kiln_status \(p)_load_memory(\(p)_context *ctx, const void *data, size_t size);
        /* GPT-2-style initialisation, deterministic for the seed: N(0, std^2) weights, zero biases, unit gains. */
        kiln_status \(p)_init(\(p)_context *ctx, uint64_t seed);
        /* Writes the weights as safetensors, atomically (a temporary file renamed over the path). */
        kiln_status \(p)_save(\(p)_context *ctx, const char *path);

        /* ---- running ---- */
        /* Runs an entry point. Inputs and outputs are matched by name; each must have the declared dtype, rank and
         * shape (a symbolic dim the same wherever it appears, and no larger than its bound); token ids, targets and
         * positions must lie in [0, limit), masks hold 0 and 1, float inputs are finite. Outputs are written into
         * the caller's buffers. */
        kiln_status \(p)_run(\(p)_context *ctx, const char *function, const kiln_tensor *inputs, int num_inputs,
                             kiln_tensor *outputs, int num_outputs);

        /* ---- state: the KV cache of prefill and decode_step ---- */
        /* Allocates the state for `rows` sequences (its pages are touched as positions are written); a batch of B
         * rows uses rows 0 .. B-1. The first stateful call allocates it for its batch if this was not called. */
        kiln_status \(p)_reset_state(\(p)_context *ctx, int64_t rows);
        int64_t \(p)_state_rows(const \(p)_context *ctx);
        /* Copies one row's state to another (beam search: a beam continues from another). */
        kiln_status \(p)_copy_state_row(\(p)_context *ctx, int64_t from, int64_t to);

        /* ---- training: the parameter and gradient blocks (\(p)_param_elements() each, offsets in \(p)_param) ---- */
        /* The weights in weights-file layout (NULL when out of memory); valid until the next call on the context. */
        \(p)_real *\(p)_params(\(p)_context *ctx);
        /* Where train_step writes each parameter's gradient (allocated on first use; NULL when out of memory). */
        \(p)_real *\(p)_grads(\(p)_context *ctx);

        #ifdef __cplusplus
        }
        #endif

        #endif

        """
    }

    /// `model.h`: the header of the build directory's programs: the API under generic names.
    func programHeader() -> String {
        var h = """
        /* model.h - generated by kiln for the programs of this build directory (infer, train, gradcheck): the
         * C API of model \(model.name) (\(prefix).h) under generic names, KILN(run) for \(prefix)_run. */
        #ifndef KILN_PROGRAM_MODEL_H
        #define KILN_PROGRAM_MODEL_H
        #include "\(prefix).h"
        #define KILN(fn) \(prefix)_##fn
        typedef \(prefix)_context kiln_ctx;
        typedef \(prefix)_real kiln_real;
        #define KILN_REAL_IS_DOUBLE \(options.dtype == .f64 ? 1 : 0)

        """
        if !options.trainDefaults.isEmpty {
            h += "\n/* the train section's defaults: each is also a flag of train */\n#define KILN_HAS_TRAIN 1\n"
            for (k, v) in options.trainDefaults { h += "#define KILN_TRAIN_\(k.uppercased()) \(v)\n" }
        }
        return h + "\n#endif\n"
    }
}

/// A floating-point literal for C: shortest round-trip text of the value
/// in the target type (`1e-05f` for float, `1e-05` for double).
func cFloat(_ v: Double, _ real: String) -> String {
    var s = real == "double" ? "\(v)" : "\(Float(v))"
    if !s.contains(".") && !s.contains("e") && !s.contains("n") && !s.contains("i") { s += ".0" }
    return real == "double" ? s : s + "f"
}
