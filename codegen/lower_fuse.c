/* lower_fuse.c — merges neighbouring elementwise loop nests of the same shape
 * into one nest with several stores (multi-output fusion), so that data made
 * by one is used while still in registers, and arrays both read are read once.
 * Adam's m, v and weight updates of one variable become one pass.
 *
 * Kernels k and k+1 merge when both are a bare nest of loops (the same
 * extents) around stores only, storing at the same index, and every access of
 * one to what the other stores is at that index: iteration i then reads and
 * writes only element i of the buffers the two share, so running the two
 * bodies per iteration computes what running the two nests in turn does.
 *
 * Then scalar replacement: an arena buffer that one such loop writes and
 * reads back at the same index, and no other kernel touches, becomes a local
 * of the loop body (SGD's lr * g, shared by the momentum and the Nesterov
 * step): no memory at all, which apply_gradients (no arena) relies on. */
#include "lower_internal.h"

#include <string.h>

enum { MAX_DEPTH = IR_MAX_RANK };

static bool expr_eq(const lp_expr *a, const lp_expr *b)
{
    if (a == b) return true;
    if (!a || !b || a->kind != b->kind || a->type != b->type) return false;
    switch (a->kind) {
    case LP_E_INT: return a->ival == b->ival;
    case LP_E_REAL: return !memcmp(&a->rval, &b->rval, sizeof a->rval);
    case LP_E_VAR: return a->var == b->var;
    case LP_E_PARAM: return a->param == b->param;
    case LP_E_LOAD: return a->buf == b->buf && expr_eq(a->a, b->a);
    case LP_E_OP: return a->op == b->op && expr_eq(a->a, b->a) && expr_eq(a->b, b->b);
    case LP_E_SELECT: return expr_eq(a->a, b->a) && expr_eq(a->b, b->b) && expr_eq(a->c, b->c);
    case LP_E_DROPOUT: return !memcmp(&a->dropout, &b->dropout, sizeof a->dropout) && expr_eq(a->a, b->a);
    }
    return false;
}

typedef struct subst {
    lp_var *from[MAX_DEPTH], *to[MAX_DEPTH];
    int n;
} subst;

static lp_expr *rename_vars(kd_arena *a, const lp_expr *e, const subst *s)
{
    if (!e) return NULL;
    lp_expr *c = kd_alloc(a, sizeof *c);
    *c = *e;
    if (e->kind == LP_E_VAR)
        for (int i = 0; i < s->n; i++)
            if (e->var == s->from[i]) c->var = s->to[i];
    c->a = rename_vars(a, e->a, s);
    c->b = rename_vars(a, e->b, s);
    c->c = rename_vars(a, e->c, s);
    return c;
}

/* The loops of a kernel that is one nest around stores only: depth and the
 * innermost body, or -1. */
static int nest_of(const lp_kernel *k, lp_stmt **loops, kd_vec **inner)
{
    const kd_vec *body = &k->body;
    int depth = 0;
    while (body->len == 1 && ((lp_stmt *)body->items[0])->kind == LP_S_FOR) {
        if (depth == MAX_DEPTH) return -1;
        loops[depth++] = body->items[0];
        body = &loops[depth - 1]->body;
    }
    if (body->len == 0) return -1;
    for (int i = 0; i < body->len; i++) {
        const lp_stmt *s = body->items[i];
        if (s->kind != LP_S_STORE || s->acc != LP_ASSIGN) return -1;
    }
    *inner = (kd_vec *)body;
    return depth;
}

typedef struct access_check {
    const kd_vec *stores;  /* the other kernel's stores */
    const lp_expr *index;  /* the index both store at */
    bool ok;
} access_check;

static bool stored_by(const kd_vec *stores, const lp_buf *b)
{
    for (int i = 0; i < stores->len; i++)
        if (((const lp_stmt *)stores->items[i])->buf == b) return true;
    return false;
}

/* Every load in e of a buffer the other kernel stores is at `index`. */
static void check_loads(access_check *c, const lp_expr *e)
{
    if (!e || !c->ok) return;
    if (e->kind == LP_E_LOAD && stored_by(c->stores, e->buf) && !expr_eq(e->a, c->index)) c->ok = false;
    check_loads(c, e->a);
    check_loads(c, e->b);
    check_loads(c, e->c);
}

static bool loads_ok(const kd_vec *body, const kd_vec *other_stores, const lp_expr *index)
{
    access_check c = {other_stores, index, true};
    for (int i = 0; i < body->len && c.ok; i++) {
        const lp_stmt *s = body->items[i];
        check_loads(&c, s->index);
        check_loads(&c, s->value);
    }
    return c.ok;
}

/* Loads of b in the body, all at `index`? */
static void all_at(const lp_expr *e, const lp_buf *b, const lp_expr *index, bool *ok)
{
    if (!e || !*ok) return;
    if (e->kind == LP_E_LOAD && e->buf == b && !expr_eq(e->a, index)) *ok = false;
    all_at(e->a, b, index, ok);
    all_at(e->b, b, index, ok);
    all_at(e->c, b, index, ok);
}

/* dst, stored by statement `at` of a merged body, may take over candidate
 * c's bytes only if every load of c in the body is at the stored index and
 * none comes after that store: a later statement would read the value just
 * written in c's place (e = relu(..); concat(e * 2, e * 3) with e*2 in place
 * of e made the second product read 2e). */
static bool loads_buf(const lp_expr *e, const lp_buf *b);

static bool reuse_ok(const kd_vec *body, int at, const lp_buf *c, const lp_expr *index)
{
    bool ok = true;
    for (int t = 0; t < body->len && ok; t++) {
        const lp_stmt *s = body->items[t];
        all_at(s->value, c, index, &ok);
        all_at(s->index, c, index, &ok);
        if (t > at && (loads_buf(s->value, c) || loads_buf(s->index, c))) ok = false;
    }
    return ok;
}

static void prune_reuse(kd_arena *a, const kd_vec *body, const lp_expr *index)
{
    for (int i = 0; i < body->len; i++) {
        lp_buf *dst = ((lp_stmt *)body->items[i])->buf;
        kd_vec keep = {0};
        for (int j = 0; j < dst->reuse.len; j++)
            if (reuse_ok(body, i, dst->reuse.items[j], index)) kd_vec_push(a, &keep, dst->reuse.items[j]);
        dst->reuse = keep;
    }
}

static bool try_merge(kd_arena *a, lp_kernel *k1, lp_kernel *k2)
{
    lp_stmt *l1[MAX_DEPTH], *l2[MAX_DEPTH];
    kd_vec *b1 = NULL, *b2 = NULL;   /* set by nest_of when it succeeds */
    int d1 = nest_of(k1, l1, &b1), d2 = nest_of(k2, l2, &b2);
    if (d1 < 0 || d1 != d2) return false;
    subst s = {.n = d1};
    for (int i = 0; i < d1; i++) {
        if (!expr_eq(l1[i]->extent, l2[i]->extent)) return false;
        s.from[i] = l2[i]->var;
        s.to[i] = l1[i]->var;
    }
    /* k2's statements over k1's loop variables */
    kd_vec body2 = {0};
    for (int i = 0; i < b2->len; i++) {
        const lp_stmt *st = b2->items[i];
        kd_vec_push(a, &body2, lp_store(a, st->buf, rename_vars(a, st->index, &s), rename_vars(a, st->value, &s), st->acc));
    }
    const lp_expr *index = ((const lp_stmt *)b1->items[0])->index;
    for (int i = 0; i < b1->len; i++)
        if (!expr_eq(((const lp_stmt *)b1->items[i])->index, index)) return false;
    for (int i = 0; i < body2.len; i++) {
        const lp_stmt *st = body2.items[i];
        if (!expr_eq(st->index, index) || stored_by(b1, st->buf)) return false;
    }
    if (!loads_ok(&body2, b1, index) || !loads_ok(b1, &body2, index)) return false;
    for (int i = 0; i < body2.len; i++) kd_vec_push(a, b1, body2.items[i]);
    prune_reuse(a, b1, index);
    k1->what = kd_format(a, "%s; %s", k1->what, k2->what);
    if (!k1->loc.line) k1->loc = k2->loc;
    return true;
}

void lw_fuse_loops(lower *L)
{
    kd_vec *ks = &L->f->kernels;
    int out = 0;
    for (int i = 0; i < ks->len; i++) {
        lp_kernel *k = ks->items[i];
        if (out > 0 && try_merge(L->a, ks->items[out - 1], k)) continue;
        k->index = out;
        ks->items[out++] = k;
    }
    ks->len = out;
}

/* ---- scalar replacement ------------------------------------------------------------ */

static bool loads_buf(const lp_expr *e, const lp_buf *b)
{
    if (!e) return false;
    if (e->kind == LP_E_LOAD && e->buf == b) return true;
    return loads_buf(e->a, b) || loads_buf(e->b, b) || loads_buf(e->c, b);
}

/* e with every load of b at `index` replaced by v; *bad set if b is loaded elsewhere. */
static lp_expr *scalarize(kd_arena *a, const lp_expr *e, const lp_buf *b, const lp_expr *index, lp_var *v, bool *bad)
{
    if (!e) return NULL;
    if (e->kind == LP_E_LOAD && e->buf == b) {
        if (!expr_eq(e->a, index)) *bad = true;
        return lp_var_ref(a, v);
    }
    lp_expr *c = kd_alloc(a, sizeof *c);
    *c = *e;
    c->a = scalarize(a, e->a, b, index, v, bad);
    c->b = scalarize(a, e->b, b, index, v, bad);
    c->c = scalarize(a, e->c, b, index, v, bad);
    return c;
}

typedef struct kernel_counter {
    int *count, *last, k;
} kernel_counter;

static void count_kernel(void *ctx, lp_buf *b, bool write)
{
    (void)write;
    kernel_counter *c = ctx;
    if (c->last[b->id] != c->k) {
        c->last[b->id] = c->k;
        c->count[b->id]++;
    }
}

void lw_scalarize(lower *L)
{
    lp_func *f = L->f;
    kd_arena *a = L->a;
    int nb = f->bufs.len;
    kernel_counter kc = {kd_alloc_array(a, (size_t)nb + 1, sizeof(int)), kd_alloc_array(a, (size_t)nb + 1, sizeof(int)), 0};
    for (int i = 0; i < nb; i++) kc.last[i] = -1;
    for (int k = 0; k < f->kernels.len; k++) {
        kc.k = k;
        lp_kernel_visit_bufs(f->kernels.items[k], count_kernel, &kc);
    }
    for (int k = 0; k < f->kernels.len; k++) {
        lp_stmt *loops[MAX_DEPTH];
        kd_vec *body;
        if (nest_of(f->kernels.items[k], loops, &body) < 0) continue;
        for (int i = 0; i < body->len; i++) {
            lp_stmt *st = body->items[i];
            lp_buf *b = st->buf;
            if (st->kind != LP_S_STORE || b->space != LP_ARENA || b->scratch || b == f->ret || kc.count[b->id] != 1)
                continue;
            bool bad = loads_buf(st->value, b) || loads_buf(st->index, b);
            for (int j = 0; j < body->len && !bad; j++) {
                const lp_stmt *o = body->items[j];
                if (j != i && o->kind == LP_S_STORE && o->buf == b) bad = true;
                if (j < i && (loads_buf(o->value, b) || loads_buf(o->index, b))) bad = true;
            }
            if (bad) continue;
            lp_var *v = lp_new_var(a, f, LP_REAL, "s");
            kd_vec later = {0};
            for (int j = i + 1; j < body->len && !bad; j++) {
                const lp_stmt *o = body->items[j];
                if (o->kind != LP_S_STORE) {
                    bad = true;
                    break;
                }
                kd_vec_push(a, &later, lp_store(a, o->buf, scalarize(a, o->index, b, st->index, v, &bad),
                                                scalarize(a, o->value, b, st->index, v, &bad), o->acc));
            }
            if (bad) continue;
            body->items[i] = lp_let(a, v, st->value);
            for (int j = 0; j < later.len; j++) body->items[i + 1 + j] = later.items[j];
            kc.count[b->id] = 0;
        }
    }
}
