/* test_hostile.c — hostile input, end to end.
 *
 * The compiler: kdslc runs on every program in tests/hostile/ and on huge or
 * malformed ones generated here (100k nested parentheses, 10 kB names, 10 MB
 * files, a file over the 64 MiB limit, binary junk, NUL bytes, chains of
 * 5000 blocks, ...), each in a child with a CPU-time limit, a wall-clock
 * limit and a memory limit (RLIMIT_AS 1 GiB; under AddressSanitizer, whose
 * shadow memory needs terabytes of address space, its hard_rss_limit_mb
 * instead). Each must exit with status 1 and an `error:` line: no signal, no
 * sanitizer report, no hang, no flood of output. A `# expect: TEXT` line in
 * a hostile program names text the error must contain.
 *
 * The compile-time memory bound (KDSL_MAX_BYTES, sema.c's check_memory), and
 * the file readers' bad input that tests/test_files.c does not already cover:
 * the IDX reader from memory, every truncation of a safetensors file, lengths
 * that wrap around, NaN and infinity in data, NUL bytes in CSV. */
#include "testutil.h"

#include "driver.h"
#include "host/tensor_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

enum {
    CPU_SECONDS = 60,     /* per run; a sanitizer build on a busy machine included */
    WALL_SECONDS = 300,   /* a hang is killed here */
    MAX_STDERR = 1 << 20, /* 50 errors at most, each line cut: far less than this */
};
static const rlim_t MEMORY_LIMIT = (rlim_t)1 << 30;

/* ---- running kdslc in a box ---------------------------------------------------------------- */

typedef struct run_result {
    bool exited, timed_out;
    int status, sig;
    double secs;
    char *err;             /* stderr, NUL-terminated */
    size_t errlen;
} run_result;

/* Appends opts to the environment variable name (":"-separated). */
static void env_append(const char *name, const char *opts)
{
    const char *old = getenv(name);
    char buf[2048];
    snprintf(buf, sizeof buf, "%s%s%s", old && *old ? old : "", old && *old ? ":" : "", opts);
    setenv(name, buf, 1);
}

static run_result run_kdslc(const char *command, const char *file)
{
    run_result r = {0};
    char errpath[4200];
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", tu_tmpdir("hostile-run"));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct rlimit cpu = {CPU_SECONDS, CPU_SECONDS + 5};
        setrlimit(RLIMIT_CPU, &cpu);
        /* Sanitizers report with exit status 99, which no kdslc error has. */
        if (UNDER_ASAN) {
            env_append("ASAN_OPTIONS", "hard_rss_limit_mb=1024:exitcode=99");
        } else {
            struct rlimit as = {MEMORY_LIMIT, MEMORY_LIMIT};
            setrlimit(RLIMIT_AS, &as);
        }
        env_append("UBSAN_OPTIONS", "exitcode=99");
        int in = open("/dev/null", O_RDONLY), out = open("/dev/null", O_WRONLY);
        int err = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || out < 0 || err < 0) _exit(126);
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        execl(tu_kdslc(), "kdslc", command, file, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) break;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (t1.tv_sec - t0.tv_sec > WALL_SECONDS) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            r.timed_out = true;
            break;
        }
        struct timespec nap = {0, 10 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    r.secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    r.exited = WIFEXITED(st);
    r.status = r.exited ? WEXITSTATUS(st) : -1;
    r.sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    r.err = tu_read(errpath, &r.errlen);
    if (!r.err) r.err = strdup("");
    return r;
}

/* kdslc summary FILE fails cleanly: status 1, "error:" (and `expect` when
 * given) in its messages, no signal, no sanitizer report, in bounded time. */
static void expect_clean_error(const char *what, const char *file, const char *expect)
{
    run_result r = run_kdslc("summary", file);
    fprintf(stderr, "hostile %-28s %6.2f s, exit %d, %zu bytes of messages\n", what, r.secs, r.status, r.errlen);
    ck_assert_msg(!r.timed_out, "%s: kdslc still running after %d s", what, WALL_SECONDS);
    ck_assert_msg(r.sig == 0, "%s: kdslc killed by signal %d (%s) after %.1f s%s\n%.2000s", what, r.sig,
                  strsignal(r.sig), r.secs, r.sig == SIGXCPU ? ": over the CPU time limit" : "", r.err);
    ck_assert_msg(!strstr(r.err, "Sanitizer") && !strstr(r.err, "runtime error:"),
                  "%s: sanitizer report:\n%.4000s", what, r.err);
    ck_assert_msg(r.exited && r.status == 1, "%s: exit status %d, want 1\n%.2000s", what, r.status, r.err);
    ck_assert_msg(strstr(r.err, "error:") != NULL, "%s: no error message:\n%.2000s", what, r.err);
    ck_assert_msg(!expect || strstr(r.err, expect), "%s: want \"%s\" in:\n%.2000s", what, expect, r.err);
    ck_assert_msg(r.errlen < MAX_STDERR, "%s: %zu bytes of messages", what, r.errlen);
    free(r.err);
}

/* ---- the programs in tests/hostile --------------------------------------------------------------------- */

enum { MAX_HOSTILE = 128 };
static char *hostile[MAX_HOSTILE];
static int nhostile;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void list_hostile(void)
{
    DIR *d = opendir(tu_src("tests/hostile"));
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) && nhostile < MAX_HOSTILE) {
        size_t l = strlen(e->d_name);
        if (l > 5 && strcmp(e->d_name + l - 5, ".kdsl") == 0) hostile[nhostile++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(hostile, (size_t)nhostile, sizeof *hostile, cmp_str);
}

START_TEST(hostile_program_fails_cleanly)
{
    char rel[600];
    snprintf(rel, sizeof rel, "tests/hostile/%s", hostile[_i]);
    const char *path = tu_src(rel);
    char *text = tu_read(path, NULL);
    ck_assert_msg(text != NULL, "cannot read %s", path);
    char expect[512] = "";
    const char *e = strstr(text, "# expect: ");
    if (e) {
        e += strlen("# expect: ");
        size_t n = strcspn(e, "\n");
        snprintf(expect, sizeof expect, "%.*s", (int)n, e);
    }
    free(text);
    expect_clean_error(hostile[_i], path, expect[0] ? expect : NULL);
}
END_TEST

/* ---- generated programs ----------------------------------------------------------------------- */

/* A growing buffer for generated text. */
typedef struct gbuf {
    char *p;
    size_t len, cap;
} gbuf;

static void gput(gbuf *b, const void *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        b->p = realloc(b->p, cap);
        ck_assert_ptr_nonnull(b->p);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}
static void gputs(gbuf *b, const char *s) { gput(b, s, strlen(s)); }
static void grepeat(gbuf *b, const char *s, size_t times)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < times; i++) gput(b, s, n);
}
static void gprintf(gbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void gprintf(gbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    ck_assert(n >= 0 && (size_t)n < sizeof tmp);
    gput(b, tmp, (size_t)n);
}

static void gen_deep_parens(gbuf *b)
{
    gputs(b, "model m {\n    input x: [3]\n    output y = ");
    grepeat(b, "(", 100000);
    gputs(b, "x");
    grepeat(b, ")", 100000);
    gputs(b, "\n}\n");
}

static void gen_deep_brackets(gbuf *b)
{
    gputs(b, "model m {\n    input x: ");
    grepeat(b, "[", 100000);
    gputs(b, "3");
    grepeat(b, "]", 100000);
    gputs(b, "\n    Dense(2)\n}\n");
}

static void gen_deep_braces(gbuf *b)
{
    gputs(b, "model m {\n    input x: [3]\n");
    grepeat(b, "repeat 1 {\n", 100000);
    gputs(b, "ReLU()\n");
    grepeat(b, "}\n", 100000);
    gputs(b, "}\n");
}

static void gen_deep_calls(gbuf *b)
{
    gputs(b, "model m {\n    input x: [3]\n    output y = ");
    grepeat(b, "relu(", 100000);
    gputs(b, "x");
    grepeat(b, ")", 100000);
    gputs(b, "\n}\n");
}

static void gen_deep_unary(gbuf *b)
{
    gputs(b, "model m {\n    input x: [3]\n    output y = ");
    grepeat(b, "-", 100000);
    gputs(b, "x\n}\n");
}

/* x + x + ... : a left-leaning tree a million deep. */
static void gen_long_sum(gbuf *b)
{
    gputs(b, "model m {\n    input x: [3]\n    output y = x");
    grepeat(b, " + x", 1000000);
    gputs(b, "\n}\n");
}

static void gen_long_undefined_name(gbuf *b)
{
    gputs(b, "model m {\n    input x: [3]\n    output y = x + ");
    grepeat(b, "n", 10000);
    gputs(b, "\n}\n");
}

static void gen_long_layer_name(gbuf *b)
{
    gputs(b, "model m {\n    input x: [3]\n    ");
    grepeat(b, "Dense", 2000);
    gputs(b, "(3)\n}\n");
}

static void gen_long_names_everywhere(gbuf *b)
{
    /* 10 kB names of a model, an input, a keyword argument and a string. */
    gputs(b, "model ");
    grepeat(b, "m", 10000);
    gputs(b, " {\n    input ");
    grepeat(b, "x", 10000);
    gputs(b, ": [3]\n    Dense(3, ");
    grepeat(b, "k", 10000);
    gputs(b, ": 1, name: \"");
    grepeat(b, "s", 10000);
    gputs(b, "\")\n}\n");
}

/* 10 MB of comments and blank lines, then a model without an input. */
static void gen_10mb_comments(gbuf *b)
{
    while (b->len < 10u << 20) gputs(b, "# a comment line that goes on and on, to make the file large\n\n");
    gputs(b, "model m {\n    Dense(3)\n}\n");
}

/* 10 MB of statements: more than the statement budget. */
static void gen_10mb_statements(gbuf *b)
{
    gputs(b, "model m {\n    input x: [3]\n");
    while (b->len < 10u << 20) gputs(b, "    ReLU()\n");
    gputs(b, "}\n");
}

/* 10 MB on one line, ending in a syntax error (the line is cut in the message). */
static void gen_10mb_line(gbuf *b)
{
    gputs(b, "model m { input x: [3]; ");
    while (b->len < 10u << 20) gputs(b, "h = x + x; ");
    gputs(b, "h = = 2 }\n");
}

static void gen_10mb_string(gbuf *b)
{
    gputs(b, "model m {\n    input x: [3]\n    Dense(3, name: \"");
    while (b->len < 10u << 20) gputs(b, "abcdefghijklmnopqrstuvwxyz");
    gputs(b, "\"\n}\n");
}

static void gen_10mb_number(gbuf *b)
{
    gputs(b, "model m {\n    input x: [3]\n    Dense(");
    while (b->len < 10u << 20) gputs(b, "1234567890");
    gputs(b, ")\n}\n");
}

static void gen_binary_junk(gbuf *b)
{
    uint64_t s = 0x9E3779B97F4A7C15u;
    for (int i = 0; i < 1 << 20; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        unsigned char c = (unsigned char)(s >> 32);
        gput(b, &c, 1);
    }
}

static void gen_nul_bytes(gbuf *b)
{
    static const char text[] = "model m {\n    input x: [3]\0\0\0\n    Dense(2)\n}\n";
    gput(b, text, sizeof text - 1);
}

static void gen_nul_in_string(gbuf *b)
{
    static const char text[] = "model m {\n    input x: [3]\n    Dense(2, name: \"a\0b\")\n}\n";
    gput(b, text, sizeof text - 1);
}

static void gen_only_nuls(gbuf *b)
{
    static const char zeros[4096];
    for (int i = 0; i < 256; i++) gput(b, zeros, sizeof zeros);
}

static void gen_invalid_utf8(gbuf *b)
{
    gputs(b, "model m\xff\xfe {\n    input x\xc3: [3]\n    Dense(2) \xe2\x82\n}\n");
}

/* 100k lines of errors: reporting stops after 50. */
static void gen_many_errors(gbuf *b)
{
    gputs(b, "model m {\n    input x: [3]\n");
    grepeat(b, "    h = = 1\n", 100000);
    gputs(b, "}\n");
}

static void gen_many_unknown_layers(gbuf *b)
{
    gputs(b, "model m {\n    input x: [3]\n");
    grepeat(b, "    Dens(3)\n", 100000);
    gputs(b, "}\n");
}

/* Blocks calling blocks 5000 deep. */
static void gen_block_chain(gbuf *b)
{
    gputs(b, "block b0(x) {\n    output relu(x)\n}\n");
    for (int i = 1; i < 5000; i++) gprintf(b, "block b%d(x) {\n    output b%d(x)\n}\n", i, i - 1);
    gputs(b, "model m {\n    input x: [3]\n    b4999()\n}\n");
}

/* User layers calling user layers 5000 deep. */
static void gen_layer_chain(gbuf *b)
{
    gputs(b, "layer L0() {\n    input x: [3]\n    output relu(x)\n}\n");
    for (int i = 1; i < 5000; i++) gprintf(b, "layer L%d() {\n    input x: [3]\n    output L%d(x)\n}\n", i, i - 1);
    gputs(b, "model m {\n    input x: [3]\n    L4999()\n}\n");
}

/* Models nesting models 5000 deep. */
static void gen_model_chain(gbuf *b)
{
    gputs(b, "model m0 {\n    input x: [3]\n    ReLU()\n}\n");
    for (int i = 1; i < 5000; i++) gprintf(b, "model m%d {\n    input x: [3]\n    m%d()\n}\n", i, i - 1);
}

/* A cycle through 1000 blocks. */
static void gen_long_cycle(gbuf *b)
{
    for (int i = 0; i < 1000; i++) gprintf(b, "block b%d(x) {\n    output b%d(x)\n}\n", i, (i + 1) % 1000);
    gputs(b, "model m {\n    input x: [3]\n    b0()\n}\n");
}

/* 10^6 repeat with nothing but arithmetic inside. */
static void gen_million_repeat(gbuf *b)
{
    gputs(b, "model m {\n    input x: [3]\n    h = x\n    repeat 1000000 {\n        h = h * 2 + 1\n    }\n"
             "    output h\n}\n");
}

/* 2^40 elements per sample built by a chain of concatenations. */
static void gen_concat_doubling(gbuf *b)
{
    gputs(b, "model m {\n    input x: [1024]\n    h = x\n");
    grepeat(b, "    h = concat([h, h], axis: -1)\n", 40);
    gputs(b, "    output h\n}\n");
}

static void gen_many_items(gbuf *b)
{
    for (int i = 0; i < 100000; i++) gprintf(b, "block b%d(x) {\n    output x\n}\n", i);
    gputs(b, "model m {\n    input x: [3]\n    b0()\n    nope()\n}\n");
}

static void gen_many_inputs(gbuf *b)
{
    gputs(b, "model m {\n");
    for (int i = 0; i < 100000; i++) gprintf(b, "    input x%d: [1]\n", i);
    gputs(b, "}\n");
}

static void gen_many_train_keys(gbuf *b)
{
    gputs(b, "model m {\n    input x: [3]\n    Dense(2)\n}\ntrain m {\n    loss: MeanSquaredError()\n");
    grepeat(b, "    epochs: 99999999999\n", 10000);
    gputs(b, "}\n");
}

/* 10,000 models of 99,990 statements each: the program's total is bounded. */
static void gen_many_big_models(gbuf *b)
{
    for (int i = 0; i < 10000; i++) gprintf(b, "model m%d {\n    input x: [3]\n    repeat 99990 { ReLU() }\n}\n", i);
}

/* Cheap statements in many models: the program-wide statement budget. */
static void gen_program_budget(gbuf *b)
{
    for (int i = 0; i < 100; i++)
        gprintf(b, "model m%d {\n    input x: [3]\n    repeat 99990 { h = x }\n    output h\n}\n", i);
}

/* Few statements that each make many nodes and variables: the compiler's
 * memory bound (2.7 GB without it). */
static void gen_batchnorm_repeat(gbuf *b)
{
    gputs(b, "model m {\n    input x: [3]\n    repeat 99990 { BatchNormalization() }\n}\n");
}

typedef struct generated {
    const char *name;
    void (*gen)(gbuf *);
    const char *expect;    /* NULL: any error */
} generated;

static const generated cases[] = {
    {"deep_parens", gen_deep_parens, "nested too deeply"},
    {"deep_brackets", gen_deep_brackets, "nested too deeply"},
    {"deep_braces", gen_deep_braces, "nested too deeply"},
    {"deep_calls", gen_deep_calls, "nested too deeply"},
    {"deep_unary", gen_deep_unary, NULL},
    {"long_sum", gen_long_sum, NULL},
    {"long_undefined_name", gen_long_undefined_name, NULL},
    {"long_layer_name", gen_long_layer_name, "unknown layer"},
    {"long_names_everywhere", gen_long_names_everywhere, NULL},
    {"10mb_comments", gen_10mb_comments, "has no input"},
    {"10mb_statements", gen_10mb_statements, "model too large"},
    {"10mb_line", gen_10mb_line, NULL},
    {"10mb_string", gen_10mb_string, NULL},
    {"10mb_number", gen_10mb_number, "too large"},
    {"binary_junk", gen_binary_junk, NULL},
    {"nul_bytes", gen_nul_bytes, NULL},
    {"nul_in_string", gen_nul_in_string, "NUL byte in string"},
    {"only_nuls", gen_only_nuls, NULL},
    {"invalid_utf8", gen_invalid_utf8, NULL},
    {"many_errors", gen_many_errors, "too many errors"},
    {"many_unknown_layers", gen_many_unknown_layers, "too many errors"},
    {"block_chain_5000", gen_block_chain, "nested more than"},
    {"layer_chain_5000", gen_layer_chain, "nested more than"},
    {"model_chain_5000", gen_model_chain, "nested more than"},
    {"cycle_of_1000_blocks", gen_long_cycle, NULL},
    {"million_repeat", gen_million_repeat, "model too large"},
    {"concat_doubling", gen_concat_doubling, "model too large"},
    {"100k_items", gen_many_items, "unknown layer or function 'nope'"},
    {"100k_inputs", gen_many_inputs, NULL},
    {"10k_train_keys", gen_many_train_keys, NULL},
    {"10k_big_models", gen_many_big_models, "too large"},
    {"program_budget", gen_program_budget, "program too large: more than 400000 statements"},
    {"batchnorm_repeat", gen_batchnorm_repeat, "compiling it needs more than 512 MiB of memory"},
};

START_TEST(generated_program_fails_cleanly)
{
    const generated *c = &cases[_i];
    gbuf b = {0};
    c->gen(&b);
    char path[4300];
    snprintf(path, sizeof path, "%s/%s.kdsl", tu_tmpdir("hostile-gen"), c->name);
    ck_assert_int_eq(tu_write(path, b.p, b.len), 0);
    free(b.p);
    expect_clean_error(c->name, path, c->expect);
    unlink(path);
}
END_TEST

/* Not programs at all: a file over the 64 MiB source limit (sparse, so it
 * costs no disk), an endless device, a directory, a missing file. */
START_TEST(unreadable_sources_fail_cleanly)
{
    const char *dir = tu_tmpdir("hostile-files");
    char big[4300];
    snprintf(big, sizeof big, "%s/big.kdsl", dir);
    int fd = open(big, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)65 << 20), 0);
    close(fd);
    expect_clean_error("65 MiB file", big, "larger than 64 MiB");
    unlink(big);
    expect_clean_error("/dev/zero", "/dev/zero", "not a regular file");
    expect_clean_error("a directory", dir, "cannot read");
    char missing[4300];
    snprintf(missing, sizeof missing, "%s/missing.kdsl", dir);
    expect_clean_error("a missing file", missing, "cannot read");
}
END_TEST

/* What looks hostile but is fine must still compile: the same block applied
 * to its own result is two calls in a row, not recursion. */
START_TEST(nested_calls_of_one_block_are_not_recursion)
{
    static const char text[] =
        "block twice(x) {\n    output Dense(x, 2)\n}\n"
        "block four(x) {\n    output twice(twice(x))\n}\n"
        "model m {\n    input x: [2]\n    h = four(four(x))\n    output twice(twice(h))\n}\n";
    kd_session s = {0};
    s.diags.out = stderr;
    ck_assert_int_eq(kd_front_end_text(&s, "nested.kdsl", text, sizeof text - 1, NULL), 0);
    ck_assert_int_eq(s.model->trainable_params, 6 * 6);   /* six Dense(2) on [2] */
    kd_session_free(&s);
}
END_TEST

/* ---- the compile-time memory bound -------------------------------------------------------------- */

/* Front end on text with KDSL_MAX_BYTES set to env (NULL: unset); returns
 * the status and the messages (malloc'd). */
static int front_end_with_limit(const char *env, const char *text, char **msgs)
{
    const char *old = getenv("KDSL_MAX_BYTES");
    char *saved = old ? strdup(old) : NULL;
    if (env) setenv("KDSL_MAX_BYTES", env, 1);
    else unsetenv("KDSL_MAX_BYTES");
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    kd_session s = {0};
    s.diags.out = out;
    int rc = kd_front_end_text(&s, "mem.kdsl", text, strlen(text), NULL);
    kd_session_free(&s);
    fclose(out);
    if (saved) setenv("KDSL_MAX_BYTES", saved, 1);
    else unsetenv("KDSL_MAX_BYTES");
    free(saved);
    *msgs = buf;
    return rc;
}

START_TEST(memory_limit_is_configurable)
{
    /* [1000] -> Dense(1000): the kernel is 4 MB, an activation at batch 64 256 KB. */
    static const char text[] = "model m {\n    input x: [1000]\n    Dense(1000)\n}\n"
                               "train m {\n    loss: MeanSquaredError()\n    optimizer: SGD()\n    batch_size: 64\n}\n";
    char *msgs;
    ck_assert_int_eq(front_end_with_limit(NULL, text, &msgs), 0);
    free(msgs);
    ck_assert_int_eq(front_end_with_limit("8M", text, &msgs), 0);
    free(msgs);
    ck_assert_int_eq(front_end_with_limit("1M", text, &msgs), 1);
    ck_assert_msg(strstr(msgs, "mem.kdsl:3:5: error: model too large: a tensor of shape (1000, 1000) needs 3.81 MiB "
                               "(float32), more than the memory limit of 1 MiB (KDSL_MAX_BYTES)"), "%s", msgs);
    free(msgs);
    ck_assert_int_eq(front_end_with_limit("4002000", text, &msgs), 1);   /* the kernel fits, not with the bias */
    ck_assert_msg(strstr(msgs, "its 2 variables need 3.82 MiB"), "%s", msgs);
    free(msgs);
    ck_assert_int_eq(front_end_with_limit("200KiB", text, &msgs), 1);
    ck_assert_msg(strstr(msgs, "more than the memory limit of 200 KiB"), "%s", msgs);
    free(msgs);
    ck_assert_int_eq(front_end_with_limit("16G", text, &msgs), 0);
    free(msgs);
    for (int i = 0; i < 4; i++) {
        static const char *const bad[] = {"lots", "-5", "0", "1e30"};
        ck_assert_int_eq(front_end_with_limit(bad[i], text, &msgs), 1);
        ck_assert_msg(strstr(msgs, "KDSL_MAX_BYTES is not a size"), "%s: %s", bad[i], msgs);
        free(msgs);
    }
}
END_TEST

START_TEST(memory_limit_counts_the_batch)
{
    static const char fmt[] = "model m {\n    input x: [1000]\n    output y = relu(x)\n}\n"
                              "train m {\n    loss: MeanSquaredError()\n    optimizer: SGD()\n    batch_size: %d\n}\n";
    char text[512], *msgs;
    snprintf(text, sizeof text, fmt, 256);     /* 1000 * 256 * 4 = 1,024,000 bytes */
    ck_assert_int_eq(front_end_with_limit("1000000", text, &msgs), 1);
    ck_assert_msg(strstr(msgs, "needs 1000 KiB at batch 256"), "%s", msgs);
    free(msgs);
    snprintf(text, sizeof text, fmt, 250);     /* exactly 1,000,000 bytes: fits */
    ck_assert_int_eq(front_end_with_limit("1000000", text, &msgs), 0);
    free(msgs);
}
END_TEST

/* kdslc compile --batch and kdslc train --batch-size check the limit at the
 * batch asked for, not the train block's. */
START_TEST(memory_limit_at_the_flag_batch)
{
    static const char text[] = "model m {\n    input x: [1000]\n    output y = relu(x)\n}\n"
                               "train m {\n    loss: MeanSquaredError()\n    optimizer: SGD()\n    batch_size: 250\n}\n";
    const char *dir = tu_tmpdir("memory-batch");
    char src[4200], cmd[9000], *out;
    snprintf(src, sizeof src, "%s/mem.kdsl", dir);
    ck_assert_int_eq(tu_write(src, text, sizeof text - 1), 0);
    static const char *const runs[][2] = {
        {"compile", "--batch 300 -o %s/m.c"},
        {"compile", "--batch 300 --inference-only -o %s/m.c"},
        {"train", "--batch-size 300 --epochs 1 --data %s/none.npy,%s/none.npy"},
    };
    for (int k = 0; k < 3; k++) {
        char flags[4300];
        snprintf(flags, sizeof flags, runs[k][1], dir, dir);
        snprintf(cmd, sizeof cmd, "KDSL_MAX_BYTES=1000000 '%s' %s '%s' %s", tu_kdslc(), runs[k][0], src, flags);
        ck_assert_int_eq(tu_run(cmd, &out), 1);
        ck_assert_msg(strstr(out, "mem.kdsl:2:5: error: model too large: a tensor of shape (None, 1000) needs 1.14 MiB at "
                                  "batch 300 (float32), more than the memory limit of 977 KiB (KDSL_MAX_BYTES)"),
                      "%s: %s", cmd, out);
        char mc[4300];
        snprintf(mc, sizeof mc, "%s/m.c", dir);
        ck_assert_msg(access(mc, F_OK) != 0, "%s: wrote %s", cmd, mc);
        free(out);
    }
    /* the train block's batch fits, and so does a smaller --batch */
    snprintf(cmd, sizeof cmd, "KDSL_MAX_BYTES=1000000 '%s' compile '%s' --batch 100 -o %s/ok.c", tu_kdslc(), src, dir);
    ck_assert_int_eq(tu_run(cmd, &out), 0);
    free(out);
    snprintf(cmd, sizeof cmd, "KDSL_MAX_BYTES=1000000 '%s' compile '%s' -o %s/ok.c", tu_kdslc(), src, dir);
    ck_assert_int_eq(tu_run(cmd, &out), 0);
    free(out);
}
END_TEST

/* ---- readers ---------------------------------------------------------------------------------------- */

#define ck_assert_err(err, text) \
    ck_assert_msg(strstr((err).msg, (text)) != NULL, "want \"%s\" in \"%s\"", (text), (err).msg)

static unsigned char *gzip_bytes(const void *data, size_t len, size_t *out_len)
{
    z_stream z = {0};
    ck_assert_int_eq(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&z, len) + 64;
    unsigned char *out = malloc(cap);
    z.next_in = (unsigned char *)data;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    ck_assert_int_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
    *out_len = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

START_TEST(idx_from_memory)
{
    /* u8 [2, 3]; then as f32 with a NaN and an infinity. */
    unsigned char plain[] = {0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 255};
    kdh_tensor t;
    kdh_error err;
    ck_assert_int_eq(kdh_idx_read_mem(plain, sizeof plain, "m-idx2-ubyte", NULL, &t, &err), 0);
    ck_assert_int_eq(t.dtype, KDH_U8);
    ck_assert_int_eq(t.rank, 2);
    ck_assert_int_eq(t.shape[1], 3);
    ck_assert_uint_eq(((unsigned char *)t.data)[5], 255);
    kdh_tensor_free(&t);

    size_t gzlen;
    unsigned char *gz = gzip_bytes(plain, sizeof plain, &gzlen);
    ck_assert_int_eq(kdh_idx_read_mem(gz, gzlen, "m.gz", NULL, &t, &err), 0);
    ck_assert_uint_eq(t.nbytes, 6);
    kdh_tensor_free(&t);
    /* Every truncation of either fails with a message and leaves nothing. */
    for (size_t cut = 0; cut < sizeof plain; cut++) {
        err.msg[0] = 0;
        ck_assert_int_eq(kdh_idx_read_mem(plain, cut, "cut", NULL, &t, &err), -1);
        ck_assert_msg(err.msg[0] && !t.data, "cut at %zu", cut);
    }
    for (size_t cut = 0; cut < gzlen; cut++) {
        err.msg[0] = 0;
        ck_assert_int_eq(kdh_idx_read_mem(gz, cut, "cut.gz", NULL, &t, &err), -1);
        ck_assert_msg(err.msg[0] && !t.data, "gzip cut at %zu", cut);
    }
    free(gz);
    /* Dimensions whose product overflows 64 bits, and one past the limit. */
    unsigned char huge[] = {0, 0, 0x0E, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    ck_assert_int_eq(kdh_idx_read_mem(huge, sizeof huge, "huge", NULL, &t, &err), -1);
    ck_assert_err(err, "need more than the limit");
    kdh_read_opts small = {.max_bytes = 4};
    ck_assert_int_eq(kdh_idx_read_mem(plain, sizeof plain, "small", &small, &t, &err), -1);
    ck_assert_err(err, "more than the limit of 4 bytes");
    /* Shapes that disagree with the data: one byte short, one byte extra. */
    ck_assert_int_eq(kdh_idx_read_mem(plain, sizeof plain - 1, "short", NULL, &t, &err), -1);
    ck_assert_err(err, "need 6 data bytes but the file has 5");
    unsigned char extra[sizeof plain + 1];
    memcpy(extra, plain, sizeof plain);
    extra[sizeof plain] = 7;
    ck_assert_int_eq(kdh_idx_read_mem(extra, sizeof extra, "extra", NULL, &t, &err), -1);
    ck_assert_err(err, "need 6 data bytes but the file has 7");
    /* NaN and infinity read as data; the finiteness check names them. */
    unsigned char f[] = {0, 0, 0x0D, 1, 0, 0, 0, 3, 0x3f, 0x80, 0, 0, 0x7f, 0xc0, 0, 0, 0xff, 0x80, 0, 0};
    ck_assert_int_eq(kdh_idx_read_mem(f, sizeof f, "f.idx", NULL, &t, &err), 0);
    ck_assert_float_eq(((float *)t.data)[0], 1.0f);
    ck_assert(isnan(((float *)t.data)[1]));
    ck_assert_int_eq(kdh_check_finite(&t, "f.idx", &err), -1);
    ck_assert_str_eq(err.msg, "f.idx: element 1 (index [1]) is NaN");
    ((float *)t.data)[1] = 0;
    ck_assert_int_eq(kdh_check_finite(&t, "f.idx", &err), -1);
    ck_assert_str_eq(err.msg, "f.idx: element 2 (index [2]) is -inf");
    kdh_tensor_free(&t);
}
END_TEST

/* A safetensors file: header `json` padded to 8, then data. */
static unsigned char *st_file(const char *json, const void *data, size_t dlen, size_t *len)
{
    size_t h = strlen(json), hp = (h + 7) / 8 * 8;
    unsigned char *b = malloc(8 + hp + dlen + 1);
    uint64_t hl = hp;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hl >> (8 * i));
    memcpy(b + 8, json, h);
    memset(b + 8 + h, ' ', hp - h);
    if (dlen) memcpy(b + 8 + hp, data, dlen);
    *len = 8 + hp + dlen;
    return b;
}

START_TEST(safetensors_truncations_and_wrapping_lengths)
{
    float v[6] = {1, 2, 3, 4, 5, 6};
    size_t len;
    unsigned char *b = st_file("{\"__metadata__\":{\"format\":\"pt\"},"
                               "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}", v, sizeof v, &len);
    kdh_tensor_list l;
    kdh_error err;
    ck_assert_int_eq(kdh_safetensors_read_mem(b, len, "w.safetensors", NULL, &l, &err), 0);
    ck_assert_uint_eq(l.count, 2);
    kdh_list_free(&l);
    for (size_t cut = 0; cut < len; cut++) {
        err.msg[0] = 0;
        ck_assert_int_eq(kdh_safetensors_read_mem(b, cut, "w.safetensors", NULL, &l, &err), -1);
        ck_assert_msg(err.msg[0] && l.count == 0 && !l.items, "cut at %zu of %zu", cut, len);
    }
    /* A header length that wraps 8 + length around 2^64. */
    for (int k = 0; k < 3; k++) {
        static const uint64_t lengths[] = {UINT64_MAX - 7, UINT64_MAX - 6, (uint64_t)1 << 63};
        for (int i = 0; i < 8; i++) b[i] = (unsigned char)(lengths[k] >> (8 * i));
        ck_assert_int_eq(kdh_safetensors_read_mem(b, len, "w.safetensors", NULL, &l, &err), -1);
        ck_assert_err(err, "exceeds the file size");
    }
    free(b);
    /* Data offsets near 2^64, and offsets whose difference fits but whose end wraps. */
    b = st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[18446744073709551612,18446744073709551616]}}",
                v, 4, &len);
    ck_assert_int_eq(kdh_safetensors_read_mem(b, len, "w.safetensors", NULL, &l, &err), -1);
    free(b);
    /* NaN and infinity read as data; the finiteness check names the tensor. */
    float bad[3] = {0, NAN, -INFINITY};
    b = st_file("{\"dense/bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", bad, sizeof bad, &len);
    ck_assert_int_eq(kdh_safetensors_read_mem(b, len, "w.safetensors", NULL, &l, &err), 0);
    ck_assert_int_eq(kdh_check_finite(&l.items[0], "w.safetensors", &err), -1);
    ck_assert_str_eq(err.msg, "w.safetensors: tensor \"dense/bias\": element 1 (index [1]) is NaN");
    kdh_list_free(&l);
    free(b);
}
END_TEST

/* A .npy file, version 1.0, with the given header text. */
static unsigned char *npy_file(const char *header, const void *data, size_t dlen, size_t *len)
{
    size_t h = strlen(header), total = 10 + h + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hl = h + pad + 1;
    unsigned char *b = malloc(10 + hl + dlen + 1);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (unsigned char)(hl & 0xff);
    b[9] = (unsigned char)(hl >> 8);
    memcpy(b + 10, header, h);
    memset(b + 10 + h, ' ', pad);
    b[10 + h + pad] = '\n';
    if (dlen) memcpy(b + 10 + hl, data, dlen);
    *len = 10 + hl + dlen;
    return b;
}

START_TEST(npy_nonfinite_and_wrapping_lengths)
{
    double d[4] = {1, INFINITY, NAN, 2};
    size_t len;
    unsigned char *b = npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", d, sizeof d, &len);
    kdh_tensor t;
    kdh_error err;
    ck_assert_int_eq(kdh_npy_read_mem(b, len, "x.npy", NULL, &t, &err), 0);
    ck_assert_int_eq(kdh_check_finite(&t, "x.npy", &err), -1);
    ck_assert_str_eq(err.msg, "x.npy: element 1 (index [0, 1]) is +inf");
    kdh_tensor_free(&t);
    free(b);
    /* Version 2.0 with a 4 GiB header length. */
    unsigned char v2[] = "\x93NUMPY\x02\x00\xff\xff\xff\xff{'descr': '<f4'}";
    ck_assert_int_eq(kdh_npy_read_mem(v2, sizeof v2 - 1, "x.npy", NULL, &t, &err), -1);
    ck_assert_msg(err.msg[0] && !t.data, "%s", err.msg);
    /* A shape whose byte size wraps around 2^64 to a small number. */
    b = npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952, 2), }", d, 32, &len);
    ck_assert_int_eq(kdh_npy_read_mem(b, len, "x.npy", NULL, &t, &err), -1);
    ck_assert_err(err, "overflows");
    free(b);
    /* Every truncation of a file with a long header. */
    b = npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 4), }", d, sizeof d, &len);
    for (size_t cut = 0; cut < len; cut++) {
        err.msg[0] = 0;
        ck_assert_int_eq(kdh_npy_read_mem(b, cut, "x.npy", NULL, &t, &err), -1);
        ck_assert_msg(err.msg[0] && !t.data, "cut at %zu", cut);
    }
    free(b);
}
END_TEST

START_TEST(csv_binary_and_nul)
{
    kdh_tensor t;
    kdh_error err;
    static const char nul[] = "a,b\n1,2\0junk\n";
    ck_assert_int_eq(kdh_csv_parse(nul, sizeof nul - 1, "d.csv", &t, NULL, &err), -1);
    ck_assert_str_eq(err.msg, "d.csv: line 2, column 2: NUL byte in a field (binary data?)");
    ck_assert_ptr_null(t.data);
    static const char hdr[] = "a\0x,b\n1,2\n";
    ck_assert_int_eq(kdh_csv_parse(hdr, sizeof hdr - 1, "d.csv", &t, NULL, &err), -1);
    ck_assert_err(err, "line 1, column 1: NUL byte");
    /* A gzip file given as CSV. */
    size_t gzlen;
    unsigned char *gz = gzip_bytes("1,2\n3,4\n", 8, &gzlen);
    ck_assert_int_eq(kdh_csv_parse((const char *)gz, gzlen, "d.csv", &t, NULL, &err), -1);
    ck_assert_msg(err.msg[0] != 0, "no message");
    free(gz);
    /* Huge numbers and a 1 MB field. */
    static const char big[] = "1,1e400\n";
    ck_assert_int_eq(kdh_csv_parse(big, sizeof big - 1, "d.csv", &t, NULL, &err), -1);
    ck_assert_err(err, "line 1, column 2");
    size_t n = 1 << 20;
    char *wide = malloc(n + 8);
    memset(wide, '9', n);
    memcpy(wide + n, ",1\n", 3);
    ck_assert_int_eq(kdh_csv_parse(wide, n + 3, "d.csv", &t, NULL, &err), -1);
    ck_assert_err(err, "out of float32 range");
    free(wide);
}
END_TEST

static Suite *hostile_suite(void)
{
    Suite *s = suite_create("hostile");
    TCase *tc = tcase_create("compiler");
    tcase_set_timeout(tc, 2 * WALL_SECONDS);
    list_hostile();
    tcase_add_loop_test(tc, hostile_program_fails_cleanly, 0, nhostile);
    tcase_add_loop_test(tc, generated_program_fails_cleanly, 0, (int)(sizeof cases / sizeof cases[0]));
    tcase_add_test(tc, unreadable_sources_fail_cleanly);
    tcase_add_test(tc, nested_calls_of_one_block_are_not_recursion);
    suite_add_tcase(s, tc);
    tc = tcase_create("memory bound");
    tcase_add_test(tc, memory_limit_is_configurable);
    tcase_add_test(tc, memory_limit_counts_the_batch);
    tcase_add_test(tc, memory_limit_at_the_flag_batch);
    suite_add_tcase(s, tc);
    tc = tcase_create("readers");
    tcase_add_test(tc, idx_from_memory);
    tcase_add_test(tc, safetensors_truncations_and_wrapping_lengths);
    tcase_add_test(tc, npy_nonfinite_and_wrapping_lengths);
    tcase_add_test(tc, csv_binary_and_nul);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(hostile_suite()); }
