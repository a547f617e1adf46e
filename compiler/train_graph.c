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

static ir_node *minimum(ir_builder *b, ir_node *x, ir_node *y)
{
    return ir_unary(b, IR_NEG, ir_binary(b, IR_MAXIMUM, ir_unary(b, IR_NEG, x), ir_unary(b, IR_NEG, y)));
}

/* Keras' reductions: a loss of each row (the last axis), then the mean over
 * the rows of every sample and the batch ("sum_over_batch_size"). */
static ir_node *mean_all(ir_builder *b, ir_node *x) { return x ? ir_reduce(b, IR_MEAN, x, all_axes(x), false) : NULL; }

/* The mean of a loss's values x [N, ...]; with per-sample weights sw [N]
 * (class_weight), Keras 3's weighted "sum_over_batch_size": each sample's
 * mean times its weight, summed, over the batch size. */
static ir_node *weighted_mean(ir_builder *b, ir_node *x, ir_node *sw)
{
    if (!x || !sw) return mean_all(b, x);
    if (x->shape.rank > 1) x = ir_reduce(b, IR_MEAN, x, all_axes(x) & ~(int64_t)1, false);
    return mean_all(b, MUL(x, sw));
}
static ir_node *sum_last(ir_builder *b, ir_node *x, bool keep)
{
    return x ? ir_reduce(b, IR_SUM, x, last_axis(x), keep) : NULL;
}

/* Keras 3's convert_binary_labels_to_hinge: labels all 0 or 1 in the batch
 * become -1 or 1 (2t - 1); any other label leaves the batch as it is. */
static ir_node *hinge_labels(ir_builder *b, ir_node *t)
{
    ir_node *off = ir_binary(b, IR_GT, ir_unary(b, IR_ABS, MUL(t, SUB(K(1), t))), K(0));
    ir_node *any = ir_reduce(b, IR_MAX, off, all_axes(off), false);    /* 1: not binary */
    return ADD(t, MUL(SUB(K(1), any), SUB(t, K(1))));
}

/* x / max(|x|, eps) along the last axis: Keras' normalize (x * min(rsqrt(sum x^2), 1 / eps)),
 * the max taken under the root so that a zero row has a finite gradient. */
static ir_node *l2_normalize(ir_builder *b, ir_node *x)
{
    ir_node *ss = sum_last(b, ir_unary(b, IR_SQUARE, x), true);
    return DIV(x, ir_unary(b, IR_SQRT, ir_binary(b, IR_MAXIMUM, ss, K(KD_LOSS_EPSILON * KD_LOSS_EPSILON))));
}

ir_node *kd_loss(ir_builder *b, const kd_loss_spec *c, ir_node *y, ir_node *t, ir_node *sw)
{
    if (!y || !t) return NULL;
    const double eps = KD_LOSS_EPSILON, ls = c->label_smoothing;
    switch (c->kind) {
    case LOSS_CATEGORICAL_XENT:
    case LOSS_SPARSE_CATEGORICAL_XENT:
        /* label_smoothing: t (1 - ls) + ls / classes */
        if (ls > 0) t = ADD(MUL(t, K(1 - ls)), K(ls / (double)y->shape.dims[y->shape.rank - 1]));
        if (c->from_logits && !sw) {
            /* -sum(t log_softmax(z)) averaged over rows: the fused op, whose
             * gradient is one kernel (softmax sum(t) - t) / rows. */
            ir_node *in[2] = {y, t};
            return ir_make(b, IR_SOFTMAX_XENT, 2, in, NULL);
        } else if (c->from_logits) {
            ir_attrs at = {0};
            at.axis = y->shape.rank - 1;
            ir_node *ls = ir_make(b, IR_LOG_SOFTMAX, 1, &y, &at);
            return ir_unary(b, IR_NEG, weighted_mean(b, sum_last(b, MUL(t, ls), false), sw));
        } else {
            /* Keras: p / sum(p), clipped to [eps, 1 - eps], then -sum(t log p). */
            ir_node *p = DIV(y, ir_reduce(b, IR_SUM, y, last_axis(y), true));
            ir_node *ce = ir_reduce(b, IR_SUM, MUL(t, ir_unary(b, IR_LOG, clip(b, p, eps, 1 - eps))), last_axis(y), false);
            return ir_unary(b, IR_NEG, weighted_mean(b, ce, sw));
        }
    case LOSS_BINARY_XENT:
        /* label_smoothing: t (1 - ls) + ls / 2 */
        if (ls > 0) t = ADD(MUL(t, K(1 - ls)), K(0.5 * ls));
        if (c->from_logits) {
            /* sigmoid cross-entropy, the stable form: max(z, 0) - z t + log(1 + exp(-|z|)) */
            ir_node *soft = ir_unary(b, IR_LOG, ADD(K(1), ir_unary(b, IR_EXP, ir_unary(b, IR_NEG, ir_unary(b, IR_ABS, y)))));
            ir_node *per = ADD(SUB(ir_unary(b, IR_RELU, y), MUL(y, t)), soft);
            return weighted_mean(b, per, sw);
        } else {
            ir_node *p = clip(b, y, eps, 1 - eps);
            ir_node *ll = ADD(MUL(t, ir_unary(b, IR_LOG, p)), MUL(SUB(K(1), t), ir_unary(b, IR_LOG, SUB(K(1), p))));
            return ir_unary(b, IR_NEG, weighted_mean(b, ll, sw));
        }
    case LOSS_MSE:
        return weighted_mean(b, ir_unary(b, IR_SQUARE, SUB(y, t)), sw);
    case LOSS_MAE:
        return weighted_mean(b, ir_unary(b, IR_ABS, SUB(y, t)), sw);
    case LOSS_HUBER: {
        /* |e| <= delta ? e^2 / 2 : delta |e| - delta^2 / 2, as q^2 / 2 + delta (|e| - q), q = min(|e|, delta) */
        ir_node *a = ir_unary(b, IR_ABS, SUB(y, t));
        ir_node *q = minimum(b, a, K(c->delta));
        return weighted_mean(b, ADD(MUL(K(0.5), ir_unary(b, IR_SQUARE, q)), MUL(K(c->delta), SUB(a, q))), sw);
    }
    case LOSS_LOG_COSH: {
        /* x + softplus(-2x) - log 2, x = y - t */
        ir_node *x = SUB(y, t);
        ir_node *sp = ir_unary(b, IR_SOFTPLUS, MUL(x, K(-2)));
        return weighted_mean(b, SUB(ADD(x, sp), K(log(2.0))), sw);
    }
    case LOSS_KLD: {
        /* sum t log(t / y) over the last axis, both clipped to [eps, 1] */
        ir_node *tc = clip(b, t, eps, 1), *yc = clip(b, y, eps, 1);
        return weighted_mean(b, sum_last(b, MUL(tc, ir_unary(b, IR_LOG, DIV(tc, yc))), false), sw);
    }
    case LOSS_MSLE: {
        /* (log(max(y, eps) + 1) - log(max(t, eps) + 1))^2 */
        ir_node *ly = ir_unary(b, IR_LOG, ADD(ir_binary(b, IR_MAXIMUM, y, K(eps)), K(1)));
        ir_node *lt = ir_unary(b, IR_LOG, ADD(ir_binary(b, IR_MAXIMUM, t, K(eps)), K(1)));
        return weighted_mean(b, ir_unary(b, IR_SQUARE, SUB(ly, lt)), sw);
    }
    case LOSS_HINGE:
        /* max(1 - t y, 0), labels 0/1 made -1/1 */
        return weighted_mean(b, ir_unary(b, IR_RELU, SUB(K(1), MUL(hinge_labels(b, t), y))), sw);
    case LOSS_CATEGORICAL_HINGE: {
        /* max(max((1 - t) y) - sum(t y) + 1, 0) over the last axis */
        ir_node *pos = sum_last(b, MUL(t, y), false);
        ir_node *neg = ir_reduce(b, IR_MAX, MUL(SUB(K(1), t), y), last_axis(y), false);
        return weighted_mean(b, ir_unary(b, IR_RELU, ADD(SUB(neg, pos), K(1))), sw);
    }
    case LOSS_POISSON:
        /* y - t log(y + eps) */
        return weighted_mean(b, SUB(y, MUL(t, ir_unary(b, IR_LOG, ADD(y, K(eps))))), sw);
    case LOSS_COSINE_SIMILARITY:
        /* -sum(normalize(t) normalize(y)) over the last axis */
        return weighted_mean(b, ir_unary(b, IR_NEG, sum_last(b, MUL(l2_normalize(b, t), l2_normalize(b, y)), false)), sw);
    case LOSS_NONE:
    case LOSS_COUNT:
    case LOSS_CUSTOM: break;   /* not a row: build_loss_and_grads inlines its graph */
    }
    snprintf(b->why, sizeof b->why, "no loss to train with");
    return NULL;
}

/* A custom loss's placeholders, bound to the training graph's outputs and labels. */
typedef struct loss_binding {
    ir_node *const *outputs;
    ir_node *const *labels;
} loss_binding;

static ir_node *bind_placeholder(void *ctx, const ir_node *n)
{
    const loss_binding *lb = ctx;
    if (n->op == IR_INPUT) return lb->outputs[n->attr.index];
    if (n->op == IR_LABEL) return lb->labels[n->attr.index];
    return NULL;
}

/* Each sample's weight from its label t [N, k] and class_weight (Keras'
 * fit(class_weight=...)): the weight of its class, sum(t cw) for one-hot
 * rows; for one value per sample (binary), the class is t > 0.5. */
static ir_node *class_weights(ir_builder *b, const kd_train_config *c, ir_node *t)
{
    int64_t k = t->shape.dims[t->shape.rank - 1], one = 1;
    if (k == 1)
        return ADD(K(c->class_weight[0]), MUL(K(c->class_weight[1] - c->class_weight[0]), ir_binary(b, IR_GT, t, K(0.5))));
    ir_node **cw = kd_alloc_array(b->g->arena, (size_t)k, sizeof *cw);
    for (int64_t i = 0; i < k; i++) cw[i] = ir_const(b, c->class_weight[i], ir_shape_of(1, &one, false));
    ir_attrs at = {0};
    ir_node *row = ir_make(b, IR_CONCAT, (int)k, cw, &at);
    return sum_last(b, MUL(t, row), false);
}

/* Output j's loss (the one of several in a list, or the loss every output
 * shares), times its loss weight. */
static ir_node *output_loss(ir_builder *b, const kd_train_config *c, int j, ir_node *const *outputs,
                            ir_node *const *labels)
{
    const kd_loss_spec *spec = c->output_losses ? &c->output_losses[j] : &c->loss;
    ir_node *l;
    if (spec->kind == LOSS_CUSTOM) {
        loss_binding lb = {outputs, labels};
        l = spec->graph ? ir_inline(b, spec->graph, bind_placeholder, &lb) : NULL;
    } else {
        l = kd_loss(b, spec, outputs[j], labels[j], c->class_weight ? class_weights(b, c, labels[j]) : NULL);
    }
    if (l && c->loss_weights && c->loss_weights[j] != 1) l = MUL(l, K(c->loss_weights[j]));
    return l;
}

/* The clone of m->train with labels and the loss; out->grads computed. */
static bool build_loss_and_grads(kd_arena *a, kd_model *m, kd_train_graph *out, ir_builder *b)
{
    memset(out, 0, sizeof *out);
    const kd_train_config *c = &m->config;
    if (!c->present || (c->loss.kind == LOSS_NONE && !c->output_losses)) {
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
    b->loc = c->loc;
    out->g = g;
    int nout = g->outputs.len < 16 ? g->outputs.len : 16;
    ir_node *const *ys = (ir_node *const *)g->outputs.items;
    for (int i = 0; i < nout; i++) {
        ir_node *y = ys[i];
        if (!y->shape.batched) {
            snprintf(b->why, sizeof b->why, "output %d of '%s' has no batch dimension to train on", i, m->name);
            return false;
        }
        ir_attrs la = {0};
        la.index = i;
        out->labels[out->nlabels++] = ir_leaf(b, IR_LABEL, y->shape, &la, -1);
    }
    /* An expression is the whole loss; else Keras sums the losses of the outputs. */
    bool whole = c->loss.kind == LOSS_CUSTOM && !c->output_losses;
    ir_node *loss = NULL;
    for (int i = 0; i < (whole ? 1 : nout); i++) {
        ir_node *li = output_loss(b, c, i, ys, out->labels);
        if (!li) return false;
        loss = loss ? ADD(loss, li) : li;
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

/* The optimizer slot `suffix` of weight w (a scalar of the optimizer's own
 * when w is NULL): found if an earlier build made it, else zeros (or
 * `init` when nonzero). */
static kd_var *slot_init(kd_arena *a, kd_model *m, const kd_var *w, const char *suffix, double init)
{
    const char *name = w ? kd_format(a, "%s/%s", w->name, suffix) : suffix;
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
    s->shape = w ? w->shape : ir_shape_of(0, NULL, false);
    s->init.kind = init != 0 ? INIT_CONSTANT : INIT_ZEROS;
    s->init.a = init;
    s->offset = offset;
    s->of_var = w ? w->index : -1;
    kd_vec_push(a, &m->vars, s);
    return s;
}

static kd_var *slot(kd_arena *a, kd_model *m, const kd_var *w, const char *suffix)
{
    return slot_init(a, m, w, suffix, 0);
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

static ir_node *sum_squares(ir_builder *b, ir_node *g)
{
    ir_node *sq = ir_unary(b, IR_SQUARE, g);
    return ir_reduce(b, IR_SUM, sq, all_axes(sq), false);
}

/* Keras 3's _clip_gradients, before any update: clipnorm scales each
 * gradient to norm at most clipnorm, g * clipnorm / max(|g|, clipnorm);
 * global_clipnorm scales all of them by clip / max(global norm, clip) (the
 * norm over every gradient, tf.clip_by_global_norm: `scale`, a scalar
 * computed once); clipvalue clips each element to [-clipvalue, clipvalue].
 * Built per weight just before its update, so that lowering fuses the clip
 * into the update's loop (apply_gradients has no scratch memory). */
static ir_node *global_clip_scale(const kd_model *m, ir_node *const *grads, int nvars, ir_builder *b)
{
    const kd_train_config *c = &m->config;
    ir_node *total = NULL;
    for (int i = 0; i < nvars; i++)
        if (grads[i]) total = total ? ADD(total, sum_squares(b, grads[i])) : sum_squares(b, grads[i]);
    if (!total) return K(1);
    ir_node *norm = ir_unary(b, IR_SQRT, total);
    return DIV(K(c->global_clipnorm), ir_binary(b, IR_MAXIMUM, norm, K(c->global_clipnorm)));
}

static ir_node *clip_gradient(const kd_model *m, ir_node *g, ir_node *scale, ir_builder *b)
{
    const kd_train_config *c = &m->config;
    if (c->clipnorm > 0) {
        ir_node *norm = ir_unary(b, IR_SQRT, sum_squares(b, g));
        return DIV(MUL(g, K(c->clipnorm)), ir_binary(b, IR_MAXIMUM, norm, K(c->clipnorm)));
    }
    if (scale) return MUL(g, scale);
    if (c->clipvalue > 0) return clip(b, g, -c->clipvalue, c->clipvalue);
    return g;
}

/* Keras 3's update rules, term for term (keras/src/optimizers/). Each
 * weight: the gradient clipped, the weight decayed (decoupled, as Keras'
 * _apply_weight_decay: w -= w * weight_decay * lr, before the update), then
 * the optimizer's update_step on the decayed weight. */
static bool add_optimizer(kd_arena *a, kd_model *m, kd_train_graph *tg, ir_builder *b)
{
    const kd_train_config *c = &m->config;
    ir_graph *g = tg->g;
    ir_node *lr = ir_hyper(b, IR_HYPER_LR);
    ir_node *t = ADD(ir_hyper(b, IR_HYPER_STEP), K(1));   /* Keras' iterations + 1 */
    ir_node *alpha = NULL;
    const kd_optimizer_kind kind = c->optimizer;
    int nvars = m->vars.len;        /* slots appended below are not weights (tg->grads stops here) */
    if (kind == OPT_ADAM || kind == OPT_ADAMW) {
        /* alpha = lr sqrt(1 - b2^t) / (1 - b1^t) */
        ir_node *num = ir_unary(b, IR_SQRT, SUB(K(1), power(b, c->beta_2, t)));
        alpha = DIV(MUL(lr, num), SUB(K(1), power(b, c->beta_1, t)));
        if (!alpha) return false;
    }
    /* Every scalar of the step is built before the weights' updates, so that
     * each weight's update lowers to one loop (apply_gradients has no scratch
     * memory for a loop cut in two). */
    ir_node *u_t = NULL, *u_t1 = NULL, *u_prod = NULL, *u_prod1 = NULL, *one_b1t = NULL, *one_b2t = NULL;
    ir_node *one_u_t = NULL, *one_prod = NULL, *one_prod1 = NULL;
    if (kind == OPT_ADAMAX) one_b1t = SUB(K(1), power(b, c->beta_1, t));
    if (kind == OPT_NADAM) {
        /* u_t = b1 (1 - 0.5 * 0.96^t), u_{t+1} likewise; the product of the
         * u's so far is a variable of its own (Keras' _u_product, 1 at first),
         * updated once per step before the weights. */
        const kd_var *up = slot_init(a, m, NULL, "nadam/u_product", 1.0);
        u_t = MUL(K(c->beta_1), SUB(K(1), MUL(K(0.5), power(b, 0.96, t))));
        u_t1 = MUL(K(c->beta_1), SUB(K(1), MUL(K(0.5), power(b, 0.96, ADD(t, K(1))))));
        u_prod = MUL(ir_var_read(b, up), u_t);
        u_prod1 = MUL(u_prod, u_t1);
        if (!update(a, g, up, u_prod)) return false;
        one_b2t = SUB(K(1), power(b, c->beta_2, t));
        one_u_t = SUB(K(1), u_t);
        one_prod = SUB(K(1), u_prod);
        one_prod1 = SUB(K(1), u_prod1);
        if (!one_b2t || !one_u_t || !one_prod || !one_prod1) return false;
    }
    ir_node *scale = c->global_clipnorm > 0 ? global_clip_scale(m, tg->grads, nvars, b) : NULL;
    if (c->global_clipnorm > 0 && !scale) return false;
    for (int i = 0; i < nvars; i++) {
        const kd_var *wv = m->vars.items[i];
        if (!tg->grads[i]) continue;
        b->layer = NULL;
        ir_node *grad = clip_gradient(m, tg->grads[i], scale, b);
        if (!grad) return false;
        ir_node *w = ir_var_read(b, wv), *next = NULL;
        if (c->weight_decay > 0) w = SUB(w, MUL(MUL(w, K(c->weight_decay)), lr));
        switch (kind) {
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
        case OPT_ADAM:
        case OPT_ADAMW: {
            /* m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); amsgrad: v_hat = max(v_hat, v), used for v;
             * w -= alpha m / (sqrt(v) + eps) */
            const kd_var *ms = slot(a, m, wv, "adam_m"), *vs = slot(a, m, wv, "adam_v");
            ir_node *mo = ir_var_read(b, ms), *vo = ir_var_read(b, vs);
            ir_node *mn = ADD(mo, MUL(SUB(grad, mo), K(1 - c->beta_1)));
            ir_node *vn = ADD(vo, MUL(SUB(ir_unary(b, IR_SQUARE, grad), vo), K(1 - c->beta_2)));
            if (!update(a, g, ms, mn) || !update(a, g, vs, vn)) return false;
            if (c->amsgrad) {
                const kd_var *hs = slot(a, m, wv, "adam_vhat");
                vn = ir_binary(b, IR_MAXIMUM, ir_var_read(b, hs), vn);
                if (!update(a, g, hs, vn)) return false;
            }
            next = SUB(w, DIV(MUL(mn, alpha), ADD(ir_unary(b, IR_SQRT, vn), K(c->epsilon))));
            break;
        }
        case OPT_RMSPROP: {
            /* v = rho v + (1 - rho) g^2; centered: a = rho a + (1 - rho) g, denominator v - a^2 + eps,
             * else v + eps; increment = lr g / sqrt(denominator); momentum: mom = momentum mom +
             * increment, w -= mom; else w -= increment */
            const kd_var *vs = slot(a, m, wv, "rms");
            ir_node *vn = ADD(MUL(ir_var_read(b, vs), K(c->rho)), MUL(ir_unary(b, IR_SQUARE, grad), K(1 - c->rho)));
            if (!update(a, g, vs, vn)) return false;
            ir_node *den = ADD(vn, K(c->epsilon));
            if (c->centered) {
                const kd_var *as = slot(a, m, wv, "rms_average_gradient");
                ir_node *an = ADD(MUL(ir_var_read(b, as), K(c->rho)), MUL(grad, K(1 - c->rho)));
                if (!update(a, g, as, an)) return false;
                den = ADD(SUB(vn, ir_unary(b, IR_SQUARE, an)), K(c->epsilon));
            }
            ir_node *inc = DIV(MUL(lr, grad), ir_unary(b, IR_SQRT, den));
            if (c->momentum > 0) {
                const kd_var *mo = slot(a, m, wv, "rms_momentum");
                inc = ADD(MUL(ir_var_read(b, mo), K(c->momentum)), inc);
                if (!update(a, g, mo, inc)) return false;
            }
            next = SUB(w, inc);
            break;
        }
        case OPT_ADAGRAD: {
            /* acc += g^2 (acc starts at initial_accumulator_value); w -= lr g / sqrt(acc + eps) */
            const kd_var *as = slot_init(a, m, wv, "adagrad_accumulator", c->initial_accumulator_value);
            ir_node *an = ADD(ir_var_read(b, as), ir_unary(b, IR_SQUARE, grad));
            if (!update(a, g, as, an)) return false;
            next = SUB(w, DIV(MUL(lr, grad), ir_unary(b, IR_SQRT, ADD(an, K(c->epsilon)))));
            break;
        }
        case OPT_ADAMAX: {
            /* m += (g - m)(1 - b1); u = max(b2 u, |g|); w -= lr m / ((1 - b1^t)(u + eps)) */
            const kd_var *ms = slot(a, m, wv, "adamax_m"), *us = slot(a, m, wv, "adamax_u");
            ir_node *mo = ir_var_read(b, ms);
            ir_node *mn = ADD(mo, MUL(SUB(grad, mo), K(1 - c->beta_1)));
            ir_node *un = ir_binary(b, IR_MAXIMUM, MUL(ir_var_read(b, us), K(c->beta_2)), ir_unary(b, IR_ABS, grad));
            if (!update(a, g, ms, mn) || !update(a, g, us, un)) return false;
            ir_node *den = MUL(one_b1t, ADD(un, K(c->epsilon)));
            next = SUB(w, DIV(MUL(lr, mn), den));
            break;
        }
        case OPT_NADAM: {
            /* m, v as Adam; m_hat = u_{t+1} m / (1 - prod_{t+1}) + (1 - u_t) g / (1 - prod_t);
             * v_hat = v / (1 - b2^t); w -= lr m_hat / (sqrt(v_hat) + eps) */
            const kd_var *ms = slot(a, m, wv, "nadam_m"), *vs = slot(a, m, wv, "nadam_v");
            ir_node *mo = ir_var_read(b, ms), *vo = ir_var_read(b, vs);
            ir_node *mn = ADD(mo, MUL(SUB(grad, mo), K(1 - c->beta_1)));
            ir_node *vn = ADD(vo, MUL(SUB(ir_unary(b, IR_SQUARE, grad), vo), K(1 - c->beta_2)));
            if (!update(a, g, ms, mn) || !update(a, g, vs, vn)) return false;
            ir_node *mhat = ADD(DIV(MUL(mn, u_t1), one_prod1), DIV(MUL(grad, one_u_t), one_prod));
            ir_node *vhat = DIV(vn, one_b2t);
            next = SUB(w, DIV(MUL(mhat, lr), ADD(ir_unary(b, IR_SQRT, vhat), K(c->epsilon))));
            break;
        }
        case OPT_ADADELTA: {
            /* ag = rho ag + (1 - rho) g^2; delta = -sqrt(ad + eps) g / sqrt(ag + eps);
             * ad = rho ad + (1 - rho) delta^2; w += lr delta */
            const kd_var *gs = slot(a, m, wv, "adadelta_accumulated_grad");
            const kd_var *ds = slot(a, m, wv, "adadelta_accumulated_delta");
            ir_node *gn = ADD(MUL(ir_var_read(b, gs), K(c->rho)), MUL(ir_unary(b, IR_SQUARE, grad), K(1 - c->rho)));
            ir_node *dold = ir_var_read(b, ds);
            ir_node *delta = ir_unary(b, IR_NEG, DIV(MUL(ir_unary(b, IR_SQRT, ADD(dold, K(c->epsilon))), grad),
                                                     ir_unary(b, IR_SQRT, ADD(gn, K(c->epsilon)))));
            ir_node *dn = ADD(MUL(dold, K(c->rho)), MUL(ir_unary(b, IR_SQUARE, delta), K(1 - c->rho)));
            if (!update(a, g, gs, gn) || !update(a, g, ds, dn)) return false;
            next = ADD(w, MUL(lr, delta));
            break;
        }
        case OPT_NONE:
        case OPT_COUNT:
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
