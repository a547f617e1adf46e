/* tensor_file.h — the host runtime's file input/output: in-memory tensors,
 * safetensors weights and checkpoints, IDX (MNIST), NumPy .npy and numeric
 * CSV data, and the atomic file replacement that keeps a good file good.
 *
 * Every function that can fail returns 0 on success and -1 on failure, and
 * on failure fills the caller's kdh_error with one line that names the file
 * and the problem (`w.safetensors: tensor "dense/kernel": ...`). Readers
 * treat every file as hostile: lengths are checked against the real file
 * size and a byte limit before anything is allocated, and products of
 * dimensions are checked for overflow. On failure the output arguments are
 * left empty (nothing to free), so callers free only after success.
 *
 * Sections: tensor.c (tensors, lists, checks), atomic_file.c,
 * safetensors.c, idx.c, npy.c, csv.c. Firmware never links any of this. */
#ifndef KDSL_TENSOR_FILE_H
#define KDSL_TENSOR_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- tensor.c ---------------------------------------------------------- */

#define KDH_MAX_RANK 8
/* Refuse files (and decompressed streams) larger than this unless the
 * caller raises it: 4 GiB is more than any model or data set here needs
 * and small enough that a lying length field cannot exhaust memory. */
#define KDH_DEFAULT_MAX_BYTES ((uint64_t)4 << 30)

typedef enum kdh_dtype {
    KDH_F32, KDH_F64, KDH_F16, KDH_BF16,
    KDH_I8, KDH_U8, KDH_I16, KDH_U16, KDH_I32, KDH_U32, KDH_I64, KDH_U64,
    KDH_BOOL,              /* one byte, 0 or 1 */
    KDH_DTYPE_COUNT
} kdh_dtype;

typedef struct kdh_error {
    char msg[512];
} kdh_error;

typedef struct kdh_read_opts {
    uint64_t max_bytes;    /* 0: KDH_DEFAULT_MAX_BYTES */
} kdh_read_opts;

/* A dense row-major tensor in host byte order. A tensor made by this
 * module owns `name` and `data` (kdh_tensor_free releases both); a caller
 * may also fill one by hand with borrowed pointers, e.g. a view into the
 * model's flat parameter buffer, to pass to a writer, and then must not
 * free it with kdh_tensor_free. */
typedef struct kdh_tensor {
    char *name;            /* NULL for unnamed data (IDX, npy, CSV) */
    kdh_dtype dtype;
    int rank;              /* 0..KDH_MAX_RANK; rank 0 is a scalar */
    int64_t shape[KDH_MAX_RANK];
    void *data;            /* nbytes bytes; never NULL in an owned tensor */
    size_t nbytes;         /* product(shape) * kdh_dtype_size(dtype) */
} kdh_tensor;

/* A `__metadata__` entry of a safetensors file: free-form strings. */
typedef struct kdh_meta {
    char *key;
    char *value;
} kdh_meta;

/* An owning list of named tensors plus metadata, in file order. */
typedef struct kdh_tensor_list {
    kdh_tensor *items;
    size_t count, cap;
    kdh_meta *meta;
    size_t nmeta, metacap;
} kdh_tensor_list;

size_t kdh_dtype_size(kdh_dtype dt);                 /* bytes per element; 0 if invalid */
const char *kdh_dtype_name(kdh_dtype dt);            /* safetensors spelling: "F32" */
int kdh_dtype_from_name(const char *name, kdh_dtype *out); /* 0, or -1 if unknown */
bool kdh_dtype_is_float(kdh_dtype dt);

/* product(shape) * size of dt, in bytes; -1 if a dimension is negative, the
 * rank is out of range, or the product overflows 64 bits or size_t. */
int kdh_shape_bytes(kdh_dtype dt, int rank, const int64_t *shape, size_t *nbytes);
/* Number of elements (1 for a scalar). */
int64_t kdh_tensor_count(const kdh_tensor *t);
/* "[784, 256]" into buf (always NUL-terminated); returns buf. */
char *kdh_shape_str(int rank, const int64_t *shape, char *buf, size_t size);

/* Allocates zeroed data for the shape; name may be NULL. */
int kdh_tensor_alloc(kdh_tensor *t, const char *name, kdh_dtype dt, int rank,
                     const int64_t *shape, kdh_error *err);
/* Frees name and data and zeroes the struct; safe on a zeroed tensor. */
void kdh_tensor_free(kdh_tensor *t);
/* A new owned tensor of dtype F32 with the same shape; integers and F64,
 * F16, BF16 are converted (values, not scaled: u8 255 becomes 255.0f). */
int kdh_tensor_to_f32(const kdh_tensor *src, kdh_tensor *dst, kdh_error *err);

/* Element i of any dtype as a double (exact for all but huge 64-bit ints). */
double kdh_tensor_elem_f64(const kdh_tensor *t, size_t i);

/* 0 if every element of a float tensor (F32, F64, F16, BF16) is finite;
 * otherwise -1 and "WHAT: element 17 (index [0, 17]) is NaN". Integer
 * tensors always pass. `what` names the source in the message (a path). */
int kdh_check_finite(const kdh_tensor *t, const char *what, kdh_error *err);
/* Index of the first NaN or infinity in v[0..n), or n if all are finite. */
size_t kdh_first_nonfinite_f32(const float *v, size_t n);

void kdh_list_init(kdh_tensor_list *l);
void kdh_list_free(kdh_tensor_list *l);       /* frees every tensor and entry */
/* Appends a new zeroed tensor (name copied; must be unique in the list).
 * The pointer is valid until the next append. */
kdh_tensor *kdh_list_add(kdh_tensor_list *l, const char *name, kdh_dtype dt, int rank,
                         const int64_t *shape, kdh_error *err);
/* Appends *t, taking ownership of its name and data (t is zeroed). t->name
 * must be set and unique. On failure t is left untouched. */
int kdh_list_push(kdh_tensor_list *l, kdh_tensor *t, kdh_error *err);
kdh_tensor *kdh_list_find(const kdh_tensor_list *l, const char *name);
/* Sets (or replaces) a metadata entry; both strings are copied. */
int kdh_list_set_meta(kdh_tensor_list *l, const char *key, const char *value, kdh_error *err);
const char *kdh_list_get_meta(const kdh_tensor_list *l, const char *key);
/* The tensor `name` of a loaded file, checked against what the model
 * expects: "PATH: tensor "dense/kernel" has shape [784, 128], the model
 * expects [784, 256]" or "PATH: no tensor "dense/bias"". `path` is only
 * used in messages. */
const kdh_tensor *kdh_list_expect(const kdh_tensor_list *l, const char *path, const char *name,
                                  kdh_dtype dt, int rank, const int64_t *shape, kdh_error *err);

/* ---- atomic_file.c ------------------------------------------------------ */

/* Writes the whole content to f; returns 0, or -1 after filling err. */
typedef int (*kdh_write_fn)(FILE *f, void *ctx, kdh_error *err);

/* Replaces `path` so that at every instant it holds either the old content
 * or the complete new one: writes a temporary `.NAME.kd-HASH-PID.tmp` in
 * the same directory, calls fn, flushes and fsyncs it, renames it over
 * path and fsyncs the directory. On any failure the temporary is removed,
 * the old file is untouched and err names the file and errno's message.
 * A symbolic link is followed (its target is replaced, the link kept); the
 * replaced file's mode is kept, a new file gets 0666 minus the umask;
 * temporaries of path left by writers that died (SIGKILL) are removed.
 * A directory, device or FIFO at path is refused. */
int kdh_atomic_write(const char *path, kdh_write_fn fn, void *ctx, kdh_error *err);

/* Several files replaced together (model.c and model.h): every one is
 * written and synced before any is renamed, and if a rename fails those
 * already renamed get their old content back. */
typedef struct kdh_atomic_out {
    const char *path;
    kdh_write_fn fn;
    void *ctx;
} kdh_atomic_out;
int kdh_atomic_write_set(const kdh_atomic_out *outs, int n, kdh_error *err);

/* path with every symbolic link of its last component followed (a link
 * to a link, a dangling link: the file it would create), malloc'd; NULL
 * with errno set (ELOOP) when it cannot be followed. */
char *kdh_resolve_links(const char *path);

/* fwrite that reports a short write: "PATH: write failed: No space left". */
int kdh_fwrite_all(FILE *f, const void *data, size_t n, const char *path, kdh_error *err);

/* ---- safetensors.c ----------------------------------------------------- */

/* Reads every tensor and the `__metadata__` strings into out (initialised
 * here), in the order of the file's header. Integers become host order. */
int kdh_safetensors_read(const char *path, const kdh_read_opts *opts,
                         kdh_tensor_list *out, kdh_error *err);
/* The same from a buffer holding a whole file; `name` is used in messages. */
int kdh_safetensors_read_mem(const void *buf, size_t len, const char *name,
                             const kdh_read_opts *opts, kdh_tensor_list *out, kdh_error *err);
/* Writes tensors[0..count) atomically (kdh_atomic_write), header keys and
 * data in the given order, `__metadata__` first when nmeta > 0, compact JSON
 * padded with spaces to a multiple of 8 bytes as the reference library
 * does. Tensors may borrow their data. Names must be unique, valid UTF-8
 * and not `__metadata__`. */
int kdh_safetensors_write(const char *path, const kdh_tensor *tensors, size_t count,
                          const kdh_meta *meta, size_t nmeta, kdh_error *err);
int kdh_safetensors_write_list(const char *path, const kdh_tensor_list *l, kdh_error *err);
/* The same, replacing the files of also[0..nalso) in the same step
 * (kdh_atomic_write_set): all of them are written, or none. */
int kdh_safetensors_write_also(const char *path, const kdh_tensor *tensors, size_t count, const kdh_meta *meta,
                               size_t nmeta, const kdh_atomic_out *also, int nalso, kdh_error *err);

/* ---- idx.c ------------------------------------------------------------- */

/* Reads an IDX file (MNIST's format), gzip'd or not (detected by the gzip
 * magic). Element types u8, i8, i16, i32, f32, f64; big-endian on disk,
 * host order in out. The data must be exactly product(dims) elements. */
int kdh_idx_read(const char *path, const kdh_read_opts *opts, kdh_tensor *out, kdh_error *err);
/* The same from a buffer holding a whole file; `name` is used in messages. */
int kdh_idx_read_mem(const void *buf, size_t len, const char *name, const kdh_read_opts *opts,
                     kdh_tensor *out, kdh_error *err);
/* Reads DIR/SPLIT-images-idx3-ubyte[.gz] and DIR/SPLIT-labels-idx1-ubyte[.gz]
 * (SPLIT is "train" or "t10k"): images U8 [n, rows, cols], labels U8 [n],
 * with matching n and every label below 10. */
int kdh_mnist_read(const char *dir, const char *split, const kdh_read_opts *opts,
                   kdh_tensor *images, kdh_tensor *labels, kdh_error *err);

/* ---- npy.c ------------------------------------------------------------- */

/* Reads a .npy file, format versions 1.0, 2.0 and 3.0; descr one of
 * f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1 (either byte order); C order only. */
int kdh_npy_read(const char *path, const kdh_read_opts *opts, kdh_tensor *out, kdh_error *err);
int kdh_npy_read_mem(const void *buf, size_t len, const char *name, const kdh_read_opts *opts,
                     kdh_tensor *out, kdh_error *err);
/* Writes t atomically as a version 1.0 .npy in little-endian order, header
 * laid out as NumPy writes it (padded so the data starts at a multiple of
 * 64). Any dtype except BF16, which NumPy lacks. */
int kdh_npy_write(const char *path, const kdh_tensor *t, kdh_error *err);

/* ---- csv.c ------------------------------------------------------------- */

/* Column names of a CSV header row. */
typedef struct kdh_csv_header {
    char **names;
    size_t count;
} kdh_csv_header;

/* Reads a numeric comma-separated file into an F32 tensor [rows, columns].
 * The first row is a header (and is skipped) when one of its fields is
 * neither empty nor a number; its names go to *header when header is not
 * NULL (count 0 when there is none). Fields may be surrounded by blanks and
 * by double quotes; blank lines are skipped; \n and \r\n both end a line.
 * Ragged rows, empty or non-numeric cells, NaN, infinities and values out
 * of float range are errors naming the line and column (both 1-based). */
int kdh_csv_read(const char *path, const kdh_read_opts *opts, kdh_tensor *out,
                 kdh_csv_header *header, kdh_error *err);
int kdh_csv_parse(const char *text, size_t len, const char *name, kdh_tensor *out,
                  kdh_csv_header *header, kdh_error *err);
void kdh_csv_header_free(kdh_csv_header *h);

#endif
