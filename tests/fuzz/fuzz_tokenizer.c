/* fuzz_tokenizer.c — libFuzzer target for the tokenizer (vocabulary parser, encoder, raw and
 * streaming decoders).
 *
 * The input is first parsed as a vocabulary file; when it loads, the input itself is
 * encoded with it and must round-trip, and its ids are streamed through the decoder, whose
 * output must be valid UTF-8 and equal to streaming the same bytes one at a time. Then the
 * input is read as ids for the byte-level vocabulary (with ids that have no bytes mixed in)
 * and streamed the same way. A broken invariant aborts, so the fuzzer reports it.
 * Not a test of error messages beyond their "name:line: " prefix.
 */
#include "rwkv_tokenizer.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond) \
    do { \
        if (!(cond)) { \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
            abort(); \
        } \
    } while (0)

/* Whether s[0..n) is valid UTF-8 (shortest forms, no surrogates, <= U+10FFFF). */
static bool valid_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1Fu;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0Fu;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07u;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
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

/* Streams ids through a decoder, each push into a buffer of exactly the documented worst
 * case, then flushes; returns the malloc'd text and its length. */
static uint8_t *stream(const rwkv_tokenizer *t, const int32_t *ids, size_t n, size_t *out_len)
{
    size_t step = 3 * (3 + rwkv_tokenizer_max_token_len(t));
    long raw = rwkv_tokenizer_decode(t, ids, n, NULL, 0);
    REQUIRE(raw >= 0);
    /* Every byte in yields at most one U+FFFD out, the flush at most one more. */
    size_t cap = 3 * (size_t)raw + 3;
    uint8_t *out = malloc(cap);
    char *tmp = malloc(step);
    REQUIRE(out && tmp);
    rwkv_decoder d;
    rwkv_decoder_init(&d, t);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        long r = rwkv_decoder_push(&d, ids[i], tmp, step);
        REQUIRE(r >= 0 && (size_t)r <= step && (size_t)r <= cap - w);
        REQUIRE(d.n_pending >= 0 && d.n_pending <= 3);
        memcpy(out + w, tmp, (size_t)r);
        w += (size_t)r;
    }
    long r = rwkv_decoder_flush(&d, tmp, 3);
    REQUIRE((r == 0 || r == 3) && (size_t)r <= cap - w);
    memcpy(out + w, tmp, (size_t)r);
    w += (size_t)r;
    REQUIRE(d.n_pending == 0);
    free(tmp);
    *out_len = w;
    return out;
}

static void check_vocab(const rwkv_tokenizer *t, const uint8_t *data, size_t size)
{
    int n_ids = rwkv_tokenizer_n_ids(t);
    REQUIRE(n_ids >= 2);
    REQUIRE(rwkv_tokenizer_token(t, 0, NULL) == 0);
    REQUIRE(rwkv_tokenizer_token(t, n_ids, NULL) == 0);
    for (int32_t id = 1; id < n_ids; id++) {
        const uint8_t *b;
        size_t l = rwkv_tokenizer_token(t, id, &b);
        REQUIRE(l > 0 && l <= rwkv_tokenizer_max_token_len(t) && b != NULL);
    }

    /* Encode the input with its own vocabulary. A vocabulary without every single byte
     * may fail with -EILSEQ; anything else must round-trip. */
    long n = rwkv_tokenizer_encode(t, (const char *)data, size, NULL, 0);
    REQUIRE(n >= 0 || n == -EILSEQ);
    if (n <= 0)
        return;
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    REQUIRE(ids);
    REQUIRE(rwkv_tokenizer_encode(t, (const char *)data, size, ids, (size_t)n) == n);
    uint8_t *back = malloc(size + 1);
    REQUIRE(back);
    REQUIRE(rwkv_tokenizer_decode(t, ids, (size_t)n, (char *)back, size + 1) == (long)size);
    REQUIRE(memcmp(back, data, size) == 0);

    /* Streaming by token equals streaming byte by byte, and is valid UTF-8. */
    size_t len_tok, len_byte;
    uint8_t *by_tok = stream(t, ids, (size_t)n, &len_tok);
    REQUIRE(valid_utf8(by_tok, len_tok));
    rwkv_tokenizer *bytes = NULL;
    REQUIRE(rwkv_tokenizer_new_bytes(&bytes) == 0);
    int32_t *byte_ids = malloc((size + 1) * sizeof *byte_ids);
    REQUIRE(byte_ids);
    for (size_t i = 0; i < size; i++)
        byte_ids[i] = data[i];
    uint8_t *by_byte = stream(bytes, byte_ids, size, &len_byte);
    REQUIRE(len_tok == len_byte && memcmp(by_tok, by_byte, len_tok) == 0);
    if (valid_utf8(data, size))
        REQUIRE(len_tok == size && memcmp(by_tok, data, size) == 0);
    free(by_tok);
    free(by_byte);
    free(byte_ids);
    rwkv_tokenizer_destroy(&bytes);
    free(back);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rwkv_tokenizer *t = NULL;
    char err[256] = "";
    int rc = rwkv_tokenizer_load_buffer((const char *)data, size, "fuzz", &t, err, sizeof err);
    if (rc == 0) {
        REQUIRE(t != NULL);
        check_vocab(t, data, size);
        rwkv_tokenizer_destroy(&t);
        REQUIRE(t == NULL);
    } else {
        REQUIRE(t == NULL);
        REQUIRE(rc == -EINVAL || rc == -ENOMEM);
        if (rc == -EINVAL)
            REQUIRE(strncmp(err, "fuzz:", 5) == 0 && strlen(err) > 7);
    }

    /* The input as ids of the byte-level vocabulary; every 5th byte also pushes an id
     * without bytes (256, or -1), which must change nothing. */
    rwkv_tokenizer *bytes = NULL;
    REQUIRE(rwkv_tokenizer_new_bytes(&bytes) == 0);
    int32_t *ids = malloc((2 * size + 1) * sizeof *ids);
    int32_t *plain = malloc((size + 1) * sizeof *plain);
    REQUIRE(ids && plain);
    size_t n = 0;
    for (size_t i = 0; i < size; i++) {
        ids[n++] = data[i];
        plain[i] = data[i];
        if (i % 5 == 4)
            ids[n++] = data[i] & 1 ? 256 : -1;
    }
    size_t len_mixed, len_plain;
    uint8_t *mixed = stream(bytes, ids, n, &len_mixed);
    uint8_t *pl = stream(bytes, plain, size, &len_plain);
    REQUIRE(valid_utf8(mixed, len_mixed));
    REQUIRE(len_mixed == len_plain && memcmp(mixed, pl, len_mixed) == 0);
    if (valid_utf8(data, size))
        REQUIRE(len_plain == size && memcmp(pl, data, size) == 0);
    free(mixed);
    free(pl);
    free(ids);
    free(plain);
    rwkv_tokenizer_destroy(&bytes);
    return 0;
}
