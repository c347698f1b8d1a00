/* rwkv_tokenizer.h — the RWKV World tokenizer (rwkv_vocab_v20230424.txt format, spec §5)
 * and a byte-level vocabulary (id = byte) for tiny models.
 *
 * Encoding is greedy longest match over a byte trie; decoding concatenates byte strings.
 * The streaming decoder emits only valid UTF-8, holding back at most 3 bytes of an
 * incomplete sequence. A tokenizer is immutable after load and may be shared by threads.
 */
#ifndef RWKV_TOKENIZER_H
#define RWKV_TOKENIZER_H

#include "rwkv_api.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rwkv_tokenizer rwkv_tokenizer;

/* Parse a World vocabulary file: lines "<id> <Python literal> <byte length>", ids 1..n
 * contiguous and in order (id 0 = end of text has no bytes). Errors never crash: bad
 * literal, bad escape, length mismatch, id out of sequence, duplicate string, empty file,
 * over-long line all return -EINVAL with "path:line: reason" in err; an open/read failure
 * returns its -errno, -ENOMEM when out of memory. *out is written only on success. */
RWKV_API int rwkv_tokenizer_load(const char *path, rwkv_tokenizer **out, char *err, size_t err_len);
/* Same from a buffer (used by the fuzz target); `name` is used in messages. */
RWKV_API int rwkv_tokenizer_load_buffer(const char *data, size_t len, const char *name,
                               rwkv_tokenizer **out, char *err, size_t err_len);
/* Byte-level vocabulary: ids 0..255 are the bytes 0x00..0xff. 0 or -ENOMEM. */
RWKV_API int rwkv_tokenizer_new_bytes(rwkv_tokenizer **out);
RWKV_API void rwkv_tokenizer_destroy(rwkv_tokenizer **t);

/* One more than the largest id with bytes (65530 for World, 256 for bytes). */
RWKV_API int rwkv_tokenizer_n_ids(const rwkv_tokenizer *t);
/* Bytes of the longest token (128 for World, 1 for bytes). */
RWKV_API size_t rwkv_tokenizer_max_token_len(const rwkv_tokenizer *t);

/* Encode `len` bytes (any bytes, greedy longest match). Writes up to `cap` ids to `ids` and
 * returns the total number of ids the text needs (call again with a larger buffer if it
 * exceeds cap), or a negative errno: -EINVAL on bad arguments, -EILSEQ if the vocabulary
 * has no token for some position (never for World or bytes, which hold every byte). */
RWKV_API long rwkv_tokenizer_encode(const rwkv_tokenizer *t, const char *text, size_t len,
                           int32_t *ids, size_t cap);

/* Bytes of one id (not NUL-terminated); returns the length, 0 for ids without bytes
 * (World id 0, ids >= 65530, anything out of range); *bytes set to NULL then. */
RWKV_API size_t rwkv_tokenizer_token(const rwkv_tokenizer *t, int32_t id, const uint8_t **bytes);

/* Raw decode: the concatenated bytes of n ids (not validated as UTF-8; ids without bytes
 * add nothing). Writes the first min(cap, total) bytes to out and returns the total, or
 * -EINVAL on bad arguments. */
RWKV_API long rwkv_tokenizer_decode(const rwkv_tokenizer *t, const int32_t *ids, size_t n, char *out,
                           size_t cap);

/* Streaming decoder: push ids, get UTF-8 text. Emits the longest valid prefix of the byte
 * stream so far, holds back at most 3 bytes of an incomplete trailing sequence, and
 * replaces each maximal ill-formed subpart by one U+FFFD ("\xEF\xBF\xBD"), as Python's
 * bytes.decode(errors="replace") does, so the concatenated output of push...flush equals
 * that of decoding all bytes at once. Ids without bytes (World id 0, ids >= n_ids,
 * negative ids) produce nothing and leave held bytes held. Plain struct, no destroy. */
typedef struct {
    const rwkv_tokenizer *tok;
    uint8_t pending[4]; /* bytes of an incomplete UTF-8 sequence */
    int n_pending;
} rwkv_decoder;

RWKV_API void rwkv_decoder_init(rwkv_decoder *d, const rwkv_tokenizer *t);
/* Append the text that id completes to out (cap bytes, not NUL-terminated). Needs at most
 * 3 * (3 + token length) bytes, so cap >= 3 * (3 + rwkv_tokenizer_max_token_len) always
 * suffices. Returns bytes written, or -ENOSPC if cap is too small (decoder unchanged then,
 * out clobbered), -EINVAL on bad arguments. */
RWKV_API long rwkv_decoder_push(rwkv_decoder *d, int32_t id, char *out, size_t cap);
/* Flush held bytes at end of stream: an incomplete sequence becomes one U+FFFD. Returns
 * bytes written (0 or 3), -ENOSPC if cap < 3 while bytes are held. */
RWKV_API long rwkv_decoder_flush(rwkv_decoder *d, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
