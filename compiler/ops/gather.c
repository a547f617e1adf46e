/* gather.c — rows of a table picked by integer indices (Keras' Embedding):
 *   gather (table [V, D], idx i32 [N, ...]) -> y [N, ..., D]
 *     y[i, :] = table[idx[i], :] when 0 <= idx[i] < V, else zeros
 *   gather_grad (idx, dy [N, ..., D]) -> dtable [V, D] (attr.shape)
 *     dtable[v, :] = the sum of dy[i, :] over the i with idx[i] = v
 * An index outside the table reads nothing and adds nothing: Keras raises on
 * the CPU, TensorFlow's GPU kernel returns zeros, and generated code has no
 * way to raise, so it takes the GPU's answer (docs/language.md). */
#include "ops.h"
#include "../interp.h"

#include <string.h>

static bool gather_dims(ir_builder *b, const ir_node *n, const ir_shape *table, const ir_shape *idx, ir_shape *out)
{
    char s1[96], s2[96];
    if (table->rank != 2 || table->batched)
        return ops_fail(b, n, "the table must be [rows, columns] without a batch, not %s", ops_sh(table, s1));
    if (!idx->batched)
        return ops_fail(b, n, "the indices %s must have a batch dimension", ops_sh(idx, s2));
    if (idx->rank + 1 > IR_MAX_RANK)
        return ops_fail(b, n, "indices %s leave no room for the row axis", ops_sh(idx, s2));
    *out = *idx;
    out->dims[out->rank++] = table->dims[1];
    return true;
}

static bool shape_gather(ir_builder *b, ir_node *n)
{
    if (!ir_is_i32(n->in[1])) return ops_fail(b, n, "the indices must be an integer (i32) tensor");
    return gather_dims(b, n, &n->in[0]->shape, &n->in[1]->shape, &n->shape);
}

static bool shape_gather_grad(ir_builder *b, ir_node *n)
{
    ir_shape y;
    char s1[96], s2[96];
    if (!ir_is_i32(n->in[0])) return ops_fail(b, n, "the indices must be an integer (i32) tensor");
    if (!ops_shape_attr(b, n) || !gather_dims(b, n, &n->attr.shape, &n->in[0]->shape, &y)) return false;
    if (!ir_shape_equal(&y, &n->in[1]->shape))
        return ops_fail(b, n, "dy is %s, the gather gives %s", ops_sh(&n->in[1]->shape, s1), ops_sh(&y, s2));
    return true;
}

/* The row an index names, or -1 outside the table. */
static int64_t row_of(double t, int64_t rows) { return t >= 0 && t < (double)rows ? (int64_t)t : -1; }

static void eval_gather(const ir_eval_ctx *c, const ir_node *n)
{
    const double *table = ir_eval_in(c, n, 0), *idx = ir_eval_in(c, n, 1);
    double *y = ir_eval_out(c, n);
    int64_t V = n->in[0]->shape.dims[0], D = n->in[0]->shape.dims[1];
    for (int64_t i = 0, count = ir_eval_count(c, &n->in[1]->shape); i < count; i++) {
        int64_t r = row_of(idx[i], V);
        for (int64_t d = 0; d < D; d++) y[i * D + d] = r >= 0 ? table[r * D + d] : 0;
    }
}

static void eval_gather_grad(const ir_eval_ctx *c, const ir_node *n)
{
    const double *idx = ir_eval_in(c, n, 0), *dy = ir_eval_in(c, n, 1);
    double *dt = ir_eval_out(c, n);
    int64_t V = n->shape.dims[0], D = n->shape.dims[1];
    memset(dt, 0, (size_t)(V * D) * sizeof *dt);
    for (int64_t i = 0, count = ir_eval_count(c, &n->in[0]->shape); i < count; i++) {
        int64_t r = row_of(idx[i], V);
        if (r >= 0)
            for (int64_t d = 0; d < D; d++) dt[r * D + d] += dy[i * D + d];
    }
}

/* The indices get no gradient: they are integers. */
static void vjp_gather(ir_builder *b, ir_node *n, ir_node *dy, const bool *want, ir_node **g)
{
    if (!want[0]) return;
    ir_attrs a = ops_attrs();
    a.shape = n->in[0]->shape;
    ir_node *in[2] = {n->in[1], dy};
    g[0] = ir_make(b, IR_GATHER_GRAD, 2, in, &a);
}

const ir_op_info ir_op_gather = {.name = "gather", .arity = 2, .shape = shape_gather, .vjp = vjp_gather,
                                 .eval = eval_gather};
const ir_op_info ir_op_gather_grad = {.name = "gather_grad", .arity = 2, .attrs = IR_ATTR_SHAPE,
                                      .shape = shape_gather_grad, .eval = eval_gather_grad};
