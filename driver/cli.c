/* cli.c — kdslc, the command line (cli.h): one function per command, each a
 * walk down the pipeline in driver.c. main.c calls it; so does the test
 * build of kdslc (tests/kdslc_cc.c), with another backend installed. */
#include "cli.h"
#include "driver.h"
#include "codegen_cli.h"
#include "run.h"
#include "train_graph.h"
#include "host/paths.h"
#include "host/train.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct options {
    const char *command;
    const char *file;
    const char *model;
    const char *output;
    const char *stage;
} options;

static void usage(FILE *out)
{
    fputs("usage: kdslc COMMAND FILE.kdsl [options]\n"
          "\n"
          "commands:\n"
          "  summary FILE [--model NAME]            print the Keras-style summary table\n"
          "  compile FILE [-o model.c] [--batch N] [--inference-only] [--embed-weights W]\n"
          "               [--dtype f32|f64] [--no-workspace] [--target portable|native|x86-64-vN]\n"
          "                                         emit model.c + model.h\n"
          "  ir FILE --stage ast|graph|infer|grad|opt|loops [--model NAME]  dump a stage of the compiler\n"
          "  train FILE [options]                   fit the model (Keras' compile + fit), JIT-compiled\n"
          "      --data fashion-mnist|DIR|X.npy,Y.npy|FILE.csv   (default fashion-mnist)\n"
          "      --epochs N  --batch-size N  --learning-rate F  --seed N  --validation-split F\n"
          "      --loss NAME --optimizer NAME [--from-logits]   (models without a train block)\n"
          "      --weights W  --save W  --checkpoint F  --resume F  --history H.csv|H.json\n"
          "      --normalize auto|none|255  --threads N  --model NAME\n"
          "  evaluate FILE --weights W [--data ...]  loss and accuracy on the data (test split);\n"
          "               several inputs/outputs: --data A.npy,B.npy,Y0.npy,Y1.npy (inputs, then labels)\n"
          "  predict FILE --weights W --input X.npy[,X2.npy...] [-o Y.npy|Y.csv[,Y2.npy...]]\n"
          "                                         every output (CSV on stdout without -o)\n"
          "\n"
          "  kdslc --help      this text\n"
          "  kdslc --version   the version\n",
          out);
}

static const char *const commands[] = {"summary", "ir", "compile", "train", "evaluate", "predict"};
static const char *const flags[] = {"--model", "--stage", "-o", "--help"};

static int bad_usage(const char *fmt, const char *arg, const char *const *known, int nknown)
{
    fprintf(stderr, "kdslc: error: ");
    fprintf(stderr, fmt, arg);
    const char *near = known ? kd_nearest(arg, known, nknown) : NULL;
    if (near) fprintf(stderr, "; did you mean '%s'?", near);
    fprintf(stderr, "\n(run 'kdslc --help' for usage)\n");
    return 2;
}

static int parse_options(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->command = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (!strcmp(a, "--model")) slot = &o->model;
        else if (!strcmp(a, "--stage")) slot = &o->stage;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) slot = &o->output;
        else if (!strncmp(a, "--stage=", 8)) { o->stage = a + 8; continue; }
        else if (!strncmp(a, "--model=", 8)) { o->model = a + 8; continue; }
        else if (a[0] == '-' && a[1]) return bad_usage("unknown option '%s'", a, flags, 4);
        else if (!o->file) { o->file = a; continue; }
        else return bad_usage("unexpected argument '%s'", a, NULL, 0);
        if (i + 1 >= argc) return bad_usage("option '%s' needs a value", a, NULL, 0);
        *slot = argv[++i];
    }
    if (!o->file) return bad_usage("'%s' needs a model file", o->command, NULL, 0);
    return 0;
}

static int cmd_summary(const options *o)
{
    kd_session s = {0};
    int rc = kd_front_end(&s, o->file, o->model);
    if (rc == 0) kd_print_summary(stdout, s.model);
    kd_session_free(&s);
    return rc;
}

static int cmd_ir(const options *o)
{
    static const char *const stages[] = {"ast", "graph", "infer", "grad", "opt", "loops"};
    const char *stage = o->stage ? o->stage : "graph";
    int which = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(stage, stages[i])) which = i;
    if (which < 0) return bad_usage("unknown stage '%s' (ast, graph, infer, grad, opt, loops)", stage, stages, 6);
    kd_session s = {0};
    int rc = kd_front_end(&s, o->file, o->model);
    if (which == 0 && s.ast && rc == 0) ast_dump(stdout, s.ast);
    else if (which == 1 && rc == 0) ir_dump(stdout, s.model->train);
    else if (which == 2 && rc == 0) ir_dump(stdout, s.model->infer);
    else if (which == 3 && rc == 0) {
        /* the differentiated graph as autodiff builds it: loss, first output,
         * then every trainable weight's gradient (before the passes) */
        kd_train_graph tg;
        char why[512];
        if (kd_build_grad_graph(&s.arena, s.model, &tg, why, sizeof why)) {
            ir_dump(stdout, tg.g);
        } else {
            fprintf(stderr, "kdslc: error: --stage grad: %s\n", why);
            rc = 1;
        }
    }
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

/* kdslc compile FILE [-o model.c] [--model NAME] [--batch N] [--inference-only]
 *               [--embed-weights W.safetensors] [--dtype f32|f64] [--no-workspace] */
static int cmd_compile(int argc, char **argv)
{
    kd_codegen_options co = {0};
    const char *file = NULL, *out = NULL, *model = NULL;
    for (int i = 2; i < argc; i++) {
        int r = kd_codegen_parse_option(argc, argv, &i, &co);
        if (r < 0) return 2;
        if (r > 0) continue;
        const char *a = argv[i];
        const char **slot = !strcmp(a, "-o") || !strcmp(a, "--output") ? &out : !strcmp(a, "--model") ? &model : NULL;
        if (slot && i + 1 < argc) *slot = argv[++i];
        else if (slot) return bad_usage("option '%s' needs a value", a, NULL, 0);
        else if (a[0] == '-' && a[1]) return bad_usage("unknown option '%s'", a, NULL, 0);
        else if (!file) file = a;
        else return bad_usage("unexpected argument '%s'", a, NULL, 0);
    }
    if (!file) return bad_usage("'%s' needs a model file", "compile", NULL, 0);
    kd_session s = {0};
    int rc = kd_front_end(&s, file, model);
    if (rc == 0) {
        co.arena = &s.arena;
        const char *path = out ? out : kd_format(&s.arena, "%s.c", s.model->name);
        if ((rc = check_compile_paths(file, co.embed_weights, path)) == 0)
            rc = kd_codegen_write(s.model, &co, path, &s.diags);
    }
    kd_session_free(&s);
    return rc;
}

/* kdslc ir FILE --stage opt|loops [--model NAME] [codegen options] */
static int cmd_ir_codegen(int argc, char **argv)
{
    kd_codegen_options co = {0};
    const char *file = NULL, *model = NULL, *stage = NULL;
    for (int i = 2; i < argc; i++) {
        int r = kd_codegen_parse_option(argc, argv, &i, &co);
        if (r < 0) return 2;
        if (r > 0) continue;
        const char *a = argv[i];
        if (!strncmp(a, "--stage=", 8)) stage = a + 8;
        else if (!strncmp(a, "--model=", 8)) model = a + 8;
        else if ((!strcmp(a, "--stage") || !strcmp(a, "--model")) && i + 1 < argc)
            *(a[2] == 's' ? &stage : &model) = argv[++i];
        else if (a[0] == '-' && a[1]) return bad_usage("unknown option '%s'", a, NULL, 0);
        else if (!file) file = a;
        else return bad_usage("unexpected argument '%s'", a, NULL, 0);
    }
    if (!file) return bad_usage("'%s' needs a model file", "ir", NULL, 0);
    kd_session s = {0};
    int rc = kd_front_end(&s, file, model);
    if (rc == 0) {
        co.arena = &s.arena;
        rc = !strcmp(stage, "opt") ? kd_dump_opt(stdout, s.model, &co, &s.diags)
                                   : kd_dump_loops(stdout, s.model, &co, &s.diags);
    }
    kd_session_free(&s);
    return rc;
}

/* Whether `kdslc ir` is asked for a code-generation stage (opt, loops). */
static bool codegen_stage(int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        const char *v = !strncmp(argv[i], "--stage=", 8) ? argv[i] + 8
                        : !strcmp(argv[i], "--stage") && i + 1 < argc ? argv[i + 1] : NULL;
        if (v && (!strcmp(v, "opt") || !strcmp(v, "loops"))) return true;
    }
    return false;
}

/* ---- training, evaluation, prediction (run.h) ------------------------------------------- */

enum { RUN_TRAIN = 1, RUN_EVALUATE = 2, RUN_PREDICT = 4, RUN_ALL = 7 };

/* A flag of train / evaluate / predict: its kind ('s' string, 'i' int, 'I' int64,
 * 'r' real, 'b' switch, 'n' --normalize), where it goes, and which commands take it. */
typedef struct run_flag {
    const char *name;
    char kind;
    size_t offset;
    int commands;
    long long lo, hi;      /* 'i' / 'I' bounds */
} run_flag;

#define RF(name, kind, field, cmds, lo, hi) {name, kind, offsetof(kd_run_options, field), cmds, lo, hi}
static const run_flag run_flags[] = {
    RF("--model", 's', model, RUN_ALL, 0, 0),
    RF("--data", 's', data, RUN_TRAIN | RUN_EVALUATE, 0, 0),
    RF("--weights", 's', weights, RUN_ALL, 0, 0),
    RF("--batch-size", 'i', batch_size, RUN_ALL, 1, KDH_MAX_BATCH_SIZE),   /* a checkpoint's too */
    RF("--threads", 'i', threads, RUN_ALL, 1, 4096),
    RF("--normalize", 'n', normalize, RUN_ALL, 0, 0),
    RF("--loss", 's', loss, RUN_TRAIN | RUN_EVALUATE, 0, 0),
    RF("--from-logits", 'b', from_logits, RUN_TRAIN | RUN_EVALUATE, 0, 0),
    RF("--optimizer", 's', optimizer, RUN_TRAIN, 0, 0),
    RF("--epochs", 'i', epochs, RUN_TRAIN, 0, KDH_MAX_EPOCHS),
    RF("--learning-rate", 'r', learning_rate, RUN_TRAIN, 0, 0),
    RF("--validation-split", 'r', validation_split, RUN_TRAIN, 0, 0),
    RF("--seed", 'I', seed, RUN_TRAIN, 0, 0x7fffffffffffffffLL),
    RF("--save", 's', save, RUN_TRAIN, 0, 0),
    RF("--checkpoint", 's', checkpoint, RUN_TRAIN, 0, 0),
    RF("--resume", 's', resume, RUN_TRAIN, 0, 0),
    RF("--history", 's', history, RUN_TRAIN, 0, 0),
    RF("--input", 's', input, RUN_PREDICT, 0, 0),
    RF("-o", 's', output, RUN_PREDICT, 0, 0),
    RF("--output", 's', output, RUN_PREDICT, 0, 0),
};
#define NRUN_FLAGS ((int)(sizeof run_flags / sizeof run_flags[0]))

static int bad_value(const char *flag, const char *want, const char *value)
{
    fprintf(stderr, "kdslc: error: option '%s' wants %s, not '%s'\n(run 'kdslc --help' for usage)\n", flag, want, value);
    return 2;
}

static int set_run_flag(const run_flag *f, const char *v, kd_run_options *o)
{
    char *at = (char *)o + f->offset, *end;
    errno = 0;
    switch (f->kind) {
    case 's':
        if (!*v) return bad_value(f->name, "a value", v);
        *(const char **)(void *)at = v;
        return 0;
    case 'i':
    case 'I': {
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end || x < f->lo || x > f->hi) {
            char want[96];
            snprintf(want, sizeof want, "a whole number from %lld to %lld", f->lo, f->hi);
            return bad_value(f->name, want, v);
        }
        if (f->kind == 'i') *(int *)(void *)at = (int)x;
        else *(int64_t *)(void *)at = x;
        return 0;
    }
    case 'r': {
        double x = strtod(v, &end);
        bool split = !strcmp(f->name, "--validation-split");
        if (errno || end == v || *end || !isfinite(x) || (split ? !(x >= 0 && x < 1) : !(x > 0)))
            return bad_value(f->name, split ? "a fraction in [0, 1)" : "a positive number", v);
        *(double *)(void *)at = x;
        return 0;
    }
    case 'n':
        if (!strcmp(v, "auto")) o->normalize = KDH_NORM_AUTO;
        else if (!strcmp(v, "none")) o->normalize = KDH_NORM_NONE;
        else if (!strcmp(v, "255")) o->normalize = KDH_NORM_255;
        else return bad_value(f->name, "auto, none or 255", v);
        return 0;
    }
    return 2;
}

static int parse_run_options(int argc, char **argv, int command, kd_run_options *o)
{
    kd_run_options_init(o);
    const char *names[NRUN_FLAGS];
    for (int k = 0; k < NRUN_FLAGS; k++) names[k] = run_flags[k].name;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1]) {
            if (o->file) return bad_usage("unexpected argument '%s'", a, NULL, 0);
            o->file = a;
            continue;
        }
        char name[64];
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        snprintf(name, sizeof name, "%.*s", (int)(len < sizeof name ? len : sizeof name - 1), a);
        const run_flag *f = NULL;
        for (int k = 0; k < NRUN_FLAGS; k++)
            if (!strcmp(name, run_flags[k].name)) f = &run_flags[k];
        if (!f) return bad_usage("unknown option '%s'", name, names, NRUN_FLAGS);
        if (!(f->commands & command)) {
            fprintf(stderr, "kdslc: error: option '%s' does not apply to `kdslc %s`\n(run 'kdslc --help' for usage)\n",
                    name, argv[1]);
            return 2;
        }
        if (f->kind == 'b') {
            if (eq) return bad_usage("option '%s' takes no value", name, NULL, 0);
            *(bool *)(void *)((char *)o + f->offset) = true;
            continue;
        }
        const char *v = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
        if (!v) return bad_usage("option '%s' needs a value", name, NULL, 0);
        int rc = set_run_flag(f, v, o);
        if (rc) return rc;
    }
    if (!o->file) return bad_usage("'%s' needs a model file", argv[1], NULL, 0);
    return 0;
}

/* kdslc train FILE [options] */
static int cmd_train(int argc, char **argv)
{
    kd_run_options o;
    int rc = parse_run_options(argc, argv, RUN_TRAIN, &o);
    return rc ? rc : kd_run_train(&o);
}

/* kdslc evaluate FILE --weights W [--data ...] */
static int cmd_evaluate(int argc, char **argv)
{
    kd_run_options o;
    int rc = parse_run_options(argc, argv, RUN_EVALUATE, &o);
    return rc ? rc : kd_run_evaluate(&o);
}

/* kdslc predict FILE --weights W --input X.npy[,...] [-o Y.npy[,...]] */
static int cmd_predict(int argc, char **argv)
{
    kd_run_options o;
    int rc = parse_run_options(argc, argv, RUN_PREDICT, &o);
    return rc ? rc : kd_run_predict(&o);
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
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        puts("kdslc 0.1.0");
        return 0;
    }
    options o;
    int rc;
    if (!strcmp(argv[1], "summary")) {
        if ((rc = parse_options(argc, argv, &o))) return rc;
        return cmd_summary(&o);
    }
    if (!strcmp(argv[1], "compile")) return cmd_compile(argc, argv);
    if (!strcmp(argv[1], "train")) return cmd_train(argc, argv);
    if (!strcmp(argv[1], "evaluate")) return cmd_evaluate(argc, argv);
    if (!strcmp(argv[1], "predict")) return cmd_predict(argc, argv);
    if (!strcmp(argv[1], "ir") && codegen_stage(argc, argv)) return cmd_ir_codegen(argc, argv);
    if (!strcmp(argv[1], "ir")) {
        if ((rc = parse_options(argc, argv, &o))) return rc;
        return cmd_ir(&o);
    }
    return bad_usage("unknown command '%s'", argv[1], commands, 6);
}
