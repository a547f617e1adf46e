/* arena_plan.c — static offsets in one arena from liveness.
 *
 * A function's kernels run in order, so kernel indices are time. A buffer is
 * live from the first kernel that touches it to the last one (the returned
 * loss: to the end); a workspace only during its call. Two buffers may share
 * bytes when their lifetimes do not overlap; inputs and outputs of one
 * kernel are live together, so a kernel never reads and writes the same
 * bytes through two buffers.
 *
 * Two placements: the online plan (kernel by kernel, a free list; near-
 * linear), and the greedy by size (largest first, each in the smallest gap
 * among the buffers placed before it that are live at the same time;
 * quadratic, and it packs mixed sizes better). The online plan is taken
 * when it reaches live_bound; otherwise, for programs of at most
 * GREEDY_BY_SIZE_MAX buffers, the smaller of the two.
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
#include <string.h>

/* Above this the disjoint arena is not used: a step that touches that much
 * memory evicts its lines from a core's caches before it comes back to
 * them, so there is little to keep on a core, and the larger footprint
 * costs more than it saves. Measured at two threads (bench/step_time.c,
 * "2" against "2s"): the MLP's training step, 2.4 MB disjoint instead of
 * 1.0 MB, within 1.5% when the vCPUs were near, and its medians 25-30%
 * lower in runs where the host moved them apart; the CNN's, 21.6 MB
 * instead of 12.5 MB, ~1% slower (docs/performance.md). */
#define DISJOINT_ARENA_MAX (8LL << 20)

int kd_arena_align(const kd_codegen_options *o)
{
    return o->no_workspace ? (o->f64 ? 8 : 4) : KD_ARENA_ALIGN;
}

static int64_t align_up(int64_t n, int align) { return (n + align - 1) / align * align; }

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


/* Above this many items the greedy by size (quadratic: each item scans the
 * items placed before it) is not tried; 10,000 stacked Dense layers have
 * ~60,000. */
#define GREEDY_BY_SIZE_MAX 4096

static void *checked_alloc(size_t n, size_t size)
{
    void *p = calloc(n + 1, size);
    if (!p) {
        fprintf(stderr, "kdslc: out of memory\n");
        exit(1);
    }
    return p;
}

/* Greedy by size (largest first): each item goes at the offset of the
 * smallest gap, among the items already placed that are live at the same
 * time, that holds it, or above them all. Returns the arena's size. */
static int64_t place_greedy_by_size(item *items, int n)
{
    qsort(items, (size_t)n, sizeof *items, by_size);
    /* placed: the items placed so far, by offset, so that the gaps between
     * those live at the same time come out in address order. */
    item **placed = checked_alloc((size_t)n, sizeof *placed);
    int np = 0;
    int64_t top = 0;
    for (int i = 0; i < n; i++) {
        int64_t best = -1, best_gap = 0, at = 0;
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
        items[i].b->offset = best;
        if (best + items[i].size > top) top = best + items[i].size;
        /* insert by offset (ties: after the equal ones, so the order is deterministic) */
        int pos;
        for (pos = np; pos > 0 && placed[pos - 1]->b->offset > best; pos--) placed[pos] = placed[pos - 1];
        placed[pos] = &items[i];
        np++;
    }
    free(placed);
    return top;
}

/* The online plan: kernel by kernel, the items first used there are
 * allocated (largest first) from a free list kept by offset — the smallest
 * free block that holds one, else the end of the used region — and then
 * the items last used there are freed, merged with their free neighbours.
 * A kernel's inputs and outputs are thus never given the same bytes. Each
 * step costs the number of free blocks, which stays small: near-linear
 * where the greedy by size is quadratic. Returns the arena's size. */
typedef struct free_block { int64_t offset, size; } free_block;

static int by_first(const void *x, const void *y)
{
    const item *a = *(item *const *)x, *b = *(item *const *)y;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->size != b->size) return a->size > b->size ? -1 : 1;
    return a->b->id < b->b->id ? -1 : a->b->id > b->b->id;
}

static int by_last(const void *x, const void *y)
{
    const item *a = *(item *const *)x, *b = *(item *const *)y;
    if (a->last != b->last) return a->last < b->last ? -1 : 1;
    return a->b->id < b->b->id ? -1 : a->b->id > b->b->id;
}

static int64_t place_online(item *items, int n, int kernels)
{
    item **starts = checked_alloc((size_t)n, sizeof *starts);
    item **ends = checked_alloc((size_t)n, sizeof *ends);
    free_block *blocks = checked_alloc((size_t)n, sizeof *blocks);
    for (int i = 0; i < n; i++) starts[i] = ends[i] = &items[i];
    qsort(starts, (size_t)n, sizeof *starts, by_first);
    qsort(ends, (size_t)n, sizeof *ends, by_last);
    int nblocks = 0, s = 0, e = 0;
    int64_t end = 0, top = 0;     /* end of the used region; its high-water mark */
    for (int t = 0; t <= kernels; t++) {
        for (; s < n && starts[s]->first == t; s++) {
            int64_t size = starts[s]->size, at;
            int best = -1;
            for (int k = 0; k < nblocks; k++)
                if (blocks[k].size >= size && (best < 0 || blocks[k].size < blocks[best].size)) best = k;
            if (best >= 0) {
                at = blocks[best].offset;
                blocks[best].offset += size;
                blocks[best].size -= size;
                if (blocks[best].size == 0) {
                    memmove(&blocks[best], &blocks[best + 1], (size_t)(nblocks - best - 1) * sizeof *blocks);
                    nblocks--;
                }
            } else if (nblocks > 0 && blocks[nblocks - 1].offset + blocks[nblocks - 1].size == end) {
                at = blocks[--nblocks].offset;      /* the last free block, grown upward */
                end = at + size;
            } else {
                at = end;
                end += size;
            }
            starts[s]->b->offset = at;
            if (end > top) top = end;
        }
        for (; e < n && ends[e]->last == t; e++) {
            free_block fb = {ends[e]->b->offset, ends[e]->size};
            int lo = 0, hi = nblocks;        /* the first block above fb */
            while (lo < hi) {
                int mid = (lo + hi) / 2;
                if (blocks[mid].offset < fb.offset) lo = mid + 1;
                else hi = mid;
            }
            bool merge_below = lo > 0 && blocks[lo - 1].offset + blocks[lo - 1].size == fb.offset;
            bool merge_above = lo < nblocks && fb.offset + fb.size == blocks[lo].offset;
            if (merge_below && merge_above) {
                blocks[lo - 1].size += fb.size + blocks[lo].size;
                memmove(&blocks[lo], &blocks[lo + 1], (size_t)(nblocks - lo - 1) * sizeof *blocks);
                nblocks--;
            } else if (merge_below) {
                blocks[lo - 1].size += fb.size;
            } else if (merge_above) {
                blocks[lo].offset = fb.offset;
                blocks[lo].size += fb.size;
            } else {
                memmove(&blocks[lo + 1], &blocks[lo], (size_t)(nblocks - lo) * sizeof *blocks);
                blocks[lo] = fb;
                nblocks++;
            }
            /* a free block at the end of the used region shrinks the region */
            if (nblocks > 0 && blocks[nblocks - 1].offset + blocks[nblocks - 1].size == end)
                end = blocks[--nblocks].offset;
        }
    }
    free(starts);
    free(ends);
    free(blocks);
    return top;
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
    item *items = checked_alloc((size_t)f->bufs.len, sizeof *items);
    int *item_of = checked_alloc((size_t)f->bufs.len, sizeof *item_of);    /* by buffer id */
    for (int i = 0; i < f->bufs.len; i++) {
        lp_buf *b = f->bufs.items[i];
        if (b->space != LP_ARENA || b->first < 0 || b->local || b->shares) continue;
        items[n].b = b;
        items[n].size = align_up(lp_buf_bytes(b, p->max_batch, p->real), p->arena_align > 0 ? p->arena_align : KD_ARENA_ALIGN);
        items[n].first = b->first;
        items[n].last = b->last;
        item_of[b->id] = n++;
    }
    /* A chain of in-place buffers lives as its first member, from its first use to the last's. */
    for (int i = 0; i < f->bufs.len; i++) {
        const lp_buf *b = f->bufs.items[i];
        if (b->space != LP_ARENA || b->first < 0 || b->local || !b->shares) continue;
        item *root = &items[item_of[root_of(b)->id]];
        if (b->last > root->last) root->last = b->last;
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
    /* Online first: near-linear, and when it reaches live_bound nothing
     * can do better. Otherwise, for programs small enough that the
     * quadratic greedy by size costs little, the smaller of the two. */
    int64_t top = place_online(items, n, f->kernels.len);
    if (top > f->live_bound && n <= GREEDY_BY_SIZE_MAX) {
        int64_t *online = checked_alloc((size_t)n, sizeof *online);
        for (int i = 0; i < n; i++) online[i] = items[i].b->offset;
        item *by_buffer = checked_alloc((size_t)n, sizeof *by_buffer);
        memcpy(by_buffer, items, (size_t)n * sizeof *items);
        int64_t greedy = place_greedy_by_size(items, n);
        if (greedy <= top) top = greedy;
        else
            for (int i = 0; i < n; i++) by_buffer[i].b->offset = online[i];
        free(by_buffer);
        free(online);
    }
    for (int i = 0; i < f->bufs.len; i++) {
        lp_buf *b = f->bufs.items[i];
        if (b->shares) b->offset = root_of(b)->offset;
    }
    f->arena_bytes = top;
    free(items);
    free(item_of);
}
