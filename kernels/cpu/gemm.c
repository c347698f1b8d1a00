/* gemm.c — batched matrix × vectors for the CPU engine (see gemm.h for the contract).
 *
 * Work is cut into blocks of OB output rows; threads take blocks from an atomic counter.
 * Within a block the batch is walked in tiles of up to BB rows so that each weight vector
 * loaded is used BB times (the weights are read once per step for the whole batch, which
 * is why batching pays on a memory-bound CPU). Two implementations share one arithmetic
 * order: AVX-512 intrinsics where the compiler targets it, portable C otherwise.
 */
#include "gemm.h"

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

#define LANES 16
#define OB 4  /* output rows per block */
#define BB 6  /* batch rows per tile */
#define BLOCK_ROWS 16 /* rows per unit of work handed to a thread */

static inline float act_apply(gemm_act a, float v)
{
    switch (a) {
    case GEMM_ACT_NONE: return v;
    case GEMM_ACT_TANH: return tanhf(v);
    case GEMM_ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
    case GEMM_ACT_RELU_SQ: v = v > 0 ? v : 0; return v * v;
    }
    return v;
}

static inline float *out_row(const gemm_job *j, int b)
{
    return j->y_rows ? j->y_rows[b] : j->y + (size_t)b * j->ldy;
}

static inline void store(const gemm_job *j, int b, int o, float v)
{
    float *y = out_row(j, b) + o;
    v = act_apply(j->act, v);
    if (j->accumulate)
        *y += v;
    else
        *y = v;
}

#if HAVE_AVX512
static inline __m512 load_w(const void *row, rwkv_dtype dt, int i)
{
    switch (dt) {
    case RWKV_DTYPE_F32: return _mm512_loadu_ps((const float *)row + i);
    case RWKV_DTYPE_F16: return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + i)));
    default: {
        __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + i)));
        return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
    }
    }
}

static inline __m512 load_w_mask(const void *row, rwkv_dtype dt, int i, __mmask16 m)
{
    switch (dt) {
    case RWKV_DTYPE_F32: return _mm512_maskz_loadu_ps(m, (const float *)row + i);
    case RWKV_DTYPE_F16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)row + i));
    default: {
        __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)row + i));
        return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
    }
    }
}

/* One tile: output rows o0..o0+ob, batch rows b0..b0+bb. ob <= OB, bb <= BB are
 * compile-time constants after inlining, so the accumulators stay in registers. */
static inline __attribute__((always_inline)) void tile(const gemm_job *j, int o0, int ob, int b0, int bb)
{
    const rwkv_mat *w = j->w;
    const int K = w->cols;
    const size_t es = w->dtype == RWKV_DTYPE_F32 ? 4 : 2;
    const uint8_t *wbase = (const uint8_t *)w->data + (size_t)o0 * K * es;
    __m512 acc[OB][BB];
    for (int a = 0; a < ob; a++)
        for (int c = 0; c < bb; c++)
            acc[a][c] = _mm512_setzero_ps();
    int i = 0;
    for (; i + LANES <= K; i += LANES) {
        __m512 xv[BB];
        for (int c = 0; c < bb; c++)
            xv[c] = _mm512_loadu_ps(j->x + (size_t)(b0 + c) * j->ldx + i);
        for (int a = 0; a < ob; a++) {
            __m512 wv = load_w(wbase + (size_t)a * K * es, w->dtype, i);
            for (int c = 0; c < bb; c++)
                acc[a][c] = _mm512_fmadd_ps(wv, xv[c], acc[a][c]);
        }
    }
    if (i < K) {
        __mmask16 m = (__mmask16)((1u << (K - i)) - 1);
        __m512 xv[BB];
        for (int c = 0; c < bb; c++)
            xv[c] = _mm512_maskz_loadu_ps(m, j->x + (size_t)(b0 + c) * j->ldx + i);
        for (int a = 0; a < ob; a++) {
            __m512 wv = load_w_mask(wbase + (size_t)a * K * es, w->dtype, i, m);
            for (int c = 0; c < bb; c++)
                acc[a][c] = _mm512_fmadd_ps(wv, xv[c], acc[a][c]);
        }
    }
    for (int a = 0; a < ob; a++)
        for (int c = 0; c < bb; c++)
            store(j, b0 + c, o0 + a, _mm512_reduce_add_ps(acc[a][c]));
}
#else
static inline float load_w1(const void *row, rwkv_dtype dt, int i)
{
    if (dt == RWKV_DTYPE_F32)
        return ((const float *)row)[i];
    uint16_t h = ((const uint16_t *)row)[i];
    if (dt == RWKV_DTYPE_BF16) {
        uint32_t u = (uint32_t)h << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    return (float)*(const _Float16 *)&((const uint16_t *)row)[i];
}

static inline __attribute__((always_inline)) void tile(const gemm_job *j, int o0, int ob, int b0, int bb)
{
    const rwkv_mat *w = j->w;
    const int K = w->cols;
    const size_t es = w->dtype == RWKV_DTYPE_F32 ? 4 : 2;
    const uint8_t *wbase = (const uint8_t *)w->data + (size_t)o0 * K * es;
    float acc[OB][BB][LANES];
    memset(acc, 0, sizeof acc);
    for (int i = 0; i < K; i += LANES) {
        int n = K - i < LANES ? K - i : LANES;
        for (int a = 0; a < ob; a++) {
            float wv[LANES] = {0};
            for (int l = 0; l < n; l++)
                wv[l] = load_w1(wbase + (size_t)a * K * es, w->dtype, i + l);
            for (int c = 0; c < bb; c++) {
                const float *x = j->x + (size_t)(b0 + c) * j->ldx + i;
                for (int l = 0; l < n; l++)
                    acc[a][c][l] = fmaf(wv[l], x[l], acc[a][c][l]);
            }
        }
    }
    for (int a = 0; a < ob; a++)
        for (int c = 0; c < bb; c++) {
            /* same pairwise tree as _mm512_reduce_add_ps */
            float t[LANES];
            memcpy(t, acc[a][c], sizeof t);
            for (int h = LANES / 2; h > 0; h /= 2)
                for (int l = 0; l < h; l++)
                    t[l] = t[l] + t[l + h];
            store(j, b0 + c, o0 + a, t[0]);
        }
}
#endif

#define TILE_CASE(OBN, BBN) case BBN: tile(j, o, OBN, b, BBN); break;

static void run_block(const gemm_job *j, int o_begin, int o_end)
{
    int o = o_begin;
    for (; o + OB <= o_end; o += OB) {
        for (int b = 0; b < j->n; b += BB) {
            switch (j->n - b < BB ? j->n - b : BB) {
                TILE_CASE(OB, 1) TILE_CASE(OB, 2) TILE_CASE(OB, 3)
                TILE_CASE(OB, 4) TILE_CASE(OB, 5) TILE_CASE(OB, 6)
            }
        }
    }
    for (; o < o_end; o++) {
        for (int b = 0; b < j->n; b += BB) {
            switch (j->n - b < BB ? j->n - b : BB) {
                TILE_CASE(1, 1) TILE_CASE(1, 2) TILE_CASE(1, 3)
                TILE_CASE(1, 4) TILE_CASE(1, 5) TILE_CASE(1, 6)
            }
        }
    }
}

typedef struct {
    const gemm_job *jobs;
    int n_jobs;
    int total_blocks;
    atomic_int next;
} gemm_ctx;

static void gemm_worker(void *arg, int tid, int n_threads)
{
    gemm_ctx *g = arg;
    (void)tid;
    (void)n_threads;
    for (;;) {
        int blk = atomic_fetch_add_explicit(&g->next, 1, memory_order_relaxed);
        if (blk >= g->total_blocks)
            return;
        for (int k = 0; k < g->n_jobs; k++) {
            const gemm_job *j = &g->jobs[k];
            int nb = (j->w->rows + BLOCK_ROWS - 1) / BLOCK_ROWS;
            if (blk < nb) {
                int o0 = blk * BLOCK_ROWS;
                int o1 = o0 + BLOCK_ROWS < j->w->rows ? o0 + BLOCK_ROWS : j->w->rows;
                run_block(j, o0, o1);
                break;
            }
            blk -= nb;
        }
    }
}

void rwkv_gemm_run(rwkv_pool *pool, const gemm_job *jobs, int n_jobs)
{
    gemm_ctx g = {jobs, n_jobs, 0, 0};
    for (int k = 0; k < n_jobs; k++)
        if (jobs[k].n > 0)
            g.total_blocks += (jobs[k].w->rows + BLOCK_ROWS - 1) / BLOCK_ROWS;
    if (g.total_blocks == 0)
        return;
    /* jobs with n == 0 contribute no blocks; the walk above must skip them likewise */
    for (int k = 0; k < n_jobs; k++)
        if (jobs[k].n <= 0) {
            /* rare: compact by running the others directly */
            gemm_job tmp[16];
            int m = 0;
            for (int q = 0; q < n_jobs && m < 16; q++)
                if (jobs[q].n > 0)
                    tmp[m++] = jobs[q];
            rwkv_gemm_run(pool, tmp, m);
            return;
        }
    atomic_init(&g.next, 0);
    if (g.total_blocks == 1 || !pool)
        gemm_worker(&g, 0, 1);
    else
        rwkv_pool_run(pool, gemm_worker, &g);
}
