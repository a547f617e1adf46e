/* quant.h — the int8 kernels of kdsl's quantized models (prefix kdk_q8_):
 * TFLite's integer arithmetic for int8 (its quantization spec, as TFLM and
 * CMSIS-NN compute it), freestanding like the rest of runtime/ (no heap, no
 * stdio, no libm, no mutable globals). `kdslc compile --quantize int8` writes
 * a model.c that calls these with constant arguments, and has each
 * convolution's body (quant_kernels.h) compiled into it with its layer's
 * constant parameters; `kdslc evaluate / predict --quantize int8` run the
 * same kernels on the host, so the host's accuracy is the firmware's.
 *
 * Numbers (TFLite's spec):
 *   - an activation is int8 q with a scale s and zero point z: real = s (q - z);
 *   - a weight is int8, symmetric (zero point 0), one scale per output channel;
 *   - a bias is int32 at the scale s_in * s_w[channel], zero point 0;
 *   - a product's int32 sum goes back to int8 by a fixed-point multiplier M
 *     (Q31, in [2^30, 2^31)) and a shift e: gemmlowp's
 *     RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc * 2^max(e, 0), M), max(-e, 0)),
 *     i.e. acc * M * 2^(e - 31) rounded (twice, half away from zero);
 *   - a fused ReLU / ReLU6 is the clamp [act_min, act_max] of the output.
 * Batch 1, NHWC, and no float anywhere but kdk_q8_quantize / _dequantize and
 * the float logits of kdk_q8_dense_float.
 *
 * Speed: the convolution (Dense is a 1x1 convolution of a 1x1 image) builds
 * each output pixel's patch as int16 (x - z, padding 0) in a scratch buffer,
 * two pixels at a time, and runs 2 pixels x 2 output channels per pass, four
 * weights a load: on a Cortex-M4 (__ARM_FEATURE_DSP) each pair of
 * multiply-adds is one SMLAD, the weights sign-extended by SXTB16 (CMSIS-NN's
 * arm_nn_mat_mult_kernel_s8_s16 scheme); elsewhere the same loop in C. The
 * depthwise convolution runs four channels a tap on the M4 (SMLABB, SMLATT).
 * In a model.c the shapes are constants: the groups of four of a filter (up
 * to 32) and the filter pairs of a layer of up to 8 filters are written out,
 * and a shift common to a layer's channels is folded. */
#ifndef KDSL_QUANT_H
#define KDSL_QUANT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A convolution's weights start on a 4-byte boundary (the Cortex-M4 path
 * loads them 8 bytes at a time with LDRD, which faults when unaligned):
 * model.c declares its weight arrays with this. */
#if defined(__GNUC__)
#define KDK_Q8_ALIGNED __attribute__((aligned(4)))
#else
#define KDK_Q8_ALIGNED
#endif

/* A convolution, NHWC input [h, w, c] to [ho, wo, f]; Dense is h = w = kh = kw = 1.
 * A filter is kp = kh * rowp weights: for each kernel row ky its kw * c weights
 * in (kx, ci) order, then zeros up to rowp = kw * c rounded up to a multiple
 * of 4 (so each row starts a group of four). The filters go in pairs (o, o + 1), a pair's
 * 2 kp weights in groups of four: four of filter o, then four of filter o + 1
 * (pair o / 2 at weights + o * kp); an odd
 * f's last filter is paired with zeros. So f rounded up to even times kp
 * weights in all. pool = 2: a 2x2 max pooling of stride 2 follows (its output,
 * [ho / 2, wo / 2, f], is y), which must share the convolution's scale and
 * zero point (TFLite's rule for pooling). */
typedef struct kdk_q8_conv_params {
    int h, w, c;
    int kh, kw, stride_h, stride_w, pad_top, pad_left;
    int ho, wo, f;
    int kp;
    int32_t in_zp, out_zp, act_min, act_max;
    const int8_t *weights;
    const int32_t *bias, *mult, *shift;   /* per output channel */
    int pool;
    /* 1: every shift[o] is shift[0], so that a model.c's constant-shape code
     * (quant_kernels.h) folds the shift into its requantization; 0 (the
     * host's run) reads shift[o] */
    int same_shift;
} kdk_q8_conv_params;

/* int16 elements of scratch the convolution needs: two pixels' patches (2 kp)
 * and two rows of int32 sums (f rounded up to even each); 4-byte aligned. */
static inline size_t kdk_q8_conv_scratch(const kdk_q8_conv_params *p)
{
    return 2 * (size_t)p->kp + 4 * (size_t)((p->f + 1) & ~1);
}
void kdk_q8_conv2d(const kdk_q8_conv_params *p, const int8_t *x, int8_t *y, int16_t *scratch);

/* A Dense layer (h = w = 1) whose output is the model's, in float: y[o] =
 * scale[o] * (its int32 sum of channel o), scale[o] = the input's scale
 * times channel o's weight scale: the logits without an int8 requantization
 * (which would round them to the output's 256 levels); act_min, act_max,
 * mult, shift and out_zp unused. Scratch as kdk_q8_conv2d's. */
void kdk_q8_dense_float(const kdk_q8_conv_params *p, const int8_t *x, float *y, const float *scale, int16_t *scratch);

/* A depthwise convolution with depth multiplier 1: weights[(ky * kw + kx) * c + ch]
 * (Keras' layout), f = c; no scratch. */
void kdk_q8_depthwise_conv2d(const kdk_q8_conv_params *p, const int8_t *x, int8_t *y);

/* Max and average pooling. Max pooling keeps its input's scale and zero
 * point (TFLite's rule): the max is taken on the int8 values. Average
 * pooling has its own (a mean is finer than its inputs: at the input's
 * scale the global average before ResNet-8's Dense loses the digits that
 * decide the class), as TFLite's MEAN computes it: the int32 sum of
 * (x - in_zp) over the positions inside the input, times in_scale /
 * out_scale by the multiplier mult and shift, divided by their count
 * (rounded half away from zero), plus out_zp. Then the clamp. */
typedef struct kdk_q8_pool_params {
    int h, w, c;
    int kh, kw, stride_h, stride_w, pad_top, pad_left;
    int ho, wo;
    int32_t act_min, act_max;
    int32_t in_zp, out_zp, mult, shift;   /* average pooling only */
} kdk_q8_pool_params;
void kdk_q8_maxpool2d(const kdk_q8_pool_params *p, const int8_t *x, int8_t *y);
void kdk_q8_avgpool2d(const kdk_q8_pool_params *p, const int8_t *x, int8_t *y);

/* Element-wise a + b (same shape), TFLite's int8 Add: both inputs brought to
 * twice the larger input scale with 20 bits of headroom, summed, then to
 * the output's scale; each step a fixed-point multiplier and shift. */
typedef struct kdk_q8_add_params {
    int32_t n;
    int32_t a_zp, b_zp, out_zp, left_shift;
    int32_t a_mult, a_shift, b_mult, b_shift, out_mult, out_shift;
    int32_t act_min, act_max;
} kdk_q8_add_params;
void kdk_q8_add(const kdk_q8_add_params *p, const int8_t *a, const int8_t *b, int8_t *y);

/* max(x, lo) element-wise, n elements (a ReLU that follows an op whose clamp
 * could not take it); y may be x. */
void kdk_q8_clamp_min(const int8_t *x, int8_t *y, int32_t n, int32_t lo);

/* float <-> int8 at a tensor's scale and zero point: q = round(x / s) + z
 * (half away from zero, clamped to int8), x = s (q - z). inv_scale = 1 / s. */
void kdk_q8_quantize(const float *x, int8_t *q, int32_t n, float inv_scale, int32_t zp);
void kdk_q8_dequantize(const int8_t *q, float *x, int32_t n, float scale, int32_t zp);

/* gemmlowp's fixed-point steps, as TFLite's reference kernels use them. */
#if defined(__GNUC__)
#define KDK_Q8_INLINE static inline __attribute__((always_inline))
#else
#define KDK_Q8_INLINE static inline
#endif

KDK_Q8_INLINE int32_t kdk_q8_srdhm(int32_t a, int32_t b)   /* SaturatingRoundingDoublingHighMul */
{
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * b;
    int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

KDK_Q8_INLINE int32_t kdk_q8_rdbpot(int32_t x, int e)     /* RoundingDivideByPOT, 0 <= e <= 31 */
{
    int32_t mask = (int32_t)(((int64_t)1 << e) - 1), rem = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > threshold ? 1 : 0);
}

/* TFLite's MultiplyByQuantizedMultiplier: acc * mult * 2^(shift - 31), rounded
 * as the two functions above round, for mult in [2^30, 2^31) (what
 * QuantizeMultiplier makes; or mult = shift = 0) and -31 <= shift <= 30.
 * Written for few instructions, exactly (tests/test_quant.c checks it
 * against 128-bit arithmetic):
 *   - SaturatingRoundingDoublingHighMul's nudge then truncation toward zero
 *     is r1 = floor((ab + 2^30) / 2^31) for every ab = acc * mult (and never
 *     saturates, mult being positive);
 *   - RoundingDivideByPOT by e = -shift >= 1 is floor((r1 + 2^(e-1) - [r1 < 0]) / 2^e),
 *     and [r1 < 0] may be [acc < 0] (they differ only when r1 = 0, where
 *     both give 0); the two floors are one, floor(T / 2^(31 + e)) with
 *     T = ab + (acc < 0 ? -2^30 : 2^30) + 2^(30 + e): the high word of the
 *     product (plus the nudge) shifted, and nothing overflows. */
KDK_Q8_INLINE int32_t kdk_q8_requantize(int32_t acc, int32_t mult, int32_t shift)
{
    if (shift >= 0) {
        int64_t ab = (int64_t)(int32_t)((uint32_t)acc << shift) * mult;
        return (int32_t)((ab + (1 << 30)) >> 31);
    }
    int e = -shift;
    uint32_t s = (uint32_t)(acc >> 31);   /* the nudge +-2^30 as a 64-bit start for SMLAL: (s << 32) | (s << 31 ^ 2^30) */
    int64_t t0 = (int64_t)(((uint64_t)s << 32) | ((s << 31) ^ 0x40000000u)) + (int64_t)acc * mult;
    int32_t hi = (int32_t)(t0 >> 32);
    if (e == 1) return hi + (int32_t)((uint32_t)t0 >> 31);   /* floor((t0 + 2^31) / 2^32) */
    return (hi + (1 << (e - 2))) >> (e - 1);                  /* 2^(30 + e) is 2^(e - 2) in the high word */
}

#ifdef __cplusplus
}
#endif

#endif
