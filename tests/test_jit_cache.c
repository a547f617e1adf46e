/* test_jit_cache.c — the JIT's cache of compiled code (codegen/jit_cache.c),
 * each test in a temporary directory of its own: a hit computes what a miss
 * and an uncached compile compute, bit for bit; a changed program (one
 * constant by one ulp) or a changed flag never takes a stale entry; a
 * truncated, damaged, foreign or misnamed entry is compiled again; writers
 * compiling one program at once leave one whole entry; an unwritable
 * directory is a warning; the size cap evicts the oldest; where the
 * directory is by default; `kdslc train` loads the cached code the
 * second time and --no-cache compiles. */
#include "codegen.h"
#include "driver.h"
#include "jit.h"
#include "jit_cache.h"
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char mlp_text[] =
    "model net {\n"
    "    input x: [12]\n"
    "    Dense(16, activation: relu)\n"
    "    Dropout(0.25)\n"
    "    output y = Dense(4)\n"
    "}\n"
    "train net {\n"
    "    loss: CategoricalCrossentropy(from_logits: true)\n"
    "    optimizer: Adam(learning_rate: 0.01)\n"
    "    batch_size: 8\n"
    "}\n";

enum { BATCH = 8, IN = 12, OUT = 4, STEPS = 3 };

/* What kdslc train compiles; init and predict alone where training is not the point (cheaper). */
#define TRAIN_FNS (1u << LP_F_INIT | 1u << LP_F_PREDICT | 1u << LP_F_TRAIN_STEP)
#define PREDICT_FNS (1u << LP_F_INIT | 1u << LP_F_PREDICT)
/* Two processes compile each program (kd_jit_options.jobs): an entry is two
 * libraries, one per process, whatever the machine's CPUs. */
enum { JOBS = 2 };

typedef struct program {
    kd_session s;
    lp_program *p;
} program;

static void program_of(program *g, const char *text)
{
    memset(g, 0, sizeof *g);
    g->s.diags.out = stderr;
    ck_assert_int_eq(kd_front_end_text(&g->s, "net.kdsl", text, strlen(text), NULL), 0);
    kd_codegen_options o = {0};
    g->p = kd_back_end(&g->s, &o);
    ck_assert_ptr_nonnull(g->p);
}

/* What the code computes: init, STEPS train steps (losses), then predict. */
typedef struct results {
    float loss[STEPS];
    float y[BATCH * OUT];
} results;

static const char *what = "";   /* the case being compiled, for the messages */

static kd_jit *compile(const lp_program *p, const kd_jit_options *o, kdh_model_fns *fns, kd_jit_cache_use want)
{
    char why[1024] = "";
    kd_jit *j = kd_jit_compile(p, o, fns, why, sizeof why);
    ck_assert_msg(j != NULL, "%s", why);
    const char *warning;
    kd_jit_cache_use got = kd_jit_cache_result(j, &warning);
    ck_assert_msg(got == want, "%s: cache use %d, expected %d (%s)", what, (int)got, (int)want, warning ? warning : "no warning");
    return j;
}

static void run(const lp_program *p, const kdh_model_fns *f, results *r)
{
    memset(r, 0, sizeof *r);
    float *params = calloc((size_t)p->params_size, sizeof(float)), *opt = calloc((size_t)p->opt_size + 1, sizeof(float));
    int64_t bytes = 64;
    for (int k = 0; k < LP_F_COUNT; k++)
        if (p->funcs[k] && p->funcs[k]->arena_bytes > bytes) bytes = p->funcs[k]->arena_bytes;
    void *arena = aligned_alloc(64, (size_t)(bytes + 63) / 64 * 64);
    ck_assert(params && opt && arena);
    float x[BATCH * IN], labels[BATCH * OUT] = {0};
    for (int i = 0; i < BATCH * IN; i++) x[i] = (float)((i * 37) % 23) / 11.0f - 1;
    for (int i = 0; i < BATCH; i++) labels[i * OUT + i % OUT] = 1;
    const float *in[1] = {x};
    f->init(params, opt, 7);
    for (int s = 0; s < STEPS && f->train_step; s++)
        r->loss[s] = f->train_step(params, opt, in, labels, BATCH, (unsigned long long)s + 1, 0.01f, arena, NULL);
    float *out[1] = {r->y};
    f->predict(params, in, out, BATCH, arena);
    for (int s = 0; s < STEPS; s++) ck_assert(isfinite(r->loss[s]));
    free(params);
    free(opt);
    free(arena);
}

/* Compiles p (expecting `want` of the cache) and runs it. */
static void compile_run(const lp_program *p, const kd_jit_options *o, kd_jit_cache_use want, results *r)
{
    kdh_model_fns f;
    kd_jit *j = compile(p, o, &f, want);
    run(p, &f, r);
    kd_jit_free(j);
}

/* The entries (*.so) in dir/jit, and the first one's path in first (may be NULL). */
static int entries(const char *dir, char *first, size_t n)
{
    char jdir[4200];
    snprintf(jdir, sizeof jdir, "%s/jit", dir);
    DIR *d = opendir(jdir);
    if (!d) return 0;
    int count = 0;
    for (struct dirent *de; (de = readdir(d));) {
        size_t len = strlen(de->d_name);
        if (len < 4 || strcmp(de->d_name + len - 3, ".so")) continue;
        ck_assert_msg(de->d_name[0] != '.', "a temporary was left behind: %s", de->d_name);
        if (count++ == 0 && first) snprintf(first, n, "%s/%s", jdir, de->d_name);
    }
    closedir(d);
    return count;
}

static void same(const results *a, const results *b, const char *what)
{
    ck_assert_msg(!memcmp(a, b, sizeof *a), "%s: the results differ", what);
}

START_TEST(hit_computes_what_a_miss_computes)
{
    const char *dir = tu_tmpdir("jc_hit");
    program g;
    program_of(&g, mlp_text);
    kd_jit_options o = {.cache_dir = dir, .functions = TRAIN_FNS, .jobs = JOBS}, uncached = {.functions = TRAIN_FNS, .jobs = JOBS};
    results off, miss, hit;
    compile_run(g.p, &uncached, KD_JIT_CACHE_OFF, &off);
    compile_run(g.p, &o, KD_JIT_CACHE_STORED, &miss);
    ck_assert_int_eq(entries(dir, NULL, 0), JOBS);
    compile_run(g.p, &o, KD_JIT_CACHE_HIT, &hit);
    same(&off, &miss, "cached against uncached");
    same(&miss, &hit, "hit against miss");
    ck_assert_int_eq(entries(dir, NULL, 0), JOBS);
    /* one process compiling it all: the same results */
    kd_jit_options alone = {.functions = TRAIN_FNS, .jobs = 1};
    compile_run(g.p, &alone, KD_JIT_CACHE_OFF, &hit);
    same(&off, &hit, "one process against two");

    /* the same program built again in another session: still a hit */
    program g2;
    program_of(&g2, mlp_text);
    compile_run(g2.p, &o, KD_JIT_CACHE_HIT, &hit);
    same(&miss, &hit, "hit from a second session");
    kd_session_free(&g2.s);
    kd_session_free(&g.s);
}
END_TEST

/* The first real constant of the program's train step, found in the loop IR. */
static lp_expr *first_real(lp_expr *e)
{
    if (!e) return NULL;
    if (e->kind == LP_E_REAL && e->rval != 0) return e;
    lp_expr *r = first_real(e->a);
    if (!r) r = first_real(e->b);
    if (!r) r = first_real(e->c);
    return r;
}

static lp_expr *real_in(const kd_vec *body)
{
    for (int i = 0; i < body->len; i++) {
        lp_stmt *s = body->items[i];
        lp_expr *r = first_real(s->value);
        if (!r) r = real_in(&s->body);
        if (r) return r;
    }
    return NULL;
}

START_TEST(changed_program_or_flag_never_reuses_an_entry)
{
    const char *dir = tu_tmpdir("jc_stale");
    program g;
    program_of(&g, mlp_text);
    kd_jit_options o = {.cache_dir = dir, .functions = TRAIN_FNS, .jobs = JOBS};
    results base, r;
    compile_run(g.p, &o, KD_JIT_CACHE_STORED, &base);

    /* the source: another dropout rate, another layer width (the learning
     * rate is an argument of train_step, not in the code: the same entry) */
    const char *variants[][2] = {{"Dropout(0.25)", "Dropout(0.3)"}, {"Dense(16", "Dense(17"}};
    for (int v = 0; v < 2; v++) {
        char *text = strdup(mlp_text), *at = strstr(text, variants[v][0]);
        ck_assert_ptr_nonnull(at);
        char *changed = malloc(strlen(text) + 8);
        snprintf(changed, strlen(text) + 8, "%.*s%s%s", (int)(at - text), text, variants[v][1], at + strlen(variants[v][0]));
        program h;
        program_of(&h, changed);
        what = variants[v][1];
        compile_run(h.p, &o, KD_JIT_CACHE_STORED, &r);
        ck_assert_msg(memcmp(r.loss, base.loss, sizeof r.loss) != 0, "variant %d computes what the original does", v);
        kd_session_free(&h.s);
        free(changed);
        free(text);
    }

    /* the loop IR itself: one constant of the train step one ulp away */
    lp_func *ts = g.p->funcs[LP_F_TRAIN_STEP];
    lp_expr *c = NULL;
    for (int k = 0; k < ts->kernels.len && !c; k++) c = real_in(&((lp_kernel *)ts->kernels.items[k])->body);
    ck_assert_ptr_nonnull(c);
    double was = c->rval;
    c->rval = nextafter(was, INFINITY);
    what = "one constant one ulp away";
    kdh_model_fns f;
    kd_jit_free(compile(g.p, &o, &f, KD_JIT_CACHE_STORED));
    c->rval = was;
    compile_run(g.p, &o, KD_JIT_CACHE_HIT, &r);
    same(&base, &r, "the original again");

    /* every flag that changes the code (an -march other than the host's) */
    const char *host = kd_host_march() ? kd_host_march() : "";
    const char *march = strcmp(host, "x86-64") ? "x86-64" : "x86-64-v2";
    kd_jit_options flags[] = {
        {.cache_dir = dir, .functions = PREDICT_FNS, .jobs = JOBS, .opt_level = 2},
        {.cache_dir = dir, .functions = PREDICT_FNS, .jobs = JOBS, .fp_contract = true},
        {.cache_dir = dir, .functions = PREDICT_FNS, .jobs = JOBS, .serial_loops = true},
        {.cache_dir = dir, .functions = PREDICT_FNS, .jobs = JOBS, .part_kernels = 1},
        {.cache_dir = dir, .functions = PREDICT_FNS, .jobs = JOBS, .march = march},
        {.cache_dir = dir, .functions = PREDICT_FNS, .jobs = JOBS, .split_small_loops = true},
        {.cache_dir = dir, .functions = PREDICT_FNS, .jobs = JOBS},
        {.cache_dir = dir, .functions = PREDICT_FNS, .jobs = 1},   /* one library: another entry */
    };
    int n = (int)(sizeof flags / sizeof flags[0]);
    char flag_case[32];
    for (int i = 0; i < n; i++) {
        snprintf(flag_case, sizeof flag_case, "flag set %d", i);
        what = flag_case;
        kd_jit *j = compile(g.p, &flags[i], &f, KD_JIT_CACHE_STORED);
        ck_assert(f.predict && !f.train_step && !f.grad);
        kd_jit_free(j);
    }
    ck_assert_int_eq(entries(dir, NULL, 0), JOBS * (1 + 2 + 1 + n - 1) + 1);
    for (int i = 0; i < n; i++) kd_jit_free(compile(g.p, &flags[i], &f, KD_JIT_CACHE_HIT));
    kd_session_free(&g.s);
}
END_TEST

/* Each kind of damage to the one entry: compiled again, right, and whole after. */
START_TEST(corrupt_entry_is_compiled_again)
{
    const char *dir = tu_tmpdir("jc_corrupt");
    program g, other;
    program_of(&g, mlp_text);
    program_of(&other, "model other {\n input x: [3]\n output y = Dense(2)\n}\n");
    kd_jit_options o = {.cache_dir = dir, .functions = PREDICT_FNS, .jobs = JOBS};
    results base, r;
    compile_run(g.p, &o, KD_JIT_CACHE_STORED, &base);
    char path[4300];   /* one of the entry's libraries */
    ck_assert_int_eq(entries(dir, path, sizeof path), JOBS);
    size_t len;
    char *good = tu_read(path, &len);
    ck_assert(good && len > 200);

    /* another program's entry, to be found under this one's name */
    char other_dir[4300], other_path[4300];
    snprintf(other_dir, sizeof other_dir, "%s/other", dir);
    kd_jit_options oo = {.cache_dir = other_dir, .jobs = JOBS};
    kdh_model_fns f;
    kd_jit_free(compile(other.p, &oo, &f, KD_JIT_CACHE_STORED));
    ck_assert_int_ge(entries(other_dir, other_path, sizeof other_path), 1);
    size_t other_len;
    char *foreign = tu_read(other_path, &other_len);

    char *bad = malloc(len);
    for (int damage = 0; damage < 6; damage++) {
        memcpy(bad, good, len);
        size_t n = len;
        const char *data = bad;
        switch (damage) {
        case 0: n = len / 2; break;                    /* truncated */
        case 1: n = len - 1; break;                    /* the trailer cut */
        case 2: bad[len / 3] ^= 0x40; break;           /* one bit of the code */
        case 3: bad[len - 50] ^= 1; break;             /* the trailer's key */
        case 4: memcpy(bad, "not an ELF file", 15); n = 15; break;
        case 5: data = foreign, n = other_len; break;  /* a whole entry, of another key */
        }
        ck_assert_int_eq(tu_write(path, data, n), 0);
        char damage_case[32];
        snprintf(damage_case, sizeof damage_case, "damage %d", damage);
        what = damage_case;
        compile_run(g.p, &o, KD_JIT_CACHE_STORED, &r);
        same(&base, &r, "after the damage");
        compile_run(g.p, &o, KD_JIT_CACHE_HIT, &r);   /* whole again */
        same(&base, &r, "the entry written again");
    }
    free(bad);
    free(good);
    free(foreign);
    kd_session_free(&other.s);
    kd_session_free(&g.s);
}
END_TEST

/* Four processes compile the same program at once into an empty directory. */
START_TEST(concurrent_writers_leave_one_whole_entry)
{
    const char *dir = tu_tmpdir("jc_concurrent");
    program g;
    program_of(&g, mlp_text);
    results base, r;
    kd_jit_options uncached = {.functions = PREDICT_FNS, .jobs = JOBS}, o = {.cache_dir = dir, .functions = PREDICT_FNS, .jobs = JOBS};
    compile_run(g.p, &uncached, KD_JIT_CACHE_OFF, &base);
    enum { WRITERS = 4 };
    pid_t pid[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        pid[w] = fork();
        ck_assert_int_ge(pid[w], 0);
        if (pid[w] == 0) {
            kdh_model_fns f;
            char why[512];
            kd_jit *j = kd_jit_compile(g.p, &o, &f, why, sizeof why);
            if (!j) _exit(2);
            run(g.p, &f, &r);
            _exit(memcmp(&r, &base, sizeof r) ? 3 : kd_jit_cache_result(j, NULL) == KD_JIT_CACHE_FAILED ? 4 : 0);
        }
    }
    for (int w = 0; w < WRITERS; w++) {
        int st;
        ck_assert_int_eq(waitpid(pid[w], &st, 0), pid[w]);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer %d: status %d", w, st);
    }
    ck_assert_int_eq(entries(dir, NULL, 0), JOBS);
    compile_run(g.p, &o, KD_JIT_CACHE_HIT, &r);
    same(&base, &r, "the entry the writers left");
    kd_session_free(&g.s);
}
END_TEST

START_TEST(unwritable_directory_is_a_warning)
{
    const char *tmp = tu_tmpdir("jc_unwritable");
    char file[4200], dir[4300];
    snprintf(file, sizeof file, "%s/a-file", tmp);
    ck_assert_int_eq(tu_write(file, "x", 1), 0);
    snprintf(dir, sizeof dir, "%s/cache", file);   /* under a regular file: never a directory */
    program g;
    program_of(&g, mlp_text);
    kd_jit_options o = {.cache_dir = dir, .functions = PREDICT_FNS, .jobs = JOBS}, uncached = {.functions = PREDICT_FNS, .jobs = JOBS};
    kdh_model_fns f;
    char why[512];
    kd_jit *j = kd_jit_compile(g.p, &o, &f, why, sizeof why);
    ck_assert_msg(j != NULL, "%s", why);
    const char *warning;
    ck_assert_int_eq(kd_jit_cache_result(j, &warning), KD_JIT_CACHE_FAILED);
    ck_assert_msg(warning && strstr(warning, "cannot write the JIT cache") && strstr(warning, dir), "%s", warning);
    results r, base;
    run(g.p, &f, &r);
    kd_jit_free(j);
    compile_run(g.p, &uncached, KD_JIT_CACHE_OFF, &base);
    same(&base, &r, "compiled in memory");
    kd_session_free(&g.s);
}
END_TEST

START_TEST(size_cap_evicts_the_oldest)
{
    const char *dir = tu_tmpdir("jc_evict");
    program g;
    program_of(&g, mlp_text);
    kdh_model_fns f;
    kd_jit_options a = {.cache_dir = dir, .functions = PREDICT_FNS, .opt_level = 1, .jobs = 1},
                   b = {.cache_dir = dir, .functions = PREDICT_FNS, .opt_level = 2, .jobs = 1};
    setenv("KDSL_CACHE_MAX_SIZE", "1G", 1);
    kd_jit_free(compile(g.p, &a, &f, KD_JIT_CACHE_STORED));
    kd_jit_free(compile(g.p, &b, &f, KD_JIT_CACHE_STORED));
    ck_assert_int_eq(entries(dir, NULL, 0), 2);
    ck_assert_uint_eq(kd_jit_cache_max_bytes(), 1ull << 30);
    setenv("KDSL_CACHE_MAX_SIZE", "1K", 1);   /* less than one entry: only the newest stays */
    ck_assert_uint_eq(kd_jit_cache_max_bytes(), 1024);
    kd_jit_options c = {.cache_dir = dir, .functions = PREDICT_FNS, .opt_level = 3, .jobs = 1};
    kd_jit_free(compile(g.p, &c, &f, KD_JIT_CACHE_STORED));
    ck_assert_int_eq(entries(dir, NULL, 0), 1);
    kd_jit_free(compile(g.p, &c, &f, KD_JIT_CACHE_HIT));
    kd_jit_free(compile(g.p, &a, &f, KD_JIT_CACHE_STORED));
    setenv("KDSL_CACHE_MAX_SIZE", "12X", 1);   /* malformed: the default */
    ck_assert_uint_eq(kd_jit_cache_max_bytes(), 1ull << 30);
    unsetenv("KDSL_CACHE_MAX_SIZE");
    kd_session_free(&g.s);
}
END_TEST

START_TEST(default_directory)
{
    char buf[256];
    setenv("KDSL_CACHE_DIR", "/some/dir", 1);
    setenv("XDG_CACHE_HOME", "/xdg", 1);
    setenv("HOME", "/home/u", 1);
    ck_assert(kd_jit_default_cache_dir(buf, sizeof buf));
    ck_assert_str_eq(buf, "/some/dir");
    setenv("KDSL_CACHE_DIR", "", 1);   /* set but empty: no cache */
    ck_assert(!kd_jit_default_cache_dir(buf, sizeof buf));
    unsetenv("KDSL_CACHE_DIR");
    ck_assert(kd_jit_default_cache_dir(buf, sizeof buf));
    ck_assert_str_eq(buf, "/xdg/kdsl");
    unsetenv("XDG_CACHE_HOME");
    ck_assert(kd_jit_default_cache_dir(buf, sizeof buf));
    ck_assert_str_eq(buf, "/home/u/.cache/kdsl");
    unsetenv("HOME");
    ck_assert(!kd_jit_default_cache_dir(buf, sizeof buf));
}
END_TEST

/* kdslc train twice on a few CSV rows: compiled, then loaded; --no-cache compiles. */
START_TEST(kdslc_train_uses_the_cache)
{
    const char *tmp = tu_tmpdir("jc_cli");
    char *model = tu_path(tmp, "net.kdsl"), *data = tu_path(tmp, "d.csv"), *cache = tu_path(tmp, "cache");
    ck_assert_int_eq(tu_write(model, mlp_text, strlen(mlp_text)), 0);
    FILE *f = fopen(data, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 12; i++) fprintf(f, "x%d,", i);
    fprintf(f, "label\n");
    for (int r = 0; r < 16; r++) {
        for (int i = 0; i < 12; i++) fprintf(f, "%g,", (double)((r * 7 + i * 3) % 10) / 10);
        fprintf(f, "%d\n", r % 4);
    }
    fclose(f);
    setenv("KDSL_CACHE_DIR", cache, 1);
    const char *say[3] = {"JIT: compiled net", "JIT: loaded the cached code of net", "JIT: compiled net"};
    const char *flag[3] = {"", "", " --no-cache"};
    for (int run = 0; run < 3; run++) {
        char *out = NULL;
        int rc = tu_kdslc_run(&out, "train %s --data %s --epochs 1 --validation-split 0%s", model, data, flag[run]);
        ck_assert_msg(rc == 0 && strstr(out, say[run]), "run %d (rc %d):\n%s", run, rc, out);
        free(out);
    }
    ck_assert_int_ge(entries(cache, NULL, 0), 1);   /* a library per CPU */
    unsetenv("KDSL_CACHE_DIR");
}
END_TEST

/* The key's hash is SHA-256 itself (FIPS 180-4's examples, and a message
 * fed in uneven pieces across the 64-byte blocks). */
START_TEST(sha256_known_answers)
{
    static const struct {
        const char *msg;
        int repeat;
        const char *hex;
    } cases[] = {
        {"", 1, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 10000,
         "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},   /* a million a's, in 100s */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        kd_sha256 h;
        kd_sha256_init(&h);
        for (int r = 0; r < cases[c].repeat; r++) kd_sha256_update(&h, cases[c].msg, strlen(cases[c].msg));
        uint8_t out[32];
        kd_sha256_final(&h, out);
        char hex[65];
        for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", out[i]);
        ck_assert_str_eq(hex, cases[c].hex);
    }
}
END_TEST

static Suite *jit_cache_suite(void)
{
    Suite *s = suite_create("jitcache");
    TCase *tc = tcase_create("cache");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, sha256_known_answers);
    tcase_add_test(tc, hit_computes_what_a_miss_computes);
    tcase_add_test(tc, changed_program_or_flag_never_reuses_an_entry);
    tcase_add_test(tc, corrupt_entry_is_compiled_again);
    tcase_add_test(tc, concurrent_writers_leave_one_whole_entry);
    tcase_add_test(tc, unwritable_directory_is_a_warning);
    tcase_add_test(tc, size_cap_evicts_the_oldest);
    tcase_add_test(tc, default_directory);
    tcase_add_test(tc, kdslc_train_uses_the_cache);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(jit_cache_suite()); }
