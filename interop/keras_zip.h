/* keras_zip.h — Keras 3's .keras files (model.save("m.keras")): a zip of
 * config.json (the model's config), metadata.json (the Keras version) and
 * model.weights.h5 (the variables, keras3_layout.h), read and written
 * through libzip (keras_zip.c). The archive is untrusted: member names,
 * declared and actual sizes, compression and encryption are checked, and
 * nothing is ever extracted to disk. */
#ifndef KDSL_KERAS_ZIP_H
#define KDSL_KERAS_ZIP_H

#include "keras_file.h"

/* Whether the file starts with a zip's signature ("PK\3\4"). */
bool kx_is_zip(const char *path);

/* The members kdsl takes from a .keras archive, each checked. */
typedef struct kx_keras_zip {
    char *config;           /* config.json (NUL-terminated) */
    char *keras_version;    /* metadata.json's keras_version, or NULL */
    void *weights;          /* model.weights.h5's bytes */
    size_t weights_len;
} kx_keras_zip;

/* From the archive's bytes in memory (`name` for messages), the weights at
 * most max_bytes (0: 4 GiB); 0, or -1 with err set and *out empty. */
int kx_keras_zip_read_mem(const void *data, size_t len, const char *name, uint64_t max_bytes, kx_keras_zip *out,
                          kdh_error *err);
void kx_keras_zip_free(kx_keras_zip *z);

/* kdslc import's reader: the archive's members, then the weights through
 * libhdf5 in a child process bounded by `seconds` (keras_h5.h), named by
 * their paths ("layers/dense/vars/0"). 0, or -1 with err set. */
int kx_read_keras_zip(const char *path, double seconds, kx_keras_file *out, kdh_error *err);

/* Writes `path` atomically as Keras 3's saving_lib does: metadata.json,
 * config.json and the weights image, stored uncompressed. */
int kx_write_keras_zip(const char *path, const char *config, const void *weights_h5, size_t weights_len, kdh_error *err);

#endif
