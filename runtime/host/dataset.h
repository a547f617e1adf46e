/* dataset.h — data sets for fit / evaluate / predict: where they come from
 * (the built-in Fashion-MNIST, a directory of IDX files, X.npy,Y.npy, a CSV
 * file), and how they are made to fit a model: samples reshaped to the
 * model's input (element counts must match), pixels scaled, labels turned
 * one-hot for the categorical losses, everything checked finite.
 *
 * Data sources (`--data SPEC`):
 *   fashion-mnist    the Debian package's IDX files in /usr/share/datasets/fashion-mnist
 *                    (KDSL_FASHION_MNIST_DIR overrides the directory); split
 *                    "train" for fitting, "t10k" for validation and evaluate
 *   DIR              a directory with MNIST's file names, gzip'd or not:
 *                    train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
 *                    t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]
 *   X.npy,Y.npy      NumPy arrays: X [n, ...] any numeric dtype; Y integer
 *                    class labels [n] (or [n, 1]), one-hot [n, classes], or
 *                    the targets of a regression [n, ...]
 *   FILE.csv         numbers, one sample a row, an optional header row; the
 *                    last column is the label (class index or target); when
 *                    the model's output has k > 1 values and the loss is not
 *                    categorical, the last k columns are the targets
 *   X.csv,Y.csv      features and labels in two CSV files
 *
 * Scaling (--normalize): auto (the default) divides uint8 data by 255 and
 * leaves other dtypes as they are; 255 divides any data by 255; none never
 * scales. */
#ifndef KDSL_DATASET_H
#define KDSL_DATASET_H

#include "tensor_file.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum kdh_normalize { KDH_NORM_AUTO, KDH_NORM_NONE, KDH_NORM_255 } kdh_normalize;

/* What the labels must become. */
typedef enum kdh_label_kind {
    KDH_LABELS_ONEHOT,     /* categorical losses: one-hot [n, classes], class indices kept */
    KDH_LABELS_TARGETS,    /* MSE, binary cross-entropy: as given, label_elems per sample */
    KDH_LABELS_NONE,       /* predict: inputs only */
} kdh_label_kind;

/* What the model expects of a data set. */
typedef struct kdh_data_want {
    const char *model;                 /* names in messages */
    const char *input_name;
    int input_rank;
    int64_t input_shape[KDH_MAX_RANK];
    int64_t input_elems;
    kdh_label_kind labels;
    int64_t label_elems;               /* ONEHOT: the class count */
    const char *output_name;           /* messages (kdh_data_load_parts) */
    kdh_normalize normalize;
    /* An i32 input (`input tokens: i32[...]`): every value must be a whole
     * number in [0, input_rows) (input_rows 0: [0, 2^31)), the table size of
     * the Embedding input_rows_layer that reads it; never scaled. */
    bool input_i32;
    int64_t input_rows;
    const char *input_rows_layer;
} kdh_data_want;

typedef struct kdh_dataset {
    char name[512];                    /* "fashion-mnist (train)", "x.npy": for messages */
    int64_t n;
    int64_t x_elems, y_elems;          /* per sample; y_elems 0 without labels */
    float *x;                          /* n * x_elems; for an i32 input, int32_t token ids stored
                                        * bit for bit (same size: the batches copy bytes) */
    float *y;                          /* n * y_elems, or NULL */
    int32_t *cls;                      /* ONEHOT: the class of each sample, else NULL */
} kdh_dataset;

/* The directory of the built-in Fashion-MNIST. */
const char *kdh_fashion_mnist_dir(void);

/* Whether `spec` (NULL: fashion-mnist) has a test split (t10k) of its own. */
bool kdh_data_has_test_split(const char *spec);

/* Loads split "train" or "test" of spec (NULL: fashion-mnist); sources
 * without splits (npy, CSV) have only "train". 0, or -1 with err naming the
 * file and the problem. */
int kdh_data_load(const char *spec, const char *split, const kdh_data_want *w, kdh_dataset *out, kdh_error *err);

/* Inputs only (predict): X.npy or a CSV file of inputs. */
int kdh_inputs_load(const char *path, const kdh_data_want *w, kdh_dataset *out, kdh_error *err);

/* ---- several inputs or outputs (evaluate, predict) ---------------------------------------- *
 *
 * A model of several inputs or outputs takes its data as an array of data
 * sets, one per input or output, whichever are more (`nparts`): part i's x
 * is input i (i < ninputs), its y and cls the labels of output i (i <
 * nlabels); every part has the same n. w[i] says what input i and the
 * labels of output i must be (input_elems 0 past the inputs, labels
 * KDH_LABELS_NONE past the outputs).
 *
 * `spec` is a comma-separated list of .npy or .csv files, one per input in
 * the order of the model's `input` statements, then one per output's labels
 * (none for predict) — or one CSV file whose columns are input 0's values,
 * input 1's, ..., then each output's label columns (one class index for a
 * categorical output, its values for targets). A wrong count of files or
 * columns, or files of different sample counts, is an error naming them. */
#define KDH_MAX_PARTS 16

int kdh_data_load_parts(const char *spec, const kdh_data_want *w, int nparts, int ninputs, int nlabels,
                        kdh_dataset *parts, kdh_error *err);
void kdh_data_free_parts(kdh_dataset *parts, int nparts);

/* Keras' validation_split: moves the last `fraction` of d (before any
 * shuffling) into val. Both keep at least one sample, else an error. */
int kdh_data_split(kdh_dataset *d, double fraction, kdh_dataset *val, kdh_error *err);

void kdh_dataset_free(kdh_dataset *d);

/* Makes a data set from tensors already in memory (X [n, ...], Y or NULL);
 * what kdh_data_load does after reading the files. `xname`, `yname` name the
 * sources in messages. */
int kdh_dataset_from_tensors(const kdh_tensor *x, const char *xname, const kdh_tensor *y, const char *yname,
                             const kdh_data_want *w, kdh_dataset *out, kdh_error *err);

#endif
