/* tfjs_model.c — a TensorFlow.js Layers model: model.json and its weight
 * shards (tfjs_model.h).
 *
 * model.json holds `modelTopology` — the Keras config itself (what
 * TensorFlow.js's model.save writes) or {"model_config": config, ...}
 * (what tensorflowjs_converter writes from a Keras file) — and
 * `weightsManifest`: groups, each a list of shard files (`paths`, beside
 * model.json) whose bytes, concatenated, hold the group's weights one after
 * another, little-endian, in the order listed. Only float32 weights without
 * quantization are read. The shards are named by model.json, an untrusted
 * file: a path must be a plain name in model.json's directory. */
#include "tfjs_model.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_JSON ((size_t)64 << 20)
#define MAX_TOTAL_BYTES ((uint64_t)4 << 30)

#define fail kx_fail

bool kx_is_tfjs_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    int c;
    while ((c = fgetc(f)) == ' ' || c == '\t' || c == '\n' || c == '\r') {}
    fclose(f);
    return c == '{';
}

/* A whole file of at most `max` bytes (malloc'd, NUL-terminated). */
static char *slurp(const char *path, size_t max, size_t *len, kdh_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(err, path, "cannot read it: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        fail(err, path, "not a regular file");
        return NULL;
    }
    if ((uint64_t)st.st_size > max) {
        fclose(f);
        fail(err, path, "larger than %zu MiB", max >> 20);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (!buf || n != (size_t)st.st_size) {
        free(buf);
        fail(err, path, buf ? "cannot read it whole" : "out of memory");
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* One manifest group: its shards' bytes, then its weights cut from them. */
static int read_group(const cJSON *group, const char *dir, const char *path, uint64_t *total, kdh_tensor_list *list,
                      kdh_error *err)
{
    const cJSON *paths = cJSON_GetObjectItemCaseSensitive(group, "paths");
    const cJSON *weights = cJSON_GetObjectItemCaseSensitive(group, "weights");
    if (!cJSON_IsArray(paths) || !cJSON_IsArray(weights)) return fail(err, path, "a weightsManifest group without paths or weights");
    /* what the weights need, before any shard is read */
    uint64_t need = 0;
    for (const cJSON *w = weights->child; w; w = w->next) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(w, "name"), *shape = cJSON_GetObjectItemCaseSensitive(w, "shape");
        const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(w, "dtype");
        if (!cJSON_IsString(name) || !cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > KDH_MAX_RANK)
            return fail(err, path, "a weight without a name or with a bad shape in weightsManifest");
        if (!cJSON_IsString(dtype) || strcmp(dtype->valuestring, "float32"))
            return fail(err, path, "weight \"%.200s\": dtype %s (kdsl imports float32 weights)", name->valuestring,
                        cJSON_IsString(dtype) ? dtype->valuestring : "?");
        if (cJSON_GetObjectItemCaseSensitive(w, "quantization"))
            return fail(err, path, "weight \"%.200s\" is quantized (kdsl imports float32 weights)", name->valuestring);
        uint64_t elems = 1;
        for (const cJSON *d = shape->child; d; d = d->next) {
            if (!cJSON_IsNumber(d) || d->valuedouble < 1 || d->valuedouble > 1e9 || d->valuedouble != (double)(int64_t)d->valuedouble ||
                elems > MAX_TOTAL_BYTES / (uint64_t)d->valuedouble)
                return fail(err, path, "weight \"%.200s\": a bad shape", name->valuestring);
            elems *= (uint64_t)d->valuedouble;
        }
        need += 4 * elems;
        if (need > MAX_TOTAL_BYTES || (*total += 4 * elems) > MAX_TOTAL_BYTES)
            return fail(err, path, "the weights add up to more than %llu GiB", (unsigned long long)(MAX_TOTAL_BYTES >> 30));
    }
    unsigned char *bytes = malloc(need + 1);
    if (!bytes) return fail(err, path, "out of memory");
    uint64_t have = 0;
    int rc = 0;
    for (const cJSON *p = paths->child; p && rc == 0; p = p->next) {
        if (!cJSON_IsString(p) || !p->valuestring[0] || strchr(p->valuestring, '/') || strchr(p->valuestring, '\\') ||
            !strcmp(p->valuestring, ".") || !strcmp(p->valuestring, "..")) {
            rc = fail(err, path, "weight shard \"%.200s\": shards must be plain file names beside model.json",
                      cJSON_IsString(p) ? p->valuestring : "?");
            break;
        }
        char *shard = malloc(strlen(dir) + strlen(p->valuestring) + 2);
        if (!shard) {
            rc = fail(err, path, "out of memory");
            break;
        }
        sprintf(shard, "%s%s", dir, p->valuestring);
        size_t len = 0;
        char *data = slurp(shard, MAX_TOTAL_BYTES, &len, err);
        if (!data) rc = -1;
        else if (have + len > need)
            rc = fail(err, shard, "the shards hold more bytes than weightsManifest's weights (%llu)", (unsigned long long)need);
        else {
            memcpy(bytes + have, data, len);
            have += len;
        }
        free(data);
        free(shard);
    }
    if (rc == 0 && have != need)
        rc = fail(err, path, "the weight shards hold %llu bytes, weightsManifest's weights %llu", (unsigned long long)have,
                  (unsigned long long)need);
    uint64_t at = 0;
    for (const cJSON *w = weights->child; w && rc == 0; w = w->next) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(w, "name"), *shape = cJSON_GetObjectItemCaseSensitive(w, "shape");
        int64_t dims[KDH_MAX_RANK];
        int rank = 0;
        for (const cJSON *d = shape->child; d; d = d->next) dims[rank++] = (int64_t)d->valuedouble;
        if (kdh_list_find(list, name->valuestring)) {
            rc = fail(err, path, "weight \"%.200s\" appears twice", name->valuestring);
            break;
        }
        kdh_tensor *t = kdh_list_add(list, name->valuestring, KDH_F32, rank, dims, err);
        if (!t) {
            rc = -1;
            break;
        }
        for (size_t i = 0; i < t->nbytes / 4; i++) {   /* little-endian on any host */
            const unsigned char *b = bytes + at + 4 * i;
            uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
            memcpy((float *)t->data + i, &u, 4);
        }
        at += t->nbytes;
    }
    free(bytes);
    return rc;
}

int kx_read_tfjs(const char *path, kx_keras_file *out, kdh_error *err)
{
    memset(out, 0, sizeof *out);
    kdh_list_init(&out->weights);
    size_t len;
    char *text = slurp(path, MAX_JSON, &len, err);
    if (!text) return -1;
    int rc = kx_read_tfjs_text(text, len, path, out, err);
    free(text);
    return rc;
}

int kx_read_tfjs_text(const char *text, size_t len, const char *path, kx_keras_file *out, kdh_error *err)
{
    memset(out, 0, sizeof *out);
    kdh_list_init(&out->weights);
    if (len > MAX_JSON) return fail(err, path, "larger than %zu MiB", MAX_JSON >> 20);
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) return fail(err, path, "not JSON");
    int rc = 0;
    const cJSON *topo = cJSON_GetObjectItemCaseSensitive(root, "modelTopology");
    const cJSON *manifest = cJSON_GetObjectItemCaseSensitive(root, "weightsManifest");
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(topo, "model_config");   /* tensorflowjs_converter's */
    if (!config) config = topo;
    if (!cJSON_IsObject(config) || !cJSON_IsArray(manifest))
        rc = fail(err, path, "not a TensorFlow.js Layers model (no modelTopology or weightsManifest)");
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(topo, "keras_version");
    if (rc == 0 && cJSON_IsString(version) && !(out->keras_version = strdup(version->valuestring))) rc = fail(err, path, "out of memory");
    if (rc == 0 && !(out->config = cJSON_PrintUnformatted(config))) rc = fail(err, path, "out of memory");
    const char *slash = strrchr(path, '/');
    char *dir = rc == 0 ? malloc(slash ? (size_t)(slash - path) + 2 : 1) : NULL;
    if (dir) {
        size_t n = slash ? (size_t)(slash - path) + 1 : 0;
        memcpy(dir, path, n);
        dir[n] = 0;
    } else if (rc == 0)
        rc = fail(err, path, "out of memory");
    uint64_t total = 0;
    for (const cJSON *g = rc == 0 ? manifest->child : NULL; g && rc == 0; g = g->next)
        rc = read_group(g, dir, path, &total, &out->weights, err);
    free(dir);
    cJSON_Delete(root);
    if (rc != 0) kx_keras_file_free(out);
    return rc;
}
