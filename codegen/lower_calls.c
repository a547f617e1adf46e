/* lower_calls.c — nodes that become calls into the runtime kernels
 * (runtime/kernels.h): matrix products with their fused bias and activation,
 * convolutions (depthwise too) and their gradients, pooling, softmax over
 * the last axis, the fused softmax cross-entropy and the mean over the MPI
 * ranks. Operands are whole buffers; workspaces are
 * scratch buffers in the arena that live for the one call, sized on the host
 * with the kernels' own *_work_size functions at the maximum batch (work sizes
 * do not depend on the target, runtime/kernels.h promises). */
#include "lower_internal.h"

#include "kernels.h"

bool lw_is_call_op(const ir_node *n)
{
    switch (n->op) {
    case IR_MATMUL: case IR_FUSED_MATMUL: case IR_CONV2D: case IR_FUSED_CONV2D:
    case IR_CONV2D_BWD_DATA: case IR_CONV2D_BWD_FILTER:
    case IR_FUSED_DEPTHWISE_CONV2D:
    case IR_MAXPOOL2D: case IR_MAXPOOL2D_GRAD: case IR_AVGPOOL2D: case IR_AVGPOOL2D_GRAD:
    case IR_SOFTMAX_XENT: case IR_SOFTMAX_XENT_GRAD:
    case IR_GAUSSIAN_NOISE:
    case IR_RANK_MEAN:
        return true;
    case IR_SOFTMAX:
    case IR_LOG_SOFTMAX: return n->attr.axis == n->shape.rank - 1;
    case IR_DEPTHWISE_CONV2D:
    case IR_DEPTHWISE_CONV2D_BWD_DATA:
    case IR_DEPTHWISE_CONV2D_BWD_FILTER: return !lw_depthwise_as_loops(n);
    default: return false;
    }
}

/* An int argument that may scale with the batch: static * (batch or 1). */
typedef struct dim {
    int64_t n;
    bool batched;
} dim;

static dim fixed(int64_t n) { return (dim){n, false}; }

static lp_expr *dim_expr(lower *L, dim d)
{
    lp_expr *e = lp_int(L->a, d.n);
    return d.batched ? lp_bin(L->a, LP_MUL, lp_param_ref(L->a, LP_P_BATCH), e) : e;
}

/* The value at the maximum batch; the kernels take ints, so it must fit one. */
static int dim_max(lower *L, dim d)
{
    int64_t v = d.n * (d.batched ? L->p->max_batch : 1);
    if (v > INT32_MAX) {
        lw_fail(L, "a dimension of %lld at batch %d is too large for the runtime kernels (int)", (long long)v,
                L->p->max_batch);
        return 1;
    }
    return (int)v;
}

/* The product of dims [0, upto) of s. */
static dim lead(const ir_shape *s, int upto)
{
    dim d = {1, false};
    for (int i = 0; i < upto; i++) {
        if (s->dims[i] == IR_BATCH) d.batched = true;
        else d.n *= s->dims[i];
    }
    return d;
}


static lp_buf *operand_buf(lower *L, ir_node *x)
{
    lw_node *w = &L->n[x->id];
    if (!w->buf) lw_fail(L, "%%%d %s: a kernel needs it in memory", x->id, ir_ops[x->op]->name);
    return w->buf;
}

typedef struct call_builder {
    lower *L;
    lp_call *c;
    int at;
} call_builder;

static call_builder call_begin(lower *L, lp_kernel_id k)
{
    call_builder cb = {L, kd_alloc(L->a, sizeof(lp_call)), 0};
    cb.c->k = k;
    return cb;
}

static void arg_int(call_builder *cb, lp_expr *e) { cb->c->args[cb->at++].e = e; }
static void arg_dim(call_builder *cb, dim d)
{
    dim_max(cb->L, d);
    arg_int(cb, dim_expr(cb->L, d));
}
static void arg_const(call_builder *cb, int64_t v)
{
    dim_max(cb->L, fixed(v));
    arg_int(cb, lp_int(cb->L->a, v));
}
static void arg_real(call_builder *cb, lp_expr *e) { cb->c->args[cb->at++].e = e; }
static void arg_buf(call_builder *cb, lp_buf *b) { cb->c->args[cb->at++].buf = b; }
static void arg_null(call_builder *cb) { cb->at++; }

static void call_end(call_builder *cb)
{
    lower *L = cb->L;
    if (cb->at != lp_kernels[cb->c->k].nargs)
        lw_fail(L, "internal: %s given %d arguments", lp_kernels[cb->c->k].name, cb->at);
    kd_vec_push(L->a, &L->k->body, lp_call_stmt(L->a, cb->c));
}

/* A workspace of `elems` reals for the current kernel, or NULL when none is wanted. */
static lp_buf *workspace(lower *L, size_t elems)
{
    if (elems == 0 || (L->o && L->o->no_workspace)) return NULL;
    lp_buf *b = lp_new_buf(L->a, L->f, LP_ARENA, kd_format(L->a, "work%d", L->k->index));
    b->elems = (int64_t)elems;
    b->scratch = true;
    b->note = "workspace";
    return b;
}

static bool f64(lower *L) { return L->p->real == LP_F64; }

/* ---- matmul ------------------------------------------------------------------------ */

/* In predict_prepared, B of a matmul that is a whole weight is read as
 * <model>_prepare packed it for the GEMM, at its own place in prepared after
 * the params (each weight packed once, however many matmuls read it); NULL:
 * B is packed per call, as predict does (no workspace, a B that is computed,
 * or batches too small for the GEMM to pack). */
static lp_buf *prepacked(lower *L, ir_node *b, bool tb, int64_t ldb, int mM, int mN, int mK, bool has_work)
{
    lp_program *p = L->p;
    if (L->f->kind != LP_F_PREDICT_PREPARED || !has_work || b->op != IR_VAR) return NULL;
    const lp_buf *w = operand_buf(L, b);
    if (w->space != LP_PARAMS || w->var < 0) return NULL;
    int64_t size = (int64_t)(f64(L) ? kdk_dgemm_packed_b_size(mM, mN, mK) : kdk_sgemm_packed_b_size(mM, mN, mK));
    if (size == 0) return NULL;
    const lp_pack *pk = NULL;
    for (int i = 0; i < p->packs.len && !pk; i++) {
        const lp_pack *q = p->packs.items[i];
        if (q->from == w->offset && q->transb == tb && q->n == mN && q->k == mK) pk = q;
    }
    if (!pk) {
        lp_pack *q = kd_alloc(L->a, sizeof *q);
        int64_t line = f64(L) ? 8 : 16;   /* reals per 64-byte line: the panels start on lines */
        *q = (lp_pack){.name = p->vars[w->var]->name, .from = w->offset, .size = size, .n = mN, .k = mK,
                       .ldb = (int)ldb, .transb = tb};
        q->to = (p->prepared_size + line - 1) / line * line;
        p->prepared_size = q->to + size;
        kd_vec_push(L->a, &p->packs, q);
        pk = q;
    }
    lp_buf *pb = lp_new_buf(L->a, L->f, LP_PARAMS, kd_format(L->a, "%s_packed", w->name));
    pb->offset = pk->to;
    pb->elems = pk->size;
    pb->is_const = true;
    pb->var = -1;
    pb->note = kd_format(L->a, "%s, packed by prepare", pk->name);
    return pb;
}

static bool matmul(lower *L, ir_node *n, lp_buf *dst)
{
    const ir_shape *xs = &n->in[0]->shape, *ys = &n->in[1]->shape;
    bool ta = n->attr.trans_a, tb = n->attr.trans_b;
    int64_t xc = xs->dims[xs->rank - 1], yc = ys->dims[ys->rank - 1];
    dim xr = lead(xs, xs->rank - 1), yr = lead(ys, ys->rank - 1);
    dim M = ta ? fixed(xc) : xr, K = ta ? xr : fixed(xc), N = tb ? yr : fixed(yc);
    if (N.batched) return lw_fail(L, "matmul: the batch cannot be a column");
    int mM = dim_max(L, M), mN = dim_max(L, N), mK = dim_max(L, K);
    size_t work = f64(L) ? kdk_dgemm_work_size(mM, mN, mK) : kdk_sgemm_work_size(mM, mN, mK);
    lp_buf *wbuf = workspace(L, work), *packed = prepacked(L, n->in[1], tb, yc, mM, mN, mK, wbuf != NULL);
    call_builder cb = call_begin(L, packed ? LP_K_GEMM_PACKED_B : LP_K_GEMM);
    arg_dim(&cb, M);
    arg_dim(&cb, N);
    arg_dim(&cb, K);
    arg_buf(&cb, operand_buf(L, n->in[0]));
    arg_const(&cb, xc);
    arg_const(&cb, ta);
    arg_buf(&cb, operand_buf(L, n->in[1]));
    arg_const(&cb, yc);
    arg_const(&cb, tb);
    if (packed) arg_buf(&cb, packed);
    arg_real(&cb, lp_real(L->a, 0));
    arg_buf(&cb, dst);
    arg_const(&cb, N.n);
    if (n->nin == 3) arg_buf(&cb, operand_buf(L, n->in[2]));
    else arg_null(&cb);
    arg_const(&cb, n->op == IR_FUSED_MATMUL ? n->attr.act : 0);
    arg_buf(&cb, wbuf);
    call_end(&cb);
    return !L->failed;
}

/* ---- convolution and pooling --------------------------------------------------------- */

typedef struct geom {
    dim n;
    int64_t h, w, c, oh, ow, f, kh, kw, sh, sw, pt, pl;
} geom;

static geom conv_geom(const ir_node *n, const ir_shape *x, const ir_shape *y, int64_t kh, int64_t kw)
{
    geom g = {.n = lead(x, 1), .h = x->dims[1], .w = x->dims[2], .c = x->dims[3],
              .oh = y->dims[1], .ow = y->dims[2], .f = y->dims[3], .kh = kh, .kw = kw,
              .sh = n->attr.stride[0], .sw = n->attr.stride[1],
              .pt = n->attr.pad_lo[0], .pl = n->attr.pad_lo[1]};
    return g;
}

static void arg_geom(call_builder *cb, const geom *g, bool conv)
{
    /* The kernels index whole images with ints. */
    dim x = g->n, y = g->n;
    x.n *= g->h * g->w * g->c;
    y.n *= g->oh * g->ow * (conv ? g->f : g->c);
    dim_max(cb->L, x);
    dim_max(cb->L, y);
    arg_dim(cb, g->n);
    arg_const(cb, g->h);
    arg_const(cb, g->w);
    arg_const(cb, g->c);
    arg_const(cb, g->oh);
    arg_const(cb, g->ow);
    if (conv) arg_const(cb, g->f);
    arg_const(cb, g->kh);
    arg_const(cb, g->kw);
    arg_const(cb, g->sh);
    arg_const(cb, g->sw);
    arg_const(cb, g->pt);
    arg_const(cb, g->pl);
}

#define GEOM_MAX(L, g) dim_max(L, (g).n), (int)(g).h, (int)(g).w, (int)(g).c, (int)(g).oh, (int)(g).ow, \
                       (int)(g).f, (int)(g).kh, (int)(g).kw, (int)(g).sh, (int)(g).sw, (int)(g).pt, (int)(g).pl

static bool conv(lower *L, ir_node *n, lp_buf *dst)
{
    call_builder cb;
    geom g;
    size_t work;
    switch (n->op) {
    case IR_CONV2D:
    case IR_FUSED_CONV2D: {
        const ir_shape *ws = &n->in[1]->shape;
        /* lower.c: a max pooling that is the only reader is computed by this call */
        const ir_node *pool = L->n[n->id].partner;
        g = conv_geom(n, &n->in[0]->shape, &n->shape, ws->dims[0], ws->dims[1]);
        if (pool) {
            work = f64(L) ? kdk_dconv2d_pool_fwd_work_size(GEOM_MAX(L, g))
                          : kdk_sconv2d_pool_fwd_work_size(GEOM_MAX(L, g));
            cb = call_begin(L, LP_K_CONV2D_POOL_FWD);
        } else {
            work = f64(L) ? kdk_dconv2d_fwd_work_size(GEOM_MAX(L, g)) : kdk_sconv2d_fwd_work_size(GEOM_MAX(L, g));
            cb = call_begin(L, LP_K_CONV2D_FWD);
        }
        arg_geom(&cb, &g, true);
        if (pool) {
            arg_const(&cb, pool->attr.window[0]);
            arg_const(&cb, pool->attr.window[1]);
            arg_const(&cb, pool->attr.stride[0]);
            arg_const(&cb, pool->attr.stride[1]);
        }
        arg_buf(&cb, operand_buf(L, n->in[0]));
        arg_buf(&cb, operand_buf(L, n->in[1]));
        if (n->nin == 3) arg_buf(&cb, operand_buf(L, n->in[2]));
        else arg_null(&cb);
        arg_const(&cb, n->op == IR_FUSED_CONV2D ? n->attr.act : 0);
        arg_buf(&cb, pool ? L->n[pool->id].buf : dst);
        break;
    }
    case IR_CONV2D_BWD_DATA: {      /* (dy, w) -> dx */
        const ir_shape *ws = &n->in[1]->shape;
        g = conv_geom(n, &n->shape, &n->in[0]->shape, ws->dims[0], ws->dims[1]);
        work = f64(L) ? kdk_dconv2d_bwd_data_work_size(GEOM_MAX(L, g))
                      : kdk_sconv2d_bwd_data_work_size(GEOM_MAX(L, g));
        cb = call_begin(L, LP_K_CONV2D_BWD_DATA);
        arg_geom(&cb, &g, true);
        arg_buf(&cb, operand_buf(L, n->in[0]));
        arg_buf(&cb, operand_buf(L, n->in[1]));
        arg_buf(&cb, dst);
        arg_const(&cb, 0);
        break;
    }
    default: {                      /* IR_CONV2D_BWD_FILTER: (x, dy) -> dw */
        g = conv_geom(n, &n->in[0]->shape, &n->in[1]->shape, n->shape.dims[0], n->shape.dims[1]);
        work = f64(L) ? kdk_dconv2d_bwd_filter_work_size(GEOM_MAX(L, g))
                      : kdk_sconv2d_bwd_filter_work_size(GEOM_MAX(L, g));
        cb = call_begin(L, LP_K_CONV2D_BWD_FILTER);
        arg_geom(&cb, &g, true);
        arg_buf(&cb, operand_buf(L, n->in[0]));
        arg_buf(&cb, operand_buf(L, n->in[1]));
        arg_buf(&cb, dst);
        arg_const(&cb, 0);
        break;
    }
    }
    arg_buf(&cb, workspace(L, work));
    call_end(&cb);
    return !L->failed;
}

/* The depthwise convolution and its gradients (compiler/ops/depthwise.c):
 * geometry with the depth multiplier in place of the filters, then the
 * dilation; no workspace. */
static bool dwconv(lower *L, ir_node *n, lp_buf *dst)
{
    /* the forward roles' shapes */
    const ir_shape *xs = n->op == IR_DEPTHWISE_CONV2D_BWD_DATA ? &n->shape : &n->in[0]->shape;
    const ir_shape *ws = n->op == IR_DEPTHWISE_CONV2D_BWD_FILTER ? &n->shape : &n->in[1]->shape;
    bool fwd = n->op == IR_DEPTHWISE_CONV2D || n->op == IR_FUSED_DEPTHWISE_CONV2D;
    const ir_shape *ys = fwd ? &n->shape : n->op == IR_DEPTHWISE_CONV2D_BWD_DATA ? &n->in[0]->shape
                                                                                   : &n->in[1]->shape;
    geom g = conv_geom(n, xs, ys, ws->dims[0], ws->dims[1]);
    g.f = ws->dims[3];   /* the multiplier; the output has c * f channels */
    call_builder cb = call_begin(L, fwd ? LP_K_DWCONV2D_FWD : n->op == IR_DEPTHWISE_CONV2D_BWD_DATA
                                                              ? LP_K_DWCONV2D_BWD_DATA : LP_K_DWCONV2D_BWD_FILTER);
    dim y = g.n;
    y.n *= g.oh * g.ow * g.c * g.f;
    dim_max(L, y);
    arg_geom(&cb, &g, true);
    arg_const(&cb, n->attr.dilation[0]);
    arg_const(&cb, n->attr.dilation[1]);
    /* (x, w[, bias]) -> y;  (dy, w) -> dx;  (x, dy) -> dw */
    arg_buf(&cb, operand_buf(L, n->in[0]));
    arg_buf(&cb, operand_buf(L, n->in[1]));
    if (fwd) {
        if (n->nin == 3) arg_buf(&cb, operand_buf(L, n->in[2]));
        else arg_null(&cb);
        arg_const(&cb, n->op == IR_FUSED_DEPTHWISE_CONV2D ? n->attr.act : 0);
        arg_buf(&cb, dst);
    } else {
        arg_buf(&cb, dst);
        arg_const(&cb, 0);
    }
    call_end(&cb);
    return !L->failed;
}

static bool pool(lower *L, ir_node *n, lp_buf *dst)
{
    bool grad = n->op == IR_MAXPOOL2D_GRAD || n->op == IR_AVGPOOL2D_GRAD;
    /* x: the forward input's shape; y: the pooled shape */
    const ir_shape *x = grad ? &n->shape : &n->in[0]->shape;
    const ir_shape *y = n->op == IR_MAXPOOL2D_GRAD ? &n->in[1]->shape
                        : n->op == IR_AVGPOOL2D_GRAD ? &n->in[0]->shape : &n->shape;
    geom g = conv_geom(n, x, y, n->attr.window[0], n->attr.window[1]);
    call_builder cb;
    switch (n->op) {
    case IR_MAXPOOL2D:
        cb = call_begin(L, LP_K_MAXPOOL2D_FWD);
        arg_geom(&cb, &g, false);
        arg_buf(&cb, operand_buf(L, n->in[0]));
        arg_buf(&cb, dst);
        arg_null(&cb);
        break;
    case IR_MAXPOOL2D_GRAD:         /* (x, dy) */
        cb = call_begin(L, LP_K_MAXPOOL2D_BWD);
        arg_geom(&cb, &g, false);
        arg_buf(&cb, operand_buf(L, n->in[0]));
        arg_null(&cb);
        arg_buf(&cb, operand_buf(L, n->in[1]));
        arg_buf(&cb, dst);
        arg_const(&cb, 0);
        break;
    case IR_AVGPOOL2D:
        cb = call_begin(L, LP_K_AVGPOOL2D_FWD);
        arg_geom(&cb, &g, false);
        arg_const(&cb, 0);
        arg_buf(&cb, operand_buf(L, n->in[0]));
        arg_buf(&cb, dst);
        break;
    default:                        /* IR_AVGPOOL2D_GRAD: (dy) */
        cb = call_begin(L, LP_K_AVGPOOL2D_BWD);
        arg_geom(&cb, &g, false);
        arg_const(&cb, 0);
        arg_buf(&cb, operand_buf(L, n->in[0]));
        arg_buf(&cb, dst);
        arg_const(&cb, 0);
        break;
    }
    call_end(&cb);
    return !L->failed;
}

/* ---- softmax, cross-entropy -------------------------------------------------------------- */

static bool softmax(lower *L, ir_node *n, lp_buf *dst)
{
    const ir_shape *s = &n->shape;
    call_builder cb = call_begin(L, n->op == IR_SOFTMAX ? LP_K_SOFTMAX : LP_K_LOGSOFTMAX);
    arg_dim(&cb, lead(s, s->rank - 1));
    arg_const(&cb, s->dims[s->rank - 1]);
    arg_buf(&cb, operand_buf(L, n->in[0]));
    arg_buf(&cb, dst);
    call_end(&cb);
    return !L->failed;
}

/* loss = sum of row losses / rows;  dlogits = (softmax - t) * dloss / rows */
static bool softmax_xent(lower *L, ir_node *n, lp_buf *dst)
{
    kd_arena *a = L->a;
    const ir_shape *zs = &n->in[0]->shape;
    dim rows = lead(zs, zs->rank - 1);
    lp_expr *nrows = lp_un(a, LP_TO_REAL, dim_expr(L, rows));
    bool grad = n->op == IR_SOFTMAX_XENT_GRAD;
    ir_node *partner = L->n[n->id].partner;   /* the gradient, computed by the same call */
    ir_node *gn = grad ? n : partner;
    call_builder cb = call_begin(L, LP_K_SOFTMAX_XENT);
    arg_dim(&cb, rows);
    arg_const(&cb, zs->dims[zs->rank - 1]);
    arg_buf(&cb, operand_buf(L, n->in[0]));
    arg_buf(&cb, operand_buf(L, n->in[1]));
    arg_null(&cb);
    if (gn) {
        arg_buf(&cb, grad ? dst : L->n[gn->id].buf);
        arg_real(&cb, lp_bin(a, LP_DIV, lw_scalar(L, gn->in[2]), nrows));
    } else {
        arg_null(&cb);
        arg_real(&cb, lp_real(a, 1));
    }
    if (!grad) cb.c->result = lp_new_var(a, L->f, LP_REAL, "xent");
    call_end(&cb);
    if (!grad)
        kd_vec_push(a, &L->k->body,
                    lp_store(a, dst, NULL, lp_bin(a, LP_DIV, lp_var_ref(a, cb.c->result), nrows), LP_ASSIGN));
    return !L->failed;
}

/* GaussianNoise's noise: the normal initialiser over the whole batched
 * tensor, seeded by the node's salt, its stream the training step. */
static bool gaussian_noise(lower *L, ir_node *n, lp_buf *dst)
{
    kd_arena *a = L->a;
    call_builder cb = call_begin(L, LP_K_INIT_NORMAL);
    arg_buf(&cb, dst);
    arg_int(&cb, lw_count(L, &n->shape));
    arg_int(&cb, lp_int(a, (int64_t)kdk_noise_seed(L->p->dropout_seed, (uint32_t)n->attr.index)));
    arg_int(&cb, lp_param_ref(a, LP_P_STEP));
    arg_real(&cb, lp_real(a, 0));
    arg_real(&cb, lp_real(a, n->attr.scalar));
    arg_const(&cb, 0);
    call_end(&cb);
    return !L->failed;
}

/* The mean over the ranks: a copy in one process, the host's collective
 * under mpirun (kernels.h); the batch weights this rank's value. */
static bool rank_mean(lower *L, ir_node *n, lp_buf *dst)
{
    call_builder cb = call_begin(L, LP_K_RANK_MEAN);
    arg_dim(&cb, fixed(ir_shape_elems(&n->shape)));
    arg_int(&cb, lp_param_ref(L->a, LP_P_BATCH));
    arg_buf(&cb, operand_buf(L, n->in[0]));
    arg_buf(&cb, dst);
    call_end(&cb);
    return !L->failed;
}

bool lw_call_kernel(lower *L, ir_node *n, lp_buf *dst)
{
    if (lw_is_direct_op(L, n)) return lw_direct_kernel(L, n, dst);
    switch (n->op) {
    case IR_MATMUL:
    case IR_FUSED_MATMUL: return matmul(L, n, dst);
    case IR_CONV2D:
    case IR_FUSED_CONV2D:
    case IR_CONV2D_BWD_DATA:
    case IR_CONV2D_BWD_FILTER: return conv(L, n, dst);
    case IR_DEPTHWISE_CONV2D:
    case IR_FUSED_DEPTHWISE_CONV2D:
    case IR_DEPTHWISE_CONV2D_BWD_DATA:
    case IR_DEPTHWISE_CONV2D_BWD_FILTER: return dwconv(L, n, dst);
    case IR_MAXPOOL2D:
    case IR_MAXPOOL2D_GRAD:
    case IR_AVGPOOL2D:
    case IR_AVGPOOL2D_GRAD: return pool(L, n, dst);
    case IR_SOFTMAX:
    case IR_LOG_SOFTMAX: return softmax(L, n, dst);
    case IR_SOFTMAX_XENT:
    case IR_SOFTMAX_XENT_GRAD: return softmax_xent(L, n, dst);
    case IR_GAUSSIAN_NOISE: return gaussian_noise(L, n, dst);
    case IR_RANK_MEAN: return rank_mean(L, n, dst);
    default: return lw_fail(L, "%s: not a kernel call", ir_ops[n->op]->name);
    }
}
