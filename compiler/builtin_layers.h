/* builtin_layers.h — what tools that write KDSL (the Keras importer,
 * interop/) need to know of the built-in layers: each one's arguments in
 * order with their defaults, and Keras' instance naming. The layers
 * themselves are defined in layers.c, one table row each. */
#ifndef KDSL_BUILTIN_LAYERS_H
#define KDSL_BUILTIN_LAYERS_H

#include "kdsl.h"

typedef struct kd_layer_param {
    const char *name;
    const char *def;       /* default as KDSL text ("linear", "true", "0.99", "=pool_size"); NULL: required */
} kd_layer_param;

/* The built-in layer `type` (CamelCase, "Conv2D"): its arguments, ending
 * with a {NULL, NULL} row, and in *inputs the tensors it takes (1, or -1 for
 * a list: Add, Concatenate); NULL when there is no such built-in. */
const kd_layer_param *kd_builtin_layer(const char *type, int *inputs);

/* Keras' snake case, the base of instance names: MyDense -> my_dense,
 * Conv2D -> conv2d, ReLU -> re_lu. */
const char *kd_snake_case(kd_arena *a, const char *camel);

#endif
