/* rwkvp_json.c — GEN parameters, CLASS and END bodies with jansson (see rwkvp_json.h).
 *
 * What it is: one table of GEN members drives both the parser (type, range, unknown and
 * duplicate members) and the encoder; encoders check their output by parsing it back.
 * What it is not: a place for daemon policy (profile defaults, configured limits).
 * Invariant: error texts are printable ASCII; member names and other request octets are
 * shown escaped, never raw.
 */
#include "rwkvp_json.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GEN_FRAME 5

typedef enum { M_INT, M_NUM, M_BOOL, M_STOP } member_type;

static const struct member {
    const char *name;
    unsigned bit;
    member_type type;
    double lo, hi;
    bool lo_open; /* range excludes lo */
} members[] = {
    {"max_tokens", RWKVP_GEN_HAS_MAX_TOKENS, M_INT, 1, RWKVP_GEN_MAX_TOKENS, false},
    {"temperature", RWKVP_GEN_HAS_TEMPERATURE, M_NUM, 0, 100, false},
    {"top_p", RWKVP_GEN_HAS_TOP_P, M_NUM, 0, 1, false},
    {"top_k", RWKVP_GEN_HAS_TOP_K, M_INT, 0, RWKVP_GEN_MAX_TOP_K, false},
    {"presence_penalty", RWKVP_GEN_HAS_PRESENCE_PENALTY, M_NUM, -100, 100, false},
    {"frequency_penalty", RWKVP_GEN_HAS_FREQUENCY_PENALTY, M_NUM, -100, 100, false},
    {"penalty_decay", RWKVP_GEN_HAS_PENALTY_DECAY, M_NUM, 0, 1, true},
    {"seed", RWKVP_GEN_HAS_SEED, M_INT, 0, (double)RWKVP_SEED_MAX, false},
    {"stop", RWKVP_GEN_HAS_STOP, M_STOP, 0, 0, false},
    {"commit", RWKVP_GEN_HAS_COMMIT, M_BOOL, 0, 0, false},
};
#define N_MEMBERS (sizeof members / sizeof members[0])

void rwkvp_gen_params_default(rwkvp_gen_params *p)
{
    if (!p)
        return;
    memset(p, 0, sizeof *p);
    p->max_tokens = 128;
    p->temperature = 1.0;
    p->top_p = 0.85;
    p->penalty_decay = 0.996;
}

/* Printable-ASCII copy of untrusted text, at most 40 octets shown. */
static void escape(char *out, size_t cap, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == 40) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02X", c);
    }
    if (cap)
        out[o < cap ? o : cap - 1] = 0;
}

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int gen_fail(rwkvp_error *e, int code, const char *field, const char *fmt, ...)
{
    memset(e, 0, sizeof *e);
    va_list ap;
    va_start(ap, fmt);
    int rc = rwkvp_error_vset(e, code, GEN_FRAME, field, "params", fmt, ap);
    va_end(ap);
    return rc;
}

static int range_fail(rwkvp_error *e, const struct member *m)
{
    if (m->type == M_INT)
        return gen_fail(e, RWKVP_E_INVALID, m->name, "%s must be an integer in %.0f..%.0f", m->name,
                        m->lo, m->hi);
    return gen_fail(e, RWKVP_E_INVALID, m->name, "%s must be a number in %s%g..%g", m->name,
                    m->lo_open ? "(exclusive) " : "", m->lo, m->hi);
}

static int parse_stop(json_t *v, rwkvp_gen_params *p, rwkvp_error *e)
{
    if (!json_is_array(v))
        return gen_fail(e, RWKVP_E_INVALID, "stop", "stop must be an array of strings");
    size_t n = json_array_size(v);
    if (n > RWKVP_STOP_MAX)
        return gen_fail(e, RWKVP_E_INVALID, "stop", "stop has %zu strings, at most %d allowed", n,
                        RWKVP_STOP_MAX);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(v, i);
        if (!json_is_string(s))
            return gen_fail(e, RWKVP_E_INVALID, "stop", "stop[%zu] is not a string", i);
        size_t len = json_string_length(s);
        const char *str = json_string_value(s);
        if (len == 0 || len > RWKVP_STOP_BYTES)
            return gen_fail(e, RWKVP_E_INVALID, "stop", "stop[%zu] has %zu octets, allowed 1..%d",
                            i, len, RWKVP_STOP_BYTES);
        if (memchr(str, 0, len))
            return gen_fail(e, RWKVP_E_INVALID, "stop", "stop[%zu] contains U+0000", i);
        memcpy(p->stop[i], str, len);
        p->stop[i][len] = 0;
        p->stop_len[i] = len;
    }
    p->n_stop = n;
    return 0;
}

static int parse_member(const struct member *m, json_t *v, rwkvp_gen_params *p, rwkvp_error *e)
{
    double d = 0;
    switch (m->type) {
    case M_INT:
        if (!json_is_integer(v))
            return range_fail(e, m);
        d = (double)json_integer_value(v);
        if (json_integer_value(v) < 0 || d < m->lo || d > m->hi)
            return range_fail(e, m);
        break;
    case M_NUM:
        if (!json_is_number(v))
            return range_fail(e, m);
        d = json_number_value(v);
        if (!isfinite(d) || d < m->lo || d > m->hi || (m->lo_open && d == m->lo))
            return range_fail(e, m);
        break;
    case M_BOOL:
        if (!json_is_boolean(v))
            return gen_fail(e, RWKVP_E_INVALID, m->name, "%s must be true or false", m->name);
        break;
    case M_STOP:
        return parse_stop(v, p, e);
    }
    switch (m->bit) {
    case RWKVP_GEN_HAS_MAX_TOKENS: p->max_tokens = (uint32_t)json_integer_value(v); break;
    case RWKVP_GEN_HAS_TEMPERATURE: p->temperature = d; break;
    case RWKVP_GEN_HAS_TOP_P: p->top_p = d; break;
    case RWKVP_GEN_HAS_TOP_K: p->top_k = (uint32_t)json_integer_value(v); break;
    case RWKVP_GEN_HAS_PRESENCE_PENALTY: p->presence_penalty = d; break;
    case RWKVP_GEN_HAS_FREQUENCY_PENALTY: p->frequency_penalty = d; break;
    case RWKVP_GEN_HAS_PENALTY_DECAY: p->penalty_decay = d; break;
    case RWKVP_GEN_HAS_SEED: p->seed = (uint64_t)json_integer_value(v); break;
    case RWKVP_GEN_HAS_COMMIT: p->commit = json_is_true(v); break;
    default: break;
    }
    return 0;
}

int rwkvp_gen_params_parse(const void *json, size_t len, rwkvp_gen_params *out, rwkvp_error *err)
{
    rwkvp_error local;
    if (!err)
        err = &local;
    memset(err, 0, sizeof *err);
    if (!out || (len && !json))
        return -EINVAL;
    rwkvp_gen_params p;
    rwkvp_gen_params_default(&p);
    if (len == 0) {
        *out = p;
        return 0;
    }
    size_t bad = 0;
    if (!rwkvp_utf8_valid(json, len, &bad))
        return gen_fail(err, RWKVP_E_ENCODING, "params", "invalid UTF-8 at octet %zu", bad);
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!root) {
        if (json_error_code(&je) == json_error_out_of_memory)
            return -ENOMEM;
        char msg[96];
        escape(msg, sizeof msg, je.text, strlen(je.text));
        return gen_fail(err, RWKVP_E_MALFORMED, "params", "JSON error at line %d column %d: %s",
                        je.line, je.column, msg);
    }
    int rc = 0;
    if (!json_is_object(root)) {
        rc = gen_fail(err, RWKVP_E_MALFORMED, "params", "not a JSON object");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        const struct member *m = NULL;
        for (size_t i = 0; i < N_MEMBERS && !m; i++)
            if (strcmp(members[i].name, key) == 0)
                m = &members[i];
        if (!m) {
            char k[128];
            escape(k, sizeof k, key, strlen(key));
            rc = gen_fail(err, RWKVP_E_INVALID, "params", "unknown member \"%s\"", k);
            goto out;
        }
        if ((rc = parse_member(m, v, &p, err)))
            goto out;
        p.present |= m->bit;
    }
    *out = p;
out:
    json_decref(root);
    return rc;
}

/* Copy a dumped document out, or report the size needed. */
static int emit(const char *s, char *buf, size_t cap, size_t *needed)
{
    size_t len = strlen(s);
    if (needed)
        *needed = len;
    if (!buf || cap < len)
        return -ENOBUFS;
    memcpy(buf, s, len);
    return 0;
}

static json_t *gen_to_json(const rwkvp_gen_params *p)
{
    json_t *o = json_object();
    bool ok = o != NULL;
    for (size_t i = 0; ok && i < N_MEMBERS; i++) {
        const struct member *m = &members[i];
        if (!(p->present & m->bit))
            continue;
        json_t *v = NULL;
        switch (m->bit) {
        case RWKVP_GEN_HAS_MAX_TOKENS: v = json_integer(p->max_tokens); break;
        case RWKVP_GEN_HAS_TEMPERATURE: v = json_real(p->temperature); break;
        case RWKVP_GEN_HAS_TOP_P: v = json_real(p->top_p); break;
        case RWKVP_GEN_HAS_TOP_K: v = json_integer(p->top_k); break;
        case RWKVP_GEN_HAS_PRESENCE_PENALTY: v = json_real(p->presence_penalty); break;
        case RWKVP_GEN_HAS_FREQUENCY_PENALTY: v = json_real(p->frequency_penalty); break;
        case RWKVP_GEN_HAS_PENALTY_DECAY: v = json_real(p->penalty_decay); break;
        case RWKVP_GEN_HAS_SEED:
            v = p->seed <= RWKVP_SEED_MAX ? json_integer((json_int_t)p->seed) : NULL;
            break;
        case RWKVP_GEN_HAS_COMMIT: v = json_boolean(p->commit); break;
        case RWKVP_GEN_HAS_STOP:
            v = p->n_stop <= RWKVP_STOP_MAX ? json_array() : NULL;
            for (size_t k = 0; v && k < p->n_stop; k++)
                if (p->stop_len[k] > RWKVP_STOP_BYTES ||
                    json_array_append_new(v, json_stringn(p->stop[k], p->stop_len[k])) != 0) {
                    json_decref(v);
                    v = NULL;
                }
            break;
        default: break;
        }
        ok = v && json_object_set_new(o, m->name, v) == 0;
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static bool gen_equal(const rwkvp_gen_params *a, const rwkvp_gen_params *b)
{
    if (a->present != b->present)
        return false;
    unsigned f = a->present;
#define SAME(bit, field) (!(f & (bit)) || a->field == b->field)
    if (!SAME(RWKVP_GEN_HAS_MAX_TOKENS, max_tokens) || !SAME(RWKVP_GEN_HAS_TEMPERATURE, temperature) ||
        !SAME(RWKVP_GEN_HAS_TOP_P, top_p) || !SAME(RWKVP_GEN_HAS_TOP_K, top_k) ||
        !SAME(RWKVP_GEN_HAS_PRESENCE_PENALTY, presence_penalty) ||
        !SAME(RWKVP_GEN_HAS_FREQUENCY_PENALTY, frequency_penalty) ||
        !SAME(RWKVP_GEN_HAS_PENALTY_DECAY, penalty_decay) || !SAME(RWKVP_GEN_HAS_SEED, seed) ||
        !SAME(RWKVP_GEN_HAS_COMMIT, commit) || !SAME(RWKVP_GEN_HAS_STOP, n_stop))
        return false;
#undef SAME
    for (size_t k = 0; (f & RWKVP_GEN_HAS_STOP) && k < a->n_stop; k++)
        if (a->stop_len[k] != b->stop_len[k] || memcmp(a->stop[k], b->stop[k], a->stop_len[k]))
            return false;
    return true;
}

int rwkvp_gen_params_encode(const rwkvp_gen_params *p, char *buf, size_t cap, size_t *needed)
{
    if (!p)
        return -EINVAL;
    json_t *o = gen_to_json(p);
    if (!o)
        return -EINVAL;
    /* 15 significant digits print what people type ("0.7"); 17 are exact for any double. */
    int rc = -EINVAL;
    for (int prec = 15; prec <= 17 && rc == -EINVAL; prec += 2) {
        char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(prec));
        if (!s) {
            rc = -ENOMEM;
            break;
        }
        rwkvp_gen_params back;
        if (rwkvp_gen_params_parse(s, strlen(s), &back, NULL) == 0 && gen_equal(p, &back))
            rc = emit(s, buf, cap, needed);
        free(s);
    }
    json_decref(o);
    return rc;
}

/* The shortest decimal (at most 9 digits) that reads back as f, as a double. */
static double short_decimal(float f)
{
    char s[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(s, sizeof s, "%.*g", digits, (double)f);
        if (strtof(s, NULL) == f)
            return strtod(s, NULL);
    }
    return (double)f;
}

static int dump(json_t *o, char *buf, size_t cap, size_t *needed)
{
    if (!o)
        return -ENOMEM;
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(o);
    if (!s)
        return -ENOMEM;
    int rc = emit(s, buf, cap, needed);
    free(s);
    return rc;
}

int rwkvp_class_encode(const char *profile, size_t n, const char *const *labels,
                       const float *probs, char *buf, size_t cap, size_t *needed)
{
    if (!profile || n == 0 || !labels || !probs ||
        rwkvp_name_check(profile, strlen(profile), NULL) != 0)
        return -EINVAL;
    size_t top = 0;
    for (size_t i = 0; i < n; i++) {
        if (!labels[i] || !isfinite(probs[i]) || probs[i] < 0 || probs[i] > 1)
            return -EINVAL;
        if (probs[i] > probs[top])
            top = i;
    }
    json_t *o = json_object(), *l = json_array(), *pr = json_array();
    int rc = 0;
    if (!o || !l || !pr) {
        rc = -ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_string(labels[i]); /* NULL for invalid UTF-8 */
        if (!s) {
            rc = -EINVAL;
            goto fail;
        }
        if (json_array_append_new(l, s) || json_array_append_new(pr, json_real(short_decimal(probs[i])))) {
            rc = -ENOMEM;
            goto fail;
        }
    }
    if (json_object_set_new(o, "profile", json_string(profile)) ||
        json_object_set(o, "labels", l) || json_object_set(o, "probs", pr) ||
        json_object_set_new(o, "top", json_string(labels[top]))) {
        rc = -ENOMEM;
        goto fail;
    }
    json_decref(l);
    json_decref(pr);
    return dump(o, buf, cap, needed);
fail:
    json_decref(o);
    json_decref(l);
    json_decref(pr);
    return rc;
}

static const char *const end_names[] = {"max_tokens", "stop", "eos", "cancelled", "error"};

const char *rwkvp_end_reason_name(rwkvp_end_reason r)
{
    return r >= RWKVP_END_MAX_TOKENS && r <= RWKVP_END_ERROR ? end_names[r - 1] : NULL;
}

int rwkvp_end_encode(const rwkvp_end *e, char *buf, size_t cap, size_t *needed)
{
    if (!e)
        return -EINVAL;
    const char *reason = rwkvp_end_reason_name(e->reason);
    bool want_stop = e->reason == RWKVP_END_STOP;
    if (!reason || (e->text.len && !e->text.data) || (e->stop.len && !e->stop.data) ||
        want_stop != (e->stop.len > 0) || e->n_tokens > RWKVP_SEED_MAX || e->seed > RWKVP_SEED_MAX)
        return -EINVAL;
    json_t *text = json_stringn(e->text.len ? e->text.data : "", e->text.len);
    json_t *stop = want_stop ? json_stringn(e->stop.data, e->stop.len) : NULL;
    if (!text || (want_stop && !stop)) { /* invalid UTF-8 */
        json_decref(text);
        json_decref(stop);
        return -EINVAL;
    }
    json_t *o = json_object();
    if (!o) {
        json_decref(text);
        json_decref(stop);
        return -ENOMEM;
    }
    /* Every _set_new takes its value's reference even when it fails, so call them all. */
    int bad = json_object_set_new(o, "reason", json_string(reason));
    bad |= json_object_set_new(o, "n_tokens", json_integer((json_int_t)e->n_tokens));
    bad |= json_object_set_new(o, "text", text);
    if (want_stop)
        bad |= json_object_set_new(o, "stop", stop);
    bad |= json_object_set_new(o, "seed", json_integer((json_int_t)e->seed));
    bad |= json_object_set_new(o, "committed", json_boolean(e->committed));
    if (bad) {
        json_decref(o);
        return -ENOMEM;
    }
    return dump(o, buf, cap, needed);
}
