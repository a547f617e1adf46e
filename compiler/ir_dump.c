/* ir_dump.c — the graph as text, one node a line, for `kdslc ir --stage graph`
 * and for tests that diff it:
 *
 *   %7 = matmul(%3, %5) : (None, 256) trans_b  # dense
 *
 * The attributes printed are the ones the op reads (ir_op_info.attrs), so the
 * text is deterministic and says everything that tells two nodes apart. */
#include "ir.h"

#include <stdlib.h>

static const char *const hyper_names[IR_HYPER_COUNT] = {"lr", "step", "seed", "batch"};

/* The shortest %g that reads back as the same double. */
static void print_double(FILE *out, double v)
{
    char buf[40];
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    fputs(buf, out);
}

static void print_list(FILE *out, const char *name, int n, const int64_t *v)
{
    fprintf(out, " %s=[", name);
    for (int i = 0; i < n; i++) fprintf(out, "%s%lld", i ? ", " : "", (long long)v[i]);
    fputc(']', out);
}

static void print_attrs(FILE *out, const ir_graph *g, const ir_node *n)
{
    const ir_attrs *a = &n->attr;
    unsigned want = ir_ops[n->op]->attrs;
    bool spatial = want & (IR_ATTR_WINDOW | IR_ATTR_STRIDE);
    if (want & IR_ATTR_AXES) {
        fputs(" axes=[", out);
        for (int i = 0, first = 1; i < 64; i++)
            if ((a->axes >> i) & 1) {
                fprintf(out, "%s%d", first ? "" : ", ", i);
                first = 0;
            }
        fputc(']', out);
        if (a->keepdims) fputs(" keepdims", out);
    }
    if (want & IR_ATTR_AXIS) fprintf(out, " axis=%d", a->axis);
    if (want & IR_ATTR_PERM) {
        int64_t p[IR_MAX_RANK];
        for (int i = 0; i < n->shape.rank; i++) p[i] = a->perm[i];
        print_list(out, "perm", n->shape.rank, p);
    }
    if (want & IR_ATTR_SLICE) {
        print_list(out, "begin", n->shape.rank, a->begin);   /* the size is the result's shape */
    }
    if (want & IR_ATTR_WINDOW) fprintf(out, " window=(%d, %d)", a->window[0], a->window[1]);
    if (want & IR_ATTR_STRIDE) fprintf(out, " stride=(%d, %d)", a->stride[0], a->stride[1]);
    if ((want & IR_ATTR_DILATION) && (a->dilation[0] > 1 || a->dilation[1] > 1))
        fprintf(out, " dilation=(%d, %d)", a->dilation[0], a->dilation[1]);
    if (want & IR_ATTR_PAD) {
        int rank = spatial ? 2 : n->shape.rank;
        bool any = false;
        for (int i = 0; i < rank; i++) any |= a->pad_lo[i] || a->pad_hi[i];
        if (any || !spatial) {
            fputs(" pad=[", out);
            for (int i = 0; i < rank; i++)
                fprintf(out, "%s%lld:%lld", i ? ", " : "", (long long)a->pad_lo[i], (long long)a->pad_hi[i]);
            fputc(']', out);
        }
    }
    if ((want & IR_ATTR_TRANS) && a->trans_a) fputs(" trans_a", out);
    if ((want & IR_ATTR_TRANS) && a->trans_b) fputs(" trans_b", out);
    int act = ir_act_of(n->op);
    if (act != IR_ACT_NONE && ir_acts[act].kind == KDA_KIND_REAL) {
        fprintf(out, " %s=", ir_acts[act].arg);
        print_double(out, a->scalar);
    }
    if ((want & IR_ATTR_ACT) && a->act != IR_ACT_NONE && n->op != IR_ACT_GRAD) {   /* act_grad: in its name */
        if (a->act > 0 && a->act < IR_ACT_COUNT) fprintf(out, " act=%s", ir_ops[ir_acts[a->act].op]->name);
        else fprintf(out, " act=%d", a->act);
    }
    if ((want & IR_ATTR_SCAN) && a->scan)   /* the body is not printed (yet) */
        fprintf(out, " result=%d loop=(%d carries, %d sequences, %d constants%s)", a->index, a->scan->ncarry,
                a->scan->nseq, a->scan->nconst, a->scan->reverse ? ", reverse" : "");
    if (n->op == IR_DROPOUT_MASK) {
        fputs(" rate=", out);
        print_double(out, a->scalar);
        fprintf(out, " salt=%d", a->index);
    }
    (void)g;
}

static void print_head(FILE *out, const ir_graph *g, const ir_node *n)
{
    /* An activation's gradient reads as its own op: relu_grad(%4, %9). */
    if (n->op == IR_ACT_GRAD && n->attr.act > 0 && n->attr.act < IR_ACT_COUNT)
        fprintf(out, "%s_grad", ir_ops[ir_acts[n->attr.act].op]->name);
    else
        fputs(ir_ops[n->op]->name, out);
    switch (n->op) {
    case IR_INPUT:
    case IR_LABEL: fprintf(out, " #%d%s", n->attr.index, ir_is_i32(n) ? " i32" : ""); return;
    case IR_HYPER:
        fprintf(out, " %s", n->attr.index >= 0 && n->attr.index < IR_HYPER_COUNT ? hyper_names[n->attr.index] : "?");
        return;
    case IR_CONST:
        fputc(' ', out);
        print_double(out, n->attr.scalar);
        return;
    case IR_VAR:
        if (g->vars && n->var >= 0 && n->var < g->vars->len)
            fprintf(out, " %s", ((const kd_var *)g->vars->items[n->var])->name);
        else
            fprintf(out, " #%d", n->var);
        return;
    default: break;
    }
    if (n->nin == 0) return;               /* a leaf such as dropout_mask */
    fputc('(', out);
    for (int i = 0; i < n->nin; i++) fprintf(out, "%s%%%d", i ? ", " : "", n->in[i]->id);
    fputc(')', out);
}

void ir_dump(FILE *out, const ir_graph *g)
{
    char buf[160];
    for (int i = 0; i < g->nodes.len; i++) {
        const ir_node *n = g->nodes.items[i];
        fprintf(out, "%%%d = ", n->id);
        print_head(out, g, n);
        fprintf(out, " : %s", ir_shape_keras(&n->shape, buf, sizeof buf));
        print_attrs(out, g, n);
        if (n->layer) fprintf(out, "  # %s", n->layer);
        fputc('\n', out);
    }
    for (int i = 0; i < g->outputs.len; i++)
        fprintf(out, "output %%%d\n", ((const ir_node *)g->outputs.items[i])->id);
    for (int i = 0; i < g->updates.len; i++) {
        const ir_update *u = g->updates.items[i];
        if (g->vars && u->var >= 0 && u->var < g->vars->len)
            fprintf(out, "update %s = %%%d\n", ((const kd_var *)g->vars->items[u->var])->name, u->value->id);
        else
            fprintf(out, "update #%d = %%%d\n", u->var, u->value->id);
    }
}
