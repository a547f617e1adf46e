/* loopexec.c — runs a function of a double-precision loop-IR program
 * (kd_back_end with f64) directly, statement by statement, with the
 * semantics of the C the emitter writes (emit_c.c): the arena laid out as
 * arena_plan.c placed it, buffers updated in place, the runtime's kdk_d*
 * kernels called through libffi from lp_kernels[]'s argument kinds. No C
 * compiler and no libgccjit run, so the differential tester can check
 * every lowering, fusion, in-place and arena decision of a program in
 * milliseconds, to double precision.
 *
 * Iterations of loops marked parallel run in reverse order: a loop whose
 * iterations are not independent, which a backend may split across
 * threads, then computes something else. */
#define _GNU_SOURCE
#include "loopexec.h"

#include "random.h"

#include <dlfcn.h>
#include <ffi.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef union value {
    int64_t i;
    double r;
} value;

typedef struct exec {
    const lp_program *p;
    const lp_func *f;
    const lx_args *args;
    value *vars;           /* by lp_var id */
    void **ptr;            /* by buffer id */
    double *locals;        /* the small buffers kept on the stack by the backends */
    char *why;
    size_t why_len;
    bool failed;
} exec;

static void fail(exec *X, const char *what)
{
    if (!X->failed) snprintf(X->why, X->why_len, "%s", what);
    X->failed = true;
}

static void *buf_ptr(exec *X, const lp_buf *b)
{
    return b ? X->ptr[b->id] : NULL;
}

static value eval(exec *X, const lp_expr *e);

static double real_of(exec *X, const lp_expr *e) { return eval(X, e).r; }
static int64_t int_of(exec *X, const lp_expr *e) { return eval(X, e).i; }

static value eval(exec *X, const lp_expr *e)
{
    value v = {0};
    switch (e->kind) {
    case LP_E_INT: v.i = e->ival; return v;
    case LP_E_REAL: v.r = e->rval; return v;
    case LP_E_VAR: return X->vars[e->var->id];
    case LP_E_PARAM:
        switch (e->param) {
        case LP_P_BATCH: v.i = X->args->batch; break;
        case LP_P_STEP: v.i = (int64_t)X->args->step; break;
        case LP_P_LR: v.r = X->args->learning_rate; break;
        case LP_P_SEED: v.i = (int64_t)X->args->seed; break;
        default: fail(X, "unknown parameter"); break;
        }
        return v;
    case LP_E_LOAD: {
        int64_t i = int_of(X, e->a);
        void *p = buf_ptr(X, e->buf);
        if (!p) return fail(X, "a load from a buffer the caller did not pass"), v;
        if (e->buf->elem == LP_ELEM_I32) v.i = ((const int32_t *)p)[i];
        else v.r = ((const double *)p)[i];
        return v;
    }
    case LP_E_SELECT: return int_of(X, e->a) ? eval(X, e->b) : eval(X, e->c);
    case LP_E_DROPOUT: {
        uint32_t bits = kdk_dropout_bits(e->dropout.seed, X->args->step, e->dropout.salt, (uint64_t)int_of(X, e->a));
        v.r = bits >= e->dropout.threshold ? e->dropout.scale : 0;
        return v;
    }
    case LP_E_OP: break;
    }
    if (e->type == LP_INT && e->op != LP_GT && e->op != LP_GE && e->op != LP_LT && e->op != LP_LE && e->op != LP_EQ &&
        e->op != LP_NE) {
        int64_t a = e->a ? int_of(X, e->a) : 0, b = e->b ? int_of(X, e->b) : 0;
        switch (e->op) {
        case LP_NEG: v.i = -a; break;
        case LP_ADD: v.i = a + b; break;
        case LP_SUB: v.i = a - b; break;
        case LP_MUL: v.i = a * b; break;
        case LP_DIV: v.i = b ? a / b : 0; break;
        case LP_MIN: v.i = a <= b ? a : b; break;
        case LP_MAX: v.i = a >= b ? a : b; break;
        case LP_AND: v.i = a && b; break;
        case LP_OR: v.i = a || b; break;
        case LP_NOT: v.i = !a; break;
        default: fail(X, "an integer operation the executor does not know"); break;
        }
        return v;
    }
    switch (e->op) {
    case LP_GT: case LP_GE: case LP_LT: case LP_LE: case LP_EQ: case LP_NE: {
        bool ints = e->a->type == LP_INT;
        double a = ints ? (double)int_of(X, e->a) : real_of(X, e->a), b = ints ? (double)int_of(X, e->b) : real_of(X, e->b);
        v.i = e->op == LP_GT ? a > b : e->op == LP_GE ? a >= b : e->op == LP_LT ? a < b : e->op == LP_LE ? a <= b
            : e->op == LP_EQ ? a == b : a != b;
        return v;
    }
    case LP_TO_REAL: v.r = (double)int_of(X, e->a); return v;
    default: break;
    }
    double a = e->a ? real_of(X, e->a) : 0, b = e->b ? real_of(X, e->b) : 0;
    switch (e->op) {
    case LP_NEG: v.r = -a; break;
    case LP_EXP: v.r = exp(a); break;
    case LP_LOG: v.r = log(a); break;
    case LP_SQRT: v.r = sqrt(a); break;
    case LP_RSQRT: v.r = 1 / sqrt(a); break;
    case LP_TANH: v.r = tanh(a); break;
    case LP_SIGMOID: v.r = 1 / (1 + exp(-a)); break;
    case LP_ABS: v.r = fabs(a); break;
    case LP_SIGN: v.r = (double)((a > 0) - (a < 0)); break;
    case LP_RELU: v.r = a > 0 ? a : 0; break;
    case LP_SQUARE: v.r = a * a; break;
    case LP_LOG1P: v.r = log1p(a); break;
    case LP_EXPM1: v.r = expm1(a); break;
    case LP_ERF: v.r = erf(a); break;
    case LP_ADD: v.r = a + b; break;
    case LP_SUB: v.r = a - b; break;
    case LP_MUL: v.r = a * b; break;
    case LP_DIV: v.r = a / b; break;
    case LP_MIN: v.r = a <= b ? a : b; break;
    case LP_MAX: v.r = a >= b ? a : b; break;
    default: fail(X, "a real operation the executor does not know"); break;
    }
    return v;
}

static double accumulate(lp_acc acc, double old, double v)
{
    return acc == LP_ACC_ADD ? old + v : acc == LP_ACC_MAX ? (v > old ? v : old) : v;
}

/* A runtime kernel, kdk_d<name>, called with its arguments' kinds. */
static void call(exec *X, const lp_call *c)
{
    const lp_kernel_info *ki = &lp_kernels[c->k];
    char name[64];
    snprintf(name, sizeof name, "kdk_d%s", ki->name);
    void *fn = dlsym(RTLD_DEFAULT, name);
    if (!fn) return fail(X, "a runtime kernel is not in this executable (link it whole, export it)");
    ffi_type *types[LP_MAX_ARGS];
    void *argp[LP_MAX_ARGS];
    union {
        int i;
        long l;
        double d;
        unsigned long long u;
        void *p;
    } vals[LP_MAX_ARGS];
    for (int j = 0; j < ki->nargs; j++) {
        const lp_arg *a = &c->args[j];
        switch (ki->args[j]) {
        case LP_A_INT: types[j] = &ffi_type_sint; vals[j].i = (int)int_of(X, a->e); break;
        case LP_A_LONG: types[j] = &ffi_type_slong; vals[j].l = (long)int_of(X, a->e); break;
        case LP_A_REAL:
        case LP_A_F64: types[j] = &ffi_type_double; vals[j].d = real_of(X, a->e); break;
        case LP_A_U64: types[j] = &ffi_type_uint64; vals[j].u = (unsigned long long)int_of(X, a->e); break;
        default: {
            types[j] = &ffi_type_pointer;
            char *p = buf_ptr(X, a->buf);
            size_t elem = ki->args[j] == LP_A_IN_I32 || ki->args[j] == LP_A_OUT_I32 ? sizeof(int32_t) : sizeof(double);
            if (p && a->off) p += int_of(X, a->off) * (int64_t)elem;
            vals[j].p = p;
            break;
        }
        }
        argp[j] = &vals[j];
    }
    ffi_cif cif;
    if (ffi_prep_cif(&cif, FFI_DEFAULT_ABI, (unsigned)ki->nargs, ki->returns_double ? &ffi_type_double : &ffi_type_void,
                     types) != FFI_OK)
        return fail(X, "libffi cannot describe the call");
    double ret = 0;
    ffi_call(&cif, FFI_FN(fn), &ret, argp);
    if (c->result) X->vars[c->result->id].r = ret;
}

static void run_stmts(exec *X, const kd_vec *body)
{
    for (int i = 0; i < body->len && !X->failed; i++) {
        const lp_stmt *s = body->items[i];
        switch (s->kind) {
        case LP_S_FOR: {
            int64_t n = int_of(X, s->extent);
            for (int64_t k = 0; k < n && !X->failed; k++) {
                X->vars[s->var->id].i = s->parallel ? n - 1 - k : k;
                run_stmts(X, &s->body);
            }
            break;
        }
        case LP_S_STORE: {
            double *p = buf_ptr(X, s->buf);
            if (!p) return fail(X, "a store to a buffer the caller did not pass");
            if (s->buf->elem == LP_ELEM_I32) return fail(X, "an element-wise store to an int32 buffer");
            int64_t k = int_of(X, s->index);
            double v = real_of(X, s->value);
            p[k] = accumulate(s->acc, p[k], v);
            break;
        }
        case LP_S_LET: X->vars[s->var->id] = eval(X, s->value); break;
        case LP_S_SET:
            if (s->var->type == LP_INT) X->vars[s->var->id] = eval(X, s->value);
            else X->vars[s->var->id].r = accumulate(s->acc, X->vars[s->var->id].r, real_of(X, s->value));
            break;
        case LP_S_CALL: call(X, s->call); break;
        case LP_S_IF:
            if (s->cond ? int_of(X, s->cond) != 0 : buf_ptr(X, s->if_buf) != NULL) run_stmts(X, &s->body);
            break;
        }
    }
}

/* Where each buffer is, as the emitted C has it. */
static bool place_buffers(exec *X)
{
    const lp_func *f = X->f;
    const lx_args *a = X->args;
    int64_t nlocal = 0;
    for (int i = 0; i < f->bufs.len; i++) {
        const lp_buf *b = f->bufs.items[i];
        if (b->space == LP_ARENA && b->local) nlocal += b->elems;
    }
    X->locals = calloc((size_t)nlocal + 1, sizeof(double));
    if (!X->locals) return false;
    nlocal = 0;
    for (int i = 0; i < f->bufs.len; i++) {
        const lp_buf *b = f->bufs.items[i];
        void *p = NULL;
        switch (b->space) {
        case LP_PARAMS: p = a->params + b->offset; break;
        case LP_OPT: p = a->opt_state ? a->opt_state + b->offset : NULL; break;
        case LP_GRADS: p = a->grads ? a->grads + b->offset : NULL; break;
        case LP_INPUT: p = (void *)a->inputs[b->index]; break;
        case LP_LABEL: p = (void *)a->labels; break;
        case LP_OUTPUT: p = a->outputs ? a->outputs[b->index] : NULL; break;
        case LP_ARENA:
            if (b->local) p = X->locals + nlocal, nlocal += b->elems;
            else p = (char *)a->arena + b->offset;
            break;
        default: return false;
        }
        X->ptr[b->id] = p;
    }
    return true;
}

int lx_run(const lp_program *p, lp_func_kind kind, const lx_args *args, double *ret, char *why, size_t why_len)
{
    const lp_func *f = p->funcs[kind];
    if (p->real != LP_F64) return snprintf(why, why_len, "the executor runs f64 programs"), -1;
    if (!f) return snprintf(why, why_len, "the program has no %s", lp_func_names[kind]), -1;
    exec X = {.p = p, .f = f, .args = args, .why = why, .why_len = why_len};
    X.vars = calloc((size_t)f->vars.len + 1, sizeof *X.vars);
    X.ptr = calloc((size_t)f->bufs.len + 1, sizeof *X.ptr);
    if (!X.vars || !X.ptr || !place_buffers(&X)) fail(&X, "out of memory");
    for (int k = 0; k < f->kernels.len && !X.failed; k++) run_stmts(&X, &((const lp_kernel *)f->kernels.items[k])->body);
    if (!X.failed && ret) *ret = f->ret ? ((const double *)X.ptr[f->ret->id])[0] : 0;
    free(X.vars);
    free(X.ptr);
    free(X.locals);
    return X.failed ? -1 : 0;
}
