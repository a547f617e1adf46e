/* run_model.c — runs the generated C of one model end to end, for
 * tests/test_samples_run.c: init, predict at batch 1, 2 and (for small
 * models) the compiled maximum, and when the model trains, three train steps
 * and a grad + apply_gradients, each checked for finite results. Built per
 * model, with the sanitizers in tests/run's second pass:
 *
 *   cc -DMODEL=mlp -DMODEL_UPPER=MLP -DMODEL_H='"mlp.h"' run_model.c mlp.c runtime/*.c -lm
 *
 * Prints "ok" and exits 0, or names what failed and exits 1. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include MODEL_H

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(x) CAT(MODEL, x)
#define UP(x) CAT(MODEL_UPPER, x)

#if UP(_DTYPE_F64)
typedef double real;
#else
typedef float real;
#endif

static const long input_size[] = {
    UP(_INPUT0_SIZE),
#if UP(_NUM_INPUTS) > 1
    UP(_INPUT1_SIZE),
#endif
#if UP(_NUM_INPUTS) > 2
    UP(_INPUT2_SIZE),
#endif
#if UP(_NUM_INPUTS) > 3
    UP(_INPUT3_SIZE),
#endif
};
/* Token ids: an i32 input's vocabulary (its ids are drawn in [0, tokens)), 0 for a real input. */
#if UP(_INPUT0_I32)
#define TOKENS0 UP(_INPUT0_TOKENS)
#else
#define TOKENS0 0
#endif
#if UP(_NUM_INPUTS) > 1 && UP(_INPUT1_I32)
#define TOKENS1 UP(_INPUT1_TOKENS)
#else
#define TOKENS1 0
#endif
#if UP(_NUM_INPUTS) > 2 && UP(_INPUT2_I32)
#define TOKENS2 UP(_INPUT2_TOKENS)
#else
#define TOKENS2 0
#endif
#if UP(_NUM_INPUTS) > 3 && UP(_INPUT3_I32)
#define TOKENS3 UP(_INPUT3_TOKENS)
#else
#define TOKENS3 0
#endif
static const long input_tokens[] = {TOKENS0, TOKENS1, TOKENS2, TOKENS3};
/* The API takes inputs as const real *const *, or as const void *const * when an input is
 * i32: a void * converts to either. */

static const long output_size[] = {
    UP(_OUTPUT0_SIZE),
#if UP(_NUM_OUTPUTS) > 1
    UP(_OUTPUT1_SIZE),
#endif
#if UP(_NUM_OUTPUTS) > 2
    UP(_OUTPUT2_SIZE),
#endif
#if UP(_NUM_OUTPUTS) > 3
    UP(_OUTPUT3_SIZE),
#endif
};

static unsigned long long rng = 0x9E3779B97F4A7C15ull;
static double urand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* Exactly n elements (at least one byte), so that ASan sees any overrun. */
static void *alloc(size_t n, size_t size)
{
    void *p = malloc(n ? n * size : 1);
    if (!p) {
        fprintf(stderr, "run_model: out of memory\n");
        exit(1);
    }
    return p;
}

/* An arena of garbage: kernels must not read before they write. */
static void *arena_of(long bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, (size_t)(bytes > 0 ? bytes : 1))) exit(1);
    memset(p, 0xa5, (size_t)(bytes > 0 ? bytes : 1));
    return p;
}

static void check_finite(const char *what, const real *v, long n)
{
    for (long i = 0; i < n; i++)
        if (!isfinite((double)v[i])) {
            fprintf(stderr, "run_model: %s: element %ld of %ld is %g\n", what, i, n, (double)v[i]);
            exit(1);
        }
}

int main(void)
{
    const int max_batch = UP(_MAX_BATCH);
    real *params = alloc(UP(_PARAMS_SIZE), sizeof *params);
    real *opt = alloc(UP(_OPT_STATE_SIZE), sizeof *opt);
    FN(_init)(params, opt, 42);
    check_finite("init params", params, UP(_PARAMS_SIZE));

    real *inputs[UP(_NUM_INPUTS)];
    real *outputs[UP(_NUM_OUTPUTS)];
    for (int i = 0; i < UP(_NUM_INPUTS); i++) {
        inputs[i] = alloc((size_t)(input_size[i] * max_batch), sizeof(real));
        for (long k = 0; k < input_size[i] * max_batch; k++) {
            if (input_tokens[i]) ((int32_t *)(void *)inputs[i])[k] = (int32_t)(urand() * (double)input_tokens[i]);
            else inputs[i][k] = (real)(2 * urand() - 1);
        }
    }
    for (int i = 0; i < UP(_NUM_OUTPUTS); i++) outputs[i] = alloc((size_t)(output_size[i] * max_batch), sizeof(real));

    /* The compiled maximum only for small models: the point is the arena's
     * bounds. Big models (ResNet-50: 23M parameters, seconds per sample
     * under the sanitizers) run inference on one sample and train no step. */
    long per_sample = 0;
    for (int i = 0; i < UP(_NUM_INPUTS); i++) per_sample += input_size[i];
    const int light = UP(_PARAMS_SIZE) > 5000000;
    int batches[3] = {1, max_batch < 2 || light ? 1 : 2, per_sample * max_batch <= 200000 ? max_batch : 1};

    void *arena = arena_of(UP(_ARENA_SIZE));
    for (int b = 0; b < 3; b++) {
        FN(_predict)(params, (void *)inputs, outputs, batches[b], arena);
        for (int i = 0; i < UP(_NUM_OUTPUTS); i++) check_finite("predict", outputs[i], output_size[i] * batches[b]);
    }
    free(arena);

#if UP(_HAS_TRAINING)
    if (light) goto done;
    /* Labels that suit every loss: one-hot rows (categorical, binary, MSE),
     * or a valid class index when a label is one number (sparse). */
    const long L = UP(_LABEL_SIZE);
    real *labels = alloc((size_t)(L * max_batch), sizeof *labels);
    for (long r = 0; r < max_batch; r++)
        for (long k = 0; k < L; k++) labels[r * L + k] = (real)(L == 1 ? 0 : k == r % L);
    real *out0 = alloc((size_t)(output_size[0] * max_batch), sizeof *out0);
    arena = arena_of(UP(_TRAIN_ARENA_SIZE));
    for (int b = 0; b < 3; b++) {
        real loss = FN(_train_step)(params, opt, (void *)inputs, labels, batches[b], (unsigned long long)b,
                                    (real)1e-3, arena, out0);
        check_finite("train_step loss", &loss, 1);
        check_finite("train_step params", params, UP(_PARAMS_SIZE));
        check_finite("train_step output", out0, output_size[0] * batches[b]);
    }
    real *grads = alloc(UP(_GRADS_SIZE), sizeof *grads);
    real loss = FN(_grad)(params, (void *)inputs, labels, grads, batches[1], 3, arena);
    check_finite("grad loss", &loss, 1);
    check_finite("grads", grads, UP(_GRADS_SIZE));
    FN(_apply_gradients)(params, grads, opt, 3, (real)1e-3);
    check_finite("apply_gradients", params, UP(_PARAMS_SIZE));
    free(arena);
    free(grads);
    free(out0);
    free(labels);
done:
#endif
    for (int i = 0; i < UP(_NUM_INPUTS); i++) free(inputs[i]);
    for (int i = 0; i < UP(_NUM_OUTPUTS); i++) free(outputs[i]);
    free(params);
    free(opt);
    puts("ok");
    return 0;
}
