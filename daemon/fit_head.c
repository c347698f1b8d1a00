/* fit_head.c — rwkvd-fit-head: fit a linear classification head (linhead.h) on the
 * engine's hidden vectors, from a JSON-lines file of {"text": ..., "label": ...}.
 *
 * Each text is fed from the zero state followed by the event separator and the profile's
 * prompt suffix (as rwkvd feeds a new channel's first event and the fork), and the final
 * hidden vector is its feature vector. A multinomial logistic (softmax) regression with L2
 * is fitted by full-batch gradient descent on standardised features; the scaling is folded
 * back into W and b, so the file applies to raw hidden vectors.
 * What it is not: a training framework; it suits thousands of examples, not millions.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linhead.h"
#include "rwkv.h"
#include "rwkv_tokenizer.h"

static void usage(FILE *f)
{
    fputs("usage: rwkvd-fit-head --model M.pth --data TRAIN.jsonl --out HEAD [options]\n"
          "  --vocab V.txt|bytes   vocabulary (default: bytes)\n"
          "  --separator S         fed after each text (default: \"\\n\", as events.separator)\n"
          "  --suffix S            the profile's prompt_suffix (default: empty)\n"
          "  --epochs N            gradient-descent iterations (default 500)\n"
          "  --lr X                learning rate (default 0.5)\n"
          "  --l2 X                L2 penalty on the weights (default 1e-3)\n"
          "  --threads N           CPU threads (default: all)\n"
          "Each line of TRAIN.jsonl is {\"text\": STRING, \"label\": STRING}; 2..256 labels.\n",
          f);
}

typedef struct {
    char **labels;
    int n_labels;
    int *y;          /* (n) label index */
    float *x;        /* (n, C) features */
    size_t n, cap;
} dataset;

static int label_index(dataset *ds, const char *name)
{
    for (int k = 0; k < ds->n_labels; k++)
        if (strcmp(ds->labels[k], name) == 0)
            return k;
    if (ds->n_labels >= RWKVD_LINHEAD_MAX_LABELS || strlen(name) < 1 || strlen(name) > RWKVD_LINHEAD_LABEL_MAX)
        return -1;
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return -1;
    char **v = realloc(ds->labels, (size_t)(ds->n_labels + 1) * sizeof *v);
    if (!v)
        return -1;
    ds->labels = v;
    ds->labels[ds->n_labels] = strdup(name);
    return ds->n_labels++;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'}, {"vocab", required_argument, NULL, 'V'},
        {"data", required_argument, NULL, 'd'},  {"out", required_argument, NULL, 'o'},
        {"separator", required_argument, NULL, 's'}, {"suffix", required_argument, NULL, 'S'},
        {"epochs", required_argument, NULL, 'e'}, {"lr", required_argument, NULL, 'l'},
        {"l2", required_argument, NULL, 'L'},    {"threads", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    const char *model_path = NULL, *vocab = "bytes", *data = NULL, *out = NULL, *sep = "\n", *suffix = "";
    int epochs = 500, threads = 0;
    double lr = 0.5, l2 = 1e-3;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'V': vocab = optarg; break;
        case 'd': data = optarg; break;
        case 'o': out = optarg; break;
        case 's': sep = optarg; break;
        case 'S': suffix = optarg; break;
        case 'e': epochs = atoi(optarg); break;
        case 'l': lr = atof(optarg); break;
        case 'L': l2 = atof(optarg); break;
        case 't': threads = atoi(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!model_path || !data || !out || epochs < 1 || !(lr > 0) || !(l2 >= 0)) {
        usage(stderr);
        return 2;
    }
    char err[512];
    int status = 1;
    rwkv_tokenizer *tok = NULL;
    rwkv_model *model = NULL;
    rwkv_engine *eng = NULL;
    rwkvd_linhead *head = NULL;
    dataset ds = {0};
    int32_t *ids = NULL;
    FILE *f = NULL;
    char *line = NULL;
    size_t line_cap = 0;
    double *w = NULL, *gw = NULL, *mean = NULL, *sd = NULL, *p = NULL;
    if ((strcmp(vocab, "bytes") == 0 ? rwkv_tokenizer_new_bytes(&tok) : rwkv_tokenizer_load(vocab, &tok, err, sizeof err))) {
        fprintf(stderr, "rwkvd-fit-head: %s\n", strcmp(vocab, "bytes") ? err : "out of memory");
        goto done;
    }
    rwkv_load_opts lo = {RWKV_WEIGHTS_F32};
    if (rwkv_model_load(model_path, &lo, &model, err, sizeof err)) {
        fprintf(stderr, "rwkvd-fit-head: %s\n", err);
        goto done;
    }
    const rwkv_dims *dm = rwkv_model_dims(model);
    const int C = dm->n_embd;
    rwkv_engine_opts eo = {"cpu", 1, 64, threads};
    if (rwkv_engine_new(model, &eo, &eng, err, sizeof err)) {
        fprintf(stderr, "rwkvd-fit-head: %s\n", err);
        goto done;
    }
    if (!(f = fopen(data, "r"))) {
        fprintf(stderr, "rwkvd-fit-head: %s: %s\n", data, strerror(errno));
        goto done;
    }
    long lineno = 0;
    ssize_t got;
    while ((got = getline(&line, &line_cap, f)) >= 0) {
        lineno++;
        if (got == 0 || strspn(line, " \t\r\n") == (size_t)got)
            continue;
        json_error_t je;
        json_t *j = json_loadb(line, (size_t)got, JSON_REJECT_DUPLICATES, &je);
        const char *text = NULL, *label = NULL;
        size_t text_len = 0;
        if (!j || json_unpack_ex(j, &je, JSON_STRICT, "{s:s%, s:s}", "text", &text, &text_len, "label", &label)) {
            fprintf(stderr, "rwkvd-fit-head: %s:%ld:%d: %s\n", data, lineno, je.column, je.text);
            json_decref(j);
            goto done;
        }
        int k = label_index(&ds, label);
        if (k < 0) {
            fprintf(stderr, "rwkvd-fit-head: %s:%ld: bad label (1..64 octets, no spaces, at most 256 labels)\n", data,
                    lineno);
            json_decref(j);
            goto done;
        }
        size_t full_len = text_len + strlen(sep) + strlen(suffix);
        char *full = malloc(full_len + 1);
        int32_t *nids = realloc(ids, (full_len + 1) * sizeof *ids);
        if (!full || !nids) {
            free(full);
            json_decref(j);
            goto done;
        }
        ids = nids;
        memcpy(full, text, text_len);
        strcpy(full + text_len, sep);
        strcat(full + text_len, suffix);
        json_decref(j);
        /* the daemon tokenizes text, separator and suffix each on their own */
        long n1 = rwkv_tokenizer_encode(tok, full, text_len, ids, full_len + 1);
        long n2 = rwkv_tokenizer_encode(tok, sep, strlen(sep), ids + n1, full_len + 1 - (size_t)n1);
        long n3 = rwkv_tokenizer_encode(tok, suffix, strlen(suffix), ids + n1 + n2, full_len + 1 - (size_t)(n1 + n2));
        free(full);
        long n_ids = n1 + n2 + n3;
        if (n1 < 0 || n2 < 0 || n3 < 0 || n_ids < 1) {
            fprintf(stderr, "rwkvd-fit-head: %s:%ld: nothing to feed (empty text, separator and suffix)\n", data, lineno);
            goto done;
        }
        if (ds.n == ds.cap) {
            ds.cap = ds.cap ? ds.cap * 2 : 256;
            float *nx = realloc(ds.x, ds.cap * (size_t)C * sizeof *nx);
            int *ny = realloc(ds.y, ds.cap * sizeof *ny);
            if (nx)
                ds.x = nx;
            if (ny)
                ds.y = ny;
            if (!nx || !ny)
                goto done;
        }
        rwkv_engine_state_reset(eng, 0);
        if (rwkv_engine_seq(eng, 0, ids, (int)n_ids, ds.x + ds.n * (size_t)C, NULL, NULL)) {
            fprintf(stderr, "rwkvd-fit-head: %s:%ld: the engine failed\n", data, lineno);
            goto done;
        }
        ds.y[ds.n++] = k;
    }
    if (ds.n_labels < 2 || ds.n < 2) {
        fprintf(stderr, "rwkvd-fit-head: %s: need at least 2 examples and 2 distinct labels\n", data);
        goto done;
    }
    const int K = ds.n_labels;
    const size_t N = ds.n;
    mean = calloc((size_t)C, sizeof *mean);
    sd = calloc((size_t)C, sizeof *sd);
    w = calloc((size_t)K * (size_t)(C + 1), sizeof *w); /* row k: C weights then the bias */
    gw = calloc((size_t)K * (size_t)(C + 1), sizeof *gw);
    p = calloc((size_t)K, sizeof *p);
    if (!mean || !sd || !w || !gw || !p)
        goto done;
    for (size_t i = 0; i < N; i++)
        for (int j = 0; j < C; j++)
            mean[j] += ds.x[i * (size_t)C + (size_t)j] / (double)N;
    for (size_t i = 0; i < N; i++)
        for (int j = 0; j < C; j++) {
            double dv = ds.x[i * (size_t)C + (size_t)j] - mean[j];
            sd[j] += dv * dv / (double)N;
        }
    for (int j = 0; j < C; j++)
        sd[j] = sqrt(sd[j]) + 1e-6;
    double loss = 0;
    size_t correct = 0;
    for (int ep = 0; ep <= epochs; ep++) {
        memset(gw, 0, (size_t)K * (size_t)(C + 1) * sizeof *gw);
        loss = 0;
        correct = 0;
        for (size_t i = 0; i < N; i++) {
            const float *xi = ds.x + i * (size_t)C;
            double mx = -INFINITY, sum = 0;
            int best = 0;
            for (int k = 0; k < K; k++) {
                const double *wk = w + (size_t)k * (size_t)(C + 1);
                double z = wk[C];
                for (int j = 0; j < C; j++)
                    z += wk[j] * ((xi[j] - mean[j]) / sd[j]);
                p[k] = z;
                if (z > mx) {
                    mx = z;
                    best = k;
                }
            }
            for (int k = 0; k < K; k++)
                sum += (p[k] = exp(p[k] - mx));
            correct += best == ds.y[i];
            loss -= log(p[ds.y[i]] / sum + 1e-300);
            if (ep == epochs)
                continue;
            for (int k = 0; k < K; k++) {
                double g = p[k] / sum - (k == ds.y[i]);
                double *gk = gw + (size_t)k * (size_t)(C + 1);
                for (int j = 0; j < C; j++)
                    gk[j] += g * ((xi[j] - mean[j]) / sd[j]);
                gk[C] += g;
            }
        }
        if (ep == epochs)
            break;
        for (int k = 0; k < K; k++)
            for (int j = 0; j <= C; j++) {
                double *wk = w + (size_t)k * (size_t)(C + 1);
                double reg = j < C ? l2 * wk[j] : 0;
                wk[j] -= lr * (gw[(size_t)k * (size_t)(C + 1) + (size_t)j] / (double)N + reg);
            }
    }
    head = rwkvd_linhead_new(C, K, (const char *const *)ds.labels);
    if (!head)
        goto done;
    for (int k = 0; k < K; k++) {
        const double *wk = w + (size_t)k * (size_t)(C + 1);
        double b = wk[C];
        for (int j = 0; j < C; j++) {
            head->w[(size_t)k * (size_t)C + (size_t)j] = (float)(wk[j] / sd[j]);
            b -= wk[j] * mean[j] / sd[j];
        }
        head->b[k] = (float)b;
    }
    FILE *of = fopen(out, "w");
    if (!of || rwkvd_linhead_write(head, of) != 0 || fclose(of) != 0) {
        fprintf(stderr, "rwkvd-fit-head: cannot write %s\n", out);
        goto done;
    }
    fprintf(stderr, "rwkvd-fit-head: %zu examples, %d labels, %d dims: training loss %.4f, accuracy %.3f -> %s\n", N, K,
            C, loss / (double)N, (double)correct / (double)N, out);
    status = 0;
done:
    if (f)
        fclose(f);
    free(line);
    free(ids);
    free(w);
    free(gw);
    free(mean);
    free(sd);
    free(p);
    for (int k = 0; k < ds.n_labels; k++)
        free(ds.labels[k]);
    free(ds.labels);
    free(ds.x);
    free(ds.y);
    rwkvd_linhead_destroy(&head);
    rwkv_engine_destroy(&eng);
    rwkv_model_destroy(&model);
    rwkv_tokenizer_destroy(&tok);
    return status;
}
