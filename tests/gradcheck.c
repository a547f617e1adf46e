/* gradcheck.c — see gradcheck.h. */
#include "gradcheck.h"
#include "autodiff.h"

#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void gc_init(gc_ctx *c, int batch)
{
    memset(c, 0, sizeof *c);
    c->g = ir_graph_new(&c->arena, &c->vars);
    c->b.g = c->g;
    c->batch = batch;
    c->rng = 0x2545F4914F6CDD1DULL;
    c->hyper[IR_HYPER_LR] = 0.01;
    c->hyper[IR_HYPER_SEED] = 7;
}

void gc_free(gc_ctx *c)
{
    for (int i = 0; i < c->ninputs; i++) free(c->inputs[i]);
    for (int i = 0; i < c->nlabels; i++) free(c->labels[i]);
    for (int i = 0; i < c->vars.len; i++) free(c->vardata[i]);
    kd_arena_free(&c->arena);
}

double gc_uniform(gc_ctx *c)
{
    c->rng ^= c->rng << 13;                         /* xorshift64 */
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return (double)(c->rng >> 11) / 9007199254740992.0;
}

int64_t gc_count(gc_ctx *c, const ir_node *n) { return ir_interp_count(&n->shape, c->batch); }

static double *fill(gc_ctx *c, const ir_shape *s, gc_fill f, double lo, double hi)
{
    int64_t n = ir_interp_count(s, c->batch);
    double *d = malloc((size_t)n * sizeof *d);
    ck_assert_ptr_nonnull(d);
    if (f == GC_DISTINCT) {                       /* a shuffled ladder, jittered */
        for (int64_t i = 0; i < n; i++) d[i] = lo + (hi - lo) * ((double)i + 0.5 + 0.3 * (gc_uniform(c) - 0.5)) / (double)n;
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)(gc_uniform(c) * (double)(i + 1));
            double t = d[i];
            d[i] = d[j];
            d[j] = t;
        }
    } else if (f == GC_ONEHOT) {
        int64_t k = s->dims[s->rank - 1];
        for (int64_t r = 0; r < n / k; r++) {
            int64_t hot = (int64_t)(gc_uniform(c) * (double)k);
            for (int64_t j = 0; j < k; j++) d[r * k + j] = j == hot;
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            d[i] = lo + (hi - lo) * gc_uniform(c);
            if (f == GC_AWAY && gc_uniform(c) < 0.5) d[i] = -d[i];
        }
    }
    return d;
}

ir_node *gc_input(gc_ctx *c, int rank, const int64_t *dims, gc_fill f, double lo, double hi)
{
    ck_assert_int_lt(c->ninputs, GC_MAX_FEEDS);
    ir_attrs a = {0};
    a.index = c->ninputs;
    ir_node *n = ir_leaf(&c->b, IR_INPUT, ir_shape_of(rank, dims, true), &a, -1);
    ck_assert_msg(n != NULL, "%s", c->b.why);
    c->inputs[c->ninputs++] = fill(c, &n->shape, f, lo, hi);
    return n;
}

ir_node *gc_label(gc_ctx *c, int rank, const int64_t *dims, gc_fill f, double lo, double hi)
{
    ck_assert_int_lt(c->nlabels, GC_MAX_FEEDS);
    ir_attrs a = {0};
    a.index = c->nlabels;
    ir_node *n = ir_leaf(&c->b, IR_LABEL, ir_shape_of(rank, dims, true), &a, -1);
    ck_assert_msg(n != NULL, "%s", c->b.why);
    c->labels[c->nlabels++] = fill(c, &n->shape, f, lo, hi);
    return n;
}

ir_node *gc_var(gc_ctx *c, const char *name, int rank, const int64_t *dims, gc_fill f, double lo, double hi,
                bool trainable)
{
    ck_assert_int_lt(c->vars.len, GC_MAX_FEEDS);
    kd_var *v = kd_alloc(&c->arena, sizeof *v);
    v->index = c->vars.len;
    v->name = kd_strdup(&c->arena, name);
    v->kind = VAR_WEIGHT;
    v->trainable = trainable;
    v->shape = ir_shape_of(rank, dims, false);
    v->of_var = -1;
    kd_vec_push(&c->arena, &c->vars, v);
    c->vardata[v->index] = fill(c, &v->shape, f, lo, hi);
    ir_node *n = ir_var_read(&c->b, v);
    ck_assert_msg(n != NULL, "%s", c->b.why);
    return n;
}

double *gc_data(gc_ctx *c, const ir_node *leaf)
{
    switch (leaf->op) {
    case IR_INPUT: return c->inputs[leaf->attr.index];
    case IR_LABEL: return c->labels[leaf->attr.index];
    case IR_VAR: return c->vardata[leaf->var];
    default: ck_abort_msg("%%%d is not a fed leaf", leaf->id); return NULL;
    }
}

ir_node *gc_weighted_sum(gc_ctx *c, ir_node *y)
{
    ck_assert_msg(y != NULL, "%s", c->b.why);
    const ir_shape *s = &y->shape;
    ir_node *r;
    if (s->batched) {
        r = gc_input(c, s->rank - 1, s->dims + 1, GC_UNIFORM, -1, 1);
    } else {
        char name[32];
        snprintf(name, sizeof name, "r%d", c->vars.len);
        r = gc_var(c, name, s->rank, s->dims, GC_UNIFORM, -1, 1, false);
    }
    int64_t all = s->rank ? (((int64_t)1 << s->rank) - 1) : 0;
    ir_node *loss = ir_reduce(&c->b, IR_SUM, ir_binary(&c->b, IR_MUL, y, r), all, false);
    ck_assert_msg(loss != NULL, "%s", c->b.why);
    return loss;
}

ir_values *gc_run(gc_ctx *c)
{
    ir_feed f = {.batch = c->batch,
                 .inputs = (const double *const *)c->inputs,
                 .labels = (const double *const *)c->labels,
                 .vars = (const double *const *)c->vardata};
    memcpy(f.hyper, c->hyper, sizeof f.hyper);
    char why[256];
    ir_values *v = ir_interp_run(c->g, &f, why, sizeof why);
    ck_assert_msg(v != NULL, "interpreter: %s", why);
    return v;
}

double gc_scalar(gc_ctx *c, ir_node *n)
{
    ir_values *v = gc_run(c);
    double x = ir_value(v, n)[0];
    ir_values_free(v);
    return x;
}

double gc_check(gc_ctx *c, ir_node *loss, int n, ir_node *const *wrt, ir_node *const *grads)
{
    const double h = 1e-6;
    ir_values *v = gc_run(c);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double *x = gc_data(c, wrt[i]);
        const double *an = grads[i] ? ir_value(v, grads[i]) : NULL;
        if (grads[i]) ck_assert(ir_shape_equal(&grads[i]->shape, &wrt[i]->shape));
        for (int64_t k = 0, e = gc_count(c, wrt[i]); k < e; k++) {
            double keep = x[k];
            x[k] = keep + h;
            double up = gc_scalar(c, loss);
            x[k] = keep - h;
            double down = gc_scalar(c, loss);
            x[k] = keep;
            double num = (up - down) / (2 * h), ana = an ? an[k] : 0;
            double err = fabs(num - ana) / fmax(fmax(fabs(num), fabs(ana)), 1e-3);
            if (err > worst) worst = err;
            if (err > 1e-6)
                fprintf(stderr, "  %%%d[%lld]: analytic %.12g, numeric %.12g\n", wrt[i]->id, (long long)k, ana, num);
        }
    }
    ir_values_free(v);
    return worst;
}

double gc_grad_check(gc_ctx *c, ir_node *loss, int n, ir_node *const *wrt)
{
    ck_assert_msg(loss != NULL, "%s", c->b.why);
    ir_node **d = ir_gradients(&c->b, loss, n, wrt);
    ck_assert_msg(d != NULL, "ir_gradients: %s", c->b.why);
    return gc_check(c, loss, n, wrt, d);
}

int gc_count_op(const ir_graph *g, ir_op op)
{
    int k = 0;
    for (int i = 0; i < g->nodes.len; i++) k += ((const ir_node *)g->nodes.items[i])->op == op;
    return k;
}
