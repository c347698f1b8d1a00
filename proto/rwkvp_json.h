/* rwkvp_json.h — the JSON bodies of RWKV1: GEN parameters (PROTOCOL.md §6.4), CLASS
 * (§9.2) and END (§9.4) results. Built on jansson; only built where jansson is found.
 *
 * What it is: a validating parser for GEN parameters into a plain struct (so the daemon
 * can answer 400/422 at receipt, naming the member), and encoders for GEN parameters,
 * CLASS and END that write compact JSON into caller buffers and report the size needed.
 * What it is not: a general JSON layer; the control replies are built by the daemon.
 * jansson allocates transiently inside each call and frees before returning; nothing is
 * kept. Every function may be called from any thread.
 */
#ifndef RWKVP_JSON_H
#define RWKVP_JSON_H

#include "rwkvp.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RWKVP_GEN_MAX_TOKENS 65536u
#define RWKVP_GEN_MAX_TOP_K 65536u
#define RWKVP_STOP_MAX 16     /* stop strings per request */
#define RWKVP_STOP_BYTES 256  /* octets per stop string */
#define RWKVP_SEED_MAX 9007199254740991ull /* 2^53 - 1, exact in every JSON library */

/* Bits of rwkvp_gen_params.present: which members the request gave. */
enum {
    RWKVP_GEN_HAS_MAX_TOKENS = 1u << 0,
    RWKVP_GEN_HAS_TEMPERATURE = 1u << 1,
    RWKVP_GEN_HAS_TOP_P = 1u << 2,
    RWKVP_GEN_HAS_TOP_K = 1u << 3,
    RWKVP_GEN_HAS_PRESENCE_PENALTY = 1u << 4,
    RWKVP_GEN_HAS_FREQUENCY_PENALTY = 1u << 5,
    RWKVP_GEN_HAS_PENALTY_DECAY = 1u << 6,
    RWKVP_GEN_HAS_SEED = 1u << 7,
    RWKVP_GEN_HAS_STOP = 1u << 8,
    RWKVP_GEN_HAS_COMMIT = 1u << 9,
};

/* GEN parameters. Absent members hold the protocol defaults (rwkvp_gen_params_default);
 * the daemon overlays the channel's profile values for members whose bit is clear. */
typedef struct {
    unsigned present;         /* RWKVP_GEN_HAS_* */
    uint32_t max_tokens;      /* 1..65536, default 128 */
    double temperature;       /* 0..100, default 1.0; 0 = greedy */
    double top_p;             /* 0..1, default 0.85 */
    uint32_t top_k;           /* 0..65536, default 0 = off */
    double presence_penalty;  /* -100..100, default 0 */
    double frequency_penalty; /* -100..100, default 0 */
    double penalty_decay;     /* (0, 1], default 0.996 */
    uint64_t seed;            /* 0..2^53-1; meaningful only with RWKVP_GEN_HAS_SEED */
    bool commit;              /* default false */
    size_t n_stop;            /* 0..RWKVP_STOP_MAX */
    size_t stop_len[RWKVP_STOP_MAX];                /* 1..RWKVP_STOP_BYTES */
    char stop[RWKVP_STOP_MAX][RWKVP_STOP_BYTES + 1]; /* UTF-8 without U+0000, NUL-terminated */
} rwkvp_gen_params;

void rwkvp_gen_params_default(rwkvp_gen_params *p);

/* Parse a GEN payload (len 0 means "{}"). Returns 0 with *out filled, -EBADMSG with *err
 * (400: not a JSON object, a syntax error or a duplicate member, with line and column;
 * 415: invalid UTF-8; 422: a member unknown, of the wrong type or out of range, err->field
 * naming it), -EINVAL on NULL arguments, -ENOMEM. err->frame is 5 (the GEN payload) and
 * channel/producer/seq are left empty for the caller to fill. *out is written on success. */
int rwkvp_gen_params_parse(const void *json, size_t len, rwkvp_gen_params *out,
                           rwkvp_error *err);

/* Encoders: write the JSON (no NUL terminator) to buf when it fits. Return 0 with *needed =
 * octets written, -ENOBUFS with *needed = octets required (nothing usable in buf),
 * -EINVAL for values outside the ranges above, -ENOMEM. */

/* The members whose present bit is set; what rwkvp_gen_params_parse reads back equal. */
int rwkvp_gen_params_encode(const rwkvp_gen_params *p, char *buf, size_t cap, size_t *needed);

/* CLASS result: profile (a name), n >= 1 labels (UTF-8 C strings) with their
 * probabilities (finite, 0..1; written with the fewest digits that read back as the same
 * float); "top" is the first label with the highest probability. */
int rwkvp_class_encode(const char *profile, size_t n, const char *const *labels,
                       const float *probs, char *buf, size_t cap, size_t *needed);

typedef enum {
    RWKVP_END_MAX_TOKENS = 1,
    RWKVP_END_STOP,
    RWKVP_END_EOS,
    RWKVP_END_CANCELLED,
    RWKVP_END_ERROR,
} rwkvp_end_reason;

/* "max_tokens", "stop", "eos", "cancelled", "error"; NULL outside the enum. */
const char *rwkvp_end_reason_name(rwkvp_end_reason r);

typedef struct {
    rwkvp_end_reason reason;
    uint64_t n_tokens;  /* tokens sampled, <= 2^53-1 */
    rwkvp_frame text;   /* all generated text, UTF-8 (U+0000 allowed) */
    rwkvp_frame stop;   /* the matched stop string: non-empty exactly when reason is STOP */
    uint64_t seed;      /* <= RWKVP_SEED_MAX */
    bool committed;
} rwkvp_end;

int rwkvp_end_encode(const rwkvp_end *e, char *buf, size_t cap, size_t *needed);

#ifdef __cplusplus
}
#endif
#endif
