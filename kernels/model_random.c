/* model_random.c — a random x070 model of a given shape built straight into memory, for
 * benchmarks of shapes no checkpoint file exists for (7.2B without a 14 GB file).
 *
 * Values follow tools/gen-checkpoint.py's default magnitudes (so activations stay in the
 * range of a real model) but not its bits: each element is a hash of (seed, tensor, packed
 * index), so the model is the same for a given seed and shape whatever the thread count.
 * Matrices are filled in packed order in parallel; the padding rows of the last panel stay
 * zero (the arena is zero-filled). The embedding is drawn as if ln0 were already folded in
 * (unit variance). Not here: loading a file (model.c), any check of a trained model.
 */
#include "half.h"
#include "model.h"
#include "threadpool.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef enum { D_UNIFORM, D_NORMAL, D_SIGNED } dist_kind;

typedef struct {
    void *field;      /* const float ** (vector) or rwkv_mat * */
    int is_mat;
    int rows, cols;   /* matrix: out, in; vector: 1, n */
    rwkv_dtype dtype;
    dist_kind dist;
    float a, b;       /* uniform/signed: [a, b); normal: sd = a */
    size_t off, bytes;
} rand_item;

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float draw(const rand_item *it, uint64_t key, size_t i)
{
    uint64_t z = mix64(key ^ (uint64_t)i * 0xd1342543de82ef95ull);
    if (it->dist == D_NORMAL) { /* Irwin-Hall of four 16-bit uniforms, unit variance */
        float s = (float)(z & 0xffff) + (float)((z >> 16) & 0xffff) + (float)((z >> 32) & 0xffff) + (float)(z >> 48);
        return (s * (1.0f / 65536.0f) - 2.0f) * 1.7320508f * it->a;
    }
    float u = (float)(z >> 40) * (1.0f / 16777216.0f);
    float v = it->a + (it->b - it->a) * u;
    return it->dist == D_SIGNED && (z & 1) ? -v : v;
}

typedef struct {
    const rand_item *it;
    uint8_t *dst;
    uint64_t key;
    size_t n_chunks, chunk; /* elements per chunk */
    size_t n_elems;
    size_t per_panel;       /* elements of one packed panel (matrices) */
    atomic_size_t next;
} fill_ctx;

static void fill_worker(void *arg, int tid, int n_threads)
{
    fill_ctx *c = arg;
    const rand_item *it = c->it;
    for (;;) {
        size_t ch = atomic_fetch_add(&c->next, 1);
        if (ch >= c->n_chunks)
            return;
        size_t lo = ch * c->chunk, hi = lo + c->chunk < c->n_elems ? lo + c->chunk : c->n_elems;
        for (size_t o = lo; o < hi; o++) {
            if (it->is_mat) { /* o is a packed index: skip the zero padding rows */
                size_t p = o / c->per_panel, w = o % c->per_panel;
                size_t j = it->dtype == RWKV_DTYPE_BF16X2 ? (w >> 1) % RWKV_PANEL : w % RWKV_PANEL;
                if (p * RWKV_PANEL + j >= (size_t)it->rows)
                    continue;
            }
            float v = draw(it, c->key, o);
            if (it->dtype == RWKV_DTYPE_F32)
                ((float *)c->dst)[o] = v;
            else if (it->dtype == RWKV_DTYPE_F16)
                ((uint16_t *)c->dst)[o] = rwkv_f32_to_f16(v);
            else
                ((uint16_t *)c->dst)[o] = rwkv_f32_to_bf16(v);
        }
    }
}

/* The RWKV-LM x070 trainer's LoRA ranks for width C (spec §1.4). */
static int trainer_rank(double x) { int r = (int)lround(x / 32) * 32; return r < 32 ? 32 : r; }

int rwkv_model_random(const rwkv_dims *shape, uint64_t seed, rwkv_weights weights, rwkv_model **out, char *err,
                      size_t err_len)
{
    if (!shape || !out || shape->n_layer < 1 || shape->n_layer > 4096 || shape->n_embd < 64 ||
        shape->n_embd % 64 || shape->n_embd > (1 << 16) || shape->n_vocab < 0 || shape->n_vocab > (1 << 24) ||
        (unsigned)weights > RWKV_WEIGHTS_BF16DOT || shape->arch != RWKV_ARCH_X070 ||
        (size_t)(shape->n_vocab > 0 ? shape->n_vocab : 65536) * (size_t)shape->n_embd > (size_t)0x7fffffff) {
        if (err && err_len)
            snprintf(err, err_len, "random model: bad shape (L %d, C %d: a multiple of 64, V %d; RWKV-7 only)",
                     shape ? shape->n_layer : 0, shape ? shape->n_embd : 0, shape ? shape->n_vocab : 0);
        return -EINVAL;
    }
    rwkv_model *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    rwkv_dims *d = &m->dims;
    const int L = shape->n_layer, C = shape->n_embd;
    const double sc = sqrt((double)C);
    *d = (rwkv_dims){L, C, 0, shape->head_size > 0 ? shape->head_size : 64, shape->n_vocab > 0 ? shape->n_vocab : 65536,
                     shape->n_ffn > 0 ? shape->n_ffn : 4 * C, shape->d_w, shape->d_a, shape->d_v, shape->d_g,
                     RWKV_ARCH_X070, 0};
    d->d_w = d->d_w > 0 ? d->d_w : trainer_rank(1.8 * sc);
    d->d_a = d->d_a > 0 ? d->d_a : trainer_rank(1.8 * sc);
    d->d_v = d->d_v > 0 ? d->d_v : trainer_rank(1.3 * sc);
    d->d_g = d->d_g > 0 ? d->d_g : trainer_rank(0.6 * pow((double)C, 0.8));
    d->n_head = C / d->head_size;
    const int V = d->n_vocab, F = d->n_ffn;
    const rwkv_dtype mt = weights == RWKV_WEIGHTS_F32   ? RWKV_DTYPE_F32
                          : weights == RWKV_WEIGHTS_F16 ? RWKV_DTYPE_F16
                          : weights == RWKV_WEIGHTS_BF16DOT ? RWKV_DTYPE_BF16X2
                                                            : RWKV_DTYPE_BF16; /* stored: bf16, like releases */
    const int per_layer = 36;
    rand_item *items = calloc((size_t)(4 + L * per_layer), sizeof *items);
    m->layers = calloc((size_t)L, sizeof(rwkv_layer));
    rwkv_pool *pool = rwkv_pool_new((int)(sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1));
    int n = 0, rc = 0;
    size_t arena = 0;
    if (!items || !m->layers || !pool) {
        rc = -ENOMEM;
        goto out;
    }
#define VEC(F_, N_, DIST, A, B) (items[n++] = (rand_item){(void *)&(F_), 0, 1, (N_), RWKV_DTYPE_F32, DIST, A, B, 0, 0})
#define MAT(F_, R_, C_, DT, SD) (items[n++] = (rand_item){(void *)&(F_), 1, (R_), (C_), (DT), D_NORMAL, (float)(SD), 0, 0, 0})
    VEC(m->emb, V * C, D_NORMAL, 1.0f, 0);
    VEC(m->ln_out_w, C, D_UNIFORM, 0.7f, 1.3f);
    VEC(m->ln_out_b, C, D_UNIFORM, -0.3f, 0.3f);
    MAT(m->head, V, C, mt, 3.0 / sc);
    for (int l = 0; l < L; l++) {
        rwkv_layer *y = &m->layers[l];
        VEC(y->ln1_w, C, D_UNIFORM, 0.7f, 1.3f);
        VEC(y->ln1_b, C, D_UNIFORM, -0.3f, 0.3f);
        VEC(y->ln2_w, C, D_UNIFORM, 0.7f, 1.3f);
        VEC(y->ln2_b, C, D_UNIFORM, -0.3f, 0.3f);
        const float **mix[6] = {&y->x_r, &y->x_w, &y->x_k, &y->x_v, &y->x_a, &y->x_g};
        for (int i = 0; i < 6; i++)
            VEC(*mix[i], C, D_UNIFORM, 0.0f, 1.0f);
        VEC(y->w0, C, D_UNIFORM, -6.0f, -0.5f);
        VEC(y->a0, C, D_UNIFORM, -1.0f, 1.0f);
        /* LoRA: first factor (D, C) N(0, 1/C), second (C, D) N(0, 1/D) (g2 twice that) */
        MAT(y->w1, d->d_w, C, mt, 1.0 / sc);
        MAT(y->w2, C, d->d_w, mt, 1.0 / sqrt(d->d_w));
        MAT(y->a1, d->d_a, C, mt, 1.0 / sc);
        MAT(y->a2, C, d->d_a, mt, 1.0 / sqrt(d->d_a));
        if (l > 0) {
            VEC(y->v0, C, D_UNIFORM, -1.0f, 1.0f);
            MAT(y->v1, d->d_v, C, mt, 1.0 / sc);
            MAT(y->v2, C, d->d_v, mt, 1.0 / sqrt(d->d_v));
        }
        MAT(y->g1, d->d_g, C, mt, 1.0 / sc);
        MAT(y->g2, C, d->d_g, mt, 2.0 / sqrt(d->d_g));
        VEC(y->k_k, C, D_UNIFORM, 0.3f, 1.5f);
        VEC(y->k_a, C, D_UNIFORM, 0.2f, 1.5f);
        VEC(y->r_k, C, D_SIGNED, 0.2f, 1.2f);
        MAT(y->rw, C, C, mt, 1.0 / sc);
        MAT(y->kw, C, C, mt, 1.0 / sc);
        MAT(y->vw, C, C, mt, 0.1 / sc);
        MAT(y->ow, C, C, mt, 1.0 / sc);
        VEC(y->lnx_w, C, D_UNIFORM, 0.7f, 1.3f);
        VEC(y->lnx_b, C, D_UNIFORM, -0.3f, 0.3f);
        VEC(y->ffn_x_k, C, D_UNIFORM, 0.0f, 1.0f);
        MAT(y->ffn_k, F, C, mt, 1.0 / sc);
        MAT(y->ffn_v, C, F, mt, 1.0 / sqrt((double)F));
    }
#undef VEC
#undef MAT
    for (int i = 0; i < n; i++) {
        rand_item *it = &items[i];
        it->bytes = it->is_mat ? rwkv_mat_bytes(it->rows, it->cols, it->dtype) : (size_t)it->cols * 4;
        it->off = arena;
        arena += (it->bytes + 63) & ~(size_t)63;
        m->n_params += (uint64_t)it->rows * (uint64_t)it->cols;
    }
    m->arena_bytes = arena;
    m->arena = mmap(NULL, arena, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m->arena == MAP_FAILED) {
        m->arena = NULL;
        if (err && err_len)
            snprintf(err, err_len, "random model: cannot allocate %zu bytes for the weights", arena);
        rc = -ENOMEM;
        goto out;
    }
#ifdef MADV_HUGEPAGE
    madvise(m->arena, arena, MADV_HUGEPAGE);
#endif
    uint64_t fp = mix64(seed ^ 0x72776b76ull);
    for (int i = 0; i < n; i++) {
        rand_item *it = &items[i];
        uint8_t *dst = (uint8_t *)m->arena + it->off;
        fill_ctx c = {it, dst, mix64(seed + (uint64_t)i * 0x9e3779b97f4a7c15ull), 0, 1 << 16,
                      it->bytes / (it->is_mat ? rwkv_dtype_size(it->dtype) : 4), 0, 0};
        if (it->is_mat)
            c.per_panel = rwkv_mat_bytes(RWKV_PANEL, it->cols, it->dtype) / rwkv_dtype_size(it->dtype);
        c.n_chunks = (c.n_elems + c.chunk - 1) / c.chunk;
        if (c.n_chunks > 1)
            rwkv_pool_run(pool, fill_worker, &c);
        else
            fill_worker(&c, 0, 1);
        if (it->is_mat)
            *(rwkv_mat *)it->field = (rwkv_mat){dst, it->dtype, it->rows, it->cols};
        else
            *(const float **)it->field = (const float *)dst;
        fp = mix64(fp ^ c.key);
    }
    m->fingerprint = mix64(fp ^ (uint64_t)weights);
out:
    rwkv_pool_destroy(&pool);
    free(items);
    if (rc) {
        rwkv_model_destroy(&m);
        return rc;
    }
    *out = m;
    return 0;
}
