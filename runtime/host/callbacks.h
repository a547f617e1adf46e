/* callbacks.h — Keras' EarlyStopping, ReduceLROnPlateau and ModelCheckpoint
 * for fit(): their settings (from the train block) and their rules, applied
 * at the end of every epoch to that epoch's logs (loss, accuracy, the
 * metrics, val_ of each). The rules are keras/src/callbacks/'s, line for
 * line, so that they fire at the epochs Keras' would:
 *
 *   EarlyStopping     improvement: monitor_op(current - min_delta, best)
 *                     (min_delta negated when minimising), best starting at
 *                     +-inf; wait counts epochs since; an improvement resets
 *                     wait only if it also beats the baseline; stop when
 *                     wait >= patience and epoch > 0 (0-based); epochs before
 *                     start_from_epoch are not monitored; restore_best_weights
 *                     restores the best epoch's weights when training ends.
 *   ReduceLROnPlateau improvement: current < best - min_delta (or > best +
 *                     min_delta); in cooldown the counter counts down and
 *                     wait stays 0; after patience epochs without, lr =
 *                     max(lr * factor, min_lr) if lr > min_lr, then cooldown.
 *   ModelCheckpoint   saves the weights every epoch, or with save_best_only
 *                     when monitor_op(current - min_delta, best) (best from
 *                     initial_value_threshold, else +-inf); a monitor
 *                     missing from the logs saves, as Keras does.
 *
 * "auto" mode: EarlyStopping and ModelCheckpoint maximise accuracy and the
 * metrics that grow (set by the compiler in `maximize`), minimise the loss
 * and the errors; ReduceLROnPlateau maximises when "acc" is in the
 * monitor's name, else minimises (Keras' own rule for it). */
#ifndef KDSL_CALLBACKS_H
#define KDSL_CALLBACKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KDH_MONITOR_MAX 80

typedef struct kdh_early_stopping {
    bool on;
    char monitor[KDH_MONITOR_MAX];     /* "val_loss" */
    bool maximize;                     /* the mode, resolved */
    double min_delta;                  /* >= 0 */
    int patience;
    bool has_baseline;
    double baseline;
    bool restore_best_weights;
    int start_from_epoch;
    int verbose;
    /* state (kdh_early_stopping_begin) */
    int wait, stopped_epoch, best_epoch;
    double best;
    bool have_best_weights;
    bool warned;
} kdh_early_stopping;

typedef struct kdh_reduce_lr {
    bool on;
    char monitor[KDH_MONITOR_MAX];
    bool maximize;
    double factor;                     /* 0.1, < 1 */
    int patience;                      /* 10 */
    double min_delta;                  /* 1e-4 */
    int cooldown;
    double min_lr;
    int verbose;
    int wait, cooldown_counter;
    double best;
    bool warned;
} kdh_reduce_lr;

typedef struct kdh_model_checkpoint {
    bool on;
    const char *filepath;              /* weights (safetensors); {epoch} or {epoch:02d} is the 1-based epoch */
    char monitor[KDH_MONITOR_MAX];
    bool maximize;
    bool save_best_only;
    bool has_initial;
    double initial_value_threshold;
    int verbose;
    double best;
    bool warned;
} kdh_model_checkpoint;

typedef struct kdh_callbacks {
    kdh_early_stopping early_stopping;
    kdh_reduce_lr reduce_lr;
    kdh_model_checkpoint checkpoint;
} kdh_callbacks;

void kdh_early_stopping_begin(kdh_early_stopping *es);
/* After epoch (0-based). *improved: this epoch's weights are the best
 * (copy them for restore_best_weights). True: stop training. */
bool kdh_early_stopping_epoch_end(kdh_early_stopping *es, int epoch, double current, bool *keep_weights);

void kdh_reduce_lr_begin(kdh_reduce_lr *r);
/* After an epoch: the learning rate to use from now on (lr when unchanged). */
double kdh_reduce_lr_epoch_end(kdh_reduce_lr *r, double current, double lr);

void kdh_model_checkpoint_begin(kdh_model_checkpoint *c);
/* After an epoch: whether to save the weights now. */
bool kdh_model_checkpoint_epoch_end(kdh_model_checkpoint *c, double current);
/* The path for epoch (0-based): {epoch} and {epoch:0Nd} replaced by epoch + 1. */
void kdh_model_checkpoint_path(const kdh_model_checkpoint *c, int epoch, char *buf, size_t size);

/* What a --resume needs to go on as if never stopped: the learning rate
 * ReduceLROnPlateau left and every callback's counters, as one line of
 * text (a checkpoint's "kdsl.callbacks"); parse gives -1 for a line it does
 * not read. The best weights of restore_best_weights are tensors of their own. */
void kdh_callbacks_state_format(const kdh_callbacks *cb, double lr, char *buf, size_t size);
int kdh_callbacks_state_parse(const char *text, kdh_callbacks *cb, double *lr);

#endif
