/* gemm_tmpl.h — the packed GEMM for one element type and one vector width.
 * gemm.c includes this once per (type, instruction set) with:
 *   KT, KTI   element type and the integer type of the same size
 *   KTS       sizeof(KT) as a preprocessor number
 *   KVB       vector size in bytes (16, 32 or 64)
 *   KMR, KNV  micro-tile: KMR rows × KNV vectors
 *   KV(x)     name of x in this instantiation
 *   KTGT      attribute selecting the instruction set (may be empty)
 *   KEXP, KTANH, KACT (kdk_act_fused of the type)
 *
 * Goto/BLIS structure: op(B) is packed by KC×NC blocks into NR-column
 * panels (zero-padded) that stay in L1 while a register-blocked micro-kernel
 * sweeps the MR-row tiles of an MC×KC block of op(A), broadcasting A and
 * keeping an MR×NR tile of C in registers; the write-back fuses the epilogue
 * (beta·C, bias, activation).
 *   - op(A) as a matrix is read in place (each of the MR rows is a stream;
 *     packing it cost more than it saved at these sizes).
 *   - op(A) as an implicit im2col matrix (convolutions) is read in place from
 *     the image when the windows avoid the padding, else packed into MR-row
 *     panels; the column matrix is never stored.
 *   - With few row tiles, full panels of a row-major B are read in place.
 *   - The conv data gradient's tiles are added into the image (col2im) as
 *     they are written back.
 * Blocking constants (kernels_impl.h) are shared by every variant so that
 * work sizes do not depend on the target. */

#define VL ((int)(KVB / sizeof(KT)))
#define NR (KNV * VL)

typedef KT KV(vec) __attribute__((vector_size(KVB)));
typedef KTI KV(ivec) __attribute__((vector_size(KVB)));
#define V KV(vec)
#define VI KV(ivec)

#define KINL KTGT static inline __attribute__((always_inline))

KINL V KV(loadu)(const KT *p)
{
    V x;
    memcpy(&x, p, sizeof x);
    return x;
}

KINL void KV(storeu)(KT *p, V x)
{
    memcpy(p, &x, sizeof x);
}

/* max(x, 0) that keeps NaN: clear the lanes where x <= 0. */
KINL V KV(relu)(V x)
{
    V zero = {0};
    return (V)((VI)x & ~(VI)(x <= zero));
}

/* Lane count as a preprocessor number, for the shuffle index lists. */
#define KLANES (KVB / KTS)
#if KLANES == 2
#define KZIP_LO 0, 2
#define KZIP_HI 1, 3
#elif KLANES == 4
#define KZIP_LO 0, 4, 1, 5
#define KZIP_HI 2, 6, 3, 7
#elif KLANES == 8
#define KZIP_LO 0, 8, 1, 9, 2, 10, 3, 11
#define KZIP_HI 4, 12, 5, 13, 6, 14, 7, 15
#elif KLANES == 16
#define KZIP_LO 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23
#define KZIP_HI 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31
#endif
#if defined(__clang__)
#define KSHUF(x, y, idx) __builtin_shufflevector(x, y, idx)
#else
#define KSHUF(x, y, idx) __builtin_shuffle(x, y, (VI){idx})
#endif

/* In-register transpose of VL×VL elements: log2(VL) rounds of zipping row i
 * with row i + VL/2; each round moves one bit of the row index into the
 * column index, so after all rounds rows and columns have traded places. */
KINL void KV(transpose)(V *r)
{
#pragma GCC unroll 4
    for (int round = 1; round < VL; round *= 2) {
        V t[VL];
#pragma GCC unroll 16
        for (int i = 0; i < VL / 2; i++) {
            t[2 * i] = KSHUF(r[i], r[i + VL / 2], KZIP_LO);
            t[2 * i + 1] = KSHUF(r[i], r[i + VL / 2], KZIP_HI);
        }
#pragma GCC unroll 16
        for (int i = 0; i < VL; i++) r[i] = t[i];
    }
}

KINL KT KV(epi1)(KT x, KT *cp, KT beta, const KT *bias, int j, int act)
{
    if (beta != 0) x += beta * *cp;
    if (bias) x += bias[j];
    return KACT(act, x);
}

/* The micro-kernel: an MR×NR tile over the k steps of nseg segments, then
 * the fused write-back into the mr×nr valid part at c.  In segment s, step q
 * reads row i of A at a[aoff[i] + segoff[s] + q*cs]: one segment for a
 * packed panel (aoff[i] = i, cs = MR) or a matrix read in place; one per
 * kernel tap (conv forward) or per output row (conv filter gradient) when
 * the convolution is read straight from the image.  B holds NR columns, rows
 * bs apart: a packed panel (bs = NR) or the matrix itself.  Only the first nv
 * (a constant after inlining) of the KNV vectors per row are computed: the
 * narrow form serves matrices at most one vector wide.  With bcopy, each row
 * of B read is also stored there, NR apart: the first tile of a panel packs
 * it for the others while it computes (the same products in the same order). */
KTGT static void KV(col2im_add)(const struct kdk_gemm_task *t, int i0, int mr, int j0, int nr,
                                const KT *tile);
KTGT static int KV(col2im_rows)(const struct kdk_gemm_task *t, int i0, int mr, int j0, int nr,
                                KT **dst);

KINL KDK_CONTRACT void KV(tile)(int nseg, const int *seglen, const ptrdiff_t *segoff,
                                const KT *restrict a, const ptrdiff_t *aoff, ptrdiff_t cs,
                                const KT *restrict b, ptrdiff_t bs, KT *restrict c, int ldc,
                                int mr, int nr, KT beta, const KT *restrict bias, int act,
                                const struct kdk_gemm_task *scatter, int si0, int sj0, int nv,
                                KT *restrict bcopy)
{
    V acc[KMR][KNV];
    ptrdiff_t off[KMR];
#pragma GCC unroll 16
    for (int i = 0; i < KMR; i++) {
        off[i] = aoff[i];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) acc[i][v] = (V){0};
    }

    for (int s = 0; s < nseg; s++) {
        const KT *as = a + segoff[s];
        int len = seglen[s];
#pragma GCC unroll 2
        for (int p = 0; p < len; p++) {
            V bv[KNV];
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) bv[v] = KV(loadu)(b + v * VL);
            if (bcopy) {
#pragma GCC unroll 4
                for (int v = 0; v < nv; v++) KV(storeu)(bcopy + v * VL, bv[v]);
                bcopy += NR;
            }
#pragma GCC unroll 16
            for (int i = 0; i < KMR; i++) {
                V ai = as[off[i]] - (V){0}; /* broadcast; x - 0 folds, 0 + x does not */
#pragma GCC unroll 4
                for (int v = 0; v < nv; v++) acc[i][v] += ai * bv[v];
            }
            as += cs;
            b += bs;
        }
    }

    if (scatter && nr == nv * VL) {
        /* columns within one kernel tap: add whole vectors into dx rows */
        KT *dst[KMR];
        if (KV(col2im_rows)(scatter, si0, mr, sj0, nr, dst)) {
            for (int i = 0; i < mr; i++) {
                if (!dst[i]) continue;
#pragma GCC unroll 4
                for (int v = 0; v < nv; v++)
                    KV(storeu)(dst[i] + v * VL, KV(loadu)(dst[i] + v * VL) + acc[i][v]);
            }
            return;
        }
    }
    if (mr == KMR && nr == nv * VL && (act == KDK_ACT_NONE || act == KDK_ACT_RELU) && !scatter) {
#pragma GCC unroll 16
        for (int i = 0; i < KMR; i++)
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) {
                KT *cp = c + (ptrdiff_t)i * ldc + v * VL;
                V x = acc[i][v];
                if (beta != 0) x += beta * KV(loadu)(cp);
                if (bias) x += KV(loadu)(bias + v * VL);
                if (act == KDK_ACT_RELU) x = KV(relu)(x);
                KV(storeu)(cp, x);
            }
        return;
    }
    /* Edge tiles and transcendental activations go through a scalar pass. */
    {
        KT tile[KMR * NR] __attribute__((aligned(KVB)));
#pragma GCC unroll 16
        for (int i = 0; i < KMR; i++)
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) KV(storeu)(tile + i * NR + v * VL, acc[i][v]);
        if (scatter) {
            KV(col2im_add)(scatter, si0, mr, sj0, nr, tile);
            return;
        }
        for (int i = 0; i < mr; i++) {
            KT *crow = c + (ptrdiff_t)i * ldc;
            for (int j = 0; j < nr; j++)
                crow[j] = KV(epi1)(tile[i * NR + j], crow + j, beta, bias, j, act);
        }
    }
}

/* A packed into an MR-row panel: the offsets and strides are constants. */
KTGT KDK_CONTRACT static void KV(kernel_packed)(int kc, const KT *restrict a, const KT *restrict b,
                                                ptrdiff_t bs, KT *restrict c, int ldc, int mr,
                                                int nr, KT beta, const KT *restrict bias, int act)
{
    static const ptrdiff_t zero = 0;
    ptrdiff_t aoff[KMR];
#pragma GCC unroll 16
    for (int i = 0; i < KMR; i++) aoff[i] = i;
    KV(tile)(1, &kc, &zero, a, aoff, KMR, b, bs, c, ldc, mr, nr, beta, bias, act, NULL, 0, 0, KNV, NULL);
}

/* The same for a panel of B at most one vector wide. */
KTGT KDK_CONTRACT static void KV(kernel_packed_narrow)(int kc, const KT *restrict a,
                                                       const KT *restrict b, ptrdiff_t bs,
                                                       KT *restrict c, int ldc, int mr, int nr,
                                                       KT beta, const KT *restrict bias, int act)
{
    static const ptrdiff_t zero = 0;
    ptrdiff_t aoff[KMR];
#pragma GCC unroll 16
    for (int i = 0; i < KMR; i++) aoff[i] = i;
    KV(tile)(1, &kc, &zero, a, aoff, KMR, b, bs, c, ldc, mr, nr, beta, bias, act, NULL, 0, 0, 1, NULL);
}

/* A read in place: a matrix (row offsets i*lda, or i if transposed) or an
 * image (row offsets: pixel windows or kernel taps).  With scatter, the tile
 * (rows si0.., columns sj0..) is added into an image instead of stored. */
KTGT KDK_CONTRACT static void KV(kernel_strided)(int nseg, const int *seglen,
                                                 const ptrdiff_t *segoff, const KT *restrict a,
                                                 const ptrdiff_t *aoff, ptrdiff_t cs,
                                                 const KT *restrict b, ptrdiff_t bs,
                                                 KT *restrict c, int ldc, int mr, int nr,
                                                 KT beta, const KT *restrict bias, int act,
                                                 const struct kdk_gemm_task *scatter, int si0,
                                                 int sj0)
{
    KV(tile)(nseg, seglen, segoff, a, aoff, cs, b, bs, c, ldc, mr, nr, beta, bias, act, scatter,
             si0, sj0, KNV, NULL);
}

/* kernel_strided reading a full panel of a row-major B in place and packing
 * it into bcopy for the panel's other tiles. */
KTGT KDK_CONTRACT static void KV(kernel_strided_pack)(int nseg, const int *seglen,
                                                      const ptrdiff_t *segoff, const KT *restrict a,
                                                      const ptrdiff_t *aoff, ptrdiff_t cs,
                                                      const KT *restrict b, ptrdiff_t bs,
                                                      KT *restrict c, int ldc, int mr, int nr,
                                                      KT beta, const KT *restrict bias, int act,
                                                      KT *restrict bcopy)
{
    KV(tile)(nseg, seglen, segoff, a, aoff, cs, b, bs, c, ldc, mr, nr, beta, bias, act, NULL, 0, 0,
             KNV, bcopy);
}

/* The same for a panel at most one vector wide (e.g. the 10 classes of a
 * classifier): half the work of a full tile. */
KTGT KDK_CONTRACT static void KV(kernel_narrow)(int nseg, const int *seglen,
                                                const ptrdiff_t *segoff, const KT *restrict a,
                                                const ptrdiff_t *aoff, ptrdiff_t cs,
                                                const KT *restrict b, ptrdiff_t bs,
                                                KT *restrict c, int ldc, int mr, int nr,
                                                KT beta, const KT *restrict bias, int act,
                                                const struct kdk_gemm_task *scatter, int si0,
                                                int sj0)
{
    KV(tile)(nseg, seglen, segoff, a, aoff, cs, b, bs, c, ldc, mr, nr, beta, bias, act, scatter,
             si0, sj0, 1, NULL);
}

/* If columns j0..j0+nr lie in one kernel tap, the dx address of each row's
 * first column (NULL where the tap falls in the padding); else 0. */
KTGT static int KV(col2im_rows)(const struct kdk_gemm_task *t, int i0, int mr, int j0, int nr,
                                KT **dst)
{
    const struct kdk_conv_geom *g = t->g;
    int C = g->c, kwc = g->kw * C, ohw = g->oh * g->ow;
    int kh = j0 / kwc, kw = j0 % kwc / C, c0 = j0 % C;
    if (c0 + nr > C) return 0;
    int n = i0 / ohw, oy = i0 % ohw / g->ow, ox = i0 % g->ow;
    ptrdiff_t hwc = (ptrdiff_t)g->h * g->w * C;
    for (int i = 0; i < mr; i++) {
        int iy = oy * g->sh - g->pt + kh, ix = ox * g->sw - g->pl + kw;
        dst[i] = iy >= 0 && iy < g->h && ix >= 0 && ix < g->w
                     ? (KT *)t->c + n * hwc + ((ptrdiff_t)iy * g->w + ix) * C + c0
                     : NULL;
        if (++ox == g->ow) {
            ox = 0;
            if (++oy == g->oh) {
                oy = 0;
                n++;
            }
        }
    }
    return 1;
}

/* dx[pixel of row i][tap and channel of column j] += tile[i][j] for the
 * valid part of a tile: col2im fused into the write-back.  Columns of one
 * tap are contiguous channels, added a vector at a time. */
KTGT static void KV(col2im_add)(const struct kdk_gemm_task *t, int i0, int mr, int j0, int nr,
                                const KT *tile)
{
    const struct kdk_conv_geom *g = t->g;
    KT *dx = (KT *)t->c;
    int C = g->c, kwc = g->kw * C, ohw = g->oh * g->ow;
    int n = i0 / ohw, oy = i0 % ohw / g->ow, ox = i0 % g->ow;
    int kh0 = j0 / kwc, kw0 = j0 % kwc / C, c0 = j0 % C;
    ptrdiff_t hwc = (ptrdiff_t)g->h * g->w * C;
    for (int i = 0; i < mr; i++) {
        int y0 = oy * g->sh - g->pt, x0 = ox * g->sw - g->pl;
        KT *img = dx + n * hwc;
        const KT *src = tile + (ptrdiff_t)i * NR;
        for (int q = 0, kh = kh0, kw = kw0, ch = c0; q < nr;) {
            int run = KDK_MIN(C - ch, nr - q), iy = y0 + kh, ix = x0 + kw;
            if (iy >= 0 && iy < g->h && ix >= 0 && ix < g->w) {
                KT *d = img + ((ptrdiff_t)iy * g->w + ix) * C + ch;
                int u = 0;
                for (; u + VL <= run; u += VL)
                    KV(storeu)(d + u, KV(loadu)(d + u) + KV(loadu)(src + q + u));
                for (; u < run; u++) d[u] += src[q + u];
            }
            q += run;
            ch = 0;
            if (++kw == g->kw) {
                kw = 0;
                kh++;
            }
        }
        if (++ox == g->ow) {
            ox = 0;
            if (++oy == g->oh) {
                oy = 0;
                n++;
            }
        }
    }
}

/* Packs rows k0..k0+kc of op(B), columns j0..j0+nc, into NR-wide panels;
 * with only_edge, just the last panel if it is narrower than NR. */
KTGT static void KV(pack_b)(const struct kdk_gemm_task *t, int k0, int kc, int j0, int nc,
                            int only_edge, KT *restrict bp)
{
    const KT *b = (const KT *)t->b;
    ptrdiff_t ldb = (ptrdiff_t)t->ldb;
    for (int jr = 0; jr < nc; jr += NR, bp += (ptrdiff_t)kc * NR) {
        int nr = KDK_MIN(NR, nc - jr);
        if (only_edge && nr == NR) continue;
        if (!t->transb) {
            const KT *src = b + k0 * ldb + j0 + jr;
            if (nr == NR) {
                for (int p = 0; p < kc; p++, src += ldb) memcpy(bp + (size_t)p * NR, src, sizeof(KT) * NR);
            } else {
                memset(bp, 0, sizeof(KT) * (size_t)(kc * NR));
                for (int p = 0; p < kc; p++, src += ldb)
                    for (int j = 0; j < nr; j++) bp[(ptrdiff_t)p * NR + j] = src[j];
            }
        } else {
            /* B stored N×K: VL×VL blocks transposed in registers, then the
             * rest in short runs along k. */
            const KT *src = b + (ptrdiff_t)(j0 + jr) * ldb + k0;
            int p = 0;
            if (nr == NR) {
                for (; p + VL <= kc; p += VL) {
#pragma GCC unroll 4
                    for (int jb = 0; jb < KNV; jb++) {
                        V r[VL];
#pragma GCC unroll 16
                        for (int j = 0; j < VL; j++) r[j] = KV(loadu)(src + (ptrdiff_t)(jb * VL + j) * ldb + p);
                        KV(transpose)(r);
#pragma GCC unroll 16
                        for (int q = 0; q < VL; q++) KV(storeu)(bp + (ptrdiff_t)(p + q) * NR + jb * VL, r[q]);
                    }
                }
            }
            for (; p + 8 <= kc; p += 8) {
                KT *d = bp + (ptrdiff_t)p * NR;
                for (int j = 0; j < nr; j++) {
                    const KT *s = src + j * ldb + p;
#pragma GCC unroll 8
                    for (int q = 0; q < 8; q++) d[q * NR + j] = s[q];
                }
                for (int j = nr; j < NR; j++)
#pragma GCC unroll 8
                    for (int q = 0; q < 8; q++) d[q * NR + j] = 0;
            }
            for (; p < kc; p++) {
                KT *d = bp + (ptrdiff_t)p * NR;
                for (int j = 0; j < nr; j++) d[j] = src[j * ldb + p];
                for (int j = nr; j < NR; j++) d[j] = 0;
            }
        }
    }
}

/* Packs rows i0..i0+mc of an implicit im2col matrix (rows: output pixels;
 * columns: (kh,kw,c) indices k0..k0+kc) into MR-row panels.  Column p reads
 * the input at offset off[p] from a pixel's window origin.  Where a panel's
 * pixels are consecutive in one output row and their windows lie inside the
 * image, column p is a strided gather (a plain copy for 1-channel, stride-1
 * convolutions); pixels near the border check bounds per element.  Divisions
 * happen once per block. */
KTGT static void KV(pack_a_im2col)(const struct kdk_gemm_task *t, int i0, int mc, int k0, int kc,
                                   KT *restrict ap)
{
    const struct kdk_conv_geom *g = t->g;
    const KT *x = (const KT *)t->a;
    int C = g->c, W = g->w, H = g->h, kwc = g->kw * C, ohw = g->oh * g->ow;
    int ky[KDK_KC], kx[KDK_KC];
    ptrdiff_t off[KDK_KC];
    for (int p = 0, kh = k0 / kwc, kw = k0 % kwc / C, ch = k0 % C; p < kc; p++) {
        ky[p] = kh;
        kx[p] = kw;
        off[p] = ((ptrdiff_t)kh * W + kw) * C + ch;
        if (++ch == C) {
            ch = 0;
            if (++kw == g->kw) {
                kw = 0;
                kh++;
            }
        }
    }
    int n = i0 / ohw, oy = i0 % ohw / g->ow, ox = i0 % g->ow;
    ptrdiff_t hwc = (ptrdiff_t)H * W * C;
    ptrdiff_t stride = (ptrdiff_t)g->sw * C;
    for (int ir = 0; ir < mc; ir += KMR, ap += (ptrdiff_t)kc * KMR) {
        int mr = KDK_MIN(KMR, mc - ir);
        /* segments of the panel's pixels that share an output row */
        for (int ii = 0; ii < mr;) {
            int len = KDK_MIN(mr - ii, g->ow - ox);
            int y0 = oy * g->sh - g->pt, x0 = ox * g->sw - g->pl;
            const KT *img = x + n * hwc;
            KT *d = ap + ii;
            if (y0 >= 0 && y0 + g->kh <= H && x0 >= 0 && x0 + (len - 1) * g->sw + g->kw <= W) {
                const KT *win = img + ((ptrdiff_t)y0 * W + x0) * C;
                if (stride == 1 && len == KMR) {
                    for (int p = 0; p < kc; p++)
                        memcpy(d + (size_t)p * KMR, win + off[p], sizeof(KT) * KMR);
                } else {
                    for (int p = 0; p < kc; p++) {
                        const KT *src = win + off[p];
                        for (int q = 0; q < len; q++) d[(ptrdiff_t)p * KMR + q] = src[q * stride];
                    }
                }
            } else {
                for (int q = 0; q < len; q++, x0 += g->sw) {
                    ptrdiff_t org = ((ptrdiff_t)y0 * W + x0) * C; /* may be negative; org + off is not */
                    for (int p = 0; p < kc; p++) {
                        int iy = y0 + ky[p], ix = x0 + kx[p];
                        d[(ptrdiff_t)p * KMR + q] =
                            iy >= 0 && iy < H && ix >= 0 && ix < W ? img[org + off[p]] : 0;
                    }
                }
            }
            ii += len;
            ox += len;
            if (ox == g->ow) {
                ox = 0;
                if (++oy == g->oh) {
                    oy = 0;
                    n++;
                }
            }
        }
        for (int ii = mr; ii < KMR; ii++)
            for (int p = 0; p < kc; p++) ap[(ptrdiff_t)p * KMR + ii] = 0;
    }
}

/* Packs one MR-row panel of the transposed im2col matrix: rows are (kh,kw,c)
 * indices i0.. (mr of them), columns output pixels k0..k0+kc.  Each row is a
 * fixed offset from the pixel's window origin; pixels whose window covers
 * the rows' taps inside the image gather without bounds checks. */
KTGT static void KV(pack_a_im2col_t)(const struct kdk_gemm_task *t, int i0, int mr, int k0, int kc,
                                     KT *restrict ap)
{
    const struct kdk_conv_geom *g = t->g;
    const KT *x = (const KT *)t->a;
    int C = g->c, W = g->w, H = g->h, kwc = g->kw * C, ohw = g->oh * g->ow;
    int ty[KMR], tx[KMR], ch[KMR];
    ptrdiff_t off[KMR];
    int ylo = g->kh, yhi = -1, xlo = g->kw, xhi = -1;
    for (int ii = 0; ii < mr; ii++) {
        int r = i0 + ii;
        ty[ii] = r / kwc;
        tx[ii] = r % kwc / C;
        ch[ii] = r % C;
        off[ii] = ((ptrdiff_t)ty[ii] * W + tx[ii]) * C + ch[ii];
        ylo = KDK_MIN(ylo, ty[ii]);
        yhi = KDK_MAX(yhi, ty[ii]);
        xlo = KDK_MIN(xlo, tx[ii]);
        xhi = KDK_MAX(xhi, tx[ii]);
    }
    /* rows within one tap read a contiguous channel run */
    int contig = ch[0] + mr - 1 == ch[mr - 1];
    int n = k0 / ohw, oy = k0 % ohw / g->ow, ox = k0 % g->ow;
    ptrdiff_t hwc = (ptrdiff_t)H * W * C;
    for (int p = 0; p < kc; p++, ap += KMR) {
        const KT *img = x + n * hwc;
        int y0 = oy * g->sh - g->pt, x0 = ox * g->sw - g->pl;
        if (y0 + ylo >= 0 && y0 + yhi < H && x0 + xlo >= 0 && x0 + xhi < W) {
            ptrdiff_t win = ((ptrdiff_t)y0 * W + x0) * C; /* may be negative; win + off is not */
            if (contig) {
                memcpy(ap, img + win + off[0], sizeof(KT) * (size_t)mr);
            } else {
                for (int ii = 0; ii < mr; ii++) ap[ii] = img[win + off[ii]];
            }
        } else {
            for (int ii = 0; ii < mr; ii++) {
                int iy = y0 + ty[ii], ix = x0 + tx[ii];
                ap[ii] = (iy >= 0 && iy < H && ix >= 0 && ix < W)
                             ? img[((ptrdiff_t)iy * W + ix) * C + ch[ii]]
                             : 0;
            }
        }
        for (int ii = mr; ii < KMR; ii++) ap[ii] = 0;
        if (++ox == g->ow) {
            ox = 0;
            if (++oy == g->oh) {
                oy = 0;
                n++;
            }
        }
    }
}

/* Packs rows i0..i0+mc of an implicit op(A), columns k0..k0+kc, into MR-row
 * panels.  (A plain matrix is never packed: the kernel reads it in place.) */
KTGT static void KV(pack_a)(const struct kdk_gemm_task *t, int i0, int mc, int k0, int kc,
                            KT *restrict ap)
{
    if (t->akind == KDK_A_IM2COL) {
        KV(pack_a_im2col)(t, t->a_i0 + i0, mc, k0, kc, ap);
        return;
    }
    for (int ir = 0; ir < mc; ir += KMR, ap += (ptrdiff_t)kc * KMR)
        KV(pack_a_im2col_t)(t, t->a_i0 + i0 + ir, KDK_MIN(KMR, mc - ir), k0, kc, ap);
}

static inline int KV(round_up)(int x, int m) { return (x + m - 1) / m * m; }

/* A B packed once is sized by the widest variant's row (gemm.c). */
_Static_assert(KDK_NR_MAX_BYTES % (KNV * KVB) == 0, "NR divides the packed B's widest row");

/* The driver's blocks of op(B): kcb rows (kdk_kblocks_of(K) equal blocks, or
 * one) by ncb columns (a multiple of NR); all but the last are full. They
 * depend on N and K, not M, so a B packed once serves every M. */
static inline void KV(b_blocks)(int N, int K, int one_kblock, int *kcb, int *ncb)
{
    int kb = one_kblock ? 1 : kdk_kblocks_of(K), nb = (N + KDK_NC - 1) / KDK_NC;
    *kcb = (K + kb - 1) / kb;
    *ncb = KV(round_up)((N + nb - 1) / nb, NR);
}

/* op(B) packed once for this variant: the header, then each block's panels
 * in the driver's order, as the driver packs them per call (gemm.c has the
 * layout). */
KTGT static void KV(pack_b_once)(int N, int K, const KT *B, int ldb, int transB, KT *packed)
{
    struct kdk_gemm_task t = {.n = N, .k = K, .b = B, .ldb = ldb, .transb = transB};
    int kcb, ncb;
    KV(b_blocks)(N, K, 0, &kcb, &ncb);
    packed_b_write_header(packed, sizeof(KT), NR, N, K, transB);
    KT *bp = packed + KDK_ALIGN / sizeof(KT);
    for (int jc = 0; jc < N; jc += ncb) {
        int nc = KDK_MIN(ncb, N - jc);
        for (int pc = 0; pc < K; pc += kcb) {
            int kc = KDK_MIN(kcb, K - pc);
            KV(pack_b)(&t, pc, kc, jc, nc, 0, bp);
            bp += (ptrdiff_t)kc * KV(round_up)(nc, NR);
        }
    }
}

/* The panels of t's B packed once, if packed for this variant and t's dims
 * (a buffer from another CPU or layer is ignored); else NULL. */
static inline const KT *KV(prepacked_b)(const struct kdk_gemm_task *t)
{
    if (!t->bpacked || t->akind != KDK_A_MAT || t->col2im || t->one_kblock ||
        !packed_b_matches(t->bpacked, sizeof(KT), NR, t->n, t->k, t->transb))
        return NULL;
    return (const KT *)t->bpacked + KDK_ALIGN / sizeof(KT);
}

/* Segments of the k range [k0, k0+kc) when the convolution is read straight
 * from the image.  Forward (k = (kh,kw,c)): one per kernel tap, channels at
 * unit stride.  Filter gradient (k = output pixels): one per run of pixels
 * in an output row, sw*c apart.  Returns the number of segments. */
KTGT static int KV(conv_segments)(const struct kdk_gemm_task *t, int k0, int kc, int *len,
                                  ptrdiff_t *off)
{
    const struct kdk_conv_geom *g = t->g;
    int ns = 0;
    if (t->akind == KDK_A_IM2COL) {
        int kwc = g->kw * g->c, kh = k0 / kwc, kw = k0 % kwc / g->c, ch = k0 % g->c;
        for (int p = 0; p < kc; ns++) {
            len[ns] = KDK_MIN(g->c - ch, kc - p);
            off[ns] = ((ptrdiff_t)kh * g->w + kw) * g->c + ch;
            p += len[ns];
            ch = 0;
            if (++kw == g->kw) {
                kw = 0;
                kh++;
            }
        }
    } else {
        int ohw = g->oh * g->ow, n = k0 / ohw, oy = k0 % ohw / g->ow, ox = k0 % g->ow;
        for (int p = 0; p < kc; ns++) {
            len[ns] = KDK_MIN(g->ow - ox, kc - p);
            off[ns] = (((ptrdiff_t)n * g->h + oy * g->sh - g->pt) * g->w + ox * g->sw - g->pl) * g->c;
            p += len[ns];
            ox = 0;
            if (++oy == g->oh) {
                oy = 0;
                n++;
            }
        }
    }
    return ns;
}

/* Row offsets of one tile of a convolution read from the image: pixel
 * windows (forward) or kernel taps (filter gradient).  Returns 0 if some
 * forward window reaches into the padding (the tile is packed instead). */
KTGT static int KV(conv_rows)(const struct kdk_gemm_task *t, int i0, int mr, ptrdiff_t *aoff)
{
    const struct kdk_conv_geom *g = t->g;
    if (t->akind == KDK_A_IM2COL) {
        int ohw = g->oh * g->ow, n = i0 / ohw, oy = i0 % ohw / g->ow, ox = i0 % g->ow;
        for (int i = 0; i < mr; i++) {
            int y0 = oy * g->sh - g->pt, x0 = ox * g->sw - g->pl;
            if (y0 < 0 || y0 + g->kh > g->h || x0 < 0 || x0 + g->kw > g->w) return 0;
            aoff[i] = (((ptrdiff_t)n * g->h + y0) * g->w + x0) * g->c;
            if (++ox == g->ow) {
                ox = 0;
                if (++oy == g->oh) {
                    oy = 0;
                    n++;
                }
            }
        }
    } else {
        int kwc = g->kw * g->c;
        for (int i = 0; i < mr; i++) {
            int r = i0 + i;
            aoff[i] = ((ptrdiff_t)(r / kwc) * g->w + r % kwc / g->c) * g->c + r % g->c;
        }
    }
    for (int i = mr; i < KMR; i++) aoff[i] = aoff[mr - 1];
    return 1;
}

/* Whether the filter gradient can read every (pixel, tap) from the image:
 * no window of the convolution reaches into the padding. */
static int KV(conv_unpadded)(const struct kdk_conv_geom *g)
{
    return g->pt == 0 && g->pl == 0 && (g->oh - 1) * g->sh + g->kh <= g->h &&
           (g->ow - 1) * g->sw + g->kw <= g->w;
}

/* Vectors per chunk of one C row (32 vector registers with AVX-512). */
#if KVB == 64
#define KGW 16
#else
#define KGW 8
#endif

/* ---- Few rows (M <= 4) of a matrix op(A): GEMV-style, nothing packed ----
 * Row-major B: its rows stream once (each row of a chunk is w contiguous
 * vectors) while m×w vectors of C stay in registers over all of K.  The
 * accumulation is a separate small function per (m, w): inlined into the
 * large driver, GCC ran out of registers and kept the accumulators on the
 * stack (a load and a store per FMA), which halved the speed of batch-1
 * inference.  The sums go to a tile in L1; the epilogue is applied from
 * there.  Each output is one k-sequential FMA chain, as in the packed
 * kernel. */
KINL KDK_CONTRACT void KV(gemv_acc)(int m, int w, int K, const KT *restrict a, ptrdiff_t rsa,
                                    ptrdiff_t csa, const KT *restrict b, ptrdiff_t ldb,
                                    KT *restrict out)
{
    V acc[4][KGW];
#pragma GCC unroll 4
    for (int i = 0; i < m; i++)
#pragma GCC unroll 16
        for (int v = 0; v < w; v++) acc[i][v] = (V){0};
    for (int k = 0; k < K; k++) {
        const KT *bk = b + (ptrdiff_t)k * ldb;
#pragma GCC unroll 4
        for (int i = 0; i < m; i++) {
            V ai = a[i * rsa + k * csa] - (V){0};
#pragma GCC unroll 16
            for (int v = 0; v < w; v++) acc[i][v] += ai * KV(loadu)(bk + v * VL);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < m; i++)
#pragma GCC unroll 16
        for (int v = 0; v < w; v++) KV(storeu)(out + (ptrdiff_t)(i * w + v) * VL, acc[i][v]);
}

#define KGEMV_ACC(M_, W_)                                                                          \
    KTGT KDK_CONTRACT __attribute__((noinline)) static void KV(gemv_acc_##M_##_##W_)(              \
        int K, const KT *restrict a, ptrdiff_t rsa, ptrdiff_t csa, const KT *restrict b,          \
        ptrdiff_t ldb, KT *restrict out)                                                          \
    {                                                                                             \
        KV(gemv_acc)(M_, W_, K, a, rsa, csa, b, ldb, out);                                        \
    }
KGEMV_ACC(1, 1)
KGEMV_ACC(1, 2)
KGEMV_ACC(1, 4)
KGEMV_ACC(1, 8)
KGEMV_ACC(2, 1)
KGEMV_ACC(2, 2)
KGEMV_ACC(2, 4)
KGEMV_ACC(3, 1)
KGEMV_ACC(3, 2)
KGEMV_ACC(4, 1)
KGEMV_ACC(4, 2)
#if KGW >= 16
KGEMV_ACC(1, 16)
KGEMV_ACC(2, 8)
#endif
#undef KGEMV_ACC

/* C rows i < m, w vectors from c (w as gemv_rows picks it, m*w <= KGW):
 * the sums, then the fused epilogue.  Only the lanes from lo on are stored
 * (lo > 0: the last, overlapping vector of a ragged N). */
KINL KDK_CONTRACT void KV(gemv_chunk)(int m, int w, int K, const KT *restrict a, ptrdiff_t rsa,
                                      ptrdiff_t csa, const KT *restrict b, ptrdiff_t ldb,
                                      KT *restrict c, ptrdiff_t ldc, KT beta,
                                      const KT *restrict bias, int act, int lo)
{
    KT sums[KGW * VL] __attribute__((aligned(KVB))); /* m*w <= KGW vectors */
#define KGEMV_CASE(M_, W_)                                                                         \
    case M_ * 32 + W_: KV(gemv_acc_##M_##_##W_)(K, a, rsa, csa, b, ldb, sums); break;
    switch (m * 32 + w) {
        KGEMV_CASE(1, 1)
        KGEMV_CASE(1, 2)
        KGEMV_CASE(1, 4)
        KGEMV_CASE(1, 8)
        KGEMV_CASE(2, 1)
        KGEMV_CASE(2, 2)
        KGEMV_CASE(2, 4)
        KGEMV_CASE(3, 1)
        KGEMV_CASE(3, 2)
        KGEMV_CASE(4, 1)
        KGEMV_CASE(4, 2)
#if KGW >= 16
        KGEMV_CASE(1, 16)
        KGEMV_CASE(2, 8)
#endif
    default: KV(gemv_acc)(m, w, K, a, rsa, csa, b, ldb, sums); break;
    }
#undef KGEMV_CASE
    for (int i = 0; i < m; i++)
        for (int v = 0; v < w; v++) {
            KT *cp = c + (ptrdiff_t)i * ldc + v * VL;
            const KT *sp = sums + (ptrdiff_t)(i * w + v) * VL;
            const KT *bb = bias ? bias + v * VL : NULL;
            if (lo == 0 && (act == KDK_ACT_NONE || act == KDK_ACT_RELU)) {
                V x = KV(loadu)(sp);
                if (beta != 0) x += beta * KV(loadu)(cp);
                if (bb) x += KV(loadu)(bb);
                if (act == KDK_ACT_RELU) x = KV(relu)(x);
                KV(storeu)(cp, x);
            } else {
                for (int j = lo; j < VL; j++) cp[j] = KV(epi1)(sp[j], cp + j, beta, bb, j, act);
            }
        }
}

/* All N columns for m rows: chunks of w vectors, then single vectors, then
 * the ragged end as one vector overlapping the previous ones (computed and
 * stored first, its new lanes only); N < VL goes column by column. */
KINL KDK_CONTRACT void KV(gemv_rows)(int m, int w, int N, int K, const KT *restrict a,
                                     ptrdiff_t rsa, ptrdiff_t csa, const KT *restrict b,
                                     ptrdiff_t ldb, KT *restrict c, ptrdiff_t ldc, KT beta,
                                     const KT *restrict bias, int act)
{
    if (N < VL) {
        /* one vector per row of B, reading past column N into the following
         * elements of B (unused lanes) while that stays inside B */
        int kvec = K - 1 - (VL - N + (int)ldb - 1) / (int)ldb;
        if (kvec < 0) kvec = 0;
        for (int i = 0; i < m; i++) {
            /* four partial sums: one FMA chain would wait out its latency
             * on every row of B (the batch-1 classifier layer) */
            V part[4] = {{0}, {0}, {0}, {0}};
            int k = 0;
            for (; k + 4 <= kvec; k += 4)
#pragma GCC unroll 4
                for (int u = 0; u < 4; u++)
                    part[u] += (a[i * rsa + (k + u) * csa] - (V){0}) * KV(loadu)(b + (ptrdiff_t)(k + u) * ldb);
            V accv = (part[0] + part[1]) + (part[2] + part[3]);
            for (; k < kvec; k++)
                accv += (a[i * rsa + k * csa] - (V){0}) * KV(loadu)(b + (ptrdiff_t)k * ldb);
            KT acc[VL] __attribute__((aligned(KVB)));
            KV(storeu)(acc, accv);
            for (; k < K; k++) {
                KT aik = a[i * rsa + k * csa];
                const KT *bk = b + (ptrdiff_t)k * ldb;
                for (int j = 0; j < N; j++) acc[j] += aik * bk[j];
            }
            KT *crow = c + (ptrdiff_t)i * ldc;
            for (int j = 0; j < N; j++) crow[j] = KV(epi1)(acc[j], crow + j, beta, bias, j, act);
        }
        return;
    }
    int nv = N / VL * VL, j = 0;
    if (nv < N)
        KV(gemv_chunk)(m, 1, K, a, rsa, csa, b + (N - VL), ldb, c + (N - VL), ldc, beta,
                       bias ? bias + (N - VL) : NULL, act, VL - (N - nv));
    for (; j + w * VL <= nv; j += w * VL)
        KV(gemv_chunk)(m, w, K, a, rsa, csa, b + j, ldb, c + j, ldc, beta, bias ? bias + j : NULL,
                       act, 0);
    if (w >= 4)
        for (; j + w / 2 * VL <= nv; j += w / 2 * VL)
            KV(gemv_chunk)(m, w / 2, K, a, rsa, csa, b + j, ldb, c + j, ldc, beta,
                           bias ? bias + j : NULL, act, 0);
    if (w >= 8)
        for (; j + w / 4 * VL <= nv; j += w / 4 * VL)
            KV(gemv_chunk)(m, w / 4, K, a, rsa, csa, b + j, ldb, c + j, ldc, beta,
                           bias ? bias + j : NULL, act, 0);
    for (; j < nv; j += VL)
        KV(gemv_chunk)(m, 1, K, a, rsa, csa, b + j, ldb, c + j, ldc, beta, bias ? bias + j : NULL,
                       act, 0);
}

/* B transposed (rows of B are columns of C, contiguous in k) and op(A) rows
 * contiguous: dot products, 4 columns at a time, vectors along k. */
KINL KDK_CONTRACT void KV(gemv_t_rows)(int m, int N, int K, const KT *restrict a, ptrdiff_t lda,
                                       const KT *restrict b, ptrdiff_t ldb, KT *restrict c,
                                       ptrdiff_t ldc, KT beta, const KT *restrict bias, int act)
{
    int kv = K / VL * VL;
    for (int j0 = 0; j0 < N; j0 += 4) {
        int nj = KDK_MIN(4, N - j0);
        const KT *br[4];
        for (int jj = 0; jj < 4; jj++) br[jj] = b + (ptrdiff_t)(j0 + KDK_MIN(jj, nj - 1)) * ldb;
        V acc[4][4];
#pragma GCC unroll 4
        for (int i = 0; i < m; i++)
#pragma GCC unroll 4
            for (int jj = 0; jj < 4; jj++) acc[i][jj] = (V){0};
        for (int k = 0; k < kv; k += VL) {
            V bv[4];
#pragma GCC unroll 4
            for (int jj = 0; jj < 4; jj++) bv[jj] = KV(loadu)(br[jj] + k);
#pragma GCC unroll 4
            for (int i = 0; i < m; i++) {
                V av = KV(loadu)(a + i * lda + k);
#pragma GCC unroll 4
                for (int jj = 0; jj < 4; jj++) acc[i][jj] += av * bv[jj];
            }
        }
        for (int i = 0; i < m; i++) {
            KT *crow = c + (ptrdiff_t)i * ldc;
            for (int jj = 0; jj < nj; jj++) {
                KT lanes[VL] __attribute__((aligned(KVB)));
                KV(storeu)(lanes, acc[i][jj]);
                KT s = 0;
                for (int l = 0; l < VL; l++) s += lanes[l];
                for (int k = kv; k < K; k++) s += a[i * lda + k] * br[jj][k];
                crow[j0 + jj] = KV(epi1)(s, crow + j0 + jj, beta, bias, j0 + jj, act);
            }
        }
    }
}

/* Whether gemv takes the task: a plain matrix op(A) of at most 4 rows, and
 * a row-major B or (op(A) rows contiguous) a transposed one. */
static inline int KV(gemv_ok)(const struct kdk_gemm_task *t)
{
    return t->akind == KDK_A_MAT && !t->col2im && t->m <= KDK_GEMV_MAX_M && (!t->transb || !t->transa);
}

KTGT KDK_CONTRACT static void KV(gemv)(const struct kdk_gemm_task *t)
{
    int M = t->m, N = t->n, K = t->k;
    const KT *a = (const KT *)t->a, *b = (const KT *)t->b, *bias = (const KT *)t->bias;
    KT *c = (KT *)t->c, beta = t->beta.KS;
    ptrdiff_t rsa = t->transa ? 1 : t->lda, csa = t->transa ? t->lda : 1, ldb = t->ldb, ldc = t->ldc;
    int act = t->act;
    if (t->transb) {
        switch (M) {
        case 1: KV(gemv_t_rows)(1, N, K, a, rsa, b, ldb, c, ldc, beta, bias, act); break;
        case 2: KV(gemv_t_rows)(2, N, K, a, rsa, b, ldb, c, ldc, beta, bias, act); break;
        case 3: KV(gemv_t_rows)(3, N, K, a, rsa, b, ldb, c, ldc, beta, bias, act); break;
        default: KV(gemv_t_rows)(4, N, K, a, rsa, b, ldb, c, ldc, beta, bias, act); break;
        }
        return;
    }
    switch (M) {
    case 1: KV(gemv_rows)(1, KGW, N, K, a, rsa, csa, b, ldb, c, ldc, beta, bias, act); break;
    case 2: KV(gemv_rows)(2, KGW / 2, N, K, a, rsa, csa, b, ldb, c, ldc, beta, bias, act); break;
    case 3: KV(gemv_rows)(3, 2, N, K, a, rsa, csa, b, ldb, c, ldc, beta, bias, act); break;
    default: KV(gemv_rows)(4, 2, N, K, a, rsa, csa, b, ldb, c, ldc, beta, bias, act); break;
    }
}

/* Packs rows i0..i0+mc, columns k0..k0+kc of a transposed matrix op(A) (A
 * stored K×M) into MR-row panels: each k step is a contiguous run of A. */
KTGT static void KV(pack_a_t)(const KT *restrict a, ptrdiff_t lda, int i0, int mc, int k0, int kc,
                              KT *restrict ap)
{
    for (int ir = 0; ir < mc; ir += KMR, ap += (ptrdiff_t)kc * KMR) {
        int mr = KDK_MIN(KMR, mc - ir);
        const KT *src = a + (ptrdiff_t)k0 * lda + i0 + ir;
        if (mr == KMR) {
            for (int p = 0; p < kc; p++)
#pragma GCC unroll 16
                for (int ii = 0; ii < KMR; ii++) ap[(ptrdiff_t)p * KMR + ii] = src[(ptrdiff_t)p * lda + ii];
        } else {
            for (int p = 0; p < kc; p++) {
                for (int ii = 0; ii < mr; ii++) ap[(ptrdiff_t)p * KMR + ii] = src[(ptrdiff_t)p * lda + ii];
                for (int ii = mr; ii < KMR; ii++) ap[(ptrdiff_t)p * KMR + ii] = 0;
            }
        }
    }
}

/* The blocked driver.  Splits each dimension into equal blocks (no ragged
 * last block of 1 column) of at most MC, KC, NC.  op(A) is read in place
 * when it is a matrix, or a convolution whose windows avoid the padding;
 * otherwise its panels are packed. */
KTGT static void KV(gemm)(const struct kdk_gemm_task *t, KT *work)
{
    if (KV(gemv_ok)(t)) {
        KV(gemv)(t);
        return;
    }
    int M = t->m, N = t->n, K = t->k;
    int kcb, ncb, mb = (M + KDK_MC - 1) / KDK_MC;
    KV(b_blocks)(N, K, t->one_kblock, &kcb, &ncb);
    int mcb = KV(round_up)((M + mb - 1) / mb, KMR);
    /* The conv data gradient adds its tiles into dX: there, blocks of rows
     * never cross an image and depend only on the image's size, so that each
     * dX element gets its terms in the same order when the batch is split
     * (threads, kdk_sconv2d_bwd_data_part). */
    int ohw = M;
    if (t->col2im) {
        ohw = t->g->oh * t->g->ow;
        int mbi = (ohw + KDK_MC - 1) / KDK_MC;
        mcb = KV(round_up)((ohw + mbi - 1) / mbi, KMR);
    }
    KT *bp = (KT *)(((uintptr_t)work + KDK_ALIGN - 1) & ~(uintptr_t)(KDK_ALIGN - 1));
    KT *ap = bp + (ptrdiff_t)kcb * ncb;
    KT *c = (KT *)t->c;
    const KT *bias = (const KT *)t->bias;
    ptrdiff_t ldc = t->ldc;
    const KT *a = (const KT *)t->a;
    ptrdiff_t rsa = t->transa ? 1 : t->lda, csa = t->transa ? t->lda : 1;
    int conv = t->akind != KDK_A_MAT;
    /* A transposed matrix is packed: read in place, each k step of a tile
     * would jump lda elements (cache-set conflicts at power-of-two lda). */
    int pack_at = !conv && t->transa;
    /* Forward convolutions with enough channels per tap decide per tile (few
     * channels make short segments: packing is faster); the filter gradient
     * decides per call. */
    int direct = (t->akind == KDK_A_IM2COL && t->g->c >= 8) ||
                 (t->akind == KDK_A_IM2COL_T && KV(conv_unpadded)(t->g));
    ptrdiff_t conv_cs = !conv ? 0 : t->akind == KDK_A_IM2COL ? 1 : (ptrdiff_t)t->g->sw * t->g->c;
    int seglen[KDK_KC], nseg = 1;
    ptrdiff_t segoff[KDK_KC];
    /* Packing B pays off when each panel serves many row tiles; with one or
     * two, full panels of a row-major B are read in place.  Otherwise a full
     * panel of a row-major B is packed by the first tile that uses it, which
     * reads B in place (kernel_strided_pack): B crosses the memory once.
     * A B packed once (prepacked) serves every panel, even those read in
     * place otherwise: the panel's rows are contiguous there instead of
     * ldb apart (M 5 to 16, 784×256: ~10% faster). The same values go to
     * the same kernels, so the bits are the same. */
    const KT *prepacked = KV(prepacked_b)(t);
    int inplace_b = !t->transb && M <= 2 * KMR && !prepacked;
    int pack_in_tile = !t->transb && !inplace_b && !t->col2im && !prepacked;
    const KT *b = (const KT *)t->b;
    ptrdiff_t ldb = t->ldb;
    const struct kdk_gemm_task *scatter = t->col2im ? t : NULL;

    for (int jc = 0; jc < N; jc += ncb) {
        int nc = KDK_MIN(ncb, N - jc);
        for (int pc = 0; pc < K; pc += kcb) {
            int kc = KDK_MIN(kcb, K - pc);
            int last = pc + kc == K;
            KT beta = pc ? 1 : t->beta.KS;
            const KT *bblk = bp;
            if (prepacked) {
                bblk = prepacked;
                prepacked += (ptrdiff_t)kc * KV(round_up)(nc, NR);
            } else {
                KV(pack_b)(t, pc, kc, jc, nc, inplace_b || pack_in_tile, bp);
            }
            if (conv && direct) {
                nseg = KV(conv_segments)(t, pc, kc, seglen, segoff);
            } else {
                seglen[0] = kc;
                segoff[0] = 0;
            }
            for (int ic = 0, mc; ic < M; ic += mc) {
                mc = KDK_MIN(KDK_MIN(mcb, M - ic), ohw - ic % ohw);
                if (conv && !direct) KV(pack_a)(t, ic, mc, pc, kc, ap);
                if (pack_at) KV(pack_a_t)(a, t->lda, ic, mc, pc, kc, ap);
                for (int jr = 0; jr < nc; jr += NR) {
                    int nr = KDK_MIN(NR, nc - jr), act = last ? t->act : KDK_ACT_NONE;
                    const KT *bpan = bblk + (ptrdiff_t)jr * kc;
                    ptrdiff_t bs = NR;
                    if (inplace_b && nr == NR) {
                        bpan = b + pc * ldb + jc + jr;
                        bs = ldb;
                    }
                    const KT *bb = last && bias ? bias + jc + jr : NULL;
                    KT *cc = c + jc + jr;
                    int unpacked = pack_in_tile && nr == NR && ic == 0;
                    for (int ir = 0; ir < mc; ir += KMR) {
                        int mr = KDK_MIN(KMR, mc - ir);
                        KT *ct = cc + (ic + ir) * ldc;
                        ptrdiff_t aoff[KMR];
                        if (unpacked) {
                            unpacked = 0;
                            const KT *bsrc = b + pc * ldb + jc + jr;
                            KT *bdst = bp + (ptrdiff_t)jr * kc;
                            if (!conv && !pack_at) {
                                for (int i = 0; i < KMR; i++) aoff[i] = KDK_MIN(i, mr - 1) * rsa;
                                KV(kernel_strided_pack)(1, seglen, segoff, a + (ic + ir) * rsa + pc * csa,
                                                        aoff, csa, bsrc, ldb, ct, (int)ldc, mr, nr, beta,
                                                        bb, act, bdst);
                                continue;
                            }
                            if (conv && direct && KV(conv_rows)(t, t->a_i0 + ic + ir, mr, aoff)) {
                                KV(kernel_strided_pack)(nseg, seglen, segoff, a, aoff, conv_cs, bsrc,
                                                        ldb, ct, (int)ldc, mr, nr, beta, bb, act, bdst);
                                continue;
                            }
                            KV(pack_b)(t, pc, kc, jc + jr, NR, 0, bdst);
                        }
                        if (pack_at) {
                            (nr <= VL ? KV(kernel_packed_narrow) : KV(kernel_packed))(
                                kc, ap + (ptrdiff_t)ir * kc, bpan, bs, ct, (int)ldc, mr, nr, beta, bb,
                                act);
                        } else if (!conv) {
                            for (int i = 0; i < KMR; i++) aoff[i] = KDK_MIN(i, mr - 1) * rsa;
                            (nr <= VL ? KV(kernel_narrow) : KV(kernel_strided))(
                                1, seglen, segoff, a + (ic + ir) * rsa + pc * csa, aoff, csa, bpan,
                                bs, ct, (int)ldc, mr, nr, beta, bb, act, scatter, ic + ir, jc + jr);
                        } else if (direct && KV(conv_rows)(t, t->a_i0 + ic + ir, mr, aoff)) {
                            KV(kernel_strided)(nseg, seglen, segoff, a, aoff, conv_cs, bpan, bs, ct,
                                               (int)ldc, mr, nr, beta, bb, act, NULL, 0, 0);
                        } else {
                            const KT *apan = ap + (ptrdiff_t)ir * kc;
                            if (direct) { /* a forward tile touching the padding */
                                apan = ap;
                                KV(pack_a_im2col)(t, t->a_i0 + ic + ir, mr, pc, kc, ap);
                            }
                            KV(kernel_packed)(kc, apan, bpan, bs, ct, (int)ldc, mr, nr, beta, bb,
                                              act);
                        }
                    }
                }
            }
        }
    }
}

#undef VL
#undef NR
#undef V
#undef VI
#undef KINL
#undef KLANES
#undef KZIP_LO
#undef KZIP_HI
#undef KSHUF
#undef KGW
/* consume the per-variant parameters */
#undef KVB
#undef KMR
#undef KNV
#undef KV
#undef KTGT
