/* ingest.c — see ingest.h. */
#include "ingest.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "durable.h"
#include "log.h"
#include "publish.h"
#include "security.h"
#include "tier.h"
#include "zmsg.h"

/* The INGEST-PULL message that waits for room in its channel's queue (§8.4). */
struct rwkvd_pull_hold {
    bool has;
    bool busy; /* being handled: a job completed meanwhile (quiesce) must not re-enter */
    rwkvd_zmsg msg;
};

/* Replies ZeroMQ could not take at once because the connection's send queue was at its
 * high-water mark (ZMQ_ROUTER_MANDATORY makes that EAGAIN instead of a silent drop). They
 * wait here, in order, per routing identity; every later reply to that identity queues
 * behind them, so a connection's replies keep their order (PROTOCOL.md §7, §8.3). A
 * backlog holds at most endpoints.ingest_reply_hwm replies; beyond that the client is
 * not reading and the reply is dropped and counted. */
typedef struct backlog_msg {
    struct backlog_msg *next;
    size_t n;                     /* frames, the envelope included */
    size_t len[RWKVD_ZMSG_MAX];
    unsigned char data[];         /* the frames, back to back */
} backlog_msg;

struct rwkvd_reply_backlog {
    struct rwkvd_reply_backlog *next;
    size_t id_len;
    unsigned char id[256];        /* ZeroMQ routing identities are 1..255 octets */
    backlog_msg *head, *tail;
    size_t n;
};

static backlog_msg *backlog_msg_new(const rwkvp_frame *env, size_t n_env, const rwkvp_frame *f, size_t n)
{
    size_t total = 0;
    if (n_env + n > RWKVD_ZMSG_MAX)
        return NULL;
    for (size_t i = 0; i < n_env + n; i++)
        total += i < n_env ? env[i].len : f[i - n_env].len;
    backlog_msg *m = malloc(sizeof *m + (total ? total : 1));
    if (!m)
        return NULL;
    m->next = NULL;
    m->n = n_env + n;
    size_t off = 0;
    for (size_t i = 0; i < m->n; i++) {
        const rwkvp_frame *fr = i < n_env ? &env[i] : &f[i - n_env];
        m->len[i] = fr->len;
        if (fr->len)
            memcpy(m->data + off, fr->data, fr->len);
        off += fr->len;
    }
    return m;
}

/* Send what waits for one identity, in order, until the queue is full again; false when the
 * identity is gone (the rest is dropped and counted). */
static bool backlog_drain(rwkvd_daemon *d, struct rwkvd_reply_backlog *b)
{
    while (b->head) {
        backlog_msg *m = b->head;
        rwkvp_frame f[RWKVD_ZMSG_MAX];
        size_t off = 0;
        for (size_t i = 0; i < m->n; i++) {
            f[i] = (rwkvp_frame){m->data + off, m->len[i]};
            off += m->len[i];
        }
        int rc = rwkvd_zmsg_send(d->ingest, NULL, 0, f, m->n);
        if (rc == -EAGAIN)
            return true;
        if (rc != 0) { /* the client went away: nothing more reaches it */
            d->m.ingest_undeliverable += b->n;
            while (b->head) {
                m = b->head;
                b->head = m->next;
                free(m);
            }
            b->tail = NULL;
            b->n = 0;
            return false;
        }
        b->head = m->next;
        if (!b->head)
            b->tail = NULL;
        b->n--;
        free(m);
    }
    return true;
}

void rwkvd_ingest_send(rwkvd_daemon *d, const rwkvp_frame *env, size_t n_env, const rwkvp_frame *f, size_t n)
{
    struct rwkvd_reply_backlog *b = d->reply_backlog;
    while (b && (b->id_len != env[0].len || memcmp(b->id, env[0].data, env[0].len) != 0))
        b = b->next;
    if (!b) {
        int rc = rwkvd_zmsg_send(d->ingest, env, n_env, f, n);
        if (rc == 0)
            return;
        if (rc != -EAGAIN || env[0].len == 0 || env[0].len > sizeof b->id || !(b = calloc(1, sizeof *b))) {
            d->m.ingest_undeliverable++;
            return;
        }
        b->id_len = env[0].len;
        memcpy(b->id, env[0].data, env[0].len);
        b->next = d->reply_backlog;
        d->reply_backlog = b;
        d->n_reply_backlog++;
    }
    backlog_msg *m = b->n < d->cfg->endpoints.ingest_reply_hwm ? backlog_msg_new(env, n_env, f, n) : NULL;
    if (!m) {
        d->m.ingest_undeliverable++;
        return;
    }
    if (b->tail)
        b->tail->next = m;
    else
        b->head = m;
    b->tail = m;
    b->n++;
}

void rwkvd_ingest_backlog_flush(rwkvd_daemon *d)
{
    for (struct rwkvd_reply_backlog **pp = &d->reply_backlog; *pp;) {
        struct rwkvd_reply_backlog *b = *pp;
        backlog_drain(d, b);
        if (b->head) {
            pp = &b->next;
            continue;
        }
        *pp = b->next;
        free(b);
        d->n_reply_backlog--;
    }
}

void rwkvd_ingest_backlog_free(rwkvd_daemon *d)
{
    while (d->reply_backlog) {
        struct rwkvd_reply_backlog *b = d->reply_backlog;
        d->reply_backlog = b->next;
        while (b->head) {
            backlog_msg *m = b->head;
            b->head = m->next;
            free(m);
        }
        free(b);
    }
    d->n_reply_backlog = 0;
}

int rwkvd_ingest_open(rwkvd_daemon *d, char *err, size_t err_len)
{
    d->ingest = zmq_socket(d->zctx, ZMQ_ROUTER);
    if (!d->ingest) {
        snprintf(err, err_len, "zmq_socket(ROUTER): %s", zmq_strerror(zmq_errno()));
        return -EIO;
    }
    int one = 1, zero = 0;
    int64_t maxmsg = (int64_t)d->cfg->limits.max_message_bytes * 2 + 65536;
    zmq_setsockopt(d->ingest, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    int hwm = (int)d->cfg->endpoints.ingest_reply_hwm;
    zmq_setsockopt(d->ingest, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(d->ingest, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(d->ingest, ZMQ_LINGER, &zero, sizeof zero);
    int src = rwkvd_security_server(d, d->ingest, RWKVD_SOCK_INGEST, err, err_len);
    if (src)
        return src;
    for (size_t i = 0; i < d->cfg->endpoints.ingest.n; i++) {
        const char *ep = d->cfg->endpoints.ingest.v[i];
        if (zmq_bind(d->ingest, ep) != 0) {
            snprintf(err, err_len, "endpoints.ingest: cannot bind %s: %s", ep, zmq_strerror(zmq_errno()));
            return -EADDRINUSE;
        }
    }
    if (d->cfg->endpoints.ingest_pull.n == 0)
        return 0;
    if (!(d->pull_hold = calloc(1, sizeof *d->pull_hold)) || !(d->ingest_pull = zmq_socket(d->zctx, ZMQ_PULL))) {
        snprintf(err, err_len, "zmq_socket(PULL): %s", d->pull_hold ? zmq_strerror(zmq_errno()) : "out of memory");
        return -EIO;
    }
    zmq_setsockopt(d->ingest_pull, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(d->ingest_pull, ZMQ_LINGER, &zero, sizeof zero);
    if ((src = rwkvd_security_server(d, d->ingest_pull, RWKVD_SOCK_INGEST_PULL, err, err_len)))
        return src;
    for (size_t i = 0; i < d->cfg->endpoints.ingest_pull.n; i++) {
        const char *ep = d->cfg->endpoints.ingest_pull.v[i];
        if (zmq_bind(d->ingest_pull, ep) != 0) {
            snprintf(err, err_len, "endpoints.ingest_pull: cannot bind %s: %s", ep, zmq_strerror(zmq_errno()));
            return -EADDRINUSE;
        }
    }
    return 0;
}

void *rwkvd_ingest_pull_socket(const rwkvd_daemon *d)
{
    return d->pull_hold && d->pull_hold->has ? NULL : d->ingest_pull;
}

void rwkvd_ingest_pull_close(rwkvd_daemon *d)
{
    if (d->pull_hold && d->pull_hold->has)
        rwkvd_zmsg_close(&d->pull_hold->msg);
    free(d->pull_hold);
    d->pull_hold = NULL;
    if (d->ingest_pull)
        zmq_close(d->ingest_pull);
    d->ingest_pull = NULL;
}

typedef struct {
    rwkvd_daemon *d;
    const rwkvp_frame *env;
    size_t n_env;
    uint64_t lsn; /* the input-log record an ACK must wait for (0 = none) */
    bool pull;    /* from INGEST-PULL: no replies; errors are published */
    const zmq_msg_t *part; /* a frame of the message: its sender's key (security.c) */
    bool hold;    /* pull: the channel's queue is full; keep the message and stop reading */
} reply_ctx;

/* A rejected INGEST-PULL message: ERROR on its channel's topic when the name was valid,
 * with its producer and seq when both were (PROTOCOL.md §8.4, §9.5). */
static void publish_rejection(rwkvd_daemon *d, const rwkvp_frame *channel, const rwkvp_frame *producer,
                              bool has_seq, uint64_t seq, int code, const char *text)
{
    if (!channel->len)
        return;
    char prod[RWKVP_NAME_MAX + 1] = "";
    bool both = has_seq && seq && producer->len && producer->len <= RWKVP_NAME_MAX;
    if (both)
        memcpy(prod, producer->data, producer->len);
    const rwkvd_channel *ch = rwkvd_chantab_find(d->tab, channel->data, channel->len);
    rwkvd_origin o = {prod, both ? seq : 0, ch ? ch->tokens_seen : 0};
    rwkvd_publish_error_to(d, channel->data, channel->len, &o, code, text);
}

static void send_reply(reply_ctx *rc, const rwkvp_reply *r)
{
    if (rc->pull) {
        if (r->kind == RWKVP_REPLY_ERROR) {
            char text[RWKVP_ERROR_TEXT_MAX + 96];
            snprintf(text, sizeof text, "%.*s", (int)r->text.len, (const char *)r->text.data);
            publish_rejection(rc->d, &r->channel, &r->producer, r->has_seq, r->seq, r->code, text);
        }
        return;
    }
    rwkvp_msg msg;
    rwkvp_error e;
    if (rwkvp_reply_encode(r, &msg, &e) != 0) {
        rwkvd_log(LOG_ERR, "cannot encode an ingest reply: %s", e.text);
        return;
    }
    if (rc->d->dur) /* after the replies before it, and once its record is durable */
        rwkvd_durable_reply(rc->d, rc->lsn, rc->env, rc->n_env, msg.frames, msg.n);
    else
        rwkvd_ingest_send(rc->d, rc->env, rc->n_env, msg.frames, msg.n);
}

static void count(rwkvd_daemon *d, int op, int code)
{
    int i = rwkvd_result_index(code);
    if (op < 0 || op > 8)
        op = 0;
    if (i >= 0)
        d->m.ingest[op][i]++;
}

static uint64_t channel_credit(const rwkvd_daemon *d, const rwkvd_channel *ch)
{
    uint64_t max_q = d->cfg->limits.max_queue_tokens;
    return ch ? rwkvd_channel_credit(ch, max_q) : max_q;
}

/* An ERROR reply for a decoded message (state checks); pauses the pair when retryable. */
__attribute__((format(printf, 5, 6))) static void reject(reply_ctx *rc, const rwkvp_ingest *m, rwkvd_pair *pair,
                                                         int code, const char *fmt, ...)
{
    char text[RWKVP_ERROR_TEXT_MAX + 96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    rwkvp_reply r = {.kind = RWKVP_REPLY_ERROR, .channel = m->channel, .producer = m->producer, .has_seq = true,
                     .seq = m->seq, .code = code, .text = {text, strlen(text)}};
    send_reply(rc, &r);
    count(rc->d, (int)m->op, code);
    /* a PUSH producer cannot resend, so its pairs are never paused */
    if (pair && !rc->pull && rwkvp_code_pauses(code) && m->op != RWKVP_OP_SYNC) {
        pair->paused_at = m->seq;
        pair->paused_code = code;
    }
}

/* CANCEL: the running generation and every GEN still queued end with reason `cancelled`
 * (a queued one at once, nothing sampled, and it stays in the queue as an empty entry so
 * that what follows it keeps its place); with an input log each is recorded so that a
 * restart never runs it again. The LSN the ACK must wait for, 0 when nothing was logged. */
static uint64_t cancel_gens(rwkvd_daemon *d, rwkvd_channel *ch)
{
    uint64_t lsn = 0, l = 0;
    rwkvd_gen *g = ch->gen;
    if (g && !g->cancel) {
        if (d->dur && (g->gen_lsn || g->triggered) &&
            rwkvd_durable_log_cancel(d, ch, g->gen_lsn, g->triggered, g->trig_lsn, g->trig_ts, &l) == 0)
            lsn = l;
        rwkvd_daemon_cancel_gen(d, ch);
    }
    for (rwkvd_entry *e = ch->head; e; e = e->next) {
        if (e->op != RWKVP_OP_GEN)
            continue;
        rwkvd_origin o = {e->producer, e->seq, ch->tokens_seen};
        rwkvp_end end = {.reason = RWKVP_END_CANCELLED,
                         .text = {"", 0},
                         .stop = {"", 0},
                         .seed = e->gen && (e->gen->present & RWKVP_GEN_HAS_SEED) ? e->gen->seed & RWKVP_SEED_MAX : 0};
        rwkvd_publish_end(d, ch, &o, &end);
        if (d->dur && e->lsn && rwkvd_durable_log_cancel(d, ch, e->lsn, false, 0, 0, &l) == 0)
            lsn = l;
        free(e->gen);
        e->gen = NULL;
        e->op = RWKVP_OP_TOKENS; /* no tokens: applied as a no-op in its turn */
    }
    return lsn;
}

static void ack(reply_ctx *rc, const rwkvp_ingest *m, rwkvp_reply_kind kind, uint64_t acked, uint64_t credit)
{
    rwkvp_reply r = {.kind = kind, .channel = m->channel, .producer = m->producer, .has_seq = true, .seq = m->seq,
                     .acked = acked, .credit = credit};
    send_reply(rc, &r);
    count(rc->d, (int)m->op, kind == RWKVP_REPLY_DUP ? 1 : 0);
}

/* Ask for an unsolicited CREDIT to the pair (through the connection of this message) once
 * the channel's input has drained to `at` tokens or fewer (PROTOCOL.md §8.1, §8.2). */
static void want_credit(rwkvd_daemon *d, rwkvd_pair *pair, const reply_ctx *rc, uint64_t at)
{
    if (!pair->credit_env || pair->credit_env_len != rc->env[0].len ||
        memcmp(pair->credit_env, rc->env[0].data, rc->env[0].len) != 0) {
        free(pair->credit_env);
        pair->credit_env = NULL;
        pair->credit_env_len = 0;
        if ((pair->credit_env = malloc(rc->env[0].len ? rc->env[0].len : 1)) != NULL) {
            memcpy(pair->credit_env, rc->env[0].data, rc->env[0].len);
            pair->credit_env_len = rc->env[0].len;
        }
    }
    pair->credit_delim = rc->n_env == 2;
    pair->credit_at = at;
    if (pair->credit_wanted)
        return;
    if (d->n_credit_waiters == d->cap_credit_waiters) {
        size_t cap = d->cap_credit_waiters ? d->cap_credit_waiters * 2 : 16;
        rwkvd_pair **v = realloc(d->credit_waiters, cap * sizeof *v);
        if (!v)
            return;
        d->credit_waiters = v;
        d->cap_credit_waiters = cap;
    }
    d->credit_waiters[d->n_credit_waiters++] = pair;
    pair->credit_wanted = true;
}

void rwkvd_ingest_credit_notify(rwkvd_daemon *d)
{
    if (d->pull_hold && d->pull_hold->has)
        rwkvd_ingest_pull_handle(d, 256);
    for (size_t i = 0; i < d->n_credit_waiters;) {
        rwkvd_pair *p = d->credit_waiters[i];
        rwkvd_channel *ch = rwkvd_chantab_find(d->tab, p->key, p->channel_len);
        if (ch && rwkvd_channel_input_tokens(ch) > p->credit_at) {
            i++;
            continue;
        }
        rwkvp_frame env[2] = {{p->credit_env, p->credit_env_len}, {"", 0}};
        rwkvp_reply r = {.kind = RWKVP_REPLY_CREDIT, .channel = {p->key, p->channel_len},
                         .producer = {p->key + p->channel_len + 1, p->producer_len}, .acked = p->acked,
                         .credit = channel_credit(d, ch)};
        rwkvp_msg msg;
        rwkvp_error e;
        if (p->credit_env && rwkvp_reply_encode(&r, &msg, &e) == 0)
            rwkvd_ingest_send(d, env, p->credit_delim ? 2 : 1, msg.frames, msg.n);
        free(p->credit_env);
        p->credit_env = NULL;
        p->credit_env_len = 0;
        p->credit_wanted = false;
        d->credit_waiters[i] = d->credit_waiters[--d->n_credit_waiters];
    }
}

/* Tokenize TEXT + separator into a new entry; NULL on -ENOMEM. */
static rwkvd_entry *entry_new(const rwkvp_ingest *m, size_t n_tokens)
{
    rwkvd_entry *e = calloc(1, sizeof *e + n_tokens * sizeof(int32_t));
    if (!e)
        return NULL;
    e->op = m->op;
    e->seq = m->seq;
    memcpy(e->producer, m->producer.data, m->producer.len);
    e->n_tokens = (uint32_t)n_tokens;
    return e;
}

static void handle_decoded(rwkvd_daemon *d, reply_ctx *rc, const rwkvp_ingest *m)
{
    const rwkvd_config *cfg = d->cfg;
    char why[RWKVP_ERROR_TEXT_MAX];
    if (rc->part && rwkvd_security_check_write(d, rc->part, rc->pull ? RWKVD_SOCK_INGEST_PULL : RWKVD_SOCK_INGEST,
                                               m->channel.data, m->channel.len, why, sizeof why) != 0) {
        reject(rc, m, NULL, RWKVP_E_FORBIDDEN, "%s", why); /* before any state: no pair, no channel */
        return;
    }
    rwkvd_channel *ch = rwkvd_chantab_find(d->tab, m->channel.data, m->channel.len);
    rwkvd_pair *pair = rwkvd_chantab_pair(d->tab, m->channel.data, m->channel.len, m->producer.data, m->producer.len,
                                          true);
    if (!pair) {
        reject(rc, m, NULL, RWKVP_E_INTERNAL, "out of memory");
        return;
    }
    if (m->op == RWKVP_OP_SYNC) {
        pair->paused_at = 0;
        rwkvp_reply r = {.kind = RWKVP_REPLY_CREDIT, .channel = m->channel, .producer = m->producer,
                         .acked = pair->acked, .credit = channel_credit(d, ch)};
        send_reply(rc, &r);
        count(d, RWKVP_OP_SYNC, 0);
        /* a producer SYNCs when its next message does not fit (§8.1): it gets a CREDIT when
         * the input has drained to half the queue, or, when it is at most half already,
         * when the queue is empty */
        uint64_t input = ch ? rwkvd_channel_input_tokens(ch) : 0, half = cfg->limits.max_queue_tokens / 2;
        if (!rc->pull && input > 0)
            want_credit(d, pair, rc, input > half ? half : 0);
        return;
    }
    if (m->seq <= pair->acked) {
        ack(rc, m, RWKVP_REPLY_DUP, pair->acked, channel_credit(d, ch));
        return;
    }
    if (pair->paused_at && m->seq != pair->paused_at) {
        reject(rc, m, NULL, RWKVP_E_PAUSED, "pair paused: seq %llu was turned away with %d; resend it or send SYNC",
               (unsigned long long)pair->paused_at, pair->paused_code);
        return;
    }
    if (d->state == RWKVD_STOPPING) {
        reject(rc, m, pair, RWKVP_E_UNAVAILABLE, "rwkvd is shutting down");
        return;
    }
    if (ch && ch->damaged) {
        reject(rc, m, pair, RWKVP_E_DAMAGED, "channel damaged: no usable snapshot at start and the input log does "
               "not reach back to its start; refused until the operator RESETs, DROPs or IMPORTs it (see the log)");
        return;
    }
    if (m->op == RWKVP_OP_CANCEL) {
        if (ch)
            rc->lsn = cancel_gens(d, ch);
        pair->acked = m->seq;
        pair->paused_at = 0;
        ack(rc, m, RWKVP_REPLY_ACK, pair->acked, channel_credit(d, ch));
        return;
    }
    char profile[RWKVP_NAME_MAX + 1] = "";
    if (m->op == RWKVP_OP_TASK) {
        memcpy(profile, m->payload.data, m->payload.len);
        if (!rwkvd_tasks_find(d->tasks, profile)) {
            reject(rc, m, NULL, RWKVP_E_NOT_FOUND, "frame 5 (profile): no task profile '%s' is configured", profile);
            return;
        }
    }
    /* tokens of the message */
    size_t n_tokens = 0;
    long n_text = 0, n_sep = 0;
    const char *sep = cfg->events.separator ? cfg->events.separator : "";
    int n_vocab = rwkv_model_dims(d->model)->n_vocab;
    if (m->op == RWKVP_OP_TEXT) {
        n_text = rwkv_tokenizer_encode(d->tok, m->payload.data, m->payload.len, NULL, 0);
        n_sep = rwkv_tokenizer_encode(d->tok, sep, strlen(sep), NULL, 0);
        if (n_text < 0 || n_sep < 0) {
            reject(rc, m, NULL, RWKVP_E_INVALID, "frame 5 (text): the vocabulary cannot encode it");
            return;
        }
        n_tokens = (size_t)(n_text + n_sep);
    } else if (m->op == RWKVP_OP_TOKENS) {
        n_tokens = m->n_tokens;
        for (size_t i = 0; i < m->n_tokens; i++) {
            uint32_t id = rwkvp_tokens_get(&m->payload, i);
            if (id >= (uint32_t)n_vocab) {
                reject(rc, m, NULL, RWKVP_E_INVALID, "frame 5 (tokens): id %u at index %zu is outside the vocabulary (0..%d)",
                       id, i, n_vocab - 1);
                return;
            }
        }
    }
    uint64_t cost = n_tokens ? n_tokens : 1;
    if (cost > cfg->limits.max_queue_tokens) {
        reject(rc, m, NULL, RWKVP_E_TOO_LARGE, "frame 5: the message needs %llu tokens; limits.max_queue_tokens is %u",
               (unsigned long long)cost, cfg->limits.max_queue_tokens);
        return;
    }
    if (!ch) {
        size_t live = d->tab->n_live;
        if (live >= cfg->limits.max_channels) {
            reject(rc, m, pair, RWKVP_E_LIMIT, "limit reached: limits.max_channels is %u", cfg->limits.max_channels);
            return;
        }
        /* a slot for it: a free one; with a snapshot store none is needed (the channel starts
         * on disk with a zero state and the scheduler pages it in, demoting an idle channel,
         * when it gets to it); without one, a slot freed by demoting an idle channel now */
        if (d->tab->n_free == 0 && !d->dur && rwkvd_tier_make_room(d, NULL) != 0) {
            reject(rc, m, pair, RWKVP_E_LIMIT, "limit reached: no free state slot (model.state_slots is %u) and "
                   "no idle channel to move out of compute memory (residency.host_max_bytes; no snapshot store to "
                   "spill to)", cfg->model.state_slots);
            return;
        }
    } else if (ch->tier != RWKVD_TIER_RESIDENT && ch->slot < 0 && !d->dur &&
               ((d->tab->n_free == 0 && rwkvd_tier_make_room(d, ch) != 0) ||
                (ch->slot = rwkvd_chantab_slot_alloc(d->tab)) < 0)) {
        /* without a snapshot store the promotion needs a slot reserved now (host memory is the
         * last tier), or the message is turned away; with one, the input waits in the channel's
         * tier until the scheduler pages it in (it reserves a slot here only if one is free) */
        reject(rc, m, pair, RWKVP_E_LIMIT, "limit reached: no free state slot to bring channel back from tier "
               "%s (model.state_slots is %u) and no idle channel to move out of compute memory",
               rwkvd_tier_name(ch->tier), cfg->model.state_slots);
        return;
    } else if (rwkvd_channel_input_tokens(ch) + cost > cfg->limits.max_queue_tokens) {
        if (rc->pull) { /* the PULL socket waits for room (§8.4) */
            rc->hold = true;
            return;
        }
        reject(rc, m, pair, RWKVP_E_NO_CREDIT, "no credit: the message needs %llu tokens; the queue holds %llu of "
               "limits.max_queue_tokens %u", (unsigned long long)cost,
               (unsigned long long)rwkvd_channel_input_tokens(ch), cfg->limits.max_queue_tokens);
        want_credit(d, pair, rc, cfg->limits.max_queue_tokens / 2);
        return;
    }
    rwkvp_gen_params *gp = NULL;
    if (m->op == RWKVP_OP_GEN) {
        gp = malloc(sizeof *gp);
        rwkvp_error ge;
        if (!gp) {
            reject(rc, m, pair, RWKVP_E_INTERNAL, "out of memory");
            return;
        }
        memset(&ge, 0, sizeof ge);
        if (rwkvp_gen_params_parse(m->payload.data, m->payload.len, gp, &ge) != 0) {
            reject(rc, m, NULL, ge.code ? ge.code : RWKVP_E_MALFORMED, "%s", ge.text);
            free(gp);
            return;
        }
    }
    rwkvd_entry *e = entry_new(m, n_tokens);
    if (!e) {
        free(gp);
        reject(rc, m, pair, RWKVP_E_INTERNAL, "out of memory");
        return;
    }
    e->gen = gp;
    if (m->op == RWKVP_OP_TEXT) {
        e->event = true;
        if (n_text > 0)
            rwkv_tokenizer_encode(d->tok, m->payload.data, m->payload.len, e->tokens, (size_t)n_text);
        if (n_sep > 0)
            rwkv_tokenizer_encode(d->tok, sep, strlen(sep), e->tokens + n_text, (size_t)n_sep);
    } else if (m->op == RWKVP_OP_TOKENS) {
        for (size_t i = 0; i < n_tokens; i++)
            e->tokens[i] = (int32_t)rwkvp_tokens_get(&m->payload, i);
    } else if (m->op == RWKVP_OP_TASK) {
        memcpy(e->arg, profile, sizeof e->arg);
    }
    if (d->dur) { /* the input log first: an ACK promises the message survives a restart */
        int lrc = rwkvd_durable_log(d, m->channel.data, m->channel.len, e, m->payload.data, m->payload.len, &e->lsn);
        if (lrc) {
            rwkvd_entry_free(e);
            reject(rc, m, pair, RWKVP_E_UNAVAILABLE, "cannot write the input log (%s); not accepted",
                   strerror(-lrc));
            return;
        }
    }
    int64_t now_ms = rwkvd_unix_ms();
    if (!ch) {
        bool paged = d->tab->n_free == 0; /* only with a snapshot store (checked above) */
        int crc = paged ? rwkvd_chantab_create_evicted(d->tab, m->channel.data, m->channel.len,
                                                       cfg->tasks.default_profile, cfg->limits.max_channels, now_ms,
                                                       &ch)
                        : rwkvd_chantab_create(d->tab, m->channel.data, m->channel.len, cfg->tasks.default_profile,
                                               cfg->limits.max_channels, now_ms, &ch);
        if (crc == 0 && paged)
            ch->fresh = true;
        if (crc) {
            rwkvd_entry_free(e);
            reject(rc, m, pair, RWKVP_E_LIMIT, "limit reached: cannot create the channel (%s)", strerror(-crc));
            return;
        }
    }
    if (e->lsn)
        ch->logged_lsn = e->lsn;
    rc->lsn = e->lsn;
    rwkvd_chantab_push(ch, e);
    ch->last_input_unix_ms = now_ms;
    rwkvd_chantab_touch(ch, rwkvd_now_ns());
    pair->acked = m->seq;
    pair->paused_at = 0;
    ack(rc, m, RWKVP_REPLY_ACK, pair->acked, channel_credit(d, ch));
}

/* An error reply to an undecodable message, in order with the replies waiting for the log. */
static void send_raw(rwkvd_daemon *d, const rwkvp_frame *env, size_t n_env, const rwkvp_msg *msg)
{
    if (d->dur)
        rwkvd_durable_reply(d, 0, env, n_env, msg->frames, msg->n);
    else
        rwkvd_ingest_send(d, env, n_env, msg->frames, msg->n);
}

int rwkvd_ingest_handle(rwkvd_daemon *d, int budget)
{
    int handled = 0;
    rwkvp_limits lim;
    rwkvp_limits_default(&lim);
    lim.max_message_bytes = d->cfg->limits.max_message_bytes;
    for (; handled < budget; handled++) {
        rwkvd_zmsg zm;
        if (rwkvd_zmsg_recv(d->ingest, &zm) != 0)
            break;
        size_t n_env = 0;
        if (zm.n_total != zm.n || rwkvp_envelope_split(zm.f, zm.n, &n_env) != 0) {
            /* more frames than any message has, or nothing after the identity; the size
             * comes first (PROTOCOL.md §12), so an oversized one is 413 whatever its frames */
            if (zm.n >= 1) {
                size_t ne = zm.n >= 2 && zm.f[1].len == 0 ? 2 : 1;
                size_t bytes = zm.bytes_total - zm.f[0].len; /* the envelope excluded */
                size_t frames = zm.n_total > ne ? zm.n_total - ne : 0;
                rwkvp_error e = {.code = RWKVP_E_MALFORMED, .frame = -1, .field = "message"};
                if (bytes > lim.max_message_bytes) {
                    e.code = RWKVP_E_TOO_LARGE;
                    snprintf(e.text, sizeof e.text, "message: %zu octets exceed the limit of %zu (max_message_bytes)",
                             bytes, lim.max_message_bytes);
                } else {
                    snprintf(e.text, sizeof e.text, "message has %zu frames; no ingest message has more than 6",
                             frames);
                }
                rwkvp_msg msg;
                if (rwkvp_reply_encode_error(&e, &msg) == 0)
                    send_raw(d, zm.f, ne, &msg);
                count(d, 0, e.code);
            }
            rwkvd_zmsg_close(&zm);
            continue;
        }
        reply_ctx rc = {.d = d, .env = zm.f, .n_env = n_env, .part = &zm.parts[zm.n - 1]};
        rwkvp_ingest m;
        rwkvp_error e;
        memset(&e, 0, sizeof e);
        if (rwkvp_ingest_decode(zm.f + n_env, zm.n - n_env, &lim, &m, &e) != 0) {
            rwkvp_msg msg;
            if (rwkvp_reply_encode_error(&e, &msg) == 0)
                send_raw(d, zm.f, n_env, &msg);
            int op = 0;
            /* count against the op when frame 1 named one */
            static const char *const names[] = {"", "TEXT", "TOKENS", "RESET", "TASK", "GEN", "CANCEL", "CLOSE", "SYNC"};
            if (zm.n - n_env >= 2)
                for (int k = 1; k <= 8; k++)
                    if (zm.f[n_env + 1].len == strlen(names[k]) &&
                        memcmp(zm.f[n_env + 1].data, names[k], zm.f[n_env + 1].len) == 0)
                        op = k;
            count(d, op, e.code);
        } else {
            handle_decoded(d, &rc, &m);
        }
        rwkvd_zmsg_close(&zm);
    }
    if (d->dur && handled > 0)
        rwkvd_durable_commit(d); /* group commit (fsync always), then the replies it covers */
    return handled;
}

/* One INGEST-PULL message: true when it must wait for queue room (kept by the caller). */
static bool pull_one(rwkvd_daemon *d, rwkvd_zmsg *zm, const rwkvp_limits *lim)
{
    rwkvp_error e;
    memset(&e, 0, sizeof e);
    rwkvp_ingest m;
    if (zm->n_total != zm->n) {
        /* more frames than any message has (size first, §12); nothing in it is trusted */
        count(d, 0, zm->bytes_total > lim->max_message_bytes ? RWKVP_E_TOO_LARGE : RWKVP_E_MALFORMED);
        return false;
    }
    if (rwkvp_ingest_decode(zm->f, zm->n, lim, &m, &e) != 0) {
        /* 505 and a bad signature carry no channel: counted and dropped (§13) */
        publish_rejection(d, &e.channel, &e.producer, e.has_seq, e.seq, e.code, e.text);
        count(d, 0, e.code);
        return false;
    }
    if (m.op == RWKVP_OP_SYNC) /* ignored on PULL (§8.4) */
        return false;
    reply_ctx rc = {.d = d, .pull = true, .part = &zm->parts[zm->n - 1]};
    handle_decoded(d, &rc, &m);
    return rc.hold;
}

int rwkvd_ingest_pull_handle(rwkvd_daemon *d, int budget)
{
    struct rwkvd_pull_hold *h = d->pull_hold;
    if (!d->ingest_pull || !h || h->busy)
        return 0;
    rwkvp_limits lim;
    rwkvp_limits_default(&lim);
    lim.max_message_bytes = d->cfg->limits.max_message_bytes;
    int handled = 0;
    for (; handled < budget; handled++) {
        if (!h->has && rwkvd_zmsg_recv(d->ingest_pull, &h->msg) != 0)
            break;
        h->has = true;
        h->busy = true;
        bool wait = pull_one(d, &h->msg, &lim);
        h->busy = false;
        if (wait)
            break; /* not handled: it waits, and the socket is not read meanwhile */
        rwkvd_zmsg_close(&h->msg);
        h->has = false;
    }
    if (d->dur && handled > 0)
        rwkvd_durable_commit(d);
    return handled;
}
