/* keras_file.c — a Keras model file's config and weights (keras_file.h). */
#include "keras_file.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kx_fail(kdh_error *err, const char *path, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(err->msg, sizeof err->msg, "%s: %s", path, msg);
    return -1;
}

void kx_keras_file_free(kx_keras_file *f)
{
    free(f->config);
    free(f->keras_version);
    kdh_list_free(&f->weights);
    memset(f, 0, sizeof *f);
    kdh_list_init(&f->weights);
}
