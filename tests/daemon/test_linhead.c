/* test_linhead.c — the linear head file (daemon/linhead.c): write -> parse round trip is
 * exact, softmax application, and one error naming file:line per kind of damage. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linhead.h"
#include "testutil.h"

static void expect_error(const char *text, const char *want)
{
    rwkvd_linhead *h = NULL;
    char err[256] = "";
    int rc = rwkvd_linhead_parse(text, strlen(text), "h.head", &h, err, sizeof err);
    CHECKF(rc < 0 && h == NULL && strstr(err, want) != NULL, "for %s: rc %d err '%s', want '%s'", want, rc, err, want);
}

int main(void)
{
    const char *labels[] = {"yes", "no", "maybe"};
    rwkvd_linhead *h = rwkvd_linhead_new(4, 3, labels);
    CHECK(h != NULL);
    for (int i = 0; i < 12; i++)
        h->w[i] = (float)(i - 5) / 7.0f;
    h->b[0] = 0.125f;
    h->b[1] = -1e-7f;
    h->b[2] = 3.0f;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(rwkvd_linhead_write(h, f) == 0);
    fclose(f);
    rwkvd_linhead *g = NULL;
    char err[256] = "";
    CHECKF(rwkvd_linhead_parse(buf, len, "mem", &g, err, sizeof err) == 0, "%s", err);
    if (g) {
        CHECK(g->n_embd == 4 && g->n_labels == 3 && strcmp(g->labels[2], "maybe") == 0);
        CHECK(memcmp(g->w, h->w, 12 * sizeof(float)) == 0 && memcmp(g->b, h->b, 3 * sizeof(float)) == 0);
        const float x[4] = {1, -2, 0.5f, 3};
        float p[3];
        rwkvd_linhead_apply(g, x, p);
        double z[3], s = 0;
        for (int k = 0; k < 3; k++) {
            z[k] = g->b[k];
            for (int i = 0; i < 4; i++)
                z[k] += (double)g->w[k * 4 + i] * x[i];
        }
        for (int k = 0; k < 3; k++)
            s += exp(z[k]);
        for (int k = 0; k < 3; k++)
            CHECK(fabs(p[k] - exp(z[k]) / s) < 1e-6);
    }
    free(buf);
    rwkvd_linhead_destroy(&g);
    rwkvd_linhead_destroy(&h);
    rwkvd_linhead_destroy(&h); /* idempotent */

    expect_error("nope\n", "h.head:1: not a linear head file");
    expect_error("rwkvd-linear-head 1\nn_embd x\n", "h.head:2: n_embd");
    expect_error("rwkvd-linear-head 1\nn_embd 2\nn_labels 1\n", "h.head:3: n_labels");
    expect_error("rwkvd-linear-head 1\nn_embd 2\nn_labels 2\nlabel a\nlabel a\n", "h.head:5: duplicate label");
    expect_error("rwkvd-linear-head 1\nn_embd 2\nn_labels 2\nlabel a\nlabel b c\n", "h.head:5: label name");
    expect_error("rwkvd-linear-head 1\nn_embd 2\nn_labels 2\nlabel a\nlabel b\nbias 1\n", "h.head:6: bias");
    expect_error("rwkvd-linear-head 1\nn_embd 2\nn_labels 2\nlabel a\nlabel b\nbias 1 2\nw 1 nan\n", "h.head:7: w");
    expect_error("rwkvd-linear-head 1\nn_embd 2\nn_labels 2\nlabel a\nlabel b\nbias 1 2\nw 1 2\n", "h.head:8: file ends early");
    expect_error("rwkvd-linear-head 1\nn_embd 2\nn_labels 2\nlabel a\nlabel b\nbias 1 2\nw 1 2\nw 3 4\nextra\n",
                 "h.head:9: unexpected");
    rwkvd_linhead *m = NULL;
    CHECK(rwkvd_linhead_load("/nonexistent/x.head", &m, err, sizeof err) < 0 && strstr(err, "/nonexistent/x.head"));
    return test_finish("test_linhead");
}
