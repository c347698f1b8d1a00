/* chantab.h — the channel table: every channel's queue, counters and state slot, the
 * (channel, producer) sequence pairs, and the engine's slot pool.
 *
 * What it is: plain data owned by the loop thread. A channel is created by the first
 * accepted message that names it; it holds a bounded FIFO of accepted messages (entries),
 * a slot of the engine's state pool, its task profile name and its counters. Pairs hold
 * each (channel, producer)'s highest accepted seq and pause state; they outlive the
 * channel (PROTOCOL.md §6.2), so CLOSE/DROP keep them.
 * What it is not: the scheduler (scheduler.c) or the engine: nothing here calls the engine.
 * The compute worker never reads this table; jobs carry copies of what it needs.
 *
 * Costs grow with work, not with population: besides the hash and the dense array (for
 * listings), the table keeps intrusive lists that the scheduler walks instead of the array:
 * `ready` (channels that may have work: a queued entry, a pending output or reset; a
 * channel with work is always on `ready` or `waiting`, one without may linger until the
 * scheduler visits it), `waiting` (channels with work whose rows are in a job still in
 * flight; the scheduler moves them back when that job is collected), `gens` (channels with
 * a running generation) and `dead` (removed while a job referenced them, until reaped).
 * Each tier also keeps its live channels in one list ordered by active_ns, least recent
 * first (`lru`): rwkvd_chantab_touch moves a channel to the tail, a tier change inserts it
 * in order, so the residency policy (tier.c) finds its least recently active idle channel,
 * and the idle_ttl expiries, from the head without scanning the table.
 * Pairs are chained a second time by channel name, so a channel's pairs are found without
 * walking every pair.
 *
 * Key invariants: q_tokens is the sum of the unapplied tokens of the queued entries
 * (each entry costing at least 1); its producer input part (q_tokens - q_committed) is
 * never above the configured limit when an entry was accepted; `held` is the last input token, which the channel's slot has NOT seen yet
 * (it is fed with the next token, or on a fork when an output needs logits after it), so
 * the slot always holds every input token but the held one.
 */
#ifndef RWKVD_CHANTAB_H
#define RWKVD_CHANTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "outring.h"
#include "rwkvp.h"
#include "rwkvp_json.h"

typedef struct rwkvd_gen rwkvd_gen;
typedef struct rwkvd_task_profile rwkvd_task_profile;
typedef struct rwkvd_chantab rwkvd_chantab;

/* The scheduler list a channel is on (rwkvd_chantab.ready / waiting). */
typedef enum { RWKVD_LIST_NONE = 0, RWKVD_LIST_READY, RWKVD_LIST_WAITING } rwkvd_list_id;

/* Where a channel's state lives (PROTOCOL.md §10.3 `tier`): in an engine slot (compute
 * memory), exported into a host-memory buffer (host_state), or only in its snapshot (disk).
 * A non-resident channel may hold a slot reserved for its promotion (not yet imported). */
typedef enum { RWKVD_TIER_RESIDENT = 0, RWKVD_TIER_HOST, RWKVD_TIER_DISK, RWKVD_N_TIERS } rwkvd_tier;

const char *rwkvd_tier_name(rwkvd_tier t);

/* One accepted, not yet (fully) applied message. */
typedef struct rwkvd_entry {
    struct rwkvd_entry *next;
    rwkvp_op op;                         /* TEXT TOKENS RESET TASK GEN CLOSE */
    uint64_t seq;
    char producer[RWKVP_NAME_MAX + 1];
    char arg[RWKVP_NAME_MAX + 1];        /* TASK: profile name */
    rwkvp_gen_params *gen;               /* GEN: parsed parameters (owned) */
    bool event;                          /* TEXT: triggers event outputs when applied */
    bool committed;                      /* TOKENS made by a committing generation */
    uint32_t n_tokens;                   /* tokens in tokens[] */
    uint32_t pos;                        /* next token to apply */
    uint64_t lsn;                        /* its input-log record, 0 = not logged */
    uint64_t at_lsn;                     /* committed: the logged entry whose application
                                          * they are part of (scheduler.c set_output) */
    int32_t tokens[];                    /* (n_tokens) */
} rwkvd_entry;

/* Free an entry (NULL-safe). */
void rwkvd_entry_free(rwkvd_entry *e);
/* Cost of an entry against limits.max_queue_tokens: its unapplied tokens, at least 1. */
uint64_t rwkvd_entry_cost(const rwkvd_entry *e);

/* Recovery (durable.c): the logged tokens of a committing generation that an output trigger
 * started (FORMATS.md §2), waiting for the replay to reach that trigger point. */
typedef struct rwkvd_out_commit {
    struct rwkvd_out_commit *next;
    uint64_t lsn, tokens_seen;  /* the trigger point (rwkvd_channel.out_lsn, out_ts) */
    uint64_t rec_lsn;           /* the record's own LSN */
    rwkvd_entry *e;             /* the tokens as a committed entry, ready to queue */
} rwkvd_out_commit;

typedef struct rwkvd_channel {
    char name[RWKVP_CHANNEL_MAX + 1];
    size_t name_len;
    uint64_t uid;                 /* unique per creation, for logs and job bookkeeping */
    int slot;                     /* engine state slot; -1 while not resident and none reserved */
    rwkvd_tier tier;              /* set through rwkvd_chantab_set_tier (it keeps the counts);
                                   * a slot held while not resident is reserved for the
                                   * promotion, not yet imported */
    void *host_state;             /* tier host: the exported state (malloc'd), else NULL */
    bool restore_failed;          /* the restore failed once (logged once; retried) */
    bool fresh;                   /* tier disk with no snapshot: a zero state (a channel created
                                   * while every slot was taken, durable.c); its restore resets
                                   * a slot instead of loading a file */
    uint64_t active_ns;           /* monotonic time of its last input or job: LRU and idle_ttl */
    int32_t held;                 /* last input token not yet fed to slot, -1 none */
    bool reset_pending;           /* slot must be zeroed before its next use (next job) */
    char profile[RWKVP_NAME_MAX + 1]; /* "" = none; set through rwkvd_channel_set_profile */
    const rwkvd_task_profile *prof; /* the compiled profile of that name, valid while
                                     * prof_gen equals the daemon's tasks generation
                                     * (scheduler.c binds it; a reload or a new name
                                     * makes it stale) */
    uint64_t prof_gen;
    uint64_t tokens_seen;         /* tokens fed since creation or reset (held one included) */
    uint64_t tokens_since_output; /* for trigger: tokens */
    /* queue */
    rwkvd_entry *head, *tail;
    uint32_t q_messages;
    uint64_t q_tokens;            /* sum of rwkvd_entry_cost (a change also goes to the
                                   * table's q_tokens_total) */
    uint64_t q_committed;         /* the part of q_tokens held by entries a committing
                                   * generation made: not producer input, so not limited
                                   * by max_queue_tokens nor counted in the credit */
    /* the input the next output follows */
    char last_producer[RWKVP_NAME_MAX + 1];
    uint64_t last_seq;
    /* pending event/tokens output (classification), with its origin */
    bool output_pending;
    char out_producer[RWKVP_NAME_MAX + 1];
    uint64_t out_seq;
    /* where the trigger fired: the LSN of the entry being applied (for committed tokens their
     * at_lsn) and tokens_seen; the same point again at replay, so it names the log record of
     * the generation it starts (durable.c) */
    uint64_t out_lsn, out_ts;
    rwkvd_out_commit *out_commits; /* recovered such records not yet reached, in log order */
    /* output sequence (PROTOCOL.md §9.7): the oseq of the last publication numbered for the
     * channel (0: none yet; durable through its snapshot, durable.c), and the retained
     * recent publications (empty in tier disk: its snapshot holds them) */
    uint64_t oseq;
    rwkvd_outring outs;
    uint64_t recover_lsn;         /* recovery: the last input-log record it queued to apply
                                   * again; 0 once applied with its outputs (control.c) */
    rwkvd_gen *gen;               /* running generation, or NULL */
    bool dead;                    /* dropped/closed while the in-flight job used it */
    bool damaged;                 /* recovered without a usable snapshot (durable.c): refused
                                   * until control RESET, DROP or IMPORT */
    int in_job;                   /* references from the in-flight job */
    int64_t created_unix_ms, last_input_unix_ms;
    size_t index;                 /* position in rwkvd_chantab.v */
    uint64_t job_id;              /* the last job holding its rows, output or reset (scheduler.c) */
    struct rwkvd_channel *hnext;  /* hash chain */
    rwkvd_chantab *tab;           /* the table it belongs to */
    /* intrusive lists (see the top of this file) */
    struct rwkvd_channel *rnext, *rprev; /* ready or waiting */
    rwkvd_list_id list;
    struct rwkvd_channel *gnext, *gprev; /* gens */
    bool on_gens;
    struct rwkvd_channel *dnext;  /* dead */
    struct rwkvd_channel *lnext, *lprev; /* its tier's lru list (live channels only) */
    /* durable state (durable.c); LSNs of the input log, 0 = none */
    uint64_t applied_lsn;         /* highest LSN of an entry popped (applied) */
    uint64_t logged_lsn;          /* highest LSN logged for this channel */
    uint64_t snap_lsn, snap_prev_lsn; /* applied_lsn of the two snapshot generations */
    bool snap_written;            /* a snapshot was written in this run */
    uint64_t partial_lsn;         /* recovery: the entry the snapshot had partly applied */
    uint32_t partial_pos;         /* ... and how many of its tokens */
    uint64_t snap_next_lsn;       /* recovery: the log's next LSN when the snapshot was taken, 0 unknown */
    uint32_t snap_jobs;           /* its snapshot writes queued on the I/O thread (bio.c) */
    uint32_t snap_round;          /* the last background snapshot round that took it */
    void *evict_job;              /* tier disk while its eviction is being written: that write,
                                   * whose image is its state until it is done (durable.c) */
} rwkvd_channel;

typedef struct rwkvd_pair {
    struct rwkvd_pair *hnext;
    struct rwkvd_pair *cnext; /* chain of the pairs of one channel name (cbuckets) */
    uint64_t acked;
    uint64_t paused_at;  /* 0 = not paused; else the seq turned away with a retryable code */
    int paused_code;
    uint64_t snap_seq;   /* recovery: the seq its channel's snapshot had applied */
    bool credit_wanted;  /* answered 429 or SYNC: send CREDIT when the queue drains */
    uint64_t credit_at;  /* ... to this many input tokens or fewer */
    void *credit_env;    /* routing identity for that CREDIT (malloc'd), or NULL */
    size_t credit_env_len;
    bool credit_delim;   /* the client sent an empty delimiter frame */
    uint16_t channel_len, producer_len;
    char key[];          /* channel '\0' producer '\0' */
} rwkvd_pair;

typedef struct {
    rwkvd_channel *head, *tail;
    size_t n;
} rwkvd_chlist;

struct rwkvd_chantab {
    rwkvd_channel **v;   /* (n) channels in creation order (swap-removed), dead ones included */
    size_t n, cap;
    size_t n_live;       /* not dead */
    uint64_t q_tokens_total, q_messages_total; /* sums of the channels' q_tokens, q_messages */
    rwkvd_chlist ready, waiting, gens; /* see the top of this file */
    rwkvd_chlist lru[RWKVD_N_TIERS];   /* per tier, by active_ns, least recent first */
    rwkvd_channel *dead; /* removed while referenced, until reaped (dnext) */
    rwkvd_channel **buckets;
    size_t n_buckets;
    rwkvd_pair **pbuckets;
    rwkvd_pair **cbuckets; /* (n_pbuckets) pairs by channel name alone */
    size_t n_pbuckets, n_pairs;
    /* slot pool */
    int *free_slots;     /* stack */
    int n_free, n_slots;
    uint64_t next_uid;
    uint32_t n_tier[RWKVD_N_TIERS]; /* live (not dead) channels per tier */
    /* tier moves through rwkvd_chantab_set_tier: [from] up, [from][to] down */
    uint64_t promotions[RWKVD_N_TIERS], demotions[RWKVD_N_TIERS][RWKVD_N_TIERS];
    uint64_t tier_wake_ns;          /* tier.c: next idle_ttl expiry of a host channel, 0 = none */
};

/* A table for up to max_channels channels over a pool of slots [first_slot, n_slots)
 * (slots below first_slot are reserved by the caller). NULL on -ENOMEM. */
rwkvd_chantab *rwkvd_chantab_new(uint32_t max_channels, int first_slot, int n_slots);
/* Frees every channel, entry and pair; does not touch gens (the caller ends them first). */
void rwkvd_chantab_destroy(rwkvd_chantab **t);

rwkvd_channel *rwkvd_chantab_find(const rwkvd_chantab *t, const void *name, size_t len);
/* Create a channel (name already validated) with a fresh slot (reset_pending set) and the
 * given default profile. -EMLINK when max_channels are in use, -ENOSPC when no slot is
 * free, -ENOMEM. */
int rwkvd_chantab_create(rwkvd_chantab *t, const void *name, size_t len, const char *profile,
                         uint32_t max_channels, int64_t now_unix_ms, rwkvd_channel **out);
/* The same without a slot: the channel starts on disk (tier disk, slot -1, no reset
 * pending); its state is its snapshot, which the caller (recovery) must have. -EMLINK, -ENOMEM. */
int rwkvd_chantab_create_evicted(rwkvd_chantab *t, const void *name, size_t len, const char *profile,
                                 uint32_t max_channels, int64_t now_unix_ms, rwkvd_channel **out);
/* Remove a channel from the table (lookups stop finding it) and discard its queue; returns
 * the number of queued messages discarded. Frees it and its slot unless in_job > 0, in
 * which case it is marked dead and rwkvd_chantab_reap() frees it later. ch->gen must be
 * NULL (end the generation first). */
uint32_t rwkvd_chantab_remove(rwkvd_chantab *t, rwkvd_channel *ch);
/* Free channels marked dead whose in_job dropped to 0 (called after a job completes). */
void rwkvd_chantab_reap(rwkvd_chantab *t);

/* Queue operations. push appends; push_front inserts at the head (committed tokens); both
 * put the channel on the ready list unless it is on a scheduler list already. */
void rwkvd_chantab_push(rwkvd_channel *ch, rwkvd_entry *e);
void rwkvd_chantab_push_front(rwkvd_channel *ch, rwkvd_entry *e);
/* Pop and free the head entry (it counts as applied: applied_lsn takes its lsn). */
void rwkvd_chantab_pop(rwkvd_channel *ch);
/* Free ch->out_commits. */
void rwkvd_chantab_clear_out_commits(rwkvd_channel *ch);
/* Discard every queued entry; returns how many there were. */
uint32_t rwkvd_chantab_clear_queue(rwkvd_channel *ch);

/* Put ch on the ready list (end) unless it is on the ready or waiting list or dead: call it
 * whenever a channel gets work (a pending reset or output) other than by a push. */
void rwkvd_chantab_mark_ready(rwkvd_channel *ch);
/* Move ch to the end of list `to` (NONE: off both lists). */
void rwkvd_chantab_list_move(rwkvd_channel *ch, rwkvd_list_id to);
/* Whether ch has work for the scheduler: a queued entry, a pending output or reset. */
bool rwkvd_channel_has_work(const rwkvd_channel *ch);
/* Add ch to / remove it from the list of channels with a running generation. */
void rwkvd_chantab_gens_add(rwkvd_channel *ch);
void rwkvd_chantab_gens_remove(rwkvd_channel *ch);
/* Set the channel's profile name; its compiled profile is looked up again on next use. */
void rwkvd_channel_set_profile(rwkvd_channel *ch, const char *name);

/* Producer input queued and not yet applied, in tokens: q_tokens less the committed
 * generations' tokens (PROTOCOL.md §8.1). */
uint64_t rwkvd_channel_input_tokens(const rwkvd_channel *ch);
/* The credit (PROTOCOL.md §8.1): the input tokens the channel's queue still takes,
 * max_queue_tokens less rwkvd_channel_input_tokens; 0 when full. */
uint64_t rwkvd_channel_credit(const rwkvd_channel *ch, uint64_t max_queue_tokens);

/* Move ch to another tier, keeping n_tier. Only the bookkeeping: the caller moves the state. */
void rwkvd_chantab_set_tier(rwkvd_chantab *t, rwkvd_channel *ch, rwkvd_tier tier);
/* Whether ch may change tier now: alive, nothing queued, no pending output or generation,
 * not referenced by the in-flight job. */
bool rwkvd_channel_idle(const rwkvd_channel *ch);
/* The least recently active idle channel of `tier` (smallest active_ns, ties: lowest uid),
 * or NULL. With older_than_ns > 0 only channels with active_ns <= older_than_ns count. */
/* Set ch's active_ns to now_ns (monotonic, not before any earlier touch) and move it to
 * the tail of its tier's lru list. */
void rwkvd_chantab_touch(rwkvd_channel *ch, uint64_t now_ns);
rwkvd_channel *rwkvd_chantab_lru_idle(const rwkvd_chantab *t, rwkvd_tier tier, uint64_t older_than_ns);

/* Slots for generations and scratch: -1 when none is free. */
int rwkvd_chantab_slot_alloc(rwkvd_chantab *t);
void rwkvd_chantab_slot_free(rwkvd_chantab *t, int slot);

/* The pair for (channel, producer); created with acked 0 when create is true (NULL on
 * -ENOMEM or when absent and !create). */
rwkvd_pair *rwkvd_chantab_pair(rwkvd_chantab *t, const void *channel, size_t channel_len,
                               const void *producer, size_t producer_len, bool create);
/* Calls fn for each pair of the channel (for INFO). */
void rwkvd_chantab_each_pair(const rwkvd_chantab *t, const char *channel, size_t channel_len,
                             void (*fn)(const rwkvd_pair *p, void *user), void *user);

#endif
