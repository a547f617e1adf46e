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

#include <limits.h>
#include <string.h>

enum { MAX_DEPTH = IR_MAX_RANK };

/* The most statements one merged loop gets: past this a loop gains nothing
 * (its values no longer fit in registers), and GCC takes longer over one
 * huge loop than over several (1,000 chained element-wise statements with
 * a train block: the JIT 2.8 s with loops of up to 2,000 statements, 2.3 s
 * with this cap). Not in apply_gradients: it has no arena, so each
 * optimizer temporary must stay in one loop with its readers to become a
 * local (40 adjacent [16, 16] weights under SGD with Nesterov momentum
 * split one across two loops). */
enum { MAX_MERGED_STATEMENTS = 32 };

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

static bool loads_buf(const lp_expr *e, const lp_buf *b);
static void prune_within(const kd_vec *body, const lp_expr *index);

/* ---- merging ------------------------------------------------------------------------
 * Kernels merge one after another into the open one (the last kernel kept),
 * whose stores and loads are summarised per buffer, so that a merge costs
 * the size of the kernel merged in, not of everything merged so far (a
 * model of 800 chained statements merged into one loop took 56 s when each
 * merge walked the whole body again). */

typedef struct fuse {
    lower *L;
    lp_kernel *open;          /* the kernel merges go into; NULL: none */
    lp_stmt *loops[MAX_DEPTH];
    kd_vec *body;             /* its innermost body */
    int depth, merged;
    const lp_expr *index;     /* the index every store of the body is at */
    int stamp;                /* the summaries below are the open kernel's when they carry this stamp */
    int *stored, *loaded;     /* by buffer id: stamp when the body stores / loads it */
    bool *off_index;          /* by buffer id: loaded somewhere at another index */
    int *held_stamp;          /* by buffer id: holders[] is current */
    kd_vec *holders;          /* by buffer id: the body's stored buffers that may take its bytes */
} fuse;

static bool is_stored(const fuse *F, const lp_buf *b) { return F->stored[b->id] == F->stamp; }
static bool is_loaded(const fuse *F, const lp_buf *b) { return F->loaded[b->id] == F->stamp; }

/* Adds every load of e to the summary. */
static void note_loads(fuse *F, const lp_expr *e)
{
    if (!e) return;
    if (e->kind == LP_E_LOAD) {
        int id = e->buf->id;
        if (F->loaded[id] != F->stamp) F->loaded[id] = F->stamp, F->off_index[id] = false;
        if (!expr_eq(e->a, F->index)) F->off_index[id] = true;
    }
    note_loads(F, e->a);
    note_loads(F, e->b);
    note_loads(F, e->c);
}

/* Adds statement st (stored last in the body) to the summary. */
static void note_stmt(fuse *F, lp_stmt *st)
{
    note_loads(F, st->index);
    note_loads(F, st->value);
    F->stored[st->buf->id] = F->stamp;
    for (int j = 0; j < st->buf->reuse.len; j++) {
        const lp_buf *c = st->buf->reuse.items[j];
        if (F->held_stamp[c->id] != F->stamp) F->held_stamp[c->id] = F->stamp, F->holders[c->id] = (kd_vec){0};
        kd_vec_push(F->L->a, &F->holders[c->id], st->buf);
    }
}

static void drop_candidate(lp_buf *dst, const lp_buf *c)
{
    int out = 0;
    for (int j = 0; j < dst->reuse.len; j++)
        if (dst->reuse.items[j] != c) dst->reuse.items[out++] = dst->reuse.items[j];
    dst->reuse.len = out;
}

/* Loads in e that the body already stores, at another index: iteration i
 * would read what iteration j wrote. */
static bool reads_stored_elsewhere(const fuse *F, const lp_expr *e)
{
    if (!e) return false;
    if (e->kind == LP_E_LOAD && is_stored(F, e->buf) && !expr_eq(e->a, F->index)) return true;
    return reads_stored_elsewhere(F, e->a) || reads_stored_elsewhere(F, e->b) || reads_stored_elsewhere(F, e->c);
}

/* A load of c in e at another index than `index`? */
static bool loads_off(const lp_expr *e, const lp_buf *c, const lp_expr *index)
{
    if (!e) return false;
    if (e->kind == LP_E_LOAD && e->buf == c && !expr_eq(e->a, index)) return true;
    return loads_off(e->a, c, index) || loads_off(e->b, c, index) || loads_off(e->c, c, index);
}

/* The open kernel a merge can go into: a bare nest around stores, all at one index. */
static void open_kernel(fuse *F, lp_kernel *k)
{
    F->open = NULL;
    F->depth = nest_of(k, F->loops, &F->body);
    if (F->depth < 0) return;
    F->index = ((const lp_stmt *)F->body->items[0])->index;
    for (int i = 1; i < F->body->len; i++)
        if (!expr_eq(((const lp_stmt *)F->body->items[i])->index, F->index)) return;
    prune_within(F->body, F->index);
    F->open = k;
    F->merged = 1;
    F->stamp++;
    for (int i = 0; i < F->body->len; i++) note_stmt(F, F->body->items[i]);
}

/* Each load in e of a buffer some statement of the body holds as an
 * in-place candidate comes after that statement's store: the candidate
 * goes (the load would read the value stored in its place). */
static void drop_read_candidates(fuse *F, const lp_expr *e)
{
    if (!e) return;
    if (e->kind == LP_E_LOAD && F->held_stamp[e->buf->id] == F->stamp) {
        kd_vec *h = &F->holders[e->buf->id];
        for (int j = 0; j < h->len; j++) drop_candidate(h->items[j], e->buf);
        h->len = 0;
    }
    drop_read_candidates(F, e->a);
    drop_read_candidates(F, e->b);
    drop_read_candidates(F, e->c);
}

/* Drops the candidates of body[i]'s result that statements of the body
 * read after it, or read at another index (lowering gives a kernel several
 * stores in one loop too). */
static void prune_within(const kd_vec *body, const lp_expr *index)
{
    for (int i = 0; i < body->len; i++) {
        lp_buf *dst = ((lp_stmt *)body->items[i])->buf;
        for (int j = 0; j < dst->reuse.len; j++) {
            const lp_buf *c = dst->reuse.items[j];
            bool ok = true;
            for (int t = 0; t < body->len && ok; t++) {
                const lp_stmt *o = body->items[t];
                if (loads_off(o->value, c, index) || loads_off(o->index, c, index)) ok = false;
                if (t > i && (loads_buf(o->value, c) || loads_buf(o->index, c))) ok = false;
            }
            if (!ok) drop_candidate(dst, c), j--;
        }
    }
}

/* Kernel k merged into the open one, if its iterations touch only what the
 * same iteration of the open kernel touches. */
static bool try_merge(fuse *F, lp_kernel *k)
{
    lp_stmt *l2[MAX_DEPTH];
    kd_vec *b2 = NULL;
    if (!F->open || nest_of(k, l2, &b2) != F->depth) return false;
    if (F->L->f->kind != LP_F_APPLY && F->body->len + b2->len > MAX_MERGED_STATEMENTS) return false;
    subst s = {.n = F->depth};
    for (int i = 0; i < F->depth; i++) {
        if (!expr_eq(F->loops[i]->extent, l2[i]->extent)) return false;
        s.from[i] = l2[i]->var;
        s.to[i] = F->loops[i]->var;
    }
    kd_arena *a = F->L->a;
    kd_vec body2 = {0};   /* k's statements over the open kernel's loop variables */
    for (int i = 0; i < b2->len; i++) {
        const lp_stmt *st = b2->items[i];
        lp_stmt *c = lp_store(a, st->buf, rename_vars(a, st->index, &s), rename_vars(a, st->value, &s), st->acc);
        if (!expr_eq(c->index, F->index) || is_stored(F, c->buf)) return false;
        if (reads_stored_elsewhere(F, c->value) || reads_stored_elsewhere(F, c->index)) return false;
        if (is_loaded(F, c->buf) && F->off_index[c->buf->id]) return false;
        kd_vec_push(a, &body2, c);
    }
    /* In place: a result stored by statement i may take over a candidate's
     * bytes only if every load of the candidate in the merged body is at the
     * stored index and none comes after the store (e = relu(..); concat(e * 2,
     * e * 3) wrote e * 2 over e, and the second product read 2e). */
    for (int i = 0; i < body2.len; i++) {
        const lp_stmt *st = body2.items[i];
        drop_read_candidates(F, st->index);
        drop_read_candidates(F, st->value);
    }
    for (int i = 0; i < body2.len; i++) {
        lp_buf *dst = ((lp_stmt *)body2.items[i])->buf;
        for (int j = 0; j < dst->reuse.len; j++) {
            const lp_buf *c = dst->reuse.items[j];
            if (is_loaded(F, c) && F->off_index[c->id]) drop_candidate(dst, c), j--;
        }
    }
    prune_within(&body2, F->index);
    for (int i = 0; i < body2.len; i++) {
        kd_vec_push(a, F->body, body2.items[i]);
        note_stmt(F, body2.items[i]);
    }
    /* the kernel's description: the first few parts, then a count */
    if (++F->merged <= 4) F->open->what = kd_format(a, "%s; %s", F->open->what, k->what);
    else if (F->merged == 5) F->open->what = kd_format(a, "%s; ...", F->open->what);
    if (!F->open->loc.line) F->open->loc = k->loc;
    return true;
}

void lw_fuse_loops(lower *L)
{
    kd_vec *ks = &L->f->kernels;
    int nb = L->f->bufs.len + 1;
    fuse F = {.L = L,
              .stored = kd_alloc_array(L->a, (size_t)nb, sizeof(int)),
              .loaded = kd_alloc_array(L->a, (size_t)nb, sizeof(int)),
              .off_index = kd_alloc_array(L->a, (size_t)nb, sizeof(bool)),
              .held_stamp = kd_alloc_array(L->a, (size_t)nb, sizeof(int)),
              .holders = kd_alloc_array(L->a, (size_t)nb, sizeof(kd_vec))};
    int out = 0;
    for (int i = 0; i < ks->len; i++) {
        lp_kernel *k = ks->items[i];
        if (out > 0 && try_merge(&F, k)) continue;
        k->index = out;
        ks->items[out++] = k;
        open_kernel(&F, k);
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

/* What a body does with each buffer, for scalar replacement (by buffer id). */
typedef struct body_use {
    int stores, store_at;     /* how many statements store it, the last one */
    int first_load;           /* the first statement that loads it (INT_MAX: none) */
    bool off_index;           /* loaded at another index than its store's */
    lp_var *local;            /* the local replacing it, once chosen */
} body_use;

static void note_body_loads(body_use *u, const lp_expr *e, int at, const kd_vec *body)
{
    if (!e) return;
    if (e->kind == LP_E_LOAD) {
        body_use *b = &u[e->buf->id];
        if (at < b->first_load) b->first_load = at;
        if (b->stores > 0 && !expr_eq(e->a, ((const lp_stmt *)body->items[b->store_at])->index)) b->off_index = true;
    }
    note_body_loads(u, e->a, at, body);
    note_body_loads(u, e->b, at, body);
    note_body_loads(u, e->c, at, body);
}

/* e with every load of a replaced buffer read from its local; shares what
 * it does not change. */
static lp_expr *use_locals(kd_arena *a, lp_expr *e, const body_use *u)
{
    if (!e) return NULL;
    if (e->kind == LP_E_LOAD && u[e->buf->id].local) return lp_var_ref(a, u[e->buf->id].local);
    lp_expr *x = use_locals(a, e->a, u), *y = use_locals(a, e->b, u), *z = use_locals(a, e->c, u);
    if (x == e->a && y == e->b && z == e->c) return e;
    lp_expr *c = kd_alloc(a, sizeof *c);
    *c = *e;
    c->a = x, c->b = y, c->c = z;
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
    body_use *u = kd_alloc_array(a, (size_t)nb + 1, sizeof *u);
    for (int k = 0; k < f->kernels.len; k++) {
        lp_stmt *loops[MAX_DEPTH];
        kd_vec *body;
        if (nest_of(f->kernels.items[k], loops, &body) < 0) continue;
        /* one pass to learn each buffer's stores and loads, one to rewrite:
         * linear in the body, which merging can make thousands of statements long */
        int *stored = kd_alloc_array(a, (size_t)body->len, sizeof(int)), nstored = 0;
        for (int i = 0; i < body->len; i++) {
            const lp_stmt *st = body->items[i];
            u[st->buf->id] = (body_use){0, 0, INT_MAX, false, NULL};
            stored[nstored++] = st->buf->id;
        }
        for (int i = 0; i < body->len; i++) {
            const lp_stmt *st = body->items[i];
            note_body_loads(u, st->index, i, body);
            note_body_loads(u, st->value, i, body);
            body_use *b = &u[st->buf->id];
            b->stores++;
            b->store_at = i;
        }
        /* a buffer stored once, in this kernel only, read only after its
         * store and only at the stored index, becomes a local */
        for (int i = 0; i < body->len; i++) {
            lp_stmt *st = body->items[i];
            lp_buf *b = st->buf;
            body_use *bu = &u[b->id];
            bool local = st->kind == LP_S_STORE && b->space == LP_ARENA && !b->scratch && b != f->ret &&
                         kc.count[b->id] == 1 && bu->stores == 1 && bu->first_load > i && !bu->off_index;
            if (local) {
                bu->local = lp_new_var(a, f, LP_REAL, "s");
                kc.count[b->id] = 0;
            }
            lp_expr *value = use_locals(a, st->value, u);
            if (local) body->items[i] = lp_let(a, bu->local, value);
            else if (value != st->value || use_locals(a, st->index, u) != st->index)
                body->items[i] = lp_store(a, b, use_locals(a, st->index, u), value, st->acc);
        }
        for (int i = 0; i < nstored; i++) u[stored[i]] = (body_use){0};   /* the next kernel starts clean */
    }
}
