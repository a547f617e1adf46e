/* quant.c — the int8 kernels (quant.h): TFLite's integer arithmetic, with
 * the Cortex-M4's SIMD multiply-adds where the compiler targets them. */
#include "quant.h"

#include <string.h>

#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
#include <arm_acle.h>
#define KDK_Q8_DSP 1
/* SXTB16 of the word rotated by 8: one instruction (GCC does not fold the rotation in) */
static inline int16x2_t sxtb16_ror8(uint32_t a)
{
    int16x2_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(a));
    return r;
}
#endif

/* The inner products in functions of their own: inlined, at -Os, their
 * sums share the registers with the caller's loop and spill. */
#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

static inline int8_t clamp8(int32_t v, int32_t lo, int32_t hi)
{
    return (int8_t)(v < lo ? lo : v > hi ? hi : v);
}

/* ---- convolution and Dense ------------------------------------------------------------------- */

/* The two patches of a pixel pair share one buffer, interleaved by groups of
 * four elements: group g holds pixel 0's four, then pixel 1's, each group as
 * x0 x2 x1 x3 — the order SXTB16 takes four int8 weights apart in (w0 w2,
 * then w1 w3). Element k of pixel j is at SLOT(k, j). */
#define SLOT(k, j) (((k) >> 2) * 8 + (j) * 4 + ((((k) & 1) << 1) | (((k) & 2) >> 1)))

/* Output pixel i's patch as pixel j of the pair, x - in_zp (padding: 0, the real zero), int16. */
static void patch(const kdk_q8_conv_params *p, const int8_t *x, int i, int j, int16_t *col)
{
    int oy = i / p->wo, ox = i % p->wo, k = 0;
    for (int ky = 0; ky < p->kh; ky++) {
        int iy = oy * p->stride_h - p->pad_top + ky;
        for (int kx = 0; kx < p->kw; kx++) {
            int ix = ox * p->stride_w - p->pad_left + kx;
            if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) {
                for (int ci = 0; ci < p->c; ci++, k++) col[SLOT(k, j)] = 0;
                continue;
            }
            const int8_t *src = x + ((long)iy * p->w + ix) * p->c;
            for (int ci = 0; ci < p->c; ci++, k++) col[SLOT(k, j)] = (int16_t)(src[ci] - p->in_zp);
        }
    }
    for (; k < p->kp; k++) col[SLOT(k, j)] = 0;
}

static inline uint32_t load32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* s[2 * j + b] += patch j . filter b of the pair, for both patches of col
 * (pixels = 2) or the first (pixels = 1), over `groups` groups of four;
 * w: the pair's weights, four of filter 0 then four of filter 1 per group. */
NOINLINE static void dot(const int16_t *col, const int8_t *w, int groups, int pixels, int32_t *s)
{
    int32_t s00 = s[0], s01 = s[1], s10 = s[2], s11 = s[3];
#ifdef KDK_Q8_DSP
    if (pixels == 2)
        do {
            int16x2_t x02 = (int16x2_t)load32(col), x13 = (int16x2_t)load32(col + 2);
            int16x2_t y02 = (int16x2_t)load32(col + 4), y13 = (int16x2_t)load32(col + 6);
            uint32_t a = load32(w);
            int16x2_t a02 = __sxtb16((int8x4_t)a), a13 = sxtb16_ror8(a);
            s00 = __smlad(a13, x13, __smlad(a02, x02, s00));
            s10 = __smlad(a13, y13, __smlad(a02, y02, s10));
            a = load32(w + 4);
            a02 = __sxtb16((int8x4_t)a), a13 = sxtb16_ror8(a);
            s01 = __smlad(a13, x13, __smlad(a02, x02, s01));
            s11 = __smlad(a13, y13, __smlad(a02, y02, s11));
            col += 8, w += 8;
        } while (--groups);
    else
        do {
            int16x2_t x02 = (int16x2_t)load32(col), x13 = (int16x2_t)load32(col + 2);
            uint32_t a = load32(w), b = load32(w + 4);
            s00 = __smlad(sxtb16_ror8(a), x13, __smlad(__sxtb16((int8x4_t)a), x02, s00));
            s01 = __smlad(sxtb16_ror8(b), x13, __smlad(__sxtb16((int8x4_t)b), x02, s01));
            col += 8, w += 8;
        } while (--groups);
#else
    for (; groups > 0; groups--, col += 8, w += 8)
        for (int k = 0; k < 4; k++) {
            int32_t x = col[SLOT(k, 0)], y = col[SLOT(k, 1)];
            s00 += w[k] * x;
            s01 += w[4 + k] * x;
            if (pixels == 2) {
                s10 += w[k] * y;
                s11 += w[4 + k] * y;
            }
        }
#endif
    s[0] = s00, s[1] = s01, s[2] = s10, s[3] = s11;
}

static inline int8_t conv_out(const kdk_q8_conv_params *p, int o, int32_t acc)
{
    return clamp8(kdk_q8_requantize(acc, p->mult[o], p->shift[o]) + p->out_zp, p->act_min, p->act_max);
}

/* The two output channels of pair o/2 (the second one o's again when f is odd). */
static void pair_out(const kdk_q8_conv_params *p, int o, const int32_t *s, int8_t *y)
{
    y[o] = conv_out(p, o, s[0]);
    if (o + 1 < p->f) y[o + 1] = conv_out(p, o + 1, s[1]);
}

void kdk_q8_conv2d(const kdk_q8_conv_params *p, const int8_t *x, int8_t *y, int16_t *scratch)
{
    int n = p->ho * p->wo, f = p->f, groups = p->kp / 4;
    for (int i = 0; i < n; i += 2) {   /* two pixels at a time; an odd count's last alone (Dense's one) */
        int pixels = i + 1 < n ? 2 : 1;
        patch(p, x, i, 0, scratch);
        if (pixels == 2) patch(p, x, i + 1, 1, scratch);
        int8_t *y0 = y + (long)i * f;
        for (int o = 0; o < f; o += 2) {
            int o1 = o + 1 < f ? o + 1 : o;
            int32_t s[4] = {p->bias[o], p->bias[o1], p->bias[o], p->bias[o1]};
            dot(scratch, p->weights + (long)o * p->kp, groups, pixels, s);
            pair_out(p, o, s, y0);
            if (pixels == 2) pair_out(p, o, s + 2, y0 + f);
        }
    }
}

void kdk_q8_depthwise_conv2d(const kdk_q8_conv_params *p, const int8_t *x, int8_t *y)
{
    int c = p->c;
    for (int oy = 0; oy < p->ho; oy++)
        for (int ox = 0; ox < p->wo; ox++)
            for (int ch = 0; ch < c; ch++) {
                int32_t acc = p->bias[ch];
                for (int ky = 0; ky < p->kh; ky++) {
                    int iy = oy * p->stride_h - p->pad_top + ky;
                    if (iy < 0 || iy >= p->h) continue;
                    for (int kx = 0; kx < p->kw; kx++) {
                        int ix = ox * p->stride_w - p->pad_left + kx;
                        if (ix < 0 || ix >= p->w) continue;
                        acc += (x[((long)iy * p->w + ix) * c + ch] - p->in_zp) * p->weights[(ky * p->kw + kx) * c + ch];
                    }
                }
                y[((long)oy * p->wo + ox) * c + ch] = conv_out(p, ch, acc);
            }
}

/* ---- pooling ---------------------------------------------------------------------------------- */

/* The window of output (oy, ox) clipped to the input: rows [*y0, *y1), columns [*x0, *x1). */
static void window(const kdk_q8_pool_params *p, int oy, int ox, int *y0, int *y1, int *x0, int *x1)
{
    int iy = oy * p->stride_h - p->pad_top, ix = ox * p->stride_w - p->pad_left;
    *y0 = iy < 0 ? 0 : iy;
    *y1 = iy + p->kh > p->h ? p->h : iy + p->kh;
    *x0 = ix < 0 ? 0 : ix;
    *x1 = ix + p->kw > p->w ? p->w : ix + p->kw;
}

void kdk_q8_maxpool2d(const kdk_q8_pool_params *p, const int8_t *x, int8_t *y)
{
    int c = p->c;
    for (int oy = 0; oy < p->ho; oy++)
        for (int ox = 0; ox < p->wo; ox++) {
            int y0, y1, x0, x1;
            window(p, oy, ox, &y0, &y1, &x0, &x1);
            int8_t *out = y + ((long)oy * p->wo + ox) * c;
            for (int ch = 0; ch < c; ch++) {
                int32_t m = -128;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) {
                        int32_t v = x[((long)iy * p->w + ix) * c + ch];
                        if (v > m) m = v;
                    }
                out[ch] = clamp8(m, p->act_min, p->act_max);
            }
        }
}

void kdk_q8_avgpool2d(const kdk_q8_pool_params *p, const int8_t *x, int8_t *y)
{
    int c = p->c;
    for (int oy = 0; oy < p->ho; oy++)
        for (int ox = 0; ox < p->wo; ox++) {
            int y0, y1, x0, x1;
            window(p, oy, ox, &y0, &y1, &x0, &x1);
            int32_t count = (y1 - y0) * (x1 - x0);
            int8_t *out = y + ((long)oy * p->wo + ox) * c;
            for (int ch = 0; ch < c; ch++) {
                int32_t sum = 0;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) sum += x[((long)iy * p->w + ix) * c + ch];
                int32_t avg = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
                out[ch] = clamp8(avg, p->act_min, p->act_max);
            }
        }
}

/* ---- element-wise ------------------------------------------------------------------------------ */

void kdk_q8_add(const kdk_q8_add_params *p, const int8_t *a, const int8_t *b, int8_t *y)
{
    for (int32_t i = 0; i < p->n; i++) {
        int32_t sa = (int32_t)((uint32_t)(a[i] - p->a_zp) << p->left_shift);
        int32_t sb = (int32_t)((uint32_t)(b[i] - p->b_zp) << p->left_shift);
        int32_t sum = kdk_q8_requantize(sa, p->a_mult, p->a_shift) + kdk_q8_requantize(sb, p->b_mult, p->b_shift);
        y[i] = clamp8(kdk_q8_requantize(sum, p->out_mult, p->out_shift) + p->out_zp, p->act_min, p->act_max);
    }
}

void kdk_q8_clamp_min(const int8_t *x, int8_t *y, int32_t n, int32_t lo)
{
    for (int32_t i = 0; i < n; i++) y[i] = x[i] < lo ? (int8_t)lo : x[i];
}

void kdk_q8_quantize(const float *x, int8_t *q, int32_t n, float inv_scale, int32_t zp)
{
    for (int32_t i = 0; i < n; i++) {
        float v = x[i] * inv_scale;
        v = v >= 0 ? v + 0.5f : v - 0.5f;   /* half away from zero, then truncated */
        int32_t r = v != v ? 0 : v >= 2147483520.0f ? INT32_MAX : v <= -2147483520.0f ? INT32_MIN : (int32_t)v;
        int64_t z = (int64_t)r + zp;
        q[i] = (int8_t)(z < -128 ? -128 : z > 127 ? 127 : z);
    }
}

void kdk_q8_dequantize(const int8_t *q, float *x, int32_t n, float scale, int32_t zp)
{
    for (int32_t i = 0; i < n; i++) x[i] = scale * (float)(q[i] - zp);
}
