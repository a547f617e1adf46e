/* pool_tmpl.h — NHWC pooling for one element type.
 * pool.c includes this for float and double with KT, KS, KP(x) defined.
 * Channels are innermost, so every loop runs along c with unit stride. */

#define KI(x) KDK_CAT(KDK_CAT(x, _), KS)
#define KGEOM n, h, w, c, oh, ow, kh, kw, sh, sw, pt, pl

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

/* Max and its index over the window of (oy, ox) for channels [c0, c0+nc),
 * nc <= 64; best/idx get nc entries.  The first maximum wins; NaN wins over
 * numbers.  Returns 0 for an empty window. */
static int KI(window_max)(KDK_POOL_GEOM_PARAMS, const KT *img, int oy, int ox, int c0, int nc,
                          KT *best, int32_t *idx)
{
    int y0, y1, x0, x1;
    KI(window)(KGEOM, oy, ox, &y0, &y1, &x0, &x1);
    if (y0 >= y1 || x0 >= x1) return 0;
    for (int iy = y0; iy < y1; iy++)
        for (int ix = x0; ix < x1; ix++) {
            int32_t base = (int32_t)((iy * w + ix) * c + c0);
            const KT *s = img + base;
            if (iy == y0 && ix == x0) {
                for (int j = 0; j < nc; j++) {
                    best[j] = s[j];
                    idx[j] = base + j;
                }
                continue;
            }
            for (int j = 0; j < nc; j++)
                if (s[j] > best[j] || (s[j] != s[j] && best[j] == best[j])) {
                    best[j] = s[j];
                    idx[j] = base + j;
                }
        }
    return 1;
}

void KP(maxpool2d_fwd)(KDK_POOL_GEOM_PARAMS, const KT *x, KT *y, int32_t *argmax)
{
    KT best[64];
    int32_t idx[64];
    for (int b = 0; b < n; b++) {
        const KT *img = x + (size_t)b * h * w * c;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                size_t o = (((size_t)b * oh + oy) * ow + ox) * c;
                for (int c0 = 0; c0 < c; c0 += 64) {
                    int nc = KDK_MIN(64, c - c0);
                    if (!KI(window_max)(KGEOM, img, oy, ox, c0, nc, best, idx)) {
                        for (int j = 0; j < nc; j++) {
                            best[j] = 0;
                            idx[j] = -1;
                        }
                    }
                    memcpy(y + o + c0, best, sizeof(KT) * nc);
                    if (argmax) memcpy(argmax + o + c0, idx, sizeof(int32_t) * nc);
                }
            }
    }
}

void KP(maxpool2d_bwd)(KDK_POOL_GEOM_PARAMS, const KT *x, const int32_t *argmax, const KT *dy,
                       KT *dx, int accumulate)
{
    KT best[64];
    int32_t idx[64];
    size_t hwc = (size_t)h * w * c;
    if (!accumulate) memset(dx, 0, sizeof(KT) * n * hwc);
    for (int b = 0; b < n; b++) {
        KT *dimg = dx + b * hwc;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                size_t o = (((size_t)b * oh + oy) * ow + ox) * c;
                for (int c0 = 0; c0 < c; c0 += 64) {
                    int nc = KDK_MIN(64, c - c0);
                    const int32_t *ix = idx;
                    if (argmax) {
                        ix = argmax + o + c0;
                    } else if (!KI(window_max)(KGEOM, x + b * hwc, oy, ox, c0, nc, best, idx)) {
                        continue;
                    }
                    for (int j = 0; j < nc; j++)
                        if (ix[j] >= 0) dimg[ix[j]] += dy[o + c0 + j];
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
        const KT *img = x + (size_t)b * h * w * c;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                KT *restrict yp = y + (((size_t)b * oh + oy) * ow + ox) * c;
                int y0, y1, x0, x1;
                KI(window)(KGEOM, oy, ox, &y0, &y1, &x0, &x1);
                for (int j = 0; j < c; j++) yp[j] = 0;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) {
                        const KT *restrict s = img + ((size_t)iy * w + ix) * c;
                        for (int j = 0; j < c; j++) yp[j] += s[j];
                    }
                int cnt = y0 < y1 && x0 < x1 ? KI(pool_count)(count_pad, kh, kw, y0, y1, x0, x1) : 0;
                KT inv = cnt ? (KT)1 / cnt : 0;
                for (int j = 0; j < c; j++) yp[j] *= inv;
            }
    }
}

void KP(avgpool2d_bwd)(KDK_POOL_GEOM_PARAMS, int count_pad, const KT *dy, KT *dx, int accumulate)
{
    size_t hwc = (size_t)h * w * c;
    if (!accumulate) memset(dx, 0, sizeof(KT) * n * hwc);
    for (int b = 0; b < n; b++) {
        KT *dimg = dx + b * hwc;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                const KT *restrict g = dy + (((size_t)b * oh + oy) * ow + ox) * c;
                int y0, y1, x0, x1;
                KI(window)(KGEOM, oy, ox, &y0, &y1, &x0, &x1);
                if (y0 >= y1 || x0 >= x1) continue;
                KT inv = (KT)1 / KI(pool_count)(count_pad, kh, kw, y0, y1, x0, x1);
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) {
                        KT *restrict d = dimg + ((size_t)iy * w + ix) * c;
                        for (int j = 0; j < c; j++) d[j] += g[j] * inv;
                    }
            }
    }
}

/* ---- global pooling: x [n][hw][c] -> y [n][c] ---- */

void KP(global_avgpool_fwd)(int n, int hw, int c, const KT *x, KT *y)
{
    KT inv = hw > 0 ? (KT)1 / hw : 0;
    for (int b = 0; b < n; b++) {
        KT *restrict yp = y + (size_t)b * c;
        const KT *img = x + (size_t)b * hw * c;
        for (int j = 0; j < c; j++) yp[j] = 0;
        for (int p = 0; p < hw; p++) {
            const KT *restrict s = img + (size_t)p * c;
            for (int j = 0; j < c; j++) yp[j] += s[j];
        }
        for (int j = 0; j < c; j++) yp[j] *= inv;
    }
}

void KP(global_avgpool_bwd)(int n, int hw, int c, const KT *dy, KT *dx, int accumulate)
{
    KT inv = hw > 0 ? (KT)1 / hw : 0;
    for (int b = 0; b < n; b++) {
        const KT *restrict g = dy + (size_t)b * c;
        for (int p = 0; p < hw; p++) {
            KT *restrict d = dx + ((size_t)b * hw + p) * c;
            if (accumulate)
                for (int j = 0; j < c; j++) d[j] += g[j] * inv;
            else
                for (int j = 0; j < c; j++) d[j] = g[j] * inv;
        }
    }
}

/* Max over positions of channels [c0, c0+nc) of one image, nc <= 64. */
static void KI(global_max)(int hw, int c, const KT *img, int c0, int nc, KT *best, int32_t *at)
{
    for (int j = 0; j < nc; j++) {
        best[j] = hw > 0 ? img[c0 + j] : 0;
        at[j] = hw > 0 ? 0 : -1;
    }
    for (int p = 1; p < hw; p++) {
        const KT *s = img + (size_t)p * c + c0;
        for (int j = 0; j < nc; j++)
            if (s[j] > best[j] || (s[j] != s[j] && best[j] == best[j])) {
                best[j] = s[j];
                at[j] = p;
            }
    }
}

void KP(global_maxpool_fwd)(int n, int hw, int c, const KT *x, KT *y, int32_t *argmax)
{
    KT best[64];
    int32_t at[64];
    for (int b = 0; b < n; b++)
        for (int c0 = 0; c0 < c; c0 += 64) {
            int nc = KDK_MIN(64, c - c0);
            KI(global_max)(hw, c, x + (size_t)b * hw * c, c0, nc, best, at);
            memcpy(y + (size_t)b * c + c0, best, sizeof(KT) * nc);
            if (argmax) memcpy(argmax + (size_t)b * c + c0, at, sizeof(int32_t) * nc);
        }
}

void KP(global_maxpool_bwd)(int n, int hw, int c, const KT *x, const int32_t *argmax,
                            const KT *dy, KT *dx, int accumulate)
{
    KT best[64];
    int32_t at[64];
    if (!accumulate) memset(dx, 0, sizeof(KT) * n * hw * c);
    for (int b = 0; b < n; b++)
        for (int c0 = 0; c0 < c; c0 += 64) {
            int nc = KDK_MIN(64, c - c0);
            const int32_t *ix = at;
            if (argmax)
                ix = argmax + (size_t)b * c + c0;
            else
                KI(global_max)(hw, c, x + (size_t)b * hw * c, c0, nc, best, at);
            for (int j = 0; j < nc; j++)
                if (ix[j] >= 0) dx[((size_t)b * hw + ix[j]) * c + c0 + j] += dy[(size_t)b * c + c0 + j];
        }
}

#undef KI
#undef KGEOM
