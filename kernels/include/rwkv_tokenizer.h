/* rwkv_tokenizer.h — the RWKV World tokenizer (rwkv_vocab_v20230424.txt format, spec §5)
 * and a byte-level vocabulary (id = byte) for tiny models.
 *
 * Encoding is greedy longest match over a byte trie; decoding concatenates byte strings.
 * The streaming decoder emits only valid UTF-8, holding back at most 3 bytes of an
 * incomplete sequence. A tokenizer is immutable after load and may be shared by threads.
 */
#ifndef RWKV_TOKENIZER_H
#define RWKV_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rwkv_tokenizer rwkv_tokenizer;

/* Parse a World vocabulary file. Errors (-EINVAL with "path:line: reason", or an open
 * errno) never crash: bad literal, bad escape, length mismatch, duplicate id or string. */
int rwkv_tokenizer_load(const char *path, rwkv_tokenizer **out, char *err, size_t err_len);
/* Same from a buffer (used by the fuzz target); `name` is used in messages. */
int rwkv_tokenizer_load_buffer(const char *data, size_t len, const char *name,
                               rwkv_tokenizer **out, char *err, size_t err_len);
/* Byte-level vocabulary: ids 0..255 are the bytes 0x00..0xff. */
int rwkv_tokenizer_new_bytes(rwkv_tokenizer **out);
void rwkv_tokenizer_destroy(rwkv_tokenizer **t);

/* One more than the largest id with bytes (65530 for World, 256 for bytes). */
int rwkv_tokenizer_n_ids(const rwkv_tokenizer *t);

/* Encode `len` bytes. Writes up to `cap` ids to `ids` and returns the total number of ids
 * the text needs (call again with a larger buffer if it exceeds cap), or a negative errno. */
long rwkv_tokenizer_encode(const rwkv_tokenizer *t, const char *text, size_t len,
                           int32_t *ids, size_t cap);

/* Bytes of one id (not NUL-terminated); returns the length, 0 for ids without bytes
 * (World id 0, ids >= 65530, anything out of range); *bytes set to NULL then. */
size_t rwkv_tokenizer_token(const rwkv_tokenizer *t, int32_t id, const uint8_t **bytes);

/* Streaming decoder: push ids, get UTF-8 text. Invalid byte sequences are replaced by
 * U+FFFD ("\xEF\xBF\xBD"); ids without bytes produce nothing. */
typedef struct {
    const rwkv_tokenizer *tok;
    uint8_t pending[4]; /* bytes of an incomplete UTF-8 sequence */
    int n_pending;
} rwkv_decoder;

void rwkv_decoder_init(rwkv_decoder *d, const rwkv_tokenizer *t);
/* Append the text that id completes to out (cap bytes; needs at most 4*3 + token length);
 * returns bytes written, or -ENOSPC if cap is too small (decoder unchanged then). */
long rwkv_decoder_push(rwkv_decoder *d, int32_t id, char *out, size_t cap);
/* Flush held bytes at end of stream (each becomes U+FFFD); returns bytes written. */
long rwkv_decoder_flush(rwkv_decoder *d, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
