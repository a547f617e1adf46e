/* testutil.h — helpers shared by the Check suites. */
#ifndef KDSL_TESTUTIL_H
#define KDSL_TESTUTIL_H

#include <check.h>
#include <stddef.h>

/* Paths from the environment meson sets (KDSL_SOURCE_ROOT, KDSL_BUILD_ROOT, KDSLC). */
const char *tu_source_root(void);
const char *tu_build_root(void);
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

/* Runs a suite, printing Check's summary line, returns the process exit status. */
int tu_run_suite(Suite *s);

#endif
