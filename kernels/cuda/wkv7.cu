/* wkv7.cu — the RWKV-7 time-mix core (spec §2.3 steps 8-14), fused, one block per
 * (run, head) and one thread per value index i of the head.
 *
 * Thread i keeps row i of the head's N×N state in registers for the whole run: it is read
 * from memory once at the start and written once at the end, however many rows (tokens)
 * the run has, so a long event costs one pass over the state. Per row, thread j first
 * derives the key-side vectors of index j (removal key kk, kk·a, adjusted key kt, decay w,
 * receptance r) into shared memory; after one barrier every thread updates its state row
 *   s = -S_i·kk;  S_ij <- S_ij·w_j + s·(kk·a)_j + v_i·kt_j;  y_i = S_i·r
 * then GroupNorm over the head, the r·k bonus and the gate. Sums over j run in order j =
 * 0..N-1 and block sums in a fixed tree, so results depend on nothing but the row's data.
 * Blocks beyond the launch's run count exit at once (a captured graph is launched with the
 * bucket's largest grid).
 */
#include "common.cuh"
#include "ops.h"

static const float GN_EPS = 64e-5f;
static const float DECAY_K = 0.606531f; /* e^-0.5, as the one-token references write it */

template <int N, class T> __global__ void __launch_bounds__(N) k_wkv7(rwkv_cu_wkv_args a)
{
    __shared__ float kk_s[N], ab_s[N], kt_s[N], w_s[N], r_s[N], sh[32];
    const int run = blockIdx.x, h = blockIdx.y, i = threadIdx.x;
    const int ld = a.ld_rows, C = a.C, o = h * N;
    const int *meta = a.meta;
    if (run >= meta[RWKV_CU_META * ld])
        return;
    const int b0 = meta[RWKV_CU_M_RUN_START * ld + run], nb = meta[RWKV_CU_M_RUN_LEN * ld + run];
    const int slot = meta[RWKV_CU_M_SLOT * ld + b0];
    float *st = a.state_l + (size_t)slot * a.slot_floats;
    float *S = st + C + (size_t)h * N * N; /* transposed: S_ij at j*N + i */
    float s[N];
RWKV_UNROLL
    for (int j = 0; j < N; j++)
        s[j] = S[j * N + i];

    const float *vec = a.vec;
    const float k_k = vec[RWKV_CU_V_KK * C + o + i], k_a = vec[RWKV_CU_V_KA * C + o + i];
    const float a0 = vec[RWKV_CU_V_A0 * C + o + i], w0 = vec[RWKV_CU_V_W0 * C + o + i];
    const float v0 = vec[RWKV_CU_V_V0 * C + o + i], r_k = vec[RWKV_CU_V_RK * C + o + i];
    const float gw = vec[RWKV_CU_V_LNX_W * C + o + i], gb = vec[RWKV_CU_V_LNX_B * C + o + i];
    const size_t plane = (size_t)ld * C;
    const float *R_ = a.rkv, *K_ = a.rkv + plane, *V_ = a.rkv + 2 * plane;
    const float *VR = a.lo + RWKV_CU_L_V * plane, *Z = a.lo + RWKV_CU_L_W * plane;
    const float *A = a.lo + RWKV_CU_L_A * plane, *G = a.lo + RWKV_CU_L_G * plane;
    T *Y = (T *)a.y;

    for (int b = b0; b < b0 + nb; b++) {
        const size_t ro = (size_t)b * C + o + i;
        const float k = K_[ro], r = R_[ro];
        float kk = k * k_k;
        const float nrm = sqrtf(cu_block_sum(kk * kk, sh));
        kk *= 1.0f / (nrm > 1e-12f ? nrm : 1e-12f);
        const float sg = cu_sigmoid(a0 + A[ro]);
        const float w = expf(-DECAY_K * cu_sigmoid(w0 + Z[ro]));
        const float kt = k * (1.0f + (sg - 1.0f) * k_a);
        float v = V_[ro];
        if (a.layer == 0) {
            a.vfirst[ro] = v;
        } else {
            const float vf = a.vfirst[ro];
            v = v + (vf - v) * cu_sigmoid(v0 + VR[ro]);
        }
        kk_s[i] = kk;
        ab_s[i] = kk * sg;
        kt_s[i] = kt;
        w_s[i] = w;
        r_s[i] = r;
        __syncthreads();
        float sa = 0.0f;
RWKV_UNROLL
        for (int j = 0; j < N; j++)
            sa += s[j] * kk_s[j];
        sa = -sa;
        float y = 0.0f;
RWKV_UNROLL
        for (int j = 0; j < N; j++) {
            const float nv = s[j] * w_s[j] + sa * ab_s[j] + v * kt_s[j];
            s[j] = nv;
            y += nv * r_s[j];
        }
        /* GroupNorm over the head, bonus (r·kt·r_k summed over the head), gate; the block
         * sums' barriers also keep the next row from overwriting the shared vectors early */
        const float mean = cu_block_sum(y, sh) / (float)N;
        const float d = y - mean;
        const float var = cu_block_sum(d * d, sh) / (float)N;
        const float ginv = 1.0f / sqrtf(var + GN_EPS);
        const float beta = cu_block_sum(r * kt * r_k, sh);
        Y[ro] = cu_from_float<T>((d * ginv * gw + gb + beta * v) * G[ro]);
    }
RWKV_UNROLL
    for (int j = 0; j < N; j++)
        S[j * N + i] = s[j];
    st[o + i] = a.u[(size_t)(b0 + nb - 1) * C + o + i]; /* p_att <- LayerNorm1 of the last row */
}

template <int N, class T> static void launch_t(cudaStream_t st, dim3 grid, const rwkv_cu_wkv_args *a)
{
    void (*k_wkv7_inst)(rwkv_cu_wkv_args) = k_wkv7<N, T>;
    RWKV_LAUNCH(k_wkv7_inst, grid, N, st, *a);
}

template <int N> static void launch_n(int type, cudaStream_t st, dim3 grid, const rwkv_cu_wkv_args *a)
{
    if (type == RWKV_CU_F32)
        launch_t<N, float>(st, grid, a);
    else if (type == RWKV_CU_F16)
        launch_t<N, __half>(st, grid, a);
    else
        launch_t<N, __nv_bfloat16>(st, grid, a);
}

void rwkv_cu_wkv7(int type, int N, cudaStream_t st, int max_runs, int H, const rwkv_cu_wkv_args *a)
{
    const dim3 grid((unsigned)max_runs, (unsigned)H);
    if (N == 32)
        launch_n<32>(type, st, grid, a);
    else if (N == 64)
        launch_n<64>(type, st, grid, a);
    else
        launch_n<128>(type, st, grid, a);
}
