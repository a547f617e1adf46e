/* keras_zip.c — Keras 3's .keras archives through libzip (keras_zip.h).
 *
 * What Keras 3's saving_lib writes (`_save_model_to_fileobj`): metadata.json
 * ({"keras_version", "date_saved"}), config.json (serialize_keras_object's
 * JSON of the model) and model.weights.h5 (H5IOStore; keras3_layout.c says
 * where each variable is), stored uncompressed, and an assets/ directory
 * for layers that save files (none of kdsl's). Its loader reads config.json
 * and the weights; so does kdsl, with metadata.json's version when there is
 * one.
 *
 * The archive is read as hostile. libzip checks the local headers against
 * the central directory (ZIP_CHECKCONS) and each member's CRC; kdsl refuses
 * member names that would leave the archive (absolute, "..", backslashes,
 * drive letters: Keras' own loader extracts every member to a temporary
 * directory) and names given twice, and before allocating a member it
 * checks its declared size against a limit and, for deflate, against the
 * most deflate can expand (1032:1); then it reads no more than the declared
 * size, and a member that holds more or less is an error. Members are read
 * into memory: nothing is extracted to disk. */
#include "keras_zip.h"

#include "keras_h5.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zip.h>

#define MAX_CONFIG ((uint64_t)64 << 20)
#define MAX_METADATA ((uint64_t)1 << 20)
#define DEFAULT_MAX_WEIGHTS ((uint64_t)4 << 30)
#define H5_OVERHEAD ((uint64_t)64 << 20)   /* an HDF5 file's own bytes beside its data */
#define MAX_MEMBERS 10000
#define DEFLATE_MAX_RATIO 1032

#define fail kx_fail

bool kx_is_zip(const char *path)
{
    unsigned char head[4];
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    bool ok = fread(head, 1, 4, f) == 4 && !memcmp(head, "PK\3\4", 4);
    fclose(f);
    return ok;
}

void kx_keras_zip_free(kx_keras_zip *z)
{
    free(z->config);
    free(z->keras_version);
    free(z->weights);
    memset(z, 0, sizeof *z);
}

/* A member name that stays inside the archive when extracted. */
static bool inside(const char *n)
{
    if (!n[0] || n[0] == '/' || strchr(n, '\\') || (isalpha((unsigned char)n[0]) && n[1] == ':')) return false;
    for (const char *p = n; p; p = strchr(p, '/') ? strchr(p, '/') + 1 : NULL)
        if (p[0] == '.' && p[1] == '.' && (p[2] == '/' || p[2] == 0)) return false;
    return true;
}

static int by_name(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* Every member's name: inside the archive, none twice. */
static int check_names(zip_t *za, zip_int64_t n, const char *name, kdh_error *err)
{
    const char **names = calloc((size_t)n + 1, sizeof *names);
    if (!names) return fail(err, name, "out of memory");
    int rc = 0;
    for (zip_int64_t i = 0; i < n && rc == 0; i++) {
        names[i] = zip_get_name(za, (zip_uint64_t)i, ZIP_FL_ENC_RAW);
        if (!names[i]) rc = fail(err, name, "member %lld has no name (a damaged archive?)", (long long)i);
        else if (!inside(names[i]))
            rc = fail(err, name, "member \"%.200s\": a name outside the archive (absolute, with .. or a backslash)", names[i]);
    }
    if (rc == 0) {
        qsort(names, (size_t)n, sizeof *names, by_name);
        for (zip_int64_t i = 1; i < n && rc == 0; i++)
            if (!strcmp(names[i - 1], names[i])) rc = fail(err, name, "member \"%.200s\" appears twice", names[i]);
    }
    free(names);
    return rc;
}

/* Member `member` (at idx) whole, NUL-terminated, if its sizes are sound and at most `cap`. */
static int read_member(zip_t *za, zip_int64_t idx, const char *member, const char *name, uint64_t cap, char **data,
                       size_t *len, kdh_error *err)
{
    *data = NULL;
    *len = 0;
    zip_stat_t st;
    zip_stat_init(&st);
    zip_uint64_t need = ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD;
    if (zip_stat_index(za, (zip_uint64_t)idx, 0, &st) != 0 || (st.valid & need) != need)
        return fail(err, name, "%s: the archive's directory gives no sizes (a damaged archive?)", member);
    if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE)
        return fail(err, name, "%s is encrypted", member);
    if (!zip_compression_method_supported(st.comp_method, 0))
        return fail(err, name, "%s: compression method %d, which kdsl cannot read", member, (int)st.comp_method);
    if (st.size > cap)
        return fail(err, name, "%s: %llu bytes uncompressed, more than the limit of %llu MiB", member,
                    (unsigned long long)st.size, (unsigned long long)(cap >> 20));
    if (st.comp_method == ZIP_CM_STORE && st.comp_size != st.size)
        return fail(err, name, "%s: stored uncompressed, yet its directory says %llu bytes compressed and %llu not", member,
                    (unsigned long long)st.comp_size, (unsigned long long)st.size);
    if (st.comp_method == ZIP_CM_DEFLATE && st.size / DEFLATE_MAX_RATIO > st.comp_size + 1)
        return fail(err, name, "%s: %llu bytes from %llu compressed, more than deflate can expand (a compression bomb)",
                    member, (unsigned long long)st.size, (unsigned long long)st.comp_size);
    char *buf = malloc((size_t)st.size + 1);
    if (!buf) return fail(err, name, "out of memory");
    zip_file_t *zf = zip_fopen_index(za, (zip_uint64_t)idx, 0);
    if (!zf) {
        free(buf);
        return fail(err, name, "%s: %s", member, zip_strerror(za));
    }
    int rc = 0;
    uint64_t have = 0;
    while (have < st.size) {
        zip_int64_t n = zip_fread(zf, buf + have, st.size - have);
        if (n < 0) {
            rc = fail(err, name, "%s: %s (a damaged or truncated archive?)", member, zip_file_strerror(zf));
            break;
        }
        if (n == 0) break;
        have += (uint64_t)n;
    }
    if (rc == 0 && have < st.size)
        rc = fail(err, name, "%s: %llu bytes of the %llu its directory declares (a truncated archive?)", member,
                  (unsigned long long)have, (unsigned long long)st.size);
    if (rc == 0) {   /* no byte past the declared size, and the CRC checked at the end */
        char extra;
        zip_int64_t n = zip_fread(zf, &extra, 1);
        if (n > 0) rc = fail(err, name, "%s holds more than the %llu bytes its directory declares", member, (unsigned long long)st.size);
        else if (n < 0) rc = fail(err, name, "%s: %s (a damaged archive?)", member, zip_file_strerror(zf));
    }
    if (zip_fclose(zf) != 0 && rc == 0) rc = fail(err, name, "%s: a damaged member (its CRC does not match?)", member);
    if (rc != 0) {
        free(buf);
        return -1;
    }
    buf[have] = 0;
    *data = buf;
    *len = (size_t)have;
    return 0;
}

static int read_archive(zip_source_t *src, const char *name, uint64_t max_bytes, kx_keras_zip *out, kdh_error *err)
{
    memset(out, 0, sizeof *out);
    zip_error_t ze;
    zip_error_init(&ze);
    zip_t *za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze);
    if (!za) {
        int rc = zip_error_code_zip(&ze) == ZIP_ER_EXISTS ? fail(err, name, "two members of the archive have the same name")
                                                          : fail(err, name, "not a zip archive, or a damaged one (%s)", zip_error_strerror(&ze));
        zip_error_fini(&ze);
        zip_source_free(src);
        return rc;
    }
    zip_error_fini(&ze);
    zip_int64_t n = zip_get_num_entries(za, 0);
    int rc = 0;
    if (n < 0 || n > MAX_MEMBERS) rc = fail(err, name, "%lld members: at most %d", (long long)n, MAX_MEMBERS);
    if (rc == 0) rc = check_names(za, n, name, err);
    zip_int64_t config = rc == 0 ? zip_name_locate(za, "config.json", ZIP_FL_ENC_RAW) : -1;
    zip_int64_t meta = rc == 0 ? zip_name_locate(za, "metadata.json", ZIP_FL_ENC_RAW) : -1;
    zip_int64_t weights = rc == 0 ? zip_name_locate(za, "model.weights.h5", ZIP_FL_ENC_RAW) : -1;
    if (rc == 0 && config < 0) rc = fail(err, name, "no config.json in the archive: not a Keras 3 .keras file");
    if (rc == 0 && weights < 0)
        rc = fail(err, name, zip_name_locate(za, "model.weights.npz", ZIP_FL_ENC_RAW) >= 0
                                 ? "the weights are model.weights.npz; kdsl reads model.weights.h5, Keras' default"
                                 : "no model.weights.h5 in the archive: a model saved without its weights?");
    size_t len;
    if (rc == 0) rc = read_member(za, config, "config.json", name, MAX_CONFIG, &out->config, &len, err);
    if (rc == 0 && strlen(out->config) != len) rc = fail(err, name, "config.json holds a NUL byte");
    if (rc == 0 && meta >= 0) {
        char *text;
        rc = read_member(za, meta, "metadata.json", name, MAX_METADATA, &text, &len, err);
        cJSON *j = rc == 0 ? cJSON_ParseWithLength(text, len) : NULL;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "keras_version");
        if (rc == 0 && !cJSON_IsObject(j)) rc = fail(err, name, "metadata.json is not a JSON object");
        else if (cJSON_IsString(v) && strlen(v->valuestring) < 100 && !(out->keras_version = strdup(v->valuestring)))
            rc = fail(err, name, "out of memory");
        cJSON_Delete(j);
        free(text);
    }
    uint64_t cap = (max_bytes ? max_bytes : DEFAULT_MAX_WEIGHTS) + H5_OVERHEAD;
    if (rc == 0) {
        char *h5;
        rc = read_member(za, weights, "model.weights.h5", name, cap, &h5, &out->weights_len, err);
        out->weights = h5;
    }
    if (rc == 0 && (out->weights_len < 8 || memcmp(out->weights, "\x89HDF\r\n\x1a\n", 8)))
        rc = fail(err, name, "model.weights.h5 is not an HDF5 file");
    zip_discard(za);   /* also frees src */
    if (rc != 0) kx_keras_zip_free(out);
    return rc;
}

int kx_keras_zip_read_mem(const void *data, size_t len, const char *name, uint64_t max_bytes, kx_keras_zip *out,
                          kdh_error *err)
{
    memset(out, 0, sizeof *out);
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(len ? data : "", len, 0, &ze);
    zip_error_fini(&ze);
    if (!src) return fail(err, name, "out of memory");
    return read_archive(src, name, max_bytes, out, err);
}

int kx_read_keras_zip(const char *path, double seconds, kx_keras_file *out, kdh_error *err)
{
    memset(out, 0, sizeof *out);
    kdh_list_init(&out->weights);
    struct stat st;
    if (stat(path, &st) != 0) return fail(err, path, "cannot read it: %s", strerror(errno));
    if (!S_ISREG(st.st_mode)) return fail(err, path, "not a regular file");
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_file_create(path, 0, -1, &ze);
    if (!src) {
        int rc = fail(err, path, "cannot read it: %s", zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return rc;
    }
    zip_error_fini(&ze);
    kx_keras_zip z;
    if (read_archive(src, path, 0, &z, err) != 0) return -1;
    char *what = malloc(strlen(path) + 32);
    if (!what) {
        kx_keras_zip_free(&z);
        return fail(err, path, "out of memory");
    }
    sprintf(what, "%s: model.weights.h5", path);
    int rc = kx_read_keras3_weights_isolated(z.weights, z.weights_len, what, seconds, &out->weights, err);
    free(what);
    if (rc == 0) {
        out->config = z.config;
        out->keras_version = z.keras_version;
        z.config = z.keras_version = NULL;
    }
    kx_keras_zip_free(&z);
    if (rc != 0) kx_keras_file_free(out);
    return rc;
}

/* ---- writing ------------------------------------------------------------- */

typedef struct bytes {
    const char *path;
    void *data;
    size_t len;
} bytes;

static int write_bytes(FILE *f, void *ctx, kdh_error *err)
{
    const bytes *b = ctx;
    return kdh_fwrite_all(f, b->data, b->len, b->path, err);
}

/* One member, stored (zipfile's default, which saving_lib keeps). */
static bool add_member(zip_t *za, const char *member, const void *data, size_t len)
{
    zip_source_t *s = zip_source_buffer(za, data, len, 0);
    if (!s) return false;
    zip_int64_t idx = zip_file_add(za, member, s, ZIP_FL_ENC_UTF_8);
    if (idx < 0) {
        zip_source_free(s);
        return false;
    }
    return zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_STORE, 0) == 0;
}

int kx_write_keras_zip(const char *path, const char *config, const void *weights_h5, size_t weights_len, kdh_error *err)
{
    char metadata[200], when[64];
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%d@%H:%M:%S", localtime_r(&now, &tm));
    snprintf(metadata, sizeof metadata, "{\"keras_version\": \"kdsl 0.1.0\", \"date_saved\": \"%s\"}", when);
    zip_error_t ze;
    zip_error_init(&ze);
    /* the archive is built in memory, then written whole and atomically */
    zip_source_t *src = zip_source_buffer_create(NULL, 0, 0, &ze);
    if (src) zip_source_keep(src);           /* a reference for zip_close, one for reading the result */
    zip_t *za = src ? zip_open_from_source(src, ZIP_TRUNCATE, &ze) : NULL;
    bool ok = za != NULL;
    if (!za && src) zip_source_free(src);    /* the reference the archive did not take */
    ok = ok && add_member(za, "metadata.json", metadata, strlen(metadata)) &&
         add_member(za, "config.json", config, strlen(config)) &&
         add_member(za, "model.weights.h5", weights_h5, weights_len);
    if (za && ok) ok = zip_close(za) == 0;
    else if (za) zip_discard(za);
    bytes b = {path, NULL, 0};
    zip_stat_t st;
    if (ok && zip_source_stat(src, &st) == 0 && (st.valid & ZIP_STAT_SIZE) && zip_source_open(src) == 0) {
        b.data = malloc(st.size + 1);
        zip_int64_t n = b.data ? zip_source_read(src, b.data, st.size) : -1;
        ok = n >= 0 && (zip_uint64_t)n == st.size;
        b.len = (size_t)st.size;
        zip_source_close(src);
    } else
        ok = false;
    if (src) zip_source_free(src);
    zip_error_fini(&ze);
    int rc = ok ? kdh_atomic_write(path, write_bytes, &b, err) : fail(err, path, "libzip failed building the archive");
    free(b.data);
    return rc;
}
