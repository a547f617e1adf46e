/* model.h — what semantic analysis produces from a KDSL program: for one model,
 * its layer table (the summary), its variables, its training settings, and
 * its graph IR, elaborated once for training and once for inference. */
#ifndef KDSL_MODEL_H
#define KDSL_MODEL_H

#include "../grammar/ast.h"
#include "ir.h"

typedef struct kd_layer {
    const char *name;      /* Keras instance name: dense, dense_1, my_dense, resnet50 */
    const char *type;      /* Dense, Conv2D, MyDense, Functional, InputLayer */
    ir_shape out_shape;
    bool multiple_shapes;  /* a shared layer applied to differently shaped inputs */
    int64_t trainable_params, nontrainable_params;
    kd_vec inbound;        /* const char*: names of the layers it reads (functional summary) */
    kd_loc loc;
} kd_layer;

typedef enum kd_loss_kind {
    LOSS_NONE, LOSS_CATEGORICAL_XENT, LOSS_SPARSE_CATEGORICAL_XENT,
    LOSS_BINARY_XENT, LOSS_MSE,
} kd_loss_kind;

typedef enum kd_optimizer_kind { OPT_NONE, OPT_SGD, OPT_ADAM, OPT_RMSPROP } kd_optimizer_kind;

/* The losses and optimizers by name, one row per kind (train_config.c): the
 * train block and `kdslc train --loss / --optimizer` both look names up here.
 * Keras' class name, its string spelling, and another alias (or NULL). */
typedef struct kd_loss_name {
    kd_loss_kind kind;
    const char *class_name, *snake, *alias;
} kd_loss_name;
typedef struct kd_optimizer_name {
    kd_optimizer_kind kind;
    const char *class_name, *snake;
    double learning_rate;  /* Keras' default */
} kd_optimizer_name;
#define KD_NLOSSES 4
#define KD_NOPTIMIZERS 3
extern const kd_loss_name kd_loss_names[KD_NLOSSES];
extern const kd_optimizer_name kd_optimizer_names[KD_NOPTIMIZERS];
/* The row naming `name` (any of its spellings), or NULL. */
const kd_loss_name *kd_find_loss(const char *name);
const kd_optimizer_name *kd_find_optimizer(const char *name);
/* Every spelling, for kd_nearest: the class name first in each row
 * (class_first), else the string spelling first. Returns the count (at most
 * 3 per row). */
int kd_loss_spellings(const char **out, bool class_first);
int kd_optimizer_spellings(const char **out, bool class_first);

/* A learning-rate schedule (keras.optimizers.schedules), as the optimizer's
 * learning_rate. The rate at optimizer step t (0 for the first step) is
 *   constant      lr
 *   exponential   lr * decay_rate ^ (t / decay_steps)          (floor with staircase)
 *   inverse_time  lr / (1 + decay_rate * t / decay_steps)     (floor with staircase)
 *   cosine        lr * ((1 - alpha) * (1 + cos(pi * min(t, decay_steps) / decay_steps)) / 2 + alpha)
 *   polynomial    (lr - end) * (1 - min(t, decay_steps) / decay_steps) ^ power + end
 * decay_steps 0 (kdsl's extension, cosine and polynomial only) means every
 * step of the run, so the schedule follows --epochs. */
typedef enum kd_schedule_kind {
    SCHEDULE_CONSTANT, SCHEDULE_EXPONENTIAL, SCHEDULE_INVERSE_TIME, SCHEDULE_COSINE, SCHEDULE_POLYNOMIAL
} kd_schedule_kind;

typedef struct kd_lr_schedule {
    kd_schedule_kind kind;
    double decay_steps;
    double decay_rate;     /* exponential, inverse_time */
    double alpha;          /* cosine: the final fraction of lr */
    double end_learning_rate, power;   /* polynomial (0.0001, 1) */
    bool staircase;
} kd_lr_schedule;

typedef struct kd_train_config {
    bool present;          /* a `train` block exists for the model */
    kd_loss_kind loss;
    bool from_logits;
    kd_optimizer_kind optimizer;
    double learning_rate;  /* Keras' defaults: SGD 0.01, Adam 0.001, RMSprop 0.001; a schedule's initial rate */
    kd_lr_schedule schedule;
    double momentum;       /* SGD */
    bool nesterov;         /* SGD */
    double beta_1, beta_2, epsilon;   /* Adam (0.9, 0.999, 1e-7) */
    double rho;            /* RMSprop (0.9), epsilon 1e-7 */
    bool metric_accuracy;
    int batch_size;        /* 32 */
    int epochs;            /* 1 */
    int validation_freq;   /* 1 */
    double validation_split; /* 0 */
    bool shuffle;          /* true */
    int64_t seed;          /* 0 unless given */
    kd_loc loc;
} kd_train_config;

typedef struct kd_model {
    const char *name;
    const ast_item *item;
    kd_vec layers;         /* kd_layer*, in creation order (summary rows) */
    kd_vec vars;           /* kd_var*: weights and states (optimizer slots are added by the training graph) */
    int ninputs, noutputs;
    ir_shape input_shapes[16];
    const char *input_names[16];
    bool input_i32[16];            /* `input x: i32[...]`: integer token ids */
    int64_t input_rows[16];        /* i32 inputs read by an Embedding: its input_dim (the
                                    * smallest, if several), the bound data is checked
                                    * against; 0 if none */
    const char *input_rows_layer[16];   /* that Embedding's name, for messages */
    ir_shape output_shapes[16];
    const char *output_names[16];
    bool functional;       /* not a plain chain: the summary shows InputLayer rows and "Connected to" */
    ir_graph *train;       /* forward graph in training mode: outputs, state updates */
    ir_graph *infer;       /* forward graph in inference mode */
    kd_train_config config;
    int64_t trainable_params, nontrainable_params;
} kd_model;

typedef struct kd_program {
    ast_program *ast;
    kd_vec models;         /* kd_model*, in source order */
} kd_program;

/* sema.c: checks the program and elaborates every model (or only `only`, if not NULL).
 * Reports errors to d; returns NULL if any. */
kd_program *kd_check(kd_arena *a, ast_program *ast, kd_diags *d, const char *only);
/* The model called `name`, or the last model when name is NULL. */
kd_model *kd_find_model(kd_program *p, const char *name);

/* The most memory a model may need, checked by sema at compile time: every
 * tensor at the largest batch, and all variables together, must fit. From
 * the environment variable KDSL_MAX_BYTES (bytes, or with a K, M, G or T
 * suffix: "512M", "16GiB"), else KD_DEFAULT_MAX_BYTES. *why is set (and the
 * default returned) when KDSL_MAX_BYTES is set but is not a size. */
#define KD_DEFAULT_MAX_BYTES ((uint64_t)4 << 30)
uint64_t kd_memory_limit(const char **why);

/* Checks m against kd_memory_limit() at `batch` samples: false, with one
 * error in d, if a single tensor or all variables together do not fit.
 * Sema checks at the default batch (the train block's batch_size, else 32);
 * codegen again when --batch or --batch-size asks for another. */
bool kd_check_memory(const kd_model *m, int64_t batch, kd_diags *d);

/* summary.c: Keras' model.summary() table. */
void kd_print_summary(FILE *out, const kd_model *m);

#endif
