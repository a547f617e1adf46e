/* ir.c — shapes and the graph builder. Each op's own shape rule lives in its
 * ops/ file; the builder allocates a node, asks the rule for its shape, and
 * appends it, so a node that exists always has a valid shape. */
#include "ir.h"
#include "ops/ops.h"

#include <stdarg.h>
#include <string.h>

enum { DEFAULT_MAX_NODES = 4000000 };

/* ---- shapes ------------------------------------------------------------- */

ir_shape ir_shape_of(int rank, const int64_t *dims, bool batched)
{
    ir_shape s = {0};
    int full = rank + (batched ? 1 : 0);
    if (rank < 0 || full > IR_MAX_RANK) {
        s.rank = -1;                     /* rejected by every builder */
        return s;
    }
    s.rank = full;
    s.batched = batched;
    int d = 0;
    if (batched) s.dims[d++] = IR_BATCH;
    for (int i = 0; i < rank; i++) s.dims[d++] = dims[i];
    return s;
}

int64_t ir_shape_elems(const ir_shape *s)
{
    if (s->rank < 0 || s->rank > IR_MAX_RANK) return -1;
    int64_t n = 1;
    for (int i = s->batched ? 1 : 0; i < s->rank; i++) {
        if (s->dims[i] < 0) return -1;
        if (__builtin_mul_overflow(n, s->dims[i], &n)) return -1;
    }
    return n;
}

bool ir_shape_equal(const ir_shape *a, const ir_shape *b)
{
    if (a->rank != b->rank || a->batched != b->batched) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i]) return false;
    return true;
}

/* Appends to buf without overflowing it; the text is cut if it does not fit. */
static void put(char *buf, size_t n, size_t *at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t n, size_t *at, const char *fmt, ...)
{
    if (*at >= n) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *at, n - *at, fmt, ap);
    va_end(ap);
    if (k > 0) *at += (size_t)k < n - *at ? (size_t)k : n - *at - 1;
}

const char *ir_shape_keras(const ir_shape *s, char *buf, size_t n)
{
    size_t at = 0;
    if (n == 0) return buf;
    buf[0] = 0;
    put(buf, n, &at, "(");
    for (int i = 0; i < s->rank; i++) {
        if (i) put(buf, n, &at, ", ");
        if (s->dims[i] == IR_BATCH) put(buf, n, &at, "None");
        else put(buf, n, &at, "%lld", (long long)s->dims[i]);
    }
    /* Python's one-element tuple: (10,) */
    put(buf, n, &at, s->rank == 1 ? ",)" : ")");
    return buf;
}

const char *ir_shape_sample(const ir_shape *s, char *buf, size_t n)
{
    size_t at = 0;
    if (n == 0) return buf;
    buf[0] = 0;
    put(buf, n, &at, "[");
    for (int i = s->batched ? 1 : 0, first = 1; i < s->rank; i++, first = 0)
        put(buf, n, &at, "%s%lld", first ? "" : ", ", (long long)s->dims[i]);
    put(buf, n, &at, "]");
    return buf;
}

/* NumPy: align from the right; equal dims or a 1 broadcast. The batch only
 * meets another batch or a 1, and must stay the leading dim of the result. */
bool ir_broadcast_shapes(const ir_shape *a, const ir_shape *b, ir_shape *out)
{
    ir_shape r = {0};
    if (a->rank < 0 || b->rank < 0) return false;
    r.rank = a->rank > b->rank ? a->rank : b->rank;
    for (int i = 0; i < r.rank; i++) {
        int ia = a->rank - r.rank + i, ib = b->rank - r.rank + i;
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        int64_t d;
        if (da == db) d = da;
        else if (da == 1) d = db;
        else if (db == 1) d = da;
        else return false;
        if (d == IR_BATCH && i != 0) return false;
        r.dims[i] = d;
    }
    r.batched = r.rank > 0 && r.dims[0] == IR_BATCH;
    if (out) *out = r;
    return true;
}

void ir_same_padding(int64_t in, int window, int stride, int64_t *pad_lo, int64_t *pad_hi)
{
    if (stride < 1) stride = 1;
    int64_t out = (in + stride - 1) / stride;
    int64_t total = (out - 1) * stride + window - in;
    if (total < 0) total = 0;
    *pad_lo = total / 2;
    *pad_hi = total - total / 2;
}

/* ---- helpers for the op rules (ops/ops.h) -------------------------------- */

bool ops_fail(ir_builder *b, const ir_node *n, const char *fmt, ...)
{
    int k = snprintf(b->why, sizeof b->why, "%s: ", ir_ops[n->op]->name);
    if (k < 0 || (size_t)k >= sizeof b->why) k = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->why + k, sizeof b->why - (size_t)k, fmt, ap);
    va_end(ap);
    return false;
}

const char *ops_sh(const ir_shape *s, char buf[static 96])
{
    return ir_shape_sample(s, buf, 96);
}

int64_t ops_elems(const ir_shape *s, int64_t batch)
{
    int64_t n = ir_shape_elems(s);
    return n < 0 ? 0 : s->batched ? n * batch : n;
}

int64_t ops_flops_per_input(const ir_node *n, int64_t batch) { return ops_elems(&n->in[0]->shape, batch); }

int64_t ir_graph_flops(const ir_graph *g, int64_t batch, int64_t *products)
{
    int64_t total = 0, prod = 0;
    for (int i = 0; i < g->nodes.len; i++) {
        const ir_node *n = g->nodes.items[i];
        const ir_op_info *op = ir_ops[n->op];
        int64_t f = op->flops ? op->flops(n, batch) : op->scalar ? ops_elems(&n->shape, batch) : 0;
        total += f;
        switch (n->op) {   /* the products alone: their multiply-adds, without a fused epilogue */
        case IR_MATMUL: case IR_CONV2D: case IR_CONV2D_BWD_DATA: case IR_CONV2D_BWD_FILTER:
        case IR_DEPTHWISE_CONV2D: case IR_DEPTHWISE_CONV2D_BWD_DATA: case IR_DEPTHWISE_CONV2D_BWD_FILTER:
            prod += f;
            break;
        case IR_FUSED_MATMUL: case IR_FUSED_CONV2D: case IR_FUSED_DEPTHWISE_CONV2D:
            prod += f - ir_fused_epilogue_flops(n, batch);
            break;
        default: break;
        }
    }
    if (products) *products = prod;
    return total;
}

ir_attrs ops_attrs(void)
{
    ir_attrs a;
    memset(&a, 0, sizeof a);
    return a;
}

bool ops_check_rank(ir_builder *b, const ir_shape *s)
{
    if (s->rank < 0 || s->rank > IR_MAX_RANK) {
        snprintf(b->why, sizeof b->why, "rank exceeds %d", IR_MAX_RANK);
        return false;
    }
    return true;
}

int64_t ops_window_out(int64_t in, int64_t k, int stride, int64_t lo, int64_t hi)
{
    if (stride < 1 || k < 1 || lo < 0 || hi < 0 || lo > INT32_MAX || hi > INT32_MAX) return -1;
    int64_t span = in + lo + hi;
    if (span < k) return -1;
    return (span - k) / stride + 1;
}

bool ops_shape_unary(ir_builder *b, ir_node *n)
{
    (void)b;
    n->shape = n->in[0]->shape;
    return true;
}

/* The per-sample dims of s, unbatched. */
static ir_shape sample_of(const ir_shape *s)
{
    return s->batched ? ir_shape_of(s->rank - 1, s->dims + 1, false) : *s;
}

bool ops_shape_binary(ir_builder *b, ir_node *n)
{
    const ir_shape *x = &n->in[0]->shape, *y = &n->in[1]->shape;
    if (ir_broadcast_shapes(x, y, &n->shape)) return true;
    char s1[96], s2[96];
    ir_shape sx = sample_of(x), sy = sample_of(y);
    if (ir_broadcast_shapes(&sx, &sy, NULL))   /* only the batch is in the way: show it */
        return ops_fail(b, n, "cannot broadcast %s with %s: the batch must stay the first dimension",
                        ir_shape_keras(x, s1, sizeof s1), ir_shape_keras(y, s2, sizeof s2));
    return ops_fail(b, n, "cannot broadcast %s with %s", ops_sh(x, s1), ops_sh(y, s2));
}

bool ops_shape_attr(ir_builder *b, ir_node *n)
{
    if (!ops_check_rank(b, &n->attr.shape)) return false;
    if (ir_shape_elems(&n->attr.shape) < 0)
        return ops_fail(b, n, "shape has a negative dimension or too many elements");
    n->shape = n->attr.shape;
    return true;
}

ir_node *ops_scale(ir_builder *b, ir_node *x, double c)
{
    if (c == 1) return x;
    return ir_binary(b, IR_MUL, x, ir_scalar(b, c));
}

/* ---- building ---------------------------------------------------------- */

ir_graph *ir_graph_new(kd_arena *a, kd_vec *vars)
{
    ir_graph *g = kd_alloc(a, sizeof *g);
    g->arena = a;
    g->vars = vars;
    g->max_nodes = DEFAULT_MAX_NODES;
    return g;
}

ir_graph *ir_graph_clone(kd_arena *a, const ir_graph *g)
{
    ir_graph *c = ir_graph_new(a, g->vars);
    c->max_nodes = g->max_nodes;
    c->overflow = g->overflow;
    ir_node **map = kd_alloc_array(a, (size_t)g->nodes.len + 1, sizeof *map);
    for (int i = 0; i < g->nodes.len; i++) {
        const ir_node *n = g->nodes.items[i];
        ir_node *m = kd_alloc(a, sizeof *m);
        *m = *n;
        m->aux = NULL;
        m->in = n->nin ? kd_alloc_array(a, (size_t)n->nin, sizeof *m->in) : NULL;
        for (int k = 0; k < n->nin; k++) m->in[k] = map[n->in[k]->id];
        map[n->id] = m;
        kd_vec_push(a, &c->nodes, m);
    }
    for (int i = 0; i < g->outputs.len; i++)
        kd_vec_push(a, &c->outputs, map[((const ir_node *)g->outputs.items[i])->id]);
    for (int i = 0; i < g->losses.len; i++)
        kd_vec_push(a, &c->losses, map[((const ir_node *)g->losses.items[i])->id]);
    for (int i = 0; i < g->updates.len; i++) {
        const ir_update *u = g->updates.items[i];
        ir_update *v = kd_alloc(a, sizeof *v);
        v->var = u->var;
        v->value = map[u->value->id];
        kd_vec_push(a, &c->updates, v);
    }
    return c;
}

static ir_node *make(ir_builder *b, ir_op op, int nin, ir_node **in, const ir_attrs *attr, int var)
{
    ir_graph *g = b->g;
    int max = g->max_nodes > 0 ? g->max_nodes : DEFAULT_MAX_NODES;
    if (g->overflow || g->nodes.len >= max) {
        g->overflow = true;
        snprintf(b->why, sizeof b->why, "model too large");
        return NULL;
    }
    if ((unsigned)op >= IR_OP_COUNT) {
        snprintf(b->why, sizeof b->why, "unknown op %d", (int)op);
        return NULL;
    }
    const ir_op_info *info = ir_ops[op];
    if (nin < 0 || (info->arity >= 0 && nin != info->arity) || (info->arity < 0 && nin < 1)) {
        snprintf(b->why, sizeof b->why, "%s: takes %d operands, not %d", info->name,
                 info->arity < 0 ? 1 : info->arity, nin);
        return NULL;
    }
    for (int i = 0; i < nin; i++)
        if (!in[i]) return NULL;          /* an operand already failed: keep its why */
    /* Integer tensors are indices: only a gather reads one. */
    for (int i = 0; i < nin; i++)
        if (ir_is_i32(in[i]) && !((op == IR_GATHER && i == 1) || (op == IR_GATHER_GRAD && i == 0))) {
            snprintf(b->why, sizeof b->why, "%s: an integer (i32) tensor where reals are wanted; only "
                     "Embedding reads token ids", info->name);
            return NULL;
        }

    ir_node *n = kd_alloc(g->arena, sizeof *n);
    n->op = op;
    n->nin = nin;
    n->in = nin ? kd_alloc_array(g->arena, (size_t)nin, sizeof *n->in) : NULL;
    if (nin) memcpy(n->in, in, (size_t)nin * sizeof *in);
    if (attr) n->attr = *attr;
    n->var = var;
    n->loc = b->loc;
    n->layer = b->layer;
    for (int i = 0; i < nin; i++)
        if (!ops_check_rank(b, &in[i]->shape)) return NULL;
    if (!info->shape(b, n)) return NULL;
    if (!ops_check_rank(b, &n->shape)) return NULL;
    n->id = g->nodes.len;
    kd_vec_push(g->arena, &g->nodes, n);
    return n;
}

ir_node *ir_make(ir_builder *b, ir_op op, int nin, ir_node **in, const ir_attrs *attr)
{
    return make(b, op, nin, in, attr, -1);
}

ir_node *ir_leaf(ir_builder *b, ir_op op, ir_shape shape, const ir_attrs *attr, int var)
{
    ir_attrs a = attr ? *attr : ops_attrs();
    a.shape = shape;
    return make(b, op, 0, NULL, &a, var);
}

ir_node *ir_inline(ir_builder *b, const ir_graph *from, ir_node *(*leaf)(void *ctx, const ir_node *n), void *ctx)
{
    if (from->outputs.len == 0) {
        snprintf(b->why, sizeof b->why, "inlining a graph without an output");
        return NULL;
    }
    ir_node **map = kd_alloc_array(b->g->arena, (size_t)from->nodes.len + 1, sizeof *map);
    for (int i = 0; i < from->nodes.len; i++) {
        const ir_node *n = from->nodes.items[i];
        ir_node *to = n->nin == 0 && leaf ? leaf(ctx, n) : NULL;
        if (!to && n->nin == 0) {
            to = ir_leaf(b, n->op, n->shape, &n->attr, n->var);
        } else if (!to) {
            ir_node *in[n->nin];
            for (int k = 0; k < n->nin; k++) in[k] = map[n->in[k]->id];
            to = ir_make(b, n->op, n->nin, in, &n->attr);
        }
        if (!to) return NULL;
        map[n->id] = to;
    }
    return map[((const ir_node *)from->outputs.items[0])->id];
}

ir_node *ir_unary(ir_builder *b, ir_op op, ir_node *x)
{
    return make(b, op, 1, &x, NULL, -1);
}

ir_node *ir_binary(ir_builder *b, ir_op op, ir_node *x, ir_node *y)
{
    ir_node *in[2] = {x, y};
    return make(b, op, 2, in, NULL, -1);
}

ir_node *ir_const(ir_builder *b, double value, ir_shape shape)
{
    ir_attrs a = ops_attrs();
    a.scalar = value;
    return ir_leaf(b, IR_CONST, shape, &a, -1);
}

ir_node *ir_scalar(ir_builder *b, double value)
{
    return ir_const(b, value, ir_shape_of(0, NULL, false));
}

ir_node *ir_var_read(ir_builder *b, const kd_var *v)
{
    return ir_leaf(b, IR_VAR, v->shape, NULL, v->index);
}

ir_node *ir_hyper(ir_builder *b, int which)
{
    ir_attrs a = ops_attrs();
    a.index = which;
    return ir_leaf(b, IR_HYPER, ir_shape_of(0, NULL, false), &a, -1);
}

ir_node *ir_reduce(ir_builder *b, ir_op op, ir_node *x, int64_t axes, bool keepdims)
{
    ir_attrs a = ops_attrs();
    a.axes = axes;
    a.keepdims = keepdims;
    return make(b, op, 1, &x, &a, -1);
}

ir_node *ir_reshape(ir_builder *b, ir_node *x, ir_shape to)
{
    if (x && ir_shape_equal(&x->shape, &to)) return x;
    ir_attrs a = ops_attrs();
    a.shape = to;
    return make(b, IR_RESHAPE, 1, &x, &a, -1);
}

ir_node *ir_broadcast(ir_builder *b, ir_node *x, ir_shape to)
{
    if (x && ir_shape_equal(&x->shape, &to)) return x;
    ir_attrs a = ops_attrs();
    a.shape = to;
    return make(b, IR_BROADCAST, 1, &x, &a, -1);
}

ir_node *ir_matmul(ir_builder *b, ir_node *x, ir_node *y, bool trans_a, bool trans_b)
{
    ir_attrs a = ops_attrs();
    a.trans_a = trans_a;
    a.trans_b = trans_b;
    ir_node *in[2] = {x, y};
    return make(b, IR_MATMUL, 2, in, &a, -1);
}

ir_node *ir_sum_to(ir_builder *b, ir_node *x, const ir_shape *to)
{
    if (!x) return NULL;
    const ir_shape *s = &x->shape;
    if (ir_shape_equal(s, to)) return x;
    ir_shape check;
    if (!ir_broadcast_shapes(s, to, &check) || !ir_shape_equal(&check, s)) {
        char s1[96], s2[96];
        snprintf(b->why, sizeof b->why, "sum_to: %s is not a broadcast of %s",
                 ops_sh(s, s1), ops_sh(to, s2));
        return NULL;
    }
    /* The dims `to` lacks (leading) or has as 1 were broadcast: sum them, keep
     * them as 1s, then drop the leading ones with a reshape. */
    int64_t axes = 0;
    int lead = s->rank - to->rank;
    for (int i = 0; i < s->rank; i++) {
        int it = i - lead;
        if (it < 0 || (to->dims[it] == 1 && s->dims[i] != 1)) axes |= (int64_t)1 << i;
    }
    ir_node *r = axes ? ir_reduce(b, IR_SUM, x, axes, true) : x;
    return ir_reshape(b, r, *to);
}
