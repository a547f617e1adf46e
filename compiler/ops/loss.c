/* loss.c — the fused softmax cross-entropy: softmax over the last axis, the
 * cross-entropy with a one-hot (or soft) target, the mean over all rows. */
#include "ops.h"
#include "../interp.h"

#include <math.h>
#include <stdlib.h>

static bool shape_softmax_xent(ir_builder *b, ir_node *n)
{
    const ir_shape *z = &n->in[0]->shape, *t = &n->in[1]->shape;
    char s1[96], s2[96];
    if (z->rank < 1 || (z->batched && z->rank < 2))
        return ops_fail(b, n, "logits %s have no class axis", ops_sh(z, s1));
    if (!ir_shape_equal(z, t))
        return ops_fail(b, n, "logits %s and labels %s differ", ops_sh(z, s1), ops_sh(t, s2));
    n->shape = ir_shape_of(0, NULL, false);
    return true;
}

static bool shape_softmax_xent_grad(ir_builder *b, ir_node *n)
{
    char s1[96];
    if (!shape_softmax_xent(b, n)) return false;
    if (n->in[2]->shape.rank != 0)
        return ops_fail(b, n, "dloss %s is not a scalar", ops_sh(&n->in[2]->shape, s1));
    n->shape = n->in[0]->shape;
    return true;
}

/* Per row of C classes: the log-softmax, into lsm. */
static void log_softmax_row(const double *z, int64_t C, double *lsm)
{
    double m = -INFINITY, sum = 0;
    for (int64_t k = 0; k < C; k++) m = fmax(m, z[k]);
    for (int64_t k = 0; k < C; k++) sum += exp(z[k] - m);
    for (int64_t k = 0; k < C; k++) lsm[k] = z[k] - m - log(sum);
}

static void eval_softmax_xent(const ir_eval_ctx *c, const ir_node *n)
{
    const ir_shape *zs = &n->in[0]->shape;
    const double *z = ir_eval_in(c, n, 0), *t = ir_eval_in(c, n, 1);
    int64_t C = zs->dims[zs->rank - 1], rows = ir_eval_count(c, zs) / C;
    double total = 0, *lsm = malloc((size_t)C * sizeof *lsm);
    if (!lsm) return;
    for (int64_t r = 0; r < rows; r++) {
        log_softmax_row(z + r * C, C, lsm);
        for (int64_t k = 0; k < C; k++) total -= t[r * C + k] * lsm[k];
    }
    free(lsm);
    ir_eval_out(c, n)[0] = total / (double)rows;
}

/* dz = dloss (softmax(z) sum(t) - t) / rows: sum(t) is 1 for one-hot labels,
 * kept so that soft labels get the exact gradient too. */
static void eval_softmax_xent_grad(const ir_eval_ctx *c, const ir_node *n)
{
    const ir_shape *zs = &n->in[0]->shape;
    const double *z = ir_eval_in(c, n, 0), *t = ir_eval_in(c, n, 1);
    double dl = ir_eval_in(c, n, 2)[0], *dz = ir_eval_out(c, n);
    int64_t C = zs->dims[zs->rank - 1], rows = ir_eval_count(c, zs) / C;
    double *lsm = malloc((size_t)C * sizeof *lsm);
    if (!lsm) return;
    for (int64_t r = 0; r < rows; r++) {
        log_softmax_row(z + r * C, C, lsm);
        double tsum = 0;
        for (int64_t k = 0; k < C; k++) tsum += t[r * C + k];
        for (int64_t k = 0; k < C; k++) dz[r * C + k] = dl * (exp(lsm[k]) * tsum - t[r * C + k]) / (double)rows;
    }
    free(lsm);
}

/* The rows the loss averages over: a static count, and the batch at run time. */
static ir_node *per_row(ir_builder *b, const ir_shape *zs, ir_node *x)
{
    int64_t rows = 1;
    for (int i = zs->batched ? 1 : 0; i < zs->rank - 1; i++) rows *= zs->dims[i];
    x = ops_scale(b, x, 1.0 / (double)rows);
    return zs->batched ? ir_binary(b, IR_DIV, x, ir_hyper(b, IR_HYPER_BATCH)) : x;
}

static void vjp_softmax_xent(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    ir_node *z = n->in[0], *t = n->in[1];
    if (want[0]) {
        ir_node *in[3] = {z, t, dy};
        g[0] = ir_make(b, IR_SOFTMAX_XENT_GRAD, 3, in, NULL);
    }
    if (want[1]) {       /* dloss/dt = -log_softmax(z) / rows */
        ir_attrs a = ops_attrs();
        a.axis = z->shape.rank - 1;
        ir_node *lsm = ir_make(b, IR_LOG_SOFTMAX, 1, &z, &a);
        g[1] = per_row(b, &z->shape, ir_binary(b, IR_MUL, ir_unary(b, IR_NEG, lsm), dy));
    }
}

/* Per logit: a log-softmax (5) and the product with the label and its sum (2); the gradient:
 * the softmax (5) less the label, scaled (2). */
static int64_t flops_xent(const ir_node *n, int64_t batch) { return 7 * ops_elems(&n->in[0]->shape, batch); }

const ir_op_info ir_op_softmax_xent = {.name = "softmax_xent", .arity = 2, .shape = shape_softmax_xent,
                                       .vjp = vjp_softmax_xent, .eval = eval_softmax_xent, .flops = flops_xent};
const ir_op_info ir_op_softmax_xent_grad = {.name = "softmax_xent_grad", .arity = 3,
                                            .shape = shape_softmax_xent_grad, .eval = eval_softmax_xent_grad,
                                            .flops = flops_xent};
