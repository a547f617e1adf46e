/* host_internal.h — helpers shared by the file readers and writers of
 * runtime/host; not part of the public API (prefix kdh__). */
#ifndef KDSL_HOST_INTERNAL_H
#define KDSL_HOST_INTERNAL_H

#include "tensor_file.h"

#include <stdarg.h>

#if defined(__GNUC__)
#define KDH__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define KDH__PRINTF(f, a)
#endif

/* Fills err (if not NULL) with the formatted message; returns -1 so that
 * `return kdh__err(err, ...)` reads as one statement. */
int kdh__err(kdh_error *err, const char *fmt, ...) KDH__PRINTF(2, 3);

uint64_t kdh__max_bytes(const kdh_read_opts *opts);
bool kdh__host_is_le(void);
/* Reverses the bytes of each of count elements of elsize bytes. */
void kdh__swap_bytes(void *data, size_t count, size_t elsize);
/* Overflow-checked a * b. */
bool kdh__mul_u64(uint64_t a, uint64_t b, uint64_t *out);

/* Opens a regular file for reading without blocking on FIFOs or devices
 * (a reader must never hang) and returns its size. */
int kdh__open_regular(const char *path, int *fd, uint64_t *size, kdh_error *err);

/* The bytes of a whole input, either an open file or a caller's buffer, so
 * one parser serves files and in-memory buffers (tests, fuzzers). */
typedef struct kdh__src {
    FILE *f;                        /* NULL when reading from mem */
    const unsigned char *mem;
    uint64_t size;
    const char *name;               /* used in messages */
} kdh__src;

int kdh__src_open(kdh__src *s, const char *path, const kdh_read_opts *opts, kdh_error *err);
void kdh__src_mem(kdh__src *s, const void *buf, size_t len, const char *name);
void kdh__src_close(kdh__src *s);
/* Reads exactly n bytes at offset off; "NAME: unexpected end of file" if
 * the file is shorter (it may shrink while we read it). */
int kdh__src_read(kdh__src *s, uint64_t off, void *dst, size_t n, kdh_error *err);

/* Reads a whole regular file (NUL-terminated copy) of at most max bytes. */
int kdh__read_whole(const char *path, const kdh_read_opts *opts, char **buf, size_t *len,
                    kdh_error *err);

/* Appends a tensor without the uniqueness check (readers check duplicates
 * themselves in O(n log n)); takes ownership as kdh_list_push does. */
int kdh__list_append(kdh_tensor_list *l, kdh_tensor *t, kdh_error *err);

/* Length of the longest valid UTF-8 prefix of s[0..n); n if all valid. */
size_t kdh__utf8_valid_prefix(const unsigned char *s, size_t n);

#endif
