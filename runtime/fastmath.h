/* fastmath.h — the float sigmoid and tanh of generated code, as branch-free
 * arithmetic that a compiler vectorises. The one definition generated C
 * (model.c includes it through kernels.h) and the JIT (codegen/jit_fastmath.c
 * builds the same operations, in the same order, through libgccjit) share,
 * so both backends compute bit-identical values; tests/test_jit.c compares
 * the two over 2^20 inputs and tests/test_kernels.c bounds the error against
 * double-precision libm.
 *
 * Why: libm's expf and tanhf are calls a loop cannot vectorise, and the
 * gates of the recurrent layers (LSTM, GRU) spent half their time in them.
 *
 * Freestanding C99: no libm, no state. Float only: the f64 build of
 * generated code (gradient checks) keeps libm's exp and tanh.
 *
 *   kdk_expf_fast(x)   e^x for x in [-87.3, 88] (clamped outside it: about
 *                      1.2e-38 below, 1.65e38 above), within 2 ulp: Cody-Waite
 *                      reduction x = n ln 2 + r, |r| <= ln 2 / 2, e^r by Cephes'
 *                      degree-6 polynomial, times 2^n built in the exponent bits
 *   kdk_sigmoidf(x)    1 / (1 + e^-x), within 3 ulp (1e-38 absolute below -87)
 *   kdk_tanhf(x)       |x| < 0.625: Cephes' odd polynomial; else
 *                      sign(x) (1 - e) / (1 + e) with e = e^(-2|x|), which
 *                      never overflows; within 3 ulp
 * NaN in gives NaN out (the clamps compare so that NaN passes through). */
#ifndef KDSL_FASTMATH_H
#define KDSL_FASTMATH_H

#include <stdint.h>

#define KDK_EXP_HI 88.0f
#define KDK_EXP_LO -87.33654f
#define KDK_LOG2E 1.44269504088896341f
#define KDK_ROUND_MAGIC 12582912.0f /* 1.5 * 2^23: adding it rounds to an integer, held in the low bits */
#define KDK_LN2_HI 0.693359375f     /* ln 2 in 10 bits: n * KDK_LN2_HI is exact */
#define KDK_LN2_LO -2.12194440e-4f  /* ln 2 - KDK_LN2_HI */
#define KDK_EXP_P0 1.9875691500e-4f
#define KDK_EXP_P1 1.3981999507e-3f
#define KDK_EXP_P2 8.3334519073e-3f
#define KDK_EXP_P3 4.1665795894e-2f
#define KDK_EXP_P4 1.6666665459e-1f
#define KDK_EXP_P5 5.0000001201e-1f
#define KDK_TANH_SMALL 0.625f
#define KDK_TANH_P0 -5.70498872745e-3f
#define KDK_TANH_P1 2.06390887954e-2f
#define KDK_TANH_P2 -5.37397155531e-2f
#define KDK_TANH_P3 1.33314422036e-1f
#define KDK_TANH_P4 -3.33332819422e-1f

static inline uint32_t kdk_float_bits(float x)
{
    union { float f; uint32_t i; } u;
    u.f = x;
    return u.i;
}

static inline float kdk_bits_float(uint32_t i)
{
    union { float f; uint32_t i; } u;
    u.i = i;
    return u.f;
}

static inline float kdk_expf_fast(float x)
{
    x = x > KDK_EXP_HI ? KDK_EXP_HI : x;
    x = x < KDK_EXP_LO ? KDK_EXP_LO : x;
    float t = x * KDK_LOG2E + KDK_ROUND_MAGIC;                       /* n = round(x / ln 2), in t's low bits */
    uint32_t n = kdk_float_bits(t) - kdk_float_bits(KDK_ROUND_MAGIC);   /* unsigned: NaN's bits wrap, no overflow */
    float fn = t - KDK_ROUND_MAGIC;
    float r = x - fn * KDK_LN2_HI;
    r = r - fn * KDK_LN2_LO;
    float p = KDK_EXP_P0;
    p = p * r + KDK_EXP_P1;
    p = p * r + KDK_EXP_P2;
    p = p * r + KDK_EXP_P3;
    p = p * r + KDK_EXP_P4;
    p = p * r + KDK_EXP_P5;
    p = p * (r * r) + r + 1.0f;
    return p * kdk_bits_float((n + 127u) << 23);   /* 2^n: n + 127 in the exponent field */
}

static inline float kdk_sigmoidf(float x)
{
    return 1.0f / (1.0f + kdk_expf_fast(-x));
}

static inline float kdk_tanhf(float x)
{
    float a = x < 0 ? -x : x;
    float z = x * x;
    float p = KDK_TANH_P0;
    p = p * z + KDK_TANH_P1;
    p = p * z + KDK_TANH_P2;
    p = p * z + KDK_TANH_P3;
    p = p * z + KDK_TANH_P4;
    float small = p * z * x + x;
    float e = kdk_expf_fast(-2.0f * a);
    float big = (1.0f - e) / (1.0f + e);
    big = x < 0 ? -big : big;
    return a < KDK_TANH_SMALL ? small : big;
}

#endif
