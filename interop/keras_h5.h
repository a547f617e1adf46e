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

#include "keras_file.h"

/* Whether the file starts with HDF5's signature (at offset 0). */
bool kx_is_hdf5(const char *path);

/* Reads everything; 0, or -1 with err set (and *out empty). */
int kx_read_keras_h5(const char *path, kx_keras_file *out, kdh_error *err);
/* The same in a child process that may take at most `seconds` (libhdf5
 * can loop for ever or crash on a damaged file; this cannot). */
int kx_read_keras_h5_isolated(const char *path, double seconds, kx_keras_file *out, kdh_error *err);

#endif
