/* replica.h — warm-standby replication and failover.
 *
 * What it is:
 *  - primary: a ROUTER on replication.bind. A standby that sends SYNC gets a full sync (the
 *    newest valid snapshot of every channel in the store, then every record of the input log
 *    from its first LSN), then every record as it is logged (durable.c calls
 *    rwkvd_replica_record) and a heartbeat (epoch, next LSN) every heartbeat_interval;
 *  - standby (`rwkvd --standby-of PRIMARY_CONTROL`): asks the primary's STATUS for the stream
 *    endpoint and the epoch, replaces its own state_dir's snapshots and log with the full
 *    sync (same LSNs as the primary), recovers from them like any restart, then appends each
 *    streamed record to its own log and queues it (rwkvd_durable_apply), so the scheduler
 *    keeps every channel's state current. It binds only its control socket and publishes
 *    nothing; control RESET/DROP are refused (409) there;
 *  - failover: a standby that hears nothing for failover_timeout takes over: epoch + 1,
 *    persisted in state_dir/epoch (atomic) before it binds its ingest and publish endpoints;
 *  - fencing: the epoch is in STATUS ("replication"); a daemon about to serve as primary
 *    asks replication.peer's STATUS first and refuses to start when the peer has a higher
 *    epoch or serves as primary with the same one; a serving primary asks again every
 *    failover_timeout and, finding a primary with a higher epoch, steps down (restarts in
 *    place as its standby: rwkvd_daemon.restart_standby_of); a --standby-of whose own epoch
 *    is higher than its primary's serves as primary;
 *  - resync: a standby that finds a gap in the stream, is told to resync (the primary
 *    restarted, or a control RESET/DROP changed a state outside the log) restarts itself in
 *    place (rwkvd_daemon.restart: main() re-executes rwkvd with the same arguments).
 * What it is not: synchronous replication unless replication.sync is set (then ACKs wait for
 * every synced standby's ALIVE past their LSN; README "Failover"), or a consensus protocol
 * (fencing is the peer checks plus the epoch; a partition allows two primaries until it
 * heals).
 * Wire format and the epoch file: FORMATS.md §3. Threads: the loop thread only. */
#ifndef RWKVD_REPLICA_H
#define RWKVD_REPLICA_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "loop.h"
#include "wal.h"

#define RWKVD_REPL_SIG "RWKVR1" /* first frame of every replication message */

/* Before recovery (d->model, d->engine, d->zctx exist; nothing bound): read or create
 * state_dir/epoch; a standby (standby_of != NULL) runs its full sync into state_dir; a
 * primary with replication.peer runs the fencing check. 0, or a negative errno with the
 * reason logged (the daemon must not start). */
int rwkvd_replica_init(rwkvd_daemon *d, const char *standby_of);
/* After the daemon's sockets are bound: a primary binds replication.bind. 0 or -errno. */
int rwkvd_replica_open(rwkvd_daemon *d, char *err, size_t err_len);
void rwkvd_replica_destroy(rwkvd_daemon *d);

bool rwkvd_replica_standby(const rwkvd_daemon *d);
/* The fencing epoch; 0 without replication (publications then carry none). */
uint64_t rwkvd_replica_epoch(const rwkvd_daemon *d);
/* The socket the loop polls for input (NULL: none). */
void *rwkvd_replica_socket(const rwkvd_daemon *d);
/* Handle what arrived on it. */
void rwkvd_replica_handle(rwkvd_daemon *d);
/* Heartbeats (primary), failover deadline (standby). */
void rwkvd_replica_tick(rwkvd_daemon *d, uint64_t now_ns);
uint64_t rwkvd_replica_next_ns(const rwkvd_daemon *d); /* 0 = nothing timed */
/* Primary: send the heartbeat if it is due (inside long loop-thread work such as a snapshot
 * round, so standbys do not take a busy primary for a dead one). No-op on a standby. */
void rwkvd_replica_heartbeat(rwkvd_daemon *d);

/* Primary: send a logged record (r->lsn set) to every synced standby. */
void rwkvd_replica_record(rwkvd_daemon *d, const rwkvd_wal_rec *r);
/* Primary with replication.sync: the highest LSN every synced standby has in its log (ACKs
 * wait for it; durable.c); UINT64_MAX when nothing gates (async, a standby, none synced). */
uint64_t rwkvd_replica_acked_lsn(const rwkvd_daemon *d);
/* Primary: a state changed outside the log (control RESET/DROP): every standby resyncs. */
void rwkvd_replica_diverged(rwkvd_daemon *d, const char *why);
/* Add "replication": {role, epoch, endpoint, following, next_lsn, standbys} to a STATUS
 * object (also without replication: role primary, epoch 0). */
void rwkvd_replica_status(const rwkvd_daemon *d, json_t *status);

#endif
