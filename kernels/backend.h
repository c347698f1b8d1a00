/* backend.h — the interface every compute backend implements (internal to librwkv).
 *
 * A backend owns the state pool and scratch for one model. engine.c validates arguments
 * (slot ranges, tokens, duplicate slots, sizes) before calling in, so backends may assume
 * valid input. Rows passed to step() have distinct slots and n <= max_batch.
 */
#ifndef RWKV_BACKEND_H
#define RWKV_BACKEND_H

#include "model.h"

typedef struct rwkv_backend rwkv_backend;

typedef struct {
    const char *name;
    void (*destroy)(rwkv_backend *b);
    int (*step)(rwkv_backend *b, const rwkv_step_item *items, int n);
    /* n <= max_batch tokens for one slot; all_logits rows for every token if not NULL */
    int (*seq)(rwkv_backend *b, int slot, const int32_t *tokens, int n, float *hidden, float *logits,
               float *all_logits);
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
