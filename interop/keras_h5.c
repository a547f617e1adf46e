/* keras_h5.c — a legacy Keras HDF5 file through libhdf5 (keras_h5.h).
 *
 * Layout (Keras 2's hdf5_format.py, save_model_to_hdf5):
 *   /                      attributes model_config (JSON), keras_version, backend
 *   /model_weights         attribute layer_names: every layer, in order
 *   /model_weights/L       attribute weight_names: "L/kernel:0", "L/bias:0", ...
 *   /model_weights/L/W     a dataset per weight name (W may hold '/')
 * A file written by save_weights has the layer groups at the root instead of
 * under /model_weights, and no model_config. Strings are fixed- or
 * variable-length, attributes scalars or 1-D arrays. */
#include "keras_h5.h"

#include "keras_export.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Limits on what a hostile file can make us allocate. */
#define MAX_STRING ((size_t)64 << 20)    /* the config JSON */
#define MAX_NAMES 100000                 /* layers, weights per layer */
#define MAX_WEIGHT_BYTES ((uint64_t)2 << 30)
#define MAX_TOTAL_BYTES ((uint64_t)4 << 30)

#define fail kx_fail

bool kx_is_hdf5(const char *path)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char head[8];
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    bool ok = fread(head, 1, 8, f) == 8 && memcmp(head, sig, 8) == 0;
    fclose(f);
    return ok;
}

/* ---- strings ------------------------------------------------------------ */

/* The strings of attribute `name` of object `obj`: a scalar (n = 1) or a 1-D
 * array, fixed- or variable-length. Each malloc'd; *out malloc'd. */
static int read_strings(hid_t obj, const char *name, const char *path, const char *where, char ***out, size_t *n,
                        kdh_error *err)
{
    *out = NULL;
    *n = 0;
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    if (attr < 0) return fail(err, path, "%s has no attribute %s", where, name);
    hid_t type = H5Aget_type(attr), space = H5Aget_space(attr);
    int rc = -1;
    char **strs = NULL;
    size_t count = 0;
    if (type < 0 || space < 0) {
        fail(err, path, "%s: cannot read attribute %s", where, name);
        goto done;
    }
    if (H5Sget_simple_extent_npoints(space) == 0) {   /* no weights: numpy's empty array, float64 */
        strs = calloc(1, sizeof *strs);
        rc = strs ? 0 : fail(err, path, "out of memory");
        goto done;
    }
    if (H5Tget_class(type) != H5T_STRING) {
        fail(err, path, "%s: attribute %s is not a string", where, name);
        goto done;
    }
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t dims[1] = {1};
    if (rank < 0 || rank > 1 || (rank == 1 && H5Sget_simple_extent_dims(space, dims, NULL) != 1) ||
        dims[0] > MAX_NAMES) {
        fail(err, path, "%s: attribute %s is not a string or a list of at most %d strings", where, name, MAX_NAMES);
        goto done;
    }
    count = (size_t)dims[0];
    strs = calloc(count + 1, sizeof *strs);
    if (!strs) {
        fail(err, path, "out of memory");
        goto done;
    }
    if (H5Tis_variable_str(type) > 0) {
        hid_t mem = H5Tcopy(H5T_C_S1);
        H5Tset_size(mem, H5T_VARIABLE);
        H5Tset_cset(mem, H5Tget_cset(type));
        char **v = calloc(count + 1, sizeof *v);
        if (v && H5Aread(attr, mem, v) >= 0) {
            rc = 0;
            for (size_t i = 0; i < count && rc == 0; i++) {
                if (!v[i] || strlen(v[i]) > MAX_STRING) rc = fail(err, path, "%s: attribute %s: a bad string", where, name);
                else if (!(strs[i] = strdup(v[i]))) rc = fail(err, path, "out of memory");
            }
            H5Dvlen_reclaim(mem, space, H5P_DEFAULT, v);
        } else
            fail(err, path, "%s: cannot read attribute %s", where, name);
        free(v);
        H5Tclose(mem);
    } else {
        size_t len = H5Tget_size(type);
        if (len == 0 || len > MAX_STRING || count * len > MAX_STRING) {
            fail(err, path, "%s: attribute %s has strings of a bad size", where, name);
            goto done;
        }
        hid_t mem = H5Tcopy(type);
        char *buf = calloc(count * len + 1, 1);
        if (buf && H5Aread(attr, mem, buf) >= 0) {
            rc = 0;
            for (size_t i = 0; i < count && rc == 0; i++) {
                strs[i] = malloc(len + 1);
                if (!strs[i]) rc = fail(err, path, "out of memory");
                else {
                    memcpy(strs[i], buf + i * len, len);
                    strs[i][len] = 0;   /* null-padded or space-padded: trim the spaces */
                    for (size_t k = strlen(strs[i]); k > 0 && strs[i][k - 1] == ' '; k--) strs[i][k - 1] = 0;
                }
            }
        } else
            fail(err, path, "%s: cannot read attribute %s", where, name);
        free(buf);
        H5Tclose(mem);
    }
done:
    if (rc != 0 && strs) {
        for (size_t i = 0; i < count; i++) free(strs[i]);
        free(strs);
        strs = NULL;
        count = 0;
    }
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    H5Aclose(attr);
    *out = strs;
    *n = count;
    return rc;
}

static void free_strings(char **s, size_t n)
{
    for (size_t i = 0; s && i < n; i++) free(s[i]);
    free(s);
}

/* One string attribute (a scalar, or a list of one). */
static char *read_string(hid_t obj, const char *name, const char *path, const char *where, kdh_error *err)
{
    char **s;
    size_t n;
    if (read_strings(obj, name, path, where, &s, &n, err) != 0) return NULL;
    if (n != 1) {
        free_strings(s, n);
        fail(err, path, "%s: attribute %s holds %zu strings, not one", where, name, n);
        return NULL;
    }
    char *one = s[0];
    free(s);
    return one;
}

/* ---- weights ------------------------------------------------------------ */

/* Dataset `dpath` as an F32 tensor named `name` appended to the list. */
static int read_weight(hid_t file, const char *dpath, const char *name, const char *path, uint64_t *total,
                       uint64_t max_total, kdh_tensor_list *list, kdh_error *err)
{
    hid_t ds = H5Dopen2(file, dpath, H5P_DEFAULT);
    if (ds < 0) return fail(err, path, "no dataset %s", dpath);
    hid_t type = H5Dget_type(ds), space = H5Dget_space(ds);
    int rc = -1;
    int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    hsize_t dims[KDH_MAX_RANK];
    int64_t shape[KDH_MAX_RANK];
    if (type < 0 || H5Tget_class(type) != H5T_FLOAT || (H5Tget_size(type) != 4 && H5Tget_size(type) != 8)) {
        fail(err, path, "%s: not a float32 or float64 dataset", dpath);
        goto done;
    }
    if (rank < 0 || rank > KDH_MAX_RANK || H5Sget_simple_extent_dims(space, dims, NULL) != rank) {
        fail(err, path, "%s: rank %d (at most %d)", dpath, rank, KDH_MAX_RANK);
        goto done;
    }
    uint64_t elems = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] == 0 || dims[i] > max_total / 4 || elems > max_total / 4 / dims[i] || elems * dims[i] > MAX_WEIGHT_BYTES / 4) {
            fail(err, path, "%s: a shape too large or empty", dpath);
            goto done;
        }
        elems *= dims[i];
        shape[i] = (int64_t)dims[i];
    }
    /* a compressed dataset can expand without bound: the total is capped whatever the storage */
    if ((*total += elems * 4) > max_total) {
        fail(err, path, "the weights add up to more than %llu MiB", (unsigned long long)(max_total >> 20));
        goto done;
    }
    kdh_tensor *t = kdh_list_add(list, name, KDH_F32, rank, shape, err);
    if (!t) goto done;
    if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) < 0) {
        fail(err, path, "%s: cannot read the data (a damaged or truncated file?)", dpath);
        goto done;
    }
    rc = 0;
done:
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    H5Dclose(ds);
    return rc;
}

/* Every weight under `root` ("/model_weights" or "/"), by layer_names and weight_names. */
static int read_weights(hid_t file, const char *root, const char *path, uint64_t max_total, kdh_tensor_list *list,
                        kdh_error *err)
{
    hid_t g = H5Gopen2(file, root, H5P_DEFAULT);
    if (g < 0) return fail(err, path, "no group %s", root);
    char **layers = NULL;
    size_t nlayers = 0;
    uint64_t total = 0;
    int rc = read_strings(g, "layer_names", path, root, &layers, &nlayers, err);
    for (size_t i = 0; i < nlayers && rc == 0; i++) {
        if (!layers[i][0] || strchr(layers[i], '/')) {
            rc = fail(err, path, "%s: a bad layer name \"%s\"", root, layers[i]);
            break;
        }
        hid_t lg = H5Gopen2(g, layers[i], H5P_DEFAULT);
        if (lg < 0) {
            rc = fail(err, path, "%s lists layer %s, which has no group", root, layers[i]);
            break;
        }
        char where[600];
        snprintf(where, sizeof where, "%s%s%s", root, strcmp(root, "/") ? "/" : "", layers[i]);
        char **names = NULL;
        size_t nnames = 0;
        rc = read_strings(lg, "weight_names", path, where, &names, &nnames, err);
        for (size_t k = 0; k < nnames && rc == 0; k++) {
            char dpath[1400], name[700];
            snprintf(dpath, sizeof dpath, "%s/%s", where, names[k]);
            snprintf(name, sizeof name, "%s", names[k]);
            size_t len = strlen(name);
            if (len > 2 && !strcmp(name + len - 2, ":0")) name[len - 2] = 0;
            if (kdh_list_find(list, name)) rc = fail(err, path, "%s: weight %s appears twice", where, name);
            else rc = read_weight(file, dpath, name, path, &total, max_total, list, err);
        }
        free_strings(names, nnames);
        H5Gclose(lg);
    }
    free_strings(layers, nlayers);
    H5Gclose(g);
    return rc;
}

/* The file's config and weights, from an open file. */
static int read_file(hid_t file, const char *path, uint64_t max_total, kx_keras_file *out, kdh_error *err)
{
    int rc = 0;
    if (H5Aexists(file, "model_config") <= 0)
        rc = fail(err, path, "no model_config attribute: a weights-only file (save_weights) has no architecture; "
                             "import the file model.save() wrote");
    if (rc == 0 && !(out->config = read_string(file, "model_config", path, "/", err))) rc = -1;
    if (rc == 0 && H5Aexists(file, "keras_version") > 0) out->keras_version = read_string(file, "keras_version", path, "/", err);
    if (rc == 0) {
        bool nested = H5Lexists(file, "/model_weights", H5P_DEFAULT) > 0;
        rc = read_weights(file, nested ? "/model_weights" : "/", path, max_total, &out->weights, err);
    }
    H5Fclose(file);
    if (rc != 0) kx_keras_file_free(out);
    return rc;
}

int kx_read_keras_h5(const char *path, kx_keras_file *out, kdh_error *err)
{
    memset(out, 0, sizeof *out);
    kdh_list_init(&out->weights);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);   /* errors come back as return values, not printed */
    if (!kx_is_hdf5(path)) return fail(err, path, "not an HDF5 file");
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) return fail(err, path, "libhdf5 cannot open it (a damaged or truncated file?)");
    return read_file(file, path, MAX_TOTAL_BYTES, out, err);
}

/* An HDF5 file image in memory, opened read-only (libhdf5's core driver
 * reads a copy of it); -1 if libhdf5 refuses it. */
static hid_t open_image(const void *data, size_t len)
{
    if (len < 8 || memcmp(data, "\x89HDF\r\n\x1a\n", 8) != 0) return -1;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), file = -1;
    if (fapl < 0) return -1;
    if (H5Pset_fapl_core(fapl, 1 << 20, 0) >= 0 && H5Pset_file_image(fapl, (void *)data, len) >= 0)
        file = H5Fopen("kdsl-image.h5", H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    return file;
}

static uint64_t max_or_default(uint64_t max_bytes) { return max_bytes && max_bytes < MAX_TOTAL_BYTES ? max_bytes : MAX_TOTAL_BYTES; }

int kx_read_keras_h5_image(const void *data, size_t len, const char *name, uint64_t max_bytes, kx_keras_file *out,
                           kdh_error *err)
{
    memset(out, 0, sizeof *out);
    kdh_list_init(&out->weights);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = open_image(data, len);
    if (file < 0) return fail(err, name, "libhdf5 cannot open it (not HDF5, or a damaged or truncated file?)");
    return read_file(file, name, max_or_default(max_bytes), out, err);
}

/* ---- Keras 3's model.weights.h5 -------------------------------------------
 * saving_lib's H5IOStore: a group per saveable object, each with a `vars`
 * group of datasets "0", "1", ... (layers/dense/vars/0). The tree is walked
 * by hard links only (a soft or external link could point anywhere, even
 * at another file), each object named by one link only (a group linked
 * twice could hold itself), at most 32 deep and 100,000 links in all.
 * Datasets under layers/ are
 * the layers' variables and must be `.../vars/<i>`; the rest (optimizer/,
 * metrics) is not the model's and is skipped. */

#define MAX_DEPTH 32

typedef struct k3_walk {
    hid_t file;
    const char *path;
    uint64_t total, max_total;
    long links;
    kdh_tensor_list *list;
    kdh_error *err;
} k3_walk;

typedef struct k3_names {
    char **names;
    size_t n, cap;
    bool soft;          /* a link that is not a hard one */
    bool too_many;
} k3_names;

static herr_t collect_link(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    (void)g;
    k3_names *c = data;
    if (info->type != H5L_TYPE_HARD) {
        c->soft = true;
        return 1;   /* stop */
    }
    if (c->n >= MAX_NAMES) {
        c->too_many = true;
        return 1;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        char **names = realloc(c->names, cap * sizeof *names);
        if (!names) return -1;
        c->names = names;
        c->cap = cap;
    }
    if (!(c->names[c->n] = strdup(name))) return -1;
    c->n++;
    return 0;
}

/* How many hard links name object o (0 if libhdf5 cannot tell). */
static unsigned hard_links(hid_t o)
{
#if H5_VERSION_GE(1, 12, 0)
    H5O_info2_t info;
    return H5Oget_info3(o, &info, H5O_INFO_BASIC) >= 0 ? info.rc : 0;
#else
    H5O_info_t info;
    return H5Oget_info2(o, &info, H5O_INFO_BASIC) >= 0 ? info.rc : 0;
#endif
}

static bool all_digits(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= 6 && strspn(s, "0123456789") == n && (n == 1 || s[0] != '0');
}

static int walk_group(k3_walk *w, hid_t g, const char *gpath, int depth)
{
    if (depth > MAX_DEPTH) return fail(w->err, w->path, "%s: groups nested more than %d deep", gpath, MAX_DEPTH);
    k3_names c = {0};
    hsize_t at = 0;
    herr_t it = H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, &at, collect_link, &c);
    int rc = 0;
    if (c.soft) rc = fail(w->err, w->path, "%s holds a soft or external link (Keras writes none)", gpath[0] ? gpath : "/");
    else if (c.too_many || (w->links += (long)c.n) > MAX_NAMES)
        rc = fail(w->err, w->path, "more than %d objects", MAX_NAMES);
    else if (it < 0) rc = fail(w->err, w->path, "%s: cannot list it (a damaged file?)", gpath[0] ? gpath : "/");
    for (size_t i = 0; i < c.n && rc == 0; i++) {
        const char *name = c.names[i];
        size_t len = strlen(gpath) + strlen(name) + 2;
        char *child = malloc(len);
        if (!child) {
            rc = fail(w->err, w->path, "out of memory");
            break;
        }
        snprintf(child, len, "%s%s%s", gpath, gpath[0] ? "/" : "", name);
        hid_t o = H5Oopen(g, name, H5P_DEFAULT);
        H5I_type_t type = o >= 0 ? H5Iget_type(o) : H5I_BADID;
        unsigned links = o >= 0 ? hard_links(o) : 0;
        if (o < 0) rc = fail(w->err, w->path, "%s: cannot open it (a damaged file?)", child);
        else if (links != 1)   /* a group linked twice could hold itself: the walk would go round */
            rc = fail(w->err, w->path, "%s: an object with %u names (Keras links each once)", child, links);
        else if (type == H5I_GROUP) rc = walk_group(w, o, child, depth + 1);
        else if (type == H5I_DATASET && !strncmp(child, "layers/", 7)) {
            const char *slash = strrchr(gpath, '/');
            const char *parent = slash ? slash + 1 : gpath;
            if (strcmp(parent, "vars") || !all_digits(name))
                rc = fail(w->err, w->path, "dataset %s: a layer's variables are datasets vars/0, vars/1, ...", child);
            else if (kdh_list_find(w->list, child))
                rc = fail(w->err, w->path, "dataset %s appears twice", child);
            else
                rc = read_weight(w->file, child, child, w->path, &w->total, w->max_total, w->list, w->err);
        }
        if (o >= 0) H5Oclose(o);
        free(child);
    }
    for (size_t i = 0; i < c.n; i++) free(c.names[i]);
    free(c.names);
    return rc;
}

static int read_keras3_weights(hid_t file, const char *path, uint64_t max_total, kdh_tensor_list *out, kdh_error *err)
{
    k3_walk w = {.file = file, .path = path, .max_total = max_total, .list = out, .err = err};
    int rc = walk_group(&w, file, "", 0);
    if (rc == 0 && H5Lexists(file, "layers", H5P_DEFAULT) <= 0)
        rc = fail(err, path, "no group layers: not the weights of a Keras 3 model");
    H5Fclose(file);
    if (rc != 0) {
        kdh_list_free(out);
        kdh_list_init(out);
    }
    return rc;
}

int kx_read_keras3_weights_image(const void *data, size_t len, const char *name, uint64_t max_bytes,
                                 kdh_tensor_list *out, kdh_error *err)
{
    kdh_list_init(out);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = open_image(data, len);
    if (file < 0) return fail(err, name, "libhdf5 cannot open it (not HDF5, or a damaged or truncated file?)");
    return read_keras3_weights(file, name, max_or_default(max_bytes), out, err);
}

/* ---- in a child process ---------------------------------------------------
 * libhdf5 is not safe against damaged files: fuzzing it finds inputs on
 * which it loops for ever or crashes. So kdslc import reads an HDF5 file in
 * a child process, bounded in time (and, outside sanitizer builds, in
 * memory), which hands the config and the weights back as two files in a
 * private temporary directory: config.json, and weights.safetensors, which
 * the parent reads with its own hostile-safe reader. A child that is
 * killed, crashes or runs out of time is a clear error, not a crashed or
 * hung kdslc. */

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif

/* What the child reads: a legacy .h5 file at `h5_path`, or (h5_path NULL) a
 * Keras 3 weights file image in memory (inherited from the parent). */
typedef struct job {
    const char *name;   /* for messages */
    const char *h5_path;
    const void *image;
    size_t len;
} job;

static int child_read(const job *j, const char *dir, int msg_fd)
{
    kx_keras_file f = {0};
    kdh_error err = {{0}};
    kdh_list_init(&f.weights);
    int rc = j->h5_path ? kx_read_keras_h5(j->h5_path, &f, &err)
                        : kx_read_keras3_weights_image(j->image, j->len, j->name, 0, &f.weights, &err);
    if (rc == 0) {
        char cpath[4200], wpath[4200];
        snprintf(cpath, sizeof cpath, "%s/config.json", dir);
        snprintf(wpath, sizeof wpath, "%s/weights.safetensors", dir);
        if (f.keras_version) kdh_list_set_meta(&f.weights, "keras_version", f.keras_version, &err);
        FILE *c = f.config ? fopen(cpath, "wb") : NULL;
        if (f.config && (!c || fputs(f.config, c) < 0 || fclose(c) != 0))
            rc = fail(&err, cpath, "cannot write it: %s", strerror(errno));
        else if (kdh_safetensors_write_list(wpath, &f.weights, &err) != 0) rc = -1;
    }
    kx_keras_file_free(&f);
    if (rc != 0) {
        size_t n = strlen(err.msg);
        if (write(msg_fd, err.msg, n) != (ssize_t)n) return 1;
    }
    return rc == 0 ? 0 : 1;
}

/* The temporary directory and what is in it (the atomic writer's
 * temporaries too, if the child died writing). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

static int isolated(const job *j, double seconds, kx_keras_file *out, kdh_error *err)
{
    const char *path = j->name;
    memset(out, 0, sizeof *out);
    kdh_list_init(&out->weights);
    const char *tmp = getenv("TMPDIR") && getenv("TMPDIR")[0] ? getenv("TMPDIR") : "/tmp";
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/kdslc-import-XXXXXX", tmp);
    if (!mkdtemp(dir)) return fail(err, path, "cannot make a temporary directory in %s: %s", tmp, strerror(errno));
    int fds[2];
    if (pipe(fds) != 0) {
        rmdir(dir);
        return fail(err, path, "cannot make a pipe: %s", strerror(errno));
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]), close(fds[1]), rmdir(dir);
        return fail(err, path, "cannot start the reader process: %s", strerror(errno));
    }
    if (pid == 0) {
        close(fds[0]);
#ifndef UNDER_SANITIZER
        struct rlimit as = {(rlim_t)16 << 30, (rlim_t)16 << 30};   /* the weights' own limit is 4 GiB */
        setrlimit(RLIMIT_AS, &as);
#endif
        struct rlimit core = {0, 0};
        setrlimit(RLIMIT_CORE, &core);
        _exit(child_read(j, dir, fds[1]));
    }
    close(fds[1]);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    char msg[sizeof err->msg];
    size_t have = 0;
    int status = 0;
    bool timed_out = false;
    struct timespec start, now, nap = {0, 5 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        ssize_t n = read(fds[0], msg + have, sizeof msg - 1 - have);
        if (n > 0) have += (size_t)n;
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((double)(now.tv_sec - start.tv_sec) + 1e-9 * (double)(now.tv_nsec - start.tv_nsec) > seconds) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            timed_out = true;
            break;
        }
        nanosleep(&nap, NULL);
    }
    for (ssize_t n; have < sizeof msg - 1 && (n = read(fds[0], msg + have, sizeof msg - 1 - have)) > 0;) have += (size_t)n;
    close(fds[0]);
    msg[have] = 0;
    int rc = -1;
    if (timed_out)
        fail(err, path, "libhdf5 did not finish reading it in %.0f s (a damaged file?)", seconds);
    else if (WIFSIGNALED(status))
        fail(err, path, "libhdf5 crashed reading it (signal %d: a damaged file?)", WTERMSIG(status));
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (have) snprintf(err->msg, sizeof err->msg, "%s", msg);
        else fail(err, path, "the reader process failed");
    } else {
        char cpath[4200], wpath[4200];
        snprintf(cpath, sizeof cpath, "%s/config.json", dir);
        snprintf(wpath, sizeof wpath, "%s/weights.safetensors", dir);
        FILE *c = j->h5_path ? fopen(cpath, "rb") : NULL;
        struct stat st = {0};
        if (j->h5_path &&
            (!c || fstat(fileno(c), &st) != 0 || (uint64_t)st.st_size > MAX_STRING || !(out->config = malloc((size_t)st.st_size + 1)) ||
             fread(out->config, 1, (size_t)st.st_size, c) != (size_t)st.st_size))
            fail(err, path, "cannot read the reader process's config");
        else {
            if (out->config) out->config[st.st_size] = 0;
            rc = kdh_safetensors_read(wpath, NULL, &out->weights, err);
            const char *v = rc == 0 ? kdh_list_get_meta(&out->weights, "keras_version") : NULL;
            if (v) out->keras_version = strdup(v);
        }
        if (c) fclose(c);
    }
    remove_dir(dir);
    if (rc != 0) kx_keras_file_free(out);
    return rc;
}

int kx_read_keras_h5_isolated(const char *path, double seconds, kx_keras_file *out, kdh_error *err)
{
    if (!kx_is_hdf5(path)) {
        memset(out, 0, sizeof *out);
        kdh_list_init(&out->weights);
        return fail(err, path, "not an HDF5 file");
    }
    job j = {.name = path, .h5_path = path};
    return isolated(&j, seconds, out, err);
}

int kx_read_keras3_weights_isolated(const void *data, size_t len, const char *name, double seconds,
                                    kdh_tensor_list *out, kdh_error *err)
{
    job j = {.name = name, .image = data, .len = len};
    kx_keras_file f;
    int rc = isolated(&j, seconds, &f, err);
    *out = f.weights;   /* moved: f holds nothing else */
    kdh_list_init(&f.weights);
    kx_keras_file_free(&f);
    return rc;
}

/* ---- writing -------------------------------------------------------------- */

static bool put_string(hid_t obj, const char *name, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    bool ok = a >= 0 && H5Awrite(a, t, &value) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(s), H5Tclose(t);
    return ok;
}

/* A list of strings as Keras writes one (numpy's 'S' dtype: fixed length,
 * null-padded); an empty list as numpy's empty float64 array. */
static bool put_strings(hid_t obj, const char *name, const char *const *values, int n)
{
    hsize_t dims[1] = {(hsize_t)n};
    hid_t s = H5Screate_simple(1, dims, NULL);
    size_t len = 1;
    for (int i = 0; i < n; i++)
        if (strlen(values[i]) > len) len = strlen(values[i]);
    hid_t t = n ? H5Tcopy(H5T_C_S1) : H5Tcopy(H5T_IEEE_F64LE);
    if (n) {
        H5Tset_size(t, len);
        H5Tset_strpad(t, H5T_STR_NULLPAD);
    }
    char *buf = calloc((size_t)(n ? n : 1), len);
    for (int i = 0; i < n && buf; i++) memcpy(buf + (size_t)i * len, values[i], strlen(values[i]));
    hid_t a = buf ? H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT) : -1;
    bool ok = a >= 0 && (n == 0 || H5Awrite(a, t, buf) >= 0);
    if (a >= 0) H5Aclose(a);
    free(buf);
    H5Sclose(s), H5Tclose(t);
    return ok;
}

typedef struct image {
    const char *path;
    void *data;
    size_t len;
} image;

static int write_image(FILE *f, void *ctx, kdh_error *err)
{
    const image *im = ctx;
    return kdh_fwrite_all(f, im->data, im->len, im->path, err);
}

int kx_write_keras_h5(const char *path, const char *config, const kd_model *m, const kdh_tensor_list *weights,
                      kdh_error *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    err->msg[0] = 0;
    static const char *const version = "kdsl 0.1.0";
    /* the file is built in memory (libhdf5's core driver) and written whole, atomically */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, 1 << 20, 0) < 0) {
        if (fapl >= 0) H5Pclose(fapl);
        return fail(err, path, "libhdf5 cannot make a file in memory");
    }
    hid_t file = H5Fcreate("kdslc-export.h5", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (file < 0) return fail(err, path, "libhdf5 cannot make a file in memory");
    bool ok = put_string(file, "model_config", config) && put_string(file, "keras_version", version) &&
              put_string(file, "backend", "tensorflow");
    hid_t mw = ok ? H5Gcreate2(file, "model_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    ok = ok && mw >= 0 && put_string(mw, "keras_version", version) && put_string(mw, "backend", "tensorflow");
    int nl = m->ninputs + m->layers.len;
    const char **names = calloc((size_t)nl + 1, sizeof *names);
    const char **wnames = calloc((size_t)m->vars.len + 1, sizeof *wnames);
    ok = ok && names && wnames;
    for (int i = 0; ok && i < nl; i++)
        names[i] = i < m->ninputs ? m->input_names[i] : ((const kd_layer *)m->layers.items[i - m->ninputs])->name;
    ok = ok && put_strings(mw, "layer_names", names, nl);
    for (int i = 0; ok && i < nl; i++) {
        hid_t g = H5Gcreate2(mw, names[i], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) {
            ok = false;
            break;
        }
        size_t plen = strlen(names[i]);
        int nw = 0;
        for (int v = 0; ok && v < m->vars.len; v++) {
            const kd_var *var = m->vars.items[v];
            if (strncmp(var->name, names[i], plen) || var->name[plen] != '/') continue;
            const kdh_tensor *t = kdh_list_find(weights, var->name);
            if (!t || t->dtype != KDH_F32 || kdh_tensor_count(t) != ir_shape_elems(&var->shape)) {
                fail(err, path, "the weights have no float32 \"%s\" of %lld values", var->name,
                     (long long)ir_shape_elems(&var->shape));
                ok = false;
                break;
            }
            char *wname = malloc(strlen(var->name) + 3);
            sprintf(wname, "%s:0", var->name);
            wnames[nw++] = wname;
            hsize_t dims[KDH_MAX_RANK];
            for (int k = 0; k < var->shape.rank; k++) dims[k] = (hsize_t)var->shape.dims[k];
            hid_t s = H5Screate_simple(var->shape.rank, dims, NULL), lcpl = H5Pcreate(H5P_LINK_CREATE);
            H5Pset_create_intermediate_group(lcpl, 1);
            hid_t ds = H5Dcreate2(g, wname, H5T_IEEE_F32LE, s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
            ok = ds >= 0 && H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) >= 0;
            if (ds >= 0) H5Dclose(ds);
            H5Pclose(lcpl), H5Sclose(s);
        }
        ok = ok && put_strings(g, "weight_names", wnames, nw);
        for (int k = 0; k < nw; k++) free((char *)wnames[k]);
        H5Gclose(g);
    }
    free(names);
    free(wnames);
    if (mw >= 0) H5Gclose(mw);
    image im = {path, NULL, 0};
    if (ok && H5Fflush(file, H5F_SCOPE_GLOBAL) >= 0) {
        ssize_t n = H5Fget_file_image(file, NULL, 0);
        im.data = n > 0 ? malloc((size_t)n) : NULL;
        im.len = (size_t)(n > 0 ? n : 0);
        ok = im.data && H5Fget_file_image(file, im.data, im.len) == n;
    } else
        ok = false;
    H5Fclose(file);
    int rc;
    if (!ok) rc = err->msg[0] ? -1 : fail(err, path, "libhdf5 failed building the file");
    else rc = kdh_atomic_write(path, write_image, &im, err);
    free(im.data);
    return rc;
}

int kx_keras3_weights_build(const char *const *groups, int ngroups, const kdh_tensor *weights,
                            const char *const *paths, int n, void **data, size_t *len, const char *name, kdh_error *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    *data = NULL;
    *len = 0;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, 1 << 20, 0) < 0) {
        if (fapl >= 0) H5Pclose(fapl);
        return fail(err, name, "libhdf5 cannot make a file in memory");
    }
    hid_t file = H5Fcreate("kdslc-export.weights.h5", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (file < 0) return fail(err, name, "libhdf5 cannot make a file in memory");
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    bool ok = lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) >= 0;
    /* the model's own (empty) vars, then every saveable's, as saving_lib visits them */
    for (int i = -1; ok && i < ngroups; i++) {
        char *g = malloc((i < 0 ? 0 : strlen(groups[i])) + 6);
        if (!g) {
            ok = false;
            break;
        }
        sprintf(g, "%s%svars", i < 0 ? "" : groups[i], i < 0 ? "" : "/");
        hid_t id = H5Gcreate2(file, g, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        ok = id >= 0;
        if (id >= 0) H5Gclose(id);
        free(g);
    }
    for (int i = 0; ok && i < n; i++) {
        const kdh_tensor *t = &weights[i];
        hsize_t dims[KDH_MAX_RANK];
        for (int k = 0; k < t->rank; k++) dims[k] = (hsize_t)t->shape[k];
        hid_t s = H5Screate_simple(t->rank, dims, NULL);
        hid_t ds = s >= 0 ? H5Dcreate2(file, paths[i], H5T_IEEE_F32LE, s, lcpl, H5P_DEFAULT, H5P_DEFAULT) : -1;
        ok = t->dtype == KDH_F32 && ds >= 0 && H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) >= 0;
        if (ds >= 0) H5Dclose(ds);
        if (s >= 0) H5Sclose(s);
    }
    if (lcpl >= 0) H5Pclose(lcpl);
    if (ok && H5Fflush(file, H5F_SCOPE_GLOBAL) >= 0) {
        ssize_t size = H5Fget_file_image(file, NULL, 0);
        *data = size > 0 ? malloc((size_t)size) : NULL;
        ok = *data && H5Fget_file_image(file, *data, (size_t)size) == size;
        *len = ok ? (size_t)size : 0;
    } else
        ok = false;
    H5Fclose(file);
    if (!ok) {
        free(*data);
        *data = NULL;
        return fail(err, name, "libhdf5 failed building model.weights.h5");
    }
    return 0;
}
