/* autodiff.h — symbolic reverse mode over the graph IR: the gradient of a
 * scalar is built as new nodes of the same graph, one vjp rule per op (ops/),
 * so the backward pass goes through the same passes and backends as the
 * forward pass. */
#ifndef KDSL_AUTODIFF_H
#define KDSL_AUTODIFF_H

#include "ir.h"

/* d(loss)/d(wrt[i]) for each i, as new nodes appended to loss's graph; an
 * entry is NULL when loss does not depend on wrt[i]. Only the nodes on a path
 * from some wrt[i] to loss are differentiated: nothing is built for the rest.
 * A non-scalar loss is differentiated as the sum of its elements. Returns an
 * array of n (arena) or NULL with b->why set. */
ir_node **ir_gradients(ir_builder *b, ir_node *loss, int n, ir_node *const *wrt);

/* Per variable index (g->vars): the gradient of loss w.r.t. every trainable
 * VAR_WEIGHT, summed over all the reads of it (shared layers read a variable
 * several times); NULL for variables that are not trainable or that loss does
 * not depend on. Returns an array of g->vars->len or NULL with b->why set. */
ir_node **ir_var_gradients(ir_builder *b, ir_node *loss);

#endif
