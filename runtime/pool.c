/* pool.c — NHWC max/average pooling and global pooling, forward and backward
 * (float and double).  The kernels live in pool_tmpl.h. */
#include <string.h>

#include "kernels_impl.h"

#define KT float
#define KS s
#define KP(x) kdk_s##x
#include "pool_tmpl.h"
#undef KT
#undef KS
#undef KP

#define KT double
#define KS d
#define KP(x) kdk_d##x
#include "pool_tmpl.h"
#undef KT
#undef KS
#undef KP
