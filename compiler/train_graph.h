/* train_graph.h — the graphs that train a model: its forward graph in training
 * mode, plus labels, the loss exactly as Keras reduces it, the gradients of
 * every trainable weight, and (for the train step) the optimizer's updates.
 *
 * Both graphs are copies of m->train, which stays the plain forward graph.
 * Run-time hyperparameters: IR_HYPER_LR is the learning rate (the host feeds
 * m->config.learning_rate, or a schedule's value), IR_HYPER_STEP the number
 * of steps taken before this one (Keras' optimizer.iterations), IR_HYPER_SEED
 * the dropout seed, IR_HYPER_BATCH the rows in this batch. */
#ifndef KDSL_TRAIN_GRAPH_H
#define KDSL_TRAIN_GRAPH_H

#include "model.h"

typedef struct kd_train_graph {
    ir_graph *g;
    ir_node *loss;          /* g->outputs[0]: the scalar loss of the batch */
    ir_node *prediction;    /* g->outputs[1]: the model's first output (metrics) */
    int nlabels;            /* one per model output: label #i, shaped like output i */
    ir_node *labels[16];
    ir_node **grads;        /* per variable index: d(loss)/d(weight) for trainable weights, else NULL */
    int ngrads;             /* trainable weights; in the grad graph g->outputs[2 ..] in index order */
} kd_train_graph;

/* The train step: forward, loss, backward, and g->updates = the model's state
 * updates followed by the optimizer's (slots first, then the weight, per
 * weight). All updates are simultaneous: each value is computed from the
 * variables as they were before the step. The gradients are clipped and the
 * weights decayed first, as Keras 3's optimizers do (clipnorm, clipvalue,
 * global_clipnorm, weight_decay). Adds the optimizer slot variables
 * (VAR_SLOT, "dense/kernel/adam_m", ".../adam_v", ".../momentum", ".../rms",
 * ..., and Nadam's scalar "nadam/u_product") to m->vars once, with offsets
 * into the optimizer-state buffer and their initial values (Adagrad's
 * accumulator starts at initial_accumulator_value).
 * False with the reason in why (no train block, a loss the outputs do not fit,
 * a model too large). */
bool kd_build_train_step(kd_arena *a, kd_model *m, kd_train_graph *out, char *why, size_t why_len);

/* Forward and backward without the optimizer, for custom training loops:
 * g->outputs = loss, the first output, then the gradient of every trainable
 * weight in variable order (zeros for a weight the loss does not reach);
 * g->updates = the model's state updates only (as Keras' training=True). */
bool kd_build_grad_graph(kd_arena *a, kd_model *m, kd_train_graph *out, char *why, size_t why_len);

/* The loss of one output as Keras computes it, averaged over the batch (and
 * any other non-class axes): y the model output, t the label of y's shape
 * (one-hot for the categorical losses, sparse ones included); sw, when not
 * NULL, each sample's weight [N] (class_weight): the samples' losses times
 * their weights, summed, over the batch size. */
ir_node *kd_loss(ir_builder *b, const kd_loss_spec *c, ir_node *y, ir_node *t, ir_node *sw);

/* Keras' backend.epsilon(), the clip of probabilities in the cross-entropies. */
#define KD_LOSS_EPSILON 1e-7

#endif
