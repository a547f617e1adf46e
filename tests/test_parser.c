/* test_parser.c — every form of docs/language.md builds the expected tree; syntax
 * errors are reported GCC-style, several per run; hostile input never crashes. */
#include "testutil.h"

#include "ast.h"

#include <stdlib.h>
#include <string.h>

/* One source parsed, with the diagnostics it produced. */
typedef struct parsed {
    kd_arena a;
    kd_source src;
    kd_diags d;
    char *msgs;
    size_t msgs_len;
    ast_program *p;
} parsed;

static parsed *parse_bytes(const char *path, const char *text, size_t len)
{
    parsed *P = calloc(1, sizeof *P);
    ck_assert_ptr_nonnull(P);
    P->src = (kd_source){path, text, len};
    FILE *out = open_memstream(&P->msgs, &P->msgs_len);
    ck_assert_ptr_nonnull(out);
    P->d.out = out;
    P->p = kd_parse(&P->a, &P->src, &P->d);
    fclose(out);
    return P;
}

static parsed *parse(const char *text) { return parse_bytes("m.kdsl", text, strlen(text)); }

/* Parses text that must be free of errors. */
static parsed *parse_ok(const char *text)
{
    parsed *P = parse(text);
    ck_assert_msg(P->d.errors == 0, "unexpected errors:\n%s", P->msgs);
    ck_assert_ptr_nonnull(P->p);
    return P;
}

static void done(parsed *P)
{
    kd_arena_free(&P->a);
    free(P->msgs);
    free(P);
}

static char *dump_of(const ast_program *p)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    ast_dump(out, p);
    fclose(out);
    return text;
}

static const ast_item *item(const parsed *P, int i)
{
    ck_assert_int_lt(i, P->p->nitems);
    return P->p->items[i];
}

static const ast_stmt *stmt(const ast_body *b, int i)
{
    ck_assert_int_lt(i, b->nstmts);
    return b->stmts[i];
}

/* The only statement of the only model of `text`'s model body. */
static const ast_stmt *first_stmt(const parsed *P) { return stmt(&item(P, 0)->body, 0); }

static void expect_loc(kd_loc loc, int line, int col)
{
    ck_assert_msg(loc.line == line && loc.col == col, "at %d:%d, expected %d:%d", loc.line, loc.col, line, col);
}

static void expect_name(const ast_expr *e, const char *name)
{
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->kind, EXPR_NAME);
    ck_assert_str_eq(e->name, name);
}

static void expect_int(const ast_expr *e, int64_t v)
{
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->kind, EXPR_INT);
    ck_assert(e->ival == v);
}

static void expect_binary(const ast_expr *e, int op)
{
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->kind, EXPR_BINARY);
    ck_assert_int_eq(e->op, op);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
    return n;
}

/* ---- the forms of docs/language.md -------------------------------------------- */

START_TEST(test_golden_constructs)
{
    /* Every construct of the spec, dumped and compared with the reviewed tree. */
    size_t len;
    char *text = tu_read(tu_src("tests/parse/constructs.kdsl"), &len);
    char *want = tu_read(tu_src("tests/parse/constructs.ast"), NULL);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(want);
    parsed *P = parse_bytes("constructs.kdsl", text, len);
    ck_assert_msg(P->d.errors == 0, "%s", P->msgs);
    ck_assert_int_eq(P->p->nitems, 10);
    char *got = dump_of(P->p);
    ck_assert_str_eq(got, want);
    free(got);
    done(P);
    free(text);
    free(want);
}
END_TEST

START_TEST(test_items_and_params)
{
    parsed *P = parse_ok("layer MyDense(in_dim, out_dim, activation: linear, stride: 1) { }\n"
                         "block conv_bn(x, filters) {\n}\n"
                         "model mlp {\n}\n"
                         "model net(n: 2) { }\n"
                         "model empty() { }\n"
                         "train mlp { }\n");
    ck_assert_int_eq(P->p->nitems, 6);
    const ast_item *layer = item(P, 0);
    ck_assert_int_eq(layer->kind, ITEM_LAYER);
    ck_assert_str_eq(layer->name, "MyDense");
    expect_loc(layer->loc, 1, 1);
    expect_loc(layer->name_loc, 1, 7);
    ck_assert_int_eq(layer->nparams, 4);
    ck_assert_str_eq(layer->params[0].name, "in_dim");
    ck_assert_ptr_null(layer->params[0].def);
    expect_loc(layer->params[0].loc, 1, 15);
    ck_assert_str_eq(layer->params[1].name, "out_dim");
    ck_assert_ptr_null(layer->params[1].def);
    ck_assert_str_eq(layer->params[2].name, "activation");
    expect_name(layer->params[2].def, "linear");
    ck_assert_str_eq(layer->params[3].name, "stride");
    expect_int(layer->params[3].def, 1);
    ck_assert_int_eq(layer->body.nstmts, 0);

    ck_assert_int_eq(item(P, 1)->kind, ITEM_BLOCK);
    ck_assert_int_eq(item(P, 1)->nparams, 2);
    ck_assert_int_eq(item(P, 2)->kind, ITEM_MODEL);
    ck_assert_int_eq(item(P, 2)->nparams, 0);
    ck_assert_ptr_null(item(P, 2)->params);
    ck_assert_int_eq(item(P, 3)->nparams, 1);
    expect_int(item(P, 3)->params[0].def, 2);
    ck_assert_int_eq(item(P, 4)->nparams, 0);
    ck_assert_int_eq(item(P, 5)->kind, ITEM_TRAIN);
    ck_assert_str_eq(item(P, 5)->name, "mlp");
    ck_assert_int_eq(item(P, 5)->nsettings, 0);
    done(P);
}
END_TEST

START_TEST(test_train_settings)
{
    parsed *P = parse_ok("train mnist_mlp {\n"
                         "    loss: CategoricalCrossentropy(from_logits: true)   # a comment\n"
                         "    optimizer: Adam(learning_rate: 1e-3)\n"
                         "\n"
                         "    metrics: [accuracy]\n"
                         "    batch_size: 32; epochs: 5\n"
                         "    validation_freq: 2 }");
    const ast_item *t = item(P, 0);
    ck_assert_int_eq(t->kind, ITEM_TRAIN);
    ck_assert_int_eq(t->nsettings, 6);
    const char *keys[] = {"loss", "optimizer", "metrics", "batch_size", "epochs", "validation_freq"};
    for (int i = 0; i < 6; i++) ck_assert_str_eq(t->settings[i].key, keys[i]);
    const ast_expr *loss = t->settings[0].value;
    ck_assert_int_eq(loss->kind, EXPR_CALL);
    ck_assert_str_eq(loss->name, "CategoricalCrossentropy");
    ck_assert_int_eq(loss->nargs, 1);
    ck_assert_str_eq(loss->args[0].key, "from_logits");
    ck_assert_int_eq(loss->args[0].value->kind, EXPR_BOOL);
    ck_assert_int_eq(loss->args[0].value->ival, 1);
    ck_assert_int_eq(t->settings[1].value->args[0].value->kind, EXPR_FLOAT);
    ck_assert_double_eq(t->settings[1].value->args[0].value->fval, 1e-3);
    ck_assert_int_eq(t->settings[2].value->kind, EXPR_LIST);
    ck_assert_int_eq(t->settings[2].value->nitems, 1);
    expect_name(t->settings[2].value->items[0], "accuracy");
    expect_int(t->settings[3].value, 32);
    expect_int(t->settings[5].value, 2);
    expect_loc(t->settings[3].loc, 6, 5);
    done(P);
}
END_TEST

START_TEST(test_input)
{
    parsed *P = parse_ok("model m {\n  input x: [784]\n  input img: f32[28, 28, n * 2]\n  input e: []\n}");
    const ast_body *b = &item(P, 0)->body;
    const ast_stmt *s = stmt(b, 0);
    ck_assert_int_eq(s->kind, STMT_INPUT);
    ck_assert_str_eq(s->name, "x");
    ck_assert_ptr_null(s->dtype);      /* not given: sema's default */
    expect_loc(s->loc, 2, 3);
    expect_loc(s->name_loc, 2, 9);
    ck_assert_int_eq(s->shape->kind, EXPR_LIST);
    ck_assert_int_eq(s->shape->nitems, 1);
    expect_int(s->shape->items[0], 784);

    s = stmt(b, 1);
    ck_assert_str_eq(s->name, "img");
    ck_assert_str_eq(s->dtype, "f32");
    ck_assert_int_eq(s->shape->nitems, 3);
    expect_binary(s->shape->items[2], '*');
    expect_name(s->shape->items[2]->lhs, "n");

    s = stmt(b, 2);
    ck_assert_int_eq(s->shape->kind, EXPR_LIST);
    ck_assert_int_eq(s->shape->nitems, 0);
    done(P);
}
END_TEST

START_TEST(test_assign_expr_output)
{
    parsed *P = parse_ok("model m {\n"
                         "  h = Dense(3)\n"
                         "  ReLU()\n"
                         "  x\n"
                         "  output h\n"
                         "  output logits = Dense(10)\n"
                         "  h = MaxPooling2D(2)\n"
                         "}");
    const ast_body *b = &item(P, 0)->body;
    ck_assert_int_eq(b->nstmts, 6);
    ck_assert_int_eq(stmt(b, 0)->kind, STMT_ASSIGN);
    ck_assert_str_eq(stmt(b, 0)->name, "h");
    ck_assert_int_eq(stmt(b, 0)->expr->kind, EXPR_CALL);
    ck_assert_str_eq(stmt(b, 0)->expr->name, "Dense");
    ck_assert_int_eq(stmt(b, 1)->kind, STMT_EXPR);
    ck_assert_ptr_null(stmt(b, 1)->name);
    ck_assert_int_eq(stmt(b, 1)->expr->kind, EXPR_CALL);
    ck_assert_int_eq(stmt(b, 1)->expr->nargs, 0);
    ck_assert_int_eq(stmt(b, 2)->kind, STMT_EXPR);
    expect_name(stmt(b, 2)->expr, "x");
    ck_assert_int_eq(stmt(b, 3)->kind, STMT_OUTPUT);
    ck_assert_ptr_null(stmt(b, 3)->name);
    expect_name(stmt(b, 3)->expr, "h");
    ck_assert_int_eq(stmt(b, 4)->kind, STMT_OUTPUT);
    ck_assert_str_eq(stmt(b, 4)->name, "logits");
    expect_loc(stmt(b, 4)->name_loc, 6, 10);
    ck_assert_str_eq(stmt(b, 4)->expr->name, "Dense");
    ck_assert_int_eq(stmt(b, 5)->kind, STMT_ASSIGN);
    done(P);
}
END_TEST

/* `y, h, c = LSTM(...)`: one assignment of several names; a plain one has none. */
START_TEST(test_assign_several_names)
{
    parsed *P = parse_ok("model m {\n"
                         "  y, h, c = LSTM(x, 4, return_state: true)\n"
                         "  a,b = f\n"
                         "  z = y\n"
                         "}");
    const ast_body *b = &item(P, 0)->body;
    ck_assert_int_eq(b->nstmts, 3);
    ck_assert_int_eq(stmt(b, 0)->kind, STMT_ASSIGN);
    ck_assert_int_eq(stmt(b, 0)->nnames, 3);
    ck_assert_str_eq(stmt(b, 0)->name, "y");
    ck_assert_str_eq(stmt(b, 0)->names[1], "h");
    ck_assert_str_eq(stmt(b, 0)->names[2], "c");
    ck_assert_str_eq(stmt(b, 0)->expr->name, "LSTM");
    ck_assert_int_eq(stmt(b, 1)->nnames, 2);
    ck_assert_str_eq(stmt(b, 1)->names[1], "b");
    expect_name(stmt(b, 1)->expr, "f");
    ck_assert_int_eq(stmt(b, 2)->nnames, 0);
    done(P);
}
END_TEST

START_TEST(test_repeat_and_shared)
{
    parsed *P = parse_ok("model m {\n"
                         "  input x: [4]; repeat 2 { Dense(3); ReLU() }\n"
                         "  repeat n * 2\n"
                         "  {\n"
                         "    repeat 3 { }\n"
                         "  }\n"
                         "  shared enc = Dense(64, activation: relu)\n"
                         "  a = enc(x)\n"
                         "}");
    const ast_body *b = &item(P, 0)->body;
    ck_assert_int_eq(b->nstmts, 5);
    const ast_stmt *r = stmt(b, 1);
    ck_assert_int_eq(r->kind, STMT_REPEAT);
    expect_int(r->expr, 2);
    ck_assert_int_eq(r->body.nstmts, 2);
    ck_assert_str_eq(stmt(&r->body, 0)->expr->name, "Dense");
    ck_assert_str_eq(stmt(&r->body, 1)->expr->name, "ReLU");
    r = stmt(b, 2);
    expect_binary(r->expr, '*');
    ck_assert_int_eq(r->body.nstmts, 1);
    ck_assert_int_eq(stmt(&r->body, 0)->kind, STMT_REPEAT);
    ck_assert_int_eq(stmt(&r->body, 0)->body.nstmts, 0);
    const ast_stmt *s = stmt(b, 3);
    ck_assert_int_eq(s->kind, STMT_SHARED);
    ck_assert_str_eq(s->name, "enc");
    ck_assert_str_eq(s->expr->name, "Dense");
    ck_assert_int_eq(s->expr->nargs, 2);
    ck_assert_str_eq(stmt(b, 4)->expr->name, "enc");
    expect_name(stmt(b, 4)->expr->args[0].value, "x");
    done(P);
}
END_TEST

START_TEST(test_weight_and_state)
{
    parsed *P = parse_ok("layer L(n, units) {\n"
                         "  weight w: [n, units]\n"
                         "  weight k: [n, units] = he_normal\n"
                         "  weight f: [4, 3] = zeros, trainable: false\n"
                         "  weight g: [3], trainable: false\n"
                         "  weight r: [3] = RandomNormal(stddev: 0.05)\n"
                         "  state m: [units] = zeros\n"
                         "  update m = m * 0.9 + 1\n"
                         "}");
    const ast_body *b = &item(P, 0)->body;
    ck_assert_int_eq(b->nstmts, 7);
    const ast_stmt *s = stmt(b, 0);
    ck_assert_int_eq(s->kind, STMT_WEIGHT);
    ck_assert_str_eq(s->name, "w");
    ck_assert_int_eq(s->shape->nitems, 2);
    expect_name(s->shape->items[1], "units");
    ck_assert_ptr_null(s->init);
    ck_assert_int_eq(s->nargs, 0);
    expect_name(stmt(b, 1)->init, "he_normal");
    s = stmt(b, 2);
    expect_name(s->init, "zeros");
    ck_assert_int_eq(s->nargs, 1);
    ck_assert_str_eq(s->args[0].key, "trainable");
    ck_assert_int_eq(s->args[0].value->kind, EXPR_BOOL);
    ck_assert_int_eq(s->args[0].value->ival, 0);
    expect_loc(s->args[0].loc, 4, 29);
    s = stmt(b, 3);
    ck_assert_ptr_null(s->init);
    ck_assert_int_eq(s->nargs, 1);
    ck_assert_int_eq(stmt(b, 4)->init->kind, EXPR_CALL);
    s = stmt(b, 5);
    ck_assert_int_eq(s->kind, STMT_STATE);
    ck_assert_str_eq(s->name, "m");
    expect_name(s->init, "zeros");
    s = stmt(b, 6);
    ck_assert_int_eq(s->kind, STMT_UPDATE);
    ck_assert_str_eq(s->name, "m");
    expect_binary(s->expr, '+');
    done(P);
}
END_TEST

START_TEST(test_if_training)
{
    parsed *P = parse_ok("layer L() {\n"
                         "  if training {\n    a = 1\n    b = 2\n  } else {\n    c = 3\n  }\n"
                         "  if training { d }\n"
                         "  if training {\n    e\n  }\n  else {\n    f\n  }\n"
                         "  if training { g } else if x { h } else { i }\n"
                         "}");
    const ast_body *b = &item(P, 0)->body;
    ck_assert_int_eq(b->nstmts, 4);
    const ast_stmt *s = stmt(b, 0);
    ck_assert_int_eq(s->kind, STMT_IF);
    ck_assert_int_eq(s->expr->kind, EXPR_TRAINING);
    ck_assert_int_eq(s->body.nstmts, 2);
    ck_assert(s->has_else);
    ck_assert_int_eq(s->else_body.nstmts, 1);
    ck_assert_str_eq(stmt(&s->else_body, 0)->name, "c");

    s = stmt(b, 1);
    ck_assert(!s->has_else);
    ck_assert_int_eq(s->body.nstmts, 1);
    ck_assert_int_eq(s->else_body.nstmts, 0);

    s = stmt(b, 2);     /* else on the line after the brace */
    ck_assert(s->has_else);
    expect_name(stmt(&s->else_body, 0)->expr, "f");

    s = stmt(b, 3);     /* else if: an if alone in the else body */
    ck_assert(s->has_else);
    ck_assert_int_eq(s->else_body.nstmts, 1);
    const ast_stmt *inner = stmt(&s->else_body, 0);
    ck_assert_int_eq(inner->kind, STMT_IF);
    expect_name(inner->expr, "x");
    ck_assert(inner->has_else);
    done(P);
}
END_TEST

/* ---- expressions --------------------------------------------------------- */

START_TEST(test_precedence)
{
    parsed *P = parse_ok("model m {\n  y = -a @ b * c + d\n}");
    /* ((((-a) @ b) * c) + d) */
    const ast_expr *e = first_stmt(P)->expr;
    expect_binary(e, '+');
    expect_name(e->rhs, "d");
    expect_binary(e->lhs, '*');
    expect_name(e->lhs->rhs, "c");
    expect_binary(e->lhs->lhs, '@');
    expect_name(e->lhs->lhs->rhs, "b");
    ck_assert_int_eq(e->lhs->lhs->lhs->kind, EXPR_NEG);
    expect_name(e->lhs->lhs->lhs->lhs, "a");
    expect_loc(e->loc, 2, 7);
    expect_loc(e->lhs->lhs->lhs->lhs->loc, 2, 8);
    done(P);
}
END_TEST

static void expect_dump_expr(const char *src_expr, const char *want)
{
    char text[512];
    snprintf(text, sizeof text, "model m {\n  y = %s\n}", src_expr);
    parsed *P = parse_ok(text);
    char *got = dump_of(P->p);
    char line[512];
    snprintf(line, sizeof line, "    assign y = %s\n", want);
    ck_assert_msg(strstr(got, line), "%s dumps as\n%s", src_expr, got);
    free(got);
    done(P);
}

START_TEST(test_precedence_and_associativity)
{
    expect_dump_expr("-a @ b * c + d", "((((-a) @ b) * c) + d)");
    expect_dump_expr("d + c * b @ -a", "(d + (c * (b @ (-a))))");
    expect_dump_expr("a - b - c", "((a - b) - c)");
    expect_dump_expr("a / b / c", "((a / b) / c)");
    expect_dump_expr("a @ b @ c", "((a @ b) @ c)");
    expect_dump_expr("a + b * c - d / e", "((a + (b * c)) - (d / e))");
    expect_dump_expr("(a + b) * c", "((a + b) * c)");
    expect_dump_expr("- -a", "(-(-a))");
    expect_dump_expr("-(a + b)", "(-(a + b))");
    expect_dump_expr("x @ kernel + bias", "((x @ kernel) + bias)");
    /* Negative literals fold into the literal. */
    expect_dump_expr("-1", "-1");
    expect_dump_expr("-0.5 * x", "(-0.5 * x)");
    expect_dump_expr("2 - -3", "(2 - -3)");
}
END_TEST

START_TEST(test_literals)
{
    parsed *P = parse_ok("model m {\n  f(42, 0.5, 1e-3, \"a \\\"q\\\"\\n\", true, false, training, -7, -2.5, 9223372036854775807)\n}");
    const ast_expr *c = first_stmt(P)->expr;
    ck_assert_int_eq(c->nargs, 10);
    expect_int(c->args[0].value, 42);
    ck_assert_int_eq(c->args[1].value->kind, EXPR_FLOAT);
    ck_assert_double_eq(c->args[1].value->fval, 0.5);
    ck_assert_double_eq(c->args[2].value->fval, 1e-3);
    ck_assert_int_eq(c->args[3].value->kind, EXPR_STRING);
    ck_assert_str_eq(c->args[3].value->str, "a \"q\"\n");
    ck_assert_int_eq(c->args[4].value->kind, EXPR_BOOL);
    ck_assert_int_eq(c->args[4].value->ival, 1);
    ck_assert_int_eq(c->args[5].value->ival, 0);
    ck_assert_int_eq(c->args[6].value->kind, EXPR_TRAINING);
    expect_int(c->args[7].value, -7);
    expect_loc(c->args[7].value->loc, 2, 56);
    ck_assert_int_eq(c->args[8].value->kind, EXPR_FLOAT);
    ck_assert_double_eq(c->args[8].value->fval, -2.5);
    expect_int(c->args[9].value, INT64_MAX);
    done(P);
}
END_TEST

START_TEST(test_call_arguments)
{
    parsed *P = parse_ok("model m {\n"
                         "  Conv2D(32, 3, strides: 1, padding: same,\n"
                         "         activation: relu,\n"
                         "  )\n"
                         "  f(training: true, model: 1, if: 2)\n"
                         "  g(h(x, axis: -1), [a, b])\n"
                         "}");
    const ast_body *b = &item(P, 0)->body;
    ck_assert_int_eq(b->nstmts, 3);
    const ast_expr *c = stmt(b, 0)->expr;
    ck_assert_str_eq(c->name, "Conv2D");
    ck_assert_int_eq(c->nargs, 5);
    ck_assert_ptr_null(c->args[0].key);
    expect_int(c->args[0].value, 32);
    ck_assert_ptr_null(c->args[1].key);
    ck_assert_str_eq(c->args[2].key, "strides");
    ck_assert_str_eq(c->args[3].key, "padding");
    expect_name(c->args[3].value, "same");
    ck_assert_str_eq(c->args[4].key, "activation");
    expect_loc(c->args[4].loc, 3, 10);
    expect_loc(c->args[4].value->loc, 3, 22);

    c = stmt(b, 1)->expr;   /* keywords may be keys */
    ck_assert_int_eq(c->nargs, 3);
    ck_assert_str_eq(c->args[0].key, "training");
    ck_assert_str_eq(c->args[1].key, "model");
    ck_assert_str_eq(c->args[2].key, "if");

    c = stmt(b, 2)->expr;
    ck_assert_int_eq(c->nargs, 2);
    ck_assert_int_eq(c->args[0].value->kind, EXPR_CALL);
    ck_assert_str_eq(c->args[0].value->args[1].key, "axis");
    expect_int(c->args[0].value->args[1].value, -1);
    ck_assert_int_eq(c->args[1].value->kind, EXPR_LIST);
    ck_assert_int_eq(c->args[1].value->nitems, 2);
    done(P);
}
END_TEST

START_TEST(test_lists)
{
    parsed *P = parse_ok("model m {\n  a = []\n  b = [1, 2,]\n  c = [[1], [\n    2,\n    3\n  ]]\n}");
    const ast_body *b = &item(P, 0)->body;
    ck_assert_int_eq(b->nstmts, 3);
    ck_assert_int_eq(stmt(b, 0)->expr->kind, EXPR_LIST);
    ck_assert_int_eq(stmt(b, 0)->expr->nitems, 0);
    ck_assert_int_eq(stmt(b, 1)->expr->nitems, 2);
    const ast_expr *c = stmt(b, 2)->expr;
    ck_assert_int_eq(c->nitems, 2);
    ck_assert_int_eq(c->items[1]->kind, EXPR_LIST);
    ck_assert_int_eq(c->items[1]->nitems, 2);
    expect_int(c->items[1]->items[1], 3);
    done(P);
}
END_TEST

START_TEST(test_layout)
{
    /* Blank lines, comments and ';' anywhere between statements and items;
     * braces on the same line or the next; items side by side. */
    parsed *P = parse_ok("\n\n# header\n;;\n"
                         "model a { input x: [3]; Softmax() } model b { }\n"
                         "model c\n"
                         "{\n"
                         "\n"
                         "  ; input x: [3] ;; Dense(3) ;\n"
                         "\n"
                         "  # comment\n"
                         "  ReLU()   # trailing\n"
                         "\n"
                         "}\n\n;\n"
                         "layer L(a,\n        b) {\n  a }");
    ck_assert_int_eq(P->p->nitems, 4);
    ck_assert_int_eq(item(P, 0)->body.nstmts, 2);
    ck_assert_int_eq(item(P, 1)->body.nstmts, 0);
    ck_assert_str_eq(item(P, 2)->name, "c");
    ck_assert_int_eq(item(P, 2)->body.nstmts, 3);
    expect_loc(stmt(&item(P, 2)->body, 2)->loc, 12, 3);
    ck_assert_int_eq(item(P, 3)->nparams, 2);
    ck_assert_int_eq(item(P, 3)->body.nstmts, 1);
    done(P);
}
END_TEST

START_TEST(test_empty_programs)
{
    parsed *P = parse_ok("");
    ck_assert_int_eq(P->p->nitems, 0);
    done(P);
    P = parse_ok("# nothing but a comment");
    ck_assert_int_eq(P->p->nitems, 0);
    done(P);
    P = parse_ok("\n\n  \n;\n");
    ck_assert_int_eq(P->p->nitems, 0);
    done(P);
}
END_TEST

START_TEST(test_dump_is_deterministic)
{
    parsed *P = parse_ok("model m(k: \"a\\\"b\\tc\") {\n  x = f(0.1, 1e-07, 2.0, 1e+300, 3)\n}");
    char *a = dump_of(P->p), *b = dump_of(P->p);
    ck_assert_str_eq(a, b);
    ck_assert_str_eq(a, "program m.kdsl\n"
                        "  model m(k: \"a\\\"b\\tc\")\n"
                        "    assign x = f(0.1, 1e-07, 2.0, 1e+300, 3)\n");
    free(a);
    free(b);
    done(P);
}
END_TEST

/* ---- syntax errors ------------------------------------------------------- */

START_TEST(test_golden_errors)
{
    /* One mistake per line; each must be reported where it is, and parsing goes on. */
    size_t len;
    char *text = tu_read(tu_src("tests/parse/errors.kdsl"), &len);
    char *want = tu_read(tu_src("tests/parse/errors.txt"), NULL);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(want);
    parsed *P = parse_bytes("errors.kdsl", text, len);
    ck_assert_int_eq(P->d.errors, 15);
    ck_assert_str_eq(P->msgs, want);
    free(text);
    free(want);
    done(P);
}
END_TEST

START_TEST(test_exact_diagnostic)
{
    parsed *P = parse("model m {\n    input x: [784]\n    h = Dense(3))\n}\n");
    ck_assert_int_eq(P->d.errors, 1);
    ck_assert_str_eq(P->msgs, "m.kdsl:3:17: error: unexpected ')', expecting end of line or '}' or ';'\n"
                              "      h = Dense(3))\n"
                              "                  ^\n");
    done(P);

    P = parse("model m(a b) {\n}\n");
    ck_assert_str_eq(P->msgs, "m.kdsl:1:11: error: unexpected identifier 'b', expecting ')' or ',' or ':'\n"
                              "  model m(a b) {\n"
                              "            ^\n");
    done(P);

    P = parse("model m {\n  x = \n}\n");
    ck_assert_str_eq(P->msgs, "m.kdsl:2:7: error: unexpected end of line, expecting expression\n"
                              "    x = \n"
                              "        ^\n");
    done(P);
}
END_TEST

START_TEST(test_several_errors_in_one_run)
{
    parsed *P = parse("model m {\n"         /* 1 */
                      "  a = (1 +)\n"        /* 2: error */
                      "  b = 2\n"            /* 3 */
                      "  c = [1 2]\n"        /* 4: error */
                      "  d = f(x y)\n"       /* 5: error */
                      "  e = 3\n"            /* 6 */
                      "}\n"
                      "model n {\n"
                      "  f = = 1\n"          /* 9: error */
                      "  g = 4\n"
                      "}\n");
    ck_assert_int_eq(P->d.errors, 4);
    ck_assert_ptr_nonnull(strstr(P->msgs, "m.kdsl:2:11: error: unexpected ')', expecting expression\n"));
    ck_assert_ptr_nonnull(strstr(P->msgs, "m.kdsl:4:10: error: unexpected number, expecting ',' or ']'\n"));
    ck_assert_ptr_nonnull(
        strstr(P->msgs, "m.kdsl:5:11: error: unexpected identifier 'y', expecting '(' or ')' or ',' or ':'\n"));
    ck_assert_ptr_nonnull(strstr(P->msgs, "m.kdsl:9:7: error: unexpected '=', expecting expression\n"));
    /* What was right is kept. */
    ck_assert_int_eq(P->p->nitems, 2);
    ck_assert_int_eq(item(P, 0)->body.nstmts, 2);
    ck_assert_str_eq(stmt(&item(P, 0)->body, 0)->name, "b");
    ck_assert_str_eq(stmt(&item(P, 0)->body, 1)->name, "e");
    ck_assert_int_eq(item(P, 1)->body.nstmts, 1);
    ck_assert_str_eq(stmt(&item(P, 1)->body, 0)->name, "g");
    done(P);
}
END_TEST

START_TEST(test_recovery_from_unclosed_call)
{
    /* A missing ')' ends at the end of its line, not at the end of the body. */
    parsed *P = parse("model m {\n  a = Dense(4\n  b = 2\n  c = 3\n}\n");
    ck_assert_int_eq(P->d.errors, 1);
    ck_assert_ptr_nonnull(strstr(P->msgs, "m.kdsl:3:3: error: unexpected identifier 'b', expecting ')' or ','\n"));
    ck_assert_int_eq(item(P, 0)->body.nstmts, 1);
    ck_assert_str_eq(stmt(&item(P, 0)->body, 0)->name, "c");
    done(P);

    /* A mistake inside a call that spans lines skips to the call's end. */
    P = parse("model m {\n  a = f(x,\n    y z,\n    w)\n  b = 2\n}\n");
    ck_assert_int_eq(P->d.errors, 1);
    ck_assert_ptr_nonnull(strstr(P->msgs, "m.kdsl:3:7: error: unexpected identifier 'z'"));
    ck_assert_int_eq(item(P, 0)->body.nstmts, 1);
    ck_assert_str_eq(stmt(&item(P, 0)->body, 0)->name, "b");
    done(P);
}
END_TEST

START_TEST(test_recovery_at_item_level)
{
    /* A broken header skips its item, nested braces and all; the next one parses. */
    parsed *P = parse("model a(x y) {\n  repeat 2 {\n    Dense(3)\n  }\n  z = 1\n}\n"
                      "stray = 1\n"
                      "model b {\n  Dense(1)\n}\n");
    ck_assert_int_eq(P->d.errors, 2);
    ck_assert_ptr_nonnull(strstr(P->msgs, "m.kdsl:1:11: error: unexpected identifier 'y'"));
    ck_assert_ptr_nonnull(strstr(P->msgs, "m.kdsl:7:1: error: unexpected identifier 'stray'"));
    ck_assert_int_eq(P->p->nitems, 1);
    ck_assert_str_eq(item(P, 0)->name, "b");
    ck_assert_int_eq(item(P, 0)->body.nstmts, 1);
    done(P);
}
END_TEST

START_TEST(test_missing_closing_brace)
{
    parsed *P = parse("model a {\n  input x: [3]\n  repeat 2 {\n    Dense(3)\n\nmodel b {\n  Dense(1)\n}\n");
    ck_assert_int_eq(P->d.errors, 1);
    ck_assert_str_eq(P->msgs, "m.kdsl:6:1: error: expected '}' before 'model'\n  model b {\n  ^\n");
    ck_assert_int_eq(P->p->nitems, 2);
    ck_assert_int_eq(item(P, 0)->body.nstmts, 2);
    ck_assert_int_eq(stmt(&item(P, 0)->body, 1)->body.nstmts, 1);
    ck_assert_str_eq(item(P, 1)->name, "b");
    done(P);

    P = parse("model a {\n  x = 1\n");
    ck_assert_int_eq(P->d.errors, 1);
    ck_assert_ptr_nonnull(strstr(P->msgs, "m.kdsl:3:1: error: unexpected end of file, expecting '}'\n"));
    done(P);
}
END_TEST

START_TEST(test_positional_after_keyword)
{
    parsed *P = parse("model m {\n  Dense(units: 3, relu)\n}");
    ck_assert_int_eq(P->d.errors, 1);
    ck_assert_ptr_nonnull(strstr(P->msgs, "m.kdsl:2:19: error: positional argument follows keyword argument\n"));
    done(P);
}
END_TEST

START_TEST(test_error_cap)
{
    /* Hundreds of bad lines: every one counted, fifty printed, then a note. */
    size_t n = 500;
    char *text = malloc(n * 8 + 32);
    char *p = text + sprintf(text, "model m {\n");
    for (size_t i = 0; i < n; i++) p += sprintf(p, "x = = 1\n");
    strcpy(p, "}\n");
    parsed *P = parse(text);
    ck_assert_int_eq(P->d.errors, 500);
    ck_assert_int_eq(count(P->msgs, ": error: "), 50);
    ck_assert_ptr_nonnull(strstr(P->msgs, "too many errors"));
    done(P);
    free(text);
}
END_TEST

/* ---- hostile input ------------------------------------------------------- */

static char *repeat_text(const char *head, const char *unit, size_t n, const char *tail, size_t *len)
{
    size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
    *len = hl + ul * n + tl;
    char *text = malloc(*len + 1);
    ck_assert_ptr_nonnull(text);
    memcpy(text, head, hl);
    for (size_t i = 0; i < n; i++) memcpy(text + hl + i * ul, unit, ul);
    memcpy(text + hl + ul * n, tail, tl + 1);
    return text;
}

START_TEST(test_binary_junk)
{
    size_t len = 1 << 20;
    unsigned char *text = malloc(len);
    uint32_t x = 12345;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        text[i] = (unsigned char)(x >> 16);
    }
    parsed *P = parse_bytes("junk.bin", (const char *)text, len);
    ck_assert_ptr_nonnull(P->p);
    ck_assert_int_gt(P->d.errors, 0);
    ck_assert_int_le(count(P->msgs, ": error: "), 50);
    done(P);
    free(text);
}
END_TEST

START_TEST(test_deep_parentheses)
{
    size_t len;
    char *text = repeat_text("model m {\n  x = ", "(", 200000, "1\n}\n", &len);
    parsed *P = parse_bytes("m.kdsl", text, len);
    ck_assert_int_eq(P->d.errors, 1);
    ck_assert_ptr_nonnull(strstr(P->msgs, "m.kdsl:2:263: error: expression nested too deeply"));
    done(P);
    free(text);

    text = repeat_text("model m {\n  x = ", "[", 200000, "\n}\n", &len);
    P = parse_bytes("m.kdsl", text, len);
    ck_assert_int_eq(P->d.errors, 1);
    ck_assert_ptr_nonnull(strstr(P->msgs, "error: expression nested too deeply"));
    done(P);
    free(text);

    /* Within the limit, parentheses are fine however many. */
    char *open = repeat_text("model m {\n  x = ", "(", 200, "1", &len);
    char *full = repeat_text(open, ")", 200, "\n}\n", &len);
    P = parse_bytes("m.kdsl", full, len);
    ck_assert_int_eq(P->d.errors, 0);
    expect_int(first_stmt(P)->expr, 1);
    done(P);
    free(open);
    free(full);
}
END_TEST

START_TEST(test_deep_expressions)
{
    /* Trees deeper than AST_MAX_DEPTH are refused with one error per statement. */
    size_t len;
    char *text = repeat_text("model m {\n  x = ", "- ", 5000000, "a\n}\n", &len);
    parsed *P = parse_bytes("m.kdsl", text, len);
    ck_assert_int_eq(P->d.errors, 1);
    ck_assert_ptr_nonnull(strstr(P->msgs, "error: expression nested too deeply"));
    done(P);
    free(text);

    text = repeat_text("model m {\n  x = ", "- ", 300, "a\n  y = 1\n}\n", &len);
    P = parse_bytes("m.kdsl", text, len);
    ck_assert_int_eq(P->d.errors, 1);
    ck_assert_ptr_nonnull(strstr(P->msgs, "error: expression nested too deeply (more than 256 levels)"));
    ck_assert_int_eq(item(P, 0)->body.nstmts, 1);
    ck_assert_str_eq(first_stmt(P)->name, "y");
    done(P);
    free(text);

    text = repeat_text("model m {\n  x = 1", " + 1", 100000, "\n}\n", &len);
    P = parse_bytes("m.kdsl", text, len);
    ck_assert_int_eq(P->d.errors, 1);
    ck_assert_ptr_nonnull(strstr(P->msgs, "m.kdsl:2:7: error: expression nested too deeply"));
    done(P);
    free(text);

    text = repeat_text("model m {\n", "repeat 1 {\n", 100000, "}\n", &len);
    P = parse_bytes("m.kdsl", text, len);
    ck_assert_int_eq(P->d.errors, 1);
    ck_assert_ptr_nonnull(strstr(P->msgs, "error: blocks nested too deeply"));
    done(P);
    free(text);

    /* `else if` nests without braces: it is bounded all the same. */
    text = repeat_text("layer l {\n  if a { x }", " else if a { x }", 300, "\n  y\n}\n", &len);
    P = parse_bytes("m.kdsl", text, len);
    ck_assert_int_eq(P->d.errors, 1);
    ck_assert_ptr_nonnull(strstr(P->msgs, "error: blocks nested too deeply (more than 256 levels)"));
    ck_assert_int_eq(item(P, 0)->body.nstmts, 1);
    done(P);
    free(text);

    text = repeat_text("layer l {\n  if a { x }", " else if a { x }", 200, "\n  y\n}\n", &len);
    P = parse_bytes("m.kdsl", text, len);
    ck_assert_int_eq(P->d.errors, 0);
    ck_assert_int_eq(item(P, 0)->body.nstmts, 2);
    done(P);
    free(text);
}
END_TEST

START_TEST(test_ten_megabytes)
{
    size_t n = 10 * 1024 * 1024 / 6, len;
    /* At top level: one error, and the junk is skipped without more. */
    char *text = repeat_text("", "x = 1\n", n, "", &len);
    parsed *P = parse_bytes("big.kdsl", text, len);
    ck_assert_int_eq(P->d.errors, 1);
    ck_assert_ptr_nonnull(strstr(P->msgs, "big.kdsl:1:1: error: unexpected identifier 'x'"));
    done(P);
    free(text);

    /* In a model body: past two million nodes (a million statements here) the
     * parser stops, so that its memory stays bounded. */
    text = repeat_text("model m {\n", "x = 1\n", n, "}\n", &len);
    P = parse_bytes("big.kdsl", text, len);
    ck_assert_int_eq(P->d.errors, 1);
    ck_assert_ptr_nonnull(strstr(P->msgs, "big.kdsl:1000002:5: error: program too large (more than 2000000 syntax nodes)"));
    done(P);
    free(text);

    text = repeat_text("model m {\n  x = f(", "1,", 5 * 1024 * 1024, ")\n}\n", &len);
    P = parse_bytes("big.kdsl", text, len);
    ck_assert_int_eq(P->d.errors, 1);
    ck_assert_ptr_nonnull(strstr(P->msgs, "big.kdsl:2:4000009: error: program too large"));
    done(P);
    free(text);

    /* Big but within bounds: all of it, positions right to the end. */
    n = 300000;
    text = repeat_text("model m {\n", "x = 1\n", n, "}\n", &len);
    P = parse_bytes("big.kdsl", text, len);
    ck_assert_int_eq(P->d.errors, 0);
    ck_assert_int_eq(item(P, 0)->body.nstmts, (int)n);
    expect_loc(stmt(&item(P, 0)->body, (int)n - 1)->loc, (int)n + 1, 1);
    done(P);
    free(text);
}
END_TEST

START_TEST(test_nul_bytes)
{
    static const char text[] = "model m {\n  x = 1\0\0 + 2\n  y = 3\n}\n\0";
    parsed *P = parse_bytes("m.kdsl", text, sizeof text - 1);
    ck_assert_int_eq(P->d.errors, 2);
    ck_assert_ptr_nonnull(strstr(P->msgs, "m.kdsl:2:8: error: stray '\\x00' in program\n"));
    ck_assert_ptr_nonnull(strstr(P->msgs, "m.kdsl:5:1: error: stray '\\x00' in program\n"));
    ck_assert_int_eq(P->p->nitems, 1);
    ck_assert_int_eq(item(P, 0)->body.nstmts, 1);
    ck_assert_str_eq(first_stmt(P)->name, "y");
    done(P);
}
END_TEST

START_TEST(test_long_names_and_numbers)
{
    size_t len;
    char *name = repeat_text("", "n", 10000, "", &len);
    char *text = malloc(2 * len + 64);
    ck_assert_ptr_nonnull(text);
    sprintf(text, "model %s {\n  %s = 1\n}\n", name, name);
    parsed *P = parse(text);
    ck_assert_int_eq(P->d.errors, 0);
    ck_assert_str_eq(item(P, 0)->name, name);
    ck_assert_str_eq(first_stmt(P)->name, name);
    done(P);
    free(text);

    /* In a message, a long name is cut. */
    text = malloc(len + 64);
    ck_assert_ptr_nonnull(text);
    sprintf(text, "model m {\n  x %s\n}\n", name);
    P = parse(text);
    ck_assert_int_eq(P->d.errors, 1);
    ck_assert_ptr_nonnull(strstr(P->msgs, "unexpected identifier 'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...'"));
    done(P);
    free(text);
    free(name);

    char *digits = repeat_text("model m {\n  x = ", "9", 100000, "\n}\n", &len);
    P = parse(digits);
    ck_assert_int_eq(P->d.errors, 1);
    ck_assert_ptr_nonnull(strstr(P->msgs, "m.kdsl:2:7: error: integer constant is too large"));
    done(P);
    free(digits);
}
END_TEST

static Suite *parser_suite(void)
{
    Suite *s = suite_create("parser");
    TCase *forms = tcase_create("forms");
    tcase_add_test(forms, test_golden_constructs);
    tcase_add_test(forms, test_items_and_params);
    tcase_add_test(forms, test_train_settings);
    tcase_add_test(forms, test_input);
    tcase_add_test(forms, test_assign_expr_output);
    tcase_add_test(forms, test_assign_several_names);
    tcase_add_test(forms, test_repeat_and_shared);
    tcase_add_test(forms, test_weight_and_state);
    tcase_add_test(forms, test_if_training);
    tcase_add_test(forms, test_layout);
    tcase_add_test(forms, test_empty_programs);
    suite_add_tcase(s, forms);

    TCase *exprs = tcase_create("expressions");
    tcase_add_test(exprs, test_precedence);
    tcase_add_test(exprs, test_precedence_and_associativity);
    tcase_add_test(exprs, test_literals);
    tcase_add_test(exprs, test_call_arguments);
    tcase_add_test(exprs, test_lists);
    tcase_add_test(exprs, test_dump_is_deterministic);
    suite_add_tcase(s, exprs);

    TCase *errors = tcase_create("errors");
    tcase_add_test(errors, test_golden_errors);
    tcase_add_test(errors, test_exact_diagnostic);
    tcase_add_test(errors, test_several_errors_in_one_run);
    tcase_add_test(errors, test_recovery_from_unclosed_call);
    tcase_add_test(errors, test_recovery_at_item_level);
    tcase_add_test(errors, test_missing_closing_brace);
    tcase_add_test(errors, test_positional_after_keyword);
    tcase_add_test(errors, test_error_cap);
    suite_add_tcase(s, errors);

    TCase *hostile = tcase_create("hostile");
    tcase_set_timeout(hostile, 600);   /* 10 MB inputs, slow under sanitizers */
    tcase_add_test(hostile, test_binary_junk);
    tcase_add_test(hostile, test_deep_parentheses);
    tcase_add_test(hostile, test_deep_expressions);
    tcase_add_test(hostile, test_ten_megabytes);
    tcase_add_test(hostile, test_nul_bytes);
    tcase_add_test(hostile, test_long_names_and_numbers);
    suite_add_tcase(s, hostile);
    return s;
}

int main(void) { return tu_run_suite(parser_suite()); }
