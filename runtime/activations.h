/* activations.h — the element-wise activations, each defined once.
 *
 * One row per activation. Every consumer expands the rows its own way: the
 * runtime's fused GEMM / convolution epilogues and the compiler's f64
 * interpreter and constant folding as C arithmetic (activations_c.h), the
 * lowering as loop-IR expressions (codegen/lower_loops.c), and the compiler
 * derives from the same rows its graph ops (IR_<NAME>), their vjp (one
 * generic ACT_GRAD op), the tensor functions and the Keras `activation:`
 * names. The runtime is the lowest layer, so the table lives here.
 *
 *   ROW(NAME, op, name, alias, kind, arg, def, from, f, df)
 *
 *   NAME   KDK_ACT_NAME in the runtime, IR_NAME and IR_ACT_NAME in the compiler
 *   op     the graph op's name (IR dumps, comments in generated code)
 *   name   the KDSL tensor function and Keras activation name
 *   alias  a second name for the same op ("silu" for swish), or NULL
 *   kind   NONE: no argument; REAL: P is the named argument `arg`, default
 *          `def`; FLAG: the row is chosen when the boolean `arg` equals `def`
 *          (gelu and gelu(approximate: true) are two rows of one name)
 *   from   what the gradient reads besides DY: X, the input, or Y, the output
 *          (the output when it suffices: it is kept for the backward pass anyway)
 *   f      y as a formula of X and P
 *   df     dL/dx = DY * dy/dx, as a formula of X or Y, DY and P
 *
 * The formula vocabulary, which each consumer defines before expanding:
 *   X Y DY P K(c)              input, output, output gradient, argument, constant
 *   ADD SUB MUL DIV (a, b)  NEG(a)
 *   MIN MAX (a, b)             a <= b ? a : b, a >= b ? a : b (ties pick a)
 *   ABS SQUARE EXP LOG1P EXPM1 TANH ERF SIGMOID RELU (a)
 *                              SIGMOID is 1 / (1 + exp(-a)); RELU is a > 0 ? a : 0,
 *                              except that the runtime keeps NaN (a <= 0 ? 0 : a)
 *   SEL_GT(a, b, t, f)         a > b ? t : f
 * A consumer may expand a vocabulary word to its own primitive (the loop IR
 * has sigmoid and relu ops, so generated code calls kd_sigmoid / kd_relu).
 *
 * The formulas are Keras 3's (Keras 2's hard_sigmoid was 0.2x + 0.5, clipped).
 * The runtime's epilogues only know the default argument: the fusion pass
 * folds an activation into a GEMM or convolution only when P == def.
 * Rows keep their order: the runtime's KDK_ACT_* values are part of its ABI;
 * a new row goes at the end.
 *
 * Adding an activation: its row here (the compiler, both backends and the
 * runtime's epilogues pick it up), its values at a few points in
 * tests/test_vjp.c (activation_values; the gradient check covers every row
 * by itself), its name in tests/difftest/gen.c, and docs/language.md. */
#ifndef KDSL_ACTIVATIONS_H
#define KDSL_ACTIVATIONS_H

/* Keras' SELU constants (Klambauer et al. 2017). */
#define KDA_SELU_ALPHA 1.67326324235437728481
#define KDA_SELU_SCALE 1.05070098735548049342
#define KDA_SQRT1_2 0.70710678118654752440       /* 1 / sqrt(2) */
#define KDA_INV_SQRT_2PI 0.39894228040143267794  /* 1 / sqrt(2 pi): the normal density at 0 */
#define KDA_SQRT_2_PI 0.79788456080286535588     /* sqrt(2 / pi) */
#define KDA_GELU_C 0.044715

/* Helpers written in the vocabulary, expanded where the rows are. */
#define KDA_GELU_U(x) MUL(K(KDA_SQRT_2_PI), ADD(x, MUL(K(KDA_GELU_C), MUL(x, SQUARE(x)))))
#define KDA_SOFTPLUS(x) ADD(RELU(x), LOG1P(EXP(NEG(ABS(x)))))   /* log(1 + e^x), no overflow */

#define KDA_LIST(ROW)                                                                                       \
    ROW(RELU, relu, "relu", NULL, NONE, NULL, 0, Y,                                                         \
        RELU(X),                                                                                            \
        SEL_GT(Y, K(0), DY, K(0)))                                                                          \
    ROW(SIGMOID, sigmoid, "sigmoid", NULL, NONE, NULL, 0, Y,                                                \
        SIGMOID(X),                                                                                         \
        MUL(DY, MUL(Y, SUB(K(1), Y))))                                                                      \
    ROW(TANH, tanh, "tanh", NULL, NONE, NULL, 0, Y,                                                         \
        TANH(X),                                                                                            \
        MUL(DY, SUB(K(1), SQUARE(Y))))                                                                      \
    ROW(ELU, elu, "elu", NULL, REAL, "alpha", 1.0, X,                                                       \
        SEL_GT(X, K(0), X, MUL(P, EXPM1(X))),                                                               \
        SEL_GT(X, K(0), DY, MUL(DY, MUL(P, EXP(X)))))                                                       \
    ROW(SELU, selu, "selu", NULL, NONE, NULL, 0, X,                                                         \
        MUL(K(KDA_SELU_SCALE), SEL_GT(X, K(0), X, MUL(K(KDA_SELU_ALPHA), EXPM1(X)))),                       \
        MUL(DY, MUL(K(KDA_SELU_SCALE), SEL_GT(X, K(0), K(1), MUL(K(KDA_SELU_ALPHA), EXP(X))))))             \
    ROW(GELU, gelu, "gelu", NULL, FLAG, "approximate", 0, X,                                                \
        MUL(MUL(K(0.5), X), ADD(K(1), ERF(MUL(X, K(KDA_SQRT1_2))))),                                        \
        MUL(DY, ADD(MUL(K(0.5), ADD(K(1), ERF(MUL(X, K(KDA_SQRT1_2))))),                                    \
                    MUL(X, MUL(K(KDA_INV_SQRT_2PI), EXP(MUL(K(-0.5), SQUARE(X))))))))                       \
    ROW(GELU_TANH, gelu_tanh, "gelu", NULL, FLAG, "approximate", 1, X,                                      \
        MUL(MUL(K(0.5), X), ADD(K(1), TANH(KDA_GELU_U(X)))),                                                \
        MUL(DY, ADD(MUL(K(0.5), ADD(K(1), TANH(KDA_GELU_U(X)))),                                            \
                    MUL(MUL(MUL(K(0.5), X), SUB(K(1), SQUARE(TANH(KDA_GELU_U(X))))),                        \
                        MUL(K(KDA_SQRT_2_PI), ADD(K(1), MUL(K(3 * KDA_GELU_C), SQUARE(X))))))))             \
    ROW(SOFTPLUS, softplus, "softplus", NULL, NONE, NULL, 0, X,                                             \
        KDA_SOFTPLUS(X),                                                                                    \
        MUL(DY, SIGMOID(X)))                                                                                \
    ROW(SOFTSIGN, softsign, "softsign", NULL, NONE, NULL, 0, X,                                             \
        DIV(X, ADD(K(1), ABS(X))),                                                                          \
        DIV(DY, SQUARE(ADD(K(1), ABS(X)))))                                                                 \
    ROW(SWISH, swish, "swish", "silu", NONE, NULL, 0, X,                                                    \
        MUL(X, SIGMOID(X)),                                                                                 \
        MUL(DY, MUL(SIGMOID(X), ADD(K(1), MUL(X, SUB(K(1), SIGMOID(X)))))))                                 \
    ROW(MISH, mish, "mish", NULL, NONE, NULL, 0, X,                                                         \
        MUL(X, TANH(KDA_SOFTPLUS(X))),                                                                      \
        MUL(DY, ADD(TANH(KDA_SOFTPLUS(X)),                                                                  \
                    MUL(X, MUL(SUB(K(1), SQUARE(TANH(KDA_SOFTPLUS(X)))), SIGMOID(X))))))                    \
    ROW(HARD_SIGMOID, hard_sigmoid, "hard_sigmoid", NULL, NONE, NULL, 0, X,                                 \
        DIV(MIN(RELU(ADD(X, K(3))), K(6)), K(6)),                                                           \
        SEL_GT(X, K(-3), SEL_GT(K(3), X, DIV(DY, K(6)), K(0)), K(0)))                                       \
    ROW(RELU6, relu6, "relu6", NULL, NONE, NULL, 0, X,                                                      \
        MIN(RELU(X), K(6)),                                                                                 \
        SEL_GT(X, K(0), SEL_GT(K(6), X, DY, K(0)), K(0)))                                                   \
    ROW(LEAKY_RELU, leaky_relu, "leaky_relu", NULL, REAL, "negative_slope", 0.2, X,                         \
        SEL_GT(X, K(0), X, MUL(P, X)),                                                                      \
        SEL_GT(X, K(0), DY, MUL(DY, P)))

enum { KDA_KIND_NONE, KDA_KIND_REAL, KDA_KIND_FLAG };   /* KDA_KIND_##kind */
enum { KDA_FROM_X, KDA_FROM_Y };                         /* KDA_FROM_##from */

/* Row indices from 0; the runtime's and the compiler's activation values are these + 1. */
#define KDA_INDEX(NAME, ...) KDA_##NAME,
enum kda_index { KDA_LIST(KDA_INDEX) KDA_COUNT };
#undef KDA_INDEX

#endif
