import ArgumentParser
import Foundation
import KilnDriver

/// `kiln`: compile `.kiln` model files to standalone C binaries.
@main
struct Kiln: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kiln",
        abstract: "Compile transformer model files (.kiln) to standalone OpenMP C binaries.",
        discussion: """
        kiln check FILE              check a model file (parse, types, shapes)
        kiln ir FILE                 print the typed IR of the forward function (--function NAME for another)
        kiln build FILE -o DIR       write C sources + Makefile to DIR and build the model's C library and DIR/infer (and DIR/train)
        kiln stats FILE              parameters, FLOPs per op kind, arena and optimiser bytes
        kiln sweep SPEC -o DIR       train several variants with the same data, budget and seeds; compare them
        The language is documented in docs/language.md, the IR in docs/ir.md.
        """,
        subcommands: [Check.self, IR.self, Build.self, Stats.self, Import.self, Sweep.self]
    )
}

/// Options every command that reads a model file takes.
struct ModelOptions: ParsableArguments {
    @Argument(help: "The model file (.kiln).")
    var file: String

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a config entry, e.g. --set layers=12 (repeatable).", valueName: "name=value"))
    var overrides: [String] = []

    @Flag(name: .customLong("no-fuse"), help: "Skip the fusion passes (to compare optimised and unoptimised code).")
    var noFuse = false

    func validate() throws {
        for o in overrides where !o.contains("=") || o.hasPrefix("=") {
            throw ValidationError("--set expects name=value, got '\(o)'")
        }
    }

    var pipeline: Pipeline {
        var p = Pipeline(overrides: overrides.map { o in
            let parts = o.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (String(parts[0]), String(parts.count > 1 ? parts[1] : ""))
        })
        p.fuse = !noFuse
        return p
    }
}

/// Prints a driver error the way compilers do and exits non-zero.
func fail(_ e: Error) -> ExitCode {
    switch e {
    case DriverError.diagnostics(let text, let n):
        FileHandle.standardError.write(Data(text.utf8))
        FileHandle.standardError.write(Data("\(n) error\(n == 1 ? "" : "s") generated.\n".utf8))
    case DriverError.message(let m):
        FileHandle.standardError.write(Data("kiln: error: \(m)\n".utf8))
    default:
        FileHandle.standardError.write(Data("kiln: error: \(e)\n".utf8))
    }
    return ExitCode.failure
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check a model file: syntax, names, types and shapes.")
    @OptionGroup var model: ModelOptions

    func run() throws {
        do {
            let p = model.pipeline
            let g = try p.frontend(try Pipeline.load(model.file))
            let params = g.parameters.reduce(0) { $0 + g.nodes[$1].type.shape.elementCount.evaluate([:]) }
            print("\(model.file): ok: model \(g.name), \(g.parameters.count) parameter tensors, \(params) parameters, \(g.nodes.count) IR nodes")
        } catch { throw fail(error) }
    }
}

struct IR: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ir",
        abstract: "Print the typed IR of a model file: one of its functions (entry points).",
        discussion: """
        Functions: forward; train_step and loss (with a train section); encode (encoder-decoders); prefill and \
        decode_step (causal models); attention_maps (models with attention). \
        Passes, in order: \(Pipeline.passNames.joined(separator: ", ")); on train_step: \(Pipeline.trainingPassNames.joined(separator: ", ")). \
        The printed IR parses back (docs/ir.md).
        """)

    @OptionGroup var model: ModelOptions

    @Option(help: ArgumentHelp("Which function: forward, train_step, loss, encode, prefill, decode_step or attention_maps.", valueName: "name"))
    var function: String = "forward"

    @Option(help: ArgumentHelp("Which IR: 'frontend' (as the transform makes it, before the passes), 'optimized' (after all passes), or 'backward' (the train_step function, optimized).", valueName: "stage"))
    var stage: String = "optimized"

    @Option(name: .customLong("print-after"), help: ArgumentHelp("Print the IR after each pass ('all') or after the named pass.", valueName: "all|PASS"))
    var printAfter: String?

    func validate() throws {
        guard ["frontend", "optimized", "backward"].contains(stage) else { throw ValidationError("--stage must be 'frontend', 'optimized' or 'backward', got '\(stage)'") }
        let names = functionName == "train_step" ? Pipeline.trainingPassNames : Pipeline.passNames
        if let p = printAfter, p != "all", !names.contains(p) {
            throw ValidationError("--print-after: unknown pass '\(p)'\(functionName == "train_step" ? " on the training graph" : "") (passes: all, \(names.joined(separator: ", ")))")
        }
    }

    var functionName: String { stage == "backward" ? "train_step" : function }

    func run() throws {
        do {
            let p = model.pipeline
            let (g, train) = try p.frontendWithTrain(try Pipeline.load(model.file))
            let unoptimized = try p.unoptimized(functionName, of: g, train: train)
            if stage == "frontend" && printAfter == nil { print(IRText.print(unoptimized), terminator: ""); return }
            if printAfter != nil { print("// IR after \(functionName == "forward" ? "frontend" : "the \(functionName) transform")\n" + IRText.print(unoptimized)) }
            let printAfter = printAfter
            let text = IRText.print(try p.optimize(unoptimized, training: functionName == "train_step") { i, name, changed, g in
                guard printAfter == "all" || printAfter == name else { return }
                print("// IR after pass \(i + 1): \(name)\(changed ? "" : " (no change)")\n" + IRText.print(g))
            }.removingUnusedInputs())
            if printAfter == nil { print(text, terminator: "") }
        } catch { throw fail(error) }
    }
}

struct Build: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compile a model file to DIR: generated C, the runtime, a Makefile, and DIR/infer.",
        discussion: "The C compiler is $CC if set, else the first of gcc and clang (with libomp) that builds OpenMP code: gcc's code is the faster one on the x86 servers measured (docs/benchmarks.md).")

    @OptionGroup var model: ModelOptions

    @Option(name: .shortAndLong, help: ArgumentHelp("The output directory.", valueName: "DIR"))
    var output: String

    @Option(help: ArgumentHelp("Element type: f32 (infer and train binaries) or f64 (a gradcheck binary that checks every gradient against finite differences).", valueName: "f32|f64"))
    var dtype: String = "f32"

    func validate() throws {
        guard dtype == "f32" || dtype == "f64" else { throw ValidationError("--dtype must be f32 or f64, got '\(dtype)'") }
    }

    @Flag(help: "Build for the compiler's baseline CPU instead of -march=native, so the binaries run on older CPUs of the same architecture (matrix products still pick AVX-512 or AVX2 at run time).")
    var portable = false

    @Flag(name: .customLong("no-make"), help: "Write the sources only; do not run make.")
    var noMake = false

    @Flag(name: .shortAndLong, help: "Show the C compiler's output.")
    var verbose = false

    func run() throws {
        do {
            let c = try model.pipeline.generate(try Pipeline.load(model.file), dtype: DTypeName.parse(dtype))
            let g = c.inference
            let programs = BuildDirectory.programs(training: c.training != nil, dtype: DTypeName.parse(dtype))
            try BuildDirectory.write(c.generated, modelName: g.name, programs: programs, portable: portable, to: output)
            let libraries = ["lib\(c.generated.prefix).a", "lib\(c.generated.prefix).so"].map { output + "/" + $0 }
            if noMake { print("wrote \(output) (run make there to build infer)"); return }
            guard let cc = Toolchain.find() else { throw DriverError.message("no C compiler found (install clang and libomp-dev, or gcc, or set CC)") }
            if !cc.openmp {
                FileHandle.standardError.write(Data("kiln: warning: \(cc.path) cannot build OpenMP code; \(output)/infer will use one thread (install libomp-dev for clang, or use gcc)\n".utf8))
            }
            // also the data-parallel training program where an MPI compiler wrapper is installed (docs/distributed.md)
            let wrapper = programs.contains("train") && cc.openmp ? Toolchain.mpiWrapper() : nil
            var built = programs.map { output + "/" + $0 }
            if let failure = try BuildDirectory.make(output, compiler: cc, verbose: verbose, mpiWrapper: wrapper) {
                let last = failure.split(separator: "\n").last.map(String.init) ?? ""
                FileHandle.standardError.write(Data("kiln: warning: \(wrapper ?? "mpicc") is installed but 'make mpi' failed in \(output), so there is no train-mpi: \(last)\n".utf8))
            } else if wrapper != nil {
                built.append(output + "/train-mpi")
            }
            print("built \((built + libraries).joined(separator: ", ")) (model \(g.name), \(cc.path)\(cc.openmp ? " with OpenMP" : ", single-threaded"))")
        } catch { throw fail(error) }
    }
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print exact parameter counts, FLOPs per op kind, arena size, weight and optimiser bytes.",
        discussion: "Counted from the IR and the memory plan, before anything runs. FLOPs count a multiply-add as 2.")

    @OptionGroup var model: ModelOptions

    @Option(help: "Batch size B to count for.")
    var batch: Int = 1

    @Option(help: "Sequence length T to count for (default: the model's context).")
    var seq: Int?

    func validate() throws {
        guard batch >= 1, batch <= 1 << 20 else { throw ValidationError("--batch must be in 1...\(1 << 20)") }
        if let s = seq, s < 1 { throw ValidationError("--seq must be positive") }
    }

    func run() throws {
        do {
            print(try StatsReport.render(model.pipeline, file: try Pipeline.load(model.file), batch: batch, seq: seq), terminator: "")
        } catch { throw fail(error) }
    }
}

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model file for a Hugging Face model folder (config.json and model.safetensors).",
        discussion: """
            The model file's weights section reads the folder's model.safetensors under its own tensor names, \
            so the built binaries load it as it is (--weights DIR/model.safetensors). Layouts: \
            \(HFImport.layouts.keys.sorted().joined(separator: ", ")) (config.json's model_type). A configuration \
            Kiln cannot express is refused with the key that causes it.
            """)

    @Argument(help: ArgumentHelp("The model folder.", valueName: "HF_DIR"))
    var dir: String

    @Option(name: .shortAndLong, help: ArgumentHelp("The model file to write.", valueName: "MODEL.kiln"))
    var output: String

    @Option(help: "The model's name in the file (default: from the folder's name).")
    var name: String?

    func validate() throws {
        if let n = name, n.isEmpty || !n.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) || n.first!.isNumber {
            throw ValidationError("--name must be a name of letters, digits and '_', not starting with a digit")
        }
    }

    func run() throws {
        do {
            let text = try HFImport.modelFile(dir: dir, name: name)
            do { try text.write(toFile: output, atomically: true, encoding: .utf8) } catch {
                throw DriverError.message("cannot write '\(output)': \(error.localizedDescription)")
            }
            print("wrote \(output)")
        } catch { throw fail(error) }
    }
}

struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train several model variants with the same data, budget and seeds, and compare them.",
        discussion: """
        SPEC is a text file (docs/experiments.md): data = FILE, steps = N, seeds = 1 2, eval_interval = N, early = N,
        lengths = 64 128 256, train = FLAGS, and one line 'variant NAME = FILE [--set name=value]' per variant.
        Every variant is built, then trained once per seed; DIR gets results.md, results.csv, results.json,
        loss.svg and length.svg. Started again on the same DIR, finished runs are kept and an interrupted one
        resumes from its checkpoint.
        """)

    @Argument(help: "The sweep spec.")
    var spec: String

    @Option(name: .shortAndLong, help: ArgumentHelp("The results directory (default: sweep-NAME beside the spec, NAME the spec's file name).", valueName: "DIR"))
    var output: String?

    @Flag(help: "Check the spec and compile every variant, print each one's parameters and training FLOPs, and train nothing.")
    var plan = false

    func run() throws {
        let s: SweepSpec
        do { s = try SweepSpec.load(spec) } catch {
            FileHandle.standardError.write(Data("kiln: error: \(error)\n".utf8))
            throw ExitCode.failure
        }
        let name = ((spec as NSString).lastPathComponent as NSString).deletingPathExtension
        let dir = output ?? ((spec as NSString).deletingLastPathComponent as NSString).appendingPathComponent("sweep-\(name)")
        do {
            let sweep = KilnDriver.Sweep(spec: s, directory: dir)
            if plan { print(try sweep.plan { v in Pipeline(overrides: v.overrides) }, terminator: ""); return }
            try sweep.run { v in Pipeline(overrides: v.overrides) }
        } catch { throw fail(error) }
    }
}
