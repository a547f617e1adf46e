/* layout.c — ops that move elements without computing: reshape, transpose,
 * concat, slice, pad, reverse. Each one's vjp is another's inverse (a
 * reverse's is itself). */
#include "ops.h"
#include "../interp.h"

#include <string.h>

static bool shape_reshape(ir_builder *b, ir_node *n)
{
    const ir_shape *x = &n->in[0]->shape, *to = &n->attr.shape;
    char s1[96], s2[96];
    if (!ops_shape_attr(b, n)) return false;
    for (int i = to->batched ? 1 : 0; i < to->rank; i++)
        if (to->dims[i] < 0) return ops_fail(b, n, "negative dimension in %s", ops_sh(to, s1));
    if (to->batched && to->dims[0] != IR_BATCH) return ops_fail(b, n, "bad batch dimension");
    if (x->batched != to->batched)
        return ops_fail(b, n, "cannot reshape %s to %s: the batch must stay",
                        ir_shape_keras(x, s1, sizeof s1), ir_shape_keras(to, s2, sizeof s2));
    if (ir_shape_elems(x) != ir_shape_elems(to))
        return ops_fail(b, n, "cannot reshape %s (%lld elements) to %s (%lld elements)",
                        ops_sh(x, s1), (long long)ir_shape_elems(x), ops_sh(to, s2),
                        (long long)ir_shape_elems(to));
    return true;
}

static bool shape_transpose(ir_builder *b, ir_node *n)
{
    const ir_shape *x = &n->in[0]->shape;
    bool seen[IR_MAX_RANK] = {0};
    char s1[96];
    for (int i = 0; i < x->rank; i++) {
        int p = n->attr.perm[i];
        if (p < 0 || p >= x->rank || seen[p])
            return ops_fail(b, n, "perm is not a permutation of the %d axes of %s", x->rank, ops_sh(x, s1));
        seen[p] = true;
    }
    if (x->batched && n->attr.perm[0] != 0) return ops_fail(b, n, "the batch must stay the first axis");
    n->shape = *x;
    for (int i = 0; i < x->rank; i++) n->shape.dims[i] = x->dims[n->attr.perm[i]];
    return true;
}

static bool shape_concat(ir_builder *b, ir_node *n)
{
    const ir_shape *x = &n->in[0]->shape;
    int axis = n->attr.axis;
    char s1[96], s2[96];
    if (axis < 0 || axis >= x->rank)
        return ops_fail(b, n, "axis %d out of range for %s", axis, ops_sh(x, s1));
    if (x->batched && axis == 0) return ops_fail(b, n, "cannot concatenate along the batch");
    ir_shape r = *x;
    for (int k = 1; k < n->nin; k++) {
        const ir_shape *y = &n->in[k]->shape;
        bool ok = y->rank == x->rank && y->batched == x->batched;
        for (int i = 0; ok && i < x->rank; i++)
            if (i != axis && y->dims[i] != x->dims[i]) ok = false;
        if (!ok)
            return ops_fail(b, n, "cannot concatenate %s with %s along axis %d",
                            ops_sh(x, s1), ops_sh(y, s2), axis);
        r.dims[axis] += y->dims[axis];
    }
    n->shape = r;
    return true;
}

static bool shape_slice(ir_builder *b, ir_node *n)
{
    const ir_shape *x = &n->in[0]->shape;
    ir_attrs *a = &n->attr;
    char s1[96];
    n->shape = *x;
    for (int i = 0; i < x->rank; i++) {
        if (i == 0 && x->batched) {
            if (a->begin[0] != 0) return ops_fail(b, n, "cannot slice the batch");
            a->size[0] = IR_BATCH;
            continue;
        }
        if (a->begin[i] < 0 || a->size[i] < 1 || a->begin[i] > x->dims[i] - a->size[i])
            return ops_fail(b, n, "[%lld : %lld] is out of range on axis %d of %s",
                            (long long)a->begin[i], (long long)(a->begin[i] + a->size[i]), i,
                            ops_sh(x, s1));
        n->shape.dims[i] = a->size[i];
    }
    return true;
}

static bool shape_pad(ir_builder *b, ir_node *n)
{
    const ir_shape *x = &n->in[0]->shape;
    ir_attrs *a = &n->attr;
    n->shape = *x;
    for (int i = 0; i < x->rank; i++) {
        if (a->pad_lo[i] < 0 || a->pad_hi[i] < 0 || a->pad_lo[i] > INT32_MAX || a->pad_hi[i] > INT32_MAX)
            return ops_fail(b, n, "bad padding on axis %d", i);
        if (i == 0 && x->batched) {
            if (a->pad_lo[0] || a->pad_hi[0]) return ops_fail(b, n, "cannot pad the batch");
            continue;
        }
        n->shape.dims[i] = x->dims[i] + a->pad_lo[i] + a->pad_hi[i];
    }
    if (ir_shape_elems(&n->shape) < 0) return ops_fail(b, n, "result too large");
    return true;
}

static bool shape_reverse(ir_builder *b, ir_node *n)
{
    const ir_shape *x = &n->in[0]->shape;
    char s1[96];
    if (n->attr.axis < 0 || n->attr.axis >= x->rank || (x->batched && n->attr.axis == 0))
        return ops_fail(b, n, "axis %d is not a sample axis of %s", n->attr.axis, ops_sh(x, s1));
    n->shape = *x;
    return true;
}

/* Row-major strides of concrete dims. */
static void strides_of(int rank, const int64_t *dims, int64_t *st)
{
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        st[i] = s;
        s *= dims[i];
    }
}

static void eval_reshape(const ir_eval_ctx *c, const ir_node *n)
{
    memcpy(ir_eval_out(c, n), ir_eval_in(c, n, 0), (size_t)ir_eval_count(c, &n->shape) * sizeof(double));
}

static void eval_transpose(const ir_eval_ctx *c, const ir_node *n)
{
    int64_t xd[IR_MAX_RANK], xst[IR_MAX_RANK], yd[IR_MAX_RANK], st[IR_MAX_RANK];
    int rank = ir_eval_dims(c, &n->in[0]->shape, xd);
    ir_eval_dims(c, &n->shape, yd);
    strides_of(rank, xd, xst);
    for (int i = 0; i < rank; i++) st[i] = xst[n->attr.perm[i]];
    const double *x = ir_eval_in(c, n, 0);
    double *y = ir_eval_out(c, n);
    for (int64_t i = 0, e = ir_eval_count(c, &n->shape); i < e; i++) y[i] = x[ir_eval_offset(rank, yd, st, i)];
}

static void eval_concat(const ir_eval_ctx *c, const ir_node *n)
{
    int64_t yd[IR_MAX_RANK];
    int rank = ir_eval_dims(c, &n->shape, yd), axis = n->attr.axis;
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < axis; i++) outer *= yd[i];
    for (int i = axis + 1; i < rank; i++) inner *= yd[i];
    double *y = ir_eval_out(c, n);
    int64_t at = 0;                       /* offset along the axis, times inner */
    for (int k = 0; k < n->nin; k++) {
        const double *x = ir_eval_in(c, n, k);
        int64_t len = n->in[k]->shape.dims[axis] * inner;
        for (int64_t o = 0; o < outer; o++)
            memcpy(y + o * yd[axis] * inner + at, x + o * len, (size_t)len * sizeof(double));
        at += len;
    }
}

static void eval_slice(const ir_eval_ctx *c, const ir_node *n)
{
    int64_t xd[IR_MAX_RANK], st[IR_MAX_RANK], yd[IR_MAX_RANK];
    int rank = ir_eval_dims(c, &n->in[0]->shape, xd);
    ir_eval_dims(c, &n->shape, yd);
    strides_of(rank, xd, st);
    int64_t base = 0;
    for (int i = 0; i < rank; i++) base += n->attr.begin[i] * st[i];
    const double *x = ir_eval_in(c, n, 0);
    double *y = ir_eval_out(c, n);
    for (int64_t i = 0, e = ir_eval_count(c, &n->shape); i < e; i++) y[i] = x[base + ir_eval_offset(rank, yd, st, i)];
}

static void eval_pad(const ir_eval_ctx *c, const ir_node *n)
{
    int64_t xd[IR_MAX_RANK], st[IR_MAX_RANK], yd[IR_MAX_RANK];
    int rank = ir_eval_dims(c, &n->in[0]->shape, xd);
    ir_eval_dims(c, &n->shape, yd);
    strides_of(rank, yd, st);
    int64_t base = 0;
    for (int i = 0; i < rank; i++) base += n->attr.pad_lo[i] * st[i];
    const double *x = ir_eval_in(c, n, 0);
    double *y = ir_eval_out(c, n);
    memset(y, 0, (size_t)ir_eval_count(c, &n->shape) * sizeof(double));
    for (int64_t i = 0, e = ir_eval_count(c, &n->in[0]->shape); i < e; i++) y[base + ir_eval_offset(rank, xd, st, i)] = x[i];
}

static void eval_reverse(const ir_eval_ctx *c, const ir_node *n)
{
    int64_t xd[IR_MAX_RANK];
    int rank = ir_eval_dims(c, &n->shape, xd), axis = n->attr.axis;
    int64_t outer = 1, inner = 1, len = xd[axis];
    for (int i = 0; i < axis; i++) outer *= xd[i];
    for (int i = axis + 1; i < rank; i++) inner *= xd[i];
    const double *x = ir_eval_in(c, n, 0);
    double *y = ir_eval_out(c, n);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < len; i++)
            memcpy(y + (o * len + i) * inner, x + (o * len + len - 1 - i) * inner, (size_t)inner * sizeof(double));
}

static void vjp_reshape(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    g[0] = ir_reshape(b, dy, n->in[0]->shape);
}

static void vjp_transpose(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    ir_attrs a = ops_attrs();
    for (int i = 0; i < n->shape.rank; i++) a.perm[n->attr.perm[i]] = i;
    g[0] = ir_make(b, IR_TRANSPOSE, 1, &dy, &a);
}

static ir_node *slice(ir_builder *b, ir_node *x, const int64_t *begin, const ir_shape *to)
{
    ir_attrs a = ops_attrs();
    for (int i = 0; i < to->rank; i++) {
        a.begin[i] = begin[i];
        a.size[i] = to->dims[i];
    }
    return ir_make(b, IR_SLICE, 1, &x, &a);
}

static void vjp_concat(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    int64_t begin[IR_MAX_RANK] = {0};
    for (int k = 0; k < n->nin; k++) {
        if (want[k]) g[k] = slice(b, dy, begin, &n->in[k]->shape);
        begin[n->attr.axis] += n->in[k]->shape.dims[n->attr.axis];
    }
}

static void vjp_slice(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    const ir_shape *xs = &n->in[0]->shape;
    ir_attrs a = ops_attrs();
    for (int i = xs->batched ? 1 : 0; i < xs->rank; i++) {
        a.pad_lo[i] = n->attr.begin[i];
        a.pad_hi[i] = xs->dims[i] - n->attr.begin[i] - n->attr.size[i];
    }
    g[0] = ir_make(b, IR_PAD, 1, &dy, &a);
}

static void vjp_pad(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    g[0] = slice(b, dy, n->attr.pad_lo, &n->in[0]->shape);
}

static void vjp_reverse(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    (void)want;
    g[0] = ir_make(b, IR_REVERSE, 1, &dy, &n->attr);
}

const ir_op_info ir_op_reshape = {.name = "reshape", .arity = 1, .attrs = IR_ATTR_SHAPE,
                                  .shape = shape_reshape, .vjp = vjp_reshape, .eval = eval_reshape};
const ir_op_info ir_op_transpose = {.name = "transpose", .arity = 1, .attrs = IR_ATTR_PERM,
                                    .shape = shape_transpose, .vjp = vjp_transpose, .eval = eval_transpose};
const ir_op_info ir_op_concat = {.name = "concat", .arity = -1, .attrs = IR_ATTR_AXIS,
                                 .shape = shape_concat, .vjp = vjp_concat, .eval = eval_concat};
const ir_op_info ir_op_slice = {.name = "slice", .arity = 1, .attrs = IR_ATTR_SLICE,
                                .shape = shape_slice, .vjp = vjp_slice, .eval = eval_slice};
const ir_op_info ir_op_pad = {.name = "pad", .arity = 1, .attrs = IR_ATTR_PAD,
                              .shape = shape_pad, .vjp = vjp_pad, .eval = eval_pad};
const ir_op_info ir_op_reverse = {.name = "reverse", .arity = 1, .attrs = IR_ATTR_AXIS,
                                  .shape = shape_reverse, .vjp = vjp_reverse, .eval = eval_reverse};
