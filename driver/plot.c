/* plot.c — kdslc plot (plot.h): a model as keras.utils.plot_model draws it,
 * written as DOT and rendered with Graphviz's library; the command itself,
 * for a model or a history (plot_history.c).
 *
 * The picture comes from the summary's layer table (compiler/model.h
 * kd_layer): each row's `inbound` holds the producer tags ("conv2d[0][0]")
 * of the tensors it read, every call of a shared layer included, so an edge
 * runs from each producer's box to the row's box; residual and shared paths
 * are those edges. A row of type Functional whose name is a model of the
 * program is drawn as a cluster of that model's own boxes, the edges into
 * it going to its inputs and those out of it leaving from its last layers. */
#include "plot.h"

#include "driver.h"
#include "host/paths.h"

#include <errno.h>
#include <graphviz/gvc.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_NESTING 8

typedef struct dot_ctx {
    FILE *out;
    const kd_program *p;
    bool shapes;
    kd_arena *a;
} dot_ctx;

/* A DOT quoted string's body: " and \ escaped. */
static void put_quoted(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

/* Text inside a record label (in a DOT quoted string): the field syntax
 * ({ } | < >), quotes and backslashes escaped. */
static void put_record_text(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s && strchr("{}|<>\"\\", *s)) fputc('\\', out);
        fputc(*s, out);
    }
}

/* The layer name of a producer tag "name[k][0]". */
static const char *tag_layer(kd_arena *a, const char *tag)
{
    return kd_format(a, "%.*s", (int)strcspn(tag, "["), tag);
}

static const kd_layer *find_row(const kd_model *m, const char *name)
{
    for (int i = 0; i < m->layers.len; i++) {
        const kd_layer *l = m->layers.items[i];
        if (!strcmp(l->name, name)) return l;
    }
    return NULL;
}

static int find_input(const kd_model *m, const char *name)
{
    for (int i = 0; i < m->ninputs; i++)
        if (!strcmp(m->input_names[i], name)) return i;
    return -1;
}

/* The model drawn inside row l, if l is a nested model of the program. */
static const kd_model *nested(const dot_ctx *c, const kd_model *outer, const kd_layer *l, int depth)
{
    if (strcmp(l->type, "Functional") != 0 || depth >= MAX_NESTING) return NULL;
    for (int i = 0; i < c->p->models.len; i++) {
        const kd_model *m = c->p->models.items[i];
        if (m != outer && !strcmp(m->name, l->name) && m->layers.len > 0) return m;
    }
    return NULL;
}

/* A producer's output shape, as the summary prints it (an input's without the InputLayer's list). */
static const char *shape_of(const kd_model *m, const char *name, char *buf, size_t n)
{
    const kd_layer *l = find_row(m, name);
    if (l) return l->multiple_shapes ? "multiple" : ir_shape_keras(&l->out_shape, buf, n);
    int i = find_input(m, name);
    return i >= 0 ? ir_shape_keras(&m->input_shapes[i], buf, n) : "?";
}

/* A row's inputs as the first call read them: "(None, 8)", or "[(None, 8), (None, 8)]" for several. */
static const char *input_shapes(const dot_ctx *c, const kd_model *m, const kd_layer *l)
{
    if (l->multiple_shapes) return "multiple";
    int per_call = l->ncalls > 1 && l->inbound.len % l->ncalls == 0 ? l->inbound.len / l->ncalls : l->inbound.len;
    if (per_call == 0) return "[]";
    const char *s = "";
    for (int k = 0; k < per_call; k++) {
        char buf[160];
        s = kd_format(c->a, "%s%s%s", s, k ? ", " : "", shape_of(m, tag_layer(c->a, l->inbound.items[k]), buf, sizeof buf));
    }
    return per_call > 1 ? kd_format(c->a, "[%s]", s) : s;
}

static void put_node(const dot_ctx *c, const char *id, const char *name, const char *type, const char *in,
                     const char *out_shape, const char *indent)
{
    fprintf(c->out, "%s", indent);
    put_quoted(c->out, id);
    fputs(" [label=\"", c->out);
    if (c->shapes) {
        fputs("{", c->out);
        put_record_text(c->out, kd_format(c->a, "%s: %s", name, type));
        fputs("}|{input:|output:}|{{", c->out);
        put_record_text(c->out, in);
        fputs("}|{", c->out);
        put_record_text(c->out, out_shape);
        fputs("}}", c->out);
    } else {
        put_record_text(c->out, kd_format(c->a, "%s: %s", name, type));
    }
    fputs("\"];\n", c->out);
}

/* Is row `name` read by no other row of m (one of m's last layers)? */
static bool is_sink(const dot_ctx *c, const kd_model *m, const char *name)
{
    for (int i = 0; i < m->layers.len; i++) {
        const kd_layer *l = m->layers.items[i];
        for (int k = 0; k < l->inbound.len; k++)
            if (!strcmp(tag_layer(c->a, l->inbound.items[k]), name)) return false;
    }
    return true;
}

/* The DOT ids a tensor of producer `name` (in m, ids under prefix) leaves
 * from: the box, or a nested model's last boxes. */
static void sources(const dot_ctx *c, const kd_model *m, const char *prefix, const char *name, int depth,
                    kd_vec *ids)
{
    const kd_layer *l = find_row(m, name);
    const kd_model *inner = l ? nested(c, m, l, depth) : NULL;
    if (!inner) {
        if (l || find_input(m, name) >= 0) kd_vec_push(c->a, ids, kd_format(c->a, "%s%s", prefix, name));
        return;
    }
    const char *p = kd_format(c->a, "%s%s/", prefix, name);
    for (int i = 0; i < inner->layers.len; i++) {
        const kd_layer *r = inner->layers.items[i];
        if (is_sink(c, inner, r->name)) sources(c, inner, p, r->name, depth + 1, ids);
    }
}

/* The DOT ids input k of row l (in m, under prefix) arrives at: the box, or
 * a nested model's input box k (every input box when the counts differ). */
static void targets(const dot_ctx *c, const kd_model *m, const char *prefix, const kd_layer *l, int k, int depth,
                    kd_vec *ids)
{
    const kd_model *inner = nested(c, m, l, depth);
    if (!inner) {
        kd_vec_push(c->a, ids, kd_format(c->a, "%s%s", prefix, l->name));
        return;
    }
    const char *p = kd_format(c->a, "%s%s/", prefix, l->name);
    int per_call = l->ncalls > 1 && l->inbound.len % l->ncalls == 0 ? l->inbound.len / l->ncalls : l->inbound.len;
    for (int i = 0; i < inner->ninputs; i++)
        if (per_call != inner->ninputs || k % per_call == i)
            kd_vec_push(c->a, ids, kd_format(c->a, "%s%s", p, inner->input_names[i]));
}

/* The block-call clusters open while m's boxes are written, outermost
 * first. */
typedef struct block_clusters {
    const kd_block_call *open[MAX_NESTING * 4];
    int nopen;
} block_clusters;

/* Closes and opens clusters so that exactly l's block calls are open (the
 * outermost MAX_NESTING * 4 of them): a block call is a dashed cluster
 * labelled `conv_bn_5: conv_bn`, as Keras labels a nested model, holding
 * the boxes its layers made. */
static void enter_blocks(const dot_ctx *c, block_clusters *b, const kd_layer *l, const char *prefix, int depth)
{
    enum { MAX_OPEN = MAX_NESTING * 4 };
    const kd_block_call *chain[MAX_OPEN];
    int want = 0, all = 0;
    for (const kd_block_call *k = l ? l->block_call : NULL; k; k = k->up) all++;
    for (const kd_block_call *k = l ? l->block_call : NULL; k; k = k->up, all--)
        if (all <= MAX_OPEN) chain[all - 1] = k, want = want > all ? want : all;
    int keep = 0;
    while (keep < b->nopen && keep < want && b->open[keep] == chain[keep]) keep++;
    for (; b->nopen > keep; b->nopen--) fprintf(c->out, "%*s}\n", 2 * (depth + b->nopen), "");
    for (; b->nopen < want; b->nopen++) {
        const kd_block_call *k = chain[b->nopen];
        const char *indent = kd_format(c->a, "%*s", 2 * (depth + b->nopen + 1), "");
        fprintf(c->out, "%ssubgraph ", indent);
        const char *id = "";
        for (int i = 0; i <= b->nopen; i++) id = kd_format(c->a, "%s/%s", id, chain[i]->name);
        put_quoted(c->out, kd_format(c->a, "cluster_%sblock%s", prefix, id));
        fprintf(c->out, " {\n%s  style=dashed; label=", indent);
        put_quoted(c->out, kd_format(c->a, "%s: %s", k->name, k->block));
        fputs(";\n", c->out);
        b->open[b->nopen] = k;
    }
}

/* Whether some layer of m reads layer `name`'s output ("name[0][0]"). */
static bool read_by_any(const kd_model *m, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < m->layers.len; i++) {
        const kd_layer *l = m->layers.items[i];
        for (int k = 0; k < l->inbound.len; k++) {
            const char *in = l->inbound.items[k];
            if (!strncmp(in, name, n) && in[n] == '[') return true;
        }
    }
    return false;
}

/* The boxes of m (a nested model inside a cluster), then its edges. */
static void put_model(const dot_ctx *c, const kd_model *m, const char *prefix, int depth)
{
    const char *indent = kd_format(c->a, "%*s", 2 * (depth + 1), "");
    block_clusters blocks = {{0}, 0};
    for (int i = 0; i < m->ninputs; i++) {
        char s[128];
        const char *shape = kd_format(c->a, "[%s]", ir_shape_keras(&m->input_shapes[i], s, sizeof s));
        put_node(c, kd_format(c->a, "%s%s", prefix, m->input_names[i]), m->input_names[i], "InputLayer", shape, shape,
                 indent);
    }
    for (int i = 0; i < m->layers.len; i++) {
        const kd_layer *l = m->layers.items[i];
        const kd_model *inner = nested(c, m, l, depth);
        enter_blocks(c, &blocks, l, prefix, depth);
        indent = kd_format(c->a, "%*s", 2 * (depth + blocks.nopen + 1), "");
        if (inner) {
            const char *p = kd_format(c->a, "%s%s/", prefix, l->name);
            fprintf(c->out, "%ssubgraph ", indent);
            put_quoted(c->out, kd_format(c->a, "cluster_%s%s", prefix, l->name));
            fprintf(c->out, " {\n%s  label=", indent);
            put_quoted(c->out, kd_format(c->a, "%s: %s", l->name, l->type));
            fputs(";\n", c->out);
            put_model(c, inner, p, depth + 1);
            fprintf(c->out, "%s}\n", indent);
            continue;
        }
        char s[160];
        const char *out = l->multiple_shapes ? "multiple" : ir_shape_keras(&l->out_shape, s, sizeof s);
        put_node(c, kd_format(c->a, "%s%s", prefix, l->name), l->name, l->type, input_shapes(c, m, l), out, indent);
    }
    enter_blocks(c, &blocks, NULL, prefix, depth);
    indent = kd_format(c->a, "%*s", 2 * (depth + 1), "");
    /* edges, each once: a layer that reads one tensor twice (Add([x, x])) has one */
    for (int i = 0; i < m->layers.len; i++) {
        const kd_layer *l = m->layers.items[i];
        kd_vec done = {0};
        for (int k = 0; k < l->inbound.len; k++) {
            kd_vec from = {0}, to = {0};
            sources(c, m, prefix, tag_layer(c->a, l->inbound.items[k]), depth, &from);
            targets(c, m, prefix, l, k, depth, &to);
            for (int f = 0; f < from.len; f++)
                for (int t = 0; t < to.len; t++) {
                    const char *key = kd_format(c->a, "%s\n%s", (char *)from.items[f], (char *)to.items[t]);
                    bool seen = false;
                    for (int d = 0; d < done.len && !seen; d++) seen = !strcmp(done.items[d], key);
                    if (seen) continue;
                    kd_vec_push(c->a, &done, (void *)key);
                    fputs(indent, c->out);
                    put_quoted(c->out, from.items[f]);
                    fputs(" -> ", c->out);
                    put_quoted(c->out, to.items[t]);
                    fputs(";\n", c->out);
                }
        }
    }
    /* Inside a user layer's cluster, a layer whose output nothing else reads
     * feeds the layer's own output: an edge to its box. */
    for (int i = 0; i < m->layers.len; i++) {
        const kd_layer *l = m->layers.items[i], *owner = NULL;
        for (int j = 0; l->block_call && j < m->layers.len && !owner; j++) {
            const kd_layer *o = m->layers.items[j];
            if (o != l && o->block_call == l->block_call && !strcmp(o->name, l->block_call->name)) owner = o;
        }
        if (!owner || read_by_any(m, l->name)) continue;
        fputs(indent, c->out);
        put_quoted(c->out, kd_format(c->a, "%s%s", prefix, l->name));
        fputs(" -> ", c->out);
        put_quoted(c->out, kd_format(c->a, "%s%s", prefix, owner->name));
        fputs(";\n", c->out);
    }
}

void kd_plot_dot(FILE *out, const kd_program *p, const kd_model *m, bool show_shapes)
{
    kd_arena a = {0};
    dot_ctx c = {out, p, show_shapes, &a};
    fputs("digraph ", out);
    put_quoted(out, m->name);
    fputs(" {\n  graph [rankdir=TB, dpi=96, fontname=\"Helvetica\"];\n"
          "  node [shape=record, fontname=\"Helvetica\", fontsize=11];\n"
          "  edge [arrowsize=0.7];\n",
          out);
    put_model(&c, m, "", 0);
    fputs("}\n", out);
    kd_arena_free(&a);
}

/* ---- the command ------------------------------------------------------------------------- */

typedef enum plot_format { FMT_BAD, FMT_SVG, FMT_PNG, FMT_DOT } plot_format;

static plot_format format_of(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (!dot || strchr(dot, '/')) return FMT_BAD;
    if (!strcasecmp(dot, ".svg")) return FMT_SVG;
    if (!strcasecmp(dot, ".png")) return FMT_PNG;
    if (!strcasecmp(dot, ".dot") || !strcasecmp(dot, ".gv")) return FMT_DOT;
    return FMT_BAD;
}

/* PATH's name without its directory and extension, with `ext`. */
static const char *beside(kd_arena *a, const char *path, const char *ext)
{
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    char *s = kd_format(a, "%s", base), *dot = strrchr(s, '.');
    if (dot && dot != s) *dot = 0;
    return kd_format(a, "%s%s", s, ext);
}

static int check_paths(const char *input, const char *what, const char *output)
{
    kdh_path_use uses[] = {
        {strcmp(input, "-") ? input : NULL, what, false, 0},
        {output, "-o", true, 0},
    };
    kdh_error err;
    int rc = kdh_check_paths(uses, 2, &err);
    if (rc) fprintf(stderr, "kdslc: error: %s%s\n", err.msg, rc == 2 ? "\n(run 'kdslc --help' for usage)" : "");
    return rc;
}

typedef struct text_out {
    const char *text;
    size_t len;
    const char *path;
} text_out;

static int write_text(FILE *f, void *ctx, kdh_error *err)
{
    text_out *t = ctx;
    return kdh_fwrite_all(f, t->text, t->len, t->path, err);
}

typedef struct render_out {
    GVC_t *gvc;
    Agraph_t *g;
    const char *format, *path;
} render_out;

static int write_render(FILE *f, void *ctx, kdh_error *err)
{
    render_out *r = ctx;
    if (gvRender(r->gvc, r->g, r->format, f) != 0) {
        snprintf(err->msg, sizeof err->msg, "%s: Graphviz cannot render %s here (is its plugin installed?)", r->path,
                 r->format);
        return -1;
    }
    return 0;
}

/* Text to path, atomically: 0, or 1 after saying why not. */
static int write_text_file(const char *path, const char *text, size_t len)
{
    kdh_error err;
    text_out t = {text, len, path};
    if (kdh_atomic_write(path, write_text, &t, &err) == 0) return 0;
    fprintf(stderr, "kdslc: error: %s\n", err.msg);
    return 1;
}

/* DOT text to path: as it is, or laid out by dot and rendered. */
static int write_picture(const char *path, plot_format fmt, const char *dot, size_t len)
{
    if (fmt == FMT_DOT) return write_text_file(path, dot, len);
    kdh_error err;
    int rc = 0;
    agseterr(AGMAX);   /* Graphviz's warnings are not ours to print */
    GVC_t *gvc = gvContext();
    Agraph_t *g = gvc ? agmemread(dot) : NULL;
    if (!g || gvLayout(gvc, g, "dot") != 0) {
        snprintf(err.msg, sizeof err.msg, "%s: Graphviz could not lay the model out", path);
        rc = -1;
    } else {
        render_out r = {gvc, g, fmt == FMT_PNG ? "png" : "svg", path};
        rc = kdh_atomic_write(path, write_render, &r, &err);
        gvFreeLayout(gvc, g);
    }
    if (g) agclose(g);
    if (gvc) gvFreeContext(gvc);
    if (rc) fprintf(stderr, "kdslc: error: %s\n", err.msg);
    return rc ? 1 : 0;
}

static bool has_functional_rows(const kd_model *m)
{
    for (int i = 0; i < m->layers.len; i++)
        if (!strcmp(((const kd_layer *)m->layers.items[i])->type, "Functional")) return true;
    return false;
}

static int plot_model(const kd_plot_options *o)
{
    kd_arena a = {0};
    const char *out = o->output;
    int rc = 0;
    kd_session s = {0}, all = {0};
    char *dot = NULL;
    size_t len = 0;
    if (out && format_of(out) == FMT_BAD) {
        fprintf(stderr, "kdslc: error: -o %s: plot writes .svg, .png or .dot files\n(run 'kdslc --help' for usage)\n", out);
        rc = 2;
    } else if ((rc = kd_front_end(&s, o->file, o->model)) == 0) {
        const kd_program *p = s.program;
        const kd_model *m = s.model;
        /* --model checks that model alone; a nested one is drawn from its
         * own table, so check them all then (quietly: if another model of
         * the file has errors, the nested model is drawn as one box) */
        FILE *quiet = o->model && has_functional_rows(m) && strcmp(o->file, "-") ? fopen("/dev/null", "w") : NULL;
        if (quiet) {
            all.diags.out = quiet;
            if (kd_front_end(&all, o->file, NULL) == 0 && kd_find_model(all.program, o->model)) {
                p = all.program;
                m = kd_find_model(all.program, o->model);
            }
            fclose(quiet);
        }
        if (!out) out = kd_format(&a, "%s.svg", m->name);
        if ((rc = check_paths(o->file, "the model source", out)) == 0) {
            FILE *f = open_memstream(&dot, &len);
            if (!f) {
                fprintf(stderr, "kdslc: error: out of memory\n");
                rc = 1;
            } else {
                kd_plot_dot(f, p, m, o->show_shapes);
                fclose(f);
                rc = write_picture(out, format_of(out), dot, len);
            }
        }
    }
    free(dot);
    kd_session_free(&all);
    kd_session_free(&s);
    kd_arena_free(&a);
    return rc;
}

static int plot_history(const kd_plot_options *o)
{
    kd_arena a = {0};
    const char *out = o->output ? o->output : beside(&a, o->history, ".svg");
    int rc = 0;
    if (format_of(out) != FMT_SVG) {
        fprintf(stderr, "kdslc: error: -o %s: plot --history writes an .svg file\n(run 'kdslc --help' for usage)\n", out);
        kd_arena_free(&a);
        return 2;
    }
    if ((rc = check_paths(o->history, "--history", out)) != 0) {
        kd_arena_free(&a);
        return rc;
    }
    size_t len = 0;
    char *text = kd_read_file(&a, o->history, KD_HISTORY_MAX_BYTES, &len);
    kd_history_table t = {0};
    char msg[512];
    char *svg = NULL;
    size_t slen = 0;
    if (!text) {
        fprintf(stderr, "kdslc: error: cannot read %s: %s\n", o->history,
                errno == EFBIG    ? "file is larger than 64 MiB"
                : errno == EINVAL ? "not a regular file (a FIFO, device or socket)"
                                  : strerror(errno));
        rc = 1;
    } else if (kd_history_parse(o->history, text, len, &t, msg, sizeof msg) != 0) {
        fprintf(stderr, "kdslc: error: %s\n", msg);
        rc = 1;
    } else {
        FILE *f = open_memstream(&svg, &slen);
        if (!f) {
            fprintf(stderr, "kdslc: error: out of memory\n");
            rc = 1;
        } else {
            const char *base = strrchr(o->history, '/') ? strrchr(o->history, '/') + 1 : o->history;
            kd_history_svg(f, &t, base);
            fclose(f);
            rc = write_text_file(out, svg, slen);
        }
    }
    free(svg);
    kd_history_table_free(&t);
    kd_arena_free(&a);
    return rc;
}

int kd_run_plot(const kd_plot_options *o)
{
    if (o->history) {
        const char *misplaced = o->file ? o->file : o->show_shapes ? "--show-shapes" : o->model ? "--model" : NULL;
        if (misplaced) {
            fprintf(stderr,
                    "kdslc: error: 'plot --history' draws a history only; '%s' is for drawing a model\n"
                    "(run 'kdslc --help' for usage)\n",
                    misplaced);
            return 2;
        }
        return plot_history(o);
    }
    return plot_model(o);
}
