/* control.h — the CONTROL ROUTER: operator commands (PROTOCOL.md §10).
 *
 * What it is: STATUS, CHANNELS, INFO, RESET, EVICT, DROP, SNAPSHOT, RELOAD and METRICS,
 * answered at once by the loop (a running step never delays them). JSON bodies are built
 * with jansson; METRICS is Prometheus text format 0.0.4.
 * EVICT moves a channel's state to its snapshot (tier disk, durable.c) and frees its slot or
 * host buffer; without durability it moves it to host memory (tier host, tier.c), 409 when
 * residency.host_max_bytes leaves no room. RESET/DROP of a host- or disk-tier channel bring
 * it back first. Without durability SNAPSHOT answers 501.
 * What it is not: a snapshot store (durable.c), nor the residency policy (tier.c).
 * Loop thread only.
 */
#ifndef RWKVD_CONTROL_H
#define RWKVD_CONTROL_H

#include "loop.h"

int rwkvd_control_open(rwkvd_daemon *d, char *err, size_t err_len);
/* Handle up to `budget` waiting requests; returns how many were handled. */
int rwkvd_control_handle(rwkvd_daemon *d, int budget);
/* The METRICS body (Prometheus text format 0.0.4), NUL-terminated, *len bytes before the NUL;
 * free() it. NULL when out of memory. httpmetrics.c serves the same text over HTTP. */
char *rwkvd_control_metrics_text(rwkvd_daemon *d, size_t *len);

#endif
