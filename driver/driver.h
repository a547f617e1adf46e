/* driver.h — the pipeline, stage by stage; what the command line and the tests drive. */
#ifndef KDSL_DRIVER_H
#define KDSL_DRIVER_H

#include "model.h"

typedef struct kd_session {
    kd_arena arena;        /* the compiler's memory for this compilation */
    kd_diags diags;
    kd_source src;
    ast_program *ast;
    kd_program *program;
    kd_model *model;       /* the selected model */
} kd_session;

/* Largest source file accepted. */
#define KD_MAX_SOURCE_BYTES ((size_t)64 << 20)

/* Reads, parses and checks `path`, selecting model `name` (NULL: the last).
 * Returns 0, or 1 after printing diagnostics. */
int kd_front_end(kd_session *s, const char *path, const char *name);
/* The same, from text in memory (tests, fuzzing). */
int kd_front_end_text(kd_session *s, const char *path, const char *text, size_t len, const char *name);
void kd_session_free(kd_session *s);

#endif
