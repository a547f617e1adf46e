/* codegen_cli.c — the code generator's output files for `kdslc compile`
 * (its flags are in flags.c's table). */
#include "codegen_cli.h"

#include "quantize.h"

#include "host/tensor_file.h"

#include <stdlib.h>
#include <string.h>

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

/* Writes what emit(ctx, header name, c, h) prints to c_path and its header, both or neither. */
static int write_pair(int (*emit)(const void *ctx, const char *header_name, FILE *c, FILE *h, kd_diags *d),
                      const void *ctx, const char *c_path, kd_diags *d)
{
    char *h_path = kd_codegen_header_path(c_path);
    if (!h_path) return 1;
    text c = {.path = c_path}, h = {.path = h_path};
    FILE *cf = open_memstream(&c.data, &c.len), *hf = open_memstream(&h.data, &h.len);
    int rc = 1;
    if (cf && hf) rc = emit(ctx, base_name(h_path), cf, hf, d);
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

typedef struct fp_program {
    const lp_program *p;
    const kd_codegen_options *o;
} fp_program;

static int emit_fp(const void *ctx, const char *header_name, FILE *c, FILE *h, kd_diags *d)
{
    const fp_program *f = ctx;
    kd_codegen_options opt = f->o ? *f->o : (kd_codegen_options){0};
    opt.header_name = header_name;
    return kd_emit_c(f->p, &opt, c, h, d);
}

int kd_codegen_write(const lp_program *p, const kd_codegen_options *o, const char *c_path, kd_diags *d)
{
    fp_program f = {p, o};
    return write_pair(emit_fp, &f, c_path, d);
}

static int emit_int8(const void *ctx, const char *header_name, FILE *c, FILE *h, kd_diags *d)
{
    return kq_emit_c(ctx, header_name, c, h, d);
}

int kd_codegen_write_int8(const kq_model *m, const char *c_path, kd_diags *d)
{
    return write_pair(emit_int8, m, c_path, d);
}
