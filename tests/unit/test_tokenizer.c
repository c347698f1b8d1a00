/* test_tokenizer.c — unit tests of the World vocabulary parser, the longest-match encoder,
 * raw decode and the streaming decoder, on small vocabularies written to a temp dir.
 * Not the World vocabulary itself: tests/compat/test_compat_vocab.c checks that one.
 * Encodings are checked against a brute-force longest match and decoding against an
 * independent whole-buffer UTF-8 decoder written here from code-point arithmetic.
 */
#include "rwkv_tokenizer.h"
#include "testutil.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static char tmpdir[256];
static int file_no;

/* ---------------------------------------------------------------- helpers */

typedef struct {
    char *s;
    size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const char *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->s = realloc(b->s, cap);
        if (!b->s)
            abort();
        b->cap = cap;
    }
    memcpy(b->s + b->len, data, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp)
        abort();
    sb_add(b, tmp, (size_t)n);
}

/* The 256 single bytes as ids 1..256, spelled the way the World file spells them. */
static void add_byte_tokens(sbuf *b)
{
    for (int c = 0; c < 256; c++) {
        if (c >= 0x80)
            sb_printf(b, "%d b'\\x%02x' 1\n", c + 1, c);
        else if (c == '\'' || c == '\\')
            sb_printf(b, "%d '\\%c' 1\n", c + 1, c);
        else if (c >= 0x20 && c < 0x7F)
            sb_printf(b, "%d '%c' 1\n", c + 1, c);
        else
            sb_printf(b, "%d '\\x%02x' 1\n", c + 1, c);
    }
}

/* Writes text to a fresh file and loads it; rc as returned, err filled. */
static int load_text(const char *text, size_t len, rwkv_tokenizer **t, char *path, size_t path_cap,
                     char *err, size_t err_len)
{
    snprintf(path, path_cap, "%s/vocab%d.txt", tmpdir, file_no++);
    if (test_write_file(path, text, len) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        return -EIO;
    }
    return rwkv_tokenizer_load(path, t, err, err_len);
}

static bool token_is(const rwkv_tokenizer *t, int32_t id, const char *bytes, size_t n)
{
    const uint8_t *b;
    size_t l = rwkv_tokenizer_token(t, id, &b);
    return l == n && (n == 0 ? b == NULL : memcmp(b, bytes, n) == 0);
}

static bool ids_are(const int32_t *got, long n_got, const int32_t *want, long n_want)
{
    if (n_got != n_want)
        return false;
    for (long i = 0; i < n_got; i++)
        if (got[i] != want[i])
            return false;
    return true;
}

static uint64_t rng_state = 0x1234567887654321ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* ---------------------------------------------------------------- reference UTF-8 decoder */

/* Whether s[0..n) is one complete, valid UTF-8 sequence, judged by decoding the code point
 * and rejecting overlong forms, surrogates and values past U+10FFFF. */
static bool ref_complete(const uint8_t *s, size_t n)
{
    uint32_t cp;
    if (n == 1)
        return s[0] < 0x80;
    if (n == 2 && (s[0] & 0xE0) == 0xC0)
        cp = s[0] & 0x1Fu;
    else if (n == 3 && (s[0] & 0xF0) == 0xE0)
        cp = s[0] & 0x0Fu;
    else if (n == 4 && (s[0] & 0xF8) == 0xF0)
        cp = s[0] & 0x07u;
    else
        return false;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return false;
        cp = cp << 6 | (s[i] & 0x3Fu);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    return cp >= min_cp[n] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
}

/* Whether s[0..k) can still be completed into a valid sequence: filling with 0x80 or with
 * 0xBF reaches both ends of every allowed range. */
static bool ref_prefix(const uint8_t *s, size_t k)
{
    for (size_t total = k; total <= 4; total++) {
        uint8_t buf[4];
        memcpy(buf, s, k);
        for (int fill = 0; fill < 2; fill++) {
            for (size_t i = k; i < total; i++)
                buf[i] = fill ? 0xBF : 0x80;
            if (ref_complete(buf, total))
                return true;
        }
    }
    return false;
}

/* Whole-buffer decode with one U+FFFD per maximal ill-formed subpart. */
static size_t ref_decode(const uint8_t *s, size_t n, char *out)
{
    size_t w = 0, i = 0;
    while (i < n) {
        size_t len = 0;
        for (size_t l = 1; l <= 4 && i + l <= n; l++)
            if (ref_complete(s + i, l))
                len = l;
        if (len) {
            memcpy(out + w, s + i, len);
            w += len;
            i += len;
            continue;
        }
        size_t k = 1;
        while (k < 3 && i + k + 1 <= n && ref_prefix(s + i, k + 1))
            k++;
        memcpy(out + w, "\xEF\xBF\xBD", 3);
        w += 3;
        i += k;
    }
    return w;
}

/* Streams ids through a decoder (flushing at the end) and returns the text length. */
static long stream_ids(const rwkv_tokenizer *t, const int32_t *ids, size_t n, char *out,
                       size_t cap, int *max_pending)
{
    rwkv_decoder d;
    rwkv_decoder_init(&d, t);
    size_t w = 0;
    *max_pending = 0;
    for (size_t i = 0; i < n; i++) {
        long r = rwkv_decoder_push(&d, ids[i], out + w, cap - w);
        if (r < 0)
            return r;
        w += (size_t)r;
        if (d.n_pending > *max_pending)
            *max_pending = d.n_pending;
    }
    long r = rwkv_decoder_flush(&d, out + w, cap - w);
    if (r < 0)
        return r;
    return (long)(w + (size_t)r);
}

/* ---------------------------------------------------------------- tests */

static void test_escapes(void)
{
    sbuf b = {0};
    /* Each escape sits in its own token so that no two tokens collide. */
    static const struct {
        const char *lit;
        const char *bytes;
        size_t n;
    } cases[] = {
        {"'n\\n'", "n\n", 2},
        {"'t\\t'", "t\t", 2},
        {"'s\\\\'", "s\\", 2},
        {"'r\\r'", "r\r", 2},
        {"'q\\''", "q'", 2},
        {"\"d\\\"\"", "d\"", 2},
        {"\"it's\"", "it's", 4},
        {"'x\\x41'", "xA", 2},
        {"'\\x7f'", "\x7f", 1},
        {"'\\x80'", "\xC2\x80", 2},       /* code point U+0080, not the byte 0x80 */
        {"'\\xff'", "\xC3\xBF", 2},
        {"'\\xE9t\\xe9'", "\xC3\xA9t\xC3\xA9", 5}, /* upper- and lower-case hex */
        {"'\\u2002'", "\xE2\x80\x82", 3},
        {"'\\u00e9x'", "\xC3\xA9x", 3},
        {"'\\U0001F600'", "\xF0\x9F\x98\x80", 4},
        {"'\\U0010ffff'", "\xF4\x8F\xBF\xBF", 4},
        {"'a\\a'", "a\a", 2},
        {"'b\\b'", "b\b", 2},
        {"'f\\f'", "f\f", 2},
        {"'v\\v'", "v\v", 2},
        {"'z\\0'", "z\0", 2},
        {"'o\\101\\0123'", "oA\n3", 4},  /* octal takes at most three digits */
        {"'o\\777'", "o\xC7\xBF", 3},    /* U+01FF */
        {"'\xC3\xA9\xC3\xA9'", "\xC3\xA9\xC3\xA9", 4}, /* raw UTF-8 passthrough */
        {"'\xF0\x9F\x98\x80!'", "\xF0\x9F\x98\x80!", 5},
        {"'a b  c'", "a b  c", 6},       /* spaces inside the literal */
        {"'   '", "   ", 3},
        {"'\ttab'", "\ttab", 4},         /* a raw tab is legal in a Python string */
        {"b'\\x80\\xff'", "\x80\xff", 2},
        {"b'\\xe4\\xbd'", "\xe4\xbd", 2},
        {"b'ab\\n'", "ab\n", 3},
        {"B'\\x00\\x01'", "\x00\x01", 2},
        {"b\"r'\"", "r'", 2},
        {"b'\\101\\x42'", "AB", 2},
        {"b'\\377'", "\xff", 1},
        {"'\\\\x41'", "\\x41", 4},        /* an escaped backslash ends the escape */
    };
    const int n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++)
        sb_printf(&b, "%d %s %zu\n", i + 1, cases[i].lit, cases[i].n);
    char path[512], err[512] = "";
    rwkv_tokenizer *t = NULL;
    int rc = load_text(b.s, b.len, &t, path, sizeof path, err, sizeof err);
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    if (rc == 0) {
        CHECK(rwkv_tokenizer_n_ids(t) == n + 1);
        CHECK(token_is(t, 0, NULL, 0));
        CHECK(token_is(t, n + 1, NULL, 0));
        CHECK(token_is(t, -1, NULL, 0));
        for (int i = 0; i < n; i++)
            CHECKF(token_is(t, i + 1, cases[i].bytes, cases[i].n), "literal %s", cases[i].lit);
        CHECK(rwkv_tokenizer_max_token_len(t) == 6);
    }
    rwkv_tokenizer_destroy(&t);
    CHECK(t == NULL);
    rwkv_tokenizer_destroy(&t); /* idempotent */
    rwkv_tokenizer_destroy(NULL);
    free(b.s);
}

static void test_lenient_forms(void)
{
    char err[512] = "";
    rwkv_tokenizer *t = NULL;
    /* CRLF line ends and a missing final newline are accepted. */
    const char *crlf = "1 'a' 1\r\n2 'b' 1\r\n3 'ab' 2";
    int rc = rwkv_tokenizer_load_buffer(crlf, strlen(crlf), "crlf", &t, err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    if (rc == 0) {
        int32_t ids[4];
        CHECK(rwkv_tokenizer_encode(t, "abba", 4, ids, 4) == 3);
        CHECK(ids[0] == 3 && ids[1] == 2 && ids[2] == 1);
    }
    rwkv_tokenizer_destroy(&t);
}

static void test_longest_match(void)
{
    sbuf b = {0};
    add_byte_tokens(&b);
    const char *extra[] = {"ab", "abc", "abcde", "bcd", "de", "xyz", "xy"};
    int id = 257;
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
        sb_printf(&b, "%d '%s' %zu\n", id++, extra[i], strlen(extra[i]));
    char path[512], err[512] = "";
    rwkv_tokenizer *t = NULL;
    int rc = load_text(b.s, b.len, &t, path, sizeof path, err, sizeof err);
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    free(b.s);
    if (rc != 0)
        return;
    const int AB = 257, ABC = 258, ABCDE = 259, BCD = 260, DE = 261, XYZ = 262, XY = 263;
    (void)BCD;
    int32_t ids[64];
#define ENC(s) rwkv_tokenizer_encode(t, s, sizeof(s) - 1, ids, 64)
    long n = ENC("abcde");
    CHECK(ids_are(ids, n, (int32_t[]){ABCDE}, 1));
    /* The walk reaches "abcd" (a prefix of "abcde", not a token) and falls back to "abc". */
    n = ENC("abcdz");
    CHECK(ids_are(ids, n, (int32_t[]){ABC, 'd' + 1, 'z' + 1}, 3));
    n = ENC("abcd");
    CHECK(ids_are(ids, n, (int32_t[]){ABC, 'd' + 1}, 2));
    /* "abd" is no token: the walk stops after "ab", then "de" is one token. */
    n = ENC("abde");
    CHECK(ids_are(ids, n, (int32_t[]){AB, DE}, 2));
    n = ENC("xyzxyx");
    CHECK(ids_are(ids, n, (int32_t[]){XYZ, XY, 'x' + 1}, 3));
    n = ENC("a");
    CHECK(ids_are(ids, n, (int32_t[]){'a' + 1}, 1));
    n = rwkv_tokenizer_encode(t, "", 0, ids, 64);
    CHECK(n == 0);
    n = rwkv_tokenizer_encode(t, NULL, 0, NULL, 0);
    CHECK(n == 0);
    /* Embedded NUL and high bytes are ordinary bytes. */
    n = rwkv_tokenizer_encode(t, "a\0\xff", 3, ids, 64);
    CHECK(ids_are(ids, n, (int32_t[]){'a' + 1, 1, 256}, 3));
    /* Short output buffer: total is still returned, only cap ids written. */
    ids[1] = -7;
    n = rwkv_tokenizer_encode(t, "abcdeabcde", 10, ids, 1);
    CHECK(n == 2 && ids[0] == ABCDE && ids[1] == -7);
    n = rwkv_tokenizer_encode(t, "abc", 3, NULL, 0);
    CHECK(n == 1);
    CHECK(rwkv_tokenizer_encode(NULL, "a", 1, ids, 64) == -EINVAL);
    CHECK(rwkv_tokenizer_encode(t, NULL, 1, ids, 64) == -EINVAL);
    CHECK(rwkv_tokenizer_encode(t, "a", 1, NULL, 4) == -EINVAL);
#undef ENC
    /* Raw decode. */
    int32_t seq[] = {ABC, 0, 'd' + 1, 9999, -3, XYZ};
    char out[32];
    long d = rwkv_tokenizer_decode(t, seq, 6, out, sizeof out);
    CHECK(d == 7 && memcmp(out, "abcdxyz", 7) == 0);
    memset(out, '#', sizeof out);
    d = rwkv_tokenizer_decode(t, seq, 6, out, 5);
    CHECK(d == 7 && memcmp(out, "abcdx#", 6) == 0);
    CHECK(rwkv_tokenizer_decode(t, seq, 6, NULL, 0) == 7);
    CHECK(rwkv_tokenizer_decode(t, NULL, 1, out, 4) == -EINVAL);
    rwkv_tokenizer_destroy(&t);
}

/* A vocabulary without some bytes cannot encode every text. */
static void test_missing_bytes(void)
{
    const char *v = "1 'a' 1\n2 'bc' 2\n";
    rwkv_tokenizer *t = NULL;
    char err[256];
    int rc = rwkv_tokenizer_load_buffer(v, strlen(v), "v", &t, err, sizeof err);
    CHECK(rc == 0);
    if (rc)
        return;
    int32_t ids[8];
    CHECK(rwkv_tokenizer_encode(t, "abca", 4, ids, 8) == 3);
    CHECK(rwkv_tokenizer_encode(t, "ab", 2, ids, 8) == -EILSEQ); /* "b" alone is no token */
    CHECK(rwkv_tokenizer_encode(t, "z", 1, ids, 8) == -EILSEQ);
    rwkv_tokenizer_destroy(&t);
}

/* Brute-force greedy longest match over the token table. */
static long ref_encode(const rwkv_tokenizer *t, const uint8_t *s, size_t n, int32_t *ids)
{
    long k = 0;
    size_t i = 0;
    int n_ids = rwkv_tokenizer_n_ids(t);
    while (i < n) {
        int32_t best = -1;
        size_t best_len = 0;
        for (int32_t id = 0; id < n_ids; id++) {
            const uint8_t *b;
            size_t l = rwkv_tokenizer_token(t, id, &b);
            if (l > best_len && l <= n - i && memcmp(b, s + i, l) == 0) {
                best = id;
                best_len = l;
            }
        }
        if (best < 0)
            return -1;
        ids[k++] = best;
        i += best_len;
    }
    return k;
}

static void test_random_roundtrip(void)
{
    sbuf b = {0};
    add_byte_tokens(&b);
    /* Random multi-byte tokens over a small alphabet so that they overlap a lot; raw bytes
     * go in as bytes literals. Duplicates are skipped by checking the generated set. */
    const uint8_t alpha[] = {'a', 'b', 'c', ' ', 0xC3, 0xA9, 0x80, 0xF0, 0x00};
    char toks[400][8];
    size_t tok_len[400];
    int n_tok = 0, id = 257;
    while (n_tok < 400) {
        size_t l = 2 + rnd() % 6;
        char s[8];
        for (size_t i = 0; i < l; i++)
            s[i] = (char)alpha[rnd() % sizeof alpha];
        bool dup = false;
        for (int j = 0; j < n_tok && !dup; j++)
            dup = tok_len[j] == l && memcmp(toks[j], s, l) == 0;
        if (dup)
            continue;
        memcpy(toks[n_tok], s, l);
        tok_len[n_tok++] = l;
        sb_printf(&b, "%d b'", id++);
        for (size_t i = 0; i < l; i++)
            sb_printf(&b, "\\x%02x", (uint8_t)s[i]);
        sb_printf(&b, "' %zu\n", l);
    }
    char path[512], err[512] = "";
    rwkv_tokenizer *t = NULL;
    int rc = load_text(b.s, b.len, &t, path, sizeof path, err, sizeof err);
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    free(b.s);
    if (rc != 0)
        return;
    CHECK(rwkv_tokenizer_n_ids(t) == 657);
    uint8_t text[300];
    int32_t ids[300], ref[300];
    char back[300];
    int bad_enc = 0, bad_rt = 0;
    for (int iter = 0; iter < 500; iter++) {
        size_t n = rnd() % sizeof text;
        for (size_t i = 0; i < n; i++)
            text[i] = rnd() % 4 ? alpha[rnd() % sizeof alpha] : (uint8_t)rnd();
        long k = rwkv_tokenizer_encode(t, (const char *)text, n, ids, 300);
        long kr = ref_encode(t, text, n, ref);
        bad_enc += !ids_are(ids, k, ref, kr);
        long d = rwkv_tokenizer_decode(t, ids, (size_t)(k > 0 ? k : 0), back, sizeof back);
        bad_rt += !(d == (long)n && memcmp(back, text, n) == 0);
    }
    CHECKF(bad_enc == 0, "%d encodings differ from brute force", bad_enc);
    CHECKF(bad_rt == 0, "%d round trips failed", bad_rt);

    /* Streaming decode over the random tokens equals the whole-buffer decode. */
    int bad_stream = 0, max_pending = 0;
    for (int iter = 0; iter < 500; iter++) {
        size_t n = rnd() % 200;
        for (size_t i = 0; i < n; i++)
            text[i] = rnd() % 3 ? alpha[rnd() % sizeof alpha] : (uint8_t)(0x80 + rnd() % 0x80);
        long k = rwkv_tokenizer_encode(t, (const char *)text, n, ids, 300);
        char want[1024], got[1024];
        size_t wl = ref_decode(text, n, want);
        int mp;
        long gl = stream_ids(t, ids, (size_t)k, got, sizeof got, &mp);
        if (mp > max_pending)
            max_pending = mp;
        bad_stream += !(gl == (long)wl && memcmp(got, want, wl) == 0);
    }
    CHECKF(bad_stream == 0, "%d streamed decodes differ", bad_stream);
    CHECK(max_pending <= 3);
    rwkv_tokenizer_destroy(&t);
}

static void test_bytes_vocab(void)
{
    rwkv_tokenizer *t = NULL;
    CHECK(rwkv_tokenizer_new_bytes(NULL) == -EINVAL);
    CHECK(rwkv_tokenizer_new_bytes(&t) == 0);
    if (!t)
        return;
    CHECK(rwkv_tokenizer_n_ids(t) == 256);
    CHECK(rwkv_tokenizer_max_token_len(t) == 1);
    CHECK(token_is(t, 0, "\0", 1));
    CHECK(token_is(t, 255, "\xff", 1));
    CHECK(token_is(t, 256, NULL, 0));
    uint8_t text[256];
    for (int i = 0; i < 256; i++)
        text[i] = (uint8_t)(255 - i);
    int32_t ids[256];
    CHECK(rwkv_tokenizer_encode(t, (const char *)text, 256, ids, 256) == 256);
    bool ok = true;
    for (int i = 0; i < 256; i++)
        ok = ok && ids[i] == 255 - i;
    CHECK(ok);
    rwkv_tokenizer_destroy(&t);
}

/* Pushes one id; returns the emitted text as a NUL-terminated string in out. */
static long push_str(rwkv_decoder *d, int32_t id, char *out, size_t cap)
{
    long r = rwkv_decoder_push(d, id, out, cap - 1);
    out[r > 0 ? r : 0] = 0;
    return r;
}

static void test_stream_cases(void)
{
    rwkv_tokenizer *t = NULL;
    CHECK(rwkv_tokenizer_new_bytes(&t) == 0);
    if (!t)
        return;
    rwkv_decoder d;
    char out[64];
    rwkv_decoder_init(&d, t);

    /* U+1F600 byte by byte: nothing until complete. */
    CHECK(push_str(&d, 0xF0, out, sizeof out) == 0 && d.n_pending == 1);
    CHECK(push_str(&d, 0x9F, out, sizeof out) == 0 && d.n_pending == 2);
    CHECK(push_str(&d, 0x98, out, sizeof out) == 0 && d.n_pending == 3);
    CHECK(push_str(&d, 0x80, out, sizeof out) == 4 && strcmp(out, "\xF0\x9F\x98\x80") == 0);
    CHECK(d.n_pending == 0);

    /* ASCII passes at once. */
    CHECK(push_str(&d, 'A', out, sizeof out) == 1 && strcmp(out, "A") == 0);

    /* A byte that never starts a sequence is replaced immediately. */
    CHECK(push_str(&d, 0xFF, out, sizeof out) == 3 && strcmp(out, "\xEF\xBF\xBD") == 0);
    CHECK(push_str(&d, 0x80, out, sizeof out) == 3 && strcmp(out, "\xEF\xBF\xBD") == 0);
    CHECK(push_str(&d, 0xC0, out, sizeof out) == 3); /* overlong lead */

    /* An incomplete sequence broken by ASCII: one U+FFFD, then the ASCII byte. */
    CHECK(push_str(&d, 0xE4, out, sizeof out) == 0);
    CHECK(push_str(&d, 0xBD, out, sizeof out) == 0);
    CHECK(push_str(&d, 'x', out, sizeof out) == 4 && strcmp(out, "\xEF\xBF\xBDx") == 0);

    /* E0 80: E0 needs A0..BF next, so two replacements (as Python). */
    CHECK(push_str(&d, 0xE0, out, sizeof out) == 0);
    CHECK(push_str(&d, 0x80, out, sizeof out) == 6);
    /* ED A0 would be a surrogate. */
    CHECK(push_str(&d, 0xED, out, sizeof out) == 0);
    CHECK(push_str(&d, 0xA0, out, sizeof out) == 6);
    /* F4 90 is past U+10FFFF. */
    CHECK(push_str(&d, 0xF4, out, sizeof out) == 0);
    CHECK(push_str(&d, 0x90, out, sizeof out) == 6);
    /* A held lead followed by another lead: the first is replaced, the second held. */
    CHECK(push_str(&d, 0xC3, out, sizeof out) == 0);
    CHECK(push_str(&d, 0xC3, out, sizeof out) == 3 && d.n_pending == 1);
    CHECK(push_str(&d, 0xA9, out, sizeof out) == 2 && strcmp(out, "\xC3\xA9") == 0);

    /* Ids without bytes produce nothing and keep what is held. */
    CHECK(push_str(&d, 0xE2, out, sizeof out) == 0 && d.n_pending == 1);
    CHECK(push_str(&d, 256, out, sizeof out) == 0 && d.n_pending == 1);
    CHECK(push_str(&d, -1, out, sizeof out) == 0 && d.n_pending == 1);
    CHECK(push_str(&d, 0x82, out, sizeof out) == 0 && d.n_pending == 2);
    /* Too little room: -ENOSPC and nothing changes. */
    CHECK(rwkv_decoder_push(&d, 0xAC, out, 2) == -ENOSPC && d.n_pending == 2);
    CHECK(push_str(&d, 0xAC, out, sizeof out) == 3 && strcmp(out, "\xE2\x82\xAC") == 0);

    /* Flush: a held incomplete sequence becomes one U+FFFD; flushing again is a no-op. */
    CHECK(push_str(&d, 0xF0, out, sizeof out) == 0);
    CHECK(push_str(&d, 0x9F, out, sizeof out) == 0);
    CHECK(rwkv_decoder_flush(&d, out, 2) == -ENOSPC && d.n_pending == 2);
    CHECK(rwkv_decoder_flush(&d, out, sizeof out) == 3 && memcmp(out, "\xEF\xBF\xBD", 3) == 0);
    CHECK(d.n_pending == 0);
    CHECK(rwkv_decoder_flush(&d, out, sizeof out) == 0);
    CHECK(rwkv_decoder_flush(&d, NULL, 0) == 0);

    /* Bad arguments. */
    CHECK(rwkv_decoder_push(NULL, 'a', out, sizeof out) == -EINVAL);
    CHECK(rwkv_decoder_flush(NULL, out, sizeof out) == -EINVAL);
    d.n_pending = 9;
    CHECK(rwkv_decoder_push(&d, 'a', out, sizeof out) == -EINVAL);
    rwkv_decoder_init(&d, NULL); /* no tokenizer: every id is without bytes */
    CHECK(rwkv_decoder_push(&d, 'a', out, sizeof out) == 0);
    rwkv_decoder_init(NULL, t);

    /* Random byte streams, one byte per id, against the whole-buffer decoder. */
    int bad = 0, max_pending = 0;
    for (int iter = 0; iter < 3000; iter++) {
        uint8_t text[64];
        int32_t ids[64];
        size_t n = rnd() % 64;
        for (size_t i = 0; i < n; i++) {
            uint32_t r = rnd() % 8;
            /* Mostly lead and continuation bytes, so sequences are often nearly valid. */
            text[i] = r < 2 ? (uint8_t)(rnd() % 0x80)
                    : r < 5 ? (uint8_t)(0x80 + rnd() % 0x40)
                            : (uint8_t)(0xC0 + rnd() % 0x40);
            ids[i] = text[i];
        }
        char want[256], got[256];
        size_t wl = ref_decode(text, n, want);
        int mp;
        long gl = stream_ids(t, ids, n, got, sizeof got, &mp);
        if (mp > max_pending)
            max_pending = mp;
        if (!(gl == (long)wl && memcmp(got, want, wl) == 0))
            bad++;
    }
    CHECKF(bad == 0, "%d random streams differ from the whole-buffer decode", bad);
    CHECK(max_pending == 3);
    rwkv_tokenizer_destroy(&t);
}

/* Multi-byte characters split across tokens of a World-like vocabulary. */
static void test_stream_split_tokens(void)
{
    const char *v = "1 b'\\xf0\\x9f' 2\n"
                    "2 b'\\x98' 1\n"
                    "3 b'\\x80' 1\n"
                    "4 '\xe4\xbd\xa0' 3\n"
                    "5 b'\\xe4' 1\n"
                    "6 b'\\xbd\\xa0' 2\n"
                    "7 'a' 1\n"
                    "8 '\\x80a' 3\n";
    rwkv_tokenizer *t = NULL;
    char err[256] = "";
    int rc = rwkv_tokenizer_load_buffer(v, strlen(v), "split", &t, err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    if (rc)
        return;
    rwkv_decoder d;
    rwkv_decoder_init(&d, t);
    char out[64];
    CHECK(push_str(&d, 1, out, sizeof out) == 0);
    CHECK(push_str(&d, 0, out, sizeof out) == 0); /* id 0 has no bytes */
    CHECK(push_str(&d, 2, out, sizeof out) == 0);
    CHECK(push_str(&d, 3, out, sizeof out) == 4 && strcmp(out, "\xF0\x9F\x98\x80") == 0);
    CHECK(push_str(&d, 4, out, sizeof out) == 3 && strcmp(out, "\xe4\xbd\xa0") == 0);
    CHECK(push_str(&d, 5, out, sizeof out) == 0);
    CHECK(push_str(&d, 6, out, sizeof out) == 3 && strcmp(out, "\xe4\xbd\xa0") == 0);
    /* A held lead, then a token that completes it and carries more text. */
    CHECK(push_str(&d, 5, out, sizeof out) == 0);
    CHECK(push_str(&d, 7, out, sizeof out) == 4 && strcmp(out, "\xEF\xBF\xBD" "a") == 0);
    CHECK(push_str(&d, 8, out, sizeof out) == 3 && strcmp(out, "\xC2\x80" "a") == 0);
    /* Two continuation bytes after F0 9F, then flush. */
    CHECK(push_str(&d, 1, out, sizeof out) == 0);
    CHECK(push_str(&d, 2, out, sizeof out) == 0 && d.n_pending == 3);
    CHECK(push_str(&d, 7, out, sizeof out) == 4 && strcmp(out, "\xEF\xBF\xBD" "a") == 0);
    rwkv_tokenizer_destroy(&t);
}

typedef struct {
    const char *what;
    const char *line; /* the bad line, placed as line 3 after two good ones */
} bad_case;

static void test_bad_input(void)
{
    static const bad_case cases[] = {
        {"bad literal (no quotes)", "3 abc 3"},
        {"bad literal (u prefix)", "3 u'abc' 3"},
        {"bad literal (rb prefix)", "3 rb'abc' 3"},
        {"unterminated quote", "3 'abc 3"},
        {"mismatched quotes", "3 'abc\" 3"},
        {"lone quote", "3 ' 1"},
        {"escaped closing quote", "3 'abc\\' 3"},
        {"unescaped quote", "3 'a'b' 3"},
        {"bad escape", "3 'a\\q' 2"},
        {"bad escape \\N", "3 '\\N{DASH}' 1"},
        {"bad \\x digits", "3 '\\xZZ' 1"},
        {"short \\x", "3 '\\x4' 1"},
        {"short \\u", "3 '\\u12' 1"},
        {"short \\U", "3 '\\U0001F60' 4"},
        {"surrogate", "3 '\\ud800' 3"},
        {"past U+10FFFF", "3 '\\U00110000' 4"},
        {"\\u in bytes", "3 b'\\u0041' 1"},
        {"non-ASCII in bytes", "3 b'\xc3\xa9' 2"},
        {"octal above 0xff in bytes", "3 b'\\400' 1"},
        {"invalid raw UTF-8", "3 '\xff' 1"},
        {"truncated raw UTF-8", "3 'a\xe4\xbd' 3"},
        {"raw control byte", "3 'a\x01' 2"},
        {"raw DEL", "3 'a\x7f' 2"},
        {"length mismatch", "3 'abc' 4"},
        {"length mismatch (\\x80 is 2 bytes)", "3 '\\x80' 1"},
        {"bad length field", "3 'abc' 3x"},
        {"negative length", "3 'abc' -3"},
        {"empty length", "3 'a b' "},
        {"id out of sequence", "4 'abc' 3"},
        {"repeated id", "2 'abc' 3"},
        {"bad id", "x3 'abc' 3"},
        {"huge id", "99999999999 'abc' 3"},
        {"leading space", " 3 'abc' 3"},
        {"missing fields", "3 'abc'"},
        {"only an id", "3"},
        {"empty token", "3 '' 0"},
        {"duplicate string", "3 '\\x61' 1"}, /* same bytes as line 1 */
        {"duplicate via bytes literal", "3 b'ab' 2"},
    };
    const char *good = "1 'a' 1\n2 'ab' 2\n";
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sbuf b = {0};
        sb_printf(&b, "%s%s\n4 'zz' 2\n", good, cases[i].line);
        char path[512], err[512] = "", want[600];
        rwkv_tokenizer *t = NULL;
        int rc = load_text(b.s, b.len, &t, path, sizeof path, err, sizeof err);
        snprintf(want, sizeof want, "%s:3: ", path);
        CHECKF(rc == -EINVAL && t == NULL, "%s: rc %d", cases[i].what, rc);
        CHECKF(strncmp(err, want, strlen(want)) == 0, "%s: message '%s'", cases[i].what, err);
        /* The same through the buffer interface, named in the message. */
        err[0] = 0;
        rc = rwkv_tokenizer_load_buffer(b.s, b.len, "mem", &t, err, sizeof err);
        CHECKF(rc == -EINVAL && t == NULL && strncmp(err, "mem:3: ", 7) == 0, "%s: '%s'",
               cases[i].what, err);
        rwkv_tokenizer_destroy(&t);
        free(b.s);
    }

    char err[512], path[512], want[600];
    rwkv_tokenizer *t = NULL;
    int rc;

    /* Empty file. */
    rc = load_text("", 0, &t, path, sizeof path, err, sizeof err);
    snprintf(want, sizeof want, "%s:1: ", path);
    CHECKF(rc == -EINVAL && strncmp(err, want, strlen(want)) == 0, "empty: %d '%s'", rc, err);
    CHECK(rwkv_tokenizer_load_buffer(NULL, 0, "nul", &t, err, sizeof err) == -EINVAL);
    CHECK(strncmp(err, "nul:1: ", 7) == 0 && t == NULL);

    /* An empty line in the middle. */
    const char *gap = "1 'a' 1\n\n2 'b' 1\n";
    rc = rwkv_tokenizer_load_buffer(gap, strlen(gap), "gap", &t, err, sizeof err);
    CHECKF(rc == -EINVAL && strncmp(err, "gap:2: ", 7) == 0, "'%s'", err);

    /* A first id other than 1. */
    const char *from2 = "2 'a' 1\n";
    rc = rwkv_tokenizer_load_buffer(from2, strlen(from2), "f", &t, err, sizeof err);
    CHECKF(rc == -EINVAL && strncmp(err, "f:1: ", 5) == 0, "'%s'", err);

    /* A huge line (a 100 kB literal) on line 2. */
    sbuf b = {0};
    sb_printf(&b, "1 'a' 1\n2 '");
    for (int i = 0; i < 100000; i++)
        sb_add(&b, "x", 1);
    sb_printf(&b, "' 100000\n");
    rc = load_text(b.s, b.len, &t, path, sizeof path, err, sizeof err);
    snprintf(want, sizeof want, "%s:2: ", path);
    CHECKF(rc == -EINVAL && strncmp(err, want, strlen(want)) == 0, "huge: '%s'", err);
    free(b.s);

    /* A token over the per-token limit (1024 bytes) that fits the line limit. */
    b = (sbuf){0};
    sb_printf(&b, "1 '");
    for (int i = 0; i < 1000; i++)
        sb_add(&b, "\\xe9", 4); /* 2000 bytes from a 4000-character literal */
    sb_printf(&b, "' 2000\n");
    rc = rwkv_tokenizer_load_buffer(b.s, b.len, "long", &t, err, sizeof err);
    CHECKF(rc == -EINVAL && strncmp(err, "long:1: ", 8) == 0, "'%s'", err);
    free(b.s);

    /* Missing file: the open errno, message names the path. */
    snprintf(path, sizeof path, "%s/does-not-exist.txt", tmpdir);
    rc = rwkv_tokenizer_load(path, &t, err, sizeof err);
    CHECK(rc == -ENOENT && t == NULL && strstr(err, path) == err);

    /* Bad arguments and a NULL error buffer. */
    CHECK(rwkv_tokenizer_load(NULL, &t, err, sizeof err) == -EINVAL);
    CHECK(rwkv_tokenizer_load_buffer("1 'a' 1\n", 8, "x", NULL, err, sizeof err) == -EINVAL);
    CHECK(rwkv_tokenizer_load_buffer("1 'a' 2\n", 8, NULL, &t, NULL, 0) == -EINVAL);
    rc = rwkv_tokenizer_load_buffer("1 'a' 2\n", 8, NULL, &t, err, 8); /* truncated message */
    CHECK(rc == -EINVAL && strlen(err) == 7);
    CHECK(t == NULL);
    CHECK(rwkv_tokenizer_n_ids(NULL) == 0);
    CHECK(rwkv_tokenizer_token(NULL, 1, NULL) == 0);
}

int main(void)
{
    if (test_tmpdir(tmpdir, sizeof tmpdir) != 0) {
        fprintf(stderr, "cannot create a temp dir\n");
        return 1;
    }
    test_escapes();
    test_lenient_forms();
    test_longest_match();
    test_missing_bytes();
    test_random_roundtrip();
    test_bytes_vocab();
    test_stream_cases();
    test_stream_split_tokens();
    test_bad_input();
    /* Leave nothing behind: remove the files written above, then the dir. */
    for (int i = 0; i < file_no; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/vocab%d.txt", tmpdir, i);
        remove(p);
    }
    remove(tmpdir);
    return test_finish("test_tokenizer");
}
