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
 * The rows routed to each expert are gathered into one block grouped by expert, and the tiles of every expert's
 * product run in one parallel loop of the engine (gemm.h): a grouped GEMM. Each token then sums its slots'
 * results in slot order, so every output element has one summation order whatever the thread count.
 */
#ifndef KILN_KERNELS_MOE_C
#define KILN_KERNELS_MOE_C

#include "kiln_kernel.h"
#include "kiln_math.h"
#include "gemm.h"
#include "activations.h"
#include "reduce.c"

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
        row_softmax(logits + t * (size_t)E, p, E);
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
        row_softmax(logits + t * (size_t)E, p, E);
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
 * expert e being list[offs[e] .. offs[e+1]) in token order, and pos (N·k), the place of each slot in the list
 * (-1 for a slot with no expert); token t's slot j is its j-th expert (ascending) whose gate is not 0.
 * next (E) is scratch. */
KILN_KERNEL void moe_groups(int32_t *restrict offs, int32_t *restrict list, int32_t *restrict pos,
                            int32_t *restrict next, const real *restrict gates, size_t N, int E, int k) {
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
        int j = 0;
        for (int e = 0; e < E && j < k; e++)
            if (g[e] != 0) {
                const size_t slot = t * (size_t)k + (size_t)j++;
                pos[slot] = next[e];
                list[next[e]++] = (int32_t)slot;
            }
        for (; j < k; j++) pos[t * (size_t)k + (size_t)j] = -1;
    }
}

#define MOE_ROUND(n) (((size_t)(n) + GEMM_NR - 1) / GEMM_NR * GEMM_NR)

/* The scratch of the grouped products, in two buffers (Sources/KilnCodegenC/Ops/MixtureOfExperts.swift sizes
 * them): work, N·k·(2 + 2·max(C, H) + round64(max(C, H))) reals: the slot list and places, two grouped blocks of
 * up to N·k rows and the panels of the weight gradients' products (N·k rows in all); fixed, 2E + 1 +
 * E·max(C·round64(H), H·round64(C)) reals: the expert offsets and cursors and the panels of every expert's weight. */
typedef struct {
    int32_t *offs, *next, *list, *pos;
    real *ga, *gb, *rows_panels, *weight_panels;
} moe_scratch;

KILN_KERNEL moe_scratch moe_scratch_of(real *work, real *fixed, size_t N, int E, int k, int H, int C) {
    moe_scratch s;
    const size_t slots = N * (size_t)k, width = (size_t)(C > H ? C : H);
    s.list = (int32_t *)work;
    s.pos = (int32_t *)(work + slots);
    s.ga = work + 2 * slots;
    s.gb = s.ga + slots * width;
    s.rows_panels = s.gb + slots * width;
    s.offs = (int32_t *)fixed;
    s.next = s.offs + E + 1;
    s.weight_panels = fixed + 2 * (size_t)E + 1;
    return s;
}

/* The grouped products C_e (M_e, N) = A_e (M_e, K_e) · P_e of the E experts, P_e packed panels (K_e x N,
 * panel t at p[e] + t·K_e·64), A_e addressed a[e][i·a_rs + q·a_cs], C_e rows of stride N: the tiles of all
 * experts in one parallel loop (an expert with M_e = 0 has none) */
KILN_KERNEL void moe_tiles(real *const *c, const real *const *a, size_t a_rs, size_t a_cs, const real *const *p,
                           const size_t *m, const int *kdim, int E, int N) {
    const gemm_tile_fn tile = gemm_tile();
    const size_t ntiles = (size_t)(N + GEMM_NR - 1) / GEMM_NR;
    size_t start[E + 1];
    start[0] = 0;
    for (int e = 0; e < E; e++) start[e + 1] = start[e] + (m[e] + GEMM_MR - 1) / GEMM_MR * ntiles;
    #pragma omp parallel for schedule(static)
    for (size_t w = 0; w < start[E]; w++) {
        int e = 0;
        while (w >= start[e + 1]) e++;
        const size_t local = w - start[e], mtiles = (m[e] + GEMM_MR - 1) / GEMM_MR;
        const int t = (int)(local / mtiles);
        const size_t m0 = (local % mtiles) * GEMM_MR;
        const int n0 = t * GEMM_NR, nb = N - n0 < GEMM_NR ? N - n0 : GEMM_NR;
        const int mb = m[e] - m0 < GEMM_MR ? (int)(m[e] - m0) : GEMM_MR;
        gemm_panel_tile(tile, c[e], (size_t)N, a[e], a_rs, a_cs, p[e] + (size_t)t * kdim[e] * GEMM_NR, m0, mb, n0, nb,
                        kdim[e], NULL, 0, NULL);
    }
}

/* gb (grouped rows, N) = ga (grouped rows, K) · W_e for the rows of each expert e, W_e = w + e·K·N (or its
 * transpose, K x N read from an N x K matrix: transpose = 1); packs the experts that have rows, one per thread */
KILN_KERNEL void moe_grouped_product(real *restrict gb, const real *restrict ga, const real *restrict w, int transpose,
                                     const moe_scratch *s, int E, int K, int N) {
    const size_t psize = (size_t)K * MOE_ROUND(N);
    #pragma omp parallel for schedule(static)
    for (int e = 0; e < E; e++)
        if (s->offs[e + 1] > s->offs[e])
            gemm_pack(s->weight_panels + (size_t)e * psize, w + (size_t)e * K * N, transpose ? 1 : (size_t)N,
                      transpose ? (size_t)K : 1, K, N);
    real *c[E];
    const real *a[E], *p[E];
    size_t m[E];
    int kdim[E];
    for (int e = 0; e < E; e++) {
        c[e] = gb + (size_t)s->offs[e] * N;
        a[e] = ga + (size_t)s->offs[e] * K;
        p[e] = s->weight_panels + (size_t)e * psize;
        m[e] = (size_t)(s->offs[e + 1] - s->offs[e]);
        kdim[e] = K;
    }
    moe_tiles(c, a, (size_t)K, 1, p, m, kdim, E, N);
}

/* dw_e (M, N) = ga_eᵀ (M, n_e) · gb_e (n_e, N) for each expert over its grouped rows (ga rows of M, gb rows of N);
 * zeros for an expert with no rows */
KILN_KERNEL void moe_grouped_weight_gradient(real *restrict dw, const real *restrict ga, const real *restrict gb,
                                             const moe_scratch *s, int E, int M, int N) {
    #pragma omp parallel for schedule(static)
    for (int e = 0; e < E; e++) {
        const int n = s->offs[e + 1] - s->offs[e];
        if (n == 0) memset(dw + (size_t)e * M * N, 0, (size_t)M * N * sizeof(real));
        else gemm_pack(s->rows_panels + (size_t)s->offs[e] * MOE_ROUND(N), gb + (size_t)s->offs[e] * N, (size_t)N, 1, n, N);
    }
    real *c[E];
    const real *a[E], *p[E];
    size_t m[E];
    int kdim[E];
    for (int e = 0; e < E; e++) {
        const int n = s->offs[e + 1] - s->offs[e];
        c[e] = dw + (size_t)e * M * N;
        a[e] = ga + (size_t)s->offs[e] * M;
        p[e] = s->rows_panels + (size_t)s->offs[e] * MOE_ROUND(N);
        m[e] = n ? (size_t)M : 0;
        kdim[e] = n;
    }
    moe_tiles(c, a, 1, (size_t)M, p, m, kdim, E, N);
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

/* dst (n) = g · act(src) for an activation code (none: g · src) */
KILN_KERNEL void moe_activation_row(real *restrict dst, const real *restrict src, real g, int n, int act) {
    switch (act) {
#define KILN_MOE_ACT(name, id)                                                  \
    case id:                                                                    \
        _Pragma("omp simd")                                                     \
        for (int j = 0; j < n; j++) dst[j] = g * kiln_act_##name(src[j]);       \
        break;
    KILN_ACTIVATIONS(KILN_MOE_ACT)
#undef KILN_MOE_ACT
    default:
        for (int j = 0; j < n; j++) dst[j] = g * src[j];
        break;
    }
}

/* the token of a slot */
#define MOE_TOKEN(slot, k) ((size_t)(slot) / (size_t)(k))

/* y (N, C) = for each token, the sum of its slots' grouped rows (rows (routed slots, C), pos as in moe_groups),
 * in slot order: one summation order at any thread count; zeros for a token with no expert */
KILN_KERNEL void moe_sum_slots(real *restrict y, const real *restrict rows, const int32_t *restrict pos, size_t N,
                               int k, int C) {
    #pragma omp parallel for schedule(static)
    for (size_t t = 0; t < N; t++) {
        real *restrict d = y + t * C;
        memset(d, 0, (size_t)C * sizeof(real));
        for (int j = 0; j < k; j++) {
            const int32_t r = pos[t * (size_t)k + (size_t)j];
            if (r < 0) continue;
            const real *restrict v = rows + (size_t)r * C;
            #pragma omp simd
            for (int c = 0; c < C; c++) d[c] += v[c];
        }
    }
}

/* h (N, k, H) = up[e] (H, C) · x[t] (C) for each slot; zeros in empty slots; gates (N, E), up (E, H, C) */
KILN_KERNEL void moe_up_forward(real *restrict h, const real *restrict x, const real *restrict gates,
                                const real *restrict up, real *restrict work, real *restrict fixed, size_t N, int E,
                                int k, int H, int C) {
    moe_scratch s = moe_scratch_of(work, fixed, N, E, k, H, C);
    moe_groups(s.offs, s.list, s.pos, s.next, gates, N, E, k);
    const size_t rows = (size_t)s.offs[E], slots = N * (size_t)k;
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) memcpy(s.ga + r * C, x + MOE_TOKEN(s.list[r], k) * C, (size_t)C * sizeof(real));
    moe_grouped_product(s.gb, s.ga, up, 1, &s, E, C, H);
    #pragma omp parallel for schedule(static)
    for (size_t q = 0; q < slots; q++) {
        if (s.pos[q] >= 0) memcpy(h + q * H, s.gb + (size_t)s.pos[q] * H, (size_t)H * sizeof(real));
        else memset(h + q * H, 0, (size_t)H * sizeof(real));
    }
}

/* dx (N, C) = Σ_j dh[t, j] · up[e_j] (wrt x), or dup (E, H, C) = Σ over expert e's slots of dh ⊗ x (wrt weight) */
KILN_KERNEL void moe_up_backward(real *restrict dx, real *restrict dup, const real *restrict dh,
                                 const real *restrict x, const real *restrict gates, const real *restrict up,
                                 real *restrict work, real *restrict fixed, size_t N, int E, int k, int H, int C) {
    moe_scratch s = moe_scratch_of(work, fixed, N, E, k, H, C);
    moe_groups(s.offs, s.list, s.pos, s.next, gates, N, E, k);
    const size_t rows = (size_t)s.offs[E];
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) memcpy(s.ga + r * H, dh + (size_t)s.list[r] * H, (size_t)H * sizeof(real));
    if (dx) {
        moe_grouped_product(s.gb, s.ga, up, 0, &s, E, H, C);
        moe_sum_slots(dx, s.gb, s.pos, N, k, C);
    } else {
        #pragma omp parallel for schedule(static)
        for (size_t r = 0; r < rows; r++) memcpy(s.gb + r * C, x + MOE_TOKEN(s.list[r], k) * C, (size_t)C * sizeof(real));
        moe_grouped_weight_gradient(dup, s.ga, s.gb, &s, E, H, C);
    }
}

/* the grouped rows ga (rows, H) = act(h) of each routed slot, times its gate when scaled */
KILN_KERNEL void moe_gather_activated(real *restrict ga, const real *restrict h, const real *restrict gates,
                                      const moe_scratch *s, int E, int k, int H, int act, int scaled) {
    #pragma omp parallel for schedule(static)
    for (int e = 0; e < E; e++)
        for (int32_t r = s->offs[e]; r < s->offs[e + 1]; r++) {
            const int32_t slot = s->list[r];
            const real g = scaled ? gates[MOE_TOKEN(slot, k) * E + e] : 1;
            moe_activation_row(ga + (size_t)r * H, h + (size_t)slot * H, g, H, act);
        }
}

/* y (N, C) = Σ over the token's slots of gate · act(h[t, j]) · down[e_j]; down (E, H, C) */
KILN_KERNEL void moe_down_forward(real *restrict y, const real *restrict h, const real *restrict gates,
                                  const real *restrict down, real *restrict work, real *restrict fixed, size_t N, int E,
                                  int k, int H, int C, int act) {
    moe_scratch s = moe_scratch_of(work, fixed, N, E, k, H, C);
    moe_groups(s.offs, s.list, s.pos, s.next, gates, N, E, k);
    moe_gather_activated(s.ga, h, gates, &s, E, k, H, act, 1);
    moe_grouped_product(s.gb, s.ga, down, 0, &s, E, H, C);
    moe_sum_slots(y, s.gb, s.pos, N, k, C);
}

/* The gradients of moe_down, one of: dh (N, k, H) = act'(h) ⊙ gate · down[e] · dy (wrt h, zeros in empty
 * slots); dgates (N, E) = dy · act(h) · down[e] at the routed experts, 0 elsewhere; ddown (E, H, C) = Σ over
 * expert e's slots of act(h) ⊗ gate · dy. wrt: 0 h, 1 gates, 2 weight. */
KILN_KERNEL void moe_down_backward(real *restrict d, const real *restrict dy, const real *restrict h,
                                   const real *restrict gates, const real *restrict down, real *restrict work,
                                   real *restrict fixed, size_t N, int E, int k, int H, int C, int act, int wrt) {
    moe_scratch s = moe_scratch_of(work, fixed, N, E, k, H, C);
    moe_groups(s.offs, s.list, s.pos, s.next, gates, N, E, k);
    const size_t slots = N * (size_t)k;
    if (wrt == 1) { /* dg = dy · (act(h) · down[e]) */
        moe_gather_activated(s.ga, h, gates, &s, E, k, H, act, 0);
        moe_grouped_product(s.gb, s.ga, down, 0, &s, E, H, C);
        #pragma omp parallel for schedule(static)
        for (size_t t = 0; t < N; t++) {
            const real *restrict gt = gates + t * (size_t)E, *restrict u = dy + t * C;
            real *restrict g = d + t * (size_t)E;
            for (int e = 0, j = 0; e < E; e++) { /* the routed experts in slot order */
                g[e] = 0;
                if (gt[e] == 0 || j == k) continue;
                const real *restrict v = s.gb + (size_t)s.pos[t * (size_t)k + (size_t)j++] * C;
                real dot = 0;
                for (int c = 0; c < C; c++) dot += u[c] * v[c];
                g[e] = dot;
            }
        }
        return;
    }
    /* gate · dy of each routed slot's token, grouped: gb (rows, C) */
    #pragma omp parallel for schedule(static)
    for (int e = 0; e < E; e++)
        for (int32_t r = s.offs[e]; r < s.offs[e + 1]; r++) {
            const size_t t = MOE_TOKEN(s.list[r], k);
            const real g = gates[t * E + e];
            real *restrict dst = s.gb + (size_t)r * C;
            const real *restrict src = dy + t * C;
            #pragma omp simd
            for (int c = 0; c < C; c++) dst[c] = g * src[c];
        }
    if (wrt == 0) { /* da (rows, H) = (gate · dy) (rows, C) · down[e]ᵀ (C, H), then act' */
        moe_grouped_product(s.ga, s.gb, down, 1, &s, E, C, H);
        #pragma omp parallel for schedule(static)
        for (size_t q = 0; q < slots; q++) {
            if (s.pos[q] >= 0) moe_activation_grad_row(d + q * H, s.ga + (size_t)s.pos[q] * H, h + q * H, H, act);
            else memset(d + q * H, 0, (size_t)H * sizeof(real));
        }
    } else { /* ddown[e] (H, C) = act(h)ᵀ (H, n_e) · (gate · dy) (n_e, C) */
        moe_gather_activated(s.ga, h, gates, &s, E, k, H, act, 0);
        moe_grouped_weight_gradient(d, s.ga, s.gb, &s, E, H, C);
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
            if (kind == 1) {
                const double lse = reduce_row_logsumexp(x, E);
                z += lse * lse;
            } else {
                real p[E];
                int first;
                reduce_row_max(x, E, &first);
                f[first] += 1;
                row_softmax(x, p, E);
                for (int e = 0; e < E; e++) P[e] += p[e];
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
                int first;
                reduce_row_max(logits[l] + t * (size_t)E, E, &first);
                f[first] += (real)(1.0 / (double)N);
            }
        #pragma omp parallel for schedule(static)
        for (size_t t = 0; t < N; t++) {
            const real *restrict x = logits[l] + t * (size_t)E;
            real *restrict g = d + ((size_t)l * N + t) * (size_t)E;
            real p[E];
            row_softmax(x, p, E);
            if (kind == 1) {
                const real c = scale * 2 * reduce_row_logsumexp(x, E) / (real)N;
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
