/* test_backend_cmp — a backend against the cpu reference on the same random token streams.
 *
 * Usage: test_backend_cmp MODEL.pth BACKEND WEIGHTS TOL_ABS [TOL_REL]
 * For batches of 1, 7 and 64 rows (env RWKV_CMP_BATCHES, e.g. "1,7,64,1024", sets others) (each row its own slot, the slots at different points of
 * their histories) both engines step the same tokens, then run sequences of different
 * lengths in one rwkv_engine_run call. Per pass it prints max |diff|, the relative L2 error
 * ||cpu - b|| / ||cpu|| and how many rows agree on the argmax, for logits and hidden
 * vectors. It fails when max |diff| > TOL_ABS, the relative L2 error > TOL_REL (when given), or a row's argmax differs where the cpu's
 * top two logits are more than 2 × TOL_ABS apart. It also requires BACKEND to repeat itself
 * bit for bit (a second engine, same calls; on cuda-emu the second engine runs with the
 * emulator's thread and block order reversed, so a race between threads shows) and states to be portable: a state exported
 * from BACKEND and imported into cpu (and the other way) continues within TOL_ABS.
 * Exit 77 when BACKEND cannot run here. Running it with BACKEND cpu checks the test. */
#include "rwkv.h"
#include "testutil.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define STEPS 3

static int MAX_B = 64; /* the largest batch of the run */
static double tol_rel = INFINITY;

static rwkv_model *model;
static int V, C;
static double tol;
static const char *backend;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static int32_t rand_tok(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (int32_t)(rng % (uint64_t)V);
}

static rwkv_engine *engine(const char *name)
{
    rwkv_engine_opts o = {name, MAX_B + 2, MAX_B, 2};
    rwkv_engine *e = NULL;
    char err[512];
    int rc = rwkv_engine_new(model, &o, &e, err, sizeof err);
    CHECKF(rc == 0, "%s engine: %s", name, err);
    return e;
}

/* Outputs of one pass over up to MAX_B rows. */
typedef struct {
    float *logits; /* (MAX_B, V) */
    float *hidden; /* (MAX_B, C) */
} outs;

static void outs_init(outs *o)
{
    o->logits = calloc((size_t)MAX_B * V, sizeof(float));
    o->hidden = calloc((size_t)MAX_B * C, sizeof(float));
}

static void outs_free(outs *o)
{
    free(o->logits);
    free(o->hidden);
}

/* Compare b against the reference a over n rows of width w; 1 when within tolerance. */
static int compare(const char *what, const float *a, const float *b, int n, int w, int is_logits)
{
    double dmax = 0, num = 0, den = 0;
    int agree = 0, bad_rows = 0;
    for (int r = 0; r < n; r++) {
        const float *x = a + (size_t)r * w, *y = b + (size_t)r * w;
        int ax = 0, ay = 0, second = -1;
        for (int i = 0; i < w; i++) {
            double d = fabs((double)x[i] - y[i]);
            if (!(d <= dmax))
                dmax = isnan(d) ? INFINITY : d;
            num += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
            den += (double)x[i] * x[i];
            if (x[i] > x[ax]) {
                second = ax;
                ax = i;
            } else if (i != ax && (second < 0 || x[i] > x[second])) {
                second = i;
            }
            ay = y[i] > y[ay] ? i : ay;
        }
        agree += ax == ay;
        if (is_logits && ax != ay && second >= 0 && (double)x[ax] - x[second] > 2 * tol)
            bad_rows++;
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    printf("  %-28s max |diff| %.3g  rel L2 %.3g  argmax %d/%d rows\n", what, dmax, rel, agree, n);
    CHECKF(dmax <= tol, "%s: max |diff| %.3g > %.3g", what, dmax, tol);
    CHECKF(rel <= tol_rel, "%s: relative L2 error %.3g > %.3g", what, rel, tol_rel);
    if (is_logits)
        CHECKF(bad_rows == 0, "%s: %d rows pick another argmax although the cpu's top two are > %.3g apart",
               what, bad_rows, 2 * tol);
    return dmax <= tol && rel <= tol_rel && bad_rows == 0;
}

/* Put slot s at a history of s % 5 tokens (so batch rows are at different positions). */
static void prefix(rwkv_engine *e, int B, const int32_t *pre)
{
    for (int s = 0; s < B; s++) {
        rwkv_engine_state_reset(e, s);
        int n = s % 5;
        if (n)
            CHECK(rwkv_engine_seq(e, s, pre + s * 4, n, NULL, NULL, NULL) == 0);
    }
}

/* One scenario on engine e: prefixes, STEPS batched steps of B rows (logits for all rows,
 * hidden for all), then one run() of sequences of lengths 1 + (s*3) % 7. Outputs go to
 * out[0..STEPS] (STEPS steps, then the run). */
static void scenario(rwkv_engine *e, int B, const int32_t *pre, const int32_t *toks, const int32_t *seq, outs *out)
{
    prefix(e, B, pre);
    rwkv_step_item *items = calloc((size_t)B, sizeof *items);
    rwkv_seq_item *si = calloc((size_t)B, sizeof *si);
    for (int t = 0; t < STEPS; t++) {
        for (int s = 0; s < B; s++)
            items[s] = (rwkv_step_item){(s * 5 + 3) % B, toks[t * MAX_B + s], out[t].hidden + (size_t)s * C,
                                        out[t].logits + (size_t)s * V};
        CHECK(rwkv_engine_step(e, items, B) == 0);
    }
    for (int s = 0; s < B; s++)
        si[s] = (rwkv_seq_item){s, seq + s * 8, 1 + (s * 3) % 7, out[STEPS].hidden + (size_t)s * C,
                                out[STEPS].logits + (size_t)s * V};
    CHECK(rwkv_engine_run(e, si, B) == 0);
    free(items);
    free(si);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: test_backend_cmp MODEL.pth BACKEND WEIGHTS TOL_ABS [TOL_REL]\n");
        return 2;
    }
    backend = argv[2];
    tol = strtod(argv[4], NULL);
    if (argc > 5)
        tol_rel = strtod(argv[5], NULL);
    int batches[16] = {1, 7, 64}, n_batches = 3;
    const char *bl = getenv("RWKV_CMP_BATCHES");
    if (bl && *bl) {
        n_batches = 0;
        for (char *q = (char *)bl; *q && n_batches < 16;) {
            batches[n_batches++] = (int)strtol(q, &q, 10);
            if (*q == ',')
                q++;
            else
                break;
        }
    }
    MAX_B = 0;
    for (int i = 0; i < n_batches; i++) {
        if (batches[i] < 1 || batches[i] > 65536) {
            fprintf(stderr, "bad batch %d in RWKV_CMP_BATCHES\n", batches[i]);
            return 2;
        }
        MAX_B = batches[i] > MAX_B ? batches[i] : MAX_B;
    }
    if (MAX_B < 5)
        MAX_B = 5; /* the portability check uses slots 3 and 4 */
    char err[512];
    if (rwkv_backend_probe(backend, err, sizeof err) != 0) {
        fprintf(stderr, "skip: backend %s unavailable: %s\n", backend, err);
        return TEST_SKIP;
    }
    printf("backend %s: %s\n", backend, err);
    rwkv_load_opts lo;
    if (rwkv_weights_parse(argv[3], &lo.weights) != 0 || !(tol > 0)) {
        fprintf(stderr, "bad weights %s or tolerance %s\n", argv[3], argv[4]);
        return 2;
    }
    if (rwkv_model_load(argv[1], &lo, &model, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    V = rwkv_model_dims(model)->n_vocab;
    C = rwkv_model_dims(model)->n_embd;
    printf("%s weights=%s tolerance %.3g, relative L2 %.3g\n", argv[1], argv[3], tol, tol_rel);
    rwkv_engine *ref = engine("cpu"), *b1 = engine(backend), *b2 = engine(backend);
    if (!ref || !b1 || !b2)
        goto done;
    const size_t SB = rwkv_engine_state_bytes(ref);
    CHECK(rwkv_engine_state_bytes(b1) == SB);

    int32_t *pre = malloc(sizeof(int32_t) * MAX_B * 4), *toks = malloc(sizeof(int32_t) * STEPS * MAX_B);
    int32_t *seq = malloc(sizeof(int32_t) * MAX_B * 8);
    outs o_ref[STEPS + 1], o_b[STEPS + 1], o_b2[STEPS + 1];
    for (int i = 0; i <= STEPS; i++) {
        outs_init(&o_ref[i]);
        outs_init(&o_b[i]);
        outs_init(&o_b2[i]);
    }
    const int emu = strcmp(backend, "cuda-emu") == 0;
    for (int bi = 0; bi < n_batches; bi++) {
        const int B = batches[bi];
        for (int i = 0; i < MAX_B * 4; i++)
            pre[i] = rand_tok();
        for (int i = 0; i < STEPS * MAX_B; i++)
            toks[i] = rand_tok();
        for (int i = 0; i < MAX_B * 8; i++)
            seq[i] = rand_tok();
        scenario(ref, B, pre, toks, seq, o_ref);
        scenario(b1, B, pre, toks, seq, o_b);
        if (emu)
            setenv("SIMT_ORDER", "reverse", 1);
        scenario(b2, B, pre, toks, seq, o_b2);
        if (emu)
            unsetenv("SIMT_ORDER");
        printf("batch %d:\n", B);
        char what[64];
        for (int t = 0; t <= STEPS; t++) {
            const char *kind = t < STEPS ? "step" : "run (ragged)";
            snprintf(what, sizeof what, "%s %d logits", kind, t);
            compare(what, o_ref[t].logits, o_b[t].logits, B, V, 1);
            snprintf(what, sizeof what, "%s %d hidden", kind, t);
            compare(what, o_ref[t].hidden, o_b[t].hidden, B, C, 0);
            /* determinism: the same calls give the same bits (cuda-emu: in reversed order) */
            CHECKF(memcmp(o_b[t].logits, o_b2[t].logits, (size_t)B * V * sizeof(float)) == 0 &&
                       memcmp(o_b[t].hidden, o_b2[t].hidden, (size_t)B * C * sizeof(float)) == 0,
                   "batch %d, %s %d: two runs of %s differ%s", B, kind, t, backend,
                   emu ? " (the second with reversed thread and block order: a race between threads)" : "");
        }
    }

    /* states are portable: backend -> cpu and cpu -> backend, then both continue */
    {
        void *sb = malloc(SB), *sc = malloc(SB);
        const int slot = 3;
        CHECK(rwkv_engine_state_export(b1, slot, sb, SB) == 0);
        CHECK(rwkv_engine_state_export(ref, slot, sc, SB) == 0);
        /* the exported states themselves agree within the tolerance too */
        double ds = test_max_abs_diff(sb, sc, SB / sizeof(float));
        printf("exported state of slot %d: max |diff| cpu vs %s %.3g\n", slot, backend, ds);
        CHECK(rwkv_engine_state_import(ref, slot + 1, sb, SB) == 0); /* backend's state on cpu */
        CHECK(rwkv_engine_state_import(b1, slot + 1, sc, SB) == 0);  /* cpu's state on backend */
        float *a = malloc((size_t)V * sizeof(float)), *b = malloc((size_t)V * sizeof(float));
        float *c = malloc((size_t)V * sizeof(float)), *d = malloc((size_t)V * sizeof(float));
        double w1 = 0, w2 = 0;
        for (int t = 0; t < 4; t++) {
            int32_t tk = rand_tok();
            rwkv_step_item ia[2] = {{slot, tk, NULL, a}, {slot + 1, tk, NULL, b}};
            rwkv_step_item ib[2] = {{slot, tk, NULL, c}, {slot + 1, tk, NULL, d}};
            CHECK(rwkv_engine_step(ref, ia, 2) == 0);
            CHECK(rwkv_engine_step(b1, ib, 2) == 0);
            double x = test_max_abs_diff(a, b, (size_t)V), y = test_max_abs_diff(c, d, (size_t)V);
            w1 = x > w1 ? x : w1;
            w2 = y > w2 ? y : w2;
        }
        printf("continuation: %s state on cpu vs cpu %.3g; cpu state on %s vs %s %.3g\n", backend, w1, backend,
               backend, w2);
        CHECKF(w1 <= tol, "the %s state continued on cpu differs by %.3g", backend, w1);
        CHECKF(w2 <= tol, "the cpu state continued on %s differs by %.3g", backend, w2);
        free(a);
        free(b);
        free(c);
        free(d);
        free(sb);
        free(sc);
    }
    for (int i = 0; i <= STEPS; i++) {
        outs_free(&o_ref[i]);
        outs_free(&o_b[i]);
        outs_free(&o_b2[i]);
    }
    free(pre);
    free(toks);
    free(seq);
done:
    rwkv_engine_destroy(&ref);
    rwkv_engine_destroy(&b1);
    rwkv_engine_destroy(&b2);
    rwkv_model_destroy(&model);
    return test_finish("test_backend_cmp");
}
