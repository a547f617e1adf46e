/* tensor.c — in-memory tensors and tensor lists, dtype facts, finiteness
 * checks, and the small helpers every reader shares (errors, byte order,
 * overflow-checked sizes, opening files without hanging). */
#define _FILE_OFFSET_BITS 64
#include "host_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- errors and small helpers ------------------------------------------ */

int kdh__err(kdh_error *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

uint64_t kdh__max_bytes(const kdh_read_opts *opts)
{
    uint64_t m = (opts && opts->max_bytes) ? opts->max_bytes : KDH_DEFAULT_MAX_BYTES;
    /* Whatever the caller asks, we can never hold more than size_t. */
    if (m > (uint64_t)SIZE_MAX) m = SIZE_MAX;
    return m;
}

bool kdh__host_is_le(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

void kdh__swap_bytes(void *data, size_t count, size_t elsize)
{
    if (elsize < 2) return;
    unsigned char *p = data;
    for (size_t i = 0; i < count; i++, p += elsize)
        for (size_t a = 0, b = elsize - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

bool kdh__mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a != 0 && b > UINT64_MAX / a) return false;
    *out = a * b;
    return true;
}

int kdh__open_regular(const char *path, int *fdp, uint64_t *size, kdh_error *err)
{
    /* O_NONBLOCK so that opening a FIFO cannot block forever; we refuse
     * anything but a regular file below and then restore blocking reads. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return kdh__err(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return kdh__err(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return kdh__err(err, "%s: is a directory, not a file", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return kdh__err(err, "%s: not a regular file", path);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        return kdh__err(err, "%s: cannot read: %s", path, strerror(e));
    }
    *fdp = fd;
    *size = (uint64_t)st.st_size;
    return 0;
}

int kdh__src_open(kdh__src *s, const char *path, const kdh_read_opts *opts, kdh_error *err)
{
    memset(s, 0, sizeof *s);
    int fd;
    uint64_t size;
    if (kdh__open_regular(path, &fd, &size, err) != 0) return -1;
    uint64_t max = kdh__max_bytes(opts);
    if (size > max) {
        close(fd);
        return kdh__err(err, "%s: file is %" PRIu64 " bytes, more than the limit of %" PRIu64
                        " bytes", path, size, max);
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        return kdh__err(err, "%s: cannot read: %s", path, strerror(e));
    }
    s->f = f;
    s->size = size;
    s->name = path;
    return 0;
}

void kdh__src_mem(kdh__src *s, const void *buf, size_t len, const char *name)
{
    memset(s, 0, sizeof *s);
    s->mem = buf;
    s->size = len;
    s->name = name ? name : "<memory>";
}

void kdh__src_close(kdh__src *s)
{
    if (s->f) fclose(s->f);
    s->f = NULL;
}

int kdh__src_read(kdh__src *s, uint64_t off, void *dst, size_t n, kdh_error *err)
{
    if (n == 0) return 0;
    if (off > s->size || n > s->size - off)
        return kdh__err(err, "%s: unexpected end of file (needed bytes [%" PRIu64 ", %" PRIu64
                        ") of %" PRIu64 ")", s->name, off, off + (uint64_t)n, s->size);
    if (s->mem) {
        memcpy(dst, s->mem + off, n);
        return 0;
    }
    if (off > (uint64_t)INT64_MAX || fseeko(s->f, (off_t)off, SEEK_SET) != 0)
        return kdh__err(err, "%s: cannot seek to byte %" PRIu64 ": %s", s->name, off,
                        strerror(errno));
    size_t got = fread(dst, 1, n, s->f);
    if (got != n) {
        if (ferror(s->f))
            return kdh__err(err, "%s: read failed: %s", s->name, strerror(errno));
        /* The size came from fstat: the file shrank while we read it. */
        return kdh__err(err, "%s: unexpected end of file at byte %" PRIu64, s->name,
                        off + (uint64_t)got);
    }
    return 0;
}

int kdh__read_whole(const char *path, const kdh_read_opts *opts, char **bufp, size_t *lenp,
                    kdh_error *err)
{
    kdh__src s;
    if (kdh__src_open(&s, path, opts, err) != 0) return -1;
    /* kdh__src_open bounded the size by max_bytes <= SIZE_MAX; keep room
     * for the NUL so len + 1 cannot wrap. */
    if (s.size >= (uint64_t)SIZE_MAX) {
        kdh__src_close(&s);
        return kdh__err(err, "%s: file too large", path);
    }
    size_t len = (size_t)s.size;
    char *buf = malloc(len + 1);
    if (!buf) {
        kdh__src_close(&s);
        return kdh__err(err, "%s: out of memory reading %zu bytes", path, len);
    }
    if (kdh__src_read(&s, 0, buf, len, err) != 0) {
        free(buf);
        kdh__src_close(&s);
        return -1;
    }
    /* A file that grew since fstat: we read what the size promised; the
     * rest is ignored rather than read unbounded. */
    kdh__src_close(&s);
    buf[len] = 0;
    *bufp = buf;
    *lenp = len;
    return 0;
}

size_t kdh__utf8_valid_prefix(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xE0) == 0xC0) { k = 1; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { k = 2; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { k = 3; cp = c & 0x07; min = 0x10000; }
        else return i;
        if (n - i <= k) return i;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        /* Overlong forms, surrogates and values past U+10FFFF are invalid. */
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += k + 1;
    }
    return n;
}

/* ---- dtypes ------------------------------------------------------------ */

static const struct {
    const char *name;
    size_t size;
    bool is_float;
} dtype_info[KDH_DTYPE_COUNT] = {
    [KDH_F32] = {"F32", 4, true},   [KDH_F64] = {"F64", 8, true},
    [KDH_F16] = {"F16", 2, true},   [KDH_BF16] = {"BF16", 2, true},
    [KDH_I8] = {"I8", 1, false},    [KDH_U8] = {"U8", 1, false},
    [KDH_I16] = {"I16", 2, false},  [KDH_U16] = {"U16", 2, false},
    [KDH_I32] = {"I32", 4, false},  [KDH_U32] = {"U32", 4, false},
    [KDH_I64] = {"I64", 8, false},  [KDH_U64] = {"U64", 8, false},
    [KDH_BOOL] = {"BOOL", 1, false},
};

size_t kdh_dtype_size(kdh_dtype dt)
{
    return (unsigned)dt < KDH_DTYPE_COUNT ? dtype_info[dt].size : 0;
}

const char *kdh_dtype_name(kdh_dtype dt)
{
    return (unsigned)dt < KDH_DTYPE_COUNT ? dtype_info[dt].name : "?";
}

bool kdh_dtype_is_float(kdh_dtype dt)
{
    return (unsigned)dt < KDH_DTYPE_COUNT && dtype_info[dt].is_float;
}

int kdh_dtype_from_name(const char *name, kdh_dtype *out)
{
    for (int i = 0; i < KDH_DTYPE_COUNT; i++)
        if (strcmp(name, dtype_info[i].name) == 0) {
            *out = (kdh_dtype)i;
            return 0;
        }
    return -1;
}

/* ---- shapes and tensors ------------------------------------------------ */

int kdh_shape_bytes(kdh_dtype dt, int rank, const int64_t *shape, size_t *nbytes)
{
    size_t es = kdh_dtype_size(dt);
    if (es == 0 || rank < 0 || rank > KDH_MAX_RANK) return -1;
    uint64_t n = es;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0 || !kdh__mul_u64(n, (uint64_t)shape[i], &n)) return -1;
    }
    if (n > (uint64_t)SIZE_MAX) return -1;
    *nbytes = (size_t)n;
    return 0;
}

int64_t kdh_tensor_count(const kdh_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= t->shape[i];
    return n;
}

char *kdh_shape_str(int rank, const int64_t *shape, char *buf, size_t size)
{
    if (size == 0) return buf;
    size_t at = 0;
    buf[0] = 0;
    at += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < rank && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (at < size) snprintf(buf + at, size - at, "]");
    return buf;
}

int kdh_tensor_alloc(kdh_tensor *t, const char *name, kdh_dtype dt, int rank,
                     const int64_t *shape, kdh_error *err)
{
    memset(t, 0, sizeof *t);
    char sb[256];
    if (rank < 0 || rank > KDH_MAX_RANK)
        return kdh__err(err, "tensor \"%s\": rank %d is outside 0..%d", name ? name : "",
                        rank, KDH_MAX_RANK);
    size_t nbytes;
    if (kdh_shape_bytes(dt, rank, shape, &nbytes) != 0)
        return kdh__err(err, "tensor \"%s\": shape %s of %s is invalid or too large",
                        name ? name : "", kdh_shape_str(rank, shape, sb, sizeof sb),
                        kdh_dtype_name(dt));
    /* Owned tensors always have a buffer, aligned to a cache line: the
     * kernels' vector loads then never split a line (batches of a data set
     * start at multiples of its rows). */
    size_t abytes = nbytes / 64 * 64 + 64;
    void *data = nbytes <= SIZE_MAX - 64 ? aligned_alloc(64, abytes) : NULL;
    if (data) memset(data, 0, abytes);
    char *nm = name ? strdup(name) : NULL;
    if (!data || (name && !nm)) {
        free(data);
        free(nm);
        return kdh__err(err, "tensor \"%s\": out of memory allocating %zu bytes",
                        name ? name : "", nbytes);
    }
    t->name = nm;
    t->dtype = dt;
    t->rank = rank;
    for (int i = 0; i < rank; i++) t->shape[i] = shape[i];
    t->data = data;
    t->nbytes = nbytes;
    return 0;
}

void kdh_tensor_free(kdh_tensor *t)
{
    if (!t) return;
    free(t->name);
    free(t->data);
    memset(t, 0, sizeof *t);
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13);
    } else if (exp == 0) {
        /* Subnormal (or zero): the value is man * 2^-24 exactly. */
        float v = ldexpf((float)man, -24);
        return sign ? -v : v;
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

double kdh_tensor_elem_f64(const kdh_tensor *t, size_t i)
{
    const unsigned char *p = (const unsigned char *)t->data + i * kdh_dtype_size(t->dtype);
    switch (t->dtype) {
    case KDH_F32: { float v; memcpy(&v, p, 4); return v; }
    case KDH_F64: { double v; memcpy(&v, p, 8); return v; }
    case KDH_F16: { uint16_t v; memcpy(&v, p, 2); return f16_to_f32(v); }
    case KDH_BF16: { uint16_t v; memcpy(&v, p, 2); return bf16_to_f32(v); }
    case KDH_I8: { int8_t v; memcpy(&v, p, 1); return v; }
    case KDH_U8: case KDH_BOOL: return *p;
    case KDH_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case KDH_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case KDH_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case KDH_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case KDH_I64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    case KDH_U64: { uint64_t v; memcpy(&v, p, 8); return (double)v; }
    default: return 0;
    }
}

int kdh_tensor_to_f32(const kdh_tensor *src, kdh_tensor *dst, kdh_error *err)
{
    if (kdh_tensor_alloc(dst, src->name, KDH_F32, src->rank, src->shape, err) != 0) return -1;
    size_t n = dst->nbytes / 4;
    if (src->nbytes != n * kdh_dtype_size(src->dtype)) {
        kdh_tensor_free(dst);
        return kdh__err(err, "tensor \"%s\": %zu data bytes do not match its shape",
                        src->name ? src->name : "", src->nbytes);
    }
    float *out = dst->data;
    if (src->dtype == KDH_F32) {
        memcpy(out, src->data, n * 4);
    } else if (src->dtype == KDH_U8) {
        const uint8_t *in = src->data;   /* the common case: image pixels */
        for (size_t i = 0; i < n; i++) out[i] = in[i];
    } else {
        for (size_t i = 0; i < n; i++) out[i] = (float)kdh_tensor_elem_f64(src, i);
    }
    return 0;
}

size_t kdh_first_nonfinite_f32(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return i;
    return n;
}

int kdh_check_finite(const kdh_tensor *t, const char *what, kdh_error *err)
{
    if (!kdh_dtype_is_float(t->dtype)) return 0;
    size_t es = kdh_dtype_size(t->dtype), n = t->nbytes / es, bad = n;
    double badv = 0;
    if (t->dtype == KDH_F32) {
        bad = kdh_first_nonfinite_f32(t->data, n);
    } else {
        for (size_t i = 0; i < n; i++)
            if (!isfinite(kdh_tensor_elem_f64(t, i))) { bad = i; break; }
    }
    if (bad == n) return 0;
    badv = kdh_tensor_elem_f64(t, bad);
    /* Row-major unravel so the message points at the row a user can find. */
    int64_t idx[KDH_MAX_RANK];
    uint64_t rem = bad;
    for (int d = t->rank - 1; d >= 0; d--) {
        uint64_t dim = t->shape[d] > 0 ? (uint64_t)t->shape[d] : 1;
        idx[d] = (int64_t)(rem % dim);
        rem /= dim;
    }
    char sb[256];
    return kdh__err(err, "%s%s%s%s: element %zu (index %s) is %s", what ? what : "data",
                    t->name ? ": tensor \"" : "", t->name ? t->name : "", t->name ? "\"" : "",
                    bad, kdh_shape_str(t->rank, idx, sb, sizeof sb),
                    isnan(badv) ? "NaN" : badv > 0 ? "+inf" : "-inf");
}

/* ---- lists ------------------------------------------------------------- */

void kdh_list_init(kdh_tensor_list *l)
{
    memset(l, 0, sizeof *l);
}

void kdh_list_free(kdh_tensor_list *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->count; i++) kdh_tensor_free(&l->items[i]);
    for (size_t i = 0; i < l->nmeta; i++) {
        free(l->meta[i].key);
        free(l->meta[i].value);
    }
    free(l->items);
    free(l->meta);
    memset(l, 0, sizeof *l);
}

int kdh__list_append(kdh_tensor_list *l, kdh_tensor *t, kdh_error *err)
{
    if (l->count == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        kdh_tensor *ni = (nc > SIZE_MAX / sizeof *ni) ? NULL : realloc(l->items, nc * sizeof *ni);
        if (!ni) return kdh__err(err, "out of memory growing a tensor list");
        l->items = ni;
        l->cap = nc;
    }
    l->items[l->count++] = *t;
    memset(t, 0, sizeof *t);
    return 0;
}

kdh_tensor *kdh_list_find(const kdh_tensor_list *l, const char *name)
{
    for (size_t i = 0; i < l->count; i++)
        if (l->items[i].name && strcmp(l->items[i].name, name) == 0) return &l->items[i];
    return NULL;
}

int kdh_list_push(kdh_tensor_list *l, kdh_tensor *t, kdh_error *err)
{
    if (!t->name) return kdh__err(err, "a tensor in a list needs a name");
    if (kdh_list_find(l, t->name))
        return kdh__err(err, "tensor \"%s\" is already in the list", t->name);
    return kdh__list_append(l, t, err);
}

kdh_tensor *kdh_list_add(kdh_tensor_list *l, const char *name, kdh_dtype dt, int rank,
                         const int64_t *shape, kdh_error *err)
{
    if (!name) {
        kdh__err(err, "a tensor in a list needs a name");
        return NULL;
    }
    if (kdh_list_find(l, name)) {
        kdh__err(err, "tensor \"%s\" is already in the list", name);
        return NULL;
    }
    kdh_tensor t;
    if (kdh_tensor_alloc(&t, name, dt, rank, shape, err) != 0) return NULL;
    if (kdh__list_append(l, &t, err) != 0) {
        kdh_tensor_free(&t);
        return NULL;
    }
    return &l->items[l->count - 1];
}

const char *kdh_list_get_meta(const kdh_tensor_list *l, const char *key)
{
    for (size_t i = 0; i < l->nmeta; i++)
        if (strcmp(l->meta[i].key, key) == 0) return l->meta[i].value;
    return NULL;
}

int kdh_list_set_meta(kdh_tensor_list *l, const char *key, const char *value, kdh_error *err)
{
    char *v = strdup(value);
    if (!v) return kdh__err(err, "out of memory");
    for (size_t i = 0; i < l->nmeta; i++)
        if (strcmp(l->meta[i].key, key) == 0) {
            free(l->meta[i].value);
            l->meta[i].value = v;
            return 0;
        }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return kdh__err(err, "out of memory");
    }
    if (l->nmeta == l->metacap) {
        size_t nc = l->metacap ? l->metacap * 2 : 8;
        kdh_meta *nm = (nc > SIZE_MAX / sizeof *nm) ? NULL : realloc(l->meta, nc * sizeof *nm);
        if (!nm) {
            free(k);
            free(v);
            return kdh__err(err, "out of memory");
        }
        l->meta = nm;
        l->metacap = nc;
    }
    l->meta[l->nmeta].key = k;
    l->meta[l->nmeta].value = v;
    l->nmeta++;
    return 0;
}

const kdh_tensor *kdh_list_expect(const kdh_tensor_list *l, const char *path, const char *name,
                                  kdh_dtype dt, int rank, const int64_t *shape, kdh_error *err)
{
    const kdh_tensor *t = kdh_list_find(l, name);
    if (!t) {
        kdh__err(err, "%s: no tensor \"%s\"", path, name);
        return NULL;
    }
    if (t->dtype != dt) {
        kdh__err(err, "%s: tensor \"%s\" has dtype %s, the model expects %s", path, name,
                 kdh_dtype_name(t->dtype), kdh_dtype_name(dt));
        return NULL;
    }
    bool same = t->rank == rank;
    for (int i = 0; same && i < rank; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char a[256], b[256];
        kdh__err(err, "%s: tensor \"%s\" has shape %s, the model expects %s", path, name,
                 kdh_shape_str(t->rank, t->shape, a, sizeof a),
                 kdh_shape_str(rank, shape, b, sizeof b));
        return NULL;
    }
    return t;
}
