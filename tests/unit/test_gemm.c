/* test_gemm.c — the CPU GEMM (kernels/cpu/gemm.c) against a float64 reference, for every
 * in-memory weight type.
 *
 * For random W (out x in) and x, each type's packed matrix is built with rwkv_mat_index and
 * the kernel's y = act(W·x) (+ y) is compared with a double-precision sum over the SAME
 * rounded operands: the weights as stored (bf16/fp16 values), and for bf16 pairs
 * (weights bf16dot) the inputs rounded to bf16 as well. Only the fp32 accumulation may
 * differ, so the bound is relative to sum |w·x| (not to the result, which can cancel).
 * Shapes cover panel tails (rows not a multiple of 64), odd `in` (the bf16 pair pad),
 * every batch-tile width and the k blocking. Then: a batch equals its rows computed one
 * by one, bit for bit, and two threads equal one.
 * Sparse inputs (jobs marked sparse_x, as the FFN value matrix is): the same checks with
 * most inputs zero, and the result must equal the dense kernel's bit for bit. That the
 * kernel really skips is proven by poisoning: the weights of inputs that are zero in every
 * row are set to NaN, which any read would spread into the result.
 */
#include "cpu/gemm.h"
#include "half.h"
#include "model.h"
#include "threadpool.h"
#include "testutil.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

/* The value the kernel multiplies for a weight stored as type t. */
static float as_stored(rwkv_dtype t, float v)
{
    switch (t) {
    case RWKV_DTYPE_F32: return v;
    case RWKV_DTYPE_F16: return rwkv_f16_to_f32(rwkv_f32_to_f16(v));
    case RWKV_DTYPE_BF16:
    case RWKV_DTYPE_BF16X2: return rwkv_bf16_to_f32(rwkv_f32_to_bf16(v));
    }
    return v;
}

static void *pack(const float *w, int rows, int cols, rwkv_dtype t)
{
    void *p = calloc(1, rwkv_mat_bytes(rows, cols, t));
    for (int r = 0; p && r < rows; r++)
        for (int k = 0; k < cols; k++) {
            size_t i = rwkv_mat_index(t, cols, r, k);
            float v = w[(size_t)r * cols + k];
            if (t == RWKV_DTYPE_F32)
                ((float *)p)[i] = v;
            else
                ((uint16_t *)p)[i] = t == RWKV_DTYPE_F16 ? rwkv_f32_to_f16(v) : rwkv_f32_to_bf16(v);
        }
    return p;
}

static double act_ref(gemm_act a, double v)
{
    switch (a) {
    case GEMM_ACT_NONE: return v;
    case GEMM_ACT_TANH: return tanh(v);
    case GEMM_ACT_SIGMOID: return 1.0 / (1.0 + exp(-v));
    case GEMM_ACT_RELU_SQ: return v > 0 ? v * v : 0;
    }
    return v;
}

static const char *tname(rwkv_dtype t) { return rwkv_dtype_name(t); }

typedef enum {
    X_DENSE,    /* random inputs, sparse_x off */
    X_SCATTER,  /* 90% of the inputs +0 or -0, independently per row, sparse_x on */
    X_POISON,   /* 80% of the input pairs zero in every row, NaN weights there, sparse_x on */
    X_HALF,     /* half the input pairs zero in every row: above the share the kernel skips */
} x_mode;

static int in_zero_pair(int k, x_mode mode)
{
    const int pair = k / 2;
    return mode == X_POISON ? pair % 5 != 2 : mode == X_HALF ? pair % 2 == 0 : 0;
}

/* One shape and type: reference check, batch == single rows, 2 threads == 1, and for
 * sparse inputs sparse == dense. */
static void check_case(rwkv_pool *pool2, rwkv_dtype t, int rows, int cols, int n, gemm_act act, int accumulate,
                       x_mode mode)
{
    float *w = malloc(sizeof(float) * (size_t)rows * cols), *x = malloc(sizeof(float) * (size_t)n * cols);
    float *y0 = malloc(sizeof(float) * (size_t)n * rows), *y = malloc(sizeof(float) * (size_t)n * rows);
    float *y1 = malloc(sizeof(float) * (size_t)n * rows), *y2 = malloc(sizeof(float) * (size_t)n * rows);
    float *ws = malloc(sizeof(float) * rwkv_gemm_workspace_floats(n, cols));
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        w[i] = frand();
    for (size_t i = 0; i < (size_t)n * cols; i++) {
        const int k = (int)(i % (size_t)cols);
        x[i] = frand() * 2.0f;
        if (mode == X_SCATTER && frand() < 0.8f) /* P = 0.9 */
            x[i] = (i & 1) ? -0.0f : 0.0f;
        if (in_zero_pair(k, mode) && 2 * (k / 2) + 1 < cols) /* a whole pair (never the odd pad) */
            x[i] = 0.0f;
    }
    if (mode == X_POISON)
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < cols; k++)
                if (x[k] == 0.0f && in_zero_pair(k, mode) && 2 * (k / 2) + 1 < cols)
                    w[(size_t)r * cols + k] = NAN;
    for (size_t i = 0; i < (size_t)n * rows; i++)
        y0[i] = frand();
    void *packed = pack(w, rows, cols, t);
    rwkv_mat m = {packed, t, rows, cols};
    const int sparse = mode != X_DENSE;

    memcpy(y, y0, sizeof(float) * (size_t)n * rows);
    gemm_job j = {&m, x, cols, y, rows, NULL, n, act, accumulate, sparse};
    rwkv_gemm_run(NULL, ws, &j, 1);

    /* float64 reference over the rounded operands */
    double worst = 0;
    for (int b = 0; b < n; b++)
        for (int r = 0; r < rows; r++) {
            double s = 0, mag = 0;
            for (int k = 0; k < cols; k++) {
                double xv = t == RWKV_DTYPE_BF16X2 ? as_stored(t, x[(size_t)b * cols + k]) : x[(size_t)b * cols + k];
                if (xv == 0) /* adds nothing (and keeps the poisoned weights out of the sum) */
                    continue;
                double p = (double)as_stored(t, w[(size_t)r * cols + k]) * xv;
                s += p;
                mag += fabs(p);
            }
            double want = act_ref(act, s) + (accumulate ? y0[(size_t)b * rows + r] : 0);
            /* fp32 accumulation error <= cols * 2^-24 * sum|p| (loose); activations scale it by at most 2|s| */
            double tol = (double)cols * 6e-8 * mag * (act == GEMM_ACT_RELU_SQ ? 2 * fabs(s) + 1 : 1) + 1e-6;
            double got = y[(size_t)b * rows + r];
            double err = fabs(got - want);
            if (!(err <= tol)) {
                if (worst == 0)
                    fprintf(stderr, "%s %dx%d n=%d act=%d acc=%d: y[%d][%d] = %.9g, reference %.9g (tol %.3g)\n", tname(t),
                            rows, cols, n, (int)act, accumulate, b, r, got, want, tol);
                worst = err > worst ? err : worst;
            }
        }
    CHECKF(worst == 0, "%s %dx%d n=%d mode %d: kernel off the float64 reference by %.3g", tname(t), rows, cols, n,
           (int)mode, worst);

    /* the batch equals its rows one at a time, bit for bit */
    memcpy(y1, y0, sizeof(float) * (size_t)n * rows);
    for (int b = 0; b < n; b++) {
        gemm_job jb = {&m, x + (size_t)b * cols, cols, y1 + (size_t)b * rows, rows, NULL, 1, act, accumulate, sparse};
        rwkv_gemm_run(NULL, ws, &jb, 1);
    }
    CHECKF(memcmp(y, y1, sizeof(float) * (size_t)n * rows) == 0, "%s %dx%d n=%d: batch != single rows", tname(t), rows,
           cols, n);

    /* two threads equal one */
    memcpy(y2, y0, sizeof(float) * (size_t)n * rows);
    gemm_job j2 = {&m, x, cols, y2, rows, NULL, n, act, accumulate, sparse};
    rwkv_gemm_run(pool2, ws, &j2, 1);
    CHECKF(memcmp(y, y2, sizeof(float) * (size_t)n * rows) == 0, "%s %dx%d n=%d: 2 threads != 1", tname(t), rows, cols,
           n);

    /* skipping zero inputs changes no bit (not with poisoned weights: dense reads them) */
    if (mode == X_SCATTER || mode == X_HALF) {
        memcpy(y2, y0, sizeof(float) * (size_t)n * rows);
        gemm_job jd = {&m, x, cols, y2, rows, NULL, n, act, accumulate, 0};
        rwkv_gemm_run(pool2, ws, &jd, 1);
        CHECKF(memcmp(y, y2, sizeof(float) * (size_t)n * rows) == 0, "%s %dx%d n=%d mode %d: sparse != dense",
               tname(t), rows, cols, n, (int)mode);
    }

    free(packed);
    free(w);
    free(x);
    free(y0);
    free(y);
    free(y1);
    free(y2);
    free(ws);
}

int main(void)
{
    rwkv_pool *pool2 = rwkv_pool_new(2);
    CHECK(pool2 != NULL);
    const rwkv_dtype types[] = {RWKV_DTYPE_F32, RWKV_DTYPE_F16, RWKV_DTYPE_BF16, RWKV_DTYPE_BF16X2};
    const struct { int rows, cols; } shapes[] = {
        {64, 64}, {100, 99}, {1, 7}, {130, 257}, {192, 600},  /* 600 inputs: several k blocks */
    };
    const int batches[] = {1, 2, 5, 6, 7, 13, 40};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
            for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++)
                for (int mode = X_DENSE; mode <= X_HALF; mode++)
                    /* poisoning needs <= 25% of the inputs nonzero: not so with 7 inputs */
                    if ((mode == X_DENSE || bi % 2 == 0 || bi == 1) && (mode != X_POISON || shapes[si].cols >= 64))
                        check_case(pool2, types[ti], shapes[si].rows, shapes[si].cols, batches[bi],
                                   (gemm_act)((si + bi) % 4), (int)((si + bi + ti) % 2), (x_mode)mode);
    /* a wrong pairing of bf16 inputs must not pass: swap one pair in a bf16x2 matrix and
     * the reference check has to notice (guards the test itself) */
    {
        float w[2 * 4] = {1, 2, 3, 4, 5, 6, 7, 8}, x[4] = {1, -1, 0.5f, 2}, y[2], ws[64];
        void *p = pack(w, 2, 4, RWKV_DTYPE_BF16X2);
        uint16_t *h = p;
        uint16_t tmp = h[0];
        h[0] = h[1];
        h[1] = tmp;
        rwkv_mat m = {p, RWKV_DTYPE_BF16X2, 2, 4};
        gemm_job j = {&m, x, 4, y, 2, NULL, 1, GEMM_ACT_NONE, 0, 0};
        rwkv_gemm_run(NULL, ws, &j, 1);
        CHECKF(fabsf(y[0] - (1 * 1 - 2 + 1.5f + 8)) > 1e-3f, "swapped pair gave the right answer %g", y[0]);
        CHECKF(fabsf(y[0] - (2 * 1 - 1 + 1.5f + 8)) < 1e-5f, "swapped pair gave %g", y[0]);
        CHECKF(fabsf(y[1] - (5 - 6 + 3.5f + 16)) < 1e-5f, "row 1 gave %g", y[1]);
        free(p);
    }
    rwkv_pool_destroy(&pool2);
    return test_finish("test_gemm");
}
