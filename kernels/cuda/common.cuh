/* common.cuh — what every kernels/cuda source shares: the toolkit (or the SIMT emulator),
 * the launch macro, element types and the block reduction.
 *
 * The same sources compile two ways: with nvcc for the GPU (`__CUDACC__`), and as host
 * C++ against tests/simt/simt.h for the emulated backend `cuda-emu`. So kernels use only
 * what the emulator provides (see tests/simt/README.md) and are launched through
 * RWKV_LAUNCH, never with <<< >>> directly. No dynamic shared memory.
 */
#ifndef RWKV_CUDA_COMMON_CUH
#define RWKV_CUDA_COMMON_CUH

#if defined(__CUDACC__)
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#define RWKV_LAUNCH(kernel, grid, block, stream, ...) kernel<<<(grid), (block), 0, (stream)>>>(__VA_ARGS__)
#else
#include "simt.h"
#define RWKV_LAUNCH(kernel, grid, block, stream, ...) SIMT_LAUNCH(kernel, grid, block, stream, __VA_ARGS__)
#endif

#include <stddef.h>
#include <stdint.h>

/* Loop unrolling hint (host compilers do not know #pragma unroll). */
#if defined(__CUDACC__)
#define RWKV_UNROLL _Pragma("unroll")
#else
#define RWKV_UNROLL
#endif

/* Element type of device weights and of every GEMM input (activations are rounded to it);
 * GEMM outputs and everything elementwise are fp32. */
enum rwkv_cu_type { RWKV_CU_F32 = 0, RWKV_CU_F16 = 1, RWKV_CU_BF16 = 2 };

/* fp16 GEMM inputs that are squares of ReLU outputs are stored divided by this power of
 * two (and the product multiplied back through cuBLAS's alpha), so that activations up to
 * 65504 * 64 (k up to about 2047) stay finite; larger ones saturate at the fp16 maximum. */
#define RWKV_CU_F16_RELU_SCALE 64.0f

template <class T> __device__ __forceinline__ T cu_from_float(float x);
template <> __device__ __forceinline__ float cu_from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __half cu_from_float<__half>(float x)
{
    return __float2half_rn(fminf(fmaxf(x, -65504.0f), 65504.0f));
}
template <> __device__ __forceinline__ __nv_bfloat16 cu_from_float<__nv_bfloat16>(float x)
{
    return __float2bfloat16_rn(x);
}

/* Sum of v over the block, the same value in every thread. blockDim.x is a multiple of 32
 * (at most 1024); sh is a __shared__ float[32] of the caller. The order of additions is
 * fixed by blockDim alone (warp butterflies, then the warp sums in order), so a row's
 * result never depends on which other rows share the launch. */
__device__ __forceinline__ float cu_block_sum(float v, float *sh)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads(); /* sh may still be read by a previous call */
    if (lane == 0)
        sh[wid] = v;
    __syncthreads();
    float t = 0.0f;
    for (int i = 0; i < nw; i++)
        t += sh[i];
    return t;
}

__device__ __forceinline__ float cu_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

#endif
