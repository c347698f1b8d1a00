/* test_snapshot_arch — snapshots of models of different RWKV generations.
 *
 * The snapshot header carries the model's fingerprint and dims, and rwkv_model_fingerprint()
 * hashes the generation of RWKV-4/5/6 models with their dims, so no extra field is needed
 * to keep one generation's state out of another's model. This checks that: for each model
 * (RWKV-7, RWKV-6, RWKV-5.2 and RWKV-4 checkpoints given on the command line) a state
 * exported after a few tokens encodes, decodes against its own model and imports back
 * unchanged; rwkvd_snap_state_bytes() equals the engine's state size (RWKV-4: 5C per
 * layer); and every other model refuses it with -ESTALE naming the fingerprint — in
 * particular a v7 snapshot is refused by a v6 model, and a 5.2 snapshot by a v6 model of
 * the same dims.
 * Usage: test_snapshot_arch V7.pth V6.pth V52.pth V4.pth
 */
#include "testutil.h"
#include "rwkv.h"
#include "snapshot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define N_MODELS 4

typedef struct {
    rwkv_model *m;
    rwkv_engine *e;
    rwkvd_snap_model sm;
    void *image;
    size_t image_len;
    void *state;
    size_t state_bytes;
} entry;

int main(int argc, char **argv)
{
    if (argc < 1 + N_MODELS)
        return TEST_SKIP;
    entry en[N_MODELS];
    memset(en, 0, sizeof en);
    char err[512];
    const int32_t toks[] = {1, 17, 200, 5};
    for (int i = 0; i < N_MODELS; i++) {
        entry *x = &en[i];
        CHECKF(rwkv_model_load(argv[1 + i], NULL, &x->m, err, sizeof err) == 0, "%s", err);
        if (!x->m)
            return test_finish("test_snapshot_arch");
        rwkv_engine_opts o = {"cpu", 2, 4, 1};
        CHECKF(rwkv_engine_new(x->m, &o, &x->e, err, sizeof err) == 0, "%s", err);
        if (!x->e)
            return test_finish("test_snapshot_arch");
        const rwkv_dims *d = rwkv_model_dims(x->m);
        x->sm = (rwkvd_snap_model){.fingerprint = rwkv_model_fingerprint(x->m),
                                   .n_layer = (uint32_t)d->n_layer,
                                   .n_embd = (uint32_t)d->n_embd,
                                   .n_head = (uint32_t)d->n_head,
                                   .head_size = (uint32_t)d->head_size,
                                   .n_vocab = (uint32_t)d->n_vocab};
        x->state_bytes = rwkv_engine_state_bytes(x->e);
        CHECKF(rwkvd_snap_state_bytes(&x->sm) == x->state_bytes, "%s: snapshot size %llu, engine state %zu",
               rwkv_arch_name(d->arch), (unsigned long long)rwkvd_snap_state_bytes(&x->sm), x->state_bytes);
        CHECK(rwkv_engine_seq(x->e, 0, toks, 4, NULL, NULL, NULL) == 0);
        x->state = malloc(x->state_bytes);
        CHECK(x->state && rwkv_engine_state_export(x->e, 0, x->state, x->state_bytes) == 0);
        rwkvd_snapshot s = {.model = x->sm, .layout = RWKVD_SNAP_LAYOUT_V1, .dtype = RWKVD_SNAP_DTYPE_F32,
                            .channel = "ch", .tokens_seen = 4, .payload = x->state,
                            .payload_bytes = x->state_bytes};
        CHECK(rwkvd_snapshot_encode(&s, &x->image, &x->image_len) == 0);
        fprintf(stderr, "  %s: L%d C%d H%d N%d, state %zu bytes, fingerprint %016llx\n", rwkv_arch_name(d->arch),
                d->n_layer, d->n_embd, d->n_head, d->head_size, x->state_bytes, (unsigned long long)x->sm.fingerprint);
    }
    CHECK(rwkv_model_dims(en[0].m)->arch == RWKV_ARCH_X070 && rwkv_model_dims(en[1].m)->arch == RWKV_ARCH_V6 &&
          rwkv_model_dims(en[2].m)->arch == RWKV_ARCH_V5_2 && rwkv_model_dims(en[3].m)->arch == RWKV_ARCH_V4);
    for (int i = 0; i < N_MODELS; i++) {
        for (int j = 0; j < N_MODELS; j++) {
            rwkvd_snapshot *got = NULL;
            err[0] = '\0';
            int rc = rwkvd_snapshot_decode(en[i].image, en[i].image_len, "test", &en[j].sm, &got, err, sizeof err);
            if (i == j) {
                CHECKF(rc == 0, "own snapshot refused: %s", err);
                CHECK(got && got->payload_bytes == en[i].state_bytes &&
                      memcmp(got->payload, en[i].state, en[i].state_bytes) == 0);
                CHECK(got && rwkv_engine_state_import(en[i].e, 1, got->payload, got->payload_bytes) == 0);
                float a[512], b[512];
                const int V = rwkv_model_dims(en[i].m)->n_vocab;
                if (V <= 512) {
                    CHECK(rwkv_engine_seq(en[i].e, 0, toks, 1, NULL, a, NULL) == 0);
                    CHECK(rwkv_engine_seq(en[i].e, 1, toks, 1, NULL, b, NULL) == 0);
                    CHECK(memcmp(a, b, (size_t)V * sizeof(float)) == 0);
                }
            } else {
                CHECKF(rc == -ESTALE && !got, "%s snapshot into %s model: rc %d (%s)",
                       rwkv_arch_name(rwkv_model_dims(en[i].m)->arch), rwkv_arch_name(rwkv_model_dims(en[j].m)->arch),
                       rc, err);
                CHECKF(strstr(err, "fingerprint") != NULL, "message: %s", err);
            }
            rwkvd_snapshot_destroy(&got);
        }
    }
    for (int i = 0; i < N_MODELS; i++) {
        free(en[i].image);
        free(en[i].state);
        rwkv_engine_destroy(&en[i].e);
        rwkv_model_destroy(&en[i].m);
    }
    return test_finish("test_snapshot_arch");
}
