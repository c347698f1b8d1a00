/* rwkvd-durable-bench — throughput of the durable-state modules on the file system of --dir:
 * crc32c, snapshot write (atomic: tmp, fsync, rename, fsync dir) and load of 0.1B-shaped
 * states (2,433,024 bytes), and WAL append cost per record under each fsync policy.
 * The floors: a snapshot write cannot beat the device's sequential write + fsync latency, a
 * WAL append under `always` one fdatasync per commit; `no` and `everysec` cost a write(2).
 * Usage: rwkvd-durable-bench [--dir DIR] [--channels N] [--records N] [--payload BYTES] */
#include "crc32c.h"
#include "snapshot.h"
#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    char p[8192];
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (snprintf(p, sizeof p, "%s/%s", dir, de->d_name) >= (int)sizeof p)
            continue;
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static const char *fs_name(const char *dir)
{
    struct statfs sf;
    if (statfs(dir, &sf) != 0)
        return "?";
    switch ((unsigned long)sf.f_type) {
    case 0xEF53: return "ext4";
    case 0x01021994: return "tmpfs (fsync is free: figures are not disk figures)";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x794c7630: return "overlayfs";
    default: return "other";
    }
}

int main(int argc, char **argv)
{
    const char *base = ".";
    int n_channels = 32;
    long n_records = 20000;
    uint32_t payload = 64; /* 16 token ids */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            base = argv[++i];
        else if (!strcmp(argv[i], "--channels") && i + 1 < argc)
            n_channels = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--records") && i + 1 < argc)
            n_records = atol(argv[++i]);
        else if (!strcmp(argv[i], "--payload") && i + 1 < argc)
            payload = (uint32_t)atol(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--dir DIR] [--channels N] [--records N] [--payload BYTES]\n",
                    argv[0]);
            return 2;
        }
    }
    if (n_channels < 1 || n_records < 1 || payload > RWKVD_WAL_PAYLOAD_MAX)
        return 2;
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s/rwkvd-durable-bench.XXXXXX", base) >= (int)sizeof dir ||
        !mkdtemp(dir)) {
        fprintf(stderr, "%s: cannot create a temp dir: %s\n", base, strerror(errno));
        return 1;
    }
    printf("dir %s (%s)\n", dir, fs_name(dir));

    /* crc32c */
    size_t clen = 64u << 20;
    unsigned char *cbuf = malloc(clen);
    for (size_t i = 0; i < clen; i++)
        cbuf[i] = (unsigned char)(i * 2654435761u >> 13);
    double t = now_s();
    uint32_t c = rwkvd_crc32c(0, cbuf, clen);
    double hw = now_s() - t;
    t = now_s();
    uint32_t c2 = rwkvd_crc32c_sw(0, cbuf, clen);
    double sw = now_s() - t;
    printf("crc32c: %s %.2f GB/s, slice8 %.2f GB/s%s\n", rwkvd_crc32c_impl(), clen / hw / 1e9,
           clen / sw / 1e9, c == c2 ? "" : " (MISMATCH)");
    free(cbuf);

    /* snapshots of the 0.1B shape */
    rwkvd_snap_model m = {.fingerprint = 0x5eed, .n_layer = 12, .n_embd = 768, .n_head = 12,
                          .head_size = 64, .n_vocab = 65536};
    uint64_t sbytes = rwkvd_snap_state_bytes(&m);
    float *state = malloc(sbytes);
    for (uint64_t i = 0; i < sbytes / 4; i++)
        state[i] = (float)i * 1e-3f;
    rwkvd_snap_producer prods[2] = {{"producer-a", 123}, {"producer-b", 456}};
    char sdir[4200], err[512], name[64];
    snprintf(sdir, sizeof sdir, "%s/snap", dir);
    rwkvd_snapstore *st = NULL;
    if (rwkvd_snapstore_open(sdir, NULL, &st, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    for (int pass = 0; pass < 2; pass++) { /* pass 1 also moves .snap to .prev */
        t = now_s();
        for (int i = 0; i < n_channels; i++) {
            snprintf(name, sizeof name, "bench/channel:%d", i);
            rwkvd_snapshot s = {.model = m, .layout = RWKVD_SNAP_LAYOUT_V1,
                                .dtype = RWKVD_SNAP_DTYPE_F32, .channel = name,
                                .tokens_seen = 1000, .n_producers = 2, .producers = prods,
                                .payload = state, .payload_bytes = sbytes};
            if (rwkvd_snapstore_write(st, &s, err, sizeof err) < 0) {
                fprintf(stderr, "%s\n", err);
                return 1;
            }
        }
        double dt = now_s() - t;
        printf("snapshot write (%s generation), %d x %" PRIu64 " B: %.2f ms/snapshot, %.0f MB/s, "
               "%.0f channels/s\n", pass ? "second" : "first", n_channels, sbytes,
               dt / n_channels * 1e3, (double)sbytes * n_channels / dt / 1e6, n_channels / dt);
    }
    t = now_s();
    for (int i = 0; i < n_channels; i++) {
        snprintf(name, sizeof name, "bench/channel:%d", i);
        rwkvd_snapshot *s = NULL;
        if (rwkvd_snapstore_load(st, name, &m, &s, NULL, err, sizeof err) < 0) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        rwkvd_snapshot_destroy(&s);
    }
    double dt = now_s() - t;
    printf("snapshot load (page cache, full validation): %.2f ms/snapshot, %.0f MB/s, "
           "%.0f channels/s\n", dt / n_channels * 1e3, (double)sbytes * n_channels / dt / 1e6,
           n_channels / dt);
    rwkvd_snapstore_destroy(&st);
    free(state);

    /* WAL appends */
    unsigned char *pl = calloc(1, payload ? payload : 1);
    static const struct {
        rwkvd_wal_fsync p;
        int batch; /* commit every `batch` appends */
    } runs[] = {{RWKVD_WAL_FSYNC_NO, 1}, {RWKVD_WAL_FSYNC_EVERYSEC, 1},
                {RWKVD_WAL_FSYNC_ALWAYS, 1}, {RWKVD_WAL_FSYNC_ALWAYS, 64}};
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
        char wdir[4200];
        snprintf(wdir, sizeof wdir, "%s/wal%zu", dir, k);
        rwkvd_fsio io = {.module = "wal"};
        rwkvd_wal_opts o = {.fsync = runs[k].p, .io = &io};
        rwkvd_wal *w = NULL;
        if (rwkvd_wal_open(wdir, &o, &w, NULL, err, sizeof err) < 0) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        long n = runs[k].p == RWKVD_WAL_FSYNC_ALWAYS && runs[k].batch == 1 ? n_records / 10 : n_records;
        uint64_t f0 = io.n_calls[RWKVD_FSIO_FSYNC];
        t = now_s();
        for (long i = 0; i < n; i++) {
            rwkvd_wal_rec r = {.op = RWKVD_WAL_OP_TOKENS, .channel = "bench/channel:1",
                               .producer = "producer-a", .seq = (uint64_t)i + 1, .payload = pl,
                               .payload_bytes = payload};
            if (rwkvd_wal_append(w, &r, NULL) < 0 ||
                ((i + 1) % runs[k].batch == 0 && rwkvd_wal_commit(w) < 0) ||
                rwkvd_wal_tick(w, now_ns()) < 0) {
                fprintf(stderr, "wal append failed\n");
                return 1;
            }
        }
        rwkvd_wal_commit(w);
        dt = now_s() - t;
        printf("wal append, %u-byte payload, fsync %-8s commit every %2d: %7.2f us/record, "
               "%9.0f records/s, %" PRIu64 " fsyncs\n", payload, rwkvd_wal_fsync_name(runs[k].p),
               runs[k].batch, dt / n * 1e6, n / dt, io.n_calls[RWKVD_FSIO_FSYNC] - f0);
        /* replay speed on the way */
        if (k == 0) {
            rwkvd_wal_iter *it = NULL;
            rwkvd_wal_rec r;
            long cnt = 0;
            t = now_s();
            rwkvd_wal_iter_new(w, 0, &it);
            while (rwkvd_wal_iter_next(it, &r, err, sizeof err) == 1)
                cnt++;
            rwkvd_wal_iter_destroy(&it);
            dt = now_s() - t;
            printf("wal replay: %.2f us/record (%ld records)\n", dt / cnt * 1e6, cnt);
        }
        rwkvd_wal_destroy(&w);
    }
    free(pl);
    rm_tree(dir);
    return 0;
}
