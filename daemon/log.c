/* log.c — see log.h. Sinks: journald (native), stderr with <N> prefixes, or plain stderr. */
#include "log.h"

#include <errno.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

typedef enum { SINK_TTY = 0, SINK_PREFIX, SINK_JOURNAL } log_sink;

static log_sink sink = SINK_TTY;
static atomic_int log_level = LOG_INFO;

static bool stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) != 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void rwkvd_log_init(void)
{
    if (stderr_is_journal())
        sink = SINK_JOURNAL;
    else if (getenv("INVOCATION_ID") || getenv("JOURNAL_STREAM"))
        sink = SINK_PREFIX;
    else
        sink = SINK_TTY;
}

void rwkvd_log_set_level(int level) { atomic_store(&log_level, level); }

static const char *prio_name(int p)
{
    static const char *const names[] = {"emerg", "alert", "crit", "error", "warning",
                                        "notice", "info", "debug"};
    return p >= 0 && p <= 7 ? names[p] : "log";
}

/* One line at priority: msg, then ": strerror(err)" when err != 0. Leaves errno as it was. */
static void vlog(int priority, int err, const char *fmt, va_list ap)
{
    const int saved = errno;
    if (priority > atomic_load(&log_level)) {
        errno = saved;
        return;
    }
    char msg[1024];
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    if (err && m >= 0 && (size_t)m < sizeof msg)
        snprintf(msg + m, sizeof msg - (size_t)m, ": %s", strerror(err < 0 ? -err : err));
    char line[1100];
    int n = 0;
    switch (sink) {
    case SINK_JOURNAL:
        sd_journal_print(priority, "%s", msg);
        errno = saved;
        return;
    case SINK_PREFIX:
        n = snprintf(line, sizeof line, "<%d>%s\n", priority, msg);
        break;
    default:
        n = snprintf(line, sizeof line, "rwkvd: %s: %s\n", prio_name(priority), msg);
        break;
    }
    if (n > 0) {
        size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
        ssize_t w = write(STDERR_FILENO, line, len);
        (void)w;
    }
    errno = saved;
}

void rwkvd_log(int priority, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(priority, 0, fmt, ap);
    va_end(ap);
}

int rwkvd_log_errno(int priority, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(priority, err, fmt, ap);
    va_end(ap);
    return err < 0 ? err : -err;
}
