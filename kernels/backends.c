/* backends.c — the backend registry: which backend names exist, how each is created, and
 * whether this machine can run it.
 *
 * cpu is built into librwkv; every other backend is a module (librwkv-<name>.so) opened
 * with dlopen the first time it is asked for, so a CPU-only process never maps a GPU
 * runtime and librwkv itself links no CUDA. Modules are looked for in $RWKV_BACKEND_DIR,
 * then the install directory (RWKV_MODULE_DIR, <libdir>/rwkv), then <dir of
 * librwkv.so>/cuda (running from the build tree). The first file found is the one used: a
 * broken module is reported, not skipped in favour of another copy. A module that loaded
 * stays loaded for the life of the process (the CUDA runtime does not survive dlclose).
 * Not here: argument checks and batching (engine.c), any arithmetic.
 */
#include "backend.h"
#include "errbuf.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef RWKV_MODULE_DIR
#define RWKV_MODULE_DIR "/usr/local/lib/rwkv"
#endif

typedef struct {
    const char *name;
    /* built in: constructor; module: NULL, and `module` names the file */
    int (*builtin_new)(const rwkv_model *m, const rwkv_engine_opts *opts, rwkv_backend **out, char *err,
                       size_t err_len);
    const char *module;
} backend_entry;

static const backend_entry registry[] = {
    {"cpu", rwkv_cpu_backend_new, NULL},
    {"cuda", NULL, "librwkv-cuda.so"},
    {"cuda-emu", NULL, "librwkv-cuda-emu.so"}, /* the CUDA sources on the SIMT emulator (tests) */
};
#define N_BACKENDS ((int)(sizeof registry / sizeof registry[0]))

/* Loaded modules, by registry index; guarded by mod_lock (probes may come from any thread). */
typedef struct {
    void *handle;
    rwkv_module_new_fn new_fn;
    rwkv_module_probe_fn probe_fn;
} loaded_module;

static loaded_module loaded[N_BACKENDS];
static pthread_mutex_t mod_lock = PTHREAD_MUTEX_INITIALIZER;

/* Any object of librwkv: dladdr on it finds librwkv.so's path. */
static const char librwkv_anchor = 0;


int rwkv_backend_count(void) { return N_BACKENDS; }

const char *rwkv_backend_name_at(int i) { return i >= 0 && i < N_BACKENDS ? registry[i].name : NULL; }

static int find(const char *name)
{
    for (int i = 0; name && i < N_BACKENDS; i++)
        if (strcmp(registry[i].name, name) == 0)
            return i;
    return -1;
}

static void unknown(const char *name, char *msg, size_t len)
{
    char names[256] = "";
    size_t n = 0;
    for (int i = 0; i < N_BACKENDS && n < sizeof names; i++)
        n += (size_t)snprintf(names + n, sizeof names - n, "%s, ", registry[i].name);
    rwkv_errf(msg, len, 0, NULL, 0, "unknown backend '%s' (known: %sauto)", name ? name : "(null)", names);
}

/* The candidate directories, in search order; returns how many. Buffers are the caller's. */
static int module_dirs(const char *dirs[3], char *selfdir, size_t cap)
{
    int n = 0;
    const char *env = getenv("RWKV_BACKEND_DIR");
    if (env && *env)
        dirs[n++] = env;
    dirs[n++] = RWKV_MODULE_DIR;
    Dl_info info;
    char real[4096];
    if (dladdr(&librwkv_anchor, &info) && info.dli_fname && realpath(info.dli_fname, real)) {
        const char *slash = strrchr(real, '/');
        int k = snprintf(selfdir, cap, "%.*s/cuda", (int)(slash - real), real);
        if (k > 0 && (size_t)k < cap && strcmp(selfdir, dirs[0]) != 0)
            dirs[n++] = selfdir;
    }
    return n;
}

static int resolve(void *h, const char *sym, void *fnp, size_t fn_size)
{
    void *p = dlsym(h, sym);
    if (!p)
        return -1;
    memcpy(fnp, &p, fn_size); /* POSIX: object and function pointers convert */
    return 0;
}

/* Open registry[i]'s module once; 0, or -ENODEV with msg naming the file(s) and why. */
static int load_module(int i, char *msg, size_t len)
{
    int rc = 0;
    pthread_mutex_lock(&mod_lock);
    if (loaded[i].handle)
        goto out;
    const char *dirs[3];
    char selfdir[4096], path[4200], looked[1024] = "";
    size_t nl = 0;
    int nd = module_dirs(dirs, selfdir, sizeof selfdir);
    for (int d = 0; d < nd; d++) {
        snprintf(path, sizeof path, "%s/%s", dirs[d], registry[i].module);
        if (access(path, F_OK) != 0) {
            if (nl < sizeof looked)
                nl += (size_t)snprintf(looked + nl, sizeof looked - nl, "%s%s", nl ? ", " : "", dirs[d]);
            continue;
        }
        dlerror();
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            const char *why = dlerror();
            rwkv_errf(msg, len, 0, NULL, 0, "%s: dlopen failed: %s", path, why ? why : "unknown error");
            rc = -ENODEV;
            goto out;
        }
        const int *abi = dlsym(h, "rwkv_module_abi");
        loaded_module lm = {h, NULL, NULL};
        if (!abi || resolve(h, "rwkv_module_backend_new", &lm.new_fn, sizeof lm.new_fn) ||
            resolve(h, "rwkv_module_probe", &lm.probe_fn, sizeof lm.probe_fn)) {
            rwkv_errf(msg, len, 0, NULL, 0, "%s: not a backend module (missing rwkv_module_abi, rwkv_module_backend_new or "
                           "rwkv_module_probe)", path);
            dlclose(h);
            rc = -ENODEV;
            goto out;
        }
        if (*abi != RWKV_MODULE_ABI) {
            rwkv_errf(msg, len, 0, NULL, 0, "%s: built for module ABI %d, this librwkv has %d (rebuild the module)", path, *abi,
                 RWKV_MODULE_ABI);
            dlclose(h);
            rc = -ENODEV;
            goto out;
        }
        loaded[i] = lm;
        goto out;
    }
    rwkv_errf(msg, len, 0, NULL, 0, "%s not built or not installed (looked in %s)", registry[i].module, looked);
    rc = -ENODEV;
out:
    pthread_mutex_unlock(&mod_lock);
    return rc;
}

static void cpu_describe(char *msg, size_t len)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    const char *isa =
#if defined(__AVX512BF16__)
        "AVX-512 with BF16";
#elif defined(__AVX512F__)
        "AVX-512";
#elif defined(__AVX2__)
        "AVX2";
#else
        "portable C";
#endif
    rwkv_errf(msg, len, 0, NULL, 0, "%ld thread%s, %s", n > 0 ? n : 1, n == 1 ? "" : "s", isa);
}

/* Probe registry[i]: 0 usable, -ENODEV not (msg says why either way). */
static int probe_at(int i, char *msg, size_t len)
{
    if (registry[i].builtin_new) {
        cpu_describe(msg, len);
        return 0;
    }
    int rc = load_module(i, msg, len);
    if (rc)
        return rc;
    char m[512] = "";
    rc = loaded[i].probe_fn(m, sizeof m);
    if (rc) {
        rwkv_errf(msg, len, 0, NULL, 0, "%s", m[0] ? m : "the module's probe failed without a reason");
        return -ENODEV;
    }
    rwkv_errf(msg, len, 0, NULL, 0, "%s", m);
    return 0;
}

int rwkv_backend_probe(const char *name, char *msg, size_t len)
{
    if (msg && len)
        msg[0] = '\0';
    if (name && strcmp(name, "auto") == 0) {
        char m[512];
        int c = find("cuda");
        if (probe_at(c, m, sizeof m) == 0) {
            rwkv_errf(msg, len, 0, NULL, 0, "cuda: %s", m);
            return 0;
        }
        char cm[256];
        probe_at(find("cpu"), cm, sizeof cm);
        rwkv_errf(msg, len, 0, NULL, 0, "cpu: %s (cuda unavailable: %s)", cm, m);
        return 0;
    }
    int i = find(name);
    if (i < 0) {
        unknown(name, msg, len);
        return -EINVAL;
    }
    return probe_at(i, msg, len);
}

int rwkv_backend_create(const char *name, const rwkv_model *m, const rwkv_engine_opts *opts, rwkv_backend **out,
                        const char **real_name, char *err, size_t err_len)
{
    int i;
    char why[512];
    if (name && strcmp(name, "auto") == 0) {
        i = find("cuda");
        if (probe_at(i, why, sizeof why) != 0)
            i = find("cpu");
    } else if ((i = find(name)) < 0) {
        unknown(name, why, sizeof why);
        rwkv_errf(err, err_len, 0, NULL, 0, "engine: %s", why);
        return -EINVAL;
    } else if (!registry[i].builtin_new && probe_at(i, why, sizeof why) != 0) {
        rwkv_errf(err, err_len, 0, NULL, 0, "engine: backend %s unavailable: %s", registry[i].name, why);
        return -ENODEV;
    }
    rwkv_backend *b = NULL;
    int rc = registry[i].builtin_new ? registry[i].builtin_new(m, opts, &b, err, err_len)
                                     : loaded[i].new_fn(m, opts, &b, err, err_len);
    if (rc == -ENOTSUP && name && strcmp(name, "auto") == 0 && !registry[i].builtin_new) {
        /* auto: a GPU backend that does not run this model's generation leaves it to cpu */
        i = find("cpu");
        rc = registry[i].builtin_new(m, opts, &b, err, err_len);
    }
    if (rc == 0 && !b) {
        rwkv_errf(err, err_len, 0, NULL, 0, "engine: backend %s returned no backend", registry[i].name);
        rc = -EIO;
    }
    if (rc)
        return rc < 0 ? rc : -EIO;
    b->last_error[sizeof b->last_error - 1] = '\0';
    *out = b;
    *real_name = registry[i].name;
    return 0;
}
