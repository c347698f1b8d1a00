/* linhead.h — linear classification heads: K labels x C weights + bias, applied to the
 * final hidden vector (after ln_out) of a channel state, with no vocabulary head.
 *
 * File format (text, UTF-8, '\n' line ends, fields separated by single spaces):
 *
 *   rwkvd-linear-head 1
 *   n_embd C
 *   n_labels K
 *   label NAME            K lines, NAME = 1..64 octets without spaces or control octets
 *   bias b_0 ... b_{K-1}
 *   w w_0 ... w_{C-1}     K lines: row k holds the weights of label k
 *
 * Numbers are written with %.9g, so a float round-trips exactly. probs = softmax(W h + b).
 * What it is not: a fitting tool (fit_head.c) or a model check beyond n_embd.
 * Invariant: a loaded head is complete (every row, finite numbers) and immutable.
 */
#ifndef RWKVD_LINHEAD_H
#define RWKVD_LINHEAD_H

#include <stddef.h>
#include <stdio.h>

#define RWKVD_LINHEAD_MAGIC "rwkvd-linear-head 1"
#define RWKVD_LINHEAD_MAX_LABELS 256
#define RWKVD_LINHEAD_LABEL_MAX 64

typedef struct {
    int n_embd;     /* C */
    int n_labels;   /* K, 2..256 */
    char **labels;  /* (K) NUL-terminated names */
    float *w;       /* (K, C) row-major */
    float *b;       /* (K) */
} rwkvd_linhead;

/* Load a head file. 0 and *out, or -EINVAL with err = "path:line: reason", -ENOMEM, or the
 * errno of fopen. *out is written only on success. */
int rwkvd_linhead_load(const char *path, rwkvd_linhead **out, char *err, size_t err_len);
/* Parse from memory; name stands for the file in messages. */
int rwkvd_linhead_parse(const char *text, size_t len, const char *name, rwkvd_linhead **out,
                        char *err, size_t err_len);
/* A zeroed head of K labels over C dims with names copied from labels. NULL on failure. */
rwkvd_linhead *rwkvd_linhead_new(int n_embd, int n_labels, const char *const *labels);
/* Write to f in the format above. 0 or -EIO. */
int rwkvd_linhead_write(const rwkvd_linhead *h, FILE *f);
/* probs[k] = softmax(W hidden + b)[k]; hidden is (C). Never allocates. */
void rwkvd_linhead_apply(const rwkvd_linhead *h, const float *hidden, float *probs);
void rwkvd_linhead_destroy(rwkvd_linhead **h);

#endif
