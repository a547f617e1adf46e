/* fuse.c — folds work into the runtime kernels that can do it in the same pass
 * over memory:
 *
 *   add(matmul(a, b), bias[N])        -> fused_matmul(a, b, bias)           act none
 *   activation(matmul | fused)        -> fused_matmul(..., act)
 *                                        any row of runtime/activations.h at its
 *                                        default argument (the runtime knows no other)
 *   (the same for conv2d -> fused_conv2d, depthwise_conv2d -> fused_depthwise_conv2d)
 *
 * A producer is folded only when the node being rewritten is its one use:
 * otherwise its unbiased / unactivated value is still needed. In a training
 * graph that holds for Dense, Conv2D and DepthwiseConv2D: their backward pass reads the
 * activation's output and the operands, never the pre-activation.
 *
 * Elementwise chains are not fused here: lowering puts producer-consumer
 * chains of elementwise ops into one loop nest (codegen/lower.c). */
#include "../passes.h"
#include "kernels.h"

/* A depthwise convolution fuses where the runtime's kernel runs it (codegen
 * lowers the others to loop nests, which have no epilogue). */
static bool dw_kernel(const ir_node *n)
{
    return n->op == IR_DEPTHWISE_CONV2D && kdk_dwconv_vectorized(n->in[1]->shape.dims[2], n->in[1]->shape.dims[3]);
}

static bool fusable(const ir_node *n)
{
    return n->op == IR_MATMUL || n->op == IR_CONV2D || dw_kernel(n) ||
           ((n->op == IR_FUSED_MATMUL || n->op == IR_FUSED_CONV2D || n->op == IR_FUSED_DEPTHWISE_CONV2D) &&
            n->attr.act == IR_ACT_NONE);
}

static ir_op fused_op(ir_op op)
{
    switch (op) {
    case IR_MATMUL: case IR_FUSED_MATMUL: return IR_FUSED_MATMUL;
    case IR_CONV2D: case IR_FUSED_CONV2D: return IR_FUSED_CONV2D;
    default: return IR_FUSED_DEPTHWISE_CONV2D;
    }
}

static ir_node *build(kd_rewrite *rw, const ir_node *base, ir_node *bias, int act)
{
    ir_node *in[3] = {base->in[0], base->in[1], base->nin == 3 ? base->in[2] : bias};
    ir_attrs a = base->attr;
    a.act = act;
    return ir_make(&rw->b, fused_op(base->op), in[2] ? 3 : 2, in, &a);
}

static ir_node *visit(kd_rewrite *rw, ir_node *old, ir_node **in)
{
    if (old->op == IR_ADD) {
        for (int k = 0; k < 2; k++) {
            ir_node *m = in[k], *bias = in[1 - k];
            if (!fusable(m) || m->nin == 3 || rw->uses[old->in[k]->id] != 1) continue;
            const ir_shape *bs = &bias->shape;
            int64_t cols = m->shape.dims[m->shape.rank - 1];
            if (bs->rank != 1 || bs->batched || bs->dims[0] != cols || !ir_shape_equal(&old->shape, &m->shape))
                continue;
            return build(rw, m, bias, IR_ACT_NONE);
        }
    }
    int act = ir_act_of(old->op);
    bool at_default = act != IR_ACT_NONE && (ir_acts[act].kind != KDA_KIND_REAL || old->attr.scalar == ir_acts[act].def);
    if (at_default && fusable(in[0]) && rw->uses[old->in[0]->id] == 1)
        return build(rw, in[0], NULL, act);
    return kd_rw_copy(rw, old, in);
}

ir_graph *kd_pass_fuse(ir_graph *g, char *why, size_t why_len)
{
    return kd_rewrite_graph(g, visit, NULL, why, why_len);
}
