/* sampler.c — logits to one token id (spec §6.1 order, §6.3 penalties).
 *
 * What it is: bans and decaying presence/frequency penalties on the logits, an fp32
 * softmax, top-k and top-p truncation found by selection rather than a full sort, the
 * temperature applied to the truncated probabilities, and a draw from a per-sampler
 * xoshiro256** stream.
 * What it is not: bit-compatible with torch.multinomial (the same seed gives the same draws
 * here, not there), nor the pip sampler of §6.2 (top-p before top-k, no tie adjustment).
 * Invariant: rwkv_sampler_sample never allocates; all scratch is sized by n_vocab in _new.
 * Candidates are ordered by (probability descending, id ascending), a strict total order,
 * so every selection below is deterministic and a seed reproduces a run exactly.
 */
#include "rwkv_sampler.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VOCAB (1 << 24)
/* Probability bins for large candidate sets: the top bits of a positive float (exponent
 * and 4 mantissa bits) order like the values, and p <= 1 needs bins 0..2032. BIN_WAYS
 * interleaved histograms break the store-to-load chain of runs that hit one bin. Below
 * BIN_MIN_N candidates a plain quickselect is cheaper than a histogram. */
#define N_BINS 2048
#define BIN_SHIFT 19
#define BIN_WAYS 4
#define BIN_MIN_N 4096
/* top-k alone with k up to HEAP_MAX_K streams the vocabulary through a heap of k. */
#define HEAP_MAX_K 1024

typedef struct {
    float p;
    int32_t id;
} cand;

struct rwkv_sampler {
    rwkv_sampler_params par;
    int n_vocab;
    uint64_t rng[4];      /* xoshiro256** state */
    uint8_t *banned;      /* (n_vocab) 1 = never drawn */
    int32_t *ban_list;    /* (n_vocab) the banned ids, n_banned of them */
    int n_banned;
    float *occurrence;    /* (n_vocab) decayed count per recorded id */
    uint8_t *recorded;    /* (n_vocab) 1 = id is in the occurrence map */
    int32_t *rec_list;    /* (n_vocab) the recorded ids, n_recorded of them */
    int n_recorded;
    float *e;             /* (n_vocab) scratch: exp(logit - max) */
    cand *cands;          /* (n_vocab) scratch for one draw */
    double bin_mass[BIN_WAYS][N_BINS];    /* scratch: probability mass per bin */
    uint32_t bin_count[BIN_WAYS][N_BINS]; /* scratch: candidates per bin */
};

/* ---------------------------------------------------------------- RNG */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void rng_seed(uint64_t s[4], uint64_t seed)
{
    /* splitmix64 expands the seed so that nearby seeds give unrelated streams and the
     * state is never all zero. */
    for (int i = 0; i < 4; i++)
        s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(uint64_t s[4])
{
    uint64_t r = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t s[4])
{
    return (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

/* ---------------------------------------------------------------- params */

void rwkv_sampler_params_default(rwkv_sampler_params *p)
{
    if (!p)
        return;
    *p = (rwkv_sampler_params){
        .temperature = 1.0f,
        .top_p = 1.0f,
        .top_k = 0,
        .presence_penalty = 0.0f,
        .frequency_penalty = 0.0f,
        .penalty_decay = 1.0f,
        .seed = 0,
    };
}

static int bad(char *err, size_t err_len, const char *what)
{
    if (err && err_len)
        snprintf(err, err_len, "sampler: %s", what);
    return -EINVAL;
}

static int check_params(const rwkv_sampler_params *p, int n_vocab, char *err, size_t err_len)
{
    if (!p)
        return bad(err, err_len, "params is NULL");
    if (n_vocab <= 0 || n_vocab > MAX_VOCAB)
        return bad(err, err_len, "n_vocab must be in 1..16777216");
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature))
        return bad(err, err_len, "temperature must be finite and >= 0");
    if (!(p->top_p >= 0.0f && p->top_p <= 1.0f))
        return bad(err, err_len, "top_p must be in [0, 1]");
    if (p->top_k < 0)
        return bad(err, err_len, "top_k must be >= 0");
    if (!isfinite(p->presence_penalty))
        return bad(err, err_len, "presence_penalty must be finite");
    if (!isfinite(p->frequency_penalty))
        return bad(err, err_len, "frequency_penalty must be finite");
    if (!(p->penalty_decay > 0.0f && p->penalty_decay <= 1.0f))
        return bad(err, err_len, "penalty_decay must be in (0, 1]");
    return 0;
}

/* ---------------------------------------------------------------- life cycle */

void rwkv_sampler_destroy(rwkv_sampler **s)
{
    if (!s || !*s)
        return;
    rwkv_sampler *x = *s;
    free(x->banned);
    free(x->ban_list);
    free(x->occurrence);
    free(x->recorded);
    free(x->rec_list);
    free(x->e);
    free(x->cands);
    free(x);
    *s = NULL;
}

int rwkv_sampler_new(const rwkv_sampler_params *p, int n_vocab, rwkv_sampler **out, char *err,
                     size_t err_len)
{
    if (!out)
        return bad(err, err_len, "out is NULL");
    int rc = check_params(p, n_vocab, err, err_len);
    if (rc < 0)
        return rc;
    rwkv_sampler *s = calloc(1, sizeof *s);
    if (!s)
        goto oom;
    size_t n = (size_t)n_vocab;
    s->par = *p;
    s->n_vocab = n_vocab;
    s->banned = calloc(n, 1);
    s->ban_list = malloc(n * sizeof *s->ban_list);
    s->occurrence = calloc(n, sizeof *s->occurrence);
    s->recorded = calloc(n, 1);
    s->rec_list = malloc(n * sizeof *s->rec_list);
    s->e = malloc(n * sizeof *s->e);
    s->cands = malloc(n * sizeof *s->cands);
    if (!s->banned || !s->ban_list || !s->occurrence || !s->recorded || !s->rec_list ||
        !s->e || !s->cands)
        goto oom;
    rng_seed(s->rng, p->seed);
    *out = s;
    return 0;
oom:
    rwkv_sampler_destroy(&s);
    if (err && err_len)
        snprintf(err, err_len, "sampler: out of memory");
    return -ENOMEM;
}

int rwkv_sampler_ban(rwkv_sampler *s, int32_t id)
{
    if (!s || id < 0 || id >= s->n_vocab)
        return -EINVAL;
    if (!s->banned[id]) {
        s->banned[id] = 1;
        s->ban_list[s->n_banned++] = id;
    }
    return 0;
}

void rwkv_sampler_accept(rwkv_sampler *s, int32_t id, float weight)
{
    if (!s || id < 0 || id >= s->n_vocab || !isfinite(weight))
        return;
    if (s->par.penalty_decay != 1.0f)
        for (int i = 0; i < s->n_recorded; i++)
            s->occurrence[s->rec_list[i]] *= s->par.penalty_decay;
    if (!s->recorded[id]) {
        s->recorded[id] = 1;
        s->rec_list[s->n_recorded++] = id;
        s->occurrence[id] = 0.0f;
    }
    s->occurrence[id] += weight;
}

void rwkv_sampler_reset(rwkv_sampler *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n_recorded; i++) {
        s->occurrence[s->rec_list[i]] = 0.0f;
        s->recorded[s->rec_list[i]] = 0;
    }
    s->n_recorded = 0;
    rng_seed(s->rng, s->par.seed);
}

void rwkv_sampler_set_seed(rwkv_sampler *s, uint64_t seed)
{
    if (!s)
        return;
    s->par.seed = seed;
    rng_seed(s->rng, seed);
}

/* ---------------------------------------------------------------- selection */

static inline bool before(cand a, cand b)
{
    return a.p > b.p || (a.p == b.p && a.id < b.id);
}

static inline void swap_cand(cand *a, cand *b)
{
    cand t = *a;
    *a = *b;
    *b = t;
}

/* Partitions c[lo..hi) (hi - lo >= 2) around a median-of-three pivot: afterwards the
 * returned position holds the pivot, everything left of it comes before it in the order,
 * everything right after. *mass_before gets the probability mass left of the pivot. */
static size_t partition(cand *c, size_t lo, size_t hi, double *mass_before)
{
    size_t mid = lo + (hi - lo) / 2, last = hi - 1;
    if (before(c[mid], c[lo]))
        swap_cand(&c[mid], &c[lo]);
    if (before(c[last], c[lo]))
        swap_cand(&c[last], &c[lo]);
    if (before(c[mid], c[last]))
        swap_cand(&c[mid], &c[last]);
    cand piv = c[last]; /* now the median of the three */
    size_t store = lo;
    double m = 0.0;
    /* Branch-free Lomuto: always swap, advance only past an element that comes first.
     * The comparison outcome is random, so a branch here would mispredict half the time. */
    for (size_t i = lo; i < last; i++) {
        cand x = c[i];
        bool first = before(x, piv);
        c[i] = c[store];
        c[store] = x;
        m += first ? (double)x.p : 0.0;
        store += first;
    }
    swap_cand(&c[store], &c[last]);
    *mass_before = m;
    return store;
}

/* Rearranges c[0..n) so that c[0..k) are the k first candidates in the order (0 < k < n). */
static void select_top_k(cand *c, size_t n, size_t k)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        double unused;
        size_t pos = partition(c, lo, hi, &unused);
        if (pos == k || pos + 1 == k)
            return;
        if (pos < k)
            lo = pos + 1;
        else
            hi = pos;
    }
}

/* Position i* in the order of the first candidate at which the running mass reaches
 * `target` (searchsorted-left over the cumulative sum), with c[0..i*) rearranged to hold
 * the candidates before it. Returns n - 1 if the total falls short by rounding. */
static size_t select_mass(cand *c, size_t n, double target)
{
    size_t lo = 0, hi = n;
    double acc = 0.0; /* mass of c[0..lo) */
    while (hi - lo > 1) {
        double m;
        size_t pos = partition(c, lo, hi, &m);
        if (acc + m >= target) {
            hi = pos; /* i* lies left of the pivot */
            continue;
        }
        acc += m;
        if (acc + c[pos].p >= target)
            return pos;
        acc += c[pos].p;
        lo = pos + 1;
    }
    /* acc < target always holds, so the range can only empty out (lo == n) when the
     * whole mass falls short of target by rounding: then everything is kept. */
    return lo < hi ? lo : n - 1;
}

static inline uint32_t bin_of(float p)
{
    uint32_t b;
    memcpy(&b, &p, sizeof b);
    b >>= BIN_SHIFT;
    return b < N_BINS ? b : N_BINS - 1; /* p a hair above 1 after rounding */
}

/* Fills the histograms with c[0..n); afterwards way 0 holds the totals. */
static void bin_fill(rwkv_sampler *s, const cand *c, size_t n, bool with_mass)
{
    memset(s->bin_count, 0, sizeof s->bin_count);
    if (with_mass)
        memset(s->bin_mass, 0, sizeof s->bin_mass);
    for (size_t i = 0; i < n; i++) {
        uint32_t b = bin_of(c[i].p);
        s->bin_count[i % BIN_WAYS][b]++;
        if (with_mass)
            s->bin_mass[i % BIN_WAYS][b] += c[i].p;
    }
    for (int w = 1; w < BIN_WAYS; w++) {
        for (int b = 0; b < N_BINS; b++) {
            s->bin_count[0][b] += s->bin_count[w][b];
            if (with_mass)
                s->bin_mass[0][b] += s->bin_mass[w][b];
        }
    }
}

/* Moves the candidates of bins above `bin` to the front, then those of `bin` right after
 * them; returns where the latter start. Unlike partition() this branches: nearly all
 * candidates sit in lower bins, so the branch predicts well and the swaps are rare. */
static size_t bin_split(cand *c, size_t n, uint32_t bin)
{
    size_t a = 0;
    for (size_t i = 0; i < n; i++)
        if (bin_of(c[i].p) > bin)
            swap_cand(&c[i], &c[a++]);
    size_t b = a;
    for (size_t i = a; i < n; i++)
        if (bin_of(c[i].p) == bin)
            swap_cand(&c[i], &c[b++]);
    return a;
}

/* select_top_k for any n: a large set is first narrowed to the bin of the k-th candidate. */
static void select_top_k_any(rwkv_sampler *s, cand *c, size_t n, size_t k)
{
    if (n < BIN_MIN_N) {
        select_top_k(c, n, k);
        return;
    }
    bin_fill(s, c, n, false);
    size_t above = 0;
    uint32_t b = N_BINS - 1;
    while (above + s->bin_count[0][b] < k) /* ends: the counts add up to n > k */
        above += s->bin_count[0][b--];
    size_t a = bin_split(c, n, b);
    if (k - a < s->bin_count[0][b])
        select_top_k(c + a, s->bin_count[0][b], k - a);
}

/* select_mass for any n: a large set is first narrowed to the bin in which the running
 * mass (largest bins first) reaches target. */
static size_t select_mass_any(rwkv_sampler *s, cand *c, size_t n, double target)
{
    if (n < BIN_MIN_N)
        return select_mass(c, n, target);
    bin_fill(s, c, n, true);
    double acc = 0.0;
    uint32_t b = N_BINS - 1;
    while (b > 0 && acc + s->bin_mass[0][b] < target)
        acc += s->bin_mass[0][b--];
    /* Only when the total falls short of target by rounding can that stop on an empty
     * bin: step up to the lowest non-empty one, whose select then returns its last
     * candidate, i.e. everything is kept. */
    while (s->bin_count[0][b] == 0) {
        b++;
        acc -= s->bin_mass[0][b];
    }
    size_t a = bin_split(c, n, b);
    return a + select_mass(c + a, s->bin_count[0][b], target - acc);
}

/* Heap order: the root is the candidate that comes last, the first to be displaced. */
static inline bool after(cand a, cand b)
{
    return before(b, a);
}

static void heap_sift_down(cand *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && after(h[l], h[m]))
            m = l;
        if (r < n && after(h[r], h[m]))
            m = r;
        if (m == i)
            return;
        swap_cand(&h[i], &h[m]);
        i = m;
    }
}

/* The k first ids (p > 0) of e[0..V) in the order, streamed through a heap of k: after the
 * heap fills, an id only needs one compare against the root, and whole blocks of 16 below
 * the root are skipped with a vectorisable test. Returns the count (<= k), in c[0..). */
static size_t collect_top_k(cand *c, const float *e, int V, size_t k)
{
    size_t n = 0;
    int i = 0;
    for (; i < V && n < k; i++) {
        if (!(e[i] > 0.0f))
            continue;
        c[n] = (cand){e[i], i};
        /* sift up */
        size_t j = n++;
        while (j > 0 && after(c[j], c[(j - 1) / 2])) {
            swap_cand(&c[j], &c[(j - 1) / 2]);
            j = (j - 1) / 2;
        }
    }
    while (i < V) {
        float root = c[0].p; /* an equal e comes later in id order, so it never enters */
        if (i + 16 <= V) {
            int any = 0;
            for (int j = 0; j < 16; j++)
                any |= e[i + j] > root;
            if (!any) {
                i += 16;
                continue;
            }
        }
        int end = i + 16 <= V ? i + 16 : V;
        for (; i < end; i++) {
            if (e[i] > c[0].p) {
                c[0] = (cand){e[i], i};
                heap_sift_down(c, n, 0);
            }
        }
    }
    return n;
}

/* Ids with e > 0 and e >= floor_e, as (e, id); blocks of 16 wholly below the floor are
 * skipped with a vectorisable test. */
static size_t collect_above(cand *c, const float *e, int V, float floor_e)
{
    size_t n = 0;
    int i = 0;
    for (; i + 16 <= V; i += 16) {
        int any = 0;
        for (int j = 0; j < 16; j++)
            any |= e[i + j] >= floor_e && e[i + j] > 0.0f;
        if (!any)
            continue;
        for (int j = i; j < i + 16; j++)
            if (e[j] >= floor_e && e[j] > 0.0f)
                c[n++] = (cand){e[j], j};
    }
    for (; i < V; i++)
        if (e[i] >= floor_e && e[i] > 0.0f)
            c[n++] = (cand){e[i], i};
    return n;
}

/* ---------------------------------------------------------------- sample */

/* exp(x) for x <= 0 in a form compilers vectorise: x = n ln2 + r with |r| <= ln2/2 (ln2
 * split in two for an exact product), e^r by its degree-7 Taylor polynomial (truncation
 * error below 1e-8 relative), 2^n put into the exponent bits. x < -87 (results below
 * about 1e-38), -inf and NaN give exactly 0, so banned ids keep probability 0.
 * The range test is done on the bit pattern with masks: a float compare-and-select would
 * stop GCC from vectorising the loop (it will not if-convert possibly trapping compares),
 * and converting -inf or NaN to int would be undefined. */
static inline float exp_nonpos(float x)
{
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    /* In range: +0, or a negative number (sign bit set) of magnitude <= 87 (0xC2AE0000). */
    uint32_t ok = (uint32_t)(b <= 0xC2AE0000u) & (uint32_t)(b >= 0x80000000u || b == 0);
    uint32_t mask = 0u - ok;
    b = (b & mask) | (0xC2AE0000u & ~mask);
    float xc;
    memcpy(&xc, &b, sizeof xc);
    float t = xc * 1.44269504088896341f;
    int n = (int)(t - 0.5f); /* round to nearest for t <= 0 */
    float fn = (float)n;
    float r = xc - fn * 0.693145751953125f - fn * 1.428606765330187e-06f;
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t sb = (n + 127) * (1 << 23);
    float scale;
    memcpy(&scale, &sb, sizeof scale);
    float y = p * scale;
    uint32_t yb;
    memcpy(&yb, &y, sizeof yb);
    yb &= mask;
    memcpy(&y, &yb, sizeof y);
    return y;
}

/* Largest value of x[0..n), NaN ignored; -inf when there is none. Eight lanes so that the
 * loop vectorises (a single running max is one long dependency chain). */
static float max_value(const float *x, int n)
{
    float lane[8];
    for (int j = 0; j < 8; j++)
        lane[j] = -INFINITY;
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            lane[j] = x[i + j] > lane[j] ? x[i + j] : lane[j];
    for (; i < n; i++)
        lane[0] = x[i] > lane[0] ? x[i] : lane[0];
    float m = lane[0];
    for (int j = 1; j < 8; j++)
        m = lane[j] > m ? lane[j] : m;
    return m;
}

/* Argmax, lowest id on ties; NaN never wins. -EDOM if no logit is above -inf. */
static int32_t argmax(const float *x, int n)
{
    float m = max_value(x, n);
    if (!(m > -INFINITY))
        return -EDOM;
    int32_t i = 0;
    while (x[i] != m)
        i++;
    return i;
}

/* Sum of x[0..n) in eight float64 lanes (vectorisable, and exact enough for 2^24 terms). */
static double sum_values(const float *x, int n)
{
    double lane[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            lane[j] += x[i + j];
    for (; i < n; i++)
        lane[0] += x[i];
    double s = 0.0;
    for (int j = 0; j < 8; j++)
        s += lane[j];
    return s;
}

/* No truncation: the weights are softmax(logits / T), drawn straight from the scratch. */
static int32_t draw_all(rwkv_sampler *s, const float *logits, float *e, int V, float mx,
                        double sum)
{
    float t = s->par.temperature;
    if (t != 1.0f) {
        float inv_t = 1.0f / t;
        for (int i = 0; i < V; i++)
            e[i] = exp_nonpos((logits[i] - mx) * inv_t);
        sum = sum_values(e, V);
    }
    double u = rng_uniform(s->rng) * sum, acc = 0.0;
    int32_t last = -1;
    for (int i = 0; i < V; i++) {
        if (!(e[i] > 0.0f))
            continue;
        acc += e[i];
        last = i;
        if (u < acc)
            return i;
    }
    return last; /* u landed past the rounded total; the max has e = 1, so last >= 0 */
}

int32_t rwkv_sampler_sample(rwkv_sampler *s, float *logits)
{
    if (!s || !logits)
        return -EINVAL;
    const int V = s->n_vocab;
    const rwkv_sampler_params *P = &s->par;

    for (int i = 0; i < s->n_banned; i++)
        logits[s->ban_list[i]] = -INFINITY;
    for (int i = 0; i < s->n_recorded; i++) {
        int32_t id = s->rec_list[i];
        logits[id] -= P->presence_penalty + s->occurrence[id] * P->frequency_penalty;
    }

    if (P->temperature == 0.0f || P->top_p == 0.0f || P->top_k == 1)
        return argmax(logits, V);

    /* Softmax numerators e = exp(logit - max) into scratch; logits stay as they are, the
     * temperature step below reads them again. */
    float mx = max_value(logits, V);
    if (!(mx > -INFINITY))
        return -EDOM;
    float *e = s->e;
    if (isinf(mx)) { /* +inf logits share all the mass */
        for (int i = 0; i < V; i++)
            e[i] = logits[i] == mx ? 1.0f : 0.0f;
    } else {
        for (int i = 0; i < V; i++)
            e[i] = exp_nonpos(logits[i] - mx);
    }
    double sum = sum_values(e, V);
    float inv = (float)(1.0 / sum);

    bool use_top_p = P->top_p < 1.0f;
    size_t top_k = P->top_k > 0 ? (size_t)P->top_k : SIZE_MAX;
    if (!use_top_p && top_k >= (size_t)V && !isinf(mx))
        return draw_all(s, logits, e, V, mx, sum);

    /* Candidates: (p, id) for ids with p > 0 that can survive truncation. With top-p on,
     * no id with p < (1 - top_p) / V can be kept: all of them together hold less than
     * 1 - top_p, so the ids above that bound already reach top_p and the cutoff lies at or
     * above it. Filtering on it (with slack for rounding) leaves only the head of a peaked
     * distribution. With top-k alone a heap of k does the same job. */
    cand *c = s->cands;
    size_t n;
    if (use_top_p)
        n = collect_above(c, e, V, (float)((1.0 - P->top_p) / V * 0.5 * sum));
    else if (top_k <= HEAP_MAX_K && top_k < (size_t)V)
        n = collect_top_k(c, e, V, top_k);
    else
        n = collect_above(c, e, V, 0.0f);
    if (n == 0)
        return argmax(logits, V); /* unreachable: the max has e = 1 */
    for (size_t i = 0; i < n; i++)
        c[i].p *= inv;

    /* top-p on the unfiltered distribution, then intersect with top-k (spec §6.1). */
    size_t kept = n;
    float cutoff = 0.0f;
    if (use_top_p) {
        size_t istar = select_mass_any(s, c, n, (double)P->top_p);
        cutoff = c[istar].p;
        kept = istar + 1;
        /* Ties with the cutoff value survive "p < cutoff -> 0" too; bring them forward. */
        for (size_t i = kept; i < n; i++)
            if (c[i].p == cutoff)
                swap_cand(&c[i], &c[kept++]);
    }
    if (top_k < kept) {
        select_top_k_any(s, c, kept, top_k);
        kept = top_k;
    }
    bool adjusted = false;
    float adj = 0.0f;
    if (use_top_p) {
        /* Exact-mass adjustment: the ids at the cutoff share what makes the kept mass
         * exactly top_p (a decrease, or an increase when top-k cut deeper). */
        double mass = 0.0;
        size_t n_tie = 0;
        for (size_t i = 0; i < kept; i++) {
            mass += c[i].p;
            n_tie += c[i].p == cutoff;
        }
        if (n_tie) {
            adj = cutoff + (float)(((double)P->top_p - mass) / (double)n_tie);
            if (!(adj > 0.0f))
                adj = 0.0f;
            adjusted = adj != cutoff;
        }
    }

    /* Weights: p, or with a temperature p^(1/T) on the truncated probabilities, scaled by
     * the largest so that a small T cannot underflow every weight. For an unadjusted id
     * (p / pmax)^(1/T) = exp((logit - max - log(sum * pmax)) / T), which costs one cheap
     * exp instead of a powf: this is the whole vocabulary when nothing was truncated. */
    double total = 0.0;
    if (P->temperature == 1.0f) {
        for (size_t i = 0; i < kept; i++) {
            if (adjusted && c[i].p == cutoff)
                c[i].p = adj;
            total += c[i].p;
        }
    } else {
        float pmax = 0.0f;
        for (size_t i = 0; i < kept; i++) {
            float p = adjusted && c[i].p == cutoff ? adj : c[i].p;
            pmax = p > pmax ? p : pmax;
        }
        if (!(pmax > 0.0f))
            return argmax(logits, V);
        float inv_t = 1.0f / P->temperature;
        float shift = isinf(mx) ? 0.0f : (float)log(sum * (double)pmax);
        for (size_t i = 0; i < kept; i++) {
            float w;
            if ((adjusted && c[i].p == cutoff) || isinf(mx))
                w = powf((adjusted && c[i].p == cutoff ? adj : c[i].p) / pmax, inv_t);
            else
                w = exp_nonpos(fminf((logits[c[i].id] - mx - shift) * inv_t, 0.0f));
            c[i].p = w;
            total += w;
        }
    }

    if (!(total > 0.0))
        return argmax(logits, V); /* every kept weight rounded to 0 */
    double u = rng_uniform(s->rng) * total, acc = 0.0;
    size_t last_pos = 0;
    for (size_t i = 0; i < kept; i++) {
        if (c[i].p <= 0.0f)
            continue;
        acc += c[i].p;
        last_pos = i;
        if (u < acc)
            return c[i].id;
    }
    return c[last_pos].id; /* u landed past the rounded total */
}
