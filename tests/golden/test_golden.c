/* test_golden — the C engine against logits of the project's float64 reference
 * (tools/ref64.py, run by tools/make-golden.py when fixtures are regenerated).
 * Usage: test_golden CKPT.pth GOLDEN.f32 TOKENS WEIGHTS [BACKEND] [sparse]
 * Feeds TOKENS (comma-separated) one at a time from a zero state on BACKEND (default cpu;
 * exit 77 when it cannot run here); after every token the logits must match the fixture row
 * within 1e-4 (max |diff|, element by element). The same tokens are then fed through
 * sequence mode, which must match too. "sparse" (cpu only): the case must have run the
 * sparse FFN value product. */
#include "cpu/gemm.h"
#include "rwkv.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#define TOL 1e-4

int main(int argc, char **argv)
{
    if (argc < 5)
        return TEST_SKIP;
    const char *backend = "cpu";
    int sparse = 0;
    for (int i = 5; i < argc; i++) {
        if (strcmp(argv[i], "sparse") == 0)
            sparse = 1;
        else
            backend = argv[i];
    }
    const int on_cpu = strcmp(backend, "cpu") == 0;
    char err[512];
    if (rwkv_backend_probe(backend, err, sizeof err) != 0) {
        fprintf(stderr, "skip: backend %s unavailable: %s\n", backend, err);
        return TEST_SKIP;
    }
    rwkv_load_opts lo = {RWKV_WEIGHTS_F32};
    if (rwkv_weights_parse(argv[4], &lo.weights) != 0) {
        fprintf(stderr, "bad weights option %s\n", argv[4]);
        return 1;
    }
    rwkv_model *m = NULL;
    if (rwkv_model_load(argv[1], &lo, &m, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const size_t V = (size_t)rwkv_model_dims(m)->n_vocab;
    int32_t toks[256];
    int T = 0;
    for (char *s = argv[3]; *s && T < 256;) {
        toks[T++] = (int32_t)strtol(s, &s, 10);
        if (*s == ',')
            s++;
    }
    size_t len;
    float *golden = (float *)test_read_file(argv[2], &len);
    CHECKF(golden && len == (size_t)T * V * sizeof(float), "fixture %s has %zu bytes, expected %zu", argv[2], len,
           (size_t)T * V * sizeof(float));
    rwkv_engine *e = NULL;
    rwkv_engine_opts o = {backend, 2, 16, 2};
    CHECK(rwkv_engine_new(m, &o, &e, err, sizeof err) == 0);
    float *lg = malloc(V * sizeof(float)), *all = malloc((size_t)T * V * sizeof(float));
    double worst = 0, worst_seq = 0, max_abs = 0;
    if (golden && len == (size_t)T * V * sizeof(float) && e) {
        for (int t = 0; t < T; t++) {
            rwkv_step_item it = {0, toks[t], NULL, lg};
            CHECK(rwkv_engine_step(e, &it, 1) == 0);
            double d = test_max_abs_diff(lg, golden + (size_t)t * V, V);
            CHECKF(d <= TOL, "step %d (token %d): max |diff| %.3g > %.1g", t, toks[t], d, TOL);
            if (d > worst)
                worst = d;
            for (size_t i = 0; i < V; i++)
                if (golden[(size_t)t * V + i] > max_abs || -golden[(size_t)t * V + i] > max_abs)
                    max_abs = golden[(size_t)t * V + i] > 0 ? golden[(size_t)t * V + i] : -golden[(size_t)t * V + i];
        }
        CHECK(rwkv_engine_seq(e, 1, toks, T, NULL, NULL, all) == 0);
        worst_seq = test_max_abs_diff(all, golden, (size_t)T * V);
        CHECKF(worst_seq <= TOL, "sequence mode: max |diff| %.3g", worst_seq);
    }
    printf("%s weights=%s backend=%s: %d steps, max |diff| %.3g (sequence mode %.3g), max |logit| %.3g\n", argv[1], argv[4], backend, T,
           worst, worst_seq, max_abs);
    /* a case made for it must have run the sparse FFN value product (a cpu counter) */
    if (sparse && on_cpu)
        CHECKF(rwkv_gemm_sparse_jobs() > 0, "the sparse FFN product never ran");
    if (on_cpu)
        printf("sparse FFN value products: %llu\n", rwkv_gemm_sparse_jobs());
    free(lg);
    free(all);
    free(golden);
    rwkv_engine_destroy(&e);
    rwkv_model_destroy(&m);
    return test_finish("test_golden");
}
