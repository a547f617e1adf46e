/* train.c — Keras' fit(), evaluate() and predict() over a compiled model (train.h).
 *
 * fit() is deterministic given the seed: the shuffle of epoch e is drawn from
 * a stream that depends only on (seed, e), dropout masks depend only on
 * (seed, step) (runtime/random.h), and every buffer the model keeps
 * between steps (params, opt_state) is in the checkpoint. So a run killed at
 * any point and resumed from its last checkpoint ends bit for bit where an
 * uninterrupted run ends. */
#include "train.h"

#include "checkpoint.h"
#include "dataset.h"
#include "dist.h"
#include "fpmode.h"
#include "host_internal.h"
#include "thread_pool.h"
#include "progress.h"
#include "random.h"
#include "train_dist.h"

#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double kdh_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

float *kdh_floats(int64_t n, const char *what, kdh_error *err)
{
    if (n < 0 || (uint64_t)n > SIZE_MAX / sizeof(float)) {
        kdh__err(err, "%s: %" PRId64 " floats is too many", what, n);
        return NULL;
    }
    size_t bytes = ((n > 0 ? (size_t)n : 1) * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    if (!p) kdh__err(err, "%s: out of memory for %" PRId64 " floats", what, n);
    return p;
}

void *kdh_arena_alloc(size_t bytes, kdh_error *err)
{
    size_t n = (bytes + 63) / 64 * 64;
    if (n < 64) n = 64;
    void *p = aligned_alloc(64, n);
    if (!p) {
        kdh__err(err, "out of memory for an arena of %zu bytes", bytes);
        return NULL;
    }
    memset(p, 0, n);   /* what the model reads of it before writing is a bug; keep runs reproducible anyway */
    return p;
}

/* ---- the shuffle stream ------------------------------------------------------------------ */

/* SplitMix64: random.h's kdk_mix64, the dropout hash's mixer. */

static uint64_t shuffle_base(uint64_t seed) { return kdk_mix64(seed ^ 0x6b64736c73687566ULL); /* "kdslshuf" */ }

static uint64_t next_u64(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ULL;
    return kdk_mix64(*s);
}

/* Uniform in [0, bound), without modulo bias. */
static uint64_t below(uint64_t *s, uint64_t bound)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t r;
    do r = next_u64(s);
    while (r >= limit);
    return r % bound;
}

/* The order of epoch e (0-based): a Fisher–Yates shuffle of 0..n-1 drawn
 * from a stream that depends on (base, e) alone. */
static void epoch_order(int64_t *idx, int64_t n, bool shuffle, uint64_t base, int e)
{
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    if (!shuffle) return;
    uint64_t s = kdk_mix64(base ^ kdk_mix64((uint64_t)e));
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)below(&s, (uint64_t)i + 1);
        int64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

/* ---- losses and metrics on the host -------------------------------------------------------- */

#define LOSS_EPSILON 1e-7   /* Keras' backend.epsilon() */

static double clip(double p) { return p < LOSS_EPSILON ? LOSS_EPSILON : p > 1 - LOSS_EPSILON ? 1 - LOSS_EPSILON : p; }

static double softplus(double z) { return (z > 0 ? z : 0) + log1p(exp(-fabs(z))); }

/* Keras' normalize along a row: x / max(|x|, eps). */
static double row_norm(const float *x, int64_t n)
{
    double ss = 0;
    for (int64_t j = 0; j < n; j++) ss += (double)x[j] * x[j];
    double norm = sqrt(ss);
    return norm > LOSS_EPSILON ? norm : LOSS_EPSILON;
}

/* The loss of one sample of an output of k values whose last axis has
 * `last`: each row's loss (Keras' reduction over axis -1), then their mean.
 * hinge01: Hinge's labels are all 0 or 1 in this batch (Keras makes them -1
 * or 1). The formulas are kd_loss's (compiler/train_graph.c) in double. */
static double sample_loss(const kdh_loss_spec *m, int64_t k, int64_t last, const float *y, const float *t, bool hinge01)
{
    if (last < 1 || k % last) last = k;
    int64_t rows = k / last;
    double s = 0, ls = m->label_smoothing, eps = LOSS_EPSILON;
    switch (m->loss) {
    case KDH_LOSS_CATEGORICAL_XENT:
    case KDH_LOSS_SPARSE_CATEGORICAL_XENT:
        for (int64_t r = 0; r < rows; r++) {
            const float *yr = y + r * last, *tr = t + r * last;
            if (m->from_logits) {
                /* -sum t log_softmax(z) */
                double mx = yr[0];
                for (int64_t j = 1; j < last; j++) mx = yr[j] > mx ? yr[j] : mx;
                double z = 0;
                for (int64_t j = 0; j < last; j++) z += exp((double)yr[j] - mx);
                double lse = mx + log(z);
                for (int64_t j = 0; j < last; j++)
                    s -= ((double)tr[j] * (1 - ls) + ls / (double)last) * ((double)yr[j] - lse);
            } else {
                /* Keras: p / sum(p), clipped, then -sum t log p */
                double sum = 0;
                for (int64_t j = 0; j < last; j++) sum += yr[j];
                for (int64_t j = 0; j < last; j++)
                    s -= ((double)tr[j] * (1 - ls) + ls / (double)last) * log(clip((double)yr[j] / sum));
            }
        }
        return s / (double)rows;
    case KDH_LOSS_BINARY_XENT:
        for (int64_t j = 0; j < k; j++) {
            double z = y[j], tj = (double)t[j] * (1 - ls) + 0.5 * ls;
            if (m->from_logits) s += (z > 0 ? z : 0) - z * tj + log1p(exp(-fabs(z)));
            else s -= tj * log(clip(z)) + (1 - tj) * log(1 - clip(z));
        }
        return s / (double)k;
    case KDH_LOSS_KLD:
    case KDH_LOSS_CATEGORICAL_HINGE:
    case KDH_LOSS_COSINE_SIMILARITY:
        for (int64_t r = 0; r < rows; r++) {
            const float *yr = y + r * last, *tr = t + r * last;
            if (m->loss == KDH_LOSS_KLD) {
                for (int64_t j = 0; j < last; j++) {
                    double tc = fmin(fmax(tr[j], eps), 1), yc = fmin(fmax(yr[j], eps), 1);
                    s += tc * log(tc / yc);
                }
            } else if (m->loss == KDH_LOSS_CATEGORICAL_HINGE) {
                double pos = 0, neg = -INFINITY;
                for (int64_t j = 0; j < last; j++) {
                    pos += (double)tr[j] * yr[j];
                    neg = fmax(neg, (1 - (double)tr[j]) * yr[j]);
                }
                s += fmax(neg - pos + 1, 0);
            } else {
                double ny = row_norm(yr, last), nt = row_norm(tr, last), dot = 0;
                for (int64_t j = 0; j < last; j++) dot += ((double)tr[j] / nt) * ((double)yr[j] / ny);
                s -= dot;
            }
        }
        return s / (double)rows;
    default:
        /* the element-wise losses: the mean over every element */
        for (int64_t j = 0; j < k; j++) {
            double yj = y[j], tj = t[j], e = yj - tj, a = fabs(e);
            switch (m->loss) {
            case KDH_LOSS_MSE: s += e * e; break;
            case KDH_LOSS_MAE: s += a; break;
            case KDH_LOSS_HUBER: s += a <= m->delta ? 0.5 * e * e : m->delta * a - 0.5 * m->delta * m->delta; break;
            case KDH_LOSS_LOG_COSH: s += e + softplus(-2 * e) - log(2.0); break;
            case KDH_LOSS_MSLE: {
                double d = log(fmax(yj, eps) + 1) - log(fmax(tj, eps) + 1);
                s += d * d;
                break;
            }
            case KDH_LOSS_HINGE: s += fmax(1 - (hinge01 ? 2 * tj - 1 : tj) * yj, 0); break;
            case KDH_LOSS_POISSON: s += yj - tj * log(yj + eps); break;
            default: return NAN;
            }
        }
        return s / (double)k;
    }
}

/* Keras' hinge rule: labels all 0 or 1 (over n samples of k) become -1 or 1. */
static bool labels_01(const float *t, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (t[i] != 0 && t[i] != 1) return false;
    return true;
}

static int64_t argmax(const float *v, int64_t k)
{
    int64_t best = 0;
    for (int64_t j = 1; j < k; j++)
        if (v[j] > v[best]) best = j;
    return best;
}

static int64_t last_dim(int rank, const int64_t *shape, int64_t elems) { return rank > 0 ? shape[rank - 1] : elems; }

/* Output j's loss: its own, or the model's fields. */
static kdh_loss_spec loss_of(const kdh_model *m, int j)
{
    if (m->output_losses) return m->output_losses[j];
    return (kdh_loss_spec){.loss = m->loss, .from_logits = m->from_logits, .label_smoothing = m->label_smoothing,
                           .delta = m->delta, .custom = m->batch_loss != NULL, .weight = 1};
}

double kdh_sample_loss(const kdh_model *m, const float *y, const float *t)
{
    int64_t k = m->output_elems;
    kdh_loss_spec spec = loss_of(m, 0);
    return sample_loss(&spec, k, last_dim(m->output_rank, m->output_shape, k), y, t, labels_01(t, k));
}

static double sample_correct(const kdh_loss_spec *m, int64_t k, const float *y, const float *t)
{
    /* Keras' "accuracy": binary for binary cross-entropy or a single output value, else categorical */
    bool binary = m->loss == KDH_LOSS_BINARY_XENT || k == 1;
    if (!binary) return argmax(y, k) == argmax(t, k) ? 1 : 0;
    /* binary accuracy: Keras thresholds at 0.5; on logits that is 0 */
    double threshold = m->from_logits ? 0 : 0.5, right = 0;
    for (int64_t j = 0; j < k; j++) right += ((double)y[j] > threshold) == ((double)t[j] > 0.5);
    return right / (double)k;
}

double kdh_sample_correct(const kdh_model *m, const float *y, const float *t)
{
    kdh_loss_spec spec = loss_of(m, 0);
    return sample_correct(&spec, m->output_elems, y, t);
}

/* The model's inputs and outputs: its table, or one of each. */
static int model_inputs(const kdh_model *m) { return m->ninputs > 0 && m->inputs ? m->ninputs : 1; }
static int model_outputs(const kdh_model *m) { return m->noutputs > 0 && m->outputs ? m->noutputs : 1; }
static int64_t input_elems(const kdh_model *m, int i) { return m->ninputs > 0 && m->inputs ? m->inputs[i].elems : m->input_elems; }
static int64_t output_elems(const kdh_model *m, int j)
{
    return m->noutputs > 0 && m->outputs ? m->outputs[j].elems : m->output_elems;
}
static int64_t output_last(const kdh_model *m, int j)
{
    if (m->noutputs > 0 && m->outputs) return last_dim(m->outputs[j].rank, m->outputs[j].shape, m->outputs[j].elems);
    return last_dim(m->output_rank, m->output_shape, m->output_elems);
}

/* Metric i on a batch of nb samples of output 0 (y) and labels (t) when it
 * is written as an expression; its per-sample updates do nothing. */
static void update_expression_metric(const kdh_model *m, int i, kdh_metric_state *st, const float *y, const float *t,
                                     int nb)
{
    const kdh_metric_spec *s = &m->metrics[i];
    if (s->kind == KDH_METRIC_EXPRESSION && m->batch_metric)
        kdh_metric_update_batch(s, st, m->batch_metric(m->batch_loss_ctx, s->expr, y, t, nb), nb);
}

/* The running states of n metrics (metrics.h); -1 when memory runs out. */
static int metrics_reset(const kdh_model *m, kdh_metric_state *st, int n, kdh_error *err)
{
    for (int i = 0; i < n; i++)
        if (kdh_metric_reset(&m->metrics[i % (m->nmetrics ? m->nmetrics : 1)], &st[i]) != 0)
            return kdh__err(err, "out of memory for the metrics");
    return 0;
}

static void metrics_free(kdh_metric_state *st, int n)
{
    for (int i = 0; i < n; i++) kdh_metric_free(&st[i]);
}

/* ---- evaluate, predict ----------------------------------------------------------------------- */

/* The samples [lo, hi] whose outputs (or losses) are not finite, and how many. */
typedef struct bad_range {
    int64_t lo, hi, count;
} bad_range;

static void bad_add(bad_range *r, int64_t i)
{
    if (r->count++ == 0) r->lo = i;
    r->hi = i;
}

static int bad_report(const bad_range *r, int64_t n, const char *data, const char *what, kdh_error *err)
{
    if (r->count == 0) return 0;
    char range[64];
    if (r->lo == r->hi) snprintf(range, sizeof range, "sample %" PRId64, r->lo);
    else snprintf(range, sizeof range, "samples %" PRId64 " to %" PRId64, r->lo, r->hi);
    return kdh__err(err,
                    "%s: %s NaN or infinite for %" PRId64 " of %" PRId64 " samples (%s, counting from 0); the "
                    "weights or the inputs overflow float32",
                    data, what, r->count, n, range);
}

static bool all_finite(const float *v, int64_t k)
{
    for (int64_t j = 0; j < k; j++)
        if (!isfinite(v[j])) return false;
    return true;
}

int kdh_check_outputs(const kdh_model *m, const float *y, int64_t n, const char *data, kdh_error *err)
{
    bad_range r = {0};
    for (int64_t i = 0; i < n; i++)
        if (!all_finite(y + i * m->output_elems, m->output_elems)) bad_add(&r, i);
    return bad_report(&r, n, data, "the model's output is", err);
}

int kdh_evaluate_metrics(const kdh_model *m, const float *params, const kdh_dataset *d, void *arena, double *loss,
                         double *output_loss, double *output_accuracy, double *metric_values, kdh_error *err)
{
    int nin = model_inputs(m), nout = model_outputs(m), nm = m->nmetrics;
    if (nin > KDH_MAX_IO || nout > KDH_MAX_IO) return kdh__err(err, "model '%s': too many inputs or outputs", m->name);
    if (nm > KDH_MAX_METRICS) return kdh__err(err, "model '%s': too many metrics", m->name);
    float *out[KDH_MAX_IO] = {0};
    double sl[KDH_MAX_IO] = {0}, sc[KDH_MAX_IO] = {0};
    kdh_metric_state *ms = calloc((size_t)(nout * nm + 1), sizeof *ms);
    int rc = -1;
    if (!ms) return kdh__err(err, "out of memory for the metrics");
    if (metrics_reset(m, ms, nout * nm, err) != 0) goto done;
    for (int j = 0; j < nout; j++)
        if (!(out[j] = kdh_floats((int64_t)m->max_batch * output_elems(m, j), "evaluate", err))) goto done;
    kdh_loss_spec spec[KDH_MAX_IO];
    for (int j = 0; j < nout; j++) spec[j] = loss_of(m, j);
    unsigned long fpmode = kdh_fpmode_flush_subnormals();
    int64_t n = d[0].n;
    bad_range bad = {0};
    for (int64_t at = 0; at < n; at += m->max_batch) {
        int nb = (int)(n - at < m->max_batch ? n - at : m->max_batch);
        const float *ins[KDH_MAX_IO];
        for (int i = 0; i < nin; i++) ins[i] = d[i].x + at * d[i].x_elems;
        m->fns.predict(params, ins, out, nb, arena);
        bool hinge01[KDH_MAX_IO];
        for (int j = 0; j < nout; j++) hinge01[j] = labels_01(d[j].y + at * d[j].y_elems, (int64_t)nb * d[j].y_elems);
        /* custom losses: one figure per batch (the whole loss in output 0's column) */
        bool batch_ok = true;
        const float *ts[KDH_MAX_IO];
        for (int j = 0; j < nout; j++) ts[j] = d[j].y + at * d[j].y_elems;
        for (int j = 0; j < nout && m->batch_loss; j++) {
            if (m->whole_loss ? j > 0 : !spec[j].custom) continue;
            double l = m->batch_loss(m->batch_loss_ctx, m->whole_loss ? -1 : j, params, (const float *const *)out, ts, nb);
            batch_ok &= isfinite(l);
            sl[j] += l * nb;
        }
        for (int i = 0; i < nm; i++) update_expression_metric(m, i, &ms[i], out[0], ts[0], nb);   /* output 0's */
        for (int r = 0; r < nb; r++) {
            bool ok = batch_ok;
            for (int j = 0; j < nout; j++) {
                int64_t k = output_elems(m, j), last = output_last(m, j);
                const float *y = out[j] + (int64_t)r * k, *t = d[j].y + (at + r) * d[j].y_elems;
                double l = spec[j].custom ? 0 : sample_loss(&spec[j], k, last, y, t, hinge01[j]);
                /* a clipped loss can stay finite over an infinite output */
                if (!isfinite(l) || !all_finite(y, k)) ok = false;
                sl[j] += l;
                if (m->accuracy) sc[j] += sample_correct(&spec[j], k, y, t);
                for (int i = 0; i < nm; i++) kdh_metric_update(&m->metrics[i], &ms[j * nm + i], y, t, k, last);
            }
            if (!ok) bad_add(&bad, at + r);
        }
    }
    kdh_fpmode_set(fpmode);
    if (bad_report(&bad, n, d[0].name, "the loss or the model's output is", err) != 0) goto done;
    *loss = 0;
    for (int j = 0; j < nout; j++) {
        bool counts = j == 0 || !m->whole_loss;
        double lj = n && counts ? sl[j] / (double)n : NAN;
        if (counts) *loss += spec[j].weight * lj;
        if (output_loss) output_loss[j] = lj;
        if (output_accuracy) output_accuracy[j] = m->accuracy && n ? sc[j] / (double)n : NAN;
        for (int i = 0; metric_values && i < nm; i++)
            metric_values[j * nm + i] = n ? kdh_metric_result(&m->metrics[i], &ms[j * nm + i]) : NAN;
    }
    rc = 0;
done:
    for (int j = 0; j < nout; j++) free(out[j]);
    metrics_free(ms, nout * nm);
    free(ms);
    return rc;
}

int kdh_evaluate_outputs(const kdh_model *m, const float *params, const kdh_dataset *d, void *arena, double *loss,
                         double *output_loss, double *output_accuracy, kdh_error *err)
{
    return kdh_evaluate_metrics(m, params, d, arena, loss, output_loss, output_accuracy, NULL, err);
}

int kdh_evaluate(const kdh_model *m, const float *params, const kdh_dataset *d, void *arena, double *loss,
                 double *accuracy, kdh_error *err)
{
    kdh_model one = *m;   /* output 0 alone: what fit's validation reports */
    one.ninputs = one.noutputs = 0;
    one.inputs = one.outputs = NULL;
    return kdh_evaluate_outputs(&one, params, d, arena, loss, NULL, accuracy, err);
}

void kdh_predict_all(const kdh_model *m, const float *params, const float *const *x, int64_t n, float *const *y,
                     void *arena)
{
    int nin = model_inputs(m), nout = model_outputs(m);
    unsigned long fpmode = kdh_fpmode_flush_subnormals();
    for (int64_t at = 0; at < n; at += m->max_batch) {
        int nb = (int)(n - at < m->max_batch ? n - at : m->max_batch);
        const float *ins[KDH_MAX_IO];
        float *outs[KDH_MAX_IO];
        for (int i = 0; i < nin && i < KDH_MAX_IO; i++) ins[i] = x[i] + at * input_elems(m, i);
        for (int j = 0; j < nout && j < KDH_MAX_IO; j++) outs[j] = y[j] + at * output_elems(m, j);
        m->fns.predict(params, ins, outs, nb, arena);
    }
    kdh_fpmode_set(fpmode);
}

void kdh_predict(const kdh_model *m, const float *params, const float *x, int64_t n, float *y, void *arena)
{
    kdh_model one = *m;
    one.ninputs = one.noutputs = 0;
    one.inputs = one.outputs = NULL;
    kdh_predict_all(&one, params, &x, n, &y, arena);
}

/* ---- fit ------------------------------------------------------------------------------------------ */

typedef struct fit_state {
    float *params, *opt, *xb, *yb, *out0;
    float *best;           /* EarlyStopping's restore_best_weights: the best epoch's params */
    double lr;             /* the initial learning rate, as ReduceLROnPlateau leaves it */
    bool stopped_early;    /* resumed from the checkpoint of a run EarlyStopping ended */
    void *arena;
    int64_t *order;
    kdh_ckpt_state ck;     /* epoch, step, seed, shuffle stream, history */
    int first_epoch;       /* epochs done when this run started */
    kdh_dp *dp;            /* the data-parallel step (train_dist.h), or NULL: train_step */
    bool dp_stop;          /* a rank asked to stop during the last step: all stop before the next */
    bool writer;           /* rank 0: the one that prints and writes files */
} fit_state;

static void fit_free(fit_state *s)
{
    free(s->params);
    free(s->best);
    free(s->opt);
    free(s->xb);
    free(s->yb);
    free(s->out0);
    free(s->arena);
    free(s->order);
    kdh_dp_free(s->dp);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

double kdh_learning_rate(const kdh_lr_schedule *s, double lr, uint64_t t, uint64_t total_steps)
{
    double steps = s->decay_steps > 0 ? s->decay_steps : (double)(total_steps > 0 ? total_steps : 1);
    double p = (double)t / steps;
    switch (s->kind) {
    case KDH_LR_CONSTANT: return lr;
    case KDH_LR_EXPONENTIAL: return lr * pow(s->decay_rate, s->staircase ? floor(p) : p);
    case KDH_LR_INVERSE_TIME: return lr / (1 + s->decay_rate * (s->staircase ? floor(p) : p));
    case KDH_LR_COSINE: {
        double c = 0.5 * (1 + cos(3.14159265358979323846 * (p < 1 ? p : 1)));
        return lr * ((1 - s->alpha) * c + s->alpha);
    }
    case KDH_LR_POLYNOMIAL:
        return (lr - s->end_learning_rate) * pow(1 - (p < 1 ? p : 1), s->power) + s->end_learning_rate;
    }
    return lr;
}

static int check_fit(const kdh_model *m, const kdh_dataset *train, const kdh_dataset *val, const kdh_fit_opts *o,
                     kdh_error *err)
{
    if (!m->fns.train_step || !m->fns.init || !m->fns.predict)
        return kdh__err(err, "model '%s' has no training step", m->name);
    /* a batch larger than the data runs as one batch of all of it: the model
     * need only be compiled for that many */
    int64_t largest = train && train->n < o->batch_size ? train->n : o->batch_size;
    if (o->batch_size < 1 || largest > m->max_batch)
        return kdh__err(err, "batch size %d is outside 1..%d, the batch model '%s' was compiled for", o->batch_size,
                        m->max_batch, m->name);
    if (o->epochs < 0) return kdh__err(err, "epochs must be at least 0, got %d", o->epochs);
    if (!(o->learning_rate > 0) || !isfinite(o->learning_rate))
        return kdh__err(err, "learning rate must be positive, got %g", (double)o->learning_rate);
    const kdh_dataset *ds[2] = {train, val};
    for (int i = 0; i < 2; i++) {
        const kdh_dataset *d = ds[i];
        if (!d) continue;
        if (d->n < 1) return kdh__err(err, "%s: no samples", d->name);
        if (d->x_elems != m->input_elems || d->y_elems != m->label_elems || !d->y)
            return kdh__err(err, "%s: %" PRId64 " inputs and %" PRId64 " labels per sample; model '%s' takes %" PRId64
                                 " and %" PRId64,
                            d->name, d->x_elems, d->y_elems, m->name, m->input_elems, m->label_elems);
    }
    if (o->resume && o->weights) return kdh__err(err, "--resume and --weights cannot be used together");
    return 0;
}

static int fit_alloc(const kdh_model *m, const kdh_dataset *train, fit_state *s, kdh_error *err)
{
    int64_t b = m->max_batch;
    size_t arena = m->train_arena_bytes > m->predict_arena_bytes ? m->train_arena_bytes : m->predict_arena_bytes;
    if (!(s->params = kdh_floats(m->params_size, "params", err))) return -1;
    if (!(s->opt = kdh_floats(m->opt_size, "optimizer state", err))) return -1;
    if (!(s->xb = kdh_floats(b * m->input_elems, "batch", err))) return -1;
    if (!(s->yb = kdh_floats(b * m->label_elems, "batch labels", err))) return -1;
    if (!(s->out0 = kdh_floats(b * m->output_elems, "batch outputs", err))) return -1;
    if (!(s->arena = kdh_arena_alloc(arena, err))) return -1;
    s->order = malloc((size_t)train->n * sizeof *s->order);
    if (!s->order) return kdh__err(err, "out of memory for the shuffle of %" PRId64 " samples", train->n);
    return 0;
}

/* Initial weights: --resume, else the generated init with the seed, then --weights. */
static int fit_start(const kdh_model *m, const kdh_fit_opts *o, fit_state *s, kdh_error *err)
{
    if (o->resume) {
        if (kdh_checkpoint_load(o->resume, m, s->params, s->opt, &s->ck, err) != 0) return -1;
        kdh_history_truncate(&s->ck.history, s->ck.epoch);
        return 0;
    }
    s->ck.seed = o->seed;
    s->ck.shuffle_rng = shuffle_base(o->seed);
    s->ck.batch_size = o->batch_size;
    m->fns.init(s->params, s->opt, o->seed);
    if (o->weights && kdh_weights_load(o->weights, m, s->params, err) != 0) return -1;
    return 0;
}

/* ---- the batch gather ---------------------------------------------------------------------- */

/* Copying a shuffled batch out of a data set much larger than the caches is
 * a chain of memory misses (~60 us per Fashion-MNIST batch of 64, 5-10% of
 * a step): the rows are split across the pool's threads, and each copy
 * prefetches the row GATHER_AHEAD rows on, so several rows are in flight. */
#define GATHER_AHEAD 2

typedef struct gather_job {
    const kdh_dataset *d;
    const int64_t *rows;
    float *x, *y;
} gather_job;

static void prefetch_row(const float *p, int64_t elems)
{
    const char *c = (const char *)p, *end = (const char *)(p + elems);
    for (; c < end; c += 64) __builtin_prefetch(c, 0, 0);
}

static void gather_rows(void *ctx, long lo, long hi)
{
    const gather_job *g = ctx;
    int64_t xe = g->d->x_elems, ye = g->d->y_elems;
    for (long r = lo; r < hi && r < lo + GATHER_AHEAD; r++) prefetch_row(g->d->x + g->rows[r] * xe, xe);
    for (long r = lo; r < hi; r++) {
        if (r + GATHER_AHEAD < hi) prefetch_row(g->d->x + g->rows[r + GATHER_AHEAD] * xe, xe);
        int64_t i = g->rows[r];
        memcpy(g->x + r * xe, g->d->x + i * xe, (size_t)xe * sizeof(float));
        memcpy(g->y + r * ye, g->d->y + i * ye, (size_t)ye * sizeof(float));
    }
}

/* Rows rows[0..nb) of d into x and y; the same bytes at any thread count. */
static void gather_batch(const kdh_dataset *d, const int64_t *rows, int nb, float *x, float *y)
{
    gather_job g = {d, rows, x, y};
    /* a few KB per row: below 8 rows a split costs more than it saves */
    kdh_parallel_range(gather_rows, &g, nb, 1, 8);
}

/* Where a run stopped by a signal stopped, and which checkpoint holds what. */
static void stopped(const kdh_fit_opts *o, const fit_state *s, int e, int64_t b, int64_t steps, kdh_error *err)
{
    int sig = *o->stop;
    char where[160], kept[1400];
    snprintf(where, sizeof where, "training stopped by %s before step %" PRId64 "/%" PRId64 " of epoch %d/%d (optimizer step %" PRIu64 ")",
             sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal", b + 1, steps, e + 1, o->epochs,
             s->ck.step);
    if (o->checkpoint && s->ck.epoch > s->first_epoch)
        snprintf(kept, sizeof kept, "the checkpoint %.600s holds epoch %d and is intact (--resume %.600s continues)",
                 o->checkpoint, s->ck.epoch, o->checkpoint);
    else if (o->resume)
        snprintf(kept, sizeof kept, "no epoch finished; the checkpoint %.600s (epoch %d) is intact", o->resume,
                 s->ck.epoch);
    else if (o->checkpoint)
        snprintf(kept, sizeof kept, "no epoch finished, so no checkpoint was written to %.600s", o->checkpoint);
    else
        snprintf(kept, sizeof kept, "no checkpoint was kept (--checkpoint F keeps one every epoch)");
    kdh__err(err, "%s; %s%s", where, kept, o->save ? "; the weights were not saved" : "");
}

/* One epoch of training steps; sets the epoch's mean loss, accuracy and
 * metrics (reset at the start of the epoch, as Keras' are).
 * 0, -1 (error) or KDH_FIT_STOPPED. */
static int fit_epoch(const kdh_model *m, const kdh_dataset *d, const kdh_fit_opts *o, fit_state *s, int e,
                     kdh_progress *pg, double *loss, double *accuracy, double *metric_values, kdh_error *err)
{
    kdh_metric_state ms[KDH_MAX_METRICS] = {0};
    int nm = m->nmetrics < KDH_MAX_METRICS ? m->nmetrics : KDH_MAX_METRICS, rc = -1;
    int64_t last = output_last(m, 0);
    if (metrics_reset(m, ms, nm, err) != 0) goto out;
    int64_t bs = o->batch_size, n = d->n, steps = (n + bs - 1) / bs;
    int64_t ye = d->y_elems;
    epoch_order(s->order, n, o->shuffle, s->ck.shuffle_rng, e);
    double sl = 0, sc = 0;
    int64_t seen = 0;
    for (int64_t b = 0; b < steps; b++) {
        if (s->dp ? s->dp_stop : o->stop && *o->stop) {
            kdh_progress_break(pg);
            stopped(o, s, e, b, steps, err);
            rc = KDH_FIT_STOPPED;
            goto out;
        }
        int nb = (int)(n - b * bs < bs ? n - b * bs : bs);
        gather_batch(d, s->order + b * bs, nb, s->xb, s->yb);
        const float *ins[1] = {s->xb};
        float lr = (float)kdh_learning_rate(&o->schedule, s->lr, s->ck.step, (uint64_t)(o->epochs * steps));
        float *out0 = m->accuracy || nm ? s->out0 : NULL, l;
        if (s->dp) {
            char where[96];
            snprintf(where, sizeof where, "epoch %d, step %" PRId64 "/%" PRId64, e + 1, b + 1, steps);
            kdh_dist_set_where(where);
            s->dp_stop = o->stop && *o->stop;
            if (kdh_dp_step(s->dp, m, s->params, s->opt, s->xb, s->yb, nb, s->ck.step, lr, s->arena, out0, &l,
                            &s->dp_stop, err) != 0) {
                kdh_progress_break(pg);
                goto out;
            }
        } else {
            l = m->fns.train_step(s->params, s->opt, ins, s->yb, nb, s->ck.step, lr, s->arena, out0);
        }
        if (!isfinite(l)) {
            kdh_progress_break(pg);
            kdh__err(err,
                     "the loss became %s at epoch %d, step %" PRId64 "/%" PRId64 " (optimizer step %" PRIu64
                     "); training stopped%s%s%s",
                     isnan(l) ? "NaN" : "infinite", e + 1, b + 1, steps, s->ck.step + 1,
                     o->checkpoint ? "; the last checkpoint, " : "", o->checkpoint ? o->checkpoint : "",
                     o->checkpoint ? ", is left as it was" : "");
            goto out;
        }
        s->ck.step++;
        sl += (double)l * nb;
        seen += nb;
        for (int r = 0; m->accuracy && r < nb; r++)
            sc += kdh_sample_correct(m, s->out0 + r * m->output_elems, s->yb + r * ye);
        double running[KDH_MAX_METRICS];
        for (int i = 0; i < nm; i++) {
            update_expression_metric(m, i, &ms[i], s->out0, s->yb, nb);
            for (int r = 0; r < nb; r++)
                kdh_metric_update(&m->metrics[i], &ms[i], s->out0 + r * m->output_elems, s->yb + r * ye,
                                  m->output_elems, last);
            running[i] = kdh_metric_result(&m->metrics[i], &ms[i]);
        }
        kdh_progress_step_metrics(pg, b + 1, sl / (double)seen, m->accuracy ? sc / (double)seen : NAN, running);
        if (o->slow_step_ms) sleep_ms(o->slow_step_ms);
    }
    *loss = sl / (double)seen;
    *accuracy = m->accuracy ? sc / (double)seen : NAN;
    for (int i = 0; i < nm; i++) metric_values[i] = kdh_metric_result(&m->metrics[i], &ms[i]);
    rc = 0;
out:
    metrics_free(ms, nm);
    return rc;
}

/* The callbacks after epoch e (0-based) whose logs are row (callbacks.h):
 * ModelCheckpoint's save, EarlyStopping's verdict (*stop) and best weights,
 * ReduceLROnPlateau's rate, in Keras' order (the callbacks in the order
 * given, then the history). */
static int run_callbacks(const kdh_model *m, kdh_callbacks *cb, fit_state *s, int e, const kdh_epoch_log *row,
                         bool *stop, FILE *out, kdh_error *err)
{
    const kdh_history *h = &s->ck.history;
    kdh_early_stopping *es = &cb->early_stopping;
    kdh_reduce_lr *rl = &cb->reduce_lr;
    kdh_model_checkpoint *mc = &cb->checkpoint;
    if (es->on) {
        bool keep = false;
        double v = kdh_epoch_log_value(h, row, es->monitor);
        if (isnan(v) && !es->warned) {
            es->warned = true;
            fprintf(stderr, "kdslc: warning: EarlyStopping monitors '%s', which epoch %d's logs do not have "
                            "(validation runs every validation_freq epochs, with validation data)\n",
                    es->monitor, e + 1);
        }
        *stop = kdh_early_stopping_epoch_end(es, e, v, &keep);
        if (keep) {
            if (!s->best && !(s->best = kdh_floats(m->params_size, "best weights", err))) return -1;
            memcpy(s->best, s->params, (size_t)m->params_size * sizeof *s->params);
        }
        if (*stop && es->verbose > 0) fprintf(out, "Epoch %d: early stopping\n", e + 1);
    }
    if (rl->on) {
        double v = kdh_epoch_log_value(h, row, rl->monitor);
        if (isnan(v) && !rl->warned) {
            rl->warned = true;
            fprintf(stderr, "kdslc: warning: ReduceLROnPlateau monitors '%s', which epoch %d's logs do not have\n",
                    rl->monitor, e + 1);
        }
        double next = kdh_reduce_lr_epoch_end(rl, v, s->lr);
        if (next != s->lr && rl->verbose > 0)
            fprintf(out, "Epoch %d: ReduceLROnPlateau reducing learning rate to %.9g.\n", e + 1, next);
        s->lr = next;
    }
    if (mc->on) {
        double v = kdh_epoch_log_value(h, row, mc->monitor);
        if (isnan(v) && mc->save_best_only && !mc->warned) {
            mc->warned = true;
            fprintf(stderr, "kdslc: warning: ModelCheckpoint can save the best model only with %s available\n",
                    mc->monitor);
        }
        if (kdh_model_checkpoint_epoch_end(mc, v)) {
            char path[4096];
            kdh_model_checkpoint_path(mc, e, path, sizeof path);
            if (s->writer && kdh_weights_save(path, m, s->params, err) != 0) return -1;
            if (mc->verbose > 0) fprintf(out, "Epoch %d: saving model to %s\n", e + 1, path);
        }
    }
    return 0;
}

/* A resumed run's callbacks as the checkpoint left them: their counters,
 * ReduceLROnPlateau's learning rate (when it is on), restore_best_weights'
 * best weights, so that the run goes on as one never stopped. */
static int resume_callbacks(const kdh_model *m, const kdh_fit_opts *o, kdh_callbacks *cb, fit_state *s, kdh_error *err)
{
    kdh_callbacks saved = *cb;
    double lr = s->lr;
    if (kdh_callbacks_state_parse(s->ck.callbacks, &saved, &lr) != 0)
        return kdh__err(err, "%s: checkpoint's \"kdsl.callbacks\" is not valid: \"%.80s\"", o->resume, s->ck.callbacks);
    if (cb->early_stopping.on) {
        bool restore = cb->early_stopping.restore_best_weights;
        cb->early_stopping = saved.early_stopping;
        cb->early_stopping.have_best_weights &= restore;
        if (cb->early_stopping.have_best_weights) {
            if (!(s->best = kdh_floats(m->params_size, "best weights", err))) return -1;
            if (kdh_checkpoint_load_best(o->resume, m, s->best, err) != 0) return -1;
        }
    }
    s->stopped_early = cb->early_stopping.on && cb->early_stopping.stopped_epoch > 0;
    if (cb->reduce_lr.on) {
        cb->reduce_lr = saved.reduce_lr;
        s->lr = lr;
    }
    if (cb->checkpoint.on) cb->checkpoint = saved.checkpoint;
    return 0;
}

/* fit's validation: output 0's loss, accuracy and metrics, as kdh_evaluate. */
static int validate(const kdh_model *m, const float *params, const kdh_dataset *val, void *arena, kdh_epoch_log *row,
                    kdh_error *err)
{
    kdh_model one = *m;
    one.ninputs = one.noutputs = 0;
    one.inputs = one.outputs = NULL;
    return kdh_evaluate_metrics(&one, params, val, arena, &row->val_loss, NULL, &row->val_accuracy, row->val_metrics,
                                err);
}

int kdh_fit(const kdh_model *m, const kdh_dataset *train, const kdh_dataset *val, const kdh_fit_opts *o,
            kdh_history *hist, kdh_error *err)
{
    fit_state s = {0};
    memset(hist, 0, sizeof *hist);
    int rc = -1;
    if (check_fit(m, train, val, o, err) != 0) return -1;
    kdh_pool_set_threads(o->threads);   /* the kernels' thread split (thread_pool.h) */
    unsigned long fpmode = kdh_fpmode_flush_subnormals(); /* as TensorFlow trains (fpmode.h) */
    if (fit_alloc(m, train, &s, err) != 0) goto done;
    if (fit_start(m, o, &s, err) != 0) goto done;
    s.writer = kdh_dist_rank() == 0;
    if (kdh_dp_wanted(o)) {
        if (!(s.dp = kdh_dp_new(m, o, err))) goto done;
        if (kdh_dp_share_start(m, s.params, s.opt, &s.ck.epoch, &s.ck.step, &s.ck.seed, &s.ck.shuffle_rng, err) != 0)
            goto done;
    }
    s.first_epoch = s.ck.epoch;
    s.lr = o->learning_rate;
    kdh_callbacks cb = o->callbacks ? *o->callbacks : (kdh_callbacks){0};
    kdh_early_stopping_begin(&cb.early_stopping);
    kdh_reduce_lr_begin(&cb.reduce_lr);
    kdh_model_checkpoint_begin(&cb.checkpoint);
    if (o->resume && s.ck.callbacks[0] && resume_callbacks(m, o, &cb, &s, err) != 0) goto done;
    const char *names[KDH_MAX_METRICS];
    int nm = m->nmetrics < KDH_MAX_METRICS ? m->nmetrics : KDH_MAX_METRICS;
    for (int i = 0; i < nm; i++) names[i] = m->metrics[i].name;
    kdh_history_set_metrics(&s.ck.history, nm, names);   /* a resumed history's columns by name */
    if (o->callbacks && o->callbacks->reduce_lr.on) s.ck.history.has_learning_rate = true;
    kdh_progress pg;
    kdh_progress_init(&pg, o->out ? o->out : stdout, o->tty);
    kdh_progress_set_metrics(&pg, nm, names);
    if (o->resume && s.stopped_early)
        fprintf(pg.out, "%s: EarlyStopping ended the run at epoch %d; nothing to train\n", o->resume, s.ck.epoch);
    else if (o->resume && s.ck.epoch >= o->epochs)
        fprintf(pg.out, "%s: %d epochs done already (of %d); nothing to train\n", o->resume, s.ck.epoch, o->epochs);
    else if (o->resume)
        fprintf(pg.out, "Resuming from %s: epoch %d of %d done, step %" PRIu64 "\n", o->resume, s.ck.epoch, o->epochs,
                s.ck.step);
    int freq = o->validation_freq > 0 ? o->validation_freq : 1;
    for (int e = s.ck.epoch; e < o->epochs && !s.stopped_early; e++) {
        int64_t steps = (train->n + o->batch_size - 1) / o->batch_size;
        kdh_progress_epoch_begin(&pg, e + 1, o->epochs, steps);
        double t0 = kdh_now();
        kdh_epoch_log row = kdh_epoch_log_empty(e + 1);
        if ((rc = fit_epoch(m, train, o, &s, e, &pg, &row.loss, &row.accuracy, row.metrics, err)) != 0) {
            if (rc != KDH_FIT_STOPPED) rc = -1;
            goto done;
        }
        rc = -1;
        double t_train = kdh_now() - t0;
        if (val && (e + 1) % freq == 0 && validate(m, s.params, val, s.arena, &row, err) != 0) goto done;
        row.seconds = kdh_now() - t0;
        row.samples_per_second = t_train > 0 ? (double)train->n / t_train : 0;
        if (cb.reduce_lr.on) /* Keras' logs["learning_rate"] */
            row.learning_rate = pg.learning_rate = (double)(float)s.lr;
        kdh_progress_epoch_end_metrics(&pg, row.loss, row.accuracy, row.metrics, row.val_loss, row.val_accuracy,
                                       row.val_metrics, row.seconds, t_train, train->n);
        if (kdh_history_add(&s.ck.history, &row) != 0) {
            kdh__err(err, "out of memory for the history");
            goto done;
        }
        s.ck.epoch = e + 1;
        bool stop = false;
        if (run_callbacks(m, &cb, &s, e, &row, &stop, pg.out, err) != 0) goto done;
        if (cb.early_stopping.on || cb.reduce_lr.on || cb.checkpoint.on)
            kdh_callbacks_state_format(&cb, s.lr, s.ck.callbacks, sizeof s.ck.callbacks);
        s.ck.best = s.best;
        if (s.writer && o->checkpoint && kdh_checkpoint_save(o->checkpoint, m, s.params, s.opt, &s.ck, err) != 0)
            goto done;
        if (s.writer && o->history && kdh_history_write(o->history, &s.ck.history, err) != 0) goto done;
        if (stop) break;
    }
    /* EarlyStopping(restore_best_weights): the best epoch's weights, as Keras' on_train_end */
    if (s.best) {
        memcpy(s.params, s.best, (size_t)m->params_size * sizeof *s.params);
        if (cb.early_stopping.verbose > 0)
            fprintf(pg.out, "Restoring model weights from the end of the best epoch: %d.\n",
                    cb.early_stopping.best_epoch + 1);
    }
    if (s.writer && o->history && kdh_history_write(o->history, &s.ck.history, err) != 0) goto done;
    if (s.writer && o->save && kdh_weights_save(o->save, m, s.params, err) != 0) goto done;
    *hist = s.ck.history;
    s.ck.history = (kdh_history){0};
    rc = 0;
done:
    kdh_fpmode_set(fpmode);
    kdh_history_free(&s.ck.history);
    fit_free(&s);
    return rc;
}
