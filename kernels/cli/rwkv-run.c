/* rwkv-run — run an RWKV-7 checkpoint from the command line.
 *
 * Two jobs, both contracts other checks rely on:
 *   rwkv-run --model M.pth --tokens 34,105,110 --dump-logits OUT.f32
 *       feeds the tokens one at a time from a zero state and writes T×V little-endian
 *       float32 logits (one row per token);
 *   rwkv-run --model M.pth [--vocab V.txt] --prompt TEXT --generate N [sampling options]
 *       streams the continuation to stdout.
 * Not a chat front end: no templates, no history.
 */
#include "rwkv.h"
#include "rwkv_sampler.h"
#include "rwkv_tokenizer.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rwkv-run --model M.pth [options]\n"
            "  --tokens I,J,K          feed these token ids one at a time from a zero state\n"
            "  --dump-logits OUT.f32   with --tokens: write T x V float32 logits (little-endian)\n"
            "  --prompt TEXT           text to feed (needs --vocab unless the model has V = 256)\n"
            "  --vocab V.txt           World vocabulary (rwkv_vocab_v20230424.txt format)\n"
            "  --generate N            sample N tokens after the prompt and print them\n"
            "  --temperature T         default 1.0 (0 = greedy)\n"
            "  --top-p P               default 0.85\n"
            "  --top-k K               default 0 (off)\n"
            "  --presence-penalty A    default 0\n"
            "  --frequency-penalty A   default 0\n"
            "  --penalty-decay D       default 0.996\n"
            "  --seed S                default 42\n"
            "  --threads N             CPU threads (default: all online CPUs)\n"
            "  --backend NAME          cpu (default), cuda, cuda-emu (tests), auto (cuda where usable,\n"
            "                          else cpu); `--backend list` shows which run on this machine\n"
            "  --weights f32|stored|bf16|f16|bf16dot  in-memory weight type (default f32; bf16dot:\n"
            "                 bf16 weights and bf16-rounded inputs with bf16 dot products, fast and lossy)\n"
            "  --verbose               print load and speed figures to stderr\n");
}

/* --backend list: every known backend, whether it runs here, and what on or why not. */
static int list_backends(void)
{
    char msg[512];
    for (int i = 0; i < rwkv_backend_count(); i++) {
        const char *name = rwkv_backend_name_at(i);
        int rc = rwkv_backend_probe(name, msg, sizeof msg);
        printf("%-10s %-12s %s\n", name, rc == 0 ? "available" : "unavailable", msg);
    }
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int parse_num(const char *s, const char *what, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "rwkv-run: %s: '%s' is not a number in [%g, %g]\n", what, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_tokens(const char *s, int32_t **out, int *n)
{
    int cap = 16, k = 0;
    int32_t *t = malloc((size_t)cap * sizeof *t);
    if (!t)
        return -1;
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "rwkv-run: --tokens: bad token id near '%s'\n", s);
            free(t);
            return -1;
        }
        if (k == cap) {
            cap *= 2;
            int32_t *nt = realloc(t, (size_t)cap * sizeof *t);
            if (!nt) {
                free(t);
                return -1;
            }
            t = nt;
        }
        t[k++] = (int32_t)v;
        s = *end ? end + 1 : end;
    }
    *out = t;
    *n = k;
    return 0;
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *vocab_path = NULL, *prompt = NULL, *tokens_arg = NULL, *dump = NULL;
    const char *backend = "cpu";
    long n_gen = 0;
    int threads = 0;
    bool verbose = false;
    rwkv_load_opts lo = {RWKV_WEIGHTS_F32};
    rwkv_sampler_params sp;
    rwkv_sampler_params_default(&sp);
    sp.top_p = 0.85f;
    sp.penalty_decay = 0.996f;
    sp.seed = 42;
    enum { O_MODEL = 256, O_VOCAB, O_PROMPT, O_TOKENS, O_DUMP, O_GEN, O_TEMP, O_TOPP, O_TOPK, O_PRES, O_FREQ,
           O_DECAY, O_SEED, O_THREADS, O_BACKEND, O_WEIGHTS, O_VERBOSE, O_HELP };
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL}, {"vocab", required_argument, 0, O_VOCAB},
        {"prompt", required_argument, 0, O_PROMPT}, {"tokens", required_argument, 0, O_TOKENS},
        {"dump-logits", required_argument, 0, O_DUMP}, {"generate", required_argument, 0, O_GEN},
        {"temperature", required_argument, 0, O_TEMP}, {"top-p", required_argument, 0, O_TOPP},
        {"top-k", required_argument, 0, O_TOPK}, {"presence-penalty", required_argument, 0, O_PRES},
        {"frequency-penalty", required_argument, 0, O_FREQ}, {"penalty-decay", required_argument, 0, O_DECAY},
        {"seed", required_argument, 0, O_SEED}, {"threads", required_argument, 0, O_THREADS},
        {"backend", required_argument, 0, O_BACKEND}, {"weights", required_argument, 0, O_WEIGHTS},
        {"verbose", no_argument, 0, O_VERBOSE}, {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0},
    };
    int c;
    double v;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: model_path = optarg; break;
        case O_VOCAB: vocab_path = optarg; break;
        case O_PROMPT: prompt = optarg; break;
        case O_TOKENS: tokens_arg = optarg; break;
        case O_DUMP: dump = optarg; break;
        case O_GEN: if (parse_num(optarg, "--generate", 0, 1e9, &v)) return 2; n_gen = (long)v; break;
        case O_TEMP: if (parse_num(optarg, "--temperature", 0, 100, &v)) return 2; sp.temperature = (float)v; break;
        case O_TOPP: if (parse_num(optarg, "--top-p", 0, 1, &v)) return 2; sp.top_p = (float)v; break;
        case O_TOPK: if (parse_num(optarg, "--top-k", 0, 1e9, &v)) return 2; sp.top_k = (int)v; break;
        case O_PRES: if (parse_num(optarg, "--presence-penalty", -100, 100, &v)) return 2; sp.presence_penalty = (float)v; break;
        case O_FREQ: if (parse_num(optarg, "--frequency-penalty", -100, 100, &v)) return 2; sp.frequency_penalty = (float)v; break;
        case O_DECAY: if (parse_num(optarg, "--penalty-decay", 0, 1, &v)) return 2; sp.penalty_decay = (float)v; break;
        case O_SEED: if (parse_num(optarg, "--seed", 0, 1.8e19, &v)) return 2; sp.seed = (uint64_t)v; break;
        case O_THREADS: if (parse_num(optarg, "--threads", 0, 1024, &v)) return 2; threads = (int)v; break;
        case O_BACKEND: backend = optarg; break;
        case O_WEIGHTS:
            if (rwkv_weights_parse(optarg, &lo.weights)) {
                fprintf(stderr, "rwkv-run: --weights: '%s' is not one of f32, stored, bf16, f16\n", optarg);
                return 2;
            }
            break;
        case O_VERBOSE: verbose = true; break;
        case O_HELP: usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rwkv-run: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (strcmp(backend, "list") == 0)
        return list_backends();
    if (!model_path) {
        fprintf(stderr, "rwkv-run: --model is required\n");
        usage(stderr);
        return 2;
    }
    if (!tokens_arg && !prompt) {
        fprintf(stderr, "rwkv-run: give --tokens or --prompt\n");
        return 2;
    }
    if (tokens_arg && prompt) {
        fprintf(stderr, "rwkv-run: --tokens and --prompt are exclusive\n");
        return 2;
    }
    if (dump && !tokens_arg) {
        fprintf(stderr, "rwkv-run: --dump-logits needs --tokens\n");
        return 2;
    }
    int32_t *ids = NULL;
    int n_tok = 0;
    if (tokens_arg && parse_tokens(tokens_arg, &ids, &n_tok))
        return 2;
    if (tokens_arg && n_tok == 0) {
        fprintf(stderr, "rwkv-run: --tokens is empty\n");
        free(ids);
        return 2;
    }

    char err[512] = "";
    /* before loading the model: an unusable backend should not cost a load */
    int prc = rwkv_backend_probe(backend, err, sizeof err);
    if (prc) {
        fprintf(stderr, "rwkv-run: --backend %s: %s%s\n", backend, prc == -EINVAL ? "" : "unavailable: ", err);
        free(ids);
        return 1;
    }
    if (verbose)
        fprintf(stderr, "rwkv-run: backend %s: %s\n", backend, err);
    int rc = 1;
    rwkv_model *model = NULL;
    rwkv_engine *eng = NULL;
    rwkv_tokenizer *tok = NULL;
    rwkv_sampler *smp = NULL;
    float *logits = NULL;
    FILE *out = NULL;
    double t0 = now_s();
    if (rwkv_model_load(model_path, &lo, &model, err, sizeof err)) {
        fprintf(stderr, "rwkv-run: %s\n", err);
        goto done;
    }
    const rwkv_dims *d = rwkv_model_dims(model);
    double t_load = now_s() - t0;
    if (verbose)
        fprintf(stderr, "rwkv-run: loaded %s: %s L%d C%d H%d N%d V%d F%d ranks %d/%d/%d/%d mix %d, %.1f M params, %.1f MB weights, %.2f s\n",
                model_path, rwkv_arch_name(d->arch), d->n_layer, d->n_embd, d->n_head, d->head_size, d->n_vocab, d->n_ffn,
                d->d_w, d->d_a, d->d_v, d->d_g, d->d_mix, rwkv_model_n_params(model) / 1e6,
                rwkv_model_weight_bytes(model) / 1e6, t_load);
    rwkv_engine_opts eo = {backend, 1, 64, threads};
    if (rwkv_engine_new(model, &eo, &eng, err, sizeof err)) {
        fprintf(stderr, "rwkv-run: %s\n", err);
        goto done;
    }
    const size_t V = (size_t)d->n_vocab;
    logits = malloc(V * sizeof(float));
    if (!logits)
        goto done;

    if (tokens_arg) {
        int n = n_tok;
        if (dump && !(out = fopen(dump, "wb"))) {
            fprintf(stderr, "rwkv-run: %s: %s\n", dump, strerror(errno));
            goto done;
        }
        for (int i = 0; i < n; i++) {
            if (ids[i] >= d->n_vocab) {
                fprintf(stderr, "rwkv-run: --tokens: id %d is out of range (n_vocab %d)\n", ids[i], d->n_vocab);
                goto done;
            }
            rwkv_step_item it = {0, ids[i], NULL, logits};
            if (rwkv_engine_step(eng, &it, 1)) {
                fprintf(stderr, "rwkv-run: step failed\n");
                goto done;
            }
            if (out && fwrite(logits, sizeof(float), V, out) != V) {
                fprintf(stderr, "rwkv-run: %s: write failed\n", dump);
                goto done;
            }
        }
        if (out && fclose(out) != 0) {
            out = NULL;
            fprintf(stderr, "rwkv-run: %s: write failed\n", dump);
            goto done;
        }
        out = NULL;
        if (!dump) { /* print the argmax of the last row, handy by hand */
            size_t best = 0;
            for (size_t i = 1; i < V; i++)
                if (logits[i] > logits[best])
                    best = i;
            printf("%zu\n", best);
        }
        rc = 0;
        goto done;
    }

    /* text generation */
    if (vocab_path) {
        if (rwkv_tokenizer_load(vocab_path, &tok, err, sizeof err)) {
            fprintf(stderr, "rwkv-run: %s\n", err);
            goto done;
        }
    } else if (d->n_vocab == 256) {
        rwkv_tokenizer_new_bytes(&tok);
    } else {
        fprintf(stderr, "rwkv-run: the model has %d tokens: give --vocab (e.g. rwkv_vocab_v20230424.txt)\n", d->n_vocab);
        goto done;
    }
    if (!tok)
        goto done;
    if (rwkv_tokenizer_n_ids(tok) > d->n_vocab) {
        fprintf(stderr, "rwkv-run: vocabulary has %d ids but the model only %d\n", rwkv_tokenizer_n_ids(tok), d->n_vocab);
        goto done;
    }
    size_t plen = strlen(prompt);
    long n_ids = rwkv_tokenizer_encode(tok, prompt, plen, NULL, 0);
    if (n_ids <= 0) {
        fprintf(stderr, "rwkv-run: --prompt is empty\n");
        goto done;
    }
    ids = malloc((size_t)n_ids * sizeof *ids);
    if (!ids || rwkv_tokenizer_encode(tok, prompt, plen, ids, (size_t)n_ids) != n_ids)
        goto done;
    if (rwkv_sampler_new(&sp, d->n_vocab, &smp, err, sizeof err)) {
        fprintf(stderr, "rwkv-run: %s\n", err);
        goto done;
    }
    /* ids without bytes can never be printed; id 0 (end of text) stops generation */
    bool world = vocab_path != NULL;
    for (int32_t i = world ? 1 : 0; i < d->n_vocab; i++)
        if (i >= rwkv_tokenizer_n_ids(tok))
            rwkv_sampler_ban(smp, i);
    double t1 = now_s();
    if (rwkv_engine_seq(eng, 0, ids, (int)n_ids, NULL, logits, NULL)) {
        fprintf(stderr, "rwkv-run: prompt failed\n");
        goto done;
    }
    double t_prompt = now_s() - t1;
    rwkv_decoder dec;
    rwkv_decoder_init(&dec, tok);
    char text[4096];
    long produced = 0;
    double t2 = now_s();
    for (; produced < n_gen; produced++) {
        int32_t id = rwkv_sampler_sample(smp, logits);
        if (id < 0 || (world && id == 0))
            break;
        const uint8_t *bytes;
        size_t nb = rwkv_tokenizer_token(tok, id, &bytes);
        /* pip's generate(): whitespace/digit tokens get presence but no frequency weight */
        static const char blanks[] = " \t0123456789";
        bool blank = nb > 0 && memmem(blanks, sizeof blanks - 1, bytes, nb) != NULL;
        rwkv_sampler_accept(smp, id, blank ? 0.0f : 1.0f);
        long w = rwkv_decoder_push(&dec, id, text, sizeof text);
        if (w > 0) {
            fwrite(text, 1, (size_t)w, stdout);
            fflush(stdout);
        }
        rwkv_step_item it = {0, id, NULL, logits};
        if (rwkv_engine_step(eng, &it, 1)) {
            fprintf(stderr, "rwkv-run: step failed\n");
            goto done;
        }
    }
    long w = rwkv_decoder_flush(&dec, text, sizeof text);
    if (w > 0)
        fwrite(text, 1, (size_t)w, stdout);
    printf("\n");
    double t_gen = now_s() - t2;
    if (verbose)
        fprintf(stderr, "rwkv-run: prompt %ld tokens in %.3f s (%.1f tok/s); generated %ld tokens in %.3f s (%.1f tok/s)\n",
                n_ids, t_prompt, n_ids / (t_prompt > 0 ? t_prompt : 1e-9), produced, t_gen,
                produced / (t_gen > 0 ? t_gen : 1e-9));
    rc = 0;
done:
    if (out)
        fclose(out);
    free(ids);
    free(logits);
    rwkv_sampler_destroy(&smp);
    rwkv_tokenizer_destroy(&tok);
    rwkv_engine_destroy(&eng);
    rwkv_model_destroy(&model);
    return rc;
}
