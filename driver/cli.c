/* cli.c — kdslc, the command line (cli.h): one function per command, each a
 * walk down the pipeline in driver.c, its arguments parsed by flags.c's one
 * table. main.c calls it; so does the test build of kdslc
 * (tests/kdslc_cc.c), with another backend installed. */
#include "cli.h"
#include "keras_cli.h"
#include "codegen_cli.h"
#include "driver.h"
#include "flags.h"
#include "plot.h"
#include "quant_cli.h"
#include "run.h"
#include "host/paths.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* --flops: what each generated function computes once optimised (what runs,
 * e.g. no gradient for the first layer's input), at the compile batch. */
static int print_flops(kd_session *s, const kd_codegen_options *o)
{
    if (kd_pipeline(s, o, KD_STAGE_GRAD, KD_STAGE_OPT, NULL) != 0) return 1;
    int batch = s->prog->max_batch;
    printf("\nFLOPs (a multiply-add counts 2) at batch %d:\n", batch);
    printf("%-16s %18s %16s %28s\n", "function", "per call", "per sample", "of which products/conv");
    for (int f = LP_F_PREDICT; f < LP_F_COUNT; f++) {
        if (!s->graphs.g[f] || lp_func_c_only((lp_func_kind)f)) continue;
        int64_t prod, total = ir_graph_flops(s->graphs.g[f], batch, &prod);
        char a[32], b[32], c[32];
        printf("%-16s %18s %16s %28s\n", lp_func_names[f], kd_thousands(total, a), kd_thousands(total / batch, b),
               kd_thousands(prod / batch, c));
    }
    return 0;
}

static int cmd_summary(kd_cli_options *o)
{
    kd_session s = {0};
    int rc = kd_front_end(&s, o->file, o->run.model);
    if (rc == 0) kd_print_summary(stdout, s.model);
    if (rc == 0 && o->flops) rc = print_flops(&s, &o->codegen);
    kd_session_free(&s);
    return rc;
}

/* kdslc ir FILE --stage NAME: the pipeline (driver.c) up to that stage, and
 * what it made. The code generator's flags apply from --stage layout on. */
static int cmd_ir(kd_cli_options *o)
{
    const char *name = o->stage ? o->stage : "graph";
    int stage = -1;
    for (int i = 0; i < KD_STAGE_COUNT; i++)
        if (!strcmp(name, kd_stage_names[i])) stage = i;
    if (stage < 0)
        return kd_bad_usage("unknown stage '%s' (ast, graph, infer, grad, layout, opt, loops)", name, kd_stage_names,
                            KD_STAGE_COUNT);
    if (o->codegen_flag && stage < KD_STAGE_LAYOUT) {
        fprintf(stderr, "kdslc: error: option '%s' applies to `kdslc ir` with --stage layout, opt or loops, not %s\n"
                        "(run 'kdslc --help' for usage)\n",
                o->codegen_flag, name);
        return 2;
    }
    kd_session s = {.model_name = o->run.model};
    int rc = kd_load_source(&s, o->file);
    if (rc == 0) rc = kd_pipeline(&s, &o->codegen, KD_STAGE_AST, (kd_stage)stage, stdout);
    kd_session_free(&s);
    return rc;
}

/* ---- code generation (codegen/codegen.h) ------------------------------------------ */

/* model.c and model.h writable, neither the source nor the embedded weights
 * (paths.h): checked before any code is generated. The exit status, or 0. */
static int check_compile_paths(const char *file, const char *weights, const char *c_path)
{
    char *h_path = kd_codegen_header_path(c_path);
    if (!h_path) return 1;
    kdh_path_use uses[] = {
        {strcmp(file, "-") ? file : NULL, "the model source", false, 0},
        {weights, "--embed-weights", false, 0},
        {c_path, "-o", true, 0},
        {h_path, "the header", true, 0},
    };
    kdh_error err;
    int rc = kdh_check_paths(uses, 4, &err);
    if (rc) fprintf(stderr, "kdslc: error: %s%s\n", err.msg, rc == 2 ? "\n(run 'kdslc --help' for usage)" : "");
    free(h_path);
    return rc;
}

/* kdslc compile FILE --quantize int8 --embed-weights W --calibration SPEC [-o model.c] */
static int compile_int8(kd_cli_options *o)
{
    int rc = kd_quantize_flags(&o->run);
    if (rc) return rc;
    if (!o->codegen.embed_weights) {
        fprintf(stderr, "kdslc: error: --quantize int8 needs --embed-weights W.safetensors: an int8 model's weights "
                        "are part of model.c\n(run 'kdslc --help' for usage)\n");
        return 2;
    }
    kd_session s = {0};
    if ((rc = kd_front_end(&s, o->file, o->run.model)) == 0) {
        const char *path = o->run.output ? o->run.output : kd_format(&s.arena, "%s.c", s.model->name);
        if ((rc = check_compile_paths(o->file, o->codegen.embed_weights, path)) == 0) {
            kq_model *m = kd_quantize_model(&s, &o->run, o->codegen.embed_weights);
            rc = m ? kd_codegen_write_int8(m, path, &s.diags) : 1;
        }
    }
    kd_session_free(&s);
    return rc;
}

/* kdslc compile FILE [-o model.c] [--model NAME] [the code generator's flags] */
static int cmd_compile(kd_cli_options *o)
{
    if (o->run.quantize || o->run.calibration || o->run.calibration_samples || o->run.calibration_method ||
        o->run.calibration_percentile > 0 || o->run.weight_rounding)
        return compile_int8(o);
    kd_session s = {0};
    int rc = kd_front_end(&s, o->file, o->run.model);
    if (rc == 0) {
        const char *path = o->run.output ? o->run.output : kd_format(&s.arena, "%s.c", s.model->name);
        if ((rc = check_compile_paths(o->file, o->codegen.embed_weights, path)) == 0) {
            o->codegen.prepare = true;   /* the C text's host API has prepare and predict_prepared */
            lp_program *p = kd_back_end(&s, &o->codegen);
            rc = p ? kd_codegen_write(p, &o->codegen, path, &s.diags) : 1;
        }
    }
    kd_session_free(&s);
    return rc;
}

static int run_command(int argc, char **argv);

/* Every command's results go to stdout (a summary, an IR dump, predictions,
 * progress): a write that failed there (a full disk, a closed pipe's
 * EPIPE with SIGPIPE ignored, /dev/full) fails the command, not just the
 * output. */
int kd_cli(int argc, char **argv)
{
    int rc = run_command(argc, argv);
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "kdslc: error: writing to standard output failed: %s\n", strerror(errno ? errno : EIO));
        if (rc == 0) rc = 1;
    }
    return rc;
}

static int run_command(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        kd_flags_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        puts("kdslc 0.1.0");
        return 0;
    }
    if (!kd_find_command(argv[1])) {
        const char *names[KD_NCOMMANDS];
        for (int i = 0; i < KD_NCOMMANDS; i++) names[i] = kd_commands[i].name;
        return kd_bad_usage("unknown command '%s'", argv[1], names, KD_NCOMMANDS);
    }
    kd_cli_options o;
    int rc = kd_flags_parse(argc, argv, &o);
    if (rc) return rc;
    if (o.help) {
        kd_flags_usage(stdout);
        return 0;
    }
    switch (o.bit) {
    case KD_CMD_SUMMARY: return cmd_summary(&o);
    case KD_CMD_IR: return cmd_ir(&o);
    case KD_CMD_COMPILE: return cmd_compile(&o);
    case KD_CMD_TRAIN: return kd_run_train(&o.run);
    case KD_CMD_EVALUATE: return kd_run_evaluate(&o.run);
    case KD_CMD_IMPORT: return kd_run_import(o.file, o.run.output, o.weights_out);
    case KD_CMD_PLOT: {
        kd_plot_options po = {o.file, o.run.model, o.run.history, o.run.output, o.show_shapes};
        return kd_run_plot(&po);
    }
    case KD_CMD_EXPORT: return kd_run_export(o.file, o.run.model, o.run.weights, o.run.output);
    default: return kd_run_predict(&o.run);
    }
}
