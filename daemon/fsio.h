/* fsio.h — the file-system calls of the durable store (snapshot.c, wal.c), each behind an
 * optional fault hook and a call counter, plus the little-endian helpers of the on-disk
 * formats (FORMATS.md).
 * What it is not: a general I/O layer; only what atomic snapshot writes and WAL appends need.
 * Invariant: with no hook installed every call is the plain syscall (EINTR retried), and a
 * hooked failure happens *instead of* the call, so nothing is done that the caller does not
 * see as done.
 *
 * Faults for tests and for integration runs of the real daemon: either install `hook`, or
 * call rwkvd_fsio_faults() with a spec such as getenv("RWKVD_FAULT"):
 *     RWKVD_FAULT="snapshot.write:ENOSPC,wal.fsync:EIO@3"
 * a comma-separated list of MODULE.OP:ERRNO[@N[-M]]: the N-th call (1-based, default 1) of OP
 * made by MODULE and every later one (with -M: up to the M-th, after which the calls work
 * again, as when space is freed) fail with ERRNO. OP is one of open, write, fsync,
 * rename, unlink, truncate, dirsync, link; ERRNO one of ENOSPC, EIO, EDQUOT, EROFS, EACCES, EFBIG,
 * or SLEEP<ms> (1..600000): those calls stall that long, then run as usual (a slow disk). */
#ifndef RWKVD_FSIO_H
#define RWKVD_FSIO_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

typedef enum {
    RWKVD_FSIO_OPEN,     /* open/create a file for writing */
    RWKVD_FSIO_WRITE,    /* one write(2)/pwrite(2) */
    RWKVD_FSIO_FSYNC,    /* fsync/fdatasync of a file */
    RWKVD_FSIO_RENAME,
    RWKVD_FSIO_UNLINK,
    RWKVD_FSIO_TRUNCATE, /* ftruncate */
    RWKVD_FSIO_DIRSYNC,  /* fsync of the directory */
    RWKVD_FSIO_LINK,     /* a second name for a file (link(2)) */
    RWKVD_FSIO_N_OPS
} rwkvd_fsio_op;

/* Called before each operation with the path concerned and, for WRITE, the bytes asked for.
 * Return 0 to perform it; a negative errno to fail it with that error without performing
 * it; for WRITE only, a positive n < len to perform a short write of n bytes (the caller then
 * continues with the rest, calling the hook again). */
typedef int (*rwkvd_fsio_hook)(void *ctx, rwkvd_fsio_op op, const char *path, size_t len);

#define RWKVD_FSIO_MAX_RULES 8

typedef struct {
    rwkvd_fsio_hook hook;  /* NULL = no faults (besides `rules`) */
    void *ctx;
    const char *module;    /* "snapshot" or "wal": what RWKVD_FAULT rules match */
    /* Calls attempted per op (hooked or not, failed or not); the store bumps these. */
    uint64_t n_calls[RWKVD_FSIO_N_OPS];
    int n_rules;
    struct {
        rwkvd_fsio_op op;
        int err;           /* positive errno (0 with sleep_ms) */
        uint64_t from;     /* 1-based call number from which to fail */
        uint64_t to;       /* ... up to which (0: every later call) */
        uint32_t sleep_ms; /* nonzero: stall this long instead of failing */
    } rules[RWKVD_FSIO_MAX_RULES];
} rwkvd_fsio;

/* Add the rules of `spec` (format above) that name `module` to io; rules for other modules
 * are skipped. NULL or "" adds nothing. 0, or -EINVAL (io unchanged) for a malformed spec. */
int rwkvd_fsio_faults(rwkvd_fsio *io, const char *module, const char *spec);
const char *rwkvd_fsio_op_name(rwkvd_fsio_op op);

/* The wrapped calls: 0 (or the fd for open) or a negative errno. `path` names the file in
 * hooks and is not opened again, except by open/rename/unlink. write_all loops over short
 * writes; on failure some prefix may have been written (the caller cleans up). */
int rwkvd_fsio_open(rwkvd_fsio *io, const char *path, int flags, mode_t mode);
int rwkvd_fsio_pwrite_all(rwkvd_fsio *io, int fd, const void *buf, size_t len, off_t off,
                          const char *path);
int rwkvd_fsio_write_all(rwkvd_fsio *io, int fd, const void *buf, size_t len,
                         const char *path);
int rwkvd_fsio_fsync(rwkvd_fsio *io, int fd, const char *path, int data_only);
int rwkvd_fsio_rename(rwkvd_fsio *io, const char *from, const char *to);
int rwkvd_fsio_link(rwkvd_fsio *io, const char *from, const char *to);
int rwkvd_fsio_unlink(rwkvd_fsio *io, const char *path);
int rwkvd_fsio_truncate(rwkvd_fsio *io, int fd, off_t len, const char *path);
int rwkvd_fsio_dirsync(rwkvd_fsio *io, int dirfd, const char *dir);

/* printf into a caller's error buffer (NULL or 0 bytes: nothing), the "path: what: why"
 * messages of the store modules. */
void rwkvd_errf(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Little-endian loads and stores of the formats (any alignment). */
static inline void rwkvd_le16_put(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static inline void rwkvd_le32_put(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline void rwkvd_le64_put(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline uint16_t rwkvd_le16_get(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t rwkvd_le32_get(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t rwkvd_le64_get(const unsigned char *p)
{
    return (uint64_t)rwkvd_le32_get(p) | (uint64_t)rwkvd_le32_get(p + 4) << 32;
}

#endif
