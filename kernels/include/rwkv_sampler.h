/* rwkv_sampler.h — turning logits into a token (spec §6).
 *
 * Order of operations (the RWKV-LM / Albatross sampler, spec §6.1, with the pip penalties
 * of §6.3): banned ids -> -inf; penalties from the occurrence map; softmax (fp32);
 * top-k; top-p with exact-mass tie adjustment (skipped when top_p >= 1); temperature applied
 * to the truncated probabilities; draw. temperature == 0 or top_p == 0 is greedy (argmax,
 * lowest id on ties). The RNG is a per-sampler xoshiro256** seeded explicitly, so a run
 * is reproducible from its seed. A sampler is owned by one thread at a time.
 */
#ifndef RWKV_SAMPLER_H
#define RWKV_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float temperature;     /* >= 0; 0 = greedy. default 1.0 */
    float top_p;           /* (0, 1]; 1 = off. default 1.0 */
    int top_k;             /* 0 = off. default 0 */
    float presence_penalty;  /* alpha_presence, default 0 */
    float frequency_penalty; /* alpha_frequency, default 0 */
    float penalty_decay;     /* alpha_decay in (0, 1], default 1 */
    uint64_t seed;
} rwkv_sampler_params;

void rwkv_sampler_params_default(rwkv_sampler_params *p);
/* Returns NULL when a parameter is out of range (err names it). */
typedef struct rwkv_sampler rwkv_sampler;
int rwkv_sampler_new(const rwkv_sampler_params *p, int n_vocab, rwkv_sampler **out,
                     char *err, size_t err_len);
void rwkv_sampler_destroy(rwkv_sampler **s);

/* Ban an id for every later draw (e.g. ids without bytes). */
int rwkv_sampler_ban(rwkv_sampler *s, int32_t id);

/* Draw one id from logits (n_vocab floats; modified in place as scratch). Applies the
 * penalties of earlier accepted tokens. Returns the id (>= 0) or a negative errno. */
int32_t rwkv_sampler_sample(rwkv_sampler *s, float *logits);

/* Record an emitted token for presence/frequency penalties: decay every count by
 * penalty_decay, then add `weight` (1, or 0 for whitespace/digit tokens as pip does). */
void rwkv_sampler_accept(rwkv_sampler *s, int32_t id, float weight);
void rwkv_sampler_reset(rwkv_sampler *s);

#ifdef __cplusplus
}
#endif
#endif
