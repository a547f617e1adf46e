/* paths.h — the files a command reads and writes, checked before it starts.
 *
 * A command that writes its outputs at the end (compile's model.c and
 * model.h, train's --save after the last epoch, predict's -o) must not find
 * out then that it cannot, or that an output is one of its inputs: the
 * work would be lost, or the input destroyed. kdh_check_paths looks at
 * every path first. Files are compared by device and inode, through
 * symbolic links; an output that does not exist yet by its resolved
 * directory and name. */
#ifndef KDSL_PATHS_H
#define KDSL_PATHS_H

#include "tensor_file.h"

#include <stdbool.h>

typedef struct kdh_path_use {
    const char *path;      /* NULL: not given, skipped */
    const char *what;      /* for messages: "--save", "-o", "the model source" */
    bool output;
    /* Two uses with the same nonzero tag may name one file: an input read
     * whole before the output replaces it, of the same kind (--resume and
     * --checkpoint continue a run; --weights and --save update weights). */
    int same_ok;
} kdh_path_use;

/* 0 when every output can be written and none is an input or another
 * output; otherwise fills err and returns 1 for a file-system problem (an
 * output's directory missing or not writable, an output that is a
 * directory, a device or read-only) or 2 for two uses of one file (a
 * command-line mistake: docs/cli.md's exit status 2). Inputs that do not
 * exist are left to their readers. */
int kdh_check_paths(const kdh_path_use *uses, int n, kdh_error *err);

#endif
