/* scheduler.h — the scheduler: turns the channel table into the next job for the worker.
 *
 * Policy: round-robin over the channels from a rotating cursor; each job feeds at most
 * model.max_batch input tokens. Saturated (at least max_batch channels with input), every
 * channel gets ONE token per job, so a channel flooding its queue gets one row per step like
 * everyone else and cannot starve the others; so does every channel whenever more than
 * RWKVD_SCHED_MAX_RUNS channels have input. With fewer busy channels, they share the
 * max_batch rows equally and each may advance several tokens in the job as a sequence run
 * (rwkv_engine_seq, bit-identical to single steps), so an event of T tokens needs one job
 * rather than T. The runs are few because each one reads the weights once, as the batched
 * step does: n runs cost n weight passes where T lockstep steps cost T.
 * Per channel, messages are applied strictly in queue order: control-only messages (TASK)
 * apply at once, RESET/CLOSE zero the slot before the step (so they wait for a job in
 * which the channel has no rows yet), a finished event or a token count crossing adds its
 * output in the same job (the heads run after the step and the runs, on a fork of the slot
 * plus the held token) after which the channel takes nothing more in that job, and GEN
 * starts a generation on a fork the same way. Every running generation adds one row per job
 * (its previous sample), outside the max_batch input tokens.
 * What it is not: the worker or the publisher; it only fills d->job and updates the
 * channels' bookkeeping. Loop thread only, while the worker is idle.
 */
#ifndef RWKVD_SCHEDULER_H
#define RWKVD_SCHEDULER_H

#include "loop.h"

/* Most busy channels for which a job uses sequence runs (more: one token each). */
#define RWKVD_SCHED_MAX_RUNS 4

/* Fill d->job (cleared first). Returns the number of resets + rows + runs + tasks (0: idle). */
int rwkvd_sched_build(rwkvd_daemon *d);

#endif
