/* tfjs_model.h — reading a TensorFlow.js Layers model: model.json (the
 * Keras config under modelTopology, the weights listed in weightsManifest)
 * and its binary weight shards beside it (tfjs_model.c). The files are
 * untrusted: shard names, shapes, dtypes and sizes are checked. */
#ifndef KDSL_TFJS_MODEL_H
#define KDSL_TFJS_MODEL_H

#include "keras_file.h"

/* Whether the file looks like JSON (its first non-blank byte is '{'). */
bool kx_is_tfjs_json(const char *path);
/* 0, or -1 with err set (and *out empty). */
int kx_read_tfjs(const char *path, kx_keras_file *out, kdh_error *err);
/* The same from model.json's text in memory (len bytes, no NUL needed);
 * `path` names it in messages and places its shards (beside it). */
int kx_read_tfjs_text(const char *text, size_t len, const char *path, kx_keras_file *out, kdh_error *err);

#endif
