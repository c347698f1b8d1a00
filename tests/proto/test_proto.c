/* test_proto — the RWKV1 framing codec (proto/rwkvp.c) without sockets.
 *
 * Round-trips every message kind; every class of malformed message gives the code, frame
 * and field PROTOCOL.md §12 documents, with the recoverable channel/producer/seq; limits at
 * and one past their boundary; validators on tables of good and bad input; and a byte-flip
 * sweep over valid messages checking that any result is either a clean decode or a
 * documented code with a printable-ASCII text.
 */
#include "rwkvp.h"
#include "testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static rwkvp_frame fr(const char *s)
{
    rwkvp_frame f = {s, strlen(s)};
    return f;
}

static rwkvp_frame frn(const void *s, size_t len)
{
    rwkvp_frame f = {s, len};
    return f;
}

static bool frame_eq(rwkvp_frame f, const char *s)
{
    return f.len == strlen(s) && (f.len == 0 || memcmp(f.data, s, f.len) == 0);
}

static bool printable(const char *s)
{
    for (; *s; s++)
        if (*s < 0x20 || *s > 0x7E)
            return false;
    return true;
}

/* ---- validators -------------------------------------------------------------------- */

static void test_codes(void)
{
    CHECK(strcmp(rwkvp_code_name(400), "malformed") == 0);
    CHECK(strcmp(rwkvp_code_name(429), "no credit") == 0);
    CHECK(strcmp(rwkvp_code_name(200), "ok") == 0);
    CHECK(rwkvp_code_name(418) == NULL);
    CHECK(rwkvp_code_retry(429) == RWKVP_RETRY_AFTER_CREDIT);
    CHECK(rwkvp_code_retry(425) == RWKVP_RETRY_AFTER_RESEND);
    CHECK(rwkvp_code_retry(503) == RWKVP_RETRY_BACKOFF);
    CHECK(rwkvp_code_retry(422) == RWKVP_RETRY_NO);
    CHECK(rwkvp_code_retry(999) == RWKVP_RETRY_NO);
    const int pausing[] = {409, 423, 429, 500, 503, 507};
    const int other[] = {200, 400, 403, 404, 405, 413, 415, 422, 425, 501, 505};
    for (size_t i = 0; i < sizeof pausing / sizeof *pausing; i++)
        CHECKF(rwkvp_code_pauses(pausing[i]), "%d", pausing[i]);
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        CHECKF(!rwkvp_code_pauses(other[i]), "%d", other[i]);
        CHECKF(rwkvp_code_name(other[i]) != NULL, "%d", other[i]);
    }
}

static void test_utf8(void)
{
    static const struct {
        const char *s;
        size_t len;
        bool ok;
        size_t bad;
    } cases[] = {
        {"", 0, true, 0},
        {"plain ascii", 11, true, 0},
        {"a\0b", 3, true, 0},                       /* U+0000 is allowed */
        {"\xC2\x80", 2, true, 0},                   /* U+0080 */
        {"\xDF\xBF", 2, true, 0},                   /* U+07FF */
        {"\xE0\xA0\x80", 3, true, 0},               /* U+0800 */
        {"\xED\x9F\xBF", 3, true, 0},               /* U+D7FF */
        {"\xEE\x80\x80", 3, true, 0},               /* U+E000 */
        {"\xEF\xBF\xBF", 3, true, 0},               /* U+FFFF */
        {"\xF0\x90\x80\x80", 4, true, 0},           /* U+10000 */
        {"\xF4\x8F\xBF\xBF", 4, true, 0},           /* U+10FFFF */
        {"ab\xC3\xA9\xFF" "c", 6, false, 4},        /* PROTOCOL.md §16.2 */
        {"\x80", 1, false, 0},                      /* lone continuation */
        {"\xC0\x80", 2, false, 0},                  /* overlong NUL */
        {"\xC1\xBF", 2, false, 0},                  /* overlong */
        {"\xE0\x9F\xBF", 3, false, 0},              /* overlong 3-octet */
        {"\xF0\x8F\xBF\xBF", 4, false, 0},          /* overlong 4-octet */
        {"x\xED\xA0\x80", 4, false, 1},             /* surrogate U+D800 */
        {"\xED\xBF\xBF", 3, false, 0},              /* surrogate U+DFFF */
        {"\xF4\x90\x80\x80", 4, false, 0},          /* U+110000 */
        {"\xF5\x80\x80\x80", 4, false, 0},
        {"\xFE", 1, false, 0},
        {"ok\xC3", 3, false, 2},                    /* truncated at the end */
        {"ok\xE2\x82", 4, false, 2},
        {"\xE2\x82x", 3, false, 0},                 /* bad continuation */
        {"\xF0\x9F\x98", 3, false, 0},
        {"\xF0\x9F\x98\x80\xF0\x9F\x98", 7, false, 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t bad = 12345;
        bool ok = rwkvp_utf8_valid(cases[i].s, cases[i].len, &bad);
        CHECKF(ok == cases[i].ok, "case %zu", i);
        if (!cases[i].ok)
            CHECKF(bad == cases[i].bad, "case %zu: bad %zu want %zu", i, bad, cases[i].bad);
    }
    CHECK(rwkvp_utf8_valid(NULL, 0, NULL));
    CHECK(!rwkvp_utf8_valid(NULL, 3, NULL));
    CHECK(!rwkvp_utf8_valid("\xFF", 1, NULL)); /* NULL bad_offset is allowed */
    /* Every code point round-trips through a hand encoder and validates. */
    int fails = 0;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp += (cp < 0x11000 ? 1 : 97)) {
        unsigned char b[4];
        size_t n;
        if (cp < 0x80) {
            b[0] = (unsigned char)cp;
            n = 1;
        } else if (cp < 0x800) {
            b[0] = (unsigned char)(0xC0 | cp >> 6);
            b[1] = (unsigned char)(0x80 | (cp & 0x3F));
            n = 2;
        } else if (cp < 0x10000) {
            b[0] = (unsigned char)(0xE0 | cp >> 12);
            b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            b[2] = (unsigned char)(0x80 | (cp & 0x3F));
            n = 3;
        } else {
            b[0] = (unsigned char)(0xF0 | cp >> 18);
            b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
            b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            b[3] = (unsigned char)(0x80 | (cp & 0x3F));
            n = 4;
        }
        bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
        if (rwkvp_utf8_valid(b, n, NULL) == surrogate)
            fails++;
    }
    CHECKF(fails == 0, "%d code points misjudged", fails);
}

static void test_names(void)
{
    char buf[200];
    size_t bad = 0;
    memset(buf, 'a', sizeof buf);
    CHECK(rwkvp_channel_check(buf, 1, NULL) == 0);
    CHECK(rwkvp_channel_check(buf, 128, NULL) == 0);
    CHECK(rwkvp_channel_check(buf, 129, NULL) == -ENAMETOOLONG);
    CHECK(rwkvp_name_check(buf, 64, NULL) == 0);
    CHECK(rwkvp_name_check(buf, 65, NULL) == -ENAMETOOLONG);
    CHECK(rwkvp_channel_check(buf, 0, &bad) == -EINVAL && bad == 0);
    CHECK(rwkvp_channel_check(NULL, 0, NULL) == -EINVAL);
    CHECK(rwkvp_channel_check("app/nginx.access:v2-x_y", 23, NULL) == 0);
    CHECK(rwkvp_channel_check("_x", 2, NULL) == 0);
    CHECK(rwkvp_channel_check("9", 1, NULL) == 0);
    const char *bad_first[] = {".a", "-a", "/a", ":a", "$SYS"};
    for (size_t i = 0; i < sizeof bad_first / sizeof *bad_first; i++) {
        bad = 99;
        CHECKF(rwkvp_channel_check(bad_first[i], strlen(bad_first[i]), &bad) == -EINVAL && bad == 0,
               "%s", bad_first[i]);
    }
    CHECK(rwkvp_channel_check("a b", 3, &bad) == -EINVAL && bad == 1);
    CHECK(rwkvp_channel_check("ab\xC3\xA9", 4, &bad) == -EINVAL && bad == 2);
    CHECK(rwkvp_channel_check("ab\0", 3, &bad) == -EINVAL && bad == 2);
    /* Every octet in second position: allowed exactly for the documented set. */
    for (int c = 0; c < 256; c++) {
        char s[2] = {'a', (char)c};
        bool want = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.' || c == ':' || c == '/';
        CHECKF((rwkvp_channel_check(s, 2, NULL) == 0) == want, "octet 0x%02X", c);
        CHECKF((rwkvp_name_check(s, 2, NULL) == 0) == want, "octet 0x%02X", c);
    }
}

static void test_u64(void)
{
    static const struct {
        const char *s;
        int rc;
        uint64_t v;
    } cases[] = {
        {"0", 0, 0},
        {"1", 0, 1},
        {"41", 0, 41},
        {"18446744073709551615", 0, UINT64_MAX},
        {"18446744073709551616", -ERANGE, 0},
        {"99999999999999999999", -ERANGE, 0},
        {"100000000000000000000", -EINVAL, 0}, /* 21 digits */
        {"", -EINVAL, 0},
        {"00", -EINVAL, 0},
        {"007", -EINVAL, 0},
        {"+1", -EINVAL, 0},
        {"-1", -EINVAL, 0},
        {" 1", -EINVAL, 0},
        {"1 ", -EINVAL, 0},
        {"1a", -EINVAL, 0},
        {"0x10", -EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint64_t v = 777;
        int rc = rwkvp_u64_parse(cases[i].s, strlen(cases[i].s), &v);
        CHECKF(rc == cases[i].rc, "\"%s\": rc %d", cases[i].s, rc);
        if (rc == 0)
            CHECKF(v == cases[i].v, "\"%s\"", cases[i].s);
        else
            CHECKF(v == 777, "\"%s\": output written on failure", cases[i].s);
    }
    CHECK(rwkvp_u64_parse("12\0", 3, NULL) == -EINVAL);
    uint64_t vals[] = {0, 1, 9, 10, 99, 100, 4294967295u, 4294967296u, UINT64_MAX - 1, UINT64_MAX};
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        char buf[RWKVP_U64_DIGITS + 1];
        size_t n = rwkvp_u64_format(vals[i], buf);
        uint64_t back = 0;
        CHECK(n == strlen(buf));
        CHECK(rwkvp_u64_parse(buf, n, &back) == 0 && back == vals[i]);
    }
    char buf[RWKVP_U64_DIGITS + 1];
    CHECK(rwkvp_u64_format(UINT64_MAX, buf) == 20 && strcmp(buf, "18446744073709551615") == 0);
}

static void test_tokens(void)
{
    uint32_t ids[] = {34, 105, 0, 65535, 0xDEADBEEF};
    unsigned char buf[20];
    CHECK(rwkvp_tokens_pack(ids, 5, NULL, 0) == 20);
    CHECK(rwkvp_tokens_pack(ids, 5, buf, 19) == 20);
    CHECK(rwkvp_tokens_pack(ids, 5, buf, sizeof buf) == 20);
    CHECK(buf[0] == 0x22 && buf[1] == 0 && buf[4] == 0x69 && buf[16] == 0xEF && buf[19] == 0xDE);
    rwkvp_frame f = frn(buf, 20);
    for (size_t i = 0; i < 5; i++)
        CHECK(rwkvp_tokens_get(&f, i) == ids[i]);
    CHECK(rwkvp_tokens_get(&f, 5) == 0);
    CHECK(rwkvp_tokens_get(NULL, 0) == 0);
}

static void test_envelope(void)
{
    size_t env = 0;
    rwkvp_frame dealer[] = {fr("id"), fr("RWKV1"), fr("TEXT")};
    rwkvp_frame req[] = {fr("id"), frn("", 0), fr("RWKV1")};
    rwkvp_frame nothing[] = {fr("id"), frn("", 0)};
    rwkvp_frame noid[] = {frn("", 0), fr("RWKV1")};
    CHECK(rwkvp_envelope_split(dealer, 3, &env) == 0 && env == 1);
    CHECK(rwkvp_envelope_split(req, 3, &env) == 0 && env == 2);
    CHECK(rwkvp_envelope_split(nothing, 2, &env) == -EBADMSG);
    CHECK(rwkvp_envelope_split(dealer, 1, &env) == -EBADMSG);
    CHECK(rwkvp_envelope_split(noid, 2, &env) == -EBADMSG);
    CHECK(rwkvp_envelope_split(NULL, 0, &env) == -EBADMSG);
}

/* ---- ingest ------------------------------------------------------------------------ */

static void test_ingest_roundtrip(void)
{
    uint32_t ids[] = {34, 105};
    unsigned char tok[8];
    rwkvp_tokens_pack(ids, 2, tok, sizeof tok);
    const char *gen = "{\"max_tokens\":32,\"temperature\":0.7,\"stop\":[\"\\n\"]}";
    struct {
        rwkvp_op op;
        rwkvp_frame payload;
        uint64_t seq;
        size_t frames;
    } cases[] = {
        {RWKVP_OP_TEXT, fr("GET /index.html 200 512b"), 41, 6},
        {RWKVP_OP_TEXT, frn("", 0), 1, 6},
        {RWKVP_OP_TEXT, frn("nul\0inside \xE2\x82\xAC", 15), 2, 6},
        {RWKVP_OP_TOKENS, frn(tok, 8), 43, 6},
        {RWKVP_OP_RESET, frn(NULL, 0), UINT64_MAX, 5},
        {RWKVP_OP_TASK, fr("severity"), 7, 6},
        {RWKVP_OP_GEN, fr(gen), 44, 6},
        {RWKVP_OP_GEN, frn("", 0), 45, 6},
        {RWKVP_OP_CANCEL, frn(NULL, 0), 46, 5},
        {RWKVP_OP_CLOSE, frn(NULL, 0), 47, 5},
        {RWKVP_OP_SYNC, frn(NULL, 0), 0, 5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rwkvp_ingest in = {0}, out;
        in.op = cases[i].op;
        in.channel = fr("app/nginx");
        in.producer = fr("web-1");
        in.seq = cases[i].seq;
        in.payload = cases[i].payload;
        rwkvp_msg m;
        rwkvp_error err;
        int rc = rwkvp_ingest_encode(&in, &m, &err);
        CHECKF(rc == 0, "case %zu: %s", i, err.text);
        if (rc)
            continue;
        CHECK(m.n == cases[i].frames);
        CHECK(frame_eq(m.frames[0], "RWKV1"));
        CHECK(frame_eq(m.frames[1], rwkvp_op_name(in.op)));
        CHECK(frame_eq(m.frames[2], "app/nginx"));
        CHECK(frame_eq(m.frames[3], "web-1"));
        memset(&out, 0xA5, sizeof out);
        CHECK(rwkvp_ingest_decode(m.frames, m.n, NULL, &out, &err) == 0);
        CHECK(out.op == in.op);
        CHECK(out.seq == in.seq);
        CHECK(out.channel.data == in.channel.data && out.channel.len == in.channel.len);
        CHECK(out.producer.data == in.producer.data && out.producer.len == in.producer.len);
        CHECK(out.payload.len == in.payload.len);
        CHECK(in.payload.len == 0 || out.payload.data == in.payload.data);
        if (in.op == RWKVP_OP_TOKENS) {
            CHECK(out.n_tokens == 2);
            CHECK(rwkvp_tokens_get(&out.payload, 0) == 34 && rwkvp_tokens_get(&out.payload, 1) == 105);
        }
    }
    /* Exact frames of PROTOCOL.md §16.1. */
    rwkvp_ingest in = {RWKVP_OP_TEXT, fr("app/nginx"), fr("web-1"), 41, fr("GET /index.html 200 512b"), 0};
    rwkvp_msg m;
    CHECK(rwkvp_ingest_encode(&in, &m, NULL) == 0);
    CHECK(m.n == 6 && frame_eq(m.frames[4], "41") && m.frames[5].len == 24);
    CHECK(rwkvp_op_queued(RWKVP_OP_TEXT) && rwkvp_op_queued(RWKVP_OP_CLOSE) &&
          rwkvp_op_queued(RWKVP_OP_GEN) && !rwkvp_op_queued(RWKVP_OP_CANCEL) &&
          !rwkvp_op_queued(RWKVP_OP_SYNC) && !rwkvp_op_queued((rwkvp_op)0));
    CHECK(rwkvp_op_name((rwkvp_op)0) == NULL && rwkvp_op_name((rwkvp_op)9) == NULL);
}

struct expect {
    int code;
    int frame;
    const char *field;
    const char *channel;  /* recovered, or NULL for none */
    const char *producer; /* recovered, or NULL */
    int has_seq;
    uint64_t seq;
};

static void check_err(const char *what, int rc, const rwkvp_error *e, struct expect x)
{
    CHECKF(rc == -EBADMSG, "%s: rc %d", what, rc);
    CHECKF(e->code == x.code, "%s: code %d want %d (%s)", what, e->code, x.code, e->text);
    CHECKF(e->frame == x.frame, "%s: frame %d want %d (%s)", what, e->frame, x.frame, e->text);
    CHECKF(e->field && strcmp(e->field, x.field) == 0, "%s: field %s want %s", what,
           e->field ? e->field : "(null)", x.field);
    CHECKF(printable(e->text) && strlen(e->text) > 0, "%s: text not printable", what);
    if (x.frame >= 0) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "frame %d (%s): ", x.frame, x.field);
        CHECKF(strncmp(e->text, prefix, strlen(prefix)) == 0, "%s: text \"%s\"", what, e->text);
    }
    if (x.channel)
        CHECKF(frame_eq(e->channel, x.channel), "%s: channel not recovered", what);
    else
        CHECKF(e->channel.len == 0, "%s: channel recovered", what);
    if (x.producer)
        CHECKF(frame_eq(e->producer, x.producer), "%s: producer not recovered", what);
    else
        CHECKF(e->producer.len == 0, "%s: producer recovered", what);
    CHECKF(e->has_seq == (x.has_seq != 0), "%s: has_seq %d", what, e->has_seq);
    if (x.has_seq)
        CHECKF(e->seq == x.seq, "%s: seq %llu", what, (unsigned long long)e->seq);
}

#define MAXF 10
struct ingest_case {
    const char *what;
    const char *f[MAXF];
    struct expect x;
};

static void test_ingest_errors(void)
{
    const char *CH = "app/nginx", *PR = "web-1";
    const struct ingest_case cases[] = {
        {"no frames", {NULL}, {400, -1, "message", NULL, NULL, 0, 0}},
        {"other protocol", {"HELLO", "TEXT", "a", "p", "1", "x"}, {400, 0, "signature", NULL, NULL, 0, 0}},
        {"bare RWKV", {"RWKV", "TEXT", "a", "p", "1", "x"}, {400, 0, "signature", NULL, NULL, 0, 0}},
        {"RWKV01", {"RWKV01", "TEXT", "a", "p", "1", "x"}, {400, 0, "signature", NULL, NULL, 0, 0}},
        {"rwkv1", {"rwkv1", "TEXT", "a", "p", "1", "x"}, {400, 0, "signature", NULL, NULL, 0, 0}},
        {"RWKV2", {"RWKV2", "TEXT", "a", "p", "1", "x"}, {505, 0, "signature", NULL, NULL, 0, 0}},
        {"RWKV10", {"RWKV10", "TEXT", "a", "p", "1", "x"}, {505, 0, "signature", NULL, NULL, 0, 0}},
        {"signature only", {"RWKV1"}, {400, -1, "message", NULL, NULL, 0, 0}},
        {"empty op", {"RWKV1", "", CH, PR, "1", "x"}, {400, 1, "op", CH, PR, 1, 1}},
        {"lowercase op", {"RWKV1", "text", CH, PR, "3", "x"}, {405, 1, "op", CH, PR, 1, 3}},
        {"unknown op", {"RWKV1", "PUBLISH", CH, PR, "3", "x"}, {405, 1, "op", CH, PR, 1, 3}},
        {"TEXT short", {"RWKV1", "TEXT", CH, PR, "4"}, {400, -1, "message", CH, PR, 1, 4}},
        {"TEXT long", {"RWKV1", "TEXT", CH, PR, "4", "x", "y"}, {400, -1, "message", CH, PR, 1, 4}},
        {"RESET with payload", {"RWKV1", "RESET", CH, PR, "4", ""}, {400, -1, "message", CH, PR, 1, 4}},
        {"SYNC short", {"RWKV1", "SYNC", CH, PR}, {400, -1, "message", CH, PR, 0, 0}},
        {"empty channel", {"RWKV1", "TEXT", "", PR, "5", "x"}, {422, 2, "channel", NULL, PR, 1, 5}},
        {"channel space", {"RWKV1", "TEXT", "bad name", PR, "007", "x"}, {422, 2, "channel", NULL, PR, 0, 0}},
        {"channel dot first", {"RWKV1", "TEXT", ".hidden", PR, "5", "x"}, {422, 2, "channel", NULL, PR, 1, 5}},
        {"channel $", {"RWKV1", "TEXT", "$SYS", PR, "5", "x"}, {422, 2, "channel", NULL, PR, 1, 5}},
        {"empty producer", {"RWKV1", "TEXT", CH, "", "6", "x"}, {422, 3, "producer", CH, NULL, 1, 6}},
        {"producer utf8", {"RWKV1", "TEXT", CH, "w\xC3\xA9", "6", "x"}, {422, 3, "producer", CH, NULL, 1, 6}},
        {"empty seq", {"RWKV1", "TEXT", CH, PR, "", "x"}, {400, 4, "seq", CH, PR, 0, 0}},
        {"seq leading zero", {"RWKV1", "TEXT", CH, PR, "07", "x"}, {400, 4, "seq", CH, PR, 0, 0}},
        {"seq sign", {"RWKV1", "TEXT", CH, PR, "+7", "x"}, {400, 4, "seq", CH, PR, 0, 0}},
        {"seq binary", {"RWKV1", "TEXT", CH, PR, "\x07", "x"}, {400, 4, "seq", CH, PR, 0, 0}},
        {"seq overflow", {"RWKV1", "TEXT", CH, PR, "18446744073709551616", "x"}, {400, 4, "seq", CH, PR, 0, 0}},
        {"seq zero", {"RWKV1", "TEXT", CH, PR, "0", "x"}, {422, 4, "seq", CH, PR, 1, 0}},
        {"SYNC seq", {"RWKV1", "SYNC", CH, PR, "8"}, {422, 4, "seq", CH, PR, 1, 8}},
        {"bad UTF-8", {"RWKV1", "TEXT", CH, PR, "42", "ab\xC3\xA9\xFF" "c"}, {415, 5, "text", CH, PR, 1, 42}},
        {"no tokens", {"RWKV1", "TOKENS", CH, PR, "9", ""}, {400, 5, "tokens", CH, PR, 1, 9}},
        {"token bytes", {"RWKV1", "TOKENS", CH, PR, "9", "abcde"}, {400, 5, "tokens", CH, PR, 1, 9}},
        {"profile", {"RWKV1", "TASK", CH, PR, "10", "no spaces"}, {422, 5, "profile", CH, PR, 1, 10}},
        {"empty profile", {"RWKV1", "TASK", CH, PR, "10", ""}, {422, 5, "profile", CH, PR, 1, 10}},
        {"GEN UTF-8", {"RWKV1", "GEN", CH, PR, "11", "{\"stop\":[\"\xC0\x80\"]}"}, {415, 5, "params", CH, PR, 1, 11}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rwkvp_frame f[MAXF];
        size_t n = 0;
        while (n < MAXF && cases[i].f[n]) {
            f[n] = fr(cases[i].f[n]);
            n++;
        }
        rwkvp_ingest out;
        memset(&out, 0x5A, sizeof out);
        rwkvp_ingest before = out;
        rwkvp_error err;
        int rc = rwkvp_ingest_decode(f, n, NULL, &out, &err);
        check_err(cases[i].what, rc, &err, cases[i].x);
        CHECKF(memcmp(&out, &before, sizeof out) == 0, "%s: output written on failure", cases[i].what);
    }
    /* The exact text of the §16.2 example. */
    rwkvp_frame f[6] = {fr("RWKV1"), fr("TEXT"), fr("app/nginx"), fr("web-1"), fr("42"),
                        frn("ab\xC3\xA9\xFF" "c", 6)};
    rwkvp_ingest out;
    rwkvp_error err;
    CHECK(rwkvp_ingest_decode(f, 6, NULL, &out, &err) == -EBADMSG);
    CHECKF(strcmp(err.text, "frame 5 (text): invalid UTF-8 at octet 4") == 0, "%s", err.text);
    /* Raw octets of the message never reach the text. */
    f[1] = fr("\x1B[2J\xFFX");
    CHECK(rwkvp_ingest_decode(f, 6, NULL, &out, &err) == -EBADMSG && err.code == 405);
    CHECKF(strstr(err.text, "\\x1B[2J\\xFFX") != NULL, "%s", err.text);
    /* NULL arguments. */
    CHECK(rwkvp_ingest_decode(f, 6, NULL, NULL, &err) == -EINVAL);
    CHECK(rwkvp_ingest_decode(NULL, 3, NULL, &out, &err) == -EINVAL);
    f[5].data = NULL;
    CHECK(rwkvp_ingest_decode(f, 6, NULL, &out, &err) == -EINVAL);
    CHECK(rwkvp_ingest_decode(f, 5, NULL, &out, NULL) == -EBADMSG); /* NULL err is allowed */
}

static void test_ingest_limits(void)
{
    rwkvp_limits lim;
    rwkvp_limits_default(&lim);
    CHECK(lim.max_message_bytes == 1048576 && lim.max_tokens == 65536);
    /* Message size: exactly the limit passes, one more octet is 413 with seq recovered. */
    static char text[2000];
    memset(text, 'x', sizeof text);
    lim.max_message_bytes = 5 + 4 + 9 + 5 + 2 + 1000;
    rwkvp_frame f[6] = {fr("RWKV1"), fr("TEXT"), fr("app/nginx"), fr("web-1"), fr("12"), frn(text, 1000)};
    rwkvp_ingest out;
    rwkvp_error err;
    CHECK(rwkvp_ingest_decode(f, 6, &lim, &out, &err) == 0);
    f[5].len = 1001;
    check_err("size", rwkvp_ingest_decode(f, 6, &lim, &out, &err), &err,
              (struct expect){413, -1, "message", "app/nginx", "web-1", 1, 12});
    CHECK(strstr(err.text, "1026 octets exceed the limit of 1025") != NULL);
    /* Default limit: 1 MiB exactly passes. */
    size_t big = RWKVP_DEFAULT_MAX_MESSAGE_BYTES;
    char *huge = malloc(big);
    CHECK(huge != NULL);
    if (huge) {
        memset(huge, 'y', big);
        f[5] = frn(huge, big - (5 + 4 + 9 + 5 + 2));
        CHECK(rwkvp_ingest_decode(f, 6, NULL, &out, &err) == 0);
        f[5].len++;
        CHECK(rwkvp_ingest_decode(f, 6, NULL, &out, &err) == -EBADMSG && err.code == 413);
        free(huge);
    }
    /* Token count: max_tokens passes, one more is 413 on frame 5. */
    rwkvp_limits_default(&lim);
    lim.max_tokens = 3;
    static unsigned char tok[16];
    f[1] = fr("TOKENS");
    f[5] = frn(tok, 12);
    CHECK(rwkvp_ingest_decode(f, 6, &lim, &out, &err) == 0 && out.n_tokens == 3);
    f[5].len = 16;
    check_err("tokens", rwkvp_ingest_decode(f, 6, &lim, &out, &err), &err,
              (struct expect){413, 5, "tokens", "app/nginx", "web-1", 1, 12});
    /* Names at their maximum and one past. */
    char name[130];
    memset(name, 'c', sizeof name);
    f[1] = fr("RESET");
    f[2] = frn(name, 128);
    CHECK(rwkvp_ingest_decode(f, 5, NULL, &out, &err) == 0);
    f[2].len = 129;
    CHECK(rwkvp_ingest_decode(f, 5, NULL, &out, &err) == -EBADMSG && err.code == 422 && err.frame == 2);
    f[2] = fr("a");
    f[3] = frn(name, 64);
    CHECK(rwkvp_ingest_decode(f, 5, NULL, &out, &err) == 0);
    f[3].len = 65;
    CHECK(rwkvp_ingest_decode(f, 5, NULL, &out, &err) == -EBADMSG && err.code == 422 && err.frame == 3);
    /* Largest seq. */
    f[3] = fr("p");
    f[4] = fr("18446744073709551615");
    CHECK(rwkvp_ingest_decode(f, 5, NULL, &out, &err) == 0 && out.seq == UINT64_MAX);
}

static void test_ingest_encode_invalid(void)
{
    rwkvp_msg m;
    rwkvp_error err;
    rwkvp_ingest in = {RWKVP_OP_TEXT, fr("ok"), fr("p"), 1, fr("x"), 0};
    CHECK(rwkvp_ingest_encode(&in, &m, &err) == 0);
    in.channel = fr("not ok");
    CHECK(rwkvp_ingest_encode(&in, &m, &err) == -EINVAL && err.code == 422 && err.frame == 2);
    in.channel = fr("ok");
    in.seq = 0;
    CHECK(rwkvp_ingest_encode(&in, &m, &err) == -EINVAL && err.code == 422 && err.frame == 4);
    in.seq = 1;
    in.payload = fr("\xFF");
    CHECK(rwkvp_ingest_encode(&in, &m, &err) == -EINVAL && err.code == 415);
    in.op = RWKVP_OP_RESET;
    CHECK(rwkvp_ingest_encode(&in, &m, &err) == -EINVAL && err.code == 400);
    in.op = (rwkvp_op)77;
    CHECK(rwkvp_ingest_encode(&in, &m, &err) == -EINVAL && err.code == 405);
    in.op = RWKVP_OP_TOKENS;
    in.payload = fr("abc");
    CHECK(rwkvp_ingest_encode(&in, &m, &err) == -EINVAL && err.code == 400);
    /* Encoders apply no size limits: 100000 tokens encode, and decode with a raised limit. */
    size_t n = 100000;
    unsigned char *tok = calloc(n, 4);
    CHECK(tok != NULL);
    if (tok) {
        in.payload = frn(tok, 4 * n);
        CHECK(rwkvp_ingest_encode(&in, &m, &err) == 0);
        rwkvp_ingest out;
        rwkvp_limits lim = {SIZE_MAX, n};
        CHECK(rwkvp_ingest_decode(m.frames, m.n, NULL, &out, &err) == -EBADMSG && err.code == 413);
        CHECK(rwkvp_ingest_decode(m.frames, m.n, &lim, &out, &err) == 0 && out.n_tokens == n);
        free(tok);
    }
    CHECK(rwkvp_ingest_encode(NULL, &m, &err) == -EINVAL);
    CHECK(rwkvp_ingest_encode(&in, NULL, NULL) == -EINVAL);
}

/* ---- replies ---------------------------------------------------------------------- */

static void test_reply(void)
{
    rwkvp_msg m;
    rwkvp_error err;
    rwkvp_reply r = {0}, out;
    r.channel = fr("app/nginx");
    r.producer = fr("web-1");
    /* ACK and DUP of §16.1 */
    for (int k = RWKVP_REPLY_ACK; k <= RWKVP_REPLY_DUP; k++) {
        r.kind = (rwkvp_reply_kind)k;
        r.seq = 41;
        r.acked = 41;
        r.credit = 63;
        CHECK(rwkvp_reply_encode(&r, &m, &err) == 0);
        CHECK(m.n == 7 && frame_eq(m.frames[1], k == RWKVP_REPLY_ACK ? "ACK" : "DUP"));
        CHECK(frame_eq(m.frames[4], "41") && frame_eq(m.frames[5], "41") && frame_eq(m.frames[6], "63"));
        CHECK(rwkvp_reply_decode(m.frames, m.n, NULL, &out, &err) == 0);
        CHECK(out.kind == r.kind && out.seq == 41 && out.has_seq && out.acked == 41 && out.credit == 63);
        CHECK(frame_eq(out.channel, "app/nginx") && frame_eq(out.producer, "web-1"));
    }
    r.kind = RWKVP_REPLY_CREDIT;
    r.acked = 0;
    r.credit = UINT64_MAX;
    CHECK(rwkvp_reply_encode(&r, &m, &err) == 0 && m.n == 6);
    CHECK(rwkvp_reply_decode(m.frames, m.n, NULL, &out, &err) == 0);
    CHECK(out.kind == RWKVP_REPLY_CREDIT && !out.has_seq && out.acked == 0 && out.credit == UINT64_MAX);
    /* ERROR with every field, and with none. */
    r.kind = RWKVP_REPLY_ERROR;
    r.has_seq = true;
    r.seq = 42;
    r.code = 415;
    r.text = fr("frame 5 (text): invalid UTF-8 at octet 4");
    CHECK(rwkvp_reply_encode(&r, &m, &err) == 0 && m.n == 7);
    CHECK(frame_eq(m.frames[5], "415"));
    CHECK(rwkvp_reply_decode(m.frames, m.n, NULL, &out, &err) == 0);
    CHECK(out.code == 415 && out.has_seq && out.seq == 42 && frame_eq(out.text, r.text.data));
    r.channel = frn(NULL, 0);
    r.producer = frn(NULL, 0);
    r.has_seq = false;
    r.code = 505;
    CHECK(rwkvp_reply_encode(&r, &m, &err) == 0);
    CHECK(m.frames[2].len == 0 && m.frames[3].len == 0 && m.frames[4].len == 0);
    CHECK(rwkvp_reply_decode(m.frames, m.n, NULL, &out, &err) == 0);
    CHECK(out.code == 505 && !out.has_seq && out.channel.len == 0 && out.producer.len == 0);
    /* Encoder rejections. */
    r.code = 200;
    CHECK(rwkvp_reply_encode(&r, &m, &err) == -EINVAL && err.frame == 5);
    r.code = 1000;
    CHECK(rwkvp_reply_encode(&r, &m, &err) == -EINVAL && err.frame == 5);
    r.code = 429;
    r.text = frn(NULL, 0);
    CHECK(rwkvp_reply_encode(&r, &m, &err) == -EINVAL && err.frame == 6 && err.code == 400);
    r.kind = RWKVP_REPLY_ACK;
    r.channel = fr("c");
    r.producer = fr("p");
    r.seq = 5;
    r.acked = 4;
    CHECK(rwkvp_reply_encode(&r, &m, &err) == -EINVAL && err.code == 422 && err.frame == 5);
    r.kind = (rwkvp_reply_kind)0;
    CHECK(rwkvp_reply_encode(&r, &m, &err) == -EINVAL && err.code == 405);

    /* Decoder rejections. */
    struct {
        const char *what;
        const char *f[MAXF];
        int code, frame;
    } bad[] = {
        {"unknown kind", {"RWKV1", "NACK", "c", "p", "1", "1", "1"}, 405, 1},
        {"ACK short", {"RWKV1", "ACK", "c", "p", "1", "1"}, 400, -1},
        {"CREDIT long", {"RWKV1", "CREDIT", "c", "p", "1", "1", "1"}, 400, -1},
        {"ACK empty channel", {"RWKV1", "ACK", "", "p", "1", "1", "1"}, 422, 2},
        {"ACK seq 0", {"RWKV1", "ACK", "c", "p", "0", "1", "1"}, 422, 4},
        {"ACK credit", {"RWKV1", "ACK", "c", "p", "1", "1", "-1"}, 400, 6},
        {"CREDIT acked", {"RWKV1", "CREDIT", "c", "p", "x", "1"}, 400, 4},
        {"ERROR seq", {"RWKV1", "ERROR", "", "", "01", "400", "t"}, 400, 4},
        {"ERROR code 200", {"RWKV1", "ERROR", "", "", "", "200", "t"}, 400, 5},
        {"ERROR code 4000", {"RWKV1", "ERROR", "", "", "", "4000", "t"}, 400, 5},
        {"ERROR code 600", {"RWKV1", "ERROR", "", "", "", "600", "t"}, 400, 5},
        {"ERROR no text", {"RWKV1", "ERROR", "", "", "", "400", ""}, 400, 6},
        {"ERROR text", {"RWKV1", "ERROR", "", "", "", "400", "\xFF"}, 415, 6},
        {"ERROR channel", {"RWKV1", "ERROR", "a b", "", "", "400", "t"}, 422, 2},
        {"version", {"RWKV2", "ACK", "c", "p", "1", "1", "1"}, 505, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rwkvp_frame f[MAXF];
        size_t n = 0;
        while (n < MAXF && bad[i].f[n]) {
            f[n] = fr(bad[i].f[n]);
            n++;
        }
        int rc = rwkvp_reply_decode(f, n, NULL, &out, &err);
        CHECKF(rc == -EBADMSG && err.code == bad[i].code && err.frame == bad[i].frame,
               "%s: rc %d code %d frame %d (%s)", bad[i].what, rc, err.code, err.frame, err.text);
    }
}

/* A decode failure becomes an ERROR reply that carries the recovered fields and the text. */
static void test_error_reply(void)
{
    rwkvp_frame f[6] = {fr("RWKV1"), fr("TEXT"), fr("app/nginx"), fr("web-1"), fr("42"),
                        frn("ab\xC3\xA9\xFF" "c", 6)};
    rwkvp_ingest in;
    rwkvp_error err;
    CHECK(rwkvp_ingest_decode(f, 6, NULL, &in, &err) == -EBADMSG);
    rwkvp_msg m;
    CHECK(rwkvp_reply_encode_error(&err, &m) == 0);
    rwkvp_reply r;
    rwkvp_error err2;
    CHECK(rwkvp_reply_decode(m.frames, m.n, NULL, &r, &err2) == 0);
    CHECK(r.kind == RWKVP_REPLY_ERROR && r.code == 415 && r.has_seq && r.seq == 42);
    CHECK(frame_eq(r.channel, "app/nginx") && frame_eq(r.producer, "web-1"));
    CHECK(frame_eq(r.text, "frame 5 (text): invalid UTF-8 at octet 4"));
    /* Nothing recoverable: a 505 has empty channel/producer/seq frames. */
    f[0] = fr("RWKV7");
    CHECK(rwkvp_ingest_decode(f, 6, NULL, &in, &err) == -EBADMSG && err.code == 505);
    CHECK(strstr(err.text, "supported: RWKV1") != NULL);
    CHECK(rwkvp_reply_encode_error(&err, &m) == 0);
    CHECK(m.frames[2].len == 0 && m.frames[3].len == 0 && m.frames[4].len == 0);
    CHECK(frame_eq(m.frames[5], "505"));
    CHECK(rwkvp_reply_encode_error(NULL, &m) == -EINVAL);
}

/* ---- publish -------------------------------------------------------------------------- */

static void test_pub(void)
{
    rwkvp_msg m;
    rwkvp_error err;
    rwkvp_pub p = {0}, out;
    p.channel = fr("app/nginx");
    p.producer = fr("web-1");
    p.seq = 41;
    p.tokens_seen = 1234;
    const char *cls = "{\"profile\":\"severity\",\"labels\":[\"ok\",\"error\"],\"probs\":[0.93,0.07],\"top\":\"ok\"}";
    struct {
        rwkvp_pub_kind kind;
        const char *body;
        size_t frames;
    } cases[] = {
        {RWKVP_PUB_CLASS, cls, 7},
        {RWKVP_PUB_TEXT, " Fine", 8},
        {RWKVP_PUB_END, "{\"reason\":\"eos\"}", 7},
        {RWKVP_PUB_ERROR, "generation failed", 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        p.kind = cases[i].kind;
        p.body = fr(cases[i].body);
        p.index = 3;
        p.code = 500;
        CHECK(rwkvp_pub_encode(&p, &m, &err) == 0);
        CHECK(m.n == cases[i].frames);
        CHECK(frame_eq(m.frames[0], "app/nginx") && frame_eq(m.frames[1], "RWKV1"));
        CHECK(frame_eq(m.frames[2], rwkvp_pub_kind_name(p.kind)));
        CHECK(frame_eq(m.frames[4], "41") && frame_eq(m.frames[5], "1234"));
        memset(&out, 0, sizeof out);
        CHECK(rwkvp_pub_decode(m.frames, m.n, NULL, &out, &err) == 0);
        CHECK(out.kind == p.kind && out.seq == 41 && out.tokens_seen == 1234);
        CHECK(frame_eq(out.channel, "app/nginx") && frame_eq(out.producer, "web-1"));
        CHECK(frame_eq(out.body, cases[i].body));
        if (p.kind == RWKVP_PUB_TEXT)
            CHECK(out.index == 3 && frame_eq(m.frames[6], "3"));
        if (p.kind == RWKVP_PUB_ERROR)
            CHECK(out.code == 500 && frame_eq(m.frames[6], "500"));
    }
    /* An output that follows no input: empty producer, seq 0. */
    p.kind = RWKVP_PUB_ERROR;
    p.producer = frn(NULL, 0);
    p.seq = 0;
    p.body = fr("channel dropped by the operator");
    p.code = 409;
    CHECK(rwkvp_pub_encode(&p, &m, &err) == 0);
    CHECK(rwkvp_pub_decode(m.frames, m.n, NULL, &out, &err) == 0 && out.seq == 0 && out.producer.len == 0);
    p.seq = 5; /* seq without producer */
    CHECK(rwkvp_pub_encode(&p, &m, &err) == -EINVAL && err.code == 422 && err.frame == 4);
    p.producer = fr("web-1");
    p.seq = 0; /* producer without seq */
    CHECK(rwkvp_pub_encode(&p, &m, &err) == -EINVAL && err.code == 422 && err.frame == 4);
    p.seq = 1;
    p.kind = RWKVP_PUB_TEXT;
    p.body = frn(NULL, 0);
    CHECK(rwkvp_pub_encode(&p, &m, &err) == -EINVAL && err.code == 400 && err.frame == 7);
    p.body = fr("\xE2\x82"); /* half a character */
    CHECK(rwkvp_pub_encode(&p, &m, &err) == -EINVAL && err.code == 415 && err.frame == 7);
    p.kind = (rwkvp_pub_kind)9;
    CHECK(rwkvp_pub_encode(&p, &m, &err) == -EINVAL && err.code == 405);
    /* The output sequence number: one more frame, last; absent when 0. */
    p.kind = RWKVP_PUB_TEXT;
    p.body = fr("x");
    p.oseq = 77;
    CHECK(rwkvp_pub_encode(&p, &m, &err) == 0 && m.n == 9 && frame_eq(m.frames[8], "77"));
    CHECK(rwkvp_pub_decode(m.frames, m.n, NULL, &out, &err) == 0 && out.oseq == 77 && frame_eq(out.body, "x"));
    p.kind = RWKVP_PUB_END;
    p.body = fr("{}");
    CHECK(rwkvp_pub_encode(&p, &m, &err) == 0 && m.n == 8 && frame_eq(m.frames[7], "77"));
    CHECK(rwkvp_pub_decode(m.frames, m.n, NULL, &out, &err) == 0 && out.oseq == 77);
    CHECK(rwkvp_pub_decode(m.frames, 7, NULL, &out, &err) == 0 && out.oseq == 0);
    p.oseq = 0;

    struct {
        const char *what;
        const char *f[MAXF];
        int code, frame;
        bool channel;
    } bad[] = {
        {"topic only", {"app"}, 400, -1, false},
        {"no kind", {"app", "RWKV1"}, 400, -1, true},
        {"signature", {"app", "RWKV", "TEXT"}, 400, 1, false},
        {"version", {"app", "RWKV3", "TEXT"}, 505, 1, false},
        {"kind", {"app", "RWKV1", "BLOB", "p", "1", "1", "x"}, 405, 2, true},
        {"empty kind", {"app", "RWKV1", "", "p", "1", "1", "x"}, 400, 2, true},
        {"CLASS long", {"app", "RWKV1", "CLASS", "p", "1", "1", "{}", "5", "x"}, 400, -1, true},
        {"oseq", {"app", "RWKV1", "CLASS", "p", "1", "1", "{}", "x"}, 400, 7, true},
        {"oseq 0", {"app", "RWKV1", "TEXT", "p", "1", "1", "0", "x", "0"}, 422, 8, true},
        {"TEXT short", {"app", "RWKV1", "TEXT", "p", "1", "1", "x"}, 400, -1, true},
        {"topic", {"$SYS", "RWKV1", "END", "p", "1", "1", "{}"}, 422, 0, false},
        {"producer", {"app", "RWKV1", "END", "p q", "1", "1", "{}"}, 422, 3, true},
        {"seq", {"app", "RWKV1", "END", "p", "x", "1", "{}"}, 400, 4, true},
        {"tokens_seen", {"app", "RWKV1", "END", "p", "1", "", "{}"}, 400, 5, true},
        {"empty result", {"app", "RWKV1", "CLASS", "p", "1", "1", ""}, 400, 6, true},
        {"result UTF-8", {"app", "RWKV1", "END", "p", "1", "1", "{\xFF}"}, 415, 6, true},
        {"index", {"app", "RWKV1", "TEXT", "p", "1", "1", "01", "x"}, 400, 6, true},
        {"error code", {"app", "RWKV1", "ERROR", "p", "1", "1", "42", "x"}, 400, 6, true},
        {"error text", {"app", "RWKV1", "ERROR", "p", "1", "1", "500", ""}, 400, 7, true},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rwkvp_frame f[MAXF];
        size_t n = 0;
        while (n < MAXF && bad[i].f[n]) {
            f[n] = fr(bad[i].f[n]);
            n++;
        }
        int rc = rwkvp_pub_decode(f, n, NULL, &out, &err);
        CHECKF(rc == -EBADMSG && err.code == bad[i].code && err.frame == bad[i].frame,
               "%s: rc %d code %d frame %d (%s)", bad[i].what, rc, err.code, err.frame, err.text);
        CHECKF(bad[i].channel == (err.channel.len > 0), "%s: channel recovery", bad[i].what);
    }
}

/* ---- control ------------------------------------------------------------------------- */

static void test_ctl(void)
{
    rwkvp_msg m;
    rwkvp_error err;
    rwkvp_ctl_request out;
    struct {
        rwkvp_ctl_cmd cmd;
        const char *channel, *prefix, *after;
        size_t frames;
    } cases[] = {
        {RWKVP_CTL_STATUS, "", "", "", 2},
        {RWKVP_CTL_CHANNELS, "", "", "", 2},
        {RWKVP_CTL_CHANNELS, "", "app/", "", 3},
        {RWKVP_CTL_CHANNELS, "", "app/", "app/db", 4},
        {RWKVP_CTL_CHANNELS, "", "", "app/db", 4},
        {RWKVP_CTL_INFO, "app/nginx", "", "", 3},
        {RWKVP_CTL_RESET, "app/nginx", "", "", 3},
        {RWKVP_CTL_EVICT, "app/nginx", "", "", 3},
        {RWKVP_CTL_DROP, "app/nginx", "", "", 3},
        {RWKVP_CTL_SNAPSHOT, "", "", "", 2},
        {RWKVP_CTL_SNAPSHOT, "app/nginx", "", "", 3},
        {RWKVP_CTL_RELOAD, "", "", "", 2},
        {RWKVP_CTL_METRICS, "", "", "", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rwkvp_ctl_request q = {cases[i].cmd, fr(cases[i].channel), fr(cases[i].prefix), fr(cases[i].after), fr(""), fr(""), 0};
        CHECKF(rwkvp_ctl_request_encode(&q, &m, &err) == 0, "case %zu: %s", i, err.text);
        CHECKF(m.n == cases[i].frames, "case %zu: %zu frames", i, m.n);
        CHECK(frame_eq(m.frames[1], rwkvp_ctl_cmd_name(q.cmd)));
        CHECK(rwkvp_ctl_request_decode(m.frames, m.n, NULL, &out, &err) == 0);
        CHECK(out.cmd == q.cmd);
        CHECK(frame_eq(out.channel, cases[i].channel));
        CHECK(frame_eq(out.prefix, cases[i].prefix));
        CHECK(frame_eq(out.after, cases[i].after));
    }
    rwkvp_ctl_request q = {RWKVP_CTL_INFO, fr(""), fr(""), fr(""), fr(""), fr(""), 0};
    CHECK(rwkvp_ctl_request_encode(&q, &m, &err) == -EINVAL && err.code == 422 && err.frame == 2);
    q.cmd = (rwkvp_ctl_cmd)0;
    CHECK(rwkvp_ctl_request_encode(&q, &m, &err) == -EINVAL && err.code == 405);

    struct {
        const char *what;
        const char *f[MAXF];
        int code, frame;
        const char *channel;
    } bad[] = {
        {"empty", {NULL}, 400, -1, NULL},
        {"signature", {"RWKV"}, 400, 0, NULL},
        {"no command", {"RWKV1"}, 400, -1, NULL},
        {"lowercase", {"RWKV1", "status"}, 405, 1, NULL},
        {"unknown", {"RWKV1", "FLUSHALL"}, 405, 1, NULL},
        {"STATUS arg", {"RWKV1", "STATUS", "x"}, 400, -1, NULL},
        {"INFO no arg", {"RWKV1", "INFO"}, 400, -1, NULL},
        {"INFO two", {"RWKV1", "INFO", "a", "b"}, 400, -1, "a"},
        {"INFO empty", {"RWKV1", "INFO", ""}, 422, 2, NULL},
        {"DROP bad", {"RWKV1", "DROP", "a*"}, 422, 2, NULL},
        {"SNAPSHOT empty", {"RWKV1", "SNAPSHOT", ""}, 422, 2, NULL},
        {"CHANNELS five", {"RWKV1", "CHANNELS", "", "", ""}, 400, -1, NULL},
        {"CHANNELS prefix", {"RWKV1", "CHANNELS", "/app"}, 422, 2, NULL},
        {"CHANNELS after", {"RWKV1", "CHANNELS", "", "a b"}, 422, 3, NULL},
        {"version", {"RWKV9", "STATUS"}, 505, 0, NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rwkvp_frame f[MAXF];
        size_t n = 0;
        while (n < MAXF && bad[i].f[n]) {
            f[n] = fr(bad[i].f[n]);
            n++;
        }
        int rc = rwkvp_ctl_request_decode(f, n, NULL, &out, &err);
        CHECKF(rc == -EBADMSG && err.code == bad[i].code && err.frame == bad[i].frame,
               "%s: rc %d code %d frame %d (%s)", bad[i].what, rc, err.code, err.frame, err.text);
        CHECKF(bad[i].channel ? frame_eq(err.channel, bad[i].channel) : err.channel.len == 0,
               "%s: channel recovery", bad[i].what);
    }
    /* CHANNELS with an empty prefix frame and an after name. */
    rwkvp_frame f[4] = {fr("RWKV1"), fr("CHANNELS"), fr(""), fr("zz")};
    CHECK(rwkvp_ctl_request_decode(f, 4, NULL, &out, &err) == 0 && out.prefix.len == 0 &&
          frame_eq(out.after, "zz"));

    /* Responses. */
    rwkvp_ctl_response r = {200, fr("{\"name\":\"app/nginx\"}"), {NULL, 0}}, rout;
    CHECK(rwkvp_ctl_response_encode(&r, &m, &err) == 0 && m.n == 3 && frame_eq(m.frames[1], "200"));
    CHECK(rwkvp_ctl_response_decode(m.frames, m.n, NULL, &rout, &err) == 0);
    CHECK(rout.code == 200 && frame_eq(rout.body, r.body.data));
    r.body = frn(NULL, 0); /* an empty 200 body is allowed (e.g. no metrics) */
    CHECK(rwkvp_ctl_response_encode(&r, &m, &err) == 0);
    r.code = 404;
    CHECK(rwkvp_ctl_response_encode(&r, &m, &err) == -EINVAL && err.code == 400 && err.frame == 2);
    r.body = fr("unknown channel 'app/x'");
    CHECK(rwkvp_ctl_response_encode(&r, &m, &err) == 0 && frame_eq(m.frames[1], "404"));
    CHECK(rwkvp_ctl_response_decode(m.frames, m.n, NULL, &rout, &err) == 0 && rout.code == 404);
    r.code = 201;
    CHECK(rwkvp_ctl_response_encode(&r, &m, &err) == -EINVAL && err.frame == 1);
    r.code = -1;
    CHECK(rwkvp_ctl_response_encode(&r, &m, &err) == -EINVAL && err.frame == 1);
    rwkvp_frame rf[5] = {fr("RWKV1"), fr("200"), fr("{}"), frn("\0\xff", 2), fr("extra")};
    CHECK(rwkvp_ctl_response_decode(rf, 5, NULL, &rout, &err) == -EBADMSG && err.code == 400);
    CHECK(rwkvp_ctl_response_decode(rf, 2, NULL, &rout, &err) == -EBADMSG && err.code == 400);
    /* a 200 may carry a binary blob frame (EXPORT); an error may not; an empty one is absent */
    CHECK(rwkvp_ctl_response_decode(rf, 4, NULL, &rout, &err) == 0 && rout.blob.len == 2 &&
          memcmp(rout.blob.data, "\0\xff", 2) == 0);
    CHECK(rwkvp_ctl_response_encode(&rout, &m, &err) == 0 && m.n == 4);
    rf[1] = fr("404");
    rf[2] = fr("no");
    CHECK(rwkvp_ctl_response_decode(rf, 4, NULL, &rout, &err) == -EBADMSG && err.code == 400 && err.frame == 3);
    rf[1] = fr("200");
    rf[3] = fr("");
    CHECK(rwkvp_ctl_response_decode(rf, 4, NULL, &rout, &err) == -EBADMSG && err.code == 400 && err.frame == 3);
    /* EXPORT, IMPORT (binary blob), FORK */
    rwkvp_ctl_request e = {RWKVP_CTL_EXPORT, fr("a/b"), fr(""), fr(""), fr(""), fr(""), 0};
    CHECK(rwkvp_ctl_request_encode(&e, &m, &err) == 0 && m.n == 3 && frame_eq(m.frames[1], "EXPORT"));
    rwkvp_ctl_request im = {RWKVP_CTL_IMPORT, fr("a/c"), fr(""), fr(""), fr(""), frn("RWKVSNAP\0\x01\xfe", 11), 0};
    CHECK(rwkvp_ctl_request_encode(&im, &m, &err) == 0 && m.n == 4);
    CHECK(rwkvp_ctl_request_decode(m.frames, m.n, NULL, &out, &err) == 0 && out.cmd == RWKVP_CTL_IMPORT &&
          frame_eq(out.channel, "a/c") && out.blob.len == 11 && memcmp(out.blob.data, "RWKVSNAP\0\x01\xfe", 11) == 0);
    rwkvp_ctl_request fk = {RWKVP_CTL_FORK, fr("a/b"), fr(""), fr(""), fr("a/d"), fr(""), 0};
    CHECK(rwkvp_ctl_request_encode(&fk, &m, &err) == 0 && m.n == 4);
    CHECK(rwkvp_ctl_request_decode(m.frames, m.n, NULL, &out, &err) == 0 && out.cmd == RWKVP_CTL_FORK &&
          frame_eq(out.channel, "a/b") && frame_eq(out.dst, "a/d"));
    rwkvp_frame q4[4] = {fr("RWKV1"), fr("IMPORT"), fr("a/c"), fr("")};
    CHECK(rwkvp_ctl_request_decode(q4, 4, NULL, &out, &err) == -EBADMSG && err.code == 422 && err.frame == 3);
    CHECK(rwkvp_ctl_request_decode(q4, 3, NULL, &out, &err) == -EBADMSG && err.code == 400);
    q4[1] = fr("FORK");
    q4[3] = fr("b c");
    CHECK(rwkvp_ctl_request_decode(q4, 4, NULL, &out, &err) == -EBADMSG && err.code == 422 && err.frame == 3);
    q4[1] = fr("EXPORT");
    CHECK(rwkvp_ctl_request_decode(q4, 4, NULL, &out, &err) == -EBADMSG && err.code == 400);
    /* REPLAY channel after */
    rwkvp_ctl_request rp = {RWKVP_CTL_REPLAY, fr("a/b"), fr(""), fr(""), fr(""), fr(""), 12};
    CHECK(rwkvp_ctl_request_encode(&rp, &m, &err) == 0 && m.n == 4 && frame_eq(m.frames[1], "REPLAY") &&
          frame_eq(m.frames[3], "12"));
    CHECK(rwkvp_ctl_request_decode(m.frames, m.n, NULL, &out, &err) == 0 && out.cmd == RWKVP_CTL_REPLAY &&
          frame_eq(out.channel, "a/b") && out.after_oseq == 12);
    q4[1] = fr("REPLAY");
    q4[3] = fr("x1");
    CHECK(rwkvp_ctl_request_decode(q4, 4, NULL, &out, &err) == -EBADMSG && err.code == 400 && err.frame == 3);
    CHECK(rwkvp_ctl_request_decode(q4, 3, NULL, &out, &err) == -EBADMSG && err.code == 400);
    rf[2] = fr("\xC3(");
    CHECK(rwkvp_ctl_response_decode(rf, 3, NULL, &rout, &err) == -EBADMSG && err.code == 415);
}

/* ---- byte-flip sweep -------------------------------------------------------------------- */

typedef int (*decode_fn)(const rwkvp_frame *, size_t, const rwkvp_limits *, void *, rwkvp_error *);

static int dec_ingest(const rwkvp_frame *f, size_t n, const rwkvp_limits *l, void *o, rwkvp_error *e)
{
    return rwkvp_ingest_decode(f, n, l, o, e);
}
static int dec_reply(const rwkvp_frame *f, size_t n, const rwkvp_limits *l, void *o, rwkvp_error *e)
{
    return rwkvp_reply_decode(f, n, l, o, e);
}
static int dec_pub(const rwkvp_frame *f, size_t n, const rwkvp_limits *l, void *o, rwkvp_error *e)
{
    return rwkvp_pub_decode(f, n, l, o, e);
}
static int dec_ctlq(const rwkvp_frame *f, size_t n, const rwkvp_limits *l, void *o, rwkvp_error *e)
{
    return rwkvp_ctl_request_decode(f, n, l, o, e);
}
static int dec_ctlr(const rwkvp_frame *f, size_t n, const rwkvp_limits *l, void *o, rwkvp_error *e)
{
    return rwkvp_ctl_response_decode(f, n, l, o, e);
}

static int sweep_failures;

/* Every single-octet change (8 values per position), dropped frame and truncation. */
static void sweep(decode_fn dec, const char *const *frames, size_t n)
{
    unsigned char store[MAXF][128];
    rwkvp_frame f[MAXF] = {{0}};
    union {
        rwkvp_ingest i;
        rwkvp_reply r;
        rwkvp_pub p;
        rwkvp_ctl_request q;
        rwkvp_ctl_response s;
    } out;
    rwkvp_error err;
    static const unsigned char vals[] = {0x00, '0', '9', 'A', 'z', '/', 0x80, 0xFF};
    for (size_t i = 0; i < n; i++) {
        memcpy(store[i], frames[i], strlen(frames[i]));
        f[i] = frn(store[i], strlen(frames[i]));
    }
    if (dec(f, n, NULL, &out, &err) != 0) {
        sweep_failures++;
        fprintf(stderr, "sweep: base message fails: %s\n", err.text);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k <= f[i].len; k++) {
            for (size_t v = 0; v < sizeof vals; v++) {
                rwkvp_frame g[MAXF];
                memcpy(g, f, sizeof g);
                unsigned char save = k < f[i].len ? store[i][k] : 0;
                if (k < f[i].len)
                    store[i][k] = vals[v];
                else
                    g[i].len = v < f[i].len ? v : f[i].len; /* truncations */
                int rc = dec(g, n, NULL, &out, &err);
                if (rc != 0 && (rc != -EBADMSG || !rwkvp_code_name(err.code) || err.code < 400 ||
                                !printable(err.text) || !err.text[0])) {
                    sweep_failures++;
                    fprintf(stderr, "sweep: frame %zu octet %zu: rc %d code %d \"%s\"\n", i, k, rc,
                            err.code, err.text);
                }
                if (k < f[i].len)
                    store[i][k] = save;
            }
        }
        /* Drop frame i. */
        rwkvp_frame g[MAXF];
        size_t m = 0;
        for (size_t j = 0; j < n; j++)
            if (j != i)
                g[m++] = f[j];
        int rc = dec(g, m, NULL, &out, &err);
        if (rc != -EBADMSG && !(rc == 0 && m >= 2)) {
            sweep_failures++;
            fprintf(stderr, "sweep: dropping frame %zu gives rc %d\n", i, rc);
        }
    }
}

static void test_sweep(void)
{
    const char *ingest[][MAXF] = {
        {"RWKV1", "TEXT", "app/nginx", "web-1", "41", "GET / 200 \xC3\xA9", NULL},
        {"RWKV1", "TOKENS", "a", "p", "18446744073709551615", "\x22\x01\x02\x03", NULL},
        {"RWKV1", "TASK", "a", "p", "9", "severity", NULL},
        {"RWKV1", "GEN", "a", "p", "9", "{\"max_tokens\":3}", NULL},
        {"RWKV1", "SYNC", "a", "p", "0", NULL},
        {"RWKV1", "CLOSE", "a", "p", "1", NULL},
    };
    for (size_t i = 0; i < sizeof ingest / sizeof *ingest; i++) {
        size_t n = 0;
        while (ingest[i][n])
            n++;
        sweep(dec_ingest, ingest[i], n);
    }
    const char *reply[][MAXF] = {
        {"RWKV1", "ACK", "app/nginx", "web-1", "41", "41", "63", NULL},
        {"RWKV1", "CREDIT", "c", "p", "0", "5", NULL},
        {"RWKV1", "ERROR", "c", "", "7", "429", "queue full", NULL},
    };
    for (size_t i = 0; i < sizeof reply / sizeof *reply; i++) {
        size_t n = 0;
        while (reply[i][n])
            n++;
        sweep(dec_reply, reply[i], n);
    }
    const char *pub[][MAXF] = {
        {"app/nginx", "RWKV1", "CLASS", "web-1", "41", "1234", "{\"top\":\"ok\"}", NULL},
        {"app/nginx", "RWKV1", "TEXT", "web-1", "44", "1243", "0", " Fine", NULL},
        {"a", "RWKV1", "ERROR", "", "0", "0", "409", "dropped", NULL},
    };
    for (size_t i = 0; i < sizeof pub / sizeof *pub; i++) {
        size_t n = 0;
        while (pub[i][n])
            n++;
        sweep(dec_pub, pub[i], n);
    }
    const char *ctlq[][MAXF] = {
        {"RWKV1", "CHANNELS", "app/", "app/db", NULL},
        {"RWKV1", "INFO", "app/nginx", NULL},
    };
    for (size_t i = 0; i < sizeof ctlq / sizeof *ctlq; i++) {
        size_t n = 0;
        while (ctlq[i][n])
            n++;
        sweep(dec_ctlq, ctlq[i], n);
    }
    const char *ctlr[][MAXF] = {{"RWKV1", "404", "unknown channel", NULL}};
    sweep(dec_ctlr, ctlr[0], 3);
    CHECKF(sweep_failures == 0, "%d sweep failures", sweep_failures);
}

int main(void)
{
    test_codes();
    test_utf8();
    test_names();
    test_u64();
    test_tokens();
    test_envelope();
    test_ingest_roundtrip();
    test_ingest_errors();
    test_ingest_limits();
    test_ingest_encode_invalid();
    test_reply();
    test_error_reply();
    test_pub();
    test_ctl();
    test_sweep();
    return test_finish("test_proto");
}
