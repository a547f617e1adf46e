/* nn.c — softmax, log-softmax, the dropout mask and the mean over the ranks. */
#include "ops.h"
#include "kernels.h"
#include "random.h"
#include "../interp.h"

#include <math.h>
#include <string.h>

static bool shape_softmax(ir_builder *b, ir_node *n)
{
    const ir_shape *x = &n->in[0]->shape;
    char s1[96];
    if (n->attr.axis < 0 || n->attr.axis >= x->rank)
        return ops_fail(b, n, "axis %d out of range for %s", n->attr.axis, ops_sh(x, s1));
    n->shape = *x;
    return true;
}

static bool shape_dropout_mask(ir_builder *b, ir_node *n)
{
    if (!ops_shape_attr(b, n)) return false;
    if (!(n->attr.scalar >= 0 && n->attr.scalar < 1))
        return ops_fail(b, n, "rate %g is not in [0, 1)", n->attr.scalar);
    return true;
}

/* Softmax along `axis`, as outer x len x inner, each row shifted by its maximum. */
static void eval_softmax(const ir_eval_ctx *c, const ir_node *n)
{
    int64_t d[IR_MAX_RANK];
    int rank = ir_eval_dims(c, &n->shape, d), axis = n->attr.axis;
    int64_t outer = 1, len = d[axis], inner = 1;
    for (int i = 0; i < axis; i++) outer *= d[i];
    for (int i = axis + 1; i < rank; i++) inner *= d[i];
    const double *x = ir_eval_in(c, n, 0);
    double *y = ir_eval_out(c, n);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            const double *xr = x + o * len * inner + in;
            double *yr = y + o * len * inner + in;
            double m = -INFINITY, sum = 0;
            for (int64_t k = 0; k < len; k++) m = fmax(m, xr[k * inner]);
            for (int64_t k = 0; k < len; k++) sum += exp(xr[k * inner] - m);
            for (int64_t k = 0; k < len; k++)
                yr[k * inner] = n->op == IR_SOFTMAX ? exp(xr[k * inner] - m) / sum : xr[k * inner] - m - log(sum);
        }
}

static ir_node *sum_axis(ir_builder *b, ir_node *x, int axis)
{
    return ir_reduce(b, IR_SUM, x, (int64_t)1 << axis, true);
}

/* dx = y (dy - sum(dy y)) */
static void vjp_softmax(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    ir_node *dot = sum_axis(b, ir_binary(b, IR_MUL, dy, n), n->attr.axis);
    g[0] = ir_binary(b, IR_MUL, n, ir_binary(b, IR_SUB, dy, dot));
}

/* dx = dy - softmax(x) sum(dy), with softmax(x) = exp(y) */
static void vjp_log_softmax(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    ir_node *p = ir_unary(b, IR_EXP, n);
    g[0] = ir_binary(b, IR_SUB, dy, ir_binary(b, IR_MUL, p, sum_axis(b, dy, n->attr.axis)));
}

static void eval_dropout_mask(const ir_eval_ctx *c, const ir_node *n)
{
    uint64_t seed = (uint64_t)c->hyper[IR_HYPER_SEED], step = (uint64_t)c->hyper[IR_HYPER_STEP];
    uint32_t thr = kdk_dropout_threshold(n->attr.scalar);
    double scale = 1 / (1 - n->attr.scalar);
    double *y = ir_eval_out(c, n);
    for (int64_t i = 0, e = ir_eval_count(c, &n->shape); i < e; i++)
        y[i] = kdk_dropout_bits(seed, step, (uint32_t)n->attr.index, (uint64_t)i) >= thr ? scale : 0;
}

static bool shape_gaussian_noise(ir_builder *b, ir_node *n)
{
    if (!ops_shape_attr(b, n)) return false;
    if (!(n->attr.scalar >= 0 && n->attr.scalar < 1e30))
        return ops_fail(b, n, "stddev %g is not a non-negative number", n->attr.scalar);
    return true;
}

static void eval_gaussian_noise(const ir_eval_ctx *c, const ir_node *n)
{
    uint64_t seed = kdk_noise_seed((uint64_t)c->hyper[IR_HYPER_SEED], (uint32_t)n->attr.index);
    kdk_dinit_normal(ir_eval_out(c, n), (long)ir_eval_count(c, &n->shape), seed, (long)c->hyper[IR_HYPER_STEP], 0,
                     n->attr.scalar, 0);
}

/* Per element: the max, the subtraction, exp, the sum, and the division (or log's subtraction). */
static int64_t flops_softmax(const ir_node *n, int64_t batch) { return 5 * ops_elems(&n->shape, batch); }

const ir_op_info ir_op_softmax = {.name = "softmax", .arity = 1, .attrs = IR_ATTR_AXIS,
                                  .shape = shape_softmax, .vjp = vjp_softmax, .eval = eval_softmax,
                                  .flops = flops_softmax};
const ir_op_info ir_op_log_softmax = {.name = "log_softmax", .arity = 1, .attrs = IR_ATTR_AXIS,
                                      .shape = shape_softmax, .vjp = vjp_log_softmax, .eval = eval_softmax,
                                      .flops = flops_softmax};
/* A leaf: a gradient that reaches it stops (the mask is constant in x). */
const ir_op_info ir_op_dropout_mask = {.name = "dropout_mask", .arity = 0,
                                       .attrs = IR_ATTR_SCALAR | IR_ATTR_INDEX | IR_ATTR_SHAPE,
                                       .shape = shape_dropout_mask, .eval = eval_dropout_mask};
/* A leaf, like the dropout mask: the noise is constant in the input. */
const ir_op_info ir_op_gaussian_noise = {.name = "gaussian_noise", .arity = 0,
                                         .attrs = IR_ATTR_SCALAR | IR_ATTR_INDEX | IR_ATTR_SHAPE,
                                         .shape = shape_gaussian_noise, .eval = eval_gaussian_noise};

/* ---- the mean over the ranks -------------------------------------------------------------------
 * What one process computes is the operand itself: the interpreter, the C
 * backend (kdk_srank_mean copies) and a JIT run on one rank. Under mpirun
 * the host's kdh_srank_mean_mt takes the ranks' mean (train_dist.c).
 *
 * The vjp: with L = sum_r w_r L_r, w_r = n_r / n the rank's share of the
 * global batch (the weight the host gives each rank's gradient), and
 * y = sum_r w_r m_r on every rank, dL/dm_r = w_r sum_r' w_r' dy_r'. Rank r's
 * gradient is weighted by w_r afterwards, so its backward pass must carry
 * sum_r' w_r' dy_r' = rank_mean(dy): the same op. */
static bool shape_rank_mean(ir_builder *b, ir_node *n)
{
    char s1[96];
    if (n->in[0]->shape.batched)
        return ops_fail(b, n, "operand %s has a batch: only statistics over it are averaged over the ranks",
                        ops_sh(&n->in[0]->shape, s1));
    n->shape = n->in[0]->shape;
    return true;
}

static void eval_rank_mean(const ir_eval_ctx *c, const ir_node *n)
{
    memcpy(ir_eval_out(c, n), ir_eval_in(c, n, 0), (size_t)ir_eval_count(c, &n->shape) * sizeof(double));
}

static void vjp_rank_mean(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)n;
    (void)want;
    g[0] = ir_make(b, IR_RANK_MEAN, 1, &dy, NULL);
}

const ir_op_info ir_op_rank_mean = {.name = "rank_mean", .arity = 1, .shape = shape_rank_mean, .vjp = vjp_rank_mean,
                                    .eval = eval_rank_mean};
