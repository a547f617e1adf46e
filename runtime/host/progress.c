/* progress.c — Keras' progress bar on a terminal, plain lines elsewhere (progress.h). */
#include "progress.h"

#include "train.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#define BAR_WIDTH 30
#define REDRAW_SECONDS 0.05   /* Keras' Progbar interval */

void kdh_progress_init(kdh_progress *p, FILE *out, int tty)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->tty = tty < 0 ? isatty(fileno(out)) != 0 : tty != 0;
    p->learning_rate = NAN;
}

void kdh_progress_epoch_begin(kdh_progress *p, int epoch, int epochs, int64_t steps)
{
    p->epoch = epoch;
    p->epochs = epochs;
    p->steps = steps;
    p->start = kdh_now();
    p->last_draw = 0;   /* the first step always draws */
    p->last_len = 0;
    if (p->tty) {
        fprintf(p->out, "Epoch %d/%d\n", epoch, epochs);
        fflush(p->out);
    }
}

void kdh_format_step_time(char *buf, size_t size, double t)
{
    if (t >= 1) snprintf(buf, size, "%.0fs/step", t);
    else if (t >= 1e-3) snprintf(buf, size, "%.0fms/step", t * 1e3);
    else snprintf(buf, size, "%.0fus/step", t * 1e6);
}

static void format_eta(char *buf, size_t size, double eta)
{
    long s = (long)(eta + 0.5);
    if (s >= 3600) snprintf(buf, size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else if (s >= 60) snprintf(buf, size, "%ld:%02ld", s / 60, s % 60);
    else snprintf(buf, size, "%lds", s);
}

/* "  937/1875 [=============>................]" */
static int bar(char *buf, size_t size, int64_t done, int64_t total)
{
    char tot[32];
    int w = snprintf(tot, sizeof tot, "%lld", (long long)total);
    int n = snprintf(buf, size, "%*lld/%lld [", w, (long long)done, (long long)total);
    int filled = total > 0 ? (int)(BAR_WIDTH * (double)done / (double)total) : BAR_WIDTH;
    if (filled > BAR_WIDTH) filled = BAR_WIDTH;
    for (int i = 0; i < BAR_WIDTH && n + 2 < (int)size; i++) {
        char c = '.';
        if (i < filled - 1) c = '=';
        else if (i == filled - 1) c = done < total ? '>' : '=';
        buf[n++] = c;
    }
    buf[n++] = ']';
    buf[n] = 0;
    return n;
}

void kdh_progress_set_metrics(kdh_progress *p, int n, const char *const *names)
{
    p->nmetrics = n;
    p->metric_names = names;
}

static int metrics(const kdh_progress *p, char *buf, size_t size, const char *prefix, double loss, double accuracy,
                   const double *values)
{
    int n = 0;
    if (!isnan(loss)) n += snprintf(buf + n, size - (size_t)n, " - %sloss: %.4f", prefix, loss);
    if (!isnan(accuracy) && n < (int)size) n += snprintf(buf + n, size - (size_t)n, " - %saccuracy: %.4f", prefix, accuracy);
    for (int i = 0; values && i < p->nmetrics && n < (int)size; i++)
        if (!isnan(values[i]))
            n += snprintf(buf + n, size - (size_t)n, " - %s%s: %.4f", prefix, p->metric_names[i], values[i]);
    return n < (int)size ? n : (int)size - 1;
}

/* Writes line over the one on screen, padding out what was longer. */
static void redraw(kdh_progress *p, const char *line, int len)
{
    fputc('\r', p->out);
    fputs(line, p->out);
    for (int i = len; i < p->last_len; i++) fputc(' ', p->out);
    p->last_len = len;
    p->open_line = true;
    fflush(p->out);
}

void kdh_progress_step(kdh_progress *p, int64_t done, double loss, double accuracy)
{
    kdh_progress_step_metrics(p, done, loss, accuracy, NULL);
}

void kdh_progress_step_metrics(kdh_progress *p, int64_t done, double loss, double accuracy, const double *values)
{
    if (!p->tty) return;
    double now = kdh_now();
    if (done < p->steps && now - p->last_draw < REDRAW_SECONDS) return;
    p->last_draw = now;
    char line[2048], eta[32];
    int n = bar(line, sizeof line, done, p->steps);
    double per = done > 0 ? (now - p->start) / (double)done : 0;
    format_eta(eta, sizeof eta, per * (double)(p->steps - done));
    n += snprintf(line + n, sizeof line - (size_t)n, " - ETA: %s", eta);
    n += metrics(p, line + n, sizeof line - (size_t)n, "", loss, accuracy, values);
    redraw(p, line, n);
}

void kdh_progress_epoch_end(kdh_progress *p, double loss, double accuracy, double val_loss, double val_accuracy,
                            double seconds, double train_seconds, int64_t samples)
{
    kdh_progress_epoch_end_metrics(p, loss, accuracy, NULL, val_loss, val_accuracy, NULL, seconds, train_seconds,
                                   samples);
}

void kdh_progress_epoch_end_metrics(kdh_progress *p, double loss, double accuracy, const double *values,
                                    double val_loss, double val_accuracy, const double *val_values, double seconds,
                                    double train_seconds, int64_t samples)
{
    char line[4096], st[32];
    int n = 0;
    if (p->tty) n = bar(line, sizeof line, p->steps, p->steps);
    else
        n = snprintf(line, sizeof line, "Epoch %d/%d - %lld/%lld", p->epoch, p->epochs, (long long)p->steps,
                     (long long)p->steps);
    kdh_format_step_time(st, sizeof st, p->steps > 0 ? train_seconds / (double)p->steps : 0);
    n += snprintf(line + n, sizeof line - (size_t)n, " - %.0fs %s", seconds, st);
    n += metrics(p, line + n, sizeof line - (size_t)n, "", loss, accuracy, values);
    n += metrics(p, line + n, sizeof line - (size_t)n, "val_", val_loss, val_accuracy, val_values);
    /* Keras' Progbar: 4 decimals, or 4 digits in scientific notation at 1e-3 and below */
    if (!isnan(p->learning_rate) && n < (int)sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, fabs(p->learning_rate) > 1e-3 ? " - learning_rate: %.4f"
                                                                                         : " - learning_rate: %.4e",
                      p->learning_rate);
    double rate = train_seconds > 0 ? (double)samples / train_seconds : 0;
    n += snprintf(line + n, sizeof line - (size_t)n, " - %.0f samples/s", rate);
    if (p->tty) {
        redraw(p, line, n);
        fputc('\n', p->out);
    } else {
        fputs(line, p->out);
        fputc('\n', p->out);
    }
    p->open_line = false;
    p->last_len = 0;
    fflush(p->out);
}

void kdh_progress_break(kdh_progress *p)
{
    if (p->open_line) fputc('\n', p->out);
    p->open_line = false;
    p->last_len = 0;
    fflush(p->out);
}
