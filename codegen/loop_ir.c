/* loop_ir.c — building the loop IR, the table of the kernels a call may name,
 * and the `--stage loops` dump. */
#include "loop_ir.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

const char *const lp_op_names[LP_OP_COUNT] = {
    [LP_NEG] = "neg", [LP_EXP] = "exp", [LP_LOG] = "log", [LP_SQRT] = "sqrt", [LP_RSQRT] = "rsqrt",
    [LP_TANH] = "tanh", [LP_SIGMOID] = "sigmoid", [LP_ABS] = "abs", [LP_SIGN] = "sign",
    [LP_RELU] = "relu", [LP_SQUARE] = "square", [LP_LOG1P] = "log1p", [LP_EXPM1] = "expm1", [LP_ERF] = "erf",
    [LP_ADD] = "+", [LP_SUB] = "-", [LP_MUL] = "*", [LP_DIV] = "/", [LP_MIN] = "min", [LP_MAX] = "max",
    [LP_GT] = ">", [LP_GE] = ">=", [LP_LT] = "<", [LP_LE] = "<=", [LP_EQ] = "==", [LP_NE] = "!=",
    [LP_AND] = "&&", [LP_OR] = "||", [LP_NOT] = "!", [LP_TO_REAL] = "real",
};
const char *const lp_space_names[LP_SPACE_COUNT] = {
    [LP_PARAMS] = "params", [LP_OPT] = "opt_state", [LP_GRADS] = "grads", [LP_INPUT] = "inputs",
    [LP_LABEL] = "labels", [LP_OUTPUT] = "outputs", [LP_ARENA] = "arena",
};
const char *const lp_param_names[LP_P_COUNT] = {
    [LP_P_BATCH] = "batch", [LP_P_STEP] = "step", [LP_P_LR] = "learning_rate", [LP_P_SEED] = "seed",
};
const char *const lp_func_names[LP_F_COUNT] = {
    [LP_F_INIT] = "init", [LP_F_PREDICT] = "predict", [LP_F_GRAD] = "grad",
    [LP_F_APPLY] = "apply_gradients", [LP_F_TRAIN_STEP] = "train_step", [LP_F_PREDICT_FOLDED] = "predict_folded",
    [LP_F_PREDICT_PREPARED] = "predict_prepared",
};

/* The kernels' signatures, from runtime/kernel_list.h's rows. */
#define LP_KIND_(kind, arg) LP_A_##kind
#define LP_NAME_(kind, arg) #arg
#define LP_KERNEL_(ID, name, ret, host, ...) \
    [LP_K_##ID] = {#name, KDK_NARGS(__VA_ARGS__), {KDK_MAP(LP_KIND_, __VA_ARGS__)}, \
                   {KDK_MAP(LP_NAME_, __VA_ARGS__)}, LP_RET_##ret},
#define LP_RET_VOID false
#define LP_RET_F64 true
const lp_kernel_info lp_kernels[LP_K_COUNT] = {KDK_KERNEL_LIST(LP_KERNEL_)};
#undef LP_KIND_
#undef LP_NAME_
#undef LP_KERNEL_
#undef LP_RET_VOID
#undef LP_RET_F64
/* No row takes more arguments than lp_call holds. */
#define LP_CHECK_(ID, name, ret, host, ...) \
    _Static_assert(KDK_NARGS(__VA_ARGS__) <= LP_MAX_ARGS, #name " takes more than LP_MAX_ARGS arguments");
KDK_KERNEL_LIST(LP_CHECK_)
#undef LP_CHECK_

int64_t lp_buf_bytes(const lp_buf *b, int max_batch, lp_real_kind real)
{
    int64_t es = b->elem == LP_ELEM_I32 ? 4 : real == LP_F64 ? 8 : 4;
    return b->elems * (b->batched ? max_batch : 1) * es;
}

/* ---- expressions ----------------------------------------------------------- */

static lp_expr *new_expr(kd_arena *a, lp_expr_kind kind, lp_type type)
{
    lp_expr *e = kd_alloc(a, sizeof *e);
    e->kind = kind;
    e->type = type;
    return e;
}

lp_expr *lp_int(kd_arena *a, int64_t v)
{
    lp_expr *e = new_expr(a, LP_E_INT, LP_INT);
    e->ival = v;
    return e;
}

lp_expr *lp_real(kd_arena *a, double v)
{
    lp_expr *e = new_expr(a, LP_E_REAL, LP_REAL);
    e->rval = v;
    return e;
}

lp_expr *lp_var_ref(kd_arena *a, lp_var *v)
{
    lp_expr *e = new_expr(a, LP_E_VAR, v->type);
    e->var = v;
    return e;
}

lp_expr *lp_param_ref(kd_arena *a, lp_param p)
{
    lp_expr *e = new_expr(a, LP_E_PARAM, p == LP_P_LR ? LP_REAL : LP_INT);
    e->param = p;
    return e;
}

lp_expr *lp_load(kd_arena *a, lp_buf *buf, lp_expr *index)
{
    lp_expr *e = new_expr(a, LP_E_LOAD, buf->elem == LP_ELEM_I32 ? LP_INT : LP_REAL);
    e->buf = buf;
    e->a = index ? index : lp_int(a, 0);
    return e;
}

bool lp_is_int(const lp_expr *e, int64_t v) { return e && e->kind == LP_E_INT && e->ival == v; }

static bool is_compare(lp_op op) { return op >= LP_GT && op <= LP_NOT; }

lp_expr *lp_un(kd_arena *a, lp_op op, lp_expr *x)
{
    if (op == LP_TO_REAL && x->kind == LP_E_INT) return lp_real(a, (double)x->ival);
    if (op == LP_NEG && x->kind == LP_E_INT) return lp_int(a, -x->ival);
    lp_type t = op == LP_TO_REAL ? LP_REAL : is_compare(op) ? LP_INT : x->type;
    assert(op == LP_TO_REAL ? x->type == LP_INT : op == LP_NOT || op == LP_NEG || x->type == LP_REAL);
    lp_expr *e = new_expr(a, LP_E_OP, t);
    e->op = op;
    e->a = x;
    return e;
}

lp_expr *lp_bin(kd_arena *a, lp_op op, lp_expr *x, lp_expr *y)
{
    assert(x->type == y->type);
    if (x->type == LP_INT) {
        bool cx = x->kind == LP_E_INT, cy = y->kind == LP_E_INT;
        if (cx && cy) {
            int64_t u = x->ival, v = y->ival;
            switch (op) {
            case LP_ADD: return lp_int(a, u + v);
            case LP_SUB: return lp_int(a, u - v);
            case LP_MUL: return lp_int(a, u * v);
            case LP_DIV: if (v) return lp_int(a, u / v); break;
            case LP_MIN: return lp_int(a, u < v ? u : v);
            case LP_MAX: return lp_int(a, u > v ? u : v);
            default: break;
            }
        }
        if (op == LP_ADD && lp_is_int(x, 0)) return y;
        if ((op == LP_ADD || op == LP_SUB) && lp_is_int(y, 0)) return x;
        if (op == LP_MUL && (lp_is_int(x, 0) || lp_is_int(y, 0))) return lp_int(a, 0);
        if (op == LP_MUL && lp_is_int(x, 1)) return y;
        if ((op == LP_MUL || op == LP_DIV) && lp_is_int(y, 1)) return x;
    }
    lp_expr *e = new_expr(a, LP_E_OP, is_compare(op) ? LP_INT : x->type);
    e->op = op;
    e->a = x;
    e->b = y;
    return e;
}

lp_expr *lp_select(kd_arena *a, lp_expr *cond, lp_expr *x, lp_expr *y)
{
    assert(cond->type == LP_INT && x->type == y->type);
    lp_expr *e = new_expr(a, LP_E_SELECT, x->type);
    e->a = cond;
    e->b = x;
    e->c = y;
    return e;
}

/* ---- functions, statements --------------------------------------------------- */

lp_func *lp_func_new(kd_arena *a, lp_func_kind kind)
{
    lp_func *f = kd_alloc(a, sizeof *f);
    f->kind = kind;
    f->name = lp_func_names[kind];
    return f;
}

lp_var *lp_new_var(kd_arena *a, lp_func *f, lp_type type, const char *prefix)
{
    lp_var *v = kd_alloc(a, sizeof *v);
    v->id = f->vars.len;
    v->type = type;
    v->name = kd_format(a, "%s%d", prefix, v->id);
    kd_vec_push(a, &f->vars, v);
    return v;
}

lp_buf *lp_new_buf(kd_arena *a, lp_func *f, lp_space space, const char *name)
{
    lp_buf *b = kd_alloc(a, sizeof *b);
    b->id = f->bufs.len;
    b->space = space;
    b->name = name;
    b->var = -1;
    b->first = b->last = -1;
    kd_vec_push(a, &f->bufs, b);
    return b;
}

lp_kernel *lp_new_kernel(kd_arena *a, lp_func *f, const char *what, kd_loc loc, const char *layer)
{
    lp_kernel *k = kd_alloc(a, sizeof *k);
    k->index = f->kernels.len;
    k->what = what;
    k->loc = loc;
    k->layer = layer;
    kd_vec_push(a, &f->kernels, k);
    return k;
}

static lp_stmt *new_stmt(kd_arena *a, lp_stmt_kind kind)
{
    lp_stmt *s = kd_alloc(a, sizeof *s);
    s->kind = kind;
    return s;
}

lp_stmt *lp_for(kd_arena *a, lp_var *v, lp_expr *extent, bool parallel)
{
    lp_stmt *s = new_stmt(a, LP_S_FOR);
    s->var = v;
    s->extent = extent;
    s->parallel = parallel;
    return s;
}

lp_stmt *lp_store(kd_arena *a, lp_buf *buf, lp_expr *index, lp_expr *value, lp_acc acc)
{
    lp_stmt *s = new_stmt(a, LP_S_STORE);
    s->buf = buf;
    s->index = index ? index : lp_int(a, 0);
    s->value = value;
    s->acc = acc;
    return s;
}

lp_stmt *lp_let(kd_arena *a, lp_var *v, lp_expr *value)
{
    lp_stmt *s = new_stmt(a, LP_S_LET);
    s->var = v;
    s->value = value;
    return s;
}

lp_stmt *lp_set(kd_arena *a, lp_var *v, lp_expr *value, lp_acc acc)
{
    lp_stmt *s = new_stmt(a, LP_S_SET);
    s->var = v;
    s->value = value;
    s->acc = acc;
    return s;
}

lp_stmt *lp_call_stmt(kd_arena *a, lp_call *c)
{
    lp_stmt *s = new_stmt(a, LP_S_CALL);
    s->call = c;
    return s;
}

lp_stmt *lp_if(kd_arena *a, lp_expr *cond, lp_buf *if_buf)
{
    lp_stmt *s = new_stmt(a, LP_S_IF);
    s->cond = cond;
    s->if_buf = if_buf;
    return s;
}

/* ---- visiting buffers ---------------------------------------------------------- */

void lp_expr_visit_bufs(const lp_expr *e, lp_buf_visit fn, void *ctx)
{
    if (!e) return;
    if (e->kind == LP_E_LOAD) fn(ctx, e->buf, false);
    lp_expr_visit_bufs(e->a, fn, ctx);
    lp_expr_visit_bufs(e->b, fn, ctx);
    lp_expr_visit_bufs(e->c, fn, ctx);
}

static void visit_stmts(const kd_vec *body, lp_buf_visit fn, void *ctx)
{
    for (int i = 0; i < body->len; i++) {
        const lp_stmt *s = body->items[i];
        switch (s->kind) {
        case LP_S_FOR:
            lp_expr_visit_bufs(s->extent, fn, ctx);
            visit_stmts(&s->body, fn, ctx);
            break;
        case LP_S_STORE:
            lp_expr_visit_bufs(s->index, fn, ctx);
            lp_expr_visit_bufs(s->value, fn, ctx);
            fn(ctx, s->buf, true);
            break;
        case LP_S_LET:
        case LP_S_SET: lp_expr_visit_bufs(s->value, fn, ctx); break;
        case LP_S_CALL: {
            const lp_kernel_info *ki = &lp_kernels[s->call->k];
            for (int j = 0; j < ki->nargs; j++) {
                const lp_arg *arg = &s->call->args[j];
                lp_expr_visit_bufs(arg->e, fn, ctx);
                lp_expr_visit_bufs(arg->off, fn, ctx);
                if (arg->buf) fn(ctx, arg->buf, ki->args[j] == LP_A_OUT || ki->args[j] == LP_A_OUT_I32);
            }
            break;
        }
        case LP_S_IF:
            lp_expr_visit_bufs(s->cond, fn, ctx);
            if (s->if_buf) fn(ctx, s->if_buf, false);
            visit_stmts(&s->body, fn, ctx);
            break;
        }
    }
}

void lp_kernel_visit_bufs(const lp_kernel *k, lp_buf_visit fn, void *ctx)
{
    visit_stmts(&k->body, fn, ctx);
}

/* ---- dump --------------------------------------------------------------------- */

static void print_real(FILE *out, double v)
{
    char buf[40];
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    fputs(buf, out);
}

static void dump_expr(FILE *out, const lp_expr *e);

static void dump_operand(FILE *out, const lp_expr *e)
{
    bool paren = e->kind == LP_E_OP && e->b != NULL;
    if (paren) fputc('(', out);
    dump_expr(out, e);
    if (paren) fputc(')', out);
}

static void dump_expr(FILE *out, const lp_expr *e)
{
    switch (e->kind) {
    case LP_E_INT: fprintf(out, "%" PRId64, e->ival); break;
    case LP_E_REAL: print_real(out, e->rval); break;
    case LP_E_VAR: fputs(e->var->name, out); break;
    case LP_E_PARAM: fputs(lp_param_names[e->param], out); break;
    case LP_E_LOAD:
        fprintf(out, "%s[", e->buf->name);
        dump_expr(out, e->a);
        fputc(']', out);
        break;
    case LP_E_OP:
        if (!e->b) {
            fprintf(out, "%s(", lp_op_names[e->op]);
            dump_expr(out, e->a);
            fputc(')', out);
        } else if (e->op == LP_MIN || e->op == LP_MAX) {
            fprintf(out, "%s(", lp_op_names[e->op]);
            dump_expr(out, e->a);
            fputs(", ", out);
            dump_expr(out, e->b);
            fputc(')', out);
        } else {
            dump_operand(out, e->a);
            fprintf(out, " %s ", lp_op_names[e->op]);
            dump_operand(out, e->b);
        }
        break;
    case LP_E_SELECT:
        dump_operand(out, e->a);
        fputs(" ? ", out);
        dump_operand(out, e->b);
        fputs(" : ", out);
        dump_operand(out, e->c);
        break;
    case LP_E_DROPOUT:
        fprintf(out, "dropout(salt=%u, threshold=%u, scale=", e->dropout.salt, e->dropout.threshold);
        print_real(out, e->dropout.scale);
        fputs(", index=", out);
        dump_expr(out, e->a);
        fputc(')', out);
        break;
    }
}

static const char *const acc_text[] = {"=", "+=", "max="};

static void dump_stmts(FILE *out, const kd_vec *body, int depth)
{
    for (int i = 0; i < body->len; i++) {
        const lp_stmt *s = body->items[i];
        fprintf(out, "%*s", 2 * depth, "");
        switch (s->kind) {
        case LP_S_FOR:
            fprintf(out, "for %s < ", s->var->name);
            dump_expr(out, s->extent);
            fputs(s->parallel ? " parallel\n" : "\n", out);
            dump_stmts(out, &s->body, depth + 1);
            break;
        case LP_S_STORE:
            fprintf(out, "%s[", s->buf->name);
            dump_expr(out, s->index);
            fprintf(out, "] %s ", acc_text[s->acc]);
            dump_expr(out, s->value);
            fputc('\n', out);
            break;
        case LP_S_LET:
        case LP_S_SET:
            fprintf(out, "%s%s %s ", s->kind == LP_S_LET ? (s->var->type == LP_INT ? "int " : "real ") : "",
                    s->var->name, s->kind == LP_S_LET ? "=" : acc_text[s->acc]);
            dump_expr(out, s->value);
            fputc('\n', out);
            break;
        case LP_S_CALL: {
            const lp_call *c = s->call;
            const lp_kernel_info *ki = &lp_kernels[c->k];
            if (c->result) fprintf(out, "%s = ", c->result->name);
            fprintf(out, "%s(", ki->name);
            for (int j = 0; j < ki->nargs; j++) {
                const lp_arg *arg = &c->args[j];
                fprintf(out, "%s%s=", j ? ", " : "", ki->arg_names[j]);
                if (lp_arg_is_ptr(ki->args[j])) {
                    if (!arg->buf) fputs("null", out);
                    else {
                        fputs(arg->buf->name, out);
                        if (arg->off && !lp_is_int(arg->off, 0)) {
                            fputs("+", out);
                            dump_operand(out, arg->off);
                        }
                    }
                } else {
                    dump_expr(out, arg->e);
                }
            }
            fputs(")\n", out);
            break;
        }
        case LP_S_IF:
            fputs("if ", out);
            if (s->cond) dump_expr(out, s->cond);
            else fprintf(out, "%s != null", s->if_buf->name);
            fputc('\n', out);
            dump_stmts(out, &s->body, depth + 1);
            break;
        }
    }
}

static void dump_buf(FILE *out, const lp_program *p, const lp_buf *b)
{
    fprintf(out, "  buf %s: %s", b->name, lp_space_names[b->space]);
    if (b->space == LP_INPUT || b->space == LP_OUTPUT || b->space == LP_LABEL) fprintf(out, "[%d]", b->index);
    if (b->space == LP_ARENA && b->local) fputs(" local", out);
    else if (b->space == LP_ARENA) fprintf(out, " @%" PRId64, b->offset);
    else if (b->space == LP_PARAMS || b->space == LP_OPT || b->space == LP_GRADS)
        fprintf(out, " +%" PRId64, b->offset);
    fprintf(out, " %s%" PRId64 "%s", b->batched ? "batch x " : "", b->elems,
            b->elem == LP_ELEM_I32 ? " i32" : "");
    if (b->space == LP_ARENA)
        fprintf(out, " (%" PRId64 " bytes, kernels %d..%d%s)", lp_buf_bytes(b, p->max_batch, p->real), b->first,
                b->last, b->scratch ? ", scratch" : "");
    if (b->shares) fprintf(out, " in place of %s", b->shares->name);
    if (b->note) fprintf(out, "  # %s", b->note);
    fputc('\n', out);
}

void kd_loops_dump_func(FILE *out, const lp_program *p, const lp_func *f)
{
    fprintf(out, "func %s_%s", p->name, f->name);
    if (f->kind != LP_F_INIT && f->kind != LP_F_APPLY)
        fprintf(out, "  arena %" PRId64 " bytes at batch %d (live bound %" PRId64 ")", f->arena_bytes,
                p->max_batch, f->live_bound);
    fputc('\n', out);
    for (int i = 0; i < f->bufs.len; i++) {
        const lp_buf *b = f->bufs.items[i];
        if (b->first >= 0 || b->space != LP_ARENA) dump_buf(out, p, b);
    }
    for (int i = 0; i < f->kernels.len; i++) {
        const lp_kernel *k = f->kernels.items[i];
        fprintf(out, "  kernel %d", k->index);
        if (k->loc.line) fprintf(out, "  %s:%d", p->source ? p->source : "?", k->loc.line);
        if (k->what) fprintf(out, "  %s", k->what);
        fputc('\n', out);
        dump_stmts(out, &k->body, 2);
    }
    if (f->ret) fprintf(out, "  return %s[0]\n", f->ret->name);
}

void kd_loops_dump(FILE *out, const lp_program *p)
{
    fprintf(out, "program %s  %s, max batch %d, params %" PRId64 ", opt_state %" PRId64 ", grads %" PRId64 "\n",
            p->name, p->real == LP_F64 ? "f64" : "f32", p->max_batch, p->params_size, p->opt_size, p->grads_size);
    for (int i = 0; i < LP_F_COUNT; i++)
        if (p->funcs[i]) kd_loops_dump_func(out, p, p->funcs[i]);
}
