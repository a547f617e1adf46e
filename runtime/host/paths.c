/* paths.c — the files of a command, checked before it starts (paths.h). */
#define _DEFAULT_SOURCE
#include "paths.h"

#include "host_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What a path names: an existing file by device and inode, a file to be
 * created by its directory's device and inode and its name. */
typedef struct file_id {
    bool known, exists;
    dev_t dev;
    ino_t ino;
    const char *name;      /* into resolved, when !exists */
    char *resolved;
} file_id;

static char *dir_part(const char *path, const char **base)
{
    const char *slash = strrchr(path, '/');
    *base = slash ? slash + 1 : path;
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* Fills id for one use; 0, or 1 with err filled for an output that cannot be written. */
static int identify(const kdh_path_use *u, file_id *id, kdh_error *err)
{
    memset(id, 0, sizeof *id);
    if (!(id->resolved = kdh_resolve_links(u->path))) {
        if (!u->output) return 0;
        return kdh__err(err, "%s: cannot follow the symbolic link: %s", u->path, strerror(errno)), 1;
    }
    struct stat st;
    if (stat(id->resolved, &st) == 0) {
        id->known = id->exists = true;
        id->dev = st.st_dev;
        id->ino = st.st_ino;
        if (!u->output) {
            if (!S_ISREG(st.st_mode)) id->known = false;   /* a data directory; its reader says the rest */
            return 0;
        }
        if (S_ISDIR(st.st_mode))
            return kdh__err(err, "%s %s: is a directory; name a file to write", u->what, u->path), 1;
        if (!S_ISREG(st.st_mode))
            return kdh__err(err, "%s %s: not a regular file (a device, FIFO or socket); name a file to write",
                            u->what, u->path), 1;
        if (access(id->resolved, W_OK) != 0)
            return kdh__err(err, "%s %s: cannot replace it: %s", u->what, u->path, strerror(errno)), 1;
    } else if (!u->output) {
        return 0;   /* a missing input: its reader's message */
    }
    /* The directory the output is (re)created in must be there and writable. */
    const char *base;
    char *dir = dir_part(id->resolved, &base);
    if (!dir) return kdh__err(err, "out of memory"), 1;
    int rc = 0;
    if (stat(dir, &st) != 0)
        rc = (kdh__err(err, "%s %s: cannot write it: directory %s: %s", u->what, u->path, dir, strerror(errno)), 1);
    else if (!S_ISDIR(st.st_mode))
        rc = (kdh__err(err, "%s %s: cannot write it: %s is not a directory", u->what, u->path, dir), 1);
    else if (access(dir, W_OK | X_OK) != 0)
        rc = (kdh__err(err, "%s %s: cannot write in directory %s: %s", u->what, u->path, dir, strerror(errno)), 1);
    else if (!id->exists) {
        id->known = true;
        id->dev = st.st_dev;
        id->ino = st.st_ino;
        id->name = base;
    }
    free(dir);
    return rc;
}

static bool same_file(const file_id *a, const file_id *b)
{
    if (!a->known || !b->known || a->exists != b->exists || a->dev != b->dev || a->ino != b->ino) return false;
    return a->exists || strcmp(a->name, b->name) == 0;
}

int kdh_check_paths(const kdh_path_use *uses, int n, kdh_error *err)
{
    file_id *ids = calloc((size_t)(n > 0 ? n : 1), sizeof *ids);
    if (!ids) return kdh__err(err, "out of memory"), 1;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++)
        if (uses[i].path) rc = identify(&uses[i], &ids[i], err);
    /* every output against every other use */
    for (int i = 0; i < n && rc == 0; i++) {
        if (!uses[i].path || !uses[i].output) continue;
        for (int j = 0; j < n && rc == 0; j++) {
            if (j == i || !uses[j].path || (uses[j].output && j < i)) continue;
            if (!same_file(&ids[i], &ids[j])) continue;
            if (uses[i].same_ok && uses[i].same_ok == uses[j].same_ok) continue;
            if (uses[j].output)
                kdh__err(err, "%s %s and %s %s are the same file; give each output its own", uses[i].what,
                         uses[i].path, uses[j].what, uses[j].path);
            else
                kdh__err(err, "%s %s would overwrite %s %s (the same file); write it somewhere else", uses[i].what,
                         uses[i].path, uses[j].what, uses[j].path);
            rc = 2;
        }
    }
    for (int i = 0; i < n; i++) free(ids[i].resolved);
    free(ids);
    return rc;
}
