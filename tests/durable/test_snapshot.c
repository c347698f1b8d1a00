/* test_snapshot.c — the snapshot store: round trips (file and blob), file-name encoding and
 * listing, every corruption class refused with its errno and a message naming the file,
 * fallback to the previous generation, and a fault (ENOSPC/EIO, short writes) at each step
 * of the atomic write leaving the previous generations intact and loadable. */
#include "crc32c.h"
#include "durable_test.h"
#include "snapshot.h"
#include "testutil.h"

#include <stdint.h>

static const rwkvd_snap_model MODEL = {
    .fingerprint = 0x0123456789abcdefull, .n_layer = 2, .n_embd = 8, .n_head = 2,
    .head_size = 4, .n_vocab = 300,
};

static const rwkvd_snap_producer PRODUCERS[] = {
    {"p1", 7}, {"producer-two", 1ull << 40}, {"x:y/z", 3},
};

/* A snapshot of MODEL whose payload floats are a function of `gen`. */
static rwkvd_snapshot make_snap(const char *channel, float *payload, int gen)
{
    rwkvd_snapshot s = {0};
    s.model = MODEL;
    s.layout = RWKVD_SNAP_LAYOUT_V1;
    s.dtype = RWKVD_SNAP_DTYPE_F32;
    s.channel = channel;
    s.tokens_seen = 1000u + (uint64_t)gen;
    s.applied_lsn = 50u + (uint64_t)gen;
    s.created_ns = 0;
    s.n_producers = 3;
    s.producers = PRODUCERS;
    s.payload_bytes = rwkvd_snap_state_bytes(&MODEL);
    for (size_t i = 0; i < s.payload_bytes / 4; i++)
        payload[i] = (float)gen * 1000.0f + (float)i * 0.25f;
    s.payload = payload;
    return s;
}

static int same_snap(const rwkvd_snapshot *a, const rwkvd_snapshot *b)
{
    if (memcmp(&a->model, &b->model, sizeof a->model) != 0 || a->layout != b->layout ||
        a->dtype != b->dtype || strcmp(a->channel, b->channel) != 0 ||
        a->tokens_seen != b->tokens_seen || a->applied_lsn != b->applied_lsn ||
        a->n_producers != b->n_producers || a->payload_bytes != b->payload_bytes ||
        memcmp(a->payload, b->payload, a->payload_bytes) != 0)
        return 0;
    for (uint32_t i = 0; i < a->n_producers; i++)
        if (strcmp(a->producers[i].id, b->producers[i].id) != 0 ||
            a->producers[i].seq != b->producers[i].seq)
            return 0;
    return 1;
}

/* Load the channel and say which generation number (tokens_seen - 1000) came back; -errno. */
static int loaded_gen(rwkvd_snapstore *st, const char *ch, rwkvd_snap_gen *g)
{
    rwkvd_snapshot *s = NULL;
    char note[1024];
    int r = rwkvd_snapstore_load(st, ch, &MODEL, &s, g, note, sizeof note);
    if (r < 0)
        return r;
    int gen = (int)(s->tokens_seen - 1000);
    rwkvd_snapshot_destroy(&s);
    return gen;
}

static void test_sizes(void)
{
    CHECK(rwkvd_snap_state_bytes(&MODEL) == 2 * (2 * 8 + 2 * 4 * 4) * 4);
    rwkvd_snap_model m01 = {.n_layer = 12, .n_embd = 768, .n_head = 12, .head_size = 64};
    CHECK(rwkvd_snap_state_bytes(&m01) == 2433024); /* the 0.1B state of DESIGN.md §7 */
    rwkvd_snap_model huge = {.n_layer = 0xFFFFFFFF, .n_embd = 0xFFFFFFFF, .n_head = 0xFFFFFFFF,
                             .head_size = 0xFFFFFFFF};
    CHECK(rwkvd_snap_state_bytes(&huge) == 0);
}

static void test_stems(void)
{
    char b[200];
    CHECK(rwkvd_snap_stem("chat", b, sizeof b) == 0 && strcmp(b, "chat") == 0);
    CHECK(rwkvd_snap_stem("logs/app:prod", b, sizeof b) == 0 && strcmp(b, "logs%2Fapp%3Aprod") == 0);
    CHECK(rwkvd_snap_stem("a.b_c-d", b, sizeof b) == 0 && strcmp(b, "a.b_c-d") == 0);
    CHECK(rwkvd_snap_stem(".hidden", b, sizeof b) == 0 && strcmp(b, "%2Ehidden") == 0);
    CHECK(rwkvd_snap_stem("..", b, sizeof b) == 0 && strcmp(b, "%2E.") == 0);
    CHECK(rwkvd_snap_stem("100%", b, sizeof b) == 0 && strcmp(b, "100%25") == 0);
    CHECK(rwkvd_snap_stem("", b, sizeof b) == -EINVAL);
    char longname[300];
    memset(longname, 'a', 256);
    longname[256] = 0;
    CHECK(rwkvd_snap_stem(longname, b, sizeof b) == -EINVAL);
    longname[0] = 'x';
    memset(longname + 1, '/', 127);
    longname[128] = 0; /* 128 octets as the protocol allows: 382 escaped */
    CHECK(rwkvd_snap_stem(longname, b, sizeof b) == 0);
    CHECK(strlen(b) <= 160 && strchr(b, '~') != NULL && strchr(b, '/') == NULL);
    CHECK(rwkvd_snap_stem("chat", b, 4) == -ENAMETOOLONG);
}

static void fix_crc(unsigned char *img, size_t len);

/* Version 2: an extra section (the daemon's retained outputs) after the payload, its length
 * after the producers; a snapshot without one is still written as version 1. */
static void test_extra(const char *dir)
{
    rwkvd_snapstore *st = NULL;
    char err[512];
    CHECK(rwkvd_snapstore_open(dir, NULL, &st, err, sizeof err) == 0);
    if (!st)
        return;
    float p[96];
    rwkvd_snapshot s = make_snap("x/extra", p, 5);
    void *img = NULL;
    size_t len = 0;
    CHECK(rwkvd_snapshot_encode(&s, &img, &len) == 0 && rwkvd_le32_get((unsigned char *)img + 8) == 1);
    free(img);
    static const char extra[] = "thirteen byte";
    s.extra = extra;
    s.extra_bytes = 13;
    CHECK(rwkvd_snapshot_encode(&s, &img, &len) == 0 && rwkvd_le32_get((unsigned char *)img + 8) == 2);
    rwkvd_snapshot *got = NULL;
    CHECK(rwkvd_snapshot_decode(img, len, "image", &MODEL, &got, err, sizeof err) == 0);
    CHECK(got && same_snap(got, &s) && got->extra_bytes == 13 && memcmp(got->extra, extra, 13) == 0);
    rwkvd_snapshot_destroy(&got);
    /* an extra_len that does not add up to the file size */
    unsigned char *b = img;
    uint32_t hlen = rwkvd_le32_get(b + 12);
    size_t at = hlen - 8;
    while (at > 90 && rwkvd_le64_get(b + at) != 13) /* the u64 after the producers, before padding */
        at -= 1;
    CHECK(rwkvd_le64_get(b + at) == 13);
    rwkvd_le64_put(b + at, 14);
    fix_crc(b, len);
    CHECK(rwkvd_snapshot_decode(img, len, "image", &MODEL, &got, err, sizeof err) == -EBADMSG &&
          strstr(err, "extra 14"));
    free(img);
    CHECK(rwkvd_snapstore_write(st, &s, err, sizeof err) == 0);
    CHECK(rwkvd_snapstore_read(st, "x/extra", RWKVD_SNAP_CUR, &MODEL, &got, err, sizeof err) == 0);
    CHECK(got && got->extra_bytes == 13 && memcmp(got->extra, extra, 13) == 0);
    rwkvd_snapshot_destroy(&got);
    rwkvd_snapstore_destroy(&st);
}

static void test_round_trip(const char *dir)
{
    rwkvd_snapstore *st = NULL;
    char err[512];
    CHECK(rwkvd_snapstore_open(dir, NULL, &st, err, sizeof err) == 0);
    if (!st)
        return;
    float p1[96], p2[96];
    rwkvd_snapshot s1 = make_snap("logs/app:1", p1, 1), s2 = make_snap("logs/app:1", p2, 2);
    rwkvd_snapshot *got = NULL;
    CHECK(rwkvd_snapstore_read(st, "logs/app:1", RWKVD_SNAP_CUR, &MODEL, &got, err, sizeof err) ==
          -ENOENT);
    CHECK(strstr(err, "logs%2Fapp%3A1.snap") != NULL);
    CHECK(rwkvd_snapstore_write(st, &s1, err, sizeof err) == 0);
    CHECK(rwkvd_snapstore_read(st, "logs/app:1", RWKVD_SNAP_CUR, &MODEL, &got, err, sizeof err) == 0);
    if (got) {
        CHECK(same_snap(got, &s1));
        CHECK(got->created_ns > 1600000000ull * 1000000000ull);
        CHECK(((uintptr_t)got->payload & 7) == 0);
        rwkvd_snapshot_destroy(&got);
        CHECK(got == NULL);
        rwkvd_snapshot_destroy(&got);
    }
    CHECK(rwkvd_snapstore_read(st, "logs/app:1", RWKVD_SNAP_PREV, &MODEL, &got, err, sizeof err) ==
          -ENOENT);
    CHECK(rwkvd_snapstore_write(st, &s2, err, sizeof err) == 0);
    CHECK(rwkvd_snapstore_read(st, "logs/app:1", RWKVD_SNAP_CUR, &MODEL, &got, err, sizeof err) == 0);
    CHECK(got && same_snap(got, &s2));
    rwkvd_snapshot_destroy(&got);
    CHECK(rwkvd_snapstore_read(st, "logs/app:1", RWKVD_SNAP_PREV, NULL, &got, err, sizeof err) == 0);
    CHECK(got && same_snap(got, &s1));
    rwkvd_snapshot_destroy(&got);
    rwkvd_snap_gen g = RWKVD_SNAP_PREV;
    CHECK(loaded_gen(st, "logs/app:1", &g) == 2 && g == RWKVD_SNAP_CUR);

    /* The blob equals the file byte for byte (created_ns given). */
    s2.created_ns = 12345;
    CHECK(rwkvd_snapstore_write(st, &s2, err, sizeof err) == 0);
    void *blob = NULL;
    size_t blen = 0;
    CHECK(rwkvd_snapshot_encode(&s2, &blob, &blen) == 0);
    char path[4096];
    CHECK(rwkvd_snapstore_path(st, "logs/app:1", RWKVD_SNAP_CUR, path, sizeof path) == 0);
    size_t flen = 0;
    char *file = test_read_file(path, &flen);
    CHECK(file && flen == blen && memcmp(file, blob, blen) == 0);
    CHECK(blen % 4 == 0 && (blen - 4 - s2.payload_bytes) % 8 == 0);
    CHECK(rwkvd_snapshot_decode(blob, blen, "blob", &MODEL, &got, err, sizeof err) == 0);
    CHECK(got && same_snap(got, &s2) && got->created_ns == 12345);
    rwkvd_snapshot_destroy(&got);
    free(file);
    free(blob);

    /* Bad fields are refused before any file is touched. */
    rwkvd_snapshot bad = s1;
    bad.payload_bytes -= 4;
    CHECK(rwkvd_snapstore_write(st, &bad, err, sizeof err) == -EINVAL);
    bad = s1;
    bad.channel = "";
    CHECK(rwkvd_snapstore_write(st, &bad, err, sizeof err) == -EINVAL);
    bad = s1;
    bad.producers = NULL;
    CHECK(rwkvd_snapstore_write(st, &bad, err, sizeof err) == -EINVAL);
    CHECK(rwkvd_snapshot_encode(&bad, &blob, &blen) == -EINVAL);
    CHECK(loaded_gen(st, "logs/app:1", &g) == 2);
    rwkvd_snapstore_destroy(&st);
    CHECK(st == NULL);
    rwkvd_snapstore_destroy(&st);
}

/* Write `img` as the .snap of ch, read it; returns the errno, err filled. */
static int read_image(rwkvd_snapstore *st, const char *ch, const void *img, size_t len,
                      const rwkvd_snap_model *expect, char *err, size_t err_len)
{
    char path[4096];
    rwkvd_snapstore_path(st, ch, RWKVD_SNAP_CUR, path, sizeof path);
    test_write_file(path, img, len);
    rwkvd_snapshot *s = NULL;
    int r = rwkvd_snapstore_read(st, ch, RWKVD_SNAP_CUR, expect, &s, err, err_len);
    rwkvd_snapshot_destroy(&s);
    return r;
}

static void fix_crc(unsigned char *img, size_t len)
{
    rwkvd_le32_put(img + len - 4, rwkvd_crc32c(0, img, len - 4));
}

static void test_corruption(const char *dir)
{
    rwkvd_snapstore *st = NULL;
    char err[512], note[1024], path[4096];
    CHECK(rwkvd_snapstore_open(dir, NULL, &st, err, sizeof err) == 0);
    if (!st)
        return;
    const char *ch = "chan:corrupt";
    float p1[96], p2[96];
    rwkvd_snapshot s1 = make_snap(ch, p1, 1), s2 = make_snap(ch, p2, 2);
    CHECK(rwkvd_snapstore_write(st, &s1, err, sizeof err) == 0);
    CHECK(rwkvd_snapstore_write(st, &s2, err, sizeof err) == 0);
    rwkvd_snapstore_path(st, ch, RWKVD_SNAP_CUR, path, sizeof path);
    size_t len = 0;
    unsigned char *good = (unsigned char *)test_read_file(path, &len);
    unsigned char *img = malloc(len);
    if (!good || !img) {
        CHECK(0);
        return;
    }

    /* Truncated at every length: refused as a bad message naming the file; .prev is used. */
    int wrong = 0, fallback_bad = 0, unnamed = 0;
    for (size_t n = 0; n < len; n++) {
        int r = read_image(st, ch, good, n, &MODEL, err, sizeof err);
        if (r != -EBADMSG)
            wrong++;
        if (!strstr(err, path))
            unnamed++;
        rwkvd_snap_gen g = RWKVD_SNAP_CUR;
        if (n % 37 == 0 && (loaded_gen(st, ch, &g) != 1 || g != RWKVD_SNAP_PREV))
            fallback_bad++;
    }
    CHECKF(wrong == 0, "%d truncations not refused with EBADMSG", wrong);
    CHECKF(unnamed == 0, "%d messages do not name the file", unnamed);
    CHECK(fallback_bad == 0);

    /* Any byte damaged anywhere (header, names, payload, crc): EBADMSG. */
    wrong = 0;
    for (size_t i = 0; i < len; i++)
        for (int v = 0; v < 2; v++) {
            memcpy(img, good, len);
            img[i] ^= v ? 0xFF : 0x10;
            rwkvd_snapshot *s = NULL;
            if (rwkvd_snapshot_decode(img, len, "img", &MODEL, &s, err, sizeof err) != -EBADMSG)
                wrong++;
            rwkvd_snapshot_destroy(&s);
        }
    CHECKF(wrong == 0, "%d single-byte damages not refused with EBADMSG", wrong);
    img[0] = good[0];
    memcpy(img, good, len);
    img[len / 2] ^= 1;
    CHECK(read_image(st, ch, img, len, &MODEL, err, sizeof err) == -EBADMSG);
    CHECK(strstr(err, "crc32c mismatch") && strstr(err, path));
    memcpy(img, good, len);
    img[0] = 'X';
    CHECK(read_image(st, ch, img, len, &MODEL, err, sizeof err) == -EBADMSG);
    CHECK(strstr(err, "bad magic"));

    /* Unknown version, layout or dtype, with a valid crc: EPROTO. */
    memcpy(img, good, len);
    rwkvd_le32_put(img + 8, 3);
    fix_crc(img, len);
    CHECK(read_image(st, ch, img, len, &MODEL, err, sizeof err) == -EPROTO);
    CHECK(strstr(err, "version 3") && strstr(err, path));
    rwkvd_snap_gen g = RWKVD_SNAP_CUR;
    rwkvd_snapshot *s = NULL;
    CHECK(rwkvd_snapstore_load(st, ch, &MODEL, &s, &g, note, sizeof note) == 0);
    CHECK(s && s->tokens_seen == 1001);
    rwkvd_snapshot_destroy(&s);
    CHECK(g == RWKVD_SNAP_PREV && strstr(note, "version 3") && strstr(note, "previous generation"));
    memcpy(img, good, len);
    rwkvd_le32_put(img + 44, 7);
    fix_crc(img, len);
    CHECK(read_image(st, ch, img, len, &MODEL, err, sizeof err) == -EPROTO);
    memcpy(img, good, len);
    rwkvd_le32_put(img + 48, 2); /* bf16: not this version */
    fix_crc(img, len);
    CHECK(read_image(st, ch, img, len, &MODEL, err, sizeof err) == -EPROTO);

    /* Another model: ESTALE, for the fingerprint and for each dim. */
    CHECK(read_image(st, ch, good, len, &MODEL, err, sizeof err) == 0);
    rwkvd_snap_model other = MODEL;
    other.fingerprint ^= 1;
    CHECK(read_image(st, ch, good, len, &other, err, sizeof err) == -ESTALE);
    CHECK(strstr(err, "fingerprint") && strstr(err, path));
    for (int d = 0; d < 5; d++) {
        other = MODEL;
        uint32_t *f[] = {&other.n_layer, &other.n_embd, &other.n_head, &other.head_size,
                         &other.n_vocab};
        *f[d] += 1;
        CHECK(read_image(st, ch, good, len, &other, err, sizeof err) == -ESTALE);
        CHECK(strstr(err, "dims"));
    }
    CHECK(read_image(st, ch, good, len, NULL, err, sizeof err) == 0);
    /* Both generations from another model: the load fails with ESTALE, naming both. */
    other = MODEL;
    other.fingerprint = 42;
    CHECK(rwkvd_snapstore_load(st, ch, &other, &s, &g, note, sizeof note) == -ESTALE && !s);
    CHECK(strstr(note, ".snap:") && strstr(note, ".snap.prev:"));

    /* Fields inconsistent with each other under a valid crc: EBADMSG. */
    memcpy(img, good, len);
    rwkvd_le32_put(img + 28, 9); /* C: the payload no longer fits the dims */
    fix_crc(img, len);
    CHECK(read_image(st, ch, img, len, NULL, err, sizeof err) == -EBADMSG);
    CHECK(strstr(err, "payload"));
    memcpy(img, good, len);
    rwkvd_le32_put(img + 12, rwkvd_le32_get(img + 12) + 8); /* header length */
    fix_crc(img, len);
    CHECK(read_image(st, ch, img, len, NULL, err, sizeof err) == -EBADMSG);
    memcpy(img, good, len);
    rwkvd_le16_put(img + 88, 200); /* channel name length past the header */
    fix_crc(img, len);
    CHECK(read_image(st, ch, img, len, NULL, err, sizeof err) == -EBADMSG);
    memcpy(img, good, len);
    rwkvd_le32_put(img + 52, 4); /* one producer more than present */
    fix_crc(img, len);
    CHECK(read_image(st, ch, img, len, NULL, err, sizeof err) == -EBADMSG);
    memcpy(img, good, len);
    rwkvd_le32_put(img + 52, 2); /* one fewer: the rest must be zero padding */
    fix_crc(img, len);
    CHECK(read_image(st, ch, img, len, NULL, err, sizeof err) == -EBADMSG);

    /* Another channel's file under this name (copied by hand): EBADMSG. */
    float p3[96];
    rwkvd_snapshot s3 = make_snap("elsewhere", p3, 3);
    void *blob = NULL;
    size_t blen = 0;
    CHECK(rwkvd_snapshot_encode(&s3, &blob, &blen) == 0);
    CHECK(read_image(st, ch, blob, blen, &MODEL, err, sizeof err) == -EBADMSG);
    CHECK(strstr(err, "elsewhere"));
    free(blob);

    /* Both generations bad: the error of .snap; .snap absent: that of .prev; none: ENOENT. */
    char prev[4096];
    rwkvd_snapstore_path(st, ch, RWKVD_SNAP_PREV, prev, sizeof prev);
    test_write_file(prev, good, 10);
    memcpy(img, good, len);
    rwkvd_le32_put(img + 8, 9);
    fix_crc(img, len);
    test_write_file(path, img, len);
    CHECK(rwkvd_snapstore_load(st, ch, &MODEL, &s, &g, note, sizeof note) == -EPROTO);
    unlink(path);
    CHECK(rwkvd_snapstore_load(st, ch, &MODEL, &s, &g, note, sizeof note) == -EBADMSG);
    CHECK(strstr(note, "no such snapshot") && strstr(note, "truncated"));
    unlink(prev);
    CHECK(rwkvd_snapstore_load(st, ch, &MODEL, &s, &g, note, sizeof note) == -ENOENT);
    /* .prev alone is loaded. */
    test_write_file(prev, good, len);
    CHECK(loaded_gen(st, ch, &g) == 2 && g == RWKVD_SNAP_PREV);
    free(good);
    free(img);
    rwkvd_snapstore_destroy(&st);
}

static void test_faults(const char *dir)
{
    static const struct {
        rwkvd_fsio_op op;
        int nth;
        size_t short_n;
        const char *step;
        int want_cur, want_prev; /* generations expected afterwards; 0 = absent */
    } cases[] = {
        {RWKVD_FSIO_OPEN, 1, 0, "open", 2, 1},
        {RWKVD_FSIO_WRITE, 1, 0, "write", 2, 1},    /* header */
        {RWKVD_FSIO_WRITE, 2, 0, "write", 2, 1},    /* payload */
        {RWKVD_FSIO_WRITE, 3, 0, "write", 2, 1},    /* crc */
        {RWKVD_FSIO_WRITE, 2, 100, "write", 2, 1},  /* short payload write, then the error */
        {RWKVD_FSIO_FSYNC, 1, 0, "fsync", 2, 1},
        {RWKVD_FSIO_LINK, 1, 0, "link", 2, 1},                /* .snap -> .snap.link */
        {RWKVD_FSIO_RENAME, 1, 0, "rename into place", 2, 1}, /* both generations untouched */
        {RWKVD_FSIO_RENAME, 2, 0, "rename to .prev", 3, 1},   /* new in place, .prev not rotated */
        {RWKVD_FSIO_DIRSYNC, 1, 0, "fsync directory", 3, 2},
    };
    static const int errs[] = {ENOSPC, EIO};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int e = 0; e < 2; e++) {
            char sub[4096], err[512], path[4096];
            PATHF(sub, "%s/fault-%zu-%d", dir, c, e);
            fault_plan plan = {0};
            rwkvd_fsio io = {.hook = fault_hook, .ctx = &plan, .module = "snapshot"};
            rwkvd_snapstore *st = NULL;
            CHECK(rwkvd_snapstore_open(sub, &io, &st, err, sizeof err) == 0);
            if (!st)
                continue;
            float p[3][96];
            rwkvd_snapshot s1 = make_snap("f/ch", p[0], 1), s2 = make_snap("f/ch", p[1], 2),
                           s3 = make_snap("f/ch", p[2], 3);
            CHECK(rwkvd_snapstore_write(st, &s1, err, sizeof err) == 0);
            CHECK(rwkvd_snapstore_write(st, &s2, err, sizeof err) == 0);
            fault_arm(&plan, cases[c].op, cases[c].nth, errs[e], cases[c].short_n);
            int r = rwkvd_snapstore_write(st, &s3, err, sizeof err);
            CHECKF(r == -errs[e] && plan.fired == 1, "case %zu/%d: r=%d fired=%d", c, e, r,
                   plan.fired);
            CHECKF(strstr(err, cases[c].step) && strstr(err, "f%2Fch.snap"), "case %zu: %s", c,
                   err);
            plan.armed = 0;
            CHECK(count_suffix(sub, ".tmp") == 0 && count_suffix(sub, ".link") == 0);
            /* Whatever is under a final name is a whole, valid generation. */
            rwkvd_snapshot *s = NULL;
            int gens[2];
            for (int g = 0; g < 2; g++) {
                r = rwkvd_snapstore_read(st, "f/ch", (rwkvd_snap_gen)g, &MODEL, &s, err, sizeof err);
                gens[g] = r == 0 ? (int)(s->tokens_seen - 1000) : r == -ENOENT ? 0 : -1;
                rwkvd_snapshot_destroy(&s);
            }
            CHECKF(gens[0] == cases[c].want_cur && gens[1] == cases[c].want_prev,
                   "case %zu/%d: cur %d prev %d", c, e, gens[0], gens[1]);
            rwkvd_snap_gen g;
            CHECK(loaded_gen(st, "f/ch", &g) == cases[c].want_cur);
            /* And the store works again once the fault is gone. */
            CHECK(rwkvd_snapstore_write(st, &s3, err, sizeof err) == 0);
            CHECK(loaded_gen(st, "f/ch", &g) == 3);
            rwkvd_snapstore_path(st, "f/ch", RWKVD_SNAP_CUR, path, sizeof path);
            CHECK(file_size(path) > 0);
            rwkvd_snapstore_destroy(&st);
        }

    /* Calls made by one write, counted through the hook table. */
    char sub[4096], err[512];
    PATHF(sub, "%s/counts", dir);
    rwkvd_fsio io = {.module = "snapshot"};
    rwkvd_snapstore *st = NULL;
    CHECK(rwkvd_snapstore_open(sub, &io, &st, err, sizeof err) == 0);
    float p[96];
    rwkvd_snapshot s1 = make_snap("c", p, 1);
    CHECK(rwkvd_snapstore_write(st, &s1, err, sizeof err) == 0);
    CHECK(io.n_calls[RWKVD_FSIO_OPEN] == 1 && io.n_calls[RWKVD_FSIO_FSYNC] == 1 &&
          io.n_calls[RWKVD_FSIO_RENAME] == 1 && io.n_calls[RWKVD_FSIO_DIRSYNC] == 1);
    CHECK(rwkvd_snapstore_write(st, &s1, err, sizeof err) == 0);
    CHECK(io.n_calls[RWKVD_FSIO_RENAME] == 3 && io.n_calls[RWKVD_FSIO_FSYNC] == 2 &&
          io.n_calls[RWKVD_FSIO_LINK] == 1);

    /* RWKVD_FAULT-style rules: only this module's apply, from the N-th call on. */
    CHECK(rwkvd_fsio_faults(&io, "snapshot", "wal.write:ENOSPC,snapshot.fsync:EIO@4") == 0);
    CHECK(io.n_rules == 1);
    CHECK(rwkvd_snapstore_write(st, &s1, err, sizeof err) == 0); /* fsync #3 */
    CHECK(rwkvd_snapstore_write(st, &s1, err, sizeof err) == -EIO);
    CHECK(rwkvd_snapstore_write(st, &s1, err, sizeof err) == -EIO);
    rwkvd_snap_gen g;
    CHECK(loaded_gen(st, "c", &g) == 1);
    io.n_rules = 0;
    CHECK(rwkvd_fsio_faults(&io, "snapshot", "snapshot.write:ENOSPC") == 0);
    CHECK(rwkvd_snapstore_write(st, &s1, err, sizeof err) == -ENOSPC);
    CHECK(strstr(err, "No space left"));
    /* N-M: only calls N..M fail (a disk that fills, then has room again) */
    io.n_rules = 0;
    uint64_t w0 = io.n_calls[RWKVD_FSIO_WRITE];
    char spec[64];
    snprintf(spec, sizeof spec, "snapshot.write:ENOSPC@%llu-%llu", (unsigned long long)w0 + 2,
             (unsigned long long)w0 + 3);
    CHECK(rwkvd_fsio_faults(&io, "snapshot", spec) == 0);
    CHECK(rwkvd_fsio_write_all(&io, -1, "x", 1, "p") != -ENOSPC); /* call w0+1: the real write (bad fd) */
    CHECK(rwkvd_fsio_write_all(&io, -1, "x", 1, "p") == -ENOSPC);
    CHECK(rwkvd_fsio_write_all(&io, -1, "x", 1, "p") == -ENOSPC);
    CHECK(rwkvd_fsio_write_all(&io, -1, "x", 1, "p") == -EBADF); /* past M: the call runs again */
    io.n_rules = 0;
    static const char *const bad_specs[] = {
        "snapshot", "snapshot.write", "snapshot.write:", "snapshot.write:EWHAT",
        "snapshot.frob:EIO", "snapshot.write:EIO@0", "snapshot.write:EIO@x", ",",
        "snapshot.write:EIO,", "snapshotwrite:EIO", "snapshot.write:EIO@3-2", "snapshot.write:EIO@3-",
        "snapshot.write:EIO@3-x", "snapshot.write:EIO@-3",
    };
    for (size_t i = 0; i < sizeof bad_specs / sizeof bad_specs[0]; i++)
        CHECKF(rwkvd_fsio_faults(&io, "snapshot", bad_specs[i]) == -EINVAL, "%s", bad_specs[i]);
    CHECK(rwkvd_fsio_faults(&io, "snapshot", NULL) == 0 && rwkvd_fsio_faults(&io, "x", "") == 0);
    CHECK(strcmp(rwkvd_fsio_op_name(RWKVD_FSIO_DIRSYNC), "dirsync") == 0);
    rwkvd_snapstore_destroy(&st);
}

static void test_list_remove(const char *dir)
{
    char err[512], path[4096];
    rwkvd_snapstore *st = NULL;
    CHECK(rwkvd_snapstore_open(dir, NULL, &st, err, sizeof err) == 0);
    if (!st)
        return;
    char longname[129];
    longname[0] = 'L';
    memset(longname + 1, ':', 127);
    longname[128] = 0;
    const char *names[] = {"zeta", "a/b", "%odd%", ".dot", longname, "x_y-z.1"};
    enum { NN = sizeof names / sizeof names[0] };
    float p[96];
    for (int i = 0; i < NN; i++) {
        rwkvd_snapshot s = make_snap(names[i], p, i + 1);
        CHECK(rwkvd_snapstore_write(st, &s, err, sizeof err) == 0);
        rwkvd_snap_gen g;
        CHECKF(loaded_gen(st, names[i], &g) == i + 1, "%s", names[i]);
    }
    /* A channel with only a previous generation is listed too. */
    rwkvd_snapshot s = make_snap("only-prev", p, 9);
    CHECK(rwkvd_snapstore_write(st, &s, err, sizeof err) == 0);
    CHECK(rwkvd_snapstore_write(st, &s, err, sizeof err) == 0);
    rwkvd_snapstore_path(st, "only-prev", RWKVD_SNAP_CUR, path, sizeof path);
    unlink(path);
    /* Strangers are ignored; a leftover temp file goes at the next open. */
    PATHF(path, "%s/README", dir);
    test_write_file(path, "hi", 2);
    PATHF(path, "%s/bad%%zz.snap", dir);
    test_write_file(path, "junk", 4);
    PATHF(path, "%s/x.snap.tmp", dir);
    test_write_file(path, "junk", 4);
    rwkvd_snapstore_destroy(&st);
    CHECK(rwkvd_snapstore_open(dir, NULL, &st, err, sizeof err) == 0);
    CHECK(!file_exists(path));
    char **list = NULL;
    size_t n = 0;
    CHECK(rwkvd_snapstore_list(st, &list, &n) == 0);
    CHECKF(n == NN + 1, "%zu names", n);
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < NN; k++)
            found += strcmp(list[i], names[k]) == 0;
        found += strcmp(list[i], "only-prev") == 0;
        if (i)
            CHECK(strcmp(list[i - 1], list[i]) < 0);
    }
    CHECK(found == NN + 1);
    rwkvd_snapstore_list_free(&list, n);
    CHECK(list == NULL);

    CHECK(rwkvd_snapstore_remove(st, "a/b") == 0);
    CHECK(rwkvd_snapstore_remove(st, "a/b") == 0);
    rwkvd_snap_gen g;
    CHECK(loaded_gen(st, "a/b", &g) == -ENOENT);
    CHECK(rwkvd_snapstore_list(st, &list, &n) == 0 && n == NN);
    rwkvd_snapstore_list_free(&list, n);
    rwkvd_snapstore_destroy(&st);

    /* A directory that cannot be created. */
    PATHF(path, "%s/README/sub", dir);
    CHECK(rwkvd_snapstore_open(path, NULL, &st, err, sizeof err) == -ENOTDIR && !st);
    CHECK(strstr(err, "README/sub"));
}

int main(void)
{
    char dir[4096], sub[4200];
    if (test_tmpdir(dir, sizeof dir) != 0) {
        fprintf(stderr, "no temp dir\n");
        return 1;
    }
    test_sizes();
    test_stems();
    PATHF(sub, "%s/rt", dir);
    test_round_trip(sub);
    PATHF(sub, "%s/extra", dir);
    test_extra(sub);
    PATHF(sub, "%s/corrupt", dir);
    test_corruption(sub);
    PATHF(sub, "%s/faults", dir);
    mkdir(sub, 0700);
    test_faults(sub);
    PATHF(sub, "%s/list", dir);
    test_list_remove(sub);
    int rc = test_finish("test_snapshot");
    if (rc == 0)
        rm_rf(dir);
    return rc;
}
