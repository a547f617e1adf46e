/* atomic_file.c — replace a file so that a crash, a full disk or a failing
 * writer never leaves it half-written: weights, checkpoints and outputs all
 * go through kdh_atomic_write.
 *
 * The recipe: create a temp file in the SAME directory (rename is only
 * atomic within one file system), write, fflush + fsync (the data must be
 * on disk before the name points at it, or a crash can leave a renamed but
 * empty file), rename over the target, then fsync the directory so the
 * rename itself survives a crash. */
#define _FILE_OFFSET_BITS 64
#include "host_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int kdh_fwrite_all(FILE *f, const void *data, size_t n, const char *path, kdh_error *err)
{
    if (n == 0) return 0;
    errno = 0;
    if (fwrite(data, 1, n, f) != n)
        return kdh__err(err, "%s: write failed: %s", path,
                        errno ? strerror(errno) : "short write");
    return 0;
}

/* The directory part of path ("." when there is none), malloc'd. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, path, n);
        d[n] = 0;
    }
    return d;
}

/* Creates PATH.tmp-XXXXXX exclusively. We do not use mkstemp because it
 * creates mode 0600 and fixing that needs the umask, which can only be read
 * by changing it (a race with other threads); open(O_EXCL, 0666) applies
 * the umask for us. */
static int create_temp(const char *path, char **tmp_out, kdh_error *err)
{
    static const char digits[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    size_t n = strlen(path);
    char *tmp = malloc(n + sizeof ".tmp-XXXXXX");
    if (!tmp) return kdh__err(err, "%s: out of memory", path);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
                    ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&ts;
    for (int attempt = 0; attempt < 100; attempt++) {
        memcpy(tmp, path, n);
        memcpy(tmp + n, ".tmp-", 5);
        for (int i = 0; i < 6; i++) {
            /* xorshift64*: different names on each retry and in each thread. */
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            tmp[n + 5 + i] = digits[(seed * 0x2545F4914F6CDD1DULL >> 58) % (sizeof digits - 1)];
        }
        tmp[n + 11] = 0;
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) {
            *tmp_out = tmp;
            return fd;
        }
        if (errno != EEXIST) {
            int e = errno;
            free(tmp);
            return kdh__err(err, "%s: cannot create a temporary file next to it: %s", path,
                            strerror(e));
        }
    }
    free(tmp);
    return kdh__err(err, "%s: cannot find a free temporary file name", path);
}

static int fsync_dir(const char *path, kdh_error *err)
{
    char *dir = dir_of(path);
    if (!dir) return kdh__err(err, "%s: out of memory", path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;
    if (fd < 0) {
        rc = kdh__err(err, "%s: cannot open directory %s to sync it: %s", path, dir,
                      strerror(errno));
    } else {
        /* Some file systems cannot sync a directory (EINVAL) or are
         * read-only for metadata we did not change; neither is a failure
         * of this write. */
        if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
            rc = kdh__err(err, "%s: cannot sync directory %s: %s", path, dir, strerror(errno));
        close(fd);
    }
    free(dir);
    return rc;
}

int kdh_atomic_write(const char *path, kdh_write_fn fn, void *ctx, kdh_error *err)
{
    struct stat st;
    /* Renaming over a directory would fail late; say so early and clearly. */
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return kdh__err(err, "%s: is a directory", path);

    char *tmp = NULL;
    int fd = create_temp(path, &tmp, err);
    if (fd < 0) return -1;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        kdh__err(err, "%s: cannot write: %s", path, strerror(errno));
        close(fd);
        goto fail;
    }
    if (fn(f, ctx, err) != 0) {
        fclose(f);
        goto fail;
    }
    /* Each step reports its own failure: a full disk often shows up only
     * at fflush or fsync, never at fwrite. */
    if (ferror(f)) {
        kdh__err(err, "%s: write failed", path);
        fclose(f);
        goto fail;
    }
    if (fflush(f) != 0) {
        kdh__err(err, "%s: write failed: %s", path, strerror(errno));
        fclose(f);
        goto fail;
    }
    if (fsync(fileno(f)) != 0 && errno != EINVAL) {
        kdh__err(err, "%s: cannot sync to disk: %s", path, strerror(errno));
        fclose(f);
        goto fail;
    }
    if (fclose(f) != 0) {
        kdh__err(err, "%s: closing failed: %s", path, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        kdh__err(err, "%s: cannot replace it: %s", path, strerror(errno));
        goto fail;
    }
    free(tmp);
    /* The new content is in place now; a failing directory sync only means
     * the rename might not survive a power cut, which the caller should
     * still hear about. */
    return fsync_dir(path, err);

fail:
    unlink(tmp);
    free(tmp);
    return -1;
}
