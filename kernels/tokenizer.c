/* tokenizer.c — the RWKV World tokenizer (spec §5) and the byte-level vocabulary.
 *
 * A vocabulary is a table of byte strings indexed by id plus a trie over those strings for
 * greedy longest-match encoding; decoding concatenates byte strings, and the streaming
 * decoder turns the byte stream into valid UTF-8 one id at a time.
 * Not a BPE tokenizer (the 20B/NeoX tokenizer of v4 models is out of scope) and not a text
 * normaliser: bytes in, ids out, no special-token parsing.
 * Invariant: after load nothing is written; the children of every trie node are stored
 * next to each other sorted by byte, so a lookup is a binary search in one short run.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* O_CLOEXEC, ssize_t read() */
#endif
#include "rwkv_tokenizer.h"
#include "errbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Hard limits that keep a hostile file from exhausting memory or stack (the trie builder
 * recurses once per byte of the longest token). The World vocabulary needs 65,529 ids,
 * 128-byte tokens and 147-byte lines. */
#define MAX_LINE_BYTES 4096
#define MAX_TOKEN_BYTES 1024
#define MAX_IDS (1 << 24)
#define MAX_FILE_BYTES (1u << 30)

static const uint8_t replacement_char[3] = {0xEF, 0xBF, 0xBD}; /* U+FFFD */

typedef struct {
    uint32_t first_child; /* index of the first child node; children are contiguous */
    int32_t id;           /* token ending exactly here, -1 if none */
    uint16_t n_child;     /* 0..256 */
    uint8_t byte;         /* label of the edge from the parent */
} trie_node;

struct rwkv_tokenizer {
    int n_ids;            /* one more than the largest id with bytes */
    size_t max_token_len; /* bytes of the longest token */
    uint32_t *offsets;    /* (n_ids + 1): id i is pool[offsets[i] .. offsets[i+1]) */
    uint8_t *pool;        /* (offsets[n_ids]) every token's bytes in id order */
    trie_node *nodes;     /* (n_nodes) node 0 is the root */
    uint32_t n_nodes;
    uint32_t root[256];   /* child of the root per first byte, 0 = none (the root is no child) */
};

/* ---------------------------------------------------------------- errors */

/* ---------------------------------------------------------------- UTF-8 */

/* Length of the UTF-8 sequence led by c (0 if c can never lead one) and the range allowed
 * for its second byte; the narrowed ranges after E0, ED, F0, F4 exclude overlong forms,
 * surrogates and code points above U+10FFFF (Unicode Table 3-7). */
static int utf8_lead(uint8_t c, uint8_t *lo, uint8_t *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c < 0xC2)
        return 0;
    if (c < 0xE0)
        return 2;
    if (c < 0xF0) {
        if (c == 0xE0)
            *lo = 0xA0;
        else if (c == 0xED)
            *hi = 0x9F;
        return 3;
    }
    if (c < 0xF5) {
        if (c == 0xF0)
            *lo = 0x90;
        else if (c == 0xF4)
            *hi = 0x8F;
        return 4;
    }
    return 0;
}

/* Length of the valid UTF-8 sequence at s[0..n), 0 if it is not one. */
static size_t utf8_valid_at(const uint8_t *s, size_t n)
{
    uint8_t lo, hi;
    int need = utf8_lead(s[0], &lo, &hi);
    if (need == 0 || (size_t)need > n)
        return 0;
    for (int k = 1; k < need; k++) {
        if (s[k] < lo || s[k] > hi)
            return 0;
        lo = 0x80;
        hi = 0xBF;
    }
    return (size_t)need;
}

/* Writes code point cp (caller checked: not a surrogate, <= U+10FFFF); returns bytes. */
static size_t utf8_put(uint8_t *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---------------------------------------------------------------- literal parser */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Exactly `digits` hex digits at s (all inside the literal, checked by the caller). */
static bool parse_hex(const char *s, int digits, uint32_t *v)
{
    uint32_t x = 0;
    for (int i = 0; i < digits; i++) {
        int h = hex_value(s[i]);
        if (h < 0)
            return false;
        x = x << 4 | (uint32_t)h;
    }
    *v = x;
    return true;
}

/* Decodes the Python literal s[0..n) the way eval() then str.encode("utf-8") would, into
 * out (room for n bytes: no escape decodes to more bytes than its source spelling).
 * Returns the byte count, or -1 with *why set; *is_bytes tells b'...' from '...'. */
static long parse_literal(const char *s, size_t n, uint8_t *out, bool *is_bytes, char *why,
                          size_t why_len)
{
    size_t i = 0;
    bool bytes = false;
    if (n > 0 && (s[0] == 'b' || s[0] == 'B')) {
        bytes = true;
        i = 1;
    }
    if (i >= n || (s[i] != '\'' && s[i] != '"')) {
        snprintf(why, why_len, "bad literal (expected a quoted string)");
        return -1;
    }
    char q = s[i];
    if (n - i < 2 || s[n - 1] != q) {
        snprintf(why, why_len, "unterminated literal");
        return -1;
    }
    size_t end = n - 1; /* index of the closing quote */
    size_t w = 0;
    for (size_t j = i + 1; j < end;) {
        uint8_t c = (uint8_t)s[j];
        if (c == (uint8_t)q) {
            snprintf(why, why_len, "unescaped quote at byte %zu of the literal", j + 1);
            return -1;
        }
        if (c != '\\') {
            if ((c < 0x20 && c != '\t') || c == 0x7F) {
                snprintf(why, why_len, "raw control byte 0x%02x in literal", c);
                return -1;
            }
            if (c < 0x80) {
                out[w++] = c;
                j++;
                continue;
            }
            if (bytes) {
                snprintf(why, why_len, "non-ASCII byte 0x%02x in bytes literal", c);
                return -1;
            }
            size_t k = utf8_valid_at((const uint8_t *)s + j, end - j);
            if (k == 0) {
                snprintf(why, why_len, "invalid UTF-8 at byte %zu of the literal", j + 1);
                return -1;
            }
            memcpy(out + w, s + j, k);
            w += k;
            j += k;
            continue;
        }
        /* An escape; a backslash right before the closing quote escapes that quote. */
        if (j + 1 >= end) {
            snprintf(why, why_len, "unterminated literal (closing quote is escaped)");
            return -1;
        }
        char e = s[j + 1];
        uint32_t cp;
        size_t skip = 2;
        switch (e) {
        case 'n': cp = '\n'; break;
        case 't': cp = '\t'; break;
        case 'r': cp = '\r'; break;
        case 'a': cp = '\a'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'v': cp = '\v'; break;
        case '\\': cp = '\\'; break;
        case '\'': cp = '\''; break;
        case '"': cp = '"'; break;
        case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7':
            /* Octal: one to three digits, as in Python (so "\0" is NUL). */
            cp = 0;
            skip = 1;
            while (skip < 4 && j + skip < end && s[j + skip] >= '0' && s[j + skip] <= '7') {
                cp = cp * 8 + (uint32_t)(s[j + skip] - '0');
                skip++;
            }
            break;
        case 'x':
        case 'u':
        case 'U': {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            if (bytes && e != 'x') {
                snprintf(why, why_len, "bad escape '\\%c' in bytes literal", e);
                return -1;
            }
            if (end - (j + 2) < (size_t)digits || !parse_hex(s + j + 2, digits, &cp)) {
                snprintf(why, why_len, "bad escape '\\%c' (needs %d hex digits)", e, digits);
                return -1;
            }
            skip = 2 + (size_t)digits;
            break;
        }
        default:
            if ((uint8_t)e >= 0x20 && (uint8_t)e < 0x7F)
                snprintf(why, why_len, "bad escape '\\%c'", e);
            else
                snprintf(why, why_len, "bad escape (backslash before byte 0x%02x)", (uint8_t)e);
            return -1;
        }
        if (bytes) {
            if (cp > 0xFF) {
                snprintf(why, why_len, "octal escape above 0xff in bytes literal");
                return -1;
            }
            out[w++] = (uint8_t)cp;
        } else {
            /* In a text literal every escape names a code point: '\x80' is U+0080, which is
             * the two bytes C2 80 after UTF-8 encoding (spec §5.1 pitfall). */
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
                snprintf(why, why_len, "escape names U+%04X, which has no UTF-8 encoding",
                         (unsigned)cp);
                return -1;
            }
            w += utf8_put(out + w, cp);
        }
        j += skip;
    }
    *is_bytes = bytes;
    return (long)w;
}

/* Decimal field s[0..n) -> *v; false on empty, non-digit or a value above `max`. */
static bool parse_uint(const char *s, size_t n, unsigned long max, unsigned long *v)
{
    if (n == 0 || n > 10)
        return false;
    unsigned long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (unsigned long)(s[i] - '0');
    }
    if (x > max)
        return false;
    *v = x;
    return true;
}

/* ---------------------------------------------------------------- trie */

typedef struct {
    const uint8_t *p;
    uint32_t len;
    int32_t id;
} entry;

static int entry_cmp(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, n);
    if (c)
        return c;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Fills node `node` from e[lo..hi): strings sorted, all longer than or equal to `depth`
 * and sharing their first `depth` bytes, no two equal. Children are allocated as one block
 * before any of them is filled, which is what keeps siblings contiguous. */
static void trie_fill(rwkv_tokenizer *t, const entry *e, uint32_t node, size_t lo, size_t hi,
                      uint32_t depth)
{
    trie_node *nd = &t->nodes[node];
    nd->id = -1;
    if (lo < hi && e[lo].len == depth) {
        nd->id = e[lo].id;
        lo++;
    }
    uint32_t n = 0;
    for (size_t i = lo; i < hi; n++) {
        uint8_t c = e[i].p[depth];
        while (i < hi && e[i].p[depth] == c)
            i++;
    }
    uint32_t first = t->n_nodes;
    nd->first_child = first;
    nd->n_child = (uint16_t)n;
    t->n_nodes += n;
    uint32_t k = 0;
    for (size_t i = lo; i < hi; k++) {
        size_t j = i;
        uint8_t c = e[i].p[depth];
        while (j < hi && e[j].p[depth] == c)
            j++;
        t->nodes[first + k].byte = c;
        trie_fill(t, e, first + k, i, j, depth + 1);
        i = j;
    }
}

/* Builds the trie from offsets/pool. Duplicates were rejected by the caller. */
static int trie_build(rwkv_tokenizer *t, entry *e, size_t n)
{
    size_t total = t->offsets[t->n_ids];
    t->nodes = malloc((total + 1) * sizeof *t->nodes);
    if (!t->nodes)
        return -ENOMEM;
    t->n_nodes = 1;
    t->nodes[0].byte = 0;
    trie_fill(t, e, 0, 0, n, 0);
    trie_node *shrunk = realloc(t->nodes, (size_t)t->n_nodes * sizeof *t->nodes);
    if (shrunk)
        t->nodes = shrunk;
    memset(t->root, 0, sizeof t->root);
    const trie_node *r = &t->nodes[0];
    for (uint32_t k = 0; k < r->n_child; k++)
        t->root[t->nodes[r->first_child + k].byte] = r->first_child + k;
    return 0;
}

static uint32_t trie_child(const rwkv_tokenizer *t, uint32_t node, uint8_t c)
{
    const trie_node *nd = &t->nodes[node];
    uint32_t lo = nd->first_child, hi = lo + nd->n_child, end = hi;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->nodes[mid].byte < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < end && t->nodes[lo].byte == c ? lo : 0;
}

/* Sorts all tokens, rejects duplicates and builds the trie. */
static int finish(rwkv_tokenizer *t, const char *name, char *err, size_t err_len)
{
    size_t n = 0;
    for (int id = 0; id < t->n_ids; id++)
        n += t->offsets[id + 1] > t->offsets[id];
    entry *e = malloc((n ? n : 1) * sizeof *e);
    if (!e)
        return -ENOMEM;
    size_t k = 0;
    t->max_token_len = 0;
    for (int id = 0; id < t->n_ids; id++) {
        uint32_t len = t->offsets[id + 1] - t->offsets[id];
        if (len == 0)
            continue;
        e[k++] = (entry){t->pool + t->offsets[id], len, id};
        if (len > t->max_token_len)
            t->max_token_len = len;
    }
    qsort(e, n, sizeof *e, entry_cmp);
    for (size_t i = 1; i < n; i++) {
        if (e[i].len == e[i - 1].len && memcmp(e[i].p, e[i - 1].p, e[i].len) == 0) {
            /* In a vocabulary file line number == id (ids are 1..n in order). */
            int rc = rwkv_errf(err, err_len, -EINVAL, name, (size_t)e[i].id,
                          "duplicate token (same bytes as id %d on line %d)", e[i - 1].id,
                          e[i - 1].id);
            free(e);
            return rc;
        }
    }
    int rc = trie_build(t, e, n);
    free(e);
    return rc;
}

/* ---------------------------------------------------------------- load */

void rwkv_tokenizer_destroy(rwkv_tokenizer **t)
{
    if (!t || !*t)
        return;
    free((*t)->offsets);
    free((*t)->pool);
    free((*t)->nodes);
    free(*t);
    *t = NULL;
}

int rwkv_tokenizer_load_buffer(const char *data, size_t len, const char *name,
                               rwkv_tokenizer **out, char *err, size_t err_len)
{
    if (!name)
        name = "<buffer>";
    if (!out || (!data && len))
        return rwkv_errf(err, err_len, -EINVAL, name, 0, "invalid arguments");
    if (len > MAX_FILE_BYTES)
        return rwkv_errf(err, err_len, -EINVAL, name, 0, "file too large (%zu bytes)", len);

    /* The line count bounds the id count and the buffer length bounds the pool, since no
     * literal decodes to more bytes than it spells; both are shrunk at the end. */
    size_t max_lines = 1;
    for (const char *p = data; p && (p = memchr(p, '\n', len - (size_t)(p - data))); p++)
        max_lines++;
    if (max_lines > MAX_IDS)
        max_lines = MAX_IDS;

    int rc = -ENOMEM;
    rwkv_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        (void)rwkv_errf(err, err_len, -EINVAL, name, 0, "out of memory");
        return -ENOMEM;
    }
    t->offsets = malloc((max_lines + 2) * sizeof *t->offsets);
    t->pool = malloc(len ? len : 1);
    if (!t->offsets || !t->pool)
        goto oom;

    t->offsets[0] = 0; /* id 0 (end of text) has no bytes */
    t->offsets[1] = 0;
    size_t n_tok = 0, line = 0, w = 0;
    const char *p = data, *end = data + len;
    char why[160];
    while (p < end) {
        line++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t L = (size_t)(le - p);
        const char *next = nl ? nl + 1 : end;
        if (L > MAX_LINE_BYTES) {
            rc = rwkv_errf(err, err_len, -EINVAL, name, line, "line too long (%zu bytes, limit %d)", L,
                      MAX_LINE_BYTES);
            goto out;
        }
        if (L > 0 && p[L - 1] == '\r') /* tolerate CRLF files */
            L--;
        if (L == 0) {
            rc = rwkv_errf(err, err_len, -EINVAL, name, line, "empty line");
            goto out;
        }
        if (line > MAX_IDS - 1) {
            rc = rwkv_errf(err, err_len, -EINVAL, name, line, "too many tokens (limit %d)", MAX_IDS - 1);
            goto out;
        }
        /* Split at the first and the last space: the literal may itself contain spaces. */
        const char *sp1 = memchr(p, ' ', L);
        const char *sp2 = p + L - 1;
        while (sp2 > p && *sp2 != ' ')
            sp2--;
        if (!sp1 || sp1 == sp2) {
            rc = rwkv_errf(err, err_len, -EINVAL, name, line,
                      "missing fields (expected '<id> <literal> <byte length>')");
            goto out;
        }
        unsigned long id, want;
        if (!parse_uint(p, (size_t)(sp1 - p), MAX_IDS, &id)) {
            rc = rwkv_errf(err, err_len, -EINVAL, name, line, "bad id field");
            goto out;
        }
        if (id != n_tok + 1) {
            rc = rwkv_errf(err, err_len, -EINVAL, name, line, "id %lu out of sequence (expected %zu)", id,
                      n_tok + 1);
            goto out;
        }
        if (!parse_uint(sp2 + 1, (size_t)(p + L - sp2 - 1), MAX_TOKEN_BYTES * 4UL, &want)) {
            rc = rwkv_errf(err, err_len, -EINVAL, name, line, "bad byte length field");
            goto out;
        }
        bool is_bytes;
        long got = parse_literal(sp1 + 1, (size_t)(sp2 - sp1 - 1), t->pool + w, &is_bytes, why,
                                 sizeof why);
        if (got < 0) {
            rc = rwkv_errf(err, err_len, -EINVAL, name, line, "%s", why);
            goto out;
        }
        if ((unsigned long)got != want) {
            rc = rwkv_errf(err, err_len, -EINVAL, name, line,
                      "byte length field says %lu but the literal decodes to %ld bytes", want,
                      got);
            goto out;
        }
        if (got == 0) {
            rc = rwkv_errf(err, err_len, -EINVAL, name, line, "empty token");
            goto out;
        }
        if (got > MAX_TOKEN_BYTES) {
            rc = rwkv_errf(err, err_len, -EINVAL, name, line, "token too long (%ld bytes, limit %d)", got,
                      MAX_TOKEN_BYTES);
            goto out;
        }
        w += (size_t)got;
        n_tok++;
        t->offsets[n_tok + 1] = (uint32_t)w;
        p = next;
    }
    if (n_tok == 0) {
        rc = rwkv_errf(err, err_len, -EINVAL, name, 1, "empty vocabulary");
        goto out;
    }
    t->n_ids = (int)n_tok + 1;
    uint8_t *pool = realloc(t->pool, w);
    if (pool)
        t->pool = pool;
    rc = finish(t, name, err, err_len);
    if (rc == -ENOMEM)
        goto oom;
    if (rc < 0)
        goto out;
    *out = t;
    return 0;
oom:
    (void)rwkv_errf(err, err_len, -EINVAL, name, 0, "out of memory");
    rc = -ENOMEM;
out:
    rwkv_tokenizer_destroy(&t);
    return rc;
}

int rwkv_tokenizer_load(const char *path, rwkv_tokenizer **out, char *err, size_t err_len)
{
    if (!path || !out)
        return rwkv_errf(err, err_len, -EINVAL, path ? path : "<null>", 0, "invalid arguments");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (err && err_len)
            snprintf(err, err_len, "%s: %s", path, strerror(e));
        return -e;
    }
    /* Read to EOF with a growing buffer so pipes and /proc files work too. */
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    int rc = 0;
    while (buf) {
        if (len == cap) {
            if (cap >= MAX_FILE_BYTES) {
                rc = rwkv_errf(err, err_len, -EINVAL, path, 0, "file too large (limit %u bytes)",
                          MAX_FILE_BYTES);
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            if (err && err_len)
                snprintf(err, err_len, "%s: %s", path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (!buf) {
        if (err && err_len)
            snprintf(err, err_len, "%s: out of memory", path);
        return -ENOMEM;
    }
    if (rc == 0)
        rc = rwkv_tokenizer_load_buffer(buf, len, path, out, err, err_len);
    free(buf);
    return rc;
}

int rwkv_tokenizer_new_bytes(rwkv_tokenizer **out)
{
    if (!out)
        return -EINVAL;
    rwkv_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->n_ids = 256;
    t->offsets = malloc(257 * sizeof *t->offsets);
    t->pool = malloc(256);
    if (!t->offsets || !t->pool) {
        rwkv_tokenizer_destroy(&t);
        return -ENOMEM;
    }
    for (int i = 0; i < 256; i++) {
        t->pool[i] = (uint8_t)i;
        t->offsets[i] = (uint32_t)i;
    }
    t->offsets[256] = 256;
    int rc = finish(t, "<bytes>", NULL, 0);
    if (rc < 0) {
        rwkv_tokenizer_destroy(&t);
        return rc;
    }
    *out = t;
    return 0;
}

/* ---------------------------------------------------------------- queries */

int rwkv_tokenizer_n_ids(const rwkv_tokenizer *t)
{
    return t ? t->n_ids : 0;
}

size_t rwkv_tokenizer_max_token_len(const rwkv_tokenizer *t)
{
    return t ? t->max_token_len : 0;
}

size_t rwkv_tokenizer_token(const rwkv_tokenizer *t, int32_t id, const uint8_t **bytes)
{
    if (!t || id < 0 || id >= t->n_ids || t->offsets[id + 1] == t->offsets[id]) {
        if (bytes)
            *bytes = NULL;
        return 0;
    }
    if (bytes)
        *bytes = t->pool + t->offsets[id];
    return t->offsets[id + 1] - t->offsets[id];
}

long rwkv_tokenizer_encode(const rwkv_tokenizer *t, const char *text, size_t len, int32_t *ids,
                           size_t cap)
{
    if (!t || (!text && len) || (!ids && cap))
        return -EINVAL;
    const uint8_t *s = (const uint8_t *)text;
    size_t n = 0, i = 0;
    while (i < len) {
        uint32_t node = t->root[s[i]];
        if (!node)
            return -EILSEQ;
        int32_t best = t->nodes[node].id;
        size_t best_len = 1, j = i + 1;
        while (j < len && t->nodes[node].n_child) {
            uint32_t c = trie_child(t, node, s[j]);
            if (!c)
                break;
            node = c;
            j++;
            if (t->nodes[node].id >= 0) {
                best = t->nodes[node].id;
                best_len = j - i;
            }
        }
        if (best < 0)
            return -EILSEQ; /* only possible in a vocabulary that lacks some single bytes */
        if (n < cap)
            ids[n] = best;
        n++;
        i += best_len;
    }
    return (long)n;
}

long rwkv_tokenizer_decode(const rwkv_tokenizer *t, const int32_t *ids, size_t n, char *out,
                           size_t cap)
{
    if (!t || (!ids && n) || (!out && cap))
        return -EINVAL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *b;
        size_t l = rwkv_tokenizer_token(t, ids[i], &b);
        if (l && total < cap)
            memcpy(out + total, b, l < cap - total ? l : cap - total);
        total += l;
    }
    return (long)total;
}

/* ---------------------------------------------------------------- streaming decoder */

void rwkv_decoder_init(rwkv_decoder *d, const rwkv_tokenizer *t)
{
    if (!d)
        return;
    memset(d, 0, sizeof *d);
    d->tok = t;
}

/* The bytes being decoded: the held-back tail followed by the new token. */
typedef struct {
    const uint8_t *held;
    size_t n_held;
    const uint8_t *tok;
    size_t n;
} byte_seq;

static inline uint8_t seq_at(const byte_seq *q, size_t i)
{
    return i < q->n_held ? q->held[i] : q->tok[i - q->n_held];
}

static bool put(char *out, size_t cap, size_t *w, const uint8_t *b, size_t n)
{
    if (cap - *w < n)
        return false;
    memcpy(out + *w, b, n);
    *w += n;
    return true;
}

long rwkv_decoder_push(rwkv_decoder *d, int32_t id, char *out, size_t cap)
{
    if (!d || d->n_pending < 0 || d->n_pending > 3 || (!out && cap))
        return -EINVAL;
    const uint8_t *tb;
    size_t tl = rwkv_tokenizer_token(d->tok, id, &tb);
    if (tl == 0)
        return 0; /* ids without bytes are control events, not text */
    byte_seq q = {d->pending, (size_t)d->n_pending, tb, (size_t)d->n_pending + tl};
    size_t i = 0, w = 0;
    uint8_t keep[4];
    size_t n_keep = 0;
    while (i < q.n) {
        uint8_t c = seq_at(&q, i);
        if (c < 0x80) {
            /* Held bytes are never ASCII, so an ASCII run lies wholly in the token: copy
             * it in one go, it is the common case. */
            const uint8_t *r = q.tok + (i - q.n_held);
            size_t m = 1;
            while (i + m < q.n && r[m] < 0x80)
                m++;
            if (!put(out, cap, &w, r, m))
                return -ENOSPC;
            i += m;
            continue;
        }
        uint8_t lo, hi;
        int need = utf8_lead(c, &lo, &hi);
        size_t k = 1;
        if (need > 0) {
            while (k < (size_t)need && i + k < q.n) {
                uint8_t x = seq_at(&q, i + k);
                if (x < lo || x > hi)
                    break;
                lo = 0x80;
                hi = 0xBF;
                k++;
            }
            if (k < (size_t)need && i + k == q.n) {
                /* A valid but incomplete sequence at the end: hold it for the next id. */
                for (size_t m = 0; m < k; m++)
                    keep[m] = seq_at(&q, i + m);
                n_keep = k;
                break;
            }
        }
        bool ok;
        if (need > 0 && k == (size_t)need) {
            uint8_t b[4];
            for (size_t m = 0; m < k; m++)
                b[m] = seq_at(&q, i + m);
            ok = put(out, cap, &w, b, k);
            i += k;
        } else {
            /* One U+FFFD per maximal ill-formed subpart (Unicode §3.9, as Python's
             * errors="replace"); the byte that broke the sequence is examined again. */
            ok = put(out, cap, &w, replacement_char, 3);
            i += k;
        }
        if (!ok)
            return -ENOSPC;
    }
    memcpy(d->pending, keep, n_keep);
    d->n_pending = (int)n_keep;
    return (long)w;
}

long rwkv_decoder_flush(rwkv_decoder *d, char *out, size_t cap)
{
    if (!d || d->n_pending < 0 || d->n_pending > 3 || (!out && cap))
        return -EINVAL;
    if (d->n_pending == 0)
        return 0;
    /* Held bytes are always one valid-so-far prefix, i.e. one maximal subpart. */
    if (cap < 3)
        return -ENOSPC;
    memcpy(out, replacement_char, 3);
    d->n_pending = 0;
    return 3;
}
