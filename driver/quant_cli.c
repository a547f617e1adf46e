/* quant_cli.c — `--quantize int8` on the command line (quant_cli.h). */
#include "quant_cli.h"

#include "flags.h"
#include "host/train.h"

#include <stdlib.h>
#include <string.h>

#define KD_CALIBRATION_DEFAULT 256
#define KD_PERCENTILE_DEFAULT 99.99

static const char *const method_names[] = {[KQ_CALIBRATE_MINMAX] = "minmax", [KQ_CALIBRATE_PERCENTILE] = "percentile",
                                           [KQ_CALIBRATE_MSE] = "mse"};

/* --calibration-method's name as a method; -1 for an unknown one. */
static int method_of(const char *name)
{
    if (!name) return KQ_CALIBRATE_MINMAX;
    for (int i = 0; i < (int)(sizeof method_names / sizeof method_names[0]); i++)
        if (!strcmp(name, method_names[i])) return i;
    return -1;
}

int kd_quantize_flags(const kd_run_options *o)
{
    const char *err = NULL;
    bool calibration = o->calibration || o->calibration_samples > 0 || o->calibration_method ||
                       o->calibration_percentile > 0 || o->weight_rounding;
    if (o->quantize && strcmp(o->quantize, "int8"))
        err = "--quantize takes int8 (the only precision kdsl quantizes to)";
    else if (!o->quantize && calibration)
        err = "--calibration, the other --calibration-* options and --weight-rounding go with --quantize int8";
    else if (o->quantize && !o->calibration)
        err = "--quantize int8 needs --calibration SPEC: representative inputs (fashion-mnist, an IDX directory, "
              "X.npy or a CSV file) whose ranges set the int8 scales";
    else if (method_of(o->calibration_method) < 0)
        return kd_bad_usage("--calibration-method is minmax, percentile or mse, not '%s'", o->calibration_method,
                            method_names, (int)(sizeof method_names / sizeof method_names[0]));
    else if (o->weight_rounding && strcmp(o->weight_rounding, "nearest") && strcmp(o->weight_rounding, "gptq"))
        return kd_bad_usage("--weight-rounding is nearest or gptq, not '%s'", o->weight_rounding,
                            (const char *const[]){"nearest", "gptq"}, 2);
    else if (o->calibration_percentile > 0 && method_of(o->calibration_method) != KQ_CALIBRATE_PERCENTILE)
        err = "--calibration-percentile goes with --calibration-method percentile";
    if (!err) return 0;
    fprintf(stderr, "kdslc: error: %s\n(run 'kdslc --help' for usage)\n", err);
    return 2;
}

/* The calibration inputs: X.npy (or a CSV file) alone, or a data set's training split. */
static int load_calibration(const kd_model *km, const kd_run_options *o, kdh_dataset *d)
{
    const ir_shape *s = &km->input_shapes[0];
    kdh_data_want w = {.model = km->name, .input_name = km->input_names[0], .normalize = o->normalize,
                       .labels = KDH_LABELS_NONE};
    int skip = s->batched ? 1 : 0;
    w.input_rank = s->rank - skip;
    w.input_elems = 1;
    for (int i = 0; i < w.input_rank && i < KDH_MAX_RANK; i++) {
        w.input_shape[i] = s->dims[i + skip];
        w.input_elems *= s->dims[i + skip];
    }
    kdh_error err;
    const char *spec = o->calibration;
    size_t n = strlen(spec);
    bool file = !strchr(spec, ',') && ((n > 4 && !strcmp(spec + n - 4, ".npy")) || (n > 4 && !strcmp(spec + n - 4, ".csv")));
    int rc = file ? kdh_inputs_load(spec, &w, d, &err)
                  : kdh_data_load(strcmp(spec, "fashion-mnist") ? spec : NULL, "train", &w, d, &err);
    if (rc != 0) {
        fprintf(stderr, "kdslc: error: --calibration: %s\n", err.msg);
        return 1;
    }
    return 0;
}

kq_model *kd_quantize_model(kd_session *s, const kd_run_options *o, const char *weights)
{
    if (s->model->ninputs != 1 || s->model->input_i32[0]) {
        fprintf(stderr, "kdslc: error: --quantize int8: model '%s' must have one real input\n", s->model->name);
        return NULL;
    }
    kd_codegen_options co = {.batch = 1, .inference_only = true, .embed_weights = weights};
    if (kd_pipeline(s, &co, KD_STAGE_GRAD, KD_STAGE_OPT, NULL) != 0) return NULL;
    kq_model *m = kq_build(s->prog, &s->graphs, &s->diags);
    if (!m) return NULL;
    kdh_dataset d = {0};
    if (load_calibration(s->model, o, &d) != 0) return NULL;
    int64_t n = o->calibration_samples > 0 ? o->calibration_samples : KD_CALIBRATION_DEFAULT;
    if (n > d.n) n = d.n;
    kq_calibration how = {(kq_calibration_method)method_of(o->calibration_method),
                          o->calibration_percentile > 0 ? o->calibration_percentile : KD_PERCENTILE_DEFAULT,
                          o->weight_rounding && !strcmp(o->weight_rounding, "gptq")};
    bool ok = n > 0 && kq_calibrate(m, d.x, n, &how, &s->diags) && kq_quantize(m, &s->diags);
    if (n == 0) fprintf(stderr, "kdslc: error: --calibration %s has no samples\n", o->calibration);
    kdh_dataset_free(&d);
    return ok ? m : NULL;
}

/* ---- the host's entry points --------------------------------------------------------------- */

static const kq_model *active;
static void *active_arena;

static void predict_int8(const float *params, const float *const *inputs, float *const *outputs, int batch, void *arena)
{
    (void)params, (void)arena;   /* the fp32 program's: the int8 plan has its own */
    const kq_tensor *in = active->tensors.items[active->input], *out = active->tensors.items[active->output];
    for (int b = 0; b < batch; b++) kq_run(active, inputs[0] + b * in->elems, outputs[0] + b * out->elems, active_arena);
}

void kd_quantize_fns(const kq_model *m, kdh_model_fns *fns)
{
    static char *buf;
    free(buf);
    buf = calloc(1, (size_t)m->arena_bytes);
    if (!buf) {
        fprintf(stderr, "kdslc: error: out of memory for the int8 arena\n");
        exit(1);
    }
    active = m, active_arena = buf;
    memset(fns, 0, sizeof *fns);
    fns->predict = predict_int8;
}
