/* test_autodiff.c — whole graphs differentiated by autodiff and checked
 * against finite differences; what is not trainable gets no gradient; the
 * training graphs (Keras' losses, the optimizers) against hand computations. */
#include "autodiff.h"
#include "driver.h"
#include "gradcheck.h"
#include "testutil.h"
#include "train_graph.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define D(...) ((const int64_t[]){__VA_ARGS__})
#define TOL 1e-6

/* Gradients of loss w.r.t. every trainable variable, checked by finite differences. */
static void check_var_grads(gc_ctx *c, ir_node *loss)
{
    ck_assert_msg(loss != NULL, "%s", c->b.why);
    ir_node **per_var = ir_var_gradients(&c->b, loss);
    ck_assert_msg(per_var != NULL, "%s", c->b.why);
    ir_node *wrt[GC_MAX_FEEDS], *grads[GC_MAX_FEEDS];
    int n = 0;
    for (int i = 0; i < c->g->nodes.len; i++) {
        ir_node *x = c->g->nodes.items[i];
        if (x->op != IR_VAR) continue;
        const kd_var *v = c->vars.items[x->var];
        bool seen = false;
        for (int k = 0; k < n; k++) seen |= wrt[k]->var == x->var;
        if (!v->trainable || seen) continue;
        ck_assert_msg(per_var[x->var] != NULL, "no gradient for %s", v->name);
        wrt[n] = x;
        grads[n++] = per_var[x->var];
    }
    ck_assert_int_gt(n, 0);
    double err = gc_check(c, loss, n, wrt, grads);
    ck_assert_msg(err < TOL, "relative error %g", err);
}

static ir_node *dense(gc_ctx *c, ir_node *x, int64_t in, int64_t out, const char *name, bool relu)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s/kernel", name);
    ir_node *w = gc_var(c, buf, 2, D(in, out), GC_UNIFORM, -1, 1, true);
    snprintf(buf, sizeof buf, "%s/bias", name);
    ir_node *b = gc_var(c, buf, 1, D(out), GC_UNIFORM, -0.5, 0.5, true);
    c->b.layer = name;
    ir_node *y = ir_binary(&c->b, IR_ADD, ir_matmul(&c->b, x, w, false, false), b);
    if (relu) y = ir_unary(&c->b, IR_RELU, y);
    c->b.layer = NULL;
    return y;
}

START_TEST(mlp_softmax_xent)
{
    gc_ctx c;
    gc_init(&c, 3);
    ir_node *x = gc_input(&c, 1, D(4), GC_UNIFORM, -1, 1);
    ir_node *h = dense(&c, x, 4, 5, "dense", true);
    ir_node *z = dense(&c, h, 5, 3, "dense_1", false);
    ir_node *in[2] = {z, gc_label(&c, 1, D(3), GC_ONEHOT, 0, 1)};
    check_var_grads(&c, ir_make(&c.b, IR_SOFTMAX_XENT, 2, in, NULL));
    /* The backward nodes say which layer they belong to. */
    int tagged = 0;
    for (int i = 0; i < c.g->nodes.len; i++) {
        const ir_node *n = c.g->nodes.items[i];
        tagged += n->op == IR_ACT_GRAD && n->layer && !strcmp(n->layer, "dense");
    }
    ck_assert_int_eq(tagged, 1);
    gc_free(&c);
}
END_TEST

/* Every Keras loss through kd_loss, on a small MLP. */
START_TEST(mlp_losses)
{
    static const struct {
        kd_loss_kind loss;
        bool from_logits;
        bool softmax, sigmoid;    /* the model's last activation */
        gc_fill labels;
        double label_smoothing, delta;
    } cases[] = {
        {LOSS_CATEGORICAL_XENT, true, false, false, GC_ONEHOT, 0, 0},
        {LOSS_CATEGORICAL_XENT, false, true, false, GC_ONEHOT, 0, 0},
        {LOSS_SPARSE_CATEGORICAL_XENT, false, true, false, GC_ONEHOT, 0, 0},
        {LOSS_BINARY_XENT, true, false, false, GC_UNIFORM, 0, 0},
        {LOSS_BINARY_XENT, false, false, true, GC_UNIFORM, 0, 0},
        {LOSS_MSE, false, false, false, GC_UNIFORM, 0, 0},
        {LOSS_CATEGORICAL_XENT, true, false, false, GC_ONEHOT, 0.2, 0},
        {LOSS_CATEGORICAL_XENT, false, true, false, GC_ONEHOT, 0.1, 0},
        {LOSS_BINARY_XENT, true, false, false, GC_ONEHOT, 0.3, 0},
        {LOSS_BINARY_XENT, false, false, true, GC_UNIFORM, 0.1, 0},
        {LOSS_MAE, false, false, false, GC_UNIFORM, 0, 0},
        {LOSS_HUBER, false, false, false, GC_UNIFORM, 0, 0.3},
        {LOSS_HUBER, false, false, false, GC_UNIFORM, 0, 1.0},
        {LOSS_LOG_COSH, false, false, false, GC_UNIFORM, 0, 0},
        {LOSS_KLD, false, true, false, GC_UNIFORM, 0, 0},
        {LOSS_MSLE, false, false, true, GC_UNIFORM, 0, 0},
        {LOSS_HINGE, false, false, false, GC_ONEHOT, 0, 0},     /* 0/1 labels: made -1/1 */
        {LOSS_HINGE, false, false, false, GC_UNIFORM, 0, 0},    /* other labels: as they are */
        {LOSS_CATEGORICAL_HINGE, false, false, false, GC_ONEHOT, 0, 0},
        {LOSS_POISSON, false, false, true, GC_UNIFORM, 0, 0},
        {LOSS_COSINE_SIMILARITY, false, false, false, GC_UNIFORM, 0, 0},
    };
    gc_ctx c;
    gc_init(&c, 4);
    ir_node *x = gc_input(&c, 1, D(3), GC_UNIFORM, -1, 1);
    ir_node *y = dense(&c, dense(&c, x, 3, 4, "dense", true), 4, 3, "dense_1", false);
    ir_attrs a = {0};
    a.axis = 1;
    if (cases[_i].softmax) y = ir_make(&c.b, IR_SOFTMAX, 1, &y, &a);
    if (cases[_i].sigmoid) y = ir_unary(&c.b, IR_SIGMOID, y);
    kd_loss_spec cfg = {.kind = cases[_i].loss, .from_logits = cases[_i].from_logits,
                           .label_smoothing = cases[_i].label_smoothing, .delta = cases[_i].delta};
    ir_node *t = gc_label(&c, 1, D(3), cases[_i].labels, 0, 1);
    check_var_grads(&c, kd_loss(&c.b, &cfg, y, t, NULL));
    gc_free(&c);
}
END_TEST

START_TEST(cnn)
{
    gc_ctx c;
    gc_init(&c, 2);
    ir_node *x = gc_input(&c, 3, D(6, 6, 1), GC_UNIFORM, -1, 1);
    ir_node *in[2] = {x, gc_var(&c, "conv2d/kernel", 4, D(3, 3, 1, 2), GC_UNIFORM, -1, 1, true)};
    ir_attrs a = {0};
    a.stride[0] = a.stride[1] = 1;
    ir_same_padding(6, 3, 1, &a.pad_lo[0], &a.pad_hi[0]);
    ir_same_padding(6, 3, 1, &a.pad_lo[1], &a.pad_hi[1]);
    ir_node *h = ir_make(&c.b, IR_CONV2D, 2, in, &a);
    h = ir_unary(&c.b, IR_RELU, ir_binary(&c.b, IR_ADD, h, gc_var(&c, "conv2d/bias", 1, D(2), GC_UNIFORM, -0.2, 0.2, true)));
    ir_attrs p = {0};
    p.window[0] = p.window[1] = p.stride[0] = p.stride[1] = 2;
    h = ir_make(&c.b, IR_MAXPOOL2D, 1, &h, &p);
    h = ir_reshape(&c.b, h, ir_shape_of(1, D(18), true));
    ir_node *z = dense(&c, h, 18, 3, "dense", false);
    ir_node *xe[2] = {z, gc_label(&c, 1, D(3), GC_ONEHOT, 0, 1)};
    check_var_grads(&c, ir_make(&c.b, IR_SOFTMAX_XENT, 2, xe, NULL));
    ck_assert_int_eq(gc_count_op(c.g, IR_CONV2D_BWD_FILTER), 1);
    /* The input needs no gradient: no conv2d_bwd_data. */
    ck_assert_int_eq(gc_count_op(c.g, IR_CONV2D_BWD_DATA), 0);
    ck_assert_int_eq(gc_count_op(c.g, IR_MAXPOOL2D_GRAD), 1);
    gc_free(&c);
}
END_TEST

/* BatchNormalization in training mode: batch statistics over every axis but
 * the channels, the batch included; the gradient flows through them. */
START_TEST(batchnorm)
{
    gc_ctx c;
    gc_init(&c, 4);
    bool image = _i == 1;
    ir_node *x = image ? gc_input(&c, 3, D(2, 2, 3), GC_UNIFORM, -2, 2) : gc_input(&c, 1, D(3), GC_UNIFORM, -2, 2);
    int rank = x->shape.rank;
    int64_t axes = ((int64_t)1 << (rank - 1)) - 1;
    ir_builder *b = &c.b;
    ir_node *gamma = gc_var(&c, "bn/gamma", 1, D(3), GC_UNIFORM, 0.5, 1.5, true);
    ir_node *beta = gc_var(&c, "bn/beta", 1, D(3), GC_UNIFORM, -0.5, 0.5, true);
    ir_node *mean = ir_reduce(b, IR_MEAN, x, axes, true);
    ir_node *xc = ir_binary(b, IR_SUB, x, mean);
    ir_node *var = ir_reduce(b, IR_MEAN, ir_unary(b, IR_SQUARE, xc), axes, true);
    ir_node *y = ir_binary(b, IR_MUL, xc, ir_unary(b, IR_RSQRT, ir_binary(b, IR_ADD, var, ir_scalar(b, 1e-3))));
    y = ir_binary(b, IR_ADD, ir_binary(b, IR_MUL, y, gamma), beta);
    /* a moving-mean update beside it: a state, never differentiated */
    ir_node *mm = gc_var(&c, "bn/moving_mean", 1, D(3), GC_UNIFORM, 0, 0, false);
    ir_node *next = ir_binary(b, IR_ADD, ir_binary(b, IR_MUL, mm, ir_scalar(b, 0.99)),
                              ir_binary(b, IR_MUL, ir_reshape(b, mean, mm->shape), ir_scalar(b, 0.01)));
    ck_assert_ptr_nonnull(next);
    ir_node *loss = gc_weighted_sum(&c, y);
    check_var_grads(&c, loss);
    /* ... and w.r.t. the input, through the batch statistics */
    double err = gc_grad_check(&c, loss, 1, &x);
    ck_assert_msg(err < TOL, "relative error %g", err);
    ck_assert_int_gt(gc_count_op(c.g, IR_HYPER), 0);   /* the means over the batch divide by B */
    gc_free(&c);
}
END_TEST

/* Frozen weights and states get no gradient, and nothing is computed for them. */
START_TEST(frozen_get_nothing)
{
    gc_ctx c;
    gc_init(&c, 3);
    ir_node *x = gc_input(&c, 1, D(4), GC_UNIFORM, -1, 1);
    ir_node *w1 = gc_var(&c, "frozen/kernel", 2, D(4, 5), GC_UNIFORM, -1, 1, false);
    ir_node *w2 = gc_var(&c, "dense/kernel", 2, D(5, 2), GC_UNIFORM, -1, 1, true);
    ir_node *st = gc_var(&c, "bn/moving_mean", 1, D(2), GC_UNIFORM, -1, 1, false);
    ((kd_var *)c.vars.items[st->var])->kind = VAR_STATE;
    ((kd_var *)c.vars.items[st->var])->trainable = true;   /* even so: a state is no weight */
    ir_node *h = ir_unary(&c.b, IR_TANH, ir_matmul(&c.b, x, w1, false, false));
    ir_node *y = ir_binary(&c.b, IR_ADD, ir_matmul(&c.b, h, w2, false, false), st);
    ir_node *loss = gc_weighted_sum(&c, y);
    int before = c.g->nodes.len;
    ir_node **d = ir_var_gradients(&c.b, loss);
    ck_assert_ptr_nonnull(d);
    ck_assert_ptr_null(d[w1->var]);
    ck_assert_ptr_null(d[st->var]);
    ck_assert_ptr_nonnull(d[w2->var]);
    /* Only h^T dy: no dy W2^T, no tanh derivative, no x^T dh. */
    int matmuls = 0, added = c.g->nodes.len - before;
    for (int i = before; i < c.g->nodes.len; i++) {
        const ir_node *n = c.g->nodes.items[i];
        matmuls += n->op == IR_MATMUL;
        ck_assert_int_ne(n->op, IR_SQUARE);
    }
    ck_assert_int_eq(matmuls, 1);
    ck_assert_int_le(added, 5);     /* seed, reshape, broadcast, mul by r, the matmul */
    double err = gc_check(&c, loss, 1, &w2, &d[w2->var]);
    ck_assert_msg(err < TOL, "relative error %g", err);
    gc_free(&c);
}
END_TEST

/* A shared layer reads its kernel twice: the gradient is the sum of both uses. */
START_TEST(shared_weights)
{
    gc_ctx c;
    gc_init(&c, 2);
    ir_node *x1 = gc_input(&c, 1, D(3), GC_UNIFORM, -1, 1), *x2 = gc_input(&c, 1, D(3), GC_UNIFORM, -1, 1);
    ir_node *w = gc_var(&c, "enc/kernel", 2, D(3, 3), GC_UNIFORM, -1, 1, true);
    ir_node *w_again = ir_var_read(&c.b, c.vars.items[w->var]);
    ir_node *a = ir_unary(&c.b, IR_SIGMOID, ir_matmul(&c.b, x1, w, false, false));
    ir_node *b = ir_unary(&c.b, IR_TANH, ir_matmul(&c.b, x2, w_again, false, false));
    ir_node *loss = gc_weighted_sum(&c, ir_binary(&c.b, IR_MUL, a, b));
    check_var_grads(&c, loss);
    gc_free(&c);
}
END_TEST

/* A loss that does not reach a node gives it no gradient; an op with no vjp
 * on the path is an error, not a silent zero. */
START_TEST(unreachable_and_no_rule)
{
    gc_ctx c;
    gc_init(&c, 2);
    ir_node *x = gc_input(&c, 1, D(3), GC_UNIFORM, -1, 1), *z = gc_input(&c, 1, D(3), GC_UNIFORM, -1, 1);
    ir_node *loss = ir_reduce(&c.b, IR_SUM, ir_unary(&c.b, IR_EXP, x), 3, false);
    ir_node *wrt[2] = {z, x};
    int before = c.g->nodes.len;
    ir_node **d = ir_gradients(&c.b, loss, 2, wrt);
    ck_assert_ptr_nonnull(d);
    ck_assert_ptr_null(d[0]);
    ck_assert_ptr_nonnull(d[1]);
    ck_assert_ptr_null(ir_gradients(&c.b, loss, 1, &z)[0]);
    ck_assert_int_gt(c.g->nodes.len, before);
    ir_node *bad = ir_reduce(&c.b, IR_SUM, ir_binary(&c.b, IR_ACT_GRAD, x, z), 3, false);
    ck_assert_ptr_null(ir_gradients(&c.b, bad, 1, &z));
    ck_assert_str_eq(c.b.why, "act_grad: no gradient rule (is it on the forward path?)");
    gc_free(&c);
}
END_TEST

/* ---- training graphs ---------------------------------------------------- */

/* A model y = x W + b with W [2, 2], b [2]: small enough to train by hand. */
typedef struct lin {
    kd_arena a;
    kd_model m;
    ir_node *x;
    double *vals[16];
    double xdata[6], tdata[6];
} lin;

static kd_var *lin_var(lin *l, const char *name, int rank, const int64_t *dims, const double *init)
{
    kd_var *v = kd_alloc(&l->a, sizeof *v);
    v->index = l->m.vars.len;
    v->name = name;
    v->kind = VAR_WEIGHT;
    v->trainable = true;
    v->shape = ir_shape_of(rank, dims, false);
    v->of_var = -1;
    kd_vec_push(&l->a, &l->m.vars, v);
    int64_t n = ir_shape_elems(&v->shape);
    l->vals[v->index] = calloc((size_t)n, sizeof(double));
    memcpy(l->vals[v->index], init, (size_t)n * sizeof(double));
    return v;
}

static void lin_init(lin *l, kd_optimizer_kind opt, kd_loss_kind loss)
{
    memset(l, 0, sizeof *l);
    l->m.name = "lin";
    l->m.train = ir_graph_new(&l->a, &l->m.vars);
    ir_builder b = {.g = l->m.train};
    kd_var *w = lin_var(l, "dense/kernel", 2, D(2, 2), (double[]){0.5, -0.3, 0.2, 0.8});
    kd_var *bias = lin_var(l, "dense/bias", 1, D(2), (double[]){0.1, -0.1});
    ir_attrs a = {0};
    l->x = ir_leaf(&b, IR_INPUT, ir_shape_of(1, D(2), true), &a, -1);
    ir_node *y = ir_binary(&b, IR_ADD, ir_matmul(&b, l->x, ir_var_read(&b, w), false, false), ir_var_read(&b, bias));
    ck_assert_ptr_nonnull(y);
    kd_vec_push(&l->a, &l->m.train->outputs, y);
    l->m.config = (kd_train_config){.present = true, .loss = {.kind = loss}, .optimizer = opt, .learning_rate = 0.1,
                                    .beta_1 = 0.9, .beta_2 = 0.999, .epsilon = 1e-7, .rho = 0.9};
    double xs[6] = {1, 2, -1, 0.5, 0.3, -2}, ts[6] = {1, 0, 0, 1, 2, -1};
    memcpy(l->xdata, xs, sizeof xs);
    memcpy(l->tdata, ts, sizeof ts);
}

static void lin_free(lin *l)
{
    for (int i = 0; i < l->m.vars.len; i++) free(l->vals[i]);
    kd_arena_free(&l->a);
}

/* Runs g on the batch of 3 at `step`; applies the updates to l->vals. */
static ir_values *lin_run(lin *l, ir_graph *g, int step, bool apply)
{
    for (int i = 0; i < l->m.vars.len; i++)
        if (!l->vals[i]) l->vals[i] = calloc((size_t)ir_shape_elems(&((kd_var *)l->m.vars.items[i])->shape), sizeof(double));
    const double *in[1] = {l->xdata}, *lb[1] = {l->tdata};
    ir_feed f = {.batch = 3, .inputs = in, .labels = lb, .vars = (const double *const *)l->vals};
    f.hyper[IR_HYPER_LR] = l->m.config.learning_rate;
    f.hyper[IR_HYPER_STEP] = step;
    char why[128];
    ir_values *v = ir_interp_run(g, &f, why, sizeof why);
    ck_assert_msg(v != NULL, "%s", why);
    if (apply) ir_interp_apply_updates(v, l->vals);
    return v;
}

/* The MSE gradient of the linear model by hand: dW = x^T dy, db = sum dy, dy = 2 (y - t) / 6. */
static double lin_hand_grads(const lin *l, const double *W, const double *bias, double *dW, double *db)
{
    double loss = 0;
    memset(dW, 0, 4 * sizeof *dW);
    memset(db, 0, 2 * sizeof *db);
    for (int r = 0; r < 3; r++)
        for (int j = 0; j < 2; j++) {
            const double *x = l->xdata + 2 * r;
            double y = x[0] * W[j] + x[1] * W[2 + j] + bias[j], e = y - l->tdata[2 * r + j];
            loss += e * e / 6;
            double dy = 2 * e / 6;
            dW[j] += x[0] * dy;
            dW[2 + j] += x[1] * dy;
            db[j] += dy;
        }
    return loss;
}

static void ck_close(const double *got, const double *want, int n)
{
    for (int i = 0; i < n; i++) ck_assert_msg(fabs(got[i] - want[i]) < 1e-12, "[%d] %.15g, want %.15g", i, got[i], want[i]);
}

static const kd_var *find_var(const kd_model *m, const char *name)
{
    for (int i = 0; i < m->vars.len; i++)
        if (!strcmp(((const kd_var *)m->vars.items[i])->name, name)) return m->vars.items[i];
    return NULL;
}

START_TEST(adam_steps)
{
    lin l;
    lin_init(&l, OPT_ADAM, LOSS_MSE);
    kd_train_graph tg;
    char why[256];
    ck_assert_msg(kd_build_train_step(&l.a, &l.m, &tg, why, sizeof why), "%s", why);
    const kd_var *m0 = find_var(&l.m, "dense/kernel/adam_m"), *v1 = find_var(&l.m, "dense/bias/adam_v");
    ck_assert_ptr_nonnull(m0);
    ck_assert_ptr_nonnull(v1);
    ck_assert_int_eq(m0->kind, VAR_SLOT);
    ck_assert_int_eq(m0->of_var, 0);
    ck_assert_int_eq(m0->offset, 0);
    ck_assert_int_eq(v1->offset, 4 + 4 + 2);     /* kernel m, kernel v, bias m, then bias v */
    ck_assert_int_eq(tg.g->outputs.len, 2);
    ck_assert_int_eq(l.m.train->outputs.len, 1);  /* the forward graph is untouched */

    double W[4], bias[2], m[6] = {0}, v[6] = {0}, g[6];
    memcpy(W, l.vals[0], sizeof W);
    memcpy(bias, l.vals[1], sizeof bias);
    for (int step = 0; step < 3; step++) {
        double loss = lin_hand_grads(&l, W, bias, g, g + 4);
        ir_values *vals = lin_run(&l, tg.g, step, true);
        ck_assert_double_eq_tol(ir_value(vals, tg.loss)[0], loss, 1e-12);
        ir_values_free(vals);
        double t = step + 1, lr = 0.1;
        double alpha = lr * sqrt(1 - pow(0.999, t)) / (1 - pow(0.9, t));
        for (int i = 0; i < 6; i++) {
            m[i] += (g[i] - m[i]) * (1 - 0.9);
            v[i] += (g[i] * g[i] - v[i]) * (1 - 0.999);
            double *p = i < 4 ? &W[i] : &bias[i - 4];
            *p -= alpha * m[i] / (sqrt(v[i]) + 1e-7);
        }
        ck_close(l.vals[0], W, 4);
        ck_close(l.vals[1], bias, 2);
        ck_close(l.vals[m0->index], m, 4);
        ck_close(l.vals[v1->index], v + 4, 2);
    }
    /* A second build reuses the slots. */
    int nvars = l.m.vars.len;
    ck_assert(kd_build_train_step(&l.a, &l.m, &tg, why, sizeof why));
    ck_assert_int_eq(l.m.vars.len, nvars);
    lin_free(&l);
}
END_TEST

START_TEST(sgd_steps)
{
    /* _i: 0 plain, 1 momentum, 2 nesterov */
    lin l;
    lin_init(&l, OPT_SGD, LOSS_MSE);
    l.m.config.momentum = _i ? 0.9 : 0;
    l.m.config.nesterov = _i == 2;
    kd_train_graph tg;
    char why[256];
    ck_assert_msg(kd_build_train_step(&l.a, &l.m, &tg, why, sizeof why), "%s", why);
    ck_assert_int_eq(find_var(&l.m, "dense/kernel/momentum") != NULL, _i != 0);
    const kd_var *mk = find_var(&l.m, "dense/kernel/momentum");
    double W[4], bias[2], mom[6] = {0}, g[6];
    memcpy(W, l.vals[0], sizeof W);
    memcpy(bias, l.vals[1], sizeof bias);
    for (int step = 0; step < 3; step++) {
        lin_hand_grads(&l, W, bias, g, g + 4);
        ir_values_free(lin_run(&l, tg.g, step, true));
        for (int i = 0; i < 6; i++) {
            double *p = i < 4 ? &W[i] : &bias[i - 4];
            if (_i == 0) {
                *p -= 0.1 * g[i];
                continue;
            }
            mom[i] = 0.9 * mom[i] - 0.1 * g[i];
            *p += _i == 2 ? 0.9 * mom[i] - 0.1 * g[i] : mom[i];
        }
        ck_close(l.vals[0], W, 4);
        ck_close(l.vals[1], bias, 2);
        if (mk) ck_close(l.vals[mk->index], mom, 4);
    }
    lin_free(&l);
}
END_TEST

START_TEST(rmsprop_steps)
{
    lin l;
    lin_init(&l, OPT_RMSPROP, LOSS_MSE);
    kd_train_graph tg;
    char why[256];
    ck_assert_msg(kd_build_train_step(&l.a, &l.m, &tg, why, sizeof why), "%s", why);
    const kd_var *rk = find_var(&l.m, "dense/kernel/rms");
    ck_assert_ptr_nonnull(rk);
    double W[4], bias[2], v[6] = {0}, g[6];
    memcpy(W, l.vals[0], sizeof W);
    memcpy(bias, l.vals[1], sizeof bias);
    for (int step = 0; step < 3; step++) {
        lin_hand_grads(&l, W, bias, g, g + 4);
        ir_values_free(lin_run(&l, tg.g, step, true));
        for (int i = 0; i < 6; i++) {
            v[i] = 0.9 * v[i] + 0.1 * g[i] * g[i];
            double *p = i < 4 ? &W[i] : &bias[i - 4];
            *p -= 0.1 * g[i] / sqrt(v[i] + 1e-7);      /* Keras 3: sqrt(v + eps) */
        }
        ck_close(l.vals[0], W, 4);
        ck_close(l.vals[1], bias, 2);
        ck_close(l.vals[rk->index], v, 4);
    }
    lin_free(&l);
}
END_TEST

/* ---- every optimizer against a reference written from Keras 3's source ---- */

/* The optimizer state of the reference: per parameter (W's 4, then b's 2)
 * up to four slots, and Nadam's product of its u's. */
typedef struct ref_opt {
    double m[6], v[6], vhat[6], a[6];
    double u_product;
    bool clipped;          /* a clip changed a gradient */
} ref_opt;

/* One step of keras/src/optimizers/, in double precision, term for term:
 * base_optimizer's _clip_gradients, then _apply_weight_decay
 * (var -= var * wd * lr), then the optimizer's update_step. p: the 6
 * parameters, g: their gradients at p, t: iterations + 1. */
static void ref_optimizer_step(const kd_train_config *c, double *p, const double *grad, ref_opt *st, double t, double lr)
{
    double g[6];
    memcpy(g, grad, sizeof g);
    static const int lo[2] = {0, 4}, hi[2] = {4, 6};   /* the two variables */
    if (c->clipnorm > 0) {
        for (int k = 0; k < 2; k++) {
            double ss = 0;
            for (int i = lo[k]; i < hi[k]; i++) ss += g[i] * g[i];
            double norm = sqrt(ss);
            st->clipped |= norm > c->clipnorm;
            for (int i = lo[k]; i < hi[k]; i++) g[i] = g[i] * c->clipnorm / fmax(norm, c->clipnorm);
        }
    } else if (c->global_clipnorm > 0) {
        double ss = 0;
        for (int i = 0; i < 6; i++) ss += g[i] * g[i];
        double norm = sqrt(ss), scale = c->global_clipnorm * fmin(1 / norm, 1 / c->global_clipnorm);
        st->clipped |= norm > c->global_clipnorm;
        for (int i = 0; i < 6; i++) g[i] *= scale;
    } else if (c->clipvalue > 0) {
        for (int i = 0; i < 6; i++) {
            double x = fmin(fmax(g[i], -c->clipvalue), c->clipvalue);
            st->clipped |= x != g[i];
            g[i] = x;
        }
    }
    if (c->weight_decay > 0)
        for (int i = 0; i < 6; i++) p[i] -= p[i] * c->weight_decay * lr;
    const double b1 = c->beta_1, b2 = c->beta_2, eps = c->epsilon, rho = c->rho;
    double u_t = b1 * (1 - 0.5 * pow(0.96, t)), u_t1 = b1 * (1 - 0.5 * pow(0.96, t + 1));
    if (c->optimizer == OPT_NADAM) st->u_product *= u_t;     /* once per step, before the variables */
    for (int i = 0; i < 6; i++) {
        double *m = &st->m[i], *v = &st->v[i], *vh = &st->vhat[i], *a = &st->a[i];
        switch (c->optimizer) {
        case OPT_SGD:
            if (c->momentum != 0) {
                *m = *m * c->momentum - g[i] * lr;
                p[i] += c->nesterov ? *m * c->momentum - g[i] * lr : *m;
            } else {
                p[i] -= g[i] * lr;
            }
            break;
        case OPT_ADAM:
        case OPT_ADAMW: {
            double alpha = lr * sqrt(1 - pow(b2, t)) / (1 - pow(b1, t));
            *m += (g[i] - *m) * (1 - b1);
            *v += (g[i] * g[i] - *v) * (1 - b2);
            double vv = *v;
            if (c->amsgrad) vv = *vh = fmax(*vh, *v);
            p[i] -= *m * alpha / (sqrt(vv) + eps);
            break;
        }
        case OPT_RMSPROP: {
            *v = rho * *v + (1 - rho) * g[i] * g[i];
            double den = *v + eps;
            if (c->centered) {
                *a = rho * *a + (1 - rho) * g[i];
                den = *v - *a * *a + eps;
            }
            double inc = lr * g[i] / sqrt(den);
            if (c->momentum > 0) {
                *m = c->momentum * *m + inc;
                p[i] -= *m;
            } else {
                p[i] -= inc;
            }
            break;
        }
        case OPT_ADAGRAD:
            if (t == 1) *a = c->initial_accumulator_value;
            *a += g[i] * g[i];
            p[i] -= lr * g[i] / sqrt(*a + eps);
            break;
        case OPT_ADAMAX:
            *m += (g[i] - *m) * (1 - b1);
            *v = fmax(b2 * *v, fabs(g[i]));
            p[i] -= lr * *m / ((1 - pow(b1, t)) * (*v + eps));
            break;
        case OPT_NADAM: {
            double prod = st->u_product, prod1 = prod * u_t1;
            *m += (g[i] - *m) * (1 - b1);
            *v += (g[i] * g[i] - *v) * (1 - b2);
            double mhat = u_t1 * *m / (1 - prod1) + (1 - u_t) * g[i] / (1 - prod);
            double vhat = *v / (1 - pow(b2, t));
            p[i] -= mhat * lr / (sqrt(vhat) + eps);
            break;
        }
        case OPT_ADADELTA: {
            *a = rho * *a + (1 - rho) * g[i] * g[i];
            double delta = -sqrt(*m + eps) * g[i] / sqrt(*a + eps);
            *m = rho * *m + (1 - rho) * delta * delta;
            p[i] += lr * delta;
            break;
        }
        default: ck_abort_msg("no reference for optimizer %d", c->optimizer);
        }
    }
}

static const struct {
    const char *what;
    kd_optimizer_kind kind;
    double momentum, weight_decay, clipnorm, clipvalue, global_clipnorm;
    bool nesterov, amsgrad, centered;
} opt_cases[] = {
    {"SGD", OPT_SGD, .momentum = 0},
    {"SGD momentum nesterov", OPT_SGD, .momentum = 0.9, .nesterov = true},
    {"SGD weight_decay", OPT_SGD, .weight_decay = 0.05},
    {"SGD momentum clipnorm", OPT_SGD, .momentum = 0.5, .clipnorm = 0.3},
    {"Adam", OPT_ADAM, .momentum = 0},
    {"Adam amsgrad", OPT_ADAM, .amsgrad = true},
    {"Adam clipvalue", OPT_ADAM, .clipvalue = 0.2},
    {"AdamW", OPT_ADAMW, .momentum = 0},
    {"AdamW amsgrad global_clipnorm", OPT_ADAMW, .amsgrad = true, .global_clipnorm = 0.4},
    {"RMSprop", OPT_RMSPROP, .momentum = 0},
    {"RMSprop momentum", OPT_RMSPROP, .momentum = 0.9},
    {"RMSprop centered momentum", OPT_RMSPROP, .momentum = 0.5, .centered = true},
    {"Adagrad", OPT_ADAGRAD, .momentum = 0},
    {"Adagrad weight_decay clipnorm", OPT_ADAGRAD, .weight_decay = 0.1, .clipnorm = 0.25},
    {"Adamax", OPT_ADAMAX, .momentum = 0},
    {"Adamax global_clipnorm", OPT_ADAMAX, .global_clipnorm = 0.5},
    {"Nadam", OPT_NADAM, .momentum = 0},
    {"Nadam clipvalue weight_decay", OPT_NADAM, .clipvalue = 0.1, .weight_decay = 0.01},
    {"Adadelta", OPT_ADADELTA, .momentum = 0},
    {"Adadelta global_clipnorm", OPT_ADADELTA, .global_clipnorm = 0.3},
};

/* Three steps of each optimizer through the train-step graph (the f64
 * interpreter) against ref_optimizer_step within 1e-12; the backends run
 * the same graph (tests/test_jit.c's optimizer test compares them). */
START_TEST(optimizer_steps)
{
    lin l;
    lin_init(&l, opt_cases[_i].kind, LOSS_MSE);
    kd_train_config *c = &l.m.config;
    kd_optimizer_defaults(c, &kd_optimizer_names[opt_cases[_i].kind - 1]);
    c->learning_rate = 0.1;
    c->momentum = opt_cases[_i].momentum;
    c->nesterov = opt_cases[_i].nesterov;
    c->amsgrad = opt_cases[_i].amsgrad;
    c->centered = opt_cases[_i].centered;
    if (opt_cases[_i].weight_decay) c->weight_decay = opt_cases[_i].weight_decay;
    c->clipnorm = opt_cases[_i].clipnorm;
    c->clipvalue = opt_cases[_i].clipvalue;
    c->global_clipnorm = opt_cases[_i].global_clipnorm;
    if (c->optimizer == OPT_ADAMW) ck_assert_double_eq(c->weight_decay, 0.004);   /* Keras' default */
    if (c->optimizer == OPT_ADADELTA) ck_assert_double_eq(c->rho, 0.95);
    kd_train_graph tg;
    char why[256];
    ck_assert_msg(kd_build_train_step(&l.a, &l.m, &tg, why, sizeof why), "%s: %s", opt_cases[_i].what, why);
    /* slots start at their initializer (Adagrad's accumulator 0.1, Nadam's product 1), as the generated init sets them */
    for (int i = 0; i < l.m.vars.len; i++) {
        const kd_var *v = l.m.vars.items[i];
        if (v->kind != VAR_SLOT) continue;
        int64_t n = ir_shape_elems(&v->shape);
        l.vals[i] = calloc((size_t)n, sizeof(double));
        for (int64_t k = 0; k < n; k++) l.vals[i][k] = v->init.kind == INIT_CONSTANT ? v->init.a : 0;
    }
    double p[6], g[6];
    memcpy(p, l.vals[0], 4 * sizeof *p);
    memcpy(p + 4, l.vals[1], 2 * sizeof *p);
    ref_opt st = {.u_product = 1};
    for (int step = 0; step < 3; step++) {
        lin_hand_grads(&l, p, p + 4, g, g + 4);
        ir_values_free(lin_run(&l, tg.g, step, true));
        ref_optimizer_step(c, p, g, &st, step + 1, 0.1);
        for (int i = 0; i < 6; i++) {
            double got = i < 4 ? l.vals[0][i] : l.vals[1][i - 4];
            ck_assert_msg(fabs(got - p[i]) < 1e-12, "%s, step %d, parameter %d: %.15g, Keras' formula %.15g",
                          opt_cases[_i].what, step + 1, i, got, p[i]);
        }
    }
    /* a clip that never bites would test nothing */
    ck_assert_msg(st.clipped == (c->clipnorm > 0 || c->clipvalue > 0 || c->global_clipnorm > 0), "%s: clipped %d",
                  opt_cases[_i].what, st.clipped);
    lin_free(&l);
}
END_TEST

/* The same linear model and steps against TensorFlow.js (float32), for the
 * optimizers whose TF.js rule is Keras 3's: tests/fixtures/tfjs_optimizers.txt,
 * made by tests/fixtures/make_tfjs_optimizers.js (which says what differs). */
START_TEST(optimizers_match_tfjs)
{
    static const struct {
        const char *name;
        kd_optimizer_kind kind;
        double momentum, epsilon;
        bool has_epsilon;
    } cases[] = {
        {"sgd", OPT_SGD, 0, 0, false},
        {"sgd_momentum", OPT_SGD, 0.9, 0, false},
        {"adam_eps0", OPT_ADAM, 0, 0, true},
        {"rmsprop_momentum", OPT_RMSPROP, 0.5, 0, false},
        {"adagrad", OPT_ADAGRAD, 0, 0, false},
        {"adamax", OPT_ADAMAX, 0, 0, false},
    };
    char *text = tu_read(tu_src("tests/fixtures/tfjs_optimizers.txt"), NULL);
    ck_assert_ptr_nonnull(text);
    int checked = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        lin l;
        lin_init(&l, cases[k].kind, LOSS_MSE);
        kd_train_config *c = &l.m.config;
        kd_optimizer_defaults(c, &kd_optimizer_names[cases[k].kind - 1]);
        c->learning_rate = 0.1;
        c->momentum = cases[k].momentum;
        if (cases[k].has_epsilon) c->epsilon = cases[k].epsilon;
        kd_train_graph tg;
        char why[256];
        ck_assert_msg(kd_build_train_step(&l.a, &l.m, &tg, why, sizeof why), "%s", why);
        for (int i = 0; i < l.m.vars.len; i++) {
            const kd_var *v = l.m.vars.items[i];
            if (v->kind != VAR_SLOT) continue;
            int64_t n = ir_shape_elems(&v->shape);
            l.vals[i] = calloc((size_t)n, sizeof(double));
            for (int64_t e = 0; e < n; e++) l.vals[i][e] = v->init.kind == INIT_CONSTANT ? v->init.a : 0;
        }
        for (int step = 1; step <= 3; step++) {
            ir_values_free(lin_run(&l, tg.g, step - 1, true));
            char key[64];
            snprintf(key, sizeof key, "\n%s %d ", cases[k].name, step);
            const char *at = strstr(text, key);
            if (!at && !strncmp(text, key + 1, strlen(key + 1))) at = text - 1;
            ck_assert_msg(at != NULL, "no line '%s %d' in the fixture", cases[k].name, step);
            const char *p = at + strlen(key);
            for (int i = 0; i < 6; i++) {
                char *end;
                double want = strtod(p, &end);
                ck_assert(end != p);
                p = end;
                double got = i < 4 ? l.vals[0][i] : l.vals[1][i - 4];
                /* TF.js computes in float32: 1e-5 leaves room for Adam's m / sqrt(v), which magnifies the
                 * gradients' rounding where m nearly cancels (2.4e-6 on W[0] at step 3) */
                ck_assert_msg(fabs(got - want) < 1e-5, "%s, step %d, parameter %d: %.9g, TensorFlow.js %.9g",
                              cases[k].name, step, i, got, want);
                checked++;
            }
        }
        lin_free(&l);
    }
    ck_assert_int_eq(checked, 6 * 3 * 6);
    free(text);
}
END_TEST

/* The grad graph: loss, prediction, then each trainable weight's gradient; no optimizer. */
START_TEST(grad_graph)
{
    lin l;
    lin_init(&l, OPT_ADAM, LOSS_MSE);
    kd_train_graph tg;
    char why[256];
    ck_assert_msg(kd_build_grad_graph(&l.a, &l.m, &tg, why, sizeof why), "%s", why);
    ck_assert_int_eq(tg.ngrads, 2);
    ck_assert_int_eq(tg.g->outputs.len, 4);
    ck_assert_int_eq(tg.g->updates.len, 0);
    ck_assert_int_eq(l.m.vars.len, 2);            /* no optimizer slots */
    double g[6];
    double loss = lin_hand_grads(&l, l.vals[0], l.vals[1], g, g + 4);
    ir_values *v = lin_run(&l, tg.g, 0, false);
    ck_assert_double_eq_tol(ir_value(v, tg.g->outputs.items[0])[0], loss, 1e-12);
    ck_close(ir_value(v, tg.g->outputs.items[2]), g, 4);
    ck_close(ir_value(v, tg.g->outputs.items[3]), g + 4, 2);
    /* the prediction is the model output: x W + b for the first row */
    const double *pred = ir_value(v, tg.g->outputs.items[1]);
    ck_assert_double_eq_tol(pred[0], 1 * 0.5 + 2 * 0.2 + 0.1, 1e-15);
    ir_values_free(v);
    lin_free(&l);
}
END_TEST

START_TEST(no_train_block)
{
    lin l;
    lin_init(&l, OPT_ADAM, LOSS_MSE);
    l.m.config.present = false;
    kd_train_graph tg;
    char why[256];
    ck_assert(!kd_build_train_step(&l.a, &l.m, &tg, why, sizeof why));
    ck_assert_str_eq(why, "model 'lin' has no train block with a loss");
    lin_free(&l);
}
END_TEST

/* Loss values as Keras computes them, by hand on fixed numbers. */
static double loss_value_cfg(const kd_loss_spec *cfg, const double *y, const double *t, int rows, int cols);

static double loss_value(kd_loss_kind kind, bool logits, const double *y, const double *t, int rows, int cols)
{
    kd_loss_spec cfg = {.kind = kind, .from_logits = logits, .delta = 1.0};
    return loss_value_cfg(&cfg, y, t, rows, cols);
}

static double loss_value_cfg(const kd_loss_spec *cfg, const double *y, const double *t, int rows, int cols)
{
    gc_ctx c;
    gc_init(&c, rows);
    ir_node *yn = gc_input(&c, 1, (int64_t[]){cols}, GC_UNIFORM, 0, 1);
    ir_node *tn = gc_label(&c, 1, (int64_t[]){cols}, GC_UNIFORM, 0, 1);
    memcpy(gc_data(&c, yn), y, (size_t)(rows * cols) * sizeof *y);
    memcpy(gc_data(&c, tn), t, (size_t)(rows * cols) * sizeof *t);
    ir_node *loss = kd_loss(&c.b, cfg, yn, tn, NULL);
    ck_assert_msg(loss != NULL, "%s", c.b.why);
    ck_assert_int_eq(loss->shape.rank, 0);
    double v = gc_scalar(&c, loss);
    gc_free(&c);
    return v;
}

START_TEST(loss_values)
{
    /* categorical from probabilities: Keras' documented example, and a 0 that the clip catches */
    double t[6] = {0, 1, 0, 0, 0, 1}, p[6] = {0.05, 0.95, 0, 0.1, 0.8, 0.1};
    ck_assert_double_eq_tol(loss_value(LOSS_CATEGORICAL_XENT, false, p, t, 2, 3), (-log(0.95) - log(0.1)) / 2, 1e-12);
    double t0[3] = {0, 0, 1}, p0[3] = {0.5, 0.5, 0};
    ck_assert_double_eq_tol(loss_value(LOSS_CATEGORICAL_XENT, false, p0, t0, 1, 3), -log(1e-7), 1e-9);
    /* unnormalised probabilities are normalised first */
    double p2[3] = {1, 2, 1}, t2[3] = {0, 1, 0};
    ck_assert_double_eq_tol(loss_value(LOSS_SPARSE_CATEGORICAL_XENT, false, p2, t2, 1, 3), -log(0.5), 1e-12);
    /* from logits */
    double z[3] = {2, 1, 0.1}, t3[3] = {1, 0, 0};
    ck_assert_double_eq_tol(loss_value(LOSS_CATEGORICAL_XENT, true, z, t3, 1, 3), -log(0.6590011388859679), 1e-12);
    /* binary: mean over the last axis, then the batch */
    double bz[4] = {0.5, -1, 3, 0}, bt[4] = {1, 0, 0, 1};
    double want = 0;
    for (int i = 0; i < 4; i++) {
        double s = 1 / (1 + exp(-bz[i]));
        want -= (bt[i] * log(s) + (1 - bt[i]) * log(1 - s)) / 4;
    }
    ck_assert_double_eq_tol(loss_value(LOSS_BINARY_XENT, true, bz, bt, 2, 2), want, 1e-12);
    double bp[4] = {0.9, 0.2, 1, 0.5};
    want = (-log(0.9) - log(0.8) - log(1e-7) - log(0.5)) / 4;
    ck_assert_double_eq_tol(loss_value(LOSS_BINARY_XENT, false, bp, bt, 2, 2), want, 1e-9);
    double my[4] = {1, 2, 3, 4}, mt[4] = {0, 2, 5, 3};
    ck_assert_double_eq_tol(loss_value(LOSS_MSE, false, my, mt, 2, 2), (1 + 0 + 4 + 1) / 4.0, 1e-15);
}
END_TEST

/* The losses' values: the examples of Keras' documentation (its printed
 * values, 3 digits), and each formula by hand on other numbers. */
START_TEST(toolbox_loss_values)
{
    const double t1[4] = {0, 1, 0, 0}, p1[4] = {0.6, 0.4, 0.4, 0.6}, q1[4] = {1, 1, 1, 0}, r1[4] = {1, 1, 0, 0};
    ck_assert_double_eq_tol(loss_value(LOSS_MAE, false, (double[]){1, 1, 1, 0}, t1, 2, 2), 0.5, 1e-15);
    ck_assert_double_eq_tol(loss_value(LOSS_HUBER, false, p1, t1, 2, 2), 0.155, 1e-12);
    ck_assert_double_eq_tol(loss_value(LOSS_LOG_COSH, false, r1, t1, 2, 2), 0.108, 5e-4);
    ck_assert_double_eq_tol(loss_value(LOSS_KLD, false, p1, t1, 2, 2), 0.458, 5e-4);
    ck_assert_double_eq_tol(loss_value(LOSS_MSLE, false, q1, t1, 2, 2), 0.240, 5e-4);
    ck_assert_double_eq_tol(loss_value(LOSS_HINGE, false, p1, t1, 2, 2), 1.3, 1e-12);
    ck_assert_double_eq_tol(loss_value(LOSS_CATEGORICAL_HINGE, false, p1, t1, 2, 2), 1.4, 1e-12);
    ck_assert_double_eq_tol(loss_value(LOSS_POISSON, false, r1, t1, 2, 2), 0.5, 1e-6);
    ck_assert_double_eq_tol(loss_value(LOSS_COSINE_SIMILARITY, false, (double[]){1, 0, 1, 1}, (double[]){0, 1, 1, 1}, 2, 2),
                            -0.5, 1e-12);
    /* by hand: Huber beyond delta, log cosh, KLD's clip, MSLE of a negative prediction, hinge of -1/1 labels */
    const double y[4] = {2.5, -0.3, 0.7, 0.05}, t[4] = {0.5, 0.2, 0.1, 0.9};
    kd_loss_spec cfg = {.kind = LOSS_HUBER, .delta = 0.8};
    double want = (0.8 * 2 - 0.32 + 0.5 * 0.25 + 0.5 * 0.36 + (0.8 * 0.85 - 0.32)) / 4;
    ck_assert_double_eq_tol(loss_value_cfg(&cfg, y, t, 2, 2), want, 1e-12);
    want = 0;
    for (int i = 0; i < 4; i++) want += log(cosh(y[i] - t[i])) / 4;
    ck_assert_double_eq_tol(loss_value(LOSS_LOG_COSH, false, y, t, 2, 2), want, 1e-12);
    want = 0;
    for (int i = 0; i < 4; i++) {
        double yc = fmin(fmax(y[i], 1e-7), 1);
        want += t[i] * log(t[i] / yc) / 2;   /* summed over the row, averaged over the 2 rows */
    }
    ck_assert_double_eq_tol(loss_value(LOSS_KLD, false, y, t, 2, 2), want, 1e-12);
    want = 0;
    for (int i = 0; i < 4; i++) want += pow(log(fmax(y[i], 1e-7) + 1) - log(t[i] + 1), 2) / 4;
    ck_assert_double_eq_tol(loss_value(LOSS_MSLE, false, y, t, 2, 2), want, 1e-12);
    const double pm[4] = {1, -1, -1, 1};
    want = (fmax(1 - 2.5, 0) + fmax(1 - 0.3, 0) + fmax(1 + 0.7, 0) + fmax(1 - 0.05, 0)) / 4;
    ck_assert_double_eq_tol(loss_value(LOSS_HINGE, false, y, pm, 2, 2), want, 1e-12);
    want = 0;
    for (int i = 0; i < 4; i++) want += (y[i] - t[i] * log(y[i] + 1e-7)) / 4;
    double yp[4] = {2.5, 0.3, 0.7, 0.05};
    want = 0;
    for (int i = 0; i < 4; i++) want += (yp[i] - t[i] * log(yp[i] + 1e-7)) / 4;
    ck_assert_double_eq_tol(loss_value(LOSS_POISSON, false, yp, t, 2, 2), want, 1e-12);
    /* label smoothing: categorical t (1 - ls) + ls / classes, binary t (1 - ls) + ls / 2 */
    const double z[3] = {2, 1, 0.1}, tc[3] = {1, 0, 0};
    cfg = (kd_loss_spec){.kind = LOSS_CATEGORICAL_XENT, .from_logits = true, .label_smoothing = 0.3};
    double lse = log(exp(2) + exp(1) + exp(0.1));
    want = -((0.7 + 0.1) * (2 - lse) + 0.1 * (1 - lse) + 0.1 * (0.1 - lse));
    ck_assert_double_eq_tol(loss_value_cfg(&cfg, z, tc, 1, 3), want, 1e-12);
    cfg.from_logits = false;
    const double pc[3] = {0.7, 0.2, 0.1};
    want = -(0.8 * log(0.7) + 0.1 * log(0.2) + 0.1 * log(0.1));
    ck_assert_double_eq_tol(loss_value_cfg(&cfg, pc, tc, 1, 3), want, 1e-12);
    cfg = (kd_loss_spec){.kind = LOSS_BINARY_XENT, .label_smoothing = 0.2};
    const double pb[2] = {0.9, 0.3}, tb[2] = {1, 0};
    want = -((0.9 * log(0.9) + 0.1 * log(0.1)) + (0.1 * log(0.3) + 0.9 * log(0.7))) / 2;
    ck_assert_double_eq_tol(loss_value_cfg(&cfg, pb, tb, 1, 2), want, 1e-12);
}
END_TEST

/* The losses against TensorFlow.js (float32): tests/fixtures/tfjs_losses.txt,
 * made by tests/fixtures/make_tfjs_losses.js from these arrays. */
static const double TF_P[12] = {0.7, 0.2, 0.1, 0.05, 0.9, 0.05, 0.3, 0.3, 0.4, 0.15, 0.25, 0.6};
static const double TF_Z[12] = {1.5, -0.3, 0.2, -1, 2, 0.5, 0.1, 0.1, -2, 3, -0.5, 1};
static const double TF_ONEHOT[12] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1};
static const double TF_SOFT[12] = {0.6, 0.3, 0.1, 0.2, 0.5, 0.3, 0.1, 0.1, 0.8, 0.3, 0.3, 0.4};
static const double TF_REG[12] = {0.5, -1.2, 2, 0.1, 0.4, -0.3, 1.5, 0, 0.2, -2, 1, 0.7};
static const double TF_PM[12] = {1, -1, 1, -1, -1, 1, 1, 1, -1, -1, 1, 1};

static double fixture_value(const char *text, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, "%s ", name);
    for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL)
        if (!strncmp(line, key, strlen(key))) return strtod(line + strlen(key), NULL);
    ck_abort_msg("no '%s' in the fixture", name);
    return NAN;
}

START_TEST(losses_match_tfjs)
{
    static const struct {
        const char *name;
        kd_loss_kind loss;
        bool logits;
        double smoothing, delta;
        const double *y, *t;
    } cases[] = {
        {"mae", LOSS_MAE, false, 0, 1, TF_Z, TF_REG},
        {"huber_1", LOSS_HUBER, false, 0, 1, TF_Z, TF_REG},
        {"huber_0.5", LOSS_HUBER, false, 0, 0.5, TF_Z, TF_REG},
        {"log_cosh", LOSS_LOG_COSH, false, 0, 1, TF_Z, TF_REG},
        {"kld", LOSS_KLD, false, 0, 1, TF_P, TF_SOFT},
        {"msle", LOSS_MSLE, false, 0, 1, TF_P, TF_SOFT},
        {"hinge_pm1", LOSS_HINGE, false, 0, 1, TF_Z, TF_PM},
        {"categorical_hinge", LOSS_CATEGORICAL_HINGE, false, 0, 1, TF_Z, TF_ONEHOT},
        {"poisson", LOSS_POISSON, false, 0, 1, TF_P, TF_SOFT},
        {"cosine_similarity", LOSS_COSINE_SIMILARITY, false, 0, 1, TF_Z, TF_REG},
        {"cce_logits_ls0.2", LOSS_CATEGORICAL_XENT, true, 0.2, 1, TF_Z, TF_ONEHOT},
        {"bce_logits_ls0.3", LOSS_BINARY_XENT, true, 0.3, 1, TF_Z, TF_ONEHOT},
    };
    char *text = tu_read(tu_src("tests/fixtures/tfjs_losses.txt"), NULL);
    ck_assert_ptr_nonnull(text);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kd_loss_spec cfg = {.kind = cases[i].loss, .from_logits = cases[i].logits,
                               .label_smoothing = cases[i].smoothing, .delta = cases[i].delta};
        double got = loss_value_cfg(&cfg, cases[i].y, cases[i].t, 4, 3), want = fixture_value(text, cases[i].name);
        ck_assert_msg(fabs(got - want) <= 2e-6 * fmax(1, fabs(want)), "%s: %.9g, TensorFlow.js %.9g", cases[i].name, got,
                      want);
    }
    free(text);
}
END_TEST

/* ---- from KDSL source ---------------------------------------------------- */

/* A model checked by sema, its variables and feeds, run by the interpreter. */
typedef struct src_model {
    kd_session s;
    kd_model *m;
    kd_train_graph tg;
    double *vals[64];
    double *x, *t;
    int batch;
    double hyper[IR_HYPER_COUNT];
} src_model;

static void src_open(src_model *sm, const char *text, int batch, bool step_graph)
{
    memset(sm, 0, sizeof *sm);
    sm->s.diags.out = stderr;
    ck_assert_int_eq(kd_front_end_text(&sm->s, "test.kdsl", text, strlen(text), NULL), 0);
    sm->m = sm->s.model;
    char why[256];
    bool ok = step_graph ? kd_build_train_step(&sm->s.arena, sm->m, &sm->tg, why, sizeof why)
                         : kd_build_grad_graph(&sm->s.arena, sm->m, &sm->tg, why, sizeof why);
    ck_assert_msg(ok, "%s", why);
    ck_assert_int_le(sm->m->vars.len, 64);
    gc_ctx rng;
    gc_init(&rng, 1);
    for (int i = 0; i < sm->m->vars.len; i++) {
        const kd_var *v = sm->m->vars.items[i];
        int64_t n = ir_shape_elems(&v->shape);
        sm->vals[i] = calloc((size_t)n, sizeof(double));
        for (int64_t k = 0; k < n && v->kind != VAR_SLOT; k++)
            sm->vals[i][k] = v->kind == VAR_STATE ? 0.5 + gc_uniform(&rng) : gc_uniform(&rng) - 0.5;
    }
    sm->batch = batch;
    int64_t nin = ir_shape_elems(&sm->m->input_shapes[0]) * batch;
    int64_t nout = ir_shape_elems(&sm->tg.labels[0]->shape) * batch, classes = sm->tg.labels[0]->shape.dims[1];
    sm->x = malloc((size_t)nin * sizeof(double));
    sm->t = calloc((size_t)nout, sizeof(double));
    /* token ids: repeated within the batch, and every fourth outside the table
     * (-1 or the table's size), which reads zeros and gets no gradient */
    int64_t rows = sm->m->input_rows[0];
    for (int64_t k = 0; k < nin; k++)
        sm->x[k] = !sm->m->input_i32[0] ? 2 * gc_uniform(&rng) - 1
                   : k % 4 == 3 ? (k % 8 == 3 ? -1 : (double)rows) : (double)((k * 5 + 2) % rows);
    for (int64_t r = 0; r < nout / classes; r++) sm->t[r * classes + (r * 7 + 3) % classes] = 1;
    kd_arena_free(&rng.arena);
    sm->hyper[IR_HYPER_LR] = sm->m->config.learning_rate;
    sm->hyper[IR_HYPER_SEED] = 3;
    sm->hyper[IR_HYPER_STEP] = 5;
}

static ir_values *src_run(src_model *sm)
{
    const double *in[1] = {sm->x}, *lb[1] = {sm->t};
    ir_feed f = {.batch = sm->batch, .inputs = in, .labels = lb, .vars = (const double *const *)sm->vals};
    memcpy(f.hyper, sm->hyper, sizeof f.hyper);
    char why[256];
    ir_values *v = ir_interp_run(sm->tg.g, &f, why, sizeof why);
    ck_assert_msg(v != NULL, "%s", why);
    return v;
}

static void src_close(src_model *sm)
{
    for (int i = 0; i < sm->m->vars.len; i++) free(sm->vals[i]);
    free(sm->x);
    free(sm->t);
    kd_session_free(&sm->s);
}

/* A model of two outputs trained on a loss per output with loss_weights
 * builds the graph of the same sum written as one expression: the same loss
 * and gradients, and the loss is the weighted sum of Keras' two losses. */
START_TEST(per_output_losses_graph)
{
    static const char model[] = "model two {\n"
                                "    input x: [3]\n"
                                "    h = Dense(5, activation: tanh)\n"
                                "    output a = Dense(h, 4)\n"
                                "    output b = Dense(h, 2)\n"
                                "}\n"
                                "train two {\n"
                                "    loss: %s\n"
                                "    optimizer: SGD()\n"
                                "}\n";
    /* Huber beyond every error here is e^2 / 2, as the expression writes it */
    const char *forms[2] = {
        "[CategoricalCrossentropy(from_logits: true), Huber(delta: 100)]\n    loss_weights: [0.3, 2]",
        "0.3 * -mean(sum(a_true * log_softmax(a), axis: -1)) + 2 * mean(0.5 * square(b - b_true))",
    };
    double loss[2], *grads[2] = {0};
    int64_t ngrads = 0;
    enum { B = 3 };
    double x[B * 3], ta[B * 4] = {0}, tb[B * 2];
    for (int i = 0; i < B * 3; i++) x[i] = sin(1.3 * i + 0.2);
    for (int r = 0; r < B; r++) ta[r * 4 + (r * 3 + 1) % 4] = 1;
    for (int i = 0; i < B * 2; i++) tb[i] = 0.4 * i - 1;
    for (int f = 0; f < 2; f++) {
        char text[1024];
        snprintf(text, sizeof text, model, forms[f]);
        kd_session s = {0};
        s.diags.out = stderr;
        ck_assert_int_eq(kd_front_end_text(&s, "two.kdsl", text, strlen(text), NULL), 0);
        kd_train_graph tg;
        char why[256];
        ck_assert_msg(kd_build_grad_graph(&s.arena, s.model, &tg, why, sizeof why), "%s", why);
        ck_assert_int_eq(tg.nlabels, 2);
        double *vals[16] = {0};
        ck_assert_int_le(s.model->vars.len, 16);
        for (int v = 0; v < s.model->vars.len; v++) {
            const kd_var *var = s.model->vars.items[v];
            int64_t n = ir_shape_elems(&var->shape);
            vals[v] = malloc((size_t)n * sizeof(double));
            for (int64_t k = 0; k < n; k++) vals[v][k] = 0.3 * cos(0.7 * k + v);
        }
        const double *in[1] = {x}, *lb[2] = {ta, tb};
        ir_feed feed = {.batch = B, .inputs = in, .labels = lb, .vars = (const double *const *)vals};
        ir_values *r = ir_interp_run(tg.g, &feed, why, sizeof why);
        ck_assert_msg(r != NULL, "%s", why);
        loss[f] = ir_value(r, tg.loss)[0];
        ngrads = 0;
        for (int v = 0; v < s.model->vars.len; v++) ngrads += tg.grads[v] ? ir_shape_elems(&tg.grads[v]->shape) : 0;
        grads[f] = malloc((size_t)ngrads * sizeof(double));
        int64_t at = 0;
        for (int v = 0; v < s.model->vars.len; v++) {
            if (!tg.grads[v]) continue;
            int64_t n = ir_shape_elems(&tg.grads[v]->shape);
            memcpy(grads[f] + at, ir_value(r, tg.grads[v]), (size_t)n * sizeof(double));
            at += n;
        }
        ir_values_free(r);
        for (int v = 0; v < s.model->vars.len; v++) free(vals[v]);
        kd_session_free(&s);
    }
    ck_assert_msg(loss[0] > 0.1 && fabs(loss[0] - loss[1]) < 1e-12, "list %.15g, expression %.15g", loss[0], loss[1]);
    ck_assert_int_gt(ngrads, 40);
    for (int64_t k = 0; k < ngrads; k++)
        ck_assert_msg(fabs(grads[0][k] - grads[1][k]) < 1e-12, "gradient %lld: %.15g and %.15g", (long long)k,
                      grads[0][k], grads[1][k]);
    free(grads[0]);
    free(grads[1]);
}
END_TEST

/* The grad graph of a model from source against finite differences of its loss,
 * for every element of every trainable weight. */
static void check_source_grads(const char *text, int batch)
{
    src_model sm;
    src_open(&sm, text, batch, false);
    ir_values *v = src_run(&sm);
    double worst = 0;
    int out = 2, checked = 0;
    for (int i = 0; i < sm.m->vars.len; i++) {
        const kd_var *var = sm.m->vars.items[i];
        if (var->kind != VAR_WEIGHT || !var->trainable) continue;
        const double *an = ir_value(v, sm.tg.g->outputs.items[out++]);
        for (int64_t k = 0; k < ir_shape_elems(&var->shape); k++) {
            double keep = sm.vals[i][k], h = 1e-6;
            sm.vals[i][k] = keep + h;
            ir_values *up = src_run(&sm);
            sm.vals[i][k] = keep - h;
            ir_values *down = src_run(&sm);
            sm.vals[i][k] = keep;
            double num = (ir_value(up, sm.tg.loss)[0] - ir_value(down, sm.tg.loss)[0]) / (2 * h);
            double err = fabs(num - an[k]) / fmax(fmax(fabs(num), fabs(an[k])), 1e-3);
            if (err > worst) worst = err;
            if (err > TOL) fprintf(stderr, "  %s[%lld]: analytic %.12g, numeric %.12g\n", var->name, (long long)k, an[k], num);
            ir_values_free(up);
            ir_values_free(down);
            checked++;
        }
    }
    ck_assert_int_eq(out - 2, sm.tg.ngrads);
    ck_assert_int_gt(checked, 0);
    ck_assert_msg(worst < TOL, "relative error %g", worst);
    ir_values_free(v);
    src_close(&sm);
}

START_TEST(source_mlp_bn_dropout)
{
    check_source_grads("model small {\n"
                       "    input x: [4]\n"
                       "    Dense(5, activation: tanh)\n"
                       "    BatchNormalization()\n"
                       "    Dropout(0.3)\n"
                       "    output y = Dense(3)\n"
                       "}\n"
                       "train small {\n"
                       "    loss: CategoricalCrossentropy(from_logits: true)\n"
                       "    optimizer: Adam(learning_rate: 0.01)\n"
                       "}\n", 4);
}
END_TEST

/* The layers kdsl builds from its own ops (Conv1D and the 1-D pools over a
 * height of 1, LayerNormalization, Dense on a sequence, the resampling,
 * cropping and axis layers, Minimum, Rescaling, Normalization, SpatialDropout2D)
 * differentiate like the ops they are made of. */
START_TEST(source_keras_layers)
{
    check_source_grads("model seq {\n"
                       "    input x: [7, 2]\n"
                       "    Conv1D(3, 3, padding: causal, activation: tanh)\n"
                       "    Conv1D(2, 2, strides: 2, padding: same)\n"
                       "    LayerNormalization()\n"
                       "    GaussianNoise(0.3)\n"
                       "    Dense(3)\n"
                       "    AveragePooling1D(2, strides: 1, padding: same)\n"
                       "    MaxPooling1D(2)\n"
                       "    a = GlobalAveragePooling1D()\n"
                       "    b = GlobalMaxPooling1D(Permute(RepeatVector(Dense(a, 4), 2), [2, 1]))\n"
                       "    d = Dot([Dense(a, 2), b], axes: 1, normalize: true)\n"
                       "    output y = Dense(Rescaling(Minimum(Dense(a, 3), Dense(b, 3)), scale: 2, offset: 0.5) * d, 3, activation: softmax)\n"
                       "}\n"
                       "train seq {\n"
                       "    loss: CategoricalCrossentropy()\n"
                       "    optimizer: SGD(learning_rate: 0.1)\n"
                       "}\n", 3);
    check_source_grads("model img {\n"
                       "    input x: [3, 4, 2]\n"
                       "    Normalization(mean: [0.5, -0.25], variance: [4, 0.25])\n"
                       "    UpSampling2D(size: [1, 2])\n"
                       "    UpSampling2D(size: [2, 1], interpolation: bilinear)\n"
                       "    Cropping2D([[1, 0], [2, 1]])\n"
                       "    Conv2D(4, 2, activation: sigmoid, groups: 2)\n"
                       "    Conv2DTranspose(2, 2, strides: 2, padding: same)\n"
                       "    BatchNormalization(axis: 1)\n"
                       "    SpatialDropout2D(0.4)\n"
                       "    Permute([3, 1, 2])\n"
                       "    PReLU(alpha_initializer: 0.25, shared_axes: [2])\n"
                       "    ELU(alpha: 0.7)\n"
                       "    LeakyReLU()\n"
                       "    ReLU(max_value: 0.9, negative_slope: 0.3, threshold: 0.05)\n"
                       "    Flatten()\n"
                       "    RepeatVector(2)\n"
                       "    Flatten()\n"
                       "    output y = Dense(3, activation: softmax)\n"
                       "}\n"
                       "train img {\n"
                       "    loss: CategoricalCrossentropy()\n"
                       "    optimizer: SGD(learning_rate: 0.1)\n"
                       "}\n", 2);
    /* depthwise (stride 2, same, dm 2; dilated), separable, dilated and non-square Conv2D */
    check_source_grads("model dw {\n"
                       "    input x: [7, 6, 2]\n"
                       "    DepthwiseConv2D(3, strides: 2, padding: same, depth_multiplier: 2, activation: tanh)\n"
                       "    DepthwiseConv2D([2, 3], padding: same, dilation_rate: 2)\n"
                       "    a = SeparableConv2D(3, 2, depth_multiplier: 2, activation: sigmoid)\n"
                       "    b = Conv2D(x, 2, [3, 2], dilation_rate: [2, 1], strides: 1)\n"
                       "    c = SeparableConv2D(b, 2, 2, strides: [1, 2], padding: same, use_bias: false)\n"
                       "    output y = Dense(Concatenate(Flatten(a), Flatten(c)), 3, activation: softmax)\n"
                       "}\n"
                       "train dw {\n"
                       "    loss: CategoricalCrossentropy()\n"
                       "    optimizer: SGD(learning_rate: 0.1)\n"
                       "}\n", 2);
}
END_TEST

/* Embedding: the gather's vjp scatters dy into the table's gradient; tokens
 * repeated in a batch add up, a table shared by two calls gets both sums,
 * and tokens outside the table contribute nothing. */
START_TEST(source_embedding)
{
    check_source_grads("model tok {\n"
                       "    input t: i32[5]\n"
                       "    shared emb = Embedding(6, 3)\n"
                       "    a = GlobalAveragePooling1D(Dense(emb(t), 4, activation: tanh))\n"
                       "    b = GlobalMaxPooling1D(emb(t))\n"
                       "    output y = Dense(Concatenate([a, b]), 3, activation: softmax)\n"
                       "}\n"
                       "train tok {\n"
                       "    loss: CategoricalCrossentropy()\n"
                       "    optimizer: SGD(learning_rate: 0.1)\n"
                       "}\n", 3);
    check_source_grads("model grid {\n"
                       "    input t: i32[2, 4]\n"
                       "    Embedding(3, 2, embeddings_initializer: RandomNormal(stddev: 0.5))\n"
                       "    Flatten()\n"
                       "    output y = Dense(2, activation: softmax)\n"
                       "}\n"
                       "train grid {\n"
                       "    loss: CategoricalCrossentropy()\n"
                       "    optimizer: SGD(learning_rate: 0.1)\n"
                       "}\n", 2);
}
END_TEST

/* SimpleRNN: a scan over time (compiler/ops/scan.c) whose vjp is a scan the
 * other way; stacked, reversed and final states, fed by token embeddings. */
START_TEST(source_simple_rnn)
{
    check_source_grads("model rnn {\n"
                       "    input x: [4, 3]\n"
                       "    s = SimpleRNN(3, return_sequences: true)\n"
                       "    a = SimpleRNN(s, 2, activation: sigmoid)\n"
                       "    b = SimpleRNN(x, 2, go_backwards: true, use_bias: false)\n"
                       "    output y = Dense(Concatenate([a, b]), 3, activation: softmax)\n"
                       "}\n"
                       "train rnn {\n"
                       "    loss: CategoricalCrossentropy()\n"
                       "    optimizer: SGD(learning_rate: 0.1)\n"
                       "}\n", 3);
    check_source_grads("model tokrnn {\n"
                       "    input t: i32[5]\n"
                       "    Embedding(6, 3)\n"
                       "    SimpleRNN(4)\n"
                       "    output y = Dense(2, activation: softmax)\n"
                       "}\n"
                       "train tokrnn {\n"
                       "    loss: CategoricalCrossentropy()\n"
                       "    optimizer: SGD(learning_rate: 0.1)\n"
                       "}\n", 2);
    /* LSTM: two carries, four gates sliced from one product, forget bias ones */
    check_source_grads("model lstm {\n"
                       "    input x: [4, 2]\n"
                       "    s = LSTM(3, return_sequences: true)\n"
                       "    a = LSTM(s, 2, recurrent_activation: hard_sigmoid, activation: softsign)\n"
                       "    b = LSTM(x, 2, go_backwards: true, use_bias: false)\n"
                       "    output y = Dense(Concatenate([a, b]), 3, activation: softmax)\n"
                       "}\n"
                       "train lstm {\n"
                       "    loss: CategoricalCrossentropy()\n"
                       "    optimizer: SGD(learning_rate: 0.1)\n"
                       "}\n", 3);
    /* GRU both ways: reset_after (two biases) and not (the recurrent kernel sliced) */
    check_source_grads("model gru {\n"
                       "    input x: [4, 2]\n"
                       "    s = GRU(3, return_sequences: true)\n"
                       "    a = GRU(s, 2, reset_after: false)\n"
                       "    b = GRU(x, 2, go_backwards: true, recurrent_activation: hard_sigmoid)\n"
                       "    output y = Dense(Concatenate([a, b]), 3, activation: softmax)\n"
                       "}\n"
                       "train gru {\n"
                       "    loss: CategoricalCrossentropy()\n"
                       "    optimizer: SGD(learning_rate: 0.1)\n"
                       "}\n", 3);
    /* mask_zero: a masked step keeps the state (the fed ids include 0) */
    check_source_grads("model maskrnn {\n"
                       "    input t: i32[6]\n"
                       "    Embedding(4, 3, mask_zero: true)\n"
                       "    SimpleRNN(3, return_sequences: true)\n"
                       "    LSTM(2, go_backwards: true)\n"
                       "    output y = Dense(2, activation: softmax)\n"
                       "}\n"
                       "train maskrnn {\n"
                       "    loss: CategoricalCrossentropy()\n"
                       "    optimizer: SGD(learning_rate: 0.1)\n"
                       "}\n", 2);
}
END_TEST

/* go_backwards with every step's output (reversed into Keras' order),
 * return_state's final states as more outputs, dropout and
 * recurrent_dropout (the train graph draws their masks, seed 3, step 5):
 * gradients against finite differences of the same graph. */
START_TEST(source_rnn_options)
{
    check_source_grads("model back {\n"
                       "    input x: [4, 2]\n"
                       "    s = SimpleRNN(3, return_sequences: true, go_backwards: true)\n"
                       "    l = LSTM(x, 2, return_sequences: true, go_backwards: true)\n"
                       "    g = GRU(Concatenate([s, l]), 2, return_sequences: true, go_backwards: true, reset_after: false)\n"
                       "    output y = Dense(Flatten(g), 3, activation: softmax)\n"
                       "}\n"
                       "train back {\n"
                       "    loss: CategoricalCrossentropy()\n"
                       "    optimizer: SGD(learning_rate: 0.1)\n"
                       "}\n", 3);
    check_source_grads("model states {\n"
                       "    input x: [3, 2]\n"
                       "    s, h, c = LSTM(3, return_sequences: true, return_state: true)\n"
                       "    o, g = GRU(s, 2, return_state: true, go_backwards: true)\n"
                       "    r, q = SimpleRNN(x, 2, return_state: true)\n"
                       "    output y = Dense(Concatenate([h, c, g, o, q]), 3, activation: softmax)\n"
                       "}\n"
                       "train states {\n"
                       "    loss: CategoricalCrossentropy()\n"
                       "    optimizer: SGD(learning_rate: 0.1)\n"
                       "}\n", 2);
    check_source_grads("model drop {\n"
                       "    input x: [4, 3]\n"
                       "    s = LSTM(4, return_sequences: true, dropout: 0.3, recurrent_dropout: 0.4)\n"
                       "    a = GRU(s, 3, dropout: 0.2, recurrent_dropout: 0.5, go_backwards: true)\n"
                       "    b = GRU(x, 2, recurrent_dropout: 0.5, reset_after: false)\n"
                       "    c = SimpleRNN(x, 2, dropout: 0.5, recurrent_dropout: 0.5)\n"
                       "    output y = Dense(Concatenate([a, b, c]), 3, activation: softmax)\n"
                       "}\n"
                       "train drop {\n"
                       "    loss: CategoricalCrossentropy()\n"
                       "    optimizer: SGD(learning_rate: 0.1)\n"
                       "}\n", 3);
    /* Bidirectional in every merge mode, with states and masks (a masked step
     * outputs zeros there), and TimeDistributed(Dense) */
    check_source_grads("model bidi {\n"
                       "    input t: i32[4]\n"
                       "    e = Embedding(5, 2, mask_zero: true)\n"
                       "    q = Bidirectional(LSTM(2, return_sequences: true))\n"
                       "    s, hf, hb = Bidirectional(e, GRU(2, return_state: true, reset_after: false), merge_mode: sum)\n"
                       "    f, r = Bidirectional(q, SimpleRNN(2, return_sequences: true), merge_mode: none)\n"
                       "    a = Bidirectional(TimeDistributed(f, Dense(3, activation: tanh)), GRU(2), merge_mode: ave)\n"
                       "    m = Bidirectional(r, SimpleRNN(2, dropout: 0.3, recurrent_dropout: 0.3), merge_mode: mul)\n"
                       "    output y = Dense(Concatenate([s, hf, hb, a, m]), 2, activation: softmax)\n"
                       "}\n"
                       "train bidi {\n"
                       "    loss: CategoricalCrossentropy()\n"
                       "    optimizer: SGD(learning_rate: 0.1)\n"
                       "}\n", 2);
    /* masks with the options: a masked step keeps the states, backwards and stacked */
    check_source_grads("model maskopt {\n"
                       "    input t: i32[6]\n"
                       "    Embedding(4, 3, mask_zero: true)\n"
                       "    s, h = GRU(3, return_sequences: true, go_backwards: true, return_state: true, dropout: 0.2)\n"
                       "    l = LSTM(s, 2)\n"
                       "    output y = Dense(Concatenate([l, h]), 2, activation: softmax)\n"
                       "}\n"
                       "train maskopt {\n"
                       "    loss: CategoricalCrossentropy()\n"
                       "    optimizer: SGD(learning_rate: 0.1)\n"
                       "}\n", 2);
}
END_TEST

/* Keras' regularizers add their penalties to the training loss: with the
 * same weights and data, the loss with them minus the loss without is
 * 0.01 sum(k^2) + 0.02 sum(|b|) + 0.001 sum(|y|) + 0.003 sum(y^2), y the
 * second layer's output over the whole batch (Keras 3 does not divide it
 * by the batch size). Their gradients agree with finite differences. */
START_TEST(regularizers_add_to_loss)
{
    const char *plain = "model r {\n    input x: [4]\n    Dense(5, activation: tanh)\n    output y = Dense(3)\n}\n"
                        "train r {\n    loss: MeanSquaredError()\n    optimizer: SGD()\n}\n";
    const char *reg = "model r {\n    input x: [4]\n"
                      "    Dense(5, activation: tanh, kernel_regularizer: l2(0.01), bias_regularizer: L1(l1: 0.02))\n"
                      "    output y = Dense(3, activity_regularizer: l1_l2(l1: 0.001, l2: 0.003))\n}\n"
                      "train r {\n    loss: MeanSquaredError()\n    optimizer: SGD()\n}\n";
    src_model a, b;
    src_open(&a, plain, 2, false);
    src_open(&b, reg, 2, false);
    ck_assert_int_eq(b.tg.g->losses.len, 3);
    for (int i = 0; i < a.m->vars.len; i++) {
        const kd_var *v = a.m->vars.items[i];
        ck_assert_str_eq(v->name, ((const kd_var *)b.m->vars.items[i])->name);
        memcpy(b.vals[i], a.vals[i], (size_t)ir_shape_elems(&v->shape) * sizeof(double));
    }
    ir_values *va = src_run(&a), *vb = src_run(&b);
    double la = ir_value(va, a.tg.loss)[0], lb = ir_value(vb, b.tg.loss)[0];
    const double *k = a.vals[0], *bias = a.vals[1], *y = ir_value(va, a.tg.prediction);
    double want = 0;
    for (int i = 0; i < 4 * 5; i++) want += 0.01 * k[i] * k[i];
    for (int i = 0; i < 5; i++) want += 0.02 * fabs(bias[i]);
    for (int i = 0; i < 2 * 3; i++) want += 0.001 * fabs(y[i]) + 0.003 * y[i] * y[i];
    ck_assert_double_gt(want, 1e-3);
    ck_assert_double_eq_tol(lb - la, want, 1e-12);
    ir_values_free(va);
    ir_values_free(vb);
    src_close(&a);
    src_close(&b);
    check_source_grads(reg, 3);
    /* inference has no penalty: the predict graph has no losses */
    src_model c;
    src_open(&c, reg, 1, false);
    ck_assert_int_eq(c.m->infer->losses.len, 0);
    src_close(&c);
}
END_TEST

/* GaussianNoise draws, in training, normal noise of its stddev: over 4 x
 * 1,000 values its mean is 0 and its standard deviation 0.5 to within a few
 * percent; the same step gives the same noise, the next step other noise;
 * inference has none. */
START_TEST(gaussian_noise_draws)
{
    const char *text = "model n {\n    input x: [1000]\n    output y = Dense(GaussianNoise(x, 0.5), 1)\n}\n"
                       "train n {\n    loss: MeanSquaredError()\n    optimizer: SGD()\n}\n";
    src_model sm;
    src_open(&sm, text, 4, false);
    const ir_node *noise = NULL;
    for (int i = 0; i < sm.tg.g->nodes.len; i++)
        if (((const ir_node *)sm.tg.g->nodes.items[i])->op == IR_GAUSSIAN_NOISE) noise = sm.tg.g->nodes.items[i];
    ck_assert_ptr_nonnull(noise);
    ck_assert_int_eq(gc_count_op(sm.m->infer, IR_GAUSSIAN_NOISE), 0);
    ir_values *v = src_run(&sm), *again = src_run(&sm);
    sm.hyper[IR_HYPER_STEP] += 1;
    ir_values *next = src_run(&sm);
    const double *z = ir_value(v, noise), *z2 = ir_value(again, noise), *z3 = ir_value(next, noise);
    double sum = 0, sq = 0;
    int same = 0, differ = 0;
    for (int i = 0; i < 4000; i++) {
        sum += z[i];
        sq += z[i] * z[i];
        same += z[i] == z2[i];
        differ += z[i] != z3[i];
    }
    double mean = sum / 4000, sd = sqrt(sq / 4000 - mean * mean);
    ck_assert_msg(fabs(mean) < 0.03, "mean %g", mean);                 /* 4 standard errors */
    ck_assert_msg(fabs(sd - 0.5) < 0.025, "standard deviation %g", sd);
    ck_assert_int_eq(same, 4000);
    ck_assert_int_eq(differ, 4000);
    ir_values_free(v);
    ir_values_free(again);
    ir_values_free(next);
    src_close(&sm);
}
END_TEST

START_TEST(source_cnn)
{
    check_source_grads("model c {\n"
                       "    input x: [6, 6, 1]\n"
                       "    Conv2D(2, 3, padding: same, activation: sigmoid)\n"
                       "    AveragePooling2D(2)\n"
                       "    Conv2D(2, 2, strides: 2)\n"
                       "    Flatten()\n"
                       "    output y = Dense(3, activation: softmax)\n"
                       "}\n"
                       "train c {\n"
                       "    loss: CategoricalCrossentropy()\n"
                       "    optimizer: SGD(learning_rate: 0.1, momentum: 0.9, nesterov: true)\n"
                       "}\n", 2);
}
END_TEST

/* docs/language.md: the linear regression sample, trained with MSE and SGD by the
 * interpreter, recovers the line it was trained on. */
START_TEST(source_linear_regression)
{
    size_t len;
    char *text = tu_read(tu_src("samples/linear_regression.kdsl"), &len);
    ck_assert_ptr_nonnull(text);
    src_model sm;
    src_open(&sm, text, 16, true);
    free(text);
    for (int r = 0; r < 16; r++) {
        sm.x[r] = (r - 7.5) / 8;
        sm.t[r] = 3 * sm.x[r] - 0.5;
    }
    for (int step = 0; step < 300; step++) {
        sm.hyper[IR_HYPER_STEP] = step;
        ir_values *v = src_run(&sm);
        ir_interp_apply_updates(v, sm.vals);
        ir_values_free(v);
    }
    const kd_var *w = find_var(sm.m, "w"), *b = find_var(sm.m, "b");
    if (!w) w = find_var(sm.m, "linear_regression/w");
    if (!b) b = find_var(sm.m, "linear_regression/b");
    ck_assert_ptr_nonnull(w);
    ck_assert_ptr_nonnull(b);
    ck_assert_double_eq_tol(sm.vals[w->index][0], 3, 1e-6);
    ck_assert_double_eq_tol(sm.vals[b->index][0], -0.5, 1e-6);
    src_close(&sm);
}
END_TEST

static Suite *autodiff_suite(void)
{
    Suite *s = suite_create("autodiff");
    TCase *t = tcase_create("graphs");
    tcase_add_test(t, mlp_softmax_xent);
    tcase_add_loop_test(t, mlp_losses, 0, 21);
    tcase_add_test(t, cnn);
    tcase_add_loop_test(t, batchnorm, 0, 2);
    tcase_add_test(t, frozen_get_nothing);
    tcase_add_test(t, shared_weights);
    tcase_add_test(t, unreachable_and_no_rule);
    suite_add_tcase(s, t);
    t = tcase_create("training");
    tcase_add_test(t, adam_steps);
    tcase_add_loop_test(t, sgd_steps, 0, 3);
    tcase_add_test(t, rmsprop_steps);
    tcase_add_loop_test(t, optimizer_steps, 0, (int)(sizeof opt_cases / sizeof opt_cases[0]));
    tcase_add_test(t, optimizers_match_tfjs);
    tcase_add_test(t, grad_graph);
    tcase_add_test(t, no_train_block);
    tcase_add_test(t, loss_values);
    tcase_add_test(t, toolbox_loss_values);
    tcase_add_test(t, losses_match_tfjs);
    suite_add_tcase(s, t);
    t = tcase_create("source");
    tcase_add_test(t, source_mlp_bn_dropout);
    tcase_add_test(t, source_cnn);
    tcase_add_test(t, regularizers_add_to_loss);
    tcase_add_test(t, gaussian_noise_draws);
    tcase_add_test(t, source_keras_layers);
    tcase_add_test(t, source_embedding);
    tcase_add_test(t, source_simple_rnn);
    tcase_add_test(t, source_rnn_options);
    tcase_add_test(t, source_linear_regression);
    tcase_add_test(t, per_output_losses_graph);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tu_run_suite(autodiff_suite()); }
