/* rwkv-bench — decode throughput of the engine, with the memory-bandwidth floor beside it.
 *
 * For each (checkpoint, weights, batch, threads) it runs warm-up steps, then R timed runs
 * of S steps of B slots (one token per slot per step, logits for every slot — what a
 * decoding stream needs; off the cpu they stay in the engine's output block, RWKV_OUT_ENGINE,
 * so the figure includes their one download but no copy to other memory), and prints the
 * median tokens/s. Beside it: bytes of weights read
 * per step (once for the whole batch, less what the sparse FFN product skipped, as counted
 * by the kernel) plus 2 × B × state bytes, the achieved GB/s, and the
 * floor = (bytes per step) / (measured copy bandwidth) expressed as tokens/s.
 * Checkpoints come from tools/gen-checkpoint.py (random weights of the published shapes), or
 * --random L,C[,V] builds a random model of that shape in memory (rwkv_model_random), so
 * a 7.2B shape needs no 14 GB file. --backend runs another backend (cuda); its floor is
 * taken against --bw-gbs and --gemm-tflops, by default an H200's peak-sheet figures for
 * bf16 (4800 GB/s HBM3e, ~700 dense TFLOP/s usable of the sheet's bf16 tensor rate), not
 * measured ones: a figure near 100% of floor means near the sheet, not near the device's
 * real ceiling. A benchmark, not a test: it asserts nothing.
 */
#include "half.h"
#include "cpu/gemm.h"
#include "model.h"
#include "rwkv.h"
#include "threadpool.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* Process CPU time (all threads): with --threads 1 a figure that other load on the machine
 * disturbs much less than the wall clock, for comparing two builds on a busy machine. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Read bandwidth of this machine with `threads` threads: sum a large buffer. */
typedef struct {
    const float *buf;
    size_t n;
    double sum;
} bw_arg;

#include <pthread.h>
static void *bw_worker(void *p)
{
    bw_arg *a = p;
    float s[16] = {0};
    for (size_t i = 0; i + 16 <= a->n; i += 16)
        for (int l = 0; l < 16; l++)
            s[l] += a->buf[i + l];
    double t = 0;
    for (int l = 0; l < 16; l++)
        t += s[l];
    a->sum = t;
    return NULL;
}

static double read_bandwidth(int threads)
{
    size_t n = (size_t)256 << 20; /* 1 GiB of floats */
    float *buf = malloc(n * sizeof(float));
    if (!buf)
        return 0;
    for (size_t i = 0; i < n; i++)
        buf[i] = (float)(i & 7);
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        pthread_t th[64];
        bw_arg args[64];
        int k = threads < 64 ? threads : 64;
        double t0 = now_s();
        for (int i = 0; i < k; i++) {
            args[i] = (bw_arg){buf + n / k * i, n / k, 0};
            pthread_create(&th[i], NULL, bw_worker, &args[i]);
        }
        for (int i = 0; i < k; i++)
            pthread_join(th[i], NULL);
        double dt = now_s() - t0;
        double gbs = n * sizeof(float) / dt / 1e9;
        if (gbs > best)
            best = gbs;
    }
    free(buf);
    return best;
}

/* FLOP/s of the engine's own GEMM on a cache-resident 768 x 768 problem, batch 64, with
 * weights of type t: the compute rate the floor is measured against. */
static double gemm_rate(int threads, rwkv_dtype t)
{
    const int O = 768, K = 768, B = 64;
    size_t wb = rwkv_mat_bytes(O, K, t);
    void *w = calloc(wb, 1);
    float *x = calloc((size_t)B * K, 4), *y = calloc((size_t)B * O, 4);
    float *ws = calloc(rwkv_gemm_workspace_floats(B, K), 4);
    rwkv_pool *pool = rwkv_pool_new(threads);
    double best = 0;
    if (w && x && y && ws && pool) {
        for (int r = 0; r < O; r++)
            for (int k = 0; k < K; k++) {
                float v = (float)((r * K + k) % 13) * 0.01f;
                size_t i = rwkv_mat_index(t, K, r, k);
                if (t == RWKV_DTYPE_F32)
                    ((float *)w)[i] = v;
                else
                    ((uint16_t *)w)[i] = t == RWKV_DTYPE_F16 ? rwkv_f32_to_f16(v) : rwkv_f32_to_bf16(v);
            }
        for (size_t i = 0; i < (size_t)B * K; i++)
            x[i] = (float)(i % 7) * 0.1f;
        rwkv_mat m = {w, t, O, K};
        gemm_job j = {&m, x, K, y, O, NULL, B, GEMM_ACT_NONE, 0, 0};
        for (int rep = 0; rep < 5; rep++) {
            double t0 = now_s();
            for (int i = 0; i < 20; i++)
                rwkv_gemm_run(pool, ws, &j, 1);
            double r = 20.0 * 2.0 * O * K * B / (now_s() - t0);
            if (r > best)
                best = r;
        }
    }
    rwkv_pool_destroy(&pool);
    free(w);
    free(x);
    free(y);
    free(ws);
    return best;
}

/* The FFN value matrices at batch 1 (each layer's in turn, so they come from memory), the input a ReLU square with `pct` percent
 * of its entries nonzero (at random places): microseconds per product with the kernel
 * skipping zero inputs (sparse_x, as the engine runs it) and reading every input. Trained
 * RWKV models have FFN activations that are mostly zero; random checkpoints about half. */
static void ffn_density_table(const rwkv_model *m, const char *base, const char *wname, int threads, const int *pcts,
                              int n_pct, int runs)
{
    const rwkv_dims *d = rwkv_model_dims(m);
    const rwkv_mat *w = &m->layers[0].ffn_v;
    const int K = w->cols, O = w->rows, L = d->n_layer;
    float *x = calloc((size_t)K, 4), *y = calloc((size_t)O, 4);
    float *ws = calloc(rwkv_gemm_workspace_floats(1, K), 4);
    rwkv_pool *pool = rwkv_pool_new(threads);
    if (!x || !y || !ws || !pool) {
        fprintf(stderr, "rwkv-bench: out of memory\n");
        goto out;
    }
    const double mb = (double)rwkv_mat_bytes(O, K, w->dtype) / 1e6;
    for (int pi = 0; pi < n_pct; pi++) {
        uint64_t r = 88172645463325252ull;
        int nz = 0;
        for (int k = 0; k < K; k++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            x[k] = (int)(r % 100) < pcts[pi] ? 0.25f + (float)(r >> 40) * 1e-8f : 0.0f;
            nz += x[k] != 0;
        }
        double us[2];
        for (int sp = 0; sp < 2; sp++) {
            /* ~0.3 s per run */
            const int S = (int)(0.3 / (mb * 1e6 / 25e9)) + 1;
            double t[99];
            for (int rr = 0; rr < runs; rr++) {
                double t0 = now_s();
                for (int i = 0; i < S; i++) {
                    gemm_job j = {&m->layers[i % L].ffn_v, x, K, y, O, NULL, 1, GEMM_ACT_NONE, 0, sp};
                    rwkv_gemm_run(pool, ws, &j, 1);
                }
                t[rr] = (now_s() - t0) / S;
            }
            qsort(t, (size_t)runs, sizeof(double), cmp_double);
            us[sp] = t[runs / 2] * 1e6;
        }
        printf("%-22s %-7s %3d %5d%% %8.1f %8.1f %7.2fx %9.1f\n", base, wname, threads, (int)(100.0 * nz / K + 0.5),
               us[0], us[1], us[0] / us[1], mb / (us[1] * 1e-6) / 1e3);
    }
out:
    rwkv_pool_destroy(&pool);
    free(x);
    free(y);
    free(ws);
}

/* Multiply-adds of one token: every matrix once (the head only with logits). */
static double macs_per_token(const rwkv_model *m, int logits)
{
    const rwkv_dims *d = &m->dims;
    double C = d->n_embd, F = d->n_ffn;
    double per_layer = 4 * C * C + 2 * C * F + 2 * C * (d->d_w + d->d_a + d->d_v + d->d_g);
    if (d->arch != RWKV_ARCH_X070) /* + FFN receptance, gate (5.1 on), v6 token-shift LoRA */
        per_layer = 5 * C * C + 2 * C * F + (d->arch >= RWKV_ARCH_V5_1 ? C * C : 0) +
                    2 * C * d->d_w + 2 * C * 5 * d->d_mix;
    return d->n_layer * per_layer + (logits ? (double)d->n_vocab * C : 0);
}

/* Bytes of weights one step reads: every matrix once, the embedding rows and vectors. */
static double weight_bytes_per_step(const rwkv_model *m, int B)
{
    const rwkv_dims *d = &m->dims;
    double total = (double)m->arena_bytes;
    double emb = (double)d->n_vocab * d->n_embd * 4;
    return total - emb + (double)B * d->n_embd * 4;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: rwkv-bench (--model M.pth | --random L,C[,V]) [more of either] [--weights f32,stored,...]\n"
            "                  [--backend cpu|cuda|...] [--batch 1,8,64] [--threads 1,2] [--steps S] [--runs R]\n"
            "                  [--logits 1|0|1,0] [--no-logits] [--seed N]\n"
            "                  [--bw-gbs 4800] [--gemm-tflops 700]   (floor figures for backends other than cpu)\n"
            "                  [--ffn-density 100,50,25,10,5]   (then only the FFN value product at batch 1)\n"
            "  --random: L layers, C wide (a multiple of 64), V words (default 65536), head size 64,\n"
            "            F = 4C, the trainer's LoRA ranks; weights bf16 unless --weights says otherwise.\n"
            "  defaults off cpu: --batch 1,64,256,1024 --logits 1,0 --weights stored\n");
}

/* A model to bench: a checkpoint file or a random shape. */
typedef struct {
    const char *path; /* NULL for random */
    rwkv_dims shape;
    char name[64];
} bench_src;

static int load_src(const bench_src *s, rwkv_weights w, uint64_t seed, rwkv_model **m, char *err, size_t len)
{
    if (s->path) {
        rwkv_load_opts lo = {w};
        return rwkv_model_load(s->path, &lo, m, err, len);
    }
    return rwkv_model_random(&s->shape, seed, w, m, err, len);
}

static int parse_list(const char *s, int *out, int cap)
{
    int n = 0;
    while (*s && n < cap) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0)
            return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

int main(int argc, char **argv)
{
    bench_src srcs[8];
    int n_src = 0;
    char weights_arg[128] = "";
    const char *backend = "cpu";
    int batches[16] = {1, 8, 64}, n_b = 0, threads[8] = {1, 2}, n_t = 2, logit_modes[2] = {1, 0}, n_lm = 0;
    int steps = 0, runs = 3, pcts[16], n_pct = 0;
    double bw_gbs = 4800, gemm_tflops = 700;
    uint64_t seed = 1;
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},    {"weights", required_argument, 0, 'w'},
        {"batch", required_argument, 0, 'b'},    {"threads", required_argument, 0, 't'},
        {"steps", required_argument, 0, 's'},    {"runs", required_argument, 0, 'r'},
        {"no-logits", no_argument, 0, 'n'},      {"ffn-density", required_argument, 0, 'f'},
        {"random", required_argument, 0, 'R'},   {"backend", required_argument, 0, 'B'},
        {"logits", required_argument, 0, 'l'},   {"bw-gbs", required_argument, 0, 'W'},
        {"gemm-tflops", required_argument, 0, 'G'}, {"seed", required_argument, 0, 'S'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            if (n_src < 8) {
                srcs[n_src] = (bench_src){.path = optarg};
                const char *base = strrchr(optarg, '/') ? strrchr(optarg, '/') + 1 : optarg;
                snprintf(srcs[n_src].name, sizeof srcs[n_src].name, "%s", base);
                n_src++;
            }
            break;
        case 'R': {
            int v[3] = {0, 0, 0};
            int k = parse_list(optarg, v, 3);
            if (k < 2 || n_src >= 8 || v[1] % 64) {
                fprintf(stderr, "rwkv-bench: --random wants L,C[,V] with C a multiple of 64, got '%s'\n", optarg);
                return 2;
            }
            srcs[n_src] = (bench_src){.path = NULL};
            srcs[n_src].shape = (rwkv_dims){.n_layer = v[0], .n_embd = v[1], .n_vocab = k > 2 ? v[2] : 0};
            snprintf(srcs[n_src].name, sizeof srcs[n_src].name, "random-L%d-C%d-V%d", v[0], v[1], k > 2 ? v[2] : 65536);
            n_src++;
            break;
        }
        case 'w': snprintf(weights_arg, sizeof weights_arg, "%s", optarg); break;
        case 'B': backend = optarg; break;
        case 'b': n_b = parse_list(optarg, batches, 16); break;
        case 't': n_t = parse_list(optarg, threads, 8); break;
        case 's': steps = atoi(optarg); break;
        case 'r': runs = atoi(optarg); break;
        case 'S': seed = strtoull(optarg, NULL, 10); break;
        case 'n': logit_modes[0] = 0, n_lm = 1; break;
        case 'l':
            n_lm = 0;
            for (char *q = optarg; *q && n_lm < 2; q += *q == ',') {
                if (*q != '0' && *q != '1') {
                    n_lm = -1;
                    break;
                }
                logit_modes[n_lm++] = *q++ == '1';
            }
            if (n_lm <= 0) {
                fprintf(stderr, "rwkv-bench: --logits wants 1, 0 or 1,0, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'W': bw_gbs = strtod(optarg, NULL); break;
        case 'G': gemm_tflops = strtod(optarg, NULL); break;
        case 'f':
            n_pct = parse_list(optarg, pcts, 16);
            for (int i = 0; i < n_pct; i++)
                if (pcts[i] > 100)
                    n_pct = -1;
            if (n_pct <= 0) {
                fprintf(stderr, "rwkv-bench: --ffn-density wants percentages 1..100, got '%s'\n", optarg);
                return 2;
            }
            break;
        default: usage(); return c == 'h' ? 0 : 2;
        }
    }
    const int on_cpu = strcmp(backend, "cpu") == 0;
    if (n_b == 0 && !on_cpu) {
        static const int gpu_batches[] = {1, 64, 256, 1024};
        memcpy(batches, gpu_batches, sizeof gpu_batches);
        n_b = 4;
    } else if (n_b == 0) {
        n_b = 3;
    }
    if (n_lm == 0)
        n_lm = on_cpu ? 1 : 2;
    if (!weights_arg[0])
        snprintf(weights_arg, sizeof weights_arg, "%s", on_cpu ? "f32" : "stored");
    if (!on_cpu) { /* the thread count is the cpu backend's; one pass */
        threads[0] = 1;
        n_t = 1;
    }
    if (n_src == 0 || n_b <= 0 || n_t <= 0 || runs <= 0 || runs > 99 || !(bw_gbs > 0) || !(gemm_tflops > 0)) {
        usage();
        return 2;
    }
    char pmsg[512];
    if (rwkv_backend_probe(backend, pmsg, sizeof pmsg) != 0) {
        fprintf(stderr, "rwkv-bench: --backend %s: %s\n", backend, pmsg);
        return 1;
    }
    if (n_pct > 0) {
        if (!on_cpu) {
            fprintf(stderr, "rwkv-bench: --ffn-density measures the cpu kernel only\n");
            return 2;
        }
        printf("# FFN value product (every layer's in turn, batch 1): input entries nonzero, microseconds per product reading\n"
               "# every input (dense) and skipping zero inputs (sparse, the engine's way; it reads every input\n"
               "# above %d%%), median of %d runs; GB/s = matrix bytes / sparse time (above bandwidth: skipped)\n",
               GEMM_SPARSE_MAX_PERCENT, runs);
        printf("%-22s %-7s %3s %6s %8s %8s %8s %9s\n", "model", "weights", "thr", "nonzero", "dense_us", "sparse_us",
               "speedup", "GB/s");
        for (int mi = 0; mi < n_src; mi++) {
            char wbuf[128];
            snprintf(wbuf, sizeof wbuf, "%s", weights_arg);
            for (char *w = strtok(wbuf, ","); w; w = strtok(NULL, ",")) {
                rwkv_weights wt;
                char err[512];
                rwkv_model *m = NULL;
                if (rwkv_weights_parse(w, &wt)) {
                    fprintf(stderr, "rwkv-bench: bad weights '%s'\n", w);
                    return 2;
                }
                if (load_src(&srcs[mi], wt, seed, &m, err, sizeof err)) {
                    fprintf(stderr, "rwkv-bench: %s\n", err);
                    return 1;
                }
                for (int ti = 0; ti < n_t; ti++)
                    ffn_density_table(m, srcs[mi].name, w, threads[ti], pcts, n_pct, runs);
                rwkv_model_destroy(&m);
            }
        }
        return 0;
    }
    /* rate[threads][weight type]: f32, f16, bf16, bf16 pairs; other backends: the options */
    double bw[65] = {0}, rate[65][4] = {{0}};
    printf("# backend %s: %s\n", backend, pmsg);
    if (on_cpu) {
        for (int i = 0; i < n_t; i++) {
            int t = threads[i] < 64 ? threads[i] : 64;
            bw[t] = read_bandwidth(t);
            for (int dt = 0; dt < 4; dt++)
                if (dt != RWKV_DTYPE_F16)
                    rate[t][dt] = gemm_rate(t, (rwkv_dtype)dt);
            rate[t][RWKV_DTYPE_F16] = rate[t][RWKV_DTYPE_BF16];
        }
        printf("# memory read bandwidth / GEMM rate (768x768, B=64; weights f32, bf16, bf16 pairs):");
        for (int i = 0; i < n_t; i++) {
            int t = threads[i] < 64 ? threads[i] : 64;
            printf(" %d thread(s) %.1f GB/s %.1f/%.1f/%.1f GFLOP/s;", t, bw[t], rate[t][RWKV_DTYPE_F32] / 1e9,
                   rate[t][RWKV_DTYPE_BF16] / 1e9, rate[t][RWKV_DTYPE_BF16X2] / 1e9);
        }
        printf("\n");
    } else {
        bw[1] = bw_gbs;
        for (int dt = 0; dt < 4; dt++)
            rate[1][dt] = gemm_tflops * 1e12;
        printf("# floor figures (not measured; --bw-gbs, --gemm-tflops): %.0f GB/s, %.0f TFLOP/s\n", bw_gbs,
               gemm_tflops);
    }
    printf("# tokens/s = B x steps / time, median of %d runs; logits: 1 = for every slot, 0 = hidden only\n", runs);
    printf("# floor = min(bytes/step / bandwidth, 2 x MACs/step / GEMM rate), as tokens/s; bytes/step = weights\n"
           "# once + 2 x B x state bytes\n");
    printf("%-22s %-7s %5s %3s %2s %9s %9s %9s %7s %9s %9s %9s %7s %8s\n", "model", "weights", "B", "thr", "lg", "step_ms",
           "tok/s", "MB/step", "GB/s", "mem_floor", "cmp_floor", "floor", "%floor", "cpu_ms");
    for (int mi = 0; mi < n_src; mi++) {
        char wbuf[128];
        snprintf(wbuf, sizeof wbuf, "%s", weights_arg);
        for (char *w = strtok(wbuf, ","); w; w = strtok(NULL, ",")) {
            rwkv_weights wt;
            if (rwkv_weights_parse(w, &wt)) {
                fprintf(stderr, "rwkv-bench: bad weights '%s'\n", w);
                return 2;
            }
            char err[512];
            rwkv_model *m = NULL;
            double t0 = now_s();
            if (load_src(&srcs[mi], wt, seed, &m, err, sizeof err)) {
                fprintf(stderr, "rwkv-bench: %s\n", err);
                return 1;
            }
            double t_load = now_s() - t0;
            const rwkv_dims *d = rwkv_model_dims(m);
            const char *base = srcs[mi].name;
            int max_b = 1;
            for (int i = 0; i < n_b; i++)
                if (batches[i] > max_b)
                    max_b = batches[i];
            float *logits = malloc((size_t)max_b * d->n_vocab * sizeof(float));
            if (!logits) {
                fprintf(stderr, "rwkv-bench: out of memory for %d rows of logits\n", max_b);
                return 1;
            }
            for (int ti = 0; ti < n_t; ti++) {
                rwkv_engine *e = NULL;
                rwkv_engine_opts eo = {backend, max_b, max_b, on_cpu ? threads[ti] : 0};
                if (rwkv_engine_new(m, &eo, &e, err, sizeof err)) {
                    fprintf(stderr, "rwkv-bench: %s\n", err);
                    return 1;
                }
                size_t state_bytes = rwkv_engine_state_bytes(e);
                for (int li = 0; li < n_lm; li++) {
                    const int want_logits = logit_modes[li];
                    for (int bi = 0; bi < n_b; bi++) {
                        int B = batches[bi];
                        rwkv_step_item *items = calloc((size_t)B, sizeof *items);
                        for (int s = 0; s < B; s++)
                            items[s] = (rwkv_step_item){s, 0, NULL,
                                                        !want_logits ? NULL
                                                        : on_cpu     ? logits + (size_t)s * d->n_vocab
                                                                     : RWKV_OUT_ENGINE};
                        /* enough steps for ~1 s per run on this machine, estimated from a probe */
                        int S = steps;
                        double tp = now_s();
                        for (int s = 0; s < B; s++)
                            items[s].token = (int32_t)((s * 131 + 7) % d->n_vocab);
                        int rc = rwkv_engine_step(e, items, B);
                        double probe = now_s() - tp;
                        if (rc) {
                            fprintf(stderr, "rwkv-bench: step failed (%d): %s\n", rc, rwkv_engine_last_error(e));
                            return 1;
                        }
                        if (S <= 0)
                            S = probe > 0 ? (int)(1.0 / probe) : 10;
                        if (S < 3)
                            S = 3;
                        if (S > 2000)
                            S = 2000;
                        double times[99], cpu[99];
                        const unsigned long long skipped0 = rwkv_gemm_skipped_bytes();
                        for (int r = 0; r < runs; r++) {
                            double ts = now_s(), cs = cpu_s();
                            for (int k = 0; k < S; k++) {
                                for (int s = 0; s < B; s++)
                                    items[s].token = (int32_t)((s * 131 + k * 17 + r) % d->n_vocab);
                                rwkv_engine_step(e, items, B);
                            }
                            times[r] = (now_s() - ts) / S;
                            cpu[r] = (cpu_s() - cs) / S;
                        }
                        qsort(times, (size_t)runs, sizeof(double), cmp_double);
                        qsort(cpu, (size_t)runs, sizeof(double), cmp_double);
                        double step = times[runs / 2];
                        double tok_s = B / step;
                        /* less the weights the sparse FFN product did not read (mean over the timed steps) */
                        const double skipped = (double)(rwkv_gemm_skipped_bytes() - skipped0) / ((double)S * runs);
                        double bytes = weight_bytes_per_step(m, B) - skipped + 2.0 * B * state_bytes;
                        if (!want_logits)
                            bytes -= (double)d->n_vocab * d->n_embd * rwkv_dtype_size(m->head.dtype);
                        double gbs = bytes / step / 1e9;
                        int tk = on_cpu ? (threads[ti] < 64 ? threads[ti] : 64) : 1;
                        double mem_floor = bw[tk] > 0 ? B / (bytes / (bw[tk] * 1e9)) : 0;
                        const double rt = rate[tk][m->layers[0].ffn_k.dtype];
                        /* each weight the sparse product skipped is one multiply-add less per token */
                        const double macs =
                            macs_per_token(m, want_logits) - skipped / rwkv_dtype_size(m->layers[0].ffn_v.dtype);
                        double cmp_floor = rt > 0 ? rt / (2.0 * macs) : 0;
                        double floor_tok = mem_floor < cmp_floor ? mem_floor : cmp_floor;
                        printf("%-22s %-7s %5d %3d %2d %9.2f %9.1f %9.1f %7.1f %9.1f %9.1f %9.1f %6.0f%% %8.2f\n", base, w,
                               B, on_cpu ? threads[ti] : 0, want_logits, step * 1e3, tok_s, bytes / 1e6, gbs, mem_floor,
                               cmp_floor, floor_tok, floor_tok > 0 ? 100.0 * tok_s / floor_tok : 0, cpu[runs / 2] * 1e3);
                        fflush(stdout);
                        free(items);
                    }
                }
                rwkv_engine_destroy(&e);
            }
            struct rusage ru;
            getrusage(RUSAGE_SELF, &ru);
            printf("# %s: L%d C%d V%d, %.1f M params, weights %s %.1f MB in memory, %s %.2f s, state %zu bytes/channel, peak RSS %.1f MB\n",
                   base, d->n_layer, d->n_embd, d->n_vocab, rwkv_model_n_params(m) / 1e6, w,
                   rwkv_model_weight_bytes(m) / 1e6, srcs[mi].path ? "load" : "built", t_load,
                   (size_t)4 * d->n_layer * (2 * (size_t)d->n_embd + (size_t)d->n_head * d->head_size * d->head_size),
                   ru.ru_maxrss / 1024.0);
            free(logits);
            rwkv_model_destroy(&m);
        }
    }
    return 0;
}
