/* main.c — runs the compiled model (MODEL, from model.h) on the inputs of
 * io.h and compares each output with the host's prediction for it (the
 * JIT's `kdslc predict`, itself checked against Keras): it prints one line
 * per sample and returns 0 only if every output is within 1e-4 relative
 * to the outputs' scale. The arena and everything else is static: no heap. */
#include "io.h"
#include "model.h"
#include "model_names.h"

#include <math.h>
#include <stdio.h>

static float arena[(ARENA_BYTES + 3) / 4] __attribute__((aligned(ARENA_ALIGN)));
static float y[OUT_SIZE];

int main(void)
{
    int failed = 0;
    for (int s = 0; s < IO_SAMPLES; s++) {
        const float *in[1] = {io_inputs + (long)s * IN_SIZE};
        float *out[1] = {y};
        PREDICT(in, out, 1, arena);
        const float *want = io_outputs + (long)s * OUT_SIZE;
        float scale = 0, worst = 0;
        for (int i = 0; i < OUT_SIZE; i++) scale = fmaxf(scale, fabsf(want[i]));
        for (int i = 0; i < OUT_SIZE; i++) worst = fmaxf(worst, fabsf(y[i] - want[i]) / fmaxf(scale, 1e-30f));
        int ok = worst <= 1e-4f;
        failed |= !ok;
        printf("sample %d: %d outputs, largest difference %.2e of their scale: %s\n", s, OUT_SIZE, (double)worst,
               ok ? "ok" : "WRONG");
    }
    printf("%s\n", failed ? "FAILED" : "all outputs match");
    return failed;
}
