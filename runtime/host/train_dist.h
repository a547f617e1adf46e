/* train_dist.h — the data-parallel training step of kdh_fit (train.c) over
 * the ranks of dist.h: each rank's gradient of its shard of the global
 * batch through the model's `grad`, the sum over the ranks, the same
 * `apply_gradients` on every rank. docs/distributed.md says why each part
 * is as it is.
 *
 * Default mode (shards 0): rank r of N takes samples [r nb/N, (r+1) nb/N)
 * of a batch of nb, its mean gradient weighted by its share of the batch;
 * the weighted gradients are summed in buckets, so the step is the
 * one-process step up to float rounding. With overlap (unless no_overlap)
 * each bucket's MPI_Iallreduce starts inside grad, from its call-out
 * kdh_grads_ready (model_fns.h), as soon as the backward pass has finished
 * the bucket's gradients; without, one MPI_Allreduce per bucket after grad.
 *
 * Deterministic mode (shards K): the batch is cut into K shards whatever the
 * number of ranks (a power of two dividing K); each shard's weighted
 * gradient is computed alone and the K are summed as one fixed binary tree
 * (left half + right half, down to single shards). A rank sums its own
 * subtree, the ranks' subtotals are gathered, and every rank sums the top
 * of the tree in the same order: the same additions of the same numbers at
 * any number of ranks, one included, so the weights are bit-identical.
 *
 * Either way, states (BatchNormalization's moving statistics) are computed
 * per shard and averaged over the shards that had samples, and the outputs
 * the metrics need come from `predict` on each shard before the step. */
#ifndef KDSL_TRAIN_DIST_H
#define KDSL_TRAIN_DIST_H

#include "train.h"

typedef struct kdh_dp kdh_dp;

/* Whether fit takes the data-parallel step: more than one rank, or
 * deterministic mode (o->shards > 0). */
bool kdh_dp_wanted(const kdh_fit_opts *o);

/* 0 when `ranks` can share `shards` (deterministic mode, shards > 0): a
 * power of two of ranks that divides them; else -1 with err. */
int kdh_dp_check(int shards, int ranks, kdh_error *err);

/* The step's buffers; NULL with err (a number of ranks that does not
 * divide the shards, memory). */
kdh_dp *kdh_dp_new(const kdh_model *m, const kdh_fit_opts *o, kdh_error *err);
void kdh_dp_free(kdh_dp *dp);

/* Rank 0's starting point on every rank: params, the optimizer's slots
 * and the run's counters (epoch, optimizer step, seed, shuffle stream). */
int kdh_dp_share_start(const kdh_model *m, float *params, float *opt, int *epoch, uint64_t *step, uint64_t *seed,
                       uint64_t *shuffle_rng, kdh_error *err);

/* The gradient buckets this process summed so far: how many started
 * inside grad (overlapping the backward pass), and how many after it. */
void kdh_dp_bucket_stats(unsigned long *inside, unsigned long *after);

/* One step on the global batch x, y of nb samples: grads, the sum over the
 * shards, apply_gradients(step, lr). *loss: the batch's mean loss; out0
 * (NULL: not wanted): output 0 of every sample of the batch; *stop: in,
 * this rank's stop request; out, whether any rank made one (so that all
 * stop after the same step). 0, or -1 with err (a rank ended). */
int kdh_dp_step(kdh_dp *dp, const kdh_model *m, float *params, float *opt, const float *x, const float *y, int nb,
                uint64_t step, float lr, void *arena, float *out0, float *loss, bool *stop, kdh_error *err);

#endif
