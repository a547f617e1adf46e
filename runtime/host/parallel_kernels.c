/* parallel_kernels.c — the runtime kernels split across the host's thread
 * pool (parallel_kernels.h): GEMM by columns, rows or K, the convolutions
 * with their *_part companions, pooling over the batch. The pool itself is
 * thread_pool.c. */
#include "parallel_kernels.h"
#include "thread_pool_internal.h"

#include "kernels.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHUNKS_PER_THREAD KDH__CHUNKS_PER_THREAD
#define whole_runs kdh__pool_whole_runs
#define scratch kdh__pool_scratch

typedef struct gemm_job {
    int M, N, K;
    const float *A;
    int lda, transA;
    const float *B;
    int ldb, transB;
    float beta;
    float *C;
    int ldc;
    const float *bias;
    int act;
    float *work[KDH_MAX_THREADS];
} gemm_job;

static void gemm_chunk(void *ctx, int chunk, int nchunks, int thread)
{
    gemm_job *g = ctx;
    kdk_sgemm_part(chunk, nchunks, g->M, g->N, g->K, g->A, g->lda, g->transA, g->B, g->ldb, g->transB, g->beta, g->C,
                   g->ldc, g->bias, g->act, g->work[thread]);
}

/* Chunks of a GEMM, each of at least one block of the split side (one
 * micro-tile of columns, or 16 rows: kdk_sgemm_part) and of GEMM_CHUNK_MIN
 * multiply-adds. Columns: up to 2 * CHUNKS_PER_THREAD per thread, each
 * packing only its own columns of op(B) (the forward GEMM of a dense layer
 * at batch 64, 64x784 . 784x256, runs 16 chunks of 16 columns at two
 * threads, ~8% faster than 4 of 64). Rows: one chunk per thread, since each
 * chunk packs all of op(B) again: the weight gradient of that layer,
 * 784x64 . 64x256, took 1.62x less time at two threads with 8 chunks and
 * 1.91x with 2 (a paired A/B through this pool). */
#define GEMM_CHUNK_MIN (128L * 1024)
static int gemm_chunks(int M, int N, int K)
{
    if (N < M) return kdh_pool_threads();
    int unit = kdk_gemm_split_cols();
    long blocks = (N + unit - 1) / unit;
    long by_size = (long)M * N * K / GEMM_CHUNK_MIN;
    long c = (long)kdh_pool_threads() * CHUNKS_PER_THREAD * 2;
    if (c > by_size) c = by_size;
    if (c > blocks) c = blocks;
    return (int)whole_runs(c);
}

/* 1, or 0 when every kernel splits whatever its size (kdh_pool_split_everything). */
static long split_min = 1;

void kdh_pool_split_everything(bool on) { split_min = on ? 0 : 1; }

/* Below this many multiply-adds a split costs more than it saves: the
 * MLP's three GEMMs of 64x128x10 (81920) took 10.9 us split at two threads
 * and 9.2 on one, and the step was 3-4% faster with them serial (their
 * operands then stay with the core that runs the loss and the bias
 * gradients next to them). */
#define GEMM_SPLIT_MIN (128L * 1024 * split_min)
/* The same for convolutions (measured when the split came in). */
#define CONV_SPLIT_MIN (64L * 1024 * split_min)

/* The K split, for a C much smaller than op(B) (a dense layer's forward
 * pass at a small batch, K inputs to N units): part p sums its own run of
 * kdk_gemm_kblocks(K) blocks of k, part 0 into C and the others each block
 * into its own M×N partial sum, then a second job adds the partial sums
 * onto C in block order and applies bias and activation (kdk_sgemm_ksum):
 * kdk_sgemm's bits at any thread count. Splitting the columns of C instead
 * has each core read half of every row of the weights, which the optimizer
 * then writes from the core that owns those rows (its run of the flat
 * parameter array, the dense layer's weight-gradient rows): each written
 * line had to be taken back from the other core's cache. With the K split,
 * rows 0..K/2 of the weights (and of their gradient, and the Adam moments)
 * stay on one core: in the MLP's training step at two threads Adam on the
 * 784x256 weights took 41 us instead of 62, the forward GEMM 79 instead of
 * 87 (bench/step_time.c, instrumented). */
typedef struct ksplit_job {
    gemm_job g; /* bias and act are applied by the sum */
    int kb, first; /* blocks [0, first) go into C */
    float *T;      /* blocks [first, kb), M*N apart */
} ksplit_job;

static void ksplit_part(void *ctx, int part, int nparts, int thread)
{
    ksplit_job *j = ctx;
    gemm_job *g = &j->g;
    for (int b = j->kb * part / nparts, end = j->kb * (part + 1) / nparts; b < end; b++) {
        bool into_c = b < j->first;
        kdk_sgemm_kblock(b, g->M, g->N, g->K, g->A, g->lda, g->transA, g->B, g->ldb, g->transB,
                         into_c ? (b ? 1.0f : g->beta) : 0.0f,
                         into_c ? g->C : j->T + (size_t)(b - j->first) * g->M * g->N, into_c ? g->ldc : g->N,
                         g->work[thread]);
    }
}

static void ksplit_sum(void *ctx, int part, int nparts, int thread)
{
    (void)thread;
    ksplit_job *j = ctx;
    gemm_job *g = &j->g;
    kdk_sgemm_ksum(g->M * part / nparts, g->M * (part + 1) / nparts, g->N, j->T, (size_t)g->M * g->N,
                   j->kb - j->first, g->C, g->ldc, g->bias, g->act);
}

/* Whether to split K: at least a block of k per thread, the packed path
 * (kdk_gemm_kblocks: M > 4), and op(B) at least 4x the size of C. */
static bool ksplit_pays(int M, int N, int K)
{
    return M > 4 && kdk_gemm_kblocks(K) >= kdh_pool_threads() && K >= 4L * M && K >= N;
}

/* Runs the K split; false (nothing done) when its partial sums cannot be
 * allocated. */
static bool gemm_ksplit(int M, int N, int K, const float *A, int lda, int transA, const float *B, int ldb,
                        int transB, float beta, float *C, int ldc, const float *bias, int act, float *work)
{
    int kb = kdk_gemm_kblocks(K), first = kb / kdh_pool_threads();
    ksplit_job j = {{M, N, K, A, lda, transA, B, ldb, transB, beta, C, ldc, bias, act, {work}}, kb, first, NULL};
    if (!(j.T = kdh__pool_ksum((size_t)(kb - first) * M * N))) return false;
    size_t ws = kdk_sgemm_work_size(M, N, K);
    for (int p = 1; p < kdh_pool_threads(); p++)
        if (!(j.g.work[p] = scratch(p, ws))) return false;
    kdh_parallel_chunks(ksplit_part, &j, kdh_pool_threads());
    kdh_parallel_chunks(ksplit_sum, &j, kdh_pool_threads());
    return true;
}

void kdh_sgemm_mt(int M, int N, int K, const float *A, int lda, int transA, const float *B, int ldb, int transB,
                  float beta, float *C, int ldc, const float *bias, int act, float *work)
{
    PROFILE("gemm", M, N, K);
    int n = kdh_pool_threads();
    if (n <= 1 || (long)M * N * K < GEMM_SPLIT_MIN) {
        kdk_sgemm(M, N, K, A, lda, transA, B, ldb, transB, beta, C, ldc, bias, act, work);
        return;
    }
    if (work && ksplit_pays(M, N, K) &&
        gemm_ksplit(M, N, K, A, lda, transA, B, ldb, transB, beta, C, ldc, bias, act, work))
        return;
    gemm_job g = {M, N, K, A, lda, transA, B, ldb, transB, beta, C, ldc, bias, act, {work}};
    size_t ws = work ? kdk_sgemm_work_size(M, N, K) : 0;
    for (int p = 1; p < n; p++) g.work[p] = work ? scratch(p, ws) : NULL;
    kdh_parallel_chunks(gemm_chunk, &g, gemm_chunks(M, N, K));
}

/* Convolutions: the geometry, the pointers, and a workspace per part. */
typedef struct conv_job {
    int n, h, w, c, oh, ow, f, kh, kw, sh, sw, pt, pl;
    const float *x, *wt, *bias, *dy;
    float *y, *dx, *dwt;
    int act, accumulate;
    int pkh, pkw, psh, psw;   /* the max pooling after conv2d_pool_fwd */
    float *work[KDH_MAX_THREADS];
} conv_job;

#define CONV_GEOM(j) j->n, j->h, j->w, j->c, j->oh, j->ow, j->f, j->kh, j->kw, j->sh, j->sw, j->pt, j->pl
#define GEOM_ARGS n, h, w, c, oh, ow, f, kh, kw, sh, sw, pt, pl

static void conv_fwd_part(void *ctx, int part, int nparts, int thread)
{
    conv_job *j = ctx;
    kdk_sconv2d_fwd_part(part, nparts, CONV_GEOM(j), j->x, j->wt, j->bias, j->act, j->y, j->work[thread]);
}

static void conv_pool_fwd_part(void *ctx, int part, int nparts, int thread)
{
    conv_job *j = ctx;
    kdk_sconv2d_pool_fwd_part(part, nparts, CONV_GEOM(j), j->pkh, j->pkw, j->psh, j->psw, j->x, j->wt, j->bias,
                              j->act, j->y, j->work[thread]);
}

static void conv_bwd_data_part(void *ctx, int part, int nparts, int thread)
{
    conv_job *j = ctx;
    kdk_sconv2d_bwd_data_part(part, nparts, CONV_GEOM(j), j->dy, j->wt, j->dx, j->accumulate, j->work[thread]);
}

static void conv_bwd_filter_part(void *ctx, int part, int nparts, int thread)
{
    conv_job *j = ctx;
    kdk_sconv2d_bwd_filter_part(part, nparts, CONV_GEOM(j), j->x, j->dy, j->dwt, j->accumulate, j->work[thread]);
}

/* Multiply-adds of a convolution, for the split decision. */
static long conv_macs(int n, int oh, int ow, int f, int kh, int kw, int c)
{
    return (long)n * oh * ow * f * kh * kw * c;
}

#define GEOM_MACS n, oh, ow, f, kh, kw, c

/* Chunks of a convolution: as for GEMM (the *_part split on their own
 * block boundaries; surplus chunks are empty). */
static int conv_chunks(long macs)
{
    long c = (long)kdh_pool_threads() * CHUNKS_PER_THREAD, by_size = macs / GEMM_CHUNK_MIN;
    if (c > by_size) c = by_size;
    return (int)whole_runs(c);
}

/* The data gradient splits the batch: at most one chunk per image. */
static int conv_chunks_n(int n, long macs)
{
    int c = conv_chunks(macs);
    return c <= n ? c : n > kdh_pool_threads() ? (int)whole_runs(n) : n;
}

static void conv_work(conv_job *j, float *work, size_t ws)
{
    j->work[0] = work;
    for (int p = 1; p < kdh_pool_threads(); p++) j->work[p] = work ? scratch(p, ws) : NULL;
}

void kdh_sconv2d_fwd_mt(int n, int h, int w, int c, int oh, int ow, int f, int kh, int kw, int sh, int sw, int pt,
                        int pl, const float *x, const float *wt, const float *bias, int act, float *y, float *work)
{
    PROFILE("conv", n, c, f);
    if (kdh_pool_threads() <= 1 || conv_macs(n, oh, ow, f, kh, kw, c) < CONV_SPLIT_MIN) {
        kdk_sconv2d_fwd(GEOM_ARGS, x, wt, bias, act, y, work);
        return;
    }
    conv_job j = {GEOM_ARGS, .x = x, .wt = wt, .bias = bias, .y = y, .act = act};
    conv_work(&j, work, work ? kdk_sconv2d_fwd_work_size(GEOM_ARGS) : 0);
    kdh_parallel_chunks(conv_fwd_part, &j, conv_chunks(conv_macs(GEOM_MACS)));
}

void kdh_sconv2d_pool_fwd_mt(int n, int h, int w, int c, int oh, int ow, int f, int kh, int kw, int sh, int sw,
                             int pt, int pl, int pkh, int pkw, int psh, int psw, const float *x, const float *wt,
                             const float *bias, int act, float *y, float *work)
{
    PROFILE("conv_pool", n, c, f);
    if (kdh_pool_threads() <= 1 || n < 2 || conv_macs(n, oh, ow, f, kh, kw, c) < CONV_SPLIT_MIN) {
        kdk_sconv2d_pool_fwd(GEOM_ARGS, pkh, pkw, psh, psw, x, wt, bias, act, y, work);
        return;
    }
    conv_job j = {GEOM_ARGS, .x = x, .wt = wt, .bias = bias, .y = y, .act = act,
                  .pkh = pkh, .pkw = pkw, .psh = psh, .psw = psw};
    conv_work(&j, work, kdk_sconv2d_pool_fwd_work_size(GEOM_ARGS));
    kdh_parallel_chunks(conv_pool_fwd_part, &j, conv_chunks_n(n, conv_macs(GEOM_MACS)));
}

void kdh_sconv2d_bwd_data_mt(int n, int h, int w, int c, int oh, int ow, int f, int kh, int kw, int sh, int sw,
                             int pt, int pl, const float *dy, const float *wt, float *dx, int accumulate, float *work)
{
    PROFILE("conv_dx", n, c, f);
    if (kdh_pool_threads() <= 1 || n < 2 || conv_macs(n, oh, ow, f, kh, kw, c) < CONV_SPLIT_MIN) {
        kdk_sconv2d_bwd_data(GEOM_ARGS, dy, wt, dx, accumulate, work);
        return;
    }
    conv_job j = {GEOM_ARGS, .dy = dy, .wt = wt, .dx = dx, .accumulate = accumulate};
    conv_work(&j, work, work ? kdk_sconv2d_bwd_data_work_size(GEOM_ARGS) : 0);
    kdh_parallel_chunks(conv_bwd_data_part, &j, conv_chunks_n(n, conv_macs(GEOM_MACS)));
}

void kdh_sconv2d_bwd_filter_mt(int n, int h, int w, int c, int oh, int ow, int f, int kh, int kw, int sh, int sw,
                               int pt, int pl, const float *x, const float *dy, float *dwt, int accumulate,
                               float *work)
{
    PROFILE("conv_dw", n, c, f);
    if (kdh_pool_threads() <= 1 || conv_macs(n, oh, ow, f, kh, kw, c) < CONV_SPLIT_MIN) {
        kdk_sconv2d_bwd_filter(GEOM_ARGS, x, dy, dwt, accumulate, work);
        return;
    }
    conv_job j = {GEOM_ARGS, .x = x, .dy = dy, .dwt = dwt, .accumulate = accumulate};
    conv_work(&j, work, work ? kdk_sconv2d_bwd_filter_work_size(GEOM_ARGS) : 0);
    kdh_parallel_chunks(conv_bwd_filter_part, &j, conv_chunks(conv_macs(GEOM_MACS)));
}

/* The depthwise convolution: its *_part functions split output rows, rows
 * of dx, or (channels, kernel row) units of dW; a few multiply-adds per
 * element read, so chunks are sized by the elements touched. */
typedef struct dw_job {
    int n, h, w, c, oh, ow, m, kh, kw, sh, sw, pt, pl, dih, diw;
    const float *x, *wt, *bias, *dy;
    float *y, *dx, *dwt;
    int act, accumulate;
} dw_job;

#define DW_GEOM(j) j->n, j->h, j->w, j->c, j->oh, j->ow, j->m, j->kh, j->kw, j->sh, j->sw, j->pt, j->pl, j->dih, j->diw
#define DW_ARGS n, h, w, c, oh, ow, m, kh, kw, sh, sw, pt, pl, dih, diw

static void dw_fwd_part(void *ctx, int part, int nparts, int thread)
{
    dw_job *j = ctx;
    (void)thread;
    kdk_sdwconv2d_fwd_part(part, nparts, DW_GEOM(j), j->x, j->wt, j->bias, j->act, j->y);
}

static void dw_bwd_data_part(void *ctx, int part, int nparts, int thread)
{
    dw_job *j = ctx;
    (void)thread;
    kdk_sdwconv2d_bwd_data_part(part, nparts, DW_GEOM(j), j->dy, j->wt, j->dx, j->accumulate);
}

static void dw_bwd_filter_part(void *ctx, int part, int nparts, int thread)
{
    dw_job *j = ctx;
    (void)thread;
    kdk_sdwconv2d_bwd_filter_part(part, nparts, DW_GEOM(j), j->x, j->dy, j->dwt, j->accumulate);
}

/* Chunks of `units` split units whose multiply-adds total macs: as for the
 * GEMM, at most one per unit. */
static int dw_chunks(long units, long macs)
{
    long c = (long)kdh_pool_threads() * CHUNKS_PER_THREAD, by_size = macs / GEMM_CHUNK_MIN;
    if (c > by_size) c = by_size;
    if (c > units) c = units;
    return (int)whole_runs(c < 1 ? 1 : c);
}

static long dw_macs(int n, int oh, int ow, int c, int m, int kh, int kw) { return (long)n * oh * ow * c * m * kh * kw; }

void kdh_sdwconv2d_fwd_mt(int n, int h, int w, int c, int oh, int ow, int m, int kh, int kw, int sh, int sw, int pt,
                          int pl, int dih, int diw, const float *x, const float *wt, const float *bias, int act,
                          float *y)
{
    PROFILE("dwconv", n, c, m);
    long macs = dw_macs(n, oh, ow, c, m, kh, kw);
    if (kdh_pool_threads() <= 1 || (long)n * oh < 2 || macs < CONV_SPLIT_MIN) {
        kdk_sdwconv2d_fwd(DW_ARGS, x, wt, bias, act, y);
        return;
    }
    dw_job j = {DW_ARGS, .x = x, .wt = wt, .bias = bias, .y = y, .act = act};
    kdh_parallel_chunks(dw_fwd_part, &j, dw_chunks((long)n * oh, macs));
}

void kdh_sdwconv2d_bwd_data_mt(int n, int h, int w, int c, int oh, int ow, int m, int kh, int kw, int sh, int sw,
                               int pt, int pl, int dih, int diw, const float *dy, const float *wt, float *dx,
                               int accumulate)
{
    PROFILE("dwconv_dx", n, c, m);
    long macs = dw_macs(n, oh, ow, c, m, kh, kw);
    if (kdh_pool_threads() <= 1 || (long)n * h < 2 || macs < CONV_SPLIT_MIN) {
        kdk_sdwconv2d_bwd_data(DW_ARGS, dy, wt, dx, accumulate);
        return;
    }
    dw_job j = {DW_ARGS, .dy = dy, .wt = wt, .dx = dx, .accumulate = accumulate};
    kdh_parallel_chunks(dw_bwd_data_part, &j, dw_chunks((long)n * h, macs));
}

void kdh_sdwconv2d_bwd_filter_mt(int n, int h, int w, int c, int oh, int ow, int m, int kh, int kw, int sh, int sw,
                                 int pt, int pl, int dih, int diw, const float *x, const float *dy, float *dwt,
                                 int accumulate)
{
    PROFILE("dwconv_dw", n, c, m);
    long macs = dw_macs(n, oh, ow, c, m, kh, kw), units = (long)(c + 15) / 16 * kh;
    if (kdh_pool_threads() <= 1 || units < 2 || macs < CONV_SPLIT_MIN) {
        kdk_sdwconv2d_bwd_filter(DW_ARGS, x, dy, dwt, accumulate);
        return;
    }
    dw_job j = {DW_ARGS, .x = x, .dy = dy, .dwt = dwt, .accumulate = accumulate};
    kdh_parallel_chunks(dw_bwd_filter_part, &j, dw_chunks(units, macs));
}

/* Pooling: images are independent (argmax indices are within an image), so
 * each part takes a block of the batch through pointer offsets. */
typedef struct pool_job {
    int kind; /* 0 max fwd, 1 max bwd, 2 avg fwd, 3 avg bwd */
    int n, h, w, c, oh, ow, kh, kw, sh, sw, pt, pl, count_pad, accumulate;
    const float *x, *dy;
    const int32_t *argmax_in;
    int32_t *argmax;
    float *y, *dx;
} pool_job;

static void pool_part(void *ctx, int part, int nparts, int thread)
{
    (void)thread;
    pool_job *j = ctx;
    int lo = (int)((long)j->n * part / nparts), hi = (int)((long)j->n * (part + 1) / nparts), nb = hi - lo;
    if (nb <= 0) return;
    size_t in = (size_t)j->h * j->w * j->c, out = (size_t)j->oh * j->ow * j->c;
#define PG nb, j->h, j->w, j->c, j->oh, j->ow, j->kh, j->kw, j->sh, j->sw, j->pt, j->pl
    switch (j->kind) {
    case 0: kdk_smaxpool2d_fwd(PG, j->x + lo * in, j->y + lo * out, j->argmax ? j->argmax + lo * out : NULL); break;
    case 1:
        kdk_smaxpool2d_bwd(PG, j->x ? j->x + lo * in : NULL, j->argmax_in ? j->argmax_in + lo * out : NULL,
                           j->dy + lo * out, j->dx + lo * in, j->accumulate);
        break;
    case 2: kdk_savgpool2d_fwd(PG, j->count_pad, j->x + lo * in, j->y + lo * out); break;
    default: kdk_savgpool2d_bwd(PG, j->count_pad, j->dy + lo * out, j->dx + lo * in, j->accumulate); break;
    }
#undef PG
}

static int pool_chunks(int n)
{
    int c = kdh_pool_threads() * CHUNKS_PER_THREAD;
    return c <= n ? c : n > kdh_pool_threads() ? (int)whole_runs(n) : n;
}

/* Below this many input elements pooling stays on one thread. */
#define POOL_SPLIT_MIN (16L * 1024 * split_min)
#define POOL_SERIAL(n, h, w, c) (kdh_pool_threads() <= 1 || (n) < 2 || (long)(n) * (h) * (w) * (c) < POOL_SPLIT_MIN)
#define POOL_GEOM n, h, w, c, oh, ow, kh, kw, sh, sw, pt, pl

void kdh_smaxpool2d_fwd_mt(int n, int h, int w, int c, int oh, int ow, int kh, int kw, int sh, int sw, int pt, int pl,
                           const float *x, float *y, int32_t *argmax)
{
    PROFILE("maxpool", n, (long)h * w * c, 0);
    if (POOL_SERIAL(n, h, w, c)) {
        kdk_smaxpool2d_fwd(POOL_GEOM, x, y, argmax);
        return;
    }
    pool_job j = {0, POOL_GEOM, .x = x, .y = y, .argmax = argmax};
    kdh_parallel_chunks(pool_part, &j, pool_chunks(n));
}

void kdh_smaxpool2d_bwd_mt(int n, int h, int w, int c, int oh, int ow, int kh, int kw, int sh, int sw, int pt, int pl,
                           const float *x, const int32_t *argmax, const float *dy, float *dx, int accumulate)
{
    PROFILE("maxpool_dx", n, (long)h * w * c, 0);
    if (POOL_SERIAL(n, h, w, c)) {
        kdk_smaxpool2d_bwd(POOL_GEOM, x, argmax, dy, dx, accumulate);
        return;
    }
    pool_job j = {1, POOL_GEOM, .accumulate = accumulate, .x = x, .argmax_in = argmax, .dy = dy, .dx = dx};
    kdh_parallel_chunks(pool_part, &j, pool_chunks(n));
}

void kdh_savgpool2d_fwd_mt(int n, int h, int w, int c, int oh, int ow, int kh, int kw, int sh, int sw, int pt, int pl,
                           int count_pad, const float *x, float *y)
{
    PROFILE("avgpool", n, (long)h * w * c, 0);
    if (POOL_SERIAL(n, h, w, c)) {
        kdk_savgpool2d_fwd(POOL_GEOM, count_pad, x, y);
        return;
    }
    pool_job j = {2, POOL_GEOM, .count_pad = count_pad, .x = x, .y = y};
    kdh_parallel_chunks(pool_part, &j, pool_chunks(n));
}

void kdh_savgpool2d_bwd_mt(int n, int h, int w, int c, int oh, int ow, int kh, int kw, int sh, int sw, int pt, int pl,
                           int count_pad, const float *dy, float *dx, int accumulate)
{
    PROFILE("avgpool_dx", n, (long)h * w * c, 0);
    if (POOL_SERIAL(n, h, w, c)) {
        kdk_savgpool2d_bwd(POOL_GEOM, count_pad, dy, dx, accumulate);
        return;
    }
    pool_job j = {3, POOL_GEOM, .count_pad = count_pad, .accumulate = accumulate, .dy = dy, .dx = dx};
    kdh_parallel_chunks(pool_part, &j, pool_chunks(n));
}
