/* publish.c — see publish.h. */
#include "publish.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "log.h"
#include "replica.h"
#include "security.h"
#include "rwkvp_json.h"

int rwkvd_publish_open(rwkvd_daemon *d, char *err, size_t err_len)
{
    d->publish = zmq_socket(d->zctx, ZMQ_XPUB);
    if (!d->publish) {
        snprintf(err, err_len, "zmq_socket(XPUB): %s", zmq_strerror(zmq_errno()));
        return -EIO;
    }
    int one = 1, zero = 0, hwm = (int)d->cfg->endpoints.publish_hwm;
    zmq_setsockopt(d->publish, ZMQ_XPUB_NODROP, &one, sizeof one);
    zmq_setsockopt(d->publish, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(d->publish, ZMQ_LINGER, &zero, sizeof zero);
    if (rwkvd_security_on(d)) { /* subscriptions are applied by rwkvd_security_subscription */
        int rc = rwkvd_security_server(d, d->publish, RWKVD_SOCK_PUBLISH, err, err_len);
        if (rc)
            return rc;
        zmq_setsockopt(d->publish, ZMQ_XPUB_MANUAL, &one, sizeof one);
    }
    for (size_t i = 0; i < d->cfg->endpoints.publish.n; i++) {
        const char *ep = d->cfg->endpoints.publish.v[i];
        if (zmq_bind(d->publish, ep) != 0) {
            snprintf(err, err_len, "endpoints.publish: cannot bind %s: %s", ep, zmq_strerror(zmq_errno()));
            return -EADDRINUSE;
        }
    }
    return 0;
}

void rwkvd_publish_drain(rwkvd_daemon *d)
{
    for (int i = 0; i < 1000; i++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, d->publish, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        const unsigned char *p = zmq_msg_data(&m);
        if (rwkvd_security_on(d)) {
            rwkvd_security_subscription(d, &m); /* manual mode: checked, then applied or refused */
        } else if (zmq_msg_size(&m) >= 1) {
            if (p[0] == 1)
                d->m.subscriptions++;
            else if (p[0] == 0 && d->m.subscriptions > 0)
                d->m.subscriptions--;
        }
        zmq_msg_close(&m);
    }
}

/* 0, or -errno of the first frame (-EAGAIN: with ZMQ_XPUB_NODROP, some matching subscriber's
 * queue is full); a multipart message is queued atomically, so only the first frame can fail. */
static int send_frames(void *sock, const rwkvp_msg *msg)
{
    for (size_t i = 0; i < msg->n; i++) {
        int flags = ZMQ_DONTWAIT | (i + 1 < msg->n ? ZMQ_SNDMORE : 0);
        if (zmq_send(sock, msg->frames[i].data, msg->frames[i].len, flags) < 0)
            return -zmq_errno();
    }
    return 0;
}

/* Number a channel's publication (ch NULL: a message that is no channel output, sent
 * without an oseq), retain it, and send it. A standby numbers and retains what it computes
 * but sends nothing until it takes over (replica.h). */
static void send_pub(rwkvd_daemon *d, rwkvd_channel *ch, rwkvp_pub *p)
{
    const rwkvd_config *cfg = d->cfg;
    if (ch && cfg->outputs.sequence)
        p->oseq = ++ch->oseq;
    if (!d->publish && !p->oseq)
        return;
    rwkvp_msg msg;
    rwkvp_error e;
    if (rwkvp_pub_encode(p, &msg, &e) != 0) {
        rwkvd_log(LOG_ERR, "cannot encode a %s publication for channel %.*s: %s", rwkvp_pub_kind_name(p->kind),
                  (int)p->channel.len, (const char *)p->channel.data, e.text);
        d->m.publish_dropped++;
        if (p->oseq) /* the number is spent: REPLAY reports it as not retained */
            rwkvd_outring_clear(&ch->outs);
        return;
    }
    if (p->oseq && ch->tier != RWKVD_TIER_DISK) {
        const void *data[RWKVP_MAX_FRAMES];
        size_t len[RWKVP_MAX_FRAMES];
        for (size_t i = 0; i < msg.n; i++) {
            data[i] = msg.frames[i].data;
            len[i] = msg.frames[i].len;
        }
        if (rwkvd_outring_push(&ch->outs, p->oseq, msg.n, data, len, cfg->outputs.retain_messages,
                               cfg->outputs.retain_bytes) != 0)
            d->m.outputs_unretained++;
    }
    if (!d->publish)
        return;
    int rc = send_frames(d->publish, &msg);
    if (rc == -EAGAIN) {
        /* a matching subscriber's queue is full: count the drop toward it, then send lossy
         * so that every subscriber with room still gets the message (PROTOCOL.md §9.6) */
        int zero = 0, one = 1;
        d->m.publish_dropped++;
        zmq_setsockopt(d->publish, ZMQ_XPUB_NODROP, &zero, sizeof zero);
        rc = send_frames(d->publish, &msg);
        zmq_setsockopt(d->publish, ZMQ_XPUB_NODROP, &one, sizeof one);
    }
    if (rc == 0)
        d->m.publish[p->kind]++;
    else if (rc != -EAGAIN)
        d->m.publish_dropped++;
}

static void fill_origin(rwkvp_pub *p, rwkvd_channel *ch, const rwkvd_origin *o)
{
    p->channel.data = ch->name;
    p->channel.len = ch->name_len;
    p->seq = o->seq;
    p->producer.data = o->seq ? o->producer : "";
    p->producer.len = o->seq ? strlen(o->producer) : 0;
    p->tokens_seen = o->tokens_seen;
}

/* Publish a JSON body the caller encoded (rc is the encoder's result), or count the message
 * as dropped when encoding failed; buf is freed unless it is the caller's stack buffer. */
static void send_json(rwkvd_daemon *d, rwkvd_channel *ch, const rwkvd_origin *o, rwkvp_pub_kind kind,
                      int rc, char *buf, size_t len, const char *stack)
{
    char *fenced = NULL;
    uint64_t epoch = rwkvd_replica_epoch(d);
    if (rc == 0 && epoch && len >= 2 && buf[0] == '{' && (fenced = malloc(len + 32))) {
        /* with replication, the fencing epoch leads the object (PROTOCOL.md §9.2, §9.4) */
        int k = snprintf(fenced, 32, "{\"epoch\":%llu%s", (unsigned long long)epoch, len > 2 ? "," : "");
        memcpy(fenced + k, buf + 1, len - 1);
        len = (size_t)k + len - 1;
    }
    if (rc == 0) {
        rwkvp_pub p = {.kind = kind};
        fill_origin(&p, ch, o);
        p.body.data = fenced ? fenced : buf;
        p.body.len = len;
        send_pub(d, ch, &p);
    } else {
        d->m.publish_dropped++;
    }
    if (buf && buf != stack)
        free(buf);
    free(fenced);
}

void rwkvd_publish_class(rwkvd_daemon *d, rwkvd_channel *ch, const rwkvd_origin *o,
                         const char *profile, int n, const char *const *labels, const float *probs)
{
    char stackbuf[4096];
    char *buf = stackbuf;
    size_t need = 0;
    int rc = rwkvp_class_encode(profile, (size_t)n, labels, probs, buf, sizeof stackbuf, &need);
    if (rc == -ENOBUFS && (buf = malloc(need)) != NULL)
        rc = rwkvp_class_encode(profile, (size_t)n, labels, probs, buf, need, &need);
    send_json(d, ch, o, RWKVP_PUB_CLASS, rc, buf, need, stackbuf);
}

void rwkvd_publish_text(rwkvd_daemon *d, rwkvd_channel *ch, const rwkvd_origin *o, uint64_t index,
                        const char *piece, size_t len)
{
    rwkvp_pub p = {.kind = RWKVP_PUB_TEXT};
    fill_origin(&p, ch, o);
    p.index = index;
    p.body.data = piece;
    p.body.len = len;
    send_pub(d, ch, &p);
}

void rwkvd_publish_end(rwkvd_daemon *d, rwkvd_channel *ch, const rwkvd_origin *o,
                       const rwkvp_end *end)
{
    size_t need = 0;
    char small[2048];
    char *buf = small;
    int rc = rwkvp_end_encode(end, buf, sizeof small, &need);
    if (rc == -ENOBUFS && (buf = malloc(need)) != NULL)
        rc = rwkvp_end_encode(end, buf, need, &need);
    send_json(d, ch, o, RWKVP_PUB_END, rc, buf, need, small);
}

static void fill_error(rwkvp_pub *p, const char *channel, size_t channel_len, const rwkvd_origin *o, int code,
                       const char *text)
{
    p->kind = RWKVP_PUB_ERROR;
    p->channel.data = channel;
    p->channel.len = channel_len;
    p->seq = o->seq;
    p->producer.data = o->seq ? o->producer : "";
    p->producer.len = o->seq ? strlen(o->producer) : 0;
    p->tokens_seen = o->tokens_seen;
    p->code = code;
    p->body.data = text;
    p->body.len = strlen(text);
}

void rwkvd_publish_error(rwkvd_daemon *d, rwkvd_channel *ch, const rwkvd_origin *o, int code,
                         const char *text)
{
    rwkvp_pub p = {.kind = RWKVP_PUB_ERROR};
    fill_error(&p, ch->name, ch->name_len, o, code, text);
    send_pub(d, ch, &p);
}

void rwkvd_publish_error_to(rwkvd_daemon *d, const char *channel, size_t channel_len, const rwkvd_origin *o,
                            int code, const char *text)
{
    rwkvp_pub p = {.kind = RWKVP_PUB_ERROR};
    fill_error(&p, channel, channel_len, o, code, text);
    send_pub(d, NULL, &p); /* not a channel output: no oseq (PROTOCOL.md §9.7) */
}
