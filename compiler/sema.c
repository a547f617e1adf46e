/* sema.c — semantic analysis: checks a program and elaborates each model into
 * graph IR, with Keras' instance names, a parameter table and static shapes.
 *
 * Elaboration interprets the model body: statements run in order, `repeat`
 * unrolls, blocks inline, user layers and nested models expand with their own
 * scopes, and every built-in layer emits its ops through layers.c. A model is
 * elaborated twice, once in training mode and once in inference mode; both
 * runs create the same variables in the same order, so they share one table. */
#include "sema_internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* MAX_PROGRAM_STATEMENTS bounds the work of a whole program, so that 10,000
 * models of 99,999 statements each (a 1 MB file) are an error, not hours. */
enum { MAX_DEPTH = 200, MAX_STATEMENTS = 100000, MAX_PROGRAM_STATEMENTS = 400000 };
/* The compiler's own memory (the session arena: source, syntax tree, graphs)
 * is bounded too: a 4-line program repeating BatchNormalization 99,990 times
 * would otherwise take 2.7 GB. ResNet-50 needs 14 MB. */
#define MAX_COMPILER_BYTES ((size_t)512 << 20)

typedef enum body_kind { BODY_MODEL, BODY_NESTED_MODEL, BODY_LAYER, BODY_BLOCK } body_kind;

/* What one body (model, layer or block) consumes and produces. */
typedef struct body_ctx {
    body_kind kind;
    sv **inputs;           /* layer / nested model: actual input tensors */
    int ninputs, next_input;
    kd_vec outputs;        /* sv* */
    kd_vec output_names;   /* const char* (NULL when unnamed) */
    kd_instance *inst;     /* user layer or nested model */
    bool in_if;
} body_ctx;

static void exec_body(sema *S, const ast_body *body, body_ctx *ctx);

/* ---- errors and values ------------------------------------------------- */

void sema_error(sema *S, kd_loc loc, const char *fmt, ...)
{
    S->errors++;
    if (S->quiet) return;
    va_list ap;
    va_start(ap, fmt);
    kd_verror(S->d, loc, fmt, ap);
    va_end(ap);
}

sv *sv_new(sema *S, sv_kind kind, kd_loc loc)
{
    sv *v = kd_alloc(S->a, sizeof *v);
    v->kind = kind;
    v->loc = loc;
    return v;
}

/* The value of a name whose statement failed: uses of it fail silently, so
 * one mistake gives one message. */
static sv *poison(sema *S, kd_loc loc)
{
    sv *v = sv_new(S, SV_NONE, loc);
    v->poisoned = true;
    return v;
}

sv *sv_tensor(sema *S, ir_node *t, const char *producer, kd_loc loc)
{
    if (!t) return NULL;
    sv *v = sv_new(S, SV_TENSOR, loc);
    v->t = t;
    v->producer = producer;
    return v;
}

const char *sv_describe(const sv *v)
{
    switch (v->kind) {
    case SV_NONE: return "nothing";
    case SV_TENSOR: return "a tensor";
    case SV_INT: return "an integer";
    case SV_FLOAT: return "a number";
    case SV_BOOL: return "a boolean";
    case SV_STRING: return "a string";
    case SV_IDENT: return "a name";
    case SV_LIST: return "a list";
    case SV_INSTANCE: return "a layer";
    case SV_CALL: return "a call";
    }
    return "a value";
}

bool sv_as_int(sema *S, const sv *v, int64_t *out, const char *what)
{
    if (v && v->kind == SV_INT) {
        *out = v->i;
        return true;
    }
    if (v && v->kind == SV_FLOAT && v->f == floor(v->f) && fabs(v->f) < 9e15) {
        *out = (int64_t)v->f;
        return true;
    }
    if (v && v->kind == SV_IDENT)
        sema_error(S, v->loc, "%s must be an integer, but '%s' is not defined", what, v->s);
    else if (v)
        sema_error(S, v->loc, "%s must be an integer, got %s", what, sv_describe(v));
    return false;
}

bool sv_as_number(sema *S, const sv *v, double *out, const char *what)
{
    if (v && v->kind == SV_INT) { *out = (double)v->i; return true; }
    if (v && v->kind == SV_FLOAT) { *out = v->f; return true; }
    if (v) sema_error(S, v->loc, "%s must be a number, got %s", what, sv_describe(v));
    return false;
}

bool sv_as_bool(sema *S, const sv *v, bool *out, const char *what)
{
    if (v && v->kind == SV_BOOL) { *out = v->i != 0; return true; }
    if (v) sema_error(S, v->loc, "%s must be true or false, got %s", what, sv_describe(v));
    return false;
}

int sema_axis(sema *S, int64_t axis, int rank, kd_loc loc)
{
    int64_t a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a >= rank) {
        sema_error(S, loc, "axis %lld is out of range for a tensor of rank %d (the batch is axis 0)",
                   (long long)axis, rank);
        return -1;
    }
    return (int)a;
}

ir_node *sema_mask_of(sema *S, const ir_node *x)
{
    for (int k = 0; k < S->masked.len; k++)
        if (S->masked.items[k] == x) return S->masks.items[k];
    return NULL;
}

ir_node *sema_check_node(sema *S, ir_node *n, kd_loc loc, const char *what)
{
    if (n && S->masked.len) {
        /* mask_zero: nothing reads masks yet, so a layer that would ignore one is an error */
        for (int i = 0; i < n->nin; i++)
            for (int k = 0; k < S->masked.len; k++)
                if (n->in[i] == S->masked.items[k] && n->in[i] != S->mask_reader) {
                    sema_error(S, loc, "%s reads %s's output, which carries a mask (mask_zero: true); only "
                               "the recurrent layers read masks (SimpleRNN), and %s would ignore it: remove "
                               "mask_zero", what, n->in[i]->layer ? n->in[i]->layer : "an Embedding", what);
                    return NULL;
                }
    }
    if (n) return n;
    if (S->b.g->overflow) {
        sema_error(S, loc, "model too large: more than %d operations", S->b.g->max_nodes ? S->b.g->max_nodes : 4000000);
        return NULL;
    }
    /* `why` starts with the IR op's name ("add: cannot broadcast ..."); the
     * user knows the layer or operator, so name that instead. */
    const char *why = S->b.why, *colon = strstr(why, ": ");
    if (colon && (size_t)(colon - why) < 24 && !memchr(why, ' ', (size_t)(colon - why))) why = colon + 2;
    if (*why) sema_error(S, loc, "%s: %s", what, why);
    return NULL;
}

/* ---- names ------------------------------------------------------------- */

/* Keras' snake case: MyDense -> my_dense, Conv2D -> conv2d, ReLU -> re_lu. */
const char *sema_snake_case(sema *S, const char *camel) { return kd_snake_case(S->a, camel); }

const char *kd_snake_case(kd_arena *a, const char *camel)
{
    size_t n = strlen(camel);
    char *out = kd_alloc(a, 2 * n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        char c = camel[i];
        /* Keras: insert '_' before an upper-case letter that starts a new word. */
        if (isupper((unsigned char)c) && i > 0) {
            char p = camel[i - 1];
            bool next_lower = i + 1 < n && islower((unsigned char)camel[i + 1]);
            if (islower((unsigned char)p) || (isupper((unsigned char)p) && next_lower))
                if (o > out && o[-1] != '_') *o++ = '_';
        }
        *o++ = (char)tolower((unsigned char)c);
    }
    *o = 0;
    return out;
}

static bool name_taken(sema *S, const char *name)
{
    return S->layer_names && kd_strset_has(S->layer_names, name);
}

/* The next free Keras name for `base` in this model: dense, dense_1, ... */
const char *sema_instance_name(sema *S, const char *base)
{
    name_counter *c = kd_strmap_get(&S->counters, base);
    if (!c) {
        c = kd_alloc(S->a, sizeof *c);
        c->base = base;
        kd_strmap_put(S->a, &S->counters, base, c);
    }
    for (;;) {
        const char *name = c->count == 0 ? base : kd_format(S->a, "%s_%d", base, c->count);
        c->count++;
        if (!name_taken(S, name)) return name;
    }
}

/* The block prefix in force ("conv2_block1_"), or "". */
static const char *block_prefix(sema *S)
{
    for (sema_frame *f = S->frame; f; f = f->up) {
        if (f->block_prefix) return f->block_prefix;
        if (f->inst) break;   /* a layer or nested model starts a new namespace */
    }
    return "";
}

/* ---- scopes ------------------------------------------------------------ */

static sv *scope_lookup(sema_scope *sc, const char *name)
{
    for (; sc; sc = sc->parent) {
        sema_binding *b = kd_strmap_get(&sc->index, name);
        if (b) return b->value;
    }
    return NULL;
}

static void scope_bind(sema *S, sema_scope *sc, const char *name, sv *value)
{
    sema_binding *b = kd_strmap_get(&sc->index, name);
    if (b) {
        b->value = value;
        return;
    }
    b = kd_alloc(S->a, sizeof *b);
    b->name = name;
    b->value = value;
    kd_vec_push(S->a, &sc->bindings, b);
    kd_strmap_put(S->a, &sc->index, name, b);
}

/* The bound name closest to `name`, for "did you mean". */
static const char *scope_nearest(sema *S, const char *name)
{
    const char *known[256];
    int n = 0;
    for (sema_scope *sc = S->scope; sc && n < 256; sc = sc->parent)
        for (int i = 0; i < sc->bindings.len && n < 256; i++)
            known[n++] = ((sema_binding *)sc->bindings.items[i])->name;
    return kd_nearest(name, known, n);
}

/* ---- items ------------------------------------------------------------- */

/* The first item called `name` that is not a train block (kind -1), or the
 * first model (kind ITEM_MODEL): from maps built once by kd_check. */
static const ast_item *find_item(sema *S, const char *name, int kind)
{
    return kd_strmap_get(kind == ITEM_MODEL ? &S->models : &S->items, name);
}

/* Every callable name, for suggestions. */
static const char *nearest_callable(sema *S, const char *name)
{
    const char *known[512];
    int n = layer_names(known, 256);
    n += function_names(known + n, 128);
    for (int i = 0; i < S->ast->nitems && n < 512; i++)
        if (S->ast->items[i]->kind != ITEM_TRAIN && S->ast->items[i]->name) known[n++] = S->ast->items[i]->name;
    for (sema_scope *sc = S->scope; sc; sc = sc->parent)
        for (int i = 0; i < sc->bindings.len && n < 512; i++) {
            sema_binding *b = sc->bindings.items[i];
            if (b->value && b->value->kind == SV_INSTANCE) known[n++] = b->name;
        }
    return kd_nearest(name, known, n);
}

/* ---- variables --------------------------------------------------------- */

kd_var *sema_new_var(sema *S, kd_instance *inst, const char *local, kd_var_kind kind,
                     ir_shape shape, kd_init init, bool trainable, kd_loc loc)
{
    /* A shared layer's second call finds its variables already made. */
    if (inst && inst->ncalls > 0) {
        const char *want = kd_format(S->a, "%s%s/%s", S->var_prefix, inst->name, local);
        for (int i = 0; i < inst->vars.len; i++) {
            kd_var *v = inst->vars.items[i];
            if (strcmp(v->name, want) != 0) continue;
            if (!ir_shape_equal(&v->shape, &shape)) {
                char a[128], b[128];
                sema_error(S, loc, "layer '%s' is shared, but this call needs %s of shape %s where its first call made %s",
                           inst->name, local, ir_shape_sample(&shape, a, sizeof a), ir_shape_sample(&v->shape, b, sizeof b));
                return NULL;
            }
            return v;
        }
    }
    /* A shared model's later call makes its layers again; their variables are its first call's. */
    if (S->shared_model_calls > 0) {
        const char *want = inst ? kd_format(S->a, "%s%s/%s", S->var_prefix, inst->name, local)
                                : kd_format(S->a, "%s%s", S->var_prefix, local);
        for (int i = 0; i < S->m->vars.len; i++) {
            kd_var *v = S->m->vars.items[i];
            if (strcmp(v->name, want) != 0) continue;
            if (!ir_shape_equal(&v->shape, &shape)) {
                char a[128], b[128];
                sema_error(S, loc, "this model is shared, but this call needs %s of shape %s where its first call made %s",
                           want, ir_shape_sample(&shape, a, sizeof a), ir_shape_sample(&v->shape, b, sizeof b));
                return NULL;
            }
            return v;
        }
        sema_error(S, loc, "this model is shared, but this call makes variable '%s', which its first call did not", want);
        return NULL;
    }
    int64_t elems = ir_shape_elems(&shape);
    if (elems < 0 || elems > ((int64_t)1 << 31)) {
        char buf[128];
        sema_error(S, loc, "variable '%s' of shape %s is too large", local, ir_shape_sample(&shape, buf, sizeof buf));
        return NULL;
    }
    kd_var *v = kd_alloc(S->a, sizeof *v);
    v->index = S->m->vars.len;
    v->name = inst ? kd_format(S->a, "%s%s/%s", S->var_prefix, inst->name, local)
                   : kd_format(S->a, "%s%s", S->var_prefix, local);
    if (kd_strset_has(&S->var_names, v->name)) {
        sema_error(S, loc, "variable '%s' is declared twice", v->name);
        return NULL;
    }
    kd_strset_add(S->a, &S->var_names, v->name);
    v->kind = kind;
    v->trainable = kind == VAR_WEIGHT && trainable && !S->frozen && !(inst && !inst->trainable);
    v->shape = shape;
    v->init = init;
    v->of_var = -1;
    kd_vec_push(S->a, &S->m->vars, v);
    if (inst) kd_vec_push(S->a, &inst->vars, v);
    kd_layer *row = S->row_for_vars;
    if (row) {
        if (v->trainable) row->trainable_params += elems;
        else row->nontrainable_params += elems;
    }
    return v;
}

static const struct { const char *name; kd_init_kind kind; } initializers[] = {
    {"zeros", INIT_ZEROS}, {"ones", INIT_ONES}, {"constant", INIT_CONSTANT},
    {"glorot_uniform", INIT_GLOROT_UNIFORM}, {"glorot_normal", INIT_GLOROT_NORMAL},
    {"he_uniform", INIT_HE_UNIFORM}, {"he_normal", INIT_HE_NORMAL},
    {"lecun_uniform", INIT_LECUN_UNIFORM}, {"lecun_normal", INIT_LECUN_NORMAL},
    {"random_uniform", INIT_RANDOM_UNIFORM}, {"random_normal", INIT_RANDOM_NORMAL},
    {"uniform", INIT_RANDOM_UNIFORM}, {"normal", INIT_RANDOM_NORMAL},   /* Keras' short names */
    {"orthogonal", INIT_ORTHOGONAL},
};

/* An initializer: a name (he_normal), a number (a constant), or a call with
 * Keras' arguments: RandomNormal(mean: 0, stddev: 0.05), Constant(value: 2). */
static bool init_from_expr(sema *S, const ast_expr *e, kd_init *out)
{
    memset(out, 0, sizeof *out);
    if (e->kind == EXPR_INT || e->kind == EXPR_FLOAT || e->kind == EXPR_NEG) {
        sv *v = sema_eval(S, e);
        double x;
        if (!v || !sv_as_number(S, v, &x, "a constant initializer")) return false;
        out->kind = INIT_CONSTANT;
        out->a = x;
        return true;
    }
    const char *name = e->kind == EXPR_NAME ? e->name : e->kind == EXPR_CALL ? e->name : NULL;
    if (!name) {
        sema_error(S, e->loc, "an initializer must be a name such as glorot_uniform, zeros or he_normal");
        return false;
    }
    const char *snake = sema_snake_case(S, name);
    const char *known[sizeof initializers / sizeof initializers[0]];
    for (size_t i = 0; i < sizeof initializers / sizeof initializers[0]; i++) {
        known[i] = initializers[i].name;
        if (strcmp(snake, initializers[i].name) != 0) continue;
        out->kind = initializers[i].kind;
        if (out->kind == INIT_RANDOM_UNIFORM) { out->a = -0.05; out->b = 0.05; }
        if (out->kind == INIT_RANDOM_NORMAL) { out->a = 0; out->b = 0.05; }
        if (out->kind == INIT_ORTHOGONAL) out->a = 1;
        for (int k = 0; e->kind == EXPR_CALL && k < e->nargs; k++) {
            const ast_arg *arg = &e->args[k];
            sv *v = sema_eval(S, arg->value);
            double x;
            if (!v || !sv_as_number(S, v, &x, "an initializer argument")) return false;
            const char *key = arg->key ? arg->key : "";
            if (out->kind == INIT_CONSTANT && (!arg->key || !strcmp(key, "value"))) out->a = x;
            else if (out->kind == INIT_RANDOM_UNIFORM && (!strcmp(key, "minval") || (!arg->key && k == 0))) out->a = x;
            else if (out->kind == INIT_RANDOM_UNIFORM && (!strcmp(key, "maxval") || (!arg->key && k == 1))) out->b = x;
            else if (out->kind == INIT_RANDOM_NORMAL && (!strcmp(key, "mean") || (!arg->key && k == 0))) out->a = x;
            else if (out->kind == INIT_RANDOM_NORMAL && (!strcmp(key, "stddev") || (!arg->key && k == 1))) out->b = x;
            else if (out->kind == INIT_ORTHOGONAL && (!strcmp(key, "gain") || (!arg->key && k == 0))) out->a = x;
            else if (strcmp(key, "seed") != 0) {
                sema_error(S, arg->loc, "initializer %s takes no argument '%s'", name, arg->key ? arg->key : "here");
                return false;
            }
        }
        return true;
    }
    const char *near = kd_nearest(snake, known, (int)(sizeof known / sizeof known[0]));
    if (near) sema_error(S, e->loc, "unknown initializer '%s'; did you mean '%s'?", name, near);
    else sema_error(S, e->loc, "unknown initializer '%s'", name);
    return false;
}

static const char *const regularizer_names[] = {"l1", "l2", "l1_l2"};

bool sema_is_setting_call(sema *S, const char *name)
{
    const char *snake = sema_snake_case(S, name);
    for (size_t i = 0; i < sizeof initializers / sizeof initializers[0]; i++)
        if (!strcmp(snake, initializers[i].name)) return true;
    for (size_t i = 0; i < sizeof regularizer_names / sizeof regularizer_names[0]; i++)
        if (!strcmp(snake, regularizer_names[i])) return true;
    return !strcmp(snake, "l1l2");
}

/* Keras 3's defaults: L1(l1=0.01), L2(l2=0.01), L1L2(l1=0, l2=0); l1_l2 and L1L2 are one class. */
bool sema_regularizer_from(sema *S, const sv *v, const char *what, kd_regularizer *out)
{
    memset(out, 0, sizeof *out);
    if (!v || v->kind == SV_NONE || (v->kind == SV_IDENT && !strcmp(v->s, "none"))) return true;
    const char *name = v->kind == SV_IDENT || v->kind == SV_STRING || v->kind == SV_CALL ? v->s : NULL;
    const char *snake = name ? sema_snake_case(S, name) : NULL;
    if (snake && !strcmp(snake, "l1l2")) snake = "l1_l2";
    int which = -1;
    for (int i = 0; snake && i < 3; i++)
        if (!strcmp(snake, regularizer_names[i])) which = i;
    if (which < 0) {
        const char *near = snake ? kd_nearest(snake, regularizer_names, 3) : NULL;
        if (near) sema_error(S, v->loc, "%s: unknown regularizer '%s'; did you mean '%s'?", what, name, near);
        else sema_error(S, v->loc, "%s must be a regularizer (l1, l2, l1_l2 or a call such as l2(1e-4)), got %s", what,
                        name ? name : sv_describe(v));
        return false;
    }
    out->present = true;
    out->l1 = which == 0 ? 0.01 : 0;
    out->l2 = which == 1 ? 0.01 : 0;
    const ast_expr *e = v->kind == SV_CALL ? v->call : NULL;
    for (int k = 0; e && k < e->nargs; k++) {
        const ast_arg *arg = &e->args[k];
        sv *x = sema_eval(S, arg->value);
        double d;
        if (!x || !sv_as_number(S, x, &d, "a regularization factor")) return false;
        const char *key = arg->key ? arg->key : which == 1 || (which == 2 && k == 1) ? "l2" : "l1";
        if (!(d >= 0 && d < 1e30)) {
            sema_error(S, arg->loc, "regularization factor %s must be a non-negative number, got %g", key, d);
            return false;
        }
        if (!strcmp(key, "l1") && which != 1) out->l1 = d;
        else if (!strcmp(key, "l2") && which != 0) out->l2 = d;
        else {
            sema_error(S, arg->loc, "regularizer %s takes no argument '%s'", name, key);
            return false;
        }
    }
    return true;
}

bool sema_regularize(sema *S, const kd_regularizer *r, ir_node *x, kd_loc loc)
{
    if (!r->present || !S->training || !x) return true;
    ir_builder *b = &S->b;
    int64_t all = ((int64_t)1 << x->shape.rank) - 1;
    ir_node *penalty = NULL;
    const double factor[2] = {r->l1, r->l2};
    for (int i = 0; i < 2; i++) {
        if (factor[i] == 0) continue;
        ir_node *f = sema_check_node(S, ir_unary(b, i == 0 ? IR_ABS : IR_SQUARE, x), loc, "regularizer");
        ir_node *sum = f ? sema_check_node(S, ir_reduce(b, IR_SUM, f, all, false), loc, "regularizer") : NULL;
        ir_node *term = sum ? sema_check_node(S, ir_binary(b, IR_MUL, sum, ir_scalar(b, factor[i])), loc, "regularizer") : NULL;
        if (!term) return false;
        penalty = penalty ? sema_check_node(S, ir_binary(b, IR_ADD, penalty, term), loc, "regularizer") : term;
        if (!penalty) return false;
    }
    if (penalty) kd_vec_push(S->a, &b->g->losses, penalty);
    return true;
}

bool sema_init_from(sema *S, const sv *v, kd_init *out)
{
    ast_expr e = {0};
    e.loc = v->loc;
    if (v->kind == SV_CALL) return init_from_expr(S, v->call, out);
    if (v->kind == SV_IDENT) {
        e.kind = EXPR_NAME;
        e.name = v->s;
    } else if (v->kind == SV_INT || v->kind == SV_FLOAT) {
        memset(out, 0, sizeof *out);
        out->kind = INIT_CONSTANT;
        out->a = v->kind == SV_INT ? (double)v->i : v->f;
        return true;
    } else {
        sema_error(S, v->loc, "an initializer must be a name such as glorot_uniform, got %s", sv_describe(v));
        return false;
    }
    return init_from_expr(S, &e, out);
}

/* ---- shapes in declarations -------------------------------------------- */

/* `[n * 2, units]`: each entry an integer; an unbound plain name binds to the
 * matching size of `actual` when one is given (Keras' build(input_shape)). */
static bool eval_shape(sema *S, const ast_expr *list, const ir_shape *actual, ir_shape *out, const char *what)
{
    if (!list || list->kind != EXPR_LIST) {
        sema_error(S, list ? list->loc : S->b.loc, "%s needs a shape in brackets, such as [784]", what);
        return false;
    }
    if (list->nitems > IR_MAX_RANK - 1) {
        sema_error(S, list->loc, "%s has rank %d; at most %d dimensions are supported", what, list->nitems, IR_MAX_RANK - 1);
        return false;
    }
    int off = actual && actual->batched ? 1 : 0;
    if (actual && actual->rank - off != list->nitems) {
        char buf[128];
        sema_error(S, list->loc, "%s expects a rank-%d input per sample, got %s", what, list->nitems,
                   ir_shape_sample(actual, buf, sizeof buf));
        return false;
    }
    memset(out, 0, sizeof *out);
    out->rank = list->nitems;
    for (int i = 0; i < list->nitems; i++) {
        const ast_expr *e = list->items[i];
        if (actual && e->kind == EXPR_NAME && !scope_lookup(S->scope, e->name)) {
            sv *v = sv_new(S, SV_INT, e->loc);
            v->i = actual->dims[i + off];
            scope_bind(S, S->scope, e->name, v);
        }
        sv *v = sema_eval(S, e);
        int64_t n;
        if (!v || !sv_as_int(S, v, &n, "a dimension")) return false;
        if (n <= 0 || n > ((int64_t)1 << 40)) {
            sema_error(S, e->loc, "dimension %lld of %s is out of range (1 to %lld)", (long long)n, what,
                       (long long)1 << 40);
            return false;
        }
        out->dims[i] = n;
    }
    for (int i = 0; actual && i < list->nitems; i++)
        if (actual->dims[i + off] != out->dims[i]) {
            char a[128], b[128];
            sema_error(S, list->items[i]->loc, "%s expects an input of shape %s, got %s", what,
                       ir_shape_sample(out, b, sizeof b), ir_shape_sample(actual, a, sizeof a));
            return false;
        }
    return true;
}

/* ---- calls ------------------------------------------------------------- */

static bool is_tensor_list(const sv *v)
{
    if (!v || v->kind != SV_LIST || v->n == 0) return false;
    for (int i = 0; i < v->n; i++)
        if (!v->items[i] || v->items[i]->kind != SV_TENSOR) return false;
    return true;
}

typedef struct call_args {
    sv **pos;              /* positional, after the inputs */
    int npos;
    const ast_arg **kw;    /* keyword args (AST, for keys and locations) */
    sv **kwv;
    int nkw;
    sv **inputs;
    int ninputs;
    const char *name;      /* name: "..." */
    bool trainable;
    kd_loc loc;
} call_args;

/* Evaluates a call's arguments and splits off its input tensors: a leading
 * tensor, or a leading list of tensors; otherwise the previous value. */
/* Argument i of `call`. Bidirectional(x, LSTM(8)): a wrapper's layer, given
 * as `layer:` or as its last positional argument (the inputs come before
 * it), stays a call, its arguments read when the wrapper is applied. */
static sv *eval_arg(sema *S, const ast_expr *call, int i)
{
    const ast_arg *arg = &call->args[i];
    const layer_def *callee = layer_find(call->name);
    int last = -1;
    for (int k = 0; k < call->nargs; k++)
        if (!call->args[k].key) last = k;
    bool wrapped = callee && callee->params[0].name && !strcmp(callee->params[0].name, "layer") &&
                   arg->value->kind == EXPR_CALL && layer_find(arg->value->name) &&
                   (arg->key ? !strcmp(arg->key, "layer") : i == last);
    if (!wrapped) return sema_eval(S, arg->value);
    sv *v = sv_new(S, SV_CALL, arg->value->loc);
    v->s = arg->value->name;
    v->call = arg->value;
    return v;
}

static bool eval_call_args(sema *S, const ast_expr *call, call_args *ca, bool want_inputs, bool use_prev)
{
    memset(ca, 0, sizeof *ca);
    ca->trainable = true;
    ca->loc = call->loc;
    ca->pos = kd_alloc_array(S->a, (size_t)call->nargs + 1, sizeof *ca->pos);
    ca->kw = kd_alloc_array(S->a, (size_t)call->nargs + 1, sizeof *ca->kw);
    ca->kwv = kd_alloc_array(S->a, (size_t)call->nargs + 1, sizeof *ca->kwv);
    bool ok = true;
    int first_pos = 1;
    for (int i = 0; i < call->nargs; i++) {
        const ast_arg *arg = &call->args[i];
        sv *v = eval_arg(S, call, i);
        if (!v) { ok = false; continue; }
        if (arg->key) {
            for (int k = 0; k < ca->nkw; k++)
                if (strcmp(ca->kw[k]->key, arg->key) == 0) {
                    sema_error(S, arg->loc, "argument '%s' is given twice", arg->key);
                    ok = false;
                }
            if (strcmp(arg->key, "name") == 0) {
                if (v->kind != SV_STRING && v->kind != SV_IDENT) {
                    sema_error(S, arg->loc, "name: must be a string, got %s", sv_describe(v));
                    ok = false;
                } else if (!*v->s || strlen(v->s) > 256 || strchr(v->s, '/')) {
                    sema_error(S, arg->loc, "name: must be 1 to 256 characters without '/'");
                    ok = false;
                } else ca->name = v->s;
                continue;
            }
            if (strcmp(arg->key, "trainable") == 0) {
                if (!sv_as_bool(S, v, &ca->trainable, "trainable:")) ok = false;
                continue;
            }
            ca->kw[ca->nkw] = arg;
            ca->kwv[ca->nkw++] = v;
            continue;
        }
        if (want_inputs && first_pos && (v->kind == SV_TENSOR || is_tensor_list(v))) {
            /* leading tensors are the inputs */
            if (v->kind == SV_TENSOR) {
                ca->inputs = kd_alloc_array(S->a, (size_t)call->nargs, sizeof *ca->inputs);
                int k = i;
                for (; k < call->nargs && !call->args[k].key; k++) {
                    sv *t = k == i ? v : eval_arg(S, call, k);
                    if (!t) { ok = false; break; }
                    if (t->kind != SV_TENSOR) break;
                    ca->inputs[ca->ninputs++] = t;
                }
                i = k - 1;
                first_pos = 0;
                continue;
            }
            ca->inputs = v->items;
            ca->ninputs = v->n;
            first_pos = 0;
            continue;
        }
        if (v->kind == SV_TENSOR && want_inputs) {
            sema_error(S, arg->value->loc, "a tensor can only be a leading argument (the layer's input)");
            ok = false;
            continue;
        }
        first_pos = 0;
        ca->pos[ca->npos++] = v;
    }
    if (want_inputs && ca->ninputs == 0 && use_prev) {
        if (S->prev && S->prev->poisoned) return false;
        if (S->prev && S->prev->kind == SV_LIST && S->prev->n > 0 && S->prev->items[0]->kind == SV_TENSOR) {
            sema_error(S, call->loc, "%s() has no input: the statement before gives %d values; name "
                       "them, `y, h = ...`, and pass one", call->name, S->prev->n);
            return false;
        }
        if (!S->prev || S->prev->kind != SV_TENSOR) {
            sema_error(S, call->loc, "%s() has no input: give a tensor as its first argument, or call it after a statement whose value is a tensor",
                       call->name);
            return false;
        }
        ca->inputs = kd_alloc(S->a, sizeof *ca->inputs);
        ca->inputs[0] = S->prev;
        ca->ninputs = 1;
    }
    return ok;
}

/* Parses a built-in's default text ("linear", "true", "0.99", "=pool_size"). */
static sv *default_value(sema *S, kd_instance *inst, const char *def, kd_loc loc)
{
    if (def[0] == '=') return layer_arg(inst, def + 1);
    char *end;
    if (!strcmp(def, "true") || !strcmp(def, "false")) {
        sv *v = sv_new(S, SV_BOOL, loc);
        v->i = def[0] == 't';
        return v;
    }
    if (!strcmp(def, "none")) return sv_new(S, SV_NONE, loc);
    long long i = strtoll(def, &end, 10);
    if (*end == 0) {
        sv *v = sv_new(S, SV_INT, loc);
        v->i = i;
        return v;
    }
    double f = strtod(def, &end);
    if (*end == 0) {
        sv *v = sv_new(S, SV_FLOAT, loc);
        v->f = f;
        return v;
    }
    sv *v = sv_new(S, SV_IDENT, loc);
    v->s = def;
    return v;
}

/* The innermost block call in force, up to the layer or model being
 * elaborated; NULL outside blocks. */
static kd_block_call *current_block_call(sema *S)
{
    for (sema_frame *f = S->frame; f; f = f->up) {
        if (f->block_call) return f->block_call;   /* a block's, or a user layer's own */
        if (f->inst) break;
    }
    return NULL;
}

static kd_layer *new_row(sema *S, const char *name, const char *type, kd_loc loc)
{
    kd_strset_add(S->a, S->layer_names, name);
    if (!S->layers) return NULL;
    kd_layer *row = kd_alloc(S->a, sizeof *row);
    row->name = name;
    row->type = type;
    row->loc = loc;
    row->block_call = current_block_call(S);
    kd_vec_push(S->a, S->layers, row);
    return row;
}

/* A new instance of a built-in layer, a user layer or a nested model, with
 * its arguments bound to parameters. */
static kd_instance *make_instance(sema *S, const char *callee, const layer_def *def, const ast_item *item,
                                  call_args *ca)
{
    kd_instance *inst = kd_alloc(S->a, sizeof *inst);
    inst->builtin = def;
    inst->item = item;
    inst->loc = ca->loc;
    inst->trainable = ca->trainable;
    inst->type = def ? def->name : item->kind == ITEM_MODEL ? "Functional" : item->name;
    bool ok = true;
    int nparams = 0;
    if (def) while (def->params[nparams].name) nparams++;
    else nparams = item->nparams;
    inst->nargs = nparams;
    inst->args = kd_alloc_array(S->a, (size_t)nparams + 1, sizeof *inst->args);
    inst->arg_names = kd_alloc_array(S->a, (size_t)nparams + 1, sizeof *inst->arg_names);
    for (int i = 0; i < nparams; i++) inst->arg_names[i] = def ? def->params[i].name : item->params[i].name;
    if (ca->npos > nparams) {
        sema_error(S, ca->pos[nparams]->loc, "%s takes %d argument%s besides its input, got %d", callee, nparams,
                   nparams == 1 ? "" : "s", ca->npos);
        ok = false;
    }
    for (int i = 0; i < ca->npos && i < nparams; i++) inst->args[i] = ca->pos[i];
    for (int k = 0; k < ca->nkw; k++) {
        int found = -1;
        for (int i = 0; i < nparams; i++)
            if (strcmp(inst->arg_names[i], ca->kw[k]->key) == 0) found = i;
        if (found < 0) {
            const char *known[64];
            int n = 0;
            for (int i = 0; i < nparams && n < 62; i++) known[n++] = inst->arg_names[i];
            known[n++] = "name";
            known[n++] = "trainable";
            const char *near = kd_nearest(ca->kw[k]->key, known, n);
            if (near) sema_error(S, ca->kw[k]->loc, "%s has no argument '%s'; did you mean '%s'?", callee, ca->kw[k]->key, near);
            else sema_error(S, ca->kw[k]->loc, "%s has no argument '%s'", callee, ca->kw[k]->key);
            ok = false;
        } else if (inst->args[found]) {
            sema_error(S, ca->kw[k]->loc, "argument '%s' of %s is given twice", ca->kw[k]->key, callee);
            ok = false;
        } else inst->args[found] = ca->kwv[k];
    }
    /* Defaults; built-in defaults may name an earlier parameter (strides: pool_size). */
    for (int i = 0; i < nparams && def; i++) {
        if (inst->args[i]) continue;
        if (!def->params[i].def) {
            sema_error(S, ca->loc, "%s needs argument '%s'", callee, def->params[i].name);
            ok = false;
            continue;
        }
        inst->args[i] = default_value(S, inst, def->params[i].def, ca->loc);
    }
    if (!ok) return NULL;
    const char *prefix = block_prefix(S);
    if (ca->name) {
        inst->name = *prefix ? kd_format(S->a, "%s%s", prefix, ca->name) : ca->name;
        if (name_taken(S, inst->name)) {
            sema_error(S, ca->loc, "a layer named '%s' already exists in this model", inst->name);
            return NULL;
        }
    } else {
        const char *base = item && item->kind == ITEM_MODEL ? item->name : sema_snake_case(S, inst->type);
        inst->name = sema_instance_name(S, *prefix ? kd_format(S->a, "%s%s", prefix, base) : base);
    }
    return inst;
}

static sv *apply_user(sema *S, kd_instance *inst, sv **inputs, int ninputs, kd_loc loc);

kd_instance *sema_wrapped_instance(sema *S, const sv *call, const char *wrapper, kd_loc loc)
{
    if (!call || call->kind != SV_CALL || !layer_find(call->s)) {
        sema_error(S, call ? call->loc : loc, "%s takes a layer, such as %s(LSTM(8)), not %s", wrapper, wrapper,
                   call ? sv_describe(call) : "nothing");
        return NULL;
    }
    call_args ca;
    if (!eval_call_args(S, call->call, &ca, false, false)) return NULL;
    return make_instance(S, call->s, layer_find(call->s), NULL, &ca);
}

/* ---- arguments as values, for the model's layer rows -------------------- */

static kd_value *value_of_expr(sema *S, const ast_expr *e)
{
    kd_value *v = kd_alloc(S->a, sizeof *v);
    switch (e->kind) {
    case EXPR_INT: v->kind = KD_V_INT, v->i = e->ival; break;
    case EXPR_FLOAT: v->kind = KD_V_FLOAT, v->f = e->fval; break;
    case EXPR_STRING: v->kind = KD_V_STRING, v->s = e->str; break;
    case EXPR_BOOL: v->kind = KD_V_BOOL, v->i = e->ival; break;
    case EXPR_NAME: v->kind = !strcmp(e->name, "none") ? KD_V_NONE : KD_V_NAME, v->s = e->name; break;
    case EXPR_NEG: {
        kd_value *x = value_of_expr(S, e->lhs);
        if (x->kind == KD_V_INT) v->kind = KD_V_INT, v->i = -x->i;
        else if (x->kind == KD_V_FLOAT) v->kind = KD_V_FLOAT, v->f = -x->f;
        else v->kind = KD_V_OTHER;
        break;
    }
    case EXPR_LIST:
        v->kind = KD_V_LIST;
        v->n = e->nitems;
        v->items = kd_alloc_array(S->a, (size_t)e->nitems + 1, sizeof *v->items);
        for (int i = 0; i < e->nitems; i++) v->items[i] = value_of_expr(S, e->items[i]);
        break;
    case EXPR_CALL:
        v->kind = KD_V_CALL;
        v->s = e->name;
        v->n = e->nargs;
        v->items = kd_alloc_array(S->a, (size_t)e->nargs + 1, sizeof *v->items);
        v->keys = kd_alloc_array(S->a, (size_t)e->nargs + 1, sizeof *v->keys);
        for (int i = 0; i < e->nargs; i++) {
            v->keys[i] = e->args[i].key;
            v->items[i] = value_of_expr(S, e->args[i].value);
        }
        break;
    default: v->kind = KD_V_OTHER; break;
    }
    return v;
}

static kd_value *value_of(sema *S, const sv *x)
{
    if (x && x->kind == SV_CALL) return value_of_expr(S, x->call);
    kd_value *v = kd_alloc(S->a, sizeof *v);
    switch (x ? x->kind : SV_NONE) {
    case SV_NONE: v->kind = KD_V_NONE; break;
    case SV_INT: v->kind = KD_V_INT, v->i = x->i; break;
    case SV_FLOAT: v->kind = KD_V_FLOAT, v->f = x->f; break;
    case SV_BOOL: v->kind = KD_V_BOOL, v->i = x->i; break;
    case SV_STRING: v->kind = KD_V_STRING, v->s = x->s; break;
    case SV_IDENT: v->kind = !strcmp(x->s, "none") ? KD_V_NONE : KD_V_NAME, v->s = x->s; break;
    case SV_LIST:
        v->kind = KD_V_LIST;
        v->n = x->n;
        v->items = kd_alloc_array(S->a, (size_t)x->n + 1, sizeof *v->items);
        for (int i = 0; i < x->n; i++) v->items[i] = value_of(S, x->items[i]);
        break;
    default: v->kind = KD_V_OTHER; break;
    }
    return v;
}

/* Applies an instance to its inputs; makes its summary row on the first call. */
static sv *apply_instance(sema *S, kd_instance *inst, sv **inputs, int ninputs, kd_loc loc)
{
    for (int i = 0; i < ninputs; i++)
        if (!inputs[i] || inputs[i]->kind != SV_TENSOR) {
            sema_error(S, loc, "input %d of layer '%s' is %s, not a tensor", i + 1, inst->name,
                       inputs[i] ? sv_describe(inputs[i]) : "missing");
            return NULL;
        }
    if (inst->ncalls == 0 && (inst->row = new_row(S, inst->name, inst->type, inst->loc))) {
        kd_layer *row = inst->row;
        row->builtin = inst->builtin != NULL;
        row->trainable = inst->trainable;
        if (inst->builtin) {
            row->nargs = inst->nargs;
            row->arg_names = inst->arg_names;
            row->args = kd_alloc_array(S->a, (size_t)inst->nargs + 1, sizeof *row->args);
            for (int i = 0; i < inst->nargs; i++) row->args[i] = value_of(S, inst->args[i]);
        }
    }
    if (inst->row) inst->row->ncalls++;
    kd_layer *saved_row = S->row_for_vars;
    bool saved_frozen = S->frozen;
    if (S->layers) S->row_for_vars = inst->row;
    if (!inst->trainable) S->frozen = true;
    const char *saved_layer = S->b.layer;
    kd_loc saved_loc = S->b.loc;
    S->b.layer = inst->name;
    S->b.loc = loc;
    sv *out;
    if (inst->builtin) {
        if (inst->builtin->ninputs > 0 && ninputs != inst->builtin->ninputs) {
            sema_error(S, loc, "%s takes %d input tensor%s, got %d", inst->builtin->name, inst->builtin->ninputs,
                       inst->builtin->ninputs == 1 ? "" : "s", ninputs);
            out = NULL;
        } else if (inst->builtin->ninputs < 0 && ninputs < 2) {
            sema_error(S, loc, "%s takes a list of at least 2 tensors, such as %s([a, b])", inst->builtin->name,
                       inst->builtin->name);
            out = NULL;
        } else
            out = inst->builtin->apply(S, inst, inputs, ninputs, loc);
    } else
        out = apply_user(S, inst, inputs, ninputs, loc);
    S->b.layer = saved_layer;
    S->b.loc = saved_loc;
    S->row_for_vars = saved_row;
    S->frozen = saved_frozen;
    if (!out) return NULL;
    /* the summary row: shape, inbound layers, and the producer tag of the result */
    const char *producer = kd_format(S->a, "%s[%d][0]", inst->name, inst->ncalls);
    kd_layer *row = inst->row;
    if (row) {
        ir_shape shape = out->kind == SV_TENSOR ? out->t->shape : (out->n ? out->items[0]->t->shape : (ir_shape){0});
        if (inst->ncalls == 0) row->out_shape = shape;
        if (inst->ncalls == 0 && out->kind == SV_LIST && out->n > 1) {
            row->nout_list = out->n;
            row->out_list = kd_alloc_array(S->a, (size_t)out->n, sizeof *row->out_list);
            for (int i = 0; i < out->n; i++) row->out_list[i] = out->items[i]->t->shape;
        }
        else if (!ir_shape_equal(&row->out_shape, &shape)) row->multiple_shapes = true;
        for (int i = 0; i < ninputs; i++)
            if (inputs[i]->producer) kd_vec_push(S->a, &row->inbound, (void *)inputs[i]->producer);
    }
    inst->ncalls++;
    if (out->kind == SV_TENSOR) {
        sv *r = sv_tensor(S, out->t, producer, loc);
        return r;
    }
    if (out->kind == SV_LIST && inst->builtin) {   /* several outputs (return_state): tensor i is name[call][i] */
        for (int i = 0; i < out->n; i++)
            if (out->items[i]->kind == SV_TENSOR)
                out->items[i] = sv_tensor(S, out->items[i]->t, kd_format(S->a, "%s[%d][%d]", inst->name,
                                                                          inst->ncalls - 1, i), loc);
    }
    return out;
}

static bool push_call(sema *S, const ast_item *item, kd_loc loc)
{
    for (int i = 0; i < S->call_stack.len; i++)
        if (S->call_stack.items[i] == item) {
            sema_error(S, loc, "%s '%s' calls itself (directly or through another item); recursion is not allowed",
                       item->kind == ITEM_BLOCK ? "block" : item->kind == ITEM_LAYER ? "layer" : "model", item->name);
            return false;
        }
    if (S->call_stack.len >= MAX_DEPTH) {
        sema_error(S, loc, "calls nested more than %d deep", MAX_DEPTH);
        return false;
    }
    kd_vec_push(S->a, &S->call_stack, (void *)item);
    return true;
}

/* Binds a user item's parameters: positional, keyword, then defaults. */
static bool bind_params(sema *S, const ast_item *item, sema_scope *scope, sv **args)
{
    bool ok = true;
    for (int i = 0; i < item->nparams; i++) {
        const ast_param *p = &item->params[i];
        sv *v = args ? args[i] : NULL;
        if (!v) {
            if (!p->def) {
                sema_error(S, S->b.loc, "%s needs argument '%s'", item->name, p->name);
                ok = false;
                continue;
            }
            sema_scope *saved = S->scope;
            S->scope = scope;   /* defaults may use earlier parameters */
            v = sema_eval(S, p->def);
            S->scope = saved;
            if (!v) { ok = false; continue; }
        }
        scope_bind(S, scope, p->name, v);
    }
    return ok;
}

static sv *body_result(sema *S, body_ctx *ctx, const ast_item *item, kd_loc loc)
{
    if (ctx->outputs.len == 0) {
        if (!S->prev) {
            sema_error(S, loc, "%s '%s' produces no value: end it with an output statement", 
                       item->kind == ITEM_BLOCK ? "block" : item->kind == ITEM_LAYER ? "layer" : "model", item->name);
            return NULL;
        }
        return S->prev;
    }
    if (ctx->outputs.len == 1) return ctx->outputs.items[0];
    sv *list = sv_new(S, SV_LIST, loc);
    list->items = (sv **)ctx->outputs.items;
    list->n = ctx->outputs.len;
    return list;
}

/* A user layer or a nested model: its body, in a scope of its own. */
static sv *apply_user(sema *S, kd_instance *inst, sv **inputs, int ninputs, kd_loc loc)
{
    const ast_item *item = inst->item;
    if (!push_call(S, item, loc)) return NULL;
    sema_scope scope = {0};
    sema_frame frame = {.item = item, .inst = inst, .up = S->frame};
    sema_scope *saved_scope = S->scope;
    sema_frame *saved_frame = S->frame;
    sv *saved_prev = S->prev;
    body_ctx ctx = {.kind = item->kind == ITEM_MODEL ? BODY_NESTED_MODEL : BODY_LAYER,
                    .inputs = inputs, .ninputs = ninputs, .inst = inst};
    /* A nested model names its layers and variables in its own namespace. */
    kd_strmap saved_counters = S->counters;
    const char *saved_prefix = S->var_prefix;
    kd_vec *saved_layers = S->layers;
    kd_strset *saved_names = S->layer_names;
    kd_strset nested_names = {0};
    bool again = item->kind == ITEM_MODEL && inst->ncalls > 0;   /* a shared model called again */
    if (item->kind == ITEM_MODEL) {
        memset(&S->counters, 0, sizeof S->counters);
        S->var_prefix = kd_format(S->a, "%s%s/", S->var_prefix, inst->name);
        S->layers = NULL;
        S->layer_names = &nested_names;   /* its layers' names are its own */
        S->shared_model_calls += again;
    }
    if (item->kind == ITEM_LAYER) {
        /* kdslc plot draws a user layer as a cluster of its box and the layers made inside it */
        frame.block_call = kd_alloc(S->a, sizeof *frame.block_call);
        frame.block_call->name = inst->name;
        frame.block_call->block = inst->type;
        frame.block_call->up = current_block_call(S);
        if (inst->row) inst->row->block_call = frame.block_call;
    }
    S->scope = &scope;
    S->frame = &frame;
    S->prev = NULL;
    sv *out = NULL;
    if (bind_params(S, item, &scope, inst->args)) {
        int before = S->errors;
        exec_body(S, &item->body, &ctx);
        if (S->errors == before) {
            if (ctx.next_input < ninputs)
                sema_error(S, loc, "%s '%s' takes %d input%s, got %d", item->kind == ITEM_MODEL ? "model" : "layer",
                           item->name, ctx.next_input, ctx.next_input == 1 ? "" : "s", ninputs);
            else
                out = body_result(S, &ctx, item, loc);
        }
    }
    if (item->kind == ITEM_MODEL) {
        S->shared_model_calls -= again;
        S->counters = saved_counters;
        S->var_prefix = saved_prefix;
        S->layers = saved_layers;
        S->layer_names = saved_names;
    }
    S->scope = saved_scope;
    S->frame = saved_frame;
    S->prev = saved_prev;
    S->call_stack.len--;
    if (out && out->kind == SV_LIST) {
        sema_error(S, loc, "'%s' has %d outputs; only single-output models and layers can be called", item->name, out->n);
        return NULL;
    }
    if (out && out->kind != SV_TENSOR) {
        sema_error(S, loc, "'%s' produces %s, not a tensor", item->name, sv_describe(out));
        return NULL;
    }
    return out;
}

/* A block call: its statements inlined, in a scope holding only its parameters. */
static sv *call_block(sema *S, const ast_item *item, const ast_expr *call)
{
    /* The arguments first: `b(b(x))` calls b twice in a row, not recursively. */
    call_args ca;
    if (!eval_call_args(S, call, &ca, false, false)) return NULL;
    if (!push_call(S, item, call->loc)) return NULL;
    sv *result = NULL;
    sv **args = kd_alloc_array(S->a, (size_t)item->nparams + 1, sizeof *args);
    int npos = 0;
    /* Previous value: a first positional argument that is not a tensor means
     * the previous statement's value is the block's first parameter. */
    if (item->nparams > 0 && (ca.npos == 0 || ca.pos[0]->kind != SV_TENSOR) &&
        !(ca.nkw && !strcmp(ca.kw[0]->key, item->params[0].name))) {
        if (S->prev && S->prev->poisoned) goto done;
        if (!S->prev || S->prev->kind != SV_TENSOR) {
            sema_error(S, call->loc, "block %s() has no input: pass a tensor first, or call it after a statement whose value is a tensor",
                       item->name);
            goto done;
        }
        args[npos++] = S->prev;
    }
    for (int i = 0; i < ca.npos; i++) {
        if (npos >= item->nparams) {
            sema_error(S, ca.pos[i]->loc, "block %s takes %d argument%s, got more", item->name, item->nparams,
                       item->nparams == 1 ? "" : "s");
            goto done;
        }
        args[npos++] = ca.pos[i];
    }
    for (int k = 0; k < ca.nkw; k++) {
        int found = -1;
        for (int i = 0; i < item->nparams; i++)
            if (!strcmp(item->params[i].name, ca.kw[k]->key)) found = i;
        if (found < 0) {
            const char *known[64];
            int n = 0;
            for (int i = 0; i < item->nparams && n < 63; i++) known[n++] = item->params[i].name;
            const char *near = kd_nearest(ca.kw[k]->key, known, n);
            if (near) sema_error(S, ca.kw[k]->loc, "block %s has no parameter '%s'; did you mean '%s'?", item->name, ca.kw[k]->key, near);
            else sema_error(S, ca.kw[k]->loc, "block %s has no parameter '%s'", item->name, ca.kw[k]->key);
            goto done;
        }
        if (args[found]) {
            sema_error(S, ca.kw[k]->loc, "parameter '%s' of block %s is given twice", ca.kw[k]->key, item->name);
            goto done;
        }
        args[found] = ca.kwv[k];
    }
    sema_scope scope = {0};
    sema_frame frame = {.item = item, .up = S->frame};
    if (ca.name) frame.block_prefix = kd_format(S->a, "%s%s_", block_prefix(S), ca.name);
    frame.block_call = kd_alloc(S->a, sizeof *frame.block_call);
    frame.block_call->block = item->name;
    frame.block_call->up = current_block_call(S);
    /* numbered apart from the layers' names ("\001" cannot start one) */
    frame.block_call->name = ca.name ? ca.name : sema_instance_name(S, kd_format(S->a, "\001%s", item->name)) + 1;
    sema_scope *saved_scope = S->scope;
    sema_frame *saved_frame = S->frame;
    sv *saved_prev = S->prev;
    bool saved_frozen = S->frozen;
    if (!ca.trainable) S->frozen = true;
    S->frame = &frame;
    S->prev = NULL;
    if (bind_params(S, item, &scope, args)) {
        S->scope = &scope;
        body_ctx ctx = {.kind = BODY_BLOCK};
        int before = S->errors;
        exec_body(S, &item->body, &ctx);
        if (S->errors == before) result = body_result(S, &ctx, item, call->loc);
    }
    S->scope = saved_scope;
    S->frame = saved_frame;
    S->prev = saved_prev;
    S->frozen = saved_frozen;
done:
    S->call_stack.len--;
    return result;
}

static sv *eval_call(sema *S, const ast_expr *call)
{
    const char *callee = call->name;
    /* 1. a shared instance bound to a name */
    sv *bound = scope_lookup(S->scope, callee);
    if (bound && bound->kind == SV_INSTANCE) {
        call_args ca;
        if (!eval_call_args(S, call, &ca, true, true)) return NULL;
        if (ca.npos || ca.nkw || ca.name) {
            sema_error(S, call->loc, "shared layer '%s' takes only its input tensors here; its arguments were given where it was made",
                       callee);
            return NULL;
        }
        return apply_instance(S, bound->inst, ca.inputs, ca.ninputs, call->loc);
    }
    /* 2. a tensor function */
    const function_def *fn = function_find(callee);
    if (fn) return function_call(S, fn, call);
    /* 3. a block, a user layer, a model, or a built-in layer */
    const ast_item *item = find_item(S, callee, -1);
    if (S->in_train_block && (item || layer_find(callee))) {
        sema_error(S, call->loc, "a train block's settings cannot call %s '%s'",
                   !item ? "layer" : item->kind == ITEM_BLOCK ? "block" : item->kind == ITEM_MODEL ? "model" : "layer",
                   callee);
        return NULL;
    }
    if (item && item->kind == ITEM_BLOCK) return call_block(S, item, call);
    const layer_def *def = item ? NULL : layer_find(callee);
    if (!item && !def && sema_is_setting_call(S, callee)) {
        sv *v = sv_new(S, SV_CALL, call->loc);    /* its layer argument says what it means */
        v->s = callee;
        v->call = call;
        return v;
    }
    if (!item && !def) {
        const char *near = nearest_callable(S, callee);
        if (near) sema_error(S, call->loc, "unknown layer or function '%s'; did you mean '%s'?", callee, near);
        else sema_error(S, call->loc, "unknown layer or function '%s'", callee);
        return NULL;
    }
    if (item && item == S->m->item) {
        sema_error(S, call->loc, "model '%s' cannot contain itself", callee);
        return NULL;
    }
    call_args ca;
    if (!eval_call_args(S, call, &ca, true, true)) return NULL;
    kd_instance *inst = make_instance(S, callee, def, item, &ca);
    if (!inst) return NULL;
    return apply_instance(S, inst, ca.inputs, ca.ninputs, call->loc);
}

/* `shared enc = Dense(16)`: an instance, not yet applied. */
static sv *make_shared(sema *S, const ast_expr *call)
{
    if (call->kind != EXPR_CALL) {
        sema_error(S, call->loc, "shared needs a layer call, such as shared enc = Dense(16)");
        return NULL;
    }
    const ast_item *item = find_item(S, call->name, -1);
    const layer_def *def = item ? NULL : layer_find(call->name);
    if (item && item->kind == ITEM_BLOCK) {
        sema_error(S, call->loc, "'%s' is a block; only layers and models can be shared", call->name);
        return NULL;
    }
    if (!item && !def) {
        const char *near = nearest_callable(S, call->name);
        if (near) sema_error(S, call->loc, "unknown layer '%s'; did you mean '%s'?", call->name, near);
        else sema_error(S, call->loc, "unknown layer '%s'", call->name);
        return NULL;
    }
    call_args ca;
    if (!eval_call_args(S, call, &ca, true, false)) return NULL;
    if (ca.ninputs) {
        sema_error(S, call->loc, "shared makes a layer without applying it: pass no tensor here");
        return NULL;
    }
    kd_instance *inst = make_instance(S, call->name, def, item, &ca);
    if (!inst) return NULL;
    sv *v = sv_new(S, SV_INSTANCE, call->loc);
    v->inst = inst;
    return v;
}

/* ---- expressions ------------------------------------------------------- */

/* In a loss expression, a variable whose name has `part` as its layer or
 * its own name ("dense" or "kernel" of "dense/kernel"), or NULL. */
static const char *loss_var_part(sema *S, const char *part)
{
    size_t n = strlen(part);
    for (int i = 0; S->loss_vars && i < S->m->vars.len; i++) {
        const char *name = ((const kd_var *)S->m->vars.items[i])->name, *slash = strrchr(name, '/');
        if ((!strncmp(name, part, n) && name[n] == '/') || (slash && !strcmp(slash + 1, part))) return name;
    }
    return NULL;
}

static ir_node *as_tensor(sema *S, sv *v, const ast_expr *e)
{
    if (!v || v->poisoned) return NULL;
    if (v->kind == SV_TENSOR) return v->t;
    if (v->kind == SV_INT || v->kind == SV_FLOAT) {
        S->b.loc = e->loc;
        return sema_check_node(S, ir_scalar(&S->b, v->kind == SV_INT ? (double)v->i : v->f), e->loc, "constant");
    }
    if (v->kind == SV_IDENT) {
        const char *near = scope_nearest(S, v->s);
        const char *var = loss_var_part(S, v->s);
        bool one_output = !strcmp(v->s, "y_pred") || !strcmp(v->s, "y_true") || !strcmp(v->s, "target");
        if (var)
            sema_error(S, e->loc, "'%s' is not defined; a variable is read by its name, as `%s`, in parentheses "
                       "inside a product or a matrix product (`2 * (%s)`): `/` binds as a division does", v->s, var, var);
        else if (S->loss_vars && one_output)
            sema_error(S, e->loc, "'%s' is not defined: model '%s' has %d outputs; the loss reads each by its name "
                       "and its label as NAME_true (%s, %s_true ...)", v->s, S->m->name, S->m->noutputs,
                       S->m->output_names[0], S->m->output_names[0]);
        else if (near) sema_error(S, e->loc, "'%s' is not defined; did you mean '%s'?", v->s, near);
        else sema_error(S, e->loc, "'%s' is not defined", v->s);
    } else if (v->kind == SV_LIST && v->n > 0 && v->items[0]->kind == SV_TENSOR && e->kind == EXPR_CALL)
        sema_error(S, e->loc, "expected a tensor, got the %d values %s gives: name them, as in `y, h = ...`",
                   v->n, e->name);
    else
        sema_error(S, e->loc, "expected a tensor, got %s", sv_describe(v));
    return NULL;
}

static sv *eval_binary(sema *S, const ast_expr *e)
{
    sv *l = sema_eval(S, e->lhs), *r = sema_eval(S, e->rhs);
    if (!l || !r) return NULL;
    bool lnum = l->kind == SV_INT || l->kind == SV_FLOAT, rnum = r->kind == SV_INT || r->kind == SV_FLOAT;
    if (lnum && rnum && e->op != '@') {
        /* constant folding for shape expressions and hyperparameters */
        if (l->kind == SV_INT && r->kind == SV_INT && e->op != '/') {
            sv *v = sv_new(S, SV_INT, e->loc);
            int64_t a = l->i, b = r->i, out = 0;
            bool overflow = e->op == '+' ? __builtin_add_overflow(a, b, &out)
                          : e->op == '-' ? __builtin_sub_overflow(a, b, &out)
                                         : __builtin_mul_overflow(a, b, &out);
            if (overflow) {
                sema_error(S, e->loc, "integer overflow in constant expression");
                return NULL;
            }
            v->i = out;
            return v;
        }
        if (l->kind == SV_INT && r->kind == SV_INT && e->op == '/' && r->i != 0 && l->i % r->i == 0) {
            sv *v = sv_new(S, SV_INT, e->loc);
            v->i = l->i / r->i;
            return v;
        }
        double a = l->kind == SV_INT ? (double)l->i : l->f, b = r->kind == SV_INT ? (double)r->i : r->f;
        sv *v = sv_new(S, SV_FLOAT, e->loc);
        v->f = e->op == '+' ? a + b : e->op == '-' ? a - b : e->op == '*' ? a * b : a / b;
        return v;
    }
    ir_node *a = as_tensor(S, l, e->lhs), *b = as_tensor(S, r, e->rhs);
    if (!a || !b) return NULL;
    S->b.loc = e->loc;
    ir_node *n;
    const char *what;
    switch (e->op) {
    case '+': n = ir_binary(&S->b, IR_ADD, a, b); what = "'+'"; break;
    case '-': n = ir_binary(&S->b, IR_SUB, a, b); what = "'-'"; break;
    case '*': n = ir_binary(&S->b, IR_MUL, a, b); what = "'*'"; break;
    case '/': n = ir_binary(&S->b, IR_DIV, a, b); what = "'/'"; break;
    default:
        if (b->shape.batched || b->shape.rank != 2) {
            char buf[128];
            sema_error(S, e->loc, "'@' needs a matrix on its right (a weight of shape [k, n]), got %s",
                       ir_shape_keras(&b->shape, buf, sizeof buf));
            return NULL;
        }
        n = ir_matmul(&S->b, a, b, false, false);
        what = "'@'";
        break;
    }
    n = sema_check_node(S, n, e->loc, what);
    return sv_tensor(S, n, l->kind == SV_TENSOR ? l->producer : r->producer, e->loc);
}

/* `a/b/c` written with names only: "a/b/c" into buf; false for anything else. */
static bool name_path(const ast_expr *e, char *buf, size_t size, size_t *len)
{
    if (e->kind == EXPR_NAME) {
        size_t n = strlen(e->name);
        if (*len + n + 1 > size) return false;
        memcpy(buf + *len, e->name, n + 1);
        *len += n;
        return true;
    }
    if (e->kind != EXPR_BINARY || e->op != '/' || e->rhs->kind != EXPR_NAME) return false;
    if (!name_path(e->lhs, buf, size, len) || *len + 2 > size) return false;
    buf[(*len)++] = '/';
    buf[*len] = 0;
    return name_path(e->rhs, buf, size, len);
}

/* In a loss expression, a variable read by its name: `dense/kernel` (a
 * division of names whose first is not bound), or a model's own weight `w`.
 * True when e is one (*out the read, or NULL after an error). */
static bool variable_path(sema *S, const ast_expr *e, sv **out)
{
    char path[1024];
    size_t len = 0;
    if (!S->loss_vars || !name_path(e, path, sizeof path, &len)) return false;
    const ast_expr *first = e;
    while (first->kind == EXPR_BINARY) first = first->lhs;
    if (scope_lookup(S->scope, first->name)) return false;
    const kd_var *var = kd_strmap_get(S->loss_vars, path);
    if (!var && e->kind == EXPR_NAME) return false;   /* a name: "not defined" as usual */
    *out = NULL;
    if (!var) {
        const char *known[1024];
        int n = 0;
        for (int i = 0; i < S->m->vars.len && n < 1024; i++) known[n++] = ((kd_var *)S->m->vars.items[i])->name;
        const char *near = kd_nearest(path, known, n);
        if (near) sema_error(S, e->loc, "model '%s' has no variable '%s'; did you mean '%s'?", S->m->name, path, near);
        else sema_error(S, e->loc, "model '%s' has no variable '%s'", S->m->name, path);
        return true;
    }
    if (S->no_var_reads) {
        sema_error(S, e->loc, "a metric is computed from the predictions and the labels; it cannot read the "
                   "variable '%s'", var->name);
        return true;
    }
    S->b.loc = e->loc;
    *out = sv_tensor(S, sema_check_node(S, ir_var_read(&S->b, var), e->loc, "variable"), var->name, e->loc);
    return true;
}

sv *sema_eval(sema *S, const ast_expr *e)
{
    if (!e) return NULL;
    if (++S->depth > MAX_DEPTH) {
        S->depth--;
        sema_error(S, e->loc, "expression nested more than %d deep", MAX_DEPTH);
        return NULL;
    }
    sv *v = NULL;
    switch (e->kind) {
    case EXPR_INT: v = sv_new(S, SV_INT, e->loc); v->i = e->ival; break;
    case EXPR_FLOAT: v = sv_new(S, SV_FLOAT, e->loc); v->f = e->fval; break;
    case EXPR_BOOL: v = sv_new(S, SV_BOOL, e->loc); v->i = e->ival; break;
    case EXPR_STRING: v = sv_new(S, SV_STRING, e->loc); v->s = e->str; break;
    case EXPR_TRAINING: v = sv_new(S, SV_BOOL, e->loc); v->i = S->training; break;
    case EXPR_NAME:
        v = scope_lookup(S->scope, e->name);
        if (v && v->poisoned) v = NULL;
        else if (!v && variable_path(S, e, &v)) break;
        else if (!v) {
            v = sv_new(S, SV_IDENT, e->loc);
            v->s = e->name;
        }
        break;
    case EXPR_LIST: {
        /* Every item is evaluated (each reports its own errors); one that
         * fails makes the list fail, after the loop, not in the middle of it. */
        sv *list = sv_new(S, SV_LIST, e->loc);
        list->items = kd_alloc_array(S->a, (size_t)e->nitems + 1, sizeof *list->items);
        list->n = e->nitems;
        bool ok = true;
        for (int i = 0; i < e->nitems; i++)
            if (!(list->items[i] = sema_eval(S, e->items[i]))) ok = false;
        v = ok ? list : NULL;
        break;
    }
    case EXPR_NEG: {
        sv *x = sema_eval(S, e->lhs);
        if (!x) break;
        if (x->kind == SV_INT) { v = sv_new(S, SV_INT, e->loc); v->i = -x->i; }
        else if (x->kind == SV_FLOAT) { v = sv_new(S, SV_FLOAT, e->loc); v->f = -x->f; }
        else {
            ir_node *t = as_tensor(S, x, e->lhs);
            if (!t) break;
            S->b.loc = e->loc;
            v = sv_tensor(S, sema_check_node(S, ir_unary(&S->b, IR_NEG, t), e->loc, "'-'"), x->producer, e->loc);
        }
        break;
    }
    case EXPR_BINARY:
        if (!variable_path(S, e, &v)) v = eval_binary(S, e);
        break;
    case EXPR_CALL: v = eval_call(S, e); break;
    }
    S->depth--;
    return v;
}

/* ---- loss expressions (train blocks) -------------------------------------- */

ir_graph *sema_loss_graph(sema *S, kd_model *m, const ast_expr *e, int output, bool read_vars)
{
    ir_builder saved_b = S->b;
    sema_scope *saved_scope = S->scope;
    bool saved_training = S->training;
    sv *saved_prev = S->prev;
    S->prev = NULL;           /* no previous value: a function is given its tensor */
    ir_graph *g = ir_graph_new(S->a, &m->vars);
    S->b = (ir_builder){.g = g, .loc = e->loc};
    S->training = false;      /* evaluate and validation run it; dropout() is the identity */
    sema_scope scope = {0};
    S->scope = &scope;
    for (int j = 0; j < m->noutputs; j++) {
        if (output >= 0 && j != output) continue;
        ir_attrs at = {0};
        at.index = j;
        ir_node *y = ir_leaf(&S->b, IR_INPUT, m->output_shapes[j], &at, -1);
        ir_node *t = ir_leaf(&S->b, IR_LABEL, m->output_shapes[j], &at, -1);
        scope_bind(S, &scope, m->output_names[j], sv_tensor(S, y, m->output_names[j], e->loc));
        const char *label = kd_format(S->a, "%s_true", m->output_names[j]);
        scope_bind(S, &scope, label, sv_tensor(S, t, label, e->loc));
        if (m->noutputs > 1 && output < 0) continue;
        scope_bind(S, &scope, "y_pred", sv_tensor(S, y, m->output_names[j], e->loc));
        scope_bind(S, &scope, "y_true", sv_tensor(S, t, "y_true", e->loc));
        scope_bind(S, &scope, "target", sv_tensor(S, t, "target", e->loc));
    }
    kd_strmap vars = {0};
    for (int i = 0; i < m->vars.len; i++) {
        kd_var *v = m->vars.items[i];
        kd_strmap_put(S->a, &vars, v->name, v);
    }
    S->loss_vars = &vars;
    S->no_var_reads = !read_vars;
    int errors = S->errors;
    sv *v = sema_eval(S, e);
    ir_node *loss = v ? as_tensor(S, v, e) : NULL;
    if (loss && (loss->shape.rank > 0 || loss->shape.batched)) {
        int64_t all = ((int64_t)1 << loss->shape.rank) - 1;
        loss = sema_check_node(S, ir_reduce(&S->b, IR_MEAN, loss, all, false), e->loc, "the loss' mean");
    }
    if (loss) kd_vec_push(S->a, &g->outputs, loss);
    S->loss_vars = NULL;
    S->no_var_reads = false;
    S->prev = saved_prev;
    S->scope = saved_scope;
    S->training = saved_training;
    S->b = saved_b;
    return loss && S->errors == errors ? g : NULL;
}

/* ---- statements -------------------------------------------------------- */

static kd_var *bound_state(sema *S, const char *name, body_ctx *ctx)
{
    kd_instance *inst = ctx->inst;
    const char *want = inst ? kd_format(S->a, "%s%s/%s", S->var_prefix, inst->name, name)
                            : kd_format(S->a, "%s%s", S->var_prefix, name);
    for (int i = 0; i < S->m->vars.len; i++) {
        kd_var *v = S->m->vars.items[i];
        if (strcmp(v->name, want) == 0) return v;
    }
    return NULL;
}

static bool exec_input_checked(sema *S, const ast_stmt *st, body_ctx *ctx);

static void exec_input(sema *S, const ast_stmt *st, body_ctx *ctx)
{
    if (!exec_input_checked(S, st, ctx)) {
        scope_bind(S, S->scope, st->name, poison(S, st->loc));
        S->prev = poison(S, st->loc);
    }
}

static bool exec_input_checked(sema *S, const ast_stmt *st, body_ctx *ctx)
{
    if (st->dtype && strcmp(st->dtype, "f32") != 0 && strcmp(st->dtype, "f64") != 0 && strcmp(st->dtype, "i32") != 0) {
        sema_error(S, st->loc, "unsupported input type '%s' (use f32, or i32 for integer token ids)", st->dtype);
        return false;
    }
    bool i32 = st->dtype && !strcmp(st->dtype, "i32");
    if (ctx->kind == BODY_MODEL) {
        ir_shape shape;
        if (!eval_shape(S, st->shape, NULL, &shape, "input")) return false;
        if (S->m->ninputs >= 16) {
            sema_error(S, st->loc, "a model takes at most 16 inputs");
            return false;
        }
        memmove(shape.dims + 1, shape.dims, sizeof shape.dims - sizeof shape.dims[0]);
        shape.dims[0] = IR_BATCH;
        shape.rank++;
        shape.batched = true;
        if (ir_shape_elems(&shape) < 0 || ir_shape_elems(&shape) > ((int64_t)1 << 32)) {
            sema_error(S, st->loc, "input '%s' is too large", st->name);
            return false;
        }
        if (kd_strset_has(S->layer_names, st->name)) {
            sema_error(S, st->name_loc, "input '%s' has the name of another input or layer", st->name);
            return false;
        }
        kd_strset_add(S->a, S->layer_names, st->name);
        int idx = S->m->ninputs++;
        S->m->input_shapes[idx] = shape;
        S->m->input_names[idx] = st->name;
        ir_attrs attr = {.index = idx, .i32 = i32};
        S->m->input_i32[idx] = i32;
        S->b.loc = st->loc;
        S->b.layer = st->name;
        ir_node *n = sema_check_node(S, ir_leaf(&S->b, IR_INPUT, shape, &attr, -1), st->loc, "input");
        S->b.layer = NULL;
        sv *v = sv_tensor(S, n, kd_format(S->a, "%s[0][0]", st->name), st->loc);
        if (!v) return false;
        scope_bind(S, S->scope, st->name, v);
        S->prev = v;
        return true;
    }
    sv *actual;
    if (ctx->kind == BODY_BLOCK) {
        /* in a block, `input x: [n]` checks the parameter x and binds n */
        actual = scope_lookup(S->scope, st->name);
        if (!actual || actual->kind != SV_TENSOR) {
            sema_error(S, st->loc, "block input '%s' must be a tensor parameter of the block", st->name);
            return false;
        }
    } else {
        if (ctx->next_input >= ctx->ninputs) {
            sema_error(S, st->loc, "'%s' needs input '%s', but the call passed only %d tensor%s",
                       ctx->inst->name, st->name, ctx->ninputs, ctx->ninputs == 1 ? "" : "s");
            return false;
        }
        actual = ctx->inputs[ctx->next_input++];
    }
    ir_shape shape;
    const char *what = kd_format(S->a, "%s '%s'", ctx->inst ? ctx->inst->type : "block", ctx->inst ? ctx->inst->name : st->name);
    if (st->dtype && i32 != ir_is_i32(actual->t)) {
        sema_error(S, st->loc, "%s input '%s' is declared %s, but the call passes %s tensor", what, st->name, st->dtype,
                   ir_is_i32(actual->t) ? "an integer (i32)" : "a real");
        return false;
    }
    if (!eval_shape(S, st->shape, &actual->t->shape, &shape, what)) return false;
    scope_bind(S, S->scope, st->name, actual);
    S->prev = actual;
    return true;
}

static bool exec_variable_checked(sema *S, const ast_stmt *st, body_ctx *ctx);

static void exec_variable(sema *S, const ast_stmt *st, body_ctx *ctx)
{
    if (!exec_variable_checked(S, st, ctx)) scope_bind(S, S->scope, st->name, poison(S, st->loc));
}

static bool exec_variable_checked(sema *S, const ast_stmt *st, body_ctx *ctx)
{
    bool is_state = st->kind == STMT_STATE;
    if (ctx->kind == BODY_BLOCK) {
        sema_error(S, st->loc, "a block cannot declare %ss; declare them in a layer", is_state ? "state" : "weight");
        return false;
    }
    if (ctx->in_if) {
        sema_error(S, st->loc, "%s declarations cannot be inside 'if training'", is_state ? "state" : "weight");
        return false;
    }
    ir_shape shape;
    if (!eval_shape(S, st->shape, NULL, &shape, is_state ? "state" : "weight")) return false;
    kd_init init = {.kind = is_state ? INIT_ZEROS : INIT_GLOROT_UNIFORM};
    if (st->init && !init_from_expr(S, st->init, &init)) return false;
    bool trainable = !is_state;
    for (int i = 0; i < st->nargs; i++) {
        const ast_arg *arg = &st->args[i];
        if (!arg->key || strcmp(arg->key, "trainable") != 0) {
            sema_error(S, arg->loc, "%s declarations take only 'trainable:'", is_state ? "state" : "weight");
            return false;
        }
        sv *v = sema_eval(S, arg->value);
        if (!v || !sv_as_bool(S, v, &trainable, "trainable:")) return false;
        if (is_state && trainable) {
            sema_error(S, arg->loc, "a state is never trainable; use weight");
            return false;
        }
    }
    kd_var *var = sema_new_var(S, ctx->inst, st->name, is_state ? VAR_STATE : VAR_WEIGHT, shape, init, trainable, st->loc);
    if (!var) return false;
    S->b.loc = st->loc;
    ir_node *n = sema_check_node(S, ir_var_read(&S->b, var), st->loc, "variable");
    sv *v = sv_tensor(S, n, NULL, st->loc);
    if (!v) return false;
    scope_bind(S, S->scope, st->name, v);
    return true;
}

static void exec_update(sema *S, const ast_stmt *st, body_ctx *ctx)
{
    kd_var *var = bound_state(S, st->name, ctx);
    if (!var || var->kind != VAR_STATE) {
        sema_error(S, st->name_loc, "'%s' is not a state of this %s; declare it with state %s: [..]", st->name,
                   ctx->kind == BODY_LAYER ? "layer" : "model", st->name);
        return;
    }
    sv *v = sema_eval(S, st->expr);
    if (!v) return;
    ir_node *t = as_tensor(S, v, st->expr);
    if (!t) return;
    if (!ir_shape_equal(&t->shape, &var->shape)) {
        char a[128], b[128];
        sema_error(S, st->loc, "update of '%s' has shape %s, but the state has shape %s", st->name,
                   ir_shape_keras(&t->shape, a, sizeof a), ir_shape_keras(&var->shape, b, sizeof b));
        return;
    }
    if (!S->training) return;   /* updates happen in training steps only */
    ir_update *u = kd_alloc(S->a, sizeof *u);
    u->var = var->index;
    u->value = t;
    kd_vec_push(S->a, &S->b.g->updates, u);
}

static void too_much_memory(sema *S, kd_loc loc)
{
    sema_error(S, loc, "model too large: compiling it needs more than %zu MiB of memory", MAX_COMPILER_BYTES >> 20);
    S->budget = -2;            /* every later statement returns at once */
    S->program_budget = 0;
}

static void exec_stmt(sema *S, const ast_stmt *st, body_ctx *ctx)
{
    if (S->a->used > MAX_COMPILER_BYTES && S->budget >= 0) {
        too_much_memory(S, st->loc);
        return;
    }
    if (--S->budget < 0) {
        if (S->budget == -1 && S->budget_is_program)
            sema_error(S, st->loc, "program too large: more than %d statements after expanding repeat, "
                       "in all its models together", MAX_PROGRAM_STATEMENTS);
        else if (S->budget == -1)
            sema_error(S, st->loc, "model too large: more than %d statements after expanding repeat", MAX_STATEMENTS);
        return;
    }
    S->b.loc = st->loc;
    switch (st->kind) {
    case STMT_INPUT:
        exec_input(S, st, ctx);
        break;
    case STMT_ASSIGN: {
        sv *v = sema_eval(S, st->expr);
        if (v && v->kind == SV_IDENT) {
            /* `h = x` where x is unknown */
            as_tensor(S, v, st->expr);
            v = NULL;
        }
        if (v && st->nnames > 1 && (v->kind != SV_LIST || v->n != st->nnames)) {
            /* `y, h = LSTM(x, 8, return_state: true)`: one name per value */
            if (v->kind == SV_LIST)
                sema_error(S, st->loc, "%d names for the %d values %s gives", st->nnames, v->n,
                           st->expr->kind == EXPR_CALL ? st->expr->name : "the right side");
            else
                sema_error(S, st->loc, "%d names for one value: only a layer with several outputs (such as an "
                                       "LSTM with return_state: true) gives several", st->nnames);
            v = NULL;
        }
        if (!v) {
            for (int i = 0; i < (st->nnames > 1 ? st->nnames : 1); i++)
                scope_bind(S, S->scope, st->nnames > 1 ? st->names[i] : st->name, poison(S, st->loc));
            S->prev = poison(S, st->loc);
            return;
        }
        if (st->nnames > 1) {
            for (int i = 0; i < st->nnames; i++) scope_bind(S, S->scope, st->names[i], v->items[i]);
            S->prev = v->items[0];
            break;
        }
        scope_bind(S, S->scope, st->name, v);
        S->prev = v;
        break;
    }
    case STMT_EXPR: {
        sv *v = sema_eval(S, st->expr);
        if (v && v->kind == SV_IDENT) {
            as_tensor(S, v, st->expr);
            v = NULL;
        }
        if (!v) {
            S->prev = poison(S, st->loc);
            return;
        }
        S->prev = v;
        break;
    }
    case STMT_OUTPUT: {
        {
            sv *v = sema_eval(S, st->expr);
            if (!v || !as_tensor(S, v, st->expr)) {
                if (st->name) scope_bind(S, S->scope, st->name, poison(S, st->loc));
                S->prev = poison(S, st->loc);
                return;
            }
            if (v->kind != SV_TENSOR) v = sv_tensor(S, as_tensor(S, v, st->expr), NULL, st->loc);
            if (ctx->kind == BODY_MODEL && ir_is_i32(v->t)) {
                sema_error(S, st->loc, "a model's outputs are real, and this one is an integer (i32) input; "
                                       "token ids go to an Embedding");
                S->prev = poison(S, st->loc);
                return;
            }
            kd_vec_push(S->a, &ctx->outputs, v);
            kd_vec_push(S->a, &ctx->output_names, (void *)st->name);
            if (st->name) scope_bind(S, S->scope, st->name, v);
            S->prev = v;
        }
        break;
    }
    case STMT_REPEAT: {
        sv *n = sema_eval(S, st->expr);
        int64_t count;
        if (!n || !sv_as_int(S, n, &count, "repeat count")) return;
        if (count < 0 || count > 1000000) {
            sema_error(S, st->expr->loc, "repeat count %lld is out of range (0 to 1000000)", (long long)count);
            return;
        }
        for (int64_t i = 0; i < count && S->errors == 0 && S->budget >= 0; i++) exec_body(S, &st->body, ctx);
        break;
    }
    case STMT_SHARED: {
        sv *v = make_shared(S, st->expr);
        if (v) scope_bind(S, S->scope, st->name, v);
        break;
    }
    case STMT_WEIGHT:
    case STMT_STATE:
        exec_variable(S, st, ctx);
        break;
    case STMT_UPDATE:
        if (ctx->kind == BODY_BLOCK) {
            sema_error(S, st->loc, "a block cannot update state; do it in a layer");
            return;
        }
        exec_update(S, st, ctx);
        break;
    case STMT_IF: {
        if (ctx->kind != BODY_LAYER && ctx->kind != BODY_MODEL && ctx->kind != BODY_NESTED_MODEL) {
            sema_error(S, st->loc, "'if training' belongs in a layer body");
            return;
        }
        if (st->expr && st->expr->kind != EXPR_TRAINING) {
            sv *c = sema_eval(S, st->expr);
            bool cond;
            if (!c || !sv_as_bool(S, c, &cond, "the condition of if")) return;
            body_ctx inner = *ctx;
            inner.in_if = true;
            exec_body(S, cond ? &st->body : &st->else_body, &inner);
            ctx->outputs = inner.outputs;
            ctx->output_names = inner.output_names;
            ctx->next_input = inner.next_input;
            return;
        }
        body_ctx inner = *ctx;
        inner.in_if = true;
        if (S->training) exec_body(S, &st->body, &inner);
        else if (st->has_else) exec_body(S, &st->else_body, &inner);
        ctx->outputs = inner.outputs;
        ctx->output_names = inner.output_names;
        ctx->next_input = inner.next_input;
        break;
    }
    }
}

static void exec_body(sema *S, const ast_body *body, body_ctx *ctx)
{
    for (int i = 0; i < body->nstmts; i++) {
        int before = S->errors;
        exec_stmt(S, body->stmts[i], ctx);
        /* After an error, later statements of the same body are still checked
         * only if they do not depend on what failed; a simple rule is to stop
         * at the first error in unrolled repeats but keep going otherwise. */
        if (S->errors > before && S->budget < 0) return;
    }
}

/* ---- models ------------------------------------------------------------ */

static bool is_chain(const kd_model *m)
{
    if (m->ninputs != 1 || m->noutputs != 1) return false;
    const char *prev = kd_format((kd_arena *)m->train->arena, "%s[0][0]", m->input_names[0]);
    for (int i = 0; i < m->layers.len; i++) {
        const kd_layer *row = m->layers.items[i];
        if (row->inbound.len != 1) return false;
        const char *in = row->inbound.items[0];
        size_t n = strlen(prev);
        if (strncmp(in, prev, n) != 0) return false;
        prev = kd_format((kd_arena *)m->train->arena, "%s[0][0]", row->name);
    }
    return true;
}

static kd_model *elaborate_body(sema *S, const ast_item *item, bool training, kd_model *m)
{
    S->m = m;
    S->training = training;
    S->counters = (kd_strmap){0};
    S->var_prefix = "";
    S->layers = &m->layers;
    S->layer_names = kd_alloc(S->a, sizeof *S->layer_names);
    S->var_names = (kd_strset){0};
    S->frame = NULL;
    S->depth = 0;
    S->prev = NULL;
    S->row_for_vars = NULL;
    S->frozen = false;
    /* The training elaboration (the one that reports) draws on the
     * program's budget; the inference one repeats the same statements. */
    S->budget = MAX_STATEMENTS;
    S->budget_is_program = training && S->program_budget < MAX_STATEMENTS;
    if (S->budget_is_program) S->budget = S->program_budget;
    int64_t budget_start = S->budget;
    S->call_stack = (kd_vec){0};
    S->errors = 0;
    ir_graph *g = ir_graph_new(S->a, &m->vars);
    if (training) m->train = g;
    else m->infer = g;
    memset(&S->b, 0, sizeof S->b);
    S->b.g = g;
    S->b.loc = item->loc;
    sema_scope scope = {0};
    sema_frame frame = {.item = item};
    S->scope = &scope;
    S->frame = &frame;
    kd_vec_push(S->a, &S->call_stack, (void *)item);
    if (!bind_params(S, item, &scope, NULL)) return NULL;
    body_ctx ctx = {.kind = BODY_MODEL};
    exec_body(S, &item->body, &ctx);
    if (training) S->program_budget -= budget_start - (S->budget > 0 ? S->budget : 0);
    if (S->errors) return NULL;
    if (m->ninputs == 0) {
        sema_error(S, item->name_loc, "model '%s' has no input; declare one with input x: [784]", item->name);
        return NULL;
    }
    if (ctx.outputs.len == 0) {
        if (!S->prev || S->prev->kind != SV_TENSOR) {
            sema_error(S, item->name_loc, "model '%s' computes no tensor to output", item->name);
            return NULL;
        }
        kd_vec_push(S->a, &ctx.outputs, S->prev);
        kd_vec_push(S->a, &ctx.output_names, NULL);
    }
    if (ctx.outputs.len > 16) {
        sema_error(S, item->name_loc, "a model has at most 16 outputs");
        return NULL;
    }
    m->noutputs = ctx.outputs.len;
    for (int i = 0; i < ctx.outputs.len; i++) {
        sv *o = ctx.outputs.items[i];
        if (ir_is_i32(o->t)) {
            sema_error(S, o->loc, "a model's outputs are real, and its last value is an integer (i32) input; "
                                  "token ids go to an Embedding");
            return NULL;
        }
        kd_vec_push(S->a, &g->outputs, o->t);
        m->output_shapes[i] = o->t->shape;
        m->output_names[i] = ctx.output_names.items[i] ? ctx.output_names.items[i]
                                                       : (ctx.outputs.len == 1 ? "output" : kd_format(S->a, "output_%d", i));
    }
    return m;
}

/* Elaborates a model; after it, nothing of the sema state points into its
 * stack frames (its scope, its frame) or into the model's row table. */
static kd_model *elaborate(sema *S, const ast_item *item, bool training, kd_model *m)
{
    kd_model *r = elaborate_body(S, item, training, m);
    S->scope = NULL;
    S->frame = NULL;
    S->layers = NULL;
    return r;
}

static kd_model *check_model(sema *S, const ast_item *item)
{
    kd_model *m = kd_alloc(S->a, sizeof *m);
    m->name = item->name;
    m->item = item;
    if (!elaborate(S, item, true, m)) return NULL;
    /* The inference graph: the same program with `training` false. Its
     * variables are made again in the same order; keep the first table. */
    kd_model shadow = {0};
    shadow.name = m->name;
    shadow.item = item;
    S->quiet = true;
    kd_model *ok = elaborate(S, item, false, &shadow);
    S->quiet = false;
    S->m = m; /* not this frame's shadow */
    if (!ok || shadow.vars.len != m->vars.len) {
        if (S->a->used > MAX_COMPILER_BYTES)
            too_much_memory(S, item->name_loc);
        else
            sema_error(S, item->name_loc, "model '%s' declares different variables in training and inference", item->name);
        return NULL;
    }
    m->infer = shadow.infer;
    m->infer->vars = &m->vars;
    m->train->vars = &m->vars;
    for (int i = 0; i < m->vars.len; i++) {
        kd_var *v = m->vars.items[i];
        if (v->trainable) m->trainable_params += ir_shape_elems(&v->shape);
        else m->nontrainable_params += ir_shape_elems(&v->shape);
    }
    m->functional = !is_chain(m);
    return m;
}

/* ---- memory bound ---------------------------------------------------------- */

uint64_t kd_memory_limit(const char **why)
{
    const char *env = getenv("KDSL_MAX_BYTES");
    if (why) *why = NULL;
    if (!env || !*env) return KD_DEFAULT_MAX_BYTES;
    char *end;
    errno = 0;
    double v = strtod(env, &end);
    double unit = 1;
    switch (*end) {
    case 'k': case 'K': unit = 0x1p10; end++; break;
    case 'm': case 'M': unit = 0x1p20; end++; break;
    case 'g': case 'G': unit = 0x1p30; end++; break;
    case 't': case 'T': unit = 0x1p40; end++; break;
    }
    if (unit > 1 && (*end == 'i' || *end == 'I') && (end[1] == 'b' || end[1] == 'B')) end += 2;
    else if (unit > 1 && (*end == 'b' || *end == 'B')) end++;
    if (end == env || *end || errno || !(v > 0) || v * unit >= 0x1p63) {
        if (why) *why = "KDSL_MAX_BYTES is not a size such as 4294967296, 512M or 16GiB";
        return KD_DEFAULT_MAX_BYTES;
    }
    return (uint64_t)(v * unit);
}

/* "1.5 GiB" */
static const char *human_bytes(double b, char *buf, size_t n)
{
    static const char *const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"};
    int u = 0;
    while (b >= 1024 && u < 8) {
        b /= 1024;
        u++;
    }
    snprintf(buf, n, u && b < 100 ? "%.3g %s" : "%.0f %s", b, units[u]);
    return buf;
}

/* The memory a model certainly needs, checked against kd_memory_limit() at
 * compile time, so that a huge shape is a clear error here and not a failed
 * allocation (or an overflowing size computation) in generated code later:
 * every single tensor of the forward graphs at the batch given, and all
 * variables together, as float32 (f64 code needs twice as much). Liveness
 * and the backward pass only add to that, so these bounds never reject a
 * model that would fit. One error per model (model.h). */
bool kd_check_memory(const kd_model *m, int64_t batch, kd_diags *d)
{
    const char *bad_env;
    uint64_t limit = kd_memory_limit(&bad_env);
    if (bad_env) {
        kd_error(d, (kd_loc){0}, "%s", bad_env);
        return false;
    }
    char shape[128], need[32], lim[32];
    const ir_graph *graphs[2] = {m->train, m->infer};
    for (int gi = 0; gi < 2; gi++) {
        if (!graphs[gi]) continue;
        for (int i = 0; i < graphs[gi]->nodes.len; i++) {
            const ir_node *n = graphs[gi]->nodes.items[i];
            int64_t elems = ir_shape_elems(&n->shape);
            uint64_t bytes;
            bool overflow = elems < 0 ||
                            __builtin_mul_overflow((uint64_t)elems, (uint64_t)(n->shape.batched ? batch : 1), &bytes) ||
                            __builtin_mul_overflow(bytes, (uint64_t)4, &bytes);
            if (!overflow && bytes <= limit) continue;
            ir_shape_keras(&n->shape, shape, sizeof shape);
            kd_loc loc = n->loc.src ? n->loc : m->item->name_loc;
            if (overflow)
                kd_error(d, loc, "model too large: a tensor of shape %s has more elements than 64 bits can count", shape);
            else
                kd_error(d, loc, "model too large: a tensor of shape %s needs %s%s%.0lld (float32), more than "
                         "the memory limit of %s (KDSL_MAX_BYTES)", shape, human_bytes((double)bytes, need, sizeof need),
                         n->shape.batched ? " at batch " : "", n->shape.batched ? (long long)batch : 0LL,
                         human_bytes((double)limit, lim, sizeof lim));
            return false;
        }
    }
    uint64_t total = 0;
    for (int i = 0; i < m->vars.len; i++) {
        const kd_var *v = m->vars.items[i];
        int64_t elems = ir_shape_elems(&v->shape);
        if (elems < 0 || __builtin_add_overflow(total, 4 * (uint64_t)elems, &total)) total = UINT64_MAX;
    }
    if (total > limit) {
        kd_error(d, m->item->name_loc, "model too large: its %d variables need %s (float32), more than the memory "
                 "limit of %s (KDSL_MAX_BYTES)", m->vars.len, human_bytes((double)total, need, sizeof need),
                 human_bytes((double)limit, lim, sizeof lim));
        return false;
    }
    return true;
}

/* At the batch codegen defaults to: the train block's batch_size, else 32. */
static void check_memory(sema *S, kd_model *m)
{
    int64_t batch = m->config.present && m->config.batch_size > 0 ? m->config.batch_size : 32;
    if (!kd_check_memory(m, batch, S->d)) S->errors++;
}

kd_model *kd_find_model(kd_program *p, const char *name)
{
    if (!p || p->models.len == 0) return NULL;
    if (!name) return p->models.items[p->models.len - 1];
    for (int i = 0; i < p->models.len; i++) {
        kd_model *m = p->models.items[i];
        if (strcmp(m->name, name) == 0) return m;
    }
    return NULL;
}

static const char *item_kind_name(ast_item_kind k)
{
    return k == ITEM_LAYER ? "layer" : k == ITEM_BLOCK ? "block" : k == ITEM_MODEL ? "model" : "train";
}

kd_program *kd_check(kd_arena *a, ast_program *ast, kd_diags *d, const char *only)
{
    if (!ast) return NULL;
    sema S = {.a = a, .d = d, .ast = ast, .program_budget = MAX_PROGRAM_STATEMENTS};
    int total_errors = 0;
    /* names: unique among items, and not a built-in's */
    for (int i = 0; i < ast->nitems; i++) {
        const ast_item *it = ast->items[i];
        if (!it->name || it->kind == ITEM_TRAIN) continue;
        if (it->kind == ITEM_MODEL && !kd_strmap_get(&S.models, it->name))
            kd_strmap_put(a, &S.models, it->name, (void *)it);
        const ast_item *o = kd_strmap_get(&S.items, it->name);
        if (o) {
            kd_error(d, it->name_loc, "%s '%s' is already defined", item_kind_name(it->kind), it->name);
            kd_note(d, o->name_loc, "the first definition of '%s' is here", it->name);
            total_errors++;
        } else {
            kd_strmap_put(a, &S.items, it->name, (void *)it);
        }
        if (it->kind != ITEM_MODEL && (layer_find(it->name) || function_find(it->name))) {
            kd_error(d, it->name_loc, "'%s' is the name of a built-in; choose another name", it->name);
            total_errors++;
        }
    }
    if (only && !find_item(&S, only, ITEM_MODEL)) {
        const char *known[256];
        int n = 0;
        for (int i = 0; i < ast->nitems && n < 256; i++)
            if (ast->items[i]->kind == ITEM_MODEL) known[n++] = ast->items[i]->name;
        const char *near = kd_nearest(only, known, n);
        kd_error(d, (kd_loc){0}, "no model named '%s' in %s%s%s%s", only, ast->src->path, near ? "; did you mean '" : "",
                 near ? near : "", near ? "'?" : "");
        return NULL;
    }
    kd_program *p = kd_alloc(a, sizeof *p);
    p->ast = ast;
    for (int i = 0; i < ast->nitems; i++) {
        const ast_item *it = ast->items[i];
        if (it->kind != ITEM_MODEL || !it->name) continue;
        if (only && strcmp(only, it->name) != 0) continue;
        kd_model *m = check_model(&S, it);
        total_errors += S.errors;
        if (m) kd_vec_push(a, &p->models, m);
    }
    /* train blocks: attach to their models. Their values are constants: no
     * names are in scope (and the last model's scope and frame, which lived
     * on elaborate()'s stack, are gone). */
    sema_scope no_names = {0};
    S.scope = &no_names;
    S.frame = NULL;
    for (int i = 0; i < ast->nitems; i++) {
        const ast_item *it = ast->items[i];
        if (it->kind != ITEM_TRAIN) continue;
        const ast_item *target = find_item(&S, it->name, ITEM_MODEL);
        if (!target) {
            const char *known[256];
            int n = 0;
            for (int k = 0; k < ast->nitems && n < 256; k++)
                if (ast->items[k]->kind == ITEM_MODEL) known[n++] = ast->items[k]->name;
            const char *near = kd_nearest(it->name, known, n);
            if (near) kd_error(d, it->name_loc, "train block for unknown model '%s'; did you mean '%s'?", it->name, near);
            else kd_error(d, it->name_loc, "train block for unknown model '%s'", it->name);
            total_errors++;
            continue;
        }
        if (only && strcmp(only, it->name) != 0) continue;
        kd_model *m = kd_find_model(p, it->name);
        if (!m) continue;
        if (m->config.present) {
            kd_error(d, it->name_loc, "model '%s' has two train blocks", it->name);
            total_errors++;
            continue;
        }
        S.errors = 0;
        S.m = m;
        S.in_train_block = true;
        sema_train_config(&S, m, it);
        S.in_train_block = false;
        total_errors += S.errors;
    }
    /* Sizes, once the batch size of each model is known. */
    for (int i = 0; i < p->models.len && !total_errors; i++) {
        S.errors = 0;
        check_memory(&S, p->models.items[i]);
        total_errors += S.errors;
    }
    if (total_errors || d->errors) return NULL;
    if (p->models.len == 0) {
        kd_error(d, (kd_loc){0}, "%s defines no model", ast->src->path);
        return NULL;
    }
    return p;
}
