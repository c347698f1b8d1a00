// simt.cc: the emulator's runtime: block scheduler on fibers, device memory registry with guard
// bytes, streams (synchronous), events, and graph capture/replay.
//
// Not a performance model and not thread-parallel: every operation runs on the calling OS thread
// under one process-wide lock. Key invariant: a fiber only gives up the CPU inside
// __syncthreads or a warp collective, so a kernel's result depends on the order in which the
// scheduler runs threads (SIMT_ORDER) exactly when it has a race.
#include "simt.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define SIMT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIMT_ASAN 1
#endif
#endif
#ifdef SIMT_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__x86_64__) && !defined(SIMT_USE_UCONTEXT)
#define SIMT_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

uint3 threadIdx;
uint3 blockIdx;
dim3 blockDim;
dim3 gridDim;

namespace {

// ---------------------------------------------------------------------------------------------
// context switch

#ifdef SIMT_ASM_SWITCH
// Saves the callee-saved registers, MXCSR and the x87 control word on the current stack, stores
// the stack pointer in *save_sp and resumes the context whose stack pointer is new_sp.
extern "C" void simt_ctx_swap(void **save_sp, void *new_sp);
asm(".text\n"
    ".globl simt_ctx_swap\n"
    ".hidden simt_ctx_swap\n"
    ".type simt_ctx_swap,@function\n"
    "simt_ctx_swap:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  addq $8, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size simt_ctx_swap, .-simt_ctx_swap\n");
#endif

struct Fiber {
  char *map = nullptr;  // mapping, lowest page is PROT_NONE (stack overflow faults)
  size_t map_bytes = 0;
  char *stack = nullptr;  // usable stack [stack, stack + size)
  size_t size = 0;
#ifdef SIMT_ASM_SWITCH
  void *sp = nullptr;
#else
  ucontext_t uc;
#endif
  void *asan_fake = nullptr;
  bool finished = false;
};

enum { T_NEW, T_RUN, T_READY, T_BAR, T_WARP, T_DONE };

struct Thr {
  uint3 idx;
  int state;
  Fiber *fiber;
  const char *bar_file;
  int bar_line;
  int bar_pred;
  int wop;
  unsigned wmask;
  int warg;
  int wwidth;
  uint64_t wval;
  uint64_t wres;
};

struct Block {
  std::vector<Thr> th;
  std::vector<int> order;  // scheduling order of thread indices within a round
  int n = 0;
  int pos = 0;  // next entry of order to start (first round)
  int n_done = 0;
  int n_bar = 0;
  int bar_result = 0;
};

std::recursive_mutex &g_lock = *new std::recursive_mutex;
thread_local cudaError_t g_last_error = cudaSuccess;

// scheduler state, owned by whoever holds g_lock inside exec_launch
// registries are never destroyed: static destructors of the code under test may still call in
Block &g_blk = *new Block;
Thr *g_thr = nullptr;
Fiber *g_fiber = nullptr;
const simt_task *g_task = nullptr;
const char *g_kernel = nullptr;
std::vector<Fiber *> &g_free_fibers = *new std::vector<Fiber *>;
#ifdef SIMT_ASM_SWITCH
void *g_sched_sp = nullptr;
#else
ucontext_t g_sched_uc;
#endif
#ifdef SIMT_ASAN
void *g_sched_fake = nullptr;
const void *g_sched_bottom = nullptr;
size_t g_sched_size = 0;
#endif

cudaError_t set_error(cudaError_t e) {
  if (e != cudaSuccess) g_last_error = e;
  return e;
}

[[noreturn]] void kernel_fail(const Thr *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
[[noreturn]] void kernel_fail(const Thr *t, const char *fmt, ...) {
  fprintf(stderr, "simt: kernel '%s' block (%u,%u,%u)", g_kernel ? g_kernel : "?", blockIdx.x, blockIdx.y,
          blockIdx.z);
  if (t) fprintf(stderr, " thread (%u,%u,%u)", t->idx.x, t->idx.y, t->idx.z);
  fputs(": ", stderr);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
  abort();
}

size_t stack_bytes() {
  static size_t bytes = [] {
    // address space only (MAP_NORESERVE): a fiber touches the pages it uses
#ifdef SIMT_ASAN
    size_t kb = 512;
#else
    size_t kb = 256;
#endif
    if (const char *e = getenv("SIMT_STACK_KB")) kb = std::max<long>(16, atol(e));
    return kb * 1024;
  }();
  return bytes;
}

void fiber_entry();

Fiber *fiber_get() {
  Fiber *f;
  if (!g_free_fibers.empty()) {
    f = g_free_fibers.back();
    g_free_fibers.pop_back();
  } else {
    f = new Fiber;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    f->map_bytes = stack_bytes() + page;
    void *m = mmap(nullptr, f->map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
      perror("simt: mmap of a fiber stack");
      abort();
    }
    f->map = (char *)m;
    mprotect(f->map, page, PROT_NONE);
    f->stack = f->map + page;
    f->size = stack_bytes();
  }
  f->finished = false;
  f->asan_fake = nullptr;
#ifdef SIMT_ASM_SWITCH
  void **sp = (void **)(f->stack + f->size);
  *--sp = nullptr;                       // return address of fiber_entry: it never returns
  *--sp = (void *)&fiber_entry;          // popped by the first ret
  for (int i = 0; i < 6; i++) *--sp = nullptr;  // rbp rbx r12..r15
  uint32_t mxcsr = 0;
  uint16_t fpucw = 0;
  asm volatile("stmxcsr %0\n fnstcw %1" : "=m"(mxcsr), "=m"(fpucw));
  --sp;
  memset(sp, 0, 8);
  memcpy(sp, &mxcsr, 4);
  memcpy((char *)sp + 4, &fpucw, 2);
  f->sp = sp;
#else
  getcontext(&f->uc);
  f->uc.uc_stack.ss_sp = f->stack;
  f->uc.uc_stack.ss_size = f->size;
  f->uc.uc_link = nullptr;
  makecontext(&f->uc, fiber_entry, 0);
#endif
  return f;
}

void fiber_put(Fiber *f) { g_free_fibers.push_back(f); }

// scheduler -> fiber
void enter_fiber(Fiber *f) {
  g_fiber = f;
#ifdef SIMT_ASAN
  __sanitizer_start_switch_fiber(&g_sched_fake, f->stack, f->size);
#endif
#ifdef SIMT_ASM_SWITCH
  simt_ctx_swap(&g_sched_sp, f->sp);
#else
  swapcontext(&g_sched_uc, &f->uc);
#endif
#ifdef SIMT_ASAN
  __sanitizer_finish_switch_fiber(g_sched_fake, nullptr, nullptr);
#endif
}

// fiber -> scheduler; a dying fiber never comes back
void leave_fiber(bool dying) {
  Fiber *f = g_fiber;
#ifdef SIMT_ASAN
  __sanitizer_start_switch_fiber(dying ? nullptr : &f->asan_fake, g_sched_bottom, g_sched_size);
#else
  (void)dying;
#endif
#ifdef SIMT_ASM_SWITCH
  simt_ctx_swap(&f->sp, g_sched_sp);
#else
  swapcontext(&f->uc, &g_sched_uc);
#endif
#ifdef SIMT_ASAN
  __sanitizer_finish_switch_fiber(f->asan_fake, &g_sched_bottom, &g_sched_size);
#endif
}

void set_current(Thr *t) {
  g_thr = t;
  threadIdx = t->idx;
}

// A fiber starts the next not-yet-started thread of the first round, and as long as threads run
// to completion without yielding it keeps going with the next one: a block without barriers is
// one switch in and one out.
void fiber_entry() {
#ifdef SIMT_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &g_sched_bottom, &g_sched_size);
#endif
  Fiber *self = g_fiber;
  Block &b = g_blk;
  while (b.pos < b.n) {
    Thr &t = b.th[b.order[b.pos++]];
    t.fiber = self;
    t.state = T_RUN;
    set_current(&t);
    g_task->run(g_task->data.get());
    t.state = T_DONE;
    b.n_done++;
  }
  self->finished = true;
  leave_fiber(true);
  abort();
}

const char *thr_state_name(const Thr &t) {
  switch (t.state) {
    case T_NEW: return "has not started";
    case T_RUN: return "is running";
    case T_READY: return "is runnable";
    case T_BAR: return "waits at __syncthreads";
    case T_WARP: return "waits in a warp collective";
    default: return "has exited";
  }
}

const char *warp_op_name(int op) {
  static const char *names[] = {"__syncwarp", "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync",
                                "__shfl_xor_sync", "__ballot_sync", "__any_sync", "__all_sync"};
  return op >= 0 && op < (int)(sizeof names / sizeof names[0]) ? names[op] : "warp collective";
}

[[noreturn]] void report_stall() {
  Block &b = g_blk;
  for (int i = 0; i < b.n; i++) {
    const Thr &t = b.th[i];
    if (t.state != T_WARP) continue;
    int w0 = i & ~31;
    for (int l = 0; l < 32; l++) {
      if (!(t.wmask >> l & 1)) continue;
      const Thr &o = b.th[w0 + l];
      if (o.state == T_WARP && o.wmask == t.wmask) continue;
      if (o.state == T_BAR)
        kernel_fail(&t, "deadlock: %s(mask 0x%08x) waits for lane %d, which waits at __syncthreads (%s:%d)",
                    warp_op_name(t.wop), t.wmask, l, o.bar_file, o.bar_line);
      kernel_fail(&t, "deadlock: %s(mask 0x%08x) waits for lane %d, which %s%s", warp_op_name(t.wop), t.wmask, l,
                  thr_state_name(o), o.state == T_WARP ? " with a different mask or op" : "");
    }
  }
  const Thr *bar = nullptr, *done = nullptr;
  for (int i = 0; i < b.n; i++) {
    if (b.th[i].state == T_BAR && !bar) bar = &b.th[i];
    if (b.th[i].state == T_DONE && !done) done = &b.th[i];
  }
  if (bar && done)
    kernel_fail(bar,
                "__syncthreads (%s:%d) can never complete: thread (%u,%u,%u) of the block has exited "
                "(a barrier inside a condition or after an early return)",
                bar->bar_file, bar->bar_line, done->idx.x, done->idx.y, done->idx.z);
  kernel_fail(bar, "deadlock: no thread of the block can proceed");
}

void run_block() {
  Block &b = g_blk;
  for (int i = 0; i < b.n; i++) {
    b.th[i].state = T_NEW;
    b.th[i].fiber = nullptr;
  }
  b.pos = b.n_done = b.n_bar = 0;
  while (b.pos < b.n) {
    Fiber *f = fiber_get();
    enter_fiber(f);
    if (f->finished) fiber_put(f);
  }
  while (b.n_done < b.n) {
    bool progress = false;
    for (int k = 0; k < b.n; k++) {
      Thr &t = b.th[b.order[k]];
      if (t.state != T_READY) continue;
      progress = true;
      t.state = T_RUN;
      set_current(&t);
      Fiber *f = t.fiber;
      enter_fiber(f);
      if (f->finished) fiber_put(f);
    }
    if (!progress) report_stall();
  }
  g_thr = nullptr;
}

uint64_t splitmix(uint64_t &s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

template <class T> void shuffle(std::vector<T> &v, uint64_t seed) {
  for (size_t i = v.size(); i > 1; i--) std::swap(v[i - 1], v[splitmix(seed) % i]);
}

enum Order { ORDER_FORWARD, ORDER_REVERSE, ORDER_SHUFFLE };

Order read_order(uint64_t *seed) {
  const char *e = getenv("SIMT_ORDER");
  *seed = 0;
  if (!e || !*e || !strcmp(e, "forward")) return ORDER_FORWARD;
  if (!strcmp(e, "reverse")) return ORDER_REVERSE;
  if (!strncmp(e, "shuffle", 7)) {
    if (e[7] == ':') *seed = strtoull(e + 8, nullptr, 0);
    return ORDER_SHUFFLE;
  }
  fprintf(stderr, "simt: SIMT_ORDER='%s' is not forward, reverse or shuffle:SEED; using forward\n", e);
  return ORDER_FORWARD;
}

// ---------------------------------------------------------------------------------------------
// device memory registry

constexpr size_t GUARD_BYTES = 256;
constexpr unsigned char GUARD_FILL = 0xcd;

struct Alloc {
  size_t size;
  char *raw;  // GUARD_BYTES, size user bytes, GUARD_BYTES
};
std::map<uintptr_t, Alloc> &g_dev = *new std::map<uintptr_t, Alloc>;  // by user base address
std::map<uintptr_t, size_t> &g_pinned = *new std::map<uintptr_t, size_t>;  // cudaMallocHost, cudaHostAlloc
size_t g_dev_bytes = 0;

size_t total_mem() {
  static size_t total = [] {
    double gib = 16;
    if (const char *e = getenv("SIMT_MEM_GIB")) gib = atof(e);
    return (size_t)(gib * 1073741824.0);
  }();
  return total;
}

bool no_device() {
  const char *e = getenv("SIMT_NO_DEVICE");
  return e && *e && strcmp(e, "0") != 0;
}

// the allocation whose user range contains p, or nullptr
const std::pair<const uintptr_t, Alloc> *dev_find(uintptr_t p) {
  auto it = g_dev.upper_bound(p);
  if (it == g_dev.begin()) return nullptr;
  --it;
  if (p < it->first + std::max<size_t>(it->second.size, 1)) return &*it;
  return nullptr;
}

bool dev_range_ok(const void *ptr, size_t n) {
  if (!ptr) return false;
  uintptr_t p = (uintptr_t)ptr;
  auto a = dev_find(p);
  return a && n <= a->second.size - (p - a->first);
}

// true when [p, p+n) touches no device allocation (guards included)
bool host_range_ok(const void *ptr, size_t n) {
  uintptr_t p = (uintptr_t)ptr, end = p + std::max<size_t>(n, 1);
  auto it = g_dev.lower_bound(end + GUARD_BYTES);
  if (it == g_dev.begin()) return true;
  --it;
  return it->first + it->second.size + GUARD_BYTES <= p;
}

void describe_nearest(uintptr_t p) {
  auto it = g_dev.upper_bound(p);
  if (it != g_dev.begin()) {
    --it;
    fprintf(stderr, " (nearest below: %zu-byte allocation at %p, pointer is at offset %zu)", it->second.size,
            (void *)it->first, (size_t)(p - it->first));
  } else {
    fputs(" (no device allocation below it)", stderr);
  }
}

bool check_dev(const void *p, size_t n, const char *call, const char *arg) {
  if (dev_range_ok(p, n)) return true;
  fprintf(stderr, "simt: %s: %s [%p, +%zu bytes) is not inside one live cudaMalloc allocation", call, arg, p, n);
  if (p) describe_nearest((uintptr_t)p);
  fputc('\n', stderr);
  return false;
}

bool check_host(const void *p, size_t n, const char *call, const char *arg) {
  if (p && host_range_ok(p, n)) return true;
  if (!p)
    fprintf(stderr, "simt: %s: %s is NULL\n", call, arg);
  else
    fprintf(stderr, "simt: %s: %s [%p, +%zu bytes) is device memory, but the copy kind says host\n", call, arg, p, n);
  return false;
}

void guard_fail(const Alloc &a, uintptr_t base, const char *when) {
  const unsigned char *front = (const unsigned char *)a.raw, *back = (const unsigned char *)base + a.size;
  long off = 0;
  for (size_t i = 0; i < GUARD_BYTES; i++)
    if (front[i] != GUARD_FILL) {
      off = (long)i - (long)GUARD_BYTES;
      break;
    }
  for (size_t i = GUARD_BYTES; i-- > 0;)
    if (back[i] != GUARD_FILL) off = (long)(a.size + i);
  fprintf(stderr,
          "simt: guard bytes of the %zu-byte device allocation at %p were overwritten (byte at offset %ld): "
          "an out-of-bounds write, found %s\n",
          a.size, (void *)base, off, when);
  fflush(stderr);
  abort();
}

bool guards_intact(const Alloc &a, uintptr_t base) {
#ifdef SIMT_ASAN
  (void)a, (void)base;
  return true;  // the guards are poisoned: ASan reports the bad access itself
#else
  static unsigned char pattern[GUARD_BYTES];
  if (pattern[0] != GUARD_FILL) memset(pattern, GUARD_FILL, sizeof pattern);
  return !memcmp(a.raw, pattern, GUARD_BYTES) && !memcmp((const char *)base + a.size, pattern, GUARD_BYTES);
#endif
}

void check_all_guards(const char *when) {
  for (auto &kv : g_dev)
    if (!guards_intact(kv.second, kv.first)) guard_fail(kv.second, kv.first, when);
}

// ---------------------------------------------------------------------------------------------
// streams, graphs, events

struct Node {
  std::string what;
  std::function<void()> op;
};

}  // namespace

struct CUgraph_st {
  std::vector<Node> nodes;
};
struct CUgraphExec_st {
  std::vector<Node> nodes;
};
struct CUstream_st {
  unsigned flags = 0;
  bool capturing = false;
  bool invalidated = false;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  CUgraph_st *graph = nullptr;
};
struct CUevent_st {
  std::chrono::steady_clock::time_point t;
  bool recorded = false;
};

namespace {

CUstream_st g_default_stream;
std::set<CUstream_st *> &g_streams = *new std::set<CUstream_st *>;
std::set<CUevent_st *> &g_events = *new std::set<CUevent_st *>;

CUstream_st *stream_of(cudaStream_t s) { return s ? s : &g_default_stream; }

bool stream_valid(cudaStream_t s) { return !s || g_streams.count(s); }

// A synchronous ("unsafe") call while a stream captures in global/thread-local mode fails and
// invalidates the capture, as in CUDA. relaxed_ok: the call is allowed under relaxed mode.
bool capture_forbids(const char *call, bool relaxed_ok) {
  bool hit = false;
  for (CUstream_st *s : g_streams) {
    if (!s->capturing || (relaxed_ok && s->mode == cudaStreamCaptureModeRelaxed)) continue;
    s->invalidated = true;
    hit = true;
  }
  if (hit) fprintf(stderr, "simt: %s during stream capture: not allowed, the capture is invalidated\n", call);
  return hit;
}

void exec_launch(const char *name, dim3 grid, dim3 block, const simt_task &task) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (g_task) kernel_fail(g_thr, "launch of '%s' from inside a kernel is not supported", name);
  gridDim = grid;
  blockDim = block;
  g_task = &task;
  g_kernel = name;
  uint64_t seed;
  Order order = read_order(&seed);
  Block &b = g_blk;
  b.n = (int)(block.x * block.y * block.z);
  b.th.resize(b.n);
  b.order.resize(b.n);
  for (int i = 0; i < b.n; i++) {
    b.th[i].idx = uint3{i % block.x, (i / block.x) % block.y, i / (block.x * block.y)};
    b.order[i] = order == ORDER_REVERSE ? b.n - 1 - i : i;
  }
  uint64_t n_blocks = (uint64_t)grid.x * grid.y * grid.z;
  std::vector<uint64_t> perm;
  if (order == ORDER_SHUFFLE && n_blocks <= (1u << 24)) {
    perm.resize(n_blocks);
    for (uint64_t i = 0; i < n_blocks; i++) perm[i] = i;
    shuffle(perm, seed);
  }
  for (uint64_t k = 0; k < n_blocks; k++) {
    uint64_t lin = order == ORDER_REVERSE ? n_blocks - 1 - k : perm.empty() ? k : perm[k];
    blockIdx = uint3{(unsigned)(lin % grid.x), (unsigned)(lin / grid.x % grid.y), (unsigned)(lin / ((uint64_t)grid.x * grid.y))};
    if (order == ORDER_SHUFFLE) {
      for (int i = 0; i < b.n; i++) b.order[i] = i;
      shuffle(b.order, seed ^ (lin * 0x9e3779b97f4a7c15ull));
    }
    run_block();
  }
  g_task = nullptr;
  std::string when = std::string("after kernel '") + name + "'";
  check_all_guards(when.c_str());
  g_kernel = nullptr;
}

bool config_valid(dim3 g, dim3 b) {
  if (!b.x || !b.y || !b.z || b.x > 1024 || b.y > 1024 || b.z > 64) return false;
  if ((uint64_t)b.x * b.y * b.z > 1024) return false;
  if (!g.x || !g.y || !g.z || g.x > 2147483647u || g.y > 65535 || g.z > 65535) return false;
  return true;
}

cudaError_t copy_checked(const char *call, void *dst, const void *src, size_t n, cudaMemcpyKind kind) {
  if (n == 0) return cudaSuccess;
  char what[96];
  static const char *kinds[] = {"HostToHost", "HostToDevice", "DeviceToHost", "DeviceToDevice", "Default"};
  if ((unsigned)kind > 4u) return cudaErrorInvalidMemcpyDirection;
  snprintf(what, sizeof what, "%s(%s)", call, kinds[kind]);
  if (!dst || !src) {
    fprintf(stderr, "simt: %s: NULL %s\n", what, dst ? "src" : "dst");
    return cudaErrorInvalidValue;
  }
  bool ok = true;
  switch (kind) {
    case cudaMemcpyHostToHost: ok = check_host(dst, n, what, "dst") && check_host(src, n, what, "src"); break;
    case cudaMemcpyHostToDevice: ok = check_dev(dst, n, what, "dst") && check_host(src, n, what, "src"); break;
    case cudaMemcpyDeviceToHost: ok = check_host(dst, n, what, "dst") && check_dev(src, n, what, "src"); break;
    case cudaMemcpyDeviceToDevice: ok = check_dev(dst, n, what, "dst") && check_dev(src, n, what, "src"); break;
    case cudaMemcpyDefault:
      ok = (host_range_ok(dst, n) || check_dev(dst, n, what, "dst")) && (host_range_ok(src, n) || check_dev(src, n, what, "src"));
      break;
  }
  return ok ? cudaSuccess : cudaErrorInvalidValue;
}

cudaError_t set_checked(const char *call, void *p, size_t n) {
  if (n == 0) return cudaSuccess;
  return check_dev(p, n, call, "ptr") ? cudaSuccess : cudaErrorInvalidValue;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// scheduler entry points called from kernels

static void require_kernel(const char *what) {
  if (g_thr) return;
  fprintf(stderr, "simt: %s called outside a kernel\n", what);
  abort();
}

static int barrier(int op, int pred, const char *file, int line) {
  require_kernel("__syncthreads");
  Thr &t = *g_thr;
  Block &b = g_blk;
  t.state = T_BAR;
  t.bar_file = file;
  t.bar_line = line;
  t.bar_pred = pred;
  if (++b.n_bar < b.n) {
    leave_fiber(false);
    return b.bar_result;
  }
  // last arrival: every thread of the block waits here; check they all wait at this call site
  int count = 0;
  for (int i = 0; i < b.n; i++) {
    const Thr &o = b.th[i];
    if (o.bar_line != line || (o.bar_file != file && strcmp(o.bar_file, file)))
      kernel_fail(&o, "waits at __syncthreads (%s:%d) while thread (%u,%u,%u) waits at __syncthreads (%s:%d): "
                      "divergent barrier", o.bar_file, o.bar_line, t.idx.x, t.idx.y, t.idx.z, file, line);
    count += o.bar_pred != 0;
  }
  b.bar_result = op == 0 ? count : op == 1 ? count == b.n : count != 0;
  b.n_bar = 0;
  for (int i = 0; i < b.n; i++) b.th[i].state = T_READY;
  t.state = T_RUN;
  return b.bar_result;
}

void simt_syncthreads(const char *file, int line) { barrier(-1, 0, file, line); }

int simt_syncthreads_reduce(int op, int pred, const char *file, int line) { return barrier(op, pred, file, line); }

unsigned simt_activemask() {
  require_kernel("__activemask");
  Block &b = g_blk;
  int lin = (int)(g_thr - b.th.data()), w0 = lin & ~31;
  unsigned m = 0;
  for (int l = 0; l < 32 && w0 + l < b.n; l++)
    if (b.th[w0 + l].state != T_DONE) m |= 1u << l;
  return m;
}

uint64_t simt_warp_collective(int op, unsigned mask, uint64_t value, int arg, int width) {
  require_kernel(warp_op_name(op));
  Thr &t = *g_thr;
  Block &b = g_blk;
  int lin = (int)(&t - b.th.data()), w0 = lin & ~31, lane = lin & 31;
  int n_lanes = std::min(32, b.n - w0);
  unsigned exist = n_lanes == 32 ? ~0u : (1u << n_lanes) - 1;
  if (!(mask >> lane & 1)) kernel_fail(&t, "%s: mask 0x%08x does not name the calling lane %d", warp_op_name(op), mask, lane);
  if (width < 1 || width > 32 || (width & (width - 1)))
    kernel_fail(&t, "%s: width %d is not a power of two in 1..32", warp_op_name(op), width);
  mask &= exist;
  t.wop = op;
  t.wmask = mask;
  t.warg = arg;
  t.wwidth = width;
  t.wval = value;
  t.state = T_WARP;
  for (int l = 0; l < 32; l++) {
    if (!(mask >> l & 1)) continue;
    const Thr &o = b.th[w0 + l];
    if (o.state == T_DONE)
      kernel_fail(&t, "%s(mask 0x%08x) names lane %d, which has exited: it can never arrive", warp_op_name(op), mask, l);
    if (o.state != T_WARP) {
      leave_fiber(false);
      return t.wres;
    }
  }
  unsigned ballot = 0;
  for (int l = 0; l < 32; l++) {
    if (!(mask >> l & 1)) continue;
    const Thr &o = b.th[w0 + l];
    if (o.wop != op || o.wmask != mask)
      kernel_fail(&o, "lane %d is in %s(mask 0x%08x) while lane %d is in %s(mask 0x%08x): mismatched warp collective",
                  l, warp_op_name(o.wop), o.wmask, lane, warp_op_name(op), mask);
    if (o.wval) ballot |= 1u << l;
  }
  for (int l = 0; l < 32; l++) {
    if (!(mask >> l & 1)) continue;
    Thr &o = b.th[w0 + l];
    int w = o.wwidth, seg = l & ~(w - 1), src = -1;
    unsigned d = (unsigned)o.warg;
    switch (op) {
      case SIMT_W_SHFL: src = seg + (o.warg & (w - 1)); break;
      case SIMT_W_UP: src = (unsigned)(l - seg) >= d ? l - (int)d : -1; break;
      case SIMT_W_DOWN: src = d < 32 && (unsigned)(l - seg) + d < (unsigned)w ? l + (int)d : -1; break;
      case SIMT_W_XOR: src = d < 32 && (int)(l ^ d) < seg + w ? (int)(l ^ d) : -1; break;
      default: break;
    }
    switch (op) {
      case SIMT_W_BALLOT: o.wres = ballot; break;
      case SIMT_W_ANY: o.wres = ballot != 0; break;
      case SIMT_W_ALL: o.wres = ballot == mask; break;
      case SIMT_W_SYNC: o.wres = 0; break;
      default:
        // a source lane outside the mask gives an undefined value on hardware: here, the caller's own
        o.wres = src >= 0 && (mask >> src & 1) ? b.th[w0 + src].wval : o.wval;
    }
    if (&o != &t) o.state = T_READY;
  }
  t.state = T_RUN;
  return t.wres;
}

// ---------------------------------------------------------------------------------------------
// launch, submit, hooks

cudaError_t simt_stream_submit(cudaStream_t stream, const char *what, std::function<void()> op) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (!stream_valid(stream)) return set_error(cudaErrorInvalidResourceHandle);
  CUstream_st *s = stream_of(stream);
  if (s->capturing) {
    if (s->invalidated) return set_error(cudaErrorStreamCaptureInvalidated);
    s->graph->nodes.push_back(Node{what, std::move(op)});
    return cudaSuccess;
  }
  op();
  return cudaSuccess;
}

void simt_launch_task(const char *name, dim3 grid, dim3 block, cudaStream_t stream, const simt_task &task) {
  if (!config_valid(grid, block)) {
    set_error(cudaErrorInvalidConfiguration);
    return;
  }
  simt_task copy = task;
  simt_stream_submit(stream, name, [name, grid, block, copy] { exec_launch(name, grid, block, copy); });
}

bool simt_check_device_range(const void *p, size_t n, const char *call, const char *arg) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  return check_dev(p, n, call, arg);
}

size_t simt_device_bytes_in_use() {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  return g_dev_bytes;
}

// ---------------------------------------------------------------------------------------------
// runtime API: errors and device

const char *cudaGetErrorName(cudaError_t e) {
  switch (e) {
#define E(x) \
  case x: return #x;
    E(cudaSuccess) E(cudaErrorInvalidValue) E(cudaErrorMemoryAllocation) E(cudaErrorInitializationError)
    E(cudaErrorInvalidConfiguration) E(cudaErrorInvalidDevicePointer) E(cudaErrorInvalidMemcpyDirection)
    E(cudaErrorInsufficientDriver) E(cudaErrorNoDevice) E(cudaErrorInvalidDevice) E(cudaErrorInvalidResourceHandle)
    E(cudaErrorNotReady) E(cudaErrorIllegalAddress) E(cudaErrorLaunchFailure) E(cudaErrorNotSupported)
    E(cudaErrorStreamCaptureUnsupported) E(cudaErrorStreamCaptureInvalidated) E(cudaErrorStreamCaptureWrongThread)
    E(cudaErrorUnknown)
#undef E
  }
  return "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureWrongThread: return "attempt to terminate a thread-local capture sequence from another thread";
    default: return "unknown error";
  }
}

cudaError_t cudaGetLastError() {
  cudaError_t e = g_last_error;
  g_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() { return g_last_error; }

cudaError_t cudaGetDeviceCount(int *count) {
  if (!count) return set_error(cudaErrorInvalidValue);
  *count = no_device() ? 0 : 1;
  return *count ? cudaSuccess : set_error(cudaErrorNoDevice);
}

cudaError_t cudaSetDevice(int device) {
  if (no_device()) return set_error(cudaErrorNoDevice);
  return device == 0 ? cudaSuccess : set_error(cudaErrorInvalidDevice);
}

cudaError_t cudaGetDevice(int *device) {
  if (!device) return set_error(cudaErrorInvalidValue);
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device) {
  if (!p) return set_error(cudaErrorInvalidValue);
  if (device != 0 || no_device()) return set_error(cudaErrorInvalidDevice);
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "SIMT emulator");
  p->totalGlobalMem = total_mem();
  p->sharedMemPerBlock = 48 * 1024;
  p->sharedMemPerBlockOptin = 227 * 1024;
  p->sharedMemPerMultiprocessor = 228 * 1024;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 8;
  p->maxThreadsPerMultiProcessor = 2048;
  p->memoryBusWidth = 5120;
  p->memoryClockRate = 2619000;
  p->clockRate = 1980000;
  p->l2CacheSize = 50 * 1024 * 1024;
  p->totalConstMem = 65536;
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (!free_bytes || !total_bytes) return set_error(cudaErrorInvalidValue);
  *total_bytes = total_mem();
  *free_bytes = total_mem() > g_dev_bytes ? total_mem() - g_dev_bytes : 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (capture_forbids("cudaDeviceSynchronize", false)) return set_error(cudaErrorStreamCaptureUnsupported);
  check_all_guards("at cudaDeviceSynchronize");
  return cudaSuccess;
}

cudaError_t cudaDeviceReset() {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  for (auto &kv : g_dev) {
#ifdef SIMT_ASAN
    __asan_unpoison_memory_region(kv.second.raw, kv.second.size + 2 * GUARD_BYTES);
#endif
    free(kv.second.raw);
  }
  g_dev.clear();
  g_dev_bytes = 0;
  return cudaSuccess;
}

// ---------------------------------------------------------------------------------------------
// runtime API: memory

cudaError_t cudaMalloc(void **ptr, size_t size) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (!ptr) return set_error(cudaErrorInvalidValue);
  if (capture_forbids("cudaMalloc", true)) return set_error(cudaErrorStreamCaptureUnsupported);
  if (no_device()) return set_error(cudaErrorNoDevice);
  if (size == 0) {
    *ptr = nullptr;
    return cudaSuccess;
  }
  if (size > total_mem() - std::min(total_mem(), g_dev_bytes)) return set_error(cudaErrorMemoryAllocation);
  size_t raw_bytes = (size + 2 * GUARD_BYTES + 255) & ~(size_t)255;
  char *raw = (char *)aligned_alloc(256, raw_bytes);
  if (!raw) return set_error(cudaErrorMemoryAllocation);
  char *base = raw + GUARD_BYTES;
  memset(raw, GUARD_FILL, GUARD_BYTES);
  memset(base, 0xff, size);  // NaN in every float/half/bf16 format: uninitialised reads show
  memset(base + size, GUARD_FILL, GUARD_BYTES);
#ifdef SIMT_ASAN
  __asan_poison_memory_region(raw, GUARD_BYTES);
  __asan_poison_memory_region(base + size, GUARD_BYTES);
#endif
  g_dev[(uintptr_t)base] = Alloc{size, raw};
  g_dev_bytes += size;
  *ptr = base;
  return cudaSuccess;
}

cudaError_t cudaFree(void *ptr) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (!ptr) return cudaSuccess;
  auto it = g_dev.find((uintptr_t)ptr);
  if (it == g_dev.end()) {
    fprintf(stderr, "simt: cudaFree(%p): not the base of a live cudaMalloc allocation", ptr);
    describe_nearest((uintptr_t)ptr);
    fputc('\n', stderr);
    return set_error(cudaErrorInvalidDevicePointer);
  }
  Alloc a = it->second;
  if (!guards_intact(a, it->first)) guard_fail(a, it->first, "at cudaFree");
  g_dev.erase(it);
  g_dev_bytes -= a.size;
#ifdef SIMT_ASAN
  __asan_unpoison_memory_region(a.raw, a.size + 2 * GUARD_BYTES);
#endif
  memset(a.raw + GUARD_BYTES, 0xff, a.size);
  free(a.raw);
  return cudaSuccess;
}

cudaError_t cudaHostAlloc(void **ptr, size_t size, unsigned flags) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (!ptr || flags > 7u) return set_error(cudaErrorInvalidValue);
  void *p = aligned_alloc(4096, std::max<size_t>((size + 4095) & ~(size_t)4095, 4096));
  if (!p) return set_error(cudaErrorMemoryAllocation);
  g_pinned[(uintptr_t)p] = size;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void **ptr, size_t size) { return cudaHostAlloc(ptr, size, cudaHostAllocDefault); }

cudaError_t cudaFreeHost(void *ptr) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (!ptr) return cudaSuccess;
  auto it = g_pinned.find((uintptr_t)ptr);
  if (it == g_pinned.end()) {
    fprintf(stderr, "simt: cudaFreeHost(%p): not a live cudaMallocHost/cudaHostAlloc allocation\n", ptr);
    return set_error(cudaErrorInvalidValue);
  }
  g_pinned.erase(it);
  free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (capture_forbids("cudaMemcpy", true)) return set_error(cudaErrorStreamCaptureUnsupported);
  cudaError_t e = copy_checked("cudaMemcpy", dst, src, n, kind);
  if (e != cudaSuccess) return set_error(e);
  if (n) memmove(dst, src, n);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  cudaError_t e = copy_checked("cudaMemcpyAsync", dst, src, n, kind);
  if (e != cudaSuccess) return set_error(e);
  return simt_stream_submit(stream, "cudaMemcpyAsync", [dst, src, n, kind] {
    // checked again when a graph replays it: the buffers may have been freed since the capture
    if (copy_checked("cudaMemcpyAsync (replayed)", dst, src, n, kind) != cudaSuccess) abort();
    if (n) memmove(dst, src, n);
  });
}

cudaError_t cudaMemset(void *ptr, int value, size_t n) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (capture_forbids("cudaMemset", true)) return set_error(cudaErrorStreamCaptureUnsupported);
  cudaError_t e = set_checked("cudaMemset", ptr, n);
  if (e != cudaSuccess) return set_error(e);
  if (n) memset(ptr, value, n);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *ptr, int value, size_t n, cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  cudaError_t e = set_checked("cudaMemsetAsync", ptr, n);
  if (e != cudaSuccess) return set_error(e);
  return simt_stream_submit(stream, "cudaMemsetAsync", [ptr, value, n] {
    if (set_checked("cudaMemsetAsync (replayed)", ptr, n) != cudaSuccess) abort();
    if (n) memset(ptr, value, n);
  });
}

// ---------------------------------------------------------------------------------------------
// runtime API: streams and events

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (!stream || flags > 1u) return set_error(cudaErrorInvalidValue);
  CUstream_st *s = new CUstream_st;
  s->flags = flags;
  g_streams.insert(s);
  *stream = s;
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (!stream || !g_streams.count(stream)) return set_error(cudaErrorInvalidResourceHandle);
  g_streams.erase(stream);
  delete stream->graph;
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (!stream_valid(stream)) return set_error(cudaErrorInvalidResourceHandle);
  CUstream_st *s = stream_of(stream);
  if (s->capturing) {
    fprintf(stderr, "simt: cudaStreamSynchronize on a capturing stream: the capture is invalidated\n");
    s->invalidated = true;
    return set_error(cudaErrorStreamCaptureUnsupported);
  }
  if (!stream && capture_forbids("cudaStreamSynchronize(0)", false)) return set_error(cudaErrorStreamCaptureUnsupported);
  check_all_guards("at cudaStreamSynchronize");
  return cudaSuccess;
}

cudaError_t cudaStreamQuery(cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (!stream_valid(stream)) return set_error(cudaErrorInvalidResourceHandle);
  if (stream_of(stream)->capturing) return set_error(cudaErrorStreamCaptureUnsupported);
  return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (!stream_valid(stream) || !event || !g_events.count(event)) return set_error(cudaErrorInvalidResourceHandle);
  (void)flags;
  return cudaSuccess;  // streams are executed in issue order: nothing to wait for
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned flags) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (!event || flags > 3u) return set_error(cudaErrorInvalidValue);
  CUevent_st *e = new CUevent_st;
  g_events.insert(e);
  *event = e;
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (!event || !g_events.count(event)) return set_error(cudaErrorInvalidResourceHandle);
  return simt_stream_submit(stream, "cudaEventRecord", [event] {
    event->t = std::chrono::steady_clock::now();
    event->recorded = true;
  });
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (!event || !g_events.count(event)) return set_error(cudaErrorInvalidResourceHandle);
  return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event) { return cudaEventSynchronize(event); }

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (!ms) return set_error(cudaErrorInvalidValue);
  if (!start || !end || !g_events.count(start) || !g_events.count(end) || !start->recorded || !end->recorded)
    return set_error(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(end->t - start->t).count();
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (!event || !g_events.count(event)) return set_error(cudaErrorInvalidResourceHandle);
  g_events.erase(event);
  delete event;
  return cudaSuccess;
}

// ---------------------------------------------------------------------------------------------
// runtime API: graphs

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (!stream) return set_error(cudaErrorStreamCaptureUnsupported);  // the legacy stream cannot capture
  if (!g_streams.count(stream)) return set_error(cudaErrorInvalidResourceHandle);
  if ((unsigned)mode > 2u || stream->capturing) return set_error(cudaErrorInvalidValue);
  stream->capturing = true;
  stream->invalidated = false;
  stream->mode = mode;
  stream->graph = new CUgraph_st;
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (!graph) return set_error(cudaErrorInvalidValue);
  if (!stream || !g_streams.count(stream)) return set_error(cudaErrorInvalidResourceHandle);
  if (!stream->capturing) return set_error(cudaErrorInvalidValue);
  stream->capturing = false;
  CUgraph_st *g = stream->graph;
  stream->graph = nullptr;
  if (stream->invalidated) {
    delete g;
    *graph = nullptr;
    return set_error(cudaErrorStreamCaptureInvalidated);
  }
  *graph = g;
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus *status) {
  std::lock_guard<std::recursive_mutex> lk(g_lock);
  if (!status) return set_error(cudaErrorInvalidValue);
  if (!stream_valid(stream)) return set_error(cudaErrorInvalidResourceHandle);
  CUstream_st *s = stream_of(stream);
  *status = !s->capturing ? cudaStreamCaptureStatusNone
            : s->invalidated ? cudaStreamCaptureStatusInvalidated
                             : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags) {
  if (!exec || !graph) return set_error(cudaErrorInvalidValue);
  (void)flags;
  CUgraphExec_st *x = new CUgraphExec_st;
  x->nodes = graph->nodes;
  *exec = x;
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (!exec) return set_error(cudaErrorInvalidValue);
  std::vector<Node> nodes = exec->nodes;
  return simt_stream_submit(stream, "cudaGraphLaunch", [nodes] {
    for (const Node &nd : nodes) nd.op();
  });
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
