/* zmsg.h — multipart receive/send helpers over libzmq for the loop's ROUTER sockets.
 *
 * What it is: receive one whole multipart message into a bounded array of frames
 * (excess frames are read and counted, never kept), and send an envelope plus frames
 * without blocking. What it is not: a protocol layer (proto/ decodes the frames).
 * Loop thread only.
 */
#ifndef RWKVD_ZMSG_H
#define RWKVD_ZMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <zmq.h>

#include "rwkvp.h"

#define RWKVD_ZMSG_MAX 12 /* envelope (2) + RWKVP_MAX_FRAMES + spare */

typedef struct {
    zmq_msg_t parts[RWKVD_ZMSG_MAX];
    rwkvp_frame f[RWKVD_ZMSG_MAX];
    size_t n;          /* frames kept */
    size_t n_total;    /* frames received (n_total > n: too many frames) */
    size_t bytes_total;
} rwkvd_zmsg;

/* Receive one message without blocking. 0, -EAGAIN when none is waiting, other -errno. */
int rwkvd_zmsg_recv(void *sock, rwkvd_zmsg *m);
void rwkvd_zmsg_close(rwkvd_zmsg *m);
/* Send env[0..n_env) then f[0..n). 0, or -errno (EAGAIN, EHOSTUNREACH) if not delivered. */
int rwkvd_zmsg_send(void *sock, const rwkvp_frame *env, size_t n_env, const rwkvp_frame *f, size_t n);

#endif
