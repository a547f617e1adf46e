/* codegen.c — the code generator's stages, which driver.c's kd_pipeline
 * calls in order: the program's interface, the graphs it compiles, the
 * buffer layouts (params, opt_state, grads), embedded weights, the passes,
 * and lowering (init and every graph to the loop IR, with arena offsets).
 *
 *   predict          m->infer                      outputs -> outputs[i]
 *   grad             kd_build_grad_graph            loss returned, d weight -> grads
 *   train_step       kd_build_train_step            loss returned, output 0 -> outputs0
 *   apply_gradients  the train step's optimizer updates, cut at the gradients,
 *                    which become reads of the grads buffer */
#include "codegen.h"

#include "passes.h"
#include "host/tensor_file.h"
#include "train_graph.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- layouts ------------------------------------------------------------------------ */

/* Keras' fans: [in, out]; conv kernels [kh, kw, in, out] with receptive field kh * kw. */
static void fans(const ir_shape *s, double *fan_in, double *fan_out)
{
    if (s->rank < 1) {
        *fan_in = *fan_out = 1;
    } else if (s->rank == 1) {
        *fan_in = *fan_out = (double)s->dims[0];
    } else {
        double rf = 1;
        for (int i = 0; i < s->rank - 2; i++) rf *= (double)s->dims[i];
        *fan_in = (double)s->dims[s->rank - 2] * rf;
        *fan_out = (double)s->dims[s->rank - 1] * rf;
    }
}

static lp_tensor_info *tensor_info(kd_arena *a, const kd_var *v)
{
    lp_tensor_info *t = kd_alloc(a, sizeof *t);
    t->name = v->name;
    t->var = v->index;
    t->offset = v->offset;
    t->elems = ir_shape_elems(&v->shape);
    t->rank = v->shape.rank;
    for (int i = 0; i < v->shape.rank; i++) t->shape[i] = v->shape.dims[i];
    t->kind = v->kind == VAR_WEIGHT ? 0 : v->kind == VAR_STATE ? 1 : 2;
    t->trainable = v->kind == VAR_WEIGHT && v->trainable;
    t->grad_offset = -1;
    t->init_kind = v->init.kind;
    t->init_a = v->init.a;
    t->init_b = v->init.b;
    t->init_ones_at = v->init.ones_at;
    t->init_ones = v->init.ones;
    return t;
}

/* Weights and states in params, in variable order; slots as train_graph.c placed them. */
void kd_codegen_layout(lp_program *p, kd_model *m)
{
    kd_arena *a = p->arena;
    p->nvars = m->vars.len;
    p->vars = (const kd_var *const *)m->vars.items;
    p->grad_offset = kd_alloc_array(a, (size_t)(p->nvars + 1), sizeof *p->grad_offset);
    int64_t at = 0, gat = 0;
    for (int i = 0; i < m->vars.len; i++) {
        kd_var *v = m->vars.items[i];
        int64_t n = ir_shape_elems(&v->shape);
        p->grad_offset[i] = -1;
        if (v->kind == VAR_SLOT) {
            if (v->offset + n > p->opt_size) p->opt_size = v->offset + n;
            continue;
        }
        v->offset = at;
        at += n;
        if (v->kind == VAR_WEIGHT && v->trainable) {
            p->grad_offset[i] = gat;
            gat += n;
        }
    }
    p->params_size = p->prepared_size = at;   /* prepare's packed weights come after the params */
    p->grads_size = gat;
    for (int i = 0; i < m->vars.len; i++) {
        const kd_var *v = m->vars.items[i];
        lp_tensor_info *t = tensor_info(a, v);
        t->grad_offset = p->grad_offset[i];
        kd_vec_push(a, v->kind == VAR_SLOT ? &p->slots : &p->params, t);
    }
}

static void io_of(lp_io *io, const char *name, const ir_shape *s)
{
    io->name = name;
    io->rank = s->batched ? s->rank - 1 : s->rank;
    for (int i = 0; i < io->rank; i++) io->shape[i] = s->dims[i + (s->batched ? 1 : 0)];
    io->elems = ir_shape_elems(s);
}

/* ---- init --------------------------------------------------------------------------- */

static const char *init_name(int kind)
{
    static const char *const names[] = {
        [INIT_ZEROS] = "zeros", [INIT_ONES] = "ones", [INIT_CONSTANT] = "constant",
        [INIT_GLOROT_UNIFORM] = "glorot_uniform", [INIT_GLOROT_NORMAL] = "glorot_normal",
        [INIT_HE_UNIFORM] = "he_uniform", [INIT_HE_NORMAL] = "he_normal",
        [INIT_LECUN_UNIFORM] = "lecun_uniform", [INIT_LECUN_NORMAL] = "lecun_normal",
        [INIT_RANDOM_UNIFORM] = "random_uniform", [INIT_RANDOM_NORMAL] = "random_normal",
        [INIT_ORTHOGONAL] = "orthogonal",
    };
    return kind >= 0 && kind <= INIT_ORTHOGONAL ? names[kind] : "?";
}

static void init_var(lp_program *p, lp_func *f, const lp_tensor_info *t)
{
    kd_arena *a = p->arena;
    const kd_var *v = p->vars[t->var];
    lp_buf *b = lp_new_buf(a, f, t->kind == 2 ? LP_OPT : LP_PARAMS, kd_format(a, "v%d", t->var));
    b->var = t->var;
    b->offset = t->offset;
    b->elems = t->elems;
    b->note = t->name;
    lp_kernel *k = lp_new_kernel(a, f, kd_format(a, "%s %s", t->name, init_name(t->init_kind)), (kd_loc){0}, NULL);
    lp_call *c = kd_alloc(a, sizeof *c);
    c->args[0].buf = b;
    c->args[1].e = lp_int(a, t->elems);
    double fi, fo, s = 0;
    fans(&v->shape, &fi, &fo);
    const double trunc = .87962566103423978;   /* the stddev of a unit normal cut at +-2 */
    bool uniform = false, normal = false, truncated = true;
    double lo = 0, hi = 0, mean = 0, sd = 0, fill = 0;
    switch ((kd_init_kind)t->init_kind) {
    case INIT_ZEROS: fill = 0; break;
    case INIT_ONES: fill = 1; break;
    case INIT_CONSTANT: fill = t->init_a; break;
    case INIT_GLOROT_UNIFORM: s = sqrt(6 / (fi + fo)); uniform = true; break;
    case INIT_HE_UNIFORM: s = sqrt(6 / fi); uniform = true; break;
    case INIT_LECUN_UNIFORM: s = sqrt(3 / fi); uniform = true; break;
    case INIT_GLOROT_NORMAL: sd = sqrt(2 / (fi + fo)) / trunc; normal = true; break;
    case INIT_HE_NORMAL: sd = sqrt(2 / fi) / trunc; normal = true; break;
    case INIT_LECUN_NORMAL: sd = sqrt(1 / fi) / trunc; normal = true; break;
    case INIT_RANDOM_UNIFORM: lo = t->init_a; hi = t->init_b; uniform = true; break;
    case INIT_RANDOM_NORMAL: mean = t->init_a; sd = t->init_b; normal = true; truncated = false; break;
    case INIT_ORTHOGONAL: break;   /* its own kernel, below */
    }
    if (uniform && s > 0) {
        lo = -s;
        hi = s;
    }
    if (t->init_kind == INIT_ORTHOGONAL) {
        /* Keras flattens all but the last axis: [prod(shape[:-1]), shape[-1]] */
        int64_t cols = t->rank ? t->shape[t->rank - 1] : 1;
        c->k = LP_K_INIT_ORTHOGONAL;
        c->args[1].e = lp_int(a, cols ? t->elems / cols : 0);
        c->args[2].e = lp_int(a, cols);
        c->args[3].e = lp_param_ref(a, LP_P_SEED);
        c->args[4].e = lp_int(a, t->var);
        c->args[5].e = lp_real(a, t->init_a);
    } else if (uniform) {
        c->k = LP_K_INIT_UNIFORM;
        c->args[2].e = lp_param_ref(a, LP_P_SEED);
        c->args[3].e = lp_int(a, t->var);
        c->args[4].e = lp_real(a, lo);
        c->args[5].e = lp_real(a, hi);
    } else if (normal) {
        c->k = LP_K_INIT_NORMAL;
        c->args[2].e = lp_param_ref(a, LP_P_SEED);
        c->args[3].e = lp_int(a, t->var);
        c->args[4].e = lp_real(a, mean);
        c->args[5].e = lp_real(a, sd);
        c->args[6].e = lp_int(a, truncated);
    } else {
        c->k = LP_K_INIT_FILL;
        c->args[2].e = lp_real(a, fill);
    }
    lp_stmt *s_call = lp_call_stmt(a, c);
    if (t->init_ones > 0) {   /* then ones in a part (LSTM's forget gate bias) */
        kd_vec_push(a, &k->body, s_call);
        lp_call *o = kd_alloc(a, sizeof *o);
        o->k = LP_K_INIT_FILL;
        o->args[0].buf = b;
        o->args[0].off = lp_int(a, t->init_ones_at);
        o->args[1].e = lp_int(a, t->init_ones);
        o->args[2].e = lp_real(a, 1);
        s_call = lp_call_stmt(a, o);
    }
    if (t->kind == 2) {
        lp_stmt *guard = lp_if(a, NULL, b);       /* opt_state may be NULL */
        kd_vec_push(a, &guard->body, s_call);
        kd_vec_push(a, &k->body, guard);
    } else {
        kd_vec_push(a, &k->body, s_call);
    }
}

static lp_func *build_init(lp_program *p)
{
    lp_func *f = lp_func_new(p->arena, LP_F_INIT);
    for (int i = 0; i < p->params.len; i++) init_var(p, f, p->params.items[i]);
    for (int i = 0; i < p->slots.len; i++) init_var(p, f, p->slots.items[i]);
    kd_arena_plan(p, f);   /* liveness only: init has no temporaries */
    return f;
}

/* ---- graphs --------------------------------------------------------------------------- */

typedef struct cut {
    int *grad_of;          /* node id -> weight index whose gradient it is, or -1 */
    int nvars;
} cut;

static ir_node *cut_visit(kd_rewrite *rw, ir_node *old, ir_node **in)
{
    cut *c = rw->ctx;
    int v = c->grad_of[old->id];
    if (v >= 0) return ir_leaf(&rw->b, IR_VAR, old->shape, NULL, c->nvars + v);
    return kd_rw_copy(rw, old, in);
}

/* The optimizer's updates of the train step, reading the gradients from grads. */
static ir_graph *apply_graph(kd_arena *a, kd_model *m, const kd_train_graph *ts, char *why, size_t n)
{
    int nvars = m->vars.len;
    kd_vec *xvars = kd_alloc(a, sizeof *xvars);
    for (int i = 0; i < nvars; i++) kd_vec_push(a, xvars, m->vars.items[i]);
    for (int i = 0; i < nvars; i++) {
        kd_var *g = kd_alloc(a, sizeof *g);
        *g = *(kd_var *)m->vars.items[i];
        g->index = nvars + i;
        g->name = kd_format(a, "%s/grad", g->name);
        kd_vec_push(a, xvars, g);
    }
    ir_graph src = *ts->g;
    src.vars = xvars;
    src.outputs = (kd_vec){0};
    src.updates = (kd_vec){0};
    for (int i = 0; i < ts->g->updates.len; i++) {
        ir_update *u = ts->g->updates.items[i];
        const kd_var *v = m->vars.items[u->var];
        if (v->kind != VAR_STATE) kd_vec_push(a, &src.updates, u);
    }
    cut c = {kd_alloc_array(a, (size_t)ts->g->nodes.len + 1, sizeof(int)), nvars};
    for (int i = 0; i < ts->g->nodes.len; i++) c.grad_of[i] = -1;
    for (int v = 0; v < nvars; v++) {
        const kd_var *w = m->vars.items[v];      /* ts->grads covers the weights, not the slots */
        if (w->kind == VAR_WEIGHT && w->trainable && ts->grads[v]) c.grad_of[ts->grads[v]->id] = v;
    }
    return kd_rewrite_graph(&src, cut_visit, &c, why, n);
}

static kd_dest *dests(kd_arena *a, int n)
{
    return kd_alloc_array(a, (size_t)(n > 0 ? n : 1), sizeof(kd_dest));
}

bool kd_codegen_differentiate(lp_program *p, kd_model *m, const kd_codegen_options *o, kd_graphs *G, kd_diags *d)
{
    kd_arena *a = p->arena;
    char why[512];
    G->g[LP_F_PREDICT] = m->infer;
    G->dests[LP_F_PREDICT] = dests(a, m->infer->outputs.len);
    for (int i = 0; i < m->infer->outputs.len; i++) G->dests[LP_F_PREDICT][i] = (kd_dest){KD_DEST_OUTPUT, i};
    /* Predict over weights folded when compiling (embedded) or by prepare at
     * run time: the same graph, its BatchNormalizations folded into the
     * layers before them. */
    ir_graph *folded = m->infer;
    if ((o->embed_weights || o->prepare) && !o->no_passes && !o->passes.no_fold_batchnorm) {
        folded = kd_pass_fold_batchnorm(m->infer, &p->folds, &p->nfolds, why, sizeof why);
        if (!folded) {
            kd_error(d, (kd_loc){0}, "folding BatchNormalization: %s", why);
            return false;
        }
    }
    if (o->embed_weights && p->nfolds) G->g[LP_F_PREDICT_FOLDED] = folded;
    if (o->prepare) G->g[LP_F_PREDICT_PREPARED] = p->nfolds ? folded : m->infer;
    G->dests[LP_F_PREDICT_FOLDED] = G->dests[LP_F_PREDICT_PREPARED] = G->dests[LP_F_PREDICT];
    bool train = !o->inference_only && m->config.present && m->config.loss.kind != LOSS_NONE &&
                 m->config.optimizer != OPT_NONE;
    if (!train) return true;

    kd_train_graph ts, gg;
    if (!kd_build_train_step(a, m, &ts, why, sizeof why) || !kd_build_grad_graph(a, m, &gg, why, sizeof why)) {
        kd_error(d, m->config.loc, "cannot build the training step: %s", why);
        return false;
    }
    if (ts.nlabels != 1) {
        kd_warning(d, m->config.loc, "training code for a model with %d outputs is not supported yet "
                   "(the generated API takes one label tensor); writing init and predict only", ts.nlabels);
        return true;
    }
    p->nlabels = 1;
    io_of(&p->labels[0], "label", &ts.labels[0]->shape);

    int ngrads = 0;       /* ts.grads covers the variables made before the optimizer's slots */
    while (ngrads < m->vars.len && ((kd_var *)m->vars.items[ngrads])->kind != VAR_SLOT) ngrads++;
    G->g[LP_F_TRAIN_STEP] = o->no_passes ? ts.g : kd_pass_schedule(ts.g, ngrads, ts.grads, why, sizeof why);
    if (!G->g[LP_F_TRAIN_STEP]) {
        kd_error(d, m->config.loc, "cannot schedule the training step: %s", why);
        return false;
    }
    G->dests[LP_F_TRAIN_STEP] = dests(a, ts.g->outputs.len);
    G->dests[LP_F_TRAIN_STEP][0] = (kd_dest){KD_DEST_RETURN, 0};
    G->dests[LP_F_TRAIN_STEP][1] = (kd_dest){KD_DEST_OUTPUT_OPT, 0};

    G->g[LP_F_GRAD] = gg.g;
    G->dests[LP_F_GRAD] = dests(a, gg.g->outputs.len);
    G->dests[LP_F_GRAD][0] = (kd_dest){KD_DEST_RETURN, 0};
    for (int i = 0, at = 2; i < m->vars.len; i++) {
        const kd_var *v = m->vars.items[i];
        if (v->kind == VAR_WEIGHT && v->trainable && at < gg.g->outputs.len)
            G->dests[LP_F_GRAD][at++] = (kd_dest){KD_DEST_GRAD, i};
    }

    G->g[LP_F_APPLY] = apply_graph(a, m, &ts, why, sizeof why);
    if (!G->g[LP_F_APPLY]) {
        kd_error(d, m->config.loc, "cannot build apply_gradients: %s", why);
        return false;
    }
    G->dests[LP_F_APPLY] = dests(a, 0);
    return true;
}

bool kd_codegen_optimize(lp_program *p, const kd_codegen_options *o, kd_graphs *G, kd_diags *d)
{
    if (o->no_passes) return true;
    char why[512];
    for (int f = 0; f < LP_F_COUNT; f++) {
        if (!G->g[f]) continue;
        G->g[f] = kd_optimize(G->g[f], &o->passes, why, sizeof why);
        if (!G->g[f]) {
            kd_error(d, (kd_loc){0}, "optimising %s_%s: %s", p->name, lp_func_names[f], why);
            return false;
        }
    }
    return true;
}

/* ---- embedded weights --------------------------------------------------------------------- */

bool kd_codegen_embed(lp_program *p, const char *path, kd_diags *d)
{
    kdh_tensor_list list;
    kdh_error err;
    if (kdh_safetensors_read(path, NULL, &list, &err) != 0) {
        kd_error(d, (kd_loc){0}, "%s", err.msg);
        return false;
    }
    double *vals = kd_alloc_array(p->arena, (size_t)(p->params_size ? p->params_size : 1), sizeof *vals);
    bool ok = true;
    for (int i = 0; i < p->params.len && ok; i++) {
        const lp_tensor_info *t = p->params.items[i];
        const kdh_tensor *x = kdh_list_find(&list, t->name);
        if (!x) {
            kd_error(d, (kd_loc){0}, "%s: no tensor \"%s\"", path, t->name);
            ok = false;
            break;
        }
        kdh_dtype dt = x->dtype == KDH_F64 ? KDH_F64 : KDH_F32;
        if (!kdh_list_expect(&list, path, t->name, dt, t->rank, t->shape, &err)) {
            kd_error(d, (kd_loc){0}, "%s", err.msg);
            ok = false;
            break;
        }
        for (int64_t j = 0; j < t->elems; j++) {
            double v = dt == KDH_F64 ? ((const double *)x->data)[j] : ((const float *)x->data)[j];
            if (!isfinite(v)) {
                kd_error(d, (kd_loc){0}, "%s: tensor \"%s\" element %lld is not finite", path, t->name, (long long)j);
                ok = false;
                break;
            }
            vals[t->offset + j] = v;
        }
    }
    kdh_list_free(&list);
    int bad = -1;
    if (ok && !kd_bn_fold_values(p->folds, p->nfolds, p->vars, vals, &bad)) {
        const kd_bn_fold *f = p->folds[bad];
        kd_error(d, (kd_loc){0}, "%s: folding \"%s\" into \"%s\" gives values that are not finite "
                 "(a moving variance at or below -epsilon?); compile with --no-fold-batchnorm to keep it apart",
                 path, p->vars[f->variance]->name, p->vars[f->kernel]->name);
        ok = false;
    }
    if (ok) p->embedded = vals;
    return ok;
}

/* ---- the program and its functions --------------------------------------------------- */

static const char *basename_of(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

lp_program *kd_codegen_program(kd_arena *a, kd_model *m, const kd_codegen_options *o, kd_diags *d)
{
    lp_program *p = kd_alloc(a, sizeof *p);
    p->arena = a;
    p->name = m->name;
    char *up = kd_strdup(a, m->name);
    for (char *c = up; *c; c++)
        if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 'a' + 'A');
    p->upper = up;
    p->source = m->item && m->item->loc.src ? basename_of(m->item->loc.src->path) : NULL;
    p->real = o->f64 ? LP_F64 : LP_F32;
    p->disjoint_arena = o->disjoint_arena;
    p->no_inplace = o->no_inplace;
    p->arena_align = kd_arena_align(o);
    p->max_batch = o->batch > 0 ? o->batch : m->config.present && m->config.batch_size > 0 ? m->config.batch_size : 32;
    if (o->batch > 0 && !kd_check_memory(m, p->max_batch, d)) return NULL; /* sema checked the default batch */
    p->dropout_seed = (uint64_t)m->config.seed;
    if (m->ninputs > 16 || m->noutputs > 16) {
        kd_error(d, (kd_loc){0}, "model '%s' has more than 16 inputs or outputs", m->name);
        return NULL;
    }
    p->ninputs = m->ninputs;
    p->noutputs = m->infer->outputs.len;
    for (int i = 0; i < m->ninputs; i++) {
        io_of(&p->inputs[i], m->input_names[i], &m->input_shapes[i]);
        p->inputs[i].i32 = m->input_i32[i];
        p->inputs[i].rows = m->input_rows[i];
        p->inputs[i].rows_layer = m->input_rows_layer[i];
    }
    for (int i = 0; i < p->noutputs; i++)
        io_of(&p->outputs[i], m->output_names[i], &((ir_node *)m->infer->outputs.items[i])->shape);
    return p;
}

bool kd_codegen_lower(lp_program *p, const kd_graphs *G, const kd_codegen_options *o, kd_diags *d)
{
    p->funcs[LP_F_INIT] = build_init(p);
    for (int f = LP_F_PREDICT; f < LP_F_COUNT; f++) {
        if (!G->g[f]) continue;
        char why[512];
        p->funcs[f] = kd_lower_graph(p, (lp_func_kind)f, G->g[f], G->dests[f], o, why, sizeof why);
        if (!p->funcs[f]) {
            kd_error(d, (kd_loc){0}, "lowering %s_%s: %s", p->name, lp_func_names[f], why);
            return false;
        }
    }
    return true;
}
