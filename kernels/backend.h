/* backend.h — the interface every compute backend implements (internal to librwkv), and the
 * entry points of a backend module (librwkv-<name>.so).
 *
 * A backend owns the state pool and scratch for one model. engine.c validates arguments
 * (slot ranges, tokens, duplicate slots, sizes, finite imported states) before calling in,
 * so backends may assume valid input. A batched step, a sequence and a set of sequences of
 * different lengths are all one forward() call over rows (rwkv_row), at most max_batch of
 * them. A backend whose device has failed writes why into last_error and returns -EIO from
 * every op from then on; the engine then refuses all further work with -EIO.
 *
 * backends.c holds the registry: which names exist, which are built in (cpu) and which
 * live in a module that is opened with dlopen only when asked for (cuda, cuda-emu), so a
 * CPU-only process never maps a GPU runtime. This header is C and C++ (modules are C++).
 */
#ifndef RWKV_BACKEND_H
#define RWKV_BACKEND_H

#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the structs a module shares with librwkv (rwkv_model, rwkv_layer, rwkv_mat,
 * rwkv_dims, rwkv_engine_opts, rwkv_row, rwkv_backend, rwkv_backend_ops). Bump it with
 * every change to any of them; the loader refuses a module built against another value. */
#define RWKV_MODULE_ABI 3

typedef struct rwkv_backend rwkv_backend;

/* One row of a forward call: advance `slot` by `token`. Rows of one slot form one
 * contiguous run in order; `prev` is the index of the run's previous row in this call (the
 * token shift and the WKV state continue from it) or -1 for a run's first row (it starts
 * from the slot's stored state). Outputs after this row's token, where not NULL;
 * RWKV_OUT_ENGINE: into the backend's own block (see rwkv_backend_ops.output). */
typedef struct {
    int slot;
    int32_t token;
    int prev;
    float *hidden; /* (n_embd) */
    float *logits; /* (n_vocab) */
} rwkv_row;

typedef struct {
    const char *name;
    void (*destroy)(rwkv_backend *b);
    /* n <= max_batch rows as described above; each slot's run stored back at its end */
    int (*forward)(rwkv_backend *b, const rwkv_row *rows, int n);
    int (*state_reset)(rwkv_backend *b, int slot);
    int (*state_copy)(rwkv_backend *b, int dst, int src);
    int (*state_export)(rwkv_backend *b, int slot, void *buf); /* state_bytes bytes */
    int (*state_import)(rwkv_backend *b, int slot, const void *buf);
    /* After forward(): where row `row`'s logits (what 0) or hidden vector (what 1) are in
     * the backend's own output block, for rows that passed RWKV_OUT_ENGINE for it; valid
     * until the next op. */
    const float *(*output)(rwkv_backend *b, int row, int what);
} rwkv_backend_ops;

struct rwkv_backend {
    const rwkv_backend_ops *ops;
    /* sticky: empty while the backend works; once an op returned -EIO, what failed
     * (e.g. the CUDA statement, file, line and error string). NUL-terminated. */
    char last_error[512];
};

/* Floats of one exported state: n_layer * (2*C + H*N*N); RWKV-4: n_layer * 5*C. */
RWKV_API size_t rwkv_state_floats(const rwkv_dims *d); /* exported: modules use it */

int rwkv_cpu_backend_new(const rwkv_model *m, const rwkv_engine_opts *opts, rwkv_backend **out,
                         char *err, size_t err_len);

/* Registry (backends.c). Creates the backend called `name` ("auto" included) for the
 * engine: 0 and *out, *real_name (a static string: "cpu", "cuda", ...) set; -EINVAL for an
 * unknown name (err lists the known ones); -ENODEV when its module cannot be loaded or its
 * probe says this machine cannot run it (err says why); else the constructor's error. */
int rwkv_backend_create(const char *name, const rwkv_model *m, const rwkv_engine_opts *opts,
                        rwkv_backend **out, const char **real_name, char *err, size_t err_len);

/* ---- backend modules ------------------------------------------------------------------
 * A module librwkv-<name>.so exports these three symbols with default visibility and C
 * linkage. It may link against librwkv (rwkv_mat_get_row, rwkv_state_floats, ...). Once
 * opened, a module stays loaded for the life of the process. */
#if defined(__GNUC__)
#define RWKV_MODULE_EXPORT __attribute__((visibility("default")))
#else
#define RWKV_MODULE_EXPORT
#endif

/* Same contract as rwkv_cpu_backend_new: 0, or a negative errno with err saying why. */
RWKV_MODULE_EXPORT int rwkv_module_backend_new(const rwkv_model *m, const rwkv_engine_opts *opts,
                                               rwkv_backend **out, char *err, size_t err_len);
/* 0 when this machine can run the backend (msg: what it runs on, e.g. "NVIDIA H200,
 * 139 GiB, sm_90"); a negative errno when not (msg: the reason). Cheap; may be called
 * more than once, from any thread. */
RWKV_MODULE_EXPORT int rwkv_module_probe(char *msg, size_t len);
/* Must equal RWKV_MODULE_ABI as the module saw it when compiled. */
RWKV_MODULE_EXPORT extern const int rwkv_module_abi;

typedef int (*rwkv_module_new_fn)(const rwkv_model *m, const rwkv_engine_opts *opts, rwkv_backend **out,
                                  char *err, size_t err_len);
typedef int (*rwkv_module_probe_fn)(char *msg, size_t len);

#ifdef __cplusplus
}
#endif
#endif
