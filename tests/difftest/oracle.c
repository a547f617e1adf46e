/* oracle.c — the differential oracle (difftest.h). */
#define _GNU_SOURCE
#include "difftest.h"

#include "codegen.h"
#include "random.h"
#include "driver.h"
#include "host/parallel_kernels.h"
#include "interp.h"
#include "jit.h"
#include "loopexec.h"
#include "train_graph.h"

#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef DT_SOURCE_ROOT
#define DT_SOURCE_ROOT "."
#endif
#ifndef DT_BUILD_ROOT
#define DT_BUILD_ROOT "build"
#endif

#define TOL_F32 2e-3
#define TOL_F64 1e-9
#define TOL_FD 1e-4
#define LEARNING_RATE 0.01
#define STEP 3
#define FD_CHECKS 12

/* ---- the reference ------------------------------------------------------------------ */

typedef struct reference {
    kd_session s;
    kd_model *m;
    int batch, max_batch;
    uint64_t rng;
    int nvars;                     /* all variables, optimizer slots included */
    int nmodel_vars;               /* the model's own (before the slots) */
    double *vars[256];             /* by kd_var index: the values every backend starts from */
    double *inputs[16], *label;
    int64_t in_elems[16];
    /* predict */
    int nout;
    int64_t out_elems[16];
    double *out[16];
    /* grad (train only) */
    bool train;
    kd_train_graph tg;
    double loss, *grad[256], *after_grad[256];
    /* train step */
    kd_train_graph ts;
    double step_loss, *step_pred, *after_step[256];
} reference;

static double uniform(reference *r, double lo, double hi)
{
    double u = (double)(kdk_mix64(r->rng++) >> 11) * (1.0 / 9007199254740992.0);
    return (double)(float)(lo + (hi - lo) * u);   /* exact in float: every backend sees the same data */
}

static int64_t var_elems(const kd_var *v) { return ir_interp_count(&v->shape, 1); }

static double *alloc_doubles(int64_t n)
{
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    if (!p) abort();
    return p;
}

static void fill_var(reference *r, int i)
{
    const kd_var *v = r->m->vars.items[i];
    int64_t n = var_elems(v);
    r->vars[i] = alloc_doubles(n);
    size_t len = strlen(v->name);
    bool positive = v->kind == VAR_SLOT || (len >= 15 && !strcmp(v->name + len - 15, "moving_variance"));
    for (int64_t k = 0; k < n; k++)
        r->vars[i][k] = v->kind == VAR_SLOT ? uniform(r, 0, 0.01) : positive ? uniform(r, 0.5, 1.5) : uniform(r, -0.6, 0.6);
}

static bool all_finite(const double *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return false;
    return true;
}

static double **copy_vars(reference *r, double **dst)
{
    for (int i = 0; i < r->nvars; i++) {
        int64_t n = var_elems(r->m->vars.items[i]);
        dst[i] = alloc_doubles(n);
        memcpy(dst[i], r->vars[i], (size_t)n * sizeof(double));
    }
    return dst;
}

static ir_values *interp(reference *r, const ir_graph *g, double *const *vars, char *why, size_t n)
{
    ir_feed f = {.batch = r->batch, .inputs = (const double *const *)r->inputs,
                 .labels = (const double *const *)&r->label, .vars = (const double *const *)vars};
    f.hyper[IR_HYPER_LR] = LEARNING_RATE;
    f.hyper[IR_HYPER_STEP] = STEP;
    f.hyper[IR_HYPER_SEED] = (double)(uint64_t)r->m->config.seed;
    return ir_interp_run(g, &f, why, n);
}

static void verdict(dt_verdict *v, dt_status s, const char *check, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void verdict(dt_verdict *v, dt_status s, const char *check, const char *fmt, ...)
{
    if (v->status == DT_FAIL) return;   /* the first failure stands */
    v->status = s;
    snprintf(v->check, sizeof v->check, "%s", check);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->why, sizeof v->why, fmt, ap);
    va_end(ap);
}

/* The reference's loss with variable `var` element `k` moved by h. */
static double loss_at(reference *r, int var, int64_t k, double h)
{
    double saved = r->vars[var][k];
    r->vars[var][k] = saved + h;
    char why[256];
    ir_values *vals = interp(r, r->tg.g, r->vars, why, sizeof why);
    r->vars[var][k] = saved;
    if (!vals) return NAN;
    double l = ir_value(vals, r->tg.loss)[0];
    ir_values_free(vals);
    return l;
}

/* Central differences of the reference loss against its symbolic gradients. */
static void check_fd(reference *r, dt_verdict *v)
{
    int trainable[256], nt = 0;
    for (int i = 0; i < r->nmodel_vars; i++)
        if (r->tg.grads && r->tg.grads[i] && ((const kd_var *)r->m->vars.items[i])->kind == VAR_WEIGHT)
            trainable[nt++] = i;
    for (int c = 0; c < FD_CHECKS && nt > 0; c++) {
        int i = trainable[kdk_mix64(r->rng++) % (uint64_t)nt];
        int64_t n = var_elems(r->m->vars.items[i]), k = (int64_t)(kdk_mix64(r->rng++) % (uint64_t)n);
        double g = r->grad[i][k], scale = 0;
        for (int64_t j = 0; j < n; j++) scale = fmax(scale, fabs(r->grad[i][j]));
        bool ok = false;
        double fd = 0;
        for (double h = 1e-5; h >= 1e-7 && !ok; h /= 100) {   /* a kink within h of a weight: try a smaller h */
            fd = (loss_at(r, i, k, h) - loss_at(r, i, k, -h)) / (2 * h);
            ok = fabs(fd - g) <= TOL_FD * (fabs(g) + 0.05 * scale + 1e-4);
        }
        if (!ok) {
            verdict(v, DT_FAIL, "reference: gradient vs finite differences", "%s[%lld]: symbolic %.10g, central differences %.10g",
                    ((const kd_var *)r->m->vars.items[i])->name, (long long)k, g, fd);
            return;
        }
    }
}

static void reference_free(reference *r)
{
    for (int i = 0; i < 256; i++) free(r->vars[i]), free(r->grad[i]), free(r->after_grad[i]), free(r->after_step[i]);
    for (int i = 0; i < 16; i++) free(r->inputs[i]), free(r->out[i]);
    free(r->label);
    free(r->step_pred);
    kd_session_free(&r->s);
}

/* Front end, data, and every reference value. DT_OK, or the verdict set. */
static dt_status reference_build(reference *r, const char *text, const dt_options *o, dt_verdict *v)
{
    char *msg = NULL;
    size_t msg_len = 0;
    FILE *diag = open_memstream(&msg, &msg_len);
    r->s.diags.out = diag;
    int rc = kd_front_end_text(&r->s, "difftest.kdsl", text, strlen(text), NULL);
    fclose(diag);
    if (rc) {
        verdict(v, DT_FAIL, "front end", "the program was rejected:\n%s", msg ? msg : "");
        free(msg);
        return DT_FAIL;
    }
    free(msg);
    r->s.diags.out = stderr;
    kd_model *m = r->m = r->s.model;
    r->nvars = r->nmodel_vars = m->vars.len;
    if (r->nvars > 200) return verdict(v, DT_SKIP, "reference", "too many variables"), DT_SKIP;
    for (int i = 0; i < r->nvars; i++) fill_var(r, i);
    for (int i = 0; i < m->ninputs; i++) {
        r->in_elems[i] = ir_interp_count(&m->input_shapes[i], 1);
        r->inputs[i] = alloc_doubles(r->in_elems[i] * r->max_batch);
        /* token ids: inside the Embedding's table mostly, one outside each end (zeros, no gradient) */
        double rows = m->input_rows[i] ? (double)m->input_rows[i] : 10;
        for (int64_t k = 0; k < r->in_elems[i] * r->max_batch; k++)
            r->inputs[i][k] = m->input_i32[i] ? floor(uniform(r, -1, rows + 1)) : uniform(r, -1, 1);
    }
    char why[512];
    ir_values *vals = interp(r, m->infer, r->vars, why, sizeof why);
    if (!vals) return verdict(v, DT_FAIL, "reference: predict", "%s", why), DT_FAIL;
    r->nout = m->infer->outputs.len;
    for (int i = 0; i < r->nout; i++) {
        const ir_node *y = m->infer->outputs.items[i];
        r->out_elems[i] = ir_interp_count(&y->shape, 1);
        r->out[i] = alloc_doubles(r->out_elems[i] * r->batch);
        memcpy(r->out[i], ir_value(vals, y), (size_t)(r->out_elems[i] * r->batch) * sizeof(double));
        if (!all_finite(r->out[i], r->out_elems[i] * r->batch)) {
            ir_values_free(vals);
            return verdict(v, DT_SKIP, "reference", "output %d is not finite", i), DT_SKIP;
        }
    }
    ir_values_free(vals);

    r->train = m->config.present && r->nout == 1;
    if (!r->train) return DT_OK;
    /* labels the loss accepts: one-hot rows for the categorical ones, in (0, 1) for the binary one */
    r->label = alloc_doubles(r->out_elems[0] * r->max_batch);
    const ir_node *y0 = m->infer->outputs.items[0];
    int64_t classes = y0->shape.rank > 1 ? y0->shape.dims[y0->shape.rank - 1] : 1;
    for (int64_t k = 0; k < r->out_elems[0] * r->batch; k++) {
        switch (m->config.loss.kind) {
        case LOSS_CATEGORICAL_XENT:
        case LOSS_SPARSE_CATEGORICAL_XENT: r->label[k] = 0; break;
        case LOSS_BINARY_XENT: r->label[k] = uniform(r, 0.05, 0.95); break;
        default: r->label[k] = uniform(r, -1, 1); break;
        }
    }
    if (m->config.loss.kind == LOSS_CATEGORICAL_XENT || m->config.loss.kind == LOSS_SPARSE_CATEGORICAL_XENT)
        for (int64_t row = 0; row < r->out_elems[0] * r->batch / classes; row++)
            r->label[row * classes + (int64_t)(kdk_mix64(r->rng++) % (uint64_t)classes)] = 1;
    if (!kd_build_grad_graph(&r->s.arena, m, &r->tg, why, sizeof why))
        return verdict(v, DT_FAIL, "reference: grad graph", "%s", why), DT_FAIL;
    vals = interp(r, r->tg.g, r->vars, why, sizeof why);
    if (!vals) return verdict(v, DT_FAIL, "reference: grad", "%s", why), DT_FAIL;
    r->loss = ir_value(vals, r->tg.loss)[0];
    for (int i = 0; i < r->nmodel_vars; i++) {
        int64_t n = var_elems(m->vars.items[i]);
        r->grad[i] = alloc_doubles(n);
        if (r->tg.grads && r->tg.grads[i]) memcpy(r->grad[i], ir_value(vals, r->tg.grads[i]), (size_t)n * sizeof(double));
        if (!all_finite(r->grad[i], n)) r->loss = NAN;
    }
    ir_interp_apply_updates(vals, copy_vars(r, r->after_grad));
    ir_values_free(vals);
    if (!isfinite(r->loss)) return verdict(v, DT_SKIP, "reference", "the loss or a gradient is not finite"), DT_SKIP;

    /* the train step adds the optimizer's slots to m->vars */
    if (!kd_build_train_step(&r->s.arena, m, &r->ts, why, sizeof why))
        return verdict(v, DT_FAIL, "reference: train step graph", "%s", why), DT_FAIL;
    for (int i = r->nvars; i < m->vars.len && i < 256; i++) fill_var(r, i);
    r->nvars = m->vars.len < 256 ? m->vars.len : 256;
    vals = interp(r, r->ts.g, r->vars, why, sizeof why);
    if (!vals) return verdict(v, DT_FAIL, "reference: train step", "%s", why), DT_FAIL;
    r->step_loss = ir_value(vals, r->ts.loss)[0];
    r->step_pred = alloc_doubles(r->out_elems[0] * r->batch);
    memcpy(r->step_pred, ir_value(vals, r->ts.prediction), (size_t)(r->out_elems[0] * r->batch) * sizeof(double));
    ir_interp_apply_updates(vals, copy_vars(r, r->after_step));
    ir_values_free(vals);
    for (int i = 0; i < r->nvars; i++)
        if (!all_finite(r->after_step[i], var_elems(m->vars.items[i])))
            return verdict(v, DT_SKIP, "reference", "the train step's update is not finite"), DT_SKIP;
    if (o->fd) check_fd(r, v);
    return v->status;
}

/* ---- comparing ---------------------------------------------------------------------- */

typedef struct cmp {
    dt_verdict *v;
    const char *variant;
    double tol, worst;
    uint64_t *bits;   /* when set: an FNV-1a hash of every value compared, in order */
} cmp;

/* got[0..n) against want[0..n): each within tol of |want| plus a share of the
 * tensor's scale (a value that cancels to near 0 keeps its neighbours' error). */
static bool compare(cmp *c, const char *what, const void *got, bool f64, const double *want, int64_t n)
{
    double scale = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    if (c->bits) {
        const unsigned char *b = got;
        for (size_t i = 0; i < (size_t)n * (f64 ? sizeof(double) : sizeof(float)); i++)
            *c->bits = (*c->bits ^ b[i]) * 1099511628211u;
    }
    for (int64_t i = 0; i < n; i++) {
        double a = f64 ? ((const double *)got)[i] : ((const float *)got)[i];
        double err = fabs(a - want[i]), allowed = c->tol * (fabs(want[i]) + 0.05 * scale + 1e-3);
        if (isfinite(a) && err / allowed * c->tol > c->worst) c->worst = err / allowed * c->tol;
        if (!(err <= allowed)) {
            char check[96];
            snprintf(check, sizeof check, "%s: %s", c->variant, what);
            verdict(c->v, DT_FAIL, check, "%s[%lld]: got %.9g, reference %.9g (%lld values, largest |reference| %.3g)", what,
                    (long long)i, a, want[i], (long long)n, scale);
            return false;
        }
    }
    return true;
}

/* ---- running one compiled program ----------------------------------------------------
 * The model's entry points in float (the JIT, model.c) or double (model.c
 * --dtype f64); the same code for both through `real` and these casts. */

typedef struct entry_points {
    const lp_program *exec;   /* run through the loop-IR executor (loopexec.h) instead */
    void (*predict)(const void *params, const void *const *inputs, void *const *outputs, int batch, void *arena);
    /* model.c's prepare: predict then runs on what it makes of the weights (predict_prepared) */
    int (*prepare)(const void *params, void *prepared);
    double (*grad_f64)(void *params, const void *const *inputs, const void *labels, void *grads, int batch,
                       unsigned long long step, void *arena);
    float (*grad_f32)(void *params, const void *const *inputs, const void *labels, void *grads, int batch,
                      unsigned long long step, void *arena);
    double (*step_f64)(void *params, void *opt, const void *const *inputs, const void *labels, int batch,
                       unsigned long long step, double lr, void *arena, void *out0);
    float (*step_f32)(void *params, void *opt, const void *const *inputs, const void *labels, int batch,
                      unsigned long long step, float lr, void *arena, void *out0);
} entry_points;

static void *reals(int64_t n, bool f64) { return calloc((size_t)(n > 0 ? n : 1), f64 ? sizeof(double) : sizeof(float)); }

static void put_real(void *buf, bool f64, int64_t i, double x)
{
    if (f64) ((double *)buf)[i] = x;
    else ((float *)buf)[i] = (float)x;
}

static void put_reals(void *buf, bool f64, int64_t at, const double *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) put_real(buf, f64, at + i, x[i]);
}

static int64_t arena_bytes(const lp_program *p)
{
    int64_t n = 64;
    for (int f = 0; f < LP_F_COUNT; f++)
        if (p->funcs[f] && p->funcs[f]->arena_bytes > n) n = p->funcs[f]->arena_bytes;
    return (n + 63) / 64 * 64;
}

/* params and opt_state as the reference starts them */
static void load_state(const reference *r, const lp_program *p, bool f64, void *params, void *opt)
{
    for (int i = 0; i < p->params.len; i++) {
        const lp_tensor_info *t = p->params.items[i];
        put_reals(params, f64, t->offset, r->vars[t->var], t->elems);
    }
    for (int i = 0; i < p->slots.len; i++) {
        const lp_tensor_info *t = p->slots.items[i];
        if (t->var < r->nvars) put_reals(opt, f64, t->offset, r->vars[t->var], t->elems);
    }
}

static void compare_state(cmp *c, const char *when, const lp_program *p, bool f64, const void *params, const void *opt,
                          double *const *want)
{
    size_t rs = f64 ? sizeof(double) : sizeof(float);
    char what[160];
    for (int i = 0; i < p->params.len; i++) {
        const lp_tensor_info *t = p->params.items[i];
        snprintf(what, sizeof what, "%s %s", when, t->name);
        if (!compare(c, what, (const char *)params + t->offset * rs, f64, want[t->var], t->elems)) return;
    }
    for (int i = 0; opt && i < p->slots.len; i++) {
        const lp_tensor_info *t = p->slots.items[i];
        snprintf(what, sizeof what, "%s %s", when, t->name);
        if (!compare(c, what, (const char *)opt + t->offset * rs, f64, want[t->var], t->elems)) return;
    }
}

static void run_program(const reference *r, const lp_program *p, const entry_points *e, bool f64, cmp *c)
{
    size_t rs = f64 ? sizeof(double) : sizeof(float);
    void *params = reals(p->params_size, f64), *opt = reals(p->opt_size, f64), *grads = reals(p->grads_size, f64);
    int64_t ab = arena_bytes(p);
    void *arena = aligned_alloc(64, (size_t)ab);
    void *in[16], *out[16], *label = reals(p->labels[0].elems * p->max_batch, f64);
    if (!arena) abort();
    memset(arena, 0xA5, (size_t)ab);   /* stale bytes: a read before a write shows */
    for (int i = 0; i < p->ninputs; i++) {
        int64_t n = r->in_elems[i] * p->max_batch;
        in[i] = reals(n, f64);
        if (p->inputs[i].i32)   /* int32_t token ids, whatever the real type */
            for (int64_t k = 0; k < n; k++) ((int32_t *)in[i])[k] = (int32_t)r->inputs[i][k];
        else
            put_reals(in[i], f64, 0, r->inputs[i], n);
    }
    for (int i = 0; i < p->noutputs; i++) out[i] = reals(r->out_elems[i] * p->max_batch, f64);
    if (r->train) put_reals(label, f64, 0, r->label, r->out_elems[0] * r->batch);

    load_state(r, p, f64, params, opt);
    char why[256];
    lx_args lx = {.params = params, .opt_state = opt, .grads = grads, .inputs = (const double *const *)in,
                  .labels = label, .outputs = (double *const *)out, .arena = arena, .batch = r->batch, .step = STEP,
                  .learning_rate = LEARNING_RATE};
    if (e->exec && lx_run(e->exec, LP_F_PREDICT, &lx, NULL, why, sizeof why) != 0)
        verdict(c->v, DT_FAIL, "executor", "%s", why);
    else if (!e->exec && e->prepare) {
        void *prepared = reals(p->prepared_size, f64);
        if (e->prepare(params, prepared) != 0) verdict(c->v, DT_FAIL, "prepare", "prepare returned nonzero");
        else e->predict(prepared, (const void *const *)in, out, r->batch, arena);
        free(prepared);
    } else if (!e->exec) e->predict(params, (const void *const *)in, out, r->batch, arena);
    for (int i = 0; i < p->noutputs && c->v->status != DT_FAIL; i++) {
        char what[32];
        snprintf(what, sizeof what, "predict y%d", i);
        compare(c, what, out[i], f64, r->out[i], r->out_elems[i] * r->batch);
    }
    if (r->train && c->v->status != DT_FAIL && (e->grad_f32 || e->grad_f64 || (e->exec && p->funcs[LP_F_GRAD]))) {
        for (int64_t i = 0; i < p->grads_size; i++) put_real(grads, f64, i, NAN);   /* every gradient must be written */
        double loss = 0;
        if (e->exec) {
            if (lx_run(e->exec, LP_F_GRAD, &lx, &loss, why, sizeof why) != 0) verdict(c->v, DT_FAIL, "executor", "%s", why);
        } else {
            loss = f64 ? e->grad_f64(params, (const void *const *)in, label, grads, r->batch, STEP, arena)
                       : e->grad_f32(params, (const void *const *)in, label, grads, r->batch, STEP, arena);
        }
        if (compare(c, "grad loss", &loss, true, &r->loss, 1)) {
            for (int i = 0; i < p->params.len; i++) {
                const lp_tensor_info *t = p->params.items[i];
                if (t->grad_offset < 0) continue;
                char what[160];
                snprintf(what, sizeof what, "gradient of %s", t->name);
                if (!compare(c, what, (const char *)grads + t->grad_offset * rs, f64, r->grad[t->var], t->elems)) break;
            }
        }
        if (c->v->status != DT_FAIL) compare_state(c, "after grad:", p, f64, params, NULL, r->after_grad);
    }
    if (r->train && c->v->status != DT_FAIL && (e->step_f32 || e->step_f64 || (e->exec && p->funcs[LP_F_TRAIN_STEP]))) {
        load_state(r, p, f64, params, opt);
        memset(arena, 0x5A, (size_t)ab);
        double loss = 0;
        if (e->exec) {
            if (lx_run(e->exec, LP_F_TRAIN_STEP, &lx, &loss, why, sizeof why) != 0)
                verdict(c->v, DT_FAIL, "executor", "%s", why);
        } else {
            loss = f64 ? e->step_f64(params, opt, (const void *const *)in, label, r->batch, STEP, LEARNING_RATE, arena, out[0])
                       : e->step_f32(params, opt, (const void *const *)in, label, r->batch, STEP, (float)LEARNING_RATE,
                                     arena, out[0]);
        }
        if (compare(c, "train_step loss", &loss, true, &r->step_loss, 1) &&
            compare(c, "train_step outputs0", out[0], f64, r->step_pred, r->out_elems[0] * r->batch))
            compare_state(c, "after train_step:", p, f64, params, opt, r->after_step);
    }
    for (int i = 0; i < p->ninputs; i++) free(in[i]);
    for (int i = 0; i < p->noutputs; i++) free(out[i]);
    free(params), free(opt), free(grads), free(arena), free(label);
}

/* ---- the variants ------------------------------------------------------------------- */

typedef struct variant {
    const char *name;
    kd_codegen_options co;
    bool threads;          /* the JIT at two threads, every loop and kernel split */
    bool parts;            /* the JIT building every function of more than 4 kernels in parts of one */
} variant;

static lp_program *build(reference *r, kd_codegen_options co, dt_verdict *v, const char *name)
{
    co.batch = r->max_batch;
    char *msg = NULL;
    size_t len = 0;
    FILE *diag = open_memstream(&msg, &len);
    r->s.diags.out = diag;
    lp_program *p = kd_back_end(&r->s, &co);
    fclose(diag);
    r->s.diags.out = stderr;
    if (!p) {
        char check[96];
        snprintf(check, sizeof check, "%s: codegen", name);
        verdict(v, DT_FAIL, check, "%s", msg ? msg : "");
    }
    free(msg);
    return p;
}

/* The loop IR texts of the variants run so far: a variant that turns off an
 * optimisation the program has no use for compiles to the same text as
 * another, and runs once. */
typedef struct seen_set {
    char *text[16];
    int n;
} seen_set;

/* Whether p's loop IR is new to s (and then remembered). */
static bool first_time(seen_set *s, const lp_program *p)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) abort();
    kd_loops_dump(f, p);
    fclose(f);
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->text[i], text)) {
            free(text);
            return false;
        }
    if (s->n < 16) s->text[s->n++] = text;
    else free(text);
    return true;
}

static void seen_free(seen_set *s)
{
    for (int i = 0; i < s->n; i++) free(s->text[i]);
}

/* one_thread_bits: the plain JIT's hash of every value it computed, which
 * the JIT at two threads must give again: kdslc train promises the same
 * bits at any thread count (docs/training.md), so a split that groups a sum
 * differently is a failure even within float tolerance. */
static void run_jit(reference *r, const variant *va, const dt_options *o, dt_verdict *v, seen_set *seen,
                    uint64_t *one_thread_bits)
{
    lp_program *p = build(r, va->co, v, va->name);
    if (!p) return;
    /* two threads and parts build the same loop IR differently: always run */
    if (!first_time(seen, p) && !va->threads && !va->parts) return;
    /* -O1: the tester checks kdsl's transformations, not GCC's, and -O1
     * compiles in about half the time of the -O3 that `kdslc train` uses */
    /* parts: compiled by two processes, so that parts call each other
     * across their libraries (emit_jit.c's workers) */
    kd_jit_options jo = {.split_small_loops = va->threads, .opt_level = o->jit_opt_level,
                         .part_kernels = va->parts ? 1 : 0, .jobs = va->parts ? 2 : 1};
    kdh_model_fns fns;
    char why[1024];
    kd_jit *j = kd_jit_compile(p, &jo, &fns, why, sizeof why);
    if (!j) {
        char check[96];
        snprintf(check, sizeof check, "%s: jit compile", va->name);
        verdict(v, DT_FAIL, check, "%s", why);
        return;
    }
    entry_points e = {0};
    memcpy(&e.predict, &fns.predict, sizeof e.predict);
    memcpy(&e.grad_f32, &fns.grad, sizeof e.grad_f32);
    memcpy(&e.step_f32, &fns.train_step, sizeof e.step_f32);
    if (va->threads) kdh_pool_set_threads(2), kdh_pool_split_everything(true);
    uint64_t bits = 14695981039346656037u;
    bool plain = !strcmp(va->name, "jit");   /* every optimisation, one thread */
    cmp c = {v, va->name, TOL_F32, 0, plain || va->threads ? &bits : NULL};
    run_program(r, p, &e, false, &c);
    if (va->threads) kdh_pool_set_threads(1), kdh_pool_split_everything(false);
    if (plain) *one_thread_bits = bits;
    else if (va->threads && *one_thread_bits && bits != *one_thread_bits && v->status != DT_FAIL)
        verdict(v, DT_FAIL, "jit 2 threads: bits", "the JIT at two threads computed values whose bits differ from one "
                "thread's (all within float tolerance of the reference)");
    if (o->verbose)
        fprintf(stderr, "  %-24s worst error %.3g of %.3g allowed, jit %.3f s\n", va->name, c.worst, c.tol,
                kd_jit_compile_seconds(j));
    v->variants++;
    kd_jit_free(j);
}

/* A variant in double through the loop-IR executor: every kdsl decision
 * down to the loop IR, compared to the reference to double precision. */
static void run_exec(reference *r, const variant *va, const dt_options *o, dt_verdict *v, seen_set *seen)
{
    kd_codegen_options co = va->co;
    co.f64 = true;
    char name[64];
    snprintf(name, sizeof name, "loops%s", va->name + 3);   /* "jit no-cse" -> "loops no-cse" */
    lp_program *p = build(r, co, v, name);
    if (!p) return;
    if (!first_time(seen, p)) return;
    entry_points e = {.exec = p};
    cmp c = {v, name, TOL_F64, 0, NULL};
    run_program(r, p, &e, true, &c);
    if (v->status == DT_FAIL && !strcmp(v->check, "executor")) snprintf(v->check, sizeof v->check, "%s: executor", name);
    if (o->verbose) fprintf(stderr, "  %-24s worst error %.3g of %.3g allowed\n", name, c.worst, c.tol);
    v->variants++;
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *s = getenv(name);
    return s && *s ? s : fallback;
}

/* One variant: model.c's entry points e (`what` its predict) against the reference. */
static void run_entry_points(reference *r, const lp_program *p, const entry_points *e, bool f64, const dt_options *o,
                             dt_verdict *v, const char *name, const char *what)
{
    if (!e->predict) {
        verdict(v, DT_FAIL, name, "%s is missing from model.c", what);
        return;
    }
    cmp c = {v, name, f64 ? TOL_F64 : TOL_F32, 0, NULL};
    run_program(r, p, e, f64, &c);
    if (o->verbose) fprintf(stderr, "  %-24s worst error %.3g of %.3g allowed\n", name, c.worst, c.tol);
    v->variants++;
}

static void run_c(reference *r, bool f64, const dt_options *o, dt_verdict *v)
{
    const char *name = f64 ? "C f64" : "C f32";
    kd_codegen_options co = {.f64 = f64, .header_name = "m.h", .prepare = true};
    lp_program *p = build(r, co, v, name);
    if (!p) return;
    char path[4096], cmd[8192];
    snprintf(path, sizeof path, "%s/m.c", o->workdir);
    FILE *cf = fopen(path, "w");
    snprintf(path, sizeof path, "%s/m.h", o->workdir);
    FILE *hf = fopen(path, "w");
    co.batch = r->max_batch;
    if (!cf || !hf || kd_emit_c(p, &co, cf, hf, &r->s.diags) != 0) {
        if (cf) fclose(cf);
        if (hf) fclose(hf);
        verdict(v, DT_FAIL, name, "cannot write %s/m.c", o->workdir);
        return;
    }
    fclose(cf);
    fclose(hf);
    snprintf(cmd, sizeof cmd, "cd '%s' && cc -std=c99 -O1 -shared -fPIC %s -I'%s/runtime' -o m%d.so m.c '%s/libkdslrt.a' -lm 2>&1",
             o->workdir, env_or("KDSL_SANITIZE_CFLAGS", ""), env_or("KDSL_SOURCE_ROOT", DT_SOURCE_ROOT), f64,
             env_or("KDSL_BUILD_ROOT", DT_BUILD_ROOT));
    FILE *pipe = popen(cmd, "r");
    char out[1024] = "";
    size_t got = pipe ? fread(out, 1, sizeof out - 1, pipe) : 0;
    out[got] = 0;
    if (!pipe || pclose(pipe) != 0) {
        char check[96];
        snprintf(check, sizeof check, "%s: cc", name);
        verdict(v, DT_FAIL, check, "%s\n%s", cmd, out);
        return;
    }
    snprintf(path, sizeof path, "%s/m%d.so", o->workdir, f64);
    void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!so) {
        verdict(v, DT_FAIL, name, "dlopen: %s", dlerror());
        return;
    }
    entry_points e = {0};
    void *f = dlsym(so, "m_predict");
    memcpy(&e.predict, &f, sizeof f);
    f = dlsym(so, "m_grad");
    memcpy(f64 ? (void *)&e.grad_f64 : (void *)&e.grad_f32, &f, sizeof f);
    f = dlsym(so, "m_train_step");
    memcpy(f64 ? (void *)&e.step_f64 : (void *)&e.step_f32, &f, sizeof f);
    run_entry_points(r, p, &e, f64, o, v, name, "m_predict");
    /* predict_prepared on prepare's weights (BatchNormalizations folded, Dense kernels packed) */
    entry_points ep = {0};
    char pname[32];
    snprintf(pname, sizeof pname, "%s prepared", name);
    f = dlsym(so, "m_predict_prepared");
    memcpy(&ep.predict, &f, sizeof f);
    f = dlsym(so, "m_prepare");
    memcpy(&ep.prepare, &f, sizeof f);
    if (v->status != DT_FAIL && !ep.prepare) verdict(v, DT_FAIL, pname, "m_prepare is missing from model.c");
    if (v->status != DT_FAIL) run_entry_points(r, p, &ep, f64, o, v, pname, "m_predict_prepared");
    dlclose(so);
}

dt_status dt_run(const char *text, int batch, int max_batch, uint64_t data_seed, const dt_options *o, dt_verdict *v)
{
    memset(v, 0, sizeof *v);
    reference *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->batch = batch;
    r->max_batch = max_batch;
    r->rng = data_seed;
    if (reference_build(r, text, o, v) != DT_OK) {
        reference_free(r);
        free(r);
        return v->status;
    }
    const variant variants[] = {
        {"jit", {0}, false, false},
        {"jit no-passes", {.no_passes = true}, false, false},
        {"jit no-simplify", {.passes.no_simplify = true}, false, false},
        {"jit no-cse", {.passes.no_cse = true}, false, false},
        {"jit no-fuse", {.passes.no_fuse = true}, false, false},
        {"jit no-loop-fusion", {.no_loop_fusion = true}, false, false},
        {"jit no-inplace", {.no_inplace = true}, false, false},
        {"jit disjoint-arena", {.disjoint_arena = true}, false, false},
        {"jit 2 threads", {0}, true, false},
        {"jit in parts", {0}, false, true},
    };
    seen_set seen = {0}, seen64 = {0};
    uint64_t one_thread_bits = 0;
    for (size_t i = 0; i < sizeof variants / sizeof variants[0] && v->status != DT_FAIL && !o->no_exec; i++)
        if (!variants[i].threads && !variants[i].parts) run_exec(r, &variants[i], o, v, &seen64);
    for (size_t i = 0; i < sizeof variants / sizeof variants[0] && v->status != DT_FAIL && !o->no_jit; i++)
        if ((!variants[i].threads || o->threads) &&
            (!o->jit_no_pass_variants || i == 0 || variants[i].threads || variants[i].parts))
            run_jit(r, &variants[i], o, v, &seen, &one_thread_bits);
    seen_free(&seen);
    seen_free(&seen64);
    if (o->c_backend && v->status != DT_FAIL) run_c(r, false, o, v);
    if (o->c_backend && v->status != DT_FAIL) run_c(r, true, o, v);
    reference_free(r);
    free(r);
    return v->status;
}
