/* test_heads.c — label scoring (daemon/heads.c) on a random in-memory model: the
 * probabilities rwkvd_heads_run publishes equal, bit for bit, a plain recomputation that
 * forks by hand, feeds [held] + suffix one token at a time, and scores every label token
 * by token with the whole log-softmax recomputed for each one (the straightforward method
 * the daemon's batched one must reproduce). Covers one fork (sequence mode) and several
 * (lockstep steps), with and without a held token, and labels of 1, 2, 5, 16, 17 and 40
 * tokens (one sequence call, exactly one chunk, and several chunks). Labels of one profile
 * have equal lengths, so that no probability underflows to 0 and every score counts in the
 * bits compared; one profile mixes the lengths. The channel slots are left untouched. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heads.h"
#include "model.h"
#include "rwkv.h"
#include "testutil.h"

#define N_LABELS 6
#define N_SRC 3
#define N_PROFILES 7

/* label lengths per profile; 0 ends a list */
static const int label_len[N_PROFILES][N_LABELS] = {
    {1, 1, 1, 0}, {2, 2, 2, 0}, {5, 5, 5, 0}, {16, 16, 16, 0}, {17, 17, 17, 0}, {40, 40, 40, 0},
    {1, 2, 5, 16, 17, 40},
};

static double ref_log_prob(const float *logits, int n, int32_t id)
{
    double mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (logits[i] > mx)
            mx = logits[i];
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += exp((double)logits[i] - mx);
    return (double)logits[id] - mx - log(sum);
}

/* The reference: everything one token per engine call, in slots ref and ref + 1. */
static int ref_probs(rwkv_engine *e, int V, int src, int ref, int32_t held, const rwkvd_task_profile *p,
                     float *probs)
{
    float *lg0 = malloc((size_t)V * sizeof *lg0), *lg = malloc((size_t)V * sizeof *lg);
    int rc = -ENOMEM;
    if (!lg0 || !lg)
        goto out;
    if ((rc = rwkv_engine_state_copy(e, ref, src)))
        goto out;
    if (held >= 0 && (rc = rwkv_engine_seq(e, ref, &held, 1, NULL, lg0, NULL)))
        goto out;
    for (int i = 0; i < p->n_suffix; i++)
        if ((rc = rwkv_engine_seq(e, ref, &p->suffix[i], 1, NULL, lg0, NULL)))
            goto out;
    double score[N_LABELS], mx = -INFINITY;
    for (int k = 0; k < p->n_labels; k++) {
        const int32_t *lt = p->label_tokens[k];
        double sc = ref_log_prob(lg0, V, lt[0]);
        if ((rc = rwkv_engine_state_copy(e, ref + 1, ref)))
            goto out;
        for (int j = 1; j < p->n_label_tokens[k]; j++) {
            if ((rc = rwkv_engine_seq(e, ref + 1, &lt[j - 1], 1, NULL, lg, NULL)))
                goto out;
            sc += ref_log_prob(lg, V, lt[j]);
        }
        score[k] = sc;
        if (sc > mx)
            mx = sc;
    }
    double sum = 0;
    for (int k = 0; k < p->n_labels; k++)
        sum += exp(score[k] - mx);
    for (int k = 0; k < p->n_labels; k++)
        probs[k] = (float)(exp(score[k] - mx) / sum);
out:
    free(lg0);
    free(lg);
    return rc;
}

int main(void)
{
    rwkv_dims shape = {.n_layer = 2, .n_embd = 64, .n_vocab = 256};
    rwkv_model *model = NULL;
    rwkv_engine *e = NULL;
    char err[256] = "";
    int rc = rwkv_model_random(&shape, 7, RWKV_WEIGHTS_F32, &model, err, sizeof err);
    CHECKF(rc == 0, "rwkv_model_random: %s", err);
    if (rc)
        return test_finish("test_heads");
    const rwkv_dims *dm = rwkv_model_dims(model);
    const int V = dm->n_vocab;
    /* slots: 0, 1 head scratch; 2..4 channels; 5..7 forks; 8, 9 the reference */
    rwkv_engine_opts eo = {.n_slots = 10, .max_batch = 8, .n_threads = 1};
    rc = rwkv_engine_new(model, &eo, &e, err, sizeof err);
    CHECKF(rc == 0, "rwkv_engine_new: %s", err);
    if (rc) {
        rwkv_model_destroy(&model);
        return test_finish("test_heads");
    }

    /* profiles built by hand: a 3-token suffix and labels of the lengths above */
    int32_t suffix[3] = {32, 83, 58};
    int32_t *lt[N_PROFILES][N_LABELS];
    int nlt[N_PROFILES][N_LABELS];
    const char *names[N_LABELS] = {"a", "b", "c", "d", "e", "f"};
    rwkvd_task_profile profs[N_PROFILES];
    for (int q = 0; q < N_PROFILES; q++) {
        int n = 0;
        while (n < N_LABELS && label_len[q][n])
            n++;
        for (int k = 0; k < n; k++) {
            nlt[q][k] = label_len[q][k];
            lt[q][k] = malloc((size_t)nlt[q][k] * sizeof **lt);
            for (int j = 0; j < nlt[q][k]; j++)
                lt[q][k][j] = (int32_t)((37 * k + 11 * j + 13 * q + 5) % V);
        }
        profs[q] = (rwkvd_task_profile){.suffix = suffix, .n_suffix = 3, .label_tokens = lt[q],
                                        .n_label_tokens = nlt[q], .label_names = names, .n_labels = n};
    }

    /* channel states: a few different histories */
    for (int c = 0; c < N_SRC; c++) {
        int32_t hist[12];
        for (int i = 0; i < 12; i++)
            hist[i] = (int32_t)((c * 53 + i * 7 + 1) % V);
        CHECK(rwkv_engine_state_reset(e, 2 + c) == 0);
        CHECK(rwkv_engine_seq(e, 2 + c, hist, 4 + 4 * c, NULL, NULL, NULL) == 0);
    }
    size_t sb = rwkv_engine_state_bytes(e);
    unsigned char *before = malloc(N_SRC * sb), *after = malloc(sb);
    for (int c = 0; c < N_SRC; c++)
        CHECK(rwkv_engine_state_export(e, 2 + c, before + c * sb, sb) == 0);

    rwkvd_head_scratch s;
    CHECK(rwkvd_head_scratch_init(&s, 0, 1, dm, N_SRC) == 0);
    float *logits = malloc((size_t)N_SRC * V * sizeof *logits);

    for (int q = 0; q < N_PROFILES; q++) {
        const rwkvd_task_profile *prof = &profs[q];
        for (int n_tasks = 1; n_tasks <= N_SRC; n_tasks += N_SRC - 1) {
            for (int with_held = 0; with_held <= 1; with_held++) {
                rwkvd_head_task tasks[N_SRC];
                memset(tasks, 0, sizeof tasks);
                for (int i = 0; i < n_tasks; i++)
                    tasks[i] = (rwkvd_head_task){.kind = RWKVD_HEAD_CLASSIFY_LABELS, .prof = prof,
                                                 .src_slot = 2 + i, .held = with_held ? (int32_t)(100 + i) : -1,
                                                 .fork_slot = 5 + i, .logits = logits + (size_t)i * V};
                rwkvd_heads_run(e, &s, tasks, n_tasks);
                for (int i = 0; i < n_tasks; i++) {
                    float ref[N_LABELS];
                    CHECKF(tasks[i].rc == 0, "profile %d, %d tasks, held %d, task %d: rc %d", q, n_tasks, with_held,
                           i, tasks[i].rc);
                    CHECK(ref_probs(e, V, 2 + i, 8, tasks[i].held, prof, ref) == 0);
                    double total = 0;
                    for (int k = 0; k < prof->n_labels; k++) {
                        total += tasks[i].probs[k];
                        CHECKF(memcmp(&tasks[i].probs[k], &ref[k], sizeof ref[k]) == 0,
                               "profile %d, %d tasks, held %d, task %d, label %d (%d tokens): %.9g, reference %.9g",
                               q, n_tasks, with_held, i, k, prof->n_label_tokens[k], tasks[i].probs[k], ref[k]);
                    }
                    CHECKF(fabs(total - 1) < 1e-5, "probabilities sum to %.9g", total);
                    if (q < N_PROFILES - 1) /* equal lengths: every label keeps some probability */
                        for (int k = 0; k < prof->n_labels; k++)
                            CHECKF(tasks[i].probs[k] > 0, "profile %d label %d: probability 0", q, k);
                }
            }
        }
    }
    for (int c = 0; c < N_SRC; c++) {
        CHECK(rwkv_engine_state_export(e, 2 + c, after, sb) == 0);
        CHECKF(memcmp(after, before + c * sb, sb) == 0, "channel slot %d changed", 2 + c);
    }

    /* nothing to feed: no held token and no suffix */
    rwkvd_task_profile bare = profs[0];
    bare.n_suffix = 0;
    rwkvd_head_task t = {.kind = RWKVD_HEAD_CLASSIFY_LABELS, .prof = &bare, .src_slot = 2, .held = -1,
                         .fork_slot = 5, .logits = logits};
    rwkvd_heads_run(e, &s, &t, 1);
    CHECK(t.rc == -ENODATA);

    rwkvd_head_scratch_free(&s);
    free(logits);
    free(before);
    free(after);
    for (int q = 0; q < N_PROFILES; q++)
        for (int k = 0; k < profs[q].n_labels; k++)
            free(lt[q][k]);
    rwkv_engine_destroy(&e);
    rwkv_model_destroy(&model);
    return test_finish("test_heads");
}
