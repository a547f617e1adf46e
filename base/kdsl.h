/* kdsl.h — what every stage of the compiler shares: the compiler's own memory
 * (one arena per compilation, freed at once), source locations, and
 * diagnostics printed the way GCC prints them. */
#ifndef KDSL_H
#define KDSL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- sha256.c --------------------------------------------------------- */
typedef struct kd_sha256 {
    uint32_t h[8];
    uint64_t len;          /* bytes hashed so far */
    uint8_t buf[64];
} kd_sha256;

void kd_sha256_init(kd_sha256 *s);
void kd_sha256_update(kd_sha256 *s, const void *data, size_t n);
void kd_sha256_final(kd_sha256 *s, uint8_t out[32]);

/* ---- arena.c ---------------------------------------------------------- */
typedef struct kd_arena_block kd_arena_block;
typedef struct kd_arena {
    kd_arena_block *head;
    size_t used;           /* bytes handed out */
} kd_arena;

void *kd_alloc(kd_arena *a, size_t size);                 /* zeroed; exits with a message on OOM */
void *kd_alloc_array(kd_arena *a, size_t n, size_t size); /* overflow-checked n * size */
char *kd_strdup(kd_arena *a, const char *s);
char *kd_strndup(kd_arena *a, const char *s, size_t n);
/* The format is never NULL: saying so (nonnull) also keeps GCC's
 * -fsanitize=nonnull-attribute from inventing a NULL-format path inside,
 * which -Wformat-truncation reports as "null format string". */
char *kd_format(kd_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3), nonnull(2)));
void kd_arena_free(kd_arena *a);

/* A growable array of pointers whose storage comes from an arena. */
typedef struct kd_vec {
    void **items;
    int len, cap;
} kd_vec;
void kd_vec_push(kd_arena *a, kd_vec *v, void *item);

/* A set of strings (open addressing, storage from an arena): names seen. */
typedef struct kd_strset {
    const char **slots;
    int cap, len;
} kd_strset;
bool kd_strset_has(const kd_strset *s, const char *key);
void kd_strset_add(kd_arena *a, kd_strset *s, const char *key);   /* key is not copied */

/* A map from strings to pointers (open addressing, storage from an arena), so
 * that name lookups stay constant-time in programs with 100k names. */
typedef struct kd_strmap {
    const char **keys;
    void **values;
    int cap, len;
} kd_strmap;
void *kd_strmap_get(const kd_strmap *m, const char *key);           /* NULL if absent */
void kd_strmap_put(kd_arena *a, kd_strmap *m, const char *key, void *value); /* replaces; key not copied */

/* ---- diag.c ----------------------------------------------------------- */
typedef struct kd_source {
    const char *path;      /* as given on the command line */
    const char *text;      /* whole file, NUL-terminated */
    size_t len;
} kd_source;

typedef struct kd_loc {
    const kd_source *src;  /* NULL: no location (command-line or internal) */
    int line, col;         /* 1-based; col counts bytes */
} kd_loc;

typedef struct kd_diags {
    FILE *out;             /* where messages go (stderr by default) */
    int errors, warnings;
    int max_errors;        /* stop reporting after this many (0: 50) */
} kd_diags;

/* `file:LINE:COL: error: message`, the source line and a caret under COL. */
void kd_error(kd_diags *d, kd_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4), nonnull(1, 3)));
void kd_verror(kd_diags *d, kd_loc loc, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0), nonnull(1, 3)));
void kd_warning(kd_diags *d, kd_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4), nonnull(1, 3)));
void kd_note(kd_diags *d, kd_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4), nonnull(1, 3)));

/* The known name closest to `name` by edit distance, or NULL if none is close. */
const char *kd_nearest(const char *name, const char *const *known, int nknown);

/* Reads a whole regular file ("-": stdin) without blocking on FIFOs or
 * devices; NULL with errno set on failure: EFBIG over max_bytes, EISDIR for
 * a directory, EINVAL for anything else that is not a regular file. */
char *kd_read_file(kd_arena *a, const char *path, size_t max_bytes, size_t *len);

#endif
