/* run.h — `kdslc train / evaluate / predict`: from a model file to the host
 * training driver (runtime/host/train.h). The model goes down the pipeline
 * (driver.c's kd_pipeline), is compiled in process by
 * the libgccjit backend (codegen/jit.h), and its entry points and layout
 * tables are handed to kdh_fit / kdh_evaluate / kdh_predict.
 *
 * Another backend can take the JIT's place (kd_run_set_backend): the test
 * build of kdslc (tests/kdslc_cc.c) installs the C-compiler backend of
 * tests/cc_backend.c, so that the suites check the driver against the C
 * backend; kdslc itself has no such code and always uses the JIT. */
#ifndef KDSL_RUN_H
#define KDSL_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "codegen.h"
#include "host/dataset.h"
#include "host/model_fns.h"

#include <stdio.h>

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
    /* Callbacks (replacing the train block's of that kind), on val_loss, or on loss without validation data:
     * EarlyStopping(patience: early_stopping, restore_best_weights), ReduceLROnPlateau(patience: reduce_lr),
     * ModelCheckpoint(save_best, save_best_only: true); < 0 and NULL when not given. */
    int early_stopping, reduce_lr;
    bool restore_best_weights;
    const char *save_best;
    int64_t seed;
    kdh_normalize normalize;
    int tty;                           /* -1: ask isatty */
    /* Data parallelism (docs/distributed.md): --deterministic (with --shards,
     * default 8), --bucket-kb and --no-overlap; 0 when not given. */
    bool deterministic;
    int shards, bucket_kb;
    bool no_overlap;
    /* --quantize int8 (compile, evaluate, predict): the int8 model calibrated
     * on --calibration's first --calibration-samples inputs (0: 256), by
     * --calibration-method (NULL: minmax) and --calibration-percentile (0: 99.99),
     * the weights rounded by --weight-rounding (NULL: nearest) */
    const char *quantize, *calibration, *calibration_method, *weight_rounding;
    int calibration_samples;
    double calibration_percentile;
    bool no_cache;                     /* --no-cache: compile again, keep nothing (the JIT cache) */
} kd_run_options;

/* A backend in the JIT's place: compile builds p's entry points into fns
 * (as kd_jit_compile does), keeping what they need in *handle until
 * release(*handle), and prints one line of what it did to info; it returns
 * 0, or an exit status after printing what went wrong. */
typedef struct kd_run_backend {
    int (*compile)(const lp_program *p, const kd_codegen_options *co, kdh_model_fns *fns, void **handle, FILE *info);
    void (*release)(void *handle);
} kd_run_backend;

/* Every later run compiles with b (NULL: the JIT, the default). */
void kd_run_set_backend(const kd_run_backend *b);

/* Sets every override to "not given". */
void kd_run_options_init(kd_run_options *o);

/* Each returns the process exit status: 0, 1 (bad input, a failed run) or
 * 2 (usage), after printing what went wrong. */
int kd_run_train(const kd_run_options *o);
int kd_run_evaluate(const kd_run_options *o);
int kd_run_predict(const kd_run_options *o);

#endif
