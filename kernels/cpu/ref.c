/* ref.c — the CPU backend: the x070 step of spec §2 in fp32, for a batch of rows.
 *
 * A call advances R rows grouped in runs: each run is one slot's consecutive tokens, and a
 * row's token shift and WKV state continue from the previous row of its run (a batched
 * step is R runs of one row, sequence mode one run of R rows, and anything in between is
 * allowed). All go through the same code: LayerNorm and mixes per row, every projection as one batched GEMM (gemm.c), then a
 * fused per-(row, head) pass — removal key, key adjustment, value residual, decay, the WKV
 * update and read-out, GroupNorm, bonus and gate — and the channel mix. Every arithmetic
 * result depends only on its own row's inputs, never on R or on thread count, so a batch is
 * bit-identical to single steps and sequence mode to repeated steps.
 * This is the reference every other backend is checked against. No allocation per call.
 * Models of the older generations (RWKV-4/5/6) share everything here but the step, which is
 * legacy.c's.
 */
#include "cpu.h"
#include "gemm.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

static const float DECAY_K = 0.606531f; /* e^-0.5 as the one-token references write it */

/* ---- the fused per-(row, head) time-mix core ------------------------------------------ */

typedef struct {
    cpu_backend *cb;
    const rwkv_layer *ly;
    int layer, R;
    atomic_int next;
} wkv_ctx;

/* Step 12 of spec §2.3 for one head: s_i = S_i·(-kk); S_i <- S_i⊙w + s_i·ab + v_i·kt;
 * y_i = S_i·r. Reads and writes the head's state once. The dot products are vectorised
 * over j with a fixed lane order, so the result does not depend on the caller. */
static void wkv_head(float *S, int N, const float *kk, const float *ab, const float *kt, const float *w,
                     const float *v, const float *r, float *y)
{
#if defined(__AVX512F__)
    if (N % 16 == 0) {
        for (int i = 0; i < N; i++) {
            float *Si = S + (size_t)i * N;
            __m512 acc = _mm512_setzero_ps();
            for (int j = 0; j < N; j += 16)
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(Si + j), _mm512_loadu_ps(kk + j), acc);
            const __m512 s = _mm512_set1_ps(-_mm512_reduce_add_ps(acc));
            const __m512 vi = _mm512_set1_ps(v[i]);
            __m512 ya = _mm512_setzero_ps();
            for (int j = 0; j < N; j += 16) {
                __m512 nv = _mm512_mul_ps(_mm512_loadu_ps(Si + j), _mm512_loadu_ps(w + j));
                nv = _mm512_fmadd_ps(s, _mm512_loadu_ps(ab + j), nv);
                nv = _mm512_fmadd_ps(vi, _mm512_loadu_ps(kt + j), nv);
                _mm512_storeu_ps(Si + j, nv);
                ya = _mm512_fmadd_ps(nv, _mm512_loadu_ps(r + j), ya);
            }
            y[i] = _mm512_reduce_add_ps(ya);
        }
        return;
    }
#endif
    for (int i = 0; i < N; i++) {
        float *Si = S + (size_t)i * N;
        float s = 0;
        for (int j = 0; j < N; j++)
            s += Si[j] * kk[j];
        s = -s;
        float vi = v[i], yi = 0;
        for (int j = 0; j < N; j++) {
            float nv = Si[j] * w[j] + s * ab[j] + vi * kt[j];
            Si[j] = nv;
            yi += nv * r[j];
        }
        y[i] = yi;
    }
}

/* Everything of steps 8-14 of spec §2.3 for one row and one head. */
static void head_row(wkv_ctx *c, int b, int h)
{
    cpu_backend *cb = c->cb;
    const rwkv_dims *d = &cb->m->dims;
    const rwkv_layer *ly = c->ly;
    const int C = d->n_embd, N = d->head_size, o = h * N;
    const size_t ro = (size_t)b * C + o;
    float *k = cb->k + ro, *v = cb->v + ro, *r = cb->r + ro, *z = cb->z + ro, *a = cb->a + ro;
    float *y = cb->y + ro;
    float kk[512], kt[512], w[512], ab[512], sg[512];
    /* removal key: kk = normalize(k * k_k) per head */
    for (int i = 0; i < N; i++)
        kk[i] = k[i] * ly->k_k[o + i];
    float nrm = sqrtf(vm_dot(kk, kk, N));
    float inv = 1.0f / (nrm > 1e-12f ? nrm : 1e-12f);
    vm_sigmoid_add(ly->a0 + o, a, sg, N); /* in-context learning rate */
    vm_decay(ly->w0 + o, z, DECAY_K, w, N);
    for (int i = 0; i < N; i++) {
        kk[i] *= inv;
        ab[i] = kk[i] * sg[i];
        kt[i] = k[i] * (1.0f + (sg[i] - 1.0f) * ly->k_a[o + i]);
    }
    /* value residual */
    if (c->layer == 0) {
        memcpy(cb->vfirst + ro, v, (size_t)N * sizeof(float));
    } else {
        const float *vf = cb->vfirst + ro;
        vm_sigmoid_add(ly->v0 + o, cb->vres + ro, sg, N);
        for (int i = 0; i < N; i++)
            v[i] = v[i] + (vf[i] - v[i]) * sg[i];
    }
    /* WKV: S[i][j], i = value index, j = key index */
    float *S = layer_state(cb, cb->row_slot[b], c->layer) + C + (size_t)h * N * N;
    wkv_head(S, N, kk, ab, kt, w, v, r, y);
    /* GroupNorm over the head, bonus, gate */
    const float mean = vm_dot(y, NULL, N) / (float)N;
    for (int i = 0; i < N; i++) {
        kk[i] = y[i] - mean; /* kk is free now: centred y */
        ab[i] = r[i] * kt[i];
    }
    const float var = vm_dot(kk, kk, N) / (float)N;
    float ginv = 1.0f / sqrtf(var + GN_EPS);
    float beta = vm_dot(ab, ly->r_k + o, N);
    const float *g = cb->g + ro;
    for (int i = 0; i < N; i++) {
        float yn = kk[i] * ginv * ly->lnx_w[o + i] + ly->lnx_b[o + i];
        y[i] = (yn + beta * v[i]) * g[i];
    }
}

static void wkv_worker(void *arg, int tid, int n_threads)
{
    wkv_ctx *c = arg;
    const cpu_backend *cb = c->cb;
    const int H = cb->m->dims.n_head;
    const int units = cb->n_runs * H;
    (void)tid;
    (void)n_threads;
    /* a unit is one head of one run: the run's rows go through that head's state in order */
    for (;;) {
        int u = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (u >= units)
            return;
        const int run = u / H, h = u % H;
        for (int b = cb->run_start[run]; b < cb->run_start[run] + cb->run_len[run]; b++)
            head_row(c, b, h);
    }
}

/* ---- per-row passes (LayerNorm, token shift) ------------------------------------------ */

enum { PASS_LN1, PASS_MIX_ATT, PASS_LN2, PASS_MIX_FFN };

typedef struct {
    cpu_backend *cb;
    const rwkv_layer *ly;
    int layer, R, pass;
    atomic_int next;
} rows_ctx;

/* Token shift: mix = u + (prev - u) * mu, where prev is the previous row of the same slot
 * (sequence mode) or the slot's stored shift state. */
static void row_work(rows_ctx *c, int b)
{
    cpu_backend *cb = c->cb;
    const rwkv_layer *ly = c->ly;
    const rwkv_dims *d = &cb->m->dims;
    const int C = d->n_embd;
    const size_t ro = (size_t)b * C;
    const float *u = cb->u + ro;
    const float *st = layer_state(cb, cb->row_slot[b], c->layer);
    switch (c->pass) {
    case PASS_LN1:
        layer_norm(cb->x + ro, ly->ln1_w, ly->ln1_b, cb->u + ro, C);
        break;
    case PASS_LN2:
        layer_norm(cb->x + ro, ly->ln2_w, ly->ln2_b, cb->u + ro, C);
        break;
    case PASS_MIX_ATT: {
        const float *p = cb->row_prev[b] >= 0 ? cb->u + (size_t)cb->row_prev[b] * C : st;
        for (int i = 0; i < C; i++) {
            float dl = p[i] - u[i];
            cb->xr[ro + i] = u[i] + dl * ly->x_r[i];
            cb->xw[ro + i] = u[i] + dl * ly->x_w[i];
            cb->xk[ro + i] = u[i] + dl * ly->x_k[i];
            cb->xv[ro + i] = u[i] + dl * ly->x_v[i];
            cb->xa[ro + i] = u[i] + dl * ly->x_a[i];
            cb->xg[ro + i] = u[i] + dl * ly->x_g[i];
        }
        break;
    }
    case PASS_MIX_FFN: {
        const float *p = cb->row_prev[b] >= 0 ? cb->u + (size_t)cb->row_prev[b] * C : st + cb->layer_floats - C;
        for (int i = 0; i < C; i++)
            cb->xk[ro + i] = u[i] + (p[i] - u[i]) * ly->ffn_x_k[i];
        break;
    }
    }
}

static void rows_worker(void *arg, int tid, int n_threads)
{
    rows_ctx *c = arg;
    (void)tid;
    (void)n_threads;
    for (int b; (b = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed)) < c->R;)
        row_work(c, b);
}

static void rows_pass(cpu_backend *cb, const rwkv_layer *ly, int layer, int R, int pass)
{
    rows_ctx c = {cb, ly, layer, R, pass, 0};
    atomic_init(&c.next, 0);
    if (R < 4)
        rows_worker(&c, 0, 1);
    else
        rwkv_pool_run(cb->pool, rows_worker, &c);
}

/* ---- the forward pass over R rows ----------------------------------------------------- */

static void forward(cpu_backend *cb, int R, const int32_t *tokens)
{
    if (cb->m->dims.arch != RWKV_ARCH_X070) {
        rwkv_cpu_forward_legacy(cb, R, tokens);
        return;
    }
    const rwkv_model *m = cb->m;
    const rwkv_dims *d = &m->dims;
    const int C = d->n_embd, F = d->n_ffn;
    const int md = cb->max_d;

    for (int b = 0; b < R; b++)
        memcpy(cb->x + (size_t)b * C, m->emb + (size_t)tokens[b] * C, (size_t)C * sizeof(float));

    for (int l = 0; l < d->n_layer; l++) {
        const rwkv_layer *ly = &m->layers[l];
        /* time mix: LN1, shift, six mixes (row b's shift may read row b-1's LN output, so
         * the two passes are separate parallel regions) */
        rows_pass(cb, ly, l, R, PASS_LN1);
        rows_pass(cb, ly, l, R, PASS_MIX_ATT);
        /* new shift state = LN1 output of the slot's last row */
        for (int b = 0; b < R; b++)
            if (cb->row_last[b])
                memcpy(layer_state(cb, cb->row_slot[b], l), cb->u + (size_t)b * C,
                       (size_t)C * sizeof(float));
        {
            gemm_job jobs[] = {
                {&ly->rw, cb->xr, C, cb->r, C, NULL, R, GEMM_ACT_NONE, 0, 0},
                {&ly->kw, cb->xk, C, cb->k, C, NULL, R, GEMM_ACT_NONE, 0, 0},
                {&ly->vw, cb->xv, C, cb->v, C, NULL, R, GEMM_ACT_NONE, 0, 0},
                {&ly->w1, cb->xw, C, cb->hw, md, NULL, R, GEMM_ACT_TANH, 0, 0},
                {&ly->a1, cb->xa, C, cb->ha, md, NULL, R, GEMM_ACT_NONE, 0, 0},
                {&ly->g1, cb->xg, C, cb->hg, md, NULL, R, GEMM_ACT_SIGMOID, 0, 0},
                {&ly->v1, cb->xv, C, cb->hv, md, NULL, R, GEMM_ACT_NONE, 0, 0},
            };
            rwkv_gemm_run(cb->pool, cb->ws, jobs, l == 0 ? 6 : 7);
        }
        {
            gemm_job jobs[] = {
                {&ly->w2, cb->hw, md, cb->z, C, NULL, R, GEMM_ACT_NONE, 0, 0},
                {&ly->a2, cb->ha, md, cb->a, C, NULL, R, GEMM_ACT_NONE, 0, 0},
                {&ly->g2, cb->hg, md, cb->g, C, NULL, R, GEMM_ACT_NONE, 0, 0},
                {&ly->v2, cb->hv, md, cb->vres, C, NULL, R, GEMM_ACT_NONE, 0, 0},
            };
            rwkv_gemm_run(cb->pool, cb->ws, jobs, l == 0 ? 3 : 4);
        }
        {
            wkv_ctx c = {cb, ly, l, R, 0};
            atomic_init(&c.next, 0);
            rwkv_pool_run(cb->pool, wkv_worker, &c);
        }
        {
            gemm_job j = {&ly->ow, cb->y, C, cb->x, C, NULL, R, GEMM_ACT_NONE, 1, 0};
            rwkv_gemm_run(cb->pool, cb->ws, &j, 1);
        }
        /* channel mix */
        rows_pass(cb, ly, l, R, PASS_LN2);
        rows_pass(cb, ly, l, R, PASS_MIX_FFN);
        for (int b = 0; b < R; b++)
            if (cb->row_last[b])
                memcpy(layer_state(cb, cb->row_slot[b], l) + cb->layer_floats - C,
                       cb->u + (size_t)b * C, (size_t)C * sizeof(float));
        {
            gemm_job j = {&ly->ffn_k, cb->xk, C, cb->ffh, F, NULL, R, GEMM_ACT_RELU_SQ, 0, 0};
            rwkv_gemm_run(cb->pool, cb->ws, &j, 1);
        }
        {
            gemm_job j = {&ly->ffn_v, cb->ffh, F, cb->x, C, NULL, R, GEMM_ACT_NONE, 1, 1};
            rwkv_gemm_run(cb->pool, cb->ws, &j, 1);
        }
    }
    for (int b = 0; b < R; b++)
        layer_norm(cb->x + (size_t)b * C, m->ln_out_w, m->ln_out_b, cb->lnout + (size_t)b * C, C);
}

/* The vocabulary head for the rows listed (compacted into cb->u as GEMM input). */
static void head(cpu_backend *cb, const int *rows, float *const *outs, int n)
{
    const int C = cb->m->dims.n_embd;
    if (n == 0)
        return;
    for (int i = 0; i < n; i++)
        memcpy(cb->u + (size_t)i * C, cb->lnout + (size_t)rows[i] * C, (size_t)C * sizeof(float));
    gemm_job j = {&cb->m->head, cb->u, C, NULL, 0, outs, n, GEMM_ACT_NONE, 0, 0};
    rwkv_gemm_run(cb->pool, cb->ws, &j, 1);
}

static int cpu_forward(rwkv_backend *be, const rwkv_row *in, int n)
{
    cpu_backend *cb = (cpu_backend *)be;
    const int C = cb->m->dims.n_embd;
    int *rows = cb->rows, nl = 0;
    cb->n_runs = 0;
    for (int i = 0; i < n && !cb->out_logits; i++) {
        if (in[i].logits == RWKV_OUT_ENGINE &&
            !(cb->out_logits = malloc((size_t)cb->max_rows * cb->m->dims.n_vocab * sizeof(float))))
            return -ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        cb->row_slot[i] = in[i].slot;
        cb->row_prev[i] = in[i].prev;
        cb->tokens[i] = in[i].token;
        if (in[i].prev < 0) {
            cb->run_start[cb->n_runs] = i;
            cb->run_len[cb->n_runs++] = 0;
        }
        cb->run_len[cb->n_runs - 1]++;
        cb->row_last[i] = i + 1 == n || in[i + 1].prev < 0;
    }
    forward(cb, n, cb->tokens);
    for (int i = 0; i < n; i++) {
        if (in[i].hidden && in[i].hidden != RWKV_OUT_ENGINE) /* engine-held: stays in lnout */
            memcpy(in[i].hidden, cb->lnout + (size_t)i * C, (size_t)C * sizeof(float));
        if (in[i].logits) {
            rows[nl] = i;
            cb->logit_rows[nl++] =
                in[i].logits == RWKV_OUT_ENGINE ? cb->out_logits + (size_t)i * cb->m->dims.n_vocab : in[i].logits;
        }
    }
    head(cb, rows, cb->logit_rows, nl);
    return 0;
}

static const float *cpu_output(rwkv_backend *be, int row, int what)
{
    cpu_backend *cb = (cpu_backend *)be;
    return what ? cb->lnout + (size_t)row * cb->m->dims.n_embd
                : cb->out_logits + (size_t)row * cb->m->dims.n_vocab;
}

static int cpu_state_reset(rwkv_backend *be, int slot)
{
    cpu_backend *cb = (cpu_backend *)be;
    float *s = state_of(cb, slot);
    memset(s, 0, cb->state_floats * sizeof(float));
    if (cb->m->dims.arch == RWKV_ARCH_V4) {
        /* the running maximum pp starts far below any key, so the first token's weight is 1 */
        const int C = cb->m->dims.n_embd;
        for (int l = 0; l < cb->m->dims.n_layer; l++)
            for (int i = 0; i < C; i++)
                s[(size_t)l * cb->layer_floats + 3 * (size_t)C + i] = -1e30f;
    }
    return 0;
}

static int cpu_state_copy(rwkv_backend *be, int dst, int src)
{
    cpu_backend *cb = (cpu_backend *)be;
    memcpy(state_of(cb, dst), state_of(cb, src), cb->state_floats * sizeof(float));
    return 0;
}

/* The in-memory layout is the portable one (little-endian hosts only; see meson.build). */
static int cpu_state_export(rwkv_backend *be, int slot, void *buf)
{
    cpu_backend *cb = (cpu_backend *)be;
    memcpy(buf, state_of(cb, slot), cb->state_floats * sizeof(float));
    return 0;
}

static int cpu_state_import(rwkv_backend *be, int slot, const void *buf)
{
    cpu_backend *cb = (cpu_backend *)be;
    memcpy(state_of(cb, slot), buf, cb->state_floats * sizeof(float));
    return 0;
}

static void cpu_destroy(rwkv_backend *be)
{
    cpu_backend *cb = (cpu_backend *)be;
    rwkv_pool_destroy(&cb->pool);
    free(cb->states);
    free(cb->x); /* one block holds all float scratch */
    free(cb->row_slot);
    free(cb->row_last);
    free(cb->logit_rows);
    free(cb->out_logits);
    free(cb);
}

static const rwkv_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .forward = cpu_forward,
    .state_reset = cpu_state_reset,
    .state_copy = cpu_state_copy,
    .state_export = cpu_state_export,
    .state_import = cpu_state_import,
    .output = cpu_output,
};

int rwkv_cpu_backend_new(const rwkv_model *m, const rwkv_engine_opts *opts, rwkv_backend **out, char *err, size_t err_len)
{
    const rwkv_dims *d = &m->dims;
    if (d->head_size > 512) {
        if (err && err_len)
            snprintf(err, err_len, "cpu backend: head_size %d exceeds 512", d->head_size);
        return -EINVAL;
    }
    cpu_backend *cb = calloc(1, sizeof *cb);
    if (!cb)
        return -ENOMEM;
    cb->base.ops = &cpu_ops;
    cb->m = m;
    cb->n_slots = opts->n_slots;
    cb->max_rows = opts->max_batch;
    cb->state_floats = rwkv_state_floats(d);
    cb->layer_floats = cb->state_floats / (size_t)d->n_layer;
    int md = d->d_w;
    if (d->d_a > md) md = d->d_a;
    if (d->d_v > md) md = d->d_v;
    if (d->d_g > md) md = d->d_g;
    if (5 * d->d_mix > md) md = 5 * d->d_mix;
    cb->max_d = md;
    const size_t R = (size_t)cb->max_rows, C = (size_t)d->n_embd;
    size_t total = R * C * 20 + R * (size_t)md * 4 + R * (size_t)d->n_ffn;
    size_t ws_cols = 7 * C > (size_t)d->n_ffn ? 7 * C : (size_t)d->n_ffn;
    if (4 * (size_t)md > ws_cols)
        ws_cols = 4 * (size_t)md;
    size_t ws_floats = rwkv_gemm_workspace_floats(cb->max_rows, (int)ws_cols);
    total += ws_floats;
    cb->states = calloc((size_t)cb->n_slots * cb->state_floats, sizeof(float));
    float *s = calloc(total, sizeof(float));
    cb->row_slot = calloc(6 * R, sizeof(int));
    cb->row_last = calloc(R, 1);
    cb->logit_rows = calloc(R, sizeof(float *));
    cb->pool = rwkv_pool_new(opts->n_threads);
    if (!cb->states || !s || !cb->row_slot || !cb->row_last || !cb->logit_rows || !cb->pool) {
        free(s);
        cb->x = NULL;
        cpu_destroy(&cb->base);
        if (err && err_len)
            snprintf(err, err_len, "cpu backend: cannot allocate %zu state slots of %zu bytes",
                     (size_t)opts->n_slots, cb->state_floats * sizeof(float));
        return -ENOMEM;
    }
    cb->row_prev = cb->row_slot + R;
    cb->rows = cb->row_slot + 2 * R;
    cb->tokens = (int32_t *)(cb->row_slot + 3 * R);
    cb->run_start = cb->row_slot + 4 * R;
    cb->run_len = cb->row_slot + 5 * R;
    float **bufs[] = {&cb->x, &cb->u, &cb->xr, &cb->xw, &cb->xk, &cb->xv, &cb->xa, &cb->xg, &cb->r, &cb->k,
                      &cb->v, &cb->z, &cb->a, &cb->g, &cb->vres, &cb->vfirst, &cb->y, &cb->lnout};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++, s += R * C)
        *bufs[i] = s;
    cb->hw = s; s += R * md;
    cb->ha = s; s += R * md;
    cb->hv = s; s += R * md;
    cb->hg = s; s += R * md;
    cb->ffh = s;
    s += R * (size_t)d->n_ffn;
    cb->ws = s;
    for (int i = 0; i < cb->n_slots; i++)
        cpu_state_reset(&cb->base, i);
    *out = &cb->base;
    return 0;
}
