/* test_mpi.c — data-parallel training under `mpirun -np 2 kdslc train`
 * (docs/distributed.md, runtime/host/dist.c, train_dist.c).
 *
 * Small models (tests/fixtures/dp_mlp.kdsl, dp_cnn.kdsl) on a few hundred
 * synthetic samples, each run a second or two (most of it the JIT and
 * mpirun's start):
 *   - deterministic mode: 2 ranks and 1 process give the same bytes;
 *   - the default mode: 2 ranks agree with the one-process train_step within
 *     1e-5 of each tensor's largest weight, with the sums overlapping the
 *     backward pass and without (the same bytes on 2 ranks);
 *   - synchronised BatchNormalization: 2 ranks agree with one process, where
 *     per-rank statistics do not; alone it is plain BatchNormalization;
 *   - a rank killed mid-epoch: the run ends within 30 s, non-zero, naming
 *     the rank; --resume from its checkpoint on 2 ranks and on 1 ends where
 *     an uninterrupted run ends, bit for bit.
 * The runs under mpirun are skipped without MPI (a build without it, or no
 * mpirun), and in tests/run's sanitizer pass: Open MPI's own allocations
 * fail LeakSanitizer in every rank, and what the sanitizers would see of
 * kdsl there (the shard tree, the step) runs in one process too, in
 * one_shard_is_train_step and the 1-process runs, which every build runs. */
#include "testutil.h"
#include "host/tensor_file.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Why the suite cannot run here, or NULL. */
static const char *skip_reason(void)
{
#ifndef KDSL_MPI
    return "kdsl was built without MPI (meson -Dmpi=enabled needs libopenmpi-dev)";
#else
    if (getenv("KDSL_SANITIZE_CFLAGS")) return "the sanitizer pass (Open MPI's allocations fail LeakSanitizer)";
    if (system("command -v mpirun >/dev/null 2>&1") != 0) return "no mpirun on the PATH (Debian: openmpi-bin)";
    if (getenv("KDSL_TEST_BACKEND")) return "the C backend's test build (the JIT is what ranks run)";
    return NULL;
#endif
}

#define SKIP_UNLESS_MPI()                                                          \
    do {                                                                           \
        const char *why_ = skip_reason();                                          \
        if (why_) {                                                                \
            fprintf(stderr, "test_mpi: skipped: %s\n", why_);                      \
            return;                                                                \
        }                                                                          \
    } while (0)

/* "mpirun ... -np N kdslc": as root Open MPI wants --allow-run-as-root, and
 * 2 ranks on a 1-core machine --oversubscribe. */
static const char *mpirun(int np)
{
    static char buf[2][4096];
    static int at;
    char *b = buf[at++ % 2];
    snprintf(b, sizeof buf[0], "mpirun %s--oversubscribe -np %d %s", geteuid() == 0 ? "--allow-run-as-root " : "", np,
             tu_kdslc());
    return b;
}

static void write_npy(const char *path, kdh_dtype dt, int rank, const int64_t *shape, const void *v)
{
    kdh_tensor t;
    kdh_error err;
    ck_assert_int_eq(kdh_tensor_alloc(&t, NULL, dt, rank, shape, &err), 0);
    memcpy(t.data, v, t.nbytes);
    ck_assert_msg(kdh_npy_write(path, &t, &err) == 0, "%s", err.msg);
    kdh_tensor_free(&t);
}

static uint64_t rng_state;
static double uniform(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

/* n samples of `elems` values in [-1, 1]: class 0, 1 or 2 (or 0 and 1) from
 * the signs of two halves' sums. 300 samples in batches of 32: a partial
 * last batch of 12, cut in 8 shards of 1 or 2 samples. "data" gets the
 * --data spec. */
static void make_data(const char *dir, int n, int rank, const int64_t *sample, int classes, char *data, size_t size)
{
    int64_t elems = 1, shape[4] = {n};
    for (int i = 0; i < rank; i++) elems *= shape[i + 1] = sample[i];
    float *x = malloc((size_t)(n * elems) * sizeof *x);
    int64_t *y = malloc((size_t)n * sizeof *y);
    rng_state = 42;
    for (int i = 0; i < n; i++) {
        double a = 0, b = 0;
        for (int64_t j = 0; j < elems; j++) {
            x[i * elems + j] = (float)(uniform() * 2 - 1);
            if (j < elems / 2) a += x[i * elems + j];
            else b += x[i * elems + j];
        }
        y[i] = classes == 3 ? (a > 0) + (b > 0) : a > b;
    }
    const char *xp = tu_path(dir, "x.npy"), *yp = tu_path(dir, "y.npy");
    int64_t ny = n;
    write_npy(xp, KDH_F32, rank + 1, shape, x);
    write_npy(yp, KDH_I64, 1, &ny, y);
    snprintf(data, size, "%s,%s", xp, yp);
    free(x);
    free(y);
}

static void mlp_data(const char *dir, char *data, size_t size)
{
    int64_t s[1] = {8};
    make_data(dir, 300, 1, s, 3, data, size);
}

static void cnn_data(const char *dir, char *data, size_t size)
{
    int64_t s[3] = {8, 8, 1};
    make_data(dir, 300, 3, s, 2, data, size);
}

/* Runs a shell command that must succeed; its output (malloc'd). */
static char *run_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *run_ok(const char *fmt, ...)
{
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char *out;
    int rc = tu_run(cmd, &out);
    ck_assert_msg(rc == 0, "exit %d: %s\n%s", rc, cmd, out);
    return out;
}

static bool same_file(const char *a, const char *b)
{
    size_t la, lb;
    char *da = tu_read(a, &la), *db = tu_read(b, &lb);
    bool same = da && db && la == lb && memcmp(da, db, la) == 0;
    free(da);
    free(db);
    return same;
}

/* The largest difference of two weights files' tensors, each relative to
 * the tensor's largest weight in b; both must hold the same tensors. */
static double weights_rel_diff(const char *a, const char *b)
{
    kdh_tensor_list la, lb;
    kdh_error err;
    ck_assert_msg(kdh_safetensors_read(a, NULL, &la, &err) == 0, "%s", err.msg);
    ck_assert_msg(kdh_safetensors_read(b, NULL, &lb, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(la.count, lb.count);
    double worst = 0;
    for (size_t i = 0; i < lb.count; i++) {
        const kdh_tensor *tb = &lb.items[i], *ta = kdh_list_find(&la, tb->name);
        ck_assert_msg(ta && ta->nbytes == tb->nbytes, "%s: %s is missing or of another size", a, tb->name);
        const float *fa = ta->data, *fb = tb->data;
        size_t n = tb->nbytes / sizeof(float);
        double big = 0, diff = 0;
        for (size_t j = 0; j < n; j++) {
            big = fmax(big, fabs(fb[j]));
            diff = fmax(diff, fabs((double)fa[j] - fb[j]));
        }
        ck_assert_msg(isfinite(diff), "%s: %s is not finite", a, tb->name);
        worst = fmax(worst, big > 0 ? diff / big : diff);
    }
    kdh_list_free(&la);
    kdh_list_free(&lb);
    return worst;
}

/* ---- the two modes against one process ------------------------------------------------------ */

/* Deterministic mode: the CNN on 2 ranks of 1 thread and on 1 process of 2
 * threads: the same bytes, and not those of the default mode's train_step
 * (so the comparison can fail). The same epoch's loss in both logs. */
START_TEST(deterministic_cnn_is_bit_identical)
{
    SKIP_UNLESS_MPI();
    const char *dir = tu_tmpdir("mpi_det_cnn");
    char data[8192];
    cnn_data(dir, data, sizeof data);
    const char *model = tu_src("tests/fixtures/dp_cnn.kdsl");
    const char *one = tu_path(dir, "one.safetensors"), *two = tu_path(dir, "two.safetensors");
    char *o1 = run_ok("%s train %s --data %s --deterministic --threads 2 --save %s --history %s 2>&1", tu_kdslc(),
                      model, data, one, tu_path(dir, "h1.csv"));
    char *o2 = run_ok("%s train %s --data %s --deterministic --threads 1 --save %s --history %s 2>&1", mpirun(2), model,
                      data, two, tu_path(dir, "h2.csv"));
    ck_assert_msg(same_file(one, two), "2 ranks' weights differ from 1 process's in deterministic mode");
    char *h1 = tu_read(tu_path(dir, "h1.csv"), NULL), *h2 = tu_read(tu_path(dir, "h2.csv"), NULL);
    ck_assert_ptr_nonnull(h1);
    ck_assert_ptr_nonnull(h2);
    ck_assert_str_eq(h1, h2);   /* loss and accuracy to every digit */
    /* rank 0 alone prints: one epoch line, one "Saved" */
    const char *saved = strstr(o2, "Saved weights");
    ck_assert_ptr_nonnull(saved);
    ck_assert_ptr_null(strstr(saved + 1, "Saved weights"));
    free(o1);
    free(o2);
    free(h1);
    free(h2);
    const char *plain = tu_path(dir, "plain.safetensors");
    free(run_ok("%s train %s --data %s --threads 1 --save %s 2>&1", tu_kdslc(), model, data, plain));
    ck_assert_msg(!same_file(one, plain), "deterministic mode gave train_step's bytes: the test cannot tell them apart");
    ck_assert_double_lt(weights_rel_diff(one, plain), 1e-4);
}
END_TEST

/* The default mode: each rank's shard through grad, the weighted sum by
 * MPI_Allreduce (in buckets of 1 KiB for the MLP: 14 of them), every rank's
 * apply_gradients; against the one-process train_step after one epoch. */
START_TEST(default_mode_matches_one_process)
{
    SKIP_UNLESS_MPI();
    const char *dir = tu_tmpdir("mpi_default");
    char mdata[8192], cdata[8192];
    mlp_data(dir, mdata, sizeof mdata);
    const char *cdir = tu_tmpdir("mpi_default_cnn");
    cnn_data(cdir, cdata, sizeof cdata);
    struct {
        const char *model, *name, *data, *dir, *extra;
    } runs[2] = {
        {"tests/fixtures/dp_mlp.kdsl", "dp_plain", mdata, dir, "--bucket-kb 1"},
        {"tests/fixtures/dp_cnn.kdsl", "dp_cnn", cdata, cdir, ""},
    };
    for (int i = 0; i < 2; i++) {
        const char *one = tu_path(runs[i].dir, "one.safetensors"), *two = tu_path(runs[i].dir, "two.safetensors");
        free(run_ok("%s train %s --model %s --data %s --threads 1 --save %s 2>&1", tu_kdslc(), tu_src(runs[i].model),
                    runs[i].name, runs[i].data, one));
        free(run_ok("%s train %s --model %s --data %s --threads 1 %s --save %s 2>&1", mpirun(2), tu_src(runs[i].model),
                    runs[i].name, runs[i].data, runs[i].extra, two));
        double d = weights_rel_diff(two, one);
        ck_assert_msg(d <= 1e-5, "%s: 2 ranks differ from 1 process by %g of a tensor's largest weight", runs[i].name, d);
    }
}
END_TEST

/* `LAUNCHER train` of model `name` in tests/fixtures/dp_mlp.kdsl on the
 * synthetic MLP data of `dir`, one thread a rank, saving `save` in dir; its
 * output (malloc'd). */
static char *train_mlp(const char *launcher, const char *dir, const char *name, const char *extra, const char *save)
{
    char data[8192];
    mlp_data(dir, data, sizeof data);
    return run_ok("%s train %s --model %s --data %s --threads 1 %s --save %s 2>&1", launcher,
                  tu_src("tests/fixtures/dp_mlp.kdsl"), name, data, extra, tu_path(dir, save));
}

/* "k of n gradient buckets started inside grad" in out: k and n. */
static void buckets_of(const char *out, unsigned long *inside, unsigned long *all)
{
    const char *at = strstr(out, "gradient buckets started inside grad");
    ck_assert_msg(at != NULL, "no bucket count in:\n%s", out);
    while (at > out && at[-1] != ';') at--;
    ck_assert_int_eq(sscanf(at, " %lu of %lu", inside, all), 2);
}

/* Overlap: dp_wide's 18,947 gradients in buckets of 16 KiB (5 a step, 10
 * steps) each summed as soon as grad has finished it, against --no-overlap
 * (one MPI_Allreduce per bucket after grad): every bucket started inside
 * grad, then none; on 2 ranks each element is the same sum of the same two
 * floats, so the same bytes; and both within 1e-5 of one process. */
START_TEST(overlap_starts_buckets_inside_grad)
{
    SKIP_UNLESS_MPI();
    const char *dir = tu_tmpdir("mpi_overlap");
    free(train_mlp(tu_kdslc(), dir, "dp_wide", "", "one.st"));
    char *o = train_mlp(mpirun(2), dir, "dp_wide", "--bucket-kb 16", "over.st");
    char *f = train_mlp(mpirun(2), dir, "dp_wide", "--bucket-kb 16 --no-overlap", "flat.st");
    unsigned long inside, all;
    buckets_of(o, &inside, &all);
    ck_assert_uint_eq(all, 50);
    ck_assert_uint_eq(inside, 50);
    buckets_of(f, &inside, &all);
    ck_assert_uint_eq(all, 50);
    ck_assert_uint_eq(inside, 0);
    free(o);
    free(f);
    const char *over = tu_path(dir, "over.st");
    ck_assert_msg(same_file(over, tu_path(dir, "flat.st")), "overlap changed the weights of 2 ranks");
    double d = weights_rel_diff(over, tu_path(dir, "one.st"));
    ck_assert_msg(d <= 1e-5, "2 ranks with overlap differ from 1 process by %g of a tensor's largest weight", d);
}
END_TEST

/* Synchronised BatchNormalization (dp_syncbn): on 2 ranks its statistics are
 * the global batch's, forward and backward, so 2 ranks end within 1e-5 of
 * one process; the same model with per-rank statistics (dp_bn) ends far
 * from it, so the comparison can fail. */
START_TEST(synchronized_bn_matches_one_process)
{
    SKIP_UNLESS_MPI();
    const char *dir = tu_tmpdir("mpi_syncbn");
    static const char *const names[2] = {"dp_syncbn", "dp_bn"};
    double d[2];
    for (int i = 0; i < 2; i++) {
        free(train_mlp(tu_kdslc(), dir, names[i], "", "one.st"));
        free(train_mlp(mpirun(2), dir, names[i], "", "two.st"));
        d[i] = weights_rel_diff(tu_path(dir, "two.st"), tu_path(dir, "one.st"));
    }
    ck_assert_msg(d[0] <= 1e-5, "synchronised: 2 ranks differ from 1 process by %g", d[0]);
    ck_assert_msg(d[1] > 1e-2, "per-rank statistics: 2 ranks within %g of 1 process: the test cannot fail", d[1]);
}
END_TEST

/* ---- a rank killed, the run resumed ---------------------------------------------------------------- */

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The PID of the process of rank `rank` among mpirun's children (Open MPI
 * puts OMPI_COMM_WORLD_RANK in each one's environment), or -1. */
static pid_t rank_pid(pid_t launcher, int rank)
{
    char want[64];
    snprintf(want, sizeof want, "OMPI_COMM_WORLD_RANK=%d", rank);
    DIR *d = opendir("/proc");
    if (!d) return -1;
    pid_t found = -1;
    for (struct dirent *e; found < 0 && (e = readdir(d));) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        char path[64], stat[512];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(stat, 1, sizeof stat - 1, f);
        fclose(f);
        stat[n] = 0;
        const char *paren = strrchr(stat, ')');
        long ppid = 0;
        if (!paren || sscanf(paren + 2, "%*c %ld", &ppid) != 1 || ppid != launcher) continue;
        snprintf(path, sizeof path, "/proc/%ld/environ", pid);
        size_t len;
        char *env = tu_read(path, &len);
        for (size_t at = 0; env && at < len; at += strlen(env + at) + 1)
            if (!strcmp(env + at, want)) found = (pid_t)pid;
        free(env);
    }
    closedir(d);
    return found;
}

/* dp_mlp in deterministic mode for 2 epochs: on 1 process uninterrupted;
 * on 2 ranks with slow steps, rank 1 killed with SIGKILL once epoch 1's
 * checkpoint is written: the survivors stop within 30 s, non-zero, naming
 * rank 1; then the checkpoint resumed on 2 ranks and, separately, on 1
 * process: both end with the uninterrupted run's bytes. */
START_TEST(killed_rank_stops_the_run_and_resume_continues)
{
    SKIP_UNLESS_MPI();
    const char *dir = tu_tmpdir("mpi_kill");
    char data[8192];
    mlp_data(dir, data, sizeof data);
    const char *model = tu_src("tests/fixtures/dp_mlp.kdsl");
    const char *whole = tu_path(dir, "whole.safetensors"), *ckpt = tu_path(dir, "run.ckpt");
    free(run_ok("%s train %s --model dp_mlp --data %s --deterministic --threads 1 --save %s 2>&1", tu_kdslc(), model,
                data, whole));

    const char *log = tu_path(dir, "killed.log");
    pid_t pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        setenv("KDSL_TEST_SLOW_STEP_MS", "40", 1);
        char cmd[16384];
        snprintf(cmd, sizeof cmd,
                 "exec %s train %s --model dp_mlp --data %s --deterministic --threads 1 --checkpoint %s "
                 "--save %s >%s 2>&1",
                 mpirun(2), model, data, ckpt, tu_path(dir, "never.safetensors"), log);
        /* mpirun forwards the variable to the ranks with -x */
        char *at = strstr(cmd, "--oversubscribe");
        char full[16500];
        snprintf(full, sizeof full, "%.*s-x KDSL_TEST_SLOW_STEP_MS %s", (int)(at - cmd), cmd, at);
        execl("/bin/sh", "sh", "-c", full, (char *)NULL);
        _exit(127);
    }
    struct stat st;
    double t0 = now_s();
    while (stat(ckpt, &st) != 0 && now_s() - t0 < 120) sleep_s(0.02);
    ck_assert_msg(stat(ckpt, &st) == 0, "no checkpoint after 120 s");
    sleep_s(0.15);   /* a few steps into epoch 2 (10 steps of 40 ms) */
    pid_t victim = rank_pid(pid, 1);
    ck_assert_int_gt(victim, 0);
    double killed_at = now_s();
    kill(victim, SIGKILL);
    int status;
    while (waitpid(pid, &status, WNOHANG) == 0 && now_s() - killed_at < 60) sleep_s(0.02);
    double took = now_s() - killed_at;
    if (took >= 60) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    char *out = tu_read(log, NULL);
    ck_assert_ptr_nonnull(out);
    ck_assert_msg(took < 30, "the run went on %.1f s after rank 1 was killed:\n%s", took, out);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != 0, "mpirun's status %d after a rank died:\n%s", status,
                  out);
    ck_assert_has(out, "kdslc: error: rank 1 (pid ");
    ck_assert_has(out, "ended during epoch 2, step ");
    free(out);
    ck_assert_int_ne(access(tu_path(dir, "never.safetensors"), F_OK), 0);

    /* the checkpoint of epoch 1, resumed on 2 ranks and on 1 */
    const char *ck2 = tu_path(dir, "resume2.ckpt"), *on2 = tu_path(dir, "on2.safetensors");
    const char *on1 = tu_path(dir, "on1.safetensors");
    free(run_ok("cp %s %s", ckpt, ck2));
    out = run_ok("%s train %s --model dp_mlp --data %s --deterministic --threads 1 --resume %s --checkpoint %s --save %s "
                 "2>&1",
                 mpirun(2), model, data, ck2, ck2, on2);
    ck_assert_has(out, "Resuming from");
    ck_assert_has(out, "Epoch 2/2");
    ck_assert_lacks(out, "Epoch 1/2");
    free(out);
    free(run_ok("%s train %s --model dp_mlp --data %s --deterministic --threads 1 --resume %s --save %s 2>&1",
                tu_kdslc(), model, data, ckpt, on1));
    ck_assert_msg(same_file(whole, on2), "resumed on 2 ranks: not the uninterrupted run's weights");
    ck_assert_msg(same_file(whole, on1), "resumed on 1 process: not the uninterrupted run's weights");
}
END_TEST

/* Without mpirun, in every build and in the sanitizer pass: the
 * data-parallel step on one process with one shard (grad on the whole
 * batch, weight 1, the states put back, apply_gradients) gives train_step's
 * bytes, for the MLP with BatchNormalization and Dropout over 2 epochs
 * (300 samples: a partial last batch); 8 shards (the tree, the states'
 * mean over shards) do not. */
START_TEST(one_shard_is_train_step)
{
    const char *dir = tu_tmpdir("mpi_one_shard");
    char data[8192];
    mlp_data(dir, data, sizeof data);
    const char *m = tu_src("tests/fixtures/dp_mlp.kdsl");
    const char *plain = tu_path(dir, "plain.safetensors"), *one = tu_path(dir, "one.safetensors");
    const char *eight = tu_path(dir, "eight.safetensors");
    free(run_ok("%s train %s --model dp_mlp --data %s --threads 1 --save %s 2>&1", tu_kdslc(), m, data, plain));
    free(run_ok("%s train %s --model dp_mlp --data %s --threads 1 --deterministic --shards 1 --save %s 2>&1", tu_kdslc(),
                m, data, one));
    free(run_ok("%s train %s --model dp_mlp --data %s --threads 1 --deterministic --save %s 2>&1", tu_kdslc(), m, data,
                eight));
    ck_assert_msg(same_file(plain, one), "one shard is not train_step");
    ck_assert_msg(!same_file(plain, eight), "8 shards gave train_step's bytes");
    (void)weights_rel_diff(eight, plain);   /* the same tensors, finite (its BatchNormalization saw 4 samples a shard) */
}
END_TEST

/* Without mpirun, in every build: synchronised BatchNormalization in one
 * process is plain BatchNormalization, to the bit (the mean over one rank is
 * a copy). */
START_TEST(synchronized_bn_alone_is_plain_bn)
{
    const char *dir = tu_tmpdir("syncbn_alone");
    free(train_mlp(tu_kdslc(), dir, "dp_syncbn", "", "sync.st"));
    free(train_mlp(tu_kdslc(), dir, "dp_bn", "", "plain.st"));
    ck_assert(weights_rel_diff(tu_path(dir, "sync.st"), tu_path(dir, "plain.st")) == 0);
}
END_TEST

/* ---- usage ------------------------------------------------------------------------------------------ */

START_TEST(deterministic_needs_ranks_that_share_the_shards)
{
    SKIP_UNLESS_MPI();
    const char *dir = tu_tmpdir("mpi_usage");
    char data[8192], *out;
    mlp_data(dir, data, sizeof data);
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "%s train %s --model dp_plain --data %s --deterministic --threads 1 2>&1", mpirun(3),
             tu_src("tests/fixtures/dp_mlp.kdsl"), data);
    int rc = tu_run(cmd, &out);
    ck_assert_msg(rc != 0, "3 ranks took 8 shards:\n%s", out);
    ck_assert_has(out, "8 shards, which 3 ranks cannot share");
    free(out);
}
END_TEST

/* Without mpirun: --shards alone is a usage error. */
START_TEST(shards_go_with_deterministic)
{
    ck_assert_fails(2, "--shards K cuts the batches of --deterministic", "train %s --model dp_plain --shards 4",
                    tu_src("tests/fixtures/dp_mlp.kdsl"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("mpi");
    TCase *tc = tcase_create("mpi");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, deterministic_cnn_is_bit_identical);
    tcase_add_test(tc, default_mode_matches_one_process);
    tcase_add_test(tc, overlap_starts_buckets_inside_grad);
    tcase_add_test(tc, synchronized_bn_matches_one_process);
    tcase_add_test(tc, synchronized_bn_alone_is_plain_bn);
    tcase_add_test(tc, killed_rank_stops_the_run_and_resume_continues);
    tcase_add_test(tc, deterministic_needs_ranks_that_share_the_shards);
    tcase_add_test(tc, shards_go_with_deterministic);
    tcase_add_test(tc, one_shard_is_train_step);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
