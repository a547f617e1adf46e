/* test_jit.c — the libgccjit backend (codegen/emit_jit.c) against the C
 * backend: each model is built once (kd_back_end), JIT-compiled in this
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
#include "host/parallel_kernels.h"
#include "kernels.h"
#include "testutil.h"

#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
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
    tu_sh(cmd);
    free(cmd);
}

static char runtime_lib[4096];

/* The runtime kernels the JIT itself calls: meson's libkdslrt.a (position
 * independent, as meson builds static libraries; in the sanitizer pass built
 * with the sanitizers), so both backends run the same kernel code. */
static int build_runtime(void)
{
    snprintf(runtime_lib, sizeof runtime_lib, "%s/libkdslrt.a", tu_build_root());
    if (access(runtime_lib, R_OK) != 0) {
        fprintf(stderr, "%s: not built\n", runtime_lib);
        return 1;
    }
    return 0;
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
    kdh_model_fns J, C;
    void *so;
    double jit_seconds;
} built;

static void *sym(built *b, const char *fn)
{
    char name[256];
    snprintf(name, sizeof name, "%s_%s", b->p->name, fn);
    return dlsym(b->so, name);
}

/* disjoint: kd_codegen_options.disjoint_arena, as kdslc train builds on several threads */
static void build_arena(built *b, const char *tag, const char *path, const char *text, int batch, bool want_c,
                        bool disjoint)
{
    memset(b, 0, sizeof *b);
    b->s.diags.out = stderr;
    int rc = text ? kd_front_end_text(&b->s, path, text, strlen(text), NULL) : kd_front_end(&b->s, path, NULL);
    ck_assert_int_eq(rc, 0);
    kd_codegen_options o = {.batch = batch, .disjoint_arena = disjoint};
    b->p = kd_back_end(&b->s, &o);
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

static void build_text(built *b, const char *tag, const char *path, const char *text, int batch, bool want_c)
{
    build_arena(b, tag, path, text, batch, want_c, false);
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
        if (getenv("KDSL_JIT_TEST_VERBOSE"))
            fprintf(stderr, "  %s[%lld]: jit %.9g (%08x), C %.9g (%08x)\n", what, (long long)i, a, *(const uint32_t *)(const void *)&jit[i], b, *(const uint32_t *)(const void *)&c[i]);
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
    bool nonzero = false;   /* not a vacuous agreement */
    for (int i = 0; i < p->noutputs; i++)
        for (int64_t k = 0; k < p->outputs[i].elems * batches[1]; k++) nonzero |= outj[i][k] != 0;
    ck_assert_msg(nonzero, "%s: every output is 0", tag);

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
        float *before = falloc(np);
        memcpy(before, pj, (size_t)np * sizeof *pj);
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
        int64_t moved = 0;
        for (int64_t i = 0; i < np; i++) moved += pj[i] != before[i];
        ck_assert_msg(moved > 0, "%s: the train steps changed no parameter", tag);
        free(before);
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

/* ---- threads: the JIT with the host pool at 2 and 3 threads, bit for bit against 1 thread ----------- */

static void bits_equal(const char *tag, const char *what, int threads, const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(memcmp(&a[i], &b[i], sizeof(float)) == 0, "%s, %d threads: %s[%lld] = %.9g, 1 thread %.9g", tag,
                      threads, what, (long long)i, a[i], b[i]);
}

/* init, then `steps` train steps and a predict (full batch and `batch`) from
 * the same state at 1 thread and at 2 and 3: every value identical, and the
 * pool did split jobs. As kdslc train runs them, one thread runs b1's
 * program (buffers sharing the arena's bytes), more threads bn's (the
 * disjoint arena), so the check covers both plans as well. */
static void check_threads_built(const built *b1, const built *bn, const char *tag, int batch, int steps)
{
    const lp_program *p = b1->p;
    ck_assert_ptr_nonnull(b1->J.train_step);
    ck_assert_ptr_nonnull(bn->J.train_step);
    ck_assert_int_eq(bn->p->params_size, p->params_size);
    ck_assert_int_eq(bn->p->opt_size, p->opt_size);
    int mb = p->max_batch;
    int64_t np = p->params_size, no = p->opt_size, ab = arena_bytes(bn->p) > arena_bytes(p) ? arena_bytes(bn->p) : arena_bytes(p);
    int64_t ie = p->inputs[0].elems, le = p->labels[0].elems, oe = p->outputs[0].elems;
    float *p0 = falloc(np), *o0 = falloc(no), *in = falloc(ie * mb), *lab = falloc(le * mb * (steps + 1));
    rng_state = 0x1234567ULL + (uint64_t)batch;
    b1->J.init(p0, o0, 77);
    for (int64_t k = 0; k < ie * mb; k++) in[k] = (float)urand();
    for (int s = 0; s <= steps; s++) fill_labels(lab + (size_t)s * le * mb, mb, le, LAB_ONEHOT, (int)le);
    float *pr[4], *orr[4], *out[4], *pred[4], loss[4][8];
    for (int t = 1; t <= 3; t++) {
        const built *b = t == 1 ? b1 : bn;
        ck_assert_int_eq(kdh_pool_set_threads(t), t);
        unsigned long jobs = kdh_pool_jobs();
        pr[t] = falloc(np), orr[t] = falloc(no), out[t] = falloc(oe * mb), pred[t] = falloc(oe * mb);
        memcpy(pr[t], p0, (size_t)np * sizeof(float));
        memcpy(orr[t], o0, (size_t)no * sizeof(float));
        void *ar = aligned_alloc(64, (size_t)ab);
        ck_assert_ptr_nonnull(ar);
        const float *ins[1] = {in};
        for (int s = 0; s < steps; s++) {
            int nb = s == steps - 1 ? batch : mb; /* the last step at the odd batch */
            loss[t][s] = b->J.train_step(pr[t], orr[t], ins, lab + (size_t)s * le * mb, nb, (unsigned long long)s + 1,
                                        1e-3f, ar, out[t]);
            ck_assert(isfinite(loss[t][s]));
        }
        b->J.predict(pr[t], ins, &pred[t], batch, ar);
        free(ar);
        if (t > 1) {
            ck_assert_msg(kdh_pool_jobs() > jobs, "%s: no job was split across %d threads", tag, t);
            bits_equal(tag, "train_step loss", t, loss[t], loss[1], steps);
            bits_equal(tag, "params", t, pr[t], pr[1], np);
            bits_equal(tag, "opt_state", t, orr[t], orr[1], no);
            bits_equal(tag, "outputs0", t, out[t], out[1], oe * batch);
            bits_equal(tag, "predict", t, pred[t], pred[1], oe * batch);
        }
    }
    kdh_pool_set_threads(1);
    for (int t = 1; t <= 3; t++) free(pr[t]), free(orr[t]), free(out[t]), free(pred[t]);
    free(p0), free(o0), free(in), free(lab);
}

/* The JIT builds of the sample (shared and disjoint arena), checked at its
 * full batch and at an odd one. disjoint: whether the disjoint plan is
 * used (its arena under arena_plan.c's cap) and so differs. */
static void check_threads(const char *tag, const char *path, int odd_batch, int steps, bool disjoint)
{
    built b, bd;
    build_text(&b, tag, path, NULL, 0, false);
    build_arena(&bd, tag, path, NULL, 0, false, true);
    if (disjoint) ck_assert_int_gt(arena_bytes(bd.p), arena_bytes(b.p));
    else ck_assert_int_eq(arena_bytes(bd.p), arena_bytes(b.p));
    char odd_tag[256];
    snprintf(odd_tag, sizeof odd_tag, "%s, batch %d", tag, odd_batch);
    check_threads_built(&b, &bd, tag, b.p->max_batch, steps);
    check_threads_built(&b, &bd, odd_tag, odd_batch, steps);
    built_free(&bd);
    built_free(&b);
}

START_TEST(threads_mlp)
{
    check_threads("fmnist_mlp threads", tu_src("samples/fmnist_mlp.kdsl"), 37, 3, true);
}
END_TEST

START_TEST(threads_cnn)
{
    /* 21.6 MB disjoint: above the cap, the shared plan */
    check_threads("fmnist_cnn threads", tu_src("samples/fmnist_cnn.kdsl"), 21, 2, false);
}
END_TEST

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

/* Every activation of runtime/activations.h, fused into GEMM / conv epilogues
 * (activation:) and not (tensor functions with arguments): the JIT (whose
 * loops build log1p, expm1 and erf from GCC builtins) against the C build. */
static const char acts_text[] =
    "model acts {\n"
    "    input x: [6]\n"
    "    input img: [5, 5, 2]\n"
    "    h = Dense(x, 8, activation: elu)\n"
    "    h = Dense(h, 8, activation: selu) + Dense(h, 8, activation: gelu)\n"
    "    h = Dense(h, 8, activation: softplus) - Dense(h, 8, activation: softsign)\n"
    "    h = Dense(h, 8, activation: silu) + Dense(h, 8, activation: mish)\n"
    "    h = Dense(h, 8, activation: hard_sigmoid) + Dense(h, 8, activation: relu6) * 0.5\n"
    "    h = Dense(h, 8, activation: leaky_relu)\n"
    "    g = gelu(Dense(h, 8), approximate: true)\n"
    "    e = elu(g, alpha: 0.5) + leaky_relu(g, negative_slope: 0.3) + selu(g) * softsign(g) + mish(g)\n"
    "    e = e + relu6(g * 4) + hard_sigmoid(g * 3) + softplus(g) + swish(g) + gelu(g)\n"
    "    v = Conv2D(img, 3, 3, activation: gelu)\n"
    "    w = Conv2D(v, 2, 2, activation: softplus)\n"
    "    output y = Dense(concat([e, Flatten(w)], axis: -1), 4, activation: softmax)\n"
    "}\n"
    "train acts {\n"
    "    loss: CategoricalCrossentropy()\n"
    "    optimizer: Adam(learning_rate: 0.01)\n"
    "    batch_size: 6\n"
    "}\n";

START_TEST(activations)
{
    check_model("acts", "acts.kdsl", acts_text, 0, 6, LAB_ONEHOT, 4);
}
END_TEST

/* 21 Dense layers: every function but init has more kernels than the JIT
 * builds as one function, so it is built as parts (emit_jit.c
 * build_function), with small buffers on the stack shared between parts
 * (the batch-mean of a custom layer's state, the loss). */
static const char deep_text[] =
    "layer Centre() {\n"
    "    input x: [n]\n"
    "    state running: [n]\n"
    "    if training {\n"
    "        m = mean(x, axis: 0)\n"
    "        update running = running * 0.9 + m * 0.1\n"
    "        output x - m\n"
    "    } else {\n"
    "        output x - running\n"
    "    }\n"
    "}\n"
    "model deep {\n"
    "    input x: [6]\n"
    "    h = Dense(x, 8, activation: tanh)\n"
    "    repeat 10 {\n"
    "        h = Centre(Dense(h, 8, activation: tanh)) + h\n"
    "        h = Dense(h, 8, activation: relu) * 0.5 + h * 0.5\n"
    "    }\n"
    "    output y = Dense(h, 3, activation: softmax)\n"
    "}\n"
    "train deep {\n"
    "    loss: CategoricalCrossentropy()\n"
    "    optimizer: Adam(learning_rate: 0.01)\n"
    "    batch_size: 8\n"
    "}\n";

START_TEST(deep_model_in_parts)
{
    check_model("deep", "deep.kdsl", deep_text, 0, 8, LAB_ONEHOT, 3);
}
END_TEST

/* Twelve adjacent weights of one shape under SGD with Nesterov momentum:
 * apply_gradients merges their 36 update statements past the cap other
 * functions have (lower_fuse.c MAX_MERGED_STATEMENTS), since it has no
 * arena and each weight's lr * g must stay a local of its loop. */
static const char same_shape_text[] =
    "layer Mat() {\n"
    "    input x: [n]\n"
    "    weight w: [n, n]\n"
    "    output tanh(x @ w)\n"
    "}\n"
    "model same {\n"
    "    input x: [16]\n"
    "    h = x\n"
    "    repeat 12 { h = Mat(h) }\n"
    "    output h\n"
    "}\n"
    "train same {\n"
    "    loss: MeanSquaredError()\n"
    "    optimizer: SGD(learning_rate: 0.01, momentum: 0.9, nesterov: true)\n"
    "    batch_size: 4\n"
    "}\n";

START_TEST(apply_merges_many_same_shape_updates)
{
    check_model("same", "same.kdsl", same_shape_text, 0, 4, LAB_REAL, 16);
}
END_TEST

/* What the toolbox asks of the backends beyond the ops they already run,
 * through both, which must agree bit for bit (run_both): a small MLP per
 * train block. Every optimizer and loss runs through the backends in the
 * differential tester's random programs (tests/difftest/gen.c) and is
 * checked against Keras' formulas in tests/test_autodiff.c. */
static const struct {
    const char *train, *head;
    label_kind labels;
} toolbox_cases[] = {
    /* Nadam's scalar slot, clipnorm's reduction in apply_gradients */
    {"loss: Huber(delta: 0.5)\n    optimizer: Nadam(learning_rate: 0.01, clipnorm: 0.5)", "", LAB_REAL},
    /* Adagrad's slot that starts at 0.1, weight decay */
    {"loss: LogCosh()\n    optimizer: Adagrad(learning_rate: 0.05, weight_decay: 0.01)", "", LAB_ONEHOT},
    /* amsgrad's third slot, the global norm over every gradient, label smoothing */
    {"loss: CategoricalCrossentropy(from_logits: true, label_smoothing: 0.1)\n"
     "    optimizer: AdamW(learning_rate: 0.01, amsgrad: true, global_clipnorm: 1.0)", "", LAB_ONEHOT},
    /* Hinge's test of the whole batch's labels */
    {"loss: Hinge()\n    optimizer: SGD(learning_rate: 0.05, weight_decay: 0.01)", "", LAB_ONEHOT},
};

START_TEST(toolbox_optimizers_losses)
{
    char text[1024];
    snprintf(text, sizeof text,
             "model tb {\n    input x: [5]\n    Dense(6, activation: tanh)\n    output y = Dense(3%s)\n}\n"
             "train tb {\n    %s\n    batch_size: 6\n}\n",
             toolbox_cases[_i].head, toolbox_cases[_i].train);
    char tag[32];
    snprintf(tag, sizeof tag, "toolbox%d", _i);
    check_model(tag, "tb.kdsl", text, 0, 6, toolbox_cases[_i].labels, 3);
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

/* ResNet50 under a new head (inference only: no train block), batch 1. */
START_TEST(resnet50_head_predict)
{
    check_model("resnet50_head", tu_src("samples/resnet50.kdsl"), NULL, 1, 1, LAB_ONEHOT, 100);
}
END_TEST

/* Every loop-IR construct, in a program built by hand (the lowering does not
 * make them all): each op, int arithmetic, comparisons and logic, select with a
 * guarded load, int32 and stack-local buffers, store = += max=, let/set with
 * += and max=, if on a condition and on a buffer, a kernel call with an
 * offset, -inf and NaN. Column c of the output holds construct c. */
enum { HAND_COLS = 40 };

static lp_program *hand_program(kd_arena *a)
{
    lp_program *p = kd_alloc(a, sizeof *p);
    p->arena = a;
    p->name = "hand";
    p->upper = "HAND";
    p->source = "hand.kdsl";
    p->real = LP_F32;
    p->max_batch = 4;
    p->ninputs = p->noutputs = 1;
    p->inputs[0] = (lp_io){.name = "x", .rank = 1, .shape = {8}, .elems = 8};
    p->outputs[0] = (lp_io){.name = "y", .rank = 1, .shape = {HAND_COLS * 8}, .elems = HAND_COLS * 8};
    p->params_size = 8;

    /* init: w = uniform(-1, 1) then w[0..2) = 0.5 (init_uniform, init_fill with an offset) */
    lp_func *fi = lp_func_new(a, LP_F_INIT);
    p->funcs[LP_F_INIT] = fi;
    lp_buf *pw = lp_new_buf(a, fi, LP_PARAMS, "p_w");
    pw->elems = 8;
    lp_kernel *ki = lp_new_kernel(a, fi, "w", (kd_loc){0}, NULL);
    lp_call *cu = kd_alloc(a, sizeof *cu);
    cu->k = LP_K_INIT_UNIFORM;
    cu->args[0].buf = pw;
    cu->args[1].e = lp_int(a, 8);
    cu->args[2].e = lp_param_ref(a, LP_P_SEED);
    cu->args[3].e = lp_int(a, 3);
    cu->args[4].e = lp_real(a, -1);
    cu->args[5].e = lp_real(a, 1);
    kd_vec_push(a, &ki->body, lp_call_stmt(a, cu));
    lp_call *cn = kd_alloc(a, sizeof *cn);
    cn->k = LP_K_INIT_NORMAL;
    cn->args[0].buf = pw;
    cn->args[0].off = lp_int(a, 6);
    cn->args[1].e = lp_int(a, 2);
    cn->args[2].e = lp_param_ref(a, LP_P_SEED);
    cn->args[3].e = lp_int(a, 4);
    cn->args[4].e = lp_real(a, 0.25);
    cn->args[5].e = lp_real(a, 0.5);
    cn->args[6].e = lp_int(a, 1);
    kd_vec_push(a, &ki->body, lp_call_stmt(a, cn));
    lp_call *cf = kd_alloc(a, sizeof *cf);
    cf->k = LP_K_INIT_FILL;
    cf->args[0].buf = pw;
    cf->args[0].off = lp_int(a, 0);
    cf->args[1].e = lp_int(a, 2);
    cf->args[2].e = lp_real(a, 0.1);
    kd_vec_push(a, &ki->body, lp_call_stmt(a, cf));

    lp_func *f = lp_func_new(a, LP_F_PREDICT);
    p->funcs[LP_F_PREDICT] = f;
    lp_buf *in = lp_new_buf(a, f, LP_INPUT, "in0");
    in->elems = 8, in->batched = true, in->is_const = true;
    lp_buf *out = lp_new_buf(a, f, LP_OUTPUT, "out0");
    out->elems = HAND_COLS * 8, out->batched = true;
    lp_buf *w = lp_new_buf(a, f, LP_PARAMS, "p_w");
    w->elems = 8, w->is_const = true;
    lp_buf *loc = lp_new_buf(a, f, LP_ARENA, "loc");
    loc->elems = 8, loc->local = true;
    lp_buf *t = lp_new_buf(a, f, LP_ARENA, "t");
    t->elems = 8, t->batched = true;
    lp_buf *sm = lp_new_buf(a, f, LP_ARENA, "sm");
    sm->elems = 8, sm->batched = true;
    lp_buf *ix = lp_new_buf(a, f, LP_ARENA, "ix");
    ix->elems = 8, ix->batched = true, ix->elem = LP_ELEM_I32;

    lp_var *b = lp_new_var(a, f, LP_INT, "b"), *j = lp_new_var(a, f, LP_INT, "j"), *kk = lp_new_var(a, f, LP_INT, "k");
    lp_var *j2 = lp_new_var(a, f, LP_INT, "j"), *x = lp_new_var(a, f, LP_REAL, "x"), *y = lp_new_var(a, f, LP_REAL, "y");
    lp_var *m = lp_new_var(a, f, LP_REAL, "m"), *sum = lp_new_var(a, f, LP_REAL, "s");
#define I(v) lp_int(a, v)
#define R(v) lp_real(a, v)
#define V(v) lp_var_ref(a, v)
#define U(op, e) lp_un(a, op, e)
#define B(op, e1, e2) lp_bin(a, op, e1, e2)
    lp_expr *row = B(LP_MUL, V(b), I(8));

    /* kernel 0: t = in0 * 3 (batched), ix = j * b - 3 (int32), then softmax(t) -> sm + 8 * 0 via offset */
    lp_kernel *k0 = lp_new_kernel(a, f, "prepare", (kd_loc){.line = 1}, NULL);
    lp_stmt *fb = lp_for(a, b, lp_param_ref(a, LP_P_BATCH), true);
    lp_stmt *fj = lp_for(a, j, I(8), false);
    kd_vec_push(a, &fj->body, lp_store(a, t, B(LP_ADD, row, V(j)), B(LP_MUL, lp_load(a, in, B(LP_ADD, row, V(j))), R(3)), LP_ASSIGN));
    kd_vec_push(a, &fj->body, lp_store(a, ix, B(LP_ADD, row, V(j)), B(LP_SUB, B(LP_MUL, V(j), V(b)), I(3)), LP_ASSIGN));
    kd_vec_push(a, &fb->body, fj);
    kd_vec_push(a, &k0->body, fb);
    lp_call *cs = kd_alloc(a, sizeof *cs);
    cs->k = LP_K_SOFTMAX;
    cs->args[0].e = B(LP_SUB, lp_param_ref(a, LP_P_BATCH), I(1));
    cs->args[1].e = I(8);
    cs->args[2].buf = t;
    cs->args[2].off = I(8);
    cs->args[3].buf = sm;
    cs->args[3].off = I(8);
    kd_vec_push(a, &k0->body, lp_call_stmt(a, cs));
    lp_stmt *f0 = lp_for(a, j2, I(8), false);   /* row 0 of sm by hand: 0.125 */
    kd_vec_push(a, &f0->body, lp_store(a, sm, V(j2), R(0.125), LP_ASSIGN));
    kd_vec_push(a, &k0->body, f0);

    /* kernel 1: the columns */
    lp_kernel *k1 = lp_new_kernel(a, f, "columns", (kd_loc){.line = 2}, NULL);
    lp_stmt *gb = lp_for(a, b, lp_param_ref(a, LP_P_BATCH), true);
    lp_stmt *gj = lp_for(a, j, I(8), false);
    kd_vec *body = &gj->body;
    kd_vec_push(a, body, lp_let(a, x, lp_load(a, in, B(LP_ADD, row, V(j)))));
    kd_vec_push(a, body, lp_let(a, y, lp_load(a, w, V(j))));
    kd_vec_push(a, body, lp_store(a, loc, V(j), B(LP_MUL, V(x), R(2)), LP_ASSIGN));
    lp_expr *ax = U(LP_ABS, V(x));
    lp_expr *col[HAND_COLS] = {
        U(LP_NEG, V(x)), U(LP_EXP, V(x)), U(LP_LOG, B(LP_ADD, ax, R(0.5))), U(LP_SQRT, ax),
        U(LP_RSQRT, B(LP_ADD, ax, R(0.1))), U(LP_TANH, V(x)), U(LP_SIGMOID, V(x)), ax,
        U(LP_SIGN, V(x)), U(LP_RELU, V(x)), U(LP_SQUARE, V(x)), B(LP_ADD, V(x), V(y)),
        B(LP_SUB, V(x), V(y)), B(LP_MUL, V(x), V(y)), B(LP_DIV, V(x), V(y)), B(LP_MIN, V(x), V(y)),
        B(LP_MAX, V(x), V(y)),
        U(LP_TO_REAL, B(LP_GT, V(x), V(y))), U(LP_TO_REAL, B(LP_GE, V(x), R(0))), U(LP_TO_REAL, B(LP_LT, V(x), V(y))),
        U(LP_TO_REAL, B(LP_LE, V(x), R(0))), U(LP_TO_REAL, B(LP_EQ, V(j), I(3))), U(LP_TO_REAL, B(LP_NE, V(j), V(b))),
        U(LP_TO_REAL, B(LP_AND, B(LP_GT, V(x), R(0)), B(LP_LT, V(j), I(5)))),
        U(LP_TO_REAL, B(LP_OR, B(LP_LT, V(x), R(-0.5)), B(LP_EQ, V(j), I(7)))),
        U(LP_TO_REAL, U(LP_NOT, B(LP_GT, V(x), R(0)))),
        U(LP_TO_REAL, B(LP_ADD, B(LP_SUB, B(LP_MIN, B(LP_MUL, V(j), I(3)), I(10)), B(LP_MAX, V(b), I(2))),
                        B(LP_SUB, B(LP_DIV, B(LP_SUB, V(j), I(5)), I(3)), B(LP_MUL, V(b), V(j))))),
        /* a load guarded by the select: t[row + j - 1] only when j >= 1 */
        lp_select(a, B(LP_GE, V(j), I(1)), lp_load(a, t, B(LP_SUB, B(LP_ADD, row, V(j)), I(1))), R(-7)),
        U(LP_TO_REAL, lp_load(a, ix, B(LP_ADD, row, V(j)))),
        NULL,   /* 29: loc, after the loop */
        NULL, NULL, NULL, NULL, NULL, NULL,
        lp_load(a, sm, B(LP_ADD, row, V(j))),
        lp_select(a, B(LP_GT, V(x), R(0.9)), R(-INFINITY), R(1e30)),
        U(LP_RELU, U(LP_LOG, V(x))),   /* NaN for x < 0, relu keeps 0 */
        U(LP_LOG, V(x)),               /* NaN itself */
    };
#define OUT(c) B(LP_ADD, B(LP_MUL, V(b), I(HAND_COLS * 8)), B(LP_ADD, I((c) * 8), V(j)))
    for (int c = 0; c < HAND_COLS; c++)
        if (col[c]) kd_vec_push(a, body, lp_store(a, out, OUT(c), col[c], LP_ASSIGN));
    /* 30: store max= over k;  31: set max=;  32: set +=;  33: store += */
    kd_vec_push(a, body, lp_store(a, out, OUT(30), R(-INFINITY), LP_ASSIGN));
    kd_vec_push(a, body, lp_let(a, m, R(-INFINITY)));
    kd_vec_push(a, body, lp_let(a, sum, R(0)));
    lp_stmt *fk = lp_for(a, kk, I(8), false);
    lp_expr *xk = B(LP_MUL, lp_load(a, in, B(LP_ADD, row, V(kk))), V(y));
    kd_vec_push(a, &fk->body, lp_store(a, out, OUT(30), U(LP_LOG, xk), LP_ACC_MAX));   /* NaN never wins */
    kd_vec_push(a, &fk->body, lp_set(a, m, xk, LP_ACC_MAX));
    kd_vec_push(a, &fk->body, lp_set(a, sum, B(LP_MUL, xk, lp_load(a, w, V(kk))), LP_ACC_ADD));
    kd_vec_push(a, body, fk);
    kd_vec_push(a, body, lp_store(a, out, OUT(31), V(m), LP_ASSIGN));
    kd_vec_push(a, body, lp_store(a, out, OUT(32), V(sum), LP_ASSIGN));
    kd_vec_push(a, body, lp_store(a, out, OUT(33), V(x), LP_ASSIGN));
    kd_vec_push(a, body, lp_store(a, out, OUT(33), B(LP_MUL, V(y), R(2)), LP_ACC_ADD));
    /* 34: if (j / 2 * 2 == j) = 5 else 0;  35: if (outputs) = 3 */
    kd_vec_push(a, body, lp_store(a, out, OUT(34), R(0), LP_ASSIGN));
    lp_stmt *if1 = lp_if(a, B(LP_EQ, B(LP_MUL, B(LP_DIV, V(j), I(2)), I(2)), V(j)), NULL);
    kd_vec_push(a, &if1->body, lp_store(a, out, OUT(34), R(5), LP_ASSIGN));
    kd_vec_push(a, body, if1);
    lp_stmt *if2 = lp_if(a, NULL, out);
    kd_vec_push(a, &if2->body, lp_store(a, out, OUT(35), R(3), LP_ASSIGN));
    kd_vec_push(a, body, if2);
    kd_vec_push(a, &gb->body, gj);
    /* 29: the stack-local buffer, read backwards after the row's loop */
    lp_stmt *gj2 = lp_for(a, j, I(8), false);
    kd_vec_push(a, &gj2->body, lp_store(a, out, OUT(29), lp_load(a, loc, B(LP_SUB, I(7), V(j))), LP_ASSIGN));
    kd_vec_push(a, &gb->body, gj2);
    kd_vec_push(a, &k1->body, gb);
#undef OUT
#undef I
#undef R
#undef V
#undef U
#undef B
    kd_arena_plan(p, fi);
    kd_arena_plan(p, f);
    return p;
}

START_TEST(every_construct)
{
    kd_arena ar = {0};
    lp_program *p = hand_program(&ar);
    built b;
    memset(&b, 0, sizeof b);
    b.p = p;
    char why[1024];
    b.jit = kd_jit_compile(p, NULL, &b.J, why, sizeof why);
    ck_assert_msg(b.jit != NULL, "%s", why);

    const char *dir = tu_tmpdir("hand");
    char cpath[4200], hpath[4200];
    snprintf(cpath, sizeof cpath, "%s/hand.c", dir);
    snprintf(hpath, sizeof hpath, "%s/hand.h", dir);
    FILE *cf = fopen(cpath, "w"), *hf = fopen(hpath, "w");
    ck_assert(cf && hf);
    kd_diags d = {.out = stderr};
    ck_assert_int_eq(kd_emit_c(p, NULL, cf, hf, &d), 0);
    fclose(cf);
    fclose(hf);
    sh(strf("cd %s && cc -std=c99 -Wall -Wextra -O2 -shared -fPIC -I%s -o hand.so hand.c %s -lm", dir, tu_src("runtime"),
            runtime_lib));
    char so[4200];
    snprintf(so, sizeof so, "%s/hand.so", dir);
    b.so = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(b.so != NULL, "dlopen: %s", dlerror());
    void *fp = sym(&b, "init");
    memcpy(&b.C.init, &fp, sizeof fp);
    fp = sym(&b, "predict");
    memcpy(&b.C.predict, &fp, sizeof fp);
    ck_assert(b.C.init && b.C.predict);

    float wj[8], wc[8];
    b.J.init(wj, NULL, 99);
    b.C.init(wc, NULL, 99);
    stats st = {0};
    compare(&st, "hand init", wj, wc, 8);
    ck_assert(wj[0] == 0.1f && wj[1] == 0.1f && wj[2] != wj[3]);
    /* the runtime's initialisers, called as hand_program's init calls them */
    float wr[8];
    kdk_sinit_uniform(wr, 8, 99, 3, -1, 1);
    kdk_sinit_normal(wr + 6, 2, 99, 4, 0.25, 0.5, 1);
    kdk_sinit_fill(wr, 2, 0.1);
    ck_assert_int_eq(memcmp(wj, wr, sizeof wr), 0);
    float x[4 * 8];
    rng_state = 12345;
    for (int i = 0; i < 4 * 8; i++) x[i] = (float)(urand() * 2 - 1);
    x[5] = 0, x[9] = -0.0f, x[12] = wj[4];   /* sign(0), x == y */
    static float yj[4 * HAND_COLS * 8], yc[4 * HAND_COLS * 8];
    const float *in[1] = {x};
    float *oj[1] = {yj}, *oc[1] = {yc};
    char *arena = aligned_alloc(64, 4096);
    for (int batch = 4; batch >= 2; batch -= 2) {
        memset(yj, 0, sizeof yj);
        memset(yc, 0, sizeof yc);
        b.J.predict(wj, in, oj, batch, arena);
        b.C.predict(wc, in, oc, batch, arena);
        compare(&st, "hand predict", yj, yc, (int64_t)batch * HAND_COLS * 8);
    }
    ck_assert_int_eq(st.differ, 0);
    /* a few by hand (the last run: batch 2) */
    for (int r = 0; r < 2; r++)
        for (int jj = 0; jj < 8; jj++) {
            const float *o = yj + r * HAND_COLS * 8;
            float xv = x[r * 8 + jj];
            ck_assert(o[0 * 8 + jj] == -xv);
            ck_assert(o[21 * 8 + jj] == (jj == 3));
            ck_assert(o[27 * 8 + jj] == (jj >= 1 ? x[r * 8 + jj - 1] * 3 : -7));
            ck_assert(o[28 * 8 + jj] == (float)(jj * r - 3));
            ck_assert(o[29 * 8 + jj] == x[r * 8 + 7 - jj] * 2);
            ck_assert(o[34 * 8 + jj] == (jj % 2 == 0 ? 5 : 0));
            ck_assert(o[35 * 8 + jj] == 3);
            ck_assert(o[38 * 8 + jj] == 0);
            ck_assert(isnan(o[39 * 8 + jj]) == (xv < 0));
        }
    fprintf(stderr, "jit-vs-c %-18s %8ld values, %6ld not bit-identical\n", "hand (every construct)", st.n, st.differ);
    free(arena);
    kd_jit_free(b.jit);
    dlclose(b.so);
    kd_arena_free(&ar);
}
END_TEST

/* ---- known values, bounds, errors ------------------------------------------------------------------ */

/* The JIT builds kdk_dropout_bits inline (emit_jit.c); it must draw
 * runtime/random.h's bits for any seed, step, salt and index. */
START_TEST(dropout_bits_inline)
{
    enum { N = 1 << 20 };
    uint64_t *seed = malloc(N * sizeof *seed), *step = malloc(N * sizeof *step), *index = malloc(N * sizeof *index);
    uint32_t *salt = malloc(N * sizeof *salt), *out = malloc(N * sizeof *out);
    ck_assert(seed && step && index && salt && out);
    uint64_t r = 1;
    for (long i = 0; i < N; i++) {
        /* random words, and runs of consecutive indices as a dropout loop has */
        seed[i] = kdk_mix64(r++);
        step[i] = i % 3 ? kdk_mix64(r++) : (uint64_t)(i % 1000);
        salt[i] = (uint32_t)kdk_mix64(r++);
        index[i] = i % 2 ? kdk_mix64(r++) : (uint64_t)i;
    }
    seed[0] = step[0] = index[0] = 0, salt[0] = 0;
    seed[1] = step[1] = index[1] = UINT64_MAX, salt[1] = UINT32_MAX;
    ck_assert_int_eq(kd_jit_dropout_bits(N, seed, step, salt, index, out), 0);
    for (long i = 0; i < N; i++)
        ck_assert_msg(out[i] == kdk_dropout_bits(seed[i], step[i], salt[i], index[i]), "input %ld: jit %u, runtime %u", i,
                      out[i], kdk_dropout_bits(seed[i], step[i], salt[i], index[i]));
    ck_assert_uint_eq(out[0], kdk_dropout_bits(0, 0, 0, 0));
    free(seed), free(step), free(index), free(salt), free(out);
}
END_TEST

/* sigmoid and tanh in the JIT's (vectorised) element-wise loops are
 * runtime/fastmath.h's functions, bit for bit (jit_fastmath.c builds them
 * operation by operation), over 2^20 inputs: every float exponent from
 * tiny to overflow, both signs, the polynomial/exponential boundary of
 * tanh, and NaN and the infinities. */
START_TEST(fastmath_inline)
{
    enum { W = 1024, N = W * W };
    built b;
    build_text(&b, "fastmath", "fastmath.kdsl",
               "model fm {\n    input x: [1024]\n    output s = sigmoid(x)\n    output t = tanh(x)\n}\n", W, false);
    float *x = malloc(N * sizeof *x), *sy = malloc(N * sizeof *sy), *ty = malloc(N * sizeof *ty);
    void *arena = malloc((size_t)arena_bytes(b.p) + 64);
    ck_assert(x && sy && ty && arena);
    uint64_t r = 7;
    for (long i = 0; i < N; i++) {
        uint32_t bits = (uint32_t)kdk_mix64(r++);
        memcpy(&x[i], &bits, sizeof bits);
        if (i % 4 == 1) x[i] = (float)((double)bits / 4294967296.0 * 240 - 120);    /* [-120, 120] */
        if (i % 4 == 2) x[i] = (float)((double)bits / 4294967296.0 * 2.5 - 1.25);   /* around 0.625 */
    }
    x[0] = NAN, x[1] = INFINITY, x[2] = -INFINITY, x[3] = 0.625f, x[4] = -0.625f, x[5] = 88.0f, x[6] = -87.33654f;
    const float *in[1] = {x};
    float *out[2] = {sy, ty};
    b.J.predict(NULL, in, out, W, arena);
    for (long i = 0; i < N; i++) {
        float s = kdk_sigmoidf(x[i]), t = kdk_tanhf(x[i]);
        ck_assert_msg(!memcmp(&sy[i], &s, sizeof s) || (isnan(s) && isnan(sy[i])), "sigmoid(%a): jit %a, runtime %a", x[i], sy[i], s);
        ck_assert_msg(!memcmp(&ty[i], &t, sizeof t) || (isnan(t) && isnan(ty[i])), "tanh(%a): jit %a, runtime %a", x[i], ty[i], t);
    }
    ck_assert(isnan(sy[0]) && isnan(ty[0]));
    ck_assert(sy[1] == 1 && ty[1] == 1 && ty[2] == -1 && sy[2] >= 0 && sy[2] < 1e-38f);
    free(x), free(sy), free(ty), free(arena);
    built_free(&b);
}
END_TEST

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
    lp_program *p = kd_back_end(s, &o);
    ck_assert_ptr_nonnull(p);
    return p;
}

START_TEST(f64_rejected)
{
    kd_session s;
    kd_codegen_options o = {.f64 = true};
    lp_program *p = front(&s, bn_dropout_text, &o);
    kdh_model_fns fns;
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
    kdh_model_fns fns;
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
    kdh_model_fns fns;
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
    kdh_model_fns fns;
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
        kdh_model_fns fns;
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
    tcase_add_test(tc, activations);
    tcase_add_test(tc, deep_model_in_parts);
    tcase_add_test(tc, apply_merges_many_same_shape_updates);
    tcase_add_test(tc, two_inputs_mse_sgd);
    tcase_add_test(tc, two_inputs_two_outputs_inference);
    tcase_add_test(tc, resnet50_head_predict);
    suite_add_tcase(s, tc);
    TCase *tb = tcase_create("toolbox");
    tcase_set_timeout(tb, 300);
    tcase_add_loop_test(tb, toolbox_optimizers_losses, 0, (int)(sizeof toolbox_cases / sizeof toolbox_cases[0]));
    suite_add_tcase(s, tb);
    TCase *th = tcase_create("every construct");
    tcase_set_timeout(th, 600);
    tcase_add_test(th, every_construct);
    suite_add_tcase(s, th);
    TCase *tt = tcase_create("threads");
    tcase_set_timeout(tt, 600);
    tcase_add_test(tt, threads_mlp);
    tcase_add_test(tt, threads_cnn);
    suite_add_tcase(s, tt);
    TCase *te = tcase_create("known values and errors");
    tcase_set_timeout(te, 600);
    tcase_add_test(te, softmax_sample);
    tcase_add_test(te, dropout_bits_inline);
    tcase_add_test(te, fastmath_inline);
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
