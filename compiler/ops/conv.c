/* conv.c — 2-D convolution over NHWC with a [kh, kw, C, F] kernel (Keras'
 * layouts), and its two gradients. */
#include "ops.h"
#include "../interp.h"

#include <string.h>

/* The conv of x by w as `a` says; false with why set. */
static bool conv_shape(ir_builder *b, const ir_node *n, const ir_shape *x, const ir_shape *w, ir_shape *out)
{
    char s1[96], s2[96];
    if (x->rank != 4 || w->rank != 4 || w->batched)
        return ops_fail(b, n, "expects an input [N, H, W, C] and a kernel [kh, kw, C, F], not %s and %s",
                        ir_shape_keras(x, s1, sizeof s1), ops_sh(w, s2));
    if (x->dims[3] != w->dims[2])
        return ops_fail(b, n, "input has %lld channels, kernel %s expects %lld",
                        (long long)x->dims[3], ops_sh(w, s2), (long long)w->dims[2]);
    *out = *x;
    for (int d = 0; d < 2; d++) {
        const ir_attrs *a = &n->attr;
        int64_t o = ops_window_out(x->dims[1 + d], w->dims[d], a->stride[d], a->pad_lo[d], a->pad_hi[d]);
        if (o < 1)
            return ops_fail(b, n, "kernel %s does not fit input %s with strides (%d, %d) and padding",
                            ops_sh(w, s2), ops_sh(x, s1), a->stride[0], a->stride[1]);
        out->dims[1 + d] = o;
    }
    out->dims[3] = w->dims[3];
    return true;
}

static bool shape_conv2d(ir_builder *b, ir_node *n)
{
    return conv_shape(b, n, &n->in[0]->shape, &n->in[1]->shape, &n->shape);
}

/* (dy, w) -> dx of attr.shape: the conv of attr.shape by w must give dy. */
static bool shape_conv2d_bwd_data(ir_builder *b, ir_node *n)
{
    ir_shape y;
    char s1[96], s2[96];
    if (!ops_shape_attr(b, n) || !conv_shape(b, n, &n->attr.shape, &n->in[1]->shape, &y)) return false;
    if (!ir_shape_equal(&y, &n->in[0]->shape))
        return ops_fail(b, n, "dy is %s, the conv gives %s", ops_sh(&n->in[0]->shape, s1), ops_sh(&y, s2));
    return true;
}

/* (x, dy) -> dw of attr.shape: the conv of x by attr.shape must give dy. */
static bool shape_conv2d_bwd_filter(ir_builder *b, ir_node *n)
{
    ir_shape y;
    char s1[96], s2[96];
    if (!ops_shape_attr(b, n) || !conv_shape(b, n, &n->in[0]->shape, &n->attr.shape, &y)) return false;
    if (!ir_shape_equal(&y, &n->in[1]->shape))
        return ops_fail(b, n, "dy is %s, the conv gives %s", ops_sh(&n->in[1]->shape, s1), ops_sh(&y, s2));
    return true;
}

enum conv_mode { CONV_FORWARD, CONV_DATA, CONV_FILTER };

/* The one loop nest of all three: visits every (output, tap) pair that reads an
 * input position inside the image, and accumulates the product into the output
 * of the mode. x, w and y are the forward roles; one of them is written. */
static void conv_loop(const ir_eval_ctx *c, const ir_node *n, const ir_shape *xs, const ir_shape *ws,
                      const ir_shape *ys, double *x, double *w, double *y, enum conv_mode mode)
{
    int64_t xd[4], wd[4], yd[4];
    ir_eval_dims(c, xs, xd);
    ir_eval_dims(c, ws, wd);
    ir_eval_dims(c, ys, yd);
    const ir_attrs *a = &n->attr;
    int64_t H = xd[1], W = xd[2], C = xd[3], KH = wd[0], KW = wd[1], F = wd[3];
    for (int64_t b = 0; b < yd[0]; b++)
        for (int64_t oh = 0; oh < yd[1]; oh++)
            for (int64_t ow = 0; ow < yd[2]; ow++)
                for (int64_t i = 0; i < KH; i++) {
                    int64_t h = oh * a->stride[0] - a->pad_lo[0] + i;
                    if (h < 0 || h >= H) continue;
                    for (int64_t j = 0; j < KW; j++) {
                        int64_t v = ow * a->stride[1] - a->pad_lo[1] + j;
                        if (v < 0 || v >= W) continue;
                        double *xp = x + ((b * H + h) * W + v) * C;
                        double *wp = w + (i * KW + j) * C * F;
                        double *yp = y + ((b * yd[1] + oh) * yd[2] + ow) * F;
                        for (int64_t ch = 0; ch < C; ch++)
                            for (int64_t f = 0; f < F; f++) {
                                if (mode == CONV_FORWARD) yp[f] += xp[ch] * wp[ch * F + f];
                                else if (mode == CONV_DATA) xp[ch] += yp[f] * wp[ch * F + f];
                                else wp[ch * F + f] += xp[ch] * yp[f];
                            }
                    }
                }
}

static void eval_conv2d(const ir_eval_ctx *c, const ir_node *n)
{
    double *y = ir_eval_out(c, n);
    memset(y, 0, (size_t)ir_eval_count(c, &n->shape) * sizeof *y);
    conv_loop(c, n, &n->in[0]->shape, &n->in[1]->shape, &n->shape, (double *)ir_eval_in(c, n, 0),
              (double *)ir_eval_in(c, n, 1), y, CONV_FORWARD);
}

static void eval_conv2d_bwd_data(const ir_eval_ctx *c, const ir_node *n)   /* (dy, w) */
{
    double *dx = ir_eval_out(c, n);
    memset(dx, 0, (size_t)ir_eval_count(c, &n->shape) * sizeof *dx);
    conv_loop(c, n, &n->shape, &n->in[1]->shape, &n->in[0]->shape, dx, (double *)ir_eval_in(c, n, 1),
              (double *)ir_eval_in(c, n, 0), CONV_DATA);
}

static void eval_conv2d_bwd_filter(const ir_eval_ctx *c, const ir_node *n) /* (x, dy) */
{
    double *dw = ir_eval_out(c, n);
    memset(dw, 0, (size_t)ir_eval_count(c, &n->shape) * sizeof *dw);
    conv_loop(c, n, &n->in[0]->shape, &n->shape, &n->in[1]->shape, (double *)ir_eval_in(c, n, 0), dw,
              (double *)ir_eval_in(c, n, 1), CONV_FILTER);
}

static void vjp_conv2d(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    ir_attrs a = n->attr;
    if (want[0]) {
        a.shape = n->in[0]->shape;
        ir_node *in[2] = {dy, n->in[1]};
        g[0] = ir_make(b, IR_CONV2D_BWD_DATA, 2, in, &a);
    }
    if (want[1]) {
        a.shape = n->in[1]->shape;
        ir_node *in[2] = {n->in[0], dy};
        g[1] = ir_make(b, IR_CONV2D_BWD_FILTER, 2, in, &a);
    }
}

/* Each output element of the forward convolution is a sum of kh * kw * in
 * products; both gradients make the same products. The kernel is in[1] of
 * the forward op and of the data gradient, the result of the filter
 * gradient; the forward's output is the result, dy, dy. */
int64_t ops_flops_conv2d(const ir_node *n, int64_t batch)
{
    const ir_shape *w = n->op == IR_CONV2D_BWD_FILTER ? &n->shape : &n->in[1]->shape;
    const ir_shape *y = n->op == IR_CONV2D_BWD_DATA || n->op == IR_CONV2D_BWD_FILTER ? &n->in[n->op == IR_CONV2D_BWD_FILTER]->shape
                                                                                    : &n->shape;
    return 2 * ops_elems(y, batch) * w->dims[0] * w->dims[1] * w->dims[2];
}

#define CONV_ATTRS (IR_ATTR_STRIDE | IR_ATTR_PAD)
const ir_op_info ir_op_conv2d = {.name = "conv2d", .arity = 2, .attrs = CONV_ATTRS,
                                 .shape = shape_conv2d, .vjp = vjp_conv2d, .eval = eval_conv2d,
                                 .flops = ops_flops_conv2d};
/* conv2d_bwd_data is also Conv2DTranspose's forward op, so it has a vjp: out = A(w)^T dy for the
 * convolution A(w) x = conv2d(x, w), hence d/d(dy) = A(w) g = conv2d(g, w), and
 * d/dw <g, A(w)^T dy> = d/dw <conv2d(g, w), dy> = conv2d_bwd_filter(g, dy). */
static void vjp_conv2d_bwd_data(ir_builder *b, ir_node *n, ir_node *g, const bool *want, ir_node **grads)
{
    ir_attrs a = n->attr;
    if (want[0]) {
        ir_node *in[2] = {g, n->in[1]};
        grads[0] = ir_make(b, IR_CONV2D, 2, in, &a);
    }
    if (want[1]) {
        a.shape = n->in[1]->shape;
        ir_node *in[2] = {g, n->in[0]};
        grads[1] = ir_make(b, IR_CONV2D_BWD_FILTER, 2, in, &a);
    }
}

const ir_op_info ir_op_conv2d_bwd_data = {.name = "conv2d_bwd_data", .arity = 2,
                                          .attrs = CONV_ATTRS | IR_ATTR_SHAPE,
                                          .shape = shape_conv2d_bwd_data, .vjp = vjp_conv2d_bwd_data,
                                          .eval = eval_conv2d_bwd_data, .flops = ops_flops_conv2d};
const ir_op_info ir_op_conv2d_bwd_filter = {.name = "conv2d_bwd_filter", .arity = 2,
                                            .attrs = CONV_ATTRS | IR_ATTR_SHAPE,
                                            .shape = shape_conv2d_bwd_filter, .eval = eval_conv2d_bwd_filter,
                                            .flops = ops_flops_conv2d};
