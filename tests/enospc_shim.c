/* enospc_shim.c — a full disk on demand, for tests (LD_PRELOAD).
 *
 * With KDSL_ENOSPC_MATCH=TEXT in the environment, write() and fwrite() on
 * a file whose path (as /proc/self/fd shows it) contains TEXT fail with
 * ENOSPC, as they do when the disk fills up; every other write goes
 * through. tests/test_outputs.c preloads it into kdslc to check that a full
 * disk leaves the old files whole and says so. Built without the
 * sanitizers (tests/meson.build): it is loaded into both builds' kdslc. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool full(int fd)
{
    const char *match = getenv("KDSL_ENOSPC_MATCH");
    if (!match || !*match || fd < 0) return false;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return false;
    path[n] = 0;
    return strstr(path, match) != NULL;
}

ssize_t write(int fd, const void *buf, size_t n)
{
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    if (n > 0 && full(fd)) {
        errno = ENOSPC;
        return -1;
    }
    return real(fd, buf, n);
}

size_t fwrite(const void *buf, size_t size, size_t count, FILE *f)
{
    static size_t (*real)(const void *, size_t, size_t, FILE *);
    if (!real) real = (size_t(*)(const void *, size_t, size_t, FILE *))dlsym(RTLD_NEXT, "fwrite");
    if (size && count && full(fileno(f))) {
        errno = ENOSPC;
        return 0;
    }
    return real(buf, size, count, f);
}
