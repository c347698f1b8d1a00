/* crc32c.h — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every
 * snapshot and WAL record (FORMATS.md). Uses the SSE4.2 crc32 instruction where the CPU has
 * it (compile time with -msse4.2/-march=native, else a run-time check on x86-64), and
 * slicing-by-8 tables otherwise.
 * What it is not: a cryptographic hash; it detects accidental damage only.
 * Invariant: every path returns the same value for the same bytes (checked by the tests). */
#ifndef RWKVD_CRC32C_H
#define RWKVD_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C of buf[0..len), continuing from `crc` (0 to start). Chaining holds:
 * rwkvd_crc32c(rwkvd_crc32c(0, a, n), b, m) == CRC of a||b. "123456789" gives 0xE3069283.
 * Thread-safe; never allocates. */
uint32_t rwkvd_crc32c(uint32_t crc, const void *buf, size_t len);

/* The portable slicing-by-8 path, whatever the CPU (for tests and the benchmark). */
uint32_t rwkvd_crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* "sse4.2" or "slice8": the path rwkvd_crc32c() takes on this machine. */
const char *rwkvd_crc32c_impl(void);

#endif
