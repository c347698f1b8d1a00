/* zmsg.c — see zmsg.h. */
#include "zmsg.h"

#include <errno.h>

int rwkvd_zmsg_recv(void *sock, rwkvd_zmsg *m)
{
    m->n = m->n_total = m->bytes_total = 0;
    for (;;) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        int flags = m->n_total == 0 ? ZMQ_DONTWAIT : 0;
        if (zmq_msg_recv(&part, sock, flags) < 0) {
            int e = zmq_errno();
            zmq_msg_close(&part);
            if (m->n_total == 0)
                return e == EAGAIN ? -EAGAIN : -e;
            rwkvd_zmsg_close(m);
            return -e;
        }
        int more = zmq_msg_more(&part);
        m->bytes_total += zmq_msg_size(&part);
        m->n_total++;
        if (m->n < RWKVD_ZMSG_MAX) {
            m->parts[m->n] = part;
            m->f[m->n].data = zmq_msg_data(&m->parts[m->n]);
            m->f[m->n].len = zmq_msg_size(&m->parts[m->n]);
            m->n++;
        } else {
            zmq_msg_close(&part);
        }
        if (!more)
            return 0;
    }
}

void rwkvd_zmsg_close(rwkvd_zmsg *m)
{
    for (size_t i = 0; i < m->n; i++)
        zmq_msg_close(&m->parts[i]);
    m->n = 0;
}

int rwkvd_zmsg_send(void *sock, const rwkvp_frame *env, size_t n_env, const rwkvp_frame *f, size_t n)
{
    size_t total = n_env + n;
    for (size_t i = 0; i < total; i++) {
        const rwkvp_frame *fr = i < n_env ? &env[i] : &f[i - n_env];
        int flags = ZMQ_DONTWAIT | (i + 1 < total ? ZMQ_SNDMORE : 0);
        if (zmq_send(sock, fr->len ? fr->data : "", fr->len, flags) < 0)
            return -zmq_errno();
    }
    return 0;
}
