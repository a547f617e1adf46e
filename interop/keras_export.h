/* keras_export.h — a checked KDSL model as a Keras model config, and a
 * legacy Keras HDF5 file of it with its weights (kdslc export): what Keras'
 * load_model("m.h5") and load_weights read. */
#ifndef KDSL_KERAS_EXPORT_H
#define KDSL_KERAS_EXPORT_H

#include "host/tensor_file.h"
#include "model.h"

/* The model's config as JSON, a Functional model in Keras 2's dialect (a
 * legacy .h5 file's) or Keras 3's (a .keras file's config.json: modules,
 * batch_shape, inbound nodes as keras tensors, one endpoint flat), or NULL
 * after reporting to d each part that has no Keras equivalent. */
char *kx_keras_config(kd_arena *a, const kd_model *m, const char *source, bool keras3, kd_diags *d);

/* Writes `path` atomically: the config as the root's model_config, and
 * under /model_weights each layer's variables (m's, named LAYER/VAR, taken
 * from `weights` by name) in Keras' order and names ("dense/kernel:0").
 * 0, or -1 with err set. */
int kx_write_keras_h5(const char *path, const char *config, const kd_model *m, const kdh_tensor_list *weights,
                      kdh_error *err);

#endif
