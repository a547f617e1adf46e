/* test_firmware.c — samples/firmware: a trained Keras model (the MLPerf Tiny
 * autoencoder, imported) compiled for a Cortex-M4F with its weights in
 * flash, linked with the runtime, newlib and the sample's startup code, and
 * run on QEMU's mps2-an386; its outputs must match the host's. And the
 * harness itself must be able to fail: an expected output changed by 1%
 * makes the run report WRONG and exit non-zero. */
#include "testutil.h"

#include "quant_ref.h"

#include <stdio.h>

/* make -C samples/firmware with this build's kdslc, into dir (and `vars`,
 * make's variables); the output, exit status in *rc. */
static char *firmware_with(const char *dir, const char *vars, const char *target, int *rc)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "timeout 300 make -s -C %s OUT=%s KDSL=%s KDSLC=%s SAMPLES=1 %s %s", tu_src("samples/firmware"),
             dir, tu_source_root(), tu_kdslc(), vars, target);
    char *out;
    *rc = tu_run(cmd, &out);
    return out;
}

static char *firmware(const char *dir, const char *target, int *rc) { return firmware_with(dir, "", target, rc); }

/* `make run` into dir must pass, saying `says`; the image's symbols (arm-none-eabi-nm, malloc'd). */
static char *run_passes(const char *dir, const char *vars, const char *says)
{
    int rc;
    char *out = firmware_with(dir, vars, "run", &rc);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_has(out, says);
    ck_assert_has(out, "all outputs match");
    free(out);
    char cmd[8192], *syms;
    snprintf(cmd, sizeof cmd, "arm-none-eabi-nm %s/firmware.elf", dir);
    ck_assert_int_eq(tu_run(cmd, &syms), 0);
    return syms;
}

START_TEST(autoencoder_on_cortex_m4)
{
    if (getenv("KDSL_SANITIZE_CFLAGS")) return;   /* the sanitizer pass checks the kdslc steps in their own suites */
    const char *dir = tu_tmpdir("firmware");
    int rc;
    char *out;
    /* What the model costs in code (issue 25): its Dense layers are loops in
     * model.c, so the image holds no runtime kernel; and with ReLU only, the
     * model's code calls no libm and converts no float to double (a soft-float
     * call on a single-precision FPU). The firmware's own main does both. */
    char cmd[8192], *syms = run_passes(dir, "", "sample 0: 640 outputs");
    ck_assert_has(syms, " T functional_1_predict_embedded\n");
    ck_assert_msg(!strstr(syms, " kdk_"), "the firmware links a runtime kernel:\n%s", syms);
    ck_assert_msg(!strstr(syms, " expf\n") && !strstr(syms, " tanhf\n"), "the firmware links expf or tanhf");
    free(syms);
    snprintf(cmd, sizeof cmd,
             "cd %s && arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -Os -std=c99 "
             "-I%s -c model.c -o model.o && arm-none-eabi-nm -u model.o", dir, tu_src("runtime"));
    ck_assert_int_eq(tu_run(cmd, &syms), 0);
    const char *banned[] = {"expf", "tanhf", "__aeabi_f2d", "__aeabi_d2f", "kdk_sgemm", "kdk_sconv2d_fwd"};
    for (size_t i = 0; i < sizeof banned / sizeof banned[0]; i++) {
        char pat[64];
        snprintf(pat, sizeof pat, " %s\n", banned[i]);
        ck_assert_msg(!strstr(syms, pat), "model.o calls %s:\n%s", banned[i], syms);
    }
    free(syms);
    /* one expected value 1% off: the firmware must notice */
    snprintf(cmd, sizeof cmd,
             "cd %s && awk 'f == 0 && /io_outputs/ {f = 1; print; next} f == 1 {sub(/^    /, \"    1.01f * \"); f = 2} {print}' "
             "io.h > io2.h && mv io2.h io.h && grep -c '1.01f \\*' io.h", dir);
    ck_assert_int_eq(tu_run(cmd, &out), 0);
    ck_assert_str_eq(out, "1\n");   /* exactly one value changed */
    free(out);
    out = firmware(dir, "run", &rc);
    ck_assert_msg(rc != 0, "the firmware passed with a wrong expectation:\n%s", out);
    ck_assert_has(out, "WRONG");
    ck_assert_has(out, "FAILED");
    free(out);
}
END_TEST

/* The MLPerf Tiny ResNet-8 quantized (--quantize int8, calibrated on its
 * three fixture images): the Cortex-M4's int8 code (SMLAD; each convolution
 * and Add model.c's own, quant_kernels.h with the layer's constant shapes) must give
 * the host's int8 outputs (the portable C of the same kernels), and the
 * image links only the kernels the model calls. */
START_TEST(resnet8_int8_on_cortex_m4)
{
    if (getenv("KDSL_SANITIZE_CFLAGS")) return;
    const char *dir = tu_tmpdir("firmware_int8");
    char vars[4096];
    snprintf(vars, sizeof vars, "H5=%s INPUTS=%s SAMPLES=3 QUANTIZE=int8", tu_src("tests/fixtures/mlperf_tiny/pretrainedResnet.h5"),
             tu_src("tests/fixtures/mlperf_tiny/pretrainedResnet_x.npy"));
    char *syms = run_passes(dir, vars, "sample 2: 10 outputs");
    const char *used[] = {" T kdk_q8_avgpool2d\n", " T kdk_q8_quantize\n"};
    for (size_t i = 0; i < sizeof used / sizeof used[0]; i++)
        ck_assert_msg(strstr(syms, used[i]), "the firmware does not link %s", used[i]);
    const char *unused[] = {" T kdk_q8_conv2d\n", " T kdk_q8_add\n", " T kdk_q8_maxpool2d\n", " T kdk_q8_depthwise_conv2d\n", " kdk_sgemm",
                            " kdk_sconv2d_fwd"};
    for (size_t i = 0; i < sizeof unused / sizeof unused[0]; i++)
        ck_assert_msg(!strstr(syms, unused[i]), "the firmware links %s", unused[i]);
    free(syms);
}
END_TEST

/* tests/test_quant.c's program of constant-shape int8 layers (one input
 * channel and many, odd channel and filter counts, stride 2, padding 'same'
 * and 'valid', the fused pooling, depthwise; tests/quant_ref.h) built for
 * the Cortex-M4 and run on QEMU: the DSP code (SMLAD, SMLABB/SMLATT, SXTB16)
 * of each shape against the reference loop nest. */
START_TEST(constant_shape_int8_on_cortex_m4)
{
    if (getenv("KDSL_SANITIZE_CFLAGS")) return;
    const char *fw = tu_src("samples/firmware");
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "cd %%s && arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -Os -ffunction-sections "
             "-fdata-sections -std=c99 -Wall -Wextra -Werror -I%s %s/startup.c shapes.c -T %s/mps2_an386.ld -nostartfiles "
             "--specs=nano.specs --specs=rdimon.specs -Wl,--gc-sections -o shapes.elf && timeout 300 qemu-system-arm -machine "
             "mps2-an386 -nographic -monitor none -serial none -semihosting-config enable=on,target=native -kernel shapes.elf",
             tu_src("runtime"), fw, fw);
    run_conv_program(tu_tmpdir("firmware_shapes"), cmd);
}
END_TEST

/* The runtime a firmware links, under issue 25's flags for a Cortex-M4F
 * (-Wconversion includes -Wsign-conversion in C) and on the host: not one
 * warning. Each file alone, so the message names it. */
START_TEST(runtime_is_warning_clean)
{
    if (getenv("KDSL_SANITIZE_CFLAGS")) return;
    static const char *const files[] = {"bn_fold.c", "conv.c", "dwconv.c", "gemm.c", "pool.c", "quant.c", "random.c", "softmax.c"};
    static const char *const compilers[] = {
        "arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -Os", "gcc -O2"};
    for (size_t c = 0; c < sizeof compilers / sizeof compilers[0]; c++)
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            char cmd[4300], *out;
            snprintf(cmd, sizeof cmd,
                     "%s -std=c11 -Wall -Wextra -Wconversion -Wdouble-promotion -Werror -I%s -c %s/%s -o /dev/null 2>&1",
                     compilers[c], tu_src("runtime"), tu_src("runtime"), files[i]);
            int rc = tu_run(cmd, &out);
            ck_assert_msg(rc == 0, "runtime/%s has warnings under %s:\n%.3000s", files[i], compilers[c], out);
            free(out);
        }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("firmware");
    TCase *t = tcase_create("qemu");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, autoencoder_on_cortex_m4);
    tcase_add_test(t, resnet8_int8_on_cortex_m4);
    tcase_add_test(t, constant_shape_int8_on_cortex_m4);
    tcase_add_test(t, runtime_is_warning_clean);
    suite_add_tcase(s, t);
    return tu_run_suite(s);
}
