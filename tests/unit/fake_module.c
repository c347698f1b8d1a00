/* fake_module.c — a backend module for test_backends: the cpu backend behind the module
 * entry points, with faults on request. Built twice: as librwkv-cuda-emu.so (right ABI)
 * and as librwkv-cuda.so with FAKE_ABI_SKEW=1 (a module the loader must refuse).
 * Environment: RWKV_FAKE_PROBE=fail makes the probe fail; RWKV_FAKE_EIO_AFTER=n (read
 * when a backend is created) makes forward() fail with -EIO from its (n+1)-th call on,
 * and every op after that, as a dead device would. Not a real backend: tests only. */
#include "backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FAKE_ABI_SKEW
#define FAKE_ABI_SKEW 0
#endif

const int rwkv_module_abi = RWKV_MODULE_ABI + FAKE_ABI_SKEW;

typedef struct {
    rwkv_backend base;
    rwkv_backend *cpu;
    int calls, eio_after, dead;
} fake_backend;

static int alive(fake_backend *f) { return f->dead ? -EIO : 0; }

static int fake_forward(rwkv_backend *b, const rwkv_row *rows, int n)
{
    fake_backend *f = (fake_backend *)b;
    if (!f->dead && f->eio_after >= 0 && f->calls++ >= f->eio_after) {
        f->dead = 1;
        snprintf(b->last_error, sizeof b->last_error, "fake device lost at forward call %d", f->calls);
    }
    return f->dead ? -EIO : f->cpu->ops->forward(f->cpu, rows, n);
}

static int fake_reset(rwkv_backend *b, int slot)
{
    fake_backend *f = (fake_backend *)b;
    return alive(f) ? -EIO : f->cpu->ops->state_reset(f->cpu, slot);
}

static int fake_copy(rwkv_backend *b, int dst, int src)
{
    fake_backend *f = (fake_backend *)b;
    return alive(f) ? -EIO : f->cpu->ops->state_copy(f->cpu, dst, src);
}

static int fake_export(rwkv_backend *b, int slot, void *buf)
{
    fake_backend *f = (fake_backend *)b;
    return alive(f) ? -EIO : f->cpu->ops->state_export(f->cpu, slot, buf);
}

static int fake_import(rwkv_backend *b, int slot, const void *buf)
{
    fake_backend *f = (fake_backend *)b;
    return alive(f) ? -EIO : f->cpu->ops->state_import(f->cpu, slot, buf);
}

static const float *fake_output(rwkv_backend *b, int row, int what)
{
    fake_backend *f = (fake_backend *)b;
    return f->cpu->ops->output(f->cpu, row, what);
}

static void fake_destroy(rwkv_backend *b)
{
    fake_backend *f = (fake_backend *)b;
    f->cpu->ops->destroy(f->cpu);
    free(f);
}

static const rwkv_backend_ops fake_ops = {
    .name = "fake",
    .destroy = fake_destroy,
    .forward = fake_forward,
    .state_reset = fake_reset,
    .state_copy = fake_copy,
    .state_export = fake_export,
    .state_import = fake_import,
    .output = fake_output,
};

int rwkv_module_probe(char *msg, size_t len)
{
    const char *p = getenv("RWKV_FAKE_PROBE");
    if (p && strcmp(p, "fail") == 0) {
        snprintf(msg, len, "fake: no usable device (RWKV_FAKE_PROBE=fail)");
        return -ENODEV;
    }
    snprintf(msg, len, "fake module (cpu inside)");
    return 0;
}

int rwkv_module_backend_new(const rwkv_model *m, const rwkv_engine_opts *opts, rwkv_backend **out, char *err,
                            size_t err_len)
{
    fake_backend *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    int rc = rwkv_cpu_backend_new(m, opts, &f->cpu, err, err_len);
    if (rc) {
        free(f);
        return rc;
    }
    const char *e = getenv("RWKV_FAKE_EIO_AFTER");
    f->eio_after = e ? atoi(e) : -1;
    f->base.ops = &fake_ops;
    *out = &f->base;
    return 0;
}
