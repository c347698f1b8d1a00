/* backend.h — the interface every compute backend implements (internal to librwkv).
 *
 * A backend owns the state pool and scratch for one model. engine.c validates arguments
 * (slot ranges, tokens, duplicate slots, sizes) before calling in, so backends may assume
 * valid input. A batched step, a sequence and a set of sequences of different lengths are
 * all one forward() call over rows (rwkv_row), at most max_batch of them.
 */
#ifndef RWKV_BACKEND_H
#define RWKV_BACKEND_H

#include "model.h"

typedef struct rwkv_backend rwkv_backend;

/* One row of a forward call: advance `slot` by `token`. Rows of one slot form one
 * contiguous run in order; `prev` is the index of the run's previous row in this call (the
 * token shift and the WKV state continue from it) or -1 for a run's first row (it starts
 * from the slot's stored state). Outputs after this row's token, where not NULL. */
typedef struct {
    int slot;
    int32_t token;
    int prev;
    float *hidden; /* (n_embd) */
    float *logits; /* (n_vocab) */
} rwkv_row;

typedef struct {
    const char *name;
    void (*destroy)(rwkv_backend *b);
    /* n <= max_batch rows as described above; each slot's run stored back at its end */
    int (*forward)(rwkv_backend *b, const rwkv_row *rows, int n);
    int (*state_reset)(rwkv_backend *b, int slot);
    int (*state_copy)(rwkv_backend *b, int dst, int src);
    int (*state_export)(rwkv_backend *b, int slot, void *buf); /* state_bytes bytes */
    int (*state_import)(rwkv_backend *b, int slot, const void *buf);
} rwkv_backend_ops;

struct rwkv_backend {
    const rwkv_backend_ops *ops;
};

/* Bytes of one exported state: n_layer * (2*C + H*N*N) floats. */
size_t rwkv_state_floats(const rwkv_dims *d);

int rwkv_cpu_backend_new(const rwkv_model *m, const rwkv_engine_opts *opts, rwkv_backend **out,
                         char *err, size_t err_len);
#ifdef RWKV_HAVE_CUDA
int rwkv_cuda_backend_new(const rwkv_model *m, const rwkv_engine_opts *opts, rwkv_backend **out,
                          char *err, size_t err_len);
#endif

#endif
