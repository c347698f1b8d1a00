/* pubjson.c — one decoded publication as the JSON line rwkvsub prints; see rwkvc.h for
 * the members. jansson builds and serialises it; every string is passed with its length,
 * so text holding U+0000 survives (as \u0000). */
#include "rwkvc.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* The members of p; without the per-kind ones when common_only. */
static json_t *build(const rwkvp_pub *p, bool common_only)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = 0;
    bad |= json_object_set_new(o, "channel", json_stringn(p->channel.data ? p->channel.data : "", p->channel.len));
    bad |= json_object_set_new(o, "kind", json_string(rwkvp_pub_kind_name(p->kind)));
    bad |= json_object_set_new(o, "producer",
                               json_stringn(p->producer.data ? p->producer.data : "", p->producer.len));
    bad |= json_object_set_new(o, "seq", json_integer((json_int_t)p->seq));
    bad |= json_object_set_new(o, "tokens_seen", json_integer((json_int_t)p->tokens_seen));
    if (p->oseq)
        bad |= json_object_set_new(o, "oseq", json_integer((json_int_t)p->oseq));
    const char *body = p->body.data ? p->body.data : "";
    switch (common_only ? 0 : (int)p->kind) {
    case RWKVP_PUB_CLASS:
    case RWKVP_PUB_END: {
        json_error_t je;
        json_t *b = json_loadb(body, p->body.len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
        if (b)
            bad |= json_object_set_new(o, "body", b);
        else
            bad |= json_object_set_new(o, "body_raw", json_stringn(body, p->body.len));
        break;
    }
    case RWKVP_PUB_TEXT:
        bad |= json_object_set_new(o, "index", json_integer((json_int_t)p->index));
        bad |= json_object_set_new(o, "piece", json_stringn(body, p->body.len));
        break;
    case RWKVP_PUB_ERROR:
        bad |= json_object_set_new(o, "code", json_integer(p->code));
        bad |= json_object_set_new(o, "text", json_stringn(body, p->body.len));
        break;
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* CLASS and END bodies are spliced in as the daemon wrote them (after checking that they
 * parse and fit on one line), so numbers keep their exact text: re-serialising would print
 * the float probabilities with 17 digits. */
static bool splice_body(const rwkvp_pub *p)
{
    if (p->kind != RWKVP_PUB_CLASS && p->kind != RWKVP_PUB_END)
        return false;
    if (!p->body.len || memchr(p->body.data, '\n', p->body.len) || memchr(p->body.data, '\r', p->body.len))
        return false;
    json_error_t je;
    json_t *b = json_loadb(p->body.data, p->body.len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    bool ok = json_is_object(b);
    json_decref(b);
    return ok;
}

char *rwkvc_pub_json(const rwkvp_pub *p)
{
    bool splice = splice_body(p);
    json_t *o = build(p, splice);
    if (!o)
        return NULL;
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s || !splice)
        return s;
    size_t n = strlen(s); /* ends with '}' */
    char *out = malloc(n + p->body.len + sizeof ",\"body\":");
    if (!out) {
        free(s);
        return NULL;
    }
    memcpy(out, s, n - 1);
    size_t o2 = n - 1;
    memcpy(out + o2, ",\"body\":", 8);
    o2 += 8;
    memcpy(out + o2, p->body.data, p->body.len);
    o2 += p->body.len;
    out[o2++] = '}';
    out[o2] = '\0';
    free(s);
    return out;
}

int rwkvc_pub_print(FILE *f, const rwkvp_pub *p)
{
    char *s = rwkvc_pub_json(p);
    if (!s)
        return -ENOMEM;
    int rc = fputs(s, f) < 0 || fputc('\n', f) == EOF || fflush(f) != 0 ? -EIO : 0;
    free(s);
    return rc;
}
