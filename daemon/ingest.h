/* ingest.h — the INGEST ROUTER (and the optional INGEST-PULL socket): validation, duplicate
 * detection, pausing, backpressure and queueing of producer messages (PROTOCOL.md §6-§8).
 *
 * What it is: for each received message, exactly one reply (ACK, DUP, CREDIT or ERROR) in
 * arrival order; accepted messages are tokenized (TEXT + the event separator) and queued
 * on their channel, creating it on first use. Errors are checked in the order of
 * PROTOCOL.md §12; retryable errors pause the (channel, producer) pair (§8.2); a 429 asks
 * for an unsolicited CREDIT once the queue has drained to half (rwkvd_ingest_credit_notify),
 * as does a SYNC while input is queued. Credit is in tokens of producer input (§8.1).
 * What it is not: the scheduler; nothing here touches the engine.
 * Loop thread only.
 */
#ifndef RWKVD_INGEST_H
#define RWKVD_INGEST_H

#include "loop.h"

/* Bind the INGEST ROUTER on every configured endpoint. */
int rwkvd_ingest_open(rwkvd_daemon *d, char *err, size_t err_len);
/* Handle up to `budget` waiting messages; returns how many were handled. */
int rwkvd_ingest_handle(rwkvd_daemon *d, int budget);
/* Send CREDIT to pairs answered 429 (or SYNC) whose channel's input has drained to the
 * level they wait for, and retry the INGEST-PULL message waiting for queue room. */
void rwkvd_ingest_credit_notify(rwkvd_daemon *d);
/* Send one reply on INGEST (env: the routing envelope). When the connection's send queue is
 * full it waits in a per-connection backlog, in order, and rwkvd_ingest_backlog_flush
 * retries it; a backlog over endpoints.ingest_reply_hwm, or a client that is gone, loses
 * the reply (counted in ingest_undeliverable). */
void rwkvd_ingest_send(rwkvd_daemon *d, const rwkvp_frame *env, size_t n_env, const rwkvp_frame *f, size_t n);
/* Retry the backlogs; d->n_reply_backlog says whether any is left (the loop then polls
 * again soon). */
void rwkvd_ingest_backlog_flush(rwkvd_daemon *d);
/* Free the backlogs (at shutdown). */
void rwkvd_ingest_backlog_free(rwkvd_daemon *d);

/* INGEST-PULL (PROTOCOL.md §8.4), bound by rwkvd_ingest_open when endpoints.ingest_pull is
 * set: PUSH producers' messages, handled as on INGEST but without replies; a rejection is
 * published as ERROR on the channel's topic (when the channel name was valid) and counted,
 * a DUP only counted, SYNC ignored. A message for a channel whose queue is full is kept,
 * and the socket not read, until the queue has room: backpressure through the producers'
 * high-water marks, nothing dropped. */
/* Handle up to `budget` messages (first the one kept waiting, if any); returns how many. */
int rwkvd_ingest_pull_handle(rwkvd_daemon *d, int budget);
/* The socket to poll, or NULL when there is none or a message waits for queue room. */
void *rwkvd_ingest_pull_socket(const rwkvd_daemon *d);
/* Close the socket and free a waiting message (NULL-safe, idempotent). */
void rwkvd_ingest_pull_close(rwkvd_daemon *d);

#endif
