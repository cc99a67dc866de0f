/// The matrix-product engine behind every linear layer and its gradients (`runtime/kernels/gemm.h`).
///
/// B is packed into panels of `nr` = 64 columns (panel t holds columns
/// 64t … 64t+63 as K rows of 64 contiguous values, zero-padded past N), and C
/// is computed in tiles of `mr` = 6 rows × 64 columns, each summed over all
/// of K in order by one thread, so results are the same bits at any thread
/// count. The tile microkernel is picked once at run time from the CPU
/// (AVX-512F, AVX2+FMA, or portable C), so a binary built for baseline
/// x86-64 still uses the wide units of the machine it runs on.
///
/// Tile size: measured on this machine's Zen 5 cores (one thread, gcc 12,
/// 256×768×768 … 1024³): 6×64 reached 222–235 GFLOP/s, 8×48 216–234,
/// 12×32 159–224, 14×32 195–226.
import KilnBasics

enum GemmKernels {
    static let mr = 6, nr = 64

    /// (batch, key/value head) pairs the attention backward keeps in its workspace at once (its `pairs`
    /// argument in runtime/kernels/attention.c), given one pair's elements of workspace (nil: unbounded):
    /// as many as fit in 1 Mi elements, a multiple of 16 from 16 to 256. Each group is one parallel loop,
    /// so small pairs (short sentences) take few loops instead of one per 16 pairs.
    static func attentionGradGroup(pairElements: Int?) -> Int {
        guard let n = pairElements, n > 0 else { return 16 }
        return max(16, min(256, (1 << 20) / n / 16 * 16))
    }

    /// n rounded up to a multiple of the panel width.
    static func roundUp(_ n: Int) -> Int { (n + nr - 1) / nr * nr }

    /// A packed weight (N, K) keeps its last N % 64 rows as plain rows; its kernel packs them into one
    /// K × 64 panel of scratch. Nil when N is a multiple of 64.
    static func tailPanel(_ w: TensorType) -> SizeExpr? {
        guard let rows = w.shape.dims[0].constValue, rows % nr != 0 else { return nil }
        return panelElements(inner: [w.shape.dims[1]], n: 1)
    }

    /// Elements of scratch a packed GEMM over B (K, N) needs.
    static func panelElements(inner: [Dim], n: Int) -> SizeExpr {
        inner.reduce(SizeExpr(constant: (n + nr - 1) / nr * nr)) { $0 * $1 }
    }
}
