/* losses.h — the losses kdsl knows, one row each: the compiler's train
 * block and --loss read their names from here (compiler/model.h), the host
 * computes them for evaluate and validation (train.c). */
#ifndef KDSL_LOSSES_H
#define KDSL_LOSSES_H

/* The losses, one row each: kind, Keras' class name, its string spelling,
 * another alias (or NULL), and what it takes: KDH_LOSS_TAKES_LOGITS (from_logits),
 * KDH_LOSS_TAKES_SMOOTHING (label_smoothing), KDH_LOSS_TAKES_DELTA (Huber's delta),
 * KDH_LOSS_TAKES_AXIS (axis: -1 only), KDH_LOSS_ONEHOT (the labels are one-hot
 * classes: integer labels in the data are expanded). The row's formula is
 * kd_loss (compiler/train_graph.c, the graph the compiler differentiates)
 * and sample_loss (train.c, evaluate and validation, in double precision). */
#define KDH_LOSS_TAKES_LOGITS 1
#define KDH_LOSS_TAKES_SMOOTHING 2
#define KDH_LOSS_TAKES_DELTA 4
#define KDH_LOSS_TAKES_AXIS 8
#define KDH_LOSS_ONEHOT 16
#define KDH_LOSS_LIST(X) \
    X(CATEGORICAL_XENT, "CategoricalCrossentropy", "categorical_crossentropy", NULL, \
      KDH_LOSS_TAKES_LOGITS | KDH_LOSS_TAKES_SMOOTHING | KDH_LOSS_ONEHOT) \
    X(SPARSE_CATEGORICAL_XENT, "SparseCategoricalCrossentropy", "sparse_categorical_crossentropy", NULL, \
      KDH_LOSS_TAKES_LOGITS | KDH_LOSS_ONEHOT) \
    X(BINARY_XENT, "BinaryCrossentropy", "binary_crossentropy", "bce", KDH_LOSS_TAKES_LOGITS | KDH_LOSS_TAKES_SMOOTHING) \
    X(MSE, "MeanSquaredError", "mean_squared_error", "mse", 0) \
    X(MAE, "MeanAbsoluteError", "mean_absolute_error", "mae", 0) \
    X(HUBER, "Huber", "huber", NULL, KDH_LOSS_TAKES_DELTA) \
    X(LOG_COSH, "LogCosh", "log_cosh", NULL, 0) \
    X(KLD, "KLDivergence", "kl_divergence", "kld", 0) \
    X(MSLE, "MeanSquaredLogarithmicError", "mean_squared_logarithmic_error", "msle", 0) \
    X(HINGE, "Hinge", "hinge", NULL, 0) \
    X(CATEGORICAL_HINGE, "CategoricalHinge", "categorical_hinge", NULL, KDH_LOSS_ONEHOT) \
    X(POISSON, "Poisson", "poisson", NULL, 0) \
    X(COSINE_SIMILARITY, "CosineSimilarity", "cosine_similarity", NULL, KDH_LOSS_TAKES_AXIS)

#define KDH_LOSS_ENUM(K, ...) KDH_LOSS_##K,
typedef enum kdh_loss_kind { KDH_LOSS_LIST(KDH_LOSS_ENUM) KDH_LOSS_COUNT } kdh_loss_kind;
#undef KDH_LOSS_ENUM

#endif
