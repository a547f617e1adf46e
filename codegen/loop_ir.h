/* loop_ir.h — the loop IR: what the graph IR lowers to (lower*.c), what the
 * arena planner places (arena_plan.c), and what every backend walks — the C
 * text emitter (emit_c.c) and the libgccjit emitter. Nothing here is C text:
 * a backend turns each construct into its own form.
 *
 * A program is a model's compiled form: its buffers' layouts (parameters,
 * optimizer slots, gradients) and a few functions (init, predict, grad,
 * apply_gradients, train_step). A function is a list of kernels run in order;
 * a kernel is what one graph node (plus the elementwise nodes fused into it)
 * became: either calls into the runtime kernels (kdk_*) or loop nests of
 * stores whose values are expression trees.
 *
 * After lowering, neighbouring elementwise loops of one shape are merged
 * (several stores per iteration, in order) and temporaries that live within
 * one iteration become LET locals (lower_fuse.c).
 *
 *   program ─ func ─ kernel ─ stmt: for (var < extent) { stmt... }
 *                                   store buf[index] (=|+=|max=) expr
 *                                   let/set local (=|+=|max=) expr
 *                                   call kdk_gemm(args...)  [-> local]
 *                                   if (cond) { stmt... }
 *
 * Types: every expression is an index integer (LP_INT: `long` in C, 64-bit
 * on hosts, 32-bit on Cortex-M) or a real (LP_REAL: the program's float or
 * double; --dtype f64 switches the whole program). Indices are in elements of
 * the buffer they index. The batch is the only run-time extent: LP_P_BATCH.
 *
 * Buffers: each lp_buf is one contiguous tensor in one memory space: a
 * variable at an element offset in the caller's params / opt_state / grads,
 * the caller's inputs[i] / outputs[i] / labels, or an arena temporary whose
 * byte offset arena_plan.c assigns. A buffer's extent scales with the batch
 * when `batched`; sizes are given at the program's max batch. */
#ifndef KDSL_LOOP_IR_H
#define KDSL_LOOP_IR_H

#include "ir.h"
#include "kernel_list.h"

typedef enum lp_type { LP_INT, LP_REAL } lp_type;
typedef enum lp_real_kind { LP_F32, LP_F64 } lp_real_kind;

/* ---- buffers ------------------------------------------------------------ */

typedef enum lp_space {
    LP_PARAMS,     /* the caller's params (weights + states), or the embedded copy */
    LP_OPT,        /* the caller's opt_state (optimizer slots); may be NULL in init */
    LP_GRADS,      /* the caller's grads (one real per trainable weight element) */
    LP_INPUT,      /* inputs[index] */
    LP_LABEL,      /* labels (index 0: the one label tensor) */
    LP_OUTPUT,     /* outputs[index]; train_step's outputs0 (may be NULL) */
    LP_ARENA,      /* a temporary in the caller's arena */
    LP_SPACE_COUNT
} lp_space;

typedef enum lp_elem { LP_ELEM_REAL, LP_ELEM_I32 } lp_elem;

typedef struct lp_buf {
    int id;                /* index in its function's bufs */
    lp_space space;
    int index;             /* LP_INPUT / LP_OUTPUT / LP_LABEL: which one */
    lp_elem elem;
    int64_t offset;        /* PARAMS/OPT/GRADS: element offset; ARENA: byte offset (arena_plan) */
    int64_t elems;         /* per batch row if batched, else in all */
    bool batched;
    bool is_const;         /* read-only in this function (PARAMS in predict, inputs, labels) */
    bool scratch;          /* a kernel's workspace: its contents mean nothing outside the call */
    bool local;            /* ARENA space but small (LP_LOCAL_MAX reals, no batch): a backend
                            * keeps it on the stack, the arena has no bytes for it */
    const char *name;      /* C-identifier-safe: "x", "dense_kernel", "t7" */
    const char *note;      /* what it holds, for comments: "dense: relu [batch, 256]" */
    int var;               /* PARAMS/OPT/GRADS: the kd_var index, else -1 */
    /* Liveness over the function's kernels (arena_plan.c): first and last
     * kernel index that reads or writes it; -1 when unused. */
    int first, last;
    /* In place: arena buffers whose bytes this one may take over when they die
     * in its first kernel, which reads them only at the index it writes (an
     * elementwise loop); arena_plan.c picks one and sets `shares`. */
    kd_vec reuse;
    struct lp_buf *shares;
} lp_buf;

#define LP_LOCAL_MAX 16

/* Bytes of a buffer at the program's max batch. */
int64_t lp_buf_bytes(const lp_buf *b, int max_batch, lp_real_kind real);

/* ---- expressions -------------------------------------------------------- */

typedef enum lp_op {
    /* real -> real */
    LP_NEG, LP_EXP, LP_LOG, LP_SQRT, LP_RSQRT, LP_TANH, LP_SIGMOID, LP_ABS, LP_SIGN,
    LP_RELU, LP_SQUARE, LP_LOG1P, LP_EXPM1, LP_ERF,
    /* (real, real) -> real; (int, int) -> int for ADD SUB MUL DIV MIN MAX */
    LP_ADD, LP_SUB, LP_MUL, LP_DIV, LP_MIN, LP_MAX,
    /* comparisons -> int 0/1 (operands of one type); logic on ints */
    LP_GT, LP_GE, LP_LT, LP_LE, LP_EQ, LP_NE, LP_AND, LP_OR, LP_NOT,
    /* int -> real */
    LP_TO_REAL,
    LP_OP_COUNT
} lp_op;

typedef enum lp_param {
    LP_P_BATCH,            /* int: the run-time batch */
    LP_P_STEP,             /* int: the training step (unsigned long long in C) */
    LP_P_LR,               /* real: the learning rate */
    LP_P_SEED,             /* int: init's seed (unsigned long long in C) */
    LP_P_COUNT
} lp_param;

typedef struct lp_var {
    int id;
    lp_type type;
    const char *name;      /* "i0", "acc3": unique within its function */
} lp_var;

typedef enum lp_expr_kind {
    LP_E_INT,              /* ival */
    LP_E_REAL,             /* rval (rounded to the program's real type when emitted) */
    LP_E_VAR,              /* var */
    LP_E_PARAM,            /* param */
    LP_E_LOAD,             /* buf[a] */
    LP_E_OP,               /* op(a[, b]) */
    LP_E_SELECT,           /* a ? b : c, a an int */
    /* The dropout mask element (runtime/random.h):
     * kdk_dropout_bits(seed, step, salt, a) >= threshold ? scale : 0,
     * where seed is the constant dropout.seed and step the LP_P_STEP param. */
    LP_E_DROPOUT,
} lp_expr_kind;

typedef struct lp_expr lp_expr;
struct lp_expr {
    lp_expr_kind kind;
    lp_type type;
    lp_op op;
    int64_t ival;
    double rval;
    lp_var *var;
    lp_param param;
    lp_buf *buf;
    lp_expr *a, *b, *c;
    struct {
        uint64_t seed;
        uint32_t salt, threshold;
        double scale;
    } dropout;
};

/* ---- runtime calls ------------------------------------------------------- */

/* The kernels a call names: the runtime's kdk_s<name> / kdk_d<name>, one
 * per row of runtime/kernel_list.h (LP_K_GEMM for its row GEMM), which also
 * gives their signatures (lp_kernels[]); the semantics are in
 * runtime/kernels.h and runtime/random.h. */
#define LP_K_ENUM_(ID, ...) LP_K_##ID,
typedef enum lp_kernel_id {
    KDK_KERNEL_LIST(LP_K_ENUM_)
    LP_K_COUNT
} lp_kernel_id;
#undef LP_K_ENUM_

/* kernel_list.h's argument kinds. */
typedef enum lp_arg_kind {
    LP_A_INT,              /* int */
    LP_A_LONG,             /* long (element counts of the initialisers) */
    LP_A_U64,              /* unsigned long long (seeds) */
    LP_A_REAL,             /* the real type */
    LP_A_F64,              /* double, whatever the real type (the initialisers' constants) */
    LP_A_IN,               /* const real * (or NULL) */
    LP_A_OUT,              /* real * (or NULL) */
    LP_A_IN_I32,           /* const int32_t * (pooling argmax; always NULL so far) */
    LP_A_OUT_I32,          /* int32_t * */
} lp_arg_kind;

/* A pointer argument: lp_arg.buf and .off, not .e. */
static inline bool lp_arg_is_ptr(lp_arg_kind k)
{
    return k == LP_A_IN || k == LP_A_OUT || k == LP_A_IN_I32 || k == LP_A_OUT_I32;
}

#define LP_MAX_ARGS 24

typedef struct lp_kernel_info {
    const char *name;      /* "gemm": kdk_sgemm / kdk_dgemm */
    int nargs;
    lp_arg_kind args[LP_MAX_ARGS];
    const char *arg_names[LP_MAX_ARGS];
    bool returns_double;   /* softmax_xent returns the sum of the row losses */
} lp_kernel_info;

extern const lp_kernel_info lp_kernels[LP_K_COUNT];

typedef struct lp_arg {
    lp_expr *e;            /* INT / REAL / U64 */
    lp_buf *buf;           /* IN / OUT: NULL passes a null pointer */
    lp_expr *off;          /* IN / OUT: element offset into buf (int), or NULL for 0 */
} lp_arg;

typedef struct lp_call {
    lp_kernel_id k;
    lp_arg args[LP_MAX_ARGS];   /* lp_kernels[k].nargs of them */
    lp_var *result;        /* returns_double: the local (real) that receives it, or NULL */
} lp_call;

/* ---- statements ------------------------------------------------------------ */

typedef enum lp_stmt_kind { LP_S_FOR, LP_S_STORE, LP_S_LET, LP_S_SET, LP_S_CALL, LP_S_IF } lp_stmt_kind;
typedef enum lp_acc { LP_ASSIGN, LP_ACC_ADD, LP_ACC_MAX } lp_acc;

typedef struct lp_stmt lp_stmt;
struct lp_stmt {
    lp_stmt_kind kind;
    /* FOR: for (var = 0; var < extent; var++) body. `parallel`: iterations
     * write disjoint elements, so a backend may split them across threads. */
    lp_var *var;
    lp_expr *extent;
    bool parallel;
    kd_vec body;           /* lp_stmt*: FOR, IF */
    /* STORE: buf[index] acc value.  LET: declares var = value.  SET: var acc value. */
    lp_buf *buf;
    lp_expr *index, *value;
    lp_acc acc;
    lp_call *call;         /* CALL */
    lp_expr *cond;         /* IF: an int; see also if_buf */
    lp_buf *if_buf;        /* IF with cond NULL: "if the caller passed this buffer (not NULL)" */
};

/* ---- kernels, functions, program ------------------------------------------- */

typedef struct lp_kernel {
    int index;             /* position in its function: the time step of liveness */
    const char *what;      /* "dense: matmul + bias + relu -> [batch, 256]" */
    kd_loc loc;            /* the KDSL statement it came from */
    const char *layer;
    kd_vec body;           /* lp_stmt* */
} lp_kernel;

/* PREDICT_FOLDED: predict over the weights kd_bn_fold_values made, only with
 * embedded weights (static in the C text; predict_embedded calls it).
 * PREDICT_PREPARED: predict over what <model>_prepare makes of the weights
 * (the same folds, at run time; kd_codegen_options.prepare), in the C text. */
typedef enum lp_func_kind {
    LP_F_INIT, LP_F_PREDICT, LP_F_GRAD, LP_F_APPLY, LP_F_TRAIN_STEP, LP_F_PREDICT_FOLDED, LP_F_PREDICT_PREPARED,
    LP_F_COUNT
} lp_func_kind;

static inline bool lp_func_predicts(lp_func_kind k)
{
    return k == LP_F_PREDICT || k == LP_F_PREDICT_FOLDED || k == LP_F_PREDICT_PREPARED;
}

/* Only the C text has it (predict_embedded, prepare): the JIT, the FLOP
 * count and the IR dumps leave it out. */
static inline bool lp_func_c_only(lp_func_kind k) { return k == LP_F_PREDICT_FOLDED || k == LP_F_PREDICT_PREPARED; }

typedef struct lp_func {
    lp_func_kind kind;
    const char *name;      /* "predict": the C function is <model>_predict */
    kd_vec kernels;        /* lp_kernel* */
    kd_vec bufs;           /* lp_buf*: every buffer the kernels touch */
    kd_vec vars;           /* lp_var*: loop indices and locals */
    lp_buf *ret;           /* GRAD / TRAIN_STEP: the loss, a one-element buffer; returned */
    int64_t arena_bytes;   /* arena_plan.c: the high-water mark */
    int64_t live_bound;    /* arena_plan.c: max over kernels of the live bytes (a lower bound) */
} lp_func;

/* One entry of a buffer's layout table (model.h's <model>_params[] etc.). */
typedef struct lp_tensor_info {
    const char *name;      /* "dense/kernel", "dense/kernel/adam_m" */
    int var;               /* kd_var index */
    int64_t offset;        /* elements into params (weights, states) or opt_state (slots) */
    int64_t elems;
    int rank;
    int64_t shape[8];
    int kind;              /* 0 weight, 1 state, 2 slot */
    bool trainable;
    int64_t grad_offset;   /* elements into grads; -1 if none */
    int init_kind;         /* kd_init_kind */
    double init_a, init_b;
    int64_t init_ones_at, init_ones;   /* then ones there (kd_init.ones_at, .ones) */
} lp_tensor_info;

/* A model input, output or label. */
typedef struct lp_io {
    const char *name;
    int rank;              /* per sample */
    int64_t shape[8];      /* per sample */
    int64_t elems;         /* per sample */
    bool i32;              /* inputs: int32_t token ids (`input x: i32[...]`), else reals */
    int64_t rows;          /* i32 inputs: the Embedding table's rows a token must index
                            * (0: no bound); the host's data readers check it */
    const char *rows_layer;    /* that Embedding, for messages */
} lp_io;

/* A weight <model>_prepare packs for the GEMM (kdk_?gemm_pack_b): op(B)
 * K×N read from params' offset `from` (after the folds), stored at `to`
 * (size reals) in prepared; predict_prepared's matmul reads it there. */
typedef struct lp_pack {
    const char *name;      /* the variable's */
    int64_t from, to, size;
    int n, k, ldb, transb;
} lp_pack;

typedef struct lp_program {
    kd_arena *arena;       /* the compiler's memory for the program */
    const char *name;      /* "mlp": C prefix mlp_ */
    const char *upper;     /* "MLP": macro prefix */
    const char *source;    /* the .kdsl file's base name, for comments */
    lp_real_kind real;
    int max_batch;
    int ninputs, noutputs, nlabels;
    lp_io inputs[16], outputs[16], labels[1];
    kd_vec params;         /* lp_tensor_info*: weights and states, by offset */
    kd_vec slots;          /* lp_tensor_info*: optimizer slots, by offset */
    int64_t params_size, opt_size, grads_size;   /* reals */
    int64_t prepared_size;   /* reals of <model>_prepare's result: the params, then packed weights */
    kd_vec packs;            /* lp_pack*: the weights prepare packs, in order */
    int nvars;             /* the model's variables (kd_var index < nvars) */
    const kd_var *const *vars;   /* by index */
    int64_t *grad_offset;  /* by variable index: elements into grads, -1 if not trainable */
    uint64_t dropout_seed; /* IR_HYPER_SEED: the train block's seed */
    lp_func *funcs[LP_F_COUNT];   /* NULL when not generated */
    const double *embedded;       /* --embed-weights: params_size values, else NULL */
    struct kd_bn_fold **folds;    /* PREDICT_FOLDED / _PREPARED: what kd_bn_fold_values and prepare do to the weights */
    int nfolds;
    bool disjoint_arena;          /* kd_codegen_options.disjoint_arena */
    bool no_inplace;              /* kd_codegen_options.no_inplace */
    int arena_align;              /* bytes: where each arena buffer starts (kd_arena_align; 0: KD_ARENA_ALIGN) */
} lp_program;

/* ---- building (loop_ir.c) --------------------------------------------------
 * The constructors fold the trivial cases (x + 0, x * 1, constant arithmetic
 * on ints), so index arithmetic stays readable in every backend. */
lp_expr *lp_int(kd_arena *a, int64_t v);
lp_expr *lp_real(kd_arena *a, double v);
lp_expr *lp_var_ref(kd_arena *a, lp_var *v);
lp_expr *lp_param_ref(kd_arena *a, lp_param p);
lp_expr *lp_load(kd_arena *a, lp_buf *buf, lp_expr *index);
lp_expr *lp_un(kd_arena *a, lp_op op, lp_expr *x);
lp_expr *lp_bin(kd_arena *a, lp_op op, lp_expr *x, lp_expr *y);
lp_expr *lp_select(kd_arena *a, lp_expr *cond, lp_expr *x, lp_expr *y);
bool lp_is_int(const lp_expr *e, int64_t v);   /* an int constant equal to v */

lp_func *lp_func_new(kd_arena *a, lp_func_kind kind);
lp_var *lp_new_var(kd_arena *a, lp_func *f, lp_type type, const char *prefix);
lp_buf *lp_new_buf(kd_arena *a, lp_func *f, lp_space space, const char *name);
lp_kernel *lp_new_kernel(kd_arena *a, lp_func *f, const char *what, kd_loc loc, const char *layer);

lp_stmt *lp_for(kd_arena *a, lp_var *v, lp_expr *extent, bool parallel);  /* push into ->body */
lp_stmt *lp_store(kd_arena *a, lp_buf *buf, lp_expr *index, lp_expr *value, lp_acc acc);
lp_stmt *lp_let(kd_arena *a, lp_var *v, lp_expr *value);
lp_stmt *lp_set(kd_arena *a, lp_var *v, lp_expr *value, lp_acc acc);
lp_stmt *lp_call_stmt(kd_arena *a, lp_call *c);
lp_stmt *lp_if(kd_arena *a, lp_expr *cond, lp_buf *if_buf);

/* Walks every buffer reference (loads, stores, call pointers) under a kernel. */
typedef void (*lp_buf_visit)(void *ctx, lp_buf *b, bool write);
void lp_kernel_visit_bufs(const lp_kernel *k, lp_buf_visit fn, void *ctx);
void lp_expr_visit_bufs(const lp_expr *e, lp_buf_visit fn, void *ctx);

/* ---- dump (loop_ir.c): `kdslc ir --stage loops` ------------------------------ */
void kd_loops_dump(FILE *out, const lp_program *p);
void kd_loops_dump_func(FILE *out, const lp_program *p, const lp_func *f);

extern const char *const lp_op_names[LP_OP_COUNT];
extern const char *const lp_space_names[LP_SPACE_COUNT];
extern const char *const lp_param_names[LP_P_COUNT];
extern const char *const lp_func_names[LP_F_COUNT];

#endif
