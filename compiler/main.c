/* main.c — kdslc, the command line: one function per command, each a walk
 * down the pipeline in driver.c. */
#include "driver.h"

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
          "  ir FILE --stage ast|graph [--model NAME]  dump a stage of the compiler\n"
          "\n"
          "  kdslc --help      this text\n"
          "  kdslc --version   the version\n",
          out);
}

static const char *const commands[] = {"summary", "ir"};
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
    static const char *const stages[] = {"ast", "graph", "infer"};
    const char *stage = o->stage ? o->stage : "graph";
    int which = -1;
    for (int i = 0; i < 3; i++)
        if (!strcmp(stage, stages[i])) which = i;
    if (which < 0) return bad_usage("unknown stage '%s' (ast, graph, infer)", stage, stages, 3);
    kd_session s = {0};
    int rc = kd_front_end(&s, o->file, o->model);
    if (which == 0 && s.ast && rc == 0) ast_dump(stdout, s.ast);
    else if (which == 1 && rc == 0) ir_dump(stdout, s.model->train);
    else if (which == 2 && rc == 0) ir_dump(stdout, s.model->infer);
    kd_session_free(&s);
    return rc;
}

int main(int argc, char **argv)
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
    if (!strcmp(argv[1], "ir")) {
        if ((rc = parse_options(argc, argv, &o))) return rc;
        return cmd_ir(&o);
    }
    return bad_usage("unknown command '%s'", argv[1], commands, 2);
}
