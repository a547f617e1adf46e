/* driver.h — the pipeline, stage by stage (kd_pipeline); what the command
 * line and the tests drive. */
#ifndef KDSL_DRIVER_H
#define KDSL_DRIVER_H

#include "codegen.h"
#include "model.h"

/* The stages, in order; `kdslc ir --stage NAME` stops after one and prints
 * its result (kd_stage_names). The backends come after: kd_emit_c (C text)
 * and kd_jit_compile (libgccjit). */
typedef enum kd_stage {
    KD_STAGE_AST,          /* parse: the syntax tree (grammar/) */
    KD_STAGE_GRAPH,        /* check: names, shapes, weights; the model and its
                            * training-mode forward graph (compiler/sema.c) */
    KD_STAGE_INFER,        /* the inference-mode graph, made by the same check */
    KD_STAGE_GRAD,         /* differentiate: the graphs of predict, grad,
                            * train_step, apply_gradients (autodiff.c, train_graph.c) */
    KD_STAGE_LAYOUT,       /* variables' offsets in params, opt_state, grads */
    KD_STAGE_OPT,          /* the graph passes (compiler/passes/) */
    KD_STAGE_LOOPS,        /* lowering to the loop IR, loops merged, arena offsets (codegen/) */
    KD_STAGE_COUNT
} kd_stage;

extern const char *const kd_stage_names[KD_STAGE_COUNT];

typedef struct kd_session {
    kd_arena arena;        /* the compiler's memory for this compilation */
    kd_diags diags;
    kd_source src;
    const char *model_name;     /* the model to select; NULL: the last */
    ast_program *ast;
    kd_program *program;
    kd_model *model;       /* the selected model */
    lp_program *prog;      /* the back end's last program */
    kd_graphs graphs;      /* and its graphs */
} kd_session;

/* Runs the stages first..last on s (the front end's from s->src, the back
 * end's from s->model, with options o), and prints last's result to dump
 * if it is not NULL. 0, or 1 after reporting to s->diags. */
int kd_pipeline(kd_session *s, const kd_codegen_options *o, kd_stage first, kd_stage last, FILE *dump);

/* The back end from a checked model: KD_STAGE_GRAD .. KD_STAGE_LOOPS.
 * Returns s->prog, or NULL after reporting. It may run again on the same
 * session with other options (each program lives in s->arena). */
lp_program *kd_back_end(kd_session *s, const kd_codegen_options *o);

/* Largest source file accepted. */
#define KD_MAX_SOURCE_BYTES ((size_t)64 << 20)

/* Reads `path` into s->src (a clear error for a FIFO, a device, a file
 * over KD_MAX_SOURCE_BYTES). 0, or 1 after reporting. */
int kd_load_source(kd_session *s, const char *path);
/* Reads, parses and checks `path`, selecting model `name` (NULL: the last).
 * Returns 0, or 1 after printing diagnostics. */
int kd_front_end(kd_session *s, const char *path, const char *name);
/* The same, from text in memory (tests, fuzzing). */
int kd_front_end_text(kd_session *s, const char *path, const char *text, size_t len, const char *name);
void kd_session_free(kd_session *s);

#endif
