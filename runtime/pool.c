/* pool.c — NHWC max/average pooling and global pooling, forward and backward
 * (float and double).  The kernels live in pool_tmpl.h. */
#include <string.h>

#include "kernels_impl.h"

#define KT float
#define KTI int32_t
#define KS s
#define KP(x) kdk_s##x
#include "pool_tmpl.h"
#undef KT
#undef KTI
#undef KS
#undef KP

#define KT double
#define KTI int64_t
#define KS d
#define KP(x) kdk_d##x
#include "pool_tmpl.h"
#undef KT
#undef KTI
#undef KS
#undef KP
