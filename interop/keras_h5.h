/* keras_h5.h — reading a legacy Keras HDF5 file (model.save("m.h5") /
 * save_weights, Keras 2 and tf.keras) through libhdf5: the model's config
 * JSON (the root's `model_config` attribute) and its weights
 * (/model_weights/<layer>/<weight name>, listed by each layer group's
 * `weight_names` attribute), by Keras' weight name ("conv2d/kernel").
 *
 * The file is untrusted: every string, rank, shape and size is checked, the
 * library's own error printing is off, and a failure is one message naming
 * the file and the object, in err. */
#ifndef KDSL_KERAS_H5_H
#define KDSL_KERAS_H5_H

#include "host/tensor_file.h"

/* Whether the file starts with HDF5's signature (at offset 0). */
bool kx_is_hdf5(const char *path);

typedef struct kx_keras_file {
    char *config;              /* the model_config JSON (malloc'd) */
    char *keras_version;       /* "2.4.0", or NULL (malloc'd) */
    kdh_tensor_list weights;   /* F32, named "layer/weight" (the ":0" dropped) */
} kx_keras_file;

/* Reads everything; 0, or -1 with err set (and *out empty). */
int kx_read_keras_h5(const char *path, kx_keras_file *out, kdh_error *err);
void kx_keras_file_free(kx_keras_file *f);

#endif
