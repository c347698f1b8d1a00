/* test_sampler.c — unit tests of the sampler: parameter checks, greedy paths, bans,
 * penalties with decay, seeding, and empirical distributions against a float64 reference
 * of the spec §6.1 pipeline written here with a full sort.
 * Not a test of torch compatibility: only distributions are compared, never draw streams.
 */
#include "rwkv_sampler.h"
#include "testutil.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static rwkv_sampler *make(float temperature, float top_p, int top_k, int n_vocab, uint64_t seed)
{
    rwkv_sampler_params p;
    rwkv_sampler_params_default(&p);
    p.temperature = temperature;
    p.top_p = top_p;
    p.top_k = top_k;
    p.seed = seed;
    rwkv_sampler *s = NULL;
    char err[128];
    int rc = rwkv_sampler_new(&p, n_vocab, &s, err, sizeof err);
    CHECKF(rc == 0, "new: %d %s", rc, err);
    return s;
}

/* Draws from a fresh copy of logits each time (sample uses them as scratch). */
static int32_t draw(rwkv_sampler *s, const float *logits, int n, float *scratch)
{
    memcpy(scratch, logits, (size_t)n * sizeof *scratch);
    return rwkv_sampler_sample(s, scratch);
}

/* Logits whose softmax is exactly proportional to the given probabilities. */
static void logits_of(const double *p, int n, float *logits)
{
    for (int i = 0; i < n; i++)
        logits[i] = p[i] > 0 ? (float)log(p[i]) : -INFINITY;
}

/* The spec §6.1 pipeline in float64 with a full sort; ties at the top-k boundary go to the
 * lower id, as the sampler documents. */
static const double *ref_cmp_p;
static int ref_cmp(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    if (ref_cmp_p[x] != ref_cmp_p[y])
        return ref_cmp_p[x] > ref_cmp_p[y] ? -1 : 1;
    return x - y;
}

static void ref_probs(const float *logits, int n, double temperature, double top_p, int top_k,
                      double *out)
{
    double *p = malloc((size_t)n * sizeof *p);
    int *order = malloc((size_t)n * sizeof *order);
    bool *keep = malloc((size_t)n);
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++)
        mx = fmax(mx, logits[i]);
    for (int i = 0; i < n; i++) {
        p[i] = exp((double)logits[i] - mx);
        sum += p[i];
    }
    for (int i = 0; i < n; i++) {
        p[i] /= sum;
        order[i] = i;
        keep[i] = p[i] > 0;
    }
    ref_cmp_p = p;
    qsort(order, (size_t)n, sizeof *order, ref_cmp);
    if (top_k > 0)
        for (int r = top_k; r < n; r++)
            keep[order[r]] = false;
    if (top_p < 1) {
        double cum = 0, cutoff = p[order[n - 1]];
        for (int r = 0; r < n; r++) {
            cum += p[order[r]];
            if (cum >= top_p) {
                cutoff = p[order[r]];
                break;
            }
        }
        double kept = 0;
        int ties = 0;
        for (int i = 0; i < n; i++) {
            if (p[i] < cutoff)
                keep[i] = false;
            if (keep[i]) {
                kept += p[i];
                ties += p[i] == cutoff;
            }
        }
        for (int i = 0; i < n; i++)
            if (keep[i] && p[i] == cutoff)
                p[i] = cutoff + (top_p - kept) / ties;
    }
    double total = 0;
    for (int i = 0; i < n; i++) {
        out[i] = keep[i] ? pow(p[i], 1.0 / temperature) : 0;
        total += out[i];
    }
    for (int i = 0; i < n; i++)
        out[i] /= total;
    free(p);
    free(order);
    free(keep);
}

/* Draws n_draws times and checks frequencies against want within 5 sigma (+0.002), and
 * that ids with want == 0 are never drawn; reports the first offending id. */
static void check_distribution(const char *what, rwkv_sampler *s, const float *logits, int n,
                               const double *want, int n_draws)
{
    float *scratch = malloc((size_t)n * sizeof *scratch);
    long *count = calloc((size_t)n, sizeof *count);
    int errors = 0;
    for (int d = 0; d < n_draws; d++) {
        int32_t id = draw(s, logits, n, scratch);
        if (id < 0 || id >= n)
            errors++;
        else
            count[id]++;
    }
    CHECKF(errors == 0, "%s: %d bad draws", what, errors);
    int bad = -1, n_bad = 0;
    for (int i = 0; i < n; i++) {
        double f = (double)count[i] / n_draws;
        double tol = 5 * sqrt(want[i] * (1 - want[i]) / n_draws) + 0.002;
        if (fabs(f - want[i]) > tol || (want[i] == 0 && count[i] > 0)) {
            if (bad < 0)
                bad = i;
            n_bad++;
        }
    }
    CHECKF(n_bad == 0, "%s: %d ids off, first id %d: freq %.4f (%ld draws) want %.4f", what,
           n_bad, bad, bad >= 0 ? (double)count[bad] / n_draws : 0.0,
           bad >= 0 ? count[bad] : 0L, bad >= 0 ? want[bad] : 0.0);
    free(scratch);
    free(count);
}

static void test_params(void)
{
    rwkv_sampler_params d;
    rwkv_sampler_params_default(&d);
    CHECK(d.temperature == 1.0f && d.top_p == 1.0f && d.top_k == 0);
    CHECK(d.presence_penalty == 0 && d.frequency_penalty == 0 && d.penalty_decay == 1.0f);
    rwkv_sampler_params_default(NULL);

    struct {
        const char *name;
        rwkv_sampler_params p;
        int n_vocab;
    } bad[] = {
        {"temperature", d, 10}, {"temperature", d, 10}, {"temperature", d, 10},
        {"top_p", d, 10},       {"top_p", d, 10},       {"top_p", d, 10},
        {"top_k", d, 10},       {"presence_penalty", d, 10},
        {"frequency_penalty", d, 10},                   {"penalty_decay", d, 10},
        {"penalty_decay", d, 10},                       {"penalty_decay", d, 10},
        {"n_vocab", d, 0},      {"n_vocab", d, -5},     {"n_vocab", d, 1 << 25},
    };
    bad[0].p.temperature = -0.5f;
    bad[1].p.temperature = NAN;
    bad[2].p.temperature = INFINITY;
    bad[3].p.top_p = -0.1f;
    bad[4].p.top_p = 1.01f;
    bad[5].p.top_p = NAN;
    bad[6].p.top_k = -1;
    bad[7].p.presence_penalty = INFINITY;
    bad[8].p.frequency_penalty = NAN;
    bad[9].p.penalty_decay = 0.0f;
    bad[10].p.penalty_decay = 1.5f;
    bad[11].p.penalty_decay = NAN;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rwkv_sampler *s = (rwkv_sampler *)&d; /* must stay untouched */
        char err[128] = "";
        int rc = rwkv_sampler_new(&bad[i].p, bad[i].n_vocab, &s, err, sizeof err);
        CHECKF(rc == -EINVAL, "case %zu (%s): rc %d", i, bad[i].name, rc);
        CHECKF(strstr(err, bad[i].name) != NULL, "case %zu: message '%s'", i, err);
        CHECK(s == (rwkv_sampler *)&d);
    }
    rwkv_sampler *s = NULL;
    CHECK(rwkv_sampler_new(NULL, 10, &s, NULL, 0) == -EINVAL && s == NULL);
    CHECK(rwkv_sampler_new(&d, 10, NULL, NULL, 0) == -EINVAL);
    /* Edge values that are allowed. */
    rwkv_sampler_params ok = d;
    ok.temperature = 0;
    ok.top_p = 0;
    ok.top_k = 1000; /* larger than the vocabulary: no cut */
    ok.presence_penalty = -1;
    ok.penalty_decay = 1e-6f;
    CHECK(rwkv_sampler_new(&ok, 10, &s, NULL, 0) == 0 && s != NULL);
    rwkv_sampler_destroy(&s);
    CHECK(s == NULL);
    rwkv_sampler_destroy(&s);
    rwkv_sampler_destroy(NULL);
    CHECK(rwkv_sampler_sample(NULL, NULL) == -EINVAL);
}

static void test_greedy(void)
{
    const float logits[6] = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f, -INFINITY};
    float sc[6];
    rwkv_sampler *t0 = make(0.0f, 1.0f, 0, 6, 1);
    rwkv_sampler *p0 = make(1.0f, 0.0f, 0, 6, 1);
    rwkv_sampler *k1 = make(1.5f, 0.9f, 1, 6, 1);
    for (int i = 0; i < 5; i++) {
        CHECK(draw(t0, logits, 6, sc) == 1); /* tie 1 vs 3: lowest id */
        CHECK(draw(p0, logits, 6, sc) == 1);
        CHECK(draw(k1, logits, 6, sc) == 1);
    }
    /* top_k = 1 equals greedy on random logits too. */
    rwkv_sampler *g = make(0.0f, 1.0f, 0, 1000, 3);
    rwkv_sampler *k = make(1.0f, 1.0f, 1, 1000, 4);
    float *l = malloc(1000 * sizeof *l), *s1 = malloc(1000 * sizeof *s1);
    srand(7);
    int differ = 0;
    for (int it = 0; it < 50; it++) {
        for (int i = 0; i < 1000; i++)
            l[i] = (float)((double)rand() / RAND_MAX * 10.0);
        int32_t a = draw(g, l, 1000, s1), b = draw(k, l, 1000, s1);
        int32_t best = 0;
        for (int i = 1; i < 1000; i++)
            if (l[i] > l[best])
                best = i;
        differ += a != b || a != best;
    }
    CHECK(differ == 0);
    free(l);
    free(s1);
    rwkv_sampler_destroy(&t0);
    rwkv_sampler_destroy(&p0);
    rwkv_sampler_destroy(&k1);
    rwkv_sampler_destroy(&g);
    rwkv_sampler_destroy(&k);
}

static void test_seeds(void)
{
    float logits[16], sc[16];
    for (int i = 0; i < 16; i++)
        logits[i] = (float)(i % 5) * 0.3f;
    rwkv_sampler *a = make(1.0f, 1.0f, 0, 16, 42);
    rwkv_sampler *b = make(1.0f, 1.0f, 0, 16, 42);
    rwkv_sampler *c = make(1.0f, 1.0f, 0, 16, 43);
    int32_t seq_a[200];
    int same_ab = 1, same_ac = 1;
    for (int i = 0; i < 200; i++) {
        seq_a[i] = draw(a, logits, 16, sc);
        int32_t y = draw(b, logits, 16, sc), z = draw(c, logits, 16, sc);
        same_ab &= seq_a[i] == y;
        same_ac &= seq_a[i] == z;
    }
    CHECK(same_ab);
    CHECK(!same_ac);
    /* reset restarts the stream from the seed; set_seed switches streams. */
    rwkv_sampler_reset(a);
    int same = 1;
    for (int i = 0; i < 200; i++)
        same &= draw(a, logits, 16, sc) == seq_a[i];
    CHECK(same);
    rwkv_sampler_set_seed(c, 42);
    same = 1;
    for (int i = 0; i < 200; i++)
        same &= draw(c, logits, 16, sc) == seq_a[i];
    CHECK(same);
    rwkv_sampler_reset(NULL);
    rwkv_sampler_set_seed(NULL, 1);
    rwkv_sampler_destroy(&a);
    rwkv_sampler_destroy(&b);
    rwkv_sampler_destroy(&c);
}

static void test_distributions(void)
{
    /* Temperature 1: softmax. */
    const float l6[6] = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, -1.0f};
    double want[64];
    rwkv_sampler *s = make(1.0f, 1.0f, 0, 6, 11);
    ref_probs(l6, 6, 1.0, 1.0, 0, want);
    check_distribution("softmax", s, l6, 6, want, 200000);
    rwkv_sampler_destroy(&s);

    /* Temperature sharpens and flattens: p^(1/T) renormalised = softmax(logits / T). */
    s = make(0.5f, 1.0f, 0, 6, 12);
    ref_probs(l6, 6, 0.5, 1.0, 0, want);
    CHECK(want[4] > 0.6); /* the top id gains mass (softmax gives it about 0.5) */
    check_distribution("T=0.5", s, l6, 6, want, 100000);
    rwkv_sampler_destroy(&s);
    s = make(3.0f, 1.0f, 0, 6, 13);
    ref_probs(l6, 6, 3.0, 1.0, 0, want);
    check_distribution("T=3", s, l6, 6, want, 100000);
    rwkv_sampler_destroy(&s);

    /* top-p with the exact-mass adjustment: p = .5 .3 .15 .05, top_p .7 keeps {0, 1} and
     * lowers id 1 to .2, so the draw is 5/7 : 2/7. */
    const double p4[4] = {0.5, 0.3, 0.15, 0.05};
    float l4[4];
    logits_of(p4, 4, l4);
    s = make(1.0f, 0.7f, 0, 4, 14);
    const double w07[4] = {5.0 / 7, 2.0 / 7, 0, 0};
    check_distribution("top_p .7", s, l4, 4, w07, 100000);
    rwkv_sampler_destroy(&s);
    s = make(1.0f, 0.9f, 0, 4, 15);
    const double w09[4] = {0.5 / 0.9, 0.3 / 0.9, 0.1 / 0.9, 0};
    check_distribution("top_p .9", s, l4, 4, w09, 100000);
    rwkv_sampler_destroy(&s);

    /* Ties at the cutoff are all kept and share the adjustment: .4 .2 .2 .2 at top_p .5
     * gives .4 and three times 1/30. */
    const double pt[4] = {0.4, 0.2, 0.2, 0.2};
    float lt[4];
    logits_of(pt, 4, lt);
    s = make(1.0f, 0.5f, 0, 4, 16);
    const double wt[4] = {0.8, 1.0 / 15, 1.0 / 15, 1.0 / 15};
    check_distribution("top_p ties", s, lt, 4, wt, 100000);
    rwkv_sampler_destroy(&s);

    /* top-k, ties at the boundary go to the lower id. */
    s = make(1.0f, 1.0f, 2, 4, 17);
    const double wk[4] = {2.0 / 3, 1.0 / 3, 0, 0};
    check_distribution("top_k ties", s, lt, 4, wk, 100000);
    rwkv_sampler_destroy(&s);
    s = make(1.0f, 1.0f, 2, 4, 18);
    const double wk2[4] = {5.0 / 8, 3.0 / 8, 0, 0};
    check_distribution("top_k 2", s, l4, 4, wk2, 100000);
    rwkv_sampler_destroy(&s);

    /* top-k and top-p together: the cutoff comes from the unfiltered distribution. */
    s = make(1.0f, 0.9f, 2, 4, 19);
    check_distribution("top_k 2 + top_p .9", s, l4, 4, wk2, 100000);
    rwkv_sampler_destroy(&s);
    s = make(1.0f, 0.9f, 3, 4, 20);
    check_distribution("top_k 3 + top_p .9", s, l4, 4, w09, 100000);
    rwkv_sampler_destroy(&s);

    /* Random logits and settings against the float64 reference. */
    srand(99);
    const struct {
        float t, p;
        int k;
    } cfg[] = {{1.0f, 1.0f, 0},  {1.0f, 0.85f, 0}, {0.7f, 0.6f, 0},  {1.3f, 0.95f, 10},
               {1.0f, 0.3f, 0},  {0.8f, 1.0f, 5},  {2.0f, 0.5f, 20}, {1.0f, 0.99f, 3}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        float l[48];
        for (int i = 0; i < 48; i++)
            l[i] = (float)((double)rand() / RAND_MAX * 6.0 - 3.0);
        ref_probs(l, 48, cfg[c].t, cfg[c].p, cfg[c].k, want);
        s = make(cfg[c].t, cfg[c].p, cfg[c].k, 48, 100 + c);
        char what[64];
        snprintf(what, sizeof what, "random cfg %zu", c);
        check_distribution(what, s, l, 48, want, 60000);
        rwkv_sampler_destroy(&s);
    }
}

static void test_bans(void)
{
    const float l[4] = {3.0f, 2.0f, 1.0f, 0.0f};
    float sc[4];
    rwkv_sampler *s = make(0.0f, 1.0f, 0, 4, 1);
    CHECK(rwkv_sampler_ban(s, 0) == 0);
    CHECK(rwkv_sampler_ban(s, 0) == 0); /* twice is fine */
    CHECK(rwkv_sampler_ban(s, 4) == -EINVAL);
    CHECK(rwkv_sampler_ban(s, -1) == -EINVAL);
    CHECK(rwkv_sampler_ban(NULL, 0) == -EINVAL);
    CHECK(draw(s, l, 4, sc) == 1);
    rwkv_sampler_ban(s, 1);
    rwkv_sampler_ban(s, 2);
    CHECK(draw(s, l, 4, sc) == 3);
    rwkv_sampler_ban(s, 3);
    CHECK(draw(s, l, 4, sc) == -EDOM);
    rwkv_sampler_reset(s); /* bans survive a reset */
    CHECK(draw(s, l, 4, sc) == -EDOM);
    rwkv_sampler_destroy(&s);

    /* Sampling mode: a banned id is never drawn. */
    s = make(1.0f, 1.0f, 0, 4, 2);
    rwkv_sampler_ban(s, 0);
    int hits = 0;
    for (int i = 0; i < 2000; i++)
        hits += draw(s, l, 4, sc) == 0;
    CHECK(hits == 0);
    rwkv_sampler_destroy(&s);

    /* NaN logits never win; all NaN is -EDOM; +inf takes everything. */
    s = make(1.0f, 0.9f, 0, 4, 3);
    float nanl[4] = {NAN, 1.0f, NAN, 0.5f};
    bool ok = true;
    for (int i = 0; i < 500; i++) {
        int32_t id = draw(s, nanl, 4, sc);
        ok = ok && (id == 1 || id == 3);
    }
    CHECK(ok);
    float alln[4] = {NAN, NAN, NAN, NAN};
    CHECK(draw(s, alln, 4, sc) == -EDOM);
    float infl[4] = {1.0f, INFINITY, 2.0f, 0.0f};
    ok = true;
    for (int i = 0; i < 100; i++)
        ok = ok && draw(s, infl, 4, sc) == 1;
    CHECK(ok);
    rwkv_sampler_destroy(&s);
}

static rwkv_sampler *make_pen(float presence, float frequency, float decay)
{
    rwkv_sampler_params p;
    rwkv_sampler_params_default(&p);
    p.temperature = 0;
    p.presence_penalty = presence;
    p.frequency_penalty = frequency;
    p.penalty_decay = decay;
    rwkv_sampler *s = NULL;
    CHECK(rwkv_sampler_new(&p, 3, &s, NULL, 0) == 0);
    return s;
}

static void test_penalties(void)
{
    const float l[3] = {1.0f, 0.9f, 0.0f};
    float sc[3];

    /* Presence: one occurrence costs 0.2 regardless of count. */
    rwkv_sampler *s = make_pen(0.2f, 0.0f, 1.0f);
    CHECK(draw(s, l, 3, sc) == 0);
    rwkv_sampler_accept(s, 0, 1.0f);
    CHECK(draw(s, l, 3, sc) == 1);
    rwkv_sampler_reset(s);
    CHECK(draw(s, l, 3, sc) == 0);
    /* Weight 0 (pip's whitespace/digit rule) still enters the map: presence applies. */
    rwkv_sampler_accept(s, 0, 0.0f);
    CHECK(draw(s, l, 3, sc) == 1);
    rwkv_sampler_accept(s, 7, 1.0f); /* out of range: ignored */
    rwkv_sampler_accept(s, -1, 1.0f);
    rwkv_sampler_accept(NULL, 0, 1.0f);
    rwkv_sampler_destroy(&s);

    /* Frequency: grows with the count. */
    s = make_pen(0.0f, 0.04f, 1.0f);
    rwkv_sampler_accept(s, 0, 1.0f);
    CHECK(draw(s, l, 3, sc) == 0); /* 0.96 */
    rwkv_sampler_accept(s, 0, 1.0f);
    CHECK(draw(s, l, 3, sc) == 0); /* 0.92 */
    rwkv_sampler_accept(s, 0, 1.0f);
    CHECK(draw(s, l, 3, sc) == 1); /* 0.88 */
    rwkv_sampler_destroy(&s);

    /* Weight 0 with only a frequency penalty costs nothing. */
    s = make_pen(0.0f, 1.0f, 1.0f);
    rwkv_sampler_accept(s, 0, 0.0f);
    CHECK(draw(s, l, 3, sc) == 0);
    rwkv_sampler_destroy(&s);

    /* Decay: the count of id 0 halves with every later accepted token. */
    rwkv_sampler *nd = make_pen(0.0f, 0.15f, 1.0f);
    rwkv_sampler *dd = make_pen(0.0f, 0.15f, 0.5f);
    rwkv_sampler_accept(nd, 0, 1.0f);
    rwkv_sampler_accept(dd, 0, 1.0f);
    for (int i = 0; i < 3; i++) {
        rwkv_sampler_accept(nd, 2, 1.0f);
        rwkv_sampler_accept(dd, 2, 1.0f);
    }
    CHECK(draw(nd, l, 3, sc) == 1); /* 1 - 0.15 < 0.9 */
    CHECK(draw(dd, l, 3, sc) == 0); /* 1 - 0.15/8 > 0.9 */
    /* Decay applies before the new count is added: 0.5 * 1 + 1 = 1.5 -> 0.775. */
    rwkv_sampler *d2 = make_pen(0.0f, 0.15f, 0.5f);
    rwkv_sampler_accept(d2, 1, 1.0f);
    rwkv_sampler_accept(d2, 1, 1.0f);
    float l2[3] = {0.7f, 1.0f, 0.0f};
    CHECK(draw(d2, l2, 3, sc) == 1); /* 1 - 0.225 = 0.775 > 0.7 */
    rwkv_sampler_accept(d2, 1, 1.0f); /* 0.75 + 1 = 1.75 -> 0.7375 */
    CHECK(draw(d2, l2, 3, sc) == 1);
    rwkv_sampler_accept(d2, 1, 1.0f); /* 0.875 + 1 = 1.875 -> 0.71875 */
    CHECK(draw(d2, l2, 3, sc) == 1);
    rwkv_sampler_accept(d2, 1, 1.0f); /* 1.9375 -> 0.709 */
    rwkv_sampler_accept(d2, 1, 1.0f); /* 1.96875 -> 0.7047 */
    CHECK(draw(d2, l2, 3, sc) == 1);  /* converges to 2 -> 0.7: never below */
    rwkv_sampler_destroy(&nd);
    rwkv_sampler_destroy(&dd);
    rwkv_sampler_destroy(&d2);

    /* Penalties change a sampled distribution too (presence -inf-like boost of others). */
    rwkv_sampler_params p;
    rwkv_sampler_params_default(&p);
    p.presence_penalty = 50.0f;
    p.seed = 5;
    s = NULL;
    CHECK(rwkv_sampler_new(&p, 3, &s, NULL, 0) == 0);
    rwkv_sampler_accept(s, 0, 1.0f);
    rwkv_sampler_accept(s, 1, 1.0f);
    int other = 0;
    for (int i = 0; i < 1000; i++)
        other += draw(s, l, 3, sc) != 2;
    CHECK(other == 0);
    rwkv_sampler_destroy(&s);
}

/* The paths for large vocabularies (probability bins, the top-k heap with block skipping)
 * against the float64 reference, on distributions built to send many ids into them. */
static void large_vocab_paths(void)
{
    const int V = 8192;
    float *l = malloc((size_t)V * sizeof *l);
    double *want = malloc((size_t)V * sizeof *want);
    double *p = malloc((size_t)V * sizeof *p);

    /* A head of five and a flat tail of ids each above the top-p floor, so all 8192 are
     * candidates and the cutoff (with a tie) falls inside the head: bins, then select. */
    const double head[5] = {0.4, 0.2, 0.136, 0.05, 0.05};
    for (int i = 0; i < V; i++)
        p[i] = i < 5 ? head[i] : 0.164 / (V - 5);
    logits_of(p, V, l);
    ref_probs(l, V, 1.0, 0.8, 0, want);
    CHECK(fabs(want[0] - 0.5) < 1e-3 && fabs(want[3] - 0.04) < 1e-3 && want[5] == 0);
    rwkv_sampler *s = make(1.0f, 0.8f, 0, V, 21);
    check_distribution("bins top_p", s, l, V, want, 8000);
    rwkv_sampler_destroy(&s);
    /* The same with top-k cutting inside the tie and a temperature. */
    ref_probs(l, V, 0.7, 0.8, 4, want);
    s = make(0.7f, 0.8f, 4, V, 22);
    check_distribution("bins top_p + top_k", s, l, V, want, 8000);
    rwkv_sampler_destroy(&s);

    /* The cutoff inside a bin that holds several distinct values (.05 .049 .048 .047 share
     * one): the select inside the bin must continue from the mass of the bins above. */
    const double head2[7] = {0.35, 0.2, 0.1, 0.05, 0.049, 0.048, 0.047};
    for (int i = 0; i < V; i++)
        p[i] = i < 7 ? head2[i] : 0.156 / (V - 7);
    logits_of(p, V, l);
    ref_probs(l, V, 1.0, 0.76, 0, want);
    CHECK(want[5] > 0.01 && want[5] < 0.02 && want[6] == 0);
    s = make(1.0f, 0.76f, 0, V, 23);
    check_distribution("bins top_p inside a bin", s, l, V, want, 8000);
    rwkv_sampler_destroy(&s);

    /* Random logits with a strong head; top-k above the heap limit goes through the bins,
     * small top-k through the heap. */
    srand(4321);
    for (int i = 0; i < V; i++)
        l[i] = (float)((double)rand() / RAND_MAX * 4.0) + (i % 1000 == 7 ? 6.0f : 0.0f);
    const int ks[] = {2000, 40, 3, 1500};
    for (size_t j = 0; j < sizeof ks / sizeof ks[0]; j++) {
        ref_probs(l, V, 1.0, 1.0, ks[j], want);
        s = make(1.0f, 1.0f, ks[j], V, 30 + j);
        char what[64];
        snprintf(what, sizeof what, "large top_k %d", ks[j]);
        check_distribution(what, s, l, V, want, 8000);
        rwkv_sampler_destroy(&s);
    }

    /* Many equal logits: ties at the top-k boundary go to the lowest ids, on both paths. */
    for (int i = 0; i < V; i++)
        l[i] = (float)((i * 7) % 13);
    const int tk[] = {100, 1200};
    for (size_t j = 0; j < sizeof tk / sizeof tk[0]; j++) {
        ref_probs(l, V, 1.0, 1.0, tk[j], want);
        s = make(1.0f, 1.0f, tk[j], V, 40 + j);
        char what[64];
        snprintf(what, sizeof what, "tied top_k %d", tk[j]);
        check_distribution(what, s, l, V, want, 8000);
        rwkv_sampler_destroy(&s);
    }
    /* Ties at the top-p cutoff on the bins path: 13 levels, the cutoff inside a level. */
    ref_probs(l, V, 1.0, 0.5, 0, want);
    s = make(1.0f, 0.5f, 0, V, 50);
    check_distribution("tied top_p", s, l, V, want, 8000);
    rwkv_sampler_destroy(&s);
    /* No truncation, with a temperature: the direct path. */
    ref_probs(l, V, 1.6, 1.0, 0, want);
    s = make(1.6f, 1.0f, 0, V, 51);
    check_distribution("no truncation T=1.6", s, l, V, want, 8000);
    rwkv_sampler_destroy(&s);
    free(l);
    free(want);
    free(p);
}

/* A World-sized vocabulary: the selection must not degrade to a full sort per draw. */
static void test_large_vocab(void)
{
    const int V = 65536;
    float *l = malloc((size_t)V * sizeof *l), *sc = malloc((size_t)V * sizeof *sc);
    srand(1234);
    for (int i = 0; i < V; i++) {
        /* Roughly the shape of LM logits: a long tail and a few strong candidates. */
        double u = ((double)rand() + 1) / ((double)RAND_MAX + 2);
        l[i] = (float)(-2.0 * log(-log(u)));
    }
    const struct {
        float t, p;
        int k;
    } cfg[] = {{1.0f, 0.85f, 0}, {1.0f, 1.0f, 0}, {0.8f, 0.5f, 40}, {1.0f, 1.0f, 100},
               {1.0f, 0.3f, 0}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        rwkv_sampler *s = make(cfg[c].t, cfg[c].p, cfg[c].k, V, 9);
        const int n = 300;
        bool ok = true;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (int i = 0; i < n; i++) {
            int32_t id = draw(s, l, V, sc);
            ok = ok && id >= 0 && id < V;
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        double us = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) /
                    1e3 / n;
        CHECK(ok);
        fprintf(stderr, "V=%d T=%.2f top_p=%.2f top_k=%d: %.1f us/draw\n", V, (double)cfg[c].t,
                (double)cfg[c].p, cfg[c].k, us);
        rwkv_sampler_destroy(&s);
    }
    /* The kept set matches the reference: every draw lies where the reference has mass. */
    large_vocab_paths();
    double *want = malloc((size_t)V * sizeof *want);
    ref_probs(l, V, 1.0, 0.3, 0, want);
    rwkv_sampler *s = make(1.0f, 0.3f, 0, V, 10);
    int outside = 0;
    for (int i = 0; i < 2000; i++) {
        int32_t id = draw(s, l, V, sc);
        outside += id < 0 || want[id] == 0;
    }
    CHECK(outside == 0);
    rwkv_sampler_destroy(&s);
    free(want);
    free(l);
    free(sc);
}

int main(void)
{
    test_params();
    test_greedy();
    test_seeds();
    test_distributions();
    test_bans();
    test_penalties();
    test_large_vocab();
    return test_finish("test_sampler");
}
