// simt_cublas.cc: host implementation of the cuBLAS GEMM subset the CUDA backend calls.
//
// It reproduces cuBLAS's interface contract (column-major layout, argument checks, supported type
// combinations, beta == 0 never reads C, the handle's stream and graph capture), not its numerics:
// each output is one fp32 sum over k in ascending order of products of the widened inputs, the
// same on every run. TF32 modes round the fp32 inputs to TF32 first, so tolerance tests see a
// TF32-sized error. Invariant: every matrix is checked to lie inside live device allocations
// before anything is queued, so host pointers and wrong leading dimensions fail loudly.
#include <algorithm>
#include <cstdio>
#include <mutex>
#include <set>
#include <vector>

#include "simt.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t mode = CUBLAS_DEFAULT_MATH;
};

namespace {

std::mutex &g_handles_lock = *new std::mutex;
std::set<cublasContext *> &g_handles = *new std::set<cublasContext *>;

bool handle_ok(cublasHandle_t h) {
  std::lock_guard<std::mutex> lk(g_handles_lock);
  return h && g_handles.count(h);
}

size_t elem_bytes(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

float load(const void *p, cudaDataType t, size_t i) {
  switch (t) {
    case CUDA_R_32F: return static_cast<const float *>(p)[i];
    case CUDA_R_16F: return __half2float(static_cast<const __half *>(p)[i]);
    default: return __bfloat162float(static_cast<const __nv_bfloat16 *>(p)[i]);
  }
}

void store(void *p, cudaDataType t, size_t i, float v) {
  switch (t) {
    case CUDA_R_32F: static_cast<float *>(p)[i] = v; break;
    case CUDA_R_16F: static_cast<__half *>(p)[i] = __float2half_rn(v); break;
    default: static_cast<__nv_bfloat16 *>(p)[i] = __float2bfloat16_rn(v); break;
  }
}

float round_tf32(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u) return f;  // Inf, NaN
  u = (u + 0xfffu + ((u >> 13) & 1)) & ~0x1fffu;
  memcpy(&f, &u, 4);
  return f;
}

bool types_supported(cudaDataType a, cudaDataType b, cudaDataType c, cublasComputeType_t compute) {
  if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_PEDANTIC && compute != CUBLAS_COMPUTE_32F_FAST_TF32)
    return false;
  if (a != b) return false;
  if (compute == CUBLAS_COMPUTE_32F_FAST_TF32) return a == CUDA_R_32F && c == CUDA_R_32F;
  if (a == CUDA_R_32F) return c == CUDA_R_32F;
  if (a == CUDA_R_16F) return c == CUDA_R_16F || c == CUDA_R_32F;
  if (a == CUDA_R_16BF) return c == CUDA_R_16BF || c == CUDA_R_32F;
  return false;
}

// [p + lo*esz, p + hi*esz) over all batches must lie in one device allocation
bool matrix_ok(const char *call, const char *arg, const void *p, cudaDataType t, long long rows, long long cols,
               long long ld, long long stride, int batch) {
  if (rows == 0 || cols == 0) return true;
  long long ext = (cols - 1) * ld + rows, last = (long long)(batch - 1) * stride;
  long long lo = std::min(0LL, last), hi = std::max(0LL, last) + ext;
  const char *start = static_cast<const char *>(p) + lo * (long long)elem_bytes(t);
  if (!p || !simt_check_device_range(start, (size_t)(hi - lo) * elem_bytes(t), call, arg)) {
    fprintf(stderr, "simt: %s: %s is %lld x %lld with ld %lld, stride %lld, %d batch(es): not device memory "
            "for its whole extent\n", call, arg, rows, cols, ld, stride, batch);
    return false;
  }
  return true;
}

struct Gemm {
  cublasOperation_t ta, tb;
  int m, n, k;
  float alpha, beta;
  const void *A, *B;
  void *C;
  cudaDataType at, bt, ct;
  int lda, ldb, ldc;
  long long sa, sb, sc;
  int batch;
  bool tf32;
};

void run_gemm(const Gemm &g) {
  std::vector<float> a((size_t)g.m * g.k), b((size_t)g.n * g.k);
  for (int p = 0; p < g.batch; p++) {
    const char *A = static_cast<const char *>(g.A) + p * g.sa * (long long)elem_bytes(g.at);
    const char *B = static_cast<const char *>(g.B) + p * g.sb * (long long)elem_bytes(g.bt);
    char *C = static_cast<char *>(g.C) + p * g.sc * (long long)elem_bytes(g.ct);
    // op(A) as m rows of k, op(B)^T as n rows of k: both read along k contiguously
    for (int i = 0; i < g.m; i++)
      for (int l = 0; l < g.k; l++) {
        size_t idx = g.ta == CUBLAS_OP_N ? (size_t)i + (size_t)l * g.lda : (size_t)l + (size_t)i * g.lda;
        float v = load(A, g.at, idx);
        a[(size_t)i * g.k + l] = g.tf32 ? round_tf32(v) : v;
      }
    for (int j = 0; j < g.n; j++)
      for (int l = 0; l < g.k; l++) {
        size_t idx = g.tb == CUBLAS_OP_N ? (size_t)l + (size_t)j * g.ldb : (size_t)j + (size_t)l * g.ldb;
        float v = load(B, g.bt, idx);
        b[(size_t)j * g.k + l] = g.tf32 ? round_tf32(v) : v;
      }
    for (int j = 0; j < g.n; j++)
      for (int i = 0; i < g.m; i++) {
        const float *ar = &a[(size_t)i * g.k], *br = &b[(size_t)j * g.k];
        float acc = 0.0f;
        for (int l = 0; l < g.k; l++) acc += ar[l] * br[l];
        size_t ci = (size_t)i + (size_t)j * g.ldc;
        float v = g.alpha * acc;
        if (g.beta != 0.0f) v += g.beta * load(C, g.ct, ci);  // beta == 0: C is not read
        store(C, g.ct, ci, v);
      }
  }
}

cublasStatus_t gemm(const char *call, cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                    const void *alpha, const void *A, cudaDataType at, int lda, long long sa, const void *B,
                    cudaDataType bt, int ldb, long long sb, const void *beta, void *C, cudaDataType ct, int ldc,
                    long long sc, int batch, cublasComputeType_t compute) {
  if (!handle_ok(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
  auto op_ok = [](cublasOperation_t o) { return o == CUBLAS_OP_N || o == CUBLAS_OP_T || o == CUBLAS_OP_C; };
  if (!op_ok(ta) || !op_ok(tb) || m < 0 || n < 0 || k < 0 || batch < 0 || !alpha || !beta)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (lda < std::max(1, ta == CUBLAS_OP_N ? m : k) || ldb < std::max(1, tb == CUBLAS_OP_N ? k : n) ||
      ldc < std::max(1, m)) {
    fprintf(stderr, "simt: %s: leading dimension too small (m=%d n=%d k=%d lda=%d ldb=%d ldc=%d, op %c%c)\n", call, m,
            n, k, lda, ldb, ldc, ta == CUBLAS_OP_N ? 'N' : 'T', tb == CUBLAS_OP_N ? 'N' : 'T');
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (!types_supported(at, bt, ct, compute)) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
  bool an = ta == CUBLAS_OP_N, bn = tb == CUBLAS_OP_N;
  if ((k > 0 && !matrix_ok(call, "A", A, at, an ? m : k, an ? k : m, lda, sa, batch)) ||
      (k > 0 && !matrix_ok(call, "B", B, bt, bn ? k : n, bn ? n : k, ldb, sb, batch)) ||
      !matrix_ok(call, "C", C, ct, m, n, ldc, sc, batch))
    return CUBLAS_STATUS_INVALID_VALUE;
  Gemm g{ta, tb, m, n, k, *static_cast<const float *>(alpha), *static_cast<const float *>(beta), A, B, C, at, bt, ct,
         lda, ldb, ldc, sa, sb, sc, batch, false};
  g.tf32 = compute == CUBLAS_COMPUTE_32F_FAST_TF32 ||
           (compute == CUBLAS_COMPUTE_32F && at == CUDA_R_32F && h->mode == CUBLAS_TF32_TENSOR_OP_MATH);
  cudaError_t e = simt_stream_submit(h->stream, call, [g] { run_gemm(g); });
  return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

}  // namespace

const char *cublasGetStatusName(cublasStatus_t s) {
  switch (s) {
#define S(x) \
  case x: return #x;
    S(CUBLAS_STATUS_SUCCESS) S(CUBLAS_STATUS_NOT_INITIALIZED) S(CUBLAS_STATUS_ALLOC_FAILED)
    S(CUBLAS_STATUS_INVALID_VALUE) S(CUBLAS_STATUS_ARCH_MISMATCH) S(CUBLAS_STATUS_MAPPING_ERROR)
    S(CUBLAS_STATUS_EXECUTION_FAILED) S(CUBLAS_STATUS_INTERNAL_ERROR) S(CUBLAS_STATUS_NOT_SUPPORTED)
    S(CUBLAS_STATUS_LICENSE_ERROR)
#undef S
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

const char *cublasGetStatusString(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    case CUBLAS_STATUS_LICENSE_ERROR: return "error detected trying to check the license";
  }
  return "unknown error";
}

cublasStatus_t cublasCreate(cublasHandle_t *handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    cudaGetLastError();
    return CUBLAS_STATUS_NOT_INITIALIZED;
  }
  cublasContext *h = new cublasContext;
  std::lock_guard<std::mutex> lk(g_handles_lock);
  g_handles.insert(h);
  *handle = h;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  std::lock_guard<std::mutex> lk(g_handles_lock);
  if (!handle || !g_handles.erase(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (!handle_ok(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t *stream) {
  if (!handle_ok(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!stream) return CUBLAS_STATUS_INVALID_VALUE;
  *stream = handle->stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (!handle_ok(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  unsigned base = (unsigned)mode & ~16u;  // CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION is a flag
  if (base > 3u) return CUBLAS_STATUS_INVALID_VALUE;
  handle->mode = (cublasMath_t)base;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void *alpha, const void *A, cudaDataType Atype, int lda, const void *B,
                            cudaDataType Btype, int ldb, const void *beta, void *C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
  (void)algo;
  return gemm("cublasGemmEx", handle, transa, transb, m, n, k, alpha, A, Atype, lda, 0, B, Btype, ldb, 0, beta, C,
              Ctype, ldc, 0, 1, computeType);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                          int m, int n, int k, const void *alpha, const void *A, cudaDataType Atype,
                                          int lda, long long strideA, const void *B, cudaDataType Btype, int ldb,
                                          long long strideB, const void *beta, void *C, cudaDataType Ctype, int ldc,
                                          long long strideC, int batchCount, cublasComputeType_t computeType,
                                          cublasGemmAlgo_t algo) {
  (void)algo;
  return gemm("cublasGemmStridedBatchedEx", handle, transa, transb, m, n, k, alpha, A, Atype, lda, strideA, B, Btype,
              ldb, strideB, beta, C, Ctype, ldc, strideC, batchCount, computeType);
}
