/* publish.h — the PUBLISH socket: CLASS, TEXT, END and ERROR messages, topic = channel.
 *
 * What it is: encoders (via proto/rwkvp) plus a non-blocking multipart send on an XPUB
 * socket. Each message is sent first with ZMQ_XPUB_NODROP set, so that a subscriber whose
 * queue is full makes the send fail with EAGAIN instead of losing the message silently;
 * then the message is counted in rwkvd_metrics.publish_dropped
 * (rwkvd_publish_dropped_total) and sent again without NODROP, which queues it for every
 * matching subscriber with room and drops it only toward the full ones. So a stalled
 * subscriber never cuts off the others, and the daemon never blocks on a subscriber.
 * Subscription messages arriving on the XPUB are drained and counted.
 * Trade-off: libzmq does not say which or how many subscribers were full, so a drop counts
 * one per message that at least one subscriber could not take, not one per subscriber.
 * Loop thread only.
 */
#ifndef RWKVD_PUBLISH_H
#define RWKVD_PUBLISH_H

#include <stddef.h>
#include <stdint.h>

#include "loop.h"

/* Origin of an output: (producer, seq) of the input it follows, tokens_seen. */
typedef struct {
    const char *producer; /* "" when seq is 0 */
    uint64_t seq;
    uint64_t tokens_seen;
} rwkvd_origin;

/* Bind and configure the XPUB socket on every configured endpoint. */
int rwkvd_publish_open(rwkvd_daemon *d, char *err, size_t err_len);
/* Drain subscription messages (call when the XPUB is readable). */
void rwkvd_publish_drain(rwkvd_daemon *d);

void rwkvd_publish_class(rwkvd_daemon *d, rwkvd_channel *ch, const rwkvd_origin *o,
                         const char *profile, int n, const char *const *labels, const float *probs);
void rwkvd_publish_text(rwkvd_daemon *d, rwkvd_channel *ch, const rwkvd_origin *o, uint64_t index,
                        const char *piece, size_t len);
void rwkvd_publish_end(rwkvd_daemon *d, rwkvd_channel *ch, const rwkvd_origin *o,
                       const rwkvp_end *end);
void rwkvd_publish_error(rwkvd_daemon *d, rwkvd_channel *ch, const rwkvd_origin *o, int code,
                         const char *text);
/* ERROR on a topic given by name (the channel need not exist): INGEST-PULL rejections. */
void rwkvd_publish_error_to(rwkvd_daemon *d, const char *channel, size_t channel_len, const rwkvd_origin *o,
                            int code, const char *text);

#endif
