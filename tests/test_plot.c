/* test_plot.c — kdslc plot: the model's DOT has exactly the boxes and edges
 * of its layer table (parsed back from the text), --show-shapes carries the
 * summary's shapes, SVG and PNG come out valid, a history's picture has one
 * polyline per series with one point per value, and every mistake is a
 * clear error that leaves no file. */
#include "testutil.h"

#include "plot.h"
#include "host/train.h"

#include <math.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- DOT, parsed back --------------------------------------------------------------------- */

typedef struct dot_graph {
    int nnodes, nedges, nclusters;
    char nodes[256][64], labels[256][256];
    char edges[512][140];   /* "from -> to" */
} dot_graph;

/* The node, edge and cluster lines plot.c writes: `"id" [label="..."];`, `"a" -> "b";`, `subgraph "cluster_x" {`. */
static void parse_dot(const char *text, dot_graph *g)
{
    memset(g, 0, sizeof *g);
    ck_assert_msg(!strncmp(text, "digraph \"", 9), "not a digraph:\n%s", text);
    for (const char *line = strchr(text, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
        const char *s = line + 1;
        while (*s == ' ') s++;
        char a[64], b[64], label[256];
        if (!strncmp(s, "subgraph \"cluster_", 18)) g->nclusters++;
        else if (sscanf(s, "\"%63[^\"]\" -> \"%63[^\"]\";", a, b) == 2) {
            ck_assert_int_lt(g->nedges, 512);
            snprintf(g->edges[g->nedges++], sizeof g->edges[0], "%s -> %s", a, b);
        } else if (sscanf(s, "\"%63[^\"]\" [label=\"%255[^\n]", a, label) == 2) {
            ck_assert_int_lt(g->nnodes, 256);
            snprintf(g->nodes[g->nnodes], sizeof g->nodes[0], "%s", a);
            char *end = strstr(label, "\"];");
            ck_assert_msg(end != NULL, "label not closed: %s", s);
            *end = 0;
            snprintf(g->labels[g->nnodes++], sizeof g->labels[0], "%s", label);
        }
    }
}

static int find_node(const dot_graph *g, const char *id)
{
    for (int i = 0; i < g->nnodes; i++)
        if (!strcmp(g->nodes[i], id)) return i;
    return -1;
}

/* g has exactly these nodes (id "label" pairs: "name: Type") and these edges, in any order. */
static void expect_graph(const dot_graph *g, const char *const *nodes, int nn, const char *const *edges, int ne)
{
    ck_assert_int_eq(g->nnodes, nn);
    for (int i = 0; i < nn; i++) {
        char id[64];
        snprintf(id, sizeof id, "%.*s", (int)strcspn(nodes[i], ":"), nodes[i]);
        int k = find_node(g, id);
        ck_assert_msg(k >= 0, "no node %s", id);
        ck_assert_str_eq(g->labels[k], nodes[i]);
    }
    ck_assert_int_eq(g->nedges, ne);
    for (int i = 0; i < ne; i++) {
        bool found = false;
        for (int k = 0; k < g->nedges; k++) found |= !strcmp(g->edges[k], edges[i]);
        ck_assert_msg(found, "no edge %s", edges[i]);
    }
}

static char *plot_dot(const char *dir, const char *src, const char *extra, dot_graph *g)
{
    const char *out = tu_path(dir, "m.dot");
    char *log;
    int rc = tu_kdslc_run(&log, "plot %s -o %s %s", src, out, extra);
    ck_assert_msg(rc == 0, "plot failed:\n%s", log);
    free(log);
    char *text = tu_read(out, NULL);
    ck_assert_ptr_nonnull(text);
    parse_dot(text, g);
    return text;
}

START_TEST(cnn_boxes_and_edges)
{
    const char *dir = tu_tmpdir("plot_cnn");
    dot_graph g;
    free(plot_dot(dir, tu_src("samples/cnn.kdsl"), "", &g));
    const char *nodes[] = {"image: InputLayer", "conv2d: Conv2D", "max_pooling2d: MaxPooling2D", "conv2d_1: Conv2D",
                           "max_pooling2d_1: MaxPooling2D", "conv2d_2: Conv2D", "flatten: Flatten", "dense: Dense",
                           "dense_1: Dense"};
    const char *edges[] = {"image -> conv2d", "conv2d -> max_pooling2d", "max_pooling2d -> conv2d_1",
                           "conv2d_1 -> max_pooling2d_1", "max_pooling2d_1 -> conv2d_2", "conv2d_2 -> flatten",
                           "flatten -> dense", "dense -> dense_1"};
    expect_graph(&g, nodes, 9, edges, 8);
    ck_assert_int_eq(g.nclusters, 0);
}
END_TEST

static const char residual[] = "model res {\n"
                               "    input x: [8]\n"
                               "    h = Dense(x, 8, activation: relu)\n"
                               "    y = Dense(h, 8)\n"
                               "    s = Add([x, y])\n"
                               "    output out = Dense(s, 2)\n"
                               "}\n";

/* The residual path is an edge from the input straight to Add. */
START_TEST(residual_add_is_an_edge)
{
    const char *dir = tu_tmpdir("plot_res");
    const char *src = tu_path(dir, "res.kdsl");
    ck_assert_int_eq(tu_write(src, residual, strlen(residual)), 0);
    dot_graph g;
    free(plot_dot(dir, src, "", &g));
    const char *nodes[] = {"x: InputLayer", "dense: Dense", "dense_1: Dense", "add: Add", "dense_2: Dense"};
    const char *edges[] = {"x -> dense", "dense -> dense_1", "x -> add", "dense_1 -> add", "add -> dense_2"};
    expect_graph(&g, nodes, 5, edges, 5);
}
END_TEST

/* A shared layer: one box, an edge from each tensor it was called on. A
 * nested model: a cluster of its own boxes, entered at its input, left from
 * its last layer. */
START_TEST(shared_and_nested)
{
    const char *dir = tu_tmpdir("plot_nest");
    static const char text[] = "model enc {\n    input a: [4]\n    Dense(3, activation: relu)\n    output z = Dense(2)\n}\n"
                               "model top {\n    input x: [4]\n    input w: [4]\n    shared d = Dense(4)\n"
                               "    p = d(x)\n    q = d(w)\n    s = Add([p, q])\n    e = enc(s)\n"
                               "    output y = Dense(e, 1)\n}\n";
    const char *src = tu_path(dir, "nest.kdsl");
    ck_assert_int_eq(tu_write(src, text, strlen(text)), 0);
    dot_graph g;
    free(plot_dot(dir, src, "--model top", &g));   /* the nested model found with --model too */
    ck_assert_int_eq(g.nclusters, 1);
    char *dot = plot_dot(dir, src, "", &g);
    ck_assert_int_eq(g.nclusters, 1);
    ck_assert_has(dot, "label=\"enc: Functional\"");
    const char *nodes[] = {"x: InputLayer", "w: InputLayer", "dense: Dense", "add: Add", "enc/a: InputLayer",
                           "enc/dense: Dense", "enc/dense_1: Dense", "dense_1: Dense"};
    const char *edges[] = {"x -> dense", "w -> dense", "dense -> add", "add -> enc/a", "enc/a -> enc/dense",
                           "enc/dense -> enc/dense_1", "enc/dense_1 -> dense_1"};
    /* the nested boxes are labelled with their own names */
    ck_assert_int_eq(g.nnodes, 8);
    for (int i = 0; i < 8; i++) {
        char id[64], label[64];
        snprintf(id, sizeof id, "%.*s", (int)strcspn(nodes[i], ":"), nodes[i]);
        const char *slash = strchr(nodes[i], '/');
        snprintf(label, sizeof label, "%s", slash ? slash + 1 : nodes[i]);
        int k = find_node(&g, id);
        ck_assert_msg(k >= 0, "no node %s:\n%s", id, dot);
        ck_assert_str_eq(g.labels[k], label);
    }
    ck_assert_int_eq(g.nedges, 7);
    for (int i = 0; i < 7; i++) {
        bool found = false;
        for (int k = 0; k < g.nedges; k++) found |= !strcmp(g.edges[k], edges[i]);
        ck_assert_msg(found, "no edge %s:\n%s", edges[i], dot);
    }
    free(dot);
}
END_TEST

/* Each box's output shape is the summary's Output Shape of its row. */
static const char blocks[] = "block conv_bn(x, filters) {\n"
                             "    Conv2D(x, filters, 3, padding: same)\n"
                             "    BatchNormalization()\n"
                             "    ReLU()\n"
                             "}\n"
                             "block residual(x) {\n"
                             "    h = conv_bn(x, 4)\n"
                             "    Add([x, h])\n"
                             "}\n"
                             "model m {\n"
                             "    input x: [8, 8, 4]\n"
                             "    conv_bn(4)\n"
                             "    repeat 2 { residual() }\n"
                             "    residual(name: last)\n"
                             "    Flatten()\n"
                             "    output y = Dense(2)\n"
                             "}\n";

/* Each node's clusters, outermost first ("residual: residual/conv_bn_1: conv_bn"), from the DOT's nesting. */
static void node_clusters(const char *text, const char *node, char *out, size_t n)
{
    char stack[8][96];
    int depth = 0;
    out[0] = 0;
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        while (*line == ' ') line++;
        char label[96], id[64];
        if (!strncmp(line, "subgraph ", 9)) {
            ck_assert_int_lt(depth, 8);
            stack[depth++][0] = 0;
        } else if (sscanf(line, "style=dashed; label=\"%95[^\"]\"", label) == 1 && depth > 0) {
            snprintf(stack[depth - 1], sizeof stack[0], "%s", label);
        } else if (line[0] == '}' && depth > 0) {
            depth--;
        } else if (sscanf(line, "\"%63[^\"]\" [label=", id) == 1 && !strcmp(id, node)) {
            for (int i = 0; i < depth; i++)
                snprintf(out + strlen(out), n - strlen(out), "%s%s", i ? "/" : "", stack[i]);
            return;
        }
    }
    ck_abort_msg("no node %s", node);
}

/* A block call is a dashed cluster of the boxes its layers made, labelled
 * with the call's name (the block's, numbered per model, or its name:
 * argument) and the block's; a block called in a block is a cluster inside
 * its caller's. The edges stay the layer table's. */
START_TEST(blocks_are_clusters)
{
    const char *dir = tu_tmpdir("plot_blocks");
    const char *src = tu_path(dir, "blocks.kdsl");
    ck_assert_int_eq(tu_write(src, blocks, strlen(blocks)), 0);
    dot_graph g;
    char *text = plot_dot(dir, src, "", &g);
    ck_assert_int_eq(g.nclusters, 7);   /* conv_bn; residual, residual_1, last, each with its conv_bn */
    char where[1024];
    struct { const char *node, *clusters; } want[] = {
        {"x", ""},
        {"conv2d", "conv_bn: conv_bn"},
        {"re_lu", "conv_bn: conv_bn"},
        {"conv2d_1", "residual: residual/conv_bn_1: conv_bn"},
        {"add", "residual: residual"},
        {"batch_normalization_2", "residual_1: residual/conv_bn_2: conv_bn"},
        {"add_1", "residual_1: residual"},
        {"last_conv2d", "last: residual/conv_bn_3: conv_bn"},
        {"last_add", "last: residual"},
        {"flatten", ""},
        {"dense", ""},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        node_clusters(text, want[i].node, where, sizeof where);
        ck_assert_msg(!strcmp(where, want[i].clusters), "%s is in \"%.200s\", not \"%s\"", want[i].node, where,
                      want[i].clusters);
    }
    int k = -1;
    for (int e = 0; e < g.nedges && k < 0; e++)
        if (!strcmp(g.edges[e], "re_lu -> add")) k = e;
    ck_assert_msg(k >= 0, "the residual edge into the first block's Add is missing");
    free(text);
}
END_TEST

/* A user layer is a cluster of its own box and the layers made inside it,
 * the last of which feeds the box (its output). */
START_TEST(custom_layers_are_clusters)
{
    static const char src_text[] = "layer Residual(units) {\n"
                                   "    input x: [n]\n"
                                   "    h = Dense(x, units, activation: relu)\n"
                                   "    weight scale: [n] = ones\n"
                                   "    output x + Dense(h, n) * scale\n"
                                   "}\n"
                                   "model r {\n"
                                   "    input x: [8]\n"
                                   "    h = Residual(x, 16)\n"
                                   "    output y = Dense(h, 2)\n"
                                   "}\n";
    const char *dir = tu_tmpdir("plot_layers");
    const char *src = tu_path(dir, "layers.kdsl");
    ck_assert_int_eq(tu_write(src, src_text, strlen(src_text)), 0);
    dot_graph g;
    char *text = plot_dot(dir, src, "", &g);
    ck_assert_int_eq(g.nclusters, 1);
    char where[1024];
    struct { const char *node, *clusters; } want[] = {
        {"x", ""}, {"residual", "residual: Residual"}, {"dense", "residual: Residual"},
        {"dense_1", "residual: Residual"}, {"dense_2", ""},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        node_clusters(text, want[i].node, where, sizeof where);
        ck_assert_msg(!strcmp(where, want[i].clusters), "%s is in \"%.200s\", not \"%s\"", want[i].node, where,
                      want[i].clusters);
    }
    const char *edges[] = {"x -> residual", "x -> dense", "dense -> dense_1", "dense_1 -> residual", "residual -> dense_2"};
    ck_assert_int_eq(g.nedges, 5);
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        bool found = false;
        for (int e = 0; e < g.nedges; e++) found |= !strcmp(g.edges[e], edges[i]);
        ck_assert_msg(found, "no edge %s", edges[i]);
    }
    free(text);
}
END_TEST

START_TEST(show_shapes_are_the_summarys)
{
    const char *dir = tu_tmpdir("plot_shapes");
    dot_graph g;
    free(plot_dot(dir, tu_src("samples/cnn.kdsl"), "--show-shapes", &g));
    char *summary;
    ck_assert_int_eq(tu_kdslc_run(&summary, "summary %s", tu_src("samples/cnn.kdsl")), 0);
    int rows = 0;
    for (char *line = strtok(summary, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64];
        const char *shape = strstr(line, "(None");
        if (!shape || sscanf(line, "%63s (", name) != 1) continue;
        int len = (int)(strchr(shape, ')') - shape) + 1;
        int k = find_node(&g, name);
        ck_assert_msg(k >= 0, "no box for summary row %s", name);
        char want[160];
        snprintf(want, sizeof want, "}|{%.*s}}", len, shape);
        const char *label = g.labels[k];
        ck_assert_msg(strlen(label) > strlen(want) && !strcmp(label + strlen(label) - strlen(want), want),
                      "%s: label %s, want output %s", name, label, want);
        rows++;
    }
    ck_assert_int_eq(rows, 8);
    free(summary);
    /* the input box and the first layer's input: the input's shape */
    ck_assert_str_eq(g.labels[find_node(&g, "image")],
                     "{image: InputLayer}|{input:|output:}|{{[(None, 28, 28, 1)]}|{[(None, 28, 28, 1)]}}");
    ck_assert_str_eq(g.labels[find_node(&g, "conv2d")],
                     "{conv2d: Conv2D}|{input:|output:}|{{(None, 28, 28, 1)}|{(None, 26, 26, 32)}}");
}
END_TEST

static const unsigned char png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

START_TEST(svg_and_png_are_valid)
{
    const char *dir = tu_tmpdir("plot_render");
    const char *svg = tu_path(dir, "m.svg"), *png = tu_path(dir, "m.png");
    ck_assert_int_eq(tu_kdslc_run(NULL, "plot %s -o %s --show-shapes", tu_src("samples/resnet50.kdsl"), svg), 0);
    ck_assert_int_eq(tu_kdslc_run(NULL, "plot %s -o %s", tu_src("samples/cnn.kdsl"), png), 0);
    size_t len;
    char *text = tu_read(svg, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_has(text, "<svg");
    ck_assert_has(text, "</svg>");
    ck_assert_has(text, "conv5_block1_0_conv: Conv2D");   /* a box inside the nested model's cluster */
    ck_assert_has(text, "resnet50: Functional");           /* the cluster's label */
    free(text);
    char *bytes = tu_read(png, &len);
    ck_assert_ptr_nonnull(bytes);
    ck_assert_uint_gt(len, 1000);
    ck_assert_int_eq(memcmp(bytes, png_signature, 8), 0);
    free(bytes);
    /* a layer name with the record label's syntax and DOT's quote in it is drawn as it is */
    static const char weird[] = "model weird {\n    input x: [4]\n    Dense(3, name: \"a{b|c}<d> \\\"q\\\"\")\n"
                                "    output y = Dense(2, name: \"last one\")\n}\n";
    const char *wsrc = tu_path(dir, "weird.kdsl"), *wsvg = tu_path(dir, "weird.svg");
    ck_assert_int_eq(tu_write(wsrc, weird, strlen(weird)), 0);
    ck_assert_int_eq(tu_kdslc_run(NULL, "plot %s -o %s --show-shapes", wsrc, wsvg), 0);
    text = tu_read(wsvg, NULL);
    ck_assert_ptr_nonnull(text);
    ck_assert_has(text, ">a{b|c}&lt;d&gt; ");
    ck_assert_has(text, ">last one: Dense</text>");
    free(text);
    /* the SVG renders: librsvg (Debian librsvg2-bin, tools/install-deps) turns it into a non-empty PNG */
    if (tu_run("command -v rsvg-convert >/dev/null", NULL) == 0) {
        char cmd[512];
        const char *out = tu_path(dir, "r.png");
        snprintf(cmd, sizeof cmd, "rsvg-convert -z 0.1 %s -o %s", svg, out);   /* small: fast */
        tu_sh(cmd);
        bytes = tu_read(out, &len);
        ck_assert_ptr_nonnull(bytes);
        ck_assert_uint_gt(len, 1000);
        ck_assert_int_eq(memcmp(bytes, png_signature, 8), 0);
        free(bytes);
    }
}
END_TEST

/* ---- histories ----------------------------------------------------------------------------- */

/* The polylines of an SVG: each one's data-name and number of points. */
static int polylines(const char *svg, char names[][64], int *points, int max)
{
    int n = 0;
    for (const char *p = strstr(svg, "<polyline"); p; p = strstr(p + 1, "<polyline")) {
        ck_assert_int_lt(n, max);
        const char *name = strstr(p, "data-name=\"");
        ck_assert_ptr_nonnull(name);
        name += 11;
        snprintf(names[n], 64, "%.*s", (int)strcspn(name, "\""), name);
        const char *pts = strstr(p, "points=\"");
        ck_assert_ptr_nonnull(pts);
        pts += 8;
        int count = 0;
        for (const char *q = pts; *q && *q != '"'; q++)
            if (*q == ',') count++;
        points[n++] = count;
    }
    return n;
}

static void expect_series(const char *svg, const char *const *names, const int *points, int n)
{
    char got[32][64];
    int pts[32];
    ck_assert_int_eq(polylines(svg, got, pts, 32), n);
    for (int i = 0; i < n; i++) {
        int k = -1;
        for (int j = 0; j < n; j++)
            if (!strcmp(got[j], names[i])) k = j;
        ck_assert_msg(k >= 0, "no polyline for %s", names[i]);
        ck_assert_int_eq(pts[k], points[i]);
    }
}

START_TEST(history_csv_and_json)
{
    const char *dir = tu_tmpdir("plot_history");
    /* as kdslc train writes it: an accuracy column with no values is left out */
    static const char csv[] = "epoch,loss,accuracy,auc,val_loss,val_accuracy,val_auc\n"
                              "1,0.9,,0.6,1.0,,0.55\n"
                              "2,0.6,,0.7,0.8,,\n"
                              "3,0.4,,0.8,0.7,,0.7\n"
                              "4,0.35,,0.82,0.72,,0.71\n";
    const char *h = tu_path(dir, "h.csv"), *out = tu_path(dir, "curves.svg");
    ck_assert_int_eq(tu_write(h, csv, strlen(csv)), 0);
    char *log;
    ck_assert_msg(tu_kdslc_run(&log, "plot --history %s -o %s", h, out) == 0, "%s", log);
    free(log);
    char *svg = tu_read(out, NULL);
    ck_assert_ptr_nonnull(svg);
    ck_assert_msg(!strncmp(svg, "<?xml", 5) && strstr(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\""), "not SVG");
    ck_assert_has(svg, "</svg>\n");
    const char *names[] = {"loss", "val_loss", "auc", "val_auc"};
    expect_series(svg, names, (const int[]){4, 4, 4, 3}, 4);
    ck_assert_int_eq((int)(strstr(svg, ">loss</text>") != NULL) + (int)(strstr(svg, ">auc</text>") != NULL), 2);
    ck_assert_lacks(svg, ">accuracy</text>");
    free(svg);

    /* Keras' history.history as JSON, nulls for missing values; no epoch key: 1, 2, ... */
    static const char json[] = "{\"loss\": [1.5, 1.0, 0.7], \"val_loss\": [1.6, null, 0.9],\n"
                               " \"mean_absolute_error\": [0.9, 0.8, 0.7], \"learning_rate\": [0.01, 0.01, 0.001]}\n";
    const char *hj = tu_path(dir, "h.json"), *outj = tu_path(dir, "h.svg");
    ck_assert_int_eq(tu_write(hj, json, strlen(json)), 0);
    ck_assert_int_eq(tu_kdslc_run(NULL, "plot --history %s -o %s", hj, outj), 0);
    svg = tu_read(outj, NULL);
    ck_assert_ptr_nonnull(svg);
    const char *jnames[] = {"loss", "val_loss", "mean_absolute_error", "learning_rate"};
    expect_series(svg, jnames, (const int[]){3, 2, 3, 3}, 4);
    free(svg);
    /* the default outputs: the model's name, the history's, with .svg, in the current directory */
    char mcmd[1024];
    snprintf(mcmd, sizeof mcmd, "cd %s && %s plot %s && head -c 300 cnn.svg | grep -q '<svg'", dir, tu_kdslc(),
             tu_src("samples/cnn.kdsl"));
    tu_sh(mcmd);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cd %s && %s plot --history h.json && test -s h.svg", dir, tu_kdslc());
    tu_sh(cmd);
}
END_TEST

/* kdslc train's own history writer and the plot agree: a history written by
 * runtime/host/history.c is read back with every series. */
START_TEST(history_from_the_writer)
{
    const char *dir = tu_tmpdir("plot_writer");
    kdh_history h = {0};
    const char *metrics[] = {"auc"};
    kdh_history_set_metrics(&h, 1, metrics);
    for (int e = 1; e <= 5; e++) {
        kdh_epoch_log r = kdh_epoch_log_empty(e);
        r.loss = 1.0 / e, r.accuracy = 0.5 + 0.05 * e, r.val_loss = 1.2 / e, r.val_accuracy = 0.45 + 0.05 * e;
        r.metrics[0] = 0.6 + 0.01 * e, r.val_metrics[0] = 0.55 + 0.01 * e;
        ck_assert_int_eq(kdh_history_add(&h, &r), 0);
    }
    for (int json = 0; json < 2; json++) {
        const char *path = tu_path(dir, json ? "w.json" : "w.csv");
        kdh_error err;
        ck_assert_msg(kdh_history_write(path, &h, &err) == 0, "%s", err.msg);
        size_t len;
        char *text = tu_read(path, &len);
        kd_history_table t;
        char msg[512];
        ck_assert_msg(kd_history_parse(path, text, len, &t, msg, sizeof msg) == 0, "%s", msg);
        ck_assert_int_eq(t.nrows, 5);
        ck_assert_int_eq(t.ncols, 6);
        ck_assert_str_eq(t.names[0], "loss");
        ck_assert_str_eq(t.names[5], "val_auc");
        ck_assert_double_eq(t.x[4], 5);
        ck_assert_double_eq_tol(t.values[4 * 6 + 0], 0.2, 1e-9);
        char *svg;
        size_t slen;
        FILE *f = open_memstream(&svg, &slen);
        kd_history_svg(f, &t, "w");
        fclose(f);
        const char *names[] = {"loss", "val_loss", "accuracy", "val_accuracy", "auc", "val_auc"};
        expect_series(svg, names, (const int[]){5, 5, 5, 5, 5, 5}, 6);
        free(svg);
        kd_history_table_free(&t);
        free(text);
    }
    kdh_history_free(&h);
}
END_TEST

/* ---- mistakes ------------------------------------------------------------------------------ */

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

START_TEST(errors_are_clear_and_leave_no_file)
{
    const char *dir = tu_tmpdir("plot_errors");
    const char *cnn = tu_src("samples/cnn.kdsl");
    char jpg[512], svg[512];
    snprintf(jpg, sizeof jpg, "%s", tu_path(dir, "m.jpg"));
    snprintf(svg, sizeof svg, "%s", tu_path(dir, "m.svg"));
    ck_assert_fails(2, "plot writes .svg, .png or .dot files", "plot %s -o %s", cnn, jpg);
    ck_assert(!exists(jpg));
    ck_assert_fails(1, "cannot read", "plot %s -o %s", tu_path(dir, "missing.kdsl"), svg);
    ck_assert_fails(1, "cannot write it: directory", "plot %s -o %s", cnn, tu_path(dir, "no/such/m.svg"));
    ck_assert_fails(1, "no model named 'cn'", "plot %s --model cn -o %s", cnn, svg);
    ck_assert_fails(1, "did you mean 'cnn'?", "plot %s --model cn -o %s", cnn, svg);
    ck_assert(!exists(svg));
    /* -o naming the input: nothing overwritten */
    const char *src = tu_path(dir, "m.dot");   /* a source may have any name */
    ck_assert_int_eq(tu_write(src, residual, strlen(residual)), 0);
    ck_assert_fails(2, "would overwrite the model source", "plot %s -o %s", src, src);
    char *still = tu_read(src, NULL);
    ck_assert_str_eq(still, residual);
    free(still);

    /* histories */
    char h[512], out[512];   /* tu_path's buffers rotate */
    snprintf(h, sizeof h, "%s", tu_path(dir, "h.csv"));
    snprintf(out, sizeof out, "%s", tu_path(dir, "h.svg"));
    ck_assert_fails(1, "cannot read", "plot --history %s -o %s", tu_path(dir, "none.csv"), out);
    static const struct {
        const char *name, *text, *words;
    } bad[] = {
        {"h.csv", "epoch,loss\n1,0.5\n2,abc\n", "h.csv:3:3: 'abc' in column 'loss' is not a number"},
        {"h.csv", "epoch,loss,val_loss\n1,0.5,0.6\n2,0.4\n", "h.csv:3: 2 cells, but the header has 3 columns"},
        {"h.csv", "epoch,loss\n1,0.5,7\n", "h.csv:2:7: more cells than the header's 2 columns"},
        {"h.csv", "epoch,lo ss\n1,0.5\n", "h.csv:1:7: 'lo ss' is not a column name"},
        {"h.csv", "epoch,loss\n2,0.5\n1,0.4\n", "the epochs do not rise"},
        {"h.csv", "epoch,loss\n1,inf\n", "'inf' in column 'loss' is not a number"},
        {"h.csv", "epoch,loss\n", "no epochs after the header"},
        {"h.csv", "epoch,loss,loss\n1,1,2\n", "h.csv:1:12: column 'loss' appears twice"},
        {"h.csv", "", "the file is empty"},
        {"h.json", "{\"loss\": [1, 2,\n  oops]}", "h.json:2:3: not valid JSON"},
        {"h.json", "{\"loss\": [1, 2], \"val_loss\": [1]}", "'val_loss' has 1 values, but the columns before it 2"},
        {"h.json", "{\"loss\": [1, \"x\"]}", "'loss'[1] is not a finite number"},
        {"h.json", "{\"loss\": 3}", "'loss' is not an array of numbers"},
        {"h.json", "[1, 2]", "a history is a JSON object of arrays"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *path = tu_path(dir, bad[i].name);
        ck_assert_int_eq(tu_write(path, bad[i].text, strlen(bad[i].text)), 0);
        ck_assert_fails(1, bad[i].words, "plot --history %s -o %s", path, out);
        ck_assert_msg(!exists(out), "case %zu left %s", i, out);
    }
    static const char good[] = "epoch,loss\n1,0.5\n2,0.4\n";
    ck_assert_int_eq(tu_write(h, good, strlen(good)), 0);
    ck_assert_fails(2, "plot --history writes an .svg file", "plot --history %s -o %s", h, tu_path(dir, "h.png"));
    const char *hsvg = tu_path(dir, "hist.svg");   /* a CSV history by any name */
    ck_assert_int_eq(tu_write(hsvg, good, strlen(good)), 0);
    ck_assert_fails(2, "would overwrite", "plot --history %s -o %s", hsvg, hsvg);
    still = tu_read(hsvg, NULL);
    ck_assert_str_eq(still, good);
    free(still);
    ck_assert_fails(2, "'plot --history' draws a history only", "plot %s --history %s -o %s", cnn, h, out);
    ck_assert_fails(2, "'plot --history' draws a history only", "plot --history %s --show-shapes -o %s", h, out);
    ck_assert_fails(2, "'plot' needs a model file", "plot -o %s", out);
    ck_assert(!exists(out));
    ck_assert(!exists(tu_path(dir, "h.png")));
    ck_assert(!exists(jpg) && !exists(svg));
}
END_TEST

/* Damaged histories, in process: every mutation of two good files is read
 * or refused with a message naming the file, and never crashes. */
START_TEST(hostile_histories)
{
    static const char *seeds[] = {
        "epoch,loss,accuracy,val_loss,val_accuracy\n1,0.9,0.5,1.0,0.4\n2,0.6,0.7,0.8,0.6\n3,0.4,0.8,0.7,0.65\n",
        "{\"epoch\": [1, 2, 3], \"loss\": [0.9, 0.6, 0.4], \"val_loss\": [1.0, null, 0.7]}\n",
        "epoch,loss,val_loss\n1,-1.7e308,1e-320\n1e17,1.7e308,1e-320\n1.00000000000000001e17,5,2e-320\n",
    };
    /* numbers at the ends of double's range, and a range too small for their precision: finite coordinates */
    static const char *extremes[] = {
        "epoch,loss,val_loss\n1,-1.7e308,1e-320\n2,1.7e308,1e-320\n3,5,2e-320\n",
        "epoch,loss\n1e17,1e17\n100000000000000016,100000000000000016\n",
        "epoch,loss\n1,0\n",
    };
    for (int i = 0; i < 3; i++) {
        kd_history_table t;
        char msg[512], *svg;
        size_t slen;
        ck_assert_msg(kd_history_parse("e.csv", extremes[i], strlen(extremes[i]), &t, msg, sizeof msg) == 0, "%s", msg);
        FILE *f = open_memstream(&svg, &slen);
        kd_history_svg(f, &t, "e");
        fclose(f);
        ck_assert_lacks(svg, "nan");
        ck_assert_lacks(svg, "inf");
        ck_assert_has(svg, "<polyline");
        free(svg);
        kd_history_table_free(&t);
    }
    unsigned seed = 12345;
    int read = 0, refused = 0;
    for (int s = 0; s < 3; s++)
        for (int iter = 0; iter < 3000; iter++) {
            char buf[256];
            size_t len = strlen(seeds[s]);
            memcpy(buf, seeds[s], len);
            int edits = 1 + iter % 4;
            for (int e = 0; e < edits && len > 0; e++) {
                seed = seed * 1103515245u + 12345u;
                size_t at = (seed >> 8) % len;
                seed = seed * 1103515245u + 12345u;
                int what = (seed >> 16) % 4;
                if (what == 0) buf[at] = (char)(seed >> 24);                          /* any byte */
                else if (what == 1) buf[at] = ",\n{}[]\":-.e0"[(seed >> 24) % 12];   /* structure */
                else if (what == 2 && len > 1) memmove(buf + at, buf + at + 1, len-- - at - 1);
                else len = at;                                                     /* truncated */
            }
            kd_history_table t;
            char msg[512];
            const char *path = s == 1 ? "m.json" : "m.csv";
            if (kd_history_parse(path, buf, len, &t, msg, sizeof msg) == 0) {
                ck_assert_int_gt(t.nrows, 0);
                ck_assert_int_gt(t.ncols, 0);
                for (int r = 0; r < t.nrows; r++) ck_assert(isfinite(t.x[r]));
                char *svg;
                size_t slen;
                FILE *f = open_memstream(&svg, &slen);
                kd_history_svg(f, &t, path);
                fclose(f);
                ck_assert_has(svg, "</svg>");
                free(svg);
                kd_history_table_free(&t);
                read++;
            } else {
                ck_assert_msg(!strncmp(msg, path, strlen(path)), "message does not name the file: %s", msg);
                refused++;
            }
        }
    ck_assert_int_gt(read, 100);
    ck_assert_int_gt(refused, 100);
}
END_TEST

static Suite *plot_suite(void)
{
    Suite *s = suite_create("plot");
    TCase *tc = tcase_create("plot");
    tcase_add_test(tc, cnn_boxes_and_edges);
    tcase_add_test(tc, residual_add_is_an_edge);
    tcase_add_test(tc, shared_and_nested);
    tcase_add_test(tc, blocks_are_clusters);
    tcase_add_test(tc, custom_layers_are_clusters);
    tcase_add_test(tc, show_shapes_are_the_summarys);
    tcase_add_test(tc, svg_and_png_are_valid);
    tcase_add_test(tc, history_csv_and_json);
    tcase_add_test(tc, history_from_the_writer);
    tcase_add_test(tc, errors_are_clear_and_leave_no_file);
    tcase_add_test(tc, hostile_histories);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(plot_suite()); }
