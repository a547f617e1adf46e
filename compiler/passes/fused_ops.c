/* fused_ops.c — the ops the fusion pass (fuse.c) makes: a matrix product or a
 * convolution with its bias add and activation folded in as an epilogue, which
 * is what the runtime's GEMM and convolution write-back do in one pass.
 *
 *   fused_matmul(a, b[, bias]) = act(matmul(a, b) + bias)
 *   fused_conv2d(x, w[, bias]) = act(conv2d(x, w) + bias)
 *   fused_depthwise_conv2d(x, w[, bias]) = act(depthwise_conv2d(x, w) + bias)
 *
 * bias is [N] (the product's columns, the conv's filters or output channels), added to every row.
 * The attributes are the base op's plus `act` (IR_ACT_*, at its default argument,
 * as the runtime applies it). Passes run after
 * autodiff, so these ops need no vjp; they do have a reference evaluation, so
 * the interpreter runs optimised graphs too (tests compare both). */
#include "../ops/ops.h"
#include "../interp.h"


/* The base op's shape rule, then the bias and the activation. */
static bool shape_fused(ir_builder *b, ir_node *n, ir_op base)
{
    char s1[96];
    if (n->nin != 2 && n->nin != 3) return ops_fail(b, n, "takes 2 or 3 operands, not %d", n->nin);
    if (!ir_ops[base]->shape(b, n)) return false;
    if (n->attr.act < IR_ACT_NONE || n->attr.act >= IR_ACT_COUNT)
        return ops_fail(b, n, "unknown activation %d", n->attr.act);
    if (n->nin == 3) {
        const ir_shape *bias = &n->in[2]->shape;
        int64_t cols = n->shape.dims[n->shape.rank - 1];
        if (bias->rank != 1 || bias->batched || bias->dims[0] != cols)
            return ops_fail(b, n, "bias %s is not [%lld]", ops_sh(bias, s1), (long long)cols);
    }
    return true;
}

static bool shape_fused_matmul(ir_builder *b, ir_node *n) { return shape_fused(b, n, IR_MATMUL); }
static bool shape_fused_conv2d(ir_builder *b, ir_node *n) { return shape_fused(b, n, IR_CONV2D); }
static bool shape_fused_dw(ir_builder *b, ir_node *n) { return shape_fused(b, n, IR_DEPTHWISE_CONV2D); }

static void eval_epilogue(const ir_eval_ctx *c, const ir_node *n)
{
    double *y = ir_eval_out(c, n);
    const double *bias = n->nin == 3 ? ir_eval_in(c, n, 2) : NULL;
    int64_t cols = n->shape.dims[n->shape.rank - 1];
    for (int64_t i = 0, e = ir_eval_count(c, &n->shape); i < e; i++)
        y[i] = ir_act_apply(n->attr.act, y[i] + (bias ? bias[i % cols] : 0), ir_acts[n->attr.act].def);
}

/* The base evaluations read in[0], in[1] and the attributes only. */
static void eval_fused_matmul(const ir_eval_ctx *c, const ir_node *n)
{
    ir_ops[IR_MATMUL]->eval(c, n);
    eval_epilogue(c, n);
}

static void eval_fused_conv2d(const ir_eval_ctx *c, const ir_node *n)
{
    ir_ops[IR_CONV2D]->eval(c, n);
    eval_epilogue(c, n);
}

/* The product, then one operation per output element for the bias and one for the activation. */
int64_t ir_fused_epilogue_flops(const ir_node *n, int64_t batch)
{
    return ops_elems(&n->shape, batch) * ((n->nin > 2) + (n->attr.act != IR_ACT_NONE));
}

static int64_t flops_fused_matmul(const ir_node *n, int64_t batch)
{
    return ops_flops_matmul(n, batch) + ir_fused_epilogue_flops(n, batch);
}

static int64_t flops_fused_conv2d(const ir_node *n, int64_t batch)
{
    return ops_flops_conv2d(n, batch) + ir_fused_epilogue_flops(n, batch);
}

static int64_t flops_fused_dw(const ir_node *n, int64_t batch)
{
    return ops_flops_depthwise(n, batch) + ir_fused_epilogue_flops(n, batch);
}

static void eval_fused_dw(const ir_eval_ctx *c, const ir_node *n)
{
    ir_ops[IR_DEPTHWISE_CONV2D]->eval(c, n);
    eval_epilogue(c, n);
}

const ir_op_info ir_op_fused_matmul = {.name = "fused_matmul", .arity = -1,
                                       .attrs = IR_ATTR_TRANS | IR_ATTR_ACT,
                                       .shape = shape_fused_matmul, .eval = eval_fused_matmul,
                                       .flops = flops_fused_matmul};
const ir_op_info ir_op_fused_conv2d = {.name = "fused_conv2d", .arity = -1,
                                       .attrs = IR_ATTR_STRIDE | IR_ATTR_PAD | IR_ATTR_ACT,
                                       .shape = shape_fused_conv2d, .eval = eval_fused_conv2d,
                                       .flops = flops_fused_conv2d};
const ir_op_info ir_op_fused_depthwise_conv2d = {.name = "fused_depthwise_conv2d", .arity = -1,
                                                 .attrs = IR_ATTR_STRIDE | IR_ATTR_PAD | IR_ATTR_DILATION | IR_ATTR_ACT,
                                                 .shape = shape_fused_dw, .eval = eval_fused_dw, .flops = flops_fused_dw};
