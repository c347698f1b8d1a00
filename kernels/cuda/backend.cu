/* backend.cu — the CUDA backend: weights and the state pool on the device, the forward
 * pass as kernels (ops.h) and cuBLAS GEMMs, CUDA graphs per row-count bucket, and the
 * module entry points librwkv's loader looks for.
 *
 * What it is not: the math of the kernels (rows.cu, wkv7.cu) or argument checking (the
 * engine validates every call before it reaches a backend).
 *
 * A forward: one upload of the rows' metadata, the layers as a fixed sequence of launches
 * (replayed from a CUDA graph once a bucket has been seen twice), the vocabulary head only
 * for the rows that asked for logits, one download of those logits and of the hidden
 * vectors, one stream synchronisation. Nothing is allocated per call.
 * Weights live on the device in one element type (f32, f16 or bf16: the type all of the
 * model's matrices share, else f32), and every GEMM input is rounded to it; GEMM outputs
 * and all elementwise math are fp32 with fp32 accumulation (TF32 off).
 * Errors: every CUDA and cuBLAS call is checked; a failure records the statement, the
 * error and file:line in last_error and makes the backend dead (every later op -EIO).
 * Built twice from the same source: by nvcc as librwkv-cuda.so, and as host C++ against
 * the SIMT emulator (tests/simt) as librwkv-cuda-emu.so.
 */
#include "common.cuh"
#include "ops.h"

extern "C" {
#include "../backend.h"
#include "../half.h"
}

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__CUDACC__)
#define BACKEND_NAME "cuda"
#else
#define BACKEND_NAME "cuda-emu"
#endif

#define MAX_GRAPHS 48

typedef struct {
    void *rkv;    /* (3, C, C) (T): receptance, key, value */
    void *ow;     /* (C, C) (T) */
    void *lora1;  /* (4, Dmax, C) (T): v1, w1, a1, g1 as [out][in], zero-padded rows */
    void *lora2;  /* (4, C, Dmax) (T): v2, w2, a2, g2, zero-padded columns */
    void *ffk;    /* (F, C) (T) */
    void *ffv;    /* (C, F) (T) */
    float *vec;   /* (RWKV_CU_V_COUNT, C) */
} cu_layer;

typedef struct {
    int rows;            /* bucket: rows the graph was captured for */
    int uses;
    unsigned long long last_use;
    cudaGraphExec_t exec;
} cu_graph;

typedef struct {
    rwkv_backend base; /* first: the engine sees a rwkv_backend* */
    const rwkv_model *m;
    int type;          /* enum rwkv_cu_type */
    size_t esz;        /* bytes per weight element */
    cudaDataType_t cdt;
    int L, C, H, N, F, V, D; /* D: the largest LoRA rank (all LoRA buffers padded to it) */
    int n_slots, max_rows;
    size_t slot_floats, layer_floats;
    int dead;

    /* device */
    float *state;      /* (n_slots + 1, slot_floats); the last slot takes padding rows */
    cu_layer *layers;  /* host array (L) of device pointers */
    float *emb;        /* (V, C) */
    float *ln_out;     /* (2, C): weight, bias */
    void *head;        /* (V, C) (T) */
    float *x, *u, *rkv, *h32, *lo, *vfirst, *ffh32, *lnout, *logits;
    void *mix, *hT, *y, *ffx, *ffhT, *hin;
    int *meta;         /* (RWKV_CU_META * max_rows + 1) */
    void *arena;       /* one cudaMalloc holding everything above */
    size_t arena_bytes;
    void *blas_ws;

    /* host, pinned */
    int *meta_h;
    float *logits_h;   /* (max_rows, V) */
    float *lnout_h;    /* (max_rows, C) */
    float *xfer_h;     /* (slot_floats): state export/import */
    void *pinned;

    cudaStream_t st;
    cublasHandle_t blas;
    int use_graphs;
    cu_graph graphs[MAX_GRAPHS];
    unsigned long long n_forwards;
} cuda_backend;

/* ---- errors ----------------------------------------------------------------------------- */

static int fail_cuda(cuda_backend *cb, const char *what, cudaError_t e, const char *file, int line)
{
    if (!cb->dead)
        snprintf(cb->base.last_error, sizeof cb->base.last_error, "%s backend: %s failed: %s (%s) at %s:%d",
                 BACKEND_NAME, what, cudaGetErrorName(e), cudaGetErrorString(e), file, line);
    cb->dead = 1;
    return -EIO;
}

static int fail_blas(cuda_backend *cb, const char *what, cublasStatus_t s, const char *file, int line)
{
    if (!cb->dead)
        snprintf(cb->base.last_error, sizeof cb->base.last_error, "%s backend: %s failed: %s (%s) at %s:%d",
                 BACKEND_NAME, what, cublasGetStatusName(s), cublasGetStatusString(s), file, line);
    cb->dead = 1;
    return -EIO;
}

#define CU(call) \
    do { \
        cudaError_t e_ = (call); \
        if (e_ != cudaSuccess) \
            return fail_cuda(cb, #call, e_, __FILE__, __LINE__); \
    } while (0)
#define BL(call) \
    do { \
        cublasStatus_t s_ = (call); \
        if (s_ != CUBLAS_STATUS_SUCCESS) \
            return fail_blas(cb, #call, s_, __FILE__, __LINE__); \
    } while (0)
/* after a batch of launches: a bad configuration or launch is reported here */
#define CU_LAUNCHED() CU(cudaPeekAtLastError())

static void set_err(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t len, const char *fmt, ...)
{
    if (!err || !len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

/* ---- GEMMs ------------------------------------------------------------------------------ */

/* Y (n rows, ldy) = alpha * X (n rows, ldx) · W^T + beta * Y, W (out, in) row-major (T),
 * X (T), Y fp32; batch > 1 walks W, X and Y by their strides. In cuBLAS's column-major
 * terms: Y^T (out × n) = op_T(W stored as in × out) · X^T (in × n). */
static int gemm(cuda_backend *cb, const void *W, int out, int in, long long sw, const void *X, int ldx, long long sx,
                float *Y, int ldy, long long sy, int n, int batch, float alpha, float beta)
{
    if (n == 0)
        return 0;
    if (batch == 1)
        BL(cublasGemmEx(cb->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &alpha, W, cb->cdt, in, X, cb->cdt, ldx, &beta, Y,
                        CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    else
        BL(cublasGemmStridedBatchedEx(cb->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &alpha, W, cb->cdt, in, sw, X,
                                      cb->cdt, ldx, sx, &beta, Y, CUDA_R_32F, ldy, sy, batch, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT));
    return 0;
}

/* ---- the forward pass ------------------------------------------------------------------- */

static inline void *at(void *base, size_t elems, size_t esz) { return (char *)base + elems * esz; }

/* Every layer and the final LayerNorm for R rows (padding included); stream-ordered work
 * only, so that it can be captured as a graph. */
static int body(cuda_backend *cb, int R)
{
    const int C = cb->C, F = cb->F, D = cb->D, ld = cb->max_rows;
    const size_t plane = (size_t)ld * C, es = cb->esz;
    cudaStream_t st = cb->st;
    const int *meta = cb->meta;
    rwkv_cu_embed(st, cb->x, cb->emb, meta, ld, R, C);
    for (int l = 0; l < cb->L; l++) {
        const cu_layer *ly = &cb->layers[l];
        float *state_l = cb->state + (size_t)l * cb->layer_floats;
        rwkv_cu_ln_mix_att(cb->type, st, cb->x, cb->u, state_l, cb->slot_floats, meta, ld, R, ly->vec, cb->mix, C);
        /* r, k, v: mix entries 0..2 through the stacked (3, C, C) weights */
        int rc = gemm(cb, ly->rkv, C, C, (long long)C * C, cb->mix, C, (long long)plane, cb->rkv, C, (long long)plane,
                      R, 3, 1.0f, 0.0f);
        /* LoRA first stage: mix entries 2..5 (v, w, a, g); layer 0 has no value residual */
        const int first = l == 0 ? RWKV_CU_L_W : RWKV_CU_L_V;
        const int nl = RWKV_CU_L_COUNT - first;
        if (!rc)
            rc = gemm(cb, at(ly->lora1, (size_t)first * D * C, es), D, C, (long long)D * C,
                      at(cb->mix, (size_t)(2 + first) * plane, es), C, (long long)plane,
                      cb->h32 + (size_t)first * ld * D, D, (long long)ld * D, R, nl, 1.0f, 0.0f);
        if (rc)
            return rc;
        rwkv_cu_lora_act(cb->type, st, cb->h32, cb->hT, ld, R, D, first);
        rc = gemm(cb, at(ly->lora2, (size_t)first * C * D, es), C, D, (long long)C * D,
                  at(cb->hT, (size_t)first * ld * D, es), D, (long long)ld * D, cb->lo + (size_t)first * plane, C,
                  (long long)plane, R, nl, 1.0f, 0.0f);
        if (rc)
            return rc;
        rwkv_cu_wkv_args wa = {cb->rkv, cb->lo, cb->u, cb->vfirst, cb->y, state_l, cb->slot_floats, meta, ly->vec, ld,
                               C, l};
        rwkv_cu_wkv7(cb->type, cb->N, st, R, cb->H, &wa);
        /* x += output projection (beta = 1 fuses the residual add) */
        if ((rc = gemm(cb, ly->ow, C, C, 0, cb->y, C, 0, cb->x, C, 0, R, 1, 1.0f, 1.0f)))
            return rc;
        rwkv_cu_ln_mix_ffn(cb->type, st, cb->x, cb->u, state_l, cb->slot_floats, cb->layer_floats, meta, ld, R,
                           ly->vec, cb->ffx, C);
        if ((rc = gemm(cb, ly->ffk, F, C, 0, cb->ffx, C, 0, cb->ffh32, F, 0, R, 1, 1.0f, 0.0f)))
            return rc;
        const float scale = cb->type == RWKV_CU_F16 ? 1.0f / RWKV_CU_F16_RELU_SCALE : 1.0f;
        rwkv_cu_relu_sq(cb->type, st, cb->ffh32, cb->ffhT, F, scale, cb->u, state_l + cb->layer_floats - C,
                        cb->slot_floats, meta, ld, R, C);
        if ((rc = gemm(cb, ly->ffv, C, F, 0, cb->ffhT, F, 0, cb->x, C, 0, R, 1, 1.0f / scale, 1.0f)))
            return rc;
    }
    rwkv_cu_ln_out(cb->type, st, cb->x, cb->lnout, cb->hin, cb->ln_out, cb->ln_out + C, meta, ld, R, C);
    CU_LAUNCHED();
    return 0;
}

/* Rows a launch is padded to: powers of two up to 32, then multiples of 32, at most
 * max_rows (so padding costs at most 31 rows of work); without graphs exactly n. */
static int bucket_of(const cuda_backend *cb, int n)
{
    if (!cb->use_graphs)
        return n;
    int b = 1;
    if (n <= 32)
        while (b < n)
            b <<= 1;
    else
        b = (n + 31) / 32 * 32;
    return b < cb->max_rows ? b : cb->max_rows;
}

/* Run body() for R rows: eagerly the first time a bucket is seen, from a graph captured
 * on its second use after that. At most MAX_GRAPHS are kept (least recently used goes). */
static int run_body(cuda_backend *cb, int R)
{
    if (!cb->use_graphs)
        return body(cb, R);
    cu_graph *g = NULL, *lru = &cb->graphs[0];
    for (int i = 0; i < MAX_GRAPHS; i++) {
        if (cb->graphs[i].rows == R) {
            g = &cb->graphs[i];
            break;
        }
        if (cb->graphs[i].last_use < lru->last_use)
            lru = &cb->graphs[i];
    }
    if (!g) {
        g = lru;
        if (g->exec)
            CU(cudaGraphExecDestroy(g->exec));
        const cu_graph fresh = {R, 0, 0, NULL};
        *g = fresh;
    }
    g->last_use = ++cb->n_forwards;
    if (++g->uses < 2)
        return body(cb, R);
    if (!g->exec) {
        cudaGraph_t graph = NULL;
        CU(cudaStreamBeginCapture(cb->st, cudaStreamCaptureModeThreadLocal));
        int rc = body(cb, R);
        cudaError_t e = cudaStreamEndCapture(cb->st, &graph);
        if (rc)
            return rc;
        if (e != cudaSuccess)
            return fail_cuda(cb, "cudaStreamEndCapture(st, &graph)", e, __FILE__, __LINE__);
        e = cudaGraphInstantiate(&g->exec, graph, 0);
        cudaGraphDestroy(graph);
        if (e != cudaSuccess)
            return fail_cuda(cb, "cudaGraphInstantiate(&exec, graph, 0)", e, __FILE__, __LINE__);
    }
    CU(cudaGraphLaunch(g->exec, cb->st));
    return 0;
}

static int cuda_forward(rwkv_backend *be, const rwkv_row *in, int n)
{
    cuda_backend *cb = (cuda_backend *)be;
    if (cb->dead)
        return -EIO;
    const int ld = cb->max_rows, C = cb->C;
    const int R = bucket_of(cb, n);
    int *mh = cb->meta_h;
    int n_runs = 0, nl = 0, want_hidden = 0;
    for (int i = 0; i < R; i++) {
        const int pad = i >= n;
        const int prev = pad ? -1 : in[i].prev;
        mh[RWKV_CU_M_TOK * ld + i] = pad ? 0 : in[i].token;
        mh[RWKV_CU_M_SLOT * ld + i] = pad ? cb->n_slots : in[i].slot;
        mh[RWKV_CU_M_PREV * ld + i] = prev;
        mh[RWKV_CU_M_LAST * ld + i] = pad || i + 1 >= n || in[i + 1].prev < 0;
        mh[RWKV_CU_M_LOGIT * ld + i] = !pad && in[i].logits ? nl++ : -1;
        want_hidden |= !pad && in[i].hidden;
        if (prev < 0) {
            mh[RWKV_CU_M_RUN_START * ld + n_runs] = i;
            mh[RWKV_CU_M_RUN_LEN * ld + n_runs++] = 0;
        }
        mh[RWKV_CU_M_RUN_LEN * ld + n_runs - 1]++;
    }
    mh[RWKV_CU_META * ld] = n_runs;
    CU(cudaMemcpyAsync(cb->meta, mh, (RWKV_CU_META * (size_t)ld + 1) * sizeof(int), cudaMemcpyHostToDevice, cb->st));
    int rc = run_body(cb, R);
    if (rc)
        return rc;
    const size_t V = (size_t)cb->V;
    if (nl) {
        if ((rc = gemm(cb, cb->head, cb->V, C, 0, cb->hin, C, 0, cb->logits, cb->V, 0, nl, 1, 1.0f, 0.0f)))
            return rc;
        CU(cudaMemcpyAsync(cb->logits_h, cb->logits, (size_t)nl * V * sizeof(float), cudaMemcpyDeviceToHost, cb->st));
    }
    if (want_hidden)
        CU(cudaMemcpyAsync(cb->lnout_h, cb->lnout, (size_t)n * C * sizeof(float), cudaMemcpyDeviceToHost, cb->st));
    CU(cudaStreamSynchronize(cb->st));
    for (int i = 0; i < n; i++) { /* RWKV_OUT_ENGINE: left where they were downloaded */
        if (in[i].logits && in[i].logits != RWKV_OUT_ENGINE)
            memcpy(in[i].logits, cb->logits_h + (size_t)mh[RWKV_CU_M_LOGIT * ld + i] * V, V * sizeof(float));
        if (in[i].hidden && in[i].hidden != RWKV_OUT_ENGINE)
            memcpy(in[i].hidden, cb->lnout_h + (size_t)i * C, (size_t)C * sizeof(float));
    }
    return 0;
}

static const float *cuda_output(rwkv_backend *be, int row, int what)
{
    cuda_backend *cb = (cuda_backend *)be;
    if (what)
        return cb->lnout_h + (size_t)row * cb->C;
    const int li = cb->meta_h[RWKV_CU_M_LOGIT * cb->max_rows + row];
    return li >= 0 ? cb->logits_h + (size_t)li * cb->V : NULL;
}

/* ---- state slots ------------------------------------------------------------------------ */

static float *slot_state(cuda_backend *cb, int slot) { return cb->state + (size_t)slot * cb->slot_floats; }

static int cuda_state_reset(rwkv_backend *be, int slot)
{
    cuda_backend *cb = (cuda_backend *)be;
    if (cb->dead)
        return -EIO;
    CU(cudaMemsetAsync(slot_state(cb, slot), 0, cb->slot_floats * sizeof(float), cb->st));
    CU(cudaStreamSynchronize(cb->st));
    return 0;
}

static int cuda_state_copy(rwkv_backend *be, int dst, int src)
{
    cuda_backend *cb = (cuda_backend *)be;
    if (cb->dead)
        return -EIO;
    CU(cudaMemcpyAsync(slot_state(cb, dst), slot_state(cb, src), cb->slot_floats * sizeof(float),
                       cudaMemcpyDeviceToDevice, cb->st));
    CU(cudaStreamSynchronize(cb->st));
    return 0;
}

/* Between the device layout (each head's S transposed) and the portable one (ops.h). */
static void transpose_heads(const cuda_backend *cb, const float *src, float *dst)
{
    const int C = cb->C, H = cb->H, N = cb->N;
    for (int l = 0; l < cb->L; l++) {
        const float *s = src + (size_t)l * cb->layer_floats;
        float *d = dst + (size_t)l * cb->layer_floats;
        memcpy(d, s, (size_t)C * sizeof(float));
        memcpy(d + cb->layer_floats - C, s + cb->layer_floats - C, (size_t)C * sizeof(float));
        for (int h = 0; h < H; h++) {
            const float *sh = s + C + (size_t)h * N * N;
            float *dh = d + C + (size_t)h * N * N;
            for (int i = 0; i < N; i++)
                for (int j = 0; j < N; j++)
                    dh[(size_t)i * N + j] = sh[(size_t)j * N + i];
        }
    }
}

static int cuda_state_export(rwkv_backend *be, int slot, void *buf)
{
    cuda_backend *cb = (cuda_backend *)be;
    if (cb->dead)
        return -EIO;
    CU(cudaMemcpyAsync(cb->xfer_h, slot_state(cb, slot), cb->slot_floats * sizeof(float), cudaMemcpyDeviceToHost,
                       cb->st));
    CU(cudaStreamSynchronize(cb->st));
    transpose_heads(cb, cb->xfer_h, (float *)buf);
    return 0;
}

static int cuda_state_import(rwkv_backend *be, int slot, const void *buf)
{
    cuda_backend *cb = (cuda_backend *)be;
    if (cb->dead)
        return -EIO;
    transpose_heads(cb, (const float *)buf, cb->xfer_h); /* the transposition is its own inverse */
    CU(cudaMemcpyAsync(slot_state(cb, slot), cb->xfer_h, cb->slot_floats * sizeof(float), cudaMemcpyHostToDevice,
                       cb->st));
    CU(cudaStreamSynchronize(cb->st));
    return 0;
}

/* ---- construction ----------------------------------------------------------------------- */

static void cuda_destroy(rwkv_backend *be)
{
    cuda_backend *cb = (cuda_backend *)be;
    if (!cb)
        return;
    for (int i = 0; i < MAX_GRAPHS; i++)
        if (cb->graphs[i].exec)
            cudaGraphExecDestroy(cb->graphs[i].exec);
    if (cb->blas)
        cublasDestroy(cb->blas);
    if (cb->st)
        cudaStreamDestroy(cb->st);
    if (cb->arena)
        cudaFree(cb->arena);
    if (cb->blas_ws)
        cudaFree(cb->blas_ws);
    if (cb->pinned)
        cudaFreeHost(cb->pinned);
    free(cb->layers);
    free(cb);
}

static const rwkv_backend_ops cuda_ops = {
    BACKEND_NAME, cuda_destroy, cuda_forward, cuda_state_reset, cuda_state_copy, cuda_state_export, cuda_state_import,
    cuda_output,
};

/* The device element type: the one every matrix of the model has (bf16 pairs count as
 * bf16), else f32, which holds any of them exactly. */
static int pick_type(const rwkv_model *m)
{
    int t = -1;
    const rwkv_mat *mats[16];
    for (int l = -1; l < m->dims.n_layer; l++) {
        int n = 0;
        if (l < 0) {
            mats[n++] = &m->head;
        } else {
            const rwkv_layer *ly = &m->layers[l];
            const rwkv_mat *lm[] = {&ly->rw, &ly->kw, &ly->vw, &ly->ow, &ly->w1, &ly->w2, &ly->a1,
                                    &ly->a2, &ly->g1, &ly->g2, &ly->ffn_k, &ly->ffn_v, &ly->v1, &ly->v2};
            for (int i = 0; i < (l == 0 ? 12 : 14); i++)
                mats[n++] = lm[i];
        }
        for (int i = 0; i < n; i++) {
            const int mt = mats[i]->dtype == RWKV_DTYPE_F32   ? RWKV_CU_F32
                           : mats[i]->dtype == RWKV_DTYPE_F16 ? RWKV_CU_F16
                                                              : RWKV_CU_BF16;
            if (t >= 0 && mt != t)
                return RWKV_CU_F32;
            t = mt;
        }
    }
    return t < 0 ? RWKV_CU_F32 : t;
}

/* Convert a matrix into dst (row-major, rows_pad × ld elements of the device type, zeros
 * beyond rows × cols) on the host, then upload it. `row` is scratch of cols floats, `host`
 * of rows_pad × ld elements. */
static int upload_mat(cuda_backend *cb, const rwkv_mat *w, void *dst, int rows_pad, int ld, float *row, void *host)
{
    memset(host, 0, (size_t)rows_pad * ld * cb->esz);
    for (int r = 0; r < w->rows; r++) {
        rwkv_mat_get_row(w, r, row);
        for (int k = 0; k < w->cols; k++) {
            const size_t i = (size_t)r * ld + k;
            if (cb->type == RWKV_CU_F32)
                ((float *)host)[i] = row[k];
            else if (cb->type == RWKV_CU_F16)
                ((uint16_t *)host)[i] = rwkv_f32_to_f16(row[k]);
            else
                ((uint16_t *)host)[i] = rwkv_f32_to_bf16(row[k]);
        }
    }
    CU(cudaMemcpy(dst, host, (size_t)rows_pad * ld * cb->esz, cudaMemcpyHostToDevice));
    return 0;
}

static int upload(cuda_backend *cb, char *err, size_t err_len)
{
    const rwkv_model *m = cb->m;
    const int C = cb->C, F = cb->F, D = cb->D, V = cb->V;
    size_t biggest = (size_t)V * C;
    if ((size_t)F * C > biggest)
        biggest = (size_t)F * C;
    float *row = (float *)malloc(((size_t)(F > V ? F : V) + C) * sizeof(float));
    void *host = malloc(biggest * sizeof(float));
    float *vec = (float *)malloc((size_t)RWKV_CU_V_COUNT * C * sizeof(float));
    int rc = 0;
    if (!row || !host || !vec) {
        set_err(err, err_len, "%s backend: cannot allocate %zu bytes of host staging memory", BACKEND_NAME,
                biggest * sizeof(float));
        rc = -ENOMEM;
        goto out;
    }
    if (cudaMemcpy(cb->emb, m->emb, (size_t)V * C * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemcpy(cb->ln_out, m->ln_out_w, (size_t)C * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemcpy(cb->ln_out + C, m->ln_out_b, (size_t)C * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess) {
        rc = fail_cuda(cb, "cudaMemcpy(embedding)", cudaGetLastError(), __FILE__, __LINE__);
        goto out;
    }
    if ((rc = upload_mat(cb, &m->head, cb->head, V, C, row, host)))
        goto out;
    for (int l = 0; l < cb->L && !rc; l++) {
        const rwkv_layer *ly = &m->layers[l];
        const cu_layer *cl = &cb->layers[l];
        const size_t es = cb->esz;
        const rwkv_mat *l1[4] = {&ly->v1, &ly->w1, &ly->a1, &ly->g1}, *l2[4] = {&ly->v2, &ly->w2, &ly->a2, &ly->g2};
        rc = upload_mat(cb, &ly->rw, cl->rkv, C, C, row, host);
        if (!rc) rc = upload_mat(cb, &ly->kw, at(cl->rkv, (size_t)C * C, es), C, C, row, host);
        if (!rc) rc = upload_mat(cb, &ly->vw, at(cl->rkv, 2 * (size_t)C * C, es), C, C, row, host);
        if (!rc) rc = upload_mat(cb, &ly->ow, cl->ow, C, C, row, host);
        if (!rc) rc = upload_mat(cb, &ly->ffn_k, cl->ffk, F, C, row, host);
        if (!rc) rc = upload_mat(cb, &ly->ffn_v, cl->ffv, C, F, row, host);
        for (int i = 0; i < 4 && !rc; i++) {
            if (l == 0 && i == RWKV_CU_L_V)
                continue; /* layer 0 has no value residual: its segment stays unused */
            rc = upload_mat(cb, l1[i], at(cl->lora1, (size_t)i * D * C, es), D, C, row, host);
            if (!rc)
                rc = upload_mat(cb, l2[i], at(cl->lora2, (size_t)i * C * D, es), C, D, row, host);
        }
        if (rc)
            break;
        const float *src[RWKV_CU_V_COUNT] = {ly->ln1_w, ly->ln1_b, ly->x_r, ly->x_k, ly->x_v, ly->x_w, ly->x_a,
                                             ly->x_g, ly->w0, ly->a0, ly->v0, ly->k_k, ly->k_a, ly->r_k,
                                             ly->lnx_w, ly->lnx_b, ly->ln2_w, ly->ln2_b, ly->ffn_x_k};
        for (int i = 0; i < RWKV_CU_V_COUNT; i++) {
            if (src[i])
                memcpy(vec + (size_t)i * C, src[i], (size_t)C * sizeof(float));
            else
                memset(vec + (size_t)i * C, 0, (size_t)C * sizeof(float)); /* layer-0 v0 */
        }
        if (cudaMemcpy(cl->vec, vec, (size_t)RWKV_CU_V_COUNT * C * sizeof(float), cudaMemcpyHostToDevice) !=
            cudaSuccess)
            rc = fail_cuda(cb, "cudaMemcpy(layer vectors)", cudaGetLastError(), __FILE__, __LINE__);
    }
    if (rc && err && err_len && !(err[0]))
        set_err(err, err_len, "%s", cb->base.last_error);
out:
    free(row);
    free(host);
    free(vec);
    return rc;
}

static size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

/* Carve the device arena: pass base = NULL to measure. */
static size_t carve(cuda_backend *cb, char *base)
{
    const size_t C = (size_t)cb->C, F = (size_t)cb->F, D = (size_t)cb->D, V = (size_t)cb->V, R = (size_t)cb->max_rows;
    const size_t es = cb->esz;
    size_t off = 0;
#define TAKE(ptr, bytes) \
    do { \
        if (base) \
            *(void **)&(ptr) = base + off; \
        off += align256(bytes); \
    } while (0)
    TAKE(cb->state, (size_t)(cb->n_slots + 1) * cb->slot_floats * sizeof(float));
    TAKE(cb->emb, V * C * sizeof(float));
    TAKE(cb->ln_out, 2 * C * sizeof(float));
    TAKE(cb->head, V * C * es);
    for (int l = 0; l < cb->L; l++) {
        cu_layer *ly = &cb->layers[l];
        TAKE(ly->rkv, 3 * C * C * es);
        TAKE(ly->ow, C * C * es);
        TAKE(ly->lora1, 4 * D * C * es);
        TAKE(ly->lora2, 4 * C * D * es);
        TAKE(ly->ffk, F * C * es);
        TAKE(ly->ffv, C * F * es);
        TAKE(ly->vec, RWKV_CU_V_COUNT * C * sizeof(float));
    }
    TAKE(cb->x, R * C * sizeof(float));
    TAKE(cb->u, R * C * sizeof(float));
    TAKE(cb->rkv, 3 * R * C * sizeof(float));
    TAKE(cb->h32, 4 * R * D * sizeof(float));
    TAKE(cb->lo, 4 * R * C * sizeof(float));
    TAKE(cb->vfirst, R * C * sizeof(float));
    TAKE(cb->ffh32, R * F * sizeof(float));
    TAKE(cb->lnout, R * C * sizeof(float));
    TAKE(cb->logits, R * V * sizeof(float));
    TAKE(cb->mix, 6 * R * C * es);
    TAKE(cb->hT, 4 * R * D * es);
    TAKE(cb->y, R * C * es);
    TAKE(cb->ffx, R * C * es);
    TAKE(cb->ffhT, R * F * es);
    TAKE(cb->hin, R * C * es);
    TAKE(cb->meta, ((size_t)RWKV_CU_META * R + 1) * sizeof(int));
#undef TAKE
    return off;
}

static int probe(char *msg, size_t len, int *dev_out)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        set_err(msg, len, "no usable GPU: cudaGetDeviceCount: %s (%s)", cudaGetErrorName(e), cudaGetErrorString(e));
        cudaGetLastError(); /* not sticky: clear it */
        return -ENODEV;
    }
    if (n < 1) {
        set_err(msg, len, "no usable GPU: no CUDA device");
        return -ENODEV;
    }
    cudaDeviceProp p;
    if ((e = cudaGetDeviceProperties(&p, 0)) != cudaSuccess) {
        set_err(msg, len, "no usable GPU: cudaGetDeviceProperties: %s", cudaGetErrorString(e));
        return -ENODEV;
    }
    set_err(msg, len, "%s, %.0f GiB, sm_%d%d, %d SMs", p.name, (double)p.totalGlobalMem / (1024.0 * 1024 * 1024),
            p.major, p.minor, p.multiProcessorCount);
    if (dev_out)
        *dev_out = 0;
    return 0;
}

/* the module entry points (declared, with default visibility, in backend.h) */
extern "C" {

const int rwkv_module_abi = RWKV_MODULE_ABI;

int rwkv_module_probe(char *msg, size_t len) { return probe(msg, len, NULL); }

int rwkv_module_backend_new(const rwkv_model *m, const rwkv_engine_opts *opts, rwkv_backend **out, char *err,
                                   size_t err_len)
{
    const rwkv_dims *d = &m->dims;
    if (d->arch != RWKV_ARCH_X070) {
        /* the kernels here are RWKV-7's; the older generations run on the cpu backend */
        set_err(err, err_len, "%s backend: %s models are not supported (RWKV-7 only; use the cpu backend)",
                BACKEND_NAME, rwkv_arch_name(d->arch));
        return -ENOTSUP;
    }
    char why[256];
    int dev = 0, rc = probe(why, sizeof why, &dev);
    if (rc) {
        set_err(err, err_len, "%s backend: %s", BACKEND_NAME, why);
        return rc;
    }
    if (d->head_size != 32 && d->head_size != 64 && d->head_size != 128) {
        set_err(err, err_len, "%s backend: head_size %d is not supported (32, 64 or 128)", BACKEND_NAME,
                d->head_size);
        return -EINVAL;
    }
    cuda_backend *cb = (cuda_backend *)calloc(1, sizeof *cb);
    if (!cb)
        return -ENOMEM;
    cb->base.ops = &cuda_ops;
    cb->m = m;
    cb->L = d->n_layer;
    cb->C = d->n_embd;
    cb->H = d->n_head;
    cb->N = d->head_size;
    cb->F = d->n_ffn;
    cb->V = d->n_vocab;
    cb->D = d->d_w;
    if (d->d_a > cb->D) cb->D = d->d_a;
    if (d->d_v > cb->D) cb->D = d->d_v;
    if (d->d_g > cb->D) cb->D = d->d_g;
    cb->n_slots = opts->n_slots;
    cb->max_rows = opts->max_batch;
    cb->slot_floats = rwkv_state_floats(d);
    cb->layer_floats = cb->slot_floats / (size_t)d->n_layer;
    cb->type = pick_type(m);
    cb->esz = cb->type == RWKV_CU_F32 ? 4 : 2;
    cb->cdt = cb->type == RWKV_CU_F32 ? CUDA_R_32F : cb->type == RWKV_CU_F16 ? CUDA_R_16F : CUDA_R_16BF;
    const char *g = getenv("RWKV_CUDA_GRAPHS");
    cb->use_graphs = !(g && strcmp(g, "0") == 0);
    cb->layers = (cu_layer *)calloc((size_t)cb->L, sizeof(cu_layer));
    size_t free_b = 0, total_b = 0;
    cudaError_t e;
    if (!cb->layers) {
        rc = -ENOMEM;
        goto fail;
    }
    if ((e = cudaSetDevice(dev)) != cudaSuccess || (e = cudaMemGetInfo(&free_b, &total_b)) != cudaSuccess) {
        set_err(err, err_len, "%s backend: cannot use device %d: %s", BACKEND_NAME, dev, cudaGetErrorString(e));
        rc = -ENODEV;
        goto fail;
    }
    cb->arena_bytes = carve(cb, NULL);
    {
        const size_t ws_bytes = 32u << 20;
        const size_t pinned = align256(((size_t)RWKV_CU_META * cb->max_rows + 1) * sizeof(int)) +
                              align256((size_t)cb->max_rows * cb->V * sizeof(float)) +
                              align256((size_t)cb->max_rows * cb->C * sizeof(float)) +
                              align256(cb->slot_floats * sizeof(float));
        if (cb->arena_bytes + ws_bytes > free_b) {
            set_err(err, err_len,
                    "%s backend: out of device memory: weights, %d state slots and scratch for %d rows need %.1f MiB, "
                    "%.1f MiB free of %.1f MiB",
                    BACKEND_NAME, cb->n_slots, cb->max_rows, (double)(cb->arena_bytes + ws_bytes) / 1048576.0,
                    (double)free_b / 1048576.0, (double)total_b / 1048576.0);
            rc = -ENOMEM;
            goto fail;
        }
        if ((e = cudaMalloc(&cb->arena, cb->arena_bytes)) != cudaSuccess ||
            (e = cudaMalloc(&cb->blas_ws, ws_bytes)) != cudaSuccess) {
            set_err(err, err_len, "%s backend: cudaMalloc of %.1f MiB failed: %s", BACKEND_NAME,
                    (double)cb->arena_bytes / 1048576.0, cudaGetErrorString(e));
            rc = -ENOMEM;
            goto fail;
        }
        if ((e = cudaMallocHost(&cb->pinned, pinned)) != cudaSuccess) {
            set_err(err, err_len, "%s backend: cudaMallocHost of %.1f MiB failed: %s", BACKEND_NAME,
                    (double)pinned / 1048576.0, cudaGetErrorString(e));
            rc = -ENOMEM;
            goto fail;
        }
        char *p = (char *)cb->pinned;
        cb->meta_h = (int *)p;
        p += align256(((size_t)RWKV_CU_META * cb->max_rows + 1) * sizeof(int));
        cb->logits_h = (float *)p;
        p += align256((size_t)cb->max_rows * cb->V * sizeof(float));
        cb->lnout_h = (float *)p;
        p += align256((size_t)cb->max_rows * cb->C * sizeof(float));
        cb->xfer_h = (float *)p;
        carve(cb, (char *)cb->arena);
        cublasStatus_t s;
        if ((e = cudaStreamCreateWithFlags(&cb->st, cudaStreamNonBlocking)) != cudaSuccess) {
            set_err(err, err_len, "%s backend: cudaStreamCreate: %s", BACKEND_NAME, cudaGetErrorString(e));
            rc = -EIO;
            goto fail;
        }
        if ((s = cublasCreate(&cb->blas)) != CUBLAS_STATUS_SUCCESS ||
            (s = cublasSetStream(cb->blas, cb->st)) != CUBLAS_STATUS_SUCCESS ||
            (s = cublasSetMathMode(cb->blas, CUBLAS_DEFAULT_MATH)) != CUBLAS_STATUS_SUCCESS
#if defined(__CUDACC__)
            || (s = cublasSetWorkspace(cb->blas, cb->blas_ws, ws_bytes)) != CUBLAS_STATUS_SUCCESS
#endif
        ) {
            set_err(err, err_len, "%s backend: cuBLAS set-up failed: %s", BACKEND_NAME, cublasGetStatusString(s));
            rc = -EIO;
            goto fail;
        }
    }
    /* every slot, the padding slot and the scratch start at zero */
    if ((e = cudaMemset(cb->state, 0, (size_t)(cb->n_slots + 1) * cb->slot_floats * sizeof(float))) != cudaSuccess) {
        set_err(err, err_len, "%s backend: cudaMemset: %s", BACKEND_NAME, cudaGetErrorString(e));
        rc = -EIO;
        goto fail;
    }
    if ((rc = upload(cb, err, err_len)))
        goto fail;
    /* the zeroing and uploads ran on the legacy stream, which our non-blocking stream does
     * not wait for: finish them before the first forward */
    if ((e = cudaDeviceSynchronize()) != cudaSuccess) {
        set_err(err, err_len, "%s backend: cudaDeviceSynchronize after the upload: %s", BACKEND_NAME,
                cudaGetErrorString(e));
        rc = -EIO;
        goto fail;
    }
    *out = &cb->base;
    return 0;
fail:
    cuda_destroy(&cb->base);
    return rc;
}

} /* extern "C" */
