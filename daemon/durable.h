/* durable.h — the daemon's durable channel state: the input log (WAL, wal.c) in
 * state_dir/wal and the snapshot store (snapshot.c) in state_dir/snapshots, tied to the
 * channel table, the ingest replies and the engine.
 *
 * What it is:
 *  - logging: every accepted ingest message that changes a channel (TEXT and TOKENS as token
 *    ids after tokenization, RESET, TASK, GEN, CLOSE) is appended to the WAL before it is
 *    queued; its entry carries the record's LSN, and a channel's applied_lsn is the LSN of
 *    the last entry popped (chantab.c);
 *  - replies: ingest replies wait in one FIFO until the WAL holds their LSN as the fsync
 *    policy asks (always: an fdatasync covering it has completed, group commit on the I/O
 *    thread; everysec and no: written to the kernel, i.e. at once), so replies keep their
 *    order;
 *  - disk work on the I/O thread (bio.c): log fdatasync (everysec once a second, always as
 *    soon as replies wait), snapshot writes, evictions' writes, log truncation; the loop
 *    learns of completions through the thread's eventfd (rwkvd_durable_io_fd/_io_done);
 *  - snapshots: a channel's exported state plus what the engine has not seen (the held
 *    token), tokens seen, profile, per-producer applied seq, the partly applied head entry and
 *    applied_lsn; taken on SIGTERM, control SNAPSHOT, the configured interval or token count,
 *    and after a control RESET/DROP; then the WAL before the oldest generation any channel
 *    may fall back to is deleted;
 *  - recovery: before the sockets are bound, every channel's newest valid snapshot (else
 *    .prev, with a log line naming the file and the reason), then the WAL records after it
 *    are queued again in order; applying them gives the uninterrupted run's state.
 *  - eviction: control EVICT, and the residency policy (tier.c) for idle channels, snapshot a
 *    channel and free its slot or host buffer (tier disk); its next input reserves a slot
 *    (ingest.c) and the scheduler restores the snapshot before its next job; snapshots skip
 *    disk-tier channels (their snapshot is their state) and take a host-tier channel's
 *    state from its host buffer.
 * What it is not: the fsync/atomic-rename mechanics (wal.c, snapshot.c) or the residency
 * policy (tier.c).
 * Threads: the loop thread; snapshot and recovery touch the engine, so the worker must be
 * idle (rwkvd_daemon_quiesce). */
#ifndef RWKVD_DURABLE_H
#define RWKVD_DURABLE_H

#include <stdbool.h>
#include <stdint.h>

#include "loop.h"
#include "snapshot.h"
#include "wal.h"

/* WAL op codes: the protocol's ops (rwkvp_op) for ingest records. */

/* Open the store under cfg->state_dir and recover every channel into d->tab (queues refilled
 * from the WAL). Needs d->engine, d->model, d->tab, d->tasks; the worker idle. 0, or a
 * negative errno with the reason logged (a corrupt WAL refuses to start). */
int rwkvd_durable_open(rwkvd_daemon *d);
void rwkvd_durable_destroy(rwkvd_daemon *d);

/* Append the record of entry e (its op, producer, seq and tokens; for GEN the parameters'
 * JSON text gen_json[0..gen_len), for TASK e->arg) for `channel`. 0 with *lsn, or the
 * WAL's negative errno (nothing was logged). */
int rwkvd_durable_log(rwkvd_daemon *d, const char *channel, size_t channel_len, const rwkvd_entry *e,
                      const void *gen_json, size_t gen_len, uint64_t *lsn);
/* A committing generation of ch ended; e, its tokens, is queued at the head. Log them
 * (FORMATS.md §2: op TOKENS, no producer, seq = ch->applied_lsn, the record they follow) so
 * that recovery applies them where they were instead of sampling again. 0 or the WAL's
 * errno (logged). */
int rwkvd_durable_log_commit(rwkvd_daemon *d, const rwkvd_channel *ch, const rwkvd_entry *e);
/* The same for a committing generation that an output trigger started (a continue profile
 * with trigger event or tokens) at the point (lsn, tokens_seen) of ch (rwkvd_channel.out_lsn,
 * out_ts): FORMATS.md §2, op TOKENS, producer "$out:<tokens_seen>", seq = lsn, its tokens e
 * (NULL: it failed or committed nothing). Replay applies them when it reaches that point
 * again (rwkvd_durable_take_output). */
/* CANCEL of a generation, made durable (FORMATS.md §2): for one a GEN record asked for
 * (gen_lsn; running, or the GEN still queued) an empty committed-generation record, which
 * replay puts in place of that GEN so that it never runs again; for an output trigger's
 * (triggered), an empty output record for its trigger point (trig_lsn, trig_ts), so that
 * replay does not start it again. 0 with *lsn, or the log's negative errno (logged). */
int rwkvd_durable_log_cancel(rwkvd_daemon *d, const rwkvd_channel *ch, uint64_t gen_lsn, bool triggered,
                             uint64_t trig_lsn, uint64_t trig_ts, uint64_t *lsn);
int rwkvd_durable_log_output(rwkvd_daemon *d, const rwkvd_channel *ch, uint64_t lsn, uint64_t tokens_seen,
                             const rwkvd_entry *e);
/* ch has a pending output of a continue profile at (ch->out_lsn, ch->out_ts): when a record
 * of rwkvd_durable_log_output for that point was recovered (or came from the primary), queue
 * its tokens (if any) at the head as committed and return true (nothing is sampled or published);
 * else false. Recovered records of points the channel has passed are freed. */
bool rwkvd_durable_take_output(rwkvd_daemon *d, rwkvd_channel *ch);
/* Send an ingest reply (envelope + frames) now, or queue it until the WAL is durable up to
 * `lsn` and every earlier queued reply is sent. */
void rwkvd_durable_reply(rwkvd_daemon *d, uint64_t lsn, const rwkvp_frame *env, size_t n_env,
                         const rwkvp_frame *f, size_t n);
/* End of an ingest batch: release the replies the policy allows; under `always` start a log
 * sync on the I/O thread when replies wait for one and none is queued (group commit: every
 * record written meanwhile waits for the next one, so one fdatasync covers many). */
void rwkvd_durable_commit(rwkvd_daemon *d);
/* Loop tick: the everysec sync (queued once a second while something is unsynced), replies;
 * when the worker is idle (and not stopping), the interval / token-count snapshot round:
 * states exported here a few channels per iteration, written by the I/O thread. */
void rwkvd_durable_tick(rwkvd_daemon *d, uint64_t now_ns, bool worker_idle);
/* Whether rwkvd_durable_tick would use the engine now (a background snapshot round due or
 * with room to go on): the loop then lets the worker drain. O(1). */
bool rwkvd_durable_wants_idle(const rwkvd_daemon *d, uint64_t now_ns);
/* The next time rwkvd_durable_tick has work (monotonic ns), 0 = none. */
uint64_t rwkvd_durable_next_ns(const rwkvd_daemon *d);
/* The I/O thread's eventfd (bio.h), for the loop's poll set; -1 without durability. When it
 * is readable call rwkvd_durable_io_done: it records the finished jobs (durable LSN, snapshot
 * generations, evictions, errors) and sends the replies they release. */
int rwkvd_durable_io_fd(const rwkvd_daemon *d);
void rwkvd_durable_io_done(rwkvd_daemon *d);
/* Longest single I/O-thread job so far (ns), 0 without durability. */
uint64_t rwkvd_durable_io_max_job_ns(const rwkvd_daemon *d);
/* Wait until the I/O thread has finished every job and synced the log (shutdown, a standby's
 * full sync). 0 or the log's sticky error. */
int rwkvd_durable_flush(rwkvd_daemon *d);
/* A channel recovered without any usable snapshot is marked damaged (rwkvd_channel.damaged)
 * unless durability.rebuild_damaged: ingest refuses it (423), its files and its input-log
 * records are kept. The operator's RESET or DROP clears it with this: a slot (a free one, or
 * made by demoting an idle channel) with a zero state, tokens seen 0, applied LSN past every
 * record of the channel. `why` names the command for the log. 0 (also when not damaged),
 * -ENOSPC (no slot), or the engine's error; it stays damaged then. IMPORT clears it too
 * (rwkvd_durable_install). The worker must be idle. */
int rwkvd_durable_clear_damage(rwkvd_daemon *d, rwkvd_channel *ch, const char *why);

/* Snapshot `ch` (NULL: every live channel; only_changed skips channels whose two generations
 * already cover everything logged for them), then truncate the WAL. The states are exported
 * here and written by the I/O thread; this waits for the writes (control commands, shutdown).
 * The worker must be idle. 0 or the first error (the others are still attempted); *n_written
 * / *bytes may be NULL. */
int rwkvd_durable_snapshot(rwkvd_daemon *d, rwkvd_channel *ch, bool only_changed, uint32_t *n_written,
                           uint64_t *bytes);
/* EVICT (tier resident or host -> disk): snapshot `ch` (twice when its queue is empty, so
 * both generations cover it and the input log need not be kept for it), then release its
 * slot or host buffer. The worker must be idle. 0 (also when already on disk), -EBUSY while
 * it generates, or the snapshot's error (it stays where it was). */
int rwkvd_durable_evict(rwkvd_daemon *d, rwkvd_channel *ch);
/* The residency policy's eviction (tier.c): the same, without waiting for the disk. The
 * state is exported into an image queued on the I/O thread (both generations when the queue
 * is empty) and ch moves to tier disk at once, its slot or host buffer freed; until the write
 * is done the image is its state (a restore or EXPORT reads it), and if the write fails the
 * image becomes its host buffer again (tier host). 0, -EBUSY (generating, in the job, or a
 * commit pending), or the export's error (it stays where it was). */
int rwkvd_durable_evict_async(rwkvd_daemon *d, rwkvd_channel *ch);
/* Bring a disk-tier channel back: a free slot (or the one reserved for it), its snapshot's
 * state imported (the snapshot must hold exactly what ch has applied). The worker must be
 * idle. 0, -ENOSPC when no slot is free, or the load/import error (it stays on disk). */
int rwkvd_durable_restore(rwkvd_daemon *d, rwkvd_channel *ch);
/* The retained outputs of a disk-tier channel (PROTOCOL.md §9.7), read from its snapshot
 * (or its eviction still being written) into `into`, which is cleared first and left empty
 * for other tiers or without a store. 0 or a negative errno (the snapshot's). Loop thread;
 * reads the file. */
int rwkvd_durable_outputs(rwkvd_daemon *d, rwkvd_channel *ch, rwkvd_outring *into);
/* Warm standby (replica.c). apply: append a record of the primary's replication stream to
 * this daemon's log under the same LSN (it must be the next one: else -EPROTO, nothing
 * logged) and queue it as recovery does; 0 or the log's error / -ENOMEM. The accessors give
 * the primary's full sync its log and store (NULL without durability). */
int rwkvd_durable_apply(rwkvd_daemon *d, const rwkvd_wal_rec *r);
rwkvd_wal *rwkvd_durable_wal(rwkvd_daemon *d);
rwkvd_snapstore *rwkvd_durable_store(rwkvd_daemon *d);
/* State portability (control EXPORT, IMPORT, FORK; PROTOCOL.md §10). These work with or
 * without durability (d->dur may be NULL) and need the worker idle.
 * export: ch's state from any tier as a snapshot image (FORMATS.md §1; the blob is
 * malloc'd). Its producer list holds the channel's applied seqs and the meta ids ($held,
 * $tso, $profile:); an entry partly applied counts as not applied. 0 or a negative errno
 * with err. */
int rwkvd_durable_export(rwkvd_daemon *d, rwkvd_channel *ch, void **blob, size_t *len, char *err, size_t err_len);
/* install: create channel `name`, or replace it (its generation cancelled, its queued input
 * discarded and counted in *dropped), with the state, tokens seen, held token, profile and
 * (carry_producers) producer seqs of `src`; it lands in tier host (room permitting) or disk,
 * never half-applied: with durability both snapshot generations are written first, at an
 * applied LSN past every input-log record of the name so far. 0, or -EBUSY (generating),
 * -EMLINK (limits.max_channels), -ENOSPC (no host room and no snapshot store), -EBADMSG (a
 * bad $held), -ENOMEM, or the snapshot write's error; err says which. */
int rwkvd_durable_install(rwkvd_daemon *d, const char *name, const rwkvd_snapshot *src, bool carry_producers,
                          uint32_t *dropped, char *err, size_t err_len);
/* import: decode and validate the blob (rwkvd_snapshot_decode: -EBADMSG corrupt or
 * truncated, -EPROTO unknown version/layout/dtype, -ESTALE another model) and install it;
 * producers carry over when the blob names the same channel (a migration). */
int rwkvd_durable_import(rwkvd_daemon *d, const char *name, const void *blob, size_t len, uint32_t *dropped,
                         char *err, size_t err_len);
/* fork: install src's state under the new name dst (producers do not carry over). */
int rwkvd_durable_fork(rwkvd_daemon *d, rwkvd_channel *src, const char *dst, char *err, size_t err_len);

/* What STATUS and METRICS report of the store (README "Durability", PROTOCOL.md §10.1). */
typedef struct {
    bool enabled;                  /* false: durability.enabled is off; the rest is zero */
    const char *fsync;             /* policy name */
    uint64_t wal_first_lsn;        /* lowest LSN still in the log */
    uint64_t wal_next_lsn;         /* the LSN appended next */
    uint64_t wal_durable_lsn;      /* highest LSN known on disk (fdatasync) */
    uint32_t wal_segments;
    int wal_failed;                /* 0, or the sticky negative errno of a failed fsync */
    int wal_append_err;            /* 0, or the negative errno of the last append while appends
                                    * fail (ENOSPC, EIO; cleared by the next one that succeeds) */
    uint64_t wal_append_errors;    /* appends failed since start */
    int64_t wal_last_failure_unix_ms; /* the last failed append or sync; 0: none */
    uint32_t damaged_channels;     /* marked damaged at recovery, not cleared yet */
    uint64_t snapshots_written;    /* channel snapshots since start (rounds, EVICT, tiers) */
    uint64_t snapshots_failed;
    uint64_t snapshot_bytes;       /* state payload bytes of those written */
    int64_t last_snapshot_unix_ms; /* 0: none written since start */
    int64_t last_failure_unix_ms;  /* 0: none failed since start */
    const char *last_error;        /* the last failure's message, "" if none; valid until the next snapshot */
} rwkvd_durable_stats;
void rwkvd_durable_stats_get(const rwkvd_daemon *d, rwkvd_durable_stats *out);

/* Shutdown: wait for the I/O thread's jobs, snapshot every channel, sync the WAL, send the
 * replies it now covers. */
void rwkvd_durable_shutdown(rwkvd_daemon *d);

#endif
