/* log.c — see log.h. Sinks: journald (native), stderr with <N> prefixes, or plain stderr. */
#include "log.h"

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
int rwkvd_log_get_level(void) { return atomic_load(&log_level); }

static const char *prio_name(int p)
{
    static const char *const names[] = {"emerg", "alert", "crit", "error", "warning",
                                        "notice", "info", "debug"};
    return p >= 0 && p <= 7 ? names[p] : "log";
}

void rwkvd_log(int priority, const char *fmt, ...)
{
    if (priority > atomic_load(&log_level))
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char line[1100];
    int n;
    switch (sink) {
    case SINK_JOURNAL:
        sd_journal_print(priority, "%s", msg);
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
}
