/* notify.h — systemd service notifications (sd_notify), a no-op without systemd.
 *
 * What it is: READY=1, RELOADING=1 (with MONOTONIC_USEC), STOPPING=1, STATUS= lines and
 * WATCHDOG=1 pings. The loop decides when to ping: only while the compute worker makes
 * progress (no job in flight, or the job in flight is younger than service.step_timeout),
 * so a hung step stops the pings and systemd's WatchdogSec= restarts the daemon.
 * What it is not: a timer; the loop schedules the calls. Without NOTIFY_SOCKET every call
 * returns at once and does nothing.
 */
#ifndef RWKVD_NOTIFY_H
#define RWKVD_NOTIFY_H

#include <stdint.h>

/* The watchdog interval systemd asked for (WATCHDOG_USEC), halved as recommended, in ns;
 * 0 when there is no watchdog. */
uint64_t rwkvd_notify_watchdog_interval_ns(void);
void rwkvd_notify_ready(const char *status);
void rwkvd_notify_reloading(void);
void rwkvd_notify_stopping(void);
void rwkvd_notify_status(const char *status);
void rwkvd_notify_watchdog(void);

#endif
