/* train_dist.c — the data-parallel training step (train_dist.h). */
#include "train_dist.h"

#include "dist.h"
#include "host_internal.h"
#include "kernels.h"
#include "parallel_kernels.h"

#include <stdlib.h>
#include <string.h>

/* The step's message is summed in buckets of this many bytes, one
 * MPI_Allreduce each, unless the run says otherwise (kdh_fit_opts.
 * bucket_bytes): big enough that the per-call latency is small against the
 * bytes (PyTorch's DDP takes 25 MB, Horovod 64 MB; the MLP's gradient is
 * 0.9 MB), small enough that no call sends a whole large model at once. */
#define DEFAULT_BUCKET_BYTES (4u << 20)

/* What each step sends, one message (one MPI_Allreduce, or one
 * MPI_Allgather in deterministic mode) of comm floats:
 *   [grad]   the weighted gradients (grads_size)
 *   [state]  the states after each part's step (summed, then divided by the parts with samples)
 *   [loss]   each part's mean loss, at its index
 *   [stop]   1 where a rank asks to stop
 *   [out]    output 0 of each sample of the batch, at its place (when the metrics want it)
 * A part writes its own loss and outputs and leaves zeros in the others'
 * places, so summing them over the parts adds zeros to one value: exact, in
 * any order. The message is as long as the gradients plus a few KB, and the
 * step waits for one collective instead of four (each a point where a rank
 * that the OS did not schedule holds up the others). */
struct kdh_dp {
    int rank, size, shards;            /* shards: 0 in the default mode */
    int nparts;                        /* the batch's parts: shards, or the ranks */
    int64_t ngrad, nstate;             /* floats of the first two sections */
    int64_t at_loss, at_stop, at_out, comm;   /* where the others start; comm: the whole message */
    int nstate_vars;
    const kdh_var **state_vars;        /* the params that are states, by offset */
    int depth;                         /* deterministic: levels of the shard tree */
    float *slab;                       /* (depth + 1) * comm floats; the default mode uses the first */
    float *gathered;                   /* deterministic, several ranks: size * comm */
    float *saved_states;               /* the states before the step */
    size_t bucket_bytes;
    /* Overlap (the default mode on several ranks): the gradient section cut
     * into nbuckets of per floats; a bucket's sum starts (kdh_grads_ready)
     * once grad has announced all its floats. */
    bool overlap;
    int64_t per;
    int nbuckets;
    int64_t *unready;                  /* by bucket: floats not announced yet; -1 once started */
    int64_t (*announced)[2];           /* this grad call's ranges: offset, count */
    int nannounced, max_announced;
    float weight;                      /* this part's share of the batch */
};

bool kdh_dp_wanted(const kdh_fit_opts *o) { return o->shards > 0 || kdh_dist_size() > 1; }

void kdh_dp_free(kdh_dp *dp)
{
    if (!dp) return;
    free(dp->state_vars);
    free(dp->slab);
    free(dp->gathered);
    free(dp->saved_states);
    free(dp->unready);
    free(dp->announced);
    free(dp);
}

static bool power_of_two(int n) { return n > 0 && (n & (n - 1)) == 0; }

int kdh_dp_check(int shards, int ranks, kdh_error *err)
{
    if (shards <= 0 || (power_of_two(ranks) && shards % ranks == 0)) return 0;
    return kdh__err(err,
                    "--deterministic cuts each batch into %d shards, which %d ranks cannot share as whole subtrees of "
                    "the summation tree: run a power of two of ranks that divides %d, or give --shards",
                    shards, ranks, shards);
}

kdh_dp *kdh_dp_new(const kdh_model *m, const kdh_fit_opts *o, kdh_error *err)
{
    kdh_dp *dp = calloc(1, sizeof *dp);
    if (!dp) {
        kdh__err(err, "out of memory for data-parallel training");
        return NULL;
    }
    dp->rank = kdh_dist_rank();
    dp->size = kdh_dist_size();
    dp->shards = o->shards;
    dp->bucket_bytes = o->bucket_bytes ? o->bucket_bytes : DEFAULT_BUCKET_BYTES;
    if (!m->fns.grad || !m->fns.apply_gradients) {
        kdh__err(err, "model '%s' has no grad and apply_gradients to train data-parallel", m->name);
        goto fail;
    }
    if (kdh_dp_check(dp->shards, dp->size, err) != 0) goto fail;
    dp->ngrad = m->grads_size;
    dp->state_vars = calloc((size_t)m->nparams + 1, sizeof *dp->state_vars);
    if (!dp->state_vars) goto oom;
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].state) {
            dp->state_vars[dp->nstate_vars++] = &m->params[i];
            dp->nstate += m->params[i].elems;
        }
    dp->nparts = dp->shards ? dp->shards : dp->size;
    dp->at_loss = dp->ngrad + dp->nstate;
    dp->at_stop = dp->at_loss + dp->nparts;
    dp->at_out = dp->at_stop + 1;
    dp->comm = dp->at_out + (int64_t)m->max_batch * m->output_elems;
    for (int k = dp->nparts / dp->size; k > 1; k = (k + 1) / 2) dp->depth++;
    if (!(dp->slab = kdh_floats((int64_t)(dp->depth + 1) * dp->comm, "gradient sums", err))) goto fail;
    if (dp->shards && dp->size > 1 &&
        !(dp->gathered = kdh_floats((int64_t)dp->size * dp->comm, "the ranks' gradients", err)))
        goto fail;
    if (!(dp->saved_states = kdh_floats(dp->nstate, "states", err))) goto fail;
    dp->per = (int64_t)(dp->bucket_bytes / sizeof(float));   /* as kdh_dist_allreduce_floats cuts */
    if (dp->per < 1024) dp->per = 1024;
    if (dp->per > 1 << 30) dp->per = 1 << 30;
    dp->overlap = !o->no_overlap && !dp->shards && dp->size > 1;
    if (dp->overlap) {
        dp->nbuckets = (int)((dp->ngrad + dp->per - 1) / dp->per);
        dp->max_announced = m->nparams;
        dp->unready = calloc((size_t)dp->nbuckets + 1, sizeof *dp->unready);
        dp->announced = calloc((size_t)dp->max_announced + 1, sizeof *dp->announced);
        if (!dp->unready || !dp->announced) goto oom;
    }
    return dp;
oom:
    kdh__err(err, "out of memory for data-parallel training");
fail:
    kdh_dp_free(dp);
    return NULL;
}

int kdh_dp_share_start(const kdh_model *m, float *params, float *opt, int *epoch, uint64_t *step, uint64_t *seed,
                       uint64_t *shuffle_rng, kdh_error *err)
{
    if (kdh_dist_size() == 1) return 0;
    kdh_dist_set_where("the start (rank 0's weights to every rank)");
    uint64_t counters[4] = {(uint64_t)*epoch, *step, *seed, *shuffle_rng};
    if (kdh_dist_bcast(counters, sizeof counters, err) != 0 ||
        kdh_dist_bcast(params, (size_t)m->params_size * sizeof *params, err) != 0 ||
        kdh_dist_bcast(opt, (size_t)m->opt_size * sizeof *opt, err) != 0)
        return -1;
    *epoch = (int)counters[0];
    *step = counters[1];
    *seed = counters[2];
    *shuffle_rng = counters[3];
    return 0;
}

/* ---- states ------------------------------------------------------------------------------ */

static void states_get(const kdh_dp *dp, const float *params, float *dst)
{
    for (int i = 0; i < dp->nstate_vars; i++) {
        const kdh_var *v = dp->state_vars[i];
        memcpy(dst, params + v->offset, (size_t)v->elems * sizeof *dst);
        dst += v->elems;
    }
}

static void states_put(const kdh_dp *dp, const float *src, float *params)
{
    for (int i = 0; i < dp->nstate_vars; i++) {
        const kdh_var *v = dp->state_vars[i];
        memcpy(params + v->offset, src, (size_t)v->elems * sizeof *src);
        src += v->elems;
    }
}

/* ---- overlap: the sums started inside grad ----------------------------------------------------- */

/* The step whose grad is running with overlap, or NULL: kdh_grads_ready's. */
static kdh_dp *overlapping;
static unsigned long buckets_inside, buckets_after;

void kdh_dp_bucket_stats(unsigned long *inside, unsigned long *after)
{
    *inside = buckets_inside;
    *after = buckets_after;
}

static int64_t bucket_end(const kdh_dp *dp, int b)
{
    int64_t end = (int64_t)(b + 1) * dp->per;
    return end < dp->ngrad ? end : dp->ngrad;
}

static void start_bucket(kdh_dp *dp, int b)
{
    dp->unready[b] = -1;
    if (overlapping) buckets_inside++;
    else buckets_after++;
    kdh_dist_start_sum(dp->slab + (int64_t)b * dp->per, bucket_end(dp, b) - (int64_t)b * dp->per);
}

/* model_fns.h. The gradient is the part's mean one: weighted by its share
 * here, as shard_message does after grad without overlap (the same product,
 * so the same floats). Every rank runs the same code, so all announce the
 * same ranges in the same order and start the same buckets in the same
 * order, as MPI requires of collectives. */
void kdh_grads_ready(long offset, long count)
{
    kdh_dp *dp = overlapping;
    if (!dp) return;
    /* emit_jit.c announces each trainable weight's range once */
    if (offset < 0 || count <= 0 || offset + count > dp->ngrad || dp->nannounced == dp->max_announced) return;
    dp->announced[dp->nannounced][0] = offset;
    dp->announced[dp->nannounced][1] = count;
    dp->nannounced++;
    float *g = dp->slab + offset;
    for (long j = 0; j < count; j++) g[j] *= dp->weight;
    for (int b = (int)(offset / dp->per); b < dp->nbuckets && (int64_t)b * dp->per < offset + count; b++) {
        int64_t lo = offset > (int64_t)b * dp->per ? offset : (int64_t)b * dp->per;
        int64_t hi = offset + count < bucket_end(dp, b) ? offset + count : bucket_end(dp, b);
        if ((dp->unready[b] -= hi - lo) == 0) start_bucket(dp, b);
    }
    kdh_dist_progress();
}

static int by_offset(const void *x, const void *y)
{
    const int64_t *a = x, *b = y;
    return a[0] < b[0] ? -1 : a[0] > b[0];
}

/* After grad: the floats no call announced weighted too (a gradient no
 * kernel touched), and the buckets not started yet started in order. */
static void overlap_finish(kdh_dp *dp, float *dst)
{
    overlapping = NULL;
    qsort(dp->announced, (size_t)dp->nannounced, sizeof *dp->announced, by_offset);
    int64_t at = 0;
    for (int i = 0; i <= dp->nannounced; i++) {
        int64_t end = i < dp->nannounced ? dp->announced[i][0] : dp->ngrad;
        for (int64_t j = at; j < end; j++) dst[j] *= dp->weight;
        if (i < dp->nannounced) at = dp->announced[i][0] + dp->announced[i][1];
    }
    for (int b = 0; b < dp->nbuckets; b++)
        if (dp->unready[b] != -1) start_bucket(dp, b);
}

/* ---- synchronised statistics -------------------------------------------------------------------- */

/* Whether every rank is in grad now, each on its non-empty part of the batch. */
static bool ranks_in_grad;
static bool rank_mean_failed;
static kdh_error rank_mean_err;

void kdh_srank_mean_mt(int n, int batch, const float *x, float *y)
{
    if (!ranks_in_grad) {
        kdk_srank_mean(n, batch, x, y);
        return;
    }
    /* sum_r batch_r x_r and sum_r batch_r, in double: the mean of a global
     * batch of up to 2^53 samples without a rounding of the weights */
    double *sum = malloc(((size_t)n + 1) * sizeof *sum);
    if (!sum) {   /* this rank stops the job (MPI_Abort) and says why */
        rank_mean_failed = kdh__err(&rank_mean_err, "out of memory for synchronised BatchNormalization") != 0;
        kdk_srank_mean(n, batch, x, y);
        return;
    }
    for (int i = 0; i < n; i++) sum[i] = (double)x[i] * batch;
    sum[n] = batch;
    if (kdh_dist_allreduce_doubles(sum, n + 1, &rank_mean_err) != 0) rank_mean_failed = true;
    for (int i = 0; i < n; i++) y[i] = (float)(sum[i] / sum[n]);
    free(sum);
}

/* ---- one shard ------------------------------------------------------------------------------ */

/* Samples [lo, hi) of a batch of nb cut in k parts: part i. */
static void part_of(int nb, int k, int i, int *lo, int *hi)
{
    *lo = (int)((int64_t)i * nb / k);
    *hi = (int)((int64_t)(i + 1) * nb / k);
}

typedef struct step_ctx {
    kdh_dp *dp;
    const kdh_model *m;
    float *params;
    const float *x, *y;
    int nb;
    uint64_t step;
    void *arena;
    bool outputs;                      /* predict each part for the metrics */
    bool overlap;                      /* sum the gradients' buckets as grad finishes them */
} step_ctx;

/* Part i of the batch as a message (see struct kdh_dp) in dst: its
 * gradient weighted by its share of the batch, its states after its step
 * (from saved_states), its loss and its outputs (predict, before the step).
 * Dropout draws its masks from the stream step * parts + i, one per part:
 * parts at the same place in the batch would otherwise drop the same units. */
static void shard_message(step_ctx *c, int i, float *dst)
{
    kdh_dp *dp = c->dp;
    const kdh_model *m = c->m;
    int lo, hi;
    part_of(c->nb, dp->nparts, i, &lo, &hi);
    int n = hi - lo;
    memset(dst, 0, (size_t)dp->comm * sizeof *dst);
    if (n == 0) return;   /* a part of a small last batch with no sample: adds nothing */
    states_put(dp, dp->saved_states, c->params);
    const float *in = c->x + (int64_t)lo * m->input_elems;
    if (c->outputs) {
        float *out = dst + dp->at_out + (int64_t)lo * m->output_elems;
        m->fns.predict(c->params, &in, &out, n, c->arena);
    }
    float w = (float)n / (float)c->nb;
    if (c->overlap) {
        dp->weight = w;
        dp->nannounced = 0;
        for (int b = 0; b < dp->nbuckets; b++) dp->unready[b] = bucket_end(dp, b) - (int64_t)b * dp->per;
        overlapping = dp;
    }
    float l = m->fns.grad(c->params, &in, c->y + (int64_t)lo * m->label_elems, dst, n,
                          c->step * (uint64_t)dp->nparts + (uint64_t)i, c->arena);
    if (c->overlap) overlap_finish(dp, dst);
    else
        for (int64_t j = 0; j < dp->ngrad; j++) dst[j] *= w;
    states_get(dp, c->params, dst + dp->ngrad);
    dst[dp->at_loss + i] = l;
}

static void add_into(float *a, const float *b, int64_t n)
{
    for (int64_t j = 0; j < n; j++) a[j] += b[j];
}

/* The sum of parts [lo, hi) into slab level d: the tree's left half + its
 * right half, down to single parts (the order every rank count shares). */
static void shard_tree(step_ctx *c, int lo, int hi, int d)
{
    kdh_dp *dp = c->dp;
    float *dst = dp->slab + (int64_t)d * dp->comm;
    if (hi - lo == 1) {
        shard_message(c, lo, dst);
        return;
    }
    int mid = lo + (hi - lo) / 2;
    shard_tree(c, lo, mid, d);
    shard_tree(c, mid, hi, d + 1);
    add_into(dst, dp->slab + (int64_t)(d + 1) * dp->comm, dp->comm);
}

/* The same tree's top over the ranks' subtotals in gathered: the sum of
 * ranks [lo, hi) into rank lo's place. */
static float *rank_tree(kdh_dp *dp, int lo, int hi)
{
    float *a = dp->gathered + (int64_t)lo * dp->comm;
    if (hi - lo == 1) return a;
    int mid = lo + (hi - lo) / 2;
    rank_tree(dp, lo, mid);
    add_into(a, rank_tree(dp, mid, hi), dp->comm);
    return a;
}

/* ---- the step ---------------------------------------------------------------------------------- */

int kdh_dp_step(kdh_dp *dp, const kdh_model *m, float *params, float *opt, const float *x, const float *y, int nb,
                uint64_t step, float lr, void *arena, float *out0, float *loss, bool *stop, kdh_error *err)
{
    int per = dp->nparts / dp->size, first = dp->rank * per;
    /* Overlap and synchronised statistics need every rank in grad, making the
     * same calls, each on a part with samples: not in a last batch smaller
     * than the ranks, where some part is empty (docs/distributed.md). */
    bool all_in = !dp->shards && dp->size > 1 && nb >= dp->size;
    step_ctx c = {dp, m, params, x, y, nb, step, arena, out0 != NULL, dp->overlap && all_in};
    states_get(dp, params, dp->saved_states);
    ranks_in_grad = all_in;
    shard_tree(&c, first, first + per, 0);
    ranks_in_grad = false;
    if (rank_mean_failed) {
        *err = rank_mean_err;
        return -1;
    }
    dp->slab[dp->at_stop] = *stop ? 1 : 0;
    float *sum = dp->slab;
    if (c.overlap) {
        /* the gradients' buckets are under way; the rest of the message follows */
        kdh_dist_start_sum(dp->slab + dp->ngrad, dp->comm - dp->ngrad);
        if (kdh_dist_wait(err) != 0) return -1;
    } else if (dp->shards && dp->size > 1) {
        if (kdh_dist_allgather_floats(dp->slab, dp->comm, dp->gathered, err) != 0) return -1;
        sum = rank_tree(dp, 0, dp->size);
    } else {
        if (kdh_dist_allreduce_floats(dp->slab, dp->comm, dp->bucket_bytes, err) != 0) return -1;
        if (dp->size > 1) buckets_after += (unsigned long)((dp->ngrad + dp->per - 1) / dp->per);
    }
    *stop = sum[dp->at_stop] > 0;
    /* the parts' losses weighted by their samples, in part order on every rank */
    double total = 0;
    int used = 0;
    for (int i = 0; i < dp->nparts; i++) {
        int lo, hi;
        part_of(nb, dp->nparts, i, &lo, &hi);
        total += (double)sum[dp->at_loss + i] * (hi - lo);
        used += hi > lo;
    }
    *loss = (float)(total / nb);
    /* states: the mean over the parts that had samples */
    float *st = sum + dp->ngrad;
    for (int64_t j = 0; j < dp->nstate; j++) st[j] /= (float)used;
    states_put(dp, st, params);
    m->fns.apply_gradients(params, sum, opt, step, lr);
    if (out0) memcpy(out0, sum + dp->at_out, (size_t)nb * (size_t)m->output_elems * sizeof *out0);
    return 0;
}
