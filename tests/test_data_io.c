/* test_data_io.c — what goes in and out of `kdslc predict / evaluate /
 * train` besides the model: every input and output of a model of several
 * (issue 20), and the readers' limits and messages of issue 29 (CSV header
 * rows, safetensors trailing bytes, checkpoint metadata bounds, long
 * histories, batch sizes larger than the data, the NaN-weights message).
 *
 * Expected numbers are computed here, in C, from weights this file writes. */
#include "testutil.h"
#include "host/checkpoint.h"
#include "host/dataset.h"
#include "host/tensor_file.h"
#include "host/train.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define ck_assert_runs(...)                                                   \
    do {                                                                      \
        char *out_;                                                           \
        int rc_ = tu_kdslc_run(&out_, __VA_ARGS__);                           \
        ck_assert_msg(rc_ == 0, "exit %d:\n%s", rc_, out_);                   \
        free(out_);                                                           \
    } while (0)

#define ck_assert_err(err, text) \
    ck_assert_msg(strstr((err).msg, (text)) != NULL, "want \"%s\" in \"%s\"", (text), (err).msg)

static void write_npy_f32(const char *path, int rank, const int64_t *shape, const float *v)
{
    kdh_tensor t;
    kdh_error err;
    ck_assert_int_eq(kdh_tensor_alloc(&t, NULL, KDH_F32, rank, shape, &err), 0);
    memcpy(t.data, v, t.nbytes);
    ck_assert_msg(kdh_npy_write(path, &t, &err) == 0, "%s", err.msg);
    kdh_tensor_free(&t);
}


static void write_text(const char *path, const char *text) { ck_assert_int_eq(tu_write(path, text, strlen(text)), 0); }

/* ---- a model of two inputs and two outputs (issue 20) ------------------------------------------- */

static const char two_io_text[] = "model m {\n"
                                  "    input a: [3]\n"
                                  "    input b: [3]\n"
                                  "    output s = Dense(a + b, 2)\n"
                                  "    output p = Dense(a * b, 1)\n"
                                  "}\n"
                                  "train m {\n"
                                  "    loss: MeanSquaredError()\n"
                                  "    optimizer: SGD()\n"
                                  "}\n";

enum { N = 5 };   /* samples */
static const float K0[3][2] = {{0.5f, -1.0f}, {0.25f, 2.0f}, {-0.75f, 0.125f}}, B0[2] = {0.1f, -0.2f};
static const float K1[3][1] = {{1.5f}, {-0.5f}, {0.25f}}, B1[1] = {0.3f};

static float A[N][3], Bx[N][3], Y0[N][2], Y1[N][1];

/* Data, weights and the model in dir; the expected outputs in s and p. */
static void two_io_setup(const char *dir, double s[N][2], double p[N][1])
{
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < 3; k++) {
            A[i][k] = (float)(i * 3 + k) / 8.0f - 0.5f;
            Bx[i][k] = (float)((i + 2 * k) % 5) / 4.0f - 0.25f;
        }
        Y0[i][0] = (float)i / 2.0f;
        Y0[i][1] = 1.0f - (float)i;
        Y1[i][0] = (float)(i % 3) - 0.5f;
    }
    for (int i = 0; i < N; i++) {
        for (int o = 0; o < 2; o++) {
            double v = B0[o];
            for (int k = 0; k < 3; k++) v += ((double)A[i][k] + Bx[i][k]) * K0[k][o];
            s[i][o] = v;
        }
        double v = B1[0];
        for (int k = 0; k < 3; k++) v += ((double)A[i][k] * Bx[i][k]) * K1[k][0];
        p[i][0] = v;
    }
    write_text(tu_path(dir, "m.kdsl"), two_io_text);
    int64_t s3[2] = {N, 3}, s2[2] = {N, 2}, s1[2] = {N, 1};
    write_npy_f32(tu_path(dir, "a.npy"), 2, s3, &A[0][0]);
    write_npy_f32(tu_path(dir, "b.npy"), 2, s3, &Bx[0][0]);
    write_npy_f32(tu_path(dir, "y0.npy"), 2, s2, &Y0[0][0]);
    write_npy_f32(tu_path(dir, "y1.npy"), 2, s1, &Y1[0][0]);
    /* b with 4 samples, and with samples of the wrong shape */
    write_npy_f32(tu_path(dir, "b4.npy"), 2, (int64_t[2]){4, 3}, &Bx[0][0]);
    write_npy_f32(tu_path(dir, "b2.npy"), 2, (int64_t[2]){N, 2}, &Bx[0][0]);

    kdh_tensor_list l;
    kdh_error err;
    kdh_list_init(&l);
    kdh_tensor *t;
    ck_assert_ptr_nonnull(t = kdh_list_add(&l, "dense/kernel", KDH_F32, 2, (int64_t[]){3, 2}, &err));
    memcpy(t->data, K0, sizeof K0);
    ck_assert_ptr_nonnull(t = kdh_list_add(&l, "dense/bias", KDH_F32, 1, (int64_t[]){2}, &err));
    memcpy(t->data, B0, sizeof B0);
    ck_assert_ptr_nonnull(t = kdh_list_add(&l, "dense_1/kernel", KDH_F32, 2, (int64_t[]){3, 1}, &err));
    memcpy(t->data, K1, sizeof K1);
    ck_assert_ptr_nonnull(t = kdh_list_add(&l, "dense_1/bias", KDH_F32, 1, (int64_t[]){1}, &err));
    memcpy(t->data, B1, sizeof B1);
    ck_assert_msg(kdh_safetensors_write_list(tu_path(dir, "w.safetensors"), &l, &err) == 0, "%s", err.msg);
    kdh_list_free(&l);

    /* the same data as one CSV file: a, b, then the labels of s and p */
    char csv[4096];
    size_t at = 0;
    for (int i = 0; i < N; i++)
        at += (size_t)snprintf(csv + at, sizeof csv - at, "%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g\n",
                               (double)A[i][0], (double)A[i][1], (double)A[i][2], (double)Bx[i][0], (double)Bx[i][1],
                               (double)Bx[i][2], (double)Y0[i][0], (double)Y0[i][1], (double)Y1[i][0]);
    write_text(tu_path(dir, "all.csv"), csv);
    /* the inputs alone as one CSV file, with a header */
    at = (size_t)snprintf(csv, sizeof csv, "a0,a1,a2,b0,b1,b2\n");
    for (int i = 0; i < N; i++)
        at += (size_t)snprintf(csv + at, sizeof csv - at, "%.9g,%.9g,%.9g,%.9g,%.9g,%.9g\n", (double)A[i][0],
                               (double)A[i][1], (double)A[i][2], (double)Bx[i][0], (double)Bx[i][1], (double)Bx[i][2]);
    write_text(tu_path(dir, "x.csv"), csv);
}

static void check_matrix(const float *got, const double *want, int n, const char *what)
{
    for (int i = 0; i < n; i++)
        ck_assert_msg(fabs((double)got[i] - want[i]) < 1e-5, "%s[%d] = %.9g, expected %.9g", what, i, (double)got[i],
                      want[i]);
}

/* The numbers after `key` in text (the first occurrence). */
static double number_after(const char *text, const char *key)
{
    const char *at = strstr(text, key);
    ck_assert_msg(at != NULL, "no \"%s\" in:\n%s", key, text);
    return strtod(at + strlen(key), NULL);
}

START_TEST(predict_two_inputs_two_outputs)
{
    const char *dir = tu_tmpdir("two-io-predict");
    double s[N][2], p[N][1];
    two_io_setup(dir, s, p);
    char m[4200], w[4200];   /* tu_path's buffers rotate */
    snprintf(m, sizeof m, "%s/m.kdsl", dir);
    snprintf(w, sizeof w, "%s/w.safetensors", dir);

    /* one .npy file per output */
    ck_assert_runs("predict %s --weights %s --input %s,%s -o %s,%s", m, w, tu_path(dir, "a.npy"), tu_path(dir, "b.npy"),
                   tu_path(dir, "s.npy"), tu_path(dir, "p.npy"));
    kdh_tensor ts = tu_read_npy_f32(tu_path(dir, "s.npy")), tp = tu_read_npy_f32(tu_path(dir, "p.npy"));
    ck_assert_int_eq(ts.rank, 2);
    ck_assert_int_eq(ts.shape[0], N);
    ck_assert_int_eq(ts.shape[1], 2);
    ck_assert_int_eq(tp.shape[0], N);
    ck_assert_int_eq(tp.shape[1], 1);
    check_matrix(ts.data, &s[0][0], 2 * N, "s");
    check_matrix(tp.data, &p[0][0], N, "p");
    kdh_tensor_free(&ts);
    kdh_tensor_free(&tp);

    /* CSV on stdout, and one CSV file: each row s0, s1, p0 */
    double rows[N][3];
    for (int i = 0; i < N; i++) {
        rows[i][0] = s[i][0];
        rows[i][1] = s[i][1];
        rows[i][2] = p[i][0];
    }
    char cmd[32768], *out;
    snprintf(cmd, sizeof cmd, "%s predict %s --weights %s --input %s,%s 2>/dev/null", tu_kdslc(), m, w,
             tu_path(dir, "a.npy"), tu_path(dir, "b.npy"));
    ck_assert_int_eq(tu_run(cmd, &out), 0);
    kdh_tensor c;
    kdh_error err;
    ck_assert_msg(kdh_csv_parse(out, strlen(out), "stdout", &c, NULL, &err) == 0, "%s\n%s", err.msg, out);
    ck_assert_int_eq(c.shape[0], N);
    ck_assert_int_eq(c.shape[1], 3);
    check_matrix(c.data, &rows[0][0], 3 * N, "stdout");
    kdh_tensor_free(&c);
    free(out);

    ck_assert_runs("predict %s --weights %s --input %s -o %s", m, w, tu_path(dir, "x.csv"), tu_path(dir, "y.csv"));
    ck_assert_msg(kdh_csv_read(tu_path(dir, "y.csv"), NULL, &c, NULL, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(c.shape[0], N);
    ck_assert_int_eq(c.shape[1], 3);
    check_matrix(c.data, &rows[0][0], 3 * N, "y.csv");
    kdh_tensor_free(&c);

    /* an output as CSV beside one as .npy */
    ck_assert_runs("predict %s --weights %s --input %s,%s -o %s,%s", m, w, tu_path(dir, "a.npy"), tu_path(dir, "b.npy"),
                   tu_path(dir, "s.csv"), tu_path(dir, "p2.npy"));
    ck_assert_msg(kdh_csv_read(tu_path(dir, "s.csv"), NULL, &c, NULL, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(c.shape[1], 2);
    check_matrix(c.data, &s[0][0], 2 * N, "s.csv");
    kdh_tensor_free(&c);

    /* wrong counts of files, samples and shapes */
    ck_assert_fails(1, "names 1 file; model 'm' takes 2: one .npy or .csv file per input (a, b)",
                    "predict %s --weights %s --input %s", m, w, tu_path(dir, "a.npy"));
    ck_assert_fails(1, "names 3 files", "predict %s --weights %s --input %s,%s,%s", m, w, tu_path(dir, "a.npy"),
                    tu_path(dir, "b.npy"), tu_path(dir, "b.npy"));
    ck_assert_fails(1, "b4.npy: 4 samples, but", "predict %s --weights %s --input %s,%s", m, w, tu_path(dir, "a.npy"),
                    tu_path(dir, "b4.npy"));
    ck_assert_fails(1, "whose input b is [3]", "predict %s --weights %s --input %s,%s", m, w, tu_path(dir, "a.npy"),
                    tu_path(dir, "b2.npy"));
    ck_assert_fails(2, "has 2 outputs (s, p): give one .npy or .csv file per output",
                    "predict %s --weights %s --input %s,%s -o %s", m, w, tu_path(dir, "a.npy"), tu_path(dir, "b.npy"),
                    tu_path(dir, "one.npy"));
    ck_assert_fails(2, "names 3 files", "predict %s --weights %s --input %s,%s -o %s,%s,%s", m, w,
                    tu_path(dir, "a.npy"), tu_path(dir, "b.npy"), tu_path(dir, "1.npy"), tu_path(dir, "2.npy"),
                    tu_path(dir, "3.npy"));
    ck_assert_fails(1, "6 columns; model 'm' takes 9", "evaluate %s --weights %s --data %s", m, w, tu_path(dir, "x.csv"));
    /* an output over an input is refused before any work */
    ck_assert_fails(2, "a.npy would overwrite --input", "predict %s --weights %s --input %s,%s -o %s,%s", m, w,
                    tu_path(dir, "a.npy"),
                    tu_path(dir, "b.npy"), tu_path(dir, "s.npy"), tu_path(dir, "a.npy"));
    kdh_tensor ta = tu_read_npy_f32(tu_path(dir, "a.npy"));
    ck_assert_int_eq(ta.shape[1], 3);
    kdh_tensor_free(&ta);
}
END_TEST

START_TEST(evaluate_two_inputs_two_outputs)
{
    const char *dir = tu_tmpdir("two-io-evaluate");
    double s[N][2], p[N][1];
    two_io_setup(dir, s, p);
    char m[4200], w[4200];   /* tu_path's buffers rotate */
    snprintf(m, sizeof m, "%s/m.kdsl", dir);
    snprintf(w, sizeof w, "%s/w.safetensors", dir);
    /* Keras: one loss for every output, summed; each output's mean over samples */
    double ls = 0, lp = 0;
    for (int i = 0; i < N; i++) {
        ls += ((s[i][0] - Y0[i][0]) * (s[i][0] - Y0[i][0]) + (s[i][1] - Y0[i][1]) * (s[i][1] - Y0[i][1])) / 2;
        lp += (p[i][0] - Y1[i][0]) * (p[i][0] - Y1[i][0]);
    }
    ls /= N;
    lp /= N;
    const char *specs[2] = {NULL, tu_path(dir, "all.csv")};
    char files[4096];
    snprintf(files, sizeof files, "%s,%s,%s,%s", tu_path(dir, "a.npy"), tu_path(dir, "b.npy"), tu_path(dir, "y0.npy"),
             tu_path(dir, "y1.npy"));
    specs[0] = files;
    for (int k = 0; k < 2; k++) {
        char *out;
        int rc = tu_kdslc_run(&out, "evaluate %s --weights %s --data %s", m, w, specs[k]);
        ck_assert_msg(rc == 0, "%s", out);
        ck_assert_has(out, "Evaluated 5 samples");
        ck_assert_double_eq_tol(number_after(out, "\nloss: "), ls + lp, 1e-4);
        ck_assert_double_eq_tol(number_after(out, " - s_loss: "), ls, 1e-4);
        ck_assert_double_eq_tol(number_after(out, " - p_loss: "), lp, 1e-4);
        free(out);
    }
    ck_assert_fails(1, "names 3 files; model 'm' takes 4", "evaluate %s --weights %s --data %s,%s,%s", m, w,
                    tu_path(dir, "a.npy"), tu_path(dir, "b.npy"), tu_path(dir, "y0.npy"));
    ck_assert_fails(1, "then one of labels per output (s, p)", "evaluate %s --weights %s --data %s,%s", m, w,
                    tu_path(dir, "a.npy"), tu_path(dir, "y0.npy"));
    ck_assert_fails(1, "several inputs or outputs: give --data", "evaluate %s --weights %s", m, w);
    /* the labels of p given for s: 1 value per sample where s has 2 */
    ck_assert_fails(1, "do not fit model 'm'", "evaluate %s --weights %s --data %s,%s,%s,%s", m, w, tu_path(dir, "a.npy"),
                    tu_path(dir, "b.npy"), tu_path(dir, "y1.npy"), tu_path(dir, "y1.npy"));
    ck_assert_fails(1, "b4.npy: 4 samples", "evaluate %s --weights %s --data %s,%s,%s,%s", m, w, tu_path(dir, "a.npy"),
                    tu_path(dir, "b4.npy"), tu_path(dir, "y0.npy"), tu_path(dir, "y1.npy"));
    /* train still takes one input and one output */
    ck_assert_fails(1, "takes models with one of each", "train %s --data %s", m, files);
}
END_TEST

/* ---- issue 29: readers ----------------------------------------------------------------------------- */

static kdh_error csv_fail(const char *text)
{
    kdh_tensor t;
    kdh_csv_header h;
    kdh_error err = {""};
    ck_assert_msg(kdh_csv_parse(text, strlen(text), "d.csv", &t, &h, &err) == -1, "accepted %s", text);
    ck_assert_ptr_null(t.data);
    ck_assert_uint_eq(h.count, 0);
    return err;
}

/* A first row is a header only when none of its fields is a number. */
START_TEST(csv_header_rule)
{
    kdh_error err = csv_fail("1,2,3O,0\n4,5,6,1\n");
    ck_assert_str_eq(err.msg, "d.csv: line 1, column 3: \"3O\" is not a number (the row has 3 numbers, so it is not "
                              "a header: a header has none)");
    err = csv_fail("\n\nx,2\n1,2\n");
    ck_assert_err(err, "d.csv: line 3, column 1: \"x\" is not a number");
    err = csv_fail("\"a\",\"1\"\n1,2\n");   /* quoted numbers are numbers */
    ck_assert_err(err, "line 1, column 1: \"a\" is not a number");

    kdh_tensor t;
    kdh_csv_header h;
    ck_assert_int_eq(kdh_csv_parse("x,y,label\n1,2,0\n", 16, "h.csv", &t, &h, &err), 0);
    ck_assert_uint_eq(h.count, 3);
    ck_assert_int_eq(t.shape[0], 1);
    kdh_csv_header_free(&h);
    kdh_tensor_free(&t);
    /* pandas' header with an unnamed index column; NaN and empty fields are no numbers */
    ck_assert_int_eq(kdh_csv_parse(",x,nan\n0,1,2\n", 13, "i.csv", &t, &h, &err), 0);
    ck_assert_uint_eq(h.count, 3);
    ck_assert_int_eq(t.shape[0], 1);
    kdh_csv_header_free(&h);
    kdh_tensor_free(&t);

    /* through kdslc train: the typo is an error, not a dropped sample */
    const char *dir = tu_tmpdir("csv-typo");
    write_text(tu_path(dir, "d.csv"), "1,2,3O,4,5,6,0\n1,2,3,4,5,6,1\n");
    ck_assert_fails(1, "d.csv: line 1, column 3: \"3O\" is not a number", "train %s --data %s --epochs 1",
                    tu_src("tests/fixtures/sgd_mlp.kdsl"), tu_path(dir, "d.csv"));
}
END_TEST

/* Bytes after the tensor data, or between tensors: refused, as the reference reader refuses them. */
START_TEST(safetensors_trailing_bytes)
{
    const char *dir = tu_tmpdir("st-trailing");
    const char *p = tu_path(dir, "w.safetensors");
    kdh_tensor_list l;
    kdh_error err;
    kdh_list_init(&l);
    ck_assert_ptr_nonnull(kdh_list_add(&l, "a", KDH_F32, 1, (int64_t[]){3}, &err));
    ck_assert_ptr_nonnull(kdh_list_add(&l, "b", KDH_F32, 1, (int64_t[]){0}, &err));
    ck_assert_int_eq(kdh_safetensors_write_list(p, &l, &err), 0);
    kdh_list_free(&l);
    ck_assert_msg(kdh_safetensors_read(p, NULL, &l, &err) == 0, "%s", err.msg);
    kdh_list_free(&l);

    size_t n;
    char *bytes = tu_read(p, &n);
    ck_assert_ptr_nonnull(bytes);
    char *longer = malloc(n + 5);
    memcpy(longer, bytes, n);
    memcpy(longer + n, "junk!", 5);
    ck_assert_int_eq(kdh_safetensors_read_mem(longer, n + 5, "t.safetensors", NULL, &l, &err), -1);
    ck_assert_str_eq(err.msg, "t.safetensors: 5 bytes after the end of the tensor data (the tensors end at data byte "
                              "12 of 17): the file is damaged or not what its header says");
    ck_assert_uint_eq(l.count, 0);
    ck_assert_int_eq(kdh_safetensors_read_mem(longer, n + 1, "t.safetensors", NULL, &l, &err), -1);
    ck_assert_err(err, "1 bytes after the end of the tensor data");
    free(longer);
    free(bytes);

    /* bytes between two tensors: the header says "b" starts 4 bytes after "a" ends */
    {
        const char hdr[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                           "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
        size_t hl = sizeof hdr - 1, total = 8 + hl + 12;
        unsigned char *gap = calloc(1, total);
        for (int i = 0; i < 8; i++) gap[i] = (unsigned char)(hl >> (8 * i));
        memcpy(gap + 8, hdr, hl);
        ck_assert_int_eq(kdh_safetensors_read_mem(gap, total, "g.safetensors", NULL, &l, &err), -1);
        ck_assert_str_eq(err.msg, "g.safetensors: tensor \"b\" starts at data byte 8, but the data before it ends at 4: "
                                  "4 bytes belong to no tensor (the file is damaged or not what its header says)");
        ck_assert_uint_eq(l.count, 0);
        free(gap);
    }

    /* a file of no tensors at all ends at its header */
    const char empty[] = "\x02\0\0\0\0\0\0\0{}x";
    ck_assert_int_eq(kdh_safetensors_read_mem(empty, sizeof empty - 2, "e.safetensors", NULL, &l, &err), 0);
    kdh_list_free(&l);
    ck_assert_int_eq(kdh_safetensors_read_mem(empty, sizeof empty - 1, "e.safetensors", NULL, &l, &err), -1);
    ck_assert_err(err, "1 bytes after the end of the tensor data (the tensors end at data byte 0 of 1)");

    /* through kdslc: a weights file with a byte more */
    bytes = tu_read(tu_src("tests/fixtures/sgd_mlp_init.safetensors"), &n);
    ck_assert_ptr_nonnull(bytes);
    longer = malloc(n + 1);
    memcpy(longer, bytes, n);
    longer[n] = 0;
    ck_assert_int_eq(tu_write(tu_path(dir, "long.safetensors"), longer, n + 1), 0);
    ck_assert_fails(1, "long.safetensors: 1 bytes after the end of the tensor data",
                    "predict %s --weights %s --input %s", tu_src("tests/fixtures/sgd_mlp.kdsl"),
                    tu_path(dir, "long.safetensors"), tu_src("tests/fixtures/sgd_mlp_x.npy"));
    free(longer);
    free(bytes);
}
END_TEST

/* The NaN-weights message names the file and the tensor once. */
START_TEST(nan_weights_message)
{
    const char *dir = tu_tmpdir("nan-weights");
    const char *p = tu_path(dir, "w.safetensors");
    kdh_tensor_list l;
    kdh_error err;
    kdh_list_init(&l);
    kdh_tensor *t = kdh_list_add(&l, "dense/bias", KDH_F32, 1, (int64_t[]){4}, &err);
    ck_assert_ptr_nonnull(t);
    ((float *)t->data)[2] = NAN;
    ck_assert_int_eq(kdh_safetensors_write_list(p, &l, &err), 0);
    kdh_list_free(&l);

    kdh_var v = {.name = "dense/bias", .offset = 0, .elems = 4, .rank = 1, .shape = {4}};
    kdh_model m = {.name = "m", .params = &v, .nparams = 1, .params_size = 4};
    float params[4];
    ck_assert_int_eq(kdh_weights_load(p, &m, params, &err), -1);
    char want[4200];
    snprintf(want, sizeof want, "%s: tensor \"dense/bias\": element 2 (index [2]) is NaN", p);
    ck_assert_str_eq(err.msg, want);

    /* the same through kdslc, on a real model */
    l = (kdh_tensor_list){0};
    ck_assert_int_eq(kdh_safetensors_read(tu_src("tests/fixtures/sgd_mlp_init.safetensors"), NULL, &l, &err), 0);
    ((float *)kdh_list_find(&l, "dense_1/kernel")->data)[4] = -INFINITY;
    ck_assert_int_eq(kdh_safetensors_write_list(p, &l, &err), 0);
    kdh_list_free(&l);
    snprintf(want, sizeof want, "kdslc: error: %s: tensor \"dense_1/kernel\": element 4 (index [1, 1]) is -inf\n", p);
    ck_assert_fails(1, want, "predict %s --weights %s --input %s", tu_src("tests/fixtures/sgd_mlp.kdsl"), p,
                    tu_src("tests/fixtures/sgd_mlp_x.npy"));
}
END_TEST

/* A checkpoint's batch size and epoch count are held to the bounds of
 * --batch-size and --epochs. */
START_TEST(checkpoint_limits_as_flags)
{
    const char *dir = tu_tmpdir("ckpt-limits");
    kdh_model m = {.name = "sgd_mlp", .optimizer = "SGD"};
    kdh_ckpt_state st = {.epoch = 1, .step = 2, .seed = 3, .shuffle_rng = 4, .batch_size = 100000000};
    kdh_error err;
    const char *p = tu_path(dir, "big.ckpt");
    ck_assert_int_eq(kdh_checkpoint_save(p, &m, NULL, NULL, &st, &err), 0);
    kdh_ckpt_state back;
    ck_assert_int_eq(kdh_checkpoint_peek(p, &back, &err), -1);
    char want[4200];
    snprintf(want, sizeof want, "%s: checkpoint's \"kdsl.batch_size\" is 100000000, outside 1..1048576", p);
    ck_assert_str_eq(err.msg, want);
    ck_assert_fails(1, "\"kdsl.batch_size\" is 100000000, outside 1..1048576", "train %s --data %s,%s --resume %s",
                    tu_src("tests/fixtures/sgd_mlp.kdsl"), tu_src("tests/fixtures/sgd_mlp_x.npy"),
                    tu_src("tests/fixtures/sgd_mlp_y.npy"), p);

    st.batch_size = 0;
    ck_assert_int_eq(kdh_checkpoint_save(p, &m, NULL, NULL, &st, &err), 0);
    ck_assert_int_eq(kdh_checkpoint_peek(p, &back, &err), -1);
    ck_assert_err(err, "\"kdsl.batch_size\" is 0, outside 1..1048576");

    st.batch_size = 1 << 20;   /* the largest a flag takes */
    ck_assert_int_eq(kdh_checkpoint_save(p, &m, NULL, NULL, &st, &err), 0);
    ck_assert_msg(kdh_checkpoint_peek(p, &back, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(back.batch_size, 1 << 20);
    kdh_history_free(&back.history);

    st.batch_size = 8;
    st.epoch = 1000000001;
    ck_assert_int_eq(kdh_checkpoint_save(p, &m, NULL, NULL, &st, &err), 0);
    ck_assert_int_eq(kdh_checkpoint_peek(p, &back, &err), -1);
    ck_assert_err(err, "\"kdsl.epoch\" is 1000000001, outside 0..1000000000");
}
END_TEST

/* 40,000 epochs of history come back from a checkpoint whole, in linear time. */
START_TEST(long_history_loads)
{
    enum { EPOCHS = 40000 };
    kdh_history h = {0};
    for (int e = 1; e <= EPOCHS; e++) {
        kdh_epoch_log r = {.epoch = e, .loss = 1.0 / e, .accuracy = e % 7 ? (double)(e % 100) / 100 : NAN,
                           .val_loss = e % 2 ? NAN : e * 0.5, .val_accuracy = e % 3 ? NAN : 0.25};
        ck_assert_int_eq(kdh_history_add(&h, &r), 0);
    }
    const char *dir = tu_tmpdir("long-history");
    const char *p = tu_path(dir, "long.ckpt");
    kdh_model m = {.name = "m", .optimizer = "SGD"};
    kdh_ckpt_state st = {.epoch = EPOCHS, .step = 80000, .seed = 1, .shuffle_rng = 2, .batch_size = 8, .history = h};
    kdh_error err;
    ck_assert_int_eq(kdh_checkpoint_save(p, &m, NULL, NULL, &st, &err), 0);
    kdh_ckpt_state back;
    ck_assert_msg(kdh_checkpoint_peek(p, &back, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(back.history.count, EPOCHS);
    for (int i = 0; i < EPOCHS; i++) {
        const kdh_epoch_log *a = &h.rows[i], *b = &back.history.rows[i];
        ck_assert_int_eq(b->epoch, a->epoch);
        ck_assert_double_eq_tol(b->loss, a->loss, 1e-12 * a->loss);
        ck_assert_int_eq(isnan(b->accuracy), isnan(a->accuracy));
        if (!isnan(a->accuracy)) ck_assert_double_eq_tol(b->accuracy, a->accuracy, 1e-12);
        ck_assert_int_eq(isnan(b->val_loss), isnan(a->val_loss));
        if (!isnan(a->val_loss)) ck_assert_double_eq_tol(b->val_loss, a->val_loss, 1e-9);
        ck_assert_int_eq(isnan(b->val_accuracy), isnan(a->val_accuracy));
    }
    kdh_history_free(&back.history);

    /* columns shorter than "epoch" leave NaN, as before */
    kdh_history s;
    ck_assert_int_eq(kdh_history_from_json("{\"epoch\":[1,2,3],\"loss\":[0.5,0.25],\"accuracy\":[null,1,0.5]}", &s, "c",
                                           &err),
                     0);
    ck_assert_int_eq(s.count, 3);
    ck_assert_double_eq(s.rows[1].loss, 0.25);
    ck_assert(isnan(s.rows[2].loss));
    ck_assert(isnan(s.rows[0].accuracy));
    ck_assert_double_eq(s.rows[2].accuracy, 0.5);
    kdh_history_free(&s);
    ck_assert_int_eq(kdh_history_from_json("{\"epoch\":[1,\"x\"]}", &s, "c", &err), -1);
    kdh_history_free(&h);
}
END_TEST

/* The largest resident size of the children waited for so far, in MiB. */
static double children_max_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* --batch-size 1048576 on 4 samples: buffers for 4, not for 2^20 (each
 * input batch alone would be 1 GiB). */
START_TEST(batch_larger_than_data)
{
    const char *dir = tu_tmpdir("big-batch");
    write_text(tu_path(dir, "m.kdsl"), "model m {\n    input x: [256]\n    output y = Dense(x, 1)\n}\n"
                                      "train m {\n    loss: MeanSquaredError()\n    optimizer: SGD()\n}\n");
    float x[4 * 256], y[4];
    for (int i = 0; i < 4 * 256; i++) x[i] = (float)(i % 17) / 17.0f;
    for (int i = 0; i < 4; i++) y[i] = (float)i;
    write_npy_f32(tu_path(dir, "x.npy"), 2, (int64_t[]){4, 256}, x);
    write_npy_f32(tu_path(dir, "y.npy"), 2, (int64_t[]){4, 1}, y);
    const char *m = tu_path(dir, "m.kdsl");
    char *out;
    int rc = tu_kdslc_run(&out, "train %s --data %s,%s --batch-size 1048576 --epochs 2 --save %s", m, tu_path(dir, "x.npy"),
                   tu_path(dir, "y.npy"), tu_path(dir, "w.safetensors"));
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_has(out, "Train on 4 samples");
    ck_assert_has(out, "1/1");   /* one step of all four */
    free(out);
    ck_assert_runs("evaluate %s --weights %s --data %s,%s --batch-size 1048576", m, tu_path(dir, "w.safetensors"),
                   tu_path(dir, "x.npy"), tu_path(dir, "y.npy"));
    ck_assert_runs("predict %s --weights %s --input %s --batch-size 1048576 -o %s", m, tu_path(dir, "w.safetensors"),
                   tu_path(dir, "x.npy"), tu_path(dir, "p.npy"));
    double rss = children_max_rss_mib();
    ck_assert_msg(rss < 700, "a child of this test reached %.0f MiB: buffers for the whole batch?", rss);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("data_io");
    TCase *io = tcase_create("several inputs and outputs");
    tcase_set_timeout(io, 600);
    tcase_add_test(io, predict_two_inputs_two_outputs);
    tcase_add_test(io, evaluate_two_inputs_two_outputs);
    suite_add_tcase(s, io);
    TCase *rd = tcase_create("readers and limits");
    tcase_set_timeout(rd, 600);
    tcase_add_test(rd, csv_header_rule);
    tcase_add_test(rd, safetensors_trailing_bytes);
    tcase_add_test(rd, nan_weights_message);
    tcase_add_test(rd, checkpoint_limits_as_flags);
    tcase_add_test(rd, long_history_loads);
    tcase_add_test(rd, batch_larger_than_data);
    suite_add_tcase(s, rd);
    return tu_run_suite(s);
}
