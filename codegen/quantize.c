/* quantize.c — int8 post-training quantization (quantize.h): the graph as
 * int8 layers, calibration by the interpreter, TFLite's parameters, and
 * the host's run of the int8 kernels. */
#include "quantize.h"

#include "interp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the plan: the graph as int8 layers ------------------------------------------------- */

typedef struct builder {
    kq_model *m;
    kd_diags *d;
    int *tensor_of;         /* node id -> tensor, -1 */
    int *uses;              /* node id -> operand uses + outputs */
    int *producer;          /* tensor -> the layer writing it, -1 */
} builder;

static int new_tensor(builder *b, const ir_node *n)
{
    kq_tensor *t = kd_alloc(b->m->arena, sizeof *t);
    t->node = n;
    t->elems = ir_shape_elems(&n->shape);
    bool image = n->shape.batched && n->shape.rank == 4;
    t->h = image ? (int)n->shape.dims[1] : 1;
    t->w = image ? (int)n->shape.dims[2] : 1;
    t->c = image ? (int)n->shape.dims[3] : (int)t->elems;
    t->lo = INFINITY, t->hi = -INFINITY;
    t->first = t->last = -1;
    kd_vec_push(b->m->arena, &b->m->tensors, t);
    b->tensor_of[n->id] = b->m->tensors.len - 1;
    return b->m->tensors.len - 1;
}

static const char *layer_name(const ir_node *n) { return n->layer ? n->layer : "?"; }

static bool unsupported(builder *b, const ir_node *n, const char *what)
{
    kd_error(b->d, n->loc, "--quantize int8: layer '%s': %s", layer_name(n), what);
    return false;
}

/* Operand i of n as a tensor (an activation the plan computes), else -1 after reporting. */
static int operand(builder *b, const ir_node *n, int i)
{
    int t = b->tensor_of[n->in[i]->id];
    if (t < 0) unsupported(b, n, kd_format(b->m->arena, "%s of a weight or constant has no int8 form",
                                           ir_ops[n->op]->name));
    return t;
}

static kq_layer *new_layer(builder *b, kq_kind kind, const ir_node *n, int in)
{
    kq_layer *l = kd_alloc(b->m->arena, sizeof *l);
    l->kind = kind, l->node = n, l->name = layer_name(n), l->in = in, l->in2 = -1;
    kd_vec_push(b->m->arena, &b->m->layers, l);
    l->out = new_tensor(b, n);
    b->producer[l->out] = b->m->layers.len - 1;
    return l;
}

/* A convolution's or Dense's weights: operand 1 the kernel, operand 2 (if any) the bias, both variables. */
static bool weights(builder *b, const ir_node *n, kq_layer *l)
{
    l->kernel = n->in[1];
    l->bias = n->nin > 2 ? n->in[2] : NULL;
    if (l->kernel->op != IR_VAR || (l->bias && l->bias->op != IR_VAR))
        return unsupported(b, n, "its weights are computed, not variables");
    l->act = n->op == IR_FUSED_CONV2D || n->op == IR_FUSED_MATMUL || n->op == IR_FUSED_DEPTHWISE_CONV2D
                 ? n->attr.act
                 : IR_ACT_NONE;
    if (l->act != IR_ACT_NONE && l->act != IR_ACT_RELU && l->act != IR_ACT_RELU6)
        return unsupported(b, n, kd_format(b->m->arena, "activation %s has no int8 form (relu and relu6 do)",
                                           ir_acts[l->act].name));
    return true;
}

static void window_of(const ir_node *n, int kh, int kw, int *p)
{
    /* h, w, c, kh, kw, stride_h, stride_w, pad_top, pad_left, ho, wo */
    const ir_shape *x = &n->in[0]->shape;
    int v[11] = {(int)x->dims[1], (int)x->dims[2], (int)x->dims[3], kh, kw, n->attr.stride[0], n->attr.stride[1],
                 (int)n->attr.pad_lo[0], (int)n->attr.pad_lo[1], (int)n->shape.dims[1], (int)n->shape.dims[2]};
    memcpy(p, v, sizeof v);
}

static bool conv_layer(builder *b, const ir_node *n, kq_kind kind)
{
    int in = operand(b, n, 0);
    if (in < 0) return false;
    kq_layer *l = new_layer(b, kind, n, in);
    if (!weights(b, n, l)) return false;
    kdk_q8_conv_params *c = &l->conv;
    const int64_t *k = l->kernel->shape.dims;
    if (kind == KQ_DENSE) {
        if (n->attr.trans_a || n->attr.trans_b || n->in[0]->shape.rank != 2)
            return unsupported(b, n, "a matrix product other than Dense's [batch, in] x [in, out]");
        c->h = c->w = c->kh = c->kw = c->stride_h = c->stride_w = c->ho = c->wo = 1;
        c->c = (int)k[0], c->f = (int)k[1];
    } else {
        int v[11];
        window_of(n, (int)k[0], (int)k[1], v);
        c->h = v[0], c->w = v[1], c->c = v[2], c->kh = v[3], c->kw = v[4], c->stride_h = v[5], c->stride_w = v[6];
        c->pad_top = v[7], c->pad_left = v[8], c->ho = v[9], c->wo = v[10];
        c->f = (int)n->shape.dims[3];
        if (kind == KQ_DEPTHWISE && (k[3] != 1 || n->attr.dilation[0] > 1 || n->attr.dilation[1] > 1))
            return unsupported(b, n, "a depthwise convolution with a depth multiplier or a dilation");
    }
    return true;
}

static bool pool_layer(builder *b, const ir_node *n, kq_kind kind)
{
    int in = operand(b, n, 0);
    if (in < 0) return false;
    kq_layer *l = new_layer(b, kind, n, in);
    int v[11];
    window_of(n, n->attr.window[0], n->attr.window[1], v);
    kdk_q8_pool_params *p = &l->pool;
    p->h = v[0], p->w = v[1], p->c = v[2], p->kh = v[3], p->kw = v[4], p->stride_h = v[5], p->stride_w = v[6];
    p->pad_top = v[7], p->pad_left = v[8], p->ho = v[9], p->wo = v[10];
    return true;
}

/* GlobalAveragePooling2D (a mean over an image's rows and columns): an
 * average pooling whose one window is the image. */
static bool global_average(builder *b, const ir_node *n)
{
    const ir_shape *x = &n->in[0]->shape;
    if (!x->batched || x->rank != 4 || n->attr.axes != ((1 << 1) | (1 << 2)))
        return unsupported(b, n, "a mean over other axes than an image's rows and columns");
    int in = operand(b, n, 0);
    if (in < 0) return false;
    kq_layer *l = new_layer(b, KQ_AVGPOOL, n, in);
    kdk_q8_pool_params *p = &l->pool;
    p->h = p->kh = (int)x->dims[1], p->w = p->kw = (int)x->dims[2], p->c = (int)x->dims[3];
    p->stride_h = p->stride_w = p->ho = p->wo = 1;
    return true;
}

/* A 2x2 max pooling of stride 2 after a convolution whose result nothing
 * else reads: part of the convolution (quant.h's pool), one requantization
 * per pooled output. Its tensor is the pooling's, calibrated on it. */
static bool fuse_pool(builder *b, const ir_node *n)
{
    const ir_node *x = n->in[0];
    int t = b->tensor_of[x->id];
    if (t < 0 || b->uses[x->id] != 1 || b->producer[t] < 0) return false;
    kq_layer *l = b->m->layers.items[b->producer[t]];
    if (l->kind != KQ_CONV || l->conv.pool || n->attr.window[0] != 2 || n->attr.window[1] != 2 || n->attr.stride[0] != 2 ||
        n->attr.stride[1] != 2 || n->attr.pad_lo[0] || n->attr.pad_lo[1] || n->attr.pad_hi[0] || n->attr.pad_hi[1] ||
        n->shape.dims[1] != l->conv.ho / 2 || n->shape.dims[2] != l->conv.wo / 2)
        return false;
    l->conv.pool = 2;
    kq_tensor *q = b->m->tensors.items[t];
    q->node = n, q->elems = ir_shape_elems(&n->shape), q->h = (int)n->shape.dims[1], q->w = (int)n->shape.dims[2];
    b->tensor_of[n->id] = t;
    return true;
}

/* A ReLU after a layer that has a clamp and nothing else reading its result
 * becomes that clamp (the tensor then calibrated on the ReLU's output, so
 * all 256 levels cover [0, max]); else a layer of its own. */
static bool relu(builder *b, const ir_node *n)
{
    int in = operand(b, n, 0);
    if (in < 0) return false;
    int at = b->producer[in];
    kq_layer *l = at >= 0 ? b->m->layers.items[at] : NULL;
    if (l && b->uses[n->in[0]->id] == 1 && l->act == IR_ACT_NONE && l->kind != KQ_MAXPOOL && l->kind != KQ_AVGPOOL &&
        l->kind != KQ_RELU) {
        l->act = n->op == IR_RELU ? IR_ACT_RELU : IR_ACT_RELU6;
        ((kq_tensor *)b->m->tensors.items[in])->node = n;
        b->tensor_of[n->id] = in;
        return true;
    }
    if (n->op == IR_RELU6) return unsupported(b, n, "a relu6 that follows no convolution, Dense or Add");
    new_layer(b, KQ_RELU, n, in);
    return true;
}

/* layer + bias, where the passes left the bias apart (a depthwise
 * convolution): the bias of the layer, when nothing else reads its result. */
static bool bias_add(builder *b, const ir_node *n)
{
    const ir_node *x = n->in[0], *v = n->in[1];
    if (v->op != IR_VAR || b->tensor_of[x->id] < 0 || b->uses[x->id] != 1) return false;
    int at = b->producer[b->tensor_of[x->id]];
    kq_layer *l = at >= 0 ? b->m->layers.items[at] : NULL;
    if (!l || l->bias || l->act != IR_ACT_NONE || (l->kind != KQ_CONV && l->kind != KQ_DEPTHWISE && l->kind != KQ_DENSE) ||
        v->shape.rank != 1 || v->shape.dims[0] != l->conv.f)
        return false;
    l->bias = v;
    ((kq_tensor *)b->m->tensors.items[l->out])->node = n;
    b->tensor_of[n->id] = l->out;
    return true;
}

static bool node(builder *b, const ir_node *n, bool is_output)
{
    switch (n->op) {
    case IR_INPUT:
        if (n->attr.i32) return unsupported(b, n, "an integer input");
        b->m->input = new_tensor(b, n);
        return true;
    case IR_VAR:
    case IR_CONST: return true;   /* read by the layers that take them */
    case IR_RESHAPE: {
        int in = operand(b, n, 0);
        if (in < 0) return false;
        if (n->shape.rank != 2) return unsupported(b, n, "a reshape into anything but a vector (Flatten)");
        b->tensor_of[n->id] = in;   /* the same bytes: NHWC flattened is the vector */
        return true;
    }
    case IR_CONV2D:
    case IR_FUSED_CONV2D: return conv_layer(b, n, KQ_CONV);
    case IR_FUSED_DEPTHWISE_CONV2D:
    case IR_DEPTHWISE_CONV2D: return conv_layer(b, n, KQ_DEPTHWISE);
    case IR_MATMUL:
    case IR_FUSED_MATMUL: return conv_layer(b, n, KQ_DENSE);
    case IR_MAXPOOL2D: return fuse_pool(b, n) || pool_layer(b, n, KQ_MAXPOOL);
    case IR_AVGPOOL2D: return pool_layer(b, n, KQ_AVGPOOL);
    case IR_MEAN: return global_average(b, n);
    case IR_ADD: {
        if (bias_add(b, n)) return true;
        int x = operand(b, n, 0), y = x >= 0 ? operand(b, n, 1) : -1;
        if (y < 0) return false;
        if (!ir_shape_equal(&n->in[0]->shape, &n->in[1]->shape))
            return unsupported(b, n, "an add of two shapes (broadcasting) has no int8 form here");
        new_layer(b, KQ_ADD, n, x)->in2 = y;
        return true;
    }
    case IR_RELU:
    case IR_RELU6: return relu(b, n);
    case IR_SOFTMAX: {
        int in = operand(b, n, 0);
        if (in < 0) return false;
        if (!is_output || n->attr.axis != n->shape.rank - 1)
            return unsupported(b, n, "a softmax anywhere but over the last axis of the output");
        b->m->softmax = true;
        b->tensor_of[n->id] = in;
        return true;
    }
    default:
        return unsupported(b, n, kd_format(b->m->arena, "%s has no int8 form (Conv2D, DepthwiseConv2D, Dense, "
                                           "pooling, global average pooling, Flatten, Add, ReLU and a final softmax do)",
                                           ir_ops[n->op]->name));
    }
}

kq_model *kq_build(const lp_program *p, const kd_graphs *G, kd_diags *d)
{
    if (!p->embedded) {
        kd_error(d, (kd_loc){0}, "--quantize int8 needs the weights: --embed-weights W.safetensors");
        return NULL;
    }
    if (p->ninputs != 1 || p->noutputs != 1) {
        kd_error(d, (kd_loc){0}, "--quantize int8: model '%s' has %d inputs and %d outputs; one of each is supported",
                 p->name, p->ninputs, p->noutputs);
        return NULL;
    }
    const ir_graph *g = G->g[LP_F_PREDICT_FOLDED] ? G->g[LP_F_PREDICT_FOLDED] : G->g[LP_F_PREDICT];
    kq_model *m = kd_alloc(p->arena, sizeof *m);
    m->arena = p->arena, m->p = p, m->g = g, m->input = -1;
    int n = g->nodes.len;
    builder b = {m, d, kd_alloc_array(m->arena, (size_t)n, sizeof(int)), kd_alloc_array(m->arena, (size_t)n, sizeof(int)),
                 kd_alloc_array(m->arena, (size_t)n + 1, sizeof(int))};
    for (int i = 0; i < n; i++) {
        const ir_node *x = g->nodes.items[i];
        b.tensor_of[i] = b.producer[i] = -1;
        for (int j = 0; j < x->nin; j++) b.uses[x->in[j]->id]++;
    }
    const ir_node *out = g->outputs.items[0];
    b.uses[out->id]++;
    for (int i = 0; i < n; i++)
        if (!node(&b, g->nodes.items[i], g->nodes.items[i] == out)) return NULL;
    m->output = b.tensor_of[out->id];
    if (m->output < 0 || m->input < 0 || m->layers.len == 0) {
        kd_error(d, out->loc, "--quantize int8: the output of model '%s' is not computed by any int8 layer", p->name);
        return NULL;
    }
    const kq_layer *last = m->layers.items[m->layers.len - 1];
    m->float_output = last->out == m->output && last->kind == KQ_DENSE && last->act == IR_ACT_NONE;
    return m;
}

/* ---- calibration --------------------------------------------------------------------------- */

#define KQ_CALIBRATION_BATCH 8   /* the interpreter keeps every node's value: a few samples a run */
#define KQ_BINS 2048             /* a histogram's bins over the tensor's [min, max] */
#define KQ_MSE_STEPS 64          /* mse: each end of the range tried at 1/64 ... 64/64 of the extreme */

typedef struct histogram {
    double lo, width;
    double *count;          /* KQ_BINS */
} histogram;

/* visit(m, tensor, its values over `batch` samples, ctx) for every tensor,
 * the interpreter run over n samples KQ_CALIBRATION_BATCH at a time. */
typedef void visit_fn(kq_model *m, int t, const double *v, int64_t count, void *ctx);

static bool run_samples(kq_model *m, const float *x, int64_t n, visit_fn *visit, void *ctx, kd_diags *d)
{
    const lp_program *p = m->p;
    int nvars = m->g->vars->len;
    const double **vars = kd_alloc_array(m->arena, (size_t)nvars + 1, sizeof *vars);
    for (int v = 0; v < nvars && v < p->nvars; v++)
        if (p->vars[v]->kind != VAR_SLOT) vars[v] = p->embedded + p->vars[v]->offset;
    const kq_tensor *in = m->tensors.items[m->input];
    double *xd = malloc(sizeof(double) * (size_t)(KQ_CALIBRATION_BATCH * in->elems));
    if (!xd) {
        kd_error(d, (kd_loc){0}, "--quantize int8: out of memory for calibration");
        return false;
    }
    bool ok = true;
    for (int64_t at = 0; at < n && ok; at += KQ_CALIBRATION_BATCH) {
        int batch = (int)(n - at < KQ_CALIBRATION_BATCH ? n - at : KQ_CALIBRATION_BATCH);
        for (int64_t i = 0; i < batch * in->elems; i++) xd[i] = x[at * in->elems + i];
        const double *inputs[1] = {xd};
        ir_feed feed = {.batch = batch, .inputs = inputs, .vars = vars};
        char why[512];
        ir_values *vals = ir_interp_run(m->g, &feed, why, sizeof why);
        if (!vals) {
            kd_error(d, (kd_loc){0}, "--quantize int8: calibration: %s", why);
            ok = false;
            break;
        }
        for (int t = 0; t < m->tensors.len; t++) {
            const kq_tensor *q = m->tensors.items[t];
            visit(m, t, ir_value(vals, q->node), batch * q->elems, ctx);
        }
        ir_values_free(vals);
    }
    free(xd);
    return ok;
}

static void widen_range(kq_model *m, int t, const double *v, int64_t count, void *ctx)
{
    (void)ctx;
    kq_tensor *q = m->tensors.items[t];
    for (int64_t i = 0; i < count; i++) {
        if (v[i] < q->lo) q->lo = v[i];
        if (v[i] > q->hi) q->hi = v[i];
    }
}

static void add_to_histogram(kq_model *m, int t, const double *v, int64_t count, histogram *all)
{
    (void)m;
    histogram *h = all + t;
    for (int64_t i = 0; i < count; i++) {
        double b = h->width > 0 ? (v[i] - h->lo) / h->width : 0;
        h->count[b < 0 ? 0 : b >= KQ_BINS ? KQ_BINS - 1 : (int)b]++;
    }
}

/* percentile: the range from the (100 - p)th to the pth percentile, each
 * end at the edge of the bin where the count beyond it passes (100 - p)% */
static void clip_percentile(const histogram *h, double p, double *lo, double *hi)
{
    double total = 0, below = 0, above = 0;
    for (int b = 0; b < KQ_BINS; b++) total += h->count[b];
    double tail = total * (100 - p) / 100;
    int b0 = 0, b1 = KQ_BINS - 1;
    while (b0 < KQ_BINS - 1 && (below += h->count[b0]) <= tail) b0++;
    while (b1 > 0 && (above += h->count[b1]) <= tail) b1--;
    if (b0 > 0) *lo = h->lo + b0 * h->width;
    if (b1 < KQ_BINS - 1) *hi = h->lo + (b1 + 1) * h->width;
}

/* The quantization error of the histogram's values under [lo, hi] (holding
 * 0): s^2 / 12 for each value inside (rounding's, spread evenly), the
 * squared distance to the nearer end for each outside (clipping's). */
static double quantization_error(const histogram *h, double lo, double hi)
{
    double s = (hi - lo) / 255, err = 0;
    for (int b = 0; b < KQ_BINS; b++) {
        if (h->count[b] == 0) continue;
        double v = h->lo + (b + 0.5) * h->width, out = v < lo ? lo - v : v > hi ? v - hi : 0;
        err += h->count[b] * (out > 0 ? out * out : s * s / 12);
    }
    return err;
}

/* mse: of the ranges [lo * i / N, hi * j / N] (1 <= i, j <= N; lo <= 0 <= hi),
 * the one of least quantization error */
static void clip_mse(const histogram *h, double *lo, double *hi)
{
    double l0 = *lo < 0 ? *lo : 0, h0 = *hi > 0 ? *hi : 0, best = INFINITY, bl = l0, bh = h0;
    if (!(h0 > l0)) return;
    for (int i = l0 < 0 ? 1 : KQ_MSE_STEPS; i <= KQ_MSE_STEPS; i++)
        for (int j = h0 > 0 ? 1 : KQ_MSE_STEPS; j <= KQ_MSE_STEPS; j++) {
            double l = l0 * i / KQ_MSE_STEPS, u = h0 * j / KQ_MSE_STEPS, e = quantization_error(h, l, u);
            if (e < best) best = e, bl = l, bh = u;
        }
    *lo = bl, *hi = bh;
}

/* Each tensor's empty histogram over its [min, max] (the first run's), for
 * the second run to fill; NULL when out of memory. */
static histogram *new_histograms(const kq_model *m)
{
    int nt = m->tensors.len;
    histogram *h = calloc((size_t)nt, sizeof *h);
    double *counts = calloc((size_t)nt * KQ_BINS, sizeof *counts);
    if (!h || !counts) {
        free(h), free(counts);
        return NULL;
    }
    for (int t = 0; t < nt; t++) {
        const kq_tensor *q = m->tensors.items[t];
        h[t] = (histogram){q->lo, (q->hi - q->lo) / KQ_BINS, counts + (size_t)t * KQ_BINS};
    }
    return h;
}

static void free_histograms(histogram *h)
{
    if (h) free(h[0].count);
    free(h);
}

/* The ranges clipped by the method, from the filled histograms. */
static void clip_ranges(kq_model *m, const histogram *h, const kq_calibration *how)
{
    for (int t = 0; t < m->tensors.len; t++) {
        kq_tensor *q = m->tensors.items[t];
        if (how->method == KQ_CALIBRATE_PERCENTILE) clip_percentile(&h[t], how->percentile, &q->lo, &q->hi);
        else clip_mse(&h[t], &q->lo, &q->hi);
    }
}

/* gptq: a layer's input patches; at most KQ_HESSIAN_PIXELS output pixels a
 * sample, spread evenly, each patch in the kernel's (ky, kx, c) order, 0
 * outside the image */
#define KQ_HESSIAN_PIXELS 64
#define KQ_GPTQ_MAX_PATCH 1152   /* larger patches (K^2 doubles, K^3 steps) keep nearest rounding */

static int64_t patch_len(const kq_layer *l) { return (int64_t)l->conv.kh * l->conv.kw * l->conv.c; }

static void add_to_hessians(kq_model *m, int t, const double *v, int64_t count, double *patch)
{
    const kq_tensor *in = m->tensors.items[t];
    for (int i = 0; i < m->layers.len; i++) {
        kq_layer *l = m->layers.items[i];
        if (!l->hessian || l->in != t) continue;
        const kdk_q8_conv_params *c = &l->conv;
        int64_t K = patch_len(l), pixels = (int64_t)c->ho * c->wo, step = (pixels + KQ_HESSIAN_PIXELS - 1) / KQ_HESSIAN_PIXELS;
        for (int64_t b = 0; b < count / in->elems; b++)
            for (int64_t px = 0; px < pixels; px += step) {
                int oy = (int)(px / c->wo), ox = (int)(px % c->wo);
                int64_t k = 0;
                for (int ky = 0; ky < c->kh; ky++)
                    for (int kx = 0; kx < c->kw; kx++) {
                        int iy = oy * c->stride_h - c->pad_top + ky, ix = ox * c->stride_w - c->pad_left + kx;
                        bool inside = iy >= 0 && iy < c->h && ix >= 0 && ix < c->w;
                        const double *at = inside ? v + b * in->elems + ((int64_t)iy * c->w + ix) * c->c : NULL;
                        for (int ch = 0; ch < c->c; ch++) patch[k++] = at ? at[ch] : 0;
                    }
                for (int64_t r = 0; r < K; r++)
                    if (patch[r] != 0)
                        for (int64_t q = r; q < K; q++) l->hessian[r * K + q] += patch[r] * patch[q];
            }
    }
}

/* The zeroed sums of the layers GPTQ rounds, and a patch buffer for the
 * longest of their patches; NULL when out of memory. */
static double *new_hessians(kq_model *m)
{
    int64_t most = 1;
    for (int i = 0; i < m->layers.len; i++) {
        kq_layer *l = m->layers.items[i];
        int64_t K = patch_len(l);
        if ((l->kind != KQ_CONV && l->kind != KQ_DENSE) || K > KQ_GPTQ_MAX_PATCH) continue;
        if (!(l->hessian = calloc((size_t)(K * K), sizeof(double)))) return NULL;
        if (K > most) most = K;
    }
    return malloc(sizeof(double) * (size_t)most);
}

static void free_hessians(kq_model *m)
{
    for (int i = 0; i < m->layers.len; i++) {
        kq_layer *l = m->layers.items[i];
        free(l->hessian);
        l->hessian = NULL;
    }
}

/* The second run over the samples: histograms (NULL: none) and GPTQ's sums
 * (patch NULL: none) in one pass of the interpreter. */
typedef struct second_run {
    histogram *h;
    double *patch;
} second_run;

static void second_visit(kq_model *m, int t, const double *v, int64_t count, void *ctx)
{
    second_run *r = ctx;
    if (r->h) add_to_histogram(m, t, v, count, r->h);
    if (r->patch) add_to_hessians(m, t, v, count, r->patch);
}

bool kq_calibrate(kq_model *m, const float *x, int64_t n, const kq_calibration *how, kd_diags *d)
{
    if (!run_samples(m, x, n, widen_range, NULL, d)) return false;
    m->samples += (int)n;
    bool clip = how->method != KQ_CALIBRATE_MINMAX;
    if (!clip && !how->gptq) return true;
    second_run r = {clip ? new_histograms(m) : NULL, how->gptq ? new_hessians(m) : NULL};
    bool ok = (!clip || r.h) && (!how->gptq || r.patch);
    if (!ok) kd_error(d, (kd_loc){0}, "--quantize int8: out of memory for calibration");
    ok = ok && run_samples(m, x, n, second_visit, &r, d);
    if (ok && clip) clip_ranges(m, r.h, how);
    free_histograms(r.h);
    free(r.patch);
    if (!ok) free_hessians(m);
    return ok;
}

/* ---- TFLite's parameters ---------------------------------------------------------------------- */

void kq_quantize_multiplier(double real, int32_t *mult, int32_t *shift)
{
    if (real == 0) {
        *mult = *shift = 0;
        return;
    }
    int e;
    double q = frexp(real, &e);
    int64_t f = (int64_t)llround(q * (double)(1ll << 31));
    if (f == (1ll << 31)) f /= 2, e++;
    if (e < -31) f = 0, e = 0;
    *mult = (int32_t)f, *shift = e;
}

/* TFLite's ChooseQuantizationParams: [lo, hi] widened to hold 0, 256 levels,
 * the zero point the nearest integer to where 0 falls. */
static void choose_params(kq_tensor *t)
{
    double lo = t->lo < 0 ? t->lo : 0, hi = t->hi > 0 ? t->hi : 0;
    if (!(hi > lo)) hi = lo + 1.0;   /* a constant tensor (all 0): any scale */
    t->scale = (hi - lo) / 255.0;
    double zp = -128.0 - lo / t->scale;
    t->zp = (int32_t)(zp < -128 ? -128 : zp > 127 ? 127 : lround(zp));
}

static const double *value_of(const kq_model *m, const ir_node *var)
{
    return m->p->embedded + m->p->vars[var->var]->offset;
}

static int32_t clamp32(double v) { return v >= 2147483647.0 ? INT32_MAX : v <= -2147483648.0 ? INT32_MIN : (int32_t)lround(v); }

/* a (n x n, symmetric positive definite) replaced by its inverse, by
 * Cholesky: a = L L^T, a^-1 = L^-T L^-1. false if not positive definite. */
static bool spd_inverse(double *a, int n, double *L)
{
    for (int j = 0; j < n; j++) {
        double s = a[(int64_t)j * n + j];
        for (int k = 0; k < j; k++) s -= L[(int64_t)j * n + k] * L[(int64_t)j * n + k];
        if (!(s > 0)) return false;
        L[(int64_t)j * n + j] = sqrt(s);
        for (int i = j + 1; i < n; i++) {
            double t = a[(int64_t)i * n + j];
            for (int k = 0; k < j; k++) t -= L[(int64_t)i * n + k] * L[(int64_t)j * n + k];
            L[(int64_t)i * n + j] = t / L[(int64_t)j * n + j];
        }
        for (int i = 0; i < j; i++) L[(int64_t)i * n + j] = 0;
    }
    for (int j = 0; j < n; j++) {   /* L^-1 in place, lower triangular */
        L[(int64_t)j * n + j] = 1 / L[(int64_t)j * n + j];
        for (int i = j + 1; i < n; i++) {
            double t = 0;
            for (int k = j; k < i; k++) t -= L[(int64_t)i * n + k] * L[(int64_t)k * n + j];
            L[(int64_t)i * n + j] = t / L[(int64_t)i * n + i];
        }
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            double t = 0;
            for (int k = i; k < n; k++) t += L[(int64_t)k * n + i] * L[(int64_t)k * n + j];
            a[(int64_t)i * n + j] = a[(int64_t)j * n + i] = t;
        }
    return true;
}

/* The int8 weights q[k * f + o] of W ([K, f]) at the channel scales ws:
 * rounded to nearest, or (gptq, with the layer's patch second moments H)
 * GPTQ's order: weight k rounded, its error e divided by Hinv[k][k] taken
 * off the weights k' > k of the channel as e Hinv[k][k'] (the change of
 * those that best keeps the layer's output on the calibration patches),
 * then k removed from Hinv. */
static void round_weights(const double *W, int K, int f, const double *ws, const double *H, int8_t *q)
{
    double *w = malloc(sizeof(double) * (size_t)K * (size_t)f), *h = NULL, *tmp = NULL;
    if (w) memcpy(w, W, sizeof(double) * (size_t)K * (size_t)f);
    if (w && H) {
        h = malloc(sizeof(double) * (size_t)K * (size_t)K), tmp = malloc(sizeof(double) * (size_t)K * (size_t)K);
        double mean = 0;
        for (int k = 0; k < K; k++) mean += H[(int64_t)k * K + k] / K;
        if (h && tmp) {
            for (int r = 0; r < K; r++)   /* the upper triangle mirrored, damped by 1% of the mean diagonal */
                for (int c = r; c < K; c++)
                    h[(int64_t)r * K + c] = h[(int64_t)c * K + r] = H[(int64_t)r * K + c] + (r == c ? 0.01 * mean + 1e-12 : 0);
        }
        if (!h || !tmp || !(mean > 0) || !spd_inverse(h, K, tmp)) free(h), h = NULL;
    }
    for (int k = 0; k < K; k++) {
        for (int o = 0; o < f; o++) {
            double v = w ? w[(int64_t)k * f + o] : W[(int64_t)k * f + o], r = fmin(fmax(round(v / ws[o]), -127), 127);
            q[(int64_t)k * f + o] = (int8_t)r;
            if (!h) continue;
            double e = (v - r * ws[o]) / h[(int64_t)k * K + k];
            for (int j = k + 1; j < K; j++) w[(int64_t)j * f + o] -= e * h[(int64_t)k * K + j];
        }
        if (!h) continue;
        for (int i = k + 1; i < K; i++)   /* Hinv without row and column k */
            for (int j = k + 1; j < K; j++)
                h[(int64_t)i * K + j] -= h[(int64_t)i * K + k] * h[(int64_t)k * K + j] / h[(int64_t)k * K + k];
    }
    free(w), free(h), free(tmp);
}

/* Per output channel: int8 weights (symmetric, zero point 0), int32 bias at
 * s_in * s_w, the multiplier s_in * s_w / s_out. Conv and Dense kernels are
 * [k, f] row-major (k = (ky, kx, ci)), depthwise ones [k, c]; packed as
 * quant.h says. */
static void quantize_weights(kq_model *m, kq_layer *l, const kq_tensor *in, const kq_tensor *out)
{
    kdk_q8_conv_params *c = &l->conv;
    bool dw = l->kind == KQ_DEPTHWISE;
    int f = c->f, K = dw ? c->kh * c->kw : c->kh * c->kw * c->c, row = c->kw * c->c, rowp = (row + 3) / 4 * 4;
    c->kp = dw ? K : c->kh * rowp;
    l->nweights = dw ? (int64_t)K * f : (int64_t)(f + 1) / 2 * 2 * c->kp;
    int8_t *w = kd_alloc_array(m->arena, (size_t)l->nweights, 1);
    int32_t *bias = kd_alloc_array(m->arena, (size_t)f, 4), *mult = kd_alloc_array(m->arena, (size_t)f, 4),
            *shift = kd_alloc_array(m->arena, (size_t)f, 4);
    bool float_output = m->float_output && l == m->layers.items[m->layers.len - 1];
    float *dequant = float_output ? kd_alloc_array(m->arena, (size_t)f, sizeof(float)) : NULL;
    const double *W = value_of(m, l->kernel), *B = l->bias ? value_of(m, l->bias) : NULL;
    double *scales = kd_alloc_array(m->arena, (size_t)f, sizeof(double));
    int8_t *q = kd_alloc_array(m->arena, (size_t)K * (size_t)f, 1);
    for (int o = 0; o < f; o++) {
        double maxabs = 0;
        for (int k = 0; k < K; k++) maxabs = fmax(maxabs, fabs(W[(int64_t)k * f + o]));
        scales[o] = maxabs > 0 ? maxabs / 127.0 : 1.0;
    }
    round_weights(W, K, f, scales, l->hessian, q);
    free(l->hessian);
    l->hessian = NULL;
    for (int o = 0; o < f; o++) {
        double ws = scales[o];
        for (int k = 0; k < K; k++) {
            int kr = k / row * rowp + k % row;   /* its place in the filter, rows padded to rowp */
            int64_t at = dw ? (int64_t)k * f + o : (int64_t)(o / 2) * 2 * c->kp + (kr / 4) * 8 + (o & 1) * 4 + (kr & 3);
            w[at] = q[(int64_t)k * f + o];
        }
        bias[o] = B ? clamp32(B[o] / (in->scale * ws)) : 0;
        if (dequant) dequant[o] = (float)(in->scale * ws);
        kq_quantize_multiplier(in->scale * ws / out->scale, &mult[o], &shift[o]);
    }
    c->in_zp = in->zp, c->out_zp = out->zp;
    c->weights = w, c->bias = bias, c->mult = mult, c->shift = shift;
    l->dequant = dequant;
}

static void clamp_of(int act, const kq_tensor *t, int32_t *lo, int32_t *hi)
{
    *lo = act == IR_ACT_NONE ? -128 : t->zp > -128 ? t->zp : -128;
    double six = t->zp + round(6.0 / t->scale);
    *hi = act == IR_ACT_RELU6 && six < 127 ? (int32_t)six : 127;
}

/* TFLite's int8 Add (PrepareGeneralSubOp / the reference kernel's parameters). */
static void add_params(kq_layer *l, const kq_tensor *a, const kq_tensor *b, const kq_tensor *out)
{
    kdk_q8_add_params *p = &l->add;
    p->n = (int32_t)out->elems;
    p->a_zp = a->zp, p->b_zp = b->zp, p->out_zp = out->zp, p->left_shift = 20;
    double twice = 2 * fmax(a->scale, b->scale);
    kq_quantize_multiplier(a->scale / twice, &p->a_mult, &p->a_shift);
    kq_quantize_multiplier(b->scale / twice, &p->b_mult, &p->b_shift);
    kq_quantize_multiplier(twice / ((double)(1 << 20) * out->scale), &p->out_mult, &p->out_shift);
    clamp_of(l->act, out, &p->act_min, &p->act_max);
}

/* Greedy by size: each tensor at the lowest 4-aligned offset where it
 * overlaps no tensor live at the same time (lifetimes in layers). */
static void plan_arena(kq_model *m)
{
    int nt = m->tensors.len, nl = m->layers.len;
    kq_tensor **t = (kq_tensor **)m->tensors.items;
    t[m->input]->first = -1;
    for (int i = 0; i < nl; i++) {
        const kq_layer *l = m->layers.items[i];
        t[l->out]->first = i;
        t[l->in]->last = i;
        if (l->in2 >= 0) t[l->in2]->last = i;
    }
    t[m->output]->last = nl;
    int *order = kd_alloc_array(m->arena, (size_t)nt, sizeof(int));
    bool *placed = kd_alloc_array(m->arena, (size_t)nt, sizeof(bool));
    for (int i = 0; i < nt; i++) order[i] = i;
    for (int i = 1; i < nt; i++)   /* by size, largest first */
        for (int j = i; j > 0 && t[order[j]]->elems > t[order[j - 1]]->elems; j--) {
            int s = order[j];
            order[j] = order[j - 1], order[j - 1] = s;
        }
    int64_t top = 0;
    for (int i = 0; i < nt; i++) {
        kq_tensor *x = t[order[i]];
        int64_t at = 0;
        for (bool moved = true; moved;) {
            moved = false;
            for (int j = 0; j < nt; j++) {
                const kq_tensor *y = t[j];
                if (!placed[j] || y->last < x->first || x->last < y->first) continue;
                if (at < y->offset + y->elems && y->offset < at + x->elems) {
                    at = (y->offset + y->elems + 3) / 4 * 4;
                    moved = true;
                }
            }
        }
        x->offset = at;
        placed[order[i]] = true;
        if (at + x->elems > top) top = at + x->elems;
    }
    m->arena_bytes = m->scratch_bytes + (top + 3) / 4 * 4;
    if (m->arena_bytes == 0) m->arena_bytes = 4;
}

bool kq_quantize(kq_model *m, kd_diags *d)
{
    if (m->samples == 0) {
        kd_error(d, (kd_loc){0}, "--quantize int8: no calibration samples");
        return false;
    }
    for (int i = 0; i < m->tensors.len; i++) choose_params(m->tensors.items[i]);
    for (int i = 0; i < m->layers.len; i++) {
        kq_layer *l = m->layers.items[i];
        kq_tensor *in = m->tensors.items[l->in], *out = m->tensors.items[l->out];
        switch (l->kind) {
        case KQ_CONV:
        case KQ_DEPTHWISE:
        case KQ_DENSE: {
            quantize_weights(m, l, in, out);
            clamp_of(l->act, out, &l->conv.act_min, &l->conv.act_max);
            int64_t scratch = l->kind == KQ_DEPTHWISE ? 0 : (int64_t)kdk_q8_conv_scratch(&l->conv) * 2;
            if (scratch > m->scratch_bytes) m->scratch_bytes = scratch;
            break;
        }
        case KQ_AVGPOOL:   /* its own scale and zero point, as TFLite's MEAN (quant.h) */
            l->pool.act_min = -128, l->pool.act_max = 127;
            l->pool.in_zp = in->zp, l->pool.out_zp = out->zp;
            kq_quantize_multiplier(in->scale / out->scale, &l->pool.mult, &l->pool.shift);
            break;
        case KQ_MAXPOOL:
        case KQ_RELU:   /* TFLite's rule: the input's scale and zero point */
            out->scale = in->scale, out->zp = in->zp;
            l->pool.act_min = -128, l->pool.act_max = 127;
            l->relu_lo = in->zp;
            break;
        case KQ_ADD: add_params(l, in, m->tensors.items[l->in2], out); break;
        }
    }
    plan_arena(m);
    return true;
}

/* ---- the host's run ------------------------------------------------------------------------------ */

static void softmax(float *y, int64_t n)
{
    float mx = y[0], sum = 0;
    for (int64_t i = 1; i < n; i++) mx = y[i] > mx ? y[i] : mx;
    for (int64_t i = 0; i < n; i++) sum += y[i] = expf(y[i] - mx);
    for (int64_t i = 0; i < n; i++) y[i] /= sum;
}

void kq_run(const kq_model *m, const float *x, float *y, void *arena)
{
    int8_t *base = (int8_t *)arena + m->scratch_bytes;
    int16_t *scratch = arena;
#define AT(t) (base + ((const kq_tensor *)m->tensors.items[t])->offset)
    const kq_tensor *in = m->tensors.items[m->input], *out = m->tensors.items[m->output];
    kdk_q8_quantize(x, AT(m->input), (int32_t)in->elems, (float)(1.0 / in->scale), in->zp);
    int nl = m->layers.len - (m->float_output ? 1 : 0);
    for (int i = 0; i < nl; i++) {
        const kq_layer *l = m->layers.items[i];
        switch (l->kind) {
        case KQ_CONV:
        case KQ_DENSE: kdk_q8_conv2d(&l->conv, AT(l->in), AT(l->out), scratch); break;
        case KQ_DEPTHWISE: kdk_q8_depthwise_conv2d(&l->conv, AT(l->in), AT(l->out)); break;
        case KQ_MAXPOOL: kdk_q8_maxpool2d(&l->pool, AT(l->in), AT(l->out)); break;
        case KQ_AVGPOOL: kdk_q8_avgpool2d(&l->pool, AT(l->in), AT(l->out)); break;
        case KQ_ADD: kdk_q8_add(&l->add, AT(l->in), AT(l->in2), AT(l->out)); break;
        case KQ_RELU:
            kdk_q8_clamp_min(AT(l->in), AT(l->out), (int32_t)((const kq_tensor *)m->tensors.items[l->out])->elems,
                             l->relu_lo);
            break;
        }
    }
    if (m->float_output) {
        const kq_layer *l = m->layers.items[nl];
        kdk_q8_dense_float(&l->conv, AT(l->in), y, l->dequant, scratch);
    } else {
        kdk_q8_dequantize(AT(m->output), y, (int32_t)out->elems, (float)out->scale, out->zp);
    }
#undef AT
    if (m->softmax) softmax(y, out->elems);
}
