/* httpmetrics.h — GET /metrics over HTTP (metrics.listen), for Prometheus.
 *
 * What it is: a libmicrohttpd server on its own thread that answers GET (and HEAD) /metrics
 * with the METRICS text of the control socket (control.c renders it; nothing here formats a
 * figure), 404 for any other path and 405 for other methods on /metrics. The loop renders
 * the text into a mutex-protected copy once at start and then every service.status_interval;
 * an HTTP request only copies that buffer, so a slow or stuck HTTP client never holds up the
 * loop, and the loop holds the mutex only to swap a pointer.
 * What it is not: authenticated or encrypted (hence loopback-only unless
 * metrics.allow_remote), nor reloadable (metrics.listen needs a restart).
 * Without libmicrohttpd in the build the config loader refuses metrics.listen, and these
 * functions do nothing.
 */
#ifndef RWKVD_HTTPMETRICS_H
#define RWKVD_HTTPMETRICS_H

#include <stddef.h>

#include "loop.h"

/* Binds cfg->metrics.listen and starts the server (nothing when it is ""). 0, or a negative
 * errno with `err` naming the address and the reason. */
int rwkvd_httpmetrics_start(rwkvd_daemon *d, char *err, size_t err_len);

/* Renders the METRICS text into the copy the server hands out. Loop thread; no-op when the
 * server is not running. */
void rwkvd_httpmetrics_refresh(rwkvd_daemon *d);

/* Stops the server (waits for its thread) and frees the copy. NULL-safe, idempotent. */
void rwkvd_httpmetrics_stop(rwkvd_daemon *d);

#endif
