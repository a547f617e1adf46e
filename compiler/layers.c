/* layers.c — the built-in layers. Each layer is one table entry: its Keras
 * name, its arguments with Keras' defaults, and one function that makes its
 * variables (on the first call) and emits its ops. */
#include "sema_internal.h"

#include <math.h>
#include <string.h>

sv *layer_arg(const kd_instance *inst, const char *name)
{
    for (int i = 0; i < inst->nargs; i++)
        if (strcmp(inst->arg_names[i], name) == 0) return inst->args[i];
    return NULL;
}

static int64_t int_arg(sema *S, const kd_instance *inst, const char *name, int64_t lo, bool *ok)
{
    sv *v = layer_arg(inst, name);
    int64_t n = 0;
    if (!sv_as_int(S, v, &n, kd_format(S->a, "%s argument '%s'", inst->type, name))) {
        *ok = false;
        return 0;
    }
    if (n < lo || n > ((int64_t)1 << 31)) {
        sema_error(S, v->loc, "%s argument '%s' must be at least %lld, got %lld", inst->type, name, (long long)lo, (long long)n);
        *ok = false;
    }
    return n;
}

static double num_arg(sema *S, const kd_instance *inst, const char *name, bool *ok)
{
    double x = 0;
    if (!sv_as_number(S, layer_arg(inst, name), &x, kd_format(S->a, "%s argument '%s'", inst->type, name))) *ok = false;
    return x;
}

static bool bool_arg(sema *S, const kd_instance *inst, const char *name, bool *ok)
{
    bool b = false;
    if (!sv_as_bool(S, layer_arg(inst, name), &b, kd_format(S->a, "%s argument '%s'", inst->type, name))) *ok = false;
    return b;
}

/* An int or a list of two ints: kernel_size: 3, strides: [2, 2]. */
static bool pair_arg(sema *S, const kd_instance *inst, const char *name, int out[2])
{
    sv *v = layer_arg(inst, name);
    int64_t a, b;
    if (v && v->kind == SV_LIST && v->n == 2) {
        if (!sv_as_int(S, v->items[0], &a, name) || !sv_as_int(S, v->items[1], &b, name)) return false;
    } else if (v && (v->kind == SV_INT || v->kind == SV_FLOAT)) {
        if (!sv_as_int(S, v, &a, name)) return false;
        b = a;
    } else {
        sema_error(S, v ? v->loc : inst->loc, "%s argument '%s' must be an integer or a list of two integers",
                   inst->type, name);
        return false;
    }
    if (a < 1 || b < 1 || a > 65536 || b > 65536) {
        sema_error(S, v->loc, "%s argument '%s' must be between 1 and 65536", inst->type, name);
        return false;
    }
    out[0] = (int)a;
    out[1] = (int)b;
    return true;
}

/* padding: valid | same */
static int padding_arg(sema *S, const kd_instance *inst, bool *same)
{
    sv *v = layer_arg(inst, "padding");
    const char *p = v && (v->kind == SV_IDENT || v->kind == SV_STRING) ? v->s : NULL;
    if (p && !strcmp(p, "valid")) { *same = false; return 1; }
    if (p && !strcmp(p, "same")) { *same = true; return 1; }
    const char *known[] = {"valid", "same"};
    const char *near = p ? kd_nearest(p, known, 2) : NULL;
    if (near) sema_error(S, v->loc, "%s padding must be valid or same, got '%s'; did you mean '%s'?", inst->type, p, near);
    else sema_error(S, v ? v->loc : inst->loc, "%s padding must be valid or same", inst->type);
    return 0;
}

/* Output size and padding of a window op, as Keras computes them. */
static bool window_geometry(sema *S, const kd_instance *inst, const ir_shape *x, const int k[2], const int s[2],
                            bool same, ir_attrs *attr, kd_loc loc)
{
    for (int d = 0; d < 2; d++) {
        int64_t in = x->dims[1 + d], out;
        if (same) {
            out = (in + s[d] - 1) / s[d];
            int64_t total = (out - 1) * s[d] + k[d] - in;
            if (total < 0) total = 0;
            attr->pad_lo[d] = total / 2;
            attr->pad_hi[d] = total - total / 2;
        } else {
            if (in < k[d]) {
                char buf[128];
                sema_error(S, loc, "%s window %dx%d is larger than its input %s", inst->type, k[0], k[1],
                           ir_shape_sample(x, buf, sizeof buf));
                return false;
            }
            attr->pad_lo[d] = attr->pad_hi[d] = 0;
        }
        attr->window[d] = k[d];
        attr->stride[d] = s[d];
    }
    return true;
}

static bool need_rank(sema *S, const kd_instance *inst, const ir_node *x, int rank, kd_loc loc)
{
    if (x->shape.batched && x->shape.rank == rank + 1) return true;
    char buf[128];
    sema_error(S, loc, "%s expects a rank-%d input per sample%s, got %s", inst->type, rank,
               rank == 3 ? " (height, width, channels)" : "", ir_shape_sample(&x->shape, buf, sizeof buf));
    return false;
}

static kd_init init_arg(sema *S, const kd_instance *inst, const char *name, bool *ok)
{
    kd_init init = {0};
    sv *v = layer_arg(inst, name);
    if (!v || !sema_init_from(S, v, &init)) *ok = false;
    return init;
}

#define NODE(expr, what) sema_check_node(S, (expr), loc, (what))

ir_node *apply_activation(sema *S, ir_node *x, const sv *act, kd_loc loc)
{
    if (!x) return NULL;
    const char *a = act && (act->kind == SV_IDENT || act->kind == SV_STRING) ? act->s : NULL;
    if (act && act->kind == SV_NONE) return x;
    if (!a) {
        sema_error(S, act ? act->loc : loc, "an activation must be a name such as relu, got %s", act ? sv_describe(act) : "nothing");
        return NULL;
    }
    if (!strcmp(a, "linear") || !strcmp(a, "none")) return x;
    if (!strcmp(a, "exponential")) return NODE(ir_unary(&S->b, IR_EXP, x), "exponential");
    if (!strcmp(a, "softmax") || !strcmp(a, "log_softmax")) {
        ir_attrs attr = {.axis = x->shape.rank - 1};
        return NODE(ir_make(&S->b, a[0] == 's' ? IR_SOFTMAX : IR_LOG_SOFTMAX, 1, &x, &attr), a);
    }
    /* The table's activations, at their default argument (gelu: the exact row). */
    const char *known[5 + 2 * IR_ACT_COUNT] = {"linear", "softmax", "log_softmax", "exponential"};
    int nknown = 4;
    for (int k = 1; k < IR_ACT_COUNT; k++) {
        const ir_act_info *r = &ir_acts[k];
        if (r->kind == KDA_KIND_FLAG && r->def != 0) continue;
        if (!strcmp(a, r->name) || (r->alias && !strcmp(a, r->alias))) return NODE(ir_act(&S->b, k, x, r->def), a);
        known[nknown++] = r->name;
        if (r->alias) known[nknown++] = r->alias;
    }
    const char *near = kd_nearest(a, known, nknown);
    if (near) sema_error(S, act->loc, "unknown activation '%s'; did you mean '%s'?", a, near);
    else sema_error(S, act->loc, "unknown activation '%s'", a);
    return NULL;
}

static sv *result(sema *S, ir_node *n, kd_loc loc) { return n ? sv_tensor(S, n, NULL, loc) : NULL; }

/* kernel_regularizer and bias_regularizer on the weights (once: a shared
 * layer's later calls reuse them), activity_regularizer on this call's output;
 * the penalties join the training loss (Keras 3: the activity penalty is not
 * divided by the batch size, as tf.keras 2's was). */
static sv *regularized2(sema *S, kd_instance *inst, const char *const knames[2], kd_var *const kernels[2], kd_var *bias,
                        ir_node *y, kd_loc loc)
{
    kd_regularizer rk[2] = {{0}}, rb, ra;
    for (int i = 0; i < 2; i++)
        if (knames[i] && !sema_regularizer_from(S, layer_arg(inst, knames[i]), knames[i], &rk[i])) return NULL;
    if (!sema_regularizer_from(S, layer_arg(inst, "bias_regularizer"), "bias_regularizer", &rb) ||
        !sema_regularizer_from(S, layer_arg(inst, "activity_regularizer"), "activity_regularizer", &ra))
        return NULL;
    if (!y) return NULL;
    if (inst->ncalls == 0) {
        for (int i = 0; i < 2; i++)
            if (rk[i].present && !sema_regularize(S, &rk[i], NODE(ir_var_read(&S->b, kernels[i]), inst->type), loc))
                return NULL;
        if (rb.present && bias && !sema_regularize(S, &rb, NODE(ir_var_read(&S->b, bias), inst->type), loc)) return NULL;
    }
    if (!sema_regularize(S, &ra, y, loc)) return NULL;
    return result(S, y, loc);
}

static sv *regularized(sema *S, kd_instance *inst, kd_var *kernel, kd_var *bias, ir_node *y, kd_loc loc)
{
    const char *const names[2] = {"kernel_regularizer", NULL};
    kd_var *const kernels[2] = {kernel, NULL};
    return regularized2(S, inst, names, kernels, bias, y, loc);
}

/* ---- Dense ------------------------------------------------------------- */

static const layer_param dense_params[] = {
    {"units", NULL}, {"activation", "linear"}, {"use_bias", "true"},
    {"kernel_initializer", "glorot_uniform"}, {"bias_initializer", "zeros"},
    {"kernel_regularizer", "none"}, {"bias_regularizer", "none"}, {"activity_regularizer", "none"}, {NULL, NULL}};

static sv *dense_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    ir_node *x = in[0]->t;
    /* Keras applies Dense to the last axis of an input of any rank */
    if (x->shape.rank < (x->shape.batched ? 2 : 1)) {
        char buf[128];
        sema_error(S, loc, "Dense needs at least one axis per sample (it applies to the last), got %s",
                   ir_shape_sample(&x->shape, buf, sizeof buf));
        return NULL;
    }
    bool ok = true;
    int64_t units = int_arg(S, inst, "units", 1, &ok);
    bool use_bias = bool_arg(S, inst, "use_bias", &ok);
    kd_init kinit = init_arg(S, inst, "kernel_initializer", &ok), binit = init_arg(S, inst, "bias_initializer", &ok);
    if (!ok) return NULL;
    int64_t kdims[2] = {x->shape.dims[x->shape.rank - 1], units};
    kd_var *kernel = sema_new_var(S, inst, "kernel", VAR_WEIGHT, ir_shape_of(2, kdims, false), kinit, true, loc);
    kd_var *bias = use_bias ? sema_new_var(S, inst, "bias", VAR_WEIGHT, ir_shape_of(1, &units, false), binit, true, loc) : NULL;
    if (!kernel || (use_bias && !bias)) return NULL;
    ir_node *y = NODE(ir_matmul(&S->b, x, NODE(ir_var_read(&S->b, kernel), "Dense"), false, false), "Dense");
    if (y && bias) y = NODE(ir_binary(&S->b, IR_ADD, y, NODE(ir_var_read(&S->b, bias), "Dense")), "Dense");
    return regularized(S, inst, kernel, bias, apply_activation(S, y, layer_arg(inst, "activation"), loc), loc);
}

/* ---- Conv2D ------------------------------------------------------------ */

/* dilation_rate and groups come last (Keras has them before activation):
 * programs that give Conv2D's activation by position keep working. */
static const layer_param conv2d_params[] = {
    {"filters", NULL}, {"kernel_size", NULL}, {"strides", "1"}, {"padding", "valid"}, {"activation", "linear"},
    {"use_bias", "true"}, {"kernel_initializer", "glorot_uniform"}, {"bias_initializer", "zeros"},
    {"kernel_regularizer", "none"}, {"bias_regularizer", "none"}, {"activity_regularizer", "none"},
    {"dilation_rate", "1"}, {"groups", "1"}, {NULL, NULL}};

/* dilation_rate, and Keras' rule that it excludes strides > 1 */
static bool dilation_arg(sema *S, const kd_instance *inst, const int s[2], int d[2])
{
    if (!pair_arg(S, inst, "dilation_rate", d)) return false;
    if ((s[0] > 1 || s[1] > 1) && (d[0] > 1 || d[1] > 1)) {
        sv *v = layer_arg(inst, "dilation_rate");
        sema_error(S, v ? v->loc : inst->loc,
                   "%s: `strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                   "Received: strides=(%d, %d) and dilation_rate=(%d, %d)", inst->type, s[0], s[1], d[0], d[1]);
        return false;
    }
    return true;
}

/* window_geometry for a kernel k whose taps are d apart: it spans (k - 1) * d + 1. */
static bool dilated_geometry(sema *S, const kd_instance *inst, const ir_shape *x, const int k[2], const int d[2],
                             const int s[2], bool same, ir_attrs *attr, kd_loc loc)
{
    int span[2];
    for (int i = 0; i < 2; i++) span[i] = (k[i] - 1) * d[i] + 1;
    if (!same && (d[0] > 1 || d[1] > 1) && (span[0] > x->dims[1] || span[1] > x->dims[2])) {
        char buf[128];
        sema_error(S, loc, "%s kernel %dx%d with dilation_rate (%d, %d) spans %dx%d, larger than its input %s",
                   inst->type, k[0], k[1], d[0], d[1], span[0], span[1], ir_shape_sample(x, buf, sizeof buf));
        return false;
    }
    return window_geometry(S, inst, x, span, s, same, attr, loc);
}

/* A [kh, kw, C, F] kernel spread to its dilated span, zeros between the taps
 * ([kh, 1, kw, 1, C, F] padded to [kh, d, kw, d, C, F], seen as [kh*d, kw*d, C, F],
 * sliced): the convolution by it is the dilated convolution by w. */
static ir_node *dilate_kernel(sema *S, ir_node *w, const int d[2], kd_loc loc, const char *what)
{
    if (!w || (d[0] == 1 && d[1] == 1)) return w;
    const int64_t *k = w->shape.dims;
    int64_t k6[6] = {k[0], 1, k[1], 1, k[2], k[3]}, k4[4] = {k[0] * d[0], k[1] * d[1], k[2], k[3]};
    ir_attrs pad = {0}, slice = {0};
    pad.pad_hi[1] = d[0] - 1;
    pad.pad_hi[3] = d[1] - 1;
    slice.size[0] = (k[0] - 1) * d[0] + 1;
    slice.size[1] = (k[1] - 1) * d[1] + 1;
    slice.size[2] = k[2];
    slice.size[3] = k[3];
    ir_node *x = NODE(ir_reshape(&S->b, w, ir_shape_of(6, k6, false)), what);
    x = x ? NODE(ir_make(&S->b, IR_PAD, 1, &x, &pad), what) : NULL;
    x = x ? NODE(ir_reshape(&S->b, x, ir_shape_of(4, k4, false)), what) : NULL;
    return x ? NODE(ir_make(&S->b, IR_SLICE, 1, &x, &slice), what) : NULL;
}

static sv *conv2d_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    ir_node *x = in[0]->t;
    if (!need_rank(S, inst, x, 3, loc)) return NULL;
    bool ok = true, same = false;
    int k[2], s[2], d[2] = {1, 1};
    int64_t filters = int_arg(S, inst, "filters", 1, &ok);
    ok = pair_arg(S, inst, "kernel_size", k) && ok;
    ok = pair_arg(S, inst, "strides", s) && ok;
    ok = ok && dilation_arg(S, inst, s, d);
    ok = padding_arg(S, inst, &same) && ok;
    bool use_bias = bool_arg(S, inst, "use_bias", &ok);
    kd_init kinit = init_arg(S, inst, "kernel_initializer", &ok), binit = init_arg(S, inst, "bias_initializer", &ok);
    int64_t groups = int_arg(S, inst, "groups", 1, &ok);
    if (!ok) return NULL;
    int64_t channels = x->shape.dims[3];
    if (channels % groups || filters % groups) {
        sema_error(S, layer_arg(inst, "groups")->loc,
                   "Conv2D groups (%lld) must divide both the input channels (%lld) and filters (%lld)",
                   (long long)groups, (long long)channels, (long long)filters);
        return NULL;
    }
    ir_attrs attr = {0};
    if (!dilated_geometry(S, inst, &x->shape, k, d, s, same, &attr, loc)) return NULL;
    int64_t kdims[4] = {k[0], k[1], channels / groups, filters};
    kd_var *kernel = sema_new_var(S, inst, "kernel", VAR_WEIGHT, ir_shape_of(4, kdims, false), kinit, true, loc);
    kd_var *bias = use_bias ? sema_new_var(S, inst, "bias", VAR_WEIGHT, ir_shape_of(1, &filters, false), binit, true, loc) : NULL;
    if (!kernel || (use_bias && !bias)) return NULL;
    ir_node *w = dilate_kernel(S, NODE(ir_var_read(&S->b, kernel), "Conv2D"), d, loc, "Conv2D");
    if (!w) return NULL;
    ir_node *y;
    if (groups == 1) {
        ir_node *ops[2] = {x, w};
        y = NODE(ir_make(&S->b, IR_CONV2D, 2, ops, &attr), "Conv2D");
    } else {
        /* groups: input channels [g * C/G, (g+1) * C/G) convolved by the kernel's filters
         * [g * F/G, (g+1) * F/G), side by side in that order (Keras' grouped convolution) */
        ir_node **parts = kd_alloc_array(S->a, (size_t)groups, sizeof *parts);
        int64_t cg = channels / groups, fg = filters / groups;
        for (int64_t g = 0; g < groups; g++) {
            ir_attrs xs = {0}, ws = {0};
            for (int a = 0; a < 4; a++) xs.size[a] = x->shape.dims[a], ws.size[a] = w->shape.dims[a];
            xs.begin[3] = g * cg, xs.size[3] = cg;
            ws.begin[3] = g * fg, ws.size[3] = fg;
            ir_node *ops[2] = {NODE(ir_make(&S->b, IR_SLICE, 1, &x, &xs), "Conv2D"),
                               NODE(ir_make(&S->b, IR_SLICE, 1, &w, &ws), "Conv2D")};
            if (!ops[0] || !ops[1]) return NULL;
            if (!(parts[g] = NODE(ir_make(&S->b, IR_CONV2D, 2, ops, &attr), "Conv2D"))) return NULL;
        }
        ir_attrs cat = {.axis = 3};
        y = NODE(ir_make(&S->b, IR_CONCAT, (int)groups, parts, &cat), "Conv2D");
    }
    if (y && bias) y = NODE(ir_binary(&S->b, IR_ADD, y, NODE(ir_var_read(&S->b, bias), "Conv2D")), "Conv2D");
    return regularized(S, inst, kernel, bias, apply_activation(S, y, layer_arg(inst, "activation"), loc), loc);
}

/* ---- Conv2DTranspose ------------------------------------------------------ */

static const layer_param conv_transpose_params[] = {
    {"filters", NULL}, {"kernel_size", NULL}, {"strides", "1"}, {"padding", "valid"}, {"activation", "linear"},
    {"use_bias", "true"}, {"kernel_initializer", "glorot_uniform"}, {"bias_initializer", "zeros"},
    {"kernel_regularizer", "none"}, {"bias_regularizer", "none"}, {"activity_regularizer", "none"}, {NULL, NULL}};

/* The gradient of a convolution with respect to its input, used forward:
 * the convolution that maps an output of the size Keras gives ((H - 1) *
 * stride + kernel for valid, H * stride for same) back to x, transposed.
 * Kernel [kh, kw, filters, in], as Keras lays it out. */
static sv *conv_transpose_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    ir_node *x = in[0]->t;
    if (!need_rank(S, inst, x, 3, loc)) return NULL;
    bool ok = true, same = false;
    int k[2], s[2];
    int64_t filters = int_arg(S, inst, "filters", 1, &ok);
    ok = pair_arg(S, inst, "kernel_size", k) && ok;
    ok = pair_arg(S, inst, "strides", s) && ok;
    ok = padding_arg(S, inst, &same) && ok;
    bool use_bias = bool_arg(S, inst, "use_bias", &ok);
    kd_init kinit = init_arg(S, inst, "kernel_initializer", &ok), binit = init_arg(S, inst, "bias_initializer", &ok);
    if (!ok) return NULL;
    int64_t out_hw[2], channels = x->shape.dims[3];
    for (int d = 0; d < 2; d++)
        out_hw[d] = same ? x->shape.dims[1 + d] * s[d] : (x->shape.dims[1 + d] - 1) * s[d] + k[d];
    int64_t odims[3] = {out_hw[0], out_hw[1], filters};
    ir_shape out = ir_shape_of(3, odims, true);
    ir_attrs attr = {0};
    if (!window_geometry(S, inst, &out, k, s, same, &attr, loc)) return NULL;
    attr.shape = out;
    int64_t kdims[4] = {k[0], k[1], filters, channels};
    kd_var *kernel = sema_new_var(S, inst, "kernel", VAR_WEIGHT, ir_shape_of(4, kdims, false), kinit, true, loc);
    kd_var *bias = use_bias ? sema_new_var(S, inst, "bias", VAR_WEIGHT, ir_shape_of(1, &filters, false), binit, true, loc) : NULL;
    if (!kernel || (use_bias && !bias)) return NULL;
    ir_node *w = NODE(ir_var_read(&S->b, kernel), "Conv2DTranspose");
    if (!w) return NULL;
    ir_node *ops[2] = {x, w};
    ir_node *y = NODE(ir_make(&S->b, IR_CONV2D_BWD_DATA, 2, ops, &attr), "Conv2DTranspose");
    if (y && bias) y = NODE(ir_binary(&S->b, IR_ADD, y, NODE(ir_var_read(&S->b, bias), "Conv2DTranspose")), "Conv2DTranspose");
    return regularized(S, inst, kernel, bias, apply_activation(S, y, layer_arg(inst, "activation"), loc), loc);
}

/* ---- DepthwiseConv2D, SeparableConv2D ----------------------------------- */

static const layer_param depthwise_params[] = {
    {"kernel_size", NULL}, {"strides", "1"}, {"padding", "valid"}, {"depth_multiplier", "1"},
    {"dilation_rate", "1"}, {"activation", "linear"}, {"use_bias", "true"},
    {"depthwise_initializer", "glorot_uniform"}, {"bias_initializer", "zeros"},
    {"depthwise_regularizer", "none"}, {"bias_regularizer", "none"}, {"activity_regularizer", "none"}, {NULL, NULL}};

static const layer_param separable_params[] = {
    {"filters", NULL}, {"kernel_size", NULL}, {"strides", "1"}, {"padding", "valid"}, {"depth_multiplier", "1"},
    {"dilation_rate", "1"}, {"activation", "linear"}, {"use_bias", "true"},
    {"depthwise_initializer", "glorot_uniform"}, {"pointwise_initializer", "glorot_uniform"},
    {"bias_initializer", "zeros"}, {"depthwise_regularizer", "none"}, {"pointwise_regularizer", "none"},
    {"bias_regularizer", "none"}, {"activity_regularizer", "none"}, {NULL, NULL}};

/* Both layers: the depthwise convolution by `depthwise_kernel` [kh, kw, in, depth_multiplier]
 * (output channel c * depth_multiplier + m); SeparableConv2D (filters > 0) then a 1x1
 * convolution by `pointwise_kernel` [1, 1, in * depth_multiplier, filters]; then the bias and
 * the activation. */
static sv *depthwise_common(sema *S, kd_instance *inst, ir_node *x, bool separable, kd_loc loc)
{
    const char *what = inst->type;
    if (!need_rank(S, inst, x, 3, loc)) return NULL;
    bool ok = true, same = false;
    int k[2], s[2], d[2] = {1, 1};
    int64_t filters = separable ? int_arg(S, inst, "filters", 1, &ok) : 0;
    ok = pair_arg(S, inst, "kernel_size", k) && ok;
    ok = pair_arg(S, inst, "strides", s) && ok;
    ok = ok && dilation_arg(S, inst, s, d);
    ok = padding_arg(S, inst, &same) && ok;
    int64_t dm = int_arg(S, inst, "depth_multiplier", 1, &ok);
    bool use_bias = bool_arg(S, inst, "use_bias", &ok);
    kd_init dinit = init_arg(S, inst, "depthwise_initializer", &ok), binit = init_arg(S, inst, "bias_initializer", &ok);
    kd_init pinit = separable ? init_arg(S, inst, "pointwise_initializer", &ok) : dinit;
    if (!ok) return NULL;
    ir_attrs attr = {0};
    if (!dilated_geometry(S, inst, &x->shape, k, d, s, same, &attr, loc)) return NULL;
    attr.dilation[0] = d[0];
    attr.dilation[1] = d[1];
    int64_t in = x->shape.dims[3], mid = in * dm, out = separable ? filters : mid;
    int64_t kdims[4] = {k[0], k[1], in, dm}, pdims[4] = {1, 1, mid, filters}, p2[2] = {mid, filters};
    kd_var *dk = sema_new_var(S, inst, "depthwise_kernel", VAR_WEIGHT, ir_shape_of(4, kdims, false), dinit, true, loc);
    kd_var *pk = separable ? sema_new_var(S, inst, "pointwise_kernel", VAR_WEIGHT, ir_shape_of(4, pdims, false), pinit,
                                          true, loc) : NULL;
    kd_var *bias = use_bias ? sema_new_var(S, inst, "bias", VAR_WEIGHT, ir_shape_of(1, &out, false), binit, true, loc) : NULL;
    if (!dk || (separable && !pk) || (use_bias && !bias)) return NULL;
    ir_node *w = NODE(ir_var_read(&S->b, dk), what);
    if (!w) return NULL;
    ir_node *ops[2] = {x, w};
    ir_node *y = NODE(ir_make(&S->b, IR_DEPTHWISE_CONV2D, 2, ops, &attr), what);
    if (y && pk) {   /* the 1x1 convolution: a product over the last axis */
        ir_node *p = NODE(ir_var_read(&S->b, pk), what);
        p = p ? NODE(ir_reshape(&S->b, p, ir_shape_of(2, p2, false)), what) : NULL;
        y = p ? NODE(ir_matmul(&S->b, y, p, false, false), what) : NULL;
    }
    if (y && bias) y = NODE(ir_binary(&S->b, IR_ADD, y, NODE(ir_var_read(&S->b, bias), what)), what);
    const char *const names[2] = {"depthwise_regularizer", separable ? "pointwise_regularizer" : NULL};
    kd_var *const kernels[2] = {dk, pk};
    return regularized2(S, inst, names, kernels, bias, apply_activation(S, y, layer_arg(inst, "activation"), loc), loc);
}

static sv *depthwise_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    return depthwise_common(S, inst, in[0]->t, false, loc);
}

static sv *separable_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    return depthwise_common(S, inst, in[0]->t, true, loc);
}

/* ---- pooling ----------------------------------------------------------- */

static const layer_param pool_params[] = {
    {"pool_size", "2"}, {"strides", "=pool_size"}, {"padding", "valid"}, {NULL, NULL}};

static sv *pool_apply(sema *S, kd_instance *inst, ir_node *x, ir_op op, kd_loc loc)
{
    if (!need_rank(S, inst, x, 3, loc)) return NULL;
    bool same = false;
    int k[2], s[2];
    sv *strides = layer_arg(inst, "strides");
    if (!pair_arg(S, inst, "pool_size", k)) return NULL;
    if (strides && strides->kind == SV_NONE) { s[0] = k[0]; s[1] = k[1]; }
    else if (!pair_arg(S, inst, "strides", s)) return NULL;
    if (!padding_arg(S, inst, &same)) return NULL;
    ir_attrs attr = {0};
    if (!window_geometry(S, inst, &x->shape, k, s, same, &attr, loc)) return NULL;
    return result(S, NODE(ir_make(&S->b, op, 1, &x, &attr), inst->type), loc);
}

static sv *maxpool_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    return pool_apply(S, inst, in[0]->t, IR_MAXPOOL2D, loc);
}

static sv *avgpool_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    return pool_apply(S, inst, in[0]->t, IR_AVGPOOL2D, loc);
}

static const layer_param no_params[] = {{NULL, NULL}};

static sv *global_pool_apply(sema *S, kd_instance *inst, ir_node *x, ir_op op, kd_loc loc)
{
    if (!need_rank(S, inst, x, 3, loc)) return NULL;
    return result(S, NODE(ir_reduce(&S->b, op, x, (1 << 1) | (1 << 2), false), inst->type), loc);
}

static sv *gap_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    return global_pool_apply(S, inst, in[0]->t, IR_MEAN, loc);
}

static sv *gmp_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    return global_pool_apply(S, inst, in[0]->t, IR_MAX, loc);
}

/* An amount per side, as ZeroPadding2D's padding and Cropping2D's cropping
 * take it: n, [h, w] or [[top, bottom], [left, right]]; out: top, bottom, left, right. */
static bool sides_arg(sema *S, const kd_instance *inst, const char *name, int64_t out[4])
{
    sv *p = layer_arg(inst, name);
    const char *what = kd_format(S->a, "%s %s", inst->type, name);
    int64_t v;
    if (p->kind == SV_LIST && p->n == 2 && p->items[0]->kind == SV_LIST) {
        for (int d = 0; d < 2; d++) {
            sv *pair = p->items[d];
            if (pair->kind != SV_LIST || pair->n != 2) goto bad;
            for (int k = 0; k < 2; k++) {
                if (!sv_as_int(S, pair->items[k], &v, what)) return false;
                out[2 * d + k] = v;
            }
        }
    } else if (p->kind == SV_LIST && p->n == 2) {
        for (int d = 0; d < 2; d++) {
            if (!sv_as_int(S, p->items[d], &v, what)) return false;
            out[2 * d] = out[2 * d + 1] = v;
        }
    } else if (p->kind == SV_INT) {
        out[0] = out[1] = out[2] = out[3] = p->i;
    } else
        goto bad;
    for (int i = 0; i < 4; i++)
        if (out[i] < 0 || out[i] > 65536) goto bad;
    return true;
bad:
    sema_error(S, p->loc, "%s must be an integer, [h, w] or [[top, bottom], [left, right]] of non-negative integers", what);
    return false;
}

/* ---- ZeroPadding2D ----------------------------------------------------- */

static const layer_param zeropad_params[] = {{"padding", "1"}, {NULL, NULL}};

static sv *zeropad_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    ir_node *x = in[0]->t;
    if (!need_rank(S, inst, x, 3, loc)) return NULL;
    int64_t pad[4]; /* top, bottom, left, right */
    if (!sides_arg(S, inst, "padding", pad)) return NULL;
    ir_attrs attr = {0};
    attr.pad_lo[1] = pad[0];
    attr.pad_hi[1] = pad[1];
    attr.pad_lo[2] = pad[2];
    attr.pad_hi[2] = pad[3];
    return result(S, NODE(ir_make(&S->b, IR_PAD, 1, &x, &attr), "ZeroPadding2D"), loc);
}

/* ---- shape layers ------------------------------------------------------ */

static sv *flatten_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    (void)inst;
    ir_node *x = in[0]->t;
    int64_t elems = ir_shape_elems(&x->shape);
    return result(S, NODE(ir_reshape(&S->b, x, ir_shape_of(1, &elems, true)), "Flatten"), loc);
}

/* A per-sample target shape with at most one -1; used by Reshape and reshape(). */
ir_node *sema_reshape(sema *S, ir_node *x, const sv *target, kd_loc loc);
ir_node *sema_reshape(sema *S, ir_node *x, const sv *target, kd_loc loc)
{
    if (!target || target->kind != SV_LIST || target->n < 1 || target->n >= IR_MAX_RANK) {
        sema_error(S, target ? target->loc : loc, "reshape needs a target shape such as [7, 7, 16] (without the batch)");
        return NULL;
    }
    ir_shape to = {.rank = target->n + 1, .batched = true};
    to.dims[0] = IR_BATCH;
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < target->n; i++) {
        int64_t d;
        if (!sv_as_int(S, target->items[i], &d, "a reshape dimension")) return NULL;
        if (d == -1 && infer < 0) { infer = i + 1; continue; }
        if (d <= 0) {
            sema_error(S, target->items[i]->loc, "reshape dimension must be positive (or one -1), got %lld", (long long)d);
            return NULL;
        }
        if (__builtin_mul_overflow(known, d, &known)) known = -1;
        to.dims[i + 1] = d;
    }
    int64_t have = ir_shape_elems(&x->shape);
    if (infer > 0 && known > 0 && have % known == 0) to.dims[infer] = have / known;
    if ((infer > 0 && (known <= 0 || have % known != 0)) || (infer < 0 && known != have)) {
        char a[128];
        sema_error(S, target->loc, "cannot reshape %s (%lld values per sample) to the requested shape", 
                   ir_shape_sample(&x->shape, a, sizeof a), (long long)have);
        return NULL;
    }
    return NODE(ir_reshape(&S->b, x, to), "reshape");
}

static const layer_param reshape_params[] = {{"target_shape", NULL}, {NULL, NULL}};

static sv *reshape_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    return result(S, sema_reshape(S, in[0]->t, layer_arg(inst, "target_shape"), loc), loc);
}

/* ---- regularisation and normalisation ---------------------------------- */

static const layer_param dropout_params[] = {{"rate", NULL}, {NULL, NULL}};

/* Dropout in training multiplies by a mask of 0 and 1/(1-rate); in inference it is the identity. */
ir_node *sema_dropout(sema *S, ir_node *x, double rate, kd_loc loc);
ir_node *sema_dropout(sema *S, ir_node *x, double rate, kd_loc loc)
{
    if (!(rate >= 0 && rate < 1)) {
        sema_error(S, loc, "dropout rate must be in [0, 1), got %g", rate);
        return NULL;
    }
    if (!S->training || rate == 0) return x;
    ir_attrs attr = {.scalar = rate, .index = S->b.g->nodes.len};
    ir_node *mask = NODE(ir_leaf(&S->b, IR_DROPOUT_MASK, x->shape, &attr, -1), "dropout");
    return mask ? NODE(ir_binary(&S->b, IR_MUL, x, mask), "dropout") : NULL;
}

static sv *dropout_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    bool ok = true;
    double rate = num_arg(S, inst, "rate", &ok);
    if (!ok) return NULL;
    return result(S, sema_dropout(S, in[0]->t, rate, loc), loc);
}

static const layer_param batchnorm_params[] = {
    {"axis", "-1"}, {"momentum", "0.99"}, {"epsilon", "0.001"}, {"center", "true"}, {"scale", "true"},
    {"synchronized", "false"}, {NULL, NULL}};

static sv *batchnorm_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    ir_node *x = in[0]->t;
    bool ok = true;
    int64_t axis_arg = 0;
    if (!sv_as_int(S, layer_arg(inst, "axis"), &axis_arg, "BatchNormalization axis")) return NULL;
    double momentum = num_arg(S, inst, "momentum", &ok), eps = num_arg(S, inst, "epsilon", &ok);
    bool center = bool_arg(S, inst, "center", &ok), scale = bool_arg(S, inst, "scale", &ok);
    bool sync = bool_arg(S, inst, "synchronized", &ok);
    if (!ok) return NULL;
    int rank = x->shape.rank;
    int axis = sema_axis(S, axis_arg, rank, loc);
    if (axis < 0) return NULL;
    if (axis == 0 && x->shape.batched) {
        sema_error(S, loc, "BatchNormalization cannot normalise over the batch axis (axis %lld)", (long long)axis_arg);
        return NULL;
    }
    if (!(eps > 0)) {
        sema_error(S, loc, "BatchNormalization epsilon must be positive");
        return NULL;
    }
    int64_t c = x->shape.dims[axis];
    ir_shape vec = ir_shape_of(1, &c, false);
    /* The per-channel vectors as seen from x: [1, .., c, .., 1] (no batch), so they broadcast along every
     * other axis; for the last axis that is [c] itself. */
    int64_t bdims[IR_MAX_RANK];
    int brank = rank - (x->shape.batched ? 1 : 0);
    for (int d = 0; d < brank; d++) bdims[d] = d + (x->shape.batched ? 1 : 0) == axis ? c : 1;
    ir_shape along = axis == rank - 1 ? vec : ir_shape_of(brank, bdims, false);
    kd_var *gamma = scale ? sema_new_var(S, inst, "gamma", VAR_WEIGHT, vec, (kd_init){.kind = INIT_ONES}, true, loc) : NULL;
    kd_var *beta = center ? sema_new_var(S, inst, "beta", VAR_WEIGHT, vec, (kd_init){.kind = INIT_ZEROS}, true, loc) : NULL;
    kd_var *mm = sema_new_var(S, inst, "moving_mean", VAR_STATE, vec, (kd_init){.kind = INIT_ZEROS}, false, loc);
    kd_var *mv = sema_new_var(S, inst, "moving_variance", VAR_STATE, vec, (kd_init){.kind = INIT_ONES}, false, loc);
    if ((scale && !gamma) || (center && !beta) || !mm || !mv) return NULL;
    ir_builder *b = &S->b;
#define BN(expr) NODE((expr), "BatchNormalization")
    /* a variable of shape [c], read as `along` */
#define CHANNELS(v) (axis == rank - 1 ? BN(ir_var_read(b, (v))) : BN(ir_reshape(b, BN(ir_var_read(b, (v))), along)))
    ir_node *mean, *var;
    if (S->training) {
        int64_t axes = (((int64_t)1 << rank) - 1) & ~((int64_t)1 << axis);   /* every axis but the channels, batch included */
        mean = BN(ir_reduce(b, IR_MEAN, x, axes, true));
        /* synchronized: the statistics of the global batch of data-parallel training, the
         * ranks' means weighted by their samples (the same in one process) */
        if (sync && mean) mean = BN(ir_make(b, IR_RANK_MEAN, 1, &mean, NULL));
        ir_node *xc = mean ? BN(ir_binary(b, IR_SUB, x, mean)) : NULL;
        ir_node *sq = xc ? BN(ir_unary(b, IR_SQUARE, xc)) : NULL;
        var = sq ? BN(ir_reduce(b, IR_MEAN, sq, axes, true)) : NULL;
        if (sync && var) var = BN(ir_make(b, IR_RANK_MEAN, 1, &var, NULL));
        if (!var) return NULL;
        /* moving = moving * momentum + batch * (1 - momentum) */
        ir_node *stats[2] = {mean, var};
        kd_var *moving[2] = {mm, mv};
        for (int i = 0; i < 2; i++) {
            ir_node *flat = BN(ir_reshape(b, stats[i], vec));
            ir_node *old = BN(ir_var_read(b, moving[i]));
            if (!flat || !old) return NULL;
            ir_node *keep = BN(ir_binary(b, IR_MUL, old, ir_scalar(b, momentum)));
            ir_node *add = BN(ir_binary(b, IR_MUL, flat, ir_scalar(b, 1 - momentum)));
            ir_node *next = keep && add ? BN(ir_binary(b, IR_ADD, keep, add)) : NULL;
            if (!next) return NULL;
            ir_update *u = kd_alloc(S->a, sizeof *u);
            u->var = moving[i]->index;
            u->value = next;
            kd_vec_push(S->a, &b->g->updates, u);
        }
    } else {
        mean = CHANNELS(mm);
        var = CHANNELS(mv);
        if (!mean || !var) return NULL;
    }
    ir_node *xc = NODE(ir_binary(b, IR_SUB, x, mean), "BatchNormalization");
    ir_node *ve = xc ? NODE(ir_binary(b, IR_ADD, var, ir_scalar(b, eps)), "BatchNormalization") : NULL;
    ir_node *inv = ve ? NODE(ir_unary(b, IR_RSQRT, ve), "BatchNormalization") : NULL;
    ir_node *y = inv ? NODE(ir_binary(b, IR_MUL, xc, inv), "BatchNormalization") : NULL;
    if (y && gamma) y = BN(ir_binary(b, IR_MUL, y, CHANNELS(gamma)));
    if (y && beta) y = BN(ir_binary(b, IR_ADD, y, CHANNELS(beta)));
#undef CHANNELS
#undef BN
    if (y && !S->training && axis == rank - 1) {   /* a candidate for folding into the layer before */
        ir_batchnorm *r = kd_alloc(S->a, sizeof *r);
        *r = (ir_batchnorm){.x = x, .y = y, .gamma = gamma ? gamma->index : -1, .beta = beta ? beta->index : -1,
                            .mean = mm->index, .variance = mv->index, .epsilon = eps};
        kd_vec_push(S->a, &b->g->batchnorms, r);
    }
    return result(S, y, loc);
}

/* ---- activations ------------------------------------------------------- */

static const layer_param relu_params[] = {
    {"max_value", "none"}, {"negative_slope", "0"}, {"threshold", "0"}, {NULL, NULL}};

/* A non-negative number argument; `none` allowed where none_ok (then *present is false). */
static bool nonneg_arg(sema *S, const kd_instance *inst, const char *name, bool none_ok, double *out, bool *present)
{
    sv *v = layer_arg(inst, name);
    if (none_ok && (!v || v->kind == SV_NONE || (v->kind == SV_IDENT && !strcmp(v->s, "none")))) {
        *present = false;
        return true;
    }
    *present = true;
    if (!sv_as_number(S, v, out, kd_format(S->a, "%s argument '%s'", inst->type, name))) return false;
    if (!(*out >= 0 && *out < 1e30)) {
        sema_error(S, v->loc, "%s argument '%s' must be a non-negative number, got %g", inst->type, name, *out);
        return false;
    }
    return true;
}

/* Keras' ReLU: max_value if x >= max_value, x if x >= threshold, else
 * negative_slope * (x - threshold). The common settings are one activation
 * op (relu, relu6, leaky_relu), which the fusion pass can fold into a GEMM. */
static sv *relu_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    ir_node *x = in[0]->t;
    ir_builder *b = &S->b;
    double max_value = 0, slope = 0, threshold = 0;
    bool has_max = false, present;
    if (!nonneg_arg(S, inst, "max_value", true, &max_value, &has_max) ||
        !nonneg_arg(S, inst, "negative_slope", false, &slope, &present) ||
        !nonneg_arg(S, inst, "threshold", false, &threshold, &present))
        return NULL;
    if (threshold == 0 && slope == 0 && (!has_max || max_value == 6))
        return result(S, NODE(ir_act(b, has_max ? IR_ACT_RELU6 : IR_ACT_RELU, x, 0), "ReLU"), loc);
    ir_node *y = x;
    if (threshold != 0) y = NODE(ir_binary(b, IR_SUB, x, ir_scalar(b, threshold)), "ReLU");
    y = y ? NODE(ir_act(b, slope == 0 ? IR_ACT_RELU : IR_ACT_LEAKY_RELU, y, slope), "ReLU") : NULL;
    if (y && threshold != 0) {
        /* x >= threshold keeps x itself: add the threshold back there */
        ir_node *below = NODE(ir_binary(b, IR_GT, ir_scalar(b, threshold), x), "ReLU");
        ir_node *at_or_above = below ? NODE(ir_binary(b, IR_SUB, ir_scalar(b, 1), below), "ReLU") : NULL;
        ir_node *back = at_or_above ? NODE(ir_binary(b, IR_MUL, at_or_above, ir_scalar(b, threshold)), "ReLU") : NULL;
        y = back ? NODE(ir_binary(b, IR_ADD, y, back), "ReLU") : NULL;
    }
    if (y && has_max) {   /* min(y, max) = -max(-y, -max) */
        ir_node *neg = NODE(ir_unary(b, IR_NEG, y), "ReLU");
        ir_node *m = neg ? NODE(ir_binary(b, IR_MAXIMUM, neg, ir_scalar(b, -max_value)), "ReLU") : NULL;
        y = m ? NODE(ir_unary(b, IR_NEG, m), "ReLU") : NULL;
    }
    return result(S, y, loc);
}

static const layer_param leaky_relu_params[] = {{"negative_slope", "0.3"}, {NULL, NULL}};

static sv *leaky_relu_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    double slope = 0;
    bool present;
    if (!nonneg_arg(S, inst, "negative_slope", false, &slope, &present)) return NULL;
    return result(S, NODE(ir_act(&S->b, IR_ACT_LEAKY_RELU, in[0]->t, slope), "LeakyReLU"), loc);
}

static const layer_param elu_params[] = {{"alpha", "1.0"}, {NULL, NULL}};

static sv *elu_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    bool ok = true;
    double alpha = num_arg(S, inst, "alpha", &ok);
    if (!ok) return NULL;
    return result(S, NODE(ir_act(&S->b, IR_ACT_ELU, in[0]->t, alpha), "ELU"), loc);
}

static const layer_param prelu_params[] = {{"alpha_initializer", "zeros"}, {"shared_axes", "none"}, {NULL, NULL}};

/* PReLU: max(x, 0) + alpha * min(x, 0), a weight `alpha` per element of a
 * sample, shared (size 1) along `shared_axes` (counted from 1, the batch 0). */
static sv *prelu_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    ir_node *x = in[0]->t;
    bool ok = true;
    kd_init init = init_arg(S, inst, "alpha_initializer", &ok);
    if (!ok) return NULL;
    int rank = x->shape.rank - (x->shape.batched ? 1 : 0);
    int64_t dims[IR_MAX_RANK];
    for (int d = 0; d < rank; d++) dims[d] = x->shape.dims[d + (x->shape.batched ? 1 : 0)];
    sv *shared = layer_arg(inst, "shared_axes");
    if (shared && shared->kind != SV_NONE && !(shared->kind == SV_IDENT && !strcmp(shared->s, "none"))) {
        int count = shared->kind == SV_LIST ? shared->n : 1;
        for (int i = 0; i < count; i++) {
            sv *a = shared->kind == SV_LIST ? shared->items[i] : shared;
            int64_t axis;
            if (!sv_as_int(S, a, &axis, "PReLU shared_axes")) return NULL;
            if (axis < 1 || axis > rank) {
                sema_error(S, a->loc, "PReLU shared_axes must be sample axes, 1 to %d, got %lld", rank, (long long)axis);
                return NULL;
            }
            dims[axis - 1] = 1;
        }
    }
    kd_var *alpha = sema_new_var(S, inst, "alpha", VAR_WEIGHT, ir_shape_of(rank, dims, false), init, true, loc);
    if (!alpha) return NULL;
    ir_builder *b = &S->b;
    ir_node *pos = NODE(ir_act(b, IR_ACT_RELU, x, 0), "PReLU");
    ir_node *negx = NODE(ir_unary(b, IR_NEG, x), "PReLU");
    ir_node *neg = negx ? NODE(ir_act(b, IR_ACT_RELU, negx, 0), "PReLU") : NULL;    /* -min(x, 0) */
    ir_node *a = NODE(ir_var_read(b, alpha), "PReLU");
    ir_node *scaled = neg && a ? NODE(ir_binary(b, IR_MUL, a, neg), "PReLU") : NULL;
    return result(S, pos && scaled ? NODE(ir_binary(b, IR_SUB, pos, scaled), "PReLU") : NULL, loc);
}

static const layer_param softmax_params[] = {{"axis", "-1"}, {NULL, NULL}};

static sv *softmax_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    ir_node *x = in[0]->t;
    int64_t axis;
    if (!sv_as_int(S, layer_arg(inst, "axis"), &axis, "Softmax axis")) return NULL;
    int a = sema_axis(S, axis, x->shape.rank, loc);
    if (a < 0) return NULL;
    if (a == 0 && x->shape.batched) {
        sema_error(S, loc, "Softmax over the batch axis is not supported");
        return NULL;
    }
    ir_attrs attr = {.axis = a};
    return result(S, NODE(ir_make(&S->b, IR_SOFTMAX, 1, &x, &attr), "Softmax"), loc);
}

static const layer_param activation_params[] = {{"activation", NULL}, {NULL, NULL}};

static sv *activation_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    return result(S, apply_activation(S, in[0]->t, layer_arg(inst, "activation"), loc), loc);
}

/* ---- merges ------------------------------------------------------------ */

static sv *merge(sema *S, kd_instance *inst, sv **in, int n, ir_op op, kd_loc loc)
{
    ir_node *acc = in[0]->t;
    for (int i = 1; i < n && acc; i++) {
        if (!ir_shape_equal(&acc->shape, &in[i]->t->shape)) {
            char a[128], b[128];
            sema_error(S, loc, "%s needs inputs of one shape, got %s and %s", inst->type,
                       ir_shape_keras(&in[0]->t->shape, a, sizeof a), ir_shape_keras(&in[i]->t->shape, b, sizeof b));
            return NULL;
        }
        acc = NODE(ir_binary(&S->b, op, acc, in[i]->t), inst->type);
    }
    return result(S, acc, loc);
}

static sv *add_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc) { return merge(S, inst, in, n, IR_ADD, loc); }
static sv *multiply_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc) { return merge(S, inst, in, n, IR_MUL, loc); }
static sv *maximum_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc) { return merge(S, inst, in, n, IR_MAXIMUM, loc); }

/* min(a, b) = -max(-a, -b): the gradient goes where Maximum's would. */
static sv *minimum_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    sv **neg = kd_alloc_array(S->a, (size_t)n, sizeof *neg);
    for (int i = 0; i < n; i++) {
        ir_node *t = NODE(ir_unary(&S->b, IR_NEG, in[i]->t), "Minimum");
        if (!t) return NULL;
        neg[i] = sv_tensor(S, t, NULL, loc);
    }
    sv *m = merge(S, inst, neg, n, IR_MAXIMUM, loc);
    return m ? result(S, NODE(ir_unary(&S->b, IR_NEG, m->t), "Minimum"), loc) : NULL;
}

static sv *subtract_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    if (n != 2) {
        sema_error(S, loc, "Subtract takes exactly 2 inputs, got %d", n);
        return NULL;
    }
    return merge(S, inst, in, n, IR_SUB, loc);
}

static sv *average_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    sv *sum = merge(S, inst, in, n, IR_ADD, loc);
    if (!sum) return NULL;
    return result(S, NODE(ir_binary(&S->b, IR_MUL, sum->t, ir_scalar(&S->b, 1.0 / n)), "Average"), loc);
}

static const layer_param dot_params[] = {{"axes", NULL}, {"normalize", "false"}, {NULL, NULL}};

/* x / sqrt(max(sum(x^2, axis), 1e-12)), Keras' l2_normalize. */
static ir_node *l2_normalize(sema *S, ir_node *x, int axis, kd_loc loc)
{
    ir_builder *b = &S->b;
    ir_node *sq = NODE(ir_unary(b, IR_SQUARE, x), "Dot");
    ir_node *sum = sq ? NODE(ir_reduce(b, IR_SUM, sq, (int64_t)1 << axis, true), "Dot") : NULL;
    ir_node *floor = sum ? NODE(ir_binary(b, IR_MAXIMUM, sum, ir_scalar(b, 1e-12)), "Dot") : NULL;
    ir_node *inv = floor ? NODE(ir_unary(b, IR_RSQRT, floor), "Dot") : NULL;
    return inv ? NODE(ir_binary(b, IR_MUL, x, inv), "Dot") : NULL;
}

/* Dot(axes): per sample, the sum over one axis of each input of their
 * product — [d] . [d] -> [1]; [a, d] . [b, d] with axes 2 -> [a, b] — made as
 * a broadcast product [a, 1, d] * [1, b, d] summed over d. */
static sv *dot_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    if (n != 2) {
        sema_error(S, loc, "Dot takes exactly 2 inputs, got %d", n);
        return NULL;
    }
    ir_node *x[2] = {in[0]->t, in[1]->t};
    int rank = x[0]->shape.rank - 1;
    if (!x[0]->shape.batched || !x[1]->shape.batched || x[1]->shape.rank - 1 != rank || rank < 1 || rank > 2) {
        char a[128], b[128];
        sema_error(S, loc, "Dot needs two inputs of rank 1 or both of rank 2 per sample, got %s and %s",
                   ir_shape_sample(&x[0]->shape, a, sizeof a), ir_shape_sample(&x[1]->shape, b, sizeof b));
        return NULL;
    }
    sv *axes = layer_arg(inst, "axes");
    int64_t ax[2];
    if (axes && axes->kind == SV_LIST && axes->n == 2) {
        if (!sv_as_int(S, axes->items[0], &ax[0], "Dot axes") || !sv_as_int(S, axes->items[1], &ax[1], "Dot axes")) return NULL;
    } else if (axes && (axes->kind == SV_INT)) {
        ax[0] = ax[1] = axes->i;
    } else {
        sema_error(S, axes ? axes->loc : loc, "Dot axes must be an integer or a list of two integers");
        return NULL;
    }
    bool ok = true, normalize = bool_arg(S, inst, "normalize", &ok);
    if (!ok) return NULL;
    int a[2];
    for (int i = 0; i < 2; i++) {
        a[i] = sema_axis(S, ax[i], rank + 1, axes->loc);
        if (a[i] < 0) return NULL;
        if (a[i] == 0) {
            sema_error(S, axes->loc, "Dot cannot contract the batch axis");
            return NULL;
        }
    }
    if (x[0]->shape.dims[a[0]] != x[1]->shape.dims[a[1]]) {
        sema_error(S, loc, "Dot contracts axes of sizes %lld and %lld, which differ",
                   (long long)x[0]->shape.dims[a[0]], (long long)x[1]->shape.dims[a[1]]);
        return NULL;
    }
    for (int i = 0; i < 2 && normalize; i++)
        if (!(x[i] = l2_normalize(S, x[i], a[i], loc))) return NULL;
    int64_t d = x[0]->shape.dims[a[0]];
    ir_node *y;
    if (rank == 1) {
        y = NODE(ir_binary(&S->b, IR_MUL, x[0], x[1]), "Dot");
        y = y ? NODE(ir_reduce(&S->b, IR_SUM, y, 1 << 1, true), "Dot") : NULL;   /* [1] */
    } else {
        /* the contracted axis last: [a, d] and [b, d] */
        for (int i = 0; i < 2; i++)
            if (a[i] == 1) {
                ir_attrs t = {0};
                t.perm[0] = 0, t.perm[1] = 2, t.perm[2] = 1;
                if (!(x[i] = NODE(ir_make(&S->b, IR_TRANSPOSE, 1, &x[i], &t), "Dot"))) return NULL;
            }
        int64_t m = x[0]->shape.dims[1], k = x[1]->shape.dims[1];
        int64_t left[3] = {m, 1, d}, right[3] = {1, k, d};
        ir_node *l = NODE(ir_reshape(&S->b, x[0], ir_shape_of(3, left, true)), "Dot");
        ir_node *r = NODE(ir_reshape(&S->b, x[1], ir_shape_of(3, right, true)), "Dot");
        y = l && r ? NODE(ir_binary(&S->b, IR_MUL, l, r), "Dot") : NULL;
        y = y ? NODE(ir_reduce(&S->b, IR_SUM, y, 1 << 3, false), "Dot") : NULL;   /* [a, b] */
    }
    return result(S, y, loc);
}

/* Concatenation along one axis; shared with concat(). */
ir_node *sema_concat(sema *S, ir_node **xs, int n, int64_t axis_arg, kd_loc loc);
ir_node *sema_concat(sema *S, ir_node **xs, int n, int64_t axis_arg, kd_loc loc)
{
    int axis = sema_axis(S, axis_arg, xs[0]->shape.rank, loc);
    if (axis < 0) return NULL;
    if (axis == 0 && xs[0]->shape.batched) {
        sema_error(S, loc, "concatenation along the batch axis is not supported");
        return NULL;
    }
    ir_attrs attr = {.axis = axis};
    return NODE(ir_make(&S->b, IR_CONCAT, n, xs, &attr), "Concatenate");
}

static const layer_param concat_params[] = {{"axis", "-1"}, {NULL, NULL}};

static sv *concat_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    int64_t axis;
    if (!sv_as_int(S, layer_arg(inst, "axis"), &axis, "Concatenate axis")) return NULL;
    ir_node **xs = kd_alloc_array(S->a, (size_t)n, sizeof *xs);
    for (int i = 0; i < n; i++) xs[i] = in[i]->t;
    return result(S, sema_concat(S, xs, n, axis, loc), loc);
}

/* ---- 1-D layers: the 2-D ones over a height of 1 ----------------------------------- */

/* [batch, steps, channels] as [batch, 1, steps, channels], and back. */
static ir_node *as_image(sema *S, ir_node *x, const char *what, kd_loc loc)
{
    int64_t d[3] = {1, x->shape.dims[1], x->shape.dims[2]};
    return NODE(ir_reshape(&S->b, x, ir_shape_of(3, d, true)), what);
}

static ir_node *as_sequence(sema *S, ir_node *y, const char *what, kd_loc loc)
{
    if (!y) return NULL;
    int64_t d[2] = {y->shape.dims[2], y->shape.dims[3]};
    return NODE(ir_reshape(&S->b, y, ir_shape_of(2, d, true)), what);
}

/* An int, or a list of one int: kernel_size: 3, strides: [2]. */
static bool one_arg(sema *S, const kd_instance *inst, const char *name, int *out)
{
    sv *v = layer_arg(inst, name);
    if (v && v->kind == SV_LIST && v->n == 1) v = v->items[0];
    int64_t a;
    if (!v || !(v->kind == SV_INT || v->kind == SV_FLOAT) || !sv_as_int(S, v, &a, name) || a < 1 || a > 65536) {
        sema_error(S, v ? v->loc : inst->loc, "%s argument '%s' must be an integer between 1 and 65536", inst->type,
                   name);
        return false;
    }
    *out = (int)a;
    return true;
}

/* padding: valid | same | causal (causal only where `causal_ok`): 0 valid, 1 same, 2 causal, -1 error. */
static int padding_1d(sema *S, const kd_instance *inst, bool causal_ok)
{
    sv *v = layer_arg(inst, "padding");
    const char *p = v && (v->kind == SV_IDENT || v->kind == SV_STRING) ? v->s : NULL;
    const char *known[] = {"valid", "same", "causal"};
    int nknown = causal_ok ? 3 : 2;
    for (int i = 0; p && i < nknown; i++)
        if (!strcmp(p, known[i])) return i;
    const char *near = p ? kd_nearest(p, known, nknown) : NULL;
    sema_error(S, v ? v->loc : inst->loc, "%s padding must be %s%s%s%s", inst->type,
               causal_ok ? "valid, same or causal" : "valid or same", near ? ", got '" : "", near ? p : "",
               near ? kd_format(S->a, "'; did you mean '%s'?", near) : "");
    return -1;
}

static const layer_param conv1d_params[] = {
    {"filters", NULL}, {"kernel_size", NULL}, {"strides", "1"}, {"padding", "valid"}, {"activation", "linear"},
    {"use_bias", "true"}, {"kernel_initializer", "glorot_uniform"}, {"bias_initializer", "zeros"},
    {"kernel_regularizer", "none"}, {"bias_regularizer", "none"}, {"activity_regularizer", "none"}, {NULL, NULL}};

static sv *conv1d_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    ir_node *x = in[0]->t;
    if (!need_rank(S, inst, x, 2, loc)) return NULL;
    bool ok = true;
    int k1, s1;
    int64_t filters = int_arg(S, inst, "filters", 1, &ok);
    ok = one_arg(S, inst, "kernel_size", &k1) && ok;
    ok = one_arg(S, inst, "strides", &s1) && ok;
    int padding = padding_1d(S, inst, true);
    bool use_bias = bool_arg(S, inst, "use_bias", &ok);
    kd_init kinit = init_arg(S, inst, "kernel_initializer", &ok), binit = init_arg(S, inst, "bias_initializer", &ok);
    if (!ok || padding < 0) return NULL;
    int k[2] = {1, k1}, s[2] = {1, s1};
    ir_attrs attr = {0};
    ir_node *img = as_image(S, x, "Conv1D", loc);
    if (!img) return NULL;
    if (padding == 2) {   /* causal: all the padding, kernel_size - 1, before the first step; any length fits */
        attr.window[0] = 1, attr.window[1] = k1;
        attr.stride[0] = 1, attr.stride[1] = s1;
        attr.pad_lo[1] = k1 - 1;
    } else if (!window_geometry(S, inst, &img->shape, k, s, padding == 1, &attr, loc))
        return NULL;
    /* Keras' kernel [kernel_size, in, filters], seen by the 2-D convolution as [1, kernel_size, in, filters] */
    int64_t kdims[3] = {k1, x->shape.dims[2], filters}, k4[4] = {1, k1, x->shape.dims[2], filters};
    kd_var *kernel = sema_new_var(S, inst, "kernel", VAR_WEIGHT, ir_shape_of(3, kdims, false), kinit, true, loc);
    kd_var *bias = use_bias ? sema_new_var(S, inst, "bias", VAR_WEIGHT, ir_shape_of(1, &filters, false), binit, true, loc) : NULL;
    if (!kernel || (use_bias && !bias)) return NULL;
    ir_node *w = NODE(ir_var_read(&S->b, kernel), "Conv1D");
    w = w ? NODE(ir_reshape(&S->b, w, ir_shape_of(4, k4, false)), "Conv1D") : NULL;
    if (!w) return NULL;
    ir_node *ops[2] = {img, w};
    ir_node *y = as_sequence(S, NODE(ir_make(&S->b, IR_CONV2D, 2, ops, &attr), "Conv1D"), "Conv1D", loc);
    if (y && bias) y = NODE(ir_binary(&S->b, IR_ADD, y, NODE(ir_var_read(&S->b, bias), "Conv1D")), "Conv1D");
    return regularized(S, inst, kernel, bias, apply_activation(S, y, layer_arg(inst, "activation"), loc), loc);
}

static sv *pool1d_apply(sema *S, kd_instance *inst, ir_node *x, ir_op op, kd_loc loc)
{
    if (!need_rank(S, inst, x, 2, loc)) return NULL;
    int k1, s1;
    sv *strides = layer_arg(inst, "strides");
    if (!one_arg(S, inst, "pool_size", &k1)) return NULL;
    if (strides && strides->kind == SV_NONE) s1 = k1;
    else if (!one_arg(S, inst, "strides", &s1)) return NULL;
    int padding = padding_1d(S, inst, false);
    if (padding < 0) return NULL;
    int k[2] = {1, k1}, s[2] = {1, s1};
    ir_attrs attr = {0};
    ir_node *img = as_image(S, x, inst->type, loc);
    if (!img || !window_geometry(S, inst, &img->shape, k, s, padding == 1, &attr, loc)) return NULL;
    return result(S, as_sequence(S, NODE(ir_make(&S->b, op, 1, &img, &attr), inst->type), inst->type, loc), loc);
}

static sv *maxpool1d_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    return pool1d_apply(S, inst, in[0]->t, IR_MAXPOOL2D, loc);
}

static sv *avgpool1d_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    return pool1d_apply(S, inst, in[0]->t, IR_AVGPOOL2D, loc);
}

static sv *global_pool1d_apply(sema *S, kd_instance *inst, ir_node *x, ir_op op, kd_loc loc)
{
    if (!need_rank(S, inst, x, 2, loc)) return NULL;
    return result(S, NODE(ir_reduce(&S->b, op, x, 1 << 1, false), inst->type), loc);
}

static sv *gap1d_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    return global_pool1d_apply(S, inst, in[0]->t, IR_MEAN, loc);
}

static sv *gmp1d_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    return global_pool1d_apply(S, inst, in[0]->t, IR_MAX, loc);
}

/* ---- resampling and cropping ---------------------------------------------------- */

static const layer_param upsampling_params[] = {{"size", "2"}, {"interpolation", "nearest"}, {NULL, NULL}};

/* Nearest neighbour: each pixel repeated size[0] x size[1] times, as a broadcast over two new axes. */
/* Bilinear resizing of one axis by an integer factor, as Keras 3 resizes
 * (TensorFlow's half-pixel centres): output index o samples the input at
 * (o + 0.5) / factor - 0.5, clamped to [0, n - 1], between its two
 * neighbours. Each output row is a weighted sum of at most two input rows
 * (slices), the rows concatenated back along the axis. */
static ir_node *resize_bilinear(sema *S, ir_node *x, int axis, int factor, kd_loc loc)
{
    if (factor == 1) return x;
    ir_builder *b = &S->b;
    int64_t n = x->shape.dims[axis], m = n * factor;
    ir_node **rows = kd_alloc_array(S->a, (size_t)m, sizeof *rows);
    for (int64_t o = 0; o < m; o++) {
        double src = ((double)o + 0.5) / factor - 0.5;
        if (src < 0) src = 0;
        int64_t i0 = (int64_t)src, i1 = i0 + 1 < n ? i0 + 1 : n - 1;
        double t = src - (double)i0;
        ir_node *pick[2];
        int64_t at[2] = {i0, i1};
        for (int k = 0; k < 2; k++) {
            ir_attrs sl = {0};
            for (int a = 0; a < x->shape.rank; a++) sl.size[a] = x->shape.dims[a];
            sl.begin[axis] = at[k], sl.size[axis] = 1;
            pick[k] = NODE(ir_make(b, IR_SLICE, 1, &x, &sl), "UpSampling2D");
            if (!pick[k]) return NULL;
        }
        if (t == 0 || i0 == i1) rows[o] = pick[0];
        else {
            ir_node *lo = NODE(ir_binary(b, IR_MUL, pick[0], ir_scalar(b, 1 - t)), "UpSampling2D");
            ir_node *hi = NODE(ir_binary(b, IR_MUL, pick[1], ir_scalar(b, t)), "UpSampling2D");
            if (!lo || !hi || !(rows[o] = NODE(ir_binary(b, IR_ADD, lo, hi), "UpSampling2D"))) return NULL;
        }
    }
    ir_attrs cat = {.axis = axis};
    return NODE(ir_make(b, IR_CONCAT, (int)m, rows, &cat), "UpSampling2D");
}

static sv *upsampling_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    ir_node *x = in[0]->t;
    if (!need_rank(S, inst, x, 3, loc)) return NULL;
    int f[2];
    if (!pair_arg(S, inst, "size", f)) return NULL;
    sv *interp = layer_arg(inst, "interpolation");
    const char *how = interp && (interp->kind == SV_IDENT || interp->kind == SV_STRING) ? interp->s : NULL;
    if (how && !strcmp(how, "bilinear")) {
        ir_node *y = resize_bilinear(S, x, 1, f[0], loc);
        return result(S, y ? resize_bilinear(S, y, 2, f[1], loc) : NULL, loc);
    }
    if (!how || strcmp(how, "nearest")) {
        const char *known[] = {"nearest", "bilinear"};
        const char *near = how ? kd_nearest(how, known, 2) : NULL;
        sema_error(S, interp ? interp->loc : loc, "UpSampling2D interpolation must be nearest or bilinear%s%s%s",
                   how ? ", got '" : "", how ? how : "", how ? (near ? kd_format(S->a, "'; did you mean '%s'?", near) : "'") : "");
        return NULL;
    }
    int64_t h = x->shape.dims[1], w = x->shape.dims[2], c = x->shape.dims[3];
    int64_t six[5] = {h, 1, w, 1, c}, wide[5] = {h, f[0], w, f[1], c}, out[3] = {h * f[0], w * f[1], c};
    ir_node *y = NODE(ir_reshape(&S->b, x, ir_shape_of(5, six, true)), "UpSampling2D");
    y = y ? NODE(ir_broadcast(&S->b, y, ir_shape_of(5, wide, true)), "UpSampling2D") : NULL;
    y = y ? NODE(ir_reshape(&S->b, y, ir_shape_of(3, out, true)), "UpSampling2D") : NULL;
    return result(S, y, loc);
}

static const layer_param cropping_params[] = {{"cropping", "0"}, {NULL, NULL}};

/* cropping: n | [h, w] | [[top, bottom], [left, right]], as ZeroPadding2D's padding. */
static sv *cropping_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    ir_node *x = in[0]->t;
    if (!need_rank(S, inst, x, 3, loc)) return NULL;
    int64_t crop[4];   /* top, bottom, left, right */
    if (!sides_arg(S, inst, "cropping", crop)) return NULL;
    sv *p = layer_arg(inst, "cropping");
    if (crop[0] + crop[1] >= x->shape.dims[1] || crop[2] + crop[3] >= x->shape.dims[2]) {
        char buf[128];
        sema_error(S, p->loc, "Cropping2D crops all of its input %s", ir_shape_sample(&x->shape, buf, sizeof buf));
        return NULL;
    }
    int64_t begin[4] = {0, crop[0], crop[2], 0};
    int64_t size[4] = {IR_BATCH, x->shape.dims[1] - crop[0] - crop[1], x->shape.dims[2] - crop[2] - crop[3],
                       x->shape.dims[3]};
    ir_attrs attr = {0};
    for (int d = 0; d < 4; d++) attr.begin[d] = begin[d], attr.size[d] = size[d];
    return result(S, NODE(ir_make(&S->b, IR_SLICE, 1, &x, &attr), "Cropping2D"), loc);
}

/* ---- axes ------------------------------------------------------------------------ */

static const layer_param permute_params[] = {{"dims", NULL}, {NULL, NULL}};

/* dims: a permutation of 1..rank (the batch stays first). */
static sv *permute_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    ir_node *x = in[0]->t;
    sv *dims = layer_arg(inst, "dims");
    int rank = x->shape.rank - 1;
    if (!dims || dims->kind != SV_LIST || dims->n != rank) {
        sema_error(S, dims ? dims->loc : loc, "Permute dims must list each of the %d sample axes once (1 to %d)", rank,
                   rank);
        return NULL;
    }
    ir_attrs attr = {0};
    bool seen[IR_MAX_RANK] = {false};
    for (int i = 0; i < rank; i++) {
        int64_t d;
        if (!sv_as_int(S, dims->items[i], &d, "Permute dims")) return NULL;
        if (d < 1 || d > rank || seen[d]) {
            sema_error(S, dims->items[i]->loc, "Permute dims must list each of the %d sample axes once (1 to %d)",
                       rank, rank);
            return NULL;
        }
        seen[d] = true;
        attr.perm[i + 1] = (int)d;
    }
    return result(S, NODE(ir_make(&S->b, IR_TRANSPOSE, 1, &x, &attr), "Permute"), loc);
}

static const layer_param repeat_vector_params[] = {{"n", NULL}, {NULL, NULL}};

static sv *repeat_vector_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    ir_node *x = in[0]->t;
    if (!need_rank(S, inst, x, 1, loc)) return NULL;
    bool ok = true;
    int64_t times = int_arg(S, inst, "n", 1, &ok);
    if (!ok) return NULL;
    int64_t one[2] = {1, x->shape.dims[1]}, many[2] = {times, x->shape.dims[1]};
    ir_node *y = NODE(ir_reshape(&S->b, x, ir_shape_of(2, one, true)), "RepeatVector");
    return result(S, y ? NODE(ir_broadcast(&S->b, y, ir_shape_of(2, many, true)), "RepeatVector") : NULL, loc);
}

/* ---- scaling and normalisation --------------------------------------------------- */

static const layer_param rescaling_params[] = {{"scale", NULL}, {"offset", "0"}, {NULL, NULL}};

static sv *rescaling_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    bool ok = true;
    double scale = num_arg(S, inst, "scale", &ok), offset = num_arg(S, inst, "offset", &ok);
    if (!ok) return NULL;
    ir_node *y = NODE(ir_binary(&S->b, IR_MUL, in[0]->t, ir_scalar(&S->b, scale)), "Rescaling");
    if (y && offset != 0) y = NODE(ir_binary(&S->b, IR_ADD, y, ir_scalar(&S->b, offset)), "Rescaling");
    return result(S, y, loc);
}

/* A number, or a list of one number per element of the last axis, as a constant of that shape. */
static ir_node *per_channel(sema *S, const kd_instance *inst, const char *name, int64_t channels, double (*f)(double),
                            kd_loc loc)
{
    sv *v = layer_arg(inst, name);
    if (v && (v->kind == SV_INT || v->kind == SV_FLOAT)) {
        double x = 0;
        if (!sv_as_number(S, v, &x, name)) return NULL;
        return ir_scalar(&S->b, f(x));
    }
    if (!v || v->kind != SV_LIST || v->n != channels) {
        sema_error(S, v ? v->loc : loc, "%s %s must be a number or a list of %lld numbers (one per channel)",
                   inst->type, name, (long long)channels);
        return NULL;
    }
    /* a list: one constant per channel, concatenated along the only axis */
    ir_node **parts = kd_alloc_array(S->a, (size_t)channels, sizeof *parts);
    int64_t one = 1;
    for (int64_t i = 0; i < channels; i++) {
        double x = 0;
        if (!sv_as_number(S, v->items[i], &x, name)) return NULL;
        parts[i] = ir_const(&S->b, f(x), ir_shape_of(1, &one, false));
    }
    ir_attrs attr = {.axis = 0};
    return channels == 1 ? parts[0] : NODE(ir_make(&S->b, IR_CONCAT, (int)channels, parts, &attr), inst->type);
}

static double identity(double x) { return x; }
static double inv_std(double var) { return 1 / fmax(sqrt(var), 1e-7); }   /* Keras: 1 / max(sqrt(var), epsilon()) */

static const layer_param normalization_params[] = {{"mean", NULL}, {"variance", NULL}, {"axis", "-1"}, {NULL, NULL}};

/* With a given mean and variance (Keras' constructor arguments; no adapt()):
 * (x - mean) / max(sqrt(variance), 1e-7), over the last axis; no weights. */
static sv *normalization_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    ir_node *x = in[0]->t;
    int64_t axis_arg;
    if (!sv_as_int(S, layer_arg(inst, "axis"), &axis_arg, "Normalization axis")) return NULL;
    int axis = sema_axis(S, axis_arg, x->shape.rank, loc);
    if (axis < 0) return NULL;
    if (axis != x->shape.rank - 1 || axis == 0) {
        sema_error(S, loc, "Normalization normalises the last axis; axis %lld is not supported", (long long)axis_arg);
        return NULL;
    }
    int64_t c = x->shape.dims[axis];
    ir_node *mean = per_channel(S, inst, "mean", c, identity, loc), *scale = per_channel(S, inst, "variance", c, inv_std, loc);
    if (!mean || !scale) return NULL;
    ir_node *y = NODE(ir_binary(&S->b, IR_SUB, x, mean), "Normalization");
    return result(S, y ? NODE(ir_binary(&S->b, IR_MUL, y, scale), "Normalization") : NULL, loc);
}

static const layer_param layernorm_params[] = {
    {"axis", "-1"}, {"epsilon", "0.001"}, {"center", "true"}, {"scale", "true"}, {NULL, NULL}};

/* Over the last axis of each sample: (x - mean) / sqrt(variance + epsilon) * gamma + beta. */
static sv *layernorm_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    ir_node *x = in[0]->t;
    bool ok = true;
    int64_t axis_arg = 0;
    if (!sv_as_int(S, layer_arg(inst, "axis"), &axis_arg, "LayerNormalization axis")) return NULL;
    double eps = num_arg(S, inst, "epsilon", &ok);
    bool center = bool_arg(S, inst, "center", &ok), scale = bool_arg(S, inst, "scale", &ok);
    if (!ok) return NULL;
    int rank = x->shape.rank;
    int axis = sema_axis(S, axis_arg, rank, loc);
    if (axis < 0) return NULL;
    if (axis != rank - 1 || axis == 0) {
        sema_error(S, loc, "LayerNormalization normalises the last axis; axis %lld is not supported", (long long)axis_arg);
        return NULL;
    }
    if (!(eps > 0)) {
        sema_error(S, loc, "LayerNormalization epsilon must be positive");
        return NULL;
    }
    int64_t c = x->shape.dims[axis];
    ir_shape vec = ir_shape_of(1, &c, false);
    kd_var *gamma = scale ? sema_new_var(S, inst, "gamma", VAR_WEIGHT, vec, (kd_init){.kind = INIT_ONES}, true, loc) : NULL;
    kd_var *beta = center ? sema_new_var(S, inst, "beta", VAR_WEIGHT, vec, (kd_init){.kind = INIT_ZEROS}, true, loc) : NULL;
    if ((scale && !gamma) || (center && !beta)) return NULL;
    ir_builder *b = &S->b;
    const char *w = "LayerNormalization";
    int64_t last = (int64_t)1 << axis;
    ir_node *mean = NODE(ir_reduce(b, IR_MEAN, x, last, true), w);
    ir_node *xc = mean ? NODE(ir_binary(b, IR_SUB, x, mean), w) : NULL;
    ir_node *sq = xc ? NODE(ir_unary(b, IR_SQUARE, xc), w) : NULL;
    ir_node *var = sq ? NODE(ir_reduce(b, IR_MEAN, sq, last, true), w) : NULL;
    ir_node *ve = var ? NODE(ir_binary(b, IR_ADD, var, ir_scalar(b, eps)), w) : NULL;
    ir_node *inv = ve ? NODE(ir_unary(b, IR_RSQRT, ve), w) : NULL;
    ir_node *y = inv ? NODE(ir_binary(b, IR_MUL, xc, inv), w) : NULL;
    if (y && gamma) y = NODE(ir_binary(b, IR_MUL, y, NODE(ir_var_read(b, gamma), w)), w);
    if (y && beta) y = NODE(ir_binary(b, IR_ADD, y, NODE(ir_var_read(b, beta), w)), w);
    return result(S, y, loc);
}

static const layer_param gaussian_noise_params[] = {{"stddev", NULL}, {"seed", "none"}, {NULL, NULL}};

/* GaussianNoise: in training x + noise of the given stddev, a fresh draw each
 * step (the train block's seed; the layer's own `seed` is accepted and, as
 * with Dropout, not used); in inference x. */
static sv *gaussian_noise_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    ir_node *x = in[0]->t;
    bool ok = true;
    double stddev = num_arg(S, inst, "stddev", &ok);
    if (!ok) return NULL;
    if (!(stddev >= 0 && stddev < 1e30)) {
        sema_error(S, layer_arg(inst, "stddev")->loc, "GaussianNoise stddev must be a non-negative number, got %g", stddev);
        return NULL;
    }
    if (!S->training || stddev == 0 || !x->shape.batched) return result(S, x, loc);
    ir_attrs attr = {.scalar = stddev, .index = S->b.g->nodes.len};
    ir_node *noise = NODE(ir_leaf(&S->b, IR_GAUSSIAN_NOISE, x->shape, &attr, -1), "GaussianNoise");
    return result(S, noise ? NODE(ir_binary(&S->b, IR_ADD, x, noise), "GaussianNoise") : NULL, loc);
}

/* SpatialDropout2D: one mask value per sample and channel, for every pixel. */
static sv *spatial_dropout_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    ir_node *x = in[0]->t;
    if (!need_rank(S, inst, x, 3, loc)) return NULL;
    bool ok = true;
    double rate = num_arg(S, inst, "rate", &ok);
    if (!ok) return NULL;
    if (!(rate >= 0 && rate < 1)) {
        sema_error(S, loc, "dropout rate must be in [0, 1), got %g", rate);
        return NULL;
    }
    if (!S->training || rate == 0) return result(S, x, loc);
    int64_t d[3] = {1, 1, x->shape.dims[3]};
    ir_attrs attr = {.scalar = rate, .index = S->b.g->nodes.len};
    ir_node *mask = NODE(ir_leaf(&S->b, IR_DROPOUT_MASK, ir_shape_of(3, d, true), &attr, -1), "SpatialDropout2D");
    return result(S, mask ? NODE(ir_binary(&S->b, IR_MUL, x, mask), "SpatialDropout2D") : NULL, loc);
}

/* ---- the table --------------------------------------------------------- */

static const layer_def layer_table[] = {
    {"Dense", 1, dense_params, dense_apply},
    {"Conv2D", 1, conv2d_params, conv2d_apply},
    {"DepthwiseConv2D", 1, depthwise_params, depthwise_apply},
    {"SeparableConv2D", 1, separable_params, separable_apply},
    {"Conv2DTranspose", 1, conv_transpose_params, conv_transpose_apply},
    {"MaxPooling2D", 1, pool_params, maxpool_apply},
    {"AveragePooling2D", 1, pool_params, avgpool_apply},
    {"GlobalAveragePooling2D", 1, no_params, gap_apply},
    {"GlobalMaxPooling2D", 1, no_params, gmp_apply},
    {"ZeroPadding2D", 1, zeropad_params, zeropad_apply},
    {"Flatten", 1, no_params, flatten_apply},
    {"Reshape", 1, reshape_params, reshape_apply},
    {"Dropout", 1, dropout_params, dropout_apply},
    {"SpatialDropout2D", 1, dropout_params, spatial_dropout_apply},
    {"GaussianNoise", 1, gaussian_noise_params, gaussian_noise_apply},
    {"Conv1D", 1, conv1d_params, conv1d_apply},
    {"MaxPooling1D", 1, pool_params, maxpool1d_apply},
    {"AveragePooling1D", 1, pool_params, avgpool1d_apply},
    {"GlobalAveragePooling1D", 1, no_params, gap1d_apply},
    {"GlobalMaxPooling1D", 1, no_params, gmp1d_apply},
    {"UpSampling2D", 1, upsampling_params, upsampling_apply},
    {"Cropping2D", 1, cropping_params, cropping_apply},
    {"Permute", 1, permute_params, permute_apply},
    {"RepeatVector", 1, repeat_vector_params, repeat_vector_apply},
    {"Rescaling", 1, rescaling_params, rescaling_apply},
    {"Normalization", 1, normalization_params, normalization_apply},
    {"LayerNormalization", 1, layernorm_params, layernorm_apply},
    {"BatchNormalization", 1, batchnorm_params, batchnorm_apply},
    {"ReLU", 1, relu_params, relu_apply},
    {"LeakyReLU", 1, leaky_relu_params, leaky_relu_apply},
    {"ELU", 1, elu_params, elu_apply},
    {"PReLU", 1, prelu_params, prelu_apply},
    {"Softmax", 1, softmax_params, softmax_apply},
    {"Activation", 1, activation_params, activation_apply},
    {"Add", -1, no_params, add_apply},
    {"Subtract", -1, no_params, subtract_apply},
    {"Multiply", -1, no_params, multiply_apply},
    {"Maximum", -1, no_params, maximum_apply},
    {"Minimum", -1, no_params, minimum_apply},
    {"Average", -1, no_params, average_apply},
    {"Concatenate", -1, concat_params, concat_apply},
    {"Dot", -1, dot_params, dot_apply},
    {"Embedding", 1, embedding_params, embedding_apply},
    {"SimpleRNN", 1, simple_rnn_params, simple_rnn_apply},
    {"LSTM", 1, lstm_params, lstm_apply},
    {"GRU", 1, gru_params, gru_apply},
    {"Bidirectional", 1, bidirectional_params, bidirectional_apply},
    {"TimeDistributed", 1, time_distributed_params, time_distributed_apply},
};

const layer_def *layer_find(const char *name)
{
    for (size_t i = 0; i < sizeof layer_table / sizeof layer_table[0]; i++)
        if (strcmp(layer_table[i].name, name) == 0) return &layer_table[i];
    return NULL;
}

const kd_layer_param *kd_builtin_layer(const char *type, int *inputs)
{
    const layer_def *l = layer_find(type);
    if (l && inputs) *inputs = l->ninputs;
    return l ? l->params : NULL;
}

int layer_names(const char **out, int max)
{
    int n = 0;
    for (size_t i = 0; i < sizeof layer_table / sizeof layer_table[0] && n < max; i++) out[n++] = layer_table[i].name;
    return n;
}
