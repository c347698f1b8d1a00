/* test_crc32c.c — CRC-32C: the standard check value, the iSCSI vectors of RFC 3720 B.4,
 * chaining over arbitrary splits, and the hardware path equal to slicing-by-8 for every
 * length and alignment. */
#include "crc32c.h"
#include "testutil.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* Bit-at-a-time reference, straight from the definition. */
static uint32_t crc_bitwise(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    }
    return ~c;
}

int main(void)
{
    fprintf(stderr, "crc32c path: %s\n", rwkvd_crc32c_impl());
    CHECK(rwkvd_crc32c(0, "123456789", 9) == 0xE3069283u);
    CHECK(rwkvd_crc32c_sw(0, "123456789", 9) == 0xE3069283u);
    CHECK(rwkvd_crc32c(0, "", 0) == 0);
    CHECK(rwkvd_crc32c(0, NULL, 0) == 0);

    unsigned char v[32];
    memset(v, 0, 32);
    CHECK(rwkvd_crc32c(0, v, 32) == 0x8A9136AAu);
    memset(v, 0xFF, 32);
    CHECK(rwkvd_crc32c(0, v, 32) == 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        v[i] = (unsigned char)i;
    CHECK(rwkvd_crc32c(0, v, 32) == 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        v[i] = (unsigned char)(31 - i);
    CHECK(rwkvd_crc32c(0, v, 32) == 0x113FDB5Cu);
    CHECK(rwkvd_crc32c_sw(0, v, 32) == 0x113FDB5Cu);

    enum { N = 4096 };
    unsigned char *buf = malloc(N + 16);
    for (size_t i = 0; i < N + 16; i++)
        buf[i] = (unsigned char)rnd();
    int bad = 0;
    for (size_t align = 0; align < 8; align++)
        for (size_t n = 0; n <= 300; n++) {
            uint32_t ref = crc_bitwise(buf + align, n);
            if (rwkvd_crc32c(0, buf + align, n) != ref || rwkvd_crc32c_sw(0, buf + align, n) != ref)
                bad++;
        }
    CHECKF(bad == 0, "%d (alignment, length) pairs differ from the bitwise reference", bad);

    uint32_t whole = rwkvd_crc32c(0, buf, N);
    CHECK(whole == crc_bitwise(buf, N));
    bad = 0;
    for (int t = 0; t < 200; t++) {
        size_t a = rnd() % (N + 1), b = rnd() % (N + 1);
        if (a > b) {
            size_t x = a;
            a = b;
            b = x;
        }
        uint32_t c = rwkvd_crc32c(0, buf, a);
        c = rwkvd_crc32c_sw(c, buf + a, b - a);
        c = rwkvd_crc32c(c, buf + b, N - b);
        if (c != whole)
            bad++;
    }
    CHECKF(bad == 0, "%d split points break chaining", bad);
    free(buf);
    return test_finish("test_crc32c");
}
