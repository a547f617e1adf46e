/* conv.c — Conv2D NHWC forward, data gradient and filter gradient (float and double).
 * The kernels live in conv_tmpl.h: direct register-blocked kernels, compiled
 * per instruction set (see kernels_impl.h), and the packed GEMM driver for
 * the shapes they do not take. */
#include <math.h>
#include <string.h>

#include "kernels_impl.h"

/* The direct kernels need a real vector unit: x86-64 and Arm NEON.  Other
 * targets (Cortex-M) keep the GEMM driver and the scalar loops. */
#if defined(__x86_64__) || defined(__ARM_NEON) || defined(__aarch64__)
#define KDK_FAST_DIRECT 1
/* The compile flags' own vector width gets a variant unless it is plain
 * SSE next to the AVX2 and AVX-512 ones: a CPU without AVX2 uses the GEMM. */
#ifndef KDK_FAST_AVX2
#define KDK_FAST_HAVE_BASE 1
#endif
#endif

#define KDK_TEMPLATE "conv_tmpl.h"
#ifdef KDK_FAST_HAVE_BASE
#define KDK_VARIANT_BASE 1
#endif

#define KI(x) KDK_CAT(KDK_CAT(x, _), KS)

#define KT float
#define KTI int32_t
#define KS s
#define KP(x) kdk_s##x
#define KEXP expf
#define KTANH tanhf
#define KACT kdk_act_fusedf
#include "isa_variants.h"
#undef KT
#undef KTI
#undef KS
#undef KP
#undef KEXP
#undef KTANH
#undef KACT

#define KI(x) KDK_CAT(KDK_CAT(x, _), KS)
/* double: the GEMM path only. The direct kernels are for speed, and f64 is
 * kdsl's precision build (gradient checks, reference runs): compiling them
 * twice more would double this file's build time for no user. */
#undef KDK_FAST_DIRECT
#undef KDK_FAST_HAVE_BASE
#undef KDK_VARIANT_BASE
#undef KDK_FAST_AVX512
#undef KDK_FAST_AVX2
#define KT double
#define KTI int64_t
#define KS d
#define KP(x) kdk_d##x
#define KEXP exp
#define KTANH tanh
#define KACT kdk_act_fused
#include "isa_variants.h"
#undef KT
#undef KTI
#undef KS
#undef KP
#undef KEXP
#undef KTANH
#undef KACT
