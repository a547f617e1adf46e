/* lower_gather.c — the gather (Embedding) and its scatter-add gradient as
 * loop nests (compiler/ops/gather.c has the semantics), so both backends and
 * the freestanding path get them with no runtime kernel. A token outside the
 * table never becomes an address: the row read is then row 0, and the value
 * written zero.
 *
 *   gather       for i < count: ok = idx[i] in [0, V); r = ok ? idx[i] : 0; for d < D: y[i, d] = ok ? table[r, d] : 0
 *   gather_grad  dtable = 0; for i < count (in order): if idx[i] in [0, V): dtable[idx[i], :] += dy[i, :]
 *
 * The forward loop is parallel (each i writes its own row); the scatter is
 * not (two tokens may name one row), so its sums run in one fixed order and
 * the result does not depend on threads. */
#include "lower_internal.h"

typedef struct gg {
    lower *L;
    kd_arena *a;
    int64_t V, D;
} gg;

static lp_expr *I(gg *g, int64_t v) { return lp_int(g->a, v); }
static lp_expr *V(gg *g, lp_var *v) { return lp_var_ref(g->a, v); }
static lp_expr *bin(gg *g, lp_op op, lp_expr *x, lp_expr *y) { return lp_bin(g->a, op, x, y); }

static lp_var *push_let(gg *g, kd_vec *into, const char *name, lp_expr *value)
{
    lp_var *v = lp_new_var(g->a, g->L->f, LP_INT, name);
    kd_vec_push(g->a, into, lp_let(g->a, v, value));
    return v;
}

/* 0 <= tok < V */
static lp_expr *in_table(gg *g, lp_expr *tok)
{
    return bin(g, LP_AND, bin(g, LP_GE, tok, I(g, 0)), bin(g, LP_LT, tok, I(g, g->V)));
}

/* Operand x's element at `index`: a load of its buffer, or the value of a
 * position-free leaf (a constant). */
static lp_expr *load(gg *g, ir_node *x, lp_expr *index)
{
    lw_node *w = &g->L->n[x->id];
    if (w->buf) return lp_load(g->a, w->buf, index);
    if (w->cls == LW_LEAF_EXPR) return lw_scalar(g->L, x);
    lw_fail(g->L, "%%%d %s: read before it is computed", x->id, ir_ops[x->op]->name);
    return lp_real(g->a, 0);
}

/* The token ids: an i32 input's buffer, read as ints. */
static lp_buf *index_buf(gg *g, ir_node *idx)
{
    lp_buf *b = g->L->n[idx->id].buf;
    if (!b || b->elem != LP_ELEM_I32) lw_fail(g->L, "%%%d: the indices of a gather are not an i32 buffer", idx->id);
    return b;
}

static void forward(gg *g, ir_node *n, lp_buf *dst)
{
    ir_node *table = n->in[0], *idx = n->in[1];
    lp_buf *ib = index_buf(g, idx);
    if (!ib) return;
    lp_var *i = lp_new_var(g->a, g->L->f, LP_INT, "i");
    kd_vec *body = lw_push_for(g->a, &g->L->k->body, i, lw_count(g->L, &idx->shape), true);
    lp_var *tok = push_let(g, body, "tok", lp_load(g->a, ib, V(g, i)));
    lp_var *ok = push_let(g, body, "ok", in_table(g, V(g, tok)));
    lp_var *r = push_let(g, body, "r", lp_select(g->a, V(g, ok), V(g, tok), I(g, 0)));
    lp_var *d = lp_new_var(g->a, g->L->f, LP_INT, "d");
    kd_vec *inner = lw_push_for(g->a, body, d, I(g, g->D), false);
    lp_expr *v = load(g, table, bin(g, LP_ADD, bin(g, LP_MUL, V(g, r), I(g, g->D)), V(g, d)));
    lp_expr *y = lp_select(g->a, V(g, ok), v, lp_real(g->a, 0));
    kd_vec_push(g->a, inner, lp_store(g->a, dst, bin(g, LP_ADD, bin(g, LP_MUL, V(g, i), I(g, g->D)), V(g, d)), y,
                                      LP_ASSIGN));
}

static void scatter(gg *g, ir_node *n, lp_buf *dst)
{
    ir_node *idx = n->in[0], *dy = n->in[1];
    lp_buf *ib = index_buf(g, idx);
    if (!ib) return;
    lp_var *k = lp_new_var(g->a, g->L->f, LP_INT, "k");
    kd_vec *zero = lw_push_for(g->a, &g->L->k->body, k, I(g, g->V * g->D), true);
    kd_vec_push(g->a, zero, lp_store(g->a, dst, V(g, k), lp_real(g->a, 0), LP_ASSIGN));
    lp_var *i = lp_new_var(g->a, g->L->f, LP_INT, "i");
    kd_vec *body = lw_push_for(g->a, &g->L->k->body, i, lw_count(g->L, &idx->shape), false);
    lp_var *tok = push_let(g, body, "tok", lp_load(g->a, ib, V(g, i)));
    lp_stmt *in = lp_if(g->a, in_table(g, V(g, tok)), NULL);
    kd_vec_push(g->a, body, in);
    lp_var *d = lp_new_var(g->a, g->L->f, LP_INT, "d");
    kd_vec *inner = lw_push_for(g->a, &in->body, d, I(g, g->D), false);
    lp_expr *v = load(g, dy, bin(g, LP_ADD, bin(g, LP_MUL, V(g, i), I(g, g->D)), V(g, d)));
    kd_vec_push(g->a, inner, lp_store(g->a, dst, bin(g, LP_ADD, bin(g, LP_MUL, V(g, tok), I(g, g->D)), V(g, d)), v,
                                      LP_ACC_ADD));
}

bool lw_is_gather_op(ir_op op) { return op == IR_GATHER || op == IR_GATHER_GRAD; }

bool lw_gather_kernel(lower *L, ir_node *n, lp_buf *dst)
{
    const ir_shape *table = n->op == IR_GATHER ? &n->in[0]->shape : &n->shape;
    gg g = {.L = L, .a = L->a, .V = table->dims[0], .D = table->dims[1]};
    switch (n->op) {
    case IR_GATHER: forward(&g, n, dst); break;
    case IR_GATHER_GRAD: scatter(&g, n, dst); break;
    default: return lw_fail(L, "%s: not a gather", ir_ops[n->op]->name);
    }
    return !L->failed;
}
