/* elementwise.c — unary ops, and binary ops with NumPy broadcasting. A binary
 * vjp returns gradients of the broadcast shape; autodiff sums them down to
 * each operand's shape. */
#include "ops.h"
#include "../interp.h"

#include <math.h>

/* ---- unary ---------------------------------------------------------------- */

#define UNARY_EVAL(name, expr)                                          \
    static void eval_##name(const ir_eval_ctx *c, const ir_node *n)     \
    {                                                                   \
        const double *in = ir_eval_in(c, n, 0);                         \
        double *y = ir_eval_out(c, n);                                  \
        for (int64_t i = 0, e = ir_eval_count(c, &n->shape); i < e; i++) { \
            double x = in[i];                                           \
            y[i] = (expr);                                              \
        }                                                               \
    }

UNARY_EVAL(neg, -x)
UNARY_EVAL(relu, x > 0 ? x : 0)
UNARY_EVAL(sigmoid, 1 / (1 + exp(-x)))
UNARY_EVAL(tanh, tanh(x))
UNARY_EVAL(exp, exp(x))
UNARY_EVAL(log, log(x))
UNARY_EVAL(sqrt, sqrt(x))
UNARY_EVAL(rsqrt, 1 / sqrt(x))
UNARY_EVAL(square, x * x)
UNARY_EVAL(abs, fabs(x))
UNARY_EVAL(sign, (double)((x > 0) - (x < 0)))

#define MUL(x, y) ir_binary(b, IR_MUL, x, y)
#define DIV(x, y) ir_binary(b, IR_DIV, x, y)
#define SUB(x, y) ir_binary(b, IR_SUB, x, y)
#define ONE ir_scalar(b, 1)

static void vjp_neg(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)n, (void)want;
    g[0] = ir_unary(b, IR_NEG, dy);
}

/* From the output: y > 0 exactly where x > 0, and the forward value is kept anyway. */
static void vjp_relu(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    g[0] = ir_binary(b, IR_RELU_GRAD, n, dy);
}

static void vjp_sigmoid(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    g[0] = MUL(dy, MUL(n, SUB(ONE, n)));                 /* y (1 - y) */
}

static void vjp_tanh(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    g[0] = MUL(dy, SUB(ONE, ir_unary(b, IR_SQUARE, n))); /* 1 - y^2 */
}

static void vjp_exp(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    g[0] = MUL(dy, n);
}

static void vjp_log(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    g[0] = DIV(dy, n->in[0]);
}

static void vjp_sqrt(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    g[0] = ops_scale(b, DIV(dy, n), 0.5);                /* 0.5 / y */
}

static void vjp_rsqrt(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;                                          /* -0.5 x^-3/2 = -0.5 y^3 */
    g[0] = ops_scale(b, MUL(dy, MUL(n, ir_unary(b, IR_SQUARE, n))), -0.5);
}

static void vjp_square(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    g[0] = ops_scale(b, MUL(dy, n->in[0]), 2);
}

static void vjp_abs(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    g[0] = MUL(dy, ir_unary(b, IR_SIGN, n->in[0]));
}

/* Piecewise constant: the gradient is zero, so nothing flows back. */
static void vjp_none(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)b, (void)n, (void)dy, (void)want, (void)g;
}

#define UNARY(n) \
    const ir_op_info ir_op_##n = {.name = #n, .arity = 1, .shape = ops_shape_unary, \
                                  .vjp = vjp_##n, .eval = eval_##n};
UNARY(neg) UNARY(relu) UNARY(sigmoid) UNARY(tanh) UNARY(exp) UNARY(log) UNARY(sqrt)
UNARY(rsqrt) UNARY(square) UNARY(abs)
const ir_op_info ir_op_sign = {.name = "sign", .arity = 1, .shape = ops_shape_unary,
                               .vjp = vjp_none, .eval = eval_sign};

/* ---- binary, broadcasting ------------------------------------------------- */

#define BINARY_EVAL(name, expr)                                                   \
    static void eval_##name(const ir_eval_ctx *c, const ir_node *n)               \
    {                                                                             \
        const double *pa = ir_eval_in(c, n, 0), *pb = ir_eval_in(c, n, 1);        \
        double *y = ir_eval_out(c, n);                                            \
        int64_t dims[IR_MAX_RANK], sa[IR_MAX_RANK], sb[IR_MAX_RANK];              \
        int rank = ir_eval_dims(c, &n->shape, dims);                              \
        ir_eval_bstrides(c, &n->in[0]->shape, &n->shape, sa);                     \
        ir_eval_bstrides(c, &n->in[1]->shape, &n->shape, sb);                     \
        for (int64_t i = 0, e = ir_eval_count(c, &n->shape); i < e; i++) {        \
            double a = pa[ir_eval_offset(rank, dims, sa, i)];                     \
            double b = pb[ir_eval_offset(rank, dims, sb, i)];                     \
            y[i] = (expr);                                                        \
        }                                                                         \
    }

BINARY_EVAL(add, a + b)
BINARY_EVAL(sub, a - b)
BINARY_EVAL(mul, a * b)
BINARY_EVAL(div, a / b)
BINARY_EVAL(maximum, a >= b ? a : b)
BINARY_EVAL(relu_grad, a > 0 ? b : 0)
BINARY_EVAL(gt, a > b ? 1.0 : 0.0)

static void vjp_add(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)b, (void)n, (void)want;
    g[0] = g[1] = dy;
}

static void vjp_sub(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)n;
    g[0] = dy;
    if (want[1]) g[1] = ir_unary(b, IR_NEG, dy);
}

static void vjp_mul(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    if (want[0]) g[0] = MUL(dy, n->in[1]);
    if (want[1]) g[1] = MUL(dy, n->in[0]);
}

static void vjp_div(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    ir_node *da = DIV(dy, n->in[1]);
    if (want[0]) g[0] = da;
    if (want[1]) g[1] = ir_unary(b, IR_NEG, MUL(da, n));   /* -dy a / b^2 = -(dy / b) y */
}

/* Ties go to a, as the forward pass picks a on ties. */
static void vjp_maximum(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    ir_node *b_wins = ir_binary(b, IR_GT, n->in[1], n->in[0]);
    if (want[0]) g[0] = MUL(dy, SUB(ONE, b_wins));
    if (want[1]) g[1] = MUL(dy, b_wins);
}

#define BINARY(n, rule) \
    const ir_op_info ir_op_##n = {.name = #n, .arity = 2, .shape = ops_shape_binary, \
                                  .vjp = rule, .eval = eval_##n};
BINARY(add, vjp_add) BINARY(sub, vjp_sub) BINARY(mul, vjp_mul) BINARY(div, vjp_div)
BINARY(maximum, vjp_maximum) BINARY(gt, vjp_none)
BINARY(relu_grad, NULL)   /* a gradient itself: no second order */
