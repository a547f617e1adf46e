/* test_train.c — `kdslc train / evaluate / predict` end to end, and the host
 * driver's parts (runtime/host/train.h, dataset.h, checkpoint.h, progress.h).
 *
 * Reference values: tests/fixtures/make_fixtures.py (PyTorch) wrote the
 * sgd_* fixtures — initial weights, 8 samples, and the weights after one SGD
 * step with learning rate 1 on one batch of all 8. Other data is made here.
 *
 * KDSL_TEST_BACKEND=cc in the environment runs the test build of kdslc
 * (kdslc_cc.c: the C backend of cc_backend.c instead of the JIT); the suite
 * passes either way. */
#include "testutil.h"
#include "host/callbacks.h"
#include "host/checkpoint.h"
#include "host/dataset.h"
#include "host/progress.h"
#include "host/train.h"
#include "host/tensor_file.h"

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

static void write_npy_f32(const char *path, int rank, const int64_t *shape, const float *v)
{
    kdh_tensor t;
    kdh_error err;
    ck_assert_int_eq(kdh_tensor_alloc(&t, NULL, KDH_F32, rank, shape, &err), 0);
    memcpy(t.data, v, t.nbytes);
    ck_assert_msg(kdh_npy_write(path, &t, &err) == 0, "%s", err.msg);
    kdh_tensor_free(&t);
}

static void write_npy_i64(const char *path, int64_t n, const int64_t *v)
{
    kdh_tensor t;
    kdh_error err;
    ck_assert_int_eq(kdh_tensor_alloc(&t, NULL, KDH_I64, 1, &n, &err), 0);
    memcpy(t.data, v, t.nbytes);
    ck_assert_msg(kdh_npy_write(path, &t, &err) == 0, "%s", err.msg);
    kdh_tensor_free(&t);
}

static kdh_tensor_list read_st(const char *path)
{
    kdh_tensor_list l;
    kdh_error err;
    ck_assert_msg(kdh_safetensors_read(path, NULL, &l, &err) == 0, "%s", err.msg);
    return l;
}

/* A small deterministic generator for test data. */
static uint64_t rng_state = 12345;
static double uniform(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

/* A 3-class problem in 8 dimensions: the class is the sign pattern of two sums. */
static void make_classes(const char *dir, int n)
{
    float *x = malloc((size_t)n * 8 * sizeof *x);
    int64_t *y = malloc((size_t)n * sizeof *y);
    rng_state = 99;
    for (int i = 0; i < n; i++) {
        double a = 0, b = 0;
        for (int j = 0; j < 8; j++) {
            x[i * 8 + j] = (float)(uniform() * 2 - 1);
            if (j < 4) a += x[i * 8 + j];
            else b += x[i * 8 + j];
        }
        y[i] = a > 0 ? (b > 0 ? 0 : 1) : 2;
    }
    int64_t xs[2] = {n, 8};
    write_npy_f32(tu_path(dir, "x.npy"), 2, xs, x);
    write_npy_i64(tu_path(dir, "y.npy"), n, y);
    free(x);
    free(y);
}

static bool same_file(const char *a, const char *b)
{
    size_t la, lb;
    char *da = tu_read(a, &la), *db = tu_read(b, &lb);
    bool same = da && db && la == lb && memcmp(da, db, la) == 0;
    free(da);
    free(db);
    return same;
}

/* ---- (1) one SGD step against PyTorch ------------------------------------------------- */

/* Trains `name` from its initial weights with `flags` and compares the saved
 * weights with the fixture NAME_SUFFIX.safetensors. */
static void steps_match_torch_with(const char *program, const char *name, const char *flags, const char *suffix)
{
    const char *dir = tu_tmpdir(name);
    char fx[4][1024];
    const char *what[4] = {"", "_x.npy", "_y.npy", "_init.safetensors"};
    for (int i = 0; i < 4; i++) snprintf(fx[i], sizeof fx[i], "%s/tests/fixtures/%s%s", tu_source_root(), name, what[i]);
    snprintf(fx[0], sizeof fx[0], "%s/tests/fixtures/%s", tu_source_root(), program);
    const char *out = tu_path(dir, "after.safetensors");
    char *log;
    int rc = tu_kdslc_run(&log, "train %s.kdsl --data %s,%s --weights %s --save %s --batch-size 8 %s", fx[0], fx[1], fx[2], fx[3],
                   out, flags);
    ck_assert_msg(rc == 0, "kdslc failed:\n%s", log);
    ck_assert_has(log, "samples/s");
    free(log);

    char expected[1024];
    snprintf(expected, sizeof expected, "%s/tests/fixtures/%s_%s.safetensors", tu_source_root(), name, suffix);
    kdh_tensor_list got = read_st(out), want = read_st(expected), init = read_st(fx[3]);
    ck_assert_uint_eq(got.count, want.count);
    for (size_t i = 0; i < want.count; i++) {
        const kdh_tensor *w = &want.items[i], *g = kdh_list_find(&got, w->name), *s = kdh_list_find(&init, w->name);
        ck_assert_msg(g != NULL, "%s: no %s in the saved weights", name, w->name);
        ck_assert_str_eq(got.items[i].name, w->name);   /* the table's order */
        ck_assert_int_eq(g->dtype, KDH_F32);
        ck_assert_uint_eq(g->nbytes, w->nbytes);
        const float *gv = g->data, *wv = w->data, *sv = s->data;
        double moved = 0;
        for (int64_t k = 0; k < kdh_tensor_count(w); k++) {
            double tol = 1e-4 * fabs(wv[k]) + 1e-6;
            ck_assert_msg(fabs(gv[k] - wv[k]) <= tol, "%s %s[%lld]: kdsl %.9g, PyTorch %.9g", name, w->name,
                          (long long)k, gv[k], wv[k]);
            moved += fabs(wv[k] - sv[k]);
        }
        ck_assert_msg(moved > 1e-3, "%s %s: the step did not move the weights", name, w->name);
    }
    kdh_list_free(&got);
    kdh_list_free(&want);
    kdh_list_free(&init);
}

static void steps_match_torch(const char *name, const char *flags, const char *suffix)
{
    steps_match_torch_with(name, name, flags, suffix);
}

/* class_weight through kdslc train (the JIT): one SGD step at learning rate 1
 * from tests/fixtures/torch_cweight's weights is those weights minus
 * PyTorch's gradient of Keras' class-weighted loss (make_fixtures.py). */
START_TEST(class_weight_step_matches_torch)
{
    const char *dir = tu_tmpdir("cweight");
    char fx[1024];
    snprintf(fx, sizeof fx, "%s", tu_src("tests/fixtures/torch_cweight"));
    const char *out = tu_path(dir, "after.safetensors");
    char *log;
    int rc = tu_kdslc_run(&log, "train %s.kdsl --data %s_x.npy,%s_y.npy --weights %s_init.safetensors --save %s "
                          "--learning-rate 1 --epochs 1", fx, fx, fx, fx, out);
    ck_assert_msg(rc == 0, "kdslc failed:\n%s", log);
    free(log);
    char path[1100];
    snprintf(path, sizeof path, "%s_init.safetensors", fx);
    kdh_tensor_list got = read_st(out), init = read_st(path);
    snprintf(path, sizeof path, "%s_ref.safetensors", fx);
    kdh_tensor_list ref = read_st(path);
    for (size_t i = 0; i < init.count; i++) {
        const kdh_tensor *w0 = &init.items[i], *w1 = kdh_list_find(&got, w0->name);
        char gname[300];
        snprintf(gname, sizeof gname, "grad/%s", w0->name);
        const kdh_tensor *g = kdh_list_find(&ref, gname);
        ck_assert_msg(w1 && g && g->dtype == KDH_F64, "%s: missing", w0->name);
        double scale = 1e-6;
        for (int64_t k = 0; k < kdh_tensor_count(g); k++) scale = fmax(scale, fabs(((const double *)g->data)[k]));
        for (int64_t k = 0; k < kdh_tensor_count(g); k++) {
            double step = (double)((const float *)w0->data)[k] - ((const float *)w1->data)[k];
            double want = ((const double *)g->data)[k];
            ck_assert_msg(fabs(step - want) <= 2e-6 * scale + 1e-7, "%s[%lld]: kdsl's step %.9g, PyTorch's gradient %.9g",
                          w0->name, (long long)k, step, want);
        }
    }
    kdh_list_free(&got);
    kdh_list_free(&init);
    kdh_list_free(&ref);
}
END_TEST

START_TEST(sgd_step_mlp) { steps_match_torch("sgd_mlp", "--learning-rate 1 --epochs 1", "step"); }
END_TEST

START_TEST(sgd_step_cnn) { steps_match_torch("sgd_cnn", "--learning-rate 1 --epochs 1", "step"); }
END_TEST

/* Token ids through an Embedding, an LSTM and a GRU (PyTorch's gate orders
 * mapped to Keras'), one SGD step: the scatter-add, both loops over time
 * backwards (BPTT) and the summed recurrent gradients against PyTorch. */
START_TEST(sgd_step_lstm) { steps_match_torch("sgd_lstm", "--learning-rate 1 --epochs 1", "step"); }
END_TEST

/* Three Adam steps (the optimizer given on the command line overrides the
 * train block's SGD), against Keras' update rule computed with PyTorch. */
START_TEST(adam_steps_mlp) { steps_match_torch("sgd_mlp", "--optimizer adam --learning-rate 0.01 --epochs 3", "adam3"); }
END_TEST

/* Four SGD steps whose rate follows CosineDecay(0.5, decay_steps: 3,
 * alpha: 0.1): 0.5, 0.3875, 0.1625, 0.05 (the last past decay_steps). */
START_TEST(cosine_schedule_steps_mlp) { steps_match_torch_with("sgd_mlp_cosine", "sgd_mlp", "", "cosine4"); }
END_TEST

/* evaluate's loss is Keras' (the mean over samples), computed on the host:
 * on the initial weights it is PyTorch's loss of the fixture batch. */
START_TEST(evaluate_and_predict)
{
    const char *dir = tu_tmpdir("evaluate");
    const char *fx = tu_src("tests/fixtures/sgd_mlp");
    char *out;
    int rc = tu_kdslc_run(&out, "evaluate %s.kdsl --weights %s_init.safetensors --data %s_x.npy,%s_y.npy", fx, fx, fx, fx);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_has(out, "loss: 1.0938 - accuracy: ");   /* make_fixtures.py: sgd_mlp loss 1.093798 */
    free(out);

    const char *y = tu_path(dir, "y.npy");
    rc = tu_kdslc_run(&out, "predict %s.kdsl --weights %s_init.safetensors --input %s_x.npy -o %s", fx, fx, fx, y);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    kdh_tensor t;
    kdh_error err;
    ck_assert_msg(kdh_npy_read(y, NULL, &t, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(t.dtype, KDH_F32);
    ck_assert_int_eq(t.rank, 2);
    ck_assert_int_eq(t.shape[0], 8);
    ck_assert_int_eq(t.shape[1], 3);

    /* CSV on stdout: 8 rows of 3, the same numbers */
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s predict %s.kdsl --weights %s_init.safetensors --input %s_x.npy 2>/dev/null", tu_kdslc(),
             fx, fx, fx);
    rc = tu_run(cmd, &out);
    ck_assert_msg(rc == 0, "%s", out);
    kdh_tensor c;
    ck_assert_msg(kdh_csv_parse(out, strlen(out), "stdout", &c, NULL, &err) == 0, "%s\n%s", err.msg, out);
    ck_assert_int_eq(c.shape[0], 8);
    ck_assert_int_eq(c.shape[1], 3);
    for (int i = 0; i < 24; i++) ck_assert_float_eq_tol(((float *)c.data)[i], ((float *)t.data)[i], 1e-6);
    kdh_tensor_free(&c);
    kdh_tensor_free(&t);
    free(out);
}
END_TEST

/* A loss written as an expression (docs/language.md, "Custom losses"). */
static const char custom_loss_model[] =
    "model reg {\n"
    "    input x: [4]\n"
    "    Dense(8, activation: tanh)\n"
    "    output y = Dense(2)\n"
    "}\n"
    "train reg {\n"
    "    loss: %s\n"
    "    optimizer: Adam(0.01)\n"
    "    metrics: [mae, MeanMetricWrapper(mean(abs(y_pred - y_true)), name: \"abs_err\")]\n"
    "    batch_size: 16\n"
    "    epochs: 3\n"
    "    seed: 7\n"
    "}\n";

static const char *write_custom_loss_model(const char *dir, const char *file, const char *loss)
{
    char src[1024];
    snprintf(src, sizeof src, custom_loss_model, loss);
    const char *path = tu_path(dir, file);
    ck_assert_int_eq(tu_write(path, src, strlen(src)), 0);
    return path;
}

/* The "loss: X" figure kdslc evaluate prints; the metric written as an
 * expression (abs_err) prints what the built-in mae does. */
static double evaluated_loss(const char *model, const char *weights, const char *data)
{
    char *out;
    int rc = tu_kdslc_run(&out, "evaluate %s --weights %s --data %s", model, weights, data);
    ck_assert_msg(rc == 0, "%s", out);
    const char *at = strstr(out, "loss: "), *mae = strstr(out, " - mae: "), *expr = strstr(out, " - abs_err: ");
    ck_assert_msg(at && mae && expr, "%s", out);
    double v = strtod(at + 6, NULL), a = strtod(mae + 8, NULL), b = strtod(expr + 12, NULL);
    ck_assert_msg(a > 0.01 && a == b, "mae %.4f, abs_err %.4f:\n%s", a, b, out);
    free(out);
    return v;
}

/* The custom loss trains as the built-in one it equals, bit for bit, and the
 * host's evaluate (the loss graph run by the interpreter) gives the built-in
 * figure; a weight penalty in the expression shows in evaluate exactly. */
START_TEST(custom_loss_end_to_end)
{
    const char *dir = tu_tmpdir("custom_loss");
    enum { N = 100 };
    float x[N * 4], y[N * 2];
    rng_state = 5;
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < 4; j++) x[i * 4 + j] = (float)(uniform() * 2 - 1);
        y[i * 2] = x[i * 4] * x[i * 4 + 1];
        y[i * 2 + 1] = (float)sin(x[i * 4 + 2]);
    }
    write_npy_f32(tu_path(dir, "x.npy"), 2, (int64_t[]){N, 4}, x);
    write_npy_f32(tu_path(dir, "y.npy"), 2, (int64_t[]){N, 2}, y);
    char data[2048];
    snprintf(data, sizeof data, "%s,%s", tu_path(dir, "x.npy"), tu_path(dir, "y.npy"));

    struct { const char *builtin, *custom; } same[] = {
        {"mse", "mean(square(y_pred - y_true))"},
        {"MeanAbsoluteError()", "mean(abs(y - y_true))"},
    };
    for (size_t c = 0; c < sizeof same / sizeof same[0]; c++) {
        char builtin_w[1024], custom_w[1024], *out;
        const char *builtin = write_custom_loss_model(dir, "builtin.kdsl", same[c].builtin);
        snprintf(builtin_w, sizeof builtin_w, "%s", tu_path(dir, "builtin.safetensors"));
        int rc = tu_kdslc_run(&out, "train %s --data %s --save %s --validation-split 0.2", builtin, data, builtin_w);
        ck_assert_msg(rc == 0, "%s", out);
        free(out);
        const char *custom = write_custom_loss_model(dir, "custom.kdsl", same[c].custom);
        snprintf(custom_w, sizeof custom_w, "%s", tu_path(dir, "custom.safetensors"));
        rc = tu_kdslc_run(&out, "train %s --data %s --save %s --validation-split 0.2", custom, data, custom_w);
        ck_assert_msg(rc == 0, "%s", out);
        ck_assert_has(out, "val_loss: ");
        ck_assert_has(out, " - val_abs_err: ");
        /* the progress line: the metric as an expression runs as mae does, in training and validation */
        const char *mae = strstr(out, " - mae: "), *expr = strstr(out, " - abs_err: ");
        const char *vmae = strstr(out, " - val_mae: "), *vexpr = strstr(out, " - val_abs_err: ");
        ck_assert_msg(mae && expr && vmae && vexpr && !strncmp(mae + 8, expr + 12, 6) && !strncmp(vmae + 12, vexpr + 16, 6),
                      "%s", out);
        free(out);
        ck_assert_msg(same_file(builtin_w, custom_w), "%s as `%s` trained to other weights", same[c].builtin,
                      same[c].custom);
        double lb = evaluated_loss(tu_path(dir, "builtin.kdsl"), builtin_w, data);
        double lc = evaluated_loss(tu_path(dir, "custom.kdsl"), custom_w, data);
        ck_assert_msg(lb > 0.001 && lb == lc, "%s: evaluate %.4f, as an expression %.4f", same[c].builtin, lb, lc);
    }

    /* mse + 0.5 sum(dense/kernel^2): evaluate adds the penalty of the weights evaluated */
    const char *l2 = write_custom_loss_model(dir, "l2.kdsl", "mean(square(y_pred - y_true)) + 0.5 * sum(square(dense/kernel))");
    const char *w = tu_path(dir, "builtin.safetensors");
    double with = evaluated_loss(l2, w, data);
    double without = evaluated_loss(write_custom_loss_model(dir, "mse.kdsl", "mse"), w, data);
    kdh_tensor_list l = read_st(w);
    const kdh_tensor *k = kdh_list_find(&l, "dense/kernel");
    ck_assert_ptr_nonnull(k);
    double penalty = 0;
    for (int64_t i = 0; i < kdh_tensor_count(k); i++) penalty += 0.5 * ((const float *)k->data)[i] * ((const float *)k->data)[i];
    kdh_list_free(&l);
    ck_assert_msg(penalty > 0.1 && fabs(with - (without + penalty)) < 2e-4, "evaluate %.4f, want %.4f + %.4f", with,
                  without, penalty);
}
END_TEST

/* A model of two outputs, a loss per output and loss_weights (Keras'
 * compile(loss=[...], loss_weights=[...])). */
static const char two_losses_model[] =
    "model two {\n"
    "    input x: [4]\n"
    "    h = Dense(8, activation: tanh)\n"
    "    output a = Dense(h, 2)\n"
    "    output b = Dense(h, 1)\n"
    "}\n"
    "train two {\n"
    "    loss: %s\n"
    "    %s\n"
    "    optimizer: Adam(0.01)\n"
    "    batch_size: 16\n"
    "    epochs: 2\n"
    "}\n";

/* The per-output losses weigh into evaluate as the same sum written as one
 * expression does, and evaluate prints each output's own loss. (kdslc train
 * takes models of one output: the step's graph is checked in test_autodiff.) */
START_TEST(per_output_losses_and_weights)
{
    const char *dir = tu_tmpdir("two_losses");
    enum { N = 64 };
    float x[N * 4], ya[N * 2], yb[N];
    rng_state = 11;
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < 4; j++) x[i * 4 + j] = (float)(uniform() * 2 - 1);
        ya[i * 2] = x[i * 4] - x[i * 4 + 1];
        ya[i * 2 + 1] = x[i * 4 + 2] * x[i * 4 + 3];
        yb[i] = (float)cos(x[i * 4]);
    }
    write_npy_f32(tu_path(dir, "x.npy"), 2, (int64_t[]){N, 4}, x);
    write_npy_f32(tu_path(dir, "ya.npy"), 2, (int64_t[]){N, 2}, ya);
    write_npy_f32(tu_path(dir, "yb.npy"), 2, (int64_t[]){N, 1}, yb);
    char data[4096];
    snprintf(data, sizeof data, "%s,%s,%s", tu_path(dir, "x.npy"), tu_path(dir, "ya.npy"), tu_path(dir, "yb.npy"));
    /* weights: dense [4, 8], dense_1 [8, 2] (a), dense_2 [8, 1] (b) */
    kdh_tensor_list w;
    kdh_list_init(&w);
    kdh_error err;
    const struct { const char *name; int rank; int64_t shape[2]; } vars[] = {
        {"dense/kernel", 2, {4, 8}}, {"dense/bias", 1, {8}}, {"dense_1/kernel", 2, {8, 2}},
        {"dense_1/bias", 1, {2}}, {"dense_2/kernel", 2, {8, 1}}, {"dense_2/bias", 1, {1}},
    };
    for (size_t v = 0; v < sizeof vars / sizeof vars[0]; v++) {
        kdh_tensor *t = kdh_list_add(&w, vars[v].name, KDH_F32, vars[v].rank, vars[v].shape, &err);
        ck_assert_msg(t != NULL, "%s", err.msg);
        for (int64_t k = 0; k < kdh_tensor_count(t); k++) ((float *)t->data)[k] = (float)(uniform() - 0.5);
    }
    const char *weights = tu_path(dir, "w.safetensors");
    ck_assert_msg(kdh_safetensors_write_list(weights, &w, &err) == 0, "%s", err.msg);
    kdh_list_free(&w);

    const char *forms[2][2] = {
        {"[mse, MeanAbsoluteError()]", "loss_weights: [1, 0.5]"},
        {"mean(square(a - a_true)) + mean(abs(b - b_true)) * 0.5", ""},
    };
    double total[2];
    for (int f = 0; f < 2; f++) {
        char src[2048], *out;
        snprintf(src, sizeof src, two_losses_model, forms[f][0], forms[f][1]);
        const char *model = tu_path(dir, f ? "expr.kdsl" : "list.kdsl");
        ck_assert_int_eq(tu_write(model, src, strlen(src)), 0);
        int rc = tu_kdslc_run(&out, "evaluate %s --weights %s --data %s", model, weights, data);
        ck_assert_msg(rc == 0, "%s", out);
        const char *at = strstr(out, "loss: ");
        ck_assert_ptr_nonnull(at);
        total[f] = strtod(at + 6, NULL);
        if (f == 0) {   /* loss = a_loss + 0.5 b_loss, each output's own loss unweighted */
            const char *la = strstr(out, "a_loss: "), *lb = strstr(out, "b_loss: ");
            ck_assert_msg(la && lb, "%s", out);
            double a = strtod(la + 8, NULL), b = strtod(lb + 8, NULL);
            ck_assert_msg(a > 0.01 && b > 0.01 && fabs(total[0] - (a + 0.5 * b)) < 2e-4, "%s", out);
        } else {
            ck_assert_msg(!strstr(out, "a_loss"), "an expression is one loss:\n%s", out);
        }
        free(out);
    }
    ck_assert_msg(total[0] > 0.01 && fabs(total[0] - total[1]) < 2e-4, "evaluate: list %.4f, expression %.4f",
                  total[0], total[1]);
}
END_TEST

/* ---- (2) killed with SIGKILL mid-epoch, resumed: the same weights, bit for bit ------------- */

static pid_t spawn_slow_train(const char *model, const char *data, const char *ckpt, const char *save)
{
    pid_t pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        setenv("KDSL_TEST_SLOW_STEP_MS", "15", 1);
        FILE *devnull = freopen("/dev/null", "w", stdout);
        (void)devnull;
        execl(tu_kdslc(), tu_kdslc(), "train", model, "--data", data, "--checkpoint", ckpt, "--save", save, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

START_TEST(kill_and_resume_is_bit_identical)
{
    const char *dir = tu_tmpdir("resume");
    make_classes(dir, 512);   /* 32 steps of 16 per epoch */
    const char *model = tu_src("tests/fixtures/resume_mlp.kdsl");
    char data[4096];
    snprintf(data, sizeof data, "%s,%s", tu_path(dir, "x.npy"), tu_path(dir, "y.npy"));
    const char *whole = tu_path(dir, "whole.safetensors"), *resumed = tu_path(dir, "resumed.safetensors");
    const char *ckpt = tu_path(dir, "run.ckpt"), *ckpt_whole = tu_path(dir, "whole.ckpt");

    char *out;
    int rc = tu_kdslc_run(&out, "train %s --data %s --save %s --checkpoint %s", model, data, whole, ckpt_whole);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_has(out, "Epoch 3/3");
    free(out);

    /* Slow steps (15 ms: about 0.5 s an epoch); kill once epoch 1's checkpoint
     * is there and epoch 2 is under way. */
    pid_t pid = spawn_slow_train(model, data, ckpt, tu_path(dir, "never.safetensors"));
    struct stat st;
    double waited = 0;
    while (stat(ckpt, &st) != 0 && waited < 300) {
        sleep_s(0.01);
        waited += 0.01;
    }
    ck_assert_msg(waited < 300, "no checkpoint after %g s", waited);
    sleep_s(0.2);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the run ended before it was killed");
    ck_assert_int_ne(access(tu_path(dir, "never.safetensors"), F_OK), 0);

    kdh_tensor_list l = read_st(ckpt);
    ck_assert_str_eq(kdh_list_get_meta(&l, "kdsl.epoch"), "1");
    ck_assert_str_eq(kdh_list_get_meta(&l, "kdsl.step"), "32");
    ck_assert_ptr_nonnull(kdh_list_find(&l, "dense/kernel/adam_m"));
    ck_assert_ptr_nonnull(kdh_list_find(&l, "dense_1/bias/adam_v"));
    kdh_list_free(&l);

    rc = tu_kdslc_run(&out, "train %s --data %s --resume %s --checkpoint %s --save %s --history %s", model, data, ckpt, ckpt,
               resumed, tu_path(dir, "h.csv"));
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_has(out, "Resuming from");
    ck_assert_msg(strstr(out, "Epoch 1/3") == NULL, "the resumed run repeated epoch 1:\n%s", out);
    ck_assert_has(out, "Epoch 2/3");
    free(out);
    ck_assert_msg(same_file(whole, resumed), "the resumed run's weights differ from the uninterrupted run's");
    ck_assert_msg(same_file(ckpt, ckpt_whole), "the final checkpoints differ");

    /* The history carries epoch 1 over from the checkpoint. */
    char *h = tu_read(tu_path(dir, "h.csv"), NULL);
    ck_assert_ptr_nonnull(h);
    ck_assert_msg(!strncmp(h, "epoch,loss,accuracy,val_loss,val_accuracy\n1,", 44), "%s", h);
    ck_assert_has(h, "\n3,");
    free(h);
}
END_TEST

/* The thread count changes how the work is split (batch gather, kernels),
 * never the result: weights after two epochs at 1, 2 and 3 threads are the
 * same bytes, with a partial last batch (500 = 20 x 24 + 20). */
START_TEST(threads_train_the_same_weights)
{
    const char *dir = tu_tmpdir("threads");
    make_classes(dir, 500);
    const char *model = tu_src("tests/fixtures/resume_mlp.kdsl");
    char data[4096], w[3][4096];
    snprintf(data, sizeof data, "%s,%s", tu_path(dir, "x.npy"), tu_path(dir, "y.npy"));
    for (int t = 1; t <= 3; t++) {
        char name[32];
        snprintf(name, sizeof name, "w%d.safetensors", t);
        snprintf(w[t - 1], sizeof w[t - 1], "%s", tu_path(dir, name));
        char *out;
        int rc = tu_kdslc_run(&out, "train %s --data %s --epochs 2 --batch-size 24 --threads %d --save %s", model, data, t,
                       w[t - 1]);
        ck_assert_msg(rc == 0, "%s", out);
        ck_assert_has(out, "Epoch 2/2");
        free(out);
    }
    ck_assert_msg(same_file(w[0], w[1]), "weights trained at 2 threads differ from 1 thread's");
    ck_assert_msg(same_file(w[0], w[2]), "weights trained at 3 threads differ from 1 thread's");
}
END_TEST

/* A loss that turns NaN stops the run (exit 1), naming epoch and step; the
 * checkpoint of the last good epoch is left as it was. */
START_TEST(nan_loss_stops_and_keeps_checkpoint)
{
    const char *dir = tu_tmpdir("nanloss");
    const char *fx = tu_src("tests/fixtures/sgd_mlp");
    const char *ckpt = tu_path(dir, "c.ckpt"), *copy = tu_path(dir, "copy.ckpt");
    char *out;
    int rc = tu_kdslc_run(&out, "train %s.kdsl --data %s_x.npy,%s_y.npy --epochs 1 --batch-size 4 --learning-rate 0.1 --checkpoint %s",
                   fx, fx, fx, ckpt);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    size_t n;
    char *before = tu_read(ckpt, &n);
    ck_assert_int_eq(tu_write(copy, before, n), 0);
    free(before);
    ck_assert_fails(1, "at epoch 2, step 2/2",
                    "train %s.kdsl --data %s_x.npy,%s_y.npy --epochs 3 --learning-rate 1e30 --resume %s --checkpoint %s",
                    fx, fx, fx, ckpt, ckpt);
    ck_assert_msg(same_file(ckpt, copy), "the checkpoint changed");
}
END_TEST

/* ---- (3) Fashion-MNIST ---------------------------------------------------------------------- */

START_TEST(fashion_mnist_one_epoch)
{
    if (access(FMNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0) {
        fprintf(stderr, "fashion_mnist_one_epoch: skipped, no Fashion-MNIST in " FMNIST_DIR
                        " (apt install dataset-fashion-mnist)\n");
        return;
    }
    const char *dir = tu_tmpdir("fmnist");
    const char *hist = tu_path(dir, "h.json");
    char *out;
    int rc = tu_kdslc_run(&out, "train %s --epochs 1 --history %s --save %s", tu_src("samples/fmnist_mlp.kdsl"), hist,
                   tu_path(dir, "w.safetensors"));
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_has(out, "Train on 60000 samples");
    ck_assert_has(out, "validate on 10000 samples");
    ck_assert_has(out, "samples/s");
    ck_assert_msg(strchr(out, '\r') == NULL, "carriage returns in a pipe:\n%s", out);
    fprintf(stderr, "%s", out);
    free(out);
    char *h = tu_read(hist, NULL);
    ck_assert_ptr_nonnull(h);
    const char *va = strstr(h, "\"val_accuracy\"");
    ck_assert_ptr_nonnull(va);
    double acc = strtod(strchr(va, '[') + 1, NULL);
    ck_assert_msg(acc >= 0.80, "validation accuracy %g < 0.80 after one epoch", acc);
    free(h);

    /* evaluate on the test split agrees with the last validation */
    rc = tu_kdslc_run(&out, "evaluate %s --weights %s", tu_src("samples/fmnist_mlp.kdsl"), tu_path(dir, "w.safetensors"));
    ck_assert_msg(rc == 0, "%s", out);
    const char *a = strstr(out, "accuracy: ");
    ck_assert_ptr_nonnull(a);
    ck_assert_double_eq_tol(strtod(a + 10, NULL), acc, 1e-4);
    free(out);
}
END_TEST

/* ---- (5) linear regression recovers its line -------------------------------------------------- */

START_TEST(linear_regression_recovers_line)
{
    const char *dir = tu_tmpdir("linreg");
    enum { N = 256 };
    float x[N], y[N];
    rng_state = 5;
    for (int i = 0; i < N; i++) {
        x[i] = (float)(uniform() * 2 - 1);
        y[i] = 3 * x[i] + 2;
    }
    int64_t s1[1] = {N};
    write_npy_f32(tu_path(dir, "x.npy"), 1, s1, x);
    write_npy_f32(tu_path(dir, "y.npy"), 1, s1, y);
    const char *w = tu_path(dir, "w.safetensors");
    char *out;
    int rc = tu_kdslc_run(&out, "train %s --data %s,%s --save %s --history %s", tu_src("samples/linear_regression.kdsl"),
                   tu_path(dir, "x.npy"), tu_path(dir, "y.npy"), w, tu_path(dir, "h.csv"));
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_has(out, "Epoch 50/50");
    ck_assert_msg(strstr(out, "accuracy") == NULL, "accuracy without the metric:\n%s", out);
    free(out);
    kdh_tensor_list l = read_st(w);
    const kdh_tensor *wt = kdh_list_find(&l, "w"), *bt = kdh_list_find(&l, "b");
    ck_assert_msg(wt && bt, "no w and b in the weights");
    ck_assert_double_eq_tol(((float *)wt->data)[0], 3.0, 1e-2);
    ck_assert_double_eq_tol(((float *)bt->data)[0], 2.0, 1e-2);
    kdh_list_free(&l);

    /* The same from a CSV file (last column the target). */
    FILE *f = fopen(tu_path(dir, "d.csv"), "w");
    fprintf(f, "x,y\n");
    for (int i = 0; i < N; i++) fprintf(f, "%.9g,%.9g\n", x[i], y[i]);
    fclose(f);
    rc = tu_kdslc_run(&out, "train %s --data %s --save %s", tu_src("samples/linear_regression.kdsl"), tu_path(dir, "d.csv"), w);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    l = read_st(w);
    ck_assert_double_eq_tol(((float *)kdh_list_find(&l, "w")->data)[0], 3.0, 1e-2);
    ck_assert_double_eq_tol(((float *)kdh_list_find(&l, "b")->data)[0], 2.0, 1e-2);
    kdh_list_free(&l);
}
END_TEST

/* samples/text_bag.kdsl on token ids: an Embedding + GlobalAveragePooling1D
 * + Dense model learns whether most of a text's tokens are high ids (50..99)
 * from int32 .npy arrays (texts of 5 to 20 tokens, 0 padding the rest), to
 * at least 90% validation accuracy; evaluate and predict read int64 ids.
 * samples/text_rnn.kdsl (Embedding + SimpleRNN) learns it too. */
START_TEST(text_bag_learns_tokens)
{
    const char *dir = tu_tmpdir("text_bag");
    enum { N = 1024, T = 20 };
    kdh_tensor x, x64;
    kdh_error err;
    int64_t shape[2] = {N, T}, labels[N];
    ck_assert_int_eq(kdh_tensor_alloc(&x, NULL, KDH_I32, 2, shape, &err), 0);
    ck_assert_int_eq(kdh_tensor_alloc(&x64, NULL, KDH_I64, 2, shape, &err), 0);
    int32_t *ids = x.data;
    rng_state = 11;
    for (int i = 0; i < N; i++) {
        int len = 5 + (int)(uniform() * 16), high = 0;
        if (len % 2 == 0) len--;   /* no ties */
        for (int t = 0; t < T; t++) {
            ids[i * T + t] = t < len ? 1 + (int32_t)(uniform() * 99) : 0;
            high += t < len && ids[i * T + t] >= 50;
            ((int64_t *)x64.data)[i * T + t] = ids[i * T + t];
        }
        labels[i] = 2 * high > len;
    }
    ck_assert_msg(kdh_npy_write(tu_path(dir, "x.npy"), &x, &err) == 0, "%s", err.msg);
    ck_assert_msg(kdh_npy_write(tu_path(dir, "x64.npy"), &x64, &err) == 0, "%s", err.msg);
    kdh_tensor_free(&x);
    kdh_tensor_free(&x64);
    write_npy_i64(tu_path(dir, "y.npy"), N, labels);
    const char *model = tu_src("samples/text_bag.kdsl"), *w = tu_path(dir, "w.safetensors");
    char *out;
    int rc = tu_kdslc_run(&out, "train %s --data %s,%s --validation-split 0.2 --save %s --history %s", model,
                          tu_path(dir, "x.npy"), tu_path(dir, "y.npy"), w, tu_path(dir, "h.json"));
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_has(out, "Epoch 10/10");
    free(out);
    char *h = tu_read(tu_path(dir, "h.json"), NULL);
    ck_assert_ptr_nonnull(h);
    const char *l = strstr(h, "\"loss\""), *va = strstr(h, "\"val_accuracy\"");
    ck_assert_msg(l && va, "%s", h);
    double first_loss = strtod(strchr(l, '[') + 1, NULL), last_loss = 0, acc = 0;
    for (const char *p = strchr(l, '['); p && *p != ']'; p = strpbrk(p + 1, ",]")) last_loss = strtod(p + 1, NULL);
    for (const char *p = strchr(va, '['); p && *p != ']'; p = strpbrk(p + 1, ",]")) acc = strtod(p + 1, NULL);
    ck_assert_msg(last_loss < first_loss / 2, "loss %g -> %g:\n%s", first_loss, last_loss, h);
    ck_assert_msg(acc >= 0.9, "validation accuracy %g < 0.9:\n%s", acc, h);
    free(h);
    rc = tu_kdslc_run(&out, "evaluate %s --weights %s --data %s,%s", model, w, tu_path(dir, "x64.npy"),
                      tu_path(dir, "y.npy"));
    ck_assert_msg(rc == 0, "%s", out);
    const char *a = strstr(out, "accuracy: ");
    ck_assert_msg(a && strtod(a + 10, NULL) >= 0.9, "%s", out);
    free(out);
    rc = tu_kdslc_run(&out, "predict %s --weights %s --input %s -o %s", model, w, tu_path(dir, "x64.npy"),
                      tu_path(dir, "p.npy"));
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    kdh_tensor p;
    ck_assert_msg(kdh_npy_read(tu_path(dir, "p.npy"), NULL, &p, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(p.shape[0], N);
    int right = 0;
    for (int i = 0; i < N; i++) {
        const float *y = (const float *)p.data + 2 * i;
        right += (y[1] > y[0]) == (labels[i] == 1);
    }
    ck_assert_msg(right >= 0.9 * N, "predict: %d of %d right", right, N);
    kdh_tensor_free(&p);

    /* samples/text_rnn.kdsl: the same task read in order by a SimpleRNN (a loop over 20 steps) */
    rc = tu_kdslc_run(&out, "train %s --data %s,%s --history %s", tu_src("samples/text_rnn.kdsl"), tu_path(dir, "x.npy"),
                      tu_path(dir, "y.npy"), tu_path(dir, "r.json"));
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    h = tu_read(tu_path(dir, "r.json"), NULL);
    ck_assert_ptr_nonnull(h);
    l = strstr(h, "\"loss\"");
    const char *ta = strstr(h, "\"accuracy\"");
    ck_assert_msg(l && ta, "%s", h);
    first_loss = strtod(strchr(l, '[') + 1, NULL);
    for (const char *q = strchr(l, '['); q && *q != ']'; q = strpbrk(q + 1, ",]")) last_loss = strtod(q + 1, NULL);
    for (const char *q = strchr(ta, '['); q && *q != ']'; q = strpbrk(q + 1, ",]")) acc = strtod(q + 1, NULL);
    ck_assert_msg(last_loss < first_loss / 2 && acc >= 0.9, "text_rnn: loss %g -> %g, accuracy %g:\n%s", first_loss,
                  last_loss, acc, h);
    free(h);
}
END_TEST

/* ---- (4) bad weights, bad data, bad flags ------------------------------------------------------- */

static void write_weights(const char *path, const char *const *names, kdh_dtype dt, const int64_t (*shapes)[2],
                          const int *ranks, int n)
{
    kdh_tensor_list l;
    kdh_error err;
    kdh_list_init(&l);
    for (int i = 0; i < n; i++) ck_assert_ptr_nonnull(kdh_list_add(&l, names[i], dt, ranks[i], shapes[i], &err));
    ck_assert_int_eq(kdh_safetensors_write_list(path, &l, &err), 0);
    kdh_list_free(&l);
}

START_TEST(bad_weights_files)
{
    const char *dir = tu_tmpdir("badweights");
    const char *fx = tu_src("tests/fixtures/sgd_mlp");
    char data[4096];
    snprintf(data, sizeof data, "%s_x.npy,%s_y.npy", fx, fx);
    char init[4096];
    snprintf(init, sizeof init, "%s_init.safetensors", fx);
    size_t n;
    char *good = tu_read(init, &n);
    ck_assert_ptr_nonnull(good);

    const char *trunc = tu_path(dir, "truncated.safetensors");
    ck_assert_int_eq(tu_write(trunc, good, n - 10), 0);
    ck_assert_fails(1, "truncated.safetensors", "train %s.kdsl --data %s --weights %s --epochs 1", fx, data, trunc);
    ck_assert_fails(1, "truncated.safetensors", "evaluate %s.kdsl --data %s --weights %s", fx, data, trunc);
    ck_assert_fails(1, "truncated.safetensors", "predict %s.kdsl --input %s_x.npy --weights %s", fx, fx, trunc);

    const char *garbage = tu_path(dir, "garbage.safetensors");
    ck_assert_int_eq(tu_write(garbage, "\xff\xff\xff\xff\xff\xff\xff\x7fnot a header", 20), 0);
    ck_assert_fails(1, "garbage.safetensors", "train %s.kdsl --data %s --weights %s --epochs 1", fx, data, garbage);
    const char *empty = tu_path(dir, "empty.safetensors");
    ck_assert_int_eq(tu_write(empty, "", 0), 0);
    ck_assert_fails(1, "empty.safetensors", "train %s.kdsl --data %s --weights %s --epochs 1", fx, data, empty);
    ck_assert_fails(1, "nonexistent.safetensors", "train %s.kdsl --data %s --weights %s --epochs 1", fx, data,
                    tu_path(dir, "nonexistent.safetensors"));
    free(good);

    static const char *const names[] = {"dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias", "extra/kernel"};
    static const int64_t shapes[][2] = {{6, 5}, {5, 0}, {5, 3}, {3, 0}, {2, 2}};
    static const int ranks[] = {2, 1, 2, 1, 2};
    const char *w = tu_path(dir, "w.safetensors");

    write_weights(w, names, KDH_F32, shapes, ranks, 3);   /* dense_1/bias missing */
    ck_assert_fails(1, "missing tensor \"dense_1/bias\"", "train %s.kdsl --data %s --weights %s", fx, data, w);
    write_weights(w, names, KDH_F32, shapes, ranks, 5);   /* one too many */
    ck_assert_fails(1, "\"extra/kernel\" not in model 'sgd_mlp'", "train %s.kdsl --data %s --weights %s", fx, data, w);
    write_weights(w, names, KDH_F64, shapes, ranks, 4);   /* doubles */
    ck_assert_fails(1, "dtype F64", "evaluate %s.kdsl --data %s --weights %s", fx, data, w);
    static const int64_t wrong[][2] = {{6, 4}, {5, 0}, {5, 3}, {3, 0}};
    write_weights(w, names, KDH_F32, wrong, ranks, 4);    /* a kernel of the wrong shape */
    ck_assert_fails(1, "[6, 4]", "train %s.kdsl --data %s --weights %s", fx, data, w);
    ck_assert_fails(1, "dense/kernel", "train %s.kdsl --data %s --weights %s", fx, data, w);

    /* A NaN weight */
    kdh_tensor_list l = read_st(init);
    ((float *)kdh_list_find(&l, "dense/bias")->data)[2] = NAN;
    kdh_error err;
    ck_assert_int_eq(kdh_safetensors_write_list(w, &l, &err), 0);
    kdh_list_free(&l);
    ck_assert_fails(1, "NaN", "train %s.kdsl --data %s --weights %s", fx, data, w);

    /* A weights file is not a checkpoint */
    ck_assert_fails(1, "not a kdsl checkpoint", "train %s.kdsl --data %s --resume %s", fx, data, init);
}
END_TEST

START_TEST(bad_data_files)
{
    const char *dir = tu_tmpdir("baddata");
    const char *fx = tu_src("tests/fixtures/sgd_mlp");
    char init[4096];
    snprintf(init, sizeof init, "%s_init.safetensors", fx);
    float x[8 * 7] = {0};
    int64_t s87[2] = {8, 7}, s86[2] = {8, 6};
    write_npy_f32(tu_path(dir, "x7.npy"), 2, s87, x);
    ck_assert_fails(1, "do not fit model 'sgd_mlp'", "train %s.kdsl --data %s,%s_y.npy", fx, tu_path(dir, "x7.npy"), fx);
    ck_assert_fails(1, "[7]", "train %s.kdsl --data %s,%s_y.npy", fx, tu_path(dir, "x7.npy"), fx);
    ck_assert_fails(1, "[6]", "train %s.kdsl --data %s,%s_y.npy", fx, tu_path(dir, "x7.npy"), fx);

    x[13] = NAN;
    write_npy_f32(tu_path(dir, "xnan.npy"), 2, s86, x);
    ck_assert_fails(1, "NaN", "train %s.kdsl --data %s,%s_y.npy", fx, tu_path(dir, "xnan.npy"), fx);
    x[13] = INFINITY;
    write_npy_f32(tu_path(dir, "xinf.npy"), 2, s86, x);
    ck_assert_fails(1, "xinf.npy", "train %s.kdsl --data %s,%s_y.npy", fx, tu_path(dir, "xinf.npy"), fx);
    ck_assert_fails(1, "xinf.npy", "predict %s.kdsl --weights %s --input %s", fx, init, tu_path(dir, "xinf.npy"));

    int64_t labels[8] = {0, 1, 2, 3, 0, 1, 2, 0};
    write_npy_i64(tu_path(dir, "y3.npy"), 8, labels);
    ck_assert_fails(1, "outside the model's 3 classes", "train %s.kdsl --data %s_x.npy,%s", fx, fx, tu_path(dir, "y3.npy"));
    write_npy_i64(tu_path(dir, "y7.npy"), 7, labels);
    ck_assert_fails(1, "7 labels for 8 samples", "train %s.kdsl --data %s_x.npy,%s", fx, fx, tu_path(dir, "y7.npy"));

    size_t n;
    char *good = tu_read(tu_src("tests/fixtures/sgd_mlp_x.npy"), &n);
    ck_assert_int_eq(tu_write(tu_path(dir, "xtrunc.npy"), good, n - 7), 0);
    free(good);
    ck_assert_fails(1, "xtrunc.npy", "train %s.kdsl --data %s,%s_y.npy", fx, tu_path(dir, "xtrunc.npy"), fx);
    ck_assert_fails(1, "xtrunc.npy", "predict %s.kdsl --weights %s --input %s", fx, init, tu_path(dir, "xtrunc.npy"));
    ck_assert_int_eq(tu_write(tu_path(dir, "junk.npy"), "hello", 5), 0);
    ck_assert_fails(1, "junk.npy", "train %s.kdsl --data %s,%s_y.npy", fx, tu_path(dir, "junk.npy"), fx);

    ck_assert_int_eq(tu_write(tu_path(dir, "bad.csv"), "1,2,3,4,5,6,0\n1,2,x,4,5,6,1\n", 28), 0);
    ck_assert_fails(1, "bad.csv", "train %s.kdsl --data %s", fx, tu_path(dir, "bad.csv"));
    ck_assert_fails(1, "give X.npy,Y.npy", "train %s.kdsl --data %s_x.npy", fx, fx);
    ck_assert_fails(1, "no such file", "train %s.kdsl --data %s", fx, tu_path(dir, "nothing"));
    ck_assert_fails(1, "idx", "train %s.kdsl --data %s", fx, dir);   /* a directory without IDX files */
    ck_assert_fails(1, "validation split", "train %s.kdsl --data %s_x.npy,%s_y.npy --validation-split 0.01", fx, fx, fx);
}
END_TEST

START_TEST(bad_flags)
{
    const char *fx = tu_src("tests/fixtures/sgd_mlp.kdsl");
    ck_assert_fails(2, "did you mean '--epochs'", "train %s --epoch 3", fx);
    ck_assert_fails(2, "'--epochs' wants a whole number", "train %s --epochs three", fx);
    ck_assert_fails(2, "'--batch-size' wants a whole number", "train %s --batch-size 0", fx);
    ck_assert_fails(2, "'--learning-rate' wants a positive number", "train %s --learning-rate -1", fx);
    ck_assert_fails(2, "'--validation-split' wants a fraction", "train %s --validation-split 1.5", fx);
    ck_assert_fails(2, "'--normalize' wants auto, none or 255", "train %s --normalize 256", fx);
    ck_assert_fails(2, "'--input' does not apply to `kdslc train`", "train %s --input x.npy", fx);
    ck_assert_fails(2, "'--epochs' does not apply to `kdslc evaluate`", "evaluate %s --epochs 3", fx);
    ck_assert_fails(2, "needs a value", "train %s --save", fx);
    ck_assert_fails(2, "needs a model file", "train --epochs 3");
    ck_assert_fails(2, "needs --weights", "evaluate %s", fx);
    ck_assert_fails(2, "needs --input", "predict %s --weights w.safetensors", fx);
    ck_assert_fails(2, "did you mean 'adam'", "train %s --optimizer adamm", fx);
    ck_assert_fails(2, "unknown loss 'squared_hinge'", "train %s --loss squared_hinge", fx);
    ck_assert_fails(2, "give one of them", "train %s --weights a --resume b", fx);
    ck_assert_fails(2, "--restore-best-weights goes with --early-stopping N", "train %s --restore-best-weights", fx);
    ck_assert_fails(2, "which the train block's schedule computes", "train %s --reduce-lr-on-plateau 3",
                    tu_src("tests/fixtures/sgd_mlp_cosine.kdsl"));
    ck_assert_fails(2, "'--early-stopping' wants a whole number", "train %s --early-stopping -1", fx);
    /* no train block: --loss and --optimizer are needed */
    ck_assert_fails(2, "--loss and --optimizer", "train %s", tu_src("samples/tiny_mlp.kdsl"));
    ck_assert_fails(2, "did you mean 'train'", "trian %s", fx);
}
END_TEST

/* A model without a train block trains with --loss and --optimizer. */
START_TEST(train_without_train_block)
{
    const char *dir = tu_tmpdir("notrain");
    const char *model = tu_path(dir, "m.kdsl");
    const char *src = "model m {\n    input x: [6]\n    Dense(4, activation: relu)\n    Dense(3)\n}\n";
    ck_assert_int_eq(tu_write(model, src, strlen(src)), 0);
    const char *fx = tu_src("tests/fixtures/sgd_mlp");
    char *out;
    int rc = tu_kdslc_run(&out, "train %s --data %s_x.npy,%s_y.npy --loss sparse_categorical_crossentropy --from-logits "
                   "--optimizer sgd --epochs 2 --validation-split 0.25 --history %s",
                   model, fx, fx, tu_path(dir, "h.json"));
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_has(out, "Train on 6 samples");
    ck_assert_has(out, "validate on 2 samples");
    ck_assert_has(out, "val_accuracy: ");
    free(out);
    char *h = tu_read(tu_path(dir, "h.json"), NULL);
    ck_assert_ptr_nonnull(h);
    ck_assert_has(h, "\"epoch\":");
    ck_assert_has(h, "\"val_loss\":");
    free(h);
}
END_TEST

/* A directory of IDX files with MNIST's names (plain and gzip'd both work:
 * the reader detects gzip), and binary cross-entropy with targets as given. */
static void write_idx(const char *path, int rank, const int *dims, const uint8_t *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    unsigned char hdr[4] = {0, 0, 0x08, (unsigned char)rank};
    fwrite(hdr, 1, 4, f);
    for (int i = 0; i < rank; i++) {
        unsigned char d[4] = {(unsigned char)(dims[i] >> 24), (unsigned char)(dims[i] >> 16), (unsigned char)(dims[i] >> 8),
                              (unsigned char)dims[i]};
        fwrite(d, 1, 4, f);
    }
    fwrite(data, 1, n, f);
    fclose(f);
}

START_TEST(idx_directory_and_binary_labels)
{
    const char *dir = tu_tmpdir("idxdir");
    static uint8_t img[30 * 784], lab[30];
    for (int i = 0; i < 30 * 784; i++) img[i] = (uint8_t)((i * 7) % 256);
    for (int i = 0; i < 30; i++) lab[i] = (uint8_t)(i % 10);
    int di[3] = {20, 28, 28}, dl[1] = {20}, ti[3] = {10, 28, 28}, tl[1] = {10};
    write_idx(tu_path(dir, "train-images-idx3-ubyte"), 3, di, img, 20 * 784);
    write_idx(tu_path(dir, "train-labels-idx1-ubyte"), 1, dl, lab, 20);
    write_idx(tu_path(dir, "t10k-images-idx3-ubyte"), 3, ti, img + 20 * 784, 10 * 784);
    write_idx(tu_path(dir, "t10k-labels-idx1-ubyte"), 1, tl, lab + 20, 10);
    char *out;
    int rc = tu_kdslc_run(&out, "train %s --data %s --epochs 1 --batch-size 8", tu_src("samples/fmnist_cnn.kdsl"), dir);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_has(out, "Train on 20 samples");
    ck_assert_has(out, "validate on 10 samples");
    ck_assert_has(out, "3/3");   /* 8 + 8 + 4: the last partial batch is kept */
    free(out);

    /* binary cross-entropy on a sigmoid: labels [n] are the targets of output [1] */
    const char *model = tu_path(dir, "b.kdsl");
    const char *src = "model b {\n    input x: [8]\n    Dense(8, activation: relu)\n    Dense(1, activation: sigmoid)\n}\n"
                      "train b {\n    loss: BinaryCrossentropy()\n    optimizer: Adam(learning_rate: 0.01)\n"
                      "    metrics: [accuracy]\n    epochs: 30\n    validation_split: 0.25\n    validation_freq: 10\n}\n";
    ck_assert_int_eq(tu_write(model, src, strlen(src)), 0);
    enum { N = 400 };
    static float x[N * 8], y[N];
    rng_state = 3;
    for (int i = 0; i < N; i++) {
        double sum = 0;
        for (int j = 0; j < 8; j++) sum += x[i * 8 + j] = (float)(uniform() * 2 - 1);
        y[i] = sum > 0;
    }
    int64_t xs[2] = {N, 8}, ys[1] = {N};
    write_npy_f32(tu_path(dir, "bx.npy"), 2, xs, x);
    write_npy_f32(tu_path(dir, "by.npy"), 1, ys, y);
    rc = tu_kdslc_run(&out, "train %s --data %s,%s --history %s",
               model, tu_path(dir, "bx.npy"), tu_path(dir, "by.npy"), tu_path(dir, "h.csv"));
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    char *h = tu_read(tu_path(dir, "h.csv"), NULL);
    /* validation_freq: 10 validates after epochs 10, 20 and 30 only */
    const char *first = strstr(h, "\n1,"), *tenth = strstr(h, "\n10,");
    ck_assert_msg(first && tenth, "%s", h);
    ck_assert_msg(strncmp(strchr(first + 1, '\n') - 2, ",,", 2) == 0, "epoch 1 validated:\n%s", h);
    ck_assert_msg(strncmp(strchr(tenth + 1, '\n') - 2, ",,", 2) != 0, "epoch 10 not validated:\n%s", h);
    const char *last = strstr(h, "\n30,");
    ck_assert_msg(last != NULL, "%s", h);
    double ep, loss, acc, vloss, vacc;
    ck_assert_int_eq(sscanf(last + 1, "%lf,%lf,%lf,%lf,%lf", &ep, &loss, &acc, &vloss, &vacc), 5);
    ck_assert_msg(acc > 0.9 && vacc > 0.85, "binary accuracy %g, validation %g after 30 epochs", acc, vacc);
    free(h);
}
END_TEST

/* ---- the host parts on their own ---------------------------------------------------------------- */

START_TEST(progress_tty_and_plain)
{
    for (int tty = 0; tty < 2; tty++) {
        FILE *f = tmpfile();
        kdh_progress p;
        kdh_progress_init(&p, f, tty);
        kdh_progress_epoch_begin(&p, 1, 5, 1875);
        kdh_progress_step(&p, 937, 0.4821, 0.8275);
        kdh_progress_step(&p, 1875, 0.4821, 0.8275);
        kdh_progress_epoch_end(&p, 0.4821, 0.8275, 0.4012, 0.8561, 4.2, 3.9, 60000);
        long n = ftell(f);
        rewind(f);
        char buf[4096] = {0};
        ck_assert_int_eq(fread(buf, 1, (size_t)n, f), n);
        fclose(f);
        ck_assert_has(buf, "1875/1875");
        ck_assert_has(buf, "- loss: 0.4821 - accuracy: 0.8275 - val_loss: 0.4012 - val_accuracy: 0.8561 - 15385 samples/s\n");
        ck_assert_has(buf, " - 4s 2ms/step");
        if (tty) {
            ck_assert_has(buf, "Epoch 1/5\n");
            ck_assert_has(buf, "\r1875/1875 [==============================] - 4s");
            ck_assert_has(buf, " 937/1875 [=============>................] - ETA: ");
        } else {
            ck_assert_msg(strchr(buf, '\r') == NULL, "a carriage return in plain output: %s", buf);
            ck_assert_str_eq(buf, "Epoch 1/5 - 1875/1875 - 4s 2ms/step - loss: 0.4821 - accuracy: 0.8275 - val_loss: "
                                  "0.4012 - val_accuracy: 0.8561 - 15385 samples/s\n");
        }
    }
}
END_TEST

/* Metrics after accuracy, in the bar and the epoch's line, val_ for validation; NaN not shown. */
START_TEST(progress_shows_metrics)
{
    FILE *f = tmpfile();
    kdh_progress p;
    kdh_progress_init(&p, f, 1);
    const char *names[2] = {"auc", "mae"};
    kdh_progress_set_metrics(&p, 2, names);
    kdh_progress_epoch_begin(&p, 1, 2, 10);
    kdh_progress_step_metrics(&p, 10, 0.5, 0.75, (double[]){0.8125, 0.25});
    kdh_progress_epoch_end_metrics(&p, 0.5, 0.75, (double[]){0.8125, 0.25}, 0.625, NAN, (double[]){0.5, NAN}, 1, 1, 100);
    p.learning_rate = 1e-4;   /* ReduceLROnPlateau's, in Keras' format below 1e-3 */
    kdh_progress_epoch_end_metrics(&p, 0.5, 0.75, NULL, NAN, NAN, NULL, 1, 1, 100);
    long n = ftell(f);
    rewind(f);
    char buf[4096] = {0};
    ck_assert_int_eq(fread(buf, 1, (size_t)n, f), n);
    fclose(f);
    ck_assert_has(buf, " - ETA: 0s - loss: 0.5000 - accuracy: 0.7500 - auc: 0.8125 - mae: 0.2500");
    ck_assert_has(buf, " - loss: 0.5000 - accuracy: 0.7500 - auc: 0.8125 - mae: 0.2500 - val_loss: 0.6250 - val_auc: 0.5000 - 100 samples/s\n");
    ck_assert_has(buf, " - loss: 0.5000 - accuracy: 0.7500 - learning_rate: 1.0000e-04 - 100 samples/s\n");
}
END_TEST

/* The history's metric columns: CSV and JSON under Keras' names, back from a
 * checkpoint's JSON by name, and moved by name when the metrics change. */
START_TEST(history_metric_columns)
{
    const char *dir = tu_tmpdir("history_metrics");
    kdh_history h = {0};
    const char *names[2] = {"auc", "top3"};
    kdh_history_set_metrics(&h, 2, names);
    kdh_epoch_log r = kdh_epoch_log_empty(1);
    r.loss = 0.5, r.metrics[0] = 0.75, r.metrics[1] = 1, r.val_loss = 0.25, r.val_metrics[1] = 0.5;
    ck_assert_int_eq(kdh_history_add(&h, &r), 0);
    kdh_error err;
    ck_assert_int_eq(kdh_history_write(tu_path(dir, "h.csv"), &h, &err), 0);
    char *csv = tu_read(tu_path(dir, "h.csv"), NULL);
    ck_assert_str_eq(csv, "epoch,loss,accuracy,auc,top3,val_loss,val_accuracy,val_auc,val_top3\n1,0.5,,0.75,1,0.25,,,0.5\n");
    free(csv);
    ck_assert_double_eq(kdh_epoch_log_value(&h, &h.rows[0], "val_top3"), 0.5);
    ck_assert(isnan(kdh_epoch_log_value(&h, &h.rows[0], "val_auc")));
    ck_assert(isnan(kdh_epoch_log_value(&h, &h.rows[0], "precision")));
    char *s = kdh_history_to_json(&h);
    kdh_history back;
    ck_assert_int_eq(kdh_history_from_json(s, &back, "ckpt", &err), 0);
    free(s);
    ck_assert_int_eq(back.nmetrics, 2);
    ck_assert_str_eq(back.metric_names[1], "top3");
    ck_assert_double_eq(back.rows[0].metrics[0], 0.75);
    ck_assert_double_eq(back.rows[0].val_metrics[1], 0.5);
    /* resumed with the metrics [top3, precision]: top3 moves, precision is new (empty) */
    const char *now[2] = {"top3", "precision"};
    kdh_history_set_metrics(&back, 2, now);
    ck_assert_double_eq(back.rows[0].metrics[0], 1);
    ck_assert_double_eq(back.rows[0].val_metrics[0], 0.5);
    ck_assert(isnan(back.rows[0].metrics[1]));
    /* ReduceLROnPlateau's learning_rate: the last column, back from JSON */
    h.has_learning_rate = true;
    h.rows[0].learning_rate = 0.0125;
    ck_assert_int_eq(kdh_history_write(tu_path(dir, "h2.csv"), &h, &err), 0);
    csv = tu_read(tu_path(dir, "h2.csv"), NULL);
    ck_assert_str_eq(csv, "epoch,loss,accuracy,auc,top3,val_loss,val_accuracy,val_auc,val_top3,learning_rate\n"
                          "1,0.5,,0.75,1,0.25,,,0.5,0.0125\n");
    free(csv);
    s = kdh_history_to_json(&h);
    kdh_history lr;
    ck_assert_int_eq(kdh_history_from_json(s, &lr, "ckpt", &err), 0);
    free(s);
    ck_assert(lr.has_learning_rate);
    ck_assert_int_eq(lr.nmetrics, 2);
    ck_assert_double_eq(lr.rows[0].learning_rate, 0.0125);
    kdh_history_free(&lr);
    kdh_history_free(&back);
    kdh_history_free(&h);
}
END_TEST

static kdh_data_want want_784(kdh_label_kind labels, int64_t k)
{
    kdh_data_want w = {.model = "m", .input_name = "x", .input_rank = 3, .input_shape = {28, 28, 1},
                       .input_elems = 784, .labels = labels, .label_elems = k};
    return w;
}

START_TEST(dataset_scaling_labels_split)
{
    kdh_tensor x, y;
    kdh_error err;
    int64_t xs[3] = {10, 28, 28}, n = 10;
    ck_assert_int_eq(kdh_tensor_alloc(&x, NULL, KDH_U8, 3, xs, &err), 0);
    ck_assert_int_eq(kdh_tensor_alloc(&y, NULL, KDH_U8, 1, &n, &err), 0);
    for (int i = 0; i < 7840; i++) ((uint8_t *)x.data)[i] = (uint8_t)(i % 256);
    for (int i = 0; i < 10; i++) ((uint8_t *)y.data)[i] = (uint8_t)(i % 10);
    kdh_data_want w = want_784(KDH_LABELS_ONEHOT, 10);
    kdh_dataset d;
    ck_assert_msg(kdh_dataset_from_tensors(&x, "x", &y, "y", &w, &d, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(d.n, 10);
    ck_assert_float_eq(d.x[255], 1.0f);
    ck_assert_float_eq(d.x[51], 0.2f);
    ck_assert_float_eq(d.y[3 * 10 + 3], 1.0f);
    ck_assert_float_eq(d.y[3 * 10 + 4], 0.0f);
    ck_assert_int_eq(d.cls[7], 7);
    kdh_dataset v;
    ck_assert_int_eq(kdh_data_split(&d, 0.25, &v, &err), 0);   /* Keras: int(10 * 0.25) = 2 at the end */
    ck_assert_int_eq(d.n, 8);
    ck_assert_int_eq(v.n, 2);
    ck_assert_int_eq(v.cls[0], 8);
    ck_assert_float_eq(v.x[0], (float)((8 * 784) % 256) / 255.0f);
    kdh_dataset_free(&v);
    kdh_dataset_free(&d);

    w.normalize = KDH_NORM_NONE;
    ck_assert_int_eq(kdh_dataset_from_tensors(&x, "x", &y, "y", &w, &d, &err), 0);
    ck_assert_float_eq(d.x[255], 255.0f);
    kdh_dataset_free(&d);

    w.input_elems = 100;
    w.input_rank = 1;
    w.input_shape[0] = 100;
    ck_assert_int_eq(kdh_dataset_from_tensors(&x, "x.npy", &y, "y", &w, &d, &err), -1);
    ck_assert_has(err.msg, "x.npy: samples of shape [28, 28] (784 values) do not fit model 'm', whose input x is [100]");
    w = want_784(KDH_LABELS_ONEHOT, 5);
    ck_assert_int_eq(kdh_dataset_from_tensors(&x, "x", &y, "y.npy", &w, &d, &err), -1);
    ck_assert_has(err.msg, "y.npy: label 5 of sample 5 is outside the model's 5 classes");
    kdh_tensor_free(&x);
    kdh_tensor_free(&y);
}
END_TEST

/* Host-side losses as Keras computes them. */
/* keras.optimizers.schedules' formulas at a few steps. */
START_TEST(learning_rate_schedules)
{
    kdh_lr_schedule c = {.kind = KDH_LR_CONSTANT};
    ck_assert_double_eq_tol(kdh_learning_rate(&c, 0.1, 1000, 10), 0.1, 1e-15);
    kdh_lr_schedule e = {.kind = KDH_LR_EXPONENTIAL, .decay_steps = 100, .decay_rate = 0.96};
    ck_assert_double_eq_tol(kdh_learning_rate(&e, 0.1, 0, 0), 0.1, 1e-15);
    ck_assert_double_eq_tol(kdh_learning_rate(&e, 0.1, 50, 0), 0.1 * sqrt(0.96), 1e-15);
    e.staircase = true;
    ck_assert_double_eq_tol(kdh_learning_rate(&e, 0.1, 150, 0), 0.096, 1e-15);
    kdh_lr_schedule it = {.kind = KDH_LR_INVERSE_TIME, .decay_steps = 10, .decay_rate = 0.5};
    ck_assert_double_eq_tol(kdh_learning_rate(&it, 0.1, 20, 0), 0.05, 1e-15);
    it.staircase = true;
    ck_assert_double_eq_tol(kdh_learning_rate(&it, 0.1, 19, 0), 0.1 / 1.5, 1e-15);
    kdh_lr_schedule cs = {.kind = KDH_LR_COSINE, .decay_steps = 100, .alpha = 0.1};
    ck_assert_double_eq_tol(kdh_learning_rate(&cs, 1e-3, 50, 0), 0.55e-3, 1e-15);
    ck_assert_double_eq_tol(kdh_learning_rate(&cs, 1e-3, 500, 0), 1e-4, 1e-15);
    cs.decay_steps = 0;   /* the whole run: 200 steps */
    ck_assert_double_eq_tol(kdh_learning_rate(&cs, 1e-3, 100, 200), 0.55e-3, 1e-15);
    kdh_lr_schedule p = {.kind = KDH_LR_POLYNOMIAL, .decay_steps = 100, .end_learning_rate = 0.01, .power = 2};
    ck_assert_double_eq_tol(kdh_learning_rate(&p, 0.1, 50, 0), 0.0325, 1e-15);
    ck_assert_double_eq_tol(kdh_learning_rate(&p, 0.1, 100, 0), 0.01, 1e-15);
}
END_TEST

/* The driver's buffers start on a cache line (the kernels' vector loads
 * never split one) and are zeroed, small or large (mmap-sized). */
START_TEST(driver_buffers_are_aligned)
{
    kdh_error err = {0};
    int64_t sizes[3] = {1, 1000, 3 << 20};
    for (int i = 0; i < 3; i++) {
        float *f = kdh_floats(sizes[i], "test", &err);
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq((uintptr_t)f % 64, 0);
        for (int64_t k = 0; k < sizes[i]; k++) ck_assert_msg(f[k] == 0, "kdh_floats(%lld)[%lld] not zero", (long long)sizes[i], (long long)k);
        free(f);
        kdh_tensor t = {0};
        int64_t shape[2] = {sizes[i], 3};
        ck_assert_int_eq(kdh_tensor_alloc(&t, "t", KDH_F32, 2, shape, &err), 0);
        ck_assert_uint_eq((uintptr_t)t.data % 64, 0);
        ck_assert_msg(((const float *)t.data)[sizes[i] * 3 - 1] == 0, "tensor not zeroed");
        kdh_tensor_free(&t);
    }
}
END_TEST

START_TEST(host_losses)
{
    kdh_model m = {.output_elems = 3, .loss = KDH_LOSS_CATEGORICAL_XENT, .from_logits = true, .accuracy = true};
    const float z[3] = {2, 1, 0.1f}, t[3] = {1, 0, 0};
    ck_assert_double_eq_tol(kdh_sample_loss(&m, z, t), -log(0.6590012), 1e-6);   /* docs/language.md's softmax */
    ck_assert_double_eq(kdh_sample_correct(&m, z, t), 1);
    m.from_logits = false;
    const float p[3] = {0.5f, 0.25f, 0.25f};
    ck_assert_double_eq_tol(kdh_sample_loss(&m, p, t), -log(0.5), 1e-7);
    m.loss = KDH_LOSS_MSE;
    const float y2[3] = {1, 2, 3}, t2[3] = {1, 0, 0};
    ck_assert_double_eq_tol(kdh_sample_loss(&m, y2, t2), (0 + 4 + 9) / 3.0, 1e-12);
    m.loss = KDH_LOSS_BINARY_XENT;
    m.output_elems = 1;
    const float pb[1] = {0.8f}, tb[1] = {1};
    ck_assert_double_eq_tol(kdh_sample_loss(&m, pb, tb), -log(0.8), 1e-7);
    ck_assert_double_eq(kdh_sample_correct(&m, pb, tb), 1);
    m.from_logits = true;
    const float zb[1] = {-0.3f};
    ck_assert_double_eq_tol(kdh_sample_loss(&m, zb, tb), log1p(exp(0.3)), 1e-6);
    ck_assert_double_eq(kdh_sample_correct(&m, zb, tb), 0);
}
END_TEST

/* The host's losses (evaluate, validation) on Keras' documented examples,
 * the values the compiled graph gives (tests/test_autodiff.c): the mean of
 * two samples of two values. */
static double host_mean_loss(kdh_loss_kind kind, double delta, const float *y, const float *t)
{
    kdh_model m = {.output_elems = 2, .output_rank = 1, .output_shape = {2}, .loss = kind, .delta = delta};
    return (kdh_sample_loss(&m, y, t) + kdh_sample_loss(&m, y + 2, t + 2)) / 2;
}

START_TEST(host_toolbox_losses)
{
    const float t1[4] = {0, 1, 0, 0}, p1[4] = {0.6f, 0.4f, 0.4f, 0.6f}, q1[4] = {1, 1, 1, 0}, r1[4] = {1, 1, 0, 0};
    ck_assert_double_eq_tol(host_mean_loss(KDH_LOSS_MAE, 1, q1, t1), 0.5, 1e-7);
    ck_assert_double_eq_tol(host_mean_loss(KDH_LOSS_HUBER, 1, p1, t1), 0.155, 1e-7);
    ck_assert_double_eq_tol(host_mean_loss(KDH_LOSS_LOG_COSH, 1, r1, t1), 0.108, 5e-4);
    ck_assert_double_eq_tol(host_mean_loss(KDH_LOSS_KLD, 1, p1, t1), 0.458, 5e-4);
    ck_assert_double_eq_tol(host_mean_loss(KDH_LOSS_MSLE, 1, q1, t1), 0.240, 5e-4);
    ck_assert_double_eq_tol(host_mean_loss(KDH_LOSS_HINGE, 1, p1, t1), 1.3, 1e-6);
    ck_assert_double_eq_tol(host_mean_loss(KDH_LOSS_CATEGORICAL_HINGE, 1, p1, t1), 1.4, 1e-6);
    ck_assert_double_eq_tol(host_mean_loss(KDH_LOSS_POISSON, 1, r1, t1), 0.5, 1e-6);
    ck_assert_double_eq_tol(host_mean_loss(KDH_LOSS_COSINE_SIMILARITY, 1, (float[]){1, 0, 1, 1}, (float[]){0, 1, 1, 1}),
                            -0.5, 1e-6);
    /* Huber beyond delta; hinge labels that are not 0/1 stay as they are */
    ck_assert_double_eq_tol(host_mean_loss(KDH_LOSS_HUBER, 0.5, (float[]){2, 0, 0, 0}, (float[]){0, 0, 0, 0}),
                            (0.5 * 2 - 0.125) / 4, 1e-7);
    ck_assert_double_eq_tol(host_mean_loss(KDH_LOSS_HINGE, 1, (float[]){0.5f, 0.5f, 0.5f, 0.5f}, (float[]){-1, 1, 1, -1}),
                            (1.5 + 0.5 + 0.5 + 1.5) / 4, 1e-7);
    /* label smoothing on the host: CategoricalCrossentropy(label_smoothing: 0.3) on logits */
    kdh_model m = {.output_elems = 3, .output_rank = 1, .output_shape = {3}, .loss = KDH_LOSS_CATEGORICAL_XENT,
                   .from_logits = true, .label_smoothing = 0.3};
    double lse = log(exp(2) + exp(1) + exp(0.1));
    ck_assert_double_eq_tol(kdh_sample_loss(&m, (float[]){2, 1, 0.1f}, (float[]){1, 0, 0}),
                            -(0.8 * (2 - lse) + 0.1 * (1 - lse) + 0.1 * (0.1 - lse)), 1e-6);
}
END_TEST

/* ---- metrics (metrics.h) ---------------------------------------------------------------------- */

/* Feeds n samples of k values to a fresh metric; its result. */
static double metric_on(const kdh_metric_spec *s, const float *y, const float *t, int n, int k)
{
    kdh_metric_state st = {0};
    ck_assert_int_eq(kdh_metric_reset(s, &st), 0);
    for (int i = 0; i < n; i++) kdh_metric_update(s, &st, y + i * k, t + i * k, k, k);
    double r = kdh_metric_result(s, &st);
    kdh_metric_free(&st);
    return r;
}

static kdh_metric_spec spec(kdh_metric_kind kind)
{
    kdh_metric_spec s;
    kdh_metric_spec_init(&s, kind, "m");
    return s;
}

/* AUC by its definition, in the plainest way: the confusion counts at each
 * of Keras' thresholds (-eps, i/(n-1), 1 + eps) by comparison, then the
 * Riemann sum (ROC, trapezoids) or Davis & Goadrich's interpolation (PR). */
static double auc_reference(const float *y, const float *t, int n, int nt, bool pr)
{
    double tp[256], fp[256], fn[256], tn[256];
    for (int i = 0; i < nt; i++) {
        double thr = i == 0 ? -1e-7 : i == nt - 1 ? 1 + 1e-7 : (double)i / (nt - 1);
        tp[i] = fp[i] = fn[i] = tn[i] = 0;
        for (int j = 0; j < n; j++) {
            bool above = (double)y[j] > thr;
            if (t[j] == 1) above ? tp[i]++ : fn[i]++;
            else above ? fp[i]++ : tn[i]++;
        }
    }
    double auc = 0;
    for (int i = 0; i + 1 < nt; i++) {
        if (pr) {
            double dtp = tp[i] - tp[i + 1], p0 = tp[i] + fp[i], p1 = tp[i + 1] + fp[i + 1], dp = p0 - p1;
            double slope = dp > 0 ? dtp / dp : 0, icpt = tp[i + 1] - slope * p1;
            double ratio = p0 > 0 && p1 > 0 ? p0 / p1 : 1, den = tp[i + 1] + fn[i + 1];
            if (den > 0) auc += slope * (dtp + icpt * log(ratio)) / den;
        } else {
            double r0 = tp[i] / (tp[i] + fn[i]), r1 = tp[i + 1] / (tp[i + 1] + fn[i + 1]);
            double f0 = fp[i] / (fp[i] + tn[i]), f1 = fp[i + 1] / (fp[i + 1] + tn[i + 1]);
            auc += (f0 - f1) * (r0 + r1) / 2;
        }
    }
    return auc;
}

START_TEST(host_metrics)
{
    /* Keras' documented examples */
    kdh_metric_spec s = spec(KDH_METRIC_TOP_K);
    s.k = 1;
    const float tk_t[6] = {0, 0, 1, 0, 1, 0}, tk_y[6] = {0.1f, 0.9f, 0.8f, 0.05f, 0.95f, 0};
    ck_assert_double_eq(metric_on(&s, tk_y, tk_t, 2, 3), 0.5);
    s.k = 2;
    ck_assert_double_eq(metric_on(&s, tk_y, tk_t, 2, 3), 1);
    s = spec(KDH_METRIC_SPARSE_TOP_K);
    s.k = 1;
    const float tie_y[3] = {0.5f, 0.5f, 0.1f}, tie_t[3] = {0, 1, 0};   /* ties at the boundary count as in (in_top_k) */
    ck_assert_double_eq(metric_on(&s, tie_y, tie_t, 1, 3), 1);
    s = spec(KDH_METRIC_BINARY_ACCURACY);
    const float ba_t[4] = {1, 1, 0, 0}, ba_y[4] = {0.98f, 1, 0, 0.6f};
    ck_assert_double_eq(metric_on(&s, ba_y, ba_t, 4, 1), 0.75);
    s.threshold = 0.7;
    ck_assert_double_eq(metric_on(&s, ba_y, ba_t, 4, 1), 1);
    const float pr_t[4] = {0, 1, 1, 1}, pr_y[4] = {1, 0, 1, 1};
    s = spec(KDH_METRIC_PRECISION);
    ck_assert_double_eq_tol(metric_on(&s, pr_y, pr_t, 4, 1), 2.0 / 3, 1e-15);
    s = spec(KDH_METRIC_RECALL);
    ck_assert_double_eq_tol(metric_on(&s, pr_y, pr_t, 4, 1), 2.0 / 3, 1e-15);
    const float r_t[4] = {0, 1, 0, 0}, r_y[4] = {1, 1, 0, 0};
    s = spec(KDH_METRIC_MAE);
    ck_assert_double_eq(metric_on(&s, r_y, r_t, 2, 2), 0.25);
    s = spec(KDH_METRIC_MSE);
    ck_assert_double_eq(metric_on(&s, r_y, r_t, 2, 2), 0.25);
    s = spec(KDH_METRIC_RMSE);
    ck_assert_double_eq(metric_on(&s, r_y, r_t, 2, 2), 0.5);

    /* AUC: Keras' tests (3 thresholds: 0.75 ROC; PR by hand), the flat case over two values a sample (5 thresholds) */
    const float a_t[4] = {0, 0, 1, 1}, a_y[4] = {0, 0.5f, 0.3f, 0.9f};
    s = spec(KDH_METRIC_AUC);
    s.num_thresholds = 3;
    ck_assert_double_eq_tol(metric_on(&s, a_y, a_t, 4, 1), 0.75, 1e-12);
    s.pr = true;
    ck_assert_double_eq_tol(metric_on(&s, a_y, a_t, 4, 1), (1 + 2.0 / 3 * log(4.0)) / 6 + 0.5, 1e-12);
    s.summation = KDH_AUC_MAJORING;   /* precision [0.5, 1, 0], recall [1, 0.5, 0]: heights [1, 1] */
    ck_assert_double_eq_tol(metric_on(&s, a_y, a_t, 4, 1), 1.0, 1e-12);
    s.summation = KDH_AUC_MINORING;
    ck_assert_double_eq_tol(metric_on(&s, a_y, a_t, 4, 1), 0.25, 1e-12);
    s = spec(KDH_METRIC_AUC);
    s.num_thresholds = 5;
    const float f_y[8] = {0, 0.1f, 0.5f, 0.2f, 0.3f, 0.3f, 0.9f, 0.4f}, f_t[8] = {0, 0, 0, 0, 1, 1, 1, 1};
    ck_assert_double_eq_tol(metric_on(&s, f_y, f_t, 4, 2), 1 - 3.0 / 32, 1e-12);
    s.from_logits = true;   /* sigmoid first: logits of the same probabilities */
    float lg[8];
    for (int i = 0; i < 8; i++) lg[i] = (float)-log(1 / ((double)f_y[i] + 1e-12) - 1);
    ck_assert_double_eq_tol(metric_on(&s, lg, f_t, 4, 2), 1 - 3.0 / 32, 1e-6);

    /* 200 thresholds on 500 random predictions, ROC and PR, fed in batches of
     * 37 with the state kept across them, against the plain definition */
    enum { N = 500 };
    float y[N], t[N];
    rng_state = 7;
    for (int i = 0; i < N; i++) {
        t[i] = uniform() < 0.4 ? 1 : 0;
        y[i] = (float)fmin(1, fmax(0, 0.3 * t[i] + 0.7 * uniform()));
    }
    for (int pr = 0; pr < 2; pr++) {
        s = spec(KDH_METRIC_AUC);
        s.pr = pr;
        kdh_metric_state st = {0};
        ck_assert_int_eq(kdh_metric_reset(&s, &st), 0);
        for (int at = 0; at < N; at += 37)
            for (int i = at; i < at + 37 && i < N; i++) kdh_metric_update(&s, &st, &y[i], &t[i], 1, 1);
        double got = kdh_metric_result(&s, &st), want = auc_reference(y, t, N, 200, pr);
        ck_assert_msg(fabs(got - want) < 1e-12, "AUC %s: %.15g, the definition %.15g", pr ? "PR" : "ROC", got, want);
        ck_assert(want > 0.6 && want < 0.95);
        /* a reset starts over: the second half alone */
        ck_assert_int_eq(kdh_metric_reset(&s, &st), 0);
        for (int i = N / 2; i < N; i++) kdh_metric_update(&s, &st, &y[i], &t[i], 1, 1);
        ck_assert_double_eq_tol(kdh_metric_result(&s, &st), auc_reference(y + N / 2, t + N / 2, N / 2, 200, pr), 1e-12);
        kdh_metric_free(&st);
    }
}
END_TEST

/* The number after "NAME: " in a progress or evaluate line. */
static double logged(const char *out, const char *name)
{
    char key[96];
    snprintf(key, sizeof key, " %s: ", name);
    const char *p = strstr(out, key);
    ck_assert_msg(p != NULL, "no '%s' in:\n%s", name, out);
    return strtod(p + strlen(key), NULL);
}

/* Metrics in the progress line, the history and `kdslc evaluate`, with
 * Keras' names; evaluate's figures against the predictions recomputed here. */
START_TEST(metrics_end_to_end)
{
    const char *dir = tu_tmpdir("metrics");
    make_classes(dir, 48);
    const char *model = tu_path(dir, "m.kdsl");
    FILE *f = fopen(model, "w");
    ck_assert_ptr_nonnull(f);
    fputs("model m {\n    input x: [8]\n    Dense(16, activation: relu)\n    output y = Dense(3, activation: softmax)\n}\n"
          "train m {\n    loss: CategoricalCrossentropy(label_smoothing: 0.1)\n"
          "    optimizer: Nadam(learning_rate: 0.01)\n"
          "    metrics: [accuracy, TopKCategoricalAccuracy(k: 2), AUC(curve: \"PR\", name: \"auc_pr\"), mae]\n"
          "    batch_size: 8\n    epochs: 2\n}\n", f);
    fclose(f);
    char data[2048], *out;
    snprintf(data, sizeof data, "%s,%s", tu_path(dir, "x.npy"), tu_path(dir, "y.npy"));
    const char *w = tu_path(dir, "w.safetensors"), *h = tu_path(dir, "h.csv"), *yp = tu_path(dir, "p.npy");
    int rc = tu_kdslc_run(&out, "train %s --data %s --validation-split 0.25 --save %s --history %s", model, data, w, h);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_has(out, " - top_k_categorical_accuracy: ");
    ck_assert_has(out, " - val_auc_pr: ");
    ck_assert_has(out, " - val_mae: ");
    free(out);
    char *csv = tu_read(h, NULL);
    ck_assert_msg(strstr(csv, "epoch,loss,accuracy,top_k_categorical_accuracy,auc_pr,mae,val_loss,val_accuracy,"
                              "val_top_k_categorical_accuracy,val_auc_pr,val_mae\n1,") == csv, "%s", csv);
    free(csv);

    rc = tu_kdslc_run(&out, "evaluate %s --weights %s --data %s", model, w, data);
    ck_assert_msg(rc == 0, "%s", out);
    double topk = logged(out, "top_k_categorical_accuracy"), aucpr = logged(out, "auc_pr"), mae = logged(out, "mae");
    free(out);
    rc = tu_kdslc_run(&out, "predict %s --weights %s --input %s -o %s", model, w, tu_path(dir, "x.npy"), yp);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    kdh_tensor p, lab;
    kdh_error err;
    ck_assert_msg(kdh_npy_read(yp, NULL, &p, &err) == 0, "%s", err.msg);
    ck_assert_msg(kdh_npy_read(tu_path(dir, "y.npy"), NULL, &lab, &err) == 0, "%s", err.msg);
    const float *py = p.data;
    const int64_t *cls = lab.data;
    float onehot[48 * 3];
    double in2 = 0, abs_err = 0;
    for (int i = 0; i < 48; i++) {
        int higher = 0;
        for (int j = 0; j < 3; j++) {
            onehot[i * 3 + j] = j == cls[i];
            higher += py[i * 3 + j] > py[i * 3 + cls[i]];
            abs_err += fabs(py[i * 3 + j] - onehot[i * 3 + j]) / 3;
        }
        in2 += higher < 2;
    }
    ck_assert_double_eq_tol(topk, in2 / 48, 5.1e-5);
    ck_assert_double_eq_tol(mae, abs_err / 48, 5.1e-5);
    ck_assert_double_eq_tol(aucpr, auc_reference(py, onehot, 48 * 3, 200, true), 5.1e-5);
    kdh_tensor_free(&p);
    kdh_tensor_free(&lab);
}
END_TEST

/* ---- callbacks: Keras' rules on scripted curves (epochs counted from 0) ------------------- */

/* The epoch at which EarlyStopping stops on the curve v (n epochs), or -1. */
static int early_stop_at(kdh_early_stopping es, const double *v, int n, int *best_epoch)
{
    kdh_early_stopping_begin(&es);
    for (int e = 0; e < n; e++) {
        bool keep;
        if (kdh_early_stopping_epoch_end(&es, e, v[e], &keep)) {
            if (best_epoch) *best_epoch = es.best_epoch;
            return e;
        }
    }
    if (best_epoch) *best_epoch = es.best_epoch;
    return -1;
}

START_TEST(callbacks_fire_as_keras)
{
    /* min_delta: 0.895 and 0.89 are not 0.01 better than 0.9; patience 2 runs out at epoch 3 */
    kdh_early_stopping es = {.on = true, .patience = 2, .min_delta = 0.01};
    const double a[8] = {1.0, 0.9, 0.895, 0.89, 0.85, 0.86, 0.86, 0.86};
    ck_assert_int_eq(early_stop_at(es, a, 8, NULL), 3);
    es.min_delta = 0;   /* 0.895 and 0.89 improve; 0.85 too; then 0.86 twice */
    ck_assert_int_eq(early_stop_at(es, a, 8, NULL), 6);
    /* baseline 0.8 (maximising): improvements below it do not restart the wait */
    const double b[6] = {0.5, 0.6, 0.55, 0.55, 0.55, 0.55};
    kdh_early_stopping eb = {.on = true, .maximize = true, .patience = 2};
    ck_assert_int_eq(early_stop_at(eb, b, 6, NULL), 3);
    eb.has_baseline = true;
    eb.baseline = 0.8;
    ck_assert_int_eq(early_stop_at(eb, b, 6, NULL), 2);
    /* patience 0 never stops at epoch 0; start_from_epoch skips the first epochs; NaN (no such log) is skipped */
    kdh_early_stopping e0 = {.on = true};
    const double c[4] = {3, 2, 1, 1.5}, d[4] = {3, NAN, 4, 5};
    ck_assert_int_eq(early_stop_at(e0, c, 4, NULL), 3);
    ck_assert_int_eq(early_stop_at(e0, d, 4, NULL), 2);
    e0.start_from_epoch = 2;
    ck_assert_int_eq(early_stop_at(e0, c, 4, NULL), 3);
    e0.start_from_epoch = 4;
    ck_assert_int_eq(early_stop_at(e0, c, 4, NULL), -1);
    /* restore_best_weights: the weights to keep are those of epoch 0 (never set), 1 (better), not 2 */
    kdh_early_stopping er = {.on = true, .patience = 5, .restore_best_weights = true};
    kdh_early_stopping_begin(&er);
    const double r[3] = {1, 0.5, 0.7};
    const bool keep_want[3] = {true, true, false};
    for (int e = 0; e < 3; e++) {
        bool keep;
        ck_assert(!kdh_early_stopping_epoch_end(&er, e, r[e], &keep));
        ck_assert_int_eq(keep, keep_want[e]);
    }
    ck_assert_int_eq(er.best_epoch, 1);

    /* ReduceLROnPlateau: a flat curve, patience 2, cooldown 2, factor 0.5: reductions at epochs 2, 5, 8 */
    kdh_reduce_lr rl = {.on = true, .factor = 0.5, .patience = 2, .cooldown = 2, .min_delta = 1e-4};
    kdh_reduce_lr_begin(&rl);
    const double want[9] = {1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125};
    double lr = 1;
    for (int e = 0; e < 9; e++) {
        lr = kdh_reduce_lr_epoch_end(&rl, 0.3, lr);
        ck_assert_msg(lr == want[e], "epoch %d: lr %g, want %g", e, lr, want[e]);
    }
    /* no cooldown, min_lr 0.1: every second epoch, down to min_lr and no further; an improvement
     * (more than min_delta) resets the wait */
    kdh_reduce_lr rm = {.on = true, .factor = 0.5, .patience = 2, .min_lr = 0.1, .min_delta = 1e-4};
    kdh_reduce_lr_begin(&rm);
    const double curve[12] = {1, 1, 1, 1, 1, 0.99995, 1, 0.5, 0.5, 0.5, 0.5, 0.5};
    const double lrs[12] = {1, 1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.125, 0.1f, 0.1f, 0.1f};
    lr = 1;
    for (int e = 0; e < 12; e++) {
        lr = kdh_reduce_lr_epoch_end(&rm, curve[e], lr);
        ck_assert_msg(lr == lrs[e], "epoch %d: lr %.9g, want %.9g", e, lr, lrs[e]);
    }

    /* ModelCheckpoint(save_best_only): strictly better; a missing monitor saves; initial_value_threshold */
    kdh_model_checkpoint mc = {.on = true, .save_best_only = true, .filepath = "w_{epoch:02d}.safetensors"};
    const double m[6] = {1, 0.8, 0.8, 0.9, 0.7, NAN};
    const bool saves[6] = {true, true, false, false, true, true}, saves_t[6] = {false, false, false, false, true, true};
    kdh_model_checkpoint_begin(&mc);
    for (int e = 0; e < 6; e++) ck_assert_int_eq(kdh_model_checkpoint_epoch_end(&mc, m[e]), saves[e]);
    mc.has_initial = true;
    mc.initial_value_threshold = 0.75;
    kdh_model_checkpoint_begin(&mc);
    for (int e = 0; e < 6; e++) ck_assert_int_eq(kdh_model_checkpoint_epoch_end(&mc, m[e]), saves_t[e]);
    char path[64];
    kdh_model_checkpoint_path(&mc, 4, path, sizeof path);
    ck_assert_str_eq(path, "w_05.safetensors");
    mc.filepath = "run/{epoch}/w.safetensors";
    kdh_model_checkpoint_path(&mc, 11, path, sizeof path);
    ck_assert_str_eq(path, "run/12/w.safetensors");
}
END_TEST

/* The weights of two safetensors files (the checkpoint's slots and metadata aside) are the same bits. */
static bool same_weights(const char *a, const char *b)
{
    kdh_tensor_list la = read_st(a), lb = read_st(b);
    bool same = true;
    for (size_t i = 0; i < la.count; i++) {
        const kdh_tensor *t = &la.items[i], *u = NULL;
        for (size_t j = 0; j < lb.count; j++)
            if (!strcmp(lb.items[j].name, t->name)) u = &lb.items[j];
        if (!u) continue;   /* an optimizer slot of the checkpoint */
        same &= u->nbytes == t->nbytes && !memcmp(u->data, t->data, t->nbytes);
    }
    kdh_list_free(&la);
    kdh_list_free(&lb);
    return same;
}

/* EarlyStopping stops at Keras' epoch and restore_best_weights gives the
 * best epoch's weights: those ModelCheckpoint(save_best_only) saved on the
 * same monitor, bit for bit, and not the last epoch's (the checkpoint). */
START_TEST(callbacks_end_to_end)
{
    const char *dir = tu_tmpdir("callbacks");
    make_classes(dir, 64);
    char data[2048], text[4096], *out;
    snprintf(data, sizeof data, "%s,%s", tu_path(dir, "x.npy"), tu_path(dir, "y.npy"));
    const char *model = tu_path(dir, "m.kdsl"), *best = tu_path(dir, "best.safetensors");
    const char *w = tu_path(dir, "w.safetensors"), *ck = tu_path(dir, "run.ckpt"), *h = tu_path(dir, "h.csv");
    /* SGD at a rate that makes the loss jump about: the best epoch is not the last */
    snprintf(text, sizeof text,
             "model m {\n    input x: [8]\n    Dense(16, activation: relu)\n    output y = Dense(3)\n}\n"
             "train m {\n    loss: CategoricalCrossentropy(from_logits: true)\n    optimizer: SGD(learning_rate: 3.0)\n"
             "    callbacks: [EarlyStopping(monitor: \"loss\", patience: 100, restore_best_weights: true),\n"
             "                ModelCheckpoint(\"%s\", monitor: \"loss\", save_best_only: true)]\n"
             "    batch_size: 8\n    epochs: 6\n}\n", best);
    FILE *f = fopen(model, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    int rc = tu_kdslc_run(&out, "train %s --data %s --save %s --checkpoint %s --history %s", model, data, w, ck, h);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    char *csv = tu_read(h, NULL);
    double loss[6], lowest = INFINITY;
    int rows = 0, best_epoch = -1;
    for (char *line = strchr(csv, '\n'); line && line[1] && rows < 6; line = strchr(line + 1, '\n')) {
        int epoch;
        ck_assert_int_eq(sscanf(line + 1, "%d,%lf", &epoch, &loss[rows]), 2);
        if (loss[rows] < lowest) lowest = loss[rows], best_epoch = rows;
        rows++;
    }
    free(csv);
    ck_assert_int_eq(rows, 6);
    ck_assert_msg(best_epoch < 5, "the loss fell every epoch: the test needs a best epoch before the last");
    ck_assert_msg(same_weights(w, best), "--save is not the best epoch's weights");
    ck_assert_msg(!same_weights(w, ck), "--save holds the last epoch's weights");

    /* patience 0 and a min_delta no epoch beats: Keras stops after the second epoch (the first never stops) */
    snprintf(text, sizeof text,
             "model m {\n    input x: [8]\n    output y = Dense(3)\n}\n"
             "train m {\n    loss: CategoricalCrossentropy(from_logits: true)\n    optimizer: Adam()\n"
             "    callbacks: [EarlyStopping(monitor: \"loss\", min_delta: 1000)]\n    epochs: 10\n}\n");
    f = fopen(model, "w");
    fputs(text, f);
    fclose(f);
    rc = tu_kdslc_run(&out, "train %s --data %s --history %s --checkpoint %s", model, data, h, ck);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_has(out, "Epoch 2/10");
    ck_assert_msg(!strstr(out, "Epoch 3/10"), "%s", out);
    free(out);
    csv = tu_read(h, NULL);
    ck_assert_msg(strstr(csv, "\n2,") && !strstr(csv, "\n3,"), "%s", csv);
    free(csv);
    /* its checkpoint resumed: the run is over, not continued to epoch 10 */
    rc = tu_kdslc_run(&out, "train %s --data %s --resume %s", model, data, ck);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_has(out, "EarlyStopping ended the run at epoch 2; nothing to train");
    free(out);

    /* the flags, in the train block's callback's place: the restored weights are those --save-best kept */
    const char *sb = tu_path(dir, "save_best.safetensors");
    rc = tu_kdslc_run(&out, "train %s --data %s --epochs 4 --early-stopping 0 --restore-best-weights --save-best %s --save %s",
                      model, data, sb, w);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    ck_assert_msg(same_weights(w, sb), "--save is not --save-best's weights");
}
END_TEST

/* The host's losses (evaluate, validation) against the TensorFlow.js
 * fixture the compiled graph is checked against (tests/test_autodiff.c). */
START_TEST(host_losses_match_tfjs)
{
    static const float P[12] = {0.7f, 0.2f, 0.1f, 0.05f, 0.9f, 0.05f, 0.3f, 0.3f, 0.4f, 0.15f, 0.25f, 0.6f};
    static const float Z[12] = {1.5f, -0.3f, 0.2f, -1, 2, 0.5f, 0.1f, 0.1f, -2, 3, -0.5f, 1};
    static const float ONEHOT[12] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1};
    static const float SOFT[12] = {0.6f, 0.3f, 0.1f, 0.2f, 0.5f, 0.3f, 0.1f, 0.1f, 0.8f, 0.3f, 0.3f, 0.4f};
    static const float REG[12] = {0.5f, -1.2f, 2, 0.1f, 0.4f, -0.3f, 1.5f, 0, 0.2f, -2, 1, 0.7f};
    static const float PM[12] = {1, -1, 1, -1, -1, 1, 1, 1, -1, -1, 1, 1};
    static const struct {
        const char *name;
        kdh_loss_kind loss;
        bool logits;
        double smoothing, delta;
        const float *y, *t;
    } cases[] = {
        {"mae", KDH_LOSS_MAE, false, 0, 1, Z, REG},
        {"huber_0.5", KDH_LOSS_HUBER, false, 0, 0.5, Z, REG},
        {"log_cosh", KDH_LOSS_LOG_COSH, false, 0, 1, Z, REG},
        {"kld", KDH_LOSS_KLD, false, 0, 1, P, SOFT},
        {"msle", KDH_LOSS_MSLE, false, 0, 1, P, SOFT},
        {"hinge_pm1", KDH_LOSS_HINGE, false, 0, 1, Z, PM},
        {"categorical_hinge", KDH_LOSS_CATEGORICAL_HINGE, false, 0, 1, Z, ONEHOT},
        {"poisson", KDH_LOSS_POISSON, false, 0, 1, P, SOFT},
        {"cosine_similarity", KDH_LOSS_COSINE_SIMILARITY, false, 0, 1, Z, REG},
        {"cce_logits_ls0.2", KDH_LOSS_CATEGORICAL_XENT, true, 0.2, 1, Z, ONEHOT},
        {"bce_logits_ls0.3", KDH_LOSS_BINARY_XENT, true, 0.3, 1, Z, ONEHOT},
    };
    char *text = tu_read(tu_src("tests/fixtures/tfjs_losses.txt"), NULL);
    ck_assert_ptr_nonnull(text);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kdh_model m = {.output_elems = 3, .output_rank = 1, .output_shape = {3}, .loss = cases[i].loss,
                       .from_logits = cases[i].logits, .label_smoothing = cases[i].smoothing, .delta = cases[i].delta};
        double got = 0;
        for (int r = 0; r < 4; r++) got += kdh_sample_loss(&m, cases[i].y + 3 * r, cases[i].t + 3 * r) / 4;
        char key[64];
        snprintf(key, sizeof key, "%s ", cases[i].name);
        const char *at = strstr(text, key);
        ck_assert_msg(at != NULL, "no '%s' in the fixture", cases[i].name);
        double want = strtod(at + strlen(key), NULL);
        ck_assert_msg(fabs(got - want) <= 2e-6 * fmax(1, fabs(want)), "%s: %.9g, TensorFlow.js %.9g", cases[i].name, got,
                      want);
    }
    free(text);
}
END_TEST

/* A run with callbacks stopped after epoch 2 and resumed ends as the run
 * never stopped: ReduceLROnPlateau's lowered rate, the counters and the best
 * weights of restore_best_weights travel in the checkpoint. */
START_TEST(callbacks_resume_is_bit_identical)
{
    const char *dir = tu_tmpdir("callbacks_resume");
    make_classes(dir, 48);
    char data[2048], text[2048], *out;
    snprintf(data, sizeof data, "%s,%s", tu_path(dir, "x.npy"), tu_path(dir, "y.npy"));
    const char *model = tu_path(dir, "m.kdsl");
    snprintf(text, sizeof text,
             "model m {\n    input x: [8]\n    Dense(8, activation: tanh)\n    output y = Dense(3)\n}\n"
             "train m {\n    loss: CategoricalCrossentropy(from_logits: true)\n    optimizer: SGD(learning_rate: 2.0)\n"
             "    callbacks: [EarlyStopping(monitor: \"loss\", patience: 50, restore_best_weights: true),\n"
             "                ReduceLROnPlateau(monitor: \"loss\", factor: 0.5, patience: 0, min_delta: 100)]\n"
             "    batch_size: 8\n    epochs: 5\n}\n");
    FILE *f = fopen(model, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    const char *a = tu_path(dir, "a.safetensors"), *b = tu_path(dir, "b.safetensors"), *ck = tu_path(dir, "c.ckpt");
    const char *ha = tu_path(dir, "ha.csv"), *hb = tu_path(dir, "hb.csv");
    int rc = tu_kdslc_run(&out, "train %s --data %s --save %s --history %s", model, data, a, ha);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    rc = tu_kdslc_run(&out, "train %s --data %s --epochs 2 --checkpoint %s", model, data, ck);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    rc = tu_kdslc_run(&out, "train %s --data %s --resume %s --save %s --history %s", model, data, ck, b, hb);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    ck_assert_msg(same_file(ha, hb), "the resumed run's history differs");
    ck_assert_msg(same_weights(a, b), "the resumed run's weights differ");
}
END_TEST

START_TEST(history_files)
{
    const char *dir = tu_tmpdir("history");
    kdh_history h = {0};
    kdh_epoch_log r1 = kdh_epoch_log_empty(1), r2 = kdh_epoch_log_empty(2);
    r1.loss = 0.5, r1.accuracy = 0.8;
    r2.loss = 0.25, r2.accuracy = 0.9, r2.val_loss = 0.3, r2.val_accuracy = 0.875;
    ck_assert_int_eq(kdh_history_add(&h, &r1), 0);
    ck_assert_int_eq(kdh_history_add(&h, &r2), 0);
    kdh_error err;
    ck_assert_int_eq(kdh_history_write(tu_path(dir, "h.csv"), &h, &err), 0);
    char *csv = tu_read(tu_path(dir, "h.csv"), NULL);
    ck_assert_str_eq(csv, "epoch,loss,accuracy,val_loss,val_accuracy\n1,0.5,0.8,,\n2,0.25,0.9,0.3,0.875\n");
    free(csv);
    ck_assert_int_eq(kdh_history_write(tu_path(dir, "h.json"), &h, &err), 0);
    char *json = tu_read(tu_path(dir, "h.json"), NULL);
    ck_assert_has(json, "\"val_loss\":\t[null, 0.3]");
    free(json);
    char *s = kdh_history_to_json(&h);
    kdh_history back;
    ck_assert_int_eq(kdh_history_from_json(s, &back, "ckpt", &err), 0);
    ck_assert_int_eq(back.count, 2);
    ck_assert_double_eq(back.rows[1].val_accuracy, 0.875);
    ck_assert(isnan(back.rows[0].val_loss));
    free(s);
    kdh_history_free(&back);
    kdh_history_free(&h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("train");
    TCase *host = tcase_create("host");
    tcase_add_test(host, progress_tty_and_plain);
    tcase_add_test(host, progress_shows_metrics);
    tcase_add_test(host, history_metric_columns);
    tcase_add_test(host, dataset_scaling_labels_split);
    tcase_add_test(host, host_losses);
    tcase_add_test(host, host_toolbox_losses);
    tcase_add_test(host, host_losses_match_tfjs);
    tcase_add_test(host, host_metrics);
    tcase_add_test(host, callbacks_fire_as_keras);
    tcase_add_test(host, driver_buffers_are_aligned);
    tcase_add_test(host, learning_rate_schedules);
    tcase_add_test(host, history_files);
    suite_add_tcase(s, host);
    TCase *run = tcase_create("kdslc");
    tcase_set_timeout(run, 600);
    tcase_add_test(run, sgd_step_mlp);
    tcase_add_test(run, class_weight_step_matches_torch);
    tcase_add_test(run, sgd_step_cnn);
    tcase_add_test(run, sgd_step_lstm);
    tcase_add_test(run, adam_steps_mlp);
    tcase_add_test(run, cosine_schedule_steps_mlp);
    tcase_add_test(run, evaluate_and_predict);
    tcase_add_test(run, custom_loss_end_to_end);
    tcase_add_test(run, per_output_losses_and_weights);
    tcase_add_test(run, metrics_end_to_end);
    tcase_add_test(run, callbacks_end_to_end);
    tcase_add_test(run, callbacks_resume_is_bit_identical);
    tcase_add_test(run, kill_and_resume_is_bit_identical);
    tcase_add_test(run, threads_train_the_same_weights);
    tcase_add_test(run, nan_loss_stops_and_keeps_checkpoint);
    tcase_add_test(run, linear_regression_recovers_line);
    tcase_add_test(run, text_bag_learns_tokens);
    tcase_add_test(run, bad_weights_files);
    tcase_add_test(run, bad_data_files);
    tcase_add_test(run, bad_flags);
    tcase_add_test(run, train_without_train_block);
    tcase_add_test(run, idx_directory_and_binary_labels);
    tcase_add_test(run, fashion_mnist_one_epoch);
    suite_add_tcase(s, run);
    return tu_run_suite(s);
}
