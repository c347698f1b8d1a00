/* worker.h — the compute worker: one thread that runs jobs on the engine.
 *
 * What it is: a job is everything one scheduling tick asks of the engine, in order:
 * zero some slots (new or reset channels), then ONE engine call (rwkv_engine_run) over
 * all of the job's rows: single tokens (a busy channel's one token, a running generation's
 * previous sample) and sequence runs (a channel advancing several tokens in this job), all
 * sharing the weight reads, up to max_batch rows per internal pass, bit-identical to
 * feeding every token as a single step; then sampling for the
 * generation rows and the head tasks (classifications, generation starts) on forks. Every
 * slot a run or a row advances is distinct, and heads run last, so a fork sees its
 * channel's slot after all of the job's input. The loop hands a job over with
 * rwkvd_worker_submit and collects it when the worker's eventfd becomes readable
 * (rwkvd_worker_collect). Up to RWKVD_JOBS_IN_FLIGHT jobs may be submitted: the worker runs
 * them one after the other in submission order and they are collected in that order, so
 * the loop builds the next job while the worker computes the current one (the scheduler
 * keeps a channel's rows out of a job while an earlier one holding them is in flight).
 * What it is not: a scheduler: it runs what it is given, in order.
 *
 * Handoff (the key invariant): between the first submit and the last collect the worker
 * owns the engine, the submitted jobs and everything they point to (the generations'
 * samplers and logits, the head scratch, the compiled profiles they reference, which the
 * loop keeps alive); the loop touches none of them and never calls the engine. With no job
 * submitted the worker sleeps on its condition variable and touches nothing. The mutex
 * orders all memory between the two threads; the eventfd only wakes zmq_poll.
 */
#ifndef RWKVD_WORKER_H
#define RWKVD_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "heads.h"
#include "rwkv.h"

typedef struct {
    int slot;
    int32_t *tokens;           /* (n) into rwkvd_job.run_tokens */
    int n;
    rwkvd_channel *ch;         /* loop bookkeeping */
} rwkvd_seq_run;

typedef struct {
    /* phase 1: slots to zero */
    int *resets;               /* (n_resets) */
    int n_resets, cap_resets;
    /* phase 2: rows of one token (fed with the runs in one rwkv_engine_run) */
    rwkv_step_item *items;     /* (n_items) */
    rwkvd_channel **item_ch;   /* (n_items) loop bookkeeping: channel of a row, or NULL */
    rwkvd_gen **item_gen;      /* (n_items) generation of a row, or NULL */
    int n_items, cap_items;
    /* phase 2b: sequence runs, same engine call; each slot is in no single-token row */
    rwkvd_seq_run *runs;       /* (n_runs) */
    int n_runs, cap_runs;
    int32_t *run_tokens;       /* (cap_run_tokens) the runs' tokens, back to back */
    int n_run_tokens, cap_run_tokens;
    rwkv_seq_item *seq;        /* (cap_items + cap_runs) worker scratch: the rows and runs as one engine call */
    /* phase 3: outputs */
    rwkvd_head_task *tasks;    /* (n_tasks) */
    int n_tasks, cap_tasks;
    float *task_logits;        /* (cap_tasks, n_vocab) each task's fork logits */
    float *task_hidden;        /* (cap_tasks, n_embd) each task's fork hidden vector */
    int n_vocab, n_embd;
    bool reserved_used;        /* the reserved fork slot is taken in this job */
    uint64_t id;               /* the scheduler's job number (ascending in submission order) */
    /* health: every row's final hidden vector is checked for non-finite values (a state
     * that went non-finite shows there at once: NaN or Inf spreads through every later
     * layer); rows that asked for no hidden vector get one in row_hidden */
    float *row_hidden;         /* (cap_items + cap_runs, n_embd) worker scratch */
    unsigned char *item_bad;   /* (cap_items) item i's hidden vector is not finite */
    unsigned char *run_bad;    /* (cap_runs) run i's */
    int n_bad;                 /* rows flagged in item_bad and run_bad */
    /* results */
    int rc;                    /* first engine error, 0 if none */
    uint64_t n_input_tokens;   /* input tokens fed: channel rows in the step + run tokens */
    uint64_t elapsed_ns;       /* wall time of the job on the worker */
} rwkvd_job;

int rwkvd_job_init(rwkvd_job *j, int cap_resets, int cap_items, int cap_runs, int cap_run_tokens, int cap_tasks,
                   const rwkv_dims *dims);
void rwkvd_job_clear(rwkvd_job *j);
void rwkvd_job_free(rwkvd_job *j);

typedef struct rwkvd_worker rwkvd_worker;

#define RWKVD_JOBS_IN_FLIGHT 2 /* jobs submitted and not yet collected, at most */

/* Fault injection for tests (RWKVD_TEST_POISON=CHANNEL@N, read at start): before the Nth
 * job that advances CHANNEL's own state, one value of that state is set to NaN
 * (rwkv_engine_state_poison), once. Unset in production it costs nothing. */

/* Start the worker thread over engine e (borrowed). The tokenizer is shared read-only.
 * slot_a/slot_b are the reserved scratch slots for heads; dims and cap_tasks size buffers. 0 and *out, or negative errno. */
int rwkvd_worker_new(rwkv_engine *e, const rwkv_tokenizer *tok, const rwkv_dims *dims, int slot_a,
                     int slot_b, int cap_tasks, rwkvd_worker **out, char *err, size_t err_len);
/* Stop and join the thread (waits for an in-flight job). NULL-safe; nulls *w. */
void rwkvd_worker_destroy(rwkvd_worker **w);
/* The eventfd that becomes readable when a job completes (for zmq_poll). */
int rwkvd_worker_fd(const rwkvd_worker *w);
/* Hand job j to the worker; it runs after the jobs submitted before it. Loop thread only;
 * -EBUSY when RWKVD_JOBS_IN_FLIGHT are in flight. */
int rwkvd_worker_submit(rwkvd_worker *w, rwkvd_job *j);
/* The oldest submitted job if it has completed (clearing the eventfd), else NULL. Call it
 * until NULL: two jobs may have completed behind one wake-up. */
rwkvd_job *rwkvd_worker_collect(rwkvd_worker *w);
/* Whether any job is submitted and not collected (loop thread). */
bool rwkvd_worker_busy(const rwkvd_worker *w);
/* Jobs submitted and not collected, 0..RWKVD_JOBS_IN_FLIGHT (loop thread). */
int rwkvd_worker_in_flight(const rwkvd_worker *w);

#endif
