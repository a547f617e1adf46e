/* dataset.c — data sets for fit / evaluate / predict (dataset.h): the sources,
 * then one path from tensors in memory to what the model takes. */
#include "dataset.h"

#include "host_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

const char *kdh_fashion_mnist_dir(void)
{
    const char *d = getenv("KDSL_FASHION_MNIST_DIR");
    return d && *d ? d : FASHION_MNIST_DIR;
}

void kdh_dataset_free(kdh_dataset *d)
{
    free(d->x);
    free(d->y);
    free(d->cls);
    memset(d, 0, sizeof *d);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static bool is_fashion_mnist(const char *spec)
{
    return !spec || !strcmp(spec, "fashion-mnist") || !strcmp(spec, "fashion_mnist");
}

/* The IDX directory a spec names, or NULL. */
static const char *idx_dir(const char *spec)
{
    if (is_fashion_mnist(spec)) return kdh_fashion_mnist_dir();
    return is_dir(spec) ? spec : NULL;
}

bool kdh_data_has_test_split(const char *spec)
{
    const char *dir = idx_dir(spec);
    if (!dir) return false;
    char p[4096];
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte.gz", dir);
    if (exists(p)) return true;
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte", dir);
    return exists(p);
}

/* ---- from tensors to what the model takes ------------------------------------------ */

static int64_t per_sample(const kdh_tensor *t)
{
    int64_t n = 1;
    for (int i = 1; i < t->rank; i++) n *= t->shape[i];
    return n;
}

static char *sample_shape(const kdh_tensor *t, char *buf, size_t size)
{
    return kdh_shape_str(t->rank > 0 ? t->rank - 1 : 0, t->shape + 1, buf, size);
}

/* An i32 input's token ids, checked (whole numbers in the Embedding's
 * table) and stored as int32_t in the float array, bit for bit. */
static int take_tokens(const kdh_tensor *x, const char *xname, const kdh_data_want *w, kdh_dataset *out,
                       kdh_error *err)
{
    int64_t per = per_sample(x), n = x->shape[0], count = n * per;
    int64_t rows = w->input_rows > 0 ? w->input_rows : (int64_t)1 << 31;
    int32_t *ids = aligned_alloc(64, (size_t)count * sizeof *ids / 64 * 64 + 64);
    if (!ids) return kdh__err(err, "%s: out of memory for %" PRId64 " token ids", xname, count);
    for (int64_t i = 0; i < count; i++) {
        double v = kdh_tensor_elem_f64(x, (size_t)i);
        const char *why = v != floor(v) || isnan(v) ? "is not a whole number"
                          : v < 0 || v >= (double)rows ? "is outside the vocabulary" : NULL;
        if (why) {
            free(ids);
            char range[160];
            if (w->input_rows > 0)
                snprintf(range, sizeof range, "%s's input_dim is %" PRId64 ": ids 0 to %" PRId64,
                         w->input_rows_layer ? w->input_rows_layer : "the Embedding", rows, rows - 1);
            else
                snprintf(range, sizeof range, "ids 0 to 2^31 - 1");
            return kdh__err(err, "%s: sample %" PRId64 ", element %" PRId64 " of input '%s' (i32): token %.17g %s (%s)",
                            xname, i / per, i % per, w->input_name ? w->input_name : "", v, why, range);
        }
        ids[i] = (int32_t)v;
    }
    out->n = n;
    out->x_elems = per;
    out->x = (float *)(void *)ids;
    return 0;
}

/* The inputs: reshaped (element counts must agree), scaled, checked finite. */
static int take_inputs(const kdh_tensor *x, const char *xname, const kdh_data_want *w, kdh_dataset *out,
                       kdh_error *err)
{
    char sb[256], mb[256];
    if (x->rank < 1 || x->shape[0] < 1)
        return kdh__err(err, "%s: no samples (shape %s)", xname, kdh_shape_str(x->rank, x->shape, sb, sizeof sb));
    int64_t per = per_sample(x);
    if (per != w->input_elems)
        return kdh__err(err, "%s: samples of shape %s (%" PRId64 " values) do not fit model '%s', whose input %s is %s (%" PRId64
                        " values)",
                        xname, sample_shape(x, sb, sizeof sb), per, w->model, w->input_name ? w->input_name : "",
                        kdh_shape_str(w->input_rank, w->input_shape, mb, sizeof mb), w->input_elems);
    if (w->input_i32) return take_tokens(x, xname, w, out, err);
    if (kdh_check_finite(x, xname, err) != 0) return -1;
    kdh_tensor f;
    if (kdh_tensor_to_f32(x, &f, err) != 0) return -1;
    bool scale = w->normalize == KDH_NORM_255 || (w->normalize == KDH_NORM_AUTO && x->dtype == KDH_U8);
    float *v = f.data;
    size_t count = (size_t)kdh_tensor_count(&f);
    if (scale)
        for (size_t i = 0; i < count; i++) v[i] /= 255.0f;
    size_t first = kdh_first_nonfinite_f32(v, count);
    if (first < count) {
        kdh_tensor_free(&f);
        return kdh__err(err, "%s: element %zu does not fit in a float", xname, first);
    }
    out->n = x->shape[0];
    out->x_elems = per;
    out->x = f.data;     /* take the data; the name was NULL */
    f.data = NULL;
    kdh_tensor_free(&f);
    return 0;
}

/* The labels: one-hot from class indices (or taken one-hot), or targets as given. */
static int take_labels(const kdh_tensor *y, const char *yname, const kdh_data_want *w, kdh_dataset *out,
                       kdh_error *err)
{
    char sb[256], mb[256];
    if (y->rank < 1 || y->shape[0] != out->n)
        return kdh__err(err, "%s: %" PRId64 " labels for %" PRId64 " samples", yname, y->rank < 1 ? 0 : y->shape[0],
                        out->n);
    if (kdh_check_finite(y, yname, err) != 0) return -1;
    kdh_tensor f;
    if (kdh_tensor_to_f32(y, &f, err) != 0) return -1;
    const float *v = f.data;
    int64_t per = per_sample(y), n = out->n, k = w->label_elems;
    int rc = -1;
    if (w->labels == KDH_LABELS_TARGETS) {
        if (per != k) {
            kdh__err(err, "%s: labels of shape %s (%" PRId64 " values) do not fit model '%s', whose output is %s values", yname,
                     sample_shape(y, sb, sizeof sb), per, w->model, kdh_shape_str(1, &k, mb, sizeof mb));
            goto done;
        }
        out->y_elems = k;
        out->y = f.data;
        f.data = NULL;
        rc = 0;
        goto done;
    }
    /* categorical: integer classes [n] / [n, 1], or one-hot [n, classes] */
    bool indices = per == 1 && (k != 1 || !kdh_dtype_is_float(y->dtype));
    if (!indices && per != k) {
        kdh__err(err,
                 "%s: labels of shape %s do not fit model '%s' with %" PRId64
                 " classes: give integer class labels [n] or one-hot labels [n, %" PRId64 "]",
                 yname, sample_shape(y, sb, sizeof sb), w->model, k, k);
        goto done;
    }
    out->y_elems = k;
    out->y = calloc((size_t)(n * k), sizeof *out->y);
    out->cls = calloc((size_t)n, sizeof *out->cls);
    if (!out->y || !out->cls) {
        kdh__err(err, "%s: out of memory for %" PRId64 " labels", yname, n);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        if (indices) {
            float c = v[i];
            if (c != floorf(c) || c < 0 || c >= (float)k) {
                if (c != floorf(c))
                    kdh__err(err, "%s: label %g of sample %" PRId64 " is not a class index", yname, (double)c, i);
                else
                    kdh__err(err, "%s: label %.0f of sample %" PRId64 " is outside the model's %" PRId64 " classes (0..%" PRId64 ")",
                             yname, (double)c, i, k, k - 1);
                goto done;
            }
            out->cls[i] = (int32_t)c;
            out->y[i * k + (int64_t)c] = 1.0f;
        } else {
            const float *row = v + i * k;
            int64_t best = 0;
            for (int64_t j = 0; j < k; j++) {
                if (row[j] > row[best]) best = j;
                out->y[i * k + j] = row[j];
            }
            out->cls[i] = (int32_t)best;
        }
    }
    rc = 0;
done:
    kdh_tensor_free(&f);
    return rc;
}

int kdh_dataset_from_tensors(const kdh_tensor *x, const char *xname, const kdh_tensor *y, const char *yname,
                             const kdh_data_want *w, kdh_dataset *out, kdh_error *err)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", xname);
    if (take_inputs(x, xname, w, out, err) != 0) goto fail;
    if (w->labels != KDH_LABELS_NONE) {
        if (!y) {
            kdh__err(err, "%s: no labels", xname);
            goto fail;
        }
        if (take_labels(y, yname, w, out, err) != 0) goto fail;
    }
    return 0;
fail:
    kdh_dataset_free(out);
    return -1;
}

/* ---- sources -------------------------------------------------------------------------- */

/* Splits a CSV table [rows, cols] into features and the last `k` columns. */
static int csv_split(const kdh_tensor *t, const char *path, int64_t k, kdh_tensor *x, kdh_tensor *y, kdh_error *err)
{
    memset(x, 0, sizeof *x);
    memset(y, 0, sizeof *y);
    int64_t rows = t->shape[0], cols = t->rank == 2 ? t->shape[1] : 1;
    if (cols <= k)
        return kdh__err(err, "%s: %" PRId64 " columns; the data needs features and then %" PRId64 " label column%s", path,
                        cols, k, k == 1 ? "" : "s");
    int64_t xs[2] = {rows, cols - k}, ys[2] = {rows, k};
    if (kdh_tensor_alloc(x, NULL, KDH_F32, 2, xs, err) != 0) return -1;
    if (kdh_tensor_alloc(y, NULL, KDH_F32, 2, ys, err) != 0) {
        kdh_tensor_free(x);
        return -1;
    }
    const float *v = t->data;
    float *xv = x->data, *yv = y->data;
    for (int64_t r = 0; r < rows; r++) {
        memcpy(xv + r * (cols - k), v + r * cols, (size_t)(cols - k) * sizeof *xv);
        memcpy(yv + r * k, v + r * cols + cols - k, (size_t)k * sizeof *yv);
    }
    return 0;
}

/* Reads one .npy or .csv file whole. */
static int read_array(const char *path, kdh_tensor *t, kdh_error *err)
{
    if (ends_with(path, ".csv")) return kdh_csv_read(path, NULL, t, NULL, err);
    if (ends_with(path, ".npy")) return kdh_npy_read(path, NULL, t, err);
    memset(t, 0, sizeof *t);
    return kdh__err(err, "%s: unknown file type (use .npy or .csv)", path);
}

static int load_pair(const char *spec, const kdh_data_want *w, kdh_dataset *out, kdh_error *err)
{
    const char *comma = strchr(spec, ',');
    size_t xl = (size_t)(comma - spec);
    char *xp = malloc(xl + 1);
    if (!xp) return kdh__err(err, "out of memory");
    memcpy(xp, spec, xl);
    xp[xl] = 0;
    const char *yp = comma + 1;
    int rc = -1;
    kdh_tensor x = {0}, y = {0};
    if (!*xp || !*yp || strchr(yp, ',')) {
        kdh__err(err, "--data '%s': expected two files X,Y (X.npy,Y.npy)", spec);
        goto done;
    }
    if (read_array(xp, &x, err) != 0) goto done;
    if (w->labels != KDH_LABELS_NONE && read_array(yp, &y, err) != 0) goto done;
    rc = kdh_dataset_from_tensors(&x, xp, w->labels != KDH_LABELS_NONE ? &y : NULL, yp, w, out, err);
done:
    kdh_tensor_free(&x);
    kdh_tensor_free(&y);
    free(xp);
    return rc;
}

static int load_csv(const char *path, const kdh_data_want *w, kdh_dataset *out, kdh_error *err)
{
    kdh_tensor t, x, y;
    if (kdh_csv_read(path, NULL, &t, NULL, err) != 0) return -1;
    int64_t k = w->labels == KDH_LABELS_TARGETS ? w->label_elems : w->labels == KDH_LABELS_NONE ? 0 : 1;
    int rc = -1;
    if (k == 0) {
        rc = kdh_dataset_from_tensors(&t, path, NULL, path, w, out, err);
    } else if (csv_split(&t, path, k, &x, &y, err) == 0) {
        rc = kdh_dataset_from_tensors(&x, path, &y, path, w, out, err);
        kdh_tensor_free(&x);
        kdh_tensor_free(&y);
    }
    kdh_tensor_free(&t);
    return rc;
}

static int load_idx(const char *dir, const char *spec, const char *split, const kdh_data_want *w, kdh_dataset *out,
                    kdh_error *err)
{
    kdh_tensor images, labels;
    const char *file_split = !strcmp(split, "test") ? "t10k" : "train";
    if (kdh_mnist_read(dir, file_split, NULL, &images, &labels, err) != 0) {
        if (is_fashion_mnist(spec) && !is_dir(dir))
            return kdh__err(err, "Fashion-MNIST is not installed in %s (Debian: apt install dataset-fashion-mnist; "
                                 "or set KDSL_FASHION_MNIST_DIR)",
                            dir);
        return -1;
    }
    char name[600];
    snprintf(name, sizeof name, "%s/%s-images-idx3-ubyte", dir, file_split);
    char lname[600];
    snprintf(lname, sizeof lname, "%s/%s-labels-idx1-ubyte", dir, file_split);
    int rc = kdh_dataset_from_tensors(&images, name, w->labels != KDH_LABELS_NONE ? &labels : NULL, lname, w, out, err);
    if (rc == 0)
        snprintf(out->name, sizeof out->name, "%.400s (%s)", is_fashion_mnist(spec) ? "fashion-mnist" : dir, file_split);
    kdh_tensor_free(&images);
    kdh_tensor_free(&labels);
    return rc;
}

int kdh_data_load(const char *spec, const char *split, const kdh_data_want *w, kdh_dataset *out, kdh_error *err)
{
    memset(out, 0, sizeof *out);
    const char *dir = idx_dir(spec);
    if (dir) return load_idx(dir, spec, split, w, out, err);
    if (strcmp(split, "train") != 0) return kdh__err(err, "%s: has no test split", spec);
    if (strchr(spec, ',')) return load_pair(spec, w, out, err);
    if (ends_with(spec, ".csv")) return load_csv(spec, w, out, err);
    if (ends_with(spec, ".npy"))
        return kdh__err(err, "--data '%s': a .npy file holds no labels; give X.npy,Y.npy", spec);
    if (!exists(spec))
        return kdh__err(err, "--data '%s': no such file or directory (use fashion-mnist, a directory of IDX files, "
                             "X.npy,Y.npy or a .csv file)",
                        spec);
    return kdh__err(err, "--data '%s': unknown kind of data (use fashion-mnist, a directory of IDX files, X.npy,Y.npy "
                         "or a .csv file)",
                    spec);
}

int kdh_inputs_load(const char *path, const kdh_data_want *w, kdh_dataset *out, kdh_error *err)
{
    kdh_data_want iw = *w;
    iw.labels = KDH_LABELS_NONE;
    memset(out, 0, sizeof *out);
    kdh_tensor x;
    if (read_array(path, &x, err) != 0) return -1;
    int rc = kdh_dataset_from_tensors(&x, path, NULL, NULL, &iw, out, err);
    kdh_tensor_free(&x);
    return rc;
}

/* ---- several inputs or outputs ------------------------------------------------------------- */

void kdh_data_free_parts(kdh_dataset *parts, int nparts)
{
    for (int i = 0; i < nparts; i++) kdh_dataset_free(&parts[i]);
}

/* Label columns of output i in a CSV table: a class index, or the targets. */
static int64_t label_columns(const kdh_data_want *w)
{
    return w->labels == KDH_LABELS_ONEHOT ? 1 : w->labels == KDH_LABELS_TARGETS ? w->label_elems : 0;
}

/* Columns [at, at + width) of a CSV table [rows, cols] as a tensor [rows, width]. */
static int csv_columns(const kdh_tensor *t, int64_t at, int64_t width, kdh_tensor *out, kdh_error *err)
{
    int64_t rows = t->shape[0], cols = t->shape[1], shape[2] = {rows, width};
    if (kdh_tensor_alloc(out, NULL, KDH_F32, 2, shape, err) != 0) return -1;
    const float *v = t->data;
    float *o = out->data;
    for (int64_t r = 0; r < rows; r++) memcpy(o + r * width, v + r * cols + at, (size_t)width * sizeof *o);
    return 0;
}

/* The tensors of one CSV file of every input's and label's columns. */
static int csv_parts(const char *path, const kdh_data_want *w, int ninputs, int nlabels, kdh_tensor *ts,
                     kdh_error *err)
{
    kdh_tensor t;
    if (kdh_csv_read(path, NULL, &t, NULL, err) != 0) return -1;
    int64_t want = 0;
    char list[1024] = "";
    size_t at = 0;
    for (int i = 0; i < ninputs + nlabels; i++) {
        const kdh_data_want *wi = &w[i < ninputs ? i : i - ninputs];
        int64_t c = i < ninputs ? wi->input_elems : label_columns(wi);
        const char *name = i < ninputs ? wi->input_name : wi->output_name;
        want += c;
        if (at < sizeof list)
            at += (size_t)snprintf(list + at, sizeof list - at, "%s%" PRId64 " for %s '%s'", i ? ", " : "", c,
                                   i < ninputs ? "input" : "the labels of output", name ? name : "?");
    }
    int rc = -1, made = 0;
    if (t.shape[1] != want) {
        kdh__err(err, "%s: %" PRId64 " columns; model '%s' takes %" PRId64 " (%s, in this order)", path, t.shape[1],
                 w[0].model, want, list);
        goto done;
    }
    for (int64_t col = 0; made < ninputs + nlabels; made++) {
        int64_t c = made < ninputs ? w[made].input_elems : label_columns(&w[made - ninputs]);
        if (csv_columns(&t, col, c, &ts[made], err) != 0) goto done;
        col += c;
    }
    rc = 0;
done:
    if (rc != 0)
        for (int i = 0; i < made; i++) kdh_tensor_free(&ts[i]);
    kdh_tensor_free(&t);
    return rc;
}

int kdh_data_load_parts(const char *spec, const kdh_data_want *w, int nparts, int ninputs, int nlabels,
                        kdh_dataset *parts, kdh_error *err)
{
    memset(parts, 0, (size_t)nparts * sizeof *parts);
    int nfiles = ninputs + nlabels;
    if (nparts > KDH_MAX_PARTS || ninputs > nparts || nlabels > nparts || ninputs < 1)
        return kdh__err(err, "model '%s': %d inputs and %d outputs are more than kdsl reads", w[0].model, ninputs,
                        nlabels);
    /* the file names */
    char *copy = strdup(spec ? spec : "");
    if (!copy) return kdh__err(err, "out of memory");
    char *names[2 * KDH_MAX_PARTS + 1];
    int count = 0;
    for (char *p = copy, *next; p && count <= 2 * KDH_MAX_PARTS; p = next) {
        next = strchr(p, ',');
        if (next) *next++ = 0;
        names[count++] = p;
    }
    kdh_tensor ts[2 * KDH_MAX_PARTS];
    memset(ts, 0, sizeof ts);
    const char *tname[2 * KDH_MAX_PARTS];
    int rc = -1;
    for (int i = 0; i < count; i++)
        if (!*names[i]) {
            kdh__err(err, "'%s': an empty file name in the list", spec);
            goto done;
        }
    if (count == 1 && nfiles > 1 && ends_with(names[0], ".csv")) {
        if (csv_parts(names[0], w, ninputs, nlabels, ts, err) != 0) goto done;
        for (int i = 0; i < nfiles; i++) tname[i] = names[0];
    } else if (count != nfiles) {
        char ins[512] = "", outs[512] = "";
        size_t ai = 0, ao = 0;
        for (int i = 0; i < ninputs && ai < sizeof ins; i++)
            ai += (size_t)snprintf(ins + ai, sizeof ins - ai, "%s%s", i ? ", " : "", w[i].input_name ? w[i].input_name : "?");
        for (int j = 0; j < nlabels && ao < sizeof outs; j++)
            ao += (size_t)snprintf(outs + ao, sizeof outs - ao, "%s%s", j ? ", " : "",
                                   w[j].output_name ? w[j].output_name : "?");
        kdh__err(err, "'%s' names %d file%s; model '%s' takes %d: one .npy or .csv file per input (%s)%s%s%s, in "
                      "this order, or one CSV file of all their columns",
                 spec, count, count == 1 ? "" : "s", w[0].model, nfiles, ins,
                 nlabels ? ", then one of labels per output (" : "", outs, nlabels ? ")" : "");
        goto done;
    } else {
        for (int i = 0; i < nfiles; i++) {
            if (read_array(names[i], &ts[i], err) != 0) goto done;
            tname[i] = names[i];
        }
    }
    /* every file holds the same samples */
    for (int i = 1; i < nfiles; i++)
        if (ts[i].rank < 1 || ts[i].shape[0] != ts[0].shape[0]) {
            kdh__err(err, "%s: %" PRId64 " samples, but %s has %" PRId64 ": every input and label file needs one "
                          "row per sample",
                     tname[i], ts[i].rank < 1 ? 0 : ts[i].shape[0], tname[0], ts[0].rank < 1 ? 0 : ts[0].shape[0]);
            goto done;
        }
    for (int i = 0; i < ninputs; i++) {
        kdh_data_want iw = w[i];
        iw.labels = KDH_LABELS_NONE;
        if (kdh_dataset_from_tensors(&ts[i], tname[i], NULL, NULL, &iw, &parts[i], err) != 0) goto done;
    }
    for (int j = 0; j < nlabels; j++) {
        kdh_dataset *d = &parts[j];
        if (j >= ninputs) snprintf(d->name, sizeof d->name, "%s", tname[ninputs + j]);
        d->n = parts[0].n;
        if (take_labels(&ts[ninputs + j], tname[ninputs + j], &w[j], d, err) != 0) goto done;
    }
    for (int i = ninputs > nlabels ? ninputs : nlabels; i < nparts; i++) parts[i].n = parts[0].n;
    rc = 0;
done:
    for (int i = 0; i < 2 * KDH_MAX_PARTS; i++) kdh_tensor_free(&ts[i]);
    free(copy);
    if (rc != 0) kdh_data_free_parts(parts, nparts);
    return rc;
}

int kdh_data_split(kdh_dataset *d, double fraction, kdh_dataset *val, kdh_error *err)
{
    memset(val, 0, sizeof *val);
    if (!(fraction > 0 && fraction < 1)) return kdh__err(err, "validation split %g is not in (0, 1)", fraction);
    int64_t nval = (int64_t)((double)d->n * fraction);   /* Keras: int(n * split) samples at the end */
    if (nval < 1 || nval >= d->n)
        return kdh__err(err, "%s: a validation split of %g leaves %" PRId64 " of %" PRId64 " samples for validation", d->name,
                        fraction, nval, d->n);
    int64_t ntr = d->n - nval;
    snprintf(val->name, sizeof val->name, "%.400s (last %g)", d->name, fraction);
    val->n = nval;
    val->x_elems = d->x_elems;
    val->y_elems = d->y_elems;
    val->x = aligned_alloc(64, ((size_t)(nval * d->x_elems) * sizeof *val->x + 63) / 64 * 64 + 64);
    val->y = d->y ? malloc((size_t)(nval * d->y_elems) * sizeof *val->y) : NULL;
    val->cls = d->cls ? malloc((size_t)nval * sizeof *val->cls) : NULL;
    if (!val->x || (d->y && !val->y) || (d->cls && !val->cls)) {
        kdh_dataset_free(val);
        return kdh__err(err, "%s: out of memory", d->name);
    }
    memcpy(val->x, d->x + ntr * d->x_elems, (size_t)(nval * d->x_elems) * sizeof *val->x);
    if (d->y) memcpy(val->y, d->y + ntr * d->y_elems, (size_t)(nval * d->y_elems) * sizeof *val->y);
    if (d->cls) memcpy(val->cls, d->cls + ntr, (size_t)nval * sizeof *val->cls);
    d->n = ntr;   /* the training part keeps its (now larger than needed) buffers */
    return 0;
}
