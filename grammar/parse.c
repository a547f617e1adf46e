/* parse.c — runs the generated lexer and parser over one source. */
#include "parser.h"
#include "lexer.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

ast_program *kd_parse(kd_arena *a, const kd_source *src, kd_diags *d)
{
    ast_program *p = kd_alloc(a, sizeof *p);
    p->src = src;
    kd_loc whole = {src, 1, 1};
    /* flex counts buffer sizes in int. */
    if (src->len > (size_t)INT_MAX - 2) {
        kd_error(d, whole, "source file is too large (%zu bytes)", src->len);
        return NULL;
    }

    kd_parse_ctx pc;
    kd_lex_start(&pc, a, src, d);
    yyscan_t scanner;
    if (kdyylex_init_extra(&pc, &scanner) != 0) {
        kd_error(d, whole, "cannot start the lexer");
        return NULL;
    }
    /* By length, not strlen: the text may hold NUL bytes, which the lexer
     * reports. But flex takes a NUL for its end-of-buffer mark and rescans
     * the token so far at each one, so a token of n NULs costs O(n^2) (a
     * comment of 1 MB of NULs took hours). It scans a copy with each NUL
     * turned into \x01 instead, which every rule treats alike; the actions
     * that report bytes read them from the source. */
    const char *text = src->text ? src->text : "";
    char *copy = NULL;
    if (src->len && memchr(text, 0, src->len)) {
        copy = malloc(src->len);
        if (!copy) {
            kdyylex_destroy(scanner);
            kd_error(d, whole, "out of memory");
            return NULL;
        }
        for (size_t i = 0; i < src->len; i++) copy[i] = text[i] ? text[i] : '\x01';
        text = copy;
    }
    YY_BUFFER_STATE buf = kdyy_scan_bytes(text, (int)src->len, scanner);
    int errors_before = d->errors;
    int rc = kdyyparse(scanner, &pc);
    kdyy_delete_buffer(buf, scanner);
    kdyylex_destroy(scanner);
    free(copy);
    /* Every path to a failed parse reports first; this only guards that promise. */
    if (rc != 0 && d->errors == errors_before) kd_error(d, whole, "syntax error");

    p->items = (ast_item **)pc.items.items;
    p->nitems = pc.items.len;
    return p;
}
