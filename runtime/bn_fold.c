/* bn_fold.c — a BatchNormalization folded into the layer before it, once
 * the weights are known: by kdslc when it embeds them (--embed-weights,
 * compiler/passes/fold_batchnorm.c's kd_bn_fold_values) and by a model's
 * <model>_prepare at run time, with the same arithmetic, in double, so that
 * both give the same bits (kernels.h states it). */
#include <math.h>

#include "kernels_impl.h"

/* s[k] = gamma[k] / sqrt(variance[k] + epsilon): written out at each use,
 * as one expression, so every caller rounds it alike. */
#define KDK_BN_SCALE(gamma, variance, epsilon, k) \
    (((gamma) ? (double)(gamma)[k] : 1.0) / sqrt((double)(variance)[k] + (epsilon)))

#define KDK_BN_FOLD(KT, name)                                                                              \
    int name(KT *kernel, long kernel_elems, long channels, const KT *gamma, const KT *beta, const KT *bias, \
             const KT *mean, const KT *variance, double epsilon, KT *into)                                 \
    {                                                                                                      \
        int finite = 1;                                                                                    \
        for (long j = 0; j < kernel_elems; j++) {                                                          \
            long k = j % channels;                                                                         \
            kernel[j] = (KT)((double)kernel[j] * KDK_BN_SCALE(gamma, variance, epsilon, k));               \
            finite = finite && isfinite(kernel[j]);                                                        \
        }                                                                                                  \
        for (long k = 0; k < channels; k++) { /* into may be bias or beta: each read before it is written */ \
            double s = KDK_BN_SCALE(gamma, variance, epsilon, k);                                          \
            into[k] = (KT)((beta ? (double)beta[k] : 0.0) + ((bias ? (double)bias[k] : 0.0) - (double)mean[k]) * s); \
            finite = finite && isfinite(into[k]);                                                          \
        }                                                                                                  \
        return finite ? 0 : -1;                                                                            \
    }

KDK_BN_FOLD(float, kdk_sbn_fold)
KDK_BN_FOLD(double, kdk_dbn_fold)
