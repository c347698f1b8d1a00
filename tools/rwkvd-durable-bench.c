/* rwkvd-durable-bench — figures for the durable state on the file system of --dir,
 * for 0.1B-shaped states (L12 C768 H12 N64: 2,433,024 bytes per channel), each the median of
 * --runs runs:
 *  - crc32c throughput (every snapshot byte is checksummed on write and load);
 *  - snapshot write through the store (header + payload + crc, fsync, renames, directory
 *    fsync): ms per snapshot, MB/s, channels/s;
 *  - snapshot load with full validation, from the page cache and cold (the files' pages
 *    dropped with posix_fadvise first; the device, not the cache);
 *  - WAL append cost per record and per token, 16 and 256 tokens per record, under fsync
 *    no / everysec / always (one commit per record, and group commit per 64 records);
 *  - recovery of --recovery-channels channels: list the store, load and validate every
 *    newest snapshot and copy its state out (the daemon imports it into a slot), open the WAL
 *    (torn-tail scan) and read a tail of --tail-records records; warm and cold.
 * What it is not: the daemon (no engine, no model: the state bytes are synthetic, which the
 * store does not look at) nor a test; figures depend on the device and on what else runs.
 * Usage: rwkvd-durable-bench [--dir DIR] [--runs N] [--channels N] [--records N]
 *                            [--recovery-channels N] [--tail-records N] [--no-cold] */
#include "crc32c.h"
#include "snapshot.h"
#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS 32

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

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what)
{
    fprintf(stderr, "rwkvd-durable-bench: %s\n", what);
    exit(1);
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

/* Drop a directory's file pages from the page cache (they are clean: written and fsynced). */
static void drop_cache(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    char p[8192];
    while ((de = readdir(d))) {
        if (snprintf(p, sizeof p, "%s/%s", dir, de->d_name) >= (int)sizeof p)
            continue;
        int fd = open(p, O_RDONLY);
        if (fd < 0)
            continue;
        fdatasync(fd);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
    closedir(d);
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

static void print_machine(const char *dir)
{
    char cpu[512] = "?", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            const char *c = strchr(line, ':');
            snprintf(cpu, sizeof cpu, "%s", c ? c + 2 : line);
            cpu[strcspn(cpu, "\n")] = '\0';
            break;
        }
    if (f)
        fclose(f);
    struct utsname u;
    uname(&u);
    long mem = sysconf(_SC_PHYS_PAGES) * (sysconf(_SC_PAGESIZE) / 1024) / 1024;
    printf("machine: %s, %ld cores online, %ld MiB RAM, Linux %s; %s on %s\n", cpu,
           sysconf(_SC_NPROCESSORS_ONLN), mem, u.release, dir, fs_name(dir));
}

static const rwkvd_snap_model MODEL = {.fingerprint = 0x5eed, .n_layer = 12, .n_embd = 768,
                                       .n_head = 12, .head_size = 64, .n_vocab = 65536};

static void write_snapshots(rwkvd_snapstore *st, int n, const float *state, uint64_t bytes,
                            uint64_t lsn)
{
    static rwkvd_snap_producer prods[2] = {{"producer-a", 123}, {"producer-b", 456}};
    char name[64], err[512];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "bench/channel:%d", i);
        rwkvd_snapshot s = {.model = MODEL, .layout = RWKVD_SNAP_LAYOUT_V1,
                            .dtype = RWKVD_SNAP_DTYPE_F32, .channel = name, .tokens_seen = 1000,
                            .applied_lsn = lsn, .n_producers = 2, .producers = prods,
                            .payload = state, .payload_bytes = bytes};
        if (rwkvd_snapstore_write(st, &s, err, sizeof err) < 0)
            die(err);
    }
}

static void load_snapshots(rwkvd_snapstore *st, int n, float *out, uint64_t bytes)
{
    char name[64], err[1200];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "bench/channel:%d", i);
        rwkvd_snapshot *s = NULL;
        if (rwkvd_snapstore_load(st, name, &MODEL, &s, NULL, err, sizeof err) < 0)
            die(err);
        memcpy(out, s->payload, bytes);
        rwkvd_snapshot_destroy(&s);
    }
}

/* Append n records of `tokens` token ids, committing every `batch`; seconds and fsyncs. */
static double wal_run(const char *wdir, rwkvd_wal_fsync policy, int batch, long n, uint32_t tokens,
                      uint64_t *fsyncs)
{
    static unsigned char pl[256 * 4];
    char err[512];
    rwkvd_fsio io = {.module = "wal"};
    rwkvd_wal_opts o = {.fsync = policy, .io = &io};
    rwkvd_wal *w = NULL;
    if (rwkvd_wal_open(wdir, &o, &w, NULL, err, sizeof err) < 0)
        die(err);
    uint64_t f0 = io.n_calls[RWKVD_FSIO_FSYNC];
    double t = now_s();
    for (long i = 0; i < n; i++) {
        rwkvd_wal_rec r = {.op = 2, .channel = "bench/channel:1", .producer = "producer-a",
                           .seq = (uint64_t)i + 1, .payload = pl, .payload_bytes = tokens * 4};
        if (rwkvd_wal_append(w, &r, NULL) < 0 || ((i + 1) % batch == 0 && rwkvd_wal_commit(w) < 0) ||
            rwkvd_wal_tick(w, now_ns()) < 0)
            die("wal append failed");
    }
    if (rwkvd_wal_commit(w) < 0)
        die("wal commit failed");
    t = now_s() - t;
    *fsyncs = io.n_calls[RWKVD_FSIO_FSYNC] - f0;
    rwkvd_wal_destroy(&w);
    rm_tree(wdir);
    return t;
}

int main(int argc, char **argv)
{
    const char *base = ".";
    int runs = 3, n_channels = 32, n_recovery = 1000, cold = 1;
    long n_records = 20000, n_tail = 10000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            base = argv[++i];
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--channels") && i + 1 < argc)
            n_channels = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--records") && i + 1 < argc)
            n_records = atol(argv[++i]);
        else if (!strcmp(argv[i], "--recovery-channels") && i + 1 < argc)
            n_recovery = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tail-records") && i + 1 < argc)
            n_tail = atol(argv[++i]);
        else if (!strcmp(argv[i], "--no-cold"))
            cold = 0;
        else {
            fprintf(stderr, "usage: %s [--dir DIR] [--runs N] [--channels N] [--records N] "
                            "[--recovery-channels N] [--tail-records N] [--no-cold]\n", argv[0]);
            return 2;
        }
    }
    if (runs < 1 || runs > MAX_RUNS || n_channels < 1 || n_records < 10 || n_recovery < 0 || n_tail < 0)
        die("bad argument (--runs 1..32, --channels >= 1, --records >= 10)");
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s/rwkvd-durable-bench.XXXXXX", base) >= (int)sizeof dir ||
        !mkdtemp(dir)) {
        fprintf(stderr, "%s: cannot create a temp dir: %s\n", base, strerror(errno));
        return 1;
    }
    print_machine(dir);
    printf("medians of %d runs; a shared machine: other jobs move these figures\n", runs);
    double v[MAX_RUNS], v2[MAX_RUNS];

    /* crc32c */
    size_t clen = 64u << 20;
    unsigned char *cbuf = malloc(clen);
    if (!cbuf)
        die("out of memory");
    for (size_t i = 0; i < clen; i++)
        cbuf[i] = (unsigned char)(i * 2654435761u >> 13);
    for (int r = 0; r < runs; r++) {
        double t = now_s();
        volatile uint32_t c = rwkvd_crc32c(0, cbuf, clen);
        (void)c;
        v[r] = clen / (now_s() - t) / 1e9;
    }
    printf("crc32c (%s): %.2f GB/s\n", rwkvd_crc32c_impl(), median(v, runs));
    free(cbuf);

    /* snapshots */
    uint64_t sbytes = rwkvd_snap_state_bytes(&MODEL);
    float *state = malloc(sbytes), *out = malloc(sbytes);
    if (!state || !out)
        die("out of memory");
    for (uint64_t i = 0; i < sbytes / 4; i++)
        state[i] = (float)i * 1e-3f;
    char sdir[4200], err[512];
    snprintf(sdir, sizeof sdir, "%s/snap", dir);
    rwkvd_snapstore *st = NULL;
    if (rwkvd_snapstore_open(sdir, NULL, &st, err, sizeof err) < 0)
        die(err);
    write_snapshots(st, n_channels, state, sbytes, 1); /* first generation: later runs rotate */
    for (int r = 0; r < runs; r++) {
        double t = now_s();
        write_snapshots(st, n_channels, state, sbytes, 1);
        v[r] = now_s() - t;
    }
    double dt = median(v, runs);
    printf("snapshot write, %d x %" PRIu64 " B (fsync file + dir, rename): %.2f ms/snapshot, %.0f MB/s, "
           "%.0f channels/s\n", n_channels, sbytes, dt / n_channels * 1e3,
           (double)sbytes * n_channels / dt / 1e6, n_channels / dt);
    for (int r = 0; r < runs; r++) {
        double t = now_s();
        load_snapshots(st, n_channels, out, sbytes);
        v[r] = now_s() - t;
    }
    for (int r = 0; r < runs && cold; r++) {
        drop_cache(sdir);
        double t = now_s();
        load_snapshots(st, n_channels, out, sbytes);
        v2[r] = now_s() - t;
    }
    dt = median(v, runs);
    printf("snapshot load + validate + copy out, page cache: %.2f ms/snapshot, %.0f MB/s, %.0f channels/s\n",
           dt / n_channels * 1e3, (double)sbytes * n_channels / dt / 1e6, n_channels / dt);
    if (cold) {
        dt = median(v2, runs);
        printf("snapshot load + validate + copy out, cold (pages dropped): %.2f ms/snapshot, %.0f MB/s, "
               "%.0f channels/s\n", dt / n_channels * 1e3, (double)sbytes * n_channels / dt / 1e6,
               n_channels / dt);
    }
    rwkvd_snapstore_destroy(&st);
    rm_tree(sdir);

    /* WAL appends */
    static const struct {
        rwkvd_wal_fsync p;
        int batch;
    } pol[] = {{RWKVD_WAL_FSYNC_NO, 1}, {RWKVD_WAL_FSYNC_EVERYSEC, 1},
               {RWKVD_WAL_FSYNC_ALWAYS, 64}, {RWKVD_WAL_FSYNC_ALWAYS, 1}};
    static const uint32_t toks[] = {16, 256};
    for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++)
        for (size_t j = 0; j < sizeof pol / sizeof pol[0]; j++) {
            long n = pol[j].p == RWKVD_WAL_FSYNC_ALWAYS && pol[j].batch == 1 ? n_records / 10 : n_records;
            uint64_t fs = 0;
            char wdir[4200];
            for (int r = 0; r < runs; r++) {
                snprintf(wdir, sizeof wdir, "%s/wal-%zu-%zu-%d", dir, k, j, r);
                v[r] = wal_run(wdir, pol[j].p, pol[j].batch, n, toks[k], &fs) / n;
            }
            dt = median(v, runs);
            printf("wal append, %3u tokens/record, fsync %-8s commit every %2d: %8.2f us/record, %7.3f us/token, "
                   "%10.0f tokens/s (%" PRIu64 " fsyncs for %ld records)\n", toks[k],
                   rwkvd_wal_fsync_name(pol[j].p), pol[j].batch, dt * 1e6, dt * 1e6 / toks[k],
                   toks[k] / dt, fs, n);
        }

    /* recovery of n_recovery channels: snapshots + a WAL tail */
    if (n_recovery > 0) {
        char rdir[4200], wdir[4200];
        snprintf(rdir, sizeof rdir, "%s/rec-snap", dir);
        snprintf(wdir, sizeof wdir, "%s/rec-wal", dir);
        if (rwkvd_snapstore_open(rdir, NULL, &st, err, sizeof err) < 0)
            die(err);
        double t = now_s();
        write_snapshots(st, n_recovery, state, sbytes, 1);
        dt = now_s() - t;
        printf("recovery set: %d snapshots written in %.2f s (%.0f MB/s, %.0f channels/s)\n", n_recovery, dt,
               (double)sbytes * n_recovery / dt / 1e6, n_recovery / dt);
        rwkvd_snapstore_destroy(&st);
        {
            static unsigned char pl[16 * 4];
            rwkvd_wal_opts o = {.fsync = RWKVD_WAL_FSYNC_NO};
            rwkvd_wal *w = NULL;
            if (rwkvd_wal_open(wdir, &o, &w, NULL, err, sizeof err) < 0)
                die(err);
            char name[64];
            for (long i = 0; i < n_tail; i++) {
                snprintf(name, sizeof name, "bench/channel:%ld", i % n_recovery);
                rwkvd_wal_rec r = {.op = 2, .channel = name, .producer = "producer-a",
                                   .seq = (uint64_t)i + 1, .payload = pl, .payload_bytes = sizeof pl};
                if (rwkvd_wal_append(w, &r, NULL) < 0)
                    die("wal append failed");
            }
            rwkvd_wal_sync(w);
            rwkvd_wal_destroy(&w);
        }
        for (int c = 0; c <= cold; c++) {
            for (int r = 0; r < runs; r++) {
                if (c) {
                    drop_cache(rdir);
                    drop_cache(wdir);
                }
                t = now_s();
                if (rwkvd_snapstore_open(rdir, NULL, &st, err, sizeof err) < 0)
                    die(err);
                char **names = NULL;
                size_t n_names = 0;
                if (rwkvd_snapstore_list(st, &names, &n_names) < 0 || n_names != (size_t)n_recovery)
                    die("snapshot list");
                for (size_t i = 0; i < n_names; i++) {
                    rwkvd_snapshot *s = NULL;
                    char note[1200];
                    if (rwkvd_snapstore_load(st, names[i], &MODEL, &s, NULL, note, sizeof note) < 0)
                        die(note);
                    memcpy(out, s->payload, sbytes);
                    rwkvd_snapshot_destroy(&s);
                }
                rwkvd_snapstore_list_free(&names, n_names);
                rwkvd_snapstore_destroy(&st);
                rwkvd_wal_opts o = {.fsync = RWKVD_WAL_FSYNC_NO};
                rwkvd_wal *w = NULL;
                if (rwkvd_wal_open(wdir, &o, &w, NULL, err, sizeof err) < 0)
                    die(err);
                rwkvd_wal_iter *it = NULL;
                rwkvd_wal_rec rec;
                long cnt = 0;
                if (rwkvd_wal_iter_new(w, 0, &it) < 0)
                    die("wal iterator");
                while (rwkvd_wal_iter_next(it, &rec, err, sizeof err) == 1)
                    cnt++;
                rwkvd_wal_iter_destroy(&it);
                rwkvd_wal_destroy(&w);
                if (cnt != n_tail)
                    die("wal tail: wrong record count");
                v[r] = now_s() - t;
            }
            dt = median(v, runs);
            printf("recovery, %s: %d channels (%.0f MB of snapshots) + %ld WAL records of 16 tokens: %.2f s "
                   "(%.0f channels/s, %.0f MB/s)\n", c ? "cold (pages dropped)" : "page cache", n_recovery,
                   (double)sbytes * n_recovery / 1e6, n_tail, dt, n_recovery / dt,
                   (double)sbytes * n_recovery / dt / 1e6);
        }
    }
    free(state);
    free(out);
    rm_tree(dir);
    return 0;
}
