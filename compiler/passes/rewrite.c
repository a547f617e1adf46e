/* rewrite.c — the copy-and-rewrite walk every pass is built on, and the
 * pipeline that runs the passes in order. */
#include "../passes.h"

#include <string.h>

/* Marks what the outputs and updates reach and counts each node's uses. */
static void analyse(kd_rewrite *rw)
{
    ir_graph *g = rw->src;
    int n = g->nodes.len;
    kd_arena *a = g->arena;
    rw->uses = kd_alloc_array(a, (size_t)(n ? n : 1), sizeof *rw->uses);
    rw->live = kd_alloc_array(a, (size_t)(n ? n : 1), sizeof *rw->live);
    for (int i = 0; i < g->outputs.len; i++) {
        const ir_node *o = g->outputs.items[i];
        rw->live[o->id] = true;
        rw->uses[o->id]++;
    }
    for (int i = 0; i < g->updates.len; i++) {
        const ir_update *u = g->updates.items[i];
        rw->live[u->value->id] = true;
        rw->uses[u->value->id]++;
    }
    for (int id = n - 1; id >= 0; id--) {
        const ir_node *x = g->nodes.items[id];
        if (!rw->live[id]) continue;
        for (int i = 0; i < x->nin; i++) {
            rw->live[x->in[i]->id] = true;
            rw->uses[x->in[i]->id]++;
        }
    }
}

ir_node *kd_rw_copy(kd_rewrite *rw, const ir_node *old, ir_node **in)
{
    if (old->nin == 0) return ir_leaf(&rw->b, old->op, old->shape, &old->attr, old->var);
    return ir_make(&rw->b, old->op, old->nin, in, &old->attr);
}

ir_graph *kd_rewrite_graph(ir_graph *src, kd_rw_visit visit, void *ctx, char *why, size_t why_len)
{
    kd_arena *a = src->arena;
    kd_rewrite rw = {.src = src, .ctx = ctx};
    rw.dst = ir_graph_new(a, src->vars);
    rw.dst->max_nodes = src->max_nodes;
    rw.b.g = rw.dst;
    rw.map = kd_alloc_array(a, (size_t)(src->nodes.len ? src->nodes.len : 1), sizeof *rw.map);
    analyse(&rw);
    ir_node *inbuf[16];
    for (int id = 0; id < src->nodes.len; id++) {
        ir_node *old = src->nodes.items[id];
        if (!rw.live[id]) continue;
        ir_node **in = old->nin <= 16 ? inbuf : kd_alloc_array(a, (size_t)old->nin, sizeof *in);
        for (int i = 0; i < old->nin; i++) in[i] = rw.map[old->in[i]->id];
        rw.b.loc = old->loc;
        rw.b.layer = old->layer;
        ir_node *n = visit ? visit(&rw, old, in) : kd_rw_copy(&rw, old, in);
        if (!n) {
            snprintf(why, why_len, "%%%d %s: %s", old->id, ir_ops[old->op]->name,
                     rw.b.why[0] ? rw.b.why : "rewrite failed");
            return NULL;
        }
        rw.map[id] = n;
    }
    for (int i = 0; i < src->outputs.len; i++)
        kd_vec_push(a, &rw.dst->outputs, rw.map[((ir_node *)src->outputs.items[i])->id]);
    for (int i = 0; i < src->updates.len; i++) {
        const ir_update *u = src->updates.items[i];
        ir_update *nu = kd_alloc(a, sizeof *nu);
        nu->var = u->var;
        nu->value = rw.map[u->value->id];
        kd_vec_push(a, &rw.dst->updates, nu);
    }
    /* A rewrite may leave nodes it built and then bypassed: drop them too. */
    if (visit) {
        kd_rewrite again = {.src = rw.dst};
        analyse(&again);
        bool dead = false;
        for (int id = 0; id < rw.dst->nodes.len && !dead; id++) dead = !again.live[id];
        if (dead) return kd_rewrite_graph(rw.dst, NULL, NULL, why, why_len);
    }
    return rw.dst;
}

static bool same_attrs(unsigned want, const ir_attrs *a, const ir_attrs *b)
{
    if ((want & IR_ATTR_AXES) && (a->axes != b->axes || a->keepdims != b->keepdims)) return false;
    if ((want & IR_ATTR_AXIS) && a->axis != b->axis) return false;
    if ((want & IR_ATTR_PERM) && memcmp(a->perm, b->perm, sizeof a->perm)) return false;
    if ((want & IR_ATTR_SLICE) && (memcmp(a->begin, b->begin, sizeof a->begin) || memcmp(a->size, b->size, sizeof a->size)))
        return false;
    if ((want & IR_ATTR_PAD) && (memcmp(a->pad_lo, b->pad_lo, sizeof a->pad_lo) || memcmp(a->pad_hi, b->pad_hi, sizeof a->pad_hi)))
        return false;
    if ((want & IR_ATTR_WINDOW) && memcmp(a->window, b->window, sizeof a->window)) return false;
    if ((want & IR_ATTR_STRIDE) && memcmp(a->stride, b->stride, sizeof a->stride)) return false;
    if ((want & IR_ATTR_DILATION) && memcmp(a->dilation, b->dilation, sizeof a->dilation)) return false;
    if ((want & IR_ATTR_TRANS) && (a->trans_a != b->trans_a || a->trans_b != b->trans_b)) return false;
    if ((want & IR_ATTR_SCALAR) && memcmp(&a->scalar, &b->scalar, sizeof a->scalar)) return false;
    if ((want & IR_ATTR_INDEX) && a->index != b->index) return false;
    if ((want & IR_ATTR_ACT) && a->act != b->act) return false;
    if ((want & IR_ATTR_SHAPE) && !ir_shape_equal(&a->shape, &b->shape)) return false;
    if ((want & IR_ATTR_SCAN) && a->scan != b->scan) return false;
    return true;
}

bool kd_node_same(const ir_node *x, const ir_node *y)
{
    if (x->op != y->op || x->nin != y->nin || !ir_shape_equal(&x->shape, &y->shape)) return false;
    for (int i = 0; i < x->nin; i++)
        if (x->in[i] != y->in[i]) return false;
    unsigned want = ir_ops[x->op]->attrs;
    if ((want & IR_ATTR_VAR || x->op == IR_VAR) && x->var != y->var) return false;
    return same_attrs(want, &x->attr, &y->attr);
}

ir_graph *kd_pass_dce(ir_graph *g, char *why, size_t why_len)
{
    return kd_rewrite_graph(g, NULL, NULL, why, why_len);
}

ir_graph *kd_optimize(ir_graph *g, const kd_pass_options *o, char *why, size_t why_len)
{
    kd_pass_options none = {0};
    if (!o) o = &none;
    if (g && !o->no_simplify) g = kd_pass_simplify(g, why, why_len);
    if (g && !o->no_cse) g = kd_pass_cse(g, why, why_len);
    if (g && !o->no_fuse) g = kd_pass_fuse(g, why, why_len);
    if (g && !o->no_simplify) g = kd_pass_simplify(g, why, why_len);
    if (g && !o->no_cse) g = kd_pass_cse(g, why, why_len);
    if (g) g = kd_pass_dce(g, why, why_len);
    return g;
}
