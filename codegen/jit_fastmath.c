/* jit_fastmath.c — runtime/fastmath.h through libgccjit (jit_fastmath.h).
 * Each C statement of fastmath.h is one assignment here, in the same order
 * and with the same float constants; C's `c ? y : x` into x is a block that
 * assigns y when c holds. GCC if-converts those blocks once the functions
 * are inlined, so the element-wise loops that call them vectorise. */
#include <stdbool.h>
#include <stdio.h>

#include "fastmath.h"
#include "jit_fastmath.h"

typedef struct fm {
    gcc_jit_context *c;
    gcc_jit_function *fn;
    gcc_jit_block *b;
    gcc_jit_type *f, *u32;
    int nblk, nlocal;
} fm;

static gcc_jit_rvalue *K(fm *m, float v) { return gcc_jit_context_new_rvalue_from_double(m->c, m->f, v); }
static gcc_jit_rvalue *KU(fm *m, uint32_t v) { return gcc_jit_context_new_rvalue_from_long(m->c, m->u32, (long)v); }
static gcc_jit_rvalue *RV(gcc_jit_lvalue *v) { return gcc_jit_lvalue_as_rvalue(v); }

static gcc_jit_rvalue *bin(fm *m, enum gcc_jit_binary_op op, gcc_jit_rvalue *a, gcc_jit_rvalue *b)
{
    return gcc_jit_context_new_binary_op(m->c, NULL, op, gcc_jit_rvalue_get_type(a), a, b);
}
#define ADD(a, b) bin(m, GCC_JIT_BINARY_OP_PLUS, a, b)
#define SUB(a, b) bin(m, GCC_JIT_BINARY_OP_MINUS, a, b)
#define MUL(a, b) bin(m, GCC_JIT_BINARY_OP_MULT, a, b)
#define DIV(a, b) bin(m, GCC_JIT_BINARY_OP_DIVIDE, a, b)
#define LT(a, b) gcc_jit_context_new_comparison(m->c, NULL, GCC_JIT_COMPARISON_LT, a, b)
#define GT(a, b) gcc_jit_context_new_comparison(m->c, NULL, GCC_JIT_COMPARISON_GT, a, b)
#define NEG(a) gcc_jit_context_new_unary_op(m->c, NULL, GCC_JIT_UNARY_OP_MINUS, gcc_jit_rvalue_get_type(a), a)

static gcc_jit_lvalue *let(fm *m, gcc_jit_type *t, gcc_jit_rvalue *v)
{
    char name[16];
    snprintf(name, sizeof name, "v%d", m->nlocal++);
    gcc_jit_lvalue *x = gcc_jit_function_new_local(m->fn, NULL, t, name);
    gcc_jit_block_add_assignment(m->b, NULL, x, v);
    return x;
}

static void set(fm *m, gcc_jit_lvalue *x, gcc_jit_rvalue *v) { gcc_jit_block_add_assignment(m->b, NULL, x, v); }

/* x = cond ? y : x */
static void set_if(fm *m, gcc_jit_rvalue *cond, gcc_jit_lvalue *x, gcc_jit_rvalue *y)
{
    char name[16];
    snprintf(name, sizeof name, "then%d", m->nblk);
    gcc_jit_block *then = gcc_jit_function_new_block(m->fn, name);
    snprintf(name, sizeof name, "join%d", m->nblk++);
    gcc_jit_block *join = gcc_jit_function_new_block(m->fn, name);
    gcc_jit_block_end_with_conditional(m->b, NULL, cond, then, join);
    gcc_jit_block_add_assignment(then, NULL, x, y);
    gcc_jit_block_end_with_jump(then, NULL, join);
    m->b = join;
}

static gcc_jit_rvalue *begin(fm *m, const char *name)
{
    gcc_jit_param *x = gcc_jit_context_new_param(m->c, NULL, m->f, "x");
    m->fn = gcc_jit_context_new_function(m->c, NULL, GCC_JIT_FUNCTION_ALWAYS_INLINE, m->f, name, 1, &x, 0);
    m->b = gcc_jit_function_new_block(m->fn, "entry");
    m->nblk = m->nlocal = 0;
    return gcc_jit_param_as_rvalue(x);
}

static gcc_jit_rvalue *call(fm *m, gcc_jit_function *fn, gcc_jit_rvalue *x)
{
    return gcc_jit_context_new_call(m->c, NULL, fn, 1, &x);
}

static gcc_jit_rvalue *poly(fm *m, gcc_jit_rvalue *x, const float *coef, int n)
{
    gcc_jit_lvalue *p = let(m, m->f, K(m, coef[0]));
    for (int i = 1; i < n; i++) set(m, p, ADD(MUL(RV(p), x), K(m, coef[i])));
    return RV(p);
}

static gcc_jit_function *build_exp(fm *m)
{
    static const float coef[] = {KDK_EXP_P0, KDK_EXP_P1, KDK_EXP_P2, KDK_EXP_P3, KDK_EXP_P4, KDK_EXP_P5};
    gcc_jit_lvalue *x = let(m, m->f, begin(m, "kd_expf_fast"));
    set_if(m, GT(RV(x), K(m, KDK_EXP_HI)), x, K(m, KDK_EXP_HI));
    set_if(m, LT(RV(x), K(m, KDK_EXP_LO)), x, K(m, KDK_EXP_LO));
    gcc_jit_lvalue *t = let(m, m->f, ADD(MUL(RV(x), K(m, KDK_LOG2E)), K(m, KDK_ROUND_MAGIC)));
    gcc_jit_lvalue *n = let(m, m->u32, SUB(gcc_jit_context_new_bitcast(m->c, NULL, RV(t), m->u32),
                                           KU(m, kdk_float_bits(KDK_ROUND_MAGIC))));
    gcc_jit_lvalue *fn = let(m, m->f, SUB(RV(t), K(m, KDK_ROUND_MAGIC)));
    gcc_jit_lvalue *r = let(m, m->f, SUB(RV(x), MUL(RV(fn), K(m, KDK_LN2_HI))));
    set(m, r, SUB(RV(r), MUL(RV(fn), K(m, KDK_LN2_LO))));
    gcc_jit_lvalue *p = let(m, m->f, poly(m, RV(r), coef, 6));
    set(m, p, ADD(ADD(MUL(RV(p), MUL(RV(r), RV(r))), RV(r)), K(m, 1.0f)));
    gcc_jit_rvalue *scale = gcc_jit_context_new_bitcast(m->c, NULL, bin(m, GCC_JIT_BINARY_OP_LSHIFT, ADD(RV(n), KU(m, 127)), KU(m, 23)), m->f);
    gcc_jit_block_end_with_return(m->b, NULL, MUL(RV(p), scale));
    return m->fn;
}

static gcc_jit_function *build_sigmoid(fm *m, gcc_jit_function *exp)
{
    gcc_jit_rvalue *x = begin(m, "kd_sigmoid");
    gcc_jit_block_end_with_return(m->b, NULL, DIV(K(m, 1.0f), ADD(K(m, 1.0f), call(m, exp, NEG(x)))));
    return m->fn;
}

static gcc_jit_function *build_tanh(fm *m, gcc_jit_function *exp)
{
    static const float coef[] = {KDK_TANH_P0, KDK_TANH_P1, KDK_TANH_P2, KDK_TANH_P3, KDK_TANH_P4};
    gcc_jit_rvalue *x = begin(m, "kd_tanh");
    gcc_jit_lvalue *a = let(m, m->f, x);
    set_if(m, LT(x, K(m, 0)), a, NEG(x));
    gcc_jit_lvalue *z = let(m, m->f, MUL(x, x));
    gcc_jit_lvalue *p = let(m, m->f, poly(m, RV(z), coef, 5));
    gcc_jit_lvalue *small = let(m, m->f, ADD(MUL(MUL(RV(p), RV(z)), x), x));
    gcc_jit_lvalue *e = let(m, m->f, call(m, exp, MUL(K(m, -2.0f), RV(a))));
    gcc_jit_lvalue *big = let(m, m->f, DIV(SUB(K(m, 1.0f), RV(e)), ADD(K(m, 1.0f), RV(e))));
    set_if(m, LT(x, K(m, 0)), big, NEG(RV(big)));
    set_if(m, LT(RV(a), K(m, KDK_TANH_SMALL)), big, RV(small));
    gcc_jit_block_end_with_return(m->b, NULL, RV(big));
    return m->fn;
}

gcc_jit_function *kd_jit_fastmath_fn(gcc_jit_context *c, gcc_jit_type *f, kd_jit_fastmath *made, bool tanh)
{
    fm m = {.c = c, .f = f, .u32 = gcc_jit_context_get_int_type(c, 4, 0)};
    if (!made->exp) made->exp = build_exp(&m);
    if (tanh && !made->tanh) made->tanh = build_tanh(&m, made->exp);
    if (!tanh && !made->sigmoid) made->sigmoid = build_sigmoid(&m, made->exp);
    return tanh ? made->tanh : made->sigmoid;
}
