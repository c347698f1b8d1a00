/* fuzz_proto — libFuzzer target for the RWKV1 codec (proto/rwkvp.c, proto/rwkvp_json.c).
 *
 * Input layout: octet 0 picks the limits (bit 0: tiny limits so the 413 paths are reached);
 * the rest is a list of frames, each a length octet L followed by L octets, where L = 255
 * means a 2-octet big-endian length follows; a length past the end takes what is left. At
 * most 12 frames.
 *
 * Every decoder runs on the frames (and on them minus a leading envelope). Invariants, any
 * violation aborts: a failure has a documented code and a non-empty printable text and can
 * always be turned into an ERROR reply; a success re-encodes, and the re-encoded message
 * decodes to the same fields. GEN parameters that parse re-encode and parse back equal.
 */
#include "rwkvp.h"
#ifdef RWKVP_HAVE_JSON
#include "rwkvp_json.h"
#endif

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_IN_FRAMES 12

static void require(bool ok)
{
    if (!ok)
        abort();
}

static bool same(rwkvp_frame a, rwkvp_frame b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static void check_failure(int rc, const rwkvp_error *e, bool ingest_side)
{
    require(rc == -EBADMSG);
    require(rwkvp_code_name(e->code) != NULL && e->code >= 400);
    require(e->text[0] != 0);
    for (const char *c = e->text; *c; c++)
        require(*c >= 0x20 && *c < 0x7F);
    if (ingest_side) {
        rwkvp_msg m;
        require(rwkvp_reply_encode_error(e, &m) == 0);
        rwkvp_ctl_response r = {e->code, {e->text, strlen(e->text)}, {"", 0}};
        require(rwkvp_ctl_response_encode(&r, &m, NULL) == 0);
    }
}

static void run_ingest(const rwkvp_frame *f, size_t n, const rwkvp_limits *lim)
{
    rwkvp_ingest a, b;
    rwkvp_error e;
    rwkvp_msg m;
    int rc = rwkvp_ingest_decode(f, n, lim, &a, &e);
    if (rc) {
        check_failure(rc, &e, true);
        return;
    }
    require(rwkvp_ingest_encode(&a, &m, &e) == 0);
    require(m.n == n);
    require(rwkvp_ingest_decode(m.frames, m.n, lim, &b, &e) == 0);
    require(a.op == b.op && a.seq == b.seq && a.n_tokens == b.n_tokens);
    require(same(a.channel, b.channel) && same(a.producer, b.producer) && same(a.payload, b.payload));
    for (size_t i = 0; i < n; i++)
        require(same(f[i], m.frames[i]));
    if (a.op == RWKVP_OP_TOKENS) {
        const uint8_t *t = a.payload.data;
        for (size_t i = 0; i < a.n_tokens; i++)
            require(rwkvp_tokens_get(&a.payload, i) ==
                    ((uint32_t)t[4 * i] | (uint32_t)t[4 * i + 1] << 8 |
                     (uint32_t)t[4 * i + 2] << 16 | (uint32_t)t[4 * i + 3] << 24));
    }
#ifdef RWKVP_HAVE_JSON
    if (a.op == RWKVP_OP_GEN) {
        rwkvp_gen_params p, q;
        rc = rwkvp_gen_params_parse(a.payload.data, a.payload.len, &p, &e);
        if (rc == -ENOMEM)
            return;
        if (rc) {
            check_failure(rc, &e, false);
            return;
        }
        static char buf[1 << 16]; /* 16 stop strings x 256 octets x 6 ("\\u001f") fit */
        size_t need = 0;
        require(rwkvp_gen_params_encode(&p, buf, sizeof buf, &need) == 0);
        require(rwkvp_gen_params_parse(buf, need, &q, &e) == 0);
        require(p.present == q.present && p.n_stop == q.n_stop);
    }
#endif
}

static void run_reply(const rwkvp_frame *f, size_t n, const rwkvp_limits *lim)
{
    rwkvp_reply a, b;
    rwkvp_error e;
    rwkvp_msg m;
    int rc = rwkvp_reply_decode(f, n, lim, &a, &e);
    if (rc) {
        check_failure(rc, &e, false);
        return;
    }
    require(rwkvp_reply_encode(&a, &m, &e) == 0);
    for (size_t i = 0; i < n; i++)
        require(same(f[i], m.frames[i]));
    require(rwkvp_reply_decode(m.frames, m.n, lim, &b, &e) == 0);
    require(a.kind == b.kind && a.has_seq == b.has_seq && a.seq == b.seq && a.acked == b.acked &&
            a.credit == b.credit && a.code == b.code && same(a.text, b.text));
}

static void run_pub(const rwkvp_frame *f, size_t n, const rwkvp_limits *lim)
{
    rwkvp_pub a, b;
    rwkvp_error e;
    rwkvp_msg m;
    int rc = rwkvp_pub_decode(f, n, lim, &a, &e);
    if (rc) {
        check_failure(rc, &e, false);
        return;
    }
    require(rwkvp_pub_encode(&a, &m, &e) == 0);
    for (size_t i = 0; i < n; i++)
        require(same(f[i], m.frames[i]));
    require(rwkvp_pub_decode(m.frames, m.n, lim, &b, &e) == 0);
    require(a.kind == b.kind && a.seq == b.seq && a.tokens_seen == b.tokens_seen &&
            a.index == b.index && a.code == b.code && same(a.body, b.body) &&
            same(a.channel, b.channel) && same(a.producer, b.producer));
#ifdef RWKVP_HAVE_JSON
    /* Text the codec calls UTF-8, jansson must accept too (a piece becomes END's text). */
    if (a.kind == RWKVP_PUB_TEXT) {
        static char buf[1 << 18];
        size_t need = 0;
        rwkvp_end end = {RWKVP_END_MAX_TOKENS, a.index, a.body, {NULL, 0}, 0, false};
        rc = rwkvp_end_encode(&end, buf, sizeof buf, &need);
        require(rc == 0 || rc == -ENOMEM || (rc == -ENOBUFS && need > sizeof buf) ||
                (rc == -EINVAL && a.index > RWKVP_SEED_MAX));
    }
#endif
}

static void run_ctl(const rwkvp_frame *f, size_t n, const rwkvp_limits *lim)
{
    rwkvp_ctl_request a, b;
    rwkvp_ctl_response r, s;
    rwkvp_error e;
    rwkvp_msg m;
    int rc = rwkvp_ctl_request_decode(f, n, lim, &a, &e);
    if (rc) {
        check_failure(rc, &e, true);
    } else {
        require(rwkvp_ctl_request_encode(&a, &m, &e) == 0);
        require(rwkvp_ctl_request_decode(m.frames, m.n, lim, &b, &e) == 0);
        require(a.cmd == b.cmd && same(a.channel, b.channel) && same(a.prefix, b.prefix) &&
                same(a.after, b.after));
    }
    rc = rwkvp_ctl_response_decode(f, n, lim, &r, &e);
    if (rc) {
        check_failure(rc, &e, false);
        return;
    }
    require(rwkvp_ctl_response_encode(&r, &m, &e) == 0);
    for (size_t i = 0; i < n; i++)
        require(same(f[i], m.frames[i]));
    require(rwkvp_ctl_response_decode(m.frames, m.n, lim, &s, &e) == 0);
    require(r.code == s.code && same(r.body, s.body));
}

static void run_all(const rwkvp_frame *f, size_t n, const rwkvp_limits *lim)
{
    run_ingest(f, n, lim);
    run_reply(f, n, lim);
    run_pub(f, n, lim);
    run_ctl(f, n, lim);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    rwkvp_limits lim;
    rwkvp_limits_default(&lim);
    if (data[0] & 1) {
        lim.max_message_bytes = 64;
        lim.max_tokens = 2;
    }
    rwkvp_frame f[MAX_IN_FRAMES];
    size_t n = 0, pos = 1;
    while (pos < size && n < MAX_IN_FRAMES) {
        size_t len = data[pos++];
        if (len == 255) {
            len = 0;
            for (int k = 0; k < 2 && pos < size; k++)
                len = len << 8 | data[pos++];
        }
        if (len > size - pos)
            len = size - pos;
        f[n].data = data + pos;
        f[n].len = len;
        n++;
        pos += len;
    }
    run_all(f, n, &lim);
    size_t env = 0;
    if (rwkvp_envelope_split(f, n, &env) == 0)
        run_all(f + env, n - env, &lim);

    /* Validators over the whole input; they must agree with each other. */
    size_t bad = 0;
    bool utf8 = rwkvp_utf8_valid(data, size, &bad);
    require(utf8 || bad < size);
    if (!utf8)
        require(rwkvp_utf8_valid(data, bad, NULL));
    uint64_t v;
    if (rwkvp_u64_parse(data, size, &v) == 0) {
        char buf[RWKVP_U64_DIGITS + 1];
        size_t len = rwkvp_u64_format(v, buf);
        require(len == size && memcmp(buf, data, size) == 0);
    }
    if (rwkvp_channel_check(data, size, &bad) == 0)
        require(rwkvp_utf8_valid(data, size, NULL));
#ifdef RWKVP_HAVE_JSON
    rwkvp_gen_params p;
    rwkvp_error e;
    int rc = rwkvp_gen_params_parse(data, size, &p, &e);
    if (rc && rc != -ENOMEM)
        check_failure(rc, &e, false);
#endif
    return 0;
}
