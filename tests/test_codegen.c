/* test_codegen.c — the code generator: graph passes, lowering, arena plans,
 * and the C it writes, compiled with gcc and clang under -std=c99 -Wall
 * -Wextra -Wpedantic -Werror, linked with the runtime kernels and run by
 * tests/codegen/driver.c against the reference interpreter (compiler/interp.h):
 * predict in f32, gradients in f64 (and by central differences), the train
 * step and apply_gradients; whole models against PyTorch's fixtures
 * (tests/fixtures/torch_*). Also: the Cortex-M4 build of an --inference-only
 * model, byte-identical output across runs, the MLP's arena figure. */
#include "codegen.h"
#include "driver.h"
#include "host/tensor_file.h"
#include "interp.h"
#include "kernels.h"
#include "passes.h"
#include "testutil.h"
#include "train_graph.h"

#include <math.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <sys/stat.h>

/* ---- helpers ------------------------------------------------------------------------ */

static const char *const compilers[] = {"gcc", "clang"};

/* tests/run's sanitizer pass builds the generated C with gcc only: the
 * sanitizers see the same C whichever compiler built it, and the other
 * compiler's verdict on it is the first pass's. */
static bool sanitizer_pass(void) { return getenv("KDSL_SANITIZE_CFLAGS") != NULL; }
static bool skip_compiler(const char *cc) { return sanitizer_pass() && strcmp(cc, compilers[0]) != 0; }

static void sh(const char *cmd) { tu_sh(cmd); }

/* printf into a malloc'd string. */
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

/* Runs a formatted command that must succeed. */
#define SH(...)                       \
    do {                              \
        char *cmd_ = strf(__VA_ARGS__); \
        sh(cmd_);                     \
        free(cmd_);                   \
    } while (0)

/* Runs a formatted command; its exit status, its output in *out. */
#define RUN(out, ...) run_free(strf(__VA_ARGS__), out)
static int run_free(char *cmd, char **out)
{
    int rc = tu_run(cmd, out);
    free(cmd);
    return rc;
}


/* The runtime kernels: for gcc, the build's libkdslrt.a; clang compiles them
 * once more, by main(), into BUILD/tmp/codegen-rt-clang/ (a portability check
 * of the runtime, with warnings as errors). */
static const char *runtime_lib(const char *cc)
{
    static char buf[2][4096];
    bool gcc = strcmp(cc, "gcc") == 0;
    char *b = buf[!gcc];
    if (gcc) snprintf(b, sizeof buf[0], "%s/libkdslrt.a", tu_build_root());
    else snprintf(b, sizeof buf[0], "%s/tmp/codegen-rt-%s/libkdslrt.a", tu_build_root(), cc);
    return b;
}

static int build_runtime(const char *cc)
{
    if (!strcmp(cc, "gcc")) return access(runtime_lib(cc), R_OK);
    char *out = NULL;
    int rc = RUN(&out, "set -e; d=%s/tmp/codegen-rt-%s; rm -rf $d; mkdir -p $d; cd $d; "
                 "for f in %s/*.c; do %s -std=c11 -O2 -Wall -Wextra -Werror -I%s -c $f -o $(basename $f .c).o; done; "
                 "ar rcs libkdslrt.a *.o",
                 tu_build_root(), cc, tu_src("runtime"), cc, tu_src("runtime"));
    if (rc) fprintf(stderr, "building the runtime with %s failed:\n%s\n", cc, out);
    free(out);
    return rc;
}

typedef struct gen {
    char dir[4096];
    char name[64], upper[64];
    char exe[4200];
    kd_session s;
    kd_model *m;
    lp_program *p;
    kd_codegen_options o;
} gen;

/* Compiles KDSL text to C with kdslc, builds the driver with cc, and loads the
 * same model in this process (variable offsets and all) for the interpreter. */
static void gen_build(gen *g, const char *tag, const char *text, const kd_codegen_options *o, const char *cc)
{
    memset(g, 0, sizeof *g);
    snprintf(g->dir, sizeof g->dir, "%s", tu_tmpdir(tag));
    g->o = o ? *o : (kd_codegen_options){0};
    char path[4300];
    snprintf(path, sizeof path, "%s/model.kdsl", g->dir);
    ck_assert_int_eq(tu_write(path, text, strlen(text)), 0);

    g->s.diags.out = stderr;
    ck_assert_int_eq(kd_front_end_text(&g->s, path, text, strlen(text), NULL), 0);
    g->m = g->s.model;
    snprintf(g->name, sizeof g->name, "%s", g->m->name);
    for (int i = 0; g->name[i]; i++) g->upper[i] = (char)(g->name[i] >= 'a' && g->name[i] <= 'z' ? g->name[i] - 32 : g->name[i]);
    kd_codegen_options io = g->o;
    g->p = kd_back_end(&g->s, &io);
    ck_assert_msg(g->p != NULL, "codegen failed");

    char opts[512] = "";
    if (g->o.f64) strcat(opts, " --dtype f64");
    if (g->o.inference_only) strcat(opts, " --inference-only");
    if (g->o.no_workspace) strcat(opts, " --no-workspace");
    if (g->o.no_passes) strcat(opts, " --no-passes");
    if (g->o.batch) snprintf(opts + strlen(opts), sizeof opts - strlen(opts), " --batch %d", g->o.batch);
    if (g->o.embed_weights) snprintf(opts + strlen(opts), sizeof opts - strlen(opts), " --embed-weights %s", g->o.embed_weights);
    if (g->o.target) snprintf(opts + strlen(opts), sizeof opts - strlen(opts), " --target %s", g->o.target);
    SH("%s compile %s -o %s/%s.c%s", tu_kdslc(), path, g->dir, g->name, opts);
    if (!cc) return;
    /* KDSL_CODEGEN_CFLAGS: extra flags for the generated code and the driver (sanitizers). */
    const char *extra = getenv("KDSL_CODEGEN_CFLAGS") ? getenv("KDSL_CODEGEN_CFLAGS") : "";
    SH("cd %s && %s -std=c99 -Wall -Wextra -Wpedantic -Werror -O2 %s -I%s -c %s.c -o %s.o && "
       "%s -std=c99 -D_POSIX_C_SOURCE=200809L -O2 %s -DMODEL=%s -DMODEL_UPPER=%s '-DMODEL_H=\"%s.h\"' -I. -I%s "
       "-c %s -o driver.o && %s %s driver.o %s.o %s -lm -o driver-%s",
       g->dir, cc, extra, tu_src("runtime"), g->name, g->name, cc, extra, g->name, g->upper, g->name,
       tu_src("runtime"), tu_src("tests/codegen/driver.c"), cc, extra, g->name, runtime_lib(cc), cc);
    snprintf(g->exe, sizeof g->exe, "%s/driver-%s", g->dir, cc);
}

static void gen_free(gen *g) { kd_session_free(&g->s); }

/* Runs the driver: in[0..n) as doubles in, returns the doubles out (malloc'd). */
static double *gen_run(gen *g, const char *mode, const double *in, long n, long *nout)
{
    char inp[4300], outp[4300];
    snprintf(inp, sizeof inp, "%s/%s.in", g->dir, mode);
    snprintf(outp, sizeof outp, "%s/%s.out", g->dir, mode);
    ck_assert_int_eq(tu_write(inp, in, (size_t)n * sizeof *in), 0);
    SH("%s %s %s %s", g->exe, mode, inp, outp);
    size_t len = 0;
    double *out = (double *)tu_read(outp, &len);
    ck_assert_ptr_nonnull(out);
    *nout = (long)(len / sizeof(double));
    return out;
}

/* A growable list of doubles: what the driver reads. */
typedef struct dlist {
    double *v;
    long n, cap;
} dlist;

static void push(dlist *l, double x)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 1024;
        l->v = realloc(l->v, (size_t)l->cap * sizeof *l->v);
    }
    l->v[l->n++] = x;
}

static void push_all(dlist *l, const double *x, long n)
{
    for (long i = 0; i < n; i++) push(l, x[i]);
}

static uint64_t rng_state = 1;

static double urand(double lo, double hi)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

static double *random_array(long n, double lo, double hi)
{
    double *a = malloc((size_t)(n ? n : 1) * sizeof *a);
    for (long i = 0; i < n; i++) a[i] = urand(lo, hi);
    return a;
}

/* One-hot labels, one class per row. */
static double *one_hot(int batch, long classes)
{
    double *a = calloc((size_t)(batch * classes), sizeof *a);
    for (int r = 0; r < batch; r++) a[r * classes + (long)urand(0, (double)classes) % classes] = 1;
    return a;
}

/* Variables in the interpreter's form: pointers into params and opt_state. */
static const double **var_feed(const gen *g, const double *params, const double *opt)
{
    const double **vars = calloc((size_t)g->m->vars.len + 1, sizeof *vars);
    for (int i = 0; i < g->m->vars.len; i++) {
        const kd_var *v = g->m->vars.items[i];
        vars[i] = (v->kind == VAR_SLOT ? opt : params) + v->offset;
    }
    return vars;
}

static ir_values *interp(const ir_graph *gr, const double *const *vars, int batch, const double *const *inputs,
                         const double *labels, double step, double lr)
{
    const double *lab[1] = {labels};
    ir_feed feed = {.batch = batch, .inputs = inputs, .labels = labels ? lab : NULL, .vars = vars};
    feed.hyper[IR_HYPER_LR] = lr;
    feed.hyper[IR_HYPER_STEP] = step;
    char why[256];
    ir_values *vals = ir_interp_run(gr, &feed, why, sizeof why);
    ck_assert_msg(vals != NULL, "interp: %s", why);
    return vals;
}

/* max |a - b| / max(|b|, floor), reported with where it happens. */
static double rel_err(const double *a, const double *b, long n, double floor, long *where)
{
    double worst = 0;
    if (where) *where = -1;
    for (long i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]) / fmax(fabs(b[i]), floor);
        if (!(d <= worst)) {
            worst = d;
            if (where) *where = i;
        }
    }
    return worst;
}

#define CHECK_CLOSE(a, b, n, floor, tol, what)                                                           \
    do {                                                                                                 \
        long at_;                                                                                        \
        double e_ = rel_err(a, b, n, floor, &at_);                                                       \
        ck_assert_msg(e_ <= (tol), "%s: relative error %g at %ld (%.9g vs %.9g)", what, e_, at_,          \
                      at_ >= 0 ? (a)[at_] : 0.0, at_ >= 0 ? (b)[at_] : 0.0);                              \
    } while (0)

static char *read_text(const char *path)
{
    char *t = tu_read(path, NULL);
    ck_assert_msg(t != NULL, "cannot read %s", path);
    return t;
}

/* ---- models used below ----------------------------------------------------------------- */

static const char mlp_text[] =
    "model mlp {\n"
    "    input x: [784]\n"
    "    Dense(256, activation: relu)\n"
    "    Dense(128, activation: relu)\n"
    "    Dense(64, activation: relu)\n"
    "    Dense(32, activation: relu)\n"
    "    output logits = Dense(10)\n"
    "}\n"
    "train mlp {\n"
    "    loss: CategoricalCrossentropy(from_logits: true)\n"
    "    optimizer: Adam(learning_rate: 1e-3)\n"
    "    batch_size: 32\n"
    "}\n";

/* Small, but with every kind of node training needs: dropout, batch norm with
 * moving statistics, a tanh, a softmax loss. */
static const char small_text[] =
    "model small {\n"
    "    input x: [6]\n"
    "    Dense(8, activation: relu)\n"
    "    BatchNormalization()\n"
    "    Dropout(0.25)\n"
    "    Dense(5, activation: tanh)\n"
    "    output y = Dense(3)\n"
    "}\n"
    "train small {\n"
    "    loss: CategoricalCrossentropy(from_logits: true)\n"
    "    optimizer: Adam(learning_rate: 0.01)\n"
    "    batch_size: 4\n"
    "}\n";

static const char cnn_text[] =
    "model cnn {\n"
    "    input x: [10, 10, 2]\n"
    "    Conv2D(4, 3, activation: relu)\n"
    "    MaxPooling2D(2)\n"
    "    Conv2D(3, 2, padding: same)\n"
    "    AveragePooling2D(2)\n"
    "    Flatten()\n"
    "    output y = Dense(3)\n"
    "}\n"
    "train cnn {\n"
    "    loss: CategoricalCrossentropy(from_logits: true)\n"
    "    optimizer: SGD(learning_rate: 0.1, momentum: 0.9)\n"
    "    batch_size: 3\n"
    "}\n";

/* A mix of what the layers above do not reach: two inputs, transpose, softmax
 * over an inner axis, log_softmax, max (and its gradient), mean, concat (and
 * slices), zero padding, a strided 'same' conv, global pools, sigmoid, sqrt,
 * abs, exp, a broadcast subtraction; mean squared error and RMSprop. */
static const char ops_text[] =
    "model ops {\n"
    "    input a: [4, 6]\n"
    "    input img: [6, 6, 2]\n"
    "    t = transpose(a, [0, 2, 1])\n"
    "    s = softmax(t, axis: 1)\n"
    "    l = log_softmax(a)\n"
    "    m = max(a, axis: -1)\n"
    "    u = mean(a * a, axis: 1)\n"
    "    c = concat([reshape(s, [24]), reshape(l, [24]), m, u], axis: -1)\n"
    "    p = ZeroPadding2D(img, [[1, 0], [0, 1]])\n"
    "    v = Conv2D(p, 3, 3, strides: 2, padding: same, activation: tanh)\n"
    "    w = GlobalMaxPooling2D(v)\n"
    "    z = GlobalAveragePooling2D(AveragePooling2D(v, 2, padding: same))\n"
    "    h = Dense(concat([c, w, z], axis: -1), 8, activation: sigmoid)\n"
    "    q = sqrt(square(h) + 1) * abs(h - 0.5) + exp(-h) - reshape(sum(h, axis: -1), [1]) / 3\n"
    "    output y = Dense(q, 3)\n"
    "}\n"
    "train ops {\n"
    "    loss: MeanSquaredError()\n"
    "    optimizer: RMSprop()\n"
    "    batch_size: 5\n"
    "}\n";

/* Every activation of runtime/activations.h: as Dense / Conv2D `activation:`
 * (fused into the GEMM / conv epilogues) and as tensor functions with their
 * arguments (not fused: the runtime knows only the defaults). */
static const char acts_text[] =
    "model acts {\n"
    "    input x: [6]\n"
    "    input img: [5, 5, 2]\n"
    "    h = Dense(x, 8, activation: elu)\n"
    "    h = Dense(h, 8, activation: selu)\n"
    "    h = Dense(h, 8, activation: gelu)\n"
    "    h = Dense(h, 8, activation: softplus)\n"
    "    h = Dense(h, 8, activation: softsign)\n"
    "    h = Dense(h, 8, activation: swish)\n"
    "    h = Dense(h, 8, activation: silu)\n"
    "    h = Dense(h, 8, activation: mish)\n"
    "    h = Dense(h, 8, activation: hard_sigmoid)\n"
    "    h = Dense(h, 8, activation: relu6) * 0.5\n"
    "    h = Dense(h, 8, activation: leaky_relu)\n"
    "    g = gelu(Dense(h, 8), approximate: true)\n"
    "    k = leaky_relu(Dense(h, 8), negative_slope: 0.1)\n"
    "    e = elu(g, alpha: 0.5) + leaky_relu(g, negative_slope: 0.3) + selu(g) * softsign(g) + mish(g)\n"
    "    e = e + relu6(g * 4) + hard_sigmoid(g * 3) + softplus(g) + swish(g) - silu(k) + gelu(k)\n"
    "    v = Conv2D(DepthwiseConv2D(Conv2D(img, 4, 1), 3, padding: same, activation: elu), 3, 3, activation: gelu)\n"
    "    w = Conv2D(v, 2, 2, activation: mish)\n"
    "    output y = Dense(concat([e, Flatten(w)], axis: -1), 3)\n"
    "}\n"
    "train acts {\n"
    "    loss: MeanSquaredError()\n"
    "    optimizer: SGD()\n"
    "    batch_size: 4\n"
    "}\n";

/* DepthwiseConv2D (strided 'same' with a depth multiplier; dilated), SeparableConv2D,
 * a dilated non-square Conv2D: the depthwise loop nests and the dilated kernels. */
/* The recurrent layers' options: go_backwards with every step (a reverse
 * after the loop), return_state, dropout masks inside and outside the loop. */
static const char rnn_text[] =
    "model rnn {\n"
    "    input x: [5, 3]\n"
    "    s, h, c = LSTM(4, return_sequences: true, go_backwards: true, return_state: true, dropout: 0.25,\n"
    "                   recurrent_dropout: 0.4)\n"
    "    g = GRU(s, 3, return_sequences: true, go_backwards: true, recurrent_dropout: 0.3)\n"
    "    r = SimpleRNN(x, 2, go_backwards: true, dropout: 0.5)\n"
    "    output y = Dense(Concatenate([h, c, r, Flatten(g)]), 3)\n"
    "}\n"
    "train rnn {\n"
    "    loss: CategoricalCrossentropy(from_logits: true)\n"
    "    optimizer: Adam(learning_rate: 0.01)\n"
    "    batch_size: 4\n"
    "}\n";

static const char dw_text[] =
    "model dw {\n"
    "    input x: [9, 8, 3]\n"
    "    DepthwiseConv2D(3, strides: 2, padding: same, depth_multiplier: 2, activation: relu)\n"
    "    DepthwiseConv2D([2, 3], padding: same, dilation_rate: [2, 1], use_bias: false)\n"
    "    a = SeparableConv2D(4, 2, dilation_rate: 2, activation: tanh)\n"
    "    b = Conv2D(x, 3, [3, 2], dilation_rate: 2, activation: sigmoid)\n"
    "    output y = Dense(concat([Flatten(a), GlobalAveragePooling2D(b)], axis: -1), 3)\n"
    "}\n"
    "train dw {\n"
    "    loss: CategoricalCrossentropy(from_logits: true)\n"
    "    optimizer: Adam(learning_rate: 0.01)\n"
    "    batch_size: 3\n"
    "}\n";

/* The other losses and optimizers: categorical cross-entropy on probabilities
 * (Keras' clip), binary cross-entropy from logits, SGD with Nesterov momentum;
 * and a synchronised BatchNormalization (its rank_mean a copy in one process,
 * forward and backward). */
static const char probs_text[] =
    "model probs {\n"
    "    input x: [5]\n"
    "    Dense(6, activation: tanh)\n"
    "    output p = Dense(4, activation: softmax)\n"
    "}\n"
    "train probs {\n"
    "    loss: CategoricalCrossentropy()\n"
    "    optimizer: SGD(learning_rate: 0.1, momentum: 0.8, nesterov: true)\n"
    "    batch_size: 4\n"
    "}\n";

static const char bce_text[] =
    "model bce {\n"
    "    input x: [3]\n"
    "    Dense(4, activation: relu)\n"
    "    BatchNormalization(synchronized: true)\n"
    "    output z = Dense(2)\n"
    "}\n"
    "train bce {\n"
    "    loss: BinaryCrossentropy(from_logits: true)\n"
    "    optimizer: Adam(learning_rate: 0.05)\n"
    "    batch_size: 3\n"
    "}\n";

/* ---- passes ------------------------------------------------------------------------------ */

static int count_op(const ir_graph *g, ir_op op, int act)
{
    int n = 0;
    for (int i = 0; i < g->nodes.len; i++) {
        const ir_node *x = g->nodes.items[i];
        n += x->op == op && (act < 0 || x->attr.act == act);
    }
    return n;
}

START_TEST(fuse_mlp_epilogues)
{
    kd_session s = {0};
    s.diags.out = stderr;
    ck_assert_int_eq(kd_front_end_text(&s, "mlp.kdsl", mlp_text, strlen(mlp_text), NULL), 0);
    char why[256];
    ir_graph *g = kd_optimize(s.model->infer, NULL, why, sizeof why);
    ck_assert_msg(g != NULL, "%s", why);
    ck_assert_int_eq(count_op(g, IR_FUSED_MATMUL, IR_ACT_RELU), 4);
    ck_assert_int_eq(count_op(g, IR_FUSED_MATMUL, IR_ACT_NONE), 1);
    ck_assert_int_eq(count_op(g, IR_ADD, -1) + count_op(g, IR_RELU, -1) + count_op(g, IR_MATMUL, -1), 0);

    /* The optimised graph computes what the original does. */
    int batch = 3;
    double *x = random_array(784 * batch, -1, 1);
    const double *in[1] = {x};
    const double **vars = calloc((size_t)s.model->vars.len, sizeof *vars);
    for (int i = 0; i < s.model->vars.len; i++) {
        const kd_var *v = s.model->vars.items[i];
        vars[i] = random_array(ir_shape_elems(&v->shape), -0.2, 0.2);
    }
    ir_values *a = interp(s.model->infer, vars, batch, in, NULL, 0, 0);
    ir_values *b = interp(g, vars, batch, in, NULL, 0, 0);
    CHECK_CLOSE(ir_value(b, g->outputs.items[0]), ir_value(a, s.model->infer->outputs.items[0]), 10 * batch, 1e-12,
                1e-12, "optimised vs original");
    ir_values_free(a);
    ir_values_free(b);
    for (int i = 0; i < s.model->vars.len; i++) free((void *)vars[i]);
    free(vars);
    free(x);
    kd_session_free(&s);
}
END_TEST

/* The activations fold into the GEMM / conv epilogues at their default
 * argument, and the optimised graph computes what the original does. */
START_TEST(fuse_activations)
{
    kd_session s = {0};
    s.diags.out = stderr;
    ck_assert_int_eq(kd_front_end_text(&s, "acts.kdsl", acts_text, strlen(acts_text), NULL), 0);
    char why[256];
    ir_graph *g = kd_optimize(s.model->infer, NULL, why, sizeof why);
    ck_assert_msg(g != NULL, "%s", why);
    static const int dense_acts[] = {IR_ACT_ELU, IR_ACT_SELU, IR_ACT_GELU, IR_ACT_SOFTPLUS, IR_ACT_SOFTSIGN,
                                     IR_ACT_MISH, IR_ACT_HARD_SIGMOID, IR_ACT_RELU6, IR_ACT_LEAKY_RELU, IR_ACT_GELU_TANH};
    for (size_t i = 0; i < sizeof dense_acts / sizeof dense_acts[0]; i++)
        ck_assert_msg(count_op(g, IR_FUSED_MATMUL, dense_acts[i]) == 1, "%s not fused once",
                      ir_ops[ir_acts[dense_acts[i]].op]->name);
    ck_assert_int_eq(count_op(g, IR_FUSED_MATMUL, IR_ACT_SWISH), 2);   /* swish and silu: one op */
    ck_assert_int_eq(count_op(g, IR_FUSED_CONV2D, IR_ACT_GELU), 1);
    ck_assert_int_eq(count_op(g, IR_FUSED_CONV2D, IR_ACT_MISH), 1);
    ck_assert_int_eq(count_op(g, IR_FUSED_DEPTHWISE_CONV2D, IR_ACT_ELU), 1);
    ck_assert_int_eq(count_op(g, IR_DEPTHWISE_CONV2D, -1), 0);
    /* leaky_relu(negative_slope: 0.1) of a Dense stays an op: the runtime has only 0.2 */
    ck_assert_int_eq(count_op(g, IR_FUSED_MATMUL, IR_ACT_NONE), 2);
    ck_assert_int_eq(count_op(g, IR_LEAKY_RELU, -1), 2);

    int batch = 3;
    double *x = random_array(6 * batch, -2, 2), *img = random_array(50 * batch, -2, 2);
    const double *in[2] = {x, img};
    const double **vars = calloc((size_t)s.model->vars.len, sizeof *vars);
    for (int i = 0; i < s.model->vars.len; i++) {
        const kd_var *v = s.model->vars.items[i];
        vars[i] = random_array(ir_shape_elems(&v->shape), -0.7, 0.7);
    }
    ir_values *a = interp(s.model->infer, vars, batch, in, NULL, 0, 0);
    ir_values *b = interp(g, vars, batch, in, NULL, 0, 0);
    CHECK_CLOSE(ir_value(b, g->outputs.items[0]), ir_value(a, s.model->infer->outputs.items[0]), 3 * batch, 1e-12,
                1e-12, "optimised vs original");
    ir_values_free(a);
    ir_values_free(b);
    for (int i = 0; i < s.model->vars.len; i++) free((void *)vars[i]);
    free(vars);
    free(x), free(img);
    kd_session_free(&s);
}
END_TEST

/* A hand-built graph with one of everything simplify, CSE and DCE remove. */
START_TEST(simplify_cse_dce)
{
    kd_arena a = {0};
    kd_vec vars = {0};
    kd_var v = {.index = 0, .name = "w", .kind = VAR_WEIGHT, .trainable = true};
    v.shape = ir_shape_of(1, (int64_t[]){4}, false);
    kd_vec_push(&a, &vars, &v);
    ir_graph *g = ir_graph_new(&a, &vars);
    ir_builder b = {.g = g};
    ir_shape xs = ir_shape_of(1, (int64_t[]){4}, true);
    ir_node *x = ir_leaf(&b, IR_INPUT, xs, NULL, -1);
    ir_node *w1 = ir_var_read(&b, &v), *w2 = ir_var_read(&b, &v);
    ir_node *one = ir_scalar(&b, 1), *zero = ir_scalar(&b, 0);
    ir_node *y1 = ir_binary(&b, IR_MUL, ir_binary(&b, IR_ADD, x, zero), one);          /* x */
    ir_node *s1 = ir_binary(&b, IR_ADD, y1, w1), *s2 = ir_binary(&b, IR_ADD, x, w2);  /* the same sum */
    ir_node *neg = ir_unary(&b, IR_NEG, ir_unary(&b, IR_NEG, s2));                   /* s2 */
    ir_node *r = ir_reshape(&b, ir_reshape(&b, ir_binary(&b, IR_MUL, s1, neg), ir_shape_of(2, (int64_t[]){2, 2}, true)),
                            ir_shape_of(1, (int64_t[]){4}, true));
    ir_unary(&b, IR_EXP, x);                                                          /* dead */
    ck_assert_ptr_nonnull(r);
    kd_vec_push(&a, &g->outputs, r);
    char why[256];
    ir_graph *o = kd_optimize(g, NULL, why, sizeof why);
    ck_assert_msg(o != NULL, "%s", why);
    /* input, var, add, mul: the reshapes cancel, the second sum is the first. */
    ck_assert_int_eq(o->nodes.len, 4);
    ck_assert_int_eq(count_op(o, IR_ADD, -1), 1);
    ck_assert_int_eq(count_op(o, IR_MUL, -1), 1);
    ck_assert_int_eq(count_op(o, IR_EXP, -1) + count_op(o, IR_NEG, -1) + count_op(o, IR_RESHAPE, -1), 0);
    kd_arena_free(&a);
}
END_TEST

/* ---- the generated C ---------------------------------------------------------------------- */

/* Keras' figure for the Softmax layer on [2, 1, 0.1]. */
START_TEST(softmax_sample)
{
    if (skip_compiler(compilers[_i])) return;
    char *text = read_text(tu_src("samples/softmax.kdsl"));
    gen g;
    gen_build(&g, "cg-softmax", text, NULL, compilers[_i]);
    double in[] = {1, 2, 1, 0.1};   /* batch 1, no params, the input */
    long n;
    double *out = gen_run(&g, "predict", in, 4, &n);
    ck_assert_int_eq(n, 3);
    const double want[] = {0.6590012, 0.24243298, 0.09856589};
    CHECK_CLOSE(out, want, 3, 1e-6, 1e-6, "softmax");
    free(out);
    free(text);
    gen_free(&g);
}
END_TEST


/* The arena of the MLP's predict at batch 32, against the liveness bound worked
 * out by hand: at the first layer the GEMM workspace and the first activation
 * are live (the input and the weights are the caller's); every later layer
 * needs less. Workspace of kdk_sgemm(M 32, N 256, K 784): kc = 256, nc = 256,
 * mc = 32: 256 * (256 + 64 + 32 + 16) + 64 / 4 = 94224 floats = 376896 bytes;
 * the activation [32, 256] floats = 32768 bytes: 409664 bytes in all. Layer 2:
 * 32768 + 16384 + 4 * (256 * (128 + 64 + 32 + 16) + 16) = 294976, less. */
START_TEST(mlp_arena)
{
    gen g;
    kd_codegen_options o = {.batch = 32, .inference_only = true};
    gen_build(&g, "cg-arena", mlp_text, &o, NULL);
    const lp_func *f = g.p->funcs[LP_F_PREDICT];
    int64_t work0 = (int64_t)kdk_sgemm_work_size(32, 256, 784) * 4, act0 = 32 * 256 * 4;
    ck_assert_int_eq(work0, 376896);
    ck_assert_int_eq(f->live_bound, work0 + act0);
    ck_assert_int_eq(f->arena_bytes, 409664);
    char hpath[4300];
    snprintf(hpath, sizeof hpath, "%s/mlp.h", g.dir);
    char *h = read_text(hpath);
    ck_assert_ptr_nonnull(strstr(h, "#define MLP_ARENA_BYTES 409664\n"));
    ck_assert_ptr_nonnull(strstr(h, "#define MLP_ARENA_SIZE MLP_ARENA_BYTES "));
    ck_assert_ptr_nonnull(strstr(h, "#define MLP_ARENA_ALIGN 16 "));
    ck_assert_ptr_nonnull(strstr(h, "#define MLP_PARAMS_SIZE 244522 "));
    ck_assert_ptr_nonnull(strstr(h, "#define MLP_PARAMS_BYTES 978088\n"));
    /* inference only: init's opt_state size (0), none of training's */
    ck_assert_ptr_nonnull(strstr(h, "#define MLP_OPT_STATE_SIZE 0 "));
    ck_assert_ptr_null(strstr(h, "GRADS_SIZE"));
    ck_assert_ptr_null(strstr(h, "TRAIN_ARENA"));
    ck_assert_ptr_null(strstr(h, "LABEL_SIZE"));
    ck_assert_ptr_nonnull(strstr(h, "#define MLP_MAX_BATCH 32\n"));
    free(h);
    /* Without workspaces only the two largest activations of a layer remain. */
    gen_free(&g);
    o.no_workspace = true;
    gen_build(&g, "cg-arena-nows", mlp_text, &o, NULL);
    ck_assert_int_eq(g.p->funcs[LP_F_PREDICT]->arena_bytes, 32 * (256 + 128) * 4);
    gen_free(&g);
    /* ... packed on the element's alignment, not on cache lines (firmware:
     * padding is RAM): 5 and 3 floats take 32 bytes, not 128; model.h asks 4
     * of the caller; 8 for doubles (40 + 24 bytes). */
    static const char odd_text[] = "model odd {\n    input x: [2]\n    Dense(5, activation: relu)\n"
                                   "    Dense(3, activation: relu)\n    output y = Dense(1)\n}\n";
    kd_codegen_options fw = {.no_workspace = true, .inference_only = true, .batch = 1};
    gen_build(&g, "cg-arena-packed", odd_text, &fw, NULL);
    ck_assert_int_eq(g.p->funcs[LP_F_PREDICT]->arena_bytes, (5 + 3) * 4);
    snprintf(hpath, sizeof hpath, "%s/odd.h", g.dir);
    h = read_text(hpath);
    ck_assert_ptr_nonnull(strstr(h, "#define ODD_ARENA_ALIGN 4 "));
    free(h);
    gen_free(&g);
    fw.f64 = true;
    gen_build(&g, "cg-arena-packed64", odd_text, &fw, NULL);
    ck_assert_int_eq(g.p->funcs[LP_F_PREDICT]->arena_bytes, (5 + 3) * 8);
    gen_free(&g);
    /* with workspaces each buffer starts on a cache line */
    fw = (kd_codegen_options){.inference_only = true, .batch = 1};
    gen_build(&g, "cg-arena-lines", odd_text, &fw, NULL);
    ck_assert_int_eq(g.p->funcs[LP_F_PREDICT]->arena_bytes % KD_ARENA_ALIGN, 0);
    ck_assert_int_ge(g.p->funcs[LP_F_PREDICT]->arena_bytes, 2 * KD_ARENA_ALIGN);
    gen_free(&g);
}
END_TEST


/* Random inputs for every model input, batch rows each. */
static double **random_inputs(const gen *g, int batch)
{
    double **x = calloc((size_t)g->p->ninputs + 1, sizeof *x);
    for (int i = 0; i < g->p->ninputs; i++) x[i] = random_array(g->p->inputs[i].elems * batch, -1, 1);
    return x;
}

static void free_inputs(const gen *g, double **x)
{
    for (int i = 0; i < g->p->ninputs; i++) free(x[i]);
    free(x);
}

/* Random parameters; moving variances positive, as batch norm needs. */
static double *random_params(const gen *g, double scale)
{
    double *p = random_array(g->p->params_size, -scale, scale);
    for (int i = 0; i < g->p->params.len; i++) {
        const lp_tensor_info *t = g->p->params.items[i];
        if (strstr(t->name, "moving_variance"))
            for (long j = 0; j < t->elems; j++) p[t->offset + j] = urand(0.5, 1.5);
    }
    return p;
}

/* predict against the interpreter's inference graph. */
static void check_predict(gen *g, int batch, double scale, double tol)
{
    double *params = random_params(g, scale), **x = random_inputs(g, batch);
    dlist in = {0};
    push(&in, batch);
    push_all(&in, params, g->p->params_size);
    for (int i = 0; i < g->p->ninputs; i++) push_all(&in, x[i], g->p->inputs[i].elems * batch);
    long n, total = 0;
    double *out = gen_run(g, "predict", in.v, in.n, &n);
    const double **vars = var_feed(g, params, NULL);
    ir_values *ref = interp(g->m->infer, vars, batch, (const double *const *)x, NULL, 0, 0);
    for (int o = 0; o < g->p->noutputs; o++) {
        long len = g->p->outputs[o].elems * batch;
        ck_assert_int_ge(n, total + len);
        CHECK_CLOSE(out + total, ir_value(ref, g->m->infer->outputs.items[o]), len, 1e-2, tol, "predict");
        total += len;
    }
    ck_assert_int_eq(n, total);
    ir_values_free(ref);
    free(out), free(in.v), free(params), free(vars);
    free_inputs(g, x);
}

/* grad (f64 build) against the interpreter's grad graph, the state updates
 * included, then against central differences of the generated loss. */
static void check_grad(gen *g, int batch, double step)
{
    long nlab = g->p->labels[0].elems;
    double *params = random_params(g, 0.5), **x = random_inputs(g, batch), *lab = one_hot(batch, nlab);
    dlist in = {0};
    push(&in, batch);
    push(&in, step);
    push_all(&in, params, g->p->params_size);
    for (int i = 0; i < g->p->ninputs; i++) push_all(&in, x[i], g->p->inputs[i].elems * batch);
    push_all(&in, lab, nlab * batch);
    long n;
    double *out = gen_run(g, "grad", in.v, in.n, &n);
    ck_assert_int_eq(n, 1 + g->p->grads_size + g->p->params_size);

    kd_train_graph gg;
    char why[256];
    ck_assert_msg(kd_build_grad_graph(&g->s.arena, g->m, &gg, why, sizeof why), "%s", why);
    const double **vars = var_feed(g, params, NULL);
    ir_values *ref = interp(gg.g, vars, batch, (const double *const *)x, lab, step, 0);
    double loss = ir_value(ref, gg.loss)[0];
    CHECK_CLOSE(out, &loss, 1, 1e-12, 1e-10, "loss");
    for (int v = 0, at = 2; v < g->m->vars.len; v++) {
        const kd_var *var = g->m->vars.items[v];
        if (var->kind != VAR_WEIGHT || !var->trainable) continue;
        const double *want = ir_value(ref, gg.g->outputs.items[at++]);
        CHECK_CLOSE(out + 1 + g->p->grad_offset[v], want, ir_shape_elems(&var->shape), 1e-6, 1e-8, var->name);
    }
    double *after = malloc((size_t)g->p->params_size * sizeof *after + 1);
    memcpy(after, params, (size_t)g->p->params_size * sizeof *after);
    double **vp = malloc((size_t)g->m->vars.len * sizeof *vp + 1);
    for (int v = 0; v < g->m->vars.len; v++) vp[v] = after + ((kd_var *)g->m->vars.items[v])->offset;
    ir_interp_apply_updates(ref, vp);
    CHECK_CLOSE(out + 1 + g->p->grads_size, after, g->p->params_size, 1e-6, 1e-10, "params after grad");
    ir_values_free(ref);
    free(out);

    dlist fd = {0};
    int nidx = 40;
    push(&fd, batch);
    push(&fd, step);
    push(&fd, 1e-6);
    push(&fd, nidx);
    for (int i = 0; i < nidx; i++) push(&fd, (double)(((long)i * 7919 + 13) % g->p->params_size));
    push_all(&fd, params, g->p->params_size);
    for (int i = 0; i < g->p->ninputs; i++) push_all(&fd, x[i], g->p->inputs[i].elems * batch);
    push_all(&fd, lab, nlab * batch);
    out = gen_run(g, "fd", fd.v, fd.n, &n);
    ck_assert_int_eq(n, 2 * nidx);
    for (int i = 0; i < nidx; i++)
        ck_assert_msg(fabs(out[2 * i] - out[2 * i + 1]) <= 1e-6 * fmax(1, fabs(out[2 * i + 1])),
                      "param %d: analytic %.12g, central difference %.12g", i, out[2 * i], out[2 * i + 1]);
    free(out), free(fd.v), free(in.v), free(params), free(lab), free(vars), free(after), free(vp);
    free_inputs(g, x);
}

/* predict of the MLP 784-256-128-64-32-10 against the interpreter, f32, both compilers,
 * at batch 1 and at the maximum batch. */
START_TEST(mlp_predict)
{
    if (skip_compiler(compilers[_i])) return;
    gen g;
    gen_build(&g, "cg-mlp", mlp_text, NULL, compilers[_i]);
    check_predict(&g, 1, 0.1, 1e-5);
    check_predict(&g, 32, 0.1, 1e-5);
    gen_free(&g);
}
END_TEST

/* --target x86-64-v3: model.c carries the pragma for GCC and clang (and a
 * portable build none), compiles warning-free with both, and its predict
 * still matches the interpreter. Needs an AVX2 + FMA machine to run. */
START_TEST(mlp_target)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return;
    if (skip_compiler(compilers[_i])) return;
    kd_codegen_options o = {.target = "x86-64-v3"};
    gen g;
    gen_build(&g, "cg-mlp-target", mlp_text, &o, compilers[_i]);
    char *out = NULL;
    ck_assert_int_eq(RUN(&out, "grep -c 'pragma GCC target(\"arch=x86-64-v3\")\\|pragma clang attribute p' %s/%s.c", g.dir,
                         g.name), 0);
    ck_assert_msg(atoi(out) == 3, "want the GCC pragma and clang's push and pop in model.c, grep says %s", out);
    free(out);
    check_predict(&g, 1, 0.1, 1e-5);
    check_predict(&g, 32, 0.1, 1e-5);
    gen_free(&g);
    gen_build(&g, "cg-mlp-portable", mlp_text, NULL, NULL);
    ck_assert_int_eq(RUN(&out, "grep -c pragma %s/%s.c", g.dir, g.name), 1);   /* grep: no line */
    free(out);
    gen_free(&g);
#endif
}
END_TEST

/* predict of the CNN, the op mix, the depthwise and the recurrent model against the interpreter, f32, both compilers. */
START_TEST(cnn_ops_predict)
{
    if (skip_compiler(compilers[_i % 2])) return;
    gen g;
    gen_build(&g, "cg-cnn", _i < 2 ? cnn_text : _i < 4 ? ops_text : _i < 6 ? dw_text : rnn_text, NULL, compilers[_i % 2]);
    if (_i < 2) {
        /* predict pools the first convolution's output as it computes it; the
         * training step keeps it whole (the gradients read it) */
        char cpath[4300];
        snprintf(cpath, sizeof cpath, "%s/cnn.c", g.dir);
        char *c = read_text(cpath), *step = strstr(c, "float cnn_grad(");
        ck_assert_msg(step, "no grad in cnn.c");
        char *fused = strstr(c, "kdk_sconv2d_pool_fwd(batch, 10, 10, 2, 8, 8, 4, 3, 3, 1, 1, 0, 0, 2, 2, 2, 2,");
        ck_assert_msg(fused && fused < step, "predict does not call kdk_sconv2d_pool_fwd:\n%s", c);
        ck_assert_msg(!strstr(step, "conv2d_pool_fwd") && strstr(step, "kdk_sconv2d_fwd("),
                      "grad and the training step pool inside the convolution");
        free(c);
    }
    check_predict(&g, 3, 0.3, 1e-5);
    gen_free(&g);
}
END_TEST

/* predict of every activation (fused and not) against the interpreter, f32, both compilers. */
START_TEST(acts_predict)
{
    if (skip_compiler(compilers[_i])) return;
    gen g;
    gen_build(&g, "cg-acts", acts_text, NULL, compilers[_i]);
    check_predict(&g, 1, 0.7, 1e-5);
    check_predict(&g, 4, 0.7, 1e-5);
    gen_free(&g);
}
END_TEST

/* --no-workspace: the products, convolutions and unpadded pooling as loop
 * nests in model.c (codegen/lower_direct.c), no runtime call: a strided
 * convolution with a rectangular kernel, overlapping max pooling windows, a
 * padded convolution without bias, Dense on a sequence ([batch, 3, 5] rows)
 * and with one output, outputs in blocks of four and the rest, fused
 * activations; then the CNN, the op mix (a padded average pooling stays a
 * runtime call) and every activation. Against the interpreter at batch 1 and 3;
 * the CNN's gradient (f64) against the interpreter and finite differences. */
static const char direct_text[] =
    "model direct {\n"
    "    input x: [9, 8, 3]\n"
    "    input s: [3, 5]\n"
    "    a = Conv2D(x, 6, [3, 2], strides: [2, 1], activation: elu)\n"
    "    b = MaxPooling2D(a, 3, strides: 1)\n"
    "    c = AveragePooling2D(Conv2D(b, 5, 3, padding: same, use_bias: false), 2)\n"
    "    d = Dense(s, 7, activation: gelu)\n"
    "    e = Dense(d, 1, use_bias: false)\n"
    "    output y = Dense(concat([Flatten(c), Flatten(e)], axis: -1), 6, activation: tanh)\n"
    "}\n";

START_TEST(direct_predict)
{
    const char *texts[] = {direct_text, cnn_text, ops_text, acts_text};
    kd_codegen_options o = {.no_workspace = true, .inference_only = true, .batch = 3};
    gen g;
    gen_build(&g, "cg-direct", texts[_i], &o, "gcc");
    check_predict(&g, 1, 0.5, 3e-5);   /* float sums: 1e-7 off a value of 0.01 */
    check_predict(&g, 3, 0.5, 3e-5);
    if (_i == 0) {
        char path[4300];
        snprintf(path, sizeof path, "%s/%s.c", g.dir, g.name);
        char *c = read_text(path);
        const char *predict = strstr(c, "int direct_predict(");
        ck_assert_ptr_nonnull(predict);
        ck_assert_msg(!strstr(predict, "kdk_s"), "predict calls the runtime:\n%s", predict);
        free(c);
    }
    gen_free(&g);
    if (_i == 1) {   /* the training functions' forward products and convolutions too (f64) */
        kd_codegen_options t = {.no_workspace = true, .f64 = true};
        gen_build(&g, "cg-direct-grad", cnn_text, &t, "gcc");
        check_grad(&g, 3, 3);
        gen_free(&g);
    }
}
END_TEST

/* f64 gradients: a small model with batch norm and dropout, the MLP, the CNN, the op mix,
 * the other losses, every activation (their act_grad ops, against central differences),
 * the recurrent layers' options (dropout inside the loop over time). */
START_TEST(grad_f64)
{
    const char *texts[] = {small_text, mlp_text, cnn_text, ops_text, probs_text, bce_text, acts_text, dw_text, rnn_text};
    gen g;
    kd_codegen_options o = {.f64 = true};
    gen_build(&g, "cg-grad", texts[_i], &o, "gcc");
    check_grad(&g, g.p->max_batch < 4 ? g.p->max_batch : 4, 3);
    gen_free(&g);
}
END_TEST

/* What the loop IR of the MLP's training functions looks like: Adam's three
 * updates of a weight are one loop, done in place; the optimizer runs inside
 * the backward pass, so the train step's arena holds one weight gradient at a
 * time, and no update needs a copy at the end. */
static int count_stores(const kd_vec *body)
{
    int n = 0;
    for (int i = 0; i < body->len; i++) {
        const lp_stmt *st = body->items[i];
        n += st->kind == LP_S_STORE;
        n += count_stores(&st->body);
    }
    return n;
}

START_TEST(loops_structure)
{
    gen g;
    gen_build(&g, "cg-loops", mlp_text, NULL, NULL);
    const lp_func *apply = g.p->funcs[LP_F_APPLY], *train = g.p->funcs[LP_F_TRAIN_STEP];
    ck_assert_int_eq(apply->kernels.len, 1 + 10);      /* the step size, then one loop per weight */
    for (int k = 1; k < apply->kernels.len; k++)
        ck_assert_int_eq(count_stores(&((const lp_kernel *)apply->kernels.items[k])->body), 3);
    ck_assert_int_eq(apply->arena_bytes, 0);
    int copies = 0;
    for (int k = 0; k < train->kernels.len; k++) copies += strstr(((const lp_kernel *)train->kernels.items[k])->what, "<-") != NULL;
    ck_assert_int_eq(copies, 1);                         /* outputs0 only */
    ck_assert_int_eq(train->arena_bytes, train->live_bound);
    /* The largest gradient (784 x 256) plus what the first layer's backward needs, not all 244,522. */
    ck_assert_int_lt(train->arena_bytes, 4 * (244522 + 32 * (256 + 128 + 64 + 32 + 10)) + 200000);
    gen_free(&g);
}
END_TEST

/* kd_codegen_options.disjoint_arena (kdslc train on several threads): no two
 * buffers of the train step share bytes, except a buffer updated in place
 * and the one it takes over; the arena is the sum of their sizes, and the
 * shared plan's is smaller (at its liveness bound). */
static const lp_buf *arena_root(const lp_buf *b)
{
    while (b->shares) b = b->shares;
    return b;
}

START_TEST(disjoint_arena)
{
    gen g, gs;
    kd_codegen_options o = {.disjoint_arena = true};
    gen_build(&g, "cg-disjoint", mlp_text, &o, NULL);
    gen_build(&gs, "cg-shared", mlp_text, NULL, NULL);
    const lp_func *f = g.p->funcs[LP_F_TRAIN_STEP], *fs = gs.p->funcs[LP_F_TRAIN_STEP];
    int64_t sum = 0;
    int inplace = 0, placed = 0;
    for (int i = 0; i < f->bufs.len; i++) {
        const lp_buf *b = f->bufs.items[i];
        if (b->space != LP_ARENA || b->first < 0 || b->local) continue;
        int64_t nb = lp_buf_bytes(b, g.p->max_batch, g.p->real);
        if (arena_root(b) != b) {
            inplace++;
            ck_assert_int_eq(b->offset, arena_root(b)->offset);
            continue;
        }
        placed++;
        sum += (nb + KD_ARENA_ALIGN - 1) / KD_ARENA_ALIGN * KD_ARENA_ALIGN;
        for (int k = 0; k < i; k++) {
            const lp_buf *c = f->bufs.items[k];
            if (c->space != LP_ARENA || c->first < 0 || c->local || arena_root(c) == b) continue;
            int64_t nc = lp_buf_bytes(c, g.p->max_batch, g.p->real);
            ck_assert_msg(b->offset >= c->offset + nc || c->offset >= b->offset + nb,
                          "%s [%lld, +%lld) and %s [%lld, +%lld) share bytes", b->name, (long long)b->offset,
                          (long long)nb, c->name, (long long)c->offset, (long long)nc);
        }
    }
    ck_assert_int_gt(placed, 10);
    ck_assert_int_gt(inplace, 0);
    ck_assert_int_eq(f->arena_bytes, sum);
    ck_assert_int_eq(fs->arena_bytes, fs->live_bound);
    ck_assert_int_eq(f->live_bound, fs->live_bound);
    ck_assert_int_gt(f->arena_bytes, fs->arena_bytes);
    gen_free(&gs);
    gen_free(&g);
}
END_TEST

/* A program too large for the quadratic greedy by size (arena_plan.c's
 * GREEDY_BY_SIZE_MAX, 4,096 items) gets the online plan alone: no two
 * buffers live at the same kernel share bytes, and the arena stays within
 * 1% of the liveness bound (2,072,704 bytes against 2,067,520 for 1,000
 * layers of 16). */
START_TEST(large_arena_online)
{
    char *text = malloc(64 * 1024);
    int at = sprintf(text, "model deep {\n    input x: [8]\n");
    for (int i = 0; i < 800; i++) at += sprintf(text + at, "    Dense(8, activation: relu)\n");
    sprintf(text + at, "}\ntrain deep {\n    loss: MeanSquaredError()\n    optimizer: SGD()\n}\n");
    gen g;
    gen_build(&g, "cg-large-arena", text, NULL, NULL);
    const lp_func *f = g.p->funcs[LP_F_TRAIN_STEP];
    int placed = 0;
    for (int i = 0; i < f->bufs.len; i++) {
        const lp_buf *b = f->bufs.items[i];
        if (b->space != LP_ARENA || b->first < 0 || b->local) continue;
        placed += arena_root(b) == b;
        int64_t nb = lp_buf_bytes(b, g.p->max_batch, g.p->real);
        ck_assert_int_le(b->offset + nb, f->arena_bytes);
        for (int k = 0; k < i; k++) {
            const lp_buf *c = f->bufs.items[k];
            if (c->space != LP_ARENA || c->first < 0 || c->local || arena_root(c) == arena_root(b)) continue;
            if (c->last < b->first || b->last < c->first) continue;
            int64_t nc = lp_buf_bytes(c, g.p->max_batch, g.p->real);
            ck_assert_msg(b->offset >= c->offset + nc || c->offset >= b->offset + nb,
                          "%s [%lld, +%lld) and %s [%lld, +%lld) are live together and share bytes", b->name,
                          (long long)b->offset, (long long)nb, c->name, (long long)c->offset, (long long)nc);
        }
    }
    ck_assert_int_gt(placed, 4096);
    ck_assert_int_ge(f->arena_bytes, f->live_bound);
    ck_assert_int_le(f->arena_bytes, f->live_bound + f->live_bound / 100);
    gen_free(&g);
    free(text);
}
END_TEST

/* The passes change no result: predict and grad without them match the interpreter too. */
START_TEST(no_passes)
{
    gen g;
    kd_codegen_options o = {.no_passes = true, .f64 = true};
    gen_build(&g, "cg-nopass", _i ? small_text : ops_text, &o, "gcc");
    check_predict(&g, 3, 0.3, 1e-12);
    check_grad(&g, 3, 1);
    gen_free(&g);
}
END_TEST

/* train_step against the interpreter's train-step graph, and against grad followed
 * by apply_gradients, over a few steps (f64). */
START_TEST(train_step_f64)
{
    const char *texts[] = {small_text, cnn_text, ops_text, probs_text, bce_text};
    gen g;
    kd_codegen_options o = {.f64 = true};
    gen_build(&g, "cg-train", texts[_i], &o, "gcc");
    int batch = g.p->max_batch;
    long nlab = g.p->labels[0].elems, np = g.p->params_size, no = g.p->opt_size;
    double *params = random_params(&g, 0.5), *opt = calloc((size_t)no + 1, sizeof(double));
    kd_train_graph ts;
    char why[256];
    ck_assert_msg(kd_build_train_step(&g.s.arena, g.m, &ts, why, sizeof why), "%s", why);
    double lr = 0.05;
    for (int step = 0; step < 3; step++) {
        double **x = random_inputs(&g, batch), *lab = one_hot(batch, nlab);
        dlist in = {0};
        push(&in, batch);
        push(&in, step);
        push(&in, lr);
        push_all(&in, params, np);
        push_all(&in, opt, no);
        for (int i = 0; i < g.p->ninputs; i++) push_all(&in, x[i], g.p->inputs[i].elems * batch);
        push_all(&in, lab, nlab * batch);
        long n;
        double *out = gen_run(&g, "train", in.v, in.n, &n);
        ck_assert_int_eq(n, 1 + np + no + g.p->outputs[0].elems * batch);

        /* the interpreter */
        const double **vars = var_feed(&g, params, opt);
        ir_values *ref = interp(ts.g, vars, batch, (const double *const *)x, lab, step, lr);
        double loss = ir_value(ref, ts.loss)[0];
        CHECK_CLOSE(out, &loss, 1, 1e-12, 1e-10, "train loss");
        CHECK_CLOSE(out + 1 + np + no, ir_value(ref, ts.prediction), g.p->outputs[0].elems * batch, 1e-9, 1e-10,
                    "train outputs0");
        double *p2 = malloc((size_t)np * sizeof *p2), *o2 = malloc((size_t)(no + 1) * sizeof *o2);
        memcpy(p2, params, (size_t)np * sizeof *p2);
        memcpy(o2, opt, (size_t)no * sizeof *o2);
        double **vp = malloc((size_t)g.m->vars.len * sizeof *vp);
        for (int v = 0; v < g.m->vars.len; v++) {
            const kd_var *var = g.m->vars.items[v];
            vp[v] = (var->kind == VAR_SLOT ? o2 : p2) + var->offset;
        }
        ir_interp_apply_updates(ref, vp);
        CHECK_CLOSE(out + 1, p2, np, 1e-6, 1e-9, "params after train_step");
        CHECK_CLOSE(out + 1 + np, o2, no, 1e-6, 1e-9, "opt_state after train_step");
        ir_values_free(ref);

        /* grad, then apply_gradients, gives the same step */
        dlist gi = {0};
        push(&gi, batch);
        push(&gi, step);
        push_all(&gi, params, np);
        for (int i = 0; i < g.p->ninputs; i++) push_all(&gi, x[i], g.p->inputs[i].elems * batch);
        push_all(&gi, lab, nlab * batch);
        long ng;
        double *gout = gen_run(&g, "grad", gi.v, gi.n, &ng);
        dlist ai = {0};
        push(&ai, step);
        push(&ai, lr);
        push_all(&ai, gout + 1 + g.p->grads_size, np);   /* params with the state updates */
        push_all(&ai, gout + 1, g.p->grads_size);
        push_all(&ai, opt, no);
        long na;
        double *aout = gen_run(&g, "apply", ai.v, ai.n, &na);
        ck_assert_int_eq(na, np + no);
        CHECK_CLOSE(aout, out + 1, np, 1e-6, 1e-9, "grad + apply_gradients vs train_step (params)");
        CHECK_CLOSE(aout + np, out + 1 + np, no, 1e-6, 1e-9, "grad + apply_gradients vs train_step (opt_state)");

        memcpy(params, out + 1, (size_t)np * sizeof *params);
        memcpy(opt, out + 1 + np, (size_t)no * sizeof *opt);
        free(out), free(gout), free(aout), free(in.v), free(gi.v), free(ai.v), free(lab);
        free_inputs(&g, x);
        free(p2), free(o2), free(vp), free(vars);
    }
    free(params), free(opt);
    gen_free(&g);
}
END_TEST


/* init: Keras' limits and moments, deterministic in the seed. */
START_TEST(init_values)
{
    gen g;
    gen_build(&g, "cg-init", mlp_text, NULL, "gcc");
    double seed[] = {42};
    long n, n2;
    double *a = gen_run(&g, "init", seed, 1, &n), *b = gen_run(&g, "init", seed, 1, &n2);
    ck_assert_int_eq(n, g.p->params_size + g.p->opt_size);
    ck_assert_int_eq(memcmp(a, b, (size_t)n * sizeof *a), 0);
    seed[0] = 43;
    double *c = gen_run(&g, "init", seed, 1, &n2);
    ck_assert_int_ne(memcmp(a, c, (size_t)g.p->params_size * sizeof *a), 0);
    /* dense/kernel [784, 256]: glorot_uniform, limit sqrt(6 / 1040) */
    double limit = sqrt(6.0 / (784 + 256)), sum = 0, sq = 0;
    for (long i = 0; i < 784 * 256; i++) {
        ck_assert(fabs(a[i]) <= limit);
        sum += a[i];
        sq += a[i] * a[i];
    }
    double mean = sum / (784 * 256), var = sq / (784 * 256) - mean * mean;
    ck_assert_msg(fabs(mean) < 0.01 * limit, "mean %g", mean);
    ck_assert_msg(fabs(var / (limit * limit / 3) - 1) < 0.02, "variance %g", var);
    for (long i = 784 * 256; i < 784 * 256 + 256; i++) ck_assert(a[i] == 0);   /* dense/bias: zeros */
    for (long i = g.p->params_size; i < n; i++) ck_assert(a[i] == 0);         /* optimizer slots */
    free(a), free(b), free(c);
    gen_free(&g);

    static const char he[] =
        "model he {\n  input x: [400]\n  output y = Dense(300, kernel_initializer: he_normal)\n}\n";
    static const char he_layer[] =
        "layer HeDense(units) {\n  input x: [n]\n  weight w: [n, units] = he_normal\n  output x @ w\n}\n"
        "model he {\n  input x: [400]\n  output y = HeDense(300)\n}\n";
    kd_session s = {0};
    s.diags.out = fopen("/dev/null", "w");
    bool plain = kd_front_end_text(&s, "he.kdsl", he, sizeof he - 1, NULL) == 0;
    fclose(s.diags.out);
    kd_session_free(&s);
    gen_build(&g, "cg-init-he", plain ? he : he_layer, NULL, "gcc");
    a = gen_run(&g, "init", seed, 1, &n);
    double sd = sqrt(2.0 / 400) / .87962566103423978;
    sum = sq = 0;
    for (long i = 0; i < 400 * 300; i++) {
        ck_assert_msg(fabs(a[i]) <= 2 * sd * (1 + 1e-6), "%g beyond 2 stddev", a[i]);
        sum += a[i];
        sq += a[i] * a[i];
    }
    mean = sum / (400 * 300);
    var = sq / (400 * 300) - mean * mean;
    ck_assert_msg(fabs(sqrt(var) / sqrt(2.0 / 400) - 1) < 0.02, "stddev %g, want %g", sqrt(var), sqrt(2.0 / 400));
    free(a);
    gen_free(&g);

    /* LSTM: the recurrent kernel [5, 20] orthogonal (orthonormal rows), the bias
     * zeros but the forget gate's quarter ones (unit_forget_bias) */
    static const char lstm[] = "model l {\n  input x: [3, 2]\n  output y = LSTM(5)\n}\n";
    gen_build(&g, "cg-init-lstm", lstm, NULL, "gcc");
    a = gen_run(&g, "init", seed, 1, &n);
    const double *rk = a + 2 * 20, *bias = rk + 5 * 20;
    for (int u = 0; u < 5; u++)
        for (int v = 0; v < 5; v++) {
            double d = 0;
            for (int k = 0; k < 20; k++) d += rk[u * 20 + k] * rk[v * 20 + k];
            ck_assert_double_eq_tol(d, u == v, 1e-5);
        }
    for (int k = 0; k < 20; k++) ck_assert_double_eq(bias[k], k >= 5 && k < 10 ? 1 : 0);
    free(a);
    gen_free(&g);
}
END_TEST

/* --inference-only cross-compiles for a Cortex-M4 and references no allocator or stdio. */
START_TEST(cortex_m4)
{
    gen g;
    kd_codegen_options o = {.inference_only = true, .batch = 1};
    gen_build(&g, "cg-m4", mlp_text, &o, NULL);
    SH("cd %s && arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -ffreestanding "
             "-std=c99 -Wall -Wextra -Wpedantic -Werror -O2 -I%s -c mlp.c -o mlp-m4.o",
             g.dir, tu_src("runtime"));
    char *out = NULL;
    ck_assert_int_eq(RUN(&out, "cd %s && arm-none-eabi-nm -u mlp-m4.o", g.dir), 0);
    const char *banned[] = {"malloc", "calloc", "realloc", "free", "printf", "fprintf", "puts", "fopen", "fwrite"};
    for (size_t i = 0; i < sizeof banned / sizeof banned[0]; i++) {
        char pat[64];
        snprintf(pat, sizeof pat, " %s\n", banned[i]);
        ck_assert_msg(!strstr(out, pat), "the object references %s:\n%s", banned[i], out);
    }
    ck_assert_msg(strstr(out, "kdk_sgemm"), "expected a call to kdk_sgemm:\n%s", out);
    free(out);
    char cpath[4300];
    snprintf(cpath, sizeof cpath, "%s/mlp.c", g.dir);
    char *c = read_text(cpath);
    ck_assert(!strstr(c, "stdio.h"));
    ck_assert(!strstr(c, "mlp_train_step") && !strstr(c, "mlp_grad"));
    free(c);
    gen_free(&g);
}
END_TEST

/* Embedding in the generated C: int32_t token ids through `const void *const
 * *inputs`; a row of the table per id, zeros for an id outside it (-1, 5,
 * INT32_MAX: never read out of bounds); freestanding for a Cortex-M4. */
static const char emb_text[] = "model emb {\n    input tokens: i32[4]\n    Embedding(5, 3)\n}\n";
static const char emb_main[] =
    "#include <stdint.h>\n#include <stdio.h>\n#include \"emb.h\"\n"
    "#if !EMB_INPUT0_I32 || EMB_INPUT0_TOKENS != 5\n#error the header does not describe the token input\n#endif\n"
    "static float params[EMB_PARAMS_SIZE], y[2 * 4 * 3];\n"
    "static _Alignas(16) char arena[EMB_ARENA_SIZE];\n"
    "int main(void)\n{\n"
    "    for (int i = 0; i < EMB_PARAMS_SIZE; i++) params[i] = (float)(i + 1);\n"
    "    static const int32_t ids[8] = {0, 4, 2, 2, -1, 5, INT32_MAX, 3};\n"
    "    const void *in[1] = {ids};\n    float *out[1] = {y};\n"
    "    if (emb_predict(params, in, out, 0, arena) != -1 || emb_predict(params, in, out, 3, arena) != -1) {\n"
    "        puts(\"a batch outside [1, 2] accepted\");\n        return 1;\n    }\n"
    "    if (emb_predict(params, in, out, 2, arena) != 0) { puts(\"predict failed\"); return 1; }\n"
    "    for (int t = 0; t < 8; t++)\n"
    "        for (int d = 0; d < 3; d++) {\n"
    "            float want = ids[t] >= 0 && ids[t] < 5 ? params[ids[t] * 3 + d] : 0.0f;\n"
    "            if (y[t * 3 + d] != want) { printf(\"token %d: %g, want %g\\n\", t, (double)y[t * 3 + d], (double)want); return 1; }\n"
    "        }\n"
    "    puts(\"ok\");\n    return 0;\n}\n";

START_TEST(embedding_c)
{
    const char *dir = tu_tmpdir("cg-emb");
    char path[4300];
    snprintf(path, sizeof path, "%s/emb.kdsl", dir);
    ck_assert_int_eq(tu_write(path, emb_text, strlen(emb_text)), 0);
    snprintf(path, sizeof path, "%s/main.c", dir);
    ck_assert_int_eq(tu_write(path, emb_main, strlen(emb_main)), 0);
    /* KDSL_CODEGEN_CFLAGS: the sanitizers, as the runtime library was built with them */
    const char *extra = getenv("KDSL_CODEGEN_CFLAGS") ? getenv("KDSL_CODEGEN_CFLAGS") : "";
    SH("cd %s && %s compile emb.kdsl -o emb.c --inference-only --batch 2 && "
       "gcc -std=c11 -Wall -Wextra -Wpedantic -Werror -Wconversion -O2 %s -I%s main.c emb.c %s -lm -o emb && ./emb",
       dir, tu_kdslc(), extra, tu_src("runtime"), runtime_lib("gcc"));
    snprintf(path, sizeof path, "%s/emb.h", dir);
    char *h = read_text(path);
    ck_assert_msg(strstr(h, "int emb_predict(const float *params, const void *const *inputs, float *const *outputs"), "%s", h);
    free(h);
    SH("cd %s && %s compile emb.kdsl -o m4.c --inference-only --batch 1 --no-workspace && "
       "arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -ffreestanding "
       "-std=c99 -Wall -Wextra -Wpedantic -Werror -O2 -I%s -c m4.c -o m4.o",
       dir, tu_kdslc(), tu_src("runtime"));
    char *out = NULL;
    ck_assert_int_eq(RUN(&out, "cd %s && arm-none-eabi-nm -u m4.o", dir), 0);
    const char *banned[] = {"malloc", "calloc", "realloc", "free", "printf", "fprintf", "puts", "fopen", "fwrite"};
    for (size_t i = 0; i < sizeof banned / sizeof banned[0]; i++) {
        char pat[64];
        snprintf(pat, sizeof pat, " %s\n", banned[i]);
        ck_assert_msg(!strstr(out, pat), "the object references %s:\n%s", banned[i], out);
    }
    free(out);
}
END_TEST

/* A recurrent layer is one loop over time: an LSTM's model.c for 10 steps and
 * for 1,000 is the same text but for the numbers, and its Cortex-M4 code
 * (firmware: --inference-only, freestanding) the same size within a few
 * immediates. */
START_TEST(scan_code_size)
{
    const char *dir = tu_tmpdir("cg-scan");
    long text[2];
    char *src[2];
    for (int i = 0; i < 2; i++) {
        int T = i ? 1000 : 10;
        char kdsl[256], path[4300];
        snprintf(kdsl, sizeof kdsl, "model r {\n    input x: [%d, 8]\n    LSTM(16)\n    output y = Dense(2)\n}\n", T);
        snprintf(path, sizeof path, "%s/r%d.kdsl", dir, T);
        ck_assert_int_eq(tu_write(path, kdsl, strlen(kdsl)), 0);
        SH("cd %s && %s compile r%d.kdsl -o r%d.c --inference-only --batch 1 --no-workspace && "
           "arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -ffreestanding "
           "-std=c99 -Wall -Wextra -Wpedantic -Werror -O2 -I%s -c r%d.c -o r%d.o",
           dir, tu_kdslc(), T, T, tu_src("runtime"), T, T);
        char *out = NULL;
        ck_assert_int_eq(RUN(&out, "cd %s && arm-none-eabi-size r%d.o | tail -1", dir, T), 0);
        text[i] = strtol(out, NULL, 10);
        free(out);
        snprintf(path, sizeof path, "%s/r%d.c", dir, T);
        src[i] = read_text(path);
        for (char *c = src[i], *o = src[i]; ; c++) {   /* every number becomes one '#' */
            if (*c >= '0' && *c <= '9') {
                while (c[1] >= '0' && c[1] <= '9') c++;
                *o++ = '#';
            } else if (!(*o++ = *c)) break;
        }
    }
    ck_assert_msg(!strcmp(src[0], src[1]), "model.c for 10 and 1000 steps differ beyond their numbers");
    ck_assert_msg(text[0] > 0 && labs(text[1] - text[0]) <= 128, "Cortex-M4 text: %ld bytes for 10 steps, %ld for 1000",
                  text[0], text[1]);
    free(src[0]);
    free(src[1]);
}
END_TEST

/* The same input gives the same bytes: two runs of kdslc compile, and the f64
 * and inference-only variants, on every sample. */
START_TEST(deterministic)
{
    const char *samples[] = {"mlp", "cnn", "fmnist_cnn", "linear_regression"};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        const char *dir = tu_tmpdir("cg-det");
        char rel[256], src[4300];
        snprintf(rel, sizeof rel, "samples/%s.kdsl", samples[i]);
        snprintf(src, sizeof src, "%s", tu_src(rel));
        SH("cd %s && for r in 1 2; do mkdir -p $r && %s compile %s -o $r/m.c && %s compile %s -o $r/f64.c --dtype f64 && "
           "%s compile %s -o $r/inf.c --inference-only; done && "
           "cmp 1/m.c 2/m.c && cmp 1/m.h 2/m.h && cmp 1/f64.c 2/f64.c && cmp 1/inf.c 2/inf.c && cmp 1/inf.h 2/inf.h",
           dir, tu_kdslc(), src, tu_kdslc(), src, tu_kdslc(), src);
    }
}
END_TEST

/* Every sample compiles to C that gcc and clang accept with -Werror, in f32
 * and f64, also under -Wdouble-promotion -Wconversion: no implicit float to
 * double or double to float (a soft-float MCU pays for each). */
#define STRICT_WARNINGS "-Wall -Wextra -Wpedantic -Wdouble-promotion -Wconversion -Werror"
START_TEST(samples_compile)
{
    const char *cc = compilers[_i];
    const char *dir = tu_tmpdir("cg-samples");
    if (sanitizer_pass()) {
        /* the sanitizer pass: kdslc (instrumented) writes every sample; the C compilers' verdict
         * on that C is the same as in the first pass, so it is not asked again */
        if (_i != 0) return;
        SH("cd %s && for f in %s/*.kdsl; do n=$(basename $f .kdsl); %s compile $f -o $n.c || exit 1; "
           "%s compile $f -o ${n}_64.c --dtype f64 || exit 1; "
           "%s compile $f -o ${n}_m4.c --inference-only --batch 1 || exit 1; done",
           dir, tu_src("samples"), tu_kdslc(), tu_kdslc(), tu_kdslc());
        return;
    }

    /* the C compilers' warnings (front-end ones: without -O no other runs)
     * and errors, without generating code, the bulk of a big model's time */
    SH("cd %s && for f in %s/*.kdsl; do n=$(basename $f .kdsl); "
             "%s compile $f -o $n.c || exit 1; "
             "%s -std=c99 " STRICT_WARNINGS " -I%s -fsyntax-only $n.c || exit 1; "
             "%s compile $f -o ${n}_64.c --dtype f64 || exit 1; "
             "%s -std=c99 " STRICT_WARNINGS " -I%s -fsyntax-only ${n}_64.c || exit 1; done",
             dir, tu_src("samples"), tu_kdslc(), cc, tu_src("runtime"), tu_kdslc(), cc, tu_src("runtime"));
    if (_i != 0) return;
    /* --inference-only for a Cortex-M4 (hard float), freestanding: no heap, no stdio */
    SH("cd %s && for f in %s/*.kdsl; do n=$(basename $f .kdsl); "
       "%s compile $f -o ${n}_m4.c --inference-only --batch 1 || exit 1; "
       "arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -ffreestanding -std=c99 "
       STRICT_WARNINGS " -O1 -I%s -c ${n}_m4.c -o ${n}_m4.o || exit 1; "
       "if arm-none-eabi-nm -u ${n}_m4.o | grep -wE 'malloc|calloc|realloc|free|printf|fprintf|puts|fopen|fwrite|fputs'; "
       "then echo \"$n: the firmware object references the heap or stdio\"; exit 1; fi; "
       "if grep -q stdio.h ${n}_m4.c; then echo \"$n: includes stdio.h\"; exit 1; fi; done",
       dir, tu_src("samples"), tu_kdslc(), tu_src("runtime"));
}
END_TEST

/* A safetensors file at path with every weight and state of g's program, the
 * values params rounded to float; returns those floats. */
static float *weights_file(const gen *g, const double *params, const char *path)
{
    size_t ntensors = (size_t)g->p->params.len;
    kdh_tensor *ts = calloc(ntensors + 1, sizeof *ts);
    float *f32 = malloc((size_t)g->p->params_size * sizeof *f32 + 1);
    for (long i = 0; i < g->p->params_size; i++) f32[i] = (float)params[i];
    for (int i = 0; i < g->p->params.len; i++) {
        const lp_tensor_info *t = g->p->params.items[i];
        ts[i].name = (char *)t->name;
        ts[i].dtype = KDH_F32;
        ts[i].rank = t->rank;
        for (int d = 0; d < t->rank; d++) ts[i].shape[d] = t->shape[d];
        ts[i].data = f32 + t->offset;
        ts[i].nbytes = (size_t)t->elems * sizeof(float);
    }
    kdh_error err;
    ck_assert_msg(kdh_safetensors_write(path, ts, ntensors, NULL, 0, &err) == 0, "%s", err.msg);
    free(ts);
    return f32;
}

/* --embed-weights: predict_embedded of `text` (model `name`, one input of nx
 * reals and one output of ny per sample, batch 2) with random weights equals
 * predict with them, and predict_prepared on what prepare makes of them
 * equals predict_embedded bit for bit (the same folds, at run time); returns
 * how many BatchNormalizations were folded. */
static int embed_check(const char *text, const char *name, int nx, int ny, const kd_codegen_options *opts)
{
    gen plain;
    gen_build(&plain, "cg-embed-ref", text, NULL, "gcc");
    double *params = random_array(plain.p->params_size, -0.5, 0.5);
    for (int i = 0; i < plain.p->params.len; i++) {     /* a valid moving variance */
        const lp_tensor_info *t = plain.p->params.items[i];
        if (strstr(t->name, "moving_variance"))
            for (long j = 0; j < t->elems; j++) params[t->offset + j] = urand(0.5, 1.5);
    }
    char wpath[4300];
    snprintf(wpath, sizeof wpath, "%s/w.safetensors", plain.dir);
    float *f32 = weights_file(&plain, params, wpath);

    gen emb;
    kd_codegen_options o = opts ? *opts : (kd_codegen_options){.inference_only = true};
    o.embed_weights = wpath;
    o.prepare = true;
    gen_build(&emb, "cg-embed", text, &o, "gcc");
    int folds = emb.p->nfolds;
    char bpath[4300];
    snprintf(bpath, sizeof bpath, "%s/w.bin", emb.dir);
    ck_assert_int_eq(tu_write(bpath, f32, (size_t)plain.p->params_size * sizeof(float)), 0);
    char main_c[4096];
    snprintf(main_c, sizeof main_c,
             "#include \"%s.h\"\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"
             "int main(void)\n{\n    static float x[%d], y[%d], z[%d], w[%s_PARAMS_SIZE + 1], pw[%s_PREPARED_SIZE + 1];\n"
             "    const float *in[1] = {x};\n    float *out[1] = {y}, *out2[1] = {z};\n"
             "    void *a = malloc(%s_ARENA_SIZE);\n    int i;\n    FILE *f = fopen(\"w.bin\", \"rb\");\n"
             "    if (!f || fread(w, sizeof(float), %s_PARAMS_SIZE, f) != %s_PARAMS_SIZE) return 3;\n    fclose(f);\n"
             "    for (i = 0; i < %d; i++) x[i] = (float)(i %% 23) / 7 - 1.3f;\n"
             "    %s_predict_embedded(in, out, 2, a);\n"
             "    if (%s_prepare(w, pw) != 0 || %s_predict_prepared(pw, in, out2, 2, a) != 0) return 4;\n"
             "    if (memcmp(y, z, sizeof y)) return 5;\n"
             "    for (i = 0; i < %d; i++) printf(\"%%.9g\\n\", y[i]);\n    free(a);\n    return 0;\n}\n",
             name, 2 * nx, 2 * ny, 2 * ny, emb.upper, emb.upper, emb.upper, emb.upper, emb.upper, 2 * nx, name, name,
             name, 2 * ny);
    char mpath[4300];
    snprintf(mpath, sizeof mpath, "%s/main.c", emb.dir);
    ck_assert_int_eq(tu_write(mpath, main_c, strlen(main_c)), 0);
    /* the sanitizer pass's runtime library needs the sanitizer flags at link time */
    const char *extra = getenv("KDSL_CODEGEN_CFLAGS") ? getenv("KDSL_CODEGEN_CFLAGS") : "";
    SH("cd %s && gcc -std=c99 -Wall -Wextra -Werror %s -I%s main.c %s.c %s -lm -o emb && ./emb > emb.txt", emb.dir,
       extra, tu_src("runtime"), name, runtime_lib("gcc"));
    dlist in = {0};
    push(&in, 2);
    for (long i = 0; i < plain.p->params_size; i++) push(&in, f32[i]);
    for (int i = 0; i < 2 * nx; i++) push(&in, (double)((float)(i % 23) / 7 - 1.3f));
    long n;
    double *ref = gen_run(&plain, "predict", in.v, in.n, &n);
    ck_assert_int_eq(n, 2 * ny);
    char tpath[4300];
    snprintf(tpath, sizeof tpath, "%s/emb.txt", emb.dir);
    char *txt = read_text(tpath), *at = txt;
    double *got = malloc((size_t)(2 * ny) * sizeof *got);
    for (int i = 0; i < 2 * ny; i++) got[i] = strtod(at, &at);
    CHECK_CLOSE(got, ref, 2 * ny, 2e-5, 2e-5, "predict_embedded");
    free(got), free(txt), free(ref), free(in.v), free(f32), free(params);
    gen_free(&plain);
    gen_free(&emb);
    return folds;
}

/* predict_prepared reads each Dense kernel as prepare packed it for the GEMM
 * (kdk_sgemm_packed_b): the same bits as predict at every batch — the GEMV
 * path (3), one and two row tiles (9, 16) and the packed driver (24) — and
 * prepared holds the packed copies after the params. Compiled for batch 2,
 * the GEMM never packs: nothing is packed and PREPARED_SIZE is PARAMS_SIZE. */
static const char prepared_text[] =
    "model pmlp {\n"
    "    input x: [30]\n"
    "    Dense(40, activation: relu)\n"
    "    Dense(33, activation: tanh, use_bias: false)\n"
    "    output y = Dense(5)\n"
    "}\n";

START_TEST(prepared_packs_dense)
{
    static const int compile_batch[2] = {24, 2};
    for (int t = 0; t < 2; t++) {
        gen g;
        kd_codegen_options o = {.inference_only = true, .batch = compile_batch[t], .prepare = true};
        gen_build(&g, "cg-prepared", prepared_text, &o, NULL);
        char path[4300];
        snprintf(path, sizeof path, "%s/pmlp.c", g.dir);
        char *c = read_text(path);
        int calls = 0;
        for (const char *at = c; (at = strstr(at, "kdk_sgemm_packed_b(")); at++) calls++;
        ck_assert_int_eq(calls, t == 0 ? 3 : 0);
        ck_assert_int_eq(g.p->packs.len, t == 0 ? 3 : 0);
        /* after the params, each packed kernel on a 64-byte line: 30x40, 40x33, 33x5 */
        int64_t want = g.p->params_size;
        if (t == 0) {
            const int nk[3][2] = {{40, 30}, {33, 40}, {5, 33}};
            for (int i = 0; i < 3; i++) want = (want + 15) / 16 * 16 + (int64_t)kdk_sgemm_packed_b_size(24, nk[i][0], nk[i][1]);
        }
        ck_assert_int_eq(g.p->prepared_size, want);
        free(c);
        char main_c[2048];
        snprintf(main_c, sizeof main_c,
                 "#include \"pmlp.h\"\n#include <stdlib.h>\n#include <string.h>\n"
                 "int main(void)\n{\n    static float w[PMLP_PARAMS_SIZE], pw[PMLP_PREPARED_SIZE], x[30 * PMLP_MAX_BATCH],\n"
                 "        y[5 * PMLP_MAX_BATCH], z[5 * PMLP_MAX_BATCH];\n"
                 "    static const int batches[] = {3, 9, 16, 24};\n"
                 "    const float *in[1] = {x};\n    float *out[1] = {y}, *out2[1] = {z};\n"
                 "    void *a = malloc(PMLP_ARENA_SIZE);\n"
                 "    pmlp_init(w, NULL, 7);\n"
                 "    for (int i = 0; i < 30 * PMLP_MAX_BATCH; i++) x[i] = (float)(i %% 29) / 9 - 1.4f;\n"
                 "    if (pmlp_prepare(w, pw) != 0) return 3;\n"
                 "    for (int b = 0; b < 4; b++) {\n"
                 "        if (batches[b] > PMLP_MAX_BATCH) continue;\n"
                 "        memset(z, 0, sizeof z);\n"
                 "        if (pmlp_predict(w, in, out, batches[b], a) || pmlp_predict_prepared(pw, in, out2, batches[b], a))\n"
                 "            return 4;\n"
                 "        if (memcmp(y, z, sizeof(float) * 5 * batches[b])) return 10 + b;\n"
                 "    }\n"
                 "    /* a changed element of the first packed kernel (past its 64-byte header) changes\n"
                 "     * predict_prepared's outputs at the largest batch: it reads the panels */\n"
                 "    if (%d) {\n"
                 "        pw[%lld + 16 + 5] += 1.0f;\n"
                 "        pmlp_predict_prepared(pw, in, out2, PMLP_MAX_BATCH, a);\n"
                 "        if (!memcmp(y, z, sizeof(float) * 5 * PMLP_MAX_BATCH)) return 20;\n"
                 "    }\n"
                 "    free(a);\n    return 0;\n}\n",
                 t == 0, t == 0 ? (long long)((const lp_pack *)g.p->packs.items[0])->to : 0LL);
        char mpath[4300];
        snprintf(mpath, sizeof mpath, "%s/main.c", g.dir);
        ck_assert_int_eq(tu_write(mpath, main_c, strlen(main_c)), 0);
        const char *extra = getenv("KDSL_CODEGEN_CFLAGS") ? getenv("KDSL_CODEGEN_CFLAGS") : "";
        SH("cd %s && gcc -std=c99 -Wall -Wextra -Werror -O2 %s -I%s main.c pmlp.c %s -lm -o prep && ./prep", g.dir, extra,
           tu_src("runtime"), runtime_lib("gcc"));
        gen_free(&g);
    }
}
END_TEST

START_TEST(embed_weights)
{
    /* small's BatchNormalization follows a ReLU: nothing to fold */
    ck_assert_int_eq(embed_check(small_text, "small", 6, 3, NULL), 0);
}
END_TEST

/* With embedded weights, each BatchNormalization right after a convolution or
 * Dense is folded into it (W * s, beta + (b - mean) * s) and predict_embedded
 * still computes what predict does with the weights as trained; a layer whose
 * output or kernel something else also uses keeps its BatchNormalization. */
static const char fold_text[] =
    "model fold {\n"
    "    input x: [8, 6, 2]\n"
    "    Conv2D(4, 3, padding: same, use_bias: false)\n"
    "    BatchNormalization()\n"
    "    ReLU(max_value: 6.0)\n"
    "    DepthwiseConv2D(3, strides: 2, padding: same, depth_multiplier: 2)\n"
    "    BatchNormalization(center: false)\n"
    "    SeparableConv2D(5, 3, padding: same)\n"
    "    BatchNormalization(scale: false)\n"
    "    Conv2D(3, 2, dilation_rate: 2, padding: same)\n"
    "    BatchNormalization(epsilon: 0.01)\n"
    "    Reshape([12, 3])\n"
    "    Conv1D(4, 3, padding: causal)\n"
    "    BatchNormalization()\n"
    "    Dense(3)\n"
    "    BatchNormalization()\n"
    "    Flatten()\n"
    "    output y = Dense(2)\n"
    "}\n";

static const char nofold_text[] =
    "model nofold {\n"
    "    input x: [4, 4, 3]\n"
    "    c = Conv2D(x, 3, 3, padding: same)\n"
    "    n = BatchNormalization(c)\n"
    "    r = Add([n, c])\n"                                  /* c also feeds the residual edge */
    "    t = Conv2DTranspose(r, 4, 3, padding: same)\n"
    "    m = BatchNormalization(t)\n"                        /* channels are not the kernel's last axis */
    "    g = Conv2D(m, 4, 1, groups: 2, use_bias: false)\n"
    "    h = BatchNormalization(g, center: false)\n"         /* no bias to fold into */
    "    output y = Flatten(h)\n"
    "}\n";

START_TEST(embed_folds_batchnorm)
{
    ck_assert_int_eq(embed_check(fold_text, "fold", 96, 2, NULL), 6);
    kd_codegen_options keep = {.inference_only = true, .passes.no_fold_batchnorm = true};
    ck_assert_int_eq(embed_check(fold_text, "fold", 96, 2, &keep), 0);
    kd_codegen_options train = {0};   /* the training functions too: predict_embedded still folds */
    ck_assert_int_eq(embed_check(fold_text, "fold", 96, 2, &train), 6);
    ck_assert_int_eq(embed_check(nofold_text, "nofold", 48, 64, NULL), 0);

    /* a moving variance below -epsilon folds to NaN: an error naming it, and model.c not written */
    gen plain;
    gen_build(&plain, "cg-embed-bad", fold_text, NULL, "gcc");
    double *params = random_array(plain.p->params_size, 0.5, 1.5);
    for (int i = 0; i < plain.p->params.len; i++) {
        const lp_tensor_info *t = plain.p->params.items[i];
        if (!strcmp(t->name, "batch_normalization_2/moving_variance")) params[t->offset + 1] = -1;
    }
    char wpath[4300], *out;
    snprintf(wpath, sizeof wpath, "%s/bad.safetensors", plain.dir);
    free(weights_file(&plain, params, wpath));
    ck_assert_int_eq(RUN(&out, "cd %s && printf '%%s' '%s' > f.kdsl && %s compile f.kdsl -o f.c --inference-only "
                               "--embed-weights bad.safetensors", plain.dir, fold_text, tu_kdslc()), 1);
    ck_assert_msg(strstr(out, "folding \"batch_normalization_2/moving_variance\" into \"separable_conv2d/pointwise_kernel\" "
                              "gives values that are not finite"), "%s", out);
    free(out);
    ck_assert_int_eq(RUN(&out, "test -e %s/f.c", plain.dir), 1);
    free(out);
    /* kept apart, the same weights compile (the NaN is the model's own) */
    ck_assert_int_eq(RUN(&out, "cd %s && %s compile f.kdsl -o f.c --inference-only --embed-weights bad.safetensors "
                               "--no-fold-batchnorm", plain.dir, tu_kdslc()), 0);
    free(out);
    /* at run time, prepare says so: -1 with these weights, 0 once the variance is valid */
    float *f32 = malloc((size_t)plain.p->params_size * sizeof *f32);
    for (long i = 0; i < plain.p->params_size; i++) f32[i] = (float)params[i];
    char bpath[4300];
    snprintf(bpath, sizeof bpath, "%s/bad.bin", plain.dir);
    ck_assert_int_eq(tu_write(bpath, f32, (size_t)plain.p->params_size * sizeof *f32), 0);
    free(f32);
    static const char prep_main[] =
        "#include \"fold.h\"\n#include <stdio.h>\n"
        "static float w[FOLD_PARAMS_SIZE], pw[FOLD_PREPARED_SIZE];\n"
        "int main(void)\n{\n    FILE *f = fopen(\"bad.bin\", \"rb\");\n"
        "    if (!f || fread(w, sizeof(float), FOLD_PARAMS_SIZE, f) != FOLD_PARAMS_SIZE) return 3;\n    fclose(f);\n"
        "    int bad = fold_prepare(w, pw);\n"
        "    for (int i = 0; i < fold_num_params; i++)\n"
        "        if (fold_params[i].name[0] && !__builtin_strcmp(fold_params[i].name, \"batch_normalization_2/moving_variance\"))\n"
        "            w[fold_params[i].offset + 1] = 1.0f;\n"
        "    printf(\"%d %d\\n\", bad, fold_prepare(w, pw));\n    return 0;\n}\n";
    char mpath[4300];
    snprintf(mpath, sizeof mpath, "%s/prep.c", plain.dir);
    ck_assert_int_eq(tu_write(mpath, prep_main, strlen(prep_main)), 0);
    const char *extra = getenv("KDSL_CODEGEN_CFLAGS") ? getenv("KDSL_CODEGEN_CFLAGS") : "";
    ck_assert_int_eq(RUN(&out, "cd %s && %s compile f.kdsl -o fold.c --inference-only && "
                               "gcc -std=c99 -Wall -Werror %s -I%s prep.c fold.c %s -lm -o prep && ./prep",
                         plain.dir, tu_kdslc(), extra, tu_src("runtime"), runtime_lib("gcc")), 0);
    ck_assert_msg(strstr(out, "-1 0"), "prepare with a negative moving variance, then a valid one: %s", out);
    free(out);
    free(params);
    gen_free(&plain);
}
END_TEST

/* The dropout hash and the initialisers are the runtime's (runtime/random.h,
 * random.c): model.c calls them and carries no copy of SplitMix64. */
START_TEST(random_from_runtime)
{
    gen g;
    gen_build(&g, "cg-random", small_text, NULL, "gcc");
    char cpath[4200];
    snprintf(cpath, sizeof cpath, "%s/%s.c", g.dir, g.name);
    char *c = read_text(cpath);
    ck_assert_msg(strstr(c, "kdk_dropout_bits(") && strstr(c, "kdk_sinit_uniform("), "model.c calls neither");
    ck_assert_msg(!strstr(c, "0x9e3779b97f4a7c15") && !strstr(c, "kd_mix64") && !strstr(c, "static void kd_init"),
                  "model.c defines its own random bits");
    free(c);
    gen_free(&g);
}
END_TEST

/* A bad option or a model that does not check leaves an existing output alone. */
START_TEST(cli_errors)
{
    const char *dir = tu_tmpdir("cg-cli");
    char *out = NULL;
    ck_assert_int_eq(RUN(&out, "cd %s && echo keep > m.c && echo keep > m.h && "
             "printf 'model m {\\n  input x: [3]\\n  Dense(2, activation: nope)\\n}\\n' > bad.kdsl && "
             "%s compile bad.kdsl -o m.c; echo rc=$?; cat m.c m.h",
             dir, tu_kdslc()), 0);
    ck_assert_msg(strstr(out, "rc=1") && strstr(out, "keep\nkeep\n"), "%s", out);
    free(out);
    ck_assert_int_eq(RUN(&out, "%s compile %s --batch 0", tu_kdslc(), tu_src("samples/mlp.kdsl")), 2);
    ck_assert_msg(strstr(out, "--batch"), "%s", out);
    free(out);
    ck_assert_int_eq(RUN(&out, "%s compile %s --dtype f16", tu_kdslc(), tu_src("samples/mlp.kdsl")), 2);
    free(out);
    ck_assert_int_eq(RUN(&out, "%s compile %s --target armv7", tu_kdslc(), tu_src("samples/mlp.kdsl")), 2);
    ck_assert_msg(strstr(out, "--target is portable, native, x86-64, x86-64-v2, x86-64-v3 or x86-64-v4, not 'armv7'"), "%s",
                  out);
    free(out);
    ck_assert_int_eq(RUN(&out, "cd %s && %s compile %s -o x.c --embed-weights missing.safetensors", dir, tu_kdslc(),
             tu_src("samples/mlp.kdsl")), 1);
    ck_assert_msg(strstr(out, "missing.safetensors"), "%s", out);
    free(out);
    /* Two outputs and a train block: a warning, and init + predict only. */
    ck_assert_int_eq(RUN(&out, "cd %s && printf 'model two {\n  input x: [3]\n  output a = Dense(x, 2)\n"
                               "  output b = Dense(x, 1)\n}\ntrain two {\n  loss: MeanSquaredError()\n"
                               "  optimizer: SGD()\n}\n' > two.kdsl && %s compile two.kdsl -o two.c && "
                               "! grep -q two_train_step two.h && grep -q two_predict two.h",
                         dir, tu_kdslc()), 0);
    ck_assert_msg(strstr(out, "warning:") && strstr(out, "2 outputs"), "%s", out);
    free(out);
    /* --stage grad: loss, prediction and the 10 weight gradients of the MLP, with the vjps' ops */
    ck_assert_int_eq(RUN(&out, "%s ir %s --stage grad > %s/grad.txt && grep -c '^output' %s/grad.txt && "
                               "grep -c 'relu_grad(' %s/grad.txt && grep -c 'softmax_xent_grad(' %s/grad.txt",
                         tu_kdslc(), tu_src("samples/mlp.kdsl"), dir, dir, dir, dir), 0);
    ck_assert_str_eq(out, "12\n4\n1\n");
    free(out);
    ck_assert_int_eq(RUN(&out, "%s ir %s --stage grad", tu_kdslc(), tu_src("samples/softmax.kdsl")), 1);
    ck_assert_msg(strstr(out, "--stage grad: model 'softmax' has no train block with a loss"), "%s", out);
    free(out);
    ck_assert_int_eq(RUN(&out, "%s ir %s --stage loops | head -1", tu_kdslc(), tu_src("samples/mlp.kdsl")), 0);
    ck_assert_msg(strstr(out, "program mlp"), "%s", out);
    free(out);
    /* --stage layout: each variable's offsets in params, grads and (Adam's two slots per weight) opt_state */
    ck_assert_int_eq(RUN(&out, "%s ir %s --stage layout | sed -n '1p;3p;14p'", tu_kdslc(), tu_src("samples/mlp.kdsl")), 0);
    ck_assert_str_eq(out, "# params 244522, opt_state 489044, grads 244522 (elements)\n"
                          "dense/bias                               weight [256]            params 200704  grads 200704\n"
                          "dense/bias/adam_m                        slot   [256]            opt_state 401408\n");
    free(out);
    /* every stage the pipeline names, in order, and nothing else */
    ck_assert_int_eq(RUN(&out, "%s ir %s --stage nope", tu_kdslc(), tu_src("samples/mlp.kdsl")), 2);
    ck_assert_msg(strstr(out, "unknown stage 'nope' (ast, graph, infer, grad, layout, opt, loops)"), "%s", out);
    free(out);
    for (int i = 0; i < KD_STAGE_COUNT; i++) {
        ck_assert_int_eq(RUN(&out, "%s ir %s --stage %s > /dev/null", tu_kdslc(), tu_src("samples/mlp.kdsl"),
                             kd_stage_names[i]), 0);
        free(out);
    }
    /* a model whose C API has no training code still shows its gradient graph: loss, first output, 4 gradients */
    ck_assert_int_eq(RUN(&out, "cd %s && %s ir two.kdsl --stage grad 2>/dev/null | grep -c '^output'", dir, tu_kdslc()), 0);
    ck_assert_str_eq(out, "6\n");
    free(out);
}
END_TEST

/* ---- whole models against PyTorch ------------------------------------------------------ */

/* tests/fixtures/torch_*.kdsl against float64 PyTorch: the fixture files were
 * made by tests/fixtures/make_fixtures.py (Debian's python3-torch) and are
 * committed, so this needs no PyTorch. Each model is built with --dtype f64
 * from the same float32 weights and inputs; grad gives the loss and every
 * trainable weight's gradient, train_step (learning rate 0) the forward output
 * in training mode (batch statistics for batch normalization), and predict
 * the output too for the models without batch normalization.
 * The rule, per tensor: max_i |a_i - b_i| / max(max_i |b_i|, 1e-6) < 1e-5. */
static const char *const torch_models[] = {"torch_mlp", "torch_cnn", "torch_res", "torch_custom", "torch_closs",
                                           "torch_cweight"};

/* A float tensor's elements as doubles (malloc'd). */
static double *tensor_f64(const kdh_tensor *t)
{
    long n = (long)kdh_tensor_count(t);
    double *d = malloc((size_t)(n ? n : 1) * sizeof *d);
    ck_assert_msg(t->dtype == KDH_F32 || t->dtype == KDH_F64, "tensor %s: not F32 or F64", t->name ? t->name : "");
    for (long i = 0; i < n; i++) d[i] = t->dtype == KDH_F32 ? ((const float *)t->data)[i] : ((const double *)t->data)[i];
    return d;
}

static double torch_rel(const double *a, const double *b, long n)
{
    double diff = 0, scale = 1e-6;
    for (long i = 0; i < n; i++) {
        diff = fmax(diff, fabs(a[i] - b[i]));
        if (a[i] != a[i]) diff = INFINITY;
        scale = fmax(scale, fabs(b[i]));
    }
    return diff / scale;
}

/* Compares n values with the reference tensor `name`; returns the relative error. */
static double torch_check(const char *model, const double *got, long n, const kdh_tensor_list *ref, const char *name)
{
    const kdh_tensor *t = kdh_list_find(ref, name);
    ck_assert_msg(t != NULL, "%s: no reference tensor %s", model, name);
    ck_assert_int_eq(kdh_tensor_count(t), n);
    double *want = tensor_f64(t);
    double e = torch_rel(got, want, n);
    ck_assert_msg(e < 1e-5, "%s: %s: relative error %g against PyTorch", model, name, e);
    free(want);
    return e;
}

START_TEST(torch_models_match)
{
    const char *name = torch_models[_i];
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.kdsl", tu_src("tests/fixtures"), name);
    char *text = read_text(path);
    gen g;
    kd_codegen_options o = {.f64 = true};
    gen_build(&g, name, text, &o, "gcc");
    free(text);

    kdh_error err;
    kdh_tensor_list init, ref;
    kdh_tensor xt, yt;
#define FIXTURE(suffix) (snprintf(path, sizeof path, "%s/%s%s", tu_src("tests/fixtures"), name, suffix), path)
    ck_assert_msg(kdh_safetensors_read(FIXTURE("_init.safetensors"), NULL, &init, &err) == 0, "%s", err.msg);
    ck_assert_msg(kdh_safetensors_read(FIXTURE("_ref.safetensors"), NULL, &ref, &err) == 0, "%s", err.msg);
    ck_assert_msg(kdh_npy_read(FIXTURE("_x.npy"), NULL, &xt, &err) == 0, "%s", err.msg);
    ck_assert_msg(kdh_npy_read(FIXTURE("_y.npy"), NULL, &yt, &err) == 0, "%s", err.msg);
#undef FIXTURE
    ck_assert_int_eq(g.p->ninputs, 1);
    int batch = (int)xt.shape[0];
    long np = g.p->params_size, no = g.p->opt_size, nlab = g.p->labels[0].elems, nout = g.p->outputs[0].elems * batch;
    ck_assert_int_eq(kdh_tensor_count(&xt), g.p->inputs[0].elems * batch);
    ck_assert_int_eq(kdh_tensor_count(&yt), nlab * batch);
    double *x = tensor_f64(&xt), *y = tensor_f64(&yt);
    double *params = calloc((size_t)np + 1, sizeof *params);
    int nweights = 0, ntrainable = 0;
    for (int v = 0; v < g.m->vars.len; v++) {
        const kd_var *var = g.m->vars.items[v];
        if (var->kind == VAR_SLOT) continue;
        const kdh_tensor *t = kdh_list_find(&init, var->name);
        ck_assert_msg(t != NULL, "%s: no initial value for %s", name, var->name);
        ck_assert_int_eq(kdh_tensor_count(t), ir_shape_elems(&var->shape));
        double *d = tensor_f64(t);
        memcpy(params + var->offset, d, (size_t)ir_shape_elems(&var->shape) * sizeof *d);
        free(d);
        nweights++;
        ntrainable += var->kind == VAR_WEIGHT && var->trainable;
    }
    ck_assert_int_eq((long)init.count, nweights);
    ck_assert_int_eq((long)ref.count, 2 + ntrainable);   /* output, loss, one gradient per trainable weight */

    double worst = 0;
    /* grad: the loss and the gradients */
    dlist in = {0};
    push(&in, batch);
    push(&in, 1);
    push_all(&in, params, np);
    push_all(&in, x, g.p->inputs[0].elems * batch);
    push_all(&in, y, nlab * batch);
    long n;
    double *out = gen_run(&g, "grad", in.v, in.n, &n);
    ck_assert_int_eq(n, 1 + g.p->grads_size + np);
    worst = fmax(worst, torch_check(name, out, 1, &ref, "loss"));
    for (int v = 0; v < g.m->vars.len; v++) {
        const kd_var *var = g.m->vars.items[v];
        if (var->kind != VAR_WEIGHT || !var->trainable) continue;
        char gname[300];
        snprintf(gname, sizeof gname, "grad/%s", var->name);
        worst = fmax(worst, torch_check(name, out + 1 + g.p->grad_offset[v], ir_shape_elems(&var->shape), &ref, gname));
    }
    free(out), free(in.v);

    /* train_step with learning rate 0: the forward output in training mode */
    in = (dlist){0};
    push(&in, batch);
    push(&in, 1);
    push(&in, 0);
    push_all(&in, params, np);
    for (long i = 0; i < no; i++) push(&in, 0);
    push_all(&in, x, g.p->inputs[0].elems * batch);
    push_all(&in, y, nlab * batch);
    out = gen_run(&g, "train", in.v, in.n, &n);
    ck_assert_int_eq(n, 1 + np + no + nout);
    worst = fmax(worst, torch_check(name, out, 1, &ref, "loss"));
    worst = fmax(worst, torch_check(name, out + 1 + np + no, nout, &ref, "output"));
    free(out), free(in.v);

    /* predict, where inference computes the same function */
    bool has_bn = false;
    for (int v = 0; v < g.m->vars.len; v++) has_bn |= ((const kd_var *)g.m->vars.items[v])->kind == VAR_STATE;
    if (!has_bn) {
        in = (dlist){0};
        push(&in, batch);
        push_all(&in, params, np);
        push_all(&in, x, g.p->inputs[0].elems * batch);
        out = gen_run(&g, "predict", in.v, in.n, &n);
        ck_assert_int_eq(n, nout);
        worst = fmax(worst, torch_check(name, out, nout, &ref, "output"));
        free(out), free(in.v);
    }
    fprintf(stderr, "%s: largest relative error against PyTorch %.3g\n", name, worst);

    free(x), free(y), free(params);
    kdh_tensor_free(&xt), kdh_tensor_free(&yt);
    kdh_list_free(&init), kdh_list_free(&ref);
    gen_free(&g);
}
END_TEST

static Suite *codegen_suite(void)
{
    Suite *s = suite_create("codegen");
    TCase *t = tcase_create("passes");
    tcase_add_test(t, fuse_mlp_epilogues);
    tcase_add_test(t, fuse_activations);
    tcase_add_test(t, simplify_cse_dce);
    suite_add_tcase(s, t);
    t = tcase_create("c");
    tcase_set_timeout(t, 600);
    tcase_add_loop_test(t, softmax_sample, 0, 2);
    tcase_add_loop_test(t, mlp_target, 0, 2);
    tcase_add_loop_test(t, mlp_predict, 0, 2);
    tcase_add_test(t, mlp_arena);
    tcase_add_test(t, disjoint_arena);
    tcase_add_test(t, large_arena_online);
    tcase_add_test(t, loops_structure);
    tcase_add_loop_test(t, no_passes, 0, 2);
    tcase_add_loop_test(t, cnn_ops_predict, 0, 8);
    tcase_add_loop_test(t, acts_predict, 0, 2);
    tcase_add_loop_test(t, grad_f64, 0, 9);
    tcase_add_loop_test(t, train_step_f64, 0, 5);
    tcase_add_loop_test(t, torch_models_match, 0, (int)(sizeof torch_models / sizeof *torch_models));
    tcase_add_test(t, init_values);
    tcase_add_test(t, cortex_m4);
    tcase_add_test(t, embedding_c);
    tcase_add_test(t, scan_code_size);
    tcase_add_test(t, deterministic);
    tcase_add_loop_test(t, samples_compile, 0, 2);
    tcase_add_test(t, embed_weights);
    tcase_add_test(t, prepared_packs_dense);
    tcase_add_test(t, embed_folds_batchnorm);
    tcase_add_test(t, random_from_runtime);
    tcase_add_test(t, cli_errors);
    suite_add_tcase(s, t);
    t = tcase_create("direct");   /* --no-workspace's loop nests */
    tcase_set_timeout(t, 600);
    tcase_add_loop_test(t, direct_predict, 0, 4);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    for (size_t i = 0; i < sizeof compilers / sizeof compilers[0]; i++)
        if (!skip_compiler(compilers[i]) && build_runtime(compilers[i])) return EXIT_FAILURE;
    return tu_run_suite(codegen_suite());
}
