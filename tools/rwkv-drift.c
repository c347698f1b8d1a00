/* rwkv-drift — how far a channel that lives for months drifts: one stream of N tokens through
 * the engine (fp32, the backend asked for) and, beside it, through an independent float64
 * evaluation of the same RWKV-7 step (spec §2, written here from the spec, sharing nothing
 * with the backends but the loaded weights), both carrying their own state from token 0.
 *
 * At checkpoints (every power of ten from --first, and the last token) it prints: the
 * largest |value| of the engine's state and of the float64 state, the largest difference
 * between the two states, and the largest difference between their logits; at the end the
 * rates of both sides. Exit status 1 when --max-diff is given and a logits difference
 * exceeds it (the test suite runs a short stream that way), 2 on bad usage or input, 77 when
 * the backend cannot run on this machine.
 *
 * Tokens come from a seeded generator over the vocabulary, or from a file of text bytes
 * (--text; byte vocabularies only: each byte is its token id), cycled.
 * The embedding is taken as loaded (ln0 folded in float32 at load), so both sides start
 * from identical inputs; everything after that is float64 on the reference side.
 *
 * Usage: rwkv-drift MODEL.pth [--tokens N] [--first N] [--seed S] [--text FILE]
 *                   [--backend NAME] [--weights f32|stored] [--max-diff X]
 */
#include "../kernels/model.h"
#include "rwkv.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the float64 model and step ------------------------------------------------------- */

typedef struct {
    const double *v;
    int rows, cols;
} dmat;

typedef struct {
    const double *ln1_w, *ln1_b, *x_r, *x_w, *x_k, *x_v, *x_a, *x_g, *w0, *a0, *v0;
    dmat w1, w2, a1, a2, v1, v2, g1, g2;
    const double *k_k, *k_a, *r_k;
    dmat rw, kw, vw, ow;
    const double *lnx_w, *lnx_b, *ln2_w, *ln2_b, *ffn_x_k;
    dmat ffn_k, ffn_v;
} dlayer;

typedef struct {
    int L, C, H, N, F, V;
    const double *emb, *ln_out_w, *ln_out_b;
    dmat head;
    dlayer *ly;
    double *state; /* per layer p_att[C], S[H][N][N], p_ffn[C]: the engine's export layout */
    /* scratch */
    double *x, *u, *xr, *xw, *xk, *xv, *xa, *xg, *r, *k, *v, *z, *a, *g, *vres, *vfirst, *y, *h, *ffh, *logits;
} dmodel;

/* Every buffer of the tool, freed together at exit (free_all). */
static void **g_allocs;
static size_t g_n_allocs, g_cap_allocs;

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz);
    if (p && g_n_allocs == g_cap_allocs) {
        size_t cap = g_cap_allocs ? 2 * g_cap_allocs : 256;
        void **v = realloc(g_allocs, cap * sizeof *v);
        if (!v) {
            free(p);
            p = NULL;
        } else {
            g_allocs = v;
            g_cap_allocs = cap;
        }
    }
    if (!p) {
        fprintf(stderr, "rwkv-drift: out of memory\n");
        exit(2);
    }
    g_allocs[g_n_allocs++] = p;
    return p;
}

static void free_all(void)
{
    for (size_t i = 0; i < g_n_allocs; i++)
        free(g_allocs[i]);
    free(g_allocs);
    g_allocs = NULL;
    g_n_allocs = g_cap_allocs = 0;
}

static const double *dvec(const float *f, int n)
{
    if (!f)
        return NULL;
    double *d = xcalloc((size_t)n, sizeof *d);
    for (int i = 0; i < n; i++)
        d[i] = f[i];
    return d;
}

static dmat dmatrix(const rwkv_mat *m)
{
    dmat d = {NULL, m->rows, m->cols};
    if (!m->data)
        return d;
    double *v = xcalloc((size_t)m->rows * m->cols, sizeof *v);
    float *row = xcalloc((size_t)m->cols, sizeof *row); /* freed with the rest at exit */
    for (int r = 0; r < m->rows; r++) {
        rwkv_mat_get_row(m, r, row);
        for (int c = 0; c < m->cols; c++)
            v[(size_t)r * m->cols + c] = row[c];
    }
    d.v = v;
    return d;
}

/* out = W · in (W rows × cols) */
static void mv(const dmat *w, const double *in, double *out)
{
    for (int r = 0; r < w->rows; r++) {
        const double *wr = w->v + (size_t)r * w->cols;
        double s = 0;
        for (int c = 0; c < w->cols; c++)
            s += wr[c] * in[c];
        out[r] = s;
    }
}

static void layer_norm(const double *x, const double *w, const double *b, double *out, int n, double eps)
{
    double mean = 0, var = 0;
    for (int i = 0; i < n; i++)
        mean += x[i];
    mean /= n;
    for (int i = 0; i < n; i++)
        var += (x[i] - mean) * (x[i] - mean);
    var /= n;
    const double inv = 1.0 / sqrt(var + eps);
    for (int i = 0; i < n; i++)
        out[i] = (x[i] - mean) * inv * w[i] + b[i];
}

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

static void dmodel_init(dmodel *d, const rwkv_model *m)
{
    const rwkv_dims *dm = rwkv_model_dims(m);
    d->L = dm->n_layer;
    d->C = dm->n_embd;
    d->H = dm->n_head;
    d->N = dm->head_size;
    d->F = dm->n_ffn;
    d->V = dm->n_vocab;
    const int C = d->C;
    d->emb = dvec(m->emb, d->V * C);
    d->ln_out_w = dvec(m->ln_out_w, C);
    d->ln_out_b = dvec(m->ln_out_b, C);
    d->head = dmatrix(&m->head);
    d->ly = xcalloc((size_t)d->L, sizeof *d->ly);
    for (int l = 0; l < d->L; l++) {
        const rwkv_layer *s = &m->layers[l];
        dlayer *t = &d->ly[l];
        t->ln1_w = dvec(s->ln1_w, C), t->ln1_b = dvec(s->ln1_b, C);
        t->x_r = dvec(s->x_r, C), t->x_w = dvec(s->x_w, C), t->x_k = dvec(s->x_k, C);
        t->x_v = dvec(s->x_v, C), t->x_a = dvec(s->x_a, C), t->x_g = dvec(s->x_g, C);
        t->w0 = dvec(s->w0, C), t->a0 = dvec(s->a0, C), t->v0 = l ? dvec(s->v0, C) : NULL;
        t->w1 = dmatrix(&s->w1), t->w2 = dmatrix(&s->w2), t->a1 = dmatrix(&s->a1), t->a2 = dmatrix(&s->a2);
        if (l) {
            t->v1 = dmatrix(&s->v1);
            t->v2 = dmatrix(&s->v2);
        }
        t->g1 = dmatrix(&s->g1), t->g2 = dmatrix(&s->g2);
        t->k_k = dvec(s->k_k, C), t->k_a = dvec(s->k_a, C), t->r_k = dvec(s->r_k, C);
        t->rw = dmatrix(&s->rw), t->kw = dmatrix(&s->kw), t->vw = dmatrix(&s->vw), t->ow = dmatrix(&s->ow);
        t->lnx_w = dvec(s->lnx_w, C), t->lnx_b = dvec(s->lnx_b, C);
        t->ln2_w = dvec(s->ln2_w, C), t->ln2_b = dvec(s->ln2_b, C), t->ffn_x_k = dvec(s->ffn_x_k, C);
        t->ffn_k = dmatrix(&s->ffn_k), t->ffn_v = dmatrix(&s->ffn_v);
    }
    const size_t sf = (size_t)d->L * (2 * (size_t)C + (size_t)d->H * d->N * d->N);
    d->state = xcalloc(sf, sizeof(double));
    double **bufs[] = {&d->x, &d->u, &d->xr, &d->xw, &d->xk, &d->xv, &d->xa, &d->xg, &d->r, &d->k,
                       &d->v, &d->z, &d->a, &d->g, &d->vres, &d->vfirst, &d->y, &d->h};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        *bufs[i] = xcalloc((size_t)(C > 4096 ? C : 4096), sizeof(double));
    d->ffh = xcalloc((size_t)d->F, sizeof(double));
    d->logits = xcalloc((size_t)d->V, sizeof(double));
}

/* One token through every layer (spec §2.3-2.5); logits when want_logits. */
static void dstep(dmodel *d, int token, int want_logits)
{
    const int C = d->C, H = d->H, N = d->N;
    const size_t lf = 2 * (size_t)C + (size_t)H * N * N;
    memcpy(d->x, d->emb + (size_t)token * C, (size_t)C * sizeof(double));
    for (int l = 0; l < d->L; l++) {
        const dlayer *ly = &d->ly[l];
        double *st = d->state + (size_t)l * lf, *p_att = st, *S0 = st + C, *p_ffn = st + lf - C;
        layer_norm(d->x, ly->ln1_w, ly->ln1_b, d->u, C, 1e-5);
        for (int i = 0; i < C; i++) {
            const double u = d->u[i], dl = p_att[i] - u;
            d->xr[i] = u + dl * ly->x_r[i];
            d->xw[i] = u + dl * ly->x_w[i];
            d->xk[i] = u + dl * ly->x_k[i];
            d->xv[i] = u + dl * ly->x_v[i];
            d->xa[i] = u + dl * ly->x_a[i];
            d->xg[i] = u + dl * ly->x_g[i];
            p_att[i] = u;
        }
        mv(&ly->rw, d->xr, d->r);
        mv(&ly->kw, d->xk, d->k);
        mv(&ly->vw, d->xv, d->v);
        mv(&ly->w1, d->xw, d->h);
        for (int i = 0; i < ly->w1.rows; i++)
            d->h[i] = tanh(d->h[i]);
        mv(&ly->w2, d->h, d->z);
        mv(&ly->a1, d->xa, d->h);
        mv(&ly->a2, d->h, d->a);
        mv(&ly->g1, d->xg, d->h);
        for (int i = 0; i < ly->g1.rows; i++)
            d->h[i] = sigmoid(d->h[i]);
        mv(&ly->g2, d->h, d->g);
        if (l) {
            mv(&ly->v1, d->xv, d->h);
            mv(&ly->v2, d->h, d->vres);
        }
        for (int h = 0; h < H; h++) {
            const int o = h * N;
            double kk[4096], kt[4096], w[4096], ab[4096];
            double nrm = 0;
            for (int i = 0; i < N; i++) {
                kk[i] = d->k[o + i] * ly->k_k[o + i];
                nrm += kk[i] * kk[i];
            }
            nrm = sqrt(nrm);
            const double inv = 1.0 / (nrm > 1e-12 ? nrm : 1e-12);
            for (int i = 0; i < N; i++) {
                const double sg = sigmoid(ly->a0[o + i] + d->a[o + i]);
                kk[i] *= inv;
                ab[i] = kk[i] * sg;
                kt[i] = d->k[o + i] * (1.0 + (sg - 1.0) * ly->k_a[o + i]);
                w[i] = exp(-exp(-0.5) * sigmoid(ly->w0[o + i] + d->z[o + i]));
            }
            double *v = d->v + o;
            if (l == 0)
                memcpy(d->vfirst + o, v, (size_t)N * sizeof(double));
            else
                for (int i = 0; i < N; i++)
                    v[i] += (d->vfirst[o + i] - v[i]) * sigmoid(ly->v0[o + i] + d->vres[o + i]);
            double *S = S0 + (size_t)h * N * N, *y = d->y + o;
            const double *r = d->r + o;
            for (int i = 0; i < N; i++) {
                double *Si = S + (size_t)i * N, s = 0, yi = 0;
                for (int j = 0; j < N; j++)
                    s += Si[j] * kk[j];
                for (int j = 0; j < N; j++) {
                    Si[j] = Si[j] * w[j] - s * ab[j] + v[i] * kt[j];
                    yi += Si[j] * r[j];
                }
                y[i] = yi;
            }
            double mean = 0, var = 0, beta = 0;
            for (int i = 0; i < N; i++)
                mean += y[i];
            mean /= N;
            for (int i = 0; i < N; i++)
                var += (y[i] - mean) * (y[i] - mean);
            var /= N;
            const double ginv = 1.0 / sqrt(var + 64e-5);
            for (int i = 0; i < N; i++)
                beta += r[i] * kt[i] * ly->r_k[o + i];
            for (int i = 0; i < N; i++)
                y[i] = ((y[i] - mean) * ginv * ly->lnx_w[o + i] + ly->lnx_b[o + i] + beta * v[i]) * d->g[o + i];
        }
        mv(&ly->ow, d->y, d->u);
        for (int i = 0; i < C; i++)
            d->x[i] += d->u[i];
        layer_norm(d->x, ly->ln2_w, ly->ln2_b, d->u, C, 1e-5);
        for (int i = 0; i < C; i++) {
            d->xk[i] = d->u[i] + (p_ffn[i] - d->u[i]) * ly->ffn_x_k[i];
            p_ffn[i] = d->u[i];
        }
        mv(&ly->ffn_k, d->xk, d->ffh);
        for (int i = 0; i < d->F; i++) {
            const double t = d->ffh[i] > 0 ? d->ffh[i] : 0;
            d->ffh[i] = t * t;
        }
        mv(&ly->ffn_v, d->ffh, d->u);
        for (int i = 0; i < C; i++)
            d->x[i] += d->u[i];
    }
    if (want_logits) {
        layer_norm(d->x, d->ln_out_w, d->ln_out_b, d->u, C, 1e-5);
        mv(&d->head, d->u, d->logits);
    }
}

/* ---- driver --------------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void usage(void)
{
    fprintf(stderr, "usage: rwkv-drift MODEL.pth [--tokens N] [--first N] [--seed S] [--text FILE] "
                    "[--backend NAME] [--weights f32|stored] [--max-diff X]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-')
        usage();
    const char *path = argv[1], *text_path = NULL, *backend = "cpu";
    unsigned long long n_tokens = 10000000ull, first = 1000;
    uint64_t seed = 1;
    double max_diff = -1;
    rwkv_weights weights = RWKV_WEIGHTS_F32;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (!strcmp(a, "--tokens"))
            n_tokens = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--first"))
            first = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--seed"))
            seed = strtoull(v, NULL, 10) | 1;
        else if (!strcmp(a, "--text"))
            text_path = v;
        else if (!strcmp(a, "--backend"))
            backend = v;
        else if (!strcmp(a, "--max-diff"))
            max_diff = strtod(v, NULL);
        else if (!strcmp(a, "--weights") && (!strcmp(v, "f32") || !strcmp(v, "stored")))
            weights = !strcmp(v, "f32") ? RWKV_WEIGHTS_F32 : RWKV_WEIGHTS_STORED;
        else
            usage();
        i++;
    }
    if (n_tokens == 0 || first == 0)
        usage();
    char err[512];
    rwkv_model *m = NULL;
    rwkv_load_opts lo = {weights};
    atexit(free_all);
    if (rwkv_model_load(path, &lo, &m, err, sizeof err)) {
        fprintf(stderr, "rwkv-drift: %s\n", err);
        return 2;
    }
    const rwkv_dims *dm = rwkv_model_dims(m);
    unsigned char *text = NULL;
    size_t text_len = 0;
    if (text_path) {
        FILE *f = fopen(text_path, "rb");
        if (!f) {
            fprintf(stderr, "rwkv-drift: %s: %s\n", text_path, strerror(errno));
            rwkv_model_destroy(&m);
            return 2;
        }
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        text = xcalloc((size_t)(n > 0 ? n : 1), 1);
        text_len = n > 0 ? fread(text, 1, (size_t)n, f) : 0;
        fclose(f);
        if (text_len == 0 || dm->n_vocab < 256) {
            fprintf(stderr, "rwkv-drift: %s: empty, or the vocabulary (%d) is not a byte vocabulary\n", text_path,
                    dm->n_vocab);
            rwkv_model_destroy(&m);
            return 2;
        }
    }
    rwkv_engine_opts eo = {backend, 1, 1, 1};
    rwkv_engine *e = NULL;
    int erc = rwkv_engine_new(m, &eo, &e, err, sizeof err);
    if (erc) {
        fprintf(stderr, "rwkv-drift: %s\n", err);
        rwkv_model_destroy(&m);
        return erc == -ENODEV ? 77 : 2; /* 77: the backend cannot run on this machine (a skip) */
    }
    dmodel d = {0};
    dmodel_init(&d, m);
    const size_t sb = rwkv_engine_state_bytes(e), sf = sb / sizeof(float);
    float *st = xcalloc(sf, sizeof(float)), *logits = xcalloc((size_t)dm->n_vocab, sizeof(float));
    printf("rwkv-drift: %s L%d C%d H%d N%d V%d, backend %s, %llu tokens (%s)\n", path, dm->n_layer, dm->n_embd,
           dm->n_head, dm->head_size, dm->n_vocab, rwkv_engine_backend(e), n_tokens,
           text_path ? text_path : "seeded random tokens");
    printf("%12s %14s %14s %14s %14s\n", "tokens", "max|state|", "max|state64|", "max|dstate|", "max|dlogits|");
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull | 1;
    unsigned long long next_cp = first;
    double t_engine = 0, t_ref = 0, worst = 0;
    int rc = 0;
    for (unsigned long long t = 1; t <= n_tokens; t++) {
        const int32_t tok = text ? text[(t - 1) % text_len] : (int32_t)(xorshift(&rng) % (uint64_t)dm->n_vocab);
        const int cp = t == next_cp || t == n_tokens;
        rwkv_step_item it = {0, tok, NULL, cp ? logits : NULL};
        double t0 = now_s();
        if ((rc = rwkv_engine_step(e, &it, 1))) {
            fprintf(stderr, "rwkv-drift: step %llu: %s %s\n", t, strerror(-rc), rwkv_engine_last_error(e));
            rwkv_engine_destroy(&e);
            rwkv_model_destroy(&m);
            return 2;
        }
        double t1 = now_s();
        dstep(&d, tok, cp);
        t_ref += now_s() - t1;
        t_engine += t1 - t0;
        if (!cp)
            continue;
        if (t == next_cp)
            next_cp = next_cp > n_tokens / 10 ? n_tokens : next_cp * 10;
        rwkv_engine_state_export(e, 0, st, sb);
        double ms = 0, md = 0, dd = 0, dl = 0;
        for (size_t i = 0; i < sf; i++) {
            ms = fmax(ms, fabs((double)st[i]));
            md = fmax(md, fabs(d.state[i]));
            dd = fmax(dd, fabs((double)st[i] - d.state[i]));
            if (!isfinite(st[i]))
                ms = dd = INFINITY;
        }
        for (int i = 0; i < dm->n_vocab; i++)
            dl = fmax(dl, isfinite(logits[i]) ? fabs((double)logits[i] - d.logits[i]) : INFINITY);
        worst = fmax(worst, dl);
        printf("%12llu %14.6g %14.6g %14.6g %14.6g\n", t, ms, md, dd, dl);
        fflush(stdout);
    }
    printf("rates: engine %.0f tok/s (single stream, one token per call), float64 reference %.0f tok/s\n",
           (double)n_tokens / t_engine, (double)n_tokens / t_ref);
    if (max_diff >= 0) {
        printf("largest logits difference %.3g, bound %.3g: %s\n", worst, max_diff, worst <= max_diff ? "ok" : "FAIL");
        rc = worst <= max_diff ? 0 : 1;
    }
    rwkv_engine_destroy(&e);
    rwkv_model_destroy(&m);
    return rc;
}
