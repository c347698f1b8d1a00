/* linhead.c — the linear head file (see linhead.h): parser, writer, softmax application.
 * Parsing is line by line over a copy of the text, so every error names its line. */
#include "linhead.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void rwkvd_linhead_destroy(rwkvd_linhead **hp)
{
    if (!hp || !*hp)
        return;
    rwkvd_linhead *h = *hp;
    if (h->labels)
        for (int k = 0; k < h->n_labels; k++)
            free(h->labels[k]);
    free(h->labels);
    free(h->w);
    free(h->b);
    free(h);
    *hp = NULL;
}

rwkvd_linhead *rwkvd_linhead_new(int n_embd, int n_labels, const char *const *labels)
{
    if (n_embd < 1 || n_labels < 2 || n_labels > RWKVD_LINHEAD_MAX_LABELS)
        return NULL;
    rwkvd_linhead *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->n_embd = n_embd;
    h->n_labels = n_labels;
    h->labels = calloc((size_t)n_labels, sizeof *h->labels);
    h->w = calloc((size_t)n_labels * (size_t)n_embd, sizeof *h->w);
    h->b = calloc((size_t)n_labels, sizeof *h->b);
    if (!h->labels || !h->w || !h->b)
        goto fail;
    for (int k = 0; k < n_labels; k++)
        if (!(h->labels[k] = strdup(labels ? labels[k] : "")))
            goto fail;
    return h;
fail:
    rwkvd_linhead_destroy(&h);
    return NULL;
}

typedef struct {
    const char *name;
    int line;
    char *err;
    size_t err_len;
} parse_ctx;

__attribute__((format(printf, 2, 3))) static int perr(parse_ctx *c, const char *fmt, ...)
{
    if (c->err && c->err_len) {
        int n = snprintf(c->err, c->err_len, "%s:%d: ", c->name, c->line);
        if (n >= 0 && (size_t)n < c->err_len) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->err + n, c->err_len - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -EINVAL;
}

/* Parse count floats separated by single spaces from s; s must be fully consumed. */
static int parse_floats(parse_ctx *c, const char *s, float *out, int count, const char *what)
{
    for (int i = 0; i < count; i++) {
        if (*s != ' ')
            return perr(c, "%s: expected %d numbers, found %d", what, count, i);
        s++;
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (end == s || (*end != ' ' && *end != '\0'))
            return perr(c, "%s: number %d is not a number", what, i + 1);
        if (!isfinite(v) || fabs(v) > 3.0e38)
            return perr(c, "%s: number %d is not a finite float", what, i + 1);
        out[i] = (float)v;
        s = end;
    }
    if (*s != '\0')
        return perr(c, "%s: more than %d numbers", what, count);
    return 0;
}

static int parse_int_field(parse_ctx *c, const char *line, const char *key, int lo, int hi, int *out)
{
    size_t kl = strlen(key);
    if (strncmp(line, key, kl) != 0 || line[kl] != ' ')
        return perr(c, "expected '%s N'", key);
    char *end;
    errno = 0;
    long v = strtol(line + kl + 1, &end, 10);
    if (end == line + kl + 1 || *end != '\0' || errno || v < lo || v > hi)
        return perr(c, "%s: expected an integer in %d..%d", key, lo, hi);
    *out = (int)v;
    return 0;
}

int rwkvd_linhead_parse(const char *text, size_t len, const char *name, rwkvd_linhead **out,
                        char *err, size_t err_len)
{
    parse_ctx c = {name ? name : "(head)", 0, err, err_len};
    if (!text || !out)
        return -EINVAL;
    char *buf = malloc(len + 1);
    if (!buf)
        return -ENOMEM;
    memcpy(buf, text, len);
    buf[len] = '\0';
    rwkvd_linhead *h = NULL;
    int rc = 0, C = 0, K = 0, n_label = 0, n_w = 0;
    bool have_bias = false;
    char *save = buf;
    for (char *line = buf; line && rc == 0; line = save) {
        char *nl = strchr(line, '\n');
        save = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        else if (*line == '\0')
            break;
        c.line++;
        if (memchr(line, '\0', (size_t)(nl ? nl - line : (long)strlen(line))) != NULL) {
            rc = perr(&c, "NUL octet");
            break;
        }
        if (c.line == 1) {
            if (strcmp(line, RWKVD_LINHEAD_MAGIC) != 0)
                rc = perr(&c, "not a linear head file (first line must be '%s')", RWKVD_LINHEAD_MAGIC);
        } else if (c.line == 2) {
            rc = parse_int_field(&c, line, "n_embd", 1, 1 << 20, &C);
        } else if (c.line == 3) {
            rc = parse_int_field(&c, line, "n_labels", 2, RWKVD_LINHEAD_MAX_LABELS, &K);
            if (rc == 0 && !(h = rwkvd_linhead_new(C, K, NULL)))
                rc = -ENOMEM;
        } else if (n_label < K) {
            const char *nm = line + 6;
            size_t nl_len = strlen(nm);
            if (strncmp(line, "label ", 6) != 0)
                rc = perr(&c, "expected 'label NAME' (%d of %d)", n_label + 1, K);
            else if (nl_len < 1 || nl_len > RWKVD_LINHEAD_LABEL_MAX)
                rc = perr(&c, "label name must be 1..%d octets", RWKVD_LINHEAD_LABEL_MAX);
            else {
                for (size_t i = 0; i < nl_len && rc == 0; i++)
                    if ((unsigned char)nm[i] <= 0x20 || nm[i] == 0x7f)
                        rc = perr(&c, "label name has a space or control octet at offset %zu", i);
                for (int k = 0; k < n_label && rc == 0; k++)
                    if (strcmp(h->labels[k], nm) == 0)
                        rc = perr(&c, "duplicate label '%s'", nm);
                if (rc == 0) {
                    free(h->labels[n_label]);
                    if (!(h->labels[n_label] = strdup(nm)))
                        rc = -ENOMEM;
                    n_label++;
                }
            }
        } else if (!have_bias) {
            if (strncmp(line, "bias", 4) != 0)
                rc = perr(&c, "expected 'bias' and %d numbers", K);
            else
                rc = parse_floats(&c, line + 4, h->b, K, "bias");
            have_bias = true;
        } else if (n_w < K) {
            if (strncmp(line, "w", 1) != 0)
                rc = perr(&c, "expected 'w' and %d numbers (row %d of %d)", C, n_w + 1, K);
            else
                rc = parse_floats(&c, line + 1, h->w + (size_t)n_w * (size_t)C, C, "w");
            n_w++;
        } else {
            rc = perr(&c, "unexpected content after the last weight row");
        }
    }
    if (rc == 0 && (c.line < 3 || n_label < K || !have_bias || n_w < K)) {
        c.line++;
        rc = perr(&c, "file ends early: expected %s", c.line <= 3 ? "the header" : n_label < K ? "more labels"
                                                                : !have_bias                ? "the bias line"
                                                                                            : "more weight rows");
    }
    free(buf);
    if (rc) {
        rwkvd_linhead_destroy(&h);
        return rc;
    }
    *out = h;
    return 0;
}

int rwkvd_linhead_load(const char *path, rwkvd_linhead **out, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        if (err && err_len)
            snprintf(err, err_len, "%s: %s", path, strerror(e));
        return -e;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (len + 65536 > cap) {
            cap = cap ? cap * 2 : 65536;
            if (cap > ((size_t)1 << 30)) {
                rc = -EFBIG;
                break;
            }
            char *t = realloc(text, cap);
            if (!t) {
                rc = -ENOMEM;
                break;
            }
            text = t;
        }
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (rc == 0 && ferror(f))
        rc = -EIO;
    fclose(f);
    if (rc == 0)
        rc = rwkvd_linhead_parse(text, len, path, out, err, err_len);
    else if (err && err_len)
        snprintf(err, err_len, "%s: %s", path, strerror(-rc));
    free(text);
    return rc;
}

int rwkvd_linhead_write(const rwkvd_linhead *h, FILE *f)
{
    fprintf(f, "%s\nn_embd %d\nn_labels %d\n", RWKVD_LINHEAD_MAGIC, h->n_embd, h->n_labels);
    for (int k = 0; k < h->n_labels; k++)
        fprintf(f, "label %s\n", h->labels[k]);
    fputs("bias", f);
    for (int k = 0; k < h->n_labels; k++)
        fprintf(f, " %.9g", (double)h->b[k]);
    fputc('\n', f);
    for (int k = 0; k < h->n_labels; k++) {
        fputc('w', f);
        for (int i = 0; i < h->n_embd; i++)
            fprintf(f, " %.9g", (double)h->w[(size_t)k * (size_t)h->n_embd + (size_t)i]);
        fputc('\n', f);
    }
    return ferror(f) ? -EIO : 0;
}

void rwkvd_linhead_apply(const rwkvd_linhead *h, const float *hidden, float *probs)
{
    const int C = h->n_embd;
    double z[RWKVD_LINHEAD_MAX_LABELS], zmax = -INFINITY, sum = 0;
    for (int k = 0; k < h->n_labels; k++) {
        const float *w = h->w + (size_t)k * (size_t)C;
        double acc = h->b[k];
        for (int i = 0; i < C; i++)
            acc += (double)w[i] * (double)hidden[i];
        z[k] = acc;
        if (acc > zmax)
            zmax = acc;
    }
    for (int k = 0; k < h->n_labels; k++)
        sum += (z[k] = exp(z[k] - zmax));
    for (int k = 0; k < h->n_labels; k++)
        probs[k] = (float)(z[k] / sum);
}
