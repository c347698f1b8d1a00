/* crc32c.c — see crc32c.h. The tables are built once (pthread_once); the hardware path
 * handles 8 bytes per instruction and the unaligned head/tail a byte at a time. */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define HAVE_X86_CRC 1
#endif

#define POLY 0x82F63B78u

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (POLY & (0u - (c & 1u)));
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xFF];
}

uint32_t rwkvd_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&table_once, table_init);
    const unsigned char *p = buf;
    uint32_t c = ~crc;
    while (len && ((uintptr_t)p & 7)) {
        c = (c >> 8) ^ table[0][(c ^ *p++) & 0xFF];
        len--;
    }
    while (len >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        lo = __builtin_bswap32(lo);
        hi = __builtin_bswap32(hi);
#endif
        lo ^= c;
        c = table[7][lo & 0xFF] ^ table[6][(lo >> 8) & 0xFF] ^ table[5][(lo >> 16) & 0xFF] ^
            table[4][lo >> 24] ^ table[3][hi & 0xFF] ^ table[2][(hi >> 8) & 0xFF] ^
            table[1][(hi >> 16) & 0xFF] ^ table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--)
        c = (c >> 8) ^ table[0][(c ^ *p++) & 0xFF];
    return ~c;
}

#ifdef HAVE_X86_CRC
#ifndef __SSE4_2__
__attribute__((target("sse4.2")))
#endif
static uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint64_t c = ~crc;
    while (len && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        len--;
    }
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        len -= 8;
    }
    while (len--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#endif

#if defined(HAVE_X86_CRC) && !defined(__SSE4_2__)
/* Not compiled for SSE4.2: ask the CPU once. */
static int hw_ok;
static pthread_once_t hw_once = PTHREAD_ONCE_INIT;
static void hw_probe(void)
{
    __builtin_cpu_init();
    hw_ok = __builtin_cpu_supports("sse4.2");
}
static int use_hw(void)
{
    pthread_once(&hw_once, hw_probe);
    return hw_ok;
}
#elif defined(HAVE_X86_CRC)
static int use_hw(void) { return 1; }
#endif

uint32_t rwkvd_crc32c(uint32_t crc, const void *buf, size_t len)
{
#ifdef HAVE_X86_CRC
    if (use_hw())
        return crc32c_hw(crc, buf, len);
#endif
    return rwkvd_crc32c_sw(crc, buf, len);
}

const char *rwkvd_crc32c_impl(void)
{
#ifdef HAVE_X86_CRC
    if (use_hw())
        return "sse4.2";
#endif
    return "slice8";
}
