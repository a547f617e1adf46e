/* test_import.c — `kdslc import`: the two MLPerf Tiny Keras files
 * (tests/fixtures/mlperf_tiny) import with Keras' parameter counts and
 * predict what TensorFlow.js predicts from the same files (make.js there);
 * TensorFlow.js's own saved models (tests/fixtures/tfjs_model) and the same
 * models as Keras 3 .keras files (tests/fixtures/keras3, laid out by a
 * script as Keras 3's saving_lib does); configs of both Keras dialects;
 * and every kind of bad file gets a clear error, exit 1, and no file
 * written or damaged. The bad files are made here with libhdf5 and libzip. */
#include "testutil.h"

#include "driver.h"
#include "host/tensor_file.h"

#include <hdf5.h>
#include <math.h>
#include <zip.h>
#include <stdarg.h>
#include <stdio.h>

/* printf into one of 8 rotating static buffers */
static const char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static const char *fmt(const char *f, ...)
{
    static char buf[8][4096];
    static int i;
    i = (i + 1) % 8;
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf[i], sizeof buf[i], f, ap);
    va_end(ap);
    return buf[i];
}

/* A file's text; the test fails if it cannot be read. */
static char *text_of(const char *path) __attribute__((returns_nonnull));
static char *text_of(const char *path)
{
    char *t = tu_read(path, NULL);
    ck_assert_msg(t != NULL, "cannot read %s", path);
    return t ? t : strdup("");
}

static const char *fixture(const char *file)
{
    static char buf[4][4096];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s", tu_src(file));
    return buf[i];
}

/* Keras' outputs `want` against kdsl's `got` (.npy files), within 1e-4 relative. */
static void close_to(const char *want_path, const char *got_path, const char *name)
{
    kdh_tensor want = tu_read_npy_f32(want_path), got = tu_read_npy_f32(got_path);
    ck_assert_uint_eq(want.nbytes, got.nbytes);
    /* relative to each value, or to the outputs' scale (their root mean square) where a value is
     * small beside it: float32 sums in another order differ by that much */
    const float *a = want.data, *b = got.data;
    size_t n = want.nbytes / 4;
    double rms = 0;
    for (size_t i = 0; i < n; i++) rms += (double)a[i] * a[i];
    rms = sqrt(rms / (double)n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs((double)a[i] - b[i]) <= 1e-4 * fmax(fabs(a[i]), rms), "%s[%zu]: kdsl %.9g, TensorFlow.js %.9g", name,
                      i, b[i], a[i]);
    kdh_tensor_free(&want);
    kdh_tensor_free(&got);
}

/* tests/run's sanitizer pass checks the readers and writers here; what the JIT
 * predicts and trains with their output, the first pass has checked (and the
 * JIT runs under the sanitizers in the jit and train suites). */
static bool sanitizer_pass(void) { return getenv("KDSL_SANITIZE_CFLAGS") != NULL; }

/* kdslc predict of DIR/NAME.kdsl on the inputs x against Keras' outputs y. */
static void predicts_like(const char *dir, const char *name, const char *x, const char *y)
{
    if (sanitizer_pass()) return;
    char *out;
    int rc = tu_kdslc_run(&out, "predict %s/%s.kdsl --weights %s/%s.safetensors --input %s --normalize none -o %s/%s_got.npy",
                          dir, name, dir, name, x, dir, name);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    close_to(y, tu_path(dir, fmt("%s_got.npy", name)), name);
}

static void predicts_like_keras(const char *dir, const char *name)
{
    char x[4096], y[4096];
    snprintf(x, sizeof x, "%s", fixture(fmt("tests/fixtures/mlperf_tiny/%s_x.npy", name)));
    snprintf(y, sizeof y, "%s", fixture(fmt("tests/fixtures/mlperf_tiny/%s_y.npy", name)));
    predicts_like(dir, name, x, y);
}

/* kdslc import of an MLPerf Tiny file into dir: its line, Keras' totals in
 * the summary, and TensorFlow.js' predictions; returns the program's text. */
static char *imports_mlperf(const char *dir, const char *name, const char *says, const char *total, const char *frozen)
{
    char *out;
    int rc = tu_kdslc_run(&out, "import %s -o %s/%s.kdsl", fixture(fmt("tests/fixtures/mlperf_tiny/%s.h5", name)), dir, name);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_has(out, says);
    free(out);
    rc = tu_kdslc_run(&out, "summary %s/%s.kdsl", dir, name);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_has(out, total);
    ck_assert_has(out, frozen);
    free(out);
    predicts_like_keras(dir, name);
    return text_of(tu_path(dir, fmt("%s.kdsl", name)));
}

START_TEST(mlperf_resnet8)
{
    const char *dir = tu_tmpdir("import-resnet");
    char *text = imports_mlperf(dir, "pretrainedResnet", "78666 parameters (480 non-trainable)", "Total params: 78,666",
                                "Non-trainable params: 480");
    /* reads like what a person would write: defaults left out, Keras' names kept without name: */
    ck_assert_has(text, "    input input_1: [32, 32, 3]\n"
                        "    conv2d = Conv2D(input_1, 16, 3, padding: same, kernel_initializer: he_normal, "
                        "kernel_regularizer: l2(0.0001))\n"
                        "    batch_normalization = BatchNormalization(conv2d)\n");
    ck_assert_has(text, "    add = Add([activation, batch_normalization_2])\n");
    ck_assert_has(text, "    output dense = Dense(flatten, 10, activation: softmax, kernel_initializer: he_normal)\n");
    ck_assert_lacks(text, "name:");
    free(text);
    /* samples/resnet8.kdsl, bench/run's ResNet-8, is this model layer for
     * layer: the imported weights load into it and it predicts as Keras does */
    if (sanitizer_pass()) return;
    char *out, *got = tu_path(dir, "sample_got.npy");
    int rc = tu_kdslc_run(&out, "predict %s --weights %s/pretrainedResnet.safetensors --input %s --normalize none -o %s",
                          fixture("samples/resnet8.kdsl"), dir, fixture("tests/fixtures/mlperf_tiny/pretrainedResnet_x.npy"),
                          got);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    close_to(fixture("tests/fixtures/mlperf_tiny/pretrainedResnet_y.npy"), got, "samples/resnet8.kdsl");
}
END_TEST

START_TEST(mlperf_ad01)
{
    free(imports_mlperf(tu_tmpdir("import-ad01"), "ad01", "269992 parameters (2064 non-trainable)", "Total params: 269,992",
                        "Non-trainable params: 2,064"));
}
END_TEST

/* TensorFlow.js Layers models as TensorFlow.js saves them (fixtures/tfjs_model/make.js). */
START_TEST(tfjs_models)
{
    const char *dir = tu_tmpdir("import-tfjs");
    static const char *const names[] = {"cnn", "res", "nested"};
    static const char *const counts[] = {"731 parameters (16 non-trainable)", "372 parameters (0 non-trainable)",
                                         "99 parameters (12 non-trainable)"};
    for (int i = 0; i < 3; i++) {
        char *out;
        int rc = tu_kdslc_run(&out, "import %s -o %s/%s.kdsl", fixture(fmt("tests/fixtures/tfjs_model/%s/model.json", names[i])), dir,
                              names[i]);
        ck_assert_msg(rc == 0, "%s", out);
        ck_assert_has(out, counts[i]);
        free(out);
        char x[4096], y[4096];
        snprintf(x, sizeof x, "%s", fixture(fmt("tests/fixtures/tfjs_model/%s/x.npy", names[i])));
        snprintf(y, sizeof y, "%s", fixture(fmt("tests/fixtures/tfjs_model/%s/y.npy", names[i])));
        predicts_like(dir, names[i], x, y);
    }
    char *text = text_of(tu_path(dir, "res.kdsl"));
    ck_assert_has(text, "    hidden = Dense(input1, 16, activation: tanh, kernel_initializer: glorot_normal, name: \"hidden\")\n");
    free(text);
    /* a model used as a layer: a model of its own, before the one that calls it */
    text = text_of(tu_path(dir, "nested.kdsl"));
    ck_assert_has(text, "\nmodel encoder {\n    input x: [8]\n");
    ck_assert_has(text, "\nmodel model3 {\n    input input2: [8]\n    encoder = encoder(input2)\n");
    free(text);
    /* two inputs through one shared layer, two outputs */
    char *out;
    const char *sia = fixture("tests/fixtures/tfjs_model/siamese/model.json");
    int rc = tu_kdslc_run(&out, "import %s -o %s/siamese.kdsl", sia, dir);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    text = text_of(tu_path(dir, "siamese.kdsl"));
    ck_assert_has(text, "    input left: [6]\n    input right: [6]\n"
                        "    shared encoder = Dense(5, activation: relu, kernel_initializer: glorot_normal, name: \"encoder\")\n"
                        "    encoder_call0 = encoder(left)\n    encoder_call1 = encoder(right)\n");
    free(text);
    /* without -o the program is named after model.json's directory */
    ck_assert_int_eq(tu_run(fmt("cd %s && %s import %s", dir, tu_kdslc(), fixture("tests/fixtures/tfjs_model/res/model.json")), NULL), 0);
    ck_assert_int_eq(tu_run(fmt("test -s %s/res.safetensors", dir), NULL), 0);
    if (sanitizer_pass()) return;
    char f[3][4096];
    for (int k = 0; k < 3; k++)
        snprintf(f[k], sizeof f[k], "%s", fixture(fmt("tests/fixtures/tfjs_model/siamese/%s", k == 0 ? "x.npy" : k == 1 ? "x2.npy" : "y.npy")));
    rc = tu_kdslc_run(&out, "predict %s/siamese.kdsl --weights %s/siamese.safetensors --input %s,%s --normalize none "
                      "-o %s/s1.npy,%s/s2.npy", dir, dir, f[0], f[1], dir, dir);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    close_to(f[2], tu_path(dir, "s1.npy"), "siamese score");
    close_to(fixture("tests/fixtures/tfjs_model/siamese/y2.npy"), tu_path(dir, "s2.npy"), "siamese maximum");
}
END_TEST

/* A model.json that lies: shards outside its directory, sizes, dtypes, quantization. */
START_TEST(tfjs_hostile)
{
    const char *dir = tu_tmpdir("import-tfjs-bad");
    static const char topo[] = "{\"modelTopology\": {\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": "
                               "[{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense\", \"units\": 2, \"use_bias\": false, "
                               "\"batch_input_shape\": [null, 3]}}]}}, \"weightsManifest\": [{\"paths\": [\"%s\"], \"weights\": "
                               "[{\"name\": \"dense/kernel\", \"shape\": [3, 2], \"dtype\": \"%s\"%s}]}]}";
    float w[6] = {1, 2, 3, 4, 5, 6};
    tu_write(tu_path(dir, "w.bin"), w, sizeof w);
    tu_write(tu_path(dir, "short.bin"), w, sizeof w - 4);
    const char *cases[][4] = {
        {"../w.bin", "float32", "", "shards must be plain file names beside model.json"},
        {"short.bin", "float32", "", "the weight shards hold 20 bytes, weightsManifest's weights 24"},
        {"w.bin", "int32", "", "dtype int32 (kdsl imports float32 weights)"},
        {"w.bin", "float32", ", \"quantization\": {\"dtype\": \"uint8\"}", "is quantized"},
        {"nope.bin", "float32", "", "nope.bin: cannot read it"},
    };
    for (int i = 0; i < 5; i++) {
        char json[2048];
        snprintf(json, sizeof json, topo, cases[i][0], cases[i][1], cases[i][2]);
        tu_write(tu_path(dir, "model.json"), json, strlen(json));
        ck_assert_fails(1, cases[i][3], "import %s/model.json -o %s/a.kdsl", dir, dir);
    }
    tu_write(tu_path(dir, "model.json"), "{\"a\": 1}", 8);
    ck_assert_fails(1, "not a TensorFlow.js Layers model", "import %s/model.json -o %s/a.kdsl", dir, dir);
    tu_write(tu_path(dir, "model.json"), "{\"a\": ", 6);
    ck_assert_fails(1, "model.json: not JSON", "import %s/model.json -o %s/a.kdsl", dir, dir);
    char json[2048];
    snprintf(json, sizeof json, topo, "w.bin", "float32", "");
    tu_write(tu_path(dir, "model.json"), json, strlen(json));
    ck_assert_int_eq(tu_kdslc_run(NULL, "import %s/model.json -o %s/a.kdsl", dir, dir), 0);
}
END_TEST

/* ---- files made here ------------------------------------------------------ */

typedef struct weight {
    const char *layer, *name;   /* group /model_weights/LAYER, dataset LAYER/NAME:0 */
    int rank;
    hsize_t dims[10];
    hid_t type;                 /* 0: float32 */
} weight;

static void string_attr(hid_t obj, const char *name, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(a >= 0 && H5Awrite(a, t, &value) >= 0);
    H5Aclose(a), H5Sclose(s), H5Tclose(t);
}

/* A fixed-length string list attribute, as Keras writes layer_names and weight_names. */
static void list_attr(hid_t obj, const char *name, const char *const *values, int n)
{
    size_t len = 1;
    for (int i = 0; i < n; i++)
        if (strlen(values[i]) > len) len = strlen(values[i]);
    char *buf = calloc((size_t)n + 1, len);
    for (int i = 0; i < n; i++) memcpy(buf + (size_t)i * len, values[i], strlen(values[i]));
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, len);
    hsize_t dims[1] = {(hsize_t)n};
    hid_t s = H5Screate_simple(1, dims, NULL);
    hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(a >= 0 && H5Awrite(a, t, buf) >= 0);
    H5Aclose(a), H5Sclose(s), H5Tclose(t);
    free(buf);
}

/* An .h5 file as Keras' model.save writes one (config NULL: as save_weights does, no architecture). */
static void make_h5(const char *path, const char *config, const weight *w, int nw)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(f >= 0);
    if (config) string_attr(f, "model_config", config);
    string_attr(f, "keras_version", "2.4.0");
    hid_t mw = H5Gcreate2(f, "/model_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const char *layers[16] = {0};
    int nl = 0;
    for (int i = 0; i < nw; i++) {
        bool seen = false;
        for (int k = 0; k < nl; k++) seen = seen || !strcmp(layers[k], w[i].layer);
        if (!seen) layers[nl++] = w[i].layer;
    }
    list_attr(mw, "layer_names", layers, nl);
    for (int l = 0; l < nl; l++) {
        hid_t g = H5Gcreate2(mw, layers[l], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        const char *names[16];
        int n = 0;
        for (int i = 0; i < nw; i++) {
            if (strcmp(w[i].layer, layers[l])) continue;
            char *full = malloc(256);
            snprintf(full, 256, "%s/%s:0", w[i].layer, w[i].name);
            names[n++] = full;
            hid_t s = H5Screate_simple(w[i].rank, w[i].dims, NULL);
            hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
            H5Pset_create_intermediate_group(lcpl, 1);
            hid_t d = H5Dcreate2(g, full, w[i].type ? w[i].type : H5T_IEEE_F32LE, s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
            ck_assert(d >= 0);
            hssize_t count = H5Sget_simple_extent_npoints(s);
            float *v = calloc((size_t)count + 1, sizeof *v);
            for (hssize_t k = 0; k < count; k++) v[k] = 0.01f * (float)(k % 17);
            H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
            free(v);
            H5Dclose(d), H5Pclose(lcpl), H5Sclose(s);
        }
        list_attr(g, "weight_names", names, n);
        for (int i = 0; i < n; i++) free((char *)names[i]);
        H5Gclose(g);
    }
    H5Gclose(mw);
    H5Fclose(f);
}

static const char dense_config[] =
    "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"sequential\", \"layers\": ["
    "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 4], \"dtype\": \"float32\", \"name\": \"x\"}},"
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense\", \"trainable\": true, \"dtype\": \"float32\", \"units\": 3,"
    " \"activation\": \"relu\", \"use_bias\": true, \"kernel_constraint\": null}},"
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"scores\", \"units\": 2, \"trainable\": false}}]}}";

static const weight dense_weights[] = {
    {"dense", "kernel", 2, {4, 3}, 0}, {"dense", "bias", 1, {3}, 0},
    {"scores", "kernel", 2, {3, 2}, 0}, {"scores", "bias", 1, {2}, 0},
};

/* A Sequential config: a list of layers, Keras' names given only where kdsl's differ, trainable: false kept. */
START_TEST(sequential_config)
{
    const char *dir = tu_tmpdir("import-seq");
    make_h5(tu_path(dir, "m.h5"), dense_config, dense_weights, 4);
    char *out;
    int rc = tu_kdslc_run(&out, "import %s/m.h5 -o %s/m.kdsl", dir, dir);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    char *text = text_of(tu_path(dir, "m.kdsl"));
    ck_assert_has(text, "model sequential {\n    input x: [4]\n    Dense(3, activation: relu)\n"
                        "    output scores = Dense(2, trainable: false, name: \"scores\")\n}\n");
    free(text);
    rc = tu_kdslc_run(&out, "summary %s/m.kdsl", dir);
    ck_assert_has(out, "Non-trainable params: 8");
    free(out);
}
END_TEST

/* Keras 3's dialect: batch_shape, dtype policies, inbound nodes as keras tensors. */
START_TEST(keras3_config)
{
    static const char cfg[] =
        "{\"class_name\": \"Functional\", \"config\": {\"name\": \"functional\", \"layers\": ["
        "{\"class_name\": \"InputLayer\", \"name\": \"in\", \"config\": {\"batch_shape\": [null, 4], \"dtype\": \"float32\","
        " \"name\": \"in\"}, \"inbound_nodes\": []},"
        "{\"module\": \"keras.layers\", \"class_name\": \"Dense\", \"name\": \"dense\", \"config\": {\"name\": \"dense\","
        " \"dtype\": {\"module\": \"keras\", \"class_name\": \"DTypePolicy\", \"config\": {\"name\": \"float32\"}},"
        " \"units\": 4, \"kernel_initializer\": {\"module\": \"keras.initializers\", \"class_name\": \"RandomNormal\","
        " \"config\": {\"mean\": 0.0, \"stddev\": 0.05, \"seed\": null}}}, \"build_config\": {\"input_shape\": [null, 4]},"
        " \"inbound_nodes\": [{\"args\": [{\"class_name\": \"__keras_tensor__\", \"config\": {\"shape\": [null, 4],"
        " \"dtype\": \"float32\", \"keras_history\": [\"in\", 0, 0]}}], \"kwargs\": {}}]},"
        "{\"class_name\": \"Add\", \"name\": \"add\", \"config\": {\"name\": \"add\"}, \"inbound_nodes\": [{\"args\": [["
        "{\"class_name\": \"__keras_tensor__\", \"config\": {\"keras_history\": [\"in\", 0, 0]}},"
        "{\"class_name\": \"__keras_tensor__\", \"config\": {\"keras_history\": [\"dense\", 0, 0]}}]], \"kwargs\": {}}]}],"
        " \"input_layers\": [[\"in\", 0, 0]], \"output_layers\": [[\"add\", 0, 0]]}}";
    static const weight w[] = {{"dense", "kernel", 2, {4, 4}, 0}, {"dense", "bias", 1, {4}, 0}};
    const char *dir = tu_tmpdir("import-k3");
    make_h5(tu_path(dir, "m.h5"), cfg, w, 2);
    char *out;
    int rc = tu_kdslc_run(&out, "import %s/m.h5 -o %s/m.kdsl", dir, dir);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    char *text = text_of(tu_path(dir, "m.kdsl"));
    ck_assert_has(text, "model functional {\n    input in: [4]\n"
                        "    dense = Dense(in, 4, kernel_initializer: RandomNormal(mean: 0, stddev: 0.05))\n"
                        "    output add = Add([in, dense])\n}\n");
    free(text);
}
END_TEST

/* A nested model called twice is one model whose weights both calls share,
 * as in Keras: `shared encoder = encoder()`, its parameters counted once,
 * and its predictions (a + b) K + 2 c. */
START_TEST(nested_model_twice)
{
    static const char cfg[] =
        "{\"class_name\": \"Functional\", \"config\": {\"name\": \"twice\", \"layers\": ["
        "{\"class_name\": \"InputLayer\", \"name\": \"a\", \"config\": {\"batch_input_shape\": [null, 4], \"name\": \"a\"},"
        " \"inbound_nodes\": []},"
        "{\"class_name\": \"InputLayer\", \"name\": \"b\", \"config\": {\"batch_input_shape\": [null, 4], \"name\": \"b\"},"
        " \"inbound_nodes\": []},"
        "{\"class_name\": \"Sequential\", \"name\": \"encoder\", \"config\": {\"name\": \"encoder\", \"layers\": ["
        "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 4], \"name\": \"x\"}},"
        "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense\", \"units\": 3}}]},"
        " \"inbound_nodes\": [[[\"a\", 0, 0, {}]], [[\"b\", 0, 0, {}]]]},"
        "{\"class_name\": \"Add\", \"name\": \"add\", \"config\": {\"name\": \"add\"},"
        " \"inbound_nodes\": [[[\"encoder\", 0, 0, {}], [\"encoder\", 1, 0, {}]]]}],"
        " \"input_layers\": [[\"a\", 0, 0], [\"b\", 0, 0]], \"output_layers\": [[\"add\", 0, 0]]}}";
    static const weight w[] = {{"encoder", "dense/kernel", 2, {4, 3}, 0}, {"encoder", "dense/bias", 1, {3}, 0}};
    const char *dir = tu_tmpdir("import-twice");
    make_h5(tu_path(dir, "t.h5"), cfg, w, 2);
    char *out;
    int rc = tu_kdslc_run(&out, "import %s/t.h5 -o %s/t.kdsl", dir, dir);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_has(out, "15 parameters (0 non-trainable)");
    free(out);
    char *text = text_of(tu_path(dir, "t.kdsl"));
    ck_assert_has(text, "    shared encoder = encoder()\n    encoder_call0 = encoder(a)\n    encoder_call1 = encoder(b)\n"
                        "    output add = Add([encoder_call0, encoder_call1])\n");
    free(text);
    rc = tu_kdslc_run(&out, "summary %s/t.kdsl", dir);
    ck_assert_has(out, "Total params: 15\n");
    free(out);
    if (sanitizer_pass()) return;
    kdh_tensor a = {0}, b = {0}, y = {0};
    kdh_error err;
    ck_assert_int_eq(kdh_tensor_alloc(&a, NULL, KDH_F32, 2, (const int64_t[]){2, 4}, &err), 0);
    ck_assert_int_eq(kdh_tensor_alloc(&b, NULL, KDH_F32, 2, (const int64_t[]){2, 4}, &err), 0);
    ck_assert_int_eq(kdh_tensor_alloc(&y, NULL, KDH_F32, 2, (const int64_t[]){2, 3}, &err), 0);
    float *av = a.data, *bv = b.data, *yv = y.data;
    for (int i = 0; i < 8; i++) av[i] = 0.5f * (float)i - 1, bv[i] = (float)((i * 5) % 7) - 3;
    for (int n = 0; n < 2; n++)   /* make_h5's values: 0.01 (k mod 17) for element k */
        for (int j = 0; j < 3; j++) {
            double sum = 2 * 0.01 * j;
            for (int i = 0; i < 4; i++) sum += (av[4 * n + i] + bv[4 * n + i]) * 0.01 * ((3 * i + j) % 17);
            yv[3 * n + j] = (float)sum;
        }
    ck_assert_int_eq(kdh_npy_write(tu_path(dir, "a.npy"), &a, &err), 0);
    ck_assert_int_eq(kdh_npy_write(tu_path(dir, "b.npy"), &b, &err), 0);
    ck_assert_int_eq(kdh_npy_write(tu_path(dir, "y.npy"), &y, &err), 0);
    kdh_tensor_free(&a), kdh_tensor_free(&b), kdh_tensor_free(&y);
    rc = tu_kdslc_run(&out, "predict %s/t.kdsl --weights %s/t.safetensors --input %s/a.npy,%s/b.npy --normalize none -o %s/got.npy",
                      dir, dir, dir, dir, dir);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    close_to(tu_path(dir, "y.npy"), tu_path(dir, "got.npy"), "shared encoder");
}
END_TEST

/* What kdsl cannot express: each thing listed with its layer, nothing written, a file there kept. */
START_TEST(unsupported_listed)
{
    static const char cfg[] =
        "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
        "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 8, 8, 2], \"name\": \"x\"}},"
        "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"conv2d\", \"filters\": 2, \"kernel_size\": [3, 3],"
        " \"data_format\": \"channels_first\", \"kernel_constraint\": {\"class_name\": \"MaxNorm\", \"config\": {}}}},"
        "{\"class_name\": \"Lambda\", \"config\": {\"name\": \"lambda\", \"function\": \"abc\"}},"
        "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense\", \"units\": 2,"
        " \"kernel_initializer\": {\"class_name\": \"TruncatedNormal\", \"config\": {\"stddev\": 1.0}}}}]}}";
    const char *dir = tu_tmpdir("import-bad");
    make_h5(tu_path(dir, "m.h5"), cfg, NULL, 0);
    tu_write(tu_path(dir, "m.kdsl"), "keep\n", 5);
    char *out;
    int rc = tu_kdslc_run(&out, "import %s/m.h5 -o %s/m.kdsl", dir, dir);
    ck_assert_int_eq(rc, 1);
    ck_assert_has(out, "layer 'conv2d' (Conv2D): data_format channels_first: kdsl's layers are channels_last");
    ck_assert_has(out, "layer 'conv2d' (Conv2D): argument kernel_constraint={\"class_name\":\"MaxNorm\",\"config\":{}} has no "
                       "KDSL equivalent");
    ck_assert_has(out, "layer 'lambda' (Lambda): kdsl has no layer Lambda");
    ck_assert_has(out, "layer 'dense' (Dense): argument 'kernel_initializer': TruncatedNormal has no KDSL equivalent");
    free(out);
    char *text = text_of(tu_path(dir, "m.kdsl"));
    ck_assert_str_eq(text, "keep\n");
    free(text);
    ck_assert_int_eq(tu_run(fmt("test -e %s/m.safetensors", dir), NULL), 1);
}
END_TEST

/* Hostile and wrong files: a clear error naming the file, exit 1, never a crash. */
START_TEST(bad_files)
{
    const char *dir = tu_tmpdir("import-hostile");
    tu_write(tu_path(dir, "text.h5"), "not hdf5\n", 9);
    ck_assert_fails(1, "text.h5: not a Keras file: neither HDF5 (.h5), a zip (.keras) nor a TensorFlow.js model.json", "import %s/text.h5 -o %s/a.kdsl",
                    dir, dir);
    ck_assert_fails(1, "cannot read", "import %s/missing.h5 -o %s/a.kdsl", dir, dir);
    /* a truncated file */
    size_t len;
    char *whole = tu_read(fixture("tests/fixtures/mlperf_tiny/ad01.h5"), &len);
    for (size_t cut = 512; cut < len; cut *= 8) {
        tu_write(tu_path(dir, "cut.h5"), whole, cut);
        ck_assert_fails(1, "cut.h5: ", "import %s/cut.h5 -o %s/a.kdsl", dir, dir);
    }
    free(whole);
    /* files the fuzzer made: one on which libhdf5 loops for ever (read in a child process,
     * stopped after KDSL_IMPORT_SECONDS), one whose layer list names a missing group */
    char *out;
    tu_sh(fmt("mkdir -p %s/tmp", dir));   /* the reader's temporaries here: other suites run beside this one */
    ck_assert_int_eq(tu_run(fmt("TMPDIR=%s/tmp KDSL_IMPORT_SECONDS=2 %s import %s -o %s/a.kdsl", dir, tu_kdslc(),
                                fixture("tests/fixtures/hostile_h5/loops.h5"), dir), &out), 1);
    ck_assert_has(out, "loops.h5: libhdf5 did not finish reading it in 2 s (a damaged file?)");
    free(out);
    ck_assert_int_eq(tu_run(fmt("TMPDIR=%s/tmp %s import %s -o %s/a.kdsl", dir, tu_kdslc(),
                                fixture("tests/fixtures/hostile_h5/no_group.h5"), dir), &out), 1);
    ck_assert_has(out, "no_group.h5: /model_weights lists layer dense, which has no group");
    free(out);
    ck_assert_int_eq(tu_run(fmt("test -z \"$(ls -A %s/tmp)\"", dir), NULL), 0);   /* nothing left behind */
    /* weights only (save_weights): no architecture */
    make_h5(tu_path(dir, "w.h5"), NULL, dense_weights, 4);
    ck_assert_fails(1, "no model_config attribute", "import %s/w.h5 -o %s/a.kdsl", dir, dir);
    /* a weight of the wrong shape, one of an integer type, one of rank 9, one too many, one missing */
    weight bad[4];
    memcpy(bad, dense_weights, sizeof bad);
    bad[0].dims[0] = 5;
    make_h5(tu_path(dir, "shape.h5"), dense_config, bad, 4);
    ck_assert_fails(1, "tensor \"dense/kernel\" has shape [5, 3], the model expects [4, 3]", "import %s/shape.h5 -o %s/a.kdsl",
                    dir, dir);
    memcpy(bad, dense_weights, sizeof bad);
    bad[1].type = H5T_STD_I32LE;
    make_h5(tu_path(dir, "int.h5"), dense_config, bad, 4);
    ck_assert_fails(1, "/model_weights/dense/dense/bias:0: not a float32 or float64 dataset", "import %s/int.h5 -o %s/a.kdsl",
                    dir, dir);
    memcpy(bad, dense_weights, sizeof bad);
    bad[1].rank = 9;
    for (int i = 0; i < 9; i++) bad[1].dims[i] = 1;
    make_h5(tu_path(dir, "rank.h5"), dense_config, bad, 4);
    ck_assert_fails(1, "rank 9 (at most 8)", "import %s/rank.h5 -o %s/a.kdsl", dir, dir);
    weight extra[5];
    memcpy(extra, dense_weights, sizeof dense_weights);
    extra[4] = (weight){"scores", "gamma", 1, {2}, 0};
    make_h5(tu_path(dir, "extra.h5"), dense_config, extra, 5);
    ck_assert_fails(1, "weight \"scores/gamma\" belongs to no variable", "import %s/extra.h5 -o %s/a.kdsl", dir, dir);
    make_h5(tu_path(dir, "missing.h5"), dense_config, dense_weights, 3);
    ck_assert_fails(1, "no tensor \"scores/bias\"", "import %s/missing.h5 -o %s/a.kdsl", dir, dir);
    /* a config that is not JSON, or not a model */
    make_h5(tu_path(dir, "json.h5"), "{\"class_name\": ", dense_weights, 0);
    ck_assert_fails(1, "the model config is not JSON", "import %s/json.h5 -o %s/a.kdsl", dir, dir);
    make_h5(tu_path(dir, "cls.h5"), "{\"class_name\": \"Dense\", \"config\": {}}", dense_weights, 0);
    ck_assert_fails(1, "a model of class Dense", "import %s/cls.h5 -o %s/a.kdsl", dir, dir);
    ck_assert_int_eq(tu_run(fmt("test -e %s/a.kdsl || test -e %s/a.safetensors", dir, dir), NULL), 1);
    /* the output naming the input */
    make_h5(tu_path(dir, "ok.h5"), dense_config, dense_weights, 4);
    ck_assert_fails(2, "error", "import %s/ok.h5 -o %s/ok.h5", dir, dir);
    ck_assert_fails(2, "error", "import %s/ok.h5 -o %s/b.kdsl --weights-out %s/ok.h5", dir, dir, dir);
    ck_assert_int_eq(tu_kdslc_run(NULL, "import %s/ok.h5 -o %s/b.kdsl", dir, dir), 0);
}
END_TEST

/* ---- export ------------------------------------------------------------------ */

/* The tensors of two safetensors files: the same names, shapes and values. */
static void same_weights(const char *a, const char *b)
{
    kdh_tensor_list x, y;
    kdh_error err;
    ck_assert_msg(kdh_safetensors_read(a, NULL, &x, &err) == 0, "%s", err.msg);
    ck_assert_msg(kdh_safetensors_read(b, NULL, &y, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(x.count, y.count);
    for (size_t i = 0; i < x.count; i++) {
        const kdh_tensor *t = kdh_list_find(&y, x.items[i].name);
        ck_assert_msg(t != NULL, "%s: no %s", b, x.items[i].name);
        ck_assert_int_eq(t->rank, x.items[i].rank);
        ck_assert_uint_eq(t->nbytes, x.items[i].nbytes);
        ck_assert_msg(!memcmp(t->data, x.items[i].data, t->nbytes), "%s differs", t->name);
    }
    kdh_list_free(&x);
    kdh_list_free(&y);
}

/* ---- Keras 3 .keras files ---------------------------------------------------- */

/* The TensorFlow.js fixtures as Keras 3 saves them (tests/fixtures/keras3/make_keras3.py):
 * the same programs, the same weights, TensorFlow.js' predictions. */
START_TEST(keras3_files)
{
    const char *dir = tu_tmpdir("import-keras3");
    static const char *const names[] = {"cnn", "res", "nested", "siamese"};
    static const char *const counts[] = {"731 parameters (16 non-trainable)", "372 parameters (0 non-trainable)",
                                         "99 parameters (12 non-trainable)", "46 parameters (0 non-trainable)"};
    for (int i = 0; i < 4; i++) {
        char *out;
        int rc = tu_kdslc_run(&out, "import %s -o %s/%s.kdsl", fixture(fmt("tests/fixtures/keras3/%s.keras", names[i])), dir,
                              names[i]);
        ck_assert_msg(rc == 0, "%s", out);
        ck_assert_has(out, counts[i]);
        free(out);
        /* the weights the TensorFlow.js file holds, by the same names */
        ck_assert_int_eq(tu_kdslc_run(NULL, "import %s -o %s/%s_tfjs.kdsl", fixture(fmt("tests/fixtures/tfjs_model/%s/model.json", names[i])),
                                      dir, names[i]), 0);
        same_weights(tu_path(dir, fmt("%s_tfjs.safetensors", names[i])), tu_path(dir, fmt("%s.safetensors", names[i])));
        /* and the same model (the layers, shapes, parameters and connections of Keras' summary) */
        ck_assert_int_eq(tu_run(fmt("cd %s && %s summary %s.kdsl | tail -n +2 > a.txt && %s summary %s_tfjs.kdsl | tail -n +2 > b.txt "
                                    "&& diff a.txt b.txt", dir, tu_kdslc(), names[i], tu_kdslc(), names[i]), &out), 0);
        free(out);
    }
    /* so they predict what TensorFlow.js predicts (the tfjs_models test runs each; one here, the nested model) */
    char x[4096], y[4096];
    snprintf(x, sizeof x, "%s", fixture("tests/fixtures/tfjs_model/nested/x.npy"));
    snprintf(y, sizeof y, "%s", fixture("tests/fixtures/tfjs_model/nested/y.npy"));
    predicts_like(dir, "nested", x, y);
    /* Keras 3's dialect read: the version from metadata.json, a single output written flat */
    char *text = text_of(tu_path(dir, "nested.kdsl"));
    ck_assert_has(text, "(Keras class Functional, name \"model3\", saved by Keras 3.6.0)");
    ck_assert_has(text, "\nmodel model3 {\n    input input2: [8]\n    encoder = encoder(input2)\n"
                        "    output dense_Dense3 = Dense(encoder, 3, activation: softmax");
    free(text);
}
END_TEST

/* A zip archive at `path` of the given members, each stored or deflated. */
typedef struct member {
    const char *name;
    const void *data;
    size_t len;
    bool deflate;
} member;

static void make_zip(const char *path, const member *m, int n)
{
    int zerr = 0;
    zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
    ck_assert_ptr_nonnull(za);
    for (int i = 0; i < n; i++) {
        zip_source_t *s = zip_source_buffer(za, m[i].data, m[i].len, 0);
        zip_int64_t idx = zip_file_add(za, m[i].name, s, ZIP_FL_ENC_UTF_8);
        ck_assert_msg(idx >= 0, "%s: %s", m[i].name, zip_strerror(za));
        zip_set_file_compression(za, (zip_uint64_t)idx, m[i].deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0);
    }
    ck_assert_msg(zip_close(za) == 0, "%s", zip_strerror(za));
}

/* In the zip file at path, member `name`'s declared uncompressed size set to
 * `size`, in its local header and in the central directory alike. */
static void lie_about_size(const char *path, const char *name, uint32_t size)
{
    size_t len;
    unsigned char *z = (unsigned char *)tu_read(path, &len);
    size_t nlen = strlen(name);
    int patched = 0;
    for (size_t i = 0; i + 46 + nlen <= len; i++) {
        bool local = !memcmp(z + i, "PK\3\4", 4) && i + 30 + nlen <= len && !memcmp(z + i + 30, name, nlen);
        bool central = !memcmp(z + i, "PK\1\2", 4) && !memcmp(z + i + 46, name, nlen);
        if (!local && !central) continue;
        unsigned char *at = z + i + (local ? 22 : 24);
        for (int k = 0; k < 4; k++) at[k] = (unsigned char)(size >> (8 * k));
        patched++;
    }
    ck_assert_int_eq(patched, 2);
    tu_write(path, z, len);
    free(z);
}

/* A Keras 3 weights file: layers/input_layer, layers/dense (a [4, 4] kernel and a [4] bias) and layers/add,
 * as saving_lib lays them out; `extra` a dataset more (NULL: none), `link` a soft link more (1) or a
 * hard link from layers/add/vars back to layers (2). */
static char *weights_h5(const char *dir, const char *extra, int link, bool no_bias, size_t *len)
{
    const char *path = tu_path(dir, "w.weights.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    static const char *const groups[] = {"vars", "layers/input_layer/vars", "layers/dense/vars", "layers/add/vars"};
    for (int i = 0; i < 4; i++) H5Gclose(H5Gcreate2(f, groups[i], lcpl, H5P_DEFAULT, H5P_DEFAULT));
    const char *sets[3] = {"layers/dense/vars/0", no_bias ? NULL : "layers/dense/vars/1", extra};
    float v[16];
    for (int i = 0; i < 16; i++) v[i] = 0.125f * (float)i;
    for (int i = 0; i < 3; i++) {
        if (!sets[i]) continue;
        hsize_t dims[2] = {4, 4};
        hid_t s = H5Screate_simple(i == 0 ? 2 : 1, dims, NULL);
        hid_t d = H5Dcreate2(f, sets[i], H5T_IEEE_F32LE, s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        ck_assert(d >= 0);
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
        H5Dclose(d), H5Sclose(s);
    }
    if (link == 1) H5Lcreate_soft("/layers/dense/vars/0", f, "layers/add/vars/0", H5P_DEFAULT, H5P_DEFAULT);
    if (link == 2) H5Lcreate_hard(f, "layers", f, "layers/add/vars/up", H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    H5Fclose(f);
    return tu_read(path, len);
}

static const char keras3_cfg[] =
    "{\"module\": \"keras\", \"class_name\": \"Functional\", \"config\": {\"name\": \"functional\", \"layers\": ["
    "{\"class_name\": \"InputLayer\", \"name\": \"in\", \"config\": {\"batch_shape\": [null, 4], \"name\": \"in\"},"
    " \"inbound_nodes\": []},"
    "{\"class_name\": \"Dense\", \"name\": \"dense\", \"config\": {\"name\": \"dense\", \"units\": 4},"
    " \"inbound_nodes\": [{\"args\": [{\"class_name\": \"__keras_tensor__\", \"config\": {\"keras_history\": [\"in\", 0, 0]}}],"
    " \"kwargs\": {}}]},"
    "{\"class_name\": \"Add\", \"name\": \"add\", \"config\": {\"name\": \"add\"}, \"inbound_nodes\": [{\"args\": [["
    "{\"class_name\": \"__keras_tensor__\", \"config\": {\"keras_history\": [\"in\", 0, 0]}},"
    "{\"class_name\": \"__keras_tensor__\", \"config\": {\"keras_history\": [\"dense\", 0, 0]}}]], \"kwargs\": {}}]}],"
    " \"input_layers\": [\"in\", 0, 0], \"output_layers\": [\"add\", 0, 0]}}";

/* Archives that lie, leave the archive, miss members or were cut short:
 * a clear error naming the file and the member, exit 1, nothing written. */
START_TEST(keras3_hostile)
{
    const char *dir = tu_tmpdir("import-keras3-bad");
    static const char meta[] = "{\"keras_version\": \"3.6.0\", \"date_saved\": \"2026-12-06@12:00:00\"}";
    size_t wlen;
    char *w = weights_h5(dir, NULL, 0, false, &wlen);
    const char *k = tu_path(dir, "m.keras");
    /* the good archive, and what it reads as */
    member good[] = {{"metadata.json", meta, strlen(meta), false}, {"config.json", keras3_cfg, strlen(keras3_cfg), false},
                     {"model.weights.h5", w, wlen, false}};
    make_zip(k, good, 3);
    char *out;
    int rc = tu_kdslc_run(&out, "import %s -o %s/good.kdsl", k, dir);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    char *text = text_of(tu_path(dir, "good.kdsl"));
    ck_assert_has(text, "    output add = Add([in, dense])\n");
    free(text);
    /* text from the file goes into the program's first line, a comment, on one line */
    static const char inject[] = "{\"keras_version\": \"3\\nmodel x {\\n    input q: [1]\\n}\\n#\"}";
    member injected[] = {{"metadata.json", inject, strlen(inject), false}, {"config.json", keras3_cfg, strlen(keras3_cfg), false},
                         {"model.weights.h5", w, wlen, false}};
    make_zip(tu_path(dir, "inject.keras"), injected, 3);
    ck_assert_int_eq(tu_kdslc_run(NULL, "import %s/inject.keras -o %s/inject.kdsl", dir, dir), 0);
    text = text_of(tu_path(dir, "inject.kdsl"));
    ck_assert_has(text, "saved by Keras 3?model x {?    input q: [1]?}?#).\nmodel functional {\n");
    free(text);
    tu_write(tu_path(dir, "m.kdsl"), "keep\n", 5);
    /* deflated members read as well (Keras stores them; zip tools may not) */
    member deflated[] = {{"config.json", keras3_cfg, strlen(keras3_cfg), true}, {"model.weights.h5", w, wlen, true}};
    make_zip(tu_path(dir, "deflated.keras"), deflated, 2);
    ck_assert_int_eq(tu_kdslc_run(NULL, "import %s/deflated.keras -o %s/d.kdsl", dir, dir), 0);

    struct {
        const char *file;
        member m[4];
        int n;
        const char *says;
    } cases[] = {
        {"noconfig.keras", {{"metadata.json", meta, strlen(meta), false}, {"model.weights.h5", w, wlen, false}}, 2,
         "no config.json in the archive: not a Keras 3 .keras file"},
        {"noweights.keras", {{"config.json", keras3_cfg, strlen(keras3_cfg), false}}, 1, "no model.weights.h5 in the archive"},
        {"npz.keras", {{"config.json", keras3_cfg, strlen(keras3_cfg), false}, {"model.weights.npz", "PK", 2, false}}, 2,
         "the weights are model.weights.npz; kdsl reads model.weights.h5"},
        {"dotdot.keras", {{"config.json", keras3_cfg, strlen(keras3_cfg), false}, {"model.weights.h5", w, wlen, false},
                          {"assets/../../evil.sh", "x", 1, false}}, 3,
         "member \"assets/../../evil.sh\": a name outside the archive"},
        {"absolute.keras", {{"/etc/evil", "x", 1, false}, {"config.json", keras3_cfg, strlen(keras3_cfg), false}}, 2,
         "member \"/etc/evil\": a name outside the archive"},
        {"backslash.keras", {{"..\\evil", "x", 1, false}, {"config.json", keras3_cfg, strlen(keras3_cfg), false}}, 2,
         "a name outside the archive"},
        {"meta.keras", {{"metadata.json", "[1", 2, false}, {"config.json", keras3_cfg, strlen(keras3_cfg), false},
                        {"model.weights.h5", w, wlen, false}}, 3, "metadata.json is not a JSON object"},
        {"nothdf5.keras", {{"config.json", keras3_cfg, strlen(keras3_cfg), false}, {"model.weights.h5", "weights", 7, false}}, 2,
         "model.weights.h5 is not an HDF5 file"},
        {"notjson.keras", {{"config.json", "{\"class", 7, false}, {"model.weights.h5", w, wlen, false}}, 2,
         "the model config is not JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        make_zip(tu_path(dir, cases[i].file), cases[i].m, cases[i].n);
        ck_assert_fails(1, cases[i].says, "import %s/%s -o %s/m.kdsl", dir, cases[i].file, dir);
    }
    /* an encrypted member */
    const char *enc = tu_path(dir, "encrypted.keras");
    make_zip(enc, good, 3);
    int zerr = 0;
    zip_t *za = zip_open(enc, 0, &zerr);
    ck_assert_ptr_nonnull(za);
    ck_assert_int_eq(zip_file_set_encryption(za, (zip_uint64_t)zip_name_locate(za, "config.json", 0), ZIP_EM_AES_256, "secret"), 0);
    ck_assert_int_eq(zip_close(za), 0);
    ck_assert_fails(1, "encrypted.keras: config.json is encrypted", "import %s -o %s/m.kdsl", enc, dir);
    /* a member named twice (libzip will not write one: the second name patched) */
    member twice[] = {{"config.json", keras3_cfg, strlen(keras3_cfg), false}, {"config.jsoo", "{}", 2, false},
                      {"model.weights.h5", w, wlen, false}};
    const char *tw = tu_path(dir, "twice.keras");
    make_zip(tw, twice, 3);
    size_t zlen;
    char *z = tu_read(tw, &zlen);
    for (size_t i = 0; i + 11 <= zlen; i++)
        if (!memcmp(z + i, "config.jsoo", 11)) z[i + 10] = 'n';
    tu_write(tw, z, zlen);
    free(z);
    ck_assert_fails(1, "twice.keras: two members of the archive have the same name", "import %s -o %s/m.kdsl", tw, dir);
    /* sizes that lie: above the limit, more than deflate can expand, less than the data */
    const char *big = tu_path(dir, "big.keras");
    make_zip(big, good, 3);
    lie_about_size(big, "config.json", 0xfffffff0u);
    ck_assert_fails(1, "config.json: 4294967280 bytes uncompressed, more than the limit of 64 MiB", "import %s -o %s/m.kdsl", big, dir);
    char *zeros = calloc(1, 1 << 20);
    member bomb[] = {{"config.json", keras3_cfg, strlen(keras3_cfg), false}, {"model.weights.h5", zeros, 1 << 20, true}};
    const char *bk = tu_path(dir, "bomb.keras");
    make_zip(bk, bomb, 2);
    lie_about_size(bk, "model.weights.h5", 60u << 20);
    ck_assert_fails(1, "model.weights.h5: 62914560 bytes from", "import %s -o %s/m.kdsl", bk, dir);
    ck_assert_fails(1, "more than deflate can expand (a compression bomb)", "import %s -o %s/m.kdsl", bk, dir);
    free(zeros);
    const char *small = tu_path(dir, "small.keras");
    member deflated3[] = {{"config.json", keras3_cfg, strlen(keras3_cfg), true}, {"model.weights.h5", w, wlen, false}};
    make_zip(small, deflated3, 2);
    lie_about_size(small, "config.json", 100);
    ck_assert_fails(1, "config.json", "import %s -o %s/m.kdsl", small, dir);
    /* truncated archives, and bytes that only start like one */
    z = tu_read(k, &zlen);
    for (size_t cut = 4; cut < zlen; cut = cut * 3 + 7) {
        tu_write(tu_path(dir, "cut.keras"), z, cut);
        ck_assert_fails(1, "cut.keras: ", "import %s/cut.keras -o %s/m.kdsl", dir, dir);
    }
    free(z);
    /* weights files that do not fit the config or Keras 3's layout */
    struct {
        const char *extra;
        int link;
        bool no_bias;
        const char *says;
    } wcases[] = {
        {"layers/dense/vars/2", 0, false, "weight \"layers/dense/vars/2\" belongs to no variable"},
        {"layers/dense/kernel", 0, false, "dataset layers/dense/kernel: a layer's variables are datasets vars/0, vars/1"},
        {NULL, 1, false, "layers/add/vars holds a soft or external link (Keras writes none)"},
        {NULL, 2, false, ": an object with 2 names (Keras links each once)"},
        {NULL, 0, true, "no dataset layers/dense/vars/1 in model.weights.h5, where Keras 3 keeps dense/bias"},
    };
    for (size_t i = 0; i < sizeof wcases / sizeof *wcases; i++) {
        size_t blen;
        char *bad = weights_h5(dir, wcases[i].extra, wcases[i].link, wcases[i].no_bias, &blen);
        member m[] = {{"config.json", keras3_cfg, strlen(keras3_cfg), false}, {"model.weights.h5", bad, blen, false}};
        make_zip(tu_path(dir, "w.keras"), m, 2);
        ck_assert_fails(1, wcases[i].says, "import %s/w.keras -o %s/m.kdsl", dir, dir);
        free(bad);
    }
    free(w);
    text = text_of(tu_path(dir, "m.kdsl"));
    ck_assert_str_eq(text, "keep\n");
    free(text);
    ck_assert_int_eq(tu_run(fmt("test -e %s/m.safetensors", dir), NULL), 1);
}
END_TEST

/* import -> export -> import gives the same program and the same weights, and
 * a training step in between survives the trip: what Keras reads back is
 * what kdsl trained. */
START_TEST(export_round_trip)
{
    const char *dir = tu_tmpdir("export-trip");
    char *out;
    ck_assert_int_eq(tu_kdslc_run(NULL, "import %s -o %s/r.kdsl", fixture("tests/fixtures/mlperf_tiny/pretrainedResnet.h5"), dir), 0);
    int rc = tu_kdslc_run(&out, "export %s/r.kdsl --weights %s/r.safetensors -o %s/r.h5", dir, dir, dir);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_has(out, "r.h5: model pretrainedResnet, 29 layers, 48 tensors");
    free(out);
    ck_assert_int_eq(tu_kdslc_run(NULL, "import %s/r.h5 -o %s/again.kdsl", dir, dir), 0);
    ck_assert_int_eq(tu_run(fmt("cd %s && tail -n +2 r.kdsl > a && tail -n +2 again.kdsl > b && diff a b", dir), &out), 0);
    free(out);
    same_weights(tu_path(dir, "r.safetensors"), tu_path(dir, "again.safetensors"));
    /* the same through a Keras 3 .keras file */
    rc = tu_kdslc_run(&out, "export %s/r.kdsl --weights %s/r.safetensors -o %s/r.keras", dir, dir, dir);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_has(out, "r.keras: model pretrainedResnet, 29 layers, 48 tensors");
    free(out);
    rc = tu_kdslc_run(&out, "import %s/r.keras -o %s/k3.kdsl", dir, dir);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    ck_assert_int_eq(tu_run(fmt("cd %s && tail -n +2 k3.kdsl > c && diff a c", dir), &out), 0);
    free(out);
    same_weights(tu_path(dir, "r.safetensors"), tu_path(dir, "k3.safetensors"));

    if (sanitizer_pass()) return;
    /* the autoencoder, one epoch of Adam on random data, then out and back in */
    ck_assert_int_eq(tu_kdslc_run(NULL, "import %s -o %s/ad.kdsl", fixture("tests/fixtures/mlperf_tiny/ad01.h5"), dir), 0);
    kdh_tensor x = {0};
    kdh_error err;
    ck_assert_int_eq(kdh_tensor_alloc(&x, NULL, KDH_F32, 2, (const int64_t[]){16, 640}, &err), 0);
    for (int i = 0; i < 16 * 640; i++) ((float *)x.data)[i] = (float)sin(0.37 * i);
    ck_assert_int_eq(kdh_npy_write(tu_path(dir, "x.npy"), &x, &err), 0);
    kdh_tensor_free(&x);
    rc = tu_kdslc_run(&out, "train %s/ad.kdsl --weights %s/ad.safetensors --data %s/x.npy,%s/x.npy --loss mse "
                      "--optimizer adam --epochs 1 --batch-size 8 --save %s/trained.safetensors",
                      dir, dir, dir, dir, dir);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    ck_assert_int_eq(tu_kdslc_run(&out, "export %s/ad.kdsl --weights %s/trained.safetensors -o %s/ad.h5", dir, dir, dir), 0);
    free(out);
    ck_assert_int_eq(tu_kdslc_run(NULL, "import %s/ad.h5 -o %s/ad2.kdsl", dir, dir), 0);
    same_weights(tu_path(dir, "trained.safetensors"), tu_path(dir, "ad2.safetensors"));
    ck_assert_int_eq(tu_kdslc_run(&out, "export %s/ad.kdsl --weights %s/trained.safetensors -o %s/ad.keras", dir, dir, dir), 0);
    free(out);
    ck_assert_int_eq(tu_kdslc_run(NULL, "import %s/ad.keras -o %s/ad3.kdsl", dir, dir), 0);
    same_weights(tu_path(dir, "trained.safetensors"), tu_path(dir, "ad3.safetensors"));
    /* and the training moved them: the trip did not just copy the file it started from */
    ck_assert_int_ne(tu_run(fmt("cmp -s %s/ad.safetensors %s/ad2.safetensors", dir, dir), NULL), 0);
}
END_TEST

/* DIR/NAME.kdsl holding text, and DIR/NAME.safetensors every variable of its
 * model with values that differ from one another (a sine). */
static void program_and_weights(const char *dir, const char *name, const char *text)
{
    tu_write(tu_path(dir, fmt("%s.kdsl", name)), text, strlen(text));
    kd_session s = {0};
    ck_assert_int_eq(kd_front_end(&s, tu_path(dir, fmt("%s.kdsl", name)), NULL), 0);
    kdh_tensor_list w;
    kdh_list_init(&w);
    kdh_error err;
    for (int i = 0; i < s.model->vars.len; i++) {
        const kd_var *v = s.model->vars.items[i];
        int64_t shape[8];
        for (int k = 0; k < v->shape.rank; k++) shape[k] = v->shape.dims[k];
        kdh_tensor *t = kdh_list_add(&w, v->name, KDH_F32, v->shape.rank, shape, &err);
        ck_assert_ptr_nonnull(t);
        for (size_t k = 0; k < t->nbytes / 4; k++) ((float *)t->data)[k] = 0.4f * (float)sin((double)(3 * k + 11 * i) + 0.3);
    }
    ck_assert_int_eq(kdh_safetensors_write_list(tu_path(dir, fmt("%s.safetensors", name)), &w, &err), 0);
    kdh_list_free(&w);
    kd_session_free(&s);
}

/* Every layer kind the importer knows, written by hand: exported and
 * imported back, the same summary (names, shapes, parameters). */
START_TEST(export_layer_kinds)
{
    static const char text[] =
        "model kinds {\n"
        "    input x: [12, 10, 3]\n"
        "    c = Conv2D(x, 8, [3, 2], strides: [1, 2], padding: same, use_bias: false, kernel_regularizer: l2(1e-4),\n"
        "               kernel_initializer: RandomNormal(stddev: 0.1))\n"
        "    b = BatchNormalization(c, momentum: 0.9, synchronized: true)\n"
        "    r = ReLU(b, max_value: 6)\n"
        "    d = DepthwiseConv2D(r, 3, padding: same, depth_multiplier: 2, activation: relu6)\n"
        "    s = SeparableConv2D(d, 6, 3, dilation_rate: 2, padding: same)\n"
        "    p = MaxPooling2D(s, 2, padding: same)\n"
        "    q = AveragePooling2D(s, [2, 2], padding: same)\n"
        "    a = Add([p, q])\n"
        "    t = Conv2DTranspose(a, 4, 3, strides: 2, padding: same)\n"
        "    u = UpSampling2D(t, 2, interpolation: bilinear)\n"
        "    z = ZeroPadding2D(u, [[1, 0], [2, 1]])\n"
        "    g = GlobalAveragePooling2D(z)\n"
        "    e = Dense(g, 6, activation: gelu, trainable: false)\n"
        "    f = Reshape(e, [3, 2])\n"
        "    k = Conv1D(f, 4, 2, padding: causal, name: \"seq_conv\")\n"
        "    l = LayerNormalization(k)\n"
        "    n = Flatten(l)\n"
        "    o = Dropout(n, 0.2)\n"
        "    output y = Dense(o, 3, activation: softmax)\n"
        "}\n";
    const char *dir = tu_tmpdir("export-kinds");
    program_and_weights(dir, "k", text);
    kdh_error err;
    char *out;
    int rc = tu_kdslc_run(&out, "export %s/k.kdsl --weights %s/k.safetensors -o %s/k.h5", dir, dir, dir);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    rc = tu_kdslc_run(&out, "import %s/k.h5 -o %s/back.kdsl", dir, dir);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    ck_assert_int_eq(tu_run(fmt("cd %s && %s summary k.kdsl > a.txt && %s summary back.kdsl > b.txt && diff a.txt b.txt", dir,
                                tu_kdslc(), tu_kdslc()), &out), 0);
    free(out);
    same_weights(tu_path(dir, "k.safetensors"), tu_path(dir, "back.safetensors"));
    /* and through a .keras file: every layer kind's variables at their places in Keras 3's layout */
    rc = tu_kdslc_run(&out, "export %s/k.kdsl --weights %s/k.safetensors -o %s/k.keras", dir, dir, dir);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    rc = tu_kdslc_run(&out, "import %s/k.keras -o %s/back3.kdsl", dir, dir);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    ck_assert_int_eq(tu_run(fmt("cd %s && %s summary back3.kdsl > c.txt && diff a.txt c.txt", dir, tu_kdslc()), &out), 0);
    free(out);
    same_weights(tu_path(dir, "k.safetensors"), tu_path(dir, "back3.safetensors"));
    /* arguments the summary does not show, through both files (Keras 3's synchronized) */
    for (int i = 0; i < 2; i++) {
        char *back = tu_read(tu_path(dir, i ? "back3.kdsl" : "back.kdsl"), NULL);
        ck_assert_ptr_nonnull(back);
        ck_assert_has(back, "synchronized: true");
        free(back);
    }
    /* the same predictions */
    if (sanitizer_pass()) return;
    kdh_tensor x = {0};
    ck_assert_int_eq(kdh_tensor_alloc(&x, NULL, KDH_F32, 4, (const int64_t[]){2, 12, 10, 3}, &err), 0);
    for (int i = 0; i < 2 * 360; i++) ((float *)x.data)[i] = (float)cos(0.11 * i);
    ck_assert_int_eq(kdh_npy_write(tu_path(dir, "x.npy"), &x, &err), 0);
    kdh_tensor_free(&x);
    ck_assert_int_eq(tu_run(fmt("cd %s && %s predict k.kdsl --weights k.safetensors --input x.npy --normalize none > p1 && "
                                "%s predict back.kdsl --weights back.safetensors --input x.npy --normalize none > p2 && "
                                "cmp p1 p2", dir, tu_kdslc(), tu_kdslc()), &out), 0);
    free(out);
}
END_TEST


/* DIR/NAME.kdsl with NAME.safetensors exported as NAME.h5 and imported
 * back as back.kdsl and back.safetensors; the text of back.kdsl. */
static char *exported_and_back(const char *dir, const char *name)
{
    char *out;
    ck_assert_int_eq(tu_kdslc_run(&out, "export %s/%s.kdsl --weights %s/%s.safetensors -o %s/%s.h5", dir, name, dir,
                                  name, dir, name), 0);
    free(out);
    int rc = tu_kdslc_run(&out, "import %s/%s.h5 -o %s/back.kdsl", dir, name, dir);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    return text_of(tu_path(dir, "back.kdsl"));
}

/* DIR/NAME.kdsl with NAME.safetensors and DIR/back.kdsl with
 * back.safetensors predict the same bytes on three rows of `steps` token
 * ids below `vocab`, some of them 0 (padding for mask_zero). */
static void same_token_predictions(const char *dir, const char *name, int steps, int vocab)
{
    kdh_error err;
    kdh_tensor ids = {0};
    ck_assert_int_eq(kdh_tensor_alloc(&ids, NULL, KDH_I32, 2, (const int64_t[]){3, steps}, &err), 0);
    for (int i = 0; i < 3 * steps; i++) ((int32_t *)ids.data)[i] = (i * 7) % 13 == 0 ? 0 : (i * 17) % vocab;
    ck_assert_int_eq(kdh_npy_write(tu_path(dir, "ids.npy"), &ids, &err), 0);
    kdh_tensor_free(&ids);
    char *out;
    ck_assert_int_eq(tu_run(fmt("cd %s && %s predict %s.kdsl --weights %s.safetensors --input ids.npy > p1 && "
                                "%s predict back.kdsl --weights back.safetensors --input ids.npy > p2 && cmp p1 p2",
                                dir, tu_kdslc(), name, name, tu_kdslc()), &out), 0);
    free(out);
}

/* Token ids, an Embedding with its mask, LSTM and GRU: out to Keras' layout
 * and back, the same program, weights and predictions. */
START_TEST(export_recurrent)
{
    static const char text[] = "model rnn {\n    input tokens: i32[12]\n"
                               "    Embedding(input_dim: 50, output_dim: 8, mask_zero: true)\n"
                               "    LSTM(6, return_sequences: true)\n    GRU(5, reset_after: false)\n"
                               "    output y = Dense(3, activation: softmax)\n}\n";
    const char *dir = tu_tmpdir("export-rnn");
    program_and_weights(dir, "r", text);
    char *back = exported_and_back(dir, "r");
    ck_assert_has(back, "    input tokens: i32[12]\n");
    ck_assert_has(back, "    lstm = LSTM(embedding, 6, return_sequences: true)\n    gru = GRU(lstm, 5, reset_after: false)\n");
    free(back);
    same_weights(tu_path(dir, "r.safetensors"), tu_path(dir, "back.safetensors"));
    /* a recurrent layer's weights are its cell's in Keras 3 (layers/lstm/cell/vars/0..2) */
    char *out;
    ck_assert_int_eq(tu_kdslc_run(&out, "export %s/r.kdsl --weights %s/r.safetensors -o %s/r.keras", dir, dir, dir), 0);
    free(out);
    int rc = tu_kdslc_run(&out, "import %s/r.keras -o %s/back3.kdsl", dir, dir);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    same_weights(tu_path(dir, "r.safetensors"), tu_path(dir, "back3.safetensors"));
    if (sanitizer_pass()) return;
    same_token_predictions(dir, "r", 12, 50);
}
END_TEST

/* Bidirectional and TimeDistributed: the wrapped layer as Keras' nested
 * config (every argument, dropout and return_sequences included; the
 * backward copy is made again on import), out and back, the same program,
 * weights (bidirectional/forward_lstm/lstm_cell/kernel ...) and predictions. */
START_TEST(export_wrappers)
{
    static const char text[] = "model w {\n    input t: i32[6]\n    Embedding(8, 3, mask_zero: true)\n"
                               "    Bidirectional(LSTM(3, return_sequences: true, recurrent_dropout: 0.25), merge_mode: sum)\n"
                               "    TimeDistributed(Dense(2, activation: tanh))\n"
                               "    Bidirectional(GRU(2, reset_after: false))\n"
                               "    output y = Dense(2)\n}\n";
    const char *dir = tu_tmpdir("export-wrappers");
    program_and_weights(dir, "w", text);
    char *back = exported_and_back(dir, "w");
    ck_assert_has(back, "    bidirectional = Bidirectional(embedding, LSTM(3, return_sequences: true, recurrent_dropout: 0.25), "
                        "merge_mode: sum)\n    time_distributed = TimeDistributed(bidirectional, Dense(2, activation: tanh))\n"
                        "    bidirectional_1 = Bidirectional(time_distributed, GRU(2, reset_after: false))\n");
    free(back);
    same_weights(tu_path(dir, "w.safetensors"), tu_path(dir, "back.safetensors"));
    if (sanitizer_pass()) return;
    same_token_predictions(dir, "w", 6, 8);
}
END_TEST

/* Layers of several outputs in a functional config: return_state's states
 * and Bidirectional's merge_mode None read by tensor index ("lstm", 0, 1),
 * imported as `lstm, lstm_1, lstm_2 = LSTM(...)`; the same predictions. */
START_TEST(export_several_outputs)
{
    static const char text[] = "model st {\n    input x: [5, 3]\n"
                               "    y, h, c = LSTM(4, return_sequences: true, return_state: true)\n"
                               "    f, b, fh, bh = Bidirectional(y, GRU(2, return_sequences: true, return_state: true, "
                               "reset_after: false), merge_mode: none)\n"
                               "    s = SimpleRNN(Concatenate([f, b]), 3)\n"
                               "    output o = Dense(Concatenate([h, c, fh, bh, s]), 2)\n}\n";
    const char *dir = tu_tmpdir("export-outputs");
    program_and_weights(dir, "st", text);
    char *out;
    ck_assert_int_eq(tu_kdslc_run(&out, "export %s/st.kdsl --weights %s/st.safetensors -o %s/st.h5", dir, dir, dir), 0);
    free(out);
    int rc = tu_kdslc_run(&out, "import %s/st.h5 -o %s/back.kdsl", dir, dir);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    char *back = text_of(tu_path(dir, "back.kdsl"));
    ck_assert_has(back, "    lstm, lstm_1, lstm_2 = LSTM(x, 4, return_sequences: true, return_state: true)\n");
    ck_assert_has(back, "    concatenate_1 = Concatenate([lstm_1, lstm_2, bidirectional_2, bidirectional_3, simple_rnn])\n");
    free(back);
    same_weights(tu_path(dir, "st.safetensors"), tu_path(dir, "back.safetensors"));
    if (sanitizer_pass()) return;
    kdh_error err;
    kdh_tensor x = {0};
    ck_assert_int_eq(kdh_tensor_alloc(&x, NULL, KDH_F32, 3, (const int64_t[]){2, 5, 3}, &err), 0);
    for (int i = 0; i < 30; i++) ((float *)x.data)[i] = (float)cos(0.37 * i);
    ck_assert_int_eq(kdh_npy_write(tu_path(dir, "x.npy"), &x, &err), 0);
    kdh_tensor_free(&x);
    ck_assert_int_eq(tu_run(fmt("cd %s && %s predict st.kdsl --weights st.safetensors --input x.npy > p1 && "
                                "%s predict back.kdsl --weights back.safetensors --input x.npy > p2 && cmp p1 p2",
                                dir, tu_kdslc(), tu_kdslc()), &out), 0);
    free(out);
}
END_TEST

/* What has no Keras config is an error at its line; nothing is written. */
START_TEST(export_refuses)
{
    const char *dir = tu_tmpdir("export-bad");
    static const char expr[] = "model m {\n    input x: [4]\n    h = Dense(x, 4)\n    output y = Dense(h * 2.0, 2)\n}\n";
    static const char custom[] = "layer Scale(n) {\n    input x: [n]\n    weight s: [n]\n    output x * s\n}\n"
                                 "model m {\n    input x: [4]\n    output y = Scale(x, 4)\n}\n";
    tu_write(tu_path(dir, "expr.kdsl"), expr, strlen(expr));
    tu_write(tu_path(dir, "custom.kdsl"), custom, strlen(custom));
    tu_write(tu_path(dir, "w.safetensors"), "junk", 4);
    ck_assert_fails(2, "export needs --weights", "export %s/expr.kdsl -o %s/m.h5", dir, dir);
    ck_assert_fails(2, "would overwrite", "export %s/expr.kdsl --weights %s/w.safetensors -o %s/expr.kdsl", dir, dir, dir);
    ck_assert_fails(1, "w.safetensors", "export %s/expr.kdsl --weights %s/w.safetensors -o %s/m.h5", dir, dir, dir);
    kdh_tensor_list w;
    kdh_list_init(&w);
    kdh_error err;
    kdh_list_add(&w, "dense/kernel", KDH_F32, 2, (const int64_t[]){4, 4}, &err);
    kdh_list_add(&w, "dense/bias", KDH_F32, 1, (const int64_t[]){4}, &err);
    kdh_list_add(&w, "dense_1/kernel", KDH_F32, 2, (const int64_t[]){4, 2}, &err);
    ck_assert_int_eq(kdh_safetensors_write_list(tu_path(dir, "w.safetensors"), &w, &err), 0);
    ck_assert_fails(1, "no tensor \"dense_1/bias\"", "export %s/expr.kdsl --weights %s/w.safetensors -o %s/m.h5", dir, dir, dir);
    kdh_list_add(&w, "dense_1/bias", KDH_F32, 1, (const int64_t[]){2}, &err);
    kdh_list_add(&w, "scale/s", KDH_F32, 1, (const int64_t[]){4}, &err);
    ck_assert_int_eq(kdh_safetensors_write_list(tu_path(dir, "w.safetensors"), &w, &err), 0);
    kdh_list_free(&w);
    ck_assert_fails(1, "expr.kdsl:4:", "export %s/expr.kdsl --weights %s/w.safetensors -o %s/m.h5", dir, dir, dir);
    ck_assert_fails(1, "a custom layer or a nested model has no Keras config", "export %s/custom.kdsl --weights %s/w.safetensors -o %s/m.h5",
                    dir, dir, dir);
    ck_assert_int_eq(tu_run(fmt("test -e %s/m.h5", dir), NULL), 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("import");
    TCase *t = tcase_create("import");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, mlperf_resnet8);
    tcase_add_test(t, mlperf_ad01);
    tcase_add_test(t, sequential_config);
    tcase_add_test(t, keras3_config);
    tcase_add_test(t, unsupported_listed);
    tcase_add_test(t, nested_model_twice);
    tcase_add_test(t, bad_files);
    tcase_add_test(t, tfjs_models);
    tcase_add_test(t, tfjs_hostile);
    tcase_add_test(t, keras3_files);
    tcase_add_test(t, keras3_hostile);
    tcase_add_test(t, export_round_trip);
    tcase_add_test(t, export_layer_kinds);
    tcase_add_test(t, export_recurrent);
    tcase_add_test(t, export_wrappers);
    tcase_add_test(t, export_several_outputs);
    tcase_add_test(t, export_refuses);
    suite_add_tcase(s, t);
    return tu_run_suite(s);
}
