/* lower_direct.c — with --no-workspace (the firmware build), the forward
 * matrix product, convolution and pooling as loop nests in model.c with
 * every shape a constant, instead of calls into the runtime's kernels.
 *
 * Why: a call takes its activation and its workspace as run-time values, so a
 * linker that drops unused sections (no LTO) keeps every activation's
 * epilogue (and expf, tanhf with them), the packed GEMM, the GEMV and the
 * im2col packers; and the kernels' batch-1 path without a workspace adds to
 * the output in memory at every multiply-add. Here the activation is an
 * expression of the loop IR (a ReLU model calls no libm), and outputs are
 * computed four at a time, each sum in a local (a register) over the whole
 * reduction, so a Cortex-M4 runs about 3 instructions per multiply-add
 * instead of eight (emit_c.c's kd_mac makes each one a vfma). Each sum runs
 * in the order k = 0, 1, ... and the bias is added last, as the interpreter
 * does.
 *
 *   dense   y[r, n] = act(sum_k x[r, k] w[k, n] + bias[n])
 *   conv    y[b, oh, ow, f] = act(sum_{i, j, c} x[b, oh*sh + i - pt, ow*sw + j - pl, c] w[i, j, c, f] + bias[f])
 *   pool    y[b, oh, ow, c] = max or mean of x over the window (windows inside the input only)
 *
 * The outer loop of each nest is parallel: its iterations write disjoint
 * rows. Nothing else changes: the same graph, the same buffers. */
#include "lower_internal.h"

typedef struct direct {
    lower *L;
    kd_arena *a;
} direct;

static lp_expr *I(direct *g, int64_t v) { return lp_int(g->a, v); }
static lp_expr *V(direct *g, lp_var *v) { return lp_var_ref(g->a, v); }
static lp_expr *add(direct *g, lp_expr *x, lp_expr *y) { return lp_bin(g->a, LP_ADD, x, y); }
static lp_expr *sub(direct *g, lp_expr *x, lp_expr *y) { return lp_bin(g->a, LP_SUB, x, y); }
static lp_expr *mul(direct *g, lp_expr *x, lp_expr *y) { return lp_bin(g->a, LP_MUL, x, y); }
static lp_expr *muli(direct *g, lp_expr *x, int64_t k) { return mul(g, x, I(g, k)); }
static lp_expr *mad(direct *g, lp_expr *x, int64_t k, lp_expr *y) { return add(g, muli(g, x, k), y); }

static lp_var *int_var(direct *g, const char *name) { return lp_new_var(g->a, g->L->f, LP_INT, name); }

static lp_var *push_let(direct *g, kd_vec *into, lp_type type, const char *name, lp_expr *value)
{
    lp_var *v = lp_new_var(g->a, g->L->f, type, name);
    kd_vec_push(g->a, into, lp_let(g->a, v, value));
    return v;
}

static lp_buf *buf_of(direct *g, ir_node *x)
{
    lw_node *w = &g->L->n[x->id];
    if (!w->buf) lw_fail(g->L, "%%%d %s: a kernel needs it in memory", x->id, ir_ops[x->op]->name);
    return w->buf;
}

/* 0 <= e < hi */
static lp_expr *in_range(direct *g, lp_expr *e, int64_t hi)
{
    return lp_bin(g->a, LP_AND, lp_bin(g->a, LP_GE, e, I(g, 0)), lp_bin(g->a, LP_LT, e, I(g, hi)));
}

/* One operand of a reduction: buf[base + k * stride]. */
typedef struct strided {
    lp_buf *buf;
    lp_expr *base;
    int64_t stride;
} strided;

static lp_expr *at(direct *g, const strided *s, lp_expr *k, int64_t plus)
{
    return lp_load(g->a, s->buf, add(g, add(g, s->base, muli(g, k, s->stride)), I(g, plus)));
}

/* Outputs are computed OUT_BLOCK at a time, each in its own local: one load
 * of an input element serves OUT_BLOCK multiply-adds, whose weights are
 * neighbours in memory (Keras' [K, N] kernel, the filters' last axis), so
 * a multiply-add costs a weight load and the multiply-add itself. Four
 * sums and their operands fit a Cortex-M4's 32 single-precision registers
 * with room for the compiler. Reductions of at most DOT_FULL terms are
 * written out term by term (a 3x3 window's row), longer ones are a loop. */
#define OUT_BLOCK 4
#define DOT_FULL 4

/* acc[j] += sum_{k < n} x[k] * w[k, j] for j < nb, in the order of k:
 * w[k, j] is w.buf[w.base + k * w.stride + j]. With `declare` the sums
 * start as the first term (a multiply, not 0 + a product: that addition
 * stays, as 0 + -0 is not -0). */
static void dot(direct *g, kd_vec *into, lp_var **acc, int nb, int64_t n, const strided *x, const strided *w,
                bool declare)
{
    kd_arena *a = g->a;
    for (int64_t t = 0; t < n; t++) {
        lp_expr *kt = I(g, t);
        lp_var *k = NULL;
        kd_vec *body = into;
        if (t > 0 && n > DOT_FULL) {   /* terms 1 .. n-1 as a loop */
            k = int_var(g, "k");
            body = lw_push_for(g->a, into, k, I(g, n - 1), false);
            kt = add(g, V(g, k), I(g, 1));
        }
        lp_var *xk = push_let(g, body, LP_REAL, "xk", at(g, x, kt, 0));
        for (int j = 0; j < nb; j++) {
            lp_expr *term = lp_bin(a, LP_MUL, V(g, xk), at(g, w, kt, j));
            if (declare && t == 0) acc[j] = push_let(g, body, LP_REAL, "acc", term);
            else kd_vec_push(a, body, lp_set(a, acc[j], term, LP_ACC_ADD));
        }
        if (k) break;
    }
}

/* nb sums, zero */
static void zero_sums(direct *g, kd_vec *into, lp_var **acc, int nb)
{
    for (int j = 0; j < nb; j++) acc[j] = push_let(g, into, LP_REAL, "acc", lp_real(g->a, 0));
}

/* dst[index + j] = act(acc[j] + bias[f + j]) for j < nb: the fused op's epilogue. */
static void epilogue(direct *g, kd_vec *into, ir_node *n, lp_var *const *acc, int nb, lp_expr *f, lp_buf *dst,
                     lp_expr *index)
{
    bool fused = n->op == IR_FUSED_MATMUL || n->op == IR_FUSED_CONV2D;
    for (int j = 0; j < nb; j++) {
        lp_expr *v = V(g, acc[j]);
        if (n->nin == 3) v = lp_bin(g->a, LP_ADD, v, lp_load(g->a, buf_of(g, n->in[2]), add(g, f, I(g, j))));
        if (fused && n->attr.act != IR_ACT_NONE)
            v = lw_act_expr(g->a, n->attr.act, v, lp_real(g->a, ir_acts[n->attr.act].def));
        kd_vec_push(g->a, into, lp_store(g->a, dst, add(g, index, I(g, j)), v, LP_ASSIGN));
    }
}

/* The output loop over N in blocks: emit(o0, nb) for o0 = 0, OUT_BLOCK, ...
 * (a loop), then once for the last N % OUT_BLOCK outputs. */
typedef void (*block_fn)(direct *g, kd_vec *into, void *ctx, lp_expr *o0, int nb);

/* A reduction of fewer than OUT_BLOCK terms (a Dense layer on one input)
 * saves fewer loads by blocking than its written-out epilogues cost in
 * code: one output at a time. */
static void output_blocks(direct *g, kd_vec *into, int64_t N, int64_t terms, const char *name, block_fn emit,
                          void *ctx)
{
    int64_t block = terms >= OUT_BLOCK ? OUT_BLOCK : 1;
    if (N >= block) {
        lp_var *o = int_var(g, name);
        kd_vec *body = lw_push_for(g->a, into, o, I(g, N / block), false);
        emit(g, body, ctx, muli(g, V(g, o), block), (int)block);
    }
    if (N % block) emit(g, into, ctx, I(g, N / block * block), (int)(N % block));
}

typedef struct dense_ctx {
    ir_node *n;
    lp_buf *dst;
    lp_var *r;
    int64_t K, N;
} dense_ctx;

static void dense_block(direct *g, kd_vec *into, void *ctx, lp_expr *o0, int nb)
{
    dense_ctx *c = ctx;
    lp_var *acc[OUT_BLOCK];
    strided x = {buf_of(g, c->n->in[0]), muli(g, V(g, c->r), c->K), 1};
    strided w = {buf_of(g, c->n->in[1]), o0, c->N};
    dot(g, into, acc, nb, c->K, &x, &w, true);
    epilogue(g, into, c->n, acc, nb, o0, c->dst, mad(g, V(g, c->r), c->N, o0));
}

/* x [rows, K] times w [K, N] (+ bias, act) -> dst [rows, N] */
static void dense(direct *g, ir_node *n, lp_buf *dst)
{
    lower *L = g->L;
    const ir_shape *xs = &n->in[0]->shape;
    dense_ctx c = {.n = n, .dst = dst, .K = xs->dims[xs->rank - 1],
                   .N = n->in[1]->shape.dims[n->in[1]->shape.rank - 1]};
    lp_expr *rows = I(g, 1);
    for (int d = 0; d < xs->rank - 1; d++) rows = mul(g, rows, lw_dim(L, xs, d));
    c.r = int_var(g, "r");
    kd_vec *body = lw_push_for(g->a, &L->k->body, c.r, rows, true);
    output_blocks(g, body, c.N, c.K, "n", dense_block, &c);
}

typedef struct window {
    int64_t H, W, C, Ho, Wo, KH, KW, sh, sw, pt, pl;
} window;

static window window_of(const ir_node *n, const ir_shape *xs, int64_t kh, int64_t kw)
{
    return (window){.H = xs->dims[1], .W = xs->dims[2], .C = xs->dims[3], .Ho = n->shape.dims[1],
                    .Wo = n->shape.dims[2], .KH = kh, .KW = kw, .sh = n->attr.stride[0], .sw = n->attr.stride[1],
                    .pt = n->attr.pad_lo[0], .pl = n->attr.pad_lo[1]};
}

/* Every tap of every window inside the input: no bounds to test. */
static bool unpadded(const window *w)
{
    return w->pt == 0 && w->pl == 0 && (w->Ho - 1) * w->sh + w->KH <= w->H && (w->Wo - 1) * w->sw + w->KW <= w->W;
}

/* for bo < batch * Ho (parallel) { b, oh; for ow < Wo { body } }: returns the body. */
static kd_vec *output_pixels(direct *g, const ir_shape *ys, const window *w, lp_var **bo, lp_var **b, lp_var **oh,
                             lp_var **ow)
{
    *bo = int_var(g, "bo");   /* b * Ho + oh (not "t": arena buffers are t<id>) */
    kd_vec *body = lw_push_for(g->a, &g->L->k->body, *bo, mul(g, lw_dim(g->L, ys, 0), I(g, w->Ho)), true);
    *b = push_let(g, body, LP_INT, "b", lp_bin(g->a, LP_DIV, V(g, *bo), I(g, w->Ho)));
    *oh = push_let(g, body, LP_INT, "oh", sub(g, V(g, *bo), muli(g, V(g, *b), w->Ho)));
    *ow = int_var(g, "ow");
    return lw_push_for(g->a, body, *ow, I(g, w->Wo), false);
}

typedef struct conv_ctx {
    ir_node *n;
    lp_buf *dst, *x, *w;
    window win;
    int64_t F;
    lp_var *bo, *oh, *ow, *x0;
} conv_ctx;

static void conv_block(direct *g, kd_vec *into, void *ctx, lp_expr *f, int nb)
{
    conv_ctx *c = ctx;
    const window *w = &c->win;
    int64_t F = c->F, run = w->KW * w->C;   /* one window row: contiguous in x, stride F in w */
    lp_var *acc[OUT_BLOCK];
    if (unpadded(w) && run <= DOT_FULL) {
        /* short rows: the whole window written out */
        for (int64_t i = 0; i < w->KH; i++) {
            strided xr = {c->x, add(g, V(g, c->x0), I(g, i * w->W * w->C)), 1};
            strided wr = {c->w, add(g, f, I(g, i * run * F)), F};
            dot(g, into, acc, nb, run, &xr, &wr, i == 0);
        }
    } else if (unpadded(w)) {
        zero_sums(g, into, acc, nb);
        lp_var *i = int_var(g, "i");
        kd_vec *bi = lw_push_for(g->a, into, i, I(g, w->KH), false);
        strided xr = {c->x, add(g, V(g, c->x0), muli(g, V(g, i), w->W * w->C)), 1};
        strided wr = {c->w, add(g, f, muli(g, V(g, i), run * F)), F};
        dot(g, bi, acc, nb, run, &xr, &wr, false);
    } else {
        zero_sums(g, into, acc, nb);
        /* taps outside the input read zeros: test the row and the column */
        lp_var *i = int_var(g, "i"), *j = int_var(g, "j");
        kd_vec *bi = lw_push_for(g->a, into, i, I(g, w->KH), false);
        bi = lw_push_if(g->a, bi, in_range(g, add(g, sub(g, muli(g, V(g, c->oh), w->sh), I(g, w->pt)), V(g, i)), w->H));
        kd_vec *bj = lw_push_for(g->a, bi, j, I(g, w->KW), false);
        bj = lw_push_if(g->a, bj, in_range(g, add(g, sub(g, muli(g, V(g, c->ow), w->sw), I(g, w->pl)), V(g, j)), w->W));
        strided xr = {c->x, add(g, V(g, c->x0), muli(g, mad(g, V(g, i), w->W, V(g, j)), w->C)), 1};
        strided wr = {c->w, add(g, f, muli(g, mad(g, V(g, i), w->KW, V(g, j)), w->C * F)), F};
        dot(g, bj, acc, nb, w->C, &xr, &wr, false);
    }
    epilogue(g, into, c->n, acc, nb, f, c->dst, mad(g, mad(g, V(g, c->bo), w->Wo, V(g, c->ow)), F, f));
}

/* x [batch, H, W, C] conv w [KH, KW, C, F] (+ bias, act) -> dst [batch, Ho, Wo, F] */
static void conv(direct *g, ir_node *n, lp_buf *dst)
{
    const ir_shape *ws = &n->in[1]->shape;
    conv_ctx c = {.n = n, .dst = dst, .x = buf_of(g, n->in[0]), .w = buf_of(g, n->in[1]),
                  .win = window_of(n, &n->in[0]->shape, ws->dims[0], ws->dims[1]), .F = ws->dims[3]};
    const window *w = &c.win;
    lp_var *b;
    kd_vec *body = output_pixels(g, &n->shape, w, &c.bo, &b, &c.oh, &c.ow);
    /* x's element offset of (b, oh*sh - pt, ow*sw - pl, 0) */
    c.x0 = push_let(g, body, LP_INT, "x0",
                    muli(g, add(g, muli(g, sub(g, add(g, muli(g, V(g, b), w->H), muli(g, V(g, c.oh), w->sh)),
                                                I(g, w->pt)), w->W),
                                sub(g, muli(g, V(g, c.ow), w->sw), I(g, w->pl))), w->C));
    output_blocks(g, body, c.F, w->KH * w->KW * w->C, "f", conv_block, &c);
}

/* Max or average pooling over windows inside the input (unpadded). */
static void pool(direct *g, ir_node *n, lp_buf *dst)
{
    window w = window_of(n, &n->in[0]->shape, n->attr.window[0], n->attr.window[1]);
    bool max = n->op == IR_MAXPOOL2D;
    lp_var *bo, *bv, *oh, *ow;
    kd_vec *body = output_pixels(g, &n->shape, &w, &bo, &bv, &oh, &ow);
    lp_expr *b = V(g, bv);
    lp_var *x0 = push_let(g, body, LP_INT, "x0",
                          muli(g, add(g, muli(g, add(g, muli(g, b, w.H), muli(g, V(g, oh), w.sh)), w.W),
                                      muli(g, V(g, ow), w.sw)), w.C));
    lp_var *c = int_var(g, "c");
    body = lw_push_for(g->a, body, c, I(g, w.C), false);
    lp_buf *xb = buf_of(g, n->in[0]);
    lp_expr *first = lp_load(g->a, xb, add(g, V(g, x0), V(g, c)));
    lp_var *acc = push_let(g, body, LP_REAL, "acc", first);
    for (int64_t i = 0; i < w.KH; i++)
        for (int64_t j = 0; j < w.KW; j++) {
            if (i == 0 && j == 0) continue;
            lp_expr *v = lp_load(g->a, xb, add(g, add(g, V(g, x0), I(g, (i * w.W + j) * w.C)), V(g, c)));
            kd_vec_push(g->a, body, lp_set(g->a, acc, v, max ? LP_ACC_MAX : LP_ACC_ADD));
        }
    lp_expr *v = V(g, acc);
    if (!max) v = lp_bin(g->a, LP_DIV, v, lp_real(g->a, (double)(w.KH * w.KW)));
    kd_vec_push(g->a, body, lp_store(g->a, dst, add(g, muli(g, mad(g, V(g, bo), w.Wo, V(g, ow)), w.C), V(g, c)), v,
                                     LP_ASSIGN));
}

bool lw_is_direct_op(const lower *L, const ir_node *n)
{
    if (!L->o || !L->o->no_workspace) return false;
    switch (n->op) {
    case IR_MATMUL:
    case IR_FUSED_MATMUL: {
        const ir_shape *ws = &n->in[1]->shape;
        return !n->attr.trans_a && !n->attr.trans_b && ws->rank == 2 && ws->dims[0] != IR_BATCH;
    }
    case IR_CONV2D:
    case IR_FUSED_CONV2D: return true;
    case IR_MAXPOOL2D:
    case IR_AVGPOOL2D: {
        window w = window_of(n, &n->in[0]->shape, n->attr.window[0], n->attr.window[1]);
        return unpadded(&w);
    }
    default: return false;
    }
}

bool lw_direct_kernel(lower *L, ir_node *n, lp_buf *dst)
{
    direct g = {L, L->a};
    switch (n->op) {
    case IR_MATMUL:
    case IR_FUSED_MATMUL: dense(&g, n, dst); break;
    case IR_CONV2D:
    case IR_FUSED_CONV2D: conv(&g, n, dst); break;
    case IR_MAXPOOL2D:
    case IR_AVGPOOL2D: pool(&g, n, dst); break;
    default: return lw_fail(L, "%s: no direct loops for it", ir_ops[n->op]->name);
    }
    return !L->failed;
}
