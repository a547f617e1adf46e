/* plot.h — kdslc plot: pictures of a model and of a training history.
 *
 *   kdslc plot FILE [--model NAME] [-o model.svg|model.png|model.dot] [--show-shapes]
 *   kdslc plot --history H.csv|H.json [-o curves.svg]
 *
 * A model is drawn as keras.utils.plot_model draws it: one box per layer
 * ("name: Type", with --show-shapes its input and output shapes), an edge
 * from each layer to each layer it feeds, the inputs as InputLayer boxes, a
 * nested model as a cluster of its own layers. plot.c writes the DOT text
 * and renders it with Graphviz's library (SVG, PNG); a .dot output needs no
 * Graphviz. A history (what `kdslc train --history` writes, or any CSV or
 * JSON of per-epoch columns) is drawn by plot_history.c as an SVG of line
 * charts, one panel per metric, training and validation (val_) together. */
#ifndef KDSL_PLOT_H
#define KDSL_PLOT_H

#include "model.h"

#include <stdbool.h>
#include <stdio.h>

typedef struct kd_plot_options {
    const char *file, *model;   /* the program and its model (NULL: the last) */
    const char *history;        /* --history: draw this history instead */
    const char *output;         /* -o (NULL: MODEL.svg, or the history's name with .svg) */
    bool show_shapes;
} kd_plot_options;

/* The command; the exit status (0, 1 bad input, 2 usage) after reporting. */
int kd_run_plot(const kd_plot_options *o);

/* plot.c: model m of program p as DOT text on out. Node ids are the layer
 * names (a nested model's layers as "outer/inner"). */
void kd_plot_dot(FILE *out, const kd_program *p, const kd_model *m, bool show_shapes);

/* plot_history.c: a history as columns: names[0] the x axis ("epoch", or
 * NULL when the file has none: 1, 2, ...), then each series; values row by
 * row, NAN where a value is missing. */
#define KD_HISTORY_MAX_COLUMNS 256
#define KD_HISTORY_MAX_ROWS 1000000
#define KD_HISTORY_MAX_BYTES ((size_t)64 << 20)
#define KD_HISTORY_MAX_CELLS ((size_t)16 << 20)   /* rows times columns: 128 MiB of doubles */
typedef struct kd_history_table {
    int ncols, nrows;             /* columns besides x */
    char *names[KD_HISTORY_MAX_COLUMNS];
    double *x;                    /* nrows */
    double *values;               /* nrows * ncols, row-major */
} kd_history_table;

/* Reads a CSV (a header, then one row per epoch) or JSON (an object of
 * arrays) history from text, as file `path` (for messages): 0, or -1 with a
 * message naming path and where in it (line and column) in err. */
int kd_history_parse(const char *path, const char *text, size_t len, kd_history_table *t, char *err, size_t nerr);
void kd_history_table_free(kd_history_table *t);

/* The SVG picture of t on out: one panel per metric. */
void kd_history_svg(FILE *out, const kd_history_table *t, const char *title);

#endif
