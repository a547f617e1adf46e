/* interp.h — the reference interpreter: evaluates a graph in double precision,
 * node by node, with each op's `eval` from the op table. Slow and simple on
 * purpose: it is the oracle for the vjp tests, finite differences and the
 * backends. */
#ifndef KDSL_INTERP_H
#define KDSL_INTERP_H

#include "ir.h"

/* What a run is fed. Arrays are row-major, batched ones B x elems. */
typedef struct ir_feed {
    int batch;                    /* B >= 1: binds IR_BATCH and IR_HYPER_BATCH */
    const double *const *inputs;  /* inputs[i]: input #i (IR_INPUT attr.index) */
    const double *const *labels;  /* labels[i]: label #i */
    const double *const *vars;    /* vars[v]: variable v (kd_var index) */
    double hyper[IR_HYPER_COUNT]; /* LR, STEP, SEED; BATCH is taken from `batch` */
} ir_feed;

/* The value of every node of a graph after a run. */
typedef struct ir_values {
    const ir_graph *g;
    int batch;
    double **v;                   /* v[node->id] */
} ir_values;

/* Evaluates every node of g in order. NULL on error (a missing feed, a bad
 * batch), with the reason in why. */
ir_values *ir_interp_run(const ir_graph *g, const ir_feed *feed, char *why, size_t why_len);
void ir_values_free(ir_values *vals);
const double *ir_value(const ir_values *vals, const ir_node *n);
/* Elements of a shape with the batch bound to `batch`. */
int64_t ir_interp_count(const ir_shape *s, int batch);
/* Writes every g->updates value into vars[update->var] (vars sized by the caller). */
void ir_interp_apply_updates(const ir_values *vals, double *const *vars);

/* ---- what the op evaluation functions in compiler/ops see ------------------------ */
struct ir_eval_ctx {
    const ir_feed *feed;
    int batch;
    double hyper[IR_HYPER_COUNT];
    double **v;                   /* values by node id */
};

static inline const double *ir_eval_in(const ir_eval_ctx *c, const ir_node *n, int i)
{
    return c->v[n->in[i]->id];
}
static inline double *ir_eval_out(const ir_eval_ctx *c, const ir_node *n) { return c->v[n->id]; }
static inline int64_t ir_eval_count(const ir_eval_ctx *c, const ir_shape *s)
{
    return ir_interp_count(s, c->batch);
}
/* Concrete dims (the batch bound); returns the rank. */
int ir_eval_dims(const ir_eval_ctx *c, const ir_shape *s, int64_t *dims);
/* Row-major strides of `in` as seen from `out`'s coordinates under NumPy
 * broadcasting (0 along broadcast dims). */
void ir_eval_bstrides(const ir_eval_ctx *c, const ir_shape *in, const ir_shape *out, int64_t *strides);
/* The offset of flat index `i` of dims[rank] under `strides`. */
int64_t ir_eval_offset(int rank, const int64_t *dims, const int64_t *strides, int64_t i);

#endif
