/* step_time.c — the JIT's training step alone (bench/run's breakdown): no data
 * set, no shuffle, no progress; random inputs and one-hot labels at the
 * compiled batch, a warm-up, then ROUNDS rounds of ~ROUND_S s at each
 * thread count given, the counts in turn within each round, with subnormals
 * flushed as kdslc train runs. Usage: step_time FILE.kdsl [THREADS[s]...]
 * As in kdslc train, one thread runs the program whose arena buffers share
 * bytes, more threads the one whose buffers have bytes of their own
 * (kd_codegen_options.disjoint_arena); a count written with an s after it
 * ("2s") runs the shared arena's program at that count, for comparison.
 * Prints "step_us threads=T median=U ... speedup=X steal=S" per thread count,
 * X the median over rounds of the first count's time over this one's, S the
 * vCPUs the hypervisor took on average during those rounds (the steal column
 * of /proc/stat: 0.40 means 0.4 of a vCPU's time went to other guests).
 * With STEP_TIME_ROUNDS set, one line per round on stderr: each count's
 * time and steal, and the lowest reading of the probe of cores.h taken
 * before each count and after the last (~2: the two vCPUs were two whole
 * cores; ~1.1: the host had them on one core's SMT siblings).
 * With STEP_TIME_PROFILE set, the pool's per-kernel profile
 * (kdh_pool_profile) during each count's steps: a line per round and count
 * on stderr (each kernel's us per step, the step's own time first), and at
 * the end each kernel's median over the rounds. */
#include "codegen.h"
#include "driver.h"
#include "host/fpmode.h"
#include "host/parallel_kernels.h"
#include "jit.h"

#include "cores.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { WARM = 5, ROUNDS = 15, MAX_COUNTS = 8 };
#define ROUND_S 0.1

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Ticks (USER_HZ) of every vCPU's time the hypervisor gave to others, from
 * /proc/stat's first line; -1 where there is no such file. */
static double steal_ticks(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    double v[8] = {0};
    int n = fscanf(f, "cpu %lf %lf %lf %lf %lf %lf %lf %lf", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    return n == 8 ? v[7] : -1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The profile of one round at one thread count, per step. */
typedef struct round_prof {
    int n;
    kdh_prof_entry e[KDH_PROF_MAX];
} round_prof;

static void print_entry(FILE *f, const kdh_prof_entry *e, double us)
{
    if (!strcmp(e->kind, "gemm")) fprintf(f, " gemm %ldx%ldx%ld %.1f", e->a, e->b, e->c, us);
    else if (!strcmp(e->kind, "range")) fprintf(f, " range %ld %.1f", e->a, us);
    else fprintf(f, " %s %ld,%ld,%ld %.1f", e->kind, e->a, e->b, e->c, us);
}

static bool same_kernel(const kdh_prof_entry *x, const kdh_prof_entry *y)
{
    return !strcmp(x->kind, y->kind) && x->a == y->a && x->b == y->b && x->c == y->c;
}

/* Each kernel of the first round's profile: its median us per step over the
 * rounds (a round without it counts 0). */
static void print_profile_medians(int threads, round_prof *rp, int rounds)
{
    double v[64];
    if (rounds > 64) rounds = 64;
    printf("profile threads=%d (median us per step over %d rounds):", threads, rounds);
    for (int i = 0; i < rp[0].n; i++) {
        for (int k = 0; k < rounds; k++) {
            v[k] = 0;
            for (int j = 0; j < rp[k].n; j++)
                if (same_kernel(&rp[k].e[j], &rp[0].e[i])) v[k] = rp[k].e[j].us;
        }
        qsort(v, (size_t)rounds, sizeof *v, cmp_double);
        print_entry(stdout, &rp[0].e[i], v[rounds / 2]);
    }
    printf("\n");
}

static float *floats(int64_t n)
{
    float *p = aligned_alloc(64, ((size_t)n * sizeof(float) + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "step_time: out of memory\n");
        exit(1);
    }
    memset(p, 0, (size_t)n * sizeof(float));
    return p;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: step_time FILE.kdsl [THREADS[s]...]\n");
        return 2;
    }
    /* [0]: buffers share bytes (one thread), [1]: disjoint (more) */
    kd_session s[2];
    memset(s, 0, sizeof s);
    lp_program *ps[2];
    kdh_model_fns fns[2];
    kd_jit *j[2];
    int64_t arena = 0, step_arena[2];
    for (int v = 0; v < 2; v++) {
        if (kd_front_end(&s[v], argv[1], NULL) != 0) return 1;
        kd_codegen_options co = {.disjoint_arena = v == 1};
        if (!(ps[v] = kd_back_end(&s[v], &co))) return 1;
        char why[1024] = "";
        j[v] = kd_jit_compile(ps[v], NULL, &fns[v], why, sizeof why);
        if (!j[v] || !fns[v].train_step) {
            fprintf(stderr, "step_time: %s\n", j[v] ? "the model has no training step" : why);
            return 1;
        }
        for (int k = 0; k < LP_F_COUNT; k++)
            if (ps[v]->funcs[k] && ps[v]->funcs[k]->arena_bytes > arena) arena = ps[v]->funcs[k]->arena_bytes;
        step_arena[v] = ps[v]->funcs[LP_F_TRAIN_STEP] ? ps[v]->funcs[LP_F_TRAIN_STEP]->arena_bytes : 0;
    }
    const lp_program *p = ps[0];
    kdh_model_fns f = fns[0];
    kdh_fpmode_flush_subnormals();
    int b = p->max_batch;
    float *params = floats(p->params_size), *opt = floats(p->opt_size + 1);
    float *x = floats(p->inputs[0].elems * b), *y = floats(p->labels[0].elems * b);
    float *out = floats(p->outputs[0].elems * b), *ar = floats(arena / 4 + 16);
    f.init(params, opt, 1);
    uint64_t r = 88172645463325252ULL;
    for (int64_t i = 0; i < p->inputs[0].elems * b; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        x[i] = (float)(r >> 40) / (float)(1 << 24);
    }
    int64_t le = p->labels[0].elems;
    for (int i = 0; i < b; i++) y[i * le + i % le] = 1;
    const float *ins[1] = {x};
    unsigned long long step = 1;
    int nt = argc > 2 ? argc - 2 : 1;
    if (nt > MAX_COUNTS) nt = MAX_COUNTS;
    int threads[MAX_COUNTS];
    unsigned long jobs[MAX_COUNTS];
    double us[MAX_COUNTS][ROUNDS], steal[MAX_COUNTS][ROUNDS], cores[ROUNDS];
    double hz = (double)sysconf(_SC_CLK_TCK);
    bool profile = getenv("STEP_TIME_PROFILE") != NULL;
    static round_prof prof[MAX_COUNTS][ROUNDS];
    bool shared[MAX_COUNTS];
    for (int a = 0; a < nt; a++) {
        threads[a] = argc > 2 ? atoi(argv[a + 2]) : 1;
        shared[a] = argc > 2 && strchr(argv[a + 2], 's');
    }
    double t0 = now();
    for (int w = 0; w < WARM * 4; w++) f.train_step(params, opt, ins, y, b, step++, 1e-4f, ar, out);
    /* rounds of about ROUND_S seconds at one thread */
    int steps = (int)(ROUND_S / ((now() - t0) / (WARM * 4)));
    if (steps < 10) steps = 10;
    if (steps > 200) steps = 200;
    /* the thread counts in turn within each round: the machine's state moves */
    for (int k = 0; k < ROUNDS; k++) {
        cores[k] = 2;
        for (int a = 0; a < nt; a++) {
            kdh_pool_set_threads(1); /* no spinning worker beside the probe */
            double before = cores_probe(0.002);
            if (before < cores[k]) cores[k] = before;
            threads[a] = kdh_pool_set_threads(threads[a]);
            f = fns[threads[a] > 1 && !shared[a]];
            for (int w = 0; w < WARM; w++) f.train_step(params, opt, ins, y, b, step++, 1e-4f, ar, out);
            round_prof *rp = &prof[a][k];
            if (profile) kdh_pool_profile_take(rp->e, KDH_PROF_MAX), kdh_pool_profile(1);
            double s0 = steal_ticks();
            t0 = now();
            for (int w = 0; w < steps; w++) f.train_step(params, opt, ins, y, b, step++, 1e-4f, ar, out);
            double dt = now() - t0, s1 = steal_ticks();
            if (profile) {
                kdh_pool_profile(0);
                rp->n = kdh_pool_profile_take(rp->e, KDH_PROF_MAX);
                for (int i = 0; i < rp->n; i++) rp->e[i].us /= steps;
            }
            us[a][k] = dt / steps * 1e6;
            steal[a][k] = s0 >= 0 && s1 >= 0 ? (s1 - s0) / hz / dt : -1;
            jobs[a] = kdh_pool_jobs();
            f.train_step(params, opt, ins, y, b, step++, 1e-4f, ar, out);
            jobs[a] = kdh_pool_jobs() - jobs[a];
        }
        f = fns[0];
        kdh_pool_set_threads(1);
        double after = cores_probe(0.002);
        if (after < cores[k]) cores[k] = after;
        if (getenv("STEP_TIME_ROUNDS")) { /* one line per round on stderr */
            fprintf(stderr, "round %d cores %.2f", k, cores[k]);
            for (int a = 0; a < nt; a++) fprintf(stderr, "  threads %d: %.1f us steal %.2f", threads[a], us[a][k], steal[a][k]);
            fprintf(stderr, "\n");
        }
        for (int a = 0; profile && a < nt; a++) {
            fprintf(stderr, "round %d threads %d step %.1f:", k, threads[a], us[a][k]);
            for (int i = 0; i < prof[a][k].n; i++) print_entry(stderr, &prof[a][k].e[i], prof[a][k].e[i].us);
            fprintf(stderr, "\n");
        }
    }
    for (int a = 0; a < nt; a++) {
        double pair[ROUNDS], sorted[ROUNDS], taken = 0;
        for (int k = 0; k < ROUNDS; k++) {
            pair[k] = us[0][k] / us[a][k], sorted[k] = us[a][k];
            taken += steal[a][k] / ROUNDS;
        }
        qsort(sorted, ROUNDS, sizeof *sorted, cmp_double);
        qsort(pair, ROUNDS, sizeof *pair, cmp_double);
        printf("step_us threads=%d batch=%d median=%.1f min=%.1f samples/s=%.0f pool_jobs/step=%lu speedup=%.3f "
               "steal=%.2f arena=%s %lld\n",
               threads[a], b, sorted[ROUNDS / 2], sorted[0], b / sorted[ROUNDS / 2] * 1e6, jobs[a], pair[ROUNDS / 2],
               steal[a][0] < 0 ? 0.0 : taken, threads[a] > 1 && !shared[a] ? "disjoint" : "shared",
               (long long)step_arena[threads[a] > 1 && !shared[a]]);
    }
    for (int a = 0; profile && a < nt; a++) print_profile_medians(threads[a], prof[a], ROUNDS);
    for (int v = 0; v < 2; v++) {
        kd_jit_free(j[v]);
        kd_session_free(&s[v]);
    }
    free(params), free(opt), free(x), free(y), free(out), free(ar);
    return 0;
}
