/* test_cli.c — kdslc's one table of flags (driver/flags.h): every command
 * parses by it, `kdslc --help` and docs/cli.md list exactly its flags, a
 * flag given to a command that does not take it is an error, and
 * `--flag=VALUE` means what `--flag VALUE` does. */
#include "testutil.h"
#include "flags.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool takes(const kd_flag *f, const kd_command *c) { return (f->commands & c->bit) != 0; }

/* A value the flag accepts. */
static const char *good_value(const kd_flag *f)
{
    static char buf[64];
    if (!strcmp(f->name, "--normalize")) return "255";
    if (!strcmp(f->name, "--dtype")) return "f64";
    if (!strcmp(f->name, "--target")) return "portable";
    if (!strcmp(f->name, "--stage")) return "loops";
    if (!strcmp(f->name, "--calibration-percentile")) return "99.9";
    switch (f->kind) {
    case KD_FLAG_INT: snprintf(buf, sizeof buf, "%lld", f->ilo + 1); return buf;
    case KD_FLAG_REAL: return "0.5";
    default: return "x.bin";
    }
}

/* docs/cli.md's "## Options" table: its rows' flag names, in order. */
static int doc_flags(char names[][64], int max)
{
    size_t len;
    char *md = tu_read(tu_src("docs/cli.md"), &len);
    ck_assert_msg(md != NULL, "cannot read docs/cli.md");
    char *sec = strstr(md, "\n## Options\n");
    ck_assert_msg(sec != NULL, "docs/cli.md has no '## Options' section");
    char *end = strstr(sec + 1, "\n## ");
    if (end) *end = 0;
    int n = 0;
    for (char *l = sec; (l = strstr(l, "\n| `")) != NULL && n < max; l++) {
        char *a = l + 4, *b = a + strcspn(a, " `");
        snprintf(names[n++], 64, "%.*s", (int)(b - a), a);
    }
    free(md);
    return n;
}

START_TEST(docs_list_every_flag_of_the_table)
{
    char names[128][64];
    int n = doc_flags(names, 128);
    for (int k = 0; k < kd_nflags; k++) {
        bool found = false;
        for (int i = 0; i < n; i++) found |= !strcmp(names[i], kd_flags[k].name);
        ck_assert_msg(found, "docs/cli.md's options table lacks %s", kd_flags[k].name);
    }
    for (int i = 0; i < n; i++)
        ck_assert_msg(kd_find_flag(names[i]) != NULL, "docs/cli.md documents %s, which no command takes", names[i]);
    ck_assert_int_eq(n, kd_nflags);
}
END_TEST

START_TEST(help_lists_every_flag_and_command)
{
    char *out;
    ck_assert_int_eq(tu_kdslc_run(&out, "--help"), 0);
    for (int k = 0; k < kd_nflags; k++) {
        char line[80];
        snprintf(line, sizeof line, "\n  %s", kd_flags[k].name);
        ck_assert_has(out, line);
    }
    for (int i = 0; i < KD_NCOMMANDS; i++) {
        char line[80];
        snprintf(line, sizeof line, "\n  %s ", kd_commands[i].name);
        ck_assert_has(out, line);
    }
    free(out);
    /* after a command too, and the same text */
    char *again;
    ck_assert_int_eq(tu_kdslc_run(&again, "train m.kdsl --help"), 0);
    ck_assert_has(again, "--validation-split");
    free(again);
}
END_TEST

/* Every flag, given to each command that does not take it: exit 2, saying so
 * (and before the model file is read: m.kdsl does not exist). */
START_TEST(a_flag_of_another_command_is_an_error)
{
    int checked = 0;
    for (int k = 0; k < kd_nflags; k++)
        for (int i = 0; i < KD_NCOMMANDS; i++) {
            const kd_flag *f = &kd_flags[k];
            const kd_command *c = &kd_commands[i];
            if (takes(f, c)) continue;
            char words[160];
            snprintf(words, sizeof words, "option '%s' does not apply to `kdslc %s`", f->name, c->name);
            ck_assert_fails(2, words, "%s no-such.kdsl %s %s", c->name, f->name, f->kind == KD_FLAG_NONE ? "" : good_value(f));
            checked++;
        }
    ck_assert_int_gt(checked, 50);
}
END_TEST

static int parse(kd_cli_options *o, int n, const char **args)
{
    char *argv[8] = {"kdslc"};
    for (int i = 0; i < n; i++) argv[i + 1] = (char *)args[i];
    return kd_flags_parse(n + 1, argv, o);
}

/* --flag=VALUE and --flag VALUE set the same field to the same value, for
 * every flag of every command that takes it. */
START_TEST(equals_spelling_is_the_same_flag)
{
    for (int k = 0; k < kd_nflags; k++) {
        const kd_flag *f = &kd_flags[k];
        if (f->kind == KD_FLAG_NONE) continue;
        for (int i = 0; i < KD_NCOMMANDS; i++) {
            const kd_command *c = &kd_commands[i];
            if (!takes(f, c)) continue;
            const char *v = good_value(f);
            char joined[128];
            snprintf(joined, sizeof joined, "%s=%s", f->name, v);
            kd_cli_options a, b;
            ck_assert_int_eq(parse(&a, 4, (const char *[]){c->name, "m.kdsl", f->name, v}), 0);
            ck_assert_int_eq(parse(&b, 3, (const char *[]){c->name, "m.kdsl", joined}), 0);
            if (f->set || f->kind == KD_FLAG_INT || f->kind == KD_FLAG_REAL) {
                a.file = b.file = a.run.file = b.run.file = NULL;   /* the same name, maybe not the same pointer */
                ck_assert_msg(memcmp(&a, &b, sizeof a) == 0, "%s %s: the two spellings differ", c->name, f->name);
            } else {
                const char *sa = *(const char **)(void *)((char *)&a + f->offset);
                const char *sb = *(const char **)(void *)((char *)&b + f->offset);
                ck_assert_msg(sa && sb && !strcmp(sa, v) && !strcmp(sb, v), "%s %s: not set", c->name, f->name);
            }
            if (f->kind == KD_FLAG_INT) {
                long long got = f->int64 ? *(int64_t *)(void *)((char *)&a + f->offset)
                                         : *(int *)(void *)((char *)&a + f->offset);
                ck_assert_int_eq(got, f->ilo + 1);
            }
        }
    }
}
END_TEST

/* The limits of the table are the limits the parser applies. */
START_TEST(values_out_of_range_are_errors)
{
    for (int k = 0; k < kd_nflags; k++) {
        const kd_flag *f = &kd_flags[k];
        const kd_command *c = NULL;
        for (int i = 0; i < KD_NCOMMANDS && !c; i++)
            if (takes(f, &kd_commands[i])) c = &kd_commands[i];
        kd_cli_options o;
        if (f->kind == KD_FLAG_INT) {
            char lo[32], hi[32];
            snprintf(lo, sizeof lo, "%s=%lld", f->name, f->ilo - 1);
            snprintf(hi, sizeof hi, "%s=%lld%s", f->name, f->ihi, f->ihi == INT64_MAX ? "0" : "");
            if (f->ihi != INT64_MAX) snprintf(hi, sizeof hi, "%s=%lld", f->name, f->ihi + 1);
            ck_assert_int_eq(parse(&o, 3, (const char *[]){c->name, "m.kdsl", lo}), 2);
            ck_assert_int_eq(parse(&o, 3, (const char *[]){c->name, "m.kdsl", hi}), 2);
        } else if (f->kind == KD_FLAG_REAL) {
            ck_assert_int_eq(parse(&o, 4, (const char *[]){c->name, "m.kdsl", f->name, "-1"}), 2);
            ck_assert_int_eq(parse(&o, 4, (const char *[]){c->name, "m.kdsl", f->name, "nan"}), 2);
        } else if (f->kind == KD_FLAG_NONE) {
            char eq[80];
            snprintf(eq, sizeof eq, "%s=1", f->name);
            ck_assert_int_eq(parse(&o, 3, (const char *[]){c->name, "m.kdsl", eq}), 2);
        } else {
            ck_assert_int_eq(parse(&o, 3, (const char *[]){c->name, "m.kdsl", f->name}), 2);   /* no value */
        }
    }
}
END_TEST

/* The messages the other suites and users rely on, one per kind of mistake. */
/* summary --flops: the products each compiled function makes, per sample, as
 * counted by hand (a multiply-add is 2): the MLP's forward 2(784·256 + 256·128
 * + 128·10); its step three times that but for the first layer's input
 * gradient, which nothing needs; the CNN's the same for its convolutions; a
 * depthwise layer 2·(outputs)·kh·kw. */
START_TEST(summary_flops)
{
    char *out;
    ck_assert_int_eq(tu_kdslc_run(&out, "summary %s --flops", tu_src("samples/fmnist_mlp.kdsl")), 0);
    ck_assert_has(out, "FLOPs (a multiply-add counts 2) at batch 64:");
    ck_assert_msg(strstr(out, "predict") && strstr(out, " 469,504\n"), "%s", out);
    long fwd = 2L * (784 * 256 + 256 * 128 + 128 * 10), step = 3 * fwd - 2L * 784 * 256;
    char want[64];
    snprintf(want, sizeof want, " %ld,%03ld,%03ld\n", step / 1000000, step / 1000 % 1000, step % 1000);
    ck_assert_has(out, want);   /* 1,007,104: not the 1.41 M of three whole passes */
    free(out);
    ck_assert_int_eq(tu_kdslc_run(&out, "summary %s --flops", tu_src("samples/fmnist_cnn.kdsl")), 0);
    long cfwd = 2L * (26 * 26 * 32 * 9 + 11 * 11 * 64 * 9 * 32 + 1600 * 128 + 128 * 10),
         cstep = 3 * cfwd - 2L * 26 * 26 * 32 * 9;
    snprintf(want, sizeof want, " %ld,%03ld,%03ld\n", cstep / 1000000, cstep / 1000 % 1000, cstep % 1000);
    ck_assert_has(out, want);
    free(out);
    const char *dir = tu_tmpdir("cli-flops");
    static const char dw[] = "model dw {\n    input x: [6, 6, 2]\n    output y = DepthwiseConv2D(x, 3, padding: same, "
                             "depth_multiplier: 2)\n}\n";
    tu_write(tu_path(dir, "dw.kdsl"), dw, strlen(dw));
    ck_assert_int_eq(tu_kdslc_run(&out, "summary %s/dw.kdsl --flops", dir), 0);
    ck_assert_msg(strstr(out, "predict") && strstr(out, " 2,592\n"), "%s", out);   /* 2 * 6*6*4 * 3*3 */
    free(out);
    /* Every FLOP of a small model at batch 4, by hand (element-wise ops and
     * reductions 1 per element, reshapes 0). predict: 2·4·3·2 + 8 + 8 (the
     * first product, bias, relu) + 2·4·2·1 + 4 = 84, of which products 64.
     * grad: predict's 84; the loss sub, square, mean 4 each, 1/batch 1; its
     * gradient's two muls 4 each, the second bias's sum 4, its products back
     * 2·4·1·2 and 2·2·4·1, relu_grad 8, the first bias's sum 8, the first
     * kernel's 2·3·4·2: 205, products 64 + 80. apply_gradients (SGD, not per
     * sample): a mul and a sub per parameter, 2·11. train_step: 205 + 22. */
    static const char t[] = "model t {\n    input x: [3]\n    Dense(2, activation: relu)\n    output y = Dense(1)\n}\n"
                            "train t {\n    loss: MeanSquaredError()\n    optimizer: SGD(learning_rate: 0.1)\n"
                            "    batch_size: 4\n    epochs: 1\n}\n";
    tu_write(tu_path(dir, "t.kdsl"), t, strlen(t));
    ck_assert_int_eq(tu_kdslc_run(&out, "summary %s/t.kdsl --flops", dir), 0);
    ck_assert_has(out, "FLOPs (a multiply-add counts 2) at batch 4:");
    ck_assert_has(out, "\npredict                          84               21                           16\n");
    ck_assert_has(out, "\ngrad                            205               51                           36\n");
    ck_assert_has(out, "\napply_gradients                  22                5                            0\n");
    ck_assert_has(out, "\ntrain_step                      227               56                           36\n");
    free(out);
}
END_TEST

START_TEST(messages)
{
    ck_assert_fails(2, "unknown option '--no-pases'; did you mean '--no-passes'?", "compile m.kdsl --no-pases");
    ck_assert_fails(2, "unknown option '--epoch'; did you mean '--epochs'?", "train m.kdsl --epoch 3");
    ck_assert_fails(2, "option '--stage' does not apply to `kdslc summary`", "summary m.kdsl --stage graph");
    ck_assert_fails(2, "option '--batch' applies to `kdslc ir` with --stage layout, opt or loops, not graph",
                    "ir %s --batch 4", tu_src("samples/mlp.kdsl"));
    ck_assert_fails(2, "option '-o' needs a value", "compile m.kdsl -o");
    ck_assert_fails(2, "option '--inference-only' takes no value", "compile m.kdsl --inference-only=yes");
    ck_assert_fails(2, "unknown command 'trian'; did you mean 'train'?", "trian m.kdsl");
    ck_assert_fails(2, "'compile' needs a model file", "compile --batch 3");
    ck_assert_fails(2, "unexpected argument 'b.kdsl'", "summary a.kdsl b.kdsl");
    /* the equals spelling through the whole command, on a real model */
    char *out;
    ck_assert_int_eq(tu_kdslc_run(&out, "ir %s --stage=opt --batch=4 --model=mlp --no-cse", tu_src("samples/mlp.kdsl")), 0);
    ck_assert_has(out, "mlp_predict");
    free(out);
}
END_TEST

static Suite *cli_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, docs_list_every_flag_of_the_table);
    tcase_add_test(tc, help_lists_every_flag_and_command);
    tcase_add_test(tc, a_flag_of_another_command_is_an_error);
    tcase_add_test(tc, equals_spelling_is_the_same_flag);
    tcase_add_test(tc, values_out_of_range_are_errors);
    tcase_add_test(tc, messages);
    tcase_add_test(tc, summary_flops);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(cli_suite());
}
