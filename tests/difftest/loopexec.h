/* loopexec.h — the loop-IR executor of the differential tester (loopexec.c). */
#ifndef KDSL_DIFFTEST_LOOPEXEC_H
#define KDSL_DIFFTEST_LOOPEXEC_H

#include "loop_ir.h"

/* The arguments of a generated function (model.h's API), in double. */
typedef struct lx_args {
    double *params, *opt_state, *grads;
    const double *const *inputs;
    const double *labels;
    double *const *outputs;        /* train_step: outputs[0] is outputs0 (may be NULL) */
    void *arena;
    int batch;
    unsigned long long step, seed;
    double learning_rate;
} lx_args;

/* Runs function `kind` of an f64 program; *ret receives grad's and
 * train_step's loss. 0, or -1 with why set. */
int lx_run(const lp_program *p, lp_func_kind kind, const lx_args *args, double *ret, char *why, size_t why_len);

#endif
