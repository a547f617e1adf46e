/* test_fuzz_replay.c — the fuzz targets (fuzz/fuzz_*.c) without libFuzzer:
 * every input a campaign ever crashed on (fuzz/regressions/TARGET/), and for
 * the front end every sample, golden error program and hostile program,
 * replayed through the same target function, in every build (so under
 * tests/run's sanitizer pass too). A crash here is a fixed bug come back.
 * To add one: copy the crashing input from build-fuzz/fuzz-artifacts/TARGET/
 * into fuzz/regressions/TARGET/ (see docs/hardening.md). */
#define KDFUZZ_REPLAY 1
#include "../fuzz/fuzz_frontend.c"
#include "../fuzz/fuzz_safetensors.c"
#include "../fuzz/fuzz_npy.c"
#include "../fuzz/fuzz_idx.c"
#include "../fuzz/fuzz_csv.c"
#include "../fuzz/fuzz_keras.c"
#include "../fuzz/fuzz_history.c"
#include "../fuzz/fuzz_h5.c"
#include "../fuzz/fuzz_keras3.c"

#include "testutil.h"

#include <dirent.h>
#include <string.h>

typedef struct target {
    const char *name;
    int (*fn)(const uint8_t *, size_t);
    const char *dirs[4];   /* under the source root; regressions first */
} target;

static const target targets[] = {
    {"frontend", kdfuzz_frontend, {"fuzz/regressions/frontend", "samples", "tests/errors", "tests/hostile"}},
    {"safetensors", kdfuzz_safetensors, {"fuzz/regressions/safetensors"}},
    {"npy", kdfuzz_npy, {"fuzz/regressions/npy"}},
    {"idx", kdfuzz_idx, {"fuzz/regressions/idx"}},
    {"csv", kdfuzz_csv, {"fuzz/regressions/csv"}},
    {"keras", kdfuzz_keras, {"fuzz/regressions/keras", "tests/fixtures/mlperf_tiny"}},
    {"history", kdfuzz_history, {"fuzz/regressions/history"}},
    {"h5", kdfuzz_h5, {"fuzz/regressions/h5"}},
    {"keras3", kdfuzz_keras3, {"fuzz/regressions/keras3", "tests/fixtures/keras3"}},
};

/* Replays every regular file of dir (only *.kdsl outside fuzz/); returns how many. */
static int replay_dir(const target *t, const char *rel)
{
    const char *dir = tu_src(rel);
    DIR *d = opendir(dir);
    if (!d) return 0;
    bool only_kdsl = strncmp(rel, "fuzz/", 5) != 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        size_t l = strlen(e->d_name);
        /* outside fuzz/, the inputs among other files: programs, Keras files */
        if (only_kdsl && (l < 5 || strcmp(e->d_name + l - 5, ".kdsl") != 0) && (l < 3 || strcmp(e->d_name + l - 3, ".h5") != 0) &&
            (l < 6 || strcmp(e->d_name + l - 6, ".keras") != 0))
            continue;
        if (!strcmp(e->d_name, "README") || !strcmp(e->d_name, "README.md")) continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len = 0;
        char *data = tu_read(path, &len);
        if (!data) continue;   /* a directory */
        /* An exact-size copy, so that a read past the end is caught. */
        uint8_t *exact = malloc(len ? len : 1);
        ck_assert_ptr_nonnull(exact);
        memcpy(exact, data, len);
        free(data);
        fprintf(stderr, "fuzz_replay %s: %s/%s\n", t->name, rel, e->d_name);
        ck_assert_int_eq(t->fn(exact, len), 0);
        free(exact);
        n++;
    }
    closedir(d);
    return n;
}

START_TEST(replay_target)
{
    const target *t = &targets[_i];
    int n = 0;
    for (int i = 0; i < 4 && t->dirs[i]; i++) n += replay_dir(t, t->dirs[i]);
    /* An empty input, and every one-byte input: the smallest cases. */
    ck_assert_int_eq(t->fn((const uint8_t *)"", 0), 0);
    for (int c = 0; c < 256; c++) {
        uint8_t *b = malloc(1);
        b[0] = (uint8_t)c;
        ck_assert_int_eq(t->fn(b, 1), 0);
        free(b);
    }
    fprintf(stderr, "fuzz_replay %s: %d inputs\n", t->name, n);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fuzz_replay");
    TCase *tc = tcase_create("regressions");
    tcase_add_loop_test(tc, replay_target, 0, (int)(sizeof targets / sizeof targets[0]));
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
