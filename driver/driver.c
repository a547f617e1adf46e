/* driver.c — kdsl's pipeline, every stage in order (kd_pipeline), and the
 * session that carries one compilation's memory and results. */
#include "driver.h"

#include "train_graph.h"

#include <errno.h>
#include <string.h>

const char *const kd_stage_names[KD_STAGE_COUNT] = {
    [KD_STAGE_AST] = "ast", [KD_STAGE_GRAPH] = "graph", [KD_STAGE_INFER] = "infer", [KD_STAGE_GRAD] = "grad",
    [KD_STAGE_LAYOUT] = "layout", [KD_STAGE_OPT] = "opt", [KD_STAGE_LOOPS] = "loops",
};

/* ---- what `kdslc ir --stage` prints after each stage ------------------------------------------------------- */

/* The gradient graph as autodiff builds it: loss, first output, then every
 * trainable weight's gradient, before the passes. A model whose C API has no
 * training code (several outputs) still has one. */
static int dump_grad(FILE *out, kd_session *s)
{
    if (s->graphs.g[LP_F_GRAD]) {
        ir_dump(out, s->graphs.g[LP_F_GRAD]);
        return 0;
    }
    kd_train_graph tg;
    char why[512];
    if (!kd_build_grad_graph(&s->arena, s->model, &tg, why, sizeof why)) {
        kd_error(&s->diags, (kd_loc){0}, "--stage grad: %s", why);
        return 1;
    }
    ir_dump(out, tg.g);
    return 0;
}

static int dump_layout(FILE *out, const lp_program *p)
{
    static const char *const kinds[] = {"weight", "state", "slot"};
    fprintf(out, "# params %lld, opt_state %lld, grads %lld (elements)\n", (long long)p->params_size,
            (long long)p->opt_size, (long long)p->grads_size);
    const kd_vec *lists[2] = {&p->params, &p->slots};
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < lists[l]->len; i++) {
            const lp_tensor_info *t = lists[l]->items[i];
            char shape[128] = "[";
            for (int d = 0; d < t->rank; d++)
                snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", d ? ", " : "",
                         (long long)t->shape[d]);
            strcat(shape, "]");
            fprintf(out, "%-40s %-6s %-16s %s %lld", t->name, kinds[t->kind], shape, l ? "opt_state" : "params",
                    (long long)t->offset);
            if (t->grad_offset >= 0) fprintf(out, "  grads %lld", (long long)t->grad_offset);
            fprintf(out, "\n");
        }
    return 0;
}

static int dump_opt(FILE *out, const lp_program *p, const kd_graphs *G)
{
    for (int f = LP_F_PREDICT; f < LP_F_COUNT; f++) {
        if (!G->g[f]) continue;
        fprintf(out, "# %s_%s\n", p->name, lp_func_names[f]);
        ir_dump(out, G->g[f]);
    }
    return 0;
}

static int dump(FILE *out, kd_session *s, kd_stage stage)
{
    switch (stage) {
    case KD_STAGE_AST: ast_dump(out, s->ast); return 0;
    case KD_STAGE_GRAPH: ir_dump(out, s->model->train); return 0;
    case KD_STAGE_INFER: ir_dump(out, s->model->infer); return 0;
    case KD_STAGE_GRAD: return dump_grad(out, s);
    case KD_STAGE_LAYOUT: return dump_layout(out, s->prog);
    case KD_STAGE_OPT: return dump_opt(out, s->prog, &s->graphs);
    case KD_STAGE_LOOPS: kd_loops_dump(out, s->prog); return 0;
    case KD_STAGE_COUNT: break;
    }
    return 1;
}

/* ---- the pipeline -------------------------------------------------------------------------------------------- */

int kd_pipeline(kd_session *s, const kd_codegen_options *o, kd_stage first, kd_stage last, FILE *out)
{
    kd_codegen_options none = {0};
    if (!o) o = &none;
    kd_diags *d = &s->diags;
    if (!d->out) d->out = stderr;
    kd_graphs *G = &s->graphs;
    bool ok = true;
#define RUN(stage) (ok && first <= (stage) && (stage) <= last)
#define DONE(stage) \
    if (!ok || d->errors) return 1; \
    if ((stage) == last) return out ? dump(out, s, stage) : 0

    if (RUN(KD_STAGE_AST)) ok = (s->ast = kd_parse(&s->arena, &s->src, d)) != NULL;
    DONE(KD_STAGE_AST);
    if (RUN(KD_STAGE_GRAPH)) ok = (s->program = kd_check(&s->arena, s->ast, d, s->model_name)) != NULL &&
                                  (s->model = kd_find_model(s->program, s->model_name)) != NULL;
    if (!ok && !d->errors)
        kd_error(d, (kd_loc){0}, "no model named '%s' in %s", s->model_name ? s->model_name : "?", s->src.path);
    DONE(KD_STAGE_GRAPH);
    DONE(KD_STAGE_INFER);
    if (RUN(KD_STAGE_GRAD)) {
        *G = (kd_graphs){0};
        ok = (s->prog = kd_codegen_program(&s->arena, s->model, o, d)) != NULL &&
             kd_codegen_differentiate(s->prog, s->model, o, G, d);
    }
    DONE(KD_STAGE_GRAD);
    if (RUN(KD_STAGE_LAYOUT)) {
        kd_codegen_layout(s->prog, s->model);
        if (o->embed_weights) ok = kd_codegen_embed(s->prog, o->embed_weights, d);
    }
    DONE(KD_STAGE_LAYOUT);
    if (RUN(KD_STAGE_OPT)) ok = kd_codegen_optimize(s->prog, o, G, d);
    DONE(KD_STAGE_OPT);
    if (RUN(KD_STAGE_LOOPS)) ok = kd_codegen_lower(s->prog, G, o, d);
    DONE(KD_STAGE_LOOPS);
#undef RUN
#undef DONE
    return 0;
}

lp_program *kd_back_end(kd_session *s, const kd_codegen_options *o)
{
    s->prog = NULL;
    return kd_pipeline(s, o, KD_STAGE_GRAD, KD_STAGE_LOOPS, NULL) == 0 ? s->prog : NULL;
}

/* ---- the session ------------------------------------------------------------------------------------------- */

int kd_front_end_text(kd_session *s, const char *path, const char *text, size_t len, const char *name)
{
    s->src.path = path;
    s->src.text = text;
    s->src.len = len;
    s->model_name = name;
    return kd_pipeline(s, NULL, KD_STAGE_AST, KD_STAGE_INFER, NULL);
}

int kd_load_source(kd_session *s, const char *path)
{
    size_t len = 0;
    if (!s->diags.out) s->diags.out = stderr;
    char *text = kd_read_file(&s->arena, path, KD_MAX_SOURCE_BYTES, &len);
    if (!text) {
        kd_error(&s->diags, (kd_loc){0}, "cannot read %s: %s", path,
                 errno == EFBIG    ? "file is larger than 64 MiB"
                 : errno == EINVAL ? "not a regular file (a FIFO, device or socket)"
                                   : strerror(errno));
        return 1;
    }
    s->src = (kd_source){.path = path, .text = text, .len = len};
    return 0;
}

int kd_front_end(kd_session *s, const char *path, const char *name)
{
    if (kd_load_source(s, path)) return 1;
    s->model_name = name;
    return kd_pipeline(s, NULL, KD_STAGE_AST, KD_STAGE_INFER, NULL);
}

void kd_session_free(kd_session *s)
{
    kd_arena_free(&s->arena);
    memset(s, 0, sizeof *s);
}
