/* gemm.c — batched matrix × vectors for the CPU engine (see gemm.h for the contract).
 *
 * W is packed in panels of RWKV_PANEL = 64 output rows, k-major (model.h). A tile computes
 * 64 outputs for up to BT batch rows: for each k it loads the panel's 64 weights (four
 * vectors, widened from 16 bits if needed: four independent streams of FMAs, which keeps a
 * single batch row from being latency-bound) and does one FMA per (vector, batch row) with
 * x[b][k] broadcast. So each output is a single fp32 chain over k in ascending order — the
 * same in every tile shape, thread and batch size, which makes a batch bit-identical to
 * single rows — and no horizontal reductions are needed. The weights of a panel are read
 * from memory once per step for the whole batch (re-read from L2 per batch tile).
 * A sparse_x job (the FFN value matrix, whose input is a ReLU square) lists the inputs that
 * are nonzero in some row and, when few are, the tiles step through that list instead of
 * every k: the weights of the other inputs are never read.
 * Units of work (a panel, or a panel × batch tile when panels are few) are taken from an
 * atomic counter. AVX-512 where the compiler targets it, portable C otherwise.
 */
#include "gemm.h"
#include "../half.h"
#include "vmath.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#define HAVE_AVX512 1
#else
#define HAVE_AVX512 0
#endif

#define P RWKV_PANEL /* 64 outputs per panel: 4 vectors */
#define BT 6        /* batch rows per tile: 4 x 6 accumulators + 4 weight vectors */



#if HAVE_AVX512
static inline __m512 act512(gemm_act a, __m512 x)
{
    switch (a) {
    case GEMM_ACT_NONE: return x;
    case GEMM_ACT_TANH: return vm_tanh512(x);
    case GEMM_ACT_SIGMOID: return vm_sigmoid512(x);
    case GEMM_ACT_RELU_SQ: x = _mm512_max_ps(x, _mm512_setzero_ps()); return _mm512_mul_ps(x, x);
    }
    return x;
}

#define NV (P / 16) /* vectors per panel row */

static inline __attribute__((always_inline)) __m512 load_w16(const void *w, rwkv_dtype dt, size_t at)
{
    if (dt == RWKV_DTYPE_F32)
        return _mm512_loadu_ps((const float *)w + at);
    const __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + at));
    if (dt == RWKV_DTYPE_F16)
        return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Epilogue straight from the registers: activation, optional residual add, masked stores
 * for a last panel narrower than P. */
static inline __attribute__((always_inline)) void store512(const gemm_job *j, int panel, int b0, int bt,
                                                          __m512 a[NV][BT])
{
    const int o = panel * P, n = j->w->rows - o < P ? j->w->rows - o : P;
    for (int v = 0; v < NV; v++) {
        const int nv = n - 16 * v;
        const __mmask16 m = nv >= 16 ? 0xffff : nv <= 0 ? 0 : (__mmask16)((1u << nv) - 1);
        if (!m)
            break;
        for (int c = 0; c < bt; c++) {
            float *y = (j->y_rows ? j->y_rows[b0 + c] : j->y + (size_t)(b0 + c) * j->ldy) + o + 16 * v;
            __m512 r = act512(j->act, a[v][c]);
            if (j->accumulate)
                r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, y));
            _mm512_mask_storeu_ps(y, m, r);
        }
    }
}

/* acc + w.odd * x.odd + w.even * x.even per 32-bit lane of bf16 pairs: VDPBF16PS where the
 * CPU has AVX512_BF16; otherwise the same sum from widened halves (each product is exact
 * in fp32, so only the two additions round). */
static inline __attribute__((always_inline)) __m512 dot2(__m512 acc, __m512i w, __m512i x)
{
#if defined(__AVX512BF16__)
    return _mm512_dpbf16_ps(acc, (__m512bh)w, (__m512bh)x);
#else
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    const __m512 wo = _mm512_castsi512_ps(_mm512_and_si512(w, hi)), xo = _mm512_castsi512_ps(_mm512_and_si512(x, hi));
    const __m512 we = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)), xe = _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
    return _mm512_add_ps(acc, _mm512_add_ps(_mm512_mul_ps(wo, xo), _mm512_mul_ps(we, xe)));
#endif
}

/* A tile's partial sums between k blocks: zero at the first block, else reloaded from acc;
 * after a block, saved to acc while blocks remain, else finished by store512 (saving and
 * reloading an fp32 register is exact, so blocking does not change any result). */
static inline __attribute__((always_inline)) void acc_begin(__m512 a[NV][BT], float (*acc)[P], int bt, int q0)
{
    for (int c = 0; c < bt; c++)
        for (int v = 0; v < NV; v++)
            a[v][c] = q0 ? _mm512_loadu_ps(acc[c] + 16 * v) : _mm512_setzero_ps();
}

static inline __attribute__((always_inline)) void acc_end(const gemm_job *j, int panel, int b0, int bt,
                                                         __m512 a[NV][BT], float (*acc)[P], int more)
{
    if (!more) {
        store512(j, panel, b0, bt, a);
        return;
    }
    for (int c = 0; c < bt; c++)
        for (int v = 0; v < NV; v++)
            _mm512_storeu_ps(acc[c] + 16 * v, a[v][c]);
}

/* Inputs q0..q1 (of nq) of one tile, with the partial sums of acc_begin/acc_end. */
static inline __attribute__((always_inline)) void tile(const gemm_job *j, const float *xt, int panel, int b0, int bt,
                                                      rwkv_dtype dt, const int *idx, int q0, int q1, int nq,
                                                      float (*acc)[P])
{
    const int K = j->w->cols;
    const size_t base = (size_t)panel * K * P;
    __m512 a[NV][BT];
    acc_begin(a, acc, bt, q0);
    for (int q = q0; q < q1; q++) {
        const int k = idx ? idx[q] : q;
        __m512 w[NV];
        for (int v = 0; v < NV; v++)
            w[v] = load_w16(j->w->data, dt, base + (size_t)k * P + 16 * v);
        for (int c = 0; c < bt; c++) {
            const __m512 xb = _mm512_set1_ps(xt[(size_t)k * BT + c]);
            for (int v = 0; v < NV; v++)
                a[v][c] = _mm512_fmadd_ps(w[v], xb, a[v][c]);
        }
    }
    acc_end(j, panel, b0, bt, a, acc, q1 < nq);
}

/* The same for bf16 pairs (RWKV_DTYPE_BF16X2; q indexes pairs): each 32-bit lane
 * of a weight vector holds one output's weights for inputs 2kp and 2kp+1, xt holds the
 * matching bf16 input pairs, and one dot-product instruction does both multiply-adds. */
static inline __attribute__((always_inline)) void tile_x2(const gemm_job *j, const uint32_t *xt, int panel, int b0,
                                                         int bt, const int *idx, int q0, int q1, int nq,
                                                         float (*acc)[P])
{
    const int KP = (j->w->cols + 1) / 2;
    const uint32_t *wp = (const uint32_t *)j->w->data + (size_t)panel * KP * P;
    __m512 a[NV][BT];
    acc_begin(a, acc, bt, q0);
    for (int q = q0; q < q1; q++) {
        const int k = idx ? idx[q] : q;
        __m512i w[NV];
        for (int v = 0; v < NV; v++)
            w[v] = _mm512_loadu_si512((const void *)(wp + (size_t)k * P + 16 * v));
        for (int c = 0; c < bt; c++) {
            const __m512i xb = _mm512_set1_epi32((int)xt[(size_t)k * BT + c]);
            for (int v = 0; v < NV; v++)
                a[v][c] = dot2(a[v][c], w[v], xb);
        }
    }
    acc_end(j, panel, b0, bt, a, acc, q1 < nq);
}
#else
static inline float act_apply(gemm_act a, float v)
{
    switch (a) {
    case GEMM_ACT_NONE: return v;
    case GEMM_ACT_TANH: return tanhf(v);
    case GEMM_ACT_SIGMOID: return vm_sigmoidf(v);
    case GEMM_ACT_RELU_SQ: v = v > 0 ? v : 0; return v * v;
    }
    return v;
}

/* Write n (<= 32) results of batch row b starting at output o. */
static inline void store(const gemm_job *j, int b, int o, const float *v, int n)
{
    float *y = (j->y_rows ? j->y_rows[b] : j->y + (size_t)b * j->ldy) + o;
    if (j->act == GEMM_ACT_NONE) {
        if (j->accumulate)
            for (int i = 0; i < n; i++)
                y[i] += v[i];
        else
            memcpy(y, v, (size_t)n * sizeof(float));
        return;
    }
    int i = 0;
    for (; i < n; i++) {
        float a = act_apply(j->act, v[i]);
        y[i] = j->accumulate ? y[i] + a : a;
    }
}

static inline __attribute__((always_inline)) float wval(const void *w, rwkv_dtype dt, size_t i)
{
    if (dt == RWKV_DTYPE_F32)
        return ((const float *)w)[i];
    uint16_t h = ((const uint16_t *)w)[i];
    return dt == RWKV_DTYPE_BF16 ? rwkv_bf16_to_f32(h) : rwkv_f16_to_f32(h);
}

static inline __attribute__((always_inline)) void tile(const gemm_job *j, const float *xt, int panel, int b0, int bt,
                                                      rwkv_dtype dt, const int *idx, int q0, int q1, int nq,
                                                      float (*acc)[P])
{
    const int K = j->w->cols;
    const size_t base = (size_t)panel * K * P;
    if (q0 == 0)
        memset(acc, 0, sizeof(float) * P * (size_t)bt);
    for (int q = q0; q < q1; q++) {
        const int k = idx ? idx[q] : q;
        float wv[P];
        for (int i = 0; i < P; i++)
            wv[i] = wval(j->w->data, dt, base + (size_t)k * P + i);
        for (int c = 0; c < bt; c++) {
            const float xb = xt[(size_t)k * BT + c];
            for (int i = 0; i < P; i++)
                acc[c][i] = fmaf(wv[i], xb, acc[c][i]);
        }
    }
    if (q1 == nq) {
        const int o = panel * P, n = j->w->rows - o < P ? j->w->rows - o : P;
        for (int c = 0; c < bt; c++)
            store(j, b0 + c, o, acc[c], n);
    }
}

static inline float bf16_hi(uint32_t v) { return rwkv_bf16_to_f32((uint16_t)(v >> 16)); }
static inline float bf16_lo(uint32_t v) { return rwkv_bf16_to_f32((uint16_t)v); }

static inline __attribute__((always_inline)) void tile_x2(const gemm_job *j, const uint32_t *xt, int panel, int b0,
                                                         int bt, const int *idx, int q0, int q1, int nq,
                                                         float (*acc)[P])
{
    const int KP = (j->w->cols + 1) / 2;
    const uint32_t *wp = (const uint32_t *)j->w->data + (size_t)panel * KP * P;
    if (q0 == 0)
        memset(acc, 0, sizeof(float) * P * (size_t)bt);
    for (int q = q0; q < q1; q++) {
        const int k = idx ? idx[q] : q;
        for (int c = 0; c < bt; c++) {
            const uint32_t x = xt[(size_t)k * BT + c];
            for (int i = 0; i < P; i++) {
                const uint32_t w = wp[(size_t)k * P + i];
                acc[c][i] = acc[c][i] + (bf16_hi(w) * bf16_hi(x) + bf16_lo(w) * bf16_lo(x));
            }
        }
    }
    if (q1 == nq) {
        const int o = panel * P, n = j->w->rows - o < P ? j->w->rows - o : P;
        for (int c = 0; c < bt; c++)
            store(j, b0 + c, o, acc[c], n);
    }
}
#endif

/* The tiles of one unit (a panel, batch rows b0..b1), over q = 0..nq of the inputs: every
 * input (idx NULL, nq = the input count) or only those listed in idx (ascending). Inlined
 * into one function per weight type and mode, so the accumulators are registers and the
 * inner loop has no branches. The q range is cut into blocks of KB so a block of the panel
 * stays in L1 while GROUP batch tiles reuse it. */
#define KB(DT) ((DT) == RWKV_DTYPE_F32 ? 128 : 256) /* 32 KiB of a panel */
#define KBP 128                                     /* the same in bf16 pairs */
#define GROUP 22 /* batch tiles sharing one pass over the weights: 132 rows */
static inline __attribute__((always_inline)) void tiles_gen(const gemm_job *j, const float *xt, rwkv_dtype dt,
                                                           const int *idx, int nq, int panel, int b0, int b1)
{
    float acc[GROUP][BT][P];
    const int kb = dt == RWKV_DTYPE_BF16X2 ? KBP : KB(dt);
    for (int g0 = b0; g0 < b1; g0 += GROUP * BT) {
        const int g1 = b1 - g0 < GROUP * BT ? b1 : g0 + GROUP * BT;
        for (int q0 = 0; q0 < nq; q0 += kb) {
            const int q1 = nq - q0 < kb ? nq : q0 + kb;
            for (int b = g0; b < g1; b += BT) {
                /* a tile's inputs: (K, BT) floats, or for bf16 pairs (KP, BT) words at the same stride */
                const float *x = xt + (size_t)(b / BT) * j->w->cols * BT;
                float(*a)[P] = acc[(b - g0) / BT];
                const int bt = g1 - b < BT ? g1 - b : BT;
                if (dt == RWKV_DTYPE_BF16X2) {
                    const uint32_t *xp = (const uint32_t *)(const void *)x;
                    switch (bt) {
                    case 1: tile_x2(j, xp, panel, b, 1, idx, q0, q1, nq, a); break;
                    case 2: tile_x2(j, xp, panel, b, 2, idx, q0, q1, nq, a); break;
                    case 3: tile_x2(j, xp, panel, b, 3, idx, q0, q1, nq, a); break;
                    case 4: tile_x2(j, xp, panel, b, 4, idx, q0, q1, nq, a); break;
                    case 5: tile_x2(j, xp, panel, b, 5, idx, q0, q1, nq, a); break;
                    default: tile_x2(j, xp, panel, b, BT, idx, q0, q1, nq, a); break;
                    }
                } else {
                    switch (bt) {
                    case 1: tile(j, x, panel, b, 1, dt, idx, q0, q1, nq, a); break;
                    case 2: tile(j, x, panel, b, 2, dt, idx, q0, q1, nq, a); break;
                    case 3: tile(j, x, panel, b, 3, dt, idx, q0, q1, nq, a); break;
                    case 4: tile(j, x, panel, b, 4, dt, idx, q0, q1, nq, a); break;
                    case 5: tile(j, x, panel, b, 5, dt, idx, q0, q1, nq, a); break;
                    default: tile(j, x, panel, b, BT, dt, idx, q0, q1, nq, a); break;
                    }
                }
            }
        }
    }
}

/* One function per weight type holding both inlined variants, so that the dense one steps
 * through k with no index list at all. idx NULL: every input; otherwise the nq inputs
 * listed (the rest are zero in every row). */
#define TILES(NAME, DT) \
    static void tiles_##NAME(const gemm_job *j, const float *xt, const int *idx, int nq, int panel, int b0, int b1) \
    { \
        if (idx) \
            tiles_gen(j, xt, DT, idx, nq, panel, b0, b1); \
        else \
            tiles_gen(j, xt, DT, NULL, DT == RWKV_DTYPE_BF16X2 ? (j->w->cols + 1) / 2 : j->w->cols, panel, b0, b1); \
    }
TILES(f32, RWKV_DTYPE_F32)
TILES(f16, RWKV_DTYPE_F16)
TILES(bf16, RWKV_DTYPE_BF16)
TILES(bf16x2, RWKV_DTYPE_BF16X2)

static void run_unit(const gemm_job *j, const float *xt, const int *idx, int nq, int panel, int b0, int b1)
{
    switch (j->w->dtype) {
    case RWKV_DTYPE_F32: tiles_f32(j, xt, idx, nq, panel, b0, b1); break;
    case RWKV_DTYPE_F16: tiles_f16(j, xt, idx, nq, panel, b0, b1); break;
    case RWKV_DTYPE_BF16: tiles_bf16(j, xt, idx, nq, panel, b0, b1); break;
    case RWKV_DTYPE_BF16X2: tiles_bf16x2(j, xt, idx, nq, panel, b0, b1); break;
    }
}

typedef struct {
    const gemm_job *jobs;
    const float *xt[GEMM_MAX_JOBS]; /* per job: x regrouped as (tiles, K, BT) */
    const int *idx[GEMM_MAX_JOBS];  /* per job: the inputs not zero in every row, or NULL: all */
    int nq[GEMM_MAX_JOBS];          /* per job: how many inputs idx lists */
    int n_jobs;
    int split;        /* units per panel: 1, or the number of batch tiles */
    int total_units;
    int chunk;        /* consecutive units taken per grab */
    atomic_int next;
} gemm_ctx;

static int panels_of(const gemm_job *j) { return j->n > 0 ? (j->w->rows + P - 1) / P : 0; }

static void run_index(gemm_ctx *g, int u);

static void gemm_worker(void *arg, int tid, int n_threads)
{
    gemm_ctx *g = arg;
    (void)tid;
    (void)n_threads;
    for (;;) {
        int u0 = atomic_fetch_add_explicit(&g->next, g->chunk, memory_order_relaxed);
        if (u0 >= g->total_units)
            return;
        int u1 = u0 + g->chunk < g->total_units ? u0 + g->chunk : g->total_units;
        for (int uu = u0; uu < u1; uu++)
            run_index(g, uu);
    }
}

/* Units are taken in chunks of consecutive panels so that each thread streams long
 * contiguous stretches of the weights (the hardware prefetcher restarts at every jump),
 * while a few chunks per thread still balance the load. */
static void run_index(gemm_ctx *g, int u)
{
    for (int k = 0; k < g->n_jobs; k++) {
        const gemm_job *j = &g->jobs[k];
        int units = panels_of(j) * g->split;
        if (u < units) {
            int panel = u / g->split, part = u % g->split;
            int tiles = (j->n + BT - 1) / BT;
            int per = (tiles + g->split - 1) / g->split;
            int b0 = part * per * BT, b1 = b0 + per * BT < j->n ? b0 + per * BT : j->n;
            if (b0 < b1)
                run_unit(j, g->xt[k], g->idx[k], g->nq[k], panel, b0, b1);
            return;
        }
        u -= units;
    }
}

static atomic_ullong sparse_jobs, skipped_bytes;

unsigned long long rwkv_gemm_sparse_jobs(void) { return atomic_load_explicit(&sparse_jobs, memory_order_relaxed); }
unsigned long long rwkv_gemm_skipped_bytes(void) { return atomic_load_explicit(&skipped_bytes, memory_order_relaxed); }

size_t rwkv_gemm_workspace_floats(int max_rows, int sum_cols)
{
    /* the regrouped inputs, then one int per input column for the lists of sparse jobs */
    return (size_t)((max_rows + BT - 1) / BT) * BT * (size_t)sum_cols + (size_t)sum_cols;
}

/* For a job marked sparse_x: list the inputs (or bf16 pairs) that are nonzero in some row,
 * ascending, into idx (room for one int per input). Returns the count when it is at most
 * GEMM_SPARSE_MAX_PERCENT of the inputs (and not 0, which the tiles do not handle: a job
 * with no inputs still writes act(0)), else -1: then every input is read. A pair counts
 * when either input is nonzero before rounding, which may keep a pair whose bf16 word is
 * zero: adding its zero products changes nothing either. */
static int sparse_list(const gemm_job *j, int *idx)
{
    const int K = j->w->cols, x2 = j->w->dtype == RWKV_DTYPE_BF16X2;
    const int nk = x2 ? (K + 1) / 2 : K;
    memset(idx, 0, sizeof(int) * (size_t)K);
    for (int b = 0; b < j->n; b++) {
        const float *src = j->x + (size_t)b * j->ldx;
        for (int k = 0; k < K; k++)
            idx[k] |= src[k] != 0.0f;
    }
    int n = 0;
    for (int k = 0; k < nk; k++)
        if (x2 ? idx[2 * k] | (2 * k + 1 < K ? idx[2 * k + 1] : 0) : idx[k])
            idx[n++] = k; /* n <= k: never overwrites a mark still to be read */
    return n > 0 && (int64_t)n * 100 <= (int64_t)nk * GEMM_SPARSE_MAX_PERCENT ? n : -1;
}

void rwkv_gemm_run(rwkv_pool *pool, float *ws, const gemm_job *jobs, int n_jobs)
{
    gemm_ctx g = {.jobs = jobs, .n_jobs = n_jobs, .split = 1};
    int panels = 0, max_tiles = 1;
    for (int k = 0; k < n_jobs; k++) {
        const gemm_job *j = &jobs[k];
        panels += panels_of(j);
        int t = (j->n + BT - 1) / BT;
        if (t > max_tiles)
            max_tiles = t;
        /* Regroup x so that a tile's BT inputs at one k are adjacent: one stream of
         * broadcasts instead of BT. A last tile of bt < BT rows reads only its bt columns. */
        const int K = j->w->cols;
        float *xt = ws;
        if (j->w->dtype == RWKV_DTYPE_BF16X2) {
            /* bf16 pairs (rounded to nearest even), a zero after an odd last input; the
             * (KP x BT) words per tile fit in the K x BT floats reserved for it */
            const int KP = (K + 1) / 2;
            for (int tb = 0; tb < t; tb++) {
                uint32_t *dst = (uint32_t *)(void *)(xt + (size_t)tb * K * BT);
                int rows = j->n - tb * BT < BT ? j->n - tb * BT : BT;
                for (int c = 0; c < rows; c++) {
                    const float *src = j->x + (size_t)(tb * BT + c) * j->ldx;
                    for (int i = 0; i < KP; i++) {
                        const uint32_t lo = rwkv_f32_to_bf16(src[2 * i]);
                        const uint32_t hi = 2 * i + 1 < K ? rwkv_f32_to_bf16(src[2 * i + 1]) : 0;
                        dst[(size_t)i * BT + c] = lo | hi << 16;
                    }
                }
            }
        } else {
            for (int tb = 0; tb < t; tb++) {
                float *dst = xt + (size_t)tb * K * BT;
                int rows = j->n - tb * BT < BT ? j->n - tb * BT : BT;
                for (int c = 0; c < rows; c++) {
                    const float *src = j->x + (size_t)(tb * BT + c) * j->ldx;
                    for (int i = 0; i < K; i++)
                        dst[(size_t)i * BT + c] = src[i];
                }
            }
        }
        g.xt[k] = xt;
        ws += (size_t)t * K * BT;
    }
    /* lists of nonzero inputs go after all the regrouped inputs */
    int *lists = (int *)(void *)ws;
    for (int k = 0; k < n_jobs; k++) {
        g.idx[k] = NULL;
        if (jobs[k].sparse_x && jobs[k].n > 0) {
            g.nq[k] = sparse_list(&jobs[k], lists);
            if (g.nq[k] > 0) {
                g.idx[k] = lists;
                lists += g.nq[k];
                atomic_fetch_add_explicit(&sparse_jobs, 1, memory_order_relaxed);
                /* per input (or pair): one weight of every output, padded to whole panels */
                const rwkv_mat *w = jobs[k].w;
                const int nk = w->dtype == RWKV_DTYPE_BF16X2 ? (w->cols + 1) / 2 : w->cols;
                const size_t per = (size_t)panels_of(&jobs[k]) * P * (w->dtype == RWKV_DTYPE_F32 || w->dtype == RWKV_DTYPE_BF16X2 ? 4 : 2);
                atomic_fetch_add_explicit(&skipped_bytes, (unsigned long long)(nk - g.nq[k]) * per, memory_order_relaxed);
            }
        }
    }
    if (panels == 0)
        return;
    int threads = pool ? rwkv_pool_size(pool) : 1;
    /* Few panels and a big batch: also split the batch so every thread has work. */
    if (panels < 4 * threads && max_tiles > 1)
        g.split = max_tiles < 4 * threads ? max_tiles : 4 * threads;
    g.total_units = panels * g.split;
    g.chunk = g.total_units / (4 * threads);
    if (g.chunk < 1)
        g.chunk = 1;
    atomic_init(&g.next, 0);
    if (threads == 1 || g.total_units == 1)
        gemm_worker(&g, 0, 1);
    else
        rwkv_pool_run(pool, gemm_worker, &g);
}
