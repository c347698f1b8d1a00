/* snapshot.h — the snapshot store: one file per channel in a directory, holding a channel's
 * exported engine state with everything needed to resume it (model fingerprint and dims,
 * tokens seen, last applied seq per producer, the WAL LSN it covers). Byte layout in
 * FORMATS.md §1.
 *
 * Files: <stem>.snap (newest generation), <stem>.snap.prev (the one before), and
 * <stem>.snap.tmp only while a write is in flight. <stem> is the channel name
 * percent-encoded: bytes [A-Za-z0-9_-] and '.' (not first) stay, every other byte is
 * %XX (upper-case hex); if that is longer than 160 bytes, the stem is its first <= 140 bytes,
 * '~' and 16 hex digits of FNV-1a-64 of the name (the file holds the full name either way).
 *
 * A write is atomic and keeps the previous generation until the new one is durable:
 * write <stem>.snap.tmp, fsync it, link .snap -> .snap.link, rename .tmp -> .snap, rename
 * .snap.link -> .snap.prev, fsync the directory (without hard links: rename .snap ->
 * .snap.prev, then .tmp -> .snap). A crash or an error at any step leaves a loadable
 * newest-or-previous generation and never a partial file under a final name; an error
 * before the new file is in place leaves both old generations untouched.
 * What it is not: a cache or a policy (when to snapshot is the daemon's business); it does
 * not touch the engine: the payload is opaque bytes of rwkv_engine_state_export().
 * Threads: a store may be used by one thread at a time (the writes of one channel race
 * otherwise); distinct stores on distinct directories are independent. */
#ifndef RWKVD_SNAPSHOT_H
#define RWKVD_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "fsio.h"

#define RWKVD_SNAP_MAGIC "RWKVSNAP" /* 8 bytes, no NUL */
#define RWKVD_SNAP_VERSION 1 /* files without an extra section */
#define RWKVD_SNAP_VERSION_EXTRA 2 /* with one: u64 extra_len after the producers (FORMATS.md §1) */
#define RWKVD_SNAP_EXTRA_MAX ((uint64_t)256 << 20)
#define RWKVD_SNAP_LAYOUT_V1 1 /* rwkv_engine_state_export(): per layer p_att[C], S[H][N][N], p_ffn[C];
                                * for RWKV-4 (n_head = head_size = 0) p_att, aa, bb, pp, p_ffn [C] */
#define RWKVD_SNAP_DTYPE_F32 0 /* little-endian IEEE fp32 (rwkv_dtype RWKV_DTYPE_F32) */
#define RWKVD_SNAP_NAME_MAX 255    /* octets of a channel name or producer id */
#define RWKVD_SNAP_PRODUCERS_MAX 65536

/* What a snapshot must match to be loaded: the model it was computed with. */
typedef struct {
    uint64_t fingerprint; /* rwkv_model_fingerprint(): covers the generation (rwkv_arch) too */
    uint32_t n_layer;     /* L */
    uint32_t n_embd;      /* C */
    uint32_t n_head;      /* H */
    uint32_t head_size;   /* N */
    uint32_t n_vocab;     /* V */
} rwkvd_snap_model;

typedef struct {
    const char *id; /* producer id, 1..255 octets, NUL-terminated */
    uint64_t seq;   /* highest seq of this producer applied to the state */
} rwkvd_snap_producer;

/* A snapshot in memory. For writing, the caller fills it with borrowed pointers; one returned
 * by read/load/decode owns everything it points to (free with rwkvd_snapshot_destroy). */
typedef struct {
    rwkvd_snap_model model;
    uint32_t layout;          /* RWKVD_SNAP_LAYOUT_V1 */
    uint32_t dtype;           /* RWKVD_SNAP_DTYPE_F32 */
    const char *channel;      /* 1..255 octets, NUL-terminated */
    uint64_t tokens_seen;
    uint64_t applied_lsn;     /* WAL LSN of the last record applied to the state; 0 = none */
    uint64_t created_ns;      /* CLOCK_REALTIME ns; 0 when writing = now */
    uint32_t n_producers;
    const rwkvd_snap_producer *producers; /* (n_producers) */
    const void *payload;      /* (payload_bytes) state; 8-byte aligned in returned snapshots */
    uint64_t payload_bytes;   /* == rwkvd_snap_state_bytes(&model) */
    const void *extra;        /* (extra_bytes) opaque bytes kept beside the state (the daemon's
                               * retained outputs); 0 bytes: a version-1 file */
    uint64_t extra_bytes;     /* <= RWKVD_SNAP_EXTRA_MAX */
} rwkvd_snapshot;

typedef enum {
    RWKVD_SNAP_CUR = 0,  /* <stem>.snap */
    RWKVD_SNAP_PREV = 1, /* <stem>.snap.prev */
} rwkvd_snap_gen;

typedef struct rwkvd_snapstore rwkvd_snapstore;

/* Bytes of a layout-1 fp32 state: L * (2C + H*N*N) * 4 (RWKV-4, H = N = 0: L * 5C * 4); 0 if
 * that overflows. */
uint64_t rwkvd_snap_state_bytes(const rwkvd_snap_model *m);

/* Encode/decode a whole snapshot file image (also the blob for export/import/replication).
 * encode: 0 and a malloc'd buffer in *out (caller frees), -EINVAL for a bad field, -ENOMEM.
 * decode: validates everything (see rwkvd_snapstore_read for the errors); `name` stands for
 * the source in messages; `expect` may be NULL to skip the model check. *out on success only. */
int rwkvd_snapshot_encode(const rwkvd_snapshot *s, void **out, size_t *out_len);
int rwkvd_snapshot_decode(const void *buf, size_t len, const char *name,
                          const rwkvd_snap_model *expect, rwkvd_snapshot **out, char *err,
                          size_t err_len);
void rwkvd_snapshot_destroy(rwkvd_snapshot **s);

/* The file stem of a channel name (encoding above). 0, or -EINVAL (empty, too long, NUL) or
 * -ENAMETOOLONG (cap too small; 161 is always enough). */
int rwkvd_snap_stem(const char *channel, char *buf, size_t cap);

/* Open the store on `dir`, creating it (mode 0700) if missing, and remove leftover *.snap.tmp
 * files of an interrupted write. `io` (may be NULL) is borrowed and must outlive the store;
 * its counters and hooks apply to every write. 0, or a negative errno with err naming dir. */
int rwkvd_snapstore_open(const char *dir, rwkvd_fsio *io, rwkvd_snapstore **out, char *err,
                         size_t err_len);
void rwkvd_snapstore_destroy(rwkvd_snapstore **st);

/* Write a snapshot atomically (sequence in the file comment). 0 once the new generation is
 * durable (file and directory fsynced). On error (the errno of the failed step, -EINVAL for a
 * bad field): err = "path: step: reason"; the previous newest generation is still loadable
 * and no partial file exists under a final name. Up to the rename into place, .snap and
 * .prev are unchanged. A failed rename to .prev (after it) or directory fsync leaves the
 * new file in place but reports the error: treat the snapshot as not written (the older
 * generations may be the ones on disk, so keep the log they need). */
int rwkvd_snapstore_write(rwkvd_snapstore *st, const rwkvd_snapshot *snap, char *err,
                          size_t err_len);

/* Read and validate one generation. 0 and *out, or:
 *   -ENOENT   no such file;
 *   -EBADMSG  not a snapshot, truncated, lengths inconsistent with the file size or the dims,
 *             crc mismatch, another channel's name, malformed fields;
 *   -EPROTO   an unknown format version, state layout or dtype (crc valid);
 *   -ESTALE   from another model: fingerprint or dims differ from `expect` (may be NULL);
 *   -EFBIG, -ENOMEM, or the errno of open/read.
 * err = "path: reason" in every case. */
int rwkvd_snapstore_read(rwkvd_snapstore *st, const char *channel, rwkvd_snap_gen gen,
                         const rwkvd_snap_model *expect, rwkvd_snapshot **out, char *err,
                         size_t err_len);

/* Newest valid generation: .snap, else .prev. 0 with *out and *gen (may be NULL); `note`
 * then holds why .snap was refused when .prev was used, else "". When neither loads: the
 * error of .snap (that of .prev if .snap is absent; -ENOENT when both are) and note naming
 * both files and reasons. */
int rwkvd_snapstore_load(rwkvd_snapstore *st, const char *channel, const rwkvd_snap_model *expect,
                         rwkvd_snapshot **out, rwkvd_snap_gen *gen, char *note, size_t note_len);

/* Delete both generations of a channel (reset). 0 (also when there were none) or an errno. */
int rwkvd_snapstore_remove(rwkvd_snapstore *st, const char *channel);

/* Channel names with at least one generation in the store, sorted, each once. Names of hashed
 * stems are read from the file. 0 and a malloc'd array of malloc'd strings (free with
 * rwkvd_snapstore_list_free), or a negative errno. */
int rwkvd_snapstore_list(rwkvd_snapstore *st, char ***names, size_t *n);
void rwkvd_snapstore_list_free(char ***names, size_t n);

/* The path of a generation's file (for messages and tests). 0 or -ENAMETOOLONG/-EINVAL. */
int rwkvd_snapstore_path(const rwkvd_snapstore *st, const char *channel, rwkvd_snap_gen gen,
                         char *buf, size_t cap);

#endif
