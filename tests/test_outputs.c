/* test_outputs.c — nothing lost, nothing silent (issue 29): kdslc's output
 * files, signals and result checks, end to end.
 *
 * - Outputs are checked before any work: one that is an input or another
 *   output (by inode, through links), one in a missing directory, one that
 *   is a directory — exit 1 or 2 with both paths named, nothing written,
 *   no epoch trained.
 * - Atomic replacement: a symbolic link keeps pointing at its target, which
 *   gets the new content; the replaced file's mode is kept; a 250-byte
 *   name works; temporaries of dead writers are reclaimed; SIGKILLs at
 *   random points of a run leave at most one, which the next run removes;
 *   a full disk (enospc_shim.c, LD_PRELOAD) while writing model.h leaves
 *   the old model.c AND model.h and says "No space left on device".
 * - Signals: SIGINT and SIGTERM stop `kdslc train` at a step boundary with
 *   exit 130 / 143, a message saying where and which checkpoint is intact,
 *   a checkpoint that loads, and no temporary.
 * - Silent wrong results: evaluate and predict fail on infinite outputs
 *   naming the samples; summary and ir fail on /dev/full; a FIFO as the
 *   source, the data or the weights fails at once instead of hanging. */
#define _DEFAULT_SOURCE
#include "testutil.h"

#include "host/tensor_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

/* kdslc fails with `code`, its output has every one of the words (NULL-ended),
 * and no sanitizer spoke. */
static void expect_failure(int code, const char *const *words, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void expect_failure(int code, const char *const *words, const char *fmt, ...)
{
    char args[12288];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *out;
    int rc = tu_kdslc_run(&out, "%s", args);
    ck_assert_msg(rc == code, "kdslc %s: exit %d, expected %d:\n%s", args, rc, code, out);
    for (; *words; words++) ck_assert_has(out, *words);
    ck_assert_lacks(out, "Sanitizer");
    ck_assert_lacks(out, "runtime error");
    free(out);
}
#define W(...) ((const char *const[]){__VA_ARGS__, NULL})

static void put(const char *path, const char *text)
{
    ck_assert_int_eq(tu_write(path, text, strlen(text)), 0);
}

static void assert_content(const char *path, const char *want)
{
    size_t n;
    char *got = tu_read(path, &n);
    ck_assert_msg(got != NULL, "%s: cannot read it", path);
    ck_assert_msg(n == strlen(want) && !memcmp(got, want, n), "%s changed: now %.200s", path, got);
    free(got);
}

static bool starts_with(const char *path, const char *prefix)
{
    char *got = tu_read(path, NULL);
    bool ok = got && !strncmp(got, prefix, strlen(prefix));
    free(got);
    return ok;
}

/* Temporaries of atomic_file.c (".NAME.kd-HASH-PID.tmp" / ".old") or of
 * the writer before it ("NAME.tmp-XXXXXX") in dir. */
static int count_temps(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".kd-") || strstr(e->d_name, ".tmp-")) n++;
    closedir(d);
    return n;
}

/* The model and a tiny data set: y = 2x + 1, 64 samples, 4 steps an epoch. */
static const char *model_file(void) { return tu_src("samples/linear_regression.kdsl"); }

static const char *make_data(const char *dir)
{
    const char *p = tu_path(dir, "d.csv");
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs("x,y\n", f);
    for (int i = 0; i < 64; i++) {
        double x = (i - 32) / 32.0;
        fprintf(f, "%g,%g\n", x, 2 * x + 1);
    }
    fclose(f);
    return p;
}

static const char *copy_model(const char *dir)
{
    size_t n;
    char *text = tu_read(model_file(), &n);
    ck_assert_ptr_nonnull(text);
    const char *p = tu_path(dir, "m.kdsl");
    ck_assert_int_eq(tu_write(p, text, n), 0);
    free(text);
    return p;
}

/* ---- outputs checked before any work ------------------------------------------------ */

START_TEST(overlapping_paths_are_refused)
{
    const char *dir = tu_tmpdir("out-overlap");
    const char *m = copy_model(dir);
    char *source = tu_read(m, NULL);
    const char *data = make_data(dir);

    /* compile -o the source, directly and through a symbolic link */
    expect_failure(2, W("-o", "would overwrite the model source", m), "compile %s -o %s", m, m);
    ck_assert_int_eq(symlink("m.kdsl", tu_path(dir, "alias.c")), 0);
    expect_failure(2, W("alias.c", "the same file"), "compile %s -o %s", m, tu_path(dir, "alias.c"));
    assert_content(m, source);
    ck_assert_int_ne(access(tu_path(dir, "alias.h"), F_OK), 0);

    /* predict -o its input */
    const char *x = tu_path(dir, "x.npy");
    float v[4] = {1, 2, 3, 4};
    kdh_tensor t = {.dtype = KDH_F32, .rank = 2, .shape = {4, 1}, .data = v, .nbytes = sizeof v};
    kdh_error err;
    ck_assert_msg(kdh_npy_write(x, &t, &err) == 0, "%s", err.msg);
    size_t xlen;
    char *xbytes = tu_read(x, &xlen);
    expect_failure(2, W("-o", "--input", "would overwrite"), "predict %s --weights %s --input %s -o %s", m,
                                                     tu_path(dir, "w.st"), x, x);
    char *after = tu_read(x, NULL);
    ck_assert_int_eq(memcmp(after, xbytes, xlen), 0);
    free(after);
    free(xbytes);

    /* train: --history = --checkpoint, --save = --checkpoint, --history = --weights, --save = --data;
     * a hard link is the same file too */
    const char *ck = tu_path(dir, "run.ckpt");
    expect_failure(2, W("--checkpoint", "--history", "are the same file"), "train %s --data %s --checkpoint %s --history %s", m, data, ck, ck);
    expect_failure(2, W("--save", "--checkpoint"), "train %s --data %s --checkpoint %s --save %s", m, data, ck, ck);
    put(tu_path(dir, "w0.st"), "weights");
    expect_failure(2, W("--history", "would overwrite --weights"), "train %s --data %s --weights %s --history %s", m, data,
                                                         tu_path(dir, "w0.st"), tu_path(dir, "w0.st"));
    assert_content(tu_path(dir, "w0.st"), "weights");
    ck_assert_int_eq(link(data, tu_path(dir, "hard.csv")), 0);
    expect_failure(2, W("--data", "hard.csv"), "train %s --data %s --history %s", m, data, tu_path(dir, "hard.csv"));
    expect_failure(2, W("the model source"), "train %s --data %s --save %s", m, data, m);
    assert_content(m, source);
    ck_assert_int_ne(access(ck, F_OK), 0);
    ck_assert_int_eq(count_temps(dir), 0);
    free(source);
}
END_TEST

START_TEST(save_in_a_missing_directory_fails_before_training)
{
    const char *dir = tu_tmpdir("out-missing");
    const char *data = make_data(dir);
    char *out;
    int rc = tu_kdslc_run(&out, "train %s --data %s --epochs 3 --save %s/no/such/dir/w.st", model_file(), data, dir);
    ck_assert_msg(rc == 1, "exit %d:\n%s", rc, out);
    ck_assert_has(out, "--save");
    ck_assert_has(out, "no/such/dir");
    ck_assert_has(out, "No such file or directory");
    ck_assert_lacks(out, "Epoch");   /* nothing trained, nothing lost */
    ck_assert_lacks(out, "JIT");
    free(out);
    /* the same for the checkpoint and the history; a directory as an output */
    expect_failure(1, W("--checkpoint", "no/such"), "train %s --data %s --checkpoint %s/no/such/c.ckpt", model_file(), data, dir);
    expect_failure(1, W("--history", "is a directory"), "train %s --data %s --history %s", model_file(), data, dir);
    ck_assert_int_eq(count_temps(dir), 0);
}
END_TEST

START_TEST(directory_as_output_writes_nothing)
{
    const char *dir = tu_tmpdir("out-dir");
    const char *adir = tu_path(dir, "adir");
    ck_assert_int_eq(mkdir(adir, 0777), 0);
    expect_failure(1, W("adir", "is a directory"), "compile %s -o %s", model_file(), adir);
    ck_assert_int_ne(access(tu_path(dir, "adir.h"), F_OK), 0);
    ck_assert_int_eq(count_temps(dir), 0);
    /* model.h a directory: model.c is not written either */
    ck_assert_int_eq(mkdir(tu_path(dir, "model.h"), 0777), 0);
    expect_failure(1, W("model.h", "is a directory"), "compile %s -o %s", model_file(), tu_path(dir, "model.c"));
    ck_assert_int_ne(access(tu_path(dir, "model.c"), F_OK), 0);
}
END_TEST

/* ---- atomic replacement ------------------------------------------------------------------- */

START_TEST(symlink_target_is_replaced_and_link_kept)
{
    const char *dir = tu_tmpdir("out-symlink");
    const char *real = tu_path(dir, "real");
    ck_assert_int_eq(mkdir(real, 0777), 0);
    put(tu_path(real, "gen.c"), "old\n");
    ck_assert_int_eq(symlink("real/gen.c", tu_path(dir, "link.c")), 0);
    char *out;
    int rc = tu_kdslc_run(&out, "compile %s -o %s", model_file(), tu_path(dir, "link.c"));
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    struct stat st;
    ck_assert_int_eq(lstat(tu_path(dir, "link.c"), &st), 0);
    ck_assert_msg(S_ISLNK(st.st_mode), "the link was replaced by a file");
    ck_assert_msg(starts_with(tu_path(real, "gen.c"), "/*"), "the target does not hold the generated C");
    ck_assert_int_eq(count_temps(dir), 0);
    ck_assert_int_eq(count_temps(real), 0);

    /* a dangling link: the file it points at is created */
    ck_assert_int_eq(symlink("real/new.st", tu_path(dir, "w.st")), 0);
    const char *data = make_data(dir);
    rc = tu_kdslc_run(&out, "train %s --data %s --epochs 1 --save %s", model_file(), data, tu_path(dir, "w.st"));
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    ck_assert_int_eq(lstat(tu_path(dir, "w.st"), &st), 0);
    ck_assert(S_ISLNK(st.st_mode));
    ck_assert_int_eq(stat(tu_path(real, "new.st"), &st), 0);
    ck_assert(S_ISREG(st.st_mode) && st.st_size > 0);
}
END_TEST

START_TEST(mode_of_replaced_file_is_kept)
{
    const char *dir = tu_tmpdir("out-mode");
    const char *c = tu_path(dir, "model.c"), *h = tu_path(dir, "model.h");
    put(c, "old c\n");
    put(h, "old h\n");
    ck_assert_int_eq(chmod(c, 0600), 0);
    ck_assert_int_eq(chmod(h, 0640), 0);
    mode_t old = umask(027);   /* the child's: a new file gets 0666 & ~027 = 0640 */
    char *out;
    int rc = tu_kdslc_run(&out, "compile %s -o %s", model_file(), c);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    struct stat st;
    ck_assert_int_eq(stat(c, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0600);
    ck_assert_int_eq(stat(h, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0640);
    ck_assert(starts_with(c, "/*"));

    const char *c2 = tu_path(dir, "fresh.c");
    rc = tu_kdslc_run(&out, "compile %s -o %s", model_file(), c2);
    umask(old);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    ck_assert_int_eq(stat(c2, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0640);
}
END_TEST

START_TEST(name_of_250_bytes_works)
{
    const char *dir = tu_tmpdir("out-long");
    char name[251];
    memset(name, 'n', 248);
    memcpy(name + 248, ".c", 3);
    const char *c = tu_path(dir, name);
    char *out;
    int rc = tu_kdslc_run(&out, "compile %s -o %s", model_file(), c);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    ck_assert(starts_with(c, "/*"));
    name[249] = 'h';
    ck_assert(starts_with(tu_path(dir, name), "/*"));
    ck_assert_int_eq(count_temps(dir), 0);
}
END_TEST

/* The name atomic_file.c gives a temporary of path's base name written by pid. */
static void temp_of(const char *dir, const char *base, long pid, char *out, size_t size)
{
    uint32_t h = 2166136261u;
    for (const char *s = base; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    int keep = (int)(strlen(base) < 100 ? strlen(base) : 100);
    snprintf(out, size, "%s/.%.*s.kd-%08x-%ld.tmp", dir, keep, base, (unsigned)h, pid);
}

static long dead_pid(void)
{
    pid_t p = fork();
    ck_assert_int_ne(p, -1);
    if (p == 0) _exit(0);
    waitpid(p, NULL, 0);
    return (long)p;
}

START_TEST(stale_temporary_is_reclaimed)
{
    const char *dir = tu_tmpdir("out-stale");
    char stale[4400], live[4400], other[4400];
    temp_of(dir, "model.c", dead_pid(), stale, sizeof stale);
    temp_of(dir, "model.c", (long)getpid(), live, sizeof live);   /* a writer still running: kept */
    temp_of(dir, "other.c", dead_pid(), other, sizeof other);     /* another output's: not ours to take */
    put(stale, "left by a SIGKILL");
    put(live, "being written");
    put(other, "someone else's");
    char *out;
    int rc = tu_kdslc_run(&out, "compile %s -o %s", model_file(), tu_path(dir, "model.c"));
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    ck_assert_msg(access(stale, F_OK) != 0, "the stale temporary is still there");
    ck_assert_int_eq(access(live, F_OK), 0);
    ck_assert_int_eq(access(other, F_OK), 0);
    unlink(live);
    unlink(other);
    ck_assert_int_eq(count_temps(dir), 0);
}
END_TEST

/* ---- running kdslc train in a child --------------------------------------------------- */

static pid_t spawn_train(const char *dir, const char *data, const char *ckpt, unsigned step_ms, int epochs)
{
    char ms[32], ep[32];
    snprintf(ms, sizeof ms, "%u", step_ms);
    snprintf(ep, sizeof ep, "%d", epochs);
    const char *outp = tu_path(dir, "train.out"), *errp = tu_path(dir, "train.err");
    pid_t pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        setenv("KDSL_TEST_SLOW_STEP_MS", ms, 1);
        int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0666), e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (o < 0 || e < 0) _exit(127);
        dup2(o, 1);
        dup2(e, 2);
        /* a new process group, as a shell gives a job, so that a terminal's ^C reaches only us */
        setpgid(0, 0);
        execl(tu_kdslc(), tu_kdslc(), "train", model_file(), "--data", data, "--epochs", ep, "--checkpoint", ckpt,
              "--history", tu_path(dir, "h.csv"), "--save", tu_path(dir, "w.st"), (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static void wait_for_file(const char *path)
{
    struct stat st;
    double waited = 0;
    while (stat(path, &st) != 0 && waited < 300) {
        sleep_s(0.01);
        waited += 0.01;
    }
    ck_assert_msg(waited < 300, "no %s after %g s", path, waited);
}

static void stop_with(int sig, const char *name, int code)
{
    char tag[32];
    snprintf(tag, sizeof tag, "out-%s", name);
    const char *dir = tu_tmpdir(tag);
    const char *data = make_data(dir), *ckpt = tu_path(dir, "run.ckpt");
    pid_t pid = spawn_train(dir, data, ckpt, 20, 1000);   /* ~80 ms an epoch, for ever */
    wait_for_file(ckpt);
    sleep_s(0.25);
    kill(pid, sig);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    char *err = tu_read(tu_path(dir, "train.err"), NULL);
    ck_assert_msg(WIFEXITED(status), "kdslc died of signal %d instead of stopping:\n%s", WIFSIGNALED(status) ? WTERMSIG(status) : 0, err);
    ck_assert_msg(WEXITSTATUS(status) == code, "exit %d, expected %d:\n%s", WEXITSTATUS(status), code, err);
    ck_assert_has(err, "kdslc: error: training stopped by");
    ck_assert_has(err, name);
    ck_assert_has(err, "of epoch");
    ck_assert_has(err, "run.ckpt holds epoch");
    ck_assert_has(err, "is intact");
    ck_assert_lacks(err, "Sanitizer");
    free(err);
    ck_assert_int_eq(count_temps(dir), 0);
    ck_assert_int_ne(access(tu_path(dir, "w.st"), F_OK), 0);
    /* the checkpoint is whole: a run resumes from it */
    char *out;
    int rc = tu_kdslc_run(&out, "train %s --data %s --epochs 1000 --resume %s --epochs 1", model_file(), data, ckpt);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_has(out, "epochs done already");
    free(out);
}

START_TEST(sigint_stops_training_at_a_step)
{
    stop_with(SIGINT, "SIGINT", 130);
}
END_TEST

START_TEST(sigterm_stops_training_at_a_step)
{
    stop_with(SIGTERM, "SIGTERM", 143);
}
END_TEST

/* SIGKILL at random points (in a step, in a checkpoint or history write):
 * at most one temporary per output is left, and the next run's write of
 * the same outputs removes them. */
START_TEST(sigkill_leaves_at_most_one_temporary_per_output)
{
    const char *dir = tu_tmpdir("out-sigkill");
    const char *data = make_data(dir), *ckpt = tu_path(dir, "run.ckpt");
    srand(29);
    for (int round = 0; round < 6; round++) {
        pid_t pid = spawn_train(dir, data, ckpt, 1, 100000);   /* a checkpoint every few ms */
        wait_for_file(ckpt);
        sleep_s(0.05 + (rand() % 1000) * 1e-4);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        ck_assert_int_le(count_temps(dir), 2);   /* the checkpoint's and the history's at most */
        kdh_tensor_list l;
        kdh_error err;
        ck_assert_msg(kdh_safetensors_read(ckpt, NULL, &l, &err) == 0, "round %d: %s", round, err.msg);
        kdh_list_free(&l);
    }
    char *out;
    int rc = tu_kdslc_run(&out, "train %s --data %s --epochs 1 --checkpoint %s --history %s", model_file(), data,
                   tu_path(dir, "run.ckpt"), tu_path(dir, "h.csv"));
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    ck_assert_int_eq(count_temps(dir), 0);
}
END_TEST

/* ---- a full disk ---------------------------------------------------------------------------- */

START_TEST(full_disk_keeps_both_old_files)
{
    const char *shim = getenv("KDSL_ENOSPC_SHIM");
    ck_assert_msg(shim && *shim, "KDSL_ENOSPC_SHIM is not set (tests/meson.build)");
    const char *dir = tu_tmpdir("out-enospc");
    const char *c = tu_path(dir, "model.c"), *h = tu_path(dir, "model.h");
    const char *fails[] = {"model.h", "model.c"};
    for (int k = 0; k < 2; k++) {
        put(c, "old model.c\n");
        put(h, "old model.h\n");
        char *out;
        /* ASan wants to come first among the libraries; the shim does not use it */
        int rc = tu_kdslc_run(&out, "compile %s -o %s", model_file(), c);
        ck_assert_msg(rc == 0, "%s", out);   /* without the shim: fine */
        free(out);
        put(c, "old model.c\n");
        put(h, "old model.h\n");
        char cmd[8192];
        snprintf(cmd, sizeof cmd,
                 "LD_PRELOAD='%s' KDSL_ENOSPC_MATCH='%s' ASAN_OPTIONS=\"$ASAN_OPTIONS:verify_asan_link_order=0\" "
                 "%s compile %s -o %s",
                 shim, fails[k], tu_kdslc(), model_file(), c);
        rc = tu_run(cmd, &out);
        ck_assert_msg(rc == 1, "exit %d:\n%s", rc, out);
        ck_assert_has(out, "kdslc: error: ");
        ck_assert_has(out, tu_path(dir, fails[k]));
        ck_assert_has(out, "No space left on device");
        ck_assert_lacks(out, "Sanitizer");
        free(out);
        assert_content(c, "old model.c\n");
        assert_content(h, "old model.h\n");
        ck_assert_int_eq(count_temps(dir), 0);
    }
    /* a checkpoint write on a full disk: training stops, naming the file */
    const char *data = make_data(dir), *ckpt = tu_path(dir, "run.ckpt");
    put(ckpt, "old checkpoint");
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "LD_PRELOAD='%s' KDSL_ENOSPC_MATCH=run.ckpt ASAN_OPTIONS=\"$ASAN_OPTIONS:verify_asan_link_order=0\" "
             "%s train %s --data %s --epochs 2 --checkpoint %s",
             shim, tu_kdslc(), model_file(), data, ckpt);
    char *out;
    int rc = tu_run(cmd, &out);
    ck_assert_msg(rc == 1, "exit %d:\n%s", rc, out);
    ck_assert_has(out, "run.ckpt: write failed: No space left on device");
    free(out);
    assert_content(ckpt, "old checkpoint");
    ck_assert_int_eq(count_temps(dir), 0);
}
END_TEST

/* ---- silent wrong results ------------------------------------------------------------------- */

START_TEST(stdout_write_errors_fail)
{
    if (access("/dev/full", W_OK) != 0) return;   /* not on this system */
    const char *cmds[] = {"summary %s", "ir %s --stage graph", "ir %s --stage ast", "ir %s --stage loops"};
    for (int i = 0; i < 4; i++) {
        char args[4600], cmd[9000];
        snprintf(args, sizeof args, cmds[i], model_file());
        snprintf(cmd, sizeof cmd, "%s %s > /dev/full", tu_kdslc(), args);
        char *out;
        int rc = tu_run(cmd, &out);
        ck_assert_msg(rc == 1, "kdslc %s > /dev/full: exit %d\n%s", args, rc, out);
        ck_assert_has(out, "standard output");
        ck_assert_has(out, "No space left on device");
        free(out);
    }
}
END_TEST

/* w = 3e38: finite weights whose outputs overflow on inputs of 10. */
START_TEST(non_finite_results_are_errors)
{
    const char *dir = tu_tmpdir("out-nan");
    float w = 3e38f, b = 0;
    kdh_tensor t[2] = {{.name = "w", .dtype = KDH_F32, .rank = 2, .shape = {1, 1}, .data = &w, .nbytes = 4},
                       {.name = "b", .dtype = KDH_F32, .rank = 1, .shape = {1}, .data = &b, .nbytes = 4}};
    kdh_error err;
    const char *wp = tu_path(dir, "w.st");
    ck_assert_msg(kdh_safetensors_write(wp, t, 2, NULL, 0, &err) == 0, "%s", err.msg);
    const char *data = tu_path(dir, "d.csv");
    put(data, "x,y\n0.5,1\n0.25,1\n10,1\n20,1\n0,1\n");
    expect_failure(1, W("NaN or infinite", "2 of 5 samples", "samples 2 to 3"), "evaluate %s --weights %s --data %s",
                                                                       model_file(), wp, data);
    float x[3] = {0, 10, 1};
    kdh_tensor xt = {.dtype = KDH_F32, .rank = 2, .shape = {3, 1}, .data = x, .nbytes = sizeof x};
    const char *xp = tu_path(dir, "x.npy");
    ck_assert_msg(kdh_npy_write(xp, &xt, &err) == 0, "%s", err.msg);
    expect_failure(1, W("the model's output is NaN or infinite", "sample 1"), "predict %s --weights %s --input %s -o %s",
                                                                      model_file(), wp, xp, tu_path(dir, "y.npy"));
    ck_assert_int_ne(access(tu_path(dir, "y.npy"), F_OK), 0);
    expect_failure(1, W("sample 1"), "predict %s --weights %s --input %s", model_file(), wp, xp);
}
END_TEST

/* A FIFO with no writer: open() would block for ever without O_NONBLOCK. */
START_TEST(fifo_inputs_do_not_hang)
{
    const char *dir = tu_tmpdir("out-fifo");
    const char *fifo = tu_path(dir, "fifo.kdsl");
    ck_assert_int_eq(mkfifo(fifo, 0666), 0);
    const char *csv = tu_path(dir, "fifo.csv"), *st = tu_path(dir, "fifo.st");
    ck_assert_int_eq(mkfifo(csv, 0666), 0);
    ck_assert_int_eq(mkfifo(st, 0666), 0);
    const char *runs[][2] = {
        {"summary %s", "fifo.kdsl"},
        {"compile %s -o /dev/null/x.c", "fifo.kdsl"},
    };
    for (int i = 0; i < 2; i++) {
        char args[4600], cmd[9000];
        snprintf(args, sizeof args, runs[i][0], fifo);
        snprintf(cmd, sizeof cmd, "timeout -s KILL 120 %s %s", tu_kdslc(), args);
        char *out;
        int rc = tu_run(cmd, &out);
        ck_assert_msg(rc == 1, "kdslc %s: exit %d (137: it hung)\n%s", args, rc, out);
        ck_assert_has(out, "not a regular file");
        free(out);
    }
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "timeout -s KILL 120 %s train %s --data %s", tu_kdslc(), model_file(), csv);
    char *out;
    int rc = tu_run(cmd, &out);
    ck_assert_msg(rc == 1, "train --data FIFO: exit %d\n%s", rc, out);
    ck_assert_has(out, "not a regular file");
    free(out);
    snprintf(cmd, sizeof cmd, "timeout -s KILL 120 %s evaluate %s --weights %s --data %s", tu_kdslc(), model_file(), st,
             make_data(dir));
    rc = tu_run(cmd, &out);
    ck_assert_msg(rc == 1, "evaluate --weights FIFO: exit %d\n%s", rc, out);
    ck_assert_has(out, "not a regular file");
    free(out);
}
END_TEST

static Suite *outputs_suite(void)
{
    Suite *s = suite_create("outputs");
    TCase *paths = tcase_create("paths");
    tcase_add_test(paths, overlapping_paths_are_refused);
    tcase_add_test(paths, save_in_a_missing_directory_fails_before_training);
    tcase_add_test(paths, directory_as_output_writes_nothing);
    suite_add_tcase(s, paths);
    TCase *atomic = tcase_create("atomic");
    tcase_add_test(atomic, symlink_target_is_replaced_and_link_kept);
    tcase_add_test(atomic, mode_of_replaced_file_is_kept);
    tcase_add_test(atomic, name_of_250_bytes_works);
    tcase_add_test(atomic, stale_temporary_is_reclaimed);
    tcase_add_test(atomic, full_disk_keeps_both_old_files);
    suite_add_tcase(s, atomic);
    TCase *sig = tcase_create("signals");
    tcase_add_test(sig, sigint_stops_training_at_a_step);
    tcase_add_test(sig, sigterm_stops_training_at_a_step);
    tcase_add_test(sig, sigkill_leaves_at_most_one_temporary_per_output);
    tcase_set_timeout(sig, 600);
    suite_add_tcase(s, sig);
    TCase *results = tcase_create("results");
    tcase_add_test(results, stdout_write_errors_fail);
    tcase_add_test(results, non_finite_results_are_errors);
    tcase_add_test(results, fifo_inputs_do_not_hang);
    suite_add_tcase(s, results);
    return s;
}

int main(void)
{
    return tu_run_suite(outputs_suite());
}
