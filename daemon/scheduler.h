/* scheduler.h — the scheduler: turns the channel table into the next job for the worker.
 *
 * Policy: round-robin over the busy channels (the channel table's ready list; idle ones
 * cost nothing); each job feeds at most
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
 * Two jobs in flight: the next job is built while the worker computes the current one. A
 * channel whose rows, output or reset are in a job not yet collected is not scheduled again
 * until it is (it waits on the waiting list), and a running generation adds no row while
 * its previous one is in flight, so every channel's state sees exactly the sequence a run of
 * that channel alone would. A build while a job is in flight (pipelined) must not use the
 * engine: a channel that needs a promotion, or a generation that needs a slot none is free
 * for, waits and sets d->want_idle, so that the loop lets the worker drain first.
 * What it is not: the worker or the publisher; it only fills a job and updates the
 * channels' bookkeeping. Loop thread only.
 */
#ifndef RWKVD_SCHEDULER_H
#define RWKVD_SCHEDULER_H

#include "loop.h"

/* Fill d->jobs[d->build_idx] (cleared first; d->building points at it). `pipelined`: a job
 * is in flight. Returns the number of resets + rows + runs + tasks (0: nothing to run). */
int rwkvd_sched_build(rwkvd_daemon *d, bool pipelined);
/* The built job was handed to the worker: the next build uses the other job struct. */
void rwkvd_sched_submitted(rwkvd_daemon *d);
/* Job j was collected (in order): its channels may be scheduled again. */
void rwkvd_sched_collected(rwkvd_daemon *d, const rwkvd_job *j);
/* ch's compiled task profile (NULL: none), looked up by name only after a change. */
const rwkvd_task_profile *rwkvd_sched_profile(const rwkvd_daemon *d, rwkvd_channel *ch);

#endif
