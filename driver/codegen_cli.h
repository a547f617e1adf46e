/* codegen_cli.h — `kdslc compile`'s output files (codegen_cli.c), on top of
 * the code generator (codegen.h). */
#ifndef KDSL_CODEGEN_CLI_H
#define KDSL_CODEGEN_CLI_H

#include "codegen.h"

/* Writes p's C source (kd_emit_c) to c_path and the header next to it
 * (kd_codegen_header_path), replaced together atomically
 * (kdh_atomic_write_set): a failure leaves both old files as they were.
 * 0, or 1 after reporting to d (the file and errno's message). */
int kd_codegen_write(const lp_program *p, const kd_codegen_options *o, const char *c_path, kd_diags *d);
/* The same for an int8 model (codegen/quantize.h's kq_emit_c). */
struct kq_model;
int kd_codegen_write_int8(const struct kq_model *m, const char *c_path, kd_diags *d);
/* The header beside c_path: its .c replaced by .h, or .h appended (malloc'd). */
char *kd_codegen_header_path(const char *c_path);

#endif
