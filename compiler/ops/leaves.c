/* leaves.c — the graph's leaves: inputs, labels, variable reads, constants and
 * run-time hyperparameters. Their shape comes from attr.shape (ir_leaf). */
#include "ops.h"
#include "../interp.h"

#include <string.h>

static bool shape_fed(ir_builder *b, ir_node *n)
{
    if (!ops_shape_attr(b, n)) return false;
    if (!n->shape.batched) return ops_fail(b, n, "must have a batch dimension");
    if (n->attr.index < 0) return ops_fail(b, n, "negative index %d", n->attr.index);
    return true;
}

static bool shape_var(ir_builder *b, ir_node *n)
{
    if (!ops_shape_attr(b, n)) return false;
    if (n->shape.batched) return ops_fail(b, n, "a variable has no batch dimension");
    kd_vec *vars = b->g->vars;
    if (vars) {
        if (n->var < 0 || n->var >= vars->len) return ops_fail(b, n, "no variable #%d", n->var);
        const kd_var *v = vars->items[n->var];
        char s1[96], s2[96];
        if (!ir_shape_equal(&v->shape, &n->shape))
            return ops_fail(b, n, "%s has shape %s, read as %s", v->name,
                            ops_sh(&v->shape, s1), ops_sh(&n->shape, s2));
    }
    return true;
}

static bool shape_hyper(ir_builder *b, ir_node *n)
{
    if (!ops_shape_attr(b, n)) return false;
    if (n->shape.rank != 0) return ops_fail(b, n, "a hyperparameter is a scalar");
    if (n->attr.index < 0 || n->attr.index >= IR_HYPER_COUNT)
        return ops_fail(b, n, "no hyperparameter #%d", n->attr.index);
    return true;
}

static void copy_in(const ir_eval_ctx *c, const ir_node *n, const double *src)
{
    memcpy(ir_eval_out(c, n), src, (size_t)ir_eval_count(c, &n->shape) * sizeof(double));
}

static void eval_input(const ir_eval_ctx *c, const ir_node *n) { copy_in(c, n, c->feed->inputs[n->attr.index]); }
static void eval_label(const ir_eval_ctx *c, const ir_node *n) { copy_in(c, n, c->feed->labels[n->attr.index]); }
static void eval_var(const ir_eval_ctx *c, const ir_node *n) { copy_in(c, n, c->feed->vars[n->var]); }

static void eval_const(const ir_eval_ctx *c, const ir_node *n)
{
    double *y = ir_eval_out(c, n);
    for (int64_t i = 0, e = ir_eval_count(c, &n->shape); i < e; i++) y[i] = n->attr.scalar;
}

static void eval_hyper(const ir_eval_ctx *c, const ir_node *n) { ir_eval_out(c, n)[0] = c->hyper[n->attr.index]; }

/* Leaves have no inputs, so no vjp: autodiff stops at them. */
const ir_op_info ir_op_input = {.name = "input", .arity = 0, .attrs = IR_ATTR_INDEX | IR_ATTR_SHAPE,
                                .shape = shape_fed, .eval = eval_input};
const ir_op_info ir_op_label = {.name = "label", .arity = 0, .attrs = IR_ATTR_INDEX | IR_ATTR_SHAPE,
                                .shape = shape_fed, .eval = eval_label};
const ir_op_info ir_op_var = {.name = "var", .arity = 0, .attrs = IR_ATTR_VAR | IR_ATTR_SHAPE,
                              .shape = shape_var, .eval = eval_var};
const ir_op_info ir_op_const = {.name = "const", .arity = 0, .attrs = IR_ATTR_SCALAR | IR_ATTR_SHAPE,
                                .shape = ops_shape_attr, .eval = eval_const};
const ir_op_info ir_op_hyper = {.name = "hyper", .arity = 0, .attrs = IR_ATTR_INDEX,
                                .shape = shape_hyper, .eval = eval_hyper};
