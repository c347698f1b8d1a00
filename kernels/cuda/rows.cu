/* rows.cu — the per-row kernels: embedding, the two LayerNorm + token-shift passes, the
 * LoRA and ReLU-square activations, and the final LayerNorm that also gathers the
 * vocabulary head's input.
 *
 * One block of ROW_THREADS per row. A row's result is computed from its own inputs with a
 * reduction order fixed by the block size, so it does not depend on the other rows of the
 * launch. Token shift: a row whose run continues from an earlier row of the same call
 * recomputes that row's LayerNorm itself (same code, same bits) instead of reading
 * another block's output, so no block waits for another.
 */
#include "common.cuh"
#include "ops.h"

#define ROW_THREADS 256
static const float LN_EPS = 1e-5f;

/* mean and 1/sqrt(var + eps) of x[0..C), in every thread */
__device__ __forceinline__ void ln_stats(const float *x, int C, float *sh, float *mean, float *inv)
{
    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        s += x[c];
    const float m = cu_block_sum(s, sh) / (float)C;
    float q = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float d = x[c] - m;
        q += d * d;
    }
    const float var = cu_block_sum(q, sh) / (float)C;
    *mean = m;
    *inv = 1.0f / sqrtf(var + LN_EPS);
}

__global__ void __launch_bounds__(ROW_THREADS) k_embed(float *x, const float *emb, const int *tok, int C)
{
    const int b = blockIdx.x;
    const float *e = emb + (size_t)tok[b] * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        x[(size_t)b * C + c] = e[c];
}

void rwkv_cu_embed(cudaStream_t st, float *x, const float *emb, const int *meta, int ld_rows, int R, int C)
{
    RWKV_LAUNCH(k_embed, R, ROW_THREADS, st, x, emb, meta + RWKV_CU_M_TOK * ld_rows, C);
}

/* The LayerNorm + token-shift pass before either mix: u[b] = LayerNorm(x[b]; vec[ln],
 * vec[ln + 1]) and, for the NMIX mixes from vec[mix] on, out[k][b] = u + (p - u) * mu_k,
 * where p is the LayerNorm of the run's previous row or the slot's stored shift vector
 * (shift_l: slot 0's, slots slot_floats apart). out: (NMIX, ld_rows, C). */
template <class T, int NMIX>
__global__ void __launch_bounds__(ROW_THREADS)
    k_ln_shift(const float *x, float *u, const float *shift_l, size_t slot_floats, const int *meta, int ld_rows,
               const float *vec, int ln, int mix, T *out, int C)
{
    __shared__ float sh[32];
    const int b = blockIdx.x;
    const int prev = meta[RWKV_CU_M_PREV * ld_rows + b];
    const float *lw = vec + (size_t)ln * C, *lb = vec + (size_t)(ln + 1) * C;
    const float *xb = x + (size_t)b * C;
    float m, inv, pm = 0.0f, pinv = 0.0f;
    ln_stats(xb, C, sh, &m, &inv);
    const float *xp = prev >= 0 ? x + (size_t)prev * C : NULL;
    const float *sp = shift_l + (size_t)meta[RWKV_CU_M_SLOT * ld_rows + b] * slot_floats;
    if (xp)
        ln_stats(xp, C, sh, &pm, &pinv);
    const size_t plane = (size_t)ld_rows * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float uc = (xb[c] - m) * inv * lw[c] + lb[c];
        const float pc = xp ? (xp[c] - pm) * pinv * lw[c] + lb[c] : sp[c];
        u[(size_t)b * C + c] = uc;
        const float dl = pc - uc;
        RWKV_UNROLL
        for (int k = 0; k < NMIX; k++)
            out[k * plane + (size_t)b * C + c] = cu_from_float<T>(uc + dl * vec[(size_t)(mix + k) * C + c]);
    }
}

template <class T>
__global__ void __launch_bounds__(ROW_THREADS) k_lora_act(const float *h32, T *hT, int ld_rows, int D, int first)
{
    const int b = blockIdx.x, seg = first + blockIdx.y;
    const size_t o = (size_t)seg * ld_rows * D + (size_t)b * D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float v = h32[o + d];
        if (seg == RWKV_CU_L_W)
            v = tanhf(v);
        else if (seg == RWKV_CU_L_G)
            v = cu_sigmoid(v);
        hT[o + d] = cu_from_float<T>(v);
    }
}

template <class T>
__global__ void __launch_bounds__(ROW_THREADS)
    k_relu_sq(const float *ffh32, T *ffhT, int F, float scale, const float *u, float *pffn_l, size_t slot_floats,
              const int *meta, int ld_rows, int C)
{
    const int b = blockIdx.x;
    for (int f = threadIdx.x; f < F; f += blockDim.x) {
        const float v = fmaxf(ffh32[(size_t)b * F + f], 0.0f);
        ffhT[(size_t)b * F + f] = cu_from_float<T>(v * v * scale);
    }
    if (meta[RWKV_CU_M_LAST * ld_rows + b]) {
        float *dst = pffn_l + (size_t)meta[RWKV_CU_M_SLOT * ld_rows + b] * slot_floats;
        for (int c = threadIdx.x; c < C; c += blockDim.x)
            dst[c] = u[(size_t)b * C + c];
    }
}

template <class T>
__global__ void __launch_bounds__(ROW_THREADS)
    k_ln_out(const float *x, float *lnout, T *hin, const float *w, const float *bias, const int *meta, int ld_rows,
             int C)
{
    __shared__ float sh[32];
    const int b = blockIdx.x;
    const int li = meta[RWKV_CU_M_LOGIT * ld_rows + b];
    const float *xb = x + (size_t)b * C;
    float m, inv;
    ln_stats(xb, C, sh, &m, &inv);
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float v = (xb[c] - m) * inv * w[c] + bias[c];
        lnout[(size_t)b * C + c] = v;
        if (li >= 0)
            hin[(size_t)li * C + c] = cu_from_float<T>(v);
    }
}

/* ---- launchers: the runtime element type picks the instance ------------------------- */

#define DISPATCH_T(type, ...) \
    do { \
        if ((type) == RWKV_CU_F32) { typedef float T; __VA_ARGS__; } \
        else if ((type) == RWKV_CU_F16) { typedef __half T; __VA_ARGS__; } \
        else { typedef __nv_bfloat16 T; __VA_ARGS__; } \
    } while (0)

template <class T, int NMIX>
static void launch_ln_shift(cudaStream_t st, int R, const float *x, float *u, const float *shift_l,
                            size_t slot_floats, const int *meta, int ld_rows, const float *vec, int ln, int mix, T *out,
                            int C)
{
    void (*k_ln_shift_inst)(const float *, float *, const float *, size_t, const int *, int, const float *, int, int,
                            T *, int) = k_ln_shift<T, NMIX>;
    RWKV_LAUNCH(k_ln_shift_inst, R, ROW_THREADS, st, x, u, shift_l, slot_floats, meta, ld_rows, vec, ln, mix, out, C);
}

void rwkv_cu_ln_mix_att(int type, cudaStream_t st, const float *x, float *u, const float *state_l,
                        size_t slot_floats, const int *meta, int ld_rows, int R, const float *vec, void *mix, int C)
{
    DISPATCH_T(type, launch_ln_shift<T, 6>(st, R, x, u, state_l, slot_floats, meta, ld_rows, vec, RWKV_CU_V_LN1_W,
                                           RWKV_CU_V_XR, (T *)mix, C));
}

void rwkv_cu_ln_mix_ffn(int type, cudaStream_t st, const float *x, float *u, const float *state_l,
                        size_t slot_floats, size_t layer_floats, const int *meta, int ld_rows, int R,
                        const float *vec, void *xk, int C)
{
    const float *pffn = state_l + layer_floats - C;
    DISPATCH_T(type, launch_ln_shift<T, 1>(st, R, x, u, pffn, slot_floats, meta, ld_rows, vec, RWKV_CU_V_LN2_W,
                                           RWKV_CU_V_FFN_XK, (T *)xk, C));
}

void rwkv_cu_lora_act(int type, cudaStream_t st, const float *h32, void *hT, int ld_rows, int R, int D, int first)
{
    const dim3 grid((unsigned)R, (unsigned)(RWKV_CU_L_COUNT - first));
    DISPATCH_T(type, RWKV_LAUNCH(k_lora_act<T>, grid, ROW_THREADS, st, h32, (T *)hT, ld_rows, D, first));
}

void rwkv_cu_relu_sq(int type, cudaStream_t st, const float *ffh32, void *ffhT, int F, float scale, const float *u,
                     float *ffn_state_l, size_t slot_floats, const int *meta, int ld_rows, int R, int C)
{
    DISPATCH_T(type, RWKV_LAUNCH(k_relu_sq<T>, R, ROW_THREADS, st, ffh32, (T *)ffhT, F, scale, u, ffn_state_l,
                                 slot_floats, meta, ld_rows, C));
}

void rwkv_cu_ln_out(int type, cudaStream_t st, const float *x, float *lnout, void *hin, const float *w,
                    const float *bias, const int *meta, int ld_rows, int R, int C)
{
    DISPATCH_T(type, RWKV_LAUNCH(k_ln_out<T>, R, ROW_THREADS, st, x, lnout, (T *)hin, w, bias, meta, ld_rows, C));
}
