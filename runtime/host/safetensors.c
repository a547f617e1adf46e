/* safetensors.c — weights and checkpoints in the safetensors format:
 *
 *   u64 little-endian N | N bytes of UTF-8 JSON | raw little-endian data
 *
 * The JSON maps tensor names to {"dtype", "shape", "data_offsets": [b, e]}
 * (offsets relative to the data section) plus an optional "__metadata__"
 * object of strings. The header is parsed with cJSON; everything it says is
 * checked against the real file before any tensor is allocated. */
#define _FILE_OFFSET_BITS 64
#include "host_internal.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The reference library allows 100 MB, but cJSON spends ~10x the text size
 * on its tree; 16 MiB holds ~150k tensor entries, far beyond any model. */
#define ST_MAX_HEADER ((uint64_t)16 << 20)
/* JSON numbers are doubles in cJSON: beyond 2^53 they are not exact. */
#define ST_MAX_INT 9007199254740992.0

typedef struct st_entry {
    const char *name;              /* points into the cJSON tree */
    kdh_dtype dtype;
    int rank;
    int64_t shape[KDH_MAX_RANK];
    uint64_t begin, end;
} st_entry;

/* A JSON number that is an exact non-negative integer below 2^53. */
static bool json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j)) return false;
    double v = j->valuedouble;
    if (!(v >= 0) || v > ST_MAX_INT || v != floor(v)) return false;
    *out = (uint64_t)v;
    return true;
}

/* JSON whitespace; unlike strchr(" \t\r\n", c) this rejects NUL. */
static bool json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int cmp_name(const void *a, const void *b)
{
    const st_entry *x = *(st_entry *const *)a, *y = *(st_entry *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_offsets(const void *a, const void *b)
{
    const st_entry *x = *(st_entry *const *)a, *y = *(st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* One tensor entry of the header, checked in isolation. */
static int parse_entry(const cJSON *j, uint64_t data_size, st_entry *e, const char *path,
                       kdh_error *err)
{
    const char *nm = e->name;
    if (!cJSON_IsObject(j))
        return kdh__err(err, "%s: tensor \"%.200s\": entry is not a JSON object", path, nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!dt || !sh || !off)
        return kdh__err(err, "%s: tensor \"%.200s\": missing \"%s\"", path, nm,
                        !dt ? "dtype" : !sh ? "shape" : "data_offsets");
    if (!cJSON_IsString(dt))
        return kdh__err(err, "%s: tensor \"%.200s\": dtype is not a string", path, nm);
    if (kdh_dtype_from_name(dt->valuestring, &e->dtype) != 0)
        return kdh__err(err, "%s: tensor \"%.200s\": unknown or unsupported dtype \"%.40s\"",
                        path, nm, dt->valuestring);
    if (!cJSON_IsArray(sh))
        return kdh__err(err, "%s: tensor \"%.200s\": shape is not a list", path, nm);
    int rank = cJSON_GetArraySize(sh);
    if (rank > KDH_MAX_RANK)
        return kdh__err(err, "%s: tensor \"%.200s\": rank %d exceeds the maximum of %d", path,
                        nm, rank, KDH_MAX_RANK);
    e->rank = rank;
    uint64_t need = kdh_dtype_size(e->dtype);
    bool overflow = false;
    int i = 0;
    for (const cJSON *d = sh->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_uint(d, &v))
            return kdh__err(err, "%s: tensor \"%.200s\": shape[%d] is not a non-negative "
                            "integer below 2^53", path, nm, i);
        e->shape[i] = (int64_t)v;
        if (!kdh__mul_u64(need, v, &need)) overflow = true;
    }
    char sb[256];
    kdh_shape_str(rank, e->shape, sb, sizeof sb);
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
        !json_uint(off->child, &e->begin) || !json_uint(off->child->next, &e->end))
        return kdh__err(err, "%s: tensor \"%.200s\": data_offsets must be a list of two "
                        "non-negative integers", path, nm);
    if (e->begin > e->end)
        return kdh__err(err, "%s: tensor \"%.200s\": data offsets [%" PRIu64 ", %" PRIu64
                        ") end before they begin", path, nm, e->begin, e->end);
    if (e->end > data_size)
        return kdh__err(err, "%s: tensor \"%.200s\": data offsets [%" PRIu64 ", %" PRIu64
                        ") exceed the data section (%" PRIu64 " bytes)", path, nm, e->begin,
                        e->end, data_size);
    /* Zero-size dimensions make the product 0 whatever overflowed before. */
    for (i = 0; i < rank; i++)
        if (e->shape[i] == 0) { overflow = false; need = 0; }
    if (overflow)
        return kdh__err(err, "%s: tensor \"%.200s\": shape %s of %s overflows 64 bits", path,
                        nm, sb, kdh_dtype_name(e->dtype));
    if (need != e->end - e->begin)
        return kdh__err(err, "%s: tensor \"%.200s\": shape %s of %s needs %" PRIu64
                        " bytes but data offsets [%" PRIu64 ", %" PRIu64 ") hold %" PRIu64,
                        path, nm, sb, kdh_dtype_name(e->dtype), need, e->begin, e->end,
                        e->end - e->begin);
    return 0;
}

static int parse_metadata(const cJSON *j, const char *path, kdh_tensor_list *out, kdh_error *err)
{
    if (!cJSON_IsObject(j))
        return kdh__err(err, "%s: \"__metadata__\" is not a JSON object", path);
    for (const cJSON *m = j->child; m; m = m->next) {
        if (!cJSON_IsString(m))
            return kdh__err(err, "%s: \"__metadata__\" entry \"%.200s\" is not a string", path,
                            m->string);
        if (kdh_list_get_meta(out, m->string))
            return kdh__err(err, "%s: duplicate \"__metadata__\" key \"%.200s\"", path,
                            m->string);
        if (kdh_list_set_meta(out, m->string, m->valuestring, err) != 0) return -1;
    }
    return 0;
}

static int st_read(kdh__src *s, const kdh_read_opts *opts, kdh_tensor_list *out, kdh_error *err)
{
    const char *path = s->name;
    kdh_list_init(out);
    if (s->size > kdh__max_bytes(opts))
        return kdh__err(err, "%s: %" PRIu64 " bytes, more than the limit of %" PRIu64, path,
                        s->size, kdh__max_bytes(opts));
    if (s->size == 0) return kdh__err(err, "%s: file is empty, not a safetensors file", path);
    if (s->size < 8)
        return kdh__err(err, "%s: truncated header: file is %" PRIu64 " bytes, the header "
                        "length alone takes 8", path, s->size);
    unsigned char lb[8];
    if (kdh__src_read(s, 0, lb, 8, err) != 0) return -1;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | lb[i];
    if (n > s->size - 8)
        return kdh__err(err, "%s: header length %" PRIu64 " exceeds the file size (%" PRIu64
                        " bytes): not a safetensors file, or truncated", path, n, s->size);
    if (n > ST_MAX_HEADER)
        return kdh__err(err, "%s: header length %" PRIu64 " exceeds the limit of %" PRIu64
                        " bytes", path, n, ST_MAX_HEADER);
    if (n < 2) return kdh__err(err, "%s: header length %" PRIu64 " is too small", path, n);
    uint64_t data_start = 8 + n, data_size = s->size - data_start;

    /* A NUL-terminated copy: cJSON then cannot read past the header even
     * if it looks one byte ahead. */
    char *hdr = malloc((size_t)n + 1);
    if (!hdr) return kdh__err(err, "%s: out of memory reading the header", path);
    if (kdh__src_read(s, 8, hdr, (size_t)n, err) != 0) {
        free(hdr);
        return -1;
    }
    hdr[n] = 0;
    size_t ok = kdh__utf8_valid_prefix((const unsigned char *)hdr, (size_t)n);
    if (ok != n) {
        free(hdr);
        return kdh__err(err, "%s: header is not valid UTF-8 (byte %zu)", path, ok);
    }
    size_t first = 0;
    while (first < n && json_space(hdr[first])) first++;
    if (first == n || hdr[first] != '{') {
        free(hdr);
        return kdh__err(err, "%s: header is not a JSON object (not a safetensors file?)", path);
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)n, &end, 0);
    if (!root) {
        size_t at = end && end >= hdr && end <= hdr + n ? (size_t)(end - hdr) : 0;
        free(hdr);
        return kdh__err(err, "%s: header is not valid JSON (error at header byte %zu)", path, at);
    }
    /* The reference pads with spaces; anything else after the object is junk. */
    for (const char *p = end; p < hdr + n; p++)
        if (!json_space(*p)) {
            size_t at = (size_t)(p - hdr);
            cJSON_Delete(root);
            free(hdr);
            return kdh__err(err, "%s: header is not valid JSON (trailing characters at "
                            "header byte %zu)", path, at);
        }

    int rc = -1;
    st_entry *ents = NULL;
    st_entry **order = NULL;
    size_t count = 0;
    bool seen_meta = false;
    for (const cJSON *c = root->child; c; c = c->next) count++;
    ents = calloc(count ? count : 1, sizeof *ents);
    order = calloc(count ? count : 1, sizeof *order);
    if (!ents || !order) {
        kdh__err(err, "%s: out of memory", path);
        goto done;
    }
    size_t nt = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            if (seen_meta) {
                kdh__err(err, "%s: duplicate \"__metadata__\"", path);
                goto done;
            }
            seen_meta = true;
            if (parse_metadata(c, path, out, err) != 0) goto done;
            continue;
        }
        ents[nt].name = c->string;
        if (parse_entry(c, data_size, &ents[nt], path, err) != 0) goto done;
        order[nt] = &ents[nt];
        nt++;
    }
    /* Duplicates and overlaps by sorting: O(n log n) even for a hostile
     * header with a hundred thousand entries. */
    qsort(order, nt, sizeof *order, cmp_name);
    for (size_t i = 1; i < nt; i++)
        if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
            kdh__err(err, "%s: duplicate tensor \"%.200s\"", path, order[i]->name);
            goto done;
        }
    qsort(order, nt, sizeof *order, cmp_offsets);
    const st_entry *prev = NULL;
    for (size_t i = 0; i < nt; i++) {
        const st_entry *e = order[i];
        if (e->begin == e->end) continue;   /* empty tensors occupy nothing */
        if (prev && e->begin < prev->end) {
            kdh__err(err, "%s: tensor \"%.200s\": data offsets [%" PRIu64 ", %" PRIu64
                     ") overlap tensor \"%.200s\" at [%" PRIu64 ", %" PRIu64 ")", path, e->name,
                     e->begin, e->end, prev->name, prev->begin, prev->end);
            goto done;
        }
        /* The tensors tile the data: the reference reader refuses bytes
         * that belong to no tensor (InvalidOffset), between them as after. */
        uint64_t expected = prev ? prev->end : 0;
        if (e->begin > expected) {
            kdh__err(err, "%s: tensor \"%.200s\" starts at data byte %" PRIu64 ", but the data before it ends at %" PRIu64
                     ": %" PRIu64 " bytes belong to no tensor (the file is damaged or not what its header says)",
                     path, e->name, e->begin, expected, e->begin - expected);
            goto done;
        }
        prev = e;
    }
    /* The data ends where the last tensor ends: the reference reader refuses
     * bytes after it (MetadataIncompleteBuffer), and so does kdsl: a file
     * with more is damaged (two files concatenated, a write that went on)
     * or not what its header says. */
    uint64_t data_end = prev ? prev->end : 0;
    if (data_end != data_size) {
        kdh__err(err, "%s: %" PRIu64 " bytes after the end of the tensor data (the tensors end at data byte %" PRIu64
                 " of %" PRIu64 "): the file is damaged or not what its header says",
                 path, data_size - data_end, data_end, data_size);
        goto done;
    }

    bool swap = !kdh__host_is_le();
    for (size_t i = 0; i < nt; i++) {
        const st_entry *e = &ents[i];
        kdh_tensor t;
        if (kdh_tensor_alloc(&t, e->name, e->dtype, e->rank, e->shape, err) != 0) goto done;
        if (kdh__src_read(s, data_start + e->begin, t.data, t.nbytes, err) != 0 ||
            kdh__list_append(out, &t, err) != 0) {
            kdh_tensor_free(&t);
            goto done;
        }
        if (swap) {
            kdh_tensor *last = &out->items[out->count - 1];
            size_t es = kdh_dtype_size(last->dtype);
            kdh__swap_bytes(last->data, last->nbytes / es, es);
        }
    }
    rc = 0;
done:
    free(order);
    free(ents);
    cJSON_Delete(root);
    free(hdr);
    if (rc != 0) kdh_list_free(out);
    return rc;
}

int kdh_safetensors_read(const char *path, const kdh_read_opts *opts, kdh_tensor_list *out,
                         kdh_error *err)
{
    kdh__src s;
    kdh_list_init(out);
    if (kdh__src_open(&s, path, opts, err) != 0) return -1;
    int rc = st_read(&s, opts, out, err);
    kdh__src_close(&s);
    return rc;
}

int kdh_safetensors_read_mem(const void *buf, size_t len, const char *name,
                             const kdh_read_opts *opts, kdh_tensor_list *out, kdh_error *err)
{
    kdh__src s;
    kdh__src_mem(&s, buf, len, name);
    return st_read(&s, opts, out, err);
}

/* ---- writing ----------------------------------------------------------- */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    bool oom;
} strbuf;

static void sb_putn(strbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) { b->oom = true; return; }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_puts(strbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }

/* A JSON string escaped as serde_json (the reference library) escapes it,
 * so our headers are byte-identical to the reference's for the same input. */
static void sb_json_string(strbuf *b, const char *s)
{
    sb_putn(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': sb_puts(b, "\\\""); break;
        case '\\': sb_puts(b, "\\\\"); break;
        case '\b': sb_puts(b, "\\b"); break;
        case '\f': sb_puts(b, "\\f"); break;
        case '\n': sb_puts(b, "\\n"); break;
        case '\r': sb_puts(b, "\\r"); break;
        case '\t': sb_puts(b, "\\t"); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                sb_puts(b, esc);
            } else {
                sb_putn(b, (const char *)p, 1);
            }
        }
    }
    sb_putn(b, "\"", 1);
}

typedef struct st_writer {
    const char *path;
    const kdh_tensor *tensors;
    size_t count;
    const char *header;
    size_t header_len;
} st_writer;

static int st_write_fn(FILE *f, void *ctx, kdh_error *err)
{
    const st_writer *w = ctx;
    unsigned char lb[8];
    uint64_t n = w->header_len;
    for (int i = 0; i < 8; i++) lb[i] = (unsigned char)(n >> (8 * i));
    if (kdh_fwrite_all(f, lb, 8, w->path, err) != 0 ||
        kdh_fwrite_all(f, w->header, w->header_len, w->path, err) != 0)
        return -1;
    bool swap = !kdh__host_is_le();
    for (size_t i = 0; i < w->count; i++) {
        const kdh_tensor *t = &w->tensors[i];
        size_t es = kdh_dtype_size(t->dtype);
        if (!swap || es == 1) {
            if (kdh_fwrite_all(f, t->data, t->nbytes, w->path, err) != 0) return -1;
            continue;
        }
        /* Big-endian host: little-endian copies a chunk at a time, so the
         * caller's (maybe borrowed, maybe const) buffer is never touched. */
        unsigned char chunk[65536];
        for (size_t at = 0; at < t->nbytes; at += sizeof chunk) {
            size_t k = t->nbytes - at < sizeof chunk ? t->nbytes - at : sizeof chunk;
            memcpy(chunk, (const unsigned char *)t->data + at, k);
            kdh__swap_bytes(chunk, k / es, es);
            if (kdh_fwrite_all(f, chunk, k, w->path, err) != 0) return -1;
        }
    }
    return 0;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Names must be unique; returns the first duplicate or NULL. */
static const char *find_duplicate(const char **names, size_t n)
{
    qsort(names, n, sizeof *names, cmp_str_ptr);
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) return names[i];
    return NULL;
}

static bool valid_utf8(const char *s)
{
    size_t n = strlen(s);
    return kdh__utf8_valid_prefix((const unsigned char *)s, n) == n;
}

int kdh_safetensors_write(const char *path, const kdh_tensor *tensors, size_t count,
                          const kdh_meta *meta, size_t nmeta, kdh_error *err)
{
    return kdh_safetensors_write_also(path, tensors, count, meta, nmeta, NULL, 0, err);
}

int kdh_safetensors_write_also(const char *path, const kdh_tensor *tensors, size_t count, const kdh_meta *meta,
                               size_t nmeta, const kdh_atomic_out *also, int nalso, kdh_error *err)
{
    /* Validate everything before touching the disk. */
    for (size_t i = 0; i < count; i++) {
        const kdh_tensor *t = &tensors[i];
        size_t nb;
        if (!t->name) return kdh__err(err, "%s: tensor %zu has no name", path, i);
        if (!valid_utf8(t->name))
            return kdh__err(err, "%s: tensor name \"%.200s\" is not valid UTF-8", path, t->name);
        if (strcmp(t->name, "__metadata__") == 0)
            return kdh__err(err, "%s: \"__metadata__\" cannot name a tensor", path);
        if (kdh_dtype_size(t->dtype) == 0)
            return kdh__err(err, "%s: tensor \"%.200s\": invalid dtype %d", path, t->name,
                            (int)t->dtype);
        if (kdh_shape_bytes(t->dtype, t->rank, t->shape, &nb) != 0 || nb != t->nbytes)
            return kdh__err(err, "%s: tensor \"%.200s\": %zu data bytes do not match its shape "
                            "and dtype", path, t->name, t->nbytes);
        if (!t->data && t->nbytes)
            return kdh__err(err, "%s: tensor \"%.200s\" has no data", path, t->name);
    }
    for (size_t i = 0; i < nmeta; i++) {
        if (!meta[i].key || !meta[i].value)
            return kdh__err(err, "%s: metadata entry %zu is incomplete", path, i);
        if (!valid_utf8(meta[i].key) || !valid_utf8(meta[i].value))
            return kdh__err(err, "%s: metadata \"%.200s\" is not valid UTF-8", path, meta[i].key);
    }
    size_t nn = count > nmeta ? count : nmeta;
    const char **names = malloc((nn ? nn : 1) * sizeof *names);
    if (!names) return kdh__err(err, "%s: out of memory", path);
    for (size_t i = 0; i < count; i++) names[i] = tensors[i].name;
    const char *dup = find_duplicate(names, count);
    if (dup) {
        kdh__err(err, "%s: duplicate tensor \"%.200s\"", path, dup);
        free(names);
        return -1;
    }
    for (size_t i = 0; i < nmeta; i++) names[i] = meta[i].key;
    dup = find_duplicate(names, nmeta);
    if (dup) {
        kdh__err(err, "%s: duplicate metadata key \"%.200s\"", path, dup);
        free(names);
        return -1;
    }
    free(names);

    /* The header, in the reference's compact form and key order. */
    strbuf b = {0};
    sb_puts(&b, "{");
    if (nmeta) {
        sb_puts(&b, "\"__metadata__\":{");
        for (size_t i = 0; i < nmeta; i++) {
            if (i) sb_puts(&b, ",");
            sb_json_string(&b, meta[i].key);
            sb_puts(&b, ":");
            sb_json_string(&b, meta[i].value);
        }
        sb_puts(&b, "}");
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < count; i++) {
        const kdh_tensor *t = &tensors[i];
        char num[64];
        if (i || nmeta) sb_puts(&b, ",");
        sb_json_string(&b, t->name);
        sb_puts(&b, ":{\"dtype\":\"");
        sb_puts(&b, kdh_dtype_name(t->dtype));
        sb_puts(&b, "\",\"shape\":[");
        for (int d = 0; d < t->rank; d++) {
            snprintf(num, sizeof num, "%s%" PRId64, d ? "," : "", t->shape[d]);
            sb_puts(&b, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", offset,
                 offset + t->nbytes);
        sb_puts(&b, num);
        offset += t->nbytes;   /* sizes are each < SIZE_MAX; the sum of real buffers fits */
    }
    sb_puts(&b, "}");
    /* Pad to 8 bytes so the data section starts aligned, as the reference does. */
    while (!b.oom && b.len % 8) sb_putn(&b, " ", 1);
    if (b.oom) {
        free(b.p);
        return kdh__err(err, "%s: out of memory building the header", path);
    }
    st_writer w = {path, tensors, count, b.p, b.len};
    int rc;
    if (nalso <= 0) rc = kdh_atomic_write(path, st_write_fn, &w, err);
    else {
        kdh_atomic_out *outs = malloc((size_t)(nalso + 1) * sizeof *outs);
        if (!outs) rc = kdh__err(err, "%s: out of memory", path);
        else {
            outs[0] = (kdh_atomic_out){path, st_write_fn, &w};
            memcpy(outs + 1, also, (size_t)nalso * sizeof *outs);
            rc = kdh_atomic_write_set(outs, nalso + 1, err);
            free(outs);
        }
    }
    free(b.p);
    return rc;
}

int kdh_safetensors_write_list(const char *path, const kdh_tensor_list *l, kdh_error *err)
{
    return kdh_safetensors_write(path, l->items, l->count, l->meta, l->nmeta, err);
}
