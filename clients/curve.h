/* curve.h — CURVE keys for the command-line clients, and why a connection got nowhere.
 *
 * What it is: RWKV_SERVER_KEY names the daemon's public key (a certificate file as
 * rwkvd-keygen writes it, a file holding a bare Z85 key, or the 40 Z85 characters
 * themselves) and RWKV_CLIENT_KEY this client's secret certificate (or bare secret key);
 * both set make the socket a CURVE client (PROTOCOL.md §15). A socket monitor records the
 * handshake's fate, so a client that got no reply can say that the daemon refused its key,
 * that one side uses CURVE and the other does not, or that the handshake never completed
 * (a wrong server key), instead of a bare time-out.
 * What it is not: a key store or generator (rwkvd-keygen). One watched socket per process.
 */
#ifndef RWKVC_CURVE_H
#define RWKVC_CURVE_H

#include <stddef.h>

/* Before zmq_connect: apply the keys from the environment to sock and, unless ctx is NULL
 * (the socket has a monitor of its own), start watching its handshakes. 0 (no keys: plain ZeroMQ, still watched), 1 (CURVE), or -1 with err naming the
 * variable and the file. */
int rwkvc_curve_setup(void *ctx, void *sock, char *err, size_t err_len);

/* After a time-out: why nothing came, from the handshake events seen so far ("" when
 * nothing says: no connection was made, or the handshake succeeded). */
void rwkvc_curve_explain(char *buf, size_t cap);

/* A monitor event of the watched socket seen by a caller that runs its own monitor (ctx
 * NULL at setup): ZMQ_EVENT_* and its value, as the monitor's first frame carries them.
 * rwkvc_curve_explain then explains from these. */
void rwkvc_curve_event(unsigned event, unsigned value);

/* Close the monitor (before zmq_ctx_term, which would wait for it). Idempotent. */
void rwkvc_curve_close(void);

#endif
