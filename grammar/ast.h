/* ast.h — the syntax tree the parser builds (grammar/parser.y) and sema reads.
 * Every node carries the location of its first token. All memory comes from
 * the compilation's arena. */
#ifndef KDSL_AST_H
#define KDSL_AST_H

#include "kdsl.h"

/* The parser refuses expressions (and nested bodies) deeper than this, so a
 * recursive walk over the tree needs at most this many frames per level. */
#define AST_MAX_DEPTH 256

typedef struct ast_expr ast_expr;
typedef struct ast_stmt ast_stmt;

typedef enum ast_expr_kind {
    EXPR_INT,      /* 42            ival */
    EXPR_FLOAT,    /* 0.5, 1e-3     fval */
    EXPR_STRING,   /* "..."         str (unescaped) */
    EXPR_BOOL,     /* true false    ival 0/1 */
    EXPR_NAME,     /* x, relu, same name */
    EXPR_LIST,     /* [a, b]        items */
    EXPR_NEG,      /* -a            lhs */
    EXPR_BINARY,   /* a OP b        op ('+','-','*','/','@'), lhs, rhs */
    EXPR_CALL,     /* name(args)    name, args */
    EXPR_TRAINING, /* the keyword `training` used as a value */
} ast_expr_kind;

typedef struct ast_arg {
    const char *key;       /* NULL for a positional argument */
    ast_expr *value;
    kd_loc loc;
} ast_arg;

struct ast_expr {
    ast_expr_kind kind;
    kd_loc loc;
    int64_t ival;
    double fval;
    const char *str;       /* EXPR_STRING */
    const char *name;      /* EXPR_NAME, EXPR_CALL (the callee) */
    int op;                /* EXPR_BINARY */
    ast_expr *lhs, *rhs;   /* EXPR_NEG (lhs), EXPR_BINARY */
    ast_expr **items;      /* EXPR_LIST */
    int nitems;
    ast_arg *args;         /* EXPR_CALL, in source order */
    int nargs;
};

typedef enum ast_stmt_kind {
    STMT_INPUT,    /* input NAME: [dtype] [SHAPE]       name, dtype, shape */
    STMT_ASSIGN,   /* NAME = EXPR                        name, expr;
                    * NAME, NAME... = EXPR (a layer's several outputs)  names, nnames >= 2 */
    STMT_EXPR,     /* EXPR                               expr */
    STMT_OUTPUT,   /* output [NAME =] EXPR               name (may be NULL), expr */
    STMT_REPEAT,   /* repeat EXPR { BODY }               expr (count), body */
    STMT_SHARED,   /* shared NAME = CALL                 name, expr */
    STMT_WEIGHT,   /* weight NAME: SHAPE [= INIT] [, key: value]...  name, shape, init, args */
    STMT_STATE,    /* state NAME: SHAPE [= INIT] [, key: value]...   name, shape, init, args */
    STMT_UPDATE,   /* update NAME = EXPR                 name, expr */
    STMT_IF,       /* if training { BODY } [else { ELSE }]   body, else_body */
} ast_stmt_kind;

typedef struct ast_block_body {
    ast_stmt **stmts;
    int nstmts;
} ast_body;

struct ast_stmt {
    ast_stmt_kind kind;
    kd_loc loc;
    const char *name;
    kd_loc name_loc;
    const char **names;    /* STMT_ASSIGN of several names: all of them (names[0] == name) */
    int nnames;
    const char *dtype;     /* STMT_INPUT: "f32" unless given; NULL if not given */
    ast_expr *shape;       /* EXPR_LIST of integer expressions */
    ast_expr *expr;
    ast_expr *init;        /* STMT_WEIGHT/STATE initializer (a name or call), or NULL */
    ast_arg *args;         /* STMT_WEIGHT/STATE trailing options: trainable: false */
    int nargs;
    ast_body body;         /* STMT_REPEAT, STMT_IF (then) */
    ast_body else_body;    /* STMT_IF */
    bool has_else;
};

typedef enum ast_item_kind {
    ITEM_LAYER,    /* layer NAME(PARAMS) { BODY } */
    ITEM_BLOCK,    /* block NAME(PARAMS) { BODY } */
    ITEM_MODEL,    /* model NAME[(PARAMS)] { BODY } */
    ITEM_TRAIN,    /* train NAME { KEY: VALUE ... } */
} ast_item_kind;

typedef struct ast_param {
    const char *name;
    ast_expr *def;         /* NULL: required */
    kd_loc loc;
} ast_param;

typedef struct ast_item {
    ast_item_kind kind;
    kd_loc loc;
    const char *name;
    kd_loc name_loc;
    ast_param *params;
    int nparams;
    ast_body body;         /* layer, block, model */
    ast_arg *settings;     /* train: key: value, in source order */
    int nsettings;
} ast_item;

typedef struct ast_program {
    const kd_source *src;
    ast_item **items;
    int nitems;
} ast_program;

/* parse.c (around the generated parser): parses `src`, reporting syntax errors to
 * `d` (several per run where recovery allows). Returns the program (possibly partial)
 * or NULL when nothing could be built; check d->errors. Never crashes, whatever the input. */
ast_program *kd_parse(kd_arena *a, const kd_source *src, kd_diags *d);

/* ast_dump.c: the AST as indented text (kdslc ir --stage ast). */
void ast_dump(FILE *out, const ast_program *p);

#endif
