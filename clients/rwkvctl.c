/* rwkvctl — operator commands for rwkvd over its CONTROL socket (PROTOCOL.md §10).
 *
 *   rwkvctl [-e ENDPOINT] [-t TIMEOUT] [--json] COMMAND [ARG]
 *
 * Sends one request (CHANNELS: one per page until "more" is false) on a REQ socket and
 * prints the reply body: JSON pretty-printed (compact with --json), METRICS text as is.
 * The exit status is what scripts branch on: 0 for 200; wire code − 390 for an error reply
 * (404 → 14, 422 → 32, 501 → 111, 503 → 113); 2 usage; 3 no reply within the timeout;
 * 4 a local failure (socket, memory). The daemon's reason goes to stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "rwkvc.h"

enum { EXIT_USAGE = 2, EXIT_TIMEOUT = 3, EXIT_LOCAL = 4 };

static void usage(FILE *f)
{
    fputs("usage: rwkvctl [options] COMMAND [ARG]\n"
          "\n"
          "commands:\n"
          "  status               daemon summary\n"
          "  channels [PREFIX]    list channels (all pages)\n"
          "  info CHANNEL         one channel's details\n"
          "  reset CHANNEL        zero the channel's state now\n"
          "  evict CHANNEL        move the channel's state out of compute memory\n"
          "  drop CHANNEL         delete the channel and its queued input\n"
          "  snapshot [CHANNEL|--all]  write snapshots (all channels without CHANNEL)\n"
          "  reload               re-read the configuration file\n"
          "  metrics              Prometheus metrics text\n"
          "\n"
          "options:\n"
          "  -e, --endpoint EP    control endpoint (default: $RWKVD_CONTROL, else\n"
          "                       ipc://${RUNTIME_DIRECTORY:-/run/rwkvd}/control.sock)\n"
          "  -t, --timeout DUR    wait at most DUR for each reply (default 5s; 250ms, 2s, 1m)\n"
          "  -j, --json           compact one-line JSON instead of indented\n"
          "  -h, --help           this text\n"
          "\n"
          "exit status: 0 ok; wire error code - 390 (404 -> 14, 422 -> 32, 501 -> 111,\n"
          "503 -> 113); 2 usage; 3 no reply in time; 4 local failure\n",
          f);
}

typedef struct {
    const char *name;
    rwkvp_ctl_cmd cmd;
    int min_args, max_args;
} cmd_def;

static const cmd_def cmds[] = {
    {"status", RWKVP_CTL_STATUS, 0, 0},     {"channels", RWKVP_CTL_CHANNELS, 0, 1},
    {"info", RWKVP_CTL_INFO, 1, 1},         {"reset", RWKVP_CTL_RESET, 1, 1},
    {"evict", RWKVP_CTL_EVICT, 1, 1},       {"drop", RWKVP_CTL_DROP, 1, 1},
    {"snapshot", RWKVP_CTL_SNAPSHOT, 0, 1}, {"reload", RWKVP_CTL_RELOAD, 0, 0},
    {"metrics", RWKVP_CTL_METRICS, 0, 0},
};

/* One request/reply. 0 with *code and *body (malloc'd, NUL-terminated); EXIT_* otherwise. */
static int roundtrip(void *sock, const rwkvp_ctl_request *req, long timeout_ms, const char *ep, int *code,
                     char **body, size_t *body_len)
{
    rwkvp_msg msg;
    rwkvp_error e;
    if (rwkvp_ctl_request_encode(req, &msg, &e) != 0) {
        fprintf(stderr, "rwkvctl: invalid request: %s\n", e.text);
        return EXIT_USAGE;
    }
    int rc = rwkvc_send(sock, msg.frames, msg.n, 0);
    if (rc) {
        fprintf(stderr, "rwkvctl: cannot send to %s: %s\n", ep, zmq_strerror(-rc));
        return EXIT_LOCAL;
    }
    rwkvc_zmsg zm = {0};
    rc = rwkvc_recv(sock, &zm, timeout_ms);
    if (rc == -EAGAIN) {
        fprintf(stderr, "rwkvctl: no reply from %s within %ld ms (is rwkvd running?)\n", ep, timeout_ms);
        return EXIT_TIMEOUT;
    }
    if (rc) {
        fprintf(stderr, "rwkvctl: receive from %s: %s\n", ep, zmq_strerror(-rc));
        return EXIT_LOCAL;
    }
    rwkvp_ctl_response resp;
    rwkvp_limits lim;
    rwkvp_limits_default(&lim);
    lim.max_message_bytes = SIZE_MAX; /* metrics and channel lists may be long */
    if (zm.n_total != zm.n || rwkvp_ctl_response_decode(zm.f, zm.n, &lim, &resp, &e) != 0) {
        fprintf(stderr, "rwkvctl: malformed reply from %s: %s\n", ep, zm.n_total != zm.n ? "too many frames" : e.text);
        rwkvc_zmsg_close(&zm);
        return EXIT_LOCAL;
    }
    char *b = malloc(resp.body.len + 1);
    if (!b) {
        rwkvc_zmsg_close(&zm);
        fprintf(stderr, "rwkvctl: out of memory\n");
        return EXIT_LOCAL;
    }
    if (resp.body.len)
        memcpy(b, resp.body.data, resp.body.len);
    b[resp.body.len] = '\0';
    *code = resp.code;
    *body = b;
    *body_len = resp.body.len;
    rwkvc_zmsg_close(&zm);
    return 0;
}

static int print_json(json_t *j, bool compact)
{
    /* numbers print with 12 significant digits (jansson's default of 17 shows 0.1 as
       0.10000000000000001); --json on single replies prints the daemon's own text instead */
    size_t flags = JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12) | (compact ? JSON_COMPACT : JSON_INDENT(2));
    if (json_dumpf(j, stdout, flags) != 0 || fputc('\n', stdout) == EOF || fflush(stdout) != 0) {
        fprintf(stderr, "rwkvctl: cannot write the output\n");
        return EXIT_LOCAL;
    }
    return 0;
}

static int error_exit(int code, const char *body)
{
    const char *name = rwkvp_code_name(code);
    fprintf(stderr, "rwkvctl: %d %s: %s\n", code, name ? name : "error", body);
    return code >= 400 && code <= 599 ? code - 390 : 1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"endpoint", required_argument, NULL, 'e'}, {"timeout", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},           {"help", no_argument, NULL, 'h'},
        {"all", no_argument, NULL, 'A'},            {NULL, 0, NULL, 0},
    };
    char ep[4096];
    const char *ep_opt = NULL;
    int64_t timeout_ms = 5000;
    bool compact = false, all = false;
    int c;
    while ((c = getopt_long(argc, argv, "e:t:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'e':
            ep_opt = optarg;
            break;
        case 't':
            if (rwkvc_duration_parse(optarg, &timeout_ms) != 0 || timeout_ms <= 0) {
                fprintf(stderr, "rwkvctl: --timeout: '%s' is not a positive duration (e.g. 500ms, 5s)\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'j':
            compact = true;
            break;
        case 'A':
            all = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "rwkvctl: missing command\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[optind++];
    const cmd_def *def = NULL;
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(cmds[i].name, name) == 0)
            def = &cmds[i];
    if (!def) {
        fprintf(stderr, "rwkvctl: unknown command '%s'\n", name);
        usage(stderr);
        return EXIT_USAGE;
    }
    /* options may also follow the command (getopt permutes): rwkvctl snapshot --all */
    int nargs = argc - optind;
    if (all && def->cmd != RWKVP_CTL_SNAPSHOT) {
        fprintf(stderr, "rwkvctl: --all applies to snapshot only\n");
        return EXIT_USAGE;
    }
    if (def->cmd == RWKVP_CTL_SNAPSHOT && nargs == 1 && strcmp(argv[optind], "--all") == 0)
        nargs = 0, all = true;
    if (nargs < def->min_args || nargs > def->max_args) {
        fprintf(stderr, "rwkvctl: %s takes %s\n", name,
                def->max_args == 0   ? "no argument"
                : def->min_args == 1 ? "one argument: CHANNEL"
                : def->cmd == RWKVP_CTL_CHANNELS ? "at most one argument: PREFIX"
                                                 : "at most one argument: CHANNEL (or --all)");
        return EXIT_USAGE;
    }
    const char *arg = nargs ? argv[optind] : NULL;
    if (def->cmd == RWKVP_CTL_SNAPSHOT && arg && all) {
        fprintf(stderr, "rwkvctl: snapshot takes CHANNEL or --all, not both\n");
        return EXIT_USAGE;
    }
    rwkvp_ctl_request req = {.cmd = def->cmd};
    if (arg) {
        size_t bad = 0;
        int vr = rwkvp_channel_check(arg, strlen(arg), &bad);
        if (vr != 0 && !(def->cmd == RWKVP_CTL_CHANNELS && arg[0] == '\0')) {
            fprintf(stderr, "rwkvctl: '%s' is not a valid channel %s (%s)\n", arg,
                    def->cmd == RWKVP_CTL_CHANNELS ? "prefix" : "name",
                    vr == -ENAMETOOLONG ? "longer than 128 octets" : "allowed: A-Z a-z 0-9 _ then also - . : /");
            return EXIT_USAGE;
        }
        if (def->cmd == RWKVP_CTL_CHANNELS)
            req.prefix = (rwkvp_frame){arg, strlen(arg)};
        else
            req.channel = (rwkvp_frame){arg, strlen(arg)};
    }
    if (ep_opt) {
        if (strlen(ep_opt) >= sizeof ep) {
            fprintf(stderr, "rwkvctl: endpoint too long\n");
            return EXIT_USAGE;
        }
        strcpy(ep, ep_opt);
    } else if (rwkvc_default_endpoint("control", ep, sizeof ep) != 0) {
        fprintf(stderr, "rwkvctl: default endpoint too long (RUNTIME_DIRECTORY)\n");
        return EXIT_USAGE;
    }

    int status = EXIT_LOCAL;
    void *ctx = zmq_ctx_new();
    void *sock = ctx ? zmq_socket(ctx, ZMQ_REQ) : NULL;
    if (!sock) {
        fprintf(stderr, "rwkvctl: cannot create a socket: %s\n", zmq_strerror(zmq_errno()));
        goto out;
    }
    int zero = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(sock, ep) != 0) {
        fprintf(stderr, "rwkvctl: cannot connect to %s: %s\n", ep, zmq_strerror(zmq_errno()));
        status = EXIT_USAGE;
        goto out;
    }

    if (def->cmd != RWKVP_CTL_CHANNELS) {
        int code = 0;
        char *body = NULL;
        size_t body_len = 0;
        status = roundtrip(sock, &req, (long)timeout_ms, ep, &code, &body, &body_len);
        if (status)
            goto out;
        if (code != 200) {
            status = error_exit(code, body);
        } else if (def->cmd == RWKVP_CTL_METRICS) {
            status = fwrite(body, 1, body_len, stdout) == body_len && fflush(stdout) == 0 ? 0 : EXIT_LOCAL;
        } else {
            json_error_t je;
            json_t *j = json_loadb(body, body_len, 0, &je);
            if (!j) {
                fprintf(stderr, "rwkvctl: the reply body is not JSON (%s); printed as is\n", je.text);
                fwrite(body, 1, body_len, stdout);
                fputc('\n', stdout);
                status = EXIT_LOCAL;
            } else if (compact && !memchr(body, '\n', body_len)) {
                status = fwrite(body, 1, body_len, stdout) == body_len && fputc('\n', stdout) != EOF &&
                                 fflush(stdout) == 0
                             ? 0
                             : EXIT_LOCAL;
                json_decref(j);
            } else {
                status = print_json(j, compact);
                json_decref(j);
            }
        }
        free(body);
        goto out;
    }

    /* CHANNELS: follow "more" with "after" = the last name, merging the pages */
    json_t *list = json_array();
    char after[RWKVP_CHANNEL_MAX + 1] = "";
    while (list) {
        req.after = (rwkvp_frame){after, strlen(after)};
        int code = 0;
        char *body = NULL;
        size_t body_len = 0;
        status = roundtrip(sock, &req, (long)timeout_ms, ep, &code, &body, &body_len);
        if (status)
            break;
        if (code != 200) {
            status = error_exit(code, body);
            free(body);
            break;
        }
        json_error_t je;
        json_t *j = json_loadb(body, body_len, 0, &je);
        free(body);
        json_t *arr = j ? json_object_get(j, "channels") : NULL;
        if (!json_is_array(arr)) {
            fprintf(stderr, "rwkvctl: malformed CHANNELS reply (no 'channels' array)\n");
            json_decref(j);
            status = EXIT_LOCAL;
            break;
        }
        json_array_extend(list, arr);
        size_t n = json_array_size(arr);
        const char *last = n ? json_string_value(json_object_get(json_array_get(arr, n - 1), "name")) : NULL;
        bool more = json_is_true(json_object_get(j, "more")) && last && strlen(last) <= RWKVP_CHANNEL_MAX &&
                    strcmp(last, after) > 0;
        if (more)
            strcpy(after, last);
        json_decref(j);
        if (!more) {
            json_t *out = json_pack("{s:O, s:b}", "channels", list, "more", 0);
            status = out ? print_json(out, compact) : EXIT_LOCAL;
            json_decref(out);
            break;
        }
    }
    json_decref(list);
out:
    if (sock)
        zmq_close(sock);
    if (ctx)
        zmq_ctx_term(ctx);
    return status;
}
