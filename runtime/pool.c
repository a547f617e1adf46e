/* pool.c — NHWC max/average pooling and global pooling, forward and backward
 * (float and double).  The kernels live in pool_tmpl.h; the tiled max pool
 * (stride = window) has direct kernels per instruction set (kernels_impl.h). */
#include <string.h>

#include "kernels_impl.h"

/* The direct kernels need a real vector unit: x86-64 and Arm NEON. */
#if defined(__x86_64__) || defined(__ARM_NEON) || defined(__aarch64__)
#define KDK_FAST_DIRECT 1
#endif

#define KI(x) KDK_CAT(KDK_CAT(x, _), KS)

#define KT float
#define KTI int32_t
#define KS s
#define KP(x) kdk_s##x
#ifdef KDK_FAST_DIRECT
#define KVB KDK_FAST_BASE_VB
#define KV(x) KDK_CAT(KI(x), _base)
#define KTGT
#include "pool_tmpl.h"
#endif
#ifdef KDK_FAST_AVX512
#define KVB 64
#define KV(x) KDK_CAT(KI(x), _avx512)
#define KTGT KDK_TGT_AVX512
#include "pool_tmpl.h"
#endif
#ifdef KDK_FAST_AVX2
#define KVB 32
#define KV(x) KDK_CAT(KI(x), _avx2)
#define KTGT KDK_TGT_AVX2
#include "pool_tmpl.h"
#endif
#include "pool_tmpl.h"
#undef KT
#undef KTI
#undef KS
#undef KP
#define KI(x) KDK_CAT(KDK_CAT(x, _), KS)

#define KT double
#define KTI int64_t
#define KS d
#define KP(x) kdk_d##x
#ifdef KDK_FAST_DIRECT
#define KVB KDK_FAST_BASE_VB
#define KV(x) KDK_CAT(KI(x), _base)
#define KTGT
#include "pool_tmpl.h"
#endif
#ifdef KDK_FAST_AVX512
#define KVB 64
#define KV(x) KDK_CAT(KI(x), _avx512)
#define KTGT KDK_TGT_AVX512
#include "pool_tmpl.h"
#endif
#ifdef KDK_FAST_AVX2
#define KVB 32
#define KV(x) KDK_CAT(KI(x), _avx2)
#define KTGT KDK_TGT_AVX2
#include "pool_tmpl.h"
#endif
#include "pool_tmpl.h"
#undef KT
#undef KTI
#undef KS
#undef KP
