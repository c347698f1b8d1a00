/* loop.c — see loop.h. The daemon's lifetime (init, run, fini), the loop thread's poll
 * cycle and timers, and the completion side of jobs: publishing classifications, advancing
 * generations, ending them (and committing their tokens). */
#include "loop.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "control.h"
#include "durable.h"
#include "health.h"
#include "httpmetrics.h"
#include "ingest.h"
#include "log.h"
#include "notify.h"
#include "publish.h"
#include "replica.h"
#include "scheduler.h"
#include "security.h"
#include "tier.h"

#define STOP_GRACE_NS (10ull * 1000000000ull) /* most time SIGTERM waits for a running step */

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t rwkvd_loop_cpu_ns(const rwkvd_daemon *d) { return thread_cpu_ns() - d->m.loop_cpu0_ns; }

int64_t rwkvd_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const int result_codes[RWKVD_N_RESULTS] = {0,   1,   400, 403, 404, 405, 409, 413, 415,
                                                  422, 423, 425, 429, 500, 501, 503, 505, 507};

int rwkvd_result_index(int code)
{
    for (int i = 0; i < RWKVD_N_RESULTS; i++)
        if (result_codes[i] == code)
            return i;
    return -1;
}

int rwkvd_result_code(int index) { return index >= 0 && index < RWKVD_N_RESULTS ? result_codes[index] : 0; }

/* ---- generations: completion side --------------------------------------------------- */

static void gen_end(rwkvd_daemon *d, rwkvd_gen *g, rwkvp_end_reason reason, const char *stop)
{
    rwkvd_channel *ch = g->ch;
    rwkvd_origin o = {g->producer, g->seq, g->tokens_seen};
    bool commit = g->commit && !ch->dead && reason != RWKVP_END_CANCELLED && reason != RWKVP_END_ERROR &&
                  g->n_sampled > 0;
    rwkvp_end end = {.reason = reason,
                     .n_tokens = g->n_sampled,
                     .text = {g->text, g->published},
                     .stop = {stop ? stop : "", stop ? strlen(stop) : 0},
                     .seed = g->seed & RWKVP_SEED_MAX,
                     .committed = commit};
    rwkvd_publish_end(d, ch, &o, &end);
    rwkvd_entry *e = NULL;
    if (commit) {
        e = calloc(1, sizeof *e + g->n_sampled * sizeof(int32_t));
        if (e) {
            e->op = RWKVP_OP_TOKENS;
            e->seq = g->seq;
            memcpy(e->producer, g->producer, sizeof e->producer);
            e->committed = true;
            e->at_lsn = g->triggered ? g->trig_lsn : g->gen_lsn;
            e->n_tokens = g->n_sampled;
            memcpy(e->tokens, g->sampled, g->n_sampled * sizeof(int32_t));
            rwkvd_chantab_push_front(ch, e);
            /* replay puts the tokens in place of their GEN record */
            if (d->dur && g->gen_lsn && g->gen_lsn == ch->applied_lsn)
                rwkvd_durable_log_commit(d, ch, e);
        } else {
            rwkvd_log(LOG_ERR, "channel %s: out of memory committing a generation", ch->name);
        }
    }
    /* an output's: replay applies the tokens when it reaches the trigger point again, or
     * nothing (e NULL) when the generation failed or sampled nothing, so it does not run
     * again there (a cancel comes with a snapshot or a standby's resync, or drops the channel) */
    if (d->dur && g->triggered && g->commit && !ch->dead && reason != RWKVP_END_CANCELLED)
        rwkvd_durable_log_output(d, ch, g->trig_lsn, g->trig_ts, e);
    rwkvd_chantab_slot_free(d->tab, g->slot);
    ch->gen = NULL;
    rwkvd_chantab_gens_remove(ch);
    d->n_gens--;
    rwkvd_gen_destroy(&g);
}

/* The worker sampled g->next_token (or failed): publish, end or continue. */
static void gen_after_sample(rwkvd_daemon *d, rwkvd_gen *g)
{
    if (g->cancel) {
        gen_end(d, g, RWKVP_END_CANCELLED, NULL);
        return;
    }
    const char *piece, *stop;
    size_t len;
    rwkvp_end_reason reason;
    int32_t sampled = g->next_token;
    bool ended = rwkvd_gen_advance(g, d->world_vocab, &piece, &len, &reason, &stop);
    rwkvd_origin o = {g->producer, g->seq, g->tokens_seen};
    if (len > 0)
        rwkvd_publish_text(d, g->ch, &o, g->index++, piece, len);
    if (ended) {
        if (reason == RWKVP_END_ERROR) {
            char t[128];
            snprintf(t, sizeof t, "generation failed: %s", strerror(sampled < 0 ? -sampled : EIO));
            rwkvd_publish_error(d, g->ch, &o, 500, t);
            d->m.outputs_failed++;
        }
        gen_end(d, g, reason, stop);
    } else {
        g->feed_token = sampled;
    }
}

void rwkvd_daemon_cancel_gen(rwkvd_daemon *d, rwkvd_channel *ch)
{
    rwkvd_gen *g = ch->gen;
    if (!g)
        return;
    if (g->in_job)
        g->cancel = true;
    else
        gen_end(d, g, RWKVP_END_CANCELLED, NULL);
}

void rwkvd_daemon_reset_channel(rwkvd_daemon *d, rwkvd_channel *ch)
{
    rwkvd_daemon_cancel_gen(d, ch);
    ch->reset_pending = true;
    rwkvd_chantab_mark_ready(ch);
    ch->held = -1;
    ch->tokens_seen = 0;
    ch->tokens_since_output = 0;
    ch->output_pending = false;
}

uint32_t rwkvd_daemon_drop_channel(rwkvd_daemon *d, rwkvd_channel *ch)
{
    rwkvd_daemon_cancel_gen(d, ch);
    return rwkvd_chantab_remove(d->tab, ch);
}

/* ---- job completion ---------------------------------------------------------------- */

static void begin_stop(rwkvd_daemon *d, const char *why);

static void publish_task(rwkvd_daemon *d, rwkvd_head_task *t)
{
    rwkvd_channel *ch = t->ch;
    rwkvd_origin o = {t->producer, t->seq, t->tokens_seen};
    if (t->kind == RWKVD_HEAD_GEN_START) {
        rwkvd_gen *g = t->gen;
        g->in_job = false;
        g->started = true;
        if (t->rc) {
            char text[160];
            snprintf(text, sizeof text, "%s",
                     t->rc == -ENODATA ? "nothing to continue: the channel has no input and the profile no prompt_suffix"
                                       : "generation failed in the engine");
            rwkvd_publish_error(d, ch, &o, t->rc == -ENODATA ? 422 : 500, text);
            d->m.outputs_failed++;
            gen_end(d, g, g->cancel ? RWKVP_END_CANCELLED : RWKVP_END_ERROR, NULL);
            return;
        }
        gen_after_sample(d, g);
        return;
    }
    if (t->rc == -ERANGE) /* the channel was quarantined in this job (health.c): its ERROR is out */
        return;
    if (t->rc) {
        rwkvd_publish_error(d, ch, &o, t->rc == -ENODATA ? 422 : 500,
                            t->rc == -ENODATA ? "nothing to classify: the channel has no input and the profile no "
                                                "prompt_suffix"
                                              : "classification failed in the engine");
        d->m.outputs_failed++;
        return;
    }
    const rwkvd_task_profile *p = t->prof;
    rwkvd_publish_class(d, ch, &o, p->cfg->name, p->n_labels, p->label_names, t->probs);
}

static void complete_job(rwkvd_daemon *d, rwkvd_job *j)
{
    d->m.steps_total++;
    d->m.step_rows_total += (uint64_t)j->n_items;
    d->m.step_ns_total += j->elapsed_ns;
    static const uint64_t bounds[RWKVD_STEP_BUCKETS] = RWKVD_STEP_BUCKETS_NS;
    int b = 0;
    while (b < RWKVD_STEP_BUCKETS && j->elapsed_ns > bounds[b])
        b++;
    d->m.step_hist[b]++;
    /* input tokens entered tokens_total and input_tokens_total when the scheduler counted
     * them in tokens_seen; here only the rows that were not channel input: generated tokens
     * fed to forks */
    d->m.tokens_total += (uint64_t)j->n_items + (uint64_t)j->n_run_tokens - j->n_input_tokens;
    if (j->rc) {
        rwkvd_log(LOG_ERR, "compute step failed: %s%s%s", strerror(-j->rc), j->rc == -EIO ? ": " : "",
                  j->rc == -EIO ? rwkv_engine_last_error(d->engine) : "");
        if (j->rc == -EIO) { /* the backend is dead: exit so systemd restarts rwkvd */
            d->exit_status = 1;
            begin_stop(d, "engine failure");
        }
    }
    rwkvd_health_job(d, j);
    for (int i = 0; i < j->n_runs; i++)
        j->runs[i].ch->in_job--;
    for (int i = 0; i < j->n_items; i++) {
        if (j->item_ch[i])
            j->item_ch[i]->in_job--;
        rwkvd_gen *g = j->item_gen[i];
        if (g) {
            g->in_job = false;
            g->ch->in_job--;
            if (j->rc)
                g->next_token = j->rc;
            gen_after_sample(d, g);
        }
    }
    for (int i = 0; i < j->n_tasks; i++) {
        rwkvd_head_task *t = &j->tasks[i];
        t->ch->in_job--;
        if (t->kind != RWKVD_HEAD_GEN_START && !t->fork_reserved)
            rwkvd_chantab_slot_free(d->tab, t->fork_slot);
        publish_task(d, t);
    }
    rwkvd_sched_collected(d, j);
    rwkvd_chantab_reap(d->tab);
    rwkvd_ingest_credit_notify(d);
}

void rwkvd_daemon_quiesce(rwkvd_daemon *d)
{
    while (rwkvd_worker_busy(d->worker)) {
        rwkvd_job *j = rwkvd_worker_collect(d->worker);
        if (j) {
            complete_job(d, j);
            continue;
        }
        struct pollfd p = {.fd = rwkvd_worker_fd(d->worker), .events = POLLIN};
        poll(&p, 1, 1000);
    }
}

/* ---- reload ------------------------------------------------------------------------ */

int rwkvd_daemon_reload(rwkvd_daemon *d, char *err, size_t err_len,
                        void (*fn)(const char *path, bool reloadable, void *user), void *user)
{
    rwkvd_config *next = NULL;
    rwkvd_tasks *tasks = NULL;
    int rc = rwkvd_config_load(d->config_path, &next, err, err_len);
    if (rc == 0 && (rc = rwkvd_config_diff_reloadable(d->cfg, next, err, err_len)) == 0)
        rc = rwkvd_tasks_build(next, d->tok, rwkv_model_dims(d->model), &tasks, err, err_len);
    if (rc == 0) /* the allow-list is read again on every reload */
        rc = rwkvd_security_prepare_reload(d, next, err, err_len);
    if (rc) {
        d->m.reloads_failed++;
        rwkvd_log(LOG_ERR, "reload refused, keeping the running configuration: %s", err);
        rwkvd_config_destroy(&next);
        return rc == -EPERM ? -EPERM : -EINVAL;
    }
    rwkvd_run_state prev = d->state;
    d->state = RWKVD_RELOADING;
    rwkvd_notify_reloading();
    int n = rwkvd_config_diff(d->cfg, next, fn, user);
    rwkvd_daemon_quiesce(d); /* the jobs in flight use the compiled profiles and their config */
    rwkvd_tasks_destroy(&d->tasks);
    rwkvd_config_destroy(&d->cfg);
    d->tasks = tasks;
    d->tasks_gen++; /* channels look their profile up again */
    d->cfg = next;
    rwkvd_security_commit_reload(d);
    d->tab->tier_wake_ns = 0; /* residency.idle_ttl may have changed: tier.c recomputes its timer */
    rwkvd_log_set_level((int)d->cfg->log.level);
    d->m.reloads_ok++;
    d->state = prev;
    rwkvd_log(LOG_NOTICE, "reloaded %s: %d key(s) changed", d->config_path, n);
    rwkvd_notify_ready("running (reloaded)");
    return 0;
}

/* ---- init / fini --------------------------------------------------------------------- */

static void mkdir_ipc_parents(const rwkvd_strlist *eps)
{
    for (size_t i = 0; i < eps->n; i++) {
        const char *ep = eps->v[i];
        if (strncmp(ep, "ipc://", 6) != 0 || ep[6] == '@')
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s", ep + 6);
        char *slash = strrchr(path, '/');
        if (!slash || slash == path)
            continue;
        *slash = '\0';
        if (mkdir(path, 0750) != 0 && errno != EEXIST)
            rwkvd_log(LOG_WARNING, "cannot create %s for %s: %s", path, ep, strerror(errno));
    }
}

int rwkvd_daemon_bind_serving(rwkvd_daemon *d, char *err, size_t err_len)
{
    mkdir_ipc_parents(&d->cfg->endpoints.ingest);
    mkdir_ipc_parents(&d->cfg->endpoints.publish);
    mkdir_ipc_parents(&d->cfg->endpoints.ingest_pull);
    int rc = rwkvd_ingest_open(d, err, err_len);
    if (rc == 0)
        rc = rwkvd_publish_open(d, err, err_len);
    if (rc) {
        if (d->ingest)
            zmq_close(d->ingest);
        if (d->publish)
            zmq_close(d->publish);
        d->ingest = d->publish = NULL;
        rwkvd_ingest_pull_close(d);
    }
    return rc;
}

int rwkvd_daemon_init(rwkvd_daemon *d, const char *config_path, rwkvd_config **cfgp)
{
    char err[1024] = "";
    int rc;
    d->cfg = *cfgp;
    *cfgp = NULL;
    d->sigfd = -1;
    d->config_path = strdup(config_path ? config_path : "(defaults)");
    d->start_ns = rwkvd_now_ns();
    d->start_unix_ms = rwkvd_unix_ms();
    const rwkvd_config *cfg = d->cfg;
    rwkvd_log_set_level((int)cfg->log.level);
    if (cfg->model.backend != RWKVD_BACKEND_CPU && cfg->model.backend != RWKVD_BACKEND_CUDA &&
        cfg->model.backend != RWKVD_BACKEND_CUDA_EMU && cfg->model.backend != RWKVD_BACKEND_AUTO) {
        rwkvd_log(LOG_ERR, "model.backend: unknown backend");
        return -EINVAL;
    }
    if (cfg->model.state_slots < 3) {
        rwkvd_log(LOG_ERR, "model.state_slots: at least 3 are needed (2 are scratch for outputs)");
        return -EINVAL;
    }
    if (strcmp(cfg->model.vocab, "bytes") == 0) {
        rc = rwkv_tokenizer_new_bytes(&d->tok);
    } else {
        rc = rwkv_tokenizer_load(cfg->model.vocab, &d->tok, err, sizeof err);
        d->world_vocab = true;
    }
    if (rc) {
        rwkvd_log(LOG_ERR, "model.vocab: %s", err[0] ? err : strerror(-rc));
        return rc;
    }
    rwkv_load_opts lo = {0};
    rwkv_weights_parse(rwkvd_weights_name(cfg->model.weights), &lo.weights);
    uint64_t t0 = rwkvd_now_ns();
    if ((rc = rwkv_model_load(cfg->model.path, &lo, &d->model, err, sizeof err))) {
        rwkvd_log(LOG_ERR, "model.path: %s", err);
        return rc;
    }
    const rwkv_dims *dm = rwkv_model_dims(d->model);
    if (rwkv_tokenizer_n_ids(d->tok) > dm->n_vocab) {
        rwkvd_log(LOG_ERR, "model.vocab has %d ids but the model only %d", rwkv_tokenizer_n_ids(d->tok), dm->n_vocab);
        return -EINVAL;
    }
    rwkv_engine_opts eo = {.backend = rwkvd_backend_name(cfg->model.backend),
                           .n_slots = (int)cfg->model.state_slots,
                           .max_batch = (int)cfg->model.max_batch,
                           .n_threads = (int)cfg->model.threads};
    if (cfg->model.backend == RWKVD_BACKEND_AUTO) { /* say which backend auto picks, and why */
        char why[512];
        rwkv_backend_probe("auto", why, sizeof why);
        rwkvd_log(LOG_INFO, "model.backend auto: %s", why);
    }
    if ((rc = rwkv_engine_new(d->model, &eo, &d->engine, err, sizeof err))) {
        rwkvd_log(LOG_ERR, "%s%s", strncmp(err, "engine:", 7) ? "engine: " : "", err); /* most say it already */
        return rc;
    }
    rwkvd_log(LOG_INFO, "model %s: %s, %d layers, %d wide, %d heads of %d, vocabulary %d, %s backend, %u state slots, loaded in %.2f s",
              cfg->model.path, rwkv_arch_name(dm->arch), dm->n_layer, dm->n_embd, dm->n_head, dm->head_size, dm->n_vocab,
              rwkv_engine_backend(d->engine),
              cfg->model.state_slots, (double)(rwkvd_now_ns() - t0) / 1e9);
    if ((rc = rwkvd_tasks_build(cfg, d->tok, dm, &d->tasks, err, sizeof err))) {
        rwkvd_log(LOG_ERR, "%s", err);
        return rc;
    }
    d->tasks_gen = 1;
    d->slot_a = 0;
    d->slot_b = 1;
    int n_slots = (int)cfg->model.state_slots;
    if (!(d->tab = rwkvd_chantab_new(cfg->limits.max_channels, 2, n_slots)))
        return -ENOMEM;
    for (int k = 0; k < RWKVD_JOBS_IN_FLIGHT; k++)
        if ((rc = rwkvd_job_init(&d->jobs[k], n_slots, (int)cfg->model.max_batch + n_slots,
                                 (int)cfg->model.max_batch, (int)cfg->model.max_batch, (int)cfg->model.max_batch,
                                 dm)))
            return rc;
    if ((rc = rwkvd_worker_new(d->engine, d->tok, dm, d->slot_a, d->slot_b, (int)cfg->model.max_batch, &d->worker,
                               err, sizeof err))) {
        rwkvd_log(LOG_ERR, "worker: %s", err);
        return rc;
    }
    if (!(d->zctx = zmq_ctx_new()))
        return -ENOMEM;
    if ((rc = rwkvd_security_init(d))) /* keys and the ZAP handler, before any socket */
        return rc;
    if ((rc = rwkvd_replica_init(d, d->standby_of))) /* a standby's full sync, fencing */
        return rc;
    if (cfg->durability.enabled && (rc = rwkvd_durable_open(d))) /* recovery, before any socket is bound */
        return rc;
    mkdir_ipc_parents(&cfg->endpoints.control);
    /* a standby binds only its control socket until it takes over */
    if ((!rwkvd_replica_standby(d) && (rc = rwkvd_daemon_bind_serving(d, err, sizeof err))) ||
        (rc = rwkvd_control_open(d, err, sizeof err)) || (rc = rwkvd_replica_open(d, err, sizeof err)) ||
        (rc = rwkvd_httpmetrics_start(d, err, sizeof err))) {
        rwkvd_log(LOG_ERR, "%s", err);
        return rc;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if ((d->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
        return rwkvd_log_errno(LOG_ERR, errno, "signalfd");
    }
    d->watchdog_interval_ns = rwkvd_notify_watchdog_interval_ns();
    return 0;
}

void rwkvd_daemon_fini(rwkvd_daemon *d)
{
    bool hung = d->worker && rwkvd_worker_busy(d->worker);
    if (d->tab)
        for (size_t i = 0; i < d->tab->n; i++) {
            rwkvd_gen *g = d->tab->v[i]->gen;
            if (g && !hung) {
                d->tab->v[i]->gen = NULL;
                rwkvd_gen_destroy(&g);
            }
        }
    rwkvd_httpmetrics_stop(d);
    if (d->ingest)
        zmq_close(d->ingest);
    rwkvd_ingest_pull_close(d);
    if (d->publish)
        zmq_close(d->publish);
    if (d->control)
        zmq_close(d->control);
    rwkvd_replica_destroy(d);
    rwkvd_security_destroy(d);
    if (d->zctx)
        zmq_ctx_term(d->zctx);
    if (d->sigfd >= 0)
        close(d->sigfd);
    if (hung)
        return; /* the worker still runs a step: leave the engine alone and let exit() end it */
    rwkvd_durable_destroy(d);
    rwkvd_worker_destroy(&d->worker);
    for (int k = 0; k < RWKVD_JOBS_IN_FLIGHT; k++)
        rwkvd_job_free(&d->jobs[k]);
    rwkvd_chantab_destroy(&d->tab);
    free(d->credit_waiters);
    rwkvd_ingest_backlog_free(d);
    rwkvd_tasks_destroy(&d->tasks);
    rwkv_engine_destroy(&d->engine);
    rwkv_model_destroy(&d->model);
    rwkv_tokenizer_destroy(&d->tok);
    rwkvd_config_destroy(&d->cfg);
    free(d->config_path);
}

/* ---- the loop ------------------------------------------------------------------------ */

static void status_tick(rwkvd_daemon *d, uint64_t now)
{
    uint64_t dt = now - d->rate_t0_ns;
    if (dt > 0)
        d->tokens_per_s = (double)(d->m.tokens_total - d->rate_tokens0) * 1e9 / (double)dt;
    d->rate_t0_ns = now;
    d->rate_tokens0 = d->m.tokens_total;
    char s[256];
    snprintf(s, sizeof s, "%zu channels, %.1f tokens/s, %d generations", d->tab->n_live, d->tokens_per_s,
             d->n_gens);
    rwkvd_notify_status(s);
}

static void begin_stop(rwkvd_daemon *d, const char *why)
{
    if (d->state == RWKVD_STOPPING)
        return;
    rwkvd_log(LOG_NOTICE, "%s: stopping", why);
    d->state = RWKVD_STOPPING;
    rwkvd_notify_stopping();
    /* A generation that commits is an accepted input the state must apply exactly once, and
     * it cannot be bounded (max_tokens up to 65536): with a store, it is left as a kill -9
     * leaves it. No END is published; the shutdown snapshot of its channel is deferred
     * (durable.c, commit_pending), so the input log keeps its GEN record (or its trigger
     * point's input) and recovery runs it again from its start. One that does not commit
     * changes no state: it ends as cancelled. */
    for (size_t i = 0; i < d->tab->n; i++) {
        rwkvd_channel *ch = d->tab->v[i];
        if (!(d->dur && ch->gen && ch->gen->commit && !ch->dead))
            rwkvd_daemon_cancel_gen(d, ch);
    }
    d->stop_deadline_ns = rwkvd_now_ns() + STOP_GRACE_NS;
}

void rwkvd_daemon_stop(rwkvd_daemon *d, const char *why) { begin_stop(d, why); }

static void handle_signals(rwkvd_daemon *d)
{
    struct signalfd_siginfo si;
    while (read(d->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGHUP) {
            char err[1024];
            rwkvd_log(LOG_INFO, "SIGHUP: reloading %s", d->config_path);
            rwkvd_daemon_reload(d, err, sizeof err, NULL, NULL);
        } else {
            begin_stop(d, si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
        }
    }
}

int rwkvd_loop_run(rwkvd_daemon *d)
{
    uint64_t now = rwkvd_now_ns();
    uint64_t status_ns = d->cfg->service.status_interval_ms * 1000000ull;
    d->rate_t0_ns = now;
    d->next_status_ns = now + status_ns;
    d->next_watchdog_ns = now;
    rwkvd_httpmetrics_refresh(d);
    char ready[160];
    snprintf(ready, sizeof ready, "ready: model loaded, %zu+%zu+%zu endpoints bound", d->cfg->endpoints.ingest.n,
             d->cfg->endpoints.publish.n, d->cfg->endpoints.control.n);
    if (rwkvd_replica_standby(d)) {
        snprintf(ready, sizeof ready, "standby of %s", d->standby_of);
        rwkvd_notify_ready(ready);
        rwkvd_log(LOG_NOTICE, "ready as standby of %s: control %s (ingest and publish are bound on takeover)",
                  d->standby_of, d->cfg->endpoints.control.v[0]);
    } else {
        rwkvd_notify_ready(ready);
        rwkvd_log(LOG_NOTICE, "ready: ingest %s, publish %s, control %s", d->cfg->endpoints.ingest.v[0],
                  d->cfg->endpoints.publish.v[0], d->cfg->endpoints.control.v[0]);
    }
    int exit_status = 0;
    d->exit_status = 0;
    d->m.loop_cpu0_ns = thread_cpu_ns();
    uint64_t woke_ns = rwkvd_now_ns(); /* when zmq_poll last returned */
    for (;;) {
        /* the next job is built while the worker computes the current one, unless work that
         * needs the engine on this thread waits for the worker to drain (scheduler.h) */
        int in_flight = rwkvd_worker_in_flight(d->worker);
        if (in_flight > 0 && !d->want_idle)
            d->want_idle = rwkvd_tier_wants_idle(d, woke_ns) || (d->dur && rwkvd_durable_wants_idle(d, woke_ns));
        if (d->state != RWKVD_STOPPING && in_flight < RWKVD_JOBS_IN_FLIGHT && !(in_flight > 0 && d->want_idle)) {
            if (in_flight == 0)
                d->want_idle = false; /* this build and the ticks after it do what waited */
            if (rwkvd_sched_build(d, in_flight > 0) > 0) {
                rwkvd_worker_submit(d->worker, d->building);
                rwkvd_sched_submitted(d);
                if (in_flight == 0)
                    d->job_submit_ns = rwkvd_now_ns();
            }
        }
        bool busy = rwkvd_worker_busy(d->worker);
        if (d->state == RWKVD_STOPPING && !busy)
            break;
        now = rwkvd_now_ns();
        uint64_t iter_ns = now - woke_ns; /* dispatch, ticks and this job build; not the wait */
        d->m.loop_iterations++;
        if (iter_ns > d->m.loop_iter_max_window_ns) {
            d->m.loop_iter_max_window_ns = iter_ns;
            if (iter_ns > d->m.loop_iter_max_ns)
                d->m.loop_iter_max_ns = iter_ns;
        }
        uint64_t wake = d->next_status_ns;
        if (d->watchdog_interval_ns && d->next_watchdog_ns < wake)
            wake = d->next_watchdog_ns;
        if (d->state == RWKVD_STOPPING && d->stop_deadline_ns < wake)
            wake = d->stop_deadline_ns;
        if (d->dur) {
            uint64_t t = rwkvd_durable_next_ns(d);
            if (t && t < wake)
                wake = t;
        }
        if (!busy) { /* idle_ttl expiries; a busy worker wakes the loop anyway */
            uint64_t t = rwkvd_tier_next_ns(d);
            if (t && t < wake)
                wake = t;
        }
        long timeout_ms;
        if (d->rep) {
            uint64_t t = rwkvd_replica_next_ns(d);
            if (t && t < wake)
                wake = t;
        }
        timeout_ms = wake > now ? (long)((wake - now + 999999) / 1000000) : 0;
        if (d->n_reply_backlog && timeout_ms > 2) /* replies wait for a connection to drain */
            timeout_ms = 2;
        /* a standby has no ingest or publish socket until it takes over */
        enum { P_SIG, P_WORKER, P_CONTROL, P_INGEST, P_PUBLISH, P_REPL, P_BIO, P_PULL, P_N };
        zmq_pollitem_t items[P_N + RWKVD_SEC_POLL_MAX];
        int at[P_N], n_items = 0;
        void *socks[P_N] = {NULL, NULL, d->control, d->ingest, d->publish, rwkvd_replica_socket(d), NULL,
                            rwkvd_ingest_pull_socket(d)};
        for (int k = 0; k < P_N; k++) {
            at[k] = -1;
            if (k == P_SIG || k == P_WORKER) {
                items[n_items] = (zmq_pollitem_t){NULL, k == P_SIG ? d->sigfd : rwkvd_worker_fd(d->worker), ZMQ_POLLIN, 0};
                at[k] = n_items++;
            } else if (k == P_BIO && rwkvd_durable_io_fd(d) >= 0) { /* the I/O thread finished jobs */
                items[n_items] = (zmq_pollitem_t){NULL, rwkvd_durable_io_fd(d), ZMQ_POLLIN, 0};
                at[k] = n_items++;
            } else if (socks[k]) {
                items[n_items] = (zmq_pollitem_t){socks[k], 0, ZMQ_POLLIN, 0};
                at[k] = n_items++;
            }
        }
        int sec_at = n_items, n_sec = rwkvd_security_pollitems(d, items + n_items);
        n_items += n_sec;
        int rc = zmq_poll(items, n_items, timeout_ms);
        woke_ns = rwkvd_now_ns();
        if (rc < 0 && zmq_errno() != EINTR) {
            rwkvd_log(LOG_ERR, "zmq_poll: %s", zmq_strerror(zmq_errno()));
            exit_status = 1;
            break;
        }
#define READY(k) (at[k] >= 0 && (items[at[k]].revents & ZMQ_POLLIN))
        if (rc > 0) {
            if (n_sec) /* ZAP requests and handshake events */
                rwkvd_security_handle(d, items + sec_at, n_sec);
            if (READY(P_SIG))
                handle_signals(d);
            if (READY(P_WORKER)) {
                for (rwkvd_job *j; (j = rwkvd_worker_collect(d->worker)) != NULL;) {
                    complete_job(d, j);
                    d->job_submit_ns = rwkvd_now_ns(); /* the watchdog times the next one from here */
                }
            }
            if (READY(P_BIO))
                rwkvd_durable_io_done(d);
            if (READY(P_CONTROL))
                rwkvd_control_handle(d, 64);
            if (READY(P_REPL))
                rwkvd_replica_handle(d);
            if (READY(P_INGEST))
                rwkvd_ingest_handle(d, 256);
            if (READY(P_PULL))
                rwkvd_ingest_pull_handle(d, 256);
            if (READY(P_PUBLISH))
                rwkvd_publish_drain(d);
        }
#undef READY
        if (d->n_reply_backlog)
            rwkvd_ingest_backlog_flush(d);
        if (d->rep)
            rwkvd_replica_tick(d, rwkvd_now_ns());
        now = rwkvd_now_ns();
        if (d->dur)
            rwkvd_durable_tick(d, now, !rwkvd_worker_busy(d->worker));
        if (!rwkvd_worker_busy(d->worker) && d->state != RWKVD_STOPPING)
            rwkvd_tier_tick(d, now);
        if (now >= d->next_status_ns) {
            status_tick(d, now);
            rwkvd_httpmetrics_refresh(d);
            d->next_status_ns = now + status_ns;
        }
        if (d->watchdog_interval_ns && now >= d->next_watchdog_ns) {
            uint64_t step_timeout_ns = d->cfg->service.step_timeout_ms * 1000000ull;
            if (!rwkvd_worker_busy(d->worker) || now - d->job_submit_ns < step_timeout_ns)
                rwkvd_notify_watchdog();
            d->next_watchdog_ns = now + d->watchdog_interval_ns;
        }
        if (d->state == RWKVD_STOPPING && rwkvd_worker_busy(d->worker) && now >= d->stop_deadline_ns) {
            rwkvd_log(LOG_ERR, "a compute step is still running after %llu s; exiting without it",
                      (unsigned long long)(STOP_GRACE_NS / 1000000000ull));
            exit_status = 1;
            break;
        }
    }
    if (d->exit_status)
        exit_status = d->exit_status;
    if (d->dur && !rwkvd_worker_busy(d->worker))
        rwkvd_durable_shutdown(d);
    rwkvd_log(LOG_NOTICE, "stopped: %llu tokens fed, %llu publications dropped",
              (unsigned long long)d->m.tokens_total, (unsigned long long)d->m.publish_dropped);
    return exit_status;
}
