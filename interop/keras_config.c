/* keras_config.c — a Keras model config as KDSL text (keras_config.h).
 *
 * Each layer's config becomes a call of the built-in layer of the same
 * class: the arguments kdsl's layer table lists (builtin_layers.h) are
 * written when they differ from its defaults — required ones by position,
 * the rest by name — and every other key of the config must be one that
 * changes nothing (a name, a dtype of float32, channels_last, a null
 * constraint, an initializer's seed...). Whatever else is there is a
 * problem, reported with the layer's name; all of them are reported before
 * giving up, so one run lists everything a model needs.
 *
 * Both config dialects: Keras 2 (inbound_nodes as [[name, node, tensor,
 * kwargs], ...], batch_input_shape) and Keras 3 (inbound_nodes as
 * {"args": [keras tensors]}, batch_shape, dtype policies). */
#include "keras_config.h"

#include "builtin_layers.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct text {
    kd_arena *a;
    char *s;
    size_t len, cap;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *piece = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!piece) return;
    va_start(ap, fmt);
    vsnprintf(piece, (size_t)n + 1, fmt, ap);
    va_end(ap);
    if (t->len + (size_t)n + 1 > t->cap) {
        size_t cap = (t->cap ? t->cap * 2 : 4096) + (size_t)n;
        char *s = kd_alloc(t->a, cap);
        if (t->len) memcpy(s, t->s, t->len);
        t->s = s;
        t->cap = cap;
    }
    memcpy(t->s + t->len, piece, (size_t)n + 1);
    t->len += (size_t)n;
    free(piece);
}

typedef struct kx {
    kd_arena *a;
    kd_diags *d;
    const char *source;
    const char *layer, *cls;     /* the layer being translated, for messages */
    /* the model being written (a nested model has its own) */
    kd_strmap values;            /* Keras call ("dense", "dense@1") -> KDSL value name */
    kd_strmap ranks;             /* Keras call -> int*: its output's rank, batch included */
    kd_strmap calls;             /* Keras layer name -> int*: how many times the model calls it */
    kd_strset used;              /* value names taken */
    /* the whole program */
    text *models;                /* nested models, written before the model that uses them */
    kd_strset model_names;
    int depth;
} kx;

static void problem(kx *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(kx *k, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (k->layer) kd_error(k->d, (kd_loc){0}, "%s: layer '%s' (%s): %s", k->source, k->layer, k->cls, msg);
    else kd_error(k->d, (kd_loc){0}, "%s: %s", k->source, msg);
}

/* ---- names ---------------------------------------------------------------- */

static const char *const keywords[] = {"model", "block", "layer", "train", "input", "output", "weight", "state",
                                       "update", "shared", "repeat", "if", "else", "training", "true", "false", "none"};

static bool is_ident(const char *s)
{
    if (!s || !(isalpha((unsigned char)*s) || *s == '_')) return false;
    for (const char *p = s; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_')) return false;
    for (size_t i = 0; i < sizeof keywords / sizeof *keywords; i++)
        if (!strcmp(s, keywords[i])) return false;
    return true;
}

/* An identifier for a value named like `name`, not yet used. */
static const char *value_name(kx *k, const char *name)
{
    char *base = kd_format(k->a, "%s%s", name && (isalpha((unsigned char)*name) || *name == '_') ? "" : "v_", name ? name : "");
    for (char *p = base; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_')) *p = '_';
    if (!is_ident(base)) base = kd_format(k->a, "%s_", base);
    const char *v = base;
    for (int i = 1; kd_strset_has(&k->used, v); i++) v = kd_format(k->a, "%s_%d", base, i);
    kd_strset_add(k->a, &k->used, v);
    return v;
}

/* ---- values --------------------------------------------------------------- */

/* The shortest decimal that reads back as the same float32 when the value is
 * one (Keras saves float32 settings: 9.999999747378752e-05 is 0.0001), else
 * the shortest that reads back as the same double. */
static const char *number(kx *k, double v)
{
    if (v == floor(v) && fabs(v) < 1e15) return kd_format(k->a, "%.0f", v);
    char buf[64];
    bool f32 = (double)(float)v == v;
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, v);
        double back = strtod(buf, NULL);
        if (f32 ? (float)back == (float)v : back == v) break;
    }
    /* KDSL numbers need a digit before any exponent: 1e-04 is fine, as is 0.5 */
    return kd_format(k->a, "%s", buf);
}

static const char *value(kx *k, const cJSON *v, const char *what);

static const char *arguments(kx *k, const char *cls, const cJSON *cfg, const char *first, const char *name,
                             bool trainable, int rank);

/* An initializer or regularizer object: {"class_name": C, "config": {...}};
 * a wrapper's `layer` (Bidirectional's LSTM) as the call of that layer. */
static const char *setting(kx *k, const cJSON *v, const char *what)
{
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(v, "class_name");
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(v, "config");
    if (!cJSON_IsString(cls) || (cfg && !cJSON_IsObject(cfg))) {
        problem(k, "argument '%s': an object KDSL cannot read", what);
        return NULL;
    }
    const char *c = cls->valuestring;
    if (!strcmp(what, "layer") && kd_builtin_layer(c, NULL))
        return kd_format(k->a, "%s(%s)", c, arguments(k, c, cfg, NULL, NULL, true, 0));
    if (!strcmp(c, "L1") || !strcmp(c, "L2") || !strcmp(c, "L1L2")) {
        const cJSON *l1 = cJSON_GetObjectItemCaseSensitive(cfg, "l1"), *l2 = cJSON_GetObjectItemCaseSensitive(cfg, "l2");
        if ((l1 && !cJSON_IsNumber(l1)) || (l2 && !cJSON_IsNumber(l2))) {
            problem(k, "argument '%s': a %s without numbers", what, c);
            return NULL;
        }
        if (!strcmp(c, "L1")) return kd_format(k->a, "l1(%s)", number(k, l1 ? l1->valuedouble : 0.01));
        if (!strcmp(c, "L2")) return kd_format(k->a, "l2(%s)", number(k, l2 ? l2->valuedouble : 0.01));
        return kd_format(k->a, "l1_l2(l1: %s, l2: %s)", number(k, l1 ? l1->valuedouble : 0),
                         number(k, l2 ? l2->valuedouble : 0));
    }
    if (!strcmp(c, "VarianceScaling")) {   /* what TensorFlow.js writes for glorot_normal and friends */
        const cJSON *scale = cJSON_GetObjectItemCaseSensitive(cfg, "scale"), *mode = cJSON_GetObjectItemCaseSensitive(cfg, "mode");
        const cJSON *dist = cJSON_GetObjectItemCaseSensitive(cfg, "distribution");
        static const struct { double scale; const char *mode, *family; } named[] = {
            {1, "fan_avg", "glorot"}, {2, "fan_in", "he"}, {1, "fan_in", "lecun"}};
        for (size_t i = 0; cJSON_IsNumber(scale) && cJSON_IsString(mode) && cJSON_IsString(dist) && i < 3; i++) {
            if (scale->valuedouble != named[i].scale || strcmp(mode->valuestring, named[i].mode)) continue;
            if (!strcmp(dist->valuestring, "uniform")) return kd_format(k->a, "%s_uniform", named[i].family);
            if (!strcmp(dist->valuestring, "normal") || !strcmp(dist->valuestring, "truncated_normal"))
                return kd_format(k->a, "%s_normal", named[i].family);
        }
        problem(k, "argument '%s': this VarianceScaling has no KDSL equivalent", what);
        return NULL;
    }
    static const char *const known[] = {"GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform",
                                        "LecunNormal", "Zeros", "Ones", "RandomNormal", "RandomUniform", "Constant",
                                        "Orthogonal"};
    bool ok = false;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++) ok = ok || !strcmp(c, known[i]);
    if (!ok) {
        problem(k, "argument '%s': %s has no KDSL equivalent", what, c);
        return NULL;
    }
    text t = {.a = k->a};
    int nargs = 0;
    for (const cJSON *e = cfg ? cfg->child : NULL; e; e = e->next) {
        if (!strcmp(e->string, "seed")) continue;   /* kdsl draws from the train block's seed */
        const char *x = value(k, e, what);
        if (!x) return NULL;
        put(&t, "%s%s: %s", nargs++ ? ", " : "", e->string, x);
    }
    return nargs ? kd_format(k->a, "%s(%s)", c, t.s) : kd_snake_case(k->a, c);
}

static const char *value(kx *k, const cJSON *v, const char *what)
{
    if (cJSON_IsNull(v)) return "none";
    if (cJSON_IsTrue(v)) return "true";
    if (cJSON_IsFalse(v)) return "false";
    if (cJSON_IsNumber(v)) return number(k, v->valuedouble);
    if (cJSON_IsString(v)) {
        if (is_ident(v->valuestring) || !strcmp(v->valuestring, "none")) return v->valuestring;
        for (const char *p = v->valuestring; *p; p++)
            if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) {
                problem(k, "argument '%s': a string KDSL cannot quote", what);
                return NULL;
            }
        return kd_format(k->a, "\"%s\"", v->valuestring);
    }
    if (cJSON_IsArray(v)) {
        text t = {.a = k->a};
        put(&t, "[");
        int i = 0;
        for (const cJSON *e = v->child; e; e = e->next) {
            const char *x = value(k, e, what);
            if (!x) return NULL;
            put(&t, "%s%s", i++ ? ", " : "", x);
        }
        put(&t, "]");
        return t.s;
    }
    if (cJSON_IsObject(v)) return setting(k, v, what);
    problem(k, "argument '%s': a value KDSL cannot read", what);
    return NULL;
}

/* [a, a] -> a for the arguments that take an int or a pair. */
static const cJSON *collapse_pair(const char *name, const cJSON *v)
{
    static const char *const pairs[] = {"kernel_size", "strides", "pool_size", "dilation_rate", "size"};
    bool pair = false;
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) pair = pair || !strcmp(name, pairs[i]);
    if (!pair || !cJSON_IsArray(v) || cJSON_GetArraySize(v) < 1) return v;
    const cJSON *first = v->child;
    for (const cJSON *e = v->child; e; e = e->next)
        if (!cJSON_IsNumber(e) || e->valuedouble != first->valuedouble) return v;
    return first;
}

/* ---- one layer's arguments ------------------------------------------------- */

/* Keys that change nothing kdsl computes, whatever (or with these) values. */
static bool inert(kx *k, const char *key, const cJSON *v)
{
    static const char *const any[] = {"name", "trainable", "batch_input_shape", "batch_shape", "input_shape",
                                      "seed", "fused", "implementation", "ragged", "sparse", "build_config",
                                      "module", "registered_name", "dynamic", "input_length"};
    for (size_t i = 0; i < sizeof any / sizeof *any; i++)
        if (!strcmp(key, any[i])) return true;
    if (!strcmp(key, "dtype")) {   /* "float32", or Keras 3's policy {"class_name": "DTypePolicy", "config": {"name": "float32"}} */
        const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(v, "config");
        const cJSON *n = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(cfg, "name") : v;
        if (cJSON_IsNull(v) || (cJSON_IsString(n) && !strcmp(n->valuestring, "float32"))) return true;
        problem(k, "dtype %s: kdsl computes in float32 (or float64 with --dtype f64)",
                cJSON_IsString(n) ? n->valuestring : "?");
        return true;   /* reported */
    }
    if (!strcmp(key, "data_format")) {
        if (cJSON_IsNull(v) || (cJSON_IsString(v) && !strcmp(v->valuestring, "channels_last"))) return true;
        problem(k, "data_format %s: kdsl's layers are channels_last", cJSON_IsString(v) ? v->valuestring : "?");
        return true;
    }
    size_t n = strlen(key);
    if (n > 11 && !strcmp(key + n - 11, "_constraint") && cJSON_IsNull(v)) return true;
    if (n > 12 && !strcmp(key + n - 12, "_regularizer") && cJSON_IsNull(v)) return true;
    if ((!strcmp(key, "noise_shape") || !strcmp(key, "virtual_batch_size") || !strcmp(key, "adjustment")) &&
        cJSON_IsNull(v))
        return true;
    if ((!strcmp(key, "renorm") || !strcmp(key, "synchronized") || !strcmp(key, "keepdims") || !strcmp(key, "return_state") ||
         !strcmp(key, "stateful") || !strcmp(key, "unroll") || !strcmp(key, "time_major")) && cJSON_IsFalse(v))
        return true;
    if ((!strcmp(key, "dropout") || !strcmp(key, "recurrent_dropout")) && cJSON_IsNumber(v) && v->valuedouble == 0) return true;
    if (!strcmp(key, "lora_rank") && cJSON_IsNull(v)) return true;
    /* Bidirectional's backward copy of its layer, which kdsl makes itself (going backwards) */
    if (!strcmp(key, "backward_layer") && (cJSON_IsObject(v) || cJSON_IsNull(v))) return true;
    if (!strcmp(key, "groups") && cJSON_IsNumber(v) && v->valuedouble == 1) return true;
    /* BatchNormalization's initializers at Keras' defaults */
    static const struct { const char *key, *cls; } inits[] = {
        {"beta_initializer", "Zeros"}, {"gamma_initializer", "Ones"},
        {"moving_mean_initializer", "Zeros"}, {"moving_variance_initializer", "Ones"}};
    for (size_t i = 0; i < sizeof inits / sizeof *inits; i++) {
        if (strcmp(key, inits[i].key)) continue;
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "class_name");
        if (cJSON_IsString(c) && (!strcmp(c->valuestring, inits[i].cls) ||
                                  !strcmp(kd_snake_case(k->a, c->valuestring), kd_snake_case(k->a, inits[i].cls))))
            return true;
    }
    return false;
}

/* An axis as Keras saves it ([3]: one int), and the last axis of an input
 * of `rank` (batch included; 0: unknown) as -1, the default it usually is. */
static const cJSON *axis_arg(const char *name, const cJSON *v, int rank, cJSON *scratch)
{
    if (strcmp(name, "axis")) return v;
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1) v = v->child;
    if (cJSON_IsNumber(v) && rank > 1 && v->valuedouble == rank - 1) {
        *scratch = (cJSON){.type = cJSON_Number, .valuedouble = -1, .valueint = -1};
        return scratch;
    }
    return v;
}

/* The arguments of a call of `cls` with config `cfg`, after `first` (the
 * input, or NULL), with the name when `named`. */
static const char *arguments(kx *k, const char *cls, const cJSON *cfg, const char *first, const char *name,
                             bool trainable, int rank)
{
    cJSON scratch;
    int inputs = 1;
    const kd_layer_param *params = kd_builtin_layer(cls, &inputs);
    text t = {.a = k->a};
    put(&t, "%s", first ? first : "");
    int n = first ? 1 : 0;
    bool named_args = false;
    for (const kd_layer_param *p = params; p && p->name; p++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, p->name);
        if (!v) {
            if (!p->def) problem(k, "no '%s' in its config", p->name);
            named_args = true;   /* a later argument can no longer go by position */
            continue;
        }
        v = axis_arg(p->name, collapse_pair(p->name, v), rank, &scratch);
        const char *x = value(k, v, p->name);
        if (!x) continue;
        const char *def = p->def;
        if (def && def[0] == '=') {   /* "=pool_size": the other argument's value */
            const cJSON *o = cJSON_GetObjectItemCaseSensitive(cfg, def + 1);
            def = o ? value(k, collapse_pair(def + 1, o), def + 1) : NULL;
        }
        if (def && !strcmp(x, def)) {
            named_args = true;
            continue;
        }
        if (def && cJSON_IsNumber(v) && strtod(def, NULL) == v->valuedouble && strspn(def, "-+.0123456789e") == strlen(def)) {
            named_args = true;
            continue;
        }
        if (!p->def && !named_args) put(&t, "%s%s", n++ ? ", " : "", x);
        else {
            put(&t, "%s%s: %s", n++ ? ", " : "", p->name, x);
            named_args = true;
        }
    }
    for (const cJSON *e = cfg ? cfg->child : NULL; e; e = e->next) {
        bool known = false;
        for (const kd_layer_param *p = params; p && p->name && !known; p++) known = !strcmp(p->name, e->string);
        if (known || inert(k, e->string, e)) continue;
        char *txt = cJSON_PrintUnformatted(e);
        problem(k, "argument %s=%.200s has no KDSL equivalent", e->string, txt ? txt : "?");
        free(txt);
    }
    if (!trainable) put(&t, "%strainable: false", n++ ? ", " : "");
    if (name) put(&t, "%sname: \"%s\"", n++ ? ", " : "", name);
    return t.s;
}

/* The rank (batch included) of a layer's output from its input's, for the
 * layers that change it; 0 when unknown. */
static int out_rank(const char *cls, const cJSON *cfg, int in)
{
    if (!strcmp(cls, "Flatten") || !strncmp(cls, "Global", 6)) return 2;
    if (!strcmp(cls, "RepeatVector")) return 3;
    if (!strcmp(cls, "Reshape")) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(cfg, "target_shape");
        return cJSON_IsArray(t) ? cJSON_GetArraySize(t) + 1 : 0;
    }
    if (!strcmp(cls, "Dot")) return 0;
    return in;
}

/* ---- naming ---------------------------------------------------------------- */

/* Which layers need `name:`: those whose Keras name differs from the one
 * kdsl gives (`bases`: the snake-case class, or a nested model's own name,
 * with a counter per model, skipping names given explicitly). Iterated: naming one explicitly changes what the
 * others get. */
static bool *explicit_names(kx *k, const char *const *bases, const char *const *names, int n)
{
    bool *exp = kd_alloc_array(k->a, (size_t)(n ? n : 1), sizeof *exp);
    for (bool changed = true; changed;) {
        changed = false;
        kd_strset taken = {0};
        kd_strmap counters = {0};
        for (int i = 0; i < n; i++)
            if (exp[i]) kd_strset_add(k->a, &taken, names[i]);
        for (int i = 0; i < n && !changed; i++) {
            if (exp[i]) continue;
            const char *base = bases[i];
            int *count = kd_strmap_get(&counters, base);
            if (!count) {
                count = kd_alloc(k->a, sizeof *count);
                kd_strmap_put(k->a, &counters, base, count);
            }
            const char *got;
            do got = *count == 0 ? base : kd_format(k->a, "%s_%d", base, *count), ++*count;
            while (kd_strset_has(&taken, got));
            if (strcmp(got, names[i])) exp[i] = changed = true;
        }
    }
    return exp;
}

/* ---- the model ---------------------------------------------------------------- */

static const cJSON *get(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = get(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* `input NAME: [dims]` from an InputLayer's (or a first layer's) batch shape; 0 or its rank. */
static int input_decl(kx *k, text *t, const cJSON *cfg, const char *name)
{
    const cJSON *shape = get(cfg, "batch_input_shape");
    if (!shape) shape = get(cfg, "batch_shape");
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) < 2) {
        problem(k, "an input without a batch shape");
        return 0;
    }
    const cJSON *dt = get(cfg, "dtype");
    bool ids = cJSON_IsString(dt) && (!strcmp(dt->valuestring, "int32") || !strcmp(dt->valuestring, "int64"));
    if (cJSON_IsString(dt) && strcmp(dt->valuestring, "float32") && !ids) {
        problem(k, "input dtype %s: kdsl's inputs are float32, or int32 token ids", dt->valuestring);
        return 0;
    }
    put(t, "    input %s: %s[", name, ids ? "i32" : "");
    int i = 0;
    for (const cJSON *e = shape->child->next; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 1 || e->valuedouble > 1e9 || e->valuedouble != floor(e->valuedouble)) {
            problem(k, "input dimension %d is %s: kdsl needs every dimension but the batch fixed", i + 1,
                    cJSON_IsNull(e) ? "None" : "not a positive integer");
            return 0;
        }
        put(t, "%s%.0f", i++ ? ", " : "", e->valuedouble);
    }
    put(t, "]\n");
    return i + 1;
}

static bool is_trainable(const cJSON *cfg)
{
    const cJSON *tr = get(cfg, "trainable");
    return !cJSON_IsFalse(tr);
}

static void check_class(kx *k, const char *cls)
{
    int inputs;
    if (!kd_builtin_layer(cls, &inputs)) problem(k, "kdsl has no layer %s", cls);
}

static bool is_model_class(const char *cls)
{
    return cls && (!strcmp(cls, "Sequential") || !strcmp(cls, "Functional") || !strcmp(cls, "Model"));
}

static const char *nested_model(kx *k, const cJSON *layer);

/* The name kdsl gives an instance of class `cls` before its counter: a
 * nested model is named after itself. */
static const char *instance_base(kx *k, const char *cls, const cJSON *layer)
{
    if (is_model_class(cls)) {
        const char *n = str(get(layer, "config"), "name");
        return n ? n : str(layer, "name") ? str(layer, "name") : "?";
    }
    return kd_snake_case(k->a, cls);
}

static void sequential(kx *k, text *t, const cJSON *cfg, const char *model_name)
{
    const cJSON *layers = cJSON_IsArray(cfg) ? cfg : get(cfg, "layers");
    if (!cJSON_IsArray(layers) || !layers->child) {
        problem(k, "a Sequential model without layers");
        return;
    }
    put(t, "model %s {\n", model_name);
    const cJSON *l = layers->child;
    const cJSON *lcfg = get(l, "config");
    const char *cls = str(l, "class_name");
    k->layer = str(lcfg, "name");
    k->cls = cls ? cls : "?";
    int rank;
    if (cls && !strcmp(cls, "InputLayer")) {
        rank = input_decl(k, t, lcfg, value_name(k, k->layer ? k->layer : "x"));
        l = l->next;
    } else
        rank = input_decl(k, t, lcfg, value_name(k, "x"));
    int n = 0;
    for (const cJSON *e = l; e; e = e->next) n++;
    const char **classes = kd_alloc_array(k->a, (size_t)n + 1, sizeof *classes);
    const char **names = kd_alloc_array(k->a, (size_t)n + 1, sizeof *names);
    int i = 0;
    const char **bases = kd_alloc_array(k->a, (size_t)n + 1, sizeof *bases);
    for (const cJSON *e = l; e; e = e->next, i++) {
        classes[i] = str(e, "class_name") ? str(e, "class_name") : "?";
        names[i] = str(get(e, "config"), "name") ? str(get(e, "config"), "name") : "";
        bases[i] = instance_base(k, classes[i], e);
    }
    bool *exp = explicit_names(k, bases, names, n);
    i = 0;
    for (const cJSON *e = l; e; e = e->next, i++) {
        k->layer = names[i];
        k->cls = classes[i];
        const cJSON *c = get(e, "config");
        if (is_model_class(classes[i])) {   /* a model used as a layer */
            const char *m = nested_model(k, e);
            if (!m) continue;
            const char *tr = is_trainable(c) ? "" : "trainable: false";
            if (e->next) put(t, "    %s(%s)\n", m, tr);
            else put(t, "    output %s = %s(%s)\n", value_name(k, names[i]), m, tr);
            rank = 0;
            continue;
        }
        check_class(k, classes[i]);
        const char *args = arguments(k, classes[i], c, NULL, exp[i] ? names[i] : NULL, is_trainable(c), rank);
        rank = out_rank(classes[i], c, rank);
        if (e->next) put(t, "    %s(%s)\n", classes[i], args);
        else put(t, "    output %s = %s(%s)\n", value_name(k, names[i]), classes[i], args);
    }
    put(t, "}\n");
}

/* A call's output by layer name and call index: "dense" for call 0, "dense@1" ... */
static const char *call_key(kx *k, const char *name, int node)
{
    return node == 0 ? name : kd_format(k->a, "%s@%d", name, node);
}

/* One inbound tensor, Keras 2 ([name, node, tensor, kwargs]) or Keras 3
 * ({"class_name": "__keras_tensor__", "config": {"keras_history": [...]}}):
 * its value, NULL with *pending set when that call is not written yet. */
static const char *inbound_tensor(kx *k, const cJSON *x, int *rank, bool *pending)
{
    const cJSON *hist = cJSON_IsArray(x) ? x : get(get(x, "config"), "keras_history");
    const cJSON *name = cJSON_GetArrayItem(hist, 0), *node = cJSON_GetArrayItem(hist, 1),
                *tensor = cJSON_GetArrayItem(hist, 2);
    if (!cJSON_IsString(name) || !cJSON_IsNumber(node) || !cJSON_IsNumber(tensor) || node->valuedouble < 0 ||
        node->valuedouble > 1e6) {
        problem(k, "an inbound tensor KDSL cannot read");
        return NULL;
    }
    if (tensor->valuedouble < 0 || tensor->valuedouble > 8) {
        problem(k, "reads output %.0f of layer '%s', which it does not have", tensor->valuedouble, name->valuestring);
        return NULL;
    }
    /* A layer called once: whatever its node index says. A model used as a layer
     * may have a node of its own before the call (TensorFlow.js counts it), and
     * Keras 2 renumbers the nodes it keeps: the index is the call's only for
     * shared layers. */
    const int *calls = kd_strmap_get(&k->calls, name->valuestring);
    const char *key = call_key(k, name->valuestring, calls && *calls == 1 ? 0 : (int)node->valuedouble);
    if (tensor->valuedouble != 0) key = kd_format(k->a, "%s#%.0f", key, tensor->valuedouble);   /* several outputs */
    const char *v = kd_strmap_get(&k->values, key);
    const int *r = kd_strmap_get(&k->ranks, key);
    if (!v) *pending = true;
    *rank = r ? *r : 0;
    return v;
}

/* The inbound tensors of one call node, Keras 2's list or Keras 3's {"args": ...}; NULL after a problem. */
static const cJSON *node_tensors(kx *k, const cJSON *node)
{
    const cJSON *list = node;
    if (cJSON_IsObject(node)) {   /* Keras 3: {"args": [x] or [[a, b]], "kwargs": {...}} */
        const cJSON *args = get(node, "args"), *kw = get(node, "kwargs");
        for (const cJSON *e = cJSON_IsObject(kw) ? kw->child : NULL; e; e = e->next)
            if (!cJSON_IsNull(e) && strcmp(e->string, "training") && strcmp(e->string, "mask")) {
                problem(k, "called with keyword argument '%s', which kdsl does not take", e->string);
                return NULL;
            }
        const cJSON *a0 = cJSON_GetArrayItem(args, 0);
        list = cJSON_IsArray(a0) ? a0 : args;
        if (!cJSON_IsArray(a0) && cJSON_GetArraySize(args) != 1) {
            problem(k, "called with %d positional arguments", cJSON_GetArraySize(args));
            return NULL;
        }
    }
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0) {
        problem(k, "inbound nodes KDSL cannot read");
        return NULL;
    }
    return list;
}

/* The KDSL text of a call's inputs: one value, or [a, b] for merge layers;
 * NULL with *pending set when an input is not written yet. */
static const char *inbound(kx *k, const cJSON *list, int want, int *rank, bool *pending)
{
    int n = cJSON_GetArraySize(list);
    if (want == 1 && n != 1) {
        problem(k, "takes one tensor, called with %d", n);
        return NULL;
    }
    text t = {.a = k->a};
    if (want != 1) put(&t, "[");
    int i = 0;
    for (const cJSON *x = list->child; x; x = x->next) {
        int r = 0;
        const char *v = inbound_tensor(k, x, &r, pending);
        if (!v) return NULL;
        if (i == 0) *rank = r;
        put(&t, "%s%s", i++ ? ", " : "", v);
    }
    if (want != 1) put(&t, "]");
    return t.s;
}

/* Whether [name, node, 0] is among the endpoints (input_layers, output_layers). */
static bool listed(const cJSON *endpoints, const char *name, int node)   /* node -1: any */
{
    for (const cJSON *e = endpoints ? endpoints->child : NULL; e; e = e->next) {
        const cJSON *n = cJSON_IsArray(e) ? cJSON_GetArrayItem(e, 0) : NULL, *i = cJSON_GetArrayItem(e, 1);
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name) && (node < 0 || !cJSON_IsNumber(i) || i->valuedouble == node)) return true;
    }
    return false;
}

/* A layer of a Functional config and the calls of it still to write. */
typedef struct fn_layer {
    const cJSON *json, *cfg, *nodes;
    const char *cls, *name, *value;
    const char *model;           /* a nested model: its KDSL name */
    int want, ncalls, written;
    bool named;                  /* needs name: */
    bool bad;
} fn_layer;

/* The tensors a call of a built-in layer gives: a recurrent layer's output
 * and, with return_state, its states (h, and c for an LSTM); Bidirectional's
 * merged output, or both with merge_mode None, then both copies' states. */
static int layer_outputs(const char *cls, const cJSON *cfg)
{
    const cJSON *inner = get(get(cfg, "layer"), "config");
    const char *icls = str(get(cfg, "layer"), "class_name");
    bool bidi = !strcmp(cls, "Bidirectional") && icls && inner;
    const char *rnn = bidi ? icls : cls;
    int states = !strcmp(rnn, "LSTM") ? 2 : !strcmp(rnn, "GRU") || !strcmp(rnn, "SimpleRNN") ? 1 : 0;
    bool rs = cJSON_IsTrue(get(bidi ? inner : cfg, "return_state"));
    int outs = bidi && cJSON_IsNull(get(cfg, "merge_mode")) ? 2 : 1;
    return outs + (rs ? states * (bidi ? 2 : 1) : 0);
}

static void functional(kx *k, text *t, const cJSON *cfg, const char *model_name)
{
    const cJSON *layers = get(cfg, "layers");
    const cJSON *outs = get(cfg, "output_layers"), *ins = get(cfg, "input_layers");
    if (!cJSON_IsArray(layers) || !cJSON_IsArray(outs)) {
        problem(k, "a Functional model without layers or output_layers");
        return;
    }
    put(t, "model %s {\n", model_name);
    int n = cJSON_GetArraySize(layers);
    fn_layer *ls = kd_alloc_array(k->a, (size_t)n + 1, sizeof *ls);
    const char **classes = kd_alloc_array(k->a, (size_t)n + 1, sizeof *classes);
    const char **names = kd_alloc_array(k->a, (size_t)n + 1, sizeof *names);
    kd_strset seen = {0};
    int nl = 0, ni = 0;
    for (const cJSON *e = layers->child; e; e = e->next) {
        fn_layer *l = &ls[nl];
        l->json = e;
        l->cls = str(e, "class_name");
        l->name = str(e, "name");
        l->cfg = get(e, "config");
        l->nodes = get(e, "inbound_nodes");
        k->layer = l->name ? l->name : "?";
        k->cls = l->cls ? l->cls : "?";
        if (!l->cls || !l->name || !cJSON_IsObject(l->cfg)) {
            problem(k, "a layer without class_name, name or config");
            continue;
        }
        if (kd_strset_has(&seen, l->name)) {
            problem(k, "a second layer of this name");
            continue;
        }
        kd_strset_add(k->a, &seen, l->name);
        if (!strcmp(l->cls, "InputLayer")) {   /* inputs first, in order */
            if (!listed(ins, l->name, 0)) problem(k, "an InputLayer that is not among the model's input_layers");
            const char *v = value_name(k, l->name);
            int *r = kd_alloc(k->a, sizeof *r);
            if ((*r = input_decl(k, t, l->cfg, v))) {
                kd_strmap_put(k->a, &k->values, l->name, (void *)v);
                kd_strmap_put(k->a, &k->ranks, l->name, r);
            }
            continue;
        }
        l->ncalls = cJSON_GetArraySize(l->nodes);
        int *calls = kd_alloc(k->a, sizeof *calls);
        *calls = l->ncalls;
        kd_strmap_put(k->a, &k->calls, l->name, calls);
        if (is_model_class(l->cls)) {
            l->want = 1;
            if (!(l->model = nested_model(k, e))) l->bad = true;
        } else if (!kd_builtin_layer(l->cls, &l->want)) {
            check_class(k, l->cls);
            l->bad = true;
        } else if (!cJSON_IsArray(l->nodes) || l->ncalls == 0) {
            problem(k, "no inbound nodes");
            l->bad = true;
        } else if (l->ncalls > 1000) {
            problem(k, "called %d times", l->ncalls);
            l->bad = true;
        }
        classes[ni] = instance_base(k, l->cls, e);
        names[ni++] = l->name;
        nl++;
    }
    bool *exp = explicit_names(k, classes, names, ni);
    for (int i = 0; i < nl; i++) ls[i].named = exp[i];
    if (k->d->errors) return;
    /* the calls in an order that has each input before its use: Keras lists a
     * shared layer once, where it was made, though its later calls may read
     * layers listed after it */
    for (bool progress = true; progress;) {
        progress = false;
        for (int i = 0; i < nl; i++) {
            fn_layer *l = &ls[i];
            if (l->bad || l->written == l->ncalls) continue;
            k->layer = l->name;
            k->cls = l->cls;
            const cJSON *node = cJSON_GetArrayItem(l->nodes, l->written), *list = node_tensors(k, node);
            bool pending = false;
            int in_rank = 0;
            const char *in = list ? inbound(k, list, l->want, &in_rank, &pending) : NULL;
            if (!in) {
                l->bad = !pending;
                continue;
            }
            bool shared = l->ncalls > 1;
            if (l->model && !shared) {
                const char *v = value_name(k, l->name);
                put(t, "    %s%s = %s(%s%s)\n", listed(outs, l->name, -1) ? "output " : "", v, l->model, in,
                    is_trainable(l->cfg) ? "" : ", trainable: false");
                kd_strmap_put(k->a, &k->values, l->name, (void *)v);
                l->written++;
                progress = true;
                continue;
            }
            if (shared && l->written == 0) {   /* the instance, then each call of it */
                l->value = value_name(k, l->name);
                if (l->model)   /* a nested model called twice: one model, its weights shared as Keras shares them */
                    put(t, "    shared %s = %s(%s)\n", l->value, l->model, is_trainable(l->cfg) ? "" : "trainable: false");
                else
                    put(t, "    shared %s = %s(%s)\n", l->value, l->cls,
                        arguments(k, l->cls, l->cfg, NULL, l->named ? l->name : NULL, is_trainable(l->cfg), in_rank));
            }
            const char *v = value_name(k, shared ? kd_format(k->a, "%s_call%d", l->name, l->written) : l->name);
            bool output = listed(outs, l->name, l->ncalls == 1 ? -1 : l->written);
            int nout = layer_outputs(l->cls, l->cfg);
            if (nout > 1 && (shared || output)) {
                problem(k, "a layer of %d outputs %s is not imported yet", nout, shared ? "called more than once" : "as a model output");
                l->bad = true;
                continue;
            }
            const char *key = call_key(k, l->name, l->written);
            const char *more = "";   /* `y, y_1, y_2 = LSTM(...)`: each output a name, as return_state gives them */
            for (int o = 1; o < nout; o++) {
                const char *vo = value_name(k, kd_format(k->a, "%s_%d", l->name, o));
                more = kd_format(k->a, "%s, %s", more, vo);
                int *ro = kd_alloc(k->a, sizeof *ro);   /* a state [N, units], or Bidirectional's second output */
                *ro = o == 1 && !strcmp(l->cls, "Bidirectional") && cJSON_IsNull(get(l->cfg, "merge_mode"))
                          ? out_rank(l->cls, l->cfg, in_rank) : 2;
                kd_strmap_put(k->a, &k->ranks, kd_format(k->a, "%s#%d", key, o), ro);
                kd_strmap_put(k->a, &k->values, kd_format(k->a, "%s#%d", key, o), (void *)vo);
            }
            if (shared) put(t, "    %s%s = %s(%s)\n", output ? "output " : "", v, l->value, in);
            else
                put(t, "    %s%s%s = %s(%s)\n", output ? "output " : "", v, more, l->cls,
                    arguments(k, l->cls, l->cfg, in, l->named ? l->name : NULL, is_trainable(l->cfg), in_rank));
            int *r = kd_alloc(k->a, sizeof *r);
            *r = l->model ? 0 : out_rank(l->cls, l->cfg, in_rank);
            kd_strmap_put(k->a, &k->ranks, key, r);
            kd_strmap_put(k->a, &k->values, key, (void *)v);
            l->written++;
            progress = true;
        }
    }
    for (int i = 0; i < nl; i++)
        if (!ls[i].bad && ls[i].written < ls[i].ncalls) {
            k->layer = ls[i].name;
            k->cls = ls[i].cls;
            problem(k, "reads a layer that does not exist or depends on this one (a cycle)");
        }
    k->layer = NULL;
    for (const cJSON *e = outs->child; e; e = e->next) {
        const cJSON *n0 = cJSON_GetArrayItem(e, 0), *n1 = cJSON_GetArrayItem(e, 1), *n2 = cJSON_GetArrayItem(e, 2);
        const int *calls = cJSON_IsString(n0) ? kd_strmap_get(&k->calls, n0->valuestring) : NULL;
        int node = cJSON_IsNumber(n1) && !(calls && *calls == 1) ? (int)n1->valuedouble : 0;
        if (!cJSON_IsString(n0) || !kd_strset_has(&seen, n0->valuestring))
            problem(k, "an output layer that is not among the layers");
        else if (cJSON_IsNumber(n2) && n2->valuedouble != 0)
            problem(k, "output %s is not the first output of its layer", n0->valuestring);
        else if (kd_strmap_get(&k->ranks, n0->valuestring) && !kd_strmap_get(&k->values, call_key(k, n0->valuestring, node)))
            problem(k, "output %s names a call that does not exist", n0->valuestring);
        else {
            for (const cJSON *l = layers->child; l; l = l->next)
                if (str(l, "name") && !strcmp(str(l, "name"), n0->valuestring) && str(l, "class_name") &&
                    !strcmp(str(l, "class_name"), "InputLayer"))
                    problem(k, "output %s is an input: kdsl's outputs are computed", n0->valuestring);
        }
    }
    put(t, "}\n");
}

/* A model used as a layer: written as a model of its own (before the one
 * that uses it, with values of its own), named as its Keras layer is, so
 * that its instance and variables get Keras' names. Its name, or NULL. */
static const char *nested_model(kx *k, const cJSON *layer)
{
    const char *cls = str(layer, "class_name");
    const cJSON *cfg = get(layer, "config");
    const char *name = str(cfg, "name");
    if (!is_ident(name)) {
        problem(k, "a nested model named \"%s\", which is no KDSL name", name ? name : "");
        return NULL;
    }
    if (kd_strset_has(&k->model_names, name)) {
        problem(k, "a second nested model named %s", name);
        return NULL;
    }
    if (k->depth >= 16) {
        problem(k, "models nested more than 16 deep");
        return NULL;
    }
    kd_strset_add(k->a, &k->model_names, name);
    kx inner = {.a = k->a, .d = k->d, .source = k->source, .models = k->models, .model_names = k->model_names,
                .depth = k->depth + 1};
    text t = {.a = k->a};
    int errors = k->d->errors;
    if (!strcmp(cls, "Sequential")) sequential(&inner, &t, cfg, name);
    else functional(&inner, &t, cfg, name);
    k->model_names = inner.model_names;
    if (k->d->errors > errors) return NULL;
    put(k->models, "%s\n", t.s);
    return name;
}

/* A string from the file (or its name) for the program's first line, a
 * comment: a line break in it would end the comment and let the file write
 * code into the program. Control characters become '?', and it is cut at
 * 200 bytes. */
static const char *one_line(kx *k, const char *s)
{
    if (!s) return "?";
    char *out = kd_format(k->a, "%.200s", s);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    return out;
}

/* Keras 3 writes a model's one input or output flat, [name, 0, 0], where
 * Keras 2 writes a list of them: every model's endpoints become lists. */
static void endpoint_lists(cJSON *j)
{
    for (cJSON *e = j ? j->child : NULL; e; e = e->next) {
        if (cJSON_IsObject(j) && (!strcmp(e->string, "input_layers") || !strcmp(e->string, "output_layers")) &&
            cJSON_IsArray(e) && cJSON_IsString(e->child)) {
            cJSON *list = cJSON_CreateArray(), *one = cJSON_Duplicate(e, true);
            if (!list || !one || !cJSON_AddItemToArray(list, one)) {
                cJSON_Delete(list);
                cJSON_Delete(one);
                continue;
            }
            if (!cJSON_ReplaceItemInObjectCaseSensitive(j, e->string, list)) {
                cJSON_Delete(list);
                continue;
            }
            e = list;
            continue;
        }
        if (cJSON_IsObject(e) || cJSON_IsArray(e)) endpoint_lists(e);
    }
}

char *kx_config_to_kdsl(kd_arena *a, const char *json, const char *source, const char *keras_version, kd_diags *d)
{
    text models = {.a = a};
    kx k = {.a = a, .d = d, .source = source, .models = &models};
    int errors = d->errors;
    cJSON *root = cJSON_Parse(json);
    if (!root) {
        problem(&k, "the model config is not JSON");
        return NULL;
    }
    endpoint_lists(root);
    const char *cls = str(root, "class_name");
    const cJSON *cfg = get(root, "config");
    text t = {.a = a};
    const char *kname = str(cfg, "name");
    const char *model_name = is_ident(kname) ? kname : NULL;
    if (!model_name) {   /* "model" is a keyword: the file's name instead */
        const char *base = strrchr(source, '/') ? strrchr(source, '/') + 1 : source;
        char *stem = kd_format(a, "%s", base), *dot = strrchr(stem, '.');
        if (dot && dot != stem) *dot = 0;
        model_name = value_name(&k, stem);
    }
    kd_strset_add(a, &k.used, model_name);
    kd_strset_add(a, &k.model_names, model_name);
    text main = {.a = a};
    put(&t, "# Imported by kdslc from %s (Keras class %s, name \"%s\"%s%s).\n", one_line(&k, source), one_line(&k, cls),
        one_line(&k, kname), !keras_version ? "" : isdigit((unsigned char)keras_version[0]) ? ", saved by Keras " : ", saved by ",
        keras_version ? one_line(&k, keras_version) : "");
    if (cls && !strcmp(cls, "Sequential")) sequential(&k, &main, cfg, model_name);
    else if (is_model_class(cls)) functional(&k, &main, cfg, model_name);
    else problem(&k, "a model of class %s: kdsl imports Sequential and Functional models", cls ? cls : "?");
    cJSON_Delete(root);
    if (d->errors > errors) return NULL;
    if (models.len) put(&t, "\n%s", models.s);
    put(&t, "%s%s", models.len ? "" : "", main.s);
    return t.s;
}
