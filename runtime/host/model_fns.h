/* model_fns.h — a compiled model's entry points, with the signatures of the
 * generated C API (model.h) and float reals: what the libgccjit backend
 * (codegen/jit.h) fills in and the host driver (train.h) calls. One struct
 * for both, at the lower layer. */
#ifndef KDSL_MODEL_FNS_H
#define KDSL_MODEL_FNS_H

typedef struct kdh_model_fns {
    void (*init)(float *params, float *opt_state, unsigned long long seed);
    void (*predict)(const float *params, const float *const *inputs, float *const *outputs, int batch, void *arena);
    /* NULL for programs without a training step (no train block / inference only): */
    float (*grad)(float *params, const float *const *inputs, const float *labels, float *grads, int batch,
                  unsigned long long step, void *arena);
    void (*apply_gradients)(float *params, const float *grads, float *opt_state, unsigned long long step,
                            float learning_rate);
    float (*train_step)(float *params, float *opt_state, const float *const *inputs, const float *labels, int batch,
                        unsigned long long step, float learning_rate, void *arena, float *outputs0);
} kdh_model_fns;

/* The JIT's grad calls this after the last kernel that touches each
 * trainable weight's gradient, grads[offset, offset + count), from the
 * thread that called grad; no later kernel of the call reads or writes
 * those floats. Data-parallel training (train_dist.c) starts their sum over
 * the ranks there, overlapping the rest of the backward pass; otherwise it
 * returns at once. The C backend's grad does not call it. */
void kdh_grads_ready(long offset, long count);

#endif
