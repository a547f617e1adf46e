/* pool.c — NHWC max/average pooling and global pooling, forward and backward
 * (float and double).  The kernels live in pool_tmpl.h; the tiled max pool
 * (stride = window) has direct kernels per instruction set (kernels_impl.h). */
#include <string.h>

#include "kernels_impl.h"

/* The direct kernels need a real vector unit: x86-64 and Arm NEON. */
#if defined(__x86_64__) || defined(__ARM_NEON) || defined(__aarch64__)
#define KDK_FAST_DIRECT 1
#endif

#define KDK_TEMPLATE "pool_tmpl.h"
#ifdef KDK_FAST_DIRECT
#define KDK_VARIANT_BASE 1
#endif

#define KI(x) KDK_CAT(KDK_CAT(x, _), KS)

#define KT float
#define KTI int32_t
#define KS s
#define KP(x) kdk_s##x
#include "isa_variants.h"
#undef KT
#undef KTI
#undef KS
#undef KP
#define KI(x) KDK_CAT(KDK_CAT(x, _), KS)

#define KT double
#define KTI int64_t
#define KS d
#define KP(x) kdk_d##x
#include "isa_variants.h"
#undef KT
#undef KTI
#undef KS
#undef KP
