/* conv_bench.c — the benchmark CNN's convolution and pooling kernels, one
 * training step at batch 64, timed kernel by kernel (issue 6).
 *
 *   conv28x28x1 -> conv3x3(32) relu -> maxpool2 -> conv3x3(64) relu -> maxpool2
 *
 * Calls exactly what `kdslc train` runs for these layers (forward with fused
 * bias+relu, max pool with argmax, pool backward, conv data and filter
 * gradients).  Link it against two builds of libkdslrt.a and run the two
 * binaries alternately to compare (A/B):
 *
 *   cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -Iruntime bench/conv_bench.c LIB/libkdslrt.a -lm -o cb
 *   cb [rounds [noargmax]]   the best-of CPU time per kernel (us) and the sum;
 *                            noargmax: pooling backward recomputes the winners from x
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *buf(size_t n)
{
    float *p = malloc(n * sizeof *p + 64);
    for (size_t i = 0; i < n; i++) p[i] = (float)(rand() % 2001 - 1000) / 1000.0f;
    return p;
}

enum { N = 64, NK = 9 };
static const char *names[NK] = {"conv1 fwd+b+relu", "pool1 fwd", "conv2 fwd+b+relu", "pool2 fwd",
                                "pool2 bwd", "conv2 dX", "conv2 dW", "pool1 bwd", "conv1 dW"};
static const double flops[NK] = {2.0 * N * 26 * 26 * 32 * 9, 0, 2.0 * N * 11 * 11 * 64 * 288, 0, 0,
                                 2.0 * N * 11 * 11 * 64 * 288, 2.0 * N * 11 * 11 * 64 * 288, 0,
                                 2.0 * N * 26 * 26 * 32 * 9};

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 20;
    int use_argmax = !(argc > 2 && !strcmp(argv[2], "noargmax")); /* as kdslc train lowers it */
    float *x = buf((size_t)N * 28 * 28), *w1 = buf(288), *b1 = buf(32), *w2 = buf(18432), *b2 = buf(64);
    float *y1 = buf((size_t)N * 26 * 26 * 32), *p1 = buf((size_t)N * 13 * 13 * 32);
    float *y2 = buf((size_t)N * 11 * 11 * 64), *p2 = buf((size_t)N * 5 * 5 * 64);
    float *dp2 = buf((size_t)N * 5 * 5 * 64), *dy2 = buf((size_t)N * 11 * 11 * 64);
    float *dp1 = buf((size_t)N * 13 * 13 * 32), *dy1 = buf((size_t)N * 26 * 26 * 32);
    float *dw2 = buf(18432), *dw1 = buf(288);
    int32_t *am1 = malloc(sizeof(int32_t) * N * 13 * 13 * 32), *am2 = malloc(sizeof(int32_t) * N * 5 * 5 * 64);
    size_t ws = kdk_sconv2d_fwd_work_size(N, 28, 28, 1, 26, 26, 32, 3, 3, 1, 1, 0, 0);
#define MAXW(e) do { size_t s_ = (e); if (s_ > ws) ws = s_; } while (0)
    MAXW(kdk_sconv2d_fwd_work_size(N, 13, 13, 32, 11, 11, 64, 3, 3, 1, 1, 0, 0));
    MAXW(kdk_sconv2d_bwd_data_work_size(N, 13, 13, 32, 11, 11, 64, 3, 3, 1, 1, 0, 0));
    MAXW(kdk_sconv2d_bwd_filter_work_size(N, 13, 13, 32, 11, 11, 64, 3, 3, 1, 1, 0, 0));
    MAXW(kdk_sconv2d_bwd_filter_work_size(N, 28, 28, 1, 26, 26, 32, 3, 3, 1, 1, 0, 0));
    float *work = buf(ws);
    double best[NK];
    for (int k = 0; k < NK; k++) best[k] = 1e30;
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < NK; k++) {
            double t0 = cpu_now();
            switch (k) {
            case 0: kdk_sconv2d_fwd(N, 28, 28, 1, 26, 26, 32, 3, 3, 1, 1, 0, 0, x, w1, b1, KDK_ACT_RELU, y1, work); break;
            case 1: kdk_smaxpool2d_fwd(N, 26, 26, 32, 13, 13, 2, 2, 2, 2, 0, 0, y1, p1, use_argmax ? am1 : NULL); break;
            case 2: kdk_sconv2d_fwd(N, 13, 13, 32, 11, 11, 64, 3, 3, 1, 1, 0, 0, p1, w2, b2, KDK_ACT_RELU, y2, work); break;
            case 3: kdk_smaxpool2d_fwd(N, 11, 11, 64, 5, 5, 2, 2, 2, 2, 0, 0, y2, p2, use_argmax ? am2 : NULL); break;
            case 4: kdk_smaxpool2d_bwd(N, 11, 11, 64, 5, 5, 2, 2, 2, 2, 0, 0, y2, use_argmax ? am2 : NULL, dp2, dy2, 0); break;
            case 5: kdk_sconv2d_bwd_data(N, 13, 13, 32, 11, 11, 64, 3, 3, 1, 1, 0, 0, dy2, w2, dp1, 0, work); break;
            case 6: kdk_sconv2d_bwd_filter(N, 13, 13, 32, 11, 11, 64, 3, 3, 1, 1, 0, 0, p1, dy2, dw2, 0, work); break;
            case 7: kdk_smaxpool2d_bwd(N, 26, 26, 32, 13, 13, 2, 2, 2, 2, 0, 0, y1, use_argmax ? am1 : NULL, dp1, dy1, 0); break;
            case 8: kdk_sconv2d_bwd_filter(N, 28, 28, 1, 26, 26, 32, 3, 3, 1, 1, 0, 0, x, dy1, dw1, 0, work); break;
            }
            double dt = cpu_now() - t0;
            if (dt < best[k]) best[k] = dt;
        }
    }
    double tot = 0;
    for (int k = 0; k < NK; k++) {
        tot += best[k];
        if (flops[k] > 0)
            printf("%-18s %9.1f us %7.1f GFLOP/s\n", names[k], best[k] * 1e6, flops[k] / best[k] * 1e-9);
        else
            printf("%-18s %9.1f us\n", names[k], best[k] * 1e6);
    }
    printf("%-18s %9.1f us  (= %.0f samples/s on these kernels alone)\n", "total", tot * 1e6, N / tot);
    return 0;
}
