/* rwkv.h — public interface of librwkv, the RWKV inference engine: RWKV-7 (x070) and the
 * older generations RWKV-4, RWKV-5 (5.0, 5.1, 5.2) and RWKV-6.
 *
 * What it is: a loader for BlinkDL .pth checkpoints, a pool of fixed-size recurrent-state
 * slots, and a step function that advances a batch of (slot, token) pairs by one token.
 * What it is not: a tokenizer or sampler (see rwkv_tokenizer.h, rwkv_sampler.h), nor a
 * scheduler — callers decide which slots advance.
 *
 * Conventions: functions that can fail return 0 or a negative errno and write their output
 * parameters only on success; an optional `err` buffer receives a one-line message naming
 * the file, tensor or argument that was wrong. Objects are created with *_new / *_load and
 * released with *_destroy(&p), which is NULL-safe and nulls the pointer. An engine is not
 * thread-safe: one thread at a time may call into a given rwkv_engine.
 */
#ifndef RWKV_H
#define RWKV_H

#include "rwkv_api.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element types of stored and in-memory weights. */
typedef enum {
    RWKV_DTYPE_F32 = 0,
    RWKV_DTYPE_F16 = 1,
    RWKV_DTYPE_BF16 = 2,
    RWKV_DTYPE_BF16X2 = 3, /* bf16, stored as pairs of consecutive inputs (weights bf16dot) */
} rwkv_dtype;

RWKV_API const char *rwkv_dtype_name(rwkv_dtype t);

/* The generation of a checkpoint, recognised from its tensor names and shapes as the
 * official `rwkv` pip package does: att.r_k/k_k -> 7; att.time_maa_* -> 6; att.ln_x -> 5.0,
 * plus att.gate -> 5.1, plus a 2-D att.time_decay with more than one column -> 5.2;
 * att.time_mix_k and att.time_decay without heads -> 4. RWKV-7 is 0, so dims that were
 * zero-initialised (rwkv_model_random's shape) mean RWKV-7. */
typedef enum {
    RWKV_ARCH_X070 = 0,
    RWKV_ARCH_V4 = 40,
    RWKV_ARCH_V5_0 = 50,
    RWKV_ARCH_V5_1 = 51,
    RWKV_ARCH_V5_2 = 52,
    RWKV_ARCH_V6 = 60,
} rwkv_arch;

/* "RWKV-7", "RWKV-6", "RWKV-5.2", "RWKV-5.1", "RWKV-5.0", "RWKV-4"; "?" otherwise. */
RWKV_API const char *rwkv_arch_name(rwkv_arch a);

/* Hyper-parameters, all inferred from tensor shapes (spec §1.4). */
typedef struct {
    int n_layer;   /* L */
    int n_embd;    /* C */
    int n_head;    /* H = C / head_size; 0 for RWKV-4 (per-channel state, no heads) */
    int head_size; /* N (64 for released models; any multiple of 4 accepted); 0 for RWKV-4 */
    int n_vocab;   /* V */
    int n_ffn;     /* F */
    int d_w, d_a, d_v, d_g; /* RWKV-7 LoRA ranks of decay, ICL rate, value residual, gate;
                               RWKV-6: d_w is the decay LoRA rank, the others 0 */
    rwkv_arch arch; /* the generation; selects the step's math and the state layout */
    int d_mix;      /* RWKV-6 token-shift LoRA rank (time_maa_w1 has 5*d_mix columns); else 0 */
} rwkv_dims;

typedef struct rwkv_model rwkv_model;

/* In-memory type of the large matrices (r/k/v/o, ffn, head). Computation is fp32 with fp32
 * accumulation in every case but bf16dot; 16-bit weights are widened in the inner loop. */
typedef enum {
    RWKV_WEIGHTS_F32 = 0, /* upcast everything at load (default; exact) */
    RWKV_WEIGHTS_STORED,  /* keep each matrix in its stored type (lossless, half the bytes
                             for 16-bit checkpoints) */
    RWKV_WEIGHTS_BF16,    /* round every matrix to bf16 (lossy for fp32/fp16 files) */
    RWKV_WEIGHTS_F16,     /* round every matrix to fp16 (lossy) */
    RWKV_WEIGHTS_BF16DOT, /* round every matrix to bf16 AND round each matrix's input vector
                             to bf16, multiplying pairs with bf16 dot-product instructions
                             (AVX512_BF16: twice the FMA rate; fp32 accumulation). The fast,
                             lossy choice for large batches, like llama.cpp's f16 path that
                             rounds activations to f16. Not bit-comparable to the others. */
} rwkv_weights;

/* Parse "f32" | "stored" | "bf16" | "f16" | "bf16dot"; -EINVAL otherwise. */
RWKV_API int rwkv_weights_parse(const char *s, rwkv_weights *out);

typedef struct {
    rwkv_weights weights;
} rwkv_load_opts;

/* Load a checkpoint. The file is memory-mapped and read once; tensors are converted into a
 * private arena, so the mapping is released before return. Returns 0, or -EINVAL (bad or
 * unsupported content), -ENOMEM, or the errno of open/mmap; `err` (may be NULL) then names
 * the file and, where relevant, the tensor and what was expected. */
RWKV_API int rwkv_model_load(const char *path, const rwkv_load_opts *opts, rwkv_model **out,
                    char *err, size_t err_len);
RWKV_API void rwkv_model_destroy(rwkv_model **m);
RWKV_API const rwkv_dims *rwkv_model_dims(const rwkv_model *m);
/* Number of parameters (layer-0 v0/v1/v2 excluded) and bytes of weights held in memory. */
RWKV_API uint64_t rwkv_model_n_params(const rwkv_model *m);
RWKV_API uint64_t rwkv_model_weight_bytes(const rwkv_model *m);
/* A 64-bit fingerprint of dims and weights (FNV-1a over the converted arena). */
RWKV_API uint64_t rwkv_model_fingerprint(const rwkv_model *m);

/* ---- backends ---------------------------------------------------------------------- */

/* The backends this librwkv knows, built or not: index 0 .. count-1, in a fixed order
 * ("cpu" first). name_at returns a static string, or NULL out of range. */
RWKV_API int rwkv_backend_count(void);
RWKV_API const char *rwkv_backend_name_at(int i);
/* Whether backend `name` can run on this machine: 0 (msg says on what, e.g. "2 threads,
 * AVX-512"), -EINVAL for an unknown name, -ENODEV when it cannot (msg gives the reason:
 * module not built or not loadable, no usable device, ...). "auto" probes the choice
 * rwkv_engine_new would make. `msg` (len bytes, may be NULL) is always NUL-terminated
 * when len > 0. Any thread. Loads the backend's module if it has one. */
RWKV_API int rwkv_backend_probe(const char *name, char *msg, size_t len);

/* ---- engine: a backend plus a pool of state slots ---------------------------------- */

typedef struct rwkv_engine rwkv_engine;

typedef struct {
    const char *backend; /* NULL or "cpu" (default), "cuda", "cuda-emu" (the CUDA code on
                            the SIMT emulator, for tests), or "auto": cuda where its probe
                            succeeds and it runs the model's generation (the
                            cuda backends run RWKV-7 only), else cpu */
    int n_slots;         /* size of the state pool, >= 1 */
    int max_batch;       /* most rows one step or sequence chunk may carry, >= 1 */
    int n_threads;       /* CPU threads, 0 = online CPUs */
} rwkv_engine_opts;

/* One row of a batched step. */
typedef struct {
    int slot;       /* state slot to advance; each slot at most once per call */
    int32_t token;  /* 0 <= token < n_vocab */
    float *hidden;  /* out: (n_embd) final hidden vector after ln_out, or NULL */
    float *logits;  /* out: (n_vocab) logits, or NULL to skip the vocabulary head */
} rwkv_step_item;

/* The engine borrows `model`, which must outlive it. Returns 0, -EINVAL (bad options or an
 * unknown backend name; err lists the known ones), -ENODEV (the backend cannot run here:
 * its module is not built or does not load, or its probe found no usable device; err
 * says which), -ENOTSUP (the backend does not run this model's generation: the cuda
 * backends and RWKV-4/5/6; err says so), -ENOMEM, or the backend's own error. */
RWKV_API int rwkv_engine_new(const rwkv_model *model, const rwkv_engine_opts *opts, rwkv_engine **out,
                    char *err, size_t err_len);
RWKV_API void rwkv_engine_destroy(rwkv_engine **e);
/* The backend actually running ("cpu", "cuda", ...; never "auto"). */
RWKV_API const char *rwkv_engine_backend(const rwkv_engine *e);
/* "" while the engine works; after a call returned -EIO, the backend's account of the
 * failure. Once any call returned -EIO, every later step, sequence and state call returns
 * -EIO too (the device is gone: recreate the engine, or the process). */
RWKV_API const char *rwkv_engine_last_error(const rwkv_engine *e);
RWKV_API int rwkv_engine_n_slots(const rwkv_engine *e);
RWKV_API int rwkv_engine_max_batch(const rwkv_engine *e);

/* Advance items[0..n) by one token each; n may exceed max_batch (split internally).
 * Returns 0, or -EINVAL for a bad slot/token/duplicate slot (no state is touched then),
 * or -EIO when the backend is dead (see rwkv_engine_last_error). */
RWKV_API int rwkv_engine_step(rwkv_engine *e, const rwkv_step_item *items, int n);

/* Outputs left in the engine instead of copied out: give RWKV_OUT_ENGINE as an item's
 * `logits` or `hidden` in rwkv_engine_step (then n <= max_batch, else -EINVAL), and after
 * the call read them through these, for item index i of that call. They point into one
 * block the backend owns (for a GPU backend: the host buffer its results were downloaded
 * to in one copy), valid until the next call on the engine. NULL where item i did not ask
 * for that output that way, or when the last call was not such a step. */
#define RWKV_OUT_ENGINE ((float *)(uintptr_t)1)
RWKV_API const float *rwkv_engine_out_logits(const rwkv_engine *e, int i);
RWKV_API const float *rwkv_engine_out_hidden(const rwkv_engine *e, int i);

/* Sequence mode: feed tokens[0..n) to one slot; equal to n single steps. `hidden` (n_embd)
 * and `logits` (n_vocab) receive the outputs after the last token (NULL to skip);
 * `all_logits` (n × n_vocab), if not NULL, receives every row. */
RWKV_API int rwkv_engine_seq(rwkv_engine *e, int slot, const int32_t *tokens, int n, float *hidden,
                    float *logits, float *all_logits);

/* Several sequences at once: item i feeds items[i].tokens[0..n) to items[i].slot (slots
 * distinct, n >= 1), equal to feeding them one by one. Rows of all items share the weight
 * reads (up to max_batch rows per internal pass; longer input is split and continues from
 * the stored state). `hidden`/`logits` receive the outputs after each item's last token
 * (NULL to skip). Returns 0 or -EINVAL (nothing touched) / -EIO. */
typedef struct {
    int slot;
    const int32_t *tokens;
    int n;
    float *hidden; /* (n_embd) or NULL */
    float *logits; /* (n_vocab) or NULL */
} rwkv_seq_item;

RWKV_API int rwkv_engine_run(rwkv_engine *e, const rwkv_seq_item *items, int n_items);

/* State slots. A state is n_layer × (p_att[C], S[H][N][N], p_ffn[C]) in fp32 for RWKV-5, 6
 * and 7 (RWKV-7 S[value][key], RWKV-5/6 S[key][value]), and n_layer × (p_att[C], aa[C],
 * bb[C], pp[C], p_ffn[C]) for RWKV-4, whose reset state has pp = -1e30. */
RWKV_API size_t rwkv_engine_state_bytes(const rwkv_engine *e);
RWKV_API int rwkv_engine_state_reset(rwkv_engine *e, int slot);
RWKV_API int rwkv_engine_state_copy(rwkv_engine *e, int dst_slot, int src_slot);
/* Export writes exactly state_bytes() bytes in the portable layout (little-endian fp32,
 * per layer p_att, S, p_ffn); import reads the same. -EINVAL on a size mismatch. */
RWKV_API int rwkv_engine_state_export(rwkv_engine *e, int slot, void *buf, size_t len);
RWKV_API int rwkv_engine_state_import(rwkv_engine *e, int slot, const void *buf, size_t len);
/* Fault injection, for testing a caller's guard against non-finite states: overwrite value
 * `index` (< state_bytes() / 4, in the export layout) of the slot's state with a quiet NaN,
 * as a numerical blow-up or a memory fault would. 0, -EINVAL (bad slot or index), -ENOMEM,
 * or the backend's error. */
RWKV_API int rwkv_engine_state_poison(rwkv_engine *e, int slot, size_t index);

#ifdef __cplusplus
}
#endif
#endif
