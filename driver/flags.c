/* flags.c — kdslc's commands and flags, one table each (flags.h), and the
 * one parser every command uses. */
#include "flags.h"

#include "host/train.h" /* KDH_MAX_BATCH_SIZE, KDH_MAX_EPOCHS */

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

const kd_command kd_commands[KD_NCOMMANDS] = {
    {"summary", KD_CMD_SUMMARY, "FILE [--model NAME]", "print the Keras-style summary table"},
    {"compile", KD_CMD_COMPILE, "FILE [-o model.c] [options]", "emit model.c + model.h"},
    {"ir", KD_CMD_IR, "FILE --stage ast|graph|infer|grad|layout|opt|loops [options]", "dump a stage of the compiler"},
    {"train", KD_CMD_TRAIN, "FILE [options]", "fit the model (Keras' compile + fit), JIT-compiled"},
    {"evaluate", KD_CMD_EVALUATE, "FILE --weights W [--data ...]", "loss and accuracy on the data (test split)"},
    {"predict", KD_CMD_PREDICT, "FILE --weights W --input X.npy[,X2.npy...] [-o Y.npy|Y.csv[,...]]",
     "every output (CSV on stdout without -o)"},
    {"export", KD_CMD_EXPORT, "FILE --weights W.safetensors -o model.h5|model.keras",
     "the model and its weights as a Keras .h5 or Keras 3 .keras file"},
    {"plot", KD_CMD_PLOT, "FILE [-o model.svg|model.png|model.dot] [--show-shapes] | --history H.csv|H.json [-o curves.svg]",
     "draw the model as keras.utils.plot_model does, or a training history's curves"},
    {"import", KD_CMD_IMPORT, "MODEL.h5|MODEL.keras|model.json [-o model.kdsl] [--weights-out W.safetensors]",
     "a trained Keras model as a KDSL program and its weights"},
};

const kd_command *kd_find_command(const char *name)
{
    for (int i = 0; i < KD_NCOMMANDS; i++)
        if (!strcmp(name, kd_commands[i].name)) return &kd_commands[i];
    return NULL;
}

int kd_bad_usage(const char *fmt, const char *arg, const char *const *known, int nknown)
{
    fprintf(stderr, "kdslc: error: ");
    fprintf(stderr, fmt, arg);
    const char *near = known ? kd_nearest(arg, known, nknown) : NULL;
    if (near) fprintf(stderr, "; did you mean '%s'?", near);
    fprintf(stderr, "\n(run 'kdslc --help' for usage)\n");
    return 2;
}

static int bad_value(const char *flag, const char *want, const char *value)
{
    fprintf(stderr, "kdslc: error: option '%s' wants %s, not '%s'\n(run 'kdslc --help' for usage)\n", flag, want, value);
    return 2;
}

/* "kdslc: error: WHAT 'ARG'": the code generator's own messages. */
static int bad(const char *what, const char *arg)
{
    fprintf(stderr, "kdslc: error: %s '%s'\n(run 'kdslc --help' for usage)\n", what, arg);
    return 2;
}

/* ---- the setters of the flags whose values are names ------------------------------------ */

static int set_normalize(const kd_flag *f, const char *v, kd_cli_options *o)
{
    if (!strcmp(v, "auto")) o->run.normalize = KDH_NORM_AUTO;
    else if (!strcmp(v, "none")) o->run.normalize = KDH_NORM_NONE;
    else if (!strcmp(v, "255")) o->run.normalize = KDH_NORM_255;
    else return bad_value(f->name, "auto, none or 255", v);
    return 0;
}

static int set_dtype(const kd_flag *f, const char *v, kd_cli_options *o)
{
    (void)f;
    if (!strcmp(v, "f32") || !strcmp(v, "float32")) o->codegen.f64 = false;
    else if (!strcmp(v, "f64") || !strcmp(v, "float64")) o->codegen.f64 = true;
    else return bad("--dtype is f32 or f64, not", v);
    return 0;
}

static int set_target(const kd_flag *f, const char *v, kd_cli_options *o)
{
    (void)f;
    const char *t = kd_resolve_target(v);
    if (!t)
        return bad(!strcmp(v, "native") ? "--target native: kdslc knows no instruction-set level for this host; "
                                          "use portable, not"
                                        : "--target is portable, native, x86-64, x86-64-v2, x86-64-v3 or x86-64-v4, not",
                   v);
    o->codegen.target = *t ? t : NULL;
    return 0;
}

/* ---- the table ------------------------------------------------------------------------------ */

#define RUN (KD_CMD_TRAIN | KD_CMD_EVALUATE | KD_CMD_PREDICT)
#define CODEGEN (KD_CMD_COMPILE | KD_CMD_IR)
#define AT(field) offsetof(kd_cli_options, field)

#define SWITCH(name, cmds, field, h) {name, cmds, KD_FLAG_NONE, NULL, 0, 0, false, NULL, AT(field), .help = h}
#define CG_SWITCH(name, field, h) \
    {name, CODEGEN, KD_FLAG_NONE, NULL, 0, 0, false, NULL, AT(codegen.field), .codegen = true, .help = h}
#define INT(name, cmds, value, lo, hi, field, h) \
    {name, cmds, KD_FLAG_INT, value, 0, 0, false, NULL, AT(field), .ilo = lo, .ihi = hi, .help = h}
#define STR(name, cmds, value, field, h) {name, cmds, KD_FLAG_STRING, value, 0, 0, false, NULL, AT(field), .help = h}
#define PATH(name, cmds, value, field, h) {name, cmds, KD_FLAG_PATH, value, 0, 0, false, NULL, AT(field), .help = h}

const kd_flag kd_flags[] = {
    STR("--model", KD_CMD_ALL, "NAME", run.model, "the model of the file to use (default: the last one)"),
    SWITCH("--flops", KD_CMD_SUMMARY, flops, "also each generated function's FLOPs (at the compile batch)"),
    STR("--stage", KD_CMD_IR, "STAGE", stage, "ast, graph, infer, grad, layout, opt or loops (default graph)"),
    PATH("-o", KD_CMD_COMPILE | KD_CMD_PREDICT | KD_CMD_IMPORT | KD_CMD_EXPORT | KD_CMD_PLOT, "FILE", run.output,
         "compile: model.c, model.h beside it (default MODEL.c); predict: the predictions, one file per output; "
         "import: the program (default MODEL.kdsl); export: the .h5 or .keras file; plot: the picture, .svg, .png or .dot "
         "(default MODEL.svg; curves.svg with --history)"),
    PATH("--output", KD_CMD_COMPILE | KD_CMD_PREDICT | KD_CMD_IMPORT | KD_CMD_EXPORT | KD_CMD_PLOT, "FILE", run.output,
         "the same as -o"),
    SWITCH("--show-shapes", KD_CMD_PLOT, show_shapes, "plot: each layer's input and output shapes in its box"),
    PATH("--weights-out", KD_CMD_IMPORT, "W.safetensors", weights_out,
         "the imported weights (default: beside the program, .safetensors)"),

    /* the code generator's (compile; ir --stage layout|opt|loops) */
    {"--batch", CODEGEN, KD_FLAG_INT, "N", 0, 0, false, NULL, AT(codegen.batch), .ilo = 1, .ihi = 1 << 20, .codegen = true,
     .help = "the largest batch the code takes (default: the train block's batch_size, else 32)"},
    CG_SWITCH("--inference-only", inference_only, "init and predict only (no heap, no stdio: firmware)"),
    {"--embed-weights", CODEGEN, KD_FLAG_PATH, "W.safetensors", 0, 0, false, NULL, AT(codegen.embed_weights),
     .codegen = true, .help = "bake the weights in as static const data"},
    {"--dtype", CODEGEN, KD_FLAG_STRING, "f32|f64", 0, 0, false, NULL, 0, .set = set_dtype, .codegen = true,
     .help = "the real type (f64: gradient checks)"},
    CG_SWITCH("--no-workspace", no_workspace, "firmware: a smaller arena, layers as loops in model.c"),
    {"--target", CODEGEN, KD_FLAG_STRING, "portable|native|x86-64-vN", 0, 0, false, NULL, 0, .set = set_target,
     .codegen = true, .help = "the x86-64 level of model.c's own loops (default portable)"},
    CG_SWITCH("--no-passes", no_passes, "lower the graphs as built: no graph pass (debugging)"),
    CG_SWITCH("--no-simplify", passes.no_simplify, "no algebraic simplification"),
    CG_SWITCH("--no-cse", passes.no_cse, "no common-subexpression elimination"),
    CG_SWITCH("--no-fuse", passes.no_fuse, "no fusion of bias and activation into GEMM and convolutions"),
    CG_SWITCH("--no-fold-batchnorm", passes.no_fold_batchnorm, "keep BatchNormalization apart from the layer before it"),
    CG_SWITCH("--no-loop-fusion", no_loop_fusion, "no merging of element-wise loop nests"),
    CG_SWITCH("--no-inplace", no_inplace, "no result written in place of an operand that dies"),
    CG_SWITCH("--disjoint-arena", disjoint_arena, "every arena buffer in bytes of its own"),

    /* train / evaluate / predict */
    STR("--data", KD_CMD_TRAIN | KD_CMD_EVALUATE, "SPEC", run.data,
        "fashion-mnist (default), an IDX directory, X.npy,Y.npy or FILE.csv"),
    PATH("--weights", RUN | KD_CMD_EXPORT, "W", run.weights, "start from (train) or use (evaluate, predict, export) these weights"),
    INT("--batch-size", RUN, "N", 1, KDH_MAX_BATCH_SIZE, run.batch_size,
        "the batch (train: the train block's; evaluate, predict: 128)"),
    INT("--threads", RUN, "N", 1, 4096, run.threads, "threads of the kernels and loops (default: every core)"),
    SWITCH("--no-cache", RUN, run.no_cache,
           "compile the model's code again, neither taken from nor kept in the JIT cache ($KDSL_CACHE_DIR, else "
           "~/.cache/kdsl)"),
    {"--normalize", RUN | KD_CMD_COMPILE, KD_FLAG_STRING, "auto|none|255", 0, 0, false, NULL, 0, .set = set_normalize,
     .help = "scale the inputs: by 255 when they are bytes (auto, default), never, or always"},
    STR("--loss", KD_CMD_TRAIN | KD_CMD_EVALUATE, "NAME", run.loss, "the loss, for a model without a train block"),
    SWITCH("--from-logits", KD_CMD_TRAIN | KD_CMD_EVALUATE, run.from_logits, "the loss takes logits"),
    STR("--optimizer", KD_CMD_TRAIN, "NAME", run.optimizer,
        "sgd, adam, rmsprop, adamw, adagrad, adamax, nadam or adadelta, at Keras' defaults, for a model without a train "
        "block (or replacing the train block's)"),
    INT("--epochs", KD_CMD_TRAIN, "N", 0, KDH_MAX_EPOCHS, run.epochs, "epochs to train"),
    {"--learning-rate", KD_CMD_TRAIN, KD_FLAG_REAL, "F", 0, INFINITY, false, "a positive number",
     AT(run.learning_rate), .help = "the optimizer's learning rate"},
    {"--validation-split", KD_CMD_TRAIN, KD_FLAG_REAL, "F", 0, 1, true, "a fraction in [0, 1)",
     AT(run.validation_split), .help = "validate on this last fraction of the data (default: its test split)"},
    {"--seed", KD_CMD_TRAIN, KD_FLAG_INT, "N", 0, 0, false, NULL, AT(run.seed), .ilo = 0, .ihi = INT64_MAX,
     .int64 = true, .help = "the seed of the initial weights, the shuffles and dropout"},
    PATH("--save", KD_CMD_TRAIN, "W", run.save, "write the trained weights (safetensors)"),
    PATH("--checkpoint", KD_CMD_TRAIN, "F", run.checkpoint, "write a checkpoint after every epoch"),
    PATH("--resume", KD_CMD_TRAIN, "F", run.resume, "continue the run of a checkpoint"),
    PATH("--history", KD_CMD_TRAIN | KD_CMD_PLOT, "H.csv|H.json", run.history,
         "train: write the per-epoch history; plot: draw the curves of this history (no model file then)"),
    INT("--early-stopping", KD_CMD_TRAIN, "N", 0, 1000000, run.early_stopping,
        "stop after N epochs without a better val_loss (loss without validation data): EarlyStopping(patience: N)"),
    SWITCH("--restore-best-weights", KD_CMD_TRAIN, run.restore_best_weights,
           "with --early-stopping: end with the weights of the best epoch"),
    INT("--reduce-lr-on-plateau", KD_CMD_TRAIN, "N", 0, 1000000, run.reduce_lr,
        "divide the learning rate by 10 after N epochs without a better val_loss: ReduceLROnPlateau(patience: N)"),
    PATH("--save-best", KD_CMD_TRAIN, "W", run.save_best,
         "write the weights of every epoch with a better val_loss: ModelCheckpoint(W, save_best_only: true)"),
    SWITCH("--deterministic", KD_CMD_TRAIN, run.deterministic,
           "data-parallel steps in a fixed summation order: weights bit-identical on any number of MPI ranks, one "
           "included (docs/distributed.md)"),
    INT("--shards", KD_CMD_TRAIN, "K", 1, 4096, run.shards,
        "--deterministic: the parts each batch is cut into (default 8); the ranks must be a power of two dividing K"),
    INT("--bucket-kb", KD_CMD_TRAIN, "N", 1, 1 << 20, run.bucket_kb,
        "under mpirun: gradients summed in buckets of N KiB, each its own MPI_Iallreduce (default 4096)"),
    SWITCH("--no-overlap", KD_CMD_TRAIN, run.no_overlap,
           "under mpirun: sum the gradients after the backward pass instead of starting each bucket's sum as soon as "
           "the backward pass has finished it"),
    STR("--quantize", KD_CMD_COMPILE | KD_CMD_EVALUATE | KD_CMD_PREDICT, "int8", run.quantize,
        "int8 post-training quantization (TFLite's scheme; compile: with --embed-weights; docs/c-api.md#int8)"),
    STR("--calibration", KD_CMD_COMPILE | KD_CMD_EVALUATE | KD_CMD_PREDICT, "SPEC", run.calibration,
        "--quantize: representative inputs whose ranges set the scales (fashion-mnist, an IDX directory, X.npy, FILE.csv)"),
    INT("--calibration-samples", KD_CMD_COMPILE | KD_CMD_EVALUATE | KD_CMD_PREDICT, "N", 1, 1 << 24,
        run.calibration_samples, "--quantize: calibrate on the first N samples (default 256)"),
    STR("--calibration-method", KD_CMD_COMPILE | KD_CMD_EVALUATE | KD_CMD_PREDICT, "minmax|percentile|mse",
        run.calibration_method,
        "--quantize: each tensor's range from the samples' min and max (default, TFLite's), clipped at percentiles, or "
        "clipped where the quantization error is least (docs/c-api.md#int8)"),
    {"--calibration-percentile", KD_CMD_COMPILE | KD_CMD_EVALUATE | KD_CMD_PREDICT, KD_FLAG_REAL, "P", 50, 100, false,
     "a percentile above 50 and below 100", AT(run.calibration_percentile),
     .help = "--calibration-method percentile: clip at the (100 - P)th and Pth percentiles (default 99.99)"},
    STR("--weight-rounding", KD_CMD_COMPILE | KD_CMD_EVALUATE | KD_CMD_PREDICT, "nearest|gptq", run.weight_rounding,
        "--quantize: round each weight to the nearest int8 (default), or by GPTQ, each rounding error made up by the "
        "weights not yet rounded through the calibration inputs (docs/c-api.md#int8)"),
    PATH("--input", KD_CMD_PREDICT, "X.npy[,...]", run.input, "the inputs, one file per input"),

    SWITCH("--help", KD_CMD_ALL, help, "this text"),
};
const int kd_nflags = (int)(sizeof kd_flags / sizeof kd_flags[0]);

const kd_flag *kd_find_flag(const char *name)
{
    for (int k = 0; k < kd_nflags; k++)
        if (!strcmp(name, kd_flags[k].name)) return &kd_flags[k];
    return NULL;
}

/* ---- parsing ---------------------------------------------------------------------------------- */

static int set_flag(const kd_flag *f, const char *v, kd_cli_options *o)
{
    if (f->set) return f->set(f, v, o);
    char *at = (char *)o + f->offset, *end;
    errno = 0;
    switch (f->kind) {
    case KD_FLAG_NONE: *(bool *)(void *)at = true; return 0;
    case KD_FLAG_STRING:
    case KD_FLAG_PATH:
        if (!*v) return bad_value(f->name, "a value", v);
        *(const char **)(void *)at = v;
        return 0;
    case KD_FLAG_INT: {
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end || x < f->ilo || x > f->ihi) {
            char want[96];
            snprintf(want, sizeof want, "a whole number from %lld to %lld", f->ilo, f->ihi);
            return bad_value(f->name, want, v);
        }
        if (f->int64) *(int64_t *)(void *)at = x;
        else *(int *)(void *)at = (int)x;
        return 0;
    }
    case KD_FLAG_REAL: {
        double x = strtod(v, &end);
        bool above = x > f->lo || (f->lo_closed && x == f->lo);
        if (errno || end == v || *end || !isfinite(x) || !above || !(x < f->hi)) return bad_value(f->name, f->want, v);
        *(double *)(void *)at = x;
        return 0;
    }
    }
    return 2;
}

int kd_flags_parse(int argc, char **argv, kd_cli_options *o)
{
    memset(o, 0, sizeof *o);
    kd_run_options_init(&o->run);
    o->command = argv[1];
    const kd_command *cmd = kd_find_command(argv[1]);
    o->bit = cmd ? cmd->bit : 0;
    const char *known[sizeof kd_flags / sizeof kd_flags[0]];
    int nknown = 0;
    for (int k = 0; k < kd_nflags; k++)
        if (kd_flags[k].commands & o->bit) known[nknown++] = kd_flags[k].name;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1]) {   /* "-" is the model on standard input */
            if (o->file) return kd_bad_usage("unexpected argument '%s'", a, NULL, 0);
            o->file = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(len < sizeof name ? len : sizeof name - 1), a);
        const kd_flag *f = kd_find_flag(name);
        if (!f) return kd_bad_usage("unknown option '%s'", name, known, nknown);
        if (!(f->commands & o->bit)) {
            fprintf(stderr, "kdslc: error: option '%s' does not apply to `kdslc %s`\n(run 'kdslc --help' for usage)\n",
                    name, argv[1]);
            return 2;
        }
        if (f->codegen && !o->codegen_flag) o->codegen_flag = f->name;
        if (f->kind == KD_FLAG_NONE) {
            if (eq) return kd_bad_usage("option '%s' takes no value", name, NULL, 0);
            set_flag(f, "", o);
            continue;
        }
        const char *v = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
        if (!v) return kd_bad_usage("option '%s' needs a value", name, NULL, 0);
        int rc = set_flag(f, v, o);
        if (rc) return rc;
    }
    if (o->help) return 0;
    if (o->bit == KD_CMD_PLOT && o->run.history) return 0;   /* a history alone (cli.c checks the rest) */
    if (!o->file) return kd_bad_usage("'%s' needs a model file", argv[1], NULL, 0);
    o->run.file = o->file;
    return 0;
}

/* ---- --help ------------------------------------------------------------------------------------ */

void kd_flags_usage(FILE *out)
{
    fputs("usage: kdslc COMMAND FILE.kdsl [options]\n\ncommands:\n", out);
    for (int i = 0; i < KD_NCOMMANDS; i++) {
        const kd_command *c = &kd_commands[i];
        fprintf(out, "  %-9s%s\n  %9s  %s\n", c->name, c->synopsis, "", c->help);
    }
    fputs("\noptions (--flag VALUE or --flag=VALUE), and the commands that take them:\n", out);
    for (int k = 0; k < kd_nflags; k++) {
        const kd_flag *f = &kd_flags[k];
        char head[64], cmds[96] = "";
        snprintf(head, sizeof head, "%s%s%s", f->name, f->value ? " " : "", f->value ? f->value : "");
        if (f->commands == KD_CMD_ALL) snprintf(cmds, sizeof cmds, "all");
        else
            for (int i = 0; i < KD_NCOMMANDS; i++)
                if (f->commands & kd_commands[i].bit) {
                    size_t n = strlen(cmds);
                    snprintf(cmds + n, sizeof cmds - n, "%s%s", n ? "," : "", kd_commands[i].name);
                }
        fprintf(out, "  %-34s %-24s %s\n", head, cmds, f->help);
    }
    fputs("\n  kdslc --help      this text\n  kdslc --version   the version\n"
          "\nSee docs/cli.md; 'kdslc train': docs/training.md.\n",
          out);
}
