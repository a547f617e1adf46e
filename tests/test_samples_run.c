/* test_samples_run.c — the generated C of every sample, built and run: kdslc
 * compile samples/NAME.kdsl, then tests/samples_run/run_model.c drives it
 * (init, predict, train steps, grad and apply), linked with the build's
 * runtime kernels. In tests/run's sanitizer pass, KDSL_SANITIZE_CFLAGS holds
 * -fsanitize=address,undefined...: the generated code is built with it and
 * the build's kernels already are, so an out-of-bounds arena offset or an
 * overflow in a kernel fails here. */
#include "testutil.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

enum { MAX_SAMPLES = 128 };
static char *samples[MAX_SAMPLES];
static int nsamples;

static const char *sanitize_flags(void)
{
    const char *f = getenv("KDSL_SANITIZE_CFLAGS");
    return f ? f : "";
}

static char *strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *strf(const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n < 0 ? NULL : malloc((size_t)n + 1);
    if (!s) abort();   /* also called from main, outside any test */
    vsnprintf(s, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return s;
}

/* The runtime kernels: meson's libkdslrt.a, which the sanitizer pass builds
 * with the sanitizers too. */
static const char *runtime_dir(void)
{
    return tu_build_root();
}

static int build_runtime(void)
{
    char *lib = strf("%s/libkdslrt.a", runtime_dir());
    int rc = access(lib, R_OK);
    if (rc) fprintf(stderr, "%s: not built\n", lib);
    free(lib);
    return rc;
}

START_TEST(sample_runs)
{
    const char *name = samples[_i];
    const char *dir = tu_tmpdir("samples-run");
    char *out = NULL;
    char *cmd = strf("cd %s && %s compile %s/%s.kdsl -o %s.c", dir, tu_kdslc(), tu_src("samples"), name, name);
    int rc = tu_run(cmd, &out);
    ck_assert_msg(rc == 0, "kdslc compile %s failed (%d):\n%s", name, rc, out);
    free(cmd);
    free(out);

    /* The C name of the model compiled (the file's last): from `void NAME_init(`. */
    char hpath[4300];
    snprintf(hpath, sizeof hpath, "%s/%s.h", dir, name);
    char *h = tu_read(hpath, NULL);
    ck_assert_ptr_nonnull(h);
    const char *init = strstr(h, "_init(");
    ck_assert_ptr_nonnull(init);
    const char *start = init;
    while (start > h && start[-1] != ' ' && start[-1] != '\n') start--;
    char model[256], upper[256];
    snprintf(model, sizeof model, "%.*s", (int)(init - start), start);
    for (size_t i = 0; i <= strlen(model); i++)
        upper[i] = (char)(model[i] >= 'a' && model[i] <= 'z' ? model[i] - 32 : model[i]);
    free(h);

    /* -g for the sanitizers' stack traces, without GCC's variable tracking:
     * over the long functions of a big model (MobileNet's 6,500-line
     * train_step) it took 70% of a 40 s compile */
    cmd = strf("cd %s && cc -std=c99 -Wall -Wextra -Werror -O1 -g -fno-var-tracking %s -c %s.c -I%s -o %s.o && "
               "cc -std=c99 -D_POSIX_C_SOURCE=200809L -O1 -g %s -DMODEL=%s -DMODEL_UPPER=%s '-DMODEL_H=\"%s.h\"' "
               "-I. -I%s %s %s.o %s/libkdslrt.a -lm -o run_%s",
               dir, sanitize_flags(), name, tu_src("runtime"), name, sanitize_flags(), model, upper, name,
               tu_src("runtime"), tu_src("tests/samples_run/run_model.c"), name, runtime_dir(), name);
    rc = tu_run(cmd, &out);
    ck_assert_msg(rc == 0, "building %s failed (%d):\n%s", name, rc, out);
    free(cmd);
    free(out);

    cmd = strf("cd %s && ./run_%s", dir, name);
    rc = tu_run(cmd, &out);
    ck_assert_msg(rc == 0 && strstr(out, "ok\n"), "running %s failed (%d):\n%.6000s", name, rc, out);
    ck_assert_msg(!strstr(out, "runtime error") && !strstr(out, "Sanitizer"), "%s:\n%.6000s", name, out);
    free(cmd);
    free(out);
}
END_TEST

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void)
{
    DIR *d = opendir(tu_src("samples"));
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) && nsamples < MAX_SAMPLES) {
            size_t l = strlen(e->d_name);
            if (l > 5 && strcmp(e->d_name + l - 5, ".kdsl") == 0)
                samples[nsamples++] = strndup(e->d_name, l - 5);
        }
        closedir(d);
    }
    qsort(samples, (size_t)nsamples, sizeof *samples, cmp);
    if (build_runtime() != 0) return EXIT_FAILURE;
    Suite *s = suite_create("samples_run");
    TCase *tc = tcase_create("samples");
    tcase_set_timeout(tc, 900);
    tcase_add_loop_test(tc, sample_runs, 0, nsamples);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
