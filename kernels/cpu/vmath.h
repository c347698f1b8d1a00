/* vmath.h — vectorised exp/sigmoid/tanh for the CPU engine's elementwise passes.
 *
 * exp: range reduction x = n·ln2 + r (ln2 split hi/lo), a degree-6 polynomial for e^r on
 * |r| <= ln2/2, and vscalefps for the exact 2^n; within 2 ulp of expf over the range the
 * engine uses, with inputs clamped to ±88 so it never returns inf/NaN for finite input.
 * The scalar fallbacks are libm. Results are a pure function of the input value, so
 * bit-identity between batch and single rows is kept.
 */
#ifndef RWKV_CPU_VMATH_H
#define RWKV_CPU_VMATH_H

#include <math.h>

#if defined(__AVX512F__)
#include <immintrin.h>

static inline __m512 vm_exp512(__m512 x)
{
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-88.0f)), _mm512_set1_ps(88.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

static inline __m512 vm_sigmoid512(__m512 x)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, vm_exp512(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

/* tanh(x) = sign(x) · (1 - 2 / (e^{2|x|} + 1)) */
static inline __m512 vm_tanh512(__m512 x)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 ax = _mm512_abs_ps(x);
    const __m512 e = vm_exp512(_mm512_add_ps(ax, ax));
    const __m512 t = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
    /* copy the sign of x */
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t),
                                               _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN))));
}
#endif

/* Scalar versions with the same formulas, used for tails and where AVX-512 is absent. */
static inline float vm_sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

#endif

/* out[i] = sigmoid(a[i] + b[i]) */
static inline void vm_sigmoid_add(const float *a, const float *b, float *out, int n)
{
    int i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, vm_sigmoid512(_mm512_add_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i))));
#endif
    for (; i < n; i++)
        out[i] = vm_sigmoidf(a[i] + b[i]);
}

/* out[i] = exp(-k · sigmoid(a[i] + b[i])) — the RWKV-7 decay */
static inline void vm_decay(const float *a, const float *b, float k, float *out, int n)
{
    int i = 0;
#if defined(__AVX512F__)
    const __m512 nk = _mm512_set1_ps(-k);
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, vm_exp512(_mm512_mul_ps(nk, vm_sigmoid512(_mm512_add_ps(_mm512_loadu_ps(a + i),
                                                                                           _mm512_loadu_ps(b + i))))));
#endif
    for (; i < n; i++)
        out[i] = expf(-k * vm_sigmoidf(a[i] + b[i]));
}

/* Σ a[i]·b[i] (b may be NULL for Σ a[i]) in a fixed order: 16 lanes, then a tree. */
static inline float vm_dot(const float *a, const float *b, int n)
{
    int i = 0;
    float s = 0;
#if defined(__AVX512F__)
    __m512 acc = _mm512_setzero_ps();
    for (; i + 16 <= n; i += 16)
        acc = b ? _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc)
                : _mm512_add_ps(_mm512_loadu_ps(a + i), acc);
    s = _mm512_reduce_add_ps(acc);
#endif
    for (; i < n; i++)
        s += b ? a[i] * b[i] : a[i];
    return s;
}
