/* ops.h — what the op files share: the op table entries they export, the
 * helpers their shape rules use to report errors, and the builders their vjp
 * rules use. Private to compiler/ops and ir.c. */
#ifndef KDSL_OPS_H
#define KDSL_OPS_H

#include "../ir.h"

/* Sets b->why to "<op>: <message>" and returns false, for shape rules. */
bool ops_fail(ir_builder *b, const ir_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A shape as error messages print it: per sample ("[26, 26, 32]"). */
const char *ops_sh(const ir_shape *s, char buf[static 96]);
/* Attributes with everything zero: the base of every attribute set the rules build. */
ir_attrs ops_attrs(void);
/* x * y with y a constant scalar (no node when c == 1). */
ir_node *ops_scale(ir_builder *b, ir_node *x, double c);

/* Elements of a shape at `batch` samples (its per-sample count times batch when batched). */
int64_t ops_elems(const ir_shape *s, int64_t batch);
/* FLOP rules several ops share: a multiply-add is 2. */
int64_t ops_flops_per_input(const ir_node *n, int64_t batch);   /* 1 per element of in[0] (reductions) */
int64_t ops_flops_matmul(const ir_node *n, int64_t batch);      /* matmul.c: the product of in[0], in[1] */
int64_t ops_flops_conv2d(const ir_node *n, int64_t batch);      /* conv.c: the convolution and its gradients */
int64_t ops_flops_depthwise(const ir_node *n, int64_t batch);   /* depthwise.c: the same for depthwise */
int64_t ir_fused_epilogue_flops(const ir_node *n, int64_t batch);   /* passes/fused_ops.c: bias and activation */

/* Shape rules several op families share. */
bool ops_shape_unary(ir_builder *b, ir_node *n);      /* same shape as in[0] */
bool ops_shape_binary(ir_builder *b, ir_node *n);     /* NumPy broadcast of in[0], in[1] */
bool ops_shape_attr(ir_builder *b, ir_node *n);       /* attr.shape (leaves) */
bool ops_check_rank(ir_builder *b, const ir_shape *s);
/* Output size of a window sliding over `in` padded by lo + hi: (in + lo + hi - k) / stride + 1;
 * -1 when the window does not fit or the attributes are out of range. */
int64_t ops_window_out(int64_t in, int64_t k, int stride, int64_t lo, int64_t hi);

#define OPS_LIST(X) \
    X(INPUT, input) X(LABEL, label) X(VAR, var) X(CONST, const) X(HYPER, hyper) \
    X(NEG, neg) X(EXP, exp) X(LOG, log) \
    X(SQRT, sqrt) X(RSQRT, rsqrt) X(SQUARE, square) X(ABS, abs) X(SIGN, sign) \
    X(ADD, add) X(SUB, sub) X(MUL, mul) X(DIV, div) X(MAXIMUM, maximum) \
    X(ACT_GRAD, act_grad) X(GT, gt) \
    X(MATMUL, matmul) \
    X(SUM, sum) X(MEAN, mean) X(MAX, max) X(MAX_GRAD, max_grad) X(BROADCAST, broadcast) \
    X(RESHAPE, reshape) X(TRANSPOSE, transpose) X(CONCAT, concat) X(SLICE, slice) X(PAD, pad) X(REVERSE, reverse) \
    X(SOFTMAX, softmax) X(LOG_SOFTMAX, log_softmax) X(DROPOUT_MASK, dropout_mask) X(GAUSSIAN_NOISE, gaussian_noise) \
    X(RANK_MEAN, rank_mean) \
    X(CONV2D, conv2d) X(CONV2D_BWD_DATA, conv2d_bwd_data) X(CONV2D_BWD_FILTER, conv2d_bwd_filter) \
    X(MAXPOOL2D, maxpool2d) X(MAXPOOL2D_GRAD, maxpool2d_grad) \
    X(AVGPOOL2D, avgpool2d) X(AVGPOOL2D_GRAD, avgpool2d_grad) \
    X(DEPTHWISE_CONV2D, depthwise_conv2d) X(DEPTHWISE_CONV2D_BWD_DATA, depthwise_conv2d_bwd_data) \
    X(DEPTHWISE_CONV2D_BWD_FILTER, depthwise_conv2d_bwd_filter) \
    X(GATHER, gather) X(GATHER_GRAD, gather_grad) X(SCAN, scan) X(SCAN_ARG, scan_arg) \
    X(SOFTMAX_XENT, softmax_xent) X(SOFTMAX_XENT_GRAD, softmax_xent_grad) \
    X(FUSED_MATMUL, fused_matmul) X(FUSED_CONV2D, fused_conv2d) \
    X(FUSED_DEPTHWISE_CONV2D, fused_depthwise_conv2d)

#define OPS_DECLARE(E, n) extern const ir_op_info ir_op_##n;
OPS_LIST(OPS_DECLARE)
#undef OPS_DECLARE
/* The activations' entries (not in OPS_LIST): one per row of runtime/activations.h. */
extern const ir_op_info ir_op_acts[KDA_COUNT];

#endif
