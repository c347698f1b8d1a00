/* durable_test.h — helpers shared by the durable-state tests: a scriptable fault hook for
 * rwkvd_fsio and small file utilities. Header-only (static functions) so each test program
 * stays one file. */
#ifndef RWKVD_DURABLE_TEST_H
#define RWKVD_DURABLE_TEST_H

#include "fsio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* snprintf into a char array, exiting on truncation (test paths are short). */
#define PATHF(buf, ...) \
    do { \
        int n_ = snprintf(buf, sizeof buf, __VA_ARGS__); \
        if (n_ < 0 || (size_t)n_ >= sizeof buf) { \
            fprintf(stderr, "%s:%d: path too long\n", __FILE__, __LINE__); \
            exit(1); \
        } \
    } while (0)

/* Fail the `nth` call (1-based, counted by this hook) of `op` with `err`; with short_n > 0,
 * that call instead writes short_n bytes and the next WRITE call fails. */
typedef struct {
    int armed;
    rwkvd_fsio_op op;
    int nth;
    int err;          /* positive errno */
    size_t short_n;
    int seen;
    int fired;
    int pending_fail; /* after a short write */
} fault_plan;

static inline int fault_hook(void *ctx, rwkvd_fsio_op op, const char *path, size_t len)
{
    (void)path;
    fault_plan *f = ctx;
    if (!f->armed || op != f->op)
        return 0;
    if (f->pending_fail) {
        f->pending_fail = 0;
        f->fired++;
        return -f->err;
    }
    if (++f->seen != f->nth)
        return 0;
    if (f->short_n && op == RWKVD_FSIO_WRITE && f->short_n < len) {
        f->pending_fail = 1;
        return (int)f->short_n;
    }
    f->fired++;
    return -f->err;
}

static inline void fault_arm(fault_plan *f, rwkvd_fsio_op op, int nth, int err, size_t short_n)
{
    memset(f, 0, sizeof *f);
    f->armed = 1;
    f->op = op;
    f->nth = nth;
    f->err = err;
    f->short_n = short_n;
}

static inline int file_exists(const char *p)
{
    return access(p, F_OK) == 0;
}

static inline long long file_size(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 ? (long long)sb.st_size : -1;
}

/* Number of directory entries whose name ends with suffix. */
static inline int count_suffix(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    size_t m = strlen(suffix);
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t k = strlen(de->d_name);
        if (k >= m && strcmp(de->d_name + k - m, suffix) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static inline void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    char p[4096];
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        PATHF(p, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            rm_rf(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

#endif
