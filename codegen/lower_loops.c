/* lower_loops.c — nodes that become loop nests: elementwise chains (a root and
 * the single-use producers inlined into it), reductions, the reduction
 * gradient of max, layout ops, and softmax over an inner axis.
 *
 * An iteration space walks a root shape's dims in some loop order. Every value
 * read or written in the nest is an access: a base offset plus, per root dim,
 * the element stride it moves by (0 where it is broadcast). Adjacent dims merge
 * into one loop when every access moves through them contiguously, so a chain
 * over [batch, 256] with a [256] bias is two loops, and one without
 * broadcasting is one loop over batch * 256. Dims of extent 1 get no loop. */
#include "lower_internal.h"

#include "random.h"

#include <math.h>
#include <string.h>

bool lw_is_elementwise(ir_op op)
{
    return ir_ops[op]->scalar || op == IR_BROADCAST;
}

static bool is_leaf_expr_op(ir_op op) { return op == IR_CONST || op == IR_HYPER || op == IR_DROPOUT_MASK; }

bool lw_is_loop_op(const ir_node *n)
{
    switch (n->op) {
    case IR_SUM: case IR_MEAN: case IR_MAX: case IR_MAX_GRAD:
    case IR_TRANSPOSE: case IR_CONCAT: case IR_SLICE: case IR_PAD: case IR_REVERSE:
        return true;
    case IR_SOFTMAX:
    case IR_LOG_SOFTMAX: return n->attr.axis != n->shape.rank - 1;
    default:
        return lw_is_elementwise(n->op) || is_leaf_expr_op(n->op) || lw_depthwise_as_loops(n) || lw_is_gather_op(n->op) ||
               n->op == IR_SCAN;
    }
}

/* ---- iteration spaces -------------------------------------------------------- */

enum { MAX_ACCESSES = 256 };

typedef struct access {
    int64_t base;
    int64_t st[IR_MAX_RANK];   /* per root dim */
} access;

typedef struct space {
    lower *L;
    const ir_shape *root;
    int norder, order[IR_MAX_RANK], cls[IR_MAX_RANK];
    int ngroups, gstart[IR_MAX_RANK], gend[IR_MAX_RANK];
    lp_var *var[IR_MAX_RANK];
    bool collect;              /* a dry run that only records accesses */
    int nacc;
    access acc[MAX_ACCESSES];
    int nloads;                /* the loads built after the dry run, for in-place reuse */
    struct {
        lp_buf *buf;
        access ac;
    } loads[MAX_ACCESSES];
} space;

/* order: the root dims in loop order; cls: per root dim, dims of different
 * classes (kept / reduced) never share a loop. */
static void space_init(space *sp, lower *L, const ir_shape *root, const int *order, const int *cls)
{
    memset(sp, 0, sizeof *sp);
    sp->L = L;
    sp->root = root;
    for (int i = 0; i < root->rank; i++) {
        int r = order ? order[i] : i;
        sp->cls[r] = cls ? cls[r] : 0;
        if (root->dims[r] != 1) sp->order[sp->norder++] = r;
    }
    sp->collect = true;
}

static void note(space *sp, const access *a)
{
    if (sp->collect && sp->nacc < MAX_ACCESSES) sp->acc[sp->nacc++] = *a;
}

/* Groups of loop positions, then one variable each. */
static void space_finish(space *sp)
{
    const ir_shape *s = sp->root;
    sp->ngroups = 0;
    for (int p = 0; p < sp->norder; p++) {
        bool merge = p > 0 && sp->nacc < MAX_ACCESSES;
        if (merge) {
            int r0 = sp->order[p - 1], r1 = sp->order[p];
            merge = r1 > r0 && sp->cls[r0] == sp->cls[r1] && s->dims[r1] != IR_BATCH;
            for (int r = r0 + 1; merge && r < r1; r++) merge = s->dims[r] == 1;
            for (int i = 0; merge && i < sp->nacc; i++) merge = sp->acc[i].st[r0] == sp->acc[i].st[r1] * s->dims[r1];
        }
        if (merge) {
            sp->gend[sp->ngroups - 1] = p + 1;
        } else {
            sp->gstart[sp->ngroups] = p;
            sp->gend[sp->ngroups] = p + 1;
            sp->ngroups++;
        }
    }
    for (int g = 0; g < sp->ngroups; g++) sp->var[g] = lp_new_var(sp->L->a, sp->L->f, LP_INT, "i");
    sp->collect = false;
}

static lp_expr *group_extent(space *sp, int g)
{
    kd_arena *a = sp->L->a;
    lp_expr *e = lp_int(a, 1);
    for (int p = sp->gstart[g]; p < sp->gend[g]; p++) e = lp_bin(a, LP_MUL, e, lw_dim(sp->L, sp->root, sp->order[p]));
    return e;
}

static lp_expr *offset(space *sp, const access *ac)
{
    kd_arena *a = sp->L->a;
    lp_expr *e = lp_int(a, ac->base);
    if (sp->collect) return e;
    /* Innermost group last, so the printed index reads like row-major code. */
    for (int g = 0; g < sp->ngroups; g++) {
        int64_t st = ac->st[sp->order[sp->gend[g] - 1]];
        if (st) e = lp_bin(a, LP_ADD, e, lp_bin(a, LP_MUL, lp_var_ref(a, sp->var[g]), lp_int(a, st)));
    }
    return e;
}

/* Loops for groups [from, to) appended to `into`; returns the innermost body. */
static kd_vec *nest(space *sp, int from, int to, kd_vec *into, bool parallel)
{
    kd_arena *a = sp->L->a;
    for (int g = from; g < to; g++) {
        lp_stmt *f = lp_for(a, sp->var[g], group_extent(sp, g), parallel && g == from);
        kd_vec_push(a, into, f);
        into = &f->body;
    }
    return into;
}

/* The access of a value of shape s whose dim d follows root dim rmap[d] (-1: index 0). */
static access access_of(const ir_shape *s, const int *rmap, int64_t base)
{
    access ac = {.base = base};
    int64_t st[IR_MAX_RANK];
    lw_strides(s, st);
    for (int d = 0; d < s->rank; d++)
        if (rmap[d] >= 0) ac.st[rmap[d]] += st[d];
    return ac;
}

/* The operand x of a node of shape s (dims following rmap), under NumPy broadcasting. */
static void broadcast_map(const ir_shape *s, const int *rmap, const ir_shape *x, int *xmap)
{
    int off = s->rank - x->rank;
    for (int d = 0; d < x->rank; d++)
        xmap[d] = x->dims[d] == 1 && s->dims[d + off] != 1 ? -1 : rmap[d + off];
}

/* ---- expressions --------------------------------------------------------------------- */

static lp_expr *op_expr(space *sp, ir_node *n, const int *rmap);

static lp_expr *hyper_expr(lower *L, int which)
{
    kd_arena *a = L->a;
    switch (which) {
    case IR_HYPER_LR: return lp_param_ref(a, LP_P_LR);
    case IR_HYPER_STEP: return lp_un(a, LP_TO_REAL, lp_param_ref(a, LP_P_STEP));
    case IR_HYPER_BATCH: return lp_un(a, LP_TO_REAL, lp_param_ref(a, LP_P_BATCH));
    default: return lp_real(a, (double)L->p->dropout_seed);
    }
}

/* A load of node n's buffer at access ac. */
static lp_expr *load_at(space *sp, ir_node *n, access ac)
{
    lower *L = sp->L;
    lw_node *w = &L->n[n->id];
    if (!w->buf) {
        lw_fail(L, "%%%d %s: read before it is computed", n->id, ir_ops[n->op]->name);
        return lp_real(L->a, 0);
    }
    note(sp, &ac);
    if (!sp->collect && sp->nloads < MAX_ACCESSES) {
        sp->loads[sp->nloads].buf = w->buf;
        sp->loads[sp->nloads++].ac = ac;
    }
    return lp_load(L->a, w->buf, offset(sp, &ac));
}

/* Node n's value at the position rmap describes; base: a static element offset
 * into its buffer (slices). */
static lp_expr *value_expr(space *sp, ir_node *n, const int *rmap, int64_t base)
{
    lower *L = sp->L;
    lw_node *w = &L->n[n->id];
    switch (w->cls) {
    case LW_INLINE: return op_expr(sp, n, rmap);
    case LW_LEAF_EXPR: return op_expr(sp, n, rmap);
    case LW_LEAF_BUF:
    case LW_ALIAS:
    case LW_PARTNER:
    case LW_KERNEL: return load_at(sp, n, access_of(&n->shape, rmap, base));
    case LW_DEAD: break;
    }
    lw_fail(L, "%%%d %s: needed but not computed", n->id, ir_ops[n->op]->name);
    return lp_real(L->a, 0);
}

static lp_expr *operand(space *sp, ir_node *n, int i, const int *rmap)
{
    int xmap[IR_MAX_RANK];
    broadcast_map(&n->shape, rmap, &n->in[i]->shape, xmap);
    return value_expr(sp, n->in[i], xmap, 0);
}

/* The activations' rows (runtime/activations.h) as loop-IR expressions, from the
 * primitive ops both backends have. An operand used twice in a formula is one
 * shared expression: a backend prints or builds it twice. */
#define X x
#define Y x
#define DY dy
#define P p
#define K(c) lp_real(a, c)
#define ADD(u, v) lp_bin(a, LP_ADD, u, v)
#define SUB(u, v) lp_bin(a, LP_SUB, u, v)
#define MUL(u, v) lp_bin(a, LP_MUL, u, v)
#define DIV(u, v) lp_bin(a, LP_DIV, u, v)
#define NEG(u) lp_un(a, LP_NEG, u)
#define MIN(u, v) lp_bin(a, LP_MIN, u, v)
#define MAX(u, v) lp_bin(a, LP_MAX, u, v)
#define ABS(u) lp_un(a, LP_ABS, u)
#define SQUARE(u) lp_un(a, LP_SQUARE, u)
#define EXP(u) lp_un(a, LP_EXP, u)
#define LOG1P(u) lp_un(a, LP_LOG1P, u)
#define EXPM1(u) lp_un(a, LP_EXPM1, u)
#define TANH(u) lp_un(a, LP_TANH, u)
#define ERF(u) lp_un(a, LP_ERF, u)
#define SIGMOID(u) lp_un(a, LP_SIGMOID, u)
#define RELU(u) lp_un(a, LP_RELU, u)
#define SEL_GT(u, v, t, f) lp_select(a, lp_bin(a, LP_GT, u, v), t, f)
#define ACT_F(NAME, op, name, alias, kind, arg, def, from, f, df) case IR_ACT_##NAME: return f;
#define ACT_DF(NAME, op, name, alias, kind, arg, def, from, f, df) case IR_ACT_##NAME: return df;

lp_expr *lw_act_expr(kd_arena *a, int act, lp_expr *x, lp_expr *p)
{
    (void)p;
    switch (act) {
    KDA_LIST(ACT_F)
    default: return x;
    }
}

/* x is the activation's input or output, as its row's `from` says. */
static lp_expr *act_grad_expr(kd_arena *a, int act, lp_expr *x, lp_expr *dy, lp_expr *p)
{
    (void)p;
    switch (act) {
    KDA_LIST(ACT_DF)
    default: return dy;
    }
}

#undef ACT_F
#undef ACT_DF
#include "activations_undef.h"

/* The value an elementwise op or an expression leaf computes (not a load of its buffer). */
static lp_expr *op_expr(space *sp, ir_node *n, const int *rmap)
{
    lower *L = sp->L;
    kd_arena *a = L->a;
    switch (n->op) {
    case IR_CONST: return lp_real(a, n->attr.scalar);
    case IR_HYPER: return hyper_expr(L, n->attr.index);
    case IR_DROPOUT_MASK: {
        access ac = access_of(&n->shape, rmap, 0);
        note(sp, &ac);
        lp_expr *e = lp_real(a, 0);
        e->kind = LP_E_DROPOUT;
        e->a = offset(sp, &ac);
        e->dropout.seed = L->p->dropout_seed;
        e->dropout.salt = (uint32_t)n->attr.index;
        e->dropout.threshold = kdk_dropout_threshold(n->attr.scalar);
        e->dropout.scale = 1 / (1 - n->attr.scalar);
        return e;
    }
    case IR_BROADCAST: return operand(sp, n, 0, rmap);
    default: break;
    }
    int act = ir_act_of(n->op);
    if (act != IR_ACT_NONE) return lw_act_expr(a, act, operand(sp, n, 0, rmap), lp_real(a, n->attr.scalar));
    static const lp_op unary[IR_OP_COUNT] = {
        [IR_NEG] = LP_NEG, [IR_EXP] = LP_EXP, [IR_LOG] = LP_LOG, [IR_SQRT] = LP_SQRT, [IR_RSQRT] = LP_RSQRT,
        [IR_SQUARE] = LP_SQUARE, [IR_ABS] = LP_ABS, [IR_SIGN] = LP_SIGN,
    };
    if (ir_ops[n->op]->arity == 1) return lp_un(a, unary[n->op], operand(sp, n, 0, rmap));
    lp_expr *x = operand(sp, n, 0, rmap), *y = operand(sp, n, 1, rmap);
    switch (n->op) {
    case IR_ADD: return lp_bin(a, LP_ADD, x, y);
    case IR_SUB: return lp_bin(a, LP_SUB, x, y);
    case IR_MUL: return lp_bin(a, LP_MUL, x, y);
    case IR_DIV: return lp_bin(a, LP_DIV, x, y);
    case IR_MAXIMUM: return lp_bin(a, LP_MAX, x, y);
    case IR_ACT_GRAD: return act_grad_expr(a, n->attr.act, x, y, lp_real(a, n->attr.scalar));
    case IR_GT: return lp_select(a, lp_bin(a, LP_GT, x, y), lp_real(a, 1), lp_real(a, 0));
    default: break;
    }
    lw_fail(L, "%s: not an elementwise op", ir_ops[n->op]->name);
    return lp_real(a, 0);
}

lp_expr *lw_scalar(lower *L, ir_node *n)
{
    space sp;
    space_init(&sp, L, &n->shape, NULL, NULL);
    int rmap[IR_MAX_RANK] = {-1, -1, -1, -1, -1, -1, -1, -1};
    space_finish(&sp);
    return value_expr(&sp, n, rmap, 0);
}

static void identity_map(int rank, int *rmap)
{
    for (int d = 0; d < rank; d++) rmap[d] = d;
}

/* ---- kernels ---------------------------------------------------------------------------- */

static void note_reuse(space *sp, lp_buf *dst, const access *out);

/* dst[i] = value for the whole of shape s, one loop nest; `value` builds the
 * expression of a node at the identity position. */
static bool elementwise(lower *L, ir_node *n, lp_buf *dst, bool copy)
{
    space sp;
    int rmap[IR_MAX_RANK];
    identity_map(n->shape.rank, rmap);
    space_init(&sp, L, &n->shape, NULL, NULL);
    access out = access_of(&n->shape, rmap, 0);
    for (int pass = 0; pass < 2; pass++) {
        note(&sp, &out);
        lp_expr *v = copy ? value_expr(&sp, n, rmap, 0) : op_expr(&sp, n, rmap);
        if (pass == 0) {
            space_finish(&sp);
            continue;
        }
        kd_vec *body = nest(&sp, 0, sp.ngroups, &L->k->body, true);
        kd_vec_push(L->a, body, lp_store(L->a, dst, offset(&sp, &out), v, LP_ASSIGN));
    }
    note_reuse(&sp, dst, &out);
    return !L->failed;
}

/* The arena buffers this loop reads only at the index it writes: dst may take
 * over their bytes if they die here (arena_plan.c decides). */
static void note_reuse(space *sp, lp_buf *dst, const access *out)
{
    if (dst->space != LP_ARENA || dst->local || sp->nloads >= MAX_ACCESSES) return;
    for (int i = 0; i < sp->nloads; i++) {
        lp_buf *b = sp->loads[i].buf;
        if (b == dst || b->space != LP_ARENA || b->local || b->scratch) continue;
        bool same = true;
        for (int j = 0; j < sp->nloads && same; j++)
            if (sp->loads[j].buf == b) same = !memcmp(&sp->loads[j].ac, out, sizeof *out);
        bool known = false;
        for (int j = 0; j < dst->reuse.len; j++) known |= dst->reuse.items[j] == b;
        if (same && !known) kd_vec_push(sp->L->a, &dst->reuse, b);
    }
}

bool lw_copy_kernel(lower *L, ir_node *n, lp_buf *dst)
{
    if (dst->space == LP_OUTPUT && !dst->is_const && L->f->kind == LP_F_TRAIN_STEP) {
        /* train_step's outputs0 may be NULL */
        lp_stmt *s = lp_if(L->a, NULL, dst);
        kd_vec saved = L->k->body;
        L->k->body = (kd_vec){0};
        bool ok = elementwise(L, n, dst, true);
        s->body = L->k->body;
        L->k->body = saved;
        kd_vec_push(L->a, &L->k->body, s);
        return ok;
    }
    return elementwise(L, n, dst, true);
}

/* Fills the first `count` elements of dst with v. */
static void fill(lower *L, lp_buf *dst, lp_expr *count, lp_expr *v)
{
    lp_var *i = lp_new_var(L->a, L->f, LP_INT, "i");
    lp_stmt *f = lp_for(L->a, i, count, true);
    kd_vec_push(L->a, &f->body, lp_store(L->a, dst, lp_var_ref(L->a, i), v, LP_ASSIGN));
    kd_vec_push(L->a, &L->k->body, f);
}

/* The reduced shape's dims mapped onto the input's: keepdims keeps every dim
 * (1 on the reduced ones), otherwise only the kept ones remain. */
static void reduced_map(const ir_shape *x, int64_t axes, bool keepdims, int *omap)
{
    int d = 0;
    for (int r = 0; r < x->rank; r++) {
        bool red = (axes >> r) & 1;
        if (red && keepdims) omap[d++] = -1;
        else if (!red) omap[d++] = r;
    }
}

/* The number of elements reduced into each output, as a real. */
static lp_expr *reduce_count(lower *L, const ir_shape *x, int64_t axes)
{
    lp_expr *c = lp_int(L->a, 1);
    for (int r = 0; r < x->rank; r++)
        if ((axes >> r) & 1) c = lp_bin(L->a, LP_MUL, c, lw_dim(L, x, r));
    return lp_un(L->a, LP_TO_REAL, c);
}

static bool reduce(lower *L, ir_node *n, lp_buf *dst)
{
    kd_arena *a = L->a;
    ir_node *x = n->in[0];
    const ir_shape *xs = &x->shape;
    int64_t axes = n->attr.axes;
    int rmap[IR_MAX_RANK], omap[IR_MAX_RANK], order[IR_MAX_RANK], cls[IR_MAX_RANK], no = 0;
    identity_map(xs->rank, rmap);
    reduced_map(xs, axes, n->attr.keepdims, omap);
    int inner = -1;
    for (int r = 0; r < xs->rank; r++) {
        cls[r] = (axes >> r) & 1;
        if (xs->dims[r] != 1) inner = r;
    }
    /* Accumulate in a local when the innermost dim is reduced (kept dims
     * outside); otherwise sweep x in order, adding into the output. */
    bool local = inner < 0 || cls[inner];
    for (int pass = 0; pass < 2 && local; pass++)
        for (int r = 0; r < xs->rank; r++)
            if (cls[r] == pass) order[no++] = r;
    space sp;
    space_init(&sp, L, xs, local ? order : NULL, cls);
    access out = access_of(&n->shape, omap, 0);
    lp_expr *init = lp_real(a, n->op == IR_MAX ? -INFINITY : 0);
    lp_acc acc = n->op == IR_MAX ? LP_ACC_MAX : LP_ACC_ADD;
    for (int pass = 0; pass < 2; pass++) {
        note(&sp, &out);
        lp_expr *v = value_expr(&sp, x, rmap, 0);
        if (pass == 0) {
            space_finish(&sp);
            continue;
        }
        int kept = 0;
        while (kept < sp.ngroups && !sp.cls[sp.order[sp.gstart[kept]]]) kept++;
        if (local) {
            kd_vec *body = nest(&sp, 0, kept, &L->k->body, true);
            lp_var *s = lp_new_var(a, L->f, LP_REAL, "acc");
            kd_vec_push(a, body, lp_let(a, s, init));
            kd_vec_push(a, nest(&sp, kept, sp.ngroups, body, false), lp_set(a, s, v, acc));
            lp_expr *r = lp_var_ref(a, s);
            if (n->op == IR_MEAN) r = lp_bin(a, LP_DIV, r, reduce_count(L, xs, axes));
            kd_vec_push(a, body, lp_store(a, dst, offset(&sp, &out), r, LP_ASSIGN));
        } else {
            fill(L, dst, lw_count(L, &n->shape), init);
            kd_vec_push(a, nest(&sp, 0, sp.ngroups, &L->k->body, false), lp_store(a, dst, offset(&sp, &out), v, acc));
            if (n->op == IR_MEAN) {
                lp_var *i = lp_new_var(a, L->f, LP_INT, "i");
                lp_stmt *f = lp_for(a, i, lw_count(L, &n->shape), true);
                lp_expr *y = lp_load(a, dst, lp_var_ref(a, i));
                kd_vec_push(a, &f->body,
                            lp_store(a, dst, lp_var_ref(a, i), lp_bin(a, LP_DIV, y, reduce_count(L, xs, axes)), LP_ASSIGN));
                kd_vec_push(a, &L->k->body, f);
            }
        }
    }
    return !L->failed;
}

/* (x, y, dy) -> dx: dy to the first element of each reduced group equal to its max. */
static bool max_grad(lower *L, ir_node *n, lp_buf *dst)
{
    kd_arena *a = L->a;
    ir_node *x = n->in[0];
    const ir_shape *xs = &x->shape;
    int64_t axes = n->attr.axes;
    int rmap[IR_MAX_RANK], omap[IR_MAX_RANK], order[IR_MAX_RANK], cls[IR_MAX_RANK], no = 0;
    identity_map(xs->rank, rmap);
    reduced_map(xs, axes, n->attr.keepdims, omap);
    for (int r = 0; r < xs->rank; r++) cls[r] = (axes >> r) & 1;
    for (int pass = 0; pass < 2; pass++)
        for (int r = 0; r < xs->rank; r++)
            if (cls[r] == pass) order[no++] = r;
    space sp;
    space_init(&sp, L, xs, order, cls);
    access out = access_of(xs, rmap, 0);
    for (int pass = 0; pass < 2; pass++) {
        note(&sp, &out);
        lp_expr *xv = value_expr(&sp, x, rmap, 0);
        lp_expr *yv = value_expr(&sp, n->in[1], omap, 0);
        lp_expr *dyv = value_expr(&sp, n->in[2], omap, 0);
        if (pass == 0) {
            space_finish(&sp);
            continue;
        }
        int kept = 0;
        while (kept < sp.ngroups && !sp.cls[sp.order[sp.gstart[kept]]]) kept++;
        kd_vec *body = nest(&sp, 0, kept, &L->k->body, true);
        lp_var *found = lp_new_var(a, L->f, LP_INT, "found");
        kd_vec_push(a, body, lp_let(a, found, lp_int(a, 0)));
        kd_vec *inner = nest(&sp, kept, sp.ngroups, body, false);
        lp_expr *hit = lp_bin(a, LP_AND, lp_un(a, LP_NOT, lp_var_ref(a, found)), lp_bin(a, LP_EQ, xv, yv));
        kd_vec_push(a, inner, lp_store(a, dst, offset(&sp, &out), lp_select(a, hit, dyv, lp_real(a, 0)), LP_ASSIGN));
        kd_vec_push(a, inner, lp_set(a, found, lp_bin(a, LP_OR, lp_var_ref(a, found), lp_bin(a, LP_EQ, xv, yv)), LP_ASSIGN));
    }
    return !L->failed;
}

/* out[...] = in[...] over the root shape `root`, with the accesses given by maps and bases. */
static bool move(lower *L, const ir_shape *root, ir_node *in, const int *imap, int64_t ibase,
                 lp_buf *dst, const ir_shape *dshape, const int *omap, int64_t obase)
{
    space sp;
    space_init(&sp, L, root, NULL, NULL);
    access out = access_of(dshape, omap, obase);
    for (int pass = 0; pass < 2; pass++) {
        note(&sp, &out);
        lp_expr *v = value_expr(&sp, in, imap, ibase);
        if (pass == 0) {
            space_finish(&sp);
            continue;
        }
        kd_vec *body = nest(&sp, 0, sp.ngroups, &L->k->body, true);
        kd_vec_push(L->a, body, lp_store(L->a, dst, offset(&sp, &out), v, LP_ASSIGN));
    }
    return !L->failed;
}

/* out[.., i, ..] = in[.., T - 1 - i, ..]: the input's access runs backwards
 * along the axis (a negative stride); a position-free leaf is its value. */
static bool reverse(lower *L, ir_node *n, lp_buf *dst)
{
    const ir_shape *ys = &n->shape;
    ir_node *x = n->in[0];
    int id[IR_MAX_RANK], axis = n->attr.axis;
    int64_t st[IR_MAX_RANK];
    identity_map(ys->rank, id);
    lw_strides(ys, st);
    space sp;
    space_init(&sp, L, ys, NULL, NULL);
    access out = access_of(ys, id, 0), in = out;
    in.base = (ys->dims[axis] - 1) * st[axis];
    in.st[axis] = -st[axis];
    bool leaf = L->n[x->id].cls == LW_LEAF_EXPR;
    for (int pass = 0; pass < 2; pass++) {
        note(&sp, &out);
        lp_expr *v = leaf ? value_expr(&sp, x, id, 0) : load_at(&sp, x, in);
        if (pass == 0) {
            space_finish(&sp);
            continue;
        }
        kd_vec *body = nest(&sp, 0, sp.ngroups, &L->k->body, true);
        kd_vec_push(L->a, body, lp_store(L->a, dst, offset(&sp, &out), v, LP_ASSIGN));
    }
    return !L->failed;
}

static bool layout(lower *L, ir_node *n, lp_buf *dst)
{
    const ir_shape *ys = &n->shape;
    int id[IR_MAX_RANK], imap[IR_MAX_RANK];
    int64_t st[IR_MAX_RANK], base = 0;
    identity_map(ys->rank, id);
    switch (n->op) {
    case IR_TRANSPOSE:
        for (int i = 0; i < ys->rank; i++) imap[n->attr.perm[i]] = i;
        return move(L, ys, n->in[0], imap, 0, dst, ys, id, 0);
    case IR_SLICE:
        lw_strides(&n->in[0]->shape, st);
        for (int d = 0; d < ys->rank; d++)
            if (ys->dims[d] != IR_BATCH) base += n->attr.begin[d] * st[d];
        return move(L, ys, n->in[0], id, base, dst, ys, id, 0);
    case IR_PAD:
        lw_strides(ys, st);
        for (int d = 0; d < ys->rank; d++)
            if (ys->dims[d] != IR_BATCH) base += n->attr.pad_lo[d] * st[d];
        fill(L, dst, lw_count(L, ys), lp_real(L->a, 0));
        return move(L, &n->in[0]->shape, n->in[0], id, 0, dst, ys, id, base);
    case IR_REVERSE:
        return reverse(L, n, dst);
    case IR_CONCAT:
        lw_strides(ys, st);
        for (int k = 0; k < n->nin; k++) {
            if (!move(L, &n->in[k]->shape, n->in[k], id, 0, dst, ys, id, base)) return false;
            base += n->in[k]->shape.dims[n->attr.axis] * st[n->attr.axis];
        }
        return true;
    default: return lw_fail(L, "%s: not a layout op", ir_ops[n->op]->name);
    }
}

/* Softmax / log-softmax along an axis that is not the last (the last is a runtime call). */
static bool softmax_loops(lower *L, ir_node *n, lp_buf *dst)
{
    kd_arena *a = L->a;
    ir_node *x = n->in[0];
    const ir_shape *xs = &x->shape;
    int rmap[IR_MAX_RANK], order[IR_MAX_RANK], cls[IR_MAX_RANK], no = 0;
    identity_map(xs->rank, rmap);
    for (int r = 0; r < xs->rank; r++) cls[r] = r == n->attr.axis;
    for (int pass = 0; pass < 2; pass++)
        for (int r = 0; r < xs->rank; r++)
            if (cls[r] == pass) order[no++] = r;
    space sp;
    space_init(&sp, L, xs, order, cls);
    access out = access_of(xs, rmap, 0);
    for (int pass = 0; pass < 2; pass++) {
        note(&sp, &out);
        lp_expr *xv = value_expr(&sp, x, rmap, 0);
        if (pass == 0) {
            space_finish(&sp);
            continue;
        }
        int kept = 0;
        while (kept < sp.ngroups && !sp.cls[sp.order[sp.gstart[kept]]]) kept++;
        kd_vec *body = nest(&sp, 0, kept, &L->k->body, true);
        lp_var *m = lp_new_var(a, L->f, LP_REAL, "max"), *s = lp_new_var(a, L->f, LP_REAL, "sum");
        kd_vec_push(a, body, lp_let(a, m, lp_real(a, -INFINITY)));
        kd_vec_push(a, nest(&sp, kept, sp.ngroups, body, false), lp_set(a, m, xv, LP_ACC_MAX));
        kd_vec_push(a, body, lp_let(a, s, lp_real(a, 0)));
        lp_expr *shifted = lp_bin(a, LP_SUB, xv, lp_var_ref(a, m));
        kd_vec_push(a, nest(&sp, kept, sp.ngroups, body, false), lp_set(a, s, lp_un(a, LP_EXP, shifted), LP_ACC_ADD));
        lp_expr *y = n->op == IR_SOFTMAX
                         ? lp_bin(a, LP_DIV, lp_un(a, LP_EXP, shifted), lp_var_ref(a, s))
                         : lp_bin(a, LP_SUB, shifted, lp_un(a, LP_LOG, lp_var_ref(a, s)));
        kd_vec_push(a, nest(&sp, kept, sp.ngroups, body, false), lp_store(a, dst, offset(&sp, &out), y, LP_ASSIGN));
    }
    return !L->failed;
}

bool lw_loop_kernel(lower *L, ir_node *n, lp_buf *dst)
{
    switch (n->op) {
    case IR_SUM:
    case IR_MEAN:
    case IR_MAX: return reduce(L, n, dst);
    case IR_MAX_GRAD: return max_grad(L, n, dst);
    case IR_TRANSPOSE:
    case IR_SLICE:
    case IR_PAD:
    case IR_REVERSE:
    case IR_CONCAT: return layout(L, n, dst);
    case IR_SOFTMAX:
    case IR_LOG_SOFTMAX: return softmax_loops(L, n, dst);
    case IR_DEPTHWISE_CONV2D:
    case IR_DEPTHWISE_CONV2D_BWD_DATA:
    case IR_DEPTHWISE_CONV2D_BWD_FILTER: return lw_depthwise_kernel(L, n, dst);
    case IR_GATHER:
    case IR_GATHER_GRAD: return lw_gather_kernel(L, n, dst);
    case IR_SCAN: return lw_scan_kernel(L, n, dst);
    default: return elementwise(L, n, dst, false);
    }
}
