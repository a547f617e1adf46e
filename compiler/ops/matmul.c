/* matmul.c — the matrix product over 2-D views: [rows, last], where rows
 * flattens every leading dim (the batch included). */
#include "ops.h"
#include "../interp.h"

/* The rows of a 2-D view: a static count and whether the batch is among them. */
typedef struct rows {
    int64_t n;
    bool batched;
} rows;

static rows rows_of(const ir_shape *s)
{
    rows r = {1, s->batched};
    for (int i = s->batched ? 1 : 0; i < s->rank - 1; i++) r.n *= s->dims[i];
    return r;
}

static bool shape_matmul(ir_builder *b, ir_node *n)
{
    const ir_shape *x = &n->in[0]->shape, *y = &n->in[1]->shape;
    char s1[96], s2[96];
    if (x->rank < 1 || y->rank < 1 || (x->batched && x->rank < 2) || (y->batched && y->rank < 2))
        return ops_fail(b, n, "operands must have at least one non-batch dimension, not %s and %s",
                        ops_sh(x, s1), ops_sh(y, s2));
    bool ta = n->attr.trans_a, tb = n->attr.trans_b;
    rows xr = rows_of(x), yr = rows_of(y);
    int64_t xlast = x->dims[x->rank - 1], ylast = y->dims[y->rank - 1];
    /* The contracted dim of op(a) and of op(b), and op(b)'s columns. */
    rows ka = ta ? xr : (rows){xlast, false};
    rows kb = tb ? (rows){ylast, false} : yr;
    rows nb = tb ? yr : (rows){ylast, false};
    if (nb.batched)
        return ops_fail(b, n, "the batch of %s cannot become a column of the product", ops_sh(y, s2));
    if (ka.n != kb.n || ka.batched != kb.batched)
        return ops_fail(b, n, "cannot multiply %s%s by %s%s: inner dimensions differ",
                        ops_sh(x, s1), ta ? "^T" : "", ops_sh(y, s2), tb ? "^T" : "");
    ir_shape out = {0};
    if (ta) {
        out.rank = 2;
        out.dims[0] = xlast;
        out.dims[1] = nb.n;
    } else {
        out = *x;
        out.dims[out.rank - 1] = nb.n;
    }
    n->shape = out;
    if (ir_shape_elems(&out) < 0) return ops_fail(b, n, "result too large");
    return true;
}

/* C[M, N] = op(A) op(B) over the 2-D views. */
static void eval_matmul(const ir_eval_ctx *c, const ir_node *n)
{
    const ir_shape *xs = &n->in[0]->shape, *ys = &n->in[1]->shape;
    const double *A = ir_eval_in(c, n, 0), *B = ir_eval_in(c, n, 1);
    double *C = ir_eval_out(c, n);
    int64_t xc = xs->dims[xs->rank - 1], xr = ir_eval_count(c, xs) / xc;
    int64_t yc = ys->dims[ys->rank - 1], yr = ir_eval_count(c, ys) / yc;
    bool ta = n->attr.trans_a, tb = n->attr.trans_b;
    int64_t M = ta ? xc : xr, K = ta ? xr : xc, N = tb ? yr : yc;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t k = 0; k < K; k++)
                acc += (ta ? A[k * xc + i] : A[i * xc + k]) * (tb ? B[j * yc + k] : B[k * yc + j]);
            C[i * N + j] = acc;
        }
}

/* Each operand's gradient is another matmul, the flags chosen so that the
 * product has the operand's 2-D view; a reshape restores its leading dims. */
static void vjp_matmul(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    ir_node *A = n->in[0], *B = n->in[1];
    ir_node *dA = NULL, *dB = NULL;
    bool ta = n->attr.trans_a, tb = n->attr.trans_b;
    if (!ta && !tb) {          /* Y = A B */
        if (want[0]) dA = ir_matmul(b, dy, B, false, true);
        if (want[1]) dB = ir_matmul(b, A, dy, true, false);
    } else if (!ta && tb) {    /* Y = A B^T */
        if (want[0]) dA = ir_matmul(b, dy, B, false, false);
        if (want[1]) dB = ir_matmul(b, dy, A, true, false);
    } else if (ta && !tb) {    /* Y = A^T B */
        if (want[0]) dA = ir_matmul(b, B, dy, false, true);
        if (want[1]) dB = ir_matmul(b, A, dy, false, false);
    } else {                   /* Y = A^T B^T */
        if (want[0]) dA = ir_matmul(b, B, dy, true, true);
        if (want[1]) dB = ir_matmul(b, dy, A, true, true);
    }
    if (want[0]) g[0] = ir_reshape(b, dA, A->shape);
    if (want[1]) g[1] = ir_reshape(b, dB, B->shape);
}

/* Each element of op(A) meets each of op(B)'s N columns once: elems(A) * N multiply-adds
 * (with trans_a the sum runs over A's rows, batch included, and it is the same count). */
int64_t ops_flops_matmul(const ir_node *n, int64_t batch)
{
    return 2 * ops_elems(&n->in[0]->shape, batch) * n->shape.dims[n->shape.rank - 1];
}

const ir_op_info ir_op_matmul = {.name = "matmul", .arity = 2, .attrs = IR_ATTR_TRANS,
                                 .shape = shape_matmul, .vjp = vjp_matmul, .eval = eval_matmul,
                                 .flops = ops_flops_matmul};
