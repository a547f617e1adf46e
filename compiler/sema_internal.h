/* sema_internal.h — the elaborator's working types, shared by sema.c (statements,
 * expressions, calls), layers.c (built-in layers), functions.c (tensor functions)
 * and train_config.c. Not part of the compiler's interface. */
#ifndef KDSL_SEMA_INTERNAL_H
#define KDSL_SEMA_INTERNAL_H

#include "model.h"
#include "builtin_layers.h"

typedef enum sv_kind {
    SV_NONE, SV_TENSOR, SV_INT, SV_FLOAT, SV_BOOL, SV_STRING, SV_IDENT, SV_LIST, SV_INSTANCE,
    SV_CALL,               /* a setting's constructor, kept unevaluated: RandomNormal(stddev: 0.1), l2(1e-4) */
} sv_kind;

typedef struct kd_instance kd_instance;

/* A value during elaboration. */
typedef struct sv {
    sv_kind kind;
    ir_node *t;            /* SV_TENSOR */
    const char *producer;  /* SV_TENSOR: "dense[0][0]", for the functional summary */
    int64_t i;             /* SV_INT, SV_BOOL */
    double f;              /* SV_FLOAT */
    const char *s;         /* SV_STRING, SV_IDENT */
    struct sv **items;     /* SV_LIST */
    int n;
    kd_instance *inst;     /* SV_INSTANCE */
    const struct ast_expr *call;   /* SV_CALL */
    bool poisoned;         /* the value of a statement that failed */
    kd_loc loc;
} sv;

typedef struct layer_def layer_def;

/* One layer instance: a built-in, a user `layer`, or a nested `model`. */
struct kd_instance {
    const char *name;
    const char *type;
    const layer_def *builtin;     /* or NULL */
    const ast_item *item;         /* user layer or model, or NULL */
    sv **args;                    /* bound arguments, one per parameter (builtin) */
    const char **arg_names;
    int nargs;
    kd_vec call_args;             /* ast_arg-like pairs for user layers: sv* values by param */
    kd_layer *row;
    int ncalls;
    bool trainable;
    kd_vec vars;                  /* kd_var*, created at the first call */
    kd_loc loc;
};

typedef struct sema_binding {
    const char *name;
    sv *value;
} sema_binding;

typedef struct sema_scope {
    kd_vec bindings;              /* sema_binding* */
    kd_strmap index;              /* name -> sema_binding*: lookups stay O(1) in big bodies */
    struct sema_scope *parent;    /* for lookups of constants only (not used for tensors) */
} sema_scope;

typedef struct sema_frame {       /* the user layer, block or model being elaborated */
    const ast_item *item;
    kd_instance *inst;            /* user layer / nested model instance, or NULL for blocks */
    const char *block_prefix;     /* name prefix for layers made inside a named block call */
    kd_block_call *block_call;    /* a block call: its name and the call it was made in */
    struct sema_frame *up;
} sema_frame;

typedef struct name_counter {
    const char *base;
    int count;
} name_counter;

typedef struct sema {
    kd_arena *a;
    kd_diags *d;
    ast_program *ast;
    kd_strmap items;              /* name -> first item that is not a train block */
    kd_strmap models;             /* name -> first model */
    bool quiet;                   /* second elaboration (inference): errors already reported */
    bool in_train_block;          /* evaluating a train block's settings: no layers, blocks or models */
    int errors;                   /* errors in this elaboration */
    /* the model being elaborated */
    kd_model *m;
    ir_builder b;
    bool training;
    kd_strmap counters;           /* base name -> name_counter*: Keras' per-model instance names */
    const char *var_prefix;       /* "resnet50/" inside a nested model */
    int shared_model_calls;       /* >0 inside a shared model's second or later call */
    kd_vec *layers;               /* where new summary rows go (NULL inside nested models) */
    kd_strset *layer_names;       /* the names of those rows and of the model's inputs */
    kd_strset var_names;          /* every variable name of the model */
    sema_frame *frame;
    int depth;
    sv *prev;                     /* the previous statement's value */
    sema_scope *scope;            /* names visible to the body being elaborated */
    kd_layer *row_for_vars;       /* the summary row new variables count toward */
    bool frozen;                  /* inside a layer called with trainable: false */
    int64_t budget;               /* statements left before "model too large" */
    int64_t program_budget;       /* statements left for all the program's models */
    bool budget_is_program;       /* budget is what program_budget left, not a model's own */
    kd_vec call_stack;            /* const ast_item*: blocks/layers/models being expanded */
    kd_vec masked;                /* ir_node*: values with a mask (Embedding's mask_zero) ... */
    kd_vec masks;                 /* ir_node*: ... and their masks, [N, T, 1], 1 at a real step;
                                   * only the recurrent layers read masks, so sema_check_node
                                   * rejects any other user of a masked value */
    ir_node *mask_reader;         /* the masked value a recurrent layer is reading (allowed) */
    kd_strmap *loss_vars;         /* in a loss expression: variable name -> kd_var*, read as
                                   * `dense/kernel` (sema_loss_graph); NULL elsewhere */
    bool no_var_reads;            /* ... but a metric's: naming one is an error */
} sema;

/* sema.c */
void sema_error(sema *S, kd_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
sv *sv_new(sema *S, sv_kind kind, kd_loc loc);
sv *sv_tensor(sema *S, ir_node *t, const char *producer, kd_loc loc);
const char *sema_instance_name(sema *S, const char *base);
const char *sema_snake_case(sema *S, const char *camel);
kd_var *sema_new_var(sema *S, kd_instance *inst, const char *local, kd_var_kind kind,
                     ir_shape shape, kd_init init, bool trainable, kd_loc loc);
ir_node *sema_check_node(sema *S, ir_node *n, kd_loc loc, const char *what);
bool sv_as_int(sema *S, const sv *v, int64_t *out, const char *what);
bool sv_as_number(sema *S, const sv *v, double *out, const char *what);
bool sv_as_bool(sema *S, const sv *v, bool *out, const char *what);
const char *sv_describe(const sv *v);
int sema_axis(sema *S, int64_t axis, int rank, kd_loc loc);
bool sema_init_from(sema *S, const sv *v, kd_init *out);
/* Whether a call names a setting's constructor (an initializer such as
 * RandomNormal, a regularizer such as l2) rather than a layer or function. */
bool sema_is_setting_call(sema *S, const char *name);

/* A regularizer: l1 * sum(|w|) + l2 * sum(w^2) (Keras' L1, L2, L1L2). */
typedef struct kd_regularizer {
    bool present;
    double l1, l2;
} kd_regularizer;
/* none, l1, l2, l1_l2, or a call with Keras' arguments: l2(1e-4), l1_l2(l1: 0.01, l2: 0.001). */
bool sema_regularizer_from(sema *S, const sv *v, const char *what, kd_regularizer *out);
/* In training, adds r's penalty on x to the training loss (the graph's `losses`). */
bool sema_regularize(sema *S, const kd_regularizer *r, ir_node *x, kd_loc loc);

/* layers.c: the built-in layers (CamelCase), each defined in one table entry. */
typedef kd_layer_param layer_param;   /* builtin_layers.h */

struct layer_def {
    const char *name;             /* Dense */
    int ninputs;                  /* tensors it takes: 1, or -1 for a list (Add, Concatenate) */
    const layer_param *params;
    /* Builds the instance's variables on the first call and emits its ops. */
    sv *(*apply)(sema *S, kd_instance *inst, sv **inputs, int ninputs, kd_loc loc);
};

const layer_def *layer_find(const char *name);
int layer_names(const char **out, int max);
sv *layer_arg(const kd_instance *inst, const char *name);
ir_node *apply_activation(sema *S, ir_node *x, const sv *act, kd_loc loc);

/* The mask of a value (sema.c), or NULL. */
ir_node *sema_mask_of(sema *S, const ir_node *x);

/* layers_text.c: Embedding and the recurrent layers; rows of layers.c's table. */
extern const layer_param embedding_params[], simple_rnn_params[], lstm_params[], gru_params[];
sv *embedding_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc);
sv *simple_rnn_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc);
sv *lstm_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc);
sv *gru_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc);
extern const layer_param bidirectional_params[], time_distributed_params[];
sv *bidirectional_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc);
sv *time_distributed_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc);
/* A wrapper (Bidirectional, TimeDistributed) is a built-in whose first
 * parameter is `layer`: a layer call given unapplied, such as LSTM(8).
 * sema.c: that call as an instance of its own, named as Keras names it. */
kd_instance *sema_wrapped_instance(sema *S, const sv *call, const char *wrapper, kd_loc loc);

/* functions.c: the tensor functions (lowercase), no weights, no summary rows. */
typedef struct function_def function_def;
const function_def *function_find(const char *name);
int function_names(const char **out, int max);
sv *function_call(sema *S, const function_def *f, const ast_expr *call);

/* sema.c: evaluates an expression (NULL after an error already reported). */
sv *sema_eval(sema *S, const ast_expr *e);

/* sema.c: a train block's loss written as an expression, as a graph of the
 * model's variables and placeholders (kd_train_config.loss_graph): IR_INPUT
 * #j for output j, named by its output name, and IR_LABEL #j for its label.
 * and its label as NAME_true. With one output, or for output `output`'s own
 * loss (output -1: the model's whole loss), `y_pred` is that output and
 * `y_true` (or `target`) its label, and no other output is in scope; the
 * model's variables are read by name (`dense/kernel`) when read_vars (a
 * loss; not a metric). A result that is not
 * a scalar is averaged over all its elements, as Keras reduces a loss
 * function's per-sample values. NULL after reporting an error. */
ir_graph *sema_loss_graph(sema *S, kd_model *m, const ast_expr *e, int output, bool read_vars);

/* train_config.c */
void sema_train_config(sema *S, kd_model *m, const ast_item *train);

#endif
