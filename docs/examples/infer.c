/* infer.c — inference with the code kdslc generates for samples/mlp.kdsl:
 *
 *   mkdir -p /tmp/mlp && build/kdslc compile samples/mlp.kdsl -o /tmp/mlp/mlp.c
 *   cc -std=c99 -O2 -Iruntime -I/tmp/mlp docs/examples/infer.c /tmp/mlp/mlp.c build/libkdslrt.a -lm -o /tmp/mlp/infer
 *   /tmp/mlp/infer
 *
 * (docs/c-api.md explains every name used here.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlp.h"

#define BATCH 2   /* any batch from 1 to MLP_MAX_BATCH */

/* A variable of the model by its name, as in a safetensors file. */
static const mlp_tensor_info *find(const char *name)
{
    for (int i = 0; i < mlp_num_params; i++)
        if (!strcmp(mlp_params[i].name, name)) return &mlp_params[i];
    return NULL;
}

int main(void)
{
    static float x[BATCH * MLP_INPUT0_SIZE], y[BATCH * MLP_OUTPUT0_SIZE];
    float *params = malloc(MLP_PARAMS_SIZE * sizeof *params);
    void *arena = malloc(MLP_ARENA_SIZE);   /* malloc's alignment is enough */
    if (!params || !arena) return 1;

    /* Weights: Keras' initializers here; a real program copies trained values
     * into params at each variable's offset (or compiles them in with
     * --embed-weights). */
    mlp_init(params, NULL, 42);
    const mlp_tensor_info *b = find("dense_4/bias");
    if (!b) return 1;
    params[b->offset + 3] = 1.0f;   /* favour class 3 */

    for (int i = 0; i < BATCH * MLP_INPUT0_SIZE; i++) x[i] = (float)(i % 29) / 29;
    const float *inputs[MLP_NUM_INPUTS] = {x};
    float *outputs[MLP_NUM_OUTPUTS] = {y};
    mlp_predict(params, inputs, outputs, BATCH, arena);

    for (int s = 0; s < BATCH; s++) {
        const float *logits = y + s * MLP_OUTPUT0_SIZE;
        int best = 0;
        for (int k = 1; k < MLP_OUTPUT0_SIZE; k++)
            if (logits[k] > logits[best]) best = k;
        printf("sample %d: class %d (logit %.3f)\n", s, best, logits[best]);
    }
    free(arena);
    free(params);
    return 0;
}
