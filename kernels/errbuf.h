/* errbuf.h — librwkv's one formatter of error text (internal).
 *
 * Functions that can fail take an optional `err` buffer (NULL or zero length: no text) and
 * return a negative errno. rwkv_errf writes "WHERE: message" (or "WHERE:LINE: message", or
 * just the message when where is NULL), truncated to fit, and returns rc, so that a
 * failure is one statement: `return rwkv_errf(err, len, -EINVAL, path, 0, "...", ...);`.
 */
#ifndef RWKV_ERRBUF_H
#define RWKV_ERRBUF_H

#include <stdarg.h>
#include <stddef.h>

int rwkv_errf(char *err, size_t len, int rc, const char *where, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
int rwkv_verrf(char *err, size_t len, int rc, const char *where, size_t line, const char *fmt, va_list ap)
    __attribute__((format(printf, 6, 0)));

#endif
