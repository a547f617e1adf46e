/* pool.c — 2-D max and average pooling over NHWC, and their gradients. */
#include "ops.h"
#include "../interp.h"

#include <math.h>
#include <string.h>

static bool pool_shape(ir_builder *b, const ir_node *n, const ir_shape *x, ir_shape *out)
{
    const ir_attrs *a = &n->attr;
    char s1[96];
    if (x->rank != 4) return ops_fail(b, n, "expects an input [N, H, W, C], not %s", ir_shape_keras(x, s1, sizeof s1));
    *out = *x;
    for (int d = 0; d < 2; d++) {
        /* A window wholly in the padding would have no element to pool. */
        if (a->pad_lo[d] >= a->window[d] || a->pad_hi[d] >= a->window[d])
            return ops_fail(b, n, "padding must be smaller than the window");
        int64_t o = ops_window_out(x->dims[1 + d], a->window[d], a->stride[d], a->pad_lo[d], a->pad_hi[d]);
        if (o < 1)
            return ops_fail(b, n, "window (%d, %d) with strides (%d, %d) does not fit input %s",
                            a->window[0], a->window[1], a->stride[0], a->stride[1], ops_sh(x, s1));
        out->dims[1 + d] = o;
    }
    return true;
}

static bool shape_pool(ir_builder *b, ir_node *n)
{
    return pool_shape(b, n, &n->in[0]->shape, &n->shape);
}

/* The pool of `x` must have dy's shape. */
static bool check_dy(ir_builder *b, const ir_node *n, const ir_shape *x, const ir_shape *dy)
{
    ir_shape y;
    char s1[96], s2[96];
    if (!pool_shape(b, n, x, &y)) return false;
    if (!ir_shape_equal(&y, dy))
        return ops_fail(b, n, "dy is %s, the pool gives %s", ops_sh(dy, s1), ops_sh(&y, s2));
    return true;
}

static bool shape_maxpool2d_grad(ir_builder *b, ir_node *n)  /* (x, dy) */
{
    n->shape = n->in[0]->shape;
    return check_dy(b, n, &n->in[0]->shape, &n->in[1]->shape);
}

static bool shape_avgpool2d_grad(ir_builder *b, ir_node *n)  /* (dy) -> attr.shape */
{
    return ops_shape_attr(b, n) && check_dy(b, n, &n->attr.shape, &n->in[0]->shape);
}

enum pool_mode { POOL_MAX, POOL_MAX_GRAD, POOL_AVG, POOL_AVG_GRAD };

/* One loop nest for all four. For each output position and channel, the window's
 * positions inside the input (padding is never read, never counted). */
static void pool_loop(const ir_eval_ctx *c, const ir_node *n, const ir_shape *xs, const ir_shape *ys,
                      const double *x, double *dx, const double *dy, double *y, enum pool_mode mode)
{
    int64_t xd[4], yd[4];
    ir_eval_dims(c, xs, xd);
    ir_eval_dims(c, ys, yd);
    const ir_attrs *a = &n->attr;
    int64_t H = xd[1], W = xd[2], C = xd[3];
    for (int64_t b = 0; b < yd[0]; b++)
        for (int64_t oh = 0; oh < yd[1]; oh++)
            for (int64_t ow = 0; ow < yd[2]; ow++)
                for (int64_t ch = 0; ch < C; ch++) {
                    int64_t h0 = oh * a->stride[0] - a->pad_lo[0], w0 = ow * a->stride[1] - a->pad_lo[1];
                    int64_t o = ((b * yd[1] + oh) * yd[2] + ow) * C + ch;
                    double best = -INFINITY, sum = 0;
                    int64_t arg = -1, count = 0;
                    for (int64_t h = h0; h < h0 + a->window[0]; h++)
                        for (int64_t v = w0; v < w0 + a->window[1]; v++) {
                            if (h < 0 || h >= H || v < 0 || v >= W) continue;
                            int64_t i = ((b * H + h) * W + v) * C + ch;
                            if (mode <= POOL_MAX_GRAD && (arg < 0 || x[i] > best)) {
                                best = x[i];
                                arg = i;
                            }
                            if (mode == POOL_AVG) sum += x[i];
                            count++;
                        }
                    switch (mode) {
                    case POOL_MAX: y[o] = best; break;
                    case POOL_MAX_GRAD: dx[arg] += dy[o]; break;
                    case POOL_AVG: y[o] = sum / (double)count; break;
                    case POOL_AVG_GRAD:
                        for (int64_t h = h0; h < h0 + a->window[0]; h++)
                            for (int64_t v = w0; v < w0 + a->window[1]; v++)
                                if (h >= 0 && h < H && v >= 0 && v < W)
                                    dx[((b * H + h) * W + v) * C + ch] += dy[o] / (double)count;
                        break;
                    }
                }
}

static void eval_maxpool2d(const ir_eval_ctx *c, const ir_node *n)
{
    pool_loop(c, n, &n->in[0]->shape, &n->shape, ir_eval_in(c, n, 0), NULL, NULL, ir_eval_out(c, n), POOL_MAX);
}

static void eval_avgpool2d(const ir_eval_ctx *c, const ir_node *n)
{
    pool_loop(c, n, &n->in[0]->shape, &n->shape, ir_eval_in(c, n, 0), NULL, NULL, ir_eval_out(c, n), POOL_AVG);
}

static void eval_maxpool2d_grad(const ir_eval_ctx *c, const ir_node *n)  /* (x, dy) */
{
    double *dx = ir_eval_out(c, n);
    memset(dx, 0, (size_t)ir_eval_count(c, &n->shape) * sizeof *dx);
    pool_loop(c, n, &n->shape, &n->in[1]->shape, ir_eval_in(c, n, 0), dx, ir_eval_in(c, n, 1), NULL,
              POOL_MAX_GRAD);
}

static void eval_avgpool2d_grad(const ir_eval_ctx *c, const ir_node *n)  /* (dy) */
{
    double *dx = ir_eval_out(c, n);
    memset(dx, 0, (size_t)ir_eval_count(c, &n->shape) * sizeof *dx);
    pool_loop(c, n, &n->shape, &n->in[0]->shape, NULL, dx, ir_eval_in(c, n, 0), NULL, POOL_AVG_GRAD);
}

static void vjp_maxpool2d(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    ir_node *in[2] = {n->in[0], dy};
    g[0] = ir_make(b, IR_MAXPOOL2D_GRAD, 2, in, &n->attr);
}

static void vjp_avgpool2d(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    ir_attrs a = n->attr;
    a.shape = n->in[0]->shape;
    g[0] = ir_make(b, IR_AVGPOOL2D_GRAD, 1, &dy, &a);
}

/* A comparison or an addition per window element of each pooled output; the gradients
 * the same over the forward's output (dy, in[1] of max pooling's and in[0] of average's). */
static int64_t flops_pool(const ir_node *n, int64_t batch)
{
    const ir_shape *y = n->op == IR_MAXPOOL2D_GRAD ? &n->in[1]->shape : n->op == IR_AVGPOOL2D_GRAD ? &n->in[0]->shape
                                                                                                    : &n->shape;
    return ops_elems(y, batch) * n->attr.window[0] * n->attr.window[1];
}

#define POOL_ATTRS (IR_ATTR_WINDOW | IR_ATTR_STRIDE | IR_ATTR_PAD)
const ir_op_info ir_op_maxpool2d = {.name = "maxpool2d", .arity = 1, .attrs = POOL_ATTRS,
                                    .shape = shape_pool, .vjp = vjp_maxpool2d, .eval = eval_maxpool2d,
                                    .flops = flops_pool};
const ir_op_info ir_op_maxpool2d_grad = {.name = "maxpool2d_grad", .arity = 2, .attrs = POOL_ATTRS,
                                         .shape = shape_maxpool2d_grad, .eval = eval_maxpool2d_grad,
                                         .flops = flops_pool};
const ir_op_info ir_op_avgpool2d = {.name = "avgpool2d", .arity = 1, .attrs = POOL_ATTRS,
                                    .shape = shape_pool, .vjp = vjp_avgpool2d, .eval = eval_avgpool2d,
                                    .flops = flops_pool};
const ir_op_info ir_op_avgpool2d_grad = {.name = "avgpool2d_grad", .arity = 1, .attrs = POOL_ATTRS | IR_ATTR_SHAPE,
                                         .shape = shape_avgpool2d_grad, .eval = eval_avgpool2d_grad,
                                         .flops = flops_pool};
