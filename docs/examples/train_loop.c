/* train_loop.c — a custom training loop over the code kdslc generates for
 * samples/mlp.kdsl (Adam, categorical cross-entropy on logits):
 *
 *   mkdir -p /tmp/mlp && build/kdslc compile samples/mlp.kdsl -o /tmp/mlp/mlp.c
 *   cc -std=c99 -O2 -Iruntime -I/tmp/mlp docs/examples/train_loop.c /tmp/mlp/mlp.c build/libkdslrt.a -lm -o /tmp/mlp/train_loop
 *   /tmp/mlp/train_loop            # mlp_train_step
 *   /tmp/mlp/train_loop --tape     # mlp_grad, gradient clipping, mlp_apply_gradients
 *
 * The task is synthetic: the class is the bright one of ten stripes of the
 * input. The learning rate follows a cosine decay computed here. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlp.h"

#define B MLP_MAX_BATCH
#define NIN MLP_INPUT0_SIZE
#define NOUT MLP_OUTPUT0_SIZE
#define STEPS 300
#define ARENA (MLP_TRAIN_ARENA_SIZE > MLP_ARENA_SIZE ? MLP_TRAIN_ARENA_SIZE : MLP_ARENA_SIZE)

static unsigned long long rng = 1;
static float frand(void)   /* uniform in [0, 1) */
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)(rng >> 40) / 16777216.0f;
}

/* Noise in [0, 1), plus 0.25 on the stripe of the sample's class; one-hot labels. */
static void make_batch(float *x, float *labels)
{
    for (int i = 0; i < B; i++) {
        int c = (int)(frand() * NOUT);
        for (int j = 0; j < NIN; j++) x[i * NIN + j] = frand() + (j * NOUT / NIN == c ? 0.25f : 0);
        for (int k = 0; k < NOUT; k++) labels[i * NOUT + k] = k == c;
    }
}

static int argmax(const float *v)
{
    int best = 0;
    for (int k = 1; k < NOUT; k++)
        if (v[k] > v[best]) best = k;
    return best;
}

int main(int argc, char **argv)
{
    int tape = argc > 1 && !strcmp(argv[1], "--tape");
    static float x[B * NIN], labels[B * NOUT], logits[B * NOUT];
    float *params = malloc(MLP_PARAMS_SIZE * sizeof(float));
    float *opt_state = malloc((MLP_OPT_STATE_SIZE + 1) * sizeof(float));
    float *grads = malloc((MLP_GRADS_SIZE + 1) * sizeof(float));
    void *arena = malloc(ARENA);
    if (!params || !opt_state || !grads || !arena) return 1;
    const float *inputs[1] = {x};
    float *outputs[1] = {logits};

    mlp_init(params, opt_state, 0);   /* weights, and the Adam slots zeroed */
    for (unsigned long long step = 0; step < STEPS; step++) {
        float lr = 1e-3f * 0.5f * (1 + cosf(3.14159265f * (float)step / STEPS));
        float loss;
        make_batch(x, labels);
        if (tape) {
            loss = mlp_grad(params, inputs, labels, grads, B, step, arena);
            double norm = 0;   /* clip the global gradient norm to 1 */
            for (long i = 0; i < MLP_GRADS_SIZE; i++) norm += (double)grads[i] * grads[i];
            norm = sqrt(norm);
            if (norm > 1)
                for (long i = 0; i < MLP_GRADS_SIZE; i++) grads[i] /= (float)norm;
            mlp_apply_gradients(params, grads, opt_state, step, lr);
        } else {
            loss = mlp_train_step(params, opt_state, inputs, labels, B, step, lr, arena, NULL);
        }
        if (step % 100 == 99) printf("step %llu: loss %.4f, lr %.2e\n", step + 1, loss, lr);
    }

    int correct = 0;   /* accuracy on fresh data, in inference mode */
    for (int n = 0; n < 10; n++) {
        make_batch(x, labels);
        mlp_predict(params, inputs, outputs, B, arena);
        for (int i = 0; i < B; i++) correct += labels[i * NOUT + argmax(logits + i * NOUT)] == 1;
    }
    printf("accuracy: %.3f\n", correct / (10.0 * B));
    free(arena);
    free(grads);
    free(opt_state);
    free(params);
    return 0;
}
