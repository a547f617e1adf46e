/* test_golden.c — golden files: every sample's summary (samples/NAME.summary,
 * or samples/NAME@MODEL.summary for --model MODEL) and every wrong program's
 * diagnostics (tests/errors/NAME.kdsl -> NAME.err, exit status 1).
 * Regenerate them for review with `ninja -C build regen-golden`. */
#include "testutil.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_FILES = 256 };

static char *summaries[MAX_FILES], *errors[MAX_FILES];
static int nsummaries, nerrors;

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int list(const char *dir, const char *suffix, char **out)
{
    DIR *d = opendir(tu_src(dir));
    int n = 0;
    if (!d) return 0;
    struct dirent *e;
    size_t sl = strlen(suffix);
    while ((e = readdir(d)) && n < MAX_FILES) {
        size_t l = strlen(e->d_name);
        if (l > sl && strcmp(e->d_name + l - sl, suffix) == 0) out[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(out, (size_t)n, sizeof *out, cmp);
    return n;
}

/* Shows the first differing line, so a failure says what changed. */
static void assert_same(const char *what, const char *want, const char *got)
{
    if (strcmp(want, got) == 0) return;
    int line = 1;
    const char *w = want, *g = got;
    while (*w && *w == *g) {
        if (*w == '\n') line++;
        w++, g++;
    }
    const char *wl = w, *gl = g;
    while (wl > want && wl[-1] != '\n') wl--;
    while (gl > got && gl[-1] != '\n') gl--;
    ck_abort_msg("%s differs at line %d:\n  want: %.120s\n  got:  %.120s", what, line, wl, gl);
}

START_TEST(summary_matches_golden)
{
    const char *golden = summaries[_i];
    char base[512], model[256] = "";
    snprintf(base, sizeof base, "%.*s", (int)(strlen(golden) - strlen(".summary")), golden);
    char *at = strchr(base, '@');
    if (at) {
        snprintf(model, sizeof model, "--model %s", at + 1);
        *at = 0;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' summary samples/%s.kdsl %s 2>/dev/null", tu_source_root(), tu_kdslc(), base,
             model);
    char *out = NULL;
    int rc = tu_run(cmd, &out);
    char path[600];
    snprintf(path, sizeof path, "samples/%s", golden);
    char *want = tu_read(tu_src(path), NULL);
    ck_assert_msg(want != NULL, "cannot read %s", path);
    ck_assert_msg(rc == 0, "kdslc summary %s failed (%d):\n%s", base, rc, out);
    assert_same(golden, want, out);
    free(out);
    free(want);
}
END_TEST

START_TEST(errors_match_golden)
{
    const char *src = errors[_i];
    char base[512];
    snprintf(base, sizeof base, "%.*s", (int)(strlen(src) - strlen(".kdsl")), src);
    char cmd[2048], data_path[600];
    /* BASE.data: a bad data set for the model, its --data spec; the error is kdslc train's */
    snprintf(data_path, sizeof data_path, "tests/errors/%s.data", base);
    char *data = tu_read(tu_src(data_path), NULL);
    if (data) {
        data[strcspn(data, "\n")] = 0;
        snprintf(cmd, sizeof cmd, "cd '%s' && '%s' train tests/errors/%s.kdsl --data '%s' --epochs 1 2>&1 >/dev/null",
                 tu_source_root(), tu_kdslc(), base, data);
        free(data);
    } else {
        snprintf(cmd, sizeof cmd, "cd '%s' && '%s' summary tests/errors/%s.kdsl 2>&1 >/dev/null", tu_source_root(),
                 tu_kdslc(), base);
    }
    char *out = NULL;
    int rc = tu_run(cmd, &out);
    char path[600];
    snprintf(path, sizeof path, "tests/errors/%s.err", base);
    char *want = tu_read(tu_src(path), NULL);
    ck_assert_msg(want != NULL, "cannot read %s (run ninja -C build regen-golden)", path);
    ck_assert_msg(rc == 1, "%s: expected exit status 1, got %d:\n%s", src, rc, out);
    ck_assert_msg(strstr(out, ": error: ") != NULL, "%s: no error reported", src);
    assert_same(path, want, out);
    free(out);
    free(want);
}
END_TEST

/* Every sample has its golden summary: a new sample cannot slip in untested. */
START_TEST(every_sample_has_a_golden_summary)
{
    char *samples[MAX_FILES];
    int n = list("samples", ".kdsl", samples);
    ck_assert_int_ge(n, 9);
    for (int i = 0; i < n; i++) {
        size_t l = strlen(samples[i]) - strlen(".kdsl");
        bool found = false;
        for (int k = 0; k < nsummaries; k++)
            if (strncmp(summaries[k], samples[i], l) == 0 && (summaries[k][l] == '.' || summaries[k][l] == '@')) found = true;
        ck_assert_msg(found, "samples/%s has no golden summary", samples[i]);
        free(samples[i]);
    }
}
END_TEST

START_TEST(at_least_25_kinds_of_mistake)
{
    ck_assert_int_ge(nerrors, 25);
}
END_TEST

int main(void)
{
    nsummaries = list("samples", ".summary", summaries);
    nerrors = list("tests/errors", ".kdsl", errors);
    Suite *s = suite_create("golden");
    TCase *t = tcase_create("summaries");
    tcase_set_timeout(t, 600);
    tcase_add_loop_test(t, summary_matches_golden, 0, nsummaries);
    tcase_add_test(t, every_sample_has_a_golden_summary);
    suite_add_tcase(s, t);
    TCase *e = tcase_create("diagnostics");
    tcase_set_timeout(e, 600);
    tcase_add_loop_test(e, errors_match_golden, 0, nerrors);
    tcase_add_test(e, at_least_25_kinds_of_mistake);
    suite_add_tcase(s, e);
    return tu_run_suite(s);
}
