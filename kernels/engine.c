/* engine.c — the public engine API: argument checks, batching limits, backend dispatch.
 *
 * Everything a caller can get wrong is caught here, before a backend touches any state,
 * so a rejected call leaves every slot exactly as it was. Backends see only valid input.
 * Which backend runs is the registry's business (backends.c). A backend that returned -EIO
 * is dead: the engine refuses every later call with -EIO and keeps the backend's text.
 */
#include "backend.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct rwkv_engine {
    const rwkv_model *model;
    rwkv_backend *backend;
    const char *backend_name; /* the registry's name of what runs ("auto" resolved) */
    int dead;                 /* a backend op returned -EIO */
    int n_slots;
    int max_batch;
    size_t state_bytes;
    unsigned char *seen; /* (n_slots) scratch for duplicate-slot detection */
    rwkv_row *rows;      /* (max_batch) rows of the pass being built */
    int n_rows;
    int n_out;           /* items of the last step whose outputs stay in the backend (0: none) */
};

size_t rwkv_state_floats(const rwkv_dims *d)
{
    if (d->arch == RWKV_ARCH_V4)
        return (size_t)d->n_layer * 5 * (size_t)d->n_embd;
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
    e->rows = calloc((size_t)o.max_batch, sizeof(rwkv_row));
    int rc;
    if (!e->seen || !e->rows)
        rc = -ENOMEM;
    else
        rc = rwkv_backend_create(o.backend, model, &o, &e->backend, &e->backend_name, err, err_len);
    if (rc) {
        free(e->seen);
        free(e->rows);
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
    free(e->rows);
    free(e);
    *ep = NULL;
}

const char *rwkv_engine_backend(const rwkv_engine *e) { return e->backend_name; }

const char *rwkv_engine_last_error(const rwkv_engine *e)
{
    if (!e->dead)
        return "";
    return e->backend->last_error[0] ? e->backend->last_error : "backend failed (it gave no reason)";
}

/* Every backend result passes here: -EIO marks the engine dead for good. */
static int backend_rc(rwkv_engine *e, int rc)
{
    if (rc == -EIO)
        e->dead = 1;
    return rc;
}
int rwkv_engine_n_slots(const rwkv_engine *e) { return e->n_slots; }
int rwkv_engine_max_batch(const rwkv_engine *e) { return e->max_batch; }
size_t rwkv_engine_state_bytes(const rwkv_engine *e) { return e->state_bytes; }

static int slot_ok(const rwkv_engine *e, int slot) { return slot >= 0 && slot < e->n_slots; }
static int token_ok(const rwkv_engine *e, int32_t t) { return t >= 0 && t < e->model->dims.n_vocab; }

/* Mark the slots of n items; -EINVAL (marks cleared) on a bad slot or a duplicate. */
static int mark_slots(rwkv_engine *e, const int *slot, size_t stride, int n)
{
    int i = 0, rc = 0;
    for (; i < n; i++) {
        int s = *(const int *)((const char *)slot + (size_t)i * stride);
        if (!slot_ok(e, s) || e->seen[s]) {
            rc = -EINVAL;
            break;
        }
        e->seen[s] = 1;
    }
    while (i-- > 0)
        e->seen[*(const int *)((const char *)slot + (size_t)i * stride)] = 0;
    return rc;
}

/* Rows are gathered into passes of at most max_batch; a run cut at a pass boundary
 * continues in the next pass from the state the first one stored. */
static int flush(rwkv_engine *e)
{
    int rc = e->n_rows ? backend_rc(e, e->backend->ops->forward(e->backend, e->rows, e->n_rows)) : 0;
    e->n_rows = 0;
    return rc;
}

static int add_row(rwkv_engine *e, int slot, int32_t token, int continues, float *hidden, float *logits)
{
    int rc = 0;
    if (e->n_rows == e->max_batch) {
        if ((rc = flush(e)) != 0)
            return rc; /* dead backend: the caller reports it; no row is left pending */
        continues = 0;
    }
    e->rows[e->n_rows] = (rwkv_row){slot, token, continues ? e->n_rows - 1 : -1, hidden, logits};
    e->n_rows++;
    return rc;
}

int rwkv_engine_step(rwkv_engine *e, const rwkv_step_item *items, int n)
{
    e->n_out = 0;
    if (e->dead)
        return -EIO;
    if (n < 0 || (n > 0 && !items))
        return -EINVAL;
    int borrow = 0;
    for (int i = 0; i < n; i++) {
        if (!token_ok(e, items[i].token))
            return -EINVAL;
        borrow |= items[i].logits == RWKV_OUT_ENGINE || items[i].hidden == RWKV_OUT_ENGINE;
    }
    if (borrow && n > e->max_batch)
        return -EINVAL; /* one pass holds the outputs */
    if (n > 0 && mark_slots(e, &items[0].slot, sizeof items[0], n))
        return -EINVAL;
    int rc = 0;
    e->n_rows = 0;
    for (int i = 0; i < n && rc == 0; i++)
        rc = add_row(e, items[i].slot, items[i].token, 0, items[i].hidden, items[i].logits);
    rc = rc ? rc : flush(e);
    if (rc == 0 && borrow)
        e->n_out = n;
    return rc;
}

static const float *out_row(const rwkv_engine *e, int i, int what)
{
    if (i < 0 || i >= e->n_out || e->dead)
        return NULL;
    const rwkv_row *r = &e->rows[i];
    if ((what ? r->hidden : r->logits) != RWKV_OUT_ENGINE)
        return NULL;
    return e->backend->ops->output(e->backend, i, what);
}

const float *rwkv_engine_out_logits(const rwkv_engine *e, int i) { return out_row(e, i, 0); }
const float *rwkv_engine_out_hidden(const rwkv_engine *e, int i) { return out_row(e, i, 1); }

int rwkv_engine_run(rwkv_engine *e, const rwkv_seq_item *items, int n_items)
{
    e->n_out = 0;
    if (e->dead)
        return -EIO;
    if (n_items < 0 || (n_items > 0 && !items))
        return -EINVAL;
    for (int i = 0; i < n_items; i++) {
        if (items[i].n < 1 || !items[i].tokens || items[i].hidden == RWKV_OUT_ENGINE ||
            items[i].logits == RWKV_OUT_ENGINE) /* engine-held outputs: steps only */
            return -EINVAL;
        for (int t = 0; t < items[i].n; t++)
            if (!token_ok(e, items[i].tokens[t]))
                return -EINVAL;
    }
    if (n_items > 0 && mark_slots(e, &items[0].slot, sizeof items[0], n_items))
        return -EINVAL;
    int rc = 0;
    e->n_rows = 0;
    for (int i = 0; i < n_items && rc == 0; i++) {
        const rwkv_seq_item *it = &items[i];
        for (int t = 0; t < it->n && rc == 0; t++) {
            int last = t == it->n - 1;
            rc = add_row(e, it->slot, it->tokens[t], t > 0, last ? it->hidden : NULL, last ? it->logits : NULL);
        }
    }
    return rc ? rc : flush(e);
}

int rwkv_engine_seq(rwkv_engine *e, int slot, const int32_t *tokens, int n, float *hidden, float *logits,
                    float *all_logits)
{
    e->n_out = 0;
    if (e->dead)
        return -EIO;
    if (!slot_ok(e, slot) || n < 0 || (n > 0 && !tokens) || hidden == RWKV_OUT_ENGINE ||
        logits == RWKV_OUT_ENGINE || all_logits == RWKV_OUT_ENGINE)
        return -EINVAL;
    for (int i = 0; i < n; i++)
        if (!token_ok(e, tokens[i]))
            return -EINVAL;
    if (!all_logits) {
        rwkv_seq_item it = {slot, tokens, n, hidden, logits};
        return n ? rwkv_engine_run(e, &it, 1) : 0;
    }
    const size_t V = (size_t)e->model->dims.n_vocab;
    int rc = 0;
    e->n_rows = 0;
    for (int t = 0; t < n && rc == 0; t++)
        rc = add_row(e, slot, tokens[t], t > 0, t == n - 1 ? hidden : NULL, all_logits + (size_t)t * V);
    rc = rc ? rc : flush(e);
    if (rc == 0 && logits && n > 0)
        memcpy(logits, all_logits + (size_t)(n - 1) * V, V * sizeof(float));
    return rc;
}

int rwkv_engine_state_reset(rwkv_engine *e, int slot)
{
    if (e->dead)
        return -EIO;
    return slot_ok(e, slot) ? backend_rc(e, e->backend->ops->state_reset(e->backend, slot)) : -EINVAL;
}

int rwkv_engine_state_copy(rwkv_engine *e, int dst, int src)
{
    if (e->dead)
        return -EIO;
    if (!slot_ok(e, dst) || !slot_ok(e, src))
        return -EINVAL;
    return dst == src ? 0 : backend_rc(e, e->backend->ops->state_copy(e->backend, dst, src));
}

int rwkv_engine_state_export(rwkv_engine *e, int slot, void *buf, size_t len)
{
    if (e->dead)
        return -EIO;
    if (!slot_ok(e, slot) || !buf || len != e->state_bytes)
        return -EINVAL;
    return backend_rc(e, e->backend->ops->state_export(e->backend, slot, buf));
}

/* A state from a file or the network: every value must be finite (checked here, once for
 * every backend). */
int rwkv_engine_state_import(rwkv_engine *e, int slot, const void *buf, size_t len)
{
    if (e->dead)
        return -EIO;
    if (!slot_ok(e, slot) || !buf || len != e->state_bytes)
        return -EINVAL;
    const float *f = buf;
    for (size_t i = 0; i < len / sizeof(float); i++)
        if (!isfinite(f[i]))
            return -EINVAL;
    return backend_rc(e, e->backend->ops->state_import(e->backend, slot, buf));
}

/* Through the backend's own export and import, so it reaches the state wherever the
 * backend keeps it (host memory, device memory). */
int rwkv_engine_state_poison(rwkv_engine *e, int slot, size_t index)
{
    if (e->dead)
        return -EIO;
    if (!slot_ok(e, slot) || index >= e->state_bytes / sizeof(float))
        return -EINVAL;
    float *f = malloc(e->state_bytes);
    if (!f)
        return -ENOMEM;
    int rc = backend_rc(e, e->backend->ops->state_export(e->backend, slot, f));
    if (rc == 0) {
        f[index] = NAN;
        rc = backend_rc(e, e->backend->ops->state_import(e->backend, slot, f));
    }
    free(f);
    return rc;
}
