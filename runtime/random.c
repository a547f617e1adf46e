/* random.c — the weight initialisers (float and double) over random.h's
 * bits; the functions live in random_tmpl.h. Both backends call these, so
 * the C backend and the JIT draw the same initial weights. */
#include <math.h>

#include "kernels_impl.h"
#include "random.h"

/* Initial weights must not depend on the build: a multiply-add fused where
 * the target has FMA (GCC's -ffp-contract=fast, the default outside ISO
 * modes; clang contracts within an expression by default) would change
 * lo + (hi - lo) * u in the last bit. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#define KDK_NO_CONTRACT
#elif defined(__GNUC__)
#define KDK_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define KDK_NO_CONTRACT
#endif

#define KT float
#define KP(x) kdk_s##x
#include "random_tmpl.h"
#undef KT
#undef KP

#define KT double
#define KP(x) kdk_d##x
#include "random_tmpl.h"
#undef KT
#undef KP
