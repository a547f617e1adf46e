/* difftest.h — the differential oracle: one KDSL program, its outputs and
 * loss gradients computed by the reference interpreter (double precision,
 * the graphs as sema and autodiff build them, no passes), against
 *   - the loop IR in double (tests/difftest/loopexec.h, no compiler run),
 *     with every optimisation and with each turned off, to 1e-9;
 *   - the JIT with every optimisation, and with each turned off on its own
 *     (graph passes: simplify, CSE, epilogue fusion; loop fusion; in-place
 *     reuse; arena sharing), and at two threads with every loop and kernel
 *     split however small; a variant whose loop IR is the same text as one
 *     already run is not run again;
 *   - the C backend in float and in double (cc, dlopen), when asked;
 *   - the reference gradients against central finite differences, when asked.
 * Each run compares predict's outputs, grad's loss, gradients and state
 * updates, and a train step's loss, weights, optimizer slots and outputs. */
#ifndef KDSL_DIFFTEST_H
#define KDSL_DIFFTEST_H

#include <stdbool.h>
#include <stdint.h>

typedef struct dt_options {
    bool c_backend;        /* also model.c in f32 and f64, built with cc */
    bool fd;               /* finite differences of the reference loss */
    bool threads;          /* the two-thread JIT variant */
    bool no_jit;           /* no JIT variants (the executor's only: fast) */
    bool jit_no_pass_variants; /* of the JIT's variants only the default, two threads and in parts:
                                  the pass variants' time is libgccjit's own, which sanitizers
                                  do not see (tests/run's sanitizer pass), and the executor
                                  still runs each pass variant */
    bool no_exec;          /* no loop-IR executor variants */
    const char *workdir;   /* where the C backend's files go (c_backend) */
    bool verbose;          /* each variant's largest error to stderr */
    int jit_opt_level;     /* GCC's -O for the JIT (kd_jit_options.opt_level; 0: 3) */
} dt_options;

typedef enum dt_status { DT_OK, DT_SKIP, DT_FAIL } dt_status;

typedef struct dt_verdict {
    dt_status status;
    char check[96];        /* what disagreed: "jit no-cse: predict y0" */
    char why[2048];        /* the numbers, or the compiler's message */
    int variants;          /* backends and variants run */
} dt_verdict;

/* Runs program `text` (a model `m`) at `batch` rows of a program compiled for
 * `max_batch`, on data drawn from data_seed. DT_SKIP when the reference
 * itself is not finite (nothing to compare). */
dt_status dt_run(const char *text, int batch, int max_batch, uint64_t data_seed, const dt_options *o, dt_verdict *v);

#endif
