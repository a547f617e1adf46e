/* fold_batchnorm.c — BatchNormalization folded into the layer before it, for
 * inference with the weights known when compiling (--embed-weights).
 *
 * In inference a BatchNormalization over the last axis is an affine map per
 * channel, y = x * s + t with s = gamma / sqrt(variance + epsilon) and
 * t = beta - mean * s. When x is a convolution or Dense, x = conv(in, W) + b,
 * the map moves into the layer (what TFLite's converter does):
 *
 *     W' = W * s  (each kernel element scaled by its output channel's s)
 *     b' = beta + (b - mean) * s
 *
 * The graph becomes conv(in, W) + read(into), where `into` is the variable
 * that will hold b' (beta's, or the layer's own bias when center is off);
 * kd_bn_fold_values then writes W' and b' over W and `into` in the weights
 * (with the runtime's kdk_dbn_fold, which a model's <model>_prepare runs too).
 * So a fold is only safe when nothing else reads those variables or sees the
 * layer's output: each node from the layer to the normalisation has one use,
 * and the kernel, the bias and `into` are each read once in the graph.
 * Anything else (a shared layer, a residual edge taken before the
 * normalisation, a Conv2DTranspose, whose output channels are not its
 * kernel's last axis, grouped convolutions) stays as it was. */
#include "../passes.h"
#include "kernels.h"

typedef struct fold_ctx {
    kd_arena *a;
    const ir_batchnorm **at;   /* src node id -> the BatchNormalization whose result it is */
    int *reads;                /* var index -> live reads of it in the graph */
    int nvars;
    bool counted;
    kd_vec folds;              /* kd_bn_fold* */
} fold_ctx;

/* The variable a kernel operand reads, through reshapes, pads and slices
 * that keep each element's output channel (its index mod c); -1 if none. */
static int kernel_var(const ir_node *w, int64_t c, bool depthwise)
{
    if (depthwise)   /* [kh, kw, in, multiplier]: channel in * multiplier + m, the index mod c */
        return w->op == IR_VAR && w->shape.rank == 4 && w->shape.dims[2] * w->shape.dims[3] == c ? w->var : -1;
    for (;;) {
        int last = w->shape.rank - 1;
        if (last < 0 || w->shape.dims[last] != c) return -1;
        switch (w->op) {
        case IR_VAR: return w->var;
        case IR_RESHAPE: break;
        case IR_PAD:
            if (w->attr.pad_lo[last] || w->attr.pad_hi[last]) return -1;
            break;
        case IR_SLICE:
            if (w->attr.begin[last]) return -1;
            break;
        default: return -1;
        }
        w = w->in[0];
    }
}

/* x = [inner + read(bias)], inner = reshape* of a convolution or Dense; each
 * node used once. Fills f->kernel and f->bias; returns inner, or NULL. */
static const ir_node *fold_site(const kd_rewrite *rw, const fold_ctx *c, const ir_node *x, int64_t ch, kd_bn_fold *f)
{
    const ir_node *inner = x;
    f->bias = -1;
    if (rw->uses[x->id] != 1) return NULL;
    if (x->op == IR_ADD && x->in[1]->op == IR_VAR && x->in[1]->shape.rank == 1 && x->in[1]->shape.dims[0] == ch &&
        ir_shape_equal(&x->in[0]->shape, &x->shape)) {
        f->bias = x->in[1]->var;
        inner = x->in[0];
        if (c->reads[f->bias] != 1) return NULL;
    }
    const ir_node *core = inner;
    while (core->op == IR_RESHAPE) {
        if (rw->uses[core->id] != 1) return NULL;
        core = core->in[0];
    }
    if (rw->uses[core->id] != 1) return NULL;
    switch (core->op) {
    case IR_CONV2D: f->kernel = kernel_var(core->in[1], ch, false); break;
    case IR_DEPTHWISE_CONV2D: f->kernel = kernel_var(core->in[1], ch, true); break;
    case IR_MATMUL: f->kernel = core->attr.trans_a || core->attr.trans_b ? -1 : kernel_var(core->in[1], ch, false); break;
    default: return NULL;
    }
    if (f->kernel < 0 || c->reads[f->kernel] != 1) return NULL;
    if (core->shape.dims[core->shape.rank - 1] != ch) return NULL;
    return inner;
}

static ir_node *visit(kd_rewrite *rw, ir_node *old, ir_node **in)
{
    fold_ctx *c = rw->ctx;
    if (!c->counted) {   /* reads by live nodes only: a regularizer's read of a kernel is dead in inference */
        for (int i = 0; i < rw->src->nodes.len; i++) {
            const ir_node *x = rw->src->nodes.items[i];
            if (rw->live[i] && x->op == IR_VAR && x->var >= 0 && x->var < c->nvars) c->reads[x->var]++;
        }
        c->counted = true;
    }
    const ir_batchnorm *bn = c->at[old->id];
    if (!bn) return kd_rw_copy(rw, old, in);
    int64_t ch = bn->x->shape.dims[bn->x->shape.rank - 1];
    kd_bn_fold f = {.gamma = bn->gamma, .beta = bn->beta, .mean = bn->mean, .variance = bn->variance,
                    .epsilon = bn->epsilon, .channels = ch};
    const ir_node *inner = fold_site(rw, c, bn->x, ch, &f);
    f.into = bn->beta >= 0 ? bn->beta : f.bias;
    if (!inner || f.into < 0 || c->reads[f.into] != 1) return kd_rw_copy(rw, old, in);
    kd_bn_fold *keep = kd_alloc(c->a, sizeof *keep);
    *keep = f;
    kd_vec_push(c->a, &c->folds, keep);
    ir_node *bias = ir_var_read(&rw->b, rw->src->vars->items[f.into]);
    return bias ? ir_binary(&rw->b, IR_ADD, rw->map[inner->id], bias) : NULL;
}

ir_graph *kd_pass_fold_batchnorm(ir_graph *g, kd_bn_fold ***folds, int *nfolds, char *why, size_t why_len)
{
    kd_arena *a = g->arena;
    int n = g->nodes.len, nvars = g->vars ? g->vars->len : 0;
    fold_ctx c = {.a = a, .nvars = nvars};
    c.at = kd_alloc_array(a, (size_t)(n ? n : 1), sizeof *c.at);
    c.reads = kd_alloc_array(a, (size_t)(nvars ? nvars : 1), sizeof *c.reads);
    for (int i = 0; i < g->batchnorms.len; i++) {
        const ir_batchnorm *bn = g->batchnorms.items[i];
        if (bn->y->id < n && g->nodes.items[bn->y->id] == bn->y) c.at[bn->y->id] = bn;
    }
    ir_graph *out = kd_rewrite_graph(g, visit, &c, why, why_len);
    *folds = (kd_bn_fold **)c.folds.items;
    *nfolds = c.folds.len;
    return out;
}

bool kd_bn_fold_values(kd_bn_fold *const *folds, int nfolds, const kd_var *const *vars, double *params, int *bad)
{
    for (int i = 0; i < nfolds; i++) {
        const kd_bn_fold *f = folds[i];
#define AT(v) ((v) >= 0 ? params + vars[(v)]->offset : NULL)
        if (kdk_dbn_fold(AT(f->kernel), (long)ir_shape_elems(&vars[f->kernel]->shape), (long)f->channels, AT(f->gamma),
                         AT(f->beta), AT(f->bias), AT(f->mean), AT(f->variance), f->epsilon, AT(f->into)) != 0) {
#undef AT
            *bad = i;
            return false;
        }
    }
    return true;
}
