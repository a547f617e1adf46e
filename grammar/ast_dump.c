/* ast_dump.c — the tree as text (kdslc ir --stage ast).
 *
 * Items and statements go one per line, indented by nesting, each led by its
 * kind; expressions are printed inline with every operator parenthesised, so
 * the dump shows how precedence was resolved: ((((-a) @ b) * c) + d).
 * The output depends only on the tree, never on addresses. */
#include "ast.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static void dump_expr(FILE *out, const ast_expr *e, int depth);

static void indent(FILE *out, int level)
{
    for (int i = 0; i < level; i++) fputs("  ", out);
}

static void dump_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (*p < 32 || *p == 127) fprintf(out, "\\x%02x", *p);
            else fputc(*p, out);
        }
    }
    fputc('"', out);
}

/* The shortest text that reads back as the same double, and looks like a float. */
static void dump_float(FILE *out, double v)
{
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    fputs(buf, out);
    if (!strpbrk(buf, ".eEni")) fputs(".0", out);
}

static void dump_args(FILE *out, const ast_arg *args, int n, int depth)
{
    for (int i = 0; i < n; i++) {
        if (i) fputs(", ", out);
        if (args[i].key) fprintf(out, "%s: ", args[i].key);
        dump_expr(out, args[i].value, depth);
    }
}

static void dump_expr(FILE *out, const ast_expr *e, int depth)
{
    /* The parser bounds nesting; this bound only keeps a hand-built tree safe. */
    if (!e || depth > 2 * AST_MAX_DEPTH) {
        fputs(e ? "..." : "<null>", out);
        return;
    }
    switch (e->kind) {
    case EXPR_INT: fprintf(out, "%" PRId64, e->ival); break;
    case EXPR_FLOAT: dump_float(out, e->fval); break;
    case EXPR_STRING: dump_string(out, e->str ? e->str : ""); break;
    case EXPR_BOOL: fputs(e->ival ? "true" : "false", out); break;
    case EXPR_NAME: fputs(e->name, out); break;
    case EXPR_TRAINING: fputs("training", out); break;
    case EXPR_LIST:
        fputc('[', out);
        for (int i = 0; i < e->nitems; i++) {
            if (i) fputs(", ", out);
            dump_expr(out, e->items[i], depth + 1);
        }
        fputc(']', out);
        break;
    case EXPR_NEG:
        fputs("(-", out);
        dump_expr(out, e->lhs, depth + 1);
        fputc(')', out);
        break;
    case EXPR_BINARY:
        fputc('(', out);
        dump_expr(out, e->lhs, depth + 1);
        fprintf(out, " %c ", e->op);
        dump_expr(out, e->rhs, depth + 1);
        fputc(')', out);
        break;
    case EXPR_CALL:
        fprintf(out, "%s(", e->name);
        dump_args(out, e->args, e->nargs, depth + 1);
        fputc(')', out);
        break;
    }
}

static void dump_body(FILE *out, const ast_body *b, int level, int depth);

static void dump_stmt(FILE *out, const ast_stmt *s, int level, int depth)
{
    indent(out, level);
    switch (s->kind) {
    case STMT_INPUT:
        fprintf(out, "input %s: %s", s->name, s->dtype ? s->dtype : "");
        dump_expr(out, s->shape, 0);
        break;
    case STMT_ASSIGN:
        fprintf(out, "assign %s", s->name);
        for (int i = 1; i < s->nnames; i++) fprintf(out, ", %s", s->names[i]);
        fputs(" = ", out);
        dump_expr(out, s->expr, 0);
        break;
    case STMT_EXPR:
        fputs("expr ", out);
        dump_expr(out, s->expr, 0);
        break;
    case STMT_OUTPUT:
        fputs("output ", out);
        if (s->name) fprintf(out, "%s = ", s->name);
        dump_expr(out, s->expr, 0);
        break;
    case STMT_REPEAT:
        fputs("repeat ", out);
        dump_expr(out, s->expr, 0);
        break;
    case STMT_SHARED:
        fprintf(out, "shared %s = ", s->name);
        dump_expr(out, s->expr, 0);
        break;
    case STMT_WEIGHT:
    case STMT_STATE:
        fprintf(out, "%s %s: ", s->kind == STMT_WEIGHT ? "weight" : "state", s->name);
        dump_expr(out, s->shape, 0);
        if (s->init) {
            fputs(" = ", out);
            dump_expr(out, s->init, 0);
        }
        if (s->nargs) fputs(", ", out);
        dump_args(out, s->args, s->nargs, 0);
        break;
    case STMT_UPDATE:
        fprintf(out, "update %s = ", s->name);
        dump_expr(out, s->expr, 0);
        break;
    case STMT_IF:
        fputs("if ", out);
        dump_expr(out, s->expr, 0);
        break;
    }
    fputc('\n', out);
    if (s->kind == STMT_REPEAT || s->kind == STMT_IF) dump_body(out, &s->body, level + 1, depth + 1);
    if (s->kind == STMT_IF && s->has_else) {
        indent(out, level);
        fputs("else\n", out);
        dump_body(out, &s->else_body, level + 1, depth + 1);
    }
}

static void dump_body(FILE *out, const ast_body *b, int level, int depth)
{
    if (depth > 2 * AST_MAX_DEPTH) {
        indent(out, level);
        fputs("...\n", out);
        return;
    }
    for (int i = 0; i < b->nstmts; i++) dump_stmt(out, b->stmts[i], level, depth);
}

static const char *item_kind_name(ast_item_kind k)
{
    switch (k) {
    case ITEM_LAYER: return "layer";
    case ITEM_BLOCK: return "block";
    case ITEM_MODEL: return "model";
    case ITEM_TRAIN: return "train";
    }
    return "?";
}

static void dump_item(FILE *out, const ast_item *it)
{
    fprintf(out, "  %s %s", item_kind_name(it->kind), it->name);
    if (it->nparams) {
        fputc('(', out);
        for (int i = 0; i < it->nparams; i++) {
            if (i) fputs(", ", out);
            fputs(it->params[i].name, out);
            if (it->params[i].def) {
                fputs(": ", out);
                dump_expr(out, it->params[i].def, 0);
            }
        }
        fputc(')', out);
    }
    fputc('\n', out);
    if (it->kind == ITEM_TRAIN) {
        for (int i = 0; i < it->nsettings; i++) {
            fprintf(out, "    %s: ", it->settings[i].key);
            dump_expr(out, it->settings[i].value, 0);
            fputc('\n', out);
        }
    } else {
        dump_body(out, &it->body, 2, 0);
    }
}

void ast_dump(FILE *out, const ast_program *p)
{
    fputs("program", out);
    if (p && p->src && p->src->path) fprintf(out, " %s", p->src->path);
    fputc('\n', out);
    if (!p) return;
    for (int i = 0; i < p->nitems; i++) dump_item(out, p->items[i]);
}
