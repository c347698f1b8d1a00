/* rwkv_sampler.h — turning logits into a token (spec §6).
 *
 * Order of operations (the RWKV-LM / Albatross sampler, spec §6.1, with the pip penalties
 * of §6.3): banned ids -> -inf; penalties from the occurrence map; softmax (fp32);
 * top-k; top-p with exact-mass tie adjustment (skipped when top_p >= 1); temperature applied
 * to the truncated probabilities; draw. temperature == 0, top_p == 0 or top_k == 1 is
 * greedy (argmax of the penalised logits, lowest id on ties, no RNG draw). Ties elsewhere
 * (top-k boundary) also go to the lowest id. The RNG is a per-sampler xoshiro256** seeded
 * explicitly, so a run is reproducible from its seed (not bit-compatible with torch).
 * A sampler is owned by one thread at a time.
 */
#ifndef RWKV_SAMPLER_H
#define RWKV_SAMPLER_H

#include "rwkv_api.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float temperature;     /* >= 0; 0 = greedy. default 1.0 */
    float top_p;           /* [0, 1]; 1 = off, 0 = greedy. default 1.0 */
    int top_k;             /* 0 = off. default 0 */
    float presence_penalty;  /* alpha_presence, finite, default 0 */
    float frequency_penalty; /* alpha_frequency, finite, default 0 */
    float penalty_decay;     /* alpha_decay in (0, 1], default 1 */
    uint64_t seed;
} rwkv_sampler_params;

RWKV_API void rwkv_sampler_params_default(rwkv_sampler_params *p);
typedef struct rwkv_sampler rwkv_sampler;
/* Allocates all scratch for n_vocab ids (1..2^24) up front. Returns 0, -EINVAL when a
 * parameter is out of range (err names it), or -ENOMEM; *out is written only on success. */
RWKV_API int rwkv_sampler_new(const rwkv_sampler_params *p, int n_vocab, rwkv_sampler **out,
                     char *err, size_t err_len);
RWKV_API void rwkv_sampler_destroy(rwkv_sampler **s);

/* Ban an id for every later draw (e.g. ids without bytes). 0, or -EINVAL if out of range. */
RWKV_API int rwkv_sampler_ban(rwkv_sampler *s, int32_t id);

/* Draw one id from logits (n_vocab floats; modified in place as scratch). Applies the
 * penalties of earlier accepted tokens. Never allocates. Returns the id (>= 0), -EINVAL on
 * NULL arguments, or -EDOM when every logit is -inf or NaN (e.g. everything banned). */
RWKV_API int32_t rwkv_sampler_sample(rwkv_sampler *s, float *logits);

/* Record an emitted token for presence/frequency penalties: decay every count by
 * penalty_decay, then add `weight` (1, or 0 for whitespace/digit tokens as pip does). A
 * recorded id gets the presence penalty even when its count is 0. Ids out of range and
 * non-finite weights are ignored. */
RWKV_API void rwkv_sampler_accept(rwkv_sampler *s, int32_t id, float weight);
/* Forget all accepted tokens and restart the RNG from the seed, so the sampler behaves like
 * a new one; bans stay. */
RWKV_API void rwkv_sampler_reset(rwkv_sampler *s);
/* Replace the seed and restart the RNG from it (e.g. a per-request seed). */
RWKV_API void rwkv_sampler_set_seed(rwkv_sampler *s, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
