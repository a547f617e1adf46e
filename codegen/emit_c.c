/* emit_c.c — the C text backend: an lp_program as model.h (sizes, the
 * tensor tables, prototypes) and model.c (one C function per lp_func).
 *
 * The text is C99 for `-std=c99 -Wall -Wextra -Wpedantic -Werror` on gcc and
 * clang, and the same bytes for the same program on every run: nothing
 * depends on addresses, time or the host. The inference path (init, predict)
 * includes math.h, stddef.h and stdint.h only and calls only the runtime's
 * kernels and libm; the training functions add nothing else. */
#include "codegen.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct emitter {
    const lp_program *p;
    const kd_codegen_options *o;
    FILE *out;
    const lp_func *f;      /* the function being written */
    bool f32;
    const char *real;      /* "float" / "double" */
    const char *kp;        /* "kdk_s" / "kdk_d" */
    const char *in_t;      /* the element type of `inputs`: the real type, or "void" when an input
                            * is i32 (each inputs[i] then points to its own type) */
    /* What the program uses, so only those helpers are written. */
    bool used_op[LP_OP_COUNT];
    bool used_max_acc;
    bool used_mac;
    bool long_batch;       /* printing a loop extent */
    /* f32: the locals of the function being written that are doubles (the
     * results of kernel calls, `const double xent0`). Where one meets a float
     * the emitter writes the conversion C would make implicitly, so the
     * code is clean under -Wdouble-promotion -Wconversion and computes what
     * the JIT (emit_jit.c, which models C's promotions) computes. */
    bool *dbl;
    int ndbl;
} emitter;

/* ---- scanning what is used ----------------------------------------------------------- */

static void scan_expr(emitter *E, const lp_expr *e)
{
    if (!e) return;
    if (e->kind == LP_E_OP) E->used_op[e->op] = true;
    scan_expr(E, e->a);
    scan_expr(E, e->b);
    scan_expr(E, e->c);
}

static void scan_stmts(emitter *E, const kd_vec *body)
{
    for (int i = 0; i < body->len; i++) {
        const lp_stmt *s = body->items[i];
        scan_expr(E, s->extent);
        scan_expr(E, s->index);
        scan_expr(E, s->value);
        scan_expr(E, s->cond);
        if ((s->kind == LP_S_STORE || s->kind == LP_S_SET) && s->acc == LP_ACC_MAX) E->used_max_acc = true;
        if (s->kind == LP_S_SET && s->acc == LP_ACC_ADD && s->value->kind == LP_E_OP && s->value->op == LP_MUL)
            E->used_mac = true;
        if (s->kind == LP_S_CALL) {
            for (int j = 0; j < lp_kernels[s->call->k].nargs; j++) {
                scan_expr(E, s->call->args[j].e);
                scan_expr(E, s->call->args[j].off);
            }
        }
        scan_stmts(E, &s->body);
    }
}

static void scan(emitter *E)
{
    for (int f = 0; f < LP_F_COUNT; f++) {
        const lp_func *fn = E->p->funcs[f];
        if (!fn) continue;
        for (int k = 0; k < fn->kernels.len; k++) scan_stmts(E, &((const lp_kernel *)fn->kernels.items[k])->body);
    }
}

/* Which parameters and spaces a function's statements touch. */
typedef struct usage {
    bool param[LP_P_COUNT];
    bool space[LP_SPACE_COUNT];
    bool arena_bytes;      /* an arena buffer that is not a stack local */
} usage;

static void use_expr(usage *u, const lp_expr *e)
{
    if (!e) return;
    if (e->kind == LP_E_PARAM) u->param[e->param] = true;
    if (e->kind == LP_E_DROPOUT) u->param[LP_P_STEP] = true;
    if (e->kind == LP_E_LOAD) {
        u->space[e->buf->space] = true;
        if (e->buf->space == LP_ARENA && !e->buf->local) u->arena_bytes = true;
    }
    use_expr(u, e->a);
    use_expr(u, e->b);
    use_expr(u, e->c);
}

static void use_buf(usage *u, const lp_buf *b)
{
    if (!b) return;
    u->space[b->space] = true;
    if (b->space == LP_ARENA && !b->local) u->arena_bytes = true;
}

static void use_stmts(usage *u, const kd_vec *body)
{
    for (int i = 0; i < body->len; i++) {
        const lp_stmt *s = body->items[i];
        use_expr(u, s->extent);
        use_expr(u, s->index);
        use_expr(u, s->value);
        use_expr(u, s->cond);
        use_buf(u, s->buf);
        use_buf(u, s->if_buf);
        if (s->kind == LP_S_CALL)
            for (int j = 0; j < lp_kernels[s->call->k].nargs; j++) {
                use_expr(u, s->call->args[j].e);
                use_expr(u, s->call->args[j].off);
                use_buf(u, s->call->args[j].buf);
            }
        use_stmts(u, &s->body);
    }
}

/* ---- expressions --------------------------------------------------------------------------- */

/* The shortest text that reads back as the same value of the real type. */
static void put_real(FILE *out, double v, bool f32)
{
    if (isinf(v)) {
        fputs(v < 0 ? "-INFINITY" : "INFINITY", out);
        return;
    }
    if (isnan(v)) {
        fputs("NAN", out);
        return;
    }
    char buf[64];
    if (f32) {
        float fv = (float)v;
        for (int prec = 1; prec <= 9; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, (double)fv);
            if ((float)strtod(buf, NULL) == fv) break;
        }
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, v);
            if (strtod(buf, NULL) == v) break;
        }
    }
    fputs(buf, out);
    if (!strpbrk(buf, ".e")) fputs(".0", out);
    if (f32) fputc('f', out);
}

enum { P_TERNARY = 3, P_OR = 4, P_AND = 5, P_EQ = 9, P_REL = 10, P_ADD = 12, P_MUL = 13, P_UNARY = 14, P_ATOM = 15 };

static int prec_of(const lp_expr *e)
{
    switch (e->kind) {
    case LP_E_INT: return e->ival < 0 ? P_UNARY : P_ATOM;
    case LP_E_REAL: return e->rval < 0 || (e->rval == 0 && signbit(e->rval)) ? P_UNARY : P_ATOM;
    case LP_E_SELECT: return P_TERNARY;
    case LP_E_DROPOUT: return P_TERNARY;
    case LP_E_OP:
        switch (e->op) {
        case LP_ADD: case LP_SUB: return P_ADD;
        case LP_MUL: case LP_DIV: return P_MUL;
        case LP_GT: case LP_GE: case LP_LT: case LP_LE: return P_REL;
        case LP_EQ: case LP_NE: return P_EQ;
        case LP_AND: return P_AND;
        case LP_OR: return P_OR;
        case LP_NEG: case LP_NOT: case LP_TO_REAL: return P_UNARY;
        case LP_RSQRT: return P_MUL;
        case LP_MIN: case LP_MAX: return e->type == LP_REAL ? P_ATOM : P_TERNARY;
        default: return P_ATOM;   /* function calls */
        }
    default: return P_ATOM;
    }
}

static void expr(emitter *E, const lp_expr *e, int min_prec);

/* Whether e has C type double in f32 code: a kernel call's result, or
 * arithmetic on one (C promotes the float operand). */
static bool is_double(const emitter *E, const lp_expr *e)
{
    if (!E->f32 || !e) return false;
    switch (e->kind) {
    case LP_E_VAR: return e->var->id >= 0 && e->var->id < E->ndbl && E->dbl[e->var->id];
    case LP_E_SELECT: return is_double(E, e->b) || is_double(E, e->c);
    case LP_E_OP:
        switch (e->op) {
        case LP_ADD: case LP_SUB: case LP_MUL: case LP_DIV: return is_double(E, e->a) || is_double(E, e->b);
        case LP_NEG: return is_double(E, e->a);
        default: return false;   /* comparisons are ints; math functions and helpers return floats */
        }
    default: return false;
    }
}

/* e where C wants a double (want_double) or the real type: the conversion
 * C would make implicitly, written out. */
static void expr_as(emitter *E, const lp_expr *e, int min_prec, bool want_double)
{
    bool d = is_double(E, e);
    if (d == want_double || e->type != LP_REAL) {
        expr(E, e, min_prec);
        return;
    }
    bool paren = min_prec > P_UNARY;
    fprintf(E->out, "%s(%s)", paren ? "(" : "", want_double ? "double" : E->real);
    expr(E, e, P_UNARY);
    if (paren) fputc(')', E->out);
}

static void call1(emitter *E, const char *fn, const lp_expr *x)
{
    fprintf(E->out, "%s(", fn);
    expr_as(E, x, 0, false);
    fputc(')', E->out);
}

static const char *mathfn(emitter *E, const char *name)
{
    static char buf[16];
    snprintf(buf, sizeof buf, "%s%s", name, E->f32 ? "f" : "");
    return buf;
}

static const char *param_text(lp_param p)
{
    switch (p) {
    case LP_P_BATCH: return "batch";
    case LP_P_STEP: return "step";
    case LP_P_LR: return "learning_rate";
    default: return "seed";
    }
}

static void expr(emitter *E, const lp_expr *e, int min_prec)
{
    FILE *out = E->out;
    int p = prec_of(e);
    bool paren = p < min_prec;
    if (paren) fputc('(', out);
    switch (e->kind) {
    case LP_E_INT: fprintf(out, "%" PRId64, e->ival); break;
    case LP_E_REAL: put_real(out, e->rval, E->f32); break;
    case LP_E_VAR: fputs(e->var->name, out); break;
    case LP_E_PARAM:
        /* Loop extents are longs: batch * (elements per sample) may not fit an int. */
        fputs(e->param == LP_P_BATCH && E->long_batch ? "(long)batch" : param_text(e->param), out);
        break;
    case LP_E_LOAD:
        fprintf(out, "%s[", e->buf->name);
        expr(E, e->a, 0);
        fputc(']', out);
        break;
    case LP_E_SELECT: {
        bool d = is_double(E, e);
        expr(E, e->a, P_TERNARY + 1);
        fputs(" ? ", out);
        expr_as(E, e->b, P_TERNARY + 1, d);
        fputs(" : ", out);
        expr_as(E, e->c, P_TERNARY, d);
        break;
    }
    case LP_E_DROPOUT:
        fprintf(out, "kdk_dropout_bits(%" PRIu64 "ULL, step, %" PRIu32 "u, (uint64_t)(", e->dropout.seed, e->dropout.salt);
        expr(E, e->a, 0);
        fprintf(out, ")) >= %" PRIu32 "u ? ", e->dropout.threshold);
        put_real(out, e->dropout.scale, E->f32);
        fputs(" : ", out);
        put_real(out, 0, E->f32);
        break;
    case LP_E_OP:
        switch (e->op) {
        case LP_NEG: fputc('-', out); expr(E, e->a, P_UNARY + 1); break;   /* never "--" */
        case LP_NOT: fputc('!', out); expr(E, e->a, P_UNARY); break;
        case LP_TO_REAL: fprintf(out, "(%s)", E->real); expr(E, e->a, P_UNARY); break;
        case LP_EXP: call1(E, mathfn(E, "exp"), e->a); break;
        case LP_LOG: call1(E, mathfn(E, "log"), e->a); break;
        case LP_SQRT: call1(E, mathfn(E, "sqrt"), e->a); break;
        case LP_TANH: call1(E, E->f32 ? "kdk_tanhf" : "tanh", e->a); break;   /* runtime/fastmath.h */
        case LP_LOG1P: call1(E, mathfn(E, "log1p"), e->a); break;
        case LP_EXPM1: call1(E, mathfn(E, "expm1"), e->a); break;
        case LP_ERF: call1(E, mathfn(E, "erf"), e->a); break;
        case LP_ABS: call1(E, mathfn(E, "fabs"), e->a); break;
        case LP_RSQRT:
            put_real(out, 1, E->f32);
            fputs(" / ", out);
            call1(E, mathfn(E, "sqrt"), e->a);
            break;
        case LP_SIGMOID: call1(E, "kd_sigmoid", e->a); break;
        case LP_RELU: call1(E, "kd_relu", e->a); break;
        case LP_SQUARE: call1(E, "kd_square", e->a); break;
        case LP_SIGN: call1(E, "kd_sign", e->a); break;
        case LP_MIN:
        case LP_MAX:
            if (e->type == LP_REAL) {
                fprintf(out, "%s(", e->op == LP_MAX ? "kd_max" : "kd_min");
                expr_as(E, e->a, 0, false);
                fputs(", ", out);
                expr_as(E, e->b, 0, false);
                fputc(')', out);
            } else {
                expr(E, e->a, P_REL + 1);
                fputs(e->op == LP_MAX ? " >= " : " <= ", out);
                expr(E, e->b, P_REL + 1);
                fputs(" ? ", out);
                expr(E, e->a, P_TERNARY + 1);
                fputs(" : ", out);
                expr(E, e->b, P_TERNARY);
            }
            break;
        default: {
            static const char *const text[LP_OP_COUNT] = {
                [LP_ADD] = " + ", [LP_SUB] = " - ", [LP_MUL] = " * ", [LP_DIV] = " / ", [LP_GT] = " > ",
                [LP_GE] = " >= ", [LP_LT] = " < ", [LP_LE] = " <= ", [LP_EQ] = " == ", [LP_NE] = " != ",
                [LP_AND] = " && ", [LP_OR] = " || ",
            };
            bool d = is_double(E, e->a) || is_double(E, e->b);
            expr_as(E, e->a, p, d);
            fputs(text[e->op], out);
            expr_as(E, e->b, p + 1, d);
            break;
        }
        }
        break;
    }
    if (paren) fputc(')', out);
}

/* ---- statements ------------------------------------------------------------------------------ */

static void indent(emitter *E, int depth) { fprintf(E->out, "%*s", 4 * depth, ""); }

static void comment(emitter *E, const char *text)
{
    for (const char *c = text; *c; c++) {
        if (c[0] == '*' && c[1] == '/') {
            fputs("* ", E->out);
            continue;
        }
        fputc(*c == '\n' ? ' ' : *c, E->out);
    }
}

static const char *space_base(const emitter *E, const lp_buf *b)
{
    switch (b->space) {
    case LP_PARAMS: return "params";
    case LP_OPT: return "opt_state";
    case LP_GRADS: return "grads";
    case LP_LABEL: return "labels";
    case LP_OUTPUT: return E->f->kind == LP_F_TRAIN_STEP ? "outputs0" : "outputs";
    default: return "arena";
    }
}

static void ptr_arg(emitter *E, const lp_arg *a)
{
    if (!a->buf) {
        fputs("NULL", E->out);
        return;
    }
    if (E->f->kind == LP_F_INIT)      /* no pointers into opt_state before its NULL check */
        fprintf(E->out, "%s + %" PRId64, space_base(E, a->buf), a->buf->offset);
    else
        fputs(a->buf->name, E->out);
    if (a->off && !lp_is_int(a->off, 0)) {
        fputs(" + ", E->out);
        expr(E, a->off, P_ADD + 1);
    }
}

static void call(emitter *E, const lp_call *c)
{
    const lp_kernel_info *ki = &lp_kernels[c->k];
    if (c->result) fprintf(E->out, "const double %s = ", c->result->name);
    fprintf(E->out, "%s%s(", E->kp, ki->name);
    for (int j = 0; j < ki->nargs; j++) {
        const lp_arg *a = &c->args[j];
        if (j) fputs(", ", E->out);
        switch (ki->args[j]) {
        case LP_A_IN:
        case LP_A_OUT:
        case LP_A_IN_I32:
        case LP_A_OUT_I32: ptr_arg(E, a); break;
        case LP_A_REAL: expr_as(E, a->e, 0, false); break;
        case LP_A_F64:
            /* the initialisers' doubles: constants stay exact */
            if (a->e->kind == LP_E_REAL) put_real(E->out, a->e->rval, false);
            else expr_as(E, a->e, 0, true);
            break;
        case LP_A_U64:   /* a seed: a constant is written unsigned, as -Wconversion wants */
            if (a->e->kind == LP_E_INT) fprintf(E->out, "%lluULL", (unsigned long long)a->e->ival);
            else expr(E, a->e, 0);
            break;
        case LP_A_LONG:  /* the step (unsigned long long) as a stream number */
            if (a->e->kind == LP_E_PARAM) fputs("(long)", E->out);
            expr(E, a->e, 0);
            break;
        default: expr(E, a->e, 0); break;
        }
    }
    fputs(");\n", E->out);
}

/* A float sum's `acc += a * b` (the direct kernels' multiply-adds): kd_mac. */
static bool is_mac(const emitter *E, const lp_stmt *s)
{
    return E->f32 && s->kind == LP_S_SET && s->acc == LP_ACC_ADD && s->value->kind == LP_E_OP &&
           s->value->op == LP_MUL && s->value->type == LP_REAL && !is_double(E, s->value->a) &&
           !is_double(E, s->value->b);
}

static void stmts(emitter *E, const kd_vec *body, int depth)
{
    static const char *const acc_op[] = {" = ", " += ", ""};
    for (int i = 0; i < body->len; i++) {
        const lp_stmt *s = body->items[i];
        indent(E, depth);
        switch (s->kind) {
        case LP_S_FOR:
            fprintf(E->out, "for (long %s = 0; %s < ", s->var->name, s->var->name);
            E->long_batch = true;
            expr(E, s->extent, P_REL + 1);
            E->long_batch = false;
            fprintf(E->out, "; %s++) {\n", s->var->name);
            stmts(E, &s->body, depth + 1);
            indent(E, depth);
            fputs("}\n", E->out);
            break;
        case LP_S_STORE:
            fprintf(E->out, "%s[", s->buf->name);
            expr(E, s->index, 0);
            fputc(']', E->out);
            if (s->acc == LP_ACC_MAX) {
                fprintf(E->out, " = kd_max_acc(%s[", s->buf->name);
                expr(E, s->index, 0);
                fputs("], ", E->out);
                expr_as(E, s->value, 0, false);
                fputs(");\n", E->out);
            } else {
                fputs(acc_op[s->acc], E->out);
                expr_as(E, s->value, 0, false);
                fputs(";\n", E->out);
            }
            break;
        case LP_S_LET:
            fprintf(E->out, "%s %s = ", s->var->type == LP_INT ? "long" : E->real, s->var->name);
            expr_as(E, s->value, 0, false);
            fputs(";\n", E->out);
            break;
        case LP_S_SET:
            if (s->acc == LP_ACC_MAX) {
                fprintf(E->out, "%s = kd_max_acc(%s, ", s->var->name, s->var->name);
                expr_as(E, s->value, 0, false);
                fputs(");\n", E->out);
            } else if (is_mac(E, s)) {
                fprintf(E->out, "kd_mac(%s, ", s->var->name);
                expr_as(E, s->value->a, 0, false);
                fputs(", ", E->out);
                expr_as(E, s->value->b, 0, false);
                fputs(");\n", E->out);
            } else {
                fprintf(E->out, "%s%s", s->var->name, acc_op[s->acc]);
                expr_as(E, s->value, 0, false);
                fputs(";\n", E->out);
            }
            break;
        case LP_S_CALL: call(E, s->call); break;
        case LP_S_IF:
            fputs("if (", E->out);
            if (s->cond) expr(E, s->cond, 0);
            else fprintf(E->out, "%s", space_base(E, s->if_buf));
            fputs(") {\n", E->out);
            stmts(E, &s->body, depth + 1);
            indent(E, depth);
            fputs("}\n", E->out);
            break;
        }
    }
}

/* ---- functions ------------------------------------------------------------------------------------ */

static const char *sig_params(const emitter *E, lp_func_kind k)
{
    const lp_program *p = E->p;
    const char *r = E->real;
    switch (k) {
    case LP_F_INIT: return kd_format(p->arena, "%s *params, %s *opt_state, unsigned long long seed", r, r);
    case LP_F_PREDICT:
    case LP_F_PREDICT_FOLDED:
        return kd_format(p->arena, "const %s *params, const %s *const *inputs, %s *const *outputs, int batch, void *arena",
                         r, E->in_t, r);
    case LP_F_PREDICT_PREPARED:
        return kd_format(p->arena, "const %s *prepared, const %s *const *inputs, %s *const *outputs, int batch, void *arena",
                         r, E->in_t, r);
    case LP_F_GRAD:
        return kd_format(p->arena,
                         "%s *params, const %s *const *inputs, const %s *labels, %s *grads, int batch, "
                         "unsigned long long step, void *arena", r, E->in_t, r, r);
    case LP_F_APPLY:
        return kd_format(p->arena, "%s *params, const %s *grads, %s *opt_state, unsigned long long step, %s learning_rate",
                         r, r, r, r);
    default:
        return kd_format(p->arena,
                         "%s *params, %s *opt_state, const %s *const *inputs, const %s *labels, int batch, "
                         "unsigned long long step, %s learning_rate, void *arena, %s *outputs0", r, r, E->in_t, r, r, r);
    }
}

static const char *func_return(const emitter *E, lp_func_kind k)
{
    return k == LP_F_GRAD || k == LP_F_TRAIN_STEP ? E->real : lp_func_predicts(k) ? "int" : "void";
}

static void prototype(emitter *E, FILE *out, lp_func_kind k)
{
    fprintf(out, "%s%s %s_%s(%s)", k == LP_F_PREDICT_FOLDED ? "static " : "", func_return(E, k), E->p->name,
            lp_func_names[k], sig_params(E, k));
}

static bool is_const_buf(const emitter *E, const lp_buf *b)
{
    switch (b->space) {
    case LP_INPUT:
    case LP_LABEL: return true;
    case LP_PARAMS: return lp_func_predicts(E->f->kind);
    case LP_GRADS: return E->f->kind == LP_F_APPLY;
    default: return false;
    }
}

static void declare_buf(emitter *E, const lp_buf *b)
{
    const char *c = is_const_buf(E, b) ? "const " : "";
    FILE *out = E->out;
    fputs("    ", out);
    if (b->space == LP_ARENA && b->local) {
        fprintf(out, "%s %s[%" PRId64 "];", E->real, b->name, b->elems);
    } else if (b->space == LP_ARENA) {
        fprintf(out, "%s *%s = (%s *)(void *)(A + %" PRId64 ");", E->real, b->name, E->real, b->offset);
    } else if (b->space == LP_INPUT && E->in_t[0] == 'v') {
        const char *t = b->elem == LP_ELEM_I32 ? "int32_t" : E->real;
        fprintf(out, "const %s *%s = (const %s *)inputs[%d];", t, b->name, t, b->index);
    } else if (b->space == LP_INPUT) {
        fprintf(out, "const %s *%s = inputs[%d];", E->real, b->name, b->index);
    } else if (b->space == LP_OUTPUT) {
        if (E->f->kind == LP_F_TRAIN_STEP) fprintf(out, "%s *%s = outputs0;", E->real, b->name);
        else fprintf(out, "%s *%s = outputs[%d];", E->real, b->name, b->index);
    } else if (b->space == LP_LABEL) {
        fprintf(out, "const %s *%s = labels;", E->real, b->name);
    } else {
        fprintf(out, "%s%s *%s = %s + %" PRId64 ";", c, E->real, b->name, space_base(E, b), b->offset);
    }
    if (b->note) {
        fputs("  /* ", out);
        comment(E, b->note);
        if (b->space == LP_ARENA && !b->local)
            fprintf(out, ", kernels %d..%d", b->first, b->last);
        if (b->shares) fprintf(out, ", in place of %s", b->shares->name);
        fputs(" */", out);
    }
    fputc('\n', out);
}

/* Marks the locals that receive a kernel call's double (emitter.dbl). */
static void mark_doubles(emitter *E, const kd_vec *body)
{
    for (int i = 0; i < body->len; i++) {
        const lp_stmt *s = body->items[i];
        if (s->kind == LP_S_CALL && s->call && s->call->result && s->call->result->id >= 0 &&
            s->call->result->id < E->ndbl)
            E->dbl[s->call->result->id] = true;
        mark_doubles(E, &s->body);
    }
}

/* embedded: f (predict or its folded twin) as <model>_predict_embedded, its
 * params the static weights: with the weights at an address the linker
 * knows, and no call in between, a firmware that uses only this function
 * links no copy of the other (and no wrapper that moves a fifth argument). */
static void function_as(emitter *E, const lp_func *f, bool embedded)
{
    FILE *out = E->out;
    E->f = f;
    E->ndbl = f->vars.len;
    E->dbl = kd_alloc_array(E->p->arena, (size_t)f->vars.len + 1, sizeof *E->dbl);
    for (int k = 0; k < f->kernels.len; k++) mark_doubles(E, &((const lp_kernel *)f->kernels.items[k])->body);
    usage u = {0};
    for (int k = 0; k < f->kernels.len; k++) use_stmts(&u, &((const lp_kernel *)f->kernels.items[k])->body);
    if (f->ret) use_buf(&u, f->ret);
    bool has_batch = lp_func_predicts(f->kind) || f->kind == LP_F_GRAD || f->kind == LP_F_TRAIN_STEP;

    fputc('\n', out);
    if (embedded)
        fprintf(out, "int %s_predict_embedded(const %s *const *inputs, %s *const *outputs, int batch, void *arena)\n"
                     "{\n    const %s *params = %s_weights;\n", E->p->name, E->in_t, E->real, E->real, E->p->name);
    else {
        prototype(E, out, f->kind);
        fputs("\n{\n", out);
    }
    /* Parameters a function of this kind has but does not use. */
    static const char *const names[LP_F_COUNT][10] = {
        [LP_F_INIT] = {"params", "opt_state", "seed"},
        [LP_F_PREDICT] = {"params", "inputs", "outputs", "arena"},
        [LP_F_PREDICT_FOLDED] = {"params", "inputs", "outputs", "arena"},
        [LP_F_PREDICT_PREPARED] = {"prepared", "inputs", "outputs", "arena"},
        [LP_F_GRAD] = {"params", "inputs", "labels", "grads", "step", "arena"},
        [LP_F_APPLY] = {"params", "grads", "opt_state", "step", "learning_rate"},
        [LP_F_TRAIN_STEP] = {"params", "opt_state", "inputs", "labels", "step", "learning_rate", "arena", "outputs0"},
    };
    for (int i = 0; i < 10 && names[f->kind][i]; i++) {
        const char *nm = names[f->kind][i];
        bool used = !strcmp(nm, "params") || !strcmp(nm, "prepared") ? u.space[LP_PARAMS]
                    : !strcmp(nm, "opt_state") ? u.space[LP_OPT]
                    : !strcmp(nm, "grads") ? u.space[LP_GRADS] : !strcmp(nm, "inputs") ? u.space[LP_INPUT]
                    : !strcmp(nm, "labels") ? u.space[LP_LABEL]
                    : !strcmp(nm, "outputs") || !strcmp(nm, "outputs0") ? u.space[LP_OUTPUT]
                    : !strcmp(nm, "arena") ? u.arena_bytes : !strcmp(nm, "step") ? u.param[LP_P_STEP]
                    : !strcmp(nm, "learning_rate") ? u.param[LP_P_LR] : u.param[LP_P_SEED];
        if (!used && !(embedded && !strcmp(nm, "params"))) fprintf(out, "    (void)%s;\n", nm);
    }
    if (has_batch) {
        fprintf(out, "    if (batch < 1 || batch > %s_MAX_BATCH) return%s;\n", E->p->upper,
                lp_func_predicts(f->kind) ? " -1" : E->f32 ? " NAN" : " (double)NAN");   /* NAN is a float */
    }
    if (f->kind == LP_F_PREDICT_PREPARED && u.space[LP_PARAMS])
        fprintf(out, "    const %s *params = prepared;\n", E->real);
    if (u.arena_bytes) fputs("    char *A = (char *)arena;\n", out);
    for (int i = 0; i < f->bufs.len && f->kind != LP_F_INIT; i++) {
        const lp_buf *b = f->bufs.items[i];
        if (b->first >= 0 || b == f->ret) declare_buf(E, b);
    }
    for (int k = 0; k < f->kernels.len; k++) {
        const lp_kernel *kn = f->kernels.items[k];
        fputs("\n    /* ", out);
        if (kn->loc.line && E->p->source) fprintf(out, "%s:%d ", E->p->source, kn->loc.line);
        if (kn->what) comment(E, kn->what);
        fputs(" */\n", out);
        stmts(E, &kn->body, 1);
    }
    if (f->ret) fprintf(out, "    return %s[0];\n", f->ret->name);
    if (lp_func_predicts(f->kind)) fputs("    return 0;\n", out);
    fputs("}\n", out);
}

static void function(emitter *E, const lp_func *f) { function_as(E, f, false); }

/* ---- helpers written into model.c ----------------------------------------------------------------- */

static void helpers(emitter *E)
{
    FILE *out = E->out;
    const char *r = E->real;
    if (E->used_op[LP_RELU] && E->f32)
        /* An M-profile FPU (FPv4, FPv5) has no maximum instruction: a compare, a flags
         * transfer and a conditional move. The sign bit clears a float in one integer
         * instruction (bic with an arithmetic shift); the same values but for a NaN
         * with its sign clear, which this keeps (as the runtime's kernels do). */
        fputs("\n#if defined(__ARM_ARCH_PROFILE) && __ARM_ARCH_PROFILE == 'M'\n"
              "static float kd_relu(float x)\n{\n"
              "    union { float f; int32_t i; } u;\n"
              "    u.f = x;\n"
              "    u.i &= ~(u.i >> 31);\n"
              "    return u.f;\n"
              "}\n#else\n"
              "static float kd_relu(float x) { return x > 0 ? x : 0; }\n"
              "#endif\n", out);
    else if (E->used_op[LP_RELU]) fprintf(out, "\nstatic %s kd_relu(%s x) { return x > 0 ? x : 0; }\n", r, r);
    if (E->used_op[LP_SIGMOID] && E->f32) fputs("\nstatic float kd_sigmoid(float x) { return kdk_sigmoidf(x); }   /* runtime/fastmath.h */\n", out);
    else if (E->used_op[LP_SIGMOID]) fputs("\nstatic double kd_sigmoid(double x) { return 1 / (1 + exp(-x)); }\n", out);
    if (E->used_op[LP_SQUARE]) fprintf(out, "\nstatic %s kd_square(%s x) { return x * x; }\n", r, r);
    if (E->used_op[LP_SIGN]) fprintf(out, "\nstatic %s kd_sign(%s x) { return (%s)((x > 0) - (x < 0)); }\n", r, r, r);
    if (E->used_op[LP_MAX]) fprintf(out, "\n/* maximum(a, b): a on ties, as the graph IR says */\nstatic %s kd_max(%s a, %s b) { return a >= b ? a : b; }\n", r, r, r);
    if (E->used_op[LP_MIN]) fprintf(out, "\nstatic %s kd_min(%s a, %s b) { return a <= b ? a : b; }\n", r, r, r);
    if (E->used_mac && E->f32)
        fputs("\n/* acc += a * b. Cortex-M4F and M7 have a fused multiply-add instruction that GCC\n"
              " * uses at -O3 only when asked (C99 does not contract a * b + c); elsewhere the\n"
              " * plain sum, so that hosts need no fma. */\n"
              "#if defined(__ARM_FEATURE_FMA) && defined(__ARM_ARCH_PROFILE) && __ARM_ARCH_PROFILE == 'M'\n"
              "#define kd_mac(acc, a, b) ((acc) = __builtin_fmaf((a), (b), (acc)))\n"
              "#else\n"
              "#define kd_mac(acc, a, b) ((acc) += (a) * (b))\n"
              "#endif\n", out);
    if (E->used_max_acc)
        fprintf(out, "\n/* A running maximum; NaN never wins. */\nstatic %s kd_max_acc(%s acc, %s v) { return v > acc ? v : acc; }\n", r, r, r);
}

/* ---- the header --------------------------------------------------------------------------------------- */

static void shape_list(FILE *out, int rank, const int64_t *shape)
{
    fputc('{', out);
    for (int i = 0; i < rank; i++) fprintf(out, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (rank == 0) fputc('1', out);
    fputc('}', out);
}

/* ---- prepare ------------------------------------------------------------------------------------------ */

static void prepared_api(emitter *E, FILE *out)
{
    const lp_program *p = E->p;
    const char *r = E->real;
    fprintf(out, "/* The weights made ready for predict_prepared, once after they are loaded or trained (and\n"
                 " * again whenever they change): a copy of params in which each BatchNormalization right\n"
                 " * after a convolution or Dense is folded into that layer, then the Dense kernels packed\n"
                 " * for this CPU's GEMM. prepared: %s_PREPARED_SIZE %ss (64-byte aligned is best),\n"
                 " * apart from params (which stay as they are); only for this process's CPU. Returns 0,\n"
                 " * or -1 when a folded value is not finite (a moving variance at or below -epsilon). */\n"
                 "int %s_prepare(const %s *params, %s *prepared);\n", p->upper, r, p->name, r, r);
    fputs("/* predict over prepare's result: predict's outputs, to float rounding where it folded. */\n", out);
    prototype(E, out, LP_F_PREDICT_PREPARED);
    fputs(";\n", out);
}

/* <model>_prepare: params copied, then each fold kd_bn_fold_values would
 * make when compiling made by the runtime's kdk_?bn_fold, to the same bits,
 * then the weights predict_prepared's GEMMs read packed (lp_pack). */
static void prepare(emitter *E)
{
    const lp_program *p = E->p;
    FILE *out = E->out;
    const char *r = E->real;
    fprintf(out, "\nint %s_prepare(const %s *params, %s *prepared)\n{\n", p->name, r, r);
    fprintf(out, "    for (long i = 0; i < %s_PARAMS_SIZE; i++) prepared[i] = params[i];\n", p->upper);
    for (int i = 0; i < p->nfolds; i++) {
        const kd_bn_fold *f = p->folds[i];
        const int vars[] = {f->gamma, f->beta, f->bias, f->mean, f->variance};
        const char *mean = p->vars[f->mean]->name, *slash = strrchr(mean, '/');
        const kd_var *kernel = p->vars[f->kernel];
        fprintf(out, "    /* %.*s folded into %s */\n", (int)(slash ? slash - mean : (ptrdiff_t)strlen(mean)), mean,
                kernel->name);
        fprintf(out, "    if (%sbn_fold(prepared + %" PRId64 ", %" PRId64 ", %" PRId64, E->kp, kernel->offset,
                ir_shape_elems(&kernel->shape), f->channels);
        for (int j = 0; j < 5; j++) {
            if (vars[j] < 0) fputs(", NULL", out);
            else fprintf(out, ", prepared + %" PRId64, p->vars[vars[j]]->offset);
        }
        fprintf(out, ", %.17g, prepared + %" PRId64 ") != 0)\n        return -1;\n", f->epsilon, p->vars[f->into]->offset);
    }
    for (int i = 0; i < p->packs.len; i++) {
        const lp_pack *k = p->packs.items[i];
        fprintf(out, "    /* %s packed for this CPU's GEMM */\n", k->name);
        fprintf(out, "    %sgemm_pack_b(%d, %d, prepared + %" PRId64 ", %d, %d, prepared + %" PRId64 ");\n", E->kp, k->n,
                k->k, k->from, k->ldb, k->transb, k->to);
    }
    fputs("    return 0;\n}\n", out);
}

/* The largest arena of the predict functions (predicting) or of the training ones. */
static int64_t max_arena(const lp_program *p, bool predicting)
{
    int64_t n = 0;
    for (int f = LP_F_PREDICT; f < LP_F_COUNT; f++)
        if (p->funcs[f] && lp_func_predicts((lp_func_kind)f) == predicting && p->funcs[f]->arena_bytes > n)
            n = p->funcs[f]->arena_bytes;
    return n > 0 ? n : 1;
}

static void header(emitter *E, FILE *out)
{
    const lp_program *p = E->p;
    const char *U = p->upper, *n = p->name, *r = E->real;
    bool train = p->funcs[LP_F_TRAIN_STEP] != NULL;
    fprintf(out, "/* %s.h — generated by kdslc from %s (model %s). Do not edit.\n", n, p->source ? p->source : "?", n);
    if (train)
        fprintf(out, " *\n * All memory is the caller's: params (%s_PARAMS_SIZE %ss: weights, then states such\n"
                     " * as BatchNormalization's moving statistics), opt_state (%s_OPT_STATE_SIZE %ss: optimizer\n"
                     " * slots), grads (%s_GRADS_SIZE %ss), and an arena of %s_ARENA_BYTES bytes for predict\n"
                     " * (%s_TRAIN_ARENA_BYTES for grad and train_step), aligned to %s_ARENA_ALIGN bytes.\n"
                     " * Inputs and outputs are row-major [batch, ...]; 1 <= batch <= %s_MAX_BATCH (predict\n"
                     " * returns -1 and does nothing on another batch, else 0; grad and train_step return NaN).\n"
                     " * Two threads may run the functions at once on separate buffers: nothing here is\n"
                     " * global and mutable. */\n",
                U, r, U, r, U, r, U, U, U, U);
    else
        fprintf(out, " *\n * Inference only. All memory is the caller's: params (%s_PARAMS_SIZE %ss, or\n"
                     " * %s_PARAMS_BYTES bytes: weights, then states such as BatchNormalization's moving\n"
                     " * statistics) and an arena of %s_ARENA_BYTES bytes aligned to %s_ARENA_ALIGN bytes\n"
                     " * (init's opt_state may be NULL: %s_OPT_STATE_SIZE is 0).\n"
                     " * Inputs and outputs are row-major [batch, ...]; 1 <= batch <= %s_MAX_BATCH (predict\n"
                     " * returns -1 and does nothing on another batch, else 0). Two threads may run predict\n"
                     " * at once on separate buffers: nothing here is global and mutable. */\n",
                U, r, U, U, U, U, U);
    fprintf(out, "#ifndef %s_MODEL_H\n#define %s_MODEL_H\n\n", U, U);
    fputs("#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n", out);
    fprintf(out, "#define %s_MAX_BATCH %d\n", U, p->max_batch);
    fprintf(out, "#define %s_DTYPE_F64 %d\n", U, p->real == LP_F64);
    fprintf(out, "#define %s_NUM_INPUTS %d\n", U, p->ninputs);
    for (int i = 0; i < p->ninputs; i++) {
        fprintf(out, "#define %s_INPUT%d_SIZE %" PRId64 "\n", U, i, p->inputs[i].elems);
        fprintf(out, "#define %s_INPUT%d_RANK %d\n", U, i, p->inputs[i].rank);
        fprintf(out, "#define %s_INPUT%d_SHAPE ", U, i);
        shape_list(out, p->inputs[i].rank, p->inputs[i].shape);
        fputc('\n', out);
        fprintf(out, "#define %s_INPUT%d_I32 %d%s\n", U, i, p->inputs[i].i32,
                p->inputs[i].i32 ? "  /* int32_t token ids, not reals */" : "");
        if (p->inputs[i].i32)
            fprintf(out, "#define %s_INPUT%d_TOKENS %" PRId64 "  /* ids in [0, this)%s%s; others read zeros */\n", U, i,
                    p->inputs[i].rows ? p->inputs[i].rows : (int64_t)INT32_MAX, p->inputs[i].rows ? ": the input_dim of " : "",
                    p->inputs[i].rows ? p->inputs[i].rows_layer : "");
    }
    fprintf(out, "#define %s_NUM_OUTPUTS %d\n", U, p->noutputs);
    for (int i = 0; i < p->noutputs; i++) {
        fprintf(out, "#define %s_OUTPUT%d_SIZE %" PRId64 "\n", U, i, p->outputs[i].elems);
        fprintf(out, "#define %s_OUTPUT%d_RANK %d\n", U, i, p->outputs[i].rank);
        fprintf(out, "#define %s_OUTPUT%d_SHAPE ", U, i);
        shape_list(out, p->outputs[i].rank, p->outputs[i].shape);
        fputc('\n', out);
    }
    if (train) fprintf(out, "#define %s_LABEL_SIZE %" PRId64 "  /* reals per sample of labels */\n", U, p->labels[0].elems);
    /* Sizes: _SIZE counts reals (the program's float or double), _BYTES bytes;
     * ARENA_SIZE is bytes too, under its first name. */
    fprintf(out, "#define %s_PARAMS_SIZE %" PRId64 "  /* %ss */\n", U, p->params_size, r);
    fprintf(out, "#define %s_PARAMS_BYTES %" PRId64 "\n", U, p->params_size * (E->f32 ? 4 : 8));
    /* init's opt_state: 0 reals without a train block */
    fprintf(out, "#define %s_OPT_STATE_SIZE %" PRId64 "  /* %ss */\n", U, p->opt_size, r);
    if (train) fprintf(out, "#define %s_GRADS_SIZE %" PRId64 "  /* %ss */\n", U, p->grads_size, r);
    if (p->funcs[LP_F_PREDICT_PREPARED])
        fprintf(out, "#define %s_PREPARED_SIZE %" PRId64 "  /* %ss: prepare's result */\n", U, p->prepared_size, r);
    fprintf(out, "#define %s_ARENA_BYTES %" PRId64 "\n", U, max_arena(p, true));
    fprintf(out, "#define %s_ARENA_SIZE %s_ARENA_BYTES  /* bytes, not %ss */\n", U, U, r);
    if (train) {
        fprintf(out, "#define %s_TRAIN_ARENA_BYTES %" PRId64 "\n", U, max_arena(p, false));
        fprintf(out, "#define %s_TRAIN_ARENA_SIZE %s_TRAIN_ARENA_BYTES  /* bytes */\n", U, U);
    }
    fprintf(out, "#define %s_ARENA_ALIGN %d  /* the arena's start, in bytes */\n", U,
            p->arena_align < KD_ARENA_CALLER_ALIGN ? p->arena_align : KD_ARENA_CALLER_ALIGN);
    fprintf(out, "#define %s_HAS_TRAINING %d\n\n", U, train);
    fprintf(out, "/* A variable: `offset` %ss into params (weights, states) or opt_state (slots). */\n"
                 "typedef struct %s_tensor_info {\n"
                 "    const char *name;\n    long offset;\n    int rank;\n    int shape[8];\n"
                 "    int kind;          /* 0 weight, 1 state, 2 optimizer slot */\n"
                 "    int trainable;\n    long grad_offset;  /* into grads; -1 if none */\n"
                 "} %s_tensor_info;\n\n", r, n, n);
    fprintf(out, "extern const %s_tensor_info %s_params[];\nextern const int %s_num_params;\n", n, n, n);
    fprintf(out, "extern const %s_tensor_info %s_opt_slots[];\nextern const int %s_num_opt_slots;\n\n", n, n, n);
    fprintf(out, "/* Keras' initializers, deterministic in seed; opt_state (zeroed) may be NULL. */\n");
    prototype(E, out, LP_F_INIT);
    fputs(";\n/* Inference: inputs[i] and outputs[i] hold batch samples each; returns 0, or -1 (and\n * does nothing) when batch is not in [1, MAX_BATCH]. */\n", out);
    prototype(E, out, LP_F_PREDICT);
    fputs(";\n", out);
    if (p->funcs[LP_F_PREDICT_PREPARED]) prepared_api(E, out);
    if (p->embedded)
        fprintf(out, "/* predict with the weights compiled in. */\n"
                     "int %s_predict_embedded(const %s *const *inputs, %s *const *outputs, int batch, void *arena);\n",
                n, E->in_t, r);
    if (train) {
        fputs("/* Forward in training mode (dropout, batch statistics; state updates go into params)\n"
              " * and backward: the gradient of every trainable weight into grads; returns the mean\n"
              " * loss. labels: one-hot [batch, classes] for the categorical losses, else targets.\n"
              " * step seeds the dropout masks. */\n", out);
        prototype(E, out, LP_F_GRAD);
        fputs(";\n/* The optimizer's update from grads; step counts the updates before this one. */\n", out);
        prototype(E, out, LP_F_APPLY);
        fputs(";\n/* grad + apply_gradients in one pass; outputs0 (may be NULL) gets the first output. */\n", out);
        prototype(E, out, LP_F_TRAIN_STEP);
        fputs(";\n", out);
    }
    fputs("\n#ifdef __cplusplus\n}\n#endif\n\n#endif\n", out);
}

/* ---- model.c ------------------------------------------------------------------------------------------- */

static void table(emitter *E, const char *name, const kd_vec *v)
{
    FILE *out = E->out;
    fprintf(out, "\nconst %s_tensor_info %s_%s[] = {\n", E->p->name, E->p->name, name);
    for (int i = 0; i < v->len; i++) {
        const lp_tensor_info *t = v->items[i];
        fprintf(out, "    {\"%s\", %" PRId64 ", %d, {", t->name, t->offset, t->rank);
        for (int d = 0; d < 8; d++) fprintf(out, "%s%" PRId64, d ? ", " : "", d < t->rank ? t->shape[d] : 0);
        fprintf(out, "}, %d, %d, %" PRId64 "},\n", t->kind, t->trainable, t->grad_offset);
    }
    if (v->len == 0) fputs("    {\"\", 0, 0, {0, 0, 0, 0, 0, 0, 0, 0}, 0, 0, -1},\n", out);
    fprintf(out, "};\nconst int %s_num_%s = %d;\n", E->p->name, name, v->len);
}

static void embedded(emitter *E)
{
    const lp_program *p = E->p;
    FILE *out = E->out;
    fprintf(out, "\nstatic const %s %s_weights[%" PRId64 "] = {\n", E->real, p->name, p->params_size ? p->params_size : 1);
    for (int64_t i = 0; i < p->params_size; i++) {
        fputs(i % 8 == 0 ? "    " : " ", out);
        put_real(out, p->embedded[i], E->f32);
        fputc(',', out);
        if (i % 8 == 7 || i == p->params_size - 1) fputc('\n', out);
    }
    if (p->params_size == 0) fputs("    0\n", out);
    fputs("};\n", out);
    function_as(E, p->funcs[LP_F_PREDICT_FOLDED] ? p->funcs[LP_F_PREDICT_FOLDED] : p->funcs[LP_F_PREDICT], true);
}

static void source(emitter *E, const char *header_name)
{
    const lp_program *p = E->p;
    FILE *out = E->out;
    fprintf(out, "/* %s.c — generated by kdslc from %s (model %s). Do not edit.\n", p->name,
            p->source ? p->source : "?", p->name);
    fprintf(out, " * %s, max batch %d. Each kernel is commented with the KDSL line and layer it comes\n"
                 " * from; the heavy ones call the kdsl runtime (runtime/kernels.h). */\n",
            E->f32 ? "float" : "double", p->max_batch);
    fprintf(out, "#include \"%s\"\n\n#include <math.h>\n#include <stddef.h>\n#include <stdint.h>\n\n#include \"kernels.h\"\n",
            header_name);
    const char *target = E->o ? E->o->target : NULL;
    if (target)
        fprintf(out, "\n/* kdslc compile --target %s: GCC and clang compile this file's loops for %s\n"
                     " * (the kernels in libkdslrt choose their instruction set at run time). */\n"
                     "#if defined(__x86_64__) && defined(__clang__)\n"
                     "#pragma clang attribute push(__attribute__((target(\"arch=%s\"))), apply_to = function)\n"
                     "#elif defined(__x86_64__) && defined(__GNUC__)\n"
                     "#pragma GCC target(\"arch=%s\")\n"
                     "#endif\n",
                target, target, target, target);
    helpers(E);
    table(E, "params", &p->params);
    table(E, "opt_slots", &p->slots);
    for (int f = 0; f < LP_F_COUNT; f++) {
        if (!p->funcs[f] || lp_func_c_only((lp_func_kind)f)) continue;
        function(E, p->funcs[f]);
        if (f == LP_F_PREDICT && p->funcs[LP_F_PREDICT_PREPARED]) {   /* predict's twins next to it */
            prepare(E);
            function(E, p->funcs[LP_F_PREDICT_PREPARED]);
        }
    }
    if (p->embedded) embedded(E);
    if (target) fputs("\n#if defined(__x86_64__) && defined(__clang__)\n#pragma clang attribute pop\n#endif\n", out);
}

int kd_emit_c(const lp_program *p, const kd_codegen_options *o, FILE *c_out, FILE *h_out, kd_diags *d)
{
    emitter E = {.p = p, .o = o, .f32 = p->real == LP_F32};
    E.real = E.f32 ? "float" : "double";
    E.kp = E.f32 ? "kdk_s" : "kdk_d";
    E.in_t = E.real;
    for (int i = 0; i < p->ninputs; i++)
        if (p->inputs[i].i32) E.in_t = "void";
    scan(&E);
    const char *hname = o && o->header_name ? o->header_name : kd_format(p->arena, "%s.h", p->name);
    if (h_out) {
        header(&E, h_out);
        if (fflush(h_out) != 0 || ferror(h_out)) {
            kd_error(d, (kd_loc){0}, "cannot write the header: write error");
            return 1;
        }
    }
    if (c_out) {
        E.out = c_out;
        source(&E, hname);
        if (fflush(c_out) != 0 || ferror(c_out)) {
            kd_error(d, (kd_loc){0}, "cannot write the C source: write error");
            return 1;
        }
    }
    return 0;
}
