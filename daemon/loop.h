/* loop.h — the daemon object and its event loop.
 *
 * What it is: rwkvd_daemon holds everything the daemon owns (config, model, engine,
 * tokenizer, compiled task profiles, channel table, sockets, worker, metrics) and
 * rwkvd_loop_run() is the one loop thread: zmq_poll over INGEST, CONTROL, the PUBLISH
 * XPUB (subscription messages), the worker's eventfd and a signalfd, with a timeout from
 * the next timer deadline (STATUS=, watchdog, shutdown). While fewer than
 * RWKVD_JOBS_IN_FLIGHT jobs are in flight the loop builds the next one (scheduler.c) and
 * submits it, so the worker finds the next job ready when it finishes one; each completed
 * job's results (heads, generations) are published in order. Work that needs the engine on
 * the loop thread (promotions, demotions, snapshot exports) waits until no job is in
 * flight: the loop then stops building ahead until the worker has drained.
 * What it is not: the protocol codec (proto/), the scheduler policy (scheduler.c) or the
 * command implementations (control.c).
 * Invariant: only the loop thread touches this struct; the worker sees only its job.
 */
#ifndef RWKVD_LOOP_H
#define RWKVD_LOOP_H

#include "clock.h"
#include <stdbool.h>
#include <stdint.h>

#include "chantab.h"
#include "config.h"
#include "heads.h"
#include "rwkv.h"
#include "rwkv_tokenizer.h"
#include "worker.h"

/* ERROR publication: the channel's state went non-finite and was reset (health.h) */
#define RWKVD_E_QUARANTINED 512

/* Upper bounds (ns) of the compute-job duration histogram's buckets; +Inf is implied. */
#define RWKVD_STEP_BUCKETS_NS \
    {250000ull, 500000ull, 1000000ull, 2500000ull, 5000000ull, 10000000ull, 25000000ull, 50000000ull, \
     100000000ull, 250000000ull, 500000000ull, 1000000000ull, 2500000000ull, 10000000000ull}
#define RWKVD_STEP_BUCKETS 14
#define RWKVD_N_RESULTS 18 /* ack, dup, then the 16 error codes of PROTOCOL.md §12 */

typedef struct {
    uint64_t ingest[9][RWKVD_N_RESULTS]; /* [op, 0 = undecodable][result] */
    uint64_t ingest_undeliverable;       /* replies ROUTER could not deliver */
    uint64_t publish[5];                 /* [rwkvp_pub_kind] */
    uint64_t publish_dropped;
    uint64_t outputs_unretained; /* publications the retention could not keep (out of memory) */
    uint64_t control[16];                /* [rwkvp_ctl_cmd, 0 = undecodable] */
    uint64_t tokens_total;               /* fed to channel states and forks' generations */
    uint64_t input_tokens_total;         /* input tokens counted in tokens_seen (scheduler.c) */
    uint64_t steps_total, step_rows_total;
    uint64_t step_ns_total;
    uint64_t step_hist[RWKVD_STEP_BUCKETS + 1]; /* jobs by duration bucket (not cumulative), [last] = +Inf */
    uint64_t outputs_failed;
    uint64_t channels_quarantined;       /* states that went non-finite (health.c) */
    uint64_t generations_nonfinite;      /* generations ended by a non-finite fork state */
    uint64_t reloads_ok, reloads_failed;
    uint64_t subscriptions;              /* current XPUB subscriptions seen */
    /* loop cost: an iteration is the work between one zmq_poll return and the next call */
    uint64_t loop_iterations;
    uint64_t loop_iter_max_ns;           /* longest iteration since start */
    uint64_t loop_iter_max_window_ns;    /* longest since the last STATUS */
    uint64_t loop_cpu0_ns;               /* the loop thread's CPU clock when the loop started */
} rwkvd_metrics;

typedef enum { RWKVD_RUNNING = 0, RWKVD_RELOADING, RWKVD_STOPPING } rwkvd_run_state;

typedef struct rwkvd_daemon {
    char *config_path;
    rwkvd_config *cfg;
    rwkv_model *model;
    rwkv_engine *engine;
    rwkv_tokenizer *tok;
    bool world_vocab;         /* id 0 ends generations */
    rwkvd_tasks *tasks;
    uint64_t tasks_gen;       /* bumped when tasks is replaced (channels' profile pointers) */
    rwkvd_chantab *tab;
    rwkvd_worker *worker;
    rwkvd_job jobs[RWKVD_JOBS_IN_FLIGHT]; /* built and run in turn (scheduler.c) */
    int build_idx;            /* the one the next build fills */
    rwkvd_job *building;      /* the one being filled, during a build */
    uint64_t jobs_collected;  /* id of the last job collected (ids ascend, collection is in order) */
    bool want_idle;           /* a build left work that needs the engine: drain the worker first */
    int slot_a, slot_b;       /* head scratch */
    void *zctx;
    void *ingest, *publish, *control;
    void *ingest_pull;        /* INGEST-PULL, or NULL when not configured (ingest.c) */
    struct rwkvd_pull_hold *pull_hold; /* its message waiting for queue room (ingest.c) */
    int sigfd;
    rwkvd_run_state state;
    rwkvd_metrics m;
    uint64_t start_ns;
    int64_t start_unix_ms;
    uint64_t gen_seed_counter;
    uint64_t tick;            /* job builds (a job's id) */
    rwkvd_pair **credit_waiters; /* pairs answered 429 or SYNC, waiting for an unsolicited CREDIT */
    struct rwkvd_reply_backlog *reply_backlog; /* ingest replies waiting for room (ingest.c) */
    size_t n_reply_backlog;   /* identities with such replies */
    size_t n_credit_waiters, cap_credit_waiters;
    int n_gens;               /* running generations */
    /* rate window for tokens/s */
    uint64_t rate_t0_ns, rate_tokens0;
    double tokens_per_s;
    /* timers (monotonic ns) */
    uint64_t next_status_ns, next_watchdog_ns;
    uint64_t watchdog_interval_ns; /* 0 = no watchdog */
    uint64_t job_submit_ns;
    uint64_t stop_deadline_ns;
    struct rwkvd_durable *dur; /* WAL + snapshots (durable.c); NULL when durability is off */
    int exit_status;          /* set when something fatal asks the loop to stop */
    /* warm standby (replica.c) */
    struct rwkvd_replica *rep; /* NULL when no replication is configured */
    struct rwkvd_security *sec; /* CURVE, ZAP and permissions (security.c); off unless configured */
    struct rwkvd_httpmetrics *http; /* GET /metrics (httpmetrics.c); NULL unless metrics.listen */
    const char *standby_of;   /* --standby-of: the primary's control endpoint, or NULL */
    bool restart;             /* a standby resyncs: main() runs rwkvd again after fini */
    char restart_standby_of[1100]; /* non-empty: run again as a standby of this (fenced primary) */
} rwkvd_daemon;

/* Load the model and config-derived state, bind every socket. 0, or a negative errno with
 * the reason logged. d must be zeroed; cfg ownership moves to d. */
int rwkvd_daemon_init(rwkvd_daemon *d, const char *config_path, rwkvd_config **cfg);
/* Run until SIGTERM/SIGINT. Returns the exit status. */
int rwkvd_loop_run(rwkvd_daemon *d);
void rwkvd_daemon_fini(rwkvd_daemon *d);

/* CPU time the loop thread has used since rwkvd_loop_run started, in ns. Loop thread only
 * (it reads the calling thread's CPU clock). */
uint64_t rwkvd_loop_cpu_ns(const rwkvd_daemon *d);
/* Wall clock in ms since the epoch (the monotonic clock is rwkvd_now_ns, clock.h). */
int64_t rwkvd_unix_ms(void);

/* Reload the config file: 0 and the changed keys via fn, or -EINVAL/-EPERM with err. */
int rwkvd_daemon_reload(rwkvd_daemon *d, char *err, size_t err_len,
                        void (*fn)(const char *path, bool reloadable, void *user), void *user);

/* Zero a channel's state now (control RESET, RESET op): cancels its generation. */
void rwkvd_daemon_reset_channel(rwkvd_daemon *d, rwkvd_channel *ch);
/* End a channel's generation as cancelled (publishes END) unless it is in the in-flight
 * job, in which case it ends when the job is collected. */
void rwkvd_daemon_cancel_gen(rwkvd_daemon *d, rwkvd_channel *ch);
/* Delete a channel now (DROP/CLOSE): returns queued messages discarded. */
uint32_t rwkvd_daemon_drop_channel(rwkvd_daemon *d, rwkvd_channel *ch);

/* Begin a graceful stop (as SIGTERM does); `why` is logged. */
void rwkvd_daemon_stop(rwkvd_daemon *d, const char *why);
/* Bind the INGEST and PUBLISH sockets (a standby taking over; init for a primary). 0, or a
 * negative errno with err, and neither socket left open. */
int rwkvd_daemon_bind_serving(rwkvd_daemon *d, char *err, size_t err_len);

/* Wait for the in-flight job, if any, and complete it (publishing its results), so the
 * engine may be used from the loop thread (snapshots). */
void rwkvd_daemon_quiesce(rwkvd_daemon *d);

/* Index of a result code in rwkvd_metrics.ingest (0 ack, 1 dup, 2.. errors). */
int rwkvd_result_index(int code);
int rwkvd_result_code(int index); /* inverse; 0 for ack, 1 for dup */

#endif
