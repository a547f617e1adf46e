/* test_jit.c — the libgccjit backend (codegen/emit_jit.c) against the C
 * backend: each model is built once (kd_codegen_build), JIT-compiled in this
 * process, and also emitted as C (kd_emit_c), compiled with cc into a shared
 * object with the runtime kernels and dlopen'ed. Both run on the same
 * parameters and inputs: init, predict (full and partial batch), grad,
 * apply_gradients and three train steps, and must agree to 1e-5 relative;
 * the figures printed say how many values were not bit-identical. Also: the
 * softmax sample's known output, batch bounds, and the error paths (f64, a
 * bad -march, malformed programs). */
#include "codegen.h"
#include "driver.h"
#include "jit.h"
#include "testutil.h"

#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-5

/* ---- helpers ------------------------------------------------------------------------------------ */

static char *strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *strf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static void sh(char *cmd)
{
    char *out = NULL;
    int rc = tu_run(cmd, &out);
    ck_assert_msg(rc == 0, "command failed (%d): %s\n%s", rc, cmd, out);
    free(out);
    free(cmd);
}

/* The runtime kernels as position-independent objects, built once by main(). */
static char runtime_lib[4096];

static int build_runtime(void)
{
    snprintf(runtime_lib, sizeof runtime_lib, "%s/tmp/jit-rt/libkdslrt-pic.a", tu_build_root());
    char *cmd = strf("set -e; d=%s/tmp/jit-rt; rm -rf $d; mkdir -p $d; cd $d; "
                     "for f in %s/*.c; do cc -std=c11 -O2 -fPIC -I%s -c $f -o $(basename $f .c).o; done; "
                     "ar rcs libkdslrt-pic.a *.o",
                     tu_build_root(), tu_src("runtime"), tu_src("runtime"));
    char *out = NULL;
    int rc = tu_run(cmd, &out);
    if (rc) fprintf(stderr, "building the runtime failed:\n%s\n", out);
    free(out);
    free(cmd);
    return rc;
}

/* xorshift, for the inputs and the parameter perturbation. */
static uint64_t rng_state;
static double urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

static float *falloc(int64_t n)
{
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* ---- a model through both backends ---------------------------------------------------------------- */

typedef enum { LAB_ONEHOT, LAB_INDEX, LAB_REAL } label_kind;

typedef struct built {
    kd_session s;
    lp_program *p;
    kd_jit *jit;
    kd_model_fns J, C;
    void *so;
    double jit_seconds;
} built;

static void *sym(built *b, const char *fn)
{
    char name[256];
    snprintf(name, sizeof name, "%s_%s", b->p->name, fn);
    return dlsym(b->so, name);
}

static void build_text(built *b, const char *tag, const char *path, const char *text, int batch, bool want_c)
{
    memset(b, 0, sizeof *b);
    b->s.diags.out = stderr;
    int rc = text ? kd_front_end_text(&b->s, path, text, strlen(text), NULL) : kd_front_end(&b->s, path, NULL);
    ck_assert_int_eq(rc, 0);
    kd_codegen_options o = {.batch = batch, .arena = &b->s.arena};
    b->p = kd_codegen_build(&b->s.arena, b->s.model, &o, &b->s.diags);
    ck_assert_msg(b->p != NULL, "codegen failed for %s", tag);

    char why[1024];
    b->jit = kd_jit_compile(b->p, NULL, &b->J, why, sizeof why);
    ck_assert_msg(b->jit != NULL, "%s: %s", tag, why);
    b->jit_seconds = kd_jit_compile_seconds(b->jit);
    ck_assert(b->jit_seconds > 0);
    ck_assert_ptr_nonnull(b->J.init);
    ck_assert_ptr_nonnull(b->J.predict);
    if (!want_c) return;

    const char *dir = tu_tmpdir(tag);
    char cpath[4200], hpath[4200];
    snprintf(cpath, sizeof cpath, "%s/%s.c", dir, b->p->name);
    snprintf(hpath, sizeof hpath, "%s/%s.h", dir, b->p->name);
    FILE *cf = fopen(cpath, "w"), *hf = fopen(hpath, "w");
    ck_assert(cf && hf);
    ck_assert_int_eq(kd_emit_c(b->p, &o, cf, hf, &b->s.diags), 0);
    fclose(cf);
    fclose(hf);
    sh(strf("cd %s && cc -std=c99 -O2 -shared -fPIC -I%s -o %s.so %s.c %s -lm", dir, tu_src("runtime"), b->p->name,
            b->p->name, runtime_lib));
    char so[4200];
    snprintf(so, sizeof so, "%s/%s.so", dir, b->p->name);
    b->so = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(b->so != NULL, "dlopen: %s", dlerror());
    void *f;
    f = sym(b, "init"), memcpy(&b->C.init, &f, sizeof f);
    f = sym(b, "predict"), memcpy(&b->C.predict, &f, sizeof f);
    f = sym(b, "grad"), memcpy(&b->C.grad, &f, sizeof f);
    f = sym(b, "apply_gradients"), memcpy(&b->C.apply_gradients, &f, sizeof f);
    f = sym(b, "train_step"), memcpy(&b->C.train_step, &f, sizeof f);
    ck_assert_ptr_nonnull(b->C.init);
    ck_assert_ptr_nonnull(b->C.predict);
    ck_assert((b->C.grad == NULL) == (b->J.grad == NULL));
    ck_assert((b->C.train_step == NULL) == (b->J.train_step == NULL));
}

static void built_free(built *b)
{
    kd_jit_free(b->jit);
    if (b->so) dlclose(b->so);
    kd_session_free(&b->s);
}

/* ---- comparing ------------------------------------------------------------------------------------- */

typedef struct stats {
    long n, differ;   /* values compared, values not bit-identical */
    double max_rel;
} stats;

static void compare(stats *st, const char *what, const float *jit, const float *c, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double a = jit[i], b = c[i];
        st->n++;
        if (memcmp(&jit[i], &c[i], sizeof(float)) == 0) continue;
        st->differ++;
        double rel;
        if (isnan(a) || isnan(b)) rel = isnan(a) && isnan(b) ? 0 : INFINITY;
        else rel = fabs(a - b) / fmax(fmax(fabs(a), fabs(b)), 1e-30);
        if (rel > st->max_rel) st->max_rel = rel;
        ck_assert_msg(rel <= TOL, "%s[%lld]: jit %.9g, C %.9g (relative %.3g)", what, (long long)i, a, b, rel);
    }
}

static int64_t arena_bytes(const lp_program *p)
{
    int64_t n = 64;
    for (int f = 0; f < LP_F_COUNT; f++)
        if (p->funcs[f] && p->funcs[f]->arena_bytes > n) n = p->funcs[f]->arena_bytes;
    return (n + 63) / 64 * 64;
}

static void fill_labels(float *l, int batch, int64_t elems, label_kind lk, int classes)
{
    for (int r = 0; r < batch; r++) {
        int k = (int)(urand() * classes) % classes;
        for (int64_t j = 0; j < elems; j++) {
            float *x = &l[r * elems + j];
            switch (lk) {
            case LAB_ONEHOT: *x = j == k ? 1.0f : 0.0f; break;
            case LAB_INDEX: *x = (float)((int)(urand() * classes) % classes); break;
            default: *x = (float)(urand() * 2 - 1); break;
            }
        }
    }
}

/* Runs both backends on the same data: init, predict at two batches, grad,
 * apply_gradients, then `steps` train steps. Returns the statistics. */
static stats run_both(built *b, const char *tag, int batch, label_kind lk, int classes, int steps)
{
    const lp_program *p = b->p;
    stats st = {0};
    rng_state = 0x9e3779b97f4a7c15ULL ^ (uint64_t)strlen(tag) * 7919;
    int64_t np = p->params_size, no = p->opt_size, ng = p->grads_size;
    float *pj = falloc(np), *pc = falloc(np), *oj = falloc(no), *oc = falloc(no), *gj = falloc(ng), *gc = falloc(ng);
    int64_t ab = arena_bytes(p);
    void *aj = aligned_alloc(64, (size_t)ab), *ac = aligned_alloc(64, (size_t)ab);
    ck_assert(aj && ac);
    memset(aj, 0, (size_t)ab);
    memset(ac, 0, (size_t)ab);

    /* init: the initializers' random streams must agree bit for bit */
    b->J.init(pj, no ? oj : NULL, 1234);
    b->C.init(pc, no ? oc : NULL, 1234);
    compare(&st, "init params", pj, pc, np);
    compare(&st, "init opt_state", oj, oc, no);
    /* then random parameters, the same in both */
    for (int64_t i = 0; i < np; i++) pj[i] = pc[i] = (float)(pj[i] + 0.1 * (urand() - 0.5));
    for (int64_t i = 0; i < no; i++) oj[i] = oc[i] = no ? (float)(0.01 * urand()) : 0;

    float *in[16], *outj[16], *outc[16];
    for (int i = 0; i < p->ninputs; i++) {
        in[i] = falloc(p->inputs[i].elems * p->max_batch);
        for (int64_t k = 0; k < p->inputs[i].elems * p->max_batch; k++) in[i][k] = (float)(urand() * 2 - 1);
    }
    for (int i = 0; i < p->noutputs; i++) {
        outj[i] = falloc(p->outputs[i].elems * p->max_batch);
        outc[i] = falloc(p->outputs[i].elems * p->max_batch);
    }
    int batches[2] = {batch, batch > 1 ? batch / 2 + 1 : 1};
    for (int t = 0; t < 2; t++) {
        b->J.predict(pj, (const float *const *)in, outj, batches[t], aj);
        b->C.predict(pc, (const float *const *)in, outc, batches[t], ac);
        for (int i = 0; i < p->noutputs; i++) compare(&st, "predict outputs", outj[i], outc[i], p->outputs[i].elems * batches[t]);
    }
    compare(&st, "params after predict", pj, pc, np);

    if (b->J.grad) {
        int64_t le = p->labels[0].elems;
        float *lab = falloc(le * p->max_batch);
        fill_labels(lab, batch, le, lk, classes);
        float lj = b->J.grad(pj, (const float *const *)in, lab, gj, batch, 1, aj);
        float lc = b->C.grad(pc, (const float *const *)in, lab, gc, batch, 1, ac);
        ck_assert(isfinite(lj));
        compare(&st, "grad loss", &lj, &lc, 1);
        compare(&st, "gradients", gj, gc, ng);
        compare(&st, "params after grad (states)", pj, pc, np);
        b->J.apply_gradients(pj, gj, oj, 0, 0.01f);
        b->C.apply_gradients(pc, gc, oc, 0, 0.01f);
        compare(&st, "params after apply_gradients", pj, pc, np);
        compare(&st, "opt_state after apply_gradients", oj, oc, no);
        for (int s = 1; s <= steps; s++) {
            fill_labels(lab, batch, le, lk, classes);
            for (int i = 0; i < p->ninputs; i++)
                for (int64_t k = 0; k < p->inputs[i].elems * batch; k++) in[i][k] = (float)(urand() * 2 - 1);
            float tj = b->J.train_step(pj, oj, (const float *const *)in, lab, batch, (unsigned long long)s, 0.01f, aj,
                                       s == 2 ? NULL : outj[0]);
            float tc = b->C.train_step(pc, oc, (const float *const *)in, lab, batch, (unsigned long long)s, 0.01f, ac,
                                       s == 2 ? NULL : outc[0]);
            ck_assert(isfinite(tj));
            compare(&st, "train_step loss", &tj, &tc, 1);
            compare(&st, "params after train_step", pj, pc, np);
            compare(&st, "opt_state after train_step", oj, oc, no);
            if (s != 2) compare(&st, "train_step outputs0", outj[0], outc[0], p->outputs[0].elems * batch);
        }
        /* Out-of-range batches: nothing done, NaN returned. */
        ck_assert(isnan(b->J.grad(pj, (const float *const *)in, lab, gj, 0, 1, aj)));
        ck_assert(isnan(b->J.train_step(pj, oj, (const float *const *)in, lab, p->max_batch + 1, 1, 0.01f, aj, NULL)));
        free(lab);
    }
    fprintf(stderr, "jit-vs-c %-18s %8ld values, %6ld not bit-identical, max relative difference %.3g; jit compile %.3f s\n",
            tag, st.n, st.differ, st.max_rel, b->jit_seconds);

    for (int i = 0; i < p->ninputs; i++) free(in[i]);
    for (int i = 0; i < p->noutputs; i++) free(outj[i]), free(outc[i]);
    free(pj), free(pc), free(oj), free(oc), free(gj), free(gc), free(aj), free(ac);
    return st;
}

static void check_model(const char *tag, const char *path, const char *text, int max_batch, int batch, label_kind lk,
                        int classes)
{
    built b;
    build_text(&b, tag, path, text, max_batch, true);
    bool train = b.s.model->config.present;
    ck_assert_msg((b.J.train_step != NULL) == train, "%s: train_step %s", tag, train ? "missing" : "unexpected");
    stats st = run_both(&b, tag, batch, lk, classes, 3);
    ck_assert_int_gt(st.n, 0);
    built_free(&b);
}

/* ---- the models ---------------------------------------------------------------------------------- */

START_TEST(mlp_adam)
{
    check_model("fmnist_mlp", tu_src("samples/fmnist_mlp.kdsl"), NULL, 0, 64, LAB_ONEHOT, 10);
}
END_TEST

START_TEST(deep_mlp_sample)
{
    check_model("mlp", tu_src("samples/mlp.kdsl"), NULL, 0, 32, LAB_ONEHOT, 10);
}
END_TEST

START_TEST(cnn_sample)
{
    check_model("cnn", tu_src("samples/cnn.kdsl"), NULL, 16, 16, LAB_ONEHOT, 10);
}
END_TEST

START_TEST(fmnist_cnn_sample)
{
    check_model("fmnist_cnn", tu_src("samples/fmnist_cnn.kdsl"), NULL, 0, 64, LAB_ONEHOT, 10);
}
END_TEST

START_TEST(linear_regression_sample)
{
    check_model("linear_regression", tu_src("samples/linear_regression.kdsl"), NULL, 0, 16, LAB_REAL, 1);
}
END_TEST

static const char bn_dropout_text[] =
    "model bn_dropout {\n"
    "    input x: [20]\n"
    "    Dense(32)\n"
    "    BatchNormalization()\n"
    "    Activation(relu)\n"
    "    Dropout(0.3)\n"
    "    Dense(16, activation: tanh)\n"
    "    Dropout(0.5)\n"
    "    output logits = Dense(5)\n"
    "}\n"
    "train bn_dropout {\n"
    "    loss: CategoricalCrossentropy(from_logits: true)\n"
    "    optimizer: Adam(learning_rate: 0.01)\n"
    "    batch_size: 16\n"
    "    seed: 7\n"
    "}\n";

START_TEST(batchnorm_dropout_training)
{
    check_model("bn_dropout", "bn_dropout.kdsl", bn_dropout_text, 0, 16, LAB_ONEHOT, 5);
}
END_TEST

static const char conv_bn_text[] =
    "model conv_bn {\n"
    "    input image: [12, 12, 2]\n"
    "    Conv2D(6, 3, padding: same)\n"
    "    BatchNormalization(momentum: 0.9)\n"
    "    Activation(relu)\n"
    "    MaxPooling2D(2)\n"
    "    Dropout(0.2)\n"
    "    Conv2D(8, 3, strides: 2)\n"
    "    GlobalAveragePooling2D()\n"
    "    output y = Dense(3)\n"
    "}\n"
    "train conv_bn {\n"
    "    loss: SparseCategoricalCrossentropy(from_logits: true)\n"
    "    optimizer: Adam(learning_rate: 0.05, beta_1: 0.8)\n"
    "    batch_size: 8\n"
    "    seed: 3\n"
    "}\n";

START_TEST(conv_batchnorm_sparse_sgd)
{
    check_model("conv_bn", "conv_bn.kdsl", conv_bn_text, 0, 8, LAB_INDEX, 3);
}
END_TEST

static const char custom_layer_train_text[] =
    "layer MyDense(in_dim, out_dim) {\n"
    "    input x: [in_dim]\n"
    "    weight kernel: [in_dim, out_dim]\n"
    "    output relu(x @ kernel)\n"
    "}\n"
    "model my_mlp {\n"
    "    input x: [64]\n"
    "    MyDense(64, 32)\n"
    "    MyDense(32, 16)\n"
    "    weight w: [16, 4] = RandomNormal(mean: 0, stddev: 0.3)\n"
    "    weight b: [4] = 0.1\n"
    "    output y = sigmoid(MyDense(16, 16) @ w + b)\n"
    "}\n"
    "train my_mlp {\n"
    "    loss: BinaryCrossentropy()\n"
    "    optimizer: Adam(learning_rate: 0.01)\n"
    "    batch_size: 16\n"
    "}\n";

START_TEST(custom_layer_matmul)
{
    check_model("my_mlp", "my_mlp.kdsl", custom_layer_train_text, 0, 16, LAB_ONEHOT, 4);
}
END_TEST

START_TEST(custom_layer_sample_inference)
{
    check_model("my_dense", tu_src("samples/my_dense.kdsl"), NULL, 8, 8, LAB_ONEHOT, 10);
}
END_TEST

/* Most loop-IR operators: sigmoid, tanh, abs, sqrt, square, exp, log, neg,
 * max reductions (max=), maximum, softmax, pooling of both kinds, padding,
 * concatenation, transposes, dropout, BatchNormalization, RMSprop. */
static const char zoo_text[] =
    "model zoo {\n"
    "    input img: [8, 8, 3]\n"
    "    h = Conv2D(img, 4, 3, padding: same, activation: sigmoid)\n"
    "    h = BatchNormalization(h)\n"
    "    a = AveragePooling2D(h, 2)\n"
    "    m = MaxPooling2D(h, 2, padding: same)\n"
    "    c = Concatenate([a, m])\n"
    "    g1 = GlobalAveragePooling2D(c)\n"
    "    g2 = GlobalMaxPooling2D(c)\n"
    "    z = ZeroPadding2D(c, 1)\n"
    "    f = Flatten(z)\n"
    "    d = Dense(f, 8, activation: tanh)\n"
    "    e = Maximum([g1, g2])\n"
    "    t = transpose(reshape(d, [2, 4]), [0, 2, 1])\n"
    "    r = reshape(t, [8])\n"
    "    u = Concatenate([d, g1 * g2, abs(e), sqrt(square(e) + 1), exp(-abs(e)), log(1 + square(e)), r / 2])\n"
    "    s = sum(reshape(u, [7, 8]), axis: -1)\n"
    "    mx = max(reshape(u, [7, 8]), axis: 1)\n"
    "    mn = mean(reshape(u, [7, 8]), axis: 2)\n"
    "    v = Dense(Concatenate([u, s, mx, mn]), 10, activation: swish)\n"
    "    w = Dropout(v, 0.25)\n"
    "    output y = Dense(w, 4, activation: softmax)\n"
    "}\n"
    "train zoo {\n"
    "    loss: CategoricalCrossentropy()\n"
    "    optimizer: RMSprop(learning_rate: 0.01)\n"
    "    batch_size: 8\n"
    "    seed: 11\n"
    "}\n";

START_TEST(operator_zoo)
{
    check_model("zoo", "zoo.kdsl", zoo_text, 0, 8, LAB_ONEHOT, 4);
}
END_TEST

static const char mse_text[] =
    "model reg {\n"
    "    input x: [6]\n"
    "    input x2: [3]\n"
    "    h = Dense(x, 12, activation: tanh)\n"
    "    k = Dense(x2, 12, activation: exponential)\n"
    "    j = log_softmax(h - k)\n"
    "    output y = Dense(Concatenate([j, Subtract([h, k]), Multiply([h, k]), Average([h, k])]), 2)\n"
    "}\n"
    "train reg {\n"
    "    loss: MeanSquaredError()\n"
    "    optimizer: SGD(learning_rate: 0.1)\n"
    "    batch_size: 10\n"
    "}\n";

START_TEST(two_inputs_mse_sgd)
{
    check_model("reg", "reg.kdsl", mse_text, 0, 10, LAB_REAL, 2);
}
END_TEST

static const char two_outputs_text[] =
    "model two_out {\n"
    "    input x: [6]\n"
    "    input x2: [3]\n"
    "    h = Dense(x, 12, activation: sigmoid)\n"
    "    k = Dense(x2, 12, activation: relu)\n"
    "    output y = Dense(Maximum([h, k]), 2, activation: log_softmax)\n"
    "    output aux = softmax(h / 2)\n"
    "}\n";

START_TEST(two_inputs_two_outputs_inference)
{
    check_model("two_out", "two_out.kdsl", two_outputs_text, 4, 4, LAB_REAL, 2);
}
END_TEST

/* ---- known values, bounds, errors ------------------------------------------------------------------ */

START_TEST(softmax_sample)
{
    built b;
    build_text(&b, "softmax", tu_src("samples/softmax.kdsl"), NULL, 4, false);
    float x[12] = {2, 1, 0.1f}, y[12] = {0};
    const float *in[1] = {x};
    float *out[1] = {y};
    char arena[4096] __attribute__((aligned(64)));
    ck_assert_int_le(arena_bytes(b.p), (int64_t)sizeof arena);
    b.J.predict(NULL, in, out, 1, arena);
    const float want[3] = {0.6590012f, 0.24243298f, 0.09856589f};
    for (int i = 0; i < 3; i++) ck_assert_msg(fabsf(y[i] - want[i]) <= 1e-7f, "y[%d] = %.9g, want %.9g", i, y[i], want[i]);
    /* batch 0 or above the maximum: nothing written */
    y[0] = -1;
    b.J.predict(NULL, in, out, 0, arena);
    b.J.predict(NULL, in, out, 5, arena);
    ck_assert(y[0] == -1);
    ck_assert_ptr_null(b.J.grad);
    ck_assert_ptr_null(b.J.train_step);
    built_free(&b);
}
END_TEST

static lp_program *front(kd_session *s, const char *text, const kd_codegen_options *opt)
{
    memset(s, 0, sizeof *s);
    s->diags.out = stderr;
    ck_assert_int_eq(kd_front_end_text(s, "t.kdsl", text, strlen(text), NULL), 0);
    kd_codegen_options o = opt ? *opt : (kd_codegen_options){0};
    o.arena = &s->arena;
    lp_program *p = kd_codegen_build(&s->arena, s->model, &o, &s->diags);
    ck_assert_ptr_nonnull(p);
    return p;
}

START_TEST(f64_rejected)
{
    kd_session s;
    kd_codegen_options o = {.f64 = true};
    lp_program *p = front(&s, bn_dropout_text, &o);
    kd_model_fns fns;
    char why[512] = "";
    ck_assert_ptr_null(kd_jit_compile(p, NULL, &fns, why, sizeof why));
    ck_assert_msg(strstr(why, "f32") != NULL, "%s", why);
    ck_assert_ptr_null(fns.predict);
    kd_session_free(&s);
}
END_TEST

START_TEST(bad_march_is_an_error)
{
    kd_session s;
    lp_program *p = front(&s, bn_dropout_text, NULL);
    kd_model_fns fns;
    char why[512] = "";
    kd_jit_options o = {.march = "no-such-cpu"};
    ck_assert_ptr_null(kd_jit_compile(p, &o, &fns, why, sizeof why));
    ck_assert_msg(strstr(why, "libgccjit") && strstr(why, "-march=no-such-cpu"), "%s", why);
    kd_session_free(&s);
}
END_TEST

/* A libgccjit error while building: a function name that is no C identifier. */
START_TEST(libgccjit_error_returns_null)
{
    kd_session s;
    lp_program *p = front(&s, bn_dropout_text, NULL);
    p->name = "bad name!";
    kd_model_fns fns;
    char why[512] = "";
    ck_assert_ptr_null(kd_jit_compile(p, NULL, &fns, why, sizeof why));
    ck_assert_msg(strstr(why, "libgccjit") != NULL, "%s", why);
    kd_session_free(&s);
}
END_TEST

/* Malformed loop IR: a buffer that is not the function's, a missing value. */
START_TEST(malformed_program_returns_null)
{
    kd_session s;
    lp_program *p = front(&s, bn_dropout_text, NULL);
    lp_func *f = p->funcs[LP_F_PREDICT];
    lp_buf *stray = kd_alloc(p->arena, sizeof *stray);
    *stray = *(lp_buf *)f->bufs.items[0];
    stray->id = 9999;
    lp_kernel *k = f->kernels.items[0];
    kd_vec_push(p->arena, &k->body, lp_store(p->arena, stray, lp_int(p->arena, 0), lp_real(p->arena, 1), LP_ASSIGN));
    kd_model_fns fns;
    char why[512] = "";
    ck_assert_ptr_null(kd_jit_compile(p, NULL, &fns, why, sizeof why));
    ck_assert_msg(strstr(why, "buffer") != NULL, "%s", why);
    k->body.len--;

    lp_stmt *bad = lp_store(p->arena, f->bufs.items[0], lp_int(p->arena, 0), NULL, LP_ASSIGN);
    kd_vec_push(p->arena, &k->body, bad);
    why[0] = 0;
    ck_assert_ptr_null(kd_jit_compile(p, NULL, &fns, why, sizeof why));
    ck_assert_msg(why[0] != 0, "no reason given");
    k->body.len--;

    /* restored: compiles again */
    kd_jit *j = kd_jit_compile(p, NULL, &fns, why, sizeof why);
    ck_assert_msg(j != NULL, "%s", why);
    kd_jit_free(j);
    kd_session_free(&s);
}
END_TEST

/* Options: -O0..-O2, an explicit -march, the FMA-contraction switch: still the same results. */
START_TEST(options)
{
    kd_session s;
    lp_program *p = front(&s, bn_dropout_text, NULL);
    kd_jit_options opts[] = {{.opt_level = 1}, {.opt_level = 2, .march = "x86-64"}, {.opt_level = 3, .fp_contract = true}};
    float ref[16 * 5];
    for (int t = 0; t < 3; t++) {
        kd_model_fns fns;
        char why[512];
        kd_jit *j = kd_jit_compile(p, &opts[t], &fns, why, sizeof why);
        ck_assert_msg(j != NULL, "%s", why);
        float *params = falloc(p->params_size);
        fns.init(params, NULL, 5);
        float x[16 * 20], y[16 * 5];
        for (int i = 0; i < 16 * 20; i++) x[i] = (float)((i * 37) % 17) / 8.0f - 1;
        const float *in[1] = {x};
        float *out[1] = {y};
        void *arena = aligned_alloc(64, (size_t)arena_bytes(p));
        fns.predict(params, in, out, 16, arena);
        if (t == 0) memcpy(ref, y, sizeof ref);
        for (int i = 0; i < 16 * 5; i++) ck_assert_msg(fabsf(y[i] - ref[i]) <= 1e-5f * fmaxf(1, fabsf(ref[i])), "option set %d", t);
        free(arena);
        free(params);
        kd_jit_free(j);
    }
    kd_session_free(&s);
}
END_TEST

static Suite *jit_suite(void)
{
    Suite *s = suite_create("jit");
    TCase *tc = tcase_create("backends agree");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, mlp_adam);
    tcase_add_test(tc, deep_mlp_sample);
    tcase_add_test(tc, cnn_sample);
    tcase_add_test(tc, fmnist_cnn_sample);
    tcase_add_test(tc, linear_regression_sample);
    tcase_add_test(tc, batchnorm_dropout_training);
    tcase_add_test(tc, conv_batchnorm_sparse_sgd);
    tcase_add_test(tc, custom_layer_matmul);
    tcase_add_test(tc, custom_layer_sample_inference);
    tcase_add_test(tc, operator_zoo);
    tcase_add_test(tc, two_inputs_mse_sgd);
    tcase_add_test(tc, two_inputs_two_outputs_inference);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("known values and errors");
    tcase_set_timeout(te, 600);
    tcase_add_test(te, softmax_sample);
    tcase_add_test(te, f64_rejected);
    tcase_add_test(te, bad_march_is_an_error);
    tcase_add_test(te, libgccjit_error_returns_null);
    tcase_add_test(te, malformed_program_returns_null);
    tcase_add_test(te, options);
    suite_add_tcase(s, te);
    return s;
}

int main(void)
{
    if (build_runtime() != 0) return 1;
    return tu_run_suite(jit_suite());
}
