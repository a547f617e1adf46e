/* cc_backend.c — the test-only C-compiler backend of `kdslc train /
 * evaluate / predict` (cc_backend.h): the program emitted as C (kd_emit_c),
 * built with `cc` ($KDSL_CC) into a shared object against
 * $KDSL_BUILD_ROOT/libkdslrt.a, and loaded with dlopen. The test build of
 * kdslc (kdslc_cc.c) installs it with kd_run_set_backend, so that the suites
 * can check the driver against the C backend; kdslc itself has none of it. */
#include "cc_backend.h"

#include "host/train.h" /* kdh_now */

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *fmt, const char *arg)
{
    fprintf(stderr, "kdslc: error: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    return 1;
}

static bool sym(void *so, const char *model, const char *fn, void **out, bool required)
{
    char name[512];
    snprintf(name, sizeof name, "%s_%s", model, fn);
    *out = dlsym(so, name);
    if (!*out && required) fprintf(stderr, "kdslc: error: cc backend: no symbol %s\n", name);
    return *out || !required;
}

static int cc_compile(const lp_program *p, const kd_codegen_options *co, kdh_model_fns *fns, void **handle, FILE *info)
{
    void *so = NULL;
    *handle = NULL;
    const char *src = getenv("KDSL_SOURCE_ROOT"), *build = getenv("KDSL_BUILD_ROOT");
    const char *cc = getenv("KDSL_CC");
    if (!src || !build) return fail("%s", "the cc backend needs KDSL_SOURCE_ROOT and KDSL_BUILD_ROOT");
    char dir[] = "/tmp/kdsl-cc-XXXXXX";
    if (!mkdtemp(dir)) return fail("cannot make a temporary directory: %s", strerror(errno));
    char cpath[4200], hpath[4200], sopath[4200], cmd[16384];
    snprintf(cpath, sizeof cpath, "%s/model.c", dir);
    snprintf(hpath, sizeof hpath, "%s/model.h", dir);
    snprintf(sopath, sizeof sopath, "%s/model.so", dir);
    double t0 = kdh_now();
    FILE *c = fopen(cpath, "w"), *h = fopen(hpath, "w");
    kd_codegen_options o = *co;
    o.header_name = "model.h";
    kd_diags d = {0};
    d.out = stderr;
    int rc = c && h ? kd_emit_c(p, &o, c, h, &d) : 1;
    if (c) fclose(c);
    if (h) fclose(h);
    if (rc == 0) {
        snprintf(cmd, sizeof cmd, "%s -O2 -std=c99 -fPIC -shared -I'%s/runtime' '%s' '%s/libkdslrt.a' -lm -o '%s'",
                 cc && *cc ? cc : "cc", src, cpath, build, sopath);
        rc = system(cmd) == 0 ? 0 : fail("cc backend: '%s' failed", cmd);
    }
    if (rc == 0) {
        so = *handle = dlopen(sopath, RTLD_NOW | RTLD_LOCAL);
        if (!so) rc = fail("cc backend: %s", dlerror());
    }
    unlink(cpath);
    unlink(hpath);
    unlink(sopath);
    rmdir(dir);
    if (rc != 0) return rc;
    void *f[5];
    bool train = p->funcs[LP_F_TRAIN_STEP] != NULL;
    if (!sym(so, p->name, "init", &f[0], true) || !sym(so, p->name, "predict", &f[1], true) ||
        !sym(so, p->name, "grad", &f[2], train) || !sym(so, p->name, "apply_gradients", &f[3], train) ||
        !sym(so, p->name, "train_step", &f[4], train))
        return 1;
    /* dlsym's void * to function pointers: POSIX guarantees it works */
    memcpy(&fns->init, &f[0], sizeof f[0]);
    memcpy(&fns->predict, &f[1], sizeof f[1]);
    memcpy(&fns->grad, &f[2], sizeof f[2]);
    memcpy(&fns->apply_gradients, &f[3], sizeof f[3]);
    memcpy(&fns->train_step, &f[4], sizeof f[4]);
    fprintf(info, "cc (test backend): compiled %s in %.2f s\n", p->name, kdh_now() - t0);
    fflush(info);
    return 0;
}

static void cc_release(void *handle)
{
    if (handle) dlclose(handle);
}

const kd_run_backend kd_test_cc_backend = {cc_compile, cc_release};
