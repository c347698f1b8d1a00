/* log.h — rwkvd's logger: one line per message, to journald or stderr.
 *
 * What it is: rwkvd_log(priority, fmt, ...) with syslog priorities (LOG_ERR..LOG_DEBUG).
 * Under systemd with stderr connected to the journal (JOURNAL_STREAM names stderr's device
 * and inode) lines go journald-native through sd_journal_print; under systemd otherwise
 * (INVOCATION_ID set) they go to stderr with "<N>" prefixes that journald and syslog
 * understand; on a terminal they read "rwkvd: warning: ...".
 * What it is not: a hot-path facility. Nothing is logged per token; the loop logs events
 * (start, reload, errors), never traffic.
 * Thread-safety: any thread may log (each line is one write); the level is set by the loop.
 */
#ifndef RWKVD_LOG_H
#define RWKVD_LOG_H

#include <syslog.h>

/* Detect journald / systemd from the environment; call once at start, before threads. */
void rwkvd_log_init(void);
/* Messages with priority > level are discarded (level is a syslog priority, e.g. LOG_INFO). */
void rwkvd_log_set_level(int level);
/* Logging never changes errno. */
void rwkvd_log(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logs the message followed by ": " and strerror(err), and returns -abs(err), so that a
 * failure is logged and returned in one statement: return rwkvd_log_errno(LOG_ERR, r, ...). */
int rwkvd_log_errno(int priority, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
