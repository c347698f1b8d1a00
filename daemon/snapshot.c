/* snapshot.c — see snapshot.h; byte layout in FORMATS.md §1. A file is read whole, checked
 * in an order that names the most useful reason (magic, crc over everything, version, then
 * lengths and fields, then the model), and returned with the payload pointing into the read
 * buffer (8-byte aligned: the header is padded to a multiple of 8). */
#include "snapshot.h"

#include "crc32c.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FIXED_BYTES 90u             /* header up to and including the name length */
#define HEADER_MAX (16u << 20)      /* no sane header comes near this */
#define FILE_MAX ((uint64_t)1 << 36) /* 64 GiB: far above a 7B state (34 MB) */
#define STEM_MAX 160
#define STEM_CUT 140

struct rwkvd_snapstore {
    char *dir;
    int dirfd;
    rwkvd_fsio *io;
    rwkvd_fsio own_io;
};

/* A returned snapshot: the public struct first, then what it points into. */
typedef struct {
    rwkvd_snapshot pub;
    void *file;  /* the file image; payload points into it */
    char *strings; /* channel name and producer ids */
    rwkvd_snap_producer *producers;
} snap_box;

uint64_t rwkvd_snap_state_bytes(const rwkvd_snap_model *m)
{
    uint64_t hnn = (uint64_t)m->n_head * m->head_size * m->head_size;
    uint64_t per = 2 * (uint64_t)m->n_embd + hnn;
    if (m->n_head == 0 && m->head_size == 0) /* RWKV-4: p_att, aa, bb, pp, p_ffn per layer */
        per = 5 * (uint64_t)m->n_embd;
    if (m->head_size && hnn / m->head_size / m->head_size != m->n_head)
        return 0;
    if (per > (UINT64_MAX / 4) / (m->n_layer ? m->n_layer : 1))
        return 0;
    return per * m->n_layer * 4;
}

/* ---- encoding --------------------------------------------------------------------- */

static int name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n >= 1 && n <= RWKVD_SNAP_NAME_MAX;
}

static uint64_t header_bytes(const rwkvd_snapshot *s)
{
    uint64_t n = FIXED_BYTES + strlen(s->channel);
    for (uint32_t i = 0; i < s->n_producers; i++)
        n += 2 + strlen(s->producers[i].id) + 8;
    if (s->extra_bytes) /* version 2: extra_len */
        n += 8;
    return (n + 7) & ~(uint64_t)7;
}

static int check_fields(const rwkvd_snapshot *s)
{
    if (!name_ok(s->channel) || s->n_producers > RWKVD_SNAP_PRODUCERS_MAX ||
        (s->n_producers && !s->producers) || (s->payload_bytes && !s->payload))
        return -EINVAL;
    for (uint32_t i = 0; i < s->n_producers; i++)
        if (!name_ok(s->producers[i].id))
            return -EINVAL;
    if (s->payload_bytes != rwkvd_snap_state_bytes(&s->model) || s->payload_bytes == 0)
        return -EINVAL;
    if (s->extra_bytes > RWKVD_SNAP_EXTRA_MAX || (s->extra_bytes && !s->extra))
        return -EINVAL;
    return 0;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Fill the header (header_bytes(s) bytes, zero padded) of s at h. */
static void put_header(unsigned char *h, size_t hlen, const rwkvd_snapshot *s)
{
    memset(h, 0, hlen);
    memcpy(h, RWKVD_SNAP_MAGIC, 8);
    rwkvd_le32_put(h + 8, s->extra_bytes ? RWKVD_SNAP_VERSION_EXTRA : RWKVD_SNAP_VERSION);
    rwkvd_le32_put(h + 12, (uint32_t)hlen);
    rwkvd_le64_put(h + 16, s->model.fingerprint);
    rwkvd_le32_put(h + 24, s->model.n_layer);
    rwkvd_le32_put(h + 28, s->model.n_embd);
    rwkvd_le32_put(h + 32, s->model.n_head);
    rwkvd_le32_put(h + 36, s->model.head_size);
    rwkvd_le32_put(h + 40, s->model.n_vocab);
    rwkvd_le32_put(h + 44, s->layout);
    rwkvd_le32_put(h + 48, s->dtype);
    rwkvd_le32_put(h + 52, s->n_producers);
    rwkvd_le64_put(h + 56, s->tokens_seen);
    rwkvd_le64_put(h + 64, s->applied_lsn);
    rwkvd_le64_put(h + 72, s->created_ns ? s->created_ns : now_ns());
    rwkvd_le64_put(h + 80, s->payload_bytes);
    size_t n = strlen(s->channel);
    rwkvd_le16_put(h + 88, (uint16_t)n);
    memcpy(h + 90, s->channel, n);
    unsigned char *p = h + 90 + n;
    for (uint32_t i = 0; i < s->n_producers; i++) {
        size_t m = strlen(s->producers[i].id);
        rwkvd_le16_put(p, (uint16_t)m);
        memcpy(p + 2, s->producers[i].id, m);
        rwkvd_le64_put(p + 2 + m, s->producers[i].seq);
        p += 2 + m + 8;
    }
    if (s->extra_bytes)
        rwkvd_le64_put(p, s->extra_bytes);
}

int rwkvd_snapshot_encode(const rwkvd_snapshot *s, void **out, size_t *out_len)
{
    int r = check_fields(s);
    if (r < 0)
        return r;
    uint64_t hlen = header_bytes(s);
    uint64_t body = hlen + s->payload_bytes + s->extra_bytes, total = body + 4;
    if (hlen > HEADER_MAX || total > FILE_MAX || total > SIZE_MAX)
        return -EINVAL;
    unsigned char *buf = malloc((size_t)total);
    if (!buf)
        return -ENOMEM;
    put_header(buf, (size_t)hlen, s);
    memcpy(buf + hlen, s->payload, (size_t)s->payload_bytes);
    if (s->extra_bytes)
        memcpy(buf + hlen + s->payload_bytes, s->extra, (size_t)s->extra_bytes);
    rwkvd_le32_put(buf + body, rwkvd_crc32c(0, buf, (size_t)body));
    *out = buf;
    *out_len = (size_t)total;
    return 0;
}

/* ---- decoding --------------------------------------------------------------------- */

void rwkvd_snapshot_destroy(rwkvd_snapshot **s)
{
    if (!s || !*s)
        return;
    snap_box *b = (snap_box *)*s;
    free(b->file);
    free(b->strings);
    free(b->producers);
    free(b);
    *s = NULL;
}

static int model_mismatch(const rwkvd_snap_model *got, const rwkvd_snap_model *want, char *what,
                          size_t cap)
{
    if (got->fingerprint != want->fingerprint) {
        snprintf(what, cap, "model fingerprint %016llx, expected %016llx (another model)",
                 (unsigned long long)got->fingerprint, (unsigned long long)want->fingerprint);
        return 1;
    }
    if (got->n_layer != want->n_layer || got->n_embd != want->n_embd ||
        got->n_head != want->n_head || got->head_size != want->head_size ||
        got->n_vocab != want->n_vocab) {
        snprintf(what, cap,
                 "dims L=%u C=%u H=%u N=%u V=%u, expected L=%u C=%u H=%u N=%u V=%u",
                 got->n_layer, got->n_embd, got->n_head, got->head_size, got->n_vocab,
                 want->n_layer, want->n_embd, want->n_head, want->head_size, want->n_vocab);
        return 1;
    }
    return 0;
}

/* Decode the image `file` (len bytes, malloc'd); takes ownership of it in every case. */
static int decode_owned(void *file, size_t len, const char *name, const rwkvd_snap_model *expect,
                        rwkvd_snapshot **out, char *err, size_t err_len)
{
    const unsigned char *b = file;
    snap_box *box = NULL;
    int r = -EBADMSG;
    if (len < 8 || memcmp(b, RWKVD_SNAP_MAGIC, 8) != 0) {
        rwkvd_errf(err, err_len, "%s: not a snapshot (bad magic)", name);
        goto fail;
    }
    if (len < FIXED_BYTES + 4) {
        rwkvd_errf(err, err_len, "%s: truncated: %zu bytes, a header alone is %u", name, len,
            FIXED_BYTES + 4);
        goto fail;
    }
    /* In every version the last 4 bytes are the crc32c of all before them. */
    uint32_t want_crc = rwkvd_le32_get(b + len - 4), got_crc = rwkvd_crc32c(0, b, len - 4);
    if (want_crc != got_crc) {
        rwkvd_errf(err, err_len, "%s: crc32c mismatch (stored %08x, computed %08x over %zu bytes): "
            "damaged or truncated", name, want_crc, got_crc, len - 4);
        goto fail;
    }
    uint32_t version = rwkvd_le32_get(b + 8);
    if (version != RWKVD_SNAP_VERSION && version != RWKVD_SNAP_VERSION_EXTRA) {
        rwkvd_errf(err, err_len, "%s: format version %u not supported (this build reads %d and %d)", name,
            version, RWKVD_SNAP_VERSION, RWKVD_SNAP_VERSION_EXTRA);
        r = -EPROTO;
        goto fail;
    }
    bool has_extra = version == RWKVD_SNAP_VERSION_EXTRA;
    uint64_t hlen = rwkvd_le32_get(b + 12), plen = rwkvd_le64_get(b + 80), xlen = 0;
    if (hlen < FIXED_BYTES || hlen % 8 || hlen > len - 4 || plen > len - 4 - hlen ||
        (!has_extra && plen != len - 4 - hlen)) {
        rwkvd_errf(err, err_len, "%s: lengths inconsistent with the file size (header %llu, payload "
            "%llu, file %zu)", name, (unsigned long long)hlen, (unsigned long long)plen, len);
        goto fail;
    }
    box = calloc(1, sizeof *box);
    if (!box) {
        r = -ENOMEM;
        goto fail;
    }
    rwkvd_snapshot *s = &box->pub;
    s->model.fingerprint = rwkvd_le64_get(b + 16);
    s->model.n_layer = rwkvd_le32_get(b + 24);
    s->model.n_embd = rwkvd_le32_get(b + 28);
    s->model.n_head = rwkvd_le32_get(b + 32);
    s->model.head_size = rwkvd_le32_get(b + 36);
    s->model.n_vocab = rwkvd_le32_get(b + 40);
    s->layout = rwkvd_le32_get(b + 44);
    s->dtype = rwkvd_le32_get(b + 48);
    s->n_producers = rwkvd_le32_get(b + 52);
    s->tokens_seen = rwkvd_le64_get(b + 56);
    s->applied_lsn = rwkvd_le64_get(b + 64);
    s->created_ns = rwkvd_le64_get(b + 72);
    s->payload_bytes = plen;
    if (s->layout != RWKVD_SNAP_LAYOUT_V1 || s->dtype != RWKVD_SNAP_DTYPE_F32) {
        rwkvd_errf(err, err_len, "%s: state layout %u / dtype %u not supported (this build reads "
            "layout %d, dtype %d = fp32)", name, s->layout, s->dtype, RWKVD_SNAP_LAYOUT_V1,
            RWKVD_SNAP_DTYPE_F32);
        r = -EPROTO;
        goto fail;
    }
    /* Names: walk the variable part within [90, hlen). */
    size_t pos = 88, strbytes = 0;
    uint32_t np = s->n_producers;
    if (np > RWKVD_SNAP_PRODUCERS_MAX) {
        rwkvd_errf(err, err_len, "%s: %u producers (at most %d)", name, np, RWKVD_SNAP_PRODUCERS_MAX);
        goto fail;
    }
    for (uint32_t i = 0; i <= np; i++) {
        if (pos + 2 > hlen)
            goto bad_names;
        size_t n = rwkvd_le16_get(b + pos);
        size_t tail = i ? 8 : 0;
        if (n < 1 || n > RWKVD_SNAP_NAME_MAX || pos + 2 + n + tail > hlen ||
            memchr(b + pos + 2, 0, n))
            goto bad_names;
        strbytes += n + 1;
        pos += 2 + n + tail;
    }
    if (has_extra) { /* extra_len, then the section after the payload */
        if (pos + 8 > hlen)
            goto bad_names;
        xlen = rwkvd_le64_get(b + pos);
        pos += 8;
        if (xlen == 0 || xlen > RWKVD_SNAP_EXTRA_MAX || plen + xlen != len - 4 - hlen) {
            rwkvd_errf(err, err_len, "%s: lengths inconsistent with the file size (header %llu, payload "
                "%llu, extra %llu, file %zu)", name, (unsigned long long)hlen, (unsigned long long)plen,
                (unsigned long long)xlen, len);
            goto fail;
        }
    }
    for (size_t i = pos; i < hlen; i++)
        if (b[i])
            goto bad_names;
    box->strings = malloc(strbytes);
    box->producers = calloc(np ? np : 1, sizeof *box->producers);
    if (!box->strings || !box->producers) {
        r = -ENOMEM;
        goto fail;
    }
    pos = 88;
    char *sp = box->strings;
    for (uint32_t i = 0; i <= np; i++) {
        size_t n = rwkvd_le16_get(b + pos);
        memcpy(sp, b + pos + 2, n);
        sp[n] = 0;
        if (i == 0) {
            s->channel = sp;
        } else {
            box->producers[i - 1].id = sp;
            box->producers[i - 1].seq = rwkvd_le64_get(b + pos + 2 + n);
        }
        sp += n + 1;
        pos += 2 + n + (i ? 8 : 0);
    }
    s->producers = box->producers;
    uint64_t want_payload = rwkvd_snap_state_bytes(&s->model);
    if (want_payload == 0 || plen != want_payload) {
        rwkvd_errf(err, err_len, "%s: payload of %llu bytes, dims L=%u C=%u H=%u N=%u give %llu", name,
            (unsigned long long)plen, s->model.n_layer, s->model.n_embd, s->model.n_head,
            s->model.head_size, (unsigned long long)want_payload);
        goto fail;
    }
    char what[200];
    if (expect && model_mismatch(&s->model, expect, what, sizeof what)) {
        rwkvd_errf(err, err_len, "%s: %s", name, what);
        r = -ESTALE;
        goto fail;
    }
    s->payload = b + hlen;
    s->extra = xlen ? b + hlen + plen : NULL;
    s->extra_bytes = xlen;
    box->file = file;
    *out = s;
    return 0;

bad_names:
    rwkvd_errf(err, err_len, "%s: malformed channel/producer list in the header (at offset %zu)", name,
        pos);
    r = -EBADMSG;
fail:
    if (box) {
        free(box->strings);
        free(box->producers);
        free(box);
    }
    free(file);
    return r;
}

int rwkvd_snapshot_decode(const void *buf, size_t len, const char *name,
                          const rwkvd_snap_model *expect, rwkvd_snapshot **out, char *err,
                          size_t err_len)
{
    void *copy = malloc(len ? len : 1);
    if (!copy) {
        rwkvd_errf(err, err_len, "%s: out of memory", name);
        return -ENOMEM;
    }
    if (len)
        memcpy(copy, buf, len);
    return decode_owned(copy, len, name, expect, out, err, err_len);
}

/* ---- file names ------------------------------------------------------------------- */

static int keep_byte(unsigned char c, size_t i)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || (c == '.' && i > 0);
}

int rwkvd_snap_stem(const char *channel, char *buf, size_t cap)
{
    if (!name_ok(channel))
        return -EINVAL;
    static const char hex[] = "0123456789ABCDEF";
    char enc[3 * RWKVD_SNAP_NAME_MAX + 1];
    size_t n = 0, cut = 0;
    for (size_t i = 0; channel[i]; i++) {
        unsigned char c = (unsigned char)channel[i];
        if (keep_byte(c, i)) {
            enc[n++] = (char)c;
        } else {
            enc[n++] = '%';
            enc[n++] = hex[c >> 4];
            enc[n++] = hex[c & 15];
        }
        if (n <= STEM_CUT)
            cut = n;
    }
    if (n > STEM_MAX) {
        uint64_t h = 14695981039346656037ull;
        for (const unsigned char *p = (const unsigned char *)channel; *p; p++)
            h = (h ^ *p) * 1099511628211ull;
        n = cut + (size_t)snprintf(enc + cut, sizeof enc - cut, "~%016llx", (unsigned long long)h);
    }
    if (n + 1 > cap)
        return -ENAMETOOLONG;
    memcpy(buf, enc, n);
    buf[n] = 0;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode an un-hashed stem; NULL if it is not the canonical encoding of a name. */
static char *stem_decode(const char *stem, size_t n)
{
    char *name = malloc(n + 1);
    if (!name)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (stem[i] == '%') {
            int hi = i + 2 < n ? hexval(stem[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(stem[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                goto bad;
            name[k++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            name[k++] = stem[i];
        }
    }
    name[k] = 0;
    char check[STEM_MAX + 20];
    if (k == 0 || strlen(name) != k || rwkvd_snap_stem(name, check, sizeof check) < 0 ||
        strlen(check) != n || memcmp(check, stem, n) != 0)
        goto bad;
    return name;
bad:
    free(name);
    return NULL;
}

static const char *gen_suffix(rwkvd_snap_gen g)
{
    return g == RWKVD_SNAP_PREV ? ".snap.prev" : ".snap";
}

static int file_path(const rwkvd_snapstore *st, const char *channel, const char *suffix,
                     char *buf, size_t cap)
{
    char stem[STEM_MAX + 1];
    int r = rwkvd_snap_stem(channel, stem, sizeof stem);
    if (r < 0)
        return r;
    int n = snprintf(buf, cap, "%s/%s%s", st->dir, stem, suffix);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int rwkvd_snapstore_path(const rwkvd_snapstore *st, const char *channel, rwkvd_snap_gen gen,
                         char *buf, size_t cap)
{
    return file_path(st, channel, gen_suffix(gen), buf, cap);
}

/* ---- the store -------------------------------------------------------------------- */

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n > m && strcmp(s + n - m, suf) == 0;
}

int rwkvd_snapstore_open(const char *dir, rwkvd_fsio *io, rwkvd_snapstore **out, char *err,
                         size_t err_len)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        int e = errno;
        rwkvd_errf(err, err_len, "%s: cannot create the snapshot directory: %s", dir, strerror(e));
        return -e;
    }
    rwkvd_snapstore *st = calloc(1, sizeof *st);
    if (!st || !(st->dir = strdup(dir))) {
        free(st);
        rwkvd_errf(err, err_len, "%s: out of memory", dir);
        return -ENOMEM;
    }
    st->own_io.module = "snapshot";
    st->io = io ? io : &st->own_io;
    st->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->dirfd < 0) {
        int e = errno;
        rwkvd_errf(err, err_len, "%s: cannot open the snapshot directory: %s", dir, strerror(e));
        rwkvd_snapstore_destroy(&st);
        return -e;
    }
    /* Leftovers of a write that never reached its rename are garbage by construction (a
     * .link is a second name of a generation that has its own). */
    DIR *d = fdopendir(dup(st->dirfd));
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (has_suffix(de->d_name, ".snap.tmp") || has_suffix(de->d_name, ".snap.link"))
                unlinkat(st->dirfd, de->d_name, 0);
        closedir(d);
    }
    *out = st;
    return 0;
}

void rwkvd_snapstore_destroy(rwkvd_snapstore **st)
{
    if (!st || !*st)
        return;
    if ((*st)->dirfd >= 0)
        close((*st)->dirfd);
    free((*st)->dir);
    free(*st);
    *st = NULL;
}

int rwkvd_snapstore_write(rwkvd_snapstore *st, const rwkvd_snapshot *snap, char *err,
                          size_t err_len)
{
    char tmp[PATH_MAX], cur[PATH_MAX], prev[PATH_MAX], lnk[PATH_MAX];
    int r = check_fields(snap);
    if (r < 0) {
        rwkvd_errf(err, err_len, "%s: snapshot of channel '%s' refused: bad field (name, producers or "
            "payload size)", st->dir, snap->channel ? snap->channel : "");
        return r;
    }
    if (file_path(st, snap->channel, ".snap.tmp", tmp, sizeof tmp) < 0 ||
        file_path(st, snap->channel, ".snap", cur, sizeof cur) < 0 ||
        file_path(st, snap->channel, ".snap.prev", prev, sizeof prev) < 0 ||
        file_path(st, snap->channel, ".snap.link", lnk, sizeof lnk) < 0) {
        rwkvd_errf(err, err_len, "%s: path too long for channel '%s'", st->dir, snap->channel);
        return -ENAMETOOLONG;
    }
    uint64_t hlen = header_bytes(snap);
    if (hlen > HEADER_MAX) {
        rwkvd_errf(err, err_len, "%s: header of %llu bytes too large", tmp, (unsigned long long)hlen);
        return -EINVAL;
    }
    unsigned char *h = malloc((size_t)hlen + 4);
    if (!h) {
        rwkvd_errf(err, err_len, "%s: out of memory", tmp);
        return -ENOMEM;
    }
    put_header(h, (size_t)hlen, snap);
    uint32_t crc = rwkvd_crc32c(0, h, (size_t)hlen);
    crc = rwkvd_crc32c(crc, snap->payload, (size_t)snap->payload_bytes);
    if (snap->extra_bytes)
        crc = rwkvd_crc32c(crc, snap->extra, (size_t)snap->extra_bytes);
    unsigned char crcb[4];
    rwkvd_le32_put(crcb, crc);

    const char *step = "open";
    int fd = rwkvd_fsio_open(st->io, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        r = fd;
        goto fail;
    }
    step = "write";
    if ((r = rwkvd_fsio_write_all(st->io, fd, h, (size_t)hlen, tmp)) < 0 ||
        (r = rwkvd_fsio_write_all(st->io, fd, snap->payload, (size_t)snap->payload_bytes,
                                  tmp)) < 0 ||
        (snap->extra_bytes &&
         (r = rwkvd_fsio_write_all(st->io, fd, snap->extra, (size_t)snap->extra_bytes, tmp)) < 0) ||
        (r = rwkvd_fsio_write_all(st->io, fd, crcb, 4, tmp)) < 0)
        goto fail_fd;
    step = "fsync";
    if ((r = rwkvd_fsio_fsync(st->io, fd, tmp, 0)) < 0)
        goto fail_fd;
    if (close(fd) < 0) {
        fd = -1;
        r = -errno;
        step = "close";
        goto fail_fd;
    }
    fd = -1;
    /* Rotate without a moment that loses a generation: a second name for the current file,
     * the new file over .snap (one atomic step), then that second name over .prev. A failure
     * before the new file is in place leaves both old generations as they were; one after
     * leaves .snap new and .prev one generation older than it should be, which is reported
     * (so the caller keeps the log the older .prev needs). Without hard links (some file
     * systems) .snap is renamed to .prev first, as before: a failed rename into place then
     * leaves only the current generation. */
    bool have_cur = access(cur, F_OK) == 0, linked = false;
    if (have_cur) {
        unlink(lnk); /* a leftover of a crash between the link and its rename */
        step = "link";
        r = rwkvd_fsio_link(st->io, cur, lnk);
        if (r == -EPERM || r == -EOPNOTSUPP || r == -EMLINK) {
            step = "rename to .prev";
            if ((r = rwkvd_fsio_rename(st->io, cur, prev)) < 0)
                goto fail_fd;
        } else if (r < 0) {
            goto fail_fd;
        } else {
            linked = true;
        }
    }
    step = "rename into place";
    if ((r = rwkvd_fsio_rename(st->io, tmp, cur)) < 0) {
        if (linked) {
            unlink(lnk);
        } else if (have_cur && access(prev, F_OK) == 0 && access(cur, F_OK) != 0) {
            /* .snap is gone and .prev holds it: put it back where readers look first. The
             * loader's fallback covers us if this fails too. */
            rename(prev, cur);
        }
        goto fail_fd;
    }
    if (linked && (r = rwkvd_fsio_rename(st->io, lnk, prev)) < 0) {
        unlink(lnk);
        free(h);
        rwkvd_errf(err, err_len, "%s: rename to .prev: %s (the new snapshot is in place; .prev is the "
            "generation before the previous one)", cur, strerror(-r));
        return r;
    }
    free(h);
    step = "fsync directory";
    if ((r = rwkvd_fsio_dirsync(st->io, st->dirfd, st->dir)) < 0) {
        rwkvd_errf(err, err_len, "%s: %s: %s (the new snapshot is in place but may not be durable)",
            cur, step, strerror(-r));
        return r;
    }
    return 0;

fail_fd:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
fail:
    free(h);
    rwkvd_errf(err, err_len, "%s: %s: %s (previous generation kept)", step[0] == 'r' ? cur : tmp, step,
        strerror(-r));
    return r;
}

int rwkvd_snapstore_read(rwkvd_snapstore *st, const char *channel, rwkvd_snap_gen gen,
                         const rwkvd_snap_model *expect, rwkvd_snapshot **out, char *err,
                         size_t err_len)
{
    char path[PATH_MAX];
    if (file_path(st, channel, gen_suffix(gen), path, sizeof path) < 0) {
        rwkvd_errf(err, err_len, "%s: bad channel name", st->dir);
        return -EINVAL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        rwkvd_errf(err, err_len, "%s: %s", path, e == ENOENT ? "no such snapshot" : strerror(e));
        return -e;
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        int e = errno;
        close(fd);
        rwkvd_errf(err, err_len, "%s: fstat: %s", path, strerror(e));
        return -e;
    }
    if ((uint64_t)sb.st_size > FILE_MAX || (uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        rwkvd_errf(err, err_len, "%s: %lld bytes is too large for a snapshot", path,
            (long long)sb.st_size);
        return -EFBIG;
    }
    size_t len = (size_t)sb.st_size, got = 0;
    unsigned char *buf = malloc(len ? len : 1);
    if (!buf) {
        close(fd);
        rwkvd_errf(err, err_len, "%s: out of memory for %zu bytes", path, len);
        return -ENOMEM;
    }
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : 0;
            if (!e) /* shrank under us: validate what we have */
                break;
            close(fd);
            free(buf);
            rwkvd_errf(err, err_len, "%s: read: %s", path, strerror(e));
            return -e;
        }
        got += (size_t)n;
    }
    close(fd);
    int r = decode_owned(buf, got, path, expect, out, err, err_len);
    if (r == 0 && strcmp((*out)->channel, channel) != 0) {
        rwkvd_errf(err, err_len, "%s: holds channel '%s', not '%s'", path, (*out)->channel, channel);
        rwkvd_snapshot_destroy(out);
        return -EBADMSG;
    }
    return r;
}

int rwkvd_snapstore_load(rwkvd_snapstore *st, const char *channel, const rwkvd_snap_model *expect,
                         rwkvd_snapshot **out, rwkvd_snap_gen *gen, char *note, size_t note_len)
{
    char e1[512], e2[512];
    rwkvd_errf(note, note_len, "%s", "");
    int r1 = rwkvd_snapstore_read(st, channel, RWKVD_SNAP_CUR, expect, out, e1, sizeof e1);
    if (r1 == 0) {
        if (gen)
            *gen = RWKVD_SNAP_CUR;
        return 0;
    }
    int r2 = rwkvd_snapstore_read(st, channel, RWKVD_SNAP_PREV, expect, out, e2, sizeof e2);
    if (r2 == 0) {
        if (gen)
            *gen = RWKVD_SNAP_PREV;
        rwkvd_errf(note, note_len, "%s; using the previous generation", e1);
        return 0;
    }
    rwkvd_errf(note, note_len, "%s; %s", e1, e2);
    return r1 != -ENOENT ? r1 : r2;
}

int rwkvd_snapstore_remove(rwkvd_snapstore *st, const char *channel)
{
    char path[PATH_MAX];
    int r = 0;
    for (int g = 0; g < 2; g++) {
        if (file_path(st, channel, gen_suffix((rwkvd_snap_gen)g), path, sizeof path) < 0)
            return -EINVAL;
        int e = rwkvd_fsio_unlink(st->io, path);
        if (e < 0 && e != -ENOENT && r == 0)
            r = e;
    }
    if (r == 0)
        r = rwkvd_fsio_dirsync(st->io, st->dirfd, st->dir);
    return r;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The channel name stored in a file, from its header (no full validation). */
static char *name_from_file(int dirfd, const char *fname)
{
    int fd = openat(dirfd, fname, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    unsigned char h[FIXED_BYTES + RWKVD_SNAP_NAME_MAX];
    ssize_t n = pread(fd, h, sizeof h, 0);
    close(fd);
    if (n < (ssize_t)FIXED_BYTES || memcmp(h, RWKVD_SNAP_MAGIC, 8) != 0)
        return NULL;
    size_t m = rwkvd_le16_get(h + 88);
    if (m < 1 || m > RWKVD_SNAP_NAME_MAX || (ssize_t)(FIXED_BYTES + m) > n || memchr(h + 90, 0, m))
        return NULL;
    char *s = malloc(m + 1);
    if (s) {
        memcpy(s, h + 90, m);
        s[m] = 0;
    }
    return s;
}

int rwkvd_snapstore_list(rwkvd_snapstore *st, char ***names, size_t *n_out)
{
    int fd = dup(st->dirfd);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return -e;
    }
    rewinddir(d);
    char **v = NULL;
    size_t n = 0, cap = 0;
    int r = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *fn = de->d_name;
        size_t len = strlen(fn), stem_len;
        if (has_suffix(fn, ".snap"))
            stem_len = len - 5;
        else if (has_suffix(fn, ".snap.prev"))
            stem_len = len - 10;
        else
            continue;
        char *name = memchr(fn, '~', stem_len) ? name_from_file(st->dirfd, fn)
                                              : stem_decode(fn, stem_len);
        if (!name)
            continue; /* not ours, or unreadable: the loader reports it if asked */
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            char **nv = realloc(v, nc * sizeof *nv);
            if (!nv) {
                free(name);
                r = -ENOMEM;
                break;
            }
            v = nv;
            cap = nc;
        }
        v[n++] = name;
    }
    closedir(d);
    if (r < 0) {
        rwkvd_snapstore_list_free(&v, n);
        return r;
    }
    if (n)
        qsort(v, n, sizeof *v, cmp_names);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k && strcmp(v[k - 1], v[i]) == 0)
            free(v[i]);
        else
            v[k++] = v[i];
    }
    *names = v;
    *n_out = k;
    return 0;
}

void rwkvd_snapstore_list_free(char ***names, size_t n)
{
    if (!names || !*names)
        return;
    for (size_t i = 0; i < n; i++)
        free((*names)[i]);
    free(*names);
    *names = NULL;
}
