/* ops.h — the kernels of the CUDA backend as host-callable launchers, and the layouts
 * they share with backend.cu.
 *
 * Every launcher enqueues work on `st` and returns at once; none synchronises or
 * allocates, so a forward can be captured into a CUDA graph. `type` is the element type
 * of GEMM inputs (enum rwkv_cu_type); pointers marked (T) hold that type.
 *
 * Rows and runs: a forward advances R rows; the rows of one slot are consecutive and
 * form a run. Per-row and per-run facts live in one int32 block `meta` of RWKV_CU_META
 * segments of ld_rows entries each (ld_rows = the backend's max_rows), plus the run count
 * at meta[RWKV_CU_META * ld_rows].
 *
 * Device state: per slot, per layer, p_att (C) | S (H, N, N) | p_ffn (C), fp32, the
 * portable layout of rwkv.h except that each head's S is stored transposed (element
 * (i = value, j = key) at j*N + i), so the WKV kernel's loads coalesce.
 */
#ifndef RWKV_CUDA_OPS_H
#define RWKV_CUDA_OPS_H

#include <stddef.h>

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#else
#include "simt.h"
#endif

enum {
    RWKV_CU_M_TOK = 0,   /* token of the row */
    RWKV_CU_M_SLOT,      /* state slot of the row */
    RWKV_CU_M_PREV,      /* previous row of the run, or -1 (continue from the slot) */
    RWKV_CU_M_LAST,      /* 1 for the last row of its run (it stores the shift states) */
    RWKV_CU_M_LOGIT,     /* index among the rows that want logits, or -1 */
    RWKV_CU_M_RUN_START, /* per run: first row */
    RWKV_CU_M_RUN_LEN,   /* per run: rows */
    RWKV_CU_META
};

/* Per-layer fp32 vectors, each C long, in one block (index * C). The six token-shift
 * mixes are in the order of the mix buffer: r, k, v, w, a, g. */
enum {
    RWKV_CU_V_LN1_W = 0, RWKV_CU_V_LN1_B,
    RWKV_CU_V_XR, RWKV_CU_V_XK, RWKV_CU_V_XV, RWKV_CU_V_XW, RWKV_CU_V_XA, RWKV_CU_V_XG,
    RWKV_CU_V_W0, RWKV_CU_V_A0, RWKV_CU_V_V0, RWKV_CU_V_KK, RWKV_CU_V_KA, RWKV_CU_V_RK,
    RWKV_CU_V_LNX_W, RWKV_CU_V_LNX_B, RWKV_CU_V_LN2_W, RWKV_CU_V_LN2_B, RWKV_CU_V_FFN_XK,
    RWKV_CU_V_COUNT
};

/* The LoRA branches as segments of the stacked LoRA buffers, in this order (so the
 * first stage's inputs are mix buffer entries 2..5: v, w, a, g). */
enum { RWKV_CU_L_V = 0, RWKV_CU_L_W, RWKV_CU_L_A, RWKV_CU_L_G, RWKV_CU_L_COUNT };

/* x[b] = emb[token of b] for b < R.  x: (R, C); emb: (V, C). */
void rwkv_cu_embed(cudaStream_t st, float *x, const float *emb, const int *meta, int ld_rows, int R, int C);

/* Time-mix input of one layer: u[b] = LayerNorm1(x[b]); mix[m][b] = u + (p - u) * mu_m for
 * the six mixes m (r, k, v, w, a, g), where p is LayerNorm1(x[prev]) within the call or
 * the slot's stored p_att. mix: (6, ld_rows, C) (T). state_l: the state of layer l of slot
 * 0 (slots slot_floats apart). */
void rwkv_cu_ln_mix_att(int type, cudaStream_t st, const float *x, float *u, const float *state_l,
                        size_t slot_floats, const int *meta, int ld_rows, int R, const float *vec, void *mix, int C);

/* Channel-mix input: u[b] = LayerNorm2(x[b]); xk[b] = u + (p - u) * ffn_x_k with p from
 * the previous row or the slot's p_ffn (at state_l + layer_floats - C). xk: (R, C) (T). */
void rwkv_cu_ln_mix_ffn(int type, cudaStream_t st, const float *x, float *u, const float *state_l,
                        size_t slot_floats, size_t layer_floats, const int *meta, int ld_rows, int R,
                        const float *vec, void *xk, int C);

/* LoRA middle activations for segments first..3 of h32 (4, ld_rows, D) into hT (T):
 * v: identity, w: tanh, a: identity, g: sigmoid. */
void rwkv_cu_lora_act(int type, cudaStream_t st, const float *h32, void *hT, int ld_rows, int R, int D, int first);

/* The fused WKV-7 time mix for every (run, head): removal key, key adjustment, value
 * residual (layer 0 records v_first), decay, the state update and read-out, GroupNorm,
 * bonus and gate; y (R, C) (T) is the input of the output projection. Stores each run's
 * S and, from u of the run's last row, p_att. rkv: (3, ld_rows, C) r, k, v; lo: (4,
 * ld_rows, C) v-residual, decay, ICL rate and gate LoRA outputs. N: 32, 64 or 128. */
typedef struct {
    const float *rkv, *lo, *u;
    float *vfirst;
    void *y;
    float *state_l;
    size_t slot_floats;
    const int *meta;
    const float *vec;
    int ld_rows, C, layer;
} rwkv_cu_wkv_args;
void rwkv_cu_wkv7(int type, int N, cudaStream_t st, int max_runs, int H, const rwkv_cu_wkv_args *a);

/* ffhT[b] = scale * relu(ffh32[b])^2 (T), for F columns; the last row of each run also
 * stores u[b] as the slot's p_ffn (ffn_state_l: state of slot 0 at layer l's p_ffn). */
void rwkv_cu_relu_sq(int type, cudaStream_t st, const float *ffh32, void *ffhT, int F, float scale, const float *u,
                     float *ffn_state_l, size_t slot_floats, const int *meta, int ld_rows, int R, int C);

/* lnout[b] = LayerNorm(x[b]; w, b) for every row; rows with a logit index i also get
 * hin[i] = lnout[b] (T), the compact input of the vocabulary head. */
void rwkv_cu_ln_out(int type, cudaStream_t st, const float *x, float *lnout, void *hin, const float *w,
                    const float *bias, const int *meta, int ld_rows, int R, int C);

#endif
