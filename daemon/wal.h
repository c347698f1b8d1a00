/* wal.h — the input log (write-ahead log): records of producer input (channel, producer id,
 * seq, op, payload such as token ids) appended before they are applied, in segment files
 * wal-<16 hex digits of the first LSN>.log of a directory. Byte layout in FORMATS.md §2.
 *
 * Every record carries a log sequence number (LSN), consecutive from the first record of the
 * log, a length and a crc32c. Opening the log scans its last segment and cuts a torn tail
 * (a record cut short or damaged by a crash mid-write, with no whole record after it) at the
 * last whole record; damage followed by whole records is corruption and is reported, never
 * skipped. Durability follows the fsync policy (as Redis appendfsync):
 *   always    rwkvd_wal_commit() fdatasyncs what was appended (call it once per batch, before
 *             acknowledging: group commit);
 *   everysec  rwkvd_wal_tick() fdatasyncs at most once a second (call it from the loop; its
 *             deadline is rwkvd_wal_next_tick_ns());
 *   no        never fsyncs: a record counts as durable once written to the kernel, so it
 *             survives a crash of the process (kill -9) but not of the machine.
 * rwkvd_wal_durable_lsn() is the highest LSN durable in that sense: what acks may carry.
 * A failed write is cut back so no partial record remains (the LSN is not consumed); a failed
 * fsync makes the log read-only until it is reopened (its pages may be lost, so the durable
 * LSN never advances past it).
 * With opts.deferred_sync the fsyncs can run on another thread: rwkvd_wal_sync_begin (owner
 * thread) captures what is to be synced, rwkvd_wal_sync_run (any thread) performs it,
 * rwkvd_wal_sync_end (owner thread, in the order the requests began) records the result; a
 * segment roll-over then leaves the finished segment's fdatasync and the new one's fsync and
 * directory fsync to the next request instead of doing them in the append. Truncation splits
 * the same way (rwkvd_wal_truncate_begin / _run).
 * What it is not: an index (replay is sequential) or a replication stream (replica.c).
 * Threads: one owner thread at a time per log; iterators belong to it too; only the _run
 * functions may run elsewhere, on requests the owner began. */
#ifndef RWKVD_WAL_H
#define RWKVD_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "fsio.h"

#define RWKVD_WAL_MAGIC "RWKVWLOG" /* 8 bytes, no NUL */
#define RWKVD_WAL_VERSION 1
#define RWKVD_WAL_SEGMENT_DEFAULT (64ull << 20)
#define RWKVD_WAL_SEGMENT_MIN 4096u
#define RWKVD_WAL_PAYLOAD_MAX (16u << 20)
#define RWKVD_WAL_NAME_MAX 255
/* Op codes are the daemon's; the log stores any 0..255. Reserved so far: */
#define RWKVD_WAL_OP_TOKENS 1 /* payload: little-endian int32 token ids */

typedef enum {
    RWKVD_WAL_FSYNC_NO = 0,
    RWKVD_WAL_FSYNC_EVERYSEC = 1,
    RWKVD_WAL_FSYNC_ALWAYS = 2,
} rwkvd_wal_fsync;

/* "always" | "everysec" | "no"; -EINVAL otherwise. */
int rwkvd_wal_fsync_parse(const char *s, rwkvd_wal_fsync *out);
const char *rwkvd_wal_fsync_name(rwkvd_wal_fsync p);

typedef struct {
    rwkvd_wal_fsync fsync;
    uint64_t segment_bytes; /* start a new segment when a record would pass this size;
                               0 = RWKVD_WAL_SEGMENT_DEFAULT; at least RWKVD_WAL_SEGMENT_MIN.
                               A single larger record still goes into one segment. */
    uint64_t first_lsn;     /* LSN of the first record of a new, empty log; 0 = 1 */
    rwkvd_fsio *io;         /* fault hooks and call counters; NULL = plain; borrowed */
    int deferred_sync;      /* nonzero: syncs are split (begin/run/end, above) */
} rwkvd_wal_opts;

/* One record. Appending: the caller fills everything but lsn (pointers borrowed for the
 * call). Reading: the iterator fills everything; the pointers stay valid until its next
 * call. */
typedef struct {
    uint64_t lsn;
    uint8_t op;
    const char *channel;  /* 1..255 octets, NUL-terminated */
    const char *producer; /* 0..255 octets, NUL-terminated ("" for internal records) */
    uint64_t seq;         /* the producer's sequence number */
    const void *payload;  /* (payload_bytes) */
    uint32_t payload_bytes; /* <= RWKVD_WAL_PAYLOAD_MAX */
} rwkvd_wal_rec;

/* What open found. */
typedef struct {
    uint32_t n_segments;  /* segments kept */
    uint64_t first_lsn;   /* LSN of the first record kept (== next_lsn when there is none) */
    uint64_t next_lsn;    /* LSN the next append gets */
    uint64_t torn_bytes;  /* bytes cut from the tail; 0 when the log ended cleanly */
    char note[512];       /* "" or which file was cut where and why */
} rwkvd_wal_recovery;

typedef struct rwkvd_wal rwkvd_wal;
typedef struct rwkvd_wal_iter rwkvd_wal_iter;

/* Open (creating dir, mode 0700, and a first segment if none) and recover as described
 * above. 0 with *out and *rep (may be NULL); or -EBADMSG (a damaged segment header other than
 * a torn last one, LSNs out of order, corruption followed by whole records: err names file,
 * offset and reason), or the errno of a failed file operation. */
int rwkvd_wal_open(const char *dir, const rwkvd_wal_opts *opts, rwkvd_wal **out,
                   rwkvd_wal_recovery *rep, char *err, size_t err_len);
/* Close without syncing (call rwkvd_wal_sync first for a clean shutdown). NULL-safe. */
void rwkvd_wal_destroy(rwkvd_wal **w);

/* Append one record, assigning the next LSN (*lsn, may be NULL). 0, or -EINVAL (bad field),
 * -ENOMEM, the errno of the failed write/roll-over (nothing of the record remains, the LSN
 * is unused, the log stays usable), or the sticky error of a log that failed earlier.
 * Allocates only when a record is larger than any before. */
int rwkvd_wal_append(rwkvd_wal *w, const rwkvd_wal_rec *rec, uint64_t *lsn);
/* End of a batch of appends: under `always`, fdatasync now. 0 or a negative errno (sticky). */
int rwkvd_wal_commit(rwkvd_wal *w);
/* Loop tick (monotonic now_ns): under `everysec`, fdatasync when something is pending and the
 * last tick sync is >= 1 s old. 0 or a negative errno (sticky). */
int rwkvd_wal_tick(rwkvd_wal *w, uint64_t now_ns);
/* When the next tick has work: 0 = nothing pending (or not everysec), else a now_ns value. */
uint64_t rwkvd_wal_next_tick_ns(const rwkvd_wal *w);
/* fdatasync whatever is pending, whatever the policy (shutdown, before truncation). */
int rwkvd_wal_sync(rwkvd_wal *w);

/* A sync request: fdatasync of the segments written since the last request (fsync and a
 * directory fsync for one created since). Filled by begin, which owns nothing else of w. */
typedef struct {
    rwkvd_wal *w;     /* NULL: nothing to do */
    uint64_t lsn;     /* records up to this LSN are durable once it succeeds */
    int fd;           /* a dup of the last segment's fd (closed by run) */
    int full;         /* fsync, not fdatasync: the segment is new */
    int dirsync;      /* fsync the directory afterwards */
    int *sealed;      /* (n_sealed) fds of finished segments: fdatasync, close (run frees) */
    uint32_t n_sealed;
    int rc;           /* run's result */
    char path[4096];  /* the last segment's path, for hooks and messages */
} rwkvd_wal_sync_req;
/* 1 with *req to run, 0 when everything written is covered by a request begun before, or the
 * sticky error. Owner thread. */
int rwkvd_wal_sync_begin(rwkvd_wal *w, rwkvd_wal_sync_req *req);
/* Perform it (any thread, one request at a time, in the order they began): 0 or the errno
 * of the first failed fsync (also left in req->rc). Touches only req, w's immutable fields
 * (io, directory) and its fault counters for fsync and dirsync. */
int rwkvd_wal_sync_run(rwkvd_wal_sync_req *req);
/* Record the result (owner thread, in begin order): the durable LSN moves up to req->lsn, or
 * a failure makes the log refuse further work (sticky). */
void rwkvd_wal_sync_end(rwkvd_wal *w, const rwkvd_wal_sync_req *req);

uint64_t rwkvd_wal_next_lsn(const rwkvd_wal *w);
uint64_t rwkvd_wal_written_lsn(const rwkvd_wal *w); /* the last LSN appended (0 = none) */
uint64_t rwkvd_wal_first_lsn(const rwkvd_wal *w); /* lowest LSN still in the log */
/* Highest durable LSN (0 = none): fdatasynced under always/everysec, written under no. */
uint64_t rwkvd_wal_durable_lsn(const rwkvd_wal *w);
int rwkvd_wal_failed(const rwkvd_wal *w);           /* 0 or the sticky negative errno */
uint32_t rwkvd_wal_n_segments(const rwkvd_wal *w);

/* Delete whole segments whose records all have LSN < lsn (never the segment being written),
 * oldest first, then fsync the directory. *n_removed (may be NULL) counts them. 0 or an
 * errno (the segments deleted so far stay deleted; the log stays consistent). */
int rwkvd_wal_truncate_before(rwkvd_wal *w, uint64_t lsn, uint32_t *n_removed);
/* The same split: begin (owner thread) takes the segments out of the log at once (the
 * iterator and first_lsn no longer see them) and returns 1 with *req, 0 when there is
 * nothing to delete, -ENOMEM; run (any thread) unlinks them oldest first, stopping at the
 * first error so what stays on disk is still contiguous, then fsyncs the directory. */
typedef struct {
    rwkvd_wal *w;
    uint64_t *firsts;     /* (n) first LSNs of the segments to delete (run frees) */
    uint32_t n, n_removed;
    int rc;
} rwkvd_wal_trunc_req;
int rwkvd_wal_truncate_begin(rwkvd_wal *w, uint64_t lsn, rwkvd_wal_trunc_req *req);
int rwkvd_wal_truncate_run(rwkvd_wal_trunc_req *req);

/* Iterate over the records with LSN >= from_lsn, in order, across segments. The records
 * appended after the iterator reached the last segment's end are not seen. next: 1 with *rec,
 * 0 at the end, or -EBADMSG (err: file, offset, reason) for a damaged record, a gap in the
 * LSNs or trailing bytes in a segment, or the errno of open/mmap. The iterator must not
 * outlive w, and w must not be truncated while it is in use. */
int rwkvd_wal_iter_new(rwkvd_wal *w, uint64_t from_lsn, rwkvd_wal_iter **out);
int rwkvd_wal_iter_next(rwkvd_wal_iter *it, rwkvd_wal_rec *rec, char *err, size_t err_len);
void rwkvd_wal_iter_destroy(rwkvd_wal_iter **it);

#endif
