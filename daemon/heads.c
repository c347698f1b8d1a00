/* heads.c — see heads.h. Label scoring sums log-softmax values of each label's tokens
 * after the prompt suffix and normalises over labels; linear heads apply W h + b; a
 * generation forks, feeds the suffix, and from then on is one row of every step. */
#include "heads.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define SUFFIX_MAX_TOKENS 4096 /* prompt_suffix is at most 4096 bytes, every token >= 1 byte */
#define LABEL_CHUNK_ROWS 16    /* label tokens fed per sequence call (their logits rows are kept) */

static int tokenize(const rwkv_tokenizer *tok, const char *s, int32_t **out, int *n_out)
{
    size_t len = strlen(s);
    long n = rwkv_tokenizer_encode(tok, s, len, NULL, 0);
    if (n < 0)
        return (int)n;
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    if (!ids)
        return -ENOMEM;
    if (n > 0 && rwkv_tokenizer_encode(tok, s, len, ids, (size_t)n) != n) {
        free(ids);
        return -EINVAL;
    }
    *out = ids;
    *n_out = (int)n;
    return 0;
}

void rwkvd_tasks_destroy(rwkvd_tasks **tp)
{
    if (!tp || !*tp)
        return;
    rwkvd_tasks *t = *tp;
    for (size_t i = 0; i < t->n; i++) {
        rwkvd_task_profile *p = &t->v[i];
        free(p->suffix);
        if (p->label_tokens)
            for (int k = 0; k < p->n_labels; k++)
                free(p->label_tokens[k]);
        free(p->label_tokens);
        free(p->n_label_tokens);
        free(p->label_names);
        rwkvd_linhead_destroy(&p->head);
    }
    free(t->v);
    free(t);
    *tp = NULL;
}

int rwkvd_tasks_build(const rwkvd_config *cfg, const rwkv_tokenizer *tok, const rwkv_dims *dims,
                      rwkvd_tasks **out, char *err, size_t err_len)
{
    rwkvd_tasks *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    int rc = 0;
    t->n = cfg->tasks.n_profiles;
    t->v = calloc(t->n ? t->n : 1, sizeof *t->v);
    if (!t->v) {
        rc = -ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < t->n; i++) {
        const rwkvd_profile *pc = &cfg->tasks.profiles[i];
        rwkvd_task_profile *p = &t->v[i];
        p->cfg = pc;
        if ((rc = tokenize(tok, pc->prompt_suffix ? pc->prompt_suffix : "", &p->suffix, &p->n_suffix))) {
            snprintf(err, err_len, "tasks.profiles.%s.prompt_suffix: cannot tokenize", pc->name);
            goto fail;
        }
        if (p->n_suffix > SUFFIX_MAX_TOKENS) {
            rc = -EINVAL;
            snprintf(err, err_len, "tasks.profiles.%s.prompt_suffix: more than %d tokens", pc->name,
                     SUFFIX_MAX_TOKENS);
            goto fail;
        }
        if (p->n_suffix > t->max_suffix)
            t->max_suffix = p->n_suffix;
        if (pc->kind == RWKVD_TASK_CLASSIFY_LABELS) {
            p->n_labels = (int)pc->n_labels;
            p->label_tokens = calloc(pc->n_labels, sizeof *p->label_tokens);
            p->n_label_tokens = calloc(pc->n_labels, sizeof *p->n_label_tokens);
            p->label_names = calloc(pc->n_labels, sizeof *p->label_names);
            if (!p->label_tokens || !p->n_label_tokens || !p->label_names) {
                rc = -ENOMEM;
                goto fail;
            }
            for (size_t k = 0; k < pc->n_labels; k++) {
                p->label_names[k] = pc->labels[k].name;
                if ((rc = tokenize(tok, pc->labels[k].text, &p->label_tokens[k], &p->n_label_tokens[k])) ||
                    p->n_label_tokens[k] < 1) {
                    rc = rc ? rc : -EINVAL;
                    snprintf(err, err_len, "tasks.profiles.%s.labels.%s: cannot tokenize its text", pc->name,
                             pc->labels[k].name);
                    goto fail;
                }
            }
        } else if (pc->kind == RWKVD_TASK_CLASSIFY_LINEAR) {
            char herr[512];
            if ((rc = rwkvd_linhead_load(pc->head, &p->head, herr, sizeof herr))) {
                snprintf(err, err_len, "tasks.profiles.%s.head: %s", pc->name, herr);
                goto fail;
            }
            if (p->head->n_embd != dims->n_embd) {
                rc = -EINVAL;
                snprintf(err, err_len, "tasks.profiles.%s.head: %s has n_embd %d but the model has %d",
                         pc->name, pc->head, p->head->n_embd, dims->n_embd);
                goto fail;
            }
            p->n_labels = p->head->n_labels;
            p->label_names = calloc((size_t)p->n_labels, sizeof *p->label_names);
            if (!p->label_names) {
                rc = -ENOMEM;
                goto fail;
            }
            for (int k = 0; k < p->n_labels; k++)
                p->label_names[k] = p->head->labels[k];
        }
    }
    *out = t;
    return 0;
fail:
    rwkvd_tasks_destroy(&t);
    return rc;
}

const rwkvd_task_profile *rwkvd_tasks_find(const rwkvd_tasks *t, const char *name)
{
    if (!t || !name || !*name)
        return NULL;
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].cfg->name, name) == 0)
            return &t->v[i];
    return NULL;
}

/* ---- generations ---------------------------------------------------------------- */

void rwkvd_gen_destroy(rwkvd_gen **gp)
{
    if (!gp || !*gp)
        return;
    rwkvd_gen *g = *gp;
    rwkv_sampler_destroy(&g->sampler);
    free(g->logits);
    free(g->text);
    free(g->sampled);
    free(g->stop);
    free(g->stop_len);
    free(g);
    *gp = NULL;
}

rwkvd_gen *rwkvd_gen_new(const rwkvd_task_profile *prof, const rwkvp_gen_params *gp,
                         const rwkv_tokenizer *tok, int n_vocab, uint64_t default_seed,
                         char *err, size_t err_len)
{
    rwkvp_gen_params def;
    rwkvp_gen_params_default(&def);
    if (!gp)
        gp = &def;
    const rwkvd_generate *pg = prof && prof->cfg->kind == RWKVD_TASK_CONTINUE ? &prof->cfg->generate : NULL;
    unsigned has = gp->present;
#define PICK(bit, field, pfield, dflt) \
    ((has & (bit)) ? gp->field : pg ? pg->pfield : (dflt))
    rwkv_sampler_params sp;
    rwkv_sampler_params_default(&sp);
    sp.temperature = (float)PICK(RWKVP_GEN_HAS_TEMPERATURE, temperature, temperature, def.temperature);
    sp.top_p = (float)PICK(RWKVP_GEN_HAS_TOP_P, top_p, top_p, def.top_p);
    sp.top_k = (int)PICK(RWKVP_GEN_HAS_TOP_K, top_k, top_k, def.top_k);
    sp.presence_penalty = (float)PICK(RWKVP_GEN_HAS_PRESENCE_PENALTY, presence_penalty, presence_penalty,
                                      def.presence_penalty);
    sp.frequency_penalty = (float)PICK(RWKVP_GEN_HAS_FREQUENCY_PENALTY, frequency_penalty, frequency_penalty,
                                       def.frequency_penalty);
    sp.penalty_decay = (float)PICK(RWKVP_GEN_HAS_PENALTY_DECAY, penalty_decay, penalty_decay, def.penalty_decay);
    sp.seed = PICK(RWKVP_GEN_HAS_SEED, seed, seed, default_seed);
    uint32_t max_tokens = PICK(RWKVP_GEN_HAS_MAX_TOKENS, max_tokens, max_tokens, def.max_tokens);
    bool commit = PICK(RWKVP_GEN_HAS_COMMIT, commit, commit, false);
#undef PICK
    rwkvd_gen *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    g->slot = -1;
    g->max_tokens = max_tokens;
    g->seed = sp.seed;
    g->commit = commit;
    if (rwkv_sampler_new(&sp, n_vocab, &g->sampler, err, err_len))
        goto fail;
    for (int32_t i = rwkv_tokenizer_n_ids(tok); i < n_vocab; i++)
        rwkv_sampler_ban(g->sampler, i);
    g->logits = malloc((size_t)n_vocab * sizeof *g->logits);
    g->sampled = malloc((size_t)max_tokens * sizeof *g->sampled);
    g->text_cap = 256;
    g->text = malloc(g->text_cap);
    size_t n_stop = (has & RWKVP_GEN_HAS_STOP) ? gp->n_stop : pg ? pg->stop.n : 0;
    g->stop = calloc(n_stop ? n_stop : 1, sizeof *g->stop);
    g->stop_len = calloc(n_stop ? n_stop : 1, sizeof *g->stop_len);
    if (!g->logits || !g->sampled || !g->text || !g->stop || !g->stop_len) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n_stop; i++) {
        const char *s = (has & RWKVP_GEN_HAS_STOP) ? gp->stop[i] : pg->stop.v[i];
        size_t l = (has & RWKVP_GEN_HAS_STOP) ? gp->stop_len[i] : strlen(s);
        if (l == 0 || l > RWKVP_STOP_BYTES)
            continue;
        memcpy(g->stop[g->n_stop], s, l);
        g->stop_len[g->n_stop++] = l;
    }
    rwkv_decoder_init(&g->dec, tok);
    g->next_token = -1;
    g->feed_token = -1;
    return g;
fail:
    rwkvd_gen_destroy(&g);
    return NULL;
}

static int text_append(rwkvd_gen *g, const char *s, size_t n)
{
    if (g->text_len + n > g->text_cap) {
        size_t cap = g->text_cap * 2;
        while (cap < g->text_len + n)
            cap *= 2;
        char *t = realloc(g->text, cap);
        if (!t)
            return -ENOMEM;
        g->text = t;
        g->text_cap = cap;
    }
    memcpy(g->text + g->text_len, s, n);
    g->text_len += n;
    return 0;
}

/* Earliest stop match starting at or after `from`; returns its offset or -1. */
static long find_stop(const rwkvd_gen *g, size_t from, size_t *which)
{
    long best = -1;
    for (size_t i = 0; i < g->n_stop; i++) {
        size_t l = g->stop_len[i];
        for (size_t p = from; p + l <= g->text_len; p++)
            if (memcmp(g->text + p, g->stop[i], l) == 0) {
                if (best < 0 || (long)p < best) {
                    best = (long)p;
                    *which = i;
                }
                break;
            }
    }
    return best;
}

/* Longest suffix of the text that is a proper prefix of a stop string. */
static size_t stop_holdback(const rwkvd_gen *g)
{
    size_t hold = 0;
    for (size_t i = 0; i < g->n_stop; i++)
        for (size_t k = g->stop_len[i] - 1; k > hold; k--)
            if (k <= g->text_len && memcmp(g->text + g->text_len - k, g->stop[i], k) == 0) {
                hold = k;
                break;
            }
    return hold;
}

bool rwkvd_gen_advance(rwkvd_gen *g, bool world_eos, const char **piece, size_t *piece_len,
                       rwkvp_end_reason *reason, const char **stop_hit)
{
    *piece = NULL;
    *piece_len = 0;
    *stop_hit = NULL;
    int32_t id = g->next_token;
    if (id < 0) {
        *reason = RWKVP_END_ERROR;
        return true;
    }
    g->sampled[g->n_sampled++] = id;
    if (world_eos && id == 0) {
        rwkvd_gen_finish(g, piece, piece_len);
        *reason = RWKVP_END_EOS;
        return true;
    }
    size_t before = g->text_len;
    char buf[3 * (3 + 128) + 16];
    long w = rwkv_decoder_push(&g->dec, id, buf, sizeof buf);
    if (w > 0 && text_append(g, buf, (size_t)w)) {
        *reason = RWKVP_END_ERROR;
        return true;
    }
    size_t longest = 0;
    for (size_t i = 0; i < g->n_stop; i++)
        if (g->stop_len[i] > longest)
            longest = g->stop_len[i];
    size_t from = before > longest ? before - longest : 0;
    if (from < g->published)
        from = g->published;
    size_t which = 0;
    long at = g->n_stop ? find_stop(g, from, &which) : -1;
    if (at >= 0) {
        g->text_len = (size_t)at;
        *piece = g->text + g->published;
        *piece_len = g->text_len - g->published;
        g->published = g->text_len;
        *reason = RWKVP_END_STOP;
        *stop_hit = g->stop[which];
        return true;
    }
    size_t upto = g->text_len - stop_holdback(g);
    if (upto > g->published) {
        *piece = g->text + g->published;
        *piece_len = upto - g->published;
        g->published = upto;
    }
    if (g->n_sampled >= g->max_tokens) {
        const char *p2;
        size_t l2;
        size_t start = *piece ? (size_t)(*piece - g->text) : g->published;
        rwkvd_gen_finish(g, &p2, &l2);
        *piece = g->text + start;
        *piece_len = g->published - start;
        *reason = RWKVP_END_MAX_TOKENS;
        return true;
    }
    return false;
}

void rwkvd_gen_finish(rwkvd_gen *g, const char **piece, size_t *piece_len)
{
    char buf[8];
    long w = rwkv_decoder_flush(&g->dec, buf, sizeof buf);
    if (w > 0)
        text_append(g, buf, (size_t)w);
    *piece = g->text + g->published;
    *piece_len = g->text_len - g->published;
    g->published = g->text_len;
}

/* ---- worker side ------------------------------------------------------------------ */

int rwkvd_head_scratch_init(rwkvd_head_scratch *s, int slot_a, int slot_b, const rwkv_dims *d, int cap_tasks)
{
    memset(s, 0, sizeof *s);
    s->slot_a = slot_a;
    s->slot_b = slot_b;
    s->n_vocab = d->n_vocab;
    s->n_embd = d->n_embd;
    s->seq_cap = 1 + SUFFIX_MAX_TOKENS;
    s->cap_tasks = cap_tasks;
    s->label_rows = LABEL_CHUNK_ROWS;
    s->seq_tokens = malloc((size_t)s->seq_cap * sizeof *s->seq_tokens);
    s->label_logits = malloc((size_t)s->label_rows * (size_t)d->n_vocab * sizeof(float));
    s->items = calloc((size_t)cap_tasks, sizeof *s->items);
    s->n_feed = calloc((size_t)cap_tasks, sizeof *s->n_feed);
    if (!s->seq_tokens || !s->label_logits || !s->items || !s->n_feed) {
        rwkvd_head_scratch_free(s);
        return -ENOMEM;
    }
    return 0;
}

void rwkvd_head_scratch_free(rwkvd_head_scratch *s)
{
    free(s->seq_tokens);
    free(s->label_logits);
    free(s->items);
    free(s->n_feed);
    memset(s, 0, sizeof *s);
}

/* The log-softmax normaliser of one logits row, kept as its two parts so that
 * log_prob_at() gives the same bits as computing the whole softmax for every id. */
typedef struct {
    double mx, log_sum;
} lse;

static lse log_norm(const float *logits, int n)
{
    double mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (logits[i] > mx)
            mx = logits[i];
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += exp((double)logits[i] - mx);
    return (lse){mx, log(sum)};
}

/* log softmax(logits)[id], in double, with the row's normaliser from log_norm. */
static double log_prob_at(const float *logits, lse z, int32_t id)
{
    return (double)logits[id] - z.mx - z.log_sum;
}

/* Token i of what a task's fork is fed: [held] + suffix. */
static int32_t feed_token(const rwkvd_head_task *t, int i)
{
    if (t->held >= 0) {
        if (i == 0)
            return t->held;
        i--;
    }
    return t->prof->suffix[i];
}

static int feed_count(const rwkvd_head_task *t)
{
    return (t->held >= 0) + (t->prof ? t->prof->n_suffix : 0);
}

/* Scores of the labels from the fork's logits. The fork's normaliser is computed once for
 * all labels; a multi-token label continues on slot_b, its tokens but the last fed as one
 * sequence that leaves every row's logits (in chunks of label_rows), and each row is
 * normalised once. Equal, bit for bit, to feeding the label one token at a time. */
static int score_labels(rwkv_engine *e, rwkvd_head_scratch *s, rwkvd_head_task *t)
{
    const rwkvd_task_profile *p = t->prof;
    double score[RWKVD_LINHEAD_MAX_LABELS], mx = -INFINITY;
    const size_t V = (size_t)s->n_vocab;
    lse z0 = log_norm(t->logits, s->n_vocab);
    int rc;
    for (int k = 0; k < p->n_labels; k++) {
        const int32_t *lt = p->label_tokens[k];
        int n = p->n_label_tokens[k];
        double sc = log_prob_at(t->logits, z0, lt[0]);
        if (n > 1 && (rc = rwkv_engine_state_copy(e, s->slot_b, t->fork_slot)))
            return rc;
        /* row r of a chunk: the logits after lt[j0 + r], which score lt[j0 + r + 1] */
        for (int j0 = 0; j0 < n - 1; j0 += s->label_rows) {
            int m = n - 1 - j0 < s->label_rows ? n - 1 - j0 : s->label_rows;
            if ((rc = rwkv_engine_seq(e, s->slot_b, &lt[j0], m, NULL, NULL, s->label_logits)))
                return rc;
            for (int r = 0; r < m; r++) {
                const float *row = s->label_logits + (size_t)r * V;
                sc += log_prob_at(row, log_norm(row, s->n_vocab), lt[j0 + r + 1]);
            }
        }
        score[k] = sc;
        if (sc > mx)
            mx = sc;
    }
    double sum = 0;
    for (int k = 0; k < p->n_labels; k++)
        sum += exp(score[k] - mx);
    for (int k = 0; k < p->n_labels; k++)
        t->probs[k] = (float)(exp(score[k] - mx) / sum);
    return 0;
}

void rwkvd_heads_run(rwkv_engine *e, rwkvd_head_scratch *s, rwkvd_head_task *tasks, int n)
{
    int n_active = 0, max_feed = 0, last = -1;
    for (int i = 0; i < n; i++) {
        rwkvd_head_task *t = &tasks[i];
        int nf = feed_count(t);
        s->n_feed[i] = nf;
        t->rc = 0;
        if (nf == 0) {
            t->rc = -ENODATA; /* nothing fed since the zero state and no suffix: no logits */
            continue;
        }
        if (nf > s->seq_cap) {
            t->rc = -E2BIG;
            continue;
        }
        if ((t->rc = rwkv_engine_state_copy(e, t->fork_slot, t->src_slot)))
            continue;
        n_active++;
        last = i;
        if (nf > max_feed)
            max_feed = nf;
    }
    if (n_active == 1) {
        /* one fork: sequence mode feeds all its tokens at once */
        rwkvd_head_task *t = &tasks[last];
        for (int i = 0; i < s->n_feed[last]; i++)
            s->seq_tokens[i] = feed_token(t, i);
        bool linear = t->kind == RWKVD_HEAD_CLASSIFY_LINEAR;
        t->rc = rwkv_engine_seq(e, t->fork_slot, s->seq_tokens, s->n_feed[last], linear ? t->hidden : NULL,
                                linear ? NULL : t->logits, NULL);
    } else if (n_active > 1) {
        /* several forks: one batched step per position, outputs only at each fork's last token */
        for (int pos = 0; pos < max_feed; pos++) {
            int m = 0;
            for (int i = 0; i < n; i++) {
                rwkvd_head_task *t = &tasks[i];
                if (t->rc || pos >= s->n_feed[i])
                    continue;
                bool at_end = pos == s->n_feed[i] - 1;
                bool linear = t->kind == RWKVD_HEAD_CLASSIFY_LINEAR;
                s->items[m++] = (rwkv_step_item){.slot = t->fork_slot,
                                                 .token = feed_token(t, pos),
                                                 .hidden = at_end && linear ? t->hidden : NULL,
                                                 .logits = at_end && !linear ? t->logits : NULL};
            }
            int rc = rwkv_engine_step(e, s->items, m);
            if (rc)
                for (int i = 0; i < n; i++)
                    if (!tasks[i].rc && pos < s->n_feed[i])
                        tasks[i].rc = rc;
        }
    }
    for (int i = 0; i < n; i++) {
        rwkvd_head_task *t = &tasks[i];
        if (t->rc)
            continue;
        if (t->kind == RWKVD_HEAD_CLASSIFY_LABELS)
            t->rc = score_labels(e, s, t);
        else if (t->kind == RWKVD_HEAD_CLASSIFY_LINEAR)
            rwkvd_linhead_apply(t->prof->head, t->hidden, t->probs);
    }
}

void rwkvd_gen_sample(rwkvd_gen *g, const rwkv_tokenizer *tok)
{
    int32_t id = rwkv_sampler_sample(g->sampler, g->logits);
    g->next_token = id;
    if (id < 0)
        return;
    const uint8_t *bytes;
    size_t nb = rwkv_tokenizer_token(tok, id, &bytes);
    /* as rwkv-run (pip's generate()): whitespace/digit tokens get presence but no frequency weight */
    static const char blanks[] = " \t0123456789";
    bool blank = nb > 0 && memmem(blanks, sizeof blanks - 1, bytes, nb) != NULL;
    rwkv_sampler_accept(g->sampler, id, blank ? 0.0f : 1.0f);
}
