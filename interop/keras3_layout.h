/* keras3_layout.h — where Keras 3 keeps each variable of a model in a
 * .keras file's model.weights.h5, from the model's config (keras3_layout.c):
 * kdslc import reads the file's datasets by it, kdslc export writes them. */
#ifndef KDSL_KERAS3_LAYOUT_H
#define KDSL_KERAS3_LAYOUT_H

#include "model.h"

typedef struct kx_keras3_layout {
    const char **var_paths;   /* per m->vars item: "layers/dense/vars/0" */
    const char **groups;      /* every saveable object's group, in saving_lib's order: "layers/dense" */
    int ngroups;
} kx_keras3_layout;

/* The layout of model m (checked), which was made from (import) or
 * exported as (export) `config_json`; 0, or 1 after reporting to d each
 * variable the config gives no place (`source` prefixes the messages). */
int kx_keras3_layout_of(kd_arena *a, const char *config_json, const kd_model *m, const char *source,
                        kx_keras3_layout *out, kd_diags *d);

#endif
