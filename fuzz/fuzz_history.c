/* fuzz_history.c — bytes as a training history, CSV or JSON, for kdslc plot
 * --history (driver/plot_history.c: kd_history_parse), and the picture of
 * what it accepts. The text is not NUL-terminated, so a read past its end
 * is caught. */
#include "fuzz.h"

#include "plot.h"

#include <math.h>
#include <string.h>

/* Every coordinate attribute of the SVG is a finite number (no nan, no inf:
 * the column names, which may hold those letters, are elsewhere). */
static int coordinates_finite(const char *svg)
{
    static const char *const attrs[] = {" x=\"", " y=\"", " x1=\"", " y1=\"", " x2=\"", " y2=\"", " width=\"",
                                        " height=\"", " points=\""};
    for (size_t a = 0; a < sizeof attrs / sizeof attrs[0]; a++)
        for (const char *p = strstr(svg, attrs[a]); p; p = strstr(p + 1, attrs[a])) {
            const char *v = p + strlen(attrs[a]);
            size_t n = strcspn(v, "\"");
            if (strspn(v, "0123456789.-+e, ") != n) return 0;
        }
    return 1;
}

int kdfuzz_history(const uint8_t *data, size_t size)
{
    kd_history_table t;
    char err[512];
    if (kd_history_parse("fuzz.csv", (const char *)data, size, &t, err, sizeof err) == 0) {
        kdfuzz_check(t.nrows > 0 && t.ncols > 0 && t.ncols <= KD_HISTORY_MAX_COLUMNS);
        for (int r = 0; r < t.nrows; r++) kdfuzz_check(isfinite(t.x[r]) && (r == 0 || t.x[r] > t.x[r - 1]));
        char *svg = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&svg, &len);
        kdfuzz_check(f != NULL);
        kd_history_svg(f, &t, "fuzz");
        fclose(f);
        kdfuzz_check(strstr(svg, "</svg>") != NULL && coordinates_finite(svg));
        free(svg);
        kd_history_table_free(&t);
    } else {
        kdfuzz_check(err[0] != 0 && !strncmp(err, "fuzz.csv", 8));
    }
    return 0;
}

KDFUZZ_ENTRY(kdfuzz_history)
