/*
 * lstm.c - the `lstm` op family: the recurrence of a long short-term memory layer (Hochreiter & Schmidhuber
 * 1997) in nn.LSTM's layout, its backpropagation through time, and `cached_lstm`, which carries the state
 * from one call to the next (generation).
 *
 * The input projection x·W_ihᵀ + b_ih of all positions is one `linear` before these kernels (a large GEMM);
 * what is left is sequential over t. Gate blocks of H columns in the order i, f, g, o:
 *   c_t = σ(f)·c_{t-1} + σ(i)·tanh(g),  h_t = σ(o)·tanh(c_t)
 *
 * Each step is one product h_{t-1}·W_hhᵀ (B x H times H x 4H) on gemm.h's microkernel, with the gates
 * computed in the tile's epilogue: W_hhᵀ is packed so that one panel of GEMM_NR columns holds the four
 * gates of LSTM_U hidden units side by side, so a tile of rows x units has everything its cells need. A call
 * is one parallel region whose threads share each step's tiles, with one barrier per step (h_t must be
 * complete before step t+1 reads it).
 */
#ifndef KILN_KERNELS_LSTM_C
#define KILN_KERNELS_LSTM_C

#include "gemm.h"
#include "kiln_math.h"

/* hidden units per panel of the forward product: their four gates fill its GEMM_NR columns */
#define LSTM_U (GEMM_NR / 4)

KILN_KERNEL inline real lstm_sigmoid(real x) { return 1 / (1 + kiln_exp(-x)); }

/* The panels of both products take at most 4H x H rounded up to GEMM_NR columns: lstm_panels_size(H). */
KILN_KERNEL inline size_t lstm_panels_size(int H) {
    const size_t pad = (size_t)(H + GEMM_NR - 1) / GEMM_NR * GEMM_NR;
    return (size_t)4 * H * pad;
}

/* panels (ceil(H / LSTM_U) panels of H x GEMM_NR) <- W_hhᵀ with the gates of LSTM_U units side by side:
 * column gate * LSTM_U + u of panel k holds W_hh's row gate * H + k * LSTM_U + u (zeros past unit H-1) */
KILN_KERNEL void lstm_pack_gates(real *restrict panels, const real *restrict w_hh, int H) {
    const int nk = (H + LSTM_U - 1) / LSTM_U;
    #pragma omp parallel for schedule(static) if ((size_t)H * H >= 16384)
    for (int k = 0; k < nk; k++) {
        real *panel = panels + (size_t)k * H * GEMM_NR;
        for (int g = 0; g < 4; g++)
            for (int u = 0; u < LSTM_U; u++) {
                const int unit = k * LSTM_U + u;
                const real *row = w_hh + ((size_t)g * H + unit) * H;
                for (int p = 0; p < H; p++) panel[(size_t)p * GEMM_NR + g * LSTM_U + u] = unit < H ? row[p] : 0;
            }
    }
}

/* W_hh (4H, H) rearranged in place into lstm_pack_gates's layout, for H a multiple of LSTM_U (the panels then
 * take exactly its 4H x H elements): done once when a model is loaded for inference. tmp holds 4H x H values. */
KILN_KERNEL void lstm_pack_gates_in_place(real *restrict w_hh, int H, real *restrict tmp) {
    memcpy(tmp, w_hh, (size_t)4 * H * H * sizeof(real));
    lstm_pack_gates(w_hh, tmp, H);
}

/* The inverse of lstm_pack_gates_in_place: the panels back to W_hh (4H, H). */
KILN_KERNEL void lstm_unpack_gates_in_place(real *restrict w_hh, int H, real *restrict tmp) {
    memcpy(tmp, w_hh, (size_t)4 * H * H * sizeof(real));
    for (int k = 0; k < H / LSTM_U; k++)
        for (int g = 0; g < 4; g++)
            for (int u = 0; u < LSTM_U; u++) {
                real *row = w_hh + ((size_t)g * H + k * LSTM_U + u) * H;
                for (int p = 0; p < H; p++) row[p] = tmp[((size_t)k * H + p) * GEMM_NR + g * LSTM_U + u];
            }
}

/* One tile of a forward step: rows m0 .. m0+mb-1 and units k*LSTM_U .. of the cells. The product of h_prev
 * (rows of stride hp_rs) and panel k gives the recurrent part of the four gates; with b_hh and the inputs
 * xg_t (rows of stride x_rs) the cell c is updated (read from c_prev, rows of stride cp_rs, written to c,
 * rows of stride c_rs; they may be the same memory) and h_t written (rows of stride h_rs). gates (rows of
 * stride g_rs, or NULL) keeps σ(i), σ(f), tanh(g), σ(o) in the usual layout for a backward pass. */
KILN_KERNEL void lstm_step_tile(gemm_tile_fn tile, real *h_out, size_t h_rs, real *c, size_t c_rs, const real *c_prev,
                                size_t cp_rs, real *gates, size_t g_rs, const real *h_prev, size_t hp_rs,
                                const real *xg_t, size_t x_rs, const real *panels, const real *b_hh, int m0, int mb,
                                int k, int H) {
    _Alignas(64) real acc[GEMM_MR * GEMM_NR];
    tile(acc, h_prev + (size_t)m0 * hp_rs, hp_rs, 1, mb, panels + (size_t)k * H * GEMM_NR, GEMM_NR, H);
    const int u0 = k * LSTM_U, nu = H - u0 < LSTM_U ? H - u0 : LSTM_U;
    for (int r = 0; r < mb; r++) {
        const size_t b = (size_t)(m0 + r);
        const real *restrict a = acc + r * GEMM_NR, *restrict x = xg_t + b * x_rs + u0, *restrict bias = b_hh + u0;
        const real *cp = c_prev + b * cp_rs + u0;
        real *cr = c + b * c_rs + u0, *restrict hr = h_out + b * h_rs + u0;
        _Alignas(64) real act[4][LSTM_U];
        #pragma omp simd
        for (int u = 0; u < nu; u++) {
            act[0][u] = lstm_sigmoid(a[u] + bias[u] + x[u]);
            act[1][u] = lstm_sigmoid(a[LSTM_U + u] + bias[H + u] + x[H + u]);
            act[2][u] = kiln_tanh(a[2 * LSTM_U + u] + bias[2 * H + u] + x[2 * H + u]);
            act[3][u] = lstm_sigmoid(a[3 * LSTM_U + u] + bias[3 * H + u] + x[3 * H + u]);
        }
        #pragma omp simd
        for (int u = 0; u < nu; u++) {
            const real cell = act[1][u] * cp[u] + act[0][u] * act[2][u];
            cr[u] = cell;
            hr[u] = act[3][u] * kiln_tanh(cell);
        }
        if (gates)
            for (int q = 0; q < 4; q++) memcpy(gates + b * g_rs + (size_t)q * H + u0, act[q], (size_t)nu * sizeof(real));
    }
}

/* The forward recurrence from h0, c0 (B, H) over xg (B, T, 4H): hidden states into hs (B, T, H). cells (B, T, H)
 * and gates (B, T, 4H) keep every position's cells and gates for a backward pass; both NULL: the cell stays in
 * c0, which ends as the last cell. panels: lstm_pack_gates of W_hh. */
KILN_KERNEL void lstm_recurrence(real *restrict hs, real *restrict cells, real *restrict gates, real *restrict h0,
                                 real *restrict c0, const real *restrict xg, const real *restrict panels,
                                 const real *restrict b_hh, int B, int T, int H) {
    const gemm_tile_fn tile = gemm_tile();
    const int nk = (H + LSTM_U - 1) / LSTM_U, mt = (B + GEMM_MR - 1) / GEMM_MR, G = 4 * H;
    const size_t h_rs = (size_t)T * H, g_rs = (size_t)T * G;
    #pragma omp parallel if ((size_t)B * H >= 512)
    for (int t = 0; t < T; t++) {
        const real *h_prev = t == 0 ? h0 : hs + (size_t)(t - 1) * H;
        const size_t hp_rs = t == 0 ? (size_t)H : h_rs;
        real *c = cells ? cells + (size_t)t * H : c0;
        const real *c_prev = cells && t > 0 ? cells + (size_t)(t - 1) * H : c0;
        const size_t c_rs = cells ? h_rs : (size_t)H, cp_rs = cells && t > 0 ? h_rs : (size_t)H;
        #pragma omp for schedule(static)
        for (int w = 0; w < mt * nk; w++) {
            const int m0 = w / nk * GEMM_MR, mb = B - m0 < GEMM_MR ? B - m0 : GEMM_MR;
            lstm_step_tile(tile, hs + (size_t)t * H, h_rs, c, c_rs, c_prev, cp_rs, gates ? gates + (size_t)t * G : NULL,
                           g_rs, h_prev, hp_rs, xg + (size_t)t * G, g_rs, panels, b_hh, m0, mb, w % nk, H);
        }
    }
}

/* lstm and cached_lstm: out (B, T, H) = the hidden states of the recurrence over xg (B, T, 4H) with w_hh
 * (4H, H), b_hh (4H). h_state, c_state (R, H), or NULL: the state rows 0 .. B-1 that a row starts from when
 * its first position (positions[b * T], positions (B, T) or NULL) is past 0, and where its last hidden state
 * and cell are left. Scratch: panels (lstm_panels_size(H)), or NULL when w_hh is already in lstm_pack_gates's layout
 * (lstm_pack_gates_in_place); ws (B, 2H). */
KILN_KERNEL void lstm_forward(real *restrict out, const real *restrict xg, const real *restrict w_hh,
                              const real *restrict b_hh, real *restrict h_state, real *restrict c_state,
                              const int32_t *restrict positions, real *restrict panels, real *restrict ws, int B,
                              int T, int H) {
    real *h0 = ws, *c = h0 + (size_t)B * H;
    if (panels) lstm_pack_gates(panels, w_hh, H);
    for (int b = 0; b < B; b++) {
        const int carry = h_state && positions && positions[(size_t)b * T] > 0;
        for (int j = 0; j < H; j++) {
            h0[(size_t)b * H + j] = carry ? h_state[(size_t)b * H + j] : 0;
            c[(size_t)b * H + j] = carry ? c_state[(size_t)b * H + j] : 0;
        }
    }
    lstm_recurrence(out, NULL, NULL, h0, c, xg, panels ? panels : w_hh, b_hh, B, T, H);
    if (h_state) {
        for (int b = 0; b < B; b++) {
            memcpy(h_state + (size_t)b * H, out + ((size_t)b * T + (size_t)(T - 1)) * H, (size_t)H * sizeof(real));
            memcpy(c_state + (size_t)b * H, c + (size_t)b * H, (size_t)H * sizeof(real));
        }
    }
}

/* lstm_grad: dxg (B, T, 4H) = the gradient of the gates' pre-activations (and of xg) for dout (B, T, H) of the
 * recurrence over xg (B, T, 4H) with w_hh (4H, H), b_hh (4H), from zero state. The forward recurrence runs
 * again into saved (B, T, 6H: gates after their nonlinearities, cells, hidden states); then from t = T-1 down
 * to 0, with dh the gradient reaching h_t (dout_t + dxg_{t+1}·W_hh, the product in tiles of rows x GEMM_NR
 * units whose epilogue is the rest) and dc the one carried along the cells:
 *   dc += dh·σ(o)·(1 − tanh²(c_t));  d(o) = dh·tanh(c_t)·σ'(o), d(i) = dc·tanh(g)·σ'(i),
 *   d(g) = dc·σ(i)·(1 − tanh²(g)), d(f) = dc·c_{t-1}·σ'(f);  dc ← dc·σ(f)
 * Scratch: saved (B, T, 6H), panels (2 lstm_panels_size(H): lstm_pack_gates of W_hh, then W_hh (4H x H)
 * packed for gemm.h), ws (B, 3H). */
KILN_KERNEL void lstm_backward(real *restrict dxg, const real *restrict dout, const real *restrict xg,
                               const real *restrict w_hh, const real *restrict b_hh, real *restrict saved,
                               real *restrict panels, real *restrict ws, int B, int T, int H) {
    const int G = 4 * H;
    real *panels_w = panels + lstm_panels_size(H), *h0 = ws, *c0 = h0 + (size_t)B * H, *dc = c0 + (size_t)B * H;
    real *gates = saved, *cells = gates + (size_t)B * T * G, *hs = cells + (size_t)B * T * H;
    const size_t g_rs = (size_t)T * G, h_rs = (size_t)T * H;
    memset(ws, 0, (size_t)3 * B * H * sizeof(real));  /* h0, c0, dc */
    lstm_pack_gates(panels, w_hh, H);
    lstm_recurrence(hs, cells, gates, h0, c0, xg, panels, b_hh, B, T, H);
    gemm_pack(panels_w, w_hh, (size_t)H, 1, G, H);
    const gemm_tile_fn tile = gemm_tile();
    const int nj = (H + GEMM_NR - 1) / GEMM_NR, mt = (B + GEMM_MR - 1) / GEMM_MR;
    #pragma omp parallel if ((size_t)B * H >= 512)
    for (int t = T - 1; t >= 0; t--) {
        #pragma omp for schedule(static)
        for (int w = 0; w < mt * nj; w++) {
            const int m0 = w / nj * GEMM_MR, mb = B - m0 < GEMM_MR ? B - m0 : GEMM_MR;
            const int j0 = w % nj * GEMM_NR, nb = H - j0 < GEMM_NR ? H - j0 : GEMM_NR;
            _Alignas(64) real acc[GEMM_MR * GEMM_NR];
            /* the gradient reaching h_t through the recurrent product of step t+1 */
            if (t < T - 1)
                tile(acc, dxg + (size_t)m0 * g_rs + (size_t)(t + 1) * G, g_rs, 1, mb,
                     panels_w + (size_t)(w % nj) * G * GEMM_NR, GEMM_NR, G);
            else
                memset(acc, 0, sizeof acc);
            for (int r = 0; r < mb; r++) {
                const size_t b = (size_t)(m0 + r);
                const real *gr = gates + b * g_rs + (size_t)t * G, *ct = cells + b * h_rs + (size_t)t * H;
                const real *cp = t == 0 ? c0 + b * H : cells + b * h_rs + (size_t)(t - 1) * H;
                const real *dy = dout + b * h_rs + (size_t)t * H, *a = acc + r * GEMM_NR;
                real *restrict d = dxg + b * g_rs + (size_t)t * G, *restrict dcr = dc + b * H;
                #pragma omp simd
                for (int j = j0; j < j0 + nb; j++) {
                    const real i = gr[j], f = gr[H + j], g = gr[2 * H + j], o = gr[3 * H + j];
                    const real th = kiln_tanh(ct[j]), dhj = dy[j] + a[j - j0];
                    const real dcj = dcr[j] + dhj * o * (1 - th * th);
                    d[j] = dcj * g * i * (1 - i);
                    d[H + j] = dcj * cp[j] * f * (1 - f);
                    d[2 * H + j] = dcj * i * (1 - g * g);
                    d[3 * H + j] = dhj * th * o * (1 - o);
                    dcr[j] = dcj * f;
                }
            }
        }
    }
}

#endif /* KILN_KERNELS_LSTM_C */
