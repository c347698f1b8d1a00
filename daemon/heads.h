/* heads.h — the outputs of a channel: task profiles compiled for the engine, the compute
 * side of classifications and generation starts (run by the worker on a fork), and the
 * text side of generations (run by the loop: decoding, stop strings, pieces).
 *
 * What it is: rwkvd_tasks (each configured profile with its prompt suffix and label texts
 * tokenized and its linear head loaded), rwkvd_head_task (one output computed after a step,
 * filled in by the loop, executed by rwkvd_heads_run on the worker thread), and rwkvd_gen
 * (one running generation).
 * What it is not: the scheduler, nor the publisher (the loop publishes what these compute).
 *
 * Key invariant: an output never touches its channel's slot: it copies the slot into a
 * scratch slot (or the generation's own slot) and feeds the held token and prompt suffix
 * there. Thread ownership: rwkvd_heads_run and the `worker` fields of rwkvd_gen belong to the
 * worker while the job that carries them is in flight; everything else to the loop.
 */
#ifndef RWKVD_HEADS_H
#define RWKVD_HEADS_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "linhead.h"
#include "rwkv.h"
#include "rwkv_sampler.h"
#include "rwkv_tokenizer.h"
#include "rwkvp_json.h"

typedef struct rwkvd_task_profile {
    const rwkvd_profile *cfg;  /* borrowed from the config the tasks were built from */
    int32_t *suffix;           /* (n_suffix) prompt_suffix tokens */
    int n_suffix;
    int32_t **label_tokens;    /* (n_labels)(n_label_tokens[i]) */
    int *n_label_tokens;
    const char **label_names;  /* (n_labels) */
    int n_labels;
    rwkvd_linhead *head;       /* CLASSIFY_LINEAR */
} rwkvd_task_profile;

typedef struct {
    rwkvd_task_profile *v; /* (n) */
    size_t n;
    int max_suffix;        /* longest suffix, for scratch sizing */
} rwkvd_tasks;

/* Compile the profiles of cfg: tokenize suffixes and labels, load linear heads (checked
 * against n_embd). 0 and *out, or -EINVAL/-ENOMEM/-errno with err naming the profile. */
int rwkvd_tasks_build(const rwkvd_config *cfg, const rwkv_tokenizer *tok, const rwkv_dims *dims,
                      rwkvd_tasks **out, char *err, size_t err_len);
void rwkvd_tasks_destroy(rwkvd_tasks **t);
const rwkvd_task_profile *rwkvd_tasks_find(const rwkvd_tasks *t, const char *name);

typedef struct rwkvd_channel rwkvd_channel;

/* One running generation. */
typedef struct rwkvd_gen {
    /* loop */
    rwkvd_channel *ch;
    char producer[RWKVP_NAME_MAX + 1];
    uint64_t seq, tokens_seen;  /* origin: the GEN message, the channel's counter at fork */
    int slot;                   /* the fork */
    uint32_t max_tokens;
    uint64_t seed;
    bool commit, cancel, started, in_job;
    uint64_t gen_lsn;           /* LSN of the GEN record that asked for it; 0: an output
                                 * trigger's, or no input log */
    bool triggered;             /* started by an output trigger (event, tokens) at ... */
    uint64_t trig_lsn, trig_ts; /* ... this point (rwkvd_channel.out_lsn, out_ts) */
    size_t n_stop;
    char (*stop)[RWKVP_STOP_BYTES + 1];
    size_t *stop_len;
    rwkv_decoder dec;
    char *text;                 /* all decoded text so far */
    size_t text_len, text_cap, published;
    uint64_t index;             /* next piece index */
    int32_t *sampled;           /* (max_tokens) every sampled id, for commit */
    uint32_t n_sampled;
    /* worker (while the carrying job is in flight) */
    rwkv_sampler *sampler;
    float *logits;              /* (n_vocab) */
    int32_t next_token;         /* id sampled by the last job, or negative errno */
    int32_t feed_token;         /* id to feed this step (the previous sample) */
} rwkvd_gen;

/* Allocate a generation for n_vocab ids; parameters are resolved from the request over
 * the profile's defaults (gp may be NULL) over the protocol defaults. The sampler bans ids
 * the tokenizer has no bytes for. NULL on failure with err set. */
rwkvd_gen *rwkvd_gen_new(const rwkvd_task_profile *prof, const rwkvp_gen_params *gp,
                         const rwkv_tokenizer *tok, int n_vocab, uint64_t default_seed,
                         char *err, size_t err_len);
void rwkvd_gen_destroy(rwkvd_gen **g);

/* Loop side after the worker sampled g->next_token: record it, decode, check stop
 * strings. Writes the newly publishable text to *piece, *piece_len (may be 0) and returns
 * true when the generation has ended, with *reason. world_eos: id 0 ends it. */
bool rwkvd_gen_advance(rwkvd_gen *g, bool world_eos, const char **piece, size_t *piece_len,
                       rwkvp_end_reason *reason, const char **stop_hit);
/* At an end without a stop match: flush the decoder; returns the remaining publishable
 * text. */
void rwkvd_gen_finish(rwkvd_gen *g, const char **piece, size_t *piece_len);

typedef enum {
    RWKVD_HEAD_CLASSIFY_LABELS = 1,
    RWKVD_HEAD_CLASSIFY_LINEAR,
    RWKVD_HEAD_GEN_START,
} rwkvd_head_kind;

/* One output to compute after a step. The loop fills the inputs; the worker the outputs. */
typedef struct {
    rwkvd_head_kind kind;
    const rwkvd_task_profile *prof; /* may be NULL for GEN_START without a continue profile */
    int src_slot;                   /* the channel's slot (read only) */
    int32_t held;                   /* fed on the fork first, -1 none */
    int fork_slot;                  /* where the fork lives: a pool slot, slot_a, or the gen's slot */
    bool fork_reserved;             /* fork_slot is the reserved slot_a (not returned to the pool) */
    float *logits;                  /* (n_vocab) logits after the fork's last token (labels, gen) */
    float *hidden;                  /* (n_embd) hidden after the fork's last token (linear) */
    rwkvd_gen *gen;                 /* GEN_START */
    /* loop bookkeeping, not read by the worker */
    rwkvd_channel *ch;
    char producer[RWKVP_NAME_MAX + 1];
    uint64_t seq, tokens_seen;
    /* outputs */
    int rc;                         /* 0, or negative errno (published as an ERROR) */
    float probs[RWKVD_LINHEAD_MAX_LABELS];
} rwkvd_head_task;

/* Worker-side scratch for heads, sized at start: slot_b scores multi-token labels, fed up to
 * label_rows tokens per sequence call (a longer label continues in further calls). */
typedef struct {
    int slot_a, slot_b;
    int n_vocab, n_embd;
    int32_t *seq_tokens;    /* (1 + max suffix) */
    int seq_cap;
    float *label_logits;    /* (label_rows, n_vocab) every row of one label chunk */
    int label_rows;
    rwkv_step_item *items;  /* (cap_tasks) lockstep rows */
    int *n_feed;            /* (cap_tasks) tokens each fork is fed */
    int cap_tasks;
} rwkvd_head_scratch;

int rwkvd_head_scratch_init(rwkvd_head_scratch *s, int slot_a, int slot_b, const rwkv_dims *d, int cap_tasks);
void rwkvd_head_scratch_free(rwkvd_head_scratch *s);

/* Compute tasks[0..n) on the worker thread: fork every source into its fork slot, feed
 * [held] + suffix to all forks together (one batched step per position; sequence mode when
 * there is a single fork), then score labels, apply linear heads, or leave a generation's
 * first logits in gen->logits. Sets each task's rc. */
void rwkvd_heads_run(rwkv_engine *e, rwkvd_head_scratch *s, rwkvd_head_task *tasks, int n);
/* Sample g->next_token from g->logits (worker thread). */
void rwkvd_gen_sample(rwkvd_gen *g, const rwkv_tokenizer *tok);

#endif
