/* conv_tmpl.h — Conv2D NHWC forward and backward for one element type.
 * conv.c includes this for float and double with KT, KS, KP(x) defined.
 *
 * All three are GEMMs on the packed driver (gemm_tmpl.h):
 *   forward      Y[pix][f]  = im2col(X)[pix][kk] · W[kk][f]        (+bias, act)
 *   filter grad  dW[kk][f]  = im2col(X)ᵀ[kk][pix] · dY[pix][f]
 *   data grad    dX        += col2im(dY[pix][f] · Wᵀ[f][kk])
 * with pix = (n, oy, ox) and kk = (ky, kx, c).  The column matrix is never
 * stored: the driver reads the image in place or packs panels from it, and
 * the data gradient adds each tile into dX as it is written back. */

#define KI(x) KDK_CAT(KDK_CAT(x, _), KS)
#define KGEOM n, h, w, c, oh, ow, f, kh, kw, sh, sw, pt, pl

static struct kdk_conv_geom KI(geom)(KDK_CONV_GEOM_PARAMS)
{
    struct kdk_conv_geom g = {KGEOM};
    return g;
}

/* ---- forward ---- */

size_t KP(conv2d_fwd_work_size)(KDK_CONV_GEOM_PARAMS)
{
    (void)h, (void)w, (void)sh, (void)sw, (void)pt, (void)pl;
    return KP(gemm_work_size)(n * oh * ow, f, kh * kw * c);
}

/* Output pixels lo..hi without scratch. */
KDK_CONTRACT static void KI(conv_fwd_direct)(KDK_CONV_GEOM_PARAMS, int lo, int hi, const KT *x,
                                             const KT *wt, const KT *bias, int act, KT *y)
{
    int ohw = oh * ow;
    (void)n;
    for (int r = lo; r < hi; r++) {
        int b = r / ohw, oy = r % ohw / ow, ox = r % ow;
        KT *restrict yr = y + (size_t)r * f;
        for (int o = 0; o < f; o++) yr[o] = bias ? bias[o] : 0;
        for (int ky = 0; ky < kh; ky++) {
            int iy = oy * sh + ky - pt;
            if (iy < 0 || iy >= h) continue;
            for (int kx = 0; kx < kw; kx++) {
                int ix = ox * sw + kx - pl;
                if (ix < 0 || ix >= w) continue;
                const KT *xp = x + (((size_t)b * h + iy) * w + ix) * c;
                const KT *wp = wt + (size_t)(ky * kw + kx) * c * f;
                for (int ci = 0; ci < c; ci++)
                    for (int o = 0; o < f; o++) yr[o] += xp[ci] * wp[(size_t)ci * f + o];
            }
        }
        for (int o = 0; o < f; o++) {
            KT v = yr[o];
            switch (act) {
            case KDK_ACT_RELU: v = v <= 0 ? 0 : v; break;
            case KDK_ACT_SIGMOID: v = 1 / (1 + KEXP(-v)); break;
            case KDK_ACT_TANH: v = KTANH(v); break;
            default: break;
            }
            yr[o] = v;
        }
    }
}

void KP(conv2d_fwd_part)(int part, int nparts, KDK_CONV_GEOM_PARAMS, const KT *x, const KT *wt,
                         const KT *bias, int act, KT *y, KT *work)
{
    int lo, hi;
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
        .beta = 0, .c = y + (size_t)lo * f, .ldc = f, .bias = bias, .act = act,
    };
    if (kh == 1 && kw == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && oh == h && ow == w) {
        /* a 1×1 convolution is a plain GEMM on the pixels */
        t.akind = KDK_A_MAT;
        t.a = x + (size_t)lo * c;
        t.lda = c;
    }
    KP(gemm_task)(&t, work);
}

void KP(conv2d_fwd)(KDK_CONV_GEOM_PARAMS, const KT *x, const KT *wt, const KT *bias, int act,
                    KT *y, KT *work)
{
    KP(conv2d_fwd_part)(0, 1, KGEOM, x, wt, bias, act, y, work);
}

/* ---- data gradient ---- */

size_t KP(conv2d_bwd_data_work_size)(KDK_CONV_GEOM_PARAMS)
{
    (void)h, (void)w, (void)sh, (void)sw, (void)pt, (void)pl;
    return KP(gemm_work_size)(n * oh * ow, kh * kw * c, f);
}

KDK_CONTRACT static void KI(conv_bwd_data_direct)(KDK_CONV_GEOM_PARAMS, const KT *dy,
                                                  const KT *wt, KT *dx)
{
    int ohw = oh * ow;
    for (int p = 0; p < n * ohw; p++) {
        int b = p / ohw, oy = p % ohw / ow, ox = p % ow;
        const KT *dyr = dy + (size_t)p * f;
        for (int ky = 0; ky < kh; ky++) {
            int iy = oy * sh + ky - pt;
            if (iy < 0 || iy >= h) continue;
            for (int kx = 0; kx < kw; kx++) {
                int ix = ox * sw + kx - pl;
                if (ix < 0 || ix >= w) continue;
                KT *d = dx + (((size_t)b * h + iy) * w + ix) * c;
                const KT *wp = wt + (size_t)(ky * kw + kx) * c * f;
                for (int ci = 0; ci < c; ci++) {
                    KT s = 0;
                    for (int o = 0; o < f; o++) s += dyr[o] * wp[(size_t)ci * f + o];
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
    if (!accumulate) memset(dx, 0, sizeof(KT) * (size_t)n * h * w * c);
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
        .beta = 1, .c = dx, .col2im = 1, .g = &g, .bias = NULL, .act = KDK_ACT_NONE,
    };
    KP(gemm_task)(&t, work);
}

/* Images are independent: parts take disjoint slices of the batch. */
void KP(conv2d_bwd_data_part)(int part, int nparts, KDK_CONV_GEOM_PARAMS, const KT *dy,
                              const KT *wt, KT *dx, int accumulate, KT *work)
{
    int lo, hi;
    kdk_split(n, 1, part, nparts, &lo, &hi);
    if (lo >= hi) return;
    KI(conv_bwd_data)(hi - lo, h, w, c, oh, ow, f, kh, kw, sh, sw, pt, pl,
                      dy + (size_t)lo * oh * ow * f, wt, dx + (size_t)lo * h * w * c, accumulate,
                      work);
}

void KP(conv2d_bwd_data)(KDK_CONV_GEOM_PARAMS, const KT *dy, const KT *wt, KT *dx,
                         int accumulate, KT *work)
{
    KI(conv_bwd_data)(KGEOM, dy, wt, dx, accumulate, work);
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
            for (int o = f0; o < f1; o++) dwt[(size_t)r * f + o] = 0;
    for (int p = 0; p < n * ohw; p++) {
        int b = p / ohw, oy = p % ohw / ow, ox = p % ow;
        const KT *dyr = dy + (size_t)p * f;
        for (int ky = 0; ky < kh; ky++) {
            int iy = oy * sh + ky - pt;
            if (iy < 0 || iy >= h) continue;
            for (int kx = 0; kx < kw; kx++) {
                int ix = ox * sw + kx - pl;
                if (ix < 0 || ix >= w) continue;
                const KT *xp = x + (((size_t)b * h + iy) * w + ix) * c;
                int rbase = (ky * kw + kx) * c;
                for (int ci = KDK_MAX(0, r0 - rbase); ci < c && rbase + ci < r1; ci++) {
                    KT *d = dwt + (size_t)(rbase + ci) * f;
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
    if (!work) {
        KI(conv_bwd_filter_direct)(KGEOM, r0, r1, f0, f1, x, dy, dwt, accumulate);
        return;
    }
    struct kdk_conv_geom g = KI(geom)(KGEOM);
    struct kdk_gemm_task t = {
        .m = r1 - r0, .n = f1 - f0, .k = n * oh * ow,
        .akind = KDK_A_IM2COL_T, .a = x, .g = &g, .a_i0 = r0,
        .b = dy + f0, .ldb = f, .transb = 0,
        .beta = accumulate ? 1 : 0, .c = dwt + (size_t)r0 * f + f0, .ldc = f,
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
