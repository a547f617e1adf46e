/* codegen_cli.h — `kdslc compile` and `kdslc ir`'s code-generation options
 * and output files (codegen_cli.c), on top of the code generator (codegen.h). */
#ifndef KDSL_CODEGEN_CLI_H
#define KDSL_CODEGEN_CLI_H

#include "codegen.h"

/* One `kdslc compile` / `kdslc ir` code-generation option at argv[*i]:
 *   --batch N   --inference-only   --embed-weights W   --dtype f32|f64   --no-workspace
 *   --no-passes (and the --opt=value spellings). Returns 1 if it was one (*i
 * advanced past its value), 0 if not, -1 after printing a message on a bad value. */
int kd_codegen_parse_option(int argc, char **argv, int *i, kd_codegen_options *o);

/* Writes p's C source (kd_emit_c) to c_path and the header next to it
 * (kd_codegen_header_path), replaced together atomically
 * (kdh_atomic_write_set): a failure leaves both old files as they were.
 * 0, or 1 after reporting to d (the file and errno's message). */
int kd_codegen_write(const lp_program *p, const kd_codegen_options *o, const char *c_path, kd_diags *d);
/* The header beside c_path: its .c replaced by .h, or .h appended (malloc'd). */
char *kd_codegen_header_path(const char *c_path);

#endif
