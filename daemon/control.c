/* control.c — see control.h. */
#include "control.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "durable.h"
#include "log.h"
#include "publish.h"
#include "replica.h"
#include "security.h"
#include "rwkvd_version.h"
#include "tier.h"
#include "zmsg.h"

#define CHANNELS_PER_REPLY 1000

/* The largest control request: IMPORT of a state with its producers. */
static size_t max_request_bytes(const rwkvd_daemon *d)
{
    return (size_t)rwkv_engine_state_bytes(d->engine) + (4u << 20);
}

int rwkvd_control_open(rwkvd_daemon *d, char *err, size_t err_len)
{
    d->control = zmq_socket(d->zctx, ZMQ_ROUTER);
    if (!d->control) {
        snprintf(err, err_len, "zmq_socket(ROUTER): %s", zmq_strerror(zmq_errno()));
        return -EIO;
    }
    int one = 1, zero = 0;
    int64_t maxmsg = (int64_t)max_request_bytes(d);
    zmq_setsockopt(d->control, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(d->control, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(d->control, ZMQ_LINGER, &zero, sizeof zero);
    int rc = rwkvd_security_server(d, d->control, RWKVD_SOCK_CONTROL, err, err_len);
    if (rc)
        return rc;
    for (size_t i = 0; i < d->cfg->endpoints.control.n; i++) {
        const char *ep = d->cfg->endpoints.control.v[i];
        if (zmq_bind(d->control, ep) != 0) {
            snprintf(err, err_len, "endpoints.control: cannot bind %s: %s", ep, zmq_strerror(zmq_errno()));
            return -EADDRINUSE;
        }
    }
    return 0;
}

static void reply_blob(rwkvd_daemon *d, const rwkvp_frame *env, size_t n_env, int code, const char *body,
                       size_t len, const void *blob, size_t blob_len)
{
    rwkvp_ctl_response r = {.code = code, .body = {body, len}, .blob = {blob, blob_len}};
    rwkvp_msg msg;
    rwkvp_error e;
    if (rwkvp_ctl_response_encode(&r, &msg, &e) != 0) {
        rwkvd_log(LOG_ERR, "cannot encode a control reply: %s", e.text);
        return;
    }
    rwkvd_zmsg_send(d->control, env, n_env, msg.frames, msg.n);
}

static void reply(rwkvd_daemon *d, const rwkvp_frame *env, size_t n_env, int code, const char *body, size_t len)
{
    reply_blob(d, env, n_env, code, body, len, NULL, 0);
}

static void reply_json(rwkvd_daemon *d, const rwkvp_frame *env, size_t n_env, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (s)
        reply(d, env, n_env, 200, s, strlen(s));
    else
        reply(d, env, n_env, 500, "out of memory", 13);
    free(s);
    json_decref(j);
}

static const char *tier_of(const rwkvd_channel *ch)
{
    return rwkvd_tier_name(ch->tier);
}

/* Control ops that change the state of a host- or disk-tier channel bring it back first (the
 * worker is idle). false when it cannot, with the reply sent. */
/* A damaged channel (durable.h) cleared by the operator's RESET or DROP (`why`); false with
 * the reply sent when it cannot be. */
static bool clear_damage(rwkvd_daemon *d, const rwkvp_frame *env, size_t n_env, rwkvd_channel *ch, const char *why)
{
    if (!ch->damaged)
        return true;
    int rc = rwkvd_durable_clear_damage(d, ch, why);
    if (rc == 0)
        return true;
    char t[300];
    snprintf(t, sizeof t, "channel %s is damaged and cannot be cleared now: %s", ch->name,
             rc == -ENOSPC ? "no free state slot and no idle channel to move out" : strerror(-rc));
    reply(d, env, n_env, rc == -ENOSPC ? 507 : 500, t, strlen(t));
    return false;
}

/* A damaged channel has no state to read (EXPORT, FORK): 423, true when so answered. */
static bool refuse_damaged(rwkvd_daemon *d, const rwkvp_frame *env, size_t n_env, const rwkvd_channel *ch)
{
    if (!ch || !ch->damaged)
        return false;
    char t[300];
    snprintf(t, sizeof t, "channel %s is damaged (no usable snapshot at start; see the log): it has no state to read; "
             "RESET, DROP or IMPORT clears it", ch->name);
    reply(d, env, n_env, RWKVP_E_DAMAGED, t, strlen(t));
    return true;
}

/* CHANNELS: "damaged": true on the entries of damaged channels (only there: most channels
 * never are); a lookup per entry only while some channel is damaged. */
static json_t *mark_damaged(rwkvd_daemon *d, json_t *j)
{
    rwkvd_durable_stats st;
    rwkvd_durable_stats_get(d, &st);
    json_t *arr = j ? json_object_get(j, "channels") : NULL;
    if (!st.damaged_channels || !arr)
        return j;
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) {
        const char *name = json_string_value(json_object_get(e, "name"));
        const rwkvd_channel *ch = name ? rwkvd_chantab_find(d->tab, name, strlen(name)) : NULL;
        if (ch && ch->damaged)
            json_object_set_new(e, "damaged", json_true());
    }
    return j;
}

static bool restore_for(rwkvd_daemon *d, const rwkvp_frame *env, size_t n_env, rwkvd_channel *ch)
{
    if (ch->tier == RWKVD_TIER_RESIDENT)
        return true;
    rwkvd_tier was = ch->tier;
    int rc = rwkvd_tier_promote(d, ch);
    if (rc == 0)
        return true;
    char t[300];
    if (rc == -ENOSPC)
        snprintf(t, sizeof t, "limit reached: no free state slot to bring channel %s back from tier %s "
                 "(model.state_slots is %u) and no idle channel to move out", ch->name, rwkvd_tier_name(was),
                 d->cfg->model.state_slots);
    else
        snprintf(t, sizeof t, "cannot bring channel %s back from tier %s (%s); see the log", ch->name,
                 rwkvd_tier_name(was), strerror(-rc));
    reply(d, env, n_env, rc == -ENOSPC ? 507 : 500, t, strlen(t));
    return false;
}

static json_t *status_json(rwkvd_daemon *d)
{
    const rwkv_dims *dm = rwkv_model_dims(d->model);
    uint64_t q_msgs = d->tab->q_messages_total, q_tokens = d->tab->q_tokens_total, live = d->tab->n_live;
    const uint32_t *nt = d->tab->n_tier;
    static const char *const states[] = {"running", "reloading", "stopping"};
    return json_pack("{s:s, s:s, s:[i], s:I, s:s, s:f, s:s, s:{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:I}, "
                     "s:{s:I, s:I, s:I, s:I, s:I}, s:{s:i, s:i}, s:{s:I, s:I}, s:i, s:I, s:f}",
                     "daemon", "rwkvd", "version", RWKVD_VERSION, "protocol", RWKVP_VERSION, "pid", (json_int_t)getpid(),
                     "state", states[d->state], "uptime_s", (double)(rwkvd_now_ns() - d->start_ns) / 1e9, "backend",
                     rwkv_engine_backend(d->engine), "model", "path", d->cfg->model.path, "arch", rwkv_arch_name(dm->arch), "n_layer", dm->n_layer,
                     "n_embd", dm->n_embd, "n_head", dm->n_head, "head_size", dm->head_size, "n_vocab", dm->n_vocab,
                     "n_params", (json_int_t)rwkv_model_n_params(d->model), "channels", "total", (json_int_t)live,
                     "resident", (json_int_t)nt[RWKVD_TIER_RESIDENT], "host", (json_int_t)nt[RWKVD_TIER_HOST], "disk",
                     (json_int_t)nt[RWKVD_TIER_DISK], "limit",
                     (json_int_t)d->cfg->limits.max_channels, "slots", "total", rwkv_engine_n_slots(d->engine), "used",
                     rwkv_engine_n_slots(d->engine) - d->tab->n_free, "queued", "messages", (json_int_t)q_msgs, "tokens",
                     (json_int_t)q_tokens, "generations", d->n_gens, "tokens_total", (json_int_t)d->m.tokens_total,
                     "tokens_per_s", d->tokens_per_s);
}

/* STATUS "engine_error": only once the backend failed (the daemon is stopping then). */
static void engine_status(rwkvd_daemon *d, json_t *status)
{
    const char *e = rwkv_engine_last_error(d->engine);
    if (e[0])
        json_object_set_new(status, "engine_error", json_string(e));
}

/* STATUS "limits": what a producer sizes its window and its messages by (PROTOCOL.md §8.1,
 * §8.3, §14). */
static void limits_status(rwkvd_daemon *d, json_t *status)
{
    const char *sep = d->cfg->events.separator ? d->cfg->events.separator : "";
    long n_sep = rwkv_tokenizer_encode(d->tok, sep, strlen(sep), NULL, 0);
    json_t *j = json_pack("{s:I, s:I, s:I, s:I}", "max_queue_tokens", (json_int_t)d->cfg->limits.max_queue_tokens,
                          "max_message_bytes", (json_int_t)d->cfg->limits.max_message_bytes, "separator_tokens",
                          (json_int_t)(n_sep > 0 ? n_sep : 0), "ingest_reply_hwm",
                          (json_int_t)d->cfg->endpoints.ingest_reply_hwm);
    if (j)
        json_object_set_new(status, "limits", j);
}

/* STATUS "loop": what the loop thread costs. The "since last STATUS" maximum restarts here. */
static void loop_status(rwkvd_daemon *d, json_t *status)
{
    uint64_t cpu = rwkvd_loop_cpu_ns(d), tokens = d->m.input_tokens_total;
    json_t *j = json_pack("{s:f, s:I, s:f, s:I, s:f, s:f}", "cpu_s", (double)cpu / 1e9, "input_tokens_total",
                          (json_int_t)tokens, "ns_per_input_token", tokens ? (double)cpu / (double)tokens : 0.0,
                          "iterations", (json_int_t)d->m.loop_iterations, "iteration_max_s",
                          (double)d->m.loop_iter_max_ns / 1e9, "iteration_max_since_last_status_s",
                          (double)d->m.loop_iter_max_window_ns / 1e9);
    d->m.loop_iter_max_window_ns = 0;
    if (status && j)
        json_object_set_new(status, "loop", j);
    else
        json_decref(j);
}

/* STATUS "durability" (PROTOCOL.md §10.1). */
static void durable_status(rwkvd_daemon *d, json_t *status)
{
    rwkvd_durable_stats st;
    rwkvd_durable_stats_get(d, &st);
    /* what makes ingest answer 503 now: a failed fsync (for good), else a failing append */
    int wal_err = st.wal_failed ? st.wal_failed : st.wal_append_err;
    json_t *j = st.enabled
                    ? json_pack("{s:b, s:s, s:{s:I, s:I, s:I, s:i, s:s?, s:b, s:I, s:I}, s:I, "
                                "s:{s:I, s:I, s:I, s:I, s:I, s:s?}}",
                                "enabled", 1, "fsync", st.fsync, "wal", "first_lsn", (json_int_t)st.wal_first_lsn,
                                "next_lsn", (json_int_t)st.wal_next_lsn, "durable_lsn",
                                (json_int_t)st.wal_durable_lsn, "segments", (int)st.wal_segments, "failed",
                                wal_err ? strerror(-wal_err) : NULL, "failed_until_restart", st.wal_failed != 0,
                                "append_errors", (json_int_t)st.wal_append_errors, "last_failure_unix_ms",
                                (json_int_t)st.wal_last_failure_unix_ms, "damaged_channels",
                                (json_int_t)st.damaged_channels, "snapshots", "written",
                                (json_int_t)st.snapshots_written, "failed", (json_int_t)st.snapshots_failed, "bytes",
                                (json_int_t)st.snapshot_bytes, "last_unix_ms", (json_int_t)st.last_snapshot_unix_ms,
                                "last_failure_unix_ms", (json_int_t)st.last_failure_unix_ms, "last_error",
                                st.last_error[0] ? st.last_error : NULL)
                    : json_pack("{s:b}", "enabled", 0);
    if (status && j)
        json_object_set_new(status, "durability", j);
}

static int cmp_channel(const void *a, const void *b)
{
    const rwkvd_channel *x = *(const rwkvd_channel *const *)a, *y = *(const rwkvd_channel *const *)b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

static json_t *channels_json(rwkvd_daemon *d, const rwkvp_frame *prefix, const rwkvp_frame *after)
{
    rwkvd_channel **v = malloc((d->tab->n ? d->tab->n : 1) * sizeof *v);
    if (!v)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < d->tab->n; i++) {
        rwkvd_channel *ch = d->tab->v[i];
        if (ch->dead || ch->name_len < prefix->len ||
            (prefix->len && memcmp(ch->name, prefix->data, prefix->len) != 0))
            continue;
        if (after->len) {
            size_t m = ch->name_len < after->len ? ch->name_len : after->len;
            int c = memcmp(ch->name, after->data, m);
            if (c < 0 || (c == 0 && ch->name_len <= after->len))
                continue;
        }
        v[n++] = ch;
    }
    qsort(v, n, sizeof *v, cmp_channel);
    json_t *arr = json_array();
    for (size_t i = 0; i < n && i < CHANNELS_PER_REPLY; i++)
        json_array_append_new(arr, json_pack("{s:s%, s:s, s:I, s:I, s:I}", "name", v[i]->name, v[i]->name_len,
                                             "tier", tier_of(v[i]), "tokens_seen", (json_int_t)v[i]->tokens_seen,
                                             "queued_tokens", (json_int_t)v[i]->q_tokens, "oseq",
                                             (json_int_t)v[i]->oseq));
    json_t *j = json_pack("{s:o, s:b}", "channels", arr, "more", n > CHANNELS_PER_REPLY);
    free(v);
    return j;
}

static void add_pair(const rwkvd_pair *p, void *user)
{
    json_array_append_new((json_t *)user, json_pack("{s:s%, s:I}", "id", p->key + p->channel_len + 1,
                                                    (size_t)p->producer_len, "acked", (json_int_t)p->acked));
}

static json_t *info_json(rwkvd_daemon *d, const rwkvd_channel *ch)
{
    json_t *producers = json_array();
    rwkvd_chantab_each_pair(d->tab, ch->name, ch->name_len, add_pair, producers);
    return json_pack("{s:s%, s:s, s:s, s:I, s:I, s:I, s:b, s:I, s:I, s:o, s:I}", "name", ch->name, ch->name_len,
                     "tier", tier_of(ch), "profile", ch->profile, "tokens_seen", (json_int_t)ch->tokens_seen,
                     "queued_messages", (json_int_t)ch->q_messages, "queued_tokens", (json_int_t)ch->q_tokens,
                     "generating", ch->gen != NULL, "created_unix_ms", (json_int_t)ch->created_unix_ms,
                     "last_input_unix_ms", (json_int_t)ch->last_input_unix_ms, "producers", producers, "oseq",
                     (json_int_t)ch->oseq);
}

/* ---- metrics -------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
    bool oom;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *s, const char *fmt, ...)
{
    for (int attempt = 0; attempt < 2 && !s->oom; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(s->buf ? s->buf + s->len : NULL, s->buf ? s->cap - s->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (s->buf && s->len + (size_t)n < s->cap) {
            s->len += (size_t)n;
            return;
        }
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + (size_t)n + 1)
            cap *= 2;
        char *b = realloc(s->buf, cap);
        if (!b) {
            s->oom = true;
            return;
        }
        s->buf = b;
        s->cap = cap;
    }
}

/* Per tier: channels, state bytes held there (a disk-tier state counts its snapshot payload),
 * and the moves between tiers since start. */
/* One single-valued metric: its HELP and TYPE lines, then "name value". */
static void metric_u64(sbuf *s, const char *name, const char *type, const char *help, uint64_t v)
{
    sb_printf(s, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, (unsigned long long)v);
}

static void tier_metrics(rwkvd_daemon *d, sbuf *s)
{
    const rwkvd_chantab *t = d->tab;
    uint64_t one = rwkvd_tier_state_bytes(d);
    sb_printf(s, "# HELP rwkvd_channels Channels by tier.\n# TYPE rwkvd_channels gauge\n");
    for (int k = 0; k < RWKVD_N_TIERS; k++)
        sb_printf(s, "rwkvd_channels{tier=\"%s\"} %u\n", rwkvd_tier_name((rwkvd_tier)k), t->n_tier[k]);
    sb_printf(s, "# HELP rwkvd_tier_bytes Channel state bytes by tier.\n# TYPE rwkvd_tier_bytes gauge\n");
    for (int k = 0; k < RWKVD_N_TIERS; k++)
        sb_printf(s, "rwkvd_tier_bytes{tier=\"%s\"} %llu\n", rwkvd_tier_name((rwkvd_tier)k),
                  (unsigned long long)(t->n_tier[k] * one));
    sb_printf(s, "# HELP rwkvd_tier_promotions_total Channel states brought back into compute memory, by "
                 "the tier they came from.\n# TYPE rwkvd_tier_promotions_total counter\n");
    for (int k = RWKVD_TIER_HOST; k < RWKVD_N_TIERS; k++)
        sb_printf(s, "rwkvd_tier_promotions_total{from=\"%s\"} %llu\n", rwkvd_tier_name((rwkvd_tier)k),
                  (unsigned long long)t->promotions[k]);
    sb_printf(s, "# HELP rwkvd_tier_demotions_total Channel states moved to a slower tier.\n"
                 "# TYPE rwkvd_tier_demotions_total counter\n");
    for (int a = 0; a < RWKVD_N_TIERS; a++)
        for (int b = a + 1; b < RWKVD_N_TIERS; b++)
            sb_printf(s, "rwkvd_tier_demotions_total{from=\"%s\",to=\"%s\"} %llu\n",
                      rwkvd_tier_name((rwkvd_tier)a), rwkvd_tier_name((rwkvd_tier)b),
                      (unsigned long long)t->demotions[a][b]);
}

/* The input log and snapshot store (only with durability): what an operator watches to know
 * that acknowledged input is on disk and that snapshots keep the log short. */
static void durable_metrics(rwkvd_daemon *d, sbuf *s)
{
    rwkvd_durable_stats st;
    rwkvd_durable_stats_get(d, &st);
    if (!st.enabled)
        return;
    metric_u64(s, "rwkvd_wal_records_total", "counter", "Input-log records appended (the LSN of the last one).",
               st.wal_next_lsn - 1);
    metric_u64(s, "rwkvd_wal_unsynced_records", "gauge",
               "Input-log records appended and not yet known on disk (fsync policy everysec or no).",
               st.wal_next_lsn - 1 > st.wal_durable_lsn ? st.wal_next_lsn - 1 - st.wal_durable_lsn : 0);
    metric_u64(s, "rwkvd_wal_retained_records", "gauge",
               "Input-log records still on disk (since the oldest snapshot generation a channel may need).",
               st.wal_next_lsn - st.wal_first_lsn);
    metric_u64(s, "rwkvd_wal_segments", "gauge", "Input-log segment files.", st.wal_segments);
    metric_u64(s, "rwkvd_wal_failed", "gauge",
               "1 while the input log fails and ingest answers 503 instead of ACK: a failed fsync (until a "
               "restart) or a failed append such as ENOSPC (until an append succeeds again).",
               st.wal_failed != 0 || st.wal_append_err != 0);
    metric_u64(s, "rwkvd_wal_failed_until_restart", "gauge",
               "1 after an input-log fsync failed: nothing more becomes durable until rwkvd restarts.",
               st.wal_failed != 0);
    metric_u64(s, "rwkvd_channels_damaged", "gauge",
               "Channels recovered without a usable snapshot and refused (423) until the operator clears them "
               "(RESET, DROP, IMPORT).",
               st.damaged_channels);
    metric_u64(s, "rwkvd_wal_append_errors_total", "counter",
               "Input-log appends that failed (ENOSPC, EIO, ...); each message concerned was answered 503.",
               st.wal_append_errors);
    sb_printf(s, "# HELP rwkvd_snapshots_total Channel snapshots written, by result.\n"
                 "# TYPE rwkvd_snapshots_total counter\nrwkvd_snapshots_total{result=\"ok\"} %llu\n"
                 "rwkvd_snapshots_total{result=\"failed\"} %llu\n",
              (unsigned long long)st.snapshots_written, (unsigned long long)st.snapshots_failed);
    metric_u64(s, "rwkvd_snapshot_bytes_total", "counter", "State bytes written in channel snapshots.",
               st.snapshot_bytes);
    sb_printf(s, "# HELP rwkvd_snapshot_last_success_timestamp_seconds Unix time of the last channel snapshot "
                 "written (0: none since start).\n# TYPE rwkvd_snapshot_last_success_timestamp_seconds gauge\n"
                 "rwkvd_snapshot_last_success_timestamp_seconds %.3f\n",
              (double)st.last_snapshot_unix_ms / 1e3);
}

/* Duration of the worker's compute jobs as a Prometheus histogram (cumulative buckets). */
static void step_histogram(const rwkvd_metrics *m, sbuf *s)
{
    static const uint64_t bounds[RWKVD_STEP_BUCKETS] = RWKVD_STEP_BUCKETS_NS;
    sb_printf(s, "# HELP rwkvd_step_duration_seconds Duration of the compute jobs the worker ran.\n"
                 "# TYPE rwkvd_step_duration_seconds histogram\n");
    uint64_t cum = 0;
    for (int b = 0; b <= RWKVD_STEP_BUCKETS; b++) {
        cum += m->step_hist[b];
        if (b < RWKVD_STEP_BUCKETS)
            sb_printf(s, "rwkvd_step_duration_seconds_bucket{le=\"%g\"} %llu\n", (double)bounds[b] / 1e9,
                      (unsigned long long)cum);
        else
            sb_printf(s, "rwkvd_step_duration_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    sb_printf(s, "rwkvd_step_duration_seconds_sum %.6f\nrwkvd_step_duration_seconds_count %llu\n",
              (double)m->step_ns_total / 1e9, (unsigned long long)cum);
}

static void metrics_text(rwkvd_daemon *d, sbuf *s)
{
    const rwkvd_metrics *m = &d->m;
    sb_printf(s, "# HELP rwkvd_ingest_messages_total Ingest messages by op and result (ack, dup or error code).\n"
                 "# TYPE rwkvd_ingest_messages_total counter\n");
    static const char *const ops[] = {"invalid", "TEXT", "TOKENS", "RESET", "TASK", "GEN", "CANCEL", "CLOSE", "SYNC"};
    for (int op = 0; op <= 8; op++)
        for (int r = 0; r < RWKVD_N_RESULTS; r++)
            if (m->ingest[op][r]) {
                char res[8];
                if (r == 0)
                    snprintf(res, sizeof res, "ack");
                else if (r == 1)
                    snprintf(res, sizeof res, "dup");
                else
                    snprintf(res, sizeof res, "%d", rwkvd_result_code(r));
                sb_printf(s, "rwkvd_ingest_messages_total{op=\"%s\",result=\"%s\"} %llu\n", ops[op], res,
                          (unsigned long long)m->ingest[op][r]);
            }
    sb_printf(s, "# HELP rwkvd_ingest_replies_undeliverable_total Replies the INGEST ROUTER could not deliver.\n"
                 "# TYPE rwkvd_ingest_replies_undeliverable_total counter\n"
                 "rwkvd_ingest_replies_undeliverable_total %llu\n",
              (unsigned long long)m->ingest_undeliverable);
    sb_printf(s, "# HELP rwkvd_publish_messages_total Messages published by kind.\n"
                 "# TYPE rwkvd_publish_messages_total counter\n");
    static const char *const kinds[] = {"", "CLASS", "TEXT", "END", "ERROR"};
    for (int k = 1; k <= 4; k++)
        sb_printf(s, "rwkvd_publish_messages_total{kind=\"%s\"} %llu\n", kinds[k], (unsigned long long)m->publish[k]);
    metric_u64(s, "rwkvd_publish_dropped_total", "counter", "Publications a subscriber queue could not take (dropped).", m->publish_dropped);
    metric_u64(s, "rwkvd_outputs_unretained_total", "counter",
               "Publications the output retention could not keep (out of memory; REPLAY reports them lost).",
               m->outputs_unretained);
    metric_u64(s, "rwkvd_subscriptions", "gauge", "Subscriptions currently registered on PUBLISH.", m->subscriptions);
    metric_u64(s, "rwkvd_tokens_total", "counter", "Tokens fed to channel states and generations.", m->tokens_total);
    metric_u64(s, "rwkvd_input_tokens_total", "counter", "Input tokens fed to channel states.", m->input_tokens_total);
    metric_u64(s, "rwkvd_steps_total", "counter", "Compute jobs run by the worker.", m->steps_total);
    metric_u64(s, "rwkvd_step_rows_total", "counter", "Rows (slot, token) advanced by batched steps.", m->step_rows_total);
    sb_printf(s, "# HELP rwkvd_step_seconds_total Worker time spent in jobs.\n"
                 "# TYPE rwkvd_step_seconds_total counter\nrwkvd_step_seconds_total %.6f\n",
              (double)m->step_ns_total / 1e9);
    step_histogram(m, s);
    sb_printf(s, "# HELP rwkvd_loop_cpu_seconds_total CPU time of the loop thread (ingest, log append, "
                 "scheduling, replies, publishing).\n# TYPE rwkvd_loop_cpu_seconds_total counter\n"
                 "rwkvd_loop_cpu_seconds_total %.6f\n",
              (double)rwkvd_loop_cpu_ns(d) / 1e9);
    metric_u64(s, "rwkvd_loop_iterations_total", "counter", "Loop iterations (zmq_poll returns).",
               m->loop_iterations);
    sb_printf(s, "# HELP rwkvd_loop_iteration_max_seconds Longest loop iteration since start (work between "
                 "zmq_poll returning and the next call; the wait not counted).\n"
                 "# TYPE rwkvd_loop_iteration_max_seconds gauge\nrwkvd_loop_iteration_max_seconds %.6f\n",
              (double)m->loop_iter_max_ns / 1e9);
    metric_u64(s, "rwkvd_outputs_failed_total", "counter", "Classifications or generations that failed.", m->outputs_failed);
    metric_u64(s, "rwkvd_channels_quarantined_total", "counter",
               "Channels whose state went non-finite and was reset.", m->channels_quarantined);
    metric_u64(s, "rwkvd_generations_nonfinite_total", "counter",
               "Generations ended because their state went non-finite.", m->generations_nonfinite);
    sb_printf(s, "# HELP rwkvd_reloads_total Configuration reloads by result.\n"
                 "# TYPE rwkvd_reloads_total counter\nrwkvd_reloads_total{result=\"ok\"} %llu\n"
                 "rwkvd_reloads_total{result=\"failed\"} %llu\n",
              (unsigned long long)m->reloads_ok, (unsigned long long)m->reloads_failed);
    uint64_t q_tokens = d->tab->q_tokens_total;
    tier_metrics(d, s);
    durable_metrics(d, s);
    metric_u64(s, "rwkvd_queued_tokens", "gauge", "Input tokens accepted and not yet applied.", q_tokens);
    char *sec = NULL;
    size_t sec_len = 0;
    FILE *f = open_memstream(&sec, &sec_len);
    if (f) {
        rwkvd_security_metrics(d, f);
        fclose(f);
        sb_printf(s, "%s", sec ? sec : "");
    } else {
        s->oom = true;
    }
    free(sec);
    sb_printf(s, "# HELP rwkvd_generations Generations running.\n# TYPE rwkvd_generations gauge\n"
                 "rwkvd_generations %d\n",
              d->n_gens);
    sb_printf(s, "# HELP rwkvd_tokens_per_second Recent rate of rwkvd_tokens_total.\n"
                 "# TYPE rwkvd_tokens_per_second gauge\nrwkvd_tokens_per_second %.3f\n",
              d->tokens_per_s);
    sb_printf(s, "# HELP rwkvd_state_slots State-pool slots.\n# TYPE rwkvd_state_slots gauge\n"
                 "rwkvd_state_slots{state=\"total\"} %d\nrwkvd_state_slots{state=\"free\"} %d\n",
              rwkv_engine_n_slots(d->engine), d->tab->n_free);
}

char *rwkvd_control_metrics_text(rwkvd_daemon *d, size_t *len)
{
    sbuf s = {0};
    metrics_text(d, &s);
    if (s.oom || !s.buf) {
        free(s.buf);
        return NULL;
    }
    *len = s.len;
    return s.buf;
}

typedef struct {
    json_t *changed;
} reload_ctx;

static void on_changed(const char *path, bool reloadable, void *user)
{
    (void)reloadable;
    json_array_append_new(((reload_ctx *)user)->changed, json_string(path));
}

/* ---- portability: EXPORT, IMPORT, FORK (durable.c does the work) ------------------ */

static void do_export(rwkvd_daemon *d, const rwkvp_frame *env, size_t n_env, rwkvd_channel *ch)
{
    char err[1024] = "";
    void *blob = NULL;
    size_t len = 0;
    rwkvd_daemon_quiesce(d); /* the engine's slot is read, and no job is half applied */
    int rc = rwkvd_durable_export(d, ch, &blob, &len, err, sizeof err);
    if (rc) {
        rwkvd_log(LOG_ERR, "EXPORT: %s", err);
        reply(d, env, n_env, 500, err, strlen(err));
        return;
    }
    json_t *j = json_pack("{s:s%, s:s, s:I, s:I}", "name", ch->name, ch->name_len, "tier", tier_of(ch), "tokens_seen",
                          (json_int_t)ch->tokens_seen, "bytes", (json_int_t)len);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (body)
        reply_blob(d, env, n_env, 200, body, strlen(body), blob, len);
    else
        reply(d, env, n_env, 500, "out of memory", 13);
    free(body);
    json_decref(j);
    free(blob);
}

/* A negative errno of rwkvd_durable_import/fork as a control code (PROTOCOL.md §10.3). */
static int install_code(int rc)
{
    switch (rc) {
    case -EBADMSG:
        return 400; /* corrupt or truncated image */
    case -EPROTO: /* unknown format version, layout or dtype */
    case -ESTALE: /* another model */
        return 422;
    case -EBUSY:
        return 409;
    case -EMLINK:
    case -ENOSPC:
        return 507;
    default:
        return 500;
    }
}

static void do_install(rwkvd_daemon *d, const rwkvp_frame *env, size_t n_env, const rwkvp_ctl_request *req,
                       rwkvd_channel *src)
{
    const rwkvp_frame *target = req->cmd == RWKVP_CTL_FORK ? &req->dst : &req->channel;
    char name[RWKVP_CHANNEL_MAX + 1], err[1024] = ""; /* the decoder checked the name (§4.4) */
    memcpy(name, target->data, target->len);
    name[target->len] = '\0';
    rwkvd_channel *old = rwkvd_chantab_find(d->tab, name, target->len);
    if (req->cmd == RWKVP_CTL_FORK && old) {
        snprintf(err, sizeof err, "channel %s exists; FORK creates a new channel (DROP it first, or IMPORT an "
                                  "EXPORT of the source over it)", name);
        reply(d, env, n_env, 409, err, strlen(err));
        return;
    }
    bool replaced = old != NULL;
    uint32_t dropped = 0;
    rwkvd_daemon_quiesce(d);
    int rc = req->cmd == RWKVP_CTL_FORK
                 ? rwkvd_durable_fork(d, src, name, err, sizeof err)
                 : rwkvd_durable_import(d, name, req->blob.data, req->blob.len, &dropped, err, sizeof err);
    if (rc) {
        int code = install_code(rc);
        char t[1200];
        snprintf(t, sizeof t, "%s %s refused: %s", rwkvp_ctl_cmd_name(req->cmd), name, err[0] ? err : strerror(-rc));
        rwkvd_log(code >= 500 && code != 507 ? LOG_ERR : LOG_WARNING, "%s", t);
        reply(d, env, n_env, code, t, strlen(t));
        return;
    }
    rwkvd_replica_diverged(d, req->cmd == RWKVP_CTL_FORK ? "control FORK made a state outside the input log"
                                                         : "control IMPORT made a state outside the input log");
    rwkvd_channel *ch = rwkvd_chantab_find(d->tab, name, target->len);
    json_t *j = json_pack("{s:s, s:s, s:I}", "name", name, "tier", tier_of(ch), "tokens_seen",
                          (json_int_t)ch->tokens_seen);
    if (j && req->cmd == RWKVP_CTL_FORK)
        json_object_set_new(j, "from", json_stringn(src->name, src->name_len));
    if (j && req->cmd == RWKVP_CTL_IMPORT) {
        json_object_set_new(j, "replaced", json_boolean(replaced));
        json_object_set_new(j, "dropped_messages", json_integer(dropped));
    }
    reply_json(d, env, n_env, j);
}

/* DROP discards queued GENs, each of which was accepted and so gets its one END
 * (PROTOCOL.md §9.4): cancelled, nothing sampled, at the channel's tokens_seen. */
static void end_discarded_gens(rwkvd_daemon *d, rwkvd_channel *ch, uint64_t tokens_seen)
{
    for (const rwkvd_entry *e = ch->head; e; e = e->next) {
        if (e->op != RWKVP_OP_GEN)
            continue;
        rwkvd_origin o = {e->producer, e->seq, tokens_seen};
        rwkvp_end end = {.reason = RWKVP_END_CANCELLED,
                         .text = {"", 0},
                         .stop = {"", 0},
                         .seed = e->gen && (e->gen->present & RWKVP_GEN_HAS_SEED) ? e->gen->seed & RWKVP_SEED_MAX : 0};
        rwkvd_publish_end(d, ch, &o, &end);
    }
}

/* Whether the channel is still applying again the input-log records that recovery queued
 * (so it is still publishing again outputs it had published before a restart); latched off. */
static bool recovering(rwkvd_channel *ch)
{
    if (ch->recover_lsn && ch->applied_lsn < ch->recover_lsn)
        return true;
    if (ch->recover_lsn && (ch->gen || ch->output_pending))
        return true;
    ch->recover_lsn = 0;
    return false;
}

/* REPLAY (PROTOCOL.md §9.7): the channel's retained publications after `after`, in
 * order, in frame 3, and which of the numbers after `after` are no longer retained. */
static void do_replay(rwkvd_daemon *d, const rwkvp_frame *env, size_t n_env, rwkvd_channel *ch,
                      uint64_t after)
{
    if (!d->cfg->outputs.sequence) {
        static const char t[] = "REPLAY needs output sequence numbers: outputs.sequence is false";
        reply(d, env, n_env, 501, t, sizeof t - 1);
        return;
    }
    /* a disk-tier channel's retained outputs are in its snapshot: read them for this reply */
    rwkvd_outring disk = {0};
    const rwkvd_outring *outs = &ch->outs;
    if (ch->tier == RWKVD_TIER_DISK && d->dur) {
        if (rwkvd_durable_outputs(d, ch, &disk) != 0)
            rwkvd_outring_clear(&disk); /* unreadable: reported as lost below */
        outs = &disk;
    }
    uint64_t last = ch->oseq, first = rwkvd_outring_first(outs);
    uint64_t lost_from = 0, lost_to = 0, from = 0, count = 0;
    size_t bytes = 0;
    if (after < last) {
        if (!first || (outs->tail && outs->tail->oseq != last)) {
            lost_from = after + 1; /* nothing retained up to the last one */
            lost_to = last;
        } else {
            if (after + 1 < first) {
                lost_from = after + 1;
                lost_to = first - 1;
            }
            for (const rwkvd_outrec *x = outs->head; x; x = x->next) {
                if (x->oseq <= after)
                    continue;
                if (!from)
                    from = x->oseq;
                count++;
                bytes += x->len;
            }
        }
    }
    unsigned char *blob = bytes ? malloc(bytes) : NULL;
    if (bytes && !blob) {
        reply(d, env, n_env, 500, "out of memory", 13);
        rwkvd_outring_clear(&disk);
        return;
    }
    size_t off = 0;
    for (const rwkvd_outrec *x = outs->head; x && bytes; x = x->next) {
        if (x->oseq <= after)
            continue;
        memcpy(blob + off, x->data, x->len);
        off += x->len;
    }
    json_t *j = json_pack("{s:s%, s:I, s:I, s:I, s:I}", "name", ch->name, ch->name_len, "after", (json_int_t)after,
                          "last", (json_int_t)last, "first", (json_int_t)from, "count", (json_int_t)count);
    if (j) {
        json_object_set_new(j, "lost", lost_from ? json_pack("{s:I, s:I}", "from", (json_int_t)lost_from, "to",
                                                             (json_int_t)lost_to)
                                                 : json_null());
        json_object_set_new(j, "recovering", json_boolean(recovering(ch)));
    }
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (body)
        reply_blob(d, env, n_env, 200, body, strlen(body), blob, off);
    else
        reply(d, env, n_env, 500, "out of memory", 13);
    free(body);
    json_decref(j);
    free(blob);
    rwkvd_outring_clear(&disk);
}

static void handle_one(rwkvd_daemon *d, rwkvd_zmsg *zm)
{
    size_t n_env = 0;
    if (zm->n_total != zm->n || rwkvp_envelope_split(zm->f, zm->n, &n_env) != 0) {
        if (zm->n >= 1) {
            size_t ne = zm->n >= 2 && zm->f[1].len == 0 ? 2 : 1;
            reply(d, zm->f, ne, 400, "too many frames", 15);
            d->m.control[0]++;
        }
        return;
    }
    const rwkvp_frame *env = zm->f;
    rwkvp_ctl_request req;
    rwkvp_error e;
    rwkvp_limits lim;
    rwkvp_limits_default(&lim);
    lim.max_message_bytes = max_request_bytes(d);
    memset(&e, 0, sizeof e);
    if (rwkvp_ctl_request_decode(zm->f + n_env, zm->n - n_env, &lim, &req, &e) != 0) {
        reply(d, env, n_env, e.code, e.text, strlen(e.text));
        d->m.control[0]++;
        return;
    }
    d->m.control[req.cmd]++;
    char why[RWKVP_ERROR_TEXT_MAX];
    if (rwkvd_security_check_control(d, &zm->parts[zm->n - 1], req.cmd, why, sizeof why) != 0) {
        reply(d, env, n_env, RWKVP_E_FORBIDDEN, why, strlen(why));
        return;
    }
    rwkvd_channel *ch = NULL;
    if (req.cmd == RWKVP_CTL_INFO || req.cmd == RWKVP_CTL_RESET || req.cmd == RWKVP_CTL_EVICT ||
        req.cmd == RWKVP_CTL_DROP || req.cmd == RWKVP_CTL_EXPORT || req.cmd == RWKVP_CTL_FORK ||
        req.cmd == RWKVP_CTL_REPLAY) {
        ch = rwkvd_chantab_find(d->tab, req.channel.data, req.channel.len);
        if (!ch) {
            char t[200];
            snprintf(t, sizeof t, "unknown channel '%.*s'", (int)req.channel.len, (const char *)req.channel.data);
            reply(d, env, n_env, 404, t, strlen(t));
            return;
        }
    }
    if (rwkvd_replica_standby(d) && (req.cmd == RWKVP_CTL_RESET || req.cmd == RWKVP_CTL_DROP ||
                                     req.cmd == RWKVP_CTL_IMPORT || req.cmd == RWKVP_CTL_FORK)) {
        static const char t[] = "this rwkvd is a standby: its states follow the primary; send it there";
        reply(d, env, n_env, 409, t, sizeof t - 1);
        return;
    }
    switch (req.cmd) {
    case RWKVP_CTL_STATUS: {
        json_t *st = status_json(d);
        engine_status(d, st);
        limits_status(d, st);
        loop_status(d, st);
        durable_status(d, st);
        rwkvd_replica_status(d, st);
        rwkvd_security_status(d, st);
        reply_json(d, env, n_env, st);
        break;
    }
    case RWKVP_CTL_CHANNELS:
        reply_json(d, env, n_env, mark_damaged(d, channels_json(d, &req.prefix, &req.after)));
        break;
    case RWKVP_CTL_INFO: {
        json_t *j = info_json(d, ch);
        if (j)
            json_object_set_new(j, "damaged", json_boolean(ch->damaged));
        reply_json(d, env, n_env, j);
        break;
    }
    case RWKVP_CTL_RESET:
        if (d->dur) /* the snapshot below must see the zeroing, not a job half done */
            rwkvd_daemon_quiesce(d);
        if (!clear_damage(d, env, n_env, ch, "RESET") || !restore_for(d, env, n_env, ch))
            break;
        rwkvd_daemon_reset_channel(d, ch);
        if (d->dur) /* not in the input log: a snapshot of the zeroed state makes it durable */
            rwkvd_durable_snapshot(d, ch, false, NULL, NULL);
        rwkvd_replica_diverged(d, "control RESET changed a state outside the input log");
        reply_json(d, env, n_env, json_pack("{s:s%, s:i}", "name", ch->name, ch->name_len, "tokens_seen", 0));
        break;
    case RWKVP_CTL_DROP: {
        json_t *j = json_pack("{s:s%}", "name", ch->name, ch->name_len);
        uint32_t dropped = 0;
        uint64_t seen = ch->tokens_seen;
        rwkvd_daemon_quiesce(d); /* a running generation's END comes now, before the ERROR */
        if (d->dur) { /* durable as a zero state that covers every record of the channel */
            if (!clear_damage(d, env, n_env, ch, "DROP") || !restore_for(d, env, n_env, ch)) {
                json_decref(j);
                break;
            }
            rwkvd_daemon_reset_channel(d, ch);
        } else {
            rwkvd_daemon_cancel_gen(d, ch);
        }
        uint32_t queued = ch->q_messages;
        end_discarded_gens(d, ch, seen);
        if (d->dur) {
            dropped = rwkvd_chantab_clear_queue(ch);
            rwkvd_durable_snapshot(d, ch, false, NULL, NULL);
        }
        char t[160];
        snprintf(t, sizeof t, "channel dropped by the operator (control DROP); %u queued message%s discarded", queued,
                 queued == 1 ? "" : "s");
        rwkvd_origin o = {"", 0, seen};
        rwkvd_publish_error(d, ch, &o, RWKVP_E_CONFLICT, t);
        dropped += rwkvd_daemon_drop_channel(d, ch);
        rwkvd_replica_diverged(d, "control DROP changed a state outside the input log");
        json_object_set_new(j, "dropped_messages", json_integer(dropped));
        reply_json(d, env, n_env, j);
        break;
    }
    case RWKVP_CTL_EVICT: {
        /* to disk with a snapshot store; without one, to host memory (tier.c) */
        bool to_host = !d->dur;
        if (to_host && (!d->cfg->residency.host_max_bytes ||
                        ((uint64_t)d->tab->n_tier[RWKVD_TIER_HOST] + 1) * rwkvd_tier_state_bytes(d) >
                            d->cfg->residency.host_max_bytes) &&
            ch->tier == RWKVD_TIER_RESIDENT) {
            static const char t[] = "EVICT without durability moves the state to host memory, which "
                                    "residency.host_max_bytes does not allow now; durability.enabled is false";
            reply(d, env, n_env, 409, t, sizeof t - 1);
            break;
        }
        rwkvd_daemon_quiesce(d);
        int rc = to_host ? rwkvd_tier_to_host(d, ch) : rwkvd_durable_evict(d, ch);
        if (rc) {
            char t[300];
            if (rc == -EBUSY)
                snprintf(t, sizeof t, "channel %s is %s; EVICT it after that ends", ch->name,
                         ch->gen ? "generating" : "busy (input queued or an output pending)");
            else
                snprintf(t, sizeof t, "EVICT of %s failed: %s: %s (it stays %s); see the log", ch->name,
                         to_host ? "export" : "snapshot", strerror(-rc), tier_of(ch));
            reply(d, env, n_env, rc == -EBUSY ? 409 : 500, t, strlen(t));
            break;
        }
        reply_json(d, env, n_env, json_pack("{s:s%, s:s}", "name", ch->name, ch->name_len, "tier", tier_of(ch)));
        break;
    }
    case RWKVP_CTL_SNAPSHOT: {
        if (!d->dur) {
            static const char t[] = "SNAPSHOT needs a snapshot store: durability.enabled is false";
            reply(d, env, n_env, 501, t, sizeof t - 1);
            break;
        }
        rwkvd_channel *only = NULL;
        if (req.channel.len) {
            only = rwkvd_chantab_find(d->tab, req.channel.data, req.channel.len);
            if (!only) {
                char t[200];
                snprintf(t, sizeof t, "unknown channel '%.*s'", (int)req.channel.len, (const char *)req.channel.data);
                reply(d, env, n_env, 404, t, strlen(t));
                break;
            }
        }
        uint64_t t0 = rwkvd_now_ns(), bytes = 0;
        uint32_t n = 0;
        rwkvd_daemon_quiesce(d);
        int rc = rwkvd_durable_snapshot(d, only, false, &n, &bytes);
        if (rc) {
            char t[200];
            snprintf(t, sizeof t, "snapshot failed (%s) after %u channel(s); see the log", strerror(-rc), n);
            reply(d, env, n_env, 500, t, strlen(t));
            break;
        }
        reply_json(d, env, n_env, json_pack("{s:i, s:I, s:f}", "channels", (int)n, "bytes", (json_int_t)bytes,
                                            "duration_s", (double)(rwkvd_now_ns() - t0) / 1e9));
        break;
    }
    case RWKVP_CTL_RELOAD: {
        char err[1024] = "";
        reload_ctx rc = {json_array()};
        int r = rwkvd_daemon_reload(d, err, sizeof err, on_changed, &rc);
        if (r == 0) {
            reply_json(d, env, n_env, json_pack("{s:s, s:o}", "config", d->config_path, "changed", rc.changed));
        } else {
            json_decref(rc.changed);
            reply(d, env, n_env, 422, err, strlen(err));
        }
        break;
    }
    case RWKVP_CTL_EXPORT:
        if (refuse_damaged(d, env, n_env, ch))
            break;
        do_export(d, env, n_env, ch);
        break;
    case RWKVP_CTL_IMPORT:
    case RWKVP_CTL_FORK:
        if (req.cmd == RWKVP_CTL_FORK && refuse_damaged(d, env, n_env, ch))
            break;
        do_install(d, env, n_env, &req, ch);
        break;
    case RWKVP_CTL_REPLAY:
        do_replay(d, env, n_env, ch, req.after_oseq);
        break;
    case RWKVP_CTL_METRICS: {
        sbuf s = {0};
        metrics_text(d, &s);
        if (s.oom || !s.buf)
            reply(d, env, n_env, 500, "out of memory", 13);
        else
            reply(d, env, n_env, 200, s.buf, s.len);
        free(s.buf);
        break;
    }
    default:
        reply(d, env, n_env, 405, "unknown command", 15);
    }
}

int rwkvd_control_handle(rwkvd_daemon *d, int budget)
{
    int handled = 0;
    for (; handled < budget; handled++) {
        rwkvd_zmsg zm;
        if (rwkvd_zmsg_recv(d->control, &zm) != 0)
            break;
        handle_one(d, &zm);
        rwkvd_zmsg_close(&zm);
    }
    return handled;
}
