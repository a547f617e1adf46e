/* lat.c — batch-1 inference latency of the generated C of the Fashion-MNIST MLP
 * (bench/run: kdslc compile samples/fmnist_mlp.kdsl --inference-only --batch 1
 * -o fmnist_mlp.c; that and this file built with cc -O3 -march=native -std=c11,
 * as a user would; linked with build-bench's libkdslrt.a, which meson builds
 * for baseline x86-64 (-O3, no -march): its GEMM picks the AVX-512 variant at
 * run time, and at batch 1 each dense layer takes the GEMV path of
 * runtime/gemm_tmpl.h — W streamed once, the outputs in registers, bias and
 * ReLU fused, no packing and no workspace).
 * Same protocol as bench/torch_fmnist.py: 100 warm-up calls, then the
 * median, p10 and p90 of 1000 timed calls, each on a different input. */
#include "fmnist_mlp.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(void)
{
    enum { N = 1000, IN = FMNIST_MLP_INPUT0_SIZE };
    static float params[FMNIST_MLP_PARAMS_SIZE], x[N][IN], y[FMNIST_MLP_OUTPUT0_SIZE];
    static _Alignas(64) unsigned char arena[FMNIST_MLP_ARENA_SIZE];
    fmnist_mlp_init(params, NULL, 1);
    unsigned s = 12345;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < IN; j++) x[i][j] = (float)((s = s * 1103515245u + 12345u) >> 8 & 255) / 255.0f;
    float *outs[1] = {y};
    double t[N], sink = 0;
    for (int i = 0; i < 100; i++) {
        const float *ins[1] = {x[i]};
        fmnist_mlp_predict(params, ins, outs, 1, arena);
    }
    for (int i = 0; i < N; i++) {
        const float *ins[1] = {x[i]};
        double t0 = now_ns();
        fmnist_mlp_predict(params, ins, outs, 1, arena);
        t[i] = now_ns() - t0;
        sink += y[0];
    }
    qsort(t, N, sizeof t[0], cmp);
    printf("RESULT lat median=%.2fus p10=%.2fus p90=%.2fus\n", t[N / 2] / 1e3, t[N / 10] / 1e3, t[N * 9 / 10] / 1e3);
    fprintf(stderr, "(checksum %g)\n", sink);
    return 0;
}
