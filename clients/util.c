/* util.c — small parsers and defaults shared by the clients; see rwkvc.h. Pure functions
 * over their arguments (and the environment for the default endpoints). */
#include "rwkvc.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t rwkvc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rwkvc_duration_parse(const char *s, int64_t *out_ms)
{
    if (!s || !*s || !((*s >= '0' && *s <= '9') || *s == '.'))
        return -EINVAL;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0)
        return -EINVAL;
    double scale;
    if (*end == '\0' || strcmp(end, "s") == 0)
        scale = 1000.0;
    else if (strcmp(end, "ms") == 0)
        scale = 1.0;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        scale = 60000.0;
    else if (strcmp(end, "h") == 0)
        scale = 3600000.0;
    else
        return -EINVAL;
    double ms = v * scale;
    if (ms > 9.0e15)
        return -EINVAL;
    *out_ms = (int64_t)llround(ms);
    return 0;
}

int rwkvc_uint_parse(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || !*s)
        return -EINVAL;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    if (v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

int rwkvc_default_endpoint(const char *role, char *buf, size_t cap)
{
    const char *var = strcmp(role, "ingest") == 0    ? "RWKVD_INGEST"
                      : strcmp(role, "publish") == 0 ? "RWKVD_PUBLISH"
                                                     : "RWKVD_CONTROL";
    const char *ep = getenv(var);
    int n;
    if (ep && *ep) {
        n = snprintf(buf, cap, "%s", ep);
    } else {
        const char *dir = getenv("RUNTIME_DIRECTORY");
        if (!dir || !*dir)
            dir = "/run/rwkvd";
        n = snprintf(buf, cap, "ipc://%s/%s.sock", dir, role);
    }
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static bool name_char(unsigned char c, bool first)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')
        return true;
    return !first && (c == '-' || c == '.' || c == ':' || c == '/');
}

void rwkvc_producer_from_host(const char *host, long pid, char *buf)
{
    char tail[32];
    int nt = snprintf(tail, sizeof tail, ":%ld", pid < 0 ? 0 : pid);
    size_t room = RWKVP_NAME_MAX - (size_t)nt;
    if (!host || !*host)
        host = "host";
    size_t n = strlen(host);
    if (n > room)
        n = room;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)host[i];
        buf[i] = name_char(c, i == 0) ? (char)c : '_';
    }
    memcpy(buf + n, tail, (size_t)nt + 1);
}

int rwkvc_tokens_parse(const char *line, size_t len, uint32_t *ids, size_t cap, size_t *n_out,
                       size_t *bad_col)
{
    size_t n = 0, i = 0;
    while (i < len) {
        char c = line[i];
        if (c == ' ' || c == '\t' || c == ',' || c == '\r') {
            i++;
            continue;
        }
        if (c < '0' || c > '9') {
            if (bad_col)
                *bad_col = i;
            return -EINVAL;
        }
        uint64_t v = 0;
        size_t start = i;
        while (i < len && line[i] >= '0' && line[i] <= '9') {
            v = v * 10 + (uint64_t)(line[i] - '0');
            if (v > UINT32_MAX) {
                if (bad_col)
                    *bad_col = start;
                return -EINVAL;
            }
            i++;
        }
        if (n < cap)
            ids[n] = (uint32_t)v;
        n++;
    }
    *n_out = n;
    return n > cap ? -ENOBUFS : 0;
}

size_t rwkvc_utf8_repair(const void *src, size_t len, char *dst, size_t *n_replaced)
{
    const unsigned char *s = src;
    size_t o = 0, reps = 0, i = 0;
    while (i < len) {
        size_t bad = 0;
        if (rwkvp_utf8_valid(s + i, len - i, &bad)) {
            memcpy(dst + o, s + i, len - i);
            o += len - i;
            break;
        }
        memcpy(dst + o, s + i, bad);
        o += bad;
        memcpy(dst + o, "\xEF\xBF\xBD", 3);
        o += 3;
        reps++;
        i += bad + 1;
    }
    if (n_replaced)
        *n_replaced = reps;
    return o;
}
