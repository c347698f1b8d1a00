/* rwkvsub — print rwkvd's publications (PROTOCOL.md §9) as JSON lines.
 *
 *   rwkvsub [-e ENDPOINT] [-c PREFIX]... [-n COUNT] [-t TIMEOUT] [-k KIND]...
 *
 * One SUB socket subscribed to each prefix (none: everything). Each message is decoded with
 * the proto codec and printed as one JSON object per line (rwkvc.h, pubjson.c), flushed at
 * once so pipes see it. Messages with another signature or a '$' topic are ignored, as §9
 * requires; malformed ones are counted and reported on stderr, never printed.
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
#include <zmq.h>

#include "curve.h"
#include "rwkvc.h"

enum { EXIT_USAGE = 2, EXIT_TIMEOUT = 3, EXIT_LOCAL = 4 };

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
        {NULL, 0, NULL, 0},
    };
    char ep[4096];
    const char *ep_opt = NULL;
    const char **prefixes = calloc((size_t)argc + 1, sizeof *prefixes);
    size_t n_prefix = 0;
    unsigned kinds = 0; /* bit (1 << kind); 0 = all */
    uint64_t count = 0;
    bool have_count = false;
    int64_t timeout_ms = -1;
    int c;
    if (!prefixes)
        return EXIT_LOCAL;
    while ((c = getopt_long(argc, argv, "e:c:k:n:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'e':
            ep_opt = optarg;
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

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: zmq_poll returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int status = EXIT_LOCAL;
    void *ctx = zmq_ctx_new();
    void *sock = ctx ? zmq_socket(ctx, ZMQ_SUB) : NULL;
    if (!sock) {
        fprintf(stderr, "rwkvsub: cannot create a socket: %s\n", zmq_strerror(zmq_errno()));
        goto out;
    }
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
    uint64_t printed = 0, malformed = 0;
    status = 0;
    while (!g_stop && (!have_count || printed < count)) {
        long wait_ms = -1;
        if (deadline >= 0) {
            int64_t left = deadline - rwkvc_now_ms();
            if (left <= 0) {
                if (have_count) {
                    fprintf(stderr, "rwkvsub: timeout: %llu of %llu messages received from %s\n",
                            (unsigned long long)printed, (unsigned long long)count, ep);
                    status = EXIT_TIMEOUT;
                }
                break;
            }
            wait_ms = (long)left;
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
            if (!kinds || (kinds & (1u << p.kind))) {
                if (rwkvc_pub_print(stdout, &p) != 0) {
                    if (errno != EPIPE)
                        fprintf(stderr, "rwkvsub: cannot write the output\n");
                    rwkvc_zmsg_close(&zm);
                    status = EXIT_LOCAL;
                    break;
                }
                printed++;
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
    if (sock)
        zmq_close(sock);
    if (ctx)
        zmq_ctx_term(ctx);
    free(prefixes);
    return status;
}
