/* train.h — the host training driver: Keras' fit(), evaluate() and predict()
 * over a compiled model's entry points, plus the history of a fit.
 *
 * The driver knows nothing of the compiler: it gets the model as the table
 * below (what model.h of the generated C declares: buffer sizes, the params
 * and optimizer-slot layouts, the input/output shapes) and the five entry
 * points, from the libgccjit backend (`kdslc train`) or from a shared object
 * built from the generated C (tests). driver/run.c fills it in.
 *
 * Sections: train.c (fit, evaluate, predict, host-side losses and metrics),
 * history.c (the history file), dataset.h, checkpoint.h, progress.h. */
#ifndef KDSL_TRAIN_H
#define KDSL_TRAIN_H

#include "callbacks.h"
#include "losses.h"
#include "metrics.h"
#include "model_fns.h"
#include "tensor_file.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct kdh_dataset;

/* One entry of the params or optimizer-slot table. */
typedef struct kdh_var {
    const char *name;      /* "dense/kernel", "dense/kernel/adam_m" */
    int64_t offset;        /* floats into params or opt_state */
    int64_t elems;
    int rank;
    int64_t shape[KDH_MAX_RANK];
    bool state;            /* a state the step updates (moving statistics), not a weight */
} kdh_var;

/* The loss as the host computes it for evaluate (the generated train step
 * computes its own): a row of losses.h. Sparse categorical cross-entropy
 * takes one-hot labels here, as the generated API does. */

/* One input or output of the model, per sample (the batch excluded); a
 * model has at most KDH_MAX_IO of each (the language's limit). */
#define KDH_MAX_IO 16
typedef struct kdh_io {
    const char *name;
    int rank;
    int64_t shape[KDH_MAX_RANK];
    int64_t elems;
} kdh_io;

/* One output's loss as the host computes it: a row with its arguments, or
 * custom (kdh_model.batch_loss), and its weight in the model's loss. */
typedef struct kdh_loss_spec {
    kdh_loss_kind loss;
    bool from_logits;
    double label_smoothing, delta;
    bool custom;
    double weight;
} kdh_loss_spec;

typedef struct kdh_model {
    const char *name;
    int max_batch;
    const char *input_name;
    int input_rank;                    /* per sample */
    int64_t input_shape[KDH_MAX_RANK];
    int64_t input_elems;
    int output_rank;
    int64_t output_shape[KDH_MAX_RANK];
    int64_t output_elems;              /* output 0 */
    int64_t label_elems;               /* reals per sample of labels (= output_elems) */
    /* Every input and output in source order (evaluate and predict take
     * them all); 0 and NULL: one of each, input_* and output_* above. */
    int ninputs, noutputs;
    const kdh_io *inputs, *outputs;
    const kdh_var *params;             /* weights and states, by offset */
    int nparams;
    const kdh_var *slots;              /* optimizer slots, by offset */
    int nslots;
    int64_t params_size, opt_size, grads_size;   /* floats */
    size_t predict_arena_bytes, train_arena_bytes;
    kdh_model_fns fns;
    kdh_loss_kind loss;
    bool from_logits;
    double label_smoothing, delta;     /* the cross-entropies' (0), Huber's (1) */
    /* Losses of their own per output (`loss: [a, b]`, loss_weights), or
     * NULL: the fields above for every output, each weighing 1. */
    const kdh_loss_spec *output_losses;
    /* A loss that is no row of losses.h (an expression in the train block):
     * the loss of a batch of nb samples from the outputs y[j] and the labels
     * t[j] (nb rows each) and the weights in params, NaN when it cannot be
     * computed; `output` is the output whose loss it is (its spec says
     * `custom`), or -1 for an expression that is the model's whole loss
     * (whole_loss). evaluate and validation average it over the batches,
     * each weighted by its rows. */
    double (*batch_loss)(void *ctx, int output, const float *params, const float *const *y, const float *const *t,
                         int nb);
    void *batch_loss_ctx;
    /* A metric written as an expression (KDH_METRIC_EXPRESSION, spec->expr):
     * its value on a batch of nb samples of output 0 (y) and its labels (t);
     * its ctx is batch_loss_ctx. */
    double (*batch_metric)(void *ctx, const void *expr, const float *y, const float *t, int nb);
    bool whole_loss;                   /* batch_loss(-1) is the loss; no loss per output */
    bool accuracy;                     /* metrics: [accuracy] */
    int nmetrics;                      /* the other metrics (metrics.h), in the logs' order */
    const kdh_metric_spec *metrics;
    const char *optimizer;             /* "Adam": checkpoint metadata */
} kdh_model;

/* A learning-rate schedule: the rate at optimizer step t (0-based) is
 * kdh_learning_rate(). The kinds and formulas are keras.optimizers.schedules'
 * (compiler/model.h lists them); decay_steps 0 means the whole run. */
typedef enum kdh_schedule_kind {
    KDH_LR_CONSTANT, KDH_LR_EXPONENTIAL, KDH_LR_INVERSE_TIME, KDH_LR_COSINE, KDH_LR_POLYNOMIAL
} kdh_schedule_kind;

typedef struct kdh_lr_schedule {
    kdh_schedule_kind kind;
    double decay_steps, decay_rate, alpha, end_learning_rate, power;
    bool staircase;
} kdh_lr_schedule;

/* The rate at step t for initial rate lr; total_steps stands in for
 * decay_steps 0. */
double kdh_learning_rate(const kdh_lr_schedule *s, double lr, uint64_t t, uint64_t total_steps);

/* The largest batch size and epoch count kdsl takes, from a flag
 * (--batch-size, --epochs) or from a file (a checkpoint's metadata). */
#define KDH_MAX_BATCH_SIZE (1 << 20)
#define KDH_MAX_EPOCHS 1000000000

/* fit()'s settings: the train block after the command line's overrides. */
typedef struct kdh_fit_opts {
    int epochs;
    int batch_size;                    /* <= max_batch */
    int validation_freq;               /* validate after epochs freq, 2 freq, ... (1-based) */
    bool shuffle;
    uint64_t seed;                     /* init, shuffles (the dropout seed is compiled in) */
    float learning_rate;               /* the schedule's initial rate */
    kdh_lr_schedule schedule;
    int threads;                       /* stored for the kernels' thread split; 0: all cores */
    /* Data parallelism (train_dist.h, over the MPI ranks of dist.h):
     * deterministic mode's shards of each batch (0: the default mode), and
     * the bytes of a bucket of gradients summed at once (0: 4 MiB), and
     * whether the default mode on several ranks starts each bucket's sum
     * inside grad, as soon as its gradients are done (overlap; else one
     * sum after grad). With one rank and no shards, fit runs train_step as
     * it always has. */
    int shards;
    size_t bucket_bytes;
    bool no_overlap;
    const char *weights;               /* start from these weights (safetensors) */
    const char *resume;                /* continue from this checkpoint */
    const char *save;                  /* final weights */
    const char *checkpoint;            /* written after every epoch */
    const char *history;               /* .csv or .json */
    const kdh_callbacks *callbacks;    /* NULL: none (callbacks.h) */
    FILE *out;                         /* progress (stdout) */
    int tty;                           /* -1: ask isatty(out); 0 plain lines; 1 Keras' bar */
    unsigned slow_step_ms;             /* tests: sleep this long after every step */
    /* Set by a signal handler (SIGINT, SIGTERM: the signal's number): the
     * run stops before its next step, returns KDH_FIT_STOPPED and says in
     * err where it stopped and which checkpoint is intact. Any write under
     * way (a checkpoint, the history) finishes first. NULL: never. */
    const volatile sig_atomic_t *stop;
} kdh_fit_opts;

enum { KDH_FIT_STOPPED = 1 };

/* One epoch's figures; NaN for what was not measured (val_* on epochs
 * without validation, accuracy without the metric). */
typedef struct kdh_epoch_log {
    int epoch;                         /* 1-based */
    double loss, accuracy, val_loss, val_accuracy;
    double seconds, samples_per_second;
    double metrics[KDH_MAX_METRICS], val_metrics[KDH_MAX_METRICS];   /* the history's metric_names */
    double learning_rate;              /* with ReduceLROnPlateau: the epoch's rate (Keras' logs), else NaN */
} kdh_epoch_log;

/* An epoch's row with every figure NaN. */
kdh_epoch_log kdh_epoch_log_empty(int epoch);

struct kdh_history;
/* The value of the log `name` in row (loss, accuracy, a metric of the
 * history, val_ of each); NaN when the row has none. */
double kdh_epoch_log_value(const struct kdh_history *h, const kdh_epoch_log *row, const char *name);

typedef struct kdh_history {
    kdh_epoch_log *rows;
    int count, cap;
    int nmetrics;                      /* columns after accuracy (and after val_accuracy, val_ each) */
    bool has_learning_rate;            /* a last column learning_rate (ReduceLROnPlateau's) */
    char metric_names[KDH_MAX_METRICS][KDH_METRIC_NAME_MAX];
} kdh_history;

/* Makes the metric columns names[0..n): the rows' values move to the
 * columns of their names; a column new to the history is NaN. */
void kdh_history_set_metrics(kdh_history *h, int n, const char *const *names);

/* Runs fit(): initial weights (generated init with the seed, --weights, or
 * --resume), epochs of shuffled batches through train_step, validation,
 * progress, checkpoints, history, and the final --save. `val` may be NULL.
 * 0, -1 with err filled (a NaN loss names the epoch and the step), or
 * KDH_FIT_STOPPED (o->stop was set) with err saying where. */
int kdh_fit(const kdh_model *m, const struct kdh_dataset *train, const struct kdh_dataset *val,
            const kdh_fit_opts *o, kdh_history *h, kdh_error *err);

/* The metrics of evaluate: metrics[j * m->nmetrics + i] is metric i of
 * output j (NULL: not wanted). */
int kdh_evaluate_metrics(const kdh_model *m, const float *params, const struct kdh_dataset *d, void *arena,
                         double *loss, double *output_loss, double *output_accuracy, double *metrics, kdh_error *err);

/* Mean loss and accuracy (NaN without the metric) over the data set, in
 * batches of max_batch. The loss is computed on the host from predict's
 * outputs (kdh_sample_loss): inference mode, no gradients, as Keras'
 * evaluate, whose loss is the mean of the per-sample losses. arena:
 * predict_arena_bytes, aligned to 64. 0, or -1 when memory runs out or a
 * sample's loss or output is NaN or infinite (err names the samples). */
int kdh_evaluate(const kdh_model *m, const float *params, const struct kdh_dataset *d, void *arena,
                 double *loss, double *accuracy, kdh_error *err);

/* kdh_evaluate for a model of any number of inputs and outputs: d holds
 * max(inputs, outputs) data sets (dataset.h, kdh_data_load_parts), d[i].x
 * input i and d[i].y the labels of output i. The train block's loss applies
 * to every output, as Keras applies one loss to each output of a model:
 * *loss is the sum of the outputs' mean losses, output_loss[j] and
 * output_accuracy[j] (NaN without the metric) output j's. */
int kdh_evaluate_outputs(const kdh_model *m, const float *params, const struct kdh_dataset *d, void *arena,
                         double *loss, double *output_loss, double *output_accuracy, kdh_error *err);

/* Every output for n samples: x[i] holds n samples of input i, y[j] gets
 * n * (output j's elements) floats. */
void kdh_predict_all(const kdh_model *m, const float *params, const float *const *x, int64_t n, float *const *y,
                     void *arena);

/* 0 when every one of n outputs y is finite; else -1 with err naming the
 * samples that are not ("DATA: the model's output is NaN or infinite for
 * 3 of 8 samples (samples 2 to 7, ...)"). */
int kdh_check_outputs(const kdh_model *m, const float *y, int64_t n, const char *data, kdh_error *err);

/* Output 0 for n samples of x into y (n * output_elems floats). */
void kdh_predict(const kdh_model *m, const float *params, const float *x, int64_t n, float *y, void *arena);

/* The loss of one sample as Keras computes it (output y, label t). */
double kdh_sample_loss(const kdh_model *m, const float *y, const float *t);
/* Correct predictions in one sample: 0 or 1 for argmax accuracy; for
 * binary accuracy the fraction of the output's elements right. */
double kdh_sample_correct(const kdh_model *m, const float *y, const float *t);

/* Buffers the driver allocates: zeroed floats and arenas, both aligned to
 * 64 bytes (a cache line: vector loads of parameters and batches never
 * split one). NULL with err filled when memory runs out. Free with free(). */
float *kdh_floats(int64_t n, const char *what, kdh_error *err);
void *kdh_arena_alloc(size_t bytes, kdh_error *err);

/* Wall-clock seconds (monotonic). */
double kdh_now(void);

/* ---- history.c ----------------------------------------------------------- */

int kdh_history_add(kdh_history *h, const kdh_epoch_log *row);
/* Drops the rows of epochs after `epoch` (a resumed run repeats them). */
void kdh_history_truncate(kdh_history *h, int epoch);
void kdh_history_free(kdh_history *h);
/* Writes epoch,loss,accuracy,METRICS...,val_loss,val_accuracy,val_METRICS...
 * (Keras' names; no metric columns without metrics) as CSV, or as JSON when
 * the path ends in .json ({"epoch": [...], "loss": [...], ...}, null for
 * what was not measured); atomically. */
int kdh_history_write(const char *path, const kdh_history *h, kdh_error *err);
/* The history as compact JSON (malloc'd), for checkpoint metadata, and back. */
char *kdh_history_to_json(const kdh_history *h);
int kdh_history_from_json(const char *text, kdh_history *h, const char *what, kdh_error *err);

#endif
