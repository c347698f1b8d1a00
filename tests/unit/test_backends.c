/* test_backends — the backend registry and the module seam, with fake modules
 * (fake_module.c) in MODDIR: a module is found through RWKV_BACKEND_DIR and gives the cpu's
 * bits; a module of another ABI is refused with a message; a failing probe is -ENODEV with
 * the module's reason; a backend that returned -EIO leaves the engine dead (every later
 * call -EIO) and rwkv_engine_last_error() gives the backend's text.
 * Usage: test_backends MODEL.pth MODDIR */
#include "rwkv.h"
#include "testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 3)
        return TEST_SKIP;
    setenv("RWKV_BACKEND_DIR", argv[2], 1);
    unsetenv("RWKV_FAKE_PROBE");
    unsetenv("RWKV_FAKE_EIO_AFTER");
    char err[512], msg[512];
    rwkv_model *m = NULL;
    CHECK(rwkv_model_load(argv[1], NULL, &m, err, sizeof err) == 0);
    if (!m)
        return test_finish("test_backends");
    const int V = rwkv_model_dims(m)->n_vocab;

    /* the ABI check: librwkv-cuda.so here was built with another value */
    CHECK(rwkv_backend_probe("cuda", msg, sizeof msg) == -ENODEV && strstr(msg, "ABI") &&
          strstr(msg, "librwkv-cuda.so"));
    printf("cuda: %s\n", msg);
    rwkv_engine_opts o = {"cuda", 2, 4, 1};
    rwkv_engine *e = NULL;
    CHECK(rwkv_engine_new(m, &o, &e, err, sizeof err) == -ENODEV && !e && strstr(err, "ABI"));
    /* auto falls back to cpu and says why */
    CHECK(rwkv_backend_probe("auto", msg, sizeof msg) == 0 && strncmp(msg, "cpu", 3) == 0 && strstr(msg, "ABI"));
    printf("auto: %s\n", msg);

    /* a failing probe */
    setenv("RWKV_FAKE_PROBE", "fail", 1);
    CHECK(rwkv_backend_probe("cuda-emu", msg, sizeof msg) == -ENODEV && strstr(msg, "no usable device"));
    o.backend = "cuda-emu";
    CHECK(rwkv_engine_new(m, &o, &e, err, sizeof err) == -ENODEV && !e && strstr(err, "no usable device"));
    unsetenv("RWKV_FAKE_PROBE");
    CHECK(rwkv_backend_probe("cuda-emu", msg, sizeof msg) == 0 && strstr(msg, "fake"));

    /* the module runs: same bits as cpu */
    rwkv_engine *c = NULL;
    o.backend = "cpu";
    CHECK(rwkv_engine_new(m, &o, &c, err, sizeof err) == 0);
    setenv("RWKV_FAKE_EIO_AFTER", "3", 1);
    o.backend = "cuda-emu";
    CHECK(rwkv_engine_new(m, &o, &e, err, sizeof err) == 0);
    if (!e || !c)
        return test_finish("test_backends");
    CHECK(strcmp(rwkv_engine_backend(e), "cuda-emu") == 0 && strcmp(rwkv_engine_last_error(e), "") == 0);
    float *a = malloc((size_t)V * sizeof(float)), *b = malloc((size_t)V * sizeof(float));
    for (int t = 0; t < 3; t++) {
        rwkv_step_item ia = {1, (t * 37) % V, NULL, a}, ib = {1, (t * 37) % V, NULL, b};
        CHECK(rwkv_engine_step(c, &ia, 1) == 0 && rwkv_engine_step(e, &ib, 1) == 0);
        CHECK(memcmp(a, b, (size_t)V * sizeof(float)) == 0);
    }
    /* the device dies on the 4th forward: -EIO, the text, and every later call -EIO */
    rwkv_step_item it = {0, 1, NULL, b};
    CHECK(rwkv_engine_step(e, &it, 1) == -EIO);
    CHECK(strstr(rwkv_engine_last_error(e), "fake device lost") != NULL);
    printf("last error: %s\n", rwkv_engine_last_error(e));
    size_t sb = rwkv_engine_state_bytes(e);
    void *st = calloc(1, sb);
    int32_t toks[2] = {1, 2};
    rwkv_seq_item si = {0, toks, 2, NULL, NULL};
    CHECK(rwkv_engine_step(e, &it, 1) == -EIO);
    CHECK(rwkv_engine_seq(e, 0, toks, 2, NULL, NULL, NULL) == -EIO);
    CHECK(rwkv_engine_run(e, &si, 1) == -EIO);
    CHECK(rwkv_engine_state_export(e, 0, st, sb) == -EIO);
    CHECK(rwkv_engine_state_import(e, 0, st, sb) == -EIO);
    CHECK(rwkv_engine_state_reset(e, 0) == -EIO);
    CHECK(rwkv_engine_state_copy(e, 0, 1) == -EIO);
    CHECK(strstr(rwkv_engine_last_error(e), "fake device lost") != NULL);
    CHECK(strcmp(rwkv_engine_last_error(c), "") == 0);
    free(st);
    free(a);
    free(b);
    rwkv_engine_destroy(&e);
    rwkv_engine_destroy(&e);
    rwkv_engine_destroy(&c);
    rwkv_model_destroy(&m);
    return test_finish("test_backends");
}
