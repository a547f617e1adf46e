/* scan.c — a loop over time that carries state (ir.h: ir_scan), the IR of the
 * recurrent layers: SimpleRNN, LSTM and GRU are a cell body run once per
 * step, not copies of it.
 *
 *   scan(carries c, sequences x, constants w), body f:
 *     for t in 0..T-1 (T-1..0 when reverse): (c, y[:, t]) = f(c, x[:, t], w)
 *     result attr.index: final c_k, or y_p stacked over t
 *
 * Its vjp (backpropagation through time) is another scan, the other way over
 * time, whose body is f's vjp. f's inputs at step t are the carries coming
 * in, so a second forward scan (`trace`: f with those carries as more
 * per-step values) lays them out as sequences [N, T, ...] for it, and with
 * them the step's products of two arguments (z = h W, saved_products), so
 * that the backward step does not multiply again:
 *
 *   back(carries (dc, dw), sequences (x, c_in, dy, z), constants w):
 *     (c_out, y) = f(c_in, x_t, w)               (f's nodes, copied; z read, not made)
 *     L = sum(c_out * dc) + sum(y * dy)          (a scalar whose gradient is the vjp)
 *     dc <- dL/dc_in, dw <- dw + dL/dw; per step: dL/dx_t
 *     (z's gradient reaches h and W through the product's own vjp)
 *
 * The final dc is the gradient of the initial carries, the final dw that of
 * the constants (the weights: summed over time), the stacked dL/dx_t that of
 * the sequences. Each gradient is its own node (one result per node), so the
 * interpreter runs `back` once per operand that wants one; lowering will run
 * one loop for all (a scan's results share their loop). The loop needs its
 * carries batched; the backward scan's dw carries are not, so a scan's vjp is
 * not differentiated again (autodiff never asks). */
#include "ops.h"
#include "../autodiff.h"
#include "../interp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

ir_scan *ir_scan_new(kd_arena *a, kd_vec *vars, int ncarry, int nseq, int nconst, bool reverse)
{
    ir_scan *s = kd_alloc(a, sizeof *s);
    s->body = ir_graph_new(a, vars);
    s->ncarry = ncarry;
    s->nseq = nseq;
    s->nconst = nconst;
    s->reverse = reverse;
    int nargs = ncarry + nseq + nconst;
    s->arg = kd_alloc_array(a, (size_t)(nargs > 0 ? nargs : 1), sizeof *s->arg);
    s->has_arg = kd_alloc_array(a, (size_t)(nargs > 0 ? nargs : 1), sizeof *s->has_arg);
    return s;
}

ir_node *ir_scan_arg(ir_builder *b, ir_scan *s, int index, ir_shape shape)
{
    int nargs = s->ncarry + s->nseq + s->nconst;
    if (index < 0 || index >= nargs || b->g != s->body) {
        snprintf(b->why, sizeof b->why, "scan_arg: no argument %d in this scan's body", index);
        return NULL;
    }
    if (s->has_arg[index] && !ir_shape_equal(&s->arg[index], &shape)) {
        snprintf(b->why, sizeof b->why, "scan_arg: argument %d read with two shapes", index);
        return NULL;
    }
    s->arg[index] = shape;
    s->has_arg[index] = true;
    ir_attrs a = ops_attrs();
    a.index = index;
    a.scan = s;
    return ir_leaf(b, IR_SCAN_ARG, shape, &a, -1);
}

bool ir_scan_finish(ir_scan *s, int nout, ir_node *const *outs, char *why, size_t why_len)
{
    if (nout < s->ncarry || s->nseq < 1) {
        snprintf(why, why_len, "scan: %d outputs for %d carries and %d sequences", nout, s->ncarry, s->nseq);
        return false;
    }
    for (int i = 0; i < nout; i++) {
        if (!outs[i]) {
            snprintf(why, why_len, "scan: output %d of the body failed", i);
            return false;
        }
        if (i < s->ncarry && s->has_arg[i] && !ir_shape_equal(&outs[i]->shape, &s->arg[i])) {
            char s1[96], s2[96];
            snprintf(why, why_len, "scan: carry %d comes in as %s and leaves as %s", i,
                     ir_shape_sample(&s->arg[i], s1, sizeof s1), ir_shape_sample(&outs[i]->shape, s2, sizeof s2));
            return false;
        }
        if (i >= s->ncarry && !outs[i]->shape.batched) {
            snprintf(why, why_len, "scan: per-step output %d has no batch", i - s->ncarry);
            return false;
        }
        kd_vec_push(s->body->arena, &s->body->outputs, outs[i]);
    }
    for (int i = 0; i < s->body->nodes.len; i++) {
        const ir_node *n = s->body->nodes.items[i];
        if (n->op == IR_VAR || n->op == IR_INPUT || n->op == IR_LABEL) {
            snprintf(why, why_len, "scan: the body reads %s %%%d; pass it in as a constant",
                     ir_ops[n->op]->name, n->id);
            return false;
        }
    }
    s->nstep = nout - s->ncarry;
    return true;
}

static ir_shape step_of(const ir_shape *seq);

ir_node *ir_scan_apply(ir_builder *b, ir_scan *s, ir_node *const *operands, int which)
{
    /* An argument the body never reads takes its shape from the first application. */
    for (int i = 0; i < s->ncarry + s->nseq + s->nconst; i++) {
        if (!operands[i]) return NULL;
        bool seq = i >= s->ncarry && i < s->ncarry + s->nseq;
        if (!s->has_arg[i] && (!seq || (operands[i]->shape.batched && operands[i]->shape.rank >= 2))) {
            s->arg[i] = seq ? step_of(&operands[i]->shape) : operands[i]->shape;
            s->has_arg[i] = true;
        }
    }
    ir_attrs a = ops_attrs();
    a.scan = s;
    a.index = which;
    return ir_make(b, IR_SCAN, s->ncarry + s->nseq + s->nconst, (ir_node **)operands, &a);
}

/* ---- shapes ----------------------------------------------------------------------------- */

/* A sequence's per-step shape: axis 1 (time) taken out. */
static ir_shape step_of(const ir_shape *seq)
{
    ir_shape s = *seq;
    for (int i = 1; i + 1 < s.rank; i++) s.dims[i] = s.dims[i + 1];
    s.rank--;
    return s;
}

/* A per-step shape stacked over T steps: [N, T, ...]. */
static ir_shape stacked(const ir_shape *step, int64_t T)
{
    ir_shape s = *step;
    for (int i = s.rank; i > 1; i--) s.dims[i] = s.dims[i - 1];
    s.dims[1] = T;
    s.rank++;
    return s;
}

static bool shape_scan(ir_builder *b, ir_node *n)
{
    const ir_scan *s = n->attr.scan;
    char s1[96], s2[96];
    if (!s || s->nstep + s->ncarry != s->body->outputs.len || s->nseq < 1)
        return ops_fail(b, n, "a scan whose body is not finished");
    int K = s->ncarry, S = s->nseq, C = s->nconst;
    if (n->nin != K + S + C) return ops_fail(b, n, "takes %d operands, not %d", K + S + C, n->nin);
    int64_t T = -1;
    for (int i = 0; i < n->nin; i++) {
        const ir_shape *o = &n->in[i]->shape;
        ir_shape want = *o;
        if (i >= K && i < K + S) {
            if (!o->batched || o->rank < 2 || o->rank + 1 > IR_MAX_RANK)
                return ops_fail(b, n, "sequence %d must be [steps, ...] per sample, not %s", i - K, ops_sh(o, s1));
            if (T >= 0 && o->dims[1] != T)
                return ops_fail(b, n, "sequences of %lld and %lld steps", (long long)T, (long long)o->dims[1]);
            T = o->dims[1];
            want = step_of(o);
        }
        if (s->has_arg[i] && !ir_shape_equal(&want, &s->arg[i]))
            return ops_fail(b, n, "operand %d is %s per step, the body reads %s", i, ops_sh(&want, s1),
                            ops_sh(&s->arg[i], s2));
        if (i < K && !ir_shape_equal(o, &((const ir_node *)s->body->outputs.items[i])->shape))
            return ops_fail(b, n, "carry %d is %s, the body makes %s", i, ops_sh(o, s1),
                            ops_sh(&((const ir_node *)s->body->outputs.items[i])->shape, s2));
    }
    int which = n->attr.index;
    if (which < 0 || which >= K + s->nstep) return ops_fail(b, n, "no result %d", which);
    const ir_node *out = s->body->outputs.items[which];
    n->shape = which < K ? out->shape : stacked(&out->shape, T);
    return true;
}

static bool shape_scan_arg(ir_builder *b, ir_node *n)
{
    if (!n->attr.scan) return ops_fail(b, n, "an argument of no scan");
    return ops_shape_attr(b, n);
}

/* ---- evaluation ------------------------------------------------------------------------- */

static void eval_scan_arg(const ir_eval_ctx *c, const ir_node *n)
{
    memcpy(ir_eval_out(c, n), c->feed->inputs[n->attr.index], (size_t)ir_eval_count(c, &n->shape) * sizeof(double));
}

/* Rows of one step: x [N, T, r] <-> step [N, r] at time t. */
static void step_copy(double *step, double *seq, int64_t N, int64_t T, int64_t r, int64_t t, bool to_seq)
{
    for (int64_t b = 0; b < N; b++) {
        double *row = seq + (b * T + t) * r;
        memcpy(to_seq ? row : step + b * r, to_seq ? step + b * r : row, (size_t)r * sizeof(double));
    }
}

static void eval_scan(const ir_eval_ctx *c, const ir_node *n)
{
    const ir_scan *s = n->attr.scan;
    int K = s->ncarry, S = s->nseq, C = s->nconst, nargs = K + S + C, which = n->attr.index;
    int64_t N = c->batch, T = n->in[K]->shape.dims[1];
    double **args = calloc((size_t)nargs, sizeof *args);
    double *out = ir_eval_out(c, n);
    for (int i = 0; i < nargs && args; i++) {
        int64_t count = ir_eval_count(c, &n->in[i]->shape) / (i >= K && i < K + S ? T : 1);
        args[i] = malloc((size_t)(count > 0 ? count : 1) * sizeof(double));
        if (!args[i]) break;
        if (i < K || i >= K + S) memcpy(args[i], ir_eval_in(c, n, i), (size_t)count * sizeof(double));
    }
    ir_feed f = {.batch = c->batch, .inputs = (const double *const *)args, .vars = c->feed->vars};
    memcpy(f.hyper, c->hyper, sizeof f.hyper);
    for (int64_t step = 0; step < T; step++) {
        int64_t t = s->reverse ? T - 1 - step : step;
        for (int i = K; i < K + S; i++)
            step_copy(args[i], (double *)ir_eval_in(c, n, i), N, T, ir_shape_elems(&n->in[i]->shape) / T, t, false);
        char why[256];
        ir_values *v = ir_interp_run(s->body, &f, why, sizeof why);
        if (!v) {
            for (int64_t i = 0; i < ir_eval_count(c, &n->shape); i++) out[i] = NAN;
            break;
        }
        for (int k = 0; k < K; k++)
            memcpy(args[k], ir_value(v, s->body->outputs.items[k]),
                   (size_t)ir_eval_count(c, &n->in[k]->shape) * sizeof(double));
        if (which >= K) {
            const ir_node *y = s->body->outputs.items[which];
            step_copy((double *)ir_value(v, y), out, N, T, ir_shape_elems(&y->shape), t, true);
        }
        ir_values_free(v);
    }
    if (which < K) memcpy(out, args[which], (size_t)ir_eval_count(c, &n->shape) * sizeof(double));
    for (int i = 0; i < nargs && args; i++) free(args[i]);
    free(args);
}

/* ---- the vjp ---------------------------------------------------------------------------- */

/* Copies s's body nodes into b's graph, argument i of s read as args[i] and
 * node id as have[id] where that is not NULL (have may be NULL); returns the map. */
static ir_node **copy_body(ir_builder *b, const ir_scan *s, ir_node *const *args, ir_node *const *have)
{
    const ir_graph *g = s->body;
    ir_node **map = kd_alloc_array(b->g->arena, (size_t)(g->nodes.len ? g->nodes.len : 1), sizeof *map);
    ir_node *in[64];
    for (int id = 0; id < g->nodes.len; id++) {
        const ir_node *x = g->nodes.items[id];
        if (x->nin > 64) return NULL;
        for (int i = 0; i < x->nin; i++) in[i] = map[x->in[i]->id];
        b->loc = x->loc;
        b->layer = x->layer;
        map[id] = have && have[id]    ? have[id]
                  : x->op == IR_SCAN_ARG ? args[x->attr.index]
                  : x->nin == 0       ? ir_leaf(b, x->op, x->shape, &x->attr, x->var)
                                      : ir_make(b, x->op, x->nin, in, &x->attr);
        if (!map[id]) return NULL;
    }
    return map;
}

/* The step's products that the backward step reads from the trace instead
 * of computing them again: each batched matmul of two of the step's
 * arguments (the recurrent kernel times h). Their vjp needs only the
 * arguments, so the backward step keeps none of the product's own work.
 * Returns their count; saved[i] the nodes (NULL: only count). */
static int saved_products(const ir_scan *s, const ir_node **saved)
{
    int m = 0;
    for (int id = 0; id < s->body->nodes.len; id++) {
        const ir_node *x = s->body->nodes.items[id];
        if (x->op != IR_MATMUL || !x->shape.batched || x->in[0]->op != IR_SCAN_ARG || x->in[1]->op != IR_SCAN_ARG)
            continue;
        if (saved) saved[m] = x;
        m++;
    }
    return m;
}

/* s with the carries coming into each step, then its saved products
 * (saved_products), as more per-step values (after s's own). */
static ir_scan *trace_of(ir_builder *outer, ir_scan *s)
{
    if (s->trace) return s->trace;
    int K = s->ncarry, S = s->nseq, C = s->nconst;
    ir_scan *t = ir_scan_new(s->body->arena, s->body->vars, K, S, C, s->reverse);
    ir_builder b = {.g = t->body};
    ir_node **args = kd_alloc_array(t->body->arena, (size_t)(K + S + C), sizeof *args);
    for (int i = 0; i < K + S + C; i++) args[i] = ir_scan_arg(&b, t, i, s->arg[i]);   /* all known once applied */
    ir_node **map = copy_body(&b, s, args, NULL);
    int M = saved_products(s, NULL), nout = K + s->nstep + K + M;
    const ir_node **saved = kd_alloc_array(t->body->arena, (size_t)(M ? M : 1), sizeof *saved);
    saved_products(s, saved);
    ir_node **outs = kd_alloc_array(t->body->arena, (size_t)nout, sizeof *outs);
    for (int i = 0; map && i < K + s->nstep; i++) outs[i] = map[((ir_node *)s->body->outputs.items[i])->id];
    for (int k = 0; k < K; k++) outs[K + s->nstep + k] = args[k];
    for (int m = 0; map && m < M; m++) outs[K + s->nstep + K + m] = map[saved[m]->id];
    if (!map || !ir_scan_finish(t, nout, outs, outer->why, sizeof outer->why)) return NULL;
    return s->trace = t;
}

/* The loop of the step's vjp (see the top of the file). Its arguments:
 *   carries   0..K-1 dc, K..K+C-1 dw
 *   sequences K+C..: S x, then K c_in, then P dy, then M saved products
 *   constants then: C w
 * results: k < K the final dc_k, K + c the final dw_c, K + C + s the stacked dx_s. */
static ir_scan *back_of(ir_builder *outer, ir_scan *s)
{
    if (s->back) return s->back;
    int K = s->ncarry, S = s->nseq, C = s->nconst, P = s->nstep, M = saved_products(s, NULL);
    ir_scan *bk = ir_scan_new(s->body->arena, s->body->vars, K + C, S + K + P + M, C, !s->reverse);
    ir_builder b = {.g = bk->body};
    const ir_node *const *fout = (const ir_node *const *)s->body->outputs.items;
    int seq0 = K + C, const0 = K + C + S + K + P + M;
    /* the forward step's arguments, as arguments of the backward step */
    ir_node **fargs = kd_alloc_array(bk->body->arena, (size_t)(K + S + C), sizeof *fargs);
    for (int k = 0; k < K; k++) fargs[k] = ir_scan_arg(&b, bk, seq0 + S + k, s->arg[k]);
    for (int i = 0; i < S; i++) fargs[K + i] = ir_scan_arg(&b, bk, seq0 + i, s->arg[K + i]);
    for (int i = 0; i < C; i++) fargs[K + S + i] = ir_scan_arg(&b, bk, const0 + i, s->arg[K + S + i]);
    ir_node **dc = kd_alloc_array(bk->body->arena, (size_t)(K + C + P + 1), sizeof *dc);
    for (int k = 0; k < K; k++) dc[k] = ir_scan_arg(&b, bk, k, s->arg[k]);
    for (int i = 0; i < C; i++) dc[K + i] = ir_scan_arg(&b, bk, K + i, s->arg[K + S + i]);
    for (int p = 0; p < P; p++) dc[K + C + p] = ir_scan_arg(&b, bk, seq0 + S + K + p, fout[K + p]->shape);
    /* the saved products read from the trace, in place of the step's own */
    const ir_node **saved = kd_alloc_array(bk->body->arena, (size_t)(M ? M : 1), sizeof *saved);
    saved_products(s, saved);
    ir_node **have = kd_alloc_array(bk->body->arena, (size_t)(s->body->nodes.len ? s->body->nodes.len : 1), sizeof *have);
    ir_node **wrt = kd_alloc_array(bk->body->arena, (size_t)(K + S + C + M), sizeof *wrt);
    for (int m = 0; m < M; m++)
        have[saved[m]->id] = wrt[K + S + C + m] = ir_scan_arg(&b, bk, seq0 + S + K + P + m, saved[m]->shape);
    ir_node **map = copy_body(&b, s, fargs, have);
    if (!map) return NULL;
    /* L = sum(c_out * dc) + sum(y * dy): its gradient is the step's vjp */
    ir_node *loss = NULL;
    for (int i = 0; i < K + P; i++) {
        ir_node *y = map[fout[i]->id], *d = dc[i < K ? i : K + C + (i - K)];
        ir_node *term = ir_reduce(&b, IR_SUM, ir_binary(&b, IR_MUL, y, d), ((int64_t)1 << y->shape.rank) - 1, false);
        loss = loss ? ir_binary(&b, IR_ADD, loss, term) : term;
        if (!loss) return NULL;
    }
    for (int i = 0; i < K + S + C; i++) wrt[i] = fargs[i];
    ir_node **g = loss ? ir_gradients(&b, loss, K + S + C + M, wrt)
                       : kd_alloc_array(bk->body->arena, (size_t)(K + S + C + M), sizeof *g);
    if (!g) return NULL;
    /* a saved product's gradient on to the two arguments it multiplies (its vjp
     * reads only its operands, here the backward step's own) */
    for (int m = 0; m < M; m++) {
        if (!g[K + S + C + m]) continue;
        ir_node *ops[2] = {fargs[saved[m]->in[0]->attr.index], fargs[saved[m]->in[1]->attr.index]}, *gz[2] = {0};
        ir_node z = *saved[m];
        z.in = ops;
        const bool want[2] = {true, true};
        ir_ops[IR_MATMUL]->vjp(&b, &z, g[K + S + C + m], want, gz);
        for (int i = 0; i < 2; i++) {
            int a = saved[m]->in[i]->attr.index;
            if (!gz[i]) return NULL;
            g[a] = g[a] ? ir_binary(&b, IR_ADD, g[a], gz[i]) : gz[i];
        }
    }
    int nout = K + C + S;
    ir_node **outs = kd_alloc_array(bk->body->arena, (size_t)nout, sizeof *outs);
    for (int k = 0; k < K; k++) outs[k] = g[k] ? g[k] : ir_const(&b, 0, fout[k]->shape);
    for (int i = 0; i < C; i++) outs[K + i] = g[K + S + i] ? ir_binary(&b, IR_ADD, dc[K + i], g[K + S + i]) : dc[K + i];
    for (int i = 0; i < S; i++) outs[K + C + i] = g[K + i] ? g[K + i] : ir_const(&b, 0, s->arg[K + i]);
    if (!ir_scan_finish(bk, nout, outs, outer->why, sizeof outer->why)) return NULL;
    return s->back = bk;
}

static void vjp_scan(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **grads)
{
    ir_scan *s = n->attr.scan;
    int K = s->ncarry, S = s->nseq, C = s->nconst, P = s->nstep, M = saved_products(s, NULL), which = n->attr.index;
    kd_loc loc = b->loc;
    const char *layer = b->layer;
    ir_scan *tr = trace_of(b, s), *bk = tr ? back_of(b, s) : NULL;
    b->loc = loc;
    b->layer = layer;
    if (!bk) return;
    int64_t T = n->in[K]->shape.dims[1];
    ir_node **ops = kd_alloc_array(b->g->arena, (size_t)(K + C + S + K + P + M + C), sizeof *ops);
    const ir_node *const *fout = (const ir_node *const *)s->body->outputs.items;
    for (int k = 0; k < K; k++) ops[k] = which == k ? dy : ir_const(b, 0, n->in[k]->shape);
    for (int i = 0; i < C; i++) ops[K + i] = ir_const(b, 0, n->in[K + S + i]->shape);
    for (int i = 0; i < S; i++) ops[K + C + i] = n->in[K + i];
    for (int k = 0; k < K; k++) ops[K + C + S + k] = ir_scan_apply(b, tr, n->in, K + P + k);
    for (int p = 0; p < P; p++)
        ops[K + C + S + K + p] = which == K + p ? dy : ir_const(b, 0, stacked(&fout[K + p]->shape, T));
    for (int m = 0; m < M; m++) ops[K + C + S + K + P + m] = ir_scan_apply(b, tr, n->in, K + P + K + m);
    for (int i = 0; i < C; i++) ops[K + C + S + K + P + M + i] = n->in[K + S + i];
    for (int i = 0; i < K + S + C; i++) {
        if (!want[i]) continue;
        int result = i < K ? i : i < K + S ? K + C + (i - K) : K + (i - K - S);
        grads[i] = ir_scan_apply(b, bk, ops, result);
    }
}

const ir_op_info ir_op_scan = {.name = "scan", .arity = -1, .attrs = IR_ATTR_SCAN | IR_ATTR_INDEX,
                               .shape = shape_scan, .vjp = vjp_scan, .eval = eval_scan};
const ir_op_info ir_op_scan_arg = {.name = "scan_arg", .arity = 0, .attrs = IR_ATTR_SCAN | IR_ATTR_INDEX | IR_ATTR_SHAPE,
                                   .shape = shape_scan_arg, .eval = eval_scan_arg};
