/* gemm_tmpl.h — the packed GEMM for one element type and one vector width.
 * gemm.c includes this once per (type, instruction set) with:
 *   KT, KTI   element type and the integer type of the same size
 *   KVB       vector size in bytes (16, 32 or 64)
 *   KMR, KNV  micro-tile: KMR rows × KNV vectors
 *   KV(x)     name of x in this instantiation
 *   KTGT      attribute selecting the instruction set (may be empty)
 *   KEXP, KTANH
 *
 * Goto/BLIS structure: op(B) is packed by KC×NC blocks into NR-column panels,
 * op(A) by MC×KC blocks into MR-row panels (both zero-padded), and a
 * register-blocked micro-kernel computes an MR×NR tile of C from one panel of
 * each, then writes it back with the epilogue (beta·C, bias, activation) fused.
 * Packing A understands implicit im2col views, which is how the convolutions
 * avoid materialising the column matrix. */

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

KINL KT KV(epi1)(KT x, KT *cp, KT beta, const KT *bias, int j, int act)
{
    if (beta != 0) x += beta * *cp;
    if (bias) x += bias[j];
    switch (act) {
    case KDK_ACT_RELU: x = x <= 0 ? 0 : x; break;
    case KDK_ACT_SIGMOID: x = 1 / (1 + KEXP(-x)); break;
    case KDK_ACT_TANH: x = KTANH(x); break;
    default: break;
    }
    return x;
}

/* The micro-kernel: an MR×NR tile over kc steps, then the fused write-back
 * into the mr×nr valid part at c. */
KTGT KDK_CONTRACT static void KV(kernel)(int kc, const KT *restrict a, const KT *restrict b,
                                         KT *restrict c, int ldc, int mr, int nr,
                                         KT beta, const KT *restrict bias, int act)
{
    V acc[KMR][KNV];
#pragma GCC unroll 16
    for (int i = 0; i < KMR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < KNV; v++) acc[i][v] = (V){0};

#pragma GCC unroll 2
    for (int p = 0; p < kc; p++) {
        V bv[KNV];
#pragma GCC unroll 4
        for (int v = 0; v < KNV; v++) bv[v] = KV(loadu)(b + v * VL);
#pragma GCC unroll 16
        for (int i = 0; i < KMR; i++) {
            V ai = a[i] - (V){0}; /* broadcast; x - 0 folds, 0 + x does not */
#pragma GCC unroll 4
            for (int v = 0; v < KNV; v++) acc[i][v] += ai * bv[v];
        }
        a += KMR;
        b += NR;
    }

    if (mr == KMR && nr == NR && act <= KDK_ACT_RELU) {
#pragma GCC unroll 16
        for (int i = 0; i < KMR; i++)
#pragma GCC unroll 4
            for (int v = 0; v < KNV; v++) {
                KT *cp = c + (size_t)i * ldc + v * VL;
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
            for (int v = 0; v < KNV; v++) KV(storeu)(tile + i * NR + v * VL, acc[i][v]);
        for (int i = 0; i < mr; i++) {
            KT *crow = c + (size_t)i * ldc;
            for (int j = 0; j < nr; j++)
                crow[j] = KV(epi1)(tile[i * NR + j], crow + j, beta, bias, j, act);
        }
    }
}

/* Packs rows k0..k0+kc of op(B), columns j0..j0+nc, into NR-wide panels. */
KTGT static void KV(pack_b)(const struct kdk_gemm_task *t, int k0, int kc, int j0, int nc,
                            KT *restrict bp)
{
    const KT *b = (const KT *)t->b;
    size_t ldb = (size_t)t->ldb;
    for (int jr = 0; jr < nc; jr += NR, bp += (size_t)kc * NR) {
        int nr = KDK_MIN(NR, nc - jr);
        if (!t->transb) {
            const KT *src = b + k0 * ldb + j0 + jr;
            for (int p = 0; p < kc; p++, src += ldb) {
                KT *d = bp + (size_t)p * NR;
                if (nr == NR) {
                    memcpy(d, src, sizeof(KT) * NR);
                } else {
                    memcpy(d, src, sizeof(KT) * nr);
                    memset(d + nr, 0, sizeof(KT) * (NR - nr));
                }
            }
        } else {
            /* B stored N×K: NR row streams, read in short runs along k. */
            const KT *src = b + (size_t)(j0 + jr) * ldb + k0;
            int p = 0;
            for (; p + 8 <= kc; p += 8) {
                KT *d = bp + (size_t)p * NR;
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
                KT *d = bp + (size_t)p * NR;
                for (int j = 0; j < nr; j++) d[j] = src[j * ldb + p];
                for (int j = nr; j < NR; j++) d[j] = 0;
            }
        }
    }
}

/* Packs one MR-row panel of an implicit im2col matrix: rows are output pixels
 * i0.. (mr of them), columns (kh,kw,c) indices k0..k0+kc. */
KTGT static void KV(pack_a_im2col)(const struct kdk_gemm_task *t, int i0, int mr, int k0, int kc,
                                   KT *restrict ap)
{
    const struct kdk_conv_geom *g = t->g;
    const KT *x = (const KT *)t->a;
    int kwc = g->kw * g->c, ohw = g->oh * g->ow;
    for (int ii = 0; ii < mr; ii++) {
        int i = i0 + ii, n = i / ohw, r = i % ohw;
        int y0 = (r / g->ow) * g->sh - g->pt, x0 = (r % g->ow) * g->sw - g->pl;
        const KT *img = x + (size_t)n * g->h * g->w * g->c;
        int kh = k0 / kwc, kw = (k0 % kwc) / g->c, ch = k0 % g->c;
        KT *d = ap + ii;
        for (int p = 0; p < kc;) {
            int run = KDK_MIN(g->c - ch, kc - p);
            int iy = y0 + kh, ix = x0 + kw;
            if (iy >= 0 && iy < g->h && ix >= 0 && ix < g->w) {
                const KT *s = img + ((size_t)iy * g->w + ix) * g->c + ch;
                for (int q = 0; q < run; q++) d[(size_t)(p + q) * KMR] = s[q];
            } else {
                for (int q = 0; q < run; q++) d[(size_t)(p + q) * KMR] = 0;
            }
            p += run;
            ch = 0;
            if (++kw == g->kw) {
                kw = 0;
                kh++;
            }
        }
    }
    for (int ii = mr; ii < KMR; ii++)
        for (int p = 0; p < kc; p++) ap[(size_t)p * KMR + ii] = 0;
}

/* Packs one MR-row panel of the transposed im2col matrix: rows are (kh,kw,c)
 * indices i0.. (mr of them), columns output pixels k0..k0+kc. */
KTGT static void KV(pack_a_im2col_t)(const struct kdk_gemm_task *t, int i0, int mr, int k0, int kc,
                                     KT *restrict ap)
{
    const struct kdk_conv_geom *g = t->g;
    const KT *x = (const KT *)t->a;
    int dy[KMR], dx[KMR], ch[KMR];
    int kwc = g->kw * g->c, ohw = g->oh * g->ow;
    for (int ii = 0; ii < mr; ii++) {
        int r = i0 + ii;
        dy[ii] = r / kwc - g->pt;
        dx[ii] = (r % kwc) / g->c - g->pl;
        ch[ii] = r % g->c;
    }
    /* rows within one (kh,kw) read a contiguous channel run */
    int contig = ch[0] + mr - 1 == ch[mr - 1];
    int n = k0 / ohw, oy = (k0 % ohw) / g->ow, ox = k0 % g->ow;
    size_t hwc = (size_t)g->h * g->w * g->c;
    for (int p = 0; p < kc; p++, ap += KMR) {
        const KT *img = x + n * hwc;
        int y0 = oy * g->sh, x0 = ox * g->sw;
        int iy = y0 + dy[0], ix = x0 + dx[0];
        if (contig && iy >= 0 && iy < g->h && ix >= 0 && ix < g->w) {
            const KT *s = img + ((size_t)iy * g->w + ix) * g->c + ch[0];
            for (int ii = 0; ii < mr; ii++) ap[ii] = s[ii];
        } else {
            for (int ii = 0; ii < mr; ii++) {
                iy = y0 + dy[ii];
                ix = x0 + dx[ii];
                ap[ii] = (iy >= 0 && iy < g->h && ix >= 0 && ix < g->w)
                             ? img[((size_t)iy * g->w + ix) * g->c + ch[ii]]
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

/* Packs rows i0..i0+mc of op(A), columns k0..k0+kc, into MR-row panels. */
KTGT static void KV(pack_a)(const struct kdk_gemm_task *t, int i0, int mc, int k0, int kc,
                            KT *restrict ap)
{
    const KT *a = (const KT *)t->a;
    size_t lda = (size_t)t->lda;
    for (int ir = 0; ir < mc; ir += KMR, ap += (size_t)kc * KMR) {
        int mr = KDK_MIN(KMR, mc - ir);
        if (t->akind == KDK_A_IM2COL) {
            KV(pack_a_im2col)(t, t->a_i0 + i0 + ir, mr, k0, kc, ap);
        } else if (t->akind == KDK_A_IM2COL_T) {
            KV(pack_a_im2col_t)(t, t->a_i0 + i0 + ir, mr, k0, kc, ap);
        } else if (t->transa) {
            /* A stored K×M: each k gives mr contiguous values. */
            const KT *src = a + k0 * lda + i0 + ir;
            for (int p = 0; p < kc; p++, src += lda) {
                KT *d = ap + (size_t)p * KMR;
                memcpy(d, src, sizeof(KT) * mr);
                if (mr < KMR) memset(d + mr, 0, sizeof(KT) * (KMR - mr));
            }
        } else {
            /* A stored M×K: mr row streams, read in short runs along k. */
            const KT *src = a + (size_t)(i0 + ir) * lda + k0;
            int p = 0;
            if (mr == KMR) {
                for (; p + 8 <= kc; p += 8) {
                    KT *d = ap + (size_t)p * KMR;
#pragma GCC unroll 16
                    for (int i = 0; i < KMR; i++) {
                        const KT *s = src + i * lda + p;
#pragma GCC unroll 8
                        for (int q = 0; q < 8; q++) d[q * KMR + i] = s[q];
                    }
                }
            }
            for (; p < kc; p++) {
                KT *d = ap + (size_t)p * KMR;
                for (int i = 0; i < mr; i++) d[i] = src[i * lda + p];
                for (int i = mr; i < KMR; i++) d[i] = 0;
            }
        }
    }
}

static inline int KV(round_up)(int x, int m) { return (x + m - 1) / m * m; }

/* The blocked driver.  Splits each dimension into equal blocks (no ragged
 * last block of 1 column) of at most MC, KC, NC. */
KTGT static void KV(gemm)(const struct kdk_gemm_task *t, KT *work)
{
    int M = t->m, N = t->n, K = t->k;
    int kb = (K + KDK_KC - 1) / KDK_KC, nb = (N + KDK_NC - 1) / KDK_NC, mb = (M + KDK_MC - 1) / KDK_MC;
    int kcb = (K + kb - 1) / kb;
    int ncb = KV(round_up)((N + nb - 1) / nb, NR);
    int mcb = KV(round_up)((M + mb - 1) / mb, KMR);
    KT *bp = (KT *)(((uintptr_t)work + KDK_ALIGN - 1) & ~(uintptr_t)(KDK_ALIGN - 1));
    KT *ap = bp + (size_t)kcb * ncb;
    KT *c = (KT *)t->c;
    const KT *bias = (const KT *)t->bias;
    size_t ldc = (size_t)t->ldc;

    for (int jc = 0; jc < N; jc += ncb) {
        int nc = KDK_MIN(ncb, N - jc);
        for (int pc = 0; pc < K; pc += kcb) {
            int kc = KDK_MIN(kcb, K - pc);
            int last = pc + kc == K;
            KT beta = pc ? 1 : (KT)t->beta;
            KV(pack_b)(t, pc, kc, jc, nc, bp);
            for (int ic = 0; ic < M; ic += mcb) {
                int mc = KDK_MIN(mcb, M - ic);
                KV(pack_a)(t, ic, mc, pc, kc, ap);
                for (int jr = 0; jr < nc; jr += NR) {
                    const KT *bpan = bp + (size_t)jr * kc;
                    const KT *bb = last && bias ? bias + jc + jr : NULL;
                    for (int ir = 0; ir < mc; ir += KMR)
                        KV(kernel)(kc, ap + (size_t)ir * kc, bpan,
                                   c + (ic + ir) * ldc + jc + jr, (int)ldc,
                                   KDK_MIN(KMR, mc - ir), KDK_MIN(NR, nc - jr),
                                   beta, bb, last ? t->act : KDK_ACT_NONE);
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
/* consume the per-variant parameters */
#undef KVB
#undef KMR
#undef KNV
#undef KV
#undef KTGT
