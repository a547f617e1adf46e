/* npy.c — NumPy's .npy format:
 *
 *   "\x93NUMPY" major minor | header length (u16 LE in 1.0, u32 LE in 2.0
 *   and 3.0) | header: a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 *   padded with spaces and a final '\n' | raw data
 *
 * The header is a Python literal, not JSON, so it gets its own small
 * recursive-descent parser that accepts exactly the subset NumPy writes. */
#define _FILE_OFFSET_BITS 64
#include "host_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* NumPy itself refuses headers over 10000 bytes by default; 1 MiB leaves
 * room for any honest writer. */
#define NPY_MAX_HEADER (1u << 20)
#define NPY_MAGIC "\x93NUMPY"
#define NPY_ALIGN 64
#define NPY_GROWTH_DIGITS 21   /* NumPy's GROWTH_AXIS_MAX_DIGITS */

typedef struct npy_parser {
    const char *p, *end;
    const char *path;
    kdh_error *err;
} npy_parser;

/* What the header says. */
typedef struct npy_header {
    char descr[32];
    bool has_descr, has_order, has_shape;
    bool fortran;
    int rank;
    int64_t shape[KDH_MAX_RANK];
} npy_header;

static void skip_ws(npy_parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static bool accept(npy_parser *ps, char c)
{
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == c) {
        ps->p++;
        return true;
    }
    return false;
}

static int syntax(npy_parser *ps, const char *what)
{
    skip_ws(ps);
    return kdh__err(ps->err, "%s: malformed header: %s at \"%.20s\"", ps->path, what,
                    ps->p < ps->end ? ps->p : "(end)");
}

/* string = "'" chars "'" | '"' chars '"'  (no escapes: NumPy writes none) */
static int parse_string(npy_parser *ps, char *out, size_t size)
{
    skip_ws(ps);
    if (ps->p >= ps->end || (*ps->p != '\'' && *ps->p != '"')) return syntax(ps, "expected a string");
    char q = *ps->p++;
    size_t n = 0;
    while (ps->p < ps->end && *ps->p != q) {
        if (*ps->p == '\\' || *ps->p == '\n') return syntax(ps, "unsupported string");
        if (n + 1 < size) out[n++] = *ps->p;
        else return syntax(ps, "string too long");
        ps->p++;
    }
    if (ps->p >= ps->end) return syntax(ps, "unterminated string");
    ps->p++;
    out[n] = 0;
    return 0;
}

/* int = digit+ ["L"]  (Python 2 wrote long integers with a suffix) */
static int parse_int(npy_parser *ps, int64_t *out)
{
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
        return syntax(ps, "expected a non-negative integer");
    uint64_t v = 0;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        if (v > ((uint64_t)INT64_MAX - 9) / 10)
            return kdh__err(ps->err, "%s: shape dimension too large", ps->path);
        v = v * 10 + (uint64_t)(*ps->p++ - '0');
    }
    if (ps->p < ps->end && (*ps->p == 'L' || *ps->p == 'l')) ps->p++;
    *out = (int64_t)v;
    return 0;
}

/* tuple = "(" ")" | "(" int "," ")" | "(" int ("," int)+ [","] ")" */
static int parse_shape(npy_parser *ps, npy_header *h)
{
    if (!accept(ps, '(')) {
        if (accept(ps, '[')) return kdh__err(ps->err, "%s: shape is a list, not a tuple", ps->path);
        return syntax(ps, "shape is not a tuple");
    }
    h->rank = 0;
    if (accept(ps, ')')) return 0;
    bool comma = false;
    for (;;) {
        int64_t v = 0;
        if (parse_int(ps, &v) != 0) return -1;
        if (h->rank == KDH_MAX_RANK)
            return kdh__err(ps->err, "%s: shape has more than %d dimensions", ps->path, KDH_MAX_RANK);
        h->shape[h->rank++] = v;
        comma = accept(ps, ',');
        if (accept(ps, ')')) break;
        if (!comma) return syntax(ps, "expected ',' or ')' in shape");
    }
    /* "(3)" is the integer 3 in Python, not a tuple. */
    if (h->rank == 1 && !comma) return syntax(ps, "shape is not a tuple");
    return 0;
}

/* dict = "{" [entry ("," entry)* [","]] "}"   entry = string ":" value */
static int parse_header(npy_parser *ps, npy_header *h)
{
    memset(h, 0, sizeof *h);
    if (!accept(ps, '{')) return syntax(ps, "expected '{'");
    while (!accept(ps, '}')) {
        char key[32];
        if (parse_string(ps, key, sizeof key) != 0) return -1;
        if (!accept(ps, ':')) return syntax(ps, "expected ':'");
        if (strcmp(key, "descr") == 0) {
            if (h->has_descr) return kdh__err(ps->err, "%s: duplicate 'descr'", ps->path);
            skip_ws(ps);
            if (ps->p < ps->end && (*ps->p == '[' || *ps->p == '('))
                return kdh__err(ps->err, "%s: structured dtypes are not supported", ps->path);
            if (parse_string(ps, h->descr, sizeof h->descr) != 0) return -1;
            h->has_descr = true;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (h->has_order) return kdh__err(ps->err, "%s: duplicate 'fortran_order'", ps->path);
            skip_ws(ps);
            size_t left = (size_t)(ps->end - ps->p);
            if (left >= 4 && memcmp(ps->p, "True", 4) == 0) {
                h->fortran = true;
                ps->p += 4;
            } else if (left >= 5 && memcmp(ps->p, "False", 5) == 0) {
                ps->p += 5;
            } else {
                return syntax(ps, "fortran_order is not True or False");
            }
            h->has_order = true;
        } else if (strcmp(key, "shape") == 0) {
            if (h->has_shape) return kdh__err(ps->err, "%s: duplicate 'shape'", ps->path);
            if (parse_shape(ps, h) != 0) return -1;
            h->has_shape = true;
        } else {
            return kdh__err(ps->err, "%s: unexpected key '%s' in the header", ps->path, key);
        }
        if (!accept(ps, ',')) {
            if (accept(ps, '}')) break;
            return syntax(ps, "expected ',' or '}'");
        }
    }
    skip_ws(ps);
    if (ps->p != ps->end) return syntax(ps, "unexpected text after the header");
    if (!h->has_descr || !h->has_order || !h->has_shape)
        return kdh__err(ps->err, "%s: header lacks '%s'", ps->path,
                        !h->has_descr ? "descr" : !h->has_order ? "fortran_order" : "shape");
    return 0;
}

static const struct {
    const char *code;     /* descr without the byte-order character */
    kdh_dtype dtype;
} npy_types[] = {
    {"f2", KDH_F16}, {"f4", KDH_F32}, {"f8", KDH_F64},
    {"i1", KDH_I8},  {"i2", KDH_I16}, {"i4", KDH_I32}, {"i8", KDH_I64},
    {"u1", KDH_U8},  {"u2", KDH_U16}, {"u4", KDH_U32}, {"u8", KDH_U64},
    {"b1", KDH_BOOL},
};

/* descr → dtype and whether the data is big-endian. */
static int parse_descr(const char *d, const char *path, kdh_dtype *dt, bool *big, kdh_error *err)
{
    char order = d[0];
    if (order == '<' || order == '>' || order == '|' || order == '=') {
        for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
            if (strcmp(d + 1, npy_types[i].code) == 0) {
                *dt = npy_types[i].dtype;
                /* '|' (not applicable) is only right for one-byte types,
                 * but NumPy never writes it otherwise and bytes are bytes. */
                *big = order == '>' || (order == '=' && !kdh__host_is_le());
                return 0;
            }
    }
    return kdh__err(err, "%s: unsupported dtype '%s' (supported: f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 "
                    "b1)", path, d);
}

static int npy_read(kdh__src *s, const kdh_read_opts *opts, kdh_tensor *out, kdh_error *err)
{
    const char *path = s->name;
    memset(out, 0, sizeof *out);
    if (s->size > kdh__max_bytes(opts))
        return kdh__err(err, "%s: %" PRIu64 " bytes, more than the limit of %" PRIu64, path,
                        s->size, kdh__max_bytes(opts));
    if (s->size == 0) return kdh__err(err, "%s: file is empty, not a .npy file", path);
    unsigned char pre[12];
    size_t have = s->size < sizeof pre ? (size_t)s->size : sizeof pre;
    if (kdh__src_read(s, 0, pre, have, err) != 0) return -1;
    if (have < 6 || memcmp(pre, NPY_MAGIC, 6) != 0)
        return kdh__err(err, "%s: not a .npy file (wrong magic)", path);
    if (have < 10) return kdh__err(err, "%s: truncated header (%zu bytes)", path, have);
    unsigned major = pre[6], minor = pre[7];
    uint64_t hlen, start;
    if (major == 1) {
        hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8;
        start = 10;
    } else if (major == 2 || major == 3) {
        if (have < 12) return kdh__err(err, "%s: truncated header (%zu bytes)", path, have);
        hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 | (uint64_t)pre[11] << 24;
        start = 12;
    } else {
        return kdh__err(err, "%s: unsupported .npy format version %u.%u", path, major, minor);
    }
    if (minor != 0)
        return kdh__err(err, "%s: unsupported .npy format version %u.%u", path, major, minor);
    if (hlen > s->size - start)
        return kdh__err(err, "%s: header length %" PRIu64 " exceeds the file size (%" PRIu64
                        " bytes): truncated header", path, hlen, s->size);
    if (hlen > NPY_MAX_HEADER)
        return kdh__err(err, "%s: header length %" PRIu64 " exceeds the limit of %u bytes", path,
                        hlen, NPY_MAX_HEADER);
    char *text = malloc((size_t)hlen + 1);
    if (!text) return kdh__err(err, "%s: out of memory", path);
    if (kdh__src_read(s, start, text, (size_t)hlen, err) != 0) {
        free(text);
        return -1;
    }
    text[hlen] = 0;
    /* Versions 1 and 2 are latin-1, 3 is UTF-8; the subset we accept is
     * ASCII either way, so bytes outside it fail as syntax errors. */
    npy_parser ps = {text, text + hlen, path, err};
    npy_header h;
    int rc = parse_header(&ps, &h);
    free(text);
    if (rc != 0) return -1;

    kdh_dtype dt = KDH_F32;
    bool big = false;
    if (parse_descr(h.descr, path, &dt, &big, err) != 0) return -1;
    /* Fortran order of a vector or a scalar is the same layout as C order. */
    if (h.fortran && h.rank > 1)
        return kdh__err(err, "%s: fortran_order True is not supported (save the array in C "
                        "order, e.g. with np.ascontiguousarray)", path);
    uint64_t need = kdh_dtype_size(dt);
    bool overflow = false, zero = false;
    for (int i = 0; i < h.rank; i++) {
        if (!kdh__mul_u64(need, (uint64_t)h.shape[i], &need)) overflow = true;
        if (h.shape[i] == 0) zero = true;
    }
    if (zero) { need = 0; overflow = false; }
    uint64_t data = start + hlen, have_data = s->size - data;
    char sb[256];
    kdh_shape_str(h.rank, h.shape, sb, sizeof sb);
    if (overflow)
        return kdh__err(err, "%s: shape %s of '%s' overflows 64 bits", path, sb, h.descr);
    if (need != have_data)
        return kdh__err(err, "%s: shape %s of '%s' needs %" PRIu64 " data bytes but the file has %"
                        PRIu64, path, sb, h.descr, need, have_data);
    if (kdh_tensor_alloc(out, NULL, dt, h.rank, h.shape, err) != 0) return -1;
    if (kdh__src_read(s, data, out->data, out->nbytes, err) != 0) {
        kdh_tensor_free(out);
        return -1;
    }
    if (big == kdh__host_is_le()) {
        size_t es = kdh_dtype_size(dt);
        kdh__swap_bytes(out->data, out->nbytes / es, es);
    }
    return 0;
}

int kdh_npy_read(const char *path, const kdh_read_opts *opts, kdh_tensor *out, kdh_error *err)
{
    kdh__src s;
    memset(out, 0, sizeof *out);
    if (kdh__src_open(&s, path, opts, err) != 0) return -1;
    int rc = npy_read(&s, opts, out, err);
    kdh__src_close(&s);
    return rc;
}

int kdh_npy_read_mem(const void *buf, size_t len, const char *name, const kdh_read_opts *opts,
                     kdh_tensor *out, kdh_error *err)
{
    kdh__src s;
    kdh__src_mem(&s, buf, len, name);
    return npy_read(&s, opts, out, err);
}

/* ---- writing ----------------------------------------------------------- */

typedef struct npy_writer {
    const char *path;
    const kdh_tensor *t;
    char header[1024];
    size_t header_len;
} npy_writer;

static int npy_write_fn(FILE *f, void *ctx, kdh_error *err)
{
    const npy_writer *w = ctx;
    if (kdh_fwrite_all(f, w->header, w->header_len, w->path, err) != 0) return -1;
    size_t es = kdh_dtype_size(w->t->dtype);
    if (kdh__host_is_le() || es == 1) return kdh_fwrite_all(f, w->t->data, w->t->nbytes, w->path, err);
    unsigned char chunk[65536];
    for (size_t at = 0; at < w->t->nbytes; at += sizeof chunk) {
        size_t k = w->t->nbytes - at < sizeof chunk ? w->t->nbytes - at : sizeof chunk;
        memcpy(chunk, (const unsigned char *)w->t->data + at, k);
        kdh__swap_bytes(chunk, k / es, es);
        if (kdh_fwrite_all(f, chunk, k, w->path, err) != 0) return -1;
    }
    return 0;
}

int kdh_npy_write(const char *path, const kdh_tensor *t, kdh_error *err)
{
    const char *descr = NULL;
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (npy_types[i].dtype == t->dtype) descr = npy_types[i].code;
    if (!descr)
        return kdh__err(err, "%s: dtype %s has no .npy equivalent", path, kdh_dtype_name(t->dtype));
    size_t nb;
    if (kdh_shape_bytes(t->dtype, t->rank, t->shape, &nb) != 0 || nb != t->nbytes)
        return kdh__err(err, "%s: %zu data bytes do not match the shape and dtype", path, t->nbytes);
    if (!t->data && t->nbytes) return kdh__err(err, "%s: tensor has no data", path);

    /* Exactly what numpy.save writes: sorted keys, repr() of the shape,
     * spare spaces for the first axis to grow, then spaces and '\n' so the
     * data starts at a multiple of 64. */
    npy_writer *w = calloc(1, sizeof *w);
    if (!w) return kdh__err(err, "%s: out of memory", path);
    char dict[512], shape[256];
    size_t at = 0;
    shape[0] = 0;
    at += (size_t)snprintf(shape, sizeof shape, "(");
    for (int i = 0; i < t->rank; i++)
        at += (size_t)snprintf(shape + at, sizeof shape - at, "%s%" PRId64, i ? ", " : "", t->shape[i]);
    snprintf(shape + at, sizeof shape - at, "%s)", t->rank == 1 ? "," : "");
    int dl = snprintf(dict, sizeof dict, "{'descr': '%c%s', 'fortran_order': False, 'shape': %s, }",
                      kdh_dtype_size(t->dtype) == 1 ? '|' : '<', descr, shape);
    size_t hlen = (size_t)dl;
    if (t->rank > 0) {
        char first[32];
        int fl = snprintf(first, sizeof first, "%" PRId64, t->shape[0]);
        size_t pad = fl < NPY_GROWTH_DIGITS ? (size_t)(NPY_GROWTH_DIGITS - fl) : 0;
        memset(dict + hlen, ' ', pad);
        hlen += pad;
    }
    size_t total = 10 + hlen + 1;                 /* magic, version, length, dict, '\n' */
    size_t pad = NPY_ALIGN - total % NPY_ALIGN;   /* 1..64, as NumPy computes it */
    size_t body = hlen + pad + 1;
    memcpy(w->header, NPY_MAGIC "\x01\x00", 8);
    w->header[8] = (char)(body & 0xFF);
    w->header[9] = (char)(body >> 8);
    memcpy(w->header + 10, dict, hlen);
    memset(w->header + 10 + hlen, ' ', pad);
    w->header[10 + hlen + pad] = '\n';
    w->header_len = 10 + body;
    w->path = path;
    w->t = t;
    int rc = kdh_atomic_write(path, npy_write_fn, w, err);
    free(w);
    return rc;
}
