/* lower.c — one graph into one loop-IR function.
 *
 *  1. classify   how each node's value exists: a caller's buffer (inputs,
 *                labels, variables), an expression (constants, hyperparameters,
 *                dropout masks), an alias (reshape), inlined into its one user's
 *                loop nest (elementwise chains), or a kernel of its own.
 *  2. schedule   kernels run in node order (the graph is topological); an
 *                inlined node runs in its root's kernel.
 *  3. bind       results go straight to their destinations when that is safe:
 *                outputs[i], grads, the variable an update overwrites. Anything
 *                else is copied there by a kernel at the end.
 *  4. generate   each kernel's statements (lower_loops.c, lower_calls.c).
 *  5. fuse       neighbouring elementwise loops of one shape, then temporaries
 *                that live within one iteration become locals (lower_fuse.c).
 *  6. plan       arena offsets from liveness (arena_plan.c).
 *
 * An update may overwrite its variable in place only when every read of the
 * old value comes earlier, or in the same elementwise loop at the same index
 * (read before written): Adam's m = m + (g - m)(1 - b1) runs in place. */
#include "lower_internal.h"

#include <stdarg.h>
#include <string.h>

bool lw_fail(lower *L, const char *fmt, ...)
{
    if (!L->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(L->why, sizeof L->why, fmt, ap);
        va_end(ap);
    }
    L->failed = true;
    return false;
}

void lw_strides(const ir_shape *s, int64_t *st)
{
    int64_t acc = 1;
    for (int i = s->rank - 1; i >= 0; i--) {
        st[i] = acc;
        if (s->dims[i] != IR_BATCH) acc *= s->dims[i];
    }
}

lp_expr *lw_dim(lower *L, const ir_shape *s, int d)
{
    return s->dims[d] == IR_BATCH ? lp_param_ref(L->a, LP_P_BATCH) : lp_int(L->a, s->dims[d]);
}

lp_expr *lw_count(lower *L, const ir_shape *s)
{
    lp_expr *n = lp_int(L->a, ir_shape_elems(s));
    return s->batched ? lp_bin(L->a, LP_MUL, lp_param_ref(L->a, LP_P_BATCH), n) : n;
}

const char *lw_shape_text(lower *L, const ir_shape *s)
{
    char buf[256];
    size_t at = 0;
    buf[at++] = '[';
    for (int i = 0; i < s->rank && at < sizeof buf - 32; i++) {
        int k = s->dims[i] == IR_BATCH ? snprintf(buf + at, sizeof buf - at, "%sbatch", i ? ", " : "")
                                       : snprintf(buf + at, sizeof buf - at, "%s%lld", i ? ", " : "",
                                                  (long long)s->dims[i]);
        if (k > 0) at += (size_t)k;
    }
    buf[at++] = ']';
    buf[at] = 0;
    return kd_strdup(L->a, buf);
}

lp_buf *lw_arena_buf(lower *L, const ir_shape *s, const char *name, const char *note)
{
    lp_buf *b = lp_new_buf(L->a, L->f, LP_ARENA, name);
    b->elems = ir_shape_elems(s);
    b->batched = s->batched;
    b->note = note;
    b->local = !b->batched && b->elems <= LP_LOCAL_MAX;
    return b;
}

/* ---- caller buffers --------------------------------------------------------------- */

/* "dense/kernel" -> "dense_kernel" */
static const char *c_name(lower *L, const char *prefix, const char *name)
{
    char *s = kd_format(L->a, "%s%s", prefix, name);
    for (char *c = s; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9'))) *c = '_';
    return s;
}

static lp_buf *var_buf(lower *L, int v)
{
    if (L->vars[v]) return L->vars[v];
    const lp_program *p = L->p;
    bool grad = v >= p->nvars;
    const kd_var *var = p->vars[grad ? v - p->nvars : v];
    lp_space space = grad ? LP_GRADS : var->kind == VAR_SLOT ? LP_OPT : LP_PARAMS;
    lp_buf *b = lp_new_buf(L->a, L->f, space, c_name(L, grad ? "g_" : space == LP_OPT ? "s_" : "p_", var->name));
    b->var = var->index;
    b->offset = grad ? p->grad_offset[var->index] : var->offset;
    b->elems = ir_shape_elems(&var->shape);
    b->is_const = grad || (space == LP_PARAMS && L->params_const);
    b->note = grad ? kd_format(L->a, "d %s", var->name) : var->name;
    L->vars[v] = b;
    return b;
}

static lp_buf *grad_buf(lower *L, int v)
{
    const lp_program *p = L->p;
    const kd_var *var = p->vars[v];
    lp_buf *b = lp_new_buf(L->a, L->f, LP_GRADS, c_name(L, "g_", var->name));
    b->var = v;
    b->offset = p->grad_offset[v];
    b->elems = ir_shape_elems(&var->shape);
    b->note = kd_format(L->a, "d %s", var->name);
    return b;
}

static lp_buf *io_buf(lower *L, lp_space space, int index)
{
    lp_buf **slot = space == LP_INPUT ? &L->inputs[index] : space == LP_LABEL ? &L->labels[index] : &L->outputs[index];
    if (*slot) return *slot;
    const lp_io *io = space == LP_INPUT ? &L->p->inputs[index] : space == LP_LABEL ? &L->p->labels[index]
                      : &L->p->outputs[index];
    const char *prefix = space == LP_INPUT ? "in" : space == LP_LABEL ? "label" : "out";
    lp_buf *b = lp_new_buf(L->a, L->f, space, kd_format(L->a, "%s%d", prefix, index));
    b->index = index;
    b->elems = io->elems;
    if (space == LP_INPUT && io->i32) b->elem = LP_ELEM_I32;
    b->batched = true;
    b->is_const = space != LP_OUTPUT;
    b->note = io->name;
    *slot = b;
    return b;
}

/* ---- 1. classify ------------------------------------------------------------------ */

static void add_user(lower *L, ir_node *x, ir_node *user)
{
    lw_node *w = &L->n[x->id];
    if (w->nusers % 8 == 0) {
        ir_node **u = kd_alloc_array(L->a, (size_t)w->nusers + 8, sizeof *u);
        if (w->nusers) memcpy(u, w->users, (size_t)w->nusers * sizeof *u);
        w->users = u;
    }
    w->users[w->nusers++] = user;
}

/* Whether user reads operand x through an expression (a loop nest) rather
 * than through a pointer. */
static bool reads_as_expr(const ir_node *user, const ir_node *x, bool position_free)
{
    if (user->op == IR_SOFTMAX_XENT_GRAD) return user->in[2] == x && user->in[0] != x && user->in[1] != x;
    if (!lw_is_loop_op(user)) return false;
    if (lw_is_elementwise(user->op) || user->op == IR_SUM || user->op == IR_MEAN || user->op == IR_MAX ||
        user->op == IR_MAX_GRAD)
        return true;
    return position_free;    /* layout loops: only values that do not depend on the index */
}

static void classify(lower *L)
{
    const ir_graph *g = L->g;
    for (int i = 0; i < g->nodes.len; i++) {
        ir_node *n = g->nodes.items[i];
        for (int k = 0; k < n->nin; k++) add_user(L, n->in[k], n);
    }
    for (int i = 0; i < g->outputs.len; i++) L->n[((ir_node *)g->outputs.items[i])->id].roots++;
    for (int i = 0; i < g->updates.len; i++) L->n[((ir_update *)g->updates.items[i])->value->id].roots++;

    /* Users come after their operands, so walk backwards: whether a node is
     * needed is known once its users are classified. */
    for (int id = g->nodes.len - 1; id >= 0; id--) {
        ir_node *n = g->nodes.items[id];
        lw_node *w = &L->n[id];
        bool needed = w->roots > 0;
        for (int u = 0; u < w->nusers; u++) needed |= L->n[w->users[u]->id].cls != LW_DEAD;
        if (!needed) {
            w->cls = LW_DEAD;
            continue;
        }
        switch (n->op) {
        case IR_INPUT:
        case IR_LABEL:
        case IR_SCAN_ARG:
        case IR_VAR: w->cls = LW_LEAF_BUF; continue;
        case IR_RESHAPE: w->cls = LW_ALIAS; continue;
        case IR_CONST:
        case IR_HYPER:
        case IR_DROPOUT_MASK: {
            bool position_free = n->op != IR_DROPOUT_MASK;
            bool expr = w->roots == 0;
            for (int u = 0; u < w->nusers && expr; u++)
                if (L->n[w->users[u]->id].cls != LW_DEAD) expr = reads_as_expr(w->users[u], n, position_free);
            w->cls = expr ? LW_LEAF_EXPR : LW_KERNEL;
            continue;
        }
        default: break;
        }
        w->cls = LW_KERNEL;
        if (lw_is_elementwise(n->op) && w->roots == 0 && w->nusers == 1) {
            const ir_node *u = w->users[0];
            bool ew = lw_is_elementwise(u->op) && ir_shape_equal(&u->shape, &n->shape);
            bool red = (u->op == IR_SUM || u->op == IR_MEAN || u->op == IR_MAX) && u->in[0] == n;
            if (ew || red) w->cls = LW_INLINE;
        }
        if (!lw_is_loop_op(n) && !lw_is_call_op(n)) {
            lw_fail(L, "%s: no lowering for this op", ir_ops[n->op]->name);
            return;
        }
    }
    /* The results of one loop over time (a scan node per result), and of its
     * trace (the same loop with more per-step results, for the vjp): one loop. */
    for (int id = 0; id < g->nodes.len; id++) {
        ir_node *x = g->nodes.items[id];
        if (x->op != IR_SCAN || L->n[id].cls != LW_KERNEL) continue;
        const ir_scan *s = x->attr.scan;
        for (int j = id + 1; j < g->nodes.len; j++) {
            ir_node *y = g->nodes.items[j];
            const ir_scan *t = y->op == IR_SCAN ? y->attr.scan : NULL;
            bool same = t && L->n[j].cls == LW_KERNEL && (t == s || t == s->trace || t->trace == s) && y->nin == x->nin;
            for (int k = 0; same && k < x->nin; k++) same = y->in[k] == x->in[k];
            if (!same) continue;
            L->n[j].cls = LW_PARTNER;
            L->n[j].root = x;
            kd_vec_push(L->a, &L->n[id].results, y);
        }
    }
    /* A convolution read only by a max pooling without padding (inference:
     * training also reads it for the gradients): one call that pools each
     * image's output while it is in the cache (kdk_sconv2d_pool_fwd); the
     * convolution's output gets no buffer. It needs a workspace. */
    for (int id = 0; id < g->nodes.len && !(L->o && L->o->no_workspace); id++) {
        ir_node *x = g->nodes.items[id];
        lw_node *w = &L->n[id];
        if ((x->op != IR_CONV2D && x->op != IR_FUSED_CONV2D) || w->cls != LW_KERNEL || w->roots || w->partner)
            continue;
        ir_node *d = NULL;
        int live = 0;
        for (int u = 0; u < w->nusers; u++)
            if (L->n[w->users[u]->id].cls != LW_DEAD) d = w->users[u], live++;
        if (live != 1 || d->op != IR_MAXPOOL2D || L->n[d->id].cls != LW_KERNEL || d->in[0] != x) continue;
        if (d->attr.pad_lo[0] || d->attr.pad_lo[1] ||
            d->shape.dims[1] != (x->shape.dims[1] - d->attr.window[0]) / d->attr.stride[0] + 1 ||
            d->shape.dims[2] != (x->shape.dims[2] - d->attr.window[1]) / d->attr.stride[1] + 1)
            continue;
        L->n[d->id].cls = LW_PARTNER;
        L->n[d->id].root = x;
        w->partner = d;
    }
    /* The loss and its gradient from the same logits: one softmax pass. */
    for (int id = 0; id < g->nodes.len; id++) {
        ir_node *x = g->nodes.items[id];
        if (x->op != IR_SOFTMAX_XENT || L->n[id].cls != LW_KERNEL || L->n[id].partner) continue;
        for (int j = id + 1; j < g->nodes.len; j++) {
            ir_node *d = g->nodes.items[j];
            if (d->op == IR_SOFTMAX_XENT_GRAD && L->n[j].cls == LW_KERNEL && d->in[0] == x->in[0] &&
                d->in[1] == x->in[1] && L->n[d->in[2]->id].cls == LW_LEAF_EXPR && d->in[2]->op != IR_DROPOUT_MASK) {
                L->n[j].cls = LW_PARTNER;
                L->n[j].root = x;
                L->n[id].partner = d;
                break;
            }
        }
    }
}

/* ---- 2. schedule -------------------------------------------------------------------- */

static void schedule(lower *L)
{
    const ir_graph *g = L->g;
    int slot = 0;
    for (int id = 0; id < g->nodes.len; id++)
        if (L->n[id].cls == LW_KERNEL) L->n[id].slot = slot++;
    for (int id = 0; id < g->nodes.len; id++)
        if (L->n[id].cls == LW_PARTNER) L->n[id].slot = L->n[L->n[id].root->id].slot;
    for (int id = g->nodes.len - 1; id >= 0; id--) {
        lw_node *w = &L->n[id];
        if (w->cls != LW_INLINE) continue;
        ir_node *u = w->users[0];
        w->root = L->n[u->id].cls == LW_INLINE ? L->n[u->id].root : u;
        w->slot = L->n[w->root->id].slot;
    }
    for (int id = 0; id < g->nodes.len; id++)
        if (L->n[id].cls == LW_INLINE) kd_vec_push(L->a, &L->n[L->n[id].root->id].inlined, g->nodes.items[id]);
}

/* ---- 3. bind ------------------------------------------------------------------------- */

typedef struct copy_job {
    ir_node *from;
    lp_buf *to;
} copy_job;

/* Makes dst the buffer of n's value if n is computed by its own kernel (or is
 * a reshape of such a node used only here). */
static bool bind(lower *L, ir_node *n, lp_buf *dst)
{
    lw_node *w = &L->n[n->id];
    if (w->bound) return false;
    if (w->cls == LW_KERNEL || w->cls == LW_PARTNER) {
        w->buf = dst;
        w->bound = true;
        return true;
    }
    if (w->cls == LW_ALIAS && L->n[n->in[0]->id].nusers == 1 && L->n[n->in[0]->id].roots == 0 &&
        bind(L, n->in[0], dst)) {
        w->bound = true;
        return true;
    }
    return false;
}

/* The last kernel that reads node x's value (following aliases); *same_index
 * is cleared if a read in kernel `at` is anything but an elementwise read of
 * x's full shape. */
static int last_read(lower *L, ir_node *x, int at, bool *same_index)
{
    lw_node *w = &L->n[x->id];
    int last = -1;
    for (int u = 0; u < w->nusers; u++) {
        ir_node *user = w->users[u];
        lw_node *uw = &L->n[user->id];
        int k;
        if (uw->cls == LW_DEAD) continue;
        if (uw->cls == LW_ALIAS) {
            bool dummy = true;
            k = last_read(L, user, at, &dummy);
            if (k >= at) *same_index = false;
        } else {
            k = uw->slot;
            if (k == at && !(lw_is_elementwise(user->op) && ir_shape_equal(&user->shape, &x->shape)))
                *same_index = false;
        }
        if (k > last) last = k;
    }
    return last;
}

/* Whether update value u may be written straight into variable v's storage
 * (reads: the live VAR nodes of v). */
static bool update_in_place(lower *L, ir_node *u, const kd_vec *reads)
{
    lw_node *w = &L->n[u->id];
    if (w->cls != LW_KERNEL || w->bound || !lw_is_elementwise(u->op)) return false;
    for (int i = 0; i < reads->len; i++) {
        ir_node *x = reads->items[i];
        bool same = true;
        int last = last_read(L, x, w->slot, &same);
        if (L->n[x->id].roots > 0 || last > w->slot || (last == w->slot && !same)) return false;
    }
    return true;
}

static void bind_all(lower *L, const kd_dest *dests, kd_vec *copies, ir_node **ret)
{
    const ir_graph *g = L->g;
    for (int i = 0; i < g->outputs.len; i++) {
        ir_node *n = g->outputs.items[i];
        lp_buf *dst = NULL;
        switch (dests[i].kind) {
        case KD_DEST_NONE: continue;
        case KD_DEST_RETURN: *ret = n; continue;
        case KD_DEST_OUTPUT: dst = io_buf(L, LP_OUTPUT, dests[i].index); break;
        case KD_DEST_OUTPUT_OPT: dst = io_buf(L, LP_OUTPUT, dests[i].index); break;
        case KD_DEST_GRAD: dst = grad_buf(L, dests[i].index); break;
        }
        if (dests[i].kind != KD_DEST_OUTPUT_OPT && bind(L, n, dst)) continue;
        copy_job *c = kd_alloc(L->a, sizeof *c);
        c->from = n;
        c->to = dst;
        kd_vec_push(L->a, copies, c);
    }
    kd_vec *reads = kd_alloc_array(L->a, (size_t)(2 * L->p->nvars + 1), sizeof *reads);
    for (int id = 0; id < g->nodes.len; id++) {
        ir_node *x = g->nodes.items[id];
        if (x->op == IR_VAR && x->var >= 0 && x->var < 2 * L->p->nvars && L->n[id].cls != LW_DEAD)
            kd_vec_push(L->a, &reads[x->var], x);
    }
    for (int i = 0; i < g->updates.len; i++) {
        const ir_update *u = g->updates.items[i];
        lp_buf *dst = var_buf(L, u->var);
        if (u->var >= 0 && u->var < 2 * L->p->nvars && update_in_place(L, u->value, &reads[u->var]) &&
            bind(L, u->value, dst))
            continue;
        copy_job *c = kd_alloc(L->a, sizeof *c);
        c->from = u->value;
        c->to = dst;
        kd_vec_push(L->a, copies, c);
    }
}

/* ---- 4. generate ------------------------------------------------------------------------ */

/* The op's name; an activation's gradient is named after it ("relu_grad"). */
static const char *op_name(lower *L, const ir_node *n)
{
    if (n->op == IR_ACT_GRAD && n->attr.act > 0 && n->attr.act < IR_ACT_COUNT)
        return kd_format(L->a, "%s_grad", ir_ops[ir_acts[n->attr.act].op]->name);
    return ir_ops[n->op]->name;
}

static const char *kernel_what(lower *L, const ir_node *n)
{
    const char *op = ir_ops[n->op]->name;
    if (n->op == IR_FUSED_MATMUL || n->op == IR_FUSED_CONV2D || n->op == IR_FUSED_DEPTHWISE_CONV2D) {
        int act = n->attr.act > 0 && n->attr.act < IR_ACT_COUNT ? n->attr.act : IR_ACT_NONE;
        op = kd_format(L->a, "%s%s%s%s", n->op == IR_FUSED_MATMUL ? "matmul"
                                         : n->op == IR_FUSED_CONV2D ? "conv2d" : "depthwise_conv2d",
                       n->nin == 3 ? " + bias" : "", act ? " + " : "", act ? ir_ops[ir_acts[act].op]->name : "");
    } else if (lw_is_elementwise(n->op)) {
        /* Name the chain: the ops inlined into this root, producers first. */
        char buf[256] = "";
        size_t at = 0;
        const kd_vec *in = &L->n[n->id].inlined;
        for (int i = 0; i <= in->len && at < sizeof buf - 40; i++) {
            const ir_node *x = i < in->len ? in->items[i] : n;
            at += (size_t)snprintf(buf + at, sizeof buf - at, "%s%s", at ? " + " : "", op_name(L, x));
        }
        op = kd_strdup(L->a, buf);
    }
    return kd_format(L->a, "%s%s%s -> %s", n->layer ? n->layer : "", n->layer ? ": " : "", op,
                     lw_shape_text(L, &n->shape));
}

static lp_buf *node_buf(lower *L, const ir_node *n)
{
    return lw_arena_buf(L, &n->shape, kd_format(L->a, "t%d", n->id),
                        kd_format(L->a, "%%%d %s%s%s", n->id, op_name(L, n), n->layer ? " in " : "",
                                  n->layer ? n->layer : ""));
}

static bool generate(lower *L)
{
    const ir_graph *g = L->g;
    for (int id = 0; id < g->nodes.len && !L->failed; id++) {
        ir_node *n = g->nodes.items[id];
        lw_node *w = &L->n[id];
        switch (w->cls) {
        case LW_DEAD:
        case LW_INLINE:
        case LW_LEAF_EXPR: break;
        case LW_LEAF_BUF:
            if (n->op == IR_SCAN_ARG) w->buf = L->scan_args ? L->scan_args[n->attr.index] : NULL;
            else w->buf = n->op == IR_VAR ? var_buf(L, n->var) : io_buf(L, n->op == IR_INPUT ? LP_INPUT : LP_LABEL, n->attr.index);
            if (!w->buf) return lw_fail(L, "%%%d %s: no buffer", n->id, ir_ops[n->op]->name);
            break;
        case LW_ALIAS: {
            lw_node *src = &L->n[n->in[0]->id];
            if (!src->buf) return lw_fail(L, "%%%d reshape: operand has no buffer", n->id);
            w->buf = src->buf;
            break;
        }
        case LW_PARTNER: break;
        case LW_KERNEL:
            if (!w->buf && !(w->partner && w->partner->op == IR_MAXPOOL2D)) w->buf = node_buf(L, n);
            if (w->partner && !L->n[w->partner->id].buf) L->n[w->partner->id].buf = node_buf(L, w->partner);
            for (int r = 0; r < w->results.len; r++) {
                lw_node *pw = &L->n[((ir_node *)w->results.items[r])->id];
                if (!pw->buf) pw->buf = node_buf(L, w->results.items[r]);
            }
            L->k = lp_new_kernel(L->a, L->f, kernel_what(L, n), n->loc, n->layer);
            if (L->k->index != w->slot) return lw_fail(L, "internal: kernel %d scheduled at %d", L->k->index, w->slot);
            if (lw_is_call_op(n)) lw_call_kernel(L, n, w->buf);
            else lw_loop_kernel(L, n, w->buf);
            break;
        }
    }
    return !L->failed;
}

lower *lw_lower_body(lower *L, const ir_graph *body, lp_buf *const *args, const char *prefix, kd_vec *into)
{
    lower *S = kd_alloc(L->a, sizeof *S);
    S->a = L->a;
    S->p = L->p;
    S->f = L->f;
    S->g = body;
    S->o = L->o;
    S->n = kd_alloc_array(L->a, (size_t)(body->nodes.len ? body->nodes.len : 1), sizeof *S->n);
    S->vars = L->vars;
    S->params_const = L->params_const;
    S->scan_args = args;
    int nbufs = L->f->bufs.len;
    /* the body's kernels are made apart, then become statements of this one */
    kd_vec outer = L->f->kernels;
    lp_kernel *k = L->k;
    L->f->kernels = (kd_vec){0};
    classify(S);
    if (!S->failed) schedule(S);
    if (!S->failed) generate(S);
    kd_vec made = L->f->kernels;
    L->f->kernels = outer;
    L->k = k;
    if (S->failed) {
        lw_fail(L, "%s", S->why);
        return NULL;
    }
    for (int i = 0; i < made.len; i++) {
        const lp_kernel *m = made.items[i];
        for (int j = 0; j < m->body.len; j++) kd_vec_push(L->a, into, m->body.items[j]);
    }
    for (int i = nbufs; i < L->f->bufs.len; i++) {
        lp_buf *b = L->f->bufs.items[i];
        b->name = kd_format(L->a, "%s%s", prefix, b->name);
        b->reuse.len = 0;   /* in place is planned per kernel; here a kernel is one whole step */
    }
    return S;
}

lp_func *kd_lower_graph(lp_program *p, lp_func_kind kind, const ir_graph *g, const kd_dest *dests,
                        const kd_codegen_options *o, char *why, size_t why_len)
{
    lower L = {.a = p->arena, .p = p, .g = g, .o = o};
    L.f = lp_func_new(p->arena, kind);
    L.n = kd_alloc_array(p->arena, (size_t)(g->nodes.len ? g->nodes.len : 1), sizeof *L.n);
    L.vars = kd_alloc_array(p->arena, (size_t)(2 * p->nvars + 1), sizeof *L.vars);
    L.params_const = lp_func_predicts(kind);
    kd_vec copies = {0};
    ir_node *ret = NULL;

    classify(&L);
    if (!L.failed) schedule(&L);
    if (!L.failed) bind_all(&L, dests, &copies, &ret);
    if (!L.failed) generate(&L);
    for (int i = 0; i < copies.len && !L.failed; i++) {
        copy_job *c = copies.items[i];
        const char *what = kd_format(L.a, "%s <- %%%d", c->to->note ? c->to->note : c->to->name, c->from->id);
        L.k = lp_new_kernel(L.a, L.f, what, c->from->loc, c->from->layer);
        lw_copy_kernel(&L, c->from, c->to);
    }
    if (!L.failed && ret) {
        lw_node *w = &L.n[ret->id];
        if (ret->shape.rank != 0 && ir_shape_elems(&ret->shape) != 1)
            lw_fail(&L, "the returned value %%%d is not a scalar", ret->id);
        else if (w->cls == LW_KERNEL && w->buf->space == LP_ARENA)
            L.f->ret = w->buf;
        else {
            L.f->ret = lw_arena_buf(&L, &ret->shape, "loss", "the loss");
            L.k = lp_new_kernel(L.a, L.f, "loss", ret->loc, ret->layer);
            lw_copy_kernel(&L, ret, L.f->ret);
        }
    }
    if (L.failed) {
        snprintf(why, why_len, "%s", L.why);
        return NULL;
    }
    /* apply_gradients has no arena: its temporaries must become locals, which
     * takes its loops merged, whatever the options say. */
    if (!o || kind == LP_F_APPLY || (!o->no_passes && !o->no_loop_fusion)) {
        lw_fuse_loops(&L);
        lw_scalarize(&L);
    }
    kd_arena_plan(p, L.f);
    if (kind == LP_F_APPLY && L.f->arena_bytes > 0) {
        /* The API gives apply_gradients no arena: every temporary must be a local. */
        snprintf(why, why_len, "apply_gradients would need %lld bytes of scratch memory, and it has no arena",
                 (long long)L.f->arena_bytes);
        return NULL;
    }
    return L.f;
}
