/* elementwise.c — unary ops, the activations, and binary ops with NumPy
 * broadcasting. A binary vjp returns gradients of the broadcast shape;
 * autodiff sums them down to each operand's shape. */
#include "ops.h"
#include "../interp.h"

#include <math.h>

/* ---- the activations: rows of runtime/activations.h ------------------------ */

/* The rows as double arithmetic: act_c_apply, act_c_grad, act_c_fused. */
#define KDA_T double
#define KDA_FN(n) act_c_##n
#define KDA_M(fn) fn
#define KDA_RELU(a) ((a) > 0 ? (a) : 0)
#include "activations_c.h"
#undef KDA_T
#undef KDA_FN
#undef KDA_M
#undef KDA_RELU

#define ACT_INFO(NAME, op, name, alias, kind, arg, def, from, f, df) \
    [IR_ACT_##NAME] = {IR_##NAME, name, alias, KDA_KIND_##kind, arg, def, KDA_FROM_##from == KDA_FROM_Y},
const ir_act_info ir_acts[IR_ACT_COUNT] = { KDA_LIST(ACT_INFO) };
#undef ACT_INFO

int ir_act_of(ir_op op)
{
    switch (op) {
#define ACT_CASE(NAME, ...) case IR_##NAME: return IR_ACT_##NAME;
    KDA_LIST(ACT_CASE)
#undef ACT_CASE
    default: return IR_ACT_NONE;
    }
}

double ir_act_apply(int act, double x, double arg) { return act_c_apply(act, x, arg); }
double ir_act_grad(int act, double xy, double dy, double arg) { return act_c_grad(act, xy, dy, arg); }

ir_node *ir_act(ir_builder *b, int act, ir_node *x, double arg)
{
    if (act <= IR_ACT_NONE || act >= IR_ACT_COUNT) {
        snprintf(b->why, sizeof b->why, "unknown activation %d", act);
        return NULL;
    }
    ir_attrs a = ops_attrs();
    a.scalar = ir_acts[act].kind == KDA_KIND_REAL ? arg : 0;
    return ir_make(b, ir_acts[act].op, 1, &x, &a);
}

static double scalar_act(const ir_node *n, double x, double unused)
{
    (void)unused;
    return act_c_apply(ir_act_of(n->op), x, n->attr.scalar);
}

static void eval_act(const ir_eval_ctx *c, const ir_node *n)
{
    const double *in = ir_eval_in(c, n, 0);
    double *y = ir_eval_out(c, n);
    int act = ir_act_of(n->op);
    for (int64_t i = 0, e = ir_eval_count(c, &n->shape); i < e; i++) y[i] = act_c_apply(act, in[i], n->attr.scalar);
}

/* One rule for every activation: act_grad(x or y, dy), the row's df. */
static void vjp_act(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    int act = ir_act_of(n->op);
    ir_attrs a = ops_attrs();
    a.act = act;
    a.scalar = n->attr.scalar;
    ir_node *in[2] = {ir_acts[act].from_y ? n : n->in[0], dy};
    g[0] = ir_make(b, IR_ACT_GRAD, 2, in, &a);
}

#define ACT_OP(NAME, op, kname, alias, kind, arg, def, from, f, df)                                        \
    [KDA_##NAME] = {.name = #op, .arity = 1, .attrs = KDA_KIND_##kind == KDA_KIND_REAL ? IR_ATTR_SCALAR : 0, \
                    .shape = ops_shape_unary, .vjp = vjp_act, .eval = eval_act, .scalar = scalar_act},
const ir_op_info ir_op_acts[KDA_COUNT] = { KDA_LIST(ACT_OP) };
#undef ACT_OP

/* ---- unary ---------------------------------------------------------------- */

#define UNARY_EVAL(name, expr)                                          \
    static double scalar_##name(const ir_node *n, double x, double unused) \
    {                                                                   \
        (void)n, (void)unused;                                          \
        return (expr);                                                  \
    }                                                                   \
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

#define UNARY(n, rule) \
    const ir_op_info ir_op_##n = {.name = #n, .arity = 1, .shape = ops_shape_unary, \
                                  .vjp = rule, .eval = eval_##n, .scalar = scalar_##n};
UNARY(neg, vjp_neg) UNARY(exp, vjp_exp) UNARY(log, vjp_log) UNARY(sqrt, vjp_sqrt)
UNARY(rsqrt, vjp_rsqrt) UNARY(square, vjp_square) UNARY(abs, vjp_abs) UNARY(sign, vjp_none)

/* ---- binary, broadcasting ------------------------------------------------- */

#define BINARY_EVAL(name, expr)                                                   \
    static double scalar_##name(const ir_node *n, double a, double b)             \
    {                                                                             \
        (void)n;                                                                  \
        return (expr);                                                            \
    }                                                                             \
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
BINARY_EVAL(act_grad, act_c_grad(n->attr.act, a, b, n->attr.scalar))
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
                                  .vjp = rule, .eval = eval_##n, .scalar = scalar_##n};
BINARY(add, vjp_add) BINARY(sub, vjp_sub) BINARY(mul, vjp_mul) BINARY(div, vjp_div)
BINARY(maximum, vjp_maximum) BINARY(gt, vjp_none)
/* A gradient itself: no second order. Its act and argument are attributes. */
const ir_op_info ir_op_act_grad = {.name = "act_grad", .arity = 2, .attrs = IR_ATTR_ACT | IR_ATTR_SCALAR,
                                   .shape = ops_shape_binary, .eval = eval_act_grad, .scalar = scalar_act_grad};
