/* security.h — CurveZMQ on the daemon's sockets, its ZAP handler, and the per-message
 * permission checks (PROTOCOL.md §15).
 *
 * What it is: when security.curve is configured, every socket the daemon binds (INGEST,
 * INGEST-PULL, PUBLISH, CONTROL, the replication stream) is a CURVE server with the
 * configured secret key, and every socket it connects to a peer daemon (a standby's sync
 * and stream, the fencing check) a CURVE client. A ZAP handler (a REP socket on
 * inproc://zeromq.zap.01, polled by the loop) admits a connection only when the client's
 * public key is on the allow-list (keys.h), and names it: the key's name becomes the
 * connection's User-Id, which every received message carries. Each INGEST message, CONTROL
 * request and replication message is checked against the sender key's permissions as the
 * allow-list is *now*, so a key removed by SIGHUP is refused on its next message while other
 * connections stay up. PUBLISH runs XPUB in manual mode: a subscription is applied only when
 * it lies inside the key's read prefixes; refused ones are counted and logged. A socket
 * monitor per bound socket counts handshakes accepted and refused by reason.
 * Limit: libzmq cannot close one connection of a bound socket, nor drop the subscriptions of
 * one peer, so when a reload removes (or narrows) a key that holds subscriptions, PUBLISH is
 * closed and bound again: every subscriber reconnects and resubscribes (libzmq does both),
 * the removed key is refused at its handshake, and publications of that moment are lost
 * to the others. INGEST and CONTROL connections of a removed key stay open but are answered
 * 403 on every message.
 * What it is not: the key and allow-list formats (keys.c). Loop thread only.
 */
#ifndef RWKVD_SECURITY_H
#define RWKVD_SECURITY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <zmq.h>

#include "keys.h"
#include "loop.h"

#define RWKVD_SEC_POLL_MAX 8 /* the ZAP socket and one monitor per bound socket */

/* Which socket a check or a monitor is about (metrics label). */
typedef enum {
    RWKVD_SOCK_INGEST = 0,
    RWKVD_SOCK_INGEST_PULL,
    RWKVD_SOCK_PUBLISH,
    RWKVD_SOCK_CONTROL,
    RWKVD_SOCK_REPLICATION,
    RWKVD_SOCK_N
} rwkvd_sock_role;

/* Check a configuration's security files without a daemon (--check-config): the secret key,
 * the allow-list, the client and peer keys. 0, or a negative errno with err. */
int rwkvd_security_check(const rwkvd_config *cfg, char *err, size_t err_len);

/* After d->zctx exists, before any socket: load the keys and the allow-list and bind the
 * ZAP handler (CURVE configured), or warn about a public bind without CURVE
 * (security.insecure_bind). 0, or a negative errno with the reason logged. */
int rwkvd_security_init(rwkvd_daemon *d);
void rwkvd_security_destroy(rwkvd_daemon *d);
bool rwkvd_security_on(const rwkvd_daemon *d);

/* Make sock a CURVE server and watch its handshakes (before zmq_bind). No-op when off.
 * 0 or -errno with err. */
int rwkvd_security_server(rwkvd_daemon *d, void *sock, rwkvd_sock_role role, char *err, size_t err_len);
/* Stop watching the socket of `role` (before it is closed). */
void rwkvd_security_forget(rwkvd_daemon *d, rwkvd_sock_role role);
/* Make sock a CURVE client of a peer daemon (before zmq_connect). No-op when off. */
int rwkvd_security_client(const rwkvd_daemon *d, void *sock);

/* Per-message checks on a received frame `part` (any frame but a ROUTER's identity frame).
 * 0 when allowed (always when security is off), else -EACCES with why = "key 'NAME' may not
 * ..." and the refusal counted for the key. */
int rwkvd_security_check_write(rwkvd_daemon *d, const zmq_msg_t *part, rwkvd_sock_role role, const void *channel,
                               size_t len, char *why, size_t cap);
int rwkvd_security_check_control(rwkvd_daemon *d, const zmq_msg_t *part, rwkvp_ctl_cmd cmd, char *why, size_t cap);
int rwkvd_security_check_replicate(rwkvd_daemon *d, const zmq_msg_t *part, char *why, size_t cap);
/* XPUB manual mode: apply or refuse one (un)subscription message just received. */
void rwkvd_security_subscription(rwkvd_daemon *d, const zmq_msg_t *m);

/* Reload: load the allow-list of `next` (the config about to be swapped in) into a pending
 * slot. 0, or -EINVAL with err (the reload must be refused). */
int rwkvd_security_prepare_reload(rwkvd_daemon *d, const rwkvd_config *next, char *err, size_t err_len);
/* Swap the pending allow-list in (after the config swap). Reopens PUBLISH when a removed or
 * narrowed key holds subscriptions (see the limit above). */
void rwkvd_security_commit_reload(rwkvd_daemon *d);

/* Poll items for the loop: fills up to RWKVD_SEC_POLL_MAX, returns how many. */
int rwkvd_security_pollitems(rwkvd_daemon *d, zmq_pollitem_t *items);
/* Serve what is ready among those items (ZAP requests, monitor events). */
void rwkvd_security_handle(rwkvd_daemon *d, const zmq_pollitem_t *items, int n);

/* STATUS "security": {curve, keys, insecure_bind, ...}; never a secret. */
void rwkvd_security_status(const rwkvd_daemon *d, json_t *status);
/* Append the security metrics (Prometheus text) to f. */
void rwkvd_security_metrics(const rwkvd_daemon *d, FILE *f);

#endif
