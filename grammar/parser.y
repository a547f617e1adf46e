/* parser.y — KDSL's grammar (docs/language.md), building the tree of ast.h.
 *
 * Statements end at a newline or ';' (the lexer drops newlines inside ( ) and
 * [ ]). Error recovery works at two levels: a bad statement is skipped up to
 * its end of line, a bad item header up to the item's closing brace, which the
 * lexer marks as ITEM_END. Each recovery ends with yyerrok, so that the next
 * line's mistake is reported too, however close. Actions stay one-liners; the
 * constructors are at the bottom of this file. */

%require "3.8"
%define api.pure full
%define api.prefix {kdyy}
%define api.token.prefix {TOK_}
%define api.location.type {kd_loc}
%define parse.error custom
%define parse.lac full
%locations
%expect 0

%lex-param {yyscan_t scanner}
%parse-param {yyscan_t scanner} {kd_parse_ctx *pc}

%code requires {
#include "ast.h"

#ifndef YY_TYPEDEF_YY_SCANNER_T
#define YY_TYPEDEF_YY_SCANNER_T
typedef void *yyscan_t;
#endif

/* Everything one parse needs, shared by the lexer (as yyextra) and the parser. */
typedef struct kd_parse_ctx {
    kd_arena *a;
    const kd_source *src;
    kd_diags *d;
    kd_vec items;               /* ast_item *, pushed as each item is reduced */
    /* lexer position */
    int line, col;
    size_t off;                 /* bytes consumed */
    size_t tok_off, tok_len;    /* the last token's text, for messages */
    int tok_line, prev_tok_line; /* lines of the last two tokens */
    /* nesting: ( [ suppress newlines; braces are counted to find ITEM_END */
    int paren_depth, brace_depth;
    /* a newline's look-ahead for `else`, cached over a run of blank lines */
    size_t peek_start, peek_end;
    bool peek_else;
    /* tokens queued by the missing-brace repair (lexer.l) */
    int pending_closes, pending_token;
    kd_loc pending_loc;
    long nodes;                 /* tree nodes built, against MAX_NODES */
    bool fatal;                 /* input too deep or too big to go on: stop quietly */
} kd_parse_ctx;
}

%code provides {
/* flex's header names these types without our prefix. */
#define YYSTYPE KDYYSTYPE
#define YYLTYPE KDYYLTYPE
int kdyylex(KDYYSTYPE *lval, KDYYLTYPE *lloc, yyscan_t scanner);
/* Sets up `pc` for a fresh lex of `src` (parse.c, and the lexer tests). */
void kd_lex_start(kd_parse_ctx *pc, kd_arena *a, const kd_source *src, kd_diags *d);
}

%code {
#include <string.h>

/* Nodes carry the location of their first token. */
#define YYLLOC_DEFAULT(Cur, Rhs, N) ((Cur) = (N) ? YYRHSLOC(Rhs, 1) : YYRHSLOC(Rhs, 0))
/* Past this the input is hostile; "memory exhausted" becomes a clean error. */
#define YYMAXDEPTH 10000
/* No model needs more (ResNet50 takes a few thousand); it bounds the parser's
 * memory, about 150 bytes a node, to some 300 MB whatever the file. */
enum { MAX_NODES = 2000000 };

static void kdyyerror(const kd_loc *loc, yyscan_t scanner, kd_parse_ctx *pc, const char *msg);

static kd_vec *new_vec(kd_parse_ctx *pc);
static kd_vec *push(kd_parse_ctx *pc, kd_vec *v, void *item);
static ast_body body_of(kd_vec *stmts);
static ast_item *new_item(kd_parse_ctx *pc, ast_item_kind kind, kd_loc loc, const char *name, kd_loc name_loc);
static ast_item *item_with_body(kd_parse_ctx *pc, ast_item *it, kd_vec *params, ast_body body);
static ast_item *item_with_settings(kd_parse_ctx *pc, ast_item *it, kd_vec *settings);
static ast_param *new_param(kd_parse_ctx *pc, kd_loc loc, const char *name, ast_expr *def);
static ast_stmt *new_stmt(kd_parse_ctx *pc, ast_stmt_kind kind, kd_loc loc, const char *name, kd_loc name_loc,
                          ast_expr *expr);
static ast_stmt *new_var(kd_parse_ctx *pc, ast_stmt_kind kind, kd_loc loc, const char *name, kd_loc name_loc,
                         ast_expr *shape, ast_expr *init, kd_vec *opts);
static ast_stmt *new_unpack(kd_parse_ctx *pc, kd_loc loc, const char *first, kd_vec *rest, ast_expr *expr);
static ast_stmt *new_repeat(kd_parse_ctx *pc, kd_loc loc, ast_expr *count, ast_body body);
static ast_stmt *new_if(kd_parse_ctx *pc, kd_loc loc, ast_expr *cond, ast_body then, ast_body *otherwise);
static ast_expr *new_leaf(kd_parse_ctx *pc, ast_expr_kind kind, kd_loc loc);
static ast_expr *new_name(kd_parse_ctx *pc, kd_loc loc, const char *name);
static ast_expr *new_binary(kd_parse_ctx *pc, kd_loc loc, int op, ast_expr *lhs, ast_expr *rhs);
static ast_expr *new_neg(kd_parse_ctx *pc, kd_loc loc, ast_expr *operand);
static ast_expr *new_call(kd_parse_ctx *pc, kd_loc loc, const char *name, kd_vec *args);
static ast_expr *new_list(kd_parse_ctx *pc, kd_loc loc, kd_vec *elems);
static ast_arg *new_arg(kd_parse_ctx *pc, kd_loc loc, const char *key, ast_expr *value);
}

%initial-action { @$ = (kd_loc){pc->src, 1, 1}; }

%union {
    int64_t ival;
    double fval;
    const char *str;
    ast_expr *expr;
    ast_stmt *stmt;
    ast_item *item;
    ast_arg *arg;
    ast_param *param;
    ast_body body;
    kd_vec *vec;
}

/* The quoted names are what syntax errors print. */
%token <str>  IDENT "identifier"
%token <ival> INT "integer"
%token <fval> FLOAT "number"
%token <str>  STRING "string"
%token NEWLINE "end of line"
%token ITEM_END "'}'"    /* the '}' that closes an item (lexer.l) */
%token MODEL "'model'" BLOCK "'block'" LAYER "'layer'" TRAIN "'train'"
%token INPUT "'input'" OUTPUT "'output'" WEIGHT "'weight'" STATE "'state'" UPDATE "'update'"
%token SHARED "'shared'" REPEAT "'repeat'" IF "'if'" ELSE "'else'"
%token TRAINING "'training'" TRUE "'true'" FALSE "'false'"

%type <item> item layer_head block_head model_head train_head
%type <body> item_body block_body
%type <vec> name_list stmts params param_list train_body settings args arg_list elems elem_list var_opts
%type <stmt> stmt if_stmt
%type <param> param
%type <arg> arg setting
%type <expr> expr primary shape var_init
%type <str> key keyword

%left '+' '-'
%left '*' '/'
%left '@'
%precedence NEG

%%

program
    : %empty
    | program sep
    | program item                      { push(pc, &pc->items, $2); }
    | program error ITEM_END            { yyerrok; } /* a broken item header: skip the item */
    | program error item                { yyerrok; push(pc, &pc->items, $3); }
    ;

sep
    : NEWLINE
    | ';'
    ;

/* Newlines allowed before an opening brace. */
nls
    : %empty
    | nls NEWLINE
    ;

/* ---- items --------------------------------------------------------------- */

item
    : layer_head params nls item_body   { $$ = item_with_body(pc, $1, $2, $4); }
    | block_head params nls item_body   { $$ = item_with_body(pc, $1, $2, $4); }
    | model_head params nls item_body   { $$ = item_with_body(pc, $1, $2, $4); }
    | train_head nls train_body         { $$ = item_with_settings(pc, $1, $3); }
    ;

layer_head: LAYER IDENT                 { $$ = new_item(pc, ITEM_LAYER, @1, $2, @2); } ;
block_head: BLOCK IDENT                 { $$ = new_item(pc, ITEM_BLOCK, @1, $2, @2); } ;
model_head: MODEL IDENT                 { $$ = new_item(pc, ITEM_MODEL, @1, $2, @2); } ;
train_head: TRAIN IDENT                 { $$ = new_item(pc, ITEM_TRAIN, @1, $2, @2); } ;

/* (units, activation: linear). Optional: `model m { }` has none. */
params
    : %empty                            { $$ = new_vec(pc); }
    | '(' ')'                           { $$ = new_vec(pc); }
    | '(' param_list ')'                { $$ = $2; }
    | '(' param_list ',' ')'            { $$ = $2; }
    ;

param_list
    : param                             { $$ = push(pc, new_vec(pc), $1); }
    | param_list ',' param              { $$ = push(pc, $1, $3); }
    ;

param
    : IDENT                             { $$ = new_param(pc, @1, $1, NULL); }
    | IDENT ':' expr                    { $$ = new_param(pc, @1, $1, $3); }
    ;

/* train NAME { key: value ... }, laid out like a body of statements. */
train_body
    : '{' settings ITEM_END             { $$ = $2; }
    | '{' settings setting ITEM_END     { $$ = push(pc, $2, $3); }
    | '{' settings error ITEM_END       { $$ = $2; }
    ;

settings
    : %empty                            { $$ = new_vec(pc); }
    | settings sep
    | settings setting sep              { $$ = push(pc, $1, $2); }
    | settings error sep                { yyerrok; }
    ;

setting
    : key ':' expr                      { $$ = new_arg(pc, @1, $1, $3); }
    ;

/* ---- statements ---------------------------------------------------------- */

/* The last statement before the closing brace needs no separator. */
item_body
    : '{' stmts ITEM_END                { $$ = body_of($2); }
    | '{' stmts stmt ITEM_END           { $$ = body_of(push(pc, $2, $3)); }
    | '{' stmts error ITEM_END          { $$ = body_of($2); }
    ;

block_body
    : '{' stmts '}'                     { $$ = body_of($2); }
    | '{' stmts stmt '}'                { $$ = body_of(push(pc, $2, $3)); }
    | '{' stmts error '}'               { $$ = body_of($2); }
    ;

stmts
    : %empty                            { $$ = new_vec(pc); }
    | stmts sep
    | stmts stmt sep                    { $$ = push(pc, $1, $2); }
    | stmts error sep                   { yyerrok; } /* skip the rest of a bad statement */
    ;

stmt
    : INPUT IDENT ':' shape             { $$ = new_var(pc, STMT_INPUT, @1, $2, @2, $4, NULL, NULL); }
    | INPUT IDENT ':' IDENT shape       { $$ = new_var(pc, STMT_INPUT, @1, $2, @2, $5, NULL, NULL); $$->dtype = $4; }
    | IDENT '=' expr                    { $$ = new_stmt(pc, STMT_ASSIGN, @1, $1, @1, $3); }
    | IDENT ',' name_list '=' expr      { $$ = new_unpack(pc, @1, $1, $3, $5); }
    | expr                              { $$ = new_stmt(pc, STMT_EXPR, @1, NULL, @1, $1); }
    | OUTPUT expr                       { $$ = new_stmt(pc, STMT_OUTPUT, @1, NULL, @1, $2); }
    | OUTPUT IDENT '=' expr             { $$ = new_stmt(pc, STMT_OUTPUT, @1, $2, @2, $4); }
    | REPEAT expr nls block_body        { $$ = new_repeat(pc, @1, $2, $4); if (!$$) YYERROR; }
    | SHARED IDENT '=' expr             { $$ = new_stmt(pc, STMT_SHARED, @1, $2, @2, $4); }
    | WEIGHT IDENT ':' shape var_init var_opts { $$ = new_var(pc, STMT_WEIGHT, @1, $2, @2, $4, $5, $6); }
    | STATE IDENT ':' shape var_init var_opts  { $$ = new_var(pc, STMT_STATE, @1, $2, @2, $4, $5, $6); }
    | UPDATE IDENT '=' expr             { $$ = new_stmt(pc, STMT_UPDATE, @1, $2, @2, $4); }
    | if_stmt
    ;

/* the names after the first of `y, h, c = LSTM(...)` */
name_list
    : IDENT                             { $$ = push(pc, new_vec(pc), (void *)$1); }
    | name_list ',' IDENT               { $$ = push(pc, $1, (void *)$3); }
    ;

shape
    : '[' elems ']'                     { $$ = new_list(pc, @1, $2); if (!$$) YYERROR; }
    ;

var_init
    : %empty                            { $$ = NULL; }
    | '=' expr                          { $$ = $2; }
    ;

/* weight w: [4, 3] = zeros, trainable: false */
var_opts
    : %empty                            { $$ = new_vec(pc); }
    | var_opts ',' key ':' expr         { $$ = push(pc, $1, new_arg(pc, @3, $3, $5)); }
    ;

/* `if training { } else { }`; the condition is any expression for sema to judge.
 * `else if` chains nest as an else-body of one if statement. */
if_stmt
    : IF expr nls block_body            { $$ = new_if(pc, @1, $2, $4, NULL); if (!$$) YYERROR; }
    | IF expr nls block_body ELSE nls block_body { $$ = new_if(pc, @1, $2, $4, &$7); if (!$$) YYERROR; }
    | IF expr nls block_body ELSE if_stmt
        { ast_body b = body_of(push(pc, new_vec(pc), $6)); $$ = new_if(pc, @1, $2, $4, &b); if (!$$) YYERROR; }
    ;

/* ---- expressions --------------------------------------------------------- */

/* Unary minus binds tightest, then @, then * /, then + -; all left-assoc. */
expr
    : expr '+' expr                     { $$ = new_binary(pc, @1, '+', $1, $3); if (!$$) YYERROR; }
    | expr '-' expr                     { $$ = new_binary(pc, @1, '-', $1, $3); if (!$$) YYERROR; }
    | expr '*' expr                     { $$ = new_binary(pc, @1, '*', $1, $3); if (!$$) YYERROR; }
    | expr '/' expr                     { $$ = new_binary(pc, @1, '/', $1, $3); if (!$$) YYERROR; }
    | expr '@' expr                     { $$ = new_binary(pc, @1, '@', $1, $3); if (!$$) YYERROR; }
    | '-' expr %prec NEG                { $$ = new_neg(pc, @1, $2); if (!$$) YYERROR; }
    | primary
    ;

primary
    : INT                               { $$ = new_leaf(pc, EXPR_INT, @1); $$->ival = $1; }
    | FLOAT                             { $$ = new_leaf(pc, EXPR_FLOAT, @1); $$->fval = $1; }
    | STRING                            { $$ = new_leaf(pc, EXPR_STRING, @1); $$->str = $1; }
    | TRUE                              { $$ = new_leaf(pc, EXPR_BOOL, @1); $$->ival = 1; }
    | FALSE                             { $$ = new_leaf(pc, EXPR_BOOL, @1); $$->ival = 0; }
    | TRAINING                          { $$ = new_leaf(pc, EXPR_TRAINING, @1); }
    | IDENT                             { $$ = new_name(pc, @1, $1); }
    | IDENT '(' args ')'                { $$ = new_call(pc, @1, $1, $3); if (!$$) YYERROR; }
    | '[' elems ']'                     { $$ = new_list(pc, @1, $2); if (!$$) YYERROR; }
    | '(' expr ')'                      { $$ = $2; }
    ;

/* Positional arguments, then key: value; a trailing comma is fine. */
args
    : %empty                            { $$ = new_vec(pc); }
    | arg_list
    | arg_list ','
    ;

arg_list
    : arg                               { $$ = push(pc, new_vec(pc), $1); }
    | arg_list ',' arg                  { $$ = push(pc, $1, $3); }
    ;

arg
    : expr                              { $$ = new_arg(pc, @1, NULL, $1); }
    | key ':' expr                      { $$ = new_arg(pc, @1, $1, $3); }
    ;

elems
    : %empty                            { $$ = new_vec(pc); }
    | elem_list
    | elem_list ','
    ;

elem_list
    : expr                              { $$ = push(pc, new_vec(pc), $1); }
    | elem_list ',' expr                { $$ = push(pc, $1, $3); }
    ;

/* A key may be any word, keywords included (`training: true`). */
key
    : IDENT
    | keyword
    ;

keyword
    : MODEL { $$ = "model"; } | BLOCK { $$ = "block"; } | LAYER { $$ = "layer"; }
    | TRAIN { $$ = "train"; } | INPUT { $$ = "input"; } | OUTPUT { $$ = "output"; }
    | WEIGHT { $$ = "weight"; } | STATE { $$ = "state"; } | UPDATE { $$ = "update"; }
    | SHARED { $$ = "shared"; } | REPEAT { $$ = "repeat"; } | IF { $$ = "if"; }
    | ELSE { $$ = "else"; } | TRAINING { $$ = "training"; } | TRUE { $$ = "true"; }
    | FALSE { $$ = "false"; }
    ;

%%

/* ---- syntax errors ------------------------------------------------------- */

/* A token as messages name it: the %token aliases, but one name for numbers. */
static const char *token_name(yysymbol_kind_t k)
{
    return k == YYSYMBOL_INT || k == YYSYMBOL_FLOAT ? "number" : yysymbol_name(k);
}

/* The ten tokens that can start an expression: when all are expected, the
 * message says "expression" instead of listing them. */
static bool starts_expr(yysymbol_kind_t k)
{
    switch (k) {
    case YYSYMBOL_IDENT: case YYSYMBOL_INT: case YYSYMBOL_FLOAT: case YYSYMBOL_STRING:
    case YYSYMBOL_TRUE: case YYSYMBOL_FALSE: case YYSYMBOL_TRAINING:
        return true;
    default: {
        /* character tokens have generated enum names; go by their text */
        const char *name = yysymbol_name(k);
        return strcmp(name, "'-'") == 0 || strcmp(name, "'('") == 0 || strcmp(name, "'['") == 0;
    }
    }
}

static bool is_keyword(yysymbol_kind_t k) { return k >= YYSYMBOL_MODEL && k <= YYSYMBOL_FALSE; }

static bool is_operator(yysymbol_kind_t k)
{
    const char *name = yysymbol_name(k);
    return strlen(name) == 3 && name[0] == '\'' && strchr("+-*/@", name[1]);
}

/* `unexpected ')', expecting identifier or '['`, as bison would put it, with
 * readable token names and the offending word quoted. */
static int yyreport_syntax_error(const yypcontext_t *ctx, yyscan_t scanner, kd_parse_ctx *pc)
{
    (void)scanner;
    /* A token that starts a line inside ( ) or [ ] is a sign of a bracket left
     * unclosed: let newlines end statements again, so that recovery resumes at
     * the next line rather than at the next brace. (A mistake in the middle of
     * a line of a call spanning lines keeps the count, to find the call's end.) */
    if (pc->tok_line != pc->prev_tok_line) pc->paren_depth = 0;
    if (pc->fatal) return 0;
    kd_diags *d = pc->d;
    kd_loc loc = *yypcontext_location(ctx);
    if (d->errors >= (d->max_errors ? d->max_errors : 50)) {
        d->errors++;            /* counted, no longer printed: spare the work */
        return 0;
    }

    char msg[512];
    size_t n = 0;
#define ADD(...) (n < sizeof msg ? n += (size_t)snprintf(msg + n, sizeof msg - n, __VA_ARGS__) : n)
    yysymbol_kind_t tok = yypcontext_token(ctx);
    if (tok == YYSYMBOL_YYEMPTY) {
        ADD("syntax error");
    } else {
        ADD("unexpected %s", token_name(tok));
        if (tok == YYSYMBOL_IDENT) {
            size_t len = pc->tok_len > 32 ? 32 : pc->tok_len;
            ADD(" '%.*s%s'", (int)len, pc->src->text + pc->tok_off, pc->tok_len > len ? "..." : "");
        }
    }

    yysymbol_kind_t expected[YYNTOKENS];
    int nexp = yypcontext_expected_tokens(ctx, expected, YYNTOKENS);
    const char *names[YYNTOKENS];
    int nnames = 0, nstart = 0, nops = 0;
    for (int i = 0; i < nexp; i++) {
        nstart += starts_expr(expected[i]);
        nops += is_operator(expected[i]);
    }
    bool all_starts = nstart == 10, all_ops = nops == 5;    /* see starts_expr, is_operator */
    /* `model` is expected along with expressions only where an argument's key
     * may be any word: keys are not worth listing either. */
    bool any_key = false;
    for (int i = 0; i < nexp; i++) any_key |= all_starts && expected[i] == YYSYMBOL_MODEL;
    bool closing = false;
    for (int i = 0; i < nexp; i++) {
        /* After a complete operand every operator could follow: not worth saying. */
        if (all_ops && is_operator(expected[i]) && !(all_starts && starts_expr(expected[i]))) continue;
        if (any_key && is_keyword(expected[i]) && !starts_expr(expected[i])) continue;
        const char *name = all_starts && starts_expr(expected[i]) ? "expression" : token_name(expected[i]);
        closing |= strcmp(name, "'}'") == 0;
        bool seen = false;
        for (int j = 0; j < nnames; j++) seen |= strcmp(names[j], name) == 0;
        if (!seen) names[nnames++] = name;
    }
    /* A long list helps nobody; but at the end of the file, the brace is the news. */
    if (nnames > 0 && nnames <= 4) {
        ADD(", expecting ");
        for (int i = 0; i < nnames; i++) ADD("%s%s", i ? " or " : "", names[i]);
    } else if (tok == YYSYMBOL_YYEOF && closing) {
        ADD(", expecting '}'");
    }
#undef ADD
    kd_error(d, loc, "%s", msg);
    return 0;
}

/* Bison calls this only when its stack is full: input nested beyond reason. */
static void kdyyerror(const kd_loc *loc, yyscan_t scanner, kd_parse_ctx *pc, const char *msg)
{
    (void)scanner;
    if (pc->fatal) return;
    if (strcmp(msg, "memory exhausted") == 0)
        kd_error(pc->d, *loc, "expression nested too deeply");
    else
        kd_error(pc->d, *loc, "%s", msg);
    pc->fatal = true;
}

/* ---- tree constructors ---------------------------------------------------- */

/* Each expression remembers its height, so that trees too deep for a recursive
 * walk are refused as they are built. The box stays private to the parser. */
typedef struct expr_box {
    ast_expr e;
    int height;
} expr_box;

static int height(const ast_expr *e) { return e ? ((const expr_box *)e)->height : 0; }

static kd_vec *new_vec(kd_parse_ctx *pc) { return kd_alloc(pc->a, sizeof(kd_vec)); }

static kd_vec *push(kd_parse_ctx *pc, kd_vec *v, void *item)
{
    kd_vec_push(pc->a, v, item);
    return v;
}

static ast_body body_of(kd_vec *stmts) { return (ast_body){(ast_stmt **)stmts->items, stmts->len}; }

static ast_item *new_item(kd_parse_ctx *pc, ast_item_kind kind, kd_loc loc, const char *name, kd_loc name_loc)
{
    ast_item *it = kd_alloc(pc->a, sizeof *it);
    it->kind = kind;
    it->loc = loc;
    it->name = name;
    it->name_loc = name_loc;
    return it;
}

static ast_item *item_with_body(kd_parse_ctx *pc, ast_item *it, kd_vec *params, ast_body body)
{
    it->nparams = params->len;
    if (params->len) {
        it->params = kd_alloc_array(pc->a, (size_t)params->len, sizeof *it->params);
        for (int i = 0; i < params->len; i++) it->params[i] = *(ast_param *)params->items[i];
    }
    it->body = body;
    return it;
}

static void flatten_args(kd_parse_ctx *pc, kd_vec *v, ast_arg **out, int *n)
{
    *n = v ? v->len : 0;
    *out = NULL;
    if (!*n) return;
    *out = kd_alloc_array(pc->a, (size_t)*n, sizeof **out);
    for (int i = 0; i < *n; i++) (*out)[i] = *(ast_arg *)v->items[i];
}

static ast_item *item_with_settings(kd_parse_ctx *pc, ast_item *it, kd_vec *settings)
{
    flatten_args(pc, settings, &it->settings, &it->nsettings);
    return it;
}

static ast_param *new_param(kd_parse_ctx *pc, kd_loc loc, const char *name, ast_expr *def)
{
    ast_param *p = kd_alloc(pc->a, sizeof *p);
    *p = (ast_param){name, def, loc};
    return p;
}

static void count_node(kd_parse_ctx *pc, kd_loc loc)
{
    if (++pc->nodes > MAX_NODES && !pc->fatal) {
        kd_error(pc->d, loc, "program too large (more than %d syntax nodes)", MAX_NODES);
        pc->fatal = true;       /* the lexer now ends the input */
    }
}

/* Statements too keep their height (nesting of bodies), for the same reason:
 * braces are limited by the lexer, but `else if` chains nest without them. */
typedef struct stmt_box {
    ast_stmt s;
    int height;
} stmt_box;

static int stmt_height(const ast_stmt *s) { return ((const stmt_box *)s)->height; }

static int body_height(const ast_body *b)
{
    int h = 0;
    for (int i = 0; i < b->nstmts; i++)
        if (stmt_height(b->stmts[i]) > h) h = stmt_height(b->stmts[i]);
    return h;
}

static ast_stmt *new_stmt(kd_parse_ctx *pc, ast_stmt_kind kind, kd_loc loc, const char *name, kd_loc name_loc,
                          ast_expr *expr)
{
    count_node(pc, loc);
    stmt_box *b = kd_alloc(pc->a, sizeof *b);
    ast_stmt *s = &b->s;
    s->kind = kind;
    s->loc = loc;
    s->name = name;
    s->name_loc = name_loc;
    s->expr = expr;
    b->height = 1;
    return s;
}

/* `a, b, c = EXPR`: one assignment binding each name to one of EXPR's values. */
static ast_stmt *new_unpack(kd_parse_ctx *pc, kd_loc loc, const char *first, kd_vec *rest, ast_expr *expr)
{
    ast_stmt *s = new_stmt(pc, STMT_ASSIGN, loc, first, loc, expr);
    s->nnames = 1 + rest->len;
    s->names = kd_alloc_array(pc->a, (size_t)s->nnames, sizeof *s->names);
    s->names[0] = first;
    for (int i = 0; i < rest->len; i++) s->names[1 + i] = rest->items[i];
    return s;
}

static ast_stmt *new_var(kd_parse_ctx *pc, ast_stmt_kind kind, kd_loc loc, const char *name, kd_loc name_loc,
                         ast_expr *shape, ast_expr *init, kd_vec *opts)
{
    ast_stmt *s = new_stmt(pc, kind, loc, name, name_loc, NULL);
    s->shape = shape;
    s->init = init;
    flatten_args(pc, opts, &s->args, &s->nargs);
    return s;
}

/* A statement over bodies of the given height; NULL (error reported) when too deep. */
static ast_stmt *new_compound(kd_parse_ctx *pc, ast_stmt_kind kind, kd_loc loc, ast_expr *expr, int body_h)
{
    if (body_h >= AST_MAX_DEPTH) {
        kd_error(pc->d, loc, "blocks nested too deeply (more than %d levels)", AST_MAX_DEPTH);
        return NULL;
    }
    ast_stmt *s = new_stmt(pc, kind, loc, NULL, loc, expr);
    ((stmt_box *)s)->height = body_h + 1;
    return s;
}

static ast_stmt *new_repeat(kd_parse_ctx *pc, kd_loc loc, ast_expr *count, ast_body body)
{
    ast_stmt *s = new_compound(pc, STMT_REPEAT, loc, count, body_height(&body));
    if (s) s->body = body;
    return s;
}

static ast_stmt *new_if(kd_parse_ctx *pc, kd_loc loc, ast_expr *cond, ast_body then, ast_body *otherwise)
{
    int h = body_height(&then);
    if (otherwise && body_height(otherwise) > h) h = body_height(otherwise);
    ast_stmt *s = new_compound(pc, STMT_IF, loc, cond, h);
    if (!s) return NULL;
    s->body = then;
    if (otherwise) {
        s->else_body = *otherwise;
        s->has_else = true;
    }
    return s;
}

static ast_expr *new_leaf(kd_parse_ctx *pc, ast_expr_kind kind, kd_loc loc)
{
    count_node(pc, loc);
    expr_box *b = kd_alloc(pc->a, sizeof *b);
    b->e.kind = kind;
    b->e.loc = loc;
    b->height = 1;
    return &b->e;
}

static ast_expr *new_name(kd_parse_ctx *pc, kd_loc loc, const char *name)
{
    ast_expr *e = new_leaf(pc, EXPR_NAME, loc);
    e->name = name;
    return e;
}

/* An inner node over children of the given height; NULL (error reported) when
 * the tree would grow past AST_MAX_DEPTH. */
static ast_expr *new_inner(kd_parse_ctx *pc, ast_expr_kind kind, kd_loc loc, int child_height)
{
    if (child_height >= AST_MAX_DEPTH) {
        kd_error(pc->d, loc, "expression nested too deeply (more than %d levels)", AST_MAX_DEPTH);
        return NULL;
    }
    ast_expr *e = new_leaf(pc, kind, loc);
    ((expr_box *)e)->height = child_height + 1;
    return e;
}

static ast_expr *new_binary(kd_parse_ctx *pc, kd_loc loc, int op, ast_expr *lhs, ast_expr *rhs)
{
    int h = height(lhs) > height(rhs) ? height(lhs) : height(rhs);
    ast_expr *e = new_inner(pc, EXPR_BINARY, loc, h);
    if (!e) return NULL;
    e->op = op;
    e->lhs = lhs;
    e->rhs = rhs;
    return e;
}

/* -3 and -0.5 become literals: sema then sees `axis: -1` as the integer it is. */
static ast_expr *new_neg(kd_parse_ctx *pc, kd_loc loc, ast_expr *operand)
{
    if (operand->kind == EXPR_INT || operand->kind == EXPR_FLOAT) {
        operand->ival = -operand->ival;     /* cannot overflow: literals are >= -INT64_MAX */
        operand->fval = -operand->fval;
        operand->loc = loc;
        return operand;
    }
    ast_expr *e = new_inner(pc, EXPR_NEG, loc, height(operand));
    if (e) e->lhs = operand;
    return e;
}

static ast_expr *new_call(kd_parse_ctx *pc, kd_loc loc, const char *name, kd_vec *args)
{
    int h = 0;
    bool keyword_seen = false;
    for (int i = 0; i < args->len; i++) {
        ast_arg *a = args->items[i];
        if (height(a->value) > h) h = height(a->value);
        if (a->key) keyword_seen = true;
        else if (keyword_seen) kd_error(pc->d, a->loc, "positional argument follows keyword argument");
    }
    ast_expr *e = new_inner(pc, EXPR_CALL, loc, h);
    if (!e) return NULL;
    e->name = name;
    flatten_args(pc, args, &e->args, &e->nargs);
    return e;
}

static ast_expr *new_list(kd_parse_ctx *pc, kd_loc loc, kd_vec *elems)
{
    int h = 0;
    for (int i = 0; i < elems->len; i++)
        if (height(elems->items[i]) > h) h = height(elems->items[i]);
    ast_expr *e = new_inner(pc, EXPR_LIST, loc, h);
    if (!e) return NULL;
    e->items = (ast_expr **)elems->items;
    e->nitems = elems->len;
    return e;
}

static ast_arg *new_arg(kd_parse_ctx *pc, kd_loc loc, const char *key, ast_expr *value)
{
    ast_arg *a = kd_alloc(pc->a, sizeof *a);
    *a = (ast_arg){key, value, loc};
    return a;
}
