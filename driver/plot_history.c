/* plot_history.c — kdslc plot --history (plot.h): a training history, as
 * `kdslc train --history` writes it (runtime/host/history.c: CSV with an
 * "epoch" column first and empty cells for missing values, or JSON, an
 * object of arrays with null for missing values), drawn as a Keras user
 * plots history.history: one panel per metric, its training curve and its
 * validation (val_) curve, epochs along x.
 *
 * The file is read as hostile: its size, columns and rows are bounded, every
 * cell must be a finite number (or empty / null), and anything else is an
 * error naming the file, the line and column (CSV) or the key and index
 * (JSON) — never a crash. */
#include "plot.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return -1;
}

void kd_history_table_free(kd_history_table *t)
{
    for (int i = 0; i < t->ncols; i++) free(t->names[i]);
    free(t->x);
    free(t->values);
    memset(t, 0, sizeof *t);
}

/* A column name: letters, digits and _ . - / (Keras' metric names), at most 100 bytes. */
static bool good_name(const char *s, size_t n)
{
    if (n == 0 || n > 100) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("_.-/", c)))
            return false;
    }
    return true;
}

static int add_row(kd_history_table *t, int *cap, char *err, size_t nerr, const char *path)
{
    if (t->nrows == KD_HISTORY_MAX_ROWS) return fail(err, nerr, "%s: more than %d epochs", path, KD_HISTORY_MAX_ROWS);
    if ((size_t)(t->nrows + 1) * (size_t)t->ncols > KD_HISTORY_MAX_CELLS)
        return fail(err, nerr, "%s: more than %zu values (epochs times columns)", path, KD_HISTORY_MAX_CELLS);
    if (t->nrows == *cap) {
        int c = *cap ? *cap * 2 : 64;
        double *x = realloc(t->x, (size_t)c * sizeof *x);
        if (!x) return fail(err, nerr, "%s: out of memory", path);
        t->x = x;
        double *v = realloc(t->values, (size_t)c * (size_t)(t->ncols ? t->ncols : 1) * sizeof *v);
        if (!v) return fail(err, nerr, "%s: out of memory", path);
        t->values = v;
        *cap = c;
    }
    t->x[t->nrows] = t->nrows + 1;
    for (int i = 0; i < t->ncols; i++) t->values[(size_t)t->nrows * (size_t)t->ncols + (size_t)i] = NAN;
    t->nrows++;
    return 0;
}

/* x must rise from row to row (the epochs). */
static int check_x(const kd_history_table *t, char *err, size_t nerr, const char *path)
{
    for (int r = 1; r < t->nrows; r++)
        if (!(t->x[r] > t->x[r - 1]))
            return fail(err, nerr, "%s: the epochs do not rise: epoch %.9g follows %.9g (row %d)", path, t->x[r],
                        t->x[r - 1], r + 1);
    return 0;
}

/* ---- CSV ---------------------------------------------------------------------------------- */

/* One cell of [s, e) as a number: 0, NAN for an empty cell, -1 for anything else. */
static int cell_value(const char *s, const char *e, double *v)
{
    while (s < e && (*s == ' ' || *s == '\t')) s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
    if (s == e) {
        *v = NAN;
        return 0;
    }
    char buf[64];
    if ((size_t)(e - s) >= sizeof buf) return -1;
    memcpy(buf, s, (size_t)(e - s));
    buf[e - s] = 0;
    char *end;
    *v = strtod(buf, &end);
    if (*end || !isfinite(*v)) {
        if (!strcmp(buf, "nan") || !strcmp(buf, "NaN")) {   /* Keras' CSVLogger writes nan */
            *v = NAN;
            return 0;
        }
        return -1;
    }
    return 0;
}

static int parse_csv(const char *path, const char *text, size_t len, kd_history_table *t, char *err, size_t nerr)
{
    const char *p = text, *end = text + len;
    int line = 1, cap = 0;
    bool has_x = false;
    /* the header */
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    const char *hend = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
    if (hend == p) return fail(err, nerr, "%s:1: the header is empty: a history CSV starts with its column names", path);
    for (const char *c = p; c <= hend;) {
        const char *ce = memchr(c, ',', (size_t)(hend - c));
        if (!ce) ce = hend;
        if (!good_name(c, (size_t)(ce - c)))
            return fail(err, nerr, "%s:1:%d: '%.*s' is not a column name (letters, digits, _ . - /)", path,
                        (int)(c - p) + 1, (int)(ce - c < 40 ? ce - c : 40), c);
        if (c == p && ce - c == 5 && !memcmp(c, "epoch", 5)) has_x = true;
        else {
            if (t->ncols == KD_HISTORY_MAX_COLUMNS)
                return fail(err, nerr, "%s:1: more than %d columns", path, KD_HISTORY_MAX_COLUMNS);
            /* not strndup: the text need not hold a NUL anywhere */
            char *name = malloc((size_t)(ce - c) + 1);
            if (!name) return fail(err, nerr, "%s: out of memory", path);
            memcpy(name, c, (size_t)(ce - c));
            name[ce - c] = 0;
            t->names[t->ncols++] = name;   /* counted at once: kd_history_table_free frees it on any error */
            for (int i = 0; i < t->ncols - 1; i++)
                if (!strcmp(t->names[i], name))
                    return fail(err, nerr, "%s:1:%d: column '%s' appears twice", path, (int)(c - p) + 1, t->names[i]);
        }
        c = ce + 1;
    }
    if (t->ncols == 0) return fail(err, nerr, "%s:1: no column to draw besides the epoch", path);
    p = eol < end ? eol + 1 : end;
    /* the rows */
    while (p < end) {
        line++;
        eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *rend = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
        if (rend == p) {   /* blank lines (a trailing one) are skipped */
            p = eol < end ? eol + 1 : end;
            continue;
        }
        if (memchr(p, 0, (size_t)(rend - p))) return fail(err, nerr, "%s:%d: a NUL byte: not a text file", path, line);
        if (add_row(t, &cap, err, nerr, path)) return -1;
        int ncells = t->ncols + has_x, k = 0;
        for (const char *c = p; c <= rend; k++) {
            const char *ce = memchr(c, ',', (size_t)(rend - c));
            if (!ce) ce = rend;
            if (k >= ncells)
                return fail(err, nerr, "%s:%d:%d: more cells than the header's %d columns", path, line, (int)(c - p) + 1,
                            ncells);
            double v;
            if (cell_value(c, ce, &v))
                return fail(err, nerr, "%s:%d:%d: '%.*s' in column '%s' is not a number", path, line, (int)(c - p) + 1,
                            (int)(ce - c < 40 ? ce - c : 40), c, k == 0 && has_x ? "epoch" : t->names[k - has_x]);
            if (k == 0 && has_x) {
                if (isnan(v)) return fail(err, nerr, "%s:%d:1: the epoch is missing", path, line);
                t->x[t->nrows - 1] = v;
            } else
                t->values[(size_t)(t->nrows - 1) * (size_t)t->ncols + (size_t)(k - has_x)] = v;
            c = ce + 1;
        }
        if (k != ncells)
            return fail(err, nerr, "%s:%d: %d cells, but the header has %d columns", path, line, k, ncells);
        p = eol < end ? eol + 1 : end;
    }
    if (t->nrows == 0) return fail(err, nerr, "%s: no epochs after the header", path);
    return check_x(t, err, nerr, path);
}

/* ---- JSON --------------------------------------------------------------------------------- */

static int parse_json(const char *path, const char *text, size_t len, kd_history_table *t, char *err, size_t nerr)
{
    cJSON *o = cJSON_ParseWithLength(text, len);
    if (!o) {
        const char *at = cJSON_GetErrorPtr();
        int line = 1, col = 1;
        if (at && at >= text && at <= text + len)
            for (const char *q = text; q < at; q++) {
                if (*q == '\n') line++, col = 1;
                else col++;
            }
        return fail(err, nerr, "%s:%d:%d: not valid JSON", path, line, col);
    }
    int rc = 0, n = -1;
    const cJSON *x = NULL, *k;
    if (!cJSON_IsObject(o)) {
        rc = fail(err, nerr, "%s: a history is a JSON object of arrays ({\"loss\": [...], ...})", path);
        goto done;
    }
    cJSON_ArrayForEach(k, o) {
        const char *name = k->string;
        if (!name || !good_name(name, strlen(name))) {
            rc = fail(err, nerr, "%s: key '%.40s' is not a column name (letters, digits, _ . - /)", path, name ? name : "");
            goto done;
        }
        if (!cJSON_IsArray(k)) {
            rc = fail(err, nerr, "%s: '%s' is not an array of numbers, one per epoch", path, name);
            goto done;
        }
        int count = cJSON_GetArraySize(k);
        if (n >= 0 && count != n) {
            rc = fail(err, nerr, "%s: '%s' has %d values, but the columns before it %d", path, name, count, n);
            goto done;
        }
        n = count;
        if (!strcmp(name, "epoch")) {
            x = k;
            continue;
        }
        for (int i = 0; i < t->ncols; i++)
            if (!strcmp(t->names[i], name)) {
                rc = fail(err, nerr, "%s: key '%s' appears twice", path, name);
                goto done;
            }
        if (t->ncols == KD_HISTORY_MAX_COLUMNS) {
            rc = fail(err, nerr, "%s: more than %d columns", path, KD_HISTORY_MAX_COLUMNS);
            goto done;
        }
        if (!(t->names[t->ncols++] = strdup(name))) {
            rc = fail(err, nerr, "%s: out of memory", path);
            goto done;
        }
    }
    if (t->ncols == 0 || n <= 0) {
        rc = fail(err, nerr, "%s: no %s to draw", path, t->ncols ? "epochs" : "column besides the epoch");
        goto done;
    }
    int cap = 0;
    for (int r = 0; r < n; r++)
        if ((rc = add_row(t, &cap, err, nerr, path)) != 0) goto done;
    /* walk each array by its links: GetArrayItem would be quadratic */
    int c = 0;
    cJSON_ArrayForEach(k, o) {
        bool is_x = k == x;
        int r = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, k) {
            double d = NAN;
            if (cJSON_IsNumber(v) && isfinite(v->valuedouble)) d = v->valuedouble;
            else if (!cJSON_IsNull(v) || is_x) {
                rc = fail(err, nerr, "%s: '%s'[%d] is not a %snumber", path, k->string, r, is_x ? "" : "finite ");
                goto done;
            }
            if (is_x) t->x[r] = d;
            else t->values[(size_t)r * (size_t)t->ncols + (size_t)c] = d;
            r++;
        }
        if (!is_x) c++;
    }
    rc = check_x(t, err, nerr, path);
done:
    cJSON_Delete(o);
    return rc;
}

int kd_history_parse(const char *path, const char *text, size_t len, kd_history_table *t, char *err, size_t nerr)
{
    memset(t, 0, sizeof *t);
    size_t i = 0;
    while (i < len && strchr(" \t\r\n", text[i])) i++;
    if (i == len) return fail(err, nerr, "%s: the file is empty", path);
    int rc = text[i] == '{' || text[i] == '[' ? parse_json(path, text, len, t, err, nerr)
                                               : parse_csv(path, text, len, t, err, nerr);
    if (rc) kd_history_table_free(t);
    return rc;
}

/* ---- the picture -------------------------------------------------------------------------- */

enum { PANEL_W = 460, PANEL_H = 300, LEFT = 64, RIGHT = 16, TOP = 36, BOTTOM = 44, COLUMNS = 2 };

static void put_xml(FILE *out, const char *s)
{
    for (; *s; s++) switch (*s) {
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '&': fputs("&amp;", out); break;
        case '"': fputs("&quot;", out); break;
        default: fputc(*s, out);
        }
}

/* A tick step of 1, 2 or 5 times a power of ten, giving about n ticks over span. */
static double nice_step(double span, int n)
{
    double raw = span / n, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

/* The ticks of an axis over [*lo, *hi]: about `want` at a nice step, the
 * range widened to whole steps when `widen`; just the two ends when no
 * nice step fits (a span that overflows, or is too small for the numbers'
 * precision). Returns their count (at most 4 * want + 1). */
static int axis_ticks(double *lo, double *hi, int want, bool widen, bool whole, double *tick)
{
    double span = *hi - *lo;
    if (isfinite(span) && span > 0) {
        double step = nice_step(span, want);
        if (whole && step < 1) step = 1;
        double a = floor(*lo / step) * step, b = ceil(*hi / step) * step;
        double first = widen ? a : ceil(*lo / step) * step, last = widen ? b : floor(*hi / step) * step;
        double n = (last - first) / step;
        if (step > 0 && isfinite(step) && isfinite(a) && isfinite(b) && n >= 0 && n <= 4 * want &&
            first + step != first) {
            if (widen) *lo = a, *hi = b;
            int count = (int)(n + 0.5) + 1;
            for (int i = 0; i < count; i++) {
                tick[i] = first + i * step;
                if (fabs(tick[i]) < step * 1e-9) tick[i] = 0;   /* not 1.3e-17 */
            }
            return count;
        }
    }
    tick[0] = *lo, tick[1] = *hi;
    return 2;
}

/* Where v falls in [lo, hi], from 0 to 1; halved first, so that no
 * difference of finite numbers overflows. */
static double frac(double v, double lo, double hi)
{
    double d = hi * 0.5 - lo * 0.5;
    return d > 0 ? (v * 0.5 - lo * 0.5) / d : 0.5;
}

typedef struct panel {
    const char *title;
    int train, val;   /* column indices, -1: none */
} panel;

static bool has_values(const kd_history_table *t, int c)
{
    for (int r = 0; r < t->nrows; r++)
        if (!isnan(t->values[(size_t)r * (size_t)t->ncols + (size_t)c])) return true;
    return false;
}

static int find_col(const kd_history_table *t, const char *name)
{
    for (int i = 0; i < t->ncols; i++)
        if (!strcmp(t->names[i], name)) return i;
    return -1;
}

static void put_panel(FILE *out, const kd_history_table *t, const panel *p, double ox, double oy)
{
    static const char *colors[2] = {"#1f77b4", "#ff7f0e"};
    double xmin = t->x[0], xmax = t->x[t->nrows - 1], ymin = INFINITY, ymax = -INFINITY;
    int cols[2] = {p->train, p->val};
    for (int s = 0; s < 2; s++)
        for (int r = 0; cols[s] >= 0 && r < t->nrows; r++) {
            double v = t->values[(size_t)r * (size_t)t->ncols + (size_t)cols[s]];
            if (isnan(v)) continue;
            if (v < ymin) ymin = v;
            if (v > ymax) ymax = v;
        }
    if (xmax == xmin) xmin -= 1, xmax += 1;
    if (ymax - ymin < 1e-12 * fmax(1, fabs(ymax))) {
        double pad = fabs(ymax) > 0 ? fabs(ymax) * 0.1 : 1;
        if (isfinite(ymin - pad) && isfinite(ymax + pad)) ymin -= pad, ymax += pad;
    }
    double margin = (ymax * 0.5 - ymin * 0.5) * 0.1;   /* matplotlib's 5% each side: no curve on the frame */
    if (isfinite(ymin - margin) && isfinite(ymax + margin)) ymin -= margin, ymax += margin;
    double yt[32], xt[32];
    int nyt = axis_ticks(&ymin, &ymax, 5, true, false, yt);
    int nxt = axis_ticks(&xmin, &xmax, 6, false, xmin == floor(xmin) && xmax == floor(xmax), xt);
    double x0 = ox + LEFT, y0 = oy + TOP, w = PANEL_W - LEFT - RIGHT, h = PANEL_H - TOP - BOTTOM;
#define PX(v) (x0 + frac((v), xmin, xmax) * w)
#define PY(v) (y0 + h - frac((v), ymin, ymax) * h)
    fprintf(out, "<g class=\"panel\">\n<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\">", x0 + w / 2,
            oy + 22);
    put_xml(out, p->title);
    fprintf(out, "</text>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#000\"/>\n", x0,
            y0, w, h);
    for (int i = 0; i < nyt; i++) {
        double y = PY(yt[i]);
        fprintf(out,
                "<line class=\"tick\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"10\">%.4g</text>\n",
                x0, y, x0 + w, y, x0 - 4, y + 3, yt[i]);
    }
    for (int i = 0; i < nxt; i++) {
        double x = PX(xt[i]);
        fprintf(out,
                "<line class=\"tick\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"10\">%.6g</text>\n",
                x, y0 + h, x, y0 + h + 4, x, y0 + h + 15, xt[i]);
    }
    fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">epoch</text>\n", x0 + w / 2,
            y0 + h + 32);
    int legend = 0, nseries = (cols[0] >= 0) + (cols[1] >= 0);
    for (int s = 0; s < 2; s++) {
        if (cols[s] < 0) continue;
        fprintf(out, "<polyline class=\"series\" data-name=\"");
        put_xml(out, t->names[cols[s]]);
        fprintf(out, "\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", colors[s]);
        bool first = true;
        for (int r = 0; r < t->nrows; r++) {
            double v = t->values[(size_t)r * (size_t)t->ncols + (size_t)cols[s]];
            if (isnan(v)) continue;
            fprintf(out, "%s%.2f,%.2f", first ? "" : " ", PX(t->x[r]), PY(v));
            first = false;
        }
        fputs("\"/>\n", out);
    }
    /* the legend over the lines, on white */
    fprintf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"94\" height=\"%d\" fill=\"#fff\" fill-opacity=\"0.85\" stroke=\"#ccc\"/>\n",
            x0 + w - 100, y0 + 4, 14 * nseries + 2);
    for (int s = 0; s < 2; s++) {
        if (cols[s] < 0) continue;
        double ly = y0 + 12 + 14 * legend++;
        fprintf(out,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\">%s</text>\n",
                x0 + w - 96, ly, x0 + w - 76, ly, colors[s], x0 + w - 72, ly + 3, s == 0 ? "training" : "validation");
    }
    fputs("</g>\n", out);
#undef PX
#undef PY
}

void kd_history_svg(FILE *out, const kd_history_table *t, const char *title)
{
    /* the panels: each metric with its val_ twin, in file order; empty columns left out */
    panel panels[KD_HISTORY_MAX_COLUMNS];
    int np = 0;
    for (int c = 0; c < t->ncols; c++) {
        const char *n = t->names[c];
        bool val = !strncmp(n, "val_", 4);
        if (val && find_col(t, n + 4) >= 0) continue;   /* drawn with its training twin */
        panel p = {val ? n + 4 : n, val ? -1 : c, val ? c : -1};
        if (!val) {
            char twin[128];
            snprintf(twin, sizeof twin, "val_%s", n);
            p.val = find_col(t, twin);
        }
        if (p.train >= 0 && !has_values(t, p.train)) p.train = -1;
        if (p.val >= 0 && !has_values(t, p.val)) p.val = -1;
        if (p.train >= 0 || p.val >= 0) panels[np++] = p;
    }
    int cols = np < COLUMNS ? (np ? np : 1) : COLUMNS, rows = (np + COLUMNS - 1) / COLUMNS;
    int width = cols * PANEL_W, height = 30 + (rows ? rows : 1) * PANEL_H;
    fprintf(out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "font-family=\"Helvetica, Arial, sans-serif\">\n<title>",
            width, height, width, height);
    put_xml(out, title);
    fprintf(out, "</title>\n<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", width, height);
    fprintf(out, "<text x=\"%d\" y=\"20\" text-anchor=\"middle\" font-size=\"15\">", width / 2);
    put_xml(out, title);
    fputs("</text>\n", out);
    if (np == 0)
        fprintf(out, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">no values to draw</text>\n", width / 2, height / 2);
    for (int i = 0; i < np; i++) put_panel(out, t, &panels[i], (i % COLUMNS) * PANEL_W, 30 + (i / COLUMNS) * PANEL_H);
    fputs("</svg>\n", out);
}
