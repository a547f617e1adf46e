/* quant_ref.h — the int8 convolutions' reference for tests/test_quant.c and
 * tests/test_firmware.c: TFLite's arithmetic as plain loop nests over the
 * unpacked weights, random layers packed as runtime/quant.h says, and a C
 * program of constant-shape layers (what a model.c of `--quantize int8`
 * is: runtime/quant_kernels.h's bodies on `static const` parameters) that
 * checks each layer's output against the reference's, for the host's C and
 * for the Cortex-M4's DSP code under QEMU. Static functions: one test
 * binary includes it once. */
#ifndef KDSL_QUANT_REF_H
#define KDSL_QUANT_REF_H

#include "quant.h"
#include "testutil.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t rng = 88172645463325252ull;
static uint32_t next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static int rand_in(int lo, int hi) { return lo + (int)(next() % (uint32_t)(hi - lo + 1)); }

/* acc * mult * 2^(shift - 31) as TFLite rounds it, in 128-bit arithmetic:
 * first to 2^-31 units half up (SaturatingRoundingDoublingHighMul), then the
 * right shift half away from zero (RoundingDivideByPOT). */
static int32_t ref_requantize(int32_t acc, int32_t mult, int32_t shift)
{
    int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    __int128 p = (__int128)acc * ((int64_t)1 << left) * mult;
    __int128 num = 2 * p + ((__int128)1 << 31), den = (__int128)1 << 32;
    __int128 r1 = num >= 0 ? num / den : -((-num + den - 1) / den);   /* floor */
    if (right == 0) return (int32_t)r1;
    __int128 mag = r1 < 0 ? -r1 : r1;
    mag = (mag + ((__int128)1 << (right - 1))) >> right;
    return (int32_t)(r1 < 0 ? -mag : mag);
}

static int8_t clamp8(int32_t v, int32_t lo, int32_t hi) { return (int8_t)(v < lo ? lo : v > hi ? hi : v); }

/* A layer: its parameters (weights packed as quant.h says) and the natural [k][f] weights. */
typedef struct ref_conv_layer {
    kdk_q8_conv_params p;
    bool depthwise;
    int8_t *nat, *packed;
    int64_t npacked;
} ref_conv_layer;

/* Random weights, biases, multipliers, shifts (one for all channels or one
 * each), zero points and clamp for the shape already in l->p. */
static void fill_conv(ref_conv_layer *l)
{
    kdk_q8_conv_params *p = &l->p;
    bool dw = l->depthwise;
    int K = dw ? p->kh * p->kw : p->kh * p->kw * p->c, row = p->kw * p->c, rowp = (row + 3) / 4 * 4;
    p->kp = dw ? K : p->kh * rowp;
    p->in_zp = rand_in(-128, 127), p->out_zp = rand_in(-128, 127);
    p->act_min = rand_in(-128, 0), p->act_max = rand_in(1, 127);
    l->nat = malloc((size_t)(K * p->f));
    l->npacked = dw ? (int64_t)K * p->f : (int64_t)(p->f + 1) / 2 * 2 * p->kp;
    l->packed = calloc((size_t)l->npacked, 1);
    int32_t *bias = malloc(sizeof(int32_t) * (size_t)p->f), *mult = malloc(sizeof(int32_t) * (size_t)p->f),
            *shift = malloc(sizeof(int32_t) * (size_t)p->f);
    for (int k = 0; k < K; k++)
        for (int o = 0; o < p->f; o++) {
            int8_t v = (int8_t)rand_in(-127, 127);
            l->nat[k * p->f + o] = v;
            int kr = k / row * rowp + k % row;   /* quant.h: each kernel row padded to rowp */
            size_t at = dw ? (size_t)(k * p->f + o) : (size_t)((o / 2) * 2 * p->kp + (kr / 4) * 8 + (o & 1) * 4 + (kr & 3));
            l->packed[at] = v;
        }
    p->same_shift = (int)(next() % 2);   /* one shift for all channels (model.c's folded form) or one each */
    for (int o = 0; o < p->f; o++) {
        bias[o] = rand_in(-5000, 5000);
        mult[o] = (int32_t)((1u << 30) + (next() % (1u << 30)));
        shift[o] = p->same_shift && o ? shift[0] : rand_in(-10, -5);
    }
    p->weights = l->packed, p->bias = bias, p->mult = mult, p->shift = shift;
}

/* A random convolution (depthwise: f = c) of up to 9 x 9 x 7, symmetric padding, maybe a 2x2 max pooling. */
static void random_conv(ref_conv_layer *l, bool depthwise)
{
    kdk_q8_conv_params *p = &l->p;
    l->depthwise = depthwise;
    p->h = rand_in(1, 9), p->w = rand_in(1, 9), p->c = rand_in(1, 7);
    p->kh = rand_in(1, p->h < 3 ? p->h : 3), p->kw = rand_in(1, p->w < 3 ? p->w : 3);
    p->stride_h = rand_in(1, 2), p->stride_w = rand_in(1, 2);
    p->pad_top = rand_in(0, p->kh - 1), p->pad_left = rand_in(0, p->kw - 1);
    p->ho = (p->h + 2 * p->pad_top - p->kh) / p->stride_h + 1;
    p->wo = (p->w + 2 * p->pad_left - p->kw) / p->stride_w + 1;
    p->f = depthwise ? p->c : rand_in(1, 9);
    fill_conv(l);
    p->pool = !depthwise && p->ho >= 2 && p->wo >= 2 && next() % 2 ? 2 : 0;
}

/* A convolution of the given shape, Keras' padding 'same' (same) or 'valid'. */
static void shaped_conv(ref_conv_layer *l, bool depthwise, int h, int w, int c, int kh, int kw, int stride, bool same, int f,
                        int pool)
{
    kdk_q8_conv_params *p = &l->p;
    l->depthwise = depthwise;
    p->h = h, p->w = w, p->c = c, p->kh = kh, p->kw = kw, p->stride_h = p->stride_w = stride;
    p->ho = same ? (h + stride - 1) / stride : (h - kh) / stride + 1;
    p->wo = same ? (w + stride - 1) / stride : (w - kw) / stride + 1;
    int ph = (p->ho - 1) * stride + kh - h, pw = (p->wo - 1) * stride + kw - w;
    p->pad_top = same && ph > 0 ? ph / 2 : 0, p->pad_left = same && pw > 0 ? pw / 2 : 0;
    p->f = depthwise ? c : f;
    fill_conv(l);
    p->pool = pool;
}

static void free_conv(ref_conv_layer *l)
{
    free(l->nat), free(l->packed);
    free((void *)l->p.bias), free((void *)l->p.mult), free((void *)l->p.shift);
}

/* Output elements: [ho, wo, f], or pooled [ho / 2, wo / 2, f]. */
static int conv_outputs(const kdk_q8_conv_params *p) { return p->pool ? (p->ho / 2) * (p->wo / 2) * p->f : p->ho * p->wo * p->f; }

/* The layer as TFLite's reference kernel writes it, a loop nest over the
 * natural weights, then the fused 2x2 max pooling over the requantized
 * outputs; y holds ho * wo * f. */
static void ref_conv(const ref_conv_layer *l, const int8_t *x, int8_t *y)
{
    const kdk_q8_conv_params *p = &l->p;
    bool dw = l->depthwise;
    for (int oy = 0; oy < p->ho; oy++)
        for (int ox = 0; ox < p->wo; ox++)
            for (int o = 0; o < p->f; o++) {
                int32_t acc = p->bias[o];
                for (int ky = 0; ky < p->kh; ky++)
                    for (int kx = 0; kx < p->kw; kx++) {
                        int iy = oy * p->stride_h - p->pad_top + ky, ix = ox * p->stride_w - p->pad_left + kx;
                        if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) continue;
                        for (int ci = dw ? o : 0; ci < (dw ? o + 1 : p->c); ci++) {
                            int k = dw ? ky * p->kw + kx : (ky * p->kw + kx) * p->c + ci;
                            acc += (x[(iy * p->w + ix) * p->c + ci] - p->in_zp) * l->nat[k * p->f + o];
                        }
                    }
                int32_t v = ref_requantize(acc, p->mult[o], p->shift[o]) + p->out_zp;
                y[(oy * p->wo + ox) * p->f + o] = clamp8(v, p->act_min, p->act_max);
            }
    if (p->pool)
        for (int py = 0; py < p->ho / 2; py++)
            for (int px = 0; px < p->wo / 2; px++)
                for (int o = 0; o < p->f; o++) {
                    int8_t m = -128;
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++) {
                            int8_t v = y[((2 * py + dy) * p->wo + 2 * px + dx) * p->f + o];
                            m = v > m ? v : m;
                        }
                    y[(py * (p->wo / 2) + px) * p->f + o] = m;   /* in place: never ahead of what it reads */
                }
}

static void write_ints(FILE *c, const char *type, const char *name, int k, const void *v, int64_t n, int bytes)
{
    fprintf(c, "static const %s C%d_%s[%lld]%s = {", type, k, name, (long long)n, bytes == 1 ? " KDK_Q8_ALIGNED" : "");
    for (int64_t i = 0; i < n; i++)
        fprintf(c, "%s%d", i ? "," : "", bytes == 1 ? ((const int8_t *)v)[i] : (int)((const int32_t *)v)[i]);
    fprintf(c, "};\n");
}

/* A C program of the n layers l[], each with a random input and the
 * reference's output as constants: each layer runs as model.c runs it
 * (quant_kernels.h's body on its `static const` parameters) and is compared
 * with the reference. Prints `case K WRONG` for each mismatch, then `N
 * cases, W wrong`; exits 0 when none is. */
static void write_conv_program(FILE *c, ref_conv_layer *l, int n)
{
    size_t most_out = 1, most_scratch = 1;
    for (int k = 0; k < n; k++) {
        size_t nfull = (size_t)(l[k].p.ho * l[k].p.wo * l[k].p.f);
        if (nfull > most_out) most_out = nfull;
        if (kdk_q8_conv_scratch(&l[k].p) > most_scratch) most_scratch = kdk_q8_conv_scratch(&l[k].p);
    }
    fprintf(c, "#include <stdio.h>\n#include <string.h>\n#include \"quant_kernels.h\"\n\n"
               "static int16_t scratch[%zu] __attribute__((aligned(4)));\nstatic int8_t out[%zu];\n",
            most_scratch, most_out);
    for (int k = 0; k < n; k++) {
        kdk_q8_conv_params *p = &l[k].p;
        int nin = p->h * p->w * p->c, nfull = p->ho * p->wo * p->f;
        int8_t *x = malloc((size_t)nin), *y = malloc((size_t)nfull);
        for (int i = 0; i < nin; i++) x[i] = (int8_t)rand_in(-128, 127);
        ref_conv(&l[k], x, y);
        write_ints(c, "int8_t", "w", k, l[k].packed, l[k].npacked, 1);
        write_ints(c, "int32_t", "b", k, p->bias, p->f, 4);
        write_ints(c, "int32_t", "m", k, p->mult, p->f, 4);
        write_ints(c, "int32_t", "s", k, p->shift, p->f, 4);
        write_ints(c, "int8_t", "x", k, x, nin, 1);
        write_ints(c, "int8_t", "want", k, y, conv_outputs(p), 1);
        fprintf(c, "static const kdk_q8_conv_params C%d = {%d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, "
                   "C%d_w, C%d_b, C%d_m, C%d_s, %d, %d};\n",
                k, p->h, p->w, p->c, p->kh, p->kw, p->stride_h, p->stride_w, p->pad_top, p->pad_left, p->ho, p->wo, p->f,
                p->kp, p->in_zp, p->out_zp, p->act_min, p->act_max, k, k, k, k, p->pool, p->same_shift);
        if (l[k].depthwise)
            fprintf(c, "static void C%d_run(void) { kdk_q8_depthwise_conv2d_body(&C%d, C%d_x, out); }\n", k, k, k);
        else fprintf(c, "static void C%d_run(void) { kdk_q8_conv2d_body(&C%d, C%d_x, out, scratch); }\n", k, k, k);
        free(x), free(y);
    }
    fprintf(c, "\nint main(void)\n{\n    int wrong = 0;\n");
    for (int k = 0; k < n; k++)
        fprintf(c, "    C%d_run();\n    if (memcmp(out, C%d_want, sizeof C%d_want)) printf(\"case %d WRONG\\n\"), wrong++;\n", k,
                k, k, k);
    fprintf(c, "    printf(\"%d cases, %%d wrong\\n\", wrong);\n    return wrong != 0;\n}\n", n);
}

/* The layers write_conv_program checks: every shape the constant-shape code
 * has a case for (one input channel, many, odd counts against the SMLAD
 * pairs and the depthwise groups of four, stride 2, padding 'same' and
 * 'valid', the fused pooling, filters and groups written out or looped),
 * then random ones. n: their number (malloc'd). */
static ref_conv_layer *conv_program_layers(int *n)
{
    enum { RANDOM = 24 };
    static const struct { bool dw; int h, w, c, kh, kw, stride; bool same; int f, pool; } shapes[] = {
        {false, 28, 28, 1, 3, 3, 1, false, 8, 2},    /* the CNN's first layer */
        {false, 9, 9, 1, 3, 3, 2, true, 5, 0},       /* one channel, stride 2, 'same', odd f */
        {false, 11, 10, 3, 3, 3, 2, true, 8, 0},     /* MobileNet's first layer */
        {false, 12, 6, 1, 10, 4, 2, true, 6, 0},     /* DS-CNN's first layer (a taller kernel than the image's half) */
        {false, 7, 7, 8, 3, 3, 1, true, 16, 0},      /* many channels, 'same' */
        {false, 13, 13, 8, 3, 3, 1, false, 16, 2},   /* the CNN's second layer */
        {false, 6, 5, 5, 3, 3, 1, true, 3, 2},       /* odd c, odd f, pooled */
        {false, 5, 4, 16, 1, 1, 1, false, 7, 0},     /* pointwise, odd f */
        {false, 3, 3, 40, 1, 1, 1, false, 33, 0},    /* more filter pairs than are written out */
        {false, 1, 1, 37, 1, 1, 1, false, 10, 0},    /* Dense, odd c */
        {false, 1, 1, 150, 1, 1, 1, false, 4, 0},    /* Dense of more groups than are written out */
        {false, 8, 8, 2, 3, 3, 2, false, 9, 0},      /* stride 2, 'valid' */
        {false, 6, 6, 16, 3, 3, 1, true, 6, 0},      /* ResNet-8's: 36 groups, four a loop step */
        {false, 6, 5, 19, 3, 3, 1, true, 5, 2},      /* 45 groups: four a step and one more; odd c and f, pooled */
        {true, 7, 6, 8, 3, 3, 1, true, 0, 0},        /* depthwise, channels in fours */
        {true, 9, 8, 5, 3, 3, 2, true, 0, 0},        /* depthwise, stride 2, a channel past the fours */
        {true, 6, 6, 7, 3, 3, 1, false, 0, 0},       /* depthwise 'valid', three past the fours */
        {true, 5, 4, 64, 3, 3, 1, true, 0, 0},       /* DS-CNN's depthwise layers */
        {true, 4, 4, 3, 3, 3, 2, true, 0, 0},        /* depthwise, fewer channels than four */
    };
    int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    *n = nshapes + RANDOM;
    ref_conv_layer *l = calloc((size_t)*n, sizeof *l);
    for (int i = 0; i < nshapes; i++)
        shaped_conv(&l[i], shapes[i].dw, shapes[i].h, shapes[i].w, shapes[i].c, shapes[i].kh, shapes[i].kw, shapes[i].stride,
                    shapes[i].same, shapes[i].f, shapes[i].pool);
    for (int i = nshapes; i < *n; i++) random_conv(&l[i], i % 3 == 0);
    return l;
}

/* Builds and runs the program of conv_program_layers in dir: cmd, a shell
 * command with one %s for dir, compiles dir/shapes.c and runs it. Fails the
 * test unless every case passes. */
static void run_conv_program(const char *dir, const char *cmd_fmt)
{
    int n;
    ref_conv_layer *l = conv_program_layers(&n);
    FILE *c = fopen(tu_path(dir, "shapes.c"), "w");
    ck_assert_ptr_nonnull(c);
    write_conv_program(c, l, n);
    fclose(c);
    for (int i = 0; i < n; i++) free_conv(&l[i]);
    free(l);
    char cmd[8192], want[64], *out;
    snprintf(cmd, sizeof cmd, cmd_fmt, dir);
    int rc = tu_run(cmd, &out);
    ck_assert_msg(rc == 0, "%s", out);
    snprintf(want, sizeof want, "%d cases, 0 wrong\n", n);
    ck_assert_str_eq(out, want);
    free(out);
}

#endif
