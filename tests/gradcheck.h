/* gradcheck.h — a small graph under test, fed with deterministic random data,
 * evaluated by the reference interpreter, and its symbolic gradients compared
 * with central finite differences. Shared by test_vjp.c and test_autodiff.c. */
#ifndef KDSL_GRADCHECK_H
#define KDSL_GRADCHECK_H

#include "interp.h"

enum { GC_MAX_FEEDS = 64 };

typedef struct gc_ctx {
    kd_arena arena;
    kd_vec vars;                        /* kd_var* */
    ir_graph *g;
    ir_builder b;
    int batch;
    int ninputs, nlabels;
    double *inputs[GC_MAX_FEEDS], *labels[GC_MAX_FEEDS], *vardata[GC_MAX_FEEDS];
    double hyper[IR_HYPER_COUNT];
    uint64_t rng;
} gc_ctx;

/* How a leaf's data is drawn. */
typedef enum gc_fill {
    GC_UNIFORM,      /* uniform in [lo, hi] */
    GC_DISTINCT,     /* all values at least (hi - lo) / (2n) apart: no ties for max */
    GC_AWAY,         /* |x| in [lo, hi], random sign: away from the kinks at 0 */
    GC_ONEHOT,       /* one 1 per row of the last axis */
} gc_fill;

void gc_init(gc_ctx *c, int batch);
void gc_free(gc_ctx *c);
double gc_uniform(gc_ctx *c);          /* [0, 1) */

/* Fed leaves: a batched input [B, dims...], a batched label, a variable. */
ir_node *gc_input(gc_ctx *c, int rank, const int64_t *dims, gc_fill f, double lo, double hi);
ir_node *gc_label(gc_ctx *c, int rank, const int64_t *dims, gc_fill f, double lo, double hi);
ir_node *gc_var(gc_ctx *c, const char *name, int rank, const int64_t *dims, gc_fill f, double lo, double hi,
                bool trainable);
/* The buffer that feeds an input, label or variable leaf. */
double *gc_data(gc_ctx *c, const ir_node *leaf);
int64_t gc_count(gc_ctx *c, const ir_node *n);

/* sum(y * r) over every axis, r a fresh random leaf of y's shape: a scalar
 * whose gradient w.r.t. y is r, so every element of the op's vjp is exercised. */
ir_node *gc_weighted_sum(gc_ctx *c, ir_node *y);

/* Runs the graph (fails the test on an interpreter error). */
ir_values *gc_run(gc_ctx *c);
double gc_scalar(gc_ctx *c, ir_node *n);

/* The largest relative error between grads[i] (NULL = zero) and central
 * differences of `loss` w.r.t. the fed leaf wrt[i], h = 1e-6. */
double gc_check(gc_ctx *c, ir_node *loss, int n, ir_node *const *wrt, ir_node *const *grads);
/* Differentiates loss w.r.t. wrt with ir_gradients, then gc_check. */
double gc_grad_check(gc_ctx *c, ir_node *loss, int n, ir_node *const *wrt);

/* How many nodes of the graph have op `op`. */
int gc_count_op(const ir_graph *g, ir_op op);

#endif
