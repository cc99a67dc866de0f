import KilnIR

/// Where each op's C kernel lives: a file of `runtime/kernels/`, which the generated `model.c` includes
/// (`#include "kernels/linear.c"`) once for every op kind of the model that has one.
enum Kernels {
    /// (batch, head) pairs the all-gradients attention backward keeps in its workspace at once
    /// (`ATT_BWD_GROUP` in runtime/kernels/attention.c).
    static let attentionGradGroup = 16

    /// The kernel file of an op kind (under `runtime/kernels/`), or nil for ops that need no code
    /// (inputs, parameters, views, constants).
    static func file(_ kind: OpKind) -> String? {
        switch kind {
        case .input, .param, .sliceRows, .select, .scalar: nil
        case .embedding, .embeddingGrad: "embedding.c"
        case .padRows: "rows.c"
        case .sinusoidal: "sinusoidal.c"
        case .linear, .linearStack, .linearGradInput, .linearGradWeight: "linear.c"
        case .layernorm, .layernormGradInput, .layernormGradWeight: "layernorm.c"
        case .attention, .attentionGrad: "attention.c"
        case .add, .sub, .mul, .div, .scale, .sumTo: "elementwise.c"
        case .relu, .gelu, .geluTanh, .reluGrad, .geluGrad, .geluTanhGrad: "activation.c"
        case .softmax, .softmaxGrad: "softmax.c"
        case .dropout: "dropout.c"
        case .crossEntropy, .crossEntropyGrad: "cross_entropy.c"
        case .fused: "activations.h"  // the kernel itself is written per expression (FusedKernels)
        }
    }

    /// Whether the op's kernels run on the matrix-product engine (`gemm.h`).
    static func usesGemm(_ kind: OpKind) -> Bool { file(kind) == "linear.c" || file(kind) == "attention.c" }
}
