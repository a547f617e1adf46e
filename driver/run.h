/* run.h — `kdslc train / evaluate / predict`: from a model file to the host
 * training driver (runtime/host/train.h). The model goes down the pipeline
 * (driver.c's kd_pipeline), is compiled in process by
 * the libgccjit backend (codegen/jit.h), and its entry points and layout
 * tables are handed to kdh_fit / kdh_evaluate / kdh_predict.
 *
 * Test-only backend: with KDSL_TEST_BACKEND=cc in the environment the
 * program is emitted as C (kd_emit_c), built with `cc` (KDSL_CC) into a
 * shared object against $KDSL_BUILD_ROOT/libkdslrt.a and loaded with dlopen.
 * The suites use it to check the driver against the C backend; a user's
 * `kdslc train` always uses the JIT. */
#ifndef KDSL_RUN_H
#define KDSL_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "host/dataset.h"

typedef struct kd_run_options {
    const char *file, *model;
    const char *data;                  /* --data (NULL: fashion-mnist) */
    const char *input, *output;        /* predict: --input, -o */
    const char *weights, *save, *checkpoint, *resume, *history;
    const char *loss, *optimizer;      /* for models without a train block (or to override it) */
    bool from_logits;
    /* Overrides of the train block; < 0 (NAN for the reals) when not given. */
    int epochs, batch_size, threads;
    double learning_rate, validation_split;
    int64_t seed;
    kdh_normalize normalize;
    int tty;                           /* -1: ask isatty */
} kd_run_options;

/* Sets every override to "not given". */
void kd_run_options_init(kd_run_options *o);

/* Each returns the process exit status: 0, 1 (bad input, a failed run) or
 * 2 (usage), after printing what went wrong. */
int kd_run_train(const kd_run_options *o);
int kd_run_evaluate(const kd_run_options *o);
int kd_run_predict(const kd_run_options *o);

#endif
