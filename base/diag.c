/* diag.c — diagnostics in GCC's form: `file:line:col: error: ...`, the line, a caret. */
#include "kdsl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void print_source_line(FILE *out, kd_loc loc)
{
    if (!loc.src || !loc.src->text || loc.line <= 0) return;
    const char *p = loc.src->text, *end = p + loc.src->len;
    for (int line = 1; line < loc.line && p < end; p++)
        if (*p == '\n') line++;
    const char *eol = p;
    while (eol < end && *eol != '\n') eol++;
    size_t n = (size_t)(eol - p);
    if (n > 200) n = 200;                       /* a 10 kB line is cut, not dumped */
    fputs("  ", out);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        fputc(c == '\t' || (c >= 32 && c < 127) || c >= 128 ? (c == '\t' ? ' ' : c) : '?', out);
    }
    fputs("\n  ", out);
    for (int i = 1; i < loc.col && (size_t)i <= n; i++) fputc(' ', out);
    fputs("^\n", out);
}

__attribute__((format(printf, 4, 0), nonnull(3, 4)))
static void report(kd_diags *d, kd_loc loc, const char *kind, const char *fmt, va_list ap)
{
    FILE *out = d && d->out ? d->out : stderr;
    if (loc.src)
        fprintf(out, "%s:%d:%d: %s: ", loc.src->path, loc.line, loc.col, kind);
    else
        fprintf(out, "kdslc: %s: ", kind);
    vfprintf(out, fmt, ap);
    fputc('\n', out);
    print_source_line(out, loc);
}

void kd_verror(kd_diags *d, kd_loc loc, const char *fmt, va_list ap)
{
    int max = d->max_errors ? d->max_errors : 50;
    d->errors++;
    if (d->errors > max) return;
    report(d, loc, "error", fmt, ap);
    if (d->errors == max)
        fprintf(d->out ? d->out : stderr, "kdslc: note: too many errors, stopping here\n");
}

void kd_error(kd_diags *d, kd_loc loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kd_verror(d, loc, fmt, ap);
    va_end(ap);
}

void kd_warning(kd_diags *d, kd_loc loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    d->warnings++;
    report(d, loc, "warning", fmt, ap);
    va_end(ap);
}

void kd_note(kd_diags *d, kd_loc loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (d->errors <= (d->max_errors ? d->max_errors : 50)) report(d, loc, "note", fmt, ap);
    va_end(ap);
}

/* Damerau-free Levenshtein distance, case-insensitive, on short names only. */
static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 1000;
    int row[65];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int ca = a[i - 1] | 32, cb = b[j - 1] | 32;
            int cost = ca == cb ? 0 : 1;
            int best = diag + cost;
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *kd_nearest(const char *name, const char *const *known, int nknown)
{
    const char *best = NULL;
    int best_d = 1000;
    for (int i = 0; i < nknown; i++) {
        int dist = edit_distance(name, known[i]);
        if (dist < best_d) {
            best_d = dist;
            best = known[i];
        }
    }
    size_t len = strlen(name);
    int limit = len <= 3 ? 1 : len <= 6 ? 2 : 3;
    return best_d <= limit ? best : NULL;
}

/* Opens a source file without blocking: O_NONBLOCK so that open() on a
 * FIFO with no writer returns at once, then anything but a regular file is
 * refused (a FIFO or a terminal would block the read, a device like
 * /dev/zero never ends). */
static FILE *open_source(const char *path)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat st;
    int e = 0;
    if (fstat(fd, &st) != 0) e = errno;
    else if (S_ISDIR(st.st_mode)) e = EISDIR;
    else if (!S_ISREG(st.st_mode)) e = EINVAL;
    else {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) e = errno;
    }
    FILE *f = e ? NULL : fdopen(fd, "rb");
    if (!f) {
        if (!e) e = errno;
        close(fd);
        errno = e;
    }
    return f;
}

char *kd_read_file(kd_arena *a, const char *path, size_t max_bytes, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : open_source(path);
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) goto fail;
    for (;;) {
        if (n == cap) {
            if (cap > max_bytes) { errno = EFBIG; goto fail; }
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) goto fail;
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) goto fail;
    if (n > max_bytes) { errno = EFBIG; goto fail; }
    if (f != stdin) fclose(f);
    char *out = kd_strndup(a, buf, n);
    free(buf);
    *len = n;
    return out;
fail:;
    int e = errno;
    free(buf);
    if (f != stdin) fclose(f);
    errno = e ? e : EIO;
    return NULL;
}
