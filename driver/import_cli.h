/* import_cli.h — `kdslc import` (import_cli.c). */
#ifndef KDSL_IMPORT_CLI_H
#define KDSL_IMPORT_CLI_H

/* A Keras model file as a KDSL program at kdsl_path (NULL: the file's name
 * with .kdsl, here) and its weights at weights_path (NULL: beside the
 * program, with .safetensors). Returns the exit status: 0, 1 (a file kdsl
 * cannot import, reported) or 2 (a command-line mistake). */
int kd_run_import(const char *file, const char *kdsl_path, const char *weights_path);

#endif
