/* outring.c — see outring.h. */
#include "outring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void drop_head(rwkvd_outring *r)
{
    rwkvd_outrec *x = r->head;
    r->head = x->next;
    if (!r->head)
        r->tail = NULL;
    r->n--;
    r->bytes -= x->len;
    free(x);
}

void rwkvd_outring_trim(rwkvd_outring *r, uint32_t max_n, uint64_t max_bytes)
{
    while (r->head && (r->n > max_n || r->bytes > max_bytes))
        drop_head(r);
}

void rwkvd_outring_clear(rwkvd_outring *r)
{
    if (!r)
        return;
    while (r->head)
        drop_head(r);
}

uint64_t rwkvd_outring_first(const rwkvd_outring *r)
{
    return r->head ? r->head->oseq : 0;
}

static void link_tail(rwkvd_outring *r, rwkvd_outrec *x, uint32_t max_n, uint64_t max_bytes)
{
    x->next = NULL;
    if (r->tail)
        r->tail->next = x;
    else
        r->head = x;
    r->tail = x;
    r->n++;
    r->bytes += x->len;
    rwkvd_outring_trim(r, max_n, max_bytes);
}

int rwkvd_outring_push(rwkvd_outring *r, uint64_t oseq, size_t n, const void *const *data,
                       const size_t *len, uint32_t max_n, uint64_t max_bytes)
{
    uint64_t total = 4;
    for (size_t i = 0; i < n; i++)
        total += 4 + (uint64_t)len[i];
    if (max_n == 0 || total > max_bytes || total > UINT32_MAX) {
        /* not kept: neither is anything before it, so the ring stays consecutive */
        rwkvd_outring_clear(r);
        return 0;
    }
    rwkvd_outrec *x = malloc(sizeof *x + total);
    if (!x) {
        rwkvd_outring_clear(r);
        return -ENOMEM;
    }
    x->oseq = oseq;
    x->len = (uint32_t)total;
    unsigned char *p = x->data;
    put_u32(p, (uint32_t)n);
    p += 4;
    for (size_t i = 0; i < n; i++) {
        put_u32(p, (uint32_t)len[i]);
        if (len[i])
            memcpy(p + 4, data[i], len[i]);
        p += 4 + len[i];
    }
    link_tail(r, x, max_n, max_bytes);
    return 0;
}

int rwkvd_outring_push_raw(rwkvd_outring *r, uint64_t oseq, const void *rec, uint32_t len,
                           uint32_t max_n, uint64_t max_bytes)
{
    if (max_n == 0 || len > max_bytes) {
        rwkvd_outring_clear(r);
        return 0;
    }
    rwkvd_outrec *x = malloc(sizeof *x + len);
    if (!x) {
        rwkvd_outring_clear(r);
        return -ENOMEM;
    }
    x->oseq = oseq;
    x->len = len;
    memcpy(x->data, rec, len);
    link_tail(r, x, max_n, max_bytes);
    return 0;
}

int rwkvd_outrec_check(const void *rec, size_t len)
{
    const unsigned char *p = rec;
    if (len < 4)
        return -EBADMSG;
    uint32_t n = get_u32(p);
    size_t off = 4;
    if (n == 0)
        return -EBADMSG;
    for (uint32_t i = 0; i < n; i++) {
        if (len - off < 4)
            return -EBADMSG;
        uint32_t fl = get_u32(p + off);
        off += 4;
        if (len - off < fl)
            return -EBADMSG;
        off += fl;
    }
    return off == len ? 0 : -EBADMSG;
}

uint64_t rwkvd_outring_encoded_bytes(const rwkvd_outring *r)
{
    return r->bytes + 12 * (uint64_t)r->n;
}

void rwkvd_outring_encode(const rwkvd_outring *r, unsigned char *buf)
{
    for (const rwkvd_outrec *x = r->head; x; x = x->next) {
        for (int i = 0; i < 8; i++)
            buf[i] = (unsigned char)(x->oseq >> (8 * i));
        put_u32(buf + 8, x->len);
        memcpy(buf + 12, x->data, x->len);
        buf += 12 + x->len;
    }
}

int rwkvd_outring_decode(rwkvd_outring *r, const void *buf, uint64_t len, uint32_t max_n, uint64_t max_bytes)
{
    const unsigned char *p = buf;
    uint64_t off = 0, prev = 0;
    rwkvd_outring_clear(r);
    while (off < len) {
        if (len - off < 12) {
            rwkvd_outring_clear(r);
            return -EBADMSG;
        }
        uint64_t oseq = 0;
        for (int i = 0; i < 8; i++)
            oseq |= (uint64_t)p[off + i] << (8 * i);
        uint32_t n = get_u32(p + off + 8);
        off += 12;
        if (n > len - off || rwkvd_outrec_check(p + off, n) != 0 || oseq == 0 || (prev && oseq != prev + 1)) {
            rwkvd_outring_clear(r);
            return -EBADMSG;
        }
        int rc = rwkvd_outring_push_raw(r, oseq, p + off, n, max_n, max_bytes);
        if (rc)
            return rc;
        prev = oseq;
        off += n;
    }
    return 0;
}
