/* wal.c — see wal.h; byte layout in FORMATS.md §2. The last segment is the only one written;
 * its end offset (`end`) is always the end of the last whole record, and a failed write is
 * cut back to it. Readers map segments read-only and validate every record they pass. */
#include "wal.h"

#include "crc32c.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG_HDR 32u     /* segment header bytes */
#define REC_HDR 16u     /* crc, body length, LSN */
#define BODY_FIXED 20u  /* op, flags, name lengths, reserved, seq, payload length */
#define BODY_MAX (BODY_FIXED + 2u * RWKVD_WAL_NAME_MAX + RWKVD_WAL_PAYLOAD_MAX)
#define LSN_WINDOW ((uint64_t)1 << 32) /* how far ahead a stray frame's LSN may plausibly be */

struct rwkvd_wal {
    char *dir;
    int dirfd;
    rwkvd_fsio *io;
    rwkvd_fsio own_io;
    rwkvd_wal_fsync policy;
    uint64_t seg_bytes;
    uint64_t *segs; /* (n_segs) first LSN of each segment, ascending */
    uint32_t n_segs, cap_segs;
    int fd;         /* the last segment, open for writing */
    char path[PATH_MAX];
    uint64_t end;   /* end of the last whole record in the last segment */
    uint64_t next_lsn;
    uint64_t synced_lsn; /* highest LSN known fdatasynced */
    uint64_t last_tick_sync_ns;
    int failed;     /* sticky negative errno after a failed fsync or cleanup */
    bool deferred;  /* opts.deferred_sync: rolls leave the fsyncs to the next sync request */
    int *sealed;    /* (n_sealed) deferred: fds of finished segments not yet handed to a sync */
    uint32_t n_sealed, cap_sealed;
    bool fresh;     /* deferred: the last segment was created since the last sync began */
    uint64_t begun_lsn; /* the highest LSN a sync request has covered when it began */
    unsigned char *buf;
    size_t buf_cap;
};

struct rwkvd_wal_iter {
    rwkvd_wal *w;
    uint64_t from;
    int started;
    int done;
    uint64_t seg_first; /* first LSN of the mapped segment */
    unsigned char *map;
    size_t map_len;     /* bytes mapped */
    size_t len, off;    /* bytes to read (the last segment: up to w->end) */
    uint64_t want;      /* LSN the next record must carry */
    char path[PATH_MAX];
    char chan[RWKVD_WAL_NAME_MAX + 1], prod[RWKVD_WAL_NAME_MAX + 1];
};

int rwkvd_wal_fsync_parse(const char *s, rwkvd_wal_fsync *out)
{
    static const char *const names[] = {"no", "everysec", "always"};
    for (int i = 0; i < 3; i++)
        if (s && strcmp(s, names[i]) == 0) {
            *out = (rwkvd_wal_fsync)i;
            return 0;
        }
    return -EINVAL;
}

const char *rwkvd_wal_fsync_name(rwkvd_wal_fsync p)
{
    return p == RWKVD_WAL_FSYNC_ALWAYS ? "always" : p == RWKVD_WAL_FSYNC_EVERYSEC ? "everysec" : "no";
}

/* ---- segment and record checks ----------------------------------------------------- */

static void seg_name(char *buf, size_t cap, const char *dir, uint64_t first)
{
    snprintf(buf, cap, "%s/wal-%016" PRIx64 ".log", dir, first);
}

/* "wal-<16 lower-case hex>.log" -> its LSN; 0 if the name is not a segment's. */
static int parse_seg_name(const char *name, uint64_t *lsn)
{
    if (strlen(name) != 24 || memcmp(name, "wal-", 4) != 0 || strcmp(name + 20, ".log") != 0)
        return 0;
    uint64_t v = 0;
    for (int i = 4; i < 20; i++) {
        char c = name[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return 0;
        v = v << 4 | (uint64_t)d;
    }
    *lsn = v;
    return 1;
}

static void seg_header(unsigned char *h, uint64_t first)
{
    memset(h, 0, SEG_HDR);
    memcpy(h, RWKVD_WAL_MAGIC, 8);
    rwkvd_le32_put(h + 8, RWKVD_WAL_VERSION);
    rwkvd_le32_put(h + 12, SEG_HDR);
    rwkvd_le64_put(h + 16, first);
    rwkvd_le32_put(h + 28, rwkvd_crc32c(0, h, 28));
}

/* NULL if the header is sound for a segment named after `first`, else the reason. */
static const char *seg_header_bad(const unsigned char *b, size_t len, uint64_t first, int *torn)
{
    *torn = 0;
    if (len < SEG_HDR) {
        *torn = 1;
        return "segment header cut short";
    }
    if (memcmp(b, RWKVD_WAL_MAGIC, 8) != 0) {
        *torn = 1;
        return "not a WAL segment (bad magic)";
    }
    if (rwkvd_crc32c(0, b, 28) != rwkvd_le32_get(b + 28)) {
        *torn = 1;
        return "segment header crc mismatch";
    }
    if (rwkvd_le32_get(b + 8) != RWKVD_WAL_VERSION)
        return "segment format version not supported";
    if (rwkvd_le32_get(b + 12) != SEG_HDR)
        return "bad segment header length";
    if (rwkvd_le64_get(b + 16) != first)
        return "first LSN differs from the file name";
    return NULL;
}

/* The record at off: its size if whole, sound and carrying LSN `want`; else 0 and *why. */
static size_t rec_at(const unsigned char *b, size_t len, size_t off, uint64_t want,
                     const char **why)
{
    if (len - off < REC_HDR) {
        *why = "record header cut short";
        return 0;
    }
    const unsigned char *r = b + off;
    uint32_t blen = rwkvd_le32_get(r + 4);
    if (blen < BODY_FIXED || blen > BODY_MAX) {
        *why = "impossible record length";
        return 0;
    }
    if (blen > len - off - REC_HDR) {
        *why = "record cut short";
        return 0;
    }
    if (rwkvd_crc32c(0, r + 4, 12 + (size_t)blen) != rwkvd_le32_get(r)) {
        *why = "record crc mismatch";
        return 0;
    }
    if (rwkvd_le64_get(r + 8) != want) {
        *why = "LSN out of sequence";
        return 0;
    }
    const unsigned char *body = r + REC_HDR;
    size_t cl = rwkvd_le16_get(body + 2), pl = rwkvd_le16_get(body + 4);
    uint32_t nb = rwkvd_le32_get(body + 16);
    if (cl < 1 || cl > RWKVD_WAL_NAME_MAX || pl > RWKVD_WAL_NAME_MAX ||
        nb > RWKVD_WAL_PAYLOAD_MAX || (uint64_t)BODY_FIXED + cl + pl + nb != blen ||
        memchr(body + BODY_FIXED, 0, cl + pl)) {
        *why = "malformed record body";
        return 0;
    }
    return REC_HDR + blen;
}

/* Offset of the first crc-valid frame at or after `from` whose LSN is plausible (>= min_lsn,
 * within LSN_WINDOW): evidence that whole records follow damage. -1 if none. */
static long long frame_after(const unsigned char *b, size_t len, size_t from, uint64_t min_lsn)
{
    for (size_t off = from; off + REC_HDR <= len; off++) {
        uint32_t blen = rwkvd_le32_get(b + off + 4);
        if (blen < BODY_FIXED || blen > BODY_MAX || blen > len - off - REC_HDR)
            continue;
        uint64_t lsn = rwkvd_le64_get(b + off + 8);
        if (lsn < min_lsn || lsn - min_lsn > LSN_WINDOW)
            continue;
        if (rwkvd_crc32c(0, b + off + 4, 12 + (size_t)blen) == rwkvd_le32_get(b + off))
            return (long long)off;
    }
    return -1;
}

/* ---- open and recovery ------------------------------------------------------------- */

static int segs_push(rwkvd_wal *w, uint64_t first)
{
    if (w->n_segs == w->cap_segs) {
        uint32_t nc = w->cap_segs ? 2 * w->cap_segs : 16;
        uint64_t *n = realloc(w->segs, nc * sizeof *n);
        if (!n)
            return -ENOMEM;
        w->segs = n;
        w->cap_segs = nc;
    }
    w->segs[w->n_segs++] = first;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Create segment `first` with its header and make it the one written. The caller has
 * closed or kept the previous fd; on failure nothing remains. */
static int seg_create(rwkvd_wal *w, uint64_t first, char *err, size_t err_len)
{
    char path[PATH_MAX];
    seg_name(path, sizeof path, w->dir, first);
    unsigned char h[SEG_HDR];
    seg_header(h, first);
    const char *step = "create";
    int fd = rwkvd_fsio_open(w->io, path, O_RDWR | O_CREAT | O_TRUNC, 0600), r = fd;
    if (fd < 0)
        goto fail;
    step = "write";
    if ((r = rwkvd_fsio_pwrite_all(w->io, fd, h, SEG_HDR, 0, path)) < 0)
        goto fail;
    if (w->policy != RWKVD_WAL_FSYNC_NO && !w->deferred) {
        step = "fsync";
        if ((r = rwkvd_fsio_fsync(w->io, fd, path, 0)) < 0)
            goto fail;
        step = "fsync directory";
        if ((r = rwkvd_fsio_dirsync(w->io, w->dirfd, w->dir)) < 0)
            goto fail;
    }
    if ((r = segs_push(w, first)) < 0)
        goto fail;
    if (w->fd >= 0 && w->deferred && w->policy != RWKVD_WAL_FSYNC_NO) {
        /* the finished segment's fdatasync goes with the next sync request */
        if (w->n_sealed == w->cap_sealed) {
            uint32_t nc = w->cap_sealed ? 2 * w->cap_sealed : 4;
            int *ns = realloc(w->sealed, nc * sizeof *ns);
            if (!ns) {
                w->n_segs--;
                r = -ENOMEM;
                goto fail;
            }
            w->sealed = ns;
            w->cap_sealed = nc;
        }
        w->sealed[w->n_sealed++] = w->fd;
    } else if (w->fd >= 0) {
        close(w->fd);
    }
    w->fresh = w->deferred;
    w->fd = fd;
    snprintf(w->path, sizeof w->path, "%s", path);
    w->end = SEG_HDR;
    return 0;
fail:
    rwkvd_errf(err, err_len, "%s: %s: %s", path, step, strerror(-r));
    if (fd >= 0) {
        close(fd);
        unlink(path);
    }
    return r;
}

/* Map a whole file read-only. 0 with *map (NULL when empty) and *len. */
static int map_file(int fd, unsigned char **map, size_t *len)
{
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return -errno;
    *len = (size_t)sb.st_size;
    *map = NULL;
    if (*len == 0)
        return 0;
    void *m = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED)
        return -errno;
    *map = m;
    return 0;
}

/* Scan the last segment, cut a torn tail; sets w->fd, end, next_lsn. 1 = the segment was a
 * torn header and has been removed (scan the one before), 0 = done, < 0 = error. */
static int recover_last(rwkvd_wal *w, rwkvd_wal_recovery *rep, char *err, size_t err_len)
{
    uint64_t first = w->segs[w->n_segs - 1];
    char path[PATH_MAX];
    seg_name(path, sizeof path, w->dir, first);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        rwkvd_errf(err, err_len, "%s: open: %s", path, strerror(e));
        return -e;
    }
    unsigned char *b = NULL;
    size_t len = 0;
    int r = map_file(fd, &b, &len);
    if (r < 0) {
        rwkvd_errf(err, err_len, "%s: mmap: %s", path, strerror(-r));
        close(fd);
        return r;
    }
    int torn;
    const char *why = seg_header_bad(b, len, first, &torn);
    if (why) {
        long long at = torn ? frame_after(b, len, 0, first) : 0;
        if (!torn || at >= 0) {
            rwkvd_errf(err, err_len, "%s: offset 0: %s", path, why);
            r = -EBADMSG;
            goto out;
        }
        /* Cut down while being created: drop it, the segment before is the last. */
        if ((r = rwkvd_fsio_unlink(w->io, path)) < 0 ||
            (r = rwkvd_fsio_dirsync(w->io, w->dirfd, w->dir)) < 0) {
            rwkvd_errf(err, err_len, "%s: removing a torn segment: %s", path, strerror(-r));
            goto out;
        }
        rep->torn_bytes += len;
        rwkvd_errf(rep->note, sizeof rep->note, "%s: %s (%zu bytes); removed", path, why, len);
        w->n_segs--;
        r = 1;
        goto out;
    }
    size_t off = SEG_HDR;
    uint64_t lsn = first;
    while (off < len) {
        size_t n = rec_at(b, len, off, lsn, &why);
        if (!n)
            break;
        off += n;
        lsn++;
    }
    if (off < len) {
        long long at = frame_after(b, len, off, lsn);
        if (at >= 0) {
            rwkvd_errf(err, err_len, "%s: offset %zu: %s at LSN %" PRIu64 ", and a whole record follows "
                "at offset %lld: corruption, not a torn tail", path, off, why, lsn, at);
            r = -EBADMSG;
            goto out;
        }
        if ((r = rwkvd_fsio_truncate(w->io, fd, (off_t)off, path)) < 0 ||
            (r = rwkvd_fsio_fsync(w->io, fd, path, 0)) < 0) {
            rwkvd_errf(err, err_len, "%s: cutting the torn tail at %zu: %s", path, off, strerror(-r));
            goto out;
        }
        rep->torn_bytes += len - off;
        rwkvd_errf(rep->note, sizeof rep->note, "%s: torn tail at offset %zu (%s at LSN %" PRIu64
            "): cut %zu bytes", path, off, why, lsn, len - off);
    } else if (w->policy != RWKVD_WAL_FSYNC_NO) {
        /* What a crashed process left in the page cache is durable only from now on. */
        if ((r = rwkvd_fsio_fsync(w->io, fd, path, 1)) < 0) {
            rwkvd_errf(err, err_len, "%s: fsync: %s", path, strerror(-r));
            goto out;
        }
    }
    w->fd = fd;
    fd = -1;
    snprintf(w->path, sizeof w->path, "%s", path);
    w->end = off;
    w->next_lsn = lsn;
    r = 0;
out:
    if (b)
        munmap(b, len);
    if (fd >= 0)
        close(fd);
    return r;
}

int rwkvd_wal_open(const char *dir, const rwkvd_wal_opts *opts, rwkvd_wal **out,
                   rwkvd_wal_recovery *rep_out, char *err, size_t err_len)
{
    rwkvd_wal_recovery rep_local, *rep = rep_out ? rep_out : &rep_local;
    memset(rep, 0, sizeof *rep);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        int e = errno;
        rwkvd_errf(err, err_len, "%s: cannot create the WAL directory: %s", dir, strerror(e));
        return -e;
    }
    rwkvd_wal *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = strdup(dir))) {
        free(w);
        rwkvd_errf(err, err_len, "%s: out of memory", dir);
        return -ENOMEM;
    }
    w->fd = -1;
    w->own_io.module = "wal";
    w->io = opts && opts->io ? opts->io : &w->own_io;
    w->policy = opts ? opts->fsync : RWKVD_WAL_FSYNC_EVERYSEC;
    w->seg_bytes = opts && opts->segment_bytes ? opts->segment_bytes : RWKVD_WAL_SEGMENT_DEFAULT;
    if (w->seg_bytes < RWKVD_WAL_SEGMENT_MIN)
        w->seg_bytes = RWKVD_WAL_SEGMENT_MIN;
    uint64_t floor_lsn = opts && opts->first_lsn ? opts->first_lsn : 1;
    int r;
    w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dirfd < 0) {
        r = -errno;
        rwkvd_errf(err, err_len, "%s: cannot open the WAL directory: %s", dir, strerror(-r));
        goto fail;
    }
    int dfd = dup(w->dirfd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        r = -errno;
        if (dfd >= 0)
            close(dfd);
        rwkvd_errf(err, err_len, "%s: readdir: %s", dir, strerror(-r));
        goto fail;
    }
    struct dirent *de;
    r = 0;
    while ((de = readdir(d)) && r == 0) {
        uint64_t lsn;
        if (parse_seg_name(de->d_name, &lsn))
            r = segs_push(w, lsn);
    }
    closedir(d);
    if (r < 0) {
        rwkvd_errf(err, err_len, "%s: out of memory", dir);
        goto fail;
    }
    if (w->n_segs)
        qsort(w->segs, w->n_segs, sizeof *w->segs, cmp_u64);
    /* Headers of the sealed segments; their records are checked when replayed. */
    for (uint32_t i = 0; i + 1 < w->n_segs; i++) {
        char path[PATH_MAX];
        unsigned char h[SEG_HDR];
        seg_name(path, sizeof path, dir, w->segs[i]);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? pread(fd, h, SEG_HDR, 0) : -1;
        if (fd < 0) {
            r = -errno;
            rwkvd_errf(err, err_len, "%s: open: %s", path, strerror(-r));
            goto fail;
        }
        close(fd);
        int torn;
        const char *why = seg_header_bad(h, n < 0 ? 0 : (size_t)n, w->segs[i], &torn);
        if (why) {
            rwkvd_errf(err, err_len, "%s: offset 0: %s (not the last segment)", path, why);
            r = -EBADMSG;
            goto fail;
        }
    }
    while (w->n_segs) {
        if (w->segs[w->n_segs - 1] > floor_lsn)
            floor_lsn = w->segs[w->n_segs - 1];
        r = recover_last(w, rep, err, err_len);
        if (r < 0)
            goto fail;
        if (r == 0)
            break;
    }
    if (w->n_segs == 0) {
        w->next_lsn = floor_lsn;
        if ((r = seg_create(w, floor_lsn, err, err_len)) < 0)
            goto fail;
    }
    w->synced_lsn = w->begun_lsn = w->next_lsn - 1;
    w->fresh = false;
    w->deferred = opts && opts->deferred_sync; /* recovery above synced in place */
    rep->n_segments = w->n_segs;
    rep->first_lsn = w->segs[0];
    rep->next_lsn = w->next_lsn;
    *out = w;
    return 0;
fail:
    rwkvd_wal_destroy(&w);
    return r;
}

void rwkvd_wal_destroy(rwkvd_wal **pw)
{
    if (!pw || !*pw)
        return;
    rwkvd_wal *w = *pw;
    if (w->fd >= 0)
        close(w->fd);
    if (w->dirfd >= 0)
        close(w->dirfd);
    for (uint32_t i = 0; i < w->n_sealed; i++)
        close(w->sealed[i]);
    free(w->sealed);
    free(w->segs);
    free(w->buf);
    free(w->dir);
    free(w);
    *pw = NULL;
}

/* ---- appending --------------------------------------------------------------------- */

int rwkvd_wal_sync_begin(rwkvd_wal *w, rwkvd_wal_sync_req *req)
{
    memset(req, 0, sizeof *req);
    req->fd = -1;
    if (w->failed)
        return w->failed;
    uint64_t last = w->next_lsn - 1;
    if (w->begun_lsn >= last && !w->n_sealed && !w->fresh)
        return 0;
    int fd = dup(w->fd);
    if (fd < 0)
        return -errno;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    req->w = w;
    req->lsn = last;
    req->fd = fd;
    req->full = w->fresh;
    req->dirsync = w->fresh;
    req->sealed = w->sealed;
    req->n_sealed = w->n_sealed;
    snprintf(req->path, sizeof req->path, "%s", w->path);
    w->sealed = NULL;
    w->n_sealed = w->cap_sealed = 0;
    w->fresh = false;
    w->begun_lsn = last;
    return 1;
}

int rwkvd_wal_sync_run(rwkvd_wal_sync_req *req)
{
    rwkvd_wal *w = req->w;
    int r = 0;
    for (uint32_t i = 0; i < req->n_sealed; i++) {
        /* the segments finished since the last sync; their paths only name them in hooks */
        if (r == 0)
            r = rwkvd_fsio_fsync(w->io, req->sealed[i], req->path, 1);
        close(req->sealed[i]);
    }
    free(req->sealed);
    req->sealed = NULL;
    req->n_sealed = 0;
    if (r == 0 && req->fd >= 0)
        r = rwkvd_fsio_fsync(w->io, req->fd, req->path, !req->full);
    if (r == 0 && req->dirsync)
        r = rwkvd_fsio_dirsync(w->io, w->dirfd, w->dir);
    if (req->fd >= 0)
        close(req->fd);
    req->fd = -1;
    req->rc = r;
    return r;
}

void rwkvd_wal_sync_end(rwkvd_wal *w, const rwkvd_wal_sync_req *req)
{
    if (!req->w)
        return;
    if (req->rc < 0) {
        /* After a failed fsync the kernel may have dropped the dirty pages: nothing since the
         * last good sync can be trusted to reach the disk, and retrying could lie. */
        if (!w->failed)
            w->failed = req->rc;
        return;
    }
    if (!w->failed && req->lsn > w->synced_lsn)
        w->synced_lsn = req->lsn;
}

static int do_sync(rwkvd_wal *w)
{
    rwkvd_wal_sync_req req;
    int r = rwkvd_wal_sync_begin(w, &req);
    if (r <= 0)
        return r;
    rwkvd_wal_sync_run(&req);
    rwkvd_wal_sync_end(w, &req);
    return w->failed;
}

static int roll(rwkvd_wal *w)
{
    if (w->policy != RWKVD_WAL_FSYNC_NO && !w->deferred) {
        int r = do_sync(w);
        if (r < 0)
            return r;
    }
    return seg_create(w, w->next_lsn, NULL, 0);
}

int rwkvd_wal_append(rwkvd_wal *w, const rwkvd_wal_rec *rec, uint64_t *lsn_out)
{
    if (w->failed)
        return w->failed;
    size_t cl = rec->channel ? strlen(rec->channel) : 0;
    size_t pl = rec->producer ? strlen(rec->producer) : 0;
    if (cl < 1 || cl > RWKVD_WAL_NAME_MAX || pl > RWKVD_WAL_NAME_MAX ||
        rec->payload_bytes > RWKVD_WAL_PAYLOAD_MAX || (rec->payload_bytes && !rec->payload))
        return -EINVAL;
    size_t blen = BODY_FIXED + cl + pl + rec->payload_bytes, size = REC_HDR + blen;
    if (w->end > SEG_HDR && w->end + size > w->seg_bytes) {
        int r = roll(w);
        if (r < 0)
            return r;
    }
    if (size > w->buf_cap) {
        size_t nc = w->buf_cap ? w->buf_cap : 4096;
        while (nc < size)
            nc *= 2;
        unsigned char *nb = realloc(w->buf, nc);
        if (!nb)
            return -ENOMEM;
        w->buf = nb;
        w->buf_cap = nc;
    }
    unsigned char *p = w->buf, *body = p + REC_HDR;
    uint64_t lsn = w->next_lsn;
    rwkvd_le32_put(p + 4, (uint32_t)blen);
    rwkvd_le64_put(p + 8, lsn);
    body[0] = rec->op;
    body[1] = 0;
    rwkvd_le16_put(body + 2, (uint16_t)cl);
    rwkvd_le16_put(body + 4, (uint16_t)pl);
    rwkvd_le16_put(body + 6, 0);
    rwkvd_le64_put(body + 8, rec->seq);
    rwkvd_le32_put(body + 16, rec->payload_bytes);
    memcpy(body + BODY_FIXED, rec->channel, cl);
    if (pl)
        memcpy(body + BODY_FIXED + cl, rec->producer, pl);
    if (rec->payload_bytes)
        memcpy(body + BODY_FIXED + cl + pl, rec->payload, rec->payload_bytes);
    rwkvd_le32_put(p, rwkvd_crc32c(0, p + 4, 12 + blen));
    int r = rwkvd_fsio_pwrite_all(w->io, w->fd, p, size, (off_t)w->end, w->path);
    if (r < 0) {
        /* Cut what part of the record reached the file, so the next append starts clean. */
        if (rwkvd_fsio_truncate(w->io, w->fd, (off_t)w->end, w->path) < 0)
            w->failed = -EIO;
        return r;
    }
    w->end += size;
    w->next_lsn = lsn + 1;
    if (lsn_out)
        *lsn_out = lsn;
    return 0;
}

int rwkvd_wal_commit(rwkvd_wal *w)
{
    if (w->policy != RWKVD_WAL_FSYNC_ALWAYS)
        return w->failed;
    return do_sync(w);
}

int rwkvd_wal_tick(rwkvd_wal *w, uint64_t now_ns)
{
    if (w->policy != RWKVD_WAL_FSYNC_EVERYSEC)
        return w->failed;
    if (w->synced_lsn + 1 >= w->next_lsn)
        return w->failed;
    if (w->last_tick_sync_ns && now_ns - w->last_tick_sync_ns < 1000000000u)
        return w->failed;
    int r = do_sync(w);
    if (r == 0)
        w->last_tick_sync_ns = now_ns ? now_ns : 1;
    return r;
}

uint64_t rwkvd_wal_next_tick_ns(const rwkvd_wal *w)
{
    if (w->policy != RWKVD_WAL_FSYNC_EVERYSEC || w->failed || w->synced_lsn + 1 >= w->next_lsn)
        return 0;
    return w->last_tick_sync_ns ? w->last_tick_sync_ns + 1000000000u : 1;
}

int rwkvd_wal_sync(rwkvd_wal *w)
{
    return do_sync(w);
}

uint64_t rwkvd_wal_next_lsn(const rwkvd_wal *w) { return w->next_lsn; }
uint64_t rwkvd_wal_first_lsn(const rwkvd_wal *w) { return w->segs[0]; }
uint64_t rwkvd_wal_durable_lsn(const rwkvd_wal *w)
{
    /* Under `no`, written to the kernel is all the durability there is (see wal.h). */
    return w->policy == RWKVD_WAL_FSYNC_NO ? w->next_lsn - 1 : w->synced_lsn;
}
int rwkvd_wal_failed(const rwkvd_wal *w) { return w->failed; }
uint32_t rwkvd_wal_n_segments(const rwkvd_wal *w) { return w->n_segs; }

int rwkvd_wal_truncate_begin(rwkvd_wal *w, uint64_t lsn, rwkvd_wal_trunc_req *req)
{
    memset(req, 0, sizeof *req);
    uint32_t k = 0;
    while (k + 1 < w->n_segs && w->segs[k + 1] <= lsn)
        k++;
    if (!k)
        return 0;
    if (!(req->firsts = malloc(k * sizeof *req->firsts)))
        return -ENOMEM;
    memcpy(req->firsts, w->segs, k * sizeof *req->firsts);
    req->n = k;
    req->w = w;
    memmove(w->segs, w->segs + k, (w->n_segs - k) * sizeof *w->segs);
    w->n_segs -= k;
    return 1;
}

int rwkvd_wal_truncate_run(rwkvd_wal_trunc_req *req)
{
    rwkvd_wal *w = req->w;
    uint32_t k = 0;
    int r = 0;
    for (; k < req->n; k++) {
        char path[PATH_MAX];
        seg_name(path, sizeof path, w->dir, req->firsts[k]);
        r = rwkvd_fsio_unlink(w->io, path);
        if (r < 0 && r != -ENOENT)
            break; /* oldest first: what stays on disk is still a contiguous log */
        r = 0;
    }
    if (k) {
        int e = rwkvd_fsio_dirsync(w->io, w->dirfd, w->dir);
        if (r == 0)
            r = e;
    }
    req->n_removed = k;
    req->rc = r;
    free(req->firsts);
    req->firsts = NULL;
    return r;
}

int rwkvd_wal_truncate_before(rwkvd_wal *w, uint64_t lsn, uint32_t *n_removed)
{
    rwkvd_wal_trunc_req req;
    int r = rwkvd_wal_truncate_begin(w, lsn, &req);
    if (n_removed)
        *n_removed = 0;
    if (r <= 0)
        return r;
    r = rwkvd_wal_truncate_run(&req);
    if (n_removed)
        *n_removed = req.n_removed;
    return r;
}

uint64_t rwkvd_wal_written_lsn(const rwkvd_wal *w) { return w->next_lsn - 1; }

/* ---- reading ----------------------------------------------------------------------- */

int rwkvd_wal_iter_new(rwkvd_wal *w, uint64_t from_lsn, rwkvd_wal_iter **out)
{
    rwkvd_wal_iter *it = calloc(1, sizeof *it);
    if (!it)
        return -ENOMEM;
    it->w = w;
    it->from = from_lsn;
    *out = it;
    return 0;
}

static void iter_unmap(rwkvd_wal_iter *it)
{
    if (it->map)
        munmap(it->map, it->map_len);
    it->map = NULL;
    it->map_len = it->len = 0;
}

void rwkvd_wal_iter_destroy(rwkvd_wal_iter **it)
{
    if (!it || !*it)
        return;
    iter_unmap(*it);
    free(*it);
    *it = NULL;
}

/* Map segment i (the last one only up to w->end). */
static int iter_map(rwkvd_wal_iter *it, uint32_t i, char *err, size_t err_len)
{
    rwkvd_wal *w = it->w;
    seg_name(it->path, sizeof it->path, w->dir, w->segs[i]);
    int fd = open(it->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        rwkvd_errf(err, err_len, "%s: open: %s", it->path, strerror(e));
        return -e;
    }
    int r = map_file(fd, &it->map, &it->map_len);
    close(fd);
    it->len = it->map_len;
    if (r < 0) {
        rwkvd_errf(err, err_len, "%s: mmap: %s", it->path, strerror(-r));
        return r;
    }
    if (i + 1 == w->n_segs && it->len > w->end)
        it->len = (size_t)w->end; /* bytes past `end` are not records (yet) */
    int torn;
    const char *why = seg_header_bad(it->map, it->len, w->segs[i], &torn);
    if (why) {
        rwkvd_errf(err, err_len, "%s: offset 0: %s", it->path, why);
        iter_unmap(it);
        return -EBADMSG;
    }
    it->seg_first = w->segs[i];
    it->want = w->segs[i];
    it->off = SEG_HDR;
    return 0;
}

int rwkvd_wal_iter_next(rwkvd_wal_iter *it, rwkvd_wal_rec *rec, char *err, size_t err_len)
{
    rwkvd_wal *w = it->w;
    for (;;) {
        if (it->done)
            return 0;
        if (!it->map) {
            uint32_t i;
            if (!it->started) {
                i = 0;
                while (i + 1 < w->n_segs && w->segs[i + 1] <= it->from)
                    i++;
            } else {
                for (i = 0; i < w->n_segs && w->segs[i] <= it->seg_first; i++)
                    ;
                if (i == w->n_segs) {
                    it->done = 1;
                    return 0;
                }
                if (w->segs[i] != it->want) {
                    rwkvd_errf(err, err_len, "%s: starts at LSN %" PRIu64 ", the segment before ends "
                        "at %" PRIu64 ": records missing", it->path, w->segs[i], it->want - 1);
                    return -EBADMSG;
                }
            }
            it->started = 1;
            int r = iter_map(it, i, err, err_len);
            if (r < 0)
                return r;
        }
        while (it->off < it->len) {
            const char *why;
            size_t n = rec_at(it->map, it->len, it->off, it->want, &why);
            if (!n) {
                rwkvd_errf(err, err_len, "%s: offset %zu: %s at LSN %" PRIu64 " (not a torn tail: "
                    "corruption)", it->path, it->off, why, it->want);
                return -EBADMSG;
            }
            const unsigned char *body = it->map + it->off + REC_HDR;
            it->off += n;
            uint64_t lsn = it->want++;
            if (lsn < it->from)
                continue;
            size_t cl = rwkvd_le16_get(body + 2), pl = rwkvd_le16_get(body + 4);
            memcpy(it->chan, body + BODY_FIXED, cl);
            it->chan[cl] = 0;
            memcpy(it->prod, body + BODY_FIXED + cl, pl);
            it->prod[pl] = 0;
            rec->lsn = lsn;
            rec->op = body[0];
            rec->channel = it->chan;
            rec->producer = it->prod;
            rec->seq = rwkvd_le64_get(body + 8);
            rec->payload_bytes = rwkvd_le32_get(body + 16);
            rec->payload = body + BODY_FIXED + cl + pl;
            return 1;
        }
        iter_unmap(it);
    }
}
