/* pool_tmpl.h — NHWC pooling for one element type.
 *
 * pool.c includes this file in two modes:
 *   - with KVB defined (vector bytes), KV(x) and KTGT (a target attribute,
 *     maybe empty): the max-pool kernels of one instruction set for windows
 *     that tile the image (stride = window, no padding, e.g. 2×2 / 2);
 *   - without KVB: the entry points for one element type (KT, KTI, KS, KP(x)).
 * Channels are innermost, so every loop runs along c a vector at a time. */
#ifdef KVB

#include "isa_vectors.h"
typedef int32_t KV(i32vec) __attribute__((vector_size(KVB / sizeof(KT) * 4)));

KINL VI KV(lanes)(void)
{
    VI v;
    for (int l = 0; l < VL; l++) v[l] = l;
    return v;
}

KINL void KV(st_idx)(int32_t *p, VI v)
{
    KV(i32vec) n = __builtin_convertvector(v, KV(i32vec));
    memcpy(p, &n, sizeof n);
}

KINL VI KV(ld_idx)(const int32_t *p)
{
    KV(i32vec) n;
    memcpy(&n, p, sizeof n);
    return __builtin_convertvector(n, VI);
}

/* The lanes where v beats the best so far b: greater, or NaN over a number. */
KINL VI KV(wins)(V v, V b) { return (v > b) | ((v != v) & (b == b)); }

/* The winner of one window for VL channels: value and element index
 * (iy*w + ix)*c + ch; greater wins, NaN beats a number, the first in window
 * order wins ties.  p: the window's first element; e0: its index. */
KINL void KV(win_max)(const KT *p, int e0, int kh, int kw, ptrdiff_t rs, int c, VI lane, V *best,
                      VI *at)
{
    V b = KV(ld)(p);
    VI a = lane + e0;
    for (int ky = 0; ky < kh; ky++)
        for (int kx = ky ? 0 : 1; kx < kw; kx++) {
            int off = (int)(ky * rs) + kx * c;
            V v = KV(ld)(p + off);
            VI win = KV(wins)(v, b);
            b = (V)(((VI)v & win) | ((VI)b & ~win));
            a = ((lane + (e0 + off)) & win) | (a & ~win);
        }
    *best = b;
    *at = a;
}

/* The winner's value alone: win_max without the indices (inference, where
 * nobody reads argmax), the same choice and so the same bits. */
KINL V KV(win_max_value)(const KT *p, int kh, int kw, ptrdiff_t rs, int c)
{
    V b = KV(ld)(p);
    for (int ky = 0; ky < kh; ky++)
        for (int kx = ky ? 0 : 1; kx < kw; kx++) {
            V v = KV(ld)(p + (int)(ky * rs) + kx * c);
            VI win = KV(wins)(v, b);
            b = (V)(((VI)v & win) | ((VI)b & ~win));
        }
    return b;
}

/* Forward: y and, if argmax, the winners.  Only for whole vectors of
 * channels: returns 0 (and does nothing) otherwise. */
KTGT static int KV(maxpool_fwd)(KDK_POOL_GEOM_PARAMS, const KT *x, KT *y, int32_t *argmax)
{
    (void)sh, (void)sw, (void)pt, (void)pl;
    int cv = c / VL * VL;
    ptrdiff_t rs = (ptrdiff_t)w * c;
    VI lane = KV(lanes)();
    if (cv != c) return 0;
    for (int b = 0; b < n; b++) {
        const KT *img = x + (ptrdiff_t)b * h * w * c;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                int e0 = (oy * kh * w + ox * kw) * c;
                ptrdiff_t o = (((ptrdiff_t)b * oh + oy) * ow + ox) * c;
                if (!argmax) {
                    for (int j = 0; j < cv; j += VL) KV(st)(y + o + j, KV(win_max_value)(img + e0 + j, kh, kw, rs, c));
                    continue;
                }
                for (int j = 0; j < cv; j += VL) {
                    V best;
                    VI at;
                    KV(win_max)(img + e0 + j, e0 + j, kh, kw, rs, c, lane, &best, &at);
                    KV(st)(y + o + j, best);
                    KV(st_idx)(argmax + o + j, at);
                }
            }
    }
    return cv;
}

/* Backward: dx (+)= dy where the window's winner is (from argmax, or
 * recomputed from x), 0 elsewhere; rows and columns past the last window
 * get 0 (or keep dx).  Each dx element is written once: no clearing pass.
 * Only for whole vectors of channels: returns 0 (and does nothing) otherwise. */
KTGT static int KV(maxpool_bwd)(KDK_POOL_GEOM_PARAMS, const KT *x, const int32_t *argmax,
                                const KT *dy, KT *dx, int accumulate)
{
    (void)sh, (void)sw, (void)pt, (void)pl;
    int cv = c / VL * VL;
    ptrdiff_t rs = (ptrdiff_t)w * c;
    VI lane = KV(lanes)();
    V zero = {0};
    if (cv != c) return 0;
    for (int b = 0; b < n; b++) {
        const KT *img = x ? x + (ptrdiff_t)b * h * w * c : NULL;
        KT *dimg = dx + (ptrdiff_t)b * h * w * c;
        for (int oy = 0; oy < oh; oy++) {
            for (int ox = 0; ox < ow; ox++) {
                int e0 = (oy * kh * w + ox * kw) * c;
                ptrdiff_t o = (((ptrdiff_t)b * oh + oy) * ow + ox) * c;
                for (int j = 0; j < cv; j += VL) {
                    VI at;
                    if (argmax) {
                        at = KV(ld_idx)(argmax + o + j);
                    } else {
                        V best;
                        KV(win_max)(img + e0 + j, e0 + j, kh, kw, rs, c, lane, &best, &at);
                    }
                    V g = KV(ld)(dy + o + j);
                    for (int ky = 0; ky < kh; ky++)
                        for (int kx = 0; kx < kw; kx++) {
                            int e = e0 + (int)(ky * rs) + kx * c + j;
                            VI hit = at == lane + e;
                            V d = (V)((VI)g & hit);
                            KV(st)(dimg + e, accumulate ? KV(ld)(dimg + e) + d : d);
                        }
                }
            }
            /* columns past the last window */
            if (!accumulate)
                for (int ky = 0; ky < kh; ky++)
                    for (int ix = ow * kw; ix < w; ix++)
                        for (int j = 0; j < cv; j += VL)
                            KV(st)(dimg + ((ptrdiff_t)(oy * kh + ky) * w + ix) * c + j, zero);
        }
        /* rows past the last window */
        if (!accumulate)
            for (int iy = oh * kh; iy < h; iy++)
                for (int ix = 0; ix < w; ix++)
                    for (int j = 0; j < cv; j += VL)
                        KV(st)(dimg + ((ptrdiff_t)iy * w + ix) * c + j, zero);
    }
    return cv;
}

#undef VL
#undef V
#undef VI
#undef KINL
/* consume the per-variant parameters */
#undef KVB
#undef KV
#undef KTGT

#else /* ---- the entry points of one element type ---- */

#define KGEOM n, h, w, c, oh, ow, kh, kw, sh, sw, pt, pl
#include "vec_tmpl.h"

/* ---- the tiled max pool (stride = window, no padding): direct kernels of
 * the best instruction set this CPU runs; they return 0 when the channels
 * are not whole vectors ---- */
#ifdef KDK_FAST_DIRECT
static int KI(pool_tiled)(KDK_POOL_GEOM_PARAMS)
{
    (void)n, (void)c;
    return sh == kh && sw == kw && pt == 0 && pl == 0 && kh > 0 && kw > 0 && oh * kh <= h &&
           ow * kw <= w && oh > 0 && ow > 0;
}

static int KI(fast_maxpool_fwd)(KDK_POOL_GEOM_PARAMS, const KT *x, KT *y, int32_t *argmax)
{
    switch (kdk_fast_isa()) {
#ifdef KDK_FAST_AVX512
    case KDK_ISA_AVX512: return KDK_CAT(KI(maxpool_fwd), _avx512)(KGEOM, x, y, argmax);
#endif
#ifdef KDK_FAST_AVX2
    case KDK_ISA_AVX2: return KDK_CAT(KI(maxpool_fwd), _avx2)(KGEOM, x, y, argmax);
#endif
    default: return KDK_CAT(KI(maxpool_fwd), _base)(KGEOM, x, y, argmax);
    }
}

static int KI(fast_maxpool_bwd)(KDK_POOL_GEOM_PARAMS, const KT *x, const int32_t *argmax,
                                const KT *dy, KT *dx, int accumulate)
{
    switch (kdk_fast_isa()) {
#ifdef KDK_FAST_AVX512
    case KDK_ISA_AVX512:
        return KDK_CAT(KI(maxpool_bwd), _avx512)(KGEOM, x, argmax, dy, dx, accumulate);
#endif
#ifdef KDK_FAST_AVX2
    case KDK_ISA_AVX2:
        return KDK_CAT(KI(maxpool_bwd), _avx2)(KGEOM, x, argmax, dy, dx, accumulate);
#endif
    default: return KDK_CAT(KI(maxpool_bwd), _base)(KGEOM, x, argmax, dy, dx, accumulate);
    }
}
#endif

/* 0, 1, 2, ...: lane numbers, loaded as a vector. */
static const KTI KI(iota)[64] = {
    0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
    22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43,
    44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63};

static inline KI(ivec) KI(lanes)(void)
{
    KI(ivec) v;
    memcpy(&v, KI(iota), sizeof v);
    return v;
}

/* Stores the lanes of an index vector as int32. */
static inline void KI(store_idx)(int32_t *d, KI(ivec) v)
{
    if (sizeof(KTI) == sizeof(int32_t))
        memcpy(d, &v, sizeof v);
    else
        for (int l = 0; l < KVL; l++) d[l] = (int32_t)v[l];
}

/* The clipped window of output pixel (oy, ox): rows [*y0, *y1), cols [*x0, *x1). */
static void KI(window)(KDK_POOL_GEOM_PARAMS, int oy, int ox, int *y0, int *y1, int *x0, int *x1)
{
    int ty = oy * sh - pt, tx = ox * sw - pl;
    (void)n, (void)c, (void)oh, (void)ow;
    *y0 = KDK_MAX(ty, 0);
    *y1 = KDK_MIN(ty + kh, h);
    *x0 = KDK_MAX(tx, 0);
    *x1 = KDK_MIN(tx + kw, w);
}

/* "v beats best": greater, or NaN over a number.  The first maximum in
 * window order wins ties. */
#define KBEATS(v, best) ((v) > (best) || ((v) != (v) && (best) == (best)))

static inline KI(ivec) KI(load_idx)(const int32_t *p)
{
    KI(ivec) v = {0};
    if (sizeof(KTI) == sizeof(int32_t))
        memcpy(&v, p, sizeof v);
    else
        for (int l = 0; l < KVL; l++) v[l] = p[l];
    return v;
}

/* Max over the window of (oy, ox) for channels [c0, c0+nc) of one image:
 * into best[0..nc) and, if idx, the winners' indices (iy*w + ix)*c + ch.
 * Window positions are the outer loop, so each pass streams one contiguous
 * run of channels.  Returns 0 for an empty window. */
static int KI(window_max)(KDK_POOL_GEOM_PARAMS, const KT *img, int oy, int ox, int c0, int nc,
                          KT *best, int32_t *idx)
{
    typedef KI(vec) V;
    typedef KI(ivec) VI;
    int y0, y1, x0, x1;
    KI(window)(KGEOM, oy, ox, &y0, &y1, &x0, &x1);
    if (y0 >= y1 || x0 >= x1) return 0;
    VI lane = KI(lanes)();
    int first = (y0 * w + x0) * c + c0, j = 0;
    for (; j + KVL <= nc; j += KVL) {
        KI(vst)(best + j, KI(vld)(img + first + j));
        if (idx) KI(store_idx)(idx + j, lane + (first + j));
    }
    for (; j < nc; j++) {
        best[j] = img[first + j];
        if (idx) idx[j] = first + j;
    }
    for (int iy = y0; iy < y1; iy++)
        for (int ix = iy == y0 ? x0 + 1 : x0; ix < x1; ix++) {
            int base = (iy * w + ix) * c + c0, j = 0;
            const KT *s = img + base;
            for (; j + KVL <= nc; j += KVL) {
                V v = KI(vld)(s + j), b = KI(vld)(best + j);
                VI win = (v > b) | ((v != v) & (b == b));
                KI(vst)(best + j, (V)(((VI)v & win) | ((VI)b & ~win)));
                if (idx) {
                    VI at = KI(load_idx)(idx + j);
                    KI(store_idx)(idx + j, ((lane + (base + j)) & win) | (at & ~win));
                }
            }
            for (; j < nc; j++)
                if (KBEATS(s[j], best[j])) {
                    best[j] = s[j];
                    if (idx) idx[j] = base + j;
                }
        }
    return 1;
}

void KP(maxpool2d_fwd)(KDK_POOL_GEOM_PARAMS, const KT *x, KT *y, int32_t *argmax)
{
#ifdef KDK_FAST_DIRECT
    if (KI(pool_tiled)(KGEOM) && KI(fast_maxpool_fwd)(KGEOM, x, y, argmax)) return;
#endif
    for (int b = 0; b < n; b++) {
        const KT *img = x + (ptrdiff_t)b * h * w * c;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                ptrdiff_t o = (((ptrdiff_t)b * oh + oy) * ow + ox) * c;
                if (!KI(window_max)(KGEOM, img, oy, ox, 0, c, y + o, argmax ? argmax + o : NULL)) {
                    memset(y + o, 0, sizeof(KT) * (size_t)(c));
                    if (argmax)
                        for (int j = 0; j < c; j++) argmax[o + j] = -1;
                }
            }
    }
}

/* Windows that tile the image (stride = size, no padding): every dx element
 * is written once, dy where it won and 0 elsewhere, with no separate clear. */
static void KI(maxpool_bwd_tiled)(KDK_POOL_GEOM_PARAMS, const int32_t *argmax, const KT *dy,
                                  KT *dx)
{
    typedef KI(vec) V;
    typedef KI(ivec) VI;
    VI lane = KI(lanes)();
    (void)sh, (void)sw, (void)pt, (void)pl;
    for (int b = 0; b < n; b++) {
        KT *dimg = dx + (ptrdiff_t)b * h * w * c;
        const KT *g = dy + (ptrdiff_t)b * oh * ow * c;
        const int32_t *am = argmax + (ptrdiff_t)b * oh * ow * c;
        for (int iy = 0; iy < h; iy++) {
            int oy = iy / kh;
            KT *drow = dimg + (ptrdiff_t)iy * w * c;
            if (oy >= oh) {
                memset(drow, 0, sizeof(KT) * (size_t)(w * c));
                continue;
            }
            for (int ix = 0; ix < w; ix++) {
                int ox = ix / kw, base = (iy * w + ix) * c, j = 0;
                KT *d = drow + (ptrdiff_t)ix * c;
                if (ox >= ow) {
                    memset(d, 0, sizeof(KT) * (size_t)(c));
                    continue;
                }
                const KT *gp = g + ((ptrdiff_t)oy * ow + ox) * c;
                const int32_t *ap = am + ((ptrdiff_t)oy * ow + ox) * c;
                for (; j + KVL <= c; j += KVL) {
                    VI a = {0};
                    if (sizeof(KTI) == sizeof(int32_t))
                        memcpy(&a, ap + j, sizeof a);
                    else
                        for (int l = 0; l < KVL; l++) a[l] = ap[j + l];
                    VI hit = a == lane + (base + j);
                    KI(vst)(d + j, (V)((VI)KI(vld)(gp + j) & hit));
                }
                for (; j < c; j++) d[j] = ap[j] == base + j ? gp[j] : 0;
            }
        }
    }
}

void KP(maxpool2d_bwd)(KDK_POOL_GEOM_PARAMS, const KT *x, const int32_t *argmax, const KT *dy,
                       KT *dx, int accumulate)
{
    enum { CH = 64 };
    KT best[CH];
    int32_t idx[CH];
    ptrdiff_t hwc = (ptrdiff_t)h * w * c;
#ifdef KDK_FAST_DIRECT
    if (KI(pool_tiled)(KGEOM) && (argmax || x) &&
        KI(fast_maxpool_bwd)(KGEOM, x, argmax, dy, dx, accumulate))
        return;
#endif
    if (argmax && !accumulate && sh == kh && sw == kw && pt == 0 && pl == 0) {
        KI(maxpool_bwd_tiled)(KGEOM, argmax, dy, dx);
        return;
    }
    if (!accumulate) memset(dx, 0, sizeof(KT) * (size_t)n * (size_t)hwc);
    for (int b = 0; b < n; b++) {
        KT *dimg = dx + b * hwc;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                ptrdiff_t o = (((ptrdiff_t)b * oh + oy) * ow + ox) * c;
                if (argmax) {
                    for (int j = 0; j < c; j++)
                        if (argmax[o + j] >= 0) dimg[argmax[o + j]] += dy[o + j];
                    continue;
                }
                /* recompute the winners, CH channels at a time */
                for (int c0 = 0; c0 < c; c0 += CH) {
                    int nc = KDK_MIN(CH, c - c0);
                    if (!KI(window_max)(KGEOM, x + b * hwc, oy, ox, c0, nc, best, idx)) break;
                    for (int j = 0; j < nc; j++) dimg[idx[j]] += dy[o + c0 + j];
                }
            }
    }
}

static int KI(pool_count)(int count_pad, int kh, int kw, int y0, int y1, int x0, int x1)
{
    return count_pad ? kh * kw : (y1 - y0) * (x1 - x0);
}

void KP(avgpool2d_fwd)(KDK_POOL_GEOM_PARAMS, int count_pad, const KT *x, KT *y)
{
    for (int b = 0; b < n; b++) {
        const KT *img = x + (ptrdiff_t)b * h * w * c;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                KT *yp = y + (((ptrdiff_t)b * oh + oy) * ow + ox) * c;
                int y0, y1, x0, x1;
                KI(window)(KGEOM, oy, ox, &y0, &y1, &x0, &x1);
                memset(yp, 0, sizeof(KT) * (size_t)(c));
                if (y0 >= y1 || x0 >= x1) continue;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) KI(row_add)(yp, img + ((ptrdiff_t)iy * w + ix) * c, c);
                KI(row_scale)(yp, (KT)1 / (KT)KI(pool_count)(count_pad, kh, kw, y0, y1, x0, x1), c);
            }
    }
}

void KP(avgpool2d_bwd)(KDK_POOL_GEOM_PARAMS, int count_pad, const KT *dy, KT *dx, int accumulate)
{
    ptrdiff_t hwc = (ptrdiff_t)h * w * c;
    if (!accumulate) memset(dx, 0, sizeof(KT) * (size_t)n * (size_t)hwc);
    for (int b = 0; b < n; b++) {
        KT *dimg = dx + b * hwc;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                const KT *g = dy + (((ptrdiff_t)b * oh + oy) * ow + ox) * c;
                int y0, y1, x0, x1;
                KI(window)(KGEOM, oy, ox, &y0, &y1, &x0, &x1);
                if (y0 >= y1 || x0 >= x1) continue;
                KT inv = (KT)1 / (KT)KI(pool_count)(count_pad, kh, kw, y0, y1, x0, x1);
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++)
                        KI(row_axpy)(dimg + ((ptrdiff_t)iy * w + ix) * c, inv, g, c);
            }
    }
}

/* ---- global pooling: x [n][hw][c] -> y [n][c] ---- */

void KP(global_avgpool_fwd)(int n, int hw, int c, const KT *x, KT *y)
{
    for (int b = 0; b < n; b++) {
        KT *yp = y + (ptrdiff_t)b * c;
        const KT *img = x + (ptrdiff_t)b * hw * c;
        memset(yp, 0, sizeof(KT) * (size_t)(c));
        for (int p = 0; p < hw; p++) KI(row_add)(yp, img + (ptrdiff_t)p * c, c);
        KI(row_scale)(yp, hw > 0 ? (KT)1 / (KT)hw : 0, c);
    }
}

void KP(global_avgpool_bwd)(int n, int hw, int c, const KT *dy, KT *dx, int accumulate)
{
    KT inv = hw > 0 ? (KT)1 / (KT)hw : 0;
    for (int b = 0; b < n; b++) {
        const KT *g = dy + (ptrdiff_t)b * c;
        for (int p = 0; p < hw; p++) {
            KT *d = dx + ((ptrdiff_t)b * hw + p) * c;
            if (accumulate)
                KI(row_axpy)(d, inv, g, c);
            else
                KI(row_scaled)(d, inv, g, c);
        }
    }
}

/* Global max is a max pool whose window is the whole image. */
void KP(global_maxpool_fwd)(int n, int hw, int c, const KT *x, KT *y, int32_t *argmax)
{
    for (int b = 0; b < n; b++) {
        ptrdiff_t o = (ptrdiff_t)b * c;
        if (!KI(window_max)(1, 1, hw, c, 1, 1, 1, hw, 1, hw, 0, 0, x + (ptrdiff_t)b * hw * c, 0, 0, 0,
                            c, y + o, argmax ? argmax + o : NULL)) {
            memset(y + o, 0, sizeof(KT) * (size_t)(c));
            if (argmax)
                for (int j = 0; j < c; j++) argmax[o + j] = -1;
        } else if (argmax) {
            for (int j = 0; j < c; j++) argmax[o + j] /= c; /* element index -> position */
        }
    }
}

void KP(global_maxpool_bwd)(int n, int hw, int c, const KT *x, const int32_t *argmax,
                            const KT *dy, KT *dx, int accumulate)
{
    enum { CH = 64 };
    KT best[CH];
    int32_t at[CH];
    if (!accumulate) memset(dx, 0, sizeof(KT) * (size_t)n * (size_t)hw * (size_t)c);
    for (int b = 0; b < n; b++) {
        KT *dimg = dx + (ptrdiff_t)b * hw * c;
        const KT *g = dy + (ptrdiff_t)b * c;
        if (argmax) {
            for (int j = 0; j < c; j++)
                if (argmax[(ptrdiff_t)b * c + j] >= 0) dimg[(ptrdiff_t)argmax[(ptrdiff_t)b * c + j] * c + j] += g[j];
            continue;
        }
        for (int c0 = 0; c0 < c; c0 += CH) {
            int nc = KDK_MIN(CH, c - c0);
            if (!KI(window_max)(1, 1, hw, c, 1, 1, 1, hw, 1, hw, 0, 0, x + (ptrdiff_t)b * hw * c, 0, 0,
                                c0, nc, best, at))
                break;
            for (int j = 0; j < nc; j++) dimg[at[j]] += g[c0 + j];
        }
    }
}

#undef KI
#undef KGEOM
#undef KBEATS
#undef KVL

#endif /* KVB */
