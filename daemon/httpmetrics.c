/* httpmetrics.c — see httpmetrics.h. */
#include "httpmetrics.h"

#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "log.h"
#include "rwkvd_features.h"

#if RWKVD_HAVE_MICROHTTPD
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define MAX_CONNECTIONS 32
#define CONNECTION_TIMEOUT_S 10

struct rwkvd_httpmetrics {
    struct MHD_Daemon *mhd;
    pthread_mutex_t mu; /* guards text/len; held for a pointer swap or one memcpy */
    char *text;         /* the latest rendering, NULL until the first */
    size_t len;
};

static enum MHD_Result send_plain(struct MHD_Connection *conn, unsigned status, const char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* libmicrohttpd's thread: one call per request (a GET has no body, so no second round). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_len, void **con_cls)
{
    struct rwkvd_httpmetrics *h = cls;
    if (strcmp(url, "/metrics") != 0)
        return send_plain(conn, MHD_HTTP_NOT_FOUND, "not found: rwkvd serves /metrics only\n");
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return send_plain(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: use GET\n");
    if (*upload_len) /* a body on a GET: ignore it */
        *upload_len = 0;
    pthread_mutex_lock(&h->mu);
    char *copy = h->text ? malloc(h->len ? h->len : 1) : NULL;
    size_t len = h->len;
    if (copy)
        memcpy(copy, h->text, len);
    bool have = h->text != NULL;
    pthread_mutex_unlock(&h->mu);
    if (!copy)
        return send_plain(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                          have ? "out of memory\n" : "metrics not rendered yet\n");
    struct MHD_Response *r = MHD_create_response_from_buffer(len, copy, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(copy);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

int rwkvd_httpmetrics_start(rwkvd_daemon *d, char *err, size_t err_len)
{
    const char *listen = d->cfg->metrics.listen;
    if (!listen[0])
        return 0;
    struct sockaddr_storage sa;
    socklen_t sa_len;
    bool loopback;
    const char *why = rwkvd_config_parse_hostport(listen, &sa, &sa_len, &loopback);
    if (why) { /* the config loader checked it already */
        snprintf(err, err_len, "metrics.listen \"%s\": %s", listen, why);
        return -EINVAL;
    }
    struct rwkvd_httpmetrics *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    pthread_mutex_init(&h->mu, NULL);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (sa.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONNECTION_TIMEOUT_S, MHD_OPTION_END);
    if (!h->mhd) {
        int e = errno ? errno : EADDRINUSE;
        snprintf(err, err_len, "metrics.listen: cannot serve HTTP on %s: %s", listen, strerror(e));
        pthread_mutex_destroy(&h->mu);
        free(h);
        return -e;
    }
    d->http = h;
    if (!loopback)
        rwkvd_log(LOG_WARNING, "metrics.listen %s is not a loopback address: /metrics is open to anyone who "
                               "reaches it (metrics.allow_remote)", listen);
    rwkvd_log(LOG_INFO, "metrics: Prometheus text on http://%s/metrics", listen);
    return 0;
}

void rwkvd_httpmetrics_refresh(rwkvd_daemon *d)
{
    struct rwkvd_httpmetrics *h = d->http;
    if (!h)
        return;
    size_t len = 0;
    char *text = rwkvd_control_metrics_text(d, &len);
    if (!text)
        return; /* out of memory: keep serving the previous rendering */
    pthread_mutex_lock(&h->mu);
    char *old = h->text;
    h->text = text;
    h->len = len;
    pthread_mutex_unlock(&h->mu);
    free(old);
}

void rwkvd_httpmetrics_stop(rwkvd_daemon *d)
{
    struct rwkvd_httpmetrics *h = d->http;
    if (!h)
        return;
    d->http = NULL;
    MHD_stop_daemon(h->mhd);
    pthread_mutex_destroy(&h->mu);
    free(h->text);
    free(h);
}

#else /* no libmicrohttpd: the config loader refuses a non-empty metrics.listen */

int rwkvd_httpmetrics_start(rwkvd_daemon *d, char *err, size_t err_len)
{
    if (!d->cfg->metrics.listen[0])
        return 0;
    snprintf(err, err_len, "metrics.listen: this rwkvd was built without libmicrohttpd");
    return -ENOTSUP;
}

void rwkvd_httpmetrics_refresh(rwkvd_daemon *d) { (void)d; }

void rwkvd_httpmetrics_stop(rwkvd_daemon *d) { (void)d; }

#endif
