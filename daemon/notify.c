/* notify.c — see notify.h. */
#include "notify.h"
#include "clock.h"

#include <stdio.h>
#include <time.h>

#include <systemd/sd-daemon.h>

uint64_t rwkvd_notify_watchdog_interval_ns(void)
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return 0;
    return usec * 1000ull / 2;
}

void rwkvd_notify_ready(const char *status)
{
    sd_notifyf(0, "READY=1\nSTATUS=%s", status ? status : "running");
}

void rwkvd_notify_reloading(void)
{
    unsigned long long us = (unsigned long long)(rwkvd_now_ns() / 1000ull);
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading configuration", us);
}

void rwkvd_notify_stopping(void) { sd_notify(0, "STOPPING=1\nSTATUS=stopping"); }

void rwkvd_notify_status(const char *status) { sd_notifyf(0, "STATUS=%s", status); }

void rwkvd_notify_watchdog(void) { sd_notify(0, "WATCHDOG=1"); }
