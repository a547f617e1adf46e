/* test_difftest.c — the differential tester in the suite (tests/difftest/):
 *   - issue 20's miscompile, with the numbers worked out by hand, through
 *     `kdslc predict`, the JIT and the generated C;
 *   - every saved regression (every .kdsl in tests/difftest/regressions) replayed
 *     through the oracle, the C backend included;
 *   - a bounded number of fresh random programs (300; the JIT's variants on
 *     every 25th, the C backend on every 100th). tests/run sets the seed
 *     from the commit (KDSL_DIFFTEST_SEED), so each commit tries other
 *     programs; KDSL_DIFFTEST_COUNT sets how many. A failure prints the
 *     command that runs the program again and reduces it. */
#define _GNU_SOURCE
#include "codegen.h"
#include "difftest/difftest.h"
#include "difftest/gen.h"
#include "driver.h"
#include "host/tensor_file.h"
#include "jit.h"
#include "testutil.h"

#include <dirent.h>
#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- issue 20: the programs, identity weights, the right answers ------------------------ */

static const char concat_products[] =
    "model m {\n"
    "    input x: [4]\n"
    "    e = Dense(x, 4, activation: relu)\n"
    "    output Concatenate([e * 2, e * 3])\n"
    "}\n";

/* A shared layer feeding both Maximum and Multiply of the same pair. */
static const char shared_max_mul[] =
    "model m {\n"
    "    input a: [4]\n"
    "    input b: [4]\n"
    "    shared d = Dense(4, activation: relu)\n"
    "    p = d(a)\n"
    "    q = d(b)\n"
    "    output Concatenate([Maximum([p, q]), Multiply([p, q])])\n"
    "}\n";

static const float in_a[4] = {1, 2, 3, 4}, in_b[4] = {4, 3, 2, 1};
static const float want_concat[8] = {2, 4, 6, 8, 3, 6, 9, 12};
static const float want_shared[8] = {4, 3, 3, 4, 4, 6, 6, 4};

/* Every kernel the identity, every bias 0. */
static void identity_params(const lp_program *p, float *params)
{
    memset(params, 0, (size_t)p->params_size * sizeof *params);
    for (int i = 0; i < p->params.len; i++) {
        const lp_tensor_info *t = p->params.items[i];
        if (t->rank == 2)
            for (int64_t k = 0; k < t->shape[0]; k++) params[t->offset + k * t->shape[1] + k] = 1;
    }
}

static void expect8(const char *what, const float *got, const float *want)
{
    for (int i = 0; i < 8; i++)
        ck_assert_msg(got[i] == want[i], "%s: output[%d] = %g, want %g", what, i, got[i], want[i]);
}

/* The JIT and model.c (cc, dlopen) on the program, at batch 1. */
static void check_backends(const char *tag, const char *text, const float *want)
{
    kd_session s = {0};
    s.diags.out = stderr;
    ck_assert_int_eq(kd_front_end_text(&s, "issue20.kdsl", text, strlen(text), NULL), 0);
    kd_codegen_options o = {.batch = 1, .header_name = "m.h"};
    lp_program *p = kd_back_end(&s, &o);
    ck_assert_ptr_nonnull(p);
    float params[64], out[8] = {0}, *outs[1] = {out};
    const float *ins[2] = {in_a, in_b};
    identity_params(p, params);
    char *arena = aligned_alloc(64, 4096);
    ck_assert(p->funcs[LP_F_PREDICT]->arena_bytes <= 4096);

    kdh_model_fns f;
    char why[512];
    kd_jit *j = kd_jit_compile(p, NULL, &f, why, sizeof why);
    ck_assert_msg(j != NULL, "%s", why);
    f.predict(params, ins, outs, 1, arena);
    expect8("jit", out, want);
    kd_jit_free(j);

    const char *dir = tu_tmpdir(tag);
    char path[4096];
    snprintf(path, sizeof path, "%s/m.c", dir);
    FILE *cf = fopen(path, "w");
    snprintf(path, sizeof path, "%s/m.h", dir);
    FILE *hf = fopen(path, "w");
    ck_assert(cf && hf);
    ck_assert_int_eq(kd_emit_c(p, &o, cf, hf, &s.diags), 0);
    fclose(cf);
    fclose(hf);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cd %s && cc -std=c99 -O2 -shared -fPIC -I%s -o m.so m.c %s/libkdslrt.a -lm", dir,
             tu_src("runtime"), tu_build_root());
    tu_sh(cmd);
    snprintf(path, sizeof path, "%s/m.so", dir);
    void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(so != NULL, "%s", dlerror());
    int (*predict)(const float *, const float *const *, float *const *, int, void *);
    void *sym = dlsym(so, "m_predict");
    ck_assert_ptr_nonnull(sym);
    memcpy(&predict, &sym, sizeof sym);
    memset(out, 0, sizeof out);
    ck_assert_int_eq(predict(params, ins, outs, 1, arena), 0);
    expect8("model.c", out, want);
    dlclose(so);
    free(arena);
    kd_session_free(&s);
}

START_TEST(issue20_concat_of_products_backends)
{
    check_backends("concat_products", concat_products, want_concat);
}
END_TEST

START_TEST(issue20_shared_layer_max_mul_backends)
{
    check_backends("shared_max_mul", shared_max_mul, want_shared);
}
END_TEST

static void write_tensor_npy(const char *path, const float *x, int64_t n)
{
    kdh_tensor t = {.dtype = KDH_F32, .rank = 2, .shape = {1, n}, .data = (void *)x, .nbytes = (size_t)n * 4};
    kdh_error err;
    ck_assert_msg(kdh_npy_write(path, &t, &err) == 0, "%s", err.msg);
}

/* `kdslc predict` on the first program, with identity weights in a safetensors file. */
START_TEST(issue20_concat_of_products_predict)
{
    const char *dir = tu_tmpdir("issue20_predict");
    char model[4096], weights[4096], input[4096], output[4096], cmd[20000];
    snprintf(model, sizeof model, "%s/m.kdsl", dir);
    snprintf(weights, sizeof weights, "%s/w.safetensors", dir);
    snprintf(input, sizeof input, "%s/x.npy", dir);
    snprintf(output, sizeof output, "%s/y.npy", dir);
    ck_assert_int_eq(tu_write(model, concat_products, strlen(concat_products)), 0);
    float kernel[16] = {0}, bias[4] = {0};
    for (int i = 0; i < 4; i++) kernel[i * 4 + i] = 1;
    kdh_tensor t[2] = {{.name = "dense/kernel", .dtype = KDH_F32, .rank = 2, .shape = {4, 4}, .data = kernel, .nbytes = 64},
                       {.name = "dense/bias", .dtype = KDH_F32, .rank = 1, .shape = {4}, .data = bias, .nbytes = 16}};
    kdh_error err;
    ck_assert_msg(kdh_safetensors_write(weights, t, 2, NULL, 0, &err) == 0, "%s", err.msg);
    write_tensor_npy(input, in_a, 4);
    snprintf(cmd, sizeof cmd, "%s predict %s --weights %s --input %s -o %s", tu_kdslc(), model, weights, input, output);
    tu_sh(cmd);
    kdh_tensor y;
    ck_assert_msg(kdh_npy_read(output, NULL, &y, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(y.dtype, KDH_F32);
    ck_assert_int_eq(y.shape[0], 1);
    ck_assert_int_eq(y.shape[1], 8);
    expect8("kdslc predict", y.data, want_concat);
    free(y.data);
}
END_TEST

/* ---- the oracle on saved and fresh programs ------------------------------------------ */

/* In tests/run's sanitizer pass (KDSL_SANITIZE_CFLAGS set) the JIT's pass
 * variants are left to the first pass: under the sanitizers they took 100
 * of the regressions' 138 s, compiling in libgccjit, which is not
 * instrumented; the executor still runs every pass variant there. */
static dt_options oracle_options(const char *tag, bool c_backend)
{
    const char *sanitize = getenv("KDSL_SANITIZE_CFLAGS");
    return (dt_options){.c_backend = c_backend, .fd = true, .threads = true, .workdir = tu_tmpdir(tag), .jit_opt_level = 1,
                        .jit_no_pass_variants = sanitize && *sanitize};
}

/* The oracle on issue 20's programs with random weights, partial batches
 * and every variant (with the old in-place choice, the JIT fails here). */
START_TEST(oracle_passes_issue20_programs)
{
    dt_options o = oracle_options("oracle_issue20", true);
    dt_verdict v;
    char text[1024];
    snprintf(text, sizeof text, "# difftest: batch=3 max_batch=4 data_seed=7\n%s", concat_products);
    ck_assert_msg(dt_run(text, 3, 4, 7, &o, &v) == DT_OK, "%s\n%s", v.check, v.why);
    ck_assert_int_ge(v.variants, 4);
    ck_assert_msg(dt_run(shared_max_mul, 2, 2, 9, &o, &v) == DT_OK, "%s\n%s", v.check, v.why);
}
END_TEST

/* A program the front end rejects is a failure, never a silent pass. */
START_TEST(oracle_reports_rejected_program)
{
    dt_options o = oracle_options("oracle_rejected", false);
    dt_verdict v;
    ck_assert_int_eq(dt_run("model m {\n    input x: [4]\n    output Dense(x, 0)\n}\n", 1, 1, 1, &o, &v), DT_FAIL);
    ck_assert_str_eq(v.check, "front end");
}
END_TEST

START_TEST(regressions_replay)
{
    const char *dir = tu_src("tests/difftest/regressions");
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort), replayed = 0;
    ck_assert_int_ge(n, 0);
    dt_options o = oracle_options("regressions", true);
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        size_t len = strlen(name);
        if (len > 5 && !strcmp(name + len - 5, ".kdsl")) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, name);
            size_t tlen;
            char *text = tu_read(path, &tlen);
            ck_assert_ptr_nonnull(text);
            int batch, max_batch;
            uint64_t seed;
            ck_assert_msg(dt_parse_header(text, &batch, &max_batch, &seed), "%s: no difftest header", path);
            dt_verdict v;
            ck_assert_msg(dt_run(text, batch, max_batch, seed, &o, &v) != DT_FAIL, "%s: %s\n%s", path, v.check, v.why);
            free(text);
            replayed++;
        }
        free(names[i]);
    }
    free(names);
    fprintf(stderr, "difftest: %d regressions replayed\n", replayed);
    ck_assert_int_ge(replayed, 1);
}
END_TEST

START_TEST(random_programs)
{
    const char *s = getenv("KDSL_DIFFTEST_SEED"), *c = getenv("KDSL_DIFFTEST_COUNT");
    uint64_t seed = s && *s ? strtoull(s, NULL, 0) : 20261206;
    long count = c && *c ? strtol(c, NULL, 10) : 300;
    dt_options o = oracle_options("random", false);
    long variants = 0, skipped = 0;
    for (long i = 0; i < count; i++) {
        dt_program p;
        uint64_t ps = seed + (uint64_t)i;
        dt_generate(&p, ps, 4 + (int)(ps % 23));
        char *text = dt_print(&p);
        /* every program through the loop-IR executor; the JIT's variants and
         * cc cost 0.3-3 s a program, so only some go through them */
        o.no_jit = i % 25 != 0;
        o.c_backend = i % 100 == 0;
        dt_verdict v;
        dt_status st = dt_run(text, p.batch, p.max_batch, p.data_seed, &o, &v);
        ck_assert_msg(st != DT_FAIL, "program from seed %" PRIu64 " fails %s: %s\n%s\nreduce and save it with: "
                      "build/tests/difftest --seed %" PRIu64 " --count 1", ps, v.check, v.why, text, ps);
        free(text);
        variants += v.variants;
        skipped += st == DT_SKIP;
    }
    fprintf(stderr, "difftest: %ld programs from seed %" PRIu64 ", %ld variant runs, %ld skipped\n", count, seed,
            variants, skipped);
    ck_assert_int_lt(skipped, count / 2 + 1);
}
END_TEST

static Suite *difftest_suite(void)
{
    Suite *s = suite_create("difftest");
    TCase *t = tcase_create("issue20");
    tcase_add_test(t, issue20_concat_of_products_backends);
    tcase_add_test(t, issue20_shared_layer_max_mul_backends);
    tcase_add_test(t, issue20_concat_of_products_predict);
    tcase_add_test(t, oracle_passes_issue20_programs);
    tcase_add_test(t, oracle_reports_rejected_program);
    suite_add_tcase(s, t);
    t = tcase_create("oracle");
    tcase_set_timeout(t, 900);
    tcase_add_test(t, regressions_replay);
    tcase_add_test(t, random_programs);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tu_run_suite(difftest_suite()); }
