/* health.h — the guard that keeps a channel whose state went non-finite from spreading NaN.
 *
 * What it is: after every job the worker has checked each row's final hidden vector
 * (worker.h: a NaN or Inf anywhere in a state reaches it in the same step); for each flagged
 * row the loop quarantines the owner: a channel row resets the channel's state as control
 * RESET does (its generation cancelled, tokens_seen 0, profile and producers' seqs kept),
 * publishes ERROR 512 on its topic, logs it and counts it
 * (rwkvd_channels_quarantined_total); its classifications of that job are not published.
 * A generation row (a fork) ends that generation with ERROR 500 and reason `error`, its
 * tokens never committed. Other channels are untouched.
 * What it is not: a check of states at rest; import already refuses non-finite states.
 * Threads: the loop thread, on a collected job. */
#ifndef RWKVD_HEALTH_H
#define RWKVD_HEALTH_H

#include "loop.h"
#include "worker.h"

/* Act on the rows job j flagged (j->n_bad > 0); call before its generations and tasks are
 * completed. */
void rwkvd_health_job(rwkvd_daemon *d, rwkvd_job *j);

#endif
