// simt.h: a SIMT emulator that lets CUDA kernel sources compile as host C++17 and run on the CPU.
//
// It is the one header a .cu file includes when __CUDACC__ is not defined: qualifiers, built-in
// variables, warp collectives, atomics, half types, the runtime API subset the backend uses and
// the cuBLAS GEMM subset, all under CUDA's names. Kernels are launched with SIMT_LAUNCH instead
// of <<<...>>>. Every thread of a block runs as a fiber on the launching OS thread; __syncthreads
// and the warp collectives are the only switch points, so data races show up as results that
// depend on SIMT_ORDER (forward/reverse/shuffle:SEED), not as nondeterminism.
//
// It is not a GPU model: no memory ordering, no concurrency between blocks, no lockstep, no timing.
// Invariant: the runtime is serialised by one process-wide lock, so built-in variables and
// __shared__ storage are plain globals owned by whichever launch holds it.
#ifndef SIMT_H
#define SIMT_H

#ifndef __cplusplus
#error "simt.h is C++17: compile kernel sources with a C++ compiler"
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#define SIMT_EMULATOR 1

// ---- qualifiers (after every standard header: libstdc++ spells __attribute__((__noinline__)))
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// Per-block shared storage: one static object, reused by every block (blocks run one at a time
// under the runtime lock). It is NOT reset between blocks or launches: a block that reads shared
// memory before writing it sees what the previous block left there. extern __shared__ (dynamic
// shared memory) is not supported.
#define __shared__ static

// ---- vector and index types
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};
struct __align__(8) float2 { float x, y; };
struct __align__(16) float4 { float x, y, z, w; };
struct __align__(8) int2 { int x, y; };
struct __align__(16) int4 { int x, y, z, w; };
struct __align__(8) uint2 { unsigned x, y; };
struct __align__(16) uint4 { unsigned x, y, z, w; };
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline int2 make_int2(int x, int y) { return int2{x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

// ---- built-in variables: written by the scheduler before it switches into a fiber
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;
inline constexpr int warpSize = 32;

// ---- barriers and warp collectives (the scheduler's yield points)
void simt_syncthreads(const char *file, int line);
int simt_syncthreads_reduce(int op, int pred, const char *file, int line);
#define __syncthreads() ::simt_syncthreads(__FILE__, __LINE__)
#define __syncthreads_count(p) ::simt_syncthreads_reduce(0, (p), __FILE__, __LINE__)
#define __syncthreads_and(p) ::simt_syncthreads_reduce(1, (p), __FILE__, __LINE__)
#define __syncthreads_or(p) ::simt_syncthreads_reduce(2, (p), __FILE__, __LINE__)

enum simt_warp_op { SIMT_W_SYNC, SIMT_W_SHFL, SIMT_W_UP, SIMT_W_DOWN, SIMT_W_XOR, SIMT_W_BALLOT, SIMT_W_ANY, SIMT_W_ALL };
// All lanes named in mask (within the caller's warp) meet; returns the caller's result.
uint64_t simt_warp_collective(int op, unsigned mask, uint64_t value, int arg, int width);
unsigned simt_activemask();

namespace simt_detail {
template <class T> inline uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type > 8 bytes");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof v);
  return b;
}
template <class T> inline T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof v);
  return v;
}
template <class T> inline T warp(int op, unsigned mask, T v, int arg, int width) {
  return from_bits<T>(simt_warp_collective(op, mask, to_bits(v), arg, width));
}
}  // namespace simt_detail

inline void __syncwarp(unsigned mask = 0xffffffffu) { simt_warp_collective(SIMT_W_SYNC, mask, 0, 0, 32); }
template <class T> inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = warpSize) {
  return simt_detail::warp(SIMT_W_SHFL, mask, v, src_lane, width);
}
template <class T> inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  return simt_detail::warp(SIMT_W_UP, mask, v, (int)delta, width);
}
template <class T> inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  return simt_detail::warp(SIMT_W_DOWN, mask, v, (int)delta, width);
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize) {
  return simt_detail::warp(SIMT_W_XOR, mask, v, lane_mask, width);
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  return (unsigned)simt_warp_collective(SIMT_W_BALLOT, mask, pred != 0, 0, 32);
}
inline int __any_sync(unsigned mask, int pred) { return (int)simt_warp_collective(SIMT_W_ANY, mask, pred != 0, 0, 32); }
inline int __all_sync(unsigned mask, int pred) { return (int)simt_warp_collective(SIMT_W_ALL, mask, pred != 0, 0, 32); }
inline unsigned __activemask() { return simt_activemask(); }
inline void __threadfence() {}
inline void __threadfence_block() {}
template <class T> inline T __ldg(const T *p) { return *p; }

// ---- atomics: fibers never interleave inside one, so plain read-modify-write is atomic here
template <class T> inline T simt_atomic_add(T *p, T v) { T old = *p; *p = old + v; return old; }
inline float atomicAdd(float *p, float v) { return simt_atomic_add(p, v); }
inline double atomicAdd(double *p, double v) { return simt_atomic_add(p, v); }
inline int atomicAdd(int *p, int v) { return simt_atomic_add(p, v); }
inline unsigned atomicAdd(unsigned *p, unsigned v) { return simt_atomic_add(p, v); }
inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v) { return simt_atomic_add(p, v); }
inline int atomicSub(int *p, int v) { int old = *p; *p = old - v; return old; }
inline unsigned atomicSub(unsigned *p, unsigned v) { unsigned old = *p; *p = old - v; return old; }
inline int atomicMax(int *p, int v) { int old = *p; *p = old > v ? old : v; return old; }
inline int atomicMin(int *p, int v) { int old = *p; *p = old < v ? old : v; return old; }
inline unsigned atomicMax(unsigned *p, unsigned v) { unsigned old = *p; *p = old > v ? old : v; return old; }
inline unsigned atomicMin(unsigned *p, unsigned v) { unsigned old = *p; *p = old < v ? old : v; return old; }
inline int atomicExch(int *p, int v) { int old = *p; *p = v; return old; }
inline unsigned atomicExch(unsigned *p, unsigned v) { unsigned old = *p; *p = v; return old; }
inline float atomicExch(float *p, float v) { float old = *p; *p = v; return old; }
inline int atomicCAS(int *p, int cmp, int v) { int old = *p; if (old == cmp) *p = v; return old; }
inline unsigned atomicCAS(unsigned *p, unsigned cmp, unsigned v) { unsigned old = *p; if (old == cmp) *p = v; return old; }
inline unsigned long long atomicCAS(unsigned long long *p, unsigned long long cmp, unsigned long long v) {
  unsigned long long old = *p;
  if (old == cmp) *p = v;
  return old;
}

// ---- math intrinsics (the <cmath> float functions are used as they are)
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __saturatef(float x) { return x > 1.0f ? 1.0f : (x > 0.0f ? x : 0.0f); }  // NaN -> 0
inline int __float_as_int(float x) { return simt_detail::from_bits<int>(simt_detail::to_bits(x)); }
inline unsigned __float_as_uint(float x) { return simt_detail::from_bits<unsigned>(simt_detail::to_bits(x)); }
inline float __int_as_float(int x) { return simt_detail::from_bits<float>(simt_detail::to_bits(x)); }
inline float __uint_as_float(unsigned x) { return simt_detail::from_bits<float>(simt_detail::to_bits(x)); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned min(int a, unsigned b) { return min((unsigned)a, b); }  // CUDA's mixed-sign rule
inline unsigned max(int a, unsigned b) { return max((unsigned)a, b); }
inline unsigned min(unsigned a, int b) { return min(a, (unsigned)b); }
inline unsigned max(unsigned a, int b) { return max(a, (unsigned)b); }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

// ---- half and bfloat16: bit-exact storage types, conversions round to nearest even
namespace simt_detail {
inline uint32_t f2u(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float u2f(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint16_t float_to_half_bits(float f) {
  uint32_t x = f2u(f), sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return 0x7fffu;                 // NaN: canonical, as CUDA
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // >= 65520 rounds to infinity
  if (ax < 0x38800000u) {                                // below 2^-14: subnormal half
    if (ax <= 0x33000000u) return (uint16_t)sign;        // <= 2^-25 rounds to zero (tie to even)
    uint32_t e = ax >> 23, mant = (ax & 0x7fffffu) | 0x800000u, s = 126 - e;
    uint32_t r = mant >> s, rem = mant & ((1u << s) - 1), half = 1u << (s - 1);
    if (rem > half || (rem == half && (r & 1))) r++;
    return (uint16_t)(sign | r);
  }
  uint32_t r = (ax >> 13) - (112u << 10), rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) r++;
  return (uint16_t)(sign | r);
}
inline float half_bits_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1f) return u2f(sign | 0x7f800000u | (m << 13));
  if (e != 0) return u2f(sign | ((e + 112) << 23) | (m << 13));
  if (m == 0) return u2f(sign);
  float v = (float)m * 5.9604644775390625e-8f;  // m * 2^-24, exact
  return sign ? -v : v;
}
inline uint16_t float_to_bf16_bits(float f) {
  uint32_t u = f2u(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}
inline float bf16_bits_to_float(uint16_t b) { return u2f((uint32_t)b << 16); }
}  // namespace simt_detail

struct __half_raw {
  unsigned short x;
};
struct __align__(2) __half {
  unsigned short __x;
  __half() = default;
  __half(float f) : __x(simt_detail::float_to_half_bits(f)) {}
  __half(__half_raw r) : __x(r.x) {}
  operator float() const { return simt_detail::half_bits_to_float(__x); }
  operator __half_raw() const { return __half_raw{__x}; }
};
struct __nv_bfloat16_raw {
  unsigned short x;
};
struct __align__(2) __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  __nv_bfloat16(float f) : __x(simt_detail::float_to_bf16_bits(f)) {}
  __nv_bfloat16(__nv_bfloat16_raw r) : __x(r.x) {}
  operator float() const { return simt_detail::bf16_bits_to_float(__x); }
  operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }
};
struct __align__(4) __half2 { __half x, y; };
struct __align__(4) __nv_bfloat162 { __nv_bfloat16 x, y; };
typedef __half half;
typedef __half2 half2;

inline __half __float2half_rn(float f) { return __half(f); }
inline __half __float2half(float f) { return __half(f); }
inline float __half2float(__half h) { return simt_detail::half_bits_to_float(h.__x); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return simt_detail::bf16_bits_to_float(b.__x); }
inline __half2 __floats2half2_rn(float a, float b) { return __half2{__half(a), __half(b)}; }
inline __half2 __float2half2_rn(float a) { return __half2{__half(a), __half(a)}; }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return __nv_bfloat162{__nv_bfloat16(a), __nv_bfloat16(b)};
}
inline float __low2float(__half2 h) { return __half2float(h.x); }
inline float __high2float(__half2 h) { return __half2float(h.y); }
inline float __low2float(__nv_bfloat162 h) { return __bfloat162float(h.x); }
inline float __high2float(__nv_bfloat162 h) { return __bfloat162float(h.y); }
inline float2 __half22float2(__half2 h) { return float2{__half2float(h.x), __half2float(h.y)}; }
inline float2 __bfloat1622float2(__nv_bfloat162 h) { return float2{__bfloat162float(h.x), __bfloat162float(h.y)}; }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short x) { return __half(__half_raw{x}); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short x) { return __nv_bfloat16(__nv_bfloat16_raw{x}); }
#define SIMT_HALF_OPS(T, CVT)                                                      \
  inline T operator+(T a, T b) { return CVT((float)a + (float)b); }                \
  inline T operator-(T a, T b) { return CVT((float)a - (float)b); }                \
  inline T operator*(T a, T b) { return CVT((float)a * (float)b); }                \
  inline T operator/(T a, T b) { return CVT((float)a / (float)b); }                \
  inline T operator-(T a) { T r = a; r.__x ^= 0x8000u; return r; }                 \
  inline bool operator==(T a, T b) { return (float)a == (float)b; }                \
  inline bool operator!=(T a, T b) { return (float)a != (float)b; }                \
  inline bool operator<(T a, T b) { return (float)a < (float)b; }                  \
  inline bool operator>(T a, T b) { return (float)a > (float)b; }                  \
  inline bool operator<=(T a, T b) { return (float)a <= (float)b; }                \
  inline bool operator>=(T a, T b) { return (float)a >= (float)b; }
SIMT_HALF_OPS(__half, __float2half_rn)
SIMT_HALF_OPS(__nv_bfloat16, __float2bfloat16_rn)
#undef SIMT_HALF_OPS
inline __half __hadd(__half a, __half b) { return a + b; }
inline __half __hmul(__half a, __half b) { return a * b; }
inline __nv_bfloat16 __hadd(__nv_bfloat16 a, __nv_bfloat16 b) { return a + b; }
inline __nv_bfloat16 __hmul(__nv_bfloat16 a, __nv_bfloat16 b) { return a * b; }

// ---- runtime API
enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotSupported = 801,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureWrongThread = 908,
  cudaErrorUnknown = 999,
};
typedef enum cudaError cudaError_t;
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
  size_t sharedMemPerMultiprocessor;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int major;
  int minor;
  int multiProcessorCount;
  int maxThreadsPerMultiProcessor;
  int memoryBusWidth;
  int memoryClockRate;  // kHz
  int clockRate;        // kHz
  int l2CacheSize;
  size_t totalConstMem;
};
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaDeviceReset();

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
#define cudaHostAllocDefault 0x00u
#define cudaHostAllocPortable 0x01u
#define cudaHostAllocMapped 0x02u
#define cudaHostAllocWriteCombined 0x04u
#define cudaStreamDefault 0x00u
#define cudaStreamNonBlocking 0x01u
#define cudaEventDefault 0x00u
#define cudaEventBlockingSync 0x01u
#define cudaEventDisableTiming 0x02u

typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
typedef struct CUgraph_st *cudaGraph_t;
typedef struct CUgraphExec_st *cudaGraphExec_t;

cudaError_t cudaMalloc(void **ptr, size_t size);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMallocHost(void **ptr, size_t size);
cudaError_t cudaHostAlloc(void **ptr, size_t size, unsigned flags);
cudaError_t cudaFreeHost(void *ptr);
template <class T> inline cudaError_t cudaMalloc(T **ptr, size_t size) { return cudaMalloc((void **)ptr, size); }
template <class T> inline cudaError_t cudaMallocHost(T **ptr, size_t size) {
  return cudaMallocHost((void **)ptr, size);
}
template <class T> inline cudaError_t cudaHostAlloc(T **ptr, size_t size, unsigned flags) {
  return cudaHostAlloc((void **)ptr, size, flags);
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t stream = 0);
cudaError_t cudaMemset(void *ptr, int value, size_t n);
cudaError_t cudaMemsetAsync(void *ptr, int value, size_t n, cudaStream_t stream = 0);

cudaError_t cudaStreamCreate(cudaStream_t *stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamQuery(cudaStream_t stream);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags = 0);

cudaError_t cudaEventCreate(cudaEvent_t *event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned flags);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaEventDestroy(cudaEvent_t event);

enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};
enum cudaStreamCaptureStatus {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2,
};
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus *status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);

// ---- kernel launch
// SIMT_LAUNCH(kernel, grid, block, stream, args...) is kernel<<<grid, block, 0, stream>>>(args...).
// The arguments are converted to the kernel's parameter types and copied once, at the call (so a
// launch recorded in a graph keeps the values it had then). A template kernel whose argument list
// has a comma goes in parentheses: SIMT_LAUNCH((k<64, float>), ...). Pass nullptr, not 0, for a
// null pointer argument.
struct simt_task {
  void (*run)(const void *data);  // runs the kernel body for the current thread
  std::shared_ptr<const void> data;
};
void simt_launch_task(const char *name, dim3 grid, dim3 block, cudaStream_t stream, const simt_task &task);

template <class... P, class... A>
inline void simt_launch_kernel(const char *name, void (*kernel)(P...), dim3 grid, dim3 block, cudaStream_t stream,
                               A &&...args) {
  static_assert(sizeof...(P) == sizeof...(A), "SIMT_LAUNCH: wrong number of kernel arguments");
  struct pack {
    void (*k)(P...);
    std::tuple<typename std::decay<P>::type...> args;
  };
  simt_task t;
  t.data = std::make_shared<const pack>(pack{kernel, std::tuple<typename std::decay<P>::type...>(std::forward<A>(args)...)});
  t.run = [](const void *p) {
    const pack *pk = static_cast<const pack *>(p);
    std::apply(pk->k, pk->args);
  };
  simt_launch_task(name, grid, block, stream, t);
}
// (grid, block and stream are part of __VA_ARGS__, so a kernel without parameters needs no ## extension)
#define SIMT_LAUNCH(kernel, ...) ::simt_launch_kernel(#kernel, kernel, __VA_ARGS__)

// ---- hooks shared by the runtime and the cuBLAS subset (not CUDA API)
// Runs op on stream now, or records it when the stream is capturing; what names it in messages.
cudaError_t simt_stream_submit(cudaStream_t stream, const char *what, std::function<void()> op);
// True when [p, p+n) lies in one live cudaMalloc allocation; otherwise prints "simt: call: arg ..."
// to stderr and returns false.
bool simt_check_device_range(const void *p, size_t n, const char *call, const char *arg);
// Bytes currently allocated with cudaMalloc (for tests that look for leaks).
size_t simt_device_bytes_in_use();

// ---- cuBLAS subset
typedef enum {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_ARCH_MISMATCH = 8,
  CUBLAS_STATUS_MAPPING_ERROR = 11,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_INTERNAL_ERROR = 14,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
  CUBLAS_STATUS_LICENSE_ERROR = 16,
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 } cublasOperation_t;
typedef enum {
  CUBLAS_DEFAULT_MATH = 0,
  CUBLAS_TENSOR_OP_MATH = 1,
  CUBLAS_PEDANTIC_MATH = 2,
  CUBLAS_TF32_TENSOR_OP_MATH = 3,
} cublasMath_t;
typedef enum cudaDataType_t {
  CUDA_R_32F = 0,
  CUDA_R_64F = 1,
  CUDA_R_16F = 2,
  CUDA_R_8I = 3,
  CUDA_R_32I = 10,
  CUDA_R_16BF = 14,
} cudaDataType_t;
typedef cudaDataType_t cudaDataType;
typedef enum {
  CUBLAS_COMPUTE_16F = 64,
  CUBLAS_COMPUTE_16F_PEDANTIC = 65,
  CUBLAS_COMPUTE_32F = 68,
  CUBLAS_COMPUTE_32F_PEDANTIC = 69,
  CUBLAS_COMPUTE_64F = 70,
  CUBLAS_COMPUTE_32I = 72,
  CUBLAS_COMPUTE_32F_FAST_16F = 74,
  CUBLAS_COMPUTE_32F_FAST_16BF = 75,
  CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
} cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1, CUBLAS_GEMM_DEFAULT_TENSOR_OP = 99 } cublasGemmAlgo_t;
typedef struct cublasContext *cublasHandle_t;

const char *cublasGetStatusString(cublasStatus_t s);
const char *cublasGetStatusName(cublasStatus_t s);
cublasStatus_t cublasCreate(cublasHandle_t *handle);
cublasStatus_t cublasDestroy(cublasHandle_t handle);
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream);
cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t *stream);
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode);
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void *alpha, const void *A, cudaDataType Atype, int lda, const void *B,
                            cudaDataType Btype, int ldb, const void *beta, void *C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo);
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                          int m, int n, int k, const void *alpha, const void *A, cudaDataType Atype,
                                          int lda, long long strideA, const void *B, cudaDataType Btype, int ldb,
                                          long long strideB, const void *beta, void *C, cudaDataType Ctype, int ldc,
                                          long long strideC, int batchCount, cublasComputeType_t computeType,
                                          cublasGemmAlgo_t algo);

#endif
