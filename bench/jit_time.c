/* jit_time.c — the JIT's compile time of a model (bench/run): front end,
 * kd_back_end (all functions the train block asks for) and
 * kd_jit_compile, each timed. Usage: jit_time FILE.kdsl [BATCH [CACHE_DIR [FUNCS [JOBS]]]]
 * With CACHE_DIR (not "-"), the code is kept there (kd_jit_options.cache_dir):
 * a first run is cold (cache=stored), the next warm (cache=hit). FUNCS
 * "train": only what `kdslc train` compiles (init, predict, train_step);
 * "all" (default): every function. JOBS: kd_jit_options.jobs (0: one
 * process per CPU).
 * Prints "jit_seconds total=T front=F build=B jit=J cache=C cpu_self=S
 * cpu_children=K": S the CPU seconds of this process (GCC compiles worker
 * 0's share in it), K those of its children (the other workers, the
 * assembler and the linker): on a loaded machine, where the wall times
 * say little, max(S, K) against S + K is what several workers gain. */
#include "codegen.h"
#include "driver.h"
#include "jit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double cpu(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: jit_time FILE.kdsl [BATCH [CACHE_DIR [FUNCS [JOBS]]]]\n");
        return 2;
    }
    double t0 = now();
    kd_session s = {0};
    if (kd_front_end(&s, argv[1], NULL) != 0) return 1;
    double t1 = now();
    kd_codegen_options co = {.batch = argc > 2 ? atoi(argv[2]) : 0};
    lp_program *p = kd_back_end(&s, &co);
    if (!p) return 1;
    double t2 = now();
    kd_jit_options jo = {.cache_dir = argc > 3 && strcmp(argv[3], "-") ? argv[3] : NULL, .jobs = argc > 5 ? atoi(argv[5]) : 0};
    if (argc > 4 && !strcmp(argv[4], "train")) jo.functions = 1u << LP_F_INIT | 1u << LP_F_PREDICT | 1u << LP_F_TRAIN_STEP;
    kdh_model_fns fns;
    char why[1024] = "";
    kd_jit *j = kd_jit_compile(p, &jo, &fns, why, sizeof why);
    if (!j) {
        fprintf(stderr, "jit_time: %s\n", why);
        return 1;
    }
    double t3 = now();
    static const char *const use[] = {"off", "hit", "stored", "failed"};
    const char *warning;
    kd_jit_cache_use u = kd_jit_cache_result(j, &warning);
    if (warning) fprintf(stderr, "jit_time: warning: %s\n", warning);
    printf("jit_seconds total=%.3f front=%.3f build=%.3f jit=%.3f cache=%s cpu_self=%.3f cpu_children=%.3f\n", t3 - t0,
           t1 - t0, t2 - t1, t3 - t2, use[u], cpu(RUSAGE_SELF), cpu(RUSAGE_CHILDREN));
    kd_jit_free(j);
    kd_session_free(&s);
    return 0;
}
