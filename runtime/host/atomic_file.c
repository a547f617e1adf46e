/* atomic_file.c — replace files so that a crash, a full disk, a signal or a
 * failing writer never leaves one half-written: weights, checkpoints,
 * histories, predictions and generated C all go through here.
 *
 * The recipe: create a temporary in the SAME directory as the file it
 * replaces (rename is only atomic within one file system), write, fflush +
 * fsync (the data must be on disk before the name points at it, or a crash
 * can leave a renamed but empty file), rename over the target, then fsync
 * the directory so that the rename itself survives a crash.
 *
 * Beyond the recipe:
 * - A symbolic link is followed: its final target is replaced, beside
 *   which the temporary is made, and the link stays a link.
 * - The replaced file's permission bits are kept (a 0600 checkpoint stays
 *   0600); a new file gets 0666 minus the umask, as open(2) gives it.
 * - Temporaries are named `.NAME.kd-HASH-PID.tmp`: NAME the target's name
 *   cut to 100 bytes (a 250-byte name stays under NAME_MAX), HASH a 32-bit
 *   hash of the whole name, PID the writer's. A writer killed by SIGKILL
 *   leaves one; the next write of the same target removes every one whose
 *   PID is no longer alive.
 * - Several files (model.c and model.h) are written together: all are
 *   written and synced before the first rename, and when a rename fails the
 *   ones already renamed get their old content back (from a hard link to
 *   it, `.NAME.kd-HASH-PID.old`), so the set never mixes old and new.
 * - Every failure names the file and errno's message. */
#define _FILE_OFFSET_BITS 64
#define _DEFAULT_SOURCE   /* DT_UNKNOWN, fchmod */
#include "host_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { TEMP_NAME_KEEP = 100 };   /* bytes of the target's name kept in a temporary's */

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

static const char *base_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

char *kdh_resolve_links(const char *path)
{
    char *cur = strdup(path);
    for (int hops = 0; cur && hops < 40; hops++) {
        struct stat st;
        if (lstat(cur, &st) != 0 || !S_ISLNK(st.st_mode)) return cur;
        char link[PATH_MAX];
        ssize_t n = readlink(cur, link, sizeof link - 1);
        if (n < 0) return cur;
        link[n] = 0;
        char *next;
        if (link[0] == '/') {
            next = strdup(link);
        } else {
            /* relative to the directory holding the link */
            char *dir = dir_of(cur);
            size_t dl = dir ? strlen(dir) : 0;
            next = dir ? malloc(dl + 1 + (size_t)n + 1) : NULL;
            if (next) {
                memcpy(next, dir, dl);
                next[dl] = '/';
                memcpy(next + dl + 1, link, (size_t)n + 1);
            }
            free(dir);
        }
        free(cur);
        cur = next;
    }
    if (cur) errno = ELOOP;
    free(cur);
    return NULL;
}

/* FNV-1a: ties a temporary to the whole name of its target. */
static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* ".NAME.kd-HASH-" for the target's base name: every temporary of that
 * target starts with it. */
static void temp_prefix(const char *base, char *out, size_t size)
{
    size_t keep = strlen(base);
    if (keep > TEMP_NAME_KEEP) {
        keep = TEMP_NAME_KEEP;
        while (keep > 0 && ((unsigned char)base[keep] & 0xc0) == 0x80) keep--;   /* not inside a UTF-8 character */
    }
    snprintf(out, size, ".%.*s.kd-%08x-", (int)keep, base, (unsigned)name_hash(base));
}

/* Whether process pid may still be writing (kill(pid, 0) fails with ESRCH
 * only for a process that does not exist). Our own pid counts as dead: a
 * process writes a target once at a time, so a temporary with our pid is
 * left over from an earlier process that had it. */
static bool writer_alive(long pid)
{
    if (pid <= 0 || pid > INT_MAX) return false;
    if (pid == (long)getpid()) return false;
    return kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}

/* Removes the temporaries of target (resolved) left by writers that died. */
static void reclaim_stale(const char *target)
{
    char *dir = dir_of(target);
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d) {
        free(dir);
        return;
    }
    char prefix[TEMP_NAME_KEEP + 32];
    temp_prefix(base_of(target), prefix, sizeof prefix);
    size_t pl = strlen(prefix);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, pl) != 0) continue;
        char *end;
        errno = 0;
        long pid = strtol(e->d_name + pl, &end, 10);
        if (errno || end == e->d_name + pl || (strcmp(end, ".tmp") != 0 && strcmp(end, ".old") != 0)) continue;
        if (!writer_alive(pid)) unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
    free(dir);
}

/* The name of this process's temporary (suffix ".tmp") or backup (".old")
 * for target, malloc'd. */
static char *temp_name(const char *target, const char *suffix)
{
    char *dir = dir_of(target);
    if (!dir) return NULL;
    char prefix[TEMP_NAME_KEEP + 32];
    temp_prefix(base_of(target), prefix, sizeof prefix);
    size_t n = strlen(dir) + 1 + strlen(prefix) + 24 + strlen(suffix);
    char *t = malloc(n);
    if (t) snprintf(t, n, "%s/%s%ld%s", dir, prefix, (long)getpid(), suffix);
    free(dir);
    return t;
}

static int fsync_dir(const char *target, const char *path, kdh_error *err)
{
    char *dir = dir_of(target);
    if (!dir) return kdh__err(err, "%s: out of memory", path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;
    if (fd < 0) {
        rc = kdh__err(err, "%s: cannot open directory %s to sync it: %s", path, dir, strerror(errno));
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

/* One file of a write: where it goes, its temporary, its backup. */
typedef struct out_file {
    char *target;          /* path with its links resolved */
    char *tmp, *old;       /* old: a hard link to the replaced content, for the rollback of a set */
    bool existed;
    struct stat st;        /* of the replaced file */
} out_file;

static void out_free(out_file *o)
{
    if (o->tmp) unlink(o->tmp);
    if (o->old) unlink(o->old);
    free(o->target);
    free(o->tmp);
    free(o->old);
    memset(o, 0, sizeof *o);
}

/* Resolves the target, refuses what is not a regular file, removes stale
 * temporaries and creates this write's temporary with the old mode. */
static int out_create(out_file *o, const char *path, kdh_error *err)
{
    if (!(o->target = kdh_resolve_links(path)))
        return kdh__err(err, "%s: cannot follow the symbolic link: %s", path, strerror(errno));
    if (stat(o->target, &o->st) == 0) {
        if (S_ISDIR(o->st.st_mode)) return kdh__err(err, "%s: is a directory", path);
        if (!S_ISREG(o->st.st_mode))
            return kdh__err(err, "%s: not a regular file (a device, FIFO or socket); kdslc only replaces files", path);
        o->existed = true;
    }
    reclaim_stale(o->target);
    if (!(o->tmp = temp_name(o->target, ".tmp"))) return kdh__err(err, "%s: out of memory", path);
    int fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno == EEXIST) {
        /* ours by name but not by this call: an earlier process with our pid */
        unlink(o->tmp);
        fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    }
    if (fd < 0) {
        int e = errno;
        free(o->tmp);
        o->tmp = NULL;
        return kdh__err(err, "%s: cannot create a temporary file next to it: %s", path, strerror(e));
    }
    if (o->existed) {
        /* Keep the replaced file's permissions, and its group and owner
         * where we may (only root can give a file away). */
        if (fchmod(fd, o->st.st_mode & 07777) != 0) {
            int e = errno;
            close(fd);
            return kdh__err(err, "%s: cannot set the mode of the new file: %s", path, strerror(e));
        }
        if (o->st.st_uid != geteuid() || o->st.st_gid != getegid())
            if (fchown(fd, o->st.st_uid, o->st.st_gid) != 0) { /* not ours to give: keep ours */ }
    }
    return fd;
}

/* Writes the content through fn into fd and syncs it; closes fd. */
static int out_write(int fd, const char *path, kdh_write_fn fn, void *ctx, kdh_error *err)
{
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        close(fd);
        return kdh__err(err, "%s: cannot write: %s", path, strerror(e));
    }
    err->msg[0] = 0;
    errno = 0;
    if (fn(f, ctx, err) != 0) {
        /* a writer that did not say why: errno from its last call */
        if (!err->msg[0]) kdh__err(err, "%s: write failed: %s", path, strerror(errno ? errno : EIO));
        fclose(f);
        return -1;
    }
    /* Each step reports its own failure: a full disk often shows up only
     * at fflush or fsync, never at fwrite. */
    if (ferror(f)) {
        int e = errno;
        fclose(f);
        return kdh__err(err, "%s: write failed: %s", path, strerror(e ? e : EIO));
    }
    if (fflush(f) != 0) {
        int e = errno;
        fclose(f);
        return kdh__err(err, "%s: write failed: %s", path, strerror(e));
    }
    if (fsync(fileno(f)) != 0 && errno != EINVAL) {
        int e = errno;
        fclose(f);
        return kdh__err(err, "%s: cannot sync to disk: %s", path, strerror(e));
    }
    if (fclose(f) != 0) return kdh__err(err, "%s: closing failed: %s", path, strerror(errno));
    return 0;
}

int kdh_atomic_write_set(const kdh_atomic_out *outs, int n, kdh_error *err)
{
    out_file *o = calloc((size_t)(n > 0 ? n : 1), sizeof *o);
    if (!o) return kdh__err(err, "out of memory");
    int rc = -1, renamed = 0;
    for (int i = 0; i < n; i++) {
        int fd = out_create(&o[i], outs[i].path, err);
        if (fd < 0) goto done;
        if (out_write(fd, outs[i].path, outs[i].fn, outs[i].ctx, err) != 0) goto done;
    }
    /* All written: now the renames, with a way back for a set. */
    for (int i = 0; n > 1 && i < n; i++)
        if (o[i].existed && (o[i].old = temp_name(o[i].target, ".old")) && link(o[i].target, o[i].old) != 0) {
            free(o[i].old);   /* no hard links here: no way back, as for one file */
            o[i].old = NULL;
        }
    for (; renamed < n; renamed++) {
        if (rename(o[renamed].tmp, o[renamed].target) != 0) {
            kdh__err(err, "%s: cannot replace it: %s", outs[renamed].path, strerror(errno));
            goto undo;
        }
        free(o[renamed].tmp);
        o[renamed].tmp = NULL;
    }
    rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        /* The new content is in place now; a failing directory sync only
         * means the rename might not survive a power cut, which the caller
         * should still hear about. */
        rc = fsync_dir(o[i].target, outs[i].path, err);
    }
    goto done;
undo:
    for (int i = 0; i < renamed; i++) {
        if (o[i].old && rename(o[i].old, o[i].target) == 0) {
            free(o[i].old);
            o[i].old = NULL;
        } else if (!o[i].existed) {
            unlink(o[i].target);
        }
    }
done:
    for (int i = 0; i < n; i++) out_free(&o[i]);
    free(o);
    return rc;
}

int kdh_atomic_write(const char *path, kdh_write_fn fn, void *ctx, kdh_error *err)
{
    kdh_atomic_out one = {path, fn, ctx};
    return kdh_atomic_write_set(&one, 1, err);
}
