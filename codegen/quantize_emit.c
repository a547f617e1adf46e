/* quantize_emit.c — an int8 model (quantize.h) as model.c + model.h: each
 * layer's constants (int8 weights, int32 biases, multipliers and shifts, the
 * kernel's parameters) as static const data, and predict as one call per
 * layer on fixed arena offsets: of the layer's own function for a
 * convolution, Dense, depthwise convolution or Add (runtime/quant_kernels.h's
 * body on its static const parameters, which the compiler folds into
 * constant-shape code, as lower_direct.c writes fp32's), of a runtime/quant.h
 * kernel for the rest. Only the kernels the model calls are linked (with
 * -ffunction-sections --gc-sections). */
#include "quantize.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

/* A float literal of v that reads back as (float)v: "1.0f", "0.00392156886f". */
static const char *flt(char *buf, double v)
{
    snprintf(buf, 40, "%.9g", (double)(float)v);
    if (!strpbrk(buf, ".en")) strcat(buf, ".0");
    strcat(buf, "f");
    return buf;
}

static void ints(FILE *c, const char *type, const char *name, const void *v, int64_t n, int bytes)
{
    fprintf(c, "static const %s %s[%" PRId64 "]%s = {", type, name, n, bytes == 1 ? " KDK_Q8_ALIGNED" : "");
    for (int64_t i = 0; i < n; i++) {
        long long x = bytes == 1 ? ((const int8_t *)v)[i] : ((const int32_t *)v)[i];
        fprintf(c, "%s%lld", !i ? "\n    " : i % 24 ? ", " : ",\n    ", x);
    }
    fprintf(c, "\n};\n");
}

static void floats(FILE *c, const char *name, const float *v, int64_t n)
{
    char f[48];
    fprintf(c, "static const float %s[%" PRId64 "] = {", name, n);
    for (int64_t i = 0; i < n; i++) fprintf(c, "%s%s", !i ? "\n    " : i % 8 ? ", " : ",\n    ", flt(f, v[i]));
    fprintf(c, "\n};\n");
}

static void conv_data(FILE *c, int i, const kq_layer *l)
{
    const kdk_q8_conv_params *p = &l->conv;
    char name[64];
    snprintf(name, sizeof name, "L%d_weights", i);
    ints(c, "int8_t", name, p->weights, l->nweights, 1);
    const char *what[3] = {"bias", "mult", "shift"};
    const int32_t *v[3] = {p->bias, p->mult, p->shift};
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, "L%d_%s", i, what[k]);
        ints(c, "int32_t", name, v[k], p->f, 4);
    }
    int same_shift = 1;
    for (int o = 1; o < p->f; o++) same_shift &= p->shift[o] == p->shift[0];
    fprintf(c,
            "static const kdk_q8_conv_params L%d = {%d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %" PRId32
            ", %" PRId32 ", %" PRId32 ", %" PRId32 ", L%d_weights, L%d_bias, L%d_mult, L%d_shift, %d, %d};\n",
            i, p->h, p->w, p->c, p->kh, p->kw, p->stride_h, p->stride_w, p->pad_top, p->pad_left, p->ho, p->wo, p->f,
            p->kp, p->in_zp, p->out_zp, p->act_min, p->act_max, i, i, i, i, p->pool, same_shift);
    /* the layer's own code: quant_kernels.h's body with L<i> folded in */
    if (l->dequant) {
        snprintf(name, sizeof name, "L%d_scale", i);
        floats(c, name, l->dequant, p->f);
        fprintf(c, "static void L%d_run(const int8_t *x, float *y, int16_t *scratch)\n{\n"
                   "    kdk_q8_dense_float_body(&L%d, x, y, L%d_scale, scratch);\n}\n", i, i, i);
    } else if (l->kind == KQ_DEPTHWISE)
        fprintf(c, "static void L%d_run(const int8_t *x, int8_t *y)\n{\n    kdk_q8_depthwise_conv2d_body(&L%d, x, y);\n}\n",
                i, i);
    else
        fprintf(c, "static void L%d_run(const int8_t *x, int8_t *y, int16_t *scratch)\n{\n"
                   "    kdk_q8_conv2d_body(&L%d, x, y, scratch);\n}\n", i, i);
}

static void layer_data(FILE *c, int i, const kq_layer *l)
{
    const kdk_q8_pool_params *p = &l->pool;
    const kdk_q8_add_params *a = &l->add;
    switch (l->kind) {
    case KQ_CONV:
    case KQ_DEPTHWISE:
    case KQ_DENSE: conv_data(c, i, l); break;
    case KQ_MAXPOOL:
    case KQ_AVGPOOL:
        fprintf(c, "static const kdk_q8_pool_params L%d = {%d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %" PRId32
                   ", %" PRId32 ", %" PRId32 ", %" PRId32 ", %" PRId32 ", %" PRId32 "};\n",
                i, p->h, p->w, p->c, p->kh, p->kw, p->stride_h, p->stride_w, p->pad_top, p->pad_left, p->ho, p->wo,
                p->act_min, p->act_max, p->in_zp, p->out_zp, p->mult, p->shift);
        break;
    case KQ_ADD: {
        const int32_t v[13] = {a->n, a->a_zp, a->b_zp, a->out_zp, a->left_shift, a->a_mult, a->a_shift, a->b_mult,
                               a->b_shift, a->out_mult, a->out_shift, a->act_min, a->act_max};
        fprintf(c, "static const kdk_q8_add_params L%d = {", i);
        for (int k = 0; k < 13; k++) fprintf(c, "%s%" PRId32, k ? ", " : "", v[k]);
        fprintf(c, "};\n");
        fprintf(c, "static void L%d_run(const int8_t *a, const int8_t *b, int8_t *y)\n{\n"
                   "    kdk_q8_add_body(&L%d, a, b, y);\n}\n", i, i);
        break;
    }
    case KQ_RELU: break;
    }
}

static const char *kind_names[] = {"conv2d", "depthwise_conv2d", "dense", "maxpool2d", "avgpool2d", "add", "relu"};

static void layer_call(FILE *c, const kq_model *m, int i, const kq_layer *l)
{
    const kq_tensor *in = m->tensors.items[l->in], *out = m->tensors.items[l->out];
    if (l->dequant)
        fprintf(c, "    /* %s: %s -> %" PRId64 " floats */\n", l->name, kind_names[l->kind], out->elems);
    else
        fprintf(c, "    /* %s: %s%s -> %" PRId64 " (scale %.9g, zero point %" PRId32 ") */\n", l->name, kind_names[l->kind],
                l->conv.pool ? " + 2x2 max pooling" : "", out->elems, out->scale, out->zp);
    switch (l->kind) {
    case KQ_CONV:
    case KQ_DENSE:
        if (l->dequant) fprintf(c, "    L%d_run(a + %" PRId64 ", y, scratch);\n", i, in->offset);
        else fprintf(c, "    L%d_run(a + %" PRId64 ", a + %" PRId64 ", scratch);\n", i, in->offset, out->offset);
        break;
    case KQ_DEPTHWISE: fprintf(c, "    L%d_run(a + %" PRId64 ", a + %" PRId64 ");\n", i, in->offset, out->offset); break;
    case KQ_MAXPOOL:
    case KQ_AVGPOOL:
        fprintf(c, "    kdk_q8_%s(&L%d, a + %" PRId64 ", a + %" PRId64 ");\n", kind_names[l->kind], i, in->offset,
                out->offset);
        break;
    case KQ_ADD:
        fprintf(c, "    L%d_run(a + %" PRId64 ", a + %" PRId64 ", a + %" PRId64 ");\n", i, in->offset,
                ((const kq_tensor *)m->tensors.items[l->in2])->offset, out->offset);
        break;
    case KQ_RELU:
        fprintf(c, "    kdk_q8_clamp_min(a + %" PRId64 ", a + %" PRId64 ", %" PRId64 ", %" PRId32 ");\n", in->offset,
                out->offset, out->elems, l->relu_lo);
        break;
    }
}

static void header(const kq_model *m, FILE *h)
{
    const char *n = m->p->name, *u = m->p->upper;
    const kq_tensor *in = m->tensors.items[m->input], *out = m->tensors.items[m->output];
    fprintf(h, "/* %s.h — generated by kdslc compile --quantize int8 (docs/c-api.md#int8). Do not edit. */\n", n);
    fprintf(h, "#ifndef %s_H\n#define %s_H\n\n#include <stdint.h>\n\n", u, u);
    fprintf(h, "#define %s_INT8 1\n", u);
    fprintf(h, "#define %s_INPUT0_SIZE %" PRId64 "\n#define %s_OUTPUT0_SIZE %" PRId64 "\n", u, in->elems, u, out->elems);
    fprintf(h, "#define %s_ARENA_BYTES %" PRId64 "\n#define %s_ARENA_ALIGN 4\n", u, m->arena_bytes, u);
    fprintf(h, "/* real = scale * (q - zero_point) */\n");
    char f[48];
    fprintf(h, "#define %s_INPUT_SCALE %s\n#define %s_INPUT_ZERO_POINT %" PRId32 "\n", u, flt(f, in->scale), u, in->zp);
    if (m->float_output) {
        fprintf(h, "/* 1: the output is float, the last Dense layer's int32 sums times their scales (no int8 logits) */\n");
        fprintf(h, "#define %s_OUTPUT_FLOAT 1\n", u);
    } else {
        fprintf(h, "#define %s_OUTPUT_FLOAT 0\n", u);
        fprintf(h, "#define %s_OUTPUT_SCALE %s\n#define %s_OUTPUT_ZERO_POINT %" PRId32 "\n", u, flt(f, out->scale), u,
                out->zp);
    }
    fprintf(h, "/* 1: the model's output is the softmax of the output above, computed in float */\n");
    fprintf(h, "#define %s_OUTPUT_SOFTMAX %d\n\n", u, m->softmax);
    fprintf(h, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
    if (m->float_output) {
        fprintf(h, "/* int8 in at the input's scale and zero point, float out (before any softmax). */\n");
        fprintf(h, "int %s_predict_int8(const int8_t *input, float *output, void *arena);\n", n);
    } else {
        fprintf(h, "/* int8 in, int8 out (before any softmax), at the scales and zero points above. */\n");
        fprintf(h, "int %s_predict_int8(const int8_t *input, int8_t *output, void *arena);\n", n);
    }
    fprintf(h, "/* float in, float out: each of `batch` samples quantized, run in int8, %s\n"
               " * (and the softmax applied); 0, or -1 when batch < 1. */\n",
            m->float_output ? "its float output taken" : "dequantized");
    fprintf(h, "int %s_predict_embedded(const float *const *inputs, float *const *outputs, int batch, void *arena);\n\n",
            n);
    fprintf(h, "#ifdef __cplusplus\n}\n#endif\n\n#endif\n");
}

int kq_emit_c(const kq_model *m, const char *header_name, FILE *c, FILE *h, kd_diags *d)
{
    (void)d;
    const char *n = m->p->name;
    const kq_tensor *in = m->tensors.items[m->input], *out = m->tensors.items[m->output];
    header(m, h);
    fprintf(c, "/* %s.c — generated by kdslc compile --quantize int8 from %s, calibrated on %d samples. Do not edit. */\n",
            n, m->p->source ? m->p->source : "?", m->samples);
    fprintf(c, "#include \"%s\"\n#include \"quant_kernels.h\"\n%s\n", header_name, m->softmax ? "\n#include <math.h>" : "");
    for (int i = 0; i < m->layers.len; i++) layer_data(c, i, m->layers.items[i]);
    /* run: the layers, on the arena a; with a float output, the last one writes y */
    bool fo = m->float_output;
    fprintf(c, "\nstatic void run(int8_t *a, int16_t *scratch%s)\n{\n    (void)scratch;\n", fo ? ", float *y" : "");
    for (int i = 0; i < m->layers.len; i++) layer_call(c, m, i, m->layers.items[i]);
    fprintf(c, "}\n\n");
    fprintf(c, "int %s_predict_int8(const int8_t *input, %s *output, void *arena)\n{\n", n, fo ? "float" : "int8_t");
    fprintf(c, "    int8_t *a = (int8_t *)arena + %" PRId64 ";\n", m->scratch_bytes);
    fprintf(c, "    for (int i = 0; i < %" PRId64 "; i++) a[%" PRId64 " + i] = input[i];\n", in->elems, in->offset);
    if (fo)
        fprintf(c, "    run(a, (int16_t *)arena, output);\n    return 0;\n}\n\n");
    else
        fprintf(c, "    run(a, (int16_t *)arena);\n"
                   "    for (int i = 0; i < %" PRId64 "; i++) output[i] = a[%" PRId64 " + i];\n    return 0;\n}\n\n",
                out->elems, out->offset);
    fprintf(c, "int %s_predict_embedded(const float *const *inputs, float *const *outputs, int batch, void *arena)\n{\n", n);
    fprintf(c, "    if (batch < 1) return -1;\n    int8_t *a = (int8_t *)arena + %" PRId64 ";\n", m->scratch_bytes);
    fprintf(c, "    for (int b = 0; b < batch; b++) {\n");
    char f[48];
    fprintf(c, "        kdk_q8_quantize(inputs[0] + (long)b * %" PRId64 ", a + %" PRId64 ", %" PRId64 ", %s, %" PRId32 ");\n",
            in->elems, in->offset, in->elems, flt(f, 1.0 / in->scale), in->zp);
    fprintf(c, "        float *y = outputs[0] + (long)b * %" PRId64 ";\n", out->elems);
    if (fo) {
        fprintf(c, "        run(a, (int16_t *)arena, y);\n");
    } else {
        fprintf(c, "        run(a, (int16_t *)arena);\n");
        fprintf(c, "        kdk_q8_dequantize(a + %" PRId64 ", y, %" PRId64 ", %s, %" PRId32 ");\n", out->offset,
                out->elems, flt(f, out->scale), out->zp);
    }
    if (m->softmax)
        fprintf(c, "        float mx = y[0], sum = 0;\n"
                   "        for (int i = 1; i < %" PRId64 "; i++) mx = y[i] > mx ? y[i] : mx;\n"
                   "        for (int i = 0; i < %" PRId64 "; i++) sum += y[i] = expf(y[i] - mx);\n"
                   "        for (int i = 0; i < %" PRId64 "; i++) y[i] /= sum;\n",
                out->elems, out->elems, out->elems);
    fprintf(c, "    }\n    return 0;\n}\n");
    return 0;
}
