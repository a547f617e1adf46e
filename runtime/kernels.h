/* kernels.h — the freestanding compute kernels of the kdsl runtime (prefix kdk_).
 *
 * These are the heavy operations that generated code calls; elementwise work
 * is emitted as loops by the compiler.  The signatures of the ones generated
 * code calls are in kernel_list.h, one row each (argument kinds and names);
 * KDK_K_<NAME>(KDK_DECLARE) below declares a row's float and double kernels.
 * Everything here is freestanding: no allocation, no stdio, no mutable
 * globals.  All memory is the caller's, and every kernel that wants scratch
 * space takes a `work` pointer whose size the matching `*_work_size` function
 * returns (in elements of the kernel's type).
 *
 * Conventions shared by every kernel:
 *   - Row-major storage; images are NHWC; Conv2D kernels are [kh][kw][in][out]
 *     (the Keras layout); `ld*` arguments are row strides in elements.
 *   - Each kernel comes as float (`kdk_s...`) and double (`kdk_d...`); the
 *     double versions exist for the compiler's f64 gradient-check mode.
 *   - `work` needs no particular alignment; work sizes depend only on the
 *     problem shape, never on the target, so the compiler may compute them on
 *     the host and emit them as constants for any target.
 *   - Threads: kernels never create threads.  The `*_part(part, nparts, ...)`
 *     companions compute the part-th of nparts disjoint slices of the output;
 *     run part 0..nparts-1 on different threads, each with its own `work`
 *     (of the full problem's work size), and the union is the whole result.
 *     Work sizes grow with every dimension, so a size computed for the
 *     largest batch serves any smaller one.
 *   - Pointers passed as outputs must not alias inputs (except where noted).
 *
 * Speed: GEMM and (depthwise) convolution pick AVX2+FMA or AVX-512 code at run time on
 * x86-64 even when this file is built for the baseline ISA (see gemm.c);
 * pooling, softmax and colsum use the vector width the compile flags allow,
 * so build with -march=native (or at least -mavx2 -mfma) on the host.  The
 * same sources build for Cortex-M with plain scalar code.  Stack: the
 * packed paths (work != NULL) use up to about 6 KB on Cortex-M4 and 10 KB on
 * x86-64; the work == NULL paths a few hundred bytes.
 */
#ifndef KDSL_KERNELS_H
#define KDSL_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "activations.h"
#include "fastmath.h"
#include "kernel_list.h"
#include "random.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Activation fused into GEMM / convolution write-back: none, or a row of
 * activations.h (+ 1) with its default argument. RELU keeps NaN. */
#define KDK_ACT_ENUM(NAME, ...) KDK_ACT_##NAME,
enum kdk_act {
    KDK_ACT_NONE = 0,
    KDA_LIST(KDK_ACT_ENUM)
    KDK_ACT_COUNT
};
#undef KDK_ACT_ENUM

/* ---- GEMM ------------------------------------------------------------------
 * C = act(op(A)·op(B) + beta·C + bias)      C is M×N, op(A) M×K, op(B) K×N
 * op(A) = A (stored M×K, row stride lda) or, if transA, Aᵀ with A stored K×M.
 * op(B) = B (stored K×N, row stride ldb) or, if transB, Bᵀ with B stored N×K.
 * beta == 0 ignores C's old contents (even NaN).  bias (length N, added to
 * every row) may be NULL.  work: kdk_sgemm_work_size(M, N, K) floats, or NULL
 * for a slower unpacked path that needs no scratch (firmware).
 * Thread split: kdk_sgemm_part splits N (if N >= M) or M into disjoint
 * blocks of C; column blocks are multiples of kdk_gemm_split_cols(), the
 * micro-tile width of the instruction set the CPU runs (16 on AVX2). */
int kdk_gemm_split_cols(void);
size_t kdk_sgemm_work_size(int M, int N, int K);
KDK_K_GEMM(KDK_DECLARE)   /* kdk_sgemm, kdk_dgemm: (M, N, K, A, lda, transA, B, ldb, transB, beta, C, ldc, bias, act, work) */
void kdk_sgemm_part(int part, int nparts, int M, int N, int K,
                    const float *A, int lda, int transA,
                    const float *B, int ldb, int transB,
                    float beta, float *C, int ldc,
                    const float *bias, int act, float *work);

/* op(B) packed once, for a B that is the same on every call (a layer's
 * weights, packed when the model is prepared): past the GEMV path (M > 4),
 * where kdk_sgemm packs op(B)'s panels into work on every call or, with one
 * or two row tiles, reads a row-major B's full panels in place (rows ldb
 * apart), kdk_sgemm_packed_b reads them all from `packed`.
 * kdk_sgemm_packed_b_size: reals of `packed` for any M up to max_m, op(B)
 * K×N; the same on every CPU (the widest variant's layout, AVX-512's), so
 * the compiler may write it as a constant. 0 when max_m <= 4: those M take
 * the GEMV path, which reads B in place (but for a transposed op(A) times
 * a transposed B), and the caller passes NULL.
 * kdk_sgemm_pack_b: packs op(B) (B stored K×N with ldb, or N×K if transB)
 * into `packed` for the variant this CPU runs: a 64-byte header, then the
 * panels as the driver lays them in work (gemm.c). `packed` needs no
 * alignment; if it is 64-byte aligned, every panel starts on a cache line
 * where a panel row fills one or more (AVX2, AVX-512), elsewhere on a
 * panel row (32 bytes with SSE or NEON).
 * kdk_sgemm_packed_b: kdk_sgemm's arguments with `packed` after transB, and
 * kdk_sgemm's bits for every M. If `packed` is NULL, or its header names
 * another variant or other N, K or transB (a buffer packed on another CPU
 * or for another layer), B is packed as usual. One call computes all of C
 * (no thread split yet). */
size_t kdk_sgemm_packed_b_size(int max_m, int N, int K);
void kdk_sgemm_pack_b(int N, int K, const float *B, int ldb, int transB, float *packed);
KDK_K_GEMM_PACKED_B(KDK_DECLARE)   /* kdk_[sd]gemm_packed_b: kdk_?gemm's arguments, packed after transB */

/* Split K: the packed driver (work given, M > 4) sums over k in
 * kdk_gemm_kblocks(K) blocks, each summed from zero and added onto C in
 * order, the epilogue after the last. Blocks 0..b-1 into C with
 * kdk_sgemm_kblock (block 0 with beta, the others with beta 1), blocks
 * b..kb-1 each into its own M×N T[t] (beta 0; rows N apart, tstride apart),
 * then kdk_sgemm_ksum on every row give kdk_sgemm's bits: a thread split
 * in which each part reads only its own rows of op(B) (host/parallel_kernels.c). */
int kdk_gemm_kblocks(int K);
void kdk_sgemm_kblock(int blk, int M, int N, int K,
                      const float *A, int lda, int transA,
                      const float *B, int ldb, int transB,
                      float beta, float *C, int ldc, float *work);
void kdk_sgemm_ksum(int i0, int i1, int N, const float *T, size_t tstride, int nt,
                    float *C, int ldc, const float *bias, int act);

size_t kdk_dgemm_work_size(int M, int N, int K);
size_t kdk_dgemm_packed_b_size(int max_m, int N, int K);
void kdk_dgemm_pack_b(int N, int K, const double *B, int ldb, int transB, double *packed);
void kdk_dgemm_part(int part, int nparts, int M, int N, int K,
                    const double *A, int lda, int transA,
                    const double *B, int ldb, int transB,
                    double beta, double *C, int ldc,
                    const double *bias, int act, double *work);
void kdk_dgemm_kblock(int blk, int M, int N, int K,
                      const double *A, int lda, int transA,
                      const double *B, int ldb, int transB,
                      double beta, double *C, int ldc, double *work);
void kdk_dgemm_ksum(int i0, int i1, int N, const double *T, size_t tstride, int nt,
                    double *C, int ldc, const double *bias, int act);

/* out[j] (+)= sum_i X[i*ldx + j] for j < N: the bias gradient of a dense or
 * convolution layer (rows = batch·pixels).  accumulate 0 overwrites out. */
KDK_K_COLSUM(KDK_DECLARE)   /* kdk_scolsum, kdk_dcolsum: (M, N, X, ldx, out, accumulate) */

/* ---- Conv2D (NHWC) -----------------------------------------------------------
 * Geometry, always in this order:
 *   n, h, w, c      input batch, height, width, channels
 *   oh, ow, f       output height, width, filters (chosen by the caller)
 *   kh, kw          kernel size;  sh, sw  strides
 *   pt, pl          zero padding at the top and left (bottom/right padding is
 *                   whatever oh/ow imply)
 * x: [n][h][w][c]; wt: [kh][kw][c][f]; y, dy: [n][oh][ow][f].
 * y[n,i,j,o] = act(bias[o] + sum x[n, i*sh+a-pt, j*sw+b-pl, ci]·wt[a,b,ci,o]).
 * work: the matching *_work_size elements; NULL selects direct loops without
 * scratch (slow; for firmware inference).  The column matrix of im2col is
 * never stored: unpadded windows are read from the image in place, the rest
 * packed a panel at a time, and the data gradient adds each GEMM tile into
 * dx as it is written back.
 * Thread split: fwd_part splits output pixels (the direct kernels: images, or
 * output rows when there are fewer images than parts), bwd_data_part splits
 * the batch (direct: images or rows of dx), bwd_filter_part splits the rows
 * (kh,kw,c) of dW.
 * With work, filter counts of whole vectors (e.g. multiples of 16 floats
 * with AVX-512) run direct register-blocked kernels picked per instruction
 * set at run time (conv_tmpl.h); bwd_data_work_size also covers the flipped
 * filters those use (kh·kw·c·f elements). */
#define KDK_CONV_GEOM_PARAMS int n, int h, int w, int c, int oh, int ow, int f, \
                             int kh, int kw, int sh, int sw, int pt, int pl

KDK_K_CONV2D_FWD(KDK_DECLARE)          /* kdk_[sd]conv2d_fwd(geometry, x, wt, bias, act, y, work) */
KDK_K_CONV2D_BWD_DATA(KDK_DECLARE)     /* kdk_[sd]conv2d_bwd_data(geometry, dy, wt, dx, accumulate, work) */
KDK_K_CONV2D_BWD_FILTER(KDK_DECLARE)   /* kdk_[sd]conv2d_bwd_filter(geometry, x, dy, dwt, accumulate, work) */
size_t kdk_sconv2d_fwd_work_size(KDK_CONV_GEOM_PARAMS);
void kdk_sconv2d_fwd_part(int part, int nparts, KDK_CONV_GEOM_PARAMS,
                          const float *x, const float *wt, const float *bias,
                          int act, float *y, float *work);
/* The convolution, then a max pooling of its output with pkh×pkw windows
 * and strides psh, psw inside the image (no padding): y is the pooled
 * [n][(oh-pkh)/psh+1][(ow-pkw)/psw+1][f].  One image at a time, so the
 * convolution's output stays in the cache and is never stored whole; the
 * same bits as conv2d_fwd then maxpool2d_fwd.  work (not NULL): the
 * matching conv2d_pool_fwd_work_size elements.  Thread split: images. */
KDK_K_CONV2D_POOL_FWD(KDK_DECLARE)
size_t kdk_sconv2d_pool_fwd_work_size(KDK_CONV_GEOM_PARAMS);
size_t kdk_dconv2d_pool_fwd_work_size(KDK_CONV_GEOM_PARAMS);
void kdk_sconv2d_pool_fwd_part(int part, int nparts, KDK_CONV_GEOM_PARAMS, int pkh, int pkw, int psh, int psw,
                               const float *x, const float *wt, const float *bias, int act, float *y,
                               float *work);
/* dx (+)= conv2d input gradient; accumulate 0 overwrites dx. */
size_t kdk_sconv2d_bwd_data_work_size(KDK_CONV_GEOM_PARAMS);
void kdk_sconv2d_bwd_data_part(int part, int nparts, KDK_CONV_GEOM_PARAMS,
                               const float *dy, const float *wt, float *dx,
                               int accumulate, float *work);
/* dwt (+)= conv2d kernel gradient; accumulate 0 overwrites dwt. */
size_t kdk_sconv2d_bwd_filter_work_size(KDK_CONV_GEOM_PARAMS);
void kdk_sconv2d_bwd_filter_part(int part, int nparts, KDK_CONV_GEOM_PARAMS,
                                 const float *x, const float *dy, float *dwt,
                                 int accumulate, float *work);

size_t kdk_dconv2d_fwd_work_size(KDK_CONV_GEOM_PARAMS);
void kdk_dconv2d_fwd_part(int part, int nparts, KDK_CONV_GEOM_PARAMS,
                          const double *x, const double *wt, const double *bias,
                          int act, double *y, double *work);
size_t kdk_dconv2d_bwd_data_work_size(KDK_CONV_GEOM_PARAMS);
void kdk_dconv2d_bwd_data_part(int part, int nparts, KDK_CONV_GEOM_PARAMS,
                               const double *dy, const double *wt, double *dx,
                               int accumulate, double *work);
size_t kdk_dconv2d_bwd_filter_work_size(KDK_CONV_GEOM_PARAMS);
void kdk_dconv2d_bwd_filter_part(int part, int nparts, KDK_CONV_GEOM_PARAMS,
                                 const double *x, const double *dy, double *dwt,
                                 int accumulate, double *work);

/* ---- Depthwise Conv2D (NHWC) --------------------------------------------------
 * Geometry, always in this order:
 *   n, h, w, c      input batch, height, width, channels
 *   oh, ow, m       output height, width (chosen by the caller), depth multiplier
 *   kh, kw          kernel size;  sh, sw  strides;  pt, pl  padding at the top
 *                   and left;  dih, diw  dilation (0 or 1: none)
 * x: [n][h][w][c]; wt: [kh][kw][c][m]; y, dy: [n][oh][ow][c*m];
 * y[n,i,j,ch*m+q] = act(bias[ch*m+q] + sum over taps (a, b) inside the image
 *                       of x[n, i*sh-pt+a*dih, j*sw-pl+b*diw, ch]·wt[a,b,ch,q]).
 * No workspace. With m = 1 the channels run in vectors of the best
 * instruction set (dwconv_tmpl.h), taking strides or dilation along an axis
 * but not both (Keras allows no other); portable loops do the rest.
 * Every element is summed in one fixed order whatever the split.
 * Thread split: fwd_part splits the output rows (n·oh), bwd_data_part the
 * rows of dx (n·h), bwd_filter_part units of 16 channels by one kernel row;
 * the parts write disjoint elements and give the unsplit kernel's bits. */
/* Whether every channel runs in vectors (on x86-64 and Arm; elsewhere all
 * is scalar): a multiplier of 1 and whole vectors of 4 floats. The rest
 * takes portable loops, ~40x slower where vectors run; the compiler lowers
 * those convolutions to loop nests of their own instead. */
static inline int kdk_dwconv_vectorized(int64_t c, int64_t m) { return m == 1 && c % 4 == 0; }

#define KDK_DW_GEOM_PARAMS int n, int h, int w, int c, int oh, int ow, int m, \
                           int kh, int kw, int sh, int sw, int pt, int pl, int dih, int diw

KDK_K_DWCONV2D_FWD(KDK_DECLARE)          /* kdk_[sd]dwconv2d_fwd(geometry, x, wt, bias, act, y) */
/* dx (+)= the input gradient; accumulate 0 overwrites dx. */
KDK_K_DWCONV2D_BWD_DATA(KDK_DECLARE)     /* kdk_[sd]dwconv2d_bwd_data(geometry, dy, wt, dx, accumulate) */
/* dwt (+)= the kernel gradient; accumulate 0 overwrites dwt. */
KDK_K_DWCONV2D_BWD_FILTER(KDK_DECLARE)   /* kdk_[sd]dwconv2d_bwd_filter(geometry, x, dy, dwt, accumulate) */
void kdk_sdwconv2d_fwd_part(int part, int nparts, KDK_DW_GEOM_PARAMS, const float *x, const float *wt,
                            const float *bias, int act, float *y);
void kdk_sdwconv2d_bwd_data_part(int part, int nparts, KDK_DW_GEOM_PARAMS, const float *dy, const float *wt,
                                 float *dx, int accumulate);
void kdk_sdwconv2d_bwd_filter_part(int part, int nparts, KDK_DW_GEOM_PARAMS, const float *x, const float *dy,
                                   float *dwt, int accumulate);
void kdk_ddwconv2d_fwd_part(int part, int nparts, KDK_DW_GEOM_PARAMS, const double *x, const double *wt,
                            const double *bias, int act, double *y);
void kdk_ddwconv2d_bwd_data_part(int part, int nparts, KDK_DW_GEOM_PARAMS, const double *dy, const double *wt,
                                 double *dx, int accumulate);
void kdk_ddwconv2d_bwd_filter_part(int part, int nparts, KDK_DW_GEOM_PARAMS, const double *x, const double *dy,
                                   double *dwt, int accumulate);

/* ---- Pooling (NHWC) ----------------------------------------------------------
 * Geometry: n, h, w, c (input), oh, ow (output), kh, kw (window), sh, sw
 * (strides), pt, pl (padding at top/left).  Padded positions never win a max
 * and are never counted by an average (Keras 'same'); 'valid' has pt = pl = 0.
 * argmax (optional, may be NULL) holds, per output element, the index of the
 * winning input element within its image: (ih*w + iw)*c + ch; -1 if the window
 * holds no input element (then y = 0).
 * Backward: dx (+)= the gradient; accumulate 0 overwrites dx first.  Max pool
 * backward uses argmax if given, else recomputes it from x (x may be NULL when
 * argmax is given).  Ties go to the first element in window order.
 * Each image is independent: threads may split the batch with pointer offsets. */
#define KDK_POOL_GEOM_PARAMS int n, int h, int w, int c, int oh, int ow, \
                             int kh, int kw, int sh, int sw, int pt, int pl

KDK_K_MAXPOOL2D_FWD(KDK_DECLARE)   /* kdk_[sd]maxpool2d_fwd(geometry, x, y, argmax) */
KDK_K_MAXPOOL2D_BWD(KDK_DECLARE)   /* kdk_[sd]maxpool2d_bwd(geometry, x, argmax, dy, dx, accumulate) */
/* count_pad 0: divide by the number of valid positions (Keras); 1: by kh*kw. */
KDK_K_AVGPOOL2D_FWD(KDK_DECLARE)   /* kdk_[sd]avgpool2d_fwd(geometry, count_pad, x, y) */
KDK_K_AVGPOOL2D_BWD(KDK_DECLARE)   /* kdk_[sd]avgpool2d_bwd(geometry, count_pad, dy, dx, accumulate) */

/* Global pooling over the hw = h*w positions of x [n][hw][c] into y [n][c].
 * argmax (optional) holds the winning position 0..hw-1 per (n, c). */
void kdk_sglobal_avgpool_fwd(int n, int hw, int c, const float *x, float *y);
void kdk_sglobal_avgpool_bwd(int n, int hw, int c, const float *dy, float *dx, int accumulate);
void kdk_sglobal_maxpool_fwd(int n, int hw, int c, const float *x, float *y, int32_t *argmax);
void kdk_sglobal_maxpool_bwd(int n, int hw, int c, const float *x, const int32_t *argmax,
                             const float *dy, float *dx, int accumulate);

void kdk_dglobal_avgpool_fwd(int n, int hw, int c, const double *x, double *y);
void kdk_dglobal_avgpool_bwd(int n, int hw, int c, const double *dy, double *dx, int accumulate);
void kdk_dglobal_maxpool_fwd(int n, int hw, int c, const double *x, double *y, int32_t *argmax);
void kdk_dglobal_maxpool_bwd(int n, int hw, int c, const double *x, const int32_t *argmax,
                             const double *dy, double *dx, int accumulate);

/* ---- Softmax and cross-entropy (rows of length n, contiguous) --------------
 * All are max-subtracted, so logits of ±1000 are fine; y may equal x. */
KDK_K_SOFTMAX(KDK_DECLARE)      /* kdk_[sd]softmax(rows, n, x, y) */
KDK_K_LOGSOFTMAX(KDK_DECLARE)   /* kdk_[sd]logsoftmax(rows, n, x, y) */
/* dx = y ⊙ (dy − Σ dy⊙y)  given y = softmax(x). */
void kdk_ssoftmax_bwd(int rows, int n, const float *y, const float *dy, float *dx);
/* dx = dy − softmax(x)·Σ dy  given y = logsoftmax(x). */
void kdk_slogsoftmax_bwd(int rows, int n, const float *y, const float *dy, float *dx);
/* Fused softmax cross-entropy.  target: rows×n probabilities (one-hot or soft
 * labels); labels: class index per row (int32).  loss (may be NULL) gets
 * −Σ target·log softmax per row; dlogits (may be NULL, may equal logits) gets
 * (softmax·Σtarget − target)·scale, i.e. (softmax − onehot)·scale.
 * Rows whose label lies outside [0, n) are ignored (loss 0, gradient 0).
 * Returns the sum of the row losses (double, for an accurate mean). */
KDK_K_SOFTMAX_XENT(KDK_DECLARE)   /* double kdk_[sd]softmax_xent(rows, n, logits, target, loss, dlogits, scale) */
double kdk_ssoftmax_xent_idx(int rows, int n, const float *logits, const int32_t *labels,
                             float *loss, float *dlogits, float scale);

/* ---- The mean over the ranks (synchronised BatchNormalization) ---------------
 * y = x (n values; batch: this process's samples). One process is the whole
 * job here; the host's kdh_srank_mean_mt, which the JIT calls, averages x over
 * the MPI ranks weighted by their batches (compiler/ir.h's IR_RANK_MEAN). */
KDK_K_RANK_MEAN(KDK_DECLARE)   /* kdk_[sd]rank_mean(n, batch, x, y) */

void kdk_dsoftmax_bwd(int rows, int n, const double *y, const double *dy, double *dx);
void kdk_dlogsoftmax_bwd(int rows, int n, const double *y, const double *dy, double *dx);
double kdk_dsoftmax_xent_idx(int rows, int n, const double *logits, const int32_t *labels,
                             double *loss, double *dlogits, double scale);

/* ---- BatchNormalization folded into the layer before it (bn_fold.c) -------
 * With s[k] = gamma[k] / sqrt(variance[k] + epsilon) (gamma NULL: 1), in
 * double: kernel[j] *= s[j % channels] for j < kernel_elems (the output
 * channel is the kernel's last axis, or in*multiplier + m for a depthwise
 * one), then into[k] = beta[k] + (bias[k] - mean[k]) * s[k] (beta, bias
 * NULL: 0), each rounded once to the element type. into may be bias or
 * beta. Returns 0, or -1 when a result is not finite (a variance at or
 * below -epsilon). kdslc's --embed-weights folds with kdk_dbn_fold; a
 * model's <model>_prepare with these at run time, to the same bits. */
int kdk_sbn_fold(float *kernel, long kernel_elems, long channels, const float *gamma, const float *beta,
                 const float *bias, const float *mean, const float *variance, double epsilon, float *into);
int kdk_dbn_fold(double *kernel, long kernel_elems, long channels, const double *gamma, const double *beta,
                 const double *bias, const double *mean, const double *variance, double epsilon, double *into);

/* ---- Initialisers (random.h states them; random.c) --------------------------
 * The initial weights for a seed, the same from generated C, the JIT and on
 * any target; `stream` tells apart the variables of one model. */
KDK_K_INIT_FILL(KDK_DECLARE)      /* kdk_[sd]init_fill(p, n, value) */
KDK_K_INIT_UNIFORM(KDK_DECLARE)   /* kdk_[sd]init_uniform(p, n, seed, stream, lo, hi) */
KDK_K_INIT_NORMAL(KDK_DECLARE)    /* kdk_[sd]init_normal(p, n, seed, stream, mean, stddev, truncated) */
KDK_K_INIT_ORTHOGONAL(KDK_DECLARE) /* kdk_[sd]init_orthogonal(p, rows, cols, seed, stream, gain): Keras' Orthogonal */

#ifdef __cplusplus
}
#endif

#endif
