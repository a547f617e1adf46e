/* conv_tmpl.h — Conv2D NHWC forward and backward for one element type.
 *
 * conv.c includes this file in two modes:
 *   - with KVB defined (vector bytes), KV(x) and KTGT (a target attribute,
 *     maybe empty): the direct kernels of one instruction set, below;
 *   - without KVB: the entry points for one element type (KT, KS, KP(x)),
 *     further down, which pick the direct kernels when the shape suits them
 *     and otherwise run the packed GEMM driver (gemm_tmpl.h).
 */
#ifdef KVB

/* ---- direct NHWC kernels for one instruction set ----------------------------------
 * Register blocking over output channels (NB vectors of filters) and output
 * pixels (P of them along a row, forward) or rows of dW (R rows (tap,
 * channel), filter gradient).  Each tile keeps its accumulators in vector
 * registers for the whole reduction: the forward and data-gradient tiles
 * over every tap and channel, the filter-gradient tile over every output
 * pixel of an image whose window lies in it.  The operands are read in
 * place: no im2col panel is packed. */

#include "isa_vectors.h"
/* Accumulator registers a tile may use (32 vector registers with AVX-512). */
#if KVB == 64
#define KACC 24
#else
#define KACC 12
#endif

/* max(x, 0) keeping NaN */
KINL V KV(relu)(V x)
{
    V zero = {0};
    return (V)((VI)x & ~(VI)(x <= zero));
}

/* One forward tile: P consecutive output pixels × NB filter vectors.
 *   y[p][o] (+)= bias[o] + sum over taps (ky0..ky1) × (kx0..kx1), channels ci < cn
 *                 of x[xo + p*ps + (ky*w + kx)*c + ci] · wt[((ky*kw + kx)*c + ci)*f + o]
 * xo is the offset of pixel 0's window origin (maybe outside the image; the
 * tap range keeps every read inside); cn <= c: a slab of the channels.
 * accum: start from y (dx += ..., or the slabs before).
 * pf: filters laid out as wt's, of which the tile prefetches into L2 one
 * line per tap and channel below pfn (the sweep after this one: see
 * KDK_FWD_SLAB); NULL: none. */
#define KDK_FWD_TILE(NB) \
KINL KDK_CONTRACT void KV(fwd_tile_##NB)(const int P, const KT *restrict x, ptrdiff_t xo,            \
                                    ptrdiff_t ps, ptrdiff_t ys, int w, int c, int cn, int kw, int ky0, int ky1, \
                                    int kx0, int kx1, const KT *restrict wt, int f, const KT *restrict bias, \
                                    int act, int accum, KT *restrict y, const KT *pf, int pfn)       \
{                                                                                                    \
    V acc[KACC / NB][NB];                                                                            \
_Pragma("GCC unroll 16")                                                                      \
    for (int p = 0; p < P; p++)                                                                      \
_Pragma("GCC unroll 4")                                                                       \
        for (int v = 0; v < NB; v++)                                                                 \
            acc[p][v] = accum ? KV(ld)(y + p * ys + v * VL)                                \
                        : bias ? KV(ld)(bias + v * VL) : (V){0};                                     \
    for (int ky = ky0; ky < ky1; ky++)                                                               \
        for (int kx = kx0; kx < kx1; kx++) {                                                         \
            const KT *xt = x + xo + ((ptrdiff_t)ky * w + kx) * c;                                    \
            const KT *wp = wt + (ptrdiff_t)(ky * kw + kx) * c * f;                                   \
            const KT *pp = pf ? pf + (ptrdiff_t)(ky * kw + kx) * c * f : wp;                         \
            for (int ci = 0; ci < cn; ci++) {                                                        \
                if (ci < pfn) __builtin_prefetch(pp, 0, 2);                                          \
                pp += f;                                                                             \
                V wv[NB];                                                                            \
_Pragma("GCC unroll 4")                                                                       \
                for (int v = 0; v < NB; v++) wv[v] = KV(ld)(wp + v * VL);                            \
_Pragma("GCC unroll 16")                                                                      \
                for (int p = 0; p < P; p++) {                                                        \
                    V a = xt[p * ps] - (V){0}; /* broadcast */                                       \
_Pragma("GCC unroll 4")                                                                       \
                    for (int v = 0; v < NB; v++) acc[p][v] += a * wv[v];                             \
                }                                                                                    \
                xt++;                                                                                \
                wp += f;                                                                             \
            }                                                                                        \
        }                                                                                            \
_Pragma("GCC unroll 16")                                                                      \
    for (int p = 0; p < P; p++)                                                                      \
_Pragma("GCC unroll 4")                                                                       \
        for (int v = 0; v < NB; v++) {                                                               \
            V r = acc[p][v];                                                                         \
            if (act == KDK_ACT_RELU) r = KV(relu)(r);                                                \
            KV(st)(y + p * ys + v * VL, r);                                                \
        }                                                                                            \
    if (act != KDK_ACT_NONE && act != KDK_ACT_RELU)                                                  \
        for (int p = 0; p < P; p++)                                                                  \
            for (int o = 0; o < NB * VL; o++) {                                                      \
                KT *yp = y + p * ys + o;                                                   \
                *yp = KACT(act, *yp);                                                                \
            }                                                                                        \
}                                                                                                    \
/* end KDK_FWD_TILE */

/* The forward over images [b0, b1), output rows [oy0, oy1), filters in
 * blocks of NB vectors (f a multiple of NB·VL).  A tile's P pixels share
 * their tap range: runs along a row where no window reaches into the
 * padding at the sides, runs down a column at the sides, and the corners
 * (padding both ways) across the images. */
#define KDK_FWD_ROWS(NB)                                                                        \
    KTGT KDK_CONTRACT static void KV(fwd_rows_##NB)(const struct kdk_conv_geom *g, int b0,     \
                                                    int b1, int oy0, int oy1, const KT *x,     \
                                                    const KT *wt, const KT *bias, int act,     \
                                                    int accum, KT *y)                          \
    {                                                                                          \
        enum { PMAX = KACC / NB, NBLK = NB };                                                 \
        int h = g->h, w = g->w, c = g->c, oh = g->oh, ow = g->ow, f = g->f;                    \
        int kh = g->kh, kw = g->kw, sh = g->sh, sw = g->sw, pt = g->pt, pl = g->pl;            \
        /* output columns [oxa, oxb) and rows [oya, oyb) whose windows avoid the padding */    \
        int oxa = 0, oxb = ow, oya = 0, oyb = oh;                                              \
        while (oxa < ow && oxa * sw - pl < 0) oxa++;                                           \
        while (oxb > oxa && (oxb - 1) * sw - pl + kw > w) oxb--;                               \
        while (oya < oh && oya * sh - pt < 0) oya++;                                           \
        while (oyb > oya && (oyb - 1) * sh - pt + kh > h) oyb--;                               \
        int ra = KDK_MAX(oy0, oya), rb = KDK_MIN(oy1, oyb);                                    \
        int nblk = (oxb - oxa + PMAX - 1) / PMAX;                                              \
        int pw = nblk ? (oxb - oxa + nblk - 1) / nblk : 0;                                     \
        ptrdiff_t xhw = (ptrdiff_t)h * w * c, yhw = (ptrdiff_t)oh * ow * f;                    \
        int cb = KV(fwd_slab)(g, NB);                                                          \
        int prefetch = (long)kh * kw * c * f * (long)sizeof(KT) > KDK_CONV_PREFETCH;           \
        for (int f0 = 0; f0 < f; f0 += NB * VL) {                                              \
            for (int b = b0; b < b1; b++)                                                      \
              for (int c0 = 0; c0 < c; c0 += cb) {                                             \
                KDK_FWD_SLAB                                                                   \
                /* along the rows, the columns clear of the side padding */                    \
                for (int oy = oy0; oy < oy1 && oxa < oxb; oy++) {                              \
                    int iy0 = oy * sh - pt, ky0 = KDK_MAX(0, -iy0), ky1 = KDK_MIN(kh, h - iy0);\
                    int kx0 = 0, kx1 = kw;                                                     \
                    ptrdiff_t ps = (ptrdiff_t)sw * c, ys = f;                                  \
                    for (int ox = oxa; ox < oxb;) {                                            \
                        int P = KDK_MIN(pw, oxb - ox);                                         \
                        ptrdiff_t xo = b * xhw + ((ptrdiff_t)iy0 * w + ox * sw - pl) * c;      \
                        KT *yp = y + b * yhw + ((ptrdiff_t)oy * ow + ox) * f + f0;             \
                        switch (P) {                                                           \
                            KDK_FWD_CASES(NB)                                                  \
                        }                                                                      \
                        ox += P;                                                               \
                    }                                                                          \
                }                                                                              \
                /* down the side columns, the rows clear of the padding */                     \
                for (int ox = oxa ? 0 : oxb; ox < ow && ra < rb; ox = ox + 1 == oxa ? oxb : ox + 1) {\
                    if (ox >= oxa && ox < oxb) continue;                                       \
                    int ix0 = ox * sw - pl, kx0 = KDK_MAX(0, -ix0), kx1 = KDK_MIN(kw, w - ix0);\
                    int ky0 = 0, ky1 = kh;                                                     \
                    ptrdiff_t ps = (ptrdiff_t)sh * w * c, ys = (ptrdiff_t)ow * f;              \
                    for (int oy = ra; oy < rb;) {                                              \
                        int P = KDK_MIN(PMAX, rb - oy);                                        \
                        ptrdiff_t xo = b * xhw + ((ptrdiff_t)(oy * sh - pt) * w + ix0) * c;    \
                        KT *yp = y + b * yhw + ((ptrdiff_t)oy * ow + ox) * f + f0;             \
                        switch (P) {                                                           \
                            KDK_FWD_CASES(NB)                                                  \
                        }                                                                      \
                        oy += P;                                                               \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
            /* the corners, across the images */                                               \
            for (int c0 = 0; c0 < c; c0 += cb) {                                               \
              KDK_FWD_SLAB                                                                     \
              for (int oy = oy0; oy < oy1; oy++) {                                             \
                if (oy >= ra && oy < rb) continue;                                             \
                int iy0 = oy * sh - pt, ky0 = KDK_MAX(0, -iy0), ky1 = KDK_MIN(kh, h - iy0);    \
                for (int ox = oxa ? 0 : oxb; ox < ow; ox = ox + 1 == oxa ? oxb : ox + 1) {      \
                    if (ox >= oxa && ox < oxb) continue;                                       \
                    int ix0 = ox * sw - pl, kx0 = KDK_MAX(0, -ix0), kx1 = KDK_MIN(kw, w - ix0);\
                    ptrdiff_t ps = xhw, ys = yhw;                                              \
                    for (int b = b0; b < b1;) {                                                \
                        int P = KDK_MIN(PMAX, b1 - b);                                         \
                        ptrdiff_t xo = b * xhw + ((ptrdiff_t)iy0 * w + ix0) * c;               \
                        KT *yp = y + b * yhw + ((ptrdiff_t)oy * ow + ox) * f + f0;             \
                        switch (P) {                                                           \
                            KDK_FWD_CASES(NB)                                                  \
                        }                                                                      \
                        b += P;                                                                \
                    }                                                                          \
                }                                                                              \
              }                                                                                \
            }                                                                                  \
        }                                                                                      \
    }
/* The slab of channels [c0, c0 + cn) of a tile sweep: the first adds the
 * bias (or starts from y), the later ones add to y, the last applies the
 * activation. */
#define KDK_FWD_SLAB                                                                           \
    int cn = KDK_MIN(cb, c - c0), saccum = accum || c0 > 0;                                    \
    int sact = c0 + cn == c ? act : KDK_ACT_NONE;                                              \
    const KT *xs = x + c0, *ws = wt + (ptrdiff_t)c0 * f + f0;                                  \
    const KT *bs = bias && !c0 ? bias + f0 : NULL;                                             \
    /* Filters too large for the caches (ResNet50's last two stages) stream from memory, \
     * and a sweep's first tile would wait on each line: each tile prefetches into L2 one  \
     * of the NB lines per tap and channel the next sweep reads (the next slab, else the   \
     * next block's first), so the first NB tiles fetch all of them while they compute. */ \
    const KT *pfs = !prefetch ? NULL : c0 + cn < c ? ws + (ptrdiff_t)cn * f                   \
                    : f0 + NBLK * VL < f ? wt + f0 + NBLK * VL : NULL;                         \
    int pfn = c0 + cn < c ? KDK_MIN(cb, c - c0 - cn) : KDK_MIN(cb, c), tile_no = 0;
/* Each (NB, P) tile is compiled once, out of line, and called from the three
 * places above: inlining it at each would triple the code and the build time. */
#define KDK_FWD_CASE(NB, P)                                                                    \
    case P:                                                                                    \
        KV(fwd_tile_##NB##_##P)(xs, xo, ps, ys, w, c, cn, kw, ky0, ky1, kx0, kx1, ws, f, bs,    \
                                sact, saccum, yp, pfs ? pfs + tile_no++ % NB * VL : NULL, pfn); \
        break;
#define KDK_FWD_TILE_P(NB, P)                                                                  \
    KTGT KDK_CONTRACT static __attribute__((noinline)) void KV(fwd_tile_##NB##_##P)(           \
        const KT *restrict x, ptrdiff_t xo, ptrdiff_t ps, ptrdiff_t ys, int w, int c, int cn,   \
        int kw, int ky0, int ky1, int kx0, int kx1, const KT *restrict wt, int f,              \
        const KT *restrict bias, int act, int accum, KT *restrict y, const KT *pf, int pfn)    \
    {                                                                                          \
        if (P <= KACC / NB)                                                                    \
            KV(fwd_tile_##NB)(P <= KACC / NB ? P : 1, x, xo, ps, ys, w, c, cn, kw, ky0, ky1, kx0, \
                              kx1, wt, f, bias, act, accum, y, pf, pfn);                       \
    }
#define KDK_FWD_TILES_P(NB)                                                                    \
    KDK_FWD_TILE_P(NB, 1) KDK_FWD_TILE_P(NB, 2) KDK_FWD_TILE_P(NB, 3) KDK_FWD_TILE_P(NB, 4)    \
    KDK_FWD_TILE_P(NB, 5) KDK_FWD_TILE_P(NB, 6) KDK_FWD_TILE_P(NB, 7) KDK_FWD_TILE_P(NB, 8)    \
    KDK_FWD_TILE_P(NB, 9) KDK_FWD_TILE_P(NB, 10) KDK_FWD_TILE_P(NB, 11) KDK_FWD_TILE_P(NB, 12) \
    KDK_FWD_TILE_P(NB, 13) KDK_FWD_TILE_P(NB, 14) KDK_FWD_TILE_P(NB, 15) KDK_FWD_TILE_P(NB, 16)\
    KDK_FWD_TILE_P(NB, 17) KDK_FWD_TILE_P(NB, 18) KDK_FWD_TILE_P(NB, 19) KDK_FWD_TILE_P(NB, 20)\
    KDK_FWD_TILE_P(NB, 21) KDK_FWD_TILE_P(NB, 22) KDK_FWD_TILE_P(NB, 23) KDK_FWD_TILE_P(NB, 24)
#define KDK_FWD_CASES(NB)                                                                      \
    KDK_FWD_CASE(NB, 1) KDK_FWD_CASE(NB, 2) KDK_FWD_CASE(NB, 3) KDK_FWD_CASE(NB, 4)            \
    KDK_FWD_CASE(NB, 5) KDK_FWD_CASE(NB, 6) KDK_FWD_CASE(NB, 7) KDK_FWD_CASE(NB, 8)            \
    KDK_FWD_CASE(NB, 9) KDK_FWD_CASE(NB, 10) KDK_FWD_CASE(NB, 11) KDK_FWD_CASE(NB, 12)         \
    KDK_FWD_CASE(NB, 13) KDK_FWD_CASE(NB, 14) KDK_FWD_CASE(NB, 15) KDK_FWD_CASE(NB, 16)        \
    KDK_FWD_CASE(NB, 17) KDK_FWD_CASE(NB, 18) KDK_FWD_CASE(NB, 19) KDK_FWD_CASE(NB, 20)        \
    KDK_FWD_CASE(NB, 21) KDK_FWD_CASE(NB, 22) KDK_FWD_CASE(NB, 23) KDK_FWD_CASE(NB, 24)

/* The channels of one slab of a forward.  A tile reads the filter vectors
 * of all its taps and channels, kh·kw·c·NB vectors, once per P pixels: far
 * more than L1 holds, and more than L2 in ResNet50's last stages (3×3 over
 * 512 channels: 1.2 MB per block of 64 filters), where every tile of a
 * 7-pixel row then streamed them from L3.  So the channels are split into
 * equal slabs of at most KDK_CONV_SLAB bytes of filters, each swept over
 * an image's rows in turn, the later ones adding into y.  That re-reads
 * the image's NB vectors of y once per slab: only where they are at most
 * KDK_CONV_SLAB bytes too (ResNet50's 14×14 and 7×7 stages; on the 56×56
 * and 28×28 ones the slabs measured slower). */
static int KV(fwd_slab)(const struct kdk_conv_geom *g, int nb)
{
    long per_channel = (long)g->kh * g->kw * nb * KVB;
    if ((long)g->oh * g->ow * nb * KVB > KDK_CONV_SLAB) return KDK_MAX(g->c, 1);
    int cbmax = (int)KDK_MAX(1, KDK_CONV_SLAB / per_channel);
    if (cbmax >= g->c) return KDK_MAX(g->c, 1);
    int nslab = (g->c + cbmax - 1) / cbmax;
    return (g->c + nslab - 1) / nslab;
}

KDK_FWD_TILE(1)
KDK_FWD_TILE(2)
KDK_FWD_TILE(4)
KDK_FWD_TILES_P(1)
KDK_FWD_TILES_P(2)
KDK_FWD_TILES_P(4)
KDK_FWD_ROWS(1)
KDK_FWD_ROWS(2)
KDK_FWD_ROWS(4)

/* Whether fwd_rows serves f filters: whole vectors.  Returns the block NB. */
static int KV(fwd_nb)(int f)
{
    if (f <= 0 || f % VL) return 0;
    int nv = f / VL;
    return nv % 4 == 0 ? 4 : nv % 2 == 0 ? 2 : 1;
}

KTGT static void KV(fwd)(const struct kdk_conv_geom *g, int b0, int b1, int oy0, int oy1,
                         const KT *x, const KT *wt, const KT *bias, int act, int accum, KT *y)
{
    switch (KV(fwd_nb)(g->f)) {
    case 4: KV(fwd_rows_4)(g, b0, b1, oy0, oy1, x, wt, bias, act, accum, y); break;
    case 2: KV(fwd_rows_2)(g, b0, b1, oy0, oy1, x, wt, bias, act, accum, y); break;
    default: KV(fwd_rows_1)(g, b0, b1, oy0, oy1, x, wt, bias, act, accum, y); break;
    }
}

/* One filter-gradient tile: R rows of dW (row i reads x at window offset
 * aoff[i]) × NB filter vectors, summed over output rows [oy0, oy1) and
 * columns [ox0, ox1) of one image (windows inside it, for every row).
 * load: add to dw's contents. The offsets are summed as integers, the
 * address formed only for an element read: with padding, aoff[i] is
 * negative for the taps above or left of the window's centre. */
#define KDK_DW_TILE(NB) \
KINL KDK_CONTRACT void KV(dw_tile_##NB)(const int R, const KT *restrict x,                           \
                                   const ptrdiff_t *aoff, const KT *restrict dy, int f, int oy0,     \
                                   int oy1, int ox0, int ox1, int ow, ptrdiff_t rs, ptrdiff_t ps,    \
                                   int load, KT *restrict dw)                                        \
{                                                                                                    \
    V acc[KACC / NB][NB];                                                                            \
    ptrdiff_t off[KACC / NB];                                                                        \
_Pragma("GCC unroll 24")                                                                      \
    for (int i = 0; i < R; i++) {                                                                    \
        off[i] = aoff[i];                                                                            \
_Pragma("GCC unroll 4")                                                                       \
        for (int v = 0; v < NB; v++)                                                                 \
            acc[i][v] = load ? KV(ld)(dw + (ptrdiff_t)i * f + v * VL) : (V){0};                      \
    }                                                                                                \
    for (int oy = oy0; oy < oy1; oy++) {                                                             \
        ptrdiff_t xo = oy * rs + ox0 * ps;                                                           \
        const KT *d = dy + ((ptrdiff_t)oy * ow + ox0) * f;                                           \
        for (int ox = ox0; ox < ox1; ox++) {                                                         \
            V dv[NB];                                                                                \
_Pragma("GCC unroll 4")                                                                       \
            for (int v = 0; v < NB; v++) dv[v] = KV(ld)(d + v * VL);                                 \
_Pragma("GCC unroll 24")                                                                      \
            for (int i = 0; i < R; i++) {                                                            \
                V a = x[xo + off[i]] - (V){0};                                                       \
_Pragma("GCC unroll 4")                                                                       \
                for (int v = 0; v < NB; v++) acc[i][v] += a * dv[v];                                 \
            }                                                                                        \
            xo += ps;                                                                                \
            d += f;                                                                                  \
        }                                                                                            \
    }                                                                                                \
_Pragma("GCC unroll 24")                                                                      \
    for (int i = 0; i < R; i++)                                                                      \
_Pragma("GCC unroll 4")                                                                       \
        for (int v = 0; v < NB; v++) KV(st)(dw + (ptrdiff_t)i * f + v * VL, acc[i][v]);              \
}                                                                                                    \
/* end KDK_DW_TILE */

/* dW rows [q0, q1) of kk = kh·kw·c, all filters, over every image. Without
 * padding in any window a tile's rows may span taps and it sums over every
 * output pixel; with padding a tile's rows share one tap (ky, kx), so that
 * one rectangle of output pixels, those whose window at that tap lies in
 * the image, serves them all (the rest read zeros: they add nothing). */
#define KDK_DW_ROWS(NB)                                                                         \
    KTGT KDK_CONTRACT static void KV(dw_rows_##NB)(const struct kdk_conv_geom *g, int padded,    \
                                      int q0, int q1, const KT *x, const KT *dy,                \
                                      int accumulate, KT *dw)                                   \
    {                                                                                           \
        enum { RMAX = KACC / NB };                                                              \
        int h = g->h, w = g->w, c = g->c, oh = g->oh, ow = g->ow, f = g->f, kw = g->kw;         \
        ptrdiff_t rs = (ptrdiff_t)g->sh * w * c, ps = (ptrdiff_t)g->sw * c;                     \
        for (int b = 0; b < g->n; b++) {                                                        \
            const KT *xi = x + (ptrdiff_t)b * h * w * c;                                        \
            const KT *di = dy + (ptrdiff_t)b * oh * ow * f;                                     \
            for (int q = q0, R; q < q1; q += R) {                                               \
                int tap = q / c, ky = tap / kw, kx = tap % kw;                                  \
                int left = (padded ? KDK_MIN(q1, (tap + 1) * c) : q1) - q;                      \
                int nt = (left + RMAX - 1) / RMAX;                                              \
                R = (left + nt - 1) / nt;                                                       \
                int oy0 = 0, oy1 = oh, ox0 = 0, ox1 = ow;                                       \
                ptrdiff_t aoff[RMAX];                                                           \
                if (padded) {                                                                   \
                    oy0 = KDK_DW_FIRST(ky, g->pt, g->sh), ox0 = KDK_DW_FIRST(kx, g->pl, g->sw);   \
                    oy1 = KDK_DW_END(ky, g->pt, g->sh, h, oh), ox1 = KDK_DW_END(kx, g->pl, g->sw, w, ow); \
                    oy1 = KDK_MAX(oy0, oy1), ox1 = KDK_MAX(ox0, ox1);                           \
                    for (int i = 0; i < R; i++)                                                 \
                        aoff[i] = ((ptrdiff_t)(ky - g->pt) * w + kx - g->pl) * c + (q + i) % c; \
                } else {                                                                        \
                    for (int i = 0; i < R; i++) {                                               \
                        int t = (q + i) / c, ci = (q + i) % c;                                  \
                        aoff[i] = ((ptrdiff_t)(t / kw) * w + t % kw) * c + ci;                  \
                    }                                                                           \
                }                                                                               \
                for (int f0 = 0; f0 < f; f0 += NB * VL) {                                       \
                    KT *dwt = dw + (ptrdiff_t)q * f + f0;                                       \
                    int ld = b > 0 || accumulate;                                               \
                    switch (R) {                                                                \
                        KDK_DW_CASES(NB)                                                        \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }
/* The first output row (column) whose window at kernel row ky lies in the
 * image, and the end of them: oy·s + ky - pad in [0, h). */
#define KDK_DW_FIRST(k, pad, s) ((k) >= (pad) ? 0 : ((pad) - (k) + (s) - 1) / (s))
#define KDK_DW_END(k, pad, s, h, oh) \
    ((h) - 1 + (pad) - (k) < 0 ? 0 : KDK_MIN((oh), ((h) - 1 + (pad) - (k)) / (s) + 1))
#define KDK_DW_CASE(NB, R)                                                                     \
    case R:                                                                                    \
        if (R <= KACC / NB)                                                                    \
            KV(dw_tile_##NB)(R <= KACC / NB ? R : 1, xi, aoff, di + f0, f, oy0, oy1, ox0, ox1, \
                        ow, rs, ps, ld, dwt);                                                  \
        break;
#define KDK_DW_CASES(NB) \
    KDK_DW_CASE(NB, 1) KDK_DW_CASE(NB, 2) KDK_DW_CASE(NB, 3) KDK_DW_CASE(NB, 4)                 \
    KDK_DW_CASE(NB, 5) KDK_DW_CASE(NB, 6) KDK_DW_CASE(NB, 7) KDK_DW_CASE(NB, 8)                 \
    KDK_DW_CASE(NB, 9) KDK_DW_CASE(NB, 10) KDK_DW_CASE(NB, 11) KDK_DW_CASE(NB, 12)              \
    KDK_DW_CASE(NB, 13) KDK_DW_CASE(NB, 14) KDK_DW_CASE(NB, 15) KDK_DW_CASE(NB, 16)             \
    KDK_DW_CASE(NB, 17) KDK_DW_CASE(NB, 18) KDK_DW_CASE(NB, 19) KDK_DW_CASE(NB, 20)             \
    KDK_DW_CASE(NB, 21) KDK_DW_CASE(NB, 22) KDK_DW_CASE(NB, 23) KDK_DW_CASE(NB, 24)

KDK_DW_TILE(1)
KDK_DW_TILE(2)
KDK_DW_TILE(4)
KDK_DW_ROWS(1)
KDK_DW_ROWS(2)
KDK_DW_ROWS(4)

KTGT static void KV(dw)(const struct kdk_conv_geom *g, int padded, int q0, int q1, const KT *x,
                        const KT *dy, int accumulate, KT *dw)
{
    switch (KV(fwd_nb)(g->f)) {
    case 4: KV(dw_rows_4)(g, padded, q0, q1, x, dy, accumulate, dw); break;
    case 2: KV(dw_rows_2)(g, padded, q0, q1, x, dy, accumulate, dw); break;
    default: KV(dw_rows_1)(g, padded, q0, q1, x, dy, accumulate, dw); break;
    }
}

#undef VL
#undef V
#undef VI
#undef KINL
#undef KACC
#undef KDK_FWD_ROWS
#undef KDK_FWD_SLAB
#undef KDK_FWD_TILE
#undef KDK_DW_TILE
#undef KDK_FWD_CASE
#undef KDK_FWD_CASES
#undef KDK_DW_ROWS
#undef KDK_DW_CASE
#undef KDK_DW_CASES
#undef KDK_DW_FIRST
#undef KDK_DW_END
/* consume the per-variant parameters */
#undef KVB
#undef KV
#undef KTGT

#else /* ---- the entry points of one element type ---- */

/* ---- entry points ----
 * With a workspace, the direct kernels above serve the shapes they suit
 * (whole vectors of output channels; the data gradient at stride 1, as the
 * forward of dY with flipped, transposed filters; the filter gradient, with
 * or without padding); everything else, and every shape on
 * targets without the direct kernels, runs on the packed GEMM driver:
 *   forward      Y[pix][f]  = im2col(X)[pix][kk] · W[kk][f]        (+bias, act)
 *   filter grad  dW[kk][f]  = im2col(X)ᵀ[kk][pix] · dY[pix][f]
 *   data grad    dX        += col2im(dY[pix][f] · Wᵀ[f][kk])
 * with pix = (n, oy, ox) and kk = (ky, kx, c).  The column matrix is never
 * stored: the driver reads the image in place or packs panels from it, and
 * the data gradient adds each tile into dX as it is written back. */

#define KGEOM n, h, w, c, oh, ow, f, kh, kw, sh, sw, pt, pl

static struct kdk_conv_geom KI(geom)(KDK_CONV_GEOM_PARAMS)
{
    struct kdk_conv_geom g = {KGEOM};
    return g;
}

/* The direct kernels of the best instruction set this CPU runs.  Targets
 * without a vector unit worth it (KDK_FAST_DIRECT undefined) use the GEMM. */
#ifdef KDK_FAST_DIRECT
#ifdef KDK_FAST_AVX512
#define KDK_ON512(fn, args) case KDK_ISA_AVX512: KDK_CAT(KI(fn), _avx512) args; break;
#else
#define KDK_ON512(fn, args)
#endif
#ifdef KDK_FAST_AVX2
#define KDK_ON2(fn, args) case KDK_ISA_AVX2: KDK_CAT(KI(fn), _avx2) args; break;
#else
#define KDK_ON2(fn, args)
#endif
#ifdef KDK_FAST_HAVE_BASE
#define KDK_ONBASE(fn, args) case KDK_ISA_BASE: KDK_CAT(KI(fn), _base) args; break;
#else
#define KDK_ONBASE(fn, args)
#endif
#define KDK_DISPATCH(fn, args)                                                             \
    switch (kdk_fast_isa()) {                                                              \
        KDK_ON512(fn, args)                                                                \
        KDK_ON2(fn, args)                                                                  \
        KDK_ONBASE(fn, args)                                                               \
    default: break;                                                                        \
    }

/* Whether the direct kernels take f output channels (whole vectors). */
static int KI(fast_ok)(int f)
{
    switch (kdk_fast_isa()) {
#ifdef KDK_FAST_AVX512
    case KDK_ISA_AVX512: return KDK_CAT(KI(fwd_nb), _avx512)(f);
#endif
#ifdef KDK_FAST_AVX2
    case KDK_ISA_AVX2: return KDK_CAT(KI(fwd_nb), _avx2)(f);
#endif
#ifdef KDK_FAST_HAVE_BASE
    case KDK_ISA_BASE: return KDK_CAT(KI(fwd_nb), _base)(f);
#endif
    default: return 0;
    }
}

/* Parts take images, or rows when there are fewer images than parts. */
static void KI(fast_fwd)(int part, int nparts, const struct kdk_conv_geom *g, const KT *x,
                         const KT *wt, const KT *bias, int act, int accum, KT *y)
{
    int b0 = 0, b1 = g->n, oy0 = 0, oy1 = g->oh;
    if (g->n >= nparts) kdk_split(g->n, 1, part, nparts, &b0, &b1);
    else kdk_split(g->oh, 1, part, nparts, &oy0, &oy1);
    if (b0 >= b1 || oy0 >= oy1 || g->ow <= 0) return;
    KDK_DISPATCH(fwd, (g, b0, b1, oy0, oy1, x, wt, bias, act, accum, y))
}

static void KI(fast_dw)(const struct kdk_conv_geom *g, int padded, int q0, int q1, const KT *x,
                        const KT *dy, int accumulate, KT *dw)
{
    KDK_DISPATCH(dw, (g, padded, q0, q1, x, dy, accumulate, dw))
}
#undef KDK_ON512
#undef KDK_ON2
#undef KDK_ONBASE
#undef KDK_DISPATCH
#else
/* Never taken: fast_ok says no. */
static int KI(fast_ok)(int f) { (void)f; return 0; }
static void KI(fast_fwd)(int part, int nparts, const struct kdk_conv_geom *g, const KT *x,
                         const KT *wt, const KT *bias, int act, int accum, KT *y)
{
    (void)part, (void)nparts, (void)g, (void)x, (void)wt, (void)bias, (void)act, (void)accum, (void)y;
}
static void KI(fast_dw)(const struct kdk_conv_geom *g, int padded, int q0, int q1, const KT *x,
                        const KT *dy, int accumulate, KT *dw)
{
    (void)g, (void)padded, (void)q0, (void)q1, (void)x, (void)dy, (void)accumulate, (void)dw;
}
#endif

/* No window reaches into the padding. */
static int KI(unpadded)(const struct kdk_conv_geom *g)
{
    return g->pt == 0 && g->pl == 0 && (g->oh - 1) * g->sh + g->kh <= g->h &&
           (g->ow - 1) * g->sw + g->kw <= g->w;
}

/* ---- forward ---- */

/* A 1×1 convolution without padding reads one input pixel per output
 * pixel: it is the product of the (n·oh·ow) × c matrix of those pixels with
 * the c × f filters.  The direct kernel takes that matrix as one image row
 * of n·oh·ow pixels, so that its tiles are not cut short at the end of each
 * short row (7 and 14 pixels in ResNet50's last stages: tiles of 3 to 5
 * pixels, each streaming all c × NB filter vectors from L2). */
static int KI(pixelwise)(KDK_CONV_GEOM_PARAMS)
{
    (void)n, (void)c, (void)f;
    return kh == 1 && kw == 1 && pt == 0 && pl == 0 && oh > 0 && ow > 0 && (oh - 1) * sh < h &&
           (ow - 1) * sw < w;
}

/* Whether those pixels are the input itself (else they are gathered). */
static int KI(pixelwise_dense)(KDK_CONV_GEOM_PARAMS)
{
    (void)n, (void)c, (void)f, (void)kh, (void)kw, (void)pt, (void)pl;
    return sh == 1 && sw == 1 && oh == h && ow == w;
}

size_t KP(conv2d_fwd_work_size)(KDK_CONV_GEOM_PARAMS)
{
    size_t gemm = KP(gemm_work_size)(n * oh * ow, f, kh * kw * c), gather = 0;
    if (KI(pixelwise)(KGEOM) && !KI(pixelwise_dense)(KGEOM))
        gather = (size_t)n * (size_t)oh * (size_t)ow * (size_t)c + KDK_ALIGN / sizeof(KT);
    return gemm > gather ? gemm : gather;
}

/* Part `part` of a pixelwise convolution on the direct kernel: a run of
 * output pixels, gathered into work first when the convolution strides.
 * (Its slabs, fwd_slab, keep each pixel's channel order at 1×1: the same
 * bits at any split of the pixels.) */
static void KI(pixelwise_fwd)(int part, int nparts, KDK_CONV_GEOM_PARAMS, const KT *x, const KT *wt,
                              const KT *bias, int act, KT *y, KT *work)
{
    int lo, hi, ohw = oh * ow;
    kdk_split(n * ohw, KDK_MR_MAX, part, nparts, &lo, &hi);
    if (lo >= hi) return;
    const KT *xp = x + (ptrdiff_t)lo * c;
    if (!KI(pixelwise_dense)(KGEOM)) {
        KT *xs = (KT *)(((uintptr_t)work + KDK_ALIGN - 1) & ~(uintptr_t)(KDK_ALIGN - 1));
        for (int p = lo; p < hi; p++) {
            int b = p / ohw, oy = p % ohw / ow, ox = p % ow;
            memcpy(xs + (ptrdiff_t)(p - lo) * c, x + (((ptrdiff_t)b * h + oy * sh) * w + ox * sw) * c,
                   sizeof(KT) * (size_t)c);
        }
        xp = xs;
    }
    struct kdk_conv_geom g = {1, 1, hi - lo, c, 1, hi - lo, f, 1, 1, 1, 1, 0, 0};
    KI(fast_fwd)(0, 1, &g, xp, wt, bias, act, 0, y + (ptrdiff_t)lo * f);
}

/* Output pixels lo..hi without scratch. */
KDK_CONTRACT static void KI(conv_fwd_direct)(KDK_CONV_GEOM_PARAMS, int lo, int hi, const KT *x,
                                             const KT *wt, const KT *bias, int act, KT *y)
{
    int ohw = oh * ow;
    (void)n;
    for (int r = lo; r < hi; r++) {
        int b = r / ohw, oy = r % ohw / ow, ox = r % ow;
        KT *restrict yr = y + (ptrdiff_t)r * f;
        for (int o = 0; o < f; o++) yr[o] = bias ? bias[o] : 0;
        for (int ky = 0; ky < kh; ky++) {
            int iy = oy * sh + ky - pt;
            if (iy < 0 || iy >= h) continue;
            for (int kx = 0; kx < kw; kx++) {
                int ix = ox * sw + kx - pl;
                if (ix < 0 || ix >= w) continue;
                const KT *xp = x + (((ptrdiff_t)b * h + iy) * w + ix) * c;
                const KT *wp = wt + (ptrdiff_t)(ky * kw + kx) * c * f;
                for (int ci = 0; ci < c; ci++)
                    for (int o = 0; o < f; o++) yr[o] += xp[ci] * wp[(ptrdiff_t)ci * f + o];
            }
        }
        for (int o = 0; o < f; o++) {
            yr[o] = KACT(act, yr[o]);
        }
    }
}

void KP(conv2d_fwd_part)(int part, int nparts, KDK_CONV_GEOM_PARAMS, const KT *x, const KT *wt,
                         const KT *bias, int act, KT *y, KT *work)
{
    int lo, hi;
    /* The kernel per shape (measured on ResNet50's layers, docs/performance.md):
     *   - a 1×1 convolution on rows shorter than 16 pixels, images of 512
     *     pixels at most: the direct kernel over all the pixels as one row
     *     (pixelwise_fwd); strided, it gathers them first, which costs more
     *     than it saves on longer rows.  The choice depends on the image,
     *     not the batch: conv2d_pool_fwd's image at a time gets the same
     *     bits as conv2d_fwd on the whole batch;
     *   - a 1×1 convolution at stride 1 over 128 channels or more: the GEMM
     *     below, whose packed panels of filters stay in L1 over its many
     *     row tiles (the direct tile streams all c × NB vectors from L2);
     *   - every other shape with whole vectors of filters: the direct kernel. */
    int fast = work && KI(fast_ok)(f), pixelwise = KI(pixelwise)(KGEOM);
    int matrix = pixelwise && KI(pixelwise_dense)(KGEOM);
    if (fast && pixelwise && ow < 16 && oh * ow <= 512) {
        KI(pixelwise_fwd)(part, nparts, KGEOM, x, wt, bias, act, y, work);
        return;
    }
    if (fast && !(matrix && c >= 128)) {
        /* direct kernel: parts take whole output rows */
        struct kdk_conv_geom g = KI(geom)(KGEOM);
        KI(fast_fwd)(part, nparts, &g, x, wt, bias, act, 0, y);
        return;
    }
    kdk_split(n * oh * ow, KDK_MR_MAX, part, nparts, &lo, &hi);
    if (lo >= hi || f <= 0) return;
    if (!work) {
        KI(conv_fwd_direct)(KGEOM, lo, hi, x, wt, bias, act, y);
        return;
    }
    struct kdk_conv_geom g = KI(geom)(KGEOM);
    struct kdk_gemm_task t = {
        .m = hi - lo, .n = f, .k = kh * kw * c,
        .akind = KDK_A_IM2COL, .a = x, .g = &g, .a_i0 = lo,
        .b = wt, .ldb = f, .transb = 0,
        .beta.KS = 0, .c = y + (ptrdiff_t)lo * f, .ldc = f, .bias = bias, .act = act,
    };
    if (matrix) {
        /* a 1×1 convolution is a plain GEMM on the pixels */
        t.akind = KDK_A_MAT;
        t.a = x + (ptrdiff_t)lo * c;
        t.lda = c;
    }
    KP(gemm_task)(&t, work);
}

void KP(conv2d_fwd)(KDK_CONV_GEOM_PARAMS, const KT *x, const KT *wt, const KT *bias, int act,
                    KT *y, KT *work)
{
    KP(conv2d_fwd_part)(0, 1, KGEOM, x, wt, bias, act, y, work);
}

/* ---- forward, then max pooling ---- */

/* One image's convolution work, rounded up to a cache line, then its output. */
static size_t KI(pool_conv_work)(KDK_CONV_GEOM_PARAMS)
{
    (void)n;
    size_t line = KDK_ALIGN / sizeof(KT);
    return (KP(conv2d_fwd_work_size)(1, h, w, c, oh, ow, f, kh, kw, sh, sw, pt, pl) + line - 1) / line * line;
}

size_t KP(conv2d_pool_fwd_work_size)(KDK_CONV_GEOM_PARAMS)
{
    return KI(pool_conv_work)(KGEOM) + (size_t)oh * (size_t)ow * (size_t)f + KDK_ALIGN / sizeof(KT);
}

void KP(conv2d_pool_fwd_part)(int part, int nparts, KDK_CONV_GEOM_PARAMS, int pkh, int pkw, int psh,
                              int psw, const KT *x, const KT *wt, const KT *bias, int act, KT *y,
                              KT *work)
{
    int b0, b1;
    kdk_split(n, 1, part, nparts, &b0, &b1);
    int poh = (oh - pkh) / psh + 1, pow_ = (ow - pkw) / psw + 1;
    KT *cw = (KT *)(((uintptr_t)work + KDK_ALIGN - 1) & ~(uintptr_t)(KDK_ALIGN - 1));
    KT *img = cw + KI(pool_conv_work)(KGEOM);
    for (int b = b0; b < b1; b++) {
        KP(conv2d_fwd)(1, h, w, c, oh, ow, f, kh, kw, sh, sw, pt, pl, x + (ptrdiff_t)b * h * w * c, wt, bias,
                       act, img, cw);
        KP(maxpool2d_fwd)(1, oh, ow, f, poh, pow_, pkh, pkw, psh, psw, 0, 0, img,
                          y + (ptrdiff_t)b * poh * pow_ * f, NULL);
    }
}

void KP(conv2d_pool_fwd)(KDK_CONV_GEOM_PARAMS, int pkh, int pkw, int psh, int psw, const KT *x,
                         const KT *wt, const KT *bias, int act, KT *y, KT *work)
{
    KP(conv2d_pool_fwd_part)(0, 1, KGEOM, pkh, pkw, psh, psw, x, wt, bias, act, y, work);
}

/* ---- data gradient ---- */

/* The GEMM's packing space, or the flipped filters of the direct path. */
size_t KP(conv2d_bwd_data_work_size)(KDK_CONV_GEOM_PARAMS)
{
    (void)h, (void)w, (void)sh, (void)sw, (void)pt, (void)pl;
    size_t gw = KP(gemm_work_size)(n * oh * ow, kh * kw * c, f);
    size_t dw = (size_t)kh * (size_t)kw * (size_t)c * (size_t)f;
    return gw > dw ? gw : dw;
}

/* The data gradient at stride 1 is the forward convolution of dY (c' = f
 * channels) with the filters flipped in both spatial axes and transposed,
 * W'[kh-1-ky][kw-1-kx][o][ci] = W[ky][kx][ci][o], padded by kh-1-pt and
 * kw-1-pl: each dX tile sums all its taps in registers and is written once. */
static int KI(bwd_data_fast_ok)(KDK_CONV_GEOM_PARAMS)
{
    (void)n, (void)h, (void)w, (void)oh, (void)ow, (void)f;
    return sh == 1 && sw == 1 && pt <= kh - 1 && pl <= kw - 1 && pt >= 0 && pl >= 0 &&
           KI(fast_ok)(c);
}

static void KI(flip_filters)(int kh, int kw, int c, int f, const KT *wt, KT *wf)
{
    for (int ky = 0; ky < kh; ky++)
        for (int kx = 0; kx < kw; kx++) {
            const KT *src = wt + (ptrdiff_t)(ky * kw + kx) * c * f;
            KT *dst = wf + (ptrdiff_t)((kh - 1 - ky) * kw + (kw - 1 - kx)) * f * c;
            for (int ci = 0; ci < c; ci++)
                for (int o = 0; o < f; o++) dst[(ptrdiff_t)o * c + ci] = src[(ptrdiff_t)ci * f + o];
        }
}

/* Part `part` of dX with the flipped filters wf. */
static void KI(bwd_data_fast)(int part, int nparts, KDK_CONV_GEOM_PARAMS, const KT *dy,
                              const KT *wf, KT *dx, int accumulate)
{
    (void)sh, (void)sw;
    struct kdk_conv_geom g = {n, oh, ow, f, h, w, c, kh, kw, 1, 1, kh - 1 - pt, kw - 1 - pl};
    KI(fast_fwd)(part, nparts, &g, dy, wf, NULL, KDK_ACT_NONE, accumulate, dx);
}

KDK_CONTRACT static void KI(conv_bwd_data_direct)(KDK_CONV_GEOM_PARAMS, const KT *dy,
                                                  const KT *wt, KT *dx)
{
    int ohw = oh * ow;
    for (int p = 0; p < n * ohw; p++) {
        int b = p / ohw, oy = p % ohw / ow, ox = p % ow;
        const KT *dyr = dy + (ptrdiff_t)p * f;
        for (int ky = 0; ky < kh; ky++) {
            int iy = oy * sh + ky - pt;
            if (iy < 0 || iy >= h) continue;
            for (int kx = 0; kx < kw; kx++) {
                int ix = ox * sw + kx - pl;
                if (ix < 0 || ix >= w) continue;
                KT *d = dx + (((ptrdiff_t)b * h + iy) * w + ix) * c;
                const KT *wp = wt + (ptrdiff_t)(ky * kw + kx) * c * f;
                for (int ci = 0; ci < c; ci++) {
                    KT s = 0;
                    for (int o = 0; o < f; o++) s += dyr[o] * wp[(ptrdiff_t)ci * f + o];
                    d[ci] += s;
                }
            }
        }
    }
}

/* dcol[pix][kk] = dY[pix][f] · Wᵀ[f][kk], each tile added into dX as it is
 * written back (col2im fused into the GEMM). */
static void KI(conv_bwd_data)(KDK_CONV_GEOM_PARAMS, const KT *dy, const KT *wt, KT *dx,
                              int accumulate, KT *work)
{
    if (!accumulate) memset(dx, 0, sizeof(KT) * (size_t)n * (size_t)h * (size_t)w * (size_t)c);
    if (n * oh * ow <= 0 || f <= 0) return;
    if (!work) {
        KI(conv_bwd_data_direct)(KGEOM, dy, wt, dx);
        return;
    }
    struct kdk_conv_geom g = KI(geom)(KGEOM);
    struct kdk_gemm_task t = {
        .m = n * oh * ow, .n = kh * kw * c, .k = f,
        .akind = KDK_A_MAT, .a = dy, .lda = f, .transa = 0,
        .b = wt, .ldb = f, .transb = 1,
        .beta.KS = 1, .c = dx, .col2im = 1, .g = &g, .bias = NULL, .act = KDK_ACT_NONE,
    };
    KP(gemm_task)(&t, work);
}

/* Images are independent: parts take disjoint slices of the batch. */
void KP(conv2d_bwd_data_part)(int part, int nparts, KDK_CONV_GEOM_PARAMS, const KT *dy,
                              const KT *wt, KT *dx, int accumulate, KT *work)
{
    int lo, hi;
    if (work && KI(bwd_data_fast_ok)(KGEOM)) {
        /* every part flips the filters into its own workspace */
        KI(flip_filters)(kh, kw, c, f, wt, work);
        KI(bwd_data_fast)(part, nparts, KGEOM, dy, work, dx, accumulate);
        return;
    }
    kdk_split(n, 1, part, nparts, &lo, &hi);
    if (lo >= hi) return;
    KI(conv_bwd_data)(hi - lo, h, w, c, oh, ow, f, kh, kw, sh, sw, pt, pl,
                      dy + (ptrdiff_t)lo * oh * ow * f, wt, dx + (ptrdiff_t)lo * h * w * c, accumulate,
                      work);
}

void KP(conv2d_bwd_data)(KDK_CONV_GEOM_PARAMS, const KT *dy, const KT *wt, KT *dx,
                         int accumulate, KT *work)
{
    KP(conv2d_bwd_data_part)(0, 1, KGEOM, dy, wt, dx, accumulate, work);
}

/* ---- filter gradient ---- */

size_t KP(conv2d_bwd_filter_work_size)(KDK_CONV_GEOM_PARAMS)
{
    (void)h, (void)w, (void)sh, (void)sw, (void)pt, (void)pl;
    return KP(gemm_work_size)(kh * kw * c, f, n * oh * ow);
}

/* dW rows (ky,kx,c) in [r0, r1), filters [f0, f1), without scratch. */
KDK_CONTRACT static void KI(conv_bwd_filter_direct)(KDK_CONV_GEOM_PARAMS, int r0, int r1, int f0,
                                                    int f1, const KT *x, const KT *dy, KT *dwt,
                                                    int accumulate)
{
    int ohw = oh * ow;
    if (!accumulate)
        for (int r = r0; r < r1; r++)
            for (int o = f0; o < f1; o++) dwt[(ptrdiff_t)r * f + o] = 0;
    for (int p = 0; p < n * ohw; p++) {
        int b = p / ohw, oy = p % ohw / ow, ox = p % ow;
        const KT *dyr = dy + (ptrdiff_t)p * f;
        for (int ky = 0; ky < kh; ky++) {
            int iy = oy * sh + ky - pt;
            if (iy < 0 || iy >= h) continue;
            for (int kx = 0; kx < kw; kx++) {
                int ix = ox * sw + kx - pl;
                if (ix < 0 || ix >= w) continue;
                const KT *xp = x + (((ptrdiff_t)b * h + iy) * w + ix) * c;
                int rbase = (ky * kw + kx) * c;
                for (int ci = KDK_MAX(0, r0 - rbase); ci < c && rbase + ci < r1; ci++) {
                    KT *d = dwt + (ptrdiff_t)(rbase + ci) * f;
                    for (int o = f0; o < f1; o++) d[o] += xp[ci] * dyr[o];
                }
            }
        }
    }
}

/* Parts take disjoint rows (ky,kx,c) of dW, in blocks of 8 so that each part
 * gets whole micro-tiles (9 rows split 8 + 1: one tile each). */
void KP(conv2d_bwd_filter_part)(int part, int nparts, KDK_CONV_GEOM_PARAMS, const KT *x,
                                const KT *dy, KT *dwt, int accumulate, KT *work)
{
    int kk = kh * kw * c, r0 = 0, r1 = kk, f0 = 0, f1 = f;
    kdk_split(kk, 8, part, nparts, &r0, &r1);
    if (r0 >= r1 || f0 >= f1) return;
    if (work && KI(fast_ok)(f)) {
        struct kdk_conv_geom g = KI(geom)(KGEOM);
        if (n > 0 && oh > 0 && ow > 0) {
            KI(fast_dw)(&g, !KI(unpadded)(&g), r0, r1, x, dy, accumulate, dwt);
        } else if (!accumulate) {
            for (int r = r0; r < r1; r++)
                for (int o = 0; o < f; o++) dwt[(ptrdiff_t)r * f + o] = 0;
        }
        return;
    }
    if (!work) {
        KI(conv_bwd_filter_direct)(KGEOM, r0, r1, f0, f1, x, dy, dwt, accumulate);
        return;
    }
    struct kdk_conv_geom g = KI(geom)(KGEOM);
    struct kdk_gemm_task t = {
        .m = r1 - r0, .n = f1 - f0, .k = n * oh * ow,
        .akind = KDK_A_IM2COL_T, .a = x, .g = &g, .a_i0 = r0,
        .b = dy + f0, .ldb = f, .transb = 0,
        .beta.KS = accumulate ? 1 : 0, .c = dwt + (ptrdiff_t)r0 * f + f0, .ldc = f,
        .bias = NULL, .act = KDK_ACT_NONE,
    };
    KP(gemm_task)(&t, work);
}

void KP(conv2d_bwd_filter)(KDK_CONV_GEOM_PARAMS, const KT *x, const KT *dy, KT *dwt,
                           int accumulate, KT *work)
{
    KP(conv2d_bwd_filter_part)(0, 1, KGEOM, x, dy, dwt, accumulate, work);
}

#undef KI
#undef KGEOM

#endif /* KVB */
