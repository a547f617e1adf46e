/* model.h — what semantic analysis produces from a KDSL program: for one model,
 * its layer table (the summary), its variables, its training settings, and
 * its graph IR, elaborated once for training and once for inference. */
#ifndef KDSL_MODEL_H
#define KDSL_MODEL_H

#include "../grammar/ast.h"
#include "ir.h"
#include "host/callbacks.h" /* runtime/host: the callbacks' settings */
#include "host/losses.h"    /* runtime/host: the losses' table */
#include "host/metrics.h"   /* runtime/host: the metrics' table */

/* A built-in layer's argument as it was given (or defaulted), for tools
 * that write other formats (kdslc export): numbers, strings, names, lists,
 * and setting constructors such as l2(1e-4) or RandomNormal(stddev: 0.1). */
typedef enum kd_value_kind {
    KD_V_NONE, KD_V_INT, KD_V_FLOAT, KD_V_BOOL, KD_V_STRING, KD_V_NAME, KD_V_LIST, KD_V_CALL, KD_V_OTHER
} kd_value_kind;
typedef struct kd_value {
    kd_value_kind kind;
    int64_t i;             /* INT, BOOL */
    double f;              /* FLOAT */
    const char *s;         /* STRING, NAME; CALL: the callee */
    struct kd_value **items;   /* LIST; CALL: the arguments */
    const char **keys;     /* CALL: each argument's keyword, NULL when positional */
    int n;
} kd_value;

typedef struct kd_layer {
    const char *name;      /* Keras instance name: dense, dense_1, my_dense, resnet50 */
    const char *type;      /* Dense, Conv2D, MyDense, Functional, InputLayer */
    ir_shape out_shape;
    bool multiple_shapes;  /* a shared layer applied to differently shaped inputs */
    ir_shape *out_list;    /* a layer with several outputs (return_state): each one's shape */
    int nout_list;         /* (out_shape is the first); 0 for one output */
    int64_t trainable_params, nontrainable_params;
    kd_vec inbound;        /* const char*: names of the layers it reads (functional summary) */
    kd_loc loc;
    /* Built-in layers: every argument by parameter (builtin_layers.h's order), given or defaulted */
    int nargs;
    const char *const *arg_names;
    kd_value **args;
    bool builtin, trainable;
    int ncalls;            /* >1: a shared layer */
    const struct kd_block_call *block_call;   /* the block call or user layer it was made in (a user
                                               * layer's own row: its own); NULL outside both */
} kd_layer;

/* A call of a block, or of a user layer (kdslc plot draws each as a cluster
 * of its layers; a user layer's cluster holds its own box too). */
typedef struct kd_block_call {
    const char *name;                 /* its name: argument, else the block's numbered per model (conv_bn_5) */
    const char *block;                /* the block called (conv_bn) */
    const struct kd_block_call *up;   /* the block call it was made in; NULL at the model's own level */
} kd_block_call;

/* The losses: runtime/host/losses.h's rows (the host computes them for
 * evaluate), numbered from 1 here: LOSS_X is KDH_LOSS_X + 1. */
#define KD_LOSS_ENUM(K, ...) LOSS_##K,
typedef enum kd_loss_kind {
    LOSS_NONE, KDH_LOSS_LIST(KD_LOSS_ENUM) LOSS_COUNT,
    LOSS_CUSTOM,           /* a tensor expression: kd_loss_spec.graph (no row, no host formula) */
} kd_loss_kind;
#undef KD_LOSS_ENUM

/* The optimizers, one row each: kind, Keras' class name, its string
 * spelling, Keras' default learning rate, weight_decay (0: none) and rho
 * (where it has one), and its own arguments in Keras' positional order after learning_rate (every one
 * also takes weight_decay, clipnorm, clipvalue, global_clipnorm). The row's
 * update rule is its case in add_optimizer (train_graph.c). */
#define KD_OPTIMIZER_LIST(X) \
    X(SGD, "SGD", "sgd", 0.01, 0, 0, "momentum nesterov") \
    X(ADAM, "Adam", "adam", 0.001, 0, 0, "beta_1 beta_2 epsilon amsgrad") \
    X(RMSPROP, "RMSprop", "rmsprop", 0.001, 0, 0.9, "rho momentum epsilon centered") \
    X(ADAMW, "AdamW", "adamw", 0.001, 0.004, 0, "weight_decay beta_1 beta_2 epsilon amsgrad") \
    X(ADAGRAD, "Adagrad", "adagrad", 0.001, 0, 0, "initial_accumulator_value epsilon") \
    X(ADAMAX, "Adamax", "adamax", 0.001, 0, 0, "beta_1 beta_2 epsilon") \
    X(NADAM, "Nadam", "nadam", 0.001, 0, 0, "beta_1 beta_2 epsilon") \
    X(ADADELTA, "Adadelta", "adadelta", 0.001, 0, 0.95, "rho epsilon")

#define KD_OPTIMIZER_ENUM(K, ...) OPT_##K,
typedef enum kd_optimizer_kind { OPT_NONE, KD_OPTIMIZER_LIST(KD_OPTIMIZER_ENUM) OPT_COUNT } kd_optimizer_kind;
#undef KD_OPTIMIZER_ENUM

/* The losses and optimizers by name (train_config.c, from the lists above):
 * the train block and `kdslc train --loss / --optimizer` both look names up
 * here. Keras' class name, its string spelling, and another alias (or NULL). */
typedef struct kd_loss_name {
    kd_loss_kind kind;
    const char *class_name, *snake, *alias;
    unsigned takes;        /* KDH_LOSS_TAKES_* */
} kd_loss_name;
typedef struct kd_optimizer_name {
    kd_optimizer_kind kind;
    const char *class_name, *snake;
    double learning_rate;  /* Keras' default */
    double weight_decay;   /* Keras' default (0: none) */
    double rho;            /* Keras' default (RMSprop, Adadelta) */
    const char *args;      /* its own arguments, space-separated, in Keras' order */
} kd_optimizer_name;
#define KD_NLOSSES (LOSS_COUNT - 1)
#define KD_NOPTIMIZERS (OPT_COUNT - 1)
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
/* Sets every optimizer setting of c to the row's Keras defaults (the
 * learning rate, its schedule, and the loss are left alone). */
struct kd_train_config;
void kd_optimizer_defaults(struct kd_train_config *c, const kd_optimizer_name *row);

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

/* One loss: a row of losses.h with its arguments, or an expression. */
typedef struct kd_loss_spec {
    kd_loss_kind kind;
    bool from_logits;
    double label_smoothing;   /* categorical and binary cross-entropy (0) */
    double delta;          /* Huber (1.0) */
    /* LOSS_CUSTOM: the expression (docs/language.md, "Custom losses") as a
     * graph over the model's variables whose leaves IR_INPUT #j and
     * IR_LABEL #j stand for output j and its label; outputs[0] is the scalar
     * loss of a batch. Built in inference mode (sema_loss_graph). */
    ir_graph *graph;
} kd_loss_spec;

typedef struct kd_train_config {
    bool present;          /* a `train` block exists for the model */
    /* loss: a row applies to every output (Keras sums them); an expression
     * is the model's whole loss. A list (`loss: [a, b]`) gives each output
     * its own, in output_losses, and `loss` is then output 0's. */
    kd_loss_spec loss;
    kd_loss_spec *output_losses;   /* one per output, or NULL */
    double *loss_weights;  /* loss_weights: one per output (Keras' compile), or NULL: all 1 */
    double *class_weight;  /* class_weight: a weight per class of the one output (Keras' fit), or NULL */
    int nclass_weight;
    kd_optimizer_kind optimizer;
    double learning_rate;  /* Keras' defaults: SGD 0.01, Adam 0.001, RMSprop 0.001; a schedule's initial rate */
    kd_lr_schedule schedule;
    double momentum;       /* SGD, RMSprop (0) */
    bool nesterov;         /* SGD */
    double beta_1, beta_2, epsilon;   /* Adam, AdamW, Adamax, Nadam (0.9, 0.999); every epsilon 1e-7 */
    bool amsgrad;          /* Adam, AdamW */
    double rho;            /* RMSprop (0.9), Adadelta (0.95) */
    bool centered;         /* RMSprop */
    double initial_accumulator_value;  /* Adagrad (0.1) */
    double weight_decay;   /* decoupled, every optimizer: w -= w * weight_decay * lr before the update (0: none) */
    double clipnorm, clipvalue, global_clipnorm;   /* 0: none; at most one is set (Keras' rule) */
    kdh_metric_spec *metrics;   /* the metrics besides accuracy, in the order given */
    int nmetrics;
    bool metric_accuracy;
    kdh_callbacks callbacks;   /* EarlyStopping, ReduceLROnPlateau, ModelCheckpoint (each .on when given) */
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
/* 93322 -> "93,322", into buf */
const char *kd_thousands(int64_t n, char buf[static 32]);

#endif
