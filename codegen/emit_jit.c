/* emit_jit.c — the libgccjit backend: an lp_program built through the
 * libgccjit API and compiled in process (no C text, no external compiler).
 *
 * The functions have the generated C API's signatures (kdh_model_fns, host/model_fns.h)
 * and the C emitter's semantics (emit_c.c), construct by construct, so that
 * both backends compute bit-identical results:
 *   - every expression carries the C type the C text would give it: LP_INT is
 *     `long`; LP_REAL is float, except the double a kernel call returns
 *     (softmax_xent's sum), which promotes what it meets as C does;
 *   - the helpers model.c defines (kd_relu, kd_max, kd_max_acc, ...) are
 *     always-inline JIT functions with the same bodies; libm through GCC's
 *     builtins (__builtin_expf ...), as the C compiler treats expf; sigmoid
 *     and tanh are runtime/fastmath.h's, built by jit_fastmath.c;
 *   - `a ? b : c`, `&&` and `||` evaluate only the operand C would (blocks);
 *   - -ffp-contract=off: libgccjit's default is GCC's "fast" (fused
 *     multiply-add wherever -march allows), which the C backend compiled as
 *     ISO C does not do.
 * Runtime kernels (kdk_s*, the initialisers among them) and the thread
 * pool are called through a table of pointers internal to the code
 * (kdsl_jit_imports, IMPORTS entries), filled when the code is loaded: the
 * code depends neither on the executable's dynamic symbol table nor on
 * this process's addresses, so that it can be kept between runs
 * (jit_cache.c: with kd_jit_options.cache_dir, the library libgccjit wrote
 * to the cache is loaded in place of an in-memory result). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "codegen.h"
#include "jit.h"
#include "jit_fastmath.h"

#include <libgccjit.h>

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "jit_cache.h"
#include "kernels.h"
#include "host/parallel_kernels.h"

enum { MAX_WORKERS = 8 };   /* processes compiling one program at once (jit_plan) */

struct kd_jit {
    gcc_jit_result *result;   /* worker 0's code compiled in memory, or NULL */
    void *lib[MAX_WORKERS];   /* the libraries of the others, or all of them from the cache (dlopen) */
    int nlib;
    kd_jit_cache_use cache;
    char cache_warning[512];
    double seconds;
    char march[64];
};

/* The code's table of the host's functions: the kernels by lp_kernel_id,
 * then the thread pool's kdh_parallel_range and grad's call-out
 * kdh_grads_ready (model_fns.h). */
enum { IMPORT_PARALLEL_RANGE = LP_K_COUNT, IMPORT_GRADS_READY, IMPORTS };
#define IMPORTS_FN "kdsl_jit_imports"   /* void **kdsl_jit_imports(void): the table */

/* The address of every kernel a call may name (f32), from runtime/kernel_list.h:
 * kdk_s<name>, or for the rows marked MT the host pool's thread-split wrapper
 * kdh_s<name>_mt (parallel.h; the kdk_ kernel itself while the pool has one
 * thread). Each is assigned to a pointer of the row's type, so a wrapper
 * whose signature differs from its row does not compile. */
typedef void (*kdj_fn)(void);
#define KDJ_ADDR_MT(name) kdh_s##name##_mt
#define KDJ_ADDR_ST(name) kdk_s##name
#define KDJ_CASE_(ID, name, ret, host, ...) \
    case LP_K_##ID: { \
        KDK_RET_##ret (*fn)(KDK_MAP(KDK_PARAM_S, __VA_ARGS__)) = KDJ_ADDR_##host(name); \
        return (kdj_fn)fn; \
    }
static kdj_fn kernel_address(lp_kernel_id k)
{
    switch (k) {
    KDK_KERNEL_LIST(KDJ_CASE_)
    default: return NULL;
    }
}
#undef KDJ_CASE_
#undef KDJ_ADDR_MT
#undef KDJ_ADDR_ST

/* ---- the builder ------------------------------------------------------------------------------ */

/* The C type of a value, as the C text would have it. */
typedef enum ctype { CT_LONG, CT_FLOAT, CT_DOUBLE } ctype;

typedef struct val {
    gcc_jit_rvalue *rv;
    ctype t;
} val;

enum { P_PARAMS, P_OPT, P_GRADS, P_INPUTS, P_LABELS, P_OUTPUTS, P_OUTPUTS0, P_BATCH, P_STEP, P_LR, P_SEED, P_ARENA, P_COUNT };

typedef struct jb {
    gcc_jit_context *ctx;
    const lp_program *p;
    char *why;
    size_t why_len;
    bool failed;
    /* types */
    gcc_jit_type *t_void, *t_int, *t_long, *t_uint, *t_ull, *t_bool, *t_float, *t_double, *t_char;
    gcc_jit_type *t_voidp, *t_charp, *t_floatp, *t_floatpp, *t_intp;
    /* helpers, made on first use */
    gcc_jit_function *h_relu, *h_square, *h_sign, *h_max, *h_min, *h_max_acc, *h_imax, *h_imin;
    gcc_jit_function *h_mix64, *h_dropout_bits;
    kd_jit_fastmath fastmath;   /* kd_sigmoid, kd_tanh */
    gcc_jit_lvalue *imports;      /* the table of host functions (IMPORTS_FN) */
    const struct jit_plan *plan;  /* which worker builds what (plan_work) */
    int worker;                   /* the one building this context */
    gcc_jit_type *sig_type[11];   /* the parameters' types of the last new_function */
    int nsig;
    gcc_jit_function *b_expf, *b_logf, *b_sqrtf, *b_fabsf, *b_log1pf, *b_expm1f, *b_erff;
    /* the function being built */
    const lp_func *f;
    gcc_jit_function *fn;
    gcc_jit_block *blk;
    gcc_jit_rvalue *param[P_COUNT];
    gcc_jit_lvalue **bufp;   /* by buffer id: the pointer local, or NULL if unused */
    gcc_jit_lvalue **var;    /* by var id */
    ctype *var_t;
    int ntmp, nblk;
    /* the thread split of loops (par_site): outlined bodies get their values
     * through one struct per function, made on first use */
    const char *fname;            /* <model>_<func> */
    gcc_jit_type *ptype[P_COUNT];
    kd_arena *scratch;
    bool serial;                  /* kd_jit_options.serial_loops */
    bool split_small;             /* kd_jit_options.split_small_loops */
    int part_kernels;             /* kd_jit_options.part_kernels, or PART_KERNELS */
    int loop_depth;               /* FOR loops around the statement being built */
    bool outlined;                /* building an outlined body */
    int npar;
    gcc_jit_struct *ctx_struct;
    gcc_jit_field **f_buf, **f_var, *f_param[P_COUNT];
    gcc_jit_rvalue *locals_param;  /* a part's block of the stack buffers (build_function) */
    kd_thread_planner tplan;      /* the thread split of loops, per function (thread_plan.c) */
    /* build_function's per-function arrays, shared by its parts (begin) */
    gcc_jit_lvalue **var_all, **bufp_all;
    int *var_set, nvar_set, *bufp_set, nbufp_set, *used_ids;
    bool *used_all;
    gcc_jit_lvalue *ctx_local;
    int *grads_done;              /* grad: by variable, the last kernel touching its gradient, or -1 */
} jb;

static void fail(jb *J, const char *fmt, ...)
{
    if (J->failed) return;
    J->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(J->why, J->why_len, fmt, ap);
    va_end(ap);
}

static gcc_jit_type *type_of(jb *J, ctype t)
{
    return t == CT_LONG ? J->t_long : t == CT_FLOAT ? J->t_float : J->t_double;
}

static gcc_jit_rvalue *conv(jb *J, val v, ctype t)
{
    if (!v.rv) return NULL;
    return v.t == t ? v.rv : gcc_jit_context_new_cast(J->ctx, NULL, v.rv, type_of(J, t));
}

static gcc_jit_rvalue *c_long(jb *J, long v) { return gcc_jit_context_new_rvalue_from_long(J->ctx, J->t_long, v); }

static gcc_jit_rvalue *c_float(jb *J, double v)
{
    return gcc_jit_context_new_rvalue_from_double(J->ctx, J->t_float, (double)(float)v);
}

static gcc_jit_rvalue *rv_of(gcc_jit_lvalue *lv) { return gcc_jit_lvalue_as_rvalue(lv); }

static gcc_jit_lvalue *new_tmp(jb *J, gcc_jit_type *t)
{
    char name[32];
    snprintf(name, sizeof name, "_t%d", J->ntmp++);
    return gcc_jit_function_new_local(J->fn, NULL, t, name);
}

static gcc_jit_block *new_block(jb *J, const char *what)
{
    char name[48];
    snprintf(name, sizeof name, "%s%d", what, J->nblk++);
    return gcc_jit_function_new_block(J->fn, name);
}

/* x != 0 as a bool. */
static gcc_jit_rvalue *truth(jb *J, val x)
{
    if (x.t == CT_LONG) return gcc_jit_context_new_comparison(J->ctx, NULL, GCC_JIT_COMPARISON_NE, x.rv, c_long(J, 0));
    return gcc_jit_context_new_comparison(J->ctx, NULL, GCC_JIT_COMPARISON_NE, x.rv,
                                          gcc_jit_context_zero(J->ctx, type_of(J, x.t)));
}

/* ---- the helper functions, as model.c defines them ---------------------------------------------- */

static gcc_jit_function *helper_begin(jb *J, const char *name, gcc_jit_type *ret, int n, gcc_jit_type **types,
                                      const char **names, gcc_jit_param **params)
{
    for (int i = 0; i < n; i++) params[i] = gcc_jit_context_new_param(J->ctx, NULL, types[i], names[i]);
    return gcc_jit_context_new_function(J->ctx, NULL, GCC_JIT_FUNCTION_ALWAYS_INLINE, ret, name, n, params, 0);
}

/* return cond(a, b) ? x : y  with x, y two of the parameters or constants. */
static void helper_select_return(jb *J, gcc_jit_function *fn, gcc_jit_rvalue *cond, gcc_jit_rvalue *x,
                                 gcc_jit_rvalue *y)
{
    gcc_jit_block *b = gcc_jit_function_new_block(fn, "entry");
    gcc_jit_block *bt = gcc_jit_function_new_block(fn, "then");
    gcc_jit_block *bf = gcc_jit_function_new_block(fn, "else");
    gcc_jit_block_end_with_conditional(b, NULL, cond, bt, bf);
    gcc_jit_block_end_with_return(bt, NULL, x);
    gcc_jit_block_end_with_return(bf, NULL, y);
    (void)J;
}

static gcc_jit_function *helper_cmp2(jb *J, const char *name, gcc_jit_type *t, enum gcc_jit_comparison cmp,
                                     bool swap_result)
{
    gcc_jit_param *pa[2];
    gcc_jit_type *ts[2] = {t, t};
    const char *ns[2] = {"a", "b"};
    gcc_jit_function *fn = helper_begin(J, name, t, 2, ts, ns, pa);
    gcc_jit_rvalue *a = gcc_jit_param_as_rvalue(pa[0]), *b = gcc_jit_param_as_rvalue(pa[1]);
    /* kd_max: a >= b ? a : b;  kd_max_acc(acc, v): v > acc ? v : acc  (swap: compares b to a) */
    if (swap_result) helper_select_return(J, fn, gcc_jit_context_new_comparison(J->ctx, NULL, cmp, b, a), b, a);
    else helper_select_return(J, fn, gcc_jit_context_new_comparison(J->ctx, NULL, cmp, a, b), a, b);
    return fn;
}

static gcc_jit_function *builtin(jb *J, gcc_jit_function **slot, const char *name)
{
    if (!*slot) *slot = gcc_jit_context_get_builtin_function(J->ctx, name);
    return *slot;
}

static gcc_jit_function *helper(jb *J, lp_op op)
{
    gcc_jit_context *c = J->ctx;
    gcc_jit_type *F = J->t_float;
    const char *x_name[1] = {"x"};
    gcc_jit_param *px[1];
    switch (op) {
    case LP_RELU:
        if (!J->h_relu) {
            J->h_relu = helper_begin(J, "kd_relu", F, 1, &F, x_name, px);
            gcc_jit_rvalue *x = gcc_jit_param_as_rvalue(px[0]);
            helper_select_return(J, J->h_relu,
                                 gcc_jit_context_new_comparison(c, NULL, GCC_JIT_COMPARISON_GT, x, gcc_jit_context_zero(c, F)),
                                 x, gcc_jit_context_zero(c, F));
        }
        return J->h_relu;
    case LP_SIGMOID: return kd_jit_fastmath_fn(c, F, &J->fastmath, false);   /* runtime/fastmath.h */
    case LP_TANH: return kd_jit_fastmath_fn(c, F, &J->fastmath, true);
    case LP_SQUARE:
        if (!J->h_square) {
            J->h_square = helper_begin(J, "kd_square", F, 1, &F, x_name, px);
            gcc_jit_rvalue *x = gcc_jit_param_as_rvalue(px[0]);
            gcc_jit_block *b = gcc_jit_function_new_block(J->h_square, "entry");
            gcc_jit_block_end_with_return(b, NULL, gcc_jit_context_new_binary_op(c, NULL, GCC_JIT_BINARY_OP_MULT, F, x, x));
        }
        return J->h_square;
    case LP_SIGN:
        if (!J->h_sign) {
            /* (float)((x > 0) - (x < 0)) */
            J->h_sign = helper_begin(J, "kd_sign", F, 1, &F, x_name, px);
            gcc_jit_rvalue *x = gcc_jit_param_as_rvalue(px[0]);
            gcc_jit_rvalue *gt = gcc_jit_context_new_cast(
                c, NULL, gcc_jit_context_new_comparison(c, NULL, GCC_JIT_COMPARISON_GT, x, gcc_jit_context_zero(c, F)), J->t_int);
            gcc_jit_rvalue *lt = gcc_jit_context_new_cast(
                c, NULL, gcc_jit_context_new_comparison(c, NULL, GCC_JIT_COMPARISON_LT, x, gcc_jit_context_zero(c, F)), J->t_int);
            gcc_jit_block *b = gcc_jit_function_new_block(J->h_sign, "entry");
            gcc_jit_block_end_with_return(
                b, NULL,
                gcc_jit_context_new_cast(c, NULL, gcc_jit_context_new_binary_op(c, NULL, GCC_JIT_BINARY_OP_MINUS, J->t_int, gt, lt), F));
        }
        return J->h_sign;
    default: return NULL;
    }
}

static gcc_jit_function *helper_minmax(jb *J, lp_op op, ctype t)
{
    if (t == CT_LONG) {
        if (op == LP_MAX) return J->h_imax ? J->h_imax : (J->h_imax = helper_cmp2(J, "kd_imax", J->t_long, GCC_JIT_COMPARISON_GE, false));
        return J->h_imin ? J->h_imin : (J->h_imin = helper_cmp2(J, "kd_imin", J->t_long, GCC_JIT_COMPARISON_LE, false));
    }
    if (op == LP_MAX) return J->h_max ? J->h_max : (J->h_max = helper_cmp2(J, "kd_max", J->t_float, GCC_JIT_COMPARISON_GE, false));
    return J->h_min ? J->h_min : (J->h_min = helper_cmp2(J, "kd_min", J->t_float, GCC_JIT_COMPARISON_LE, false));
}

/* kd_max_acc(acc, v): v > acc ? v : acc — a running maximum; NaN never wins. */
static gcc_jit_function *helper_max_acc(jb *J)
{
    if (!J->h_max_acc) J->h_max_acc = helper_cmp2(J, "kd_max_acc", J->t_float, GCC_JIT_COMPARISON_GT, true);
    return J->h_max_acc;
}

static gcc_jit_rvalue *u64c(jb *J, uint64_t v)
{
    long s;
    memcpy(&s, &v, sizeof s);
    return gcc_jit_context_new_rvalue_from_long(J->ctx, J->t_ull, s);
}

/* kdk_mix64 and kdk_dropout_bits of runtime/random.h, built inline: they run
 * once per element of a dropout loop, where GCC hoists the three mixes of
 * the loop-invariant (seed, step, salt) and leaves one per element; a call
 * into the runtime instead made a training step of 512 Ki dropout elements
 * 14 times as slow (bench/step_time, 1.3 ms -> 19 ms). kd_jit_dropout_bits
 * compiles this alone, and test_jit checks it against random.h's. */
static gcc_jit_function *helper_dropout_bits(jb *J)
{
    if (J->h_dropout_bits) return J->h_dropout_bits;
    gcc_jit_context *c = J->ctx;
    gcc_jit_type *U = J->t_ull;
    {
        gcc_jit_param *pz[1];
        const char *nz[1] = {"z0"};
        J->h_mix64 = helper_begin(J, "kdk_mix64", U, 1, &U, nz, pz);
        gcc_jit_function *fn = J->h_mix64;
        gcc_jit_block *b = gcc_jit_function_new_block(fn, "entry");
        gcc_jit_lvalue *z = gcc_jit_function_new_local(fn, NULL, U, "z");
        gcc_jit_rvalue *zr = rv_of(z);
#define BIN(op, x, y) gcc_jit_context_new_binary_op(c, NULL, GCC_JIT_BINARY_OP_##op, U, (x), (y))
#define SHR(x, n) BIN(RSHIFT, (x), gcc_jit_context_new_rvalue_from_int(c, U, (n)))
        gcc_jit_block_add_assignment(b, NULL, z, BIN(PLUS, gcc_jit_param_as_rvalue(pz[0]), u64c(J, 0x9e3779b97f4a7c15ULL)));
        gcc_jit_block_add_assignment(b, NULL, z, BIN(MULT, BIN(BITWISE_XOR, zr, SHR(zr, 30)), u64c(J, 0xbf58476d1ce4e5b9ULL)));
        gcc_jit_block_add_assignment(b, NULL, z, BIN(MULT, BIN(BITWISE_XOR, zr, SHR(zr, 27)), u64c(J, 0x94d049bb133111ebULL)));
        gcc_jit_block_end_with_return(b, NULL, BIN(BITWISE_XOR, zr, SHR(zr, 31)));
    }
    gcc_jit_param *pp[4];
    gcc_jit_type *ts[4] = {U, U, J->t_uint, U};
    const char *ns[4] = {"seed", "step", "salt", "index"};
    J->h_dropout_bits = helper_begin(J, "kdk_dropout_bits", J->t_uint, 4, ts, ns, pp);
    gcc_jit_function *fn = J->h_dropout_bits;
    gcc_jit_block *b = gcc_jit_function_new_block(fn, "entry");
    gcc_jit_lvalue *h = gcc_jit_function_new_local(fn, NULL, U, "h");
    gcc_jit_rvalue *hr = rv_of(h);
    gcc_jit_rvalue *arg = gcc_jit_param_as_rvalue(pp[0]);
    gcc_jit_block_add_assignment(b, NULL, h, gcc_jit_context_new_call(c, NULL, J->h_mix64, 1, &arg));
    gcc_jit_rvalue *salt = gcc_jit_context_new_cast(c, NULL, gcc_jit_param_as_rvalue(pp[2]), U);
    gcc_jit_rvalue *mixin[3] = {gcc_jit_param_as_rvalue(pp[1]), salt, gcc_jit_param_as_rvalue(pp[3])};
    for (int i = 0; i < 3; i++) {
        arg = BIN(BITWISE_XOR, hr, mixin[i]);
        gcc_jit_block_add_assignment(b, NULL, h, gcc_jit_context_new_call(c, NULL, J->h_mix64, 1, &arg));
    }
    gcc_jit_block_end_with_return(b, NULL, gcc_jit_context_new_cast(c, NULL, SHR(hr, 40), J->t_uint));
#undef BIN
#undef SHR
    return fn;
}

/* ---- expressions ------------------------------------------------------------------------------- */

static ctype ctype_of(jb *J, const lp_expr *e)
{
    if (e->type == LP_INT) return CT_LONG;
    switch (e->kind) {
    case LP_E_VAR: return J->var_t[e->var->id];
    case LP_E_SELECT: {
        ctype b = ctype_of(J, e->b), c = ctype_of(J, e->c);
        return b > c ? b : c;
    }
    case LP_E_OP:
        switch (e->op) {
        case LP_NEG: return ctype_of(J, e->a);
        case LP_ADD: case LP_SUB: case LP_MUL: case LP_DIV: {
            ctype a = ctype_of(J, e->a), b = ctype_of(J, e->b);
            return a > b ? a : b;
        }
        default: return CT_FLOAT;   /* the float functions, (float) casts */
        }
    default: return CT_FLOAT;
    }
}

static val gen(jb *J, const lp_expr *e);
static gcc_jit_lvalue *var_local(jb *J, int id);

/* The usual arithmetic conversions of two reals (or two ints). */
static ctype common(val a, val b) { return a.t > b.t ? a.t : b.t; }

static val mk(gcc_jit_rvalue *rv, ctype t) { return (val){rv, t}; }

static gcc_jit_rvalue *buf_ptr(jb *J, const lp_buf *b)
{
    if (b->id < 0 || b->id >= J->f->bufs.len || J->f->bufs.items[b->id] != b || !J->bufp[b->id]) {
        fail(J, "%s: buffer %s is not one of the function's", lp_func_names[J->f->kind], b->name ? b->name : "?");
        return NULL;
    }
    return rv_of(J->bufp[b->id]);
}

static gcc_jit_lvalue *elem(jb *J, const lp_buf *b, gcc_jit_rvalue *index)
{
    gcc_jit_rvalue *p = buf_ptr(J, b);
    if (!p || !index) return NULL;
    return gcc_jit_context_new_array_access(J->ctx, NULL, p, index);
}

static val load(jb *J, const lp_buf *b, gcc_jit_rvalue *index)
{
    gcc_jit_lvalue *lv = elem(J, b, index);
    if (!lv) return mk(NULL, CT_FLOAT);
    if (b->elem == LP_ELEM_I32) return mk(gcc_jit_context_new_cast(J->ctx, NULL, rv_of(lv), J->t_long), CT_LONG);
    return mk(rv_of(lv), CT_FLOAT);
}

/* cond ? x : y with x and y built in their own blocks (only one is evaluated). */
static val select_expr(jb *J, gcc_jit_rvalue *cond, const lp_expr *x, const lp_expr *y, ctype t)
{
    gcc_jit_lvalue *tmp = new_tmp(J, type_of(J, t));
    gcc_jit_block *bt = new_block(J, "sel_t"), *bf = new_block(J, "sel_f"), *join = new_block(J, "sel_j");
    gcc_jit_block_end_with_conditional(J->blk, NULL, cond, bt, bf);
    J->blk = bt;
    gcc_jit_block_add_assignment(J->blk, NULL, tmp, conv(J, gen(J, x), t));
    gcc_jit_block_end_with_jump(J->blk, NULL, join);
    J->blk = bf;
    gcc_jit_block_add_assignment(J->blk, NULL, tmp, conv(J, gen(J, y), t));
    gcc_jit_block_end_with_jump(J->blk, NULL, join);
    J->blk = join;
    return mk(rv_of(tmp), t);
}

/* a && b, a || b: 0 or 1, b evaluated only when C would. */
static val logic(jb *J, const lp_expr *e)
{
    gcc_jit_lvalue *tmp = new_tmp(J, J->t_long);
    bool is_and = e->op == LP_AND;
    gcc_jit_block *rhs = new_block(J, is_and ? "and_r" : "or_r"), *join = new_block(J, is_and ? "and_j" : "or_j");
    gcc_jit_block_add_assignment(J->blk, NULL, tmp, c_long(J, is_and ? 0 : 1));
    gcc_jit_rvalue *a = truth(J, gen(J, e->a));
    if (is_and) gcc_jit_block_end_with_conditional(J->blk, NULL, a, rhs, join);
    else gcc_jit_block_end_with_conditional(J->blk, NULL, a, join, rhs);
    J->blk = rhs;
    gcc_jit_block_add_assignment(J->blk, NULL, tmp, gcc_jit_context_new_cast(J->ctx, NULL, truth(J, gen(J, e->b)), J->t_long));
    gcc_jit_block_end_with_jump(J->blk, NULL, join);
    J->blk = join;
    return mk(rv_of(tmp), CT_LONG);
}

static val call_float_fn(jb *J, gcc_jit_function *fn, val x)
{
    gcc_jit_rvalue *arg = conv(J, x, CT_FLOAT);
    if (!fn || !arg) return mk(NULL, CT_FLOAT);
    return mk(gcc_jit_context_new_call(J->ctx, NULL, fn, 1, &arg), CT_FLOAT);
}

static gcc_jit_rvalue *param_rv(jb *J, int which, const char *what)
{
    if (!J->param[which]) {
        fail(J, "%s uses %s, which %s_%s does not have", what, what, J->p->name, lp_func_names[J->f->kind]);
        return NULL;
    }
    return J->param[which];
}

static val gen_op(jb *J, const lp_expr *e)
{
    gcc_jit_context *c = J->ctx;
    switch (e->op) {
    case LP_NEG: {
        val x = gen(J, e->a);
        if (!x.rv) return x;
        return mk(gcc_jit_context_new_unary_op(c, NULL, GCC_JIT_UNARY_OP_MINUS, type_of(J, x.t), x.rv), x.t);
    }
    case LP_NOT: {
        val x = gen(J, e->a);
        if (!x.rv) return x;
        gcc_jit_rvalue *z = gcc_jit_context_new_comparison(c, NULL, GCC_JIT_COMPARISON_EQ, conv(J, x, CT_LONG), c_long(J, 0));
        return mk(gcc_jit_context_new_cast(c, NULL, z, J->t_long), CT_LONG);
    }
    case LP_TO_REAL: {
        val x = gen(J, e->a);
        return mk(conv(J, x, CT_FLOAT), CT_FLOAT);
    }
    case LP_EXP: return call_float_fn(J, builtin(J, &J->b_expf, "__builtin_expf"), gen(J, e->a));
    case LP_LOG: return call_float_fn(J, builtin(J, &J->b_logf, "__builtin_logf"), gen(J, e->a));
    case LP_SQRT: return call_float_fn(J, builtin(J, &J->b_sqrtf, "__builtin_sqrtf"), gen(J, e->a));
    case LP_LOG1P: return call_float_fn(J, builtin(J, &J->b_log1pf, "__builtin_log1pf"), gen(J, e->a));
    case LP_EXPM1: return call_float_fn(J, builtin(J, &J->b_expm1f, "__builtin_expm1f"), gen(J, e->a));
    case LP_ERF: return call_float_fn(J, builtin(J, &J->b_erff, "__builtin_erff"), gen(J, e->a));
    case LP_ABS: return call_float_fn(J, builtin(J, &J->b_fabsf, "__builtin_fabsf"), gen(J, e->a));
    case LP_RSQRT: {   /* 1.0f / sqrtf(x) */
        val s = call_float_fn(J, builtin(J, &J->b_sqrtf, "__builtin_sqrtf"), gen(J, e->a));
        if (!s.rv) return s;
        return mk(gcc_jit_context_new_binary_op(c, NULL, GCC_JIT_BINARY_OP_DIVIDE, J->t_float, c_float(J, 1), s.rv), CT_FLOAT);
    }
    case LP_SIGMOID:
    case LP_TANH:
    case LP_RELU:
    case LP_SQUARE:
    case LP_SIGN: return call_float_fn(J, helper(J, e->op), gen(J, e->a));
    case LP_MIN:
    case LP_MAX: {
        /* Reals: kd_max(float, float); ints: a >= b ? a : b (both pure). */
        val a = gen(J, e->a), b = gen(J, e->b);
        ctype t = e->type == LP_INT ? CT_LONG : CT_FLOAT;
        gcc_jit_rvalue *args[2] = {conv(J, a, t), conv(J, b, t)};
        if (!args[0] || !args[1]) return mk(NULL, t);
        return mk(gcc_jit_context_new_call(c, NULL, helper_minmax(J, e->op, t), 2, args), t);
    }
    case LP_ADD:
    case LP_SUB:
    case LP_MUL:
    case LP_DIV: {
        val a = gen(J, e->a), b = gen(J, e->b);
        if (!a.rv || !b.rv) return mk(NULL, CT_FLOAT);
        ctype t = common(a, b);
        static const enum gcc_jit_binary_op bop[] = {
            [LP_ADD] = GCC_JIT_BINARY_OP_PLUS, [LP_SUB] = GCC_JIT_BINARY_OP_MINUS,
            [LP_MUL] = GCC_JIT_BINARY_OP_MULT, [LP_DIV] = GCC_JIT_BINARY_OP_DIVIDE,
        };
        return mk(gcc_jit_context_new_binary_op(c, NULL, bop[e->op], type_of(J, t), conv(J, a, t), conv(J, b, t)), t);
    }
    case LP_GT:
    case LP_GE:
    case LP_LT:
    case LP_LE:
    case LP_EQ:
    case LP_NE: {
        val a = gen(J, e->a), b = gen(J, e->b);
        if (!a.rv || !b.rv) return mk(NULL, CT_LONG);
        ctype t = common(a, b);
        static const enum gcc_jit_comparison cop[] = {
            [LP_GT] = GCC_JIT_COMPARISON_GT, [LP_GE] = GCC_JIT_COMPARISON_GE, [LP_LT] = GCC_JIT_COMPARISON_LT,
            [LP_LE] = GCC_JIT_COMPARISON_LE, [LP_EQ] = GCC_JIT_COMPARISON_EQ, [LP_NE] = GCC_JIT_COMPARISON_NE,
        };
        gcc_jit_rvalue *r = gcc_jit_context_new_comparison(c, NULL, cop[e->op], conv(J, a, t), conv(J, b, t));
        return mk(gcc_jit_context_new_cast(c, NULL, r, J->t_long), CT_LONG);
    }
    case LP_AND:
    case LP_OR: return logic(J, e);
    default:
        fail(J, "unknown loop-IR operator %d", (int)e->op);
        return mk(NULL, CT_FLOAT);
    }
}

static val gen(jb *J, const lp_expr *e)
{
    gcc_jit_context *c = J->ctx;
    if (J->failed) return mk(NULL, CT_FLOAT);
    if (!e) {
        fail(J, "a missing expression in %s_%s", J->p->name, lp_func_names[J->f->kind]);
        return mk(NULL, CT_FLOAT);
    }
    switch (e->kind) {
    case LP_E_INT: return mk(c_long(J, (long)e->ival), CT_LONG);
    case LP_E_REAL: return mk(c_float(J, e->rval), CT_FLOAT);
    case LP_E_VAR:
        if (!e->var || e->var->id < 0 || e->var->id >= J->f->vars.len || J->f->vars.items[e->var->id] != e->var) {
            fail(J, "a variable that is not one of %s_%s's", J->p->name, lp_func_names[J->f->kind]);
            return mk(NULL, CT_FLOAT);
        }
        return mk(rv_of(var_local(J, e->var->id)), J->var_t[e->var->id]);
    case LP_E_PARAM:
        switch (e->param) {
        case LP_P_BATCH: {
            gcc_jit_rvalue *b = param_rv(J, P_BATCH, "batch");
            return mk(b ? gcc_jit_context_new_cast(c, NULL, b, J->t_long) : NULL, CT_LONG);
        }
        case LP_P_STEP: {
            gcc_jit_rvalue *s = param_rv(J, P_STEP, "step");
            return mk(s ? gcc_jit_context_new_cast(c, NULL, s, J->t_long) : NULL, CT_LONG);
        }
        case LP_P_SEED: {
            gcc_jit_rvalue *s = param_rv(J, P_SEED, "seed");
            return mk(s ? gcc_jit_context_new_cast(c, NULL, s, J->t_long) : NULL, CT_LONG);
        }
        case LP_P_LR: return mk(param_rv(J, P_LR, "learning_rate"), CT_FLOAT);
        default:
            fail(J, "unknown parameter %d", (int)e->param);
            return mk(NULL, CT_FLOAT);
        }
    case LP_E_LOAD: {
        if (!e->buf) {
            fail(J, "a load without a buffer");
            return mk(NULL, CT_FLOAT);
        }
        return load(J, e->buf, conv(J, gen(J, e->a), CT_LONG));
    }
    case LP_E_SELECT: {
        ctype t = ctype_of(J, e);
        val cond = gen(J, e->a);
        if (!cond.rv) return mk(NULL, t);
        return select_expr(J, truth(J, cond), e->b, e->c, t);
    }
    case LP_E_DROPOUT: {
        /* kdk_dropout_bits(seed, step, salt, (uint64_t)index) >= threshold ? scale : 0.0f */
        gcc_jit_rvalue *index = conv(J, gen(J, e->a), CT_LONG);
        gcc_jit_rvalue *step = param_rv(J, P_STEP, "step (dropout)");
        if (!index || !step) return mk(NULL, CT_FLOAT);
        gcc_jit_rvalue *args[4] = {
            u64c(J, e->dropout.seed), step,
            gcc_jit_context_new_rvalue_from_long(c, J->t_uint, (long)e->dropout.salt),
            gcc_jit_context_new_cast(c, NULL, index, J->t_ull),
        };
        gcc_jit_rvalue *bits = gcc_jit_context_new_call(c, NULL, helper_dropout_bits(J), 4, args);
        gcc_jit_rvalue *keep = gcc_jit_context_new_comparison(
            c, NULL, GCC_JIT_COMPARISON_GE, bits, gcc_jit_context_new_rvalue_from_long(c, J->t_uint, (long)e->dropout.threshold));
        gcc_jit_lvalue *tmp = new_tmp(J, J->t_float);
        gcc_jit_block *bt = new_block(J, "drop_t"), *bf = new_block(J, "drop_f"), *join = new_block(J, "drop_j");
        gcc_jit_block_end_with_conditional(J->blk, NULL, keep, bt, bf);
        gcc_jit_block_add_assignment(bt, NULL, tmp, c_float(J, e->dropout.scale));
        gcc_jit_block_end_with_jump(bt, NULL, join);
        gcc_jit_block_add_assignment(bf, NULL, tmp, c_float(J, 0));
        gcc_jit_block_end_with_jump(bf, NULL, join);
        J->blk = join;
        return mk(rv_of(tmp), CT_FLOAT);
    }
    case LP_E_OP: return gen_op(J, e);
    default:
        fail(J, "unknown loop-IR expression kind %d", (int)e->kind);
        return mk(NULL, CT_FLOAT);
    }
}

/* ---- statements ------------------------------------------------------------------------------------ */

/* The value of `target acc value` where target currently holds `cur` of type t. */
static gcc_jit_rvalue *accumulate(jb *J, lp_acc acc, gcc_jit_rvalue *cur, ctype t, val v)
{
    if (!cur || !v.rv) return NULL;
    switch (acc) {
    case LP_ASSIGN: return conv(J, v, t);
    case LP_ACC_ADD: {
        /* target += v: computed in the common type, converted back. */
        val cv = mk(cur, t);
        ctype ct = common(cv, v);
        gcc_jit_rvalue *sum = gcc_jit_context_new_binary_op(J->ctx, NULL, GCC_JIT_BINARY_OP_PLUS, type_of(J, ct),
                                                            conv(J, cv, ct), conv(J, v, ct));
        return conv(J, mk(sum, ct), t);
    }
    case LP_ACC_MAX: {
        if (t == CT_LONG) {
            gcc_jit_rvalue *args[2] = {cur, conv(J, v, CT_LONG)};
            return gcc_jit_context_new_call(J->ctx, NULL, helper_minmax(J, LP_MAX, CT_LONG), 2, args);
        }
        /* target = kd_max_acc(target, v): float parameters */
        gcc_jit_rvalue *args[2] = {conv(J, mk(cur, t), CT_FLOAT), conv(J, v, CT_FLOAT)};
        return conv(J, mk(gcc_jit_context_new_call(J->ctx, NULL, helper_max_acc(J), 2, args), CT_FLOAT), t);
    }
    default:
        fail(J, "unknown accumulation %d", (int)acc);
        return NULL;
    }
}

/* Variable id's local in the function being built, declared at its first
 * use: a function of thousands of kernels has thousands of variables, and
 * each of its outlined parallel loops uses a handful. */
static gcc_jit_lvalue *var_local(jb *J, int id)
{
    if (!J->var[id]) {
        const lp_var *v = J->f->vars.items[id];
        J->var[id] = gcc_jit_function_new_local(J->fn, NULL, type_of(J, J->var_t[id]), v->name);
        if (J->var == J->var_all) J->var_set[J->nvar_set++] = id;
    }
    return J->var[id];
}

static gcc_jit_lvalue *var_lv(jb *J, const lp_var *v)
{
    if (!v || v->id < 0 || v->id >= J->f->vars.len || J->f->vars.items[v->id] != v) {
        fail(J, "a variable that is not one of %s_%s's", J->p->name, lp_func_names[J->f->kind]);
        return NULL;
    }
    return var_local(J, v->id);
}

/* The pointer a kernel argument passes: buf + off, or NULL. */
static gcc_jit_rvalue *ptr_arg(jb *J, const lp_arg *a, bool i32)
{
    gcc_jit_type *pt = i32 ? J->t_intp : J->t_floatp;
    if (!a->buf) return gcc_jit_context_null(J->ctx, pt);
    if ((a->buf->elem == LP_ELEM_I32) != i32) {
        fail(J, "buffer %s passed as a %s pointer", a->buf->name, i32 ? "int32" : "real");
        return NULL;
    }
    gcc_jit_rvalue *p = buf_ptr(J, a->buf);
    if (!p) return NULL;
    if (!a->off || lp_is_int(a->off, 0)) return p;
    gcc_jit_rvalue *off = conv(J, gen(J, a->off), CT_LONG);
    if (!off) return NULL;
    return gcc_jit_lvalue_get_address(gcc_jit_context_new_array_access(J->ctx, NULL, p, off), NULL);
}

/* Entry i of the table of host functions, as a pointer of type fpt. */
static gcc_jit_rvalue *imported(jb *J, int i, gcc_jit_type *fpt)
{
    gcc_jit_rvalue *slot = rv_of(gcc_jit_context_new_array_access(J->ctx, NULL, rv_of(J->imports), c_long(J, i)));
    return gcc_jit_context_new_cast(J->ctx, NULL, slot, fpt);
}

static void call_stmt(jb *J, const lp_call *cl)
{
    gcc_jit_context *c = J->ctx;
    if ((unsigned)cl->k >= LP_K_COUNT) {
        fail(J, "unknown kernel %d", (int)cl->k);
        return;
    }
    const lp_kernel_info *ki = &lp_kernels[cl->k];
    kdj_fn addr = kernel_address(cl->k);
    if (!addr) {
        fail(J, "no address for kernel %s", ki->name);
        return;
    }
    gcc_jit_type *types[LP_MAX_ARGS];
    gcc_jit_rvalue *args[LP_MAX_ARGS];
    for (int j = 0; j < ki->nargs; j++) {
        const lp_arg *a = &cl->args[j];
        switch (ki->args[j]) {
        case LP_A_INT:
            types[j] = J->t_int;
            args[j] = a->e ? conv(J, gen(J, a->e), CT_LONG) : NULL;
            if (args[j]) args[j] = gcc_jit_context_new_cast(c, NULL, args[j], J->t_int);
            break;
        case LP_A_LONG:
            types[j] = J->t_long;
            args[j] = a->e ? conv(J, gen(J, a->e), CT_LONG) : NULL;
            break;
        case LP_A_REAL:
            types[j] = J->t_float;
            args[j] = a->e ? conv(J, gen(J, a->e), CT_FLOAT) : NULL;
            break;
        case LP_A_F64:
            /* the initialisers' doubles: constants stay exact */
            types[j] = J->t_double;
            if (a->e && a->e->kind == LP_E_REAL) args[j] = gcc_jit_context_new_rvalue_from_double(c, J->t_double, a->e->rval);
            else args[j] = a->e ? conv(J, gen(J, a->e), CT_DOUBLE) : NULL;
            break;
        case LP_A_U64:
            types[j] = J->t_ull;
            args[j] = a->e ? gcc_jit_context_new_cast(c, NULL, conv(J, gen(J, a->e), CT_LONG), J->t_ull) : NULL;
            break;
        case LP_A_IN:
        case LP_A_OUT:
            types[j] = J->t_floatp;
            args[j] = ptr_arg(J, a, false);
            break;
        case LP_A_IN_I32:
        case LP_A_OUT_I32:
            types[j] = J->t_intp;
            args[j] = ptr_arg(J, a, true);
            break;
        default:
            fail(J, "kernel %s: unknown argument kind", ki->name);
            return;
        }
        if (!args[j]) {
            fail(J, "kernel %s: argument %s is missing or malformed", ki->name, ki->arg_names[j]);
            return;
        }
    }
    gcc_jit_type *ret = ki->returns_double ? J->t_double : J->t_void;
    gcc_jit_type *fpt = gcc_jit_context_new_function_ptr_type(c, NULL, ret, ki->nargs, types, 0);
    gcc_jit_rvalue *call = gcc_jit_context_new_call_through_ptr(c, NULL, imported(J, cl->k, fpt), ki->nargs, args);
    if (cl->result) {
        gcc_jit_lvalue *r = var_lv(J, cl->result);
        if (!r) return;
        if (!ki->returns_double) {
            fail(J, "kernel %s returns nothing", ki->name);
            return;
        }
        gcc_jit_block_add_assignment(J->blk, NULL, r, call);
    } else {
        gcc_jit_block_add_eval(J->blk, NULL, call);
    }
}

/* The pointer an IF's if_buf tests: the caller's buffer the C text names. */
static gcc_jit_rvalue *if_buf_base(jb *J, const lp_buf *b)
{
    switch (b->space) {
    case LP_PARAMS: return param_rv(J, P_PARAMS, "params");
    case LP_OPT: return param_rv(J, P_OPT, "opt_state");
    case LP_GRADS: return param_rv(J, P_GRADS, "grads");
    case LP_LABEL: return param_rv(J, P_LABELS, "labels");
    case LP_OUTPUT:
        return J->f->kind == LP_F_TRAIN_STEP ? param_rv(J, P_OUTPUTS0, "outputs0") : param_rv(J, P_OUTPUTS, "outputs");
    default: return param_rv(J, P_ARENA, "arena");
    }
}

static void stmts(jb *J, const kd_vec *body);

/* for (v = lo; v < n; v++) body, n evaluated once (pure). */
static void for_range(jb *J, gcc_jit_lvalue *v, gcc_jit_rvalue *lo, gcc_jit_rvalue *n_rv, const kd_vec *body)
{
    gcc_jit_context *c = J->ctx;
    gcc_jit_lvalue *n = new_tmp(J, J->t_long);
    gcc_jit_block_add_assignment(J->blk, NULL, n, n_rv);
    gcc_jit_block_add_assignment(J->blk, NULL, v, lo);
    gcc_jit_block *cond = new_block(J, "for_c"), *bb = new_block(J, "for_b"), *after = new_block(J, "for_x");
    gcc_jit_block_end_with_jump(J->blk, NULL, cond);
    gcc_jit_block_end_with_conditional(
        cond, NULL, gcc_jit_context_new_comparison(c, NULL, GCC_JIT_COMPARISON_LT, rv_of(v), rv_of(n)), bb, after);
    J->blk = bb;
    J->loop_depth++;
    stmts(J, body);
    J->loop_depth--;
    if (J->failed) return;
    gcc_jit_block_add_assignment_op(J->blk, NULL, v, GCC_JIT_BINARY_OP_PLUS, c_long(J, 1));
    gcc_jit_block_end_with_jump(J->blk, NULL, cond);
    J->blk = after;
}

/* ---- the thread split of loops ---------------------------------------------------------------------
 * thread_plan.c decides which loops run split across the host's thread pool
 * (codegen.h, kd_thread_plan_site); here each such loop's body is outlined
 * into a function f(ctx, lo, hi), ctx a struct holding the buffer pointers,
 * parameters and outer locals the body reads, and the loop becomes
 * kdh_parallel_range(f, &ctx, n, grain, min_n). */

/* Whether the site's body reads run-time parameter w. */
static bool site_param(const kd_par_site *pi, int w)
{
    switch (w) {
    case P_BATCH: return pi->param[LP_P_BATCH];
    case P_STEP: return pi->param[LP_P_STEP];
    case P_LR: return pi->param[LP_P_LR];
    case P_SEED: return pi->param[LP_P_SEED];
    default: return false;
    }
}

/* The context a parallel site passes its outlined loop: a struct of the
 * buffers, variables and parameters that loop reads, one per site (a struct
 * of every buffer and variable of the function, shared by its sites, made
 * GCC's work grow with the function's size times its sites). */
static void new_ctx_struct(jb *J, const kd_par_site *pi)
{
    gcc_jit_context *c = J->ctx;
    const lp_func *f = J->f;
    int nf = 0, cap = f->bufs.len + f->vars.len + P_COUNT;
    gcc_jit_field **fields = kd_alloc_array(J->scratch, (size_t)cap + 1, sizeof *fields);
    J->f_buf = kd_alloc_array(J->scratch, (size_t)f->bufs.len + 1, sizeof *J->f_buf);
    J->f_var = kd_alloc_array(J->scratch, (size_t)f->vars.len + 1, sizeof *J->f_var);
    char name[32];
    for (int i = 0; i < f->bufs.len; i++) {
        if (!pi->buf[i]) continue;
        const lp_buf *b = f->bufs.items[i];
        snprintf(name, sizeof name, "b%d", i);
        J->f_buf[i] = fields[nf++] = gcc_jit_context_new_field(c, NULL, b->elem == LP_ELEM_I32 ? J->t_intp : J->t_floatp, name);
    }
    for (int i = 0; i < f->vars.len; i++) {
        if (!pi->read[i] || pi->def[i]) continue;
        snprintf(name, sizeof name, "v%d", i);
        J->f_var[i] = fields[nf++] = gcc_jit_context_new_field(c, NULL, type_of(J, J->var_t[i]), name);
    }
    for (int w = 0; w < P_COUNT; w++) {
        J->f_param[w] = NULL;
        if (!J->ptype[w] || !site_param(pi, w)) continue;
        snprintf(name, sizeof name, "p%d", w);
        J->f_param[w] = fields[nf++] = gcc_jit_context_new_field(c, NULL, J->ptype[w], name);
    }
    if (nf == 0) fields[nf++] = gcc_jit_context_new_field(c, NULL, J->t_long, "unused");
    char sname[300];
    snprintf(sname, sizeof sname, "%s_par%d_ctx", J->fname, J->npar);
    J->ctx_struct = gcc_jit_context_new_struct_type(c, NULL, sname, nf, fields);
    J->ctx_local = gcc_jit_function_new_local(J->fn, NULL, gcc_jit_struct_as_type(J->ctx_struct), "par_ctx");
}

/* Emits loop (or outer { loop }) as a parallel range over loop's extent. */
static void emit_par(jb *J, const lp_stmt *outer, const lp_stmt *loop, const kd_par_site *pi, long min_n)
{
    gcc_jit_context *c = J->ctx;
    const lp_func *f = J->f;
    new_ctx_struct(J, pi);
    gcc_jit_type *sptr = gcc_jit_type_get_pointer(gcc_jit_struct_as_type(J->ctx_struct));

    /* the outlined function */
    char name[320];
    snprintf(name, sizeof name, "%s_par%d", J->fname, J->npar++);
    gcc_jit_param *pp[3] = {
        gcc_jit_context_new_param(c, NULL, J->t_voidp, "ctx"),
        gcc_jit_context_new_param(c, NULL, J->t_long, "lo"),
        gcc_jit_context_new_param(c, NULL, J->t_long, "hi"),
    };
    gcc_jit_function *fn = gcc_jit_context_new_function(c, NULL, GCC_JIT_FUNCTION_INTERNAL, J->t_void, name, 3, pp, 0);

    gcc_jit_function *save_fn = J->fn;
    gcc_jit_block *save_blk = J->blk;
    gcc_jit_lvalue **save_bufp = J->bufp, **save_var = J->var;
    gcc_jit_rvalue *save_param[P_COUNT];
    memcpy(save_param, J->param, sizeof save_param);
    int save_tmp = J->ntmp, save_nblk = J->nblk, save_depth = J->loop_depth;

    J->fn = fn;
    J->outlined = true;
    J->loop_depth = 0;
    J->blk = gcc_jit_function_new_block(fn, "entry");
    gcc_jit_rvalue *ctxp = gcc_jit_context_new_cast(c, NULL, gcc_jit_param_as_rvalue(pp[0]), sptr);
    J->bufp = kd_alloc_array(J->scratch, (size_t)f->bufs.len + 1, sizeof *J->bufp);
    J->var = kd_alloc_array(J->scratch, (size_t)f->vars.len + 1, sizeof *J->var);
    for (int i = 0; i < f->bufs.len; i++) {
        if (!pi->buf[i]) continue;
        const lp_buf *b = f->bufs.items[i];
        J->bufp[i] = gcc_jit_function_new_local(fn, NULL, b->elem == LP_ELEM_I32 ? J->t_intp : J->t_floatp, b->name);
        gcc_jit_block_add_assignment(J->blk, NULL, J->bufp[i], rv_of(gcc_jit_rvalue_dereference_field(ctxp, NULL, J->f_buf[i])));
    }
    for (int i = 0; i < f->vars.len; i++)
        if (pi->read[i] && !pi->def[i])
            gcc_jit_block_add_assignment(J->blk, NULL, var_local(J, i),
                                         rv_of(gcc_jit_rvalue_dereference_field(ctxp, NULL, J->f_var[i])));
    for (int w = 0; w < P_COUNT; w++) {
        J->param[w] = NULL;
        if (!site_param(pi, w) || !J->f_param[w]) continue;
        gcc_jit_lvalue *l = gcc_jit_function_new_local(fn, NULL, J->ptype[w], "param");
        gcc_jit_block_add_assignment(J->blk, NULL, l, rv_of(gcc_jit_rvalue_dereference_field(ctxp, NULL, J->f_param[w])));
        J->param[w] = rv_of(l);
    }
    gcc_jit_rvalue *lo = gcc_jit_param_as_rvalue(pp[1]), *hi = gcc_jit_param_as_rvalue(pp[2]);
    if (outer) {
        /* for (o = 0; o < R; o++) for (v = lo; v < hi; v++) body */
        gcc_jit_rvalue *ext = conv(J, gen(J, outer->extent), CT_LONG);
        if (ext) {
            gcc_jit_lvalue *o = var_local(J, outer->var->id);
            gcc_jit_lvalue *n = new_tmp(J, J->t_long);
            gcc_jit_block_add_assignment(J->blk, NULL, n, ext);
            gcc_jit_block_add_assignment(J->blk, NULL, o, c_long(J, 0));
            gcc_jit_block *cond = new_block(J, "for_c"), *bb = new_block(J, "for_b"), *after = new_block(J, "for_x");
            gcc_jit_block_end_with_jump(J->blk, NULL, cond);
            gcc_jit_block_end_with_conditional(
                cond, NULL, gcc_jit_context_new_comparison(c, NULL, GCC_JIT_COMPARISON_LT, rv_of(o), rv_of(n)), bb, after);
            J->blk = bb;
            for_range(J, var_local(J, loop->var->id), lo, hi, &loop->body);
            if (!J->failed) {
                gcc_jit_block_add_assignment_op(J->blk, NULL, o, GCC_JIT_BINARY_OP_PLUS, c_long(J, 1));
                gcc_jit_block_end_with_jump(J->blk, NULL, cond);
                J->blk = after;
            }
        }
    } else {
        for_range(J, var_local(J, loop->var->id), lo, hi, &loop->body);
    }
    if (!J->failed) gcc_jit_block_end_with_void_return(J->blk, NULL);

    J->fn = save_fn;
    J->blk = save_blk;
    J->bufp = save_bufp;
    J->var = save_var;
    memcpy(J->param, save_param, sizeof save_param);
    J->ntmp = save_tmp;
    J->nblk = save_nblk;
    J->loop_depth = save_depth;
    J->outlined = false;
    if (J->failed) return;

    /* the call site: the context's fields, then the pool */
    gcc_jit_lvalue *cx = J->ctx_local;
    for (int i = 0; i < f->bufs.len; i++)
        if (pi->buf[i]) gcc_jit_block_add_assignment(J->blk, NULL, gcc_jit_lvalue_access_field(cx, NULL, J->f_buf[i]), rv_of(J->bufp[i]));
    for (int i = 0; i < f->vars.len; i++)
        if (pi->read[i] && !pi->def[i])
            gcc_jit_block_add_assignment(J->blk, NULL, gcc_jit_lvalue_access_field(cx, NULL, J->f_var[i]), rv_of(var_local(J, i)));
    for (int w = 0; w < P_COUNT; w++)
        if (site_param(pi, w) && J->f_param[w] && J->param[w])
            gcc_jit_block_add_assignment(J->blk, NULL, gcc_jit_lvalue_access_field(cx, NULL, J->f_param[w]), J->param[w]);
    gcc_jit_rvalue *n = conv(J, gen(J, loop->extent), CT_LONG);
    if (!n) return;
    gcc_jit_type *rt[5] = {J->t_voidp, J->t_voidp, J->t_long, J->t_long, J->t_long};
    gcc_jit_type *fpt = gcc_jit_context_new_function_ptr_type(c, NULL, J->t_void, 5, rt, 0);
    gcc_jit_rvalue *args[5] = {
        gcc_jit_context_new_cast(c, NULL, gcc_jit_function_get_address(fn, NULL), J->t_voidp),
        gcc_jit_context_new_cast(c, NULL, gcc_jit_lvalue_get_address(cx, NULL), J->t_voidp),
        n,
        c_long(J, pi->grain),
        c_long(J, min_n),
    };
    gcc_jit_block_add_eval(J->blk, NULL, gcc_jit_context_new_call_through_ptr(c, NULL, imported(J, IMPORT_PARALLEL_RANGE, fpt), 5, args));
}

/* A FOR statement as a parallel range, if the thread plan splits it. */
static bool par_site(jb *J, const lp_stmt *s)
{
    if (J->serial || J->outlined || J->loop_depth > 0 || J->failed) return false;
    kd_par_site pi;
    if (!kd_thread_plan_site(&J->tplan, s, &pi)) return false;
    emit_par(J, pi.outer, pi.loop, &pi, pi.min_n);
    kd_thread_plan_done(&pi);
    return true;
}

static void stmt(jb *J, const lp_stmt *s)
{
    gcc_jit_context *c = J->ctx;
    switch (s->kind) {
    case LP_S_FOR: {
        gcc_jit_lvalue *v = var_lv(J, s->var);
        if (!v) return;
        if (s->var->type != LP_INT) {
            fail(J, "loop variable %s is not an int", s->var->name);
            return;
        }
        if (par_site(J, s)) break;
        /* for (v = 0; v < extent; v++): extent is pure, evaluated once. */
        gcc_jit_rvalue *ext = conv(J, gen(J, s->extent), CT_LONG);
        if (!ext) return;
        for_range(J, v, c_long(J, 0), ext, &s->body);
        break;
    }
    case LP_S_STORE: {
        if (!s->buf) {
            fail(J, "a store without a buffer");
            return;
        }
        gcc_jit_rvalue *idx = conv(J, gen(J, s->index), CT_LONG);
        val v = gen(J, s->value);
        if (!idx || !v.rv) return;
        gcc_jit_lvalue *target = elem(J, s->buf, idx);
        if (!target) return;
        bool i32 = s->buf->elem == LP_ELEM_I32;
        ctype t = i32 ? CT_LONG : CT_FLOAT;
        gcc_jit_rvalue *cur = s->acc == LP_ASSIGN ? NULL : load(J, s->buf, idx).rv;
        if (s->acc != LP_ASSIGN && !cur) return;
        gcc_jit_rvalue *nv = s->acc == LP_ASSIGN ? conv(J, v, t) : accumulate(J, s->acc, cur, t, v);
        if (!nv) return;
        if (i32) nv = gcc_jit_context_new_cast(c, NULL, nv, J->t_int);
        gcc_jit_block_add_assignment(J->blk, NULL, target, nv);
        break;
    }
    case LP_S_LET:
    case LP_S_SET: {
        gcc_jit_lvalue *v = var_lv(J, s->var);
        if (!v) return;
        ctype t = J->var_t[s->var->id];
        val x = gen(J, s->value);
        gcc_jit_rvalue *nv = s->kind == LP_S_LET ? conv(J, x, t) : accumulate(J, s->acc, rv_of(v), t, x);
        if (!nv) return;
        gcc_jit_block_add_assignment(J->blk, NULL, v, nv);
        break;
    }
    case LP_S_CALL:
        if (!s->call) {
            fail(J, "a call statement without a call");
            return;
        }
        call_stmt(J, s->call);
        break;
    case LP_S_IF: {
        gcc_jit_rvalue *cond;
        if (s->cond) {
            val x = gen(J, s->cond);
            if (!x.rv) return;
            cond = truth(J, x);
        } else if (s->if_buf) {
            gcc_jit_rvalue *base = if_buf_base(J, s->if_buf);
            if (!base) return;
            cond = gcc_jit_context_new_comparison(c, NULL, GCC_JIT_COMPARISON_NE, base,
                                                  gcc_jit_context_null(c, gcc_jit_rvalue_get_type(base)));
        } else {
            fail(J, "an if without a condition");
            return;
        }
        gcc_jit_block *then = new_block(J, "if_t"), *after = new_block(J, "if_x");
        gcc_jit_block_end_with_conditional(J->blk, NULL, cond, then, after);
        J->blk = then;
        stmts(J, &s->body);
        if (J->failed) return;
        gcc_jit_block_end_with_jump(J->blk, NULL, after);
        J->blk = after;
        break;
    }
    default: fail(J, "unknown loop-IR statement kind %d", (int)s->kind);
    }
}

static void stmts(jb *J, const kd_vec *body)
{
    for (int i = 0; i < body->len && !J->failed; i++) {
        if (!body->items[i]) {
            fail(J, "a missing statement");
            return;
        }
        stmt(J, body->items[i]);
    }
}

/* ---- functions ------------------------------------------------------------------------------------ */

typedef struct used_set {
    bool *used;
    const lp_func *f;
    int *ids, n;           /* the buffers marked, in the order met */
} used_set;

static void mark_used(void *ctx, lp_buf *b, bool write)
{
    (void)write;
    used_set *u = ctx;
    if (b && b->id >= 0 && b->id < u->f->bufs.len && u->f->bufs.items[b->id] == b && !u->used[b->id]) {
        u->used[b->id] = true;
        u->ids[u->n++] = b->id;
    }
}

static int by_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The results of kernel calls are doubles (`const double xent = ...`). */
static void mark_call_results(jb *J, const kd_vec *body)
{
    for (int i = 0; i < body->len; i++) {
        const lp_stmt *s = body->items[i];
        if (!s) continue;
        if (s->kind == LP_S_CALL && s->call && s->call->result && s->call->result->id >= 0 &&
            s->call->result->id < J->f->vars.len)
            J->var_t[s->call->result->id] = CT_DOUBLE;
        mark_call_results(J, &s->body);
    }
}

static gcc_jit_rvalue *buffer_address(jb *J, const lp_buf *b, gcc_jit_type *pt)
{
    gcc_jit_context *c = J->ctx;
    gcc_jit_rvalue *base = NULL;
    switch (b->space) {
    case LP_PARAMS: base = param_rv(J, P_PARAMS, "params"); break;
    case LP_OPT: base = param_rv(J, P_OPT, "opt_state"); break;
    case LP_GRADS: base = param_rv(J, P_GRADS, "grads"); break;
    case LP_INPUT: {
        gcc_jit_rvalue *in = param_rv(J, P_INPUTS, "inputs");
        if (!in) return NULL;
        return gcc_jit_context_new_cast(
            c, NULL, rv_of(gcc_jit_context_new_array_access(c, NULL, in, c_long(J, b->index))), pt);
    }
    case LP_LABEL: {
        gcc_jit_rvalue *l = param_rv(J, P_LABELS, "labels");
        return l ? gcc_jit_context_new_cast(c, NULL, l, pt) : NULL;
    }
    case LP_OUTPUT: {
        if (J->f->kind == LP_F_TRAIN_STEP) {
            gcc_jit_rvalue *o = param_rv(J, P_OUTPUTS0, "outputs0");
            return o ? gcc_jit_context_new_cast(c, NULL, o, pt) : NULL;
        }
        gcc_jit_rvalue *o = param_rv(J, P_OUTPUTS, "outputs");
        if (!o) return NULL;
        return gcc_jit_context_new_cast(
            c, NULL, rv_of(gcc_jit_context_new_array_access(c, NULL, o, c_long(J, b->index))), pt);
    }
    case LP_ARENA: {
        gcc_jit_rvalue *a = param_rv(J, P_ARENA, "arena");
        if (!a) return NULL;
        gcc_jit_rvalue *A = gcc_jit_context_new_cast(c, NULL, a, J->t_charp);
        gcc_jit_rvalue *at = gcc_jit_lvalue_get_address(gcc_jit_context_new_array_access(c, NULL, A, c_long(J, (long)b->offset)), NULL);
        return gcc_jit_context_new_cast(c, NULL, at, pt);
    }
    default:
        fail(J, "buffer %s: unknown memory space %d", b->name, (int)b->space);
        return NULL;
    }
    if (!base) return NULL;
    gcc_jit_rvalue *at = gcc_jit_lvalue_get_address(gcc_jit_context_new_array_access(c, NULL, base, c_long(J, (long)b->offset)), NULL);
    return gcc_jit_context_new_cast(c, NULL, at, pt);
}

/* ---- functions ------------------------------------------------------------------------------------
 * A function of more than 4 * PART_KERNELS kernels is built as parts of about PART_KERNELS
 * kernels each, internal functions that the exported one calls in order:
 * GCC's optimiser grows faster than linearly with the size of a function
 * (a training step of 100 Dense layers, one function, took 32 s to compile
 * at -O3). A part ends only where no loop-IR variable is live across the
 * cut; the small stack buffers (lp_buf.local) live in one block of the
 * function, whose address every part gets. The parts are exported
 * (<model>_<function>_part<i>; see new_function). */
enum { PART_KERNELS = 16 };   /* a function of more than 4x this many is built in parts */

/* The API parameters of f (as sig_params() in emit_c.c), and for a part
 * the locals block: the function, J->param and J->ptype set. */
static gcc_jit_function *new_function(jb *J, const lp_func *f, const char *name, bool part)
{
    gcc_jit_context *c = J->ctx;
    static const int sig[LP_F_COUNT][10] = {
        [LP_F_INIT] = {P_PARAMS, P_OPT, P_SEED, -1},
        [LP_F_PREDICT] = {P_PARAMS, P_INPUTS, P_OUTPUTS, P_BATCH, P_ARENA, -1},
        [LP_F_GRAD] = {P_PARAMS, P_INPUTS, P_LABELS, P_GRADS, P_BATCH, P_STEP, P_ARENA, -1},
        [LP_F_APPLY] = {P_PARAMS, P_GRADS, P_OPT, P_STEP, P_LR, -1},
        [LP_F_TRAIN_STEP] = {P_PARAMS, P_OPT, P_INPUTS, P_LABELS, P_BATCH, P_STEP, P_LR, P_ARENA, P_OUTPUTS0, -1},
    };
    static const char *const pname[P_COUNT] = {
        [P_PARAMS] = "params", [P_OPT] = "opt_state", [P_GRADS] = "grads", [P_INPUTS] = "inputs",
        [P_LABELS] = "labels", [P_OUTPUTS] = "outputs", [P_OUTPUTS0] = "outputs0", [P_BATCH] = "batch",
        [P_STEP] = "step", [P_LR] = "learning_rate", [P_SEED] = "seed", [P_ARENA] = "arena",
    };
    gcc_jit_type *ptype[P_COUNT] = {
        [P_PARAMS] = J->t_floatp, [P_OPT] = J->t_floatp, [P_GRADS] = J->t_floatp, [P_INPUTS] = J->t_floatpp,
        [P_LABELS] = J->t_floatp, [P_OUTPUTS] = J->t_floatpp, [P_OUTPUTS0] = J->t_floatp, [P_BATCH] = J->t_int,
        [P_STEP] = J->t_ull, [P_LR] = J->t_float, [P_SEED] = J->t_ull, [P_ARENA] = J->t_voidp,
    };
    gcc_jit_param *params[11];
    int np = 0;
    for (int i = 0; i < P_COUNT; i++) J->param[i] = NULL;
    for (; sig[f->kind][np] >= 0; np++) {
        int w = sig[f->kind][np];
        params[np] = gcc_jit_context_new_param(c, NULL, ptype[w], pname[w]);
        J->param[w] = gcc_jit_param_as_rvalue(params[np]);
        J->sig_type[np] = ptype[w];
    }
    J->locals_param = NULL;
    if (part) {
        params[np] = gcc_jit_context_new_param(c, NULL, J->t_floatp, "locals");
        J->locals_param = gcc_jit_param_as_rvalue(params[np]);
        J->sig_type[np++] = J->t_floatp;
    }
    J->nsig = np;
    for (int w = 0; w < P_COUNT; w++) J->ptype[w] = J->param[w] ? ptype[w] : NULL;
    bool returns = !part && (f->kind == LP_F_GRAD || f->kind == LP_F_TRAIN_STEP);
    /* Parts are exported: GCC inlines a static function called once back into
     * its caller, and with -fno-inline-functions-called-once GCC 12's
     * interprocedural passes at -O1 miscompiled parts as static functions
     * (a gradient read as 1e-17: the differential tester's "jit in parts",
     * tests/difftest/regressions/jit-parts-static-O1.kdsl). */
    return gcc_jit_context_new_function(c, NULL, GCC_JIT_FUNCTION_EXPORTED,
                                        returns ? J->t_float : J->t_void, name, np, params, 0);
}

/* Starts building function fn: fresh locals, no parallel context yet. */
static void begin(jb *J, gcc_jit_function *fn, const char *name)
{
    J->fn = fn;
    J->fname = name;
    J->ntmp = J->nblk = 0;
    J->loop_depth = 0;
    J->outlined = false;
    J->ctx_struct = NULL;
    J->ctx_local = NULL;
    /* The function's arrays by variable and buffer id serve each part in
     * turn, cleared through the entries the last part set: fresh arrays
     * per part made memory grow with parts x buffers (10,000 Dense layers
     * ran out of 24 GB). */
    for (int i = 0; i < J->nvar_set; i++) J->var_all[J->var_set[i]] = NULL;
    for (int i = 0; i < J->nbufp_set; i++) J->bufp_all[J->bufp_set[i]] = NULL;
    J->nvar_set = J->nbufp_set = 0;
    J->var = J->var_all;   /* declared at first use (var_local) */
    J->bufp = J->bufp_all;
    J->blk = gcc_jit_function_new_block(fn, "entry");
}

/* The pointer locals of the buffers kernels [k0, k1) touch (and `also`):
 * where the C text points them. A stack buffer is an array of its own in a
 * function built whole, else its place in the locals block (`block`, with
 * local_at[] the offsets). */
static bool declare_buffers(jb *J, int k0, int k1, const lp_buf *also, gcc_jit_rvalue *block, const int64_t *local_at)
{
    gcc_jit_context *c = J->ctx;
    const lp_func *f = J->f;
    used_set us = {J->used_all, f, J->used_ids, 0};
    for (int k = k0; k < k1; k++) lp_kernel_visit_bufs(f->kernels.items[k], mark_used, &us);
    if (also) mark_used(&us, (lp_buf *)also, false);
    qsort(us.ids, (size_t)us.n, sizeof *us.ids, by_int);   /* declared in id order, as the whole function was */
    for (int u = 0; u < us.n; u++) J->used_all[us.ids[u]] = false;   /* clean for the next part */
    for (int u = 0; u < us.n; u++) {
        int i = us.ids[u];
        const lp_buf *b = f->bufs.items[i];
        J->bufp_set[J->nbufp_set++] = i;
        bool i32 = b->elem == LP_ELEM_I32;
        gcc_jit_type *et = i32 ? J->t_int : J->t_float;
        gcc_jit_type *pt = i32 ? J->t_intp : J->t_floatp;
        J->bufp[i] = gcc_jit_function_new_local(J->fn, NULL, pt, b->name);
        gcc_jit_rvalue *init;
        if (b->space == LP_ARENA && b->local) {
            if (b->elems < 1 || b->elems > (1 << 20)) {
                fail(J, "%s: local buffer %s has %lld elements", J->fname, b->name, (long long)b->elems);
                return false;
            }
            if (block) {
                init = gcc_jit_lvalue_get_address(gcc_jit_context_new_array_access(c, NULL, block, c_long(J, (long)local_at[i])), NULL);
                if (i32) init = gcc_jit_context_new_cast(c, NULL, init, pt);
            } else {
                char an[256];
                snprintf(an, sizeof an, "%s_local", b->name);
                gcc_jit_lvalue *arr = gcc_jit_function_new_local(
                    J->fn, NULL, gcc_jit_context_new_array_type(c, NULL, et, (int)b->elems), an);
                init = gcc_jit_lvalue_get_address(gcc_jit_context_new_array_access(c, NULL, rv_of(arr), c_long(J, 0)), NULL);
            }
        } else {
            init = buffer_address(J, b, pt);
        }
        if (!init) return false;
        gcc_jit_block_add_assignment(J->blk, NULL, J->bufp[i], init);
    }
    return true;
}

/* ---- grad's call-out ---------------------------------------------------------------------------
 * Data-parallel training (runtime/host/train_dist.c) starts summing a
 * bucket of gradients over the ranks as soon as the backward pass has
 * finished them, while it goes on with the layers below. So grad calls
 * kdh_grads_ready(offset, count) after the last kernel that touches each
 * weight's gradient (its range of grads): no later kernel reads or writes
 * those bytes. Only the JIT's grad does (the host never runs the C text's
 * grad data-parallel); train_step, which one process runs, has none. */

typedef struct grads_touch {
    const lp_program *p;
    int *done, k;
} grads_touch;

static void touch_grads(void *ctx, lp_buf *b, bool write)
{
    (void)write;
    grads_touch *t = ctx;
    if (b->space == LP_GRADS && b->var >= 0 && b->var < t->p->nvars) t->done[b->var] = t->k;
}

static void plan_grads_ready(jb *J, const lp_func *f)
{
    J->grads_done = NULL;
    if (f->kind != LP_F_GRAD) return;
    grads_touch t = {J->p, kd_alloc_array(J->scratch, (size_t)J->p->nvars + 1, sizeof *t.done), 0};
    for (int v = 0; v < J->p->nvars; v++) t.done[v] = -1;
    for (t.k = 0; t.k < f->kernels.len; t.k++) lp_kernel_visit_bufs(f->kernels.items[t.k], touch_grads, &t);
    J->grads_done = t.done;
}

/* kdh_grads_ready(offset, count) for the gradients kernel k finished. */
static void emit_grads_ready(jb *J, int k)
{
    gcc_jit_context *c = J->ctx;
    for (int v = 0; J->grads_done && v < J->p->nvars; v++) {
        if (J->grads_done[v] != k || J->p->grad_offset[v] < 0) continue;
        gcc_jit_type *pt[2] = {J->t_long, J->t_long};
        gcc_jit_type *fpt = gcc_jit_context_new_function_ptr_type(c, NULL, J->t_void, 2, pt, 0);
        gcc_jit_rvalue *args[2] = {c_long(J, (long)J->p->grad_offset[v]),
                                   c_long(J, (long)ir_shape_elems(&J->p->vars[v]->shape))};
        gcc_jit_block_add_eval(J->blk, NULL,
                               gcc_jit_context_new_call_through_ptr(c, NULL, imported(J, IMPORT_GRADS_READY, fpt), 2, args));
    }
}

static void emit_kernels(jb *J, int k0, int k1)
{
    const lp_func *f = J->f;
    for (int k = k0; k < k1 && !J->failed; k++) {
        const lp_kernel *kn = f->kernels.items[k];
        char note[512];
        snprintf(note, sizeof note, "%s:%d %s", J->p->source ? J->p->source : "?", kn->loc.line, kn->what ? kn->what : "");
        gcc_jit_block_add_comment(J->blk, NULL, note);
        stmts(J, &kn->body);
        emit_grads_ready(J, k);
    }
}

/* The kernels that reference each variable: first[v] and last[v]. */
typedef struct var_span {
    int *first, *last, k;
} var_span;

static void span_expr(var_span *vs, const lp_expr *e)
{
    if (!e) return;
    if (e->kind == LP_E_VAR && e->var) {
        int id = e->var->id;
        if (vs->first[id] < 0) vs->first[id] = vs->k;
        vs->last[id] = vs->k;
    }
    span_expr(vs, e->a);
    span_expr(vs, e->b);
    span_expr(vs, e->c);
}

static void span_var(var_span *vs, const lp_var *v)
{
    if (!v) return;
    if (vs->first[v->id] < 0) vs->first[v->id] = vs->k;
    vs->last[v->id] = vs->k;
}

static void span_stmts(var_span *vs, const kd_vec *body)
{
    for (int i = 0; i < body->len; i++) {
        const lp_stmt *s = body->items[i];
        if (s->kind == LP_S_FOR || s->kind == LP_S_LET || s->kind == LP_S_SET) span_var(vs, s->var);
        span_expr(vs, s->extent);
        span_expr(vs, s->index);
        span_expr(vs, s->value);
        span_expr(vs, s->cond);
        if (s->kind == LP_S_CALL && s->call) {
            span_var(vs, s->call->result);
            for (int j = 0; j < lp_kernels[s->call->k].nargs; j++) {
                span_expr(vs, s->call->args[j].e);
                span_expr(vs, s->call->args[j].off);
            }
        }
        span_stmts(vs, &s->body);
    }
}

/* Where the parts start (cuts[0] = 0, cuts[n] = the kernel count): the
 * number of parts, 1 for a function built whole. */
static int plan_parts(jb *J, const lp_func *f, int *cuts)
{
    int nk = f->kernels.len, part = J->part_kernels;
    cuts[0] = 0;
    if (nk <= 4 * part || f->kind == LP_F_INIT) {
        cuts[1] = nk;
        return 1;
    }
    var_span vs = {kd_alloc_array(J->scratch, (size_t)f->vars.len + 1, sizeof(int)),
                   kd_alloc_array(J->scratch, (size_t)f->vars.len + 1, sizeof(int)), 0};
    for (int i = 0; i < f->vars.len; i++) vs.first[i] = -1;
    for (vs.k = 0; vs.k < nk; vs.k++) span_stmts(&vs, &((const lp_kernel *)f->kernels.items[vs.k])->body);
    /* live_across[k]: some variable is referenced both before kernel k and from k on */
    int *open = kd_alloc_array(J->scratch, (size_t)nk + 2, sizeof(int));
    for (int i = 0; i < f->vars.len; i++)
        if (vs.first[i] >= 0 && vs.last[i] > vs.first[i]) open[vs.first[i] + 1]++, open[vs.last[i] + 1]--;
    int n = 0, live = 0;
    for (int k = 1; k < nk; k++) {
        live += open[k];
        if (live == 0 && k - cuts[n] >= part && nk - k >= (part + 1) / 2) cuts[++n] = k;
    }
    cuts[++n] = nk;
    return n;
}

/* ---- the work of several processes ---------------------------------------------------------------
 * GCC compiles one context at a time in a process (libgccjit holds a lock),
 * so a program is compiled by several processes at once (kd_jit_options.jobs):
 * each builds and compiles a share of the units (a function built whole, or
 * one part of a function built in parts) into a library of its own, and
 * this process loads them all. Worker 0 (this process) also builds every
 * function that calls parts, and calls the parts another worker built
 * through its table of host functions, whose entries from IMPORTS on are
 * the parts' addresses (bind). */
typedef struct jit_plan {
    int workers;
    int nparts[LP_F_COUNT];     /* 0: f not compiled */
    int *cuts[LP_F_COUNT];      /* plan_parts' */
    int *worker[LP_F_COUNT];    /* of each part, or [0] of a function built whole */
    int slot0[LP_F_COUNT];      /* the table entry of f's part 0 */
    int slots;                  /* the table's entries */
} jit_plan;

/* Whether o asks for function f of p (kd_jit_options.functions). */
static bool wanted(const lp_program *p, const kd_jit_options *o, int f)
{
    return p->funcs[f] && !lp_func_c_only((lp_func_kind)f) && (!o->functions || (o->functions & (1u << f)));
}

/* Whether J's worker builds part p of f (p < 0: the function itself: the
 * whole function, or the one calling the parts). */
static bool mine(const jb *J, int f, int p)
{
    const jit_plan *pl = J->plan;
    if (pl->nparts[f] == 0) return false;
    if (p < 0) return pl->nparts[f] > 1 ? J->worker == 0 : pl->worker[f][0] == J->worker;
    return pl->worker[f][p] == J->worker;
}

/* GCC's work on statements, roughly: a loop (which it unrolls, vectorises,
 * versions) as much as 16 other statements (ResNet50's init, 480 calls
 * and ifs, compiles in about the time of a part of its predict, 30 loops). */
static int64_t stmt_weight(const kd_vec *body)
{
    int64_t n = 0;
    for (int i = 0; i < body->len; i++) {
        const lp_stmt *s = body->items[i];
        n += (s->kind == LP_S_FOR ? 16 : 1) + stmt_weight(&s->body);
    }
    return n;
}

static int64_t kernels_weight(const lp_func *f, int k0, int k1)
{
    int64_t n = 0;
    for (int k = k0; k < k1; k++) n += stmt_weight(&((const lp_kernel *)f->kernels.items[k])->body);
    return n;
}

typedef struct unit {
    int f, p;
    int64_t weight;
} unit;

static int by_weight(const void *a, const void *b)
{
    const unit *x = a, *y = b;
    return (x->weight < y->weight) - (x->weight > y->weight);
}

/* The least work (kernels_weight) for which kd_jit_options.jobs 0 starts
 * one more process: a process costs GCC's start, the assembler and the
 * linker once more (~0.1 s), which a small program does not win back
 * (kdslc train of the Fashion-MNIST MLP weighs 361, of its CNN 486;
 * ResNet50's inference 3009, in units of at most 320). */
enum { WEIGHT_PER_WORKER = 1000 };

/* Each unit to the worker with the least work so far, the largest first;
 * workers < 0: as many as the CPUs (-workers) and the work make worth it. */
static void plan_work(jb *J, const lp_program *p, const kd_jit_options *o, int workers, jit_plan *pl)
{
    memset(pl, 0, sizeof *pl);
    pl->slots = IMPORTS;
    int nunits = 0;
    for (int f = 0; f < LP_F_COUNT; f++) {
        if (!wanted(p, o, f)) continue;
        const lp_func *fn = p->funcs[f];
        pl->cuts[f] = kd_alloc_array(J->scratch, (size_t)fn->kernels.len + 2, sizeof(int));
        pl->nparts[f] = plan_parts(J, fn, pl->cuts[f]);
        pl->worker[f] = kd_alloc_array(J->scratch, (size_t)pl->nparts[f], sizeof(int));
        pl->slot0[f] = pl->slots;
        if (pl->nparts[f] > 1) pl->slots += pl->nparts[f];
        nunits += pl->nparts[f];
    }
    unit *u = kd_alloc_array(J->scratch, (size_t)nunits + 1, sizeof *u);
    int n = 0;
    for (int f = 0; f < LP_F_COUNT; f++)
        for (int q = 0; q < pl->nparts[f]; q++)
            u[n++] = (unit){f, q, kernels_weight(p->funcs[f], pl->cuts[f][q], pl->cuts[f][q + 1])};
    qsort(u, (size_t)n, sizeof *u, by_weight);
    if (workers < 0) {   /* no more than the largest unit, or WEIGHT_PER_WORKER, each */
        int64_t total = 0, least = n > 0 && u[0].weight > WEIGHT_PER_WORKER ? u[0].weight : WEIGHT_PER_WORKER;
        for (int i = 0; i < n; i++) total += u[i].weight;
        workers = total / least < -workers ? (int)(total / least) : -workers;
    }
    pl->workers = workers < 1 ? 1 : workers > MAX_WORKERS ? MAX_WORKERS : workers > n ? (n > 0 ? n : 1) : workers;
    int64_t load[MAX_WORKERS] = {0};
    for (int i = 0; i < n; i++) {
        int w = 0;
        for (int k = 1; k < pl->workers; k++)
            if (load[k] < load[w]) w = k;
        pl->worker[u[i].f][u[i].p] = w;
        load[w] += u[i].weight;
    }
}

/* The call of part q of f from the function calling the parts: direct when
 * this worker built it, else through the table. */
static gcc_jit_rvalue *call_part(jb *J, int f, int q, gcc_jit_function *local, int na, gcc_jit_rvalue **args)
{
    if (local) return gcc_jit_context_new_call(J->ctx, NULL, local, na, args);
    gcc_jit_type *fpt = gcc_jit_context_new_function_ptr_type(J->ctx, NULL, J->t_void, na, J->sig_type, 0);
    return gcc_jit_context_new_call_through_ptr(J->ctx, NULL, imported(J, J->plan->slot0[f] + q, fpt), na, args);
}

static bool build_function(jb *J, const lp_func *f, kd_arena *scratch)
{
    gcc_jit_context *c = J->ctx;
    J->f = f;
    J->scratch = scratch;
    J->npar = 0;

    /* Every lp_var is typed as the C text declares it. */
    J->var_t = kd_alloc_array(scratch, (size_t)f->vars.len + 1, sizeof *J->var_t);
    for (int i = 0; i < f->vars.len; i++) {
        const lp_var *v = f->vars.items[i];
        if (v->id != i) {
            fail(J, "%s_%s: variable %s has id %d at index %d", J->p->name, lp_func_names[f->kind], v->name, v->id, i);
            return false;
        }
        J->var_t[i] = v->type == LP_INT ? CT_LONG : CT_FLOAT;
    }
    for (int k = 0; k < f->kernels.len; k++) mark_call_results(J, &((const lp_kernel *)f->kernels.items[k])->body);

    for (int i = 0; i < f->bufs.len; i++)
        if (((const lp_buf *)f->bufs.items[i])->id != i) {
            fail(J, "%s_%s: buffer %s has id %d at index %d", J->p->name, lp_func_names[f->kind],
                 ((const lp_buf *)f->bufs.items[i])->name, ((const lp_buf *)f->bufs.items[i])->id, i);
            return false;
        }
    size_t nv = (size_t)f->vars.len + 1, nb = (size_t)f->bufs.len + 1;
    J->var_all = kd_alloc_array(scratch, nv, sizeof *J->var_all);
    J->var_set = kd_alloc_array(scratch, nv, sizeof *J->var_set);
    J->bufp_all = kd_alloc_array(scratch, nb, sizeof *J->bufp_all);
    J->bufp_set = kd_alloc_array(scratch, nb, sizeof *J->bufp_set);
    J->used_all = kd_alloc_array(scratch, nb, sizeof *J->used_all);
    J->used_ids = kd_alloc_array(scratch, nb, sizeof *J->used_ids);
    J->nvar_set = J->nbufp_set = 0;
    kd_thread_planner_init(&J->tplan, J->p, f, J->scratch, J->split_small);
    plan_grads_ready(J, f);

    int *cuts = J->plan->cuts[f->kind], nparts = J->plan->nparts[f->kind];
    char *name = kd_format(scratch, "%s_%s", J->p->name, lp_func_names[f->kind]);
    bool returns = f->kind == LP_F_GRAD || f->kind == LP_F_TRAIN_STEP;

    /* the parts, then the exported function that calls them */
    gcc_jit_function **part = kd_alloc_array(scratch, (size_t)nparts + 1, sizeof *part);
    int64_t *local_at = kd_alloc_array(scratch, (size_t)f->bufs.len + 1, sizeof *local_at), nlocal = 0;
    for (int i = 0; i < f->bufs.len; i++) {
        const lp_buf *b = f->bufs.items[i];
        if (b->space == LP_ARENA && b->local) local_at[i] = nlocal, nlocal += b->elems;
    }
    for (int p = 0; nparts > 1 && p < nparts && !J->failed; p++) {
        if (!mine(J, f->kind, p)) continue;
        char *pname = kd_format(scratch, "%s_part%d", name, p);
        part[p] = new_function(J, f, pname, true);
        if (!part[p]) return false;
        begin(J, part[p], pname);
        if (!declare_buffers(J, cuts[p], cuts[p + 1], NULL, J->locals_param, local_at)) return false;
        emit_kernels(J, cuts[p], cuts[p + 1]);
        if (!J->failed) gcc_jit_block_end_with_void_return(J->blk, NULL);
    }
    if (J->failed || !mine(J, f->kind, -1)) return !J->failed;

    gcc_jit_function *fn = new_function(J, f, name, false);
    if (!fn) return false;   /* a libgccjit error, reported by the caller */
    begin(J, fn, name);
    gcc_jit_block *entry = J->blk;

    /* if (batch < 1 || batch > MAX_BATCH) return [NAN]; */
    if (J->param[P_BATCH]) {
        gcc_jit_block *bad = gcc_jit_function_new_block(J->fn, "bad_batch");
        gcc_jit_block *check2 = gcc_jit_function_new_block(J->fn, "check_batch");
        gcc_jit_block *ok = gcc_jit_function_new_block(J->fn, "body");
        gcc_jit_rvalue *b = J->param[P_BATCH];
        gcc_jit_block_end_with_conditional(
            entry, NULL,
            gcc_jit_context_new_comparison(c, NULL, GCC_JIT_COMPARISON_LT, b, gcc_jit_context_new_rvalue_from_int(c, J->t_int, 1)),
            bad, check2);
        gcc_jit_block_end_with_conditional(
            check2, NULL,
            gcc_jit_context_new_comparison(c, NULL, GCC_JIT_COMPARISON_GT, b,
                                           gcc_jit_context_new_rvalue_from_int(c, J->t_int, J->p->max_batch)),
            bad, ok);
        if (returns) gcc_jit_block_end_with_return(bad, NULL, gcc_jit_context_new_rvalue_from_double(c, J->t_float, NAN));
        else gcc_jit_block_end_with_void_return(bad, NULL);
        J->blk = ok;
    }

    if (nparts == 1) {
        if (!declare_buffers(J, 0, f->kernels.len, f->ret, NULL, NULL)) return false;
        emit_kernels(J, 0, f->kernels.len);
    } else {
        gcc_jit_rvalue *block = NULL;
        if (nlocal > 0) {
            gcc_jit_lvalue *arr = gcc_jit_function_new_local(
                fn, NULL, gcc_jit_context_new_array_type(c, NULL, J->t_float, (int)nlocal), "locals");
            block = gcc_jit_lvalue_get_address(gcc_jit_context_new_array_access(c, NULL, rv_of(arr), c_long(J, 0)), NULL);
        } else {
            block = gcc_jit_context_null(c, J->t_floatp);
        }
        gcc_jit_rvalue *args[11];
        int na = 0;
        for (int i = 0; i < gcc_jit_function_get_param_count(fn); i++)
            args[na++] = gcc_jit_param_as_rvalue(gcc_jit_function_get_param(fn, i));
        args[na++] = block;
        J->sig_type[J->nsig] = J->t_floatp;   /* a part's type: the function's parameters, then the locals block */
        for (int p = 0; p < nparts; p++) gcc_jit_block_add_eval(J->blk, NULL, call_part(J, f->kind, p, part[p], na, args));
        J->locals_param = block;
        if (f->ret && !declare_buffers(J, 0, 0, f->ret, block, local_at)) return false;
    }
    if (J->failed) return false;
    if (returns) {
        if (!f->ret) {
            fail(J, "%s returns the loss but has no loss buffer", name);
            return false;
        }
        val r = load(J, f->ret, c_long(J, 0));
        if (!r.rv) return false;
        gcc_jit_block_end_with_return(J->blk, NULL, conv(J, r, CT_FLOAT));
    } else {
        gcc_jit_block_end_with_void_return(J->blk, NULL);
    }
    return !J->failed;
}

/* ---- compile ------------------------------------------------------------------------------------------ */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void set_types(jb *J)
{
    gcc_jit_context *c = J->ctx;
    J->t_void = gcc_jit_context_get_type(c, GCC_JIT_TYPE_VOID);
    J->t_int = gcc_jit_context_get_type(c, GCC_JIT_TYPE_INT);
    J->t_long = gcc_jit_context_get_type(c, GCC_JIT_TYPE_LONG);
    J->t_uint = gcc_jit_context_get_type(c, GCC_JIT_TYPE_UNSIGNED_INT);
    J->t_ull = gcc_jit_context_get_type(c, GCC_JIT_TYPE_UNSIGNED_LONG_LONG);
    J->t_bool = gcc_jit_context_get_type(c, GCC_JIT_TYPE_BOOL);
    J->t_float = gcc_jit_context_get_type(c, GCC_JIT_TYPE_FLOAT);
    J->t_double = gcc_jit_context_get_type(c, GCC_JIT_TYPE_DOUBLE);
    J->t_char = gcc_jit_context_get_type(c, GCC_JIT_TYPE_CHAR);
    J->t_voidp = gcc_jit_context_get_type(c, GCC_JIT_TYPE_VOID_PTR);
    J->t_charp = gcc_jit_type_get_pointer(J->t_char);
    J->t_floatp = gcc_jit_type_get_pointer(J->t_float);
    J->t_floatpp = gcc_jit_type_get_pointer(J->t_floatp);
    J->t_intp = gcc_jit_type_get_pointer(J->t_int);
}

static bool jit_error(gcc_jit_context *ctx, char *why, size_t why_len, const char *what)
{
    const char *e = gcc_jit_context_get_first_error(ctx);
    if (!e) return false;
    snprintf(why, why_len, "libgccjit: %s: %s", what, e);
    return true;
}

/* out[i] = the JIT's kdk_dropout_bits(seed[i], step[i], salt[i], index[i]):
 * the inline helper of every dropout loop, compiled alone at -O2 in a loop of
 * its own, for the tests. 0, or -1 if libgccjit failed. */
int kd_jit_dropout_bits(long n, const uint64_t *seed, const uint64_t *step, const uint32_t *salt,
                        const uint64_t *index, uint32_t *out)
{
    gcc_jit_context *c = gcc_jit_context_acquire();
    if (!c) return -1;
#ifdef LIBGCCJIT_HAVE_gcc_jit_context_set_bool_print_errors_to_stderr
    gcc_jit_context_set_bool_print_errors_to_stderr(c, 0);
#endif
    gcc_jit_context_set_int_option(c, GCC_JIT_INT_OPTION_OPTIMIZATION_LEVEL, 2);
    char why[256];
    jb J = {.ctx = c, .why = why, .why_len = sizeof why};
    set_types(&J);
    gcc_jit_type *U = J.t_ull, *Up = gcc_jit_type_get_pointer(gcc_jit_type_get_const(U));
    gcc_jit_type *ts[6] = {J.t_long, Up, Up, gcc_jit_type_get_pointer(gcc_jit_type_get_const(J.t_uint)), Up,
                           gcc_jit_type_get_pointer(J.t_uint)};
    const char *ns[6] = {"n", "seed", "step", "salt", "index", "out"};
    gcc_jit_param *pp[6];
    for (int i = 0; i < 6; i++) pp[i] = gcc_jit_context_new_param(c, NULL, ts[i], ns[i]);
    gcc_jit_function *fn = gcc_jit_context_new_function(c, NULL, GCC_JIT_FUNCTION_EXPORTED, J.t_void, "bits", 6, pp, 0);
    gcc_jit_lvalue *i = gcc_jit_function_new_local(fn, NULL, J.t_long, "i");
    gcc_jit_block *entry = gcc_jit_function_new_block(fn, "entry"), *test = gcc_jit_function_new_block(fn, "test");
    gcc_jit_block *body = gcc_jit_function_new_block(fn, "body"), *done = gcc_jit_function_new_block(fn, "done");
    gcc_jit_block_add_assignment(entry, NULL, i, gcc_jit_context_zero(c, J.t_long));
    gcc_jit_block_end_with_jump(entry, NULL, test);
    gcc_jit_block_end_with_conditional(
        test, NULL, gcc_jit_context_new_comparison(c, NULL, GCC_JIT_COMPARISON_LT, rv_of(i), gcc_jit_param_as_rvalue(pp[0])),
        body, done);
    gcc_jit_rvalue *args[4];
    for (int k = 0; k < 4; k++)
        args[k] = rv_of(gcc_jit_context_new_array_access(c, NULL, gcc_jit_param_as_rvalue(pp[1 + k]), rv_of(i)));
    gcc_jit_block_add_assignment(body, NULL, gcc_jit_context_new_array_access(c, NULL, gcc_jit_param_as_rvalue(pp[5]), rv_of(i)),
                                 gcc_jit_context_new_call(c, NULL, helper_dropout_bits(&J), 4, args));
    gcc_jit_block_add_assignment_op(body, NULL, i, GCC_JIT_BINARY_OP_PLUS, gcc_jit_context_one(c, J.t_long));
    gcc_jit_block_end_with_jump(body, NULL, test);
    gcc_jit_block_end_with_void_return(done, NULL);
    gcc_jit_result *res = gcc_jit_context_compile(c);
    void *f = res ? gcc_jit_result_get_code(res, "bits") : NULL;
    if (f) {
        void (*bits)(long, const uint64_t *, const uint64_t *, const uint32_t *, const uint64_t *, uint32_t *);
        memcpy(&bits, &f, sizeof f);
        bits(n, seed, step, salt, index, out);
    }
    if (res) gcc_jit_result_release(res);
    gcc_jit_context_release(c);
    return f ? 0 : -1;
}

/* The table of host functions (IMPORTS_FN), of `slots` entries, and the
 * function returning it. */
static void new_imports(jb *J, int slots)
{
    gcc_jit_context *c = J->ctx;
    gcc_jit_type *tab = gcc_jit_context_new_array_type(c, NULL, J->t_voidp, slots);
    J->imports = gcc_jit_context_new_global(c, NULL, GCC_JIT_GLOBAL_INTERNAL, tab, "kdj_imports");
    gcc_jit_function *fn =
        gcc_jit_context_new_function(c, NULL, GCC_JIT_FUNCTION_EXPORTED, gcc_jit_type_get_pointer(J->t_voidp), IMPORTS_FN, 0, NULL, 0);
    gcc_jit_block_end_with_return(
        gcc_jit_function_new_block(fn, "entry"), NULL,
        gcc_jit_lvalue_get_address(gcc_jit_context_new_array_access(c, NULL, rv_of(J->imports), c_long(J, 0)), NULL));
}

/* A context with worker w's share of p built, or NULL with why set. */
static gcc_jit_context *build_context(const lp_program *p, const kd_jit_options *o, int level, const char *march,
                                      const jit_plan *plan, int w, char *why, size_t why_len)
{
    gcc_jit_context *ctx = gcc_jit_context_acquire();
    if (!ctx) {
        snprintf(why, why_len, "libgccjit: cannot create a context");
        return NULL;
    }
#ifdef LIBGCCJIT_HAVE_gcc_jit_context_set_bool_print_errors_to_stderr
    gcc_jit_context_set_bool_print_errors_to_stderr(ctx, 0);
#endif
    gcc_jit_context_set_int_option(ctx, GCC_JIT_INT_OPTION_OPTIMIZATION_LEVEL, level);
    gcc_jit_context_set_bool_allow_unreachable_blocks(ctx, 1);
    char opt[96];
    if (march && *march) {
        snprintf(opt, sizeof opt, "-march=%s", march);
        gcc_jit_context_add_command_line_option(ctx, opt);
    }
    /* Link the code against libm: else its unversioned references to expf, logf...
     * bind to glibc's oldest versions (the SVID-compatible wrappers, which
     * differ from the default ones at least in the NaNs they return). */
    gcc_jit_context_add_driver_option(ctx, "-lm");
    /* Bit-identical to the C backend: no fused multiply-add contraction (and no -ffast-math). */
    if (!o->fp_contract) gcc_jit_context_add_command_line_option(ctx, "-ffp-contract=off");
    /* sqrtf without errno: a single (vector) square-root instruction, so that
     * loops calling it (Adam's update) vectorise. The values are the same
     * (sqrt is correctly rounded either way); only errno is left alone. */
    gcc_jit_context_add_command_line_option(ctx, "-fno-math-errno");
    /* Debugging the speed of the generated code: its assembly to stderr. */
    if (getenv("KDSL_JIT_DUMP_ASM")) gcc_jit_context_set_bool_option(ctx, GCC_JIT_BOOL_OPTION_DUMP_GENERATED_CODE, 1);

    kd_arena scratch = {0};
    jb J = {.ctx = ctx, .p = p, .why = why, .why_len = why_len, .serial = o->serial_loops, .split_small = o->split_small_loops,
           .part_kernels = o->part_kernels > 0 ? o->part_kernels : PART_KERNELS, .plan = plan, .worker = w};
    set_types(&J);
    new_imports(&J, plan->slots);
    for (int f = 0; f < LP_F_COUNT && !J.failed; f++) {
        if (!plan->nparts[f]) continue;
        if (p->funcs[f]->kind != (lp_func_kind)f) {
            fail(&J, "function %d has kind %d", f, (int)p->funcs[f]->kind);
            break;
        }
        if (!build_function(&J, p->funcs[f], &scratch) && !J.failed) break;
    }
    kd_arena_free(&scratch);
    if (J.failed || jit_error(ctx, why, why_len, "building the code")) {
        gcc_jit_context_release(ctx);
        return NULL;
    }
    if (o->dump_c_like) gcc_jit_context_dump_to_file(ctx, "/dev/stderr", 0);
    return ctx;
}

/* name in worker w's code: the in-memory result (worker 0 without the
 * cache) or its library. */
static void *code_of(const kd_jit *j, int w, const char *name)
{
    if (w == 0 && j->result) return gcc_jit_result_get_code(j->result, name);
    return w < j->nlib && j->lib[w] ? dlsym(j->lib[w], name) : NULL;
}

/* The table of host functions of one piece of code. */
static void fill_table(void *table_fn, void *const *slots, int n)
{
    void **(*table_of)(void);
    memcpy(&table_of, &table_fn, sizeof table_fn);
    memcpy(table_of(), slots, (size_t)n * sizeof *slots);
}

/* The entry points into fns, and the host's functions and the parts into
 * every piece's table; false with why set when the code lacks one of them. */
static bool bind(kd_jit *j, const lp_program *p, const jit_plan *plan, kdh_model_fns *fns, char *why, size_t why_len)
{
    void **slots = calloc((size_t)plan->slots, sizeof *slots);
    if (!slots) {
        snprintf(why, why_len, "out of memory");
        return false;
    }
    for (int k = 0; k < LP_K_COUNT; k++) {
        kdj_fn fn = kernel_address((lp_kernel_id)k);
        memcpy(&slots[k], &fn, sizeof fn);
    }
    void (*range)(kdh_range_fn, void *, long, long, long) = kdh_parallel_range;
    memcpy(&slots[IMPORT_PARALLEL_RANGE], &range, sizeof range);
    void (*ready)(long, long) = kdh_grads_ready;
    memcpy(&slots[IMPORT_GRADS_READY], &ready, sizeof ready);
    void *code[LP_F_COUNT] = {0};
    char name[300];
    bool ok = true;
    for (int f = 0; f < LP_F_COUNT && ok; f++) {
        if (!plan->nparts[f]) continue;
        snprintf(name, sizeof name, "%s_%s", p->name, lp_func_names[f]);
        ok = (code[f] = code_of(j, plan->nparts[f] > 1 ? 0 : plan->worker[f][0], name)) != NULL;
        for (int q = 0; ok && plan->nparts[f] > 1 && q < plan->nparts[f]; q++) {
            snprintf(name, sizeof name, "%s_%s_part%d", p->name, lp_func_names[f], q);
            ok = (slots[plan->slot0[f] + q] = code_of(j, plan->worker[f][q], name)) != NULL;
        }
    }
    /* every worker's own table */
    for (int w = 0; ok && w < plan->workers; w++) {
        void *t = code_of(j, w, IMPORTS_FN);
        if (!(ok = t != NULL)) snprintf(name, sizeof name, "%s", IMPORTS_FN);
        else fill_table(t, slots, plan->slots);
    }
    free(slots);
    if (!ok) {
        snprintf(why, why_len, "libgccjit: no code for %s", name);
        return false;
    }
    memset(fns, 0, sizeof *fns);
    memcpy(&fns->init, &code[LP_F_INIT], sizeof fns->init);
    memcpy(&fns->predict, &code[LP_F_PREDICT], sizeof fns->predict);
    memcpy(&fns->grad, &code[LP_F_GRAD], sizeof fns->grad);
    memcpy(&fns->apply_gradients, &code[LP_F_APPLY], sizeof fns->apply_gradients);
    memcpy(&fns->train_step, &code[LP_F_TRAIN_STEP], sizeof fns->train_step);
    return true;
}

static void unload(kd_jit *j)
{
    if (j->result) gcc_jit_result_release(j->result);
    j->result = NULL;
    for (int i = 0; i < j->nlib; i++)
        if (j->lib[i]) dlclose(j->lib[i]);
    j->nlib = 0;
}

/* What, besides the program, the code depends on: the key's options text. */
static void options_text(char *buf, size_t n, const jit_plan *plan, const kd_jit_options *o, int level, const char *march)
{
    unsigned funcs = 0;
    for (int f = 0; f < LP_F_COUNT; f++)
        if (plan->nparts[f]) funcs |= 1u << f;
    snprintf(buf, n, "O%d march=%s fp_contract=%d serial=%d part_kernels=%d split_small=%d functions=%x workers=%d slots=%d",
             level, march ? march : "", o->fp_contract, o->serial_loops, o->part_kernels > 0 ? o->part_kernels : PART_KERNELS,
             o->split_small_loops, funcs, plan->workers, plan->slots);
}

/* ---- compiling: the workers, the cache ---------------------------------------------------------------- */

typedef struct compile_job {
    const lp_program *p;
    const kd_jit_options *o;
    int level;
    const char *march;
    const jit_plan *plan;
    pid_t pid[MAX_WORKERS];
} compile_job;

/* Workers 1.. in processes of their own, each compiling its share into
 * path[w]; false when a fork failed (those started are waited for). */
static bool start_workers(compile_job *cj, char *const *path)
{
    fflush(NULL);   /* nothing buffered twice */
    for (int w = 1; w < cj->plan->workers; w++) {
        cj->pid[w] = fork();
        if (cj->pid[w] == 0) {
            char why[256];
            gcc_jit_context *c = build_context(cj->p, cj->o, cj->level, cj->march, cj->plan, w, why, sizeof why);
            if (c) gcc_jit_context_compile_to_file(c, GCC_JIT_OUTPUT_KIND_DYNAMIC_LIBRARY, path[w]);
            _exit(c && !gcc_jit_context_get_first_error(c) ? 0 : 1);
        }
        if (cj->pid[w] < 0) {
            for (int k = 1; k < w; k++) waitpid(cj->pid[k], NULL, 0);
            return false;
        }
    }
    return true;
}

static bool wait_workers(const compile_job *cj)
{
    bool ok = true;
    for (int w = 1; w < cj->plan->workers; w++) {
        int st;
        while (waitpid(cj->pid[w], &st, 0) < 0)
            if (errno != EINTR) {
                st = -1;
                break;
            }
        ok = ok && st == 0;
    }
    return ok;
}

/* Worker 0's share built (*ctx) and, when the others compile into files,
 * the workers started and waited for; false (why set: a program that
 * cannot be built) or workers_ok false (a worker failed). */
static bool run_workers(compile_job *cj, char *const *path, gcc_jit_context **ctx, bool *workers_ok, char *why, size_t why_len)
{
    *workers_ok = cj->plan->workers == 1 || start_workers(cj, path);
    *ctx = build_context(cj->p, cj->o, cj->level, cj->march, cj->plan, 0, why, why_len);
    if (*ctx && path[0]) gcc_jit_context_compile_to_file(*ctx, GCC_JIT_OUTPUT_KIND_DYNAMIC_LIBRARY, path[0]);
    if (cj->plan->workers > 1 && *workers_ok) *workers_ok = wait_workers(cj);
    if (*ctx && path[0] && gcc_jit_context_get_first_error(*ctx)) *workers_ok = false;
    return *ctx != NULL;
}

/* Piece w's key: SHA-256 of the program's key and w. */
static void piece_key(const kd_jit_key *key, int w, kd_jit_key *out)
{
    kd_sha256 h;
    kd_sha256_init(&h);
    kd_sha256_update(&h, key->sha, sizeof key->sha);
    kd_sha256_update(&h, &w, sizeof w);
    kd_sha256_final(&h, out->sha);
    for (int i = 0; i < 32; i++) snprintf(out->hex + 2 * i, 3, "%02x", out->sha[i]);
}

/* p's code from the cache (every piece), or compiled into it: true with the
 * libraries loaded into j; false with why set when p cannot be built; else
 * false with j->cache_warning saying why the cache was of no use, for the
 * caller to compile without it. */
static bool through_cache(kd_jit *j, compile_job *cj, kdh_model_fns *fns, char *why, size_t why_len)
{
    const kd_jit_options *o = cj->o;
    const jit_plan *plan = cj->plan;
    int n = plan->workers;
    char opts[512], w[400] = "";
    options_text(opts, sizeof opts, plan, o, cj->level, cj->march);
    kd_jit_key key, piece[MAX_WORKERS];
    j->cache = KD_JIT_CACHE_FAILED;
    if (!kd_jit_cache_key(cj->p, opts, &key, w, sizeof w)) goto fallback;
    for (int i = 0; i < n; i++) piece_key(&key, i, &piece[i]);
    bool found = true;
    for (j->nlib = 0; j->nlib < n; j->nlib++) found = (j->lib[j->nlib] = kd_jit_cache_open(o->cache_dir, &piece[j->nlib])) && found;
    if (found && bind(j, cj->p, plan, fns, w, sizeof w)) {
        j->cache = KD_JIT_CACHE_HIT;
        return true;
    }
    unload(j);   /* a piece missing, or without our symbols: compiled again */
    w[0] = 0;

    kd_jit_cache_entry e[MAX_WORKERS] = {{0}};
    char *path[MAX_WORKERS] = {0};
    bool begun = true;
    for (int i = 0; i < n && begun; i++) begun = kd_jit_cache_begin(o->cache_dir, &piece[i], &e[i], w, sizeof w), path[i] = e[i].tmp;
    if (!begun) {
        for (int i = 0; i < n; i++) kd_jit_cache_abort(&e[i]);
        goto fallback;
    }
    gcc_jit_context *ctx;
    bool workers_ok;
    bool built = run_workers(cj, path, &ctx, &workers_ok, why, why_len);
    if (ctx) gcc_jit_context_release(ctx);
    if (!built || !workers_ok) {
        for (int i = 0; i < n; i++) kd_jit_cache_abort(&e[i]);
        if (!built) return false;
        snprintf(w, sizeof w, "compiling into the cache failed");   /* compiled again without it, for the error */
        goto fallback;
    }
    bool loaded = true;
    for (j->nlib = 0; j->nlib < n; j->nlib++) {
        char wi[400] = "";
        loaded = (j->lib[j->nlib] = kd_jit_cache_commit(&e[j->nlib], &piece[j->nlib], wi, sizeof wi)) && loaded;
        if (wi[0] && !w[0]) snprintf(w, sizeof w, "%s", wi);
    }
    if (!loaded || !bind(j, cj->p, plan, fns, why, why_len)) {
        unload(j);
        for (int i = 0; i < n; i++) kd_jit_cache_remove(o->cache_dir, &piece[i]);
        why[0] = 0;
        goto fallback;
    }
    j->cache = w[0] ? KD_JIT_CACHE_FAILED : KD_JIT_CACHE_STORED;   /* w: loaded, but an entry not kept */
    snprintf(j->cache_warning, sizeof j->cache_warning, "%s", w);
    return true;
fallback:
    snprintf(j->cache_warning, sizeof j->cache_warning, "%s", w);
    return false;
}

/* Without the cache: worker 0 in memory, the others into files of a
 * temporary directory, loaded and removed. False with why set, or with
 * *retry when a worker failed (compiled again by this process alone). */
static bool compile_uncached(kd_jit *j, compile_job *cj, kdh_model_fns *fns, bool *retry, char *why, size_t why_len)
{
    int n = cj->plan->workers;
    char dir[64] = "", *path[MAX_WORKERS] = {0}, names[MAX_WORKERS][96];
    *retry = false;
    if (n > 1) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/kdsl-jit-XXXXXX", tmp && *tmp && strlen(tmp) < 40 ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            *retry = true;
            return false;
        }
        for (int w = 1; w < n; w++) snprintf(names[w], sizeof names[w], "%s/w%d.so", dir, w), path[w] = names[w];
    }
    gcc_jit_context *ctx;
    bool workers_ok;
    bool built = run_workers(cj, path, &ctx, &workers_ok, why, why_len);
    bool ok = built && workers_ok;
    if (ok) {
        j->result = gcc_jit_context_compile(ctx);
        if (!j->result) {
            /* The compiler's own diagnostic (e.g. a bad -march) went to stderr; the
             * context keeps only the driver's failure, so say what was asked. */
            char what[160];
            snprintf(what, sizeof what, "compiling with -O%d%s%s%s", cj->level, cj->march && *cj->march ? " -march=" : "",
                     cj->march && *cj->march ? cj->march : "", cj->o->fp_contract ? "" : " -ffp-contract=off");
            if (!jit_error(ctx, why, why_len, what)) snprintf(why, why_len, "libgccjit: %s failed", what);
            ok = false;
        }
    }
    if (ctx) gcc_jit_context_release(ctx);
    j->nlib = n;   /* lib[0] unused: worker 0's code is j->result */
    for (int w = 1; w < n; w++) {
        if (ok && !(j->lib[w] = dlopen(path[w], RTLD_NOW | RTLD_LOCAL))) ok = false, *retry = true;
        unlink(path[w]);
    }
    if (dir[0]) rmdir(dir);
    if (ok && !bind(j, cj->p, cj->plan, fns, why, why_len)) ok = false;
    if (!ok) unload(j);
    if (built && !workers_ok) *retry = true;
    if (*retry) why[0] = 0;
    return ok;
}

/* Processes compiling at once: kd_jit_options.jobs, else (negative, for
 * plan_work) up to one per CPU. */
static int default_jobs(const kd_jit_options *o)
{
    if (o->jobs > 0) return o->jobs;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n <= 1 ? 1 : n > MAX_WORKERS ? -MAX_WORKERS : -(int)n;
}

kd_jit *kd_jit_compile(const lp_program *p, const kd_jit_options *o, kdh_model_fns *fns, char *why, size_t why_len)
{
    char dummy[8];
    if (!why || why_len == 0) {
        why = dummy;
        why_len = sizeof dummy;
    }
    why[0] = 0;
    if (fns) memset(fns, 0, sizeof *fns);
    if (!p || !fns) {
        snprintf(why, why_len, "no program");
        return NULL;
    }
    if (p->real != LP_F32) {
        snprintf(why, why_len,
                 "the JIT compiles f32 programs only (its entry points have float signatures); "
                 "compile f64 programs with the C backend (kdslc compile --dtype f64)");
        return NULL;
    }
    if (!p->name || !*p->name) {
        snprintf(why, why_len, "the program has no name");
        return NULL;
    }
    double t0 = now_seconds();
    kd_jit_options none = {0};
    if (!o) o = &none;
    kd_jit *j = calloc(1, sizeof *j);
    if (!j) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    compile_job cj = {.p = p, .o = o, .level = o->opt_level <= 0 || o->opt_level > 3 ? 3 : o->opt_level,
                      .march = o->march ? o->march : kd_host_march()};
    if (cj.march) snprintf(j->march, sizeof j->march, "%s", cj.march);
    bool dumps = o->dump_c_like || getenv("KDSL_JIT_DUMP_ASM");   /* one process: one dump */
    kd_arena scratch = {0};
    jb PJ = {.p = p, .scratch = &scratch, .part_kernels = o->part_kernels > 0 ? o->part_kernels : PART_KERNELS};
    jit_plan plan;
    plan_work(&PJ, p, o, dumps ? 1 : default_jobs(o), &plan);
    cj.plan = &plan;

    /* the cache; else (or when it is of no use) compiled in memory; a failed
     * worker (or fork): compiled again by this process alone */
    bool use_cache = o->cache_dir && *o->cache_dir && !dumps, retry = false;
    bool done = use_cache && through_cache(j, &cj, fns, why, why_len);
    if (!done && !why[0]) {
        done = compile_uncached(j, &cj, fns, &retry, why, why_len);
        if (!done && retry && plan.workers > 1) {
            plan_work(&PJ, p, o, 1, &plan);
            done = compile_uncached(j, &cj, fns, &retry, why, why_len);
        }
    }
    kd_arena_free(&scratch);
    if (!done) {
        if (!why[0]) snprintf(why, why_len, "libgccjit: compilation failed");
        kd_jit_free(j);
        return NULL;
    }
    if (use_cache && j->cache == KD_JIT_CACHE_OFF) j->cache = KD_JIT_CACHE_FAILED;
    j->seconds = now_seconds() - t0;
    return j;
}

double kd_jit_compile_seconds(const kd_jit *j) { return j ? j->seconds : 0; }

kd_jit_cache_use kd_jit_cache_result(const kd_jit *j, const char **warning)
{
    if (warning) *warning = j && j->cache_warning[0] ? j->cache_warning : NULL;
    return j ? j->cache : KD_JIT_CACHE_OFF;
}

void kd_jit_free(kd_jit *j)
{
    if (!j) return;
    unload(j);
    free(j);
}
