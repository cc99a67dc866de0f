import KilnBasics
import KilnIR

/// The frontend's entry point: source text in, a verified IR graph out
/// (or diagnostics).
public enum Frontend {
    public struct Result {
        public var graph: Graph?
        /// The `train` section, when the file has one.
        public var train: TrainConfig?
        /// The `weights` section resolved per parameter, when the file has one.
        public var weights: WeightSources? = nil
        public var diagnostics: DiagnosticEngine
    }

    /// Parses and lowers a model file. Throws only for bad options
    /// (`--set` of an unknown key); problems in the file become diagnostics.
    public static func compile(_ file: SourceFile, options: FrontendOptions = FrontendOptions()) throws -> Result {
        let diags = DiagnosticEngine(file: file)
        let prog = Parser.parse(file, diags)
        let lowered = try Lowering.lower(prog, diags: diags, options: options)
        let graph = lowered?.0
        if let g = graph {
            do { try Verifier.verify(g) } catch {
                diags.error("internal error: the generated IR is invalid: \(error)", at: .none)
                return Result(graph: nil, train: nil, diagnostics: diags)
            }
        }
        return Result(graph: graph, train: lowered?.1, weights: lowered?.2, diagnostics: diags)
    }
}
