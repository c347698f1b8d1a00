/* pth.c — torch.save zip container + state_dict pickle reader (spec §8).
 *
 * The file is mmap'ed read-only; the zip central directory gives each record's place, the
 * pickle in <root>/data.pkl is run on a tiny VM whose values live in one growable pool.
 * Not a general unpickler: unknown opcodes and globals are errors, never calls.
 * Invariant: all reads go through bounds checks against the buffer length; a tensor view is
 * only created after its extent was checked against its storage record.
 */
#include "pth.h"
#include "errbuf.h"
#include "half.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Hard limits that keep a hostile file from exhausting memory. */
#define MAX_ENTRIES (1u << 20)
#define MAX_VALUES (1u << 24)
#define MAX_MEMO (1u << 24)
#define MAX_STACK (1u << 20)

typedef struct {
    const char *name; /* points into the central directory (not NUL-terminated) */
    uint32_t name_len;
    uint64_t data_off;
    uint64_t size;
} zip_entry;

struct rwkv_pth {
    char *name;
    const uint8_t *buf;
    size_t len;
    bool mapped;
    zip_entry *entries;
    uint32_t n_entries;
    rwkv_pth_tensor *tensors;
    int n_tensors;
    char *strings; /* tensor and storage names, NUL-separated */
    size_t strings_len, strings_cap;
};

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

/* ---- zip ------------------------------------------------------------------------------ */

static int zip_read(rwkv_pth *p, char *err, size_t err_len)
{
    const uint8_t *b = p->buf;
    size_t len = p->len;
    if (len < 22)
        return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "file too short for a zip archive (%zu bytes)", len);
    if (len >= 4 && rd32(b) != 0x04034b50)
        return rwkv_errf(err, err_len, -EINVAL, p->name, 0,
                         "not a zip archive (torch >= 1.6 .pth expected; legacy pickle/tar format not supported)");
    /* End of central directory: scan back at most 64 KiB + 22 bytes. */
    size_t lo = len > 65557 ? len - 65557 : 0;
    size_t eocd = SIZE_MAX;
    for (size_t i = len - 22 + 1; i-- > lo;) {
        if (rd32(b + i) == 0x06054b50) {
            eocd = i;
            break;
        }
    }
    if (eocd == SIZE_MAX)
        return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "zip end-of-central-directory record not found (truncated file?)");
    uint64_t n_entries = rd16(b + eocd + 10);
    uint64_t cd_size = rd32(b + eocd + 12);
    uint64_t cd_off = rd32(b + eocd + 16);
    /* zip64 locator sits 20 bytes before the EOCD; torch always writes one. */
    if (eocd >= 20 && rd32(b + eocd - 20) == 0x07064b50) {
        uint64_t z64 = rd64(b + eocd - 20 + 8);
        if (z64 > len || len - z64 < 56 || rd32(b + z64) != 0x06064b50)
            return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "bad zip64 end-of-central-directory record");
        n_entries = rd64(b + z64 + 32);
        cd_size = rd64(b + z64 + 40);
        cd_off = rd64(b + z64 + 48);
    } else if (n_entries == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu) {
        return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "zip64 archive without a zip64 locator");
    }
    if (cd_off > len || cd_size > len - cd_off)
        return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "zip central directory (offset %llu, size %llu) lies outside the file (%zu bytes): truncated?",
                    (unsigned long long)cd_off, (unsigned long long)cd_size, len);
    if (n_entries == 0 || n_entries > MAX_ENTRIES)
        return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "zip archive has %llu entries", (unsigned long long)n_entries);
    p->entries = calloc(n_entries, sizeof(zip_entry));
    if (!p->entries)
        return -ENOMEM;
    const uint8_t *c = b + cd_off, *end = b + cd_off + cd_size;
    for (uint64_t k = 0; k < n_entries; k++) {
        if (end - c < 46 || rd32(c) != 0x02014b50)
            return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "zip central directory entry %llu is malformed", (unsigned long long)k);
        uint16_t method = rd16(c + 10);
        uint64_t csize = rd32(c + 20), usize = rd32(c + 24);
        uint16_t nlen = rd16(c + 28), xlen = rd16(c + 30), clen = rd16(c + 32);
        uint64_t lho = rd32(c + 42);
        if ((size_t)(end - c) < 46u + nlen + xlen + clen)
            return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "zip central directory entry %llu overruns the directory", (unsigned long long)k);
        const char *nm = (const char *)c + 46;
        /* zip64 extra: only the saturated fields, in the order usize, csize, offset. */
        const uint8_t *x = c + 46 + nlen, *xe = x + xlen;
        while (xe - x >= 4) {
            uint16_t id = rd16(x), sz = rd16(x + 2);
            if (xe - x - 4 < sz)
                break;
            if (id == 0x0001) {
                const uint8_t *f = x + 4, *fe = f + sz;
                if (usize == 0xffffffffu) {
                    if (fe - f < 8)
                        return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "bad zip64 extra field in entry '%.*s'", nlen, nm);
                    usize = rd64(f);
                    f += 8;
                }
                if (csize == 0xffffffffu) {
                    if (fe - f < 8)
                        return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "bad zip64 extra field in entry '%.*s'", nlen, nm);
                    csize = rd64(f);
                    f += 8;
                }
                if (lho == 0xffffffffu) {
                    if (fe - f < 8)
                        return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "bad zip64 extra field in entry '%.*s'", nlen, nm);
                    lho = rd64(f);
                }
            }
            x += 4 + sz;
        }
        if (method != 0)
            return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "zip entry '%.*s' is compressed (method %u); torch writes stored entries", nlen, nm, method);
        if (csize != usize)
            return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "zip entry '%.*s' has compressed size %llu != size %llu", nlen, nm,
                        (unsigned long long)csize, (unsigned long long)usize);
        if (lho > len || len - lho < 30 || rd32(b + lho) != 0x04034b50)
            return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "zip local header of '%.*s' missing at offset %llu (truncated file?)", nlen, nm,
                        (unsigned long long)lho);
        uint64_t data = lho + 30 + rd16(b + lho + 26) + rd16(b + lho + 28);
        if (data > len || usize > len - data)
            return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "zip entry '%.*s' (%llu bytes at offset %llu) extends past the end of the file (%zu bytes): truncated?",
                        nlen, nm, (unsigned long long)usize, (unsigned long long)data, len);
        p->entries[k] = (zip_entry){nm, nlen, data, usize};
        c += 46 + nlen + xlen + clen;
    }
    p->n_entries = (uint32_t)n_entries;
    return 0;
}

/* Find "<root>/<suffix>" where root is the first path component of data.pkl's entry. */
static const zip_entry *zip_find(const rwkv_pth *p, const char *root, size_t root_len, const char *suffix)
{
    size_t sl = strlen(suffix);
    for (uint32_t i = 0; i < p->n_entries; i++) {
        const zip_entry *e = &p->entries[i];
        if (e->name_len == root_len + 1 + sl && memcmp(e->name, root, root_len) == 0 &&
            e->name[root_len] == '/' && memcmp(e->name + root_len + 1, suffix, sl) == 0)
            return e;
    }
    return NULL;
}

/* ---- pickle VM ------------------------------------------------------------------------ */

enum vtype { V_NONE, V_BOOL, V_INT, V_STR, V_TUPLE, V_DICT, V_GLOBAL, V_MARK, V_STORAGE, V_TENSOR };

enum gtag {
    G_ORDERED_DICT = 1,
    G_REBUILD_TENSOR_V2,
    G_REBUILD_PARAMETER,
    G_STORAGE_BASE = 100, /* + rwkv_pth_type */
};

typedef struct {
    uint8_t type;
    int64_t i;      /* int value, bool, global tag, storage type */
    const char *s;  /* string bytes (inside the pickle) */
    uint32_t slen;
    uint32_t n, cap; /* tuple/dict items */
    uint32_t *items; /* value indices; dict = k0,v0,k1,v1,... */
    /* storage: key in s/slen, numel in i2; tensor: see tensor_of() */
    int64_t i2;
    int tensor_idx;
} pvalue;

typedef struct {
    pvalue *v;
    uint32_t n_v, cap_v;
    uint32_t *stack;
    uint32_t n_stack, cap_stack;
    uint32_t *marks;
    uint32_t n_marks, cap_marks;
    uint32_t *memo;
    uint32_t cap_memo;
    rwkv_pth_tensor *tensors;
    int n_tensors, cap_tensors;
} pvm;

static int grow(void **arr, uint32_t *cap, size_t elem, uint32_t need, uint32_t limit)
{
    if (need <= *cap)
        return 0;
    if (need > limit)
        return -E2BIG;
    uint64_t nc = *cap ? (uint64_t)*cap * 2 : 64;
    while (nc < need)
        nc *= 2;
    if (nc > limit)
        nc = limit;
    void *n = realloc(*arr, nc * elem);
    if (!n)
        return -ENOMEM;
    *arr = n;
    *cap = (uint32_t)nc;
    return 0;
}

static int new_value(pvm *m, uint8_t type, uint32_t *out)
{
    int rc = grow((void **)&m->v, &m->cap_v, sizeof(pvalue), m->n_v + 1, MAX_VALUES);
    if (rc)
        return rc;
    memset(&m->v[m->n_v], 0, sizeof(pvalue));
    m->v[m->n_v].type = type;
    m->v[m->n_v].tensor_idx = -1;
    *out = m->n_v++;
    return 0;
}

static int push(pvm *m, uint32_t idx)
{
    int rc = grow((void **)&m->stack, &m->cap_stack, sizeof(uint32_t), m->n_stack + 1, MAX_STACK);
    if (rc)
        return rc;
    m->stack[m->n_stack++] = idx;
    return 0;
}

static int push_new(pvm *m, uint8_t type, int64_t i)
{
    uint32_t idx;
    int rc = new_value(m, type, &idx);
    if (rc)
        return rc;
    m->v[idx].i = i;
    return push(m, idx);
}

static int add_item(pvm *m, uint32_t container, uint32_t item)
{
    pvalue *c = &m->v[container];
    int rc = grow((void **)&c->items, &c->cap, sizeof(uint32_t), c->n + 1, MAX_VALUES);
    if (rc)
        return rc;
    c->items[c->n++] = item;
    return 0;
}

static void pvm_free(pvm *m)
{
    for (uint32_t i = 0; i < m->n_v; i++)
        free(m->v[i].items);
    free(m->v);
    free(m->stack);
    free(m->marks);
    free(m->memo);
    free(m->tensors);
}

static bool str_is(const pvalue *v, const char *s)
{
    return v->type == V_STR && v->slen == strlen(s) && memcmp(v->s, s, v->slen) == 0;
}

static int resolve_global(const char *mod, size_t ml, const char *name, size_t nl, int64_t *tag)
{
#define IS(a, b) (ml == strlen(a) && memcmp(mod, a, ml) == 0 && nl == strlen(b) && memcmp(name, b, nl) == 0)
    static const struct { const char *n; rwkv_pth_type t; } storages[] = {
        {"FloatStorage", RWKV_PTH_F32}, {"HalfStorage", RWKV_PTH_F16},
        {"BFloat16Storage", RWKV_PTH_BF16}, {"DoubleStorage", RWKV_PTH_F64},
        {"LongStorage", RWKV_PTH_I64}, {"IntStorage", RWKV_PTH_I32},
        {"ShortStorage", RWKV_PTH_I16}, {"CharStorage", RWKV_PTH_I8},
        {"ByteStorage", RWKV_PTH_U8}, {"BoolStorage", RWKV_PTH_BOOL},
    };
    if (IS("collections", "OrderedDict")) {
        *tag = G_ORDERED_DICT;
        return 0;
    }
    if (IS("torch._utils", "_rebuild_tensor_v2")) {
        *tag = G_REBUILD_TENSOR_V2;
        return 0;
    }
    if (IS("torch._utils", "_rebuild_parameter")) {
        *tag = G_REBUILD_PARAMETER;
        return 0;
    }
    for (size_t i = 0; i < sizeof storages / sizeof storages[0]; i++) {
        if (IS("torch", storages[i].n)) {
            *tag = G_STORAGE_BASE + storages[i].t;
            return 0;
        }
    }
    return -1;
#undef IS
}

size_t rwkv_pth_type_size(rwkv_pth_type t)
{
    switch (t) {
    case RWKV_PTH_F64: case RWKV_PTH_I64: return 8;
    case RWKV_PTH_F32: case RWKV_PTH_I32: return 4;
    case RWKV_PTH_F16: case RWKV_PTH_BF16: case RWKV_PTH_I16: return 2;
    case RWKV_PTH_I8: case RWKV_PTH_U8: case RWKV_PTH_BOOL: return 1;
    }
    return 0;
}

const char *rwkv_pth_type_name(rwkv_pth_type t)
{
    static const char *names[] = {"float32", "float16", "bfloat16", "float64", "int64",
                                  "int32", "int16", "int8", "uint8", "bool"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

int64_t rwkv_pth_numel(const rwkv_pth_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->shape[d];
    return n;
}

/* Build a tensor view from _rebuild_tensor_v2 args; checks its extent. */
static int make_tensor(rwkv_pth *p, pvm *m, uint32_t args, uint32_t *out, char *err, size_t err_len)
{
    const pvalue *a = &m->v[args];
    if (a->type != V_TUPLE || a->n < 4)
        return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "pickle: _rebuild_tensor_v2 expects (storage, offset, size, stride, ...)");
    const pvalue *st = &m->v[a->items[0]], *off = &m->v[a->items[1]];
    const pvalue *size = &m->v[a->items[2]], *stride = &m->v[a->items[3]];
    if (st->type != V_STORAGE || off->type != V_INT || size->type != V_TUPLE || stride->type != V_TUPLE)
        return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "pickle: _rebuild_tensor_v2 argument types are not (storage, int, tuple, tuple)");
    if (size->n != stride->n || size->n > RWKV_PTH_MAX_DIM)
        return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "pickle: tensor with %u dims and %u strides (at most %d dims)", size->n, stride->n, RWKV_PTH_MAX_DIM);
    rwkv_pth_tensor t = {0};
    t.type = (rwkv_pth_type)st->i;
    t.ndim = (int)size->n;
    t.offset = off->i;
    t.storage_numel = st->i2;
    if (t.offset < 0 || t.storage_numel < 0)
        return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "pickle: negative storage offset or size");
    int64_t extent = 0; /* last element index + 1 */
    bool empty = false;
    for (int d = 0; d < t.ndim; d++) {
        const pvalue *s = &m->v[size->items[d]], *r = &m->v[stride->items[d]];
        if (s->type != V_INT || r->type != V_INT || s->i < 0 || r->i < 0 || s->i > (INT64_C(1) << 40) || r->i > (INT64_C(1) << 40))
            return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "pickle: bad tensor size/stride in dim %d", d);
        t.shape[d] = s->i;
        t.stride[d] = r->i;
        if (s->i == 0)
            empty = true;
        else
            extent += (s->i - 1) * r->i;
    }
    /* Find the storage record "<root>/data/<key>". */
    char key[64];
    if (st->slen == 0 || st->slen >= sizeof key)
        return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "pickle: bad storage key");
    memcpy(key, st->s, st->slen);
    key[st->slen] = 0;
    size_t isz = rwkv_pth_type_size(t.type);
    /* The record itself was located when the storage was created; find it again. */
    const zip_entry *rec = NULL;
    for (uint32_t i = 0; i < p->n_entries; i++) {
        const zip_entry *e = &p->entries[i];
        if (e->name_len > st->slen + 6 && memcmp(e->name + e->name_len - st->slen, key, st->slen) == 0 &&
            memcmp(e->name + e->name_len - st->slen - 6, "/data/", 6) == 0) {
            rec = e;
            break;
        }
    }
    if (!rec)
        return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "storage record 'data/%s' missing from the archive", key);
    if ((uint64_t)t.storage_numel > rec->size / isz || rec->size != (uint64_t)t.storage_numel * isz)
        return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "storage 'data/%s' holds %llu bytes, expected %lld %s elements (%llu bytes)",
                    key, (unsigned long long)rec->size, (long long)t.storage_numel, rwkv_pth_type_name(t.type),
                    (unsigned long long)t.storage_numel * isz);
    if (!empty && t.offset + extent >= t.storage_numel)
        return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "tensor view (offset %lld, extent %lld) exceeds its storage 'data/%s' of %lld elements",
                    (long long)t.offset, (long long)extent + 1, key, (long long)t.storage_numel);
    t.storage = p->buf + rec->data_off;
    int rc = grow((void **)&m->tensors, (uint32_t *)&m->cap_tensors, sizeof(rwkv_pth_tensor), (uint32_t)m->n_tensors + 1, MAX_VALUES);
    if (rc)
        return rc;
    const char *key_s = st->s;
    uint32_t key_len = st->slen;
    uint32_t idx;
    rc = new_value(m, V_TENSOR, &idx); /* may move m->v: a, st, size, stride are stale after */
    if (rc)
        return rc;
    m->v[idx].tensor_idx = m->n_tensors;
    m->v[idx].s = key_s; /* storage key, for naming */
    m->v[idx].slen = key_len;
    m->tensors[m->n_tensors++] = t;
    *out = idx;
    return 0;
}

static int pop(pvm *m, uint32_t *out)
{
    if (m->n_stack == 0 || (m->n_marks && m->marks[m->n_marks - 1] == m->n_stack))
        return -1;
    *out = m->stack[--m->n_stack];
    return 0;
}

static char *add_string(rwkv_pth *p, const char *s, size_t n)
{
    if (p->strings_len + n + 1 > p->strings_cap)
        return NULL; /* sized up front */
    char *d = p->strings + p->strings_len;
    memcpy(d, s, n);
    d[n] = 0;
    p->strings_len += n + 1;
    return d;
}

static int run_pickle(rwkv_pth *p, const uint8_t *pk, size_t n, char *err, size_t err_len)
{
    pvm m = {0};
    int rc = 0;
    size_t i = 0;
    uint32_t result = UINT32_MAX;
#define NEED(k) do { if (n - i < (size_t)(k)) { rc = rwkv_errf(err, err_len, -EINVAL, p->name, 0, "data.pkl: truncated at byte %zu", i); goto out; } } while (0)
#define BAD(...) do { rc = rwkv_errf(err, err_len, -EINVAL, p->name, 0, __VA_ARGS__); goto out; } while (0)
#define TRY(x) do { int r_ = (x); if (r_ == -E2BIG) BAD("data.pkl: too many objects (limit exceeded)"); if (r_) { rc = r_; goto out; } } while (0)
#define POP(dst) do { if (pop(&m, &(dst))) BAD("data.pkl: stack underflow at byte %zu (opcode 0x%02x)", op_at, op); } while (0)
    while (i < n) {
        size_t op_at = i;
        uint8_t op = pk[i++];
        switch (op) {
        case 0x80: /* PROTO */
            NEED(1);
            if (pk[i] < 2 || pk[i] > 5)
                BAD("data.pkl: pickle protocol %u not supported", pk[i]);
            i++;
            break;
        case 'c': { /* GLOBAL module\nname\n */
            const uint8_t *a = pk + i, *nl1 = memchr(a, '\n', n - i);
            if (!nl1)
                BAD("data.pkl: unterminated GLOBAL at byte %zu", op_at);
            const uint8_t *b = nl1 + 1, *nl2 = memchr(b, '\n', (size_t)(pk + n - b));
            if (!nl2)
                BAD("data.pkl: unterminated GLOBAL at byte %zu", op_at);
            int64_t tag;
            if (resolve_global((const char *)a, (size_t)(nl1 - a), (const char *)b, (size_t)(nl2 - b), &tag))
                BAD("data.pkl: unsupported global '%.*s.%.*s' at byte %zu (only a state_dict of tensors is accepted)",
                    (int)(nl1 - a < 64 ? nl1 - a : 64), a, (int)(nl2 - b < 64 ? nl2 - b : 64), b, op_at);
            TRY(push_new(&m, V_GLOBAL, tag));
            i = (size_t)(nl2 + 1 - pk);
            break;
        }
        case '}': TRY(push_new(&m, V_DICT, 0)); break;
        case ')': TRY(push_new(&m, V_TUPLE, 0)); break;
        case 'N': TRY(push_new(&m, V_NONE, 0)); break;
        case 0x88: TRY(push_new(&m, V_BOOL, 1)); break;
        case 0x89: TRY(push_new(&m, V_BOOL, 0)); break;
        case '(':
            TRY(grow((void **)&m.marks, &m.cap_marks, sizeof(uint32_t), m.n_marks + 1, MAX_STACK));
            m.marks[m.n_marks++] = m.n_stack;
            break;
        case 't': case 0x85: case 0x86: case 0x87: {
            uint32_t from;
            if (op == 't') {
                if (!m.n_marks)
                    BAD("data.pkl: TUPLE without MARK at byte %zu", op_at);
                from = m.marks[--m.n_marks];
            } else {
                uint32_t k = (uint32_t)(op - 0x84);
                uint32_t floor = m.n_marks ? m.marks[m.n_marks - 1] : 0;
                if (m.n_stack - floor < k)
                    BAD("data.pkl: stack underflow at byte %zu (opcode 0x%02x)", op_at, op);
                from = m.n_stack - k;
            }
            uint32_t t;
            TRY(new_value(&m, V_TUPLE, &t));
            for (uint32_t k = from; k < m.n_stack; k++)
                TRY(add_item(&m, t, m.stack[k]));
            m.n_stack = from;
            TRY(push(&m, t));
            break;
        }
        case 'X': { /* BINUNICODE */
            NEED(4);
            uint32_t l = rd32(pk + i);
            i += 4;
            NEED(l);
            uint32_t s;
            TRY(new_value(&m, V_STR, &s));
            m.v[s].s = (const char *)pk + i;
            m.v[s].slen = l;
            TRY(push(&m, s));
            i += l;
            break;
        }
        case 'K': NEED(1); TRY(push_new(&m, V_INT, pk[i])); i += 1; break;
        case 'M': NEED(2); TRY(push_new(&m, V_INT, rd16(pk + i))); i += 2; break;
        case 'J': NEED(4); TRY(push_new(&m, V_INT, (int32_t)rd32(pk + i))); i += 4; break;
        case 0x8a: { /* LONG1 */
            NEED(1);
            uint8_t l = pk[i++];
            NEED(l);
            if (l > 8)
                BAD("data.pkl: integer of %u bytes at byte %zu is too large", l, op_at);
            uint64_t u = 0;
            for (int k = 0; k < l; k++)
                u |= (uint64_t)pk[i + k] << (8 * k);
            if (l > 0 && l < 8 && (pk[i + l - 1] & 0x80))
                u |= ~UINT64_C(0) << (8 * l);
            TRY(push_new(&m, V_INT, (int64_t)u));
            i += l;
            break;
        }
        case 'q': case 'r': { /* BINPUT / LONG_BINPUT */
            uint32_t idx;
            if (op == 'q') { NEED(1); idx = pk[i]; i += 1; }
            else { NEED(4); idx = rd32(pk + i); i += 4; }
            if (idx >= MAX_MEMO)
                BAD("data.pkl: memo index %u too large", idx);
            if (m.n_stack == 0)
                BAD("data.pkl: BINPUT on empty stack at byte %zu", op_at);
            if (idx >= m.cap_memo) {
                uint32_t old = m.cap_memo;
                TRY(grow((void **)&m.memo, &m.cap_memo, sizeof(uint32_t), idx + 1, MAX_MEMO));
                for (uint32_t k = old; k < m.cap_memo; k++)
                    m.memo[k] = UINT32_MAX;
            }
            m.memo[idx] = m.stack[m.n_stack - 1];
            break;
        }
        case 'h': case 'j': {
            uint32_t idx;
            if (op == 'h') { NEED(1); idx = pk[i]; i += 1; }
            else { NEED(4); idx = rd32(pk + i); i += 4; }
            if (idx >= m.cap_memo || m.memo[idx] == UINT32_MAX)
                BAD("data.pkl: BINGET of unset memo %u at byte %zu", idx, op_at);
            TRY(push(&m, m.memo[idx]));
            break;
        }
        case 'Q': { /* BINPERSID: ('storage', class, key, location, numel) */
            uint32_t t;
            POP(t);
            const pvalue *tv = &m.v[t];
            if (tv->type != V_TUPLE || tv->n < 5 || !str_is(&m.v[tv->items[0]], "storage") ||
                m.v[tv->items[1]].type != V_GLOBAL || m.v[tv->items[1]].i < G_STORAGE_BASE ||
                m.v[tv->items[2]].type != V_STR || m.v[tv->items[4]].type != V_INT)
                BAD("data.pkl: persistent id at byte %zu is not a ('storage', class, key, location, numel) tuple", op_at);
            const pvalue cls = m.v[tv->items[1]], key = m.v[tv->items[2]], numel = m.v[tv->items[4]];
            uint32_t s;
            TRY(new_value(&m, V_STORAGE, &s)); /* may move m.v: tv is stale after this */
            m.v[s].i = cls.i - G_STORAGE_BASE;
            m.v[s].s = key.s;
            m.v[s].slen = key.slen;
            m.v[s].i2 = numel.i;
            TRY(push(&m, s));
            break;
        }
        case 'R': { /* REDUCE */
            uint32_t args, fn;
            POP(args);
            POP(fn);
            if (m.v[fn].type != V_GLOBAL || m.v[args].type != V_TUPLE)
                BAD("data.pkl: REDUCE of a non-global at byte %zu", op_at);
            int64_t tag = m.v[fn].i;
            uint32_t r;
            if (tag == G_ORDERED_DICT) {
                TRY(new_value(&m, V_DICT, &r));
            } else if (tag == G_REBUILD_TENSOR_V2) {
                rc = make_tensor(p, &m, args, &r, err, err_len);
                if (rc)
                    goto out;
            } else if (tag == G_REBUILD_PARAMETER) {
                if (m.v[args].n < 1 || m.v[m.v[args].items[0]].type != V_TENSOR)
                    BAD("data.pkl: _rebuild_parameter without a tensor at byte %zu", op_at);
                r = m.v[args].items[0];
            } else {
                BAD("data.pkl: a storage class called as a function at byte %zu", op_at);
            }
            TRY(push(&m, r));
            break;
        }
        case 's': case 'u': { /* SETITEM / SETITEMS */
            uint32_t from;
            if (op == 'u') {
                if (!m.n_marks)
                    BAD("data.pkl: SETITEMS without MARK at byte %zu", op_at);
                from = m.marks[--m.n_marks];
            } else {
                uint32_t floor = m.n_marks ? m.marks[m.n_marks - 1] : 0;
                if (m.n_stack - floor < 2)
                    BAD("data.pkl: stack underflow at byte %zu (SETITEM)", op_at);
                from = m.n_stack - 2;
            }
            if ((m.n_stack - from) % 2 || from == 0 || m.v[m.stack[from - 1]].type != V_DICT)
                BAD("data.pkl: SETITEM(S) without a dict below at byte %zu", op_at);
            uint32_t d = m.stack[from - 1];
            for (uint32_t k = from; k < m.n_stack; k++)
                TRY(add_item(&m, d, m.stack[k]));
            m.n_stack = from;
            break;
        }
        case 'b': { /* BUILD: state is ignored (module _metadata, parameter state) */
            uint32_t state;
            POP(state);
            (void)state;
            if (m.n_stack == 0)
                BAD("data.pkl: BUILD on empty stack at byte %zu", op_at);
            break;
        }
        case '.': /* STOP */
            if (m.n_stack != 1)
                BAD("data.pkl: STOP with %u values on the stack", m.n_stack);
            result = m.stack[0];
            goto done;
        default:
            BAD("data.pkl: unsupported pickle opcode 0x%02x at byte %zu", op, op_at);
        }
    }
    BAD("data.pkl: no STOP opcode (truncated pickle)");
done:
    if (m.v[result].type != V_DICT)
        BAD("data.pkl: top-level object is not a dict (expected a state_dict)");
    {
        const pvalue *d = &m.v[result];
        size_t chars = 0;
        int nt = 0;
        for (uint32_t k = 0; k + 1 < d->n; k += 2) {
            const pvalue *key = &m.v[d->items[k]], *val = &m.v[d->items[k + 1]];
            if (val->type != V_TENSOR)
                continue; /* non-tensor entries of a state_dict are not ours */
            if (key->type != V_STR)
                BAD("data.pkl: state_dict key %u is not a string", k / 2);
            chars += key->slen + 1 + val->slen + 1;
            nt++;
        }
        if (nt == 0)
            BAD("data.pkl: the state_dict holds no tensors");
        p->strings_cap = chars;
        p->strings = malloc(chars ? chars : 1);
        p->tensors = calloc((size_t)nt, sizeof(rwkv_pth_tensor));
        if (!p->strings || !p->tensors) {
            rc = -ENOMEM;
            goto out;
        }
        for (uint32_t k = 0; k + 1 < d->n; k += 2) {
            const pvalue *key = &m.v[d->items[k]], *val = &m.v[d->items[k + 1]];
            if (val->type != V_TENSOR)
                continue;
            if (memchr(key->s, 0, key->slen))
                BAD("data.pkl: tensor name with a NUL byte");
            rwkv_pth_tensor t = m.tensors[val->tensor_idx];
            t.name = add_string(p, key->s, key->slen);
            t.storage_key = add_string(p, val->s, val->slen);
            for (int j = 0; j < p->n_tensors; j++)
                if (strcmp(p->tensors[j].name, t.name) == 0)
                    BAD("data.pkl: tensor '%s' appears twice", t.name);
            p->tensors[p->n_tensors++] = t;
        }
    }
out:
    pvm_free(&m);
    return rc;
#undef NEED
#undef BAD
#undef TRY
#undef POP
}

/* ---- public --------------------------------------------------------------------------- */

static int parse(rwkv_pth *p, char *err, size_t err_len)
{
    int rc = zip_read(p, err, err_len);
    if (rc)
        return rc;
    const zip_entry *pkl = NULL;
    for (uint32_t i = 0; i < p->n_entries; i++) {
        const zip_entry *e = &p->entries[i];
        if (e->name_len >= 9 && memcmp(e->name + e->name_len - 9, "/data.pkl", 9) == 0) {
            pkl = e;
            break;
        }
    }
    if (!pkl)
        return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "archive has no <root>/data.pkl record (not a torch.save file)");
    const zip_entry *bo = zip_find(p, pkl->name, pkl->name_len - 9, "byteorder");
    if (bo && !(bo->size >= 6 && memcmp(p->buf + bo->data_off, "little", 6) == 0))
        return rwkv_errf(err, err_len, -EINVAL, p->name, 0, "big-endian checkpoints are not supported");
    return run_pickle(p, p->buf + pkl->data_off, pkl->size, err, err_len);
}

int rwkv_pth_parse(const uint8_t *buf, size_t len, const char *name, rwkv_pth **out, char *err, size_t err_len)
{
    rwkv_pth *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->name = strdup(name ? name : "<buffer>");
    p->buf = buf;
    p->len = len;
    int rc = p->name ? parse(p, err, err_len) : -ENOMEM;
    if (rc) {
        rwkv_pth_close(&p);
        return rc;
    }
    *out = p;
    return 0;
}

int rwkv_pth_open(const char *path, rwkv_pth **out, char *err, size_t err_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (err && err_len)
            snprintf(err, err_len, "%s: cannot open: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        if (err && err_len)
            snprintf(err, err_len, "%s: not a regular file", path);
        return -EINVAL;
    }
    if (st.st_size < 22) {
        close(fd);
        return rwkv_errf(err, err_len, -EINVAL, path, 0, "file too short for a zip archive (%lld bytes)", (long long)st.st_size);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) {
        if (err && err_len)
            snprintf(err, err_len, "%s: mmap failed: %s", path, strerror(e));
        return -e;
    }
    rwkv_pth *p = calloc(1, sizeof *p);
    if (!p) {
        munmap(map, (size_t)st.st_size);
        return -ENOMEM;
    }
    p->name = strdup(path);
    p->buf = map;
    p->len = (size_t)st.st_size;
    p->mapped = true;
    int rc = p->name ? parse(p, err, err_len) : -ENOMEM;
    if (rc) {
        rwkv_pth_close(&p);
        return rc;
    }
    *out = p;
    return 0;
}

void rwkv_pth_close(rwkv_pth **pp)
{
    if (!pp || !*pp)
        return;
    rwkv_pth *p = *pp;
    if (p->mapped)
        munmap((void *)p->buf, p->len);
    free(p->entries);
    free(p->tensors);
    free(p->strings);
    free(p->name);
    free(p);
    *pp = NULL;
}

int rwkv_pth_count(const rwkv_pth *p) { return p->n_tensors; }
const rwkv_pth_tensor *rwkv_pth_at(const rwkv_pth *p, int i) { return (i >= 0 && i < p->n_tensors) ? &p->tensors[i] : NULL; }
const char *rwkv_pth_name(const rwkv_pth *p) { return p->name; }

const rwkv_pth_tensor *rwkv_pth_find(const rwkv_pth *p, const char *name)
{
    for (int i = 0; i < p->n_tensors; i++)
        if (strcmp(p->tensors[i].name, name) == 0)
            return &p->tensors[i];
    return NULL;
}

void rwkv_pth_release_pages(const rwkv_pth *p)
{
    if (p->mapped)
        madvise((void *)p->buf, p->len, MADV_DONTNEED);
}

void rwkv_pth_release_tensor(const rwkv_pth *p, const rwkv_pth_tensor *t)
{
    if (!p->mapped)
        return;
    const size_t page = 4096;
    uintptr_t lo = (uintptr_t)t->storage, hi = lo + (size_t)t->storage_numel * rwkv_pth_type_size(t->type);
    lo = (lo + page - 1) & ~(uintptr_t)(page - 1); /* whole pages inside the record only */
    hi &= ~(uintptr_t)(page - 1);
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
}



int rwkv_pth_to_f32(const rwkv_pth_tensor *t, float *dst)
{
    if (t->type != RWKV_PTH_F32 && t->type != RWKV_PTH_F16 && t->type != RWKV_PTH_BF16 && t->type != RWKV_PTH_F64)
        return -EINVAL;
    int64_t n = rwkv_pth_numel(t);
    /* fast path: row-major contiguous (what torch.save writes for parameters) */
    bool contiguous = true;
    int64_t expect = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != expect)
            contiguous = false;
        expect *= t->shape[d];
    }
    if (contiguous) {
        const uint8_t *base = t->storage + (size_t)t->offset * rwkv_pth_type_size(t->type);
        switch (t->type) {
        case RWKV_PTH_F32: memcpy(dst, base, (size_t)n * 4); return 0;
        case RWKV_PTH_BF16:
            for (int64_t k = 0; k < n; k++)
                dst[k] = rwkv_bf16_to_f32(rd16(base + 2 * k));
            return 0;
        case RWKV_PTH_F16:
            for (int64_t k = 0; k < n; k++)
                dst[k] = rwkv_f16_to_f32(rd16(base + 2 * k));
            return 0;
        default: break;
        }
    }
    int64_t idx[RWKV_PTH_MAX_DIM] = {0};
    int64_t src = t->offset;
    for (int64_t k = 0; k < n; k++) {
        const uint8_t *e = t->storage + (size_t)src * rwkv_pth_type_size(t->type);
        float v;
        switch (t->type) {
        case RWKV_PTH_F32: memcpy(&v, e, 4); break;
        case RWKV_PTH_F16: v = rwkv_f16_to_f32(rd16(e)); break;
        case RWKV_PTH_BF16: v = rwkv_bf16_to_f32(rd16(e)); break;
        default: { double d; memcpy(&d, e, 8); v = (float)d; }
        }
        dst[k] = v;
        /* advance the multi-index, innermost dim fastest */
        for (int d = t->ndim - 1; d >= 0; d--) {
            src += t->stride[d];
            if (++idx[d] < t->shape[d])
                break;
            src -= t->stride[d] * t->shape[d];
            idx[d] = 0;
        }
    }
    return 0;
}
