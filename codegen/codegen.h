/* codegen.h — the back half of the pipeline: from a checked model to a
 * lowered program (lp_program), and the C text backend. driver.c's
 * kd_pipeline calls the stages in order:
 *
 *   kd_codegen_program       the program's interface: names, inputs, outputs, batch
 *   kd_codegen_differentiate the graphs it compiles: predict, and with a train
 *                            block grad, train_step, apply_gradients (autodiff)
 *   kd_codegen_layout        variables' offsets in params, opt_state, grads
 *   kd_codegen_embed         --embed-weights: the weights as static data
 *   kd_codegen_optimize      the graph passes (compiler/passes.h)
 *   kd_codegen_lower         init, and each graph to the loop IR (lower*.c),
 *                            loops merged (lower_fuse.c), arena offsets (arena_plan.c)
 *   kd_emit_c                lp_program -> model.c + model.h text (emit_c.c);
 *                            the libgccjit backend (jit.h) starts from the same program */
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
    bool prepare;               /* also <model>_prepare and <model>_predict_prepared (kdslc compile's C text) */
    const char *header_name;    /* what model.c #includes; NULL: "<model>.h" */
    bool no_workspace;          /* firmware: no GEMM / conv workspace; Dense, Conv2D, pooling as loop nests (lower_direct.c) */
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
} kd_codegen_options;

typedef struct kd_dest kd_dest;     /* below: where a graph output goes */

/* The graphs of a program's functions, and where each graph's outputs go. */
typedef struct kd_graphs {
    ir_graph *g[LP_F_COUNT];
    kd_dest *dests[LP_F_COUNT];
} kd_graphs;

/* The stages, in kd_pipeline's order; each reports to d and returns NULL /
 * false on error. kd_codegen_differentiate takes the graphs from m->infer
 * and, when m has a train block with a loss and !inference_only, from
 * kd_build_grad_graph / kd_build_train_step (compiler/train_graph.h), which
 * add the optimizer's slots to m->vars. kd_codegen_layout writes each
 * variable's offset (kd_var.offset) in its buffer. */
lp_program *kd_codegen_program(kd_arena *a, kd_model *m, const kd_codegen_options *o, kd_diags *d);
bool kd_codegen_differentiate(lp_program *p, kd_model *m, const kd_codegen_options *o, kd_graphs *G, kd_diags *d);
void kd_codegen_layout(lp_program *p, kd_model *m);
bool kd_codegen_embed(lp_program *p, const char *path, kd_diags *d);
bool kd_codegen_optimize(lp_program *p, const kd_codegen_options *o, kd_graphs *G, kd_diags *d);
bool kd_codegen_lower(lp_program *p, const kd_graphs *G, const kd_codegen_options *o, kd_diags *d);

/* The host's x86-64 level for -march ("x86-64-v3"), from the CPU's and the
 * OS's support; NULL off x86-64 (target.c). */
const char *kd_host_march(void);
/* The host CPU's identity as text: on x86-64 the vendor, the feature bits
 * of CPUID leaves 1 and 7 and the register state the OS saves, so that
 * code compiled for one CPU is never taken for another's (jit_cache.c). */
void kd_host_cpu_features(char *buf, size_t n);
/* `--target NAME`: "portable" -> "", "native" -> kd_host_march(), an x86-64
 * level -> itself; NULL for anything else (or native off x86-64). */
const char *kd_resolve_target(const char *name);

/* model.c and model.h; 0, or 1 after reporting to d (a write error). */
int kd_emit_c(const lp_program *p, const kd_codegen_options *o, FILE *c_out, FILE *h_out, kd_diags *d);

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
/* bytes: what model.h asks of the caller's arena (<M>_ARENA_ALIGN), as it
 * always has: what malloc gives; the code reads the arena with unaligned
 * vector loads (runtime/isa_vectors.h), so alignment is for speed only */
#define KD_ARENA_CALLER_ALIGN 16
/* The alignment of the arena's buffers for options o: a cache line, but
 * with --no-workspace (firmware) only the element's, since a Cortex-M has no
 * data cache and every byte of padding is RAM. model.h's <M>_ARENA_ALIGN is
 * the smaller of this and KD_ARENA_CALLER_ALIGN. */
int kd_arena_align(const kd_codegen_options *o);

/* ---- thread planning (thread_plan.c) ------------------------------------------------ */

/* Which loops run split across the host's thread pool, for the JIT
 * (emit_jit.c outlines each one and calls kdh_parallel_range): an
 * element-wise FOR marked parallel, or a row reduction split on its
 * columns, when the body only loads, stores and computes (no kernel calls,
 * no writes to the enclosing code's locals) and has enough work to pay for
 * the hand-off. Every element keeps its single-threaded arithmetic. */
typedef struct kd_thread_planner {
    const lp_program *p;
    const lp_func *f;
    kd_arena *scratch;
    bool split_small;          /* kd_jit_options.split_small_loops: split however little work */
    /* by buffer / variable id, allocated at the first site of the function
     * and cleared after each one (kd_thread_plan_done) */
    bool *buf, *stored, *read, *def;
    int *touched_buf, *touched_var;
} kd_thread_planner;

/* A split loop: `loop` runs as [lo, hi) slices, inside `outer` (a row
 * reduction's loop over rows, run whole by each slice) or alone. */
typedef struct kd_par_site {
    bool ok;
    const lp_stmt *outer, *loop;
    bool *buf, *read, *def;    /* by id: the buffers the body touches, the variables it reads, defines */
    bool param[LP_P_COUNT];    /* the run-time parameters it reads */
    bool *stored;              /* buffers stored to */
    double mem;                /* loads and stores per iteration of the split loop */
    long grain, min_n;         /* kdh_parallel_range's: slice bounds' multiple, least length to split */
    int *touched_buf, *touched_var, nbuf, nvar;
} kd_par_site;

/* Starts planning function f (its buffers and variables by id). */
void kd_thread_planner_init(kd_thread_planner *t, const lp_program *p, const lp_func *f, kd_arena *scratch,
                            bool split_small);
/* Whether FOR statement s (outside any other loop) runs split; if so, *site
 * describes it until kd_thread_plan_done, which must come before the next
 * site of the function. */
bool kd_thread_plan_site(kd_thread_planner *t, const lp_stmt *s, kd_par_site *site);
void kd_thread_plan_done(kd_par_site *site);

#endif
