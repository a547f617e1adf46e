/* target.c — the instruction-set level code is compiled for: the host's (the
 * JIT's -march), and `kdslc compile --target` for the C backend. */
#include "codegen.h"

#include <stdbool.h>
#include <string.h>

#include <stdio.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__) && (defined(__clang__) || __GNUC__ < 12)
/* For kd_host_march's second branch: clang 14's __builtin_cpu_supports knows
 * neither "f16c" nor "movbe", so ask CPUID leaf 1 for those two. */
static bool cpuid1_ecx(unsigned bit)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit);
}
#endif

/* The host's ISA level for -march (libgccjit has no -march=native: the
 * driver's CPU detection is not part of it). x86-64: the highest of
 * x86-64-v4/v3/v2 whose features the CPU and the OS (saved register state)
 * support, as libgcc's CPU model reports them; elsewhere: no -march. */
const char *kd_host_march(void)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4";
    if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3";
    if (__builtin_cpu_supports("x86-64-v2")) return "x86-64-v2";
    return "x86-64";
#elif defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    bool v2 = __builtin_cpu_supports("sse3") && __builtin_cpu_supports("ssse3") &&
              __builtin_cpu_supports("sse4.1") && __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("popcnt");
    bool v3 = v2 && __builtin_cpu_supports("avx") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi") &&
              __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("fma") && cpuid1_ecx(bit_F16C) &&
              cpuid1_ecx(bit_MOVBE);
    bool v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
              __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
              __builtin_cpu_supports("avx512vl");
    return v4 ? "x86-64-v4" : v3 ? "x86-64-v3" : v2 ? "x86-64-v2" : "x86-64";
#else
    return NULL;
#endif
}

void kd_host_cpu_features(char *buf, size_t n)
{
#if defined(__x86_64__) && defined(__GNUC__)
    unsigned a = 0, b = 0, c = 0, d = 0, max = __get_cpuid_max(0, NULL);
    char vendor[13] = "";
    if (__get_cpuid(0, &a, &b, &c, &d)) {
        memcpy(vendor, &b, 4), memcpy(vendor + 4, &d, 4), memcpy(vendor + 8, &c, 4);
        vendor[12] = 0;
    }
    unsigned l1[2] = {0}, l7[3] = {0};
    if (__get_cpuid(1, &a, &b, &c, &d)) l1[0] = c, l1[1] = d;
    if (max >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        l7[0] = b, l7[1] = c, l7[2] = d;
    }
    /* the OS's saved register state (XCR0): AVX and AVX-512 need it as well as the CPU */
    unsigned xcr0 = 0;
    if (l1[0] & bit_OSXSAVE) {
        unsigned hi;
        __asm__ volatile("xgetbv" : "=a"(xcr0), "=d"(hi) : "c"(0));
    }
    snprintf(buf, n, "x86-64 %s 1:%08x:%08x 7:%08x:%08x:%08x xcr0:%08x", vendor, l1[0], l1[1], l7[0], l7[1], l7[2], xcr0);
#elif defined(__aarch64__)
    snprintf(buf, n, "aarch64");
#else
    snprintf(buf, n, "unknown");
#endif
}

static const char *const levels[] = {"x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"};

const char *kd_resolve_target(const char *name)
{
    if (!strcmp(name, "portable")) return "";
    if (!strcmp(name, "native")) return kd_host_march();
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (!strcmp(name, levels[i])) return levels[i];
    return NULL;
}
