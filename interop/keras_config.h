/* keras_config.h — a Keras model config (the JSON Keras writes for
 * model.to_json(), an .h5 file's model_config, a TensorFlow.js
 * modelTopology) as a KDSL program that reads like what a person would
 * write: a Sequential model as a list of layers, a Functional one as named
 * values, each Keras layer name kept (given with `name:` only where kdsl's
 * own naming would differ), arguments at their defaults left out. */
#ifndef KDSL_KERAS_CONFIG_H
#define KDSL_KERAS_CONFIG_H

#include "kdsl.h"

/* The program's text, or NULL after reporting to d each thing kdsl cannot
 * express — a layer class, an argument value, a custom object — one error
 * apiece naming the layer (`source` prefixes the messages). */
char *kx_config_to_kdsl(kd_arena *a, const char *json, const char *source, const char *keras_version, kd_diags *d);

#endif
