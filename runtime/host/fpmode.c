/* fpmode.c — flush-to-zero for the host's model code (fpmode.h). */
#include "fpmode.h"

#if defined(__x86_64__) || defined(__i386__)
#define MXCSR_DAZ 0x0040u
#define MXCSR_FTZ 0x8000u
#define MXCSR_FLAGS 0x003fu /* the sticky exception flags: state, not mode */

/* Without the flags, which every inexact operation sets: the pool compares
 * modes per job, and would otherwise reload MXCSR on nearly every one. */
unsigned long kdh_fpmode_get(void) { return __builtin_ia32_stmxcsr() & ~MXCSR_FLAGS; }

/* Keeps the thread's own exception flags. */
void kdh_fpmode_set(unsigned long mode)
{
    __builtin_ia32_ldmxcsr(((unsigned)mode & ~MXCSR_FLAGS) | (__builtin_ia32_stmxcsr() & MXCSR_FLAGS));
}

unsigned long kdh_fpmode_flush_subnormals(void)
{
    unsigned long old = kdh_fpmode_get();
    kdh_fpmode_set(old | MXCSR_DAZ | MXCSR_FTZ);
    return old;
}
#elif defined(__aarch64__)
#define FPCR_FZ (1ul << 24)

unsigned long kdh_fpmode_get(void)
{
    unsigned long r;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(r));
    return r;
}

void kdh_fpmode_set(unsigned long mode) { __asm__ __volatile__("msr fpcr, %0" : : "r"(mode)); }

unsigned long kdh_fpmode_flush_subnormals(void)
{
    unsigned long old = kdh_fpmode_get();
    kdh_fpmode_set(old | FPCR_FZ);
    return old;
}
#else
unsigned long kdh_fpmode_get(void) { return 0; }
void kdh_fpmode_set(unsigned long mode) { (void)mode; }
unsigned long kdh_fpmode_flush_subnormals(void) { return 0; }
#endif
