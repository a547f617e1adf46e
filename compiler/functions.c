/* functions.c — the tensor functions of KDSL (lowercase): no weights and no
 * summary rows; each one emits its ops directly. */
#include "sema_internal.h"

#include <string.h>

ir_node *sema_reshape(sema *S, ir_node *x, const sv *target, kd_loc loc);
ir_node *sema_concat(sema *S, ir_node **xs, int n, int64_t axis, kd_loc loc);
ir_node *sema_dropout(sema *S, ir_node *x, double rate, kd_loc loc);

typedef enum fn_kind { FN_UNARY, FN_ACT, FN_SOFTMAX, FN_REDUCE, FN_RESHAPE, FN_TRANSPOSE, FN_CONCAT, FN_DROPOUT } fn_kind;

struct function_def {
    const char *name;
    fn_kind kind;
    ir_op op;
    const char *params[3];  /* names after the tensor, in positional order */
};

/* The activations come from their table (runtime/activations.h): a function per
 * name and per alias; gelu's two rows share the name (FN_ACT picks the row). */
#define FN_ACT_NAME(NAME, op, name, alias, kind, arg, def, from, f, df) {name, FN_ACT, IR_##NAME, {arg}},
#define FN_ACT_ALIAS(NAME, op, name, alias, kind, arg, def, from, f, df) {alias, FN_ACT, IR_##NAME, {arg}},
static const function_def act_functions[] = { KDA_LIST(FN_ACT_NAME) KDA_LIST(FN_ACT_ALIAS) };
#undef FN_ACT_NAME
#undef FN_ACT_ALIAS

static const function_def functions[] = {
    {"exp", FN_UNARY, IR_EXP, {0}},
    {"log", FN_UNARY, IR_LOG, {0}},         {"sqrt", FN_UNARY, IR_SQRT, {0}},
    {"square", FN_UNARY, IR_SQUARE, {0}},   {"abs", FN_UNARY, IR_ABS, {0}},
    {"softmax", FN_SOFTMAX, IR_SOFTMAX, {"axis"}},
    {"log_softmax", FN_SOFTMAX, IR_LOG_SOFTMAX, {"axis"}},
    {"sum", FN_REDUCE, IR_SUM, {"axis", "keepdims"}},
    {"mean", FN_REDUCE, IR_MEAN, {"axis", "keepdims"}},
    {"max", FN_REDUCE, IR_MAX, {"axis", "keepdims"}},
    {"reshape", FN_RESHAPE, IR_RESHAPE, {"shape"}},
    {"transpose", FN_TRANSPOSE, IR_TRANSPOSE, {"perm"}},
    {"concat", FN_CONCAT, IR_CONCAT, {"axis"}},
    {"dropout", FN_DROPOUT, IR_MUL, {"rate"}},
};

#define COUNT(a) (sizeof a / sizeof a[0])

const function_def *function_find(const char *name)
{
    for (size_t i = 0; i < COUNT(functions); i++)
        if (strcmp(functions[i].name, name) == 0) return &functions[i];
    for (size_t i = 0; i < COUNT(act_functions); i++)
        if (act_functions[i].name && strcmp(act_functions[i].name, name) == 0) return &act_functions[i];
    return NULL;
}

int function_names(const char **out, int max)
{
    int n = 0;
    for (size_t i = 0; i < COUNT(act_functions) && n < max; i++) {
        const char *name = act_functions[i].name;
        bool seen = !name;
        for (int k = 0; k < n && !seen; k++) seen = !strcmp(out[k], name);
        if (!seen) out[n++] = name;
    }
    for (size_t i = 0; i < COUNT(functions) && n < max; i++) out[n++] = functions[i].name;
    return n;
}

/* An activation call: its argument (a number, or gelu's boolean that picks the row). */
static ir_node *activation_call(sema *S, const function_def *f, ir_node *t, sv *arg, kd_loc loc)
{
    int act = ir_act_of(f->op);
    const ir_act_info *r = &ir_acts[act];
    double v = r->def;
    if (arg && r->kind == KDA_KIND_REAL && !sv_as_number(S, arg, &v, kd_format(S->a, "%s() argument '%s'", f->name, r->arg)))
        return NULL;
    if (arg && r->kind == KDA_KIND_FLAG) {
        bool on;
        if (!sv_as_bool(S, arg, &on, kd_format(S->a, "%s() argument '%s'", f->name, r->arg))) return NULL;
        for (int k = 1; k < IR_ACT_COUNT; k++)
            if (!strcmp(ir_acts[k].name, r->name) && ir_acts[k].def == (on ? 1 : 0)) act = k;
    }
    return sema_check_node(S, ir_act(&S->b, act, t, v), loc, f->name);
}

#define NODE(expr) sema_check_node(S, (expr), call->loc, f->name)

sv *function_call(sema *S, const function_def *f, const ast_expr *call)
{
    sv *x = NULL;              /* the tensor (or list of tensors, for concat) */
    sv *args[3] = {0};
    int next = 0;
    for (int i = 0; i < call->nargs; i++) {
        const ast_arg *arg = &call->args[i];
        sv *v = sema_eval(S, arg->value);
        if (!v) return NULL;
        if (arg->key) {
            int k = 0;
            while (k < 3 && f->params[k] && strcmp(f->params[k], arg->key) != 0) k++;
            if (k == 3 || !f->params[k]) {
                int n = 0;
                while (n < 3 && f->params[n]) n++;
                const char *near = kd_nearest(arg->key, f->params, n);
                if (near) sema_error(S, arg->loc, "%s() has no argument '%s'; did you mean '%s'?", f->name, arg->key, near);
                else sema_error(S, arg->loc, "%s() has no argument '%s'", f->name, arg->key);
                return NULL;
            }
            if (args[k]) {
                sema_error(S, arg->loc, "argument '%s' of %s() is given twice", arg->key, f->name);
                return NULL;
            }
            args[k] = v;
            continue;
        }
        if (i == 0 && (v->kind == SV_TENSOR || (f->kind == FN_CONCAT && v->kind == SV_LIST))) {
            x = v;
            continue;
        }
        if (i == 0 && v->kind == SV_IDENT && !S->prev) {
            /* no previous value to take: a name meant as the input */
            sema_error(S, arg->loc, "%s(): '%s' is not defined", f->name, v->s);
            return NULL;
        }
        if (next >= 3 || !f->params[next]) {
            sema_error(S, arg->loc, "too many arguments to %s()", f->name);
            return NULL;
        }
        args[next++] = v;
    }
    if (!x) {
        /* previous value */
        if (S->prev && S->prev->poisoned) return NULL;
        if (!S->prev || S->prev->kind != SV_TENSOR) {
            sema_error(S, call->loc, "%s() needs a tensor as its first argument", f->name);
            return NULL;
        }
        x = S->prev;
    }
    if (f->kind != FN_CONCAT && x->kind != SV_TENSOR) {
        sema_error(S, call->loc, "%s() needs a tensor, got %s", f->name, sv_describe(x));
        return NULL;
    }
    const char *producer = x->kind == SV_TENSOR ? x->producer : NULL;
    ir_node *t = x->kind == SV_TENSOR ? x->t : NULL, *y = NULL;
    S->b.loc = call->loc;
    switch (f->kind) {
    case FN_UNARY:
        y = NODE(ir_unary(&S->b, f->op, t));
        break;
    case FN_ACT:
        y = activation_call(S, f, t, args[0], call->loc);
        break;
    case FN_SOFTMAX: {
        int64_t axis = -1;
        if (args[0] && !sv_as_int(S, args[0], &axis, "axis")) return NULL;
        int a = sema_axis(S, axis, t->shape.rank, call->loc);
        if (a < 0) return NULL;
        if (a == 0 && t->shape.batched) {
            sema_error(S, call->loc, "%s over the batch axis is not supported", f->name);
            return NULL;
        }
        ir_attrs attr = {.axis = a};
        y = NODE(ir_make(&S->b, f->op, 1, &t, &attr));
        break;
    }
    case FN_REDUCE: {
        int64_t mask = 0;
        int rank = t->shape.rank;
        if (!args[0] || args[0]->kind == SV_NONE) {
            mask = ((int64_t)1 << rank) - 1;        /* no axis: everything, the batch included */
        } else {
            sv *ax = args[0];
            int n = ax->kind == SV_LIST ? ax->n : 1;
            for (int i = 0; i < n; i++) {
                int64_t v;
                if (!sv_as_int(S, ax->kind == SV_LIST ? ax->items[i] : ax, &v, "axis")) return NULL;
                int a = sema_axis(S, v, rank, call->loc);
                if (a < 0) return NULL;
                mask |= (int64_t)1 << a;
            }
        }
        bool keep = false;
        if (args[1] && !sv_as_bool(S, args[1], &keep, "keepdims")) return NULL;
        y = NODE(ir_reduce(&S->b, f->op, t, mask, keep));
        break;
    }
    case FN_RESHAPE:
        y = sema_reshape(S, t, args[0], call->loc);
        break;
    case FN_TRANSPOSE: {
        sv *p = args[0];
        int rank = t->shape.rank;
        ir_attrs attr = {0};
        if (!p) {
            /* no perm: reverse the per-sample axes, keeping the batch first */
            int off = t->shape.batched ? 1 : 0;
            for (int i = 0; i < rank; i++) attr.perm[i] = i < off ? i : rank - 1 - (i - off);
        } else {
            if (p->kind != SV_LIST || p->n != rank) {
                sema_error(S, p->loc, "transpose needs a permutation of all %d axes (the batch is axis 0)", rank);
                return NULL;
            }
            int seen = 0;
            for (int i = 0; i < rank; i++) {
                int64_t v;
                if (!sv_as_int(S, p->items[i], &v, "a transpose axis")) return NULL;
                int a = sema_axis(S, v, rank, p->items[i]->loc);
                if (a < 0) return NULL;
                if (seen & (1 << a)) {
                    sema_error(S, p->items[i]->loc, "axis %d appears twice in the permutation", a);
                    return NULL;
                }
                seen |= 1 << a;
                attr.perm[i] = a;
            }
            if (t->shape.batched && attr.perm[0] != 0) {
                sema_error(S, p->loc, "transpose must keep the batch as axis 0");
                return NULL;
            }
        }
        y = NODE(ir_make(&S->b, IR_TRANSPOSE, 1, &t, &attr));
        break;
    }
    case FN_CONCAT: {
        if (x->kind != SV_LIST || x->n < 1) {
            sema_error(S, call->loc, "concat() needs a list of tensors, such as concat([a, b], axis: -1)");
            return NULL;
        }
        ir_node **xs = kd_alloc_array(S->a, (size_t)x->n, sizeof *xs);
        for (int i = 0; i < x->n; i++) {
            if (x->items[i]->kind != SV_TENSOR) {
                sema_error(S, x->items[i]->loc, "concat() needs tensors, got %s", sv_describe(x->items[i]));
                return NULL;
            }
            xs[i] = x->items[i]->t;
        }
        int64_t axis = -1;
        if (args[0] && !sv_as_int(S, args[0], &axis, "axis")) return NULL;
        producer = x->items[0]->producer;
        y = sema_concat(S, xs, x->n, axis, call->loc);
        break;
    }
    case FN_DROPOUT: {
        double rate;
        if (!args[0]) {
            sema_error(S, call->loc, "dropout() needs a rate, such as dropout(x, 0.5)");
            return NULL;
        }
        if (!sv_as_number(S, args[0], &rate, "dropout rate")) return NULL;
        y = sema_dropout(S, t, rate, call->loc);
        break;
    }
    }
    return y ? sv_tensor(S, y, producer, call->loc) : NULL;
}
