/* model.h — the in-memory RWKV model that backends read (internal to librwkv): RWKV-7, and
 * RWKV-4/5/6 in the same structs (dims.arch says which fields are in use).
 *
 * Every matrix y = W·x (out × in) is stored in "panels" of RWKV_PANEL output rows: panel p
 * holds, for k = 0..in-1, the RWKV_PANEL weights W[p*RWKV_PANEL + j][k] contiguously
 * (k-major), and the last panel is zero-padded (weights bf16dot: pairs of inputs, see
 * rwkv_mat_index). The CPU GEMM streams one panel with vector
 * loads and no transposes or horizontal sums; the LoRA matrices (stored [in][out] in the
 * checkpoint) land in the same form. rwkv_mat_get_row() gives the plain row-major view
 * other backends need. Vectors are fp32. The embedding has ln0 folded in (spec §1.3).
 * Nothing here changes after load.
 */
#ifndef RWKV_MODEL_H
#define RWKV_MODEL_H

#include "rwkv.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RWKV_PANEL 64

typedef struct {
    const void *data; /* (ceil(rows / RWKV_PANEL), cols, RWKV_PANEL) elements of `dtype`;
                       * BF16X2: (ceil(rows / RWKV_PANEL), ceil(cols / 2), RWKV_PANEL, 2) */
    rwkv_dtype dtype;
    int rows;         /* out */
    int cols;         /* in */
} rwkv_mat;

/* Element index of W[r][k] (output r, input k) in a packed matrix of `cols` inputs: panel
 * r / RWKV_PANEL, then k-major within the panel; for RWKV_DTYPE_BF16X2 the inputs go in
 * pairs (2i, 2i+1) adjacent per output, cols rounded up to even (the pad is zero). */
size_t rwkv_mat_index(rwkv_dtype t, int cols, int r, int k);
/* Bytes of a packed matrix. */
size_t rwkv_mat_bytes(int rows, int cols, rwkv_dtype t);
/* Row r of W (cols values) as fp32, e.g. for uploading to another backend. */
RWKV_API void rwkv_mat_get_row(const rwkv_mat *m, int r, float *out); /* exported: modules use it */

typedef struct {
    const float *ln1_w, *ln1_b;                  /* (C) */
    const float *x_r, *x_w, *x_k, *x_v, *x_a, *x_g; /* (C) token-shift mixes */
    const float *w0, *a0, *v0;                   /* (C); v0 NULL for layer 0 */
    rwkv_mat w1, w2;                             /* (D_w, C), (C, D_w) */
    rwkv_mat a1, a2;                             /* (D_a, C), (C, D_a) */
    rwkv_mat v1, v2;                             /* (D_v, C), (C, D_v); unused in layer 0 */
    rwkv_mat g1, g2;                             /* (D_g, C), (C, D_g) */
    const float *k_k, *k_a;                      /* (C) */
    const float *r_k;                            /* (C) = (H, N) flattened */
    rwkv_mat rw, kw, vw, ow;                     /* (C, C) */
    const float *lnx_w, *lnx_b;                  /* (C) GroupNorm affine */
    const float *ln2_w, *ln2_b;                  /* (C) */
    const float *ffn_x_k;                        /* (C) */
    rwkv_mat ffn_k;                              /* (F, C) */
    rwkv_mat ffn_v;                              /* (C, F) */
    /* RWKV-4/5/6 only (NULL / empty for RWKV-7). x_r, x_k, x_v, x_g (and x_w for v6) hold
     * the token-shift vectors: v4/v5 time_mix_q, used as u*m + p*(1-m); v6 time_maa_q, used
     * as u + (p-u)*(m + lora_q). ffn_x_k likewise; rw/kw/vw/ow, lnx_*, ffn_k/ffn_v as for
     * RWKV-7; v6 decay LoRA time_decay_w1/w2 in w1 (D_w, C) / w2 (C, D_w). */
    const float *x_x;                            /* (C) v6 time_maa_x */
    rwkv_mat mix1;                               /* (5*D_mix, C) v6 time_maa_w1 */
    rwkv_mat mix2[5];                            /* (C, D_mix) each: v6 time_maa_w2[w,k,v,r,g] */
    const float *decay;                          /* (C) v4: -exp(time_decay); v5: exp(-exp(time_decay))
                                                  * (per-head values repeated); v6: time_decay */
    const float *bonus;                          /* (C) v4: time_first; v5/v6: u = time_faaaa,
                                                  * or exp(time_first) (per-head values repeated) */
    rwkv_mat gw;                                 /* (C, C) gate, 5.1 and later */
    const float *ffn_x_r;                        /* (C) */
    rwkv_mat ffn_r;                              /* (C, C) FFN receptance */
} rwkv_layer;

struct rwkv_model {
    rwkv_dims dims;
    const float *emb;              /* (V, C), ln0 folded */
    const float *ln_out_w, *ln_out_b; /* (C) */
    rwkv_mat head;                 /* (V, C) */
    rwkv_layer *layers;            /* (L) */
    void *arena;
    size_t arena_bytes;
    uint64_t n_params;
    uint64_t fingerprint;
};

size_t rwkv_dtype_size(rwkv_dtype t);

/* A random model of the given shape, built in memory (model_random.c), for benchmarks.
 * shape: n_layer and n_embd (a multiple of 64) required; n_vocab 0 = 65536, head_size 0 =
 * 64, n_ffn 0 = 4 × n_embd, ranks 0 = the trainer's for that width (spec §1.4); n_head is
 * derived. Magnitudes as tools/gen-checkpoint.py's defaults; a pure function of (shape,
 * seed, weights), filled with one thread per online CPU. Matrices in bf16 for
 * RWKV_WEIGHTS_STORED (like the released models) or the type `weights` names. Returns 0,
 * -EINVAL (bad shape; err says which) or -ENOMEM. Free with rwkv_model_destroy. */
int rwkv_model_random(const rwkv_dims *shape, uint64_t seed, rwkv_weights weights, rwkv_model **out, char *err,
                      size_t err_len);

#ifdef __cplusplus
}
#endif
#endif
