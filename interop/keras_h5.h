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
/* The same from a file image in memory (`name` for messages), the weights
 * totalling at most max_bytes (0: 4 GiB). In process: for images whose
 * structure is trusted to libhdf5 (the fuzz target's, which libhdf5 wrote). */
int kx_read_keras_h5_image(const void *data, size_t len, const char *name, uint64_t max_bytes, kx_keras_file *out,
                           kdh_error *err);
/* The same in a child process that may take at most `seconds` (libhdf5
 * can loop for ever or crash on a damaged file; this cannot). */
int kx_read_keras_h5_isolated(const char *path, double seconds, kx_keras_file *out, kdh_error *err);

/* Keras 3's model.weights.h5 (the member of a .keras zip), an image in
 * memory: every variable of the model's layers, named by its path in the
 * file ("layers/dense/vars/0"; keras3_layout.h maps them to variables);
 * what is not under layers/ (the optimizer's variables) is skipped. In
 * process, and in a child process bounded in time as the .h5 reader is. */
int kx_read_keras3_weights_image(const void *data, size_t len, const char *name, uint64_t max_bytes,
                                 kdh_tensor_list *out, kdh_error *err);
int kx_read_keras3_weights_isolated(const void *data, size_t len, const char *name, double seconds,
                                    kdh_tensor_list *out, kdh_error *err);

/* Keras 3's model.weights.h5 for a model (kdslc export -o m.keras): an
 * empty `vars` group for the model and for each of `groups` (every saveable
 * object's path, "layers/flatten"), and each tensor of `weights` at
 * paths[i] ("layers/dense/vars/0"). The image is malloc'd into *data. */
int kx_keras3_weights_build(const char *const *groups, int ngroups, const kdh_tensor *weights,
                            const char *const *paths, int n, void **data, size_t *len, const char *name, kdh_error *err);

#endif
