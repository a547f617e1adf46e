/* fuzz.h — the libFuzzer targets of kdsl (fuzz/fuzz_*.c), each a function of
 * the bytes of one input. Built two ways:
 *   - with clang -fsanitize=fuzzer (meson -Dfuzz=true): each file also
 *     defines LLVMFuzzerTestOneInput, and fuzz/run drives it;
 *   - with KDFUZZ_REPLAY defined (tests/test_fuzz_replay.c, every build):
 *     all of them link into one Check suite that replays the seeds and every
 *     input in fuzz/regressions/TARGET/, so a fixed crash stays fixed under
 *     gcc and under the sanitizers.
 * A target returns 0 and never crashes, hangs, leaks or exits; a broken
 * contract (an error without a message, output left behind on failure)
 * is a crash on purpose, via kdfuzz_check. */
#ifndef KDSL_FUZZ_H
#define KDSL_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int kdfuzz_frontend(const uint8_t *data, size_t size);
int kdfuzz_safetensors(const uint8_t *data, size_t size);
int kdfuzz_npy(const uint8_t *data, size_t size);
int kdfuzz_idx(const uint8_t *data, size_t size);
int kdfuzz_csv(const uint8_t *data, size_t size);
int kdfuzz_keras(const uint8_t *data, size_t size);
int kdfuzz_history(const uint8_t *data, size_t size);
int kdfuzz_h5(const uint8_t *data, size_t size);
int kdfuzz_keras3(const uint8_t *data, size_t size);

#ifdef KDFUZZ_REPLAY
#define KDFUZZ_ENTRY(fn)
#else
#define KDFUZZ_ENTRY(fn)                                                  \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);         \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fn(data, size); }
#endif

/* Aborts (a crash libFuzzer reports, with the input) when cond is false. */
#define kdfuzz_check(cond)                                                              \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: contract broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

/* Where diagnostics go: /dev/null (stderr if it cannot be opened). */
static inline FILE *kdfuzz_devnull(void)
{
    static FILE *f;
    if (!f) f = fopen("/dev/null", "w");
    return f ? f : stderr;
}

#endif
