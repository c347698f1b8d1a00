/* zio.c — whole multipart messages over libzmq with a deadline; see rwkvc.h.
 * Every receive in the clients goes through rwkvc_recv, so none can block forever unless the
 * caller asks for it. Frames beyond RWKVC_MAX_FRAMES are read and dropped (counted in
 * n_total) so a hostile peer cannot make a client keep unbounded state. */
#include "rwkvc.h"

#include <errno.h>
#include <stdlib.h>
#include <zmq.h>

int rwkvc_recv(void *sock, rwkvc_zmsg *m, long timeout_ms)
{
    zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
    int rc = zmq_poll(&it, 1, timeout_ms);
    if (rc < 0)
        return -zmq_errno();
    if (rc == 0)
        return -EAGAIN;
    zmq_msg_t *parts = calloc(RWKVC_MAX_FRAMES, sizeof *parts);
    if (!parts)
        return -ENOMEM;
    size_t n = 0, total = 0;
    int more = 1;
    while (more) {
        zmq_msg_t tmp;
        zmq_msg_t *p = n < RWKVC_MAX_FRAMES ? &parts[n] : &tmp;
        zmq_msg_init(p);
        if (zmq_msg_recv(p, sock, ZMQ_DONTWAIT) < 0) {
            int e = zmq_errno();
            zmq_msg_close(p);
            for (size_t i = 0; i < n; i++)
                zmq_msg_close(&parts[i]);
            free(parts);
            return -(e ? e : EIO);
        }
        more = zmq_msg_more(p);
        total++;
        if (p == &tmp)
            zmq_msg_close(&tmp);
        else
            n++;
    }
    m->parts = parts;
    m->n = n;
    m->n_total = total;
    for (size_t i = 0; i < n; i++) {
        m->f[i].data = zmq_msg_data(&parts[i]);
        m->f[i].len = zmq_msg_size(&parts[i]);
    }
    return 0;
}

void rwkvc_zmsg_close(rwkvc_zmsg *m)
{
    if (!m || !m->parts)
        return;
    zmq_msg_t *parts = m->parts;
    for (size_t i = 0; i < m->n; i++)
        zmq_msg_close(&parts[i]);
    free(parts);
    m->parts = NULL;
    m->n = 0;
}

int rwkvc_send(void *sock, const rwkvp_frame *f, size_t n, int flags)
{
    for (size_t i = 0; i < n; i++) {
        int fl = flags | (i + 1 < n ? ZMQ_SNDMORE : 0);
        /* the first frame decides whether the message can be queued; later frames of a
           multipart message never fail with EAGAIN once the first is accepted */
        if (zmq_send(sock, f[i].len ? f[i].data : "", f[i].len, fl) < 0)
            return -zmq_errno();
    }
    return 0;
}
