/* test_outring.c — unit tests of daemon/outring.c, a channel's retained publications.
 *
 * Proves: the count and byte bounds drop the oldest records; a record larger than the byte
 * bound (or a bound of 0) empties the ring instead of leaving a hole; the encoding a snapshot
 * holds decodes to the same records, and malformed or non-consecutive bytes are refused. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "outring.h"
#include "testutil.h"

/* One publication of two frames, "ch" and the decimal oseq, under oseq. */
static int push(rwkvd_outring *r, uint64_t oseq, size_t pad, uint32_t max_n, uint64_t max_bytes)
{
    char num[32], big[512];
    memset(big, 'x', sizeof big);
    int n = snprintf(num, sizeof num, "%llu", (unsigned long long)oseq);
    const void *data[3] = {"ch", num, big};
    size_t len[3] = {2, (size_t)n, pad};
    return rwkvd_outring_push(r, oseq, pad ? 3 : 2, data, len, max_n, max_bytes);
}

int main(void)
{
    rwkvd_outring r = {0};
    /* count bound */
    for (uint64_t i = 1; i <= 10; i++)
        CHECK(push(&r, i, 0, 4, 1 << 20) == 0);
    CHECK(r.n == 4 && rwkvd_outring_first(&r) == 7 && r.tail->oseq == 10);
    /* a record is u32 n_frames, then u32 length + octets per frame */
    CHECK(r.head->len == 4 + 4 + 2 + 4 + 1 && rwkvd_outrec_check(r.head->data, r.head->len) == 0);
    CHECK(rwkvd_outrec_check(r.head->data, r.head->len - 1) == -EBADMSG);
    /* byte bound: records of 4 + (4 + 2) + (4 + 1) + (4 + 100) = 119 bytes, at most 300: two stay */
    rwkvd_outring_clear(&r);
    CHECK(r.n == 0 && r.bytes == 0 && rwkvd_outring_first(&r) == 0);
    for (uint64_t i = 1; i <= 5; i++)
        CHECK(push(&r, i, 100, 100, 300) == 0);
    CHECK(r.n == 2 && r.bytes == 238 && rwkvd_outring_first(&r) == 4);
    /* one larger than the bound empties the ring (no hole before the next one) */
    CHECK(push(&r, 6, 400, 100, 300) == 0);
    CHECK(r.n == 0 && r.head == NULL && r.tail == NULL);
    CHECK(push(&r, 7, 0, 0, 300) == 0 && r.n == 0); /* retain_messages 0: nothing */
    /* encode / decode */
    for (uint64_t i = 8; i <= 12; i++)
        CHECK(push(&r, i, 10, 100, 1 << 20) == 0);
    uint64_t nb = rwkvd_outring_encoded_bytes(&r);
    unsigned char *buf = malloc(nb);
    CHECK(buf != NULL);
    if (!buf)
        return test_finish("test_outring");
    rwkvd_outring_encode(&r, buf);
    rwkvd_outring d = {0};
    CHECK(rwkvd_outring_decode(&d, buf, nb, 100, 1 << 20) == 0);
    CHECK(d.n == 5 && d.bytes == r.bytes && rwkvd_outring_first(&d) == 8 && d.tail->oseq == 12);
    const rwkvd_outrec *a = r.head, *b = d.head;
    for (; a && b; a = a->next, b = b->next)
        CHECK(a->oseq == b->oseq && a->len == b->len && memcmp(a->data, b->data, a->len) == 0);
    CHECK(a == NULL && b == NULL);
    /* decoding under smaller bounds keeps the newest */
    CHECK(rwkvd_outring_decode(&d, buf, nb, 2, 1 << 20) == 0 && d.n == 2 && rwkvd_outring_first(&d) == 11);
    /* truncated, a bad record, not consecutive: refused, left empty */
    CHECK(rwkvd_outring_decode(&d, buf, nb - 1, 100, 1 << 20) == -EBADMSG && d.n == 0);
    buf[12] ^= 0x7f; /* the first record's frame count */
    CHECK(rwkvd_outring_decode(&d, buf, nb, 100, 1 << 20) == -EBADMSG && d.n == 0);
    buf[12] ^= 0x7f;
    uint64_t second = 12 + r.head->len;
    buf[second] = 20; /* oseq 9 -> 20 */
    CHECK(rwkvd_outring_decode(&d, buf, nb, 100, 1 << 20) == -EBADMSG && d.n == 0);
    free(buf);
    rwkvd_outring_clear(&r);
    rwkvd_outring_clear(&d);
    rwkvd_outring_clear(NULL);
    return test_finish("test_outring");
}
