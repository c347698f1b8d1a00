/* scheduler.h — the scheduler: turns the channel table into the next job for the worker.
 *
 * Policy: round-robin over the channels from a rotating cursor; each job feeds at most
 * model.max_batch input tokens, shared among the busy channels: each visited channel may
 * feed up to ceil(rows left / busy channels not yet visited) tokens, at least one, so with
 * B busy channels each advances about max_batch / B tokens per job (one once B >=
 * max_batch, when the cursor's rotation keeps it fair), a channel flooding its queue never
 * takes more than its share and cannot starve the others, and a share a channel leaves
 * unused goes to the channels after it. A channel feeding one token is a row; one feeding
 * several is a sequence run. The worker feeds all the rows and runs in ONE rwkv_engine_run
 * (one weight read per max_batch rows, bit-identical to single steps), so an event of T
 * tokens on each of B channels needs about ceil(B*T / max_batch) jobs rather than T.
 * Per channel, messages are applied strictly in queue order: control-only messages (TASK)
 * apply at once, RESET/CLOSE zero the slot before the job's rows (so they wait for a job in
 * which the channel has no rows yet), a finished event or a token count crossing adds its
 * output in the same job (the heads run after all the rows, on a fork of the slot
 * plus the held token) after which the channel takes nothing more in that job, and GEN
 * starts a generation on a fork the same way. Every running generation adds one row per job
 * (its previous sample), outside the max_batch input tokens.
 * What it is not: the worker or the publisher; it only fills d->job and updates the
 * channels' bookkeeping. Loop thread only, while the worker is idle.
 */
#ifndef RWKVD_SCHEDULER_H
#define RWKVD_SCHEDULER_H

#include "loop.h"

/* Fill d->job (cleared first). Returns the number of resets + rows + runs + tasks (0: idle). */
int rwkvd_sched_build(rwkvd_daemon *d);

#endif
