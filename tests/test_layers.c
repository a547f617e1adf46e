/* test_layers.c — the floor plan holds: a source file includes headers of its
 * own layer or of those below it, never above (docs/internals.md):
 *
 *   base → runtime → runtime/host → grammar → compiler → codegen → interop → driver
 *
 * A quoted include resolves as the compiler resolves it: beside the file,
 * then in the build's include directories in meson.build's order. Headers
 * the build generates (grammar's lexer.h and parser.h) are not in the
 * source tree and are skipped. */
#include "testutil.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Paths here are short; a truncated one would only fail to open. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

static const char *const layers[] = {"base", "runtime", "runtime/host", "grammar", "compiler", "codegen", "interop", "driver"};
#define NLAYERS ((int)(sizeof layers / sizeof *layers))
/* meson.build's include_directories, in order. */
static const char *const include_dirs[] = {".", "base", "compiler", "grammar", "runtime", "codegen", "interop", "driver"};

/* The layer of a path relative to the root: the longest matching folder prefix, or -1. */
static int layer_of(const char *rel)
{
    int best = -1;
    size_t best_len = 0;
    for (int i = 0; i < NLAYERS; i++) {
        size_t n = strlen(layers[i]);
        if (!strncmp(rel, layers[i], n) && rel[n] == '/' && n > best_len) best = i, best_len = n;
    }
    return best;
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Collapses "a/b/../c" to "a/c" in place. */
static void normalize(char *p)
{
    char *parts[64];
    int n = 0;
    for (char *tok = strtok(p, "/"); tok && n < 64; tok = strtok(NULL, "/")) {
        if (!strcmp(tok, ".")) continue;
        if (!strcmp(tok, "..") && n > 0) n--;
        else parts[n++] = tok;
    }
    char out[4096] = "";
    for (int i = 0; i < n; i++) {
        if (i) strcat(out, "/");
        strncat(out, parts[i], sizeof out - strlen(out) - 2);
    }
    strcpy(p, out);
}

typedef struct report {
    char text[8192];
    int violations, includes;
} report;

static void check_file(const char *root, const char *rel, report *r)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    int mine = layer_of(rel);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", rel);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else strcpy(dir, ".");
    char line[1024];
    for (int lineno = 1; fgets(line, sizeof line, f); lineno++) {
        const char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (*s != '#') continue;
        s++;
        while (*s == ' ' || *s == '\t') s++;
        if (strncmp(s, "include", 7)) continue;
        s += 7;
        while (*s == ' ' || *s == '\t') s++;
        if (*s != '"') continue;
        const char *end = strchr(s + 1, '"');
        if (!end) continue;
        char name[1024];
        snprintf(name, sizeof name, "%.*s", (int)(end - s - 1), s + 1);
        char found[4096] = "";
        char cand[8192];
        snprintf(cand, sizeof cand, "%s/%s/%s", root, dir, name);
        if (is_file(cand)) snprintf(found, sizeof found, "%s/%s", dir, name);
        for (size_t i = 0; !found[0] && i < sizeof include_dirs / sizeof *include_dirs; i++) {
            snprintf(cand, sizeof cand, "%s/%s/%s", root, include_dirs[i], name);
            if (is_file(cand)) snprintf(found, sizeof found, "%s/%s", include_dirs[i], name);
        }
        if (!found[0]) continue;            /* generated in the build tree */
        normalize(found);
        r->includes++;
        int theirs = layer_of(found);
        if (theirs > mine) {
            r->violations++;
            size_t len = strlen(r->text);
            snprintf(r->text + len, sizeof r->text - len, "%s:%d: includes %s (%s is above %s)\n", rel, lineno, found,
                     layers[theirs], mine >= 0 ? layers[mine] : "?");
        }
    }
    fclose(f);
}

static bool source_name(const char *n)
{
    size_t len = strlen(n);
    return len > 2 && (!strcmp(n + len - 2, ".c") || !strcmp(n + len - 2, ".h") || !strcmp(n + len - 2, ".l") ||
                       !strcmp(n + len - 2, ".y"));
}

static void check_dir(const char *root, const char *rel, report *r)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", rel, e->d_name);
        char full[8192];
        snprintf(full, sizeof full, "%s/%s", root, sub);
        struct stat st;
        if (stat(full, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            /* a nested layer is walked on its own */
            bool is_layer = false;
            for (int i = 0; i < NLAYERS; i++) is_layer |= !strcmp(sub, layers[i]);
            if (!is_layer) check_dir(root, sub, r);
        } else if (source_name(e->d_name)) {
            check_file(root, sub, r);
        }
    }
    closedir(d);
}

static report check_tree(const char *root)
{
    report r = {0};
    for (int i = 0; i < NLAYERS; i++) check_dir(root, layers[i], &r);
    return r;
}

START_TEST(source_tree_points_down)
{
    report r = check_tree(tu_src(""));
    ck_assert_msg(r.violations == 0, "%d include(s) point up:\n%s", r.violations, r.text);
    ck_assert_int_gt(r.includes, 150);     /* the walk did find the sources */
}
END_TEST

static void put(const char *root, const char *rel, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    char *slash = strrchr(path, '/');
    *slash = 0;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    ck_assert_int_eq(system(cmd), 0);
    *slash = '/';
    ck_assert_int_eq(tu_write(path, text, strlen(text)), 0);
}

/* The check itself: a tree with two includes that point up and two that do not. */
START_TEST(upward_include_is_found)
{
    const char *root = tu_tmpdir("layers");
    put(root, "base/kdsl.h", "#include \"codegen.h\"\n");              /* base -> codegen: up */
    put(root, "codegen/codegen.h", "#include \"ir.h\"\n#include \"kdsl.h\"\n");  /* down, down */
    put(root, "compiler/ir.h", "  #  include \"../driver/run.h\"\n");  /* compiler -> driver: up */
    put(root, "driver/run.h", "#include <stdio.h>\n#include \"host/train.h\"\n");
    put(root, "runtime/host/train.h", "#include \"kernels.h\"\n#include \"lexer.h\"\n");
    put(root, "runtime/kernels.h", "\n");
    report r = check_tree(root);
    ck_assert_msg(r.violations == 2, "%d violations:\n%s", r.violations, r.text);
    ck_assert_msg(strstr(r.text, "base/kdsl.h:1: includes codegen/codegen.h (codegen is above base)"), "%s", r.text);
    ck_assert_msg(strstr(r.text, "compiler/ir.h:1: includes driver/run.h (driver is above compiler)"), "%s", r.text);
    ck_assert_int_eq(r.includes, 6);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("layers");
    TCase *t = tcase_create("layers");
    tcase_add_test(t, source_tree_points_down);
    tcase_add_test(t, upward_include_is_found);
    suite_add_tcase(s, t);
    return tu_run_suite(s);
}
