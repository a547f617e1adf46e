/* csv.c — numeric comma-separated data into an F32 matrix [rows, columns].
 *
 * Strict on purpose: a data file with a ragged row, a word in a number
 * column or a NaN is almost always a mistake upstream, and training on it
 * silently would hide that. Every error names line and column (1-based,
 * the column being the field's position). The first row is a header when
 * none of its fields is a number; a first row of numbers and words is an
 * error. Numbers are parsed in the C locale's syntax (decimal point '.')
 * whatever LC_NUMERIC says. */
#define _FILE_OFFSET_BITS 64
#include "host_internal.h"

#include <ctype.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>

typedef enum { CELL_NUMBER, CELL_EMPTY, CELL_NONFINITE, CELL_TEXT } cell_kind;

typedef struct csv_state {
    const char *name;
    kdh_error *err;
    const char *p, *end;
    size_t line;                   /* line of p, 1-based */
    char point;                    /* the locale's decimal point */
} csv_state;

/* One field's text after trimming blanks and quotes, in a buffer the
 * caller owns. Quoted fields follow RFC 4180 ("" is a quote; commas are
 * allowed inside) but may not span lines. */
typedef struct field {
    char *text;
    size_t len, cap;
    bool quoted;
} field;

static bool blank(char c) { return c == ' ' || c == '\t'; }

static int field_put(field *f, char c, csv_state *st)
{
    if (f->len + 1 >= f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 64;
        char *nt = realloc(f->text, nc);
        if (!nt) return kdh__err(st->err, "%s: out of memory", st->name);
        f->text = nt;
        f->cap = nc;
    }
    f->text[f->len++] = c;
    f->text[f->len] = 0;
    return 0;
}

/* Reads the field at st->p; leaves p at the ',' or line end after it. */
static int read_field(csv_state *st, field *f, size_t col)
{
    f->len = 0;
    f->quoted = false;
    if (field_put(f, 0, st) != 0) return -1;   /* make sure text exists */
    f->len = 0;
    f->text[0] = 0;
    while (st->p < st->end && blank(*st->p)) st->p++;
    if (st->p < st->end && *st->p == '"') {
        f->quoted = true;
        st->p++;
        for (;;) {
            if (st->p >= st->end || *st->p == '\n' || *st->p == '\r')
                return kdh__err(st->err, "%s: line %zu, column %zu: unterminated quoted field",
                                st->name, st->line, col);
            if (*st->p == '"') {
                if (st->p + 1 < st->end && st->p[1] == '"') {
                    if (field_put(f, '"', st) != 0) return -1;
                    st->p += 2;
                    continue;
                }
                st->p++;
                break;
            }
            if (field_put(f, *st->p++, st) != 0) return -1;
        }
        while (st->p < st->end && blank(*st->p)) st->p++;
        if (st->p < st->end && *st->p != ',' && *st->p != '\n' && *st->p != '\r')
            return kdh__err(st->err, "%s: line %zu, column %zu: text after a closing quote",
                            st->name, st->line, col);
    } else {
        while (st->p < st->end && *st->p != ',' && *st->p != '\n' && *st->p != '\r')
            if (field_put(f, *st->p++, st) != 0) return -1;
        while (f->len && blank(f->text[f->len - 1])) f->text[--f->len] = 0;
    }
    /* The cell is read as a C string: a NUL would hide what follows it
     * ("2\0junk" read as 2). A binary file given as CSV ends here. */
    if (memchr(f->text, 0, f->len))
        return kdh__err(st->err, "%s: line %zu, column %zu: NUL byte in a field (binary data?)",
                        st->name, st->line, col);
    return 0;
}

/* decimal = [+-] (digits [. digits*] | . digits) [(e|E) [+-] digits] */
static bool decimal_syntax(const char *s)
{
    if (*s == '+' || *s == '-') s++;
    size_t digits = 0;
    while (isdigit((unsigned char)*s)) { s++; digits++; }
    if (*s == '.') {
        s++;
        while (isdigit((unsigned char)*s)) { s++; digits++; }
    }
    if (!digits) return false;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') s++;
        if (!isdigit((unsigned char)*s)) return false;
        while (isdigit((unsigned char)*s)) s++;
    }
    return *s == 0;
}

static bool nonfinite_word(const char *s)
{
    if (*s == '+' || *s == '-') s++;
    static const char *const words[] = {"nan", "inf", "infinity", "-nan"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        size_t n = strlen(words[i]), j;
        for (j = 0; j < n && s[j] && tolower((unsigned char)s[j]) == words[i][j]; j++) {}
        if (j == n && s[j] == 0) return true;
    }
    return false;
}

/* Converts s, already checked to be in C syntax. strtod follows
 * LC_NUMERIC, so under a locale whose decimal point is not '.' the '.' is
 * swapped for it first (`point` is that character, found once per file). */
static double to_double(const char *s, char point)
{
    char *end;
    const char *dot = strchr(s, '.');
    size_t n = strlen(s);
    char buf[512];
    if (point == '.' || !dot || n >= sizeof buf) return strtod(s, &end);
    memcpy(buf, s, n + 1);
    buf[dot - s] = point;
    return strtod(buf, &end);
}

static cell_kind classify(const field *f, char point, double *v)
{
    if (f->len == 0) return CELL_EMPTY;
    if (decimal_syntax(f->text)) {
        *v = to_double(f->text, point);
        return CELL_NUMBER;
    }
    if (nonfinite_word(f->text)) return CELL_NONFINITE;
    return CELL_TEXT;
}

typedef struct fvec {
    float *v;
    size_t len, cap;
} fvec;

static int fvec_push(fvec *a, float x, csv_state *st)
{
    if (a->len == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 1024;
        float *nv = nc > SIZE_MAX / sizeof *nv ? NULL : realloc(a->v, nc * sizeof *nv);
        if (!nv) return kdh__err(st->err, "%s: out of memory", st->name);
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->len++] = x;
    return 0;
}

void kdh_csv_header_free(kdh_csv_header *h)
{
    if (!h) return;
    for (size_t i = 0; i < h->count; i++) free(h->names[i]);
    free(h->names);
    h->names = NULL;
    h->count = 0;
}

static int header_add(kdh_csv_header *h, const char *s, csv_state *st)
{
    /* Grow at powers of two: the header may be wide. */
    if ((h->count & (h->count - 1)) == 0) {
        size_t nc = h->count ? h->count * 2 : 1;
        char **nn = nc > SIZE_MAX / sizeof *nn ? NULL : realloc(h->names, nc * sizeof *nn);
        if (!nn) return kdh__err(st->err, "%s: out of memory", st->name);
        h->names = nn;
    }
    if (!(h->names[h->count] = strdup(s))) return kdh__err(st->err, "%s: out of memory", st->name);
    h->count++;
    return 0;
}

/* After a field: true (and past it) if a comma follows, false at line end. */
static bool take_comma(csv_state *st)
{
    if (st->p < st->end && *st->p == ',') {
        st->p++;
        return true;
    }
    return false;
}

/* Skips the line end at p (\n or \r\n; a lone \r also ends a line). */
static void next_line(csv_state *st)
{
    if (st->p < st->end && *st->p == '\r') st->p++;
    if (st->p < st->end && *st->p == '\n') st->p++;
    st->line++;
}

/* A data cell: a finite number in float range, appended to vals. */
static int data_cell(csv_state *st, fvec *vals, cell_kind k, double v, const char *text, size_t col)
{
    switch (k) {
    case CELL_EMPTY:
        return kdh__err(st->err, "%s: line %zu, column %zu: empty cell", st->name, st->line, col);
    case CELL_NONFINITE:
        return kdh__err(st->err, "%s: line %zu, column %zu: \"%.40s\" is not a finite number",
                        st->name, st->line, col, text);
    case CELL_TEXT:
        return kdh__err(st->err, "%s: line %zu, column %zu: \"%.40s\" is not a number", st->name,
                        st->line, col, text);
    case CELL_NUMBER:
        if (v > FLT_MAX || v < -FLT_MAX)
            return kdh__err(st->err, "%s: line %zu, column %zu: %.40s is out of float32 range",
                            st->name, st->line, col, text);
        return fvec_push(vals, (float)v, st);
    }
    return -1;
}

int kdh_csv_parse(const char *text, size_t len, const char *name, kdh_tensor *out,
                  kdh_csv_header *header, kdh_error *err)
{
    memset(out, 0, sizeof *out);
    if (header) memset(header, 0, sizeof *header);
    if (!name) name = "<memory>";
    char pt[8];
    snprintf(pt, sizeof pt, "%.1f", 1.5);
    csv_state st = {name, err, text, text + len, 1, pt[1]};
    if (len == 0) return kdh__err(err, "%s: file is empty", name);
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) st.p += 3;   /* spreadsheet BOM */

    field f = {0};
    fvec vals = {0};
    kdh_csv_header hdr = {0};
    size_t ncols = 0, rows = 0, first_line = 0;
    int rc = -1;
    while (st.p < st.end) {
        const char *q = st.p;
        while (q < st.end && (blank(*q) || *q == '\r')) q++;
        if (q == st.end || *q == '\n') {   /* blank line */
            st.p = q;
            next_line(&st);
            continue;
        }
        size_t col = 0;
        if (first_line == 0) {
            /* The first row is a header if no field is a number and some
             * field is text; a row of numbers with a word among them is a
             * data row with a typo (`1,2,3O,0`), an error, not a header that
             * would drop a sample without a word. Classify the row first and
             * then read it again as header or data, rather than keep every
             * field's text of what may be a huge data row. */
            const char *row = st.p;
            size_t text_col = 0, numbers = 0;
            do {
                col++;
                double v;
                if (read_field(&st, &f, col) != 0) goto done;
                cell_kind k = classify(&f, st.point, &v);
                if (k == CELL_TEXT && !text_col) text_col = col;
                if (k == CELL_NUMBER) numbers++;
            } while (take_comma(&st));
            first_line = st.line;
            ncols = col;
            st.p = row;
            col = 0;
            if (text_col && numbers) {
                for (size_t c = 1; c <= text_col; c++) {   /* that field's text again, for the message */
                    if (read_field(&st, &f, c) != 0) goto done;
                    take_comma(&st);
                }
                kdh__err(err, "%s: line %zu, column %zu: \"%.40s\" is not a number (the row has %zu numbers, so it is "
                              "not a header: a header has none)",
                         name, st.line, text_col, f.text, numbers);
                goto done;
            }
            bool is_header = text_col != 0;
            if (is_header) {
                do {
                    col++;
                    if (read_field(&st, &f, col) != 0 || header_add(&hdr, f.text, &st) != 0)
                        goto done;
                } while (take_comma(&st));
                next_line(&st);
                continue;
            }
        }
        do {
            col++;
            if (read_field(&st, &f, col) != 0) goto done;
            double v = 0;
            if (col > ncols) continue;   /* reported below as a ragged row */
            cell_kind k = classify(&f, st.point, &v);
            if (data_cell(&st, &vals, k, v, f.text, col) != 0) goto done;
        } while (take_comma(&st));
        if (col != ncols) {
            kdh__err(err, "%s: line %zu: %zu columns, expected %zu (as in line %zu)", name,
                     st.line, col, ncols, first_line);
            goto done;
        }
        rows++;
        next_line(&st);
    }
    if (rows == 0) {
        kdh__err(err, "%s: no data rows", name);
        goto done;
    }
    int64_t shape[2] = {(int64_t)rows, (int64_t)ncols};
    if (kdh_tensor_alloc(out, NULL, KDH_F32, 2, shape, err) != 0) goto done;
    memcpy(out->data, vals.v, rows * ncols * sizeof(float));
    if (header) {
        *header = hdr;
        memset(&hdr, 0, sizeof hdr);
    }
    rc = 0;
done:
    kdh_csv_header_free(&hdr);
    free(vals.v);
    free(f.text);
    return rc;
}

int kdh_csv_read(const char *path, const kdh_read_opts *opts, kdh_tensor *out,
                 kdh_csv_header *header, kdh_error *err)
{
    char *buf;
    size_t len;
    memset(out, 0, sizeof *out);
    if (header) memset(header, 0, sizeof *header);
    if (kdh__read_whole(path, opts, &buf, &len, err) != 0) return -1;
    int rc = kdh_csv_parse(buf, len, path, out, header, err);
    free(buf);
    return rc;
}
