/* gemm.h — Y = act(W·X) for a batch of rows, the CPU engine's only matrix kernel.
 *
 * W is (rows=out, cols=in) in f32, f16 or bf16 (widened in registers, fp32 accumulation),
 * or bf16 input pairs (inputs rounded to bf16 too). Every output element is computed by
 * one fixed sequence of operations — a single fp32 chain over `in` in ascending order —
 * whatever the batch size, the tile it lands in, or the thread that runs it. That is what
 * makes a batch of N rows bit-identical to N single rows, and results independent of
 * threads.
 */
#ifndef RWKV_CPU_GEMM_H
#define RWKV_CPU_GEMM_H

#include "../model.h"
#include "../threadpool.h"

typedef enum {
    GEMM_ACT_NONE,
    GEMM_ACT_TANH,
    GEMM_ACT_SIGMOID,
    GEMM_ACT_RELU_SQ, /* max(0, y)^2 */
} gemm_act;

typedef struct {
    const rwkv_mat *w;
    const float *x;         /* (n, ldx): row b is x + b*ldx, w->cols used */
    int ldx;
    float *y;               /* (n, ldy): row b at y + b*ldy, w->rows written */
    int ldy;
    float *const *y_rows;   /* if not NULL, overrides y: row b at y_rows[b] */
    int n;                  /* batch rows */
    gemm_act act;
    int accumulate;         /* y += act(W·x) instead of y = act(W·x) */
    int sparse_x;           /* x is often exactly zero (a ReLU output): skip those inputs */
} gemm_job;

/* A sparse_x job reads only the weights of inputs that are nonzero in some batch row when
 * those are at most this share of all inputs; above it, skipping scattered stretches of
 * a panel costs more (the hardware prefetcher loses the stream) than it saves. Skipping
 * is exact: a zero input adds +-0 to an fp32 partial sum, which never is -0, so the sum is
 * unchanged, and the remaining inputs are still added in ascending order. (One caveat for
 * bf16 pairs on AVX512_BF16 hardware: the instruction flushes a partial sum below 2^-126 to
 * zero, which a skipped input would not; the sums then differ by less than 2^-126.) */
#define GEMM_SPARSE_MAX_PERCENT 25

/* How many jobs so far read only their listed nonzero inputs, and the weight bytes they
 * did not read (all threads and engines of the process): lets a test tell that the sparse
 * path ran, and a benchmark count the bytes a step really reads. */
unsigned long long rwkv_gemm_sparse_jobs(void);
unsigned long long rwkv_gemm_skipped_bytes(void);

#define GEMM_MAX_JOBS 8

/* Floats of workspace a run needs: max_rows rows, sum_cols = sum of the jobs' w->cols. */
size_t rwkv_gemm_workspace_floats(int max_rows, int sum_cols);

/* Run up to GEMM_MAX_JOBS jobs (they must not write each other's inputs) across the pool.
 * ws: rwkv_gemm_workspace_floats() floats of scratch. */
void rwkv_gemm_run(rwkv_pool *pool, float *ws, const gemm_job *jobs, int n_jobs);

#endif
