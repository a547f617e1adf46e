/* arena_plan.c — static offsets in one arena from liveness.
 *
 * A function's kernels run in order, so kernel indices are time. A buffer is
 * live from the first kernel that touches it to the last one (the returned
 * loss: to the end); a workspace only during its call. Two buffers may share
 * bytes when their lifetimes do not overlap. Placement is greedy by size
 * (largest first; ties by first use, then creation): each buffer goes at the
 * offset of the smallest gap, among the buffers already placed that are live
 * at the same time, that holds it, or above them all. Inputs and outputs of
 * one kernel are live together, so a kernel never reads and writes the same
 * bytes through two buffers.
 *
 * live_bound is the most bytes live at any one kernel (a buffer and the one
 * it takes over in place counted once): no placement can do better, and the
 * tests compare arena_bytes with it.
 *
 * With p->disjoint_arena (the host's multi-threaded runs) no two buffers
 * share bytes, except a buffer and the one it takes over in place: the
 * arena is the sum of the buffers' sizes, unless that would exceed
 * DISJOINT_ARENA_MAX. */
#include "codegen.h"

#include <stdlib.h>

/* Above this the disjoint arena is not used: a step that touches that much
 * memory evicts its lines from a core's caches before it comes back to
 * them, so there is little to keep on a core, and the larger footprint
 * costs more than it saves. Measured at two threads (bench/step_time.c,
 * "2" against "2s"): the MLP's training step, 2.4 MB disjoint instead of
 * 1.0 MB, within 1.5% when the vCPUs were near, and its medians 25-30%
 * lower in runs where the host moved them apart; the CNN's, 21.6 MB
 * instead of 12.5 MB, ~1% slower (docs/performance.md). */
#define DISJOINT_ARENA_MAX (8LL << 20)

static int64_t align_up(int64_t n) { return (n + KD_ARENA_ALIGN - 1) / KD_ARENA_ALIGN * KD_ARENA_ALIGN; }

static void touch(void *ctx, lp_buf *b, bool write)
{
    (void)write;
    int t = *(int *)ctx;
    if (b->first < 0 || t < b->first) b->first = t;
    if (t > b->last) b->last = t;
}

typedef struct item {
    lp_buf *b;             /* the first buffer of an in-place chain */
    int64_t size;
    int first, last;       /* the chain's lifetime */
} item;

static const lp_buf *root_of(const lp_buf *b)
{
    while (b->shares) b = b->shares;
    return b;
}

static int by_size(const void *x, const void *y)
{
    const item *a = x, *b = y;
    if (a->size != b->size) return a->size > b->size ? -1 : 1;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    return a->b->id < b->b->id ? -1 : a->b->id > b->b->id;
}


void kd_arena_plan(const lp_program *p, lp_func *f)
{
    for (int i = 0; i < f->bufs.len; i++) {
        lp_buf *b = f->bufs.items[i];
        b->first = b->last = -1;
    }
    for (int k = 0; k < f->kernels.len; k++) {
        int t = k;
        lp_kernel_visit_bufs(f->kernels.items[k], touch, &t);
    }
    if (f->ret) {
        if (f->ret->first < 0) f->ret->first = f->kernels.len;
        f->ret->last = f->kernels.len;
    }

    /* In place: a buffer takes over the bytes of one that dies in the kernel
     * that first writes it (read there only at the written index). The two
     * become one item, placed once. */
    for (int i = 0; i < f->bufs.len; i++) {
        lp_buf *b = f->bufs.items[i];
        b->shares = NULL;
    }
    bool *taken = calloc((size_t)f->bufs.len + 1, sizeof *taken);
    for (int i = 0; i < f->bufs.len; i++) {
        lp_buf *b = f->bufs.items[i];
        if (b->space != LP_ARENA || b->first < 0 || b->local || p->no_inplace) continue;
        for (int j = 0; j < b->reuse.len && !b->shares; j++) {
            lp_buf *o = b->reuse.items[j];
            if (o->last == b->first && !taken[o->id] && o->first >= 0 &&
                lp_buf_bytes(o, p->max_batch, p->real) == lp_buf_bytes(b, p->max_batch, p->real)) {
                b->shares = o;
                taken[o->id] = true;
            }
        }
    }
    free(taken);

    int n = 0;
    item *items = calloc((size_t)f->bufs.len + 1, sizeof *items);
    item **live = calloc((size_t)f->bufs.len + 1, sizeof *live);
    if (!items || !live) {
        fprintf(stderr, "kdslc: out of memory\n");
        exit(1);
    }
    for (int i = 0; i < f->bufs.len; i++) {
        lp_buf *b = f->bufs.items[i];
        if (b->space != LP_ARENA || b->first < 0 || b->local || b->shares) continue;
        items[n].b = b;
        items[n].size = align_up(lp_buf_bytes(b, p->max_batch, p->real));
        items[n].first = b->first;
        items[n].last = b->last;
        n++;
    }
    /* A chain of in-place buffers lives as its first member, from its first use to the last's. */
    for (int i = 0; i < f->bufs.len; i++) {
        const lp_buf *b = f->bufs.items[i];
        if (b->space != LP_ARENA || b->first < 0 || b->local || !b->shares) continue;
        const lp_buf *r = root_of(b);
        for (int k = 0; k < n; k++)
            if (items[k].b == r && b->last > items[k].last) items[k].last = b->last;
    }

    /* The most bytes live at once: a sweep over +size at first use, -size after the last. */
    int64_t *delta = calloc((size_t)f->kernels.len + 2, sizeof *delta);
    if (!delta) {
        fprintf(stderr, "kdslc: out of memory\n");
        exit(1);
    }
    for (int i = 0; i < n; i++) {
        delta[items[i].first] += items[i].size;
        delta[items[i].last + 1] -= items[i].size;
    }
    f->live_bound = 0;
    int64_t live_now = 0;
    for (int t = 0; t <= f->kernels.len; t++) {
        live_now += delta[t];
        if (live_now > f->live_bound) f->live_bound = live_now;
    }
    free(delta);

    /* Disjoint: as if every buffer lived through the whole function. */
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += items[i].size;
    if (p->disjoint_arena && total <= DISJOINT_ARENA_MAX)
        for (int i = 0; i < n; i++) items[i].first = 0, items[i].last = f->kernels.len;
    qsort(items, (size_t)n, sizeof *items, by_size);
    /* placed: the items placed so far, by offset, so that the gaps between
     * those live at the same time come out in address order. */
    item **placed = live;
    int np = 0;
    int64_t top = 0;
    for (int i = 0; i < n; i++) {
        lp_buf *b = items[i].b;
        int64_t best = -1, best_gap = 0, at = 0;
        int best_pos = np;
        for (int j = 0; j <= np; j++) {
            if (j < np && !(placed[j]->first <= items[i].last && items[i].first <= placed[j]->last)) continue;
            int64_t end = j < np ? placed[j]->b->offset : INT64_MAX;
            int64_t gap = end - at;
            if (gap >= items[i].size && (best < 0 || gap < best_gap)) {
                best = at;
                best_gap = gap;
            }
            if (j < np && placed[j]->b->offset + placed[j]->size > at) at = placed[j]->b->offset + placed[j]->size;
        }
        b->offset = best;
        if (best + items[i].size > top) top = best + items[i].size;
        /* insert by offset (ties: after the equal ones, so the order is deterministic) */
        for (best_pos = np; best_pos > 0 && placed[best_pos - 1]->b->offset > best; best_pos--)
            placed[best_pos] = placed[best_pos - 1];
        placed[best_pos] = &items[i];
        np++;
    }
    for (int i = 0; i < f->bufs.len; i++) {
        lp_buf *b = f->bufs.items[i];
        if (b->shares) b->offset = root_of(b)->offset;
    }
    f->arena_bytes = top;
    free(items);
    free(live);
}
