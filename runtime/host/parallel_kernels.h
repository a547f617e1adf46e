/* parallel_kernels.h — the runtime kernels (kernels.h) split across the
 * host's thread pool (thread_pool.h), with the single-threaded kernels'
 * signatures, so that the JIT can call either (parallel_kernels.c). With one
 * thread each is a plain call of the kernel; with several, every output
 * element's arithmetic stays the single-threaded kernel's, so results do not
 * depend on the thread count. */
#ifndef KDSL_PARALLEL_KERNELS_H
#define KDSL_PARALLEL_KERNELS_H

#include "thread_pool.h"

/* kdk_sgemm with its M or N split across the pool (same signature). */
void kdh_sgemm_mt(int M, int N, int K, const float *A, int lda, int transA, const float *B, int ldb, int transB,
                  float beta, float *C, int ldc, const float *bias, int act, float *work);

/* The convolution kernels (kernels.h) split with their *_part companions,
 * and pooling split over the batch (same signatures). */
void kdh_sconv2d_fwd_mt(int n, int h, int w, int c, int oh, int ow, int f, int kh, int kw, int sh, int sw, int pt,
                        int pl, const float *x, const float *wt, const float *bias, int act, float *y, float *work);
void kdh_sconv2d_pool_fwd_mt(int n, int h, int w, int c, int oh, int ow, int f, int kh, int kw, int sh, int sw,
                             int pt, int pl, int pkh, int pkw, int psh, int psw, const float *x, const float *wt,
                             const float *bias, int act, float *y, float *work);
void kdh_sconv2d_bwd_data_mt(int n, int h, int w, int c, int oh, int ow, int f, int kh, int kw, int sh, int sw,
                             int pt, int pl, const float *dy, const float *wt, float *dx, int accumulate, float *work);
void kdh_sconv2d_bwd_filter_mt(int n, int h, int w, int c, int oh, int ow, int f, int kh, int kw, int sh, int sw,
                               int pt, int pl, const float *x, const float *dy, float *dwt, int accumulate,
                               float *work);
/* The depthwise convolution's kernels split with their *_part companions
 * (output rows, rows of dx, units of channels by kernel rows). */
void kdh_sdwconv2d_fwd_mt(int n, int h, int w, int c, int oh, int ow, int m, int kh, int kw, int sh, int sw, int pt,
                          int pl, int dih, int diw, const float *x, const float *wt, const float *bias, int act,
                          float *y);
void kdh_sdwconv2d_bwd_data_mt(int n, int h, int w, int c, int oh, int ow, int m, int kh, int kw, int sh, int sw,
                               int pt, int pl, int dih, int diw, const float *dy, const float *wt, float *dx,
                               int accumulate);
void kdh_sdwconv2d_bwd_filter_mt(int n, int h, int w, int c, int oh, int ow, int m, int kh, int kw, int sh, int sw,
                                 int pt, int pl, int dih, int diw, const float *x, const float *dy, float *dwt,
                                 int accumulate);
void kdh_smaxpool2d_fwd_mt(int n, int h, int w, int c, int oh, int ow, int kh, int kw, int sh, int sw, int pt, int pl,
                           const float *x, float *y, int32_t *argmax);
void kdh_smaxpool2d_bwd_mt(int n, int h, int w, int c, int oh, int ow, int kh, int kw, int sh, int sw, int pt, int pl,
                           const float *x, const int32_t *argmax, const float *dy, float *dx, int accumulate);
void kdh_savgpool2d_fwd_mt(int n, int h, int w, int c, int oh, int ow, int kh, int kw, int sh, int sw, int pt, int pl,
                           int count_pad, const float *x, float *y);
void kdh_savgpool2d_bwd_mt(int n, int h, int w, int c, int oh, int ow, int kh, int kw, int sh, int sw, int pt, int pl,
                           int count_pad, const float *dy, float *dx, int accumulate);

/* Not a split kernel but the host's version of the row rank_mean, which the
 * JIT calls the same way: x averaged over the MPI ranks, weighted by each
 * rank's batch, while a data-parallel step has all ranks in grad
 * (train_dist.c); else a copy, as kdk_srank_mean. */
void kdh_srank_mean_mt(int n, int batch, const float *x, float *y);

#endif
