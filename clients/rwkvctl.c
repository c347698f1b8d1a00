/* rwkvctl — operator commands for rwkvd over its CONTROL socket (PROTOCOL.md §10).
 *
 *   rwkvctl [-e ENDPOINT] [-t TIMEOUT] [--json] COMMAND [ARG...]
 *
 * export/import move a channel's state as a snapshot image (daemon/FORMATS.md §1) between
 * the daemon and a file ("-": stdout/stdin); the image is binary and never printed.
 * Sends one request (CHANNELS: one per page until "more" is false) on a REQ socket and
 * prints the reply for a human by default: an object as aligned "key: value" lines (nested
 * objects flattened to dotted keys, lists of objects as a table), CHANNELS as one table;
 * --json prints the JSON body on one line instead (CHANNELS: the pages merged), for scripts.
 * METRICS is Prometheus text either way, printed as is.
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

#include "curve.h"
#include "rwkvc.h"

enum { EXIT_USAGE = 2, EXIT_TIMEOUT = 3, EXIT_LOCAL = 4 };

static void usage(FILE *f)
{
    fputs("usage: rwkvctl [options] COMMAND [ARG...]\n"
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
          "  export CHANNEL FILE  write the channel's state (a snapshot image) to FILE (- stdout)\n"
          "  import CHANNEL FILE  create or replace CHANNEL from an image in FILE (- stdin)\n"
          "  fork SOURCE NEW      create channel NEW with a copy of SOURCE's state\n"
          "\n"
          "options:\n"
          "  -e, --endpoint EP    control endpoint (default: $RWKVD_CONTROL, else\n"
          "                       ipc://${RUNTIME_DIRECTORY:-/run/rwkvd}/control.sock)\n"
          "  -t, --timeout DUR    wait at most DUR for each reply (default 5s; 250ms, 2s, 1m)\n"
          "  -j, --json           the reply's JSON body on one line instead of text\n"
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
    {"metrics", RWKVP_CTL_METRICS, 0, 0},   {"export", RWKVP_CTL_EXPORT, 2, 2},
    {"import", RWKVP_CTL_IMPORT, 2, 2},     {"fork", RWKVP_CTL_FORK, 2, 2},
};

/* A whole file ("-": stdin) in a malloc'd buffer. 0, or EXIT_* with the reason printed. */
static int read_file(const char *path, void **out, size_t *out_len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "rwkvctl: cannot open %s: %s\n", path, strerror(errno));
        return EXIT_USAGE;
    }
    size_t len = 0, cap = 1 << 16;
    unsigned char *b = malloc(cap);
    while (b) {
        size_t n = fread(b + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
        if (len == cap) {
            unsigned char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
    }
    int err = ferror(f);
    if (f != stdin)
        fclose(f);
    if (!b || err) {
        fprintf(stderr, "rwkvctl: cannot read %s: %s\n", path, b ? "read error" : "out of memory");
        free(b);
        return b ? EXIT_USAGE : EXIT_LOCAL;
    }
    *out = b;
    *out_len = len;
    return 0;
}

/* Write buf to path ("-": stdout) through a temporary file and a rename, so a failed export
 * leaves no partial image under the name. 0 or EXIT_LOCAL with the reason printed. */
static int write_file(const char *path, const void *buf, size_t len)
{
    if (strcmp(path, "-") == 0)
        return fwrite(buf, 1, len, stdout) == len && fflush(stdout) == 0 ? 0 : EXIT_LOCAL;
    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        fprintf(stderr, "rwkvctl: file name too long\n");
        return EXIT_USAGE;
    }
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fwrite(buf, 1, len, f) == len;
    if (f && fclose(f) != 0)
        ok = false;
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "rwkvctl: cannot write %s: %s\n", path, strerror(errno));
        remove(tmp);
        return EXIT_LOCAL;
    }
    return 0;
}

/* One request/reply. 0 with *code and *body (malloc'd, NUL-terminated), and, when blob is
 * not NULL, the reply's blob frame (malloc'd, NULL when absent); EXIT_* otherwise. */
static int roundtrip(void *sock, const rwkvp_ctl_request *req, long timeout_ms, const char *ep, int *code,
                     char **body, size_t *body_len, void **blob, size_t *blob_len)
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
        char why[400];
        rwkvc_curve_explain(why, sizeof why); /* a refused key says so, not a bare time-out */
        if (why[0])
            fprintf(stderr, "rwkvctl: no reply from %s: %s\n", ep, why);
        else
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
    if (blob) {
        *blob = NULL;
        *blob_len = resp.blob.len;
        if (resp.blob.len && !(*blob = malloc(resp.blob.len))) {
            free(b);
            rwkvc_zmsg_close(&zm);
            fprintf(stderr, "rwkvctl: out of memory\n");
            return EXIT_LOCAL;
        }
        if (resp.blob.len)
            memcpy(*blob, resp.blob.data, resp.blob.len);
    }
    *code = resp.code;
    *body = b;
    *body_len = resp.body.len;
    rwkvc_zmsg_close(&zm);
    return 0;
}

/* ---- human-readable output ----------------------------------------------------------- */

typedef struct {
    char **key, **val; /* (n) */
    size_t n, cap;
    json_t **tables;   /* (n_tables) arrays of objects, printed after the lines */
    char **table_key;  /* (n_tables) */
    size_t n_tables, cap_tables;
    bool oom;
} kv_list;

/* A scalar (or an array of scalars, joined with ", ") as text; NULL for anything else or
 * when out of memory. */
static char *scalar_text(const json_t *v)
{
    char buf[64];
    switch (json_typeof(v)) {
    case JSON_STRING:
        return strdup(json_string_value(v));
    case JSON_INTEGER:
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return strdup(buf);
    case JSON_REAL:
        snprintf(buf, sizeof buf, "%.6g", json_real_value(v));
        return strdup(buf);
    case JSON_TRUE:
        return strdup("true");
    case JSON_FALSE:
        return strdup("false");
    case JSON_NULL:
        return strdup("-");
    case JSON_ARRAY: {
        size_t n = json_array_size(v), len = 0;
        if (n == 0)
            return strdup("(none)");
        char *out = NULL;
        for (size_t i = 0; i < n; i++) {
            char *t = scalar_text(json_array_get(v, i));
            char *grown = t ? realloc(out, len + strlen(t) + 3) : NULL;
            if (!grown) {
                free(t);
                free(out);
                return NULL;
            }
            out = grown;
            len += (size_t)sprintf(out + len, "%s%s", i ? ", " : "", t);
            free(t);
        }
        return out;
    }
    default:
        return NULL;
    }
}

static bool is_object_array(const json_t *v)
{
    if (!json_is_array(v) || json_array_size(v) == 0)
        return false;
    for (size_t i = 0; i < json_array_size(v); i++)
        if (!json_is_object(json_array_get(v, i)))
            return false;
    return true;
}

static void kv_add(kv_list *l, const char *key, char *val)
{
    char *k = val ? strdup(key) : NULL;
    if (k && l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 32;
        char **nk = realloc(l->key, cap * sizeof *nk);
        if (nk)
            l->key = nk;
        char **nv = nk ? realloc(l->val, cap * sizeof *nv) : NULL;
        if (nv)
            l->val = nv;
        if (nk && nv)
            l->cap = cap;
    }
    if (!k || l->n == l->cap) {
        free(k);
        free(val);
        l->oom = true;
        return;
    }
    l->key[l->n] = k;
    l->val[l->n++] = val;
}

static void kv_flatten(kv_list *l, const json_t *obj, const char *prefix)
{
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)obj, name, v) {
        char key[256];
        snprintf(key, sizeof key, "%s%s", prefix, name);
        if (json_is_object(v)) {
            char sub[sizeof key + 1];
            snprintf(sub, sizeof sub, "%s.", key);
            kv_flatten(l, v, sub);
        } else if (is_object_array(v)) {
            if (l->n_tables == l->cap_tables) {
                size_t cap = l->cap_tables ? 2 * l->cap_tables : 4;
                json_t **t = realloc(l->tables, cap * sizeof *t);
                if (t)
                    l->tables = t;
                char **k = t ? realloc(l->table_key, cap * sizeof *k) : NULL;
                if (k)
                    l->table_key = k;
                if (!t || !k) {
                    l->oom = true;
                    continue;
                }
                l->cap_tables = cap;
            }
            char *k = strdup(key);
            if (!k) {
                l->oom = true;
                continue;
            }
            l->tables[l->n_tables] = v;
            l->table_key[l->n_tables++] = k;
        } else {
            char *t = scalar_text(v);
            kv_add(l, key, t ? t : strdup("(nested)"));
        }
    }
}

static void kv_free(kv_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->key[i]);
        free(l->val[i]);
    }
    for (size_t i = 0; i < l->n_tables; i++)
        free(l->table_key[i]);
    free(l->key);
    free(l->val);
    free(l->tables);
    free(l->table_key);
}

/* rows: an array of objects; one column per member name in order of first appearance,
 * headed by the name in upper case; numeric columns right-aligned. Returns 0 or -ENOMEM. */
static int print_table(const json_t *rows, const char *indent)
{
    size_t n_rows = json_array_size(rows), n_cols = 0;
    const char *cols[64];
    for (size_t r = 0; r < n_rows; r++) {
        const char *name;
        json_t *v;
        json_object_foreach(json_array_get(rows, r), name, v) {
            size_t c = 0;
            while (c < n_cols && strcmp(cols[c], name) != 0)
                c++;
            if (c == n_cols && n_cols < sizeof cols / sizeof cols[0])
                cols[n_cols++] = name;
        }
    }
    char **cell = calloc(n_rows * n_cols + 1, sizeof *cell);
    size_t width[64];
    bool numeric[64];
    if (!cell)
        return -ENOMEM;
    int rc = 0;
    for (size_t c = 0; c < n_cols; c++) {
        width[c] = strlen(cols[c]);
        numeric[c] = true;
        for (size_t r = 0; r < n_rows; r++) {
            json_t *v = json_object_get(json_array_get(rows, r), cols[c]);
            char *t = v ? scalar_text(v) : strdup("-");
            if (!t)
                t = v ? strdup("(nested)") : NULL;
            if (!t) {
                rc = -ENOMEM;
                goto out;
            }
            cell[r * n_cols + c] = t;
            if (strlen(t) > width[c])
                width[c] = strlen(t);
            if (v && !json_is_number(v))
                numeric[c] = false;
        }
    }
    for (size_t r = 0; r <= n_rows; r++) {
        fputs(indent, stdout);
        for (size_t c = 0; c < n_cols; c++) {
            char head[128];
            const char *t = cell[(r ? r - 1 : 0) * n_cols + c];
            if (r == 0) {
                size_t k = 0;
                for (; cols[c][k] && k + 1 < sizeof head; k++)
                    head[k] = (char)(cols[c][k] >= 'a' && cols[c][k] <= 'z' ? cols[c][k] - 32 : cols[c][k]);
                head[k] = '\0';
                t = head;
            }
            bool last = c + 1 == n_cols;
            if (numeric[c])
                printf("%*s%s", (int)width[c], t, last ? "" : "  ");
            else
                printf("%-*s%s", last ? 0 : (int)width[c], t, last ? "" : "  ");
        }
        fputc('\n', stdout);
    }
out:
    for (size_t i = 0; i < n_rows * n_cols; i++)
        free(cell[i]);
    free(cell);
    return rc;
}

/* An object as aligned "key: value" lines, then its lists of objects as tables. */
static int print_text(const json_t *obj)
{
    kv_list l = {0};
    kv_flatten(&l, obj, "");
    int status = 0;
    if (l.oom) {
        fprintf(stderr, "rwkvctl: out of memory\n");
        status = EXIT_LOCAL;
        goto out;
    }
    size_t w = 0;
    for (size_t i = 0; i < l.n; i++)
        if (strlen(l.key[i]) > w)
            w = strlen(l.key[i]);
    for (size_t i = 0; i < l.n; i++)
        printf("%s:%*s %s\n", l.key[i], (int)(w - strlen(l.key[i])), "", l.val[i]);
    for (size_t i = 0; i < l.n_tables; i++) {
        printf("%s:\n", l.table_key[i]);
        if (print_table(l.tables[i], "  ") != 0) {
            fprintf(stderr, "rwkvctl: out of memory\n");
            status = EXIT_LOCAL;
            goto out;
        }
    }
out:
    kv_free(&l);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "rwkvctl: cannot write the output\n");
        status = EXIT_LOCAL;
    }
    return status;
}

static int print_channels(const json_t *list)
{
    int status = 0;
    if (json_array_size(list) == 0)
        fputs("no channels\n", stdout);
    else if (print_table(list, "") != 0) {
        fprintf(stderr, "rwkvctl: out of memory\n");
        status = EXIT_LOCAL;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "rwkvctl: cannot write the output\n");
        status = EXIT_LOCAL;
    }
    return status;
}

/* One line of JSON (--json for CHANNELS, whose pages are merged here, or a reply body that
 * spans lines); numbers keep 17 significant digits so scripts see what the daemon sent. */
static int print_json(json_t *j)
{
    size_t flags = JSON_PRESERVE_ORDER | JSON_COMPACT;
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
    bool json_mode = false, all = false;
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
            json_mode = true;
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
                : def->cmd == RWKVP_CTL_FORK ? "two arguments: SOURCE NEW"
                : def->min_args == 2 ? "two arguments: CHANNEL FILE"
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
    const char *arg2 = nargs > 1 ? argv[optind + 1] : NULL;
    void *image = NULL; /* IMPORT: the file's bytes */
    size_t image_len = 0;
    if (def->cmd == RWKVP_CTL_FORK) {
        size_t bad = 0;
        if (rwkvp_channel_check(arg2, strlen(arg2), &bad) != 0) {
            fprintf(stderr, "rwkvctl: '%s' is not a valid channel name\n", arg2);
            return EXIT_USAGE;
        }
        req.dst = (rwkvp_frame){arg2, strlen(arg2)};
    } else if (def->cmd == RWKVP_CTL_IMPORT) {
        int rr = read_file(arg2, &image, &image_len);
        if (rr)
            return rr;
        if (image_len == 0) {
            fprintf(stderr, "rwkvctl: %s is empty\n", arg2);
            free(image);
            return EXIT_USAGE;
        }
        req.blob = (rwkvp_frame){image, image_len};
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
    char kerr[700];
    if (rwkvc_curve_setup(ctx, sock, kerr, sizeof kerr) < 0) { /* RWKV_SERVER_KEY, RWKV_CLIENT_KEY */
        fprintf(stderr, "rwkvctl: %s\n", kerr);
        status = EXIT_USAGE;
        goto out;
    }
    if (zmq_connect(sock, ep) != 0) {
        fprintf(stderr, "rwkvctl: cannot connect to %s: %s\n", ep, zmq_strerror(zmq_errno()));
        status = EXIT_USAGE;
        goto out;
    }

    if (def->cmd != RWKVP_CTL_CHANNELS) {
        int code = 0;
        char *body = NULL;
        size_t body_len = 0;
        void *blob = NULL;
        size_t blob_len = 0;
        status = roundtrip(sock, &req, (long)timeout_ms, ep, &code, &body, &body_len, &blob, &blob_len);
        free(image);
        if (status)
            goto out;
        if (code == 200 && def->cmd == RWKVP_CTL_EXPORT) {
            if (!blob) {
                fprintf(stderr, "rwkvctl: the EXPORT reply carries no image\n");
                status = EXIT_LOCAL;
            } else {
                status = write_file(arg2, blob, blob_len);
            }
            free(blob);
            if (status || strcmp(arg2, "-") == 0) { /* the image went to stdout: no summary there */
                free(body);
                goto out;
            }
        } else {
            free(blob);
        }
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
            } else if (json_mode && !memchr(body, '\n', body_len)) {
                status = fwrite(body, 1, body_len, stdout) == body_len && fputc('\n', stdout) != EOF &&
                                 fflush(stdout) == 0
                             ? 0
                             : EXIT_LOCAL;
                json_decref(j);
            } else {
                status = json_mode ? print_json(j) : json_is_object(j) ? print_text(j) : print_json(j);
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
        status = roundtrip(sock, &req, (long)timeout_ms, ep, &code, &body, &body_len, NULL, NULL);
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
            if (json_mode) {
                json_t *out = json_pack("{s:O, s:b}", "channels", list, "more", 0);
                status = out ? print_json(out) : EXIT_LOCAL;
                json_decref(out);
            } else {
                status = print_channels(list);
            }
            break;
        }
    }
    json_decref(list);
out:
    if (sock)
        zmq_close(sock);
    rwkvc_curve_close();
    if (ctx)
        zmq_ctx_term(ctx);
    return status;
}
