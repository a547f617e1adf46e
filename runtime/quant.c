/* quant.c — the int8 kernels (quant.h): TFLite's integer arithmetic, with
 * the Cortex-M4's SIMD multiply-adds where the compiler targets them. */
#include "quant.h"

#include <stdbool.h>
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
#define ALWAYS_INLINE __attribute__((always_inline))
#else
#define NOINLINE
#define ALWAYS_INLINE
#endif

static inline int8_t clamp8(int32_t v, int32_t lo, int32_t hi)
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
typedef struct writer {
    int16_t *at;
    int q;
} writer;

static inline ALWAYS_INLINE void put(writer *w, int v)
{
    static const unsigned char slot[4] = {0, 2, 1, 3};
    w->at[slot[w->q]] = (int16_t)v;
    if (++w->q == 4) w->q = 0, w->at += 8;
}

/* Output pixel i's patch as pixel j of the pair, x - in_zp (padding: 0, the
 * real zero), int16: each kernel row's kw * c elements, then zeros up to
 * rowp (quant.h). */
static void patch(const kdk_q8_conv_params *p, const int8_t *x, int i, int j, int16_t *col)
{
    int oy = i / p->wo, ox = i % p->wo, row = p->kw * p->c, rowp = (row + 3) & ~3, zp = p->in_zp;
    int ix0 = ox * p->stride_w - p->pad_left;
    writer w = {col + j * 4, 0};
    for (int ky = 0; ky < p->kh; ky++) {
        int iy = oy * p->stride_h - p->pad_top + ky, e = 0;
        const int8_t *src = x + ((long)iy * p->w + ix0) * p->c;   /* the row's elements, contiguous */
        bool row_in = iy >= 0 && iy < p->h;
        if (row_in && ix0 >= 0 && ix0 + p->kw <= p->w) {
#ifdef KDK_Q8_DSP
            /* four at a time: one load, two SXTB16, two SSUB16; past the row's
             * end (to rowp) the elements meet zero weights, but are read only
             * inside the input */
            int n4 = src + rowp <= x + (long)p->h * p->w * p->c ? rowp : row & ~3;
            uint32_t zp2 = ((uint32_t)zp & 0xFFFFu) | ((uint32_t)zp << 16);
            for (; e < n4; e += 4, w.at += 8) {
                uint32_t v, lo, hi;
                memcpy(&v, src + e, 4);
                __asm__("sxtb16 %0, %2\n\tsxtb16 %1, %2, ror #8\n\tssub16 %0, %0, %3\n\tssub16 %1, %1, %3"
                        : "=&r"(lo), "=&r"(hi)
                        : "r"(v), "r"(zp2));
                memcpy(w.at, &lo, 4);
                memcpy(w.at + 2, &hi, 4);
            }
#endif
            for (; e < row; e++) put(&w, src[e] - zp);
        } else {
            for (int kx = 0; kx < p->kw; kx++) {
                bool in = row_in && ix0 + kx >= 0 && ix0 + kx < p->w;
                for (int ci = 0; ci < p->c; ci++, e++) put(&w, in ? src[e] - zp : 0);
            }
        }
        for (; e < rowp; e++) put(&w, 0);
    }
}

#ifdef KDK_Q8_DSP
/* Both patches of pixels i and i + 1 when they sit side by side with every
 * tap inside the input (the common case): row by row, four elements of each
 * pixel a step (SXTB16, SSUB16), no bounds per element. false (nothing
 * written) otherwise. Past a row's end (to rowp) the elements meet zero
 * weights, but are read only inside the input. */
static bool patch2_inside(const kdk_q8_conv_params *p, const int8_t *x, int i, int16_t *col)
{
    int oy = i / p->wo, ox = i % p->wo, c = p->c, rowp = (p->kw * c + 3) & ~3;
    int iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
    if (ox + 1 >= p->wo || iy0 < 0 || iy0 + p->kh > p->h || ix0 < 0 || ix0 + p->stride_w + p->kw > p->w) return false;
    long rs = (long)p->w * c;
    const int8_t *s0 = x + iy0 * rs + (long)ix0 * c, *s1 = s0 + (long)p->stride_w * c;
    if (s1 + (p->kh - 1) * rs + rowp > x + (long)p->h * rs) return false;
    uint32_t zp2 = ((uint32_t)p->in_zp & 0xFFFFu) | ((uint32_t)p->in_zp << 16);
    uint32_t *d = (uint32_t *)(void *)col;
    for (int ky = 0; ky < p->kh; ky++, s0 += rs, s1 += rs)
        for (int e = 0; e < rowp; e += 4, d += 4) {
            uint32_t a, b, a02, a13, b02, b13;
            memcpy(&a, s0 + e, 4);
            memcpy(&b, s1 + e, 4);
            __asm__("sxtb16 %0, %4\n\tsxtb16 %1, %4, ror #8\n\tsxtb16 %2, %5\n\tsxtb16 %3, %5, ror #8\n\t"
                    "ssub16 %0, %0, %6\n\tssub16 %1, %1, %6\n\tssub16 %2, %2, %6\n\tssub16 %3, %3, %6"
                    : "=&r"(a02), "=&r"(a13), "=&r"(b02), "=&r"(b13)
                    : "r"(a), "r"(b), "r"(zp2));
            d[0] = a02, d[1] = a13, d[2] = b02, d[3] = b13;
        }
    return true;
}
#else
static bool patch2_inside(const kdk_q8_conv_params *p, const int8_t *x, int i, int16_t *col)
{
    (void)p, (void)x, (void)i, (void)col;
    return false;
}
#endif

/* The patches of pixels i and i + 1 (pixels = 2) or of i alone. */
static void patches(const kdk_q8_conv_params *p, const int8_t *x, int i, int pixels, int16_t *col)
{
    if (pixels == 2 && patch2_inside(p, x, i, col)) return;
    patch(p, x, i, 0, col);
    if (pixels == 2) patch(p, x, i + 1, 1, col);
}

enum { KEEP, MAX_FIRST, MAX_MORE };

/* KEEP: acc[j * fe + o] = bias[o] + patch j . filter o for every filter o < fe (f
 * rounded up to even; the pad filter's sums are not used), for both patches
 * of col (pixels = 2) or the first. A pair's weights per group of four: four
 * of filter o, then four of filter o + 1, so that SXTB16 gives (w0, w2) and
 * SXTB16 of the word rotated by 8 (w1, w3), the order of the patch's int16
 * pairs. MAX_FIRST: acc[o] = the larger of the two pixels' sums (pixels = 2);
 * MAX_MORE: the largest of those and acc[o]. */
NOINLINE static void products(const kdk_q8_conv_params *p, const int16_t *col, int pixels, int32_t *acc, int mode)
{
    int f = p->f, fe = (f + 1) & ~1, groups = p->kp / 4;
    const int8_t *w = p->weights;
    for (int o = 0; o < fe; o += 2) {
        int32_t s00 = p->bias[o], s01 = o + 1 < f ? p->bias[o + 1] : 0, s10 = s00, s11 = s01;
        const int16_t *c = col;
#ifdef KDK_Q8_DSP
        /* in assembly: GCC's register allocation spills the sums at -Os; here
         * each group is 17 instructions for 16 multiply-adds (8 of them SMLAD) */
        const int8_t *wp = w;
        int g = groups;
        uint32_t x01, x23, y01, y23, a, b, t;
        if (pixels == 2)
            __asm__ volatile("1:\n\t"
                             "ldrd %[x01], %[x23], [%[c]], #8\n\t"
                             "ldrd %[y01], %[y23], [%[c]], #8\n\t"
                             "ldrd %[a], %[b], [%[w]], #8\n\t"
                             "sxtb16 %[t], %[a]\n\t"
                             "smlad %[s00], %[t], %[x01], %[s00]\n\t"
                             "smlad %[s10], %[t], %[y01], %[s10]\n\t"
                             "sxtb16 %[a], %[a], ror #8\n\t"
                             "smlad %[s00], %[a], %[x23], %[s00]\n\t"
                             "smlad %[s10], %[a], %[y23], %[s10]\n\t"
                             "sxtb16 %[t], %[b]\n\t"
                             "smlad %[s01], %[t], %[x01], %[s01]\n\t"
                             "smlad %[s11], %[t], %[y01], %[s11]\n\t"
                             "sxtb16 %[b], %[b], ror #8\n\t"
                             "smlad %[s01], %[b], %[x23], %[s01]\n\t"
                             "smlad %[s11], %[b], %[y23], %[s11]\n\t"
                             "subs %[g], %[g], #1\n\t"
                             "bne 1b"
                             : [s00] "+r"(s00), [s01] "+r"(s01), [s10] "+r"(s10), [s11] "+r"(s11), [c] "+r"(c),
                               [w] "+r"(wp), [g] "+r"(g), [x01] "=&r"(x01), [x23] "=&r"(x23), [y01] "=&r"(y01),
                               [y23] "=&r"(y23), [a] "=&r"(a), [b] "=&r"(b), [t] "=&r"(t)
                             :
                             : "cc", "memory");
        else
            __asm__ volatile("1:\n\t"
                             "ldrd %[x01], %[x23], [%[c]], #16\n\t"
                             "ldrd %[a], %[b], [%[w]], #8\n\t"
                             "sxtb16 %[t], %[a]\n\t"
                             "smlad %[s00], %[t], %[x01], %[s00]\n\t"
                             "sxtb16 %[a], %[a], ror #8\n\t"
                             "smlad %[s00], %[a], %[x23], %[s00]\n\t"
                             "sxtb16 %[t], %[b]\n\t"
                             "smlad %[s01], %[t], %[x01], %[s01]\n\t"
                             "sxtb16 %[b], %[b], ror #8\n\t"
                             "smlad %[s01], %[b], %[x23], %[s01]\n\t"
                             "subs %[g], %[g], #1\n\t"
                             "bne 1b"
                             : [s00] "+r"(s00), [s01] "+r"(s01), [c] "+r"(c), [w] "+r"(wp), [g] "+r"(g),
                               [x01] "=&r"(x01), [x23] "=&r"(x23), [a] "=&r"(a), [b] "=&r"(b), [t] "=&r"(t)
                             :
                             : "cc", "memory");
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
        if (mode == KEEP) {
            acc[o] = s00, acc[o + 1] = s01, acc[fe + o] = s10, acc[fe + o + 1] = s11;
            continue;
        }
        int32_t m0 = s00 > s10 ? s00 : s10, m1 = s01 > s11 ? s01 : s11;   /* the pooling's max */
        if (mode == MAX_MORE) {
            m0 = m0 > acc[o] ? m0 : acc[o];
            m1 = m1 > acc[o + 1] ? m1 : acc[o + 1];
        }
        acc[o] = m0, acc[o + 1] = m1;
    }
}

static inline ALWAYS_INLINE int8_t conv_out(const kdk_q8_conv_params *p, int o, int32_t acc)
{
    return clamp8(kdk_q8_requantize(acc, p->mult[o], p->shift[o]) + p->out_zp, p->act_min, p->act_max);
}

void kdk_q8_conv2d(const kdk_q8_conv_params *p, const int8_t *x, int8_t *y, int16_t *scratch)
{
    int n = p->ho * p->wo, f = p->f, fe = (f + 1) & ~1;
    int32_t *acc = (int32_t *)(void *)(scratch + 2 * p->kp);
    if (!p->pool) {
        for (int i = 0; i < n; i += 2) {   /* two pixels at a time; an odd count's last alone (Dense's one) */
            int pixels = i + 1 < n ? 2 : 1;
            patches(p, x, i, pixels, scratch);
            products(p, scratch, pixels, acc, KEEP);
            for (int j = 0; j < pixels; j++)
                for (int o = 0; o < f; o++) y[(long)(i + j) * f + o] = conv_out(p, o, acc[j * fe + o]);
        }
        return;
    }
    /* 2x2 max pooling: the max of the four sums, then one requantization
     * (requantization and clamp never decrease, so this is the max of the
     * four requantized outputs) */
    int ph = p->ho / 2, pw = p->wo / 2;
    for (int py = 0; py < ph; py++)
        for (int px = 0; px < pw; px++) {
            for (int r = 0; r < 2; r++) {
                int i = (2 * py + r) * p->wo + 2 * px;
                patches(p, x, i, 2, scratch);
                products(p, scratch, 2, acc, r ? MAX_MORE : MAX_FIRST);
            }
            int8_t *out = y + ((long)py * pw + px) * f;
            for (int o = 0; o < f; o++) out[o] = conv_out(p, o, acc[o]);
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

/* Max (max = true) or average over each window, clipped to the input. */
static void pool(const kdk_q8_pool_params *p, const int8_t *x, int8_t *y, bool max)
{
    int c = p->c;
    for (int oy = 0; oy < p->ho; oy++)
        for (int ox = 0; ox < p->wo; ox++) {
            int y0, y1, x0, x1;
            window(p, oy, ox, &y0, &y1, &x0, &x1);
            int32_t count = (y1 - y0) * (x1 - x0);
            int8_t *out = y + ((long)oy * p->wo + ox) * c;
            for (int ch = 0; ch < c; ch++) {
                int32_t m = -128, sum = 0;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) {
                        int32_t v = x[((long)iy * p->w + ix) * c + ch];
                        m = v > m ? v : m;
                        sum += v;
                    }
                int32_t avg = count == 0 ? 0 : sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
                out[ch] = clamp8(max ? m : avg, p->act_min, p->act_max);
            }
        }
}

void kdk_q8_maxpool2d(const kdk_q8_pool_params *p, const int8_t *x, int8_t *y) { pool(p, x, y, true); }

void kdk_q8_avgpool2d(const kdk_q8_pool_params *p, const int8_t *x, int8_t *y) { pool(p, x, y, false); }

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
