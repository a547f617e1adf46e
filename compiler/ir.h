/* ir.h — the graph IR: an SSA DAG of tensor ops with static shapes.
 *
 * Shapes include the batch as dims[0] when `batched` is set; that dimension is
 * symbolic (IR_BATCH) and bound at run time to 1..max_batch. Variables
 * (weights, state, optimizer slots) have no batch dimension. Broadcasting
 * follows NumPy over the full shape, the batch dimension included.
 *
 * Every op is described once, in the op table (ir_op_info, in compiler/ops/): its
 * name, arity, shape rule, reference evaluation and vjp rule. */
#ifndef KDSL_IR_H
#define KDSL_IR_H

#include "kdsl.h"
#include "activations.h"   /* runtime/: the activation table */

#define IR_MAX_RANK 8
#define IR_BATCH (-1)

typedef struct ir_shape {
    int rank;
    bool batched;                  /* dims[0] is the batch (IR_BATCH) */
    int64_t dims[IR_MAX_RANK];
} ir_shape;

typedef enum ir_op {
    /* leaves */
    IR_INPUT,        /* model input #index (batched) */
    IR_LABEL,        /* training target #index (batched), fed like an input */
    IR_VAR,          /* read of variable #var (weight, state or optimizer slot) */
    IR_CONST,        /* every element = scalar */
    IR_HYPER,        /* a run-time scalar: index IR_HYPER_* (learning rate, step, ...) */
    /* elementwise, unary; the activations (IR_RELU, IR_SIGMOID, ...) are the rows of
     * runtime/activations.h, attr.scalar their argument (leaky_relu's slope) */
    IR_NEG,
#define IR_ACT_OP(NAME, ...) IR_##NAME,
    KDA_LIST(IR_ACT_OP)
#undef IR_ACT_OP
    IR_EXP, IR_LOG, IR_SQRT, IR_RSQRT, IR_SQUARE, IR_ABS, IR_SIGN,
    /* elementwise, binary, NumPy broadcasting */
    IR_ADD, IR_SUB, IR_MUL, IR_DIV, IR_MAXIMUM,
    IR_ACT_GRAD,     /* (x or y, dy) -> dy * f'(x) of activation attr.act (argument attr.scalar);
                      * the row's `from` says whether it reads the input or the output */
    IR_GT,           /* (a, b) -> a > b ? 1 : 0 */
    /* linear algebra: a and b viewed as 2-D [rows, last] (all but the last dim
     * flattened, the batch included). op(a) @ op(b), trans_a, trans_b. The
     * result keeps a's leading dims and has N columns when !trans_a: [..., N];
     * it is an unbatched [a.last, N] when trans_a (contracting over a's rows,
     * e.g. the weight gradient x^T dy over the batch and all leading dims). */
    IR_MATMUL,
    /* reductions over `axes` (bit i = axis i of the full shape, batch = 0), keepdims;
     * reducing the batch axis makes the result unbatched (a 1 there with keepdims) */
    IR_SUM, IR_MEAN, IR_MAX,
    IR_MAX_GRAD,     /* (x, y, dy): dy routed to the first maximum (row-major), axes/keepdims of the IR_MAX */
    IR_BROADCAST,    /* x broadcast to `shape` */
    /* layout */
    IR_RESHAPE,      /* to `shape`; same elements per sample, the batch stays */
    IR_TRANSPOSE,    /* out.dims[i] = in.dims[perm[i]]; perm[0] = 0 when batched */
    IR_CONCAT,       /* variadic, along `axis` (not the batch); other dims equal */
    IR_SLICE,        /* out = in[begin[d] : begin[d] + size[d]]; batch: begin 0, size IR_BATCH */
    IR_PAD,          /* pad_lo[d], pad_hi[d] zeros around each dim (0 on the batch) */
    IR_REVERSE,      /* out[.., i, ..] = in[.., dims[axis] - 1 - i, ..] along `axis` (not the batch):
                      * go_backwards' outputs in Keras' order */
    /* neural-network ops */
    IR_SOFTMAX, IR_LOG_SOFTMAX,             /* over `axis` */
    IR_DROPOUT_MASK, /* leaf: 0 or 1/(1-rate) per element of `shape`; rate = scalar, salt = index;
                      * from (HYPER_SEED, HYPER_STEP) through runtime/random.h */
    IR_GAUSSIAN_NOISE, /* leaf: normal noise of stddev `scalar` per element of `shape`; salt = index;
                        * init_normal from (kdk_noise_seed(HYPER_SEED, salt), HYPER_STEP), random.h */
    IR_RANK_MEAN,    /* (m unbatched) -> the mean of m over the ranks of data-parallel training,
                      * weighted by each rank's batch: sum_r batch_r m_r / sum_r batch_r (synchronised
                      * BatchNormalization's statistics); m itself in one process. Its vjp is the same
                      * op on dy, given that each rank's gradient is weighted by its share of the
                      * global batch (docs/distributed.md) */
    /* 2-D convolution and pooling over NHWC; pad_lo[0..1] = top, left and
     * pad_hi[0..1] = bottom, right (zeros); out H = (H + top + bottom - kh) / stride + 1 */
    IR_CONV2D,       /* (x [N,H,W,C], w [kh,kw,C,F]) -> [N,Ho,Wo,F]; stride[2] */
    IR_CONV2D_BWD_DATA,   /* (dy, w) -> dx of `shape`; attributes of the forward conv */
    IR_CONV2D_BWD_FILTER, /* (x, dy) -> dw of `shape`; attributes of the forward conv */
    IR_MAXPOOL2D,    /* window[2], stride[2], pads; padding never wins a max */
    IR_MAXPOOL2D_GRAD,    /* (x, dy) -> dx: dy to the first maximum of each window, summed */
    IR_AVGPOOL2D,    /* divides by the count of positions inside the input (Keras 'same') */
    IR_AVGPOOL2D_GRAD,    /* (dy) -> dx of `shape` */
    /* depthwise: (x [N,H,W,C], w [kh,kw,C,M]) -> [N,Ho,Wo,C*M], channel c*M + m; stride, pads,
     * dilation[2] (taps dilation apart; 0 or 1: none); gradients as CONV2D's */
    IR_DEPTHWISE_CONV2D, IR_DEPTHWISE_CONV2D_BWD_DATA, IR_DEPTHWISE_CONV2D_BWD_FILTER,
    /* gather (Embedding): (table [V, D], idx batched i32 [N, ...]) -> [N, ..., D], row idx of
     * the table per index; an index outside [0, V) gives a row of zeros (never a read out
     * of bounds). Its gradient scatters: (idx, dy) -> dtable of `shape` [V, D], the rows of
     * dy added at their indices (repeated indices sum; out-of-range ones add nothing). */
    IR_GATHER, IR_GATHER_GRAD,
    /* scan (the recurrent layers' loop): attr.scan's body run once per step of axis 1 of
     * the sequence operands, carrying state; the node is the output attr.index of the
     * loop (a final carry or a per-step output stacked over time). Its vjp is a scan
     * the other way over time (backpropagation through time). IR_SCAN_ARG: a leaf of a
     * body, argument attr.index of the step (see ir_scan). */
    IR_SCAN, IR_SCAN_ARG,
    /* fused loss: softmax over the last axis, cross-entropy, mean over all rows
     * (the batch and any other leading dims) */
    IR_SOFTMAX_XENT,      /* (logits, onehot) -> scalar loss, shape [] */
    IR_SOFTMAX_XENT_GRAD, /* (logits, onehot, dloss []) -> dlogits = dloss * (softmax * sum(onehot) - onehot) / rows */
    /* made by the fusion pass (compiler/passes/fuse.c, ops in passes/fused_ops.c); passes
     * run after autodiff, so no vjp. (a, b[, bias]) -> act(op(a, b) + bias): attributes
     * of MATMUL / CONV2D / DEPTHWISE_CONV2D plus `act`; bias [N] is added to every row
     * (N = last dim). */
    IR_FUSED_MATMUL, IR_FUSED_CONV2D, IR_FUSED_DEPTHWISE_CONV2D,
    IR_OP_COUNT
} ir_op;

enum { IR_HYPER_LR, IR_HYPER_STEP, IR_HYPER_SEED, IR_HYPER_BATCH, IR_HYPER_COUNT };

/* The activations: none, then the rows of runtime/activations.h, numbered as the
 * runtime's KDK_ACT_* (the fused ops' epilogues) are. */
#define IR_ACT_VALUE(NAME, ...) IR_ACT_##NAME,
enum { IR_ACT_NONE, KDA_LIST(IR_ACT_VALUE) IR_ACT_COUNT };
#undef IR_ACT_VALUE

/* What the compiler reads from an activation's row (ops/elementwise.c). */
typedef struct ir_act_info {
    ir_op op;              /* IR_RELU, ... */
    const char *name;      /* KDSL / Keras name: "gelu" for both gelu rows */
    const char *alias;     /* "silu", or NULL */
    int kind;              /* KDA_KIND_NONE, _REAL (an argument), _FLAG (chosen by a boolean) */
    const char *arg;       /* the argument's keyword: "negative_slope", "approximate" */
    double def;            /* its default; FLAG: the value that chooses this row */
    bool from_y;           /* the gradient reads the output (else the input) */
} ir_act_info;
extern const ir_act_info ir_acts[IR_ACT_COUNT];   /* [IR_ACT_NONE] is empty */

int ir_act_of(ir_op op);                            /* IR_ACT_* of an activation op, else IR_ACT_NONE */
double ir_act_apply(int act, double x, double arg); /* the row's formula, in double */
double ir_act_grad(int act, double xy, double dy, double arg);

typedef struct ir_attrs {
    int64_t axes;          /* reductions: bit i set = reduce axis i */
    bool keepdims;
    int axis;              /* softmax, concat (non-negative, batch = 0) */
    int perm[IR_MAX_RANK]; /* transpose */
    int64_t begin[IR_MAX_RANK], size[IR_MAX_RANK]; /* slice */
    int64_t pad_lo[IR_MAX_RANK], pad_hi[IR_MAX_RANK]; /* pad: per dim; conv/pool: [0] = top /
                            * bottom, [1] = left / right, so an uneven 'same' padding is exact */
    int window[2], stride[2];  /* pools: window; conv/pool: stride (>= 1); [0] = H, [1] = W */
    int dilation[2];       /* depthwise conv: distance between taps (0 or 1: adjacent) */
    bool trans_a, trans_b;
    double scalar;         /* const value; dropout rate */
    int index;             /* input/label/hyper index; dropout salt */
    int act;               /* IR_FUSED_*: IR_ACT_* applied after the bias */
    bool i32;              /* IR_INPUT: integer token ids (`input x: i32[...]`), see ir_is_i32 */
    struct ir_scan *scan;  /* IR_SCAN, IR_SCAN_ARG: the loop */
    ir_shape shape;        /* result shape of leaves, RESHAPE, BROADCAST, DROPOUT_MASK and the
                            * gradient ops CONV2D_BWD_*, AVGPOOL2D_GRAD */
} ir_attrs;

typedef struct ir_node ir_node;
struct ir_node {
    int id;                /* position in the graph's node list */
    ir_op op;
    int nin;
    ir_node **in;
    ir_shape shape;
    ir_attrs attr;
    int var;               /* IR_VAR: variable index */
    kd_loc loc;            /* the KDSL statement it came from */
    const char *layer;     /* the layer instance it belongs to, or NULL */
    void *aux;             /* pass scratch */
};

typedef enum kd_var_kind { VAR_WEIGHT, VAR_STATE, VAR_SLOT } kd_var_kind;

typedef enum kd_init_kind {
    INIT_ZEROS, INIT_ONES, INIT_CONSTANT,
    INIT_GLOROT_UNIFORM, INIT_GLOROT_NORMAL, INIT_HE_UNIFORM, INIT_HE_NORMAL,
    INIT_LECUN_UNIFORM, INIT_LECUN_NORMAL, INIT_RANDOM_UNIFORM, INIT_RANDOM_NORMAL,
    INIT_ORTHOGONAL,       /* a: the gain (Keras' Orthogonal(gain=1.0)) */
} kd_init_kind;

typedef struct kd_init {
    kd_init_kind kind;
    double a, b;           /* constant value; uniform [a, b]; normal mean a, stddev b */
    int64_t ones_at, ones; /* then ones in [ones_at, ones_at + ones): LSTM's unit_forget_bias */
} kd_init;

typedef struct kd_var {
    int index;
    const char *name;      /* LAYER/VARIABLE, e.g. "dense/kernel" */
    kd_var_kind kind;
    bool trainable;        /* weights only; frozen layers and states are not */
    ir_shape shape;        /* never batched */
    kd_init init;
    int64_t offset;        /* element offset in its buffer (params or optimizer state) */
    int of_var;            /* VAR_SLOT: the weight it belongs to */
} kd_var;

typedef struct ir_update {
    int var;               /* the variable written */
    ir_node *value;        /* its new value after the step */
} ir_update;

/* An inference-mode BatchNormalization as sema built it, y = (x - mean) *
 * rsqrt(variance + epsilon) * gamma + beta over x's last axis, for the
 * fold into the convolution or Dense before it (passes/fold_batchnorm.c).
 * Variables by index; gamma and beta are -1 when scale / center is off. */
typedef struct ir_batchnorm {
    ir_node *x, *y;
    int gamma, beta, mean, variance;
    double epsilon;
} ir_batchnorm;

typedef struct ir_graph {
    kd_arena *arena;
    kd_vec nodes;          /* ir_node*, topological (creation) order */
    kd_vec outputs;        /* ir_node*: model outputs; training graphs: the loss, the first
                            * output, then (grad graph) the gradients (train_graph.h) */
    kd_vec updates;        /* ir_update*: state updates, optimizer steps */
    kd_vec losses;         /* ir_node*: scalar terms the training loss adds (regularizers) */
    kd_vec batchnorms;     /* ir_batchnorm*: sema's inference graph only (passes do not copy them) */
    kd_vec *vars;          /* kd_var*, shared with the model */
    int max_nodes;         /* a bound so hostile programs fail cleanly (0: 4,000,000) */
    bool overflow;         /* set when max_nodes was hit */
} ir_graph;

/* Whether n is an integer tensor: an i32 input. Only IR_GATHER's indices and
 * IR_GATHER_GRAD's take one (ir_make checks); every other value is real. */
static inline bool ir_is_i32(const ir_node *n) { return n->op == IR_INPUT && n->attr.i32; }

/* Shape helpers (ir.c). */
/* A shape from its per-sample dims; `batched` prepends the batch (so rank+1 dims). */
ir_shape ir_shape_of(int rank, const int64_t *dims, bool batched);
int64_t ir_shape_elems(const ir_shape *s);   /* per batch row when batched; -1 on overflow */
bool ir_shape_equal(const ir_shape *a, const ir_shape *b);
/* "(None, 26, 26, 32)" (keras) or "[26, 26, 32]" (per sample), into buf. */
const char *ir_shape_keras(const ir_shape *s, char *buf, size_t n);
const char *ir_shape_sample(const ir_shape *s, char *buf, size_t n);
/* NumPy broadcast of two shapes; false if they do not broadcast. */
bool ir_broadcast_shapes(const ir_shape *a, const ir_shape *b, ir_shape *out);
/* Keras/TensorFlow 'same' padding for one spatial dim: out = ceil(in / stride), the
 * total padding split with the extra row at the end (bottom/right). */
void ir_same_padding(int64_t in, int window, int stride, int64_t *pad_lo, int64_t *pad_hi);

/* Building. Every builder checks its operands with the op's shape rule;
 * on failure it returns NULL and writes the reason into `why`, naming the op
 * and the shapes: "add: cannot broadcast [26, 26, 32] with [10]". Operands
 * may be NULL (an earlier failure): the result is then NULL and `why` is kept.
 * Past g->max_nodes nodes every builder fails with "model too large" and
 * sets g->overflow. */
typedef struct ir_builder {
    ir_graph *g;
    kd_loc loc;            /* stamped on new nodes */
    const char *layer;
    char why[512];
} ir_builder;

ir_graph *ir_graph_new(kd_arena *a, kd_vec *vars);
/* A copy of g (same node ids, outputs and updates, sharing g->vars) to extend
 * without touching g: the training graphs start from the model's forward graph. */
ir_graph *ir_graph_clone(kd_arena *a, const ir_graph *g);
ir_node *ir_make(ir_builder *b, ir_op op, int nin, ir_node **in, const ir_attrs *attr);
/* INPUT, LABEL (attr->index), VAR (var), CONST (attr->scalar), HYPER (attr->index),
 * DROPOUT_MASK (attr->scalar = rate, attr->index = salt). */
ir_node *ir_leaf(ir_builder *b, ir_op op, ir_shape shape, const ir_attrs *attr, int var);
/* Copies every node of `from` (a graph over the same variables) into b->g, in
 * order; a leaf becomes leaf(ctx, n) when that is not NULL (a placeholder
 * bound to a node of b->g), else a copy. Returns the copy of from's first
 * output (NULL with b->why set on error). A custom loss's graph enters the
 * training graph this way (train_graph.c). */
ir_node *ir_inline(ir_builder *b, const ir_graph *from, ir_node *(*leaf)(void *ctx, const ir_node *n), void *ctx);
ir_node *ir_unary(ir_builder *b, ir_op op, ir_node *x);
ir_node *ir_binary(ir_builder *b, ir_op op, ir_node *x, ir_node *y);
/* Activation IR_ACT_* of x with its argument (ignored by rows without one). ir_unary
 * on an activation's op gives it the argument 0, which only rows without one want. */
ir_node *ir_act(ir_builder *b, int act, ir_node *x, double arg);
ir_node *ir_const(ir_builder *b, double value, ir_shape shape);
ir_node *ir_scalar(ir_builder *b, double value);          /* shape [] */
ir_node *ir_var_read(ir_builder *b, const kd_var *v);
ir_node *ir_hyper(ir_builder *b, int which);              /* IR_HYPER_*, shape [] */
ir_node *ir_reduce(ir_builder *b, ir_op op, ir_node *x, int64_t axes, bool keepdims);
ir_node *ir_reshape(ir_builder *b, ir_node *x, ir_shape to);
ir_node *ir_broadcast(ir_builder *b, ir_node *x, ir_shape to);
ir_node *ir_matmul(ir_builder *b, ir_node *x, ir_node *y, bool trans_a, bool trans_b);
/* The sum of `x` over the axes along which `to` was broadcast to x's shape (vjp of broadcasting). */
ir_node *ir_sum_to(ir_builder *b, ir_node *x, const ir_shape *to);

/* The op table: one entry per op, defined next to the op's rules in ops/. */
typedef struct ir_eval_ctx ir_eval_ctx;   /* interp.h */
/* Which attributes an op reads: the dump prints them, CSE compares them. */
enum {
    IR_ATTR_AXES = 1 << 0,     /* axes, keepdims */
    IR_ATTR_AXIS = 1 << 1,
    IR_ATTR_PERM = 1 << 2,
    IR_ATTR_SLICE = 1 << 3,    /* begin, size */
    IR_ATTR_PAD = 1 << 4,      /* pad_lo, pad_hi (all dims; conv/pool: [0..1]) */
    IR_ATTR_WINDOW = 1 << 5,
    IR_ATTR_STRIDE = 1 << 6,
    IR_ATTR_TRANS = 1 << 7,    /* trans_a, trans_b */
    IR_ATTR_SCALAR = 1 << 8,
    IR_ATTR_INDEX = 1 << 9,
    IR_ATTR_SHAPE = 1 << 10,
    IR_ATTR_VAR = 1 << 11,     /* node->var */
    IR_ATTR_ACT = 1 << 12,     /* act (fused ops) */
    IR_ATTR_DILATION = 1 << 13,
    IR_ATTR_SCAN = 1 << 14,    /* scan (compared by identity) */
};

typedef struct ir_op_info {
    const char *name;
    int arity;             /* -1: variadic */
    unsigned attrs;        /* IR_ATTR_* */
    /* Computes node->shape from its inputs and attributes; false with b->why set on error. */
    bool (*shape)(ir_builder *b, ir_node *node);
    /* Appends nodes computing the input gradients: grads[i] receives d(loss)/d(in[i])
     * given dy = d(loss)/d(node), for the inputs with want[i] set (it may also be set
     * for others when that costs no node: autodiff ignores it). NULL means a zero
     * gradient. A gradient may have the broadcast shape of the node: autodiff sums it
     * down to the input's shape (ir_sum_to). The vjp is NULL for ops that are
     * gradients themselves (no second order) and for ops made after autodiff. */
    void (*vjp)(ir_builder *b, ir_node *node, ir_node *dy, const bool *want, ir_node **grads);
    /* Reference evaluation in double precision (interp.c drives it). */
    void (*eval)(const ir_eval_ctx *c, const ir_node *node);
    /* Element-wise ops only (NULL for the others): the value of one element from
     * its operands' (b unused for unary ops), in double. Constant folding uses it;
     * its being set is what makes an op element-wise for the passes and lowering. */
    double (*scalar)(const ir_node *node, double a, double b);
    /* Floating-point operations of the node at `batch` samples, a multiply-add counting 2
     * (ir_graph_flops; ops.h's rules). NULL: one per output element for element-wise ops,
     * none for the others (leaves, data movement). */
    int64_t (*flops)(const ir_node *node, int64_t batch);
} ir_op_info;

extern const ir_op_info *const ir_ops[IR_OP_COUNT];

/* What a graph computes at `batch` samples: every floating-point operation, and in
 * *products those of its matrix products and convolutions (what "% of peak" is read
 * against), both with a multiply-add counting 2. */
int64_t ir_graph_flops(const ir_graph *g, int64_t batch, int64_t *products);

/* ---- scans (ops/scan.c) ----------------------------------------------------------
 * A loop over time that carries state: K carries (batched [N, ...]), S
 * sequences ([N, T, ...], step t is [N, ...]) and C constants (the same
 * tensor at every step: weights) go in; the body, a graph of its own over
 * IR_SCAN_ARG leaves, maps one step's arguments
 *   0..K-1 the carries, K..K+S-1 step t of each sequence, K+S..K+S+C-1 the constants
 * to its outputs: the K new carries, then P per-step values. A node applying
 * the scan is one of its results (attr.index): k < K the final carry k,
 * K + p per-step value p stacked over time ([N, T, ...]). Steps run t = 0..T-1,
 * or T-1..0 when `reverse`. The body reads weights as constants, never as
 * IR_VAR, so their gradients leave the loop through the scan's vjp: a scan the
 * other way over time whose body is the step's vjp (built once, `back`). */
typedef struct ir_scan {
    ir_graph *body;
    int ncarry, nseq, nconst, nstep;   /* K, S, C, P */
    bool reverse;
    ir_shape *arg;         /* each argument's per-step shape (set by ir_scan_arg), K + S + C */
    bool *has_arg;
    struct ir_scan *trace; /* for the vjp: this loop with the incoming carries as more per-step values */
    struct ir_scan *back;  /* for the vjp: the loop of the step's vjp, the other way over time */
} ir_scan;

/* A scan of K carries, S >= 1 sequences and C constants, its body empty. */
ir_scan *ir_scan_new(kd_arena *a, kd_vec *vars, int ncarry, int nseq, int nconst, bool reverse);
/* Argument `index` of the step in s's body (b->g == s->body); shape per step (batched or not). */
ir_node *ir_scan_arg(ir_builder *b, ir_scan *s, int index, ir_shape shape);
/* The body's outputs: the K new carries, then the per-step values (nout - K of them); false
 * with why set if a carry changes shape or the body reads a variable or an input. */
bool ir_scan_finish(ir_scan *s, int nout, ir_node *const *outs, char *why, size_t why_len);
/* Result `which` of running s over operands (K + S + C: carries, sequences, constants). */
ir_node *ir_scan_apply(ir_builder *b, ir_scan *s, ir_node *const *operands, int which);

/* Text dump, one node a line: `%7 = matmul(%3, %5) : (None, 256) trans_b  # dense` */
void ir_dump(FILE *out, const ir_graph *g);

#endif
