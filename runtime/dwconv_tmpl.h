/* dwconv_tmpl.h — depthwise 2-D convolution over NHWC for one element type.
 *
 * dwconv.c includes this file in two modes, as pool.c does pool_tmpl.h:
 *   - with KVB defined (vector bytes), KV(x) and KTGT (a target attribute,
 *     maybe empty): the vector kernels of one instruction set, for a depth
 *     multiplier of 1 and the channels [c0, c0 + whole vectors);
 *   - without KVB: the entry points of one element type (KT, KS, KP(x)),
 *     which run the vector kernels of the best instruction set on the
 *     whole vectors of channels and portable loops on the rest.
 *
 * Channels are innermost (NHWC), so every inner loop runs along them a
 * vector at a time, with no test inside: the taps that fall in the padding
 * are cut from the tap loops' bounds, once per output pixel. Each element is
 * summed in one fixed order whatever the split across threads: the forward
 * and the data gradient over the taps (rows, then columns), the filter
 * gradient over the images, then the output rows, each row's sum over its
 * pixels taken first (in four interleaved partial sums, added in one fixed
 * order) and added to the element. */
#ifdef KVB

#include "isa_vectors.h"

/* bias, then the activation (ReLU in the vector; the others lane by lane) */
KINL void KV(out)(KT *y, V acc, const KT *bias, int act)
{
    if (bias) acc += KV(ld)(bias);
    if (act == KDK_ACT_RELU) {
        V zero = {0};
        acc = (V)((VI)acc & ~(VI)(acc <= zero)); /* keeps NaN */
    }
    KV(st)(y, acc);
    if (act != KDK_ACT_NONE && act != KDK_ACT_RELU)
        for (int l = 0; l < VL; l++) y[l] = KACT(act, y[l]);
}

/* Forward, output rows [r0, r1) of n*oh, channels [0, c / VL * VL); returns
 * how many channels it did (0 unless the multiplier is 1). Four output pixels
 * at a time where their windows all avoid the side padding, so each weight
 * vector loaded serves four multiply-adds. */
KTGT KDK_CONTRACT static int KV(dw_fwd)(const struct kdk_dw_geom *g, int r0, int r1, const KT *x, const KT *wt,
                                        const KT *bias, int act, KT *y)
{
    int h = g->h, w = g->w, c = g->c, oh = g->oh, ow = g->ow, kh = g->kh, kw = g->kw;
    int sw = g->sw, pl = g->pl, dh = g->dh, dw = g->dw, cv = c / VL * VL;
    if (g->m != 1 || cv == 0) return 0;
    ptrdiff_t xs = (ptrdiff_t)sw * c, js = (ptrdiff_t)dw * c, is = (ptrdiff_t)dh * w * c;
    for (int r = r0; r < r1; r++) {
        int b = r / oh, oy = r % oh, ty = oy * g->sh - g->pt, i0, i1;
        kdk_dw_taps(ty, h, kh, dh, &i0, &i1);
        const KT *xr = x + ((ptrdiff_t)b * h + ty) * w * c;   /* row ty (maybe outside) */
        KT *yr = y + (ptrdiff_t)r * ow * c;
        for (int ox = 0; ox < ow;) {
            int tx = ox * sw - pl, j0, j1;
            const KT *xp = xr + (ptrdiff_t)tx * c;
            if (tx >= 0 && ox + 4 <= ow && (ox + 3) * sw - pl + (kw - 1) * dw < w) {
                for (int cb = 0; cb < cv; cb += VL) {
                    V a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
                    for (int i = i0; i < i1; i++) {
                        const KT *xi = xp + i * is + cb, *wi = wt + (ptrdiff_t)i * kw * c + cb;
                        for (int j = 0; j < kw; j++) {
                            V wv = KV(ld)(wi + (ptrdiff_t)j * c);
                            const KT *xj = xi + j * js;
                            a0 += KV(ld)(xj) * wv;
                            a1 += KV(ld)(xj + xs) * wv;
                            a2 += KV(ld)(xj + 2 * xs) * wv;
                            a3 += KV(ld)(xj + 3 * xs) * wv;
                        }
                    }
                    KT *yp = yr + (ptrdiff_t)ox * c + cb;
                    const KT *bp = bias ? bias + cb : NULL;
                    KV(out)(yp, a0, bp, act);
                    KV(out)(yp + c, a1, bp, act);
                    KV(out)(yp + 2 * c, a2, bp, act);
                    KV(out)(yp + 3 * c, a3, bp, act);
                }
                ox += 4;
                continue;
            }
            kdk_dw_taps(tx, w, kw, dw, &j0, &j1);
            int cb = 0;
            for (; cb + 4 * VL <= cv; cb += 4 * VL) {   /* four vectors of channels a pass over the taps */
                V a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
                for (int i = i0; i < i1; i++) {
                    const KT *xi = xp + i * is + cb, *wi = wt + (ptrdiff_t)i * kw * c + cb;
                    for (int j = j0; j < j1; j++) {
                        const KT *xj = xi + j * js, *wj = wi + (ptrdiff_t)j * c;
                        a0 += KV(ld)(xj) * KV(ld)(wj);
                        a1 += KV(ld)(xj + VL) * KV(ld)(wj + VL);
                        a2 += KV(ld)(xj + 2 * VL) * KV(ld)(wj + 2 * VL);
                        a3 += KV(ld)(xj + 3 * VL) * KV(ld)(wj + 3 * VL);
                    }
                }
                KT *yp = yr + (ptrdiff_t)ox * c + cb;
                const KT *bp = bias ? bias + cb : NULL;
                KV(out)(yp, a0, bp, act);
                KV(out)(yp + VL, a1, bp ? bp + VL : NULL, act);
                KV(out)(yp + 2 * VL, a2, bp ? bp + 2 * VL : NULL, act);
                KV(out)(yp + 3 * VL, a3, bp ? bp + 3 * VL : NULL, act);
            }
            for (; cb < cv; cb += VL) {
                V a = {0};
                for (int i = i0; i < i1; i++) {
                    const KT *xi = xp + i * is + cb, *wi = wt + (ptrdiff_t)i * kw * c + cb;
                    for (int j = j0; j < j1; j++) a += KV(ld)(xi + j * js) * KV(ld)(wi + (ptrdiff_t)j * c);
                }
                KV(out)(yr + (ptrdiff_t)ox * c + cb, a, bias ? bias + cb : NULL, act);
            }
            ox++;
        }
    }
    return cv;
}

/* Data gradient, rows [r0, r1) of dx (n*h), channels [0, c / VL * VL):
 * each dx element gathers dy * w over the taps that read it. The taps of a
 * column (which ones, and where their dy lies) are the same in every row:
 * they are worked out once per block of KDW_COLS columns, not per pixel
 * (their divisions cost more than a pixel's arithmetic at 32 channels). */
KTGT KDK_CONTRACT static int KV(dw_data)(const struct kdk_dw_geom *g, int r0, int r1, const KT *dy, const KT *wt,
                                         KT *dx, int accumulate)
{
    int h = g->h, w = g->w, c = g->c, oh = g->oh, ow = g->ow, kh = g->kh, kw = g->kw, cv = c / VL * VL;
    struct { int n, j0, ox0; } col[KDW_COLS];
    if (g->m != 1 || cv == 0) return 0;
    for (int xa = 0; xa < w; xa += KDW_COLS) {
        int xb = KDK_MIN(w, xa + KDW_COLS), jstep = 1, oxdec = 0;
        for (int ix = xa; ix < xb; ix++) {
            col[ix - xa].j0 = col[ix - xa].ox0 = 0;
            col[ix - xa].n = kdk_dw_back_taps(ix + g->pl, kw, ow, g->sw, g->dw, &col[ix - xa].j0, &jstep,
                                              &col[ix - xa].ox0, &oxdec);
        }
        ptrdiff_t yj = -(ptrdiff_t)oxdec * c, wjs = (ptrdiff_t)jstep * c;
        for (int r = r0; r < r1; r++) {
            int b = r / h, iy = r % h, i0 = 0, istep = 1, oy0 = 0, oydec = 0;
            int ni = kdk_dw_back_taps(iy + g->pt, kh, oh, g->sh, g->dh, &i0, &istep, &oy0, &oydec);
            KT *dxr = dx + (ptrdiff_t)r * w * c;
            const KT *dyr = dy + ((ptrdiff_t)b * oh + oy0) * ow * c, *wr = wt + (ptrdiff_t)i0 * kw * c;
            ptrdiff_t yi = -(ptrdiff_t)oydec * ow * c, wis = (ptrdiff_t)istep * kw * c;
            for (int ix = xa; ix < xb; ix++) {
                int nj = ni ? col[ix - xa].n : 0;
                KT *d = dxr + (ptrdiff_t)ix * c;
                const KT *y0 = dyr + (ptrdiff_t)col[ix - xa].ox0 * c, *w0 = wr + (ptrdiff_t)col[ix - xa].j0 * c;
                for (int cb = 0; cb < cv; cb += VL) {
                    V a = accumulate ? KV(ld)(d + cb) : (V){0};
                    const KT *yp = y0 + cb, *wp = w0 + cb;
                    for (int ti = 0; ti < ni; ti++, yp += yi, wp += wis)
                        for (int tj = 0; tj < nj; tj++) a += KV(ld)(yp + tj * yj) * KV(ld)(wp + tj * wjs);
                    KV(st)(d + cb, a);
                }
            }
        }
    }
    return cv;
}

/* Filter gradient of channels [c0, c0 + whole vectors of c1 - c0) and kernel
 * rows [ia, ib); returns how many channels it did. */
KTGT KDK_CONTRACT static int KV(dw_filter)(const struct kdk_dw_geom *g, int c0, int c1, int ia, int ib, const KT *x,
                                           const KT *dy, KT *dwt, int accumulate)
{
    int h = g->h, w = g->w, c = g->c, oh = g->oh, ow = g->ow, kw = g->kw, sw = g->sw, pl = g->pl, dw = g->dw;
    int cv = (c1 - c0) / VL * VL;
    if (g->m != 1 || cv == 0) return 0;
    if (!accumulate)
        for (int t = ia * kw; t < ib * kw; t++) memset(dwt + (ptrdiff_t)t * c + c0, 0, sizeof(KT) * (size_t)cv);
    ptrdiff_t xs = (ptrdiff_t)sw * c;
    for (int b = 0; b < g->n; b++)
        for (int oy = 0; oy < oh; oy++) {
            const KT *dyr = dy + (((ptrdiff_t)b * oh + oy) * ow) * c + c0;
            for (int i = ia; i < ib; i++) {
                int iy = oy * g->sh - g->pt + i * g->dh;
                if (iy < 0 || iy >= h) continue;
                const KT *xr = x + (((ptrdiff_t)b * h + iy) * w) * c + c0;
                for (int j = 0; j < kw; j++) {
                    /* the output columns whose tap j reads inside the row */
                    int o0, o1, off = j * dw - pl;
                    o0 = off >= 0 ? 0 : sw == 1 ? -off : kdk_dw_ceildiv(-off, sw);
                    o1 = w - off <= 0 ? 0 : KDK_MIN(ow, sw == 1 ? w - off : kdk_dw_ceildiv(w - off, sw));
                    KT *dp = dwt + ((ptrdiff_t)i * kw + j) * c + c0;
                    for (int cb = 0; cb < cv; cb += VL) {
                        V a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
                        const KT *xp = xr + (ptrdiff_t)off * c + cb, *gp = dyr + cb;
                        int ox = o0;
                        for (; ox + 4 <= o1; ox += 4) {
                            a0 += KV(ld)(xp + ox * xs) * KV(ld)(gp + (ptrdiff_t)ox * c);
                            a1 += KV(ld)(xp + (ox + 1) * xs) * KV(ld)(gp + (ptrdiff_t)(ox + 1) * c);
                            a2 += KV(ld)(xp + (ox + 2) * xs) * KV(ld)(gp + (ptrdiff_t)(ox + 2) * c);
                            a3 += KV(ld)(xp + (ox + 3) * xs) * KV(ld)(gp + (ptrdiff_t)(ox + 3) * c);
                        }
                        for (; ox < o1; ox++) a0 += KV(ld)(xp + ox * xs) * KV(ld)(gp + (ptrdiff_t)ox * c);
                        KV(st)(dp + cb, KV(ld)(dp + cb) + ((a0 + a1) + (a2 + a3)));
                    }
                }
            }
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

#define KDWARGS n, h, w, c, oh, ow, m, kh, kw, sh, sw, pt, pl, dih, diw

static struct kdk_dw_geom KI(dw_geom)(KDK_DW_GEOM_PARAMS)
{
    struct kdk_dw_geom g = {n, h, w, c, oh, ow, m, kh, kw, sh, sw, pt, pl, dih > 1 ? dih : 1, diw > 1 ? diw : 1};
    return g;
}

#ifdef KDK_FAST_DIRECT
/* The vector kernels take a multiplier of 1 and s == 1 or d == 1 along each
 * axis (Keras allows no other). Their instruction set: the best one this CPU
 * runs whose vectors divide the channels, else the best one (the channels
 * past its last whole vector go to the portable loops). It depends on the
 * channels alone, so every part of a split takes the same one: base and
 * AVX2 round differently (FMA), and the results must not depend on the
 * thread count. -1: the portable loops only. */
static int KI(dw_isa)(const struct kdk_dw_geom *g)
{
    if (g->m != 1 || (g->sh != 1 && g->dh != 1) || (g->sw != 1 && g->dw != 1)) return -1;
    int best = kdk_fast_isa(), c = g->c;
#ifdef KDK_FAST_AVX512
    if (best == KDK_ISA_AVX512 && c % (64 / (int)sizeof(KT)) == 0) return best;
#endif
#ifdef KDK_FAST_AVX2
    if (best >= KDK_ISA_AVX2 && c % (32 / (int)sizeof(KT)) == 0) return KDK_ISA_AVX2;
#endif
    if (c % (KDK_FAST_BASE_VB / (int)sizeof(KT)) == 0) return KDK_ISA_BASE;
    return best;
}

#define KDW_DISPATCH(fn, isa, ...)                                                                       \
    do {                                                                                                 \
        switch (isa) {                                                                                   \
        KDW_CASE512(fn, __VA_ARGS__)                                                                     \
        KDW_CASE2(fn, __VA_ARGS__)                                                                       \
        case KDK_ISA_BASE: return KDK_CAT(KI(fn), _base)(__VA_ARGS__);                                   \
        default: return 0;                                                                               \
        }                                                                                                \
    } while (0)
#ifdef KDK_FAST_AVX512
#define KDW_CASE512(fn, ...) case KDK_ISA_AVX512: return KDK_CAT(KI(fn), _avx512)(__VA_ARGS__);
#else
#define KDW_CASE512(fn, ...)
#endif
#ifdef KDK_FAST_AVX2
#define KDW_CASE2(fn, ...) case KDK_ISA_AVX2: return KDK_CAT(KI(fn), _avx2)(__VA_ARGS__);
#else
#define KDW_CASE2(fn, ...)
#endif

static int KI(dw_fast_fwd)(const struct kdk_dw_geom *g, int r0, int r1, const KT *x, const KT *wt, const KT *bias,
                           int act, KT *y)
{
    KDW_DISPATCH(dw_fwd, KI(dw_isa)(g), g, r0, r1, x, wt, bias, act, y);
}

static int KI(dw_fast_data)(const struct kdk_dw_geom *g, int r0, int r1, const KT *dy, const KT *wt, KT *dx,
                            int accumulate)
{
    KDW_DISPATCH(dw_data, KI(dw_isa)(g), g, r0, r1, dy, wt, dx, accumulate);
}

static int KI(dw_fast_filter)(const struct kdk_dw_geom *g, int c0, int c1, int ia, int ib, const KT *x,
                              const KT *dy, KT *dwt, int accumulate)
{
    KDW_DISPATCH(dw_filter, KI(dw_isa)(g), g, c0, c1, ia, ib, x, dy, dwt, accumulate);
}
#undef KDW_DISPATCH
#undef KDW_CASE512
#undef KDW_CASE2
#endif

/* ---- the portable loops: channels [c0, c) with every multiplier, all
 * strides and dilations; the tests at tap level, none along the channels ---- */

static void KI(dw_fwd_loops)(const struct kdk_dw_geom *g, int r0, int r1, int c0, const KT *x, const KT *wt,
                             const KT *bias, int act, KT *y)
{
    int h = g->h, w = g->w, c = g->c, m = g->m, cm = c * m, oh = g->oh, ow = g->ow, kh = g->kh, kw = g->kw;
    for (int r = r0; r < r1; r++) {
        int b = r / oh, ty = r % oh * g->sh - g->pt, i0, i1;
        kdk_dw_taps(ty, h, kh, g->dh, &i0, &i1);
        for (int ox = 0; ox < ow; ox++) {
            int tx = ox * g->sw - g->pl, j0, j1;
            kdk_dw_taps(tx, w, kw, g->dw, &j0, &j1);
            KT *yp = y + ((ptrdiff_t)r * ow + ox) * cm;
            for (int k = c0 * m; k < cm; k++) yp[k] = 0;
            for (int i = i0; i < i1; i++)
                for (int j = j0; j < j1; j++) {
                    const KT *xp = x + (((ptrdiff_t)b * h + ty + i * g->dh) * w + tx + j * g->dw) * c;
                    const KT *wp = wt + ((ptrdiff_t)i * kw + j) * cm;
                    if (m == 1)
                        for (int ch = c0; ch < c; ch++) yp[ch] += xp[ch] * wp[ch];
                    else
                        for (int ch = c0; ch < c; ch++)
                            for (int q = 0; q < m; q++) yp[ch * m + q] += xp[ch] * wp[ch * m + q];
                }
            for (int k = c0 * m; k < cm; k++) yp[k] = KACT(act, yp[k] + (bias ? bias[k] : 0));
        }
    }
}

static void KI(dw_data_loops)(const struct kdk_dw_geom *g, int r0, int r1, int c0, const KT *dy, const KT *wt,
                              KT *dx, int accumulate)
{
    int h = g->h, w = g->w, c = g->c, m = g->m, cm = c * m, oh = g->oh, ow = g->ow, kh = g->kh, kw = g->kw;
    for (int r = r0; r < r1; r++) {
        int b = r / h, iy = r % h;
        for (int ix = 0; ix < w; ix++) {
            KT *d = dx + ((ptrdiff_t)r * w + ix) * c;
            if (!accumulate)
                for (int ch = c0; ch < c; ch++) d[ch] = 0;
            for (int i = 0; i < kh; i++) {
                int oys = iy + g->pt - i * g->dh, oy = oys / g->sh;
                if (oys < 0 || oy * g->sh != oys || oy >= oh) continue;
                for (int j = 0; j < kw; j++) {
                    int oxs = ix + g->pl - j * g->dw, ox = oxs / g->sw;
                    if (oxs < 0 || ox * g->sw != oxs || ox >= ow) continue;
                    const KT *gp = dy + (((ptrdiff_t)b * oh + oy) * ow + ox) * cm;
                    const KT *wp = wt + ((ptrdiff_t)i * kw + j) * cm;
                    for (int ch = c0; ch < c; ch++) {
                        KT s = 0;
                        for (int q = 0; q < m; q++) s += gp[ch * m + q] * wp[ch * m + q];
                        d[ch] += s;
                    }
                }
            }
        }
    }
}

/* channels [c0, c1), kernel rows [ia, ib) */
static void KI(dw_filter_loops)(const struct kdk_dw_geom *g, int c0, int c1, int ia, int ib, const KT *x,
                                const KT *dy, KT *dwt, int accumulate)
{
    int h = g->h, w = g->w, c = g->c, m = g->m, cm = c * m, oh = g->oh, ow = g->ow, kw = g->kw;
    if (!accumulate)
        for (int t = ia * kw; t < ib * kw; t++)
            for (int k = c0 * m; k < c1 * m; k++) dwt[(ptrdiff_t)t * cm + k] = 0;
    for (int b = 0; b < g->n; b++)
        for (int oy = 0; oy < oh; oy++)
            for (int i = ia; i < ib; i++) {
                int iy = oy * g->sh - g->pt + i * g->dh;
                if (iy < 0 || iy >= h) continue;
                for (int j = 0; j < kw; j++) {
                    KT *dp = dwt + ((ptrdiff_t)i * kw + j) * cm;
                    for (int ox = 0; ox < ow; ox++) {
                        int ix = ox * g->sw - g->pl + j * g->dw;
                        if (ix < 0 || ix >= w) continue;
                        const KT *xp = x + (((ptrdiff_t)b * h + iy) * w + ix) * c;
                        const KT *gp = dy + (((ptrdiff_t)b * oh + oy) * ow + ox) * cm;
                        for (int ch = c0; ch < c1; ch++)
                            for (int q = 0; q < m; q++) dp[ch * m + q] += xp[ch] * gp[ch * m + q];
                    }
                }
            }
}

/* ---- entry points ---- */

void KP(dwconv2d_fwd_part)(int part, int nparts, KDK_DW_GEOM_PARAMS, const KT *x, const KT *wt, const KT *bias,
                           int act, KT *y)
{
    struct kdk_dw_geom g = KI(dw_geom)(n, h, w, c, oh, ow, m, kh, kw, sh, sw, pt, pl, dih, diw);
    int r0, r1, done = 0;
    kdk_split(n * oh, 1, part, nparts, &r0, &r1);
    if (r0 >= r1) return;
#ifdef KDK_FAST_DIRECT
    done = KI(dw_fast_fwd)(&g, r0, r1, x, wt, bias, act, y);
#endif
    if (done < c) KI(dw_fwd_loops)(&g, r0, r1, done, x, wt, bias, act, y);
}

void KP(dwconv2d_fwd)(KDK_DW_GEOM_PARAMS, const KT *x, const KT *wt, const KT *bias, int act, KT *y)
{
    KP(dwconv2d_fwd_part)(0, 1, KDWARGS, x, wt,
                          bias, act, y);
}

void KP(dwconv2d_bwd_data_part)(int part, int nparts, KDK_DW_GEOM_PARAMS, const KT *dy, const KT *wt, KT *dx,
                                int accumulate)
{
    struct kdk_dw_geom g = KI(dw_geom)(n, h, w, c, oh, ow, m, kh, kw, sh, sw, pt, pl, dih, diw);
    int r0, r1, done = 0;
    kdk_split(n * h, 1, part, nparts, &r0, &r1);
    if (r0 >= r1) return;
#ifdef KDK_FAST_DIRECT
    done = KI(dw_fast_data)(&g, r0, r1, dy, wt, dx, accumulate);
#endif
    if (done < c) KI(dw_data_loops)(&g, r0, r1, done, dy, wt, dx, accumulate);
}

void KP(dwconv2d_bwd_data)(KDK_DW_GEOM_PARAMS, const KT *dy, const KT *wt, KT *dx, int accumulate)
{
    KP(dwconv2d_bwd_data_part)(0, 1, KDWARGS, dy,
                               wt, dx, accumulate);
}

/* channels [c0, c1) and kernel rows [ia, ib): the vector kernel's whole
 * vectors, the loops the rest */
static void KI(dw_filter_block)(const struct kdk_dw_geom *g, int c0, int c1, int ia, int ib, const KT *x,
                                const KT *dy, KT *dwt, int accumulate)
{
    int done = 0;
#ifdef KDK_FAST_DIRECT
    done = KI(dw_fast_filter)(g, c0, c1, ia, ib, x, dy, dwt, accumulate);
#endif
    if (c0 + done < c1) KI(dw_filter_loops)(g, c0 + done, c1, ia, ib, x, dy, dwt, accumulate);
}

/* The split: units of (KDK_DW_UNIT_CH channels, one kernel row), channel
 * block major; a part runs its units a channel block at a time. */
void KP(dwconv2d_bwd_filter_part)(int part, int nparts, KDK_DW_GEOM_PARAMS, const KT *x, const KT *dy, KT *dwt,
                                  int accumulate)
{
    struct kdk_dw_geom g = KI(dw_geom)(n, h, w, c, oh, ow, m, kh, kw, sh, sw, pt, pl, dih, diw);
    if (nparts <= 1) {
        KI(dw_filter_block)(&g, 0, c, 0, kh, x, dy, dwt, accumulate);
        return;
    }
    int blocks = (c + KDK_DW_UNIT_CH - 1) / KDK_DW_UNIT_CH, u0, u1;
    kdk_split(blocks * kh, 1, part, nparts, &u0, &u1);
    while (u0 < u1) {
        int blk = u0 / kh, ia = u0 % kh, ib = KDK_MIN(kh, ia + (u1 - u0));
        KI(dw_filter_block)(&g, blk * KDK_DW_UNIT_CH, KDK_MIN(c, (blk + 1) * KDK_DW_UNIT_CH), ia, ib, x, dy, dwt,
                            accumulate);
        u0 += ib - ia;
    }
}

void KP(dwconv2d_bwd_filter)(KDK_DW_GEOM_PARAMS, const KT *x, const KT *dy, KT *dwt, int accumulate)
{
    KP(dwconv2d_bwd_filter_part)(0, 1, KDWARGS, x,
                                 dy, dwt, accumulate);
}

#undef KDWARGS
#undef KI

#endif /* KVB */
