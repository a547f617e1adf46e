/* history.c — fit()'s history (Keras' History.history): kept per epoch,
 * written as CSV or JSON, and carried inside checkpoints (train.h). */
#include "train.h"

#include "host_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
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

/* The columns, in file order. */
static const char *const columns[] = {"loss", "accuracy", "val_loss", "val_accuracy"};

static double column(const kdh_epoch_log *r, int c)
{
    switch (c) {
    case 0: return r->loss;
    case 1: return r->accuracy;
    case 2: return r->val_loss;
    default: return r->val_accuracy;
    }
}

static void set_column(kdh_epoch_log *r, int c, double v)
{
    switch (c) {
    case 0: r->loss = v; break;
    case 1: r->accuracy = v; break;
    case 2: r->val_loss = v; break;
    default: r->val_accuracy = v; break;
    }
}

static cJSON *to_json(const kdh_history *h)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON *ep = cJSON_AddArrayToObject(o, "epoch");
    if (!ep) goto fail;
    for (int i = 0; i < h->count; i++)
        if (!cJSON_AddItemToArray(ep, cJSON_CreateNumber(h->rows[i].epoch))) goto fail;
    for (int c = 0; c < 4; c++) {
        cJSON *a = cJSON_AddArrayToObject(o, columns[c]);
        if (!a) goto fail;
        for (int i = 0; i < h->count; i++) {
            double v = column(&h->rows[i], c);
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
    /* Walk the arrays side by side through their links: cJSON_GetArrayItem
     * counts from the head each time, quadratic in a 40,000-epoch history. */
    cJSON *col[4];
    for (int c = 0; c < 4; c++) {
        cJSON *a = cJSON_GetObjectItemCaseSensitive(o, columns[c]);
        col[c] = cJSON_IsArray(a) ? a->child : NULL;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, ep) {
        kdh_epoch_log r = {.loss = NAN, .accuracy = NAN, .val_loss = NAN, .val_accuracy = NAN,
                           .seconds = NAN, .samples_per_second = NAN};
        if (!cJSON_IsNumber(e)) goto bad;
        r.epoch = e->valueint;
        for (int c = 0; c < 4; c++) {
            if (cJSON_IsNumber(col[c])) set_column(&r, c, col[c]->valuedouble);
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
    if (fprintf(f, "epoch,loss,accuracy,val_loss,val_accuracy\n") < 0) goto fail;
    for (int i = 0; i < ctx->h->count; i++) {
        const kdh_epoch_log *r = &ctx->h->rows[i];
        if (fprintf(f, "%d", r->epoch) < 0) goto fail;
        for (int c = 0; c < 4; c++) {
            double v = column(r, c);
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
