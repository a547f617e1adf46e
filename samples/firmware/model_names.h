/* model_names.h — the compiled model's entry point and sizes by generic
 * names, from MODEL (its C prefix, e.g. functional_1) and MODEL_UPPER (its
 * macro prefix, FUNCTIONAL_1), which the build gives with -D. Include after
 * model.h. */
#ifndef MODEL_NAMES_H
#define MODEL_NAMES_H

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define PREDICT CAT(MODEL, _predict_embedded)
#define ARENA_BYTES CAT(MODEL_UPPER, _ARENA_BYTES)
#define ARENA_ALIGN CAT(MODEL_UPPER, _ARENA_ALIGN)
#define IN_SIZE CAT(MODEL_UPPER, _INPUT0_SIZE)
#define OUT_SIZE CAT(MODEL_UPPER, _OUTPUT0_SIZE)

#endif
