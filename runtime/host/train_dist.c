/* train_dist.c — the data-parallel training step (train_dist.h). */
#include "train_dist.h"

#include "dist.h"
#include "host_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Gradients go to MPI_Iallreduce in buckets of this many bytes unless the
 * run says otherwise (kdh_fit_opts.bucket_bytes): big enough that the
 * per-message latency is small against the bytes, small enough that
 * several are in flight at once (PyTorch's DDP takes 25 MB, Horovod 64 MB;
 * the MLP's gradient is 0.9 MB). */
#define DEFAULT_BUCKET_BYTES (4u << 20)

struct kdh_dp {
    int rank, size, shards;            /* shards: 0 in the default mode */
    int64_t ngrad, nstate, comm;       /* floats: gradients, states, both (one message) */
    int nstate_vars;
    const kdh_var **state_vars;        /* the params that are states, by offset */
    int depth;                         /* deterministic: levels of the shard tree */
    float *slab;                       /* (depth + 1) * comm floats; the default mode uses the first */
    float *gathered;                   /* deterministic, several ranks: size * comm */
    float *saved_states;               /* the states before the step */
    float *outs;                       /* this rank's outputs (max_batch * output_elems) */
    float *shard_loss, *all_loss;      /* deterministic: the shards' mean losses */
    int64_t *counts;                   /* per rank, for the gathers */
    size_t bucket_bytes;
};

bool kdh_dp_wanted(const kdh_fit_opts *o) { return o->shards > 0 || kdh_dist_size() > 1; }

void kdh_dp_free(kdh_dp *dp)
{
    if (!dp) return;
    free(dp->state_vars);
    free(dp->slab);
    free(dp->gathered);
    free(dp->saved_states);
    free(dp->outs);
    free(dp->shard_loss);
    free(dp->all_loss);
    free(dp->counts);
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
    dp->comm = dp->ngrad + dp->nstate;
    for (int k = dp->shards / dp->size; k > 1; k = (k + 1) / 2) dp->depth++;
    if (!(dp->slab = kdh_floats((int64_t)(dp->depth + 1) * dp->comm, "gradient sums", err))) goto fail;
    if (dp->shards && dp->size > 1 &&
        !(dp->gathered = kdh_floats((int64_t)dp->size * dp->comm, "the ranks' gradients", err)))
        goto fail;
    if (!(dp->saved_states = kdh_floats(dp->nstate, "states", err))) goto fail;
    if (!(dp->outs = kdh_floats((int64_t)m->max_batch * m->output_elems, "shard outputs", err))) goto fail;
    int nshards = dp->shards ? dp->shards : dp->size;
    if (!(dp->shard_loss = kdh_floats(nshards, "shard losses", err))) goto fail;
    if (!(dp->all_loss = kdh_floats(nshards, "shard losses", err))) goto fail;
    if (!(dp->counts = calloc((size_t)dp->size, sizeof *dp->counts))) goto oom;
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
    int nshards;                       /* the batch's parts */
    uint64_t step;
    void *arena;
    bool outputs;                      /* predict each part for the metrics */
} step_ctx;

/* Part i of the batch: its gradient weighted by its share of the batch,
 * then its states (after its step), into dst (comm floats); its mean loss
 * into shard_loss[i]. The states start from saved_states. Dropout draws
 * its masks from the stream step * parts + i, one per part: parts at the
 * same place in the batch would otherwise drop the same units. */
static void shard_gradient(step_ctx *c, int i, float *dst)
{
    kdh_dp *dp = c->dp;
    const kdh_model *m = c->m;
    int lo, hi;
    part_of(c->nb, c->nshards, i, &lo, &hi);
    int n = hi - lo;
    if (n == 0) {   /* a part of a small last batch with no sample: adds nothing */
        memset(dst, 0, (size_t)dp->comm * sizeof *dst);
        dp->shard_loss[i] = 0;
        return;
    }
    states_put(dp, dp->saved_states, c->params);
    const float *in = c->x + (int64_t)lo * m->input_elems;
    if (c->outputs) {
        float *out = dp->outs + (int64_t)lo * m->output_elems;
        m->fns.predict(c->params, &in, &out, n, c->arena);
    }
    float l = m->fns.grad(c->params, &in, c->y + (int64_t)lo * m->label_elems, dst, n,
                          c->step * (uint64_t)c->nshards + (uint64_t)i, c->arena);
    float w = (float)n / (float)c->nb;
    for (int64_t j = 0; j < dp->ngrad; j++) dst[j] *= w;
    states_get(dp, c->params, dst + dp->ngrad);
    dp->shard_loss[i] = l;
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
        shard_gradient(c, lo, dst);
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
    bool det = dp->shards > 0;
    int nparts = det ? dp->shards : dp->size, per = nparts / dp->size, first = dp->rank * per;
    step_ctx c = {dp, m, params, x, y, nb, nparts, step, arena, out0 != NULL};
    states_get(dp, params, dp->saved_states);
    if (per == 1) shard_gradient(&c, first, dp->slab);
    else shard_tree(&c, first, first + per, 0);
    double want_stop = *stop ? 1 : 0;
    float *sum = dp->slab;
    if (det && dp->size > 1) {
        if (kdh_dist_allgather_floats(dp->slab, dp->comm, dp->gathered, err) != 0) return -1;
        sum = rank_tree(dp, 0, dp->size);
    } else if (kdh_dist_allreduce_floats(dp->slab, dp->comm, dp->bucket_bytes, err) != 0) {
        return -1;
    }
    /* every part's mean loss, summed in part order on every rank */
    if (kdh_dist_allgather_floats(dp->shard_loss + first, per, dp->all_loss, err) != 0) return -1;
    if (kdh_dist_allreduce_doubles(&want_stop, 1, err) != 0) return -1;
    *stop = want_stop > 0;
    double total = 0;
    int used = 0;
    for (int i = 0; i < nparts; i++) {
        int lo, hi;
        part_of(nb, nparts, i, &lo, &hi);
        total += (double)dp->all_loss[i] * (hi - lo);
        used += hi > lo;
    }
    *loss = (float)(total / nb);
    /* states: the mean over the parts that had samples */
    float *st = sum + dp->ngrad;
    for (int64_t j = 0; j < dp->nstate; j++) st[j] /= (float)used;
    states_put(dp, st, params);
    m->fns.apply_gradients(params, sum, opt, step, lr);
    if (out0) {
        int lo, hi, lo_end, hi_end;
        for (int r = 0; r < dp->size; r++) {
            part_of(nb, nparts, r * per, &lo, &hi);
            part_of(nb, nparts, r * per + per - 1, &lo_end, &hi_end);
            dp->counts[r] = (int64_t)(hi_end - lo) * m->output_elems;
        }
        part_of(nb, nparts, first, &lo, &hi);
        if (kdh_dist_allgatherv_floats(dp->outs + (int64_t)lo * m->output_elems, dp->counts, out0, err) != 0)
            return -1;
    }
    return 0;
}
