/* metrics.c — Keras' stateful metrics (metrics.h). */
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRIC_ROW(K, cls, snake, alias, args) {KDH_METRIC_##K, cls, snake, alias, args},
const kdh_metric_row kdh_metric_rows[KDH_METRIC_COUNT] = {KDH_METRIC_LIST(METRIC_ROW)};
#undef METRIC_ROW

void kdh_metric_spec_init(kdh_metric_spec *s, kdh_metric_kind kind, const char *name)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    snprintf(s->name, sizeof s->name, "%s", name);
    s->k = 5;
    s->threshold = 0.5;
    s->num_thresholds = 200;
}

int kdh_metric_reset(const kdh_metric_spec *s, kdh_metric_state *st)
{
    double *arrays = st->tps;
    memset(st, 0, sizeof *st);
    if (s->kind != KDH_METRIC_AUC) {
        free(arrays);
        return 0;
    }
    size_t n = (size_t)s->num_thresholds;
    if (!arrays) arrays = malloc(4 * n * sizeof *arrays);
    if (!arrays) return -1;
    memset(arrays, 0, 4 * n * sizeof *arrays);
    st->tps = arrays;
    st->fps = arrays + n;
    st->tns = arrays + 2 * n;
    st->fns = arrays + 3 * n;
    return 0;
}

void kdh_metric_free(kdh_metric_state *st)
{
    free(st->tps);
    memset(st, 0, sizeof *st);
}

static int64_t argmax(const float *v, int64_t k)
{
    int64_t best = 0;
    for (int64_t j = 1; j < k; j++)
        if (v[j] > v[best]) best = j;
    return best;
}

/* tf.math.in_top_k: the target is in the top k unless k classes score
 * strictly higher (ties at the boundary count as in); a non-finite score is out. */
static bool in_top_k(const float *y, int64_t n, int64_t target, int k)
{
    if (!isfinite(y[target])) return false;
    int64_t higher = 0;
    for (int64_t j = 0; j < n; j++) higher += y[j] > y[target];
    return higher < k;
}

/* AUC's bucket of prediction p: the thresholds are -eps, 1/(n-1), ...,
 * (n-2)/(n-1), 1 + eps, and p is above threshold j < bucket + 1: Keras'
 * ceil(p (n - 1)) - 1, at least 0 (every p in [0, 1] is above -eps), in
 * float32 as Keras computes it. */
static int auc_bucket(float p, int n)
{
    float b = ceilf(p * (float)(n - 1)) - 1;
    if (!(b >= 0)) return 0;   /* NaN too */
    return b > n - 1 ? n - 1 : (int)b;
}

void kdh_metric_update(const kdh_metric_spec *s, kdh_metric_state *st, const float *y, const float *t, int64_t elems,
                       int64_t last)
{
    if (last < 1) last = elems;
    int64_t rows = elems / last;
    switch (s->kind) {
    case KDH_METRIC_TOP_K:
    case KDH_METRIC_SPARSE_TOP_K: {
        /* the mean over the sample's rows of in_top_k(argmax(label), prediction) */
        double in = 0;
        for (int64_t r = 0; r < rows; r++) in += in_top_k(y + r * last, last, argmax(t + r * last, last), s->k);
        st->total += in / (double)rows;
        st->count += 1;
        return;
    }
    case KDH_METRIC_BINARY_ACCURACY: {
        /* Keras: mean(equal(y_true, cast(y_pred > threshold))) */
        double right = 0;
        for (int64_t j = 0; j < elems; j++) right += (double)t[j] == ((double)y[j] > s->threshold ? 1.0 : 0.0);
        st->total += right / (double)elems;
        st->count += 1;
        return;
    }
    case KDH_METRIC_PRECISION:
    case KDH_METRIC_RECALL:
        /* every element: predicted positive above the threshold, labelled positive when nonzero */
        for (int64_t j = 0; j < elems; j++) {
            bool pred = (double)y[j] > s->threshold, pos = t[j] != 0;
            st->tp += pred && pos;
            st->fp += pred && !pos;
            st->fn += !pred && pos;
        }
        return;
    case KDH_METRIC_AUC: {
        /* Keras' evenly spaced thresholds: each element adds its label to
         * the true positives (1 - label to the false ones) of every
         * threshold below it, the rest to the negatives. Buckets here, the
         * cumulative sums in the result. */
        int n = s->num_thresholds;
        for (int64_t j = 0; j < elems; j++) {
            float p = y[j];
            if (s->from_logits) p = (float)(1 / (1 + exp(-(double)p)));   /* Keras' sigmoid, to float32 */
            int bkt = auc_bucket(p, n);
            double pos = t[j], neg = 1 - (double)t[j];
            st->tps[bkt] += pos;   /* above thresholds 0..bkt */
            st->fps[bkt] += neg;
        }
        st->count += (double)elems;
        return;
    }
    case KDH_METRIC_MAE:
    case KDH_METRIC_MSE:
    case KDH_METRIC_RMSE: {
        /* the sample's mean over its elements (Keras reduces each sample's rows to their mean) */
        double sum = 0;
        for (int64_t j = 0; j < elems; j++) {
            double e = (double)y[j] - (double)t[j];
            sum += s->kind == KDH_METRIC_MAE ? fabs(e) : e * e;
        }
        st->total += sum / (double)elems;
        st->count += 1;
        return;
    }
    case KDH_METRIC_COUNT:
    case KDH_METRIC_EXPRESSION: break;   /* kdh_metric_update_batch */
    }
}

static double divide_no_nan(double a, double b) { return b == 0 ? 0 : a / b; }

/* Keras' AUC.interpolate_pr_auc (Davis & Goadrich's interpolation of precision between thresholds). */
static double interpolate_pr_auc(const double *tp, const double *fp, const double *fn, int n)
{
    double sum = 0;
    for (int i = 0; i < n - 1; i++) {
        double dtp = tp[i] - tp[i + 1];
        double p0 = tp[i] + fp[i], p1 = tp[i + 1] + fp[i + 1];
        double dp = p0 - p1;
        double slope = divide_no_nan(dtp, dp > 0 ? dp : 0);
        double intercept = tp[i + 1] - slope * p1;
        double ratio = p0 > 0 && p1 > 0 ? divide_no_nan(p0, p1 > 0 ? p1 : 0) : 1;
        double den = tp[i + 1] + fn[i + 1];
        sum += divide_no_nan(slope * (dtp + intercept * log(ratio)), den > 0 ? den : 0);
    }
    return sum;
}

static double auc_result(const kdh_metric_spec *s, const kdh_metric_state *st)
{
    int n = s->num_thresholds;
    double *tp = calloc((size_t)n * 4, sizeof *tp);
    if (!tp) return NAN;
    double *fp = tp + n, *tn = tp + 2 * n, *fn = tp + 3 * n;
    /* threshold i counts the elements of buckets i.. as positive */
    double all_pos = 0, all_neg = 0;
    for (int i = 0; i < n; i++) {
        all_pos += st->tps[i];
        all_neg += st->fps[i];
    }
    double above_pos = 0, above_neg = 0;
    for (int i = n - 1; i >= 0; i--) {
        above_pos += st->tps[i];
        above_neg += st->fps[i];
        tp[i] = above_pos;
        fp[i] = above_neg;
        fn[i] = all_pos - above_pos;
        tn[i] = all_neg - above_neg;
    }
    /* The last threshold, 1 + eps: nothing in [0, 1] is above it; buckets
     * stop at n - 1, so its counts are what lies above 1 (none for probabilities). */
    double r;
    if (s->pr && s->summation == KDH_AUC_INTERPOLATION) {
        r = interpolate_pr_auc(tp, fp, fn, n);
    } else {
        r = 0;
        for (int i = 0; i < n - 1; i++) {
            double x0, x1, y0, y1;
            double rec0 = divide_no_nan(tp[i], tp[i] + fn[i]), rec1 = divide_no_nan(tp[i + 1], tp[i + 1] + fn[i + 1]);
            if (s->pr) {
                x0 = rec0;
                x1 = rec1;
                y0 = divide_no_nan(tp[i], tp[i] + fp[i]);
                y1 = divide_no_nan(tp[i + 1], tp[i + 1] + fp[i + 1]);
            } else {
                x0 = divide_no_nan(fp[i], fp[i] + tn[i]);
                x1 = divide_no_nan(fp[i + 1], fp[i + 1] + tn[i + 1]);
                y0 = rec0;
                y1 = rec1;
            }
            double h = s->summation == KDH_AUC_INTERPOLATION ? (y0 + y1) / 2
                       : s->summation == KDH_AUC_MINORING   ? (y0 < y1 ? y0 : y1)
                                                            : (y0 > y1 ? y0 : y1);
            r += (x0 - x1) * h;
        }
    }
    free(tp);
    return r;
}

void kdh_metric_update_batch(const kdh_metric_spec *s, kdh_metric_state *st, double value, int nb)
{
    if (s->kind != KDH_METRIC_EXPRESSION) return;
    st->total += value * nb;
    st->count += nb;
}

double kdh_metric_result(const kdh_metric_spec *s, const kdh_metric_state *st)
{
    switch (s->kind) {
    case KDH_METRIC_PRECISION: return divide_no_nan(st->tp, st->tp + st->fp);
    case KDH_METRIC_RECALL: return divide_no_nan(st->tp, st->tp + st->fn);
    case KDH_METRIC_AUC: return st->tps ? auc_result(s, st) : 0;
    case KDH_METRIC_RMSE: return sqrt(divide_no_nan(st->total, st->count));
    default: return divide_no_nan(st->total, st->count);
    }
}
