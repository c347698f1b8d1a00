/* testutil.h — tiny assertion helpers shared by the C test programs.
 * A failed CHECK prints file:line and the expression, counts a failure and continues;
 * test_finish() returns the process exit status (0 pass, 1 fail). Exit 77 = skipped. */
#ifndef RWKV_TESTUTIL_H
#define RWKV_TESTUTIL_H

#include <stdio.h>
#include <stddef.h>

extern int test_failures;
extern int test_checks;

#define CHECK(cond) \
    do { \
        test_checks++; \
        if (!(cond)) { \
            test_failures++; \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        } \
    } while (0)

#define CHECKF(cond, ...) \
    do { \
        test_checks++; \
        if (!(cond)) { \
            test_failures++; \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__); \
            fputc('\n', stderr); \
        } \
    } while (0)

#define TEST_SKIP 77

int test_finish(const char *name);
/* Read a whole file; returns malloc'd buffer (NUL-terminated) or NULL. */
char *test_read_file(const char *path, size_t *len);
int test_write_file(const char *path, const void *data, size_t len);
/* Path under $RWKV_TESTDATA (../shared/testdata), or NULL if it does not exist. */
const char *test_testdata(const char *rel, char *buf, size_t cap);
/* max |a-b| over n floats; NaN anywhere yields +inf. */
double test_max_abs_diff(const float *a, const float *b, size_t n);
/* A fresh temp directory (mkdtemp under $TMPDIR or /tmp); path in buf. */
int test_tmpdir(char *buf, size_t cap);

#endif
