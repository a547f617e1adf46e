/* test_lexer.c — KDSL tokens: kinds, values, positions, newline rules, errors. */
#include "testutil.h"

#include "parser.h"
#include "lexer.h"

#include <stdlib.h>
#include <string.h>

enum { MAX_TOKENS = 512 };

typedef struct token {
    int kind;
    kd_loc loc;
    YYSTYPE val;
} token;

/* One source lexed to the end, with the diagnostics it produced. */
typedef struct lexed {
    kd_arena a;
    kd_source src;
    kd_diags d;
    char *msgs;
    size_t msgs_len;
    token toks[MAX_TOKENS];
    int n;                      /* tokens stored, the final end of file included */
    long total;                 /* tokens returned in all */
} lexed;

static lexed *lex_bytes(const char *text, size_t len)
{
    lexed *L = calloc(1, sizeof *L);
    ck_assert_ptr_nonnull(L);
    L->src = (kd_source){"t.kdsl", text, len};
    FILE *out = open_memstream(&L->msgs, &L->msgs_len);
    ck_assert_ptr_nonnull(out);
    L->d.out = out;

    kd_parse_ctx pc;
    kd_lex_start(&pc, &L->a, &L->src, &L->d);
    yyscan_t scanner;
    ck_assert_int_eq(kdyylex_init_extra(&pc, &scanner), 0);
    YY_BUFFER_STATE buf = kdyy_scan_bytes(text, (int)len, scanner);
    for (;;) {
        token t = {0};
        t.kind = kdyylex(&t.val, &t.loc, scanner);
        if (L->n < MAX_TOKENS) L->toks[L->n++] = t;
        L->total++;
        if (t.kind == TOK_YYEOF) break;
        ck_assert_msg(L->total < 100000000, "the lexer does not reach the end");
    }
    kdyy_delete_buffer(buf, scanner);
    kdyylex_destroy(scanner);
    fclose(out);
    return L;
}

static lexed *lex(const char *text) { return lex_bytes(text, strlen(text)); }

static void done(lexed *L)
{
    kd_arena_free(&L->a);
    free(L->msgs);
    free(L);
}

/* The token kinds, ending with end of file, as a -1-terminated list. */
static void expect_kinds(const lexed *L, const int *kinds)
{
    int i = 0;
    for (; kinds[i] != -1; i++) {
        ck_assert_msg(i < L->n, "only %d tokens, expected more", L->n);
        ck_assert_msg(L->toks[i].kind == kinds[i], "token %d: kind %d, expected %d", i, L->toks[i].kind, kinds[i]);
    }
    ck_assert_int_eq(L->n, i);
}

static void expect_at(const lexed *L, int i, int line, int col)
{
    ck_assert_int_lt(i, L->n);
    ck_assert_ptr_eq(L->toks[i].loc.src, &L->src);
    ck_assert_msg(L->toks[i].loc.line == line && L->toks[i].loc.col == col, "token %d at %d:%d, expected %d:%d", i,
                  L->toks[i].loc.line, L->toks[i].loc.col, line, col);
}

#define EOF_ TOK_YYEOF
#define NL TOK_NEWLINE
#define ID TOK_IDENT
#define ERR TOK_KDYYerror

START_TEST(test_kinds_of_a_statement)
{
    lexed *L = lex("h = Dense(3, activation: relu) @ w * -2 + x / y; z");
    expect_kinds(L, (int[]){ID, '=', ID, '(', TOK_INT, ',', ID, ':', ID, ')', '@', ID, '*', '-', TOK_INT, '+', ID,
                            '/', ID, ';', ID, EOF_, -1});
    ck_assert_str_eq(L->toks[0].val.str, "h");
    ck_assert_str_eq(L->toks[2].val.str, "Dense");
    ck_assert_int_eq(L->toks[4].val.ival, 3);
    ck_assert_str_eq(L->toks[8].val.str, "relu");
    ck_assert_int_eq(L->toks[14].val.ival, 2);
    ck_assert_int_eq(L->d.errors, 0);
    done(L);
}
END_TEST

START_TEST(test_keywords)
{
    lexed *L = lex("model block layer train input output weight state update shared repeat if else "
                   "training true false trainable models _if If");
    expect_kinds(L, (int[]){TOK_MODEL, TOK_BLOCK, TOK_LAYER, TOK_TRAIN, TOK_INPUT, TOK_OUTPUT, TOK_WEIGHT,
                            TOK_STATE, TOK_UPDATE, TOK_SHARED, TOK_REPEAT, TOK_IF, TOK_ELSE, TOK_TRAINING,
                            TOK_TRUE, TOK_FALSE, ID, ID, ID, ID, EOF_, -1});
    ck_assert_str_eq(L->toks[16].val.str, "trainable");
    ck_assert_str_eq(L->toks[19].val.str, "If");
    done(L);
}
END_TEST

START_TEST(test_locations)
{
    /* Columns count bytes from 1; a tab is one byte. */
    lexed *L = lex("model m {\n    x = f(1)\n\tlong_name\n}\n");
    expect_kinds(L, (int[]){TOK_MODEL, ID, '{', NL, ID, '=', ID, '(', TOK_INT, ')', NL, ID, NL, TOK_ITEM_END, NL,
                            EOF_, -1});
    expect_at(L, 0, 1, 1);
    expect_at(L, 1, 1, 7);
    expect_at(L, 2, 1, 9);
    expect_at(L, 3, 1, 10);     /* the newline itself */
    expect_at(L, 4, 2, 5);
    expect_at(L, 6, 2, 9);
    expect_at(L, 8, 2, 11);
    expect_at(L, 9, 2, 12);
    expect_at(L, 11, 3, 2);
    expect_at(L, 13, 4, 1);
    expect_at(L, 15, 5, 1);     /* end of file */
    done(L);
}
END_TEST

START_TEST(test_newlines_inside_brackets)
{
    /* ( ) and [ ] let a statement span lines; braces do not. */
    lexed *L = lex("f(a,\n  b)\nl = [1,\n2\n]\n{\nx\n}\n");
    expect_kinds(L, (int[]){ID, '(', ID, ',', ID, ')', NL, ID, '=', '[', TOK_INT, ',', TOK_INT, ']', NL, '{', NL,
                            ID, NL, TOK_ITEM_END, NL, EOF_, -1});
    expect_at(L, 4, 2, 3);
    expect_at(L, 6, 2, 5);
    done(L);
}
END_TEST

START_TEST(test_unbalanced_closers_do_not_go_negative)
{
    /* A stray ')' must not make later newlines disappear. */
    lexed *L = lex("a)\nb]\nc(\n)\nd");
    expect_kinds(L, (int[]){ID, ')', NL, ID, ']', NL, ID, '(', ')', NL, ID, EOF_, -1});
    done(L);
}
END_TEST

START_TEST(test_braces_reset_bracket_depth)
{
    /* An unclosed '(' does not swallow the newlines after the next brace. */
    lexed *L = lex("x = f(\n}\ny\n");
    expect_kinds(L, (int[]){ID, '=', ID, '(', TOK_ITEM_END, NL, ID, NL, EOF_, -1});
    done(L);
}
END_TEST

START_TEST(test_item_end_and_nested_braces)
{
    lexed *L = lex("{ { { } } } }");
    expect_kinds(L, (int[]){'{', '{', '{', '}', '}', TOK_ITEM_END, TOK_ITEM_END, EOF_, -1});
    done(L);
}
END_TEST

START_TEST(test_comments)
{
    lexed *L = lex("# a comment (with an open paren\nx # trailing ( [ {\n#\ny#z\n");
    expect_kinds(L, (int[]){NL, ID, NL, NL, ID, NL, EOF_, -1});
    expect_at(L, 1, 2, 1);
    expect_at(L, 4, 4, 1);
    ck_assert_str_eq(L->toks[4].val.str, "y");
    ck_assert_int_eq(L->d.errors, 0);
    done(L);
}
END_TEST

START_TEST(test_else_on_the_next_line)
{
    /* `}` NEWLINE `else` reads as `} else`, blank lines and comments between. */
    lexed *L = lex("}\n\n  # c\n  else {\n}\nelsewhere\n");
    expect_kinds(L, (int[]){TOK_ITEM_END, TOK_ELSE, '{', NL, TOK_ITEM_END, NL, ID, NL, EOF_, -1});
    done(L);
}
END_TEST

START_TEST(test_numbers)
{
    lexed *L = lex("0 42 0.5 5. 1e-3 1.001e-5 .5 2E+2 9223372036854775807 007");
    expect_kinds(L, (int[]){TOK_INT, TOK_INT, TOK_FLOAT, TOK_FLOAT, TOK_FLOAT, TOK_FLOAT, TOK_FLOAT, TOK_FLOAT,
                            TOK_INT, TOK_INT, EOF_, -1});
    ck_assert_int_eq(L->toks[0].val.ival, 0);
    ck_assert_int_eq(L->toks[1].val.ival, 42);
    ck_assert_double_eq(L->toks[2].val.fval, 0.5);
    ck_assert_double_eq(L->toks[3].val.fval, 5.0);
    ck_assert_double_eq(L->toks[4].val.fval, 1e-3);
    ck_assert_double_eq(L->toks[5].val.fval, 1.001e-5);
    ck_assert_double_eq(L->toks[6].val.fval, 0.5);
    ck_assert_double_eq(L->toks[7].val.fval, 200.0);
    ck_assert(L->toks[8].val.ival == INT64_MAX);
    ck_assert_int_eq(L->toks[9].val.ival, 7);
    ck_assert_int_eq(L->d.errors, 0);
    done(L);
}
END_TEST

START_TEST(test_integer_overflow)
{
    lexed *L = lex("x = 9223372036854775808\ny = 99999999999999999999999999999999999999999");
    expect_kinds(L, (int[]){ID, '=', ERR, NL, ID, '=', ERR, EOF_, -1});
    ck_assert_int_eq(L->d.errors, 2);
    ck_assert_ptr_nonnull(strstr(L->msgs, "t.kdsl:1:5: error: integer constant is too large\n"));
    ck_assert_ptr_nonnull(strstr(L->msgs, "t.kdsl:2:5: error: integer constant is too large\n"));
    done(L);
}
END_TEST

START_TEST(test_bad_numbers)
{
    lexed *L = lex("3x 1.5e 1e999 1e-999");
    expect_kinds(L, (int[]){ERR, ERR, ERR, TOK_FLOAT, EOF_, -1});
    ck_assert_int_eq(L->d.errors, 3);
    ck_assert_ptr_nonnull(strstr(L->msgs, "t.kdsl:1:1: error: invalid suffix on number '3x'\n"));
    ck_assert_ptr_nonnull(strstr(L->msgs, "t.kdsl:1:4: error: invalid suffix on number '1.5e'\n"));
    ck_assert_ptr_nonnull(strstr(L->msgs, "t.kdsl:1:9: error: floating constant is too large\n"));
    done(L);
}
END_TEST

START_TEST(test_strings)
{
    lexed *L = lex("name: \"dense \\\"big\\\" a\\\\b\\n\\t\" \"\" \"caf\xc3\xa9 # not a comment\"");
    expect_kinds(L, (int[]){ID, ':', TOK_STRING, TOK_STRING, TOK_STRING, EOF_, -1});
    ck_assert_str_eq(L->toks[2].val.str, "dense \"big\" a\\b\n\t");
    ck_assert_str_eq(L->toks[3].val.str, "");
    ck_assert_str_eq(L->toks[4].val.str, "caf\xc3\xa9 # not a comment");
    ck_assert_int_eq(L->d.errors, 0);
    done(L);
}
END_TEST

START_TEST(test_unterminated_string)
{
    /* Reported at its opening quote; lexing goes on at the next line. */
    lexed *L = lex("s = \"abc\ny = \"ends with a backslash\\\nz");
    expect_kinds(L, (int[]){ID, '=', ERR, NL, ID, '=', ERR, NL, ID, EOF_, -1});
    ck_assert_int_eq(L->d.errors, 2);
    ck_assert_ptr_nonnull(strstr(L->msgs, "t.kdsl:1:5: error: unterminated string\n"));
    ck_assert_ptr_nonnull(strstr(L->msgs, "t.kdsl:2:5: error: unterminated string\n"));
    expect_at(L, 8, 3, 1);
    done(L);
}
END_TEST

START_TEST(test_bad_escape)
{
    lexed *L = lex("\"a\\qb\"");
    expect_kinds(L, (int[]){ERR, EOF_, -1});
    ck_assert_ptr_nonnull(strstr(L->msgs, "t.kdsl:1:3: error: unknown escape sequence '\\q' in string\n"));
    done(L);
}
END_TEST

START_TEST(test_stray_bytes_one_error_per_run)
{
    lexed *L = lex("x \x01\x02\x03\xff y $?! z . w caf\xc3\xa9");
    expect_kinds(L, (int[]){ID, ERR, ID, ERR, ID, ERR, ID, ID, ERR, EOF_, -1});
    ck_assert_int_eq(L->d.errors, 4);
    ck_assert_ptr_nonnull(strstr(L->msgs, "t.kdsl:1:3: error: stray '\\x01' in program\n"));
    ck_assert_ptr_nonnull(strstr(L->msgs, "t.kdsl:1:10: error: stray '$' in program\n"));
    ck_assert_ptr_nonnull(strstr(L->msgs, "t.kdsl:1:16: error: stray '.' in program\n"));
    ck_assert_ptr_nonnull(strstr(L->msgs, "t.kdsl:1:23: error: stray '\\xc3' in program\n"));
    ck_assert_str_eq(L->toks[7].val.str, "caf");
    done(L);
}
END_TEST

START_TEST(test_nul_bytes)
{
    /* The text is lexed by length: NUL bytes are junk, not the end. */
    static const char text[] = "x\0\0y\n\"a\0b\"\nz";
    lexed *L = lex_bytes(text, sizeof text - 1);
    expect_kinds(L, (int[]){ID, ERR, ID, NL, ERR, NL, ID, EOF_, -1});
    ck_assert_int_eq(L->d.errors, 2);
    ck_assert_ptr_nonnull(strstr(L->msgs, "t.kdsl:1:2: error: stray '\\x00' in program\n"));
    ck_assert_ptr_nonnull(strstr(L->msgs, "t.kdsl:2:3: error: NUL byte in string\n"));
    expect_at(L, 6, 3, 1);
    done(L);
}
END_TEST

START_TEST(test_crlf)
{
    lexed *L = lex("x = 1\r\ny\r\n");
    expect_kinds(L, (int[]){ID, '=', TOK_INT, NL, ID, NL, EOF_, -1});
    ck_assert_int_eq(L->d.errors, 0);
    done(L);
}
END_TEST

START_TEST(test_missing_brace_before_item)
{
    /* `model` inside a body closes what is open, once, with one message. */
    lexed *L = lex("model a {\n repeat 2 {\n  x\nmodel b { f(model: 1) }\n");
    expect_kinds(L, (int[]){TOK_MODEL, ID, '{', NL, TOK_REPEAT, TOK_INT, '{', NL, ID, NL, '}', TOK_ITEM_END,
                            TOK_MODEL, ID, '{', ID, '(', TOK_MODEL, ':', TOK_INT, ')', TOK_ITEM_END, NL, EOF_, -1});
    ck_assert_int_eq(L->d.errors, 1);
    ck_assert_ptr_nonnull(strstr(L->msgs, "t.kdsl:4:1: error: expected '}' before 'model'\n"));
    expect_at(L, 10, 4, 1);
    expect_at(L, 12, 4, 1);
    done(L);
}
END_TEST

START_TEST(test_key_named_like_an_item_keyword)
{
    /* `model: mlp` in a train body is a key, not a missing brace. */
    lexed *L = lex("train t {\n  model : mlp\n}");
    expect_kinds(L, (int[]){TOK_TRAIN, ID, '{', NL, TOK_MODEL, ':', ID, NL, TOK_ITEM_END, EOF_, -1});
    ck_assert_int_eq(L->d.errors, 0);
    done(L);
}
END_TEST

START_TEST(test_nesting_limit)
{
    /* Past the limit, one error and the end: no flood of tokens or messages. */
    size_t n = 200000;
    char *text = malloc(n + 1);
    memset(text, '(', n);
    text[n] = 0;
    lexed *L = lex_bytes(text, n);
    ck_assert_int_eq(L->d.errors, 1);
    ck_assert_int_eq(L->total, AST_MAX_DEPTH + 2);
    ck_assert_int_eq(L->toks[AST_MAX_DEPTH].kind, ERR);
    ck_assert_int_eq(L->toks[AST_MAX_DEPTH + 1].kind, EOF_);
    ck_assert_ptr_nonnull(strstr(L->msgs, "t.kdsl:1:257: error: expression nested too deeply"));
    done(L);
    free(text);

    n = 100000;
    text = malloc(n + 1);
    memset(text, '{', n);
    text[n] = 0;
    L = lex_bytes(text, n);
    ck_assert_int_eq(L->d.errors, 1);
    ck_assert_int_eq(L->total, AST_MAX_DEPTH + 2);
    ck_assert_ptr_nonnull(strstr(L->msgs, "error: blocks nested too deeply"));
    done(L);
    free(text);
}
END_TEST

START_TEST(test_long_identifier)
{
    size_t n = 10000;
    char *text = malloc(n + 8);
    memset(text, 'a', n);
    strcpy(text + n, " = 1");
    lexed *L = lex(text);
    expect_kinds(L, (int[]){ID, '=', TOK_INT, EOF_, -1});
    ck_assert_uint_eq(strlen(L->toks[0].val.str), n);
    expect_at(L, 1, 1, (int)n + 2);
    done(L);
    free(text);
}
END_TEST

START_TEST(test_empty_source)
{
    lexed *L = lex_bytes("", 0);
    expect_kinds(L, (int[]){EOF_, -1});
    expect_at(L, 0, 1, 1);
    done(L);
}
END_TEST

static Suite *lexer_suite(void)
{
    Suite *s = suite_create("lexer");
    TCase *tc = tcase_create("tokens");
    tcase_add_test(tc, test_kinds_of_a_statement);
    tcase_add_test(tc, test_keywords);
    tcase_add_test(tc, test_locations);
    tcase_add_test(tc, test_newlines_inside_brackets);
    tcase_add_test(tc, test_unbalanced_closers_do_not_go_negative);
    tcase_add_test(tc, test_braces_reset_bracket_depth);
    tcase_add_test(tc, test_item_end_and_nested_braces);
    tcase_add_test(tc, test_comments);
    tcase_add_test(tc, test_else_on_the_next_line);
    tcase_add_test(tc, test_numbers);
    tcase_add_test(tc, test_strings);
    tcase_add_test(tc, test_crlf);
    tcase_add_test(tc, test_empty_source);
    tcase_add_test(tc, test_long_identifier);
    suite_add_tcase(s, tc);

    TCase *errs = tcase_create("errors");
    tcase_add_test(errs, test_integer_overflow);
    tcase_add_test(errs, test_bad_numbers);
    tcase_add_test(errs, test_unterminated_string);
    tcase_add_test(errs, test_bad_escape);
    tcase_add_test(errs, test_stray_bytes_one_error_per_run);
    tcase_add_test(errs, test_nul_bytes);
    tcase_add_test(errs, test_missing_brace_before_item);
    tcase_add_test(errs, test_key_named_like_an_item_keyword);
    tcase_add_test(errs, test_nesting_limit);
    suite_add_tcase(s, errs);
    return s;
}

int main(void) { return tu_run_suite(lexer_suite()); }
