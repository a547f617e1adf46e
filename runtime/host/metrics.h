/* metrics.h — Keras' stateful metrics, computed on the host from a model's
 * outputs and labels: reset at the start of an epoch (or of evaluate),
 * updated sample by sample, batch after batch, and read as Keras'
 * result() at any point (the progress line shows the running value).
 *
 * One row per metric in KDH_METRIC_LIST: kind, Keras' class name, its
 * string spelling, another alias (or NULL), and its arguments in Keras'
 * positional order. The train block's parser (compiler/train_config.c)
 * reads the names and arguments from the rows; metrics.c computes them.
 * `accuracy` is not here: it is the train block's own (train.h). */
#ifndef KDSL_METRICS_H
#define KDSL_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#define KDH_METRIC_LIST(X) \
    X(TOP_K, "TopKCategoricalAccuracy", "top_k_categorical_accuracy", NULL, "k") \
    X(SPARSE_TOP_K, "SparseTopKCategoricalAccuracy", "sparse_top_k_categorical_accuracy", NULL, "k") \
    X(BINARY_ACCURACY, "BinaryAccuracy", "binary_accuracy", NULL, "name threshold") \
    X(PRECISION, "Precision", "precision", NULL, "thresholds") \
    X(RECALL, "Recall", "recall", NULL, "thresholds") \
    X(AUC, "AUC", "auc", NULL, "num_thresholds curve summation_method name from_logits") \
    X(MAE, "MeanAbsoluteError", "mean_absolute_error", "mae", "") \
    X(MSE, "MeanSquaredError", "mean_squared_error", "mse", "") \
    X(RMSE, "RootMeanSquaredError", "root_mean_squared_error", NULL, "")

#define KDH_METRIC_ENUM(K, ...) KDH_METRIC_##K,
typedef enum kdh_metric_kind {
    KDH_METRIC_LIST(KDH_METRIC_ENUM) KDH_METRIC_COUNT,
    /* no row: a metric written as an expression (Keras' MeanMetricWrapper of
     * a function), the mean over samples of its value on each batch, which
     * the model computes (kdh_model.batch_metric on kdh_metric_spec.expr) */
    KDH_METRIC_EXPRESSION,
} kdh_metric_kind;
#undef KDH_METRIC_ENUM

typedef struct kdh_metric_row {
    kdh_metric_kind kind;
    const char *class_name, *snake, *alias;
    const char *args;
} kdh_metric_row;
extern const kdh_metric_row kdh_metric_rows[KDH_METRIC_COUNT];

/* At most this many metrics besides accuracy in a train block. */
#define KDH_MAX_METRICS 16
#define KDH_METRIC_NAME_MAX 64

enum { KDH_AUC_INTERPOLATION, KDH_AUC_MINORING, KDH_AUC_MAJORING };

/* One metric of a train block, with Keras' defaults for what is not given. */
typedef struct kdh_metric_spec {
    kdh_metric_kind kind;
    char name[KDH_METRIC_NAME_MAX];   /* in the logs: the spelling of a bare name, else name: or the snake name */
    int k;                 /* top-k: 5 */
    double threshold;      /* BinaryAccuracy, Precision, Recall: 0.5 */
    int num_thresholds;    /* AUC: 200 */
    bool pr;               /* AUC: curve "PR" (else "ROC") */
    int summation;         /* AUC: KDH_AUC_* */
    bool from_logits;      /* AUC: sigmoid first */
    const void *expr;      /* KDH_METRIC_EXPRESSION: the compiler's graph of it, opaque here */
} kdh_metric_spec;

/* Keras' defaults for a metric of this kind, named `name`. */
void kdh_metric_spec_init(kdh_metric_spec *s, kdh_metric_kind kind, const char *name);

/* A metric's running state (Keras' metric variables). */
typedef struct kdh_metric_state {
    double total, count;   /* the mean metrics */
    double tp, fp, fn;     /* Precision, Recall */
    double *tps, *fps, *tns, *fns;   /* AUC: per threshold (one allocation) */
} kdh_metric_state;

/* Zeroes the state, allocating AUC's arrays the first time; -1 when memory runs out. */
int kdh_metric_reset(const kdh_metric_spec *s, kdh_metric_state *st);
void kdh_metric_free(kdh_metric_state *st);
/* One sample: y the output, t its label, `elems` values each, the last axis
 * of `last` values (the class axis of the categorical metrics). */
void kdh_metric_update(const kdh_metric_spec *s, kdh_metric_state *st, const float *y, const float *t, int64_t elems,
                       int64_t last);
/* A batch of nb samples for a KDH_METRIC_EXPRESSION (whose per-sample
 * updates do nothing): `value`, the expression's value on the batch, counts
 * once per sample. */
void kdh_metric_update_batch(const kdh_metric_spec *s, kdh_metric_state *st, double value, int nb);
/* Keras' result(): the metric over every sample since the reset. */
double kdh_metric_result(const kdh_metric_spec *s, const kdh_metric_state *st);

#endif
