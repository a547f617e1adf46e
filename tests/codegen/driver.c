/* driver.c — runs the functions of one generated model for test_codegen.c.
 *
 * Built per model:  cc -DMODEL=mlp -DMODEL_UPPER=MLP -DMODEL_H='"mlp.h"' driver.c mlp.c runtime...
 *
 *   driver MODE IN OUT
 *
 * IN is a file of doubles (converted to the model's real type), OUT receives
 * doubles. The layouts, per mode:
 *   init     in: seed                                     out: params, opt_state
 *   predict  in: batch, params, inputs...                 out: outputs...
 *   grad     in: batch, step, params, inputs..., labels   out: loss, grads, params (states updated)
 *   apply    in: step, lr, params, grads, opt_state       out: params, opt_state
 *   train    in: batch, step, lr, params, opt_state, inputs..., labels
 *                                                         out: loss, params, opt_state, output 0
 *   fd       in: batch, step, h, n, index[n], params, inputs..., labels
 *            out: n pairs (analytic, central difference) of d loss / d params[index]
 *            (index into params; the gradient is read at its grad_offset)
 * Exit status 0, or 1 with a message on stderr. */
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

static double *in_data;
static long in_len, in_at;
static FILE *out_file;

/* Every buffer the driver allocates is kept here and freed at exit, so the
 * sanitizer pass sees a leak only if generated code made one. */
static void *owned[64];
static int num_owned;

static void free_owned(void)
{
    while (num_owned > 0) free(owned[--num_owned]);
    free(in_data);
}

static void *own(void *p)
{
    if (!p || num_owned == (int)(sizeof owned / sizeof owned[0])) {
        fprintf(stderr, "driver: out of memory\n");
        exit(1);
    }
    return owned[num_owned++] = p;
}

static void *zeroed(long n, size_t size) { return own(calloc((size_t)(n > 0 ? n : 1), size)); }

static double next(void)
{
    if (in_at >= in_len) {
        fprintf(stderr, "driver: input too short\n");
        exit(1);
    }
    return in_data[in_at++];
}

static real *take(long n)
{
    real *p = zeroed(n, sizeof *p);
    for (long i = 0; i < n; i++) p[i] = (real)next();
    return p;
}

static void put(const real *p, long n)
{
    for (long i = 0; i < n; i++) {
        double v = p[i];
        fwrite(&v, sizeof v, 1, out_file);
    }
}

static void put1(double v) { fwrite(&v, sizeof v, 1, out_file); }

static const long input_size[] = {
    UP(_INPUT0_SIZE),
#if UP(_NUM_INPUTS) > 1
    UP(_INPUT1_SIZE),
#endif
#if UP(_NUM_INPUTS) > 2
    UP(_INPUT2_SIZE),
#endif
};
static const long output_size[] = {
    UP(_OUTPUT0_SIZE),
#if UP(_NUM_OUTPUTS) > 1
    UP(_OUTPUT1_SIZE),
#endif
};

static void *arena_of(long bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, (size_t)(bytes > 0 ? bytes : 1))) exit(1);
    own(p);
    memset(p, 0xa5, (size_t)(bytes > 0 ? bytes : 1));   /* garbage: kernels must not read before writing */
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: driver MODE IN OUT\n");
        return 1;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) return 1;
    fseek(f, 0, SEEK_END);
    in_len = ftell(f) / (long)sizeof(double);
    fseek(f, 0, SEEK_SET);
    in_data = malloc((size_t)(in_len + 1) * sizeof(double));
    atexit(free_owned);
    if (!in_data || fread(in_data, sizeof(double), (size_t)in_len, f) != (size_t)in_len) return 1;
    fclose(f);
    out_file = fopen(argv[3], "wb");
    if (!out_file) return 1;
    const char *mode = argv[1];

    if (!strcmp(mode, "init")) {
        unsigned long long seed = (unsigned long long)next();
        real *params = zeroed(UP(_PARAMS_SIZE) + 1, sizeof *params);
        real *opt = zeroed(UP(_OPT_STATE_SIZE) + 1, sizeof *opt);
        FN(_init)(params, opt, seed);
        put(params, UP(_PARAMS_SIZE));
        put(opt, UP(_OPT_STATE_SIZE));
    } else if (!strcmp(mode, "predict")) {
        int batch = (int)next();
        real *params = take(UP(_PARAMS_SIZE));
        const real *inputs[UP(_NUM_INPUTS)];
        real *outputs[UP(_NUM_OUTPUTS)];
        for (int i = 0; i < UP(_NUM_INPUTS); i++) inputs[i] = take(input_size[i] * batch);
        for (int i = 0; i < UP(_NUM_OUTPUTS); i++) outputs[i] = zeroed(output_size[i] * batch, sizeof(real));
        FN(_predict)(params, inputs, outputs, batch, arena_of(UP(_ARENA_SIZE)));
        for (int i = 0; i < UP(_NUM_OUTPUTS); i++) put(outputs[i], output_size[i] * batch);
    }
#if UP(_HAS_TRAINING)
    else if (!strcmp(mode, "grad") || !strcmp(mode, "fd")) {
        int batch = (int)next();
        unsigned long long step = (unsigned long long)next();
        double h = 0;
        long n = 0, *index = NULL;
        if (!strcmp(mode, "fd")) {
            h = next();
            n = (long)next();
            index = zeroed(n + 1, sizeof *index);
            for (long i = 0; i < n; i++) index[i] = (long)next();
        }
        real *params = take(UP(_PARAMS_SIZE));
        const real *inputs[UP(_NUM_INPUTS)];
        for (int i = 0; i < UP(_NUM_INPUTS); i++) inputs[i] = take(input_size[i] * batch);
        real *labels = take(UP(_LABEL_SIZE) * batch);
        real *grads = zeroed(UP(_GRADS_SIZE) + 1, sizeof *grads);
        void *arena = arena_of(UP(_TRAIN_ARENA_SIZE));
        if (!strcmp(mode, "grad")) {
            real loss = FN(_grad)(params, inputs, labels, grads, batch, step, arena);
            put1(loss);
            put(grads, UP(_GRADS_SIZE));
            put(params, UP(_PARAMS_SIZE));
        } else {
            real *work = zeroed(UP(_PARAMS_SIZE) + 1, sizeof *work);
            real *scratch = zeroed(UP(_GRADS_SIZE) + 1, sizeof *scratch);
            memcpy(work, params, UP(_PARAMS_SIZE) * sizeof *work);
            FN(_grad)(work, inputs, labels, grads, batch, step, arena);
            for (long i = 0; i < n; i++) {
                long at = index[i], g = -1;
                for (int v = 0; v < FN(_num_params); v++) {
                    const FN(_tensor_info) *t = &FN(_params)[v];
                    long elems = 1;
                    for (int d = 0; d < t->rank; d++) elems *= t->shape[d];
                    if (at >= t->offset && at < t->offset + elems && t->grad_offset >= 0)
                        g = t->grad_offset + (at - t->offset);
                }
                double lp, lm;
                memcpy(work, params, UP(_PARAMS_SIZE) * sizeof *work);
                work[at] += (real)h;
                lp = FN(_grad)(work, inputs, labels, scratch, batch, step, arena);
                memcpy(work, params, UP(_PARAMS_SIZE) * sizeof *work);
                work[at] -= (real)h;
                lm = FN(_grad)(work, inputs, labels, scratch, batch, step, arena);
                put1(g >= 0 ? grads[g] : 0);
                put1((lp - lm) / (2 * h));
            }
        }
    } else if (!strcmp(mode, "apply")) {
        unsigned long long step = (unsigned long long)next();
        real lr = (real)next();
        real *params = take(UP(_PARAMS_SIZE)), *grads = take(UP(_GRADS_SIZE)), *opt = take(UP(_OPT_STATE_SIZE));
        FN(_apply_gradients)(params, grads, opt, step, lr);
        put(params, UP(_PARAMS_SIZE));
        put(opt, UP(_OPT_STATE_SIZE));
    } else if (!strcmp(mode, "train")) {
        int batch = (int)next();
        unsigned long long step = (unsigned long long)next();
        real lr = (real)next();
        real *params = take(UP(_PARAMS_SIZE)), *opt = take(UP(_OPT_STATE_SIZE));
        const real *inputs[UP(_NUM_INPUTS)];
        for (int i = 0; i < UP(_NUM_INPUTS); i++) inputs[i] = take(input_size[i] * batch);
        real *labels = take(UP(_LABEL_SIZE) * batch);
        real *out0 = zeroed(output_size[0] * batch, sizeof *out0);
        real loss = FN(_train_step)(params, opt, inputs, labels, batch, step, lr, arena_of(UP(_TRAIN_ARENA_SIZE)), out0);
        put1(loss);
        put(params, UP(_PARAMS_SIZE));
        put(opt, UP(_OPT_STATE_SIZE));
        put(out0, output_size[0] * batch);
    }
#endif
    else {
        fprintf(stderr, "driver: unknown mode %s\n", mode);
        return 1;
    }
    return fclose(out_file) == 0 ? 0 : 1;
}
