/* chantab.c — see chantab.h. Chained hash tables (FNV-1a) for channels and pairs (pairs
 * chained twice: by (channel, producer) and by channel), a dense array of channels for
 * listings, the scheduler's intrusive lists, and a stack of free slots. Allocation happens
 * per channel, per pair and per message, never per token. */
#include "chantab.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t fnv1a(const void *p, size_t n, uint64_t h)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h;
}
#define FNV_INIT 14695981039346656037ull

void rwkvd_entry_free(rwkvd_entry *e)
{
    if (!e)
        return;
    free(e->gen);
    free(e);
}

uint64_t rwkvd_entry_cost(const rwkvd_entry *e)
{
    uint64_t left = e->n_tokens - e->pos;
    return left ? left : 1;
}

rwkvd_chantab *rwkvd_chantab_new(uint32_t max_channels, int first_slot, int n_slots)
{
    rwkvd_chantab *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->n_buckets = 64;
    while (t->n_buckets < max_channels && t->n_buckets < ((size_t)1 << 20))
        t->n_buckets *= 2;
    t->n_pbuckets = t->n_buckets;
    t->buckets = calloc(t->n_buckets, sizeof *t->buckets);
    t->pbuckets = calloc(t->n_pbuckets, sizeof *t->pbuckets);
    t->cbuckets = calloc(t->n_pbuckets, sizeof *t->cbuckets);
    t->n_slots = n_slots;
    t->free_slots = calloc((size_t)(n_slots > 0 ? n_slots : 1), sizeof *t->free_slots);
    if (!t->buckets || !t->pbuckets || !t->cbuckets || !t->free_slots) {
        rwkvd_chantab_destroy(&t);
        return NULL;
    }
    for (int s = n_slots - 1; s >= first_slot; s--)
        t->free_slots[t->n_free++] = s;
    t->next_uid = 1;
    return t;
}

static void channel_free(rwkvd_channel *ch)
{
    rwkvd_chantab_clear_queue(ch);
    rwkvd_chantab_clear_out_commits(ch);
    free(ch->host_state);
    rwkvd_outring_clear(&ch->outs);
    free(ch);
}

/* ---- intrusive lists ---------------------------------------------------------------- */

static rwkvd_chlist *list_of(rwkvd_chantab *t, rwkvd_list_id id)
{
    return id == RWKVD_LIST_READY ? &t->ready : id == RWKVD_LIST_WAITING ? &t->waiting : NULL;
}

void rwkvd_chantab_list_move(rwkvd_channel *ch, rwkvd_list_id to)
{
    rwkvd_chantab *t = ch->tab;
    rwkvd_chlist *from = list_of(t, ch->list);
    if (from) {
        if (ch->rprev)
            ch->rprev->rnext = ch->rnext;
        else
            from->head = ch->rnext;
        if (ch->rnext)
            ch->rnext->rprev = ch->rprev;
        else
            from->tail = ch->rprev;
        from->n--;
        ch->rnext = ch->rprev = NULL;
    }
    ch->list = RWKVD_LIST_NONE;
    rwkvd_chlist *l = list_of(t, to);
    if (!l)
        return;
    ch->rprev = l->tail;
    ch->rnext = NULL;
    if (l->tail)
        l->tail->rnext = ch;
    else
        l->head = ch;
    l->tail = ch;
    l->n++;
    ch->list = to;
}

void rwkvd_chantab_mark_ready(rwkvd_channel *ch)
{
    if (ch->list == RWKVD_LIST_NONE && !ch->dead && ch->tab)
        rwkvd_chantab_list_move(ch, RWKVD_LIST_READY);
}

bool rwkvd_channel_has_work(const rwkvd_channel *ch)
{
    return ch->head || ch->output_pending || ch->reset_pending;
}

void rwkvd_chantab_gens_add(rwkvd_channel *ch)
{
    rwkvd_chlist *l = &ch->tab->gens;
    if (ch->on_gens)
        return;
    ch->gprev = l->tail;
    ch->gnext = NULL;
    if (l->tail)
        l->tail->gnext = ch;
    else
        l->head = ch;
    l->tail = ch;
    l->n++;
    ch->on_gens = true;
}

void rwkvd_chantab_gens_remove(rwkvd_channel *ch)
{
    rwkvd_chlist *l = &ch->tab->gens;
    if (!ch->on_gens)
        return;
    if (ch->gprev)
        ch->gprev->gnext = ch->gnext;
    else
        l->head = ch->gnext;
    if (ch->gnext)
        ch->gnext->gprev = ch->gprev;
    else
        l->tail = ch->gprev;
    l->n--;
    ch->gnext = ch->gprev = NULL;
    ch->on_gens = false;
}

void rwkvd_channel_set_profile(rwkvd_channel *ch, const char *name)
{
    snprintf(ch->profile, sizeof ch->profile, "%s", name ? name : "");
    ch->prof = NULL;
    ch->prof_gen = 0; /* stale: looked up again by name on next use */
}

const char *rwkvd_tier_name(rwkvd_tier t)
{
    static const char *const names[RWKVD_N_TIERS] = {"resident", "host", "disk"};
    return t >= 0 && t < RWKVD_N_TIERS ? names[t] : "?";
}

static void lru_unlink(rwkvd_chantab *t, rwkvd_channel *ch)
{
    rwkvd_chlist *l = &t->lru[ch->tier];
    if (ch->lprev)
        ch->lprev->lnext = ch->lnext;
    else
        l->head = ch->lnext;
    if (ch->lnext)
        ch->lnext->lprev = ch->lprev;
    else
        l->tail = ch->lprev;
    ch->lnext = ch->lprev = NULL;
    l->n--;
}

/* Whether a comes after b in an lru list: later activity, or the same time and created later
 * (the channels one job touches share a time; the older channel goes first, whatever order
 * the job visited them in). */
static bool lru_later(const rwkvd_channel *a, const rwkvd_channel *b)
{
    return a->active_ns > b->active_ns || (a->active_ns == b->active_ns && a->uid > b->uid);
}

/* Into its tier's list in (active_ns, uid) order. Searched from the tail, where a touched
 * or just demoted channel usually belongs; one before the head (a new channel, active_ns 0)
 * goes first at once. */
static void lru_insert(rwkvd_chantab *t, rwkvd_channel *ch)
{
    rwkvd_chlist *l = &t->lru[ch->tier];
    rwkvd_channel *after = NULL;
    if (l->head && !lru_later(l->head, ch))
        for (after = l->tail; lru_later(after, ch); after = after->lprev)
            ;
    ch->lprev = after;
    ch->lnext = after ? after->lnext : l->head;
    if (ch->lnext)
        ch->lnext->lprev = ch;
    else
        l->tail = ch;
    if (after)
        after->lnext = ch;
    else
        l->head = ch;
    l->n++;
}

void rwkvd_chantab_touch(rwkvd_channel *ch, uint64_t now_ns)
{
    ch->active_ns = now_ns;
    if (ch->dead || (ch->tab->lru[ch->tier].tail == ch && (!ch->lprev || !lru_later(ch->lprev, ch))))
        return;
    lru_unlink(ch->tab, ch);
    lru_insert(ch->tab, ch);
}

void rwkvd_chantab_set_tier(rwkvd_chantab *t, rwkvd_channel *ch, rwkvd_tier tier)
{
    if (!ch->dead) {
        t->n_tier[ch->tier]--;
        t->n_tier[tier]++;
        lru_unlink(t, ch);
    }
    if (tier < ch->tier)
        t->promotions[ch->tier]++;
    else if (tier > ch->tier)
        t->demotions[ch->tier][tier]++;
    ch->tier = tier;
    if (!ch->dead)
        lru_insert(t, ch);
}

bool rwkvd_channel_idle(const rwkvd_channel *ch)
{
    return !ch->dead && !ch->head && !ch->output_pending && !ch->gen && ch->in_job <= 0;
}

rwkvd_channel *rwkvd_chantab_lru_idle(const rwkvd_chantab *t, rwkvd_tier tier, uint64_t older_than_ns)
{
    for (rwkvd_channel *ch = t->lru[tier].head; ch; ch = ch->lnext) {
        if (older_than_ns && ch->active_ns > older_than_ns)
            return NULL;
        if (rwkvd_channel_idle(ch))
            return ch;
    }
    return NULL;
}

void rwkvd_chantab_destroy(rwkvd_chantab **tp)
{
    if (!tp || !*tp)
        return;
    rwkvd_chantab *t = *tp;
    for (size_t i = 0; i < t->n; i++)
        channel_free(t->v[i]);
    if (t->pbuckets)
        for (size_t b = 0; b < t->n_pbuckets; b++)
            for (rwkvd_pair *p = t->pbuckets[b], *nx; p; p = nx) {
                nx = p->hnext;
                free(p->credit_env);
                free(p);
            }
    free(t->v);
    free(t->buckets);
    free(t->pbuckets);
    free(t->cbuckets);
    free(t->free_slots);
    free(t);
    *tp = NULL;
}

rwkvd_channel *rwkvd_chantab_find(const rwkvd_chantab *t, const void *name, size_t len)
{
    size_t b = fnv1a(name, len, FNV_INIT) & (t->n_buckets - 1);
    for (rwkvd_channel *ch = t->buckets[b]; ch; ch = ch->hnext)
        if (ch->name_len == len && memcmp(ch->name, name, len) == 0)
            return ch;
    return NULL;
}

int rwkvd_chantab_slot_alloc(rwkvd_chantab *t)
{
    return t->n_free > 0 ? t->free_slots[--t->n_free] : -1;
}

void rwkvd_chantab_slot_free(rwkvd_chantab *t, int slot)
{
    if (slot >= 0 && t->n_free < t->n_slots)
        t->free_slots[t->n_free++] = slot;
}

static int create(rwkvd_chantab *t, const void *name, size_t len, const char *profile, uint32_t max_channels,
                  int64_t now_unix_ms, bool evicted, rwkvd_channel **out)
{
    if (len == 0 || len > RWKVP_CHANNEL_MAX)
        return -EINVAL;
    if (t->n_live >= max_channels)
        return -EMLINK;
    if (!evicted && t->n_free == 0)
        return -ENOSPC;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        rwkvd_channel **v = realloc(t->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        t->v = v;
        t->cap = cap;
    }
    rwkvd_channel *ch = calloc(1, sizeof *ch);
    if (!ch)
        return -ENOMEM;
    memcpy(ch->name, name, len);
    ch->name_len = len;
    ch->uid = t->next_uid++;
    ch->slot = evicted ? -1 : rwkvd_chantab_slot_alloc(t);
    ch->tier = evicted ? RWKVD_TIER_DISK : RWKVD_TIER_RESIDENT;
    t->n_tier[ch->tier]++;
    lru_insert(t, ch);
    ch->reset_pending = !evicted;
    ch->held = -1;
    ch->tab = t;
    rwkvd_channel_set_profile(ch, profile);
    ch->created_unix_ms = ch->last_input_unix_ms = now_unix_ms;
    size_t b = fnv1a(name, len, FNV_INIT) & (t->n_buckets - 1);
    ch->hnext = t->buckets[b];
    t->buckets[b] = ch;
    ch->index = t->n;
    t->v[t->n++] = ch;
    t->n_live++;
    if (ch->reset_pending)
        rwkvd_chantab_mark_ready(ch);
    *out = ch;
    return 0;
}

int rwkvd_chantab_create(rwkvd_chantab *t, const void *name, size_t len, const char *profile,
                         uint32_t max_channels, int64_t now_unix_ms, rwkvd_channel **out)
{
    return create(t, name, len, profile, max_channels, now_unix_ms, false, out);
}

int rwkvd_chantab_create_evicted(rwkvd_chantab *t, const void *name, size_t len, const char *profile,
                                 uint32_t max_channels, int64_t now_unix_ms, rwkvd_channel **out)
{
    return create(t, name, len, profile, max_channels, now_unix_ms, true, out);
}

static void array_remove(rwkvd_chantab *t, rwkvd_channel *ch)
{
    size_t i = ch->index;
    t->v[i] = t->v[--t->n];
    t->v[i]->index = i;
}

uint32_t rwkvd_chantab_remove(rwkvd_chantab *t, rwkvd_channel *ch)
{
    size_t b = fnv1a(ch->name, ch->name_len, FNV_INIT) & (t->n_buckets - 1);
    for (rwkvd_channel **pp = &t->buckets[b]; *pp; pp = &(*pp)->hnext)
        if (*pp == ch) {
            *pp = ch->hnext;
            break;
        }
    ch->hnext = NULL;
    t->n_tier[ch->tier]--; /* no longer live, whether freed now or reaped later */
    lru_unlink(t, ch);
    t->n_live--;
    free(ch->host_state);
    ch->host_state = NULL;
    uint32_t dropped = rwkvd_chantab_clear_queue(ch);
    rwkvd_chantab_list_move(ch, RWKVD_LIST_NONE);
    if (ch->in_job > 0 || ch->on_gens) {
        ch->dead = true; /* stays in v (skipped by the scheduler) until reaped */
        ch->dnext = t->dead;
        t->dead = ch;
        return dropped;
    }
    array_remove(t, ch);
    rwkvd_chantab_slot_free(t, ch->slot);
    channel_free(ch);
    return dropped;
}

void rwkvd_chantab_reap(rwkvd_chantab *t)
{
    for (rwkvd_channel **pp = &t->dead; *pp;) {
        rwkvd_channel *ch = *pp;
        if (ch->in_job <= 0 && !ch->on_gens) {
            *pp = ch->dnext;
            array_remove(t, ch);
            rwkvd_chantab_slot_free(t, ch->slot);
            channel_free(ch);
        } else {
            pp = &ch->dnext;
        }
    }
}

void rwkvd_chantab_push(rwkvd_channel *ch, rwkvd_entry *e)
{
    e->next = NULL;
    if (ch->tail)
        ch->tail->next = e;
    else
        ch->head = e;
    ch->tail = e;
    ch->q_messages++;
    ch->q_tokens += rwkvd_entry_cost(e);
    if (e->committed)
        ch->q_committed += rwkvd_entry_cost(e);
    if (ch->tab) {
        ch->tab->q_messages_total++;
        ch->tab->q_tokens_total += rwkvd_entry_cost(e);
    }
    rwkvd_chantab_mark_ready(ch);
}

void rwkvd_chantab_push_front(rwkvd_channel *ch, rwkvd_entry *e)
{
    e->next = ch->head;
    ch->head = e;
    if (!ch->tail)
        ch->tail = e;
    ch->q_messages++;
    ch->q_tokens += rwkvd_entry_cost(e);
    if (e->committed)
        ch->q_committed += rwkvd_entry_cost(e);
    if (ch->tab) {
        ch->tab->q_messages_total++;
        ch->tab->q_tokens_total += rwkvd_entry_cost(e);
    }
    rwkvd_chantab_mark_ready(ch);
}

void rwkvd_chantab_pop(rwkvd_channel *ch)
{
    rwkvd_entry *e = ch->head;
    if (!e)
        return;
    uint64_t cost = rwkvd_entry_cost(e);
    if (cost > ch->q_tokens)
        cost = ch->q_tokens;
    ch->q_tokens -= cost;
    if (e->committed)
        ch->q_committed -= cost < ch->q_committed ? cost : ch->q_committed;
    ch->q_messages--;
    if (ch->tab) {
        ch->tab->q_tokens_total -= cost;
        ch->tab->q_messages_total--;
    }
    if (e->lsn > ch->applied_lsn)
        ch->applied_lsn = e->lsn;
    ch->head = e->next;
    if (!ch->head)
        ch->tail = NULL;
    rwkvd_entry_free(e);
}

void rwkvd_chantab_clear_out_commits(rwkvd_channel *ch)
{
    while (ch->out_commits) {
        rwkvd_out_commit *c = ch->out_commits;
        ch->out_commits = c->next;
        rwkvd_entry_free(c->e);
        free(c);
    }
}

uint32_t rwkvd_chantab_clear_queue(rwkvd_channel *ch)
{
    uint32_t n = 0;
    while (ch->head) {
        rwkvd_chantab_pop(ch);
        n++;
    }
    if (ch->tab)
        ch->tab->q_tokens_total -= ch->q_tokens;
    ch->q_tokens = 0;
    ch->q_committed = 0;
    return n;
}

uint64_t rwkvd_channel_input_tokens(const rwkvd_channel *ch)
{
    return ch->q_tokens > ch->q_committed ? ch->q_tokens - ch->q_committed : 0;
}

uint64_t rwkvd_channel_credit(const rwkvd_channel *ch, uint64_t max_queue_tokens)
{
    uint64_t input = rwkvd_channel_input_tokens(ch);
    return input >= max_queue_tokens ? 0 : max_queue_tokens - input;
}

rwkvd_pair *rwkvd_chantab_pair(rwkvd_chantab *t, const void *channel, size_t channel_len,
                               const void *producer, size_t producer_len, bool create)
{
    uint64_t hc = fnv1a(channel, channel_len, FNV_INIT);
    uint64_t h = fnv1a("", 1, hc);
    h = fnv1a(producer, producer_len, h);
    size_t b = h & (t->n_pbuckets - 1);
    for (rwkvd_pair *p = t->pbuckets[b]; p; p = p->hnext)
        if (p->channel_len == channel_len && p->producer_len == producer_len &&
            memcmp(p->key, channel, channel_len) == 0 &&
            memcmp(p->key + channel_len + 1, producer, producer_len) == 0)
            return p;
    if (!create)
        return NULL;
    rwkvd_pair *p = calloc(1, sizeof *p + channel_len + producer_len + 2);
    if (!p)
        return NULL;
    p->channel_len = (uint16_t)channel_len;
    p->producer_len = (uint16_t)producer_len;
    memcpy(p->key, channel, channel_len);
    memcpy(p->key + channel_len + 1, producer, producer_len);
    p->hnext = t->pbuckets[b];
    t->pbuckets[b] = p;
    size_t cb = hc & (t->n_pbuckets - 1);
    p->cnext = t->cbuckets[cb];
    t->cbuckets[cb] = p;
    t->n_pairs++;
    return p;
}

void rwkvd_chantab_each_pair(const rwkvd_chantab *t, const char *channel, size_t channel_len,
                             void (*fn)(const rwkvd_pair *p, void *user), void *user)
{
    size_t cb = fnv1a(channel, channel_len, FNV_INIT) & (t->n_pbuckets - 1);
    for (const rwkvd_pair *p = t->cbuckets[cb]; p; p = p->cnext)
        if (p->channel_len == channel_len && memcmp(p->key, channel, channel_len) == 0)
            fn(p, user);
}
