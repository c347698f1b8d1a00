/* fsio.c — see fsio.h. Each wrapper counts the call, asks the hook and the RWKVD_FAULT rules,
 * and only then performs the syscall. */
#include "fsio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static const char *const op_names[RWKVD_FSIO_N_OPS] = {
    "open", "write", "fsync", "rename", "unlink", "truncate", "dirsync", "link",
};

const char *rwkvd_fsio_op_name(rwkvd_fsio_op op)
{
    return (unsigned)op < RWKVD_FSIO_N_OPS ? op_names[op] : "?";
}

static const struct {
    const char *name;
    int err;
} errnos[] = {
    {"ENOSPC", ENOSPC}, {"EIO", EIO}, {"EDQUOT", EDQUOT},
    {"EROFS", EROFS},   {"EACCES", EACCES}, {"EFBIG", EFBIG},
};

/* One rule "module.op:ERRNO[@N]" of length n at s. 1 = parsed for this module, 0 = other
 * module, -EINVAL = malformed. */
static int parse_rule(const char *s, size_t n, const char *module, rwkvd_fsio_op *op, int *err,
                      uint64_t *from, uint64_t *to, uint32_t *sleep_ms)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf)
        return -EINVAL;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *dot = strchr(buf, '.'), *colon = strchr(buf, ':');
    if (!dot || !colon || colon < dot)
        return -EINVAL;
    *dot = 0;
    *colon = 0;
    char *at = strchr(colon + 1, '@');
    *from = 1;
    *to = 0;
    if (at) {
        *at = 0;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(at + 1, &end, 10);
        if (errno || (*end && *end != '-') || end == at + 1 || at[1] < '0' || at[1] > '9' || v == 0)
            return -EINVAL;
        *from = v;
        if (*end == '-') { /* N-M: calls N..M fail, later ones work (the fault clears) */
            char *m = end + 1;
            errno = 0;
            unsigned long long w = strtoull(m, &end, 10);
            if (errno || *end || end == m || *m < '0' || *m > '9' || w < v)
                return -EINVAL;
            *to = w;
        }
    }
    int found = -1;
    for (int i = 0; i < RWKVD_FSIO_N_OPS; i++)
        if (strcmp(dot + 1, op_names[i]) == 0)
            found = i;
    if (found < 0)
        return -EINVAL;
    *op = (rwkvd_fsio_op)found;
    *err = 0;
    *sleep_ms = 0;
    for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++)
        if (strcmp(colon + 1, errnos[i].name) == 0)
            *err = errnos[i].err;
    if (strncmp(colon + 1, "SLEEP", 5) == 0) { /* a stall, then the call as usual */
        char *end;
        errno = 0;
        unsigned long v = strtoul(colon + 6, &end, 10);
        if (errno || *end || end == colon + 6 || v == 0 || v > 600000)
            return -EINVAL;
        *sleep_ms = (uint32_t)v;
    }
    if (!*err && !*sleep_ms)
        return -EINVAL;
    return strcmp(buf, module) == 0;
}

int rwkvd_fsio_faults(rwkvd_fsio *io, const char *module, const char *spec)
{
    if (!spec || !*spec)
        return 0;
    rwkvd_fsio tmp = *io;
    const char *s = spec;
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        rwkvd_fsio_op op;
        int err;
        uint64_t from, to;
        uint32_t sleep_ms;
        int r = parse_rule(s, n, module, &op, &err, &from, &to, &sleep_ms);
        if (r < 0)
            return r;
        if (r == 1) {
            if (tmp.n_rules == RWKVD_FSIO_MAX_RULES)
                return -EINVAL;
            tmp.rules[tmp.n_rules].op = op;
            tmp.rules[tmp.n_rules].err = err;
            tmp.rules[tmp.n_rules].from = from;
            tmp.rules[tmp.n_rules].to = to;
            tmp.rules[tmp.n_rules].sleep_ms = sleep_ms;
            tmp.n_rules++;
        }
        if (!comma)
            break;
        s = comma + 1;
    }
    *io = tmp;
    return 0;
}

/* Count the call and decide its fate: 0 go, < 0 fail, > 0 short write. */
static int gate(rwkvd_fsio *io, rwkvd_fsio_op op, const char *path, size_t len)
{
    if (!io)
        return 0;
    uint64_t n = ++io->n_calls[op];
    for (int i = 0; i < io->n_rules; i++) {
        if (io->rules[i].op != op || n < io->rules[i].from || (io->rules[i].to && n > io->rules[i].to))
            continue;
        if (io->rules[i].sleep_ms) {
            struct timespec ts = {io->rules[i].sleep_ms / 1000, (long)(io->rules[i].sleep_ms % 1000) * 1000000L};
            while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
            continue;
        }
        return -io->rules[i].err;
    }
    if (io->hook) {
        int r = io->hook(io->ctx, op, path, len);
        if (r > 0 && (op != RWKVD_FSIO_WRITE || (size_t)r >= len))
            r = 0;
        return r;
    }
    return 0;
}

int rwkvd_fsio_open(rwkvd_fsio *io, const char *path, int flags, mode_t mode)
{
    int r = gate(io, RWKVD_FSIO_OPEN, path, 0);
    if (r < 0)
        return r;
    int fd;
    do
        fd = open(path, flags | O_CLOEXEC, mode);
    while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

static int write_loop(rwkvd_fsio *io, int fd, const void *buf, size_t len, off_t off, int use_off,
                      const char *path)
{
    const unsigned char *p = buf;
    while (len > 0) {
        int r = gate(io, RWKVD_FSIO_WRITE, path, len);
        if (r < 0)
            return r;
        size_t want = r > 0 ? (size_t)r : len;
        ssize_t w = use_off ? pwrite(fd, p, want, off) : write(fd, p, want);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (w == 0)
            return -EIO;
        p += w;
        off += w;
        len -= (size_t)w;
    }
    return 0;
}

int rwkvd_fsio_pwrite_all(rwkvd_fsio *io, int fd, const void *buf, size_t len, off_t off,
                          const char *path)
{
    return write_loop(io, fd, buf, len, off, 1, path);
}

int rwkvd_fsio_write_all(rwkvd_fsio *io, int fd, const void *buf, size_t len, const char *path)
{
    return write_loop(io, fd, buf, len, 0, 0, path);
}

int rwkvd_fsio_fsync(rwkvd_fsio *io, int fd, const char *path, int data_only)
{
    int r = gate(io, RWKVD_FSIO_FSYNC, path, 0);
    if (r < 0)
        return r;
    do
        r = data_only ? fdatasync(fd) : fsync(fd);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

int rwkvd_fsio_rename(rwkvd_fsio *io, const char *from, const char *to)
{
    int r = gate(io, RWKVD_FSIO_RENAME, to, 0);
    if (r < 0)
        return r;
    return rename(from, to) < 0 ? -errno : 0;
}

int rwkvd_fsio_link(rwkvd_fsio *io, const char *from, const char *to)
{
    int r = gate(io, RWKVD_FSIO_LINK, to, 0);
    if (r < 0)
        return r;
    return link(from, to) < 0 ? -errno : 0;
}

int rwkvd_fsio_unlink(rwkvd_fsio *io, const char *path)
{
    int r = gate(io, RWKVD_FSIO_UNLINK, path, 0);
    if (r < 0)
        return r;
    return unlink(path) < 0 ? -errno : 0;
}

int rwkvd_fsio_truncate(rwkvd_fsio *io, int fd, off_t len, const char *path)
{
    int r = gate(io, RWKVD_FSIO_TRUNCATE, path, 0);
    if (r < 0)
        return r;
    do
        r = ftruncate(fd, len);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

int rwkvd_fsio_dirsync(rwkvd_fsio *io, int dirfd, const char *dir)
{
    int r = gate(io, RWKVD_FSIO_DIRSYNC, dir, 0);
    if (r < 0)
        return r;
    do
        r = fsync(dirfd);
    while (r < 0 && errno == EINTR);
    /* Some file systems cannot fsync a directory (EINVAL); that is not a lost write. */
    if (r < 0 && errno == EINVAL)
        return 0;
    return r < 0 ? -errno : 0;
}

void rwkvd_errf(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || !err_len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}
