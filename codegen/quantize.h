/* quantize.h — int8 post-training quantization (prefix kq_), TFLite's
 * scheme: from a checked model's inference graph with its weights embedded
 * (BatchNormalization folded, bias and activation fused by the passes),
 * the plan of an int8 model — a list of layers, each a call of an int8
 * kernel of runtime/quant.h with constant arguments — calibrated on
 * representative inputs run through the fp32 model.
 *
 *   kq_build       the graph as int8 layers (Conv2D, DepthwiseConv2D with
 *                  depth multiplier 1, Dense, MaxPooling2D, AveragePooling2D,
 *                  GlobalAveragePooling2D, Flatten / Reshape, Add; ReLU / ReLU6 into the clamp of the
 *                  layer before it; a softmax at the output stays float)
 *   kq_calibrate   every tensor's range: the interpreter (double precision)
 *                  over the samples, min and max over all of them (TFLite's
 *                  MinMax calibration), or clipped at percentiles or where
 *                  the quantization error is least; widened to hold 0
 *   kq_quantize    scales and zero points, int8 per-channel weights (rounded
 *                  to nearest, or by GPTQ), int32
 *                  biases, fixed-point multipliers; arena offsets
 *   kq_run         one sample through the int8 kernels on the host (what
 *                  `evaluate` / `predict --quantize int8` measure)
 *   kq_emit_c      model.c + model.h calling the same kernels (quantize_emit.c) */
#ifndef KDSL_QUANTIZE_H
#define KDSL_QUANTIZE_H

#include "codegen.h"
#include "quant.h"   /* runtime/ */

typedef struct kq_tensor {
    const ir_node *node;    /* whose value calibrates it (after a folded ReLU: the ReLU) */
    int64_t elems;          /* per sample */
    int h, w, c;            /* NHWC view; a vector is 1 x 1 x elems */
    double lo, hi;          /* calibrated range */
    double scale;
    int32_t zp;
    int64_t offset;         /* bytes into the arena */
    int first, last;        /* the layers that write it and read it last (-1: the input) */
} kq_tensor;

typedef enum kq_kind { KQ_CONV, KQ_DEPTHWISE, KQ_DENSE, KQ_MAXPOOL, KQ_AVGPOOL, KQ_ADD, KQ_RELU } kq_kind;

typedef struct kq_layer {
    kq_kind kind;
    const ir_node *node;
    const char *name;       /* the KDSL layer */
    int in, in2, out;       /* tensors (in2: ADD's second operand) */
    int act;                /* IR_ACT_NONE, IR_ACT_RELU or IR_ACT_RELU6: the clamp */
    /* weights (CONV, DEPTHWISE, DENSE): the variables and their shapes */
    const ir_node *kernel, *bias;
    kdk_q8_conv_params conv;    /* also DENSE; pointers into the plan's arena */
    int64_t nweights;           /* int8 elements of conv.weights */
    kdk_q8_pool_params pool;
    kdk_q8_add_params add;
    int32_t relu_lo;            /* RELU: max(x, relu_lo) */
    const float *dequant;       /* the model's float output layer (kq_model.float_output): scale per channel */
    double *hessian;            /* gptq (CONV, DENSE; malloc'd from kq_calibrate to kq_quantize): sum of patch patch^T
                                 * over calibration pixels, K x K */
} kq_layer;

typedef struct kq_model {
    kd_arena *arena;
    const lp_program *p;
    const ir_graph *g;
    kd_vec tensors;         /* kq_tensor* */
    kd_vec layers;          /* kq_layer* */
    int input, output;      /* tensors */
    bool softmax;           /* the model's output is softmax(dequantized output tensor), in float */
    /* the last layer, a Dense without activation whose result is the output,
     * gives its int32 sums times their scales as floats (kdk_q8_dense_float):
     * the logits are not rounded to 256 levels */
    bool float_output;
    int64_t scratch_bytes;  /* the convolutions' int16 patches, at the arena's start */
    int64_t arena_bytes;
    int samples;            /* calibration samples seen */
} kq_model;

/* The plan of p's predict graph (p with embedded weights); NULL after
 * reporting an op it cannot quantize (its layer and line). */
kq_model *kq_build(const lp_program *p, const kd_graphs *G, kd_diags *d);
/* How the calibration samples' values set a tensor's range (before it is
 * widened to hold 0). */
typedef enum kq_calibration_method {
    KQ_CALIBRATE_MINMAX,      /* min and max (TFLite's default) */
    KQ_CALIBRATE_PERCENTILE,  /* the (100 - p)th and pth percentiles */
    KQ_CALIBRATE_MSE,         /* the clipping of least quantization error over the values' histogram */
} kq_calibration_method;
typedef struct kq_calibration {
    kq_calibration_method method;
    double percentile;        /* percentile: p, in (50, 100) */
    /* the weights of convolutions and Dense layers rounded by GPTQ (each
     * weight's rounding error compensated on the weights not yet rounded,
     * through the calibration inputs' second moments) instead of to nearest */
    bool gptq;
} kq_calibration;

/* The ranges over n samples (n x input elements, row-major), by the method
 * (percentile and mse run the samples twice: min and max, then a histogram
 * over them; gptq once more, for each layer's input patches). Once per
 * model, then kq_quantize. false after reporting. */
bool kq_calibrate(kq_model *m, const float *x, int64_t n, const kq_calibration *how, kd_diags *d);
/* After calibration. false after reporting (no samples). */
bool kq_quantize(kq_model *m, kd_diags *d);
/* One sample: x (float, input elements) to y (float, output elements: the
 * dequantized output or, float_output, the float logits; softmax applied if
 * the model ends in one); arena of m->arena_bytes. */
void kq_run(const kq_model *m, const float *x, float *y, void *arena);

/* model.c and model.h text; 0, or 1 after reporting. */
int kq_emit_c(const kq_model *m, const char *header_name, FILE *c_out, FILE *h_out, kd_diags *d);

/* TFLite's QuantizeMultiplier: real = mult * 2^(shift - 31), mult in [2^30, 2^31)
 * (0, 0 for a real of 0 or one below 2^-32). */
void kq_quantize_multiplier(double real, int32_t *mult, int32_t *shift);

#endif
