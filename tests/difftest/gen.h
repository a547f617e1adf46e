/* gen.h — random KDSL programs for the differential tester (difftest.h), as
 * Csmith and YARPGen are for C compilers: well-typed by construction, drawn
 * from every layer, operator and tensor function of docs/language.md.
 *
 * A program is a list of statements, each defining one value from earlier
 * values (its operands) or declaring something later statements use (a
 * model weight, a shared layer instance). Printing keeps only what the
 * outputs need, so the reducer shrinks a program by dropping outputs and by
 * turning a statement into a copy of one of its operands. */
#ifndef KDSL_DIFFTEST_GEN_H
#define KDSL_DIFFTEST_GEN_H

#include <stdbool.h>
#include <stdint.h>

enum { DT_MAX_RANK = 4, DT_MAX_VALUES = 96, DT_MAX_STMTS = 96, DT_MAX_OPS = 4, DT_MAX_OUTPUTS = 3, DT_MAX_INPUTS = 3 };

/* A per-sample shape (the batch axis is implicit). */
typedef struct dt_shape {
    int rank;
    int d[DT_MAX_RANK];
} dt_shape;

typedef struct dt_stmt {
    /* The right-hand side: $0..$3 stand for the operands' names, # for the
     * declaration's name (a weight or a shared layer), % for the value's
     * own name (a repeat that rebinds it). A declaration's
     * whole statement is `text` with # for its own name. */
    char text[200];
    int ops[DT_MAX_OPS], nops;   /* value indices */
    int decl;                    /* the statement index of the declaration used, or -1 */
    int def;                     /* the value defined, or -1 for a declaration */
    int layer;                   /* the custom layer item this uses (DT_LAYER_*), or -1 */
} dt_stmt;

/* Custom layers and blocks a program may use: printed before the model when used. */
enum { DT_LAYER_NORM, DT_LAYER_GATE, DT_LAYER_RESIDUAL, DT_LAYER_MAT, DT_LAYER_COUNT };

typedef enum dt_optimizer {
    DT_SGD, DT_SGD_NESTEROV, DT_ADAM, DT_RMSPROP, DT_ADAMW, DT_NADAM, DT_ADAGRAD, DT_ADAMAX, DT_ADADELTA, DT_RMSPROP_CENTERED,
    DT_OPTIMIZER_COUNT
} dt_optimizer;
/* The train block's loss; the cross-entropies on a rank-1 output, with a
 * softmax or sigmoid head statement for the ones on probabilities. */
typedef enum dt_loss {
    DT_MSE, DT_CCE_LOGITS, DT_CCE, DT_SPARSE_CCE_LOGITS, DT_BCE_LOGITS, DT_BCE, DT_MAE, DT_HUBER, DT_LOG_COSH, DT_HINGE,
    DT_COSINE, DT_CUSTOM, DT_LOSS_COUNT
} dt_loss;

typedef struct dt_program {
    int ninputs;
    bool i32[DT_MAX_INPUTS];      /* input i holds token ids (`i32[...]`), read only by an Embedding */
    dt_shape val[DT_MAX_VALUES];  /* values 0..ninputs-1 are the inputs */
    int nval;
    dt_stmt st[DT_MAX_STMTS];
    int nst;
    int outs[DT_MAX_OUTPUTS], nouts;
    bool train;                   /* a train block (only with one output: the C API takes one label) */
    dt_optimizer optimizer;
    dt_loss loss;
    int batch, max_batch;         /* the batch run, the largest compiled (>= batch) */
    uint64_t data_seed;           /* weights, inputs and labels */
} dt_program;

/* A random program from `seed`; `size` statements are attempted (about 4-30). */
void dt_generate(dt_program *p, uint64_t seed, int size);

/* KDSL text of the live part of p (malloc'd), with a first line
 * `# difftest: batch=B max_batch=M data_seed=S` that dt_parse_header reads. */
char *dt_print(const dt_program *p);

/* The header of a saved case: false if `text` has none. */
bool dt_parse_header(const char *text, int *batch, int *max_batch, uint64_t *data_seed);

/* Statements the outputs need, in the mask (by statement index). */
void dt_live(const dt_program *p, bool *live);

#endif
