/* firmware_harness.c — bench/firmware's program for QEMU's mps2-an386,
 * linked with samples/firmware's startup code and linker script. With a
 * model (MODEL, MODEL_UPPER from model.h): runs one inference to paint and
 * measure the stack, then REPS inferences timed by SysTick. Without one
 * (NO_MODEL): the same program around nothing, so that the model's flash
 * and RAM are the difference of the two images.
 *
 * Under `qemu-system-arm -icount shift=0` one instruction takes 1 ns of
 * virtual time, and SysTick counts the AN386's 25 MHz clock: 40
 * instructions per tick. Prints `stack N` (bytes of stack the inference
 * reached beyond main's own) and `instructions N` (per inference). */
#include <stdint.h>
#include <stdio.h>

#ifndef NO_MODEL
#include "model.h"
#include "model_names.h"   /* samples/firmware */
static float arena[(ARENA_BYTES + 3) / 4] __attribute__((aligned(ARENA_ALIGN)));
static float x[IN_SIZE], y[OUT_SIZE];
#endif

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define PAINT 0xC0FFEE11u

extern uint32_t __stack_limit, __stack_top;
static volatile uint32_t wraps;

void systick_handler(void) { wraps++; }

static uint64_t ticks(void)   /* SysTick counts down from 2^24 - 1; each wrap interrupts */
{
    uint32_t w, v;
    do {
        w = wraps;
        v = SYST_CVR;
    } while (w != wraps);
    return ((uint64_t)w << 24) + (0xFFFFFFu - v);
}

/* Paints the free stack below the caller's frame, and measures what was touched since. */
__attribute__((noinline)) static void paint(void)
{
    volatile uint32_t here;
    for (volatile uint32_t *p = &__stack_limit; p < &here - 4; p++) *p = PAINT;
}

static uint32_t stack_used(void)
{
    const uint32_t *p = &__stack_limit;
    while (p < &__stack_top && *p == PAINT) p++;
    return (uint32_t)((uintptr_t)&__stack_top - (uintptr_t)p);
}

__attribute__((noinline)) static void infer(void)
{
#ifndef NO_MODEL
    const float *in[1] = {x};
    float *out[1] = {y};
    PREDICT(in, out, 1, arena);
#endif
    __asm volatile("" ::: "memory");
}

int main(void)
{
#ifndef NO_MODEL
    for (int i = 0; i < IN_SIZE; i++) x[i] = (float)((i * 7919) % 255) / 255.0f;
#endif
    paint();
    infer();
    printf("stack %lu\n", (unsigned long)stack_used());
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 7;   /* the processor clock, interrupt on wrap, on */
    while (SYST_CVR == 0) {}   /* the first reload: until then CVR reads 0, not 2^24 - 1 */
    uint64_t t0 = ticks();
    for (int r = 0; r < REPS; r++) infer();
    uint64_t t1 = ticks();
    SYST_CSR = 0;
    /* A run-time divisor: with REPS a constant the model's image (REPS > 1) would
     * link the 64-bit division and the base image (REPS = 1) not, and the 700
     * bytes of __udivmoddi4 would count as the model's flash. */
    static volatile uint32_t reps = REPS;
    printf("instructions %lu\n", (unsigned long)((t1 - t0) * 40u / reps));   /* newlib-nano has no %llu */
    return 0;
}
