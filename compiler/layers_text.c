/* layers_text.c — layers over sequences: Embedding, a gather of rows of its
 * `embeddings` table by integer token ids (the vjp of the gather is a
 * scatter-add into the table's gradient, compiler/ops/gather.c), the
 * recurrent layers SimpleRNN, LSTM and GRU, each a loop over time (a scan,
 * compiler/ops/scan.c) whose body is its cell, and the wrappers
 * Bidirectional (the recurrent function run both ways) and
 * TimeDistributed(Dense). Each layer is one row of layers.c's table. */
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

/* ---- the recurrent layers: SimpleRNN, LSTM ----------------------------------------- */

const layer_param simple_rnn_params[] = {
    {"units", NULL}, {"activation", "tanh"}, {"use_bias", "true"}, {"kernel_initializer", "glorot_uniform"},
    {"recurrent_initializer", "orthogonal"}, {"bias_initializer", "zeros"}, {"return_sequences", "false"},
    {"go_backwards", "false"}, {"return_state", "false"}, {"dropout", "0"}, {"recurrent_dropout", "0"},
    {NULL, NULL}};

const layer_param lstm_params[] = {
    {"units", NULL}, {"activation", "tanh"}, {"recurrent_activation", "sigmoid"}, {"use_bias", "true"},
    {"kernel_initializer", "glorot_uniform"}, {"recurrent_initializer", "orthogonal"}, {"bias_initializer", "zeros"},
    {"unit_forget_bias", "true"}, {"return_sequences", "false"}, {"go_backwards", "false"}, {"return_state", "false"},
    {"dropout", "0"}, {"recurrent_dropout", "0"}, {NULL, NULL}};

const layer_param gru_params[] = {
    {"units", NULL}, {"activation", "tanh"}, {"recurrent_activation", "sigmoid"}, {"use_bias", "true"},
    {"kernel_initializer", "glorot_uniform"}, {"recurrent_initializer", "orthogonal"}, {"bias_initializer", "zeros"},
    {"return_sequences", "false"}, {"go_backwards", "false"}, {"reset_after", "true"}, {"return_state", "false"},
    {"dropout", "0"}, {"recurrent_dropout", "0"}, {NULL, NULL}};

typedef enum cell_kind { CELL_SIMPLE, CELL_LSTM, CELL_GRU } cell_kind;

/* Columns [from, from + n) of a [rows, cols] matrix (batched or not). */
static ir_node *columns(sema *S, ir_node *m, int64_t from, int64_t n, kd_loc loc)
{
    if (!m) return NULL;
    ir_attrs a = {0};
    a.size[0] = m->shape.dims[0];
    a.begin[1] = from;
    a.size[1] = n;
    return NODE(ir_make(&S->b, IR_SLICE, 1, &m, &a), "recurrent cell");
}

static ir_node *bin(sema *S, ir_op op, ir_node *x, ir_node *y, kd_loc loc)
{
    return x && y ? NODE(ir_binary(&S->b, op, x, y), "recurrent cell") : NULL;
}

/* The outputs of one recurrent layer: y (the last h, or every h), and its
 * final states h (and c), as Keras' return_state lists them. */
typedef struct rnn_out {
    ir_node *y, *state[2];
    int nstate;
} rnn_out;

/* One recurrent layer over x [N, T, F]: the input projection of every step
 * at once, x kernel + bias [N, T, gates * units] (one matrix product), then
 * a scan (compiler/ops/scan.c) whose body is the cell, carrying its state
 * and multiplying by recurrent_kernel [units, gates * units] once per step:
 *
 *   SimpleRNN  h = activation(z)                                 z = x_t W + b + h R
 *   LSTM       i, f, g, o = z's quarters (Keras' gate order)
 *              c = sigmoid'(f) c + sigmoid'(i) activation(g),  h = sigmoid'(o) activation(c)
 *              (sigmoid' the recurrent_activation)
 *   GRU        z, r, h~ thirds of x_t W + b_in and (reset_after) of u = h R + b_rec:
 *              z = sigmoid'(x_z + u_z), r = sigmoid'(x_r + u_r), h~ = activation(x_h + r u_h);
 *              without reset_after (one bias): u_z = h R_z, u_r = h R_r, and
 *              h~ = activation(x_h + (r h) R_h);   h = z h + (1 - z) h~
 *
 * from zero states; the result is the last h, or every h with
 * return_sequences. Weights <prefix><cell>/kernel, recurrent_kernel, bias
 * as Keras names them (lstm/lstm_cell/kernel; Bidirectional's prefix is
 * forward_lstm/). With a mask (Embedding's mask_zero, [N, T, 1]) a masked
 * step keeps every state: s + m (s' - s); `zero_masked` makes a masked
 * step's output 0 instead (Keras' Bidirectional asks its layers for that).
 * go_backwards reads the steps last to first, and its sequence of outputs
 * comes in that order too (a reverse of the scan's, which writes step t's
 * output at t).
 *
 * Dropout in training, as Keras 3's cells: `dropout` multiplies x by one
 * mask per sample [N, 1, F], the same at every step and for every gate (so
 * the input projection stays one product); `recurrent_dropout` multiplies
 * h_{t-1} where it enters the recurrent product by one mask per sample
 * [N, units], a constant of the scan (GRU's h = z h + (1 - z) h~ mixes the
 * state itself). Masks come from runtime/random.h as Dropout's do; in
 * inference both are the identity. Arguments are read from `args` (the
 * layer itself, or the layer a Bidirectional wraps). */
typedef struct rnn_how {
    const char *prefix;    /* of the weights' names: "" or Bidirectional's "forward_lstm/" */
    bool zero_masked;      /* a masked step outputs 0 (else the state it keeps) */
    int backwards;         /* -1: as go_backwards says; else over time this way */
    int reverse_y;         /* -1: every step's output in Keras' order (reversed when backwards); else whether to */
} rnn_how;

static bool recurrent(sema *S, kd_instance *inst, const kd_instance *args, const rnn_how *how, ir_node *x,
                      ir_node *mask, cell_kind kind, rnn_out *out, kd_loc loc)
{
    const char *prefix = how->prefix;
    bool zero_masked = how->zero_masked;
    const char *w = args->type;
    const char *cell = kind == CELL_LSTM ? "lstm_cell" : kind == CELL_GRU ? "gru_cell" : "simple_rnn_cell";
    int gates = kind == CELL_LSTM ? 4 : kind == CELL_GRU ? 3 : 1, K = kind == CELL_LSTM ? 2 : 1;
    int64_t units;
    double drop = 0, rdrop = 0;
    bool use_bias = false, seqs = false, backwards = false, forget = false, reset_after = false;
    kd_init kinit = {0}, rinit = {0}, binit = {0};
    memset(out, 0, sizeof *out);
    if (!count_arg(S, args, "units", 1, &units) ||
        !sv_as_bool(S, layer_arg(args, "use_bias"), &use_bias, kd_format(S->a, "%s argument 'use_bias'", w)) ||
        !sv_as_bool(S, layer_arg(args, "return_sequences"), &seqs, kd_format(S->a, "%s argument 'return_sequences'", w)) ||
        !sv_as_bool(S, layer_arg(args, "go_backwards"), &backwards, kd_format(S->a, "%s argument 'go_backwards'", w)) ||
        !sv_as_number(S, layer_arg(args, "dropout"), &drop, kd_format(S->a, "%s argument 'dropout'", w)) ||
        !sv_as_number(S, layer_arg(args, "recurrent_dropout"), &rdrop,
                      kd_format(S->a, "%s argument 'recurrent_dropout'", w)) ||
        (kind == CELL_LSTM &&
         !sv_as_bool(S, layer_arg(args, "unit_forget_bias"), &forget, "LSTM argument 'unit_forget_bias'")) ||
        (kind == CELL_GRU &&
         !sv_as_bool(S, layer_arg(args, "reset_after"), &reset_after, "GRU argument 'reset_after'")) ||
        !sema_init_from(S, layer_arg(args, "kernel_initializer"), &kinit) ||
        !sema_init_from(S, layer_arg(args, "recurrent_initializer"), &rinit) ||
        !sema_init_from(S, layer_arg(args, "bias_initializer"), &binit))
        return false;
    if (!x->shape.batched || x->shape.rank != 3) {
        char buf[128];
        sema_error(S, loc, "%s expects a sequence [steps, features] per sample, got %s", w,
                   ir_shape_sample(&x->shape, buf, sizeof buf));
        return false;
    }
    bool reverse_y = how->reverse_y >= 0 ? how->reverse_y : backwards;
    if (how->backwards >= 0) backwards = how->backwards;
    for (int i = 0; i < 2; i++) {
        double rate = i ? rdrop : drop;
        if (!(rate >= 0 && rate < 1)) {
            sema_error(S, layer_arg(args, i ? "recurrent_dropout" : "dropout")->loc,
                       "%s argument '%s' must be in [0, 1), got %g", w, i ? "recurrent_dropout" : "dropout", rate);
            return false;
        }
    }
    if (units * gates > ((int64_t)1 << 31)) {
        sema_error(S, loc, "%s has too many units", w);
        return false;
    }
    if (forget) {   /* Keras: the forget gate's quarter of the bias starts at one */
        binit.ones_at = units;
        binit.ones = units;
    }
    int64_t gu = gates * units, F = x->shape.dims[2], kd[2] = {F, gu}, rd[2] = {units, gu}, bd[2] = {2, gu};
    bool two_biases = kind == CELL_GRU && reset_after;   /* Keras' GRU bias [2, 3 units]: input, recurrent */
    kd_var *kernel = sema_new_var(S, inst, kd_format(S->a, "%s%s/kernel", prefix, cell), VAR_WEIGHT,
                                  ir_shape_of(2, kd, false), kinit, true, loc);
    kd_var *rec = sema_new_var(S, inst, kd_format(S->a, "%s%s/recurrent_kernel", prefix, cell), VAR_WEIGHT,
                               ir_shape_of(2, rd, false), rinit, true, loc);
    kd_var *bias = use_bias ? sema_new_var(S, inst, kd_format(S->a, "%s%s/bias", prefix, cell), VAR_WEIGHT,
                                           two_biases ? ir_shape_of(2, bd, false) : ir_shape_of(1, &gu, false), binit,
                                           true, loc)
                            : NULL;
    if (!kernel || !rec || (use_bias && !bias)) return false;
    ir_builder *b = &S->b;
    bool dropping = S->training && drop > 0, rdropping = S->training && rdrop > 0;
    ir_node *xin = x, *rmask = NULL;
    if (dropping) {   /* one mask per sample and feature, the same at every step */
        int64_t md[2] = {1, F};
        ir_attrs a = {.scalar = drop, .index = b->g->nodes.len};
        xin = bin(S, IR_MUL, x, NODE(ir_leaf(b, IR_DROPOUT_MASK, ir_shape_of(2, md, true), &a, -1), w), loc);
        if (!xin) return false;
    }
    if (rdropping) {
        ir_attrs a = {.scalar = rdrop, .index = b->g->nodes.len};
        rmask = NODE(ir_leaf(b, IR_DROPOUT_MASK, ir_shape_of(1, &units, true), &a, -1), w);
        if (!rmask) return false;
    }
    ir_node *xw = NODE(ir_matmul(b, xin, NODE(ir_var_read(b, kernel), w), false, false), w);
    ir_node *bv = bias ? NODE(ir_var_read(b, bias), w) : NULL, *brec = NULL;
    if (bv && two_biases) {   /* row 0 joins the input projection, row 1 the recurrent product */
        ir_node *rows[2];
        for (int i = 0; i < 2; i++) {
            ir_attrs a = {0};
            a.begin[0] = i;
            a.size[0] = 1;
            a.size[1] = gu;
            rows[i] = NODE(ir_make(b, IR_SLICE, 1, &bv, &a), w);
            rows[i] = rows[i] ? NODE(ir_reshape(b, rows[i], ir_shape_of(1, &gu, false)), w) : NULL;
        }
        bv = rows[0];
        brec = rows[1];
        if (!bv || !brec) return false;
    }
    if (xw && bv) xw = NODE(ir_binary(b, IR_ADD, xw, bv), w);
    ir_node *R = NODE(ir_var_read(b, rec), w);
    if (!xw || !R) return false;
    /* the cell, a scan body: carries (h[, c]), sequences xw[, mask], constants R[, brec][, rmask] */
    int nseq = mask ? 2 : 1, nconst = 1 + (brec ? 1 : 0) + (rmask ? 1 : 0);
    int brec_arg = K + nseq + 1, rmask_arg = K + nseq + nconst - 1;
    ir_scan *scan = ir_scan_new(S->a, b->g->vars, K, nseq, nconst, backwards);
    ir_builder saved = *b;
    b->g = scan->body;
    int64_t ud[1] = {units}, gd[1] = {gu}, one[1] = {1};
    ir_shape us = ir_shape_of(1, ud, true);
    ir_node *st[2] = {NULL, NULL}, *next[2] = {NULL, NULL};
    for (int k = 0; k < K; k++) st[k] = NODE(ir_scan_arg(b, scan, k, us), w);
    ir_node *xt = NODE(ir_scan_arg(b, scan, K, ir_shape_of(1, gd, true)), w);
    ir_node *r = NODE(ir_scan_arg(b, scan, K + nseq, R->shape), w);
    /* h_{t-1} as the recurrent product reads it (recurrent_dropout's mask applied) */
    ir_node *hr = rmask ? bin(S, IR_MUL, st[0], NODE(ir_scan_arg(b, scan, rmask_arg, us), w), loc) : st[0];
    const sv *act = layer_arg(args, "activation"), *ract = layer_arg(args, "recurrent_activation");
    ir_node *z = NULL;
    if (kind != CELL_GRU)
        z = hr && xt && r ? NODE(ir_binary(b, IR_ADD, xt, NODE(ir_matmul(b, hr, r, false, false), w)), w) : NULL;
    if (kind == CELL_GRU && st[0] && hr && xt && r) {
        ir_node *h = st[0], *u = NULL, *uz, *ur, *uh = NULL;
        ir_node *xz = columns(S, xt, 0, units, loc), *xr = columns(S, xt, units, units, loc);
        ir_node *xh = columns(S, xt, 2 * units, units, loc);
        if (reset_after) {
            u = NODE(ir_matmul(b, hr, r, false, false), w);
            if (brec) u = bin(S, IR_ADD, u, NODE(ir_scan_arg(b, scan, brec_arg, brec->shape), w), loc);
            uz = columns(S, u, 0, units, loc);
            ur = columns(S, u, units, units, loc);
            uh = columns(S, u, 2 * units, units, loc);
        } else {
            uz = NODE(ir_matmul(b, hr, columns(S, r, 0, units, loc), false, false), w);
            ur = NODE(ir_matmul(b, hr, columns(S, r, units, units, loc), false, false), w);
        }
        ir_node *zg = bin(S, IR_ADD, xz, uz, loc), *rg = bin(S, IR_ADD, xr, ur, loc);
        zg = zg ? apply_activation(S, zg, ract, loc) : NULL;
        rg = rg ? apply_activation(S, rg, ract, loc) : NULL;
        ir_node *hh = reset_after ? bin(S, IR_ADD, xh, bin(S, IR_MUL, rg, uh, loc), loc)
                                  : bin(S, IR_ADD, xh, rg ? NODE(ir_matmul(b, bin(S, IR_MUL, rg, hr, loc),
                                                                          columns(S, r, 2 * units, units, loc),
                                                                          false, false), w) : NULL, loc);
        hh = hh ? apply_activation(S, hh, act, loc) : NULL;
        /* z h + (1 - z) h~ = h~ + z (h - h~) */
        next[0] = bin(S, IR_ADD, hh, bin(S, IR_MUL, zg, bin(S, IR_SUB, h, hh, loc), loc), loc);
    }
    if (z && kind == CELL_SIMPLE) next[0] = apply_activation(S, z, act, loc);
    if (z && kind == CELL_LSTM) {
        ir_node *q[4];
        for (int j = 0; j < 4; j++) {
            ir_attrs a = {0};
            a.begin[1] = j * units;
            a.size[0] = IR_BATCH;
            a.size[1] = units;
            q[j] = NODE(ir_make(b, IR_SLICE, 1, &z, &a), w);
            if (q[j] && j != 2) q[j] = apply_activation(S, q[j], ract, loc);
        }
        ir_node *g = q[2] ? apply_activation(S, q[2], act, loc) : NULL;
        ir_node *c = q[0] && q[1] && g && st[1]
                         ? NODE(ir_binary(b, IR_ADD, NODE(ir_binary(b, IR_MUL, q[1], st[1]), w),
                                          NODE(ir_binary(b, IR_MUL, q[0], g), w)), w)
                         : NULL;
        ir_node *tc = c ? apply_activation(S, c, act, loc) : NULL;
        next[0] = tc && q[3] ? NODE(ir_binary(b, IR_MUL, q[3], tc), w) : NULL;
        next[1] = c;
    }
    ir_node *step_out = next[0];
    if (mask) {
        ir_node *mt = NODE(ir_scan_arg(b, scan, K + 1, ir_shape_of(1, one, true)), w);
        if (zero_masked) step_out = bin(S, IR_MUL, mt, next[0], loc);
        for (int k = 0; k < K; k++)
            next[k] = mt && next[k] ? NODE(ir_binary(b, IR_ADD, st[k], NODE(ir_binary(b, IR_MUL, mt,
                                           NODE(ir_binary(b, IR_SUB, next[k], st[k]), w)), w)), w)
                                    : NULL;
        if (!zero_masked) step_out = next[0];
    }
    char why[256] = "";
    ir_node *outs[3] = {next[0], next[1], step_out};
    if (K == 1) outs[1] = step_out;
    bool ok = next[0] && step_out && (K == 1 || next[1]) && ir_scan_finish(scan, K + 1, outs, why, sizeof why);
    *b = saved;
    if (!ok) {
        if (*why) sema_error(S, loc, "%s: %s", w, why);
        return false;
    }
    ir_node *ops[7];
    int nops = 0;
    for (int k = 0; k < K; k++) ops[nops++] = ir_const(b, 0, us);
    ops[nops++] = xw;
    if (mask) ops[nops++] = mask;
    ops[nops++] = R;
    if (brec) ops[nops++] = brec;
    if (rmask) ops[nops++] = rmask;
    ir_node *y = NODE(ir_scan_apply(b, scan, ops, seqs ? K : 0), w);
    if (y && seqs && reverse_y) {   /* Keras' order: the output of the first step taken (the last input) first */
        ir_attrs a = {.axis = 1};
        y = NODE(ir_make(b, IR_REVERSE, 1, &y, &a), w);
    }
    if (!y) return false;
    out->y = y;
    out->nstate = K;
    for (int k = 0; k < K; k++) {
        out->state[k] = k == 0 && !seqs ? y : NODE(ir_scan_apply(b, scan, ops, k), w);
        if (!out->state[k]) return false;
    }
    return true;
}

/* y, or with return_state the list [y, h] ([y, h, c] for an LSTM), as Keras returns them. */
static sv *rnn_result(sema *S, const kd_instance *args, const rnn_out *o, kd_loc loc)
{
    bool state = false;
    if (!sv_as_bool(S, layer_arg(args, "return_state"), &state,
                    kd_format(S->a, "%s argument 'return_state'", args->type)))
        return NULL;
    if (!state) return sv_tensor(S, o->y, NULL, loc);
    sv *list = sv_new(S, SV_LIST, loc);
    list->n = 1 + o->nstate;
    list->items = kd_alloc_array(S->a, (size_t)list->n, sizeof *list->items);
    list->items[0] = sv_tensor(S, o->y, NULL, loc);
    for (int k = 0; k < o->nstate; k++) list->items[1 + k] = sv_tensor(S, o->state[k], NULL, loc);
    return list;
}

/* The mask of x goes on with a sequence y made from it (Keras passes it on unchanged). */
static void keep_mask(sema *S, ir_node *y, ir_node *mask, bool seqs)
{
    if (y && mask && seqs) {
        kd_vec_push(S->a, &S->masked, y);
        kd_vec_push(S->a, &S->masks, mask);
    }
}

/* A masked input (Embedding's mask_zero) is read here, not rejected. */
static sv *recurrent_apply(sema *S, kd_instance *inst, sv **in, cell_kind kind, kd_loc loc)
{
    ir_node *x = in[0]->t, *mask = sema_mask_of(S, x);
    ir_node *saved = S->mask_reader;
    S->mask_reader = mask ? x : saved;
    rnn_out o;
    rnn_how how = {.prefix = "", .backwards = -1, .reverse_y = -1};
    bool ok = recurrent(S, inst, inst, &how, x, mask, kind, &o, loc);
    S->mask_reader = saved;
    if (!ok) return NULL;
    keep_mask(S, o.y, mask, o.y->shape.rank == 3);
    return rnn_result(S, inst, &o, loc);
}

sv *simple_rnn_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    return recurrent_apply(S, inst, in, CELL_SIMPLE, loc);
}

sv *lstm_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    return recurrent_apply(S, inst, in, CELL_LSTM, loc);
}

sv *gru_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    return recurrent_apply(S, inst, in, CELL_GRU, loc);
}

/* ---- the wrappers: Bidirectional, TimeDistributed ------------------------------------- */

const layer_param bidirectional_params[] = {{"layer", NULL}, {"merge_mode", "concat"}, {NULL, NULL}};
const layer_param time_distributed_params[] = {{"layer", NULL}, {NULL, NULL}};

/* The wrapped layer's instance: made on the first call, kept in place of the
 * call for the next ones (a shared wrapper: the same weights each call). */
static kd_instance *wrapped(sema *S, kd_instance *inst, const char *wrapper, kd_loc loc)
{
    sv *a = inst->args[0];   /* `layer`, the wrappers' first parameter */
    if (a && a->kind == SV_INSTANCE) return a->inst;
    kd_instance *inner = sema_wrapped_instance(S, a, wrapper, loc);
    if (inner) {
        sv *kept = sv_new(S, SV_INSTANCE, a->loc);
        kept->inst = inner;
        inst->args[0] = kept;
    }
    return inner;
}

static bool cell_of(const char *type, cell_kind *kind)
{
    if (!strcmp(type, "SimpleRNN")) *kind = CELL_SIMPLE;
    else if (!strcmp(type, "LSTM")) *kind = CELL_LSTM;
    else if (!strcmp(type, "GRU")) *kind = CELL_GRU;
    else return false;
    return true;
}

/* Bidirectional(layer, merge_mode), as Keras 3 builds it: a copy of the layer
 * named forward_<its name> and one named backward_<its name> that goes
 * backwards (weights bidirectional/forward_lstm/lstm_cell/kernel ..., the
 * forward layer's first); with return_sequences the backward outputs are
 * put back in time order (Keras flips them; here its loop writes step t's
 * output at t, so no flip is needed). merge_mode concat (the last axis),
 * sum, ave, mul, or none: the two as separate values. return_state adds
 * the forward layer's final states, then the backward one's. A masked
 * input: as Keras forces zero_output_for_mask on both when they return
 * sequences, a masked step outputs zeros; the mask goes on with the
 * sequence. The wrapped layer may not go backwards itself (Keras' check:
 * the two would then go the same way). */
sv *bidirectional_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    (void)n;
    kd_instance *inner = wrapped(S, inst, "Bidirectional", loc);
    if (!inner) return NULL;
    cell_kind kind;
    if (!cell_of(inner->type, &kind)) {
        sema_error(S, layer_arg(inst, "layer")->loc, "Bidirectional wraps a SimpleRNN, LSTM or GRU, not %s", inner->type);
        return NULL;
    }
    const sv *mm = layer_arg(inst, "merge_mode");
    const char *merge = mm && (mm->kind == SV_STRING || mm->kind == SV_IDENT) ? mm->s : NULL;
    static const char *const modes[] = {"concat", "sum", "ave", "mul", "none"};
    int mode = -1;
    for (int i = 0; merge && i < 5; i++)
        if (!strcmp(merge, modes[i])) mode = i;
    if (mode < 0) {
        sema_error(S, mm ? mm->loc : loc, "Bidirectional merge_mode must be concat, sum, ave, mul or none, got %s",
                   merge ? merge : mm ? sv_describe(mm) : "nothing");
        return NULL;
    }
    bool seqs = false, backwards = false;
    if (!sv_as_bool(S, layer_arg(inner, "return_sequences"), &seqs,
                    kd_format(S->a, "%s argument 'return_sequences'", inner->type)) ||
        !sv_as_bool(S, layer_arg(inner, "go_backwards"), &backwards,
                    kd_format(S->a, "%s argument 'go_backwards'", inner->type)))
        return NULL;
    if (backwards) {
        sema_error(S, layer_arg(inner, "go_backwards")->loc, "Bidirectional's layer goes forwards (its backward copy "
                   "goes backwards; Keras rejects a layer whose two copies go the same way)");
        return NULL;
    }
    ir_node *x = in[0]->t, *mask = sema_mask_of(S, x);
    ir_node *saved = S->mask_reader;
    S->mask_reader = mask ? x : saved;
    rnn_out o[2];
    rnn_how fwd = {.prefix = kd_format(S->a, "forward_%s/", inner->name), .zero_masked = seqs, .backwards = 0,
                   .reverse_y = 0};
    rnn_how bwd = {.prefix = kd_format(S->a, "backward_%s/", inner->name), .zero_masked = seqs, .backwards = 1,
                   .reverse_y = 0};
    bool ok = recurrent(S, inst, inner, &fwd, x, mask, kind, &o[0], loc) &&
              recurrent(S, inst, inner, &bwd, x, mask, kind, &o[1], loc);
    S->mask_reader = saved;
    if (!ok) return NULL;
    ir_builder *b = &S->b;
    ir_node *y = NULL;
    switch (mode) {
    case 0: {
        ir_attrs a = {.axis = o[0].y->shape.rank - 1};
        ir_node *two[2] = {o[0].y, o[1].y};
        y = NODE(ir_make(b, IR_CONCAT, 2, two, &a), "Bidirectional");
        break;
    }
    case 1: y = bin(S, IR_ADD, o[0].y, o[1].y, loc); break;
    case 2: y = bin(S, IR_MUL, bin(S, IR_ADD, o[0].y, o[1].y, loc), ir_const(b, 0.5, (ir_shape){0}), loc); break;
    case 3: y = bin(S, IR_MUL, o[0].y, o[1].y, loc); break;
    default: break;
    }
    if (mode < 4 && !y) return NULL;
    bool state = false;
    if (!sv_as_bool(S, layer_arg(inner, "return_state"), &state,
                    kd_format(S->a, "%s argument 'return_state'", inner->type)))
        return NULL;
    int ny = mode == 4 ? 2 : 1, nout = ny + (state ? o[0].nstate + o[1].nstate : 0);
    ir_node *outs[6];
    if (mode == 4) outs[0] = o[0].y, outs[1] = o[1].y;
    else outs[0] = y;
    for (int d = 0, at = ny; state && d < 2; d++)
        for (int k = 0; k < o[d].nstate; k++) outs[at++] = o[d].state[k];
    for (int i = 0; i < ny; i++) keep_mask(S, outs[i], mask, seqs);
    if (nout == 1) return sv_tensor(S, outs[0], NULL, loc);
    sv *list = sv_new(S, SV_LIST, loc);
    list->n = nout;
    list->items = kd_alloc_array(S->a, (size_t)nout, sizeof *list->items);
    for (int i = 0; i < nout; i++) list->items[i] = sv_tensor(S, outs[i], NULL, loc);
    return list;
}

/* TimeDistributed(Dense(...)): the Dense applied to every step, which is
 * what Dense does to the last axis of [steps, features] already; its
 * weights are the wrapper's, as Keras 2 and TensorFlow.js name them
 * (time_distributed/kernel, time_distributed/bias); a masked sequence's
 * mask goes on with the output, as Keras passes it. Only Dense: a layer
 * that needs the steps folded into the batch (Conv2D) is not supported. */
sv *time_distributed_apply(sema *S, kd_instance *inst, sv **in, int n, kd_loc loc)
{
    kd_instance *inner = wrapped(S, inst, "TimeDistributed", loc);
    if (!inner) return NULL;
    if (strcmp(inner->type, "Dense") != 0) {
        sema_error(S, layer_arg(inst, "layer")->loc, "TimeDistributed wraps a Dense layer here, not %s", inner->type);
        return NULL;
    }
    ir_node *x = in[0]->t;
    if (!x->shape.batched || x->shape.rank < 3) {
        char buf[128];
        sema_error(S, loc, "TimeDistributed expects [steps, ...] per sample, got %s",
                   ir_shape_sample(&x->shape, buf, sizeof buf));
        return NULL;
    }
    /* the Dense under the wrapper's name, so its variables are the wrapper's */
    kd_instance view = *inner;
    view.name = inst->name;
    view.vars = inst->vars;
    view.ncalls = inst->ncalls;
    view.trainable = inst->trainable && inner->trainable;
    ir_node *mask = sema_mask_of(S, x), *saved = S->mask_reader;
    S->mask_reader = mask ? x : saved;   /* Keras: the mask goes through every step to the output */
    sv *y = inner->builtin->apply(S, &view, in, n, loc);
    S->mask_reader = saved;
    inst->vars = view.vars;
    if (y && y->kind == SV_TENSOR) keep_mask(S, y->t, mask, true);
    return y;
}
