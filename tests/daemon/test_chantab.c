/* test_chantab.c — the channel table (daemon/chantab.c): lookup/create/remove, the channel
 * limit and slot pool, queue cost accounting and the credit estimate, pairs that outlive
 * their channel, and deferred freeing of channels still referenced by a job. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chantab.h"
#include "testutil.h"

static void count_pair(const rwkvd_pair *p, void *user)
{
    (void)p;
    (*(int *)user)++;
}

static rwkvd_entry *entry(uint32_t n_tokens)
{
    rwkvd_entry *e = calloc(1, sizeof *e + n_tokens * sizeof(int32_t));
    e->op = RWKVP_OP_TOKENS;
    e->n_tokens = n_tokens;
    return e;
}

/* Tier counts follow creation, moves and removal; the LRU pick takes the least recently
 * active idle channel of a tier (ties: oldest), skips busy ones, and honours a cut-off. */
/* The scheduler's lists: a new channel (reset pending) and a push put a channel on the ready
 * list once; list moves keep the counts; removal takes it off; the table's queue totals
 * follow push, pop, clear and removal; a channel's pairs are found by name alone. */
static void test_lists(void)
{
    rwkvd_chantab *t = rwkvd_chantab_new(8, 2, 8);
    rwkvd_channel *a = NULL, *b = NULL;
    CHECK(rwkvd_chantab_create(t, "a", 1, "", 8, 0, &a) == 0 && a->list == RWKVD_LIST_READY);
    CHECK(rwkvd_chantab_create_evicted(t, "b", 1, "", 8, 0, &b) == 0 && b->list == RWKVD_LIST_NONE);
    CHECK(t->ready.n == 1 && t->ready.head == a && t->n_live == 2);
    rwkvd_chantab_push(b, entry(3));
    rwkvd_chantab_push(b, entry(0));
    rwkvd_chantab_push_front(a, entry(2));
    CHECK(t->ready.n == 2 && t->ready.head == a && t->ready.tail == b);
    CHECK(t->q_messages_total == 3 && t->q_tokens_total == 6);
    rwkvd_chantab_list_move(a, RWKVD_LIST_WAITING);
    CHECK(t->ready.n == 1 && t->waiting.n == 1 && t->ready.head == b && t->waiting.head == a);
    rwkvd_chantab_push(a, entry(1)); /* on the waiting list: stays there */
    CHECK(a->list == RWKVD_LIST_WAITING && t->q_tokens_total == 7 && t->q_messages_total == 4);
    rwkvd_chantab_pop(b);
    CHECK(t->q_tokens_total == 4 && t->q_messages_total == 3 && rwkvd_channel_has_work(b));
    CHECK(rwkvd_chantab_clear_queue(b) == 1 && t->q_tokens_total == 3 && t->q_messages_total == 2);
    rwkvd_chantab_gens_add(a);
    rwkvd_chantab_gens_add(a);
    CHECK(t->gens.n == 1 && a->on_gens);
    rwkvd_chantab_pair(t, "a", 1, "p1", 2, true);
    rwkvd_chantab_pair(t, "a", 1, "p2", 2, true);
    rwkvd_chantab_pair(t, "ab", 2, "p1", 2, true);
    int n_pairs = 0;
    rwkvd_chantab_each_pair(t, "a", 1, count_pair, &n_pairs);
    CHECK(n_pairs == 2);
    rwkvd_chantab_remove(t, a); /* on gens: kept (dead) until the generation ends */
    CHECK(a->dead && a->list == RWKVD_LIST_NONE && t->waiting.n == 0 && t->q_tokens_total == 0 &&
          t->q_messages_total == 0 && t->n_live == 1);
    rwkvd_chantab_reap(t);
    CHECK(t->n == 2);
    rwkvd_chantab_gens_remove(a);
    rwkvd_chantab_reap(t);
    CHECK(t->n == 1 && t->gens.n == 0);
    rwkvd_chantab_destroy(&t);
}

static void test_tiers(void)
{
    rwkvd_chantab *t = rwkvd_chantab_new(8, 2, 8);
    rwkvd_channel *c[5];
    for (int i = 0; i < 5; i++) {
        char name[2] = {(char)('a' + i), 0};
        CHECK(rwkvd_chantab_create(t, name, 1, "", 8, 0, &c[i]) == 0);
        rwkvd_chantab_touch(c[i], 100);
    }
    rwkvd_channel *disk = NULL;
    CHECK(rwkvd_chantab_create_evicted(t, "z", 1, "", 8, 0, &disk) == 0 && disk->tier == RWKVD_TIER_DISK);
    CHECK(t->n_tier[RWKVD_TIER_RESIDENT] == 5 && t->n_tier[RWKVD_TIER_DISK] == 1);
    rwkvd_chantab_touch(c[0], 50);
    rwkvd_chantab_touch(c[2], 40);
    rwkvd_chantab_touch(c[1], 40);
    /* equal times: the older channel (lower uid) first, whatever the order of the touches */
    CHECK(rwkvd_chantab_lru_idle(t, RWKVD_TIER_RESIDENT, 0) == c[1]);
    CHECK(t->lru[RWKVD_TIER_RESIDENT].n == 5 && t->lru[RWKVD_TIER_RESIDENT].head == c[1] &&
          c[1]->lnext == c[2] && c[2]->lnext == c[0] && c[0]->lnext == c[3] && t->lru[RWKVD_TIER_RESIDENT].tail == c[4]);
    CHECK(t->lru[RWKVD_TIER_DISK].n == 1 && t->lru[RWKVD_TIER_DISK].head == disk);
    /* busy channels are never picked: queued input, pending output, in the in-flight job */
    rwkvd_chantab_push(c[1], entry(1));
    c[2]->in_job = 1;
    CHECK(rwkvd_chantab_lru_idle(t, RWKVD_TIER_RESIDENT, 0) == c[0]);
    c[0]->output_pending = true;
    CHECK(rwkvd_chantab_lru_idle(t, RWKVD_TIER_RESIDENT, 0) == c[3]);
    CHECK(rwkvd_chantab_lru_idle(t, RWKVD_TIER_RESIDENT, 99) == NULL); /* nothing idle since <= 99 */
    /* moves keep the counts and count promotions / demotions by tier */
    rwkvd_chantab_set_tier(t, c[3], RWKVD_TIER_HOST);
    rwkvd_chantab_set_tier(t, c[4], RWKVD_TIER_HOST);
    rwkvd_chantab_set_tier(t, c[4], RWKVD_TIER_DISK);
    rwkvd_chantab_set_tier(t, disk, RWKVD_TIER_RESIDENT);
    CHECK(t->n_tier[RWKVD_TIER_RESIDENT] == 4 && t->n_tier[RWKVD_TIER_HOST] == 1 && t->n_tier[RWKVD_TIER_DISK] == 1);
    CHECK(t->demotions[RWKVD_TIER_RESIDENT][RWKVD_TIER_HOST] == 2 && t->demotions[RWKVD_TIER_HOST][RWKVD_TIER_DISK] == 1);
    CHECK(t->promotions[RWKVD_TIER_DISK] == 1 && t->promotions[RWKVD_TIER_HOST] == 0);
    CHECK(rwkvd_chantab_lru_idle(t, RWKVD_TIER_HOST, 0) == c[3]);
    CHECK(rwkvd_chantab_lru_idle(t, RWKVD_TIER_DISK, 0) == c[4]);
    /* a tier change inserts by time: disk (never active) heads the resident list, and a
     * touch moves a channel to the tail */
    CHECK(t->lru[RWKVD_TIER_RESIDENT].head == disk && t->lru[RWKVD_TIER_RESIDENT].n == 4);
    rwkvd_chantab_touch(disk, 300);
    CHECK(t->lru[RWKVD_TIER_RESIDENT].tail == disk && t->lru[RWKVD_TIER_RESIDENT].head == c[1]);
    CHECK(rwkvd_chantab_lru_idle(t, RWKVD_TIER_RESIDENT, 0) == disk); /* c1, c2, c0 are busy */
    rwkvd_chantab_touch(c[4], 60); /* back in time too: still in order */
    CHECK(t->lru[RWKVD_TIER_DISK].head == c[4] && t->lru[RWKVD_TIER_DISK].n == 1);
    rwkvd_chantab_set_tier(t, c[4], RWKVD_TIER_HOST);
    CHECK(t->lru[RWKVD_TIER_HOST].head == c[4] && c[4]->lnext == c[3]); /* 60 before 100 */
    rwkvd_chantab_set_tier(t, c[4], RWKVD_TIER_DISK);
    /* a removed channel leaves its tier's count at once, even while the job holds it */
    c[3]->host_state = malloc(16);
    c[3]->in_job = 1;
    rwkvd_chantab_remove(t, c[3]);
    CHECK(t->n_tier[RWKVD_TIER_HOST] == 0 && c[3]->dead && c[3]->host_state == NULL);
    CHECK(rwkvd_chantab_lru_idle(t, RWKVD_TIER_HOST, 0) == NULL);
    c[3]->in_job = 0;
    rwkvd_chantab_reap(t);
    CHECK(t->n_tier[RWKVD_TIER_RESIDENT] == 4 && t->n_tier[RWKVD_TIER_DISK] == 1);
    CHECK(strcmp(rwkvd_tier_name(RWKVD_TIER_HOST), "host") == 0);
    rwkvd_chantab_destroy(&t);
}

int main(void)
{
    rwkvd_chantab *t = rwkvd_chantab_new(3, 2, 6); /* slots 2..5 for channels and forks */
    CHECK(t != NULL && t->n_free == 4);
    rwkvd_channel *a = NULL, *b = NULL, *c = NULL, *x = NULL;
    CHECK(rwkvd_chantab_create(t, "a", 1, "sev", 3, 1000, &a) == 0 && a->slot >= 2 && a->reset_pending);
    CHECK(strcmp(a->profile, "sev") == 0 && a->held == -1 && a->created_unix_ms == 1000);
    CHECK(rwkvd_chantab_create(t, "b/c", 3, "", 3, 1000, &b) == 0);
    CHECK(rwkvd_chantab_find(t, "b/c", 3) == b && rwkvd_chantab_find(t, "b", 1) == NULL);
    CHECK(rwkvd_chantab_create(t, "c", 1, "", 3, 1000, &c) == 0);
    CHECK(rwkvd_chantab_create(t, "d", 1, "", 3, 1000, &x) == -EMLINK && x == NULL);
    int fork = rwkvd_chantab_slot_alloc(t);
    CHECK(fork >= 2 && rwkvd_chantab_slot_alloc(t) == -1);
    CHECK(rwkvd_chantab_create(t, "d", 1, "", 4, 1000, &x) == -ENOSPC); /* limit raised, no slot */
    rwkvd_chantab_slot_free(t, fork);

    /* queue cost: unapplied tokens, at least 1 per message; credit = the free input tokens */
    CHECK(rwkvd_channel_credit(a, 100) == 100);
    rwkvd_entry *e1 = entry(10), *e2 = entry(0);
    rwkvd_chantab_push(a, e1);
    rwkvd_chantab_push(a, e2);
    CHECK(a->q_messages == 2 && a->q_tokens == 11);
    CHECK(rwkvd_channel_credit(a, 100) == 89);
    CHECK(rwkvd_channel_credit(a, 11) == 0 && rwkvd_channel_credit(a, 5) == 0);
    /* a committing generation's tokens are queued in front but are not input: no credit used */
    rwkvd_entry *front = entry(3);
    front->committed = true;
    rwkvd_chantab_push_front(a, front);
    CHECK(a->head == front && a->q_tokens == 14 && a->q_committed == 3);
    CHECK(rwkvd_channel_input_tokens(a) == 11 && rwkvd_channel_credit(a, 100) == 89);
    rwkvd_chantab_pop(a);
    CHECK(a->head == e1 && a->q_tokens == 11 && a->q_committed == 0);
    CHECK(rwkvd_channel_credit(a, 100) == 89);
    CHECK(rwkvd_chantab_clear_queue(a) == 2 && a->q_tokens == 0 && !a->head && !a->tail);

    /* pairs outlive channels */
    rwkvd_pair *p = rwkvd_chantab_pair(t, "a", 1, "prod", 4, true);
    CHECK(p && p->acked == 0);
    p->acked = 7;
    CHECK(rwkvd_chantab_pair(t, "a", 1, "prod", 4, false) == p);
    CHECK(rwkvd_chantab_pair(t, "a", 1, "pro", 3, false) == NULL);
    CHECK(rwkvd_chantab_pair(t, "ap", 2, "rod", 3, false) == NULL);
    int a_slot = a->slot;
    rwkvd_chantab_push(a, entry(5));
    CHECK(rwkvd_chantab_remove(t, a) == 1);
    CHECK(rwkvd_chantab_find(t, "a", 1) == NULL && t->n == 2);
    CHECK(rwkvd_chantab_pair(t, "a", 1, "prod", 4, false)->acked == 7);
    CHECK(t->n_free == 2 && t->free_slots[t->n_free - 1] == a_slot);

    /* a channel referenced by the in-flight job is freed only by reap */
    b->in_job = 1;
    rwkvd_chantab_remove(t, b);
    CHECK(rwkvd_chantab_find(t, "b/c", 3) == NULL && b->dead && t->n == 2 && t->n_free == 2);
    rwkvd_channel *b2 = NULL;
    CHECK(rwkvd_chantab_create(t, "b/c", 3, "", 3, 2000, &b2) == 0 && b2 != b);
    CHECK(rwkvd_chantab_find(t, "b/c", 3) == b2);
    b->in_job = 0;
    rwkvd_chantab_reap(t);
    CHECK(t->n == 2 && t->n_free == 2);
    for (size_t i = 0; i < t->n; i++)
        CHECK(t->v[i]->index == i && !t->v[i]->dead);

    rwkvd_chantab_destroy(&t);
    rwkvd_chantab_destroy(&t);
    CHECK(t == NULL);
    test_tiers();
    test_lists();
    return test_finish("test_chantab");
}
