/* activations_c.h — the activation table (activations.h) as C arithmetic.
 * A template: define before each include
 *   KDA_T        the real type (float, double)
 *   KDA_FN(n)    the functions' names, e.g. kda_##n##f
 *   KDA_M(fn)    a <math.h> function of KDA_T, e.g. fn##f (expf)
 *   KDA_RELU(a)  relu as this consumer defines it (the runtime keeps NaN)
 * It defines
 *   KDA_T KDA_FN(apply)(int act, KDA_T x, KDA_T p)      y = f(x)
 *   KDA_T KDA_FN(grad)(int act, KDA_T xy, KDA_T dy, KDA_T p)
 *                      dL/dx, with xy the input or the output as the row's `from` says
 *   KDA_T KDA_FN(fused)(int act, KDA_T x)               f(x) with P the row's default
 *                      (what the runtime's fused epilogues compute)
 * for act a KDK_ACT_* / IR_ACT_* value (row index + 1); none or unknown: x.
 * The vocabulary macros are undefined again at the end. */
#include "activations.h"

#define X x
#define Y x
#define DY dy
#define P p
#define K(c) ((KDA_T)(c))
#define ADD(a, b) ((a) + (b))
#define SUB(a, b) ((a) - (b))
#define MUL(a, b) ((a) * (b))
#define DIV(a, b) ((a) / (b))
#define NEG(a) (-(a))
#define MIN(a, b) ((a) <= (b) ? (a) : (b))
#define MAX(a, b) ((a) >= (b) ? (a) : (b))
#define ABS(a) KDA_M(fabs)(a)
#define SQUARE(a) ((a) * (a))
#define EXP(a) KDA_M(exp)(a)
#define LOG1P(a) KDA_M(log1p)(a)
#define EXPM1(a) KDA_M(expm1)(a)
#define TANH(a) KDA_M(tanh)(a)
#define ERF(a) KDA_M(erf)(a)
#define SIGMOID(a) (1 / (1 + KDA_M(exp)(-(a))))
#define RELU(a) KDA_RELU(a)
#define SEL_GT(a, b, t, f) ((a) > (b) ? (t) : (f))

#define KDA_C_APPLY(NAME, op, name, alias, kind, arg, def, from, f, df) case KDA_##NAME + 1: return f;
#define KDA_C_GRAD(NAME, op, name, alias, kind, arg, def, from, f, df) case KDA_##NAME + 1: return df;
#define KDA_C_FUSED(NAME, op, name, alias, kind, arg, def, from, f, df) \
    case KDA_##NAME + 1: { const KDA_T p = (KDA_T)(def); (void)p; return f; }

static inline KDA_T KDA_FN(apply)(int act, KDA_T x, KDA_T p)
{
    (void)p;
    switch (act) {
    KDA_LIST(KDA_C_APPLY)
    default: return x;
    }
}

static inline KDA_T KDA_FN(grad)(int act, KDA_T x, KDA_T dy, KDA_T p)
{
    (void)p;
    switch (act) {
    KDA_LIST(KDA_C_GRAD)
    default: return dy;
    }
}

static inline KDA_T KDA_FN(fused)(int act, KDA_T x)
{
    switch (act) {
    KDA_LIST(KDA_C_FUSED)
    default: return x;
    }
}

#undef KDA_C_FUSED
#undef KDA_C_APPLY
#undef KDA_C_GRAD
#include "activations_undef.h"
