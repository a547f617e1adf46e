/* keras_cli.h — `kdslc import` and `kdslc export` (keras_cli.c). */
#ifndef KDSL_KERAS_CLI_H
#define KDSL_KERAS_CLI_H

/* A Keras model file as a KDSL program at kdsl_path (NULL: the file's name
 * with .kdsl, here) and its weights at weights_path (NULL: beside the
 * program, with .safetensors). Returns the exit status: 0, 1 (a file kdsl
 * cannot import, reported) or 2 (a command-line mistake). */
int kd_run_import(const char *file, const char *kdsl_path, const char *weights_path);

/* Model `model` (NULL: the last) of the KDSL file with the weights of
 * `weights` as a legacy Keras HDF5 file at h5_path (what Keras' load_model
 * reads). Returns the exit status: 0, 1 or 2 (a command-line mistake). */
int kd_run_export(const char *file, const char *model, const char *weights, const char *h5_path);

#endif
