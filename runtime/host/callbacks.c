/* callbacks.c — Keras' EarlyStopping, ReduceLROnPlateau and ModelCheckpoint
 * rules (callbacks.h), from keras/src/callbacks/, on one epoch's value of
 * the monitored quantity (NaN: not in this epoch's logs). */
#include "callbacks.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* MonitorCallback._is_improvement: monitor_op(value - min_delta, reference),
 * min_delta negated when minimising. */
static bool improves(bool maximize, double min_delta, double value, double reference)
{
    return maximize ? value - min_delta > reference : value + min_delta < reference;
}

void kdh_early_stopping_begin(kdh_early_stopping *es)
{
    es->wait = es->stopped_epoch = es->best_epoch = 0;
    es->best = es->maximize ? -INFINITY : INFINITY;
    es->have_best_weights = false;
}

bool kdh_early_stopping_epoch_end(kdh_early_stopping *es, int epoch, double current, bool *keep_weights)
{
    *keep_weights = false;
    if (isnan(current) || epoch < es->start_from_epoch) return false;
    if (es->restore_best_weights && !es->have_best_weights) {
        /* never set: the current weights are the best */
        *keep_weights = es->have_best_weights = true;
        es->best_epoch = epoch;
    }
    es->wait++;
    if (improves(es->maximize, es->min_delta, current, es->best)) {
        es->best = current;
        es->best_epoch = epoch;
        if (es->restore_best_weights) *keep_weights = true;
        /* only a value that also beats the baseline restarts the wait */
        if (!es->has_baseline || improves(es->maximize, es->min_delta, current, es->baseline)) es->wait = 0;
        return false;
    }
    if (es->wait >= es->patience && epoch > 0) {
        es->stopped_epoch = epoch;
        return true;
    }
    return false;
}

void kdh_reduce_lr_begin(kdh_reduce_lr *r)
{
    r->best = r->maximize ? -INFINITY : INFINITY;
    r->cooldown_counter = r->wait = 0;
}

double kdh_reduce_lr_epoch_end(kdh_reduce_lr *r, double current, double lr)
{
    if (isnan(current)) return lr;
    if (r->cooldown_counter > 0) {
        r->cooldown_counter--;
        r->wait = 0;
    }
    bool better = r->maximize ? current > r->best + r->min_delta : current < r->best - r->min_delta;
    if (better) {
        r->best = current;
        r->wait = 0;
    } else if (r->cooldown_counter <= 0) {
        r->wait++;
        if (r->wait >= r->patience && lr > (double)(float)r->min_lr) {
            double next = lr * r->factor;
            lr = (double)(float)(next > r->min_lr ? next : r->min_lr);   /* a float32 variable in Keras */
            r->cooldown_counter = r->cooldown;
            r->wait = 0;
        }
    }
    return lr;
}

void kdh_model_checkpoint_begin(kdh_model_checkpoint *c)
{
    c->best = c->has_initial ? c->initial_value_threshold : c->maximize ? -INFINITY : INFINITY;
}

bool kdh_model_checkpoint_epoch_end(kdh_model_checkpoint *c, double current)
{
    if (!c->save_best_only || isnan(current)) return true;   /* a missing monitor saves, as Keras does */
    if (!improves(c->maximize, 0, current, c->best)) return false;
    c->best = current;
    return true;
}

void kdh_model_checkpoint_path(const kdh_model_checkpoint *c, int epoch, char *buf, size_t size)
{
    size_t n = 0;
    const char *p = c->filepath;
    while (*p && n + 1 < size) {
        int width = 0;
        const char *end = NULL;
        if (!strncmp(p, "{epoch}", 7)) end = p + 7;
        else if (!strncmp(p, "{epoch:0", 8) && p[8] >= '1' && p[8] <= '9' && !strncmp(p + 9, "d}", 2)) {
            width = p[8] - '0';
            end = p + 11;
        }
        if (end) {
            n += (size_t)snprintf(buf + n, size - n, "%0*d", width, epoch + 1);
            if (n >= size) n = size - 1;
            p = end;
        } else {
            buf[n++] = *p++;
        }
    }
    buf[n < size ? n : size - 1] = 0;
}

void kdh_callbacks_state_format(const kdh_callbacks *cb, double lr, char *buf, size_t size)
{
    const kdh_early_stopping *es = &cb->early_stopping;
    const kdh_reduce_lr *rl = &cb->reduce_lr;
    snprintf(buf, size, "lr %.17g es %d %d %d %.17g %d rl %d %d %.17g mc %.17g", lr, es->wait, es->stopped_epoch,
             es->best_epoch, es->best, es->have_best_weights, rl->wait, rl->cooldown_counter, rl->best,
             cb->checkpoint.best);
}

int kdh_callbacks_state_parse(const char *text, kdh_callbacks *cb, double *lr)
{
    kdh_early_stopping *es = &cb->early_stopping;
    kdh_reduce_lr *rl = &cb->reduce_lr;
    int have = 0, n = 0;
    if (sscanf(text, "lr %lg es %d %d %d %lg %d rl %d %d %lg mc %lg%n", lr, &es->wait, &es->stopped_epoch,
               &es->best_epoch, &es->best, &have, &rl->wait, &rl->cooldown_counter, &rl->best, &cb->checkpoint.best,
               &n) != 10 || text[n] || !(*lr > 0))
        return -1;
    es->have_best_weights = have != 0;
    return 0;
}
