/* layers_text.c — layers over token sequences: Embedding, a gather of rows of
 * its `embeddings` table by integer token ids (the vjp of the gather is a
 * scatter-add into the table's gradient, compiler/ops/gather.c). Each layer
 * is one row of layers.c's table. */
#include "sema_internal.h"

#include <string.h>

#define NODE(expr, what) sema_check_node(S, (expr), loc, (what))

/* A whole-number argument in [lo, 2^31]. */
static bool count_arg(sema *S, const kd_instance *inst, const char *name, int64_t lo, int64_t *out)
{
    sv *v = layer_arg(inst, name);
    if (!sv_as_int(S, v, out, kd_format(S->a, "%s argument '%s'", inst->type, name))) return false;
    if (*out < lo || *out > ((int64_t)1 << 31)) {
        sema_error(S, v->loc, "%s argument '%s' must be between %lld and 2^31, got %lld", inst->type, name,
                   (long long)lo, (long long)*out);
        return false;
    }
    return true;
}

/* ---- Embedding ----------------------------------------------------------------- */

/* Keras' defaults: embeddings_initializer "uniform" = RandomUniform(-0.05, 0.05). */
const layer_param embedding_params[] = {
    {"input_dim", NULL}, {"output_dim", NULL}, {"embeddings_initializer", "uniform"}, {"mask_zero", "false"},
    {NULL, NULL}};

/* tokens [N, ...] (i32) -> [N, ..., output_dim]: row `token` of embeddings
 * [input_dim, output_dim]; a token outside [0, input_dim) gives zeros (the
 * data readers reject such tokens before they get here). With mask_zero,
 * token 0 marks padding: the output carries that mask for the layers that
 * will read it (none yet, so sema rejects any reader). */
sv *embedding_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    ir_node *x = in[0]->t;
    int64_t rows, cols;
    bool mask_zero = false;
    kd_init init = {0};
    sv *iv = layer_arg(inst, "embeddings_initializer");
    if (!count_arg(S, inst, "input_dim", 1, &rows) || !count_arg(S, inst, "output_dim", 1, &cols) ||
        !sv_as_bool(S, layer_arg(inst, "mask_zero"), &mask_zero, "Embedding argument 'mask_zero'") ||
        !iv || !sema_init_from(S, iv, &init))
        return NULL;
    if (!ir_is_i32(x)) {
        char buf[128];
        sema_error(S, loc, "Embedding reads integer token ids, and its input %s is a real tensor: declare it "
                           "`input tokens: i32[...]`", ir_shape_sample(&x->shape, buf, sizeof buf));
        return NULL;
    }
    if (rows * cols > ((int64_t)1 << 31)) {
        sema_error(S, loc, "Embedding table %lld x %lld is larger than 2^31 elements", (long long)rows, (long long)cols);
        return NULL;
    }
    int64_t dims[2] = {rows, cols};
    kd_var *table = sema_new_var(S, inst, "embeddings", VAR_WEIGHT, ir_shape_of(2, dims, false), init, true, loc);
    if (!table) return NULL;
    ir_node *args[2] = {NODE(ir_var_read(&S->b, table), "Embedding"), x};
    ir_node *y = NODE(ir_make(&S->b, IR_GATHER, 2, args, NULL), "Embedding");
    if (!y) return NULL;
    /* The data readers check tokens against the table they index. */
    if (x->op == IR_INPUT && x->attr.index >= 0 && x->attr.index < S->m->ninputs) {
        int i = x->attr.index;
        if (S->m->input_rows[i] == 0 || rows < S->m->input_rows[i]) {
            S->m->input_rows[i] = rows;
            S->m->input_rows_layer[i] = inst->name;
        }
    }
    if (mask_zero) {
        /* the mask: 1 where the token is not 0, as a gather from [0, 1, 1, ...] */
        int64_t ones[2] = {rows - 1, 1}, one[2] = {1, 1};
        ir_node *flags = ir_const(&S->b, rows > 1 ? 1 : 0, ir_shape_of(2, rows > 1 ? ones : one, false));
        if (flags && rows > 1) {
            ir_attrs pad = {0};
            pad.pad_lo[0] = 1;
            flags = NODE(ir_make(&S->b, IR_PAD, 1, &flags, &pad), "Embedding");
        }
        ir_node *fx[2] = {flags, x};
        ir_node *m = flags ? NODE(ir_make(&S->b, IR_GATHER, 2, fx, NULL), "Embedding") : NULL;
        if (!m) return NULL;
        kd_vec_push(S->a, &S->masked, y);
        kd_vec_push(S->a, &S->masks, m);
    }
    return sv_tensor(S, y, NULL, loc);
}

/* ---- SimpleRNN ----------------------------------------------------------------- */

const layer_param simple_rnn_params[] = {
    {"units", NULL}, {"activation", "tanh"}, {"use_bias", "true"}, {"kernel_initializer", "glorot_uniform"},
    {"recurrent_initializer", "orthogonal"}, {"bias_initializer", "zeros"}, {"return_sequences", "false"},
    {"go_backwards", "false"}, {NULL, NULL}};

/* x [N, T, F] -> h_T [N, units], or every h_t [N, T, units] with
 * return_sequences: h_t = activation(x_t W + b + h_{t-1} R), h_0 = 0, weights
 * simple_rnn_cell/kernel [F, units], recurrent_kernel [units, units], bias
 * [units]. The input projection x W + b is one matrix product over all the
 * steps; the loop over time (a scan, compiler/ops/scan.c) carries h and
 * multiplies by R once per step. go_backwards reads the steps last to first
 * (with return_sequences the outputs would come in that order too, which
 * kdsl cannot yet turn around: an error). */
static sv *simple_rnn(sema *S, kd_instance *inst, ir_node *x, ir_node *mask, kd_loc loc);

/* A masked input (Embedding's mask_zero) is read here, not rejected. */
sv *simple_rnn_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    ir_node *x = in[0]->t, *mask = sema_mask_of(S, x);
    ir_node *saved = S->mask_reader;
    S->mask_reader = mask ? x : saved;
    sv *y = simple_rnn(S, inst, x, mask, loc);
    S->mask_reader = saved;
    return y;
}

/* With a mask m ([N, T, 1], 1 at a real step) a masked step keeps the state:
 * h_t = h_{t-1} + m_t (cell - h_{t-1}), as Keras does; with return_sequences
 * the output carries the mask on. */
static sv *simple_rnn(sema *S, kd_instance *inst, ir_node *x, ir_node *mask, kd_loc loc)
{
    int64_t units;
    bool use_bias = false, seqs = false, backwards = false;
    kd_init kinit = {0}, rinit = {0}, binit = {0};
    if (!count_arg(S, inst, "units", 1, &units) ||
        !sv_as_bool(S, layer_arg(inst, "use_bias"), &use_bias, "SimpleRNN argument 'use_bias'") ||
        !sv_as_bool(S, layer_arg(inst, "return_sequences"), &seqs, "SimpleRNN argument 'return_sequences'") ||
        !sv_as_bool(S, layer_arg(inst, "go_backwards"), &backwards, "SimpleRNN argument 'go_backwards'") ||
        !sema_init_from(S, layer_arg(inst, "kernel_initializer"), &kinit) ||
        !sema_init_from(S, layer_arg(inst, "recurrent_initializer"), &rinit) ||
        !sema_init_from(S, layer_arg(inst, "bias_initializer"), &binit))
        return NULL;
    if (!x->shape.batched || x->shape.rank != 3) {
        char buf[128];
        sema_error(S, loc, "SimpleRNN expects a sequence [steps, features] per sample, got %s",
                   ir_shape_sample(&x->shape, buf, sizeof buf));
        return NULL;
    }
    if (backwards && seqs) {
        sema_error(S, loc, "SimpleRNN with go_backwards and return_sequences is not supported yet (its outputs "
                           "would come last step first)");
        return NULL;
    }
    int64_t F = x->shape.dims[2], T = x->shape.dims[1], kd[2] = {F, units}, rd[2] = {units, units};
    kd_var *kernel = sema_new_var(S, inst, "simple_rnn_cell/kernel", VAR_WEIGHT, ir_shape_of(2, kd, false), kinit, true, loc);
    kd_var *rec = sema_new_var(S, inst, "simple_rnn_cell/recurrent_kernel", VAR_WEIGHT, ir_shape_of(2, rd, false), rinit,
                               true, loc);
    kd_var *bias = use_bias ? sema_new_var(S, inst, "simple_rnn_cell/bias", VAR_WEIGHT, ir_shape_of(1, &units, false),
                                           binit, true, loc)
                            : NULL;
    if (!kernel || !rec || (use_bias && !bias)) return NULL;
    ir_builder *b = &S->b;
    const char *w = "SimpleRNN";
    /* every step's input projection at once: [N, T, units] */
    ir_node *xw = NODE(ir_matmul(b, x, NODE(ir_var_read(b, kernel), w), false, false), w);
    if (xw && bias) xw = NODE(ir_binary(b, IR_ADD, xw, NODE(ir_var_read(b, bias), w)), w);
    ir_node *R = NODE(ir_var_read(b, rec), w);
    if (!xw || !R) return NULL;
    /* the cell, a scan body: carry h, sequences xw (and the mask), constant R */
    int nseq = mask ? 2 : 1;
    ir_scan *scan = ir_scan_new(S->a, b->g->vars, 1, nseq, 1, backwards);
    ir_builder saved = *b;
    b->g = scan->body;
    int64_t ud[1] = {units}, one[1] = {1};
    ir_node *h = NODE(ir_scan_arg(b, scan, 0, ir_shape_of(1, ud, true)), w);
    ir_node *xt = NODE(ir_scan_arg(b, scan, 1, ir_shape_of(1, ud, true)), w);
    ir_node *r = NODE(ir_scan_arg(b, scan, 1 + nseq, R->shape), w);
    ir_node *pre = h && xt && r ? NODE(ir_binary(b, IR_ADD, xt, NODE(ir_matmul(b, h, r, false, false), w)), w) : NULL;
    ir_node *hn = pre ? apply_activation(S, pre, layer_arg(inst, "activation"), loc) : NULL;
    if (hn && mask) {
        ir_node *mt = NODE(ir_scan_arg(b, scan, 2, ir_shape_of(1, one, true)), w);
        hn = mt ? NODE(ir_binary(b, IR_ADD, h, NODE(ir_binary(b, IR_MUL, mt, NODE(ir_binary(b, IR_SUB, hn, h), w)), w)), w)
                : NULL;
    }
    char why[256] = "";
    ir_node *outs[2] = {hn, hn};
    bool ok = hn && ir_scan_finish(scan, 2, outs, why, sizeof why);
    *b = saved;
    if (!ok) {
        if (*why) sema_error(S, loc, "SimpleRNN: %s", why);
        return NULL;
    }
    ir_node *ops[4] = {ir_const(b, 0, ir_shape_of(1, ud, true)), xw, mask ? mask : R, R};
    (void)T;
    ir_node *y = NODE(ir_scan_apply(b, scan, ops, seqs ? 1 : 0), w);
    if (y && mask && seqs) {
        kd_vec_push(S->a, &S->masked, y);
        kd_vec_push(S->a, &S->masks, mask);
    }
    return y ? sv_tensor(S, y, NULL, loc) : NULL;
}
