/* interp.c — runs a graph: one double buffer per node, each op's eval in turn. */
#include "interp.h"

#include <stdlib.h>
#include <string.h>

int64_t ir_interp_count(const ir_shape *s, int batch)
{
    int64_t n = ir_shape_elems(s);
    return s->batched ? n * batch : n;
}

int ir_eval_dims(const ir_eval_ctx *c, const ir_shape *s, int64_t *dims)
{
    for (int i = 0; i < s->rank; i++) dims[i] = s->dims[i] == IR_BATCH ? c->batch : s->dims[i];
    return s->rank;
}

void ir_eval_bstrides(const ir_eval_ctx *c, const ir_shape *in, const ir_shape *out, int64_t *strides)
{
    int64_t d[IR_MAX_RANK];
    ir_eval_dims(c, in, d);
    int64_t st = 1;
    for (int i = out->rank - 1; i >= 0; i--) {
        int k = i - (out->rank - in->rank);
        if (k < 0) {
            strides[i] = 0;
            continue;
        }
        strides[i] = d[k] == 1 ? 0 : st;
        st *= d[k];
    }
}

int64_t ir_eval_offset(int rank, const int64_t *dims, const int64_t *strides, int64_t i)
{
    int64_t off = 0;
    for (int d = rank - 1; d >= 0; d--) {
        off += (i % dims[d]) * strides[d];
        i /= dims[d];
    }
    return off;
}

ir_values *ir_interp_run(const ir_graph *g, const ir_feed *feed, char *why, size_t why_len)
{
    if (feed->batch < 1) {
        snprintf(why, why_len, "batch %d < 1", feed->batch);
        return NULL;
    }
    ir_values *vals = calloc(1, sizeof *vals);
    double **v = calloc((size_t)g->nodes.len + 1, sizeof *v);
    if (!vals || !v) {
        free(vals);
        free(v);
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    vals->g = g;
    vals->batch = feed->batch;
    vals->v = v;
    ir_eval_ctx c = {.feed = feed, .batch = feed->batch, .v = v};
    memcpy(c.hyper, feed->hyper, sizeof c.hyper);
    c.hyper[IR_HYPER_BATCH] = feed->batch;
    for (int i = 0; i < g->nodes.len; i++) {
        const ir_node *n = g->nodes.items[i];
        const char *missing = NULL;
        if (n->op == IR_INPUT && !feed->inputs) missing = "inputs";
        if (n->op == IR_LABEL && !feed->labels) missing = "labels";
        if (n->op == IR_VAR && !feed->vars) missing = "variables";
        if (missing) {
            snprintf(why, why_len, "%%%d needs %s that were not fed", n->id, missing);
            ir_values_free(vals);
            return NULL;
        }
        int64_t count = ir_interp_count(&n->shape, feed->batch);
        v[n->id] = calloc((size_t)(count > 0 ? count : 1), sizeof **v);
        if (!v[n->id]) {
            snprintf(why, why_len, "out of memory");
            ir_values_free(vals);
            return NULL;
        }
        ir_ops[n->op]->eval(&c, n);
    }
    return vals;
}

void ir_values_free(ir_values *vals)
{
    if (!vals) return;
    for (int i = 0; i < vals->g->nodes.len; i++) free(vals->v[i]);
    free(vals->v);
    free(vals);
}

const double *ir_value(const ir_values *vals, const ir_node *n) { return vals->v[n->id]; }

void ir_interp_apply_updates(const ir_values *vals, double *const *vars)
{
    const ir_graph *g = vals->g;
    for (int i = 0; i < g->updates.len; i++) {
        const ir_update *u = g->updates.items[i];
        memcpy(vars[u->var], vals->v[u->value->id],
               (size_t)ir_interp_count(&u->value->shape, vals->batch) * sizeof(double));
    }
}
