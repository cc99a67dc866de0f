/*
 * moe.c - a mixture-of-experts feed-forward layer (Shazeer et al. 2017; GShard, Lepikhin et al. 2021; Switch,
 * Fedus et al. 2021) over N tokens and E experts, and its gradients (Sources/KilnIR/Ops/MixtureOfExperts.swift):
 *
 *   moe_route:   gates (N, E) from the router's logits (N, E): top-k, capacity, combine weights
 *   moe_up:      h (N, k, H) = up[e] · x for each routed expert e of a token
 *   moe_down:    y (N, C) = Σ_e gate_e · act(h) · down[e]
 *   router_loss: Switch's load-balancing loss, or ST-MoE's router z-loss
 *
 * The routing is in the gates alone: token t's slot j is the j-th expert (ascending) whose gate is not 0.
 * Each expert's product is one matrix product of the engine (gemm.h) over the rows routed to it, gathered
 * into a contiguous block ("grouped GEMM"); the results are scattered back expert after expert, so every
 * output element has one summation order whatever the thread count.
 */
#ifndef KILN_KERNELS_MOE_C
#define KILN_KERNELS_MOE_C

#include "kiln_kernel.h"
#include "kiln_math.h"
#include "gemm.h"
#include "activations.h"

/* the experts of each token by probability: choice (N, k) holds expert indices, best first (ties: the lower
 * index); an assignment past its expert's capacity is marked -1 - e. cap = ceil(factor · k · N / E), or no
 * limit for factor 0; first choices of every token are served before second choices, in token order. */
KILN_KERNEL void moe_choose(int32_t *restrict choice, const real *restrict logits, size_t N, int E, int k,
                            double factor, int32_t *restrict count /* (E) */) {
    #pragma omp parallel for schedule(static)
    for (size_t t = 0; t < N; t++) {
        const real *restrict l = logits + t * (size_t)E;
        int32_t *restrict c = choice + t * (size_t)k;
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                int taken = 0;
                for (int i = 0; i < j; i++) taken |= c[i] == e;
                if (!taken && (best < 0 || l[e] > l[best])) best = e;
            }
            c[j] = best;
        }
    }
    if (factor <= 0) return;
    const double cap = ceil(factor * (double)k * (double)N / (double)E);
    memset(count, 0, (size_t)E * sizeof *count);
    for (int j = 0; j < k; j++)
        for (size_t t = 0; t < N; t++) {
            int32_t *c = choice + t * (size_t)k + j;
            if ((double)count[*c] < cap) count[*c]++;
            else *c = -1 - *c;
        }
}

/* p (E) = softmax(l); returns nothing */
KILN_KERNEL void moe_softmax(real *restrict p, const real *restrict l, int E) {
    real m = l[0];
    for (int e = 1; e < E; e++) m = l[e] > m ? l[e] : m;
    real s = 0;
    for (int e = 0; e < E; e++) { p[e] = kiln_exp(l[e] - m); s += p[e]; }
    for (int e = 0; e < E; e++) p[e] /= s;
}

/* the weights of a token's k choices (w (k)): p of the choice for k = 1, the choices' p renormalised for
 * k >= 2 (dropped choices included in the sum: dropping zeroes a weight, it does not renormalise) */
KILN_KERNEL void moe_weights(real *restrict w, const real *restrict p, const int32_t *restrict c, int k) {
    real s = 0;
    for (int j = 0; j < k; j++) { w[j] = p[c[j] < 0 ? -1 - c[j] : c[j]]; s += w[j]; }
    if (k > 1)
        for (int j = 0; j < k; j++) w[j] /= s;
}

/* gates (N, E) = each token's combine weights, 0 where it is not routed; logits (N, E); work: N·k + E ints */
KILN_KERNEL void moe_route_forward(real *restrict gates, const real *restrict logits, int32_t *restrict work,
                                   size_t N, int E, int k, double factor) {
    int32_t *restrict choice = work, *restrict count = work + N * (size_t)k;
    moe_choose(choice, logits, N, E, k, factor, count);
    #pragma omp parallel for schedule(static)
    for (size_t t = 0; t < N; t++) {
        real p[E], w[k];
        const int32_t *c = choice + t * (size_t)k;
        real *restrict g = gates + t * (size_t)E;
        moe_softmax(p, logits + t * (size_t)E, E);
        moe_weights(w, p, c, k);
        for (int e = 0; e < E; e++) g[e] = 0;
        for (int j = 0; j < k; j++)
            if (c[j] >= 0) g[c[j]] = w[j];
    }
}

/* dlogits (N, E) from dgates (N, E): k = 1, g = p_c: dl_i = dg_c · p_c · (δ_ic − p_i); k >= 2, g_j = m_j · w_j
 * with w the softmax of the chosen logits and m_j = 1 unless dropped: dl_(c_j) = w_j · (m_j dg_j − Σ_i m_i w_i dg_i);
 * dropped and unchosen experts pass nothing of their own */
KILN_KERNEL void moe_route_backward(real *restrict dlogits, const real *restrict dgates, const real *restrict logits,
                                    int32_t *restrict work, size_t N, int E, int k, double factor) {
    int32_t *restrict choice = work, *restrict count = work + N * (size_t)k;
    moe_choose(choice, logits, N, E, k, factor, count);
    #pragma omp parallel for schedule(static)
    for (size_t t = 0; t < N; t++) {
        real p[E], w[k];
        const int32_t *c = choice + t * (size_t)k;
        const real *restrict dg = dgates + t * (size_t)E;
        real *restrict dl = dlogits + t * (size_t)E;
        moe_softmax(p, logits + t * (size_t)E, E);
        moe_weights(w, p, c, k);
        for (int e = 0; e < E; e++) dl[e] = 0;
        if (k == 1) {
            if (c[0] < 0) continue;
            const real s = dg[c[0]] * p[c[0]];
            for (int e = 0; e < E; e++) dl[e] = -s * p[e];
            dl[c[0]] += s;
        } else {
            real dot = 0;
            for (int j = 0; j < k; j++)
                if (c[j] >= 0) dot += w[j] * dg[c[j]];
            for (int j = 0; j < k; j++) {
                const int e = c[j] < 0 ? -1 - c[j] : c[j];
                dl[e] = w[j] * ((c[j] >= 0 ? dg[e] : 0) - dot);
            }
        }
    }
}

/* The grouped layout of the slots (N·k, slot s = t·k + j): offs (E + 1) and list (N·k), the slots routed to
 * expert e being list[offs[e] .. offs[e+1]); token t's slot j is its j-th expert (ascending) with a gate != 0.
 * Slots with no expert are in no list; next (E) is scratch. */
KILN_KERNEL void moe_groups(int32_t *restrict offs, int32_t *restrict list, int32_t *restrict next,
                            const real *restrict gates, size_t N, int E, int k) {
    memset(offs, 0, (size_t)(E + 1) * sizeof *offs);
    for (size_t t = 0; t < N; t++) {
        const real *g = gates + t * (size_t)E;
        for (int e = 0, j = 0; e < E && j < k; e++)
            if (g[e] != 0) { offs[e + 1]++; j++; }
    }
    for (int e = 0; e < E; e++) offs[e + 1] += offs[e];
    for (int e = 0; e < E; e++) next[e] = offs[e];
    for (size_t t = 0; t < N; t++) {
        const real *g = gates + t * (size_t)E;
        for (int e = 0, j = 0; e < E && j < k; e++)
            if (g[e] != 0) { list[next[e]++] = (int32_t)(t * (size_t)k + (size_t)j); j++; }
    }
}

#define MOE_ROUND(n) (((size_t)(n) + GEMM_NR - 1) / GEMM_NR * GEMM_NR)

/* The scratch of the grouped products, in two buffers (Sources/KilnCodegenC/Ops/MixtureOfExperts.swift sizes
 * them): work, N·k·(1 + 2·max(C, H) + round64(max(C, H))) reals: the slot list, two gathered blocks of up to
 * N·k rows and the panels of a weight gradient's product (N·k rows); fixed, 2E + 1 + max(C·round64(H),
 * H·round64(C)) reals: the expert offsets and cursors and the panels of one expert's weight. */
typedef struct {
    int32_t *offs, *next, *list;
    real *ga, *gb, *rows_panels, *weight_panels;
} moe_scratch;

KILN_KERNEL moe_scratch moe_scratch_of(real *work, real *fixed, size_t N, int E, int k, int H, int C) {
    moe_scratch s;
    const size_t slots = N * (size_t)k, width = (size_t)(C > H ? C : H);
    s.list = (int32_t *)work;
    s.ga = work + slots;
    s.gb = s.ga + slots * width;
    s.rows_panels = s.gb + slots * width;
    s.offs = (int32_t *)fixed;
    s.next = s.offs + E + 1;
    s.weight_panels = fixed + 2 * (size_t)E + 1;
    return s;
}

/* dst (H) = act'(h) · da for an activation code of activations.h (none: da) */
KILN_KERNEL void moe_activation_grad_row(real *restrict dst, const real *restrict da, const real *restrict h, int H,
                                         int act) {
    switch (act) {
#define KILN_MOE_GRAD(name, id)                                                  \
    case id:                                                                     \
        _Pragma("omp simd")                                                      \
        for (int j = 0; j < H; j++) dst[j] = kiln_act_##name##_grad(h[j], da[j]); \
        break;
    KILN_ACTIVATIONS(KILN_MOE_GRAD)
#undef KILN_MOE_GRAD
    default: memcpy(dst, da, (size_t)H * sizeof(real)); break;
    }
}

/* C (M, N) = A (M, K) · B (K, N), B rows of stride b_rs and columns of stride b_cs (a transpose: b_rs = 1);
 * A addressed A[i·a_rs + p·a_cs]; panels: K x N rounded up to 64 */
KILN_KERNEL void moe_gemm(real *restrict c, const real *restrict a, size_t a_rs, size_t a_cs, const real *restrict b,
                          size_t b_rs, size_t b_cs, real *restrict panels, size_t M, int N, int K) {
    if (M == 0) return;
    gemm_pack(panels, b, b_rs, b_cs, K, N);
    gemm_panels(c, (size_t)N, a, a_rs, a_cs, panels, panels + (size_t)(N / GEMM_NR) * K * GEMM_NR, M, N, K, NULL, 0, NULL);
}

/* h (N, k, H) = up[e] (H, C) · x[t] (C) for each slot; zeros in empty slots; gates (N, E), up (E, H, C) */
KILN_KERNEL void moe_up_forward(real *restrict h, const real *restrict x, const real *restrict gates,
                                const real *restrict up, real *restrict work, real *restrict fixed, size_t N, int E, int k, int H, int C) {
    moe_scratch s = moe_scratch_of(work, fixed, N, E, k, H, C);
    moe_groups(s.offs, s.list, s.next, gates, N, E, k);
    memset(h, 0, N * (size_t)k * (size_t)H * sizeof(real));
    for (int e = 0; e < E; e++) {
        const int32_t *rows = s.list + s.offs[e];
        const size_t n = (size_t)(s.offs[e + 1] - s.offs[e]);
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) memcpy(s.ga + i * C, x + (size_t)(rows[i] / k) * C, (size_t)C * sizeof(real));
        moe_gemm(s.gb, s.ga, (size_t)C, 1, up + (size_t)e * H * C, 1, (size_t)C, s.weight_panels, n, H, C);
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) memcpy(h + (size_t)rows[i] * H, s.gb + i * H, (size_t)H * sizeof(real));
    }
}

/* dx (N, C) = Σ_j dh[t, j] · up[e_j] (wrt x), or dup (E, H, C) = Σ over expert e's slots of dh ⊗ x (wrt weight) */
KILN_KERNEL void moe_up_backward(real *restrict dx, real *restrict dup, const real *restrict dh,
                                 const real *restrict x, const real *restrict gates, const real *restrict up,
                                 real *restrict work, real *restrict fixed, size_t N, int E, int k, int H, int C) {
    moe_scratch s = moe_scratch_of(work, fixed, N, E, k, H, C);
    moe_groups(s.offs, s.list, s.next, gates, N, E, k);
    if (dx) memset(dx, 0, N * (size_t)C * sizeof(real));
    for (int e = 0; e < E; e++) {
        const int32_t *rows = s.list + s.offs[e];
        const size_t n = (size_t)(s.offs[e + 1] - s.offs[e]);
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) memcpy(s.ga + i * H, dh + (size_t)rows[i] * H, (size_t)H * sizeof(real));
        if (dx) {
            moe_gemm(s.gb, s.ga, (size_t)H, 1, up + (size_t)e * H * C, (size_t)C, 1, s.weight_panels, n, C, H);
            #pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++) {
                real *restrict d = dx + (size_t)(rows[i] / k) * C;
                const real *restrict v = s.gb + i * C;
                #pragma omp simd
                for (int c = 0; c < C; c++) d[c] += v[c];
            }
        } else {
            real *restrict d = dup + (size_t)e * H * C;
            if (n == 0) { memset(d, 0, (size_t)H * C * sizeof(real)); continue; }
            #pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++) memcpy(s.gb + i * C, x + (size_t)(rows[i] / k) * C, (size_t)C * sizeof(real));
            /* dup[e] (H, C) = dhᵀ (H, n) · x (n, C) */
            moe_gemm(d, s.ga, 1, (size_t)H, s.gb, (size_t)C, 1, s.rows_panels, (size_t)H, C, (int)n);
        }
    }
}

/* the rows of act(h) of expert e's slots into a (n, H), each times its gate when scaled */
KILN_KERNEL void moe_gather_activated(real *restrict a, const real *restrict h, const real *restrict gates,
                                      const int32_t *restrict rows, size_t n, int e, int E, int k, int H, int act,
                                      int scaled) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        real *restrict dst = a + i * H;
        const real *restrict src = h + (size_t)rows[i] * H;
        const real g = scaled ? gates[(size_t)(rows[i] / k) * E + e] : 1;
        switch (act) {
#define KILN_MOE_ACT(name, id)                                            \
        case id:                                                          \
            _Pragma("omp simd")                                           \
            for (int j = 0; j < H; j++) dst[j] = g * kiln_act_##name(src[j]); \
            break;
        KILN_ACTIVATIONS(KILN_MOE_ACT)
#undef KILN_MOE_ACT
        default:
            for (int j = 0; j < H; j++) dst[j] = g * src[j];
            break;
        }
    }
}

/* y (N, C) = Σ over the token's slots of gate · act(h[t, j]) · down[e_j]; down (E, H, C) */
KILN_KERNEL void moe_down_forward(real *restrict y, const real *restrict h, const real *restrict gates,
                                  const real *restrict down, real *restrict work, real *restrict fixed, size_t N, int E, int k, int H, int C,
                                  int act) {
    moe_scratch s = moe_scratch_of(work, fixed, N, E, k, H, C);
    moe_groups(s.offs, s.list, s.next, gates, N, E, k);
    memset(y, 0, N * (size_t)C * sizeof(real));
    for (int e = 0; e < E; e++) {
        const int32_t *rows = s.list + s.offs[e];
        const size_t n = (size_t)(s.offs[e + 1] - s.offs[e]);
        moe_gather_activated(s.ga, h, gates, rows, n, e, E, k, H, act, 1);
        moe_gemm(s.gb, s.ga, (size_t)H, 1, down + (size_t)e * H * C, (size_t)C, 1, s.weight_panels, n, C, H);
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            real *restrict d = y + (size_t)(rows[i] / k) * C;
            const real *restrict v = s.gb + i * C;
            #pragma omp simd
            for (int c = 0; c < C; c++) d[c] += v[c];
        }
    }
}

/* The gradients of moe_down, one of: dh (N, k, H) = act'(h) ⊙ gate · down[e] · dy (wrt h, zeros in empty
 * slots); dgates (N, E) = dy · act(h) · down[e] at the routed experts, 0 elsewhere; ddown (E, H, C) = Σ over
 * expert e's slots of act(h) ⊗ gate · dy. wrt: 0 h, 1 gates, 2 weight. */
KILN_KERNEL void moe_down_backward(real *restrict d, const real *restrict dy, const real *restrict h,
                                   const real *restrict gates, const real *restrict down, real *restrict work, real *restrict fixed,
                                   size_t N, int E, int k, int H, int C, int act, int wrt) {
    moe_scratch s = moe_scratch_of(work, fixed, N, E, k, H, C);
    moe_groups(s.offs, s.list, s.next, gates, N, E, k);
    if (wrt == 0) memset(d, 0, N * (size_t)k * (size_t)H * sizeof(real));
    if (wrt == 1) memset(d, 0, N * (size_t)E * sizeof(real));
    for (int e = 0; e < E; e++) {
        const int32_t *rows = s.list + s.offs[e];
        const size_t n = (size_t)(s.offs[e + 1] - s.offs[e]);
        const real *restrict w = down + (size_t)e * H * C;
        if (wrt == 1) { /* dg = dy · (act(h) · down[e]) */
            moe_gather_activated(s.ga, h, gates, rows, n, e, E, k, H, act, 0);
            moe_gemm(s.gb, s.ga, (size_t)H, 1, w, (size_t)C, 1, s.weight_panels, n, C, H);
            #pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++) {
                const real *restrict g = dy + (size_t)(rows[i] / k) * C, *restrict v = s.gb + i * C;
                real dot = 0;
                for (int c = 0; c < C; c++) dot += g[c] * v[c];
                d[(size_t)(rows[i] / k) * E + e] = dot;
            }
            continue;
        }
        /* gate · dy of each slot's token into gb (n, C) */
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            const size_t t = (size_t)(rows[i] / k);
            const real g = gates[t * E + e];
            real *restrict dst = s.gb + i * C;
            const real *restrict src = dy + t * C;
            #pragma omp simd
            for (int c = 0; c < C; c++) dst[c] = g * src[c];
        }
        if (wrt == 0) { /* da (n, H) = (gate · dy) (n, C) · down[e]ᵀ (C, H), then act' */
            moe_gemm(s.ga, s.gb, (size_t)C, 1, w, 1, (size_t)C, s.weight_panels, n, H, C);
            #pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++)
                moe_activation_grad_row(d + (size_t)rows[i] * H, s.ga + i * H, h + (size_t)rows[i] * H, H, act);
        } else { /* ddown[e] (H, C) = act(h)ᵀ (H, n) · (gate · dy) (n, C) */
            real *restrict dw = d + (size_t)e * H * C;
            if (n == 0) { memset(dw, 0, (size_t)H * C * sizeof(real)); continue; }
            moe_gather_activated(s.ga, h, gates, rows, n, e, E, k, H, act, 0);
            moe_gemm(dw, s.ga, 1, (size_t)H, s.gb, (size_t)C, 1, s.rows_panels, (size_t)H, C, (int)n);
        }
    }
}

/* loss = the mean over L routers (logits[l] (N, E)) of Switch's E · Σ_e f_e · P_e (kind 0: f_e the fraction
 * of tokens whose first choice is e, P_e the mean probability of e) or of the z-loss mean_t logsumexp² (kind 1);
 * work: 2E reals */
KILN_KERNEL void router_loss_forward(real *restrict loss, const real *const *logits, real *restrict work, int L,
                                     size_t N, int E, int kind) {
    double total = 0;
    for (int l = 0; l < L; l++) {
        real *restrict f = work, *restrict P = work + E;
        double z = 0;
        for (int e = 0; e < E; e++) f[e] = P[e] = 0;
        for (size_t t = 0; t < N; t++) {
            const real *restrict x = logits[l] + t * (size_t)E;
            real m = x[0];
            int best = 0;
            for (int e = 1; e < E; e++)
                if (x[e] > m) { m = x[e]; best = e; }
            double s = 0;
            for (int e = 0; e < E; e++) s += exp((double)(x[e] - m));
            if (kind == 1) {
                const double lse = (double)m + log(s);
                z += lse * lse;
            } else {
                f[best] += 1;
                for (int e = 0; e < E; e++) P[e] += (real)(exp((double)(x[e] - m)) / s);
            }
        }
        if (kind == 1) total += z / (double)N;
        else {
            double b = 0;
            for (int e = 0; e < E; e++) b += (double)f[e] / (double)N * ((double)P[e] / (double)N);
            total += (double)E * b;
        }
    }
    *loss = (real)(total / L);
}

/* d (L, N, E) = the gradient of router_loss for each router's logits times dy:
 * balance: (E / (N L)) · p_i · (f_i − Σ_e f_e p_e); z: (2 / (N L)) · lse · p_i; work: E reals */
KILN_KERNEL void router_loss_backward(real *restrict d, const real *restrict dy, const real *const *logits,
                                      real *restrict work, int L, size_t N, int E, int kind) {
    const real scale = dy[0] / (real)L;
    for (int l = 0; l < L; l++) {
        real *restrict f = work;
        for (int e = 0; e < E; e++) f[e] = 0;
        if (kind == 0)
            for (size_t t = 0; t < N; t++) {
                const real *x = logits[l] + t * (size_t)E;
                int best = 0;
                for (int e = 1; e < E; e++)
                    if (x[e] > x[best]) best = e;
                f[best] += (real)(1.0 / (double)N);
            }
        #pragma omp parallel for schedule(static)
        for (size_t t = 0; t < N; t++) {
            const real *restrict x = logits[l] + t * (size_t)E;
            real *restrict g = d + ((size_t)l * N + t) * (size_t)E;
            real p[E];
            moe_softmax(p, x, E);
            if (kind == 1) {
                real m = x[0];
                for (int e = 1; e < E; e++) m = x[e] > m ? x[e] : m;
                real s = 0;
                for (int e = 0; e < E; e++) s += kiln_exp(x[e] - m);
                const real lse = m + log(s), c = scale * 2 * lse / (real)N;
                for (int e = 0; e < E; e++) g[e] = c * p[e];
            } else {
                real fp = 0;
                for (int e = 0; e < E; e++) fp += f[e] * p[e];
                const real c = scale * (real)E / (real)N;
                for (int e = 0; e < E; e++) g[e] = c * p[e] * (f[e] - fp);
            }
        }
    }
}

/* load (L, E) = the fraction of each router's N tokens routed to each expert (gates[l] (N, E) != 0) */
KILN_KERNEL void moe_load_forward(real *restrict load, const real *const *gates, int L, size_t N, int E) {
    for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++) {
            size_t n = 0;
            for (size_t t = 0; t < N; t++) n += gates[l][t * (size_t)E + e] != 0;
            load[(size_t)l * E + e] = (real)((double)n / (double)N);
        }
}

#endif /* KILN_KERNELS_MOE_C */
