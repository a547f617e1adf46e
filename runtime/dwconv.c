/* dwconv.c — depthwise 2-D convolution over NHWC (Keras' DepthwiseConv2D)
 * and its two gradients, float and double. The kernels live in
 * dwconv_tmpl.h: vector kernels along the channels per instruction set
 * (kernels_impl.h) for a depth multiplier of 1, and portable loops for the
 * rest (other multipliers, channels past the last whole vector, double). */
#include <string.h>

#include "kernels_impl.h"

/* floor(a / b) and ceil(a / b) for b > 0, any sign of a */
static inline int kdk_dw_floordiv(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
static inline int kdk_dw_ceildiv(int a, int b) { return -kdk_dw_floordiv(-a, b); }

/* Forward taps along one axis: the k in [*k0, *k1) with 0 <= t + k*d < n
 * (t: the window's first position, maybe in the padding). */
static inline void kdk_dw_taps(int t, int n, int k, int d, int *k0, int *k1)
{
    /* no division without dilation: it costs more than a pixel of 64 channels */
    int a = t >= 0 ? 0 : d == 1 ? -t : kdk_dw_ceildiv(-t, d);
    int b = n - t <= 0 ? 0 : d == 1 ? n - t : kdk_dw_ceildiv(n - t, d);
    *k0 = a;
    *k1 = KDK_MIN(b, k);
    if (*k1 < *k0) *k1 = *k0;
}

/* Backward taps along one axis, for the input position p: the taps k that
 * read it, those whose output o = (p + pad - k*d) / s is whole and in
 * [0, o_n). Only for s == 1 or d == 1 (Keras allows no other): the taps are
 * k0, k0 + step, ... (count of them), tap k0's output *o0, and each step
 * lowers the output by *odec. Returns the count. */
static inline int kdk_dw_back_taps(int t, int k, int o_n, int s, int d, int *k0, int *step, int *o0, int *odec)
{
    int lo, hi;
    if (s == 1) {       /* o = t - k*d in [0, o_n) */
        lo = KDK_MAX(0, kdk_dw_ceildiv(t - o_n + 1, d));
        hi = KDK_MIN(k - 1, kdk_dw_floordiv(t, d));
        *step = 1;
        *odec = d;
        *k0 = lo;
        *o0 = t - lo * d;
        return hi >= lo ? hi - lo + 1 : 0;
    }
    /* d == 1: o * s = t - k, so k = t (mod s), k in [t - (o_n - 1) * s, t] */
    lo = KDK_MAX(0, t - (o_n - 1) * s);
    hi = KDK_MIN(k - 1, t);
    if (hi < lo) return 0;
    lo += ((t - lo) % s + s) % s;
    if (hi < lo) return 0;
    *step = s;
    *odec = 1;
    *k0 = lo;
    *o0 = (t - lo) / s;
    return (hi - lo) / s + 1;
}

/* Channels per unit of the filter gradient's thread split: whole vectors of
 * every instruction set (4, 8 and 16 floats). */
enum { KDK_DW_UNIT_CH = 16 };

/* Columns whose data-gradient taps the vector kernels work out at once. */
enum { KDW_COLS = 64 };

#if defined(__x86_64__) || defined(__ARM_NEON) || defined(__aarch64__)
#define KDK_FAST_DIRECT 1
#endif

#define KDK_TEMPLATE "dwconv_tmpl.h"
#ifdef KDK_FAST_DIRECT
#define KDK_VARIANT_BASE 1
#endif

#define KI(x) KDK_CAT(KDK_CAT(x, _), KS)

#define KT float
#define KTI int32_t
#define KS s
#define KP(x) kdk_s##x
#define KACT kdk_act_fusedf
#include "isa_variants.h"
#undef KT
#undef KTI
#undef KS
#undef KP
#undef KACT

/* double: the portable loops only (kdsl's precision build, as conv.c) */
#undef KDK_FAST_DIRECT
#undef KDK_VARIANT_BASE
#define KI(x) KDK_CAT(KDK_CAT(x, _), KS)
#define KT double
#define KTI int64_t
#define KS d
#define KP(x) kdk_d##x
#define KACT kdk_act_fused
#include "dwconv_tmpl.h"
#undef KT
#undef KTI
#undef KS
#undef KP
#undef KACT
