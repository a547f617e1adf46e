/* testutil.h — helpers shared by the Check suites. */
#ifndef KDSL_TESTUTIL_H
#define KDSL_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Check's ck_assert_msg (which every ck_assert_* expands to) marks each
 * passing assertion with a write to the parent process (_mark_point), so a
 * test asserting every element of a tensor made a million system calls.
 * Here a passing assertion marks nothing: a crash is reported at the test's
 * last mark_point() (the sanitizers print its stack), a failure as before. */
#undef ck_assert_msg
#define ck_assert_msg(expr, ...) \
    ((expr) ? (void)0 : _ck_assert_failed(__FILE__, __LINE__, "Assertion '" #expr "' failed", ##__VA_ARGS__))

/* Paths from the environment meson sets (KDSL_SOURCE_ROOT, KDSL_BUILD_ROOT, KDSLC). */
const char *tu_source_root(void);
const char *tu_build_root(void);
/* kdslc, or its test build on the C backend with KDSL_TEST_BACKEND=cc. */
const char *tu_kdslc(void);
/* A path under the source root, in a static rotating buffer. */
const char *tu_src(const char *rel);

/* Reads a whole file (malloc'd, NUL-terminated); NULL if it cannot be read. */
char *tu_read(const char *path, size_t *len);
/* Writes a file; returns 0 on success. */
int tu_write(const char *path, const void *data, size_t len);
/* A fresh directory under the build root's tmp/ for this test. */
const char *tu_tmpdir(const char *tag);

/* Runs a shell command; captures stdout+stderr (malloc'd) and returns the exit status. */
int tu_run(const char *cmd, char **output);
/* Runs a shell command that must succeed: on failure prints the command and all
 * of its output to stderr and fails the test with the output's tail (Check's
 * messages are bounded, so a long compiler log must not go into one whole). */
void tu_sh(const char *cmd);

/* dir/file in a static rotating buffer (16 deep; dir may be an earlier result). */
char *tu_path(const char *dir, const char *file);
/* Runs `kdslc ARGS` through the shell (ARGS from fmt); returns the exit
 * status, stdout+stderr in *out (malloc'd) or discarded when out is NULL. */
int tu_kdslc_run(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A float32 .npy file (the test fails on any other, or a read error); kdh_tensor_free it. */
struct kdh_tensor;
struct kdh_tensor tu_read_npy_f32(const char *path);

#define ck_assert_has(text, words) \
    ck_assert_msg(strstr((text), (words)) != NULL, "output lacks \"%s\":\n%s", (words), (text))
#define ck_assert_lacks(text, words) \
    ck_assert_msg(strstr((text), (words)) == NULL, "output has \"%s\":\n%s", (words), (text))

/* kdslc ARGS must exit with `code`, saying `words`, and no sanitizer report. */
#define ck_assert_fails(code, words, ...)                                                            \
    do {                                                                                             \
        char *out_;                                                                                  \
        int rc_ = tu_kdslc_run(&out_, __VA_ARGS__);                                                  \
        ck_assert_msg(rc_ == (code), "exit %d, expected %d:\n%s", rc_, (code), out_);                \
        ck_assert_has(out_, words);                                                                  \
        ck_assert_msg(strstr(out_, "Sanitizer") == NULL && strstr(out_, "runtime error") == NULL,    \
                      "sanitizer report:\n%s", out_);                                                \
        free(out_);                                                                                  \
    } while (0)

/* Runs a suite, printing Check's summary line, returns the process exit status. */
int tu_run_suite(Suite *s);

#endif
