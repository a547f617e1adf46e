/* gemm_bench.c — GFLOP/s of the runtime kernels on the shapes the sample models use.
 *
 * MLP 784-256-128-10 at batch 64 (forward Y = X·W, backward dW = Xᵀ·dY and
 * dX = dY·Wᵀ), then the small CNN's convolutions, one thread and two
 * (kdk_*_part on two pthreads).  Prints one line per shape and a total for
 * the MLP's GEMMs of one training step.  Shapes named "... packed B" (with
 * the filter only, one thread) call kdk_sgemm_packed_b with B packed once
 * beforehand: `gemm_bench 0.3 "fwd  64x784"` times the MLP's first layer
 * both ways, one after the other.
 *
 *   gemm_bench [seconds-per-shape [shape-filter]]   (default 0.3 s, all shapes)
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"

static double clock_of(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One thread is timed by its own CPU time (robust when other programs share
 * the machine), two threads by the wall clock.  Times are best-of-many. */
static clockid_t timer = CLOCK_MONOTONIC;
static double now(void) { return clock_of(timer); }

static float *randbuf(size_t n)
{
    float *p = malloc(n * sizeof *p + 64);
    for (size_t i = 0; i < n; i++) p[i] = (float)(rand() % 2001 - 1000) / 1000.0f;
    return p;
}

/* ---- one benchmarked operation, run as part `part` of `nparts` ---- */
enum op { OP_GEMM, OP_CONV_FWD, OP_CONV_BWD_DATA, OP_CONV_BWD_FILTER, OP_MAXPOOL_FWD, OP_MAXPOOL_BWD };

struct shape {
    const char *name;
    enum op op;
    int M, N, K, ta, tb, act, bias, packed;  /* GEMM; packed: B packed once (kdk_sgemm_pack_b) */
    int n, h, w, c, oh, ow, f, kh, kw, s, p; /* conv (square stride s, padding p) */
};

struct job {
    const struct shape *s;
    float *a, *b, *c, *bias, *work, *packed;
    int part, nparts;
    long reps;
};

/* GEMM and conv: flops; pooling: input elements. */
static double flops_of(const struct shape *s)
{
    if (s->op == OP_GEMM) return 2.0 * s->M * s->N * s->K;
    if (s->op >= OP_MAXPOOL_FWD) return (double)s->n * s->h * s->w * s->c;
    return 2.0 * s->n * s->oh * s->ow * s->f * s->kh * s->kw * s->c;
}

#define GEOM(s) (s)->n, (s)->h, (s)->w, (s)->c, (s)->oh, (s)->ow, (s)->f, (s)->kh, (s)->kw, \
                (s)->s, (s)->s, (s)->p, (s)->p

static void run_once(struct job *j)
{
    const struct shape *s = j->s;
    switch (s->op) {
    case OP_GEMM: {
        int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
        if (s->packed) {
            kdk_sgemm_packed_b(s->M, s->N, s->K, j->a, lda, s->ta, j->b, ldb, s->tb, j->packed, 0.0f, j->c,
                               s->N, s->bias ? j->bias : NULL, s->act, j->work);
            break;
        }
        kdk_sgemm_part(j->part, j->nparts, s->M, s->N, s->K, j->a, lda, s->ta, j->b, ldb, s->tb,
                       0.0f, j->c, s->N, s->bias ? j->bias : NULL, s->act, j->work);
        break;
    }
    case OP_CONV_FWD:
        kdk_sconv2d_fwd_part(j->part, j->nparts, GEOM(s), j->a, j->b, j->bias, s->act, j->c,
                             j->work);
        break;
    case OP_CONV_BWD_DATA: /* a = dy, b = wt, c = dx */
        kdk_sconv2d_bwd_data_part(j->part, j->nparts, GEOM(s), j->a, j->b, j->c, 0, j->work);
        break;
    case OP_CONV_BWD_FILTER: /* a = x, b = dy, c = dwt */
        kdk_sconv2d_bwd_filter_part(j->part, j->nparts, GEOM(s), j->a, j->b, j->c, 0, j->work);
        break;
    case OP_MAXPOOL_FWD:
    case OP_MAXPOOL_BWD: { /* a = x or dx, c = y or dy, work = argmax; threads split the batch */
        int per = (s->n + j->nparts - 1) / j->nparts, lo = j->part * per;
        int hi = lo + per < s->n ? lo + per : s->n;
        size_t xi = (size_t)s->h * s->w * s->c, yi = (size_t)s->oh * s->ow * s->c;
        if (lo >= hi) break;
        if (s->op == OP_MAXPOOL_FWD)
            kdk_smaxpool2d_fwd(hi - lo, s->h, s->w, s->c, s->oh, s->ow, s->kh, s->kw, s->s, s->s,
                               s->p, s->p, j->a + lo * xi, j->c + lo * yi, (int32_t *)j->work + lo * yi);
        else
            kdk_smaxpool2d_bwd(hi - lo, s->h, s->w, s->c, s->oh, s->ow, s->kh, s->kw, s->s, s->s,
                               s->p, s->p, NULL, (int32_t *)j->work + lo * yi, j->c + lo * yi,
                               j->a + lo * xi, 0);
        break;
    }
    }
}

static void *thread_main(void *arg)
{
    struct job *j = arg;
    for (long r = 0; r < j->reps; r++) run_once(j);
    return NULL;
}

static size_t work_of(const struct shape *s)
{
    switch (s->op) {
    case OP_GEMM: return kdk_sgemm_work_size(s->M, s->N, s->K);
    case OP_CONV_FWD: return kdk_sconv2d_fwd_work_size(GEOM(s));
    case OP_CONV_BWD_DATA: return kdk_sconv2d_bwd_data_work_size(GEOM(s));
    case OP_CONV_BWD_FILTER: return kdk_sconv2d_bwd_filter_work_size(GEOM(s));
    default: return (size_t)s->n * s->oh * s->ow * s->c; /* argmax */
    }
}

/* Seconds per call of shape s on nthreads threads. */
static double time_shape(const struct shape *s, int nthreads, double budget)
{
    size_t na, nb, nc;
    if (s->op == OP_GEMM) {
        na = (size_t)s->M * s->K;
        nb = (size_t)s->K * s->N;
        nc = (size_t)s->M * s->N;
    } else {
        size_t x = (size_t)s->n * s->h * s->w * s->c, y = (size_t)s->n * s->oh * s->ow * s->f;
        size_t wt = (size_t)s->kh * s->kw * s->c * s->f;
        if (s->op == OP_CONV_FWD || s->op >= OP_MAXPOOL_FWD) { na = x; nb = wt; nc = y; }
        else if (s->op == OP_CONV_BWD_DATA) { na = y; nb = wt; nc = x; }
        else { na = x; nb = y; nc = wt; }
    }
    float *a = randbuf(na), *b = randbuf(nb), *c = randbuf(nc), *bias = randbuf(4096);
    float *packed = NULL;
    if (s->op == OP_GEMM && s->packed) {
        size_t np = kdk_sgemm_packed_b_size(s->M, s->N, s->K);
        packed = np ? aligned_alloc(64, (np * sizeof *packed + 63) / 64 * 64) : NULL;
        if (packed) kdk_sgemm_pack_b(s->N, s->K, b, s->tb ? s->K : s->N, s->tb, packed);
    }
    struct job jobs[2];
    pthread_t tid[2];
    float *work[2];
    for (int t = 0; t < nthreads; t++) {
        work[t] = malloc(work_of(s) * sizeof(float) + 64);
        jobs[t] = (struct job){s, a, b, c, bias, work[t], packed, t, nthreads, 1};
    }
    timer = nthreads == 1 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC;
    /* calibrate the repetition count on one warm call */
    run_once(&jobs[0]);
    double t0 = now();
    run_once(&jobs[0]);
    double one = now() - t0;
    /* Keep the best time: robust against other load on the machine.  One
     * thread: the best batch of calls lasting about 0.2 ms each; two: the
     * best of many short rounds. */
    double best = 1e30;
    if (one < 1e-7) one = 1e-7;
    if (nthreads == 1) {
        long per = (long)(2e-4 / one) + 1, batches = (long)(budget / (per * one)) + 5;
        for (long r = 0; r < batches; r++) {
            t0 = now();
            for (long i = 0; i < per; i++) run_once(&jobs[0]);
            double dt = (now() - t0) / per;
            if (dt < best) best = dt;
        }
    } else {
        enum { ROUNDS = 40 };
        long reps = (long)(budget / ROUNDS / one) + 1;
        for (int round = 0; round < ROUNDS; round++) {
            t0 = now();
            for (int t = 0; t < nthreads; t++) {
                jobs[t].reps = reps;
                if (t > 0) pthread_create(&tid[t], NULL, thread_main, &jobs[t]);
            }
            thread_main(&jobs[0]);
            for (int t = 1; t < nthreads; t++) pthread_join(tid[t], NULL);
            double dt = (now() - t0) / reps;
            if (dt < best) best = dt;
        }
    }
    for (int t = 0; t < nthreads; t++) free(work[t]);
    free(a);
    free(b);
    free(c);
    free(bias);
    free(packed);
    return best;
}

#define G(nm, M, N, K, ta, tb, act, bias) {nm, OP_GEMM, M, N, K, ta, tb, act, bias, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
#define GP(nm, M, N, K, ta, tb, act, bias) {nm, OP_GEMM, M, N, K, ta, tb, act, bias, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
#define C(nm, op, n, h, w, c, oh, ow, f, k, s, p) {nm, op, 0, 0, 0, 0, 0, 0, 0, 0, n, h, w, c, oh, ow, f, k, k, s, p}

static const struct shape mlp[] = {
    G("fwd  64x784 . 784x256 +b relu", 64, 256, 784, 0, 0, KDK_ACT_RELU, 1),
    G("fwd  64x256 . 256x128 +b relu", 64, 128, 256, 0, 0, KDK_ACT_RELU, 1),
    G("fwd  64x128 . 128x10  +b", 64, 10, 128, 0, 0, KDK_ACT_NONE, 1),
    G("dW   784x64 . 64x256  (A^T)", 784, 256, 64, 1, 0, KDK_ACT_NONE, 0),
    G("dW   256x64 . 64x128  (A^T)", 256, 128, 64, 1, 0, KDK_ACT_NONE, 0),
    G("dW   128x64 . 64x10   (A^T)", 128, 10, 64, 1, 0, KDK_ACT_NONE, 0),
    G("dX   64x10  . 10x128  (B^T)", 64, 128, 10, 0, 1, KDK_ACT_NONE, 0),
    G("dX   64x128 . 128x256 (B^T)", 64, 256, 128, 0, 1, KDK_ACT_NONE, 0),
};
static const struct shape extra[] = {
    G("dX   64x256 . 256x784 (B^T)", 64, 784, 256, 0, 1, KDK_ACT_NONE, 0),
    G("square 512", 512, 512, 512, 0, 0, KDK_ACT_NONE, 0),
    /* batch-1 (and batch-4) inference of the MLP, and small-M transposes */
    G("inf1 1x784 . 784x256 +b relu", 1, 256, 784, 0, 0, KDK_ACT_RELU, 1),
    G("inf1 1x256 . 256x128 +b relu", 1, 128, 256, 0, 0, KDK_ACT_RELU, 1),
    G("inf1 1x128 . 128x10  +b", 1, 10, 128, 0, 0, KDK_ACT_NONE, 1),
    G("inf4 4x784 . 784x256 +b relu", 4, 256, 784, 0, 0, KDK_ACT_RELU, 1),
    G("inf1 1x784 . 784x256 (B^T)", 1, 256, 784, 0, 1, KDK_ACT_NONE, 0),
    G("inf1 1x256 . 256x784 (B^T)", 1, 784, 256, 0, 1, KDK_ACT_NONE, 0),
    G("inf1 (A^T) 784x1 . 784x256", 1, 256, 784, 1, 0, KDK_ACT_NONE, 0),
    /* the MLP's inference layers with B packed once (filter only) */
    GP("fwd  64x784 . 784x256 +b relu packed B", 64, 256, 784, 0, 0, KDK_ACT_RELU, 1),
    GP("fwd  64x256 . 256x128 +b relu packed B", 64, 128, 256, 0, 0, KDK_ACT_RELU, 1),
    GP("fwd  64x128 . 128x10  +b packed B", 64, 10, 128, 0, 0, KDK_ACT_NONE, 1),
    C("conv1 fwd   28x28x1 -> 26x26x32", OP_CONV_FWD, 64, 28, 28, 1, 26, 26, 32, 3, 1, 0),
    C("conv1 dW", OP_CONV_BWD_FILTER, 64, 28, 28, 1, 26, 26, 32, 3, 1, 0),
    C("conv2 fwd   13x13x32 -> 11x11x64", OP_CONV_FWD, 64, 13, 13, 32, 11, 11, 64, 3, 1, 0),
    C("conv2 dX", OP_CONV_BWD_DATA, 64, 13, 13, 32, 11, 11, 64, 3, 1, 0),
    C("conv2 dW", OP_CONV_BWD_FILTER, 64, 13, 13, 32, 11, 11, 64, 3, 1, 0),
    C("maxpool 26x26x32 2x2 fwd (G elem/s)", OP_MAXPOOL_FWD, 64, 26, 26, 32, 13, 13, 32, 2, 2, 0),
    C("maxpool 26x26x32 2x2 bwd (G elem/s)", OP_MAXPOOL_BWD, 64, 26, 26, 32, 13, 13, 32, 2, 2, 0),
};

int main(int argc, char **argv)
{
    double budget = argc > 1 ? atof(argv[1]) : 0.3;
    const char *filter = argc > 2 ? argv[2] : NULL;
    double tot[2] = {0, 0}, fl = 0;
    printf("%-36s %12s %9s %12s %9s\n", "shape", "1 thread us", "GFLOP/s", "2 threads us", "GFLOP/s");
    for (size_t i = 0; i < sizeof mlp / sizeof mlp[0] && !filter; i++) {
        double t1 = time_shape(&mlp[i], 1, budget), t2 = time_shape(&mlp[i], 2, budget);
        double f = flops_of(&mlp[i]);
        printf("%-36s %12.2f %9.1f %12.2f %9.1f\n", mlp[i].name, t1 * 1e6, f / t1 * 1e-9, t2 * 1e6,
               f / t2 * 1e-9);
        tot[0] += t1;
        tot[1] += t2;
        fl += f;
    }
    if (!filter) {
        printf("%-36s %12.2f %9.1f %12.2f %9.1f\n", "MLP train step GEMMs (batch 64)", tot[0] * 1e6,
               fl / tot[0] * 1e-9, tot[1] * 1e6, fl / tot[1] * 1e-9);
        printf("  = %.0f samples/s on GEMMs alone (1 thread), %.0f (2 threads)\n", 64 / tot[0],
               64 / tot[1]);
    }
    for (size_t i = 0; i < sizeof mlp / sizeof mlp[0] + sizeof extra / sizeof extra[0] && filter; i++) {
        const struct shape *s = i < sizeof mlp / sizeof mlp[0] ? &mlp[i] : &extra[i - sizeof mlp / sizeof mlp[0]];
        if (!strstr(s->name, filter)) continue;
        double t1 = time_shape(s, 1, budget);
        printf("%-36s %12.2f %9.1f\n", s->name, t1 * 1e6, flops_of(s) / t1 * 1e-9);
    }
    for (size_t i = 0; i < sizeof extra / sizeof extra[0] && !filter; i++) {
        if (extra[i].packed) continue;
        double t1 = time_shape(&extra[i], 1, budget), t2 = time_shape(&extra[i], 2, budget);
        double f = flops_of(&extra[i]);
        printf("%-36s %12.2f %9.1f %12.2f %9.1f\n", extra[i].name, t1 * 1e6, f / t1 * 1e-9,
               t2 * 1e6, f / t2 * 1e-9);
    }
    return 0;
}
