/* cpu.h — the CPU backend's state and scratch, shared by its two steps (internal to the
 * cpu backend): ref.c (RWKV-7, and everything that is not the step) and legacy.c (RWKV-4,
 * RWKV-5 and RWKV-6). Invariant: every row's arithmetic depends only on that row's inputs
 * and its slot's state, never on how many rows a call carries or on thread count.
 */
#ifndef RWKV_CPU_H
#define RWKV_CPU_H

#include "../backend.h"
#include "../threadpool.h"
#include "vmath.h"

#include <math.h>
#include <stddef.h>

typedef struct {
    rwkv_backend base;
    const rwkv_model *m;
    rwkv_pool *pool;
    int n_slots, max_rows, max_d;
    size_t state_floats, layer_floats; /* per slot; per layer = 2C + H*N*N (RWKV-4: 5C) */
    float *states; /* (n_slots, state_floats): see layer_state */
    /* scratch, (max_rows, C) unless noted */
    float *x, *u, *xr, *xw, *xk, *xv, *xa, *xg;
    float *r, *k, *v, *z, *a, *g, *vres, *vfirst, *y;
    float *hw, *ha, *hv, *hg; /* (max_rows, max_d) */
    float *ffh;               /* (max_rows, F) */
    float *lnout;             /* (max_rows, C) */
    float *ws;                /* GEMM workspace */
    int *row_slot, *row_prev, *rows; /* (max_rows) each */
    int *run_start, *run_len;        /* (max_rows): contiguous rows of one slot */
    unsigned char *row_last;         /* (max_rows): last row of its run */
    int n_runs;
    int32_t *tokens;                 /* (max_rows) */
    float **logit_rows;
    float *out_logits;               /* (max_rows, V): logits left in the engine
                                      * (RWKV_OUT_ENGINE), allocated on first use */
} cpu_backend;

static const float LN_EPS = 1e-5f;
static const float GN_EPS = 64e-5f;

/* ---- per-row helpers ------------------------------------------------------------------ */

static inline void layer_norm(const float *x, const float *w, const float *b, float *out, int n)
{
    const float mean = vm_dot(x, NULL, n) / (float)n;
    for (int i = 0; i < n; i++)
        out[i] = x[i] - mean;
    const float var = vm_dot(out, out, n) / (float)n;
    const float inv = 1.0f / sqrtf(var + LN_EPS);
    for (int i = 0; i < n; i++)
        out[i] = out[i] * inv * w[i] + b[i];
}


static inline float *state_of(cpu_backend *cb, int slot) { return cb->states + (size_t)slot * cb->state_floats; }

/* Layer l of a slot's state: p_att at [0, C), then S at [C, C + H*N*N) (RWKV-5/6/7) or aa,
 * bb, pp at [C, 4C) (RWKV-4), p_ffn in the last C. */
static inline float *layer_state(cpu_backend *cb, int slot, int l) { return state_of(cb, slot) + (size_t)l * cb->layer_floats; }

/* RWKV-4/5/6: embedding, every layer and ln_out for the rows set up by cpu_forward (rows in
 * cb->row_*, runs in cb->run_*), leaving the ln_out vectors in cb->lnout. legacy.c. */
void rwkv_cpu_forward_legacy(cpu_backend *cb, int R, const int32_t *tokens);

#endif
