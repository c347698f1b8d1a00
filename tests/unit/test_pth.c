/* test_pth — the .pth container/pickle reader on a good file and on damaged copies of it.
 * Usage: test_pth GOOD.pth BADDIR (BADDIR unused here). Every damaged input must give
 * -EINVAL and a message naming the buffer, never a crash (the ASan build checks that). */
#include "pth.h"
#include "testutil.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Parse a copy (so ASan sees overreads past len) and return rc; err receives the message. */
static int parse_copy(const uint8_t *buf, size_t len, char *err, size_t cap)
{
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, buf, len);
    rwkv_pth *p = NULL;
    err[0] = 0;
    int rc = rwkv_pth_parse(copy, len, "mem.pth", &p, err, cap);
    if (rc == 0) {
        /* touch every tensor's data through the converter to prove the views are in bounds */
        for (int i = 0; i < rwkv_pth_count(p); i++) {
            const rwkv_pth_tensor *t = rwkv_pth_at(p, i);
            int64_t n = rwkv_pth_numel(t);
            if (n > 0 && n < (1 << 22)) {
                float *f = malloc((size_t)n * sizeof(float));
                rwkv_pth_to_f32(t, f);
                free(f);
            }
        }
    }
    rwkv_pth_close(&p);
    CHECK(p == NULL);
    free(copy);
    return rc;
}

static uint8_t *find(uint8_t *buf, size_t len, const char *needle, size_t nlen)
{
    return memmem(buf, len, needle, nlen);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return TEST_SKIP;
    size_t len;
    uint8_t *good = (uint8_t *)test_read_file(argv[1], &len);
    CHECK(good != NULL);
    if (!good)
        return test_finish("test_pth");
    char err[512];

    /* the good file: structure and views */
    rwkv_pth *p = NULL;
    CHECK(rwkv_pth_open(argv[1], &p, err, sizeof err) == 0);
    if (p) {
        CHECK(rwkv_pth_count(p) == 72); /* 2 layers × 33 + 6 globals */
        const rwkv_pth_tensor *emb = rwkv_pth_find(p, "emb.weight");
        CHECK(emb && emb->ndim == 2 && emb->shape[0] == 300 && emb->shape[1] == 128);
        const rwkv_pth_tensor *rk = rwkv_pth_find(p, "blocks.1.att.r_k");
        CHECK(rk && rk->ndim == 2 && rk->shape[0] == 2 && rk->shape[1] == 64);
        const rwkv_pth_tensor *xr = rwkv_pth_find(p, "blocks.0.att.x_r");
        CHECK(xr && xr->ndim == 3 && xr->shape[2] == 128);
        CHECK(rwkv_pth_find(p, "no.such.tensor") == NULL);
        int types[3] = {0};
        for (int i = 0; i < rwkv_pth_count(p); i++) {
            const rwkv_pth_tensor *t = rwkv_pth_at(p, i);
            CHECK(((uintptr_t)t->storage & 63) == 0); /* torch aligns records to 64 bytes */
            if (t->type <= RWKV_PTH_BF16)
                types[t->type]++;
        }
        CHECK(types[RWKV_PTH_F32] > 0 && types[RWKV_PTH_F16] > 0 && types[RWKV_PTH_BF16] > 0);
        rwkv_pth_close(&p);
        rwkv_pth_close(&p); /* idempotent */
    }
    CHECK(rwkv_pth_open("/nonexistent/x.pth", &p, err, sizeof err) == -ENOENT);
    CHECK(strstr(err, "/nonexistent/x.pth") != NULL);

    /* every truncation fails cleanly */
    int trunc_fail = 0, trunc_n = 0;
    for (size_t cut = 0; cut < len; cut += (cut < 256 ? 1 : 397)) {
        trunc_n++;
        if (parse_copy(good, cut, err, sizeof err) == -EINVAL && strstr(err, "mem.pth"))
            trunc_fail++;
    }
    CHECKF(trunc_fail == trunc_n, "%d of %d truncations rejected", trunc_fail, trunc_n);
    CHECK(parse_copy(good, len - 1, err, sizeof err) == -EINVAL);

    uint8_t *buf = malloc(len);
    /* not a zip at all */
    memcpy(buf, good, len);
    buf[0] = 'X';
    CHECK(parse_copy(buf, len, err, sizeof err) == -EINVAL && strstr(err, "not a zip"));
    /* damaged end-of-central-directory */
    memcpy(buf, good, len);
    uint8_t *eocd = NULL;
    for (size_t i = len - 22; i > 0 && !eocd; i--)
        if (memcmp(buf + i, "PK\5\6", 4) == 0)
            eocd = buf + i;
    CHECK(eocd != NULL);
    if (eocd) {
        eocd[3] = 9;
        CHECK(parse_copy(buf, len, err, sizeof err) == -EINVAL && strstr(err, "end-of-central-directory"));
    }
    /* an unknown pickle opcode: the GLOBAL right after PROTO 2 */
    memcpy(buf, good, len);
    uint8_t *pk = find(buf, len, "\x80\x02" "ccollections", 14);
    CHECK(pk != NULL);
    if (pk) {
        pk[2] = 0xfe;
        CHECK(parse_copy(buf, len, err, sizeof err) == -EINVAL && strstr(err, "unsupported pickle opcode 0xfe"));
    }
    /* a global that is not on the allowlist */
    memcpy(buf, good, len);
    uint8_t *g = find(buf, len, "OrderedDict", 11);
    CHECK(g != NULL);
    if (g) {
        memcpy(g, "system\n\n\n\n\n", 11);
        CHECK(parse_copy(buf, len, err, sizeof err) == -EINVAL && strstr(err, "unsupported global"));
    }
    /* a storage record that is missing: rename the first "data/0" entry in every header */
    memcpy(buf, good, len);
    int renamed = 0;
    for (uint8_t *q = buf; (q = find(q, len - (size_t)(q - buf), "/data/0", 7)) != NULL; q += 7) {
        if (q[7] < '0' || q[7] > '9') {
            q[6] = 'Z';
            renamed++;
        }
    }
    CHECK(renamed >= 2);
    CHECK(parse_copy(buf, len, err, sizeof err) == -EINVAL && strstr(err, "data/0"));
    /* random byte damage anywhere: never a crash; damage to the pickle is usually caught */
    int rejected = 0;
    for (int round = 0; round < 3000; round++) {
        memcpy(buf, good, len);
        int flips = 1 + (int)(next_rand() % 4);
        for (int f = 0; f < flips; f++) {
            size_t at = next_rand() % len;
            if (round % 2 == 0) /* half of the rounds aim at the metadata (pickle + directory) */
                at = len - 1 - next_rand() % (len < 12000 ? len : 12000);
            buf[at] = (uint8_t)next_rand();
        }
        if (parse_copy(buf, len, err, sizeof err) != 0)
            rejected++;
    }
    fprintf(stderr, "random damage: %d of 3000 rejected (the rest hit tensor data)\n", rejected);
    free(buf);
    free(good);
    return test_finish("test_pth");
}
