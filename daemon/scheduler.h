/* scheduler.h — the scheduler: turns the channel table into the next job for the worker.
 *
 * Policy: round-robin over the channels from a rotating cursor; each job takes up to
 * model.max_batch channels that have input, ONE token each, so a channel flooding its
 * queue gets one row per step like everyone else and cannot starve the others. Per
 * channel, messages are applied strictly in queue order: control-only messages (TASK)
 * apply at once, RESET/CLOSE zero the slot before the step, a finished event or a token
 * count crossing schedules its output after the step, and GEN starts a generation on a
 * fork. Every running generation adds one row per job (its previous sample).
 * What it is not: the worker or the publisher; it only fills d->job and updates the
 * channels' bookkeeping. Loop thread only, while the worker is idle.
 */
#ifndef RWKVD_SCHEDULER_H
#define RWKVD_SCHEDULER_H

#include "loop.h"

/* Fill d->job (cleared first). Returns the number of resets + rows + tasks (0: idle). */
int rwkvd_sched_build(rwkvd_daemon *d);

#endif
