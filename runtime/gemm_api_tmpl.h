/* gemm_api_tmpl.h — the GEMM entry points for one element type.
 * gemm.c includes this once for float and once for double with KT, KTS
 * (its size, for the preprocessor), KTI, KS
 * (the s/d letter), KP(x) (public name), KEXP, KTANH and KACT defined. */

#define KI(x) KDK_CAT(KDK_CAT(x, _), KS)
#include "vec_tmpl.h"

/* The instruction-set variants of the packed driver (see gemm.c). */
#define KVB KDK_BASE_VB
#define KMR KDK_BASE_MR
#define KNV KDK_BASE_NV
#define KV(x) KDK_CAT(KI(x), _base)
#define KTGT
#include "gemm_tmpl.h"

#ifdef KDK_VARIANT_AVX512
#define KVB 64
#define KMR 8
#define KNV 2
#define KV(x) KDK_CAT(KI(x), _avx512)
#define KTGT __attribute__((target("avx512f,avx2,fma")))
#include "gemm_tmpl.h"
#endif

#ifdef KDK_VARIANT_AVX2
#define KVB 32
#define KMR 6
#define KNV 2
#define KV(x) KDK_CAT(KI(x), _avx2)
#define KTGT __attribute__((target("avx2,fma")))
#include "gemm_tmpl.h"
#endif

/* fn args in instruction-set variant isa's instantiation (the base one for an
 * isa not built here). */
#ifdef KDK_VARIANT_AVX512
#define KDK_ON_AVX512(fn, args) case KDK_ISA_AVX512: KDK_CAT(KI(fn), _avx512) args; break;
#else
#define KDK_ON_AVX512(fn, args)
#endif
#ifdef KDK_VARIANT_AVX2
#define KDK_ON_AVX2(fn, args) case KDK_ISA_AVX2: KDK_CAT(KI(fn), _avx2) args; break;
#else
#define KDK_ON_AVX2(fn, args)
#endif
#define KDK_ON_VARIANT(isa, fn, args)                                                              \
    switch (isa) {                                                                                 \
        KDK_ON_AVX512(fn, args)                                                                    \
        KDK_ON_AVX2(fn, args)                                                                      \
    default: KDK_CAT(KI(fn), _base) args; break;                                                   \
    }

/* A finished row of C: + bias, then the activation (KV(epi1)'s order). */
static void KI(row_epilogue)(KT *restrict crow, int N, const KT *bias, int act)
{
    if (bias)
        for (int j = 0; j < N; j++) crow[j] += bias[j];
    if (act != KDK_ACT_NONE)
        for (int j = 0; j < N; j++) crow[j] = KACT(act, crow[j]);
}

/* The unpacked path: no scratch, plain loops the compiler may vectorise.
 * Also serves K == 0, where C = act(beta·C + bias). */
KDK_CONTRACT static void KI(gemm_simple)(int M, int N, int K, const KT *A, int lda, int transA,
                                         const KT *B, int ldb, int transB, KT beta, KT *C,
                                         int ldc, const KT *bias, int act)
{
    for (int i = 0; i < M; i++) {
        KT *restrict crow = C + (ptrdiff_t)i * ldc;
        if (!transB) {
            if (beta == 0)
                for (int j = 0; j < N; j++) crow[j] = 0;
            else if (beta != 1)
                for (int j = 0; j < N; j++) crow[j] *= beta;
            for (int k = 0; k < K; k++) {
                KT aik = transA ? A[(ptrdiff_t)k * lda + i] : A[(ptrdiff_t)i * lda + k];
                const KT *restrict brow = B + (ptrdiff_t)k * ldb;
                for (int j = 0; j < N; j++) crow[j] += aik * brow[j];
            }
        } else {
            for (int j = 0; j < N; j++) {
                const KT *brow = B + (ptrdiff_t)j * ldb;
                KT s = 0;
                if (transA)
                    for (int k = 0; k < K; k++) s += A[(ptrdiff_t)k * lda + i] * brow[k];
                else
                    for (int k = 0; k < K; k++) s += A[(ptrdiff_t)i * lda + k] * brow[k];
                crow[j] = beta == 0 ? s : s + beta * crow[j];
            }
        }
        KI(row_epilogue)(crow, N, bias, act);
    }
}

void KP(gemm_task_isa)(const struct kdk_gemm_task *t, KT *work, int isa)
{
    if (t->m <= 0 || t->n <= 0) return;
    if (t->k <= 0) {
        KI(gemm_simple)(t->m, t->n, 0, NULL, 0, 0, NULL, 0, 0, t->beta.KS, (KT *)t->c, t->ldc,
                        (const KT *)t->bias, t->act);
        return;
    }
    KDK_ON_VARIANT(isa, gemm, (t, work));
}

void KP(gemm_task)(const struct kdk_gemm_task *t, KT *work)
{
    KP(gemm_task_isa)(t, work, kdk_isa());
}

size_t KP(gemm_work_size)(int M, int N, int K)
{
    return kdk_gemm_work_elems(M, N, K, sizeof(KT));
}

void KP(gemm_packed_b)(int M, int N, int K, const KT *A, int lda, int transA, const KT *B, int ldb,
                       int transB, const KT *packed, KT beta, KT *C, int ldc, const KT *bias, int act,
                       KT *work)
{
    if (M <= 0 || N <= 0) return;
    if (!work || K <= 0) {
        KI(gemm_simple)(M, N, K, A, lda, transA, B, ldb, transB, beta, C, ldc, bias, act);
        return;
    }
    struct kdk_gemm_task t = {
        .m = M, .n = N, .k = K,
        .akind = KDK_A_MAT, .a = A, .lda = lda, .transa = transA,
        .b = B, .ldb = ldb, .transb = transB, .bpacked = packed,
        .beta.KS = beta, .c = C, .ldc = ldc, .bias = bias, .act = act,
    };
    KP(gemm_task)(&t, work);
}

void KP(gemm)(int M, int N, int K, const KT *A, int lda, int transA, const KT *B, int ldb,
              int transB, KT beta, KT *C, int ldc, const KT *bias, int act, KT *work)
{
    KP(gemm_packed_b)(M, N, K, A, lda, transA, B, ldb, transB, NULL, beta, C, ldc, bias, act, work);
}

size_t KP(gemm_packed_b_size)(int max_m, int N, int K)
{
    return kdk_gemm_packed_b_elems(max_m, N, K, sizeof(KT));
}

void KP(gemm_pack_b_isa)(int N, int K, const KT *B, int ldb, int transB, KT *packed, int isa)
{
    if (N <= 0 || K <= 0) return;
    KDK_ON_VARIANT(isa, pack_b_once, (N, K, B, ldb, transB, packed));
}

void KP(gemm_pack_b)(int N, int K, const KT *B, int ldb, int transB, KT *packed)
{
    KP(gemm_pack_b_isa)(N, K, B, ldb, transB, packed, kdk_isa());
}

/* Part p's block [lo, hi) of total split in nparts at multiples of unit,
 * except that a last block smaller than tiny goes to the block before it:
 * a part of a few rows (or columns) would take the GEMV path (or the
 * narrow-N one), whose sums are grouped differently from the tiled path's,
 * and the result would depend on the thread count. */
static void KI(gemm_split)(int total, int unit, int tiny, int part, int nparts, int *lo, int *hi)
{
    kdk_split(total, unit, part, nparts, lo, hi);
    int nlo, nhi;
    kdk_split(total, unit, part + 1, nparts, &nlo, &nhi);
    if (part + 1 < nparts && nhi > nlo && nhi - nlo < tiny && nhi == total) *hi = total;
    if (*hi - *lo < tiny && *hi == total && *lo > 0 && total >= tiny) *lo = *hi;
}

/* Split N when it is the larger side (each part then packs all of op(A),
 * the smaller operand), else M; blocks stay multiples of the micro-tile in
 * use (kdk_gemm_split_cols) or of any (KDK_MR_MAX rows). */
void KP(gemm_part)(int part, int nparts, int M, int N, int K, const KT *A, int lda, int transA,
                   const KT *B, int ldb, int transB, KT beta, KT *C, int ldc, const KT *bias,
                   int act, KT *work)
{
    int lo, hi;
    if (N >= M) {
        KI(gemm_split)(N, kdk_gemm_split_cols(), 16, part, nparts, &lo, &hi);
        if (lo >= hi) return;
        KP(gemm)(M, hi - lo, K, A, lda, transA, transB ? B + (ptrdiff_t)lo * ldb : B + lo, ldb,
                 transB, beta, C + lo, ldc, bias ? bias + lo : NULL, act, work);
    } else {
        KI(gemm_split)(M, KDK_MR_MAX, 5, part, nparts, &lo, &hi);
        if (lo >= hi) return;
        KP(gemm)(hi - lo, N, K, transA ? A + lo : A + (ptrdiff_t)lo * lda, lda, transA, B, ldb,
                 transB, beta, C + (ptrdiff_t)lo * ldc, ldc, bias, act, work);
    }
}

/* Block blk of the sum over k that the packed driver forms (kdk_gemm_kblocks):
 * C = op(A)[:, blk]·op(B)[blk, :] + beta·C, no bias, no activation. */
void KP(gemm_kblock)(int blk, int M, int N, int K, const KT *A, int lda, int transA, const KT *B,
                     int ldb, int transB, KT beta, KT *C, int ldc, KT *work)
{
    int kb = kdk_gemm_kblocks(K);
    if (blk < 0 || blk >= kb) return;
    int kcb = (K + kb - 1) / kb, pc = blk * kcb, kc = KDK_MIN(kcb, K - pc);
    if (M <= 0 || N <= 0 || kc <= 0) return;
    if (!work) {
        KI(gemm_simple)(M, N, kc, transA ? A + (ptrdiff_t)pc * lda : A + pc, lda, transA,
                        transB ? B + pc : B + (ptrdiff_t)pc * ldb, ldb, transB, beta, C, ldc, NULL, KDK_ACT_NONE);
        return;
    }
    /* One block, summed as the whole call sums it: a block of KDK_KC would
     * otherwise split in two (kdk_kblocks_of) and group its terms apart. */
    struct kdk_gemm_task t = {
        .m = M, .n = N, .k = kc,
        .akind = KDK_A_MAT, .a = transA ? A + (ptrdiff_t)pc * lda : A + pc, .lda = lda, .transa = transA,
        .b = transB ? B + pc : B + (ptrdiff_t)pc * ldb, .ldb = ldb, .transb = transB,
        .beta.KS = beta, .c = C, .ldc = ldc, .bias = NULL, .act = KDK_ACT_NONE, .one_kblock = 1,
    };
    KP(gemm_task)(&t, work);
}

/* Rows [i0, i1) of C = act(T[nt-1] + (... + (T[0] + C)) + bias), T[t] at
 * T + t*tstride with rows N apart: the driver's write-back after its last
 * block, in its order (KV(epi1)). */
void KP(gemm_ksum)(int i0, int i1, int N, const KT *T, size_t tstride, int nt, KT *C, int ldc,
                   const KT *bias, int act)
{
    for (int i = i0; i < i1; i++) {
        KT *restrict c = C + (ptrdiff_t)i * ldc;
        for (int t = 0; t < nt; t++) {
            const KT *restrict r = T + (size_t)t * tstride + (size_t)i * (size_t)N;
            for (int j = 0; j < N; j++) c[j] = r[j] + c[j];
        }
        KI(row_epilogue)(c, N, bias, act);
    }
}

void KP(colsum)(int M, int N, const KT *X, int ldx, KT *out, int accumulate)
{
    if (!accumulate) memset(out, 0, sizeof(KT) * (size_t)KDK_MAX(N, 0));
    for (int i = 0; i < M; i++) KI(row_add)(out, X + (ptrdiff_t)i * ldx, N);
}

#undef KI
#undef KVL
#undef KDK_ON_AVX512
#undef KDK_ON_AVX2
#undef KDK_ON_VARIANT
