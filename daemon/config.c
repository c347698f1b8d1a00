/* config.c — the schema of rwkvd.yaml and the code that loads, compares and dumps it.
 *
 * Every key is one row of a table (name, type, range, default, where it lives in the struct,
 * whether SIGHUP may change it); parsing, defaults, freeing, diffing and dumping are all
 * driven by those tables, so a new key is one row plus one struct field. libyaml's event
 * API feeds a recursive walk over the tables; the walk stops at the first mistake and says
 * where it is (`file:line:col: key.path: reason`). Aliases are refused, so a hostile file
 * cannot make the walk loop or blow up.
 * Not here: anything that touches a socket, a model or a directory.
 * Invariant: a field is written once, either by its key in the file or, when the key is
 * absent, by its default after its mapping ends; so nothing is freed and rewritten, and a
 * config being built is always safe to free.
 *
 * The `durability:` section holds the WAL fsync policy and segment size and the
 * snapshot interval and token count; `residency:` the tiered-residency bounds (tier.h).
 */
#include "config.h"
#include "rwkvd_features.h"
#include "rwkvp_json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <yaml.h>

#define MAX_FILE_BYTES (4u << 20)
#define MAX_EXPANDED_BYTES 4096
#define MAX_PATH_CHARS 384
#define MAX_ENDPOINTS 32 /* 3 roles x 8 */

_Static_assert(sizeof(rwkvd_backend) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(rwkvd_weights) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(rwkvd_log_level) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(rwkvd_task_kind) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(rwkvd_trigger) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(rwkvd_fsync_policy) == sizeof(int), "enums are stored as int");

/* ---------------------------------------------------------------- schema */

typedef enum {
    K_STR,       /* char *; umin..umax bytes */
    K_INT,       /* int32_t or int64_t; imin..imax */
    K_UINT,      /* uint32_t or uint64_t; umin..umax */
    K_FLOAT,     /* double; fmin..fmax */
    K_BOOL,      /* bool */
    K_DURATION,  /* uint64_t milliseconds; "500ms", "5s", "2m", "1h30m"; umin..umax ms */
    K_SIZE,      /* uint64_t bytes; "512", "64KiB", "1MiB", "1MB"; umin..umax bytes */
    K_ENUM,      /* int-sized enum; one of `enums` */
    K_ENDPOINTS, /* rwkvd_strlist of zmq bind endpoints; a scalar is a list of one */
    K_STRLIST,   /* rwkvd_strlist; each umin..umax bytes */
    K_SECTION,   /* a mapping of `sub` keys; offsets stay those of the enclosing object */
    K_OBJMAP,    /* mapping name -> object of `sub` keys: array at offset, count at count_off,
                    the name in a char * at name_off of each element */
    K_OBJLIST,   /* sequence of objects of `sub` keys: array at offset, count at count_off */
} key_type;

enum {
    F_RELOAD = 1u << 0,      /* SIGHUP may change it (inherited by everything below) */
    F_EXPAND = 1u << 1,      /* ${NAME} / ${NAME:-fallback} / $$ expanded */
    F_REQUIRED = 1u << 2,    /* no default: the key must be given */
    F_MIN_EXCL = 1u << 3,    /* K_FLOAT: fmin itself is out of range */
    F_UNIQUE_NAME = 1u << 4, /* K_OBJLIST: the elements' first field (char *name) is unique */
    F_PROFILE_REF = 1u << 5, /* K_STR: names a profile (checked once all are known) */
};

typedef struct {
    const char *name;
    int value;
} enum_name;

typedef struct ctx ctx;
typedef struct key key;
struct key {
    const char *name;
    key_type type;
    unsigned flags;
    size_t offset, size;
    const char *def; /* default as YAML text (scalars, and the one endpoint of K_ENDPOINTS) */
    int64_t imin, imax;
    uint64_t umin, umax;
    double fmin, fmax;
    const enum_name *enums; /* {NULL, 0}-terminated */
    const key *sub;         /* {NULL}-terminated */
    size_t elem_size, count_off, name_off;
    uint32_t min_items, max_items;
    int (*check)(ctx *c, const void *elem, yaml_mark_t m); /* objects: cross-field rules */
};

#define AT(T, m) .offset = offsetof(T, m), .size = sizeof(((T *)0)->m)
#define STR_BYTES(lo, hi) .umin = (lo), .umax = (hi)
#define MS(x) ((uint64_t)(x))
#define SECONDS(x) ((uint64_t)(x) * 1000)

static const enum_name backend_names[] = {
    {"cpu", RWKVD_BACKEND_CPU}, {"cuda", RWKVD_BACKEND_CUDA}, {"cuda-emu", RWKVD_BACKEND_CUDA_EMU},
    {"auto", RWKVD_BACKEND_AUTO}, {NULL, 0}};
static const enum_name weights_names[] = {{"f32", RWKVD_WEIGHTS_F32},
    {"stored", RWKVD_WEIGHTS_STORED}, {"bf16", RWKVD_WEIGHTS_BF16}, {"f16", RWKVD_WEIGHTS_F16},
    {"bf16dot", RWKVD_WEIGHTS_BF16DOT},
    {NULL, 0}};
static const enum_name log_level_names[] = {{"error", RWKVD_LOG_ERROR},
    {"warning", RWKVD_LOG_WARNING}, {"notice", RWKVD_LOG_NOTICE}, {"info", RWKVD_LOG_INFO},
    {"debug", RWKVD_LOG_DEBUG}, {NULL, 0}};
static const enum_name task_kind_names[] = {{"none", RWKVD_TASK_NONE},
    {"classify_labels", RWKVD_TASK_CLASSIFY_LABELS},
    {"classify_linear", RWKVD_TASK_CLASSIFY_LINEAR}, {"continue", RWKVD_TASK_CONTINUE},
    {NULL, 0}};
static const enum_name trigger_names[] = {{"event", RWKVD_TRIGGER_EVENT},
    {"tokens", RWKVD_TRIGGER_TOKENS}, {"request", RWKVD_TRIGGER_REQUEST}, {NULL, 0}};

static const enum_name fsync_names[] = {{"always", RWKVD_FSYNC_ALWAYS},
    {"everysec", RWKVD_FSYNC_EVERYSEC}, {"no", RWKVD_FSYNC_NO}, {NULL, 0}};

static int check_profile(ctx *c, const void *elem, yaml_mark_t m);

static const key model_keys[] = {
    {"path", K_STR, F_EXPAND, AT(rwkvd_config, model.path),
        .def = "${RWKVD_MODEL:-build/tools/default-model.pth}", STR_BYTES(1, 4096)},
    {"vocab", K_STR, F_EXPAND, AT(rwkvd_config, model.vocab), .def = "bytes", STR_BYTES(1, 4096)},
    {"backend", K_ENUM, 0, AT(rwkvd_config, model.backend), .def = "cpu", .enums = backend_names},
    {"weights", K_ENUM, 0, AT(rwkvd_config, model.weights), .def = "f32", .enums = weights_names},
    {"threads", K_UINT, 0, AT(rwkvd_config, model.threads), .def = "0", .umin = 0, .umax = 1024},
    {"state_slots", K_UINT, 0, AT(rwkvd_config, model.state_slots), .def = "256", .umin = 1,
        .umax = 65536},
    {"max_batch", K_UINT, 0, AT(rwkvd_config, model.max_batch), .def = "64", .umin = 1,
        .umax = 4096},
    {.name = NULL},
};

#define ENDPOINT_ROW(n, file) \
    {#n, K_ENDPOINTS, F_EXPAND, AT(rwkvd_config, endpoints.n), \
        .def = "ipc://${RUNTIME_DIRECTORY:-/run/rwkvd}/" file, STR_BYTES(1, 1024), \
        .min_items = 1, .max_items = 8}
static const key endpoint_keys[] = {
    ENDPOINT_ROW(ingest, "ingest.sock"),
    ENDPOINT_ROW(publish, "publish.sock"),
    ENDPOINT_ROW(control, "control.sock"),
    /* INGEST-PULL (PROTOCOL.md §8.4): none unless configured */
    {"ingest_pull", K_ENDPOINTS, F_EXPAND, AT(rwkvd_config, endpoints.ingest_pull), .def = NULL,
        STR_BYTES(1, 1024), .min_items = 0, .max_items = 8},
    {"allow_public_bind", K_BOOL, 0, AT(rwkvd_config, endpoints.allow_public_bind),
        .def = "false"},
    {"publish_hwm", K_UINT, 0, AT(rwkvd_config, endpoints.publish_hwm), .def = "10000", .umin = 100,
        .umax = 1000000},
    {"ingest_reply_hwm", K_UINT, 0, AT(rwkvd_config, endpoints.ingest_reply_hwm), .def = "10000",
        .umin = 100, .umax = 10000000},
    {.name = NULL},
};

static const key limit_keys[] = {
    {"max_channels", K_UINT, 0, AT(rwkvd_config, limits.max_channels), .def = "1024", .umin = 1,
        .umax = 1u << 20},
    {"max_queue_tokens", K_UINT, 0, AT(rwkvd_config, limits.max_queue_tokens), .def = "65536",
        .umin = 1, .umax = 1u << 30},
    {"max_message_bytes", K_SIZE, 0, AT(rwkvd_config, limits.max_message_bytes), .def = "1MiB",
        .umin = 1, .umax = 64u << 20},
    {.name = NULL},
};

static const key event_keys[] = {
    {"separator", K_STR, 0, AT(rwkvd_config, events.separator), .def = "\"\\n\"",
        STR_BYTES(0, 64)},
    {.name = NULL},
};

static const key log_keys[] = {
    {"level", K_ENUM, 0, AT(rwkvd_config, log.level), .def = "info", .enums = log_level_names},
    {.name = NULL},
};

static const key service_keys[] = {
    {"status_interval", K_DURATION, 0, AT(rwkvd_config, service.status_interval_ms),
        .def = "5s", .umin = MS(100), .umax = SECONDS(3600)},
    {"step_timeout", K_DURATION, 0, AT(rwkvd_config, service.step_timeout_ms), .def = "60s",
        .umin = SECONDS(1), .umax = SECONDS(3600)},
    {.name = NULL},
};

static const key durability_keys[] = {
    {"enabled", K_BOOL, 0, AT(rwkvd_config, durability.enabled), .def = "true"},
    {"fsync", K_ENUM, 0, AT(rwkvd_config, durability.fsync), .def = "everysec",
        .enums = fsync_names},
    {"snapshot_interval", K_DURATION, 0, AT(rwkvd_config, durability.snapshot_interval_ms),
        .def = "5m", .umin = 0, .umax = SECONDS(7 * 86400)},
    {"snapshot_every_tokens", K_UINT, 0, AT(rwkvd_config, durability.snapshot_every_tokens),
        .def = "100000", .umin = 0, .umax = UINT64_MAX},
    {"wal_segment_bytes", K_SIZE, 0, AT(rwkvd_config, durability.wal_segment_bytes),
        .def = "64MiB", .umin = 4096, .umax = 1ull << 40},
    {"rebuild_damaged", K_BOOL, 0, AT(rwkvd_config, durability.rebuild_damaged), .def = "false"},
    {.name = NULL},
};

/* Output sequence numbers and retention (PROTOCOL.md §9.7, publish.c, outring.c). */
static const key output_keys[] = {
    {"sequence", K_BOOL, 0, AT(rwkvd_config, outputs.sequence), .def = "true"},
    {"retain_messages", K_UINT, 0, AT(rwkvd_config, outputs.retain_messages), .def = "1024",
        .umin = 0, .umax = 1u << 20},
    {"retain_bytes", K_SIZE, 0, AT(rwkvd_config, outputs.retain_bytes), .def = "256KiB",
        .umin = 0, .umax = 64u << 20},
    {.name = NULL},
};

static const key residency_keys[] = {
    {"resident_channels", K_UINT, 0, AT(rwkvd_config, residency.resident_channels), .def = "0",
        .umin = 0, .umax = 65536},
    {"idle_ttl", K_DURATION, 0, AT(rwkvd_config, residency.idle_ttl_ms), .def = "10m", .umin = 0,
        .umax = SECONDS(30 * 86400)},
    {"host_max_bytes", K_SIZE, 0, AT(rwkvd_config, residency.host_max_bytes), .def = "1GiB",
        .umin = 0, .umax = 1ull << 44},
    {.name = NULL},
};

static const key label_keys[] = {
    {"name", K_STR, F_REQUIRED, AT(rwkvd_label, name), STR_BYTES(1, 64)},
    {"text", K_STR, F_REQUIRED, AT(rwkvd_label, text), STR_BYTES(1, 256)},
    {.name = NULL},
};

static const key generate_keys[] = {
    /* the ranges and defaults of PROTOCOL.md §6.4 (test rwkvd-spec-ranges compares them) */
    {"max_tokens", K_UINT, 0, AT(rwkvd_profile, generate.max_tokens), .def = "128", .umin = 1,
        .umax = 65536},
    {"temperature", K_FLOAT, 0, AT(rwkvd_profile, generate.temperature), .def = "1.0",
        .fmin = 0, .fmax = 100},
    {"top_p", K_FLOAT, 0, AT(rwkvd_profile, generate.top_p), .def = "0.85", .fmin = 0,
        .fmax = 1},
    {"top_k", K_UINT, 0, AT(rwkvd_profile, generate.top_k), .def = "0", .umin = 0,
        .umax = 65536},
    {"presence_penalty", K_FLOAT, 0, AT(rwkvd_profile, generate.presence_penalty), .def = "0",
        .fmin = -100, .fmax = 100},
    {"frequency_penalty", K_FLOAT, 0, AT(rwkvd_profile, generate.frequency_penalty),
        .def = "0", .fmin = -100, .fmax = 100},
    {"penalty_decay", K_FLOAT, F_MIN_EXCL, AT(rwkvd_profile, generate.penalty_decay),
        .def = "0.996", .fmin = 0, .fmax = 1},
    {"seed", K_UINT, 0, AT(rwkvd_profile, generate.seed), .def = "42", .umin = 0,
        .umax = RWKVP_SEED_MAX},
    {"stop", K_STRLIST, 0, AT(rwkvd_profile, generate.stop), STR_BYTES(1, 256), .min_items = 0,
        .max_items = 16},
    {"commit", K_BOOL, 0, AT(rwkvd_profile, generate.commit), .def = "false"},
    {.name = NULL},
};

static const key profile_keys[] = {
    {"kind", K_ENUM, F_REQUIRED, AT(rwkvd_profile, kind), .enums = task_kind_names},
    {"trigger", K_ENUM, 0, AT(rwkvd_profile, trigger), .def = "event", .enums = trigger_names},
    {"every_n_tokens", K_UINT, 0, AT(rwkvd_profile, every_n_tokens), .def = "256", .umin = 1,
        .umax = 1000000},
    {"prompt_suffix", K_STR, 0, AT(rwkvd_profile, prompt_suffix), .def = "\"\"",
        STR_BYTES(0, 4096)},
    {"labels", K_OBJLIST, F_UNIQUE_NAME, AT(rwkvd_profile, labels), .sub = label_keys,
        .elem_size = sizeof(rwkvd_label), .count_off = offsetof(rwkvd_profile, n_labels),
        .min_items = 0, .max_items = 256},
    {"head", K_STR, F_EXPAND, AT(rwkvd_profile, head), .def = "\"\"", STR_BYTES(0, 4096)},
    {"generate", K_SECTION, 0, 0, 0, .sub = generate_keys},
    {.name = NULL},
};

static const key task_keys[] = {
    {"default_profile", K_STR, F_PROFILE_REF, AT(rwkvd_config, tasks.default_profile),
        .def = "\"\"", STR_BYTES(0, 64)},
    {"profiles", K_OBJMAP, 0, AT(rwkvd_config, tasks.profiles), .sub = profile_keys,
        .elem_size = sizeof(rwkvd_profile), .count_off = offsetof(rwkvd_config, tasks.n_profiles),
        .name_off = offsetof(rwkvd_profile, name), .max_items = 256, .check = check_profile},
    {.name = NULL},
};

/* Warm standby (replica.c): a primary publishes its input log on `bind`; a daemon
 * started with --standby-of follows it. `peer` is the other daemon's control endpoint, asked
 * for its fencing epoch before this one serves. The endpoints are connect/bind strings
 * checked when used (zmq_bind/zmq_connect name the bad one). */
static const key replication_keys[] = {
    {"bind", K_STR, F_EXPAND, AT(rwkvd_config, replication.bind), .def = "\"\"", STR_BYTES(0, 1024)},
    {"peer", K_STR, F_EXPAND, AT(rwkvd_config, replication.peer), .def = "\"\"", STR_BYTES(0, 1024)},
    {"heartbeat_interval", K_DURATION, 0, AT(rwkvd_config, replication.heartbeat_interval_ms),
        .def = "200ms", .umin = MS(10), .umax = SECONDS(60)},
    {"failover_timeout", K_DURATION, 0, AT(rwkvd_config, replication.failover_timeout_ms),
        .def = "3s", .umin = MS(50), .umax = SECONDS(3600)},
    {"sync", K_BOOL, 0, AT(rwkvd_config, replication.sync), .def = "false"},
    {.name = NULL},
};

/* Security (security.c): CURVE on every socket when secret_key_file is set; `allow` is re-read
 * on every SIGHUP. Whether the files exist and hold keys is found out at start and by
 * --check-config (rwkvd_security_check). */
static const key curve_keys[] = {
    {"secret_key_file", K_STR, F_EXPAND, AT(rwkvd_config, security.curve.secret_key_file), .def = "\"\"",
        STR_BYTES(0, 4096)},
    {"allow", K_STR, F_EXPAND | F_RELOAD, AT(rwkvd_config, security.curve.allow), .def = "\"\"",
        STR_BYTES(0, 4096)},
    {"client_key_file", K_STR, F_EXPAND, AT(rwkvd_config, security.curve.client_key_file), .def = "\"\"",
        STR_BYTES(0, 4096)},
    {"peer_public_key_file", K_STR, F_EXPAND, AT(rwkvd_config, security.curve.peer_public_key_file),
        .def = "\"\"", STR_BYTES(0, 4096)},
    {.name = NULL},
};

static const key security_keys[] = {
    {"insecure_bind", K_BOOL, 0, AT(rwkvd_config, security.insecure_bind), .def = "false"},
    {"curve", K_SECTION, 0, 0, 0, .sub = curve_keys},
    {.name = NULL},
};

/* Prometheus text over HTTP (httpmetrics.c): off unless `listen` is set; a non-loopback
 * address also needs allow_remote. The address syntax and the loopback rule are checked in
 * check_whole; a build without libmicrohttpd refuses a non-empty `listen` there. */
static const key metrics_keys[] = {
    {"listen", K_STR, 0, AT(rwkvd_config, metrics.listen), .def = "\"\"", STR_BYTES(0, 300)},
    {"allow_remote", K_BOOL, 0, AT(rwkvd_config, metrics.allow_remote), .def = "false"},
    {.name = NULL},
};

static const key root_keys[] = {
    {"model", K_SECTION, 0, 0, 0, .sub = model_keys},
    {"endpoints", K_SECTION, 0, 0, 0, .sub = endpoint_keys},
    {"limits", K_SECTION, F_RELOAD, 0, 0, .sub = limit_keys},
    {"events", K_SECTION, 0, 0, 0, .sub = event_keys},
    {"log", K_SECTION, F_RELOAD, 0, 0, .sub = log_keys},
    {"service", K_SECTION, 0, 0, 0, .sub = service_keys},
    {"state_dir", K_STR, F_EXPAND, AT(rwkvd_config, state_dir),
        .def = "${STATE_DIRECTORY:-/var/lib/rwkvd}", STR_BYTES(1, 4096)},
    {"durability", K_SECTION, 0, 0, 0, .sub = durability_keys},
    {"residency", K_SECTION, F_RELOAD, 0, 0, .sub = residency_keys},
    {"outputs", K_SECTION, 0, 0, 0, .sub = output_keys},
    {"tasks", K_SECTION, F_RELOAD, 0, 0, .sub = task_keys},
    {"replication", K_SECTION, 0, 0, 0, .sub = replication_keys},
    {"security", K_SECTION, 0, 0, 0, .sub = security_keys},
    {"metrics", K_SECTION, 0, 0, 0, .sub = metrics_keys},
    {.name = NULL},
};

#define MAX_KEYS_PER_MAP 16 /* no table above has more rows */

/* ---------------------------------------------------------------- context and errors */

struct ctx {
    yaml_parser_t yp;
    yaml_event_t ev;
    bool have_ev;
    const char *name;
    const unsigned char *text;
    size_t len;
    char *err;
    size_t err_len;
    char path[MAX_PATH_CHARS];
    size_t plen;
    const char *in_default; /* the default being converted, for messages */
    rwkvd_config *cfg;
    /* checks that need the whole file */
    struct {
        const char *uri; /* borrowed from cfg */
        char path[96];
        yaml_mark_t mark;
        bool public_tcp, any_port, from_default;
    } eps[MAX_ENDPOINTS];
    int n_eps;
    yaml_mark_t profile_ref_mark;
    yaml_mark_t residency_mark; /* residency.resident_channels, checked against model.state_slots */
    yaml_mark_t curve_mark, allow_mark, repl_bind_mark; /* security.curve.*, replication.bind */
    yaml_mark_t metrics_mark;                           /* metrics.listen */
};

static int fail(ctx *c, yaml_mark_t m, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(ctx *c, yaml_mark_t m, const char *fmt, ...)
{
    if (!c->err || !c->err_len)
        return -EINVAL;
    int n = snprintf(c->err, c->err_len, "%s:%zu:%zu: ", c->name, m.line + 1, m.column + 1);
    if (n >= 0 && (size_t)n < c->err_len && c->plen)
        n += snprintf(c->err + n, c->err_len - (size_t)n, "%s: ", c->path);
    if (n >= 0 && (size_t)n < c->err_len) {
        va_list ap;
        va_start(ap, fmt);
        n += vsnprintf(c->err + n, c->err_len - (size_t)n, fmt, ap);
        va_end(ap);
    }
    if (c->in_default && n >= 0 && (size_t)n < c->err_len)
        snprintf(c->err + n, c->err_len - (size_t)n, " (in the default \"%s\")", c->in_default);
    return -EINVAL;
}

static int fail_nomem(ctx *c)
{
    if (c->err && c->err_len)
        snprintf(c->err, c->err_len, "%s: out of memory", c->name);
    return -ENOMEM;
}

/* libyaml's own message, placed at its mark (reader errors carry a byte offset instead). */
static int yaml_fail(ctx *c)
{
    const yaml_parser_t *p = &c->yp;
    if (p->error == YAML_MEMORY_ERROR)
        return fail_nomem(c);
    yaml_mark_t m = p->problem_mark;
    if (p->error == YAML_READER_ERROR) {
        size_t off = p->problem_offset < c->len ? p->problem_offset : c->len;
        m.line = m.column = 0;
        for (size_t i = 0; i < off; i++) {
            if (c->text[i] == '\n') {
                m.line++;
                m.column = 0;
            } else {
                m.column++;
            }
        }
    }
    size_t saved = c->plen;
    c->plen = 0; /* a syntax error belongs to no key */
    const char *problem = p->problem ? p->problem : "unknown error";
    int rc;
    if (p->error == YAML_READER_ERROR && p->problem_value != -1)
        rc = fail(c, m, "invalid YAML: %s (byte 0x%02x)", problem, (unsigned)p->problem_value & 0xffu);
    else if (p->context)
        rc = fail(c, m, "invalid YAML: %s (%s at line %zu, column %zu)", problem, p->context,
                  p->context_mark.line + 1, p->context_mark.column + 1);
    else
        rc = fail(c, m, "invalid YAML: %s", problem);
    c->plen = saved;
    return rc;
}

static size_t path_push(ctx *c, const char *name, size_t n)
{
    size_t old = c->plen;
    const char *dot = c->plen ? "." : "";
    if (n > 64)
        n = 64; /* an absurd unknown key stays readable */
    snprintf(c->path + c->plen, sizeof c->path - c->plen, "%s%.*s", dot, (int)n, name);
    c->plen = strnlen(c->path, sizeof c->path); /* a NUL inside a key ends it */
    return old;
}

static size_t path_push_index(ctx *c, size_t i)
{
    size_t old = c->plen;
    snprintf(c->path + c->plen, sizeof c->path - c->plen, "[%zu]", i);
    c->plen = strnlen(c->path, sizeof c->path);
    return old;
}

static void path_pop(ctx *c, size_t old)
{
    c->plen = old;
    c->path[old] = 0;
}

static int next(ctx *c)
{
    if (c->have_ev) {
        yaml_event_delete(&c->ev);
        c->have_ev = false;
    }
    if (!yaml_parser_parse(&c->yp, &c->ev))
        return yaml_fail(c);
    c->have_ev = true;
    if (c->ev.type == YAML_ALIAS_EVENT)
        return fail(c, c->ev.start_mark, "YAML aliases (*%s) are not supported",
                    (const char *)c->ev.data.alias.anchor);
    return 0;
}

static const char *event_noun(const yaml_event_t *e)
{
    switch (e->type) {
    case YAML_MAPPING_START_EVENT:
        return "a mapping";
    case YAML_SEQUENCE_START_EVENT:
        return "a sequence";
    case YAML_SCALAR_EVENT:
        return e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? "a scalar" : "a quoted string";
    default:
        return "something else";
    }
}

static bool is_null(const yaml_event_t *e)
{
    if (e->type != YAML_SCALAR_EVENT || e->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = (const char *)e->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

/* ---------------------------------------------------------------- scalar parsers */

/* Decimal digits with an optional '+', no leading zeros (YAML 1.1 reads 010 as octal).
 * 0, -EINVAL (not a number) or -ERANGE (over 2^64-1). */
static int parse_u64(const char *s, size_t n, uint64_t *out)
{
    size_t i = 0;
    if (i < n && s[i] == '+')
        i++;
    if (i == n)
        return -EINVAL;
    if (s[i] == '0' && i + 1 < n)
        return -EINVAL;
    uint64_t v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int parse_i64(const char *s, size_t n, int64_t *out)
{
    bool neg = n > 0 && s[0] == '-';
    uint64_t u;
    int rc = parse_u64(s + neg, n - neg, &u);
    if (rc)
        return rc;
    if (neg && n > 1 && s[1] == '+')
        return -EINVAL;
    if (u > (uint64_t)INT64_MAX + neg)
        return -ERANGE;
    *out = neg ? (int64_t)(0 - u) : (int64_t)u;
    return 0;
}

/* A finite decimal float; no inf/nan/hex. */
static int parse_double(const char *s, size_t n, double *out)
{
    bool digit = false;
    if (n == 0 || n > 64)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch >= '0' && ch <= '9')
            digit = true;
        else if (ch != '.' && ch != '-' && ch != '+' && ch != 'e' && ch != 'E')
            return -EINVAL;
    }
    if (!digit)
        return -EINVAL;
    char buf[72];
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (end != buf + n)
        return -EINVAL;
    if (!isfinite(v))
        return -ERANGE;
    *out = v;
    return 0;
}

typedef struct {
    const char *name;
    uint64_t mult;
} unit;

static const unit duration_units[] = {
    {"ms", 1}, {"s", 1000}, {"min", 60000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
    {NULL, 0}};
static const unit size_units[] = {{"B", 1}, {"KiB", 1ull << 10}, {"MiB", 1ull << 20},
    {"GiB", 1ull << 30}, {"TiB", 1ull << 40}, {"kB", 1000}, {"KB", 1000}, {"MB", 1000000},
    {"GB", 1000000000}, {"TB", 1000000000000}, {NULL, 0}};

/* "1h30m", "500ms", "0": sum of <digits><unit>. -EINVAL or -ERANGE. */
static int parse_duration(const char *s, size_t n, uint64_t *out_ms)
{
    if (n == 1 && s[0] == '0') {
        *out_ms = 0;
        return 0;
    }
    uint64_t total = 0;
    size_t i = 0;
    if (n == 0)
        return -EINVAL;
    while (i < n) {
        size_t d0 = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        size_t u0 = i;
        while (i < n && s[i] >= 'a' && s[i] <= 'z')
            i++;
        if (d0 == u0 || u0 == i)
            return -EINVAL;
        uint64_t v;
        int rc = parse_u64(s + d0, u0 - d0, &v);
        if (rc)
            return rc;
        const unit *u = duration_units;
        while (u->name && (strlen(u->name) != i - u0 || memcmp(u->name, s + u0, i - u0)))
            u++;
        if (!u->name)
            return -EINVAL;
        if (v > (UINT64_MAX - total) / u->mult)
            return -ERANGE;
        total += v * u->mult;
    }
    *out_ms = total;
    return 0;
}

/* "4096", "64KiB", "1 MiB", "10MB" (units case-insensitive). -EINVAL or -ERANGE. */
static int parse_size(const char *s, size_t n, uint64_t *out)
{
    size_t i = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    size_t dn = i;
    if (i < n && s[i] == ' ')
        i++;
    uint64_t v, mult = 1;
    int rc = parse_u64(s, dn, &v);
    if (rc)
        return rc;
    if (i < n) {
        const unit *u = size_units;
        while (u->name && (strlen(u->name) != n - i || strncasecmp(u->name, s + i, n - i)))
            u++;
        if (!u->name)
            return -EINVAL;
        mult = u->mult;
    } else if (i != dn) {
        return -EINVAL;
    }
    if (v > UINT64_MAX / mult)
        return -ERANGE;
    *out = v * mult;
    return 0;
}

static void format_duration(char *buf, size_t cap, uint64_t ms)
{
    static const unit by_size[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000},
        {"ms", 1}};
    const unit *u = &by_size[4];
    for (size_t i = 0; i < 5 && ms; i++) {
        if (ms % by_size[i].mult == 0) {
            u = &by_size[i];
            break;
        }
    }
    snprintf(buf, cap, "%llu%s", (unsigned long long)(ms / u->mult), ms ? u->name : "s");
}

static void format_size(char *buf, size_t cap, uint64_t bytes)
{
    static const unit by_size[] = {{"TiB", 1ull << 40}, {"GiB", 1ull << 30},
        {"MiB", 1ull << 20}, {"KiB", 1ull << 10}, {"B", 1}};
    const unit *u = &by_size[4];
    for (size_t i = 0; i < 5 && bytes; i++) {
        if (bytes % by_size[i].mult == 0) {
            u = &by_size[i];
            break;
        }
    }
    snprintf(buf, cap, "%llu%s", (unsigned long long)(bytes / u->mult), u->name);
}

/* The shortest %g that reads back as the same double. */
static void format_double(char *buf, size_t cap, double v)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    /* "1" reads as a float too, but "1.0" says what it is */
    if (!strpbrk(buf, ".eE") && strlen(buf) + 2 < cap)
        strcat(buf, ".0");
}

/* ---------------------------------------------------------------- environment expansion */

static bool is_name_start(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_';
}

static bool is_name_char(char ch)
{
    return is_name_start(ch) || (ch >= '0' && ch <= '9');
}

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static bool sbuf_add(sbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return false;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}

/* ${NAME}, ${NAME:-fallback} (fallback when unset or empty, as in sh), $$ = $. */
static int expand(ctx *c, const char *s, size_t n, yaml_mark_t m, char **out, size_t *out_len)
{
    sbuf b = {0};
    if (!sbuf_add(&b, "", 0))
        return fail_nomem(c);
    size_t i = 0;
    while (i < n) {
        const char *dollar = memchr(s + i, '$', n - i);
        size_t lit = dollar ? (size_t)(dollar - (s + i)) : n - i;
        if (!sbuf_add(&b, s + i, lit))
            goto nomem;
        i += lit;
        if (i == n)
            break;
        if (i + 1 < n && s[i + 1] == '$') {
            if (!sbuf_add(&b, "$", 1))
                goto nomem;
            i += 2;
            continue;
        }
        if (i + 1 >= n || s[i + 1] != '{') {
            if (!sbuf_add(&b, "$", 1))
                goto nomem;
            i++;
            continue;
        }
        size_t n0 = i + 2, j = n0;
        if (j >= n || !is_name_start(s[j])) {
            free(b.p);
            return fail(c, m, "bad variable name after \"${\" (expected [A-Za-z_][A-Za-z0-9_]*)");
        }
        while (j < n && is_name_char(s[j]))
            j++;
        char name[128];
        if (j - n0 >= sizeof name) {
            free(b.p);
            return fail(c, m, "environment variable name too long");
        }
        memcpy(name, s + n0, j - n0);
        name[j - n0] = 0;
        const char *fb = NULL;
        size_t fb_len = 0;
        if (j + 1 < n && s[j] == ':' && s[j + 1] == '-') {
            fb = s + j + 2;
            const char *close = memchr(fb, '}', n - (j + 2));
            if (!close) {
                free(b.p);
                return fail(c, m, "unterminated \"${%s:-\" (missing \"}\")", name);
            }
            fb_len = (size_t)(close - fb);
            j = (size_t)(close - s);
        }
        if (j >= n || s[j] != '}') {
            free(b.p);
            return fail(c, m, "unterminated \"${%s\" (expected \"}\" or \":-fallback}\")", name);
        }
        i = j + 1;
        const char *v = getenv(name);
        if (fb && (!v || !*v)) {
            v = NULL;
            if (!sbuf_add(&b, fb, fb_len))
                goto nomem;
        } else if (!v) {
            free(b.p);
            return fail(c, m, "environment variable %s is not set (write ${%s:-fallback} for a "
                              "default)", name, name);
        }
        if (v && !sbuf_add(&b, v, strlen(v)))
            goto nomem;
        if (b.n > MAX_EXPANDED_BYTES) {
            free(b.p);
            return fail(c, m, "longer than %d bytes after expansion", MAX_EXPANDED_BYTES);
        }
    }
    *out = b.p;
    *out_len = b.n;
    return 0;
nomem:
    free(b.p);
    return fail_nomem(c);
}

/* ---------------------------------------------------------------- endpoints */

static bool is_loopback_host(const char *h)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, h, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, h, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) ||
               (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return !strcmp(h, "localhost") || !strcmp(h, "lo");
}

/* NULL when `s` is a bind endpoint rwkvd accepts, else why not. */
static const char *check_endpoint(const char *s, bool *public_tcp, bool *any_port)
{
    *public_tcp = *any_port = false;
    for (const char *p = s; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return "contains whitespace or a control character";
    }
    if (!strncmp(s, "tcp://", 6)) {
        const char *rest = s + 6, *colon;
        char host[256];
        if (rest[0] == '[') {
            const char *close = strchr(rest, ']');
            if (!close || close[1] != ':')
                return "expected tcp://[ipv6]:port";
            size_t hn = (size_t)(close - rest - 1);
            if (hn == 0 || hn >= sizeof host)
                return "bad IPv6 address";
            memcpy(host, rest + 1, hn);
            host[hn] = 0;
            struct in6_addr a6;
            if (inet_pton(AF_INET6, host, &a6) != 1)
                return "bad IPv6 address";
            colon = close + 1;
        } else {
            colon = strrchr(rest, ':');
            if (!colon)
                return "missing port (expected tcp://host:port)";
            size_t hn = (size_t)(colon - rest);
            if (hn == 0)
                return "missing host (expected tcp://host:port; 127.0.0.1 for loopback)";
            if (hn >= sizeof host)
                return "host name too long";
            memcpy(host, rest, hn);
            host[hn] = 0;
            if (strchr(host, ':'))
                return "an IPv6 address needs brackets (tcp://[::1]:port)";
            if (strcmp(host, "*")) {
                for (const char *p = host; *p; p++) {
                    if (!is_name_char(*p) && *p != '.' && *p != '-')
                        return "bad host (expected an IPv4 address, [IPv6], an interface or "
                               "host name, or *)";
                }
            }
        }
        const char *port = colon + 1;
        if (!strcmp(port, "*")) {
            *any_port = true;
        } else {
            uint64_t pv;
            if (parse_u64(port, strlen(port), &pv) != 0 || pv < 1 || pv > 65535)
                return "bad port (expected 1..65535 or *)";
        }
        *public_tcp = !is_loopback_host(host);
        return NULL;
    }
    if (!strncmp(s, "ipc://", 6)) {
        const char *path = s + 6;
        if (!*path)
            return "empty ipc path";
        if (!strcmp(path, "*"))
            return "ipc://* binds a random name that clients cannot know";
        if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return "ipc path longer than 107 bytes (the limit of a unix socket address)";
        return NULL;
    }
    if (!strncmp(s, "inproc://", 9))
        return s[9] ? NULL : "empty inproc name";
    if (strstr(s, "://"))
        return "unsupported transport (rwkvd binds tcp://, ipc:// or inproc://)";
    return "not an endpoint (expected tcp://host:port, ipc://path or inproc://name)";
}

/* ---------------------------------------------------------------- field access */

static void *field(void *base, const key *k)
{
    return (char *)base + k->offset;
}

static void store_uint(void *p, size_t size, uint64_t v)
{
    if (size == sizeof(uint32_t)) {
        uint32_t x = (uint32_t)v;
        memcpy(p, &x, sizeof x);
    } else {
        memcpy(p, &v, sizeof v);
    }
}

static uint64_t load_uint(const void *p, size_t size)
{
    if (size == sizeof(uint32_t)) {
        uint32_t x;
        memcpy(&x, p, sizeof x);
        return x;
    }
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static void store_int(void *p, size_t size, int64_t v)
{
    if (size == sizeof(int32_t)) {
        int32_t x = (int32_t)v;
        memcpy(p, &x, sizeof x);
    } else {
        memcpy(p, &v, sizeof v);
    }
}

static int64_t load_int(const void *p, size_t size)
{
    if (size == sizeof(int32_t)) {
        int32_t x;
        memcpy(&x, p, sizeof x);
        return x;
    }
    int64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Arrays of objects: the pointer and the count, read and written through memcpy so the
 * generic code needs no casts between element types. */
static void *objs_get(const void *base, const key *k, size_t *n)
{
    void *v;
    memcpy(&v, (const char *)base + k->offset, sizeof v);
    memcpy(n, (const char *)base + k->count_off, sizeof *n);
    return v;
}

static void objs_set(void *base, const key *k, void *v, size_t n)
{
    memcpy((char *)base + k->offset, &v, sizeof v);
    memcpy((char *)base + k->count_off, &n, sizeof n);
}

static char *obj_name(const void *elem, size_t name_off)
{
    char *s;
    memcpy(&s, (const char *)elem + name_off, sizeof s);
    return s;
}

static void free_fields(const key *keys, void *base);

static void free_strlist(rwkvd_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static void free_field(const key *k, void *base)
{
    switch (k->type) {
    case K_STR: {
        char **s = field(base, k);
        free(*s);
        *s = NULL;
        break;
    }
    case K_ENDPOINTS:
    case K_STRLIST:
        free_strlist(field(base, k));
        break;
    case K_SECTION:
        free_fields(k->sub, base);
        break;
    case K_OBJMAP:
    case K_OBJLIST: {
        size_t n;
        char *v = objs_get(base, k, &n);
        for (size_t i = 0; i < n; i++) {
            void *elem = v + i * k->elem_size;
            free_fields(k->sub, elem);
            if (k->type == K_OBJMAP)
                free(obj_name(elem, k->name_off));
        }
        free(v);
        objs_set(base, k, NULL, 0);
        break;
    }
    default:
        break;
    }
}

static void free_fields(const key *keys, void *base)
{
    for (const key *k = keys; k->name; k++)
        free_field(k, base);
}

/* ---------------------------------------------------------------- conversion */

static const char *type_noun(key_type t)
{
    switch (t) {
    case K_STR:
        return "a string";
    case K_INT:
    case K_UINT:
        return "an integer";
    case K_FLOAT:
        return "a number";
    case K_BOOL:
        return "true or false";
    case K_DURATION:
        return "a duration (e.g. 500ms, 5s, 2m, 1h30m)";
    case K_SIZE:
        return "a size (e.g. 4096, 64KiB, 1MiB)";
    case K_ENUM:
        return "one of the listed words";
    case K_ENDPOINTS:
        return "an endpoint or a list of endpoints";
    case K_STRLIST:
        return "a string or a list of strings";
    case K_SECTION:
    case K_OBJMAP:
        return "a mapping";
    case K_OBJLIST:
        return "a list of mappings";
    }
    return "?";
}

static int enum_list(const enum_name *e, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = 0;
    for (; e->name && n < cap; e++) {
        int w = snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", e->name);
        if (w < 0)
            return -1;
        n += (size_t)w;
    }
    return 0;
}

static void format_bound(const key *k, uint64_t v, char *buf, size_t cap)
{
    if (k->type == K_DURATION)
        format_duration(buf, cap, v);
    else if (k->type == K_SIZE)
        format_size(buf, cap, v);
    else
        snprintf(buf, cap, "%llu", (unsigned long long)v);
}

/* Converts scalar text s[0..n) for key k and stores it in base. `plain` says whether YAML
 * wrote it unquoted (numbers and booleans must be). */
static int convert_scalar(ctx *c, const key *k, void *base, const char *s, size_t n, bool plain,
                          yaml_mark_t m)
{
    void *p = field(base, k);
    switch (k->type) {
    case K_STR: {
        char *v;
        size_t vn;
        if (memchr(s, 0, n))
            return fail(c, m, "contains a NUL character");
        if (k->flags & F_EXPAND) {
            int rc = expand(c, s, n, m, &v, &vn);
            if (rc)
                return rc;
        } else {
            v = strndup(s, n);
            vn = n;
            if (!v)
                return fail_nomem(c);
        }
        if (vn < k->umin || vn > k->umax) {
            free(v);
            if (vn < k->umin)
                return fail(c, m, "must not be empty");
            return fail(c, m, "longer than %llu bytes", (unsigned long long)k->umax);
        }
        if (k->flags & F_PROFILE_REF)
            c->profile_ref_mark = m;
        if (p == (void *)&c->cfg->security.curve.secret_key_file)
            c->curve_mark = m;
        else if (p == (void *)&c->cfg->security.curve.allow)
            c->allow_mark = m;
        else if (p == (void *)&c->cfg->replication.bind)
            c->repl_bind_mark = m;
        else if (p == (void *)&c->cfg->metrics.listen)
            c->metrics_mark = m;
        memcpy(p, &v, sizeof v);
        return 0;
    }
    case K_INT: {
        int64_t v;
        if (!plain)
            return fail(c, m, "expected an integer, got a quoted string");
        int rc = parse_i64(s, n, &v);
        if (rc == -EINVAL)
            return fail(c, m, "expected an integer, got \"%.*s\"", (int)(n > 40 ? 40 : n), s);
        if (rc || v < k->imin || v > k->imax)
            return fail(c, m, "%.*s is out of range (%lld..%lld)", (int)(n > 40 ? 40 : n), s,
                        (long long)k->imin, (long long)k->imax);
        store_int(p, k->size, v);
        return 0;
    }
    case K_UINT:
    case K_DURATION:
    case K_SIZE: {
        uint64_t v;
        int rc;
        if (k->type == K_UINT) {
            if (!plain)
                return fail(c, m, "expected an integer, got a quoted string");
            rc = parse_u64(s, n, &v);
        } else if (k->type == K_DURATION) {
            rc = parse_duration(s, n, &v);
        } else {
            rc = parse_size(s, n, &v);
        }
        if (rc == -EINVAL) {
            if (k->type == K_DURATION && parse_u64(s, n, &v) == 0)
                return fail(c, m, "duration \"%.*s\" needs a unit (ms, s, m, h, d)",
                            (int)(n > 40 ? 40 : n), s);
            return fail(c, m, "expected %s, got \"%.*s\"", type_noun(k->type),
                        (int)(n > 40 ? 40 : n), s);
        }
        if (rc || v < k->umin || v > k->umax) {
            char lo[32], hi[32];
            format_bound(k, k->umin, lo, sizeof lo);
            format_bound(k, k->umax, hi, sizeof hi);
            return fail(c, m, "%.*s is out of range (%s..%s)", (int)(n > 40 ? 40 : n), s, lo, hi);
        }
        store_uint(p, k->size, v);
        if (p == (void *)&c->cfg->residency.resident_channels)
            c->residency_mark = m;
        return 0;
    }
    case K_FLOAT: {
        double v;
        if (!plain)
            return fail(c, m, "expected a number, got a quoted string");
        int rc = parse_double(s, n, &v);
        if (rc == -EINVAL)
            return fail(c, m, "expected a number, got \"%.*s\"", (int)(n > 40 ? 40 : n), s);
        if (rc || v < k->fmin || v > k->fmax || ((k->flags & F_MIN_EXCL) && v == k->fmin)) {
            char lo[32], hi[32];
            format_double(lo, sizeof lo, k->fmin);
            format_double(hi, sizeof hi, k->fmax);
            if (k->flags & F_MIN_EXCL)
                return fail(c, m, "%.*s is out of range (above %s, at most %s)",
                            (int)(n > 40 ? 40 : n), s, lo, hi);
            return fail(c, m, "%.*s is out of range (%s..%s)", (int)(n > 40 ? 40 : n), s, lo, hi);
        }
        memcpy(p, &v, sizeof v);
        return 0;
    }
    case K_BOOL: {
        static const char *const yes[] = {"true", "yes", "on", NULL};
        static const char *const no[] = {"false", "no", "off", NULL};
        bool v;
        if (!plain)
            return fail(c, m, "expected true or false, got a quoted string");
        for (int i = 0; yes[i]; i++) {
            if (strlen(yes[i]) == n && !memcmp(yes[i], s, n)) {
                v = true;
                goto store_bool;
            }
            if (strlen(no[i]) == n && !memcmp(no[i], s, n)) {
                v = false;
                goto store_bool;
            }
        }
        return fail(c, m, "expected true or false, got \"%.*s\"", (int)(n > 40 ? 40 : n), s);
    store_bool:
        memcpy(p, &v, sizeof v);
        return 0;
    }
    case K_ENUM: {
        for (const enum_name *e = k->enums; e->name; e++) {
            if (strlen(e->name) == n && !memcmp(e->name, s, n)) {
                memcpy(p, &e->value, sizeof e->value);
                return 0;
            }
        }
        char list[256];
        enum_list(k->enums, list, sizeof list);
        return fail(c, m, "bad value \"%.*s\" (expected one of: %s)", (int)(n > 40 ? 40 : n), s,
                    list);
    }
    default:
        return fail(c, m, "internal error: key type %d is not a scalar", (int)k->type);
    }
}

/* One item of a string list; endpoints are checked and remembered for the file-wide checks. */
static int convert_item(ctx *c, const key *k, const char *s, size_t n, yaml_mark_t m, char **out)
{
    char *v;
    size_t vn;
    if (memchr(s, 0, n))
        return fail(c, m, "contains a NUL character");
    if (k->flags & F_EXPAND) {
        int rc = expand(c, s, n, m, &v, &vn);
        if (rc)
            return rc;
    } else {
        v = strndup(s, n);
        vn = n;
        if (!v)
            return fail_nomem(c);
    }
    if (vn < k->umin || vn > k->umax) {
        free(v);
        if (vn < k->umin)
            return fail(c, m, "must not be empty");
        return fail(c, m, "longer than %llu bytes", (unsigned long long)k->umax);
    }
    if (k->type == K_ENDPOINTS) {
        bool pub, any;
        const char *why = check_endpoint(v, &pub, &any);
        if (why) {
            int rc = fail(c, m, "bad endpoint \"%s\": %s", v, why);
            free(v);
            return rc;
        }
        if (c->n_eps < MAX_ENDPOINTS) {
            c->eps[c->n_eps].uri = v;
            size_t pl = strnlen(c->path, sizeof c->eps[0].path - 1);
            memcpy(c->eps[c->n_eps].path, c->path, pl);
            c->eps[c->n_eps].path[pl] = 0;
            c->eps[c->n_eps].mark = m;
            c->eps[c->n_eps].public_tcp = pub;
            c->eps[c->n_eps].any_port = any;
            c->eps[c->n_eps].from_default = c->in_default != NULL;
            c->n_eps++;
        }
    }
    *out = v;
    return 0;
}

static int append_item(ctx *c, rwkvd_strlist *l, char *v)
{
    char **nv = realloc(l->v, (l->n + 1) * sizeof *nv);
    if (!nv) {
        free(v);
        return fail_nomem(c);
    }
    l->v = nv;
    l->v[l->n++] = v;
    return 0;
}

/* ---------------------------------------------------------------- the walk */

static int parse_fields(ctx *c, const key *keys, void *base, yaml_mark_t map_mark);
static int fill_missing(ctx *c, const key *keys, void *base, const bool *seen, yaml_mark_t m);

static int apply_default(ctx *c, const key *k, void *base, yaml_mark_t m)
{
    int rc = 0;
    switch (k->type) {
    case K_SECTION:
        return fill_missing(c, k->sub, base, NULL, m);
    case K_STRLIST:
    case K_OBJMAP:
    case K_OBJLIST:
        return 0; /* empty */
    case K_ENDPOINTS: {
        char *v;
        if (!k->def)
            return 0; /* no endpoint unless configured */
        c->in_default = k->def;
        size_t old = path_push_index(c, 0);
        rc = convert_item(c, k, k->def, strlen(k->def), m, &v);
        path_pop(c, old);
        c->in_default = NULL;
        return rc ? rc : append_item(c, field(base, k), v);
    }
    default:
        break;
    }
    /* Scalar defaults are YAML text too, so "\n" and "" read as they do in a file. */
    const char *d = k->def;
    size_t dn = strlen(d);
    bool plain = true;
    char unq[64];
    if (dn >= 2 && d[0] == '"') {
        size_t o = 0;
        for (size_t i = 1; i + 1 < dn && o + 1 < sizeof unq; i++) {
            if (d[i] == '\\' && d[i + 1] == 'n') {
                unq[o++] = '\n';
                i++;
            } else {
                unq[o++] = d[i];
            }
        }
        unq[o] = 0;
        d = unq;
        dn = o;
        plain = false;
    }
    c->in_default = k->def;
    rc = convert_scalar(c, k, base, d, dn, plain, m);
    c->in_default = NULL;
    return rc;
}

/* Defaults for every key of `keys` not in seen[] (NULL: none seen); required keys that are
 * missing are an error at the mapping's mark. */
static int fill_missing(ctx *c, const key *keys, void *base, const bool *seen, yaml_mark_t m)
{
    for (size_t i = 0; keys[i].name; i++) {
        if (seen && seen[i])
            continue;
        const key *k = &keys[i];
        if (k->flags & F_REQUIRED)
            return fail(c, m, "missing required key \"%s\"", k->name);
        size_t old = path_push(c, k->name, strlen(k->name));
        int rc = apply_default(c, k, base, m);
        path_pop(c, old);
        if (rc)
            return rc;
    }
    return 0;
}

static size_t edit_distance(const char *a, size_t an, const char *b)
{
    size_t bn = strlen(b), row[65];
    if (an > 64 || bn > 64)
        return 99;
    for (size_t j = 0; j <= bn; j++)
        row[j] = j;
    for (size_t i = 1; i <= an; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= bn; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[bn];
}

/* Where a key of this name lives elsewhere in the schema's sections ("model.threads"). */
static bool find_elsewhere(const key *keys, const char *name, size_t n, char *buf, size_t cap,
                           const char *prefix)
{
    for (const key *k = keys; k->name; k++) {
        char p[128];
        snprintf(p, sizeof p, "%s%s%s", prefix, *prefix ? "." : "", k->name);
        if (strlen(k->name) == n && !memcmp(k->name, name, n)) {
            snprintf(buf, cap, "%s", p);
            return true;
        }
        if (k->type == K_SECTION && find_elsewhere(k->sub, name, n, buf, cap, p))
            return true;
    }
    return false;
}

/* Keys that older versions took, with what to do about them now. */
static const struct {
    const char *path, *why;
} removed_keys[] = {
    {"limits.max_channel_name_bytes", "no longer a setting: channel names are 1..128 octets, fixed by the "
                                      "protocol (PROTOCOL.md §4.4, §14); delete this line"},
};

static int unknown_key(ctx *c, const key *keys, const char *name, size_t n, yaml_mark_t m)
{
    for (size_t i = 0; i < sizeof removed_keys / sizeof removed_keys[0]; i++)
        if (!strcmp(c->path, removed_keys[i].path))
            return fail(c, m, "%s", removed_keys[i].why);
    const key *best = NULL;
    size_t best_d = 3;
    for (const key *k = keys; k->name; k++) {
        size_t d = edit_distance(name, n, k->name);
        if (d < best_d && d < strlen(k->name)) {
            best = k;
            best_d = d;
        }
    }
    if (best)
        return fail(c, m, "unknown key (did you mean \"%s\"?)", best->name);
    char where[128];
    if (find_elsewhere(root_keys, name, n, where, sizeof where, ""))
        return fail(c, m, "unknown key (did you mean %s?)", where);
    return fail(c, m, "unknown key");
}

static int parse_strlist(ctx *c, const key *k, void *base)
{
    rwkvd_strlist *l = field(base, k);
    yaml_event_t *e = &c->ev;
    if (e->type == YAML_SCALAR_EVENT && !is_null(e)) { /* a list of one */
        char *v;
        size_t old = path_push_index(c, 0);
        int rc = convert_item(c, k, (const char *)e->data.scalar.value, e->data.scalar.length,
                              e->start_mark, &v);
        path_pop(c, old);
        return rc ? rc : append_item(c, l, v);
    }
    if (is_null(e) && k->min_items == 0)
        return 0;
    if (e->type != YAML_SEQUENCE_START_EVENT)
        return fail(c, e->start_mark, "expected %s, got %s", type_noun(k->type), event_noun(e));
    yaml_mark_t start = e->start_mark;
    for (;;) {
        int rc = next(c);
        if (rc)
            return rc;
        if (e->type == YAML_SEQUENCE_END_EVENT)
            break;
        size_t old = path_push_index(c, l->n);
        if (e->type != YAML_SCALAR_EVENT || is_null(e)) {
            rc = fail(c, e->start_mark, "expected a string, got %s",
                      is_null(e) ? "nothing" : event_noun(e));
            path_pop(c, old);
            return rc;
        }
        if (l->n >= k->max_items) {
            rc = fail(c, e->start_mark, "too many entries (at most %u)", k->max_items);
            path_pop(c, old);
            return rc;
        }
        char *v;
        rc = convert_item(c, k, (const char *)e->data.scalar.value, e->data.scalar.length,
                          e->start_mark, &v);
        path_pop(c, old);
        if (rc || (rc = append_item(c, l, v)))
            return rc;
    }
    if (l->n < k->min_items)
        return fail(c, start, "needs at least %u entr%s", k->min_items,
                    k->min_items == 1 ? "y" : "ies");
    return 0;
}

static void *grow_objs(ctx *c, const key *k, void *base, size_t *index)
{
    size_t n;
    char *v = objs_get(base, k, &n);
    char *nv = realloc(v, (n + 1) * k->elem_size);
    if (!nv) {
        fail_nomem(c);
        return NULL;
    }
    memset(nv + n * k->elem_size, 0, k->elem_size);
    objs_set(base, k, nv, n + 1);
    *index = n;
    return nv + n * k->elem_size;
}

/* A profile name as PROTOCOL.md §4.4 has it (TASK names one): 1..64 octets, the first a
 * letter, digit or '_', each further one of those or '-' '.' ':' '/'. */
static bool valid_profile_name(const char *s, size_t n)
{
    if (n == 0 || n > 64 || !is_name_char(s[0]))
        return false;
    for (size_t i = 1; i < n; i++) {
        if (!is_name_char(s[i]) && !strchr("-.:/", s[i]))
            return false;
    }
    return true;
}

static int parse_objmap(ctx *c, const key *k, void *base)
{
    yaml_event_t *e = &c->ev;
    if (is_null(e))
        return 0;
    if (e->type != YAML_MAPPING_START_EVENT)
        return fail(c, e->start_mark, "expected a mapping of names, got %s", event_noun(e));
    size_t lines[256];
    for (;;) {
        int rc = next(c);
        if (rc)
            return rc;
        if (e->type == YAML_MAPPING_END_EVENT)
            return 0;
        if (e->type != YAML_SCALAR_EVENT)
            return fail(c, e->start_mark, "a name must be a string, got %s", event_noun(e));
        const char *name = (const char *)e->data.scalar.value;
        size_t nn = e->data.scalar.length;
        yaml_mark_t name_mark = e->start_mark;
        size_t n;
        char *arr = objs_get(base, k, &n);
        size_t old = path_push(c, name, nn);
        if (!valid_profile_name(name, nn) || memchr(name, 0, nn)) {
            rc = fail(c, name_mark, "bad name (expected 1..64 of A-Z a-z 0-9 _ - . : /, "
                                      "the first a letter, digit or _)");
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            if (!strcmp(obj_name(arr + i * k->elem_size, k->name_off), name)) {
                rc = fail(c, name_mark, "duplicate key (first at line %zu)", lines[i] + 1);
                goto out;
            }
        }
        if (n >= k->max_items || n >= sizeof lines / sizeof lines[0]) {
            rc = fail(c, name_mark, "too many entries (at most %u)", k->max_items);
            goto out;
        }
        lines[n] = name_mark.line;
        size_t idx;
        char *elem = grow_objs(c, k, base, &idx);
        if (!elem) {
            rc = -ENOMEM;
            goto out;
        }
        char *copy = strndup(name, nn);
        if (!copy) {
            rc = fail_nomem(c);
            goto out;
        }
        memcpy(elem + k->name_off, &copy, sizeof copy);
        if ((rc = next(c)))
            goto out;
        if (is_null(e))
            rc = fill_missing(c, k->sub, elem, NULL, name_mark);
        else if (e->type == YAML_MAPPING_START_EVENT)
            rc = parse_fields(c, k->sub, elem, e->start_mark);
        else
            rc = fail(c, e->start_mark, "expected a mapping, got %s", event_noun(e));
        /* elem stays valid: nothing below it grows this array */
        if (!rc && k->check)
            rc = k->check(c, elem, name_mark);
    out:
        path_pop(c, old);
        if (rc)
            return rc;
    }
}

static int parse_objlist(ctx *c, const key *k, void *base)
{
    yaml_event_t *e = &c->ev;
    if (is_null(e))
        return 0;
    if (e->type != YAML_SEQUENCE_START_EVENT)
        return fail(c, e->start_mark, "expected a list of mappings, got %s", event_noun(e));
    for (;;) {
        int rc = next(c);
        if (rc)
            return rc;
        if (e->type == YAML_SEQUENCE_END_EVENT)
            return 0;
        size_t n;
        objs_get(base, k, &n);
        size_t old = path_push_index(c, n);
        yaml_mark_t m = e->start_mark;
        if (e->type != YAML_MAPPING_START_EVENT) {
            rc = fail(c, m, "expected a mapping, got %s", is_null(e) ? "nothing" : event_noun(e));
        } else if (n >= k->max_items) {
            rc = fail(c, m, "too many entries (at most %u)", k->max_items);
        } else {
            size_t idx;
            char *elem = grow_objs(c, k, base, &idx);
            rc = elem ? parse_fields(c, k->sub, elem, m) : -ENOMEM;
            if (!rc && (k->flags & F_UNIQUE_NAME)) {
                char *arr = objs_get(base, k, &n);
                const char *mine = obj_name(elem, 0);
                for (size_t i = 0; i < idx && !rc; i++) {
                    if (!strcmp(obj_name(arr + i * k->elem_size, 0), mine))
                        rc = fail(c, m, "duplicate name \"%s\" (also [%zu])", mine, i);
                }
            }
            if (!rc && k->check)
                rc = k->check(c, elem, m);
        }
        path_pop(c, old);
        if (rc)
            return rc;
    }
}

/* The current event starts the value of key k. */
static int parse_value(ctx *c, const key *k, void *base)
{
    yaml_event_t *e = &c->ev;
    switch (k->type) {
    case K_SECTION:
        if (is_null(e))
            return fill_missing(c, k->sub, base, NULL, e->start_mark);
        if (e->type != YAML_MAPPING_START_EVENT)
            return fail(c, e->start_mark, "expected a mapping, got %s", event_noun(e));
        return parse_fields(c, k->sub, base, e->start_mark);
    case K_OBJMAP:
        return parse_objmap(c, k, base);
    case K_OBJLIST:
        return parse_objlist(c, k, base);
    case K_ENDPOINTS:
    case K_STRLIST:
        return parse_strlist(c, k, base);
    default:
        break;
    }
    if (e->type != YAML_SCALAR_EVENT)
        return fail(c, e->start_mark, "expected %s, got %s", type_noun(k->type), event_noun(e));
    if (is_null(e))
        return fail(c, e->start_mark, "missing value%s",
                    k->type == K_STR ? " (write \"\" for an empty string)" : "");
    return convert_scalar(c, k, base, (const char *)e->data.scalar.value, e->data.scalar.length,
                          e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, e->start_mark);
}

/* The current event is the MAPPING_START of an object of `keys`; consumes through its end. */
static int parse_fields(ctx *c, const key *keys, void *base, yaml_mark_t map_mark)
{
    bool seen[MAX_KEYS_PER_MAP] = {false};
    size_t seen_line[MAX_KEYS_PER_MAP];
    yaml_event_t *e = &c->ev;
    for (;;) {
        int rc = next(c);
        if (rc)
            return rc;
        if (e->type == YAML_MAPPING_END_EVENT)
            break;
        if (e->type != YAML_SCALAR_EVENT)
            return fail(c, e->start_mark, "a key must be a string, got %s", event_noun(e));
        const char *name = (const char *)e->data.scalar.value;
        size_t nn = e->data.scalar.length;
        yaml_mark_t km = e->start_mark;
        size_t i = 0;
        while (keys[i].name && (strlen(keys[i].name) != nn || memcmp(keys[i].name, name, nn)))
            i++;
        size_t old = path_push(c, name, nn);
        if (!keys[i].name)
            rc = unknown_key(c, keys, name, nn, km);
        else if (seen[i])
            rc = fail(c, km, "duplicate key (first at line %zu)", seen_line[i] + 1);
        if (!rc) {
            seen[i] = true;
            seen_line[i] = km.line;
            rc = next(c);
        }
        if (!rc)
            rc = parse_value(c, &keys[i], base);
        path_pop(c, old);
        if (rc)
            return rc;
    }
    return fill_missing(c, keys, base, seen, map_mark);
}

/* ---------------------------------------------------------------- host:port */

const char *rwkvd_config_parse_hostport(const char *s, struct sockaddr_storage *addr, socklen_t *addr_len,
                                        bool *loopback)
{
    char host[64];
    const char *colon;
    memset(addr, 0, sizeof *addr);
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return "expected [ipv6]:port";
        colon = close + 1;
        size_t hn = (size_t)(close - s - 1);
        if (hn == 0 || hn >= sizeof host)
            return "bad IPv6 address";
        memcpy(host, s + 1, hn);
        host[hn] = 0;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return "missing port (expected host:port, e.g. 127.0.0.1:9464)";
        size_t hn = (size_t)(colon - s);
        if (hn == 0)
            return "missing host (expected host:port; 127.0.0.1 for loopback, 0.0.0.0 for every address)";
        if (hn >= sizeof host)
            return "host too long (expected an IPv4 address, [IPv6] or localhost)";
        memcpy(host, s, hn);
        host[hn] = 0;
        if (strchr(host, ':'))
            return "an IPv6 address needs brackets ([::1]:9464)";
    }
    uint64_t port;
    const char *ps = colon + 1;
    if (parse_u64(ps, strlen(ps), &port) != 0 || port > 65535)
        return "bad port (expected 0..65535)";
    struct sockaddr_in *a4 = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)addr;
    if (!strcmp(host, "localhost") && s[0] != '[') {
        a4->sin_family = AF_INET;
        a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (s[0] != '[' && inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
    } else if (s[0] == '[' && inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
    } else {
        return s[0] == '[' ? "bad IPv6 address" : "bad host (expected an IPv4 address, [IPv6] or localhost)";
    }
    if (a4->sin_family == AF_INET) {
        a4->sin_port = htons((uint16_t)port);
        *addr_len = sizeof *a4;
    } else {
        a6->sin6_port = htons((uint16_t)port);
        *addr_len = sizeof *a6;
    }
    *loopback = is_loopback_host(host);
    return NULL;
}

/* ---------------------------------------------------------------- file-wide checks */

static int check_profile(ctx *c, const void *elem, yaml_mark_t m)
{
    const rwkvd_profile *p = elem;
    if (p->kind == RWKVD_TASK_CLASSIFY_LABELS && p->n_labels < 2)
        return fail(c, m, "kind classify_labels needs at least 2 labels (has %zu)", p->n_labels);
    if (p->kind == RWKVD_TASK_CLASSIFY_LINEAR && !p->head[0])
        return fail(c, m, "kind classify_linear needs \"head\" (the path of a linear head file)");
    return 0;
}

static int check_whole(ctx *c)
{
    rwkvd_config *cfg = c->cfg;
    size_t saved = c->plen;
    int rc = 0;
    bool curve = cfg->security.curve.secret_key_file[0] != '\0';
    /* endpoints.allow_public_bind is the older name of security.insecure_bind */
    bool secure = curve || cfg->security.insecure_bind || cfg->endpoints.allow_public_bind;
    if (curve != (cfg->security.curve.allow[0] != '\0')) {
        snprintf(c->path, sizeof c->path, "security.curve.%s", curve ? "allow" : "secret_key_file");
        c->plen = strlen(c->path);
        rc = fail(c, curve ? c->curve_mark : c->allow_mark,
                  "security.curve needs both secret_key_file (the server's key pair) and allow (the "
                  "client allow-list file or directory)");
    }
    if (!rc && cfg->replication.bind[0] && !secure) {
        bool pub = false, any = false;
        if (!check_endpoint(cfg->replication.bind, &pub, &any) && pub) {
            snprintf(c->path, sizeof c->path, "replication.bind");
            c->plen = strlen(c->path);
            rc = fail(c, c->repl_bind_mark,
                      "\"%s\" binds a non-loopback address without CURVE; configure "
                      "security.curve.secret_key_file, or set security.insecure_bind: true",
                      cfg->replication.bind);
        }
    }
    for (int i = 0; i < c->n_eps && !rc; i++) {
        snprintf(c->path, sizeof c->path, "%s", c->eps[i].path);
        c->plen = strlen(c->path);
        if (c->eps[i].public_tcp && !secure)
            rc = fail(c, c->eps[i].mark,
                      "\"%s\" binds a non-loopback address without CURVE; configure "
                      "security.curve.secret_key_file (encryption and a client allow-list), or set "
                      "security.insecure_bind: true to accept that anyone who reaches the port can "
                      "feed and read every channel",
                      c->eps[i].uri);
        for (int j = 0; j < i && !rc; j++) {
            if (c->eps[i].any_port || strcmp(c->eps[i].uri, c->eps[j].uri))
                continue;
            /* blame the one the file names, not a default it collides with */
            int bad = c->eps[i].from_default && !c->eps[j].from_default ? j : i;
            int other = bad == i ? j : i;
            snprintf(c->path, sizeof c->path, "%s", c->eps[bad].path);
            c->plen = strlen(c->path);
            rc = fail(c, c->eps[bad].mark, "\"%s\" is also %s%s", c->eps[bad].uri,
                      c->eps[other].path, c->eps[other].from_default ? " (by default)" : "");
        }
    }
    if (!rc && cfg->metrics.listen[0]) {
        struct sockaddr_storage sa;
        socklen_t sa_len;
        bool loopback = false;
        const char *why = rwkvd_config_parse_hostport(cfg->metrics.listen, &sa, &sa_len, &loopback);
        snprintf(c->path, sizeof c->path, "metrics.listen");
        c->plen = strlen(c->path);
        if (!RWKVD_HAVE_MICROHTTPD)
            rc = fail(c, c->metrics_mark,
                      "this rwkvd was built without libmicrohttpd, so it cannot serve /metrics over "
                      "HTTP; leave metrics.listen empty (METRICS on the control socket still works) "
                      "or rebuild with libmicrohttpd-dev installed");
        else if (why)
            rc = fail(c, c->metrics_mark, "\"%s\": %s", cfg->metrics.listen, why);
        else if (!loopback && !cfg->metrics.allow_remote)
            rc = fail(c, c->metrics_mark,
                      "\"%s\" is not a loopback address; /metrics has no authentication, so "
                      "serving it beyond this host needs metrics.allow_remote: true",
                      cfg->metrics.listen);
    }
    if (!rc && cfg->residency.resident_channels && cfg->model.state_slots >= 2 &&
        cfg->residency.resident_channels > cfg->model.state_slots - 2) {
        snprintf(c->path, sizeof c->path, "residency.resident_channels");
        c->plen = strlen(c->path);
        rc = fail(c, c->residency_mark,
                  "%u is more than the %u state slots channels can use (model.state_slots %u "
                  "less 2 scratch slots)",
                  cfg->residency.resident_channels, cfg->model.state_slots - 2,
                  cfg->model.state_slots);
    }
    if (!rc && cfg->tasks.default_profile[0] &&
        !rwkvd_config_find_profile(cfg, cfg->tasks.default_profile)) {
        snprintf(c->path, sizeof c->path, "tasks.default_profile");
        c->plen = strlen(c->path);
        rc = fail(c, c->profile_ref_mark, "no profile named \"%s\" in tasks.profiles",
                  cfg->tasks.default_profile);
    }
    c->plen = saved;
    c->path[saved] = 0;
    return rc;
}

static int parse_document(ctx *c)
{
    yaml_event_t *e = &c->ev;
    yaml_mark_t top = {0, 0, 0};
    int rc = next(c); /* STREAM_START */
    if (!rc)
        rc = next(c);
    if (rc)
        return rc;
    if (e->type == YAML_STREAM_END_EVENT) {
        rc = fill_missing(c, root_keys, c->cfg, NULL, top);
        return rc ? rc : check_whole(c);
    }
    /* DOCUMENT_START */
    if ((rc = next(c)))
        return rc;
    if (e->type == YAML_MAPPING_START_EVENT)
        rc = parse_fields(c, root_keys, c->cfg, e->start_mark);
    else if (is_null(e))
        rc = fill_missing(c, root_keys, c->cfg, NULL, e->start_mark);
    else
        rc = fail(c, e->start_mark, "the top level must be a mapping of keys, got %s",
                  event_noun(e));
    if (rc || (rc = next(c))) /* DOCUMENT_END */
        return rc;
    if ((rc = next(c)))
        return rc;
    if (e->type != YAML_STREAM_END_EVENT)
        return fail(c, e->start_mark, "only one YAML document is allowed");
    return check_whole(c);
}

/* ---------------------------------------------------------------- public entry points */

int rwkvd_config_parse(const char *text, size_t len, const char *name, rwkvd_config **out,
                       char *err, size_t err_len)
{
    if (!out || (!text && len))
        return -EINVAL;
    if (!name)
        name = "(config)";
    ctx *c = calloc(1, sizeof *c);
    rwkvd_config *cfg = calloc(1, sizeof *cfg);
    if (!c || !cfg) {
        free(c);
        free(cfg);
        if (err && err_len)
            snprintf(err, err_len, "%s: out of memory", name);
        return -ENOMEM;
    }
    c->name = name;
    c->text = (const unsigned char *)(text ? text : "");
    c->len = len;
    c->err = err;
    c->err_len = err_len;
    c->cfg = cfg;
    int rc;
    if (!yaml_parser_initialize(&c->yp)) {
        rc = fail_nomem(c);
        free(c);
        free(cfg);
        return rc;
    }
    yaml_parser_set_input_string(&c->yp, c->text, len);
    rc = parse_document(c);
    if (!rc && !(cfg->source = strdup(name)))
        rc = fail_nomem(c);
    if (c->have_ev)
        yaml_event_delete(&c->ev);
    yaml_parser_delete(&c->yp);
    free(c);
    if (rc) {
        rwkvd_config_destroy(&cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int rwkvd_config_load(const char *path, rwkvd_config **out, char *err, size_t err_len)
{
    if (!path || !out)
        return -EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (err && err_len)
            snprintf(err, err_len, "%s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    int rc = 0;
    const char *why = NULL;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        why = strerror(errno);
    } else if (!S_ISREG(st.st_mode)) {
        rc = -EINVAL;
        why = "not a regular file";
    } else if ((uint64_t)st.st_size > MAX_FILE_BYTES) {
        rc = -EFBIG;
        why = "larger than 4 MiB";
    }
    if (rc) {
        if (err && err_len)
            snprintf(err, err_len, "%s: %s", path, why);
        close(fd);
        return rc;
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        if (err && err_len)
            snprintf(err, err_len, "%s: out of memory", path);
        return -ENOMEM;
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            if (err && err_len)
                snprintf(err, err_len, "%s: %s", path, r < 0 ? strerror(e) : "file shrank while read");
            free(buf);
            close(fd);
            return -e;
        }
        got += (size_t)r;
    }
    close(fd);
    rc = rwkvd_config_parse(buf, n, path, out, err, err_len);
    free(buf);
    return rc;
}

int rwkvd_config_default(rwkvd_config **out, char *err, size_t err_len)
{
    return rwkvd_config_parse("", 0, "(defaults)", out, err, err_len);
}

void rwkvd_config_destroy(rwkvd_config **c)
{
    if (!c || !*c)
        return;
    free_fields(root_keys, *c);
    free((*c)->source);
    free(*c);
    *c = NULL;
}

const rwkvd_profile *rwkvd_config_find_profile(const rwkvd_config *c, const char *name)
{
    if (!c || !name)
        return NULL;
    for (size_t i = 0; i < c->tasks.n_profiles; i++) {
        if (!strcmp(c->tasks.profiles[i].name, name))
            return &c->tasks.profiles[i];
    }
    return NULL;
}

/* ---------------------------------------------------------------- diff */

typedef struct {
    rwkvd_config_diff_fn fn;
    void *user;
    int count;
    char path[MAX_PATH_CHARS];
} diff_state;

static void diff_report(diff_state *d, bool reload)
{
    d->count++;
    if (d->fn)
        d->fn(d->path, reload, d->user);
}

static size_t diff_push(diff_state *d, const char *fmt, const char *s, size_t i)
{
    size_t old = strlen(d->path);
    if (fmt)
        snprintf(d->path + old, sizeof d->path - old, "%s%s", old ? "." : "", s);
    else
        snprintf(d->path + old, sizeof d->path - old, "[%zu]", i);
    return old;
}

static bool strlist_equal(const rwkvd_strlist *a, const rwkvd_strlist *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->v[i], b->v[i]))
            return false;
    }
    return true;
}

static void diff_fields(diff_state *d, const key *keys, const void *a, const void *b, bool reload);

static void diff_field(diff_state *d, const key *k, const void *a, const void *b, bool reload)
{
    const char *pa = (const char *)a + k->offset, *pb = (const char *)b + k->offset;
    bool same = true;
    switch (k->type) {
    case K_STR: {
        const char *sa, *sb;
        memcpy(&sa, pa, sizeof sa);
        memcpy(&sb, pb, sizeof sb);
        same = !strcmp(sa ? sa : "", sb ? sb : "");
        break;
    }
    case K_INT:
    case K_UINT:
    case K_DURATION:
    case K_SIZE:
    case K_ENUM:
    case K_BOOL:
        same = !memcmp(pa, pb, k->size);
        break;
    case K_FLOAT: {
        double x, y;
        memcpy(&x, pa, sizeof x);
        memcpy(&y, pb, sizeof y);
        same = x == y;
        break;
    }
    case K_ENDPOINTS:
    case K_STRLIST:
        same = strlist_equal((const rwkvd_strlist *)(const void *)pa,
                             (const rwkvd_strlist *)(const void *)pb);
        break;
    case K_SECTION:
        diff_fields(d, k->sub, a, b, reload);
        return;
    case K_OBJMAP: {
        size_t na, nb;
        const char *va = objs_get(a, k, &na), *vb = objs_get(b, k, &nb);
        for (size_t i = 0; i < na; i++) {
            const char *ea = va + i * k->elem_size, *eb = NULL;
            const char *name = obj_name(ea, k->name_off);
            for (size_t j = 0; j < nb && !eb; j++) {
                if (!strcmp(obj_name(vb + j * k->elem_size, k->name_off), name))
                    eb = vb + j * k->elem_size;
            }
            size_t old = diff_push(d, "%s", name, 0);
            if (eb)
                diff_fields(d, k->sub, ea, eb, reload);
            else
                diff_report(d, reload); /* removed */
            d->path[old] = 0;
        }
        for (size_t j = 0; j < nb; j++) {
            const char *name = obj_name(vb + j * k->elem_size, k->name_off);
            bool found = false;
            for (size_t i = 0; i < na && !found; i++)
                found = !strcmp(obj_name(va + i * k->elem_size, k->name_off), name);
            if (!found) {
                size_t old = diff_push(d, "%s", name, 0);
                diff_report(d, reload); /* added */
                d->path[old] = 0;
            }
        }
        return;
    }
    case K_OBJLIST: {
        size_t na, nb;
        const char *va = objs_get(a, k, &na), *vb = objs_get(b, k, &nb);
        if (na != nb) {
            same = false;
            break;
        }
        for (size_t i = 0; i < na; i++) {
            size_t old = diff_push(d, NULL, NULL, i);
            diff_fields(d, k->sub, va + i * k->elem_size, vb + i * k->elem_size, reload);
            d->path[old] = 0;
        }
        return;
    }
    }
    if (!same)
        diff_report(d, reload);
}

static void diff_fields(diff_state *d, const key *keys, const void *a, const void *b, bool reload)
{
    for (const key *k = keys; k->name; k++) {
        size_t old = diff_push(d, "%s", k->name, 0);
        diff_field(d, k, a, b, reload || (k->flags & F_RELOAD));
        d->path[old] = 0;
    }
}

int rwkvd_config_diff(const rwkvd_config *a, const rwkvd_config *b, rwkvd_config_diff_fn fn,
                      void *user)
{
    if (!a || !b)
        return -EINVAL;
    diff_state d = {.fn = fn, .user = user};
    diff_fields(&d, root_keys, a, b, false);
    return d.count;
}

typedef struct {
    char *buf;
    size_t cap, len;
    int n_fixed;
} fixed_list;

static void collect_fixed(const char *path, bool reloadable, void *user)
{
    fixed_list *l = user;
    if (reloadable)
        return;
    l->n_fixed++;
    if (l->buf && l->len < l->cap) {
        int w = snprintf(l->buf + l->len, l->cap - l->len, "%s%s", l->len ? ", " : "", path);
        if (w > 0)
            l->len += (size_t)w;
    }
}

int rwkvd_config_diff_reloadable(const rwkvd_config *old, const rwkvd_config *next_cfg,
                                 char *err, size_t err_len)
{
    if (!old || !next_cfg)
        return -EINVAL;
    fixed_list l = {.buf = err, .cap = err_len};
    if (err && err_len)
        err[0] = 0;
    rwkvd_config_diff(old, next_cfg, collect_fixed, &l);
    if (!l.n_fixed)
        return 0;
    if (err && err_len && l.len < err_len)
        snprintf(err + l.len, err_len - l.len, ": cannot change on reload; restart rwkvd");
    return -EPERM;
}

/* ---------------------------------------------------------------- dump */

static void pad(FILE *f, int indent, const char **lead)
{
    if (*lead) {
        fprintf(f, "%*s%s", indent - 2, "", *lead);
        *lead = NULL;
    } else {
        fprintf(f, "%*s", indent, "");
    }
}

/* Next code point of valid UTF-8 (libyaml checked the input); *n = its byte length. */
static uint32_t utf8_next(const unsigned char *s, size_t *n)
{
    if (s[0] < 0x80) {
        *n = 1;
        return s[0];
    }
    if ((s[0] & 0xE0) == 0xC0 && (s[1] & 0xC0) == 0x80) {
        *n = 2;
        return (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
    }
    if ((s[0] & 0xF0) == 0xE0 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80) {
        *n = 3;
        return (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
    }
    if ((s[0] & 0xF8) == 0xF0 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 &&
        (s[3] & 0xC0) == 0x80) {
        *n = 4;
        return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
               (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
    }
    *n = 1;
    return 0xFFFD; /* not reached for libyaml's output */
}

/* A double-quoted YAML scalar: printable characters as they are, everything YAML would
 * fold, strip or refuse as an escape; `$` doubled in keys that expand the environment. */
static void put_quoted(FILE *f, const char *s, bool expands)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    while (*p) {
        size_t n;
        uint32_t cp = utf8_next(p, &n);
        if (cp == '"' || cp == '\\')
            fprintf(f, "\\%c", (int)cp);
        else if (cp == '\n')
            fputs("\\n", f);
        else if (cp == '\t')
            fputs("\\t", f);
        else if (cp == '$' && expands)
            fputs("$$", f);
        else if (cp < 0x20 || cp == 0x7F)
            fprintf(f, "\\x%02X", (unsigned)cp);
        else if ((cp >= 0x80 && cp < 0xA0) || cp == 0x2028 || cp == 0x2029 || cp == 0xFEFF ||
                 cp == 0xFFFE || cp == 0xFFFF || (cp >= 0xD800 && cp < 0xE000))
            fprintf(f, cp > 0xFFFF ? "\\U%08X" : "\\u%04X", (unsigned)cp);
        else
            fwrite(p, 1, n, f);
        p += n;
    }
    fputc('"', f);
}

static void dump_fields(FILE *f, const key *keys, const void *base, int indent, const char *lead);

static void dump_field(FILE *f, const key *k, const void *base, int indent, const char **lead)
{
    const char *p = (const char *)base + k->offset;
    char buf[64];
    pad(f, indent, lead);
    fprintf(f, "%s:", k->name);
    switch (k->type) {
    case K_STR: {
        const char *s;
        memcpy(&s, p, sizeof s);
        fputc(' ', f);
        put_quoted(f, s ? s : "", k->flags & F_EXPAND);
        break;
    }
    case K_INT:
        fprintf(f, " %lld", (long long)load_int(p, k->size));
        break;
    case K_UINT:
        fprintf(f, " %llu", (unsigned long long)load_uint(p, k->size));
        break;
    case K_DURATION:
        format_duration(buf, sizeof buf, load_uint(p, k->size));
        fprintf(f, " %s", buf);
        break;
    case K_SIZE:
        format_size(buf, sizeof buf, load_uint(p, k->size));
        fprintf(f, " %s", buf);
        break;
    case K_FLOAT: {
        double v;
        memcpy(&v, p, sizeof v);
        format_double(buf, sizeof buf, v);
        fprintf(f, " %s", buf);
        break;
    }
    case K_BOOL: {
        bool v;
        memcpy(&v, p, sizeof v);
        fprintf(f, " %s", v ? "true" : "false");
        break;
    }
    case K_ENUM: {
        int v;
        memcpy(&v, p, sizeof v);
        const enum_name *e = k->enums;
        while (e->name && e->value != v)
            e++;
        fprintf(f, " %s", e->name ? e->name : "?");
        break;
    }
    case K_ENDPOINTS:
    case K_STRLIST: {
        const rwkvd_strlist *l = (const rwkvd_strlist *)(const void *)p;
        if (!l->n)
            fputs(" []", f);
        for (size_t i = 0; i < l->n; i++) {
            fprintf(f, "\n%*s- ", indent + 2, "");
            put_quoted(f, l->v[i], k->flags & F_EXPAND);
        }
        break;
    }
    case K_SECTION:
        fputc('\n', f);
        dump_fields(f, k->sub, base, indent + 2, NULL);
        return;
    case K_OBJMAP: {
        size_t n;
        const char *v = objs_get(base, k, &n);
        if (!n)
            fputs(" {}", f);
        fputc('\n', f);
        for (size_t i = 0; i < n; i++) {
            const char *elem = v + i * k->elem_size;
            fprintf(f, "%*s", indent + 2, "");
            put_quoted(f, obj_name(elem, k->name_off), false);
            fputs(":\n", f);
            dump_fields(f, k->sub, elem, indent + 4, NULL);
        }
        return;
    }
    case K_OBJLIST: {
        size_t n;
        const char *v = objs_get(base, k, &n);
        if (!n)
            fputs(" []", f);
        fputc('\n', f);
        for (size_t i = 0; i < n; i++)
            dump_fields(f, k->sub, v + i * k->elem_size, indent + 4, "- ");
        return;
    }
    }
    fputc('\n', f);
}

static void dump_fields(FILE *f, const key *keys, const void *base, int indent, const char *lead)
{
    for (const key *k = keys; k->name; k++)
        dump_field(f, k, base, indent, &lead);
}

int rwkvd_config_dump(const rwkvd_config *c, FILE *f)
{
    if (!c || !f)
        return -EINVAL;
    fprintf(f, "# rwkvd effective configuration (from %s)\n", c->source ? c->source : "?");
    dump_fields(f, root_keys, c, 0, NULL);
    return fflush(f) == 0 && !ferror(f) ? 0 : -EIO;
}

/* ---------------------------------------------------------------- names */

static const char *enum_str(const enum_name *e, int v)
{
    for (; e->name; e++) {
        if (e->value == v)
            return e->name;
    }
    return "?";
}

const char *rwkvd_backend_name(rwkvd_backend b)
{
    return enum_str(backend_names, (int)b);
}

const char *rwkvd_weights_name(rwkvd_weights w)
{
    return enum_str(weights_names, (int)w);
}

const char *rwkvd_log_level_name(rwkvd_log_level l)
{
    return enum_str(log_level_names, (int)l);
}

const char *rwkvd_task_kind_name(rwkvd_task_kind k)
{
    return enum_str(task_kind_names, (int)k);
}

const char *rwkvd_trigger_name(rwkvd_trigger t)
{
    return enum_str(trigger_names, (int)t);
}
