/* test_keras_layers.c — Keras layers against Keras: TensorFlow.js's Layers
 * API (a faithful port) made the fixtures in tests/fixtures/keras_layers/
 * (make.js there says how): the same weights in Keras' layouts, one batch of
 * inputs, the outputs TensorFlow.js computed, and Keras' parameter counts.
 * kdsl must print the same counts in `kdslc summary` and predict the same
 * outputs through `kdslc predict` (the JIT, in float). */
#include "testutil.h"

#include "host/tensor_file.h"

#include <math.h>
#include <stdio.h>

static const char *const cases[] = {"conv1d", "conv1d_padding", "image_axes", "merges", "batchnorm_axis", "dot_vectors",
                                    "dot_sequences", "activation_layers", "depthwise", "separable", "conv_dilation",
                                    "upsampling_bilinear", "conv_transpose", "embedding", "embedding_grid",
                                    "simple_rnn", "simple_rnn_tokens", "simple_rnn_masked", "lstm", "lstm_masked", "gru",
                                    "rnn_backwards", "rnn_states", "bidirectional", "bidirectional_masked"};
#define NCASES ((int)(sizeof cases / sizeof *cases))

static const char *fixture(const char *name, const char *suffix)
{
    static char buf[4][4096];
    static int at;
    char *b = buf[at++ % 4];
    snprintf(b, sizeof buf[0], "%s%s", tu_src("tests/fixtures/keras_layers/"), name);
    strncat(b, suffix, sizeof buf[0] - strlen(b) - 1);
    return b;
}

/* The Param # column of a summary, InputLayer rows left out. */
static int summary_params(const char *text, long *out, int max)
{
    const char *head = strstr(text, "Param #");
    ck_assert_ptr_nonnull(head);
    const char *line = head;
    while (line > text && line[-1] != '\n') line--;
    size_t col = (size_t)(head - line);
    int n = 0;
    const char *p = strstr(head, "\n=");
    ck_assert_ptr_nonnull(p);
    p = strchr(p + 1, '\n') + 1;
    while (*p && *p != '=' && n < max) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (*p != '_' && *p != ' ' && len > col && !strstr(p, "(InputLayer)")) {
            long v = 0;
            for (const char *q = p + col; q < p + len && (*q == ',' || (*q >= '0' && *q <= '9')); q++)
                if (*q != ',') v = v * 10 + (*q - '0');
            out[n++] = v;
        }
        if (!end) break;
        p = end + 1;
        if (*p == '=') break;
        (void)len;
    }
    return n;
}

START_TEST(summary_matches_keras)
{
    const char *name = cases[_i];
    size_t len;
    char *want = tu_read(fixture(name, ".params"), &len);
    ck_assert_ptr_nonnull(want);
    long keras[64], total = 0;
    int nk = 0;
    char *p = want;
    for (char *tok = strtok(p, " \n"); tok; tok = strtok(NULL, " \n")) keras[nk++] = strtol(tok, NULL, 10);
    total = keras[--nk];    /* the last line: the total */
    char *out = NULL;
    ck_assert_int_eq(tu_kdslc_run(&out, "summary %s", fixture(name, ".kdsl")), 0);
    long ours[64];
    int no = summary_params(out, ours, 64);
    ck_assert_msg(no == nk, "%s: %d layers in the summary, Keras has %d:\n%s", name, no, nk, out);
    for (int i = 0; i < nk; i++) ck_assert_msg(ours[i] == keras[i], "%s: layer %d has %ld params, Keras %ld", name, i, ours[i], keras[i]);
    char line[64];
    snprintf(line, sizeof line, "Total params: %ld\n", total);
    ck_assert_has(out, line);
    free(out);
    free(want);
}
END_TEST


START_TEST(predict_matches_keras)
{
    const char *name = cases[_i];
    const char *dir = tu_tmpdir(name);
    char *out = NULL;
    int rc = tu_kdslc_run(&out, "predict %s --weights %s --input %s -o %s", fixture(name, ".kdsl"),
                          fixture(name, ".safetensors"), fixture(name, "_x.npy"), tu_path(dir, "y.npy"));
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    kdh_tensor got = tu_read_npy_f32(tu_path(dir, "y.npy")), want = tu_read_npy_f32(fixture(name, "_y.npy"));
    ck_assert_int_eq(got.rank, want.rank);
    for (int d = 0; d < got.rank; d++) ck_assert_int_eq(got.shape[d], want.shape[d]);
    const float *g = got.data, *w = want.data;
    size_t n = got.nbytes / sizeof(float);
    ck_assert_int_gt(n, 0);
    double worst = 0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(g[i] - w[i]) / (1 + fabs(w[i])));
    ck_assert_msg(worst < 2e-6, "%s: outputs differ from TensorFlow.js by %g", name, worst);
    kdh_tensor_free(&got);
    kdh_tensor_free(&want);
}
END_TEST

/* `kdslc predict` of a model without weights (an empty weights file) on
 * CSV input, to the outputs `outs` ("a.csv,b.csv") in dir. */
static void predict_weightless(const char *dir, const char *model, const char *src, const char *csv, const char *outs)
{
    ck_assert_int_eq(tu_write(tu_path(dir, model), src, strlen(src)), 0);
    ck_assert_int_eq(tu_write(tu_path(dir, "x.csv"), csv, strlen(csv)), 0);
    kdh_error err;
    ck_assert_msg(kdh_safetensors_write(tu_path(dir, "none.safetensors"), NULL, 0, NULL, 0, &err) == 0, "%s", err.msg);
    char list[8192] = "";
    char copy[256];
    snprintf(copy, sizeof copy, "%s", outs);
    for (char *o = strtok(copy, ","); o; o = strtok(NULL, ","))
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? "," : "", tu_path(dir, o));
    char *out = NULL;
    int rc = tu_kdslc_run(&out, "predict %s --weights %s --input %s -o %s", tu_path(dir, model),
                          tu_path(dir, "none.safetensors"), tu_path(dir, "x.csv"), list);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
}

/* The first n numbers of a predictions CSV (after a header row, if any), into v; returns the text (free it). */
static char *read_csv_values(const char *path, int n, double *v)
{
    char *y = tu_read(path, NULL);
    ck_assert_ptr_nonnull(y);
    const char *p = y;
    while (*p && (*p < '0' || *p > '9') && *p != '-') p = strchr(p, '\n') + 1;   /* a header row, if any */
    for (int i = 0; i < n; i++) {
        char *end;
        v[i] = strtod(p, &end);
        ck_assert_ptr_ne(end, p);
        p = end + 1;
    }
    return y;
}

/* Normalization with given statistics (TensorFlow.js has no such layer):
 * (x - mean) / max(sqrt(variance), 1e-7), per channel or one for all. */
START_TEST(normalization_values)
{
    const char *dir = tu_tmpdir("normalization");
    const char *src = "model norm {\n    input x: [3]\n    Normalization(mean: [1, -2, 0.5], variance: [4, 0.25, 0])\n"
                      "    Normalization(mean: 0.5, variance: 9)\n}\n";
    const char *csv = "3,-1,0.5\n1,-2,0.500001\n";
    ck_assert_int_eq(tu_write(tu_path(dir, "norm.kdsl"), src, strlen(src)), 0);
    char *out = NULL;
    /* no weights: the layers have none (Keras: mean and variance given, no adapt) */
    int rc = tu_kdslc_run(&out, "summary %s", tu_path(dir, "norm.kdsl"));
    ck_assert_int_eq(rc, 0);
    ck_assert_has(out, "Total params: 0\n");
    free(out);
    predict_weightless(dir, "norm.kdsl", src, csv, "y.csv");
    /* row 1: (3-1)/2 = 1, (-1+2)/0.5 = 2, (0.5-0.5)/1e-7 = 0; then (v - 0.5) / 3. Row 2's last:
     * a variance of 0 divides by 1e-7 (0.500001 in float is 0.50000101). */
    double want[2][3] = {{(1 - 0.5) / 3, (2 - 0.5) / 3, (0 - 0.5) / 3},
                         {(0 - 0.5) / 3, (0 - 0.5) / 3, ((double)(0.500001f - 0.5f) / 1e-7 - 0.5) / 3}};
    double got[2][3];
    char *y = read_csv_values(tu_path(dir, "y.csv"), 6, &got[0][0]);
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 3; c++)
            ck_assert_msg(fabs(got[r][c] - want[r][c]) < 1e-5 * (1 + fabs(want[r][c])), "[%d][%d]: %g, want %g\n%s",
                          r, c, got[r][c], want[r][c], y);
    free(y);
}
END_TEST

/* Keras' ReLU with every argument (TensorFlow.js's has max_value only):
 * max_value where x >= max_value, x where x >= threshold, else
 * negative_slope * (x - threshold). Two outputs: all three arguments, and
 * negative_slope alone (a leaky ReLU). */
START_TEST(relu_arguments)
{
    const char *dir = tu_tmpdir("relu");
    const char *src = "model r {\n    input x: [5]\n    output a = ReLU(x, max_value: 2, negative_slope: 0.5, threshold: 1)\n"
                      "    output b = ReLU(x, negative_slope: 0.1)\n}\n";
    predict_weightless(dir, "r.kdsl", src, "-1,0.5,1,1.5,3\n", "a.csv,b.csv");
    const double want[2][5] = {{-1, -0.25, 1, 1.5, 2}, {-0.1, 0.5, 1, 1.5, 3}};
    for (int o = 0; o < 2; o++) {
        double v[5];
        char *y = read_csv_values(tu_path(dir, o ? "b.csv" : "a.csv"), 5, v);
        for (int i = 0; i < 5; i++)
            ck_assert_msg(fabs(v[i] - want[o][i]) < 1e-6, "output %d [%d]: %g, want %g\n%s", o, i, v[i], want[o][i], y);
        free(y);
    }
}
END_TEST

static kdh_tensor tensor(const char *name, int rank, const int64_t *shape)
{
    kdh_tensor t;
    kdh_error err;
    ck_assert_msg(kdh_tensor_alloc(&t, name, KDH_F32, rank, shape, &err) == 0, "%s", err.msg);
    return t;
}

/* Conv2D(groups: 2) (TensorFlow.js has no groups): the same as a plain
 * Conv2D whose kernel is block-diagonal — input channels [2g, 2g + 2) reach
 * only filters [3g, 3g + 3) — with Keras' kernel [3, 3, in / groups, filters]. */
START_TEST(conv2d_groups)
{
    const char *dir = tu_tmpdir("groups");
    const char *grouped = "model g {\n    input x: [5, 6, 4]\n    Conv2D(6, 3, padding: same, groups: 2)\n}\n";
    const char *full = "model f {\n    input x: [5, 6, 4]\n    Conv2D(6, 3, padding: same)\n}\n";
    ck_assert_int_eq(tu_write(tu_path(dir, "g.kdsl"), grouped, strlen(grouped)), 0);
    ck_assert_int_eq(tu_write(tu_path(dir, "f.kdsl"), full, strlen(full)), 0);
    int64_t gk[4] = {3, 3, 2, 6}, fk[4] = {3, 3, 4, 6}, bs[1] = {6}, xs[4] = {2, 5, 6, 4};
    kdh_tensor g[2] = {tensor("conv2d/kernel", 4, gk), tensor("conv2d/bias", 1, bs)};
    kdh_tensor f[2] = {tensor("conv2d/kernel", 4, fk), tensor("conv2d/bias", 1, bs)};
    kdh_tensor x = tensor(NULL, 4, xs);
    float *gw = g[0].data, *fw = f[0].data, *gb = g[1].data, *fb = f[1].data, *xv = x.data;
    memset(fw, 0, f[0].nbytes);
    for (int t = 0; t < 9; t++)
        for (int c = 0; c < 2; c++)
            for (int o = 0; o < 6; o++) {
                float v = (float)sin(0.7 * (t * 12 + c * 6 + o) + 0.3);
                gw[(t * 2 + c) * 6 + o] = v;
                fw[(t * 4 + (o / 3) * 2 + c) * 6 + o] = v;   /* filter o belongs to group o / 3 */
            }
    for (int o = 0; o < 6; o++) gb[o] = fb[o] = 0.1f * (float)o - 0.2f;
    for (int i = 0; i < 2 * 5 * 6 * 4; i++) xv[i] = (float)cos(0.37 * i);
    kdh_error err;
    ck_assert_msg(kdh_safetensors_write(tu_path(dir, "g.safetensors"), g, 2, NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_msg(kdh_safetensors_write(tu_path(dir, "f.safetensors"), f, 2, NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_msg(kdh_npy_write(tu_path(dir, "x.npy"), &x, &err) == 0, "%s", err.msg);
    const char *names[2] = {"g", "f"};
    for (int m = 0; m < 2; m++) {
        char *out = NULL;
        int rc = tu_kdslc_run(&out, "predict %s/%s.kdsl --weights %s/%s.safetensors --input %s -o %s/%s_y.npy", dir,
                              names[m], dir, names[m], tu_path(dir, "x.npy"), dir, names[m]);
        ck_assert_msg(rc == 0, "%s", out);
        free(out);
    }
    char gy[4200], fy[4200];
    snprintf(gy, sizeof gy, "%s/g_y.npy", dir);
    snprintf(fy, sizeof fy, "%s/f_y.npy", dir);
    kdh_tensor a = tu_read_npy_f32(gy), b = tu_read_npy_f32(fy);
    ck_assert_int_eq(a.nbytes, b.nbytes);
    ck_assert_int_eq(a.nbytes, 2 * 5 * 6 * 6 * sizeof(float));
    double worst = 0, size = 0;
    for (size_t i = 0; i < a.nbytes / sizeof(float); i++) {
        worst = fmax(worst, fabs(((float *)a.data)[i] - ((float *)b.data)[i]));
        size = fmax(size, fabs(((float *)b.data)[i]));
    }
    ck_assert_double_gt(size, 0.5);
    ck_assert_msg(worst < 1e-5, "grouped and block-diagonal convolutions differ by %g", worst);
    for (int i = 0; i < 2; i++) kdh_tensor_free(&g[i]), kdh_tensor_free(&f[i]);
    kdh_tensor_free(&x), kdh_tensor_free(&a), kdh_tensor_free(&b);
    /* Keras' rule: groups divide the channels and the filters */
    char *out = NULL;
    const char *bad = "model b {\n    input x: [5, 6, 4]\n    Conv2D(6, 3, groups: 4)\n}\n";
    ck_assert_int_eq(tu_write(tu_path(dir, "b.kdsl"), bad, strlen(bad)), 0);
    ck_assert_int_eq(tu_kdslc_run(&out, "summary %s", tu_path(dir, "b.kdsl")), 1);
    ck_assert_has(out, "Conv2D groups (4) must divide both the input channels (4) and filters (6)");
    free(out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("keras_layers");
    TCase *t = tcase_create("keras_layers");
    tcase_set_timeout(t, 300);
    tcase_add_loop_test(t, summary_matches_keras, 0, NCASES);
    tcase_add_loop_test(t, predict_matches_keras, 0, NCASES);
    tcase_add_test(t, normalization_values);
    tcase_add_test(t, relu_arguments);
    tcase_add_test(t, conv2d_groups);
    suite_add_tcase(s, t);
    return tu_run_suite(s);
}
