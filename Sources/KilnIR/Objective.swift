import KilnBasics

/// What a model is trained to minimise: a weighted sum of loss terms over its outputs and target inputs
/// (the train section's `objective`). Autodiff builds the loss from it (`Autodiff.trainStep`).
public struct Objective: Sendable, Equatable {
    public enum Loss: Sendable, Equatable {
        /// The mean cross-entropy of logits[b, t] against token t + 1 of the text: the data loader supplies
        /// the inputs shifted by one as `targets`.
        case nextToken(output: String)
        /// Masked-language modelling (Devlin et al. 2019) on text windows: the data loader chooses each position
        /// with probability `rate`, gives the model `mask` there (80% of the time), a random token (10%) or the
        /// token itself (10%), and targets the chosen positions' tokens (the others are ignored, id -1).
        case maskedTokens(output: String, mask: Int, rate: Double)
        /// The mean cross-entropy of each row of logits `[..., V]` against the targets input `[...]`, over the
        /// positions whose target is not `ignore`, with label smoothing ε (Szegedy et al. 2016) as PyTorch's
        /// `cross_entropy(label_smoothing: ε)`. A classification is the same with one row per sequence.
        case crossEntropy(output: String, targets: String, ignore: Int?, smoothing: Double)
        /// The mean squared error between the output and the targets input of its shape.
        case meanSquaredError(output: String, targets: String)
        /// A scalar output of the model itself, added as it is (an auxiliary loss: load balancing of experts).
        case output(String)
    }

    public struct Term: Sendable, Equatable {
        public var weight: Double
        public var loss: Loss
        public init(_ weight: Double, _ loss: Loss) { self.weight = weight; self.loss = loss }
    }

    public var terms: [Term]
    public init(_ terms: [Term]) { self.terms = terms }

    /// Next-token prediction on an output (a language model's default).
    public static func nextToken(_ output: String) -> Objective { Objective([Term(1, .nextToken(output: output))]) }

    /// Whether the training data is text the loader cuts into windows (tokens and the targets shifted by one),
    /// rather than arrays of every input (`.npy` files).
    public var readsText: Bool { terms.contains { $0.loss.readsText } }

    /// The masked-language-model term, if the objective has one: its mask id and rate.
    public var masking: (mask: Int, rate: Double)? {
        for t in terms { if case .maskedTokens(_, let m, let r) = t.loss { return (m, r) } }
        return nil
    }
}

extension Objective.Loss {
    /// Whether the loss reads text windows (next-token or masked-token prediction) rather than target inputs.
    public var readsText: Bool {
        switch self {
        case .nextToken, .maskedTokens: true
        default: false
        }
    }
}
