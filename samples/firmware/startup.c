/* startup.c — the Cortex-M4F's vector table and reset handler for QEMU's
 * mps2-an386: enable the FPU, copy .data from flash, clear .bss, open the
 * semihosting channel (newlib's rdimon: printf goes to QEMU's stdout), run
 * main and report its status to QEMU, which exits with it. */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t __stack_top, __data_load, __data_start, __data_end, __bss_start, __bss_end;
extern void initialise_monitor_handles(void);
int main(void);

void reset_handler(void);
void fault_handler(void);
/* A program that turns SysTick on defines its own (bench/firmware counts with it). */
void systick_handler(void) __attribute__((weak, alias("fault_handler")));

void fault_handler(void)
{
    exit(3);   /* a HardFault, BusFault...: the run fails instead of hanging */
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&__stack_top, reset_handler, fault_handler, fault_handler, fault_handler, fault_handler,
    fault_handler, 0, 0, 0, 0, fault_handler, fault_handler, 0, fault_handler, systick_handler,
};

void reset_handler(void)
{
    volatile uint32_t *cpacr = (volatile uint32_t *)0xE000ED88u;
    *cpacr |= 0xFu << 20;   /* CP10, CP11: full access to the FPU */
    __asm volatile("dsb\n\tisb");
    const uint32_t *src = &__data_load;
    for (uint32_t *dst = &__data_start; dst < &__data_end;) *dst++ = *src++;
    for (uint32_t *dst = &__bss_start; dst < &__bss_end;) *dst++ = 0;
    initialise_monitor_handles();
    exit(main());
}
