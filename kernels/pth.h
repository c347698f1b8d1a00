/* pth.h — reader for the torch.save zip container and the pickle subset a state_dict uses
 * (spec §8). Internal to librwkv (tests and tools in the tree may use it).
 *
 * What it is: a bounds-checked parser that maps tensor names to typed views into the file
 * bytes. What it is not: a general unpickler — only the opcodes and globals torch writes for
 * a dict of tensors are accepted; anything else is refused with a message. Nothing is ever
 * "called": globals are tags.
 * Invariant: every view it returns lies inside the buffer and inside its storage record.
 */
#ifndef RWKV_PTH_H
#define RWKV_PTH_H

#include <stddef.h>
#include <stdint.h>

#define RWKV_PTH_MAX_DIM 8

typedef enum {
    RWKV_PTH_F32,
    RWKV_PTH_F16,
    RWKV_PTH_BF16,
    RWKV_PTH_F64,
    RWKV_PTH_I64,
    RWKV_PTH_I32,
    RWKV_PTH_I16,
    RWKV_PTH_I8,
    RWKV_PTH_U8,
    RWKV_PTH_BOOL,
} rwkv_pth_type;

typedef struct {
    const char *name;          /* NUL-terminated, owned by the rwkv_pth */
    rwkv_pth_type type;
    int ndim;
    int64_t shape[RWKV_PTH_MAX_DIM];
    int64_t stride[RWKV_PTH_MAX_DIM]; /* in elements */
    int64_t offset;            /* storage offset in elements */
    const uint8_t *storage;    /* first byte of the storage record */
    int64_t storage_numel;
    const char *storage_key;
} rwkv_pth_tensor;

typedef struct rwkv_pth rwkv_pth;

/* Map and parse a file. -EINVAL (err names the file and the defect), -ENOMEM, or errno. */
int rwkv_pth_open(const char *path, rwkv_pth **out, char *err, size_t err_len);
/* Parse a buffer the caller keeps alive (fuzzing, tests); `name` appears in messages. */
int rwkv_pth_parse(const uint8_t *buf, size_t len, const char *name, rwkv_pth **out,
                   char *err, size_t err_len);
void rwkv_pth_close(rwkv_pth **p);

int rwkv_pth_count(const rwkv_pth *p);
const rwkv_pth_tensor *rwkv_pth_at(const rwkv_pth *p, int i);
const rwkv_pth_tensor *rwkv_pth_find(const rwkv_pth *p, const char *name);
const char *rwkv_pth_name(const rwkv_pth *p); /* path or buffer name */
/* Advise the kernel that the mapping's pages are no longer needed (no-op for buffers):
 * all of them, or those of one tensor's storage once it was converted. Pages are re-read
 * from the page cache if touched again, so this only bounds the resident set. */
void rwkv_pth_release_pages(const rwkv_pth *p);
void rwkv_pth_release_tensor(const rwkv_pth *p, const rwkv_pth_tensor *t);

size_t rwkv_pth_type_size(rwkv_pth_type t);
const char *rwkv_pth_type_name(rwkv_pth_type t);
int64_t rwkv_pth_numel(const rwkv_pth_tensor *t);
/* Copy the tensor (any strides) into dst as fp32, numel elements, row-major. Only float
 * types are accepted (-EINVAL otherwise). */
int rwkv_pth_to_f32(const rwkv_pth_tensor *t, float *dst);

#endif
