/* codegen.h — the back half of the pipeline: from a checked model to C.
 *
 *   kd_codegen_build   graphs (inference, grad, train step, apply) -> passes
 *                      (compiler/passes.h) -> loop IR (lower*.c) -> arena
 *                      offsets (arena_plan.c): an lp_program
 *   kd_emit_c          lp_program -> model.c + model.h text (emit_c.c)
 *   kd_codegen_c       both, for `kdslc compile`
 *
 * The libgccjit backend starts from kd_codegen_build's program too. */
#ifndef KDSL_CODEGEN_H
#define KDSL_CODEGEN_H

#include "loop_ir.h"
#include "model.h"
#include "passes.h"

typedef struct kd_codegen_options {
    int batch;                  /* max batch; 0: the train block's batch_size, else 32 */
    bool inference_only;        /* only init and predict */
    bool f64;                   /* every real is a double (kdk_d* kernels): gradient checks */
    const char *embed_weights;  /* safetensors file whose weights become static const data */
    const char *header_name;    /* what model.c #includes; NULL: "<model>.h" */
    bool no_workspace;          /* pass NULL work to GEMM / conv: smaller arena, slower kernels */
    /* Every arena buffer gets bytes of its own (a buffer updated in place
     * aside): a larger arena, for the host's runs on several threads. When
     * buffers share bytes, a cache line that one core wrote for one buffer
     * is written next by the other core for another buffer, and moves
     * between the cores every step; with bytes of their own, each buffer's
     * lines are touched by the same threads, in the same split, step after
     * step (arena_plan.c). */
    bool disjoint_arena;
    bool no_passes;             /* lower the graphs as built (debugging the passes) */
    /* Each optimisation off on its own (the differential tester, tests/difftest):
     * the graph passes (compiler/passes.h), merging element-wise loop nests
     * (lower_fuse.c, which scalar replacement needs), and results written in
     * place of an operand that dies (arena_plan.c). */
    kd_pass_options passes;
    bool no_loop_fusion;
    bool no_inplace;
    /* --target: the x86-64 level ("x86-64-v3") model.c's own loops are
     * compiled for by GCC and clang (a pragma in the file); NULL or "":
     * portable C, the target left to the user's flags. */
    const char *target;
    /* The compiler's memory: the session arena, so that the optimizer slots
     * the training graph adds to m->vars stay valid. NULL: a private arena,
     * freed on return, and m->vars is restored as it was. */
    kd_arena *arena;
} kd_codegen_options;

/* Builds the program (NULL after reporting to d). Graphs come from m->infer
 * and, when m has a train block with a loss and !inference_only,
 * kd_build_grad_graph / kd_build_train_step (compiler/train_graph.h). Writes
 * each variable's offset (kd_var.offset) in its buffer. */
lp_program *kd_codegen_build(kd_arena *a, kd_model *m, const kd_codegen_options *o, kd_diags *d);

/* The host's x86-64 level for -march ("x86-64-v3"), from the CPU's and the
 * OS's support; NULL off x86-64 (target.c). */
const char *kd_host_march(void);
/* `--target NAME`: "portable" -> "", "native" -> kd_host_march(), an x86-64
 * level -> itself; NULL for anything else (or native off x86-64). */
const char *kd_resolve_target(const char *name);

/* model.c and model.h; 0, or 1 after reporting to d (a write error). */
int kd_emit_c(const lp_program *p, const kd_codegen_options *o, FILE *c_out, FILE *h_out, kd_diags *d);

/* `kdslc compile`: 0, or 1 after reporting to d. */
int kd_codegen_c(kd_model *m, const kd_codegen_options *o, FILE *c_out, FILE *h_out, kd_diags *d);

/* `kdslc ir --stage opt`: the optimised graphs, each under a `# <function>` line.
 * `kdslc ir --stage loops`: the loop IR (kd_loops_dump). 0, or 1 after reporting to d. */
int kd_dump_opt(FILE *out, kd_model *m, const kd_codegen_options *o, kd_diags *d);
int kd_dump_loops(FILE *out, kd_model *m, const kd_codegen_options *o, kd_diags *d);

/* ---- the command line (codegen_cli.c) ------------------------------------------------ */

/* One `kdslc compile` / `kdslc ir` code-generation option at argv[*i]:
 *   --batch N   --inference-only   --embed-weights W   --dtype f32|f64   --no-workspace
 *   --no-passes (and the --opt=value spellings). Returns 1 if it was one (*i
 * advanced past its value), 0 if not, -1 after printing a message on a bad value. */
int kd_codegen_parse_option(int argc, char **argv, int *i, kd_codegen_options *o);

/* Writes the C source to c_path and the header next to it
 * (kd_codegen_header_path), replaced together atomically
 * (kdh_atomic_write_set): a failure leaves both old files as they were.
 * 0, or 1 after reporting to d (the file and errno's message). */
int kd_codegen_write(kd_model *m, const kd_codegen_options *o, const char *c_path, kd_diags *d);
/* The header beside c_path: its .c replaced by .h, or .h appended (malloc'd). */
char *kd_codegen_header_path(const char *c_path);

/* ---- lowering one graph into one function (lower.c) ---------------------------- */

typedef enum kd_dest_kind {
    KD_DEST_NONE,          /* computed only if something else needs it */
    KD_DEST_OUTPUT,        /* outputs[index] */
    KD_DEST_OUTPUT_OPT,    /* outputs0 of train_step, written only when not NULL */
    KD_DEST_RETURN,        /* the function's return value (the loss, a scalar) */
    KD_DEST_GRAD,          /* the gradient of variable `index`, into grads */
} kd_dest_kind;

typedef struct kd_dest {
    kd_dest_kind kind;
    int index;
} kd_dest;

/* The graph's outputs go where dests[i] says; its updates overwrite their
 * variables (after every read of the old value). VAR nodes read params /
 * opt_state, except variables at index >= p->nvars, which read the grads of
 * variable (index - p->nvars) (apply_gradients). NULL with why set. */
lp_func *kd_lower_graph(lp_program *p, lp_func_kind kind, const ir_graph *g, const kd_dest *dests,
                        const kd_codegen_options *o, char *why, size_t why_len);

/* ---- arena planning (arena_plan.c) ------------------------------------------------ */

/* Liveness of every buffer over f's kernels, then arena offsets: greedy by
 * size, each buffer at the lowest offset where it overlaps no buffer live at
 * the same time. Sets f->arena_bytes and f->live_bound. */
void kd_arena_plan(const lp_program *p, lp_func *f);

#define KD_ARENA_ALIGN 64   /* bytes: every arena buffer starts on a cache line */

#endif
