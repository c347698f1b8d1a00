/* worker.c — see worker.h. A pthread waiting on a condition variable for submitted jobs,
 * kept in a ring of RWKVD_JOBS_IN_FLIGHT in submission order; each completion is published
 * under the mutex and signalled with an eventfd write.
 * Test hook: RWKVD_TEST_STEP_DELAY_MS=N makes every job sleep N ms first (a hung step
 * for the watchdog test); unset in production it costs nothing. */
#include "worker.h"
#include "clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "chantab.h"
#include "log.h"

struct rwkvd_worker {
    rwkv_engine *engine;
    const rwkv_tokenizer *tok;
    rwkvd_head_scratch scratch;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int efd;
    /* under mu: q[(q_head + i) % RWKVD_JOBS_IN_FLIGHT] for i < q_n, oldest first; the first
     * n_done of them have completed */
    rwkvd_job *q[RWKVD_JOBS_IN_FLIGHT];
    int q_head, q_n, n_done;
    bool quit;
    int in_flight;    /* loop-side view: submitted and not collected */
    unsigned delay_ms;
    char poison_channel[RWKVP_CHANNEL_MAX + 1]; /* the fault hook's channel, "" = off */
    unsigned poison_at, poison_seen;
};

int rwkvd_job_init(rwkvd_job *j, int cap_resets, int cap_items, int cap_runs, int cap_run_tokens, int cap_tasks,
                   const rwkv_dims *dims)
{
    memset(j, 0, sizeof *j);
    j->cap_runs = cap_runs;
    j->cap_run_tokens = cap_run_tokens;
    j->runs = calloc((size_t)cap_runs + 1, sizeof *j->runs);
    j->seq = calloc((size_t)cap_items + (size_t)cap_runs + 1, sizeof *j->seq);
    j->run_tokens = calloc((size_t)cap_run_tokens + 1, sizeof *j->run_tokens);
    j->cap_resets = cap_resets;
    j->cap_items = cap_items;
    j->cap_tasks = cap_tasks;
    j->resets = calloc((size_t)cap_resets, sizeof *j->resets);
    j->items = calloc((size_t)cap_items, sizeof *j->items);
    j->item_ch = calloc((size_t)cap_items, sizeof *j->item_ch);
    j->item_gen = calloc((size_t)cap_items, sizeof *j->item_gen);
    j->tasks = calloc((size_t)cap_tasks, sizeof *j->tasks);
    j->n_vocab = dims->n_vocab;
    j->n_embd = dims->n_embd;
    j->task_logits = malloc((size_t)cap_tasks * (size_t)dims->n_vocab * sizeof(float));
    j->task_hidden = malloc((size_t)cap_tasks * (size_t)dims->n_embd * sizeof(float));
    j->row_hidden = malloc(((size_t)cap_items + (size_t)cap_runs + 1) * (size_t)dims->n_embd * sizeof(float));
    j->item_bad = calloc((size_t)cap_items + 1, 1);
    j->run_bad = calloc((size_t)cap_runs + 1, 1);
    if (!j->row_hidden || !j->item_bad || !j->run_bad || !j->runs || !j->seq || !j->run_tokens || !j->resets || !j->items || !j->item_ch || !j->item_gen || !j->tasks || !j->task_logits ||
        !j->task_hidden) {
        rwkvd_job_free(j);
        return -ENOMEM;
    }
    return 0;
}

void rwkvd_job_clear(rwkvd_job *j)
{
    j->n_resets = j->n_items = j->n_tasks = j->n_runs = j->n_run_tokens = 0;
    j->rc = 0;
    j->n_bad = 0;
    j->reserved_used = false;
    j->n_input_tokens = 0;
    j->elapsed_ns = 0;
}

void rwkvd_job_free(rwkvd_job *j)
{
    free(j->runs);
    free(j->seq);
    free(j->run_tokens);
    free(j->resets);
    free(j->items);
    free(j->item_ch);
    free(j->item_gen);
    free(j->tasks);
    free(j->task_logits);
    free(j->task_hidden);
    free(j->row_hidden);
    free(j->item_bad);
    free(j->run_bad);
    memset(j, 0, sizeof *j);
}

static bool all_finite(const float *v, int n)
{
    /* an accumulated test keeps the loop branch-free; NaN and Inf both fail x - x == 0 */
    float acc = 0.0f;
    for (int i = 0; i < n; i++)
        acc += v[i] - v[i];
    return acc == 0.0f;
}

/* The fault hook: poison the channel's slot before the Nth job that runs it. */
static void maybe_poison(rwkvd_worker *w, rwkvd_job *j)
{
    int slot = -1;
    for (int i = 0; i < j->n_items && slot < 0; i++)
        if (j->item_ch[i] && !j->item_gen[i] && strcmp(j->item_ch[i]->name, w->poison_channel) == 0)
            slot = j->items[i].slot;
    for (int i = 0; i < j->n_runs && slot < 0; i++)
        if (strcmp(j->runs[i].ch->name, w->poison_channel) == 0)
            slot = j->runs[i].slot;
    if (slot < 0 || ++w->poison_seen < w->poison_at)
        return;
    size_t index = rwkv_engine_state_bytes(w->engine) / sizeof(float) / 2;
    int rc = rwkv_engine_state_poison(w->engine, slot, index);
    rwkvd_log(LOG_WARNING, "RWKVD_TEST_POISON: state of channel %s (slot %d) poisoned at value %zu: %s",
              w->poison_channel, slot, index, rc ? strerror(-rc) : "done");
    w->poison_channel[0] = '\0';
}

static void run_job(rwkvd_worker *w, rwkvd_job *j)
{
    uint64_t t0 = rwkvd_now_ns();
    if (w->delay_ms) {
        struct timespec d = {w->delay_ms / 1000, (long)(w->delay_ms % 1000) * 1000000L};
        nanosleep(&d, NULL);
    }
    int rc = 0;
    for (int i = 0; i < j->n_resets && rc == 0; i++)
        rc = rwkv_engine_state_reset(w->engine, j->resets[i]);
    /* every row of the job (single tokens and runs, all on distinct slots) in ONE engine
     * call: they share the weight reads, up to max_batch rows per internal pass */
    if (w->poison_channel[0] && rc == 0)
        maybe_poison(w, j);
    int n_seq = 0;
    const size_t C = (size_t)j->n_embd;
    for (int i = 0; i < j->n_items; i++) {
        float *h = j->items[i].hidden ? j->items[i].hidden : j->row_hidden + (size_t)n_seq * C;
        j->seq[n_seq++] = (rwkv_seq_item){.slot = j->items[i].slot, .tokens = &j->items[i].token, .n = 1,
                                          .hidden = h, .logits = j->items[i].logits};
    }
    for (int i = 0; i < j->n_runs; i++) {
        j->seq[n_seq] = (rwkv_seq_item){.slot = j->runs[i].slot, .tokens = j->runs[i].tokens, .n = j->runs[i].n,
                                        .hidden = j->row_hidden + (size_t)n_seq * C};
        n_seq++;
    }
    if (rc == 0 && n_seq > 0)
        rc = rwkv_engine_run(w->engine, j->seq, n_seq);
    if (rc == 0) {
        for (int i = 0; i < j->n_items; i++) {
            j->item_bad[i] = !all_finite(j->seq[i].hidden, j->n_embd);
            j->n_bad += j->item_bad[i];
        }
        for (int i = 0; i < j->n_runs; i++) {
            j->run_bad[i] = !all_finite(j->seq[j->n_items + i].hidden, j->n_embd);
            j->n_bad += j->run_bad[i];
        }
    }
    if (rc == 0)
        for (int i = 0; i < j->n_items; i++)
            if (j->item_gen[i])
                rwkvd_gen_sample(j->item_gen[i], w->tok);
    if (rc == 0)
        rwkvd_heads_run(w->engine, &w->scratch, j->tasks, j->n_tasks);
    for (int i = 0; i < j->n_tasks; i++) {
        rwkvd_head_task *t = &j->tasks[i];
        if (rc)
            t->rc = rc;
        else if (t->kind == RWKVD_HEAD_GEN_START && t->rc == 0)
            rwkvd_gen_sample(t->gen, w->tok);
    }
    j->rc = rc;
    j->elapsed_ns = rwkvd_now_ns() - t0;
}

static void *worker_main(void *arg)
{
    rwkvd_worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->quit && w->n_done == w->q_n)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->n_done == w->q_n) /* quit, and nothing left to run */
            break;
        rwkvd_job *j = w->q[(w->q_head + w->n_done) % RWKVD_JOBS_IN_FLIGHT];
        pthread_mutex_unlock(&w->mu);
        run_job(w, j);
        pthread_mutex_lock(&w->mu);
        w->n_done++;
        uint64_t one = 1;
        ssize_t n = write(w->efd, &one, sizeof one);
        (void)n;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int rwkvd_worker_new(rwkv_engine *e, const rwkv_tokenizer *tok, const rwkv_dims *dims, int slot_a,
                     int slot_b, int cap_tasks, rwkvd_worker **out, char *err, size_t err_len)
{
    rwkvd_worker *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->engine = e;
    w->tok = tok;
    w->efd = -1;
    const char *d = getenv("RWKVD_TEST_STEP_DELAY_MS");
    if (d && *d)
        w->delay_ms = (unsigned)strtoul(d, NULL, 10);
    const char *p = getenv("RWKVD_TEST_POISON");
    const char *at = p ? strrchr(p, '@') : NULL;
    if (at && at > p && (size_t)(at - p) <= RWKVP_CHANNEL_MAX) {
        memcpy(w->poison_channel, p, (size_t)(at - p));
        w->poison_channel[at - p] = '\0';
        w->poison_at = (unsigned)strtoul(at + 1, NULL, 10);
        rwkvd_log(LOG_WARNING, "RWKVD_TEST_POISON=%s: the state of channel %s will be poisoned", p, w->poison_channel);
    }
    int rc = 0;
    if ((rc = rwkvd_head_scratch_init(&w->scratch, slot_a, slot_b, dims, cap_tasks))) {
        snprintf(err, err_len, "out of memory for head scratch");
        free(w);
        return rc;
    }
    if ((w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        rc = -errno;
        snprintf(err, err_len, "eventfd: %s", strerror(errno));
        goto fail;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if ((rc = pthread_create(&w->thread, NULL, worker_main, w))) {
        snprintf(err, err_len, "pthread_create: %s", strerror(rc));
        rc = -rc;
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        goto fail;
    }
    *out = w;
    return 0;
fail:
    if (w->efd >= 0)
        close(w->efd);
    rwkvd_head_scratch_free(&w->scratch);
    free(w);
    return rc;
}

void rwkvd_worker_destroy(rwkvd_worker **wp)
{
    if (!wp || !*wp)
        return;
    rwkvd_worker *w = *wp;
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    close(w->efd);
    rwkvd_head_scratch_free(&w->scratch);
    free(w);
    *wp = NULL;
}

int rwkvd_worker_fd(const rwkvd_worker *w) { return w->efd; }
bool rwkvd_worker_busy(const rwkvd_worker *w) { return w->in_flight > 0; }
int rwkvd_worker_in_flight(const rwkvd_worker *w) { return w->in_flight; }

int rwkvd_worker_submit(rwkvd_worker *w, rwkvd_job *j)
{
    if (w->in_flight >= RWKVD_JOBS_IN_FLIGHT)
        return -EBUSY;
    pthread_mutex_lock(&w->mu);
    w->q[(w->q_head + w->q_n) % RWKVD_JOBS_IN_FLIGHT] = j;
    w->q_n++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    w->in_flight++;
    return 0;
}

rwkvd_job *rwkvd_worker_collect(rwkvd_worker *w)
{
    uint64_t v;
    ssize_t n = read(w->efd, &v, sizeof v);
    (void)n;
    if (!w->in_flight)
        return NULL;
    rwkvd_job *j = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->n_done > 0) {
        j = w->q[w->q_head];
        w->q_head = (w->q_head + 1) % RWKVD_JOBS_IN_FLIGHT;
        w->q_n--;
        w->n_done--;
    }
    pthread_mutex_unlock(&w->mu);
    if (j)
        w->in_flight--;
    return j;
}
