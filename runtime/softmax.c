/* softmax.c — row softmax / log-softmax and fused softmax cross-entropy,
 * forward and backward (float and double), and one process's mean over the
 * ranks (a copy).  The kernels live in softmax_tmpl.h. */
#include <math.h>
#include <string.h>

#include "kernels_impl.h"

#define KT float
#define KS s
#define KP(x) kdk_s##x
#define KEXP expf
#define KLOG logf
#include "softmax_tmpl.h"
#undef KT
#undef KS
#undef KP
#undef KEXP
#undef KLOG

#define KT double
#define KS d
#define KP(x) kdk_d##x
#define KEXP exp
#define KLOG log
#include "softmax_tmpl.h"
#undef KT
#undef KS
#undef KP
#undef KEXP
#undef KLOG
