/* jit_cache.h — compiled code kept between runs, for the libgccjit backend
 * (emit_jit.c): a shared library per key in a cache directory, as ccache
 * keeps object files. Internal to codegen/; jit.h is the public side. */
#ifndef KDSL_JIT_CACHE_H
#define KDSL_JIT_CACHE_H

#include "loop_ir.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kd_jit_key {
    uint8_t sha[32];
    char hex[65];
} kd_jit_key;

/* SHA-256 of everything the code compiled from p depends on: the loop IR as
 * `kdslc ir --stage loops` prints it and the C text kd_emit_c writes (the
 * union of what both show), `options` (the JIT's flags, as text), kdsl's
 * version and the build ID of the object that holds this code (any rebuild
 * of kdsl that changes it changes every key), libgccjit's version and the
 * CPU's features (kd_host_cpu_features). False with `why` set when no
 * key can be made (no build ID): then nothing is cached. */
bool kd_jit_cache_key(const lp_program *p, const char *options, kd_jit_key *key, char *why, size_t why_len);

/* The entry of `key` in dir, checked and loaded (dlopen): its bytes against
 * the SHA-256 they were written with, its key, its ELF header. NULL when
 * there is none; a corrupt or truncated entry is removed, and NULL. */
void *kd_jit_cache_open(const char *dir, const kd_jit_key *key);

/* A new entry: a temporary file in dir (created, with dir, if need be) for
 * the compiler to write the library to. False with `why` set when dir
 * cannot be written (the caller compiles in memory, and warns). */
typedef struct kd_jit_cache_entry {
    char *tmp, *path, *dir;     /* malloc'd */
} kd_jit_cache_entry;
bool kd_jit_cache_begin(const char *dir, const kd_jit_key *key, kd_jit_cache_entry *e, char *why, size_t why_len);

/* After the compiler wrote e->tmp: the trailer (key, SHA-256 of the
 * library) appended, fsync, the library loaded, then renamed to its entry's
 * name; older entries removed while the directory holds more than
 * kd_jit_cache_max_bytes. The dlopen handle, or NULL with `why` set (the
 * temporary removed; e.g. a file system mounted noexec). */
void *kd_jit_cache_commit(kd_jit_cache_entry *e, const kd_jit_key *key, char *why, size_t why_len);
void kd_jit_cache_abort(kd_jit_cache_entry *e);

/* A corrupt entry found after loading (a symbol missing): removed. */
void kd_jit_cache_remove(const char *dir, const kd_jit_key *key);

/* $KDSL_CACHE_MAX_SIZE: bytes, or K, M, G after the number (as ccache's
 * max_size); else (unset or malformed) 1G. */
uint64_t kd_jit_cache_max_bytes(void);

#endif
