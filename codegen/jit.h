/* jit.h — the libgccjit backend: the loop IR of a program (driver.h's
 * kd_back_end) compiled in process, no C file written and no external
 * compiler run. `kdslc train / evaluate / predict` run models through it.
 * The entry points have exactly the signatures of the generated C API
 * (model.h), with the program's real type float (f32 programs only).
 * The compiled code may be kept in a cache directory between runs
 * (kd_jit_options.cache_dir, jit_cache.c). */
#ifndef KDSL_JIT_H
#define KDSL_JIT_H

#include "loop_ir.h"
#include "host/model_fns.h"   /* kdh_model_fns: the entry points, shared with the host driver */

typedef struct kd_jit_options {
    int opt_level;         /* 0..3; default (0 here means 3) */
    const char *march;     /* NULL: the host's, resolved by kdsl (libgccjit rejects -march=native) */
    bool dump_c_like;      /* debugging: libgccjit's own dump of the built code to stderr */
    bool fp_contract;      /* allow fused multiply-add contraction (libgccjit's default); false
                            * (default): -ffp-contract=off, bit-identical to the C backend */
    bool serial_loops;     /* no thread split of loops (by default the element-wise loops and
                            * row reductions with enough work run on the host's thread pool,
                            * runtime/host/parallel_kernels.h; with one thread that is a plain call) */
    int part_kernels;      /* functions of more kernels than 4x this are built as parts of
                            * this many (0: 16; emit_jit.c build_function); tests set it
                            * small so that small programs are built in parts too */
    bool split_small_loops; /* split every such loop however little work it has, in
                            * slices of one iteration (tests: the thread split of tiny
                            * programs, with kdh_pool_split_everything) */
    unsigned functions;    /* the functions compiled, bits 1u << lp_func_kind; 0: every one
                            * the program has (kdslc train needs no grad and apply_gradients
                            * unless it trains data-parallel) */
    int jobs;              /* processes compiling at once, each a share of the functions and
                            * their parts (GCC compiles one context at a time in a process);
                            * 0: up to one per online CPU (at most 8) as the program's size
                            * makes it worth it (emit_jit.c plan_work); 1: this process alone.
                            * The others are forked: no other thread of the caller may be
                            * inside libgccjit meanwhile */
    const char *cache_dir; /* keep the compiled code in this directory and take it from there
                            * when the same program is compiled again with the same options,
                            * kdsl and libgccjit on the same CPU (jit_cache.c); NULL or "":
                            * no cache. kd_jit_default_cache_dir gives the usual place. */
} kd_jit_options;

typedef enum kd_jit_cache_use {
    KD_JIT_CACHE_OFF,      /* no cache_dir */
    KD_JIT_CACHE_HIT,      /* the code came from the cache */
    KD_JIT_CACHE_STORED,   /* compiled, and kept in the cache */
    KD_JIT_CACHE_FAILED,   /* compiled, not kept: the warning says why (an unwritable directory...) */
} kd_jit_cache_use;

typedef struct kd_jit kd_jit;

/* Compiles every function of `p`. NULL with `why` set on failure. */
kd_jit *kd_jit_compile(const lp_program *p, const kd_jit_options *o, kdh_model_fns *fns, char *why, size_t why_len);
double kd_jit_compile_seconds(const kd_jit *j);   /* wall time of the compile (or of the cache's load) */
/* How the cache served j; *warning (NULL: none) for the user when it could not. */
kd_jit_cache_use kd_jit_cache_result(const kd_jit *j, const char **warning);
/* The cache directory as ccache finds its own: $KDSL_CACHE_DIR, else
 * $XDG_CACHE_HOME/kdsl, else $HOME/.cache/kdsl. False (no cache) when
 * KDSL_CACHE_DIR is set but empty, or none of them is set. */
bool kd_jit_default_cache_dir(char *buf, size_t n);
void kd_jit_free(kd_jit *j);                      /* the function pointers die with it */

/* For the tests: out[i] = the JIT's inline kdk_dropout_bits of the i-th
 * inputs (emit_jit.c), which must equal runtime/random.h's. 0, or -1. */
int kd_jit_dropout_bits(long n, const uint64_t *seed, const uint64_t *step, const uint32_t *salt,
                        const uint64_t *index, uint32_t *out);

#endif
