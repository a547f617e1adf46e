/* thread_plan.c — thread planning, beside arena planning: which loops of a
 * function run split across the host's thread pool, and what each split
 * loop's outlined body reads (codegen.h). The JIT (emit_jit.c) consumes the
 * plan: it outlines each split loop and calls kdh_parallel_range.
 *
 * A loop whose iterations write disjoint elements runs as [lo, hi) slices on
 * the host's thread pool (runtime/host/thread_pool.h): its body is outlined
 * into a function f(ctx, lo, hi) of this context, ctx a struct holding the
 * buffer pointers, parameters and outer locals the body reads, and the loop
 * becomes kdh_parallel_range(f, &ctx, n, grain, min_n). Two shapes:
 *   - a FOR marked parallel (element-wise loops: the optimizer's updates,
 *     activation gradients ...), not inside another loop;
 *   - a reduction over rows into a row vector (bias gradients):
 *       for (r < R) for (j < C) out[j] += f(r, j)
 *     split on j: each thread runs every r for its columns, so each sum is
 *     added in the same order as on one thread.
 * Either way every element gets exactly the single-threaded arithmetic, so
 * results do not depend on the thread count. Bodies that call kernels (which
 * may use the pool themselves) or write locals of the enclosing code stay
 * serial, as do loops with too little work to pay for the hand-off. */

#include "codegen.h"

/* Below this many loads and stores a loop stays on one thread: a job on
 * the pool costs ~1.5-2.5 us (the hand-off, and the slice's data moving to
 * the other core), and a vectorised loop runs ~20 of them per ns, so a loop
 * gains from two threads from ~80k on. Measured in kdslc train's MLP at two
 * threads: the ReLU gradient of 64x256 (49k) took 3.4 us split and 2.3
 * serial; Adam on 128x256 (229k) 7.3 split and 11.4 serial. */
#define PAR_MIN_WORK 65536.0
/* Slice bounds: multiples of 16 elements (64 bytes of floats). */
#define PAR_GRAIN 16

static void par_buf(kd_par_site *pi, int id, bool stored);
static void par_var(kd_par_site *pi, int id, bool def);

/* An integer expression's value at the program's max batch; -1 if unknown. */
static long est_int(kd_thread_planner *T, const lp_expr *e)
{
    if (!e || e->type != LP_INT) return -1;
    switch (e->kind) {
    case LP_E_INT: return (long)e->ival;
    case LP_E_PARAM: return e->param == LP_P_BATCH ? T->p->max_batch : -1;
    case LP_E_OP: {
        long a = est_int(T, e->a), b = est_int(T, e->b);
        if (a < 0 || b < 0) return -1;
        switch (e->op) {
        case LP_ADD: return a + b;
        case LP_SUB: return a - b;
        case LP_MUL: return a * b;
        case LP_DIV: return b ? a / b : -1;
        default: return -1;
        }
    }
    default: return -1;
    }
}

static bool var_ok(kd_thread_planner *T, const lp_var *v) { return v && v->id >= 0 && v->id < T->f->vars.len && T->f->vars.items[v->id] == v; }
static bool buf_ok(kd_thread_planner *T, const lp_buf *b) { return b && b->id >= 0 && b->id < T->f->bufs.len && T->f->bufs.items[b->id] == b; }

static void par_expr(kd_thread_planner *T, kd_par_site *pi, const lp_expr *e, double w)
{
    if (!e || !pi->ok) return;
    switch (e->kind) {
    case LP_E_VAR:
        if (!var_ok(T, e->var)) pi->ok = false;
        else par_var(pi, e->var->id, false);
        return;
    case LP_E_PARAM:
        switch (e->param) {
        case LP_P_BATCH: pi->param[LP_P_BATCH] = true; break;
        case LP_P_STEP: pi->param[LP_P_STEP] = true; break;
        case LP_P_LR: pi->param[LP_P_LR] = true; break;
        case LP_P_SEED: pi->param[LP_P_SEED] = true; break;
        default: pi->ok = false; break;
        }
        return;
    case LP_E_LOAD:
        if (!buf_ok(T, e->buf)) {
            pi->ok = false;
            return;
        }
        par_buf(pi, e->buf->id, false);
        pi->mem += w;
        par_expr(T, pi, e->a, w);
        return;
    case LP_E_DROPOUT:
        pi->param[LP_P_STEP] = true;
        par_expr(T, pi, e->a, w);
        return;
    case LP_E_OP:
    case LP_E_SELECT:
        par_expr(T, pi, e->a, w);
        par_expr(T, pi, e->b, w);
        par_expr(T, pi, e->c, w);
        return;
    default: return;
    }
}

static void par_stmts(kd_thread_planner *T, kd_par_site *pi, const kd_vec *body, double w);

static void par_stmt(kd_thread_planner *T, kd_par_site *pi, const lp_stmt *s, double w)
{
    if (!s || !pi->ok) {
        pi->ok = false;
        return;
    }
    switch (s->kind) {
    case LP_S_FOR: {
        if (!var_ok(T, s->var)) break;
        par_var(pi, s->var->id, true);
        par_expr(T, pi, s->extent, w);
        long n = est_int(T, s->extent);
        par_stmts(T, pi, &s->body, w * (double)(n >= 0 ? n : 16));
        return;
    }
    case LP_S_STORE:
        if (!buf_ok(T, s->buf)) break;
        par_buf(pi, s->buf->id, true);
        pi->mem += s->acc == LP_ASSIGN ? w : 2 * w;
        par_expr(T, pi, s->index, w);
        par_expr(T, pi, s->value, w);
        return;
    case LP_S_LET:
        if (!var_ok(T, s->var)) break;
        par_var(pi, s->var->id, true);
        par_expr(T, pi, s->value, w);
        return;
    case LP_S_SET:
        /* a local of the body (declared by a LET before it), never one of the enclosing code */
        if (!var_ok(T, s->var) || !pi->def[s->var->id]) break;
        par_expr(T, pi, s->value, w);
        return;
    case LP_S_IF:
        if (!s->cond) break;   /* if_buf tests the caller's pointers: not in a parallel body */
        par_expr(T, pi, s->cond, w);
        par_stmts(T, pi, &s->body, w);
        return;
    default: break;   /* calls: the kernels may use the pool themselves */
    }
    pi->ok = false;
}

static void par_stmts(kd_thread_planner *T, kd_par_site *pi, const kd_vec *body, double w)
{
    for (int i = 0; i < body->len && pi->ok; i++) par_stmt(T, pi, body->items[i], w);
}

static kd_par_site par_new(kd_thread_planner *T)
{
    int nb = T->f->bufs.len + 1, nv = T->f->vars.len + 1;
    if (!T->buf) {   /* once per function: begin() resets them */
        T->buf = kd_alloc_array(T->scratch, (size_t)nb, sizeof *T->buf);
        T->stored = kd_alloc_array(T->scratch, (size_t)nb, sizeof *T->stored);
        T->read = kd_alloc_array(T->scratch, (size_t)nv, sizeof *T->read);
        T->def = kd_alloc_array(T->scratch, (size_t)nv, sizeof *T->def);
        T->touched_buf = kd_alloc_array(T->scratch, (size_t)nb, sizeof(int));
        T->touched_var = kd_alloc_array(T->scratch, (size_t)nv, sizeof(int));
    }
    kd_par_site pi = {.ok = true, .buf = T->buf, .stored = T->stored, .read = T->read, .def = T->def,
                   .touched_buf = T->touched_buf, .touched_var = T->touched_var};
    return pi;
}

static void par_buf(kd_par_site *pi, int id, bool stored)
{
    if (!pi->buf[id]) pi->buf[id] = true, pi->touched_buf[pi->nbuf++] = id;
    if (stored) pi->stored[id] = true;
}

static void par_var(kd_par_site *pi, int id, bool def)
{
    if (!pi->read[id] && !pi->def[id]) pi->touched_var[pi->nvar++] = id;
    if (def) pi->def[id] = true;
    else pi->read[id] = true;
}

/* The function's arrays as they were before the site. */
static void par_clear(kd_par_site *pi)
{
    for (int i = 0; i < pi->nbuf; i++) pi->buf[pi->touched_buf[i]] = pi->stored[pi->touched_buf[i]] = false;
    for (int i = 0; i < pi->nvar; i++) pi->read[pi->touched_var[i]] = pi->def[pi->touched_var[i]] = false;
    pi->nbuf = pi->nvar = 0;
}

static bool expr_uses_var(const lp_expr *e, const lp_var *v)
{
    if (!e) return false;
    if (e->kind == LP_E_VAR) return e->var == v;
    return expr_uses_var(e->a, v) || expr_uses_var(e->b, v) || expr_uses_var(e->c, v);
}

static bool expr_uses_any_var(const lp_expr *e)
{
    if (!e) return false;
    if (e->kind == LP_E_VAR) return true;
    return expr_uses_any_var(e->a) || expr_uses_any_var(e->b) || expr_uses_any_var(e->c);
}

/* Whether the loads of buffer b in e are all at index `var` itself. */
static bool loads_at(const lp_expr *e, const lp_buf *b, const lp_var *var)
{
    if (!e) return true;
    if (e->kind == LP_E_LOAD && e->buf == b && !(e->a && e->a->kind == LP_E_VAR && e->a->var == var)) return false;
    return loads_at(e->a, b, var) && loads_at(e->b, b, var) && loads_at(e->c, b, var);
}

/* The reduction shape: `inner` (the only statement of a serial loop) holds
 * only stores at index inner->var and lets; what it stores it reads only at
 * that index, so its iterations touch disjoint elements in every row. */
static bool column_split_ok(const lp_stmt *inner)
{
    if (!inner || inner->kind != LP_S_FOR || expr_uses_any_var(inner->extent)) return false;
    const lp_var *u = inner->var;
    for (int i = 0; i < inner->body.len; i++) {
        const lp_stmt *s = inner->body.items[i];
        if (!s) return false;
        if (s->kind == LP_S_LET) continue;
        if (s->kind != LP_S_STORE) return false;
        if (!s->index || s->index->kind != LP_E_VAR || s->index->var != u) return false;
    }
    for (int i = 0; i < inner->body.len; i++) {
        const lp_stmt *st = inner->body.items[i];
        if (st->kind != LP_S_STORE) continue;
        for (int k = 0; k < inner->body.len; k++) {
            const lp_stmt *s = inner->body.items[k];
            if (!loads_at(s->value, st->buf, u) || (s->kind == LP_S_STORE && !loads_at(s->index, st->buf, u)))
                return false;
        }
    }
    return true;
}

static bool par_plan(kd_thread_planner *T, kd_par_site *pi, const lp_stmt *outer, const lp_stmt *loop)
{
    if (outer) {
        par_var(pi, outer->var->id, true);
        par_expr(T, pi, outer->extent, 1);
    }
    par_var(pi, loop->var->id, true);
    par_stmts(T, pi, &loop->body, 1);
    if (!pi->ok) return false;
    double per = pi->mem > 0 ? pi->mem : 1;
    if (outer) {
        long r = est_int(T, outer->extent);
        per *= (double)(r >= 0 ? r : 1);
    }
    long n = est_int(T, loop->extent);
    if (n < 0) n = T->p->max_batch;   /* unknown: assume a batch's worth */
    long grain = T->split_small ? 1 : PAR_GRAIN;
    double min_work = T->split_small ? 0 : PAR_MIN_WORK;
    if ((double)n * per < min_work || n < 2 * grain) return false;
    long min_n = (long)(min_work / per);
    if (min_n < 2 * grain) min_n = 2 * grain;
    pi->grain = grain;
    pi->min_n = min_n;
    return true;
}

void kd_thread_planner_init(kd_thread_planner *T, const lp_program *p, const lp_func *f, kd_arena *scratch,
                            bool split_small)
{
    *T = (kd_thread_planner){.p = p, .f = f, .scratch = scratch, .split_small = split_small};
}

bool kd_thread_plan_site(kd_thread_planner *T, const lp_stmt *s, kd_par_site *site)
{
    const lp_stmt *outer = NULL, *loop = s;
    if (!s->parallel) {
        if (s->body.len != 1 || !column_split_ok(s->body.items[0])) return false;
        outer = s;
        loop = s->body.items[0];
        if (!var_ok(T, loop->var) || loop->var->type != LP_INT) return false;
    }
    *site = par_new(T);
    site->outer = outer;
    site->loop = loop;
    if (par_plan(T, site, outer, loop)) return true;
    par_clear(site);
    return false;
}

void kd_thread_plan_done(kd_par_site *site) { par_clear(site); }
