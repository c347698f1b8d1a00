/* keys.h — CURVE key files, the client allow-list with per-key permissions, and the ZAP
 * (RFC 27) decision, as pure functions over bytes (no sockets, no daemon).
 *
 * What it is:
 *  - key files in the ZPL "certificate" format czmq's zcert writes (a `metadata` section, a
 *    `curve` section with `public-key = "Z85"` and, in the secret file, `secret-key = "Z85"`),
 *    or a bare 40-character Z85 key on one line (what libzmq's curve_keygen prints);
 *  - the allow-list: a text file of lines `NAME PUBLIC-KEY [PERMISSION ...]`, or a directory
 *    of public certificates (`*.key`) whose metadata carries the name and the permissions;
 *  - permissions: channel prefixes a key may write (INGEST) and read (PUBLISH subscriptions),
 *    its control right (none, read = STATUS/CHANNELS/INFO/METRICS, all) and the replication
 *    right (a standby following this daemon);
 *  - the ZAP handler's decision for one request: 200 with the key's name as User-Id when
 *    the client's public key is listed, 400 otherwise.
 * The formats are in daemon/FORMATS.md §4. Every parser reports the first mistake as
 * `file:line: reason`.
 * What it is not: the ZAP socket, the CURVE socket options or the per-message checks
 * (security.c does those). Any thread; nothing here keeps state.
 */
#ifndef RWKVD_KEYS_H
#define RWKVD_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rwkvp.h"

#define RWKVD_KEY_NAME_MAX 64     /* octets of a key's name (A-Z a-z 0-9 _ - . @) */
#define RWKVD_KEY_PREFIXES_MAX 32 /* prefixes per right */
#define RWKVD_KEY_FILE_MAX (64u << 10)

typedef enum {
    RWKVD_CONTROL_NONE = 0, /* no control command */
    RWKVD_CONTROL_READ,     /* STATUS, CHANNELS, INFO, METRICS */
    RWKVD_CONTROL_ALL,      /* every command */
} rwkvd_control_right;

typedef struct {
    char name[RWKVD_KEY_NAME_MAX + 1];
    uint8_t public_key[32];
    char *write[RWKVD_KEY_PREFIXES_MAX]; /* (n_write) channel prefixes; "" = every channel */
    size_t n_write;
    char *read[RWKVD_KEY_PREFIXES_MAX];  /* (n_read) */
    size_t n_read;
    rwkvd_control_right control;
    bool replicate;
} rwkvd_key;

/* A key file: the public key, the secret one when the file has it, and the name and
 * permissions of its metadata section (empty / none when absent). */
typedef struct {
    rwkvd_key key;
    bool has_public, has_secret;
    uint8_t secret_key[32];
} rwkvd_cert;

typedef struct {
    rwkvd_key *v; /* (n) sorted by name; names and public keys unique */
    size_t n;
} rwkvd_allow;

/* Parse a key file's text[0..len); `file` names it in messages. 0, or -EINVAL with err.
 * A bare Z85 key is taken as secret when `bare_is_secret` (its public key derived), else as
 * public. Free with rwkvd_key_clear(&out->key). */
int rwkvd_cert_parse(const char *text, size_t len, const char *file, bool bare_is_secret, rwkvd_cert *out,
                     char *err, size_t err_len);
/* Read and parse a key file. With `secret`: the file must hold a secret key and must not be
 * readable by group or others (-EPERM). 0, or a negative errno with err naming the file. */
int rwkvd_cert_load(const char *path, bool secret, rwkvd_cert *out, char *err, size_t err_len);
void rwkvd_key_clear(rwkvd_key *k);

/* Parse an allow-list file's text. 0 and *out, or -EINVAL/-ENOMEM with err. */
int rwkvd_allow_parse(const char *text, size_t len, const char *file, rwkvd_allow **out, char *err,
                      size_t err_len);
/* Load `path`: an allow-list file, or a directory whose `*.key` files are public
 * certificates (name from metadata `name`, else the file name without `.key`). */
int rwkvd_allow_load(const char *path, rwkvd_allow **out, char *err, size_t err_len);
void rwkvd_allow_destroy(rwkvd_allow **a); /* NULL-safe, idempotent */

const rwkvd_key *rwkvd_allow_by_name(const rwkvd_allow *a, const char *name);
const rwkvd_key *rwkvd_allow_by_public(const rwkvd_allow *a, const uint8_t public_key[32]);

/* Whether k may write channel[0..len): the name starts with one of its write prefixes. */
bool rwkvd_key_may_write(const rwkvd_key *k, const char *channel, size_t len);
/* Whether k may hold the subscription prefix[0..len): every topic it matches lies inside one
 * read prefix (the subscription starts with that prefix). */
bool rwkvd_key_may_read(const rwkvd_key *k, const char *prefix, size_t len);
/* Whether k may run control command cmd (replicate implies STATUS: a standby asks it). */
bool rwkvd_key_may_control(const rwkvd_key *k, rwkvp_ctl_cmd cmd);
/* "app/, ops/" or "(none)" or "*": a right's prefixes for messages. */
void rwkvd_key_prefixes_str(char *const *v, size_t n, char *buf, size_t cap);

/* ZAP (RFC 27). */
typedef enum {
    RWKVD_ZAP_OK = 0,
    RWKVD_ZAP_UNKNOWN_KEY, /* CURVE with a key not on the list */
    RWKVD_ZAP_MECHANISM,   /* not CURVE (NULL or PLAIN) */
    RWKVD_ZAP_MALFORMED,   /* not a version 1.0 request */
    RWKVD_ZAP_N_REASONS
} rwkvd_zap_result;

typedef struct {
    rwkvp_frame request_id; /* borrowed from the request */
    const char *status;     /* "200", "400" or "500" */
    const char *text;
    const char *user_id;    /* the key's name (borrowed from the list), or "" */
} rwkvd_zap_reply;

/* Decide one ZAP request f[0..n). Always fills r (a reply is always owed). */
rwkvd_zap_result rwkvd_zap_decide(const rwkvd_allow *a, const rwkvp_frame *f, size_t n, rwkvd_zap_reply *r);
const char *rwkvd_zap_reason_name(rwkvd_zap_result r); /* "unknown_key", "mechanism", ... */

#endif
