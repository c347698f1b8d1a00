// test_simt: self-test of the SIMT emulator, written the way a kernel author uses it.
//
// Kernels here are ordinary CUDA sources launched with SIMT_LAUNCH. Every check can fail: races
// must change results between SIMT_ORDER=forward and reverse, bugs (divergent barriers, dead
// warp lanes, out-of-bounds writes) must abort a forked child with a message, GEMMs must match a
// float64 reference, and the half/bf16 conversions must be bit-exact.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "simt.h"

static int g_checks, g_failures;

#define CHECK(cond, ...)                                              \
  do {                                                                \
    g_checks++;                                                       \
    if (!(cond)) {                                                    \
      g_failures++;                                                   \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                   \
      fputc('\n', stderr);                                            \
    }                                                                 \
  } while (0)

#define CUDA_OK(x)                                                                          \
  do {                                                                                      \
    cudaError_t e_ = (x);                                                                   \
    if (e_ != cudaSuccess) {                                                                \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorName(e_));    \
      exit(1);                                                                              \
    }                                                                                       \
  } while (0)

template <class T> static T *dev_alloc(size_t n) {
  T *p = nullptr;
  CUDA_OK(cudaMalloc(&p, n * sizeof(T)));
  return p;
}

static double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

static void set_order(const char *order) {
  if (order)
    setenv("SIMT_ORDER", order, 1);
  else
    unsetenv("SIMT_ORDER");
}

// Runs fn in a forked child with stderr captured; true when the child died abnormally and its
// stderr contains want (or, under ASan, an AddressSanitizer report when asan_ok).
template <class F> static bool child_aborts(F fn, const char *want, bool asan_ok = false) {
  int fds[2];
  if (pipe(fds) != 0) return false;
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    fn();
    _exit(0);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t r;
  while ((r = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, (size_t)r);
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  bool abnormal = WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0);
  bool found = out.find(want) != std::string::npos || (asan_ok && out.find("AddressSanitizer") != std::string::npos);
  if (!abnormal || !found) fprintf(stderr, "child stderr was:\n%s\n", out.c_str());
  return abnormal && found;
}

// ---- kernels --------------------------------------------------------------------------------

__global__ void k_block_sum(const int *in, int n, long long *out) {
  __shared__ long long s[256];
  long long acc = 0;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) acc += in[i];
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if ((int)threadIdx.x < stride) s[threadIdx.x] += s[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = s[0];
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// out[4*w + 0..3] per warp w: xor-sum, down-sum (lane 0), broadcast of lane 7, ballot of odd values
__global__ void k_warp(const float *in, float *out, unsigned *ballots, float *scan) {
  int t = blockIdx.x * blockDim.x + threadIdx.x, lane = threadIdx.x % 32, w = t / 32;
  float v = in[t];
  float xs = warp_sum(v);
  float ds = v;
  for (int o = 16; o > 0; o /= 2) ds += __shfl_down_sync(0xffffffffu, ds, o);
  float b7 = __shfl_sync(0xffffffffu, v, 7);
  unsigned bal = __ballot_sync(0xffffffffu, ((int)v) & 1);
  float x = v;  // inclusive prefix sum with shfl_up
  for (int o = 1; o < 32; o *= 2) {
    float y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  scan[t] = x;
  if (lane == 0) {
    out[4 * w + 0] = xs;
    out[4 * w + 1] = ds;
    out[4 * w + 2] = b7;
    ballots[w] = bal;
  }
  if (lane == 5) out[4 * w + 3] = (float)(__any_sync(0xffffffffu, v > 1000.0f) * 2 + __all_sync(0xffffffffu, v >= 0.0f));
  else (void)(__any_sync(0xffffffffu, v > 1000.0f) + __all_sync(0xffffffffu, v >= 0.0f));
}

// reads a neighbour's shared value without a barrier: the result depends on thread order
__global__ void k_racy(const float *in, float *out) {
  __shared__ float s[256];
  int t = threadIdx.x;
  s[t] = in[t];
  out[t] = s[(t + 1) % blockDim.x];
}

__global__ void k_fixed(const float *in, float *out) {
  __shared__ float s[256];
  int t = threadIdx.x;
  s[t] = in[t];
  __syncthreads();
  out[t] = s[(t + 1) % blockDim.x];
}

// blocks race on one global slot: the last block to run wins
__global__ void k_block_order(int *slot) {
  if (threadIdx.x == 0) *slot = (int)blockIdx.x;
}

__global__ void k_divergent_barrier(int *out) {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

__global__ void k_barrier_after_return(int *out) {
  if (threadIdx.x == 3) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void k_dead_lane(float *out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_sync(0xffffffffu, 1.0f, 0);
}

__global__ void k_fill_index(int *out) { out[blockIdx.x * blockDim.x + threadIdx.x] = (int)threadIdx.x; }

__global__ void k_oob(float *out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) out[i] = 1.0f;  // off by one
}

__global__ void k_atomics(float *f, int *i, unsigned *u, unsigned long long *ull, int *mx, int *mn, int *cas) {
  int t = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(f, 0.5f);
  atomicAdd(i, 1);
  atomicAdd(u, 2u);
  atomicAdd(ull, 1ull << 33);
  atomicMax(mx, t);
  atomicMin(mn, -t);
  int old = *cas, assumed;  // CAS loop increment
  do {
    assumed = old;
    old = atomicCAS(cas, assumed, assumed + 1);
  } while (old != assumed);
}

// (x, y, z) of every thread of a 3D block in a 2D grid, and the lane layout of the warps
__global__ void k_index3d(int *out) {
  int lin = threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y;
  int blk = blockIdx.x + blockIdx.y * gridDim.x;
  int *o = out + 4 * (blk * blockDim.x * blockDim.y * blockDim.z + lin);
  o[0] = (int)threadIdx.x;
  o[1] = (int)threadIdx.y;
  o[2] = (int)threadIdx.z;
  o[3] = __shfl_sync(__activemask(), lin, 0);  // lane 0's linear index: lanes are consecutive in lin
}

__global__ void k_count(int *out) {
  int c = __syncthreads_count(threadIdx.x % 3 == 0);
  int a = __syncthreads_and(threadIdx.x < 1000);
  int o = __syncthreads_or(threadIdx.x == 77);
  if (threadIdx.x == 0) {
    out[0] = c;
    out[1] = a;
    out[2] = o;
  }
}

template <int N, class T> __global__ void k_scale_t(const T *in, T *out, float s) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < N) out[i] = (T)((float)in[i] * s);
}

__global__ void k_scale(const float *in, float *out, int n, float s) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = in[i] * s;
}

__global__ void k_trivial(int *out) { out[blockIdx.x * blockDim.x + threadIdx.x] = (int)threadIdx.x; }

__global__ void k_ten_barriers(float *out) {
  __shared__ float s[2][256];  // double-buffered: one barrier per round is enough
  float v = (float)threadIdx.x;
  for (int r = 0; r < 10; r++) {
    s[r & 1][threadIdx.x] = v;
    __syncthreads();
    v = s[r & 1][(threadIdx.x + 1) % 256];
  }
  out[blockIdx.x * 256 + threadIdx.x] = v;
}

// ---- tests ----------------------------------------------------------------------------------

static void test_block_reduction() {
  for (int n : {1, 255, 256, 1000, 100000}) {
    std::vector<int> h(n);
    for (int i = 0; i < n; i++) h[i] = i + 1;
    int *d = dev_alloc<int>(n);
    long long *out = dev_alloc<long long>(4);
    CUDA_OK(cudaMemcpy(d, h.data(), n * sizeof(int), cudaMemcpyHostToDevice));
    for (const char *order : {"forward", "reverse", "shuffle:3"}) {
      set_order(order);
      SIMT_LAUNCH(k_block_sum, 4, 256, 0, d, n, out);
      CUDA_OK(cudaGetLastError());
      long long part[4];
      CUDA_OK(cudaMemcpy(part, out, sizeof part, cudaMemcpyDeviceToHost));
      long long sum = part[0] + part[1] + part[2] + part[3];
      CHECK(sum == (long long)n * (n + 1) / 2, "n=%d order %s: sum %lld", n, order, sum);
    }
    set_order(nullptr);
    cudaFree(d);
    cudaFree(out);
  }
}

static void test_warp_collectives() {
  const int n = 128;  // 4 warps
  std::vector<float> h(n);
  for (int i = 0; i < n; i++) h[i] = (float)((i * 7) % 13);
  float *d = dev_alloc<float>(n), *out = dev_alloc<float>(16), *scan = dev_alloc<float>(n);
  unsigned *bal = dev_alloc<unsigned>(4);
  CUDA_OK(cudaMemcpy(d, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  for (const char *order : {"forward", "reverse"}) {
    set_order(order);
    SIMT_LAUNCH(k_warp, 2, 64, 0, d, out, bal, scan);
    float ho[16], hs[n];
    unsigned hb[4];
    CUDA_OK(cudaMemcpy(ho, out, sizeof ho, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(hb, bal, sizeof hb, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(hs, scan, sizeof hs, cudaMemcpyDeviceToHost));
    for (int w = 0; w < 4; w++) {
      float sum = 0, run = 0;
      unsigned b = 0;
      bool scan_ok = true;
      for (int l = 0; l < 32; l++) {
        float v = h[w * 32 + l];
        sum += v;
        run += v;
        if (hs[w * 32 + l] != run) scan_ok = false;
        if (((int)v) & 1) b |= 1u << l;
      }
      CHECK(ho[4 * w] == sum, "warp %d xor sum %g != %g", w, ho[4 * w], sum);
      CHECK(ho[4 * w + 1] == sum, "warp %d down sum %g != %g", w, ho[4 * w + 1], sum);
      CHECK(ho[4 * w + 2] == h[w * 32 + 7], "warp %d broadcast %g", w, ho[4 * w + 2]);
      CHECK(hb[w] == b, "warp %d ballot %08x != %08x", w, hb[w], b);
      CHECK(ho[4 * w + 3] == 1.0f, "warp %d any/all %g", w, ho[4 * w + 3]);
      CHECK(scan_ok, "warp %d shfl_up prefix sum wrong", w);
    }
  }
  set_order(nullptr);
  cudaFree(d), cudaFree(out), cudaFree(scan), cudaFree(bal);
}

static void test_races_visible() {
  const int n = 256;
  std::vector<float> a(n), b(n), out_f(n), out_r(n), out_s(n);
  for (int i = 0; i < n; i++) a[i] = (float)i, b[i] = -1.0f - i;
  float *din = dev_alloc<float>(n), *dout = dev_alloc<float>(n);
  auto run = [&](void (*k)(const float *, float *), const std::vector<float> &in, std::vector<float> &out,
                 const char *order) {
    set_order(order);
    CUDA_OK(cudaMemcpy(din, in.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    SIMT_LAUNCH(k, 1, n, 0, din, dout);
    CUDA_OK(cudaMemcpy(out.data(), dout, n * sizeof(float), cudaMemcpyDeviceToHost));
  };
  run(k_racy, b, out_f, "forward");  // leaves b in shared memory
  run(k_racy, a, out_f, "forward");
  run(k_racy, a, out_r, "reverse");
  CHECK(out_f != out_r, "the racy kernel gave the same result in forward and reverse order");
  run(k_fixed, b, out_f, "forward");
  run(k_fixed, a, out_f, "forward");
  run(k_fixed, a, out_r, "reverse");
  run(k_fixed, a, out_s, "shuffle:12345");
  CHECK(out_f == out_r && out_f == out_s, "the fixed kernel depends on the order");
  bool right = true;
  for (int i = 0; i < n; i++) right &= out_f[i] == a[(i + 1) % n];
  CHECK(right, "the fixed kernel computed the wrong values");

  int *slot = dev_alloc<int>(1), h_f = -1, h_r = -1;
  run(k_fixed, a, out_f, "forward");
  SIMT_LAUNCH(k_block_order, 8, 32, 0, slot);
  CUDA_OK(cudaMemcpy(&h_f, slot, 4, cudaMemcpyDeviceToHost));
  set_order("reverse");
  SIMT_LAUNCH(k_block_order, 8, 32, 0, slot);
  CUDA_OK(cudaMemcpy(&h_r, slot, 4, cudaMemcpyDeviceToHost));
  CHECK(h_f == 7 && h_r == 0, "block order: forward %d (want 7), reverse %d (want 0)", h_f, h_r);
  set_order(nullptr);
  cudaFree(din), cudaFree(dout), cudaFree(slot);
}

static void test_bugs_abort() {
  int *d = dev_alloc<int>(64);
  float *f = dev_alloc<float>(64);
  CHECK(child_aborts([&] { SIMT_LAUNCH(k_divergent_barrier, 1, 32, 0, d); }, "divergent barrier"),
        "divergent __syncthreads not reported");
  CHECK(child_aborts([&] { SIMT_LAUNCH(k_divergent_barrier, 1, 32, 0, d); }, "k_divergent_barrier"),
        "the message does not name the kernel");
  CHECK(child_aborts([&] { SIMT_LAUNCH(k_barrier_after_return, 1, 32, 0, d); }, "has exited"),
        "__syncthreads after an early return not reported");
  CHECK(child_aborts([&] { SIMT_LAUNCH(k_dead_lane, 1, 32, 0, f); }, "which has exited"),
        "a shuffle naming exited lanes not reported");
  CHECK(child_aborts(
            [&] {
              float *g = dev_alloc<float>(100);
              SIMT_LAUNCH(k_oob, 1, 128, 0, g, 100);
              cudaDeviceSynchronize();
            },
            "guard bytes", true),
        "an out-of-bounds write was not caught");
  cudaFree(d), cudaFree(f);
}

static void test_launch_config() {
  int *d = dev_alloc<int>(2048);
  CUDA_OK(cudaMemset(d, 0, 2048 * sizeof(int)));
  CHECK(cudaGetLastError() == cudaSuccess, "stale error");
  struct Case {
    dim3 grid, block;
    bool ok;
  } cases[] = {
      {dim3(1), dim3(1024), true},          {dim3(1), dim3(1025), false},       {dim3(1), dim3(32, 32, 1), true},
      {dim3(1), dim3(32, 33, 1), false},    {dim3(1), dim3(1, 1, 64), true},    {dim3(1), dim3(1, 1, 65), false},
      {dim3(0), dim3(32), false},           {dim3(1, 65535), dim3(1), true},    {dim3(1, 65536), dim3(1), false},
      {dim3(1, 1, 65536), dim3(1), false},  {dim3(1), dim3(0), false},
  };
  for (const Case &c : cases) {
    SIMT_LAUNCH(k_fill_index, c.grid, c.block, 0, d);
    cudaError_t peek = cudaPeekAtLastError(), e = cudaGetLastError();
    CHECK(peek == e, "peek %d != get %d", peek, e);
    CHECK(e == (c.ok ? cudaSuccess : cudaErrorInvalidConfiguration), "grid (%u,%u,%u) block (%u,%u,%u): %s",
          c.grid.x, c.grid.y, c.grid.z, c.block.x, c.block.y, c.block.z, cudaGetErrorName(e));
    CHECK(cudaGetLastError() == cudaSuccess, "cudaGetLastError did not reset");
  }
  // an invalid launch runs nothing
  CUDA_OK(cudaMemset(d, 0, 2048 * sizeof(int)));
  SIMT_LAUNCH(k_fill_index, 1, 2000, 0, d);
  int h[2048];
  CUDA_OK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
  CHECK(h[5] == 0, "an invalid launch ran");
  cudaGetLastError();
  // int grid and block work; a parenthesised template kernel with a comma works
  SIMT_LAUNCH(k_fill_index, 2, 64, 0, d);
  CUDA_OK(cudaMemcpy(h, d, 128 * sizeof(int), cudaMemcpyDeviceToHost));
  CHECK(h[70] == 6, "k_fill_index wrote %d", h[70]);
  float *a = dev_alloc<float>(8), *b = dev_alloc<float>(8);
  float ha[8] = {1, 2, 3, 4, 5, 6, 7, 8}, hb[8];
  CUDA_OK(cudaMemcpy(a, ha, sizeof ha, cudaMemcpyHostToDevice));
  SIMT_LAUNCH((k_scale_t<8, float>), 1, 32, 0, a, b, 3.0f);
  CUDA_OK(cudaMemcpy(hb, b, sizeof hb, cudaMemcpyDeviceToHost));
  CHECK(hb[7] == 24.0f, "template kernel gave %g", hb[7]);
  cudaFree(a), cudaFree(b);

  // 3D blocks in a 2D grid: thread indices and warp lane layout
  dim3 grid(2, 3), block(8, 4, 2);
  int nthr = 6 * 64;
  int *idx = dev_alloc<int>(4 * nthr);
  SIMT_LAUNCH(k_index3d, grid, block, 0, idx);
  CUDA_OK(cudaGetLastError());
  std::vector<int> hi(4 * nthr);
  CUDA_OK(cudaMemcpy(hi.data(), idx, hi.size() * sizeof(int), cudaMemcpyDeviceToHost));
  bool ok = true;
  for (int t = 0; t < nthr; t++) {
    int lin = t % 64;
    ok &= hi[4 * t] == lin % 8 && hi[4 * t + 1] == lin / 8 % 4 && hi[4 * t + 2] == lin / 32 && hi[4 * t + 3] == lin / 32 * 32;
  }
  CHECK(ok, "3D thread indices or warp layout wrong");
  cudaFree(idx);

  int *cnt = dev_alloc<int>(3), hc[3];
  SIMT_LAUNCH(k_count, 1, 100, 0, cnt);
  CUDA_OK(cudaMemcpy(hc, cnt, sizeof hc, cudaMemcpyDeviceToHost));
  CHECK(hc[0] == 34 && hc[1] == 1 && hc[2] == 1, "__syncthreads_count/and/or: %d %d %d", hc[0], hc[1], hc[2]);
  cudaFree(cnt);
  cudaFree(d);
}

static void test_atomics() {
  float *f = dev_alloc<float>(1);
  int *i = dev_alloc<int>(4);
  unsigned *u = dev_alloc<unsigned>(1);
  unsigned long long *ull = dev_alloc<unsigned long long>(1);
  CUDA_OK(cudaMemset(f, 0, 4));
  CUDA_OK(cudaMemset(i, 0, 16));
  CUDA_OK(cudaMemset(u, 0, 4));
  CUDA_OK(cudaMemset(ull, 0, 8));
  SIMT_LAUNCH(k_atomics, 4, 256, 0, f, i, u, ull, i + 1, i + 2, i + 3);
  float hf;
  int hi[4];
  unsigned hu;
  unsigned long long hull;
  CUDA_OK(cudaMemcpy(&hf, f, 4, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(hi, i, 16, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(&hu, u, 4, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(&hull, ull, 8, cudaMemcpyDeviceToHost));
  CHECK(hf == 512.0f && hi[0] == 1024 && hu == 2048u && hull == 1024ull << 33, "atomicAdd: %g %d %u %llu", hf, hi[0],
        hu, hull);
  CHECK(hi[1] == 1023 && hi[2] == -1023 && hi[3] == 1024, "atomicMax/Min/CAS: %d %d %d", hi[1], hi[2], hi[3]);
  cudaFree(f), cudaFree(i), cudaFree(u), cudaFree(ull);
}

static void test_memory_checks() {
  float *d = dev_alloc<float>(16);
  float h[32] = {0};
  uint32_t bits;
  CUDA_OK(cudaMemcpy(h, d, 64, cudaMemcpyDeviceToHost));
  memcpy(&bits, &h[3], 4);
  CHECK(std::isnan(h[3]) && bits == 0xffffffffu, "fresh device memory is not NaN-filled");
  fprintf(stderr, "(the next messages about bad pointers are expected)\n");
  CHECK(cudaMemcpy(h, h + 16, 64, cudaMemcpyHostToDevice) == cudaErrorInvalidValue, "H2D to a host dst");
  CHECK(cudaMemcpy(d, h, 64, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue, "D2H to a device dst");
  CHECK(cudaMemcpy(d, h, 68, cudaMemcpyHostToDevice) == cudaErrorInvalidValue, "H2D past the end");
  CHECK(cudaMemcpy(d + 1, h, 64, cudaMemcpyHostToDevice) == cudaErrorInvalidValue, "H2D past the end (offset)");
  CHECK(cudaMemcpy(h, d, 64, cudaMemcpyHostToDevice) == cudaErrorInvalidValue, "H2D with a device src");
  CHECK(cudaMemcpy(d, d + 8, 32, cudaMemcpyDeviceToDevice) == cudaSuccess, "D2D inside one allocation");
  CHECK(cudaMemcpy(d, h, 64, cudaMemcpyDefault) == cudaSuccess, "Default H->D");
  CHECK(cudaMemcpy(h, d, 80, cudaMemcpyDefault) == cudaErrorInvalidValue, "Default past the end");
  CHECK(cudaMemset(d, 0, 65) == cudaErrorInvalidValue, "memset past the end");
  CHECK(cudaMemset(h, 0, 4) == cudaErrorInvalidValue, "memset of host memory");
  CHECK(cudaMemsetAsync(d + 15, 0, 4, 0) == cudaSuccess, "memset of the last element");
  CHECK(cudaFree(h) == cudaErrorInvalidDevicePointer, "cudaFree of a host pointer");
  CHECK(cudaFree(d + 1) == cudaErrorInvalidDevicePointer, "cudaFree of an interior pointer");
  cudaGetLastError();
  size_t fr0, tot, fr1;
  CUDA_OK(cudaMemGetInfo(&fr0, &tot));
  float *big = dev_alloc<float>(1 << 20);
  CUDA_OK(cudaMemGetInfo(&fr1, &tot));
  CHECK(fr0 - fr1 == (4u << 20), "cudaMemGetInfo: free went from %zu to %zu", fr0, fr1);
  void *huge = nullptr;
  CHECK(cudaMalloc(&huge, tot) == cudaErrorMemoryAllocation, "allocation over the total");
  cudaGetLastError();
  CHECK(cudaFree(d) == cudaSuccess && cudaFree(big) == cudaSuccess, "cudaFree");
  CHECK(cudaFree(d) == cudaErrorInvalidDevicePointer, "double cudaFree");
  cudaGetLastError();
  float *pinned = nullptr;
  CHECK(cudaMallocHost(&pinned, 64) == cudaSuccess && pinned, "cudaMallocHost");
  float *d2 = dev_alloc<float>(16);
  CHECK(cudaMemcpyAsync(d2, pinned, 64, cudaMemcpyHostToDevice, 0) == cudaSuccess, "H2D from pinned memory");
  CHECK(cudaFreeHost(pinned) == cudaSuccess, "cudaFreeHost");
  CHECK(cudaFreeHost(h) == cudaErrorInvalidValue, "cudaFreeHost of unknown memory");
  cudaGetLastError();
  cudaFree(d2);

  cudaDeviceProp prop;
  CUDA_OK(cudaGetDeviceProperties(&prop, 0));
  CHECK(!strcmp(prop.name, "SIMT emulator") && prop.major == 9 && prop.minor == 0, "device properties");
  int n = -1;
  CHECK(cudaGetDeviceCount(&n) == cudaSuccess && n == 1, "device count %d", n);
  setenv("SIMT_NO_DEVICE", "1", 1);
  CHECK(cudaGetDeviceCount(&n) == cudaErrorNoDevice && n == 0, "SIMT_NO_DEVICE");
  unsetenv("SIMT_NO_DEVICE");
  cudaGetLastError();
  CHECK(!strcmp(cudaGetErrorName(cudaErrorInvalidConfiguration), "cudaErrorInvalidConfiguration"), "error name");
}

// ---- cuBLAS ---------------------------------------------------------------------------------

static size_t esz(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

static void put(std::vector<unsigned char> &buf, cudaDataType t, size_t i, float v) {
  if (t == CUDA_R_32F) memcpy(&buf[4 * i], &v, 4);
  if (t == CUDA_R_16F) { __half h = __float2half_rn(v); memcpy(&buf[2 * i], &h, 2); }
  if (t == CUDA_R_16BF) { __nv_bfloat16 h = __float2bfloat16_rn(v); memcpy(&buf[2 * i], &h, 2); }
}

static float get(const std::vector<unsigned char> &buf, cudaDataType t, size_t i) {
  if (t == CUDA_R_32F) { float v; memcpy(&v, &buf[4 * i], 4); return v; }
  if (t == CUDA_R_16F) { __half h; memcpy(&h, &buf[2 * i], 2); return __half2float(h); }
  __nv_bfloat16 h;
  memcpy(&h, &buf[2 * i], 2);
  return __bfloat162float(h);
}

// one GEMM (batched when batch > 1) against a float64 reference on the stored inputs
static void gemm_case(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, cudaDataType ab, cudaDataType ct,
                      int batch, float beta, std::mt19937 &rng) {
  const int m = 7, n = 5, k = 13;
  bool an = ta == CUBLAS_OP_N, bn = tb == CUBLAS_OP_N;
  int ar = an ? m : k, ac = an ? k : m, br = bn ? k : n, bc = bn ? n : k;
  int lda = ar + 3, ldb = br + 2, ldc = m + 1;
  long long sa = (long long)lda * ac + 5, sb = (long long)ldb * bc + 1, sc = (long long)ldc * n + 3;
  std::uniform_real_distribution<float> U(-1.0f, 1.0f);
  std::vector<unsigned char> A(sa * batch * esz(ab)), B(sb * batch * esz(ab)), C(sc * batch * esz(ct), 0xff);
  for (size_t i = 0; i < (size_t)sa * batch; i++) put(A, ab, i, U(rng));
  for (size_t i = 0; i < (size_t)sb * batch; i++) put(B, ab, i, U(rng));
  if (beta != 0.0f)
    for (int p = 0; p < batch; p++)
      for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) put(C, ct, p * sc + i + (size_t)j * ldc, U(rng));
  void *dA, *dB, *dC;
  CUDA_OK(cudaMalloc(&dA, A.size()));
  CUDA_OK(cudaMalloc(&dB, B.size()));
  CUDA_OK(cudaMalloc(&dC, C.size()));
  CUDA_OK(cudaMemcpy(dA, A.data(), A.size(), cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dB, B.data(), B.size(), cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dC, C.data(), C.size(), cudaMemcpyHostToDevice));
  float alpha = 0.75f;
  cublasStatus_t st =
      batch == 1 ? cublasGemmEx(h, ta, tb, m, n, k, &alpha, dA, ab, lda, dB, ab, ldb, &beta, dC, ct, ldc,
                                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)
                 : cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, &alpha, dA, ab, lda, sa, dB, ab, ldb, sb, &beta, dC,
                                              ct, ldc, sc, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  CHECK(st == CUBLAS_STATUS_SUCCESS, "gemm status %s", cublasGetStatusName(st));
  std::vector<unsigned char> R(C.size());
  CUDA_OK(cudaMemcpy(R.data(), dC, R.size(), cudaMemcpyDeviceToHost));
  double eps_out = ct == CUDA_R_32F ? 0.0 : ct == CUDA_R_16F ? 1.0 / 1024 : 1.0 / 128;
  double worst = 0;
  bool nan_free = true, pad_untouched = true;
  for (int p = 0; p < batch; p++)
    for (int j = 0; j < n; j++) {
      for (int i = 0; i < m; i++) {
        double ref = 0, mag = 0;
        for (int l = 0; l < k; l++) {
          double a = get(A, ab, p * sa + (an ? i + (size_t)l * lda : l + (size_t)i * lda));
          double b = get(B, ab, p * sb + (bn ? l + (size_t)j * ldb : j + (size_t)l * ldb));
          ref += a * b;
          mag += fabs(a * b);
        }
        size_t ci = p * sc + i + (size_t)j * ldc;
        ref = alpha * ref + (beta != 0.0f ? beta * (double)get(C, ct, ci) : 0.0);
        double got = get(R, ct, ci);
        if (std::isnan(got)) nan_free = false;
        double tol = eps_out * fabs(ref) + 1e-6 * (mag + 1.0);
        worst = std::max(worst, fabs(got - ref) / tol);
      }
      // the ldc padding row of C is never written
      uint16_t raw;
      memcpy(&raw, &R[(p * sc + m + (size_t)j * ldc) * esz(ct)], 2);
      if (raw != 0xffff) pad_untouched = false;
    }
  CHECK(nan_free, "NaN in C (beta %g): C was read although beta == 0?", beta);
  CHECK(worst <= 1.0, "op %c%c types %d/%d batch %d beta %g: error %.3g x tolerance", an ? 'N' : 'T', bn ? 'N' : 'T',
        ab, ct, batch, beta, worst);
  CHECK(pad_untouched, "GEMM wrote outside the m rows of C");
  cudaFree(dA), cudaFree(dB), cudaFree(dC);
}

static void test_cublas() {
  cublasHandle_t h;
  CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS, "cublasCreate");
  std::mt19937 rng(42);
  const cudaDataType combos[][2] = {{CUDA_R_32F, CUDA_R_32F},  {CUDA_R_16F, CUDA_R_16F},  {CUDA_R_16F, CUDA_R_32F},
                                    {CUDA_R_16BF, CUDA_R_16BF}, {CUDA_R_16BF, CUDA_R_32F}};
  const cublasOperation_t ops[] = {CUBLAS_OP_N, CUBLAS_OP_T};
  for (auto &c : combos)
    for (auto ta : ops)
      for (auto tb : ops)
        for (int batch : {1, 3})
          for (float beta : {0.0f, 1.0f}) gemm_case(h, ta, tb, c[0], c[1], batch, beta, rng);

  float *A = dev_alloc<float>(64), *B = dev_alloc<float>(64), *C = dev_alloc<float>(64), host[64];
  float one = 1.0f, zero = 0.0f;
  fprintf(stderr, "(the next messages about bad GEMM arguments are expected)\n");
  CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A, CUDA_R_32F, 3, B, CUDA_R_32F, 4, &zero, C,
                     CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE, "lda < m");
  CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, 4, 4, 5, &one, A, CUDA_R_32F, 4, B, CUDA_R_32F, 5, &zero, C,
                     CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE, "lda < k (T)");
  CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A, CUDA_R_32F, 4, B, CUDA_R_32F, 4, &zero, C,
                     CUDA_R_32F, 3, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE, "ldc < m");
  CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, -1, 4, 4, &one, A, CUDA_R_32F, 4, B, CUDA_R_32F, 4, &zero, C,
                     CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE, "m < 0");
  CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A, CUDA_R_32F, 21, B, CUDA_R_32F, 4, &zero, C,
                     CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE,
        "lda too large for the allocation");
  CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, host, CUDA_R_32F, 4, B, CUDA_R_32F, 4, &zero, C,
                     CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE,
        "host pointer for A");
  CHECK(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A, CUDA_R_32F, 4, 16, B, CUDA_R_32F, 4,
                                   16, &zero, C, CUDA_R_32F, 4, 16, 5, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE, "batches past the end");
  CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A, CUDA_R_32F, 4, B, CUDA_R_16F, 4, &zero, C,
                     CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED, "32F x 16F");
  CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A, CUDA_R_16F, 4, B, CUDA_R_16F, 4, &zero, C,
                     CUDA_R_16BF, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED,
        "16F -> 16BF");
  CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A, CUDA_R_32F, 4, B, CUDA_R_32F, 4, &zero, C,
                     CUDA_R_16F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED, "32F -> 16F");
  CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A, CUDA_R_16F, 4, B, CUDA_R_16F, 4, &zero, C,
                     CUDA_R_16F, 4, CUBLAS_COMPUTE_16F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED,
        "compute 16F");
  CHECK(cublasGemmEx(nullptr, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A, CUDA_R_32F, 4, B, CUDA_R_32F, 4, &zero, C,
                     CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_INITIALIZED,
        "null handle");
  // TF32: 1 + 2^-20 is not representable, so a 1x1x1 product loses it
  float x = 1.0f + 1.0f / (1 << 20), r = 0;
  CUDA_OK(cudaMemcpy(A, &x, 4, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(B, &one, 4, cudaMemcpyHostToDevice));
  cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, A, CUDA_R_32F, 1, B, CUDA_R_32F, 1, &zero, C, CUDA_R_32F, 1,
               CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT);
  CUDA_OK(cudaMemcpy(&r, C, 4, cudaMemcpyDeviceToHost));
  CHECK(r == 1.0f, "TF32 compute kept %a", r);
  cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, A, CUDA_R_32F, 1, B, CUDA_R_32F, 1, &zero, C, CUDA_R_32F, 1,
               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  CUDA_OK(cudaMemcpy(&r, C, 4, cudaMemcpyDeviceToHost));
  CHECK(r == x, "fp32 compute lost bits: %a", r);
  CHECK(!strcmp(cublasGetStatusName(CUBLAS_STATUS_NOT_SUPPORTED), "CUBLAS_STATUS_NOT_SUPPORTED"), "status name");
  CHECK(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS, "cublasDestroy");
  cudaFree(A), cudaFree(B), cudaFree(C);
}

// ---- half / bfloat16 ------------------------------------------------------------------------

static float ref_half_to_float(uint16_t h) {
  int e = (h >> 10) & 31, m = h & 1023;
  float s = (h & 0x8000) ? -1.0f : 1.0f;
  if (e == 31) return m ? NAN : s * INFINITY;
  if (e == 0) return s * (float)ldexp((double)m, -24);
  return s * (float)ldexp(1024.0 + m, e - 25);
}

// round to nearest even in double arithmetic, via nearbyint (default rounding mode)
static uint16_t ref_float_to_half(float f) {
  if (std::isnan(f)) return 0x7fff;
  uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  if (std::isinf(f)) return (uint16_t)(sign | 0x7c00);
  double a = fabs((double)f);
  if (a < ldexp(1.0, -14)) return (uint16_t)(sign | (uint16_t)nearbyint(a * ldexp(1.0, 24)));
  int ex;
  frexp(a, &ex);  // a = q * 2^ex, q in [0.5, 1)
  double q = nearbyint(ldexp(a, 11 - ex));  // in [1024, 2048]
  if (q == 2048) q = 1024, ex++;
  int be = ex - 1 + 15;
  if (be >= 31) return (uint16_t)(sign | 0x7c00);
  return (uint16_t)(sign | (be << 10) | ((int)q - 1024));
}

static uint16_t ref_float_to_bf16(float f) {
  if (std::isnan(f)) return 0x7fff;
  uint32_t sign = std::signbit(f) ? 0x8000 : 0;
  if (std::isinf(f)) return (uint16_t)(sign | 0x7f80);
  double a = fabs((double)f);
  if (a < ldexp(1.0, -126)) return (uint16_t)(sign | (uint16_t)nearbyint(a * ldexp(1.0, 133)));
  int ex;
  frexp(a, &ex);
  double q = nearbyint(ldexp(a, 8 - ex));  // in [128, 256]
  if (q == 256) q = 128, ex++;
  int be = ex - 1 + 127;
  if (be >= 255) return (uint16_t)(sign | 0x7f80);
  return (uint16_t)(sign | (be << 7) | ((int)q - 128));
}

static float bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static bool same_float(float a, float b) {
  return (std::isnan(a) && std::isnan(b)) || !memcmp(&a, &b, 4);
}

static void test_half_conversions() {
  int bad_h2f = 0, bad_rt = 0, bad_b2f = 0, bad_brt = 0;
  for (uint32_t b = 0; b < 65536; b++) {
    __half h = __ushort_as_half((unsigned short)b);
    float f = __half2float(h);
    if (!same_float(f, ref_half_to_float((uint16_t)b))) bad_h2f++;
    uint16_t back = __half_as_ushort(__float2half_rn(f));
    if (std::isnan(f) ? back != 0x7fff : back != b) bad_rt++;
    __nv_bfloat16 bf = __ushort_as_bfloat16((unsigned short)b);
    float g = __bfloat162float(bf);
    if (!same_float(g, bits_float(b << 16))) bad_b2f++;
    uint16_t bback = __bfloat16_as_ushort(__float2bfloat16_rn(g));
    if (std::isnan(g) ? bback != 0x7fff : bback != b) bad_brt++;
  }
  CHECK(!bad_h2f && !bad_rt && !bad_b2f && !bad_brt, "exhaustive: half->float %d, half round trip %d, bf16->float %d, "
        "bf16 round trip %d mismatches", bad_h2f, bad_rt, bad_b2f, bad_brt);

  std::vector<float> probes = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 65504.0f, 65519.99f, 65520.0f, 65536.0f,
                               1e-8f, 2.9802322e-8f, 2.9802326e-8f, 5.96e-8f, 6.1035156e-5f, 6.1e-5f, 1.0f / 3,
                               3.4028235e38f, 1.17549435e-38f, 1e-45f};
  // every half midpoint and its float neighbours: the tie cases
  for (uint32_t b = 0; b < 0x7c00; b++) {
    double lo = ref_half_to_float((uint16_t)b), hi = ref_half_to_float((uint16_t)(b + 1));
    float mid = (float)((lo + hi) / 2);
    probes.push_back(mid);
    probes.push_back(nextafterf(mid, 0.0f));
    probes.push_back(nextafterf(mid, INFINITY));
    probes.push_back(-mid);
  }
  for (uint32_t b = 0; b < 0x7f80; b++) {  // bf16 midpoints are float values with bit 15 set alone
    uint32_t u = (b << 16) | 0x8000;
    probes.push_back(bits_float(u));
    probes.push_back(bits_float(u - 1));
    probes.push_back(bits_float(u + 1));
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 2000000; i++) probes.push_back(bits_float(rng()));
  std::uniform_real_distribution<float> U(-70000.0f, 70000.0f);
  for (int i = 0; i < 200000; i++) probes.push_back(U(rng));
  int bad_f2h = 0, bad_f2b = 0;
  for (float f : probes) {
    uint16_t got = __half_as_ushort(__float2half(f)), want = ref_float_to_half(f);
    if (got != want && bad_f2h++ < 5) fprintf(stderr, "float2half(%a): %04x, want %04x\n", f, got, want);
    got = __bfloat16_as_ushort(__float2bfloat16(f)), want = ref_float_to_bf16(f);
    if (got != want && bad_f2b++ < 5) fprintf(stderr, "float2bfloat16(%a): %04x, want %04x\n", f, got, want);
  }
  CHECK(!bad_f2h && !bad_f2b, "float->half %d, float->bf16 %d mismatches over %zu floats", bad_f2h, bad_f2b,
        probes.size());
  __half2 h2 = __floats2half2_rn(1.5f, -2.25f);
  __nv_bfloat162 b2 = __floats2bfloat162_rn(3.0f, 0.5f);
  CHECK(__low2float(h2) == 1.5f && __high2float(h2) == -2.25f && __low2float(b2) == 3.0f && __high2float(b2) == 0.5f,
        "pair conversions");
  CHECK(sizeof(__half) == 2 && sizeof(__nv_bfloat16) == 2 && sizeof(__half2) == 4 &&
            std::is_trivially_copyable<__half>::value && std::is_trivially_copyable<__nv_bfloat162>::value,
        "half type layout");
}

// ---- graphs ---------------------------------------------------------------------------------

static void test_graph_capture() {
  const int n = 6;  // out = A * x where A = 2 * in (n x n), x = ones: the row sums of 2*in
  cudaStream_t s;
  CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cublasHandle_t h;
  CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS, "cublasCreate");
  cublasSetStream(h, s);
  float *in = dev_alloc<float>(n * n), *tmp = dev_alloc<float>(n * n), *a = dev_alloc<float>(n * n);
  float *x = dev_alloc<float>(n), *y = dev_alloc<float>(n);
  std::vector<float> ones(n, 1.0f), host_out(n, -7.0f), hin(n * n);
  CUDA_OK(cudaMemcpy(x, ones.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  float one = 1.0f, zero = 0.0f;

  CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  cudaStreamCaptureStatus cs;
  CUDA_OK(cudaStreamIsCapturing(s, &cs));
  CHECK(cs == cudaStreamCaptureStatusActive, "capture status %d", cs);
  SIMT_LAUNCH(k_scale, 1, 64, s, in, tmp, n * n, 2.0f);
  CUDA_OK(cudaMemcpyAsync(a, tmp, n * n * sizeof(float), cudaMemcpyDeviceToDevice, s));
  CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, 1, n, &one, a, CUDA_R_32F, n, x, CUDA_R_32F, n, &zero, y,
                     CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS, "captured GEMM");
  CUDA_OK(cudaMemcpyAsync(host_out.data(), y, n * sizeof(float), cudaMemcpyDeviceToHost, s));
  cudaGraph_t g;
  CUDA_OK(cudaStreamEndCapture(s, &g));
  CHECK(host_out[0] == -7.0f, "a captured operation ran during capture");
  cudaGraphExec_t ge;
  CUDA_OK(cudaGraphInstantiate(&ge, g, 0));

  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < n * n; i++) hin[i] = (float)(i * (round + 1) % 11);
    CUDA_OK(cudaMemcpy(in, hin.data(), hin.size() * sizeof(float), cudaMemcpyHostToDevice));
    CUDA_OK(cudaGraphLaunch(ge, s));
    if (round == 2) CUDA_OK(cudaGraphLaunch(ge, s));  // twice: same result
    CUDA_OK(cudaStreamSynchronize(s));
    bool ok = true;
    for (int i = 0; i < n; i++) {
      float want = 0;
      for (int j = 0; j < n; j++) want += 2.0f * hin[i + j * n];
      ok &= host_out[i] == want;
    }
    CHECK(ok, "round %d: the graph did not follow the new input", round);
  }

  // a synchronous call during capture fails and invalidates the capture
  fprintf(stderr, "(the next messages about calls during capture are expected)\n");
  CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  CHECK(cudaMemcpy(in, hin.data(), 4, cudaMemcpyHostToDevice) == cudaErrorStreamCaptureUnsupported, "sync memcpy");
  cudaGraph_t bad = (cudaGraph_t)1;
  CHECK(cudaStreamEndCapture(s, &bad) == cudaErrorStreamCaptureInvalidated && bad == nullptr, "invalidated capture");
  CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  void *p = nullptr;
  CHECK(cudaMalloc(&p, 16) == cudaErrorStreamCaptureUnsupported, "cudaMalloc during capture");
  cudaStreamEndCapture(s, &bad);
  CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
  CHECK(cudaStreamSynchronize(s) == cudaErrorStreamCaptureUnsupported, "cudaStreamSynchronize during capture");
  cudaStreamEndCapture(s, &bad);
  CHECK(cudaStreamBeginCapture(0, cudaStreamCaptureModeGlobal) == cudaErrorStreamCaptureUnsupported,
        "capture on the legacy stream");
  cudaGetLastError();

  cudaEvent_t e0, e1;
  float ms = -1;
  CUDA_OK(cudaEventCreate(&e0));
  CUDA_OK(cudaEventCreate(&e1));
  CUDA_OK(cudaEventRecord(e0, s));
  CUDA_OK(cudaGraphLaunch(ge, s));
  CUDA_OK(cudaEventRecord(e1, s));
  CUDA_OK(cudaEventSynchronize(e1));
  CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
  CHECK(ms >= 0.0f, "elapsed %g ms", ms);
  cudaEventDestroy(e0), cudaEventDestroy(e1);

  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  cublasDestroy(h);
  CUDA_OK(cudaStreamDestroy(s));
  cudaFree(in), cudaFree(tmp), cudaFree(a), cudaFree(x), cudaFree(y);
}

// ---- cost -----------------------------------------------------------------------------------

static void measure_costs() {
  const int blocks = 4096, threads = 256;  // 1M thread executions
  int *d = dev_alloc<int>(blocks * threads);
  SIMT_LAUNCH(k_trivial, blocks, threads, 0, d);  // warm the fiber pool
  double t0 = now_s();
  SIMT_LAUNCH(k_trivial, blocks, threads, 0, d);
  double t_trivial = now_s() - t0;
  int h[512];
  CUDA_OK(cudaMemcpy(h, d + 256 * 100, sizeof h, cudaMemcpyDeviceToHost));
  CHECK(h[255] == 255 && h[256] == 0, "trivial kernel");
  cudaFree(d);

  const int bblocks = 64;
  float *o = dev_alloc<float>(bblocks * 256);
  SIMT_LAUNCH(k_ten_barriers, 1, 256, 0, o);
  t0 = now_s();
  SIMT_LAUNCH(k_ten_barriers, bblocks, 256, 0, o);
  double t_bar = (now_s() - t0) / bblocks;
  float ho[256];
  CUDA_OK(cudaMemcpy(ho, o, sizeof ho, cudaMemcpyDeviceToHost));
  CHECK(ho[0] == 10.0f && ho[250] == 4.0f, "ten barriers: %g %g", ho[0], ho[250]);
  cudaFree(o);
  printf("cost: trivial kernel %.1f ns per thread (1M threads in %.3f s); block of 256 through 10 barriers %.1f us\n",
         t_trivial * 1e9 / (blocks * threads), t_trivial, t_bar * 1e6);
  CHECK(t_trivial < 20.0 && t_bar < 0.1, "the emulator is far slower than expected");
}

int main() {
  unsetenv("SIMT_ORDER");
  test_block_reduction();
  test_warp_collectives();
  test_races_visible();
  test_launch_config();
  test_atomics();
  test_memory_checks();
  test_cublas();
  test_half_conversions();
  test_graph_capture();
  test_bugs_abort();
  measure_costs();
  CHECK(simt_device_bytes_in_use() == 0, "%zu device bytes leaked by the tests", simt_device_bytes_in_use());
  printf("test_simt: %d checks, %d failures\n", g_checks, g_failures);
  return g_failures ? 1 : 0;
}
