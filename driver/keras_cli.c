/* keras_cli.c — Keras' files in and out:
 *   kdslc import MODEL [-o model.kdsl] [--weights-out W.safetensors]
 *   kdslc export model.kdsl --weights W.safetensors -o model.h5|model.keras
 *
 * import: a trained Keras model file as a KDSL program and its weights.
 *
 * The steps: read the file (interop/keras_h5.c, keras_zip.c, tfjs_model.c),
 * write the program (interop/keras_config.c), check it with the front end
 * as any program is checked, then take each of its weights and states from
 * the file by name and shape (a .keras file's by their places in Keras 3's
 * layout, interop/keras3_layout.c); every weight of the file must find its
 * variable. Only when all of that holds are the two files written,
 * together (both or neither). */
#include "keras_cli.h"

#include "driver.h"
#include "host/paths.h"
#include "keras_config.h"
#include "keras_export.h"
#include "keras3_layout.h"
#include "keras_h5.h"
#include "keras_zip.h"
#include "tfjs_model.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* PATH without its directory and extension, for default output names. */
static const char *stem(kd_arena *a, const char *path)
{
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    char *s = kd_format(a, "%s", base), *dot = strrchr(s, '.');
    if (dot && dot != s) *dot = 0;
    return s;
}

/* How long libhdf5 may take over a file: a minute, and 30 s more per GiB
 * (it reads some hundreds of MB/s); KDSL_IMPORT_SECONDS overrides it. */
static double reader_seconds(const char *path)
{
    const char *env = getenv("KDSL_IMPORT_SECONDS");
    char *end;
    double s = env ? strtod(env, &end) : 0;
    if (env && end != env && s > 0) return s;
    struct stat st;
    return 60 + (stat(path, &st) == 0 ? 30.0 * (double)st.st_size / (1 << 30) : 0);
}

typedef struct text_out {
    const char *path, *text;
} text_out;

static int write_text(FILE *f, void *ctx, kdh_error *err)
{
    const text_out *t = ctx;
    return kdh_fwrite_all(f, t->text, strlen(t->text), t->path, err);
}

/* The model's variables, from the file's weights (views into them). */
static int take_weights(kd_arena *a, const kd_model *m, const kx_keras_file *kf, const char *path, kdh_tensor *out,
                        kd_diags *d)
{
    int errors = d->errors;
    bool *used = calloc(kf->weights.count + 1, sizeof *used);
    for (int i = 0; i < m->vars.len; i++) {
        const kd_var *v = m->vars.items[i];
        int64_t shape[KDH_MAX_RANK];
        for (int k = 0; k < v->shape.rank; k++) shape[k] = v->shape.dims[k];
        kdh_error err;
        /* a nested model's weights: "encoder/dense/kernel", or (TensorFlow.js, and Keras 2's
         * group of the nested model) "dense/kernel"; a recurrent cell's "lstm/lstm_cell/kernel",
         * or (TensorFlow.js) "lstm/kernel" */
        const char *name = v->name, *inner = strchr(v->name, '/');
        const char *last = strrchr(v->name, '/');
        if (!kdh_list_find(&kf->weights, name) && inner && last != inner) {
            const char *cellless = kd_format(a, "%.*s%s", (int)(inner - v->name), v->name, last);
            if (kdh_list_find(&kf->weights, inner + 1)) name = inner + 1;
            else if (kdh_list_find(&kf->weights, cellless)) name = cellless;
        }
        const kdh_tensor *t = kdh_list_expect(&kf->weights, path, name, KDH_F32, v->shape.rank, shape, &err);
        if (!t) {
            kd_error(d, (kd_loc){0}, "%s", err.msg);
            continue;
        }
        if (used[t - kf->weights.items]) {
            kd_error(d, (kd_loc){0}, "%s: weight \"%s\" would serve two variables (%s too)", path, name, v->name);
            continue;
        }
        if (kdh_check_finite(t, v->name, &err) != 0) {
            kd_error(d, (kd_loc){0}, "%s: %s", path, err.msg);
            continue;
        }
        used[t - kf->weights.items] = true;
        out[i] = *t;   /* borrowed, named as the program names it */
        out[i].name = (char *)v->name;
    }
    for (size_t i = 0; i < kf->weights.count; i++)
        if (!used[i])
            kd_error(d, (kd_loc){0}, "%s: weight \"%s\" belongs to no variable of the imported program", path,
                     kf->weights.items[i].name);
    free(used);
    return d->errors > errors ? 1 : 0;
}

/* A .keras file's weights, named by their places in Keras 3's layout
 * ("layers/dense/vars/0"), renamed as the program's variables they are;
 * those that are no variable's place keep their names (take_weights then
 * lists them), and a variable without its place is an error. */
static int keras3_names(kd_arena *a, const char *config, const kd_model *m, kx_keras_file *kf, const char *path,
                        kd_diags *d)
{
    kx_keras3_layout lay;
    if (kx_keras3_layout_of(a, config, m, path, &lay, d) != 0) return 1;
    int errors = d->errors;
    for (int i = 0; i < m->vars.len; i++) {
        const kd_var *v = m->vars.items[i];
        kdh_tensor *t = kdh_list_find(&kf->weights, lay.var_paths[i]);
        char *name = t ? strdup(v->name) : NULL;
        if (!name) {
            kd_error(d, (kd_loc){0}, "%s: no dataset %s in model.weights.h5, where Keras 3 keeps %s", path, lay.var_paths[i],
                     v->name);
            continue;
        }
        free(t->name);
        t->name = name;
    }
    return d->errors > errors ? 1 : 0;
}

int kd_run_import(const char *file, const char *kdsl_path, const char *weights_path)
{
    kd_session s = {0};
    s.diags.out = stderr;
    kd_diags *d = &s.diags;
    kx_keras_file kf;
    kdh_error err;
    if (!strcmp(file, "-")) {
        fprintf(stderr, "kdslc: error: import reads a file, not standard input\n");
        return 2;
    }
    bool h5 = kx_is_hdf5(file), zip = !h5 && kx_is_zip(file), tfjs = !h5 && !zip && kx_is_tfjs_json(file);
    if (!h5 && !zip && !tfjs) {
        FILE *f = fopen(file, "rb");
        if (!f) fprintf(stderr, "kdslc: error: cannot read %s: %s\n", file, strerror(errno));
        else {
            fclose(f);
            fprintf(stderr, "kdslc: error: %s: not a Keras file: neither HDF5 (.h5), a zip (.keras) nor a "
                            "TensorFlow.js model.json\n", file);
        }
        return 1;
    }
    /* model.json is every TensorFlow.js model's name: the program is named after its directory */
    const char *name = file;
    if (tfjs && !strcmp(stem(&s.arena, file), "model") && strrchr(file, '/')) {
        char *dir = kd_format(&s.arena, "%.*s", (int)(strrchr(file, '/') - file), file);
        name = strcmp(stem(&s.arena, dir), "") ? dir : file;
    }
    if (!kdsl_path) kdsl_path = kd_format(&s.arena, "%s.kdsl", stem(&s.arena, name));
    if (!weights_path) {
        const char *dir_end = strrchr(kdsl_path, '/');
        weights_path = kd_format(&s.arena, "%.*s%s.safetensors", dir_end ? (int)(dir_end - kdsl_path + 1) : 0, kdsl_path,
                                 stem(&s.arena, kdsl_path));
    }
    kdh_path_use uses[] = {
        {file, "the model file", false, 0},
        {kdsl_path, "-o", true, 0},
        {weights_path, "--weights-out", true, 0},
    };
    int rc = kdh_check_paths(uses, 3, &err);
    if (rc) {
        fprintf(stderr, "kdslc: error: %s%s\n", err.msg, rc == 2 ? "\n(run 'kdslc --help' for usage)" : "");
        kd_session_free(&s);
        return rc;
    }
    if ((h5    ? kx_read_keras_h5_isolated(file, reader_seconds(file), &kf, &err)
         : zip ? kx_read_keras_zip(file, reader_seconds(file), &kf, &err)
               : kx_read_tfjs(file, &kf, &err)) != 0) {
        fprintf(stderr, "kdslc: error: %s\n", err.msg);
        kd_session_free(&s);
        return 1;
    }
    rc = 1;
    char *text = kx_config_to_kdsl(&s.arena, kf.config, name, kf.keras_version, d);
    if (text && kd_front_end_text(&s, kdsl_path, text, strlen(text), NULL) != 0)
        kd_note(d, (kd_loc){0}, "the program written for %s does not compile (above): a bug of kdslc import", file);
    else if (text && (!zip || keras3_names(&s.arena, kf.config, s.model, &kf, file, d) == 0)) {
        kdh_tensor *ts = calloc((size_t)s.model->vars.len + 1, sizeof *ts);
        if (take_weights(&s.arena, s.model, &kf, file, ts, d) == 0) {
            text_out t = {kdsl_path, text};
            kdh_atomic_out also = {kdsl_path, write_text, &t};
            if (kdh_safetensors_write_also(weights_path, ts, (size_t)s.model->vars.len, NULL, 0, &also, 1, &err) != 0)
                fprintf(stderr, "kdslc: error: %s\n", err.msg);
            else {
                printf("%s: model %s, %d layers, %lld parameters (%lld non-trainable)\n", kdsl_path, s.model->name,
                       s.model->layers.len, (long long)(s.model->trainable_params + s.model->nontrainable_params),
                       (long long)s.model->nontrainable_params);
                printf("%s: %d tensors\n", weights_path, s.model->vars.len);
                rc = 0;
            }
        }
        free(ts);
    }
    kx_keras_file_free(&kf);
    kd_session_free(&s);
    return rc;
}

/* Whether path names a .keras file. */
static bool keras3_path(const char *path)
{
    size_t n = strlen(path);
    return n > 6 && !strcmp(path + n - 6, ".keras");
}

/* A .keras file of the model: its config in Keras 3's dialect, and the
 * variables (from `list`) at their places in Keras 3's layout. */
static int write_keras3(kd_session *s, const char *config, const kdh_tensor_list *list, const char *path, kdh_error *err)
{
    kx_keras3_layout lay;
    if (kx_keras3_layout_of(&s->arena, config, s->model, path, &lay, &s->diags) != 0) return 1;
    int n = s->model->vars.len;
    kdh_tensor *ts = calloc((size_t)n + 1, sizeof *ts);
    for (int i = 0; ts && i < n; i++) ts[i] = *kdh_list_find(list, ((const kd_var *)s->model->vars.items[i])->name);
    void *image = NULL;
    size_t len = 0;
    int rc = !ts ? kx_fail(err, path, "out of memory")
                 : kx_keras3_weights_build(lay.groups, lay.ngroups, ts, lay.var_paths, n, &image, &len, path, err);
    if (rc == 0) rc = kx_write_keras_zip(path, config, image, len, err);
    if (rc != 0) fprintf(stderr, "kdslc: error: %s\n", err->msg);
    free(image);
    free(ts);
    return rc != 0;
}

/* export: the model's Keras config (interop/keras_export.c) and the weights
 * (every variable of the model, by name and shape) as a legacy Keras .h5,
 * or a Keras 3 .keras file when the output's name ends so. */
int kd_run_export(const char *file, const char *model, const char *weights, const char *h5_path)
{
    if (!weights || !h5_path) {
        fprintf(stderr, "kdslc: error: export needs --weights W.safetensors and -o model.h5 (or model.keras)\n"
                        "(run 'kdslc --help' for usage)\n");
        return 2;
    }
    kdh_path_use uses[] = {
        {strcmp(file, "-") ? file : NULL, "the model source", false, 0},
        {weights, "--weights", false, 0},
        {h5_path, "-o", true, 0},
    };
    kdh_error err;
    int rc = kdh_check_paths(uses, 3, &err);
    if (rc) {
        fprintf(stderr, "kdslc: error: %s%s\n", err.msg, rc == 2 ? "\n(run 'kdslc --help' for usage)" : "");
        return rc;
    }
    kd_session s = {0};
    rc = kd_front_end(&s, file, model);
    kdh_tensor_list list;
    kdh_list_init(&list);
    if (rc == 0 && kdh_safetensors_read(weights, NULL, &list, &err) != 0) {
        fprintf(stderr, "kdslc: error: %s\n", err.msg);
        rc = 1;
    }
    for (int i = 0; rc == 0 && i < s.model->vars.len; i++) {   /* every variable, of its shape */
        const kd_var *v = s.model->vars.items[i];
        int64_t shape[KDH_MAX_RANK];
        for (int k = 0; k < v->shape.rank; k++) shape[k] = v->shape.dims[k];
        if (!kdh_list_expect(&list, weights, v->name, KDH_F32, v->shape.rank, shape, &err)) {
            fprintf(stderr, "kdslc: error: %s\n", err.msg);
            rc = 1;
        }
    }
    bool keras3 = keras3_path(h5_path);
    const char *config = rc == 0 ? kx_keras_config(&s.arena, s.model, file, keras3, &s.diags) : NULL;
    if (rc == 0 && !config) rc = 1;
    if (rc == 0 && keras3) rc = write_keras3(&s, config, &list, h5_path, &err);
    else if (rc == 0 && kx_write_keras_h5(h5_path, config, s.model, &list, &err) != 0) {
        fprintf(stderr, "kdslc: error: %s\n", err.msg);
        rc = 1;
    }
    if (rc == 0)
        printf("%s: model %s, %d layers, %d tensors\n", h5_path, s.model->name, s.model->layers.len, s.model->vars.len);
    kdh_list_free(&list);
    kd_session_free(&s);
    return rc;
}
