/* conv_cold.c — one forward convolution (NHWC, batch 1, stride 1, "same"
 * padding, ReLU), timed with its filters hot or cold (issue 28): with
 * COPIES 1 every call reads the same filters (from the caches: L3 holds
 * ResNet50's largest layer, 9.4 MB); with COPIES 12 the calls take 12
 * copies in turn, so that each finds its filters in memory, as inside
 * ResNet50, whose weights are 100 MB. Link against two builds of
 * libkdslrt.a and alternate the binaries to compare (A/B):
 *
 *   cc -O2 -std=c11 -Iruntime bench/conv_cold.c LIB/libkdslrt.a -lm -o cc
 *   cc H C F K COPIES    e.g. 7 512 512 3 12: ResNet50's 7x7 3x3 layer, cold
 *
 * Prints the median of 400 calls and its GFLOP/s. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kernels.h"

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec * 1e-3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    enum { CALLS = 400 };
    if (argc != 6) {
        fprintf(stderr, "usage: %s H C F K COPIES\n", argv[0]);
        return 2;
    }
    int H = atoi(argv[1]), C = atoi(argv[2]), F = atoi(argv[3]), K = atoi(argv[4]), copies = atoi(argv[5]);
    if (H < 1 || C < 1 || F < 1 || K < 1 || copies < 1) {
        fprintf(stderr, "%s: H, C, F, K and COPIES must be positive\n", argv[0]);
        return 2;
    }
    int pad = K / 2;
    size_t wn = (size_t)K * K * C * F, ws = kdk_sconv2d_fwd_work_size(1, H, H, C, H, H, F, K, K, 1, 1, pad, pad);
    float *x = aligned_alloc(64, sizeof(float) * ((size_t)H * H * C + 16));
    float *y = aligned_alloc(64, sizeof(float) * ((size_t)H * H * F + 16));
    float *bias = aligned_alloc(64, sizeof(float) * ((size_t)F + 16));
    float *work = aligned_alloc(64, sizeof(float) * (ws + 16));
    float **w = malloc(sizeof *w * (size_t)copies);
    if (!x || !y || !bias || !work || !w) return 1;
    for (int i = 0; i < copies; i++) {
        if (!(w[i] = aligned_alloc(64, sizeof(float) * (wn + 16)))) return 1;
        for (size_t j = 0; j < wn; j++) w[i][j] = (float)((j * 7 + (size_t)i) % 13) / 13 - 0.5f;
    }
    for (size_t i = 0; i < (size_t)H * H * C; i++) x[i] = (float)(i % 11) / 11;
    for (int i = 0; i < F; i++) bias[i] = 0;
    static double t[CALLS];
    for (int r = 0; r < CALLS; r++) {
        double s = now_us();
        kdk_sconv2d_fwd(1, H, H, C, H, H, F, K, K, 1, 1, pad, pad, x, w[r % copies], bias, 1, y, work);
        t[r] = now_us() - s;
    }
    qsort(t, CALLS, sizeof t[0], cmp);
    double flop = 2.0 * H * H * F * K * K * C;
    printf("%dx%dx%d -> %d, %dx%d, %d filter cop%s: median %.1f us, %.1f GFLOP/s\n", H, H, C, F, K, K, copies,
           copies == 1 ? "y" : "ies", t[CALLS / 2], flop / t[CALLS / 2] / 1e3);
    return 0;
}
