/* test_sema.c — semantic analysis and shape inference on programs written from
 * docs/language.md: parameter counts as Keras computes them, output shapes, names,
 * and the errors a checker must catch. */
#include "testutil.h"

#include "driver.h"

#include <stdlib.h>
#include <string.h>

typedef struct checked {
    kd_session s;
    char *diags;
    size_t diags_len;
    FILE *out;
    int rc;
} checked;

static void check_text(checked *c, const char *text, const char *model)
{
    memset(c, 0, sizeof *c);
    c->out = open_memstream(&c->diags, &c->diags_len);
    c->s.diags.out = c->out;
    c->rc = kd_front_end_text(&c->s, "test.kdsl", text, strlen(text), model);
    fflush(c->out);
}

static void done(checked *c)
{
    fclose(c->out);
    free(c->diags);
    kd_session_free(&c->s);
}

static const kd_layer *row(const kd_model *m, const char *name)
{
    for (int i = 0; i < m->layers.len; i++) {
        const kd_layer *l = m->layers.items[i];
        if (strcmp(l->name, name) == 0) return l;
    }
    ck_abort_msg("no layer '%s'", name);
    return NULL;
}

static void assert_shape(const kd_layer *l, const char *want)
{
    char buf[128];
    ck_assert_str_eq(ir_shape_keras(&l->out_shape, buf, sizeof buf), want);
}

#define ASSERT_OK(c) ck_assert_msg((c)->rc == 0, "diagnostics:\n%s", (c)->diags)

static void assert_params(const kd_model *m, int64_t total, int64_t trainable, int64_t nontrainable)
{
    ck_assert_int_eq(m->trainable_params + m->nontrainable_params, total);
    ck_assert_int_eq(m->trainable_params, trainable);
    ck_assert_int_eq(m->nontrainable_params, nontrainable);
}

START_TEST(residual_merge)
{
    checked c;
    check_text(&c,
               "model res {\n"
               "    input x: [16]\n"
               "    h = Dense(x, 16, activation: relu)\n"
               "    h2 = Dense(h, 16)\n"
               "    output Add([x, h2])\n"
               "}\n", NULL);
    ASSERT_OK(&c);
    const kd_model *m = c.s.model;
    assert_params(m, 544, 544, 0);
    ck_assert(m->functional);                 /* Add reads two layers */
    const kd_layer *add = row(m, "add");
    ck_assert_int_eq(add->inbound.len, 2);
    ck_assert_str_eq(add->inbound.items[0], "x[0][0]");
    ck_assert_str_eq(add->inbound.items[1], "dense_1[0][0]");
    assert_shape(add, "(None, 16)");
    done(&c);
}
END_TEST

START_TEST(shared_layer_two_inputs_two_outputs)
{
    checked c;
    check_text(&c,
               "model siamese {\n"
               "    input a: [8]\n"
               "    input b: [8]\n"
               "    shared enc = Dense(4, activation: relu)\n"
               "    ea = enc(a)\n"
               "    eb = enc(b)\n"
               "    output diff = ea - eb\n"
               "    output both = Concatenate([ea, eb])\n"
               "}\n", NULL);
    ASSERT_OK(&c);
    const kd_model *m = c.s.model;
    assert_params(m, 36, 36, 0);             /* one set of weights */
    ck_assert_int_eq(m->layers.len, 2);      /* one row for the shared layer */
    ck_assert_int_eq(m->ninputs, 2);
    ck_assert_int_eq(m->noutputs, 2);
    ck_assert_str_eq(m->output_names[0], "diff");
    ck_assert_str_eq(m->output_names[1], "both");
    char buf[64];
    ck_assert_str_eq(ir_shape_keras(&m->output_shapes[1], buf, sizeof buf), "(None, 8)");
    ck_assert_int_eq(row(m, "dense")->inbound.len, 2);
    ck_assert_int_eq(m->vars.len, 2);
    ck_assert_str_eq(((kd_var *)m->vars.items[0])->name, "dense/kernel");
    done(&c);
}
END_TEST

/* The recurrent layers' several outputs and wrappers, as Keras counts and
 * names them: return_state's [output, h, c] (the summary prints every
 * shape, Keras' "[(None, 5, 4), (None, 4), (None, 4)]"), tensors named
 * lstm[0][1] in "Connected to", Bidirectional's forward_ and backward_
 * copies (the wrapped layer takes a name of its own: the next LSTM is
 * lstm_2), TimeDistributed's weights under its own name. Parameter counts
 * from Keras 3: Bidirectional(LSTM(4)) over 3 features 2 x 4 (4 (3 + 4 + 1))
 * = 256, TimeDistributed(Dense(2)) over 8 features 18. */
START_TEST(recurrent_outputs_and_wrappers)
{
    checked c;
    check_text(&c,
               "model r {\n"
               "    input x: [5, 3]\n"
               "    y, h, c = LSTM(4, return_sequences: true, return_state: true)\n"
               "    b = Bidirectional(x, LSTM(4, return_sequences: true))\n"
               "    t = TimeDistributed(b, Dense(2))\n"
               "    l = LSTM(t, 3)\n"
               "    output Concatenate([h, c, l])\n"
               "}\n", NULL);
    ASSERT_OK(&c);
    const kd_model *m = c.s.model;
    const kd_layer *lstm = row(m, "lstm");
    char buf[64];
    ck_assert_int_eq(lstm->nout_list, 3);
    ck_assert_str_eq(ir_shape_keras(&lstm->out_list[0], buf, sizeof buf), "(None, 5, 4)");
    ck_assert_str_eq(ir_shape_keras(&lstm->out_list[2], buf, sizeof buf), "(None, 4)");
    assert_shape(row(m, "bidirectional"), "(None, 5, 8)");
    ck_assert_int_eq(row(m, "bidirectional")->trainable_params, 256);
    assert_shape(row(m, "time_distributed"), "(None, 5, 2)");
    ck_assert_int_eq(row(m, "time_distributed")->trainable_params, 18);
    ck_assert_int_eq(row(m, "lstm_2")->trainable_params, 4 * 3 * (2 + 3 + 1));
    const kd_layer *cat = row(m, "concatenate");
    ck_assert_int_eq(cat->inbound.len, 3);
    ck_assert_str_eq(cat->inbound.items[0], "lstm[0][1]");
    ck_assert_str_eq(cat->inbound.items[1], "lstm[0][2]");
    ck_assert_str_eq(((kd_var *)m->vars.items[3])->name, "bidirectional/forward_lstm_1/lstm_cell/kernel");
    ck_assert_str_eq(((kd_var *)m->vars.items[6])->name, "bidirectional/backward_lstm_1/lstm_cell/kernel");
    ck_assert_str_eq(((kd_var *)m->vars.items[9])->name, "time_distributed/kernel");
    done(&c);
    /* shared wrappers: one set of weights for both calls (Keras 3: 12 and 2 x 42) */
    check_text(&c,
               "model s {\n    input a: [5, 3]\n    input b: [5, 3]\n"
               "    shared bi = Bidirectional(GRU(2))\n    shared td = TimeDistributed(Dense(3))\n"
               "    output y = Concatenate([bi(td(a)), bi(td(b))])\n}\n", NULL);
    ASSERT_OK(&c);
    assert_params(c.s.model, 96, 96, 0);
    ck_assert_int_eq(c.s.model->vars.len, 8);
    ck_assert_int_eq(row(c.s.model, "bidirectional")->inbound.len, 2);
    done(&c);
}
END_TEST

/* A model used as a layer: `shared e = encoder()` is one instance whose calls
 * share its weights (Keras' nested model called twice); two plain calls are
 * two instances, each with weights of its own. */
START_TEST(shared_nested_model)
{
    static const char enc[] = "model encoder {\n    input x: [8]\n    Dense(4)\n    output BatchNormalization()\n}\n";
    char text[1024];
    snprintf(text, sizeof text, "%smodel m {\n    input a: [8]\n    input b: [8]\n    shared e = encoder()\n"
                                "    output y = Add([e(a), e(b)])\n}\n", enc);
    checked c;
    check_text(&c, text, NULL);
    ASSERT_OK(&c);
    const kd_model *m = c.s.model;
    assert_params(m, 52, 44, 8);               /* Dense 8x4+4, BatchNormalization 4 x 4: once */
    ck_assert_int_eq(m->vars.len, 6);
    ck_assert_str_eq(((kd_var *)m->vars.items[0])->name, "encoder/dense/kernel");
    ck_assert_int_eq(row(m, "encoder")->ncalls, 2);
    ck_assert_int_eq(row(m, "encoder")->inbound.len, 2);
    done(&c);
    snprintf(text, sizeof text, "%smodel m {\n    input a: [8]\n    input b: [8]\n"
                                "    output y = Add([encoder(a), encoder(b)])\n}\n", enc);
    check_text(&c, text, NULL);
    ASSERT_OK(&c);
    assert_params(c.s.model, 104, 88, 16);
    ck_assert_str_eq(((kd_var *)c.s.model->vars.items[6])->name, "encoder_1/dense/kernel");
    done(&c);
}
END_TEST

static const char *custom_norm =
    "layer Norm(momentum: 0.9) {\n"
    "    input x: [n]\n"
    "    weight scale: [n] = ones\n"
    "    state running: [n] = zeros\n"
    "    if training {\n"
    "        m = mean(x, axis: 0)\n"
    "        update running = running * momentum + m * (1 - momentum)\n"
    "        output (x - m) * scale\n"
    "    } else {\n"
    "        output (x - running) * scale\n"
    "    }\n"
    "}\n"
    "model normed {\n"
    "    input x: [5]\n"
    "    Norm()\n"
    "    Dense(2)\n"
    "}\n";

START_TEST(custom_layer_with_state_and_if_training)
{
    checked c;
    check_text(&c, custom_norm, NULL);
    ASSERT_OK(&c);
    const kd_model *m = c.s.model;
    assert_params(m, 22, 17, 5);
    const kd_layer *norm = row(m, "norm");
    ck_assert_str_eq(norm->type, "Norm");
    ck_assert_int_eq(norm->trainable_params, 5);
    ck_assert_int_eq(norm->nontrainable_params, 5);
    ck_assert_str_eq(((kd_var *)m->vars.items[1])->name, "norm/running");
    ck_assert_int_eq(((kd_var *)m->vars.items[1])->kind, VAR_STATE);
    /* the update exists in training only */
    ck_assert_int_eq(m->train->updates.len, 1);
    ck_assert_int_eq(m->infer->updates.len, 0);
    done(&c);
}
END_TEST

START_TEST(blocks_inside_repeat)
{
    checked c;
    check_text(&c,
               "block dense_relu(x, units) {\n"
               "    Dense(x, units)\n"
               "    output ReLU()\n"
               "}\n"
               "model stacked {\n"
               "    input x: [10]\n"
               "    repeat 3 {\n"
               "        dense_relu(8)\n"
               "    }\n"
               "    Dense(1)\n"
               "}\n", NULL);
    ASSERT_OK(&c);
    const kd_model *m = c.s.model;
    assert_params(m, 241, 241, 0);
    ck_assert_int_eq(m->layers.len, 7);
    row(m, "dense_3");
    row(m, "re_lu_2");
    ck_assert(!m->functional);
    done(&c);
}
END_TEST

START_TEST(batchnorm_strides_same_padding)
{
    checked c;
    check_text(&c,
               "model convnet {\n"
               "    input image: [32, 32, 3]\n"
               "    Conv2D(16, 3, strides: 2, padding: same)\n"
               "    BatchNormalization()\n"
               "    ReLU()\n"
               "    Conv2D(32, 5, strides: 2, padding: same, use_bias: false)\n"
               "    MaxPooling2D(3, strides: 2, padding: same)\n"
               "    AveragePooling2D(2)\n"
               "    GlobalAveragePooling2D()\n"
               "    Dense(10, activation: softmax)\n"
               "}\n", NULL);
    ASSERT_OK(&c);
    const kd_model *m = c.s.model;
    assert_params(m, 13642, 13610, 32);
    assert_shape(row(m, "conv2d"), "(None, 16, 16, 16)");
    assert_shape(row(m, "conv2d_1"), "(None, 8, 8, 32)");
    assert_shape(row(m, "max_pooling2d"), "(None, 4, 4, 32)");
    assert_shape(row(m, "average_pooling2d"), "(None, 2, 2, 32)");
    assert_shape(row(m, "global_average_pooling2d"), "(None, 32)");
    ck_assert_int_eq(row(m, "batch_normalization")->nontrainable_params, 32);
    ck_assert_int_eq(m->train->updates.len, 2);   /* moving mean and variance */
    done(&c);
}
END_TEST

/* Output shapes and parameter counts by Keras' rules for the layers kdsl
 * builds from its own ops: Dense on the last axis (2 * 3 + 3), Conv1D's
 * kernel [k, in, out] (4 * 7 * 5 + 5, and 3 * 5 * 2 without a bias), same
 * padding ceil(n / stride), LayerNormalization's gamma alone with
 * center: false. (tests/test_keras_layers.c checks such models against
 * TensorFlow.js's own summaries and outputs.) */
START_TEST(keras_shape_layers)
{
    checked c;
    check_text(&c,
               "model shapes {\n"
               "    input image: [4, 4, 2]\n"
               "    Dense(3)\n"
               "    UpSampling2D(size: [2, 3])\n"
               "    Cropping2D([[1, 0], [2, 3]])\n"
               "    SpatialDropout2D(0.2)\n"
               "    Permute([3, 1, 2])\n"
               "    Reshape([21, 7])\n"
               "    Conv1D(5, 4, strides: 2, padding: same)\n"
               "    Conv1D(2, 3, padding: causal, use_bias: false)\n"
               "    AveragePooling1D(3, strides: 2)\n"
               "    LayerNormalization(center: false)\n"
               "    GlobalMaxPooling1D()\n"
               "    RepeatVector(4)\n"
               "    Rescaling(1 / 255)\n"
               "    Normalization(mean: 0, variance: 1)\n"
               "}\n", NULL);
    ASSERT_OK(&c);
    const kd_model *m = c.s.model;
    assert_params(m, 9 + 145 + 30 + 2, 9 + 145 + 30 + 2, 0);
    assert_shape(row(m, "dense"), "(None, 4, 4, 3)");
    assert_shape(row(m, "up_sampling2d"), "(None, 8, 12, 3)");
    assert_shape(row(m, "cropping2d"), "(None, 7, 7, 3)");
    assert_shape(row(m, "permute"), "(None, 3, 7, 7)");
    assert_shape(row(m, "conv1d"), "(None, 11, 5)");
    assert_shape(row(m, "conv1d_1"), "(None, 11, 2)");
    assert_shape(row(m, "average_pooling1d"), "(None, 5, 2)");
    assert_shape(row(m, "global_max_pooling1d"), "(None, 2)");
    assert_shape(row(m, "repeat_vector"), "(None, 4, 2)");
    assert_shape(row(m, "normalization"), "(None, 4, 2)");
    done(&c);
}
END_TEST

/* A layer argument may call a setting's constructor with Keras' arguments:
 * initializers (RandomNormal(mean, stddev)) and regularizers (l2(1e-4)). */
START_TEST(setting_calls_in_layer_arguments)
{
    checked c;
    check_text(&c,
               "model m {\n"
               "    input x: [3]\n"
               "    Dense(2, kernel_initializer: RandomNormal(mean: 1, stddev: 0.5), kernel_regularizer: l2(1e-4))\n"
               "    Conv1D(2, 1, bias_initializer: Constant(3), activity_regularizer: L1L2(l1: 0.1))\n"
               "}\n", NULL);
    ck_assert_int_eq(c.rc, 1);   /* Conv1D needs a sequence: the initializer calls were fine up to there */
    ck_assert_msg(strstr(c.diags, "Conv1D expects a rank-2 input") != NULL, "%s", c.diags);
    done(&c);
    check_text(&c,
               "model m {\n"
               "    input x: [3]\n"
               "    Dense(2, kernel_initializer: RandomNormal(mean: 1, stddev: 0.5), bias_initializer: Constant(3),\n"
               "          kernel_regularizer: l2(1e-4))\n"
               "}\n", NULL);
    ASSERT_OK(&c);
    const kd_var *k = c.s.model->vars.items[0], *b = c.s.model->vars.items[1];
    ck_assert_int_eq(k->init.kind, INIT_RANDOM_NORMAL);
    ck_assert_double_eq(k->init.a, 1);
    ck_assert_double_eq(k->init.b, 0.5);
    ck_assert_int_eq(b->init.kind, INIT_CONSTANT);
    ck_assert_double_eq(b->init.a, 3);
    ck_assert_int_eq(c.s.model->train->losses.len, 1);
    done(&c);
}
END_TEST

START_TEST(nested_model_frozen)
{
    checked c;
    check_text(&c,
               "model enc {\n"
               "    input x: [4]\n"
               "    Dense(3)\n"
               "}\n"
               "model top {\n"
               "    input x: [4]\n"
               "    enc(trainable: false)\n"
               "    Dense(2)\n"
               "}\n", NULL);
    ASSERT_OK(&c);
    const kd_model *m = c.s.model;
    ck_assert_str_eq(m->name, "top");           /* the last model */
    assert_params(m, 23, 8, 15);
    const kd_layer *enc = row(m, "enc");
    ck_assert_str_eq(enc->type, "Functional");
    ck_assert_str_eq(((kd_var *)m->vars.items[0])->name, "enc/dense/kernel");
    ck_assert(!((kd_var *)m->vars.items[0])->trainable);
    done(&c);
    check_text(&c,
               "model enc {\n    input x: [4]\n    Dense(3)\n}\n"
               "model top {\n    input x: [4]\n    enc()\n    Dense(2)\n}\n", "enc");
    ASSERT_OK(&c);
    ck_assert_str_eq(c.s.model->name, "enc");
    assert_params(c.s.model, 15, 15, 0);
    done(&c);
}
END_TEST

START_TEST(tensor_functions_and_shapes)
{
    checked c;
    check_text(&c,
               "model f {\n"
               "    input x: [6, 4]\n"
               "    t = transpose(x, [0, 2, 1])\n"
               "    s = sum(t, axis: -1)\n"
               "    r = reshape(x, [3, -1])\n"
               "    c = concat([x, x], axis: 1)\n"
               "    Flatten(c)\n"
               "    d = Dropout(0.5)\n"
               "    output s\n"
               "    output r\n"
               "    output Dense(d, 3)\n"
               "}\n", NULL);
    ASSERT_OK(&c);
    const kd_model *m = c.s.model;
    char buf[64];
    ck_assert_str_eq(ir_shape_keras(&m->output_shapes[0], buf, sizeof buf), "(None, 4)");
    ck_assert_str_eq(ir_shape_keras(&m->output_shapes[1], buf, sizeof buf), "(None, 3, 8)");
    ck_assert_str_eq(ir_shape_keras(&m->output_shapes[2], buf, sizeof buf), "(None, 3)");
    assert_shape(row(m, "flatten"), "(None, 48)");
    assert_params(m, 147, 147, 0);
    done(&c);
}
END_TEST

START_TEST(names_follow_keras)
{
    checked c;
    check_text(&c,
               "layer MyDense(units) {\n    input x: [n]\n    weight kernel: [n, units]\n    output x @ kernel\n}\n"
               "model names {\n"
               "    input x: [4]\n"
               "    MyDense(3)\n    MyDense(4)\n    ReLU()\n    Conv2D(reshape([2, 2, 1]), 2, 1)\n"
               "    MaxPooling2D(1)\n    Flatten()\n    Dense(2, name: \"head\")\n"
               "}\n", NULL);
    ASSERT_OK(&c);
    const kd_model *m = c.s.model;
    const char *want[] = {"my_dense", "my_dense_1", "re_lu", "conv2d", "max_pooling2d", "flatten", "head"};
    ck_assert_int_eq(m->layers.len, 7);
    for (int i = 0; i < 7; i++) ck_assert_str_eq(((kd_layer *)m->layers.items[i])->name, want[i]);
    ck_assert_str_eq(((kd_var *)m->vars.items[1])->name, "my_dense_1/kernel");
    ck_assert_str_eq(((kd_var *)m->vars.items[m->vars.len - 1])->name, "head/bias");
    done(&c);
}
END_TEST

START_TEST(train_block_settings)
{
    checked c;
    check_text(&c,
               "model m {\n    input x: [3]\n    Dense(2)\n}\n"
               "train m {\n"
               "    loss: SparseCategoricalCrossentropy(from_logits: true)\n"
               "    optimizer: SGD(learning_rate: 0.05, momentum: 0.9, nesterov: true)\n"
               "    metrics: [accuracy]\n"
               "    batch_size: 16; epochs: 3\n"
               "    validation_freq: 2\n"
               "}\n", NULL);
    ASSERT_OK(&c);
    const kd_train_config *t = &c.s.model->config;
    ck_assert(t->present);
    ck_assert_int_eq(t->loss.kind, LOSS_SPARSE_CATEGORICAL_XENT);
    ck_assert(t->loss.from_logits);
    ck_assert_int_eq(t->optimizer, OPT_SGD);
    ck_assert_double_eq_tol(t->learning_rate, 0.05, 1e-12);
    ck_assert_double_eq_tol(t->momentum, 0.9, 1e-12);
    ck_assert(t->nesterov);
    ck_assert(t->metric_accuracy);
    ck_assert_int_eq(t->batch_size, 16);
    ck_assert_int_eq(t->epochs, 3);
    ck_assert_int_eq(t->validation_freq, 2);
    done(&c);
}
END_TEST

/* The toolbox's settings: Keras' defaults, positional order, the metrics' names. */
START_TEST(train_block_toolbox)
{
    static const char head[] = "model m {\n    input x: [3]\n    output y = Dense(2, activation: softmax)\n}\ntrain m {\n";
    checked c;
    char src[1024];
    snprintf(src, sizeof src,
             "%s    loss: Huber(0.25)\n    optimizer: AdamW()\n"
             "    metrics: [mae, AUC(50, \"PR\", \"majoring\"), MeanAbsoluteError(), BinaryAccuracy(threshold: 0.7),"
             " TopKCategoricalAccuracy(3, name: \"top3\"), acc]\n}\n", head);
    check_text(&c, src, NULL);
    ASSERT_OK(&c);
    const kd_train_config *t = &c.s.model->config;
    ck_assert_int_eq(t->loss.kind, LOSS_HUBER);
    ck_assert_double_eq(t->loss.delta, 0.25);
    ck_assert_int_eq(t->optimizer, OPT_ADAMW);
    ck_assert_double_eq(t->learning_rate, 0.001);
    ck_assert_double_eq(t->weight_decay, 0.004);
    ck_assert_double_eq(t->beta_1, 0.9);
    ck_assert_double_eq(t->beta_2, 0.999);
    ck_assert_double_eq(t->epsilon, 1e-7);
    ck_assert(!t->amsgrad && t->clipnorm == 0 && t->clipvalue == 0 && t->global_clipnorm == 0);
    ck_assert(t->metric_accuracy);
    ck_assert_int_eq(t->nmetrics, 5);
    /* a string is named as written, a constructed metric by its name: or Keras' default */
    static const char *const names[5] = {"mae", "auc", "mean_absolute_error", "binary_accuracy", "top3"};
    for (int i = 0; i < 5; i++) ck_assert_str_eq(t->metrics[i].name, names[i]);
    ck_assert_int_eq(t->metrics[1].kind, KDH_METRIC_AUC);
    ck_assert_int_eq(t->metrics[1].num_thresholds, 50);
    ck_assert(t->metrics[1].pr);
    ck_assert_int_eq(t->metrics[1].summation, KDH_AUC_MAJORING);
    ck_assert_double_eq(t->metrics[3].threshold, 0.7);
    ck_assert_int_eq(t->metrics[4].k, 3);
    done(&c);

    /* positional: AdamW(learning_rate, weight_decay, beta_1, ...), Adagrad's accumulator, Adadelta's rho */
    snprintf(src, sizeof src, "%s    loss: bce\n    optimizer: AdamW(0.01, 0.1, 0.8, 0.99, 1e-5, true, clipvalue: 2)\n}\n",
             head);
    check_text(&c, src, NULL);
    ASSERT_OK(&c);
    t = &c.s.model->config;
    ck_assert_int_eq(t->loss.kind, LOSS_BINARY_XENT);
    ck_assert(!t->metric_accuracy && t->nmetrics == 0);
    ck_assert_double_eq(t->learning_rate, 0.01);
    ck_assert_double_eq(t->weight_decay, 0.1);
    ck_assert_double_eq(t->beta_1, 0.8);
    ck_assert_double_eq(t->beta_2, 0.99);
    ck_assert_double_eq(t->epsilon, 1e-5);
    ck_assert(t->amsgrad);
    ck_assert_double_eq(t->clipvalue, 2);
    done(&c);
    snprintf(src, sizeof src, "%s    loss: kld\n    optimizer: Adadelta(global_clipnorm: 3)\n}\n", head);
    check_text(&c, src, NULL);
    ASSERT_OK(&c);
    ck_assert_int_eq(c.s.model->config.loss.kind, LOSS_KLD);
    ck_assert_double_eq(c.s.model->config.rho, 0.95);
    ck_assert_double_eq(c.s.model->config.learning_rate, 0.001);
    ck_assert_double_eq(c.s.model->config.global_clipnorm, 3);
    done(&c);
    snprintf(src, sizeof src,
             "%s    loss: CategoricalCrossentropy(true, 0.2)\n    optimizer: RMSprop(0.01, 0.8, 0.5, 1e-6, true)\n}\n", head);
    check_text(&c, src, NULL);
    ASSERT_OK(&c);
    t = &c.s.model->config;
    ck_assert(t->loss.from_logits);
    ck_assert_double_eq(t->loss.label_smoothing, 0.2);
    ck_assert_double_eq(t->rho, 0.8);
    ck_assert_double_eq(t->momentum, 0.5);
    ck_assert_double_eq(t->epsilon, 1e-6);
    ck_assert(t->centered);
    done(&c);
    snprintf(src, sizeof src, "%s    loss: mse\n    optimizer: SGD(lr: 0.5, momentum: 0.25)\n}\n", head);   /* Keras 2's lr */
    check_text(&c, src, NULL);
    ASSERT_OK(&c);
    ck_assert_double_eq(c.s.model->config.learning_rate, 0.5);
    ck_assert_double_eq(c.s.model->config.momentum, 0.25);
    done(&c);
    snprintf(src, sizeof src, "%s    loss: poisson\n    optimizer: Adagrad(0.1, 0.5)\n}\n", head);
    check_text(&c, src, NULL);
    ASSERT_OK(&c);
    ck_assert_double_eq(c.s.model->config.initial_accumulator_value, 0.5);
    done(&c);
}
END_TEST

START_TEST(train_block_schedules)
{
    static const struct {
        const char *lr;
        kd_schedule_kind kind;
        double initial, decay_steps, decay_rate, alpha, end, power;
        bool staircase;
    } cases[] = {
        {"0.01", SCHEDULE_CONSTANT, 0.01, 0, 0, 0, 0, 0, false},
        {"ExponentialDecay(0.1, 100, 0.96, true)", SCHEDULE_EXPONENTIAL, 0.1, 100, 0.96, 0, 1e-4, 1, true},
        {"InverseTimeDecay(initial_learning_rate: 0.5, decay_steps: 10, decay_rate: 2)", SCHEDULE_INVERSE_TIME, 0.5,
         10, 2, 0, 1e-4, 1, false},
        {"CosineDecay(1e-3, alpha: 0.25)", SCHEDULE_COSINE, 1e-3, 0, 0, 0.25, 1e-4, 1, false},
        {"PolynomialDecay(0.1, 500, 0.01, power: 2)", SCHEDULE_POLYNOMIAL, 0.1, 500, 0, 0, 0.01, 2, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char src[512];
        snprintf(src, sizeof src,
                 "model m {\n    input x: [3]\n    Dense(2)\n}\n"
                 "train m {\n    loss: MeanSquaredError()\n    optimizer: Adam(learning_rate: %s)\n}\n",
                 cases[i].lr);
        checked c;
        check_text(&c, src, NULL);
        ASSERT_OK(&c);
        const kd_train_config *t = &c.s.model->config;
        ck_assert_int_eq(t->schedule.kind, cases[i].kind);
        ck_assert_double_eq_tol(t->learning_rate, cases[i].initial, 1e-15);
        if (cases[i].kind != SCHEDULE_CONSTANT) {
            ck_assert_double_eq_tol(t->schedule.decay_steps, cases[i].decay_steps, 1e-12);
            ck_assert_double_eq_tol(t->schedule.decay_rate, cases[i].decay_rate, 1e-12);
            ck_assert_double_eq_tol(t->schedule.alpha, cases[i].alpha, 1e-12);
            ck_assert_double_eq_tol(t->schedule.end_learning_rate, cases[i].end, 1e-12);
            ck_assert_double_eq_tol(t->schedule.power, cases[i].power, 1e-12);
            ck_assert_int_eq(t->schedule.staircase, cases[i].staircase);
        }
        done(&c);
    }
}
END_TEST

/* Each mistake: the expected words in the message and its line:col. */
static const struct {
    const char *src, *want;
} mistakes[] = {
    {"model m {\n    input x: [3]\n    Dense(3, activation: rleu)\n}\n", "test.kdsl:3:26: error: unknown activation 'rleu'; did you mean 'relu'?"},
    {"model m {\n    input x: []\n    Dense(3)\n}\n", "Dense needs at least one axis per sample (it applies to the last), got []"},
    {"model m {\n    input x: [3]\n    y = x @ x\n}\n", "'@' needs a matrix on its right"},
    {"model m {\n    input x: [3]\n    repeat 2000000 { Dense(2) }\n}\n", "repeat count 2000000 is out of range"},
    {"block a(x) {\n    output a(x)\n}\nmodel m {\n    input x: [3]\n    a()\n}\n", "block 'a' calls itself"},
    {"model m {\n    input x: [3]\n    m()\n}\n", "model 'm' cannot contain itself"},
    {"model m {\n    input x: [3]\n    Dense(3, trainable: 1)\n}\n", "trainable: must be true or false"},
    {"model m {\n    input x: [3]\n    Dense(0)\n}\n", "Dense argument 'units' must be at least 1, got 0"},
    {"model m {\n    input x: [3]\n    Dense(2)\n}\ntrain m {\n    loss: MeanSquaredError()\n    optimizer: Adam(learning_rate: CosineDecay(1e-3, decay_stesp: 10))\n}\n", "CosineDecay takes no argument 'decay_stesp'; did you mean 'decay_steps'?"},
    {"model m {\n    input x: [3]\n    Dense(2)\n}\ntrain m {\n    loss: MeanSquaredError()\n    optimizer: Adam(learning_rate: ExponentialDecay(0.1, 100))\n}\n", "ExponentialDecay needs decay_rate"},
    {"model m {\n    input x: [3]\n    Dense(2)\n}\ntrain m {\n    loss: MeanSquaredError()\n    optimizer: Adam(learning_rate: ExponentialDecay(0.1, -1, 0.5))\n}\n", "decay_steps must be positive"},
    {"model m {\n    input x: [3]\n    Dense(2)\n}\ntrain m {\n    loss: MeanSquaredError()\n    optimizer: Adam(learning_rate: CosineDecay(decay_steps: 10))\n}\n", "CosineDecay needs initial_learning_rate"},
    {"model m {\n    input x: [3]\n    Dense(2)\n}\ntrain m {\n    loss: MeanSquaredError()\n    optimizer: Adam(learning_rate: CosineDecay(0.1, 10, 2))\n}\n", "alpha must be in [0, 1]"},
    {"model m {\n    input x: [3]\n    Dense(2)\n}\ntrain m {\n    loss: MeanSquaredError()\n    optimizer: Adam(learning_rate: CosineDecay(0.1, 10, 0, 5))\n}\n", "CosineDecay takes at most 3 arguments"},
    {"model m {\n    input x: [3]\n    Dense(2)\n}\ntrain m {\n    loss: MeanSquaredError()\n    optimizer: Adam(learning_rate: PolynomialDecay(0.1, power: 0))\n}\n", "power must be positive"},
    {"model m {\n    input x: [3]\n}\nmodel m2 {\n    input x: [3]\n    Dense(1)\n}\n", NULL},
};

START_TEST(mistakes_are_reported)
{
    checked c;
    check_text(&c, mistakes[_i].src, NULL);
    if (!mistakes[_i].want) {
        ASSERT_OK(&c);
    } else {
        ck_assert_int_eq(c.rc, 1);
        ck_assert_msg(strstr(c.diags, mistakes[_i].want) != NULL, "want '%s' in:\n%s", mistakes[_i].want, c.diags);
    }
    done(&c);
}
END_TEST

START_TEST(unknown_model_name)
{
    checked c;
    check_text(&c, "model classifier {\n    input x: [3]\n    Dense(1)\n}\n", "clasifier");
    ck_assert_int_eq(c.rc, 1);
    ck_assert_msg(strstr(c.diags, "no model named 'clasifier'") && strstr(c.diags, "did you mean 'classifier'"), "%s", c.diags);
    done(&c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sema");
    TCase *t = tcase_create("programs");
    tcase_add_test(t, residual_merge);
    tcase_add_test(t, shared_layer_two_inputs_two_outputs);
    tcase_add_test(t, recurrent_outputs_and_wrappers);
    tcase_add_test(t, shared_nested_model);
    tcase_add_test(t, custom_layer_with_state_and_if_training);
    tcase_add_test(t, blocks_inside_repeat);
    tcase_add_test(t, batchnorm_strides_same_padding);
    tcase_add_test(t, keras_shape_layers);
    tcase_add_test(t, setting_calls_in_layer_arguments);
    tcase_add_test(t, nested_model_frozen);
    tcase_add_test(t, tensor_functions_and_shapes);
    tcase_add_test(t, names_follow_keras);
    tcase_add_test(t, train_block_settings);
    tcase_add_test(t, train_block_toolbox);
    tcase_add_test(t, train_block_schedules);
    suite_add_tcase(s, t);
    TCase *e = tcase_create("mistakes");
    tcase_add_loop_test(e, mistakes_are_reported, 0, (int)(sizeof mistakes / sizeof mistakes[0]));
    tcase_add_test(e, unknown_model_name);
    suite_add_tcase(s, e);
    return tu_run_suite(s);
}
