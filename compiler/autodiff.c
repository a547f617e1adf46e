/* autodiff.c — the reverse sweep. Nodes are in topological (creation) order,
 * so walking ids downward from the loss visits every node after all of its
 * users; each node's gradient is complete when it is reached. */
#include "autodiff.h"

#include <string.h>

ir_node **ir_gradients(ir_builder *b, ir_node *loss, int n, ir_node *const *wrt)
{
    ir_graph *g = b->g;
    if (!loss) return NULL;
    int top = loss->id + 1;
    bool *leads = kd_alloc_array(g->arena, (size_t)top, sizeof *leads);  /* reaches a wrt */
    bool *feeds = kd_alloc_array(g->arena, (size_t)top, sizeof *feeds);  /* reaches the loss */
    ir_node **grad = kd_alloc_array(g->arena, (size_t)top, sizeof *grad);
    ir_node **out = kd_alloc_array(g->arena, (size_t)(n > 0 ? n : 1), sizeof *out);

    for (int i = 0; i < n; i++)
        if (wrt[i] && wrt[i]->id < top && g->nodes.items[wrt[i]->id] == wrt[i]) leads[wrt[i]->id] = true;
    for (int id = 0; id < top; id++) {
        const ir_node *x = g->nodes.items[id];
        for (int i = 0; i < x->nin && !leads[id]; i++) leads[id] = leads[x->in[i]->id];
    }
    feeds[loss->id] = true;
    for (int id = top - 1; id >= 0; id--) {
        const ir_node *x = g->nodes.items[id];
        if (feeds[id])
            for (int i = 0; i < x->nin; i++) feeds[x->in[i]->id] = true;
    }
    if (!leads[loss->id]) return out;

    /* The seed: d(sum(loss))/d(loss) = 1 everywhere. */
    grad[loss->id] = ir_const(b, 1, loss->shape);
    if (!grad[loss->id]) return NULL;

    kd_loc saved_loc = b->loc;
    const char *saved_layer = b->layer;
    bool want[16];
    for (int id = top - 1; id >= 0; id--) {
        ir_node *x = g->nodes.items[id];
        if (!grad[id] || x->nin == 0) continue;
        const ir_op_info *info = ir_ops[x->op];
        bool *w = x->nin <= (int)(sizeof want / sizeof want[0]) ? want
                  : kd_alloc_array(g->arena, (size_t)x->nin, sizeof *w);
        bool any = false;
        for (int i = 0; i < x->nin; i++) {
            w[i] = leads[x->in[i]->id] && feeds[x->in[i]->id];
            any |= w[i];
        }
        if (!any) continue;
        if (!info->vjp) {
            snprintf(b->why, sizeof b->why, "%s: no gradient rule (is it on the forward path?)", info->name);
            return NULL;
        }
        ir_node **gi = kd_alloc_array(g->arena, (size_t)x->nin, sizeof *gi);
        /* Backward nodes carry the forward node's statement and layer, so the
         * dump and the generated comments say where they came from. */
        b->loc = x->loc;
        b->layer = x->layer;
        info->vjp(b, x, grad[id], w, gi);
        for (int i = 0; i < x->nin; i++) {
            if (!w[i] || !gi[i]) continue;
            ir_node *in = x->in[i];
            ir_node *d = ir_sum_to(b, gi[i], &in->shape);
            if (d && !ir_shape_equal(&d->shape, &in->shape)) {
                char s1[96], s2[96];
                snprintf(b->why, sizeof b->why, "%s: gradient %s for an operand %s", info->name,
                         ir_shape_sample(&d->shape, s1, sizeof s1), ir_shape_sample(&in->shape, s2, sizeof s2));
                d = NULL;
            }
            if (!d) {
                b->loc = saved_loc;
                b->layer = saved_layer;
                return NULL;
            }
            grad[in->id] = grad[in->id] ? ir_binary(b, IR_ADD, grad[in->id], d) : d;
            if (!grad[in->id]) {
                b->loc = saved_loc;
                b->layer = saved_layer;
                return NULL;
            }
        }
    }
    b->loc = saved_loc;
    b->layer = saved_layer;
    for (int i = 0; i < n; i++) out[i] = wrt[i] && wrt[i]->id < top ? grad[wrt[i]->id] : NULL;
    return out;
}

ir_node **ir_var_gradients(ir_builder *b, ir_node *loss)
{
    ir_graph *g = b->g;
    if (!loss) return NULL;
    int nvars = g->vars ? g->vars->len : 0;
    ir_node **per_var = kd_alloc_array(g->arena, (size_t)(nvars > 0 ? nvars : 1), sizeof *per_var);
    kd_vec reads = {0};
    for (int id = 0; id <= loss->id; id++) {
        ir_node *x = g->nodes.items[id];
        if (x->op != IR_VAR || x->var < 0 || x->var >= nvars) continue;
        const kd_var *v = g->vars->items[x->var];
        if (v->kind == VAR_WEIGHT && v->trainable) kd_vec_push(g->arena, &reads, x);
    }
    ir_node **d = ir_gradients(b, loss, reads.len, (ir_node *const *)reads.items);
    if (!d) return NULL;
    for (int i = 0; i < reads.len; i++) {
        if (!d[i]) continue;
        int v = ((ir_node *)reads.items[i])->var;
        per_var[v] = per_var[v] ? ir_binary(b, IR_ADD, per_var[v], d[i]) : d[i];
        if (!per_var[v]) return NULL;
    }
    return per_var;
}
