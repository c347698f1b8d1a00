/* tier.h — tiered residency: which channels keep their state in an engine slot
 * (tier resident), in a host-memory buffer (tier host) or only in their snapshot (tier disk).
 *
 * What it is: the policy and the moves between tiers.
 *  - residency.resident_channels bounds the resident channels (0: every channel slot). When
 *    more are resident, or a channel needs a slot and none is free, the least recently active
 *    idle resident channel (nothing queued, no pending output or generation, not in the
 *    in-flight job) is demoted: its state is exported into a host buffer and its slot freed;
 *  - a host-tier channel idle for residency.idle_ttl, or the least recently active ones while
 *    the host tier holds more than residency.host_max_bytes, are written to their snapshot
 *    and their buffer freed (tier disk; needs durability). Without a snapshot store the host
 *    tier cannot overflow to disk: a demotion that would pass the bound is refused, and a
 *    channel needing a slot then gets 507. A host-tier channel's own promotion is a swap
 *    and always allowed: the bound may be passed for a moment by the states holding a slot
 *    reserved to leave the host tier. host_max_bytes 0 disables the host tier: demotions go
 *    straight to disk (or do not happen without durability);
 *  - promotion: a non-resident channel with input gets a slot when the scheduler reaches it
 *    (a free one, or one freed by demoting an idle channel; until then its input waits in its
 *    tier, so with a snapshot store ingest never needs a slot: a new channel then starts on
 *    disk with a zero state, rwkvd_channel.fresh) and its state is imported before the
 *    scheduler gives it its next job (from the host buffer, or from the snapshot). Without a
 *    snapshot store ingest reserves the slot, demoting another channel if need be, else
 *    answers 507;
 *  - a generation's own slot is found the same way (rwkvd_tier_gen_room), and when no idle
 *    channel can make room a resident channel that itself waits for a generation slot is
 *    moved to host memory; failing that the generation waits (it keeps its place in its
 *    channel's order: tiering must not change what is generated or committed). Only when the
 *    pool cannot hold a channel and a generation at all (model.state_slots 3) does it end
 *    with 507.
 * Demotions happen only while the worker is idle: before each job is built, from the loop
 * when it has nothing to run, and in ingest after waiting for the in-flight job
 * (rwkvd_daemon_quiesce) when no slot is free. Counts per tier and the transition counters
 * live in the channel table (chantab.h); a buffer is allocated per demotion, never per token.
 * What it is not: the snapshot mechanics (durable.c: rwkvd_durable_evict/restore move
 * to and from disk) or the scheduler.
 * Threads: the loop thread. */
#ifndef RWKVD_TIER_H
#define RWKVD_TIER_H

#include <stdbool.h>
#include <stdint.h>

#include "loop.h"

/* The bound on resident channels in effect (the config's, or every channel slot). */
uint32_t rwkvd_tier_resident_limit(const rwkvd_daemon *d);
/* Bytes of one channel state (the engine's export size). */
uint64_t rwkvd_tier_state_bytes(const rwkvd_daemon *d);

/* Demote one idle channel, preferring tier host, so that a slot is free (or the resident
 * bound holds). `keep` (may be NULL) is never chosen. Waits for the in-flight job first when
 * the worker is busy. 0 when a channel was demoted, -ENOSPC when none could be (nothing
 * idle, or the host bound reached without a snapshot store), or a demotion's error. */
int rwkvd_tier_make_room(rwkvd_daemon *d, rwkvd_channel *keep);

/* Bring ch into a slot (its reserved one, a free one, or one freed by demoting another
 * idle channel) and import its state. The worker must be idle. 0 (also when resident),
 * -ENOSPC, or the import/restore error (ch stays where it was, its slot stays reserved). */
int rwkvd_tier_promote(rwkvd_daemon *d, rwkvd_channel *ch);

/* Move a resident idle channel to the host tier (state exported into a buffer, slot freed).
 * The worker must be idle. 0, -EBUSY when not idle, -ENOMEM. */
int rwkvd_tier_to_host(rwkvd_daemon *d, rwkvd_channel *ch);
/* Free a slot for a generation of `keep` (which stays): demote an idle resident channel
 * (waiting for the in-flight job first), else move a resident channel whose next step is a
 * generation start to host memory. 0 when a slot was freed, -ENOSPC when none can be. */
int rwkvd_tier_gen_room(rwkvd_daemon *d, rwkvd_channel *keep);

/* Enforce the bounds (resident count, idle_ttl, host bytes) while the worker is idle. */
void rwkvd_tier_tick(rwkvd_daemon *d, uint64_t now_ns);
/* Whether rwkvd_tier_tick has work now (a bound passed, an idle_ttl due): the loop then lets
 * the worker drain so that the tick (which uses the engine) can run. O(1). */
bool rwkvd_tier_wants_idle(const rwkvd_daemon *d, uint64_t now_ns);
/* When rwkvd_tier_tick next has time-driven work (an idle_ttl expiring), 0 = none. */
uint64_t rwkvd_tier_next_ns(const rwkvd_daemon *d);

#endif
