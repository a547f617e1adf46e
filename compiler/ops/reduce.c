/* reduce.c — sums, means and maxima over a set of axes, their broadcast inverse. */
#include "ops.h"
#include "../interp.h"

#include <math.h>
#include <stdlib.h>

/* The shape x reduces to over `axes`; false if an axis is out of range. */
static bool reduced_shape(const ir_shape *x, int64_t axes, bool keepdims, ir_shape *out)
{
    if (axes < 0 || (x->rank < 63 && (axes >> x->rank) != 0)) return false;
    ir_shape r = {0};
    for (int i = 0; i < x->rank; i++) {
        bool red = (axes >> i) & 1;
        if (red && keepdims) r.dims[r.rank++] = 1;
        else if (!red) r.dims[r.rank++] = x->dims[i];
    }
    r.batched = x->batched && !(axes & 1);
    *out = r;
    return true;
}

static bool shape_reduce(ir_builder *b, ir_node *n)
{
    const ir_shape *x = &n->in[0]->shape;
    if (!reduced_shape(x, n->attr.axes, n->attr.keepdims, &n->shape)) {
        char s1[96];
        return ops_fail(b, n, "axes 0x%llx out of range for %s (rank %d with the batch)",
                        (unsigned long long)n->attr.axes, ops_sh(x, s1), x->rank);
    }
    return true;
}

/* (x, y, dy): y and dy are x reduced as the IR_MAX was. */
static bool shape_max_grad(ir_builder *b, ir_node *n)
{
    const ir_shape *x = &n->in[0]->shape;
    ir_shape r;
    char s1[96], s2[96];
    if (!reduced_shape(x, n->attr.axes, n->attr.keepdims, &r))
        return ops_fail(b, n, "axes out of range for %s", ops_sh(x, s1));
    for (int i = 1; i < 3; i++)
        if (!ir_shape_equal(&n->in[i]->shape, &r))
            return ops_fail(b, n, "operand %d is %s, expected %s", i, ops_sh(&n->in[i]->shape, s1),
                            ops_sh(&r, s2));
    n->shape = *x;
    return true;
}

static bool shape_broadcast(ir_builder *b, ir_node *n)
{
    const ir_shape *x = &n->in[0]->shape, *to = &n->attr.shape;
    ir_shape r;
    char s1[96], s2[96];
    if (!ops_shape_attr(b, n)) return false;
    if (!ir_broadcast_shapes(x, to, &r) || !ir_shape_equal(&r, to))
        return ops_fail(b, n, "cannot broadcast %s to %s", ops_sh(x, s1), ir_shape_keras(to, s2, sizeof s2));
    return true;
}

/* For each element of x, the flat index of the reduced element it feeds:
 * strides of the keepdims shape, 0 along the reduced axes. */
static void reduce_map(const ir_eval_ctx *c, const ir_shape *x, int64_t axes, int64_t *dims, int64_t *st)
{
    ir_eval_dims(c, x, dims);
    int64_t s = 1;
    for (int i = x->rank - 1; i >= 0; i--) {
        bool red = (axes >> i) & 1;
        st[i] = red ? 0 : s;
        if (!red) s *= dims[i];
    }
}

static void eval_reduce(const ir_eval_ctx *c, const ir_node *n)
{
    const ir_shape *xs = &n->in[0]->shape;
    const double *x = ir_eval_in(c, n, 0);
    double *y = ir_eval_out(c, n);
    int64_t dims[IR_MAX_RANK], st[IR_MAX_RANK];
    reduce_map(c, xs, n->attr.axes, dims, st);
    int64_t nx = ir_eval_count(c, xs), ny = ir_eval_count(c, &n->shape);
    for (int64_t o = 0; o < ny; o++) y[o] = n->op == IR_MAX ? -INFINITY : 0;
    for (int64_t i = 0; i < nx; i++) {
        int64_t o = ir_eval_offset(xs->rank, dims, st, i);
        if (n->op == IR_MAX) {
            if (x[i] > y[o]) y[o] = x[i];
        } else {
            y[o] += x[i];
        }
    }
    if (n->op == IR_MEAN && ny > 0)
        for (int64_t o = 0; o < ny; o++) y[o] /= (double)(nx / ny);
}

/* dy to the first element (row-major) equal to the maximum. */
static void eval_max_grad(const ir_eval_ctx *c, const ir_node *n)
{
    const ir_shape *xs = &n->in[0]->shape;
    const double *x = ir_eval_in(c, n, 0), *y = ir_eval_in(c, n, 1), *dy = ir_eval_in(c, n, 2);
    double *dx = ir_eval_out(c, n);
    int64_t dims[IR_MAX_RANK], st[IR_MAX_RANK];
    reduce_map(c, xs, n->attr.axes, dims, st);
    int64_t nx = ir_eval_count(c, xs), ny = ir_eval_count(c, &n->in[1]->shape);
    char *taken = calloc((size_t)ny + 1, 1);
    for (int64_t i = 0; i < nx; i++) {
        int64_t o = ir_eval_offset(xs->rank, dims, st, i);
        dx[i] = 0;
        if (taken && !taken[o] && x[i] == y[o]) {
            dx[i] = dy[o];
            taken[o] = 1;
        }
    }
    free(taken);
}

static void eval_broadcast(const ir_eval_ctx *c, const ir_node *n)
{
    const double *x = ir_eval_in(c, n, 0);
    double *y = ir_eval_out(c, n);
    int64_t dims[IR_MAX_RANK], st[IR_MAX_RANK];
    int rank = ir_eval_dims(c, &n->shape, dims);
    ir_eval_bstrides(c, &n->in[0]->shape, &n->shape, st);
    for (int64_t i = 0, e = ir_eval_count(c, &n->shape); i < e; i++) y[i] = x[ir_eval_offset(rank, dims, st, i)];
}

/* The shape of x reduced over `axes` with keepdims: dy's shape as x broadcasts it back. */
static ir_shape kept_shape(const ir_node *n)
{
    ir_shape r;
    reduced_shape(&n->in[0]->shape, n->attr.axes, true, &r);
    return r;
}

/* Spread dy back over the reduced axes. */
static ir_node *spread(ir_builder *b, ir_node *n, ir_node *dy)
{
    return ir_broadcast(b, ir_reshape(b, dy, kept_shape(n)), n->in[0]->shape);
}

static void vjp_sum(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    g[0] = spread(b, n, dy);
}

/* 1 / count, where the count includes the run-time batch when axis 0 is reduced. */
static void vjp_mean(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    const ir_shape *xs = &n->in[0]->shape;
    int64_t count = 1;
    bool over_batch = false;
    for (int i = 0; i < xs->rank; i++) {
        if (!((n->attr.axes >> i) & 1)) continue;
        if (xs->dims[i] == IR_BATCH) over_batch = true;
        else count *= xs->dims[i];
    }
    ir_node *scaled = ops_scale(b, dy, 1.0 / (double)count);
    if (over_batch) scaled = ir_binary(b, IR_DIV, scaled, ir_hyper(b, IR_HYPER_BATCH));
    g[0] = spread(b, n, scaled);
}

static void vjp_max(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    ir_node *in[3] = {n->in[0], n, dy};
    g[0] = ir_make(b, IR_MAX_GRAD, 3, in, &n->attr);
}

static void vjp_broadcast(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    g[0] = ir_sum_to(b, dy, &n->in[0]->shape);
}

const ir_op_info ir_op_sum = {.name = "sum", .arity = 1, .attrs = IR_ATTR_AXES, .shape = shape_reduce,
                              .vjp = vjp_sum, .eval = eval_reduce, .flops = ops_flops_per_input};
const ir_op_info ir_op_mean = {.name = "mean", .arity = 1, .attrs = IR_ATTR_AXES, .shape = shape_reduce,
                               .vjp = vjp_mean, .eval = eval_reduce, .flops = ops_flops_per_input};
const ir_op_info ir_op_max = {.name = "max", .arity = 1, .attrs = IR_ATTR_AXES, .shape = shape_reduce,
                              .vjp = vjp_max, .eval = eval_reduce, .flops = ops_flops_per_input};
const ir_op_info ir_op_max_grad = {.name = "max_grad", .arity = 3, .attrs = IR_ATTR_AXES,
                                   .shape = shape_max_grad, .eval = eval_max_grad, .flops = ops_flops_per_input};
const ir_op_info ir_op_broadcast = {.name = "broadcast", .arity = 1, .attrs = IR_ATTR_SHAPE,
                                    .shape = shape_broadcast, .vjp = vjp_broadcast, .eval = eval_broadcast};
