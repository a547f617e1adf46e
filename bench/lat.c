/* lat.c — the inference time of one model's generated C at its compiled
 * batch, kdsl's side of bench/run's inference cases (issue 28). bench/run
 * runs kdslc compile samples/M.kdsl --inference-only --batch B -o NET.c and
 * builds that and this file with cc -O3 -march=native -std=c11, as a user
 * would, with -DNET=NET -DNET_UP=the header's macro prefix, linked with
 * build-bench's libkdslrt.a (built for baseline x86-64: its GEMM and
 * convolution pick their AVX-512 variants at run time).
 *
 * One protocol for every case and for the other frameworks
 * (bench/ort_time.js, bench/torch_nets.py): predict on the whole batch for
 * 0.2 s (at least 2 calls) to warm up, then calls for about 1 s (at least
 * 11, at most 1000), each timed alone, each on the next of up to 16
 * different input batches (fewer where a batch is large: 16 MB in all);
 * prints "RESULT kdsl median=Uus min=Vus n=N".
 *
 * The weights go through <model>_prepare once, before the clock starts, and
 * the calls are predict_prepared, as a server would run them (ONNX Runtime
 * likewise folds and packs its weights when the session is made); `lat
 * plain` times predict on the weights as Keras orders them instead. Both
 * arrays start on 64-byte lines. */
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define STR_(a) #a
#define STR(a) STR_(a)
#include STR(NET.h)

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FN(name) CAT(NET, name)
#define M(name) CAT(NET_UP, name)

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const int plain = argc > 1 && !strcmp(argv[1], "plain");
    enum { MAX_CALLS = 1000, MIN_CALLS = 11 };
    const int batch = M(_MAX_BATCH);
    const size_t in = (size_t)batch * M(_INPUT0_SIZE);
    int pool = (int)(((size_t)16 << 20) / (in * sizeof(float)));
    pool = pool < 1 ? 1 : pool > 16 ? 16 : pool;
    float *params = aligned_alloc(64, (M(_PARAMS_SIZE) * sizeof(float) + 63) / 64 * 64);
    float *prepared = aligned_alloc(64, (M(_PREPARED_SIZE) * sizeof(float) + 63) / 64 * 64);
    float *x = malloc(pool * in * sizeof(float));
    float *y = malloc((size_t)batch * M(_OUTPUT0_SIZE) * sizeof(float));
    void *arena = aligned_alloc(64, (M(_ARENA_SIZE) + 63) / 64 * 64 + 64);
    static double t[MAX_CALLS];
    if (!params || !prepared || !x || !y || !arena) {
        fprintf(stderr, "lat: out of memory\n");
        return 1;
    }
    FN(_init)(params, NULL, 1);
    if (FN(_prepare)(params, prepared)) return 1;
#define PREDICT(ins) (plain ? FN(_predict)(params, ins, outs, batch, arena) \
                            : FN(_predict_prepared)(prepared, ins, outs, batch, arena))
    unsigned s = 12345;
    for (size_t i = 0; i < pool * in; i++) x[i] = (float)((s = s * 1103515245u + 12345u) >> 8 & 255) / 255.0f;
    float *outs[1] = {y};
    double sink = 0, t0 = now_us();
    int calls = 0, n = 0;
    for (; calls < 2 || now_us() - t0 < 0.2e6; calls++) {
        const float *ins[1] = {x + calls % pool * in};
        if (PREDICT(ins)) return 1;
    }
    for (t0 = now_us(); n < MAX_CALLS && (n < MIN_CALLS || now_us() - t0 < 1e6); n++, calls++) {
        const float *ins[1] = {x + calls % pool * in};
        double s0 = now_us();
        PREDICT(ins);
        t[n] = now_us() - s0;
        sink += y[0];
    }
    qsort(t, n, sizeof t[0], cmp);
    printf("RESULT kdsl median=%.2fus min=%.2fus n=%d\n", t[n / 2], t[0], n);
    fprintf(stderr, "(checksum %g)\n", sink);
    free(params), free(prepared), free(x), free(y), free(arena);
    return 0;
}
