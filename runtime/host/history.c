/* history.c — fit()'s history (Keras' History.history): kept per epoch,
 * written as CSV or JSON, and carried inside checkpoints (train.h). */
#include "train.h"

#include "host_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kdh_history_add(kdh_history *h, const kdh_epoch_log *row)
{
    if (h->count == h->cap) {
        int cap = h->cap ? h->cap * 2 : 16;
        kdh_epoch_log *r = realloc(h->rows, (size_t)cap * sizeof *r);
        if (!r) return -1;
        h->rows = r;
        h->cap = cap;
    }
    h->rows[h->count++] = *row;
    return 0;
}

void kdh_history_truncate(kdh_history *h, int epoch)
{
    while (h->count > 0 && h->rows[h->count - 1].epoch > epoch) h->count--;
}

void kdh_history_free(kdh_history *h)
{
    free(h->rows);
    memset(h, 0, sizeof *h);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

kdh_epoch_log kdh_epoch_log_empty(int epoch)
{
    kdh_epoch_log r = {.epoch = epoch, .loss = NAN, .accuracy = NAN, .val_loss = NAN, .val_accuracy = NAN,
                       .seconds = NAN, .samples_per_second = NAN, .learning_rate = NAN};
    for (int i = 0; i < KDH_MAX_METRICS; i++) r.metrics[i] = r.val_metrics[i] = NAN;
    return r;
}

/* The columns, in file order (Keras' History keys): loss, accuracy, the
 * metrics, then the same with val_, then ReduceLROnPlateau's learning_rate. */
static int ncolumns(const kdh_history *h) { return 4 + 2 * h->nmetrics + h->has_learning_rate; }

static const char *column_name(const kdh_history *h, int c, char buf[static 80])
{
    int half = 2 + h->nmetrics, i = c % half;
    if (c == 2 * half) return "learning_rate";
    const char *base = i == 0 ? "loss" : i == 1 ? "accuracy" : h->metric_names[i - 2];
    snprintf(buf, 80, "%s%s", c >= half ? "val_" : "", base);
    return buf;
}

static double *column(kdh_epoch_log *r, const kdh_history *h, int c)
{
    int half = 2 + h->nmetrics, i = c % half;
    if (c == 2 * half) return &r->learning_rate;
    bool val = c >= half;
    if (i == 0) return val ? &r->val_loss : &r->loss;
    if (i == 1) return val ? &r->val_accuracy : &r->accuracy;
    return val ? &r->val_metrics[i - 2] : &r->metrics[i - 2];
}

double kdh_epoch_log_value(const kdh_history *h, const kdh_epoch_log *row, const char *name)
{
    char buf[80];
    for (int c = 0; c < ncolumns(h); c++)
        if (!strcmp(column_name(h, c, buf), name)) return *column((kdh_epoch_log *)row, h, c);
    return NAN;
}

void kdh_history_set_metrics(kdh_history *h, int n, const char *const *names)
{
    if (n > KDH_MAX_METRICS) n = KDH_MAX_METRICS;
    for (int r = 0; r < h->count; r++) {
        kdh_epoch_log *row = &h->rows[r], old = *row;
        for (int i = 0; i < n; i++) {
            row->metrics[i] = row->val_metrics[i] = NAN;
            for (int j = 0; j < h->nmetrics; j++)
                if (!strcmp(h->metric_names[j], names[i])) {
                    row->metrics[i] = old.metrics[j];
                    row->val_metrics[i] = old.val_metrics[j];
                }
        }
        for (int i = n; i < KDH_MAX_METRICS; i++) row->metrics[i] = row->val_metrics[i] = NAN;
    }
    h->nmetrics = n;
    for (int i = 0; i < n; i++) snprintf(h->metric_names[i], KDH_METRIC_NAME_MAX, "%s", names[i]);
}

static cJSON *to_json(const kdh_history *h)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON *ep = cJSON_AddArrayToObject(o, "epoch");
    if (!ep) goto fail;
    for (int i = 0; i < h->count; i++)
        if (!cJSON_AddItemToArray(ep, cJSON_CreateNumber(h->rows[i].epoch))) goto fail;
    for (int c = 0; c < ncolumns(h); c++) {
        char name[80];
        cJSON *a = cJSON_AddArrayToObject(o, column_name(h, c, name));
        if (!a) goto fail;
        for (int i = 0; i < h->count; i++) {
            double v = *column(&h->rows[i], h, c);
            if (!cJSON_AddItemToArray(a, isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull())) goto fail;
        }
    }
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

char *kdh_history_to_json(const kdh_history *h)
{
    cJSON *o = to_json(h);
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

int kdh_history_from_json(const char *text, kdh_history *h, const char *what, kdh_error *err)
{
    memset(h, 0, sizeof *h);
    cJSON *o = cJSON_Parse(text);
    cJSON *ep = o ? cJSON_GetObjectItemCaseSensitive(o, "epoch") : NULL;
    if (!cJSON_IsArray(ep)) {
        cJSON_Delete(o);
        return kdh__err(err, "%s: the history in its metadata is not valid", what);
    }
    /* The metric columns: every key but the fixed ones and the val_ ones, in order. */
    const cJSON *k;
    cJSON_ArrayForEach(k, o) {
        const char *n = k->string;
        if (n && !strcmp(n, "learning_rate")) h->has_learning_rate = true;
        if (!n || !strcmp(n, "epoch") || !strcmp(n, "loss") || !strcmp(n, "accuracy") || !strncmp(n, "val_", 4) ||
            !strcmp(n, "learning_rate"))
            continue;
        if (h->nmetrics == KDH_MAX_METRICS || strlen(n) >= KDH_METRIC_NAME_MAX) goto bad;
        snprintf(h->metric_names[h->nmetrics++], KDH_METRIC_NAME_MAX, "%s", n);
    }
    /* Walk the arrays side by side through their links: cJSON_GetArrayItem
     * counts from the head each time, quadratic in a 40,000-epoch history. */
    cJSON *col[5 + 2 * KDH_MAX_METRICS];
    int nc = ncolumns(h);
    for (int c = 0; c < nc; c++) {
        char name[80];
        cJSON *a = cJSON_GetObjectItemCaseSensitive(o, column_name(h, c, name));
        col[c] = cJSON_IsArray(a) ? a->child : NULL;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, ep) {
        kdh_epoch_log r = kdh_epoch_log_empty(0);
        if (!cJSON_IsNumber(e)) goto bad;
        r.epoch = e->valueint;
        for (int c = 0; c < nc; c++) {
            if (cJSON_IsNumber(col[c])) *column(&r, h, c) = col[c]->valuedouble;
            if (col[c]) col[c] = col[c]->next;
        }
        if (kdh_history_add(h, &r) != 0) goto bad;
    }
    cJSON_Delete(o);
    return 0;
bad:
    cJSON_Delete(o);
    kdh_history_free(h);
    return kdh__err(err, "%s: the history in its metadata is not valid", what);
}

typedef struct write_ctx {
    const kdh_history *h;
    const char *path;
    bool json;
} write_ctx;

static int write_history(FILE *f, void *vctx, kdh_error *err)
{
    write_ctx *ctx = vctx;
    if (ctx->json) {
        cJSON *o = to_json(ctx->h);
        char *s = o ? cJSON_Print(o) : NULL;
        cJSON_Delete(o);
        if (!s) return kdh__err(err, "%s: out of memory", ctx->path);
        int rc = kdh_fwrite_all(f, s, strlen(s), ctx->path, err);
        free(s);
        return rc == 0 ? kdh_fwrite_all(f, "\n", 1, ctx->path, err) : rc;
    }
    if (fprintf(f, "epoch") < 0) goto fail;
    for (int c = 0; c < ncolumns(ctx->h); c++) {
        char name[80];
        if (fprintf(f, ",%s", column_name(ctx->h, c, name)) < 0) goto fail;
    }
    if (fputc('\n', f) == EOF) goto fail;
    for (int i = 0; i < ctx->h->count; i++) {
        kdh_epoch_log *r = &ctx->h->rows[i];
        if (fprintf(f, "%d", r->epoch) < 0) goto fail;
        for (int c = 0; c < ncolumns(ctx->h); c++) {
            double v = *column(r, ctx->h, c);
            if ((isfinite(v) ? fprintf(f, ",%.9g", v) : fprintf(f, ",")) < 0) goto fail;
        }
        if (fputc('\n', f) == EOF) goto fail;
    }
    return 0;
fail:
    return kdh__err(err, "%s: write failed", ctx->path);
}

int kdh_history_write(const char *path, const kdh_history *h, kdh_error *err)
{
    write_ctx ctx = {h, path, ends_with(path, ".json") || ends_with(path, ".JSON")};
    return kdh_atomic_write(path, write_history, &ctx, err);
}
