/* scheduler.c — see scheduler.h. */
#include "scheduler.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "durable.h"
#include "log.h"
#include "replica.h"
#include "publish.h"
#include "tier.h"

/* The compiled profile of ch's profile name, looked up by name only when the name or the
 * tasks (a reload) changed since the last lookup. */
const rwkvd_task_profile *rwkvd_sched_profile(const rwkvd_daemon *d, rwkvd_channel *ch)
{
    if (ch->prof_gen != d->tasks_gen) {
        ch->prof = rwkvd_tasks_find(d->tasks, ch->profile);
        ch->prof_gen = d->tasks_gen;
    }
    return ch->prof;
}

static void add_reset(rwkvd_job *j, rwkvd_channel *ch)
{
    ch->job_id = j->id;
    for (int i = 0; i < j->n_resets; i++)
        if (j->resets[i] == ch->slot)
            return;
    if (j->n_resets < j->cap_resets)
        j->resets[j->n_resets++] = ch->slot;
}

static void add_row(rwkvd_job *j, rwkvd_channel *ch, rwkvd_gen *g, int slot, int32_t token, float *logits)
{
    int i = j->n_items++;
    j->items[i] = (rwkv_step_item){.slot = slot, .token = token, .hidden = NULL, .logits = logits};
    j->item_ch[i] = ch;
    j->item_gen[i] = g;
    if (ch) {
        ch->in_job++;
        ch->job_id = j->id;
        j->n_input_tokens++;
    }
}

/* The channel's `n` tokens at run_tokens[n_run_tokens..] become one sequence run. */
static void add_run(rwkvd_job *j, rwkvd_channel *ch, int n)
{
    j->runs[j->n_runs++] = (rwkvd_seq_run){.slot = ch->slot, .tokens = j->run_tokens + j->n_run_tokens, .n = n,
                                           .ch = ch};
    j->n_run_tokens += n;
    j->n_input_tokens += (uint64_t)n;
    ch->in_job++;
    ch->job_id = j->id;
}

/* Add an output task; classifications get a fork slot from the pool (or, once per job,
 * the reserved one). NULL when no fork slot is available: the output waits a job. */
static rwkvd_head_task *add_task(rwkvd_daemon *d, rwkvd_head_kind kind, rwkvd_channel *ch,
                                 const rwkvd_task_profile *prof, const char *producer, uint64_t seq, rwkvd_gen *g)
{
    rwkvd_job *j = d->building;
    int fork = g ? g->slot : rwkvd_chantab_slot_alloc(d->tab);
    bool reserved = false;
    if (fork < 0) {
        if (j->reserved_used)
            return NULL;
        fork = d->slot_a;
        reserved = j->reserved_used = true;
    }
    int idx = j->n_tasks++;
    rwkvd_head_task *t = &j->tasks[idx];
    memset(t, 0, offsetof(rwkvd_head_task, probs));
    t->kind = kind;
    t->prof = prof;
    t->src_slot = ch->slot;
    t->held = ch->held;
    t->fork_slot = fork;
    t->fork_reserved = reserved;
    t->gen = g;
    t->logits = g ? g->logits : j->task_logits + (size_t)idx * (size_t)j->n_vocab;
    t->hidden = j->task_hidden + (size_t)idx * (size_t)j->n_embd;
    t->ch = ch;
    snprintf(t->producer, sizeof t->producer, "%s", seq ? producer : "");
    t->seq = seq;
    t->tokens_seen = ch->tokens_seen;
    ch->in_job++;
    ch->job_id = j->id;
    return t;
}

static void set_origin(rwkvd_channel *ch, const rwkvd_entry *e)
{
    memcpy(ch->last_producer, e->producer, sizeof ch->last_producer);
    ch->last_seq = e->seq;
}

/* An output trigger fired on e's last applied token (or at its end, for an event). The point
 * (out_lsn, out_ts) is the same when a replay of the input log gets there again: e's LSN,
 * or for committed tokens (not logged as such; a GEN's carry its LSN at replay, not live)
 * the LSN they belong to (at_lsn: the GEN's, or their own trigger point's). tokens_seen
 * rises along each entry's application, committed tokens inside it included. */
static void set_output(rwkvd_channel *ch, const rwkvd_entry *e)
{
    ch->output_pending = true;
    memcpy(ch->out_producer, e->producer, sizeof ch->out_producer);
    ch->out_seq = e->seq;
    ch->out_lsn = e->lsn ? e->lsn : e->at_lsn;
    ch->out_ts = ch->tokens_seen;
}

static void zero_channel(rwkvd_daemon *d, rwkvd_channel *ch)
{
    rwkvd_daemon_cancel_gen(d, ch);
    add_reset(d->building, ch);
    ch->reset_pending = false;
    ch->held = -1;
    ch->tokens_seen = 0;
    ch->tokens_since_output = 0;
    ch->output_pending = false;
}

/* A standby runs no generation of a GEN: one that does not commit changes no state, and the
 * tokens of one that commits come as the primary's commit record (for an output trigger's,
 * see the pending output in sched_channel). Whether it commits, as
 * rwkvd_gen_new decides it: the request's value, else a continue profile's, else not. */
static bool standby_gen_commits(const rwkvd_daemon *d, rwkvd_channel *ch, const rwkvd_entry *e)
{
    if (e->gen && (e->gen->present & RWKVP_GEN_HAS_COMMIT))
        return e->gen->commit;
    const rwkvd_task_profile *prof = rwkvd_sched_profile(d, ch);
    return prof && prof->cfg->kind == RWKVD_TASK_CONTINUE && prof->cfg->generate.commit;
}

/* A slot for a generation of ch: a free one, or one freed by moving another channel out of
 * compute memory (tier.c). -EAGAIN: none now, the generation waits (its GEN stays queued,
 * its output pending) until a job or a demotion frees one, as input waits for a promotion;
 * failing it would change what its channel commits. -ENOSPC: the pool cannot hold the
 * channel and a generation at once (model.state_slots 3), so it never could. */
static int gen_slot(rwkvd_daemon *d, rwkvd_channel *ch)
{
    int slot = rwkvd_chantab_slot_alloc(d->tab);
    if (slot < 0 && rwkvd_tier_gen_room(d, ch) == 0)
        slot = rwkvd_chantab_slot_alloc(d->tab);
    if (slot >= 0)
        return slot;
    return d->cfg->model.state_slots - 2 < 2 ? -ENOSPC : -EAGAIN;
}

/* Start a generation for ch (from a GEN entry, or from an output trigger when gp is NULL) in
 * `slot` (gen_slot's; -ENOSPC: it ends with 507). Returns true if a task was added. */
static bool start_gen(rwkvd_daemon *d, rwkvd_channel *ch, const rwkvp_gen_params *gp, const char *producer,
                      uint64_t seq, int slot)
{
    /* only a continue profile shapes a generation (its suffix and defaults); a GEN on a channel
     * with another profile samples right after the channel's input with the request's values */
    const rwkvd_task_profile *prof = rwkvd_sched_profile(d, ch);
    if (prof && prof->cfg->kind != RWKVD_TASK_CONTINUE)
        prof = NULL;
    rwkvd_origin o = {producer, seq, ch->tokens_seen};
    char err[256] = "";
    int n_vocab = rwkv_model_dims(d->model)->n_vocab;
    uint64_t seed = 0x9e3779b97f4a7c15ull * ++d->gen_seed_counter;
    seed &= RWKVP_SEED_MAX;
    rwkvd_gen *g = rwkvd_gen_new(prof, gp, d->tok, n_vocab, seed, err, sizeof err);
    if (!g && slot >= 0) {
        rwkvd_chantab_slot_free(d->tab, slot);
        slot = -1;
    }
    if (!g || slot < 0) {
        int code = g ? 507 : 500;
        char text[320];
        snprintf(text, sizeof text, "%s", g ? "no free state slot for a generation (model.state_slots)" : err);
        rwkvd_publish_error(d, ch, &o, code, text);
        rwkvp_end end = {.reason = RWKVP_END_ERROR, .text = {"", 0}, .seed = g ? g->seed : 0};
        rwkvd_publish_end(d, ch, &o, &end);
        rwkvd_gen_destroy(&g);
        d->m.outputs_failed++;
        return false;
    }
    g->slot = slot;
    g->ch = ch;
    snprintf(g->producer, sizeof g->producer, "%s", seq ? producer : "");
    g->seq = seq;
    g->tokens_seen = ch->tokens_seen;
    g->in_job = true;
    ch->gen = g;
    rwkvd_chantab_gens_add(ch);
    d->n_gens++;
    add_task(d, RWKVD_HEAD_GEN_START, ch, prof, producer, seq, g);
    return true;
}

/* A generation needs a slot of its own; while a job is in flight none may be made (a
 * demotion uses the engine): without a free one the channel waits for an idle build. */
static bool gen_slot_wait(rwkvd_daemon *d, bool pipelined)
{
    if (!pipelined || d->tab->n_free > 0)
        return false;
    d->want_idle = true;
    return true;
}

/* Schedule one channel: apply its queue in order, feeding at most `quota` input tokens to
 * its slot in this job (one: a single-token row; more: a sequence run; all of them go to the
 * engine in the job's one call), and add its pending output, after which the slot takes
 * nothing more in this job. Returns the number of tokens fed, or -1 when a CLOSE dropped
 * the channel (ch may be freed). The tokens are collected at run_tokens[n_run_tokens..],
 * which has room for quota of them (the caller keeps the job's input tokens within
 * max_batch). `pipelined`: a job is in flight, so nothing here may use the engine. */
static int sched_channel(rwkvd_daemon *d, rwkvd_channel *ch, int quota, bool pipelined)
{
    rwkvd_job *j = d->building;
    bool task = false;
    int fed = 0;
    int32_t *run = j->run_tokens + j->n_run_tokens;
    if (ch->reset_pending) {
        add_reset(j, ch);
        ch->reset_pending = false;
    }
    for (int guard = 0; guard < 100000; guard++) {
        if (ch->output_pending) {
            if (task || j->n_tasks >= j->cap_tasks)
                break;
            const rwkvd_task_profile *prof = rwkvd_sched_profile(d, ch);
            rwkvd_task_kind kind = prof ? prof->cfg->kind : RWKVD_TASK_NONE;
            if (kind == RWKVD_TASK_CONTINUE) {
                if (ch->gen)
                    break; /* one generation at a time: wait for it */
                /* a committing generation logged for this trigger point is applied, not
                 * sampled again (recovery, or the primary's record on a standby, which waits
                 * for it: only the primary samples one that commits) */
                if (ch->out_commits && rwkvd_durable_take_output(d, ch)) {
                    ch->output_pending = false;
                    continue;
                }
                if (rwkvd_replica_standby(d) && prof->cfg->generate.commit)
                    break;
                if (gen_slot_wait(d, pipelined))
                    break;
                int slot = gen_slot(d, ch);
                if (slot == -EAGAIN)
                    break; /* the output stays pending */
                ch->output_pending = false;
                task = start_gen(d, ch, NULL, ch->out_producer, ch->out_seq, slot);
                if (task) {
                    ch->gen->triggered = true;
                    ch->gen->trig_lsn = ch->out_lsn;
                    ch->gen->trig_ts = ch->out_ts;
                    break;
                }
                if (d->dur && prof->cfg->generate.commit) /* it failed (507): so does a replay */
                    rwkvd_durable_log_output(d, ch, ch->out_lsn, ch->out_ts, NULL);
                continue;
            }
            if (kind == RWKVD_TASK_CLASSIFY_LABELS || kind == RWKVD_TASK_CLASSIFY_LINEAR) {
                if (!add_task(d, kind == RWKVD_TASK_CLASSIFY_LABELS ? RWKVD_HEAD_CLASSIFY_LABELS
                                                                    : RWKVD_HEAD_CLASSIFY_LINEAR,
                              ch, prof, ch->out_producer, ch->out_seq, NULL))
                    break; /* no fork slot in this job: the output stays pending */
                ch->output_pending = false;
                task = true;
                break;
            }
            ch->output_pending = false;
            continue;
        }
        if (ch->gen && ch->gen->commit)
            break; /* later messages wait for a committing generation */
        rwkvd_entry *e = ch->head;
        if (!e)
            break;
        switch (e->op) {
        case RWKVP_OP_RESET:
            if (fed > 0)
                goto out; /* the zeroing runs before the job's rows */
            zero_channel(d, ch);
            set_origin(ch, e);
            rwkvd_chantab_pop(ch);
            continue;
        case RWKVP_OP_TASK:
            rwkvd_channel_set_profile(ch, e->arg);
            ch->tokens_since_output = 0;
            set_origin(ch, e);
            rwkvd_chantab_pop(ch);
            continue;
        case RWKVP_OP_CLOSE:
            if (fed > 0)
                goto out;
            if (!e->next) {
                rwkvd_daemon_drop_channel(d, ch);
                return -1;
            }
            zero_channel(d, ch);
            rwkvd_channel_set_profile(ch, d->cfg->tasks.default_profile);
            ch->created_unix_ms = rwkvd_unix_ms();
            ch->last_producer[0] = '\0';
            ch->last_seq = 0;
            rwkvd_chantab_pop(ch);
            continue;
        case RWKVP_OP_GEN: /* after this job's tokens: the fork copies the slot after them */
            if (rwkvd_replica_standby(d)) { /* the primary generates (replica.h) */
                if (!standby_gen_commits(d, ch, e)) {
                    set_origin(ch, e);
                    rwkvd_chantab_pop(ch);
                    continue;
                }
                goto out; /* until the primary's commit record replaces it with the tokens */
            }
            if (ch->gen || j->n_tasks >= j->cap_tasks || gen_slot_wait(d, pipelined))
                goto out;
            {
                int slot = gen_slot(d, ch);
                if (slot == -EAGAIN)
                    goto out; /* the GEN stays queued */
                char producer[RWKVP_NAME_MAX + 1];
                memcpy(producer, e->producer, sizeof producer);
                uint64_t seq = e->seq, lsn = e->lsn;
                rwkvp_gen_params *gp = e->gen;
                e->gen = NULL;
                set_origin(ch, e);
                rwkvd_chantab_pop(ch);
                task = start_gen(d, ch, gp, producer, seq, slot);
                if (task)
                    ch->gen->gen_lsn = lsn;
                free(gp);
            }
            if (task)
                goto out;
            continue;
        case RWKVP_OP_TEXT:
        case RWKVP_OP_TOKENS:
            if (e->pos < e->n_tokens) {
                if (fed >= quota)
                    goto out;
                uint64_t before = rwkvd_entry_cost(e);
                int32_t t = e->tokens[e->pos++];
                uint64_t after = rwkvd_entry_cost(e);
                ch->q_tokens -= before - after;
                if (e->committed)
                    ch->q_committed -= before - after;
                ch->tab->q_tokens_total -= before - after;
                if (ch->held >= 0)
                    run[fed++] = ch->held;
                ch->held = t;
                ch->tokens_seen++;
                /* counted as tokens_seen is, the held token included */
                d->m.tokens_total++;
                d->m.input_tokens_total++;
                ch->tokens_since_output++;
                const rwkvd_task_profile *prof = rwkvd_sched_profile(d, ch);
                if (prof && prof->cfg->trigger == RWKVD_TRIGGER_TOKENS &&
                    ch->tokens_since_output >= prof->cfg->every_n_tokens && prof->cfg->kind != RWKVD_TASK_NONE) {
                    ch->tokens_since_output = 0;
                    set_output(ch, e);
                }
            }
            if (e->pos >= e->n_tokens) {
                set_origin(ch, e);
                const rwkvd_task_profile *prof = rwkvd_sched_profile(d, ch);
                if (e->event && prof && prof->cfg->trigger == RWKVD_TRIGGER_EVENT &&
                    prof->cfg->kind != RWKVD_TASK_NONE)
                    set_output(ch, e);
                rwkvd_chantab_pop(ch);
            }
            continue; /* an output this made pending is added next, in this job */
        default:
            rwkvd_chantab_pop(ch);
            continue;
        }
    }
out:
    if (fed == 1)
        add_row(j, ch, NULL, ch->slot, run[0], NULL);
    else if (fed > 1)
        add_run(j, ch, fed);
    return fed;
}

int rwkvd_sched_build(rwkvd_daemon *d, bool pipelined)
{
    rwkvd_job *j = &d->jobs[d->build_idx];
    d->building = j;
    rwkvd_job_clear(j);
    j->id = ++d->tick;
    rwkvd_chantab *t = d->tab;
    uint64_t now = rwkvd_now_ns();
    if (!pipelined)
        rwkvd_tier_tick(d, now); /* no job in flight: demote past residency bounds first */
    /* generations first: each running one not in flight advances by one token */
    for (rwkvd_channel *ch = t->gens.head; ch && j->n_items < j->cap_items; ch = ch->gnext) {
        rwkvd_gen *g = ch->gen;
        if (g && g->started && !g->cancel && !g->in_job && g->feed_token >= 0) {
            add_row(j, NULL, g, g->slot, g->feed_token, g->logits);
            g->in_job = true;
            ch->in_job++;
        }
    }
    /* Input tokens per job: at most max_batch, shared among the busy channels (the ready
     * list: input, a pending output or a pending reset): visiting them in list order, each
     * may feed up to ceil(rows left / busy channels not yet visited), at least one. So with
     * B busy channels each gets about max_batch / B tokens (one each once B >= max_batch),
     * a flooding channel never more than its share of what is left, and a share another
     * channel leaves unused goes to the channels after it. A channel given rows moves to the
     * waiting list until its job is collected and then to the end of the ready list, so
     * the list turns round robin. All the rows, single tokens and runs of any number of
     * channels, go to the engine in one call that reads the weights once per max_batch rows
     * (worker.c). The walk touches busy channels only: idle ones are on no list. */
    int max_rows = (int)d->cfg->model.max_batch;
    int rows = 0;
    size_t n_visit = t->ready.n;
    int n_busy = (int)n_visit;
    rwkvd_channel *next;
    for (rwkvd_channel *ch = t->ready.head; ch && n_visit > 0 && rows < max_rows && j->n_items < j->cap_items;
         ch = next, n_visit--) {
        next = ch->rnext;
        if (!rwkvd_channel_has_work(ch)) {
            rwkvd_chantab_list_move(ch, RWKVD_LIST_NONE);
            n_busy--;
            continue;
        }
        if (ch->job_id > d->jobs_collected) { /* its rows are in flight: after that job */
            rwkvd_chantab_list_move(ch, RWKVD_LIST_WAITING);
            n_busy--;
            continue;
        }
        /* a host- or disk-tier channel with work comes back before it is scheduled, which
         * needs the engine: only while no job is in flight; without a slot it waits */
        if (ch->tier != RWKVD_TIER_RESIDENT) {
            if (pipelined) {
                d->want_idle = true;
                continue;
            }
            if (rwkvd_tier_promote(d, ch) != 0)
                continue;
        }
        rwkvd_chantab_touch(ch, now);
        int left = n_busy > 1 ? n_busy : 1;
        int quota = (max_rows - rows + left - 1) / left;
        if (quota < 1)
            quota = 1;
        if (n_busy > 0)
            n_busy--;
        int fed = sched_channel(d, ch, quota, pipelined);
        if (fed < 0)
            continue; /* dropped */
        rows += fed;
        if (ch->job_id == j->id)
            rwkvd_chantab_list_move(ch, rwkvd_channel_has_work(ch) ? RWKVD_LIST_WAITING : RWKVD_LIST_NONE);
        else if (!rwkvd_channel_has_work(ch))
            rwkvd_chantab_list_move(ch, RWKVD_LIST_NONE);
    }
    return j->n_resets + j->n_items + j->n_runs + j->n_tasks;
}

void rwkvd_sched_submitted(rwkvd_daemon *d)
{
    d->build_idx = (d->build_idx + 1) % RWKVD_JOBS_IN_FLIGHT;
    d->building = NULL;
}

void rwkvd_sched_collected(rwkvd_daemon *d, const rwkvd_job *j)
{
    if (j->id > d->jobs_collected)
        d->jobs_collected = j->id;
    rwkvd_chantab *t = d->tab;
    rwkvd_channel *next;
    for (rwkvd_channel *ch = t->waiting.head; ch; ch = next) {
        next = ch->rnext;
        if (ch->job_id <= d->jobs_collected)
            rwkvd_chantab_list_move(ch, rwkvd_channel_has_work(ch) ? RWKVD_LIST_READY : RWKVD_LIST_NONE);
    }
}
