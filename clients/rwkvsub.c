/* rwkvsub — print rwkvd's publications (PROTOCOL.md §9) as JSON lines.
 *
 *   rwkvsub [-e ENDPOINT] [-c PREFIX]... [-n COUNT] [-t TIMEOUT] [-k KIND]...
 *
 * One SUB socket subscribed to each prefix (none: everything). Each message is decoded with
 * the proto codec and printed as one JSON object per line (rwkvc.h, pubjson.c), flushed at
 * once so pipes see it. Messages with another signature or a '$' topic are ignored, as §9
 * requires; malformed ones are counted and reported on stderr, never printed.
 *
 * Recovery (§9.7, unless --no-recover): per channel, the highest oseq printed. A publication
 * not above it is a duplicate (a restart published it again) and skipped; one more than one
 * above it makes rwkvsub ask control REPLAY for those in between and print them first; after
 * the SUB socket reconnects (a socket monitor reports it) it asks REPLAY for every channel it
 * has printed, RECONNECT_DELAY_MS later so that its subscription has reached the daemon.
 * Ranges the daemon no longer retained are reported on stderr ("lost"), replays too.
 *
 * Exit status: 0 when COUNT messages were printed, or, without --count, when the timeout or
 * a signal ended the run; 3 when --count was given and the timeout came first; 2 usage;
 * 4 a local failure (socket, output).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <zmq.h>

#include "curve.h"
#include "rwkvc.h"

enum { EXIT_USAGE = 2, EXIT_TIMEOUT = 3, EXIT_LOCAL = 4 };

#define RECONNECT_DELAY_MS 300
#define REPLAY_TIMEOUT_MS 3000
#define CHAN_BUCKETS 4096

/* A channel's highest oseq printed. */
typedef struct chan {
    struct chan *next;
    uint64_t last;
    bool known; /* listed by CHANNELS or a publication printed */
    bool retry; /* REPLAY again: the daemon was still recovering the channel */
    size_t len;
    char name[];
} chan;

/* Everything the recovery needs (one instance, in main). */
typedef struct {
    void *ctx;
    const char *ctl_ep;
    void *ctl; /* REQ on CONTROL, made on first use; remade after a timeout */
    chan *buckets[CHAN_BUCKETS];
    unsigned kinds; /* bit (1 << kind); 0 = all */
    bool have_count;
    uint64_t count, printed;
    bool out_failed;
    bool baseline;  /* the start's CHANNELS listing worked: unlisted channels are newer */
    const char **prefixes;
    size_t n_prefix;
    int64_t replay_due;     /* when to catch up (after a reconnect) or retry; -1 none */
    bool reconnect_pending; /* catch up every channel at replay_due */
} sub_state;

static chan *chan_get(sub_state *st, const void *name, size_t len)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ ((const unsigned char *)name)[i]) * 1099511628211ull;
    chan **b = &st->buckets[h % CHAN_BUCKETS];
    for (chan *c = *b; c; c = c->next)
        if (c->len == len && memcmp(c->name, name, len) == 0)
            return c;
    chan *c = calloc(1, sizeof *c + len + 1);
    if (!c)
        return NULL;
    memcpy(c->name, name, len);
    c->len = len;
    c->next = *b;
    *b = c;
    return c;
}

static void chans_free(sub_state *st)
{
    for (size_t i = 0; i < CHAN_BUCKETS; i++)
        while (st->buckets[i]) {
            chan *c = st->buckets[i];
            st->buckets[i] = c->next;
            free(c);
        }
}

/* Print p unless the kind filter drops it; false once --count is reached or output failed. */
static bool emit(sub_state *st, const rwkvp_pub *p)
{
    if (st->out_failed || (st->have_count && st->printed >= st->count))
        return false;
    if (st->kinds && !(st->kinds & (1u << p->kind)))
        return true;
    if (rwkvc_pub_print(stdout, p) != 0) {
        if (errno != EPIPE)
            fprintf(stderr, "rwkvsub: cannot write the output\n");
        st->out_failed = true;
        return false;
    }
    st->printed++;
    return true;
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Print the publications of a REPLAY reply's frame 3 (PROTOCOL.md §10.3) above c->last. */
static void print_replayed(sub_state *st, chan *c, const rwkvp_frame *blob, const rwkvp_limits *lim)
{
    const unsigned char *b = blob->data;
    size_t len = blob->len, off = 0;
    uint64_t from = c->last, n_printed = 0;
    while (off + 4 <= len) {
        uint32_t nf = get_u32(b + off);
        off += 4;
        rwkvp_frame f[RWKVC_MAX_FRAMES];
        size_t k = 0;
        bool ok = nf >= 1 && nf <= RWKVC_MAX_FRAMES;
        for (uint32_t i = 0; ok && i < nf; i++) {
            ok = off + 4 <= len && len - off - 4 >= get_u32(b + off);
            if (ok) {
                f[k].data = b + off + 4;
                f[k].len = get_u32(b + off);
                off += 4 + f[k++].len;
            }
        }
        rwkvp_pub p;
        rwkvp_error e;
        if (!ok || rwkvp_pub_decode(f, k, lim, &p, &e) != 0 || !p.oseq) {
            fprintf(stderr, "rwkvsub: malformed publication in a REPLAY reply\n");
            break;
        }
        if (p.oseq <= c->last)
            continue;
        if (!emit(st, &p))
            break;
        c->last = p.oseq;
        n_printed++;
    }
    if (n_printed)
        fprintf(stderr, "rwkvsub: channel %.*s: replayed %llu outputs after oseq %llu\n", (int)c->len, c->name,
                (unsigned long long)n_printed, (unsigned long long)from);
}

/* One control request; 0 with *zm (close it) and *r (views into it) for a decoded reply of
 * any status, else -errno, reported on stderr. */
static int ctl_request(sub_state *st, const rwkvp_frame *req, size_t n, rwkvc_zmsg *zm, rwkvp_ctl_response *r)
{
    if (!st->ctl) {
        int zero = 0;
        if (!(st->ctl = zmq_socket(st->ctx, ZMQ_REQ)))
            return -zmq_errno();
        zmq_setsockopt(st->ctl, ZMQ_LINGER, &zero, sizeof zero);
        if (zmq_connect(st->ctl, st->ctl_ep) != 0) {
            fprintf(stderr, "rwkvsub: cannot connect to %s: %s\n", st->ctl_ep, zmq_strerror(zmq_errno()));
            zmq_close(st->ctl);
            st->ctl = NULL;
            return -EIO;
        }
    }
    int rc = rwkvc_send(st->ctl, req, n, 0);
    if (rc == 0)
        rc = rwkvc_recv(st->ctl, zm, REPLAY_TIMEOUT_MS);
    if (rc) {
        fprintf(stderr, "rwkvsub: %.*s to %s: %s\n", (int)req[1].len, (const char *)req[1].data, st->ctl_ep,
                rc == -EAGAIN ? "no reply in time" : zmq_strerror(-rc));
        zmq_close(st->ctl); /* a REQ that lost its reply cannot send again */
        st->ctl = NULL;
        return rc;
    }
    rwkvp_error e;
    rwkvp_limits lim;
    rwkvp_limits_default(&lim);
    lim.max_message_bytes = SIZE_MAX;
    if (zm->n_total != zm->n || rwkvp_ctl_response_decode(zm->f, zm->n, &lim, r, &e) != 0) {
        fprintf(stderr, "rwkvsub: malformed %.*s reply: %s\n", (int)req[1].len, (const char *)req[1].data,
                zm->n_total != zm->n ? "too many frames" : e.text);
        rwkvc_zmsg_close(zm);
        return -EBADMSG;
    }
    return 0;
}

/* REPLAY c after its last oseq and print what comes back; report what is lost. False when
 * the daemon did not answer (three tries: a request sent to a daemon that died is lost with
 * its connection) or refused. */
static bool replay(sub_state *st, chan *c)
{
    char after[RWKVP_U64_DIGITS + 1];
    size_t after_len = rwkvp_u64_format(c->last, after);
    rwkvp_frame req[4] = {{RWKVP_SIGNATURE, RWKVP_SIGNATURE_LEN}, {"REPLAY", 6}, {c->name, c->len}, {after, after_len}};
    rwkvc_zmsg zm = {0};
    rwkvp_ctl_response r;
    rwkvp_limits lim;
    rwkvp_limits_default(&lim);
    lim.max_message_bytes = SIZE_MAX;
    json_t *body = NULL;
    bool ok = false;
    int rc = -EAGAIN;
    for (int attempt = 0; attempt < 3 && rc != 0; attempt++)
        rc = ctl_request(st, req, 4, &zm, &r);
    if (rc != 0)
        return false;
    if (r.code != 200) {
        fprintf(stderr, "rwkvsub: REPLAY %.*s refused: %d %.*s\n", (int)c->len, c->name, r.code, (int)r.body.len,
                (const char *)r.body.data);
        goto out;
    }
    json_error_t je;
    body = json_loadb(r.body.data, r.body.len, 0, &je);
    json_t *last = json_object_get(body, "last"), *lost = json_object_get(body, "lost");
    if (!json_is_integer(last)) {
        fprintf(stderr, "rwkvsub: REPLAY reply without 'last'\n");
        goto out;
    }
    if (json_is_object(lost))
        fprintf(stderr, "rwkvsub: channel %.*s: outputs %lld..%lld are no longer retained (lost)\n", (int)c->len,
                c->name, (long long)json_integer_value(json_object_get(lost, "from")),
                (long long)json_integer_value(json_object_get(lost, "to")));
    if (json_is_true(json_object_get(body, "recovering"))) { /* still publishing again: ask later */
        c->retry = true;
        if (st->replay_due < 0)
            st->replay_due = rwkvc_now_ms() + RECONNECT_DELAY_MS;
    } else if ((uint64_t)json_integer_value(last) < c->last) { /* the channel's numbering started again */
        fprintf(stderr, "rwkvsub: channel %.*s: output numbering restarted at %lld (had %llu)\n", (int)c->len,
                c->name, (long long)json_integer_value(last), (unsigned long long)c->last);
        c->last = (uint64_t)json_integer_value(last);
        ok = true;
        goto out;
    }
    print_replayed(st, c, &r.blob, &lim);
    ok = true;
out:
    json_decref(body);
    rwkvc_zmsg_close(&zm);
    return ok;
}

/* CHANNELS for every prefix: fn(name, len, oseq) for each channel listed. 0, or -errno when
 * the daemon did not answer or refused. */
static int list_channels(sub_state *st, void (*fn)(sub_state *st, const char *name, size_t len, uint64_t oseq))
{
    static const char *const all[] = {""};
    const char *const *prefixes = st->n_prefix ? st->prefixes : all;
    size_t n_prefix = st->n_prefix ? st->n_prefix : 1;
    for (size_t i = 0; i < n_prefix; i++) {
        char after[RWKVP_CHANNEL_MAX + 1] = "";
        for (;;) {
            rwkvp_frame req[4] = {{RWKVP_SIGNATURE, RWKVP_SIGNATURE_LEN}, {"CHANNELS", 8},
                                  {prefixes[i], strlen(prefixes[i])}, {after, strlen(after)}};
            rwkvc_zmsg zm = {0};
            rwkvp_ctl_response r;
            int rc = ctl_request(st, req, after[0] ? 4 : 3, &zm, &r);
            if (rc)
                return rc;
            json_error_t je;
            json_t *body = r.code == 200 ? json_loadb(r.body.data, r.body.len, 0, &je) : NULL;
            json_t *chans = json_object_get(body, "channels");
            rwkvc_zmsg_close(&zm);
            if (!json_is_array(chans)) {
                json_decref(body);
                return -EPROTO;
            }
            size_t k;
            json_t *ch;
            json_array_foreach(chans, k, ch) {
                const char *name = json_string_value(json_object_get(ch, "name"));
                if (name)
                    fn(st, name, strlen(name), (uint64_t)json_integer_value(json_object_get(ch, "oseq")));
            }
            bool more = json_is_true(json_object_get(body, "more")) && json_array_size(chans) > 0;
            if (more)
                snprintf(after, sizeof after, "%s",
                         json_string_value(json_object_get(json_array_get(chans, json_array_size(chans) - 1), "name")));
            json_decref(body);
            if (!more)
                break;
        }
    }
    return 0;
}

/* The start: output from each listed channel's current oseq on. */
static void set_start(sub_state *st, const char *name, size_t len, uint64_t oseq)
{
    chan *c = chan_get(st, name, len);
    if (c) {
        c->known = true;
        c->last = oseq;
    }
}

/* After a reconnect: REPLAY each listed channel with output not printed here. */
static void catch_up(sub_state *st, const char *name, size_t len, uint64_t oseq)
{
    chan *c = chan_get(st, name, len);
    if (!c)
        return;
    if (!c->known) { /* newer than the start: all of its output */
        c->known = true;
        c->last = 0;
    }
    if (oseq != c->last)
        replay(st, c);
}

/* Apply §9.7 to one live publication and print what it makes printable. */
static void take(sub_state *st, const rwkvp_pub *p)
{
    chan *c = chan_get(st, p->channel.data, p->channel.len);
    if (!c) { /* out of memory: print without recovery */
        emit(st, p);
        return;
    }
    if (!c->known) {
        c->known = true;
        if (!st->baseline) { /* the start's listing failed: from this publication on */
            if (emit(st, p))
                c->last = p->oseq;
            return;
        }
    }
    if (p->oseq <= c->last)
        return; /* a duplicate */
    if (p->oseq > c->last + 1 && !replay(st, c))
        fprintf(stderr, "rwkvsub: channel %.*s: outputs %llu..%llu not recovered (lost)\n", (int)c->len, c->name,
                (unsigned long long)c->last + 1, (unsigned long long)p->oseq - 1);
    if (p->oseq <= c->last)
        return;
    if (emit(st, p))
        c->last = p->oseq;
}

static void replay_all(sub_state *st);

/* At replay_due: the catch-up after a reconnect, and the channels to ask again. */
static void replay_due(sub_state *st)
{
    st->replay_due = -1;
    if (st->reconnect_pending) {
        st->reconnect_pending = false;
        replay_all(st);
    }
    for (size_t i = 0; i < CHAN_BUCKETS; i++)
        for (chan *c = st->buckets[i]; c; c = c->next)
            if (c->retry) {
                c->retry = false;
                replay(st, c);
            }
}

static void replay_all(sub_state *st)
{
    if (list_channels(st, catch_up) == 0)
        return;
    for (size_t i = 0; i < CHAN_BUCKETS; i++) /* control away: every channel printed */
        for (chan *c = st->buckets[i]; c; c = c->next)
            if (c->known)
                replay(st, c);
}

/* Read the socket monitor's events: count the CONNECTED ones (true when one is a reconnect)
 * and hand every event to curve.c, which tells why a connection got nowhere. */
static bool reconnected(void *mon, unsigned *n_connects)
{
    bool again = false;
    for (;;) {
        rwkvc_zmsg zm = {0};
        if (rwkvc_recv(mon, &zm, 0) != 0)
            return again;
        if (zm.n >= 1 && zm.f[0].len >= 6) {
            const unsigned char *ev = zm.f[0].data;
            unsigned event = (unsigned)(ev[0] | ev[1] << 8);
            unsigned value = (unsigned)ev[2] | (unsigned)ev[3] << 8 | (unsigned)ev[4] << 16 | (unsigned)ev[5] << 24;
            if (event == ZMQ_EVENT_CONNECTED && ++*n_connects > 1)
                again = true;
            rwkvc_curve_event(event, value);
        }
        rwkvc_zmsg_close(&zm);
    }
}

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void usage(FILE *f)
{
    fputs("usage: rwkvsub [options]\n"
          "\n"
          "Print every publication of rwkvd as one JSON line:\n"
          "  {\"channel\",\"kind\",\"producer\",\"seq\",\"tokens_seen\", then per kind:\n"
          "   CLASS/END \"body\" (the result object), TEXT \"index\",\"piece\", ERROR \"code\",\"text\"}\n"
          "\n"
          "options:\n"
          "  -e, --endpoint EP    publish endpoint (default: $RWKVD_PUBLISH, else\n"
          "                       ipc://${RUNTIME_DIRECTORY:-/run/rwkvd}/publish.sock)\n"
          "  -C, --control EP     control endpoint for REPLAY (default: $RWKVD_CONTROL, else\n"
          "                       ipc://${RUNTIME_DIRECTORY:-/run/rwkvd}/control.sock; with\n"
          "                       --endpoint, missed output is recovered only when this is given)\n"
          "      --no-recover     print what arrives: no REPLAY of missed output (oseq gaps,\n"
          "                       reconnects), no dropping of duplicates\n"
          "  -c, --channel PREFIX subscribe to channels starting with PREFIX (repeatable;\n"
          "                       none: all). End prefixes with a separator: 'app/'\n"
          "  -k, --kind KIND      print only CLASS, TEXT, END or ERROR (repeatable)\n"
          "  -n, --count N        exit after N printed messages\n"
          "  -t, --timeout DUR    exit after DUR (250ms, 10s, 2m); with --count, failing (3)\n"
          "  -h, --help           this text\n",
          f);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"endpoint", required_argument, NULL, 'e'}, {"channel", required_argument, NULL, 'c'},
        {"kind", required_argument, NULL, 'k'},     {"count", required_argument, NULL, 'n'},
        {"timeout", required_argument, NULL, 't'},  {"help", no_argument, NULL, 'h'},
        {"control", required_argument, NULL, 'C'},  {"no-recover", no_argument, NULL, 'R'},
        {NULL, 0, NULL, 0},
    };
    char ep[4096], ctl_ep[4096];
    const char *ep_opt = NULL, *ctl_opt = NULL;
    bool recover = true;
    const char **prefixes = calloc((size_t)argc + 1, sizeof *prefixes);
    size_t n_prefix = 0;
    unsigned kinds = 0; /* bit (1 << kind); 0 = all */
    uint64_t count = 0;
    bool have_count = false;
    int64_t timeout_ms = -1;
    int c;
    if (!prefixes)
        return EXIT_LOCAL;
    while ((c = getopt_long(argc, argv, "e:C:c:k:n:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'e':
            ep_opt = optarg;
            break;
        case 'C':
            ctl_opt = optarg;
            break;
        case 'R':
            recover = false;
            break;
        case 'c': {
            size_t len = strlen(optarg);
            if (len && rwkvp_channel_check(optarg, len, NULL) != 0) {
                fprintf(stderr, "rwkvsub: --channel: '%s' is not a channel name prefix "
                                "(A-Z a-z 0-9 _ then also - . : /, at most 128 octets)\n", optarg);
                free(prefixes);
                return EXIT_USAGE;
            }
            prefixes[n_prefix++] = optarg;
            break;
        }
        case 'k': {
            int k = strcasecmp(optarg, "class") == 0  ? RWKVP_PUB_CLASS
                    : strcasecmp(optarg, "text") == 0 ? RWKVP_PUB_TEXT
                    : strcasecmp(optarg, "end") == 0  ? RWKVP_PUB_END
                    : strcasecmp(optarg, "error") == 0 ? RWKVP_PUB_ERROR
                                                        : 0;
            if (!k) {
                fprintf(stderr, "rwkvsub: --kind: '%s' is not one of CLASS, TEXT, END, ERROR\n", optarg);
                free(prefixes);
                return EXIT_USAGE;
            }
            kinds |= 1u << k;
            break;
        }
        case 'n':
            if (rwkvc_uint_parse(optarg, UINT64_MAX, &count) != 0 || count == 0) {
                fprintf(stderr, "rwkvsub: --count: '%s' is not a positive integer\n", optarg);
                free(prefixes);
                return EXIT_USAGE;
            }
            have_count = true;
            break;
        case 't':
            if (rwkvc_duration_parse(optarg, &timeout_ms) != 0) {
                fprintf(stderr, "rwkvsub: --timeout: '%s' is not a duration (e.g. 500ms, 10s)\n", optarg);
                free(prefixes);
                return EXIT_USAGE;
            }
            break;
        case 'h':
            usage(stdout);
            free(prefixes);
            return 0;
        default:
            usage(stderr);
            free(prefixes);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rwkvsub: unexpected argument '%s'\n", argv[optind]);
        free(prefixes);
        return EXIT_USAGE;
    }
    if (ep_opt) {
        if (strlen(ep_opt) >= sizeof ep) {
            fprintf(stderr, "rwkvsub: endpoint too long\n");
            free(prefixes);
            return EXIT_USAGE;
        }
        strcpy(ep, ep_opt);
    } else if (rwkvc_default_endpoint("publish", ep, sizeof ep) != 0) {
        fprintf(stderr, "rwkvsub: default endpoint too long (RUNTIME_DIRECTORY)\n");
        free(prefixes);
        return EXIT_USAGE;
    }
    if (recover && ep_opt && !ctl_opt && !getenv("RWKVD_CONTROL")) {
        /* the default control endpoint need not be this publisher's daemon */
        fprintf(stderr, "rwkvsub: --endpoint without --control (or $RWKVD_CONTROL): missed output is not "
                        "recovered\n");
        recover = false;
    }
    if (ctl_opt) {
        if (strlen(ctl_opt) >= sizeof ctl_ep) {
            fprintf(stderr, "rwkvsub: control endpoint too long\n");
            free(prefixes);
            return EXIT_USAGE;
        }
        strcpy(ctl_ep, ctl_opt);
    } else if (rwkvc_default_endpoint("control", ctl_ep, sizeof ctl_ep) != 0) {
        fprintf(stderr, "rwkvsub: default control endpoint too long (RUNTIME_DIRECTORY)\n");
        free(prefixes);
        return EXIT_USAGE;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: zmq_poll returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int status = EXIT_LOCAL;
    void *ctx = zmq_ctx_new();
    void *sock = ctx ? zmq_socket(ctx, ZMQ_SUB) : NULL;
    void *mon = NULL;
    sub_state *st = calloc(1, sizeof *st);
    unsigned n_connects = 0;
    char said[400] = ""; /* the last handshake failure told on stderr */
    if (!sock || !st) {
        fprintf(stderr, "rwkvsub: cannot create a socket: %s\n", st ? zmq_strerror(zmq_errno()) : "out of memory");
        goto out;
    }
    st->ctx = ctx;
    st->ctl_ep = ctl_ep;
    st->replay_due = -1;
    st->kinds = kinds;
    st->have_count = have_count;
    st->count = count;
    st->prefixes = prefixes;
    st->n_prefix = n_prefix;
    if (recover) {
        st->baseline = list_channels(st, set_start) == 0;
        if (!st->baseline)
            fprintf(stderr, "rwkvsub: no channel list from %s: each channel's output is printed from its first "
                            "publication received\n", ctl_ep);
    }
    /* a monitor on the SUB socket reports each connection (a reconnect asks REPLAY) and each
     * failed security handshake (said on stderr at once: a subscriber otherwise just waits) */
    char mon_ep[64];
    snprintf(mon_ep, sizeof mon_ep, "inproc://rwkvsub-monitor-%p", sock);
    if (zmq_socket_monitor(sock, mon_ep,
                           ZMQ_EVENT_CONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) == 0 &&
        (mon = zmq_socket(ctx, ZMQ_PAIR)) && zmq_connect(mon, mon_ep) != 0) {
        zmq_close(mon);
        mon = NULL;
    }
    if (!mon && recover)
        fprintf(stderr, "rwkvsub: no socket monitor (%s): reconnects will not trigger a REPLAY\n",
                zmq_strerror(zmq_errno()));
    int zero = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    char kerr[700];
    if (rwkvc_curve_setup(NULL, sock, kerr, sizeof kerr) < 0) { /* RWKV_SERVER_KEY, RWKV_CLIENT_KEY */
        fprintf(stderr, "rwkvsub: %s\n", kerr);
        status = EXIT_USAGE;
        goto out;
    }
    if (n_prefix == 0)
        zmq_setsockopt(sock, ZMQ_SUBSCRIBE, "", 0);
    for (size_t i = 0; i < n_prefix; i++)
        zmq_setsockopt(sock, ZMQ_SUBSCRIBE, prefixes[i], strlen(prefixes[i]));
    if (zmq_connect(sock, ep) != 0) {
        fprintf(stderr, "rwkvsub: cannot connect to %s: %s\n", ep, zmq_strerror(zmq_errno()));
        status = EXIT_USAGE;
        goto out;
    }

    rwkvp_limits lim;
    rwkvp_limits_default(&lim);
    lim.max_message_bytes = SIZE_MAX; /* the daemon's output is not limited like its input */
    int64_t deadline = timeout_ms >= 0 ? rwkvc_now_ms() + timeout_ms : -1;
    uint64_t malformed = 0;
    status = 0;
    while (!g_stop && (!have_count || st->printed < count) && !st->out_failed) {
        long wait_ms = -1;
        if (deadline >= 0) {
            int64_t left = deadline - rwkvc_now_ms();
            if (left <= 0) {
                if (have_count) {
                    char why[400];
                    rwkvc_curve_explain(why, sizeof why);
                    fprintf(stderr, "rwkvsub: timeout: %llu of %llu messages received from %s%s%s\n",
                            (unsigned long long)st->printed, (unsigned long long)count, ep, why[0] ? ": " : "", why);
                    status = EXIT_TIMEOUT;
                }
                break;
            }
            wait_ms = (long)left;
        }
        if (mon) {
            if (reconnected(mon, &n_connects) && recover) {
                st->reconnect_pending = true;
                st->replay_due = rwkvc_now_ms() + RECONNECT_DELAY_MS;
            }
            char why[400];
            rwkvc_curve_explain(why, sizeof why);
            if (why[0] && strcmp(why, said) != 0 && !strstr(why, "never completed")) {
                fprintf(stderr, "rwkvsub: %s: %s\n", ep, why);
                snprintf(said, sizeof said, "%s", why);
            }
            if (st->replay_due >= 0 && rwkvc_now_ms() >= st->replay_due) {
                replay_due(st);
                continue;
            }
            /* wake for the monitor too: short waits while connected */
            long cap = st->replay_due >= 0 ? (long)(st->replay_due - rwkvc_now_ms()) : 100;
            if (cap < 0)
                cap = 0;
            if (wait_ms < 0 || wait_ms > cap)
                wait_ms = cap;
        }
        rwkvc_zmsg zm = {0};
        int rc = rwkvc_recv(sock, &zm, wait_ms);
        if (rc == -EAGAIN || rc == -EINTR)
            continue;
        if (rc) {
            fprintf(stderr, "rwkvsub: receive from %s: %s\n", ep, zmq_strerror(-rc));
            status = EXIT_LOCAL;
            break;
        }
        /* §9: ignore '$' topics and other signatures; only RWKV1 is decoded */
        bool ours = zm.n >= 2 && zm.f[1].len == RWKVP_SIGNATURE_LEN &&
                    memcmp(zm.f[1].data, RWKVP_SIGNATURE, RWKVP_SIGNATURE_LEN) == 0 &&
                    !(zm.f[0].len && ((const char *)zm.f[0].data)[0] == '$');
        rwkvp_pub p;
        rwkvp_error e;
        memset(&e, 0, sizeof e);
        if (ours && zm.n_total == zm.n && rwkvp_pub_decode(zm.f, zm.n, &lim, &p, &e) == 0) {
            if (recover && p.oseq)
                take(st, &p);
            else
                emit(st, &p);
            if (st->out_failed) {
                rwkvc_zmsg_close(&zm);
                status = EXIT_LOCAL;
                break;
            }
        } else if (ours && !(zm.n >= 3 && e.code == RWKVP_E_UNKNOWN_OP)) {
            /* unknown publish kinds are a compatible extension (§13): ignored silently */
            malformed++;
            if (malformed <= 10 || malformed % 1000 == 0)
                fprintf(stderr, "rwkvsub: malformed publication #%llu ignored: %s\n", (unsigned long long)malformed,
                        zm.n_total != zm.n ? "too many frames" : e.text);
        }
        rwkvc_zmsg_close(&zm);
    }
out:
    if (mon)
        zmq_close(mon);
    if (st && st->ctl)
        zmq_close(st->ctl);
    if (st)
        chans_free(st);
    free(st);
    if (sock)
        zmq_close(sock);
    if (ctx)
        zmq_ctx_term(ctx);
    free(prefixes);
    return status;
}
