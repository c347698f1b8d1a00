/* engine.c — the public engine API: argument checks, batching limits, backend dispatch.
 *
 * Everything a caller can get wrong is caught here, before a backend touches any state,
 * so a rejected call leaves every slot exactly as it was. Backends see only valid input.
 */
#include "backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct rwkv_engine {
    const rwkv_model *model;
    rwkv_backend *backend;
    int n_slots;
    int max_batch;
    size_t state_bytes;
    unsigned char *seen; /* (n_slots) scratch for duplicate-slot detection */
};

size_t rwkv_state_floats(const rwkv_dims *d)
{
    return (size_t)d->n_layer * (2 * (size_t)d->n_embd + (size_t)d->n_head * d->head_size * d->head_size);
}

int rwkv_engine_new(const rwkv_model *model, const rwkv_engine_opts *opts, rwkv_engine **out, char *err, size_t err_len)
{
    rwkv_engine_opts o = opts ? *opts : (rwkv_engine_opts){0};
    if (!o.backend)
        o.backend = "cpu";
    if (o.n_slots <= 0)
        o.n_slots = 1;
    if (o.max_batch <= 0)
        o.max_batch = 64;
    if (o.n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.n_threads = n > 0 ? (int)n : 1;
    }
    if (!model || o.n_slots > (1 << 24) || o.max_batch > (1 << 16) || o.n_threads > 1024) {
        if (err && err_len)
            snprintf(err, err_len, "engine: invalid options (n_slots %d, max_batch %d, n_threads %d)", o.n_slots,
                     o.max_batch, o.n_threads);
        return -EINVAL;
    }
    rwkv_engine *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    e->model = model;
    e->n_slots = o.n_slots;
    e->max_batch = o.max_batch;
    e->state_bytes = rwkv_state_floats(&model->dims) * sizeof(float);
    e->seen = calloc((size_t)o.n_slots, 1);
    int rc;
    if (!e->seen) {
        rc = -ENOMEM;
    } else if (strcmp(o.backend, "cpu") == 0) {
        rc = rwkv_cpu_backend_new(model, &o, &e->backend, err, err_len);
#ifdef RWKV_HAVE_CUDA
    } else if (strcmp(o.backend, "cuda") == 0) {
        rc = rwkv_cuda_backend_new(model, &o, &e->backend, err, err_len);
#endif
    } else {
        if (err && err_len)
            snprintf(err, err_len, "engine: unknown or unavailable backend '%s' (built: cpu%s)", o.backend,
#ifdef RWKV_HAVE_CUDA
                     ", cuda"
#else
                     ""
#endif
            );
        rc = -EINVAL;
    }
    if (rc) {
        free(e->seen);
        free(e);
        return rc;
    }
    *out = e;
    return 0;
}

void rwkv_engine_destroy(rwkv_engine **ep)
{
    if (!ep || !*ep)
        return;
    rwkv_engine *e = *ep;
    if (e->backend)
        e->backend->ops->destroy(e->backend);
    free(e->seen);
    free(e);
    *ep = NULL;
}

const char *rwkv_engine_backend(const rwkv_engine *e) { return e->backend->ops->name; }
int rwkv_engine_n_slots(const rwkv_engine *e) { return e->n_slots; }
int rwkv_engine_max_batch(const rwkv_engine *e) { return e->max_batch; }
size_t rwkv_engine_state_bytes(const rwkv_engine *e) { return e->state_bytes; }

static int slot_ok(const rwkv_engine *e, int slot) { return slot >= 0 && slot < e->n_slots; }
static int token_ok(const rwkv_engine *e, int32_t t) { return t >= 0 && t < e->model->dims.n_vocab; }

int rwkv_engine_step(rwkv_engine *e, const rwkv_step_item *items, int n)
{
    if (n < 0 || (n > 0 && !items))
        return -EINVAL;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (!slot_ok(e, items[i].slot) || !token_ok(e, items[i].token) || e->seen[items[i].slot]) {
            rc = -EINVAL;
            n = i; /* clear only what was marked */
            break;
        }
        e->seen[items[i].slot] = 1;
    }
    for (int i = 0; i < n; i++)
        e->seen[items[i].slot] = 0;
    if (rc)
        return rc;
    for (int i = 0; i < n && rc == 0; i += e->max_batch)
        rc = e->backend->ops->step(e->backend, items + i, n - i < e->max_batch ? n - i : e->max_batch);
    return rc;
}

int rwkv_engine_seq(rwkv_engine *e, int slot, const int32_t *tokens, int n, float *hidden, float *logits,
                    float *all_logits)
{
    if (!slot_ok(e, slot) || n < 0 || (n > 0 && !tokens))
        return -EINVAL;
    for (int i = 0; i < n; i++)
        if (!token_ok(e, tokens[i]))
            return -EINVAL;
    int rc = 0;
    const size_t V = (size_t)e->model->dims.n_vocab;
    for (int i = 0; i < n && rc == 0; i += e->max_batch) {
        int m = n - i < e->max_batch ? n - i : e->max_batch;
        int last = i + m == n;
        rc = e->backend->ops->seq(e->backend, slot, tokens + i, m, last ? hidden : NULL, last ? logits : NULL,
                                  all_logits ? all_logits + (size_t)i * V : NULL);
    }
    return rc;
}

int rwkv_engine_state_reset(rwkv_engine *e, int slot)
{
    return slot_ok(e, slot) ? e->backend->ops->state_reset(e->backend, slot) : -EINVAL;
}

int rwkv_engine_state_copy(rwkv_engine *e, int dst, int src)
{
    if (!slot_ok(e, dst) || !slot_ok(e, src))
        return -EINVAL;
    return dst == src ? 0 : e->backend->ops->state_copy(e->backend, dst, src);
}

int rwkv_engine_state_export(rwkv_engine *e, int slot, void *buf, size_t len)
{
    if (!slot_ok(e, slot) || !buf || len != e->state_bytes)
        return -EINVAL;
    return e->backend->ops->state_export(e->backend, slot, buf);
}

int rwkv_engine_state_import(rwkv_engine *e, int slot, const void *buf, size_t len)
{
    if (!slot_ok(e, slot) || !buf || len != e->state_bytes)
        return -EINVAL;
    return e->backend->ops->state_import(e->backend, slot, buf);
}
