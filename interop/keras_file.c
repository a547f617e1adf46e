/* keras_file.c — a Keras model file's config and weights (keras_file.h). */
#include "keras_file.h"

#include <stdlib.h>
#include <string.h>

void kx_keras_file_free(kx_keras_file *f)
{
    free(f->config);
    free(f->keras_version);
    kdh_list_free(&f->weights);
    memset(f, 0, sizeof *f);
    kdh_list_init(&f->weights);
}
