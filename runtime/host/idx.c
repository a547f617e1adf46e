/* idx.c — IDX files, the format of MNIST and Fashion-MNIST:
 *
 *   0x00 0x00 TYPE NDIMS | NDIMS big-endian u32 dims | big-endian data
 *
 * TYPE 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64. The files
 * usually come gzip'd; we inflate with zlib ourselves (rather than gzread)
 * so that a truncated or corrupt stream is always an error and never
 * silently short data. */
#define _FILE_OFFSET_BITS 64
#include "host_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* Deflate cannot expand data more than about 1032:1; a gzip file that
 * claims more content than that is lying, and we refuse before allocating. */
#define GZ_MAX_RATIO 1032u

/* A byte stream over a plain or gzip'd file, or over a caller's buffer. */
typedef struct zin {
    FILE *f;                       /* NULL when reading from mem */
    const unsigned char *mem;
    size_t mem_pos;
    const char *path;
    uint64_t file_size;
    bool gz, z_ready, ended, eof;
    z_stream z;
    unsigned char in[1 << 16];
    size_t in_len;                 /* plain files: bytes in `in` not yet consumed from in_pos */
    size_t in_pos;
} zin;

/* Moves unread input to the front of the buffer and reads more. */
static int zin_fill(zin *s, kdh_error *err)
{
    size_t have = s->gz ? s->z.avail_in : s->in_len - s->in_pos;
    const unsigned char *from = s->gz ? s->z.next_in : s->in + s->in_pos;
    if (have && from != s->in) memmove(s->in, from, have);
    size_t got = 0;
    if (!s->eof) {
        if (s->f) {
            got = fread(s->in + have, 1, sizeof s->in - have, s->f);
        } else {
            got = (size_t)s->file_size - s->mem_pos;
            if (got > sizeof s->in - have) got = sizeof s->in - have;
            if (got) memcpy(s->in + have, s->mem + s->mem_pos, got);
            s->mem_pos += got;
        }
        if (got == 0) {
            if (s->f && ferror(s->f))
                return kdh__err(err, "%s: read failed: %s", s->path, strerror(errno));
            s->eof = true;
        }
    }
    if (s->gz) {
        s->z.next_in = s->in;
        s->z.avail_in = (uInt)(have + got);
    } else {
        s->in_pos = 0;
        s->in_len = have + got;
    }
    return 0;
}

static int zin_start(zin *s, kdh_error *err);

static int zin_open(zin *s, const char *path, kdh_error *err)
{
    memset(s, 0, sizeof *s);
    s->path = path;
    int fd;
    if (kdh__open_regular(path, &fd, &s->file_size, err) != 0) return -1;
    s->f = fdopen(fd, "rb");
    if (!s->f) {
        close(fd);
        return kdh__err(err, "%s: cannot read: %s", path, strerror(errno));
    }
    return zin_start(s, err);
}

/* Reads the first block and detects gzip. */
static int zin_start(zin *s, kdh_error *err)
{
    const char *path = s->path;
    if (zin_fill(s, err) != 0) return -1;
    if (s->in_len >= 2 && s->in[0] == 0x1f && s->in[1] == 0x8b) {
        s->gz = true;
        /* 15 + 16: a 32 KiB window, gzip wrapper only. */
        if (inflateInit2(&s->z, 15 + 16) != Z_OK)
            return kdh__err(err, "%s: cannot start gzip decompression", path);
        s->z_ready = true;
        s->z.next_in = s->in;
        s->z.avail_in = (uInt)s->in_len;
    }
    return 0;
}

static void zin_close(zin *s)
{
    if (s->z_ready) inflateEnd(&s->z);
    if (s->f) fclose(s->f);
    s->f = NULL;
    s->z_ready = false;
}

/* Reads up to n bytes into dst; *got < n only at the clean end of the
 * content. A gzip stream cut short, corrupt, or followed by junk is an
 * error. */
static int zin_read(zin *s, void *dst, size_t n, size_t *got, kdh_error *err)
{
    unsigned char *out = dst;
    *got = 0;
    if (!s->gz) {
        while (*got < n) {
            if (s->in_pos == s->in_len) {
                if (zin_fill(s, err) != 0) return -1;
                if (s->in_len == 0) break;
            }
            size_t k = s->in_len - s->in_pos;
            if (k > n - *got) k = n - *got;
            memcpy(out + *got, s->in + s->in_pos, k);
            s->in_pos += k;
            *got += k;
        }
        return 0;
    }
    while (*got < n) {
        if (s->ended) {
            /* After a member: end of file, another member (gzip allows
             * concatenation), or junk. */
            if (s->z.avail_in < 2 && !s->eof && zin_fill(s, err) != 0) return -1;
            if (s->z.avail_in == 0) return 0;
            if (s->z.avail_in < 2 || s->z.next_in[0] != 0x1f || s->z.next_in[1] != 0x8b)
                return kdh__err(err, "%s: unexpected data after the gzip stream", s->path);
            if (inflateReset(&s->z) != Z_OK)
                return kdh__err(err, "%s: cannot restart gzip decompression", s->path);
            s->ended = false;
        }
        if (s->z.avail_in == 0 && !s->eof && zin_fill(s, err) != 0) return -1;
        size_t want = n - *got;
        if (want > UINT_MAX) want = UINT_MAX;
        s->z.next_out = out + *got;
        s->z.avail_out = (uInt)want;
        int ret = inflate(&s->z, Z_NO_FLUSH);
        *got += want - s->z.avail_out;
        switch (ret) {
        case Z_OK:
            break;
        case Z_STREAM_END:
            s->ended = true;
            break;
        case Z_BUF_ERROR:
            /* No progress possible. We refill before every call, so input
             * has run out for good: the stream was cut short. Returning
             * here also guarantees the loop cannot spin. */
            if (s->z.avail_in == 0 && s->eof)
                return kdh__err(err, "%s: truncated gzip stream", s->path);
            return kdh__err(err, "%s: corrupt gzip stream (no progress)", s->path);
        case Z_MEM_ERROR:
            return kdh__err(err, "%s: out of memory decompressing", s->path);
        default:
            return kdh__err(err, "%s: corrupt gzip stream (%s)", s->path,
                            s->z.msg ? s->z.msg : "invalid data");
        }
    }
    return 0;
}

static const struct {
    unsigned char code;
    kdh_dtype dtype;
} idx_types[] = {
    {0x08, KDH_U8}, {0x09, KDH_I8}, {0x0B, KDH_I16}, {0x0C, KDH_I32}, {0x0D, KDH_F32}, {0x0E, KDH_F64},
};

static int idx_read(zin *s, const kdh_read_opts *opts, kdh_tensor *out, kdh_error *err)
{
    const char *path = s->path;
    unsigned char magic[4];
    size_t got;
    if (zin_read(s, magic, 4, &got, err) != 0) return -1;
    if (got == 0) return kdh__err(err, "%s: file is empty, not an IDX file", path);
    if (got < 4) return kdh__err(err, "%s: truncated header (%zu bytes)", path, got);
    uint32_t m = (uint32_t)magic[0] << 24 | (uint32_t)magic[1] << 16 | (uint32_t)magic[2] << 8 | magic[3];
    if (magic[0] != 0 || magic[1] != 0)
        return kdh__err(err, "%s: not an IDX file (magic 0x%08" PRIx32 ")", path, m);
    kdh_dtype dt = KDH_U8;
    bool known = false;
    for (size_t i = 0; i < sizeof idx_types / sizeof idx_types[0]; i++)
        if (idx_types[i].code == magic[2]) {
            dt = idx_types[i].dtype;
            known = true;
        }
    if (!known)
        return kdh__err(err, "%s: unsupported IDX element type 0x%02x (magic 0x%08" PRIx32 ")",
                        path, magic[2], m);
    int rank = magic[3];
    if (rank == 0 || rank > KDH_MAX_RANK)
        return kdh__err(err, "%s: IDX file has %d dimensions, supported are 1..%d", path, rank,
                        KDH_MAX_RANK);
    unsigned char db[4 * KDH_MAX_RANK];
    if (zin_read(s, db, 4 * (size_t)rank, &got, err) != 0) return -1;
    if (got < 4 * (size_t)rank)
        return kdh__err(err, "%s: truncated header: %d dimensions need %d bytes, the file has %zu",
                        path, rank, 4 * rank, got);
    int64_t shape[KDH_MAX_RANK];
    uint64_t need = kdh_dtype_size(dt);
    bool overflow = false;
    for (int i = 0; i < rank; i++) {
        const unsigned char *p = db + 4 * i;
        shape[i] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
        if (!kdh__mul_u64(need, (uint64_t)shape[i], &need)) overflow = true;
    }
    for (int i = 0; i < rank; i++)
        if (shape[i] == 0) { overflow = false; need = 0; }
    char sb[256];
    kdh_shape_str(rank, shape, sb, sizeof sb);
    uint64_t max = kdh__max_bytes(opts);
    if (overflow || need > max)
        return kdh__err(err, "%s: dimensions %s of %s need more than the limit of %" PRIu64
                        " bytes", path, sb, kdh_dtype_name(dt), max);
    uint64_t header = 4 + 4 * (uint64_t)rank;
    if (!s->gz && s->file_size != header + need)
        return kdh__err(err, "%s: dimensions %s of %s need %" PRIu64 " data bytes but the file "
                        "has %" PRIu64, path, sb, kdh_dtype_name(dt), need,
                        s->file_size >= header ? s->file_size - header : 0);
    if (s->gz && need / GZ_MAX_RATIO > s->file_size)
        return kdh__err(err, "%s: dimensions %s of %s need %" PRIu64 " data bytes, more than a "
                        "%" PRIu64 "-byte gzip file can hold: truncated gzip stream or corrupt "
                        "header", path, sb, kdh_dtype_name(dt), need, s->file_size);

    if (kdh_tensor_alloc(out, NULL, dt, rank, shape, err) != 0) return -1;
    if (zin_read(s, out->data, out->nbytes, &got, err) != 0) goto fail;
    if (got < out->nbytes) {
        kdh__err(err, "%s: dimensions %s of %s need %zu data bytes but the content ends after %zu",
                 path, sb, kdh_dtype_name(dt), out->nbytes, got);
        goto fail;
    }
    /* Read one more byte: it both finds extra data and makes zlib check
     * the gzip trailer (CRC and length) of the last member. */
    unsigned char extra;
    if (zin_read(s, &extra, 1, &got, err) != 0) goto fail;
    if (got) {
        kdh__err(err, "%s: extra data after the %zu bytes that dimensions %s of %s need", path,
                 out->nbytes, sb, kdh_dtype_name(dt));
        goto fail;
    }
    if (kdh__host_is_le()) {
        size_t es = kdh_dtype_size(dt);
        kdh__swap_bytes(out->data, out->nbytes / es, es);
    }
    return 0;
fail:
    kdh_tensor_free(out);
    return -1;
}

int kdh_idx_read(const char *path, const kdh_read_opts *opts, kdh_tensor *out, kdh_error *err)
{
    memset(out, 0, sizeof *out);
    zin *s = malloc(sizeof *s);   /* 64 KiB input buffer: not on the stack */
    if (!s) return kdh__err(err, "%s: out of memory", path);
    int rc = zin_open(s, path, err);
    if (rc == 0) rc = idx_read(s, opts, out, err);
    zin_close(s);
    free(s);
    return rc;
}

int kdh_idx_read_mem(const void *buf, size_t len, const char *name, const kdh_read_opts *opts,
                     kdh_tensor *out, kdh_error *err)
{
    memset(out, 0, sizeof *out);
    zin *s = malloc(sizeof *s);
    if (!s) return kdh__err(err, "%s: out of memory", name);
    memset(s, 0, sizeof *s);
    s->path = name;
    s->mem = buf;
    s->file_size = len;
    int rc = zin_start(s, err);
    if (rc == 0) rc = idx_read(s, opts, out, err);
    zin_close(s);
    free(s);
    return rc;
}

/* DIR/SPLIT-KIND-ubyte.gz if it exists, else the uncompressed name. */
static char *mnist_path(const char *dir, const char *split, const char *kind)
{
    size_t n = strlen(dir) + strlen(split) + strlen(kind) + 32;
    char *p = malloc(n);
    if (!p) return NULL;
    snprintf(p, n, "%s/%s-%s-ubyte.gz", dir, split, kind);
    if (access(p, F_OK) != 0) snprintf(p, n, "%s/%s-%s-ubyte", dir, split, kind);
    return p;
}

int kdh_mnist_read(const char *dir, const char *split, const kdh_read_opts *opts,
                   kdh_tensor *images, kdh_tensor *labels, kdh_error *err)
{
    memset(images, 0, sizeof *images);
    memset(labels, 0, sizeof *labels);
    char *ip = mnist_path(dir, split, "images-idx3");
    char *lp = mnist_path(dir, split, "labels-idx1");
    int rc = -1;
    if (!ip || !lp) {
        kdh__err(err, "%s: out of memory", dir);
        goto done;
    }
    if (kdh_idx_read(ip, opts, images, err) != 0) goto done;
    if (images->dtype != KDH_U8 || images->rank != 3) {
        char sb[256];
        kdh__err(err, "%s: expected u8 images [n, rows, cols], found %s %s", ip,
                 kdh_dtype_name(images->dtype), kdh_shape_str(images->rank, images->shape, sb, sizeof sb));
        goto done;
    }
    if (kdh_idx_read(lp, opts, labels, err) != 0) goto done;
    if (labels->dtype != KDH_U8 || labels->rank != 1) {
        char sb[256];
        kdh__err(err, "%s: expected u8 labels [n], found %s %s", lp,
                 kdh_dtype_name(labels->dtype), kdh_shape_str(labels->rank, labels->shape, sb, sizeof sb));
        goto done;
    }
    if (labels->shape[0] != images->shape[0]) {
        kdh__err(err, "%s: %" PRId64 " labels for %" PRId64 " images in %s", lp,
                 labels->shape[0], images->shape[0], ip);
        goto done;
    }
    const uint8_t *l = labels->data;
    for (int64_t i = 0; i < labels->shape[0]; i++)
        if (l[i] > 9) {
            kdh__err(err, "%s: label %u at index %" PRId64 " is outside 0..9", lp, l[i], i);
            goto done;
        }
    rc = 0;
done:
    if (rc != 0) {
        kdh_tensor_free(images);
        kdh_tensor_free(labels);
    }
    free(ip);
    free(lp);
    return rc;
}
