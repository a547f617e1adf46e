/* dropout_hash.h — the dropout mask as a pure function of (seed, step, salt,
 * element index), so that the interpreter, the C backend and the JIT draw the
 * same mask for the same step, and the backward pass needs no stored mask.
 *
 * Freestanding C99: no libc, no state. The C backend emits these functions
 * verbatim; keep them that way.
 *
 *   bits = kd_dropout_bits(seed, step, salt, index)     24 uniform bits
 *   keep = bits >= kd_dropout_threshold(rate)           P(keep) = 1 - rate (to 2^-24)
 *   mask = keep ? 1 / (1 - rate) : 0
 *
 * `salt` tells apart the dropout nodes of one graph (IR_DROPOUT_MASK attr.index);
 * `index` is the row-major element index over the whole batched tensor. */
#ifndef KDSL_DROPOUT_HASH_H
#define KDSL_DROPOUT_HASH_H

#include <stdint.h>

/* SplitMix64's finaliser: every input bit flips about half of the output bits. */
static inline uint64_t kd_mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* 24 bits, so that bits * 2^-24 is exact in float as well as double. */
static inline uint32_t kd_dropout_bits(uint64_t seed, uint64_t step, uint32_t salt, uint64_t index)
{
    uint64_t h = kd_mix64(seed);
    h = kd_mix64(h ^ step);
    h = kd_mix64(h ^ salt);
    h = kd_mix64(h ^ index);
    return (uint32_t)(h >> 40);
}

/* Integer threshold: the comparison never depends on float rounding. */
static inline uint32_t kd_dropout_threshold(double rate)
{
    if (!(rate > 0)) return 0;
    if (rate >= 1) return 1u << 24;
    return (uint32_t)(rate * 16777216.0 + 0.5);
}

#endif
