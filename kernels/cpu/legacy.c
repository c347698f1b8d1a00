/* legacy.c — the CPU backend's step for the older generations: RWKV-4, RWKV-5 (5.0, 5.1,
 * 5.2) and RWKV-6, in fp32, for a batch of rows grouped in runs exactly like ref.c.
 *
 * Per layer: LayerNorm and token-shift mixes per row; the projections as batched GEMMs
 * (gemm.c); then the recurrence per (run, head) — RWKV-5/6 — or per (run, block of
 * channels) — RWKV-4 —, each run's rows in order through the slot's state; the output
 * projection; and the channel mix, whose receptance gate is applied per row. The math is
 * tools/ref64_legacy.py's (its header lists it); RWKV-4 keeps the running maximum pp so that
 * no exp() of a raw key is ever taken. Every result depends only on its own row's inputs
 * and its slot's state, so a batch is bit-identical to single steps and sequence mode to
 * repeated steps, with any thread count. No allocation per call.
 */
#include "cpu.h"
#include "gemm.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

enum {
    P_LN1,      /* u = LN1(x) */
    P_MIX,      /* v4/v5: x_q = u*m_q + p*(1-m_q); v6: xa = u + (p-u)*maa_x */
    P_MIX6,     /* v6: x_q = u + (p-u)*(maa_q + lora_q) */
    P_WKV,      /* the recurrence, GroupNorm and gate: per (run, head or channel block) */
    P_LN2,      /* u = LN2(x) */
    P_MIX_FFN,  /* xk, xr */
    P_FFN_OUT,  /* x += r * y */
};

#define V4_BLOCK 64 /* channels per RWKV-4 work unit */

typedef struct {
    cpu_backend *cb;
    const rwkv_layer *ly;
    int layer, pass, units;
    atomic_int next;
} pass_ctx;

/* The token-shift source of row b: the previous row of its run, or the slot's stored vector
 * at offset `off` of layer l's state. */
static const float *shift_src(cpu_backend *cb, int b, int l, size_t off)
{
    const int C = cb->m->dims.n_embd;
    return cb->row_prev[b] >= 0 ? cb->u + (size_t)cb->row_prev[b] * C : layer_state(cb, cb->row_slot[b], l) + off;
}

/* RWKV-5/6, one head of one row: y_j = sum_i r_i (u_i k_i v_j + S_ij); S_ij <- k_i v_j + w_i S_ij
 * (S: N key rows of N values), then GroupNorm over the head and, from 5.1 on, the gate. */
static void wkv5_head_row(pass_ctx *c, int b, int h)
{
    cpu_backend *cb = c->cb;
    const rwkv_dims *d = &cb->m->dims;
    const rwkv_layer *ly = c->ly;
    const int C = d->n_embd, N = d->head_size, o = h * N;
    const size_t ro = (size_t)b * C + o;
    const float *r = cb->r + ro, *k = cb->k + ro, *v = cb->v + ro, *u = ly->bonus + o;
    float *y = cb->y + ro;
    float w[512];
    if (d->arch == RWKV_ARCH_V6) {
        for (int i = 0; i < N; i++)
            w[i] = expf(-expf(ly->decay[o + i] + cb->z[ro + i]));
    } else {
        memcpy(w, ly->decay + o, (size_t)N * sizeof(float));
    }
    float *S = layer_state(cb, cb->row_slot[b], c->layer) + C + (size_t)h * N * N;
    for (int j = 0; j < N; j++)
        y[j] = 0.0f;
    for (int i = 0; i < N; i++) {
        float *Si = S + (size_t)i * N;
        const float ki = k[i], ri = r[i], ui = u[i], wi = w[i];
        for (int j = 0; j < N; j++) {
            const float kv = ki * v[j];
            y[j] += ri * (ui * kv + Si[j]);
            Si[j] = kv + wi * Si[j];
        }
    }
    const float mean = vm_dot(y, NULL, N) / (float)N;
    float cen[512];
    for (int i = 0; i < N; i++)
        cen[i] = y[i] - mean;
    const float var = vm_dot(cen, cen, N) / (float)N;
    const float inv = 1.0f / sqrtf(var + GN_EPS);
    for (int i = 0; i < N; i++)
        y[i] = cen[i] * inv * ly->lnx_w[o + i] + ly->lnx_b[o + i];
    if (d->arch != RWKV_ARCH_V5_0) {
        const float *g = cb->g + ro;
        for (int i = 0; i < N; i++)
            y[i] *= g[i] / (1.0f + expf(-g[i])); /* silu */
    }
}

/* RWKV-4, channels [c0, c1) of one row, with the running maximum pp (state aa, bb, pp):
 * wkv = (e^(pp-q) aa + e^(first+k-q) v) / (e^(pp-q) bb + e^(first+k-q)), q = max(pp, first+k);
 * then aa, bb decay by e^w (w = -exp(time_decay)) against the new key, pp <- max(w+pp, k). */
static void wkv4_row(pass_ctx *c, int b, int c0, int c1)
{
    cpu_backend *cb = c->cb;
    const rwkv_layer *ly = c->ly;
    const int C = cb->m->dims.n_embd;
    const size_t ro = (size_t)b * C;
    float *st = layer_state(cb, cb->row_slot[b], c->layer);
    float *aa = st + C, *bb = st + 2 * (size_t)C, *pp = st + 3 * (size_t)C;
    for (int i = c0; i < c1; i++) {
        const float k = cb->k[ro + i], v = cb->v[ro + i];
        float ww = ly->bonus[i] + k;
        float q = pp[i] > ww ? pp[i] : ww;
        float e1 = expf(pp[i] - q), e2 = expf(ww - q);
        const float wkv = (e1 * aa[i] + e2 * v) / (e1 * bb[i] + e2);
        ww = ly->decay[i] + pp[i];
        q = ww > k ? ww : k;
        e1 = expf(ww - q);
        e2 = expf(k - q);
        aa[i] = e1 * aa[i] + e2 * v;
        bb[i] = e1 * bb[i] + e2;
        pp[i] = q;
        cb->y[ro + i] = cb->r[ro + i] * wkv;
    }
}

static void unit_work(pass_ctx *c, int unit)
{
    cpu_backend *cb = c->cb;
    const rwkv_layer *ly = c->ly;
    const rwkv_dims *d = &cb->m->dims;
    const int C = d->n_embd, l = c->layer;
    if (c->pass == P_WKV) {
        const int per_run = d->arch == RWKV_ARCH_V4 ? (C + V4_BLOCK - 1) / V4_BLOCK : d->n_head;
        const int run = unit / per_run, part = unit % per_run;
        for (int b = cb->run_start[run]; b < cb->run_start[run] + cb->run_len[run]; b++) {
            if (d->arch == RWKV_ARCH_V4)
                wkv4_row(c, b, part * V4_BLOCK, (part + 1) * V4_BLOCK < C ? (part + 1) * V4_BLOCK : C);
            else
                wkv5_head_row(c, b, part);
        }
        return;
    }
    const int b = unit;
    const size_t ro = (size_t)b * C;
    const float *u = cb->u + ro;
    switch (c->pass) {
    case P_LN1:
        layer_norm(cb->x + ro, ly->ln1_w, ly->ln1_b, cb->u + ro, C);
        break;
    case P_LN2:
        layer_norm(cb->x + ro, ly->ln2_w, ly->ln2_b, cb->u + ro, C);
        break;
    case P_MIX: {
        const float *p = shift_src(cb, b, l, 0);
        if (d->arch == RWKV_ARCH_V6) {
            for (int i = 0; i < C; i++)
                cb->xa[ro + i] = u[i] + (p[i] - u[i]) * ly->x_x[i];
            break;
        }
        for (int i = 0; i < C; i++) {
            cb->xk[ro + i] = u[i] * ly->x_k[i] + p[i] * (1.0f - ly->x_k[i]);
            cb->xv[ro + i] = u[i] * ly->x_v[i] + p[i] * (1.0f - ly->x_v[i]);
            cb->xr[ro + i] = u[i] * ly->x_r[i] + p[i] * (1.0f - ly->x_r[i]);
        }
        if (ly->x_g)
            for (int i = 0; i < C; i++)
                cb->xg[ro + i] = u[i] * ly->x_g[i] + p[i] * (1.0f - ly->x_g[i]);
        break;
    }
    case P_MIX6: {
        /* the LoRA outputs: w in z, k in a, v in vres, r in vfirst, g in y */
        const float *p = shift_src(cb, b, l, 0);
        for (int i = 0; i < C; i++) {
            const float dl = p[i] - u[i];
            cb->xw[ro + i] = u[i] + dl * (ly->x_w[i] + cb->z[ro + i]);
            cb->xk[ro + i] = u[i] + dl * (ly->x_k[i] + cb->a[ro + i]);
            cb->xv[ro + i] = u[i] + dl * (ly->x_v[i] + cb->vres[ro + i]);
            cb->xr[ro + i] = u[i] + dl * (ly->x_r[i] + cb->vfirst[ro + i]);
            cb->xg[ro + i] = u[i] + dl * (ly->x_g[i] + cb->y[ro + i]);
        }
        break;
    }
    case P_MIX_FFN: {
        const float *p = shift_src(cb, b, l, cb->layer_floats - C);
        if (d->arch == RWKV_ARCH_V6) {
            for (int i = 0; i < C; i++) {
                cb->xk[ro + i] = u[i] + (p[i] - u[i]) * ly->ffn_x_k[i];
                cb->xr[ro + i] = u[i] + (p[i] - u[i]) * ly->ffn_x_r[i];
            }
        } else {
            for (int i = 0; i < C; i++) {
                cb->xk[ro + i] = u[i] * ly->ffn_x_k[i] + p[i] * (1.0f - ly->ffn_x_k[i]);
                cb->xr[ro + i] = u[i] * ly->ffn_x_r[i] + p[i] * (1.0f - ly->ffn_x_r[i]);
            }
        }
        break;
    }
    case P_FFN_OUT:
        for (int i = 0; i < C; i++)
            cb->x[ro + i] += cb->r[ro + i] * cb->y[ro + i];
        break;
    }
}

static void pass_worker(void *arg, int tid, int n_threads)
{
    pass_ctx *c = arg;
    (void)tid;
    (void)n_threads;
    for (int u; (u = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed)) < c->units;)
        unit_work(c, u);
}

static void run_pass(cpu_backend *cb, const rwkv_layer *ly, int layer, int pass, int units)
{
    pass_ctx c = {cb, ly, layer, pass, units, 0};
    atomic_init(&c.next, 0);
    if (units < 4)
        pass_worker(&c, 0, 1);
    else
        rwkv_pool_run(cb->pool, pass_worker, &c);
}

/* After the passes that read the shift source: the slot's stored vector at `off` becomes the
 * LN output of its run's last row. */
static void store_shift(cpu_backend *cb, int R, int l, size_t off)
{
    const int C = cb->m->dims.n_embd;
    for (int b = 0; b < R; b++)
        if (cb->row_last[b])
            memcpy(layer_state(cb, cb->row_slot[b], l) + off, cb->u + (size_t)b * C, (size_t)C * sizeof(float));
}

void rwkv_cpu_forward_legacy(cpu_backend *cb, int R, const int32_t *tokens)
{
    const rwkv_model *m = cb->m;
    const rwkv_dims *d = &m->dims;
    const int C = d->n_embd, F = d->n_ffn, md = cb->max_d;
    const rwkv_arch arch = d->arch;
    const int wkv_units = cb->n_runs * (arch == RWKV_ARCH_V4 ? (C + V4_BLOCK - 1) / V4_BLOCK : d->n_head);

    for (int b = 0; b < R; b++)
        memcpy(cb->x + (size_t)b * C, m->emb + (size_t)tokens[b] * C, (size_t)C * sizeof(float));

    for (int l = 0; l < d->n_layer; l++) {
        const rwkv_layer *ly = &m->layers[l];
        run_pass(cb, ly, l, P_LN1, R);
        run_pass(cb, ly, l, P_MIX, R);
        if (arch == RWKV_ARCH_V6) {
            const int dm = d->d_mix;
            gemm_job j1 = {&ly->mix1, cb->xa, C, cb->hw, md, NULL, R, GEMM_ACT_TANH, 0, 0};
            rwkv_gemm_run(cb->pool, cb->ws, &j1, 1);
            float *outs[5] = {cb->z, cb->a, cb->vres, cb->vfirst, cb->y};
            gemm_job j2[5];
            for (int f = 0; f < 5; f++)
                j2[f] = (gemm_job){&ly->mix2[f], cb->hw + (size_t)f * dm, md, outs[f], C, NULL, R, GEMM_ACT_NONE, 0, 0};
            rwkv_gemm_run(cb->pool, cb->ws, j2, 5);
            run_pass(cb, ly, l, P_MIX6, R);
        }
        store_shift(cb, R, l, 0);
        {
            gemm_job jobs[] = {
                {&ly->rw, cb->xr, C, cb->r, C, NULL, R, arch == RWKV_ARCH_V4 ? GEMM_ACT_SIGMOID : GEMM_ACT_NONE, 0, 0},
                {&ly->kw, cb->xk, C, cb->k, C, NULL, R, GEMM_ACT_NONE, 0, 0},
                {&ly->vw, cb->xv, C, cb->v, C, NULL, R, GEMM_ACT_NONE, 0, 0},
                {&ly->gw, cb->xg, C, cb->g, C, NULL, R, GEMM_ACT_NONE, 0, 0},
                {&ly->w1, cb->xw, C, cb->ha, md, NULL, R, GEMM_ACT_TANH, 0, 0},
            };
            const int n = arch == RWKV_ARCH_V6 ? 5 : ly->gw.data ? 4 : 3;
            rwkv_gemm_run(cb->pool, cb->ws, jobs, n);
        }
        if (arch == RWKV_ARCH_V6) {
            gemm_job j = {&ly->w2, cb->ha, md, cb->z, C, NULL, R, GEMM_ACT_NONE, 0, 0};
            rwkv_gemm_run(cb->pool, cb->ws, &j, 1);
        }
        run_pass(cb, ly, l, P_WKV, wkv_units);
        {
            gemm_job j = {&ly->ow, cb->y, C, cb->x, C, NULL, R, GEMM_ACT_NONE, 1, 0};
            rwkv_gemm_run(cb->pool, cb->ws, &j, 1);
        }
        /* channel mix: x += sigmoid(Wr xr) * (Wv relu(Wk xk)^2) */
        run_pass(cb, ly, l, P_LN2, R);
        run_pass(cb, ly, l, P_MIX_FFN, R);
        store_shift(cb, R, l, cb->layer_floats - C);
        {
            gemm_job jobs[] = {
                {&ly->ffn_k, cb->xk, C, cb->ffh, F, NULL, R, GEMM_ACT_RELU_SQ, 0, 0},
                {&ly->ffn_r, cb->xr, C, cb->r, C, NULL, R, GEMM_ACT_SIGMOID, 0, 0},
            };
            rwkv_gemm_run(cb->pool, cb->ws, jobs, 2);
        }
        {
            gemm_job j = {&ly->ffn_v, cb->ffh, F, cb->y, C, NULL, R, GEMM_ACT_NONE, 0, 1};
            rwkv_gemm_run(cb->pool, cb->ws, &j, 1);
        }
        run_pass(cb, ly, l, P_FFN_OUT, R);
    }
    for (int b = 0; b < R; b++)
        layer_norm(cb->x + (size_t)b * C, m->ln_out_w, m->ln_out_b, cb->lnout + (size_t)b * C, C);
}
