/* security.c — see security.h. */
#include "security.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "publish.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_DOMAIN "rwkvd"

/* Handshake results counted per socket (from its monitor). */
enum { HS_ACCEPTED = 0, HS_MECHANISM, HS_CRYPTO, HS_NOT_ALLOWED, HS_OTHER, HS_N };
static const char *const hs_names[HS_N] = {"accepted", "mechanism", "crypto", "not_allowed", "other"};
static const char *const role_names[RWKVD_SOCK_N] = {"ingest", "ingest_pull", "publish", "control", "replication"};

/* 403s of one key name (kept after the key is removed: the counter is about the past). */
typedef struct {
    char name[RWKVD_KEY_NAME_MAX + 1];
    uint64_t n[RWKVD_SOCK_N];
} forbid_count;

/* Subscriptions applied for one (key, prefix): a reload checks them against the new list. */
typedef struct {
    char name[RWKVD_KEY_NAME_MAX + 1];
    char *prefix;
    size_t len;
    uint64_t n;
} sub_entry;

struct rwkvd_security {
    bool on;
    rwkvd_allow *allow, *pending;
    uint8_t server_secret[32], client_public[32], client_secret[32], peer_public[32];
    void *zap;
    void *mon[RWKVD_SOCK_N]; /* PAIR sockets receiving each bound socket's events */
    unsigned mon_seq;
    uint64_t zap_results[RWKVD_ZAP_N_REASONS];
    uint64_t handshakes[RWKVD_SOCK_N][HS_N];
    uint64_t subs_refused;
    forbid_count *forbid;
    size_t n_forbid, cap_forbid;
    sub_entry *subs;
    size_t n_subs, cap_subs;
    uint64_t reloads_reopened; /* PUBLISH reopened to cut a removed key's subscriptions */
};

bool rwkvd_security_on(const rwkvd_daemon *d) { return d->sec && d->sec->on; }

/* tcp:// on an address that is not loopback (the config loader checked the syntax). */
static bool public_tcp(const char *ep)
{
    if (strncmp(ep, "tcp://", 6) != 0)
        return false;
    const char *h = ep + 6;
    return !(strncmp(h, "127.", 4) == 0 || strncmp(h, "[::1]", 5) == 0 || strncmp(h, "localhost:", 10) == 0 ||
             strncmp(h, "lo:", 3) == 0 || strncmp(h, "[::ffff:127.", 12) == 0);
}

static int load_keys(const rwkvd_config *cfg, uint8_t server_secret[32], uint8_t client_public[32],
                     uint8_t client_secret[32], uint8_t peer_public[32], rwkvd_allow **allow, char *err,
                     size_t err_len)
{
    const char *sk = cfg->security.curve.secret_key_file;
    rwkvd_cert server, client, peer;
    char e[900];
    int rc = rwkvd_cert_load(sk, true, &server, e, sizeof e);
    if (rc) {
        snprintf(err, err_len, "security.curve.secret_key_file: %s", e);
        return rc;
    }
    rwkvd_key_clear(&server.key);
    /* the public half is derived, so a file with only the secret key (bare Z85) serves too */
    char z_sec[41], z_pub[41];
    zmq_z85_encode(z_sec, server.secret_key, 32);
    if (zmq_curve_public(z_pub, z_sec) != 0) {
        snprintf(err, err_len, "security.curve.secret_key_file: %s: libzmq has no CURVE (zmq_has(\"curve\") is false)",
                 sk);
        return -ENOTSUP;
    }
    uint8_t server_public[32];
    zmq_z85_decode(server_public, z_pub);
    memcpy(server_secret, server.secret_key, 32);
    memcpy(client_secret, server.secret_key, 32);
    memcpy(client_public, server_public, 32);
    memcpy(peer_public, server_public, 32);
    if (cfg->security.curve.client_key_file[0]) {
        if ((rc = rwkvd_cert_load(cfg->security.curve.client_key_file, true, &client, e, sizeof e))) {
            snprintf(err, err_len, "security.curve.client_key_file: %s", e);
            return rc;
        }
        rwkvd_key_clear(&client.key);
        zmq_z85_encode(z_sec, client.secret_key, 32);
        zmq_curve_public(z_pub, z_sec);
        zmq_z85_decode(client_public, z_pub);
        memcpy(client_secret, client.secret_key, 32);
    }
    if (cfg->security.curve.peer_public_key_file[0]) {
        if ((rc = rwkvd_cert_load(cfg->security.curve.peer_public_key_file, false, &peer, e, sizeof e))) {
            snprintf(err, err_len, "security.curve.peer_public_key_file: %s", e);
            return rc;
        }
        rwkvd_key_clear(&peer.key);
        if (!peer.has_public) {
            snprintf(err, err_len, "security.curve.peer_public_key_file: %s: holds no public-key",
                     cfg->security.curve.peer_public_key_file);
            return -EINVAL;
        }
        memcpy(peer_public, peer.key.public_key, 32);
    }
    if ((rc = rwkvd_allow_load(cfg->security.curve.allow, allow, e, sizeof e))) {
        snprintf(err, err_len, "security.curve.allow: %s", e);
        return rc;
    }
    return 0;
}

int rwkvd_security_check(const rwkvd_config *cfg, char *err, size_t err_len)
{
    if (!cfg->security.curve.secret_key_file[0])
        return 0;
    if (!zmq_has("curve")) {
        snprintf(err, err_len, "security.curve: this libzmq is built without CURVE (zmq_has(\"curve\") is false)");
        return -ENOTSUP;
    }
    uint8_t a[32], b[32], c[32], p[32];
    rwkvd_allow *allow = NULL;
    int rc = load_keys(cfg, a, b, c, p, &allow, err, err_len);
    rwkvd_allow_destroy(&allow);
    return rc;
}

int rwkvd_security_init(rwkvd_daemon *d)
{
    const rwkvd_config *cfg = d->cfg;
    struct rwkvd_security *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    d->sec = s;
    if (!cfg->security.curve.secret_key_file[0]) {
        const rwkvd_strlist *lists[] = {&cfg->endpoints.ingest, &cfg->endpoints.publish, &cfg->endpoints.control,
                                        &cfg->endpoints.ingest_pull};
        for (size_t i = 0; i < sizeof lists / sizeof *lists; i++)
            for (size_t j = 0; j < lists[i]->n; j++)
                if (public_tcp(lists[i]->v[j]))
                    rwkvd_log(LOG_WARNING, "%s binds a non-loopback address WITHOUT CURVE (security.insecure_bind): "
                              "anyone who reaches it can feed, read and control every channel", lists[i]->v[j]);
        if (cfg->replication.bind[0] && public_tcp(cfg->replication.bind))
            rwkvd_log(LOG_WARNING, "replication.bind %s is a non-loopback address WITHOUT CURVE "
                      "(security.insecure_bind)", cfg->replication.bind);
        return 0;
    }
    char err[1200];
    if (!zmq_has("curve")) {
        rwkvd_log(LOG_ERR, "security.curve: this libzmq is built without CURVE (zmq_has(\"curve\") is false)");
        return -ENOTSUP;
    }
    int rc = load_keys(cfg, s->server_secret, s->client_public, s->client_secret, s->peer_public, &s->allow, err,
                       sizeof err);
    if (rc) {
        rwkvd_log(LOG_ERR, "%s", err);
        return rc;
    }
    s->zap = zmq_socket(d->zctx, ZMQ_REP);
    int zero = 0;
    if (!s->zap || zmq_setsockopt(s->zap, ZMQ_LINGER, &zero, sizeof zero) != 0 || zmq_bind(s->zap, ZAP_ENDPOINT) != 0) {
        rwkvd_log(LOG_ERR, "security: cannot bind the ZAP handler on %s: %s", ZAP_ENDPOINT, zmq_strerror(zmq_errno()));
        return -EIO;
    }
    s->on = true;
    rwkvd_log(LOG_NOTICE, "security: CURVE on every socket, %zu client key(s) allowed (%s)", s->allow->n,
              cfg->security.curve.allow);
    return 0;
}

void rwkvd_security_destroy(rwkvd_daemon *d)
{
    struct rwkvd_security *s = d->sec;
    if (!s)
        return;
    for (int r = 0; r < RWKVD_SOCK_N; r++)
        if (s->mon[r])
            zmq_close(s->mon[r]);
    if (s->zap)
        zmq_close(s->zap);
    rwkvd_allow_destroy(&s->allow);
    rwkvd_allow_destroy(&s->pending);
    for (size_t i = 0; i < s->n_subs; i++)
        free(s->subs[i].prefix);
    free(s->subs);
    free(s->forbid);
    memset(s->server_secret, 0, sizeof s->server_secret);
    memset(s->client_secret, 0, sizeof s->client_secret);
    free(s);
    d->sec = NULL;
}

void rwkvd_security_forget(rwkvd_daemon *d, rwkvd_sock_role role)
{
    struct rwkvd_security *s = d->sec;
    if (s && s->mon[role]) {
        zmq_close(s->mon[role]);
        s->mon[role] = NULL;
    }
}

int rwkvd_security_server(rwkvd_daemon *d, void *sock, rwkvd_sock_role role, char *err, size_t err_len)
{
    struct rwkvd_security *s = d->sec;
    if (!s || !s->on)
        return 0;
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, s->server_secret, 32) != 0 ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN)) != 0) {
        snprintf(err, err_len, "%s socket: cannot enable CURVE: %s", role_names[role], zmq_strerror(zmq_errno()));
        return -EIO;
    }
    rwkvd_security_forget(d, role);
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://rwkvd-monitor-%s-%u", role_names[role], ++s->mon_seq);
    int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    void *m = NULL;
    if (zmq_socket_monitor(sock, ep, events) != 0 || !(m = zmq_socket(d->zctx, ZMQ_PAIR)) || zmq_connect(m, ep) != 0) {
        if (m)
            zmq_close(m);
        snprintf(err, err_len, "%s socket: cannot monitor it: %s", role_names[role], zmq_strerror(zmq_errno()));
        return -EIO;
    }
    int zero = 0;
    zmq_setsockopt(m, ZMQ_LINGER, &zero, sizeof zero);
    s->mon[role] = m;
    return 0;
}

int rwkvd_security_client(const rwkvd_daemon *d, void *sock)
{
    const struct rwkvd_security *s = d->sec;
    if (!s || !s->on)
        return 0;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, s->peer_public, 32) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, s->client_public, 32) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, s->client_secret, 32) != 0)
        return -zmq_errno();
    return 0;
}

/* ---- per-message checks -------------------------------------------------------------- */

static void count_forbidden(struct rwkvd_security *s, const char *name, rwkvd_sock_role role)
{
    for (size_t i = 0; i < s->n_forbid; i++)
        if (!strcmp(s->forbid[i].name, name)) {
            s->forbid[i].n[role]++;
            return;
        }
    if (s->n_forbid == s->cap_forbid) {
        size_t nc = s->cap_forbid ? s->cap_forbid * 2 : 8;
        forbid_count *v = realloc(s->forbid, nc * sizeof *v);
        if (!v)
            return;
        s->forbid = v;
        s->cap_forbid = nc;
    }
    forbid_count *f = &s->forbid[s->n_forbid++];
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    f->n[role] = 1;
}

/* The sender's key as the allow-list is now: NULL with *name set when it is no longer listed
 * (or, which CURVE with ZAP never lets through, the message carries no User-Id). */
static const rwkvd_key *sender(const struct rwkvd_security *s, const zmq_msg_t *part, const char **name)
{
    const char *uid = zmq_msg_gets((zmq_msg_t *)part, "User-Id");
    *name = uid && uid[0] ? uid : "(unknown)";
    return uid ? rwkvd_allow_by_name(s->allow, uid) : NULL;
}

static int revoked(struct rwkvd_security *s, const char *name, rwkvd_sock_role role, char *why, size_t cap)
{
    snprintf(why, cap, "key '%s' is not on the allow-list (security.curve.allow); refused", name);
    count_forbidden(s, name, role);
    return -EACCES;
}

int rwkvd_security_check_write(rwkvd_daemon *d, const zmq_msg_t *part, rwkvd_sock_role role, const void *channel,
                               size_t len, char *why, size_t cap)
{
    struct rwkvd_security *s = d->sec;
    if (!s || !s->on)
        return 0;
    const char *name;
    const rwkvd_key *k = sender(s, part, &name);
    if (!k)
        return revoked(s, name, role, why, cap);
    if (rwkvd_key_may_write(k, channel, len))
        return 0;
    char p[256];
    rwkvd_key_prefixes_str(k->write, k->n_write, p, sizeof p);
    snprintf(why, cap, "key '%s' may not write channel '%.*s' (its write prefixes: %s)", k->name,
             (int)(len > 128 ? 128 : len), (const char *)channel, p);
    count_forbidden(s, k->name, role);
    return -EACCES;
}

int rwkvd_security_check_control(rwkvd_daemon *d, const zmq_msg_t *part, rwkvp_ctl_cmd cmd, char *why, size_t cap)
{
    struct rwkvd_security *s = d->sec;
    if (!s || !s->on)
        return 0;
    const char *name;
    const rwkvd_key *k = sender(s, part, &name);
    if (!k)
        return revoked(s, name, RWKVD_SOCK_CONTROL, why, cap);
    if (rwkvd_key_may_control(k, cmd))
        return 0;
    static const char *const rights[] = {"none", "read", "all"};
    snprintf(why, cap, "key '%s' may not run %s (its control right: %s)", k->name, rwkvp_ctl_cmd_name(cmd),
             rights[k->control]);
    count_forbidden(s, k->name, RWKVD_SOCK_CONTROL);
    return -EACCES;
}

int rwkvd_security_check_replicate(rwkvd_daemon *d, const zmq_msg_t *part, char *why, size_t cap)
{
    struct rwkvd_security *s = d->sec;
    if (!s || !s->on)
        return 0;
    const char *name;
    const rwkvd_key *k = sender(s, part, &name);
    if (!k)
        return revoked(s, name, RWKVD_SOCK_REPLICATION, why, cap);
    if (k->replicate)
        return 0;
    snprintf(why, cap, "key '%s' may not follow the replication stream (no replicate right)", k->name);
    count_forbidden(s, k->name, RWKVD_SOCK_REPLICATION);
    return -EACCES;
}

static sub_entry *find_sub(struct rwkvd_security *s, const char *name, const char *prefix, size_t len)
{
    for (size_t i = 0; i < s->n_subs; i++)
        if (s->subs[i].len == len && !strcmp(s->subs[i].name, name) && !memcmp(s->subs[i].prefix, prefix, len))
            return &s->subs[i];
    return NULL;
}

void rwkvd_security_subscription(rwkvd_daemon *d, const zmq_msg_t *m)
{
    struct rwkvd_security *s = d->sec;
    size_t n = zmq_msg_size((zmq_msg_t *)m);
    const unsigned char *p = zmq_msg_data((zmq_msg_t *)m);
    if (n < 1 || (p[0] != 0 && p[0] != 1))
        return; /* not a subscription message */
    const char *prefix = (const char *)p + 1;
    size_t len = n - 1;
    const char *name;
    const rwkvd_key *k = sender(s, m, &name);
    if (p[0] == 0) { /* unsubscribe: only what was applied for this key is there to remove */
        bool gone = zmq_msg_gets((zmq_msg_t *)m, "User-Id") == NULL;
        sub_entry *e = NULL;
        if (gone) {
            /* a subscriber's connection ended: libzmq has removed its subscriptions already
             * and reports each without naming the peer, so one entry for the prefix is dropped */
            for (size_t i = 0; i < s->n_subs && !e; i++)
                if (s->subs[i].n > 0 && s->subs[i].len == len && !memcmp(s->subs[i].prefix, prefix, len))
                    e = &s->subs[i];
        } else if (k) {
            e = find_sub(s, k->name, prefix, len);
        }
        if (e && e->n > 0) {
            if (!gone)
                zmq_setsockopt(d->publish, ZMQ_UNSUBSCRIBE, prefix, len);
            e->n--;
            if (d->m.subscriptions > 0)
                d->m.subscriptions--;
        }
        return;
    }
    if (!k || !rwkvd_key_may_read(k, prefix, len)) {
        char pf[256] = "";
        if (k)
            rwkvd_key_prefixes_str(k->read, k->n_read, pf, sizeof pf);
        s->subs_refused++;
        count_forbidden(s, name, RWKVD_SOCK_PUBLISH);
        rwkvd_log(LOG_WARNING, "PUBLISH: subscription '%.*s' of key '%s' refused: %s%s", (int)(len > 128 ? 128 : len),
                  prefix, name, k ? "outside its read prefixes " : "the key is not on the allow-list", pf);
        return;
    }
    if (zmq_setsockopt(d->publish, ZMQ_SUBSCRIBE, prefix, len) != 0)
        return;
    d->m.subscriptions++;
    sub_entry *e = find_sub(s, k->name, prefix, len);
    if (!e) {
        if (s->n_subs == s->cap_subs) {
            size_t nc = s->cap_subs ? s->cap_subs * 2 : 16;
            sub_entry *v = realloc(s->subs, nc * sizeof *v);
            if (!v)
                return;
            s->subs = v;
            s->cap_subs = nc;
        }
        e = &s->subs[s->n_subs];
        memset(e, 0, sizeof *e);
        if (!(e->prefix = malloc(len ? len : 1)))
            return;
        memcpy(e->prefix, prefix, len);
        e->len = len;
        snprintf(e->name, sizeof e->name, "%s", k->name);
        s->n_subs++;
    }
    e->n++;
}

/* ---- reload -------------------------------------------------------------------------- */

int rwkvd_security_prepare_reload(rwkvd_daemon *d, const rwkvd_config *next, char *err, size_t err_len)
{
    struct rwkvd_security *s = d->sec;
    if (!s || !s->on)
        return 0;
    rwkvd_allow_destroy(&s->pending);
    char e[1000];
    int rc = rwkvd_allow_load(next->security.curve.allow, &s->pending, e, sizeof e);
    if (rc) {
        snprintf(err, err_len, "security.curve.allow: %s", e);
        return -EINVAL;
    }
    return 0;
}

/* Unbind the ipc:// endpoints of sock and wait (at most a second) until libzmq has removed
 * their files: the listener closes in an I/O thread, and a file it removed after the new
 * socket was bound would leave the new one unreachable. */
static void unbind_ipc(void *sock, const rwkvd_strlist *eps)
{
    for (size_t i = 0; i < eps->n; i++) {
        const char *ep = eps->v[i];
        if (strncmp(ep, "ipc://", 6) != 0 || ep[6] == '@' || zmq_unbind(sock, ep) != 0)
            continue;
        struct stat st;
        for (int tries = 0; tries < 100 && stat(ep + 6, &st) == 0; tries++) {
            struct timespec ts = {0, 10 * 1000000};
            nanosleep(&ts, NULL);
        }
    }
}

void rwkvd_security_commit_reload(rwkvd_daemon *d)
{
    struct rwkvd_security *s = d->sec;
    if (!s || !s->on || !s->pending)
        return;
    rwkvd_allow_destroy(&s->allow);
    s->allow = s->pending;
    s->pending = NULL;
    bool cut = false;
    for (size_t i = 0; i < s->n_subs && !cut; i++) {
        const rwkvd_key *k = rwkvd_allow_by_name(s->allow, s->subs[i].name);
        if (s->subs[i].n > 0 && (!k || !rwkvd_key_may_read(k, s->subs[i].prefix, s->subs[i].len)))
            cut = true;
    }
    rwkvd_log(LOG_NOTICE, "security: allow-list reloaded, %zu client key(s) allowed", s->allow->n);
    if (!cut || !d->publish)
        return;
    /* libzmq cannot drop one peer's subscriptions: reopen PUBLISH; subscribers reconnect */
    rwkvd_log(LOG_NOTICE, "security: a removed or narrowed key holds subscriptions: reopening PUBLISH "
              "(every subscriber reconnects and subscribes again)");
    rwkvd_security_forget(d, RWKVD_SOCK_PUBLISH);
    unbind_ipc(d->publish, &d->cfg->endpoints.publish);
    zmq_close(d->publish);
    d->publish = NULL;
    for (size_t i = 0; i < s->n_subs; i++)
        free(s->subs[i].prefix);
    s->n_subs = 0;
    d->m.subscriptions = 0;
    s->reloads_reopened++;
    char err[600];
    int rc = -EADDRINUSE;
    /* the old listener closes in a libzmq I/O thread: retry the bind a little while */
    for (int tries = 0; tries < 100 && rc == -EADDRINUSE; tries++) {
        if (d->publish) {
            rwkvd_security_forget(d, RWKVD_SOCK_PUBLISH);
            zmq_close(d->publish);
            d->publish = NULL;
        }
        if ((rc = rwkvd_publish_open(d, err, sizeof err)) == -EADDRINUSE) {
            struct timespec ts = {0, 20 * 1000000};
            nanosleep(&ts, NULL);
        }
    }
    if (rc) {
        rwkvd_log(LOG_ERR, "security: cannot reopen PUBLISH: %s; stopping", err);
        if (d->publish) {
            rwkvd_security_forget(d, RWKVD_SOCK_PUBLISH);
            zmq_close(d->publish);
            d->publish = NULL;
        }
        d->exit_status = 1;
        rwkvd_daemon_stop(d, "PUBLISH lost");
    }
}

/* ---- the loop's part: ZAP and monitors -------------------------------------------------- */

int rwkvd_security_pollitems(rwkvd_daemon *d, zmq_pollitem_t *items)
{
    struct rwkvd_security *s = d->sec;
    int n = 0;
    if (!s || !s->on)
        return 0;
    items[n++] = (zmq_pollitem_t){s->zap, 0, ZMQ_POLLIN, 0};
    for (int r = 0; r < RWKVD_SOCK_N && n < RWKVD_SEC_POLL_MAX; r++)
        if (s->mon[r])
            items[n++] = (zmq_pollitem_t){s->mon[r], 0, ZMQ_POLLIN, 0};
    return n;
}

static void serve_zap(struct rwkvd_security *s)
{
    for (int budget = 0; budget < 64; budget++) {
        zmq_msg_t parts[8];
        rwkvp_frame f[8];
        size_t n = 0, total = 0;
        for (;;) {
            zmq_msg_t part;
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, s->zap, total == 0 ? ZMQ_DONTWAIT : 0) < 0) {
                zmq_msg_close(&part);
                for (size_t i = 0; i < n; i++)
                    zmq_msg_close(&parts[i]);
                return;
            }
            int more = zmq_msg_more(&part);
            total++;
            if (n < 8) {
                parts[n] = part;
                f[n].data = zmq_msg_data(&parts[n]);
                f[n].len = zmq_msg_size(&parts[n]);
                n++;
            } else {
                zmq_msg_close(&part);
            }
            if (!more)
                break;
        }
        rwkvd_zap_reply r;
        rwkvd_zap_result res = rwkvd_zap_decide(s->allow, f, total == n ? n : 0, &r);
        s->zap_results[res]++;
        if (res == RWKVD_ZAP_UNKNOWN_KEY && n == 7) {
            char z[41];
            zmq_z85_encode(z, f[6].data, 32);
            rwkvd_log(LOG_WARNING, "ZAP: refused a CURVE client from %.*s: key %s is not on the allow-list",
                      (int)(f[3].len > 64 ? 64 : f[3].len), (const char *)f[3].data, z);
        } else if (res != RWKVD_ZAP_OK) {
            rwkvd_log(LOG_WARNING, "ZAP: refused a connection: %s", r.text);
        }
        zmq_send(s->zap, "1.0", 3, ZMQ_SNDMORE);
        zmq_send(s->zap, r.request_id.len ? r.request_id.data : "", r.request_id.len, ZMQ_SNDMORE);
        zmq_send(s->zap, r.status, 3, ZMQ_SNDMORE);
        zmq_send(s->zap, r.text, strlen(r.text), ZMQ_SNDMORE);
        zmq_send(s->zap, r.user_id, strlen(r.user_id), ZMQ_SNDMORE);
        zmq_send(s->zap, "", 0, 0);
        for (size_t i = 0; i < n; i++)
            zmq_msg_close(&parts[i]);
    }
}

static void serve_monitor(struct rwkvd_security *s, int role)
{
    for (int budget = 0; budget < 64; budget++) {
        zmq_msg_t ev, addr;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, s->mon[role], ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return;
        }
        uint16_t event = 0;
        uint32_t value = 0;
        if (zmq_msg_size(&ev) >= 6) {
            const uint8_t *p = zmq_msg_data(&ev);
            memcpy(&event, p, 2);
            memcpy(&value, p + 2, 4);
        }
        bool more = zmq_msg_more(&ev);
        zmq_msg_close(&ev);
        if (more) { /* the endpoint frame */
            zmq_msg_init(&addr);
            zmq_msg_recv(&addr, s->mon[role], 0);
            zmq_msg_close(&addr);
        }
        int k = HS_OTHER;
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            k = HS_ACCEPTED;
        else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            k = HS_NOT_ALLOWED;
        else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL && value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
            k = HS_MECHANISM;
        else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL && value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)
            k = HS_CRYPTO;
        s->handshakes[role][k]++;
        if (k == HS_MECHANISM || k == HS_CRYPTO)
            rwkvd_log(LOG_INFO, "%s: a connection's handshake failed: %s", role_names[role],
                      k == HS_MECHANISM ? "the client does not use CURVE"
                                        : "CURVE handshake could not be decrypted (wrong server key?)");
    }
}

void rwkvd_security_handle(rwkvd_daemon *d, const zmq_pollitem_t *items, int n)
{
    struct rwkvd_security *s = d->sec;
    for (int i = 0; i < n; i++) {
        if (!(items[i].revents & ZMQ_POLLIN))
            continue;
        if (items[i].socket == s->zap) {
            serve_zap(s);
            continue;
        }
        for (int r = 0; r < RWKVD_SOCK_N; r++)
            if (s->mon[r] && items[i].socket == s->mon[r])
                serve_monitor(s, r);
    }
}

/* ---- STATUS and METRICS ---------------------------------------------------------------- */

void rwkvd_security_status(const rwkvd_daemon *d, json_t *status)
{
    const struct rwkvd_security *s = d->sec;
    bool on = s && s->on;
    json_t *j = json_pack("{s:b, s:b, s:I}", "curve", on, "insecure_bind",
                          d->cfg->security.insecure_bind || d->cfg->endpoints.allow_public_bind, "keys",
                          (json_int_t)(on ? s->allow->n : 0));
    if (j && on)
        json_object_set_new(j, "allow", json_string(d->cfg->security.curve.allow));
    if (j)
        json_object_set_new(status, "security", j);
}

void rwkvd_security_metrics(const rwkvd_daemon *d, FILE *f)
{
    const struct rwkvd_security *s = d->sec;
    bool on = s && s->on;
    fprintf(f, "# HELP rwkvd_security_curve Whether CURVE and the ZAP allow-list are on.\n"
               "# TYPE rwkvd_security_curve gauge\nrwkvd_security_curve %d\n",
            on ? 1 : 0);
    if (!on)
        return;
    fprintf(f, "# HELP rwkvd_security_keys Client keys on the allow-list.\n"
               "# TYPE rwkvd_security_keys gauge\nrwkvd_security_keys %zu\n",
            s->allow->n);
    fprintf(f, "# HELP rwkvd_security_connections_total CURVE handshakes by socket and result (accepted, or the "
               "reason of a refusal: mechanism = no CURVE, crypto = wrong server key, not_allowed = ZAP refused "
               "the client key).\n# TYPE rwkvd_security_connections_total counter\n");
    for (int r = 0; r < RWKVD_SOCK_N; r++)
        for (int k = 0; k < HS_N; k++)
            if (s->handshakes[r][k] || k == HS_ACCEPTED)
                fprintf(f, "rwkvd_security_connections_total{socket=\"%s\",result=\"%s\"} %llu\n", role_names[r],
                        hs_names[k], (unsigned long long)s->handshakes[r][k]);
    fprintf(f, "# HELP rwkvd_security_zap_requests_total ZAP requests by decision.\n"
               "# TYPE rwkvd_security_zap_requests_total counter\n");
    for (int k = 0; k < RWKVD_ZAP_N_REASONS; k++)
        fprintf(f, "rwkvd_security_zap_requests_total{result=\"%s\"} %llu\n", rwkvd_zap_reason_name(k),
                (unsigned long long)s->zap_results[k]);
    fprintf(f, "# HELP rwkvd_security_forbidden_total Messages and subscriptions refused (403) by key name and "
               "socket.\n# TYPE rwkvd_security_forbidden_total counter\n");
    for (size_t i = 0; i < s->n_forbid; i++)
        for (int r = 0; r < RWKVD_SOCK_N; r++)
            if (s->forbid[i].n[r])
                fprintf(f, "rwkvd_security_forbidden_total{key=\"%s\",socket=\"%s\"} %llu\n", s->forbid[i].name,
                        role_names[r], (unsigned long long)s->forbid[i].n[r]);
    fprintf(f, "# HELP rwkvd_security_subscriptions_refused_total PUBLISH subscriptions outside the key's read "
               "prefixes.\n# TYPE rwkvd_security_subscriptions_refused_total counter\n"
               "rwkvd_security_subscriptions_refused_total %llu\n",
            (unsigned long long)s->subs_refused);
    fprintf(f, "# HELP rwkvd_security_publish_reopened_total Times PUBLISH was reopened to cut a removed key's "
               "subscriptions.\n# TYPE rwkvd_security_publish_reopened_total counter\n"
               "rwkvd_security_publish_reopened_total %llu\n",
            (unsigned long long)s->reloads_reopened);
}
