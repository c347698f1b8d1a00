/* control.h — the CONTROL ROUTER: operator commands (PROTOCOL.md §10).
 *
 * What it is: STATUS, CHANNELS, INFO, RESET, EVICT, DROP, SNAPSHOT, RELOAD and METRICS,
 * answered at once by the loop (a running step never delays them). JSON bodies are built
 * with jansson; METRICS is Prometheus text format 0.0.4.
 * What it is not: a snapshot store: SNAPSHOT answers 501 until the durable-state issue,
 * and EVICT answers 501 likewise (no host or disk tier yet; every channel is resident).
 * Loop thread only.
 */
#ifndef RWKVD_CONTROL_H
#define RWKVD_CONTROL_H

#include "loop.h"

int rwkvd_control_open(rwkvd_daemon *d, char *err, size_t err_len);
/* Handle up to `budget` waiting requests; returns how many were handled. */
int rwkvd_control_handle(rwkvd_daemon *d, int budget);

#endif
