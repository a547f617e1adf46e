/* difftest.c — `tests/difftest`: random programs through the differential
 * oracle (difftest.h), and the regressions it has kept.
 *
 *   difftest [--count N] [--seed S] [--size N] [--c-every K] [--jit-every K] [--no-fd] [--no-threads]
 *            [--save DIR] [--seconds T] [-O N] [--verbose] [--print] [--print-only]
 *   difftest --replay FILE|DIR ...
 *
 * Program i of a campaign is generated from seed S + i, so `--seed S+i
 * --count 1` runs it again. On a mismatch the program is reduced (outputs
 * dropped, statements replaced by one of their operands, the batch and the
 * train block taken away, while the same check still fails) and written to
 * DIR (default tests/difftest/regressions under the source tree) as a .kdsl
 * whose first line holds its batch and data seed; the Check suite
 * (tests/test_difftest.c) replays every such file. Exit status: 0 when no
 * program failed, 1 otherwise, 2 for a wrong command line. */
#define _GNU_SOURCE
#include "difftest.h"
#include "gen.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef DT_SOURCE_ROOT
#define DT_SOURCE_ROOT "."
#endif

typedef struct campaign {
    dt_options o;
    const char *save;
    bool print, print_only;
    long tried, failed, skipped, variants;
} campaign;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static dt_status run_program(campaign *c, const dt_program *p, dt_verdict *v)
{
    char *text = dt_print(p);
    dt_status s = dt_run(text, p->batch, p->max_batch, p->data_seed, &c->o, v);
    free(text);
    return s;
}

/* The first error message of a rejected program, without its location. */
static const char *first_error(const char *why, int *len)
{
    const char *e = strstr(why, "error: ");
    e = e ? e : why;
    const char *nl = strchr(e, '\n');
    *len = nl ? (int)(nl - e) : (int)strlen(e);
    return e;
}

/* Whether p still fails the way the original did: the same check, and for
 * a program the front end rejects, the same message. */
static bool still_fails(campaign *c, const dt_program *p, const dt_verdict *was)
{
    dt_verdict v;
    if (run_program(c, p, &v) != DT_FAIL || strcmp(v.check, was->check)) return false;
    if (strcmp(was->check, "front end")) return true;
    int l1, l2;
    const char *e1 = first_error(was->why, &l1), *e2 = first_error(v.why, &l2);
    return l1 == l2 && !memcmp(e1, e2, (size_t)l1);
}

/* Delta reduction: each step keeps a change only while the same check fails. */
static void reduce(campaign *c, dt_program *p, const dt_verdict *check)
{
    bool progress = true;
    while (progress) {
        progress = false;
        dt_program t;
        for (int i = 0; p->nouts > 1 && i < p->nouts; i++) { /* fewer outputs */
            t = *p;
            for (int k = i; k + 1 < t.nouts; k++) t.outs[k] = t.outs[k + 1];
            t.nouts--;
            if (still_fails(c, &t, check)) *p = t, progress = true, i--;
        }
        bool live[DT_MAX_STMTS];
        dt_live(p, live);
        for (int i = p->nst - 1; i >= 0; i--) { /* a statement becomes a copy of an operand or an input */
            if (!live[i] || p->st[i].def < 0 || !strcmp(p->st[i].text, "$0")) continue;
            int cand[DT_MAX_OPS + DT_MAX_INPUTS], n = 0;
            const dt_shape *s = &p->val[p->st[i].def];
            for (int k = 0; k < p->st[i].nops; k++) cand[n++] = p->st[i].ops[k];
            for (int k = 0; k < p->ninputs; k++) cand[n++] = k;
            for (int k = 0; k < n; k++) {
                const dt_shape *o = &p->val[cand[k]];
                if (o->rank != s->rank || memcmp(o->d, s->d, sizeof o->d[0] * (size_t)s->rank)) continue;
                t = *p;
                dt_stmt *st = &t.st[i];
                snprintf(st->text, sizeof st->text, "$0");
                st->ops[0] = cand[k];
                st->nops = 1;
                st->decl = st->layer = -1;
                if (still_fails(c, &t, check)) {
                    *p = t, progress = true;
                    break;
                }
            }
        }
        if (p->train) {
            t = *p;
            t.train = false;
            if (still_fails(c, &t, check)) *p = t, progress = true;
        }
        if (p->batch > 1 || p->max_batch > 1) {
            t = *p;
            t.batch = t.max_batch = 1;
            if (still_fails(c, &t, check)) *p = t, progress = true;
        }
    }
}

static int save_case(campaign *c, const dt_program *p, uint64_t seed, const dt_verdict *v)
{
    mkdir(c->save, 0777);
    char path[4096];
    snprintf(path, sizeof path, "%s/found-%016" PRIx64 ".kdsl", c->save, seed);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "difftest: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    char *text = dt_print(p);
    /* the header line first (dt_parse_header), then what was found */
    char *nl = strchr(text, '\n');
    fprintf(f, "%.*s\n# found by: build/tests/difftest --seed %" PRIu64 " --count 1\n# check: %s\n", (int)(nl - text), text,
            seed, v->check);
    for (const char *w = v->why; *w;) {
        const char *e = strchr(w, '\n');
        int len = e ? (int)(e - w) : (int)strlen(w);
        fprintf(f, "# %.*s\n", len, w);
        w += len + (e != NULL);
    }
    fputs(nl + 1, f);
    free(text);
    fclose(f);
    printf("  saved %s\n", path);
    return 0;
}

static int campaign_run(campaign *c, uint64_t seed, long count, int size, int c_every, int jit_every, double seconds)
{
    double t0 = now();
    char dir[] = "/tmp/difftest-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("difftest: mkdtemp");
        return 1;
    }
    c->o.workdir = dir;
    bool want_c = c->o.c_backend;
    for (long i = 0; i < count && (seconds <= 0 || now() - t0 < seconds); i++) {
        uint64_t s = seed + (uint64_t)i;
        dt_program p;
        dt_generate(&p, s, size > 0 ? size : 4 + (int)(s % 23));
        c->o.c_backend = want_c && c_every > 0 && i % c_every == 0;
        c->o.no_jit = jit_every <= 0 || i % jit_every != 0;
        if (c->print) {
            char *text = dt_print(&p);
            printf("--- seed %" PRIu64 "\n%s", s, text);
            free(text);
            if (c->print_only) continue;
        }
        dt_verdict v;
        dt_status st = run_program(c, &p, &v);
        c->tried++;
        c->variants += v.variants;
        if (st == DT_SKIP) c->skipped++;
        if (c->tried % 1000 == 0) {
            printf("difftest: %ld programs, %ld variant runs, %ld skipped, %ld failed, %.0f s\n", c->tried, c->variants,
                   c->skipped, c->failed, now() - t0);
            fflush(stdout);
        }
        if (st != DT_FAIL) continue;
        c->failed++;
        printf("FAIL seed %" PRIu64 ": %s\n  %s\n", s, v.check, v.why);
        reduce(c, &p, &v);
        char *text = dt_print(&p);
        printf("reduced:\n%s", text);
        free(text);
        if (c->save) save_case(c, &p, s, &v);
        fflush(stdout);
    }
    c->o.c_backend = want_c;
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "difftest: could not remove %s\n", dir);
    printf("difftest: %ld programs from seed %" PRIu64 ", %ld variant runs, %ld skipped (reference not finite), %ld failed, "
           "%.1f s\n",
           c->tried, seed, c->variants, c->skipped, c->failed, now() - t0);
    return c->failed > 0;
}

static int replay_file(campaign *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "difftest: %s: %s\n", path, strerror(errno));
        return 1;
    }
    char *text = NULL;
    size_t cap = 0;
    ssize_t n = getdelim(&text, &cap, 0, f);
    fclose(f);
    int batch, max_batch;
    uint64_t seed;
    if (n < 0 || !dt_parse_header(text, &batch, &max_batch, &seed)) {
        fprintf(stderr, "difftest: %s: no '# difftest: batch=B max_batch=M data_seed=S' line\n", path);
        free(text);
        return 1;
    }
    dt_verdict v;
    dt_status st = dt_run(text, batch, max_batch, seed, &c->o, &v);
    free(text);
    c->tried++;
    c->variants += v.variants;
    if (st == DT_FAIL) {
        c->failed++;
        printf("FAIL %s: %s\n  %s\n", path, v.check, v.why);
        return 1;
    }
    printf("ok %s (%d variants%s)\n", path, v.variants, st == DT_SKIP ? ", reference not finite: skipped" : "");
    return 0;
}

static int replay(campaign *c, const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "difftest: %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (!S_ISDIR(sb.st_mode)) return replay_file(c, path);
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort), rc = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(names[i]->d_name);
        if (len > 5 && !strcmp(names[i]->d_name + len - 5, ".kdsl")) {
            char full[4096];
            snprintf(full, sizeof full, "%s/%s", path, names[i]->d_name);
            rc |= replay_file(c, full);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

static int usage(void)
{
    fprintf(stderr, "usage: difftest [--count N] [--seed S] [--size N] [--c-every K] [--jit-every K] [--no-fd] [--no-threads]\n"
                    "                [--save DIR] [--seconds T] [-O N] [--verbose] [--print] [--print-only]\n"
                    "       difftest --replay FILE|DIR ...\n");
    return 2;
}

int main(int argc, char **argv)
{
    campaign c = {.o = {.fd = true, .threads = true, .c_backend = true, .jit_opt_level = 1}, .save = DT_SOURCE_ROOT "/tests/difftest/regressions"};
    long count = 100;
    uint64_t seed = (uint64_t)time(NULL);
    int size = 0, c_every = 10, jit_every = 1, nreplay = 0;
    double seconds = 0;
    const char *replays[64];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--count") && v) count = strtol(v, &end, 10), i++;
        else if (!strcmp(a, "--seed") && v) seed = strtoull(v, &end, 10), i++;
        else if (!strcmp(a, "--size") && v) size = (int)strtol(v, &end, 10), i++;
        else if (!strcmp(a, "--c-every") && v) c_every = (int)strtol(v, &end, 10), i++;
        else if (!strcmp(a, "--seconds") && v) seconds = strtod(v, &end), i++;
        else if (!strcmp(a, "--save") && v) c.save = v, i++;
        else if (!strcmp(a, "--no-fd")) c.o.fd = false;
        else if (!strcmp(a, "--no-threads")) c.o.threads = false;
        else if (!strcmp(a, "--jit-every") && v) jit_every = (int)strtol(v, &end, 10), i++;
        else if (!strcmp(a, "--verbose")) c.o.verbose = true;
        else if (!strcmp(a, "-O") && v) c.o.jit_opt_level = (int)strtol(v, &end, 10), i++;
        else if (!strcmp(a, "--print")) c.print = true;
        else if (!strcmp(a, "--print-only")) c.print = c.print_only = true;
        else if (!strcmp(a, "--replay") && v) {
            while (i + 1 < argc && argv[i + 1][0] != '-' && nreplay < 64) replays[nreplay++] = argv[++i];
        } else return usage();
        if (end && *end) return usage();
    }
    if (nreplay > 0) {
        char dir[] = "/tmp/difftest-XXXXXX";
        if (!mkdtemp(dir)) return perror("difftest: mkdtemp"), 1;
        c.o.workdir = dir;
        int rc = 0;
        for (int i = 0; i < nreplay; i++) rc |= replay(&c, replays[i]);
        char cmd[64];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0) fprintf(stderr, "difftest: could not remove %s\n", dir);
        printf("difftest: %ld replayed, %ld failed\n", c.tried, c.failed);
        return rc != 0;
    }
    return campaign_run(&c, seed, count, size, c_every, jit_every, seconds);
}
