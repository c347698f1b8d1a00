/* rwkvp.c — the RWKV1 framing codec (see rwkvp.h and PROTOCOL.md).
 *
 * What it is: table-driven decoders that check a message in the order PROTOCOL.md §12 fixes
 * (size, signature, op, frame count, then each frame in order) and stop at the first
 * failure; encoders that lay out frames and then run the decoder over them.
 * What it is not: anything that looks inside JSON (rwkvp_json.c does, with jansson).
 * Invariant: no function here allocates or writes outside its arguments; a decoder reads
 * only the octets its frames describe.
 */
#include "rwkvp.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- codes ------------------------------------------------------------------------ */

static const struct {
    int code;
    const char *name;
    rwkvp_retry retry;
} code_table[] = {
    {RWKVP_OK, "ok", RWKVP_RETRY_NO},
    {RWKVP_E_MALFORMED, "malformed", RWKVP_RETRY_NO},
    {RWKVP_E_FORBIDDEN, "forbidden", RWKVP_RETRY_NO},
    {RWKVP_E_NOT_FOUND, "not found", RWKVP_RETRY_NO},
    {RWKVP_E_UNKNOWN_OP, "unknown op", RWKVP_RETRY_NO},
    {RWKVP_E_CONFLICT, "conflict", RWKVP_RETRY_BACKOFF},
    {RWKVP_E_TOO_LARGE, "too large", RWKVP_RETRY_NO},
    {RWKVP_E_ENCODING, "bad encoding", RWKVP_RETRY_NO},
    {RWKVP_E_INVALID, "invalid value", RWKVP_RETRY_NO},
    {RWKVP_E_DAMAGED, "channel damaged", RWKVP_RETRY_BACKOFF},
    {RWKVP_E_PAUSED, "paused", RWKVP_RETRY_AFTER_RESEND},
    {RWKVP_E_NO_CREDIT, "no credit", RWKVP_RETRY_AFTER_CREDIT},
    {RWKVP_E_INTERNAL, "internal error", RWKVP_RETRY_BACKOFF},
    {RWKVP_E_NOT_IMPLEMENTED, "not implemented", RWKVP_RETRY_NO},
    {RWKVP_E_UNAVAILABLE, "unavailable", RWKVP_RETRY_BACKOFF},
    {RWKVP_E_VERSION, "version not supported", RWKVP_RETRY_NO},
    {RWKVP_E_LIMIT, "limit reached", RWKVP_RETRY_BACKOFF},
};

const char *rwkvp_code_name(int code)
{
    for (size_t i = 0; i < sizeof code_table / sizeof code_table[0]; i++)
        if (code_table[i].code == code)
            return code_table[i].name;
    return NULL;
}

rwkvp_retry rwkvp_code_retry(int code)
{
    for (size_t i = 0; i < sizeof code_table / sizeof code_table[0]; i++)
        if (code_table[i].code == code)
            return code_table[i].retry;
    return RWKVP_RETRY_NO;
}

bool rwkvp_code_pauses(int code)
{
    rwkvp_retry r = rwkvp_code_retry(code);
    return r == RWKVP_RETRY_BACKOFF || r == RWKVP_RETRY_AFTER_CREDIT;
}

void rwkvp_limits_default(rwkvp_limits *lim)
{
    if (!lim)
        return;
    lim->max_message_bytes = RWKVP_DEFAULT_MAX_MESSAGE_BYTES;
    lim->max_tokens = RWKVP_DEFAULT_MAX_TOKENS;
}

/* ---- validators ---------------------------------------------------------------------- */

bool rwkvp_utf8_valid(const void *s, size_t len, size_t *bad_offset)
{
    const unsigned char *p = s;
    size_t i = 0;
    if (len && !p)
        goto bad;
    while (i < len) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned lo = 0x80, hi = 0xBF; /* range of the second octet */
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0; /* no overlongs */
            else if (c == 0xED)
                hi = 0x9F; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F; /* nothing above U+10FFFF */
        } else {
            goto bad;
        }
        if (len - i <= need || p[i + 1] < lo || p[i + 1] > hi)
            goto bad;
        for (size_t k = 2; k <= need; k++)
            if ((p[i + k] & 0xC0) != 0x80)
                goto bad;
        i += need + 1;
    }
    return true;
bad:
    if (bad_offset)
        *bad_offset = i;
    return false;
}

/* 1: may start a name; 2: may follow. */
static unsigned char name_class(unsigned char c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')
        return 3;
    if (c == '-' || c == '.' || c == ':' || c == '/')
        return 2;
    return 0;
}

static int check_name(const void *s, size_t len, size_t max, size_t *bad_offset)
{
    const unsigned char *p = s;
    if (len == 0 || !p) {
        if (bad_offset)
            *bad_offset = 0;
        return -EINVAL;
    }
    if (len > max)
        return -ENAMETOOLONG;
    for (size_t i = 0; i < len; i++) {
        if (!(name_class(p[i]) & (i == 0 ? 1 : 2))) {
            if (bad_offset)
                *bad_offset = i;
            return -EINVAL;
        }
    }
    return 0;
}

int rwkvp_channel_check(const void *s, size_t len, size_t *bad_offset)
{
    return check_name(s, len, RWKVP_CHANNEL_MAX, bad_offset);
}

int rwkvp_name_check(const void *s, size_t len, size_t *bad_offset)
{
    return check_name(s, len, RWKVP_NAME_MAX, bad_offset);
}

int rwkvp_u64_parse(const void *s, size_t len, uint64_t *out)
{
    const unsigned char *p = s;
    if (len == 0 || !p || len > RWKVP_U64_DIGITS || (p[0] == '0' && len > 1))
        return -EINVAL;
    uint64_t v = 0;
    bool overflow = false;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -EINVAL;
        unsigned d = p[i] - '0';
        if (v > (UINT64_MAX - d) / 10)
            overflow = true;
        v = v * 10 + d;
    }
    if (overflow)
        return -ERANGE;
    if (out)
        *out = v;
    return 0;
}

size_t rwkvp_u64_format(uint64_t v, char *buf)
{
    char tmp[RWKVP_U64_DIGITS];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = 0;
    return n;
}

size_t rwkvp_tokens_pack(const uint32_t *ids, size_t n, void *buf, size_t cap)
{
    if (n > SIZE_MAX / 4)
        return SIZE_MAX;
    size_t need = n * 4;
    if (!ids || !buf || cap < need)
        return need;
    unsigned char *o = buf;
    for (size_t i = 0; i < n; i++) {
        o[4 * i] = (unsigned char)(ids[i]);
        o[4 * i + 1] = (unsigned char)(ids[i] >> 8);
        o[4 * i + 2] = (unsigned char)(ids[i] >> 16);
        o[4 * i + 3] = (unsigned char)(ids[i] >> 24);
    }
    return need;
}

uint32_t rwkvp_tokens_get(const rwkvp_frame *tokens, size_t i)
{
    if (!tokens || !tokens->data || i >= tokens->len / 4)
        return 0;
    const unsigned char *p = (const unsigned char *)tokens->data + 4 * i;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

size_t rwkvp_frames_bytes(const rwkvp_frame *f, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; f && i < n; i++)
        total = f[i].len > SIZE_MAX - total ? SIZE_MAX : total + f[i].len;
    return total;
}

int rwkvp_envelope_split(const rwkvp_frame *f, size_t n, size_t *n_envelope)
{
    if (!f || n < 2 || f[0].len == 0)
        return -EBADMSG;
    size_t env = f[1].len == 0 ? 2 : 1;
    if (n <= env)
        return -EBADMSG;
    if (n_envelope)
        *n_envelope = env;
    return 0;
}

/* ---- error reporting -------------------------------------------------------------- */

static void error_reset(rwkvp_error *e)
{
    memset(e, 0, sizeof *e);
    e->frame = -1;
    e->field = "message";
}

/* A printable excerpt of untrusted octets: at most 24 shown, others as \xNN, quoted. */
static void excerpt(char *buf, size_t cap, const rwkvp_frame *f)
{
    const unsigned char *p = f->data;
    size_t o = 0, shown = f->len < 24 ? f->len : 24;
    if (cap < 8) {
        if (cap)
            buf[0] = 0;
        return;
    }
    buf[o++] = '"';
    for (size_t i = 0; i < shown && o + 8 < cap; i++) {
        unsigned c = p[i];
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02X", c);
    }
    buf[o++] = '"';
    if (shown < f->len && o + 4 < cap) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = 0;
}

int rwkvp_error_vset(rwkvp_error *e, int code, int frame, const char *field, const char *label, const char *fmt,
                     va_list ap)
{
    e->code = code;
    e->frame = frame;
    e->field = field;
    int o = frame >= 0 ? snprintf(e->text, sizeof e->text, "frame %d (%s): ", frame, label ? label : field)
                       : snprintf(e->text, sizeof e->text, "%s: ", label ? label : field);
    if (o < 0 || (size_t)o >= sizeof e->text)
        o = 0;
    vsnprintf(e->text + o, sizeof e->text - (size_t)o, fmt, ap);
    return -EBADMSG;
}

int rwkvp_error_set(rwkvp_error *e, int code, int frame, const char *field, const char *label, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = rwkvp_error_vset(e, code, frame, field, label, fmt, ap);
    va_end(ap);
    return rc;
}

#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
static int fail(rwkvp_error *e, int code, int frame, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = rwkvp_error_vset(e, code, frame, field, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- field checks shared by the decoders: each returns 0 or fail(...) ------------ */

static bool frame_is(const rwkvp_frame *f, const char *lit)
{
    size_t n = strlen(lit);
    return f->len == n && memcmp(f->data, lit, n) == 0;
}

/* Frames with len > 0 must have data; the sum of lengths within the limit. */
static int check_message(const rwkvp_frame *f, size_t n, const rwkvp_limits *lim, rwkvp_error *e)
{
    if (n == 0)
        return fail(e, RWKVP_E_MALFORMED, -1, "message", "no frames");
    size_t total = rwkvp_frames_bytes(f, n);
    if (total > lim->max_message_bytes)
        return fail(e, RWKVP_E_TOO_LARGE, -1, "message",
                    "%zu octets exceed the limit of %zu (max_message_bytes)", total,
                    lim->max_message_bytes);
    return 0;
}

static int check_signature(const rwkvp_frame *f, int idx, rwkvp_error *e)
{
    if (frame_is(f, RWKVP_SIGNATURE))
        return 0;
    const unsigned char *p = f->data;
    bool versioned = f->len >= 5 && f->len <= 7 && memcmp(p, "RWKV", 4) == 0 && p[4] >= '1' &&
                     p[4] <= '9';
    for (size_t i = 5; versioned && i < f->len; i++)
        versioned = p[i] >= '0' && p[i] <= '9';
    char ex[112];
    excerpt(ex, sizeof ex, f);
    if (versioned)
        return fail(e, RWKVP_E_VERSION, idx, "signature",
                    "protocol version %s not supported; supported: " RWKVP_SIGNATURE, ex);
    return fail(e, RWKVP_E_MALFORMED, idx, "signature", "expected \"" RWKVP_SIGNATURE "\", got %s",
                ex);
}

static int check_count(size_t n, size_t lo, size_t hi, const char *what, rwkvp_error *e)
{
    if (n >= lo && n <= hi)
        return 0;
    if (lo == hi)
        return fail(e, RWKVP_E_MALFORMED, -1, "message", "%s takes %zu frames, got %zu", what, lo, n);
    return fail(e, RWKVP_E_MALFORMED, -1, "message", "%s takes %zu to %zu frames, got %zu", what, lo,
                hi, n);
}

/* A channel name (channel) or producer/profile name; allow_empty for optional fields. */
static int check_name_frame(const rwkvp_frame *f, int idx, const char *field, bool channel,
                            bool allow_empty, rwkvp_error *e)
{
    if (allow_empty && f->len == 0)
        return 0;
    size_t bad = 0;
    size_t max = channel ? RWKVP_CHANNEL_MAX : RWKVP_NAME_MAX;
    int rc = check_name(f->data, f->len, max, &bad);
    if (rc == 0)
        return 0;
    if (f->len == 0)
        return fail(e, RWKVP_E_INVALID, idx, field, "empty");
    if (rc == -ENAMETOOLONG)
        return fail(e, RWKVP_E_INVALID, idx, field, "%zu octets, longer than %zu", f->len, max);
    unsigned c = ((const unsigned char *)f->data)[bad];
    if (bad == 0 && name_class((unsigned char)c))
        return fail(e, RWKVP_E_INVALID, idx, field,
                    "must start with a letter, digit or '_', not '%c'", (char)c);
    if (c >= 0x21 && c < 0x7F)
        return fail(e, RWKVP_E_INVALID, idx, field, "character '%c' at offset %zu not allowed",
                    (char)c, bad);
    return fail(e, RWKVP_E_INVALID, idx, field, "octet 0x%02X at offset %zu not allowed", c, bad);
}

static int check_uint(const rwkvp_frame *f, int idx, const char *field, uint64_t *v, rwkvp_error *e)
{
    int rc = rwkvp_u64_parse(f->data, f->len, v);
    if (rc == 0)
        return 0;
    char ex[112];
    excerpt(ex, sizeof ex, f);
    if (rc == -ERANGE)
        return fail(e, RWKVP_E_MALFORMED, idx, field, "%s exceeds 2^64-1", ex);
    return fail(e, RWKVP_E_MALFORMED, idx, field, "%s is not a canonical decimal uint64", ex);
}

static int check_code(const rwkvp_frame *f, int idx, bool allow_ok, int *code, rwkvp_error *e)
{
    const unsigned char *p = f->data;
    if (f->len == 3 && p[0] >= '0' && p[0] <= '9' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' &&
        p[2] <= '9') {
        int c = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
        if ((c >= 400 && c <= 599) || (allow_ok && c == 200)) {
            *code = c;
            return 0;
        }
    }
    char ex[112];
    excerpt(ex, sizeof ex, f);
    return fail(e, RWKVP_E_MALFORMED, idx, "code", "%s is not %s", ex,
                allow_ok ? "200 or a code 400..599" : "a code 400..599");
}

static int check_text(const rwkvp_frame *f, int idx, const char *field, bool nonempty, rwkvp_error *e)
{
    if (nonempty && f->len == 0)
        return fail(e, RWKVP_E_MALFORMED, idx, field, "empty");
    size_t bad = 0;
    if (!rwkvp_utf8_valid(f->data, f->len, &bad))
        return fail(e, RWKVP_E_ENCODING, idx, field, "invalid UTF-8 at octet %zu", bad);
    return 0;
}

/* A valid name or uint in frame idx, copied into the error for the ERROR reply. */
static void salvage(const rwkvp_frame *f, size_t n, size_t ch, size_t pr, size_t sq, rwkvp_error *e)
{
    if (ch < n && rwkvp_channel_check(f[ch].data, f[ch].len, NULL) == 0)
        e->channel = f[ch];
    if (pr < n && rwkvp_name_check(f[pr].data, f[pr].len, NULL) == 0)
        e->producer = f[pr];
    if (sq < n && rwkvp_u64_parse(f[sq].data, f[sq].len, &e->seq) == 0)
        e->has_seq = true;
}

/* Common entry: argument sanity, error reset, limits. 0 or -EINVAL. */
static int begin(const rwkvp_frame *f, size_t n, const void *out, rwkvp_error **e,
                 rwkvp_error *local, const rwkvp_limits **lim, rwkvp_limits *deflim)
{
    if (!*e)
        *e = local;
    error_reset(*e);
    if (!out || (n && !f))
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (f[i].len && !f[i].data)
            return -EINVAL;
    if (!*lim) {
        rwkvp_limits_default(deflim);
        *lim = deflim;
    }
    return 0;
}

/* Look a frame up in a NULL-terminated name list whose index i maps to enum value i + 1. */
static int lookup(const rwkvp_frame *f, const char *const *names)
{
    for (int i = 0; names[i]; i++)
        if (frame_is(f, names[i]))
            return i + 1;
    return 0;
}

static int unknown_name(const rwkvp_frame *f, int idx, const char *field, rwkvp_error *e)
{
    char ex[112];
    excerpt(ex, sizeof ex, f);
    if (f->len == 0)
        return fail(e, RWKVP_E_MALFORMED, idx, field, "empty");
    return fail(e, RWKVP_E_UNKNOWN_OP, idx, field, "unknown %s %s", field, ex);
}

/* ---- ingest ---------------------------------------------------------------------------- */

static const char *const op_names[] = {"TEXT", "TOKENS", "RESET", "TASK", "GEN",
                                       "CANCEL", "CLOSE", "SYNC", NULL};

const char *rwkvp_op_name(rwkvp_op op)
{
    return op >= RWKVP_OP_TEXT && op <= RWKVP_OP_SYNC ? op_names[op - 1] : NULL;
}

bool rwkvp_op_queued(rwkvp_op op)
{
    return op >= RWKVP_OP_TEXT && op <= RWKVP_OP_CLOSE && op != RWKVP_OP_CANCEL;
}

static bool op_has_payload(rwkvp_op op)
{
    return op == RWKVP_OP_TEXT || op == RWKVP_OP_TOKENS || op == RWKVP_OP_TASK || op == RWKVP_OP_GEN;
}

int rwkvp_ingest_decode(const rwkvp_frame *f, size_t n, const rwkvp_limits *lim,
                        rwkvp_ingest *out, rwkvp_error *err)
{
    rwkvp_error local;
    rwkvp_limits deflim;
    int rc = begin(f, n, out, &err, &local, &lim, &deflim);
    if (rc)
        return rc;
    if (n && frame_is(&f[0], RWKVP_SIGNATURE))
        salvage(f, n, 2, 3, 4, err);
    if ((rc = check_message(f, n, lim, err)) || (rc = check_signature(&f[0], 0, err)))
        return rc;
    if (n < 2)
        return fail(err, RWKVP_E_MALFORMED, -1, "message", "no op frame");
    rwkvp_op op = (rwkvp_op)lookup(&f[1], op_names);
    if (!op)
        return unknown_name(&f[1], 1, "op", err);
    size_t want = op_has_payload(op) ? 6 : 5;
    if ((rc = check_count(n, want, want, op_names[op - 1], err)))
        return rc;
    uint64_t seq = 0;
    if ((rc = check_name_frame(&f[2], 2, "channel", true, false, err)) ||
        (rc = check_name_frame(&f[3], 3, "producer", false, false, err)) ||
        (rc = check_uint(&f[4], 4, "seq", &seq, err)))
        return rc;
    if (op == RWKVP_OP_SYNC && seq != 0)
        return fail(err, RWKVP_E_INVALID, 4, "seq", "SYNC takes seq 0, got %llu",
                    (unsigned long long)seq);
    if (op != RWKVP_OP_SYNC && seq == 0)
        return fail(err, RWKVP_E_INVALID, 4, "seq", "seq 0 is reserved for SYNC");
    rwkvp_frame payload = {NULL, 0};
    size_t n_tokens = 0;
    if (want == 6) {
        payload = f[5];
        switch (op) {
        case RWKVP_OP_TEXT:
            rc = check_text(&payload, 5, "text", false, err);
            break;
        case RWKVP_OP_TOKENS:
            if (payload.len == 0)
                return fail(err, RWKVP_E_MALFORMED, 5, "tokens", "no token ids");
            if (payload.len % 4)
                return fail(err, RWKVP_E_MALFORMED, 5, "tokens",
                            "%zu octets is not a multiple of 4", payload.len);
            n_tokens = payload.len / 4;
            if (n_tokens > lim->max_tokens)
                return fail(err, RWKVP_E_TOO_LARGE, 5, "tokens",
                            "%zu token ids exceed the limit of %zu (max_tokens)", n_tokens,
                            lim->max_tokens);
            break;
        case RWKVP_OP_TASK:
            rc = check_name_frame(&payload, 5, "profile", false, false, err);
            break;
        case RWKVP_OP_GEN:
            rc = check_text(&payload, 5, "params", false, err);
            break;
        default:
            break;
        }
        if (rc)
            return rc;
    }
    out->op = op;
    out->channel = f[2];
    out->producer = f[3];
    out->seq = seq;
    out->payload = payload;
    out->n_tokens = n_tokens;
    return 0;
}

static const rwkvp_limits no_limits = {SIZE_MAX, SIZE_MAX};

static void put(rwkvp_msg *m, const void *data, size_t len)
{
    m->frames[m->n].data = data;
    m->frames[m->n].len = len;
    m->n++;
}

static void put_str(rwkvp_msg *m, const char *s)
{
    put(m, s, strlen(s));
}

static void put_uint(rwkvp_msg *m, int slot, uint64_t v)
{
    size_t len = rwkvp_u64_format(v, m->num[slot]);
    put(m, m->num[slot], len);
}

/* A code that is not three digits is laid out as "?" so the decoder names it. */
static void put_code(rwkvp_msg *m, int slot, int code)
{
    if (code >= 0 && code <= 999)
        snprintf(m->num[slot], sizeof m->num[slot], "%03d", code);
    else
        snprintf(m->num[slot], sizeof m->num[slot], "?");
    put(m, m->num[slot], strlen(m->num[slot]));
}

static bool view_ok(const rwkvp_frame *v)
{
    return v->len == 0 || v->data != NULL;
}

static int encode_fail(rwkvp_error *err, int code, const char *field, const char *what)
{
    if (err) {
        error_reset(err);
        fail(err, code, -1, field, "%s", what);
    }
    return -EINVAL;
}

int rwkvp_ingest_encode(const rwkvp_ingest *m, rwkvp_msg *out, rwkvp_error *err)
{
    if (!m || !out || !view_ok(&m->channel) || !view_ok(&m->producer) || !view_ok(&m->payload))
        return encode_fail(err, RWKVP_E_MALFORMED, "message", "NULL argument");
    const char *name = rwkvp_op_name(m->op);
    if (!name)
        return encode_fail(err, RWKVP_E_UNKNOWN_OP, "op", "op outside rwkvp_op");
    out->n = 0;
    put_str(out, RWKVP_SIGNATURE);
    put_str(out, name);
    put(out, m->channel.data, m->channel.len);
    put(out, m->producer.data, m->producer.len);
    put_uint(out, 0, m->seq);
    if (op_has_payload(m->op))
        put(out, m->payload.data, m->payload.len);
    else if (m->payload.len)
        return encode_fail(err, RWKVP_E_MALFORMED, "payload", "this op takes no payload");
    rwkvp_ingest check;
    return rwkvp_ingest_decode(out->frames, out->n, &no_limits, &check, err) ? -EINVAL : 0;
}

/* ---- ingest replies ------------------------------------------------------------------------ */

static const char *const reply_names[] = {"ACK", "DUP", "CREDIT", "ERROR", NULL};

const char *rwkvp_reply_kind_name(rwkvp_reply_kind k)
{
    return k >= RWKVP_REPLY_ACK && k <= RWKVP_REPLY_ERROR ? reply_names[k - 1] : NULL;
}

int rwkvp_reply_decode(const rwkvp_frame *f, size_t n, const rwkvp_limits *lim,
                       rwkvp_reply *out, rwkvp_error *err)
{
    rwkvp_error local;
    rwkvp_limits deflim;
    int rc = begin(f, n, out, &err, &local, &lim, &deflim);
    if (rc)
        return rc;
    if (n && frame_is(&f[0], RWKVP_SIGNATURE))
        salvage(f, n, 2, 3, 4, err);
    if ((rc = check_message(f, n, lim, err)) || (rc = check_signature(&f[0], 0, err)))
        return rc;
    if (n < 2)
        return fail(err, RWKVP_E_MALFORMED, -1, "message", "no kind frame");
    rwkvp_reply_kind kind = (rwkvp_reply_kind)lookup(&f[1], reply_names);
    if (!kind)
        return unknown_name(&f[1], 1, "kind", err);
    size_t want = kind == RWKVP_REPLY_CREDIT ? 6 : 7;
    if ((rc = check_count(n, want, want, reply_names[kind - 1], err)))
        return rc;
    rwkvp_reply r;
    memset(&r, 0, sizeof r);
    r.kind = kind;
    bool is_err = kind == RWKVP_REPLY_ERROR;
    if ((rc = check_name_frame(&f[2], 2, "channel", true, is_err, err)) ||
        (rc = check_name_frame(&f[3], 3, "producer", false, is_err, err)))
        return rc;
    r.channel = f[2];
    r.producer = f[3];
    switch (kind) {
    case RWKVP_REPLY_ACK:
    case RWKVP_REPLY_DUP:
        if ((rc = check_uint(&f[4], 4, "seq", &r.seq, err)) ||
            (rc = check_uint(&f[5], 5, "acked", &r.acked, err)) ||
            (rc = check_uint(&f[6], 6, "credit", &r.credit, err)))
            return rc;
        if (r.seq == 0)
            return fail(err, RWKVP_E_INVALID, 4, "seq", "seq 0 is reserved for SYNC");
        if (r.acked < r.seq)
            return fail(err, RWKVP_E_INVALID, 5, "acked", "acked %llu is below seq %llu",
                        (unsigned long long)r.acked, (unsigned long long)r.seq);
        r.has_seq = true;
        break;
    case RWKVP_REPLY_CREDIT:
        if ((rc = check_uint(&f[4], 4, "acked", &r.acked, err)) ||
            (rc = check_uint(&f[5], 5, "credit", &r.credit, err)))
            return rc;
        break;
    case RWKVP_REPLY_ERROR:
        if (f[4].len) {
            if ((rc = check_uint(&f[4], 4, "seq", &r.seq, err)))
                return rc;
            r.has_seq = true;
        }
        if ((rc = check_code(&f[5], 5, false, &r.code, err)) ||
            (rc = check_text(&f[6], 6, "text", true, err)))
            return rc;
        r.text = f[6];
        break;
    }
    *out = r;
    return 0;
}

int rwkvp_reply_encode(const rwkvp_reply *m, rwkvp_msg *out, rwkvp_error *err)
{
    if (!m || !out || !view_ok(&m->channel) || !view_ok(&m->producer) || !view_ok(&m->text))
        return encode_fail(err, RWKVP_E_MALFORMED, "message", "NULL argument");
    const char *name = rwkvp_reply_kind_name(m->kind);
    if (!name)
        return encode_fail(err, RWKVP_E_UNKNOWN_OP, "kind", "kind outside rwkvp_reply_kind");
    out->n = 0;
    put_str(out, RWKVP_SIGNATURE);
    put_str(out, name);
    put(out, m->channel.data, m->channel.len);
    put(out, m->producer.data, m->producer.len);
    switch (m->kind) {
    case RWKVP_REPLY_ACK:
    case RWKVP_REPLY_DUP:
        put_uint(out, 0, m->seq);
        put_uint(out, 1, m->acked);
        put_uint(out, 2, m->credit);
        break;
    case RWKVP_REPLY_CREDIT:
        put_uint(out, 0, m->acked);
        put_uint(out, 1, m->credit);
        break;
    case RWKVP_REPLY_ERROR:
        if (m->has_seq)
            put_uint(out, 0, m->seq);
        else
            put(out, NULL, 0);
        put_code(out, 1, m->code);
        put(out, m->text.data, m->text.len);
        break;
    }
    rwkvp_reply check;
    return rwkvp_reply_decode(out->frames, out->n, &no_limits, &check, err) ? -EINVAL : 0;
}

int rwkvp_reply_encode_error(const rwkvp_error *e, rwkvp_msg *out)
{
    if (!e)
        return -EINVAL;
    rwkvp_reply r;
    memset(&r, 0, sizeof r);
    r.kind = RWKVP_REPLY_ERROR;
    r.channel = e->channel;
    r.producer = e->producer;
    r.has_seq = e->has_seq;
    r.seq = e->seq;
    r.code = e->code;
    r.text.data = e->text;
    r.text.len = strnlen(e->text, sizeof e->text);
    return rwkvp_reply_encode(&r, out, NULL);
}

/* ---- publish ----------------------------------------------------------------------------------- */

static const char *const pub_names[] = {"CLASS", "TEXT", "END", "ERROR", NULL};

const char *rwkvp_pub_kind_name(rwkvp_pub_kind k)
{
    return k >= RWKVP_PUB_CLASS && k <= RWKVP_PUB_ERROR ? pub_names[k - 1] : NULL;
}

int rwkvp_pub_decode(const rwkvp_frame *f, size_t n, const rwkvp_limits *lim, rwkvp_pub *out,
                     rwkvp_error *err)
{
    rwkvp_error local;
    rwkvp_limits deflim;
    int rc = begin(f, n, out, &err, &local, &lim, &deflim);
    if (rc)
        return rc;
    if (n > 1 && frame_is(&f[1], RWKVP_SIGNATURE))
        salvage(f, n, 0, 3, 4, err);
    if ((rc = check_message(f, n, lim, err)))
        return rc;
    if (n < 2)
        return fail(err, RWKVP_E_MALFORMED, -1, "message", "no signature frame");
    if ((rc = check_signature(&f[1], 1, err)))
        return rc;
    if (n < 3)
        return fail(err, RWKVP_E_MALFORMED, -1, "message", "no kind frame");
    rwkvp_pub_kind kind = (rwkvp_pub_kind)lookup(&f[2], pub_names);
    if (!kind)
        return unknown_name(&f[2], 2, "kind", err);
    size_t want = kind == RWKVP_PUB_TEXT || kind == RWKVP_PUB_ERROR ? 8 : 7;
    if ((rc = check_count(n, want, want + 1, pub_names[kind - 1], err))) /* + the optional oseq */
        return rc;
    rwkvp_pub p;
    memset(&p, 0, sizeof p);
    p.kind = kind;
    if ((rc = check_name_frame(&f[0], 0, "topic", true, false, err)) ||
        (rc = check_name_frame(&f[3], 3, "producer", false, true, err)) ||
        (rc = check_uint(&f[4], 4, "seq", &p.seq, err)))
        return rc;
    if ((f[3].len == 0) != (p.seq == 0))
        return fail(err, RWKVP_E_INVALID, 4, "seq",
                    p.seq ? "seq %llu without a producer" : "seq %llu with a producer",
                    (unsigned long long)p.seq);
    if ((rc = check_uint(&f[5], 5, "tokens_seen", &p.tokens_seen, err)))
        return rc;
    switch (kind) {
    case RWKVP_PUB_CLASS:
    case RWKVP_PUB_END:
        rc = check_text(&f[6], 6, "result", true, err);
        p.body = f[6];
        break;
    case RWKVP_PUB_TEXT:
        if (!(rc = check_uint(&f[6], 6, "index", &p.index, err)))
            rc = check_text(&f[7], 7, "piece", true, err);
        p.body = f[7];
        break;
    case RWKVP_PUB_ERROR:
        if (!(rc = check_code(&f[6], 6, false, &p.code, err)))
            rc = check_text(&f[7], 7, "text", true, err);
        p.body = f[7];
        break;
    }
    if (rc)
        return rc;
    if (n > want) {
        if ((rc = check_uint(&f[want], (int)want, "oseq", &p.oseq, err)))
            return rc;
        if (p.oseq == 0)
            return fail(err, RWKVP_E_INVALID, (int)want, "oseq", "oseq is 0 (output sequence numbers start at 1)");
    }
    p.channel = f[0];
    p.producer = f[3];
    *out = p;
    return 0;
}

int rwkvp_pub_encode(const rwkvp_pub *m, rwkvp_msg *out, rwkvp_error *err)
{
    if (!m || !out || !view_ok(&m->channel) || !view_ok(&m->producer) || !view_ok(&m->body))
        return encode_fail(err, RWKVP_E_MALFORMED, "message", "NULL argument");
    const char *name = rwkvp_pub_kind_name(m->kind);
    if (!name)
        return encode_fail(err, RWKVP_E_UNKNOWN_OP, "kind", "kind outside rwkvp_pub_kind");
    out->n = 0;
    put(out, m->channel.data, m->channel.len);
    put_str(out, RWKVP_SIGNATURE);
    put_str(out, name);
    put(out, m->producer.data, m->producer.len);
    put_uint(out, 0, m->seq);
    put_uint(out, 1, m->tokens_seen);
    if (m->kind == RWKVP_PUB_TEXT)
        put_uint(out, 2, m->index);
    else if (m->kind == RWKVP_PUB_ERROR)
        put_code(out, 2, m->code);
    put(out, m->body.data, m->body.len);
    if (m->oseq)
        put_uint(out, 3, m->oseq);
    rwkvp_pub check;
    return rwkvp_pub_decode(out->frames, out->n, &no_limits, &check, err) ? -EINVAL : 0;
}

/* ---- control ---------------------------------------------------------------------------------- */

static const char *const ctl_names[] = {"STATUS", "CHANNELS", "INFO",     "RESET",  "EVICT",
                                        "DROP",   "SNAPSHOT", "RELOAD",   "METRICS", "EXPORT",
                                        "IMPORT", "FORK",     "REPLAY", NULL};

const char *rwkvp_ctl_cmd_name(rwkvp_ctl_cmd c)
{
    return c >= RWKVP_CTL_STATUS && c <= RWKVP_CTL_REPLAY ? ctl_names[c - 1] : NULL;
}

int rwkvp_ctl_request_decode(const rwkvp_frame *f, size_t n, const rwkvp_limits *lim,
                             rwkvp_ctl_request *out, rwkvp_error *err)
{
    rwkvp_error local;
    rwkvp_limits deflim;
    int rc = begin(f, n, out, &err, &local, &lim, &deflim);
    if (rc)
        return rc;
    if ((rc = check_message(f, n, lim, err)) || (rc = check_signature(&f[0], 0, err)))
        return rc;
    if (n < 2)
        return fail(err, RWKVP_E_MALFORMED, -1, "message", "no command frame");
    rwkvp_ctl_cmd cmd = (rwkvp_ctl_cmd)lookup(&f[1], ctl_names);
    if (!cmd)
        return unknown_name(&f[1], 1, "command", err);
    size_t lo = 2, hi = 2;
    switch (cmd) {
    case RWKVP_CTL_CHANNELS:
        hi = 4;
        break;
    case RWKVP_CTL_INFO:
    case RWKVP_CTL_RESET:
    case RWKVP_CTL_EVICT:
    case RWKVP_CTL_DROP:
    case RWKVP_CTL_EXPORT:
        lo = hi = 3;
        if (n > 2)
            salvage(f, n, 2, SIZE_MAX, SIZE_MAX, err);
        break;
    case RWKVP_CTL_IMPORT:
    case RWKVP_CTL_FORK:
    case RWKVP_CTL_REPLAY:
        lo = hi = 4;
        if (n > 2)
            salvage(f, n, 2, SIZE_MAX, SIZE_MAX, err);
        break;
    case RWKVP_CTL_SNAPSHOT:
        hi = 3;
        break;
    default:
        break;
    }
    if ((rc = check_count(n, lo, hi, ctl_names[cmd - 1], err)))
        return rc;
    rwkvp_ctl_request r;
    memset(&r, 0, sizeof r);
    r.cmd = cmd;
    if (cmd == RWKVP_CTL_CHANNELS) {
        if (n > 2 && (rc = check_name_frame(&f[2], 2, "prefix", true, true, err)))
            return rc;
        if (n > 3 && (rc = check_name_frame(&f[3], 3, "after", true, true, err)))
            return rc;
        if (n > 2)
            r.prefix = f[2];
        if (n > 3)
            r.after = f[3];
    } else if (n > 2) {
        if ((rc = check_name_frame(&f[2], 2, "channel", true, false, err)))
            return rc;
        r.channel = f[2];
        if (cmd == RWKVP_CTL_FORK) {
            if ((rc = check_name_frame(&f[3], 3, "channel", true, false, err)))
                return rc;
            r.dst = f[3];
        } else if (cmd == RWKVP_CTL_IMPORT) {
            if (f[3].len == 0)
                return fail(err, RWKVP_E_INVALID, 3, "blob", "empty snapshot image");
            r.blob = f[3];
        } else if (cmd == RWKVP_CTL_REPLAY) {
            if ((rc = check_uint(&f[3], 3, "after", &r.after_oseq, err)))
                return rc;
        }
    }
    *out = r;
    return 0;
}

int rwkvp_ctl_request_encode(const rwkvp_ctl_request *m, rwkvp_msg *out, rwkvp_error *err)
{
    if (!m || !out || !view_ok(&m->channel) || !view_ok(&m->prefix) || !view_ok(&m->after) ||
        !view_ok(&m->dst) || !view_ok(&m->blob))
        return encode_fail(err, RWKVP_E_MALFORMED, "message", "NULL argument");
    const char *name = rwkvp_ctl_cmd_name(m->cmd);
    if (!name)
        return encode_fail(err, RWKVP_E_UNKNOWN_OP, "command", "command outside rwkvp_ctl_cmd");
    out->n = 0;
    put_str(out, RWKVP_SIGNATURE);
    put_str(out, name);
    switch (m->cmd) {
    case RWKVP_CTL_CHANNELS:
        if (m->prefix.len || m->after.len)
            put(out, m->prefix.data, m->prefix.len);
        if (m->after.len)
            put(out, m->after.data, m->after.len);
        break;
    case RWKVP_CTL_INFO:
    case RWKVP_CTL_RESET:
    case RWKVP_CTL_EVICT:
    case RWKVP_CTL_DROP:
    case RWKVP_CTL_EXPORT:
        put(out, m->channel.data, m->channel.len);
        break;
    case RWKVP_CTL_IMPORT:
        put(out, m->channel.data, m->channel.len);
        put(out, m->blob.data, m->blob.len);
        break;
    case RWKVP_CTL_FORK:
        put(out, m->channel.data, m->channel.len);
        put(out, m->dst.data, m->dst.len);
        break;
    case RWKVP_CTL_REPLAY:
        put(out, m->channel.data, m->channel.len);
        put_uint(out, 0, m->after_oseq);
        break;
    case RWKVP_CTL_SNAPSHOT:
        if (m->channel.len)
            put(out, m->channel.data, m->channel.len);
        break;
    default:
        break;
    }
    rwkvp_ctl_request check;
    return rwkvp_ctl_request_decode(out->frames, out->n, &no_limits, &check, err) ? -EINVAL : 0;
}

int rwkvp_ctl_response_decode(const rwkvp_frame *f, size_t n, const rwkvp_limits *lim,
                              rwkvp_ctl_response *out, rwkvp_error *err)
{
    rwkvp_error local;
    rwkvp_limits deflim;
    int rc = begin(f, n, out, &err, &local, &lim, &deflim);
    if (rc)
        return rc;
    if ((rc = check_message(f, n, lim, err)) || (rc = check_signature(&f[0], 0, err)) ||
        (rc = check_count(n, 3, 4, "a control reply", err)))
        return rc;
    int code = 0;
    if ((rc = check_code(&f[1], 1, true, &code, err)) ||
        (rc = check_text(&f[2], 2, "body", code != RWKVP_OK, err)))
        return rc;
    if (n == 4 && code != RWKVP_OK)
        return fail(err, RWKVP_E_MALFORMED, 3, "blob", "only a 200 reply carries a blob frame");
    if (n == 4 && f[3].len == 0)
        return fail(err, RWKVP_E_MALFORMED, 3, "blob", "empty blob frame");
    out->code = code;
    out->body = f[2];
    out->blob = n == 4 ? f[3] : (rwkvp_frame){"", 0};
    return 0;
}

int rwkvp_ctl_response_encode(const rwkvp_ctl_response *m, rwkvp_msg *out, rwkvp_error *err)
{
    if (!m || !out || !view_ok(&m->body) || !view_ok(&m->blob))
        return encode_fail(err, RWKVP_E_MALFORMED, "message", "NULL argument");
    out->n = 0;
    put_str(out, RWKVP_SIGNATURE);
    put_code(out, 0, m->code);
    put(out, m->body.data, m->body.len);
    if (m->blob.len)
        put(out, m->blob.data, m->blob.len);
    rwkvp_ctl_response check;
    return rwkvp_ctl_response_decode(out->frames, out->n, &no_limits, &check, err) ? -EINVAL : 0;
}
