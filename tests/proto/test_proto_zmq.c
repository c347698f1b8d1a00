/* test_proto_zmq — the codec over real ZeroMQ sockets on tcp://127.0.0.1:* (PROTOCOL.md §3).
 *
 * DEALER -> ROUTER: every ingest op encoded, decoded on the ROUTER after the envelope split,
 * answered with ACK / CREDIT / ERROR and decoded on the DEALER, with and without a REQ-style
 * delimiter. REQ -> ROUTER: a control request and its reply. PUB -> SUB: prefix
 * subscription selects channels by topic. Every receive waits at most TIMEOUT_MS.
 */
#include "rwkvp.h"
#include "testutil.h"

#include <errno.h>
#include <string.h>
#include <zmq.h>

#define TIMEOUT_MS 5000
#define MAX_PARTS 16

typedef struct {
    zmq_msg_t part[MAX_PARTS];
    rwkvp_frame f[MAX_PARTS];
    size_t n;
} received;

static void received_close(received *r)
{
    for (size_t i = 0; i < r->n; i++)
        zmq_msg_close(&r->part[i]);
    r->n = 0;
}

/* One multipart message within timeout_ms; 0, or -ETIMEDOUT / -EMSGSIZE / -errno. */
static int recv_frames(void *sock, received *r, int timeout_ms)
{
    r->n = 0;
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&item, 1, timeout_ms);
    if (rc < 0)
        return -zmq_errno();
    if (rc == 0)
        return -ETIMEDOUT;
    for (;;) {
        if (r->n == MAX_PARTS) {
            received_close(r);
            return -EMSGSIZE;
        }
        zmq_msg_t *m = &r->part[r->n];
        zmq_msg_init(m);
        if (zmq_msg_recv(m, sock, ZMQ_DONTWAIT) < 0) {
            int e = zmq_errno();
            zmq_msg_close(m);
            received_close(r);
            return -e;
        }
        r->f[r->n].data = zmq_msg_data(m);
        r->f[r->n].len = zmq_msg_size(m);
        r->n++;
        if (!zmq_msg_more(m))
            return 0;
    }
}

/* Envelope frames (may be 0) followed by a message's frames. */
static int send_frames(void *sock, const rwkvp_frame *env, size_t n_env, const rwkvp_frame *f, size_t n)
{
    for (size_t i = 0; i < n_env + n; i++) {
        const rwkvp_frame *p = i < n_env ? &env[i] : &f[i - n_env];
        int flags = i + 1 < n_env + n ? ZMQ_SNDMORE : 0;
        if (zmq_send(sock, p->len ? p->data : "", p->len, flags) < 0)
            return -zmq_errno();
    }
    return 0;
}

static rwkvp_frame fr(const char *s)
{
    rwkvp_frame f = {s, strlen(s)};
    return f;
}

static bool frame_eq(rwkvp_frame f, const char *s)
{
    return f.len == strlen(s) && (f.len == 0 || memcmp(f.data, s, f.len) == 0);
}

static void *bind_any(void *ctx, int type, char *endpoint, size_t cap)
{
    void *s = zmq_socket(ctx, type);
    int linger = 0;
    if (!s)
        return NULL;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(s, "tcp://127.0.0.1:*") != 0 || zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, endpoint, &cap) != 0) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

static void *connect_to(void *ctx, int type, const char *endpoint)
{
    void *s = zmq_socket(ctx, type);
    int linger = 0;
    if (!s)
        return NULL;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(s, endpoint) != 0) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

/* The daemon side of one ingest exchange: decode, then reply ACK / CREDIT / ERROR. */
static void daemon_answer(void *router, uint64_t *acked, rwkvp_ingest *seen, int *seen_code)
{
    received r;
    *seen_code = 0;
    int rc = recv_frames(router, &r, TIMEOUT_MS);
    CHECKF(rc == 0, "router receive: %d", rc);
    if (rc)
        return;
    size_t env = 0;
    CHECK(rwkvp_envelope_split(r.f, r.n, &env) == 0);
    rwkvp_error err;
    rwkvp_msg reply;
    if (rwkvp_ingest_decode(r.f + env, r.n - env, NULL, seen, &err) != 0) {
        *seen_code = err.code;
        CHECK(rwkvp_reply_encode_error(&err, &reply) == 0);
    } else {
        rwkvp_reply a = {0};
        a.channel = seen->channel;
        a.producer = seen->producer;
        a.credit = 8;
        if (seen->op == RWKVP_OP_SYNC) {
            a.kind = RWKVP_REPLY_CREDIT;
            a.acked = *acked;
        } else {
            a.kind = seen->seq <= *acked ? RWKVP_REPLY_DUP : RWKVP_REPLY_ACK;
            if (seen->seq > *acked)
                *acked = seen->seq;
            a.seq = seen->seq;
            a.acked = *acked;
        }
        CHECK(rwkvp_reply_encode(&a, &reply, &err) == 0);
        /* The payload must still be intact while r is open: compare it before closing. */
        if (seen->op == RWKVP_OP_TEXT)
            CHECK(frame_eq(seen->payload, "GET /index.html 200 512b"));
        if (seen->op == RWKVP_OP_TOKENS)
            CHECK(seen->n_tokens == 2 && rwkvp_tokens_get(&seen->payload, 1) == 105);
    }
    CHECK(send_frames(router, r.f, env, reply.frames, reply.n) == 0);
    received_close(&r);
}

static void test_ingest(void *ctx)
{
    char ep[256];
    void *router = bind_any(ctx, ZMQ_ROUTER, ep, sizeof ep);
    CHECK(router != NULL);
    void *dealer = router ? connect_to(ctx, ZMQ_DEALER, ep) : NULL;
    CHECK(dealer != NULL);
    if (!router || !dealer)
        goto out;
    uint32_t ids[] = {34, 105};
    unsigned char tok[8];
    rwkvp_tokens_pack(ids, 2, tok, sizeof tok);
    const struct {
        rwkvp_op op;
        uint64_t seq;
        rwkvp_frame payload;
        rwkvp_reply_kind want;
    } steps[] = {
        {RWKVP_OP_SYNC, 0, {NULL, 0}, RWKVP_REPLY_CREDIT},
        {RWKVP_OP_TEXT, 41, {"GET /index.html 200 512b", 24}, RWKVP_REPLY_ACK},
        {RWKVP_OP_TEXT, 41, {"GET /index.html 200 512b", 24}, RWKVP_REPLY_DUP},
        {RWKVP_OP_TOKENS, 43, {tok, 8}, RWKVP_REPLY_ACK},
        {RWKVP_OP_TASK, 44, {"severity", 8}, RWKVP_REPLY_ACK},
        {RWKVP_OP_GEN, 45, {"{\"max_tokens\":32}", 17}, RWKVP_REPLY_ACK},
        {RWKVP_OP_CANCEL, 46, {NULL, 0}, RWKVP_REPLY_ACK},
        {RWKVP_OP_RESET, 47, {NULL, 0}, RWKVP_REPLY_ACK},
        {RWKVP_OP_CLOSE, 48, {NULL, 0}, RWKVP_REPLY_ACK},
    };
    uint64_t acked = 0;
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        rwkvp_ingest in = {steps[i].op, fr("app/nginx"), fr("web-1"), steps[i].seq, steps[i].payload, 0};
        rwkvp_msg m;
        rwkvp_error err;
        CHECK(rwkvp_ingest_encode(&in, &m, &err) == 0);
        /* Step 4 goes out with a REQ-style delimiter, which must come back. */
        rwkvp_frame delim = {NULL, 0};
        bool with_delim = i == 4;
        CHECK(send_frames(dealer, &delim, with_delim ? 1 : 0, m.frames, m.n) == 0);
        rwkvp_ingest seen;
        int code;
        daemon_answer(router, &acked, &seen, &code);
        CHECKF(code == 0, "step %zu: daemon saw error %d", i, code);
        CHECK(seen.op == steps[i].op && seen.seq == steps[i].seq);
        received r;
        int rc = recv_frames(dealer, &r, TIMEOUT_MS);
        CHECKF(rc == 0, "dealer receive: %d", rc);
        if (rc)
            continue;
        size_t skip = with_delim ? 1 : 0;
        if (with_delim)
            CHECK(r.n > 0 && r.f[0].len == 0);
        rwkvp_reply rep;
        CHECK(rwkvp_reply_decode(r.f + skip, r.n - skip, NULL, &rep, &err) == 0);
        CHECKF(rep.kind == steps[i].want, "step %zu: kind %d", i, rep.kind);
        CHECK(frame_eq(rep.channel, "app/nginx") && frame_eq(rep.producer, "web-1"));
        CHECK(rep.credit == 8 && rep.acked == acked);
        if (rep.kind != RWKVP_REPLY_CREDIT)
            CHECK(rep.seq == steps[i].seq);
        received_close(&r);
    }
    /* A malformed message: the daemon's ERROR names the frame and keeps the seq. */
    rwkvp_frame bad[6] = {fr("RWKV1"), fr("TEXT"), fr("app/nginx"), fr("web-1"), fr("49"),
                          {"ab\xC3\xA9\xFF" "c", 6}};
    CHECK(send_frames(dealer, NULL, 0, bad, 6) == 0);
    rwkvp_ingest seen;
    int code;
    daemon_answer(router, &acked, &seen, &code);
    CHECK(code == 415);
    received r;
    if (recv_frames(dealer, &r, TIMEOUT_MS) == 0) {
        rwkvp_reply rep;
        rwkvp_error err;
        CHECK(rwkvp_reply_decode(r.f, r.n, NULL, &rep, &err) == 0);
        CHECK(rep.kind == RWKVP_REPLY_ERROR && rep.code == 415 && rep.has_seq && rep.seq == 49);
        CHECK(frame_eq(rep.text, "frame 5 (text): invalid UTF-8 at octet 4"));
        CHECK(rwkvp_code_retry(rep.code) == RWKVP_RETRY_NO);
        received_close(&r);
    } else {
        CHECK(!"no ERROR reply");
    }
out:
    if (dealer)
        zmq_close(dealer);
    if (router)
        zmq_close(router);
}

static void test_control(void *ctx)
{
    char ep[256];
    void *router = bind_any(ctx, ZMQ_ROUTER, ep, sizeof ep);
    void *req = router ? connect_to(ctx, ZMQ_REQ, ep) : NULL;
    CHECK(router && req);
    if (!router || !req)
        goto out;
    rwkvp_ctl_request q = {RWKVP_CTL_INFO, fr("app/nginx"), {NULL, 0}, {NULL, 0}, {NULL, 0}, {NULL, 0}, 0};
    rwkvp_msg m;
    rwkvp_error err;
    CHECK(rwkvp_ctl_request_encode(&q, &m, &err) == 0);
    CHECK(send_frames(req, NULL, 0, m.frames, m.n) == 0);
    received r;
    CHECK(recv_frames(router, &r, TIMEOUT_MS) == 0);
    size_t env = 0;
    CHECK(rwkvp_envelope_split(r.f, r.n, &env) == 0 && env == 2);
    rwkvp_ctl_request got;
    CHECK(rwkvp_ctl_request_decode(r.f + env, r.n - env, NULL, &got, &err) == 0);
    CHECK(got.cmd == RWKVP_CTL_INFO && frame_eq(got.channel, "app/nginx"));
    rwkvp_ctl_response resp = {200, fr("{\"name\":\"app/nginx\",\"tier\":\"resident\"}"), {NULL, 0}};
    CHECK(rwkvp_ctl_response_encode(&resp, &m, &err) == 0);
    CHECK(send_frames(router, r.f, env, m.frames, m.n) == 0);
    received_close(&r);
    CHECK(recv_frames(req, &r, TIMEOUT_MS) == 0);
    rwkvp_ctl_response back;
    CHECK(rwkvp_ctl_response_decode(r.f, r.n, NULL, &back, &err) == 0);
    CHECK(back.code == 200 && frame_eq(back.body, resp.body.data));
    received_close(&r);
out:
    if (req)
        zmq_close(req);
    if (router)
        zmq_close(router);
}

static int publish(void *pub, rwkvp_pub_kind kind, const char *channel, uint64_t seq, const char *body)
{
    rwkvp_pub p = {0};
    p.kind = kind;
    p.channel = fr(channel);
    p.producer = fr("web-1");
    p.seq = seq;
    p.tokens_seen = 1243;
    p.index = 0;
    p.code = 500;
    p.body = fr(body);
    rwkvp_msg m;
    if (rwkvp_pub_encode(&p, &m, NULL) != 0)
        return -EINVAL;
    return send_frames(pub, NULL, 0, m.frames, m.n);
}

static void test_publish(void *ctx)
{
    char ep[256];
    void *pub = bind_any(ctx, ZMQ_XPUB, ep, sizeof ep);
    void *sub = pub ? connect_to(ctx, ZMQ_SUB, ep) : NULL;
    CHECK(pub && sub);
    if (!pub || !sub)
        goto out;
    CHECK(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "app/", 4) == 0);
    /* The XPUB sees the subscription as a message: \x01 + prefix. */
    received r;
    CHECK(recv_frames(pub, &r, TIMEOUT_MS) == 0);
    CHECK(r.n == 1 && r.f[0].len == 5 && memcmp(r.f[0].data, "\x01" "app/", 5) == 0);
    received_close(&r);
    /* Once the subscription is in, nothing is lost on loopback; order is kept. */
    CHECK(publish(pub, RWKVP_PUB_CLASS, "apple", 1, "{\"top\":\"no\"}") == 0);
    CHECK(publish(pub, RWKVP_PUB_TEXT, "app/db", 44, " Fine") == 0);
    CHECK(publish(pub, RWKVP_PUB_CLASS, "other/app/x", 2, "{\"top\":\"no\"}") == 0);
    CHECK(publish(pub, RWKVP_PUB_END, "app/nginx/access", 44, "{\"reason\":\"eos\"}") == 0);
    CHECK(publish(pub, RWKVP_PUB_ERROR, "app/db", 45, "generation failed") == 0);
    const struct {
        rwkvp_pub_kind kind;
        const char *channel;
        uint64_t seq;
    } want[] = {
        {RWKVP_PUB_TEXT, "app/db", 44},
        {RWKVP_PUB_END, "app/nginx/access", 44},
        {RWKVP_PUB_ERROR, "app/db", 45},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        int rc = recv_frames(sub, &r, TIMEOUT_MS);
        CHECKF(rc == 0, "sub receive %zu: %d", i, rc);
        if (rc)
            break;
        rwkvp_pub p;
        rwkvp_error err;
        CHECK(rwkvp_pub_decode(r.f, r.n, NULL, &p, &err) == 0);
        CHECKF(p.kind == want[i].kind && frame_eq(p.channel, want[i].channel) && p.seq == want[i].seq,
               "publication %zu: kind %d seq %llu", i, p.kind, (unsigned long long)p.seq);
        CHECK(p.tokens_seen == 1243 && frame_eq(p.producer, "web-1"));
        if (p.kind == RWKVP_PUB_ERROR)
            CHECK(p.code == 500);
        received_close(&r);
    }
    CHECK(recv_frames(sub, &r, 100) == -ETIMEDOUT);
out:
    if (sub)
        zmq_close(sub);
    if (pub)
        zmq_close(pub);
}

int main(void)
{
    void *ctx = zmq_ctx_new();
    if (!ctx) {
        fprintf(stderr, "zmq_ctx_new failed\n");
        return 1;
    }
    test_ingest(ctx);
    test_control(ctx);
    test_publish(ctx);
    zmq_ctx_term(ctx);
    return test_finish("test_proto_zmq");
}
