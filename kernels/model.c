/* model.c — turning a BlinkDL .pth (RWKV-7 x070, or RWKV-4/5.0/5.1/5.2/6) into the in-memory
 * model of model.h.
 *
 * Steps: parse the container (pth.c), recognise the generation from tensor names and shapes
 * (rwkv.h, rwkv_arch), infer dims from shapes (spec §1.4), check every tensor that
 * generation needs for presence and shape, then convert each tensor once into a single
 * arena (LoRA matrices transposed to [out][in], ln0 folded into the embedding, the older
 * generations' decay and bonus turned into the per-channel form the step uses) and drop the
 * source pages. Every failure names the file and the tensor.
 * Not here: any arithmetic of the step (cpu/ref.c).
 */
#include "half.h"
#include "model.h"
#include "pth.h"
#include "errbuf.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

const char *rwkv_dtype_name(rwkv_dtype t)
{
    switch (t) {
    case RWKV_DTYPE_F32: return "f32";
    case RWKV_DTYPE_F16: return "f16";
    case RWKV_DTYPE_BF16: return "bf16";
    case RWKV_DTYPE_BF16X2: return "bf16x2";
    }
    return "?";
}

size_t rwkv_dtype_size(rwkv_dtype t) { return t == RWKV_DTYPE_F32 ? 4 : 2; }

size_t rwkv_mat_bytes(int rows, int cols, rwkv_dtype t)
{
    size_t panels = ((size_t)rows + RWKV_PANEL - 1) / RWKV_PANEL;
    size_t k = t == RWKV_DTYPE_BF16X2 ? (size_t)(cols + 1) / 2 * 2 : (size_t)cols;
    return panels * RWKV_PANEL * k * rwkv_dtype_size(t);
}

size_t rwkv_mat_index(rwkv_dtype t, int cols, int r, int k)
{
    const size_t p = (size_t)r / RWKV_PANEL, j = (size_t)r % RWKV_PANEL;
    if (t == RWKV_DTYPE_BF16X2) {
        const size_t kp = (size_t)(cols + 1) / 2;
        return ((p * kp + (size_t)k / 2) * RWKV_PANEL + j) * 2 + (size_t)(k & 1);
    }
    return (p * (size_t)cols + (size_t)k) * RWKV_PANEL + j;
}


void rwkv_mat_get_row(const rwkv_mat *m, int r, float *out)
{
    for (int k = 0; k < m->cols; k++) {
        const size_t i = rwkv_mat_index(m->dtype, m->cols, r, k);
        out[k] = m->dtype == RWKV_DTYPE_F32 ? ((const float *)m->data)[i]
                 : m->dtype == RWKV_DTYPE_F16 ? rwkv_f16_to_f32(((const uint16_t *)m->data)[i])
                                               : rwkv_bf16_to_f32(((const uint16_t *)m->data)[i]);
    }
}

int rwkv_weights_parse(const char *s, rwkv_weights *out)
{
    static const struct { const char *n; rwkv_weights w; } tab[] = {
        {"f32", RWKV_WEIGHTS_F32}, {"fp32", RWKV_WEIGHTS_F32}, {"stored", RWKV_WEIGHTS_STORED},
        {"bf16", RWKV_WEIGHTS_BF16}, {"f16", RWKV_WEIGHTS_F16}, {"fp16", RWKV_WEIGHTS_F16},
        {"bf16dot", RWKV_WEIGHTS_BF16DOT},
    };
    for (size_t i = 0; s && i < sizeof tab / sizeof tab[0]; i++) {
        if (strcmp(s, tab[i].n) == 0) {
            *out = tab[i].w;
            return 0;
        }
    }
    return -EINVAL;
}


/* ---- conversions ---------------------------------------------------------------------- */



/* ---- the tensor plan ------------------------------------------------------------------ */

/* K_LORA5: the v6 (5, D_mix, C) token-shift LoRA, split into five [in][out] factors;
 * K_DECAY, K_BONUS: the older generations' time_decay / time_first (time_faaaa), turned
 * into (C) vectors of what the step uses (model.h). */
typedef enum { K_VEC, K_RK, K_MAT, K_LORA_IN, K_LORA_OUT, K_LORA5, K_DECAY, K_BONUS } kind;

/* Which generations a tensor belongs to. */
enum { A7 = 1, A4 = 2, A50 = 4, A51 = 8, A52 = 16, A6 = 32 };
#define A5 (A50 | A51 | A52)
#define AOLD (A4 | A5 | A6)
#define AALL (A7 | AOLD)

static unsigned arch_bit(rwkv_arch a)
{
    switch (a) {
    case RWKV_ARCH_X070: return A7;
    case RWKV_ARCH_V4: return A4;
    case RWKV_ARCH_V5_0: return A50;
    case RWKV_ARCH_V5_1: return A51;
    case RWKV_ARCH_V5_2: return A52;
    case RWKV_ARCH_V6: return A6;
    }
    return 0;
}

const char *rwkv_arch_name(rwkv_arch a)
{
    switch (a) {
    case RWKV_ARCH_X070: return "RWKV-7";
    case RWKV_ARCH_V4: return "RWKV-4";
    case RWKV_ARCH_V5_0: return "RWKV-5.0";
    case RWKV_ARCH_V5_1: return "RWKV-5.1";
    case RWKV_ARCH_V5_2: return "RWKV-5.2";
    case RWKV_ARCH_V6: return "RWKV-6";
    }
    return "?";
}

typedef struct {
    const char *suffix; /* after "blocks.{l}." */
    kind k;
    int rows_dim, cols_dim; /* for K_MAT, K_LORA_*: which dims (see dim_of) */
    size_t off_f;           /* offsetof in rwkv_layer of the float* or rwkv_mat */
    bool layer1_plus;       /* v0/v1/v2: absent or ignored in layer 0 */
    unsigned arch;          /* A* bits of the generations that have it */
    const char *alt;        /* another name it may have (time_faaaa for time_first) */
} layer_tensor;

enum { D_C, D_F, D_W, D_A, D_V, D_G, D_M, D_M5 };

#define OFF(f) offsetof(rwkv_layer, f)
static const layer_tensor layer_tensors[] = {
    {"ln1.weight", K_VEC, 0, 0, OFF(ln1_w), false, AALL, NULL},
    {"ln1.bias", K_VEC, 0, 0, OFF(ln1_b), false, AALL, NULL},
    {"ln2.weight", K_VEC, 0, 0, OFF(ln2_w), false, AALL, NULL},
    {"ln2.bias", K_VEC, 0, 0, OFF(ln2_b), false, AALL, NULL},
    {"att.x_r", K_VEC, 0, 0, OFF(x_r), false, A7, NULL},
    {"att.x_w", K_VEC, 0, 0, OFF(x_w), false, A7, NULL},
    {"att.x_k", K_VEC, 0, 0, OFF(x_k), false, A7, NULL},
    {"att.x_v", K_VEC, 0, 0, OFF(x_v), false, A7, NULL},
    {"att.x_a", K_VEC, 0, 0, OFF(x_a), false, A7, NULL},
    {"att.x_g", K_VEC, 0, 0, OFF(x_g), false, A7, NULL},
    {"att.w0", K_VEC, 0, 0, OFF(w0), false, A7, NULL},
    {"att.w1", K_LORA_IN, D_C, D_W, OFF(w1), false, A7, NULL},
    {"att.w2", K_LORA_OUT, D_W, D_C, OFF(w2), false, A7, NULL},
    {"att.a0", K_VEC, 0, 0, OFF(a0), false, A7, NULL},
    {"att.a1", K_LORA_IN, D_C, D_A, OFF(a1), false, A7, NULL},
    {"att.a2", K_LORA_OUT, D_A, D_C, OFF(a2), false, A7, NULL},
    {"att.v0", K_VEC, 0, 0, OFF(v0), true, A7, NULL},
    {"att.v1", K_LORA_IN, D_C, D_V, OFF(v1), true, A7, NULL},
    {"att.v2", K_LORA_OUT, D_V, D_C, OFF(v2), true, A7, NULL},
    {"att.g1", K_LORA_IN, D_C, D_G, OFF(g1), false, A7, NULL},
    {"att.g2", K_LORA_OUT, D_G, D_C, OFF(g2), false, A7, NULL},
    {"att.k_k", K_VEC, 0, 0, OFF(k_k), false, A7, NULL},
    {"att.k_a", K_VEC, 0, 0, OFF(k_a), false, A7, NULL},
    {"att.r_k", K_RK, 0, 0, OFF(r_k), false, A7, NULL},
    {"att.receptance.weight", K_MAT, D_C, D_C, OFF(rw), false, AALL, NULL},
    {"att.key.weight", K_MAT, D_C, D_C, OFF(kw), false, AALL, NULL},
    {"att.value.weight", K_MAT, D_C, D_C, OFF(vw), false, AALL, NULL},
    {"att.output.weight", K_MAT, D_C, D_C, OFF(ow), false, AALL, NULL},
    {"att.ln_x.weight", K_VEC, 0, 0, OFF(lnx_w), false, A7 | A5 | A6, NULL},
    {"att.ln_x.bias", K_VEC, 0, 0, OFF(lnx_b), false, A7 | A5 | A6, NULL},
    {"ffn.x_k", K_VEC, 0, 0, OFF(ffn_x_k), false, A7, NULL},
    {"ffn.key.weight", K_MAT, D_F, D_C, OFF(ffn_k), false, AALL, NULL},
    {"ffn.value.weight", K_MAT, D_C, D_F, OFF(ffn_v), false, AALL, NULL},
    /* RWKV-4/5/6 */
    {"att.time_mix_k", K_VEC, 0, 0, OFF(x_k), false, A4 | A5, NULL},
    {"att.time_mix_v", K_VEC, 0, 0, OFF(x_v), false, A4 | A5, NULL},
    {"att.time_mix_r", K_VEC, 0, 0, OFF(x_r), false, A4 | A5, NULL},
    {"att.time_mix_g", K_VEC, 0, 0, OFF(x_g), false, A51 | A52, NULL},
    {"att.time_maa_x", K_VEC, 0, 0, OFF(x_x), false, A6, NULL},
    {"att.time_maa_w", K_VEC, 0, 0, OFF(x_w), false, A6, NULL},
    {"att.time_maa_k", K_VEC, 0, 0, OFF(x_k), false, A6, NULL},
    {"att.time_maa_v", K_VEC, 0, 0, OFF(x_v), false, A6, NULL},
    {"att.time_maa_r", K_VEC, 0, 0, OFF(x_r), false, A6, NULL},
    {"att.time_maa_g", K_VEC, 0, 0, OFF(x_g), false, A6, NULL},
    {"att.time_maa_w1", K_LORA_IN, D_C, D_M5, OFF(mix1), false, A6, NULL},
    {"att.time_maa_w2", K_LORA5, D_M, D_C, OFF(mix2), false, A6, NULL},
    {"att.time_decay_w1", K_LORA_IN, D_C, D_W, OFF(w1), false, A6, NULL},
    {"att.time_decay_w2", K_LORA_OUT, D_W, D_C, OFF(w2), false, A6, NULL},
    {"att.time_decay", K_DECAY, 0, 0, OFF(decay), false, AOLD, NULL},
    {"att.time_first", K_BONUS, 0, 0, OFF(bonus), false, AOLD, "att.time_faaaa"},
    {"att.gate.weight", K_MAT, D_C, D_C, OFF(gw), false, A51 | A52 | A6, NULL},
    {"ffn.time_mix_k", K_VEC, 0, 0, OFF(ffn_x_k), false, A4 | A5, NULL},
    {"ffn.time_mix_r", K_VEC, 0, 0, OFF(ffn_x_r), false, A4 | A5, NULL},
    {"ffn.time_maa_k", K_VEC, 0, 0, OFF(ffn_x_k), false, A6, NULL},
    {"ffn.time_maa_r", K_VEC, 0, 0, OFF(ffn_x_r), false, A6, NULL},
    {"ffn.receptance.weight", K_MAT, D_C, D_C, OFF(ffn_r), false, AOLD, NULL},
};
#undef OFF
#define N_LAYER_TENSORS ((int)(sizeof layer_tensors / sizeof layer_tensors[0]))

static int dim_of(const rwkv_dims *d, int which)
{
    switch (which) {
    case D_C: return d->n_embd;
    case D_F: return d->n_ffn;
    case D_W: return d->d_w;
    case D_A: return d->d_a;
    case D_V: return d->d_v;
    case D_G: return d->d_g;
    case D_M: return d->d_mix;
    case D_M5: return 5 * d->d_mix;
    }
    return 0;
}

static void shape_str(const rwkv_pth_tensor *t, char *buf, size_t cap)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int d = 0; d < t->ndim && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

static bool is_float(rwkv_pth_type t)
{
    return t == RWKV_PTH_F32 || t == RWKV_PTH_F16 || t == RWKV_PTH_BF16;
}

/* A vector of C: [C], [1, C] or [1, 1, C]. */
static bool vec_shape_ok(const rwkv_pth_tensor *t, int64_t c)
{
    if (t->ndim < 1)
        return false;
    for (int d = 0; d + 1 < t->ndim; d++)
        if (t->shape[d] != 1)
            return false;
    return t->shape[t->ndim - 1] == c;
}

static const rwkv_pth_tensor *need(const rwkv_pth *p, const char *name, char *err, size_t err_len, int *rc)
{
    const rwkv_pth_tensor *t = rwkv_pth_find(p, name);
    if (!t) {
        *rc = rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: missing tensor '%s'", rwkv_pth_name(p), name);
        return NULL;
    }
    if (!is_float(t->type)) {
        *rc = rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: tensor '%s' has type %s, expected bfloat16, float16 or float32",
                   rwkv_pth_name(p), name, rwkv_pth_type_name(t->type));
        return NULL;
    }
    return t;
}

static int check_shape2(const rwkv_pth *p, const rwkv_pth_tensor *t, int64_t r, int64_t c, char *err, size_t err_len)
{
    if (t->ndim == 2 && t->shape[0] == r && t->shape[1] == c)
        return 0;
    char s[96];
    shape_str(t, s, sizeof s);
    return rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: tensor '%s' has shape %s, expected [%lld, %lld]", rwkv_pth_name(p), t->name, s,
                (long long)r, (long long)c);
}

/* Recognise the generation from key names and shapes as the official `rwkv` pip package
 * does (rwkv.h, rwkv_arch); refuse what this engine does not run, naming what was found. */
static int detect_arch(const rwkv_pth *p, rwkv_arch *arch, char *err, size_t err_len)
{
    const char *nm = rwkv_pth_name(p);
    bool maa = false;
    for (int i = 0; i < rwkv_pth_count(p); i++) {
        const char *k = rwkv_pth_at(p, i)->name;
        if (strstr(k, "ffn.s_emb") || strstr(k, ".ffn.s0") || strstr(k, ".ffn.s1") || strstr(k, ".ffn.s2"))
            return rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: tensor '%s' marks an RWKV-7 x070a (DeepEmbed) checkpoint; only plain x070 is supported", nm, k);
        if (strncmp(k, "blocks.", 7) == 0 && strstr(k, ".qkv."))
            return rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: tensor '%s' marks an RWKV-7 x070b (DEA) checkpoint; only plain x070 is supported", nm, k);
        if (strncmp(k, "blocks.", 7) == 0 && strstr(k, ".att.time_maa"))
            maa = true;
    }
    if (rwkv_pth_find(p, "blocks.0.att.r_k") && rwkv_pth_find(p, "blocks.0.att.k_k")) {
        *arch = RWKV_ARCH_X070;
        return 0;
    }
    if (maa) {
        *arch = RWKV_ARCH_V6;
        return 0;
    }
    const rwkv_pth_tensor *td = rwkv_pth_find(p, "blocks.0.att.time_decay");
    if (rwkv_pth_find(p, "blocks.0.att.ln_x.weight") && td) {
        if (td->ndim >= 2 && td->shape[1] > 1)
            *arch = RWKV_ARCH_V5_2;
        else if (rwkv_pth_find(p, "blocks.0.att.gate.weight"))
            *arch = RWKV_ARCH_V5_1;
        else
            *arch = RWKV_ARCH_V5_0;
        return 0;
    }
    if (rwkv_pth_find(p, "blocks.0.att.time_mix_k") && td) {
        *arch = RWKV_ARCH_V4;
        return 0;
    }
    /* name what is there: up to four of layer 0's attention tensors, or the first tensors */
    char found[256] = "";
    size_t n = 0;
    int shown = 0;
    for (int pass = 0; pass < 2 && shown == 0; pass++) {
        for (int i = 0; i < rwkv_pth_count(p) && shown < 4 && n < sizeof found; i++) {
            const char *k = rwkv_pth_at(p, i)->name;
            if (pass == 0 && strncmp(k, "blocks.0.att.", 13) != 0)
                continue;
            n += (size_t)snprintf(found + n, sizeof found - n, "%s'%s'", shown ? ", " : "", k);
            shown++;
        }
    }
    return rwkv_errf(err, err_len, -EINVAL, NULL, 0,
                     "%s: unknown architecture: no RWKV-7 (att.r_k, att.k_k), RWKV-6 (att.time_maa_*), RWKV-5 "
                     "(att.ln_x, att.time_decay) or RWKV-4 (att.time_mix_k, att.time_decay) tensors in layer 0; found %s",
                     nm, shown ? found : "no tensors");
}

/* Is `name` one of the tensors a checkpoint of generation `ab` (A* bit) may contain? */
static bool known_name(const char *name, int n_layer, unsigned ab)
{
    static const char *globals[] = {"emb.weight", "ln_out.weight", "ln_out.bias", "head.weight",
                                    "blocks.0.ln0.weight", "blocks.0.ln0.bias"};
    for (size_t i = 0; i < sizeof globals / sizeof globals[0]; i++)
        if (strcmp(name, globals[i]) == 0)
            return true;
    if (strncmp(name, "blocks.", 7) != 0)
        return false;
    char *end;
    long l = strtol(name + 7, &end, 10);
    if (end == name + 7 || *end != '.' || l < 0 || l >= n_layer)
        return false;
    for (int i = 0; i < N_LAYER_TENSORS; i++)
        if ((layer_tensors[i].arch & ab) &&
            (strcmp(end + 1, layer_tensors[i].suffix) == 0 ||
             (layer_tensors[i].alt && strcmp(end + 1, layer_tensors[i].alt) == 0)))
            return true;
    return false;
}

static int n_layer_of(const rwkv_pth *p)
{
    int max_l = -1;
    for (int i = 0; i < rwkv_pth_count(p); i++) {
        const char *k = rwkv_pth_at(p, i)->name;
        if (strncmp(k, "blocks.", 7) == 0) {
            char *end;
            long l = strtol(k + 7, &end, 10);
            if (end != k + 7 && *end == '.' && l >= 0 && l < 4096 && l > max_l)
                max_l = (int)l;
        }
    }
    return max_l + 1;
}

/* RWKV-4/5/6 dims: heads from time_decay (5.x) or time_faaaa / time_first (6), none for 4;
 * the v6 LoRA ranks from time_maa_w1 (5 * d_mix columns) and time_decay_w1. */
static int infer_dims_legacy(const rwkv_pth *p, rwkv_dims *d, char *err, size_t err_len)
{
    const char *nm = rwkv_pth_name(p);
    int rc = 0;
    const rwkv_pth_tensor *t;
    d->n_layer = n_layer_of(p);
    if (d->n_layer < 1)
        return rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: no blocks.* tensors", nm);
    if (d->arch != RWKV_ARCH_V4) {
        const char *hsrc = "blocks.0.att.time_decay";
        if (d->arch == RWKV_ARCH_V6)
            hsrc = rwkv_pth_find(p, "blocks.0.att.time_first") ? "blocks.0.att.time_first" : "blocks.0.att.time_faaaa";
        if (!(t = need(p, hsrc, err, err_len, &rc)))
            return rc;
        if (t->ndim < 1 || t->shape[0] < 1 || d->n_embd % t->shape[0] != 0) {
            char s[96];
            shape_str(t, s, sizeof s);
            return rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: tensor '%s' has shape %s, expected [n_head, ...] with n_head dividing n_embd = %d",
                             nm, hsrc, s, d->n_embd);
        }
        d->n_head = (int)t->shape[0];
        d->head_size = d->n_embd / d->n_head;
    }
    if (!(t = need(p, "blocks.0.ffn.key.weight", err, err_len, &rc)))
        return rc;
    if (t->ndim != 2 || t->shape[0] < 1 || t->shape[0] > (1 << 20))
        return check_shape2(p, t, -1, d->n_embd, err, err_len);
    d->n_ffn = (int)t->shape[0];
    if (d->arch == RWKV_ARCH_V6) {
        if (!(t = need(p, "blocks.0.att.time_maa_w1", err, err_len, &rc)))
            return rc;
        if (t->ndim != 2 || t->shape[0] != d->n_embd || t->shape[1] < 5 || t->shape[1] % 5 || t->shape[1] > (1 << 16))
            return check_shape2(p, t, d->n_embd, -1, err, err_len);
        d->d_mix = (int)t->shape[1] / 5;
        if (!(t = need(p, "blocks.0.att.time_decay_w1", err, err_len, &rc)))
            return rc;
        if (t->ndim != 2 || t->shape[0] != d->n_embd || t->shape[1] < 1 || t->shape[1] > (1 << 16))
            return check_shape2(p, t, d->n_embd, -1, err, err_len);
        d->d_w = (int)t->shape[1];
    }
    return 0;
}

static int infer_dims(const rwkv_pth *p, rwkv_dims *d, char *err, size_t err_len)
{
    const char *nm = rwkv_pth_name(p);
    int rc = 0;
    const rwkv_pth_tensor *emb = need(p, "emb.weight", err, err_len, &rc);
    if (!emb)
        return rc;
    if (emb->ndim != 2 || emb->shape[0] < 1 || emb->shape[1] < 1 || emb->shape[0] > (1 << 24) || emb->shape[1] > (1 << 16)) {
        char s[96];
        shape_str(emb, s, sizeof s);
        return rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: tensor 'emb.weight' has shape %s, expected [n_vocab, n_embd]", nm, s);
    }
    d->n_vocab = (int)emb->shape[0];
    d->n_embd = (int)emb->shape[1];
    if (d->arch != RWKV_ARCH_X070)
        return infer_dims_legacy(p, d, err, err_len);
    const rwkv_pth_tensor *rk = need(p, "blocks.0.att.r_k", err, err_len, &rc);
    if (!rk)
        return rc;
    if (rk->ndim != 2 || rk->shape[0] < 1 || rk->shape[1] < 1 || rk->shape[0] * rk->shape[1] != d->n_embd) {
        char s[96];
        shape_str(rk, s, sizeof s);
        return rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: tensor 'blocks.0.att.r_k' has shape %s, expected [n_head, head_size] with n_head*head_size = n_embd = %d",
                    nm, s, d->n_embd);
    }
    d->n_head = (int)rk->shape[0];
    d->head_size = (int)rk->shape[1];
    int max_l = -1;
    for (int i = 0; i < rwkv_pth_count(p); i++) {
        const char *k = rwkv_pth_at(p, i)->name;
        if (strncmp(k, "blocks.", 7) == 0) {
            char *end;
            long l = strtol(k + 7, &end, 10);
            if (end != k + 7 && *end == '.' && l >= 0 && l < 4096 && l > max_l)
                max_l = (int)l;
        }
    }
    if (max_l < 0)
        return rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: no blocks.* tensors", nm);
    d->n_layer = max_l + 1;
    const rwkv_pth_tensor *t;
    if (!(t = need(p, "blocks.0.ffn.key.weight", err, err_len, &rc)))
        return rc;
    if (t->ndim != 2 || t->shape[0] < 1 || t->shape[0] > (1 << 20))
        return check_shape2(p, t, -1, d->n_embd, err, err_len);
    d->n_ffn = (int)t->shape[0];
    const char *rank_src[4] = {"blocks.0.att.w1", "blocks.0.att.a1", "blocks.1.att.v1", "blocks.0.att.g1"};
    int *rank_dst[4] = {&d->d_w, &d->d_a, &d->d_v, &d->d_g};
    for (int i = 0; i < 4; i++) {
        if (i == 2 && d->n_layer == 1) {
            /* a one-layer model never uses v1; take layer 0's if present */
            t = rwkv_pth_find(p, "blocks.0.att.v1");
            *rank_dst[i] = (t && t->ndim == 2) ? (int)t->shape[1] : 0;
            continue;
        }
        if (!(t = need(p, rank_src[i], err, err_len, &rc)))
            return rc;
        if (t->ndim != 2 || t->shape[0] != d->n_embd || t->shape[1] < 1 || t->shape[1] > (1 << 16))
            return check_shape2(p, t, d->n_embd, -1, err, err_len);
        *rank_dst[i] = (int)t->shape[1];
    }
    return 0;
}

typedef struct {
    const rwkv_pth_tensor *src;
    kind k;
    int rows, cols;       /* destination (after transposition) */
    rwkv_dtype dtype;     /* destination element type */
    size_t off;           /* into the arena */
    void *field;          /* float** or rwkv_mat* to fill */
    int sub;              /* K_LORA5: which of the five factors */
    rwkv_arch arch;       /* K_DECAY, K_BONUS: the transform (see model.h decay, bonus) */
    bool exp_bonus;       /* K_BONUS: stored as time_first, used as exp(time_first) */
} plan_item;

static bool is_vec_kind(kind k) { return k == K_VEC || k == K_RK || k == K_DECAY || k == K_BONUS; }
static bool is_mat_kind(kind k) { return !is_vec_kind(k); }

static rwkv_dtype mat_dtype(rwkv_weights w, rwkv_pth_type stored)
{
    switch (w) {
    case RWKV_WEIGHTS_F32: return RWKV_DTYPE_F32;
    case RWKV_WEIGHTS_BF16: return RWKV_DTYPE_BF16;
    case RWKV_WEIGHTS_F16: return RWKV_DTYPE_F16;
    case RWKV_WEIGHTS_BF16DOT: return RWKV_DTYPE_BF16X2;
    case RWKV_WEIGHTS_STORED:
        return stored == RWKV_PTH_BF16 ? RWKV_DTYPE_BF16 : stored == RWKV_PTH_F16 ? RWKV_DTYPE_F16 : RWKV_DTYPE_F32;
    }
    return RWKV_DTYPE_F32;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const uint8_t *b = data;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Convert one planned tensor into the arena; checks for non-finite values. */
static int convert(const rwkv_pth *p, plan_item *it, uint8_t *arena, float *tmp, char *err, size_t err_len)
{
    const rwkv_pth_tensor *t = it->src;
    int64_t n = rwkv_pth_numel(t);
    int rc = rwkv_pth_to_f32(t, tmp);
    if (rc)
        return rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: tensor '%s' cannot be converted", rwkv_pth_name(p), t->name);
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(tmp[i]))
            return rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: tensor '%s' holds a non-finite value (%f) at flat index %lld",
                        rwkv_pth_name(p), t->name, (double)tmp[i], (long long)i);
    }
    void *dst = arena + it->off;
    if (it->k == K_VEC || it->k == K_RK) {
        memcpy(dst, tmp, (size_t)n * 4);
    } else if (it->k == K_DECAY || it->k == K_BONUS) {
        /* n values: one per channel, or one per head repeated over its channels; the
         * transforms in float32, as the released inference code does them at load */
        float *o = dst;
        const int C = it->cols, rep = C / (int)n;
        for (int c = 0; c < C; c++) {
            const float x = tmp[c / rep];
            float y = x;
            if (it->k == K_DECAY && it->arch == RWKV_ARCH_V4)
                y = -expf(x);
            else if (it->k == K_DECAY && it->arch != RWKV_ARCH_V6)
                y = expf(-expf(x));
            else if (it->k == K_BONUS && it->exp_bonus)
                y = expf(x);
            if (!isfinite(y))
                return rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: tensor '%s' value %g at flat index %d is out of range (%s is not finite in float32)",
                                 rwkv_pth_name(p), t->name, (double)x, c / rep, it->k == K_DECAY ? "the decay made of it" : "its exp");
            o[c] = y;
        }
    } else {
        /* Pack into panels (see model.h). Source element (out r, in k) sits at
         * tmp[r*cols + k] for Linear weights ([out][in]) and tmp[k*rows + r] for LoRA
         * factors ([in][out]); padding rows stay zero (the arena is zero-filled). */
        const bool lora = it->k == K_LORA_IN || it->k == K_LORA_OUT || it->k == K_LORA5;
        const int rows = it->rows, cols = it->cols;
        const float *src = tmp + (size_t)it->sub * rows * cols;
        const int panels = (rows + RWKV_PANEL - 1) / RWKV_PANEL;
        for (int pnl = 0; pnl < panels; pnl++) {
            for (int k = 0; k < cols; k++) {
                for (int j = 0; j < RWKV_PANEL; j++) {
                    const int r = pnl * RWKV_PANEL + j;
                    if (r >= rows)
                        break;
                    const size_t o = rwkv_mat_index(it->dtype, cols, r, k);
                    const float v = lora ? src[(size_t)k * rows + r] : src[(size_t)r * cols + k];
                    if (it->dtype == RWKV_DTYPE_F32) {
                        ((float *)dst)[o] = v;
                    } else {
                        uint16_t h = it->dtype == RWKV_DTYPE_F16 ? rwkv_f32_to_f16(v) : rwkv_f32_to_bf16(v);
                        if (it->dtype == RWKV_DTYPE_F16 && (h & 0x7c00u) == 0x7c00u)
                            return rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: tensor '%s' value %g at [%d][%d] overflows float16 (load with f32 or bf16 weights)",
                                        rwkv_pth_name(p), t->name, (double)v, lora ? k : r, lora ? r : k);
                        ((uint16_t *)dst)[o] = h;
                    }
                }
            }
        }
    }
    if (is_mat_kind(it->k)) {
        rwkv_mat *m = it->field;
        *m = (rwkv_mat){dst, it->dtype, it->rows, it->cols};
    } else {
        *(const float **)it->field = dst;
    }
    return 0;
}

int rwkv_model_load(const char *path, const rwkv_load_opts *opts, rwkv_model **out, char *err, size_t err_len)
{
    rwkv_load_opts o = opts ? *opts : (rwkv_load_opts){0};
    if ((unsigned)o.weights > RWKV_WEIGHTS_BF16DOT)
        return rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: invalid weights option %d", path, (int)o.weights);
    rwkv_pth *p = NULL;
    int rc = rwkv_pth_open(path, &p, err, err_len);
    if (rc)
        return rc;
    rwkv_model *m = calloc(1, sizeof *m);
    plan_item *plan = NULL;
    float *tmp = NULL;
    const char *nm = path;
    if (!m) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = detect_arch(p, &m->dims.arch, err, err_len)) || (rc = infer_dims(p, &m->dims, err, err_len)))
        goto out;
    rwkv_dims *d = &m->dims;
    const int L = d->n_layer, C = d->n_embd, V = d->n_vocab;
    const unsigned ab = arch_bit(d->arch);
    for (int i = 0; i < rwkv_pth_count(p); i++) {
        const char *k = rwkv_pth_at(p, i)->name;
        if (!known_name(k, L, ab)) {
            rc = rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: unexpected tensor '%s' (not part of an %s checkpoint with %d layers)", nm, k,
                           d->arch == RWKV_ARCH_X070 ? "RWKV-7 x070" : rwkv_arch_name(d->arch), L);
            goto out;
        }
    }
    m->layers = calloc((size_t)L, sizeof(rwkv_layer));
    int max_items = 6 + L * (N_LAYER_TENSORS + 4);
    plan = calloc((size_t)max_items, sizeof(plan_item));
    if (!m->layers || !plan) {
        rc = -ENOMEM;
        goto out;
    }
    int n_plan = 0;
    size_t arena = 0, max_numel = 0;
#define ADD(T, K, R, CC, DT, FIELD) \
    do { \
        size_t bytes_ = is_vec_kind(K) ? (size_t)(R) * (size_t)(CC) * 4 : rwkv_mat_bytes((R), (CC), (DT)); \
        plan[n_plan] = (plan_item){(T), (K), (R), (CC), (DT), arena, (FIELD), 0, d->arch, false}; \
        arena += (bytes_ + 63) & ~(size_t)63; \
        if ((size_t)rwkv_pth_numel(T) > max_numel) \
            max_numel = (size_t)rwkv_pth_numel(T); \
        n_plan++; \
    } while (0)
    /* globals: emb (folded later), ln0 kept only during load, ln_out, head */
    const rwkv_pth_tensor *t;
    struct { const char *name; const float **field; } vecs[] = {
        {"blocks.0.ln0.weight", NULL}, {"blocks.0.ln0.bias", NULL},
        {"ln_out.weight", &m->ln_out_w}, {"ln_out.bias", &m->ln_out_b},
    };
    const float *ln0[2] = {NULL, NULL};
    vecs[0].field = &ln0[0];
    vecs[1].field = &ln0[1];
    if (!(t = need(p, "emb.weight", err, err_len, &rc)))
        goto out;
    ADD(t, K_VEC, V, C, RWKV_DTYPE_F32, (void *)&m->emb);
    for (size_t i = 0; i < 4; i++) {
        if (!(t = need(p, vecs[i].name, err, err_len, &rc)))
            goto out;
        if (!vec_shape_ok(t, C)) {
            char s[96];
            shape_str(t, s, sizeof s);
            rc = rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: tensor '%s' has shape %s, expected [%d]", nm, t->name, s, C);
            goto out;
        }
        ADD(t, K_VEC, 1, C, RWKV_DTYPE_F32, (void *)vecs[i].field);
    }
    if (!(t = need(p, "head.weight", err, err_len, &rc)) || (rc = check_shape2(p, t, V, C, err, err_len)))
        goto out;
    ADD(t, K_MAT, V, C, mat_dtype(o.weights, t->type), &m->head);
    for (int l = 0; l < L; l++) {
        rwkv_layer *ly = &m->layers[l];
        for (int i = 0; i < N_LAYER_TENSORS; i++) {
            const layer_tensor *lt = &layer_tensors[i];
            if (!(lt->arch & ab))
                continue;
            char name[96];
            snprintf(name, sizeof name, "blocks.%d.%s", l, lt->suffix);
            bool exp_bonus = false;
            if (lt->k == K_BONUS && d->arch != RWKV_ARCH_V4) {
                /* time_faaaa is the bonus as stored; time_first is its logarithm */
                char alt[96];
                snprintf(alt, sizeof alt, "blocks.%d.%s", l, lt->alt);
                if (rwkv_pth_find(p, alt))
                    memcpy(name, alt, sizeof name);
                else
                    exp_bonus = true;
            }
            if (l == 0 && lt->layer1_plus) {
                t = rwkv_pth_find(p, name);
                (void)t; /* present or absent; never used (spec §1.1) */
                continue;
            }
            if (!(t = need(p, name, err, err_len, &rc)))
                goto out;
            void *field = (uint8_t *)ly + lt->off_f;
            if (lt->k == K_VEC) {
                if (!vec_shape_ok(t, C)) {
                    char s[96];
                    shape_str(t, s, sizeof s);
                    rc = rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: tensor '%s' has shape %s, expected [1, 1, %d]", nm, name, s, C);
                    goto out;
                }
                ADD(t, K_VEC, 1, C, RWKV_DTYPE_F32, field);
            } else if (lt->k == K_DECAY || lt->k == K_BONUS) {
                /* one value per channel, or (RWKV-5/6) one per head; any singleton dims */
                const int64_t n = rwkv_pth_numel(t);
                if (n != C && (d->arch == RWKV_ARCH_V4 || n != d->n_head)) {
                    char s[96];
                    shape_str(t, s, sizeof s);
                    if (d->arch == RWKV_ARCH_V4)
                        rc = rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: tensor '%s' has shape %s, expected %d values (one per channel)", nm, name, s, C);
                    else
                        rc = rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: tensor '%s' has shape %s, expected %d values (one per channel) or %d (one per head)",
                                       nm, name, s, C, d->n_head);
                    goto out;
                }
                ADD(t, lt->k, 1, C, RWKV_DTYPE_F32, field);
                plan[n_plan - 1].exp_bonus = exp_bonus;
            } else if (lt->k == K_LORA5) {
                const int dm = d->d_mix;
                if (t->ndim != 3 || t->shape[0] != 5 || t->shape[1] != dm || t->shape[2] != C) {
                    char s[96];
                    shape_str(t, s, sizeof s);
                    rc = rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: tensor '%s' has shape %s, expected [5, %d, %d]", nm, name, s, dm, C);
                    goto out;
                }
                for (int f = 0; f < 5; f++) {
                    ADD(t, K_LORA5, C, dm, mat_dtype(o.weights, t->type), (rwkv_mat *)field + f);
                    plan[n_plan - 1].sub = f;
                }
            } else if (lt->k == K_RK) {
                if (t->ndim != 2 || t->shape[0] != d->n_head || t->shape[1] != d->head_size) {
                    rc = check_shape2(p, t, d->n_head, d->head_size, err, err_len);
                    goto out;
                }
                ADD(t, K_VEC, 1, C, RWKV_DTYPE_F32, field);
            } else {
                int r = dim_of(d, lt->rows_dim), c = dim_of(d, lt->cols_dim);
                if ((rc = check_shape2(p, t, r, c, err, err_len)))
                    goto out;
                if (lt->k == K_MAT)
                    ADD(t, K_MAT, r, c, mat_dtype(o.weights, t->type), field);
                else /* stored [in][out] = (r, c) is the matrix (out = c, in = r) */
                    ADD(t, lt->k, c, r, mat_dtype(o.weights, t->type), field);
            }
        }
    }
#undef ADD
    /* One arena for everything; large models get huge pages where the kernel allows. */
    m->arena_bytes = arena;
    m->arena = mmap(NULL, arena, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m->arena == MAP_FAILED) {
        m->arena = NULL;
        rwkv_errf(err, err_len, -EINVAL, NULL, 0, "%s: cannot allocate %zu bytes for the weights", nm, arena);
        rc = -ENOMEM;
        goto out;
    }
#ifdef MADV_HUGEPAGE
    madvise(m->arena, arena, MADV_HUGEPAGE);
#endif
    tmp = malloc(max_numel * sizeof(float));
    if (!tmp) {
        rc = -ENOMEM;
        goto out;
    }
    /* RWKV-7 hashes the dims fields it always had (fingerprints of RWKV-7 models do not
     * change); the other generations hash all of them, generation included */
    uint64_t fp = fnv1a(0xcbf29ce484222325ull, d, d->arch == RWKV_ARCH_X070 ? offsetof(rwkv_dims, arch) : sizeof *d);
    for (int i = 0; i < n_plan; i++) {
        if ((rc = convert(p, &plan[i], m->arena, tmp, err, err_len)))
            goto out;
        if (i + 1 == n_plan || plan[i + 1].src != plan[i].src)
            rwkv_pth_release_tensor(p, plan[i].src); /* keep RSS near the arena size */
        {
            /* Fingerprint: name, and up to 4 KiB sampled from each converted tensor. */
            const rwkv_pth_tensor *src = plan[i].src;
            fp = fnv1a(fp, src->name, strlen(src->name));
            size_t bytes = is_vec_kind(plan[i].k)
                               ? (size_t)plan[i].rows * plan[i].cols * 4
                               : rwkv_mat_bytes(plan[i].rows, plan[i].cols, plan[i].dtype);
            const uint8_t *b = (const uint8_t *)m->arena + plan[i].off;
            size_t step = bytes > 4096 ? bytes / 64 : bytes;
            for (size_t s = 0; s < bytes; s += step)
                fp = fnv1a(fp, b + s, bytes - s < 64 ? bytes - s : 64);
        }
    }
    m->fingerprint = fp;
    /* fold ln0 into the embedding: every row replaced by LN(row; ln0) */
    {
        float *e = (float *)m->emb;
        for (int v = 0; v < V; v++) {
            float *row = e + (size_t)v * C;
            double mean = 0, var = 0;
            for (int c = 0; c < C; c++)
                mean += row[c];
            mean /= C;
            for (int c = 0; c < C; c++)
                var += (row[c] - mean) * (row[c] - mean);
            var /= C;
            double inv = 1.0 / sqrt(var + 1e-5);
            for (int c = 0; c < C; c++)
                row[c] = (float)((row[c] - mean) * inv * ln0[0][c] + ln0[1][c]);
        }
    }
    for (int i = 0; i < n_plan; i++)
        if (i == 0 || plan[i - 1].src != plan[i].src)
            m->n_params += (uint64_t)rwkv_pth_numel(plan[i].src);
    rwkv_pth_release_pages(p);
out:
    free(tmp);
    free(plan);
    rwkv_pth_close(&p);
    if (rc) {
        rwkv_model_destroy(&m);
        return rc;
    }
    *out = m;
    return 0;
}

void rwkv_model_destroy(rwkv_model **mp)
{
    if (!mp || !*mp)
        return;
    rwkv_model *m = *mp;
    if (m->arena)
        munmap(m->arena, m->arena_bytes);
    free(m->layers);
    free(m);
    *mp = NULL;
}

const rwkv_dims *rwkv_model_dims(const rwkv_model *m) { return &m->dims; }
uint64_t rwkv_model_n_params(const rwkv_model *m) { return m->n_params; }
uint64_t rwkv_model_weight_bytes(const rwkv_model *m) { return m->arena_bytes; }
uint64_t rwkv_model_fingerprint(const rwkv_model *m) { return m->fingerprint; }
