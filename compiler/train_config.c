/* train_config.c — a model's `train` block: Keras' compile() and fit() settings. */
#include "sema_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define LOSS_ROW(K, cls, snake, alias, takes) {LOSS_##K, cls, snake, alias, takes},
const kd_loss_name kd_loss_names[KD_NLOSSES] = {KDH_LOSS_LIST(LOSS_ROW)};
#undef LOSS_ROW

#define OPT_ROW(K, cls, snake, lr, wd, rho, args) {OPT_##K, cls, snake, lr, wd, rho, args},
const kd_optimizer_name kd_optimizer_names[KD_NOPTIMIZERS] = {KD_OPTIMIZER_LIST(OPT_ROW)};
#undef OPT_ROW

static bool spells(const char *name, const char *a, const char *b, const char *c)
{
    return name && ((a && !strcmp(name, a)) || (b && !strcmp(name, b)) || (c && !strcmp(name, c)));
}

const kd_loss_name *kd_find_loss(const char *name)
{
    for (int i = 0; i < KD_NLOSSES; i++)
        if (spells(name, kd_loss_names[i].class_name, kd_loss_names[i].snake, kd_loss_names[i].alias))
            return &kd_loss_names[i];
    return NULL;
}

const kd_optimizer_name *kd_find_optimizer(const char *name)
{
    for (int i = 0; i < KD_NOPTIMIZERS; i++)
        if (spells(name, kd_optimizer_names[i].class_name, kd_optimizer_names[i].snake, NULL))
            return &kd_optimizer_names[i];
    return NULL;
}

/* The order matters: kd_nearest takes the first of equally near names. */
int kd_loss_spellings(const char **out, bool class_first)
{
    int n = 0;
    for (int i = 0; i < KD_NLOSSES; i++) {
        const kd_loss_name *l = &kd_loss_names[i];
        out[n++] = class_first ? l->class_name : l->snake;
        out[n++] = class_first ? l->snake : l->class_name;
        if (l->alias) out[n++] = l->alias;
    }
    return n;
}

int kd_optimizer_spellings(const char **out, bool class_first)
{
    int n = 0;
    for (int i = 0; i < KD_NOPTIMIZERS; i++) {
        const kd_optimizer_name *o = &kd_optimizer_names[i];
        out[n++] = class_first ? o->class_name : o->snake;
        out[n++] = class_first ? o->snake : o->class_name;
    }
    return n;
}

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* A call such as Adam(learning_rate: 1e-3), a bare name, or a string. */
static const char *callee_of(const ast_expr *e)
{
    if (e->kind == EXPR_CALL || e->kind == EXPR_NAME) return e->name;
    if (e->kind == EXPR_STRING) return e->str;
    return NULL;
}

static bool number_of(sema *S, const ast_expr *e, double *out, const char *what)
{
    sv *v = sema_eval(S, e);
    return v && sv_as_number(S, v, out, what);
}

static bool bool_of(sema *S, const ast_expr *e, bool *out, const char *what)
{
    sv *v = sema_eval(S, e);
    return v && sv_as_bool(S, v, out, what);
}

/* The words of a space-separated list into out (at most max); the count. */
static int words(kd_arena *a, const char *list, const char **out, int max)
{
    int n = 0;
    for (const char *p = list; *p && n < max;) {
        while (*p == ' ') p++;
        const char *q = p;
        while (*q && *q != ' ') q++;
        if (q > p) out[n++] = kd_strndup(a, p, (size_t)(q - p));
        p = q;
    }
    return n;
}

/* Binds the arguments of call e to keys (Keras' positional order, the
 * first npos of them by position, then any by keyword): at[k] is argument
 * k's key, or -1 after its error was reported. `name:` is taken by every
 * constructor (at[k] = -2 when it is not a key). */
static void bind_args(sema *S, const ast_expr *e, const char *const *keys, int nkeys, int npos, int *at)
{
    bool seen[32] = {false};
    for (int k = 0; e->kind == EXPR_CALL && k < e->nargs; k++) {
        const ast_arg *a = &e->args[k];
        at[k] = -1;
        if (!a->key) {
            if (k < npos) at[k] = k;
            else sema_error(S, a->loc, "%s takes at most %d positional arguments", e->name, npos);
        }
        for (int j = 0; a->key && j < nkeys; j++)
            if (!strcmp(a->key, keys[j])) at[k] = j;
        if (at[k] < 0 && a->key && !strcmp(a->key, "name")) {
            at[k] = -2;
            continue;
        }
        if (at[k] < 0 && a->key) {
            const char *near = kd_nearest(a->key, keys, nkeys);
            if (near) sema_error(S, a->loc, "%s takes no argument '%s'; did you mean '%s'?", e->name, a->key, near);
            else sema_error(S, a->loc, "%s takes no argument '%s'", e->name, a->key);
        }
        if (at[k] >= 0 && at[k] < 32) {
            if (seen[at[k]]) {
                sema_error(S, a->loc, "%s: '%s' is given twice", e->name, keys[at[k]]);
                at[k] = -1;
            } else {
                seen[at[k]] = true;
            }
        }
    }
}

/* A number in [lo, hi] (either end open when its flag says so). */
static bool number_in(sema *S, const ast_expr *e, double *out, const char *what, double lo, bool lo_open, double hi,
                      bool hi_open)
{
    double v;
    if (!number_of(S, e, &v, what)) return false;
    if (!(lo_open ? v > lo : v >= lo) || !(hi_open ? v < hi : v <= hi)) {
        if (hi == HUGE_VAL)
            sema_error(S, e->loc, "%s must be %s %.15g, got %.15g", what, lo_open ? "greater than" : "at least", lo, v);
        else
            sema_error(S, e->loc, "%s must be in %c%.15g, %.15g%c, got %.15g", what, lo_open ? '(' : '[', lo, hi,
                       hi_open ? ')' : ']', v);
        return false;
    }
    *out = v;
    return true;
}

static const char *string_of(const ast_expr *e)
{
    return e->kind == EXPR_STRING ? e->str : e->kind == EXPR_NAME ? e->name : NULL;
}

/* Whether a loss is written as an expression (a custom loss) rather than a
 * row's name: an operator, a tensor function's call, or a name the loss
 * expression binds (an output's name, y_pred, y_true, target). */
static bool is_loss_expression(const kd_model *m, const ast_expr *e)
{
    if (e->kind == EXPR_BINARY || e->kind == EXPR_NEG) return true;
    if (e->kind == EXPR_CALL) return function_find(e->name) != NULL;
    if (e->kind != EXPR_NAME) return false;
    static const char *const bound[] = {"y_pred", "y_true", "target"};
    for (int i = 0; i < (int)COUNT(bound); i++)
        if (!strcmp(e->name, bound[i])) return true;
    for (int j = 0; j < m->noutputs; j++)
        if (!strcmp(e->name, m->output_names[j])) return true;
    return false;
}

/* One loss: a row of KDH_LOSS_LIST, as a call with its arguments, a bare
 * name or a string; or an expression of the outputs, the labels and the
 * variables: the model's whole loss (output -1) or output `output`'s. */
static void parse_one_loss(sema *S, kd_loss_spec *c, const ast_expr *e, int output)
{
    const char *name = callee_of(e);
    const kd_loss_name *l = kd_find_loss(name);
    *c = (kd_loss_spec){.delta = 1.0};
    if (!l && is_loss_expression(S->m, e)) {
        c->graph = sema_loss_graph(S, S->m, e, output, true);
        c->kind = LOSS_CUSTOM;
        return;
    }
    if (!l) {
        const char *known[3 * KD_NLOSSES];
        int nknown = kd_loss_spellings(known, true);
        const char *near = name ? kd_nearest(name, known, nknown) : NULL;
        if (near) sema_error(S, e->loc, "unknown loss '%s'; did you mean '%s'?", name, near);
        else sema_error(S, e->loc, "unknown loss; see docs/language.md's train block for the losses");
        return;
    }
    c->kind = l->kind;
    /* Keras' positional order: from_logits, label_smoothing (cross-entropies), delta (Huber), axis (cosine). */
    const char *keys[4];
    int nkeys = 0;
    if (l->takes & KDH_LOSS_TAKES_LOGITS) keys[nkeys++] = "from_logits";
    if (l->takes & KDH_LOSS_TAKES_SMOOTHING) keys[nkeys++] = "label_smoothing";
    if (l->takes & KDH_LOSS_TAKES_DELTA) keys[nkeys++] = "delta";
    if (l->takes & KDH_LOSS_TAKES_AXIS) keys[nkeys++] = "axis";
    int at[64];
    if (e->kind == EXPR_CALL && e->nargs > 64) {
        sema_error(S, e->loc, "%s: too many arguments", name);
        return;
    }
    for (int k = 0; e->kind == EXPR_CALL && k < e->nargs; k++)
        if (l->kind == LOSS_SPARSE_CATEGORICAL_XENT && e->args[k].key && !strcmp(e->args[k].key, "label_smoothing")) {
            sema_error(S, e->args[k].loc, "%s takes no argument 'label_smoothing' (Keras 3's has none); smooth one-hot "
                       "labels with CategoricalCrossentropy(label_smoothing: ...)", name);
            return;
        }
    bind_args(S, e, keys, nkeys, nkeys, at);
    for (int k = 0; e->kind == EXPR_CALL && k < e->nargs; k++) {
        if (at[k] < 0) continue;
        const char *key = keys[at[k]];
        const ast_expr *v = e->args[k].value;
        if (!strcmp(key, "from_logits")) bool_of(S, v, &c->from_logits, key);
        else if (!strcmp(key, "label_smoothing")) number_in(S, v, &c->label_smoothing, key, 0, false, 1, false);
        else if (!strcmp(key, "delta")) number_in(S, v, &c->delta, key, 0, true, HUGE_VAL, false);
        else if (!strcmp(key, "axis")) {
            double axis;
            if (number_of(S, v, &axis, key) && axis != -1)
                sema_error(S, v->loc, "%s: kdsl takes axis -1 only (the last axis), got %g", name, axis);
        }
    }
}

/* loss: one loss (a row every output takes, or an expression: the whole
 * loss), or a list of one per output, in the outputs' order (Keras'
 * compile(loss=[...])). */
static void parse_loss(sema *S, kd_train_config *c, const ast_expr *e)
{
    const kd_model *m = S->m;
    if (e->kind != EXPR_LIST) {
        parse_one_loss(S, &c->loss, e, -1);
        return;
    }
    if (e->nitems != m->noutputs) {
        sema_error(S, e->loc, "loss: a list needs one loss per output: model '%s' has %d, the list %d", m->name,
                   m->noutputs, e->nitems);
        return;
    }
    c->output_losses = kd_alloc_array(S->a, (size_t)e->nitems, sizeof *c->output_losses);
    for (int j = 0; j < e->nitems; j++) parse_one_loss(S, &c->output_losses[j], e->items[j], j);
    c->loss = c->output_losses[0];
}

/* class_weight: a weight per class (Keras' fit(class_weight={0: 1, 1: 5})
 * as a list indexed by class), for a model of one output: one per value of
 * its last axis, or two (classes 0 and 1) for one value per sample. */
static void parse_class_weight(sema *S, kd_train_config *c, const ast_expr *e)
{
    const kd_model *m = S->m;
    if (m->noutputs != 1) {
        sema_error(S, e->loc, "class_weight weighs the classes of a model of one output; model '%s' has %d",
                   m->name, m->noutputs);
        return;
    }
    const ir_shape *y = &m->output_shapes[0];
    int64_t k = y->dims[y->rank - 1], want = k == 1 ? 2 : k;
    int n = e->kind == EXPR_LIST ? e->nitems : 0;
    if (n != want) {
        sema_error(S, e->loc, "class_weight: a list of %lld weights, one per class of output '%s'%s", (long long)want,
                   m->output_names[0], k == 1 ? " (classes 0 and 1)" : "");
        return;
    }
    c->class_weight = kd_alloc_array(S->a, (size_t)n, sizeof *c->class_weight);
    c->nclass_weight = n;
    for (int j = 0; j < n; j++)
        number_in(S, e->items[j], &c->class_weight[j], "class_weight", 0, false, HUGE_VAL, false);
}

/* loss_weights: a number per output (a list, or one number for one output). */
static void parse_loss_weights(sema *S, kd_train_config *c, const ast_expr *e)
{
    const kd_model *m = S->m;
    int n = e->kind == EXPR_LIST ? e->nitems : 1;
    if (n != m->noutputs) {
        sema_error(S, e->loc, "loss_weights: one weight per output: model '%s' has %d, given %d", m->name,
                   m->noutputs, n);
        return;
    }
    c->loss_weights = kd_alloc_array(S->a, (size_t)n, sizeof *c->loss_weights);
    for (int j = 0; j < n; j++)
        number_in(S, e->kind == EXPR_LIST ? e->items[j] : e, &c->loss_weights[j], "loss_weights", 0, false,
                  HUGE_VAL, false);
}

static bool is_schedule(const ast_expr *e);
static void parse_schedule(sema *S, kd_train_config *c, const ast_expr *e);

void kd_optimizer_defaults(kd_train_config *c, const kd_optimizer_name *row)
{
    c->optimizer = row->kind;
    c->learning_rate = row->learning_rate;
    c->schedule = (kd_lr_schedule){0};
    c->momentum = 0;
    c->nesterov = c->amsgrad = c->centered = false;
    c->beta_1 = 0.9;
    c->beta_2 = 0.999;
    c->epsilon = 1e-7;
    c->rho = row->rho;
    c->initial_accumulator_value = 0.1;
    c->weight_decay = row->weight_decay;
    c->clipnorm = c->clipvalue = c->global_clipnorm = 0;
}

/* optimizer: a row of KD_OPTIMIZER_LIST. Arguments by position in Keras'
 * order (learning_rate, the row's own, weight_decay, the clips) or by name. */
static void parse_optimizer(sema *S, kd_train_config *c, const ast_expr *e)
{
    const char *name = callee_of(e);
    const kd_optimizer_name *opt = kd_find_optimizer(name);
    if (!opt) {
        const char *known[2 * KD_NOPTIMIZERS];
        int nknown = kd_optimizer_spellings(known, true);
        const char *near = name ? kd_nearest(name, known, nknown) : NULL;
        if (near) sema_error(S, e->loc, "unknown optimizer '%s'; did you mean '%s'?", name, near);
        else sema_error(S, e->loc, "unknown optimizer; see docs/language.md's train block for the optimizers");
        return;
    }
    kd_optimizer_defaults(c, opt);
    const char *keys[24];
    int nkeys = 0;
    keys[nkeys++] = "learning_rate";
    nkeys += words(S->a, opt->args, keys + nkeys, 12);
    bool own_decay = false;
    for (int i = 0; i < nkeys; i++) own_decay |= !strcmp(keys[i], "weight_decay");
    if (!own_decay) keys[nkeys++] = "weight_decay";
    keys[nkeys++] = "clipnorm";
    keys[nkeys++] = "clipvalue";
    keys[nkeys++] = "global_clipnorm";
    keys[nkeys++] = "lr";   /* Keras 2's spelling, kept by kdsl */
    if (e->kind == EXPR_CALL && e->nargs > 64) {
        sema_error(S, e->loc, "%s: too many arguments", name);
        return;
    }
    int at[64], clips = 0;
    bind_args(S, e, keys, nkeys, nkeys - 1, at);   /* lr: not by position */
    for (int k = 0; e->kind == EXPR_CALL && k < e->nargs; k++) {
        if (at[k] == nkeys - 1) at[k] = 0;
        if (at[k] < 0) continue;
        const char *key = keys[at[k]];
        const ast_expr *v = e->args[k].value;
        if (!strcmp(key, "learning_rate") && is_schedule(v)) parse_schedule(S, c, v);
        else if (!strcmp(key, "learning_rate")) number_of(S, v, &c->learning_rate, key);
        else if (!strcmp(key, "momentum")) number_in(S, v, &c->momentum, key, 0, false, 1, true);
        else if (!strcmp(key, "nesterov")) bool_of(S, v, &c->nesterov, key);
        else if (!strcmp(key, "amsgrad")) bool_of(S, v, &c->amsgrad, key);
        else if (!strcmp(key, "centered")) bool_of(S, v, &c->centered, key);
        else if (!strcmp(key, "beta_1")) number_in(S, v, &c->beta_1, key, 0, false, 1, true);
        else if (!strcmp(key, "beta_2")) number_in(S, v, &c->beta_2, key, 0, false, 1, true);
        else if (!strcmp(key, "rho")) number_in(S, v, &c->rho, key, 0, false, 1, false);
        else if (!strcmp(key, "epsilon")) number_in(S, v, &c->epsilon, key, 0, false, HUGE_VAL, false);
        else if (!strcmp(key, "initial_accumulator_value"))
            number_in(S, v, &c->initial_accumulator_value, key, 0, false, HUGE_VAL, false);
        else if (!strcmp(key, "weight_decay")) number_in(S, v, &c->weight_decay, key, 0, false, HUGE_VAL, false);
        else {
            /* the clips: positive, and one of them at most (Keras' rule) */
            double *f = !strcmp(key, "clipnorm")    ? &c->clipnorm
                        : !strcmp(key, "clipvalue") ? &c->clipvalue
                                                    : &c->global_clipnorm;
            if (number_in(S, v, f, key, 0, true, HUGE_VAL, false) && ++clips == 2)
                sema_error(S, e->args[k].loc, "%s: only one of clipnorm, clipvalue and global_clipnorm can be set",
                           name);
        }
    }
    if (!(c->learning_rate > 0)) sema_error(S, e->loc, "learning_rate must be positive");
}

/* metrics: accuracy, or a row of KDH_METRIC_LIST with its arguments. */
/* A metric written as an expression, bare or wrapped as Keras wraps a metric
 * function: MeanMetricWrapper(EXPR, name: "..."). */
static void parse_expression_metric(sema *S, kd_train_config *c, const ast_expr *it)
{
    const ast_expr *e = it;
    const char *name = "mean_metric_wrapper";   /* Keras' name of an unnamed MeanMetricWrapper */
    if (it->kind == EXPR_CALL && !strcmp(it->name, "MeanMetricWrapper")) {
        e = NULL;
        for (int k = 0; k < it->nargs; k++) {
            const ast_arg *a = &it->args[k];
            const char *s = a->key && !strcmp(a->key, "name") ? string_of(a->value) : NULL;
            if (!a->key && !e) e = a->value;
            else if (s && *s && strlen(s) < KDH_METRIC_NAME_MAX && !strpbrk(s, ",\"\n")) name = s;
            else {
                sema_error(S, a->loc, "MeanMetricWrapper takes an expression and name: \"...\" (1 to %d characters, "
                           "without commas or quotes)", KDH_METRIC_NAME_MAX - 1);
                return;
            }
        }
        if (!e) {
            sema_error(S, it->loc, "MeanMetricWrapper needs the metric's expression, as MeanMetricWrapper(mean(abs(y_pred "
                       "- y_true)), name: \"abs_error\")");
            return;
        }
    }
    if (S->m->noutputs != 1) {
        sema_error(S, it->loc, "a metric written as an expression needs a model of one output; model '%s' has %d",
                   S->m->name, S->m->noutputs);
        return;
    }
    if (!strcmp(name, "loss") || !strcmp(name, "accuracy") || !strncmp(name, "val_", 4)) {
        sema_error(S, it->loc, "the name '%s' is taken: the logs have loss, accuracy and val_ of every metric", name);
        return;
    }
    if (c->nmetrics == KDH_MAX_METRICS) {
        sema_error(S, it->loc, "at most %d metrics besides accuracy", KDH_MAX_METRICS);
        return;
    }
    ir_graph *g = sema_loss_graph(S, S->m, e, -1, false);
    if (!g) return;
    if (!c->metrics) c->metrics = kd_alloc_array(S->a, KDH_MAX_METRICS, sizeof *c->metrics);
    kdh_metric_spec *m = &c->metrics[c->nmetrics++];
    kdh_metric_spec_init(m, KDH_METRIC_EXPRESSION, name);
    m->expr = g;
}

static void parse_metric(sema *S, kd_train_config *c, const ast_expr *it)
{
    const char *name = callee_of(it);
    if ((name && !strcmp(name, "MeanMetricWrapper")) || is_loss_expression(S->m, it)) {
        parse_expression_metric(S, c, it);
        return;
    }
    if (name && (!strcmp(name, "accuracy") || !strcmp(name, "acc") || !strcmp(name, "categorical_accuracy") ||
                 !strcmp(name, "sparse_categorical_accuracy"))) {
        c->metric_accuracy = true;
        return;
    }
    const kdh_metric_row *row = NULL;
    for (int i = 0; i < KDH_METRIC_COUNT && name; i++) {
        const kdh_metric_row *r = &kdh_metric_rows[i];
        if (spells(name, r->class_name, r->snake, r->alias)) row = r;
    }
    /* binary_accuracy as a bare name stays the train block's accuracy (what kdsl always did) */
    if (row && row->kind == KDH_METRIC_BINARY_ACCURACY && it->kind != EXPR_CALL) {
        c->metric_accuracy = true;
        return;
    }
    if (!row) {
        const char *known[3 * KDH_METRIC_COUNT + 2];
        int n = 0;
        known[n++] = "accuracy";
        for (int i = 0; i < KDH_METRIC_COUNT; i++) {
            known[n++] = kdh_metric_rows[i].class_name;
            known[n++] = kdh_metric_rows[i].snake;
            if (kdh_metric_rows[i].alias) known[n++] = kdh_metric_rows[i].alias;
        }
        const char *near = name ? kd_nearest(name, known, n) : NULL;
        if (near) sema_error(S, it->loc, "unknown metric '%s'; did you mean '%s'?", name, near);
        else
            sema_error(S, it->loc, "unknown metric '%s'; see docs/language.md's train block for the metrics",
                       name ? name : "?");
        return;
    }
    if (c->nmetrics == KDH_MAX_METRICS) {
        sema_error(S, it->loc, "at most %d metrics besides accuracy", KDH_MAX_METRICS);
        return;
    }
    if (!c->metrics) c->metrics = kd_alloc_array(S->a, KDH_MAX_METRICS, sizeof *c->metrics);
    kdh_metric_spec *m = &c->metrics[c->nmetrics++];
    /* Keras names a metric given as a string by that string; a constructed one by its name: */
    kdh_metric_spec_init(m, row->kind, it->kind == EXPR_CALL ? row->snake : name);
    const char *keys[8];
    int nkeys = words(S->a, row->args, keys, 8);
    if (it->kind == EXPR_CALL && it->nargs > 64) {
        sema_error(S, it->loc, "%s: too many arguments", name);
        return;
    }
    int at[64];
    bind_args(S, it, keys, nkeys, nkeys, at);
    for (int k = 0; it->kind == EXPR_CALL && k < it->nargs; k++) {
        const ast_expr *v = it->args[k].value;
        const char *key = at[k] == -2 ? "name" : at[k] >= 0 ? keys[at[k]] : NULL;
        if (!key) continue;
        double d;
        if (!strcmp(key, "name")) {
            const char *s = string_of(v);
            if (!s || !*s || strlen(s) >= KDH_METRIC_NAME_MAX || strpbrk(s, ",\"\n"))
                sema_error(S, v->loc, "%s: name must be a string of 1 to %d characters, without commas or quotes", name,
                           KDH_METRIC_NAME_MAX - 1);
            else if (!strcmp(s, "loss") || !strcmp(s, "accuracy") || !strncmp(s, "val_", 4))
                sema_error(S, v->loc, "%s: the name '%s' is taken: the logs have loss, accuracy and val_ of every metric",
                           name, s);
            else snprintf(m->name, sizeof m->name, "%s", s);
        } else if (!strcmp(key, "k")) {
            if (number_in(S, v, &d, key, 1, false, 1e6, false)) {
                if (d != (int)d) sema_error(S, v->loc, "%s: k must be an integer, got %g", name, d);
                m->k = (int)d;
            }
        } else if (!strcmp(key, "threshold") || !strcmp(key, "thresholds")) {
            if (number_in(S, v, &d, key, 0, false, 1, false)) m->threshold = d;
        } else if (!strcmp(key, "num_thresholds")) {
            if (number_in(S, v, &d, key, 1, true, 1e6, false)) {
                if (d != (int)d) sema_error(S, v->loc, "%s: num_thresholds must be an integer, got %g", name, d);
                m->num_thresholds = (int)d;
            }
        } else if (!strcmp(key, "curve")) {
            const char *s = string_of(v);
            if (s && !strcmp(s, "ROC")) m->pr = false;
            else if (s && !strcmp(s, "PR")) m->pr = true;
            else sema_error(S, v->loc, "%s: curve must be \"ROC\" or \"PR\"", name);
        } else if (!strcmp(key, "summation_method")) {
            const char *s = string_of(v);
            if (s && !strcmp(s, "interpolation")) m->summation = KDH_AUC_INTERPOLATION;
            else if (s && !strcmp(s, "minoring")) m->summation = KDH_AUC_MINORING;
            else if (s && !strcmp(s, "majoring")) m->summation = KDH_AUC_MAJORING;
            else
                sema_error(S, v->loc, "%s: summation_method must be \"interpolation\", \"minoring\" or \"majoring\"",
                           name);
        } else if (!strcmp(key, "from_logits")) bool_of(S, v, &m->from_logits, key);
    }
    for (int i = 0; i < c->nmetrics - 1; i++)
        if (!strcmp(c->metrics[i].name, m->name))
            sema_error(S, it->loc, "two metrics are named '%s'; give one of them another with name: \"...\"", m->name);
}

/* The logs a callback may monitor: loss, accuracy (with the metric), each
 * metric's name, and each of them with val_. The direction "auto" takes
 * (Keras' metrics' _direction): down for the loss and the errors. */
static bool monitor_known(const kd_train_config *c, const char *name, bool *up)
{
    const char *base = !strncmp(name, "val_", 4) ? name + 4 : name;
    if (!strcmp(base, "loss")) return *up = false, true;
    if (!strcmp(base, "accuracy") && c->metric_accuracy) return *up = true, true;
    for (int i = 0; i < c->nmetrics; i++)
        if (!strcmp(base, c->metrics[i].name)) {
            kdh_metric_kind k = c->metrics[i].kind;
            *up = !(k == KDH_METRIC_MAE || k == KDH_METRIC_MSE || k == KDH_METRIC_RMSE);
            return true;
        }
    return false;
}

/* callbacks: EarlyStopping, ReduceLROnPlateau, ModelCheckpoint with Keras'
 * arguments and defaults (after the metrics, which name what they monitor). */
static void parse_callback(sema *S, kd_train_config *c, const ast_expr *e)
{
    static const char *es_keys[] = {"monitor", "min_delta", "patience", "verbose", "mode", "baseline",
                                    "restore_best_weights", "start_from_epoch"};
    static const char *rl_keys[] = {"monitor", "factor",    "patience", "verbose",
                                    "mode",    "min_delta", "cooldown", "min_lr"};
    static const char *mc_keys[] = {"filepath", "monitor", "verbose", "save_best_only", "save_weights_only", "mode",
                                    "save_freq", "initial_value_threshold"};
    static const char *names[] = {"EarlyStopping", "ReduceLROnPlateau", "ModelCheckpoint"};
    const char *name = e->kind == EXPR_CALL || e->kind == EXPR_NAME ? e->name : NULL;
    int which = -1;
    for (int i = 0; i < 3 && name; i++)
        if (!strcmp(name, names[i])) which = i;
    if (which < 0) {
        const char *near = name ? kd_nearest(name, names, 3) : NULL;
        if (near) sema_error(S, e->loc, "unknown callback '%s'; did you mean '%s'?", name, near);
        else sema_error(S, e->loc, "unknown callback '%s'; kdsl has EarlyStopping, ReduceLROnPlateau and ModelCheckpoint",
                        name ? name : "?");
        return;
    }
    kdh_callbacks *cb = &c->callbacks;
    bool *on = which == 0 ? &cb->early_stopping.on : which == 1 ? &cb->reduce_lr.on : &cb->checkpoint.on;
    if (*on) {
        sema_error(S, e->loc, "%s is given twice", name);
        return;
    }
    *on = true;
    const char *const *keys = which == 0 ? es_keys : which == 1 ? rl_keys : mc_keys;
    int at[64];
    if (e->kind == EXPR_CALL && e->nargs > 64) {
        sema_error(S, e->loc, "%s: too many arguments", name);
        return;
    }
    bind_args(S, e, keys, 8, 8, at);
    const char *monitor = "val_loss", *mode = "auto";
    kd_loc monitor_loc = e->loc, mode_loc = e->loc;
    bool have_path = false;
    kdh_early_stopping *es = &cb->early_stopping;
    kdh_reduce_lr *rl = &cb->reduce_lr;
    kdh_model_checkpoint *mc = &cb->checkpoint;
    if (which == 1) *rl = (kdh_reduce_lr){.on = true, .factor = 0.1, .patience = 10, .min_delta = 1e-4};
    for (int k = 0; e->kind == EXPR_CALL && k < e->nargs; k++) {
        if (at[k] < 0) continue;
        const char *key = keys[at[k]];
        const ast_expr *v = e->args[k].value;
        double d;
        bool b;
        if (!strcmp(key, "monitor") || !strcmp(key, "mode") || !strcmp(key, "filepath") || !strcmp(key, "save_freq")) {
            const char *str = v->kind == EXPR_STRING ? v->str : !strcmp(key, "filepath") ? NULL : string_of(v);
            if (!str) {
                sema_error(S, v->loc, "%s: %s must be a string", name, key);
                continue;
            }
            if (!strcmp(key, "monitor")) monitor = str, monitor_loc = v->loc;
            else if (!strcmp(key, "mode")) mode = str, mode_loc = v->loc;
            else if (!strcmp(key, "filepath")) {
                have_path = true;
                mc->filepath = str;
                size_t n = strlen(str);
                if (n < 12 || strcmp(str + n - 12, ".safetensors"))
                    sema_error(S, v->loc, "%s: kdsl saves weights as safetensors: the filepath must end in .safetensors",
                               name);
            } else if (strcmp(str, "epoch"))
                sema_error(S, v->loc, "%s: kdsl saves once per epoch: save_freq must be \"epoch\"", name);
        } else if (!strcmp(key, "min_delta")) {
            if (number_of(S, v, &d, key)) *(which == 0 ? &es->min_delta : &rl->min_delta) = fabs(d);
        } else if (!strcmp(key, "patience") || !strcmp(key, "cooldown") || !strcmp(key, "start_from_epoch") ||
                   !strcmp(key, "verbose")) {
            if (!number_in(S, v, &d, key, 0, false, 1e9, false)) continue;
            if (d != floor(d)) sema_error(S, v->loc, "%s: %s must be a whole number, got %.15g", name, key, d);
            int n = (int)d;
            if (!strcmp(key, "verbose")) *(which == 0 ? &es->verbose : which == 1 ? &rl->verbose : &mc->verbose) = n;
            else if (!strcmp(key, "patience")) *(which == 0 ? &es->patience : &rl->patience) = n;
            else if (!strcmp(key, "cooldown")) rl->cooldown = n;
            else es->start_from_epoch = n;
        } else if (!strcmp(key, "baseline")) {
            if (number_of(S, v, &es->baseline, key)) es->has_baseline = true;
        } else if (!strcmp(key, "initial_value_threshold")) {
            if (number_of(S, v, &mc->initial_value_threshold, key)) mc->has_initial = true;
        } else if (!strcmp(key, "restore_best_weights")) bool_of(S, v, &es->restore_best_weights, key);
        else if (!strcmp(key, "save_best_only")) bool_of(S, v, &mc->save_best_only, key);
        else if (!strcmp(key, "save_weights_only")) bool_of(S, v, &b, key);   /* kdsl saves weights either way */
        else if (!strcmp(key, "factor")) {
            if (number_of(S, v, &rl->factor, key) && !(rl->factor >= 0 && rl->factor < 1))
                sema_error(S, v->loc, "ReduceLROnPlateau does not support a factor >= 1.0 (or below 0), got %.15g",
                           rl->factor);
        } else if (!strcmp(key, "min_lr")) number_in(S, v, &rl->min_lr, key, 0, false, HUGE_VAL, false);
    }
    if (which == 2 && !have_path) sema_error(S, e->loc, "ModelCheckpoint needs a filepath (\"best.safetensors\")");
    if (which == 1 && c->schedule.kind != SCHEDULE_CONSTANT)
        sema_error(S, e->loc,
                   "ReduceLROnPlateau sets the learning rate, which a schedule computes: give a constant learning_rate");
    bool up = false;
    if (!monitor_known(c, monitor, &up)) {
        const char *known[4 + 2 * KDH_MAX_METRICS];
        int n = 0;
        known[n++] = "val_loss", known[n++] = "loss";
        if (c->metric_accuracy) known[n++] = "val_accuracy", known[n++] = "accuracy";
        for (int i = 0; i < c->nmetrics; i++) known[n++] = c->metrics[i].name;
        const char *near = kd_nearest(monitor, known, n);
        if (near) sema_error(S, monitor_loc, "%s: no log is named '%s'; did you mean '%s'?", name, monitor, near);
        else
            sema_error(S, monitor_loc, "%s: no log is named '%s' (loss, the metrics, and val_ of each)", name, monitor);
    }
    if (strlen(monitor) >= KDH_MONITOR_MAX) return;
    bool maximize = up;
    if (!strcmp(mode, "min")) maximize = false;
    else if (!strcmp(mode, "max")) maximize = true;
    else if (strcmp(mode, "auto")) sema_error(S, mode_loc, "%s: mode must be \"auto\", \"min\" or \"max\"", name);
    else if (which == 1) maximize = strstr(monitor, "acc") != NULL;   /* ReduceLROnPlateau's own auto rule */
    char *dst = which == 0 ? es->monitor : which == 1 ? rl->monitor : mc->monitor;
    snprintf(dst, KDH_MONITOR_MAX, "%s", monitor);
    if (which == 0) es->maximize = maximize;
    else if (which == 1) rl->maximize = maximize;
    else mc->maximize = maximize;
}

static const struct { const char *name; kd_schedule_kind kind; } schedules[] = {
    {"ExponentialDecay", SCHEDULE_EXPONENTIAL}, {"InverseTimeDecay", SCHEDULE_INVERSE_TIME},
    {"CosineDecay", SCHEDULE_COSINE}, {"PolynomialDecay", SCHEDULE_POLYNOMIAL},
};

/* learning_rate: a number, or a schedule such as
 * CosineDecay(initial_learning_rate: 1e-3, decay_steps: 4690, alpha: 0). */
static bool is_schedule(const ast_expr *e)
{
    if (e->kind != EXPR_CALL) return false;
    for (int i = 0; i < COUNT(schedules); i++)
        if (!strcmp(e->name, schedules[i].name)) return true;
    return false;
}

static void parse_schedule(sema *S, kd_train_config *c, const ast_expr *e)
{
    kd_lr_schedule *s = &c->schedule;
    for (int i = 0; i < COUNT(schedules); i++)
        if (!strcmp(e->name, schedules[i].name)) s->kind = schedules[i].kind;
    *s = (kd_lr_schedule){.kind = s->kind, .end_learning_rate = 1e-4, .power = 1};
    /* Keras' positional order for each schedule. */
    static const char *exp_keys[] = {"initial_learning_rate", "decay_steps", "decay_rate", "staircase"};
    static const char *cos_keys[] = {"initial_learning_rate", "decay_steps", "alpha"};
    static const char *poly_keys[] = {"initial_learning_rate", "decay_steps", "end_learning_rate", "power"};
    const char *const *keys = s->kind == SCHEDULE_COSINE ? cos_keys : s->kind == SCHEDULE_POLYNOMIAL ? poly_keys : exp_keys;
    int nkeys = s->kind == SCHEDULE_COSINE ? 3 : 4;
    bool seen[4] = {false}, bad_key = false;
    for (int k = 0; k < e->nargs; k++) {
        const ast_arg *a = &e->args[k];
        int at = -1;
        if (!a->key) at = k < nkeys ? k : -1;
        for (int j = 0; a->key && j < nkeys; j++)
            if (!strcmp(a->key, keys[j])) at = j;
        if (at < 0) {
            if (a->key && !strcmp(a->key, "name")) continue;
            bad_key = true;
            if (a->key) {
                const char *near = kd_nearest(a->key, keys, nkeys);
                if (near) sema_error(S, a->loc, "%s takes no argument '%s'; did you mean '%s'?", e->name, a->key, near);
                else sema_error(S, a->loc, "%s takes no argument '%s'", e->name, a->key);
            } else {
                sema_error(S, a->loc, "%s takes at most %d arguments", e->name, nkeys);
            }
            continue;
        }
        if (seen[at]) sema_error(S, a->loc, "%s: '%s' is given twice", e->name, keys[at]);
        seen[at] = true;
        const char *key = keys[at];
        if (!strcmp(key, "initial_learning_rate")) number_of(S, a->value, &c->learning_rate, key);
        else if (!strcmp(key, "decay_steps")) {
            if (number_of(S, a->value, &s->decay_steps, key) && !(s->decay_steps > 0 && s->decay_steps <= 1e15))
                sema_error(S, a->value->loc, "decay_steps must be positive");
        } else if (!strcmp(key, "decay_rate")) {
            if (number_of(S, a->value, &s->decay_rate, key) && !(s->decay_rate > 0 && s->decay_rate <= 1e6))
                sema_error(S, a->value->loc, "decay_rate must be positive");
        } else if (!strcmp(key, "staircase")) bool_of(S, a->value, &s->staircase, key);
        else if (!strcmp(key, "alpha")) {
            if (number_of(S, a->value, &s->alpha, key) && !(s->alpha >= 0 && s->alpha <= 1))
                sema_error(S, a->value->loc, "alpha must be in [0, 1]");
        } else if (!strcmp(key, "end_learning_rate")) {
            if (number_of(S, a->value, &s->end_learning_rate, key) && !(s->end_learning_rate >= 0))
                sema_error(S, a->value->loc, "end_learning_rate must be at least 0");
        } else if (!strcmp(key, "power")) {
            if (number_of(S, a->value, &s->power, key) && !(s->power > 0 && s->power <= 1e3))
                sema_error(S, a->value->loc, "power must be positive");
        }
    }
    if (bad_key) return;   /* a misspelt key is the one mistake; what it meant is not missing */
    if (!seen[0]) sema_error(S, e->loc, "%s needs initial_learning_rate", e->name);
    /* decay_steps may be left out of cosine and polynomial decay (kdsl's
     * extension): the decay then spans the whole run. */
    if (!seen[1] && (s->kind == SCHEDULE_EXPONENTIAL || s->kind == SCHEDULE_INVERSE_TIME))
        sema_error(S, e->loc, "%s needs decay_steps", e->name);
    if (!seen[2] && (s->kind == SCHEDULE_EXPONENTIAL || s->kind == SCHEDULE_INVERSE_TIME))
        sema_error(S, e->loc, "%s needs decay_rate", e->name);
}

static int int_of(sema *S, const ast_expr *e, const char *what, int lo)
{
    sv *v = sema_eval(S, e);
    int64_t n;
    if (!v || !sv_as_int(S, v, &n, what)) return lo;
    if (n < lo || n > 1000000000) {
        sema_error(S, e->loc, "%s must be between %d and 1000000000, got %lld", what, lo, (long long)n);
        return lo;
    }
    return (int)n;
}

void sema_train_config(sema *S, kd_model *m, const ast_item *train)
{
    kd_train_config *c = &m->config;
    *c = (kd_train_config){.present = true, .batch_size = 32, .epochs = 1, .validation_freq = 1, .shuffle = true,
                           .loss = {.delta = 1.0}, .loc = train->loc};
    kd_optimizer_defaults(c, &kd_optimizer_names[OPT_ADAM - 1]);
    c->optimizer = OPT_NONE;
    static const char *keys[] = {"loss", "loss_weights", "class_weight", "optimizer", "metrics", "batch_size",
                                 "epochs", "validation_freq", "validation_split", "shuffle", "seed", "callbacks"};
    const ast_expr *loss_weights = NULL;
    bool loss_given = false;   /* a wrong loss has its own error */
    const ast_expr *callbacks = NULL;
    for (int i = 0; i < train->nsettings; i++) {
        const ast_arg *s = &train->settings[i];
        const char *key = s->key ? s->key : "";
        for (int j = 0; j < i; j++)
            if (train->settings[j].key && !strcmp(train->settings[j].key, key))
                sema_error(S, s->loc, "'%s' is set twice", key);
        if (!strcmp(key, "loss")) parse_loss(S, c, s->value), loss_given = true;
        else if (!strcmp(key, "loss_weights")) loss_weights = s->value;
        else if (!strcmp(key, "class_weight")) parse_class_weight(S, c, s->value);
        else if (!strcmp(key, "optimizer")) parse_optimizer(S, c, s->value);
        else if (!strcmp(key, "metrics")) {
            const ast_expr *e = s->value;
            int n = e->kind == EXPR_LIST ? e->nitems : 1;
            for (int k = 0; k < n; k++) parse_metric(S, c, e->kind == EXPR_LIST ? e->items[k] : e);
        } else if (!strcmp(key, "callbacks")) callbacks = s->value;
        else if (!strcmp(key, "batch_size")) c->batch_size = int_of(S, s->value, "batch_size", 1);
        else if (!strcmp(key, "epochs")) c->epochs = int_of(S, s->value, "epochs", 0);
        else if (!strcmp(key, "validation_freq")) c->validation_freq = int_of(S, s->value, "validation_freq", 1);
        else if (!strcmp(key, "seed")) c->seed = int_of(S, s->value, "seed", 0);
        else if (!strcmp(key, "shuffle")) bool_of(S, s->value, &c->shuffle, "shuffle");
        else if (!strcmp(key, "validation_split")) {
            if (number_of(S, s->value, &c->validation_split, "validation_split") &&
                !(c->validation_split >= 0 && c->validation_split < 1))
                sema_error(S, s->value->loc, "validation_split must be in [0, 1)");
        } else {
            const char *near = kd_nearest(key, keys, COUNT(keys));
            if (near) sema_error(S, s->loc, "unknown train setting '%s'; did you mean '%s'?", key, near);
            else sema_error(S, s->loc, "unknown train setting '%s'", key);
        }
    }
    /* after the metrics and the optimizer, whatever the order of the settings: they name what a callback watches */
    for (int k = 0; callbacks && k < (callbacks->kind == EXPR_LIST ? callbacks->nitems : 1); k++)
        parse_callback(S, c, callbacks->kind == EXPR_LIST ? callbacks->items[k] : callbacks);
    if (loss_weights) {   /* after the loss, whatever the order */
        parse_loss_weights(S, c, loss_weights);
        if (c->loss.kind == LOSS_CUSTOM && !c->output_losses)
            sema_error(S, loss_weights->loc, "loss_weights weigh the losses of several outputs; an expression is "
                       "the whole loss: weigh its terms in it");
    }
    bool custom = c->loss.kind == LOSS_CUSTOM;
    for (int j = 0; c->output_losses && j < m->noutputs; j++) custom |= c->output_losses[j].kind == LOSS_CUSTOM;
    if (c->class_weight && custom)
        sema_error(S, train->name_loc, "class_weight weighs a loss of the table; a loss written as an expression "
                   "weighs its samples itself");
    if (!loss_given) sema_error(S, train->name_loc, "train block for '%s' sets no loss", m->name);
    if (c->optimizer == OPT_NONE) {
        c->optimizer = OPT_ADAM;   /* Keras' compile() default is rmsprop; kdsl asks for one explicitly */
        sema_error(S, train->name_loc, "train block for '%s' sets no optimizer", m->name);
    }
}
