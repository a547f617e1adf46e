/* schedule.c — orders a training step's nodes so that the optimizer runs
 * weight by weight inside the backward pass.
 *
 * train_graph.c appends the optimizer after the whole backward pass, so run in
 * creation order every weight gradient would be alive at once: for the MLP
 * 784-256-128-64-32-10 that is a second copy of the weights in the arena. Here
 * the optimizer's nodes (those between the gradients and the updates) move up
 * to run as soon as their operands exist — and, for a node that overwrites a
 * variable, once every other reader of that variable has run, so that the
 * update can still be done in place. Everything else keeps its order.
 *
 * The pass runs before the others: they copy nodes in order, so the order
 * survives them. It changes no value. */
#include "../passes.h"

#include <stdlib.h>
#include <string.h>

typedef struct sched {
    const ir_graph *g;
    bool *opt;             /* an optimizer node: may move */
    bool *done;
    int *order, n;
    int **readers, *nreaders;   /* per variable: the non-optimizer nodes that read it */
    int *root_var;         /* per node: the variable it overwrites, or -1 */
    /* Kahn's algorithm over the optimizer nodes: what each still waits for (operand
     * edges, and for a root the readers of its variable), who waits on whom. */
    int *need;
    int **waiters, *nwaiters;   /* per node: the optimizer nodes its emission counts down */
    int *heap, nheap;      /* optimizer nodes ready to run, smallest id first */
} sched;

static void add_waiter(sched *S, kd_arena *a, int on, int who)
{
    if (S->nwaiters[on] % 4 == 0) {
        int *w = kd_alloc_array(a, (size_t)S->nwaiters[on] + 4, sizeof *w);
        if (S->nwaiters[on]) memcpy(w, S->waiters[on], (size_t)S->nwaiters[on] * sizeof *w);
        S->waiters[on] = w;
    }
    S->waiters[on][S->nwaiters[on]++] = who;
    S->need[who]++;
}

static void heap_push(sched *S, int id)
{
    int i = S->nheap++;
    S->heap[i] = id;
    while (i > 0 && S->heap[(i - 1) / 2] > S->heap[i]) {
        int p = (i - 1) / 2, t = S->heap[p];
        S->heap[p] = S->heap[i];
        S->heap[i] = t;
        i = p;
    }
}

static int heap_pop(sched *S)
{
    int top = S->heap[0], i = 0;
    S->heap[0] = S->heap[--S->nheap];
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < S->nheap && S->heap[l] < S->heap[m]) m = l;
        if (r < S->nheap && S->heap[r] < S->heap[m]) m = r;
        if (m == i) break;
        int t = S->heap[m];
        S->heap[m] = S->heap[i];
        S->heap[i] = t;
        i = m;
    }
    return top;
}

static void emit(sched *S, int id)
{
    if (S->done[id]) return;
    const ir_node *x = S->g->nodes.items[id];
    for (int i = 0; i < x->nin; i++) emit(S, x->in[i]->id);
    S->done[id] = true;
    S->order[S->n++] = id;
    for (int i = 0; i < S->nwaiters[id]; i++) {
        int w = S->waiters[id][i];
        if (--S->need[w] == 0 && !S->done[w]) heap_push(S, w);
    }
}

/* Marks the readers of a value through the reshapes that alias it. */
static void add_readers(sched *S, kd_arena *a, const ir_node *x, int v, ir_node **users, int *first, int *next)
{
    for (int u = first[x->id]; u >= 0; u = next[u]) {
        const ir_node *user = users[u];
        if (S->opt[user->id]) continue;
        if (user->op == IR_RESHAPE) {
            add_readers(S, a, user, v, users, first, next);
            continue;
        }
        int *r = kd_alloc_array(a, (size_t)S->nreaders[v] + 1, sizeof *r);
        if (S->nreaders[v]) memcpy(r, S->readers[v], (size_t)S->nreaders[v] * sizeof *r);
        r[S->nreaders[v]++] = user->id;
        S->readers[v] = r;
    }
}

ir_graph *kd_pass_schedule(ir_graph *g, int ngrads, ir_node *const *grads, char *why, size_t why_len)
{
    kd_arena *a = g->arena;
    int n = g->nodes.len, nvars = g->vars ? g->vars->len : 0;
    sched S = {.g = g};
    S.opt = kd_alloc_array(a, (size_t)n + 1, sizeof *S.opt);
    S.done = kd_alloc_array(a, (size_t)n + 1, sizeof *S.done);
    S.order = kd_alloc_array(a, (size_t)n + 1, sizeof *S.order);
    S.root_var = kd_alloc_array(a, (size_t)n + 1, sizeof *S.root_var);
    S.readers = kd_alloc_array(a, (size_t)nvars + 1, sizeof *S.readers);
    S.nreaders = kd_alloc_array(a, (size_t)nvars + 1, sizeof *S.nreaders);

    /* Ancestors of the outputs and of the gradients stay where they are. */
    bool *fixed = kd_alloc_array(a, (size_t)n + 1, sizeof *fixed);
    for (int i = 0; i < g->outputs.len; i++) fixed[((ir_node *)g->outputs.items[i])->id] = true;
    for (int i = 0; i < ngrads; i++)
        if (grads[i]) fixed[grads[i]->id] = true;
    for (int id = n - 1; id >= 0; id--) {
        const ir_node *x = g->nodes.items[id];
        if (fixed[id])
            for (int i = 0; i < x->nin; i++) fixed[x->in[i]->id] = true;
    }
    /* The optimizer: what the weight and slot updates reach without passing a fixed node. */
    for (int id = 0; id < n; id++) S.root_var[id] = -1;
    for (int i = 0; i < g->updates.len; i++) {
        const ir_update *u = g->updates.items[i];
        const kd_var *v = u->var >= 0 && u->var < nvars ? g->vars->items[u->var] : NULL;
        if (!v || v->kind == VAR_STATE || fixed[u->value->id]) continue;
        S.opt[u->value->id] = true;
        S.root_var[u->value->id] = u->var;
    }
    for (int id = n - 1; id >= 0; id--) {
        const ir_node *x = g->nodes.items[id];
        if (S.opt[id])
            for (int i = 0; i < x->nin; i++)
                if (!fixed[x->in[i]->id]) S.opt[x->in[i]->id] = true;
    }
    /* Users, as linked lists, to find each variable's readers. */
    ir_node **users = kd_alloc_array(a, (size_t)n * 4 + 1, sizeof *users);
    int *first = kd_alloc_array(a, (size_t)n + 1, sizeof *first), *next = NULL, nu = 0, cap = n * 4 + 1;
    next = kd_alloc_array(a, (size_t)cap, sizeof *next);
    for (int id = 0; id < n; id++) first[id] = -1;
    for (int id = 0; id < n; id++) {
        ir_node *x = g->nodes.items[id];
        for (int i = 0; i < x->nin; i++) {
            if (nu == cap) {
                int ncap = cap * 2;
                ir_node **u2 = kd_alloc_array(a, (size_t)ncap, sizeof *u2);
                int *n2 = kd_alloc_array(a, (size_t)ncap, sizeof *n2);
                memcpy(u2, users, (size_t)nu * sizeof *u2);
                memcpy(n2, next, (size_t)nu * sizeof *n2);
                users = u2, next = n2, cap = ncap;
            }
            users[nu] = x;
            next[nu] = first[x->in[i]->id];
            first[x->in[i]->id] = nu++;
        }
    }
    for (int id = 0; id < n; id++) {
        const ir_node *x = g->nodes.items[id];
        if (x->op == IR_VAR && x->var >= 0 && x->var < nvars) add_readers(&S, a, x, x->var, users, first, next);
    }

    /* Who waits on whom: operand edges, and each root on its variable's readers. */
    S.need = kd_alloc_array(a, (size_t)n + 1, sizeof *S.need);
    S.waiters = kd_alloc_array(a, (size_t)n + 1, sizeof *S.waiters);
    S.nwaiters = kd_alloc_array(a, (size_t)n + 1, sizeof *S.nwaiters);
    S.heap = kd_alloc_array(a, (size_t)n + 1, sizeof *S.heap);
    for (int id = 0; id < n; id++) {
        if (!S.opt[id]) continue;
        const ir_node *x = g->nodes.items[id];
        for (int i = 0; i < x->nin; i++) add_waiter(&S, a, x->in[i]->id, id);
        int v = S.root_var[id];
        if (v >= 0)
            for (int r = 0; r < S.nreaders[v]; r++) add_waiter(&S, a, S.readers[v][r], id);
    }
    for (int id = 0; id < n; id++)
        if (S.opt[id] && S.need[id] == 0) heap_push(&S, id);

    /* Fixed nodes in order; after each, every optimizer node that has become ready. */
    for (int id = 0; id < n; id++) {
        while (S.nheap > 0) emit(&S, heap_pop(&S));
        if (!S.opt[id]) emit(&S, id);
    }
    while (S.nheap > 0) emit(&S, heap_pop(&S));
    for (int id = 0; id < n; id++) emit(&S, id);

    kd_rewrite rw = {.src = g};
    rw.dst = ir_graph_new(a, g->vars);
    rw.dst->max_nodes = g->max_nodes;
    rw.b.g = rw.dst;
    rw.map = kd_alloc_array(a, (size_t)n + 1, sizeof *rw.map);
    ir_node *inbuf[16];
    for (int k = 0; k < S.n; k++) {
        ir_node *old = g->nodes.items[S.order[k]];
        ir_node **in = old->nin <= 16 ? inbuf : kd_alloc_array(a, (size_t)old->nin, sizeof *in);
        for (int i = 0; i < old->nin; i++) in[i] = rw.map[old->in[i]->id];
        rw.b.loc = old->loc;
        rw.b.layer = old->layer;
        rw.map[old->id] = kd_rw_copy(&rw, old, in);
        if (!rw.map[old->id]) {
            snprintf(why, why_len, "%%%d %s: %s", old->id, ir_ops[old->op]->name, rw.b.why);
            return NULL;
        }
    }
    for (int i = 0; i < g->outputs.len; i++) kd_vec_push(a, &rw.dst->outputs, rw.map[((ir_node *)g->outputs.items[i])->id]);
    for (int i = 0; i < g->updates.len; i++) {
        const ir_update *u = g->updates.items[i];
        ir_update *nu2 = kd_alloc(a, sizeof *nu2);
        nu2->var = u->var;
        nu2->value = rw.map[u->value->id];
        kd_vec_push(a, &rw.dst->updates, nu2);
    }
    return rw.dst;
}
