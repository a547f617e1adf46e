/* train_graph.c — from a model's forward graph to its training step: labels,
 * Keras' loss, reverse-mode gradients, and the optimizer as graph nodes, so
 * the whole step goes through the same passes and backends as inference. */
#include "train_graph.h"
#include "autodiff.h"

#include <math.h>
#include <string.h>

#define ADD(x, y) ir_binary(b, IR_ADD, x, y)
#define SUB(x, y) ir_binary(b, IR_SUB, x, y)
#define MUL(x, y) ir_binary(b, IR_MUL, x, y)
#define DIV(x, y) ir_binary(b, IR_DIV, x, y)
#define K(v) ir_scalar(b, v)

static int64_t last_axis(const ir_node *y) { return (int64_t)1 << (y->shape.rank - 1); }
static int64_t all_axes(const ir_node *y) { return ((int64_t)1 << y->shape.rank) - 1; }

/* clip(x, lo, hi) = min(max(x, lo), hi), min written with maximum and negations. */
static ir_node *clip(ir_builder *b, ir_node *x, double lo, double hi)
{
    ir_node *low = ir_binary(b, IR_MAXIMUM, x, K(lo));
    return ir_unary(b, IR_NEG, ir_binary(b, IR_MAXIMUM, ir_unary(b, IR_NEG, low), K(-hi)));
}

ir_node *kd_loss(ir_builder *b, const kd_train_config *c, ir_node *y, ir_node *t)
{
    if (!y || !t) return NULL;
    const double eps = KD_LOSS_EPSILON;
    switch (c->loss) {
    case LOSS_CATEGORICAL_XENT:
    case LOSS_SPARSE_CATEGORICAL_XENT:
        if (c->from_logits) {
            /* -sum(t log_softmax(z)) averaged over rows: the fused op, whose
             * gradient is one kernel (softmax - t) / rows. */
            ir_node *in[2] = {y, t};
            return ir_make(b, IR_SOFTMAX_XENT, 2, in, NULL);
        } else {
            /* Keras: p / sum(p), clipped to [eps, 1 - eps], then -sum(t log p). */
            ir_node *p = DIV(y, ir_reduce(b, IR_SUM, y, last_axis(y), true));
            ir_node *ce = ir_reduce(b, IR_SUM, MUL(t, ir_unary(b, IR_LOG, clip(b, p, eps, 1 - eps))), last_axis(y), false);
            return ir_unary(b, IR_NEG, ir_reduce(b, IR_MEAN, ce, all_axes(ce), false));
        }
    case LOSS_BINARY_XENT:
        if (c->from_logits) {
            /* sigmoid cross-entropy, the stable form: max(z, 0) - z t + log(1 + exp(-|z|)) */
            ir_node *soft = ir_unary(b, IR_LOG, ADD(K(1), ir_unary(b, IR_EXP, ir_unary(b, IR_NEG, ir_unary(b, IR_ABS, y)))));
            ir_node *per = ADD(SUB(ir_unary(b, IR_RELU, y), MUL(y, t)), soft);
            return ir_reduce(b, IR_MEAN, per, all_axes(per), false);
        } else {
            ir_node *p = clip(b, y, eps, 1 - eps);
            ir_node *ll = ADD(MUL(t, ir_unary(b, IR_LOG, p)), MUL(SUB(K(1), t), ir_unary(b, IR_LOG, SUB(K(1), p))));
            return ir_unary(b, IR_NEG, ir_reduce(b, IR_MEAN, ll, all_axes(ll), false));
        }
    case LOSS_MSE: {
        ir_node *sq = ir_unary(b, IR_SQUARE, SUB(y, t));
        return ir_reduce(b, IR_MEAN, sq, all_axes(sq), false);
    }
    case LOSS_NONE: break;
    }
    snprintf(b->why, sizeof b->why, "no loss to train with");
    return NULL;
}

/* The clone of m->train with labels and the loss; out->grads computed. */
static bool build_loss_and_grads(kd_arena *a, kd_model *m, kd_train_graph *out, ir_builder *b)
{
    memset(out, 0, sizeof *out);
    if (!m->config.present || m->config.loss == LOSS_NONE) {
        snprintf(b->why, sizeof b->why, "model '%s' has no train block with a loss", m->name);
        return false;
    }
    if (!m->train || m->train->outputs.len == 0) {
        snprintf(b->why, sizeof b->why, "model '%s' has no outputs to train", m->name);
        return false;
    }
    ir_graph *g = ir_graph_clone(a, m->train);
    b->g = g;
    b->layer = NULL;
    b->loc = m->config.loc;
    out->g = g;
    int nout = g->outputs.len < 16 ? g->outputs.len : 16;
    ir_node *loss = NULL;
    for (int i = 0; i < nout; i++) {
        ir_node *y = g->outputs.items[i];
        if (!y->shape.batched) {
            snprintf(b->why, sizeof b->why, "output %d of '%s' has no batch dimension to train on", i, m->name);
            return false;
        }
        ir_attrs la = {0};
        la.index = i;
        ir_node *t = ir_leaf(b, IR_LABEL, y->shape, &la, -1);
        out->labels[out->nlabels++] = t;
        ir_node *li = kd_loss(b, &m->config, y, t);
        if (!li) return false;
        loss = loss ? ADD(loss, li) : li;        /* Keras sums the losses of several outputs */
        if (!loss) return false;
    }
    /* the layers' regularization penalties: Keras adds them to the loss it trains on */
    for (int i = 0; i < g->losses.len && loss; i++) loss = ADD(loss, (ir_node *)g->losses.items[i]);
    if (!loss) return false;
    out->loss = loss;
    out->prediction = g->outputs.items[0];
    g->outputs.len = 0;
    kd_vec_push(a, &g->outputs, loss);
    kd_vec_push(a, &g->outputs, out->prediction);
    out->grads = ir_var_gradients(b, loss);
    if (!out->grads) return false;
    for (int v = 0; v < m->vars.len; v++) {
        const kd_var *var = m->vars.items[v];
        out->ngrads += var->kind == VAR_WEIGHT && var->trainable;
    }
    return true;
}

/* The optimizer slot `suffix` of weight w: found if an earlier build made it. */
static kd_var *slot(kd_arena *a, kd_model *m, const kd_var *w, const char *suffix)
{
    const char *name = kd_format(a, "%s/%s", w->name, suffix);
    int64_t offset = 0;
    for (int i = 0; i < m->vars.len; i++) {
        kd_var *v = m->vars.items[i];
        if (v->kind != VAR_SLOT) continue;
        if (!strcmp(v->name, name)) return v;
        offset = v->offset + ir_shape_elems(&v->shape);
    }
    kd_var *s = kd_alloc(a, sizeof *s);
    s->index = m->vars.len;
    s->name = name;
    s->kind = VAR_SLOT;
    s->trainable = false;
    s->shape = w->shape;
    s->init.kind = INIT_ZEROS;
    s->offset = offset;
    s->of_var = w->index;
    kd_vec_push(a, &m->vars, s);
    return s;
}

static bool update(kd_arena *a, ir_graph *g, const kd_var *v, ir_node *value)
{
    if (!value) return false;
    ir_update *u = kd_alloc(a, sizeof *u);
    u->var = v->index;
    u->value = value;
    kd_vec_push(a, &g->updates, u);
    return true;
}

/* b^t for the run-time step t, as exp(t ln b) (no pow op). */
static ir_node *power(ir_builder *b, double base, ir_node *t)
{
    if (base <= 0) return K(0);
    return ir_unary(b, IR_EXP, MUL(t, K(log(base))));
}

/* Keras 3's update rules, term for term. */
static bool add_optimizer(kd_arena *a, kd_model *m, kd_train_graph *tg, ir_builder *b)
{
    const kd_train_config *c = &m->config;
    ir_graph *g = tg->g;
    ir_node *lr = ir_hyper(b, IR_HYPER_LR);
    ir_node *alpha = NULL;
    if (c->optimizer == OPT_ADAM) {
        /* t = iterations + 1; alpha = lr sqrt(1 - b2^t) / (1 - b1^t) */
        ir_node *t = ADD(ir_hyper(b, IR_HYPER_STEP), K(1));
        ir_node *num = ir_unary(b, IR_SQRT, SUB(K(1), power(b, c->beta_2, t)));
        alpha = DIV(MUL(lr, num), SUB(K(1), power(b, c->beta_1, t)));
        if (!alpha) return false;
    }
    int nvars = m->vars.len;        /* slots appended below are not weights */
    for (int i = 0; i < nvars; i++) {
        const kd_var *wv = m->vars.items[i];
        ir_node *grad = tg->grads[i];
        if (!grad) continue;
        b->layer = NULL;
        ir_node *w = ir_var_read(b, wv), *next = NULL;
        switch (c->optimizer) {
        case OPT_SGD:
            if (c->momentum != 0) {
                /* m = momentum m - lr g; w += m, or with nesterov w += momentum m - lr g */
                const kd_var *sv = slot(a, m, wv, "momentum");
                ir_node *lrg = MUL(grad, lr);
                ir_node *mn = SUB(MUL(ir_var_read(b, sv), K(c->momentum)), lrg);
                if (!update(a, g, sv, mn)) return false;
                next = ADD(w, c->nesterov ? SUB(MUL(mn, K(c->momentum)), lrg) : mn);
            } else {
                next = SUB(w, MUL(grad, lr));
            }
            break;
        case OPT_ADAM: {
            /* m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); w -= alpha m / (sqrt(v) + eps) */
            const kd_var *ms = slot(a, m, wv, "adam_m"), *vs = slot(a, m, wv, "adam_v");
            ir_node *mo = ir_var_read(b, ms), *vo = ir_var_read(b, vs);
            ir_node *mn = ADD(mo, MUL(SUB(grad, mo), K(1 - c->beta_1)));
            ir_node *vn = ADD(vo, MUL(SUB(ir_unary(b, IR_SQUARE, grad), vo), K(1 - c->beta_2)));
            if (!update(a, g, ms, mn) || !update(a, g, vs, vn)) return false;
            next = SUB(w, DIV(MUL(mn, alpha), ADD(ir_unary(b, IR_SQRT, vn), K(c->epsilon))));
            break;
        }
        case OPT_RMSPROP: {
            /* v = rho v + (1 - rho) g^2; w -= lr g / sqrt(v + eps) */
            const kd_var *vs = slot(a, m, wv, "rms");
            ir_node *vn = ADD(MUL(ir_var_read(b, vs), K(c->rho)), MUL(ir_unary(b, IR_SQUARE, grad), K(1 - c->rho)));
            if (!update(a, g, vs, vn)) return false;
            next = SUB(w, DIV(MUL(lr, grad), ir_unary(b, IR_SQRT, ADD(vn, K(c->epsilon)))));
            break;
        }
        case OPT_NONE:
            snprintf(b->why, sizeof b->why, "model '%s' has no optimizer", m->name);
            return false;
        }
        if (!update(a, g, wv, next)) return false;
    }
    return true;
}

static void give_why(const ir_builder *b, char *why, size_t n)
{
    if (why && n) snprintf(why, n, "%s", b->why[0] ? b->why : "cannot build the training graph");
}

bool kd_build_train_step(kd_arena *a, kd_model *m, kd_train_graph *out, char *why, size_t why_len)
{
    ir_builder b = {0};
    if (build_loss_and_grads(a, m, out, &b) && add_optimizer(a, m, out, &b)) return true;
    give_why(&b, why, why_len);
    return false;
}

bool kd_build_grad_graph(kd_arena *a, kd_model *m, kd_train_graph *out, char *why, size_t why_len)
{
    ir_builder b = {0};
    if (!build_loss_and_grads(a, m, out, &b)) {
        give_why(&b, why, why_len);
        return false;
    }
    for (int i = 0; i < m->vars.len; i++) {
        const kd_var *v = m->vars.items[i];
        if (v->kind != VAR_WEIGHT || !v->trainable) continue;
        ir_node *d = out->grads[i] ? out->grads[i] : ir_const(&b, 0, v->shape);
        if (!d) {
            give_why(&b, why, why_len);
            return false;
        }
        kd_vec_push(a, &out->g->outputs, d);
    }
    return true;
}
