/* config.h — rwkvd's configuration: a plain struct with defaults, loaded from YAML.
 *
 * What it is: the daemon's settings (model, endpoints, limits, logging, service timers, task
 * profiles, state directory) as one struct, a loader that checks a YAML file against a
 * table-driven schema (config.c) and reports the first mistake as
 * `file:line:col: key.path: reason`, a differ that tells SIGHUP which changes it may apply,
 * and a dumper for `rwkvd --check-config -v`. conf/rwkvd.yaml documents every key.
 * What it is not: it opens no socket and no model; whether a path exists or a model loads
 * is found out by whoever uses the value.
 * Invariant: a loaded config is complete and valid (every value in its range, every string
 * non-NULL, endpoint syntax checked, public binds opted in, the default profile defined)
 * and is never modified afterwards; a reload builds a new one and swaps it in.
 *
 * Values may use `${NAME}` or `${NAME:-fallback}` (environment, expanded at load) in path
 * and endpoint keys, so systemd's RUNTIME_DIRECTORY/STATE_DIRECTORY and `make run`'s
 * RWKVD_MODEL reach the config; `$$` is a literal `$` there.
 */
#ifndef RWKVD_CONFIG_H
#define RWKVD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

typedef enum {
    RWKVD_BACKEND_CPU = 0,
    RWKVD_BACKEND_CUDA,
    RWKVD_BACKEND_AUTO, /* cuda where its probe succeeds, else cpu (decided at start) */
    RWKVD_BACKEND_CUDA_EMU, /* the CUDA backend's code on the SIMT emulator (tests only) */
} rwkvd_backend;

/* In-memory weight type; the names are those of rwkv_weights_parse(). */
typedef enum {
    RWKVD_WEIGHTS_F32 = 0,
    RWKVD_WEIGHTS_STORED,
    RWKVD_WEIGHTS_BF16,
    RWKVD_WEIGHTS_F16,
    RWKVD_WEIGHTS_BF16DOT,
} rwkvd_weights;

/* Values are syslog priorities, so a message is logged when its priority <= level. */
typedef enum {
    RWKVD_LOG_ERROR = 3,
    RWKVD_LOG_WARNING = 4,
    RWKVD_LOG_NOTICE = 5,
    RWKVD_LOG_INFO = 6,
    RWKVD_LOG_DEBUG = 7,
} rwkvd_log_level;

/* durability.fsync; the values of rwkvd_wal_fsync (wal.h). */
typedef enum {
    RWKVD_FSYNC_NO = 0,
    RWKVD_FSYNC_EVERYSEC = 1,
    RWKVD_FSYNC_ALWAYS = 2,
} rwkvd_fsync_policy;

typedef enum {
    RWKVD_TASK_NONE = 0,        /* advance the state, publish nothing */
    RWKVD_TASK_CLASSIFY_LABELS, /* score each label's text after prompt_suffix on a fork */
    RWKVD_TASK_CLASSIFY_LINEAR, /* apply a K x C linear head file to the hidden vector */
    RWKVD_TASK_CONTINUE,        /* sample a continuation on a fork */
} rwkvd_task_kind;

typedef enum {
    RWKVD_TRIGGER_EVENT = 0, /* after each ingested event (text message + separator) */
    RWKVD_TRIGGER_TOKENS,    /* every `every_n_tokens` tokens of input */
    RWKVD_TRIGGER_REQUEST,   /* only when a producer asks */
} rwkvd_trigger;

typedef struct {
    char **v; /* (n) NUL-terminated strings */
    size_t n;
} rwkvd_strlist;

typedef struct {
    char *name; /* published label, unique within its profile */
    char *text; /* text whose tokens are scored after the prompt suffix, e.g. " error" */
} rwkvd_label;

/* Defaults of a continuation; a request may override each of them. */
typedef struct {
    uint32_t max_tokens;      /* 1..65536 */
    double temperature;       /* 0..10, 0 = greedy */
    double top_p;             /* 0..1, 1 = off */
    uint32_t top_k;           /* 0 = off */
    double presence_penalty;  /* -10..10 */
    double frequency_penalty; /* -10..10 */
    double penalty_decay;     /* (0, 1] */
    uint64_t seed;
    rwkvd_strlist stop;       /* up to 16 strings that end a continuation */
    bool commit;              /* feed the generated tokens into the channel's own state */
} rwkvd_generate;

typedef struct {
    char *name;              /* [A-Za-z0-9_-]{1,63} */
    rwkvd_task_kind kind;
    rwkvd_trigger trigger;
    uint32_t every_n_tokens; /* with trigger TOKENS */
    char *prompt_suffix;     /* fed on the fork before scoring or sampling; may be "" */
    rwkvd_label *labels;     /* (n_labels) CLASSIFY_LABELS: >= 2 */
    size_t n_labels;
    char *head;              /* CLASSIFY_LINEAR: path of the head file; "" otherwise */
    rwkvd_generate generate; /* CONTINUE */
} rwkvd_profile;

typedef struct rwkvd_config {
    char *source; /* file it was read from, or "(defaults)"; not a key */
    struct {
        char *path;           /* .pth checkpoint */
        char *vocab;          /* World vocabulary file, or "bytes" for byte-level models */
        rwkvd_backend backend;
        rwkvd_weights weights;
        uint32_t threads;     /* CPU threads, 0 = online CPUs */
        uint32_t state_slots; /* engine state pool size */
        uint32_t max_batch;   /* channels per step */
    } model;
    struct {
        rwkvd_strlist ingest;  /* >= 1 endpoint each; tcp://, ipc:// or inproc:// */
        rwkvd_strlist publish;
        rwkvd_strlist control;
        rwkvd_strlist ingest_pull; /* INGEST-PULL (PROTOCOL.md §8.4); 0 endpoints: none */
        bool allow_public_bind; /* tcp on a non-loopback address is refused unless true */
        uint32_t publish_hwm;   /* messages queued per subscriber before drops toward it */
        uint32_t ingest_reply_hwm; /* replies kept per ingest connection that is not reading
                                    * fast enough (PROTOCOL.md §8.3) */
    } endpoints;
    struct {
        uint32_t max_channels;
        uint32_t max_queue_tokens;  /* pending input tokens per channel */
        uint64_t max_message_bytes; /* largest ingest message */
    } limits;
    struct {
        char *separator; /* fed after every text event; may be "" */
    } events;
    struct {
        rwkvd_log_level level;
    } log;
    struct {
        uint64_t status_interval_ms; /* systemd STATUS= and the tokens/s window */
        uint64_t step_timeout_ms;    /* a step running longer is hung: watchdog pings stop */
    } service;
    char *state_dir; /* snapshots and the input log live here */
    struct {
        bool enabled;                   /* WAL + snapshots in state_dir */
        rwkvd_fsync_policy fsync;       /* WAL fsync policy (wal.h) */
        uint64_t snapshot_interval_ms;  /* snapshot every channel this often; 0 = never */
        uint64_t snapshot_every_tokens; /* ... or once this many input tokens were applied; 0 = never */
        uint64_t wal_segment_bytes;     /* WAL segment size */
        bool rebuild_damaged;           /* a channel without a usable snapshot is rebuilt from
                                         * the input log alone (partial) instead of marked damaged */
    } durability;
    struct {
        uint32_t resident_channels; /* states in engine slots at most; 0 = every channel slot */
        uint64_t idle_ttl_ms;       /* a host-tier channel idle this long goes to disk; 0 = never */
        uint64_t host_max_bytes;    /* host-tier states at most; past it LRU ones go to disk;
                                     * 0 = no host tier (demotions go straight to disk) */
    } residency;
    struct {
        bool sequence;            /* publications carry the channel's output sequence number */
        uint32_t retain_messages; /* retained outputs per channel at most; 0 = none */
        uint64_t retain_bytes;    /* ... and their encoded bytes at most */
    } outputs;
    struct {
        char *default_profile;  /* profile of a new channel; "" = none */
        rwkvd_profile *profiles; /* (n_profiles) in file order, names unique */
        size_t n_profiles;
    } tasks;
    struct {
        char *bind;                     /* replication stream endpoint of a primary; "" = none */
        char *peer;                     /* the other daemon's control endpoint (fencing); "" = none */
        uint64_t heartbeat_interval_ms; /* primary -> standby heartbeats */
        uint64_t failover_timeout_ms;   /* a standby takes over after this long without one */
        bool sync;                      /* ACKs wait until every synced standby logged the record */
    } replication;
    /* CurveZMQ and the ZAP allow-list (security.c, keys.h; PROTOCOL.md §15) */
    struct {
        bool insecure_bind; /* non-loopback tcp without CURVE: allowed (warned at every start) */
        struct {
            char *secret_key_file;      /* the server's key pair; "" = CURVE off */
            char *allow;                /* allow-list file or directory of public certificates */
            char *client_key_file;      /* this daemon's pair toward a peer (standby, fencing); "" = the server's */
            char *peer_public_key_file; /* the peer daemon's server public key; "" = this one's own */
        } curve;
    } security;
    /* Prometheus text over HTTP (httpmetrics.c) */
    struct {
        char *listen;      /* "host:port" of GET /metrics; "" = off */
        bool allow_remote; /* a non-loopback listen address is refused unless true */
    } metrics;
} rwkvd_config;

/* Load and validate a YAML file. Returns 0 and *out (free with rwkvd_config_destroy), or
 * -EINVAL with `err` = "file:line:col: key.path: reason" (the first mistake found), -ENOMEM,
 * -EFBIG (file over 4 MiB), or the errno of open/read with `err` naming the file.
 * *out is written only on success. Reads the environment for ${...}; call from one thread
 * at a time with respect to setenv. */
int rwkvd_config_load(const char *path, rwkvd_config **out, char *err, size_t err_len);

/* The same on text[0..len) (need not be NUL-terminated); `name` stands for the file name
 * in messages. */
int rwkvd_config_parse(const char *text, size_t len, const char *name, rwkvd_config **out,
                       char *err, size_t err_len);

/* Every key at its default (what an empty file gives). Fails only on -ENOMEM or when an
 * environment variable makes a default invalid (e.g. a RUNTIME_DIRECTORY too long for an
 * ipc:// path), with `err` saying so. */
int rwkvd_config_default(rwkvd_config **out, char *err, size_t err_len);

/* NULL-safe, idempotent; nulls *c. */
void rwkvd_config_destroy(rwkvd_config **c);

/* The profile called `name`, or NULL. */
const rwkvd_profile *rwkvd_config_find_profile(const rwkvd_config *c, const char *name);

/* Calls fn once per difference between a and b, with the key path ("model.path",
 * "endpoints.ingest", "tasks.profiles.sentiment.labels", "tasks.profiles.new" for an added
 * or removed profile) and whether SIGHUP may apply it. Returns the number of differences.
 * fn may be NULL (just count). */
typedef void (*rwkvd_config_diff_fn)(const char *path, bool reloadable, void *user);
int rwkvd_config_diff(const rwkvd_config *a, const rwkvd_config *b, rwkvd_config_diff_fn fn,
                      void *user);

/* 0 when `next` differs from `old` only in keys that may change at run time (task profiles,
 * limits, log level) or not at all; -EPERM otherwise, with `err` listing every other
 * changed key ("model.path, endpoints.ingest: cannot change on reload; restart rwkvd"), so a
 * SIGHUP handler can refuse the file and keep `old`. */
int rwkvd_config_diff_reloadable(const rwkvd_config *old, const rwkvd_config *next, char *err,
                                 size_t err_len);

/* Writes the effective config as YAML that loads back into an equal config (durations and
 * sizes in their largest exact unit, strings double-quoted). 0 or -EIO. */
int rwkvd_config_dump(const rwkvd_config *c, FILE *f);

/* Parses "host:port" (host: an IPv4 address, [IPv6] or localhost; port 0..65535) into *addr
 * and *addr_len, and says whether the host is a loopback address. NULL on success, else why
 * the text is not such an address. */
const char *rwkvd_config_parse_hostport(const char *s, struct sockaddr_storage *addr, socklen_t *addr_len,
                                        bool *loopback);

const char *rwkvd_backend_name(rwkvd_backend b);
const char *rwkvd_weights_name(rwkvd_weights w);
const char *rwkvd_log_level_name(rwkvd_log_level l);
const char *rwkvd_task_kind_name(rwkvd_task_kind k);
const char *rwkvd_trigger_name(rwkvd_trigger t);

#endif
