/* test_compat_vocab.c — the real World vocabulary (rwkv_vocab_v20230424.txt from
 * $RWKV_TESTDATA) against the facts of spec §9.1 and the reference encodings of §5.3,
 * which were produced by the pip TRIE_TOKENIZER.
 * Not run where the file is absent (exit 77); the unit tests cover the parser on their own.
 * Also prints load time and encode throughput, for the record, without asserting them.
 */
#include "rwkv_tokenizer.h"
#include "testutil.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- MD5 (RFC 1321) */

static uint32_t rol32(uint32_t x, int c)
{
    return (x << c) | (x >> (32 - c));
}

/* MD5 of data[0..n) as 32 lowercase hex digits in hex[33]. The round constants are
 * floor(|sin(i + 1)| * 2^32), computed here rather than tabulated. */
static void md5_hex(const uint8_t *data, size_t n, char hex[33])
{
    static const int shift[4][4] = {{7, 12, 17, 22}, {5, 9, 14, 20}, {4, 11, 16, 23},
                                    {6, 10, 15, 21}};
    uint32_t k[64];
    for (int i = 0; i < 64; i++)
        k[i] = (uint32_t)floor(fabs(sin((double)(i + 1))) * 4294967296.0);
    uint32_t h[4] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u};
    size_t total = ((n + 8) / 64 + 1) * 64; /* message + 0x80 + length, padded to 64 */
    uint8_t *m = calloc(total, 1);
    if (!m)
        abort();
    memcpy(m, data, n);
    m[n] = 0x80;
    uint64_t bits = (uint64_t)n * 8;
    for (int i = 0; i < 8; i++)
        m[total - 8 + i] = (uint8_t)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[16];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)m[off + 4 * i] | (uint32_t)m[off + 4 * i + 1] << 8 |
                   (uint32_t)m[off + 4 * i + 2] << 16 | (uint32_t)m[off + 4 * i + 3] << 24;
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
        for (int i = 0; i < 64; i++) {
            uint32_t f;
            int g;
            if (i < 16) {
                f = (b & c) | (~b & d);
                g = i;
            } else if (i < 32) {
                f = (d & b) | (~d & c);
                g = (5 * i + 1) % 16;
            } else if (i < 48) {
                f = b ^ c ^ d;
                g = (3 * i + 5) % 16;
            } else {
                f = c ^ (b | ~d);
                g = (7 * i) % 16;
            }
            uint32_t t = d;
            d = c;
            c = b;
            b = b + rol32(a + f + k[i] + w[g], shift[i / 16][i % 4]);
            a = t;
        }
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
    }
    free(m);
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", (h[i / 4] >> (8 * (i % 4))) & 0xffu);
}

/* ---------------------------------------------------------------- helpers */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static bool is_valid_utf8(const uint8_t *s, size_t n)
{
    /* Decode, then reject overlong forms, surrogates and values past U+10FFFF. */
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                   : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (len == 0 || n - i < len)
            return false;
        uint32_t cp = len == 1 ? c : c & (0x7Fu >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3Fu);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

static void check_encoding(const rwkv_tokenizer *t, const char *what, const char *text,
                           size_t len, const int32_t *want, long n_want)
{
    int32_t ids[64];
    long n = rwkv_tokenizer_encode(t, text, len, ids, 64);
    bool same = n == n_want;
    for (long i = 0; same && i < n; i++)
        same = ids[i] == want[i];
    if (!same) {
        fprintf(stderr, "%s: got", what);
        for (long i = 0; i < n && i < 64; i++)
            fprintf(stderr, " %d", ids[i]);
        fputc('\n', stderr);
    }
    CHECKF(same, "encoding of %s", what);
}

/* ---------------------------------------------------------------- checks */

static void check_file_facts(const rwkv_tokenizer *t, const char *text, size_t len)
{
    char hex[33];
    md5_hex((const uint8_t *)"abc", 3, hex); /* RFC 1321 test vector */
    CHECK(strcmp(hex, "900150983cd24fb0d6963f7d28e17f72") == 0);
    md5_hex((const uint8_t *)text, len, hex);
    CHECKF(strcmp(hex, "dd1946a66e1721abeac49f9c75a1e844") == 0, "md5 %s", hex);

    /* 65,529 lines; 486 bytes literals, each invalid UTF-8 alone, at most 2 bytes >= 0x80;
     * every text literal valid UTF-8. */
    long lines = 0, bytes_literals = 0, bad_bytes_lit = 0, bad_text = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            nl = end;
        lines++;
        const char *sp = memchr(p, ' ', (size_t)(nl - p));
        const uint8_t *b;
        size_t l = rwkv_tokenizer_token(t, (int32_t)lines, &b);
        if (sp && sp[1] == 'b') {
            bytes_literals++;
            bool ok = l >= 1 && l <= 2 && !is_valid_utf8(b, l);
            for (size_t i = 0; i < l; i++)
                ok = ok && b[i] >= 0x80;
            bad_bytes_lit += !ok;
        } else {
            bad_text += !is_valid_utf8(b, l);
        }
        p = nl + 1;
    }
    CHECKF(lines == 65529, "%ld lines", lines);
    CHECKF(bytes_literals == 486, "%ld bytes literals", bytes_literals);
    CHECK(bad_bytes_lit == 0);
    CHECK(bad_text == 0);
}

static void check_vocab_facts(const rwkv_tokenizer *t)
{
    CHECK(rwkv_tokenizer_n_ids(t) == 65530);
    const uint8_t *b;
    CHECK(rwkv_tokenizer_token(t, 0, &b) == 0 && b == NULL);
    for (int32_t id = 65530; id < 65536; id++)
        CHECK(rwkv_tokenizer_token(t, id, NULL) == 0);

    /* ids 1..256 are the single bytes, id = byte + 1. */
    bool bytes_ok = true;
    for (int32_t id = 1; id <= 256; id++)
        bytes_ok = bytes_ok && rwkv_tokenizer_token(t, id, &b) == 1 && b[0] == id - 1;
    CHECK(bytes_ok);

    /* Byte length is non-decreasing with id; the longest is id 65529, 128 spaces. */
    size_t prev = 0;
    bool sorted = true;
    for (int32_t id = 1; id < 65530; id++) {
        size_t l = rwkv_tokenizer_token(t, id, NULL);
        sorted = sorted && l >= prev && l > 0;
        prev = l;
    }
    CHECK(sorted);
    CHECK(rwkv_tokenizer_max_token_len(t) == 128);
    char spaces[130];
    memset(spaces, ' ', sizeof spaces);
    size_t l = rwkv_tokenizer_token(t, 65529, &b);
    CHECK(l == 128 && memcmp(b, spaces, 128) == 0);

    /* '\x80' in a text literal is U+0080: two bytes. '\u2002' is three. */
    l = rwkv_tokenizer_token(t, 2423, &b);
    CHECK(l == 2 && b[0] == 0xC2 && b[1] == 0x80);
    l = rwkv_tokenizer_token(t, 9804, &b);
    CHECK(l == 3 && memcmp(b, "\xE2\x80\x82", 3) == 0);
    l = rwkv_tokenizer_token(t, 11, &b);
    CHECK(l == 1 && b[0] == '\n');
    l = rwkv_tokenizer_token(t, 33, &b);
    CHECK(l == 1 && b[0] == ' ');
}

static void check_reference_encodings(const rwkv_tokenizer *t)
{
#define ENC(text, ...) \
    check_encoding(t, #text, text, sizeof(text) - 1, (const int32_t[]){__VA_ARGS__}, \
                   (long)(sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t)))
    ENC("The Eiffel tower is in the city of", 6699, 304, 25740, 109, 39990, 4600, 4596, 22590,
        30449, 4706);
    ENC("User: hi\n\nAssistant:", 24281, 59, 4571, 261, 5585, 41693, 59);
    ENC("User: simulate SpaceX mars landing using python\n\nAssistant: <think", 24281, 59,
        57236, 44898, 31377, 52092, 40085, 46966, 261, 5585, 41693, 59, 295, 35762);
    ENC("Hello world", 33155, 40213);
    ENC("\n\n", 261);
    ENC("\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C", 10464, 11685, 19137,
        10267, 14610); /* 你好，世界 */
    ENC("\xF0\x9F\x98\x80", 3319, 153, 129); /* 😀 */
    ENC("abc\0def", 6891, 1, 7334);
#undef ENC
    char spaces[130];
    memset(spaces, ' ', sizeof spaces);
    check_encoding(t, "130 spaces", spaces, 130, (const int32_t[]){65529, 267}, 2);
}

/* Encode, decode, and stream-decode a text; all must give it back. */
static void check_round_trip(const rwkv_tokenizer *t, const char *text, size_t len)
{
    int32_t *ids = malloc((len + 1) * sizeof *ids);
    char *back = malloc(len + 1), *streamed = malloc(3 * len + 16);
    long n = rwkv_tokenizer_encode(t, text, len, ids, len + 1);
    CHECK(n >= 0 && (size_t)n <= len);
    long d = rwkv_tokenizer_decode(t, ids, (size_t)(n > 0 ? n : 0), back, len + 1);
    CHECKF(d == (long)len && memcmp(back, text, len) == 0, "round trip of %.20s...", text);
    rwkv_decoder dec;
    rwkv_decoder_init(&dec, t);
    size_t w = 0;
    bool ok = true;
    for (long i = 0; i < n && ok; i++) {
        long r = rwkv_decoder_push(&dec, ids[i], streamed + w, 3 * len + 16 - w);
        ok = r >= 0;
        w += ok ? (size_t)r : 0;
    }
    long r = rwkv_decoder_flush(&dec, streamed + w, 3 * len + 16 - w);
    w += r > 0 ? (size_t)r : 0;
    if (is_valid_utf8((const uint8_t *)text, len))
        CHECKF(ok && w == len && memcmp(streamed, text, len) == 0, "stream of %.20s...", text);
    free(ids);
    free(back);
    free(streamed);
}

static void check_streaming(const rwkv_tokenizer *t)
{
    /* 😀 = 3319 (F0 9F) 153 (98) 129 (80): text only once the character is complete. */
    rwkv_decoder d;
    rwkv_decoder_init(&d, t);
    char out[64];
    CHECK(rwkv_decoder_push(&d, 3319, out, sizeof out) == 0);
    CHECK(rwkv_decoder_push(&d, 153, out, sizeof out) == 0);
    CHECK(rwkv_decoder_push(&d, 0, out, sizeof out) == 0); /* end of text: no bytes */
    CHECK(rwkv_decoder_push(&d, 65535, out, sizeof out) == 0);
    CHECK(rwkv_decoder_push(&d, 129, out, sizeof out) == 4 && memcmp(out, "\xF0\x9F\x98\x80", 4) == 0);
    CHECK(d.n_pending == 0);
    /* A lone continuation byte token, then text: replaced, then passed. */
    CHECK(rwkv_decoder_push(&d, 129, out, sizeof out) == 3 && memcmp(out, "\xEF\xBF\xBD", 3) == 0);
    CHECK(rwkv_decoder_push(&d, 33155, out, sizeof out) == 5 && memcmp(out, "Hello", 5) == 0);
    /* Worst case output per push fits the documented bound. */
    size_t bound = 3 * (3 + rwkv_tokenizer_max_token_len(t));
    CHECK(rwkv_decoder_push(&d, 65529, out, sizeof out) == -ENOSPC);
    char *big = malloc(bound);
    CHECK(rwkv_decoder_push(&d, 65529, big, bound) == 128);
    free(big);
}

static void report_speed(const rwkv_tokenizer *t, const char *vocab_text, size_t vocab_len)
{
    /* Mixed text: English prose, code, CJK and emoji, repeated to 4 MB. */
    static const char unit[] =
        "The Eiffel tower is in the city of Paris. User: hi\n\nAssistant: Hello world!\n"
        "int main(void) { return printf(\"%d\\n\", 42) < 0; }\n"
        "\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x98\x80 "
        "caf\xC3\xA9 na\xC3\xAFve \xC3\xBC" "ber  \t  spaces   and\ttabs\n";
    size_t len = 4 << 20, u = sizeof unit - 1;
    char *text = malloc(len);
    for (size_t i = 0; i < len; i++)
        text[i] = unit[i % u];
    int32_t *ids = malloc(len * sizeof *ids);
    double t0 = now_s();
    long n = rwkv_tokenizer_encode(t, text, len, ids, len);
    double dt = now_s() - t0;
    CHECK(n > 0);
    fprintf(stderr, "encode mixed text: %.1f MB/s (%zu bytes -> %ld ids)\n",
            (double)len / dt / 1e6, len, n);
    check_round_trip(t, text, len);
    t0 = now_s();
    n = rwkv_tokenizer_encode(t, vocab_text, vocab_len, ids, len);
    dt = now_s() - t0;
    fprintf(stderr, "encode vocab file: %.1f MB/s (%zu bytes -> %ld ids)\n",
            (double)vocab_len / dt / 1e6, vocab_len, n);
    free(ids);
    free(text);
}

int main(void)
{
    char path[1024];
    if (!test_testdata("rwkv_vocab_v20230424.txt", path, sizeof path)) {
        fprintf(stderr, "rwkv_vocab_v20230424.txt not found under $RWKV_TESTDATA: skipped\n");
        return TEST_SKIP;
    }
    rwkv_tokenizer *t = NULL;
    char err[512] = "";
    double t0 = now_s();
    int rc = rwkv_tokenizer_load(path, &t, err, sizeof err);
    double dt = now_s() - t0;
    CHECKF(rc == 0, "load: %d %s", rc, err);
    if (rc != 0)
        return test_finish("test_compat_vocab");
    fprintf(stderr, "loaded %s in %.1f ms\n", path, dt * 1e3);

    size_t len = 0;
    char *text = test_read_file(path, &len);
    CHECK(text != NULL);
    if (text)
        check_file_facts(t, text, len);
    check_vocab_facts(t);
    check_reference_encodings(t);
    static const char *mixed[] = {
        "Hello, world! \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",
        "User: What is 2+2?\n\nAssistant: <think>\n2+2 is 4.\n</think>\n4\n\n",
        "\tdef f(x):\n\t\treturn x ** 2  # square\r\n",
        ("\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 \xD0\xBC\xD0\xB8\xD1\x80 "
         "\xCE\xB1\xCE\xB2\xCE\xB3 \xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8\xE0\xA5\x8D\xE0\xA4\xA4\xE0\xA5\x87"),
        "<|endoftext|> is just text; so is \\x80 and '\\u2002'",
        "\x80\xff\xfe invalid \xc3 bytes \xed\xa0\x80 round-trip too",
    };
    for (size_t i = 0; i < sizeof mixed / sizeof mixed[0]; i++)
        check_round_trip(t, mixed[i], strlen(mixed[i]));
    char nul_text[] = "a\0b\0\0c";
    check_round_trip(t, nul_text, sizeof nul_text - 1);
    check_streaming(t);
    if (text)
        report_speed(t, text, len);
    free(text);
    rwkv_tokenizer_destroy(&t);
    return test_finish("test_compat_vocab");
}
