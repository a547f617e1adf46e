/* jit_cache.c — the JIT's compiled code kept between runs (jit_cache.h).
 *
 * An entry is DIR/jit/<key>.so: the shared library libgccjit wrote
 * (gcc_jit_context_compile_to_file), then a trailer of TRAILER_BYTES: a
 * magic, the key, the SHA-256 of the library's bytes and their count. An
 * entry is trusted only when all of these agree, so a truncated, damaged or
 * misnamed file is never loaded (a truncated ELF can fault in dlopen); it is
 * removed and compiled again.
 *
 * Concurrent runs: a writer compiles into a temporary of its own in the
 * same directory (.tmp-PID-N-KEY.so), appends the trailer, fsyncs, and
 * renames it over the entry's name, so a reader sees no entry or a whole
 * one; two writers of one key write the same code, and the last rename
 * wins.
 *
 * The code holds no address of this process: emit_jit.c calls the runtime
 * through a table it fills after loading. */
#define _GNU_SOURCE   /* dl_iterate_phdr, dladdr */
#include "jit_cache.h"

#include "codegen.h"
#include "jit.h"

#include <libgccjit.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef KDSL_VERSION
#define KDSL_VERSION "unknown"
#endif

static const char MAGIC[8] = {'K', 'D', 'S', 'L', 'J', 'I', 'T', '1'};
enum { TRAILER_BYTES = 8 + 32 + 32 + 8 };

/* ---- the key ------------------------------------------------------------------------------------- */

typedef struct build_id_search {
    const void *addr;
    char hex[129];
} build_id_search;

/* The GNU build ID note of the loaded object that holds s->addr. */
static int find_build_id(struct dl_phdr_info *info, size_t size, void *ctx)
{
    (void)size;
    build_id_search *s = ctx;
    uintptr_t a = (uintptr_t)s->addr;
    bool here = false;
    for (int i = 0; i < info->dlpi_phnum && !here; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        here = ph->p_type == PT_LOAD && a >= lo && a < lo + ph->p_memsz;
    }
    if (!here) return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE) continue;
        const uint8_t *n = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr), *end = n + ph->p_memsz;
        while (n + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)n;
            const uint8_t *name = n + sizeof *nh, *desc = name + ((nh->n_namesz + 3) & ~3u);
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && !memcmp(name, "GNU", 4) && nh->n_descsz <= 64) {
                for (unsigned k = 0; k < nh->n_descsz; k++) snprintf(s->hex + 2 * k, 3, "%02x", desc[k]);
                return 1;
            }
            n = desc + ((nh->n_descsz + 3) & ~3u);
        }
    }
    return 1;
}

static void hash_text(kd_sha256 *h, const char *what, const char *text, size_t n)
{
    /* each part with its name and length, so that no two sets of parts hash alike */
    char head[96];
    int k = snprintf(head, sizeof head, "\n%s %zu\n", what, n);
    kd_sha256_update(h, head, (size_t)k);
    kd_sha256_update(h, text, n);
}

static bool hash_stream(kd_sha256 *h, const char *what, const lp_program *p, bool c_text)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return false;
    if (c_text) {
        kd_diags d = {.out = stderr};
        kd_emit_c(p, NULL, f, f, &d);
    } else {
        kd_loops_dump(f, p);
    }
    bool ok = fclose(f) == 0;
    if (ok) hash_text(h, what, buf, n);
    free(buf);
    return ok;
}

bool kd_jit_cache_key(const lp_program *p, const char *options, kd_jit_key *key, char *why, size_t why_len)
{
    build_id_search b = {.addr = (const void *)kd_jit_cache_key};
    dl_iterate_phdr(find_build_id, &b);
    if (!b.hex[0]) {
        snprintf(why, why_len, "kdsl was linked without a build ID (ld --build-id): its compiled code is not cached");
        return false;
    }
    char env[512], cpu[160];
    kd_host_cpu_features(cpu, sizeof cpu);
    snprintf(env, sizeof env, "kdsl %s build %s libgccjit %d.%d.%d cpu %s", KDSL_VERSION, b.hex, gcc_jit_version_major(),
             gcc_jit_version_minor(), gcc_jit_version_patchlevel(), cpu);
    kd_sha256 h;
    kd_sha256_init(&h);
    hash_text(&h, "kdsl-jit-cache 1", env, strlen(env));
    hash_text(&h, "options", options, strlen(options));
    if (!hash_stream(&h, "loops", p, false) || !hash_stream(&h, "c", p, true)) {
        snprintf(why, why_len, "cannot hash the program: %s", strerror(errno));
        return false;
    }
    kd_sha256_final(&h, key->sha);
    for (int i = 0; i < 32; i++) snprintf(key->hex + 2 * i, 3, "%02x", key->sha[i]);
    return true;
}

bool kd_jit_default_cache_dir(char *buf, size_t n)
{
    const char *d = getenv("KDSL_CACHE_DIR"), *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (d) return *d && snprintf(buf, n, "%s", d) < (int)n;
    if (x && *x) return snprintf(buf, n, "%s/kdsl", x) < (int)n;
    return home && *home && snprintf(buf, n, "%s/.cache/kdsl", home) < (int)n;
}

/* ---- entries ------------------------------------------------------------------------------------- */

static char *entry_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 8;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/jit/%s", dir, name);
    return s;
}

static char *key_path(const char *dir, const kd_jit_key *key)
{
    char name[80];
    snprintf(name, sizeof name, "%s.so", key->hex);
    return entry_path(dir, name);
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static bool read_all(int fd, uint8_t *buf, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        got += (size_t)r;
    }
    return true;
}

static void sha_of(const uint8_t *data, size_t n, uint8_t out[32])
{
    kd_sha256 h;
    kd_sha256_init(&h);
    kd_sha256_update(&h, data, n);
    kd_sha256_final(&h, out);
}

/* Whether the open file is a whole entry of key: trailer, sums, ELF magic. */
static bool entry_ok(int fd, const kd_jit_key *key)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < TRAILER_BYTES + 64 || st.st_size > (1LL << 34))
        return false;
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n);
    bool ok = buf && read_all(fd, buf, n);
    if (ok) {
        const uint8_t *t = buf + n - TRAILER_BYTES;
        uint8_t sum[32];
        ok = !memcmp(t, MAGIC, 8) && !memcmp(t + 8, key->sha, 32) && get_u64(t + 72) == n - TRAILER_BYTES &&
             !memcmp(buf, "\177ELF", 4);
        if (ok) {
            sha_of(buf, n - TRAILER_BYTES, sum);
            ok = !memcmp(t + 40, sum, 32);
        }
    }
    free(buf);
    return ok;
}

void *kd_jit_cache_open(const char *dir, const kd_jit_key *key)
{
    char *path = key_path(dir, key);
    if (!path) return NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    void *h = NULL;
    if (fd >= 0) {
        /* by its name: glibc takes a loaded object of the same name for the
         * one asked for, so /proc/self/fd/N would find another entry's; this
         * name is only ever renamed over by a whole entry of the same key */
        if (entry_ok(fd, key)) h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) unlink(path);   /* corrupt: compiled again, by whoever comes first */
        else utimensat(AT_FDCWD, path, NULL, 0);   /* recently used: evicted last */
        close(fd);
    }
    free(path);
    return h;
}

void kd_jit_cache_remove(const char *dir, const kd_jit_key *key)
{
    char *path = key_path(dir, key);
    if (path) unlink(path);
    free(path);
}

/* mkdir -p */
static int make_dirs(const char *dir)
{
    char *d = strdup(dir);
    if (!d) return -1;
    int rc = 0;
    for (char *s = d + 1;; s++) {
        if (*s != '/' && *s) continue;
        char c = *s;
        *s = 0;
        if (mkdir(d, 0777) != 0 && errno != EEXIST) rc = -1;
        *s = c;
        if (!c || rc) break;
    }
    free(d);
    return rc;
}

bool kd_jit_cache_begin(const char *dir, const kd_jit_key *key, kd_jit_cache_entry *e, char *why, size_t why_len)
{
    static unsigned counter;
    memset(e, 0, sizeof *e);
    char name[128];
    snprintf(name, sizeof name, ".tmp-%ld-%u-%.16s.so", (long)getpid(), __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED),
             key->hex);
    e->tmp = entry_path(dir, name);
    e->path = key_path(dir, key);
    e->dir = strdup(dir);
    char *jdir = entry_path(dir, "");
    int fd = -1;
    if (e->tmp && e->path && e->dir && jdir && make_dirs(jdir) == 0)
        fd = open(e->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) snprintf(why, why_len, "cannot write the JIT cache in %s: %s", dir, strerror(errno));
    free(jdir);
    if (fd < 0) {
        kd_jit_cache_abort(e);
        return false;
    }
    close(fd);
    return true;
}

void kd_jit_cache_abort(kd_jit_cache_entry *e)
{
    if (e->tmp) unlink(e->tmp);
    free(e->tmp);
    free(e->path);
    free(e->dir);
    memset(e, 0, sizeof *e);
}

uint64_t kd_jit_cache_max_bytes(void)
{
    /* as ccache's max_size: a number of bytes, or of K, M or G (1024s) */
    const char *s = getenv("KDSL_CACHE_MAX_SIZE");
    char *end = NULL;
    errno = 0;
    unsigned long long n = s && *s ? strtoull(s, &end, 10) : 0;
    int shift = !end ? -1 : !*end ? 0 : !strcmp(end, "K") ? 10 : !strcmp(end, "M") ? 20 : !strcmp(end, "G") ? 30 : -1;
    if (shift < 0 || n == 0 || errno || n > (UINT64_MAX >> shift)) return (uint64_t)1 << 30;
    return (uint64_t)n << shift;
}

typedef struct cached_file {
    char *path;
    off_t size;
    struct timespec mtime;
} cached_file;

static int by_age(const void *a, const void *b)
{
    const cached_file *x = a, *y = b;
    if (x->mtime.tv_sec != y->mtime.tv_sec) return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
    return (x->mtime.tv_nsec > y->mtime.tv_nsec) - (x->mtime.tv_nsec < y->mtime.tv_nsec);
}

/* A writer's temporary left behind: its process is gone, and it is an hour old. */
static bool stale_temporary(const char *name, const struct stat *st)
{
    long pid = strtol(name + 5, NULL, 10);
    bool dead = pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
    return dead && time(NULL) - st->st_mtime > 3600;
}

/* Oldest entries out while the directory holds more than the cap. */
static void evict(const char *dir)
{
    char *jdir = entry_path(dir, "");
    DIR *d = jdir ? opendir(jdir) : NULL;
    if (!d) {
        free(jdir);
        return;
    }
    cached_file *files = NULL;
    size_t n = 0, cap = 0;
    uint64_t total = 0;
    for (struct dirent *de; (de = readdir(d));) {
        size_t len = strlen(de->d_name);
        if (len < 4 || strcmp(de->d_name + len - 3, ".so")) continue;
        char *path = entry_path(dir, de->d_name);
        struct stat st;
        if (!path || stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(path);
            continue;
        }
        if (!strncmp(de->d_name, ".tmp-", 5)) {
            if (stale_temporary(de->d_name, &st)) unlink(path);
            free(path);
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            cached_file *grown = realloc(files, cap * sizeof *files);
            if (!grown) {
                free(path);
                break;
            }
            files = grown;
        }
        files[n++] = (cached_file){path, st.st_size, st.st_mtim};
        total += (uint64_t)st.st_size;
    }
    closedir(d);
    uint64_t max = kd_jit_cache_max_bytes();
    qsort(files, n, sizeof *files, by_age);
    for (size_t i = 0; i < n; i++) {
        if (total > max && i + 1 < n && unlink(files[i].path) == 0) total -= (uint64_t)files[i].size;
        free(files[i].path);
    }
    free(files);
    free(jdir);
}

void *kd_jit_cache_commit(kd_jit_cache_entry *e, const kd_jit_key *key, char *why, size_t why_len)
{
    void *h = NULL;
    int fd = open(e->tmp, O_RDWR | O_CLOEXEC);
    struct stat st;
    uint8_t *buf = NULL;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < 64 || !(buf = malloc((size_t)st.st_size)) ||
        !read_all(fd, buf, (size_t)st.st_size)) {
        snprintf(why, why_len, "cannot read back %s: %s", e->tmp, fd < 0 ? strerror(errno) : "short file");
        goto done;
    }
    uint8_t t[TRAILER_BYTES];
    memcpy(t, MAGIC, 8);
    memcpy(t + 8, key->sha, 32);
    sha_of(buf, (size_t)st.st_size, t + 40);
    put_u64(t + 72, (uint64_t)st.st_size);
    if (pwrite(fd, t, sizeof t, st.st_size) != (ssize_t)sizeof t || fsync(fd) != 0) {
        snprintf(why, why_len, "cannot write %s: %s", e->tmp, strerror(errno));
        goto done;
    }
    if (!(h = dlopen(e->tmp, RTLD_NOW | RTLD_LOCAL))) {   /* a name never loaded before */
        snprintf(why, why_len, "cannot load %s: %s", e->tmp, dlerror());
        goto done;
    }
    if (rename(e->tmp, e->path) != 0) {
        snprintf(why, why_len, "cannot rename %s: %s", e->tmp, strerror(errno));
        goto done;   /* the code is loaded: only the entry is lost */
    }
    free(e->tmp);
    e->tmp = NULL;
    evict(e->dir);
done:
    free(buf);
    if (fd >= 0) close(fd);
    kd_jit_cache_abort(e);
    return h;
}
