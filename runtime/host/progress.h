/* progress.h — fit()'s progress output, as Keras prints it.
 *
 * On a terminal (verbose=1):
 *   Epoch 1/5
 *    937/1875 [==============>...............] - ETA: 3s - loss: 0.4821 - accuracy: 0.8275
 * redrawn in place, and at the end of the epoch
 *   1875/1875 [==============================] - 4s 2ms/step - loss: 0.4821 - accuracy: 0.8275
 *             - val_loss: 0.4012 - val_accuracy: 0.8561 - 14320 samples/s          (one line)
 * Elsewhere (pipes, CI logs): one plain line per epoch with the same figures
 * and no carriage returns:
 *   Epoch 1/5 - 1875/1875 - 4s 2ms/step - loss: 0.4821 - accuracy: 0.8275 - ... - 14320 samples/s */
#ifndef KDSL_PROGRESS_H
#define KDSL_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct kdh_progress {
    FILE *out;
    bool tty;
    int epoch, epochs;         /* 1-based */
    int64_t steps;             /* this epoch's */
    double start, last_draw;   /* kdh_now() */
    int last_len;              /* characters of the line on screen */
    bool open_line;            /* a bar is on screen without its newline */
    int nmetrics;              /* shown after accuracy, Keras' names */
    const char *const *metric_names;
    double learning_rate;      /* shown last in the epoch's line when not NaN (ReduceLROnPlateau's log) */
} kdh_progress;

/* tty: -1 asks isatty(fileno(out)). */
void kdh_progress_init(kdh_progress *p, FILE *out, int tty);
void kdh_progress_epoch_begin(kdh_progress *p, int epoch, int epochs, int64_t steps);
/* After `done` steps; loss and accuracy are the running means (accuracy NaN: not shown). */
void kdh_progress_step(kdh_progress *p, int64_t done, double loss, double accuracy);
/* The epoch's line; val_* NaN when not validated. train_seconds: the
 * training part (samples/s counts it only); seconds: the whole epoch. */
void kdh_progress_epoch_end(kdh_progress *p, double loss, double accuracy, double val_loss, double val_accuracy,
                            double seconds, double train_seconds, int64_t samples);
/* The metrics after accuracy (names kept by reference) and the calls that
 * show them: values[i] is metric i's running value (NaN: not shown). */
void kdh_progress_set_metrics(kdh_progress *p, int n, const char *const *names);
void kdh_progress_step_metrics(kdh_progress *p, int64_t done, double loss, double accuracy, const double *metrics);
void kdh_progress_epoch_end_metrics(kdh_progress *p, double loss, double accuracy, const double *metrics,
                                    double val_loss, double val_accuracy, const double *val_metrics, double seconds,
                                    double train_seconds, int64_t samples);
/* Ends a bar left on screen (before an error message). */
void kdh_progress_break(kdh_progress *p);

/* "4s", "2ms/step": Keras' formats. */
void kdh_format_step_time(char *buf, size_t size, double seconds_per_step);

#endif
