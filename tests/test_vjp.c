/* test_vjp.c — every op's vjp rule against central finite differences: a tiny
 * graph loss = sum(op(inputs) * r) with r random, its gradient graph built by
 * autodiff, both evaluated by the reference interpreter in double precision. */
#include "autodiff.h"
#include "gradcheck.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>

#define D(...) ((const int64_t[]){__VA_ARGS__})
#define TOL 1e-6

/* Differentiates sum(y * r) w.r.t. the n leaves and checks; y = NULL fails with why. */
static void expect_grads(gc_ctx *c, ir_node *y, int n, ir_node *const *wrt)
{
    ck_assert_msg(y != NULL, "%s", c->b.why);
    ir_node *loss = gc_weighted_sum(c, y);
    double err = gc_grad_check(c, loss, n, wrt);
    ck_assert_msg(err < TOL, "relative error %g", err);
}

/* ---- unary elementwise ---------------------------------------------------- */

static const struct {
    ir_op op;
    gc_fill fill;
    double lo, hi;
    ir_op uses;           /* an op the gradient must be built from, or IR_OP_COUNT */
} unary_cases[] = {
    {IR_NEG, GC_UNIFORM, -2, 2, IR_OP_COUNT},
    {IR_RELU, GC_AWAY, 0.05, 2, IR_ACT_GRAD},
    {IR_SIGMOID, GC_UNIFORM, -3, 3, IR_OP_COUNT},
    {IR_TANH, GC_UNIFORM, -2, 2, IR_OP_COUNT},
    {IR_EXP, GC_UNIFORM, -2, 2, IR_OP_COUNT},
    {IR_LOG, GC_UNIFORM, 0.3, 3, IR_OP_COUNT},
    {IR_SQRT, GC_UNIFORM, 0.3, 3, IR_OP_COUNT},
    {IR_RSQRT, GC_UNIFORM, 0.3, 3, IR_OP_COUNT},
    {IR_SQUARE, GC_UNIFORM, -2, 2, IR_OP_COUNT},
    {IR_ABS, GC_AWAY, 0.05, 2, IR_SIGN},
    {IR_SIGN, GC_AWAY, 0.05, 2, IR_OP_COUNT},
};

START_TEST(unary)
{
    gc_ctx c;
    gc_init(&c, 2);
    ir_node *x = gc_input(&c, 2, D(3, 4), unary_cases[_i].fill, unary_cases[_i].lo, unary_cases[_i].hi);
    ir_node *y = ir_unary(&c.b, unary_cases[_i].op, x);
    expect_grads(&c, y, 1, &x);
    if (unary_cases[_i].uses != IR_OP_COUNT) ck_assert_int_gt(gc_count_op(c.g, unary_cases[_i].uses), 0);
    gc_free(&c);
}
END_TEST

/* The relu vjp reads the relu's output, not its input: nothing recomputes it. */
START_TEST(relu_uses_output)
{
    gc_ctx c;
    gc_init(&c, 2);
    ir_node *x = gc_input(&c, 1, D(5), GC_AWAY, 0.1, 1);
    ir_node *y = ir_unary(&c.b, IR_RELU, x);
    ir_node *loss = gc_weighted_sum(&c, y);
    ir_node **d = ir_gradients(&c.b, loss, 1, &x);
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(d[0]->op, IR_ACT_GRAD);
    ck_assert_ptr_eq(d[0]->in[0], y);
    gc_free(&c);
}
END_TEST

/* ---- the activation table (runtime/activations.h) --------------------------- */

/* Every row's gradient (one act_grad op, the row's df) against central
 * differences at its default argument, |x| in [0.05, 2] (the kinks are at 0,
 * +-3 and 6); a new row is checked without being listed here. */
START_TEST(activation_grad_row)
{
    int act = _i + 1;
    gc_ctx c;
    gc_init(&c, 2);
    ir_node *x = gc_input(&c, 2, D(3, 4), GC_AWAY, 0.05, 2);
    ir_node *y = ir_act(&c.b, act, x, ir_acts[act].def);
    expect_grads(&c, y, 1, &x);
    ck_assert_int_gt(gc_count_op(c.g, IR_ACT_GRAD), 0);
    gc_free(&c);
}
END_TEST

/* Other arguments and ranges. */
static const struct {
    int act;
    double arg;
    gc_fill fill;
    double lo, hi;
} act_cases[] = {
    {IR_ACT_RELU, 0, GC_AWAY, 0.05, 2},       {IR_ACT_SIGMOID, 0, GC_UNIFORM, -3, 3},
    {IR_ACT_TANH, 0, GC_UNIFORM, -2, 2},      {IR_ACT_ELU, 0.7, GC_AWAY, 0.05, 2},
    {IR_ACT_ELU, 1.0, GC_AWAY, 0.05, 2},      {IR_ACT_SELU, 0, GC_AWAY, 0.05, 2},
    {IR_ACT_GELU, 0, GC_UNIFORM, -3, 3},      {IR_ACT_GELU_TANH, 0, GC_UNIFORM, -3, 3},
    {IR_ACT_SOFTPLUS, 0, GC_UNIFORM, -4, 4},  {IR_ACT_SOFTSIGN, 0, GC_AWAY, 0.05, 3},
    {IR_ACT_SWISH, 0, GC_UNIFORM, -4, 4},     {IR_ACT_MISH, 0, GC_UNIFORM, -4, 4},
    {IR_ACT_HARD_SIGMOID, 0, GC_AWAY, 0.05, 2.9}, {IR_ACT_HARD_SIGMOID, 0, GC_AWAY, 3.1, 5},
    {IR_ACT_RELU6, 0, GC_AWAY, 0.05, 5.9},    {IR_ACT_RELU6, 0, GC_UNIFORM, 6.1, 8},
    {IR_ACT_LEAKY_RELU, 0.1, GC_AWAY, 0.05, 2}, {IR_ACT_LEAKY_RELU, 0.2, GC_AWAY, 0.05, 2},
};

START_TEST(activation_grad)
{
    gc_ctx c;
    gc_init(&c, 2);
    ir_node *x = gc_input(&c, 2, D(3, 4), act_cases[_i].fill, act_cases[_i].lo, act_cases[_i].hi);
    ir_node *y = ir_act(&c.b, act_cases[_i].act, x, act_cases[_i].arg);
    expect_grads(&c, y, 1, &x);
    ck_assert_int_gt(gc_count_op(c.g, IR_ACT_GRAD), 0);
    gc_free(&c);
}
END_TEST

/* Values at -1, 1 and 2.5, computed by hand (Python's math module) from the
 * definitions in Keras 3's docs; leaky_relu and elu at their defaults. */
START_TEST(activation_values)
{
    static const struct {
        int act;
        double y[3];
    } want[] = {
        {IR_ACT_ELU, {-0.6321205588285577, 1.0, 2.5}},
        {IR_ACT_SELU, {-1.1113307378125625, 1.0507009873554805, 2.626752468388701}},
        {IR_ACT_GELU, {-0.15865525393145707, 0.8413447460685429, 2.4844758366855597}},
        {IR_ACT_GELU_TANH, {-0.15880800939172324, 0.8411919906082768, 2.484915733910001}},
        {IR_ACT_SOFTPLUS, {0.31326168751822286, 1.3132616875182228, 2.5788897342925496}},
        {IR_ACT_SOFTSIGN, {-0.5, 0.5, 0.7142857142857143}},
        {IR_ACT_SWISH, {-0.2689414213699951, 0.7310585786300049, 2.3103545499468914}},
        {IR_ACT_MISH, {-0.30340146137410895, 0.8650983882673103, 2.471392304557881}},
        {IR_ACT_HARD_SIGMOID, {1.0 / 3, 2.0 / 3, 0.9166666666666666}},
        {IR_ACT_RELU6, {0, 1, 2.5}},
        {IR_ACT_LEAKY_RELU, {-0.2, 1, 2.5}},
    };
    const double xs[3] = {-1, 1, 2.5};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        for (int k = 0; k < 3; k++) {
            double y = ir_act_apply(want[i].act, xs[k], ir_acts[want[i].act].def);
            ck_assert_msg(fabs(y - want[i].y[k]) <= 1e-15 * fmax(1, fabs(want[i].y[k])), "%s(%g) = %.17g, want %.17g",
                          ir_ops[ir_acts[want[i].act].op]->name, xs[k], y, want[i].y[k]);
        }
    /* the extremes: softplus neither overflows nor loses its small values; relu6 clips */
    ck_assert(ir_act_apply(IR_ACT_SOFTPLUS, 1000, 0) == 1000);
    ck_assert(fabs(ir_act_apply(IR_ACT_SOFTPLUS, -50, 0) - 1.9287498479639178e-22) < 1e-36);
    ck_assert(ir_act_apply(IR_ACT_RELU6, 7, 0) == 6);
    ck_assert(ir_act_apply(IR_ACT_LEAKY_RELU, -2, 0.1) == -0.2);
    ck_assert(ir_act_apply(IR_ACT_ELU, -1, 2) == 2 * expm1(-1.0));
}
END_TEST

/* ---- binary, with broadcasting ------------------------------------------ */

static const ir_op binary_ops[] = {IR_ADD, IR_SUB, IR_MUL, IR_DIV, IR_MAXIMUM, IR_GT};
enum { NBINARY = sizeof binary_ops / sizeof binary_ops[0], NPATTERNS = 5 };

/* Pattern p of operand shapes: each broadcasts in a different way. */
static void binary_operands(gc_ctx *c, int p, ir_node **a, ir_node **b)
{
    /* Denominators stay in [0.5, 2] so that div is smooth. */
    switch (p) {
    case 0:    /* same shape */
        *a = gc_input(c, 2, D(3, 4), GC_UNIFORM, -2, 2);
        *b = gc_input(c, 2, D(3, 4), GC_UNIFORM, 0.5, 2);
        break;
    case 1:    /* a bias: [B, 3, 4] with [4] */
        *a = gc_input(c, 2, D(3, 4), GC_UNIFORM, -2, 2);
        *b = gc_var(c, "bias", 1, D(4), GC_UNIFORM, 0.5, 2, true);
        break;
    case 2:    /* [B, 3, 1] with [B, 1, 4] */
        *a = gc_input(c, 2, D(3, 1), GC_UNIFORM, -2, 2);
        *b = gc_input(c, 2, D(1, 4), GC_UNIFORM, 0.5, 2);
        break;
    case 3:    /* a scalar with a batched tensor, the scalar first */
        *a = gc_var(c, "s", 0, NULL, GC_UNIFORM, 0.5, 2, true);
        *b = gc_input(c, 1, D(3), GC_UNIFORM, 0.5, 2);
        break;
    default:   /* unbatched [3, 1] with [1, 4] */
        *a = gc_var(c, "a", 2, D(3, 1), GC_UNIFORM, -2, 2, true);
        *b = gc_var(c, "b", 2, D(1, 4), GC_UNIFORM, 0.5, 2, true);
        break;
    }
}

START_TEST(binary)
{
    gc_ctx c;
    gc_init(&c, 3);
    ir_op op = binary_ops[_i % NBINARY];
    ir_node *in[2];
    binary_operands(&c, _i / NBINARY, &in[0], &in[1]);
    expect_grads(&c, ir_binary(&c.b, op, in[0], in[1]), 2, in);
    gc_free(&c);
}
END_TEST

/* maximum sends the whole gradient to whichever operand is larger. */
START_TEST(maximum_routes)
{
    gc_ctx c;
    gc_init(&c, 1);
    ir_node *a = gc_input(&c, 1, D(4), GC_UNIFORM, 0, 1);
    ir_node *b = gc_input(&c, 1, D(4), GC_UNIFORM, 0, 1);
    double *pa = gc_data(&c, a), *pb = gc_data(&c, b);
    double va[4] = {1, 5, 2, 7}, vb[4] = {3, 4, 6, 0};
    for (int i = 0; i < 4; i++) pa[i] = va[i], pb[i] = vb[i];
    ir_node *y = ir_binary(&c.b, IR_MAXIMUM, a, b);
    ir_node *loss = ir_reduce(&c.b, IR_SUM, y, 3, false);
    ir_node *in[2] = {a, b};
    ir_node **d = ir_gradients(&c.b, loss, 2, in);
    ir_values *v = gc_run(&c);
    const double *da = ir_value(v, d[0]), *db = ir_value(v, d[1]);
    for (int i = 0; i < 4; i++) {
        ck_assert_double_eq(da[i], va[i] > vb[i]);
        ck_assert_double_eq(db[i], va[i] < vb[i]);
    }
    ir_values_free(v);
    gc_free(&c);
}
END_TEST

/* ---- matmul ------------------------------------------------------------- */

typedef struct mm_case {
    bool a_batched, b_batched;
    int ra, rb;
    int64_t da[4], db[4];
    bool ta, tb;
} mm_case;

static const mm_case mm_cases[] = {
    {false, false, 2, 2, {3, 4}, {4, 5}, false, false},
    {false, false, 2, 2, {3, 4}, {5, 4}, false, true},
    {false, false, 2, 2, {4, 3}, {4, 5}, true, false},
    {false, false, 2, 2, {4, 3}, {5, 4}, true, true},
    {true, false, 1, 2, {4}, {4, 5}, false, false},        /* dense: x [B, 4] @ W */
    {true, false, 2, 2, {2, 4}, {4, 5}, false, false},     /* leading dims kept */
    {true, false, 1, 2, {4}, {5, 4}, false, true},         /* x @ W^T */
    {true, true, 1, 1, {3}, {5}, true, false},             /* x^T dy over the batch */
    {true, true, 2, 2, {2, 3}, {2, 5}, true, false},       /* ... and over leading dims */
    {false, false, 3, 2, {2, 3, 4}, {4, 5}, false, false}, /* unbatched leading dims */
    {false, false, 2, 3, {3, 4}, {2, 2, 5}, false, false}, /* b's rows from two dims */
};

START_TEST(matmul)
{
    const mm_case *m = &mm_cases[_i];
    gc_ctx c;
    gc_init(&c, 3);
    ir_node *in[2];
    in[0] = m->a_batched ? gc_input(&c, m->ra, m->da, GC_UNIFORM, -1, 1)
                         : gc_var(&c, "a", m->ra, m->da, GC_UNIFORM, -1, 1, true);
    in[1] = m->b_batched ? gc_input(&c, m->rb, m->db, GC_UNIFORM, -1, 1)
                         : gc_var(&c, "b", m->rb, m->db, GC_UNIFORM, -1, 1, true);
    expect_grads(&c, ir_matmul(&c.b, in[0], in[1], m->ta, m->tb), 2, in);
    gc_free(&c);
}
END_TEST

/* ---- reductions and broadcast ----------------------------------------- */

static const struct {
    ir_op op;
    int64_t axes;
    bool keepdims;
} reduce_cases[] = {
    {IR_SUM, 1 << 2, false}, {IR_SUM, 1 << 1 | 1 << 2, true}, {IR_SUM, 1, false}, {IR_SUM, 7, false},
    {IR_MEAN, 1 << 2, true}, {IR_MEAN, 1 << 1, false}, {IR_MEAN, 1, false}, {IR_MEAN, 1 | 1 << 2, true},
    {IR_MEAN, 7, false},
    {IR_MAX, 1 << 2, false}, {IR_MAX, 1 << 1, true}, {IR_MAX, 1, false}, {IR_MAX, 7, true},
};

START_TEST(reduce)
{
    gc_ctx c;
    gc_init(&c, 3);
    ir_node *x = gc_input(&c, 2, D(3, 4), GC_DISTINCT, -2, 2);
    ir_node *y = ir_reduce(&c.b, reduce_cases[_i].op, x, reduce_cases[_i].axes, reduce_cases[_i].keepdims);
    expect_grads(&c, y, 1, &x);
    /* A mean over the batch divides by the run-time batch, never by a constant. */
    if (reduce_cases[_i].op == IR_MEAN && (reduce_cases[_i].axes & 1))
        ck_assert_int_gt(gc_count_op(c.g, IR_HYPER), 0);
    if (reduce_cases[_i].op == IR_MAX) ck_assert_int_gt(gc_count_op(c.g, IR_MAX_GRAD), 0);
    gc_free(&c);
}
END_TEST

/* The same graph differentiated at two batch sizes: the mean's gradient follows B. */
START_TEST(mean_over_batch_follows_batch)
{
    for (int batch = 1; batch <= 4; batch += 3) {
        gc_ctx c;
        gc_init(&c, batch);
        ir_node *x = gc_input(&c, 1, D(2), GC_UNIFORM, -1, 1);
        ir_node *loss = ir_reduce(&c.b, IR_MEAN, x, 3, false);
        ir_node **d = ir_gradients(&c.b, loss, 1, &x);
        ir_values *v = gc_run(&c);
        for (int64_t i = 0; i < gc_count(&c, x); i++) ck_assert_double_eq_tol(ir_value(v, d[0])[i], 1.0 / (2 * batch), 1e-15);
        ir_values_free(v);
        gc_free(&c);
    }
}
END_TEST

START_TEST(broadcast)
{
    gc_ctx c;
    gc_init(&c, 2);
    ir_node *x = gc_var(&c, "x", 2, D(3, 1), GC_UNIFORM, -1, 1, true);
    ir_node *z = gc_var(&c, "z", 1, D(4), GC_UNIFORM, -1, 1, true);
    ir_node *q = gc_input(&c, 3, D(1, 3, 1), GC_UNIFORM, -1, 1);
    ir_node *in[3] = {x, z, q};
    ir_shape to = ir_shape_of(3, D(2, 3, 4), true);
    ir_node *y = ir_binary(&c.b, IR_MUL, ir_broadcast(&c.b, x, to), ir_broadcast(&c.b, z, to));
    expect_grads(&c, ir_binary(&c.b, IR_ADD, y, ir_broadcast(&c.b, q, ir_shape_of(3, D(2, 3, 4), true))), 3, in);
    gc_free(&c);
}
END_TEST

/* ---- layout ------------------------------------------------------------- */

START_TEST(reshape)
{
    gc_ctx c;
    gc_init(&c, 2);
    ir_node *x = gc_input(&c, 2, D(3, 4), GC_UNIFORM, -1, 1);
    expect_grads(&c, ir_reshape(&c.b, x, ir_shape_of(2, D(2, 6), true)), 1, &x);
    gc_free(&c);
}
END_TEST

START_TEST(transpose)
{
    gc_ctx c;
    gc_init(&c, 2);
    ir_node *x = gc_input(&c, 3, D(2, 3, 4), GC_UNIFORM, -1, 1);
    ir_attrs a = {0};
    int perm[4] = {0, 3, 1, 2};
    for (int i = 0; i < 4; i++) a.perm[i] = perm[i];
    ir_node *y = ir_make(&c.b, IR_TRANSPOSE, 1, &x, &a);
    ck_assert_int_eq(y->shape.dims[1], 4);
    ck_assert_int_eq(y->shape.dims[3], 3);
    expect_grads(&c, y, 1, &x);
    ir_node *w = gc_var(&c, "w", 2, D(2, 5), GC_UNIFORM, -1, 1, true);
    ir_attrs t = {0};
    t.perm[0] = 1;
    expect_grads(&c, ir_make(&c.b, IR_TRANSPOSE, 1, &w, &t), 1, &w);
    gc_free(&c);
}
END_TEST

START_TEST(concat)
{
    gc_ctx c;
    gc_init(&c, 2);
    ir_node *in[3] = {gc_input(&c, 2, D(2, 3), GC_UNIFORM, -1, 1), gc_input(&c, 2, D(2, 1), GC_UNIFORM, -1, 1),
                      gc_input(&c, 2, D(2, 2), GC_UNIFORM, -1, 1)};
    ir_attrs a = {0};
    a.axis = 2;
    expect_grads(&c, ir_make(&c.b, IR_CONCAT, 3, in, &a), 3, in);
    ir_node *in2[2] = {gc_input(&c, 2, D(1, 3), GC_UNIFORM, -1, 1), gc_input(&c, 2, D(2, 3), GC_UNIFORM, -1, 1)};
    a.axis = 1;
    expect_grads(&c, ir_make(&c.b, IR_CONCAT, 2, in2, &a), 2, in2);
    gc_free(&c);
}
END_TEST

START_TEST(slice)
{
    gc_ctx c;
    gc_init(&c, 2);
    ir_node *x = gc_input(&c, 2, D(5, 4), GC_UNIFORM, -1, 1);
    ir_attrs a = {0};
    a.begin[1] = 1, a.size[1] = 3;
    a.begin[2] = 2, a.size[2] = 2;
    ir_node *y = ir_make(&c.b, IR_SLICE, 1, &x, &a);
    expect_grads(&c, y, 1, &x);
    ck_assert_int_gt(gc_count_op(c.g, IR_PAD), 0);
    gc_free(&c);
}
END_TEST

START_TEST(pad)
{
    gc_ctx c;
    gc_init(&c, 2);
    ir_node *x = gc_input(&c, 2, D(2, 3), GC_UNIFORM, -1, 1);
    ir_attrs a = {0};
    a.pad_lo[1] = 1, a.pad_hi[1] = 2, a.pad_hi[2] = 1;
    ir_node *y = ir_make(&c.b, IR_PAD, 1, &x, &a);
    ck_assert_int_eq(y->shape.dims[1], 5);
    ck_assert_int_eq(y->shape.dims[2], 4);
    expect_grads(&c, y, 1, &x);
    ck_assert_int_gt(gc_count_op(c.g, IR_SLICE), 0);
    gc_free(&c);
}
END_TEST

/* reverse along a sample axis (go_backwards' outputs in Keras' order):
 * y[b, t, j] = x[b, T - 1 - t, j] exactly, and its vjp is itself. */
START_TEST(reverse)
{
    gc_ctx c;
    gc_init(&c, 2);
    ir_node *x = gc_input(&c, 2, D(4, 3), GC_UNIFORM, -1, 1);
    ir_attrs a = {0};
    a.axis = 1;
    ir_node *y = ir_make(&c.b, IR_REVERSE, 1, &x, &a);
    ir_values *v = gc_run(&c);
    const double *xv = gc_data(&c, x), *yv = ir_value(v, y);
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < 4; t++)
            for (int j = 0; j < 3; j++) ck_assert(yv[(b * 4 + t) * 3 + j] == xv[(b * 4 + 3 - t) * 3 + j]);
    ir_values_free(v);
    expect_grads(&c, y, 1, &x);
    ck_assert_int_eq(gc_count_op(c.g, IR_REVERSE), 2);
    a.axis = 0;   /* not the batch */
    ck_assert_ptr_null(ir_make(&c.b, IR_REVERSE, 1, &x, &a));
    gc_free(&c);
}
END_TEST

/* ---- nn ------------------------------------------------------------------ */

/* The mean over the ranks (synchronised BatchNormalization's statistics): in
 * one process its operand, and its vjp the same op on dy (the two ranks'
 * side is tests/test_mpi.c's); a batched operand is refused. */
START_TEST(rank_mean)
{
    gc_ctx c;
    gc_init(&c, 3);
    ir_node *x = gc_input(&c, 2, D(4, 2), GC_UNIFORM, -1, 1);
    ir_node *m = ir_reduce(&c.b, IR_MEAN, x, 1 | 2, true);
    ir_node *y = ir_make(&c.b, IR_RANK_MEAN, 1, &m, NULL);
    ck_assert_ptr_nonnull(y);
    ck_assert(!y->shape.batched);
    ir_values *v = gc_run(&c);
    for (int64_t i = 0; i < 2; i++) ck_assert(ir_value(v, y)[i] == ir_value(v, m)[i]);
    ir_values_free(v);
    ir_node *sq = ir_unary(&c.b, IR_SQUARE, ir_binary(&c.b, IR_SUB, x, y));   /* x - mean: y feeds a batched value */
    expect_grads(&c, sq, 1, &x);
    ck_assert_int_eq(gc_count_op(c.g, IR_RANK_MEAN), 2);
    ck_assert_ptr_null(ir_make(&c.b, IR_RANK_MEAN, 1, &x, NULL));
    ck_assert_has(c.b.why, "has a batch");
    gc_free(&c);
}
END_TEST

START_TEST(softmax)
{
    ir_op op = _i < 2 ? IR_SOFTMAX : IR_LOG_SOFTMAX;
    gc_ctx c;
    gc_init(&c, 2);
    ir_node *x = gc_input(&c, 2, D(3, 4), GC_UNIFORM, -2, 2);
    ir_attrs a = {0};
    a.axis = _i % 2 ? 1 : 2;
    expect_grads(&c, ir_make(&c.b, op, 1, &x, &a), 1, &x);
    gc_free(&c);
}
END_TEST

START_TEST(dropout)
{
    gc_ctx c;
    gc_init(&c, 4);
    ir_node *x = gc_input(&c, 1, D(8), GC_UNIFORM, -1, 1);
    ir_attrs a = {0};
    a.scalar = 0.5;
    a.index = 3;
    ir_node *mask = ir_leaf(&c.b, IR_DROPOUT_MASK, x->shape, &a, -1);
    ck_assert_ptr_nonnull(mask);
    ir_node *y = ir_binary(&c.b, IR_MUL, x, mask);
    expect_grads(&c, y, 1, &x);
    gc_free(&c);
}
END_TEST

/* ---- conv and pooling -------------------------------------------------- */

typedef struct conv_case {
    int64_t h, w, cin, kh, kw, f;
    int stride;
    bool same;
} conv_case;

static const conv_case conv_cases[] = {
    {5, 5, 2, 3, 3, 3, 1, false},
    {5, 5, 2, 3, 3, 3, 1, true},
    {5, 6, 2, 3, 3, 2, 2, true},
    {6, 6, 1, 2, 2, 2, 2, false},
    {6, 5, 3, 3, 2, 2, 2, false},
    {4, 4, 2, 2, 2, 2, 1, true},      /* even kernel: the extra padding goes bottom/right */
};

static void set_padding(ir_attrs *a, int64_t h, int64_t w, int kh, int kw, int stride, bool same)
{
    a->stride[0] = a->stride[1] = stride;
    if (same) {
        ir_same_padding(h, kh, stride, &a->pad_lo[0], &a->pad_hi[0]);
        ir_same_padding(w, kw, stride, &a->pad_lo[1], &a->pad_hi[1]);
    }
}

/* conv2d_bwd_data as Conv2DTranspose's forward op: the gradient of a
 * convolution's input, differentiated in turn (dy and the kernel). */
START_TEST(conv2d_transpose)
{
    const conv_case *k = &conv_cases[_i];
    gc_ctx c;
    gc_init(&c, 2);
    ir_attrs a = {0};
    set_padding(&a, k->h, k->w, (int)k->kh, (int)k->kw, k->stride, k->same);
    a.shape = ir_shape_of(3, D(k->h, k->w, k->cin), true);
    int64_t oh = k->same ? (k->h + k->stride - 1) / k->stride : (k->h - k->kh) / k->stride + 1;
    int64_t ow = k->same ? (k->w + k->stride - 1) / k->stride : (k->w - k->kw) / k->stride + 1;
    ir_node *in[2] = {gc_input(&c, 3, D(oh, ow, k->f), GC_UNIFORM, -1, 1),
                      gc_var(&c, "kernel", 4, D(k->kh, k->kw, k->cin, k->f), GC_UNIFORM, -1, 1, true)};
    ir_node *y = ir_make(&c.b, IR_CONV2D_BWD_DATA, 2, in, &a);
    ck_assert_msg(y != NULL, "%s", c.b.why);
    expect_grads(&c, y, 2, in);
    ck_assert_int_eq(gc_count_op(c.g, IR_CONV2D), 1);
    ck_assert_int_eq(gc_count_op(c.g, IR_CONV2D_BWD_FILTER), 1);
    gc_free(&c);
}
END_TEST

START_TEST(conv2d)
{
    const conv_case *k = &conv_cases[_i];
    gc_ctx c;
    gc_init(&c, 2);
    ir_node *in[2] = {gc_input(&c, 3, D(k->h, k->w, k->cin), GC_UNIFORM, -1, 1),
                      gc_var(&c, "kernel", 4, D(k->kh, k->kw, k->cin, k->f), GC_UNIFORM, -1, 1, true)};
    ir_attrs a = {0};
    set_padding(&a, k->h, k->w, (int)k->kh, (int)k->kw, k->stride, k->same);
    ir_node *y = ir_make(&c.b, IR_CONV2D, 2, in, &a);
    ck_assert_msg(y != NULL, "%s", c.b.why);
    if (k->same) {
        ck_assert_int_eq(y->shape.dims[1], (k->h + k->stride - 1) / k->stride);
        ck_assert_int_eq(y->shape.dims[2], (k->w + k->stride - 1) / k->stride);
    }
    expect_grads(&c, y, 2, in);
    ck_assert_int_eq(gc_count_op(c.g, IR_CONV2D_BWD_DATA), 1);
    ck_assert_int_eq(gc_count_op(c.g, IR_CONV2D_BWD_FILTER), 1);
    gc_free(&c);
}
END_TEST

/* depthwise: h, w, channels, kh, kw, depth multiplier, stride, dilation, same */
static const struct {
    int64_t h, w, c, kh, kw, m;
    int stride, dil;
    bool same;
} dw_cases[] = {
    {5, 5, 2, 3, 3, 1, 1, 1, false},
    {5, 6, 2, 3, 3, 2, 2, 1, true},   /* stride 2, same, dm 2 */
    {6, 5, 2, 2, 3, 1, 2, 1, false},  /* non-square kernel, stride 2 */
    {4, 4, 2, 2, 2, 3, 1, 1, true},   /* even kernel: the extra padding goes bottom/right */
    {6, 6, 2, 3, 2, 2, 1, 2, false},  /* dilation 2 */
    {5, 6, 1, 2, 3, 2, 1, 2, true},   /* dilation 2, same */
};

START_TEST(depthwise_conv2d)
{
    gc_ctx c;
    gc_init(&c, 2);
    int64_t h = dw_cases[_i].h, w = dw_cases[_i].w, ch = dw_cases[_i].c, kh = dw_cases[_i].kh, kw = dw_cases[_i].kw;
    int s = dw_cases[_i].stride, d = dw_cases[_i].dil;
    ir_node *in[2] = {gc_input(&c, 3, D(h, w, ch), GC_UNIFORM, -1, 1),
                      gc_var(&c, "depthwise_kernel", 4, D(kh, kw, ch, dw_cases[_i].m), GC_UNIFORM, -1, 1, true)};
    ir_attrs a = {0};
    a.dilation[0] = a.dilation[1] = d;
    set_padding(&a, h, w, (int)((kh - 1) * d + 1), (int)((kw - 1) * d + 1), s, dw_cases[_i].same);
    ir_node *y = ir_make(&c.b, IR_DEPTHWISE_CONV2D, 2, in, &a);
    ck_assert_msg(y != NULL, "%s", c.b.why);
    ck_assert_int_eq(y->shape.dims[3], ch * dw_cases[_i].m);
    if (dw_cases[_i].same) {
        ck_assert_int_eq(y->shape.dims[1], (h + s - 1) / s);
        ck_assert_int_eq(y->shape.dims[2], (w + s - 1) / s);
    } else {
        ck_assert_int_eq(y->shape.dims[1], (h - (kh - 1) * d - 1) / s + 1);
        ck_assert_int_eq(y->shape.dims[2], (w - (kw - 1) * d - 1) / s + 1);
    }
    expect_grads(&c, y, 2, in);
    ck_assert_int_eq(gc_count_op(c.g, IR_DEPTHWISE_CONV2D_BWD_DATA), 1);
    ck_assert_int_eq(gc_count_op(c.g, IR_DEPTHWISE_CONV2D_BWD_FILTER), 1);
    gc_free(&c);
}
END_TEST

/* gather: rows of the table by token; a token outside it (-1, 3) reads
 * zeros. Its vjp sums dy's rows into the rows their tokens name (token 2
 * twice), adds nothing for the others, and the tokens get no gradient. */
START_TEST(gather)
{
    gc_ctx c;
    gc_init(&c, 2);
    ir_node *tok = gc_input(&c, 1, D(4), GC_UNIFORM, 0, 1);
    tok->attr.i32 = true;
    const double ids[8] = {0, 2, 2, -1, 3, 1, 2, 0};
    memcpy(gc_data(&c, tok), ids, sizeof ids);
    ir_node *table = gc_var(&c, "embeddings", 2, D(3, 2), GC_UNIFORM, -1, 1, true);
    ir_node *in[2] = {table, tok};
    ir_node *y = ir_make(&c.b, IR_GATHER, 2, in, NULL);
    ck_assert_msg(y != NULL, "%s", c.b.why);
    ck_assert_int_eq(y->shape.rank, 3);
    ck_assert_int_eq(y->shape.dims[2], 2);
    ir_node *bad[2] = {table, gc_input(&c, 1, D(4), GC_UNIFORM, 0, 1)};
    ck_assert_ptr_null(ir_make(&c.b, IR_GATHER, 2, bad, NULL));   /* real indices */
    ck_assert_ptr_null(ir_unary(&c.b, IR_NEG, tok));               /* ints only index */
    ir_node *dy = gc_input(&c, 2, D(4, 2), GC_UNIFORM, -1, 1);
    ir_node *gin[2] = {tok, dy};
    ir_attrs a = {0};
    a.shape = table->shape;
    ir_node *dt = ir_make(&c.b, IR_GATHER_GRAD, 2, gin, &a);
    ck_assert_msg(dt != NULL, "%s", c.b.why);
    ir_values *v = gc_run(&c);
    const double *t = gc_data(&c, table), *yv = ir_value(v, y), *g = ir_value(v, dt), *d = gc_data(&c, dy);
    for (int i = 0; i < 8; i++)
        for (int k = 0; k < 2; k++)
            ck_assert_double_eq(yv[i * 2 + k], ids[i] >= 0 && ids[i] < 3 ? t[(int)ids[i] * 2 + k] : 0);
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 2; k++) {
            double want = 0;
            for (int i = 0; i < 8; i++) want += ids[i] == r ? d[i * 2 + k] : 0;
            ck_assert_double_eq_tol(g[r * 2 + k], want, 1e-15);
        }
    ir_values_free(v);
    ir_node *wrt[1] = {table};
    expect_grads(&c, y, 1, wrt);
    gc_free(&c);
}
END_TEST

/* ---- scan: a loop over time carrying state ------------------------------------ */

/* An RNN cell over time, h' = tanh(x_t W + h U + b), as one scan (forward
 * and, for _i = 1, reverse over time): the stacked states and the final one
 * against a loop written here, and the gradients of both w.r.t. the inputs,
 * the initial state and the weights against finite differences (the vjp is
 * a scan the other way over time). */
START_TEST(scan_rnn)
{
    bool reverse = _i == 1;
    enum { B = 2, T = 4, F = 3, U = 2 };
    gc_ctx c;
    gc_init(&c, B);
    ir_node *x = gc_input(&c, 2, D(T, F), GC_UNIFORM, -1, 1), *h0 = gc_input(&c, 1, D(U), GC_UNIFORM, -0.5, 0.5);
    ir_node *W = gc_var(&c, "kernel", 2, D(F, U), GC_UNIFORM, -1, 1, true);
    ir_node *R = gc_var(&c, "recurrent_kernel", 2, D(U, U), GC_UNIFORM, -1, 1, true);
    ir_node *bias = gc_var(&c, "bias", 1, D(U), GC_UNIFORM, -0.5, 0.5, true);
    ir_scan *s = ir_scan_new(&c.arena, &c.vars, 1, 1, 3, reverse);
    ir_builder b = {.g = s->body};
    ir_node *h = ir_scan_arg(&b, s, 0, h0->shape), *xt = ir_scan_arg(&b, s, 1, ir_shape_of(1, D(F), true));
    ir_node *w = ir_scan_arg(&b, s, 2, W->shape), *r = ir_scan_arg(&b, s, 3, R->shape);
    ir_node *bb = ir_scan_arg(&b, s, 4, bias->shape);
    ir_node *pre = ir_binary(&b, IR_ADD, ir_matmul(&b, xt, w, false, false), ir_matmul(&b, h, r, false, false));
    ir_node *hn = ir_unary(&b, IR_TANH, ir_binary(&b, IR_ADD, pre, bb));
    char why[256];
    ir_node *outs[2] = {hn, hn};
    ck_assert_msg(ir_scan_finish(s, 2, outs, why, sizeof why), "%s / %s", why, b.why);
    ir_node *ops[5] = {h0, x, W, R, bias};
    ir_node *ys = ir_scan_apply(&c.b, s, ops, 1), *hT = ir_scan_apply(&c.b, s, ops, 0);
    ck_assert_msg(ys && hT, "%s", c.b.why);
    ck_assert_int_eq(ys->shape.rank, 3);
    ck_assert_int_eq(ys->shape.dims[1], T);
    ck_assert_int_eq(ys->shape.dims[2], U);
    ir_node *bad[5] = {h0, x, R, R, bias};   /* a constant of the wrong shape */
    ck_assert_ptr_null(ir_scan_apply(&c.b, s, bad, 1));

    ir_values *v = gc_run(&c);
    const double *xv = gc_data(&c, x), *hv = gc_data(&c, h0), *wv = gc_data(&c, W), *rv = gc_data(&c, R);
    const double *bv = gc_data(&c, bias), *yv = ir_value(v, ys), *tv = ir_value(v, hT);
    for (int n = 0; n < B; n++) {
        double hs[U], hn2[U];
        for (int u = 0; u < U; u++) hs[u] = hv[n * U + u];
        for (int step = 0; step < T; step++) {
            int t = reverse ? T - 1 - step : step;
            for (int u = 0; u < U; u++) {
                double a = bv[u];
                for (int f = 0; f < F; f++) a += xv[(n * T + t) * F + f] * wv[f * U + u];
                for (int k = 0; k < U; k++) a += hs[k] * rv[k * U + u];
                hn2[u] = tanh(a);
            }
            for (int u = 0; u < U; u++) {
                hs[u] = hn2[u];
                ck_assert_double_eq_tol(yv[(n * T + t) * U + u], hs[u], 1e-12);
            }
        }
        for (int u = 0; u < U; u++) ck_assert_double_eq_tol(tv[n * U + u], hs[u], 1e-12);
    }
    ir_values_free(v);
    ir_node *wrt[5] = {x, h0, W, R, bias};
    expect_grads(&c, ys, 5, wrt);
    expect_grads(&c, hT, 5, wrt);
    ck_assert_int_ge(gc_count_op(c.g, IR_SCAN), 4);
    gc_free(&c);
}
END_TEST

/* Two carries, LSTM-like: c' = c * sigmoid(x Wf) + tanh(x Wc + h R),
 * h' = tanh(c') * sigmoid(h Ro); gradients through the stacked h and the
 * final c. A constant the body reads twice, and one per sample (a mask). */
START_TEST(scan_two_carries)
{
    enum { B = 3, T = 3, F = 2, U = 3 };
    gc_ctx c;
    gc_init(&c, B);
    ir_node *x = gc_input(&c, 2, D(T, F), GC_UNIFORM, -1, 1), *h0 = gc_input(&c, 1, D(U), GC_UNIFORM, -0.5, 0.5);
    ir_node *c0 = gc_input(&c, 1, D(U), GC_UNIFORM, -0.5, 0.5), *mask = gc_input(&c, 1, D(U), GC_UNIFORM, 0.5, 1.5);
    ir_node *Wf = gc_var(&c, "wf", 2, D(F, U), GC_UNIFORM, -1, 1, true), *Wc = gc_var(&c, "wc", 2, D(F, U), GC_UNIFORM, -1, 1, true);
    ir_node *R = gc_var(&c, "r", 2, D(U, U), GC_UNIFORM, -1, 1, true);
    ir_scan *s = ir_scan_new(&c.arena, &c.vars, 2, 1, 4, false);
    ir_builder b = {.g = s->body};
    ir_node *h = ir_scan_arg(&b, s, 0, h0->shape), *cell = ir_scan_arg(&b, s, 1, c0->shape);
    ir_node *xt = ir_scan_arg(&b, s, 2, ir_shape_of(1, D(F), true));
    ir_node *wf = ir_scan_arg(&b, s, 3, Wf->shape), *wc = ir_scan_arg(&b, s, 4, Wc->shape);
    ir_node *r = ir_scan_arg(&b, s, 5, R->shape), *m = ir_scan_arg(&b, s, 6, mask->shape);
    ir_node *gate = ir_unary(&b, IR_SIGMOID, ir_matmul(&b, xt, wf, false, false));
    ir_node *cand = ir_unary(&b, IR_TANH, ir_binary(&b, IR_ADD, ir_matmul(&b, xt, wc, false, false),
                                                    ir_matmul(&b, ir_binary(&b, IR_MUL, h, m), r, false, false)));
    ir_node *cn = ir_binary(&b, IR_ADD, ir_binary(&b, IR_MUL, cell, gate), cand);
    ir_node *hn = ir_binary(&b, IR_MUL, ir_unary(&b, IR_TANH, cn), ir_unary(&b, IR_SIGMOID, ir_matmul(&b, h, r, false, false)));
    char why[256];
    ir_node *outs[3] = {hn, cn, hn};
    ck_assert_msg(ir_scan_finish(s, 3, outs, why, sizeof why), "%s / %s", why, b.why);
    ir_node *ops[7] = {h0, c0, x, Wf, Wc, R, mask};
    ir_node *ys = ir_scan_apply(&c.b, s, ops, 2), *cT = ir_scan_apply(&c.b, s, ops, 1);
    ck_assert_msg(ys && cT, "%s", c.b.why);
    ir_node *wrt[7] = {x, h0, c0, Wf, Wc, R, mask};
    expect_grads(&c, ys, 7, wrt);
    expect_grads(&c, cT, 7, wrt);
    gc_free(&c);
}
END_TEST

/* The depthwise conv against its definition: output channel c * M + m is
 * input channel c convolved with w[:, :, c, m], taps `dilation` apart. */
START_TEST(depthwise_conv2d_values)
{
    gc_ctx c;
    gc_init(&c, 1);
    /* x [1, 4, 5, 2] = 1..40; w [2, 2, 2, 2] */
    ir_node *in[2] = {gc_input(&c, 3, D(4, 5, 2), GC_DISTINCT, 1, 40),
                      gc_var(&c, "depthwise_kernel", 4, D(2, 2, 2, 2), GC_UNIFORM, -1, 1, true)};
    ir_attrs a = {0};
    a.dilation[0] = 2;
    a.stride[0] = a.stride[1] = 1;
    ir_node *y = ir_make(&c.b, IR_DEPTHWISE_CONV2D, 2, in, &a);
    ck_assert_msg(y != NULL, "%s", c.b.why);
    ck_assert_int_eq(y->shape.dims[1], 2);
    ck_assert_int_eq(y->shape.dims[2], 4);
    ck_assert_int_eq(y->shape.dims[3], 4);
    ir_values *v = gc_run(&c);
    const double *x = gc_data(&c, in[0]), *w = gc_data(&c, in[1]), *out = ir_value(v, y);
    for (int oh = 0; oh < 2; oh++)
        for (int ow = 0; ow < 4; ow++)
            for (int ch = 0; ch < 2; ch++)
                for (int m = 0; m < 2; m++) {
                    double want = 0;
                    for (int i = 0; i < 2; i++)
                        for (int j = 0; j < 2; j++)
                            want += x[((oh + 2 * i) * 5 + ow + j) * 2 + ch] * w[((i * 2 + j) * 2 + ch) * 2 + m];
                    ck_assert_double_eq_tol(out[(oh * 4 + ow) * 4 + ch * 2 + m], want, 1e-12);
                }
    ir_values_free(v);
    gc_free(&c);
}
END_TEST

static const struct {
    ir_op op;
    int64_t h, w;
    int win, stride;
    bool same;
} pool_cases[] = {
    {IR_MAXPOOL2D, 4, 4, 2, 2, false}, {IR_MAXPOOL2D, 5, 5, 3, 2, true}, {IR_MAXPOOL2D, 5, 4, 3, 1, false},
    {IR_MAXPOOL2D, 5, 5, 2, 2, true},
    {IR_AVGPOOL2D, 4, 4, 2, 2, false}, {IR_AVGPOOL2D, 5, 5, 3, 2, true}, {IR_AVGPOOL2D, 5, 4, 3, 1, false},
    {IR_AVGPOOL2D, 5, 5, 2, 2, true},
};

START_TEST(pool)
{
    gc_ctx c;
    gc_init(&c, 2);
    ir_node *x = gc_input(&c, 3, D(pool_cases[_i].h, pool_cases[_i].w, 2), GC_DISTINCT, -2, 2);
    ir_attrs a = {0};
    a.window[0] = a.window[1] = pool_cases[_i].win;
    set_padding(&a, pool_cases[_i].h, pool_cases[_i].w, pool_cases[_i].win, pool_cases[_i].win,
                pool_cases[_i].stride, pool_cases[_i].same);
    expect_grads(&c, ir_make(&c.b, pool_cases[_i].op, 1, &x, &a), 1, &x);
    ck_assert_int_eq(gc_count_op(c.g, pool_cases[_i].op == IR_MAXPOOL2D ? IR_MAXPOOL2D_GRAD : IR_AVGPOOL2D_GRAD), 1);
    gc_free(&c);
}
END_TEST

/* ---- the fused loss --------------------------------------------------- */

START_TEST(softmax_xent)
{
    gc_ctx c;
    gc_init(&c, 3);
    bool rank3 = _i == 1;
    ir_node *z = rank3 ? gc_input(&c, 2, D(2, 5), GC_UNIFORM, -2, 2) : gc_input(&c, 1, D(5), GC_UNIFORM, -2, 2);
    /* Soft labels: the gradient must be exact even when a row does not sum to 1. */
    ir_node *t = rank3 ? gc_label(&c, 2, D(2, 5), GC_UNIFORM, 0, 1) : gc_label(&c, 1, D(5), GC_UNIFORM, 0, 1);
    ir_node *in[2] = {z, t};
    ir_node *loss = ir_binary(&c.b, IR_MUL, ir_make(&c.b, IR_SOFTMAX_XENT, 2, in, NULL), ir_scalar(&c.b, 1.7));
    double err = gc_grad_check(&c, loss, 2, in);
    ck_assert_msg(err < TOL, "relative error %g", err);
    ck_assert_int_eq(gc_count_op(c.g, IR_SOFTMAX_XENT_GRAD), 1);
    gc_free(&c);
}
END_TEST

/* softmax_xent equals the unfused mean(-sum(t * log_softmax(z))). */
START_TEST(softmax_xent_matches_unfused)
{
    gc_ctx c;
    gc_init(&c, 4);
    ir_node *z = gc_input(&c, 1, D(6), GC_UNIFORM, -3, 3);
    ir_node *t = gc_label(&c, 1, D(6), GC_ONEHOT, 0, 1);
    ir_node *in[2] = {z, t};
    ir_node *fused = ir_make(&c.b, IR_SOFTMAX_XENT, 2, in, NULL);
    ir_attrs a = {0};
    a.axis = 1;
    ir_node *lsm = ir_make(&c.b, IR_LOG_SOFTMAX, 1, &z, &a);
    ir_node *per = ir_unary(&c.b, IR_NEG, ir_reduce(&c.b, IR_SUM, ir_binary(&c.b, IR_MUL, t, lsm), 2, false));
    ir_node *plain = ir_reduce(&c.b, IR_MEAN, per, 1, false);
    ir_values *v = gc_run(&c);
    ck_assert_double_eq_tol(ir_value(v, fused)[0], ir_value(v, plain)[0], 1e-12);
    ck_assert_double_gt(ir_value(v, fused)[0], 0);
    ir_values_free(v);
    gc_free(&c);
}
END_TEST

static Suite *vjp_suite(void)
{
    Suite *s = suite_create("vjp");
    TCase *t = tcase_create("elementwise");
    tcase_add_loop_test(t, unary, 0, sizeof unary_cases / sizeof unary_cases[0]);
    tcase_add_test(t, relu_uses_output);
    tcase_add_loop_test(t, activation_grad_row, 0, IR_ACT_COUNT - 1);
    tcase_add_loop_test(t, activation_grad, 0, sizeof act_cases / sizeof act_cases[0]);
    tcase_add_test(t, activation_values);
    tcase_add_loop_test(t, binary, 0, NBINARY * NPATTERNS);
    tcase_add_test(t, maximum_routes);
    suite_add_tcase(s, t);
    t = tcase_create("linear");
    tcase_add_loop_test(t, matmul, 0, sizeof mm_cases / sizeof mm_cases[0]);
    tcase_add_loop_test(t, reduce, 0, sizeof reduce_cases / sizeof reduce_cases[0]);
    tcase_add_test(t, mean_over_batch_follows_batch);
    tcase_add_test(t, broadcast);
    suite_add_tcase(s, t);
    t = tcase_create("layout");
    tcase_add_test(t, reshape);
    tcase_add_test(t, transpose);
    tcase_add_test(t, concat);
    tcase_add_test(t, slice);
    tcase_add_test(t, pad);
    tcase_add_test(t, reverse);
    suite_add_tcase(s, t);
    t = tcase_create("nn");
    tcase_add_loop_test(t, softmax, 0, 4);
    tcase_add_test(t, dropout);
    tcase_add_test(t, rank_mean);
    tcase_add_loop_test(t, conv2d, 0, sizeof conv_cases / sizeof conv_cases[0]);
    tcase_add_loop_test(t, conv2d_transpose, 0, sizeof conv_cases / sizeof conv_cases[0]);
    tcase_add_loop_test(t, depthwise_conv2d, 0, sizeof dw_cases / sizeof dw_cases[0]);
    tcase_add_test(t, depthwise_conv2d_values);
    tcase_add_test(t, gather);
    tcase_add_loop_test(t, scan_rnn, 0, 2);
    tcase_add_test(t, scan_two_carries);
    tcase_add_loop_test(t, pool, 0, sizeof pool_cases / sizeof pool_cases[0]);
    tcase_add_loop_test(t, softmax_xent, 0, 2);
    tcase_add_test(t, softmax_xent_matches_unfused);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tu_run_suite(vjp_suite()); }
