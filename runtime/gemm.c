/* gemm.c — packed GEMM (float and double), with runtime instruction-set dispatch on x86-64.
 *
 * The kernels are written with GCC vector extensions; the vector width and
 * micro-tile come from the compile flags ("base" variant):
 *   AVX-512      64-byte vectors, 8×2 vectors tile  (8×32 floats)
 *   AVX/AVX2     32-byte vectors, 6×2 vectors tile  (6×16 floats)
 *   SSE, NEON    16-byte vectors, 6×2 / 8×2 vectors
 *   other (e.g. Cortex-M4: vectors become scalar code) 4×1
 * On x86-64 the library may be built for the baseline ISA (no -march), so it
 * also compiles AVX2 and AVX-512 variants with target attributes and picks
 * the best one the CPU supports on each call.  Define KDK_NO_DISPATCH to
 * build only the base variant. */
#include <math.h>
#include <string.h>

#include "kernels_impl.h"

#if defined(__AVX512F__)
#define KDK_BASE_VB 64
#define KDK_BASE_MR 8
#define KDK_BASE_NV 2
#elif defined(__AVX__)
#define KDK_BASE_VB 32
#define KDK_BASE_MR 6
#define KDK_BASE_NV 2
#elif defined(__x86_64__) || defined(__i386__)
#define KDK_BASE_VB 16
#define KDK_BASE_MR 6
#define KDK_BASE_NV 2
#elif defined(__ARM_NEON) || defined(__aarch64__)
#define KDK_BASE_VB 16
#define KDK_BASE_MR 8
#define KDK_BASE_NV 2
#else
#define KDK_BASE_VB 16
#define KDK_BASE_MR 4
#define KDK_BASE_NV 1
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(KDK_NO_DISPATCH)
#if !defined(__AVX512F__)
#define KDK_VARIANT_AVX512 1
#endif
#if !defined(__AVX512F__) && !(defined(__AVX2__) && defined(__FMA__))
#define KDK_VARIANT_AVX2 1
#endif
#endif

/* Whether variant isa is compiled in and this CPU runs it.  libgcc's CPU
 * model (filled by a constructor before main) also checks that the OS saves
 * the wide registers. */
int kdk_gemm_isa_supported(int isa)
{
    switch (isa) {
    case KDK_ISA_BASE: return 1;
#ifdef KDK_VARIANT_AVX512
    case KDK_ISA_AVX512: return __builtin_cpu_supports("avx512f");
#endif
#ifdef KDK_VARIANT_AVX2
    case KDK_ISA_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    default: return 0;
    }
}

/* The best variant this CPU runs. */
static int kdk_isa(void)
{
    if (kdk_gemm_isa_supported(KDK_ISA_AVX512)) return KDK_ISA_AVX512;
    if (kdk_gemm_isa_supported(KDK_ISA_AVX2)) return KDK_ISA_AVX2;
    return KDK_ISA_BASE;
}

/* The unit of kdk_?gemm_part's column split: the float micro-tile width of
 * the variant this CPU runs (a multiple of the double one). Parts then
 * start on the tiles one call would use, so every element of C gets the
 * same arithmetic at any split; narrower parts than the old fixed 64
 * columns let a thread pool balance a GEMM of few columns (kdh_sgemm_mt). */
int kdk_gemm_split_cols(void)
{
    switch (kdk_isa()) {
    case KDK_ISA_AVX512: return 32;
    case KDK_ISA_AVX2: return 16;
    default: return KDK_BASE_VB / 4 * KDK_BASE_NV;
    }
}

/* Work size, in elements of size es.  It uses the target-independent bounds
 * KDK_MR_MAX/KDK_NR_MAX, so it is the same on every target. */
static size_t kdk_gemm_work_elems(int M, int N, int K, size_t es)
{
    if (M <= 0 || N <= 0 || K <= 0) return 0;
    size_t kc = (size_t)KDK_MIN(K, KDK_KC);
    size_t nc = (size_t)KDK_MIN(N, KDK_NC), mc = (size_t)KDK_MIN(M, KDK_MC);
    return kc * (nc + KDK_NR_MAX + mc + KDK_MR_MAX) + KDK_ALIGN / es;
}

int kdk_gemm_kblocks(int K)
{
    return K <= 0 ? 0 : kdk_kblocks_of(K);
}

/* ---- op(B) packed once (kdk_?gemm_pack_b) ----------------------------------
 * The buffer: a header of KDK_ALIGN bytes, then for each NC block of columns
 * and, inside it, each KC block of k (the driver's loop order), the block's
 * NR-column panels of kc rows, the last zero-padded: what pack_b writes into
 * work on every call. The blocks depend on N and K only, never on M. The
 * header says what the panels were packed for; a driver that finds anything
 * else there (another variant's NR, other dims, other blocking) packs B as
 * usual. */
struct kdk_packed_b_header {
    uint32_t magic, elem_bytes, nr, n, k, transb, kc, nc;
};
_Static_assert(sizeof(struct kdk_packed_b_header) <= KDK_ALIGN, "the header fits before the panels");
enum { KDK_PACKED_B_MAGIC = 0x6b645062 }; /* "kdPb" */

static struct kdk_packed_b_header packed_b_header(size_t es, int nr, int N, int K, int transB)
{
    return (struct kdk_packed_b_header){KDK_PACKED_B_MAGIC, (uint32_t)es, (uint32_t)nr, (uint32_t)N,
                                        (uint32_t)K, transB != 0, KDK_KC, KDK_NC};
}

static void packed_b_write_header(void *packed, size_t es, int nr, int N, int K, int transB)
{
    struct kdk_packed_b_header h = packed_b_header(es, nr, N, K, transB);
    memset(packed, 0, KDK_ALIGN);
    memcpy(packed, &h, sizeof h);
}

static int packed_b_matches(const void *packed, size_t es, int nr, int N, int K, int transB)
{
    struct kdk_packed_b_header want = packed_b_header(es, nr, N, K, transB), got;
    memcpy(&got, packed, sizeof got);
    return memcmp(&want, &got, sizeof got) == 0;
}

/* Elements of size es for any variant's layout: the widest NR's padding
 * covers every narrower one (they divide it). No buffer where every
 * M <= max_m takes the GEMV path, which reads B in place. */
static size_t kdk_gemm_packed_b_elems(int max_m, int N, int K, size_t es)
{
    if (max_m <= KDK_GEMV_MAX_M || N <= 0 || K <= 0) return 0;
    size_t nr = KDK_NR_MAX_BYTES / es;
    return KDK_ALIGN / es + (size_t)K * (((size_t)N + nr - 1) / nr * nr);
}

#define KT float
#define KTS 4
#define KTI int32_t
#define KS s
#define KP(x) kdk_s##x
#define KEXP expf
#define KTANH tanhf
#define KACT kdk_act_fusedf
#include "gemm_api_tmpl.h"
#undef KT
#undef KTS
#undef KTI
#undef KS
#undef KP
#undef KEXP
#undef KTANH
#undef KACT

/* double: the base variant only. f64 is the precision build (gradient
 * checks, reference runs), not the fast one; two more variants would double
 * this file's build time. */
#undef KDK_VARIANT_AVX512
#undef KDK_VARIANT_AVX2
#define KT double
#define KTS 8
#define KTI int64_t
#define KS d
#define KP(x) kdk_d##x
#define KEXP exp
#define KTANH tanh
#define KACT kdk_act_fused
#include "gemm_api_tmpl.h"
#undef KT
#undef KTS
#undef KTI
#undef KS
#undef KP
#undef KEXP
#undef KTANH
#undef KACT
