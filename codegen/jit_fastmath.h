/* jit_fastmath.h — runtime/fastmath.h's float sigmoid and tanh built through
 * libgccjit for the JIT (emit_jit.c), operation for operation as the C
 * functions are written, so that the JIT and generated C agree bit for bit. */
#ifndef KDSL_JIT_FASTMATH_H
#define KDSL_JIT_FASTMATH_H

#include <libgccjit.h>

/* The functions of one context, made on first use. */
typedef struct kd_jit_fastmath {
    gcc_jit_function *exp, *sigmoid, *tanh;
} kd_jit_fastmath;

/* kdk_sigmoidf or kdk_tanhf (tanh false / true) as an always-inline function of
 * float `f` in context `c`, named kd_sigmoid / kd_tanh. */
gcc_jit_function *kd_jit_fastmath_fn(gcc_jit_context *c, gcc_jit_type *f, kd_jit_fastmath *made, bool tanh);

#endif
