/* test_model — loading: dims inferred from shapes, the weights options, and every bad
 * checkpoint written by make-bad-checkpoints.py giving an error that names the file, the
 * tensor and what was expected. Usage: test_model GOOD.pth BADDIR */
#include "model.h"
#include "testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void expect_error(const char *dir, const char *file, const char *what1, const char *what2)
{
    char path[1024], err[512] = "";
    snprintf(path, sizeof path, "%s/%s", dir, file);
    rwkv_model *m = NULL;
    int rc = rwkv_model_load(path, NULL, &m, err, sizeof err);
    CHECKF(rc == -EINVAL && m == NULL, "%s: rc %d", file, rc);
    CHECKF(strstr(err, path) != NULL, "%s: message does not name the file: %s", file, err);
    CHECKF(strstr(err, what1) != NULL, "%s: message lacks '%s': %s", file, what1, err);
    if (what2)
        CHECKF(strstr(err, what2) != NULL, "%s: message lacks '%s': %s", file, what2, err);
    fprintf(stderr, "  ok %-18s %s\n", file, err);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return TEST_SKIP;
    char err[512] = "";
    rwkv_model *m = NULL;
    CHECK(rwkv_model_load(argv[1], NULL, &m, err, sizeof err) == 0);
    if (!m) {
        fprintf(stderr, "%s\n", err);
        return test_finish("test_model");
    }
    const rwkv_dims *d = rwkv_model_dims(m);
    CHECK(d->n_layer == 2 && d->n_embd == 128 && d->n_head == 2 && d->head_size == 64);
    CHECK(d->n_vocab == 300 && d->n_ffn == 512);
    CHECK(d->d_w == 32 && d->d_a == 32 && d->d_v == 32 && d->d_g == 32);
    /* params: 2VC + 4C (ln0, ln_out) + per layer, layer 0 without v0/v1/v2 (spec §1.5) */
    uint64_t C = 128, F = 512, V = 300, R = 32;
    /* matrices + ln1,ln2 (4C) + x_* (6C) + w0,a0,k_k,k_a,r_k (5C) + ln_x (2C) + v0 (C) + ffn.x_k (C) */
    uint64_t per_layer = 4 * C * C + 2 * C * F + 8 * C * R + 4 * C + 6 * C + 5 * C + 2 * C + C + C;
    uint64_t expect = 2 * V * C + 4 * C + 2 * per_layer - (C + 2 * C * R);
    CHECKF(rwkv_model_n_params(m) == expect, "n_params %llu, expected %llu",
           (unsigned long long)rwkv_model_n_params(m), (unsigned long long)expect);
    uint64_t fp = rwkv_model_fingerprint(m);
    uint64_t bytes_f32 = rwkv_model_weight_bytes(m);
    rwkv_model_destroy(&m);
    rwkv_model_destroy(&m);
    CHECK(m == NULL);
    /* same file, same fingerprint; the stored-type option halves the 16-bit matrices */
    CHECK(rwkv_model_load(argv[1], NULL, &m, err, sizeof err) == 0);
    CHECK(m && rwkv_model_fingerprint(m) == fp);
    rwkv_model_destroy(&m);
    rwkv_load_opts lo = {RWKV_WEIGHTS_STORED};
    CHECK(rwkv_model_load(argv[1], &lo, &m, err, sizeof err) == 0);
    CHECK(m && rwkv_model_weight_bytes(m) < bytes_f32);
    rwkv_model_destroy(&m);
    lo.weights = RWKV_WEIGHTS_BF16;
    CHECK(rwkv_model_load(argv[1], &lo, &m, err, sizeof err) == 0);
    CHECK(m && rwkv_model_fingerprint(m) != fp);
    rwkv_model_destroy(&m);
    lo.weights = (rwkv_weights)42;
    CHECK(rwkv_model_load(argv[1], &lo, &m, err, sizeof err) == -EINVAL && !m);
    rwkv_weights w;
    CHECK(rwkv_weights_parse("stored", &w) == 0 && w == RWKV_WEIGHTS_STORED);
    CHECK(rwkv_weights_parse("bf16dot", &w) == 0 && w == RWKV_WEIGHTS_BF16DOT);
    CHECK(rwkv_weights_parse("f64", &w) == -EINVAL);

    /* layer-0 v0/v1/v2 absent loads and computes like present (they are never used) */
    char path[1024];
    snprintf(path, sizeof path, "%s/l0v-absent.pth", argv[2]);
    CHECK(rwkv_model_load(path, NULL, &m, err, sizeof err) == 0);
    rwkv_model_destroy(&m);

    CHECK(rwkv_model_load("/nonexistent.pth", NULL, &m, err, sizeof err) == -ENOENT);
    CHECK(strstr(err, "/nonexistent.pth") != NULL);
    expect_error(argv[2], "missing.pth", "missing tensor 'blocks.1.att.k_k'", NULL);
    expect_error(argv[2], "missing-head.pth", "missing tensor 'head.weight'", NULL);
    expect_error(argv[2], "shape.pth", "'blocks.0.att.key.weight' has shape [128, 129]", "expected [128, 128]");
    expect_error(argv[2], "shape-lora.pth", "'blocks.1.att.a2' has shape [7, 128]", "expected [32, 128]");
    expect_error(argv[2], "nan.pth", "'blocks.1.ffn.value.weight'", "non-finite");
    expect_error(argv[2], "inf.pth", "'blocks.0.att.w0'", "non-finite");
    expect_error(argv[2], "x070a.pth", "x070a", "blocks.0.ffn.s_emb.weight");
    expect_error(argv[2], "x070b.pth", "x070b", "blocks.1.qkv.weight");
    expect_error(argv[2], "extra.pth", "unexpected tensor 'blocks.0.att.bogus'", NULL);
    /* time_maa_* makes it RWKV-6, which then lacks what RWKV-6 needs */
    expect_error(argv[2], "x060.pth", "missing tensor 'blocks.0.att.time_faaaa'", NULL);
    expect_error(argv[2], "unknown-arch.pth", "unknown architecture", "found 'blocks.0.att.");
    expect_error(argv[2], "rk.pth", "'blocks.0.att.r_k' has shape [3, 5]", "n_head*head_size");

    /* the older generations: recognised with their dims, and their defects named */
    snprintf(path, sizeof path, "%s/v6-good.pth", argv[2]);
    CHECKF(rwkv_model_load(path, NULL, &m, err, sizeof err) == 0, "%s", err);
    if (m) {
        const rwkv_dims *d6 = rwkv_model_dims(m);
        CHECK(d6->arch == RWKV_ARCH_V6 && strcmp(rwkv_arch_name(d6->arch), "RWKV-6") == 0);
        CHECK(d6->n_layer == 2 && d6->n_embd == 64 && d6->n_head == 4 && d6->head_size == 16 && d6->n_ffn == 128);
        CHECK(d6->d_w == 16 && d6->d_mix == 8 && d6->d_a == 0 && d6->n_vocab == 96);
    }
    rwkv_model_destroy(&m);
    expect_error(argv[2], "v6-missing-maa-w2.pth", "missing tensor 'blocks.1.att.time_maa_w2'", NULL);
    expect_error(argv[2], "v6-maa-w2-shape.pth", "'blocks.0.att.time_maa_w2' has shape [4, 8, 64]", "expected [5, 8, 64]");
    expect_error(argv[2], "v5.2-decay-shape.pth", "'blocks.1.att.time_decay' has shape [4, 17]",
                 "expected 64 values (one per channel) or 4 (one per head)");
    expect_error(argv[2], "v5.1-missing-gate.pth", "missing tensor 'blocks.1.att.gate.weight'", NULL);
    expect_error(argv[2], "v4-decay-range.pth", "'blocks.1.att.time_decay' value 100 at flat index 3", "not finite");
    expect_error(argv[2], "v4-extra.pth", "unexpected tensor 'blocks.0.att.gate.weight'", "RWKV-4 checkpoint");

    /* a truncated copy on disk */
    size_t len;
    char *buf = test_read_file(argv[1], &len);
    char dir[512];
    CHECK(buf && test_tmpdir(dir, sizeof dir) == 0);
    snprintf(path, sizeof path, "%s/truncated.pth", dir);
    CHECK(test_write_file(path, buf, len / 2) == 0);
    CHECK(rwkv_model_load(path, NULL, &m, err, sizeof err) == -EINVAL && !m);
    CHECKF(strstr(err, "truncated.pth") != NULL, "%s", err);
    fprintf(stderr, "  ok truncated         %s\n", err);
    remove(path);
    remove(dir);
    free(buf);
    return test_finish("test_model");
}
