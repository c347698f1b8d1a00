/* tier.c — see tier.h. */
#include "tier.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "durable.h"
#include "log.h"

uint32_t rwkvd_tier_resident_limit(const rwkvd_daemon *d)
{
    uint32_t all = d->cfg->model.state_slots > 2 ? d->cfg->model.state_slots - 2 : 1;
    uint32_t lim = d->cfg->residency.resident_channels;
    return lim && lim < all ? lim : all;
}

uint64_t rwkvd_tier_state_bytes(const rwkvd_daemon *d)
{
    return rwkv_engine_state_bytes(d->engine);
}

static uint64_t host_bytes(const rwkvd_daemon *d)
{
    return (uint64_t)d->tab->n_tier[RWKVD_TIER_HOST] * rwkvd_tier_state_bytes(d);
}

static void note_host(rwkvd_daemon *d, const rwkvd_channel *ch)
{
    uint64_t ttl = d->cfg->residency.idle_ttl_ms * 1000000ull;
    if (!ttl || !d->dur)
        return;
    uint64_t due = ch->active_ns + ttl;
    if (!d->tab->tier_wake_ns || due < d->tab->tier_wake_ns)
        d->tab->tier_wake_ns = due;
}

/* Resident ch's state into a new host buffer, its slot freed. */
static int export_to_host(rwkvd_daemon *d, rwkvd_channel *ch)
{
    size_t n = (size_t)rwkvd_tier_state_bytes(d);
    void *buf = malloc(n ? n : 1);
    if (!buf)
        return -ENOMEM;
    int rc = 0;
    if (ch->reset_pending && (rc = rwkv_engine_state_reset(d->engine, ch->slot)) == 0)
        ch->reset_pending = false;
    if (rc == 0)
        rc = rwkv_engine_state_export(d->engine, ch->slot, buf, n);
    if (rc) {
        free(buf);
        rwkvd_log(LOG_ERR, "channel %s: state export to host memory: %s (it stays resident)", ch->name,
                  strerror(-rc));
        return rc;
    }
    ch->host_state = buf;
    rwkvd_chantab_slot_free(d->tab, ch->slot);
    ch->slot = -1;
    rwkvd_chantab_set_tier(d->tab, ch, RWKVD_TIER_HOST);
    note_host(d, ch);
    rwkvd_log(LOG_DEBUG, "channel %s demoted to host memory", ch->name);
    return 0;
}

int rwkvd_tier_to_host(rwkvd_daemon *d, rwkvd_channel *ch)
{
    if (ch->tier != RWKVD_TIER_RESIDENT)
        return 0;
    if (!rwkvd_channel_idle(ch) || ch->slot < 0)
        return -EBUSY;
    return export_to_host(d, ch);
}

/* Whether resident ch's next step is starting a generation (a GEN at the head of its queue,
 * or a pending output of a continue profile), which waits for a slot of its own: its state
 * does not change meanwhile, so it may leave its slot to a generation that can start. */
static bool waits_for_gen(const rwkvd_daemon *d, rwkvd_channel *ch)
{
    if (ch->dead || ch->tier != RWKVD_TIER_RESIDENT || ch->slot < 0 || ch->gen || ch->in_job > 0 ||
        ch->reset_pending)
        return false;
    if (ch->output_pending) {
        const rwkvd_task_profile *p = rwkvd_tasks_find(d->tasks, ch->profile);
        return p && p->cfg->kind == RWKVD_TASK_CONTINUE;
    }
    return ch->head && ch->head->op == RWKVP_OP_GEN;
}


/* Host tier -> disk for one idle channel (durability only). */
static int host_to_disk(rwkvd_daemon *d, rwkvd_channel *ch)
{
    if (!d->dur)
        return -ENOSPC;
    return rwkvd_durable_evict_async(d, ch);
}

/* Host-tier states on their way out: they hold a slot reserved for their promotion. */
static uint64_t host_leaving(const rwkvd_daemon *d)
{
    uint64_t n = 0;
    for (const rwkvd_channel *ch = d->tab->lru[RWKVD_TIER_HOST].head; ch; ch = ch->lnext)
        n += ch->slot >= 0;
    return n;
}

/* Room in the host tier for one more state: push the least recently active idle host
 * channels to disk while it would pass the bound. States about to leave the host tier (a
 * reserved slot, or `keep`, which the slot being freed is for: a swap) do not count, so the
 * bound may be passed for a moment by exactly those. */
static int host_room(rwkvd_daemon *d, const rwkvd_channel *keep)
{
    uint64_t max = d->cfg->residency.host_max_bytes, one = rwkvd_tier_state_bytes(d);
    if (!d->tab->n_tier[RWKVD_TIER_HOST] || host_bytes(d) + one <= max)
        return 0;
    max += (host_leaving(d) + (keep && keep->tier == RWKVD_TIER_HOST && keep->slot < 0)) * one;
    while (host_bytes(d) + one > max) {
        rwkvd_channel *x = rwkvd_chantab_lru_idle(d->tab, RWKVD_TIER_HOST, 0);
        if (!x || host_to_disk(d, x) != 0)
            return -ENOSPC;
    }
    return 0;
}

/* Demote one idle resident channel (not `keep`): to host when the host tier has room, else
 * to disk when there is a snapshot store. */
static int demote_one(rwkvd_daemon *d, rwkvd_channel *keep)
{
    rwkvd_channel *x = d->tab->lru[RWKVD_TIER_RESIDENT].head; /* rwkvd_chantab_lru_idle, skipping keep */
    while (x && (x == keep || !rwkvd_channel_idle(x)))
        x = x->lnext;
    if (!x)
        return -ENOSPC;
    if (d->cfg->residency.host_max_bytes && host_room(d, keep) == 0)
        return rwkvd_tier_to_host(d, x);
    if (d->dur)
        return rwkvd_durable_evict_async(d, x);
    return -ENOSPC;
}

int rwkvd_tier_make_room(rwkvd_daemon *d, rwkvd_channel *keep)
{
    if (rwkvd_worker_busy(d->worker))
        rwkvd_daemon_quiesce(d);
    return demote_one(d, keep);
}

int rwkvd_tier_gen_room(rwkvd_daemon *d, rwkvd_channel *keep)
{
    if (rwkvd_worker_busy(d->worker))
        rwkvd_daemon_quiesce(d);
    if (demote_one(d, keep) == 0)
        return 0;
    /* no idle channel: one that itself waits for a generation slot goes to host memory (past
     * residency.host_max_bytes for a moment if need be: it holds work, so it is not pushed on
     * to disk, and it comes back when the scheduler reaches it and a slot is free) */
    rwkvd_channel *x = d->tab->lru[RWKVD_TIER_RESIDENT].head; /* the least recently active one */
    while (x && (x == keep || !waits_for_gen(d, x)))
        x = x->lnext;
    if (!x)
        return -ENOSPC;
    rwkvd_log(LOG_DEBUG, "channel %s, waiting for a generation slot, moves to host memory for one that can start",
              x->name);
    return export_to_host(d, x);
}

int rwkvd_tier_promote(rwkvd_daemon *d, rwkvd_channel *ch)
{
    if (ch->tier == RWKVD_TIER_RESIDENT)
        return 0;
    if (ch->slot < 0) {
        /* keep the resident bound: make room first when it is reached (a failure only
         * matters when no slot is free at all) */
        if (d->tab->n_tier[RWKVD_TIER_RESIDENT] >= rwkvd_tier_resident_limit(d) || d->tab->n_free == 0)
            demote_one(d, ch);
        if ((ch->slot = rwkvd_chantab_slot_alloc(d->tab)) < 0)
            return -ENOSPC;
    }
    if (ch->tier == RWKVD_TIER_DISK)
        return rwkvd_durable_restore(d, ch);
    size_t n = (size_t)rwkvd_tier_state_bytes(d);
    int rc = rwkv_engine_state_import(d->engine, ch->slot, ch->host_state, n);
    if (rc) {
        if (!ch->restore_failed)
            rwkvd_log(LOG_ERR, "channel %s: state import from host memory: %s", ch->name, strerror(-rc));
        ch->restore_failed = true;
        return rc;
    }
    free(ch->host_state);
    ch->host_state = NULL;
    ch->restore_failed = false;
    rwkvd_chantab_set_tier(d->tab, ch, RWKVD_TIER_RESIDENT);
    rwkvd_log(LOG_DEBUG, "channel %s promoted from host memory into slot %d", ch->name, ch->slot);
    return 0;
}

void rwkvd_tier_tick(rwkvd_daemon *d, uint64_t now_ns)
{
    rwkvd_chantab *t = d->tab;
    uint32_t limit = rwkvd_tier_resident_limit(d);
    while (t->n_tier[RWKVD_TIER_RESIDENT] > limit)
        if (demote_one(d, NULL) != 0)
            break;
    if (!d->dur || !t->n_tier[RWKVD_TIER_HOST])
        return;
    uint64_t max = d->cfg->residency.host_max_bytes;
    if (host_bytes(d) > max) /* states on their way out are not pushed past */
        max += host_leaving(d) * rwkvd_tier_state_bytes(d);
    while (host_bytes(d) > max) {
        rwkvd_channel *x = rwkvd_chantab_lru_idle(t, RWKVD_TIER_HOST, 0);
        if (!x || host_to_disk(d, x) != 0)
            break;
    }
    uint64_t ttl = d->cfg->residency.idle_ttl_ms * 1000000ull;
    if (!ttl || (t->tier_wake_ns && now_ns < t->tier_wake_ns))
        return;
    t->tier_wake_ns = 0;
    /* least recent first: the walk stops at the first channel whose ttl has not run out */
    for (rwkvd_channel *ch = t->lru[RWKVD_TIER_HOST].head, *next; ch; ch = next) {
        next = ch->lnext; /* host_to_disk moves ch to the disk tier's list */
        if (now_ns < ch->active_ns + ttl) {
            if (!t->tier_wake_ns || ch->active_ns + ttl < t->tier_wake_ns)
                t->tier_wake_ns = ch->active_ns + ttl;
            break;
        }
        if (rwkvd_channel_idle(ch) && host_to_disk(d, ch) == 0)
            continue;
        /* not idle, or its write failed: look again after another ttl at the latest */
        if (!t->tier_wake_ns || now_ns + ttl < t->tier_wake_ns)
            t->tier_wake_ns = now_ns + ttl;
    }
}

bool rwkvd_tier_wants_idle(const rwkvd_daemon *d, uint64_t now_ns)
{
    const rwkvd_chantab *t = d->tab;
    if (t->n_tier[RWKVD_TIER_RESIDENT] > rwkvd_tier_resident_limit(d))
        return true;
    if (!d->dur || !t->n_tier[RWKVD_TIER_HOST])
        return false;
    if (host_bytes(d) > d->cfg->residency.host_max_bytes)
        return true;
    return d->cfg->residency.idle_ttl_ms && (!t->tier_wake_ns || now_ns >= t->tier_wake_ns);
}

uint64_t rwkvd_tier_next_ns(const rwkvd_daemon *d)
{
    return d->dur && d->tab->n_tier[RWKVD_TIER_HOST] ? d->tab->tier_wake_ns : 0;
}
