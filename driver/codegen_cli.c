/* codegen_cli.c — the code generator's command-line options and output files,
 * so that main.c only dispatches. */
#include "codegen_cli.h"

#include "host/tensor_file.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* "kdslc: error: WHAT 'ARG'" */
static int bad(const char *what, const char *arg)
{
    fprintf(stderr, "kdslc: error: %s '%s'\n(run 'kdslc --help' for usage)\n", what, arg);
    return -1;
}

/* The value of `--name V` or `--name=V` at argv[*i], or NULL if argv[*i] is not that option. */
static const char *value_of(int argc, char **argv, int *i, const char *name, bool *missing)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0) return NULL;
    if (a[n] == '=') return a + n + 1;
    if (a[n] != 0) return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

int kd_codegen_parse_option(int argc, char **argv, int *i, kd_codegen_options *o)
{
    const char *a = argv[*i], *v;
    bool missing = false;
    if (!strcmp(a, "--inference-only")) {
        o->inference_only = true;
        return 1;
    }
    if (!strcmp(a, "--no-workspace")) {
        o->no_workspace = true;
        return 1;
    }
    /* the optimisations one by one (debugging; tests/difftest turns each off) */
    const struct { const char *flag; bool *on; } offs[] = {
        {"--no-passes", &o->no_passes},           {"--no-simplify", &o->passes.no_simplify},
        {"--no-cse", &o->passes.no_cse},          {"--no-fuse", &o->passes.no_fuse},
        {"--no-loop-fusion", &o->no_loop_fusion}, {"--no-inplace", &o->no_inplace},
        {"--disjoint-arena", &o->disjoint_arena},
    };
    for (size_t k = 0; k < sizeof offs / sizeof offs[0]; k++)
        if (!strcmp(a, offs[k].flag)) {
            *offs[k].on = true;
            return 1;
        }
    if ((v = value_of(argc, argv, i, "--batch", &missing))) {
        char *end;
        errno = 0;
        long b = strtol(v, &end, 10);
        if (errno || *end || end == v || b < 1 || b > 1 << 20)
            return bad("--batch wants a whole number from 1 to 1048576, not", v);
        o->batch = (int)b;
        return 1;
    }
    if ((v = value_of(argc, argv, i, "--dtype", &missing))) {
        if (!strcmp(v, "f32") || !strcmp(v, "float32")) o->f64 = false;
        else if (!strcmp(v, "f64") || !strcmp(v, "float64")) o->f64 = true;
        else return bad("--dtype is f32 or f64, not", v);
        return 1;
    }
    if ((v = value_of(argc, argv, i, "--target", &missing))) {
        const char *t = kd_resolve_target(v);
        if (!t)
            return bad(!strcmp(v, "native") ? "--target native: kdslc knows no instruction-set level for this host; "
                                              "use portable, not"
                                            : "--target is portable, native, x86-64, x86-64-v2, x86-64-v3 or x86-64-v4, not",
                       v);
        o->target = *t ? t : NULL;
        return 1;
    }
    if ((v = value_of(argc, argv, i, "--embed-weights", &missing))) {
        o->embed_weights = v;
        return 1;
    }
    if (missing) return bad("a value is missing after", a);
    return 0;
}

/* ---- files -------------------------------------------------------------------------------- */

typedef struct text {
    char *data;
    size_t len;
    const char *path;
} text;

static int write_text(FILE *f, void *ctx, kdh_error *err)
{
    const text *t = ctx;
    return kdh_fwrite_all(f, t->data, t->len, t->path, err);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

char *kd_codegen_header_path(const char *c_path)
{
    size_t n = strlen(c_path);
    char *h_path = malloc(n + 3);
    if (!h_path) return NULL;
    memcpy(h_path, c_path, n + 1);
    if (n > 2 && !strcmp(c_path + n - 2, ".c")) h_path[n - 1] = 'h';
    else strcat(h_path, ".h");
    return h_path;
}

int kd_codegen_write(const lp_program *p, const kd_codegen_options *o, const char *c_path, kd_diags *d)
{
    char *h_path = kd_codegen_header_path(c_path);
    if (!h_path) return 1;
    text c = {.path = c_path}, h = {.path = h_path};
    FILE *cf = open_memstream(&c.data, &c.len), *hf = open_memstream(&h.data, &h.len);
    kd_codegen_options opt = o ? *o : (kd_codegen_options){0};
    opt.header_name = base_name(h_path);
    int rc = 1;
    if (cf && hf) rc = kd_emit_c(p, &opt, cf, hf, d);
    if (cf) fclose(cf);
    if (hf) fclose(hf);
    if (rc == 0) {
        /* both or neither: a model.c never sits beside another run's model.h */
        kdh_error err;
        kdh_atomic_out outs[2] = {{c_path, write_text, &c}, {h_path, write_text, &h}};
        if (kdh_atomic_write_set(outs, 2, &err) != 0) {
            kd_error(d, (kd_loc){0}, "%s", err.msg);
            rc = 1;
        }
    }
    free(c.data);
    free(h.data);
    free(h_path);
    return rc;
}
