/* quant.c — the int8 kernels (quant.h): TFLite's integer arithmetic, with
 * the Cortex-M4's SIMD multiply-adds where the compiler targets them. */
#include "quant_kernels.h"

/* ---- convolution and Dense: quant_kernels.h's bodies, parameters read at run time ---------------- */

void kdk_q8_conv2d(const kdk_q8_conv_params *p, const int8_t *x, int8_t *y, int16_t *scratch)
{
    kdk_q8_conv2d_body(p, x, y, scratch);
}

void kdk_q8_dense_float(const kdk_q8_conv_params *p, const int8_t *x, float *y, const float *scale, int16_t *scratch)
{
    kdk_q8_dense_float_body(p, x, y, scale, scratch);
}

void kdk_q8_depthwise_conv2d(const kdk_q8_conv_params *p, const int8_t *x, int8_t *y)
{
    kdk_q8_depthwise_conv2d_body(p, x, y);
}

/* ---- pooling ---------------------------------------------------------------------------------- */

/* The window of output (oy, ox) clipped to the input: rows [*y0, *y1), columns [*x0, *x1). */
static void window(const kdk_q8_pool_params *p, int oy, int ox, int *y0, int *y1, int *x0, int *x1)
{
    int iy = oy * p->stride_h - p->pad_top, ix = ox * p->stride_w - p->pad_left;
    *y0 = iy < 0 ? 0 : iy;
    *y1 = iy + p->kh > p->h ? p->h : iy + p->kh;
    *x0 = ix < 0 ? 0 : ix;
    *x1 = ix + p->kw > p->w ? p->w : ix + p->kw;
}

/* Max (max = true) or average over each window, clipped to the input. */
static void pool(const kdk_q8_pool_params *p, const int8_t *x, int8_t *y, bool max)
{
    int c = p->c;
    for (int oy = 0; oy < p->ho; oy++)
        for (int ox = 0; ox < p->wo; ox++) {
            int y0, y1, x0, x1;
            window(p, oy, ox, &y0, &y1, &x0, &x1);
            int32_t count = (y1 - y0) * (x1 - x0);
            int8_t *out = y + ((long)oy * p->wo + ox) * c;
            for (int ch = 0; ch < c; ch++) {
                int32_t m = -128, sum = 0;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) {
                        int32_t v = x[((long)iy * p->w + ix) * c + ch];
                        m = v > m ? v : m;
                        sum += v;
                    }
                if (max) {
                    out[ch] = kdk_q8k_clamp8(m, p->act_min, p->act_max);
                    continue;
                }
                /* TFLite's integer Mean: the sum of (x - in_zp) at the output's scale, then divided by the count */
                int32_t s = kdk_q8_requantize(sum - count * p->in_zp, p->mult, p->shift);
                int32_t avg = count == 0 ? 0 : s > 0 ? (s + count / 2) / count : (s - count / 2) / count;
                out[ch] = kdk_q8k_clamp8(avg + p->out_zp, p->act_min, p->act_max);
            }
        }
}

void kdk_q8_maxpool2d(const kdk_q8_pool_params *p, const int8_t *x, int8_t *y) { pool(p, x, y, true); }

void kdk_q8_avgpool2d(const kdk_q8_pool_params *p, const int8_t *x, int8_t *y) { pool(p, x, y, false); }

/* ---- element-wise ------------------------------------------------------------------------------ */

void kdk_q8_add(const kdk_q8_add_params *p, const int8_t *a, const int8_t *b, int8_t *y) { kdk_q8_add_body(p, a, b, y); }

void kdk_q8_clamp_min(const int8_t *x, int8_t *y, int32_t n, int32_t lo)
{
    for (int32_t i = 0; i < n; i++) y[i] = x[i] < lo ? (int8_t)lo : x[i];
}

void kdk_q8_quantize(const float *x, int8_t *q, int32_t n, float inv_scale, int32_t zp)
{
    for (int32_t i = 0; i < n; i++) {
        float v = x[i] * inv_scale;
        v = v >= 0 ? v + 0.5f : v - 0.5f;   /* half away from zero, then truncated */
#if defined(__ARM_FP) && (__ARM_FP & 4) && defined(__ARM_FEATURE_DSP)
        /* VCVT truncates, saturates and takes NaN to 0, as the C below; QADD
         * and SSAT saturate the sum and the int8: 5 instructions for its 12 */
        int32_t r;
        __asm__("vcvt.s32.f32 %0, %0" : "+t"(v));
        memcpy(&r, &v, 4);
        /* SSAT by hand: GCC 12's arm_acle.h __ssat macro trips -Wsign-conversion */
        int32_t sum = __qadd(r, zp), sat;
        __asm__("ssat %0, #8, %1" : "=r"(sat) : "r"(sum));
        q[i] = (int8_t)sat;
#else
        int32_t r = v != v ? 0 : v >= 2147483520.0f ? INT32_MAX : v <= -2147483520.0f ? INT32_MIN : (int32_t)v;
        int64_t z = (int64_t)r + zp;
        q[i] = (int8_t)(z < -128 ? -128 : z > 127 ? 127 : z);
#endif
    }
}

void kdk_q8_dequantize(const int8_t *q, float *x, int32_t n, float scale, int32_t zp)
{
    for (int32_t i = 0; i < n; i++) x[i] = scale * (float)(q[i] - zp);
}
