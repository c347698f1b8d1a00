/* replica.c — see replica.h; the wire format is FORMATS.md §3.
 *
 * Key invariant: a standby's input log holds the primary's records under the primary's LSNs,
 * with no gap (every record is checked against the log's next LSN and a heartbeat's LSN
 * against what was received), so the standby's snapshots, its recovery and the primary's
 * snapshots all speak of the same LSNs, and its channel states are the primary's states as
 * of the last record received. Anything that breaks that (a gap, a primary that does not know
 * the standby any more, a state changed outside the log) makes the standby start over with a
 * full sync rather than continue on a state that may differ. */
#include "replica.h"
#include "security.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "durable.h"
#include "fsio.h"
#include "ingest.h"
#include "log.h"
#include "notify.h"
#include "snapshot.h"

#define MAX_STANDBYS 8
#define SYNC_STEP_MS 30000   /* longest silence while a full sync is received */
#define STATUS_TIMEOUT_MS 5000
#define REC_HDR 17           /* lsn u64, seq u64, op u8 */
#define TAKEOVER_RETRY_NS 1000000000ull

typedef struct {
    unsigned char id[256]; /* ROUTER routing id */
    size_t id_len;
    uint64_t heard_ns;     /* last ALIVE */
    uint64_t lsn;          /* the standby's next LSN, from its last ALIVE */
} standby_peer;

typedef struct rwkvd_replica {
    bool standby;
    uint64_t epoch;          /* this daemon's; a standby holds its primary's until it takes over */
    char *following;         /* standby: the primary's control endpoint */
    void *sock;              /* primary: ROUTER (or NULL); standby: DEALER */
    char endpoint[1024];     /* primary: the bound stream endpoint */
    standby_peer peers[MAX_STANDBYS];
    int n_peers;
    uint64_t next_hb_ns;     /* primary: HB; standby: ALIVE */
    uint64_t heard_ns;       /* standby: last message from the primary */
    uint64_t retry_ns;       /* standby: next takeover attempt after a failed bind */
    uint64_t last_tick_ns;   /* standby: the previous rwkvd_replica_tick (stall detection) */
    void *peer;              /* primary with replication.peer: DEALER to its control socket */
    uint64_t next_peer_ns;   /* next STATUS request to the peer */
    bool resyncing;
} rwkvd_replica;

/* ---- small helpers --------------------------------------------------------------------- */

static uint64_t hb_ns(const rwkvd_daemon *d) { return d->cfg->replication.heartbeat_interval_ms * 1000000ull; }
static uint64_t timeout_ns(const rwkvd_daemon *d) { return d->cfg->replication.failover_timeout_ms * 1000000ull; }

static void snap_model(const rwkvd_daemon *d, rwkvd_snap_model *m)
{
    const rwkv_dims *dm = rwkv_model_dims(d->model);
    *m = (rwkvd_snap_model){.fingerprint = rwkv_model_fingerprint(d->model),
                            .n_layer = (uint32_t)dm->n_layer,
                            .n_embd = (uint32_t)dm->n_embd,
                            .n_head = (uint32_t)dm->n_head,
                            .head_size = (uint32_t)dm->head_size,
                            .n_vocab = (uint32_t)dm->n_vocab};
}

/* Send [id] SIG cmd f[0..n) without blocking. 0 or -errno (EHOSTUNREACH: the peer is gone;
 * only the first frame can fail: a multipart message is queued atomically). */
static int send_msg(void *s, const standby_peer *to, const char *cmd, const rwkvp_frame *f, size_t n)
{
    rwkvp_frame all[8];
    size_t k = 0;
    if (to)
        all[k++] = (rwkvp_frame){to->id, to->id_len};
    all[k++] = (rwkvp_frame){RWKVD_REPL_SIG, strlen(RWKVD_REPL_SIG)};
    all[k++] = (rwkvp_frame){cmd, strlen(cmd)};
    for (size_t i = 0; i < n && k < 8; i++)
        all[k++] = f[i];
    for (size_t i = 0; i < k; i++)
        if (zmq_send(s, all[i].data, all[i].len, ZMQ_DONTWAIT | (i + 1 < k ? ZMQ_SNDMORE : 0)) < 0 && i == 0)
            return -zmq_errno();
    return 0;
}

/* Receive one multipart message (up to max frames kept). 1, 0 when none waits, -errno. */
static int recv_msg(void *s, zmq_msg_t *parts, size_t max, size_t *n, int flags)
{
    size_t k = 0;
    int more = 1;
    while (more) {
        zmq_msg_t tmp, *m = k < max ? &parts[k] : &tmp;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, s, k ? 0 : flags) < 0) {
            int e = zmq_errno();
            zmq_msg_close(m);
            for (size_t i = 0; i < k && i < max; i++)
                zmq_msg_close(&parts[i]);
            return e == EAGAIN ? 0 : -e;
        }
        more = zmq_msg_more(m);
        if (k >= max)
            zmq_msg_close(&tmp);
        k++;
    }
    *n = k < max ? k : max;
    return 1;
}

static void close_msg(zmq_msg_t *parts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        zmq_msg_close(&parts[i]);
}

static bool frame_is(zmq_msg_t *m, const char *s)
{
    return zmq_msg_size(m) == strlen(s) && memcmp(zmq_msg_data(m), s, strlen(s)) == 0;
}

static uint64_t frame_u64(zmq_msg_t *m)
{
    return zmq_msg_size(m) == 8 ? rwkvd_le64_get(zmq_msg_data(m)) : 0;
}

/* ---- the epoch file ---------------------------------------------------------------------- */

/* 0 with *out; -ENOENT when there is none; -EBADMSG for a malformed file. */
static int epoch_read(const char *state_dir, uint64_t *out)
{
    char path[PATH_MAX], buf[32] = "";
    snprintf(path, sizeof path, "%s/epoch", state_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || end == buf || (*end && *end != '\n') || v == 0)
        return -EBADMSG;
    *out = v;
    return 0;
}

/* Atomic: temp file, fsync, rename, fsync the directory. 0 or -errno. */
static int epoch_write(const char *state_dir, uint64_t epoch)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8], buf[32];
    snprintf(path, sizeof path, "%s/epoch", state_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int len = snprintf(buf, sizeof buf, "%llu\n", (unsigned long long)epoch);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    ssize_t w = write(fd, buf, (size_t)len);
    int rc = w < 0 ? -errno : w != len ? -EIO : fsync(fd) != 0 ? -errno : 0;
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc == 0) {
        int dfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) != 0)
            rc = -errno;
        if (dfd >= 0)
            close(dfd);
    }
    if (rc)
        unlink(tmp);
    return rc;
}

/* ---- STATUS of another daemon ------------------------------------------------------------ */

/* Its "replication" object (a new reference) or NULL with err. */
static json_t *remote_replication(rwkvd_daemon *d, const char *ep, int timeout_ms, char *err, size_t err_len)
{
    void *s = zmq_socket(d->zctx, ZMQ_REQ);
    json_t *out = NULL;
    if (!s) {
        snprintf(err, err_len, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
    rwkvd_security_client(d, s); /* CURVE toward the peer when security.curve is set */
    zmq_msg_t parts[3];
    size_t n = 0;
    if (zmq_connect(s, ep) != 0) {
        snprintf(err, err_len, "cannot connect to %s: %s", ep, zmq_strerror(zmq_errno()));
        goto out;
    }
    if (zmq_send(s, RWKVP_SIGNATURE, RWKVP_SIGNATURE_LEN, ZMQ_SNDMORE) < 0 || zmq_send(s, "STATUS", 6, 0) < 0 ||
        recv_msg(s, parts, 3, &n, 0) != 1) {
        snprintf(err, err_len, "%s: no answer to STATUS within %d ms", ep, timeout_ms);
        goto out;
    }
    if (n == 3 && frame_is(&parts[1], "200")) {
        json_error_t je;
        json_t *j = json_loadb(zmq_msg_data(&parts[2]), zmq_msg_size(&parts[2]), 0, &je);
        json_t *r = json_object_get(j, "replication");
        if (json_is_object(r))
            out = json_incref(r);
        else
            snprintf(err, err_len, "%s: its STATUS has no \"replication\" object (an older rwkvd?)", ep);
        json_decref(j);
    } else {
        snprintf(err, err_len, "%s: STATUS answered %.*s", ep, n >= 2 ? (int)zmq_msg_size(&parts[1]) : 0,
                 n >= 2 ? (const char *)zmq_msg_data(&parts[1]) : "");
    }
    close_msg(parts, n);
out:
    zmq_close(s);
    return out;
}

/* ---- standby: the full sync ---------------------------------------------------------------- */

static int clear_dir(const char *dir)
{
    DIR *dp = opendir(dir);
    if (!dp)
        return errno == ENOENT ? 0 : -errno;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        if (unlinkat(dirfd(dp), e->d_name, 0) != 0 && errno != ENOENT)
            rc = -errno;
    }
    closedir(dp);
    return rc;
}

/* tcp://0.0.0.0:P or tcp://[::]:P (a wildcard bind) is reached at the control endpoint's host. */
static void stream_endpoint(const char *ep, const char *control, char *out, size_t cap)
{
    const char *port = NULL;
    if (strncmp(ep, "tcp://0.0.0.0:", 14) == 0)
        port = ep + 13;
    else if (strncmp(ep, "tcp://[::]:", 11) == 0)
        port = ep + 10;
    const char *colon = strncmp(control, "tcp://", 6) == 0 ? strrchr(control + 6, ':') : NULL;
    if (port && colon)
        snprintf(out, cap, "%.*s%s", (int)(colon - control), control, port);
    else
        snprintf(out, cap, "%s", ep);
}

typedef struct {
    rwkvd_snapstore *store;
    rwkvd_wal *wal;
    rwkvd_fsio io_snap, io_wal;
    uint64_t n_snaps, n_recs, bytes;
} sync_sink;

static int sync_begin(rwkvd_daemon *d, sync_sink *k, uint64_t first_lsn, char *err, size_t err_len)
{
    const rwkvd_config *cfg = d->cfg;
    char dir[PATH_MAX];
    int rc;
    snprintf(dir, sizeof dir, "%s/snapshots", cfg->state_dir);
    if ((rc = clear_dir(dir))) {
        snprintf(err, err_len, "cannot empty %.400s: %s", dir, strerror(-rc));
        return rc;
    }
    k->io_snap.module = "snapshot";
    if ((rc = rwkvd_snapstore_open(dir, &k->io_snap, &k->store, err, err_len)))
        return rc;
    snprintf(dir, sizeof dir, "%s/wal", cfg->state_dir);
    if ((rc = clear_dir(dir))) {
        snprintf(err, err_len, "cannot empty %.400s: %s", dir, strerror(-rc));
        return rc;
    }
    k->io_wal.module = "wal";
    rwkvd_wal_opts wo = {.fsync = RWKVD_WAL_FSYNC_NO,
                         .segment_bytes = cfg->durability.wal_segment_bytes,
                         .first_lsn = first_lsn,
                         .io = &k->io_wal};
    return rwkvd_wal_open(dir, &wo, &k->wal, NULL, err, err_len);
}

/* [SIG, "REC", header, channel, producer, payload] into *r (names copied into ch, prod). */
static int parse_rec(zmq_msg_t *parts, size_t n, rwkvd_wal_rec *r, char *ch, char *prod)
{
    memset(r, 0, sizeof *r);
    if (n != 6 || zmq_msg_size(&parts[2]) != REC_HDR || zmq_msg_size(&parts[3]) < 1 ||
        zmq_msg_size(&parts[3]) > RWKVD_WAL_NAME_MAX || zmq_msg_size(&parts[4]) > RWKVD_WAL_NAME_MAX ||
        zmq_msg_size(&parts[5]) > RWKVD_WAL_PAYLOAD_MAX)
        return -EBADMSG;
    const unsigned char *h = zmq_msg_data(&parts[2]);
    memcpy(ch, zmq_msg_data(&parts[3]), zmq_msg_size(&parts[3]));
    ch[zmq_msg_size(&parts[3])] = '\0';
    memcpy(prod, zmq_msg_data(&parts[4]), zmq_msg_size(&parts[4]));
    prod[zmq_msg_size(&parts[4])] = '\0';
    *r = (rwkvd_wal_rec){.lsn = rwkvd_le64_get(h),
                         .seq = rwkvd_le64_get(h + 8),
                         .op = h[16],
                         .channel = ch,
                         .producer = prod,
                         .payload = zmq_msg_data(&parts[5]),
                         .payload_bytes = (uint32_t)zmq_msg_size(&parts[5])};
    return 0;
}

/* Standby messages from the DEALER: [SIG, cmd, ...] (no routing id). */
static int standby_sync(rwkvd_daemon *d, const char *endpoint, char *err, size_t err_len)
{
    rwkvd_replica *p = d->rep;
    void *s = p->sock = zmq_socket(d->zctx, ZMQ_DEALER);
    if (!s) {
        snprintf(err, err_len, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        return -EIO;
    }
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RCVHWM, &zero, sizeof zero); /* the primary's SNDHWM bounds nothing either */
    rwkvd_security_client(d, s);
    if (zmq_connect(s, endpoint) != 0) {
        snprintf(err, err_len, "cannot connect to the replication stream %.400s: %s", endpoint, zmq_strerror(zmq_errno()));
        return -EINVAL;
    }
    send_msg(s, NULL, "SYNC", NULL, 0);
    rwkvd_snap_model expect;
    snap_model(d, &expect);
    sync_sink k = {0};
    int rc = 0;
    bool begun = false, done = false;
    uint64_t t0 = rwkvd_now_ns(), next_lsn = 0;
    char ch[RWKVD_WAL_NAME_MAX + 1], prod[RWKVD_WAL_NAME_MAX + 1];
    while (!done && rc == 0) {
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, SYNC_STEP_MS) <= 0) {
            snprintf(err, err_len, "%.400s: full sync stalled (nothing for %d s)", endpoint, SYNC_STEP_MS / 1000);
            rc = -ETIMEDOUT;
            break;
        }
        zmq_msg_t parts[8];
        size_t n = 0;
        if (recv_msg(s, parts, 8, &n, ZMQ_DONTWAIT) != 1)
            continue;
        if (n < 2 || !frame_is(&parts[0], RWKVD_REPL_SIG)) {
            snprintf(err, err_len, "%.400s: not a replication message", endpoint);
            rc = -EPROTO;
        } else if (frame_is(&parts[1], "BEGIN") && n == 5 && !begun) {
            p->epoch = frame_u64(&parts[2]);
            begun = true;
            rc = sync_begin(d, &k, frame_u64(&parts[3]), err, err_len);
        } else if (frame_is(&parts[1], "SNAP") && n == 3 && begun) {
            rwkvd_snapshot *snap = NULL;
            char e2[600];
            rc = rwkvd_snapshot_decode(zmq_msg_data(&parts[2]), zmq_msg_size(&parts[2]), "replicated snapshot",
                                       &expect, &snap, e2, sizeof e2);
            if (rc == 0)
                rc = rwkvd_snapstore_write(k.store, snap, e2, sizeof e2);
            if (rc)
                snprintf(err, err_len, "%s%s", e2,
                         rc == -ESTALE ? " (the primary runs another model: model.path must be the same file)" : "");
            k.n_snaps++;
            k.bytes += zmq_msg_size(&parts[2]);
            rwkvd_snapshot_destroy(&snap);
        } else if (frame_is(&parts[1], "REC") && begun) {
            rwkvd_wal_rec r;
            uint64_t lsn = 0;
            if ((rc = parse_rec(parts, n, &r, ch, prod)) == 0 && r.lsn != rwkvd_wal_next_lsn(k.wal))
                rc = -EPROTO;
            if (rc == 0)
                rc = rwkvd_wal_append(k.wal, &r, &lsn);
            if (rc)
                snprintf(err, err_len, "input-log record %llu of the full sync: %s", (unsigned long long)r.lsn,
                         strerror(-rc));
            k.n_recs++;
        } else if (frame_is(&parts[1], "SYNCED") && n == 3 && begun) {
            next_lsn = frame_u64(&parts[2]);
            if (next_lsn != rwkvd_wal_next_lsn(k.wal)) {
                snprintf(err, err_len, "full sync ended at LSN %llu, the primary is at %llu",
                         (unsigned long long)rwkvd_wal_next_lsn(k.wal), (unsigned long long)next_lsn);
                rc = -EPROTO;
            }
            done = true;
        } else if (frame_is(&parts[1], "RESYNC") || frame_is(&parts[1], "REFUSED")) {
            snprintf(err, err_len, "the primary refused the sync: %.*s", n >= 3 ? (int)zmq_msg_size(&parts[2]) : 0,
                     n >= 3 ? (const char *)zmq_msg_data(&parts[2]) : "");
            rc = -EPROTO;
        } /* a heartbeat before the sync ends is not ours yet: ignored */
        close_msg(parts, n);
    }
    if (rc == 0 && (rc = rwkvd_wal_sync(k.wal)))
        snprintf(err, err_len, "input log: sync: %s", strerror(-rc));
    rwkvd_wal_destroy(&k.wal);
    rwkvd_snapstore_destroy(&k.store);
    if (rc == 0 && (rc = epoch_write(d->cfg->state_dir, p->epoch)))
        snprintf(err, err_len, "%s/epoch: %s", d->cfg->state_dir, strerror(-rc));
    if (rc == 0)
        rwkvd_log(LOG_NOTICE,
                  "standby: full sync from %s: %llu snapshot(s) (%llu bytes), %llu input-log record(s), up to LSN "
                  "%llu, epoch %llu, in %.3f s",
                  endpoint, (unsigned long long)k.n_snaps, (unsigned long long)k.bytes, (unsigned long long)k.n_recs,
                  (unsigned long long)next_lsn, (unsigned long long)p->epoch,
                  (double)(rwkvd_now_ns() - t0) / 1e9);
    return rc;
}

/* ---- init / open / destroy ------------------------------------------------------------------ */

int rwkvd_replica_init(rwkvd_daemon *d, const char *standby_of)
{
    const rwkvd_config *cfg = d->cfg;
    char err[1024] = "";
    bool replicating = standby_of || cfg->replication.bind[0] || cfg->replication.peer[0];
    if (!replicating)
        return 0;
    if (!cfg->durability.enabled) {
        rwkvd_log(LOG_ERR, "replication needs durability (the stream is the input log): durability.enabled is false");
        return -EINVAL;
    }
    if (cfg->replication.failover_timeout_ms < 2 * cfg->replication.heartbeat_interval_ms) {
        rwkvd_log(LOG_ERR, "replication.failover_timeout (%llu ms) must be at least two heartbeat_interval (%llu ms)",
                  (unsigned long long)cfg->replication.failover_timeout_ms,
                  (unsigned long long)cfg->replication.heartbeat_interval_ms);
        return -EINVAL;
    }
    rwkvd_replica *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    d->rep = p;
    if (mkdir(cfg->state_dir, 0700) != 0 && errno != EEXIST) {
        return rwkvd_log_errno(LOG_ERR, errno, "state_dir %s", cfg->state_dir);
    }
    uint64_t own = 0;
    int rc = epoch_read(cfg->state_dir, &own);
    if (rc == -EBADMSG) {
        rwkvd_log(LOG_ERR, "%s/epoch: not a positive decimal number; refusing to guess the fencing epoch",
                  cfg->state_dir);
        return rc;
    }
    if (standby_of) {
        p->standby = true;
        if (!(p->following = strdup(standby_of)))
            return -ENOMEM;
        json_t *r = remote_replication(d, standby_of, STATUS_TIMEOUT_MS, err, sizeof err);
        if (!r) {
            rwkvd_log(LOG_ERR, "--standby-of %s: %s", standby_of, err);
            return -EHOSTUNREACH;
        }
        const char *role = json_string_value(json_object_get(r, "role"));
        const char *ep = json_string_value(json_object_get(r, "endpoint"));
        uint64_t epoch = (uint64_t)json_integer_value(json_object_get(r, "epoch"));
        char stream[1100];
        stream_endpoint(ep ? ep : "", standby_of, stream, sizeof stream);
        if (!role || strcmp(role, "primary") != 0 || !ep || !ep[0]) {
            rwkvd_log(LOG_ERR, "--standby-of %s: that daemon is %s%s", standby_of, role ? role : "of unknown role",
                      role && strcmp(role, "primary") == 0 ? " without a replication stream (replication.bind)" : "");
            json_decref(r);
            return -EINVAL;
        }
        json_decref(r);
        if (own > epoch) { /* this state_dir took over from it: serve, do not follow a fenced primary */
            rwkvd_log(LOG_NOTICE, "--standby-of %s: its epoch %llu is lower than this state_dir's %llu (this daemon "
                                  "took over from it): serving as primary",
                      standby_of, (unsigned long long)epoch, (unsigned long long)own);
            p->standby = false;
            p->epoch = own;
            return 0;
        }
        if ((rc = standby_sync(d, stream, err, sizeof err))) {
            rwkvd_log(LOG_ERR, "standby of %s: %s", standby_of, err);
            return rc;
        }
        p->heard_ns = rwkvd_now_ns();
        return 0;
    }
    p->epoch = own ? own : 1;
    if (!own && (rc = epoch_write(cfg->state_dir, p->epoch))) {
        return rwkvd_log_errno(LOG_ERR, rc, "%s/epoch", cfg->state_dir);
    }
    if (cfg->replication.peer[0]) {
        json_t *r = remote_replication(d, cfg->replication.peer, (int)cfg->replication.failover_timeout_ms, err,
                                       sizeof err);
        if (!r) {
            rwkvd_log(LOG_WARNING, "fencing: replication.peer %s: %s; serving as primary with epoch %llu",
                      cfg->replication.peer, err, (unsigned long long)p->epoch);
            return 0;
        }
        const char *role = json_string_value(json_object_get(r, "role"));
        uint64_t epoch = (uint64_t)json_integer_value(json_object_get(r, "epoch"));
        bool primary = role && strcmp(role, "primary") == 0;
        bool fenced = epoch > p->epoch || (primary && epoch == p->epoch);
        if (fenced)
            rwkvd_log(LOG_ERR, "fencing: replication.peer %s serves as %s with epoch %llu (this state_dir: %llu): "
                               "refusing to serve beside it; start with --standby-of %s to follow it",
                      cfg->replication.peer, role ? role : "?", (unsigned long long)epoch,
                      (unsigned long long)p->epoch, cfg->replication.peer);
        json_decref(r);
        if (fenced)
            return -ESTALE;
    }
    return 0;
}

/* A primary keeps asking replication.peer for its epoch: after a partition heals, a primary
 * that was taken over finds out within a failover_timeout and steps down (rwkvd_replica_tick). */
static void open_peer_watch(rwkvd_daemon *d)
{
    rwkvd_replica *p = d->rep;
    const char *ep = d->cfg->replication.peer;
    if (!ep[0] || p->peer)
        return;
    void *s = zmq_socket(d->zctx, ZMQ_DEALER);
    if (!s)
        return;
    int zero = 0, one = 1;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_IMMEDIATE, &one, sizeof one); /* no requests piling up for an absent peer */
    zmq_setsockopt(s, ZMQ_SNDHWM, &one, sizeof one);
    rwkvd_security_client(d, s);
    if (zmq_connect(s, ep) != 0) {
        rwkvd_log(LOG_WARNING, "replication.peer %s: cannot connect: %s; no fencing check while running", ep,
                  zmq_strerror(zmq_errno()));
        zmq_close(s);
        return;
    }
    p->peer = s;
    p->next_peer_ns = rwkvd_now_ns() + timeout_ns(d);
}

int rwkvd_replica_open(rwkvd_daemon *d, char *err, size_t err_len)
{
    rwkvd_replica *p = d->rep;
    const char *ep = d->cfg->replication.bind;
    if (!p || p->standby)
        return 0;
    open_peer_watch(d);
    if (!ep[0] || p->sock)
        return 0;
    void *s = zmq_socket(d->zctx, ZMQ_ROUTER);
    if (!s) {
        snprintf(err, err_len, "zmq_socket(ROUTER): %s", zmq_strerror(zmq_errno()));
        return -EIO;
    }
    int one = 1, zero = 0;
    zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_SNDHWM, &zero, sizeof zero); /* a standby must not miss records; see FORMATS.md §3 */
    int src = rwkvd_security_server(d, s, RWKVD_SOCK_REPLICATION, err, err_len);
    if (src) {
        zmq_close(s);
        return src;
    }
    if (zmq_bind(s, ep) != 0) {
        snprintf(err, err_len, "replication.bind: cannot bind %s: %s", ep, zmq_strerror(zmq_errno()));
        zmq_close(s);
        return -EADDRINUSE;
    }
    size_t len = sizeof p->endpoint;
    if (zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, p->endpoint, &len) != 0)
        snprintf(p->endpoint, sizeof p->endpoint, "%s", ep);
    p->sock = s;
    p->next_hb_ns = rwkvd_now_ns();
    rwkvd_log(LOG_NOTICE, "replication stream on %s (epoch %llu)", p->endpoint, (unsigned long long)p->epoch);
    return 0;
}

void rwkvd_replica_destroy(rwkvd_daemon *d)
{
    rwkvd_replica *p = d->rep;
    if (!p)
        return;
    if (p->peer)
        zmq_close(p->peer);
    if (p->sock)
        zmq_close(p->sock);
    free(p->following);
    free(p);
    d->rep = NULL;
}

bool rwkvd_replica_standby(const rwkvd_daemon *d) { return d->rep && d->rep->standby; }
uint64_t rwkvd_replica_epoch(const rwkvd_daemon *d) { return d->rep ? d->rep->epoch : 0; }
void *rwkvd_replica_socket(const rwkvd_daemon *d) { return d->rep ? d->rep->sock : NULL; }

/* ---- primary ------------------------------------------------------------------------------- */

static void primary_heartbeat(rwkvd_daemon *d, uint64_t now);

static void drop_peer(rwkvd_daemon *d, int i, const char *why)
{
    rwkvd_replica *p = d->rep;
    rwkvd_log(LOG_WARNING, "replication: standby %d dropped: %s", i, why);
    p->peers[i] = p->peers[--p->n_peers];
}

static int find_peer(const rwkvd_replica *p, const void *id, size_t len)
{
    for (int i = 0; i < p->n_peers; i++)
        if (p->peers[i].id_len == len && memcmp(p->peers[i].id, id, len) == 0)
            return i;
    return -1;
}

static int send_record(void *s, const standby_peer *to, const rwkvd_wal_rec *r)
{
    unsigned char h[REC_HDR];
    rwkvd_le64_put(h, r->lsn);
    rwkvd_le64_put(h + 8, r->seq);
    h[16] = r->op;
    rwkvp_frame f[4] = {{h, REC_HDR},
                        {r->channel, strlen(r->channel)},
                        {r->producer, strlen(r->producer)},
                        {r->payload, r->payload_bytes}};
    return send_msg(s, to, "REC", f, 4);
}

/* The full sync (FORMATS.md §3): BEGIN, every channel's newest valid snapshot, the whole input
 * log, SYNCED; then the standby gets the live records. All of it is sent from the loop thread
 * between two ingest batches, so nothing is logged in between. */
static void serve_sync(rwkvd_daemon *d, standby_peer *to)
{
    rwkvd_replica *p = d->rep;
    rwkvd_wal *wal = rwkvd_durable_wal(d);
    rwkvd_snapstore *store = rwkvd_durable_store(d);
    int i = find_peer(p, to->id, to->id_len);
    if (i >= 0)
        p->peers[i] = p->peers[--p->n_peers];
    if (p->n_peers == MAX_STANDBYS) {
        static const char t[] = "too many standbys";
        rwkvp_frame f = {t, sizeof t - 1};
        send_msg(p->sock, to, "REFUSED", &f, 1);
        return;
    }
    uint64_t t0 = rwkvd_now_ns();
    rwkvd_durable_flush(d); /* the I/O thread's writes done; the records are read back from the files */
    uint64_t first = rwkvd_wal_first_lsn(wal), next = rwkvd_wal_next_lsn(wal);
    unsigned char b[3][8];
    rwkvd_le64_put(b[0], p->epoch);
    rwkvd_le64_put(b[1], first);
    rwkvd_le64_put(b[2], next);
    rwkvp_frame f[3] = {{b[0], 8}, {b[1], 8}, {b[2], 8}};
    if (send_msg(p->sock, to, "BEGIN", f, 3) != 0)
        return;
    rwkvd_snap_model expect;
    snap_model(d, &expect);
    char **names = NULL;
    size_t n_names = 0, n_snaps = 0;
    uint64_t n_recs = 0;
    char note[1200], err[512] = "";
    int rc = rwkvd_snapstore_list(store, &names, &n_names);
    for (size_t k = 0; rc == 0 && k < n_names; k++) {
        rwkvd_snapshot *s = NULL;
        void *blob = NULL;
        size_t len = 0;
        if (rwkvd_snapstore_load(store, names[k], &expect, &s, NULL, note, sizeof note) != 0) {
            /* the standby rebuilds it from the log, as this daemon's own recovery would */
            rwkvd_log(LOG_WARNING, "replication: full sync: channel %s has no usable snapshot: %s", names[k], note);
            continue;
        }
        rc = rwkvd_snapshot_encode(s, &blob, &len);
        rwkvd_snapshot_destroy(&s);
        if (rc == 0) {
            rwkvp_frame sf = {blob, len};
            rc = send_msg(p->sock, to, "SNAP", &sf, 1);
            n_snaps++;
            primary_heartbeat(d, rwkvd_now_ns());
        }
        free(blob);
    }
    rwkvd_snapstore_list_free(&names, n_names);
    rwkvd_wal_iter *it = NULL;
    if (rc == 0)
        rc = rwkvd_wal_iter_new(wal, first, &it);
    rwkvd_wal_rec r;
    int more = 0;
    while (rc == 0 && (more = rwkvd_wal_iter_next(it, &r, err, sizeof err)) == 1) {
        rc = send_record(p->sock, to, &r);
        if (++n_recs % 4096 == 0)
            primary_heartbeat(d, rwkvd_now_ns()); /* the other standbys */
    }
    rwkvd_wal_iter_destroy(&it);
    if (rc == 0 && more < 0)
        rc = more;
    if (rc) {
        char t[700];
        snprintf(t, sizeof t, "full sync failed: %s", err[0] ? err : strerror(-rc));
        rwkvd_log(LOG_ERR, "replication: %s", t);
        rwkvp_frame tf = {t, strlen(t)};
        send_msg(p->sock, to, "REFUSED", &tf, 1);
        return;
    }
    rwkvp_frame nf = {b[2], 8};
    send_msg(p->sock, to, "SYNCED", &nf, 1);
    to->heard_ns = rwkvd_now_ns();
    to->lsn = next;
    p->peers[p->n_peers++] = *to;
    rwkvd_log(LOG_NOTICE, "replication: standby synced: %zu snapshot(s), %llu record(s) (LSN %llu..%llu) in %.3f s",
              n_snaps, (unsigned long long)n_recs, (unsigned long long)first, (unsigned long long)next,
              (double)(rwkvd_now_ns() - t0) / 1e9);
}

uint64_t rwkvd_replica_acked_lsn(const rwkvd_daemon *d)
{
    const rwkvd_replica *p = d->rep;
    uint64_t lsn = UINT64_MAX;
    if (!p || p->standby || !d->cfg->replication.sync)
        return lsn;
    for (int i = 0; i < p->n_peers; i++)
        if (p->peers[i].lsn - 1 < lsn)
            lsn = p->peers[i].lsn - 1; /* ALIVE carries the next LSN; lsn >= 1 once synced */
    return lsn;
}

void rwkvd_replica_record(rwkvd_daemon *d, const rwkvd_wal_rec *r)
{
    rwkvd_replica *p = d->rep;
    if (!p || p->standby)
        return;
    for (int i = p->n_peers - 1; i >= 0; i--)
        if (send_record(p->sock, &p->peers[i], r) != 0)
            drop_peer(d, i, "unreachable");
}

void rwkvd_replica_diverged(rwkvd_daemon *d, const char *why)
{
    rwkvd_replica *p = d->rep;
    if (!p || p->standby)
        return;
    rwkvp_frame f = {why, strlen(why)};
    for (int i = p->n_peers - 1; i >= 0; i--) {
        send_msg(p->sock, &p->peers[i], "RESYNC", &f, 1);
        drop_peer(d, i, why);
    }
}

static void primary_handle(rwkvd_daemon *d)
{
    rwkvd_replica *p = d->rep;
    bool released = false;
    for (int budget = 0; budget < 256; budget++) {
        zmq_msg_t parts[4];
        size_t n = 0;
        if (recv_msg(p->sock, parts, 4, &n, ZMQ_DONTWAIT) != 1)
            break;
        standby_peer from = {.id_len = 0};
        char why[200];
        if (n >= 2 && rwkvd_security_check_replicate(d, &parts[1], why, sizeof why) != 0) {
            rwkvd_log(LOG_WARNING, "replication: a message refused: %s", why); /* and counted */
            close_msg(parts, n);
            continue;
        }
        if (n >= 3 && zmq_msg_size(&parts[0]) <= sizeof from.id && frame_is(&parts[1], RWKVD_REPL_SIG)) {
            from.id_len = zmq_msg_size(&parts[0]);
            memcpy(from.id, zmq_msg_data(&parts[0]), from.id_len);
            int i = find_peer(p, from.id, from.id_len);
            if (frame_is(&parts[2], "SYNC")) {
                serve_sync(d, &from);
            } else if (frame_is(&parts[2], "ALIVE") && i >= 0) {
                p->peers[i].heard_ns = rwkvd_now_ns();
                uint64_t lsn = n >= 4 ? frame_u64(&parts[3]) : 0;
                if (lsn > p->peers[i].lsn) /* with replication.sync, ACKs up to it may go now */
                    p->peers[i].lsn = lsn;
                released = d->cfg->replication.sync;
            } else if (frame_is(&parts[2], "ALIVE")) { /* it followed an earlier primary process */
                static const char t[] = "this primary does not know the standby (it restarted)";
                rwkvp_frame f = {t, sizeof t - 1};
                send_msg(p->sock, &from, "RESYNC", &f, 1);
            }
        }
        close_msg(parts, n);
    }
    if (released)
        rwkvd_durable_commit(d);
}

/* ---- standby -------------------------------------------------------------------------------- */

static void resync(rwkvd_daemon *d, const char *why)
{
    rwkvd_replica *p = d->rep;
    if (p->resyncing)
        return;
    p->resyncing = true;
    rwkvd_log(LOG_WARNING, "standby: %s; restarting to resync from %s", why, p->following);
    d->restart = true;
    rwkvd_daemon_stop(d, "standby resync");
}

static void take_over(rwkvd_daemon *d, uint64_t now)
{
    rwkvd_replica *p = d->rep;
    char err[1024] = "";
    uint64_t epoch = p->epoch + 1;
    int rc = epoch_write(d->cfg->state_dir, epoch);
    if (rc == 0)
        rc = rwkvd_daemon_bind_serving(d, err, sizeof err);
    if (rc) {
        rwkvd_log(LOG_ERR, "standby: cannot take over yet: %s; retrying", err[0] ? err : strerror(-rc));
        p->retry_ns = now + TAKEOVER_RETRY_NS;
        return;
    }
    double silent_s = (double)(now - p->heard_ns) / 1e9;
    zmq_close(p->sock);
    p->sock = NULL;
    p->standby = false;
    p->epoch = epoch;
    rwkvd_wal *wal = rwkvd_durable_wal(d);
    rwkvd_log(LOG_NOTICE, "standby: no word from the primary %s for %.2f s: took over as primary with epoch %llu at "
                          "LSN %llu; ingest %s, publish %s",
              p->following, silent_s, (unsigned long long)epoch, (unsigned long long)rwkvd_wal_next_lsn(wal),
              d->cfg->endpoints.ingest.v[0], d->cfg->endpoints.publish.v[0]);
    char st[160];
    snprintf(st, sizeof st, "primary (took over, epoch %llu)", (unsigned long long)epoch);
    rwkvd_notify_status(st);
    if ((rc = rwkvd_replica_open(d, err, sizeof err)))
        rwkvd_log(LOG_ERR, "%s; serving without a replication stream", err);
}

static void standby_handle(rwkvd_daemon *d)
{
    rwkvd_replica *p = d->rep;
    char ch[RWKVD_WAL_NAME_MAX + 1], prod[RWKVD_WAL_NAME_MAX + 1], why[200];
    bool logged = false;
    for (int budget = 0; budget < 1024 && p->sock && !p->resyncing; budget++) {
        zmq_msg_t parts[8];
        size_t n = 0;
        if (recv_msg(p->sock, parts, 8, &n, ZMQ_DONTWAIT) != 1)
            break;
        p->heard_ns = rwkvd_now_ns();
        if (n < 2 || !frame_is(&parts[0], RWKVD_REPL_SIG)) {
            resync(d, "a message of the stream is not a replication message");
        } else if (frame_is(&parts[1], "REC")) {
            rwkvd_wal_rec r;
            int rc = parse_rec(parts, n, &r, ch, prod);
            if (rc == 0)
                rc = rwkvd_durable_apply(d, &r);
            logged |= rc == 0;
            if (rc) {
                snprintf(why, sizeof why, "record LSN %llu (the log is at %llu): %s", (unsigned long long)r.lsn,
                         (unsigned long long)rwkvd_wal_next_lsn(rwkvd_durable_wal(d)),
                         rc == -EPROTO ? "a gap in the stream" : strerror(-rc));
                resync(d, why);
            }
        } else if (frame_is(&parts[1], "HB") && n == 4) {
            uint64_t next = frame_u64(&parts[3]), own = rwkvd_wal_next_lsn(rwkvd_durable_wal(d));
            if (frame_u64(&parts[2]) != p->epoch) {
                snprintf(why, sizeof why, "the primary's epoch changed from %llu to %llu",
                         (unsigned long long)p->epoch, (unsigned long long)frame_u64(&parts[2]));
                resync(d, why);
            } else if (next != own) {
                snprintf(why, sizeof why, "the primary is at LSN %llu, this standby at %llu", (unsigned long long)next,
                         (unsigned long long)own);
                resync(d, why);
            }
        } else if (frame_is(&parts[1], "RESYNC") || frame_is(&parts[1], "REFUSED")) {
            snprintf(why, sizeof why, "the primary says: %.*s", n >= 3 ? (int)zmq_msg_size(&parts[2]) : 0,
                     n >= 3 ? (const char *)zmq_msg_data(&parts[2]) : "");
            resync(d, why);
        }
        close_msg(parts, n);
    }
    if (logged) { /* durable here under this log's policy, then told (replication.sync waits for it) */
        rwkvd_durable_commit(d);
        unsigned char b[8];
        rwkvd_le64_put(b, rwkvd_wal_next_lsn(rwkvd_durable_wal(d)));
        rwkvp_frame f = {b, 8};
        if (p->sock)
            send_msg(p->sock, NULL, "ALIVE", &f, 1);
    }
}

/* ---- loop hooks ----------------------------------------------------------------------------- */

void rwkvd_replica_handle(rwkvd_daemon *d)
{
    if (!d->rep || !d->rep->sock)
        return;
    if (d->rep->standby)
        standby_handle(d);
    else
        primary_handle(d);
}

void rwkvd_replica_heartbeat(rwkvd_daemon *d)
{
    rwkvd_replica *p = d->rep;
    if (p && p->sock && !p->standby)
        primary_heartbeat(d, rwkvd_now_ns());
}

/* The peer's STATUS replies: step down (restart as its standby) when it has a higher epoch. */
static void peer_watch(rwkvd_daemon *d, uint64_t now)
{
    rwkvd_replica *p = d->rep;
    for (int budget = 0; budget < 16; budget++) {
        zmq_msg_t parts[3];
        size_t n = 0;
        if (recv_msg(p->peer, parts, 3, &n, ZMQ_DONTWAIT) != 1)
            break;
        json_t *j = NULL;
        if (n == 3 && frame_is(&parts[1], "200"))
            j = json_loadb(zmq_msg_data(&parts[2]), zmq_msg_size(&parts[2]), 0, NULL);
        close_msg(parts, n);
        json_t *r = json_object_get(j, "replication");
        uint64_t epoch = (uint64_t)json_integer_value(json_object_get(r, "epoch"));
        const char *role = json_string_value(json_object_get(r, "role"));
        if (epoch > p->epoch && role && strcmp(role, "primary") == 0 && d->state != RWKVD_STOPPING) {
            rwkvd_log(LOG_ERR, "fencing: replication.peer %s serves as primary with epoch %llu, this daemon has %llu "
                               "(it was taken over, e.g. across a network partition): stepping down to follow it; "
                               "input accepted here since the takeover is discarded by the full sync",
                      d->cfg->replication.peer, (unsigned long long)epoch, (unsigned long long)p->epoch);
            snprintf(d->restart_standby_of, sizeof d->restart_standby_of, "%s", d->cfg->replication.peer);
            d->restart = true;
            rwkvd_daemon_stop(d, "fenced by a newer primary");
        }
        json_decref(j);
    }
    if (now >= p->next_peer_ns) {
        zmq_send(p->peer, RWKVP_SIGNATURE, RWKVP_SIGNATURE_LEN, ZMQ_DONTWAIT | ZMQ_SNDMORE);
        zmq_send(p->peer, "STATUS", 6, ZMQ_DONTWAIT);
        p->next_peer_ns = now + timeout_ns(d);
    }
}

void rwkvd_replica_tick(rwkvd_daemon *d, uint64_t now)
{
    rwkvd_replica *p = d->rep;
    if (!p || d->state == RWKVD_STOPPING)
        return;
    if (p->peer && !p->standby)
        peer_watch(d, now);
    if (!p->sock || d->state == RWKVD_STOPPING)
        return;
    if (p->standby) {
        /* a stall of this daemon (SIGSTOP, a paused VM, a long snapshot round) is no evidence
         * against the primary: its messages may still sit in the kernel, not yet read by ZeroMQ's
         * I/O thread. Give it two more heartbeats from now. */
        if (p->last_tick_ns && now - p->last_tick_ns > 2 * hb_ns(d) && now - p->heard_ns + 2 * hb_ns(d) > timeout_ns(d))
            p->heard_ns = now + 2 * hb_ns(d) - timeout_ns(d);
        p->last_tick_ns = now;
        if (now - p->heard_ns >= timeout_ns(d)) /* read what waits first */
            standby_handle(d);
        if (p->standby && !p->resyncing && now - p->heard_ns >= timeout_ns(d) && now >= p->retry_ns) {
            take_over(d, now);
            return;
        }
        if (now >= p->next_hb_ns) {
            unsigned char b[8];
            rwkvd_le64_put(b, rwkvd_wal_next_lsn(rwkvd_durable_wal(d)));
            rwkvp_frame f = {b, 8};
            send_msg(p->sock, NULL, "ALIVE", &f, 1); /* EAGAIN while the primary is away: fine */
            p->next_hb_ns = now + hb_ns(d);
        }
        return;
    }
    /* ALIVEs that waited through a stall of this loop were read just before (rwkvd_loop_run) */
    for (int i = p->n_peers - 1; i >= 0; i--)
        if (now - p->peers[i].heard_ns > 2 * timeout_ns(d)) {
            /* a standby only stalled (not dead) reads this before it could take over */
            static const char t[] = "the primary stopped streaming to this standby (silent too long)";
            rwkvp_frame f = {t, sizeof t - 1};
            send_msg(p->sock, &p->peers[i], "RESYNC", &f, 1);
            drop_peer(d, i, "silent for two failover timeouts");
        }
    primary_heartbeat(d, now);
}

static void primary_heartbeat(rwkvd_daemon *d, uint64_t now)
{
    rwkvd_replica *p = d->rep;
    if (now < p->next_hb_ns)
        return;
    unsigned char b[2][8];
    rwkvd_le64_put(b[0], p->epoch);
    rwkvd_le64_put(b[1], rwkvd_wal_next_lsn(rwkvd_durable_wal(d)));
    rwkvp_frame f[2] = {{b[0], 8}, {b[1], 8}};
    for (int i = p->n_peers - 1; i >= 0; i--)
        if (send_msg(p->sock, &p->peers[i], "HB", f, 2) != 0)
            drop_peer(d, i, "unreachable");
    p->next_hb_ns = now + hb_ns(d);
}

uint64_t rwkvd_replica_next_ns(const rwkvd_daemon *d)
{
    const rwkvd_replica *p = d->rep;
    if (!p)
        return 0;
    /* the peer watch's replies are read on the tick: at least every heartbeat interval */
    uint64_t peer = p->peer && !p->standby ? rwkvd_now_ns() + hb_ns(d) : 0;
    if (!p->sock)
        return peer;
    uint64_t t = p->next_hb_ns;
    if (peer && peer < t)
        t = peer;
    if (p->standby) {
        uint64_t fo = p->heard_ns + timeout_ns(d);
        if (fo < p->retry_ns)
            fo = p->retry_ns;
        if (fo < t)
            t = fo;
    }
    return t ? t : 1;
}

void rwkvd_replica_status(const rwkvd_daemon *d, json_t *status)
{
    const rwkvd_replica *p = d->rep;
    if (!status)
        return;
    rwkvd_wal *wal = rwkvd_durable_wal((rwkvd_daemon *)d);
    json_t *r = json_pack("{s:s, s:I, s:s, s:s, s:I, s:i}", "role", p && p->standby ? "standby" : "primary", "epoch",
                          (json_int_t)(p ? p->epoch : 0), "endpoint", p && !p->standby ? p->endpoint : "",
                          "following", p && p->standby ? p->following : "", "next_lsn",
                          (json_int_t)(wal ? rwkvd_wal_next_lsn(wal) : 0), "standbys", p ? p->n_peers : 0);
    if (r)
        json_object_set_new(status, "replication", r);
}
