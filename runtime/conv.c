/* conv.c — Conv2D NHWC forward, data gradient and filter gradient (float and double).
 * The kernels live in conv_tmpl.h; they run on the packed GEMM driver. */
#include <math.h>
#include <string.h>

#include "kernels_impl.h"

#define KT float
#define KS s
#define KP(x) kdk_s##x
#define KEXP expf
#define KTANH tanhf
#include "conv_tmpl.h"
#undef KT
#undef KS
#undef KP
#undef KEXP
#undef KTANH

#define KT double
#define KS d
#define KP(x) kdk_d##x
#define KEXP exp
#define KTANH tanh
#include "conv_tmpl.h"
#undef KT
#undef KS
#undef KP
#undef KEXP
#undef KTANH
