/* simplify.c — algebraic identities, applied while copying (operands are
 * already simplified, so rules see simplified inputs):
 *
 *   x * 1, 1 * x, x + 0, 0 + x, x - 0, x / 1     -> x        (when x has the result's shape)
 *   0 - x -> -x,  x * -1 -> -x,  -(-x) -> x,  relu(relu x) -> relu x,  |(|x|)| -> |x|
 *   x + (-y) -> x - y,  (-x) + y -> y - x,  x - (-y) -> x + y
 *   op(x, broadcast(y)) -> op(x, y)   when NumPy broadcasting gives the same shape
 *   reshape(reshape x) -> reshape x,  reshape / broadcast / transpose that change nothing -> x
 *   broadcast(broadcast x) -> broadcast x,  broadcast(const) -> const
 *   sum / mean / max over axes of size 1 -> reshape
 *   elementwise ops of constants -> a constant
 *   conv2d(zero padding of x) -> conv2d(x) with the padding in its attributes
 *
 * Nothing here changes a value's rounding except constant folding (done in
 * double, as the interpreter does). x * 0 is left alone: it is NaN for NaN x. */
#include "../passes.h"

#include <math.h>

static bool is_const(const ir_node *n, double v) { return n->op == IR_CONST && n->attr.scalar == v; }

/* Element-wise is a fact of the op table (ir_op_info.scalar), as is each op's arity. */
static bool elementwise(ir_op op, int arity) { return ir_ops[op]->scalar && ir_ops[op]->arity == arity; }

/* x stands for the result only if it already has the result's shape. */
static ir_node *keep(const ir_node *old, ir_node *x)
{
    return ir_shape_equal(&x->shape, &old->shape) ? x : NULL;
}

static ir_node *simplify_binary(kd_rewrite *rw, ir_node *old, ir_node **in)
{
    ir_builder *b = &rw->b;
    ir_node *x = in[0], *y = in[1], *r;
    if (x->op == IR_CONST && y->op == IR_CONST)
        return ir_const(b, ir_ops[old->op]->scalar(old, x->attr.scalar, y->attr.scalar), old->shape);
    switch (old->op) {
    case IR_ADD:
        if (is_const(y, 0) && (r = keep(old, x))) return r;
        if (is_const(x, 0) && (r = keep(old, y))) return r;
        if (y->op == IR_NEG) return ir_binary(b, IR_SUB, x, y->in[0]);
        if (x->op == IR_NEG) return ir_binary(b, IR_SUB, y, x->in[0]);
        break;
    case IR_SUB:
        if (is_const(y, 0) && (r = keep(old, x))) return r;
        if (is_const(x, 0) && keep(old, y)) return ir_unary(b, IR_NEG, y);
        if (y->op == IR_NEG) return ir_binary(b, IR_ADD, x, y->in[0]);
        break;
    case IR_MUL:
        if (is_const(y, 1) && (r = keep(old, x))) return r;
        if (is_const(x, 1) && (r = keep(old, y))) return r;
        if (is_const(y, -1) && keep(old, x)) return ir_unary(b, IR_NEG, x);
        if (is_const(x, -1) && keep(old, y)) return ir_unary(b, IR_NEG, y);
        break;
    case IR_DIV:
        if (is_const(y, 1) && (r = keep(old, x))) return r;
        break;
    default: break;
    }
    /* Broadcasts the op does by itself. */
    for (int k = 0; k < 2; k++) {
        ir_node *o[2] = {in[0], in[1]};
        if (o[k]->op != IR_BROADCAST) continue;
        o[k] = o[k]->in[0];
        ir_shape s;
        if (ir_broadcast_shapes(&o[0]->shape, &o[1]->shape, &s) && ir_shape_equal(&s, &old->shape))
            return ir_make(b, old->op, 2, o, &old->attr);   /* act_grad keeps its act */
    }
    return kd_rw_copy(rw, old, in);
}

/* Reducing only axes of size 1 moves no data. */
static bool trivial_reduce(const ir_node *old)
{
    const ir_shape *s = &old->in[0]->shape;
    for (int i = 0; i < s->rank; i++)
        if (((old->attr.axes >> i) & 1) && s->dims[i] != 1) return false;
    return true;
}

/* conv2d(pad(x)) -> conv2d(x) with the padding in the convolution's own
 * attributes, when the pad only pads height and width with zeros (all pad
 * does) and the conv is its one user. Pooling is left alone: a max pool
 * never picks its own padding, but it may pick a padded zero. */
static ir_node *fold_pad_into_conv(kd_rewrite *rw, ir_node *old, ir_node **in)
{
    ir_node *p = in[0];
    if (p->op != IR_PAD || rw->uses[old->in[0]->id] != 1 || p->shape.rank != 4) return NULL;
    const ir_attrs *pa = &p->attr;
    if (pa->pad_lo[0] || pa->pad_hi[0] || pa->pad_lo[3] || pa->pad_hi[3]) return NULL;
    ir_attrs a = old->attr;
    for (int d = 0; d < 2; d++) {
        a.pad_lo[d] += pa->pad_lo[d + 1];
        a.pad_hi[d] += pa->pad_hi[d + 1];
    }
    ir_node *ops[3] = {p->in[0], in[1], old->nin == 3 ? in[2] : NULL};
    return ir_make(&rw->b, old->op, old->nin, ops, &a);
}

static ir_node *visit(kd_rewrite *rw, ir_node *old, ir_node **in)
{
    if (old->op == IR_CONV2D || old->op == IR_FUSED_CONV2D) {
        ir_node *f = fold_pad_into_conv(rw, old, in);
        return f ? f : kd_rw_copy(rw, old, in);
    }
    ir_builder *b = &rw->b;
    if (elementwise(old->op, 2)) return simplify_binary(rw, old, in);
    if (elementwise(old->op, 1)) {
        ir_node *x = in[0];
        if (x->op == IR_CONST) return ir_const(b, ir_ops[old->op]->scalar(old, x->attr.scalar, 0), old->shape);
        if (old->op == IR_NEG && x->op == IR_NEG) return x->in[0];
        if ((old->op == IR_RELU || old->op == IR_ABS) && x->op == old->op) return x;
        return kd_rw_copy(rw, old, in);
    }
    switch (old->op) {
    case IR_RESHAPE:
        if (in[0]->op == IR_RESHAPE) return ir_reshape(b, in[0]->in[0], old->shape);
        if (in[0]->op == IR_CONST) return ir_const(b, in[0]->attr.scalar, old->shape);
        return ir_reshape(b, in[0], old->shape);
    case IR_BROADCAST:
        if (in[0]->op == IR_BROADCAST) return ir_broadcast(b, in[0]->in[0], old->shape);
        if (in[0]->op == IR_CONST) return ir_const(b, in[0]->attr.scalar, old->shape);
        return ir_broadcast(b, in[0], old->shape);
    case IR_TRANSPOSE: {
        bool identity = true;
        for (int i = 0; i < old->shape.rank; i++) identity &= old->attr.perm[i] == i;
        return identity ? in[0] : kd_rw_copy(rw, old, in);
    }
    case IR_SUM:
    case IR_MEAN:
    case IR_MAX:
        if (trivial_reduce(old)) return ir_reshape(b, in[0], old->shape);
        return kd_rw_copy(rw, old, in);
    default: return kd_rw_copy(rw, old, in);
    }
}

ir_graph *kd_pass_simplify(ir_graph *g, char *why, size_t why_len)
{
    return kd_rewrite_graph(g, visit, NULL, why, why_len);
}
