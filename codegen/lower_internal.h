/* lower_internal.h — what the lowering files share (lower.c: the driver;
 * lower_loops.c: loop nests; lower_calls.c: runtime kernel calls). */
#ifndef KDSL_LOWER_INTERNAL_H
#define KDSL_LOWER_INTERNAL_H

#include "codegen.h"

/* How a graph node's value exists at run time. */
typedef enum lw_class {
    LW_DEAD,               /* nothing needs it */
    LW_LEAF_BUF,           /* input, label, variable: a caller's buffer */
    LW_LEAF_EXPR,          /* const, hyper, dropout mask: an expression where it is used */
    LW_ALIAS,              /* reshape: its operand's buffer, seen with another shape */
    LW_INLINE,             /* elementwise, computed inside its one user's loop nest */
    LW_KERNEL,             /* written to its buffer by a kernel of its own */
    LW_PARTNER,            /* written by another node's kernel (root): softmax_xent_grad by the
                            * softmax_xent call that computes the loss from the same logits; a
                            * scan's other results by the loop that computes its first */
} lw_class;

typedef struct lw_node {
    lw_class cls;
    lp_buf *buf;           /* LEAF_BUF, ALIAS, KERNEL: where the value is */
    int slot;              /* KERNEL: its kernel's index; INLINE: its root's */
    ir_node *root;         /* INLINE: the KERNEL node whose loop computes it; PARTNER: whose call */
    ir_node *partner;      /* KERNEL: a PARTNER node its kernel also writes */
    kd_vec results;        /* KERNEL scan: the PARTNER scans of the same loop (ir_node*) */
    kd_vec inlined;        /* KERNEL: the INLINE nodes its loop computes, in node order */
    int nusers;            /* operand uses (an operand used twice by one node counts twice) */
    ir_node **users;
    int roots;             /* outputs and updates that name it */
    bool bound;            /* buf is a destination chosen before generation */
} lw_node;

typedef struct lower {
    kd_arena *a;
    lp_program *p;
    lp_func *f;
    const ir_graph *g;
    const kd_codegen_options *o;
    lw_node *n;            /* by node id */
    lp_buf *inputs[16], *labels[16], *outputs[16];
    lp_buf **vars;         /* by variable index: its buffer in params / opt_state / grads */
    bool params_const;
    lp_kernel *k;          /* the kernel being generated */
    lp_buf *const *scan_args;   /* a scan body's lowering: IR_SCAN_ARG index -> its buffer */
    char why[256];
    bool failed;
} lower;

bool lw_fail(lower *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A fresh arena buffer for a value of shape s. */
lp_buf *lw_arena_buf(lower *L, const ir_shape *s, const char *name, const char *note);
/* "[batch, 256]" */
const char *lw_shape_text(lower *L, const ir_shape *s);
/* The extent of dim d of s: the batch parameter or a constant. */
lp_expr *lw_dim(lower *L, const ir_shape *s, int d);
/* Elements of s at run time: batch * per-sample, or a constant. */
lp_expr *lw_count(lower *L, const ir_shape *s);
/* Row-major element strides of s (the batch dim's stride is the per-sample count). */
void lw_strides(const ir_shape *s, int64_t *st);

/* ---- lower_loops.c ------------------------------------------------------------ */
bool lw_is_elementwise(ir_op op);
bool lw_is_loop_op(const ir_node *n);  /* lowered to loops (accepts expression operands) */
/* The kernel of a loop-lowered node (elementwise root, reduction, layout...),
 * writing dst (its buffer). */
bool lw_loop_kernel(lower *L, ir_node *n, lp_buf *dst);
/* A kernel that writes node n's value (any class) into dst, element by element. */
bool lw_copy_kernel(lower *L, ir_node *n, lp_buf *dst);
/* The value of a node of rank 0 (a scalar) as an expression. */
lp_expr *lw_scalar(lower *L, ir_node *n);
/* Activation `act` (IR_ACT_*, runtime/activations.h's rows) of x, its argument p. */
lp_expr *lw_act_expr(kd_arena *a, int act, lp_expr *x, lp_expr *p);

/* ---- lower_fuse.c --------------------------------------------------------------- */
/* Merges neighbouring elementwise loop nests of one shape (multi-output fusion). */
void lw_fuse_loops(lower *L);
/* Buffers one fused loop writes and reads back at the same index become locals. */
void lw_scalarize(lower *L);

/* ---- lower_depthwise.c ---------------------------------------------------------- */
/* The depthwise ops the runtime's kernels would run in portable loops: loop nests. */
bool lw_depthwise_as_loops(const ir_node *n);
bool lw_depthwise_kernel(lower *L, ir_node *n, lp_buf *dst);

/* ---- lower_gather.c ------------------------------------------------------------- */
bool lw_is_gather_op(ir_op op);        /* IR_GATHER and IR_GATHER_GRAD: loop nests */
bool lw_gather_kernel(lower *L, ir_node *n, lp_buf *dst);

/* ---- lower_scan.c (and lower.c's lw_lower_body) --------------------------------- */
bool lw_scan_kernel(lower *L, ir_node *n, lp_buf *dst);
/* Lowers a scan's body as statements appended to `into` (one step: its
 * kernels in order), its IR_SCAN_ARG leaves reading args[index]; its
 * buffers are named prefix + their own name, share no bytes in place and
 * live in the current kernel. Returns the body's lowering (its nodes'
 * buffers), or NULL after lw_fail. */
lower *lw_lower_body(lower *L, const ir_graph *body, lp_buf *const *args, const char *prefix, kd_vec *into);

/* ---- lower_direct.c ------------------------------------------------------------- */
/* --no-workspace: forward products, convolutions and unpadded pooling as loop
 * nests with constant shapes (a call op whose kernel is loops). */
bool lw_is_direct_op(const lower *L, const ir_node *n);
bool lw_direct_kernel(lower *L, ir_node *n, lp_buf *dst);

/* ---- building loop nests (the hand-built kernels: depthwise, direct, gather, scan) */
/* Appends `for (v < extent)` to into; the loop's body. */
static inline kd_vec *lw_push_for(kd_arena *a, kd_vec *into, lp_var *v, lp_expr *extent, bool parallel)
{
    lp_stmt *f = lp_for(a, v, extent, parallel);
    kd_vec_push(a, into, f);
    return &f->body;
}

/* Appends `if (cond)` to into; its body. */
static inline kd_vec *lw_push_if(kd_arena *a, kd_vec *into, lp_expr *cond)
{
    lp_stmt *s = lp_if(a, cond, NULL);
    kd_vec_push(a, into, s);
    return &s->body;
}

/* ---- lower_calls.c -------------------------------------------------------------- */
bool lw_is_call_op(const ir_node *n);
bool lw_call_kernel(lower *L, ir_node *n, lp_buf *dst);

#endif
