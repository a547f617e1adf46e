/* test_ir.c — the graph IR: shape helpers, every op's shape rule and its error
 * message, conv/pool output sizes, the reference interpreter's forward values,
 * and the text dump. */
#include "interp.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define D(...) ((const int64_t[]){__VA_ARGS__})

/* A graph to build into; freed at the end of each test. */
typedef struct fx {
    kd_arena a;
    kd_vec vars;
    ir_graph *g;
    ir_builder b;
} fx;

static void fx_init(fx *f)
{
    memset(f, 0, sizeof *f);
    f->g = ir_graph_new(&f->a, &f->vars);
    f->b.g = f->g;
}

static ir_node *input(fx *f, int rank, const int64_t *dims)
{
    ir_attrs a = {0};
    a.index = 0;
    return ir_leaf(&f->b, IR_INPUT, ir_shape_of(rank, dims, true), &a, -1);
}

static ir_node *konst(fx *f, int rank, const int64_t *dims)
{
    return ir_const(&f->b, 1, ir_shape_of(rank, dims, false));
}

static const char *keras(const ir_node *n)
{
    static char buf[4][96];
    static int next;
    ck_assert_ptr_nonnull(n);
    return ir_shape_keras(&n->shape, buf[next++ % 4], sizeof buf[0]);
}

/* The node must not have been built, and why must say exactly `msg`. */
#define ck_fails(f, node, msg)                                   \
    do {                                                         \
        ck_assert_ptr_null(node);                                \
        ck_assert_str_eq((f)->b.why, msg);                       \
    } while (0)

/* ---- shape helpers --------------------------------------------------- */

START_TEST(shape_helpers)
{
    char buf[96];
    ir_shape s = ir_shape_of(3, D(26, 26, 32), true);
    ck_assert_int_eq(s.rank, 4);
    ck_assert_int_eq(s.dims[0], IR_BATCH);
    ck_assert_str_eq(ir_shape_keras(&s, buf, sizeof buf), "(None, 26, 26, 32)");
    ck_assert_str_eq(ir_shape_sample(&s, buf, sizeof buf), "[26, 26, 32]");
    ck_assert_int_eq(ir_shape_elems(&s), 26 * 26 * 32);
    ir_shape u = ir_shape_of(2, D(2, 3), false);
    ck_assert_str_eq(ir_shape_keras(&u, buf, sizeof buf), "(2, 3)");
    ck_assert_str_eq(ir_shape_sample(&u, buf, sizeof buf), "[2, 3]");
    ir_shape one = ir_shape_of(1, D(10), false), scalar = ir_shape_of(0, NULL, false);
    ck_assert_str_eq(ir_shape_keras(&one, buf, sizeof buf), "(10,)");
    ck_assert_str_eq(ir_shape_keras(&scalar, buf, sizeof buf), "()");
    ck_assert_str_eq(ir_shape_sample(&scalar, buf, sizeof buf), "[]");
    ck_assert_int_eq(ir_shape_elems(&scalar), 1);
    /* A short buffer truncates, terminated. */
    ck_assert_str_eq(ir_shape_keras(&s, buf, 8), "(None, ");
    ck_assert(ir_shape_equal(&s, &s));
    ck_assert(!ir_shape_equal(&s, &u));
    ir_shape nb = ir_shape_of(4, D(IR_BATCH, 26, 26, 32), false);
    ck_assert(!ir_shape_equal(&s, &nb));
    /* Overflow and bad dims give -1; too many dims give rank -1. */
    ir_shape big = ir_shape_of(4, D(1 << 20, 1 << 20, 1 << 20, 1 << 20), false);
    ck_assert_int_eq(ir_shape_elems(&big), -1);
    ir_shape neg = ir_shape_of(2, D(3, -2), false);
    ck_assert_int_eq(ir_shape_elems(&neg), -1);
    ck_assert_int_eq(ir_shape_of(IR_MAX_RANK, D(1, 1, 1, 1, 1, 1, 1, 1), true).rank, -1);
    ck_assert_int_eq(ir_shape_of(IR_MAX_RANK, D(1, 1, 1, 1, 1, 1, 1, 1), false).rank, IR_MAX_RANK);
}
END_TEST

static const struct {
    int ra;
    int64_t a[4];
    bool ba;
    int rb;
    int64_t b[4];
    bool bb;
    const char *result;   /* NULL: no broadcast */
} bcast_cases[] = {
    {2, {3, 4}, true, 1, {4}, false, "(None, 3, 4)"},
    {2, {3, 1}, true, 2, {1, 4}, true, "(None, 3, 4)"},
    {1, {3}, true, 0, {0}, false, "(None, 3)"},
    {3, {26, 26, 32}, true, 1, {32}, false, "(None, 26, 26, 32)"},
    {3, {26, 26, 32}, true, 1, {10}, false, NULL},
    {2, {1, 4}, false, 2, {3, 1}, false, "(3, 4)"},
    {2, {2, 3}, false, 2, {3, 2}, false, NULL},
    /* The batch meets only a batch or a 1 ... */
    {1, {3}, true, 2, {1, 3}, false, "(None, 3)"},
    {1, {3}, true, 2, {5, 3}, false, NULL},
    /* ... and stays the leading dim. */
    {1, {3}, true, 3, {2, 1, 3}, false, NULL},
    {1, {3}, true, 2, {1, 1}, false, "(None, 3)"},
    {1, {3}, true, 3, {1, 1, 1}, false, NULL},
};

START_TEST(broadcasting)
{
    ir_shape a = ir_shape_of(bcast_cases[_i].ra, bcast_cases[_i].a, bcast_cases[_i].ba);
    ir_shape b = ir_shape_of(bcast_cases[_i].rb, bcast_cases[_i].b, bcast_cases[_i].bb);
    ir_shape r, r2;
    char buf[96];
    bool ok = ir_broadcast_shapes(&a, &b, &r);
    ck_assert_int_eq(ok, bcast_cases[_i].result != NULL);
    ck_assert_int_eq(ir_broadcast_shapes(&b, &a, &r2), ok);     /* symmetric */
    if (ok) {
        ck_assert_str_eq(ir_shape_keras(&r, buf, sizeof buf), bcast_cases[_i].result);
        ck_assert(ir_shape_equal(&r, &r2));
        ck_assert_int_eq(r.batched, strstr(bcast_cases[_i].result, "None") != NULL);
    }
}
END_TEST

START_TEST(same_padding)
{
    int64_t lo, hi;
    ir_same_padding(28, 3, 1, &lo, &hi);
    ck_assert(lo == 1 && hi == 1);
    ir_same_padding(28, 3, 2, &lo, &hi);         /* out 14: total 1, the extra at the end */
    ck_assert(lo == 0 && hi == 1);
    ir_same_padding(5, 3, 2, &lo, &hi);          /* out 3: total 2 */
    ck_assert(lo == 1 && hi == 1);
    ir_same_padding(4, 2, 1, &lo, &hi);
    ck_assert(lo == 0 && hi == 1);
    ir_same_padding(6, 2, 2, &lo, &hi);          /* fits exactly: none */
    ck_assert(lo == 0 && hi == 0);
    ir_same_padding(7, 7, 2, &lo, &hi);          /* out 4: total 6 */
    ck_assert(lo == 3 && hi == 3);
}
END_TEST

/* ---- op shapes -------------------------------------------------------- */

START_TEST(elementwise_shapes)
{
    fx f;
    fx_init(&f);
    ir_node *x = input(&f, 3, D(26, 26, 32));
    ir_node *bias = konst(&f, 1, D(32));
    for (ir_op op = 0; op < IR_OP_COUNT; op++) {   /* every element-wise op, the activations too */
        if (!ir_ops[op]->scalar) continue;
        ir_node *y = ir_ops[op]->arity == 1 ? ir_unary(&f.b, op, x) : ir_binary(&f.b, op, x, bias);
        ck_assert_str_eq(keras(y), "(None, 26, 26, 32)");
    }
    ck_fails(&f, ir_binary(&f.b, IR_ADD, x, konst(&f, 1, D(10))), "add: cannot broadcast [26, 26, 32] with [10]");
    ck_fails(&f, ir_binary(&f.b, IR_MUL, konst(&f, 2, D(2, 3)), konst(&f, 2, D(3, 2))), "mul: cannot broadcast [2, 3] with [3, 2]");
    ir_node *v = input(&f, 1, D(3));
    ck_fails(&f, ir_binary(&f.b, IR_SUB, v, konst(&f, 2, D(2, 3))),
             "sub: cannot broadcast (None, 3) with (2, 3): the batch must stay the first dimension");
    /* A failed operand fails the user and keeps the first reason. */
    ck_fails(&f, ir_unary(&f.b, IR_RELU, NULL), "sub: cannot broadcast (None, 3) with (2, 3): the batch must stay the first dimension");
    ck_fails(&f, ir_make(&f.b, IR_ADD, 1, &x, NULL), "add: takes 2 operands, not 1");
    kd_arena_free(&f.a);
}
END_TEST

START_TEST(leaf_shapes)
{
    fx f;
    fx_init(&f);
    kd_var v = {.index = 0, .name = "dense/kernel", .kind = VAR_WEIGHT, .trainable = true,
                .shape = ir_shape_of(2, D(784, 256), false)};
    kd_vec_push(&f.a, &f.vars, &v);
    ck_assert_str_eq(keras(ir_var_read(&f.b, &v)), "(784, 256)");
    ck_fails(&f, ir_leaf(&f.b, IR_VAR, ir_shape_of(1, D(3), false), NULL, 0), "var: dense/kernel has shape [784, 256], read as [3]");
    ck_fails(&f, ir_leaf(&f.b, IR_VAR, ir_shape_of(1, D(3), false), NULL, 5), "var: no variable #5");
    ck_fails(&f, ir_leaf(&f.b, IR_VAR, ir_shape_of(1, D(3), true), NULL, 0), "var: a variable has no batch dimension");
    ck_fails(&f, ir_leaf(&f.b, IR_INPUT, ir_shape_of(1, D(3), false), NULL, -1), "input: must have a batch dimension");
    ck_assert_str_eq(keras(ir_hyper(&f.b, IR_HYPER_LR)), "()");
    ck_fails(&f, ir_hyper(&f.b, 9), "hyper: no hyperparameter #9");
    ck_assert_str_eq(keras(ir_scalar(&f.b, 2)), "()");
    ck_fails(&f, ir_const(&f.b, 0, ir_shape_of(2, D(3, -1), false)), "const: shape has a negative dimension or too many elements");
    ck_fails(&f, ir_const(&f.b, 0, ir_shape_of(IR_MAX_RANK + 1, D(1, 1, 1, 1, 1, 1, 1, 1, 1), false)), "rank exceeds 8");
    ir_attrs a = {0};
    a.scalar = 0.25;
    ck_assert_str_eq(keras(ir_leaf(&f.b, IR_DROPOUT_MASK, ir_shape_of(1, D(8), true), &a, -1)), "(None, 8)");
    a.scalar = 1;
    ck_fails(&f, ir_leaf(&f.b, IR_DROPOUT_MASK, ir_shape_of(1, D(8), true), &a, -1), "dropout_mask: rate 1 is not in [0, 1)");
    kd_arena_free(&f.a);
}
END_TEST

START_TEST(matmul_shapes)
{
    fx f;
    fx_init(&f);
    ir_node *x = input(&f, 1, D(784)), *w = konst(&f, 2, D(784, 256));
    ir_node *y = ir_matmul(&f.b, x, w, false, false);
    ck_assert_str_eq(keras(y), "(None, 256)");
    ck_assert_str_eq(keras(ir_matmul(&f.b, input(&f, 2, D(7, 784)), w, false, false)), "(None, 7, 256)");
    /* the weight gradient: x^T dy over the batch */
    ck_assert_str_eq(keras(ir_matmul(&f.b, x, y, true, false)), "(784, 256)");
    ck_assert_str_eq(keras(ir_matmul(&f.b, input(&f, 2, D(7, 784)), input(&f, 2, D(7, 256)), true, false)), "(784, 256)");
    ck_assert_str_eq(keras(ir_matmul(&f.b, y, w, false, true)), "(None, 784)");
    ck_assert_str_eq(keras(ir_matmul(&f.b, konst(&f, 2, D(3, 4)), konst(&f, 2, D(5, 3)), true, true)), "(4, 5)");
    ck_fails(&f, ir_matmul(&f.b, x, konst(&f, 2, D(100, 10)), false, false),
             "matmul: cannot multiply [784] by [100, 10]: inner dimensions differ");
    ck_fails(&f, ir_matmul(&f.b, x, y, false, false), "matmul: cannot multiply [784] by [256]: inner dimensions differ");
    ck_fails(&f, ir_matmul(&f.b, x, input(&f, 2, D(3, 256)), true, false),
             "matmul: cannot multiply [784]^T by [3, 256]: inner dimensions differ");
    ck_fails(&f, ir_matmul(&f.b, konst(&f, 2, D(3, 256)), y, false, true), "matmul: the batch of [256] cannot become a column of the product");
    ck_fails(&f, ir_matmul(&f.b, ir_scalar(&f.b, 1), w, false, false),
             "matmul: operands must have at least one non-batch dimension, not [] and [784, 256]");
    kd_arena_free(&f.a);
}
END_TEST

START_TEST(reduce_shapes)
{
    fx f;
    fx_init(&f);
    ir_node *x = input(&f, 2, D(3, 4));
    ck_assert_str_eq(keras(ir_reduce(&f.b, IR_SUM, x, 1 << 2, false)), "(None, 3)");
    ck_assert_str_eq(keras(ir_reduce(&f.b, IR_MEAN, x, 1 << 2, true)), "(None, 3, 1)");
    ck_assert_str_eq(keras(ir_reduce(&f.b, IR_MAX, x, 1 << 1 | 1 << 2, false)), "(None,)");
    ir_node *overb = ir_reduce(&f.b, IR_SUM, x, 1, false);
    ck_assert_str_eq(keras(overb), "(3, 4)");
    ck_assert(!overb->shape.batched);
    ir_node *keep = ir_reduce(&f.b, IR_MEAN, x, 1, true);
    ck_assert_str_eq(keras(keep), "(1, 3, 4)");
    ck_assert(!keep->shape.batched);
    ck_assert_str_eq(keras(ir_reduce(&f.b, IR_SUM, x, 7, false)), "()");
    ck_fails(&f, ir_reduce(&f.b, IR_SUM, x, 1 << 3, false), "sum: axes 0x8 out of range for [3, 4] (rank 3 with the batch)");
    ir_node *y = ir_reduce(&f.b, IR_MAX, x, 1 << 2, false);
    ir_attrs a = {0};
    a.axes = 1 << 2;
    ir_node *in[3] = {x, y, y};
    ck_assert_str_eq(keras(ir_make(&f.b, IR_MAX_GRAD, 3, in, &a)), "(None, 3, 4)");
    a.keepdims = true;
    ck_fails(&f, ir_make(&f.b, IR_MAX_GRAD, 3, in, &a), "max_grad: operand 1 is [3], expected [3, 1]");
    ck_assert_str_eq(keras(ir_broadcast(&f.b, konst(&f, 1, D(4)), x->shape)), "(None, 3, 4)");
    ck_fails(&f, ir_broadcast(&f.b, konst(&f, 1, D(5)), x->shape), "broadcast: cannot broadcast [5] to (None, 3, 4)");
    ck_fails(&f, ir_broadcast(&f.b, x, ir_shape_of(1, D(4), true)), "broadcast: cannot broadcast [3, 4] to (None, 4)");
    /* sum_to undoes a broadcast, the batch included */
    ck_assert_str_eq(keras(ir_sum_to(&f.b, x, &(ir_shape){.rank = 1, .dims = {4}})), "(4,)");
    ir_shape b31 = ir_shape_of(2, D(3, 1), true);
    ck_assert_str_eq(keras(ir_sum_to(&f.b, x, &b31)), "(None, 3, 1)");
    ck_assert_ptr_eq(ir_sum_to(&f.b, x, &x->shape), x);
    ir_shape s5 = ir_shape_of(1, D(5), false);
    ck_fails(&f, ir_sum_to(&f.b, x, &s5), "sum_to: [3, 4] is not a broadcast of [5]");
    kd_arena_free(&f.a);
}
END_TEST

START_TEST(layout_shapes)
{
    fx f;
    fx_init(&f);
    ir_node *x = input(&f, 3, D(5, 5, 64));
    ck_assert_str_eq(keras(ir_reshape(&f.b, x, ir_shape_of(1, D(1600), true))), "(None, 1600)");
    ck_assert_ptr_eq(ir_reshape(&f.b, x, x->shape), x);
    ck_fails(&f, ir_reshape(&f.b, x, ir_shape_of(1, D(1601), true)),
             "reshape: cannot reshape [5, 5, 64] (1600 elements) to [1601] (1601 elements)");
    ck_fails(&f, ir_reshape(&f.b, x, ir_shape_of(1, D(1600), false)),
             "reshape: cannot reshape (None, 5, 5, 64) to (1600,): the batch must stay");

    ir_attrs a = {0};
    int perm[4] = {0, 3, 1, 2};
    for (int i = 0; i < 4; i++) a.perm[i] = perm[i];
    ck_assert_str_eq(keras(ir_make(&f.b, IR_TRANSPOSE, 1, &x, &a)), "(None, 64, 5, 5)");
    a.perm[3] = 1;
    ck_fails(&f, ir_make(&f.b, IR_TRANSPOSE, 1, &x, &a), "transpose: perm is not a permutation of the 4 axes of [5, 5, 64]");
    a.perm[0] = 1, a.perm[1] = 0, a.perm[2] = 2, a.perm[3] = 3;
    ck_fails(&f, ir_make(&f.b, IR_TRANSPOSE, 1, &x, &a), "transpose: the batch must stay the first axis");

    ir_node *in[3] = {x, input(&f, 3, D(5, 5, 32)), input(&f, 3, D(5, 5, 1))};
    a = (ir_attrs){0};
    a.axis = 3;
    ck_assert_str_eq(keras(ir_make(&f.b, IR_CONCAT, 3, in, &a)), "(None, 5, 5, 97)");
    a.axis = 2;
    ck_fails(&f, ir_make(&f.b, IR_CONCAT, 3, in, &a), "concat: cannot concatenate [5, 5, 64] with [5, 5, 32] along axis 2");
    a.axis = 0;
    ck_fails(&f, ir_make(&f.b, IR_CONCAT, 3, in, &a), "concat: cannot concatenate along the batch");
    a.axis = 4;
    ck_fails(&f, ir_make(&f.b, IR_CONCAT, 3, in, &a), "concat: axis 4 out of range for [5, 5, 64]");

    a = (ir_attrs){0};
    a.begin[1] = 1, a.size[1] = 3, a.begin[2] = 0, a.size[2] = 5, a.begin[3] = 60, a.size[3] = 4;
    ir_node *s = ir_make(&f.b, IR_SLICE, 1, &x, &a);
    ck_assert_str_eq(keras(s), "(None, 3, 5, 4)");
    ck_assert_int_eq(s->attr.size[0], IR_BATCH);
    a.size[3] = 5;
    ck_fails(&f, ir_make(&f.b, IR_SLICE, 1, &x, &a), "slice: [60 : 65] is out of range on axis 3 of [5, 5, 64]");
    a.size[3] = 4, a.begin[0] = 1;
    ck_fails(&f, ir_make(&f.b, IR_SLICE, 1, &x, &a), "slice: cannot slice the batch");

    a = (ir_attrs){0};
    a.pad_lo[1] = 1, a.pad_hi[1] = 2, a.pad_lo[2] = 3;
    ck_assert_str_eq(keras(ir_make(&f.b, IR_PAD, 1, &x, &a)), "(None, 8, 8, 64)");
    a.pad_hi[0] = 1;
    ck_fails(&f, ir_make(&f.b, IR_PAD, 1, &x, &a), "pad: cannot pad the batch");
    a.pad_hi[0] = 0, a.pad_lo[3] = -1;
    ck_fails(&f, ir_make(&f.b, IR_PAD, 1, &x, &a), "pad: bad padding on axis 3");
    kd_arena_free(&f.a);
}
END_TEST

START_TEST(nn_shapes)
{
    fx f;
    fx_init(&f);
    ir_node *x = input(&f, 1, D(10));
    ir_attrs a = {0};
    a.axis = 1;
    ck_assert_str_eq(keras(ir_make(&f.b, IR_SOFTMAX, 1, &x, &a)), "(None, 10)");
    ck_assert_str_eq(keras(ir_make(&f.b, IR_LOG_SOFTMAX, 1, &x, &a)), "(None, 10)");
    a.axis = 2;
    ck_fails(&f, ir_make(&f.b, IR_SOFTMAX, 1, &x, &a), "softmax: axis 2 out of range for [10]");

    ir_node *t = input(&f, 1, D(10));
    ir_node *in[3] = {x, t, ir_scalar(&f.b, 1)};
    ir_node *loss = ir_make(&f.b, IR_SOFTMAX_XENT, 2, in, NULL);
    ck_assert_str_eq(keras(loss), "()");
    ck_assert(!loss->shape.batched);
    ck_assert_str_eq(keras(ir_make(&f.b, IR_SOFTMAX_XENT_GRAD, 3, in, NULL)), "(None, 10)");
    in[1] = input(&f, 1, D(9));
    ck_fails(&f, ir_make(&f.b, IR_SOFTMAX_XENT, 2, in, NULL), "softmax_xent: logits [10] and labels [9] differ");
    in[1] = t;
    in[2] = x;
    ck_fails(&f, ir_make(&f.b, IR_SOFTMAX_XENT_GRAD, 3, in, NULL), "softmax_xent_grad: dloss [10] is not a scalar");
    kd_arena_free(&f.a);
}
END_TEST

/* Output sizes, the CNN of docs/language.md first. */
static ir_node *conv(fx *f, ir_node *x, int k, int64_t filters, int stride, bool same)
{
    ir_node *w = konst(f, 4, D(k, k, x->shape.dims[3], filters));
    ir_attrs a = {0};
    a.stride[0] = a.stride[1] = stride;
    if (same) {
        ir_same_padding(x->shape.dims[1], k, stride, &a.pad_lo[0], &a.pad_hi[0]);
        ir_same_padding(x->shape.dims[2], k, stride, &a.pad_lo[1], &a.pad_hi[1]);
    }
    ir_node *in[2] = {x, w};
    return ir_make(&f->b, IR_CONV2D, 2, in, &a);
}

static ir_node *pool(fx *f, ir_op op, ir_node *x, int k, int stride, bool same)
{
    ir_attrs a = {0};
    a.window[0] = a.window[1] = k;
    a.stride[0] = a.stride[1] = stride;
    if (same) {
        ir_same_padding(x->shape.dims[1], k, stride, &a.pad_lo[0], &a.pad_hi[0]);
        ir_same_padding(x->shape.dims[2], k, stride, &a.pad_lo[1], &a.pad_hi[1]);
    }
    return ir_make(&f->b, op, 1, &x, &a);
}

START_TEST(conv_pool_sizes)
{
    fx f;
    fx_init(&f);
    ir_node *x = input(&f, 3, D(28, 28, 1));
    ir_node *h = conv(&f, x, 3, 32, 1, false);
    ck_assert_str_eq(keras(h), "(None, 26, 26, 32)");
    h = pool(&f, IR_MAXPOOL2D, h, 2, 2, false);
    ck_assert_str_eq(keras(h), "(None, 13, 13, 32)");
    h = conv(&f, h, 3, 64, 1, false);
    ck_assert_str_eq(keras(h), "(None, 11, 11, 64)");
    h = pool(&f, IR_MAXPOOL2D, h, 2, 2, false);
    ck_assert_str_eq(keras(h), "(None, 5, 5, 64)");
    ck_assert_str_eq(keras(conv(&f, h, 3, 64, 1, false)), "(None, 3, 3, 64)");

    ck_assert_str_eq(keras(conv(&f, x, 3, 8, 1, true)), "(None, 28, 28, 8)");
    ck_assert_str_eq(keras(conv(&f, x, 3, 8, 2, true)), "(None, 14, 14, 8)");
    ck_assert_str_eq(keras(conv(&f, x, 3, 8, 2, false)), "(None, 13, 13, 8)");
    ck_assert_str_eq(keras(conv(&f, x, 5, 8, 2, false)), "(None, 12, 12, 8)");
    ck_assert_str_eq(keras(conv(&f, x, 4, 8, 1, true)), "(None, 28, 28, 8)");
    ir_node *x5 = input(&f, 3, D(5, 5, 3));
    ck_assert_str_eq(keras(conv(&f, x5, 3, 2, 2, true)), "(None, 3, 3, 2)");
    ck_assert_str_eq(keras(conv(&f, x5, 3, 2, 2, false)), "(None, 2, 2, 2)");
    ck_assert_str_eq(keras(pool(&f, IR_MAXPOOL2D, x5, 2, 2, true)), "(None, 3, 3, 3)");
    ck_assert_str_eq(keras(pool(&f, IR_AVGPOOL2D, x5, 2, 2, false)), "(None, 2, 2, 3)");
    ck_assert_str_eq(keras(pool(&f, IR_AVGPOOL2D, x5, 3, 1, true)), "(None, 5, 5, 3)");
    ck_assert_str_eq(keras(pool(&f, IR_MAXPOOL2D, x5, 3, 1, false)), "(None, 3, 3, 3)");

    ck_fails(&f, conv(&f, x5, 7, 2, 1, false), "conv2d: kernel [7, 7, 3, 2] does not fit input [5, 5, 3] with strides (1, 1) and padding");
    ck_fails(&f, pool(&f, IR_MAXPOOL2D, x5, 6, 1, false), "maxpool2d: window (6, 6) with strides (1, 1) does not fit input [5, 5, 3]");
    ck_fails(&f, conv(&f, x5, 3, 2, 0, false), "conv2d: kernel [3, 3, 3, 2] does not fit input [5, 5, 3] with strides (0, 0) and padding");
    ir_node *in[2] = {x5, konst(&f, 4, D(3, 3, 4, 2))};
    ir_attrs a = {0};
    a.stride[0] = a.stride[1] = 1;
    ck_fails(&f, ir_make(&f.b, IR_CONV2D, 2, in, &a), "conv2d: input has 3 channels, kernel [3, 3, 4, 2] expects 4");
    in[0] = input(&f, 1, D(5));
    ck_fails(&f, ir_make(&f.b, IR_CONV2D, 2, in, &a), "conv2d: expects an input [N, H, W, C] and a kernel [kh, kw, C, F], not (None, 5) and [3, 3, 4, 2]");
    a.window[0] = a.window[1] = 2;
    a.pad_lo[0] = 2;
    ck_fails(&f, ir_make(&f.b, IR_MAXPOOL2D, 1, &x5, &a), "maxpool2d: padding must be smaller than the window");
    ir_attrs p_attrs_2x2 = {0};
    p_attrs_2x2.window[0] = p_attrs_2x2.window[1] = p_attrs_2x2.stride[0] = p_attrs_2x2.stride[1] = 2;

    /* The gradient ops check their operands against the forward conv. */
    ir_node *y = conv(&f, x5, 3, 2, 2, true);
    ir_attrs g = y->attr;
    g.shape = x5->shape;
    ir_node *bd[2] = {y, y->in[1]};
    ck_assert_str_eq(keras(ir_make(&f.b, IR_CONV2D_BWD_DATA, 2, bd, &g)), "(None, 5, 5, 3)");
    g.shape = y->in[1]->shape;
    ir_node *bf[2] = {x5, y};
    ck_assert_str_eq(keras(ir_make(&f.b, IR_CONV2D_BWD_FILTER, 2, bf, &g)), "(3, 3, 3, 2)");
    g.shape = ir_shape_of(3, D(8, 8, 3), true);
    ck_fails(&f, ir_make(&f.b, IR_CONV2D_BWD_DATA, 2, bd, &g), "conv2d_bwd_data: dy is [3, 3, 2], the conv gives [4, 4, 2]");
    ir_node *gin[2] = {x5, x5};
    ck_fails(&f, ir_make(&f.b, IR_MAXPOOL2D_GRAD, 2, gin, &p_attrs_2x2), "maxpool2d_grad: dy is [5, 5, 3], the pool gives [2, 2, 3]");
    kd_arena_free(&f.a);
}
END_TEST

START_TEST(too_large)
{
    fx f;
    fx_init(&f);
    f.g->max_nodes = 10;
    ir_node *x = input(&f, 1, D(3));
    for (int i = 0; i < 9; i++) x = ir_unary(&f.b, IR_NEG, x);
    ck_assert_ptr_nonnull(x);
    ck_fails(&f, ir_unary(&f.b, IR_NEG, x), "model too large");
    ck_assert(f.g->overflow);
    ck_fails(&f, ir_scalar(&f.b, 1), "model too large");
    ck_assert_int_eq(f.g->nodes.len, 10);
    ck_assert_int_eq(ir_graph_new(&f.a, NULL)->max_nodes, 4000000);
    kd_arena_free(&f.a);
}
END_TEST

START_TEST(clone)
{
    fx f;
    fx_init(&f);
    ir_node *x = input(&f, 1, D(3));
    ir_node *y = ir_unary(&f.b, IR_RELU, ir_binary(&f.b, IR_ADD, x, konst(&f, 1, D(3))));
    kd_vec_push(&f.a, &f.g->outputs, y);
    ir_update *u = kd_alloc(&f.a, sizeof *u);
    u->value = y;
    kd_vec_push(&f.a, &f.g->updates, u);
    ir_graph *c = ir_graph_clone(&f.a, f.g);
    ck_assert_int_eq(c->nodes.len, f.g->nodes.len);
    ir_node *cy = c->outputs.items[0];
    ck_assert_ptr_ne(cy, y);
    ck_assert_int_eq(cy->id, y->id);
    ck_assert_ptr_eq(cy->in[0], c->nodes.items[y->in[0]->id]);
    ck_assert_ptr_eq(((ir_update *)c->updates.items[0])->value, cy);
    /* Building into the clone leaves the original alone. */
    ir_builder cb = {.g = c};
    ck_assert_ptr_nonnull(ir_unary(&cb, IR_NEG, cy));
    ck_assert_int_eq(c->nodes.len, f.g->nodes.len + 1);
    ck_assert_int_eq(f.g->nodes.len, 4);
    kd_arena_free(&f.a);
}
END_TEST

/* Every op has a name, a shape rule and an evaluation; node ids follow creation order. */
START_TEST(op_table)
{
    for (int op = 0; op < IR_OP_COUNT; op++) {
        ck_assert_ptr_nonnull(ir_ops[op]);
        ck_assert_ptr_nonnull(ir_ops[op]->name);
        ck_assert_ptr_nonnull(ir_ops[op]->shape);
        ck_assert_ptr_nonnull(ir_ops[op]->eval);
        for (int j = 0; j < op; j++) ck_assert_str_ne(ir_ops[op]->name, ir_ops[j]->name);
    }
    /* Only ops that are gradients themselves, or made after autodiff (fusion),
     * lack a vjp (leaves have no inputs); conv2d_bwd_data has one, being
     * Conv2DTranspose's forward op too. */
    ir_op no_vjp[] = {IR_ACT_GRAD, IR_MAX_GRAD, IR_CONV2D_BWD_FILTER,
                      IR_DEPTHWISE_CONV2D_BWD_DATA, IR_DEPTHWISE_CONV2D_BWD_FILTER,
                      IR_MAXPOOL2D_GRAD, IR_AVGPOOL2D_GRAD, IR_SOFTMAX_XENT_GRAD,
                      IR_GATHER_GRAD, IR_FUSED_MATMUL, IR_FUSED_CONV2D, IR_FUSED_DEPTHWISE_CONV2D};
    for (int op = 0; op < IR_OP_COUNT; op++) {
        bool grad_op = false;
        for (size_t k = 0; k < sizeof no_vjp / sizeof no_vjp[0]; k++) grad_op |= no_vjp[k] == (ir_op)op;
        if (ir_ops[op]->arity != 0) ck_assert_msg((ir_ops[op]->vjp == NULL) == grad_op, "%s", ir_ops[op]->name);
    }
}
END_TEST

/* ---- interpreter: forward values -------------------------------------- */

typedef struct run {
    fx f;
    double *in[4];
    int nin;
    ir_values *v;
} run;

static ir_node *feed(run *r, int rank, const int64_t *dims, const double *data, int batch)
{
    ir_attrs a = {0};
    a.index = r->nin;
    ir_node *n = ir_leaf(&r->f.b, IR_INPUT, ir_shape_of(rank, dims, true), &a, -1);
    int64_t count = ir_shape_elems(&n->shape) * batch;
    r->in[r->nin] = malloc((size_t)count * sizeof(double));
    memcpy(r->in[r->nin++], data, (size_t)count * sizeof(double));
    return n;
}

static void go(run *r, int batch, double step)
{
    ir_feed fd = {.batch = batch, .inputs = (const double *const *)r->in};
    fd.hyper[IR_HYPER_STEP] = step;
    fd.hyper[IR_HYPER_SEED] = 42;
    char why[128];
    r->v = ir_interp_run(r->f.g, &fd, why, sizeof why);
    ck_assert_msg(r->v != NULL, "%s", why);
}

static void done(run *r)
{
    ir_values_free(r->v);
    for (int i = 0; i < r->nin; i++) free(r->in[i]);
    kd_arena_free(&r->f.a);
}

static void ck_values(const double *got, const double *want, int n, double tol)
{
    for (int i = 0; i < n; i++) ck_assert_msg(fabs(got[i] - want[i]) <= tol, "[%d]: %.9g, want %.9g", i, got[i], want[i]);
}

START_TEST(interp_softmax)
{
    run r = {0};
    fx_init(&r.f);
    ir_node *x = feed(&r, 1, D(3), (double[]){2, 1, 0.1}, 1);
    ir_attrs a = {0};
    a.axis = 1;
    ir_node *s = ir_make(&r.f.b, IR_SOFTMAX, 1, &x, &a);
    ir_node *ls = ir_make(&r.f.b, IR_LOG_SOFTMAX, 1, &x, &a);
    go(&r, 1, 0);
    ck_values(ir_value(r.v, s), (double[]){0.6590012, 0.24243298, 0.09856589}, 3, 1e-7);   /* Keras */
    ck_values(ir_value(r.v, ls), (double[]){log(0.6590012), log(0.24243298), log(0.09856589)}, 3, 1e-6);
    done(&r);
}
END_TEST

START_TEST(interp_matmul_reduce)
{
    run r = {0};
    fx_init(&r.f);
    ir_node *x = feed(&r, 1, D(2), (double[]){1, 2, 3, 4}, 2);                 /* [[1 2] [3 4]] */
    ir_node *wv = feed(&r, 1, D(3), (double[]){1, 0, -1, 2, 1, 0}, 2);        /* [[1 0 -1] [2 1 0]] */
    ir_node *w = ir_reshape(&r.f.b, ir_reduce(&r.f.b, IR_SUM, wv, 1, true), ir_shape_of(2, D(1, 3), false));
    ir_node *xw = ir_matmul(&r.f.b, x, ir_const(&r.f.b, 1, ir_shape_of(2, D(2, 3), false)), false, false);
    ck_assert_ptr_null(ir_matmul(&r.f.b, x, wv, false, false));               /* the batch is not a row of b */
    ir_node *xt = ir_matmul(&r.f.b, x, wv, true, false);                       /* x^T wv over the batch */
    ir_node *sum1 = ir_reduce(&r.f.b, IR_SUM, x, 1 << 1, false);
    ir_node *mean0 = ir_reduce(&r.f.b, IR_MEAN, x, 1, true);
    ir_node *mx = ir_reduce(&r.f.b, IR_MAX, wv, 3, false);
    go(&r, 2, 0);
    ck_values(ir_value(r.v, w), (double[]){3, 1, -1}, 3, 0);
    ck_values(ir_value(r.v, xw), (double[]){3, 3, 3, 7, 7, 7}, 6, 0);
    ck_values(ir_value(r.v, xt), (double[]){1 + 6, 0 + 3, -1 + 0, 2 + 8, 0 + 4, -2 + 0}, 6, 0);
    ck_values(ir_value(r.v, sum1), (double[]){3, 7}, 2, 0);
    ck_values(ir_value(r.v, mean0), (double[]){2, 3}, 2, 0);
    ck_values(ir_value(r.v, mx), (double[]){2}, 1, 0);
    done(&r);
}
END_TEST

START_TEST(interp_conv_pool)
{
    run r = {0};
    fx_init(&r.f);
    /* a 3x3 single-channel image 1..9, a 2x2 kernel [[1, 0], [0, -1]]; 'same' pads bottom/right */
    ir_node *x = feed(&r, 3, D(3, 3, 1), (double[]){1, 2, 3, 4, 5, 6, 7, 8, 9}, 1);
    kd_var kv = {.index = 0, .name = "k", .shape = ir_shape_of(4, D(2, 2, 1, 1), false)};
    kd_vec_push(&r.f.a, &r.f.vars, &kv);
    ir_node *in[2] = {x, ir_var_read(&r.f.b, &kv)};
    ir_attrs a = {0};
    a.stride[0] = a.stride[1] = 1;
    ir_same_padding(3, 2, 1, &a.pad_lo[0], &a.pad_hi[0]);
    ir_same_padding(3, 2, 1, &a.pad_lo[1], &a.pad_hi[1]);
    ir_node *c = ir_make(&r.f.b, IR_CONV2D, 2, in, &a);
    ir_attrs p = {0};
    p.window[0] = p.window[1] = 2;
    p.stride[0] = p.stride[1] = 2;
    ir_same_padding(3, 2, 2, &p.pad_lo[0], &p.pad_hi[0]);
    ir_same_padding(3, 2, 2, &p.pad_lo[1], &p.pad_hi[1]);
    ir_node *mp = ir_make(&r.f.b, IR_MAXPOOL2D, 1, &x, &p);
    ir_node *ap = ir_make(&r.f.b, IR_AVGPOOL2D, 1, &x, &p);
    ir_node *neg = ir_unary(&r.f.b, IR_NEG, x);
    ir_node *mpn = ir_make(&r.f.b, IR_MAXPOOL2D, 1, &neg, &p);   /* all negative: padding must not win */
    double kdata[4] = {1, 0, 0, -1};
    ir_feed fd = {.batch = 1, .inputs = (const double *const *)r.in, .vars = (const double *const[]){kdata}};
    char why[128];
    r.v = ir_interp_run(r.f.g, &fd, why, sizeof why);
    ck_assert_ptr_nonnull(r.v);
    /* y[i][j] = x[i][j] - x[i+1][j+1], zero beyond the image */
    ck_values(ir_value(r.v, c), (double[]){1 - 5, 2 - 6, 3, 4 - 8, 5 - 9, 6, 7, 8, 9}, 9, 0);
    ck_values(ir_value(r.v, mp), (double[]){5, 6, 8, 9}, 4, 0);
    /* 'same' average pooling counts only the positions inside the image */
    ck_values(ir_value(r.v, ap), (double[]){3, 4.5, 7.5, 9}, 4, 0);
    ck_values(ir_value(r.v, mpn), (double[]){-1, -3, -7, -9}, 4, 0);
    done(&r);
}
END_TEST

START_TEST(interp_layout)
{
    run r = {0};
    fx_init(&r.f);
    ir_node *x = feed(&r, 2, D(2, 3), (double[]){1, 2, 3, 4, 5, 6}, 1);
    ir_attrs t = {0};
    t.perm[0] = 0, t.perm[1] = 2, t.perm[2] = 1;
    ir_node *tr = ir_make(&r.f.b, IR_TRANSPOSE, 1, &x, &t);
    ir_attrs s = {0};
    s.begin[1] = 1, s.size[1] = 1, s.begin[2] = 1, s.size[2] = 2;
    ir_node *sl = ir_make(&r.f.b, IR_SLICE, 1, &x, &s);
    ir_attrs p = {0};
    p.pad_lo[2] = 1, p.pad_hi[1] = 1;
    ir_node *pd = ir_make(&r.f.b, IR_PAD, 1, &x, &p);
    ir_node *cin[2] = {x, sl};
    ir_attrs c = {0};
    c.axis = 1;
    ir_node *cc = ir_make(&r.f.b, IR_CONCAT, 2, cin, &c);
    ck_assert_ptr_null(cc);                    /* [2, 3] with [1, 2] along axis 1: the 3 and 2 differ */
    c.axis = 2;
    cin[1] = ir_make(&r.f.b, IR_SLICE, 1, &x, &(ir_attrs){.begin = {0, 0, 2}, .size = {0, 2, 1}});
    cc = ir_make(&r.f.b, IR_CONCAT, 2, cin, &c);
    ir_node *bc = ir_broadcast(&r.f.b, ir_reduce(&r.f.b, IR_SUM, x, 1 << 1, true), x->shape);
    go(&r, 1, 0);
    ck_values(ir_value(r.v, tr), (double[]){1, 4, 2, 5, 3, 6}, 6, 0);
    ck_values(ir_value(r.v, sl), (double[]){5, 6}, 2, 0);
    ck_values(ir_value(r.v, pd), (double[]){0, 1, 2, 3, 0, 4, 5, 6, 0, 0, 0, 0}, 12, 0);
    ck_values(ir_value(r.v, cc), (double[]){1, 2, 3, 3, 4, 5, 6, 6}, 8, 0);
    ck_values(ir_value(r.v, bc), (double[]){5, 7, 9, 5, 7, 9}, 6, 0);
    done(&r);
}
END_TEST

/* The mask depends only on (seed, step, salt, index): same step, same mask. */
START_TEST(interp_dropout)
{
    enum { N = 4000 };
    double *m[3];
    for (int k = 0; k < 3; k++) {
        run r = {0};
        fx_init(&r.f);
        ir_attrs a = {0};
        a.scalar = 0.3;
        a.index = 1;
        ir_node *mask = ir_leaf(&r.f.b, IR_DROPOUT_MASK, ir_shape_of(1, D(N / 4), true), &a, -1);
        go(&r, 4, k == 2 ? 1 : 0);
        m[k] = malloc(N * sizeof(double));
        memcpy(m[k], ir_value(r.v, mask), N * sizeof(double));
        done(&r);
    }
    int zeros = 0, same = 0, differ = 0;
    for (int i = 0; i < N; i++) {
        ck_assert(m[0][i] == 0 || fabs(m[0][i] - 1 / 0.7) < 1e-15);
        zeros += m[0][i] == 0;
        same += m[0][i] == m[1][i];
        differ += m[0][i] != m[2][i];
    }
    ck_assert_int_eq(same, N);
    ck_assert_int_gt(differ, N / 5);                          /* another step, another mask */
    ck_assert_int_gt(zeros, (int)(0.3 * N) - 150);            /* ~ rate, within 5 sigma */
    ck_assert_int_lt(zeros, (int)(0.3 * N) + 150);
    for (int k = 0; k < 3; k++) free(m[k]);
}
END_TEST

/* ---- dump -------------------------------------------------------------- */

START_TEST(dump)
{
    fx f;
    fx_init(&f);
    kd_var kv = {.index = 0, .name = "dense/kernel", .shape = ir_shape_of(2, D(784, 256), false)};
    kd_vec_push(&f.a, &f.vars, &kv);
    ir_node *x = input(&f, 1, D(784));
    f.b.layer = "dense";
    ir_node *y = ir_matmul(&f.b, x, ir_var_read(&f.b, &kv), false, false);
    ir_node *z = ir_matmul(&f.b, y, ir_var_read(&f.b, &kv), false, true);
    f.b.layer = NULL;
    ir_node *s = ir_reduce(&f.b, IR_MEAN, ir_binary(&f.b, IR_MUL, z, ir_scalar(&f.b, 0.1)), 3, false);
    ir_attrs p = {0};
    p.window[0] = p.window[1] = 2, p.stride[0] = p.stride[1] = 2;
    ir_node *img = input(&f, 3, D(4, 4, 1));
    ir_make(&f.b, IR_MAXPOOL2D, 1, &img, &p);
    kd_vec_push(&f.a, &f.g->outputs, s);
    ir_update *u = kd_alloc(&f.a, sizeof *u);
    u->var = 0;
    u->value = ir_var_read(&f.b, &kv);
    kd_vec_push(&f.a, &f.g->updates, u);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    ir_dump(out, f.g);
    fclose(out);
    ck_assert_str_eq(text,
                     "%0 = input #0 : (None, 784)\n"
                     "%1 = var dense/kernel : (784, 256)  # dense\n"
                     "%2 = matmul(%0, %1) : (None, 256)  # dense\n"
                     "%3 = var dense/kernel : (784, 256)  # dense\n"
                     "%4 = matmul(%2, %3) : (None, 784) trans_b  # dense\n"
                     "%5 = const 0.1 : ()\n"
                     "%6 = mul(%4, %5) : (None, 784)\n"
                     "%7 = mean(%6) : () axes=[0, 1]\n"
                     "%8 = input #0 : (None, 4, 4, 1)\n"
                     "%9 = maxpool2d(%8) : (None, 2, 2, 1) window=(2, 2) stride=(2, 2)\n"
                     "%10 = var dense/kernel : (784, 256)\n"
                     "output %7\n"
                     "update dense/kernel = %10\n");
    free(text);
    kd_arena_free(&f.a);
}
END_TEST

static Suite *ir_suite(void)
{
    Suite *s = suite_create("ir");
    TCase *t = tcase_create("shapes");
    tcase_add_test(t, shape_helpers);
    tcase_add_loop_test(t, broadcasting, 0, sizeof bcast_cases / sizeof bcast_cases[0]);
    tcase_add_test(t, same_padding);
    suite_add_tcase(s, t);
    t = tcase_create("ops");
    tcase_add_test(t, elementwise_shapes);
    tcase_add_test(t, leaf_shapes);
    tcase_add_test(t, matmul_shapes);
    tcase_add_test(t, reduce_shapes);
    tcase_add_test(t, layout_shapes);
    tcase_add_test(t, nn_shapes);
    tcase_add_test(t, conv_pool_sizes);
    tcase_add_test(t, too_large);
    tcase_add_test(t, clone);
    tcase_add_test(t, op_table);
    suite_add_tcase(s, t);
    t = tcase_create("interp");
    tcase_add_test(t, interp_softmax);
    tcase_add_test(t, interp_matmul_reduce);
    tcase_add_test(t, interp_conv_pool);
    tcase_add_test(t, interp_layout);
    tcase_add_test(t, interp_dropout);
    tcase_add_test(t, dump);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tu_run_suite(ir_suite()); }
