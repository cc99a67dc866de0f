import KilnBasics
import KilnIR

/// A graph-to-graph transformation. `run` returns whether it changed the graph.
public protocol Pass {
    /// Short name used by `--print-after` (e.g. `dce`, `cse`).
    var name: String { get }
    func run(_ graph: inout Graph) throws -> Bool
}

/// Runs passes in order, verifying after each one, and lets a caller watch
/// the graph after each pass (for `kiln ir --print-after`).
public struct PassManager {
    public var passes: [any Pass]
    public init(_ passes: [any Pass]) { self.passes = passes }

    /// The default inference pipeline; `fuse: false` leaves out the fusion passes.
    public static func standard(fuse: Bool = true) -> PassManager {
        PassManager([StripDropout(), Simplify(), CommonSubexpressionElimination(), DeadCodeElimination()] + (fuse ? [FuseLinearEpilogue(), MergeParallelLinears(), FuseElementwise()] : []))
    }

    public var passNames: [String] { passes.map(\.name) }

    /// Runs every pass; `after(index, pass, changed, graph)` is called after each.
    public func run(_ graph: inout Graph, after: (Int, any Pass, Bool, Graph) -> Void = { _, _, _, _ in }) throws {
        for (i, p) in passes.enumerated() {
            let changed = try p.run(&graph)
            try Verifier.verify(graph)
            after(i, p, changed, graph)
        }
    }
}

extension PassManager {
    /// The training pipeline, run on the graph of forward, loss and backward: keeps dropout (the forward pass
    /// of training uses it). Its fusions: residual adds into the forward GEMMs' epilogues (activations stay
    /// separate where the backward pass reads the pre-activation), gradient sums into the ops that produce
    /// them, then trees of elementwise ops into one loop each; `fuse: false` leaves them out.
    public static func training(fuse: Bool = true) -> PassManager {
        PassManager([Simplify(), CommonSubexpressionElimination(), DeadCodeElimination()]
                    + (fuse ? [FuseLinearEpilogue(), FuseGradientAccumulation(), FuseElementwise()] : []))
    }
}
