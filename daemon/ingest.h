/* ingest.h — the INGEST ROUTER: validation, duplicate detection, pausing, backpressure and
 * queueing of producer messages (PROTOCOL.md §6-§8).
 *
 * What it is: for each received message, exactly one reply (ACK, DUP, CREDIT or ERROR) in
 * arrival order; accepted messages are tokenized (TEXT + the event separator) and queued
 * on their channel, creating it on first use. Errors are checked in the order of
 * PROTOCOL.md §12; retryable errors pause the (channel, producer) pair (§8.2); a 429 asks
 * for an unsolicited CREDIT once the queue has drained to half (rwkvd_ingest_credit_notify).
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
/* Send CREDIT to pairs answered 429 whose channel has drained to half its depth. */
void rwkvd_ingest_credit_notify(rwkvd_daemon *d);

#endif
