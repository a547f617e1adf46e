/* gen.c — the random program generator (gen.h). Every statement is drawn
 * from a table of forms, each with the shapes it accepts and the shape it
 * makes; a form that does not fit the values at hand is drawn again. Values
 * keep a rough magnitude so that chains of products and exponentials stay
 * finite in float: a form that would make a value above MAG_MAX is not used. */
#include "gen.h"

#include "random.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAG_MAX 30.0

typedef struct gen {
    dt_program *p;
    uint64_t rng;
    double mag[DT_MAX_VALUES];
    int uses[DT_MAX_VALUES];
    int din[DT_MAX_STMTS], dout[DT_MAX_STMTS];   /* a shared Dense's units in and out */
} gen;

static uint64_t next(gen *g) { return kdk_mix64(g->rng++); }
static int below(gen *g, int n) { return n <= 1 ? 0 : (int)(next(g) % (uint64_t)n); }
static bool chance(gen *g, int percent) { return below(g, 100) < percent; }
static int between(gen *g, int lo, int hi) { return lo + below(g, hi - lo + 1); }

static int64_t elems(const dt_shape *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++) n *= s->d[i];
    return n;
}

static bool same_shape(const dt_shape *a, const dt_shape *b)
{
    if (a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->d[i] != b->d[i]) return false;
    return true;
}

static dt_shape shape1(int n) { return (dt_shape){1, {n}}; }

/* A value for an operand: recent ones often (long chains), any of them
 * otherwise (fan-out), among those `ok` accepts; -1 if none. */
typedef bool (*accept_fn)(const dt_shape *s, const void *arg);

static int pick(gen *g, accept_fn ok, const void *arg)
{
    int cand[DT_MAX_VALUES], n = 0;
    for (int v = 0; v < g->p->nval; v++)
        if ((v >= g->p->ninputs || !g->p->i32[v]) && (!ok || ok(&g->p->val[v], arg))) cand[n++] = v;
    if (n == 0) return -1;
    if (chance(g, 50)) return cand[n - 1 - below(g, n < 3 ? n : 3)];
    return cand[below(g, n)];
}

static bool any(const dt_shape *s, const void *arg) { (void)arg; return s->rank >= 1; }
static bool rank1(const dt_shape *s, const void *arg) { (void)arg; return s->rank == 1; }
static bool rank2plus(const dt_shape *s, const void *arg) { (void)arg; return s->rank >= 2; }
static bool image(const dt_shape *s, const void *arg) { (void)arg; return s->rank == 3 && s->d[0] >= 2 && s->d[1] >= 2; }
static bool same_as(const dt_shape *s, const void *arg) { return same_shape(s, arg); }
static bool units_in(const dt_shape *s, const void *arg) { return s->rank == 1 && s->d[0] == *(const int *)arg; }

/* Appends a statement defining a new value of shape `s` (magnitude m). */
static int define(gen *g, dt_shape s, double m, int decl, int layer, int nops, const int *ops, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));
static int define(gen *g, dt_shape s, double m, int decl, int layer, int nops, const int *ops, const char *fmt, ...)
{
    dt_program *p = g->p;
    if (p->nst >= DT_MAX_STMTS || p->nval >= DT_MAX_VALUES || m > MAG_MAX || elems(&s) > 512 || elems(&s) < 1)
        return -1;
    dt_stmt *st = &p->st[p->nst++];
    memset(st, 0, sizeof *st);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->text, sizeof st->text, fmt, ap);
    va_end(ap);
    st->nops = nops;
    for (int i = 0; i < nops; i++) st->ops[i] = ops[i], g->uses[ops[i]]++;
    st->decl = decl;
    st->layer = layer;
    st->def = p->nval;
    p->val[p->nval] = s;
    g->mag[p->nval] = m;
    return p->nval++;
}

/* A declaration statement (weight, shared layer): its statement index. */
static int declare(gen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int declare(gen *g, const char *fmt, ...)
{
    dt_program *p = g->p;
    if (p->nst >= DT_MAX_STMTS) return -1;
    dt_stmt *st = &p->st[p->nst];
    memset(st, 0, sizeof *st);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->text, sizeof st->text, fmt, ap);
    va_end(ap);
    st->decl = -1;
    st->def = -1;
    st->layer = -1;
    return p->nst++;
}

static const char *activation(gen *g)
{
    static const char *const acts[] = {"linear", "relu", "sigmoid", "tanh", "softmax", "swish", "silu", "log_softmax",
                                       "elu", "selu", "gelu", "softplus", "softsign", "mish", "hard_sigmoid",
                                       "relu6", "leaky_relu"};
    return acts[below(g, (int)(sizeof acts / sizeof acts[0]))];
}

static double act_mag(const char *a, double m)
{
    if (!strcmp(a, "sigmoid") || !strcmp(a, "tanh") || !strcmp(a, "softmax")) return 1;
    if (!strcmp(a, "softsign") || !strcmp(a, "hard_sigmoid")) return 1;
    if (!strcmp(a, "relu6")) return 6;
    if (!strcmp(a, "selu") || !strcmp(a, "softplus") || !strcmp(a, "elu")) return m * 1.1 + 1.8;
    if (!strcmp(a, "log_softmax")) return m * 2 + 3;
    return m;
}

/* ---- the forms ------------------------------------------------------------------------ */

static int unary(gen *g)
{
    static const struct { const char *fmt; int mag; } forms[] = {
        /* mag: 0 keeps it, 1 bounds it by 1, 2 squares it, 3 bounds it by 3 */
        {"relu($0)", 0}, {"sigmoid($0)", 1}, {"tanh($0)", 1}, {"square($0)", 2}, {"abs($0)", 0}, {"-$0", 0},
        {"exp(tanh($0))", 3}, {"log(square($0) + 0.5)", 3}, {"sqrt(square($0) + 0.25)", 0}, {"$0 * 0.5 + 0.25", 0},
        {"2 - $0", 0}, {"ReLU($0)", 0}, {"Activation($0, swish)", 0}, {"Activation($0, sigmoid)", 1},
        {"Softmax($0)", 1}, {"log_softmax($0)", 3}, {"Dropout($0, 0.3)", 0}, {"dropout($0, 0.5)", 0},
        {"BatchNormalization($0)", 3}, {"BatchNormalization($0, synchronized: true)", 3},
        {"$0 - mean($0, axis: -1, keepdims: true)", 0},
        {"$0 / sqrt(mean(square($0), axis: -1, keepdims: true) + 1)", 0}, {"$0 - max($0, axis: -1, keepdims: true)", 0},
        {"$0 * sum($0, axis: -1, keepdims: true)", 2}, {"$0 * 3", 0}, {"$0 / 2 + $0", 0},
        /* the activation table's rows, with and without their arguments */
        {"elu($0, alpha: 0.5)", 0}, {"selu($0)", 0}, {"gelu($0)", 0}, {"gelu($0, approximate: true)", 0},
        {"softplus($0)", 0}, {"softsign($0)", 1}, {"swish($0)", 0}, {"silu($0)", 0}, {"mish($0)", 0},
        {"hard_sigmoid($0)", 1}, {"relu6($0)", 0}, {"leaky_relu($0, negative_slope: 0.1)", 0}, {"leaky_relu($0)", 0},
        {"Activation($0, gelu)", 0},
    };
    int f = below(g, (int)(sizeof forms / sizeof forms[0]));
    int x = pick(g, any, NULL);
    if (x < 0) return -1;
    double m = g->mag[x];
    switch (forms[f].mag) {
    case 1: m = 1; break;
    case 2: m = m * m + 1; break;
    case 3: m = 4 + m; break;
    default: m = m * 3 + 1; break;
    }
    return define(g, g->p->val[x], m, -1, -1, 1, &x, "%s", forms[f].fmt);
}

/* One value read by two or three element-wise statements in a row, then
 * combined: the shape that loop fusion merges into one loop, with each
 * result a candidate to be written in place of the value they all read. */
static int fan_out(gen *g)
{
    static const char *const forms[] = {"$0 * 2", "$0 * 3", "relu($0)", "-$0", "$0 + 1", "sigmoid($0)", "square($0)",
                                        "$0 * $0", "abs($0)", "tanh($0)"};
    int x = g->p->nval - 1 - (chance(g, 70) ? 0 : below(g, 3));
    if (x < g->p->ninputs) x = pick(g, any, NULL);
    const dt_shape *s = &g->p->val[x];
    int n = chance(g, 60) ? 2 : 3, ys[3];
    for (int i = 0; i < n; i++) {
        ys[i] = define(g, *s, g->mag[x] * g->mag[x] + 3, -1, -1, 1, &x, "%s", forms[below(g, 10)]);
        if (ys[i] < 0) return -1;
    }
    dt_shape t = *s;
    switch (below(g, 5)) {
    case 0:
        t.d[t.rank - 1] *= n;
        return define(g, t, g->mag[ys[0]], -1, -1, n, ys, n == 2 ? "Concatenate([$0, $1])" : "Concatenate([$0, $1, $2])");
    case 1: return define(g, t, 2 * g->mag[ys[0]], -1, -1, 2, ys, "Maximum([$0, $1]) + Multiply([$0, $1])");
    case 2: return define(g, t, 2 * g->mag[ys[0]], -1, -1, 2, ys, "$0 - $1");
    default: return ys[n - 1];   /* the others stay sinks: outputs, or dead */
    }
}

static int softmax_axis(gen *g)
{
    int x = pick(g, rank2plus, NULL);
    if (x < 0) return -1;
    int axis = between(g, 1, g->p->val[x].rank);
    return define(g, g->p->val[x], 1, -1, -1, 1, &x, chance(g, 50) ? "softmax($0, axis: %d)" : "log_softmax($0, axis: %d) / 4", axis);
}

static int binary(gen *g)
{
    static const char *const forms[] = {
        "$0 + $1", "$0 - $1", "$0 * $1", "$0 / (square($1) + 1)", "Add([$0, $1])", "Subtract([$0, $1])",
        "Multiply([$0, $1])", "Maximum([$0, $1])", "Average([$0, $1])", "Maximum([$0, $1]) * Multiply([$0, $1])",
    };
    int x = pick(g, any, NULL);
    if (x < 0) return -1;
    int y = pick(g, same_as, &g->p->val[x]);   /* x itself now and then: x * x */
    int f = below(g, (int)(sizeof forms / sizeof forms[0]));
    int ops[2] = {x, y};
    double mx = g->mag[x], my = g->mag[y];
    double m = f == 2 || f == 6 ? mx * my : f == 9 ? mx * mx * my + 1 : mx + my;
    return define(g, g->p->val[x], m, -1, -1, 2, ops, "%s", forms[f]);
}

/* x * w or x + w with a model weight of x's last axis (broadcast over the rest). */
static int with_weight(gen *g)
{
    int x = pick(g, any, NULL);
    if (x < 0) return -1;
    const dt_shape *s = &g->p->val[x];
    int d = declare(g, "weight #: [%d]%s", s->d[s->rank - 1], chance(g, 30) ? ", trainable: false" : "");
    if (d < 0) return -1;
    return define(g, *s, g->mag[x] * 2 + 1, d, -1, 1, &x, chance(g, 50) ? "$0 * #" : "$0 + #");
}

static int concat(gen *g)
{
    int x = pick(g, any, NULL);
    if (x < 0) return -1;
    dt_shape sx = g->p->val[x];
    int axis = between(g, 1, sx.rank);   /* axes count the batch as 0 */
    /* a partner: the same shape but along `axis` */
    int cand[DT_MAX_VALUES], n = 0;
    for (int v = 0; v < g->p->nval; v++) {
        const dt_shape *s = &g->p->val[v];
        bool ok = s->rank == sx.rank && (v >= g->p->ninputs || !g->p->i32[v]);   /* token ids are no partner */
        for (int i = 0; ok && i < s->rank; i++) ok = i == axis - 1 || s->d[i] == sx.d[i];
        if (ok) cand[n++] = v;
    }
    int y = cand[below(g, n)];
    dt_shape s = sx;
    s.d[axis - 1] += g->p->val[y].d[axis - 1];
    int ops[2] = {x, y};
    double m = fmax(g->mag[x], g->mag[y]);
    if (axis == sx.rank && chance(g, 40)) return define(g, s, m, -1, -1, 2, ops, "Concatenate([$0, $1])");
    return define(g, s, m, -1, -1, 2, ops, "concat([$0, $1], axis: %d)", chance(g, 30) && axis == sx.rank ? -1 : axis);
}

static int dense(gen *g)
{
    int x = pick(g, rank1, NULL);
    if (x < 0) return -1;
    int n = g->p->val[x].d[0], k = chance(g, 30) ? n : between(g, 1, 8);
    const char *a = activation(g);
    double m = act_mag(a, g->mag[x] * 0.7 * sqrt((double)n) + 1);
    if (chance(g, 25)) { /* a residual: x + Dense(x) */
        k = n;
        return define(g, shape1(k), m + g->mag[x], -1, -1, 1, &x, "Add([$0, Dense($0, %d, activation: %s)])", k, a);
    }
    if (chance(g, 15))   /* what prepare and --embed-weights fold into the Dense */
        return define(g, shape1(k), g->mag[x] * 0.7 * sqrt((double)n) + 5, -1, -1, 1, &x,
                      "BatchNormalization(Dense($0, %d%s))", k, chance(g, 30) ? ", use_bias: false" : "");
    return define(g, shape1(k), m, -1, -1, 1, &x, "Dense($0, %d, activation: %s%s%s)", k, a,
                  chance(g, 25) ? ", use_bias: false" : "", chance(g, 10) ? ", trainable: false" : "");
}

/* A shared Dense instance applied to a value of its input size (declared on first use). */
static int shared_dense(gen *g)
{
    dt_program *p = g->p;
    int d = -1;
    for (int i = 0; i < p->nst; i++)
        if (!strncmp(p->st[i].text, "shared", 6) && chance(g, 70)) d = i;
    int x;
    if (d >= 0) {
        x = pick(g, units_in, &g->din[d]);
        if (x < 0) return -1;
    } else {
        x = pick(g, rank1, NULL);
        if (x < 0) return -1;
        const char *a = activation(g);
        d = declare(g, "shared # = Dense(%d, activation: %s)", between(g, 1, 8), a);
        if (d < 0) return -1;
        g->din[d] = p->val[x].d[0];
        sscanf(p->st[d].text, "shared # = Dense(%d", &g->dout[d]);
    }
    return define(g, shape1(g->dout[d]), g->mag[x] * 0.7 * sqrt((double)g->din[d]) + 1, d, -1, 1, &x, "#($0)");
}

static int matmul(gen *g)
{
    int x = pick(g, any, NULL);
    if (x < 0) return -1;
    dt_shape s = g->p->val[x];
    int n = s.d[s.rank - 1], k = between(g, 1, 6);
    int d = declare(g, "weight #: [%d, %d]", n, k);
    if (d < 0) return -1;
    s.d[s.rank - 1] = k;
    return define(g, s, g->mag[x] * 0.7 * sqrt((double)n) + 1, d, -1, 1, &x, "$0 @ #");
}

static int reshape(gen *g)
{
    int x = pick(g, any, NULL);
    if (x < 0) return -1;
    const dt_shape *s = &g->p->val[x];
    int64_t n = elems(s);
    if (s->rank >= 2 && chance(g, 50))
        return define(g, shape1((int)n), g->mag[x], -1, -1, 1, &x, chance(g, 50) ? "Flatten($0)" : "reshape($0, [-1])");
    int divs[32], nd = 0;
    for (int a = 2; a < n && nd < 32; a++)
        if (n % a == 0) divs[nd++] = a;
    if (nd == 0) return -1;
    int a = divs[below(g, nd)];
    dt_shape t = {2, {a, (int)(n / a)}};
    if (chance(g, 50)) return define(g, t, g->mag[x], -1, -1, 1, &x, "reshape($0, [%d, %d])", a, (int)(n / a));
    return define(g, t, g->mag[x], -1, -1, 1, &x, "Reshape($0, [%d, -1])", a);
}

static int transpose(gen *g)
{
    int x = pick(g, rank2plus, NULL);
    if (x < 0) return -1;
    const dt_shape *s = &g->p->val[x];
    if (chance(g, 30)) { /* the per-sample axes reversed */
        dt_shape t = {s->rank, {0}};
        for (int i = 0; i < s->rank; i++) t.d[i] = s->d[s->rank - 1 - i];
        return define(g, t, g->mag[x], -1, -1, 1, &x, "transpose($0)");
    }
    int perm[DT_MAX_RANK];
    for (int i = 0; i < s->rank; i++) perm[i] = i;
    for (int i = s->rank - 1; i > 0; i--) {
        int j = below(g, i + 1), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    char list[64] = "0";
    dt_shape t = {s->rank, {0}};
    for (int i = 0; i < s->rank; i++) {
        t.d[i] = s->d[perm[i]];
        snprintf(list + strlen(list), sizeof list - strlen(list), ", %d", perm[i] + 1);
    }
    return define(g, t, g->mag[x], -1, -1, 1, &x, "transpose($0, [%s])", list);
}

static int reduce(gen *g)
{
    static const char *const fns[] = {"sum", "mean", "max"};
    int x = pick(g, any, NULL);
    if (x < 0) return -1;
    const dt_shape *s = &g->p->val[x];
    const char *fn = fns[below(g, 3)];
    int axis = between(g, 1, s->rank);
    double m = !strcmp(fn, "sum") ? g->mag[x] * (double)s->d[axis - 1] : g->mag[x];
    if (s->rank == 1 || chance(g, 30)) {
        dt_shape t = *s;
        t.d[axis - 1] = 1;
        return define(g, t, m, -1, -1, 1, &x, "%s($0, axis: %d, keepdims: true)", fn, axis);
    }
    dt_shape t = {0, {0}};
    for (int i = 0; i < s->rank; i++)
        if (i != axis - 1) t.d[t.rank++] = s->d[i];
    return define(g, t, m, -1, -1, 1, &x, "%s($0, axis: %d)", fn, chance(g, 30) ? axis - 1 - s->rank : axis);
}

static int conv(gen *g)
{
    int x = pick(g, image, NULL);
    if (x < 0) return -1;
    const dt_shape *s = &g->p->val[x];
    int h = s->d[0], w = s->d[1], c = s->d[2];
    int k = between(g, 1, 3), st = chance(g, 70) ? 1 : 2, f = between(g, 1, 4);
    bool same = chance(g, 50);
    if (!same && (k > h || k > w)) return -1;
    dt_shape t = {3, {same ? (h + st - 1) / st : (h - k) / st + 1, same ? (w + st - 1) / st : (w - k) / st + 1, f}};
    if (chance(g, 15))   /* what prepare and --embed-weights fold into the convolution */
        return define(g, t, g->mag[x] * 0.7 * sqrt((double)(k * k * c)) + 5, -1, -1, 1, &x,
                      "BatchNormalization(Conv2D($0, %d, %d, strides: %d, padding: %s%s))", f, k, st,
                      same ? "same" : "valid", chance(g, 30) ? ", use_bias: false" : "");
    const char *a = activation(g);
    return define(g, t, act_mag(a, g->mag[x] * 0.7 * sqrt((double)(k * k * c)) + 1), -1, -1, 1, &x,
                  "Conv2D($0, %d, %d, strides: %d, padding: %s, activation: %s%s)", f, k, st, same ? "same" : "valid", a,
                  chance(g, 10) ? ", trainable: false" : "");
}

/* DepthwiseConv2D, SeparableConv2D, or a Conv2D with a non-square kernel, strides or a dilation. */
static int conv_variant(gen *g)
{
    int x = pick(g, image, NULL);
    if (x < 0) return -1;
    const dt_shape *s = &g->p->val[x];
    int h = s->d[0], w = s->d[1], c = s->d[2];
    int kind = below(g, 3), k[2] = {between(g, 1, 3), between(g, 1, 3)}, d[2] = {1, 1}, st[2] = {1, 1};
    if (chance(g, 40)) d[0] = between(g, 1, 2), d[1] = between(g, 1, 2);
    else if (chance(g, 40)) st[0] = between(g, 1, 2), st[1] = between(g, 1, 2);
    bool same = chance(g, 50);
    int span[2] = {(k[0] - 1) * d[0] + 1, (k[1] - 1) * d[1] + 1}, out[2];
    for (int i = 0; i < 2; i++) {
        int in = i ? w : h;
        if (!same && span[i] > in) return -1;
        out[i] = same ? (in + st[i] - 1) / st[i] : (in - span[i]) / st[i] + 1;
    }
    int dm = between(g, 1, 2), f = between(g, 1, 4);
    const char *a = activation(g);
    char geo[160];
    snprintf(geo, sizeof geo, "[%d, %d], strides: [%d, %d], padding: %s, dilation_rate: [%d, %d]", k[0], k[1], st[0],
             st[1], same ? "same" : "valid", d[0], d[1]);
    double m = g->mag[x] * 0.7 * sqrt((double)(k[0] * k[1])) + 1;
    if (kind == 0) {
        dt_shape t = {3, {out[0], out[1], c * dm}};
        return define(g, t, act_mag(a, m), -1, -1, 1, &x, "DepthwiseConv2D($0, %s, depth_multiplier: %d, activation: %s%s)",
                      geo, dm, a, chance(g, 20) ? ", use_bias: false" : "");
    }
    if (kind == 1) {
        dt_shape t = {3, {out[0], out[1], f}};
        return define(g, t, act_mag(a, m * 0.7 * sqrt((double)(c * dm)) + 1), -1, -1, 1, &x,
                      "SeparableConv2D($0, %d, %s, depth_multiplier: %d, activation: %s)", f, geo, dm, a);
    }
    dt_shape t = {3, {out[0], out[1], f}};
    return define(g, t, act_mag(a, g->mag[x] * 0.7 * sqrt((double)(k[0] * k[1] * c)) + 1), -1, -1, 1, &x,
                  "Conv2D($0, %d, %s, activation: %s)", f, geo, a);
}

static int pool(gen *g)
{
    int x = pick(g, image, NULL);
    if (x < 0) return -1;
    const dt_shape *s = &g->p->val[x];
    int h = s->d[0], w = s->d[1], c = s->d[2];
    switch (below(g, 4)) {
    case 0:
    case 1: {
        bool same = chance(g, 50);
        dt_shape t = {3, {same ? (h + 1) / 2 : h / 2, same ? (w + 1) / 2 : w / 2, c}};
        return define(g, t, g->mag[x], -1, -1, 1, &x, "%s($0, 2%s)", chance(g, 50) ? "MaxPooling2D" : "AveragePooling2D",
                      same ? ", padding: same" : "");
    }
    case 2:
        return define(g, shape1(c), g->mag[x], -1, -1, 1, &x, "%s($0)",
                      chance(g, 50) ? "GlobalAveragePooling2D" : "GlobalMaxPooling2D");
    default: {
        dt_shape t = {3, {h + 2, w + 2, c}};
        return define(g, t, g->mag[x], -1, -1, 1, &x, "ZeroPadding2D($0, 1)");
    }
    }
}

static bool sequence(const dt_shape *s, const void *arg) { (void)arg; return s->rank == 2 && s->d[0] >= 2; }

/* The Keras layers made of other ops (layers.c): 1-D convolutions and pools
 * on a [steps, channels] value, LayerNormalization and Dense on any rank,
 * RepeatVector, Dot, Minimum, the activation layers, Rescaling and
 * Normalization, UpSampling2D, Cropping2D, Permute, BatchNormalization
 * off the last axis, SpatialDropout2D, and regularizers (in the loss). */
static int keras_layer(gen *g)
{
    switch (below(g, 8)) {
    case 0: {   /* Conv1D */
        int x = pick(g, sequence, NULL);
        if (x < 0) return -1;
        const dt_shape *s = &g->p->val[x];
        int n = s->d[0], c = s->d[1], k = between(g, 1, 3), st = chance(g, 70) ? 1 : 2, f = between(g, 1, 4);
        int pad = below(g, 3);    /* valid, same, causal */
        if (pad == 0 && k > n) return -1;
        int out = pad == 1 ? (n + st - 1) / st : pad == 2 ? (n - 1) / st + 1 : (n - k) / st + 1;
        const char *a = activation(g);
        return define(g, (dt_shape){2, {out, f}}, act_mag(a, g->mag[x] * 0.7 * sqrt((double)(k * c)) + 1), -1, -1, 1, &x,
                      "Conv1D($0, %d, %d, strides: %d, padding: %s, activation: %s%s)", f, k, st,
                      pad == 0 ? "valid" : pad == 1 ? "same" : "causal", a,
                      chance(g, 20) ? ", kernel_regularizer: l2(0.01), activity_regularizer: l1(0.001)" : "");
    }
    case 1: {   /* the 1-D pools */
        int x = pick(g, sequence, NULL);
        if (x < 0) return -1;
        const dt_shape *s = &g->p->val[x];
        if (chance(g, 35))
            return define(g, shape1(s->d[1]), g->mag[x], -1, -1, 1, &x, "%s($0)",
                          chance(g, 50) ? "GlobalAveragePooling1D" : "GlobalMaxPooling1D");
        bool same = chance(g, 50);
        return define(g, (dt_shape){2, {same ? (s->d[0] + 1) / 2 : s->d[0] / 2, s->d[1]}}, g->mag[x], -1, -1, 1, &x,
                      "%s($0, 2%s)", chance(g, 50) ? "MaxPooling1D" : "AveragePooling1D", same ? ", padding: same" : "");
    }
    case 2: {   /* LayerNormalization, or Dense on the last axis of a value of rank 2 or 3 */
        int x = pick(g, rank2plus, NULL);
        if (x < 0) return -1;
        dt_shape t = g->p->val[x];
        if (chance(g, 50))
            return define(g, t, 4, -1, -1, 1, &x, "LayerNormalization($0%s)", chance(g, 30) ? ", center: false" : "");
        int n = t.d[t.rank - 1], k = between(g, 1, 6);
        t.d[t.rank - 1] = k;
        const char *a = activation(g);
        return define(g, t, act_mag(a, g->mag[x] * 0.7 * sqrt((double)n) + 1), -1, -1, 1, &x,
                      "Dense($0, %d, activation: %s%s)", k, a, chance(g, 30) ? ", bias_regularizer: l1_l2(l1: 0.01, l2: 0.02)" : "");
    }
    case 3: {   /* RepeatVector, Dot, Minimum */
        int x = pick(g, rank1, NULL);
        if (x < 0) return -1;
        dt_shape s = g->p->val[x];
        int kind = below(g, 3);
        if (kind == 0) {
            int n = between(g, 1, 3);
            return define(g, (dt_shape){2, {n, s.d[0]}}, g->mag[x], -1, -1, 1, &x, "RepeatVector($0, %d)", n);
        }
        int y = pick(g, same_as, &s);
        int ops[2] = {x, y};
        if (kind == 1)
            return define(g, shape1(1), chance(g, 50) ? 1 : g->mag[x] * g->mag[y] * s.d[0], -1, -1, 2, ops,
                          "Dot([$0, $1], axes: 1%s)", chance(g, 50) ? ", normalize: true" : "");
        return define(g, s, fmax(g->mag[x], g->mag[y]), -1, -1, 2, ops, "Minimum([$0, $1])");
    }
    case 4: {   /* the activation layers, Rescaling, Normalization, GaussianNoise */
        int x = pick(g, any, NULL);
        if (x < 0) return -1;
        dt_shape s = g->p->val[x];
        double m = g->mag[x];
        switch (below(g, 7)) {
        case 6: return define(g, s, m + 1, -1, -1, 1, &x, "GaussianNoise($0, 0.2)");
        case 0: return define(g, s, 2, -1, -1, 1, &x, "ReLU($0, max_value: 2, negative_slope: 0.25, threshold: 0.1)");
        case 1: return define(g, s, m, -1, -1, 1, &x, "LeakyReLU($0, negative_slope: 0.2)");
        case 2: return define(g, s, m + 1, -1, -1, 1, &x, "ELU($0, alpha: 0.5)");
        case 3: return define(g, s, m, -1, -1, 1, &x, "PReLU($0, alpha_initializer: 0.3)");
        case 4: return define(g, s, m * 0.5 + 1, -1, -1, 1, &x, "Rescaling($0, scale: 0.5, offset: -1)");
        default: return define(g, s, m / 1.5 + 1, -1, -1, 1, &x, "Normalization($0, mean: 0.25, variance: 2.25)");
        }
    }
    case 5: {   /* Conv2DTranspose, UpSampling2D, Cropping2D */
        int x = pick(g, image, NULL);
        if (x < 0) return -1;
        const dt_shape *s = &g->p->val[x];
        if (chance(g, 30)) {   /* Conv2DTranspose */
            int k = between(g, 1, 3), st = between(g, 1, 2), f = between(g, 1, 3);
            bool same = chance(g, 50);
            int oh = same ? s->d[0] * st : (s->d[0] - 1) * st + k, ow = same ? s->d[1] * st : (s->d[1] - 1) * st + k;
            const char *a = activation(g);
            return define(g, (dt_shape){3, {oh, ow, f}}, act_mag(a, g->mag[x] * 0.7 * sqrt((double)(k * k * s->d[2])) + 1),
                          -1, -1, 1, &x, "Conv2DTranspose($0, %d, %d, strides: %d, padding: %s, activation: %s)", f, k, st,
                          same ? "same" : "valid", a);
        }
        if (chance(g, 50)) {
            int a = between(g, 1, 2), b = between(g, 1, 2);
            return define(g, (dt_shape){3, {s->d[0] * a, s->d[1] * b, s->d[2]}}, g->mag[x], -1, -1, 1, &x,
                          "UpSampling2D($0, size: [%d, %d]%s)", a, b, chance(g, 50) ? ", interpolation: bilinear" : "");
        }
        int t = below(g, s->d[0]), l = below(g, s->d[1]);
        return define(g, (dt_shape){3, {s->d[0] - t, s->d[1] - l, s->d[2]}}, g->mag[x], -1, -1, 1, &x,
                      "Cropping2D($0, [[%d, 0], [0, %d]])", t, l);
    }
    case 6: {   /* Permute of a rank-2 or rank-3 value */
        int x = pick(g, rank2plus, NULL);
        if (x < 0) return -1;
        const dt_shape *s = &g->p->val[x];
        if (s->rank == 2) return define(g, (dt_shape){2, {s->d[1], s->d[0]}}, g->mag[x], -1, -1, 1, &x, "Permute($0, [2, 1])");
        return define(g, (dt_shape){3, {s->d[2], s->d[0], s->d[1]}}, g->mag[x], -1, -1, 1, &x, "Permute($0, [3, 1, 2])");
    }
    default: {  /* BatchNormalization off the last axis, SpatialDropout2D */
        int x = pick(g, image, NULL);
        if (x < 0) return -1;
        dt_shape s = g->p->val[x];
        if (chance(g, 50)) return define(g, s, 4, -1, -1, 1, &x, "BatchNormalization($0, axis: %d)", between(g, 1, 2));
        return define(g, s, g->mag[x] * 2, -1, -1, 1, &x, "SpatialDropout2D($0, 0.3)");
    }
    }
}

/* A block (inlined) with a residual, or a repeat that rebinds a value. */
static int block_or_repeat(gen *g)
{
    int x = pick(g, rank1, NULL);
    if (x < 0) return -1;
    if (chance(g, 50)) return define(g, g->p->val[x], g->mag[x] * 1.5 + 1, -1, DT_LAYER_RESIDUAL, 1, &x, "Residual($0)");
    if (chance(g, 50))
        return define(g, g->p->val[x], 1.5, -1, -1, 1, &x, "$0\n    repeat %d { %% = tanh(%%) * 0.9 + 0.05 }", between(g, 1, 3));
    /* many weights of one shape side by side, each too large for the stack
     * (more than LP_LOCAL_MAX elements): the optimizer's updates of all of
     * them merge into long loops (apply_gradients needs them whole) */
    int n = between(g, 5, 8);
    return define(g, shape1(n), 1, -1, DT_LAYER_MAT, 1, &x, "Dense($0, %d)\n    repeat %d { %% = Mat(%%) }", n,
                  between(g, 6, 14));
}

static int custom_layer(gen *g)
{
    int x = pick(g, rank1, NULL);
    if (x < 0) return -1;
    if (chance(g, 50)) return define(g, g->p->val[x], g->mag[x] * 2 + 1, -1, DT_LAYER_NORM, 1, &x, "Norm($0)");
    int k = between(g, 1, 6);
    return define(g, shape1(k), 3, -1, DT_LAYER_GATE, 1, &x, "Gate($0, %d)", k);
}

/* ---- the program --------------------------------------------------------------------- */

static dt_shape input_shape(gen *g)
{
    int r = below(g, 10);
    if (r < 6) return shape1(between(g, 1, 8));
    if (r < 9) return (dt_shape){3, {between(g, 2, 6), between(g, 2, 6), between(g, 1, 3)}};
    return (dt_shape){2, {between(g, 2, 4), between(g, 2, 5)}};
}

/* Token ids: in about one program in six, the one input holds i32 ids and
 * the first statement embeds them (Embedding(vocab, dim), over [T] or
 * [A, B]), so every later value descends from the embedding. Drawn from a
 * stream of its own, so every other program of a seed is what it was before
 * Embedding existed. */
static bool token_program(uint64_t seed) { return kdk_mix64(seed ^ 0x746f6b656e73ULL) % 6 == 0; }

static void embed_tokens(gen *g, uint64_t seed)
{
    dt_program *p = g->p;
    uint64_t h = kdk_mix64(kdk_mix64(seed ^ 0x746f6b656e73ULL));
    p->i32[0] = true;
    p->val[0] = h % 3 ? shape1(1 + (int)((h >> 8) % 6))
                      : (dt_shape){2, {1 + (int)((h >> 8) % 3), 2 + (int)((h >> 16) % 3)}};
    int vocab = 2 + (int)((h >> 24) % 8), dim = 1 + (int)((h >> 32) % 4), x = 0;
    dt_shape s = p->val[0];
    s.d[s.rank++] = dim;
    if (define(g, s, 1, -1, -1, 1, &x, "Embedding($0, %d, %d)", vocab, dim) < 0) p->i32[0] = false;
}

/* A loop over time: in about one program in five (another stream of its
 * own), the first statement runs a SimpleRNN, LSTM or GRU over a sequence ([T, F]: input
 * 0, made one, or token embeddings), with or without every step's state,
 * one way or the other over time (backwards with every step: the outputs
 * reversed into Keras' order), with or without dropout, or both ways in a
 * Bidirectional. */
static void recurrent(gen *g, uint64_t seed)
{
    uint64_t h = kdk_mix64(seed ^ 0x726e6e73ULL);
    if (h % 5 != 0) return;
    dt_program *p = g->p;
    int x = p->nval - 1;
    if (!p->i32[0]) {   /* input 0 becomes a sequence */
        x = 0;
        p->val[0] = (dt_shape){2, {1 + (int)((h >> 24) % 6), 1 + (int)((h >> 28) % 4)}};
    }
    if (p->val[x].rank != 2) return;
    int units = 1 + (int)((h >> 8) % 5);
    bool seqs = (h >> 16) & 1, back = (h >> 17) & 1, bidi = ((h >> 44) & 3) == 0, concat = (h >> 46) & 1;
    static const char *const drops[] = {"", "", ", dropout: 0.25", ", recurrent_dropout: 0.3"};
    const char *drop = drops[(h >> 48) % 4];
    static const char *const acts[] = {"", ", activation: relu", ", activation: sigmoid", ", use_bias: false"};
    static const char *const cells[] = {"SimpleRNN", "LSTM", "GRU", "GRU"};
    int cell = (int)((h >> 40) % 4), width = bidi && concat ? 2 * units : units;
    dt_shape s = seqs ? (dt_shape){2, {p->val[x].d[0], width}} : shape1(width);
    if (bidi)   /* both ways over time, merged (Bidirectional's layer goes forwards) */
        define(g, s, 1, -1, -1, 1, &x, "Bidirectional($0, %s(%d%s%s%s%s), merge_mode: %s)", cells[cell], units,
               seqs ? ", return_sequences: true" : "", acts[(h >> 20) % 4], cell == 3 ? ", reset_after: false" : "",
               drop, concat ? "concat" : "sum");
    else
        define(g, s, 1, -1, -1, 1, &x, "%s($0, %d%s%s%s%s%s)", cells[cell], units, seqs ? ", return_sequences: true" : "",
               back ? ", go_backwards: true" : "", acts[(h >> 20) % 4], cell == 3 ? ", reset_after: false" : "", drop);
}

void dt_generate(dt_program *p, uint64_t seed, int size)
{
    memset(p, 0, sizeof *p);
    gen g = {.p = p, .rng = kdk_mix64(seed ^ 0x6469666674657374ULL)};
    int r = below(&g, 20);
    p->ninputs = r < 11 ? 1 : r < 18 ? 2 : 3;
    for (int i = 0; i < p->ninputs; i++) p->val[i] = input_shape(&g), g.mag[i] = 1;
    if (token_program(seed)) p->ninputs = 1;
    p->nval = p->ninputs;
    if (token_program(seed)) embed_tokens(&g, seed);
    recurrent(&g, seed);
    int (*const forms[])(gen *) = {unary, unary, unary, binary, binary, binary, fan_out, fan_out, with_weight, concat,
                                   dense, dense,
                                   shared_dense, matmul, reshape, transpose, reduce, softmax_axis, conv, conv, pool,
                                   custom_layer, block_or_repeat, conv_variant, conv_variant, keras_layer, keras_layer};
    int nforms = (int)(sizeof forms / sizeof forms[0]);
    for (int i = 0, tries = 0; i < size && tries < size * 20; tries++) {
        int nst = p->nst, nval = p->nval;
        if (forms[below(&g, nforms)](&g) >= 0) i++;
        else p->nst = nst, p->nval = nval;   /* drop what a form that did not fit made before it failed */
    }
    if (p->nval == p->ninputs && !p->i32[0]) { /* nothing fitted: one unary at least */
        int x = 0;
        define(&g, p->val[0], 2, -1, -1, 1, &x, "tanh($0)");
    }
    /* outputs: the last value, then values nobody uses (the sinks), rarely any value */
    p->outs[p->nouts++] = p->nval - 1;
    int want = below(&g, 10) < 6 ? 1 : below(&g, 2) + 2;
    for (int v = p->nval - 2; v >= p->ninputs && p->nouts < want; v--)
        if ((g.uses[v] == 0 && chance(&g, 70)) || chance(&g, 5)) p->outs[p->nouts++] = v;
    p->train = p->nouts == 1 && chance(&g, 85);
    p->loss = DT_MSE;
    if (p->train && p->val[p->outs[0]].rank == 1 && chance(&g, 50)) {
        p->loss = (dt_loss)between(&g, 1, DT_LOSS_COUNT - 1);
        int y = p->outs[0], head = -1;   /* probabilities for the losses that take them */
        if (p->loss == DT_CCE) head = define(&g, p->val[y], 1, -1, -1, 1, &y, "Softmax($0)");
        if (p->loss == DT_BCE) head = define(&g, p->val[y], 1, -1, -1, 1, &y, "sigmoid($0)");
        if (head >= 0) p->outs[0] = head;
        else if (p->loss == DT_CCE || p->loss == DT_BCE) p->loss = DT_MSE;
    }
    p->optimizer = (dt_optimizer)below(&g, DT_OPTIMIZER_COUNT);
    p->batch = chance(&g, 30) ? 1 : between(&g, 2, 5);
    p->max_batch = p->batch + (chance(&g, 50) ? 0 : between(&g, 1, 3));
    p->data_seed = next(&g);
}

/* ---- printing ------------------------------------------------------------------------ */

static const char *const layer_text[DT_LAYER_COUNT] = {
    /* state, an update, and training-mode logic (test_sema's custom layer) */
    [DT_LAYER_NORM] =
    "layer Norm() {\n"
    "    input x: [n]\n"
    "    weight scale: [n] = ones\n"
    "    state running: [n]\n"
    "    if training {\n"
    "        m = mean(x, axis: 0)\n"
    "        update running = running * 0.9 + m * 0.1\n"
    "        output (x - m) * scale\n"
    "    } else {\n"
    "        output (x - running) * scale\n"
    "    }\n"
    "}\n",
    /* weights, a rebound name, dropout only in training */
    [DT_LAYER_GATE] =
    "layer Gate(units) {\n"
    "    input x: [n]\n"
    "    weight w: [n, units]\n"
    "    weight b: [units] = zeros\n"
    "    h = tanh(x @ w + b)\n"
    "    if training {\n"
    "        output dropout(h, 0.25) * sigmoid(h)\n"
    "    } else {\n"
    "        output h * sigmoid(h)\n"
    "    }\n"
    "}\n",
    /* a block: inlined where it is called */
    [DT_LAYER_RESIDUAL] =
    "block Residual(x) {\n"
    "    input x: [n]\n"
    "    h = Dense(x, n, activation: tanh)\n"
    "    output x + h * 0.5\n"
    "}\n",
    /* a square weight: repeated, many weights of one shape */
    [DT_LAYER_MAT] =
    "layer Mat() {\n"
    "    input x: [n]\n"
    "    weight w: [n, n]\n"
    "    output tanh(x @ w)\n"
    "}\n",
};

typedef struct sbuf {
    char *s;
    size_t len, cap;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->len + (size_t)n + 1 > b->cap) {
        b->cap = (b->len + (size_t)n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        if (!b->s) abort();
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* A value's name; a statement the reducer made a copy (`$0`) prints as the value it copies. */
static void value_name(const dt_program *p, int v, char *out, size_t n)
{
    for (bool moved = true; moved && v >= p->ninputs;) {
        moved = false;
        for (int i = 0; i < p->nst; i++)
            if (p->st[i].def == v && !strcmp(p->st[i].text, "$0")) {
                v = p->st[i].ops[0];
                moved = true;
                break;
            }
    }
    snprintf(out, n, v < p->ninputs ? "x%d" : "v%d", v);
}

void dt_live(const dt_program *p, bool *live)
{
    bool need[DT_MAX_VALUES] = {0};
    for (int i = 0; i < p->nouts; i++) need[p->outs[i]] = true;
    for (int i = 0; i < p->nst; i++) live[i] = false;
    for (int i = p->nst - 1; i >= 0; i--) {
        const dt_stmt *st = &p->st[i];
        if (st->def < 0 || !need[st->def]) continue;
        live[i] = true;
        for (int k = 0; k < st->nops; k++) need[st->ops[k]] = true;
        if (st->decl >= 0) live[st->decl] = true;
    }
}

char *dt_print(const dt_program *p)
{
    sbuf b = {0};
    bool live[DT_MAX_STMTS], used[DT_LAYER_COUNT] = {0};
    dt_live(p, live);
    put(&b, "# difftest: batch=%d max_batch=%d data_seed=%" PRIu64 "\n", p->batch, p->max_batch, p->data_seed);
    for (int i = 0; i < p->nst; i++)
        if (live[i] && p->st[i].layer >= 0) used[p->st[i].layer] = true;
    for (int l = 0; l < DT_LAYER_COUNT; l++)
        if (used[l]) put(&b, "%s\n", layer_text[l]);
    put(&b, "model m {\n");
    for (int i = 0; i < p->ninputs; i++) {
        put(&b, "    input x%d: %s[", i, p->i32[i] ? "i32" : "");
        for (int k = 0; k < p->val[i].rank; k++) put(&b, "%s%d", k ? ", " : "", p->val[i].d[k]);
        put(&b, "]\n");
    }
    for (int i = 0; i < p->nst; i++) {
        if (!live[i] || !strcmp(p->st[i].text, "$0")) continue;
        const dt_stmt *st = &p->st[i];
        char name[16];
        put(&b, "    ");
        if (st->def >= 0) {
            value_name(p, st->def, name, sizeof name);
            put(&b, "%s = ", name);
        }
        for (const char *c = st->text; *c; c++) {
            if (*c == '$' && c[1] >= '0' && c[1] <= '3') {
                value_name(p, st->ops[c[1] - '0'], name, sizeof name);
                put(&b, "%s", name);
                c++;
            } else if (*c == '%') {
                value_name(p, st->def, name, sizeof name);
                put(&b, "%s", name);
            } else if (*c == '#') {
                int d = st->def < 0 ? i : st->decl;
                put(&b, "%c%d", !strncmp(p->st[d].text, "shared", 6) ? 's' : 'w', d);
            } else {
                put(&b, "%c", *c);
            }
        }
        put(&b, "\n");
    }
    for (int i = 0; i < p->nouts; i++) {
        char name[16];
        value_name(p, p->outs[i], name, sizeof name);
        put(&b, "    output y%d = %s\n", i, name);
    }
    put(&b, "}\n");
    if (p->train) {
        static const char *const opt[DT_OPTIMIZER_COUNT] = {
            "SGD(learning_rate: 0.05, momentum: 0.9)", "SGD(learning_rate: 0.05, momentum: 0.5, nesterov: true)",
            "Adam(learning_rate: 0.01)", "RMSprop(learning_rate: 0.01)",
            "AdamW(learning_rate: 0.01, amsgrad: true, global_clipnorm: 1.0)", "Nadam(learning_rate: 0.01, clipnorm: 0.5)",
            "Adagrad(learning_rate: 0.05, weight_decay: 0.01)", "Adamax(learning_rate: 0.01, clipvalue: 0.2)",
            "Adadelta(learning_rate: 1.0)", "RMSprop(learning_rate: 0.01, momentum: 0.5, centered: true)"};
        static const char *const loss[DT_LOSS_COUNT] = {
            "MeanSquaredError()", "CategoricalCrossentropy(from_logits: true)", "CategoricalCrossentropy()",
            "SparseCategoricalCrossentropy(from_logits: true)", "BinaryCrossentropy(from_logits: true)",
            "BinaryCrossentropy()", "MeanAbsoluteError()", "Huber(delta: 0.5)", "LogCosh()", "Hinge()",
            "CosineSimilarity()", "mean(abs(y0 - y0_true)) + 0.1 * mean(square(y_pred))"};
        put(&b, "train m {\n    loss: %s\n    optimizer: %s\n    batch_size: %d\n    seed: %d\n}\n", loss[p->loss],
            opt[p->optimizer], p->max_batch, (int)(p->data_seed % 1000));
    }
    return b.s;
}

bool dt_parse_header(const char *text, int *batch, int *max_batch, uint64_t *data_seed)
{
    const char *h = strstr(text, "# difftest:");
    return h && sscanf(h, "# difftest: batch=%d max_batch=%d data_seed=%" SCNu64, batch, max_batch, data_seed) == 3 &&
           *batch >= 1 && *max_batch >= *batch;
}
