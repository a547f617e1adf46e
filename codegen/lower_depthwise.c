/* lower_depthwise.c — the depthwise convolution and its two gradients as loop
 * nests (compiler/ops/depthwise.c has the semantics) where the runtime's
 * kernels would take their portable loops (kdk_dwconv_vectorized,
 * runtime/kernels.h: a depth multiplier above 1, channels in no whole
 * vectors): with the shapes as constants the JIT and the C compiler make
 * these several times faster than those loops. Each nest's outer
 * loop is parallel: its iterations write disjoint elements (an output row of
 * one image; a row of one input image; one tap of the kernel), and each
 * element is summed in one fixed order, so results do not depend on threads.
 *
 *   forward     y[b, oh, ow, c*M + m] += x[b, h, v, c] * w[i, j, c, m]
 *   data        dx[b, h, v, c] gathers dy * w over the taps that read it
 *   filter      dw[i, j, c, m] sums x * dy over the batch and the output */
#include "lower_internal.h"

#include "kernels.h"

typedef struct dwg {
    lower *L;
    kd_arena *a;
    const ir_shape *xs, *ys;
    int64_t H, W, C, M, CM, Ho, Wo, KH, KW, sh, sw, pt, pl, dh, dw;
} dwg;

static lp_expr *I(dwg *g, int64_t v) { return lp_int(g->a, v); }
static lp_expr *V(dwg *g, lp_var *v) { return lp_var_ref(g->a, v); }
static lp_expr *add(dwg *g, lp_expr *x, lp_expr *y) { return lp_bin(g->a, LP_ADD, x, y); }
static lp_expr *sub(dwg *g, lp_expr *x, lp_expr *y) { return lp_bin(g->a, LP_SUB, x, y); }
static lp_expr *mul(dwg *g, lp_expr *x, lp_expr *y) { return lp_bin(g->a, LP_MUL, x, y); }
static lp_expr *mad(dwg *g, lp_expr *x, int64_t k, lp_expr *y) { return add(g, mul(g, x, I(g, k)), y); }
static lp_expr *land(dwg *g, lp_expr *x, lp_expr *y) { return lp_bin(g->a, LP_AND, x, y); }

/* lo <= e < hi */
static lp_expr *in_range(dwg *g, lp_expr *e, int64_t hi)
{
    return land(g, lp_bin(g->a, LP_GE, e, I(g, 0)), lp_bin(g->a, LP_LT, e, I(g, hi)));
}

static lp_var *int_var(dwg *g, const char *name) { return lp_new_var(g->a, g->L->f, LP_INT, name); }

static lp_var *push_let(dwg *g, kd_vec *into, const char *name, lp_expr *value)
{
    lp_var *v = int_var(g, name);
    kd_vec_push(g->a, into, lp_let(g->a, v, value));
    return v;
}

/* Operand x's element at `index`: a load of its buffer, or the value of a
 * position-free leaf (a constant, a hyperparameter). */
static lp_expr *load(dwg *g, ir_node *x, lp_expr *index)
{
    lw_node *w = &g->L->n[x->id];
    if (w->buf) return lp_load(g->a, w->buf, index);
    if (w->cls == LW_LEAF_EXPR) return lw_scalar(g->L, x);
    lw_fail(g->L, "%%%d %s: read before it is computed", x->id, ir_ops[x->op]->name);
    return lp_real(g->a, 0);
}

/* for c < C, m < M: body(c*M + m, c); returns the innermost body and sets the channel index exprs. */
static kd_vec *channel_loops(dwg *g, kd_vec *into, lp_expr **k, lp_expr **c)
{
    lp_var *cv = int_var(g, "c");
    into = lw_push_for(g->a, into, cv, I(g, g->C), false);
    if (g->M == 1) {
        *k = *c = V(g, cv);
        return into;
    }
    lp_var *mv = int_var(g, "m");
    into = lw_push_for(g->a, into, mv, I(g, g->M), false);
    *c = V(g, cv);
    *k = mad(g, V(g, cv), g->M, V(g, mv));
    return into;
}

/* dst[base + k] = 0 for k < len */
static void zero(dwg *g, kd_vec *into, lp_buf *dst, lp_expr *base, int64_t len)
{
    lp_var *k = int_var(g, "k");
    kd_vec *body = lw_push_for(g->a, into, k, I(g, len), false);
    kd_vec_push(g->a, body, lp_store(g->a, dst, add(g, base, V(g, k)), lp_real(g->a, 0), LP_ASSIGN));
}

static void forward(dwg *g, ir_node *n, lp_buf *dst)
{
    ir_node *x = n->in[0], *w = n->in[1];
    lp_var *t = int_var(g, "bo");   /* b * Ho + oh (not "t": arena buffers are t<id>) */
    kd_vec *body = lw_push_for(g->a, &g->L->k->body, t, mul(g, lw_dim(g->L, g->ys, 0), I(g, g->Ho)), true);
    lp_var *b = push_let(g, body, "b", lp_bin(g->a, LP_DIV, V(g, t), I(g, g->Ho)));
    lp_var *oh = push_let(g, body, "oh", sub(g, V(g, t), mul(g, V(g, b), I(g, g->Ho))));
    lp_var *ow = int_var(g, "ow");
    body = lw_push_for(g->a, body, ow, I(g, g->Wo), false);
    lp_expr *ybase = mul(g, mad(g, V(g, t), g->Wo, V(g, ow)), I(g, g->CM));
    zero(g, body, dst, ybase, g->CM);
    lp_var *i = int_var(g, "i"), *j = int_var(g, "j");
    kd_vec *bi = lw_push_for(g->a, body, i, I(g, g->KH), false);
    lp_var *h = push_let(g, bi, "h", add(g, mul(g, V(g, oh), I(g, g->sh)),
                                          sub(g, mul(g, V(g, i), I(g, g->dh)), I(g, g->pt))));
    bi = lw_push_if(g->a, bi, in_range(g, V(g, h), g->H));
    kd_vec *bj = lw_push_for(g->a, bi, j, I(g, g->KW), false);
    lp_var *v = push_let(g, bj, "v", add(g, mul(g, V(g, ow), I(g, g->sw)),
                                          sub(g, mul(g, V(g, j), I(g, g->dw)), I(g, g->pl))));
    bj = lw_push_if(g->a, bj, in_range(g, V(g, v), g->W));
    lp_var *xb = push_let(g, bj, "xb", mul(g, mad(g, mad(g, V(g, b), g->H, V(g, h)), g->W, V(g, v)), I(g, g->C)));
    lp_var *wb = push_let(g, bj, "wb", mul(g, mad(g, V(g, i), g->KW, V(g, j)), I(g, g->CM)));
    lp_expr *k, *c;
    kd_vec *inner = channel_loops(g, bj, &k, &c);
    lp_expr *prod = lp_bin(g->a, LP_MUL, load(g, x, add(g, V(g, xb), c)), load(g, w, add(g, V(g, wb), k)));
    kd_vec_push(g->a, inner, lp_store(g->a, dst, add(g, ybase, k), prod, LP_ACC_ADD));
}

/* (dy, w) -> dx */
static void data(dwg *g, ir_node *n, lp_buf *dst)
{
    ir_node *dy = n->in[0], *w = n->in[1];
    lp_var *t = int_var(g, "bh");   /* b * H + h */
    kd_vec *body = lw_push_for(g->a, &g->L->k->body, t, mul(g, lw_dim(g->L, g->xs, 0), I(g, g->H)), true);
    lp_var *b = push_let(g, body, "b", lp_bin(g->a, LP_DIV, V(g, t), I(g, g->H)));
    lp_var *h = push_let(g, body, "h", sub(g, V(g, t), mul(g, V(g, b), I(g, g->H))));
    lp_var *v = int_var(g, "iw");
    body = lw_push_for(g->a, body, v, I(g, g->W), false);
    lp_expr *xbase = mul(g, mad(g, V(g, t), g->W, V(g, v)), I(g, g->C));
    zero(g, body, dst, xbase, g->C);
    lp_var *i = int_var(g, "i"), *j = int_var(g, "j");
    kd_vec *bi = lw_push_for(g->a, body, i, I(g, g->KH), false);
    /* the output row oh with oh * sh - pt + i * dh = h, if there is one */
    lp_var *ohs = push_let(g, bi, "ohs", sub(g, add(g, V(g, h), I(g, g->pt)), mul(g, V(g, i), I(g, g->dh))));
    lp_var *oh = push_let(g, bi, "oh", lp_bin(g->a, LP_DIV, V(g, ohs), I(g, g->sh)));
    lp_expr *hit = land(g, lp_bin(g->a, LP_GE, V(g, ohs), I(g, 0)),
                       land(g, lp_bin(g->a, LP_EQ, mul(g, V(g, oh), I(g, g->sh)), V(g, ohs)),
                           lp_bin(g->a, LP_LT, V(g, oh), I(g, g->Ho))));
    if (g->sh == 1) hit = in_range(g, V(g, oh), g->Ho);
    bi = lw_push_if(g->a, bi, hit);
    kd_vec *bj = lw_push_for(g->a, bi, j, I(g, g->KW), false);
    lp_var *ows = push_let(g, bj, "ows", sub(g, add(g, V(g, v), I(g, g->pl)), mul(g, V(g, j), I(g, g->dw))));
    lp_var *ow = push_let(g, bj, "ow", lp_bin(g->a, LP_DIV, V(g, ows), I(g, g->sw)));
    hit = land(g, lp_bin(g->a, LP_GE, V(g, ows), I(g, 0)),
              land(g, lp_bin(g->a, LP_EQ, mul(g, V(g, ow), I(g, g->sw)), V(g, ows)),
                  lp_bin(g->a, LP_LT, V(g, ow), I(g, g->Wo))));
    if (g->sw == 1) hit = in_range(g, V(g, ow), g->Wo);
    bj = lw_push_if(g->a, bj, hit);
    lp_var *yb = push_let(g, bj, "yb", mul(g, mad(g, mad(g, V(g, b), g->Ho, V(g, oh)), g->Wo, V(g, ow)), I(g, g->CM)));
    lp_var *wb = push_let(g, bj, "wb", mul(g, mad(g, V(g, i), g->KW, V(g, j)), I(g, g->CM)));
    lp_expr *k, *c;
    kd_vec *inner = channel_loops(g, bj, &k, &c);
    lp_expr *prod = lp_bin(g->a, LP_MUL, load(g, dy, add(g, V(g, yb), k)), load(g, w, add(g, V(g, wb), k)));
    kd_vec_push(g->a, inner, lp_store(g->a, dst, add(g, xbase, c), prod, LP_ACC_ADD));
}

/* (x, dy) -> dw */
static void filter(dwg *g, ir_node *n, lp_buf *dst)
{
    ir_node *x = n->in[0], *dy = n->in[1];
    lp_var *t = int_var(g, "ij");   /* i * KW + j */
    kd_vec *body = lw_push_for(g->a, &g->L->k->body, t, I(g, g->KH * g->KW), true);
    lp_var *i = push_let(g, body, "i", lp_bin(g->a, LP_DIV, V(g, t), I(g, g->KW)));
    lp_var *j = push_let(g, body, "j", sub(g, V(g, t), mul(g, V(g, i), I(g, g->KW))));
    lp_expr *wbase = mul(g, V(g, t), I(g, g->CM));
    zero(g, body, dst, wbase, g->CM);
    lp_var *b = int_var(g, "b"), *oh = int_var(g, "oh"), *ow = int_var(g, "ow");
    body = lw_push_for(g->a, body, b, lw_dim(g->L, g->xs, 0), false);
    body = lw_push_for(g->a, body, oh, I(g, g->Ho), false);
    lp_var *h = push_let(g, body, "h", add(g, mul(g, V(g, oh), I(g, g->sh)),
                                            sub(g, mul(g, V(g, i), I(g, g->dh)), I(g, g->pt))));
    body = lw_push_if(g->a, body, in_range(g, V(g, h), g->H));
    body = lw_push_for(g->a, body, ow, I(g, g->Wo), false);
    lp_var *v = push_let(g, body, "v", add(g, mul(g, V(g, ow), I(g, g->sw)),
                                            sub(g, mul(g, V(g, j), I(g, g->dw)), I(g, g->pl))));
    body = lw_push_if(g->a, body, in_range(g, V(g, v), g->W));
    lp_var *xb = push_let(g, body, "xb", mul(g, mad(g, mad(g, V(g, b), g->H, V(g, h)), g->W, V(g, v)), I(g, g->C)));
    lp_var *yb = push_let(g, body, "yb", mul(g, mad(g, mad(g, V(g, b), g->Ho, V(g, oh)), g->Wo, V(g, ow)), I(g, g->CM)));
    lp_expr *k, *c;
    kd_vec *inner = channel_loops(g, body, &k, &c);
    lp_expr *prod = lp_bin(g->a, LP_MUL, load(g, x, add(g, V(g, xb), c)), load(g, dy, add(g, V(g, yb), k)));
    kd_vec_push(g->a, inner, lp_store(g->a, dst, add(g, wbase, k), prod, LP_ACC_ADD));
}

bool lw_depthwise_as_loops(const ir_node *n)
{
    if (n->op != IR_DEPTHWISE_CONV2D && n->op != IR_DEPTHWISE_CONV2D_BWD_DATA &&
        n->op != IR_DEPTHWISE_CONV2D_BWD_FILTER)
        return false;
    const ir_shape *ws = n->op == IR_DEPTHWISE_CONV2D_BWD_FILTER ? &n->shape : &n->in[1]->shape;
    return !kdk_dwconv_vectorized(ws->dims[2], ws->dims[3]);
}

bool lw_depthwise_kernel(lower *L, ir_node *n, lp_buf *dst)
{
    /* the forward roles' shapes */
    const ir_shape *xs = n->op == IR_DEPTHWISE_CONV2D_BWD_DATA ? &n->shape : &n->in[0]->shape;
    const ir_shape *ws = n->op == IR_DEPTHWISE_CONV2D_BWD_FILTER ? &n->shape : &n->in[1]->shape;
    const ir_shape *ys = n->op == IR_DEPTHWISE_CONV2D ? &n->shape : n->op == IR_DEPTHWISE_CONV2D_BWD_DATA
                                                                        ? &n->in[0]->shape : &n->in[1]->shape;
    const ir_attrs *at = &n->attr;
    dwg g = {.L = L, .a = L->a, .xs = xs, .ys = ys,
             .H = xs->dims[1], .W = xs->dims[2], .C = xs->dims[3], .M = ws->dims[3], .CM = ys->dims[3],
             .Ho = ys->dims[1], .Wo = ys->dims[2], .KH = ws->dims[0], .KW = ws->dims[1],
             .sh = at->stride[0], .sw = at->stride[1], .pt = at->pad_lo[0], .pl = at->pad_lo[1],
             .dh = at->dilation[0] > 1 ? at->dilation[0] : 1, .dw = at->dilation[1] > 1 ? at->dilation[1] : 1};
    switch (n->op) {
    case IR_DEPTHWISE_CONV2D: forward(&g, n, dst); break;
    case IR_DEPTHWISE_CONV2D_BWD_DATA: data(&g, n, dst); break;
    case IR_DEPTHWISE_CONV2D_BWD_FILTER: filter(&g, n, dst); break;
    default: return lw_fail(L, "%s: not a depthwise op", ir_ops[n->op]->name);
    }
    return !L->failed;
}
