/* rwkvp.h — the rwkvd wire codec: ZeroMQ frames <-> message structs (proto/PROTOCOL.md).
 *
 * What it is: decoders and encoders for every message of protocol RWKV1 (ingest, ingest
 * replies, publish, control), the field validators they use (UTF-8, names, canonical
 * decimal integers) and the error-code table. What it is not: a socket layer, a JSON parser
 * (JSON frames are checked as UTF-8 only; see rwkvp_json.h) or an allocator.
 *
 * Ownership: decoders return views (rwkvp_frame) into the caller's frames, valid as long as
 * those are. Encoders fill a caller-owned rwkvp_msg whose frames point at static strings,
 * at the caller's data and at number scratch inside the rwkvp_msg itself (so an rwkvp_msg
 * must not be copied by value while its frames are in use). Nothing allocates, blocks or
 * keeps state: every function may be called from any thread.
 *
 * Key invariant: an encoder accepts exactly what the matching decoder accepts (it checks
 * its output with the decoder), so a message built here is never refused for its framing.
 *
 * Errors: functions that can fail return 0 or a negative errno. A message that fails to
 * decode returns -EBADMSG and fills an rwkvp_error with the wire code (PROTOCOL.md §12), the
 * frame and field at fault, a printable-ASCII text ready to send in an ERROR reply, and
 * whatever channel/producer/seq could still be recovered for that reply.
 */
#ifndef RWKVP_H
#define RWKVP_H

#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RWKVP_VERSION 1
#define RWKVP_SIGNATURE "RWKV1"
#define RWKVP_SIGNATURE_LEN 5

#define RWKVP_CHANNEL_MAX 128 /* octets */
#define RWKVP_NAME_MAX 64     /* producer id, profile name; octets */
#define RWKVP_U64_DIGITS 20   /* longest uint frame */
#define RWKVP_MAX_FRAMES 9    /* most frames in any message, envelope excluded (TEXT with its oseq) */

#define RWKVP_DEFAULT_MAX_MESSAGE_BYTES ((size_t)1 << 20)
#define RWKVP_DEFAULT_MAX_TOKENS ((size_t)65536)

/* One frame: a view of len octets (data may be NULL when len is 0). */
typedef struct {
    const void *data;
    size_t len;
} rwkvp_frame;

/* Wire status codes (PROTOCOL.md §12). */
enum {
    RWKVP_OK = 200,
    RWKVP_E_MALFORMED = 400,
    RWKVP_E_FORBIDDEN = 403,
    RWKVP_E_NOT_FOUND = 404,
    RWKVP_E_UNKNOWN_OP = 405,
    RWKVP_E_CONFLICT = 409,
    RWKVP_E_TOO_LARGE = 413,
    RWKVP_E_ENCODING = 415,
    RWKVP_E_INVALID = 422,
    RWKVP_E_DAMAGED = 423,
    RWKVP_E_PAUSED = 425,
    RWKVP_E_NO_CREDIT = 429,
    RWKVP_E_INTERNAL = 500,
    RWKVP_E_NOT_IMPLEMENTED = 501,
    RWKVP_E_UNAVAILABLE = 503,
    RWKVP_E_VERSION = 505,
    RWKVP_E_LIMIT = 507,
};

/* What a client does with a message answered by an error code. */
typedef enum {
    RWKVP_RETRY_NO = 0,       /* fails again as it is; later messages are unaffected */
    RWKVP_RETRY_BACKOFF,      /* resend the same seq after a back-off (409, 423, 500, 503, 507) */
    RWKVP_RETRY_AFTER_CREDIT, /* resend after CREDIT or a 1 s timeout (429) */
    RWKVP_RETRY_AFTER_RESEND, /* resend once the earlier paused seq is accepted (425) */
} rwkvp_retry;

/* Short name of a code ("malformed", "no credit", ...); "ok" for 200; NULL if unknown. */
const char *rwkvp_code_name(int code);
/* Retry class of a code; RWKVP_RETRY_NO for 200 and unknown codes. */
rwkvp_retry rwkvp_code_retry(int code);
/* True for the codes that pause a (channel, producer) pair (§8.2): 409 429 500 503 507. */
bool rwkvp_code_pauses(int code);

#define RWKVP_ERROR_TEXT_MAX 160

/* A decode failure. text is printable ASCII, NUL-terminated, and never echoes raw octets
 * of the message (they are shown escaped as \xNN). channel/producer/has_seq+seq are the
 * fields of the rejected message that were themselves valid (len 0 / false otherwise), for
 * the ERROR reply's frames 2..4. */
typedef struct {
    int code;          /* RWKVP_E_* */
    int frame;         /* offending frame index, -1 for the message as a whole */
    const char *field; /* static: "message", "signature", "op", "channel", "seq", ... */
    char text[RWKVP_ERROR_TEXT_MAX];
    rwkvp_frame channel;
    rwkvp_frame producer;
    bool has_seq;
    uint64_t seq;
} rwkvp_error;

/* The codec's one error formatter: fills e (code, frame, field) and its text, "frame N
 * (LABEL): message" (or "LABEL: message" for frame -1; LABEL is field when NULL), and
 * returns -EBADMSG. For the codec's modules (rwkvp.c, rwkvp_json.c). */
int rwkvp_error_set(rwkvp_error *e, int code, int frame, const char *field, const char *label, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;
int rwkvp_error_vset(rwkvp_error *e, int code, int frame, const char *field, const char *label, const char *fmt,
                     va_list ap);

/* Configured size limits; see rwkvp_limits_default. Decoders take a pointer to one, NULL
 * meaning the defaults. Encoders apply no size limits. */
typedef struct {
    size_t max_message_bytes; /* sum of frame lengths, envelope excluded (413) */
    size_t max_tokens;        /* ids in one TOKENS message (413) */
} rwkvp_limits;

void rwkvp_limits_default(rwkvp_limits *lim);

/* ---- validators ----------------------------------------------------------------- */

/* Strict RFC 3629 UTF-8 (no overlongs, surrogates or code points above U+10FFFF; U+0000 is
 * allowed). Returns true if valid; otherwise false and, when bad_offset is not NULL, the
 * offset of the first octet of the first ill-formed sequence. */
bool rwkvp_utf8_valid(const void *s, size_t len, size_t *bad_offset);

/* Channel name (§4.4): 1..128 octets, first [A-Za-z0-9_], rest [A-Za-z0-9_.:/-].
 * Returns 0, -EINVAL (empty or a bad octet, whose offset goes to *bad_offset when not NULL)
 * or -ENAMETOOLONG. */
int rwkvp_channel_check(const void *s, size_t len, size_t *bad_offset);
/* Producer id or profile name: the same rules with 1..64 octets. */
int rwkvp_name_check(const void *s, size_t len, size_t *bad_offset);

/* Canonical decimal uint64 (§4.2). Returns 0 and *out, -EINVAL for anything that is not
 * canonical digits (empty, sign, leading zero, other octets), -ERANGE above 2^64 - 1. */
int rwkvp_u64_parse(const void *s, size_t len, uint64_t *out);
/* Writes the canonical decimal of v to buf (at least RWKVP_U64_DIGITS + 1 octets), NUL-
 * terminated; returns the number of digits. */
size_t rwkvp_u64_format(uint64_t v, char *buf);

/* Token frames (§4.6): little-endian uint32 ids. _pack writes n ids to buf when cap >= 4n
 * and returns the octets needed (4n) either way. _get reads id i of a validated frame. */
size_t rwkvp_tokens_pack(const uint32_t *ids, size_t n, void *buf, size_t cap);
uint32_t rwkvp_tokens_get(const rwkvp_frame *tokens, size_t i);

/* Sum of frame lengths. */
size_t rwkvp_frames_bytes(const rwkvp_frame *f, size_t n);

/* Message received on a ROUTER socket (§5): frame 0 is the routing identity, frame 1 a
 * delimiter when empty. Sets *n_envelope to 1 or 2 (the frames to strip and echo in the
 * reply). Returns 0, or -EBADMSG when there is no identity or nothing after the envelope. */
int rwkvp_envelope_split(const rwkvp_frame *f, size_t n, size_t *n_envelope);

/* ---- encoder output ------------------------------------------------------------- */

typedef struct {
    rwkvp_frame frames[RWKVP_MAX_FRAMES];
    size_t n;
    char num[4][RWKVP_U64_DIGITS + 1]; /* decimal fields; frames point into these */
} rwkvp_msg;

/* ---- ingest (producer -> daemon) ------------------------------------------------------ */

typedef enum {
    RWKVP_OP_TEXT = 1,
    RWKVP_OP_TOKENS,
    RWKVP_OP_RESET,
    RWKVP_OP_TASK,
    RWKVP_OP_GEN,
    RWKVP_OP_CANCEL,
    RWKVP_OP_CLOSE,
    RWKVP_OP_SYNC,
} rwkvp_op;

typedef struct {
    rwkvp_op op;
    rwkvp_frame channel;
    rwkvp_frame producer;
    uint64_t seq;        /* >= 1; 0 for SYNC */
    rwkvp_frame payload; /* TEXT: UTF-8; TOKENS: LE uint32 ids; TASK: profile name;
                            GEN: JSON object or empty; other ops: empty */
    size_t n_tokens;     /* TOKENS: payload.len / 4 (set by decode, ignored by encode) */
} rwkvp_ingest;

/* "TEXT", "TOKENS", ...; NULL for values outside the enum. */
const char *rwkvp_op_name(rwkvp_op op);
/* Whether op is applied in queue order (TEXT TOKENS RESET TASK GEN CLOSE) rather than on
 * receipt (CANCEL SYNC). */
bool rwkvp_op_queued(rwkvp_op op);

/* Decode frames f[0..n) (envelope stripped). 0 and *out on success; -EBADMSG with *err
 * filled otherwise; -EINVAL on NULL arguments. The GEN payload is checked as UTF-8 only. */
int rwkvp_ingest_decode(const rwkvp_frame *f, size_t n, const rwkvp_limits *lim,
                        rwkvp_ingest *out, rwkvp_error *err);
/* Build an ingest message. 0, or -EINVAL with *err (when not NULL) saying what the daemon
 * would have answered. */
int rwkvp_ingest_encode(const rwkvp_ingest *m, rwkvp_msg *out, rwkvp_error *err);

/* ---- ingest replies (daemon -> producer) ------------------------------------------------- */

typedef enum {
    RWKVP_REPLY_ACK = 1,
    RWKVP_REPLY_DUP,
    RWKVP_REPLY_CREDIT,
    RWKVP_REPLY_ERROR,
} rwkvp_reply_kind;

typedef struct {
    rwkvp_reply_kind kind;
    rwkvp_frame channel;  /* ERROR: may be empty */
    rwkvp_frame producer; /* ERROR: may be empty */
    bool has_seq;         /* ACK/DUP: true; CREDIT: false; ERROR: whether frame 4 is set */
    uint64_t seq;
    uint64_t acked;       /* ACK/DUP/CREDIT */
    uint64_t credit;      /* ACK/DUP/CREDIT */
    int code;             /* ERROR: 400..599 */
    rwkvp_frame text;     /* ERROR: non-empty UTF-8 */
} rwkvp_reply;

const char *rwkvp_reply_kind_name(rwkvp_reply_kind k);
int rwkvp_reply_decode(const rwkvp_frame *f, size_t n, const rwkvp_limits *lim,
                       rwkvp_reply *out, rwkvp_error *err);
int rwkvp_reply_encode(const rwkvp_reply *m, rwkvp_msg *out, rwkvp_error *err);
/* The ERROR reply for a failed decode: channel/producer/seq as recovered in e, e->code and
 * e->text. Same contract as rwkvp_reply_encode; the frames point into e. */
int rwkvp_reply_encode_error(const rwkvp_error *e, rwkvp_msg *out);

/* ---- publish (daemon -> subscribers) ----------------------------------------------------- */

typedef enum {
    RWKVP_PUB_CLASS = 1,
    RWKVP_PUB_TEXT,
    RWKVP_PUB_END,
    RWKVP_PUB_ERROR,
} rwkvp_pub_kind;

typedef struct {
    rwkvp_pub_kind kind;
    rwkvp_frame channel;  /* topic, frame 0 */
    rwkvp_frame producer; /* empty exactly when seq is 0 */
    uint64_t seq;
    uint64_t tokens_seen;
    uint64_t index;       /* TEXT: piece number from 0 */
    int code;             /* ERROR: 400..599 */
    rwkvp_frame body;     /* CLASS/END: JSON object (UTF-8 checked); TEXT: piece (>= 1 octet);
                             ERROR: text (>= 1 octet) */
    uint64_t oseq;        /* the channel's output sequence number (PROTOCOL.md §9.1), >= 1;
                             0: the message has no oseq frame (decode) / leave it out (encode) */
} rwkvp_pub;

const char *rwkvp_pub_kind_name(rwkvp_pub_kind k);
int rwkvp_pub_decode(const rwkvp_frame *f, size_t n, const rwkvp_limits *lim, rwkvp_pub *out,
                     rwkvp_error *err);
int rwkvp_pub_encode(const rwkvp_pub *m, rwkvp_msg *out, rwkvp_error *err);

/* ---- control (operator <-> daemon) ------------------------------------------------------- */

typedef enum {
    RWKVP_CTL_STATUS = 1,
    RWKVP_CTL_CHANNELS,
    RWKVP_CTL_INFO,
    RWKVP_CTL_RESET,
    RWKVP_CTL_EVICT,
    RWKVP_CTL_DROP,
    RWKVP_CTL_SNAPSHOT,
    RWKVP_CTL_RELOAD,
    RWKVP_CTL_METRICS,
    RWKVP_CTL_EXPORT,
    RWKVP_CTL_IMPORT,
    RWKVP_CTL_FORK,
    RWKVP_CTL_REPLAY,
} rwkvp_ctl_cmd;

typedef struct {
    rwkvp_ctl_cmd cmd;
    rwkvp_frame channel; /* INFO RESET EVICT DROP EXPORT IMPORT: required; FORK: the source;
                          * SNAPSHOT: empty = all */
    rwkvp_frame prefix;  /* CHANNELS: empty = all */
    rwkvp_frame after;   /* CHANNELS: empty = from the first */
    rwkvp_frame dst;     /* FORK: the channel to create */
    rwkvp_frame blob;    /* IMPORT: a snapshot image (binary, non-empty; checked by the daemon) */
    uint64_t after_oseq; /* REPLAY: the outputs after this oseq (PROTOCOL.md §9.7) */
} rwkvp_ctl_request;

typedef struct {
    int code;         /* 200 or 400..599 */
    rwkvp_frame body; /* UTF-8; 200: JSON or metrics text; error: non-empty reason */
    rwkvp_frame blob; /* 200 of EXPORT: the snapshot image; of REPLAY: the publications
                       * (binary, frame 3); empty = absent */
} rwkvp_ctl_response;

const char *rwkvp_ctl_cmd_name(rwkvp_ctl_cmd c);
int rwkvp_ctl_request_decode(const rwkvp_frame *f, size_t n, const rwkvp_limits *lim,
                             rwkvp_ctl_request *out, rwkvp_error *err);
/* Encodes the optional arguments minimally: SNAPSHOT with an empty channel sends 2 frames;
 * CHANNELS sends prefix only when prefix or after is set, after only when set. */
int rwkvp_ctl_request_encode(const rwkvp_ctl_request *m, rwkvp_msg *out, rwkvp_error *err);
int rwkvp_ctl_response_decode(const rwkvp_frame *f, size_t n, const rwkvp_limits *lim,
                              rwkvp_ctl_response *out, rwkvp_error *err);
int rwkvp_ctl_response_encode(const rwkvp_ctl_response *m, rwkvp_msg *out, rwkvp_error *err);

#ifdef __cplusplus
}
#endif
#endif
