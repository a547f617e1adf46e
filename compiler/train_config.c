/* train_config.c — a model's `train` block: Keras' compile() and fit() settings. */
#include "sema_internal.h"

#include <string.h>

const kd_loss_name kd_loss_names[KD_NLOSSES] = {
    {LOSS_CATEGORICAL_XENT, "CategoricalCrossentropy", "categorical_crossentropy", NULL},
    {LOSS_SPARSE_CATEGORICAL_XENT, "SparseCategoricalCrossentropy", "sparse_categorical_crossentropy", NULL},
    {LOSS_BINARY_XENT, "BinaryCrossentropy", "binary_crossentropy", NULL},
    {LOSS_MSE, "MeanSquaredError", "mean_squared_error", "mse"},
};

const kd_optimizer_name kd_optimizer_names[KD_NOPTIMIZERS] = {
    {OPT_SGD, "SGD", "sgd", 0.01},
    {OPT_ADAM, "Adam", "adam", 0.001},
    {OPT_RMSPROP, "RMSprop", "rmsprop", 0.001},
};

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

static void parse_loss(sema *S, kd_train_config *c, const ast_expr *e)
{
    const char *name = callee_of(e);
    const kd_loss_name *l = kd_find_loss(name);
    if (l) {
        c->loss = l->kind;
        for (int k = 0; e->kind == EXPR_CALL && k < e->nargs; k++) {
            const ast_arg *a = &e->args[k];
            if (a->key && !strcmp(a->key, "from_logits") && c->loss != LOSS_MSE)
                bool_of(S, a->value, &c->from_logits, "from_logits");
            else if (!a->key || strcmp(a->key, "name") != 0)
                sema_error(S, a->loc, "%s takes no argument '%s'", name, a->key ? a->key : "here");
        }
        return;
    }
    const char *known[3 * KD_NLOSSES];
    int nknown = kd_loss_spellings(known, true);
    const char *near = name ? kd_nearest(name, known, nknown) : NULL;
    if (near) sema_error(S, e->loc, "unknown loss '%s'; did you mean '%s'?", name, near);
    else sema_error(S, e->loc, "unknown loss; use CategoricalCrossentropy, SparseCategoricalCrossentropy, BinaryCrossentropy or MeanSquaredError");
}

static bool is_schedule(const ast_expr *e);
static void parse_schedule(sema *S, kd_train_config *c, const ast_expr *e);

static void parse_optimizer(sema *S, kd_train_config *c, const ast_expr *e)
{
    const char *name = callee_of(e);
    const kd_optimizer_name *opt = kd_find_optimizer(name);
    if (opt) {
        c->optimizer = opt->kind;
        c->learning_rate = opt->learning_rate;
        for (int k = 0; e->kind == EXPR_CALL && k < e->nargs; k++) {
            const ast_arg *a = &e->args[k];
            const char *key = a->key ? a->key : k == 0 ? "learning_rate" : "";
            bool ok = true;
            if ((!strcmp(key, "learning_rate") || !strcmp(key, "lr")) && is_schedule(a->value))
                parse_schedule(S, c, a->value);
            else if (!strcmp(key, "learning_rate") || !strcmp(key, "lr"))
                ok = number_of(S, a->value, &c->learning_rate, key);
            else if (c->optimizer == OPT_SGD && !strcmp(key, "momentum")) ok = number_of(S, a->value, &c->momentum, key);
            else if (c->optimizer == OPT_SGD && !strcmp(key, "nesterov")) ok = bool_of(S, a->value, &c->nesterov, key);
            else if (c->optimizer == OPT_ADAM && !strcmp(key, "beta_1")) ok = number_of(S, a->value, &c->beta_1, key);
            else if (c->optimizer == OPT_ADAM && !strcmp(key, "beta_2")) ok = number_of(S, a->value, &c->beta_2, key);
            else if (c->optimizer != OPT_SGD && !strcmp(key, "epsilon")) ok = number_of(S, a->value, &c->epsilon, key);
            else if (c->optimizer == OPT_RMSPROP && !strcmp(key, "rho")) ok = number_of(S, a->value, &c->rho, key);
            else {
                sema_error(S, a->loc, "%s takes no argument '%s'", name, a->key ? a->key : "here");
                ok = false;
            }
            (void)ok;
        }
        if (!(c->learning_rate > 0)) sema_error(S, e->loc, "learning_rate must be positive");
        if (c->momentum < 0 || c->momentum >= 1) sema_error(S, e->loc, "momentum must be in [0, 1)");
        return;
    }
    const char *known[2 * KD_NOPTIMIZERS];
    int nknown = kd_optimizer_spellings(known, true);
    const char *near = name ? kd_nearest(name, known, nknown) : NULL;
    if (near) sema_error(S, e->loc, "unknown optimizer '%s'; did you mean '%s'?", name, near);
    else sema_error(S, e->loc, "unknown optimizer; use SGD, Adam or RMSprop");
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
                           .beta_1 = 0.9, .beta_2 = 0.999, .epsilon = 1e-7, .rho = 0.9, .loc = train->loc};
    static const char *keys[] = {"loss", "optimizer", "metrics", "batch_size", "epochs", "validation_freq",
                                 "validation_split", "shuffle", "seed"};
    for (int i = 0; i < train->nsettings; i++) {
        const ast_arg *s = &train->settings[i];
        const char *key = s->key ? s->key : "";
        for (int j = 0; j < i; j++)
            if (train->settings[j].key && !strcmp(train->settings[j].key, key))
                sema_error(S, s->loc, "'%s' is set twice", key);
        if (!strcmp(key, "loss")) parse_loss(S, c, s->value);
        else if (!strcmp(key, "optimizer")) parse_optimizer(S, c, s->value);
        else if (!strcmp(key, "metrics")) {
            const ast_expr *e = s->value;
            int n = e->kind == EXPR_LIST ? e->nitems : 1;
            for (int k = 0; k < n; k++) {
                const ast_expr *it = e->kind == EXPR_LIST ? e->items[k] : e;
                const char *name = callee_of(it);
                if (name && (!strcmp(name, "accuracy") || !strcmp(name, "acc") || !strcmp(name, "categorical_accuracy") ||
                             !strcmp(name, "sparse_categorical_accuracy") || !strcmp(name, "binary_accuracy")))
                    c->metric_accuracy = true;
                else
                    sema_error(S, it->loc, "unknown metric '%s'; kdsl computes accuracy (and the loss)", name ? name : "?");
            }
        } else if (!strcmp(key, "batch_size")) c->batch_size = int_of(S, s->value, "batch_size", 1);
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
    if (c->loss == LOSS_NONE) sema_error(S, train->name_loc, "train block for '%s' sets no loss", m->name);
    if (c->optimizer == OPT_NONE) {
        c->optimizer = OPT_ADAM;   /* Keras' compile() default is rmsprop; kdsl asks for one explicitly */
        sema_error(S, train->name_loc, "train block for '%s' sets no optimizer", m->name);
    }
}
