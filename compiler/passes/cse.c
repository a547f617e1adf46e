/* cse.c — common subexpression elimination: while copying, a node equal to
 * one already built (same op, operands, shape and attributes; kd_node_same)
 * is replaced by it. Operands are rewritten first, so equal chains collapse
 * from the leaves up. Dropout masks with the same salt are the same mask (the
 * mask is a pure function of seed, step, salt and index). */
#include "../passes.h"

#include <string.h>

typedef struct cse_table {
    ir_node **slots;
    size_t mask;
} cse_table;

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h;
}

static uint64_t hash_node(const ir_node *n)
{
    uint64_t h = mix(0, (uint64_t)n->op);
    for (int i = 0; i < n->nin; i++) h = mix(h, (uint64_t)n->in[i]->id);
    for (int i = 0; i < n->shape.rank; i++) h = mix(h, (uint64_t)n->shape.dims[i]);
    uint64_t bits;
    memcpy(&bits, &n->attr.scalar, sizeof bits);
    h = mix(h, bits);
    h = mix(h, (uint64_t)n->attr.index);
    h = mix(h, (uint64_t)n->attr.axes);
    h = mix(h, (uint64_t)(n->var + 1));
    return h;
}

static ir_node *visit(kd_rewrite *rw, ir_node *old, ir_node **in)
{
    cse_table *t = rw->ctx;
    ir_node probe = *old;
    probe.in = in;
    if (old->op == IR_VAR) probe.var = old->var;
    size_t at = (size_t)hash_node(&probe) & t->mask;
    for (; t->slots[at]; at = (at + 1) & t->mask)
        if (kd_node_same(t->slots[at], &probe)) return t->slots[at];
    ir_node *n = kd_rw_copy(rw, old, in);
    if (n) {
        /* The builder may return an operand (reshape to the same shape): only index new nodes. */
        size_t slot = (size_t)hash_node(n) & t->mask;
        while (t->slots[slot] && t->slots[slot] != n) slot = (slot + 1) & t->mask;
        t->slots[slot] = n;
    }
    return n;
}

ir_graph *kd_pass_cse(ir_graph *g, char *why, size_t why_len)
{
    cse_table t;
    size_t cap = 16;
    while (cap < (size_t)g->nodes.len * 2 + 16) cap *= 2;
    t.slots = kd_alloc_array(g->arena, cap, sizeof *t.slots);
    t.mask = cap - 1;
    return kd_rewrite_graph(g, visit, &t, why, why_len);
}
