/* outring.h — a channel's retention of recent publications, for control REPLAY
 * (PROTOCOL.md §9.7, §10.3).
 *
 * What it is: a FIFO of encoded publications, each under its output sequence number
 * (oseq), bounded by a count and a byte budget (outputs.retain_messages, retain_bytes);
 * appending past either bound drops the oldest records. A record is the publication's
 * frames as they went out, each as u32 little-endian length + octets after a u32 frame
 * count: the same bytes a REPLAY reply carries, so replaying needs no re-encoding.
 * What it is not: the numbering (publish.c assigns oseqs) or persistence (durable.c).
 * Key invariant: records are in increasing oseq order, consecutive except across a
 * rwkvd_outring_clear (which leaves it empty). Loop thread only; one malloc per record.
 */
#ifndef RWKVD_OUTRING_H
#define RWKVD_OUTRING_H

#include <stddef.h>
#include <stdint.h>

typedef struct rwkvd_outrec {
    struct rwkvd_outrec *next;
    uint64_t oseq;
    uint32_t len;         /* bytes of data */
    unsigned char data[]; /* u32 n_frames, then per frame u32 len + octets */
} rwkvd_outrec;

typedef struct {
    rwkvd_outrec *head, *tail; /* oldest, newest */
    uint32_t n;
    uint64_t bytes;            /* sum of the records' len */
} rwkvd_outring;

/* Append a record of the frames (n, data[i], len[i]) under oseq, then drop the oldest
 * records until at most max_n records and max_bytes bytes are left (a record alone larger
 * than max_bytes is not kept at all). 0, or -ENOMEM (the ring is then cleared, so that it
 * never holds a hole: a REPLAY reports those outputs as no longer retained). */
int rwkvd_outring_push(rwkvd_outring *r, uint64_t oseq, size_t n, const void *const *data,
                       const size_t *len, uint32_t max_n, uint64_t max_bytes);
/* Append an already encoded record (snapshot load); same bounds and errors. */
int rwkvd_outring_push_raw(rwkvd_outring *r, uint64_t oseq, const void *rec, uint32_t len,
                           uint32_t max_n, uint64_t max_bytes);
/* Drop the oldest records until the bounds hold. */
void rwkvd_outring_trim(rwkvd_outring *r, uint32_t max_n, uint64_t max_bytes);
/* Free every record (NULL-safe). */
void rwkvd_outring_clear(rwkvd_outring *r);
/* The oldest oseq held, 0 when empty. */
uint64_t rwkvd_outring_first(const rwkvd_outring *r);
/* Check a record's encoding: n_frames >= 1 and the lengths add up to len. 0 or -EBADMSG. */
int rwkvd_outrec_check(const void *rec, size_t len);

/* The ring as bytes (a snapshot's extra section, FORMATS.md §1): per record, oldest first,
 * u64 oseq, u32 len, the record. _bytes: the size; _encode writes that many bytes to buf. */
uint64_t rwkvd_outring_encoded_bytes(const rwkvd_outring *r);
void rwkvd_outring_encode(const rwkvd_outring *r, unsigned char *buf);
/* Append the records of such bytes (r is cleared first), under the bounds of _push.
 * 0, -EBADMSG (malformed: records not consecutive, a bad record; r is left empty) or -ENOMEM. */
int rwkvd_outring_decode(rwkvd_outring *r, const void *buf, uint64_t len, uint32_t max_n, uint64_t max_bytes);

#endif
