/* test_wal.c — the input log: append and replay across segments, reopen, a torn tail cut at
 * every byte offset of the last record (and zero tails, torn segment headers), corruption in
 * the middle reported (never skipped), fsync counts under each policy, ENOSPC/EIO and short
 * writes on append, fsync and roll-over, and truncation of whole segments below an LSN. */
#include "durable_test.h"
#include "testutil.h"
#include "wal.h"

#include <inttypes.h>
#include <stdint.h>

/* The record with LSN `lsn` in every log of this test: a function of the LSN alone. */
typedef struct {
    char channel[64], producer[64];
    unsigned char payload[9000];
    rwkvd_wal_rec rec;
} rec_buf;

static void make_rec(rec_buf *b, uint64_t lsn, uint32_t payload_bytes)
{
    snprintf(b->channel, sizeof b->channel, "chan/%" PRIu64 ":x", lsn % 5);
    if (lsn % 3 == 0)
        b->producer[0] = 0;
    else
        snprintf(b->producer, sizeof b->producer, "prod-%" PRIu64, lsn % 4);
    for (uint32_t i = 0; i < payload_bytes; i++)
        b->payload[i] = (unsigned char)(lsn * 31 + i * 7);
    b->rec = (rwkvd_wal_rec){.op = (uint8_t)(1 + lsn % 2), .channel = b->channel,
                             .producer = b->producer, .seq = lsn * 10, .payload = b->payload,
                             .payload_bytes = payload_bytes};
}

static uint32_t size_of(uint64_t lsn)
{
    return (uint32_t)((lsn * 37) % 200);
}

static size_t rec_disk_bytes(uint64_t lsn, uint32_t payload_bytes)
{
    rec_buf b;
    make_rec(&b, lsn, 0);
    return 16 + 20 + strlen(b.channel) + strlen(b.producer) + payload_bytes;
}

static int append_n(rwkvd_wal *w, uint64_t n)
{
    rec_buf b;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t lsn = rwkvd_wal_next_lsn(w), got = 0;
        make_rec(&b, lsn, size_of(lsn));
        int r = rwkvd_wal_append(w, &b.rec, &got);
        if (r < 0)
            return r;
        if (got != lsn)
            return -999;
    }
    return 0;
}

/* Replay from `from`; checks every record against make_rec; returns the count or -errno. */
static long long replay(rwkvd_wal *w, uint64_t from, uint64_t *first, uint64_t *last, char *err,
                        size_t err_len)
{
    rwkvd_wal_iter *it = NULL;
    if (rwkvd_wal_iter_new(w, from, &it) < 0)
        return -ENOMEM;
    rwkvd_wal_rec rec;
    rec_buf b;
    long long n = 0;
    int r;
    uint64_t prev = 0;
    while ((r = rwkvd_wal_iter_next(it, &rec, err, err_len)) == 1) {
        make_rec(&b, rec.lsn, rec.payload_bytes);
        int ok = rec.lsn >= from && (prev == 0 || rec.lsn == prev + 1) &&
                 rec.payload_bytes == size_of(rec.lsn) && rec.op == b.rec.op &&
                 rec.seq == b.rec.seq && strcmp(rec.channel, b.channel) == 0 &&
                 strcmp(rec.producer, b.producer) == 0 &&
                 memcmp(rec.payload, b.payload, rec.payload_bytes) == 0;
        if (!ok) {
            rwkvd_wal_iter_destroy(&it);
            snprintf(err, err_len, "record %" PRIu64 " differs", rec.lsn);
            return -1000;
        }
        if (n == 0 && first)
            *first = rec.lsn;
        if (last)
            *last = rec.lsn;
        prev = rec.lsn;
        n++;
    }
    rwkvd_wal_iter_destroy(&it);
    return r < 0 ? r : n;
}

static void seg_path(char *buf, size_t cap, const char *dir, uint64_t first)
{
    int n = snprintf(buf, cap, "%s/wal-%016" PRIx64 ".log", dir, first);
    if (n < 0 || (size_t)n >= cap)
        exit(1);
}

static void test_parse(void)
{
    rwkvd_wal_fsync p;
    CHECK(rwkvd_wal_fsync_parse("always", &p) == 0 && p == RWKVD_WAL_FSYNC_ALWAYS);
    CHECK(rwkvd_wal_fsync_parse("everysec", &p) == 0 && p == RWKVD_WAL_FSYNC_EVERYSEC);
    CHECK(rwkvd_wal_fsync_parse("no", &p) == 0 && p == RWKVD_WAL_FSYNC_NO);
    CHECK(rwkvd_wal_fsync_parse("sometimes", &p) == -EINVAL);
    CHECK(rwkvd_wal_fsync_parse(NULL, &p) == -EINVAL);
    CHECK(strcmp(rwkvd_wal_fsync_name(RWKVD_WAL_FSYNC_EVERYSEC), "everysec") == 0);
}

static void test_segments(const char *dir)
{
    char err[1024], path[4096];
    rwkvd_wal_opts o = {.fsync = RWKVD_WAL_FSYNC_NO, .segment_bytes = 4096};
    rwkvd_wal *w = NULL;
    rwkvd_wal_recovery rep;
    CHECK(rwkvd_wal_open(dir, &o, &w, &rep, err, sizeof err) == 0);
    if (!w)
        return;
    CHECK(rep.next_lsn == 1 && rep.first_lsn == 1 && rep.n_segments == 1 && rep.torn_bytes == 0);
    CHECK(replay(w, 1, NULL, NULL, err, sizeof err) == 0);
    CHECK(append_n(w, 500) == 0);
    /* One record larger than a segment gets a segment of its own. */
    rec_buf *big = malloc(sizeof *big);
    make_rec(big, 501, 8000);
    CHECK(rwkvd_wal_append(w, &big->rec, NULL) == 0);
    free(big);
    CHECK(rwkvd_wal_n_segments(w) > 10);
    CHECK(rwkvd_wal_next_lsn(w) == 502 && rwkvd_wal_durable_lsn(w) == 501);
    seg_path(path, sizeof path, dir, 1);
    CHECK(file_exists(path) && file_size(path) <= 4096);
    uint64_t first = 0, last = 0;
    /* The big record is checked apart: size_of(501) differs. */
    CHECK(replay(w, 1, &first, &last, err, sizeof err) == -1000);
    CHECK(append_n(w, 20) == 0);
    long long n = replay(w, 1, &first, &last, err, sizeof err);
    CHECKF(n == -1000, "%lld %s", n, err);
    n = replay(w, 502, &first, &last, err, sizeof err);
    CHECK(n == 20 && first == 502 && last == 521);
    n = replay(w, 237, &first, &last, err, sizeof err);
    CHECK(n == -1000); /* reaches 501 */
    rwkvd_wal_iter *it = NULL;
    rwkvd_wal_rec rec;
    CHECK(rwkvd_wal_iter_new(w, 237, &it) == 0);
    uint64_t expect = 237;
    int r, bad = 0;
    while ((r = rwkvd_wal_iter_next(it, &rec, err, sizeof err)) == 1)
        bad += rec.lsn != expect++;
    CHECK(r == 0 && bad == 0 && expect == 522);
    rwkvd_wal_iter_destroy(&it);
    CHECK(replay(w, 10000, NULL, NULL, err, sizeof err) == 0);
    uint32_t nseg = rwkvd_wal_n_segments(w);
    rwkvd_wal_destroy(&w);
    CHECK(w == NULL);
    rwkvd_wal_destroy(&w);

    /* Reopen: same records, same next LSN, nothing cut. */
    CHECK(rwkvd_wal_open(dir, &o, &w, &rep, err, sizeof err) == 0);
    if (!w)
        return;
    CHECK(rep.next_lsn == 522 && rep.torn_bytes == 0 && rep.n_segments == nseg && rep.note[0] == 0);
    CHECK(rwkvd_wal_durable_lsn(w) == 521 && rwkvd_wal_first_lsn(w) == 1);
    CHECK(append_n(w, 3) == 0);
    n = replay(w, 502, &first, &last, err, sizeof err);
    CHECK(n == 23 && last == 524);

    /* Truncation below an LSN: whole segments only, never the one being written. */
    uint32_t removed = 0;
    CHECK(rwkvd_wal_truncate_before(w, 1, &removed) == 0 && removed == 0);
    CHECK(rwkvd_wal_truncate_before(w, 237, &removed) == 0 && removed > 0);
    uint64_t f = rwkvd_wal_first_lsn(w);
    CHECK(f <= 237 && f > 1 && rwkvd_wal_n_segments(w) == nseg - removed);
    seg_path(path, sizeof path, dir, 1);
    CHECK(!file_exists(path));
    CHECK(rwkvd_wal_iter_new(w, 1, &it) == 0);
    CHECK(rwkvd_wal_iter_next(it, &rec, err, sizeof err) == 1 && rec.lsn == f);
    rwkvd_wal_iter_destroy(&it);
    CHECK(rwkvd_wal_truncate_before(w, 100000, &removed) == 0 && rwkvd_wal_n_segments(w) == 1);
    CHECK(append_n(w, 1) == 0 && rwkvd_wal_next_lsn(w) == 526);
    rwkvd_wal_destroy(&w);
    CHECK(rwkvd_wal_open(dir, &o, &w, &rep, err, sizeof err) == 0);
    CHECK(w && rep.n_segments == 1 && rep.next_lsn == 526);
    CHECK(w && replay(w, 0, &first, &last, err, sizeof err) >= 1 && last == 525);

    /* Bad records are refused without using an LSN. */
    rec_buf b;
    make_rec(&b, 1, 10);
    b.rec.channel = "";
    CHECK(rwkvd_wal_append(w, &b.rec, NULL) == -EINVAL);
    b.rec.channel = "c";
    b.rec.payload_bytes = RWKVD_WAL_PAYLOAD_MAX + 1;
    CHECK(rwkvd_wal_append(w, &b.rec, NULL) == -EINVAL);
    CHECK(rwkvd_wal_next_lsn(w) == 526);
    rwkvd_wal_destroy(&w);
}

static void test_first_lsn(const char *dir)
{
    char err[1024];
    rwkvd_wal_opts o = {.fsync = RWKVD_WAL_FSYNC_ALWAYS, .first_lsn = 1000};
    rwkvd_wal *w = NULL;
    rwkvd_wal_recovery rep;
    CHECK(rwkvd_wal_open(dir, &o, &w, &rep, err, sizeof err) == 0);
    CHECK(w && rep.next_lsn == 1000 && rwkvd_wal_durable_lsn(w) == 999);
    rwkvd_wal_destroy(&w);
    o.first_lsn = 0; /* an existing log keeps its LSNs */
    CHECK(rwkvd_wal_open(dir, &o, &w, &rep, err, sizeof err) == 0);
    CHECK(w && rep.next_lsn == 1000);
    rwkvd_wal_destroy(&w);
}

/* Build a one-segment log of n records in dir; returns the file size, *last_start = offset
 * of the last record. */
static long long build(const char *dir, uint64_t n, long long *last_start)
{
    char err[1024], path[4096];
    rm_rf(dir);
    rwkvd_wal_opts o = {.fsync = RWKVD_WAL_FSYNC_NO};
    rwkvd_wal *w = NULL;
    if (rwkvd_wal_open(dir, &o, &w, NULL, err, sizeof err) < 0 || append_n(w, n) < 0)
        return -1;
    rwkvd_wal_destroy(&w);
    seg_path(path, sizeof path, dir, 1);
    long long size = file_size(path);
    *last_start = size - (long long)rec_disk_bytes(n, size_of(n));
    return size;
}

static void test_torn(const char *dir)
{
    char err[1024], path[4096];
    long long start = 0, size = build(dir, 30, &start);
    seg_path(path, sizeof path, dir, 1);
    size_t len = 0;
    char *good = test_read_file(path, &len);
    CHECK(size > 0 && good && (long long)len == size && start > 0);
    if (!good)
        return;
    rwkvd_wal_opts o = {.fsync = RWKVD_WAL_FSYNC_ALWAYS};
    int wrong = 0;
    for (long long cut = start; cut <= size; cut++) {
        test_write_file(path, good, (size_t)cut);
        rwkvd_wal *w = NULL;
        rwkvd_wal_recovery rep;
        int r = rwkvd_wal_open(dir, &o, &w, &rep, err, sizeof err);
        uint64_t want_next = cut == size ? 31 : 30;
        long long want_torn = cut == size ? 0 : cut - start;
        uint64_t last = 0;
        if (r != 0 || rep.next_lsn != want_next || (long long)rep.torn_bytes != want_torn ||
            file_size(path) != (cut == size ? size : start) ||
            replay(w, 1, NULL, &last, err, sizeof err) != (long long)want_next - 1 ||
            (want_torn && !strstr(rep.note, "torn tail")) || rwkvd_wal_durable_lsn(w) != want_next - 1) {
            wrong++;
            fprintf(stderr, "cut %lld: r=%d next=%" PRIu64 " torn=%" PRIu64 " %s\n", cut, r,
                    rep.next_lsn, rep.torn_bytes, err);
        }
        /* The log goes on from there, without a gap. */
        if (w && (append_n(w, 2) != 0 || replay(w, 1, NULL, &last, err, sizeof err) !=
                                             (long long)want_next + 1))
            wrong++;
        rwkvd_wal_destroy(&w);
    }
    CHECKF(wrong == 0, "%d cut points mishandled", wrong);

    /* A whole-length last record with a damaged byte, and a tail of zeros: torn too. */
    for (long long at = start; at < size; at += 7) {
        char *img = malloc(len);
        memcpy(img, good, len);
        img[at] ^= 0x40;
        test_write_file(path, img, len);
        free(img);
        rwkvd_wal *w = NULL;
        rwkvd_wal_recovery rep;
        int r = rwkvd_wal_open(dir, &o, &w, &rep, err, sizeof err);
        CHECKF(r == 0 && rep.next_lsn == 30 && (long long)rep.torn_bytes == size - start,
               "damage at %lld: r=%d %s", at, r, err);
        rwkvd_wal_destroy(&w);
    }
    char *zeros = calloc(1, len + 5000);
    memcpy(zeros, good, len);
    test_write_file(path, zeros, len + 5000);
    free(zeros);
    rwkvd_wal *w = NULL;
    rwkvd_wal_recovery rep;
    CHECK(rwkvd_wal_open(dir, &o, &w, &rep, err, sizeof err) == 0 && rep.next_lsn == 31 &&
          rep.torn_bytes == 5000 && file_size(path) == size);
    rwkvd_wal_destroy(&w);

    /* A segment cut while being created (roll-over crash): removed, the log goes on. */
    char path2[4096];
    seg_path(path2, sizeof path2, dir, 31);
    test_write_file(path2, "RWKVWLOG\1\0", 10);
    CHECK(rwkvd_wal_open(dir, &o, &w, &rep, err, sizeof err) == 0 && rep.next_lsn == 31 &&
          rep.torn_bytes == 10 && !file_exists(path2) && strstr(rep.note, "header"));
    CHECK(w && append_n(w, 1) == 0 && replay(w, 1, NULL, NULL, err, sizeof err) == 31);
    rwkvd_wal_destroy(&w);
    /* ... also when it was the only segment: its LSN is kept. */
    rm_rf(dir);
    mkdir(dir, 0700);
    seg_path(path2, sizeof path2, dir, 77);
    test_write_file(path2, "", 0);
    CHECK(rwkvd_wal_open(dir, &o, &w, &rep, err, sizeof err) == 0 && rep.next_lsn == 77 &&
          rep.first_lsn == 77);
    rwkvd_wal_destroy(&w);
    free(good);
}

static void test_corrupt(const char *dir)
{
    char err[1024], path[4096];
    rwkvd_wal_opts o = {.fsync = RWKVD_WAL_FSYNC_NO};
    long long start = 0, size = build(dir, 30, &start);
    seg_path(path, sizeof path, dir, 1);
    size_t len = 0;
    char *good = test_read_file(path, &len);
    if (!good || size <= 0) {
        CHECK(0);
        return;
    }
    /* Every byte of record 3 (followed by 27 whole records) damaged: EBADMSG, nothing cut. */
    size_t r3 = 32 + rec_disk_bytes(1, size_of(1)) + rec_disk_bytes(2, size_of(2));
    size_t r3_len = rec_disk_bytes(3, size_of(3));
    int wrong = 0;
    for (size_t at = r3; at < r3 + r3_len; at++) {
        good[at] ^= 0x5A;
        test_write_file(path, good, len);
        good[at] ^= 0x5A;
        rwkvd_wal *w = NULL;
        int r = rwkvd_wal_open(dir, &o, &w, NULL, err, sizeof err);
        char off[32];
        snprintf(off, sizeof off, "offset %zu", r3);
        if (r != -EBADMSG || w || !strstr(err, path) || !strstr(err, off) ||
            !strstr(err, "corruption") || file_size(path) != size) {
            wrong++;
            fprintf(stderr, "damage at %zu: r=%d %s\n", at, r, err);
        }
        rwkvd_wal_destroy(&w);
    }
    CHECKF(wrong == 0, "%d damaged bytes of a middle record mishandled", wrong);
    /* Damaged segment header followed by records: corruption, not a torn header. */
    good[20] ^= 1;
    test_write_file(path, good, len);
    rwkvd_wal *w = NULL;
    CHECK(rwkvd_wal_open(dir, &o, &w, NULL, err, sizeof err) == -EBADMSG && strstr(err, "offset 0"));
    good[20] ^= 1;
    test_write_file(path, good, len);
    free(good);

    /* In a sealed segment the damage surfaces during replay, after the records before it. */
    rm_rf(dir);
    o.segment_bytes = 4096;
    CHECK(rwkvd_wal_open(dir, &o, &w, NULL, err, sizeof err) == 0);
    if (!w)
        return;
    CHECK(append_n(w, 200) == 0);
    CHECK(rwkvd_wal_n_segments(w) >= 4);
    rwkvd_wal_destroy(&w);
    seg_path(path, sizeof path, dir, 1);
    good = test_read_file(path, &len);
    size_t r2 = 32 + rec_disk_bytes(1, size_of(1));
    good[r2 + 20] ^= 1;
    test_write_file(path, good, len);
    CHECK(rwkvd_wal_open(dir, &o, &w, NULL, err, sizeof err) == 0);
    uint64_t last = 0;
    rwkvd_wal_iter *it = NULL;
    rwkvd_wal_rec rec;
    CHECK(w && rwkvd_wal_iter_new(w, 1, &it) == 0);
    CHECK(it && rwkvd_wal_iter_next(it, &rec, err, sizeof err) == 1 && rec.lsn == 1);
    CHECK(it && rwkvd_wal_iter_next(it, &rec, err, sizeof err) == -EBADMSG);
    CHECK(strstr(err, path) && strstr(err, "crc"));
    rwkvd_wal_iter_destroy(&it);
    good[r2 + 20] ^= 1;
    /* Trailing bytes after the last record of a sealed segment: corruption too. */
    char *longer = calloc(1, len + 3);
    memcpy(longer, good, len);
    test_write_file(path, longer, len + 3);
    free(longer);
    CHECK(replay(w, 1, NULL, &last, err, sizeof err) == -EBADMSG && strstr(err, path));
    test_write_file(path, good, len);
    CHECK(replay(w, 1, NULL, &last, err, sizeof err) == 200);
    free(good);
    /* A sealed segment missing in the middle: a gap in the LSNs. */
    rwkvd_wal_destroy(&w);
    CHECK(rwkvd_wal_open(dir, &o, &w, NULL, err, sizeof err) == 0);
    rwkvd_wal_destroy(&w);
    DIR *d = opendir(dir);
    char names[64][64];
    int nn = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) && nn < 64)
        if (strncmp(de->d_name, "wal-", 4) == 0)
            snprintf(names[nn++], sizeof names[0], "%.60s", de->d_name);
    if (d)
        closedir(d);
    qsort(names, (size_t)nn, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    CHECK(nn >= 4);
    PATHF(path, "%s/%s", dir, names[1]);
    unlink(path);
    CHECK(rwkvd_wal_open(dir, &o, &w, NULL, err, sizeof err) == 0);
    long long n = replay(w, 1, NULL, &last, err, sizeof err);
    CHECKF(n == -EBADMSG && strstr(err, "missing"), "%lld %s", n, err);
    rwkvd_wal_destroy(&w);
    /* A sealed segment's damaged header is found at open. */
    PATHF(path, "%s/%s", dir, names[2]);
    test_write_file(path, "RWKVWLOG", 8);
    CHECK(rwkvd_wal_open(dir, &o, &w, NULL, err, sizeof err) == -EBADMSG && strstr(err, names[2]));
}

static void test_policies(const char *dir)
{
    char err[1024], sub[4200];
    for (int p = 0; p < 3; p++) {
        PATHF(sub, "%s/p%d", dir, p);
        rwkvd_fsio io = {.module = "wal"};
        rwkvd_wal_opts o = {.fsync = (rwkvd_wal_fsync)p, .io = &io};
        rwkvd_wal *w = NULL;
        CHECK(rwkvd_wal_open(sub, &o, &w, NULL, err, sizeof err) == 0);
        if (!w)
            continue;
        uint64_t base = io.n_calls[RWKVD_FSIO_FSYNC];
        CHECK(base == (p == RWKVD_WAL_FSYNC_NO ? 0 : 1)); /* the new segment */
        uint64_t f0 = base;
#define FSYNCS (io.n_calls[RWKVD_FSIO_FSYNC] - f0)
        if (p == RWKVD_WAL_FSYNC_ALWAYS) {
            for (int i = 0; i < 10; i++) {
                CHECK(append_n(w, 1) == 0);
                CHECK(rwkvd_wal_durable_lsn(w) == (uint64_t)i);
                CHECK(rwkvd_wal_commit(w) == 0);
                CHECK(rwkvd_wal_durable_lsn(w) == (uint64_t)i + 1);
            }
            CHECK(FSYNCS == 10);
            CHECK(append_n(w, 5) == 0 && rwkvd_wal_commit(w) == 0); /* group commit */
            CHECK(FSYNCS == 11 && rwkvd_wal_durable_lsn(w) == 15);
            CHECK(rwkvd_wal_commit(w) == 0 && FSYNCS == 11); /* nothing pending */
            CHECK(rwkvd_wal_tick(w, 5000000000u) == 0 && FSYNCS == 11);
            CHECK(rwkvd_wal_next_tick_ns(w) == 0);
        } else if (p == RWKVD_WAL_FSYNC_EVERYSEC) {
            CHECK(rwkvd_wal_next_tick_ns(w) == 0);
            CHECK(append_n(w, 3) == 0 && rwkvd_wal_commit(w) == 0);
            CHECK(FSYNCS == 0 && rwkvd_wal_durable_lsn(w) == 0);
            CHECK(rwkvd_wal_next_tick_ns(w) != 0);
            uint64_t t = 10000000000u;
            CHECK(rwkvd_wal_tick(w, t) == 0 && FSYNCS == 1 && rwkvd_wal_durable_lsn(w) == 3);
            CHECK(rwkvd_wal_tick(w, t + 1) == 0 && FSYNCS == 1); /* nothing pending */
            CHECK(append_n(w, 2) == 0);
            CHECK(rwkvd_wal_next_tick_ns(w) == t + 1000000000u);
            CHECK(rwkvd_wal_tick(w, t + 500000000u) == 0 && FSYNCS == 1);
            CHECK(rwkvd_wal_durable_lsn(w) == 3);
            CHECK(rwkvd_wal_tick(w, t + 1000000000u) == 0 && FSYNCS == 2);
            CHECK(rwkvd_wal_durable_lsn(w) == 5);
            for (int i = 0; i < 100; i++) /* a busy second: one fsync */
                CHECK(append_n(w, 1) == 0 && rwkvd_wal_tick(w, t + 1000000000u + (uint64_t)i * 9000000u) == 0);
            CHECK(FSYNCS == 2 && rwkvd_wal_durable_lsn(w) == 5);
            CHECK(rwkvd_wal_tick(w, t + 2000000000u) == 0 && FSYNCS == 3);
            CHECK(rwkvd_wal_durable_lsn(w) == 105);
        } else {
            CHECK(append_n(w, 50) == 0);
            CHECK(rwkvd_wal_durable_lsn(w) == 50);
            CHECK(rwkvd_wal_commit(w) == 0 && rwkvd_wal_tick(w, 1) == 0 &&
                  rwkvd_wal_tick(w, 5000000000u) == 0);
            CHECK(FSYNCS == 0 && io.n_calls[RWKVD_FSIO_DIRSYNC] == 0);
        }
        /* An explicit sync works under every policy. */
        CHECK(append_n(w, 1) == 0);
        uint64_t before = FSYNCS;
        CHECK(rwkvd_wal_sync(w) == 0 && FSYNCS == before + 1);
        CHECK(rwkvd_wal_durable_lsn(w) == rwkvd_wal_next_lsn(w) - 1);
#undef FSYNCS
        rwkvd_wal_destroy(&w);
    }
}

static void test_faults(const char *dir)
{
    char err[1024], sub[4200], path[4096];
    static const int errs[] = {ENOSPC, EIO};
    /* A failing write: error returned, nothing of the record left, LSN reused afterwards. */
    for (int e = 0; e < 2; e++)
        for (int shortw = 0; shortw < 2; shortw++) {
            PATHF(sub, "%s/w%d%d", dir, e, shortw);
            fault_plan plan = {0};
            rwkvd_fsio io = {.hook = fault_hook, .ctx = &plan, .module = "wal"};
            rwkvd_wal_opts o = {.fsync = RWKVD_WAL_FSYNC_ALWAYS, .io = &io};
            rwkvd_wal *w = NULL;
            CHECK(rwkvd_wal_open(sub, &o, &w, NULL, err, sizeof err) == 0);
            if (!w)
                continue;
            CHECK(append_n(w, 10) == 0 && rwkvd_wal_commit(w) == 0);
            seg_path(path, sizeof path, sub, 1);
            long long size = file_size(path);
            fault_arm(&plan, RWKVD_FSIO_WRITE, 1, errs[e], shortw ? 20 : 0);
            CHECK(append_n(w, 1) == -errs[e]);
            CHECK(file_size(path) == size && rwkvd_wal_next_lsn(w) == 11);
            CHECK(rwkvd_wal_durable_lsn(w) == 10 && rwkvd_wal_failed(w) == 0);
            CHECK(rwkvd_wal_commit(w) == 0);
            plan.armed = 0;
            CHECK(append_n(w, 2) == 0 && rwkvd_wal_commit(w) == 0 && rwkvd_wal_durable_lsn(w) == 12);
            CHECK(replay(w, 1, NULL, NULL, err, sizeof err) == 12);
            rwkvd_wal_destroy(&w);
            rwkvd_wal_recovery rep;
            CHECK(rwkvd_wal_open(sub, &o, &w, &rep, err, sizeof err) == 0 && rep.torn_bytes == 0 &&
                  rep.next_lsn == 13);
            rwkvd_wal_destroy(&w);
        }
    /* A failing fsync: durable LSN stays, the log refuses further work until reopened, and
     * the reopened log has every whole record. */
    for (int e = 0; e < 2; e++) {
        PATHF(sub, "%s/f%d", dir, e);
        fault_plan plan = {0};
        rwkvd_fsio io = {.hook = fault_hook, .ctx = &plan, .module = "wal"};
        rwkvd_wal_opts o = {.fsync = RWKVD_WAL_FSYNC_ALWAYS, .io = &io};
        rwkvd_wal *w = NULL;
        CHECK(rwkvd_wal_open(sub, &o, &w, NULL, err, sizeof err) == 0);
        if (!w)
            continue;
        CHECK(append_n(w, 4) == 0 && rwkvd_wal_commit(w) == 0);
        fault_arm(&plan, RWKVD_FSIO_FSYNC, 1, errs[e], 0);
        CHECK(append_n(w, 2) == 0);
        CHECK(rwkvd_wal_commit(w) == -errs[e]);
        CHECK(rwkvd_wal_durable_lsn(w) == 4 && rwkvd_wal_failed(w) == -errs[e]);
        plan.armed = 0;
        CHECK(rwkvd_wal_commit(w) == -errs[e] && rwkvd_wal_sync(w) == -errs[e]);
        CHECK(append_n(w, 1) == -errs[e] && rwkvd_wal_durable_lsn(w) == 4);
        rwkvd_wal_destroy(&w);
        CHECK(rwkvd_wal_open(sub, &o, &w, NULL, err, sizeof err) == 0);
        CHECK(w && rwkvd_wal_next_lsn(w) == 7 && rwkvd_wal_durable_lsn(w) == 6);
        rwkvd_wal_destroy(&w);
    }
    /* Failures while rolling over to a new segment: the append fails, the log goes on. */
    static const rwkvd_fsio_op roll_ops[] = {RWKVD_FSIO_OPEN, RWKVD_FSIO_WRITE, RWKVD_FSIO_FSYNC,
                                             RWKVD_FSIO_DIRSYNC};
    for (size_t k = 0; k < 4; k++) {
        PATHF(sub, "%s/r%zu", dir, k);
        fault_plan plan = {0};
        rwkvd_fsio io = {.hook = fault_hook, .ctx = &plan, .module = "wal"};
        rwkvd_wal_opts o = {.fsync = RWKVD_WAL_FSYNC_EVERYSEC, .segment_bytes = 4096, .io = &io};
        rwkvd_wal *w = NULL;
        CHECK(rwkvd_wal_open(sub, &o, &w, NULL, err, sizeof err) == 0);
        if (!w)
            continue;
        while (rwkvd_wal_n_segments(w) == 1 && append_n(w, 1) == 0)
            ;
        rwkvd_wal_destroy(&w);
        rm_rf(sub);
        CHECK(rwkvd_wal_open(sub, &o, &w, NULL, err, sizeof err) == 0);
        uint64_t fits = 0; /* records that fit in the first segment */
        while (rwkvd_wal_n_segments(w) == 1) {
            CHECK(append_n(w, 1) == 0);
            fits++;
        }
        rwkvd_wal_destroy(&w);
        rm_rf(sub);
        CHECK(rwkvd_wal_open(sub, &o, &w, NULL, err, sizeof err) == 0);
        CHECK(append_n(w, fits - 1) == 0 && rwkvd_wal_n_segments(w) == 1);
        /* The roll's fsync of the full segment comes first; fail the new segment's steps. */
        int nth = roll_ops[k] == RWKVD_FSIO_FSYNC ? 2 : 1;
        fault_arm(&plan, roll_ops[k], nth, ENOSPC, 0);
        int r = append_n(w, 1);
        CHECKF(r == -ENOSPC && plan.fired == 1, "roll op %zu: r=%d", k, r);
        CHECK(rwkvd_wal_n_segments(w) == 1 && rwkvd_wal_failed(w) == 0);
        CHECK(count_suffix(sub, ".log") == 1);
        plan.armed = 0;
        CHECK(append_n(w, 1) == 0 && rwkvd_wal_n_segments(w) == 2);
        CHECK(replay(w, 1, NULL, NULL, err, sizeof err) == (long long)fits);
        rwkvd_wal_destroy(&w);
    }
    /* The cut after a failed write fails too: the log turns read-only (EIO). */
    PATHF(sub, "%s/t", dir);
    rwkvd_fsio io = {.module = "wal"};
    CHECK(rwkvd_fsio_faults(&io, "wal", "wal.write:ENOSPC@3,wal.truncate:EIO") == 0);
    rwkvd_wal_opts o = {.fsync = RWKVD_WAL_FSYNC_NO, .io = &io};
    rwkvd_wal *w = NULL;
    CHECK(rwkvd_wal_open(sub, &o, &w, NULL, err, sizeof err) == 0); /* write 1: header */
    if (!w)
        return;
    CHECK(append_n(w, 1) == 0);                                     /* write 2 */
    CHECK(append_n(w, 1) == -ENOSPC && rwkvd_wal_failed(w) == -EIO);
    CHECK(append_n(w, 1) == -EIO && rwkvd_wal_durable_lsn(w) == 1);
    rwkvd_wal_destroy(&w);
    /* RWKVD_FAULT-style fsync rule. */
    PATHF(sub, "%s/env", dir);
    rwkvd_fsio io2 = {.module = "wal"};
    CHECK(rwkvd_fsio_faults(&io2, "wal", "wal.fsync:EIO@3") == 0);
    o = (rwkvd_wal_opts){.fsync = RWKVD_WAL_FSYNC_ALWAYS, .io = &io2};
    CHECK(rwkvd_wal_open(sub, &o, &w, NULL, err, sizeof err) == 0); /* fsync 1: header */
    CHECK(w && append_n(w, 1) == 0 && rwkvd_wal_commit(w) == 0);    /* fsync 2 */
    CHECK(w && append_n(w, 1) == 0 && rwkvd_wal_commit(w) == -EIO);
    CHECK(w && rwkvd_wal_durable_lsn(w) == 1);
    rwkvd_wal_destroy(&w);
}

int main(void)
{
    char dir[4096], sub[4200];
    if (test_tmpdir(dir, sizeof dir) != 0) {
        fprintf(stderr, "no temp dir\n");
        return 1;
    }
    test_parse();
    PATHF(sub, "%s/seg", dir);
    test_segments(sub);
    PATHF(sub, "%s/first", dir);
    test_first_lsn(sub);
    PATHF(sub, "%s/torn", dir);
    test_torn(sub);
    PATHF(sub, "%s/corrupt", dir);
    test_corrupt(sub);
    PATHF(sub, "%s/pol", dir);
    mkdir(sub, 0700);
    test_policies(sub);
    PATHF(sub, "%s/faults", dir);
    mkdir(sub, 0700);
    test_faults(sub);
    int rc = test_finish("test_wal");
    if (rc == 0)
        rm_rf(dir);
    return rc;
}
