/* passes.h — graph-to-graph optimisation passes, one file each in passes/:
 *
 *   simplify.c  algebraic identities (x * 1, x + 0, -(-x), reshape of reshape,
 *               broadcasts an elementwise op does by itself, constant folding)
 *   cse.c       common subexpressions: one node per (op, operands, attributes)
 *   fuse.c      bias add + activation into the MATMUL / CONV2D producer
 *               (IR_FUSED_MATMUL / IR_FUSED_CONV2D / IR_FUSED_DEPTHWISE_CONV2D), the runtime's epilogue;
 *               -sum(onehot * log_softmax(z)) / rows into IR_SOFTMAX_XENT
 *   dce.c       only what the outputs and updates need (rewrite.c)
 *   schedule.c  the optimizer interleaved with the backward pass (train steps)
 *   fold_batchnorm.c  BatchNormalization into the convolution before it, for
 *               predict with embedded weights (run on sema's inference graph)
 *
 * Each pass reads a graph and builds a new one in the same arena (the input is
 * left as it was), with the outputs and updates in the same order: callers
 * keep their meaning by position. Every pass drops dead nodes as it copies.
 * They run after autodiff, on forward, backward and optimizer nodes alike. */
#ifndef KDSL_PASSES_H
#define KDSL_PASSES_H

#include "ir.h"

typedef struct kd_pass_options {
    bool no_simplify, no_cse, no_fuse, no_fold_batchnorm;   /* all on by default (zeroed options) */
} kd_pass_options;

/* The pipeline: simplify, CSE, fuse, simplify, CSE, DCE. NULL with why set
 * when a rewrite fails to build (a bug: the passes keep shapes). */
ir_graph *kd_optimize(ir_graph *g, const kd_pass_options *o, char *why, size_t why_len);

ir_graph *kd_pass_simplify(ir_graph *g, char *why, size_t why_len);
ir_graph *kd_pass_cse(ir_graph *g, char *why, size_t why_len);
ir_graph *kd_pass_fuse(ir_graph *g, char *why, size_t why_len);
ir_graph *kd_pass_dce(ir_graph *g, char *why, size_t why_len);
/* schedule.c: a training step's optimizer nodes moved up to run as soon as the
 * gradients they read exist (grads[0..ngrads): per variable, NULL allowed), so
 * gradients die early. Run it before kd_optimize: the passes keep node order. */
ir_graph *kd_pass_schedule(ir_graph *g, int ngrads, ir_node *const *grads, char *why, size_t why_len);

/* fold_batchnorm.c: each inference BatchNormalization (sema's graph records
 * them, ir_graph.batchnorms) that alone follows a convolution or Dense becomes
 * that layer's bias add, for weights known when compiling; the folds say how
 * kd_bn_fold_values turns the weights (params, offsets from vars) into the
 * ones the new graph reads. */
typedef struct kd_bn_fold {
    int kernel;            /* scaled: element j by s[j % channels] */
    int bias;              /* the layer's own bias, or -1 */
    int into;              /* gets the folded bias: beta, else the layer's bias */
    int gamma, beta, mean, variance;   /* gamma, beta: -1 when absent */
    double epsilon;
    int64_t channels;
} kd_bn_fold;
ir_graph *kd_pass_fold_batchnorm(ir_graph *g, kd_bn_fold ***folds, int *nfolds, char *why, size_t why_len);
/* false (and *bad the fold) when a folded value is not finite: a moving
 * variance at or below -epsilon */
bool kd_bn_fold_values(kd_bn_fold *const *folds, int nfolds, const kd_var *const *vars, double *params, int *bad);

/* ---- the rewriter the passes share (passes/rewrite.c) ----------------------
 * Copies the live nodes of `src` in order into a new graph; for each one the
 * pass's visit sees the old node and its operands already rewritten (`in`),
 * and returns the new node: a copy (kd_rw_copy), an operand, or a new
 * construction with rw->b (whose loc and layer are the old node's). */
typedef struct kd_rewrite kd_rewrite;
typedef ir_node *(*kd_rw_visit)(kd_rewrite *rw, ir_node *old, ir_node **in);

struct kd_rewrite {
    ir_graph *src, *dst;
    ir_builder b;
    ir_node **map;         /* src id -> dst node */
    int *uses;             /* src id -> operand uses + output/update roots */
    bool *live;            /* src id -> reaches an output or update */
    void *ctx;             /* the pass's own state */
};

ir_graph *kd_rewrite_graph(ir_graph *src, kd_rw_visit visit, void *ctx, char *why, size_t why_len);
/* The old node rebuilt over new operands (leaves: a fresh leaf). */
ir_node *kd_rw_copy(kd_rewrite *rw, const ir_node *old, ir_node **in);
/* Whether two nodes compute the same thing: op, operands, shape and the
 * attributes the op reads. */
bool kd_node_same(const ir_node *x, const ir_node *y);

#endif
