/* keras_file.h — what kdslc import takes from a Keras model file, whatever
 * its format (keras_h5.c, tfjs_model.c): the model's config and its weights
 * by Keras' names. */
#ifndef KDSL_KERAS_FILE_H
#define KDSL_KERAS_FILE_H

#include "host/tensor_file.h"

typedef struct kx_keras_file {
    char *config;              /* the model config JSON (malloc'd) */
    char *keras_version;       /* "2.4.0", "tfjs-layers 4.22.0", or NULL (malloc'd) */
    kdh_tensor_list weights;   /* F32, named "layer/weight" (an h5 file's ":0" dropped) */
} kx_keras_file;

void kx_keras_file_free(kx_keras_file *f);

/* "PATH: message" into err; returns -1 (the readers' failure). */
int kx_fail(kdh_error *err, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
