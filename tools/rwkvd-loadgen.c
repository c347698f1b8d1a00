/* rwkvd-loadgen — a load generator for rwkvd in C (a benchmark, not a test), for the rates
 * a Python producer cannot offer on two cores.
 *
 *   rwkvd-loadgen --spawn model.pth --channels 10,100,1000 --tokens 256 --chunk 16
 *   rwkvd-loadgen --spawn model.pth --phase latency --lat-channels 1000 --rate 2000
 *   rwkvd-loadgen --ingest EP --control EP --channels 64      # a daemon already running
 *
 * What it is: producers that speak RWKV1 (proto/PROTOCOL.md) through proto/'s codec, one
 * DEALER per producer thread, each thread owning the channels c with c % threads == its
 * index. A producer sends in seq order, keeps the costs of the messages in flight per
 * channel within its credit in tokens (§8.1: each counted at the largest cost a message of
 * the phase has, a TEXT's octets plus one separator token; one message until the first
 * reply) and at most --window messages in all (at most the daemon's
 * endpoints.ingest_reply_hwm, §8.3; the loadgen does not resend on a timeout), stops at the
 * socket's high-water mark,
 * and after a retryable error for seq s (429, 409, 500, 503, 507) pauses the channel, waits
 * for CREDIT (429; or 1 s) or a back-off, and resends from s (§8.2; 425 for what was in
 * flight behind s is expected). Every message must end with an ACK (or DUP).
 *
 * Phases:
 *   throughput  per channel count M: M channels x --tokens token ids as TOKENS messages of
 *               --chunk ids. Timed from the first send until the last ACK has arrived and
 *               the daemon has fed every token (METRICS rwkvd_input_tokens_total; each
 *               channel's last token stays held, PROTOCOL.md). Beside it, from the daemon's
 *               METRICS over the same run: the engine's own rate (tokens fed / worker time
 *               in jobs) and end-to-end / engine (target >= 80%), the loop thread's CPU per
 *               input token (target <= 1000 ns), and from STATUS its longest iteration
 *               during the run (target <= 5 ms).
 *   latency     --lat-channels channels with a classification profile (--profile, selected
 *               by a TASK message; with --spawn MODEL a two-label one-token profile), fed
 *               --event-bytes-byte TEXT events at --rate events/s in all, open loop, round
 *               robin, for --duration s. Latency = CLASS received - event sent, both here;
 *               p50/p99 over every event but each channel's first. Target: p99 <= 2 step
 *               times (the daemon's mean job time over the phase).
 * The loadgen's own CPU (getrusage) is printed with every figure, so it is clear it was not
 * the bottleneck.
 *
 * It starts nothing unless asked: --spawn FILE runs rwkvd in a temp dir. FILE is either a
 * checkpoint (.pth), for which a config is written as tools/rwkvd-loadgen.py does (byte
 * vocabulary, a state slot per channel, a queue that takes a channel's whole input,
 * ipc:// sockets and state_dir in the temp dir; --durability, --fsync, --max-batch,
 * --engine-threads), or an rwkvd YAML config, run as it is with RUNTIME_DIRECTORY and
 * STATE_DIRECTORY set to the temp dir (which the shipped conf/rwkvd.yaml uses for its
 * sockets and state). Without --spawn the endpoints are the clients' defaults ($RWKVD_INGEST,
 * ..., else ipc://$RUNTIME_DIRECTORY/ingest.sock) or --ingest/--publish/--control.
 * Channel names carry the loadgen's pid and producer ids its pid and thread, so runs
 * against a long-running daemon never collide with earlier ones.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "curve.h"
#include "rwkvc.h"
#include "rwkvp.h"

#ifndef LOADGEN_RWKVD
#define LOADGEN_RWKVD "rwkvd"
#endif

#define TARGET_E2E 0.80         /* end to end / engine */
#define TARGET_LOOP_NS 1000.0   /* loop CPU per input token */
#define TARGET_ITER_MS 5.0      /* longest loop iteration */
#define TARGET_P99_STEPS 2.0    /* p99 ingest -> publish in step times */
#define CTL_TIMEOUT_MS 30000
#define MAX_PARTS 12

/* ---- options ---------------------------------------------------------------------- */

typedef struct {
    const char *phase;
    char ingest[512], publish[512], control[512];
    const char *spawn;
    const char *rwkvd;
    const char *chans;
    int tokens, chunk, threads;
    int lat_channels, event_bytes;
    double rate, duration_s;
    const char *profile;
    int engine_threads, max_batch;
    int window;        /* messages in flight per producer thread, at most */
    int idle;          /* idle channels created before each measured run */
    long queue_tokens; /* 0: tokens + chunk */
    const char *fsync; /* NULL: the daemon's default */
    bool durability;
    double timeout_s;
    bool keep, verbose;
} opts;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* ---- the daemon: spawned or not, and its control socket ------------------------------ */

typedef struct {
    void *zctx;
    void *req;
    char control[512];
    pid_t pid;        /* spawned rwkvd, or 0 */
    char dir[256];    /* its temp dir, or "" */
    bool keep;
} daemon_t;

static daemon_t g_daemon;

static void daemon_stop(daemon_t *d)
{
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        int st;
        for (int i = 0; i < 300 && waitpid(d->pid, &st, WNOHANG) == 0; i++)
            usleep(100000);
        if (waitpid(d->pid, &st, WNOHANG) == 0) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, &st, 0);
        }
        d->pid = 0;
    }
    if (d->dir[0] && !d->keep) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", d->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "rwkvd-loadgen: could not remove %s\n", d->dir);
    } else if (d->dir[0]) {
        fprintf(stderr, "rwkvd-loadgen: kept %s\n", d->dir);
    }
    d->dir[0] = '\0';
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("rwkvd-loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (g_daemon.dir[0]) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "tail -n 20 '%s/rwkvd.log' >&2", g_daemon.dir);
        if (system(cmd) != 0)
            fprintf(stderr, "(no daemon log)\n");
    }
    daemon_stop(&g_daemon);
    exit(1);
}

/* One control request; the body (NUL-terminated, malloc'd) of a 200 reply, or NULL on a
 * timeout (the REQ socket is then recreated) or an error reply. */
/* CURVE keys from RWKV_SERVER_KEY / RWKV_CLIENT_KEY (clients/curve.h), for a daemon with
 * security.curve: the cost of CURVE is the same run with and without them. */
static void curve_or_die(void *sock)
{
    char err[700];
    if (rwkvc_curve_setup(NULL, sock, err, sizeof err) < 0)
        die("%s", err);
}

static char *control(daemon_t *d, rwkvp_ctl_cmd cmd, long timeout_ms)
{
    if (!d->req) {
        d->req = zmq_socket(d->zctx, ZMQ_REQ);
        int zero = 0;
        zmq_setsockopt(d->req, ZMQ_LINGER, &zero, sizeof zero);
        curve_or_die(d->req);
        if (zmq_connect(d->req, d->control) != 0)
            die("cannot connect to %s: %s", d->control, zmq_strerror(zmq_errno()));
    }
    rwkvp_ctl_request rq = {.cmd = cmd};
    rwkvp_msg msg;
    rwkvp_error e;
    if (rwkvp_ctl_request_encode(&rq, &msg, &e) != 0 || rwkvc_send(d->req, msg.frames, msg.n, 0) != 0)
        die("cannot send %s", rwkvp_ctl_cmd_name(cmd));
    rwkvc_zmsg zm = {0};
    if (rwkvc_recv(d->req, &zm, timeout_ms) != 0) {
        zmq_close(d->req);
        d->req = NULL;
        return NULL;
    }
    rwkvp_ctl_response r;
    char *out = NULL;
    if (zm.n_total == zm.n && rwkvp_ctl_response_decode(zm.f, zm.n, NULL, &r, &e) == 0) {
        if (r.code == 200 && (out = malloc(r.body.len + 1)) != NULL) {
            memcpy(out, r.body.data, r.body.len);
            out[r.body.len] = '\0';
        } else if (r.code != 200) {
            fprintf(stderr, "rwkvd-loadgen: %s answered %d: %.*s\n", rwkvp_ctl_cmd_name(cmd), r.code,
                    (int)r.body.len, (const char *)r.body.data);
        }
    }
    rwkvc_zmsg_close(&zm);
    return out;
}

static json_t *status(daemon_t *d)
{
    char *s = control(d, RWKVP_CTL_STATUS, CTL_TIMEOUT_MS);
    if (!s)
        die("no STATUS reply from %s", d->control);
    json_t *j = json_loads(s, 0, NULL);
    free(s);
    if (!j)
        die("STATUS reply is not JSON");
    return j;
}

/* The metrics this tool reads (a missing one reads as NaN). */
typedef struct {
    double input_tokens, tokens, step_s, steps, loop_cpu_s;
} metrics_t;

static double metric(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; (p = strstr(p, name)) != NULL; p += n)
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return NAN;
}

static metrics_t metrics(daemon_t *d)
{
    char *s = control(d, RWKVP_CTL_METRICS, CTL_TIMEOUT_MS);
    if (!s)
        die("no METRICS reply from %s", d->control);
    metrics_t m = {metric(s, "rwkvd_input_tokens_total"), metric(s, "rwkvd_tokens_total"),
                   metric(s, "rwkvd_step_seconds_total"), metric(s, "rwkvd_steps_total"),
                   metric(s, "rwkvd_loop_cpu_seconds_total")};
    free(s);
    return m;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        die("cannot write %s: %s", path, strerror(errno));
}

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Start rwkvd for `n_channels` channels (FILE .pth: a config written here) and wait until
 * it answers STATUS. Sets the endpoints in o. */
static void daemon_spawn(daemon_t *d, opts *o, int n_channels, bool profile)
{
    snprintf(d->dir, sizeof d->dir, "%s/rwkvd-loadgen.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(d->dir))
        die("mkdtemp: %s", strerror(errno));
    snprintf(o->ingest, sizeof o->ingest, "ipc://%s/ingest.sock", d->dir);
    snprintf(o->publish, sizeof o->publish, "ipc://%s/publish.sock", d->dir);
    snprintf(o->control, sizeof o->control, "ipc://%s/control.sock", d->dir);
    char conf[400];
    if (ends_with(o->spawn, ".yaml") || ends_with(o->spawn, ".yml")) {
        snprintf(conf, sizeof conf, "%s", o->spawn);
    } else {
        char text[4096], fs[64] = "", prof[512] = "";
        long slots = (long)n_channels * (profile ? 2 : 1) + 8;
        long q = o->queue_tokens ? o->queue_tokens : (long)o->tokens + o->chunk;
        if (o->fsync)
            snprintf(fs, sizeof fs, ", fsync: %s", o->fsync);
        if (profile)
            snprintf(prof, sizeof prof,
                     "tasks:\n  default_profile: \"\"\n  profiles:\n    yn:\n      kind: classify_labels\n"
                     "      trigger: event\n      labels: [{name: y, text: \"y\"}, {name: n, text: \"n\"}]\n");
        snprintf(text, sizeof text,
                 "model: {path: \"%s\", vocab: bytes, threads: %d, state_slots: %ld, max_batch: %d}\n"
                 "endpoints: {ingest: \"%s\", publish: \"%s\", control: \"%s\"}\n"
                 "limits: {max_queue_tokens: %ld, max_channels: %ld}\n"
                 "state_dir: \"%s/state\"\ndurability: {enabled: %s%s}\n%s",
                 o->spawn, o->engine_threads, slots, o->max_batch, o->ingest, o->publish, o->control, q, slots,
                 d->dir, o->durability ? "true" : "false", fs, prof);
        snprintf(conf, sizeof conf, "%s/rwkvd.yaml", d->dir);
        write_file(conf, text);
    }
    char logp[400];
    snprintf(logp, sizeof logp, "%s/rwkvd.log", d->dir);
    fflush(stdout); /* or the child's copy of the buffer is written again */
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        FILE *lf = freopen(logp, "w", stdout);
        if (!lf || dup2(STDOUT_FILENO, STDERR_FILENO) < 0)
            _exit(127);
        setenv("RUNTIME_DIRECTORY", d->dir, 1);
        char sd[300];
        snprintf(sd, sizeof sd, "%s/state", d->dir);
        mkdir(sd, 0700);
        setenv("STATE_DIRECTORY", sd, 1);
        execl(o->rwkvd, o->rwkvd, "-c", conf, (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", o->rwkvd, strerror(errno));
        _exit(127);
    }
    d->pid = pid;
    snprintf(d->control, sizeof d->control, "%s", o->control);
    double deadline = now_s() + 120;
    for (;;) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            d->pid = 0;
            die("rwkvd exited at start (%s -c %s)", o->rwkvd, conf);
        }
        char *s = control(d, RWKVP_CTL_STATUS, 500);
        if (s) {
            free(s);
            break;
        }
        if (now_s() > deadline)
            die("rwkvd did not answer STATUS within 120 s");
    }
}

/* ---- producers ------------------------------------------------------------------------ */

typedef struct {
    char name[RWKVP_CHANNEL_MAX + 1];
    size_t name_len;
    uint32_t n_msgs;     /* messages of the whole run */
    uint32_t n_avail;    /* messages that may be sent now (latency: scheduled so far) */
    uint32_t next;       /* index of the next message to send (seq = next + 1) */
    uint32_t acked;      /* highest seq answered ACK/DUP/CREDIT */
    uint32_t in_flight;  /* sent and not answered */
    uint64_t credit;     /* tokens (§8.1); meaningful once credit_known */
    bool credit_known;
    bool paused, wait_credit, queued;
    int64_t pause_until_ns;
    int backoff_ms;
} chan_t;

typedef struct producer producer_t;
typedef void (*payload_fn)(producer_t *p, int c, uint32_t k, rwkvp_op *op, rwkvp_frame *payload);

struct producer {
    int index;
    void *zctx, *sock;
    char producer[RWKVP_NAME_MAX + 1];
    chan_t *ch;            /* (n_ch) this producer's channels */
    int *ch_global;        /* (n_ch) their global indices */
    int n_ch;
    int *ready;            /* (n_ch) ring of channels that may have something to send */
    int r_head, r_count;
    int n_done, n_paused;
    uint32_t in_flight, max_in_flight; /* all channels; 0 = no bound */
    bool capped;           /* send_ready stopped at max_in_flight */
    payload_fn payload;
    uint64_t max_cost;     /* the largest §8.1 cost of this phase's messages */
    void *user;
    /* results */
    uint64_t n_sent, n_replies, n_resent, n_errors, n_refused[6]; /* 409 429 500 503 507 425 */
    double last_ack_s;
    const char *fatal;
    char fatal_buf[300];
};

static void ready_push(producer_t *p, int c)
{
    if (p->ch[c].queued)
        return;
    p->ch[c].queued = true;
    p->ready[(p->r_head + p->r_count++) % p->n_ch] = c;
}

static bool can_send(const producer_t *p, const chan_t *c)
{
    if (c->paused || c->next >= c->n_avail)
        return false;
    if (!c->credit_known) /* a new channel's queue is empty: one message, its reply brings the credit */
        return c->in_flight == 0;
    uint64_t cost = p->max_cost ? p->max_cost : 1;
    return ((uint64_t)c->in_flight + 1) * cost <= c->credit;
}

/* Send what the channels in the ready ring may send. false when the socket is at its HWM. */
static bool send_ready(producer_t *p)
{
    p->capped = false;
    while (p->r_count) {
        int ci = p->ready[p->r_head];
        chan_t *c = &p->ch[ci];
        while (can_send(p, c)) {
            if (p->max_in_flight && p->in_flight >= p->max_in_flight) {
                p->capped = true; /* go on as replies come */
                return true;
            }
            rwkvp_ingest m = {.channel = {c->name, c->name_len},
                              .producer = {p->producer, strlen(p->producer)},
                              .seq = (uint64_t)c->next + 1};
            p->payload(p, ci, c->next, &m.op, &m.payload);
            rwkvp_msg msg;
            rwkvp_error e;
            if (rwkvp_ingest_encode(&m, &msg, &e) != 0) {
                snprintf(p->fatal_buf, sizeof p->fatal_buf, "cannot encode: %s", e.text);
                p->fatal = p->fatal_buf;
                return true;
            }
            int rc = rwkvc_send(p->sock, msg.frames, msg.n, ZMQ_DONTWAIT);
            if (rc == -EAGAIN)
                return false; /* at the high-water mark: wait for POLLOUT */
            if (rc) {
                snprintf(p->fatal_buf, sizeof p->fatal_buf, "send: %s", zmq_strerror(-rc));
                p->fatal = p->fatal_buf;
                return true;
            }
            c->next++;
            c->in_flight++;
            p->in_flight++;
            p->n_sent++;
        }
        c->queued = false;
        p->r_head = (p->r_head + 1) % p->n_ch;
        p->r_count--;
    }
    return true;
}

static int refused_index(int code)
{
    switch (code) {
    case 409: return 0;
    case 429: return 1;
    case 500: return 2;
    case 503: return 3;
    case 507: return 4;
    default: return 5;
    }
}

static void pause_at(producer_t *p, chan_t *c, uint32_t seq, int code)
{
    if (!c->paused)
        p->n_paused++;
    c->paused = true;
    if (seq - 1 < c->next) {
        p->n_resent += c->next - (seq - 1);
        c->next = seq - 1;
    }
    c->wait_credit = code == RWKVP_E_NO_CREDIT;
    if (c->wait_credit) {
        c->pause_until_ns = now_ns() + 1000000000;
    } else {
        c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : 100;
        if (c->backoff_ms > 5000)
            c->backoff_ms = 5000;
        c->pause_until_ns = now_ns() + (int64_t)c->backoff_ms * 1000000;
    }
}

static void resume(producer_t *p, int ci)
{
    chan_t *c = &p->ch[ci];
    if (!c->paused)
        return;
    c->paused = false;
    p->n_paused--;
    ready_push(p, ci);
}

static void cover(producer_t *p, int ci, uint64_t acked)
{
    chan_t *c = &p->ch[ci];
    if (acked <= c->acked)
        return;
    bool was_done = c->acked >= c->n_msgs;
    c->acked = (uint32_t)(acked > c->n_msgs ? c->n_msgs : acked);
    if (c->next < c->acked)
        c->next = c->acked;
    if (!was_done && c->acked >= c->n_msgs) {
        p->n_done++;
        p->last_ack_s = now_s();
    }
}

/* The channel a reply names: the index in p->ch (names are "<prefix><global index>"). */
static int find_chan(producer_t *p, const rwkvp_frame *name)
{
    const char *s = name->data;
    size_t n = name->len, i = n;
    while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9')
        i--;
    if (i == n)
        return -1;
    long g = 0;
    for (size_t k = i; k < n && g < 1L << 40; k++) /* the frame is not NUL-terminated */
        g = g * 10 + (s[k] - '0');
    for (int lo = 0, hi = p->n_ch - 1; lo <= hi;) {
        int mid = (lo + hi) / 2;
        if (p->ch_global[mid] == g)
            return p->ch[mid].name_len == n && memcmp(p->ch[mid].name, s, n) == 0 ? mid : -1;
        if (p->ch_global[mid] < g)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

static void handle_reply(producer_t *p, const rwkvp_reply *r)
{
    p->n_replies++;
    int ci = r->channel.len ? find_chan(p, &r->channel) : -1;
    if (ci < 0) {
        if (r->kind == RWKVP_REPLY_ERROR) {
            snprintf(p->fatal_buf, sizeof p->fatal_buf, "ERROR %d without a known channel: %.*s", r->code,
                     (int)r->text.len, (const char *)r->text.data);
            p->fatal = p->fatal_buf;
        }
        return;
    }
    chan_t *c = &p->ch[ci];
    switch (r->kind) {
    case RWKVP_REPLY_ACK:
    case RWKVP_REPLY_DUP:
        if (c->in_flight) {
            c->in_flight--;
            p->in_flight--;
        }
        c->credit = r->credit;
        c->credit_known = true;
        c->backoff_ms = 0;
        cover(p, ci, r->acked);
        break;
    case RWKVP_REPLY_CREDIT:
        c->credit = r->credit;
        c->credit_known = true;
        cover(p, ci, r->acked);
        if (c->paused && c->wait_credit)
            resume(p, ci);
        break;
    case RWKVP_REPLY_ERROR: {
        if (c->in_flight) {
            c->in_flight--;
            p->in_flight--;
        }
        p->n_errors++;
        rwkvp_retry retry = rwkvp_code_retry(r->code);
        if (retry == RWKVP_RETRY_NO) {
            snprintf(p->fatal_buf, sizeof p->fatal_buf, "%.*s seq %llu rejected: %d %.*s", (int)c->name_len, c->name,
                     (unsigned long long)r->seq, r->code, (int)r->text.len, (const char *)r->text.data);
            p->fatal = p->fatal_buf;
            return;
        }
        p->n_refused[refused_index(r->code)]++;
        if (r->code == RWKVP_E_PAUSED) {
            if (!c->paused) /* the pair is paused at a seq whose error we have not seen: resend from the oldest */
                pause_at(p, c, c->acked + 1, r->code);
            return;
        }
        if (r->has_seq && r->seq > c->acked)
            pause_at(p, c, (uint32_t)r->seq, r->code);
        break;
    }
    }
    if (can_send(p, c)) {
        ready_push(p, ci);
    } else if (!c->paused && c->in_flight == 0 && c->next < c->n_avail) {
        /* too little credit and no reply to come: probe with the next seq after 200 ms */
        p->n_paused++;
        c->paused = c->wait_credit = true;
        c->pause_until_ns = now_ns() + 200000000;
    }
}

static void drain(producer_t *p)
{
    for (;;) {
        zmq_msg_t parts[MAX_PARTS];
        rwkvp_frame f[MAX_PARTS];
        size_t n = 0, total = 0;
        int more = 1;
        while (more) {
            zmq_msg_t *m = &parts[n < MAX_PARTS ? n : MAX_PARTS - 1];
            if (n == MAX_PARTS)
                zmq_msg_close(m);
            zmq_msg_init(m);
            if (zmq_msg_recv(m, p->sock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(m);
                for (size_t i = 0; i < n; i++)
                    zmq_msg_close(&parts[i]);
                return; /* EAGAIN: nothing more now (a message arrives whole or not at all) */
            }
            more = zmq_msg_more(m);
            total++;
            if (n < MAX_PARTS)
                n++;
        }
        for (size_t i = 0; i < n; i++)
            f[i] = (rwkvp_frame){zmq_msg_data(&parts[i]), zmq_msg_size(&parts[i])};
        rwkvp_reply r;
        rwkvp_error e;
        size_t off = n >= 1 && f[0].len == 0 ? 1 : 0;
        if (total == n && rwkvp_reply_decode(f + off, n - off, NULL, &r, &e) == 0)
            handle_reply(p, &r);
        else
            fprintf(stderr, "rwkvd-loadgen: malformed reply ignored: %s\n", total != n ? "too many frames" : e.text);
        for (size_t i = 0; i < n; i++)
            zmq_msg_close(&parts[i]);
    }
}

/* Paused channels whose wait is over resume; returns ms until the next one is due (-1 none). */
static long pause_tick(producer_t *p)
{
    if (!p->n_paused)
        return -1;
    int64_t now = now_ns(), next = INT64_MAX;
    for (int i = 0; i < p->n_ch; i++) {
        chan_t *c = &p->ch[i];
        if (!c->paused)
            continue;
        if (c->pause_until_ns <= now) {
            if (c->wait_credit)
                c->credit_known = false; /* no CREDIT in time: probe with one message */
            resume(p, i);
        } else if (c->pause_until_ns < next) {
            next = c->pause_until_ns;
        }
    }
    return next == INT64_MAX ? -1 : (long)((next - now) / 1000000 + 1);
}

typedef void (*tick_fn)(producer_t *p, void *sub, long *timeout_ms);

/* Run until every channel's last message is answered, or the timeout passes without a
 * reply. tick (optional) is called every iteration: it schedules input and reads sub. */
static void produce(producer_t *p, void *sub, tick_fn tick, double timeout_s)
{
    for (int i = 0; i < p->n_ch; i++)
        ready_push(p, i);
    double last_progress = now_s();
    uint64_t seen = 0;
    while (p->n_done < p->n_ch && !p->fatal) {
        long timeout = 100;
        if (tick)
            tick(p, sub, &timeout);
        bool room = send_ready(p);
        long t = pause_tick(p);
        if (t >= 0 && t < timeout)
            timeout = t;
        zmq_pollitem_t it[2] = {{p->sock, 0, (short)(ZMQ_POLLIN | (room ? 0 : ZMQ_POLLOUT)), 0}, {sub, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(it, sub ? 2 : 1, p->r_count && room && !p->capped ? 0 : timeout) < 0 && zmq_errno() != EINTR) {
            p->fatal = "zmq_poll failed";
            break;
        }
        drain(p);
        uint64_t progress = p->n_sent + p->n_replies;
        if (progress != seen) {
            seen = progress;
            last_progress = now_s();
        }
        if (now_s() - last_progress > timeout_s) {
            for (int i = 0, shown = 0; i < p->n_ch && shown < 5; i++) {
                const chan_t *c = &p->ch[i];
                if (c->acked < c->n_msgs && ++shown)
                    fprintf(stderr, "rwkvd-loadgen: %s: next %u of %u (%u available), acked %u, in flight %u, credit "
                            "%llu%s\n", c->name, c->next, c->n_msgs, c->n_avail, c->acked, c->in_flight,
                            (unsigned long long)c->credit, c->paused ? ", paused" : "");
            }
            snprintf(p->fatal_buf, sizeof p->fatal_buf, "producer %d: no progress for %.0f s (%d of %d channels done)",
                     p->index, timeout_s, p->n_done, p->n_ch);
            p->fatal = p->fatal_buf;
        }
    }
}

static int producer_init(producer_t *p, void *zctx, const char *ingest, int index)
{
    memset(p, 0, sizeof *p);
    p->index = index;
    p->zctx = zctx;
    p->sock = zmq_socket(zctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(p->sock, ZMQ_LINGER, &zero, sizeof zero);
    curve_or_die(p->sock);
    if (zmq_connect(p->sock, ingest) != 0)
        return -zmq_errno();
    snprintf(p->producer, sizeof p->producer, "lg%ld-%d", (long)getpid(), index);
    return 0;
}

static void producer_fini(producer_t *p)
{
    if (p->sock)
        zmq_close(p->sock);
    free(p->ch);
    free(p->ch_global);
    free(p->ready);
    p->sock = NULL;
}

/* ---- throughput ------------------------------------------------------------------------ */

typedef struct {
    int tokens, chunk;
    uint8_t *packed; /* (tokens) little-endian ids, the same for every channel */
} tp_load;

static void tp_payload(producer_t *p, int c, uint32_t k, rwkvp_op *op, rwkvp_frame *payload)
{
    (void)c;
    const tp_load *l = p->user;
    int lo = (int)k * l->chunk, n = l->tokens - lo < l->chunk ? l->tokens - lo : l->chunk;
    *op = RWKVP_OP_TOKENS;
    *payload = (rwkvp_frame){l->packed + (size_t)lo * 4, (size_t)n * 4};
}

static void *tp_thread(void *arg)
{
    producer_t *p = arg;
    produce(p, NULL, NULL, 30);
    return NULL;
}

static void setup_channels(producer_t *ps, int n_prod, int n_channels, const char *prefix, uint32_t n_msgs)
{
    for (int k = 0; k < n_prod; k++) {
        producer_t *p = &ps[k];
        int n = n_channels / n_prod + (k < n_channels % n_prod);
        p->ch = calloc((size_t)(n ? n : 1), sizeof *p->ch);
        p->ch_global = calloc((size_t)(n ? n : 1), sizeof *p->ch_global);
        p->ready = calloc((size_t)(n ? n : 1), sizeof *p->ready);
        if (!p->ch || !p->ch_global || !p->ready)
            die("out of memory");
        p->n_ch = n;
        for (int i = 0; i < n; i++) {
            int g = i * n_prod + k;
            p->ch_global[i] = g;
            chan_t *c = &p->ch[i];
            c->name_len = (size_t)snprintf(c->name, sizeof c->name, "%s%d", prefix, g);
            c->n_msgs = n_msgs;
            c->n_avail = n_msgs;
            c->credit_known = false; /* one message until the first reply brings the credit */
        }
    }
}

static double ms_or_nan(const json_t *st, const char *key)
{
    json_t *loop = json_object_get(st, "loop");
    json_t *v = loop ? json_object_get(loop, key) : NULL;
    return v ? json_number_value(v) * 1e3 : NAN;
}

typedef struct {
    double e2e, ack_rate, engine, ratio, loop_ns, iter_ms, lg_cpu_pct, lg_ns_tok, job_ms;
} tp_result;

static void idle_payload(producer_t *p, int c, uint32_t k, rwkvp_op *op, rwkvp_frame *payload)
{
    (void)c;
    (void)k;
    *op = RWKVP_OP_TOKENS;
    *payload = (rwkvp_frame){p->user, 8}; /* two ids: one fed, one held */
}

/* --idle: n channels that get one message of two ids each, all acknowledged and applied
 * before the measured run, then nothing (so the daemon holds n idle channels). */
static void make_idle(opts *o, daemon_t *d, int n)
{
    unsigned char ids[8];
    uint32_t two[2] = {1, 2};
    rwkvp_tokens_pack(two, 2, ids, sizeof ids);
    producer_t p;
    if (producer_init(&p, d->zctx, o->ingest, 0))
        die("cannot connect to %s", o->ingest);
    p.payload = idle_payload;
    p.max_cost = 2;
    p.user = ids;
    p.max_in_flight = (uint32_t)o->window;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "lg%ld/idle/", (long)getpid());
    setup_channels(&p, 1, n, prefix, 1);
    usleep(100000);
    metrics_t m0 = metrics(d);
    double t0 = now_s();
    produce(&p, NULL, NULL, 60);
    if (p.fatal)
        die("%s", p.fatal);
    metrics_t m1 = metrics(d);
    for (double deadline = now_s() + 60; m1.input_tokens < m0.input_tokens + n; m1 = metrics(d)) {
        if (now_s() > deadline)
            die("the daemon fed %.0f of %d idle channels' tokens within 60 s", m1.input_tokens - m0.input_tokens, n);
        usleep(2000);
    }
    fprintf(stderr, "# %d idle channels created in %.1f s\n", n, now_s() - t0);
    producer_fini(&p);
}

static tp_result throughput(opts *o, daemon_t *d, int m)
{
    if (o->idle > 0)
        make_idle(o, d, o->idle);
    tp_load load = {o->tokens, o->chunk, malloc((size_t)o->tokens * 4)};
    uint32_t *ids = malloc((size_t)o->tokens * sizeof *ids);
    if (!load.packed || !ids)
        die("out of memory");
    for (int i = 0; i < o->tokens; i++)
        ids[i] = (uint32_t)((i * 7 + 1) % 256);
    rwkvp_tokens_pack(ids, (size_t)o->tokens, load.packed, (size_t)o->tokens * 4);
    free(ids);
    uint32_t n_msgs = (uint32_t)((o->tokens + o->chunk - 1) / o->chunk);
    int n_prod = o->threads < m ? o->threads : m;
    producer_t *ps = calloc((size_t)n_prod, sizeof *ps);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "lg%ld/t%d/", (long)getpid(), m);
    for (int k = 0; k < n_prod; k++) {
        if (producer_init(&ps[k], d->zctx, o->ingest, k))
            die("cannot connect to %s", o->ingest);
        ps[k].payload = tp_payload;
        ps[k].max_cost = (uint64_t)load.chunk;
        ps[k].user = &load;
        ps[k].max_in_flight = (uint32_t)o->window;
    }
    setup_channels(ps, n_prod, m, prefix, n_msgs);
    usleep(100000); /* let the DEALERs connect */
    json_decref(status(d)); /* restarts STATUS's "longest iteration since the last STATUS" */
    metrics_t m0 = metrics(d);
    double c0 = cpu_s(), t0 = now_s();
    pthread_t *th = calloc((size_t)n_prod, sizeof *th);
    for (int k = 0; k < n_prod; k++)
        if (pthread_create(&th[k], NULL, tp_thread, &ps[k]) != 0)
            die("pthread_create failed");
    double last_ack = t0;
    uint64_t refused[6] = {0}, resent = 0;
    for (int k = 0; k < n_prod; k++) {
        pthread_join(th[k], NULL);
        if (ps[k].fatal)
            die("%s", ps[k].fatal);
        if (ps[k].last_ack_s > last_ack)
            last_ack = ps[k].last_ack_s;
        for (int i = 0; i < 6; i++)
            refused[i] += ps[k].n_refused[i];
        resent += ps[k].n_resent;
    }
    double c1 = cpu_s();
    double want = m0.input_tokens + (double)m * (o->tokens - 1), t_applied = now_s();
    metrics_t m1 = metrics(d);
    for (double deadline = now_s() + 60; m1.input_tokens < want; m1 = metrics(d)) {
        if (now_s() > deadline)
            die("the daemon fed %.0f of %.0f tokens within 60 s of the last ACK", m1.input_tokens - m0.input_tokens,
                want - m0.input_tokens);
        usleep(2000);
        t_applied = now_s();
    }
    double t1 = t_applied > last_ack ? t_applied : last_ack;
    json_t *st = status(d);
    tp_result r;
    double fed = (double)m * (o->tokens - 1);
    r.e2e = fed / (t1 - t0);
    r.ack_rate = (double)m * o->tokens / (last_ack - t0);
    r.engine = (m1.tokens - m0.tokens) / (m1.step_s - m0.step_s);
    r.ratio = r.e2e / r.engine;
    r.loop_ns = (m1.loop_cpu_s - m0.loop_cpu_s) * 1e9 / (m1.input_tokens - m0.input_tokens);
    r.iter_ms = ms_or_nan(st, "iteration_max_since_last_status_s");
    r.lg_cpu_pct = (c1 - c0) / (last_ack - t0) * 100;
    r.lg_ns_tok = (c1 - c0) * 1e9 / ((double)m * o->tokens);
    r.job_ms = (m1.step_s - m0.step_s) * 1e3 / (m1.steps - m0.steps);
    json_decref(st);
    if (o->verbose || refused[0] + refused[1] + refused[2] + refused[3] + refused[4] + refused[5])
        fprintf(stderr,
                "# %d channels: refused 409 %llu, 429 %llu, 500 %llu, 503 %llu, 507 %llu, 425 %llu; %llu resent\n", m,
                (unsigned long long)refused[0], (unsigned long long)refused[1], (unsigned long long)refused[2],
                (unsigned long long)refused[3], (unsigned long long)refused[4], (unsigned long long)refused[5],
                (unsigned long long)resent);
    for (int k = 0; k < n_prod; k++)
        producer_fini(&ps[k]);
    free(ps);
    free(th);
    free(load.packed);
    return r;
}

/* ---- latency -------------------------------------------------------------------------- */

typedef struct {
    int n_channels, event_bytes;
    double rate, duration_s;
    const char *profile;
    int64_t t0_ns;
    uint32_t n_events_total, n_scheduled;
    int64_t *sent_ns;   /* (n_events_total) 0 until sent */
    double *lat_ms;     /* (n_events_total) */
    uint32_t n_lat, n_class, n_other;
    char prefix[64];
    size_t prefix_len;
    char text[1024];
} lat_load;

/* message 0 of a channel selects the profile; message k >= 1 is its event k - 1, global
 * event (k - 1) * n_channels + c, due at t0 + that / rate. */
static void lat_payload(producer_t *p, int c, uint32_t k, rwkvp_op *op, rwkvp_frame *payload)
{
    lat_load *l = p->user;
    if (k == 0) {
        *op = RWKVP_OP_TASK;
        *payload = (rwkvp_frame){l->profile, strlen(l->profile)};
        return;
    }
    uint32_t ev = (k - 1) * (uint32_t)l->n_channels + (uint32_t)p->ch_global[c];
    l->sent_ns[ev] = now_ns();
    *op = RWKVP_OP_TEXT;
    int n = snprintf(l->text, sizeof l->text, "event %u ", ev);
    while (n < l->event_bytes && n < (int)sizeof l->text - 1)
        l->text[n++] = 'x';
    *payload = (rwkvp_frame){l->text, (size_t)l->event_bytes};
}

static void lat_tick(producer_t *p, void *sub, long *timeout_ms)
{
    lat_load *l = p->user;
    int64_t now = now_ns();
    /* open loop: events due by now become sendable */
    double due = (double)(now - l->t0_ns) / 1e9 * l->rate;
    uint32_t upto = due >= l->n_events_total ? l->n_events_total : (uint32_t)due + 1;
    for (; l->n_scheduled < upto; l->n_scheduled++) {
        int c = (int)(l->n_scheduled % (uint32_t)l->n_channels);
        p->ch[c].n_avail++;
        if (can_send(p, &p->ch[c]))
            ready_push(p, c);
    }
    if (l->n_scheduled < l->n_events_total) {
        double next_s = (double)l->n_scheduled / l->rate;
        /* zmq_poll counts whole ms: wake at the ms after the next event falls due (events
         * due by then go out together; each is timed from its own send) */
        long ms = (long)ceil((next_s - (double)(now - l->t0_ns) / 1e9) * 1e3);
        *timeout_ms = ms < 1 ? 1 : ms < *timeout_ms ? ms : *timeout_ms;
    }
    for (;;) {
        rwkvc_zmsg zm = {0};
        if (rwkvc_recv(sub, &zm, 0) != 0)
            break;
        int64_t t = now_ns();
        rwkvp_pub pub;
        rwkvp_error e;
        if (zm.n_total == zm.n && rwkvp_pub_decode(zm.f, zm.n, NULL, &pub, &e) == 0 && pub.kind == RWKVP_PUB_CLASS &&
            pub.channel.len > l->prefix_len && pub.seq >= 2) {
            int c = 0;
            for (size_t k = l->prefix_len; k < pub.channel.len && c < 1 << 24; k++)
                c = c * 10 + (((const char *)pub.channel.data)[k] - '0');
            uint64_t ev = (pub.seq - 2) * (uint64_t)l->n_channels + (uint64_t)c;
            l->n_class++;
            if (ev < l->n_events_total && l->sent_ns[ev] && pub.seq > 2)
                l->lat_ms[l->n_lat++] = (double)(t - l->sent_ns[ev]) / 1e6;
        } else {
            l->n_other++;
        }
        rwkvc_zmsg_close(&zm);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void latency(opts *o, daemon_t *d)
{
    lat_load l = {.n_channels = o->lat_channels, .event_bytes = o->event_bytes, .rate = o->rate,
                  .duration_s = o->duration_s, .profile = o->profile};
    uint32_t per_ch = (uint32_t)ceil(o->rate * o->duration_s / o->lat_channels);
    if (per_ch < 2)
        per_ch = 2;
    l.n_events_total = per_ch * (uint32_t)o->lat_channels;
    l.sent_ns = calloc(l.n_events_total, sizeof *l.sent_ns);
    l.lat_ms = calloc(l.n_events_total, sizeof *l.lat_ms);
    if (!l.sent_ns || !l.lat_ms)
        die("out of memory");
    l.prefix_len = (size_t)snprintf(l.prefix, sizeof l.prefix, "lg%ld/lat/", (long)getpid());
    producer_t p;
    if (producer_init(&p, d->zctx, o->ingest, 0))
        die("cannot connect to %s", o->ingest);
    p.payload = lat_payload;
    p.max_cost = (uint64_t)l.event_bytes + 1; /* a TEXT event and the default separator "\n" */
    p.user = &l;
    setup_channels(&p, 1, o->lat_channels, l.prefix, per_ch + 1);
    for (int i = 0; i < p.n_ch; i++)
        p.ch[i].n_avail = 1; /* the TASK message; events as they fall due */
    void *sub = zmq_socket(d->zctx, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    curve_or_die(sub);
    if (zmq_connect(sub, o->publish) != 0)
        die("cannot connect to %s", o->publish);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, l.prefix, l.prefix_len);
    usleep(300000); /* slow joiner: let the subscription reach the daemon */
    metrics_t m0 = metrics(d);
    double c0 = cpu_s(), t0 = now_s();
    l.t0_ns = now_ns();
    produce(&p, sub, lat_tick, 30);
    if (p.fatal)
        die("%s", p.fatal);
    /* every event's CLASS */
    for (double deadline = now_s() + 30; l.n_class < l.n_events_total - 0u;) {
        long to = 100;
        lat_tick(&p, sub, &to);
        if (now_s() > deadline) {
            fprintf(stderr, "rwkvd-loadgen: %u of %u CLASS publications within 30 s\n", l.n_class, l.n_events_total);
            break;
        }
        zmq_pollitem_t it = {sub, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, 10);
    }
    double c1 = cpu_s(), t1 = now_s();
    metrics_t m1 = metrics(d);
    double job_ms = (m1.step_s - m0.step_s) * 1e3 / (m1.steps - m0.steps);
    qsort(l.lat_ms, l.n_lat, sizeof *l.lat_ms, cmp_double);
    double p50 = l.n_lat ? l.lat_ms[l.n_lat / 2] : NAN;
    size_t i99 = (size_t)ceil(l.n_lat * 0.99);
    double p99 = l.n_lat ? l.lat_ms[i99 ? i99 - 1 : 0] : NAN;
    double loop_ns = (m1.loop_cpu_s - m0.loop_cpu_s) * 1e9 / (m1.input_tokens - m0.input_tokens);
    printf("\n| channels | events/s offered | tokens/event | events timed | p50 ms | p99 ms | mean job ms | "
           "p99 / job | loop ns/input token | loadgen CPU |\n|---|---|---|---|---|---|---|---|---|---|\n");
    printf("| %d | %.0f | %d | %u | %.2f | %.2f | %.2f | %.2f | %.0f | %.0f%% |\n", o->lat_channels, o->rate,
           o->event_bytes + 1, l.n_lat, p50, p99, job_ms, p99 / job_ms, loop_ns, (c1 - c0) / (t1 - t0) * 100);
    printf("target: p99 <= %.0f step times (%.2f ms): %s\n", TARGET_P99_STEPS, TARGET_P99_STEPS * job_ms,
           p99 <= TARGET_P99_STEPS * job_ms ? "met" : "NOT met");
    fflush(stdout);
    zmq_close(sub);
    producer_fini(&p);
    free(l.sent_ns);
    free(l.lat_ms);
}

/* ---- main ----------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs("usage: rwkvd-loadgen [--spawn MODEL.pth|CONFIG.yaml | --ingest EP --control EP [--publish EP]] [options]\n"
          "\n"
          "  --phase P            throughput (default), latency or all\n"
          "  --spawn FILE         run rwkvd in a temp dir: FILE a checkpoint (a config is written)\n"
          "                       or an rwkvd config (run with RUNTIME_DIRECTORY, STATE_DIRECTORY there)\n"
          "  --rwkvd PATH         the rwkvd binary for --spawn (default: the one built with this tool)\n"
          "  --ingest/--publish/--control EP  endpoints (default: $RWKVD_INGEST ..., as the clients)\n"
          "  --channels LIST      throughput: channel counts, comma-separated (default 100)\n"
          "  --tokens N           throughput: token ids per channel (default 256)\n"
          "  --chunk N            throughput: ids per TOKENS message (default 16)\n"
          "  --threads N          producer threads, one DEALER each (default 1)\n"
          "  --window N           messages in flight per producer thread, at most (default 400: rwkvd's\n"
          "                       ROUTER drops replies its pipe has no room for; see the top of the source)\n"
          "  --idle N             throughput: N idle channels (one message of 2 ids each, applied)\n"
          "                       created before each measured run\n"
          "  --lat-channels N     latency: channels (default 100)\n"
          "  --rate R             latency: events per second offered, all channels (default 1000)\n"
          "  --duration S         latency: seconds of events (default 5)\n"
          "  --event-bytes N      latency: bytes per TEXT event, + the separator (default 15)\n"
          "  --profile NAME       latency: classification profile (default yn, which --spawn MODEL defines)\n"
          "  spawned from a checkpoint:\n"
          "  --engine-threads N   model.threads (default 1)\n"
          "  --max-batch N        model.max_batch (default 1024)\n"
          "  --queue-tokens N     limits.max_queue_tokens (default: tokens + chunk)\n"
          "  --durability on|off  durability.enabled (default on)\n"
          "  --fsync POLICY       durability.fsync: always, everysec or no (default: the daemon's)\n"
          "  --keep               keep the temp dir (config, log, state)\n"
          "  -v, --verbose        refusal counts for every run\n",
          f);
}

static int parse_int(const char *s, const char *what, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) {
        fprintf(stderr, "rwkvd-loadgen: %s: '%s' is not an integer %ld..%ld\n", what, s, lo, hi);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv)
{
    opts o = {.phase = "throughput", .rwkvd = LOADGEN_RWKVD, .chans = "100", .tokens = 256, .chunk = 16,
              .threads = 1, .lat_channels = 100, .event_bytes = 15, .rate = 1000, .duration_s = 5, .profile = "yn",
              .engine_threads = 1, .max_batch = 1024, .durability = true, .timeout_s = 30,
              .window = 400};
    rwkvc_default_endpoint("ingest", o.ingest, sizeof o.ingest);
    rwkvc_default_endpoint("publish", o.publish, sizeof o.publish);
    rwkvc_default_endpoint("control", o.control, sizeof o.control);
    enum { O_PHASE = 256, O_SPAWN, O_RWKVD, O_INGEST, O_PUBLISH, O_CONTROL, O_CHANNELS, O_TOKENS, O_CHUNK, O_THREADS,
           O_LATCH, O_RATE, O_DURATION, O_EVB, O_PROFILE, O_ETHREADS, O_MAXB, O_QUEUE, O_DUR, O_FSYNC, O_KEEP, O_WINDOW, O_IDLE };
    static const struct option lo[] = {
        {"phase", 1, NULL, O_PHASE},       {"spawn", 1, NULL, O_SPAWN},          {"rwkvd", 1, NULL, O_RWKVD},
        {"ingest", 1, NULL, O_INGEST},     {"publish", 1, NULL, O_PUBLISH},      {"control", 1, NULL, O_CONTROL},
        {"channels", 1, NULL, O_CHANNELS}, {"tokens", 1, NULL, O_TOKENS},        {"chunk", 1, NULL, O_CHUNK},
        {"threads", 1, NULL, O_THREADS},   {"lat-channels", 1, NULL, O_LATCH},   {"rate", 1, NULL, O_RATE},
        {"duration", 1, NULL, O_DURATION}, {"event-bytes", 1, NULL, O_EVB},      {"profile", 1, NULL, O_PROFILE},
        {"engine-threads", 1, NULL, O_ETHREADS}, {"max-batch", 1, NULL, O_MAXB}, {"queue-tokens", 1, NULL, O_QUEUE},
        {"durability", 1, NULL, O_DUR},    {"fsync", 1, NULL, O_FSYNC},          {"keep", 0, NULL, O_KEEP},
        {"window", 1, NULL, O_WINDOW},     {"idle", 1, NULL, O_IDLE},
        {"verbose", 0, NULL, 'v'},         {"help", 0, NULL, 'h'},               {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "vh", lo, NULL)) != -1) {
        switch (c) {
        case O_PHASE: o.phase = optarg; break;
        case O_SPAWN: o.spawn = optarg; break;
        case O_RWKVD: o.rwkvd = optarg; break;
        case O_INGEST: snprintf(o.ingest, sizeof o.ingest, "%s", optarg); break;
        case O_PUBLISH: snprintf(o.publish, sizeof o.publish, "%s", optarg); break;
        case O_CONTROL: snprintf(o.control, sizeof o.control, "%s", optarg); break;
        case O_CHANNELS: o.chans = optarg; break;
        case O_TOKENS: o.tokens = parse_int(optarg, "--tokens", 2, 1 << 24); break;
        case O_CHUNK: o.chunk = parse_int(optarg, "--chunk", 1, 65536); break;
        case O_THREADS: o.threads = parse_int(optarg, "--threads", 1, 256); break;
        case O_LATCH: o.lat_channels = parse_int(optarg, "--lat-channels", 1, 1 << 20); break;
        case O_RATE: o.rate = atof(optarg); break;
        case O_DURATION: o.duration_s = atof(optarg); break;
        case O_EVB: o.event_bytes = parse_int(optarg, "--event-bytes", 1, 1000); break;
        case O_PROFILE: o.profile = optarg; break;
        case O_ETHREADS: o.engine_threads = parse_int(optarg, "--engine-threads", 0, 1024); break;
        case O_MAXB: o.max_batch = parse_int(optarg, "--max-batch", 1, 1 << 20); break;
        case O_QUEUE: o.queue_tokens = parse_int(optarg, "--queue-tokens", 1, 1 << 30); break;
        case O_DUR: o.durability = strcmp(optarg, "off") != 0; break;
        case O_FSYNC: o.fsync = optarg; break;
        case O_KEEP: o.keep = true; break;
        case O_WINDOW: o.window = parse_int(optarg, "--window", 0, 1 << 24); break;
        case O_IDLE: o.idle = parse_int(optarg, "--idle", 0, 1 << 22); break;
        case 'v': o.verbose = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || (strcmp(o.phase, "throughput") && strcmp(o.phase, "latency") && strcmp(o.phase, "all")) ||
        !(o.rate > 0) || !(o.duration_s > 0)) {
        usage(stderr);
        return 2;
    }
    bool do_tp = strcmp(o.phase, "latency") != 0, do_lat = strcmp(o.phase, "throughput") != 0;
    signal(SIGPIPE, SIG_IGN);
    g_daemon.zctx = zmq_ctx_new();
    g_daemon.keep = o.keep;
    snprintf(g_daemon.control, sizeof g_daemon.control, "%s", o.control);
    printf("# rwkvd-loadgen: %s, %d producer thread(s), %s\n", o.spawn ? o.spawn : o.control, o.threads,
           o.spawn ? "rwkvd spawned per run" : "running rwkvd");
    if (do_tp) {
        printf("\n| channels | tokens/channel | chunk | end-to-end tok/s | acked tok/s | engine tok/s (in rwkvd) | "
               "end-to-end / engine | loop ns/input token | longest iteration ms | mean job ms | loadgen CPU | "
               "loadgen ns/token |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        fflush(stdout);
        for (const char *s = o.chans; *s;) {
            int m = (int)strtol(s, (char **)&s, 10);
            if (m < 1)
                die("--channels: '%s' is not a list of positive integers", o.chans);
            if (*s == ',')
                s++;
            if (o.spawn)
                daemon_spawn(&g_daemon, &o, m + o.idle, false);
            tp_result r = throughput(&o, &g_daemon, m);
            if (o.spawn)
                daemon_stop(&g_daemon);
            printf("| %d | %d | %d | %.0f | %.0f | %.0f | %.0f%% | %.0f | %.2f | %.2f | %.0f%% | %.0f |\n", m,
                   o.tokens, o.chunk, r.e2e, r.ack_rate, r.engine, r.ratio * 100, r.loop_ns, r.iter_ms, r.job_ms,
                   r.lg_cpu_pct, r.lg_ns_tok);
            printf("  targets: end-to-end / engine >= %.0f%%: %s; loop <= %.0f ns/token: %s; longest iteration <= %.0f ms: "
                   "%s\n",
                   TARGET_E2E * 100, r.ratio >= TARGET_E2E ? "met" : "NOT met", TARGET_LOOP_NS,
                   r.loop_ns <= TARGET_LOOP_NS ? "met" : "NOT met", TARGET_ITER_MS,
                   r.iter_ms <= TARGET_ITER_MS ? "met" : "NOT met");
            fflush(stdout);
        }
        printf("end-to-end: tokens fed / (first send -> last ACK and every token fed); engine: tokens fed / worker "
               "time in jobs (METRICS); loadgen CPU: %% of one core while sending\n");
    }
    if (do_lat) {
        if (o.spawn)
            daemon_spawn(&g_daemon, &o, o.lat_channels, true);
        latency(&o, &g_daemon);
        if (o.spawn)
            daemon_stop(&g_daemon);
    }
    if (g_daemon.req)
        zmq_close(g_daemon.req);
    zmq_ctx_term(g_daemon.zctx);
    return 0;
}
