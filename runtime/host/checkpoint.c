/* checkpoint.c — weights files and checkpoints (checkpoint.h). */
#include "checkpoint.h"

#include "host_internal.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define FORMAT_KEY "kdsl.format"
#define BEST_PREFIX "kdsl.best/"

/* A borrowed view of one table entry in buf, for the writer. */
static kdh_tensor view(const kdh_var *v, const float *buf)
{
    kdh_tensor t = {0};
    t.name = (char *)v->name;
    t.dtype = KDH_F32;
    t.rank = v->rank;
    for (int i = 0; i < v->rank; i++) t.shape[i] = v->shape[i];
    t.data = (void *)(buf + v->offset);
    t.nbytes = (size_t)v->elems * sizeof(float);
    return t;
}

/* Copies table entry v from the file's tensors into buf, checking it. */
static int take(const kdh_tensor_list *l, const char *path, const kdh_var *v, float *buf, kdh_error *err)
{
    const kdh_tensor *t = kdh_list_find(l, v->name);
    if (t && t->dtype != KDH_F32)
        return kdh__err(err, "%s: tensor \"%s\" has dtype %s; kdsl reads F32 weights", path, v->name,
                        kdh_dtype_name(t->dtype));
    t = kdh_list_expect(l, path, v->name, KDH_F32, v->rank, v->shape, err);
    if (!t) return -1;
    if (kdh_check_finite(t, path, err) != 0) return -1;   /* it names the tensor */
    memcpy(buf + v->offset, t->data, (size_t)v->elems * sizeof(float));
    return 0;
}

static bool in_table(const kdh_var *vars, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(vars[i].name, name)) return true;
    return false;
}

/* "W: missing tensors a, b and 3 more (the model 'x' has ...)" style lists. */
static void list_names(char *buf, size_t size, const char **names, int n)
{
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < n && i < 6 && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s\"%s\"", i ? ", " : "", names[i]);
    if (n > 6 && at < size) snprintf(buf + at, size - at, " and %d more", n - 6);
}

/* Every name of the file must be in one of the tables (slots only when
 * `slots_ok`), and every name of the tables in the file. */
static int check_names(const kdh_tensor_list *l, const char *path, const kdh_model *m, bool want_slots,
                       bool slots_ok, kdh_error *err)
{
    const char **names = malloc((l->count + (size_t)m->nparams + (size_t)m->nslots + 1) * sizeof *names);
    if (!names) return kdh__err(err, "%s: out of memory", path);
    int n = 0, rc = 0;
    char list[1024];
    for (int i = 0; i < m->nparams; i++)
        if (!kdh_list_find(l, m->params[i].name)) names[n++] = m->params[i].name;
    for (int i = 0; want_slots && i < m->nslots; i++)
        if (!kdh_list_find(l, m->slots[i].name)) names[n++] = m->slots[i].name;
    if (n) {
        list_names(list, sizeof list, names, n);
        rc = kdh__err(err, "%s: missing tensor%s %s, which model '%s' needs", path, n == 1 ? "" : "s", list, m->name);
        goto done;
    }
    for (size_t i = 0; i < l->count; i++) {
        const char *name = l->items[i].name;
        if (in_table(m->params, m->nparams, name)) continue;
        if (slots_ok) continue;
        if (want_slots && in_table(m->slots, m->nslots, name)) continue;
        if (want_slots && !strncmp(name, BEST_PREFIX, strlen(BEST_PREFIX)) &&
            in_table(m->params, m->nparams, name + strlen(BEST_PREFIX)))
            continue;   /* restore_best_weights' copy */
        names[n++] = name;
    }
    if (n) {
        list_names(list, sizeof list, names, n);
        rc = kdh__err(err, "%s: tensor%s %s not in model '%s' (its names are like \"%s\")", path, n == 1 ? "" : "s",
                      list, m->name, m->nparams ? m->params[0].name : "dense/kernel");
    }
done:
    free(names);
    return rc;
}

static bool is_checkpoint(const kdh_tensor_list *l)
{
    const char *f = kdh_list_get_meta(l, FORMAT_KEY);
    return f && !strcmp(f, "checkpoint");
}

int kdh_weights_load(const char *path, const kdh_model *m, float *params, kdh_error *err)
{
    kdh_tensor_list l;
    if (kdh_safetensors_read(path, NULL, &l, err) != 0) return -1;
    int rc = check_names(&l, path, m, false, is_checkpoint(&l), err);
    for (int i = 0; rc == 0 && i < m->nparams; i++) rc = take(&l, path, &m->params[i], params, err);
    kdh_list_free(&l);
    return rc;
}

int kdh_weights_save(const char *path, const kdh_model *m, const float *params, kdh_error *err)
{
    kdh_tensor *ts = calloc((size_t)m->nparams + 1, sizeof *ts);
    if (!ts) return kdh__err(err, "%s: out of memory", path);
    for (int i = 0; i < m->nparams; i++) ts[i] = view(&m->params[i], params);
    kdh_meta meta[1] = {{(char *)"kdsl.model", (char *)m->name}};
    int rc = kdh_safetensors_write(path, ts, (size_t)m->nparams, meta, 1, err);
    free(ts);
    return rc;
}

/* ---- checkpoints ---------------------------------------------------------------------- */

int kdh_checkpoint_save(const char *path, const kdh_model *m, const float *params, const float *opt_state,
                        const kdh_ckpt_state *st, kdh_error *err)
{
    size_t n = (size_t)m->nparams + (size_t)m->nslots, nbest = st->best ? (size_t)m->nparams : 0;
    kdh_tensor *ts = calloc(n + nbest + 1, sizeof *ts);
    char **best_names = calloc(nbest + 1, sizeof *best_names);
    char *hist = kdh_history_to_json(&st->history);
    if (!ts || !hist || !best_names) {
        free(ts);
        free(hist);
        free(best_names);
        return kdh__err(err, "%s: out of memory", path);
    }
    for (int i = 0; i < m->nparams; i++) ts[i] = view(&m->params[i], params);
    for (int i = 0; i < m->nslots; i++) ts[m->nparams + i] = view(&m->slots[i], opt_state);
    for (size_t i = 0; i < nbest; i++) {
        ts[n + i] = view(&m->params[i], st->best);
        size_t len = strlen(BEST_PREFIX) + strlen(m->params[i].name) + 1;
        if (!(best_names[i] = malloc(len))) {
            for (size_t j = 0; j < i; j++) free(best_names[j]);
            free(ts);
            free(hist);
            free(best_names);
            return kdh__err(err, "%s: out of memory", path);
        }
        snprintf(best_names[i], len, "%s%s", BEST_PREFIX, m->params[i].name);
        ts[n + i].name = best_names[i];
    }
    char epoch[32], step[32], seed[32], rng[32], batch[32];
    snprintf(epoch, sizeof epoch, "%d", st->epoch);
    snprintf(step, sizeof step, "%" PRIu64, st->step);
    snprintf(seed, sizeof seed, "%" PRIu64, st->seed);
    snprintf(rng, sizeof rng, "%016" PRIx64, st->shuffle_rng);
    snprintf(batch, sizeof batch, "%d", st->batch_size);
    kdh_meta meta[] = {
        {(char *)FORMAT_KEY, (char *)"checkpoint"},
        {(char *)"kdsl.model", (char *)m->name},
        {(char *)"kdsl.epoch", epoch},
        {(char *)"kdsl.step", step},
        {(char *)"kdsl.seed", seed},
        {(char *)"kdsl.shuffle_rng", rng},
        {(char *)"kdsl.batch_size", batch},
        {(char *)"kdsl.optimizer", (char *)(m->optimizer ? m->optimizer : "")},
        {(char *)"kdsl.history", hist},
        {(char *)"kdsl.callbacks", (char *)st->callbacks},
    };
    size_t nmeta = sizeof meta / sizeof meta[0] - (st->callbacks[0] ? 0 : 1);
    int rc = kdh_safetensors_write(path, ts, n + nbest, meta, nmeta, err);
    for (size_t i = 0; i < nbest; i++) free(best_names[i]);
    free(best_names);
    free(ts);
    free(hist);
    return rc;
}

/* A number of the metadata in [min, max]: the bounds the command line puts
 * on the same setting (--epochs, --batch-size), so a file cannot ask for what
 * a flag may not. */
static int meta_u64(const kdh_tensor_list *l, const char *path, const char *key, int base, uint64_t min,
                    uint64_t max, uint64_t *out, kdh_error *err)
{
    const char *v = kdh_list_get_meta(l, key);
    if (!v) return kdh__err(err, "%s: checkpoint lacks \"%s\"", path, key);
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, base);
    if (!*v || *end || errno || v[0] == '-' || v[0] == '+' || isspace((unsigned char)v[0]))
        return kdh__err(err, "%s: checkpoint's \"%s\" is not a valid number: \"%.40s\"", path, key, v);
    if (x < min || x > max)
        return kdh__err(err, "%s: checkpoint's \"%s\" is %llu, outside %" PRIu64 "..%" PRIu64, path, key, x, min,
                        max);
    *out = x;
    return 0;
}

static int read_state(const kdh_tensor_list *l, const char *path, kdh_ckpt_state *st, kdh_error *err)
{
    memset(st, 0, sizeof *st);
    if (!is_checkpoint(l))
        return kdh__err(err, "%s: not a kdsl checkpoint (no \"%s\": \"checkpoint\" in its metadata); "
                             "a weights file goes to --weights",
                        path, FORMAT_KEY);
    uint64_t epoch, batch;
    if (meta_u64(l, path, "kdsl.epoch", 10, 0, KDH_MAX_EPOCHS, &epoch, err) != 0) return -1;
    if (meta_u64(l, path, "kdsl.step", 10, 0, UINT64_MAX, &st->step, err) != 0) return -1;
    if (meta_u64(l, path, "kdsl.seed", 10, 0, INT64_MAX, &st->seed, err) != 0) return -1;   /* as --seed */
    if (meta_u64(l, path, "kdsl.shuffle_rng", 16, 0, UINT64_MAX, &st->shuffle_rng, err) != 0) return -1;
    if (meta_u64(l, path, "kdsl.batch_size", 10, 1, KDH_MAX_BATCH_SIZE, &batch, err) != 0) return -1;
    st->epoch = (int)epoch;
    st->batch_size = (int)batch;
    const char *h = kdh_list_get_meta(l, "kdsl.history");
    if (h && kdh_history_from_json(h, &st->history, path, err) != 0) return -1;
    const char *cb = kdh_list_get_meta(l, "kdsl.callbacks");
    if (cb) snprintf(st->callbacks, sizeof st->callbacks, "%s", cb);
    return 0;
}

int kdh_checkpoint_load_best(const char *path, const kdh_model *m, float *best, kdh_error *err)
{
    kdh_tensor_list l;
    if (kdh_safetensors_read(path, NULL, &l, err) != 0) return -1;
    int rc = 0;
    for (int i = 0; rc == 0 && i < m->nparams; i++) {
        kdh_var v = m->params[i];
        char name[1024];
        snprintf(name, sizeof name, "%s%s", BEST_PREFIX, v.name);
        v.name = name;
        rc = take(&l, path, &v, best, err);
    }
    kdh_list_free(&l);
    return rc;
}

int kdh_checkpoint_peek(const char *path, kdh_ckpt_state *st, kdh_error *err)
{
    kdh_tensor_list l;
    memset(st, 0, sizeof *st);
    if (kdh_safetensors_read(path, NULL, &l, err) != 0) return -1;
    int rc = read_state(&l, path, st, err);
    kdh_list_free(&l);
    return rc;
}

int kdh_checkpoint_load(const char *path, const kdh_model *m, float *params, float *opt_state, kdh_ckpt_state *st,
                        kdh_error *err)
{
    kdh_tensor_list l;
    memset(st, 0, sizeof *st);
    if (kdh_safetensors_read(path, NULL, &l, err) != 0) return -1;
    int rc = read_state(&l, path, st, err);
    const char *model = kdh_list_get_meta(&l, "kdsl.model");
    if (rc == 0 && model && strcmp(model, m->name) != 0)
        rc = kdh__err(err, "%s: a checkpoint of model '%s', not of '%s'", path, model, m->name);
    if (rc == 0) rc = check_names(&l, path, m, true, false, err);
    for (int i = 0; rc == 0 && i < m->nparams; i++) rc = take(&l, path, &m->params[i], params, err);
    for (int i = 0; rc == 0 && i < m->nslots; i++) rc = take(&l, path, &m->slots[i], opt_state, err);
    kdh_list_free(&l);
    if (rc != 0) kdh_history_free(&st->history);
    return rc;
}
