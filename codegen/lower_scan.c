/* lower_scan.c — a scan (compiler/ops/scan.c) as one loop over time whose
 * body is the cell's graph, lowered once (lw_lower_body): the size of the
 * code does not depend on the number of steps.
 *
 *   carry_k = initial carry k                      (arena buffers, the step's arguments)
 *   for step < T:  t = step (T-1-step when reverse)
 *       x_s = sequence s at time t                 ([N, ...] arena buffers)
 *       the body's statements                      (its temporaries live in this kernel)
 *       result[:, t] = per-step output (result attr.index >= K)
 *       carry_k = body output k                    (through a copy if it is a carry itself)
 *   result = carry_k                               (result attr.index = k < K)
 *
 * The scan nodes of one loop (the same scan and operands, one node per
 * result: lower.c makes the later ones partners of the first) share this
 * loop, each result written to its own buffer.
 *
 * Constants are read where they are. Nothing inside the loop is split across
 * threads: a step needs the one before. */
#include "lower_internal.h"

typedef struct sg {
    lower *L;
    kd_arena *a;
} sg;

static lp_expr *I(sg *g, int64_t v) { return lp_int(g->a, v); }
static lp_expr *V(sg *g, lp_var *v) { return lp_var_ref(g->a, v); }
static lp_expr *add(sg *g, lp_expr *x, lp_expr *y) { return lp_bin(g->a, LP_ADD, x, y); }
static lp_expr *mul(sg *g, lp_expr *x, lp_expr *y) { return lp_bin(g->a, LP_MUL, x, y); }

/* Node x's element `index` in lowering L: a load of its buffer, or the
 * value of a position-free leaf (a constant). */
static lp_expr *value(lower *L, ir_node *x, lp_expr *index)
{
    lw_node *w = &L->n[x->id];
    if (w->buf) return lp_load(L->a, w->buf, index);
    if (w->cls == LW_LEAF_EXPR) return lw_scalar(L, x);
    lw_fail(L, "%%%d %s: read before it is computed", x->id, ir_ops[x->op]->name);
    return lp_real(L->a, 0);
}

/* A serial loop: a step needs the one before. */
static kd_vec *push_for(sg *g, kd_vec *into, lp_var *v, lp_expr *extent)
{
    return lw_push_for(g->a, into, v, extent, false);
}

/* dst[i] = x[i] (x a node of lowering from) over x's elements. */
static void copy_all(sg *g, kd_vec *into, lp_buf *dst, lower *from, ir_node *x)
{
    lp_var *i = lp_new_var(g->a, g->L->f, LP_INT, "i");
    kd_vec *body = push_for(g, into, i, lw_count(g->L, &x->shape));
    kd_vec_push(g->a, body, lp_store(g->a, dst, V(g, i), value(from, x, V(g, i)), LP_ASSIGN));
}

/* Step t of a [N, T, r] sequence and a [N, r] step, one from the other:
 * step[b, j] = seq[b, t, j] (to_seq false) or seq[b, t, j] = step[b, j]. */
static void step_copy(sg *g, kd_vec *into, const ir_shape *seq, lp_expr *t, lp_buf *step_buf, lower *from,
                      ir_node *step_node, lp_buf *seq_buf, ir_node *seq_node, bool to_seq)
{
    int64_t T = seq->dims[1], r = ir_shape_elems(seq) / T;
    lp_var *b = lp_new_var(g->a, g->L->f, LP_INT, "b"), *j = lp_new_var(g->a, g->L->f, LP_INT, "j");
    kd_vec *body = push_for(g, push_for(g, into, b, lw_dim(g->L, seq, 0)), j, I(g, r));
    lp_expr *at_seq = add(g, mul(g, add(g, mul(g, V(g, b), I(g, T)), t), I(g, r)), V(g, j));
    lp_expr *at_step = add(g, mul(g, V(g, b), I(g, r)), V(g, j));
    if (to_seq) kd_vec_push(g->a, body, lp_store(g->a, seq_buf, at_seq, value(from, step_node, at_step), LP_ASSIGN));
    else kd_vec_push(g->a, body, lp_store(g->a, step_buf, at_step, value(g->L, seq_node, at_seq), LP_ASSIGN));
}

static void serial(kd_vec *body)
{
    for (int i = 0; i < body->len; i++) {
        lp_stmt *s = body->items[i];
        s->parallel = false;
        serial(&s->body);
    }
}

bool lw_scan_kernel(lower *L, ir_node *n, lp_buf *dst)
{
    /* the loop's body: n's, or its trace's if a partner wants that (the same
     * step with the carries it received as more per-step results) */
    const ir_scan *s = n->attr.scan;
    for (int r = 0; r < L->n[n->id].results.len; r++)
        if (((ir_node *)L->n[n->id].results.items[r])->attr.scan == s->trace) s = s->trace;
    sg g = {.L = L, .a = L->a};
    int K = s->ncarry, S = s->nseq, C = s->nconst, which = n->attr.index;
    int64_t T = n->in[K]->shape.dims[1];
    kd_vec *top = &L->k->body;
    const char *prefix = kd_format(L->a, "scan%d_", n->id);
    lp_buf **args = kd_alloc_array(L->a, (size_t)(K + S + C), sizeof *args);
    for (int i = 0; i < K + S + C; i++) {
        ir_node *x = n->in[i];
        if (i >= K + S && L->n[x->id].buf) {
            args[i] = L->n[x->id].buf;   /* a constant: read in place */
            continue;
        }
        const char *what = i < K ? "carry" : i < K + S ? "step of" : "constant";
        args[i] = lw_arena_buf(L, &s->arg[i], kd_format(L->a, "%sarg%d", prefix, i),
                               kd_format(L->a, "%%%d scan: %s %%%d", n->id, what, x->id));
        if (i < K || i >= K + S) copy_all(&g, top, args[i], L, x);
    }
    lp_var *step = lp_new_var(L->a, L->f, LP_INT, "step");
    kd_vec *body = push_for(&g, top, step, I(&g, T));
    lp_var *t = step;
    if (s->reverse) {
        t = lp_new_var(L->a, L->f, LP_INT, "back");   /* not "t": arena buffers are t<id> */
        kd_vec_push(L->a, body, lp_let(L->a, t, lp_bin(L->a, LP_SUB, I(&g, T - 1), V(&g, step))));
    }
    for (int i = K; i < K + S; i++) step_copy(&g, body, &n->in[i]->shape, V(&g, t), args[i], NULL, NULL, NULL, n->in[i], false);
    lower *B = lw_lower_body(L, s->body, args, prefix, body);
    if (!B) return false;
    ir_node *const *outs = (ir_node *const *)s->body->outputs.items;
    /* every result of this loop: n's and its partners' (lower.c: the scans of one loop) */
    const kd_vec *more = &L->n[n->id].results;
    int nres = 1 + more->len;
    int *res = kd_alloc_array(L->a, (size_t)nres, sizeof *res);
    lp_buf **res_buf = kd_alloc_array(L->a, (size_t)nres, sizeof *res_buf);
    const ir_shape **res_shape = kd_alloc_array(L->a, (size_t)nres, sizeof *res_shape);
    res[0] = which, res_buf[0] = dst, res_shape[0] = &n->shape;
    for (int r = 1; r < nres; r++) {
        ir_node *m = more->items[r - 1];
        res[r] = m->attr.index, res_buf[r] = L->n[m->id].buf, res_shape[r] = &m->shape;
        if (!res_buf[r]) return lw_fail(L, "%%%d scan: result %%%d has no buffer", n->id, m->id);
    }
    /* the per-step results first: one may be a carry as the step received it */
    for (int r = 0; r < nres; r++)
        if (res[r] >= K) step_copy(&g, body, res_shape[r], V(&g, t), NULL, B, outs[res[r]], res_buf[r], NULL, true);
    /* a carry that becomes another carry (a swap) goes through a copy of its own */
    bool swap = false;
    for (int k = 0; k < K; k++) swap |= outs[k]->op == IR_SCAN_ARG && outs[k]->attr.index != k;
    lp_buf **next = kd_alloc_array(L->a, (size_t)(K ? K : 1), sizeof *next);
    for (int k = 0; k < K; k++) {
        if (outs[k]->op == IR_SCAN_ARG && outs[k]->attr.index == k) continue;   /* unchanged */
        next[k] = args[k];
        if (swap) {
            next[k] = lw_arena_buf(L, &s->arg[k], kd_format(L->a, "%snext%d", prefix, k), "next carry");
        }
        copy_all(&g, body, next[k], B, outs[k]);
    }
    for (int k = 0; swap && k < K; k++) {
        if (!(outs[k]->op == IR_SCAN_ARG && outs[k]->attr.index == k)) {
            lp_var *i = lp_new_var(L->a, L->f, LP_INT, "i");
            kd_vec *c = push_for(&g, body, i, lw_count(L, &s->arg[k]));
            kd_vec_push(L->a, c, lp_store(L->a, args[k], V(&g, i), lp_load(L->a, next[k], V(&g, i)), LP_ASSIGN));
        }
    }
    for (int r = 0; r < nres; r++) {
        if (res[r] >= K) continue;
        lp_var *i = lp_new_var(L->a, L->f, LP_INT, "i");
        kd_vec *c = push_for(&g, top, i, lw_count(L, res_shape[r]));
        kd_vec_push(L->a, c, lp_store(L->a, res_buf[r], V(&g, i), lp_load(L->a, args[res[r]], V(&g, i)), LP_ASSIGN));
    }
    serial(top);
    return !L->failed;
}
