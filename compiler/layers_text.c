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
    if (mask_zero) kd_vec_push(S->a, &S->masked, y);
    return sv_tensor(S, y, NULL, loc);
}
