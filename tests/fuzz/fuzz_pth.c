/* fuzz_pth — libFuzzer target for the .pth container and pickle reader (kernels/pth.c).
 * Any input must be parsed or refused without a crash, leak or out-of-bounds access; on
 * success every tensor is read back through the converter to exercise the views. */
#include "pth.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rwkv_pth *p = NULL;
    char err[256];
    if (rwkv_pth_parse(data, size, "fuzz.pth", &p, err, sizeof err) == 0) {
        for (int i = 0; i < rwkv_pth_count(p); i++) {
            const rwkv_pth_tensor *t = rwkv_pth_at(p, i);
            int64_t n = rwkv_pth_numel(t);
            if (n > 0 && n <= (1 << 20)) {
                float *f = malloc((size_t)n * sizeof(float));
                if (f) {
                    rwkv_pth_to_f32(t, f);
                    free(f);
                }
            }
        }
        rwkv_pth_close(&p);
    }
    return 0;
}
