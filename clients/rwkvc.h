/* rwkvc.h — helpers shared by the rwkvd command-line clients (rwkvcat, rwkvsub, rwkvctl).
 *
 * What it is: multipart receive/send over libzmq with a deadline (zio.c), the producer's
 * seq state file (seqfile.c), the JSON line rwkvsub prints for one publication (pubjson.c),
 * and small parsers: durations, token-id lines, default endpoints and producer ids, UTF-8
 * repair (util.c). What it is not: a protocol layer — framing is proto/rwkvp.h's job, and
 * every message the clients send is built with its encoders.
 *
 * Conventions: functions that can fail return 0 or a negative errno and write their output
 * parameters only on success. Nothing here keeps global state; every function may be called
 * from any thread (the clients are single-threaded).
 */
#ifndef RWKVC_H
#define RWKVC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rwkvp.h"

/* ---- util.c ----------------------------------------------------------------------- */

/* Monotonic clock in milliseconds. */
int64_t rwkvc_now_ms(void);

/* Duration: a non-negative decimal number with an optional unit ms, s, m, h ("250ms",
 * "1.5s", "2m"); no unit means seconds. 0 and *out_ms, or -EINVAL. */
int rwkvc_duration_parse(const char *s, int64_t *out_ms);

/* Unsigned decimal (canonical or with leading zeros, no sign) up to max. 0 or -EINVAL/-ERANGE. */
int rwkvc_uint_parse(const char *s, uint64_t max, uint64_t *out);

/* The default endpoint for role "ingest", "publish" or "control": the environment variable
 * RWKVD_INGEST / RWKVD_PUBLISH / RWKVD_CONTROL when set and non-empty, else
 * ipc://${RUNTIME_DIRECTORY:-/run/rwkvd}/<role>.sock — the default of conf/rwkvd.yaml.
 * Writes a NUL-terminated string to buf; 0, or -ENAMETOOLONG when it does not fit. */
int rwkvc_default_endpoint(const char *role, char *buf, size_t cap);

/* A producer id (PROTOCOL.md §4.4) made from host and pid: "<host>:<pid>" with every octet
 * outside the name charset replaced by '_' and the host shortened so the whole fits 64
 * octets. buf needs RWKVP_NAME_MAX + 1 octets. Always succeeds (an empty host becomes "host"). */
void rwkvc_producer_from_host(const char *host, long pid, char *buf);

/* Token ids from one text line: decimal ids 0..2^32-1 separated by spaces, tabs or commas.
 * Writes up to cap ids to ids and *n_out (the count, also when it exceeds cap: then
 * -ENOBUFS). 0 on success (n may be 0 for a blank line); -EINVAL with *bad_col (0-based
 * column of the offending character) for anything else. */
int rwkvc_tokens_parse(const char *line, size_t len, uint32_t *ids, size_t cap, size_t *n_out,
                       size_t *bad_col);

/* Copy src to dst replacing every octet that does not start a valid UTF-8 sequence by
 * U+FFFD (one replacement per such octet). dst needs 3 * len octets. Returns the output
 * length and, in *n_replaced, how many replacements were made. */
size_t rwkvc_utf8_repair(const void *src, size_t len, char *dst, size_t *n_replaced);

/* ---- zio.c: multipart messages over libzmq ---------------------------------------------- */

#define RWKVC_MAX_FRAMES 12 /* envelope (2) + RWKVP_MAX_FRAMES + spare */

/* A received message: frames view into parts, valid until rwkvc_zmsg_close. */
typedef struct {
    void *parts; /* zmq_msg_t[RWKVC_MAX_FRAMES], allocated by rwkvc_recv */
    rwkvp_frame f[RWKVC_MAX_FRAMES];
    size_t n;       /* frames kept */
    size_t n_total; /* frames received; n_total > n means the message had too many frames */
} rwkvc_zmsg;

/* Wait up to timeout_ms (-1: forever, 0: do not wait) for one message on sock and receive
 * it whole. 0 and *m on success (close it with rwkvc_zmsg_close); -EAGAIN when nothing came
 * in time; -EINTR when a signal interrupted the wait; -ENOMEM; other -errno from libzmq. */
int rwkvc_recv(void *sock, rwkvc_zmsg *m, long timeout_ms);
void rwkvc_zmsg_close(rwkvc_zmsg *m);

/* Send f[0..n) as one multipart message. flags: 0 or ZMQ_DONTWAIT. 0 or -errno (-EAGAIN
 * when DONTWAIT and the message cannot be queued now). */
int rwkvc_send(void *sock, const rwkvp_frame *f, size_t n, int flags);

/* ---- seqfile.c: the producer's sequence state --------------------------------------------
 *
 * A small text file that survives rwkvcat restarts:
 *
 *     # rwkvcat sequence state
 *     channel app/nginx
 *     producer web-1
 *     acked 41
 *
 * It is replaced atomically (write a temporary file in the same directory, fsync, rename). */

typedef struct {
    char channel[RWKVP_CHANNEL_MAX + 1];
    char producer[RWKVP_NAME_MAX + 1];
    uint64_t acked;
} rwkvc_seqstate;

/* Read path. 0 and *out; -ENOENT when the file does not exist; -EBADMSG when it is not a
 * valid state file (err says which line and why); other -errno (err names the call). */
int rwkvc_seqfile_load(const char *path, rwkvc_seqstate *out, char *err, size_t err_len);
/* Write st to path atomically. 0 or -errno with err naming the failing step. */
int rwkvc_seqfile_save(const char *path, const rwkvc_seqstate *st, char *err, size_t err_len);

/* ---- pubjson.c: one publication as one JSON line ----------------------------------------
 *
 * The object rwkvsub prints (members in this order):
 *   channel (string), kind ("CLASS" | "TEXT" | "END" | "ERROR"), producer (string, "" when
 *   seq is 0), seq, tokens_seen (integers), oseq (integer, the channel's output sequence
 *   number, §9.7; only when the publication has one), then per kind:
 *     CLASS, END   body: the result object, parsed (§9.2, §9.4)
 *     TEXT         index (integer), piece (string)
 *     ERROR        code (integer), text (string)
 * A CLASS/END body that is not valid JSON (a daemon bug) is kept as the string body_raw. */

/* Write the JSON line (with a trailing newline) for p to f. 0, -ENOMEM, or -EIO. */
int rwkvc_pub_print(FILE *f, const rwkvp_pub *p);
/* The same line in a malloc'd NUL-terminated string without the newline; NULL on ENOMEM. */
char *rwkvc_pub_json(const rwkvp_pub *p);

#endif
