/* random.h — the kdsl runtime's random bits: the dropout mask and the weight
 * initialisers, as pure functions of a seed. The one definition the
 * interpreter, generated C (model.c includes it through kernels.h), the JIT
 * and the host runtime share; both backends must draw the same bits.
 *
 * Freestanding C99: no libc, no state.
 *
 * Dropout: the mask is a pure function of (seed, step, salt, element index),
 * so the backward pass needs no stored mask.
 *   bits = kdk_dropout_bits(seed, step, salt, index)     24 uniform bits
 *   keep = bits >= kdk_dropout_threshold(rate)           P(keep) = 1 - rate (to 2^-24)
 *   mask = keep ? 1 / (1 - rate) : 0
 * `salt` tells apart the dropout nodes of one graph (IR_DROPOUT_MASK
 * attr.index); `index` is the row-major element index over the whole batched
 * tensor.
 *
 * Initialisers (kernels.h declares them, kdk_sinit_* / kdk_dinit_*; random.c):
 *   init_fill(p, n, value)                         p[0..n) = value
 *   init_uniform(p, n, seed, stream, lo, hi)       p[i] = lo + (hi - lo) * u(seed, stream, 2i)
 *   init_normal(p, n, seed, stream, mean, sd, truncated)
 *       Box-Muller: z = sqrt(-2 log(1 - u1)) cos(2 pi u2) with u1 = u(seed, stream,
 *       2k), u2 = u(seed, stream, 2k + 1) for the k-th draw; the i-th element
 *       takes draws k = i * 32 + t for t = 0, 1, ... and, when truncated, the
 *       first with |z| <= 2 (0 after 32 misses); p[i] = mean + sd * z.
 *   init_orthogonal(p, rows, cols, seed, stream, gain)
 *       init_normal(p, rows * cols, seed, stream, 0, 1, untruncated), then its
 *       columns (rows >= cols) or rows made orthonormal by modified
 *       Gram-Schmidt, in order, in double per dot product; times gain.
 * where u = kdk_uniform01, computed in double and rounded once to the
 * element type. `stream` tells apart the variables of one model. */
#ifndef KDSL_RANDOM_H
#define KDSL_RANDOM_H

#include <stdint.h>

/* SplitMix64's finaliser: every input bit flips about half of the output bits. */
static inline uint64_t kdk_mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* 24 bits, so that bits * 2^-24 is exact in float as well as double. */
static inline uint32_t kdk_dropout_bits(uint64_t seed, uint64_t step, uint32_t salt, uint64_t index)
{
    uint64_t h = kdk_mix64(seed);
    h = kdk_mix64(h ^ step);
    h = kdk_mix64(h ^ salt);
    h = kdk_mix64(h ^ index);
    return (uint32_t)(h >> 40);
}

/* Integer threshold: the comparison never depends on float rounding. */
static inline uint32_t kdk_dropout_threshold(double rate)
{
    if (!(rate > 0)) return 0;
    if (rate >= 1) return 1u << 24;
    return (uint32_t)(rate * 16777216.0 + 0.5);
}

/* GaussianNoise: node `salt`'s noise at training step `step` is
 * init_normal(p, n, kdk_noise_seed(seed, salt), step, 0, stddev, untruncated),
 * so it too is a pure function of the seed, the step and the element. */
static inline uint64_t kdk_noise_seed(uint64_t seed, uint32_t salt)
{
    return kdk_mix64(kdk_mix64(seed ^ 0x6e6f697365ULL) ^ salt);
}

/* A uniform double in [0, 1): element `counter` of stream `stream`. */
static inline double kdk_uniform01(uint64_t seed, uint64_t stream, uint64_t counter)
{
    uint64_t h = kdk_mix64(kdk_mix64(kdk_mix64(seed) ^ stream) ^ counter);
    return (double)(h >> 11) * (1.0 / 9007199254740992.0);
}

#endif
