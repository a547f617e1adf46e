/* quant_kernels.h — the bodies of runtime/quant.h's convolutions, as
 * always-inline functions. runtime/quant.c wraps them as kdk_q8_conv2d and
 * kdk_q8_depthwise_conv2d (the host's run, parameters read at run time);
 * a model.c of `kdslc compile --quantize int8` calls them once per layer
 * with the layer's `static const` parameters, so the compiler folds the
 * shapes, the loop bounds, the pixel and pooling cases and the bounds
 * checks into constant-shape code for each layer (what codegen/lower_direct.c
 * writes out for fp32). One source for both: the firmware computes what the
 * host computes, bit for bit (tests/test_quant.c checks model.c against
 * the host; tests/test_firmware.c the Cortex-M4's against the host's). */
#ifndef KDSL_QUANT_KERNELS_H
#define KDSL_QUANT_KERNELS_H

#include "quant.h"

#include <stdbool.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
#include <arm_acle.h>
#define KDK_Q8_DSP 1
#endif

static inline int8_t kdk_q8k_clamp8(int32_t v, int32_t lo, int32_t hi)
{
    return (int8_t)(v < lo ? lo : v > hi ? hi : v);
}

/* ---- convolution and Dense ------------------------------------------------------------------- */

/* The two patches of a pixel pair share one buffer, interleaved by groups of
 * four elements: group g holds pixel 0's elements 4g..4g+3, then pixel 1's,
 * each four as x0 x2 x1 x3 — the order SXTB16 takes four int8 apart in
 * ((x0, x2), then (x1, x3)), for the weights as for the input. */

/* Writes patch elements one by one: `at` the group's first slot for this
 * pixel, q the element's place in its four. */
typedef struct kdk_q8k_writer {
    int16_t *at;
    int q;
} kdk_q8k_writer;

KDK_Q8_INLINE void kdk_q8k_put(kdk_q8k_writer *w, int v)
{
    static const unsigned char slot[4] = {0, 2, 1, 3};
    w->at[slot[w->q]] = (int16_t)v;
    if (++w->q == 4) w->q = 0, w->at += 8;
}

#ifdef KDK_Q8_DSP
/* Four int8 at s (any alignment) as (x0 - zp, x2 - zp) and (x1 - zp, x3 - zp): SXTB16, SSUB16. */
KDK_Q8_INLINE void kdk_q8k_widen4(const int8_t *s, uint32_t zp2, uint32_t *lo, uint32_t *hi)
{
    uint32_t v;
    memcpy(&v, s, 4);
    __asm__("sxtb16 %0, %2\n\tsxtb16 %1, %2, ror #8\n\tssub16 %0, %0, %3\n\tssub16 %1, %1, %3"
            : "=&r"(*lo), "=&r"(*hi)
            : "r"(v), "r"(zp2));
}
#endif

/* Output pixel (oy, ox)'s patch as pixel j of the pair, x - in_zp (padding: 0,
 * the real zero), int16: each kernel row's kw * c elements, then zeros up to
 * rowp (quant.h). */
KDK_Q8_INLINE void kdk_q8k_patch(const kdk_q8_conv_params *p, const int8_t *x, int oy, int ox, int j, int16_t *col)
{
    int row = p->kw * p->c, rowp = (row + 3) & ~3, zp = p->in_zp;
    int ix0 = ox * p->stride_w - p->pad_left;
    kdk_q8k_writer w = {col + j * 4, 0};
    for (int ky = 0; ky < p->kh; ky++) {
        int iy = oy * p->stride_h - p->pad_top + ky, e = 0;
        long at = ((long)iy * p->w + ix0) * p->c;   /* the row's elements, contiguous, from x[at] */
        bool row_in = iy >= 0 && iy < p->h;
        if (row_in && ix0 >= 0 && ix0 + p->kw <= p->w) {
            const int8_t *src = x + at;
#ifdef KDK_Q8_DSP
            /* four at a time; past the row's end (to rowp) the elements meet
             * zero weights, but are read only inside the input */
            int n4 = src + rowp <= x + (long)p->h * p->w * p->c ? rowp : row & ~3;
            uint32_t zp2 = ((uint32_t)zp & 0xFFFFu) | ((uint32_t)zp << 16);
            for (; e < n4; e += 4, w.at += 8) kdk_q8k_widen4(src + e, zp2, (uint32_t *)(void *)w.at, (uint32_t *)(void *)(w.at + 2));
#endif
            for (; e < row; e++) kdk_q8k_put(&w, src[e] - zp);
        } else {
            for (int kx = 0; kx < p->kw; kx++) {
                bool in = row_in && ix0 + kx >= 0 && ix0 + kx < p->w;
                for (int ci = 0; ci < p->c; ci++, e++) kdk_q8k_put(&w, in ? x[at + e] - zp : 0);
            }
        }
        for (; e < rowp; e++) kdk_q8k_put(&w, 0);
    }
}

#ifdef KDK_Q8_DSP
/* Both patches of pixels (oy, ox) and (oy, ox + 1) when every tap of both
 * is inside the input (the common case): row by row, four elements of each
 * pixel a step, no bounds per element. false (nothing written) otherwise.
 * Past a row's end (to rowp) the elements meet zero weights, but are read
 * only inside the input. */
KDK_Q8_INLINE bool kdk_q8k_patch2_inside(const kdk_q8_conv_params *p, const int8_t *x, int oy, int ox, int16_t *col)
{
    int c = p->c, rowp = (p->kw * c + 3) & ~3;
    int iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
    if (ox + 1 >= p->wo || iy0 < 0 || iy0 + p->kh > p->h || ix0 < 0 || ix0 + p->stride_w + p->kw > p->w) return false;
    long rs = (long)p->w * c;
    const int8_t *s0 = x + iy0 * rs + (long)ix0 * c, *s1 = s0 + (long)p->stride_w * c;
    /* the last row's reads past its end (to rowp) stay inside the input: true
     * but for the bottom-right corner, which the general patch then takes */
    if ((long)(iy0 + p->kh - 1) * rs + (long)(ix0 + p->stride_w) * c + rowp > (long)p->h * rs) return false;
    uint32_t zp2 = ((uint32_t)p->in_zp & 0xFFFFu) | ((uint32_t)p->in_zp << 16);
    uint32_t *d = (uint32_t *)(void *)col;
    for (int ky = 0; ky < p->kh; ky++, s0 += rs, s1 += rs)
        for (int e = 0; e < rowp; e += 4, d += 4) {
            kdk_q8k_widen4(s0 + e, zp2, &d[0], &d[1]);
            kdk_q8k_widen4(s1 + e, zp2, &d[2], &d[3]);
        }
    return true;
}
#else
KDK_Q8_INLINE bool kdk_q8k_patch2_inside(const kdk_q8_conv_params *p, const int8_t *x, int oy, int ox, int16_t *col)
{
    (void)p, (void)x, (void)oy, (void)ox, (void)col;
    return false;
}
#endif

/* The patches of pixels (oy, ox) and (oy1, ox1) (pixels = 2) or of the first alone. */
KDK_Q8_INLINE void kdk_q8k_patches(const kdk_q8_conv_params *p, const int8_t *x, int oy, int ox, int oy1, int ox1,
                                   int pixels, int16_t *col)
{
    if (pixels == 2 && oy1 == oy && kdk_q8k_patch2_inside(p, x, oy, ox, col)) return;
    kdk_q8k_patch(p, x, oy, ox, 0, col);
    if (pixels == 2) kdk_q8k_patch(p, x, oy1, ox1, 1, col);
}

#ifdef KDK_Q8_DSP
/* A group (four elements of each patch, of each of two filters) in
 * assembly, for both pixels of the pair or the first: GCC's register
 * allocation spills the sums at -Os; 15 instructions for 16 multiply-adds
 * (8 SMLAD), or 10 for 8. In products' scope: the sums s00, s01 (pixel 0,
 * filters o and o + 1), s10, s11 (pixel 1), the patch c and the weights wp
 * (both advanced), and the temporaries. */
#define KDK_Q8K_GROUP2 \
    __asm__("ldrd %[x01], %[x23], [%[c]], #8\n\t" \
    "ldrd %[y01], %[y23], [%[c]], #8\n\t" \
    "ldrd %[a], %[b], [%[w]], #8\n\t" \
    "sxtb16 %[t], %[a]\n\t" \
    "smlad %[s00], %[t], %[x01], %[s00]\n\t" \
    "smlad %[s10], %[t], %[y01], %[s10]\n\t" \
    "sxtb16 %[a], %[a], ror #8\n\t" \
    "smlad %[s00], %[a], %[x23], %[s00]\n\t" \
    "smlad %[s10], %[a], %[y23], %[s10]\n\t" \
    "sxtb16 %[t], %[b]\n\t" \
    "smlad %[s01], %[t], %[x01], %[s01]\n\t" \
    "smlad %[s11], %[t], %[y01], %[s11]\n\t" \
    "sxtb16 %[b], %[b], ror #8\n\t" \
    "smlad %[s01], %[b], %[x23], %[s01]\n\t" \
    "smlad %[s11], %[b], %[y23], %[s11]" \
    : [s00] "+r"(s00), [s01] "+r"(s01), [s10] "+r"(s10), [s11] "+r"(s11), [c] "+r"(c), \
    [w] "+r"(wp), [x01] "=&r"(x01), [x23] "=&r"(x23), [y01] "=&r"(y01), [y23] "=&r"(y23), \
    [a] "=&r"(a), [b] "=&r"(b), [t] "=&r"(t) \
    : \
    : "memory")

#define KDK_Q8K_GROUP1 \
    __asm__("ldrd %[x01], %[x23], [%[c]], #16\n\t" \
    "ldrd %[a], %[b], [%[w]], #8\n\t" \
    "sxtb16 %[t], %[a]\n\t" \
    "smlad %[s00], %[t], %[x01], %[s00]\n\t" \
    "sxtb16 %[a], %[a], ror #8\n\t" \
    "smlad %[s00], %[a], %[x23], %[s00]\n\t" \
    "sxtb16 %[t], %[b]\n\t" \
    "smlad %[s01], %[t], %[x01], %[s01]\n\t" \
    "sxtb16 %[b], %[b], ror #8\n\t" \
    "smlad %[s01], %[b], %[x23], %[s01]" \
    : [s00] "+r"(s00), [s01] "+r"(s01), [c] "+r"(c), [w] "+r"(wp), [x01] "=&r"(x01), \
    [x23] "=&r"(x23), [a] "=&r"(a), [b] "=&r"(b), [t] "=&r"(t) \
    : \
    : "memory")

/* The groups of a filter pair: a constant count of up to 32 (a
 * constant-shape layer's) written out one after the other, more four a
 * loop step (the loop's increment, compare and branch paid once for 60
 * instructions), then the rest. */
#define KDK_Q8K_GROUPS(GROUP) \
    do { \
        if (groups <= 32) { \
            _Pragma("GCC unroll 32") for (int g = 0; g < groups; g++) GROUP; \
        } else { \
            int g = 0; \
            for (; g + 4 <= groups; g += 4) { \
                _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) GROUP; \
            } \
            for (; g < groups; g++) GROUP; \
        } \
    } while (0)
#endif

enum { KDK_Q8K_KEEP, KDK_Q8K_MAX_FIRST, KDK_Q8K_MAX_MORE };

/* KEEP: acc[j * fe + o] = bias[o] + patch j . filter o for every filter o < fe (f
 * rounded up to even; the pad filter's sums are not used), for both patches
 * of col (pixels = 2) or the first. A pair's weights per group of four: four
 * of filter o, then four of filter o + 1, so that SXTB16 gives (w0, w2) and
 * SXTB16 of the word rotated by 8 (w1, w3), the order of the patch's int16
 * pairs. MAX_FIRST: acc[o] = the larger of the two pixels' sums (pixels = 2);
 * MAX_MORE: the largest of those and acc[o]. */
KDK_Q8_INLINE void kdk_q8k_products(const kdk_q8_conv_params *p, const int16_t *col, int pixels, int32_t *acc, int mode)
{
    int f = p->f, fe = (f + 1) & ~1, groups = p->kp / 4;
    const int8_t *w = p->weights;
    /* a layer of few filters (the first, on the image) has them written out:
     * their biases and sums at constant places */
#pragma GCC unroll 4
    for (int o = 0; o < fe; o += 2) {
        int32_t s00 = p->bias[o], s01 = o + 1 < f ? p->bias[o + 1] : 0, s10 = s00, s11 = s01;
        const int16_t *c = col;
#ifdef KDK_Q8_DSP
        const int8_t *wp = w;
        uint32_t x01, x23, y01, y23, a, b, t;
        if (pixels == 2) KDK_Q8K_GROUPS(KDK_Q8K_GROUP2);
        else KDK_Q8K_GROUPS(KDK_Q8K_GROUP1);
        w += groups * 8;
#else
        static const int order[4] = {0, 2, 1, 3};   /* where element k & 3 sits in the patch's four */
        for (int g = groups; g > 0; g--, c += 8, w += 8)
            for (int k = 0; k < 4; k++) {
                int32_t x = c[order[k]], y = c[4 + order[k]], a = w[k], b = w[4 + k];
                s00 += a * x, s01 += b * x;
                if (pixels == 2) s10 += a * y, s11 += b * y;
            }
#endif
        if (mode == KDK_Q8K_KEEP) {
            acc[o] = s00, acc[o + 1] = s01, acc[fe + o] = s10, acc[fe + o + 1] = s11;
            continue;
        }
        int32_t m0 = s00 > s10 ? s00 : s10, m1 = s01 > s11 ? s01 : s11;   /* the pooling's max */
        if (mode == KDK_Q8K_MAX_MORE) {
            m0 = m0 > acc[o] ? m0 : acc[o];
            m1 = m1 > acc[o + 1] ? m1 : acc[o + 1];
        }
        acc[o] = m0, acc[o + 1] = m1;
    }
}

KDK_Q8_INLINE int8_t kdk_q8k_out(const kdk_q8_conv_params *p, int o, int32_t acc)
{
    int32_t shift = p->same_shift ? p->shift[0] : p->shift[o];
    return kdk_q8k_clamp8(kdk_q8_requantize(acc, p->mult[o], shift) + p->out_zp, p->act_min, p->act_max);
}

/* kdk_q8_conv2d (quant.h). */
KDK_Q8_INLINE void kdk_q8_conv2d_body(const kdk_q8_conv_params *p, const int8_t *x, int8_t *y, int16_t *scratch)
{
    int n = p->ho * p->wo, f = p->f, fe = (f + 1) & ~1;
    int32_t *acc = (int32_t *)(void *)(scratch + 2 * p->kp);
    if (!p->pool) {
        /* two pixels at a time, (oy, ox) and (oy1, ox1); an odd count's last alone (Dense's one) */
        for (int i = 0, oy = 0, ox = 0; i < n; i += 2) {
            int pixels = i + 1 < n ? 2 : 1, oy1 = ox + 1 < p->wo ? oy : oy + 1, ox1 = ox + 1 < p->wo ? ox + 1 : 0;
            kdk_q8k_patches(p, x, oy, ox, oy1, ox1, pixels, scratch);
            if (pixels == 2) kdk_q8k_products(p, scratch, 2, acc, KDK_Q8K_KEEP);
            else kdk_q8k_products(p, scratch, 1, acc, KDK_Q8K_KEEP);
            for (int j = 0; j < pixels; j++)
                for (int o = 0; o < f; o++) y[(long)(i + j) * f + o] = kdk_q8k_out(p, o, acc[j * fe + o]);
            oy = ox1 + 1 < p->wo ? oy1 : oy1 + 1, ox = ox1 + 1 < p->wo ? ox1 + 1 : 0;
        }
        return;
    }
    /* 2x2 max pooling: the max of the four sums, then one requantization
     * (requantization and clamp never decrease, so this is the max of the
     * four requantized outputs) */
    int ph = p->ho / 2, pw = p->wo / 2;
    int8_t *out = y;
    for (int py = 0; py < ph; py++)
        for (int px = 0; px < pw; px++, out += f) {
            kdk_q8k_patches(p, x, 2 * py, 2 * px, 2 * py, 2 * px + 1, 2, scratch);
            kdk_q8k_products(p, scratch, 2, acc, KDK_Q8K_MAX_FIRST);
            kdk_q8k_patches(p, x, 2 * py + 1, 2 * px, 2 * py + 1, 2 * px + 1, 2, scratch);
            kdk_q8k_products(p, scratch, 2, acc, KDK_Q8K_MAX_MORE);
            for (int o = 0; o < f; o++) out[o] = kdk_q8k_out(p, o, acc[o]);
        }
}

/* A Dense layer whose int32 sums are the model's output (its logits): each
 * sum times scale[o] (input scale x channel o's weight scale) as a float,
 * no int8 in between. */
KDK_Q8_INLINE void kdk_q8_dense_float_body(const kdk_q8_conv_params *p, const int8_t *x, float *y, const float *scale,
                                           int16_t *scratch)
{
    int32_t *acc = (int32_t *)(void *)(scratch + 2 * p->kp);
    kdk_q8k_patches(p, x, 0, 0, 0, 0, 1, scratch);
    kdk_q8k_products(p, scratch, 1, acc, KDK_Q8K_KEEP);
    for (int o = 0; o < p->f; o++) y[o] = scale[o] * (float)acc[o];
}

/* One output of a depthwise convolution, channel ch of the pixel whose
 * window starts at input row iy0, column ix0, over the taps [ky0, ky1) x
 * [kx0, kx1) inside the input. */
KDK_Q8_INLINE int32_t kdk_q8k_dw_one(const kdk_q8_conv_params *p, const int8_t *x, int iy0, int ix0, int ky0, int ky1,
                                     int kx0, int kx1, int ch)
{
    int32_t acc = p->bias[ch];
    for (int ky = ky0; ky < ky1; ky++)
        for (int kx = kx0; kx < kx1; kx++)
            acc += (x[((long)(iy0 + ky) * p->w + ix0 + kx) * p->c + ch] - p->in_zp) * p->weights[(ky * p->kw + kx) * p->c + ch];
    return acc;
}

#ifdef KDK_Q8_DSP
/* Four channels ch..ch + 3 of the same output, one word of inputs and one
 * of weights a tap: SXTB16 splits each into (0, 2) and (1, 3), SSUB16 takes
 * the zero point off the inputs, and SMLABB / SMLATT add each channel's
 * product to its sum: 12 instructions for 4 multiply-adds. */
KDK_Q8_INLINE void kdk_q8k_dw_four(const kdk_q8_conv_params *p, const int8_t *x, int iy0, int ix0, int ky0, int ky1,
                                   int kx0, int kx1, int ch, int32_t *acc)
{
    uint32_t zp2 = ((uint32_t)p->in_zp & 0xFFFFu) | ((uint32_t)p->in_zp << 16);
    int32_t a0 = p->bias[ch], a1 = p->bias[ch + 1], a2 = p->bias[ch + 2], a3 = p->bias[ch + 3];
#pragma GCC unroll 3
    for (int ky = ky0; ky < ky1; ky++)
#pragma GCC unroll 3
        for (int kx = kx0; kx < kx1; kx++) {
            uint32_t x02, x13, wv, w02, w13;
            kdk_q8k_widen4(x + ((long)(iy0 + ky) * p->w + ix0 + kx) * p->c + ch, zp2, &x02, &x13);
            memcpy(&wv, p->weights + (ky * p->kw + kx) * p->c + ch, 4);
            __asm__("sxtb16 %0, %2\n\tsxtb16 %1, %2, ror #8" : "=&r"(w02), "=&r"(w13) : "r"(wv));
            a0 = __smlabb((int32_t)x02, (int32_t)w02, a0);
            a2 = __smlatt((int32_t)x02, (int32_t)w02, a2);
            a1 = __smlabb((int32_t)x13, (int32_t)w13, a1);
            a3 = __smlatt((int32_t)x13, (int32_t)w13, a3);
        }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}
#endif

/* The outputs of pixel (oy, ox), every channel, over the taps [ky0, ky1) x [kx0, kx1). */
KDK_Q8_INLINE void kdk_q8k_dw_pixel(const kdk_q8_conv_params *p, const int8_t *x, int8_t *y, int oy, int ox, int ky0,
                                    int ky1, int kx0, int kx1)
{
    int c = p->c, iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left, ch = 0;
    int8_t *out = y + ((long)oy * p->wo + ox) * c;
#ifdef KDK_Q8_DSP
    for (; ch + 4 <= c; ch += 4) {
        int32_t acc[4];
        kdk_q8k_dw_four(p, x, iy0, ix0, ky0, ky1, kx0, kx1, ch, acc);
        for (int k = 0; k < 4; k++) out[ch + k] = kdk_q8k_out(p, ch + k, acc[k]);
    }
#endif
    for (; ch < c; ch++) out[ch] = kdk_q8k_out(p, ch, kdk_q8k_dw_one(p, x, iy0, ix0, ky0, ky1, kx0, kx1, ch));
}

/* kdk_q8_depthwise_conv2d (quant.h): the window clipped to the input once
 * a pixel; the pixels whose window is all inside take the constant-bounds
 * case (in a constant-shape layer, its taps written out). */
KDK_Q8_INLINE void kdk_q8_depthwise_conv2d_body(const kdk_q8_conv_params *p, const int8_t *x, int8_t *y)
{
    for (int oy = 0; oy < p->ho; oy++) {
        int iy0 = oy * p->stride_h - p->pad_top;
        int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = iy0 + p->kh > p->h ? p->h - iy0 : p->kh;
        for (int ox = 0; ox < p->wo; ox++) {
            int ix0 = ox * p->stride_w - p->pad_left;
            int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = ix0 + p->kw > p->w ? p->w - ix0 : p->kw;
            if (ky0 == 0 && ky1 == p->kh && kx0 == 0 && kx1 == p->kw) kdk_q8k_dw_pixel(p, x, y, oy, ox, 0, p->kh, 0, p->kw);
            else kdk_q8k_dw_pixel(p, x, y, oy, ox, ky0, ky1, kx0, kx1);
        }
    }
}

/* ---- element-wise -------------------------------------------------------------------------- */

/* kdk_q8_add (quant.h); a model.c's on its constant parameters folds the
 * three multipliers and shifts. */
KDK_Q8_INLINE void kdk_q8_add_body(const kdk_q8_add_params *p, const int8_t *a, const int8_t *b, int8_t *y)
{
    for (int32_t i = 0; i < p->n; i++) {
        int32_t sa = (int32_t)((uint32_t)(a[i] - p->a_zp) << p->left_shift);
        int32_t sb = (int32_t)((uint32_t)(b[i] - p->b_zp) << p->left_shift);
        int32_t sum = kdk_q8_requantize(sa, p->a_mult, p->a_shift) + kdk_q8_requantize(sb, p->b_mult, p->b_shift);
        y[i] = kdk_q8k_clamp8(kdk_q8_requantize(sum, p->out_mult, p->out_shift) + p->out_zp, p->act_min, p->act_max);
    }
}

#endif
