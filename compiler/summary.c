/* summary.c — Keras' model.summary(): the classic table, Sequential layout
 * for plain chains and Functional layout (InputLayer rows, "Connected to")
 * for graphs with several inputs, branches or merges. */
#include "model.h"

#include <string.h>

/* Keras' print_row: each field cut or padded to end at its column position. */
static void print_row(FILE *out, const char **fields, const int *positions, int n)
{
    char line[512] = "";
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && len > 0) line[len - 1] = ' ';
        size_t flen = strlen(fields[i]);
        size_t room = sizeof line - 1 - len;
        memcpy(line + len, fields[i], flen < room ? flen : room);
        len += flen < room ? flen : room;
        if (len > (size_t)positions[i]) len = (size_t)positions[i];
        while (len < (size_t)positions[i]) line[len++] = ' ';
        line[len] = 0;
    }
    while (len > 0 && line[len - 1] == ' ') len--;   /* no trailing blanks in golden files */
    line[len] = 0;
    fprintf(out, "%s\n", line);
}

static void rule(FILE *out, char c, int n)
{
    for (int i = 0; i < n; i++) fputc(c, out);
    fputc('\n', out);
}

const char *kd_thousands(int64_t n, char buf[static 32])
{
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", (long long)n);
    size_t len = strlen(digits), o = 0;
    for (size_t i = 0; i < len; i++) {
        if (i > 0 && (len - i) % 3 == 0 && digits[i - 1] != '-') buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = 0;
    return buf;
}

void kd_print_summary(FILE *out, const kd_model *m)
{
    bool functional = m->functional;
    int width = functional ? 98 : 65;
    int seq_pos[3] = {29, 55, 65}, fun_pos[4] = {32, 53, 65, 98};
    const int *pos = functional ? fun_pos : seq_pos;
    int ncols = functional ? 4 : 3;
    fprintf(out, "Model: \"%s\"\n", m->name);
    rule(out, '_', width);
    const char *head[4] = {"Layer (type)", "Output Shape", "Param #", "Connected to"};
    print_row(out, head, pos, ncols);
    rule(out, '=', width);
    int nrows = m->layers.len + (functional ? m->ninputs : 0);
    int row = 0;
    char name[600], shape[160], params[32];
    if (functional) {
        for (int i = 0; i < m->ninputs; i++, row++) {
            char s[128];
            snprintf(name, sizeof name, "%s (InputLayer)", m->input_names[i]);
            snprintf(shape, sizeof shape, "[%s]", ir_shape_keras(&m->input_shapes[i], s, sizeof s));
            const char *f[4] = {name, shape, "0", "[]"};
            print_row(out, f, pos, ncols);
            rule(out, row + 1 < nrows ? '_' : '=', width);
        }
    }
    for (int i = 0; i < m->layers.len; i++, row++) {
        const kd_layer *l = m->layers.items[i];
        snprintf(name, sizeof name, "%s (%s)", l->name, l->type);
        if (l->multiple_shapes) snprintf(shape, sizeof shape, "multiple");
        else if (l->nout_list > 0) {   /* Keras: [(None, 8), (None, 8)] */
            size_t at = 0;
            for (int k = 0; k < l->nout_list && at < sizeof shape; k++) {
                char one[128];
                at += (size_t)snprintf(shape + at, sizeof shape - at, "%s%s%s", k ? ", " : "[",
                                       ir_shape_keras(&l->out_list[k], one, sizeof one), k + 1 < l->nout_list ? "" : "]");
            }
        } else ir_shape_keras(&l->out_shape, shape, sizeof shape);
        snprintf(params, sizeof params, "%lld", (long long)(l->trainable_params + l->nontrainable_params));
        const char *first = l->inbound.len ? l->inbound.items[0] : "";
        char conn[300];
        snprintf(conn, sizeof conn, "%s%s", first, l->inbound.len > 1 ? "," : "");
        const char *f[4] = {name, shape, params, conn};
        print_row(out, f, pos, ncols);
        for (int k = 1; functional && k < l->inbound.len; k++) {
            snprintf(conn, sizeof conn, "%s%s", (const char *)l->inbound.items[k], k + 1 < l->inbound.len ? "," : "");
            const char *g[4] = {"", "", "", conn};
            print_row(out, g, pos, ncols);
        }
        rule(out, row + 1 < nrows ? '_' : '=', width);
    }
    char a[32], b[32], c[32];
    fprintf(out, "Total params: %s\n", kd_thousands(m->trainable_params + m->nontrainable_params, a));
    fprintf(out, "Trainable params: %s\n", kd_thousands(m->trainable_params, b));
    fprintf(out, "Non-trainable params: %s\n", kd_thousands(m->nontrainable_params, c));
    rule(out, '_', width);
}
