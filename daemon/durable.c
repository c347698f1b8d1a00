/* durable.c — see durable.h.
 *
 * What a snapshot holds beyond the engine state goes into its producer list under ids that
 * the protocol cannot produce (they start with '$', PROTOCOL.md §4.4), so the file format
 * (FORMATS.md §1) stays as it is:
 *   $held           seq = held token + 1 (0: none) — the input token the slot has not seen
 *   $tso            seq = tokens since the last output (trigger: tokens)
 *   $profile:NAME   the channel's task profile (seq 0)
 *   $partial, $pos  the head entry's LSN and how many of its tokens the state holds
 *   $next           the LSN from which on the output commit records of the input log are not
 *                   in the state: the log's next LSN when it was taken, or the first such
 *                   record recovered and not yet reached (keep_output_commit)
 *   $oseq           the oseq of the channel's last publication (PROTOCOL.md §9.7): replaying
 *                   the log from the snapshot publishes the outputs after it again under the
 *                   numbers they had (snapshots wait while a generation runs or an output is
 *                   pending, so every output of a record after applied_lsn comes after it)
 * Every other id is a producer, with the highest of its seqs applied to the state.
 * Key invariant: state(snapshot) + the channel's WAL records with LSN > applied_lsn, applied
 * in order from the partly applied head entry on, equals the live channel's state. */
#include "durable.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bio.h"
#include "ingest.h"
#include "log.h"
#include "replica.h"
#include "scheduler.h"
#include "snapshot.h"
#include "tier.h"
#include "wal.h"
#include "zmsg.h"

typedef struct {
    uint64_t lsn;
    size_t n_env;      /* envelope frames, then the reply's */
    size_t n;          /* frames */
    size_t len[RWKVD_ZMSG_MAX];
    unsigned char *data; /* frames back to back */
} pending_reply;

/* prod_list: a snapshot's producer list under construction (snapshots, below) */
typedef struct {
    rwkvd_snap_producer *v;
    char (*ids)[RWKVP_NAME_MAX + 16];
    uint32_t n, cap;
    const rwkvd_channel *ch;
    bool oom;
} prod_list;

/* Work for the I/O thread (bio.c). Log syncs go on its urgent lane (ACKs may wait for them),
 * run in the order they began; snapshot writes and truncations on the normal lane. A snapshot
 * job owns a copy of the image it writes (the state exported on the loop thread), so the
 * channel may go on while it is written; a sync covering what it needs is queued before it. */
typedef enum { JOB_SYNC, JOB_SNAP, JOB_TRUNC } job_kind;

typedef struct io_job {
    job_kind kind;
    struct rwkvd_durable *u;
    bool has_sync;            /* JOB_SYNC: `sync` was begun */
    bool in_use;              /* JOB_SYNC: queued (the pool below) */
    rwkvd_wal_sync_req sync;
    /* JOB_SNAP */
    rwkvd_snapshot s;         /* points into the fields below */
    void *payload;            /* (s.payload_bytes) owned */
    void *extra;              /* (s.extra_bytes) owned: the channel's retained outputs */
    prod_list pl;             /* owned */
    char channel[RWKVP_CHANNEL_MAX + 1];
    uint64_t uid;             /* the channel's, to find it again */
    uint64_t need_lsn;        /* the log must be synced up to here before it is written */
    uint8_t n_writes, n_ok;   /* generations to write (2: both hold it), written */
    bool evict;               /* an eviction (rwkvd_channel.evict_job) */
    bool counted;             /* in STATUS/METRICS snapshot counts (not IMPORT/FORK's) */
    bool waited;              /* a caller waits for it (rwkvd_durable_snapshot) */
    bool round;               /* part of a background round */
    bool skipped;             /* not written: the log could not be synced */
    char err[768];
    /* JOB_TRUNC */
    rwkvd_wal_trunc_req tr;
    uint64_t keep;
} io_job;

#define SYNC_JOBS 4                     /* log syncs queued at most */
#define BIO_JOBS 1024                   /* jobs outstanding on the I/O thread at most */
#define EVICT_JOBS 16                   /* evictions queued at most (rwkvd_durable_evict_async) */
#define ROUND_INFLIGHT_BYTES (64u << 20) /* state bytes a background round keeps queued at most */
#define ROUND_STEP_BYTES (1u << 20)     /* ... and exports per loop iteration at most (one state
                                         * at least): about a millisecond of the loop's time */

typedef struct rwkvd_durable {
    rwkvd_fsio wal_io, snap_io;
    rwkvd_bio *bio;           /* the I/O thread */
    io_job sync_pool[SYNC_JOBS]; /* log syncs (everysec, group commit, before snapshots) */
    uint32_t n_sync_busy;     /* of them queued */
    uint64_t next_sync_ns;    /* everysec: when the next one is due */
    uint64_t inflight_bytes;  /* state bytes of queued snapshot jobs */
    uint32_t evict_queued;    /* eviction jobs queued (each image is its channel's only state) */
    /* the I/O thread's own view of the log (written and read by it only) */
    uint64_t io_synced_lsn;
    int io_wal_err;
    /* the background snapshot round (interval, token count) */
    bool round_active;        /* channels still to submit */
    uint32_t round_id, round_outstanding, round_n;
    size_t round_pos;         /* the round's cursor into the channel table's array */
    uint64_t round_bytes, round_t0;
    const char *round_why;
    /* what rwkvd_durable_snapshot's waited-for jobs gave */
    int wait_err;
    uint32_t wait_n;
    uint64_t wait_bytes;
    bool truncate_due;        /* a snapshot completed: the log may be cut */
    /* IMPORT/FORK's write (rwkvd_durable_install waits for it) */
    const io_job *install_job;
    int install_ok, install_rc;
    char install_err[768];
    rwkvd_wal *wal;
    rwkvd_snapstore *store;
    rwkvd_snap_model model;
    size_t state_bytes;       /* one exported state */
    unsigned char *rec_buf;   /* record payload scratch */
    size_t rec_cap;
    pending_reply *q;         /* ring of queued replies */
    size_t q_head, q_n, q_cap;
    uint64_t next_snap_ns;    /* interval snapshots; 0 = off */
    uint64_t tokens_at_snap;  /* d->m.input_tokens_total at the last snapshot round */
    bool wal_failed_logged;   /* the log failed for good (sticky): logged */
    bool wal_refused_logged;  /* an append failed (the log stays usable): logged */
    int wal_append_err;       /* the last append's negative errno while appends fail, else 0 */
    uint32_t n_damaged;       /* channels marked damaged at recovery and not cleared yet */
    uint64_t wal_append_errors; /* appends failed since start */
    int64_t wal_fail_unix_ms; /* the last failed append or sync; 0: none */
    /* what STATUS and METRICS report (rwkvd_durable_stats) */
    uint64_t snaps_ok, snaps_failed, snap_bytes;
    int64_t snap_ok_unix_ms, snap_fail_unix_ms;
    char snap_error[768];     /* the size of the callers' err buffers */
} rwkvd_durable;

/* ---- replies ----------------------------------------------------------------------- */

/* Whether a reply confirms input (ACK, DUP; SYNC answers ACK) that the log may not hold:
 * once the log has failed, one with an LSN past the durable one, or none (a DUP or SYNC
 * names a seq accepted in memory, whose record may be among those never made durable). */
static uint64_t local_ack_lsn(const rwkvd_daemon *d);

static bool unconfirmable(const rwkvd_daemon *d, uint64_t lsn, const rwkvp_frame *f, size_t n)
{
    const rwkvd_durable *u = d->dur;
    if (!rwkvd_wal_failed(u->wal) || (lsn && lsn <= local_ack_lsn(d)) || n < 5)
        return false;
    return (f[1].len == 3 && memcmp(f[1].data, "ACK", 3) == 0) || (f[1].len == 3 && memcmp(f[1].data, "DUP", 3) == 0);
}

/* Send a reply; one that would confirm input the failed log does not hold goes as ERROR 503
 * instead (same signature, channel, producer and seq; PROTOCOL.md §7.4): the producer keeps
 * the message and resends it, after a restart, to a daemon whose log works. */
static void send_reply(rwkvd_daemon *d, uint64_t lsn, const rwkvp_frame *env, size_t n_env, const rwkvp_frame *f,
                       size_t n)
{
    if (unconfirmable(d, lsn, f, n)) {
        static const char text[] = "the input log failed (fsync); this message is not durable: resend it after rwkvd "
                                   "restarts";
        rwkvp_frame e[7] = {f[0], {"ERROR", 5}, f[2], f[3], f[4], {"503", 3}, {text, sizeof text - 1}};
        f = e;
        n = 7;
        rwkvd_ingest_send(d, env, n_env, f, n);
        return;
    }
    rwkvd_ingest_send(d, env, n_env, f, n);
}

static void send_pending(rwkvd_daemon *d, const pending_reply *p)
{
    rwkvp_frame f[RWKVD_ZMSG_MAX];
    size_t off = 0;
    for (size_t i = 0; i < p->n; i++) {
        f[i].data = p->data + off;
        f[i].len = p->len[i];
        off += p->len[i];
    }
    send_reply(d, p->lsn, f, p->n_env, f + p->n_env, p->n - p->n_env);
}

/* The highest LSN this daemon's fsync policy lets an ACK confirm: under `always` the last one
 * an fdatasync covered (group commit, below); under `everysec` and `no` the last one written
 * to the kernel (a kill -9 loses none of them; a power loss or kernel crash may lose up to the
 * last second of them under everysec, whatever the kernel had not flushed under no). */
static uint64_t local_ack_lsn(const rwkvd_daemon *d)
{
    const rwkvd_durable *u = d->dur;
    if (d->cfg->durability.fsync == RWKVD_FSYNC_ALWAYS)
        return rwkvd_wal_durable_lsn(u->wal);
    return rwkvd_wal_written_lsn(u->wal);
}

/* The highest LSN an ACK may confirm: local_ack_lsn and, with replication.sync, in the log of
 * every synced standby (replica.c). */
static uint64_t ack_bound(const rwkvd_daemon *d)
{
    uint64_t lsn = local_ack_lsn(d);
    if (d->rep) {
        uint64_t r = rwkvd_replica_acked_lsn(d);
        if (r < lsn)
            lsn = r;
    }
    return lsn;
}

/* Send the queued replies the log now covers, in order; after a failed fsync (the log never
 * becomes durable past it) every one left, with the unconfirmable ones as errors. */
static void release(rwkvd_daemon *d)
{
    rwkvd_durable *u = d->dur;
    uint64_t durable = ack_bound(d);
    bool failed = rwkvd_wal_failed(u->wal) != 0;
    while (u->q_n > 0) {
        pending_reply *p = &u->q[u->q_head];
        if (p->lsn > durable && !failed)
            break;
        send_pending(d, p);
        free(p->data);
        u->q_head = (u->q_head + 1) % u->q_cap;
        u->q_n--;
    }
}

void rwkvd_durable_reply(rwkvd_daemon *d, uint64_t lsn, const rwkvp_frame *env, size_t n_env,
                         const rwkvp_frame *f, size_t n)
{
    rwkvd_durable *u = d->dur;
    if (u->q_n == 0 && (lsn <= ack_bound(d) || rwkvd_wal_failed(u->wal))) {
        send_reply(d, lsn, env, n_env, f, n);
        return;
    }
    if (u->q_n == u->q_cap) {
        size_t cap = u->q_cap ? u->q_cap * 2 : 64;
        pending_reply *q = malloc(cap * sizeof *q);
        if (!q)
            goto fail;
        for (size_t i = 0; i < u->q_n; i++)
            q[i] = u->q[(u->q_head + i) % u->q_cap];
        free(u->q);
        u->q = q;
        u->q_head = 0;
        u->q_cap = cap;
    }
    pending_reply p = {.lsn = lsn, .n_env = n_env, .n = n_env + n};
    if (p.n > RWKVD_ZMSG_MAX)
        goto fail;
    size_t total = 0;
    for (size_t i = 0; i < p.n; i++)
        total += (p.len[i] = i < n_env ? env[i].len : f[i - n_env].len);
    if (!(p.data = malloc(total ? total : 1)))
        goto fail;
    size_t off = 0;
    for (size_t i = 0; i < p.n; i++) {
        const rwkvp_frame *fr = i < n_env ? &env[i] : &f[i - n_env];
        if (fr->len)
            memcpy(p.data + off, fr->data, fr->len);
        off += fr->len;
    }
    u->q[(u->q_head + u->q_n) % u->q_cap] = p;
    u->q_n++;
    return;
fail:
    rwkvd_log(LOG_ERR, "out of memory queueing an ingest reply; it is dropped (the producer resends)");
    d->m.ingest_undeliverable++;
}

/* The outcome rc of an append (append true) or of a log sync: a failure is counted and shown
 * by STATUS and METRICS (rwkvd_durable_stats), and logged once per episode; a failed append
 * (ENOSPC, EIO: cut back, the log stays usable) refuses its message with 503 until an append
 * succeeds again, which ends the episode; a failed sync is for good (until a restart). */
static void note_wal_error(rwkvd_daemon *d, int rc, bool append)
{
    rwkvd_durable *u = d->dur;
    if (append && !rc) {
        if (u->wal_append_err) {
            rwkvd_log(LOG_NOTICE, "input log: appends succeed again after %s; ingest ACKs again",
                      strerror(-u->wal_append_err));
            u->wal_append_err = 0;
            u->wal_refused_logged = false;
        }
        return;
    }
    if (!rc)
        return;
    u->wal_fail_unix_ms = rwkvd_unix_ms();
    if (append) {
        u->wal_append_errors++;
        u->wal_append_err = rc;
    }
    bool sticky = rwkvd_wal_failed(u->wal) != 0;
    if (sticky ? u->wal_failed_logged : u->wal_refused_logged)
        return;
    rwkvd_log(LOG_ERR, "input log: %s; %s", strerror(-rc),
              sticky ? "nothing more becomes durable: ingest answers 503 (no ACK, no DUP) until rwkvd restarts"
                     : "the message is refused with 503, and so is every one whose append fails, until an "
                       "append succeeds again (logged once)");
    if (sticky)
        u->wal_failed_logged = true;
    else
        u->wal_refused_logged = true;
}

/* ---- the I/O thread's jobs --------------------------------------------------------- */

/* I/O thread. */
static int run_job(void *arg)
{
    io_job *j = arg;
    rwkvd_durable *u = j->u;
    int rc = 0;
    if (j->has_sync) {
        rc = rwkvd_wal_sync_run(&j->sync);
        if (rc < 0 && !u->io_wal_err)
            u->io_wal_err = rc;
        else if (rc == 0 && j->sync.lsn > u->io_synced_lsn)
            u->io_synced_lsn = j->sync.lsn;
    }
    switch (j->kind) {
    case JOB_SYNC:
        return rc;
    case JOB_SNAP:
        /* a snapshot must not cover records that are not durable: they would survive a crash
         * the log does not, and their LSNs could be given to other records after it */
        if (j->need_lsn > u->io_synced_lsn) {
            j->skipped = true;
            rc = u->io_wal_err ? u->io_wal_err : -EIO;
            snprintf(j->err, sizeof j->err, "channel %s: not written: the input log could not be synced (%s)",
                     j->channel, strerror(-rc));
            return rc;
        }
        rc = 0;
        for (j->n_ok = 0; j->n_ok < j->n_writes; j->n_ok++)
            if ((rc = rwkvd_snapstore_write(u->store, &j->s, j->err, sizeof j->err)) != 0)
                break;
        return rc;
    case JOB_TRUNC:
        return rwkvd_wal_truncate_run(&j->tr);
    }
    return 0;
}

static void job_free(io_job *j)
{
    if (!j)
        return;
    free(j->payload);
    free(j->extra);
    free(j->pl.v);
    free(j->pl.ids);
    free(j->sync.sealed); /* only when it never ran */
    free(j->tr.firsts);
    free(j);
}

static void finish_job(rwkvd_daemon *d, io_job *j, int rc);
static void load_outputs(rwkvd_daemon *d, rwkvd_channel *ch, const rwkvd_snapshot *s);

/* Collect every finished job. */
static void collect(rwkvd_daemon *d)
{
    rwkvd_durable *u = d->dur;
    void *arg;
    int rc;
    while (rwkvd_bio_collect(u->bio, &arg, &rc) == 1)
        finish_job(d, arg, rc);
}

/* Wait for one job to finish (loop thread; only where a caller must wait: a full queue,
 * control commands, shutdown) and collect what finished. */
static void wait_one(rwkvd_daemon *d)
{
    rwkvd_bio_wait(d->dur->bio);
    collect(d);
}

/* Wait until the I/O thread has nothing left. */
static void drain(rwkvd_daemon *d)
{
    rwkvd_durable *u = d->dur;
    while (rwkvd_bio_outstanding(u->bio) > 0) {
        if (d->rep) /* a long wait must not look like a dead primary to the standbys */
            rwkvd_replica_heartbeat(d);
        wait_one(d);
    }
}

/* Queue j, waiting for room when its lane is full. */
static void submit(rwkvd_daemon *d, io_job *j)
{
    rwkvd_durable *u = d->dur;
    while (rwkvd_bio_submit(u->bio, run_job, j, j->kind == JOB_SYNC) == -EAGAIN)
        wait_one(d);
}

/* Queue a sync of everything written so far (nothing when a sync begun before covers it).
 * Without `force`, only when no sync is queued (everysec, group commit: what is written
 * meanwhile waits for the next one); with it (before a snapshot), whatever is queued, waiting
 * for a free job of the pool only when SYNC_JOBS are queued. */
static void kick_sync(rwkvd_daemon *d, bool force)
{
    rwkvd_durable *u = d->dur;
    if (rwkvd_wal_failed(u->wal) || (!force && u->n_sync_busy))
        return;
    io_job *j = NULL;
    while (!j) {
        for (int i = 0; i < SYNC_JOBS && !j; i++)
            if (!u->sync_pool[i].in_use)
                j = &u->sync_pool[i];
        if (!j && !force)
            return;
        if (!j)
            wait_one(d);
    }
    if (rwkvd_wal_sync_begin(u->wal, &j->sync) != 1)
        return;
    j->has_sync = true;
    j->in_use = true;
    u->n_sync_busy++;
    submit(d, j);
}

void rwkvd_durable_commit(rwkvd_daemon *d)
{
    release(d);
    /* group commit: producers wait, so sync now; what arrives meanwhile joins the next one */
    if (d->cfg->durability.fsync == RWKVD_FSYNC_ALWAYS)
        kick_sync(d, false);
}

int rwkvd_durable_io_fd(const rwkvd_daemon *d)
{
    return d->dur && d->dur->bio ? rwkvd_bio_fd(d->dur->bio) : -1;
}

static void truncate_wal(rwkvd_daemon *d);
static void round_finish(rwkvd_daemon *d);
static void after_collect(rwkvd_daemon *d);

/* After jobs were collected: the replies they release, the next group commit, and the log
 * cut once no background round is still being written (one cut per round, not per channel). */
static void after_collect(rwkvd_daemon *d)
{
    rwkvd_durable *u = d->dur;
    release(d);
    if (d->cfg->durability.fsync == RWKVD_FSYNC_ALWAYS) /* what was written during the last one */
        kick_sync(d, false);
    if (u->truncate_due && u->round_outstanding == 0 && !u->round_active)
        truncate_wal(d);
}

void rwkvd_durable_io_done(rwkvd_daemon *d)
{
    collect(d);
    after_collect(d);
}

uint64_t rwkvd_durable_io_max_job_ns(const rwkvd_daemon *d)
{
    return d->dur && d->dur->bio ? rwkvd_bio_max_job_ns(d->dur->bio) : 0;
}

uint64_t rwkvd_durable_next_ns(const rwkvd_daemon *d)
{
    const rwkvd_durable *u = d->dur;
    uint64_t t = 0;
    if (d->cfg->durability.fsync == RWKVD_FSYNC_EVERYSEC && !u->n_sync_busy &&
        rwkvd_wal_written_lsn(u->wal) > rwkvd_wal_durable_lsn(u->wal) && !rwkvd_wal_failed(u->wal))
        t = u->next_sync_ns ? u->next_sync_ns : 1;
    if (u->next_snap_ns && (!t || u->next_snap_ns < t))
        t = u->next_snap_ns;
    /* a round with room to go on: at once, unless the worker's completion wakes the loop */
    if (u->round_active && !rwkvd_worker_busy(d->worker) && u->inflight_bytes < ROUND_INFLIGHT_BYTES &&
        !rwkvd_bio_full(u->bio) && u->n_sync_busy < SYNC_JOBS)
        t = 1;
    return t;
}

/* ---- logging ----------------------------------------------------------------------- */

/* The record payload of e's token ids (little-endian i32) in u->rec_buf. */
static int token_payload(rwkvd_durable *u, const rwkvd_entry *e, rwkvd_wal_rec *r)
{
    size_t need = (size_t)e->n_tokens * 4;
    if (need > u->rec_cap) {
        unsigned char *b = realloc(u->rec_buf, need);
        if (!b)
            return -ENOMEM;
        u->rec_buf = b;
        u->rec_cap = need;
    }
    for (uint32_t i = 0; i < e->n_tokens; i++)
        rwkvd_le32_put(u->rec_buf + 4 * i, (uint32_t)e->tokens[i]);
    r->payload = u->rec_buf;
    r->payload_bytes = (uint32_t)need;
    return 0;
}

int rwkvd_durable_log_commit(rwkvd_daemon *d, const rwkvd_channel *ch, const rwkvd_entry *e)
{
    rwkvd_durable *u = d->dur;
    /* no producer: replay must not take it for producer input (FORMATS.md §2, daemon records) */
    rwkvd_wal_rec r = {.op = RWKVP_OP_TOKENS, .channel = ch->name, .producer = "", .seq = ch->applied_lsn};
    if (rwkvd_replica_standby(d)) /* its log holds the primary's LSNs only; the primary's commit record comes */
        return 0;
    int rc = token_payload(u, e, &r);
    if (!rc) {
        rc = rwkvd_wal_append(u->wal, &r, &r.lsn);
        note_wal_error(d, rc, true);
    }
    if (!rc && d->rep)
        rwkvd_replica_record(d, &r);
    if (rc)
        rwkvd_log(LOG_ERR, "channel %s: committed generation (%u tokens) not in the input log: %s; a crash before "
                           "the channel's next snapshot samples it again at recovery",
                  ch->name, e->n_tokens, strerror(-rc));
    return rc;
}

#define OUT_PREFIX "$out:" /* producer id of an output's committed generation (FORMATS.md §2) */

int rwkvd_durable_log_output(rwkvd_daemon *d, const rwkvd_channel *ch, uint64_t lsn, uint64_t tokens_seen,
                             const rwkvd_entry *e)
{
    rwkvd_durable *u = d->dur;
    char producer[sizeof OUT_PREFIX + 20];
    snprintf(producer, sizeof producer, OUT_PREFIX "%llu", (unsigned long long)tokens_seen);
    rwkvd_wal_rec r = {.op = RWKVP_OP_TOKENS, .channel = ch->name, .producer = producer, .seq = lsn};
    if (rwkvd_replica_standby(d)) /* it applies the primary's record instead (scheduler.c) */
        return 0;
    static const unsigned char none[1];
    r.payload = none;
    int rc = e ? token_payload(u, e, &r) : 0;
    if (!rc)
        rc = rwkvd_wal_append(u->wal, &r, &r.lsn);
    note_wal_error(d, rc, true);
    if (!rc && d->rep)
        rwkvd_replica_record(d, &r);
    if (rc)
        rwkvd_log(LOG_ERR, "channel %s: committing generation of an output (%u tokens) not in the input log: %s; a "
                           "crash before the channel's next snapshot runs it again at recovery",
                  ch->name, e ? e->n_tokens : 0, strerror(-rc));
    return rc;
}

int rwkvd_durable_log_cancel(rwkvd_daemon *d, const rwkvd_channel *ch, uint64_t gen_lsn, bool triggered,
                             uint64_t trig_lsn, uint64_t trig_ts, uint64_t *lsn)
{
    rwkvd_durable *u = d->dur;
    char producer[sizeof OUT_PREFIX + 20] = "";
    if (triggered)
        snprintf(producer, sizeof producer, OUT_PREFIX "%llu", (unsigned long long)trig_ts);
    static const unsigned char none[1];
    rwkvd_wal_rec r = {.op = RWKVP_OP_TOKENS, .channel = ch->name, .producer = producer,
                       .seq = triggered ? trig_lsn : gen_lsn, .payload = none, .payload_bytes = 0};
    if (rwkvd_replica_standby(d))
        return -EPERM;
    int rc = rwkvd_wal_append(u->wal, &r, &r.lsn);
    note_wal_error(d, rc, true);
    if (!rc && d->rep)
        rwkvd_replica_record(d, &r);
    if (rc)
        rwkvd_log(LOG_ERR, "channel %s: cancelled generation not in the input log: %s; a crash before the channel's "
                           "next snapshot runs it again at recovery", ch->name, strerror(-rc));
    else
        *lsn = r.lsn;
    return rc;
}

bool rwkvd_durable_take_output(rwkvd_daemon *d, rwkvd_channel *ch)
{
    (void)d;
    /* trigger points only move forward: (LSN, tokens seen) rises along a channel's input */
    while (ch->out_commits && (ch->out_commits->lsn < ch->out_lsn ||
                               (ch->out_commits->lsn == ch->out_lsn && ch->out_commits->tokens_seen < ch->out_ts))) {
        rwkvd_out_commit *c = ch->out_commits;
        ch->out_commits = c->next;
        rwkvd_log(LOG_WARNING, "channel %s: committed output generation at LSN %llu, %llu tokens seen, never reached; "
                               "dropped", ch->name, (unsigned long long)c->lsn, (unsigned long long)c->tokens_seen);
        rwkvd_entry_free(c->e);
        free(c);
    }
    rwkvd_out_commit *c = ch->out_commits;
    if (!c || c->lsn != ch->out_lsn || c->tokens_seen != ch->out_ts)
        return false;
    ch->out_commits = c->next;
    rwkvd_entry *e = c->e;
    free(c);
    if (e->n_tokens == 0) { /* the generation committed nothing */
        rwkvd_entry_free(e);
        return true;
    }
    /* as gen_end (loop.c) queues a generation's tokens */
    e->seq = ch->out_seq;
    snprintf(e->producer, sizeof e->producer, "%s", ch->out_seq ? ch->out_producer : "");
    rwkvd_chantab_push_front(ch, e);
    return true;
}

int rwkvd_durable_log(rwkvd_daemon *d, const char *channel, size_t channel_len, const rwkvd_entry *e,
                      const void *gen_json, size_t gen_len, uint64_t *lsn)
{
    rwkvd_durable *u = d->dur;
    char name[RWKVP_CHANNEL_MAX + 1];
    if (channel_len >= sizeof name)
        return -EINVAL;
    memcpy(name, channel, channel_len);
    name[channel_len] = '\0';
    rwkvd_wal_rec r = {.op = (uint8_t)e->op, .channel = name, .producer = e->producer, .seq = e->seq};
    if (e->op == RWKVP_OP_TEXT || e->op == RWKVP_OP_TOKENS) {
        int rc = token_payload(u, e, &r);
        if (rc)
            return rc;
    } else if (e->op == RWKVP_OP_TASK) {
        r.payload = e->arg;
        r.payload_bytes = (uint32_t)strlen(e->arg);
    } else if (e->op == RWKVP_OP_GEN) {
        r.payload = gen_json;
        r.payload_bytes = (uint32_t)gen_len;
    }
    int rc = rwkvd_wal_append(u->wal, &r, lsn);
    note_wal_error(d, rc, true);
    if (rc == 0 && d->rep) { /* standbys get the record as it is logged (replica.c) */
        r.lsn = *lsn;
        rwkvd_replica_record(d, &r);
    }
    return rc;
}

/* ---- snapshots ----------------------------------------------------------------------- */

static rwkvd_snap_producer *prod_add(prod_list *pl)
{
    if (pl->n == pl->cap) {
        uint32_t cap = pl->cap ? pl->cap * 2 : 16;
        rwkvd_snap_producer *v = realloc(pl->v, cap * sizeof *v);
        if (v)
            pl->v = v;
        char(*ids)[RWKVP_NAME_MAX + 16] = v ? realloc(pl->ids, cap * sizeof *ids) : NULL;
        if (!v || !ids) {
            pl->oom = true;
            return NULL;
        }
        pl->ids = ids;
        pl->cap = cap;
    }
    rwkvd_snap_producer *p = &pl->v[pl->n];
    p->id = pl->ids[pl->n];
    pl->n++;
    return p;
}

static void add_pair(const rwkvd_pair *pair, void *user)
{
    prod_list *pl = user;
    const char *producer = pair->key + pair->channel_len + 1;
    /* applied seq: below the first of its entries still queued (seqs rise per pair) */
    uint64_t seq = pair->acked;
    for (const rwkvd_entry *e = pl->ch->head; e; e = e->next)
        if (e->lsn && strcmp(e->producer, producer) == 0) {
            seq = e->seq - 1;
            break;
        }
    if (seq == 0)
        return;
    rwkvd_snap_producer *p = prod_add(pl);
    if (!p)
        return;
    snprintf((char *)p->id, RWKVP_NAME_MAX + 16, "%s", producer);
    p->seq = seq;
}

static void add_meta(prod_list *pl, const char *id, uint64_t seq)
{
    rwkvd_snap_producer *p = prod_add(pl);
    if (!p)
        return;
    snprintf((char *)p->id, RWKVP_NAME_MAX + 16, "%s", id);
    p->seq = seq;
}

/* A snapshot that failed, for STATUS and METRICS: the count, when, and why. */
static void count_snap_failure(rwkvd_durable *u, const char *err)
{
    u->snaps_failed++;
    u->snap_fail_unix_ms = rwkvd_unix_ms();
    snprintf(u->snap_error, sizeof u->snap_error, "%s", err);
}

/* A snapshot job for ch: its state (exported from the slot, or copied from the host buffer)
 * and everything a snapshot holds besides (durable.c header), taken now on the loop thread;
 * the I/O thread writes it. The worker must be idle. 0 with *out, or a negative errno with
 * err. */
static int snap_job_of(rwkvd_daemon *d, rwkvd_channel *ch, io_job **out, char *err, size_t err_len)
{
    rwkvd_durable *u = d->dur;
    int rc;
    if (ch->tier == RWKVD_TIER_RESIDENT && ch->reset_pending) { /* a zeroing the scheduler has not run yet */
        if ((rc = rwkv_engine_state_reset(d->engine, ch->slot))) {
            snprintf(err, err_len, "channel %s: state reset: %s", ch->name, strerror(-rc));
            return rc;
        }
        ch->reset_pending = false;
    }
    io_job *j = calloc(1, sizeof *j);
    if (!j || !(j->payload = malloc(u->state_bytes))) {
        free(j);
        snprintf(err, err_len, "channel %s: out of memory", ch->name);
        return -ENOMEM;
    }
    j->kind = JOB_SNAP;
    j->u = u;
    j->sync.fd = -1;
    if (ch->tier == RWKVD_TIER_HOST) { /* its state is the host buffer; no slot to read */
        memcpy(j->payload, ch->host_state, u->state_bytes);
    } else if ((rc = rwkv_engine_state_export(d->engine, ch->slot, j->payload, u->state_bytes))) {
        snprintf(err, err_len, "channel %s: state export: %s", ch->name, strerror(-rc));
        job_free(j);
        return rc;
    }
    prod_list *pl = &j->pl;
    pl->ch = ch;
    rwkvd_chantab_each_pair(d->tab, ch->name, ch->name_len, add_pair, pl);
    char meta[RWKVP_NAME_MAX + 16];
    add_meta(pl, "$held", ch->held >= 0 ? (uint64_t)ch->held + 1 : 0);
    add_meta(pl, "$tso", ch->tokens_since_output);
    snprintf(meta, sizeof meta, "$profile:%s", ch->profile);
    add_meta(pl, meta, 0);
    if (ch->head && ch->head->lsn && ch->head->pos > 0) {
        add_meta(pl, "$partial", ch->head->lsn);
        add_meta(pl, "$pos", ch->head->pos);
    }
    add_meta(pl, "$next", ch->out_commits ? ch->out_commits->rec_lsn : rwkvd_wal_next_lsn(u->wal));
    add_meta(pl, "$oseq", ch->oseq);
    if (pl->oom) {
        job_free(j);
        snprintf(err, err_len, "channel %s: out of memory", ch->name);
        return -ENOMEM;
    }
    pl->ch = NULL;
    snprintf(j->channel, sizeof j->channel, "%s", ch->name);
    j->uid = ch->uid;
    j->n_writes = 1;
    j->counted = true;
    j->need_lsn = rwkvd_wal_written_lsn(u->wal);
    j->s = (rwkvd_snapshot){.model = u->model,
                            .layout = RWKVD_SNAP_LAYOUT_V1,
                            .dtype = RWKVD_SNAP_DTYPE_F32,
                            .channel = j->channel,
                            .tokens_seen = ch->tokens_seen,
                            .applied_lsn = ch->applied_lsn,
                            .n_producers = pl->n,
                            .producers = pl->v,
                            .payload = j->payload,
                            .payload_bytes = u->state_bytes};
    /* the retained outputs go with it (PROTOCOL.md §9.7): a restart or the disk tier keeps them */
    uint64_t xb = rwkvd_outring_encoded_bytes(&ch->outs);
    if (xb && xb <= RWKVD_SNAP_EXTRA_MAX && (j->extra = malloc((size_t)xb))) {
        rwkvd_outring_encode(&ch->outs, j->extra);
        j->s.extra = j->extra;
        j->s.extra_bytes = xb;
    }
    *out = j;
    return 0;
}

/* Hand a snapshot job to the I/O thread, after a log sync covering what it needs. */
static void snap_submit(rwkvd_daemon *d, rwkvd_channel *ch, io_job *j)
{
    rwkvd_durable *u = d->dur;
    kick_sync(d, true);
    ch->snap_jobs++;
    u->inflight_bytes += j->s.payload_bytes;
    submit(d, j);
}

/* A committing generation runs, or its tokens are not all applied yet, or an output that
 * starts one is pending. A snapshot then
 * would hold a state that its applied_lsn does not place (the tokens are logged after records
 * that come later in the channel's order): snapshots wait, so that a commit record
 * (rwkvd_durable_log_commit) is in a snapshot exactly when the record it follows is. */
static bool commit_pending(const rwkvd_daemon *d, rwkvd_channel *ch)
{
    if ((ch->gen && ch->gen->commit) || (ch->head && ch->head->committed))
        return true;
    /* an output whose generation will commit: the snapshot would not hold the pending output */
    const rwkvd_task_profile *prof = ch->output_pending ? rwkvd_sched_profile(d, ch) : NULL;
    return prof && prof->cfg->kind == RWKVD_TASK_CONTINUE && prof->cfg->generate.commit;
}

/* Whether both generations already hold everything logged for the channel. */
static bool covered(const rwkvd_channel *ch)
{
    return ch->snap_written && ch->snap_prev_lsn >= ch->logged_lsn && ch->snap_lsn >= ch->logged_lsn &&
           !ch->reset_pending && !ch->head;
}

/* Cut the log before the oldest generation a channel may fall back to. Only snapshots known
 * written count (a job still queued counts as not written), and the deletion is queued after
 * every job before it. */
static void truncate_wal(rwkvd_daemon *d)
{
    rwkvd_durable *u = d->dur;
    u->truncate_due = false;
    uint64_t keep = rwkvd_wal_next_lsn(u->wal);
    for (size_t i = 0; i < d->tab->n; i++) {
        const rwkvd_channel *ch = d->tab->v[i];
        if (ch->dead || covered(ch))
            continue;
        /* a fallback to .prev replays from its LSN on */
        uint64_t need = ch->snap_written ? ch->snap_prev_lsn + 1 : 1;
        if (need < keep)
            keep = need;
    }
    io_job *j = calloc(1, sizeof *j);
    if (!j)
        return;
    j->kind = JOB_TRUNC;
    j->u = u;
    j->sync.fd = -1;
    j->keep = keep;
    int rc = rwkvd_wal_truncate_begin(u->wal, keep, &j->tr);
    if (rc <= 0) {
        if (rc < 0)
            rwkvd_log(LOG_WARNING, "input log: truncating before LSN %llu: %s", (unsigned long long)keep,
                      strerror(-rc));
        job_free(j);
        return;
    }
    submit(d, j);
}

/* Record what a finished snapshot job did: counts, the channel's generations, an eviction's
 * end (on failure the state goes back to host memory: the image was the only copy). */
static void finish_snap(rwkvd_daemon *d, io_job *j, int rc)
{
    rwkvd_durable *u = d->dur;
    u->inflight_bytes -= j->s.payload_bytes;
    rwkvd_channel *ch = rwkvd_chantab_find(d->tab, j->channel, strlen(j->channel));
    if (ch && ch->uid != j->uid)
        ch = NULL;
    if (ch && ch->snap_jobs)
        ch->snap_jobs--;
    if (j->evict)
        u->evict_queued--;
    bool evicting = ch && ch->evict_job == j;
    if (evicting)
        ch->evict_job = NULL;
    if (j->counted && !j->skipped) {
        u->snaps_ok += j->n_ok;
        u->snap_bytes += j->n_ok * j->s.payload_bytes;
        if (j->n_ok)
            u->snap_ok_unix_ms = rwkvd_unix_ms();
        if (rc) {
            count_snap_failure(u, j->err);
        }
    }
    if (rc)
        rwkvd_log(LOG_ERR, "snapshot: %s", j->err);
    if (ch && !ch->dead) {
        for (uint8_t k = 0; k < j->n_ok; k++) {
            ch->snap_prev_lsn = ch->snap_written || ch->snap_lsn ? ch->snap_lsn : 0;
            ch->snap_lsn = j->s.applied_lsn;
            ch->snap_written = true;
        }
        if (evicting && rc && ch->tier == RWKVD_TIER_DISK) {
            ch->host_state = j->payload;
            j->payload = NULL;
            rwkvd_chantab_set_tier(d->tab, ch, RWKVD_TIER_HOST);
            rwkvd_log(LOG_ERR, "channel %s: eviction to disk failed; it stays in host memory", ch->name);
        } else if (evicting && !rc) {
            rwkvd_log(LOG_DEBUG, "channel %s evicted (applied LSN %llu)", ch->name,
                      (unsigned long long)j->s.applied_lsn);
        }
    }
    if (j->n_ok)
        u->truncate_due = true;
    if (j == u->install_job) {
        u->install_ok = j->n_ok;
        u->install_rc = rc;
        snprintf(u->install_err, sizeof u->install_err, "%s", j->err);
    }
    if (j->waited) {
        if (rc && !u->wait_err)
            u->wait_err = rc;
        if (!rc) {
            u->wait_n++;
            u->wait_bytes += j->s.payload_bytes;
        }
    }
    if (j->round) {
        u->round_outstanding--;
        if (!rc) {
            u->round_n++;
            u->round_bytes += j->s.payload_bytes;
        }
        if (u->round_outstanding == 0 && !u->round_active && u->round_t0)
            round_finish(d);
    }
}

static void finish_job(rwkvd_daemon *d, io_job *j, int rc)
{
    rwkvd_durable *u = d->dur;
    if (j->has_sync) {
        rwkvd_wal_sync_end(u->wal, &j->sync);
        note_wal_error(d, j->sync.rc, false);
        j->has_sync = false;
    }
    switch (j->kind) {
    case JOB_SYNC:
        j->in_use = false;
        u->n_sync_busy--;
        return; /* of u->sync_pool: not freed */
    case JOB_SNAP:
        finish_snap(d, j, rc);
        break;
    case JOB_TRUNC:
        if (rc)
            rwkvd_log(LOG_WARNING, "input log: truncating before LSN %llu: %s (%u segment(s) deleted)",
                      (unsigned long long)j->keep, strerror(-rc), j->tr.n_removed);
        else
            rwkvd_log(LOG_DEBUG, "input log: %u segment(s) before LSN %llu deleted", j->tr.n_removed,
                      (unsigned long long)j->keep);
        break;
    }
    job_free(j);
}

/* ---- snapshot rounds ------------------------------------------------------------------ */

int rwkvd_durable_snapshot(rwkvd_daemon *d, rwkvd_channel *only, bool only_changed, uint32_t *n_written,
                           uint64_t *bytes)
{
    rwkvd_durable *u = d->dur;
    int first = 0;
    uint32_t n_disk = 0;
    char err[768];
    u->wait_err = 0;
    u->wait_n = 0;
    u->wait_bytes = 0;
    for (size_t i = 0; i < d->tab->n; i++) {
        rwkvd_channel *ch = d->tab->v[i];
        if (ch->dead || (only && ch != only) || (only_changed && covered(ch)))
            continue;
        if (ch->tier == RWKVD_TIER_DISK) { /* its snapshot already holds its state; nothing applied since */
            if (only)
                n_disk++;
            continue;
        }
        if (commit_pending(d, ch)) { /* deferred: the log still covers it, and replay needs this */
            if (only && !first)
                first = -EBUSY;
            rwkvd_log(LOG_INFO, "snapshot of channel %s deferred: a committing generation is in progress", ch->name);
            continue;
        }
        if (ch->gen || ch->output_pending) { /* deferred: its outputs would not be published
                                              * again after a restart, yet $oseq counts them */
            if (only && !first)
                first = -EBUSY;
            rwkvd_log(LOG_INFO, "snapshot of channel %s deferred: an output is in progress", ch->name);
            continue;
        }
        if (d->rep) /* a long round must not look like a dead primary to the standbys */
            rwkvd_replica_heartbeat(d);
        while (u->inflight_bytes >= ROUND_INFLIGHT_BYTES) /* bound the images queued */
            wait_one(d);
        io_job *j;
        int rc = snap_job_of(d, ch, &j, err, sizeof err);
        if (rc) {
            rwkvd_log(LOG_ERR, "snapshot: %s", err);
            count_snap_failure(u, err);
            if (!first)
                first = rc;
            continue;
        }
        j->waited = true;
        snap_submit(d, ch, j);
    }
    drain(d);
    if (u->truncate_due) { /* and the log cut behind them before the reply, as it promises */
        truncate_wal(d);
        drain(d);
    }
    if (!first)
        first = u->wait_err;
    u->tokens_at_snap = d->m.input_tokens_total;
    if (n_written)
        *n_written = u->wait_n + n_disk;
    if (bytes)
        *bytes = u->wait_bytes;
    release(d);
    return first;
}

/* Submit the next channels of the background round, within its budgets (queued images,
 * bytes exported per loop iteration). The worker is idle. */
static void round_step(rwkvd_daemon *d)
{
    rwkvd_durable *u = d->dur;
    uint64_t step = 0;
    char err[768];
    /* a cursor, so each step costs what it submits (a channel swapped below the cursor by a
     * removal meanwhile waits for the next round; the log covers it until then) */
    for (; u->round_pos < d->tab->n; u->round_pos++) {
        rwkvd_channel *ch = d->tab->v[u->round_pos];
        if (ch->snap_round == u->round_id)
            continue;
        /* a full sync pool would make snap_submit wait for the disk: go on later instead */
        if (u->inflight_bytes >= ROUND_INFLIGHT_BYTES || step >= ROUND_STEP_BYTES || rwkvd_bio_full(u->bio) ||
            u->n_sync_busy >= SYNC_JOBS)
            return; /* go on when jobs finish, or at the next iteration */
        ch->snap_round = u->round_id;
        /* skipped: dead, on disk (its snapshot is its state), covered, or with a write queued
         * already (that one holds a recent state) */
        if (ch->dead || ch->tier == RWKVD_TIER_DISK || covered(ch) || ch->snap_jobs)
            continue;
        if (commit_pending(d, ch)) {
            rwkvd_log(LOG_INFO, "snapshot of channel %s deferred: a committing generation is in progress", ch->name);
            continue;
        }
        io_job *j;
        int rc = snap_job_of(d, ch, &j, err, sizeof err);
        if (rc) {
            rwkvd_log(LOG_ERR, "snapshot: %s", err);
            count_snap_failure(u, err);
            continue;
        }
        j->round = true;
        u->round_outstanding++;
        step += j->s.payload_bytes;
        snap_submit(d, ch, j);
    }
    u->round_active = false;
    if (u->round_outstanding == 0)
        round_finish(d);
}

static void round_finish(rwkvd_daemon *d)
{
    rwkvd_durable *u = d->dur;
    if (u->round_n)
        rwkvd_log(LOG_INFO, "snapshot (%s): %u channel(s), %llu bytes in %.3f s", u->round_why, u->round_n,
                  (unsigned long long)u->round_bytes, (double)(rwkvd_now_ns() - u->round_t0) / 1e9);
    u->round_t0 = 0;
    if (u->next_snap_ns)
        u->next_snap_ns = rwkvd_now_ns() + d->cfg->durability.snapshot_interval_ms * 1000000ull;
}

bool rwkvd_durable_wants_idle(const rwkvd_daemon *d, uint64_t now_ns)
{
    const rwkvd_durable *u = d->dur;
    if (d->state == RWKVD_STOPPING)
        return false;
    if (u->round_active)
        return u->inflight_bytes < ROUND_INFLIGHT_BYTES && !rwkvd_bio_full(u->bio) && u->n_sync_busy < SYNC_JOBS;
    if (u->round_t0)
        return false;
    uint64_t every = d->cfg->durability.snapshot_every_tokens;
    return (u->next_snap_ns && now_ns >= u->next_snap_ns) ||
           (every && d->m.input_tokens_total - u->tokens_at_snap >= every);
}

void rwkvd_durable_tick(rwkvd_daemon *d, uint64_t now_ns, bool worker_idle)
{
    rwkvd_durable *u = d->dur;
    collect(d);
    if (d->cfg->durability.fsync == RWKVD_FSYNC_EVERYSEC && now_ns >= u->next_sync_ns &&
        rwkvd_wal_written_lsn(u->wal) > rwkvd_wal_durable_lsn(u->wal) && !u->n_sync_busy) {
        kick_sync(d, false);
        u->next_sync_ns = now_ns + 1000000000ull;
    }
    after_collect(d);
    if (!worker_idle || d->state == RWKVD_STOPPING)
        return;
    if (u->round_active) {
        round_step(d);
        return;
    }
    if (u->round_t0) /* the last round's jobs are still being written */
        return;
    uint64_t every = d->cfg->durability.snapshot_every_tokens;
    bool by_time = u->next_snap_ns && now_ns >= u->next_snap_ns;
    bool by_tokens = every && d->m.input_tokens_total - u->tokens_at_snap >= every;
    if (!by_time && !by_tokens)
        return;
    u->round_active = true;
    u->round_pos = 0;
    u->round_id++;
    u->round_n = 0;
    u->round_bytes = 0;
    u->round_t0 = rwkvd_now_ns();
    u->round_why = by_time ? "interval" : "tokens";
    u->tokens_at_snap = d->m.input_tokens_total;
    round_step(d);
}

/* An evicted channel's bookkeeping: its state now lives in its snapshot. A host-tier
 * channel may hold a slot reserved for its promotion: the restore from disk takes it over
 * when it has input queued, else it goes back. */
static void to_disk_tier(rwkvd_daemon *d, rwkvd_channel *ch)
{
    if (ch->tier == RWKVD_TIER_RESIDENT || (!ch->head && !ch->output_pending)) {
        rwkvd_chantab_slot_free(d->tab, ch->slot);
        ch->slot = -1;
    }
    free(ch->host_state);
    ch->host_state = NULL;
    rwkvd_outring_clear(&ch->outs); /* the disk tier pins no memory for retention */
    rwkvd_chantab_set_tier(d->tab, ch, RWKVD_TIER_DISK);
    ch->restore_failed = false;
}

int rwkvd_durable_evict(rwkvd_daemon *d, rwkvd_channel *ch)
{
    if (ch->tier == RWKVD_TIER_DISK) { /* a slot reserved for a restore that has nothing to do goes back */
        if (ch->slot >= 0 && !ch->head && !ch->output_pending && !ch->reset_pending) {
            rwkvd_chantab_slot_free(d->tab, ch->slot);
            ch->slot = -1;
        }
        return 0;
    }
    if (ch->gen || ch->in_job > 0)
        return -EBUSY;
    int rc = rwkvd_durable_snapshot(d, ch, false, NULL, NULL);
    if (rc == 0 && !ch->head && !ch->reset_pending) /* both generations: the log can go */
        rc = rwkvd_durable_snapshot(d, ch, false, NULL, NULL);
    if (rc)
        return rc;
    to_disk_tier(d, ch);
    truncate_wal(d);
    rwkvd_log(LOG_DEBUG, "channel %s evicted (applied LSN %llu)", ch->name, (unsigned long long)ch->applied_lsn);
    return 0;
}

int rwkvd_durable_evict_async(rwkvd_daemon *d, rwkvd_channel *ch)
{
    if (ch->tier == RWKVD_TIER_DISK)
        return rwkvd_durable_evict(d, ch);
    if (ch->gen || ch->in_job > 0 || commit_pending(d, ch))
        return -EBUSY;
    /* The residency policy can evict far faster than the disk writes (a restore and an
     * eviction per message under tier churn, two snapshot writes each), and nothing else
     * bounds the queue short of the I/O thread's capacity: seconds of writes that SNAPSHOT,
     * EVICT and SIGTERM then wait behind, and images that hold memory outside host_max_bytes.
     * So past EVICT_JOBS evictions (or ROUND_INFLIGHT_BYTES of images) queued, wait for the
     * oldest jobs, as a synchronous eviction would have waited for its own. */
    rwkvd_durable *u = d->dur;
    while ((u->evict_queued >= EVICT_JOBS || u->inflight_bytes >= ROUND_INFLIGHT_BYTES) &&
           rwkvd_bio_outstanding(u->bio) > 0)
        wait_one(d);
    io_job *j;
    char err[768];
    int rc = snap_job_of(d, ch, &j, err, sizeof err);
    if (rc) {
        rwkvd_log(LOG_ERR, "snapshot: %s", err);
        return rc;
    }
    j->evict = true;
    u->evict_queued++;
    if (!ch->head && !ch->reset_pending) /* both generations: the log can go */
        j->n_writes = 2;
    snap_submit(d, ch, j);
    ch->evict_job = j;
    to_disk_tier(d, ch); /* until the write is done the image queued is the state */
    return 0;
}

int rwkvd_durable_restore(rwkvd_daemon *d, rwkvd_channel *ch)
{
    rwkvd_durable *u = d->dur;
    if (ch->tier != RWKVD_TIER_DISK)
        return 0;
    if (!u)
        return -EINVAL;
    if (ch->slot < 0 && (ch->slot = rwkvd_chantab_slot_alloc(d->tab)) < 0)
        return -ENOSPC;
    rwkvd_snapshot *s = NULL;
    rwkvd_snap_gen gen = RWKVD_SNAP_CUR;
    char note[1200] = "";
    int rc;
    if (ch->fresh) { /* never had a state of its own: a zero one */
        if ((rc = rwkv_engine_state_reset(d->engine, ch->slot)))
            return rc;
        ch->fresh = false;
        rwkvd_chantab_set_tier(d->tab, ch, RWKVD_TIER_RESIDENT);
        return 0;
    }
    io_job *ej = ch->evict_job;
    if (ej) { /* still being written: its image is the state */
        rc = ej->s.applied_lsn == ch->applied_lsn ? 0 : -EIO;
        if (rc)
            snprintf(note, sizeof note, "the eviction being written holds LSN %llu, the channel needs %llu",
                     (unsigned long long)ej->s.applied_lsn, (unsigned long long)ch->applied_lsn);
        else if ((rc = rwkv_engine_state_import(d->engine, ch->slot, ej->payload, ej->s.payload_bytes)))
            snprintf(note, sizeof note, "state import: %s", strerror(-rc));
        else
            load_outputs(d, ch, &ej->s);
    } else {
        rc = rwkvd_snapstore_load(u->store, ch->name, &u->model, &s, &gen, note, sizeof note);
        if (rc == 0 && s->applied_lsn != ch->snap_lsn) {
            snprintf(note, sizeof note, "the usable snapshot holds LSN %llu, the channel needs %llu",
                     (unsigned long long)s->applied_lsn, (unsigned long long)ch->snap_lsn);
            rc = -EIO;
        }
        if (rc == 0 && (rc = rwkv_engine_state_import(d->engine, ch->slot, s->payload, s->payload_bytes)))
            snprintf(note, sizeof note, "state import: %s", strerror(-rc));
        if (rc == 0)
            load_outputs(d, ch, s);
        rwkvd_snapshot_destroy(&s);
    }
    if (rc) {
        if (!ch->restore_failed)
            rwkvd_log(LOG_ERR, "restore of evicted channel %s: %s", ch->name, note[0] ? note : strerror(-rc));
        ch->restore_failed = true;
        return rc;
    }
    rwkvd_chantab_set_tier(d->tab, ch, RWKVD_TIER_RESIDENT);
    ch->restore_failed = false;
    rwkvd_log(LOG_DEBUG, "channel %s restored from its snapshot into slot %d", ch->name, ch->slot);
    return 0;
}

int rwkvd_durable_clear_damage(rwkvd_daemon *d, rwkvd_channel *ch, const char *why)
{
    rwkvd_durable *u = d->dur;
    if (!ch->damaged || !u)
        return 0;
    if (ch->slot < 0 && (ch->slot = rwkvd_chantab_slot_alloc(d->tab)) < 0 &&
        (rwkvd_tier_make_room(d, ch) != 0 || (ch->slot = rwkvd_chantab_slot_alloc(d->tab)) < 0))
        return -ENOSPC;
    int rc = rwkv_engine_state_reset(d->engine, ch->slot);
    if (rc) {
        rwkvd_chantab_slot_free(d->tab, ch->slot);
        ch->slot = -1;
        return rc;
    }
    rwkvd_chantab_set_tier(d->tab, ch, RWKVD_TIER_RESIDENT);
    ch->damaged = false;
    u->n_damaged--;
    ch->held = -1;
    ch->tokens_seen = 0;
    ch->tokens_since_output = 0;
    ch->reset_pending = false;
    ch->restore_failed = false;
    /* past every record of the channel: none of them is applied on top of the new state */
    ch->applied_lsn = ch->logged_lsn = rwkvd_wal_next_lsn(u->wal) - 1;
    rwkvd_log(LOG_NOTICE, "channel %s: damage cleared by the operator (%s): it starts again from a zero state", ch->name,
              why);
    return 0;
}

int rwkvd_durable_flush(rwkvd_daemon *d)
{
    rwkvd_durable *u = d->dur;
    drain(d);
    kick_sync(d, true);
    drain(d);
    release(d);
    return rwkvd_wal_failed(u->wal);
}

void rwkvd_durable_shutdown(rwkvd_daemon *d)
{
    rwkvd_durable *u = d->dur;
    uint32_t n = 0;
    uint64_t bytes = 0;
    uint64_t t0 = rwkvd_now_ns();
    drain(d); /* evictions and round writes queued: done (or back in memory) first */
    u->round_active = false;
    int rc = rwkvd_durable_snapshot(d, NULL, false, &n, &bytes);
    rwkvd_log(rc ? LOG_ERR : LOG_NOTICE, "shutdown snapshot: %u channel(s), %llu bytes in %.3f s%s", n,
              (unsigned long long)bytes, (double)(rwkvd_now_ns() - t0) / 1e9,
              rc ? " (some failed: the input log still covers them)" : "");
    rwkvd_durable_flush(d);
}

/* ---- recovery ------------------------------------------------------------------------- */

/* Recovery with more channels than slots or than residency.resident_channels (EVICT and the
 * residency policy make that possible): a channel with a snapshot that finds no free slot,
 * or finds the resident bound reached, is created on disk (tier disk, slot -1), exactly what
 * EVICT leaves: its state is its snapshot, and the scheduler restores it into a slot when it
 * has work. WAL records beyond its snapshot are simply queued on it like any input (replay()
 * below): the restore imports the snapshot (applied_lsn), then the scheduler feeds the queue
 * from there, which is the key invariant of this file. No separate replay path is needed.
 * So that such a queue does not wait for a slot that nothing frees, replay reserves a slot
 * for it, taking one from a recovered channel that holds only its snapshot state and has no
 * records to replay (that channel becomes evicted in memory: its snapshot on disk already
 * is its state). A channel with records but no snapshot needs a slot the same way; without
 * any it cannot be recovered (logged). An evicted recovered channel takes no part in the
 * snapshot rounds, so recovery records what its two generations cover (note_generations):
 * the input log is then truncated past it like past any snapshotted channel. */
static int steal_slot(rwkvd_daemon *d)
{
    for (size_t i = 0; i < d->tab->n; i++) {
        rwkvd_channel *ch = d->tab->v[i];
        /* loaded from a snapshot (a channel created for the log alone has reset_pending) and
         * nothing queued: the slot holds exactly the snapshot */
        if (ch->dead || ch->tier != RWKVD_TIER_RESIDENT || ch->slot < 0 || ch->reset_pending || ch->head)
            continue;
        int slot = ch->slot;
        ch->slot = -1;
        rwkvd_chantab_set_tier(d->tab, ch, RWKVD_TIER_DISK);
        rwkvd_log(LOG_INFO, "recovery: channel %s left on disk (evicted) to free a state slot", ch->name);
        return slot;
    }
    return -1;
}

static int reserve_slot(rwkvd_daemon *d)
{
    int slot = rwkvd_chantab_slot_alloc(d->tab);
    return slot >= 0 ? slot : steal_slot(d);
}

static rwkvd_channel *recover_channel(rwkvd_daemon *d, const char *name, int64_t now_ms, bool has_snapshot)
{
    rwkvd_channel *ch = rwkvd_chantab_find(d->tab, name, strlen(name));
    if (ch)
        return ch;
    const char *profile = d->cfg->tasks.default_profile;
    uint32_t max = d->cfg->limits.max_channels;
    /* past residency.resident_channels a channel with a snapshot starts on disk */
    bool full = d->tab->n_tier[RWKVD_TIER_RESIDENT] >= rwkvd_tier_resident_limit(d);
    int rc = full && has_snapshot ? -ENOSPC : rwkvd_chantab_create(d->tab, name, strlen(name), profile, max, now_ms, &ch);
    if (rc == -ENOSPC && has_snapshot)
        rc = rwkvd_chantab_create_evicted(d->tab, name, strlen(name), profile, max, now_ms, &ch);
    else if (rc == -ENOSPC) {
        int slot = steal_slot(d);
        if (slot >= 0) {
            rwkvd_chantab_slot_free(d->tab, slot);
            rc = rwkvd_chantab_create(d->tab, name, strlen(name), profile, max, now_ms, &ch);
        } else if ((rc = rwkvd_chantab_create_evicted(d->tab, name, strlen(name), profile, max, now_ms, &ch)) == 0) {
            ch->fresh = true; /* no snapshot: a zero state on disk, paged in when scheduled */
        }
    }
    if (rc) {
        rwkvd_log(LOG_ERR, "recovery: cannot create channel %s: %s (limits.max_channels, model.state_slots)", name,
                  strerror(-rc));
        return NULL;
    }
    return ch;
}

/* What an evicted recovered channel's generations cover, for truncate_wal: snap_lsn is the
 * one loaded; snap_prev_lsn that of .prev when .snap was loaded and .prev is valid (a later
 * fallback replays from there), else snap_lsn (no older generation exists to fall back to).
 * Resident channels need none of this: their next snapshot rotates the loaded one to .prev. */
static void note_generations(rwkvd_daemon *d, rwkvd_channel *ch)
{
    rwkvd_durable *u = d->dur;
    rwkvd_snapshot *s = NULL;
    char err[1200];
    ch->snap_prev_lsn = ch->snap_lsn; /* also when .prev is the one loaded (.snap was refused) */
    if (rwkvd_snapstore_read(u->store, ch->name, RWKVD_SNAP_PREV, &u->model, &s, err, sizeof err) == 0 &&
        s->applied_lsn < ch->snap_lsn)
        ch->snap_prev_lsn = s->applied_lsn;
    rwkvd_snapshot_destroy(&s);
    ch->snap_written = true;
}

/* The retained outputs a snapshot holds (its extra section) into ch->outs, kept only when
 * they end at the channel's last oseq (a ring that does not is from before a DROP). */
static void load_outputs(rwkvd_daemon *d, rwkvd_channel *ch, const rwkvd_snapshot *s)
{
    rwkvd_outring_clear(&ch->outs);
    if (!s->extra_bytes)
        return;
    int rc = rwkvd_outring_decode(&ch->outs, s->extra, s->extra_bytes, d->cfg->outputs.retain_messages,
                                  d->cfg->outputs.retain_bytes);
    if (rc)
        rwkvd_log(LOG_WARNING, "channel %s: the retained outputs in its snapshot are unusable (%s); REPLAY reports "
                               "them lost", ch->name, strerror(-rc));
    if (ch->outs.tail && ch->outs.tail->oseq != ch->oseq)
        rwkvd_outring_clear(&ch->outs);
}

int rwkvd_durable_outputs(rwkvd_daemon *d, rwkvd_channel *ch, rwkvd_outring *into)
{
    rwkvd_durable *u = d->dur;
    rwkvd_outring_clear(into);
    if (!u || ch->tier != RWKVD_TIER_DISK)
        return 0;
    io_job *ej = ch->evict_job;
    if (ej)
        return ej->s.extra_bytes ? rwkvd_outring_decode(into, ej->s.extra, ej->s.extra_bytes, UINT32_MAX, UINT64_MAX)
                                 : 0;
    rwkvd_snapshot *s = NULL;
    char note[1200];
    int rc = rwkvd_snapstore_load(u->store, ch->name, &u->model, &s, NULL, note, sizeof note);
    if (rc == 0 && s->extra_bytes)
        rc = rwkvd_outring_decode(into, s->extra, s->extra_bytes, UINT32_MAX, UINT64_MAX);
    rwkvd_snapshot_destroy(&s);
    return rc;
}

static int load_snapshot(rwkvd_daemon *d, const char *name, int64_t now_ms)
{
    rwkvd_durable *u = d->dur;
    rwkvd_snapshot *s = NULL;
    rwkvd_snap_gen gen = RWKVD_SNAP_CUR;
    char note[1200] = "";
    int rc = rwkvd_snapstore_load(u->store, name, &u->model, &s, &gen, note, sizeof note);
    if (rc && d->cfg->durability.rebuild_damaged) {
        rwkvd_log(LOG_ERR, "recovery: channel %s: no usable snapshot (%s); durability.rebuild_damaged: rebuilding it "
                           "from the input log alone, a partial state unless the log reaches back to its start",
                  name, note[0] ? note : strerror(-rc));
        return rc;
    }
    if (rc) {
        /* The log cannot say whether it holds the channel's whole history (truncation deleted
         * what snapshots covered; control RESET, IMPORT and FORK are not in it): serving a
         * state rebuilt from it would be silently wrong. Damaged: created on disk with no
         * state, refused (423), its files and its log records kept for the operator. */
        rwkvd_channel *ch = NULL;
        int crc = rwkvd_chantab_create_evicted(d->tab, name, strlen(name), d->cfg->tasks.default_profile,
                                               d->cfg->limits.max_channels, now_ms, &ch);
        if (crc) {
            rwkvd_log(LOG_ERR, "recovery: channel %s: no usable snapshot (%s), and it cannot be listed as damaged: %s",
                      name, note[0] ? note : strerror(-rc), strerror(-crc));
            return rc;
        }
        ch->damaged = true;
        u->n_damaged++;
        rwkvd_log(LOG_ERR, "recovery: channel %s: no usable snapshot (%s); marked damaged: ingest answers 423, its "
                           "snapshot files and input-log records are kept; control RESET, DROP or IMPORT clears it "
                           "(durability.rebuild_damaged rebuilds it from the input log alone instead)",
                  name, note[0] ? note : strerror(-rc));
        return rc;
    }
    if (gen == RWKVD_SNAP_PREV)
        rwkvd_log(LOG_WARNING, "recovery: channel %s: %s; using the previous generation and the input log", name, note);
    rwkvd_channel *ch = recover_channel(d, name, now_ms, true);
    if (!ch) {
        rwkvd_snapshot_destroy(&s);
        return -EMLINK;
    }
    if (ch->tier == RWKVD_TIER_RESIDENT && (rc = rwkv_engine_state_import(d->engine, ch->slot, s->payload, s->payload_bytes))) {
        rwkvd_log(LOG_ERR, "recovery: channel %s: state import: %s", name, strerror(-rc));
        rwkvd_snapshot_destroy(&s);
        return rc;
    }
    ch->reset_pending = false;
    ch->tokens_seen = s->tokens_seen;
    ch->applied_lsn = ch->logged_lsn = ch->snap_lsn = s->applied_lsn;
    for (uint32_t i = 0; i < s->n_producers; i++) {
        const rwkvd_snap_producer *p = &s->producers[i];
        if (strcmp(p->id, "$held") == 0)
            ch->held = p->seq ? (int32_t)(p->seq - 1) : -1;
        else if (strcmp(p->id, "$tso") == 0)
            ch->tokens_since_output = p->seq;
        else if (strncmp(p->id, "$profile:", 9) == 0)
            rwkvd_channel_set_profile(ch, p->id + 9);
        else if (strcmp(p->id, "$partial") == 0)
            ch->partial_lsn = p->seq;
        else if (strcmp(p->id, "$pos") == 0)
            ch->partial_pos = (uint32_t)p->seq;
        else if (strcmp(p->id, "$next") == 0)
            ch->snap_next_lsn = p->seq;
        else if (strcmp(p->id, "$oseq") == 0)
            ch->oseq = p->seq;
        else if (p->id[0] != '$') {
            rwkvd_pair *pair = rwkvd_chantab_pair(d->tab, name, strlen(name), p->id, strlen(p->id), true);
            if (pair) {
                pair->snap_seq = p->seq;
                if (p->seq > pair->acked)
                    pair->acked = p->seq;
            }
        }
    }
    if (ch->tier != RWKVD_TIER_DISK) /* a disk-tier channel's stay in its snapshot */
        load_outputs(d, ch, s);
    rwkvd_snapshot_destroy(&s);
    return 0;
}

/* A committed generation's record (producer "", seq = the LSN it follows): when that record
 * is a GEN still queued, the GEN becomes the committed tokens (applied where the generation
 * ran; sampling again could give other tokens, and its outputs went out already). When the
 * channel's snapshot is at or past that LSN it holds them (snapshots wait for commits). An
 * output trigger's generation has its own record (keep_output_commit). 0 or -ENOMEM. */
static int place_commit(rwkvd_daemon *d, rwkvd_channel *ch, const rwkvd_wal_rec *r)
{
    (void)d;
    if (r->seq <= ch->applied_lsn)
        return 0;
    rwkvd_entry *prev = NULL, *g = ch->head;
    while (g && g->lsn != r->seq) {
        prev = g;
        g = g->next;
    }
    if (!g || g->op != RWKVP_OP_GEN) {
        rwkvd_log(LOG_WARNING, "recovery: input log LSN %llu: channel %s: committed generation of LSN %llu, which "
                               "is not a GEN still to apply; ignored", (unsigned long long)r->lsn, ch->name,
                  (unsigned long long)r->seq);
        return 0;
    }
    uint32_t n = r->payload_bytes / 4;
    rwkvd_entry *e = calloc(1, sizeof *e + (size_t)n * sizeof(int32_t));
    if (!e)
        return -ENOMEM;
    e->op = RWKVP_OP_TOKENS;
    e->seq = g->seq;
    e->lsn = e->at_lsn = g->lsn;
    memcpy(e->producer, g->producer, sizeof e->producer);
    e->committed = true;
    e->n_tokens = n;
    for (uint32_t i = 0; i < n; i++)
        e->tokens[i] = (int32_t)rwkvd_le32_get((const unsigned char *)r->payload + 4 * i);
    e->next = g->next;
    if (prev)
        prev->next = e;
    else
        ch->head = e;
    if (ch->tail == g)
        ch->tail = e;
    ch->q_tokens += rwkvd_entry_cost(e) - rwkvd_entry_cost(g);
    ch->q_committed += rwkvd_entry_cost(e);
    d->tab->q_tokens_total += rwkvd_entry_cost(e) - rwkvd_entry_cost(g);
    rwkvd_entry_free(g);
    return 0;
}

/* A committed generation of an output (producer "$out:<tokens seen>", seq = the LSN of its
 * trigger point; rwkvd_durable_log_output): kept on the channel until the scheduler reaches
 * that point (rwkvd_durable_take_output), unless the channel's snapshot holds it. A snapshot
 * never lies between a trigger and the end of its commit (commit_pending), and the record is
 * logged at the generation's end, before its tokens are applied: the snapshot holds them
 * exactly when the record was logged before it was taken and, if recovered, was reached
 * ($next, snapshot_one). A snapshot without $next
 * (written before it existed, or by an IMPORT, whose applied LSN is past every record of the
 * name) places the point instead: behind it when its LSN was applied, or when it lies in the
 * partly applied head entry at fewer tokens seen (exact unless a control RESET zeroed
 * tokens_seen inside that entry). On a standby (recovering false) the channel never passes a
 * point without this record (scheduler.c), so it is always kept. 1 kept, 0 skipped, -ENOMEM. */
static int keep_output_commit(rwkvd_channel *ch, const rwkvd_wal_rec *r, bool recovering)
{
    const char *num = r->producer + strlen(OUT_PREFIX);
    char *end = NULL;
    errno = 0;
    unsigned long long ts = strtoull(num, &end, 10);
    if (*num < '0' || *num > '9' || *end || errno) {
        rwkvd_log(LOG_WARNING, "recovery: input log LSN %llu: channel %s: daemon record with producer '%s' (not "
                               "\"" OUT_PREFIX "<tokens seen>\"); ignored",
                  (unsigned long long)r->lsn, ch->name, r->producer);
        return 0;
    }
    if (recovering && ch->snap_next_lsn && r->lsn < ch->snap_next_lsn)
        return 0;
    if (recovering && !ch->snap_next_lsn &&
        (r->seq <= ch->applied_lsn || (ch->head && ch->head->lsn == r->seq && ch->head->pos > 0 &&
                                       ts < ch->tokens_seen)))
        return 0;
    uint32_t n = r->payload_bytes / 4;
    rwkvd_out_commit *c = calloc(1, sizeof *c);
    rwkvd_entry *e = calloc(1, sizeof *e + (size_t)n * sizeof(int32_t));
    if (!c || !e) {
        free(c);
        free(e);
        return -ENOMEM;
    }
    e->op = RWKVP_OP_TOKENS;
    e->committed = true;
    e->at_lsn = r->seq;
    e->n_tokens = n;
    for (uint32_t i = 0; i < n; i++)
        e->tokens[i] = (int32_t)rwkvd_le32_get((const unsigned char *)r->payload + 4 * i);
    c->lsn = r->seq;
    c->tokens_seen = ts;
    c->rec_lsn = r->lsn;
    c->e = e;
    rwkvd_out_commit **pp = &ch->out_commits;
    while (*pp)
        pp = &(*pp)->next;
    *pp = c;
    return 1;
}

/* Queue one input-log record on its channel as ingest did (recovery, recovering true, and a
 * standby's replication stream): 1 queued, 0 skipped (already in the channel's snapshot, or
 * unusable), -ENOMEM. */
static int queue_record(rwkvd_daemon *d, const rwkvd_wal_rec *rp, int64_t now_ms, bool recovering)
{
    const rwkvd_wal_rec r = *rp;
    rwkvd_channel *ch = rwkvd_chantab_find(d->tab, r.channel, strlen(r.channel));
    if (ch && r.lsn <= ch->applied_lsn)
        return 0;
    if (ch && ch->damaged) { /* not applied; the producers' seqs still count (DUP) */
        if (r.producer[0] && r.producer[0] != '$') {
            rwkvd_pair *pair =
                rwkvd_chantab_pair(d->tab, r.channel, strlen(r.channel), r.producer, strlen(r.producer), true);
            if (pair && r.seq > pair->acked)
                pair->acked = r.seq;
        }
        ch->logged_lsn = r.lsn;
        return 0;
    }
    if (!r.producer[0] && r.op == RWKVP_OP_TOKENS) { /* a committed generation */
        int rc = ch ? place_commit(d, ch, &r) : 0;
        return rc < 0 ? rc : 1;
    }
    if (r.op == RWKVP_OP_TOKENS && strncmp(r.producer, OUT_PREFIX, strlen(OUT_PREFIX)) == 0) {
        return ch ? keep_output_commit(ch, &r, recovering) : 0;
    }
    rwkvd_pair *pair = NULL;
    if (r.producer[0]) {
        pair = rwkvd_chantab_pair(d->tab, r.channel, strlen(r.channel), r.producer, strlen(r.producer), true);
        if (pair && r.seq <= pair->snap_seq)
            return 0;
    }
    if (!ch && !(ch = recover_channel(d, r.channel, now_ms, false)))
        return 0;
    if (ch->tier != RWKVD_TIER_RESIDENT && ch->slot < 0) /* reserve the restore's slot, as ingest does; else it waits */
        ch->slot = reserve_slot(d);
    bool toks = r.op == RWKVP_OP_TEXT || r.op == RWKVP_OP_TOKENS;
    uint32_t n_tokens = toks ? r.payload_bytes / 4 : 0;
    rwkvd_entry *e = calloc(1, sizeof *e + (size_t)n_tokens * sizeof(int32_t));
    if (!e)
        return -ENOMEM;
    e->op = (rwkvp_op)r.op;
    e->seq = r.seq;
    e->lsn = r.lsn;
    snprintf(e->producer, sizeof e->producer, "%s", r.producer);
    e->n_tokens = n_tokens;
    e->event = r.op == RWKVP_OP_TEXT;
    for (uint32_t i = 0; i < n_tokens; i++)
        e->tokens[i] = (int32_t)rwkvd_le32_get((const unsigned char *)r.payload + 4 * i);
    if (r.op == RWKVP_OP_TASK) {
        size_t n = r.payload_bytes < sizeof e->arg - 1 ? r.payload_bytes : sizeof e->arg - 1;
        memcpy(e->arg, r.payload, n);
    } else if (r.op == RWKVP_OP_GEN) {
        rwkvp_error ge;
        memset(&ge, 0, sizeof ge);
        e->gen = malloc(sizeof *e->gen);
        if (!e->gen || rwkvp_gen_params_parse(r.payload, r.payload_bytes, e->gen, &ge) != 0) {
            rwkvd_log(LOG_WARNING, "recovery: LSN %llu (GEN on %s): parameters not usable; skipped",
                      (unsigned long long)r.lsn, r.channel);
            rwkvd_entry_free(e);
            return 0;
        }
    }
    if (ch->partial_lsn && r.lsn == ch->partial_lsn && ch->partial_pos <= n_tokens)
        e->pos = ch->partial_pos;
    rwkvd_chantab_push(ch, e);
    ch->logged_lsn = r.lsn;
    if (pair && r.seq > pair->acked)
        pair->acked = r.seq;
    return 1;
}

static int replay(rwkvd_daemon *d, int64_t now_ms, uint64_t *n_records, uint64_t *n_skipped)
{
    rwkvd_durable *u = d->dur;
    rwkvd_wal_iter *it = NULL;
    int rc = rwkvd_wal_iter_new(u->wal, rwkvd_wal_first_lsn(u->wal), &it);
    if (rc)
        return rc;
    char err[512] = "";
    rwkvd_wal_rec r;
    while ((rc = rwkvd_wal_iter_next(it, &r, err, sizeof err)) == 1) {
        int q = queue_record(d, &r, now_ms, true);
        if (q < 0) {
            rc = q;
            break;
        }
        ++*(q ? n_records : n_skipped);
    }
    if (rc < 0)
        rwkvd_log(LOG_ERR, "recovery: input log: %s", err[0] ? err : strerror(-rc));
    rwkvd_wal_iter_destroy(&it);
    return rc < 0 ? rc : 0;
}

int rwkvd_durable_open(rwkvd_daemon *d)
{
    const rwkvd_config *cfg = d->cfg;
    rwkvd_durable *u = calloc(1, sizeof *u);
    if (!u)
        return -ENOMEM;
    d->dur = u;
    uint64_t t0 = rwkvd_now_ns();
    const char *fault = getenv("RWKVD_FAULT");
    u->wal_io.module = "wal";
    u->snap_io.module = "snapshot";
    if (rwkvd_fsio_faults(&u->wal_io, "wal", fault) || rwkvd_fsio_faults(&u->snap_io, "snapshot", fault)) {
        rwkvd_log(LOG_ERR, "RWKVD_FAULT: malformed spec '%s'", fault);
        return -EINVAL;
    }
    if (fault && fault[0])
        rwkvd_log(LOG_WARNING, "RWKVD_FAULT=%s: injecting file-system faults", fault);
    const rwkv_dims *dm = rwkv_model_dims(d->model);
    u->model = (rwkvd_snap_model){.fingerprint = rwkv_model_fingerprint(d->model),
                                  .n_layer = (uint32_t)dm->n_layer,
                                  .n_embd = (uint32_t)dm->n_embd,
                                  .n_head = (uint32_t)dm->n_head,
                                  .head_size = (uint32_t)dm->head_size,
                                  .n_vocab = (uint32_t)dm->n_vocab};
    u->state_bytes = rwkv_engine_state_bytes(d->engine);
    if (u->state_bytes != rwkvd_snap_state_bytes(&u->model)) {
        rwkvd_log(LOG_ERR, "durability: engine state is %zu bytes, the snapshot layout expects %llu", u->state_bytes,
                  (unsigned long long)rwkvd_snap_state_bytes(&u->model));
        return -EINVAL;
    }
    char dir[PATH_MAX], err[1024] = "";
    if (mkdir(cfg->state_dir, 0700) != 0 && errno != EEXIST) {
        return rwkvd_log_errno(LOG_ERR, errno, "state_dir %s", cfg->state_dir);
    }
    snprintf(dir, sizeof dir, "%s/snapshots", cfg->state_dir);
    int rc = rwkvd_snapstore_open(dir, &u->snap_io, &u->store, err, sizeof err);
    if (rc) {
        rwkvd_log(LOG_ERR, "snapshot store: %s", err);
        return rc;
    }
    snprintf(dir, sizeof dir, "%s/wal", cfg->state_dir);
    rwkvd_wal_opts wo = {.fsync = (rwkvd_wal_fsync)cfg->durability.fsync,
                         .segment_bytes = cfg->durability.wal_segment_bytes,
                         .io = &u->wal_io,
                         .deferred_sync = 1}; /* the I/O thread syncs (below) */
    rwkvd_wal_recovery rep;
    if ((rc = rwkvd_wal_open(dir, &wo, &u->wal, &rep, err, sizeof err))) {
        rwkvd_log(LOG_ERR, "input log %s: %s; refusing to start (move the damaged file away to start from the "
                           "snapshots alone)",
                  dir, err);
        return rc;
    }
    if (rep.torn_bytes)
        rwkvd_log(LOG_WARNING, "input log: torn tail cut: %s", rep.note);
    char **names = NULL;
    size_t n_names = 0;
    if ((rc = rwkvd_snapstore_list(u->store, &names, &n_names))) {
        return rwkvd_log_errno(LOG_ERR, rc, "snapshot store %s/snapshots: cannot list", cfg->state_dir);
    }
    int64_t now_ms = rwkvd_unix_ms();
    size_t n_loaded = 0;
    for (size_t i = 0; i < n_names; i++)
        n_loaded += load_snapshot(d, names[i], now_ms) == 0;
    rwkvd_snapstore_list_free(&names, n_names);
    uint64_t n_records = 0, n_skipped = 0;
    if ((rc = replay(d, now_ms, &n_records, &n_skipped)))
        return rc;
    size_t n_disk = 0, n_waiting = 0;
    for (size_t i = 0; i < d->tab->n; i++) {
        rwkvd_channel *ch = d->tab->v[i];
        ch->partial_lsn = 0;
        ch->partial_pos = 0;
        ch->snap_next_lsn = 0;
        if (ch->tier != RWKVD_TIER_RESIDENT && ch->slot >= 0 && !ch->head) { /* reserved, then its records were all skipped */
            rwkvd_chantab_slot_free(d->tab, ch->slot);
            ch->slot = -1;
        }
        if (ch->tier == RWKVD_TIER_DISK && !ch->snap_written && !ch->damaged && !ch->fresh)
            note_generations(d, ch);
        n_disk += ch->tier == RWKVD_TIER_DISK;
        n_waiting += ch->tier == RWKVD_TIER_DISK && ch->head && ch->slot < 0;
    }
    /* recovery's own moves are not tier traffic */
    memset(d->tab->promotions, 0, sizeof d->tab->promotions);
    memset(d->tab->demotions, 0, sizeof d->tab->demotions);
    n_disk -= u->n_damaged;
    if (n_disk)
        rwkvd_log(n_waiting ? LOG_WARNING : LOG_NOTICE,
                  "recovery: %zu channel(s) start on disk (evicted; the scheduler restores each into a slot when it has work)%s", n_disk,
                  n_waiting ? "; some have input-log records to re-apply and wait for a free slot (EVICT or CLOSE "
                              "another channel)"
                            : "");
    /* until these records are applied again, the channel's outputs after its snapshot are
     * still being published again: REPLAY says so (PROTOCOL.md §9.7) */
    for (size_t i = 0; i < d->tab->n; i++) {
        rwkvd_channel *ch = d->tab->v[i];
        for (const rwkvd_entry *e = ch->head; e; e = e->next)
            if (e->lsn > ch->recover_lsn)
                ch->recover_lsn = e->lsn;
    }
    /* disk work from here on goes to the I/O thread */
    u->io_synced_lsn = rwkvd_wal_durable_lsn(u->wal);
    for (int i = 0; i < SYNC_JOBS; i++) {
        u->sync_pool[i].kind = JOB_SYNC;
        u->sync_pool[i].u = u;
        u->sync_pool[i].sync.fd = -1;
    }
    if ((rc = rwkvd_bio_new(BIO_JOBS, &u->bio))) {
        return rwkvd_log_errno(LOG_ERR, rc, "durability: cannot start the I/O thread");
    }
    uint64_t now = rwkvd_now_ns();
    if (cfg->durability.snapshot_interval_ms)
        u->next_snap_ns = now + cfg->durability.snapshot_interval_ms * 1000000ull;
    rwkvd_log(LOG_NOTICE,
              "recovered %zu channel(s) (%zu from snapshots) and %llu input-log record(s) to re-apply (%llu already "
              "in snapshots) in %.3f s; input log LSN %llu..%llu, fsync %s",
              d->tab->n, n_loaded, (unsigned long long)n_records, (unsigned long long)n_skipped,
              (double)(now - t0) / 1e9, (unsigned long long)rwkvd_wal_first_lsn(u->wal),
              (unsigned long long)rwkvd_wal_next_lsn(u->wal), rwkvd_wal_fsync_name(wo.fsync));
    return 0;
}

/* ---- replication (replica.c) ------------------------------------------------------- */

int rwkvd_durable_apply(rwkvd_daemon *d, const rwkvd_wal_rec *r)
{
    rwkvd_durable *u = d->dur;
    uint64_t next = rwkvd_wal_next_lsn(u->wal), lsn = 0;
    if (r->lsn != next)
        return -EPROTO;
    rwkvd_wal_rec copy = *r;
    int rc = rwkvd_wal_append(u->wal, &copy, &lsn);
    note_wal_error(d, rc, true);
    if (rc)
        return rc;
    rc = queue_record(d, r, rwkvd_unix_ms(), false);
    return rc < 0 ? rc : 0;
}

rwkvd_wal *rwkvd_durable_wal(rwkvd_daemon *d) { return d->dur ? d->dur->wal : NULL; }
rwkvd_snapstore *rwkvd_durable_store(rwkvd_daemon *d) { return d->dur ? d->dur->store : NULL; }

void rwkvd_durable_destroy(rwkvd_daemon *d)
{
    rwkvd_durable *u = d->dur;
    if (!u)
        return;
    if (u->bio) {
        drain(d);
        rwkvd_bio_destroy(&u->bio);
    }
    rwkvd_wal_destroy(&u->wal);
    rwkvd_snapstore_destroy(&u->store);
    for (size_t i = 0; i < u->q_n; i++)
        free(u->q[(u->q_head + i) % u->q_cap].data);
    free(u->q);
    free(u->rec_buf);
    free(u);
    d->dur = NULL;
}

/* ---- portability: EXPORT, IMPORT, FORK ------------------------------------------------ */

/* The model a blob must match; the same as u->model, also without durability. */
static rwkvd_snap_model model_of(const rwkvd_daemon *d)
{
    const rwkv_dims *dm = rwkv_model_dims(d->model);
    return (rwkvd_snap_model){.fingerprint = rwkv_model_fingerprint(d->model),
                              .n_layer = (uint32_t)dm->n_layer,
                              .n_embd = (uint32_t)dm->n_embd,
                              .n_head = (uint32_t)dm->n_head,
                              .head_size = (uint32_t)dm->head_size,
                              .n_vocab = (uint32_t)dm->n_vocab};
}

/* A channel's state as a snapshot, from any tier: the engine slot (exported), the host
 * buffer, or the snapshot file. Meta ids as in snapshot_one, without $partial/$pos (they
 * name this daemon's input log, meaningless elsewhere); an image of the disk tier is the
 * file's, with them and $next, until image_public drops them. */
typedef struct {
    rwkvd_snapshot s;
    prod_list pl;
    void *state;             /* resident: the exported state */
    rwkvd_snapshot *loaded;  /* disk: the file read */
    rwkvd_snap_producer *pub; /* image_public's producer list, or NULL */
} chan_image;

/* The ids that name this daemon's input log (FORMATS.md §1): never in an EXPORT. */
static bool log_meta_id(const char *id)
{
    return strcmp(id, "$partial") == 0 || strcmp(id, "$pos") == 0 || strcmp(id, "$next") == 0 ||
           strcmp(id, "$oseq") == 0;
}

/* Leave the log's meta ids out of im->s (the image a file of the disk tier gives has them). */
static int image_public(chan_image *im)
{
    im->s.extra = NULL; /* retained outputs are this daemon's, like the log's ids */
    im->s.extra_bytes = 0;
    uint32_t n = 0;
    for (uint32_t i = 0; i < im->s.n_producers; i++)
        n += !log_meta_id(im->s.producers[i].id);
    if (n == im->s.n_producers)
        return 0;
    if (!(im->pub = malloc((n ? n : 1) * sizeof *im->pub)))
        return -ENOMEM;
    n = 0;
    for (uint32_t i = 0; i < im->s.n_producers; i++)
        if (!log_meta_id(im->s.producers[i].id))
            im->pub[n++] = im->s.producers[i];
    im->s.producers = im->pub;
    im->s.n_producers = n;
    return 0;
}

static void image_free(chan_image *im)
{
    free(im->pub);
    free(im->pl.v);
    free(im->pl.ids);
    free(im->state);
    rwkvd_snapshot_destroy(&im->loaded);
    memset(im, 0, sizeof *im);
}

static int image_of(rwkvd_daemon *d, rwkvd_channel *ch, chan_image *im, char *err, size_t err_len)
{
    memset(im, 0, sizeof *im);
    rwkvd_snap_model model = model_of(d);
    uint64_t bytes = rwkvd_snap_state_bytes(&model);
    const void *payload = ch->host_state;
    int rc;
    if (ch->tier == RWKVD_TIER_DISK && ch->fresh) { /* a zero state, made on the scratch slot */
        if (!(im->state = malloc(bytes ? bytes : 1)))
            return -ENOMEM;
        if ((rc = rwkv_engine_state_reset(d->engine, d->slot_a)) ||
            (rc = rwkv_engine_state_export(d->engine, d->slot_a, im->state, bytes))) {
            snprintf(err, err_len, "channel %s: zero state: %s", ch->name, strerror(-rc));
            return rc;
        }
        payload = im->state;
    } else if (ch->tier == RWKVD_TIER_DISK && ch->evict_job) { /* being written: the queued image is the state */
        im->s = ((const io_job *)ch->evict_job)->s;
        return 0;
    }
    if (ch->tier == RWKVD_TIER_DISK && !ch->fresh) {
        rwkvd_snap_gen gen = RWKVD_SNAP_CUR;
        if (!d->dur)
            return -EINVAL;
        if ((rc = rwkvd_snapstore_load(d->dur->store, ch->name, &model, &im->loaded, &gen, err, err_len))) {
            if (!err[0])
                snprintf(err, err_len, "snapshot of %s: %s", ch->name, strerror(-rc));
            return rc;
        }
        im->s = *im->loaded; /* its state, producers and meta are the channel's */
        return 0;
    }
    if (ch->tier == RWKVD_TIER_RESIDENT) {
        if (!(im->state = malloc(bytes ? bytes : 1)))
            return -ENOMEM;
        if (ch->reset_pending && (rc = rwkv_engine_state_reset(d->engine, ch->slot)) != 0)
            return rc;
        ch->reset_pending = false;
        if ((rc = rwkv_engine_state_export(d->engine, ch->slot, im->state, bytes))) {
            snprintf(err, err_len, "channel %s: state export: %s", ch->name, strerror(-rc));
            return rc;
        }
        payload = im->state;
    }
    im->pl.ch = ch;
    rwkvd_chantab_each_pair(d->tab, ch->name, ch->name_len, add_pair, &im->pl);
    char meta[RWKVP_NAME_MAX + 16];
    add_meta(&im->pl, "$held", ch->held >= 0 ? (uint64_t)ch->held + 1 : 0);
    add_meta(&im->pl, "$tso", ch->tokens_since_output);
    snprintf(meta, sizeof meta, "$profile:%s", ch->profile);
    add_meta(&im->pl, meta, 0);
    if (im->pl.oom)
        return -ENOMEM;
    im->s = (rwkvd_snapshot){.model = model,
                             .layout = RWKVD_SNAP_LAYOUT_V1,
                             .dtype = RWKVD_SNAP_DTYPE_F32,
                             .channel = ch->name,
                             .tokens_seen = ch->tokens_seen,
                             .applied_lsn = ch->applied_lsn,
                             .n_producers = im->pl.n,
                             .producers = im->pl.v,
                             .payload = payload,
                             .payload_bytes = bytes};
    return 0;
}

int rwkvd_durable_export(rwkvd_daemon *d, rwkvd_channel *ch, void **blob, size_t *len, char *err, size_t err_len)
{
    chan_image im;
    err[0] = '\0';
    int rc = image_of(d, ch, &im, err, err_len);
    if (rc == 0)
        rc = image_public(&im);
    if (rc == 0 && (rc = rwkvd_snapshot_encode(&im.s, blob, len)))
        snprintf(err, err_len, "channel %s: encoding the snapshot: %s", ch->name, strerror(-rc));
    image_free(&im);
    if (rc && !err[0])
        snprintf(err, err_len, "channel %s: %s", ch->name, strerror(-rc));
    return rc;
}

/* Producers of the installed state: the blob's (when carried) merged with the target name's
 * pairs, each at the highest seq applied (its queue is discarded, so that is its acked). */
static void merge_pair(const rwkvd_pair *pair, void *user)
{
    prod_list *pl = user;
    const char *producer = pair->key + pair->channel_len + 1;
    for (uint32_t i = 0; i < pl->n; i++)
        if (strcmp(pl->v[i].id, producer) == 0) {
            if (pair->acked > pl->v[i].seq)
                pl->v[i].seq = pair->acked;
            return;
        }
    if (pair->acked == 0)
        return;
    rwkvd_snap_producer *p = prod_add(pl);
    if (!p)
        return;
    snprintf((char *)p->id, RWKVP_NAME_MAX + 16, "%s", producer);
    p->seq = pair->acked;
}

/* The host tier has room for one more state (tier.c's bound). */
static bool host_has_room(const rwkvd_daemon *d)
{
    uint64_t max = d->cfg->residency.host_max_bytes, one = rwkv_engine_state_bytes(d->engine);
    return max && ((uint64_t)d->tab->n_tier[RWKVD_TIER_HOST] + 1) * one <= max;
}

static void prod_free(prod_list *pl)
{
    free(pl->v);
    free(pl->ids);
}

int rwkvd_durable_install(rwkvd_daemon *d, const char *name, const rwkvd_snapshot *src, bool carry_producers,
                          uint32_t *dropped, char *err, size_t err_len)
{
    size_t name_len = strlen(name);
    rwkvd_channel *ch = rwkvd_chantab_find(d->tab, name, name_len);
    *dropped = 0;
    err[0] = '\0';
    if (ch && (ch->gen || ch->in_job > 0)) {
        snprintf(err, err_len, "channel %s is generating; retry after the generation ends", name);
        return -EBUSY;
    }
    if (!ch) {
        size_t live = 0;
        live = d->tab->n_live;
        if (live >= d->cfg->limits.max_channels) {
            snprintf(err, err_len, "limit reached: limits.max_channels is %u", d->cfg->limits.max_channels);
            return -EMLINK;
        }
    }
    /* where the state goes: host memory, else its snapshot; never a slot (the next message
     * promotes it like any host- or disk-tier channel) */
    bool host = host_has_room(d) || (ch && ch->tier == RWKVD_TIER_HOST);
    if (!host && !d->dur) {
        snprintf(err, err_len, "limit reached: no room in host memory (residency.host_max_bytes) and no snapshot "
                               "store to hold the state");
        return -ENOSPC;
    }
    /* meta and producers of the installed state */
    int32_t held = -1;
    uint64_t tso = 0;
    char profile[RWKVP_NAME_MAX + 1];
    snprintf(profile, sizeof profile, "%s", d->cfg->tasks.default_profile);
    prod_list pl = {0};
    for (uint32_t i = 0; i < src->n_producers; i++) {
        const rwkvd_snap_producer *p = &src->producers[i];
        if (strcmp(p->id, "$held") == 0) {
            if (p->seq > (uint64_t)rwkv_model_dims(d->model)->n_vocab) {
                snprintf(err, err_len, "snapshot image: $held token %llu is outside the vocabulary",
                         (unsigned long long)p->seq - 1);
                prod_free(&pl);
                return -EBADMSG;
            }
            held = p->seq ? (int32_t)(p->seq - 1) : -1;
        } else if (strcmp(p->id, "$tso") == 0) {
            tso = p->seq;
        } else if (strncmp(p->id, "$profile:", 9) == 0) {
            snprintf(profile, sizeof profile, "%s", p->id + 9);
        } else if (p->id[0] != '$' && carry_producers) {
            rwkvd_snap_producer *q = prod_add(&pl);
            if (q) {
                snprintf((char *)q->id, RWKVP_NAME_MAX + 16, "%s", p->id);
                q->seq = p->seq;
            }
        }
    }
    if (profile[0] && !rwkvd_tasks_find(d->tasks, profile)) {
        rwkvd_log(LOG_WARNING, "import into %s: profile '%s' is not configured here; the channel gets the default "
                               "profile '%s'", name, profile, d->cfg->tasks.default_profile);
        snprintf(profile, sizeof profile, "%s", d->cfg->tasks.default_profile);
    }
    uint32_t n_carried = pl.n;
    rwkvd_chantab_each_pair(d->tab, name, name_len, merge_pair, &pl);
    char meta[RWKVP_NAME_MAX + 16];
    add_meta(&pl, "$held", held >= 0 ? (uint64_t)held + 1 : 0);
    add_meta(&pl, "$tso", tso);
    snprintf(meta, sizeof meta, "$profile:%s", profile);
    add_meta(&pl, meta, 0);
    /* a replaced channel's outputs go on numbering (its running generation's END below) */
    add_meta(&pl, "$oseq", ch ? ch->oseq + (ch->gen ? 1 : 0) : 0);
    void *buf = host ? malloc(src->payload_bytes ? src->payload_bytes : 1) : NULL;
    if (pl.oom || (host && !buf)) {
        prod_free(&pl);
        free(buf);
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    /* durable first: both generations hold the new state, at an LSN past every record of
     * the name so far, so recovery neither replays the replaced channel's input on top of it
     * nor falls back to the old state */
    uint64_t lsn = 0;
    if (d->dur) {
        rwkvd_durable *u = d->dur;
        lsn = rwkvd_wal_next_lsn(u->wal) - 1;
        io_job *j = calloc(1, sizeof *j);
        void *copy = j ? malloc(src->payload_bytes ? src->payload_bytes : 1) : NULL;
        if (!copy) {
            free(j);
            prod_free(&pl);
            free(buf);
            snprintf(err, err_len, "out of memory");
            return -ENOMEM;
        }
        memcpy(copy, src->payload, src->payload_bytes);
        j->kind = JOB_SNAP;
        j->u = u;
        j->sync.fd = -1;
        j->payload = copy;
        snprintf(j->channel, sizeof j->channel, "%s", name);
        j->s = *src;
        j->s.extra = NULL; /* an image's retained outputs are another channel's */
        j->s.extra_bytes = 0;
        j->s.model = u->model;
        j->s.channel = j->channel;
        j->s.applied_lsn = lsn;
        j->s.created_ns = 0;
        j->s.n_producers = pl.n;
        j->s.producers = pl.v;
        j->s.payload = copy;
        j->n_writes = 2; /* both generations */
        j->need_lsn = rwkvd_wal_written_lsn(u->wal);
        j->uid = ch ? ch->uid : 0;
        /* written and synced before the reply (PROTOCOL.md §10.4): wait for it */
        kick_sync(d, true);
        u->inflight_bytes += j->s.payload_bytes;
        if (ch)
            ch->snap_jobs++;
        io_job *mine = j;
        int n_ok = 0, rc = 0;
        j->waited = false;
        submit(d, j);
        /* drain, picking this job's outcome out of finish_snap's bookkeeping */
        u->install_job = mine;
        drain(d);
        n_ok = u->install_ok;
        rc = u->install_rc;
        u->install_job = NULL;
        if (n_ok == 0) {
            snprintf(err, err_len, "%s", u->install_err);
            prod_free(&pl);
            free(buf);
            return rc ? rc : -EIO;
        }
        if (n_ok < 2)
            rwkvd_log(LOG_WARNING, "import into %s: second snapshot generation: %s (the first is durable)", name,
                      u->install_err);
    }
    /* then in memory */
    if (ch) {
        if (ch->damaged && d->dur) {
            ch->damaged = false;
            d->dur->n_damaged--;
            rwkvd_log(LOG_NOTICE, "channel %s: damage cleared by the operator (IMPORT)", name);
        }
        rwkvd_daemon_cancel_gen(d, ch);
        ch->fresh = false;
        *dropped = rwkvd_chantab_clear_queue(ch);
        if (ch->slot >= 0) /* its own, or one reserved for a promotion */
            rwkvd_chantab_slot_free(d->tab, ch->slot);
        ch->slot = -1;
        free(ch->host_state);
        ch->host_state = NULL;
    } else {
        int rc = rwkvd_chantab_create_evicted(d->tab, name, name_len, profile, d->cfg->limits.max_channels,
                                              rwkvd_unix_ms(), &ch);
        if (rc) { /* the limit was checked above: out of memory (the snapshot is written and
                   * recovery will find it) */
            prod_free(&pl);
            free(buf);
            snprintf(err, err_len, "cannot create channel %s: %s", name, strerror(-rc));
            return rc;
        }
    }
    if (host) {
        memcpy(buf, src->payload, src->payload_bytes);
        ch->host_state = buf;
    }
    rwkvd_chantab_set_tier(d->tab, ch, host ? RWKVD_TIER_HOST : RWKVD_TIER_DISK);
    ch->reset_pending = false;
    ch->restore_failed = false;
    ch->output_pending = false;
    ch->held = held;
    ch->tokens_seen = src->tokens_seen;
    ch->tokens_since_output = tso;
    rwkvd_channel_set_profile(ch, profile);
    rwkvd_chantab_touch(ch, rwkvd_now_ns());
    ch->applied_lsn = ch->logged_lsn = ch->snap_lsn = ch->snap_prev_lsn = lsn;
    ch->snap_written = d->dur != NULL;
    for (uint32_t i = 0; i < n_carried; i++) {
        rwkvd_pair *pair = rwkvd_chantab_pair(d->tab, name, name_len, pl.v[i].id, strlen(pl.v[i].id), true);
        if (pair && pl.v[i].seq > pair->acked)
            pair->acked = pl.v[i].seq;
    }
    prod_free(&pl);
    if (d->dur)
        truncate_wal(d);
    return 0;
}

int rwkvd_durable_import(rwkvd_daemon *d, const char *name, const void *blob, size_t len, uint32_t *dropped,
                         char *err, size_t err_len)
{
    rwkvd_snap_model model = model_of(d);
    rwkvd_snapshot *s = NULL;
    err[0] = '\0';
    int rc = rwkvd_snapshot_decode(blob, len, "snapshot image", &model, &s, err, err_len);
    if (rc)
        return rc;
    /* producers carry over only to the channel the image was taken from (a migration): under
     * another name they are other pairs */
    bool same = strcmp(s->channel, name) == 0;
    rc = rwkvd_durable_install(d, name, s, same, dropped, err, err_len);
    rwkvd_snapshot_destroy(&s);
    return rc;
}

int rwkvd_durable_fork(rwkvd_daemon *d, rwkvd_channel *src, const char *dst, char *err, size_t err_len)
{
    chan_image im;
    uint32_t dropped = 0;
    err[0] = '\0';
    int rc = image_of(d, src, &im, err, err_len);
    if (rc == 0)
        rc = rwkvd_durable_install(d, dst, &im.s, false, &dropped, err, err_len);
    image_free(&im);
    if (rc && !err[0])
        snprintf(err, err_len, "fork of %s: %s", src->name, strerror(-rc));
    return rc;
}

void rwkvd_durable_stats_get(const rwkvd_daemon *d, rwkvd_durable_stats *out)
{
    const rwkvd_durable *u = d->dur;
    memset(out, 0, sizeof *out);
    out->fsync = "";
    out->last_error = "";
    if (!u)
        return;
    out->enabled = true;
    out->fsync = rwkvd_wal_fsync_name((rwkvd_wal_fsync)d->cfg->durability.fsync);
    out->wal_first_lsn = rwkvd_wal_first_lsn(u->wal);
    out->wal_next_lsn = rwkvd_wal_next_lsn(u->wal);
    out->wal_durable_lsn = rwkvd_wal_durable_lsn(u->wal);
    out->wal_segments = rwkvd_wal_n_segments(u->wal);
    out->wal_failed = rwkvd_wal_failed(u->wal);
    out->wal_append_err = u->wal_append_err;
    out->damaged_channels = u->n_damaged;
    out->wal_append_errors = u->wal_append_errors;
    out->wal_last_failure_unix_ms = u->wal_fail_unix_ms;
    out->snapshots_written = u->snaps_ok;
    out->snapshots_failed = u->snaps_failed;
    out->snapshot_bytes = u->snap_bytes;
    out->last_snapshot_unix_ms = u->snap_ok_unix_ms;
    out->last_failure_unix_ms = u->snap_fail_unix_ms;
    out->last_error = u->snap_error;
}
