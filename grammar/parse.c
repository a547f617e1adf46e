/* parse.c — runs the generated lexer and parser over one source. */
#include "parser.h"
#include "lexer.h"

#include <limits.h>

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
    /* By length, not strlen: the text may hold NUL bytes, which the lexer reports. */
    YY_BUFFER_STATE buf = kdyy_scan_bytes(src->text ? src->text : "", (int)src->len, scanner);
    int errors_before = d->errors;
    int rc = kdyyparse(scanner, &pc);
    kdyy_delete_buffer(buf, scanner);
    kdyylex_destroy(scanner);
    /* Every path to a failed parse reports first; this only guards that promise. */
    if (rc != 0 && d->errors == errors_before) kd_error(d, whole, "syntax error");

    p->items = (ast_item **)pc.items.items;
    p->nitems = pc.items.len;
    return p;
}
