/* errbuf.c — see errbuf.h. */
#include "errbuf.h"

#include <stdio.h>

int rwkv_verrf(char *err, size_t len, int rc, const char *where, size_t line, const char *fmt, va_list ap)
{
    if (!err || !len)
        return rc;
    int n = 0;
    if (where)
        n = line ? snprintf(err, len, "%s:%zu: ", where, line) : snprintf(err, len, "%s: ", where);
    if (n < 0 || (size_t)n >= len)
        return rc; /* the prefix alone fills the buffer: keep it, truncated */
    vsnprintf(err + n, len - (size_t)n, fmt, ap);
    return rc;
}

int rwkv_errf(char *err, size_t len, int rc, const char *where, size_t line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rc = rwkv_verrf(err, len, rc, where, line, fmt, ap);
    va_end(ap);
    return rc;
}
