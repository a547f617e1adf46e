/* testutil.c — helpers shared by the Check suites. */
#include "testutil.h"

#include "host/tensor_file.h"

#include <stdarg.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

const char *tu_source_root(void) { return env_or("KDSL_SOURCE_ROOT", "."); }
const char *tu_build_root(void) { return env_or("KDSL_BUILD_ROOT", "build"); }
/* With KDSL_TEST_BACKEND=cc, the test build of kdslc whose train, evaluate
 * and predict run on the C backend (kdslc_cc.c) instead of the JIT. */
const char *tu_kdslc(void)
{
    const char *backend = getenv("KDSL_TEST_BACKEND");
    if (backend && !strcmp(backend, "cc")) return env_or("KDSLC_CC", "build/tests/kdslc_cc");
    return env_or("KDSLC", "build/kdslc");
}

const char *tu_src(const char *rel)
{
    static char bufs[8][4096];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", tu_source_root(), rel);
    return b;
}

char *tu_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
        }
    }
    fclose(f);
    if (!buf) return NULL;
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

int tu_write(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t put = fwrite(data, 1, len, f);
    return (fclose(f) == 0 && put == len) ? 0 : -1;
}

const char *tu_tmpdir(const char *tag)
{
    static char bufs[4][4096];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s/tmp", tu_build_root());
    mkdir(b, 0777);
    snprintf(b, sizeof bufs[0], "%s/tmp/%s-%d", tu_build_root(), tag, (int)getpid());
    mkdir(b, 0777);
    return b;
}

int tu_run(const char *cmd, char **output)
{
    char *full = malloc(strlen(cmd) + 16);
    sprintf(full, "(%s) 2>&1", cmd);
    FILE *p = popen(full, "r");
    free(full);
    if (!p) return -1;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, p)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
    }
    buf[n] = 0;
    int st = pclose(p);
    if (output) *output = buf; else free(buf);
    if (st == -1) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void tu_sh(const char *cmd)
{
    char *out = NULL;
    int rc = tu_run(cmd, &out);
    if (rc != 0) {
        const char *o = out ? out : "";
        size_t len = strlen(o);
        fprintf(stderr, "command failed (%d): %s\n%s\n", rc, cmd, o);
        ck_abort_msg("command failed (%d): %.300s ... output ends: %.1200s", rc, cmd, len > 1200 ? o + len - 1200 : o);
    }
    free(out);
}

int tu_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

char *tu_path(const char *dir, const char *file)
{
    static char bufs[16][4096];
    static int next;
    char *b = bufs[next++ % 16], tmp[sizeof bufs[0]];
    snprintf(tmp, sizeof tmp, "%s/%s", dir, file);   /* dir may be an earlier result */
    memcpy(b, tmp, sizeof tmp);
    return b;
}

int tu_kdslc_run(char **out, const char *fmt, ...)
{
    char args[12288], cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s", tu_kdslc(), args);
    char *o = NULL;
    int rc = tu_run(cmd, &o);
    if (out) *out = o;
    else free(o);
    return rc;
}

struct kdh_tensor tu_read_npy_f32(const char *path)
{
    kdh_tensor t;
    kdh_error err;
    ck_assert_msg(kdh_npy_read(path, NULL, &t, &err) == 0, "%s: %s", path, err.msg);
    ck_assert_int_eq(t.dtype, KDH_F32);
    return t;
}
