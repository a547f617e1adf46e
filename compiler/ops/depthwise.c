/* depthwise.c — depthwise 2-D convolution over NHWC (Keras' DepthwiseConv2D):
 * x [N, H, W, C] by w [kh, kw, C, M] gives y [N, Ho, Wo, C * M] with
 *   y[n, oh, ow, c * M + m] = sum_{i, j} x[n, oh * sh - pt + i * dh, ow * sw - pl + j * dw, c] * w[i, j, c, m]
 * (zeros outside the image), and its two gradients. Attributes: stride,
 * pad_lo / pad_hi as for conv2d, dilation (0 or 1: none). */
#include "ops.h"
#include "../interp.h"

#include <string.h>

static int dil(const ir_attrs *a, int d) { return a->dilation[d] > 1 ? a->dilation[d] : 1; }

/* The depthwise conv of x by w as n's attributes say; false with why set. */
static bool dw_shape(ir_builder *b, const ir_node *n, const ir_shape *x, const ir_shape *w, ir_shape *out)
{
    char s1[96], s2[96];
    if (x->rank != 4 || w->rank != 4 || w->batched)
        return ops_fail(b, n, "expects an input [N, H, W, C] and a kernel [kh, kw, C, M], not %s and %s",
                        ir_shape_keras(x, s1, sizeof s1), ops_sh(w, s2));
    if (x->dims[3] != w->dims[2])
        return ops_fail(b, n, "input has %lld channels, kernel %s expects %lld",
                        (long long)x->dims[3], ops_sh(w, s2), (long long)w->dims[2]);
    const ir_attrs *a = &n->attr;
    *out = *x;
    for (int d = 0; d < 2; d++) {
        if (a->dilation[d] < 0 || a->dilation[d] > 65536 || w->dims[d] > 65536)
            return ops_fail(b, n, "dilation (%d, %d) out of range", a->dilation[0], a->dilation[1]);
        int64_t keff = (w->dims[d] - 1) * dil(a, d) + 1;
        int64_t o = ops_window_out(x->dims[1 + d], keff, a->stride[d], a->pad_lo[d], a->pad_hi[d]);
        if (o < 1)
            return ops_fail(b, n, "kernel %s with dilation (%d, %d) does not fit input %s with strides (%d, %d) and padding",
                            ops_sh(w, s2), dil(a, 0), dil(a, 1), ops_sh(x, s1), a->stride[0], a->stride[1]);
        out->dims[1 + d] = o;
    }
    if (w->dims[2] * w->dims[3] > ((int64_t)1 << 40)) return ops_fail(b, n, "too many output channels");
    out->dims[3] = w->dims[2] * w->dims[3];
    return true;
}

static bool shape_dw(ir_builder *b, ir_node *n)
{
    return dw_shape(b, n, &n->in[0]->shape, &n->in[1]->shape, &n->shape);
}

/* (dy, w) -> dx of attr.shape: the depthwise conv of attr.shape by w must give dy. */
static bool shape_dw_bwd_data(ir_builder *b, ir_node *n)
{
    ir_shape y;
    char s1[96], s2[96];
    if (!ops_shape_attr(b, n) || !dw_shape(b, n, &n->attr.shape, &n->in[1]->shape, &y)) return false;
    if (!ir_shape_equal(&y, &n->in[0]->shape))
        return ops_fail(b, n, "dy is %s, the conv gives %s", ops_sh(&n->in[0]->shape, s1), ops_sh(&y, s2));
    return true;
}

/* (x, dy) -> dw of attr.shape: the depthwise conv of x by attr.shape must give dy. */
static bool shape_dw_bwd_filter(ir_builder *b, ir_node *n)
{
    ir_shape y;
    char s1[96], s2[96];
    if (!ops_shape_attr(b, n) || !dw_shape(b, n, &n->in[0]->shape, &n->attr.shape, &y)) return false;
    if (!ir_shape_equal(&y, &n->in[1]->shape))
        return ops_fail(b, n, "dy is %s, the conv gives %s", ops_sh(&n->in[1]->shape, s1), ops_sh(&y, s2));
    return true;
}

enum dw_mode { DW_FORWARD, DW_DATA, DW_FILTER };

/* One loop nest for all three: every (output, tap) pair that reads inside the
 * image accumulates its product into the mode's output. */
static void dw_loop(const ir_eval_ctx *c, const ir_node *n, const ir_shape *xs, const ir_shape *ws,
                    const ir_shape *ys, double *x, double *w, double *y, enum dw_mode mode)
{
    int64_t xd[4], wd[4], yd[4];
    ir_eval_dims(c, xs, xd);
    ir_eval_dims(c, ws, wd);
    ir_eval_dims(c, ys, yd);
    const ir_attrs *a = &n->attr;
    int64_t H = xd[1], W = xd[2], C = xd[3], KH = wd[0], KW = wd[1], M = wd[3];
    for (int64_t b = 0; b < yd[0]; b++)
        for (int64_t oh = 0; oh < yd[1]; oh++)
            for (int64_t ow = 0; ow < yd[2]; ow++)
                for (int64_t i = 0; i < KH; i++) {
                    int64_t h = oh * a->stride[0] - a->pad_lo[0] + i * dil(a, 0);
                    if (h < 0 || h >= H) continue;
                    for (int64_t j = 0; j < KW; j++) {
                        int64_t v = ow * a->stride[1] - a->pad_lo[1] + j * dil(a, 1);
                        if (v < 0 || v >= W) continue;
                        double *xp = x + ((b * H + h) * W + v) * C;
                        double *wp = w + (i * KW + j) * C * M;
                        double *yp = y + ((b * yd[1] + oh) * yd[2] + ow) * C * M;
                        for (int64_t ch = 0; ch < C; ch++)
                            for (int64_t m = 0; m < M; m++) {
                                int64_t k = ch * M + m;
                                if (mode == DW_FORWARD) yp[k] += xp[ch] * wp[k];
                                else if (mode == DW_DATA) xp[ch] += yp[k] * wp[k];
                                else wp[k] += xp[ch] * yp[k];
                            }
                    }
                }
}

static void eval_dw(const ir_eval_ctx *c, const ir_node *n)
{
    double *y = ir_eval_out(c, n);
    memset(y, 0, (size_t)ir_eval_count(c, &n->shape) * sizeof *y);
    dw_loop(c, n, &n->in[0]->shape, &n->in[1]->shape, &n->shape, (double *)ir_eval_in(c, n, 0),
            (double *)ir_eval_in(c, n, 1), y, DW_FORWARD);
}

static void eval_dw_bwd_data(const ir_eval_ctx *c, const ir_node *n)   /* (dy, w) */
{
    double *dx = ir_eval_out(c, n);
    memset(dx, 0, (size_t)ir_eval_count(c, &n->shape) * sizeof *dx);
    dw_loop(c, n, &n->shape, &n->in[1]->shape, &n->in[0]->shape, dx, (double *)ir_eval_in(c, n, 1),
            (double *)ir_eval_in(c, n, 0), DW_DATA);
}

static void eval_dw_bwd_filter(const ir_eval_ctx *c, const ir_node *n) /* (x, dy) */
{
    double *dw = ir_eval_out(c, n);
    memset(dw, 0, (size_t)ir_eval_count(c, &n->shape) * sizeof *dw);
    dw_loop(c, n, &n->in[0]->shape, &n->shape, &n->in[1]->shape, (double *)ir_eval_in(c, n, 0), dw,
            (double *)ir_eval_in(c, n, 1), DW_FILTER);
}

static void vjp_dw(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    ir_attrs a = n->attr;
    if (want[0]) {
        a.shape = n->in[0]->shape;
        ir_node *in[2] = {dy, n->in[1]};
        g[0] = ir_make(b, IR_DEPTHWISE_CONV2D_BWD_DATA, 2, in, &a);
    }
    if (want[1]) {
        a.shape = n->in[1]->shape;
        ir_node *in[2] = {n->in[0], dy};
        g[1] = ir_make(b, IR_DEPTHWISE_CONV2D_BWD_FILTER, 2, in, &a);
    }
}

/* Each output element (channel c * M + m) is a sum of kh * kw products; the
 * gradients make the same products. */
int64_t ops_flops_depthwise(const ir_node *n, int64_t batch)
{
    const ir_shape *w = n->op == IR_DEPTHWISE_CONV2D_BWD_FILTER ? &n->shape : &n->in[1]->shape;
    const ir_shape *y = n->op == IR_DEPTHWISE_CONV2D_BWD_DATA     ? &n->in[0]->shape
                        : n->op == IR_DEPTHWISE_CONV2D_BWD_FILTER ? &n->in[1]->shape
                                                                  : &n->shape;   /* the forward, fused or not */
    return 2 * ops_elems(y, batch) * w->dims[0] * w->dims[1];
}

#define DW_ATTRS (IR_ATTR_STRIDE | IR_ATTR_PAD | IR_ATTR_DILATION)
const ir_op_info ir_op_depthwise_conv2d = {.name = "depthwise_conv2d", .arity = 2, .attrs = DW_ATTRS,
                                           .shape = shape_dw, .vjp = vjp_dw, .eval = eval_dw, .flops = ops_flops_depthwise};
const ir_op_info ir_op_depthwise_conv2d_bwd_data = {.name = "depthwise_conv2d_bwd_data", .arity = 2,
                                                    .attrs = DW_ATTRS | IR_ATTR_SHAPE,
                                                    .shape = shape_dw_bwd_data, .eval = eval_dw_bwd_data,
                                                    .flops = ops_flops_depthwise};
const ir_op_info ir_op_depthwise_conv2d_bwd_filter = {.name = "depthwise_conv2d_bwd_filter", .arity = 2,
                                                      .attrs = DW_ATTRS | IR_ATTR_SHAPE,
                                                      .shape = shape_dw_bwd_filter, .eval = eval_dw_bwd_filter,
                                                      .flops = ops_flops_depthwise};
