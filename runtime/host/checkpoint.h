/* checkpoint.h — weights files and checkpoints, both safetensors with
 * docs/language.md's names (`dense/kernel`, `batch_normalization/moving_mean`),
 * F32, written atomically (temporary file, fsync, rename).
 *
 * A weights file holds the model's weights and states in the params table's
 * order; what Keras' save_weights holds. A checkpoint adds the optimizer
 * slots (`dense/kernel/adam_m`) and, as `__metadata__` strings:
 *   kdsl.format      "checkpoint"
 *   kdsl.model       the model's name
 *   kdsl.epoch       epochs completed
 *   kdsl.step        optimizer steps taken (Keras' optimizer.iterations)
 *   kdsl.seed        the run's seed (init, shuffles, dropout)
 *   kdsl.shuffle_rng the shuffle stream's state (hex); epoch e shuffles with
 *                    a stream derived from it and e alone, so a resumed run
 *                    draws the same orders as one never interrupted
 *   kdsl.batch_size, kdsl.optimizer
 *   kdsl.history     the epochs' figures so far (JSON)
 *   kdsl.callbacks   the callbacks' state and the learning rate (callbacks.h),
 *                    with the tensors kdsl.best/NAME of restore_best_weights
 * A checkpoint given as --weights is read as a weights file (its slots are
 * skipped). */
#ifndef KDSL_CHECKPOINT_H
#define KDSL_CHECKPOINT_H

#include "train.h"

typedef struct kdh_ckpt_state {
    int epoch;
    uint64_t step;
    uint64_t seed;
    uint64_t shuffle_rng;
    int batch_size;
    kdh_history history;   /* owned; kdh_history_free */
    char callbacks[512];   /* kdh_callbacks_state_format's line, or "" */
    const float *best;     /* saved as kdsl.best/NAME when not NULL (borrowed) */
} kdh_ckpt_state;

/* Loads every weight and state of m into params: each must be present, F32,
 * finite, with the model's shape; a name the model lacks is an error too.
 * Messages name the file, the tensors and both shapes. */
int kdh_weights_load(const char *path, const kdh_model *m, float *params, kdh_error *err);
int kdh_weights_save(const char *path, const kdh_model *m, const float *params, kdh_error *err);

int kdh_checkpoint_save(const char *path, const kdh_model *m, const float *params, const float *opt_state,
                        const kdh_ckpt_state *st, kdh_error *err);
/* The metadata only (seed, batch size, ...), before the model is compiled. */
int kdh_checkpoint_peek(const char *path, kdh_ckpt_state *st, kdh_error *err);
/* Weights, states, slots and the metadata. */
int kdh_checkpoint_load(const char *path, const kdh_model *m, float *params, float *opt_state, kdh_ckpt_state *st,
                        kdh_error *err);

/* The weights a checkpoint keeps for restore_best_weights (kdsl.best/NAME) into best. */
int kdh_checkpoint_load_best(const char *path, const kdh_model *m, float *best, kdh_error *err);

#endif
