/* kernels_impl.h — internals shared by the kernel families (not for generated code).
 *
 * The kernels are written once per family in a *_tmpl.h header that each .c
 * file includes twice, once per element type:
 *   KT       element type (float or double)
 *   KP(x)    public name: kdk_s##x or kdk_d##x
 *   KI(x)    file-local name for this type
 *   KEXP, KLOG, KTANH   the math functions of that type
 */
#ifndef KDSL_KERNELS_IMPL_H
#define KDSL_KERNELS_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

/* The fused epilogues' activations, from the one table: kdk_act_fusedf and
 * kdk_act_fused (double) apply KDK_ACT_* with its default argument. */
#include <math.h>
#define KDA_RELU(a) ((a) <= 0 ? 0 : (a))
#define KDA_T float
#define KDA_FN(n) kdk_act_##n##f
#define KDA_M(fn) fn##f
#include "activations_c.h"
#undef KDA_T
#undef KDA_FN
#undef KDA_M
#define KDA_T double
#define KDA_FN(n) kdk_act_##n
#define KDA_M(fn) fn
#include "activations_c.h"
#undef KDA_T
#undef KDA_FN
#undef KDA_M
#undef KDA_RELU

#define KDK_CAT_(a, b) a##b
#define KDK_CAT(a, b) KDK_CAT_(a, b)

/* Inner loops must contract a*b+c into FMA: ISO C modes (-std=c11) turn
 * contraction off in GCC, so the kernels ask for it per function.  Clang
 * contracts within an expression by default. */
#if defined(__GNUC__) && !defined(__clang__)
#define KDK_CONTRACT __attribute__((optimize("fp-contract=fast")))
#else
#define KDK_CONTRACT
#endif

/* Vector width (bytes) of the kernels other than the GEMM, from the compile
 * flags; the GEMM picks its own per instruction set (gemm.c). */
#if defined(__AVX512F__)
#define KDK_VB 64
#elif defined(__AVX__)
#define KDK_VB 32
#else
#define KDK_VB 16
#endif

#define KDK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KDK_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- GEMM blocking, the same on every target so work sizes are portable ----
 * KC×NC block of op(B) and MC×KC block of op(A) are packed into `work`;
 * the micro-tile of any target is at most KDK_MR_MAX × KDK_NR_MAX. */
enum {
    KDK_KC = 256,
    KDK_MC = 144,
    KDK_NC = 1024,
    KDK_MR_MAX = 16,
    KDK_NR_MAX = 64,
    KDK_ALIGN = 64, /* bytes; packed panels start on a cache line */
    /* The widest row of a micro-tile in any variant (AVX-512: 2 vectors of
     * 64 bytes); every variant's row width divides it, so a B packed once
     * is sized for any CPU (kdk_?gemm_packed_b_size). */
    KDK_NR_MAX_BYTES = 128,
    /* The most rows of a plain op(A) the GEMV path takes (nothing packed). */
    KDK_GEMV_MAX_M = 4
};

/* The direct convolution's slab of filters per tile sweep, bytes (conv_tmpl.h, fwd_slab);
 * filters of more bytes than KDK_CONV_PREFETCH come from memory, not the caches, and
 * each sweep prefetches the next one's (KDK_FWD_SLAB). */
enum { KDK_CONV_SLAB = 128 * 1024, KDK_CONV_PREFETCH = 1024 * 1024 };

/* The driver's blocks of k: ceil(K / KC) of equal depth, and at least two
 * from a depth of KC on, so that a dense layer of 256 inputs can split its
 * forward product's K between two threads (kdh_sgemm_mt), each summing the
 * weight rows its optimizer run owns. One block of 256 had that GEMM split
 * columns instead, reading half of each thread's weight rows from the
 * other core, and Adam on those weights then took 4x as long at two
 * threads as at one when the two vCPUs were far apart (docs/performance.md). */
static inline int kdk_kblocks_of(int K)
{
    int kb = (K + KDK_KC - 1) / KDK_KC;
    return kb < 2 && K >= KDK_KC ? 2 : kb;
}

/* Where op(A) comes from. */
enum kdk_asrc {
    KDK_A_MAT,      /* a matrix, maybe transposed */
    KDK_A_IM2COL,   /* rows: output pixels (n,oh,ow); cols: (kh,kw,c) of image a */
    KDK_A_IM2COL_T  /* the transpose: rows (kh,kw,c), cols output pixels */
};

struct kdk_conv_geom {
    int n, h, w, c, oh, ow, f, kh, kw, sh, sw, pt, pl;
};

struct kdk_dw_geom {
    int n, h, w, c, oh, ow, m, kh, kw, sh, sw, pt, pl, dh, dw;   /* dh, dw: dilation, at least 1 */
};

/* One GEMM C = act(op(A)·op(B) + beta·C + bias), C M×N.  Element pointers
 * are float or double as the driver's type says. */
struct kdk_gemm_task {
    int m, n, k;
    int akind;                      /* enum kdk_asrc */
    const void *a;
    int lda, transa;                /* KDK_A_MAT */
    const struct kdk_conv_geom *g;  /* KDK_A_IM2COL[_T] */
    int a_i0;                       /* first row of op(A) for im2col sources */
    const void *b;
    int ldb, transb;
    union { float s; double d; } beta;   /* .KS: a float kernel does no double arithmetic */
    void *c;
    int ldc;
    int col2im; /* C is not stored: row i (output pixel), column (kh,kw,ch) is
                   added into the image c of geometry g (the conv data gradient) */
    const void *bias;
    int act;
    int one_kblock; /* sum k in one block: the task is one block of a K the
                       caller split (kdk_?gemm_kblock), which must not be
                       split again (kdk_kblocks_of(KDK_KC) is 2) */
    const void *bpacked; /* op(B) packed once (kdk_?gemm_pack_b), or NULL: the
                            driver reads its panels there instead of packing
                            them when the header matches its variant and the
                            dims (packed_b_header, gemm.c) */
};

/* Packed drivers (gemm.c); work holds kdk_?gemm_work_size(m, n, k) elements.
 * kdk_?gemm_task uses the best instruction set the CPU has; the _isa forms
 * pick one (tests run every variant this machine supports). */
enum { KDK_ISA_BASE, KDK_ISA_AVX2, KDK_ISA_AVX512, KDK_ISA_COUNT };
int kdk_gemm_isa_supported(int isa);
void kdk_sgemm_task(const struct kdk_gemm_task *t, float *work);
void kdk_dgemm_task(const struct kdk_gemm_task *t, double *work);
void kdk_sgemm_task_isa(const struct kdk_gemm_task *t, float *work, int isa);
void kdk_dgemm_task_isa(const struct kdk_gemm_task *t, double *work, int isa);
/* kdk_?gemm_pack_b for variant isa's layout. */
void kdk_sgemm_pack_b_isa(int N, int K, const float *B, int ldb, int transB, float *packed, int isa);
void kdk_dgemm_pack_b_isa(int N, int K, const double *B, int ldb, int transB, double *packed, int isa);

/* Splits [0, total) into nparts blocks whose starts are multiples of unit. */
static inline void kdk_split(int total, int unit, int part, int nparts, int *lo, int *hi)
{
    int per, a, b;
    if (nparts < 1) nparts = 1;
    per = (total + nparts - 1) / nparts;
    per = (per + unit - 1) / unit * unit;
    a = part * per;
    b = a + per;
    *lo = KDK_MIN(a, total);
    *hi = KDK_MIN(b, total);
}

/* ---- Instruction-set variants of the conv and pooling fast paths ----
 * Like the GEMM (gemm.c), conv.c and pool.c compile their direct kernels
 * once for the compile flags' vector width ("base") and, on x86-64 built
 * for a lesser ISA, again for AVX2+FMA and AVX-512 with target attributes;
 * kdk_fast_isa() names the best one this CPU runs. */
#if defined(__AVX512F__)
#define KDK_FAST_BASE_VB 64
#elif defined(__AVX__)
#define KDK_FAST_BASE_VB 32
#else
#define KDK_FAST_BASE_VB 16
#endif
#if defined(__x86_64__) && defined(__GNUC__) && !defined(KDK_NO_DISPATCH)
#if !defined(__AVX512F__)
#define KDK_FAST_AVX512 1
#endif
#if !defined(__AVX512F__) && !(defined(__AVX2__) && defined(__FMA__))
#define KDK_FAST_AVX2 1
#endif
#endif
#define KDK_TGT_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")))
#define KDK_TGT_AVX2 __attribute__((target("avx2,fma")))

static inline int kdk_fast_isa(void)
{
#ifdef KDK_FAST_AVX512
    if (kdk_gemm_isa_supported(KDK_ISA_AVX512)) return KDK_ISA_AVX512;
#endif
#ifdef KDK_FAST_AVX2
    if (kdk_gemm_isa_supported(KDK_ISA_AVX2)) return KDK_ISA_AVX2;
#endif
    return KDK_ISA_BASE;
}

#endif
