/* keras_export.c — a checked KDSL model as a Keras model config
 * (keras_export.h): the reverse of keras_config.c.
 *
 * Always a Functional config in Keras 2's dialect (what legacy .h5 files
 * hold, and what Keras 3 and TensorFlow.js also read): an InputLayer per
 * input, then each layer in the order the model made it, its arguments
 * from the layer table converted to Keras' spellings — an int kernel size
 * as a pair, an initializer name as its class, a regularizer call as an
 * L1/L2/L1L2 object — and its inbound nodes from the summary's "Connected
 * to". A model that is not only built-in layers (a custom layer, a nested
 * model, a tensor expression between layers, a shared layer) has no such
 * config: each is an error. */
#include "keras_export.h"

#include "builtin_layers.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ex {
    kd_arena *a;
    kd_diags *d;
    const char *source;
    const kd_layer *layer;
    const kd_model *m;
    bool keras3;   /* Keras 3's dialect (config.json of a .keras file) */
    bool failed;
} ex;

/* Keras 3's serialize_keras_object adds where a class comes from. */
static void keras3_origin(ex *e, cJSON *o, const char *module, const char *registered)
{
    if (!e->keras3) return;
    cJSON_AddStringToObject(o, "module", module);
    if (registered) cJSON_AddStringToObject(o, "registered_name", registered);
    else cJSON_AddNullToObject(o, "registered_name");
}

static void problem(ex *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(ex *e, const char *fmt, ...)
{
    char msg[500];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (e->layer) kd_error(e->d, e->layer->loc, "%s (%s): %s", e->layer->name, e->layer->type, msg);
    else kd_error(e->d, (kd_loc){0}, "%s: %s", e->source, msg);
    e->failed = true;
}

/* glorot_uniform -> GlorotUniform */
static const char *camel(ex *e, const char *snake)
{
    char *out = kd_format(e->a, "%s", snake), *o = out;
    bool up = true;
    for (const char *p = snake; *p; p++) {
        if (*p == '_') {
            up = true;
            continue;
        }
        *o++ = up ? (char)toupper((unsigned char)*p) : *p;
        up = false;
    }
    *o = 0;
    return out;
}

static cJSON *json_value(ex *e, const kd_value *v, const char *arg);

static bool is_initializer(const char *arg) { size_t n = strlen(arg); return n > 12 && !strcmp(arg + n - 12, "_initializer"); }
static bool is_regularizer(const char *arg) { size_t n = strlen(arg); return n > 12 && !strcmp(arg + n - 12, "_regularizer"); }

/* An initializer or a regularizer as Keras' {"class_name", "config"} object. */
static cJSON *setting(ex *e, const kd_value *v, const char *arg)
{
    cJSON *o = cJSON_CreateObject(), *cfg = cJSON_CreateObject();
    if (is_regularizer(arg)) {
        const char *f = v->s;
        bool l1l2 = !strcmp(f, "l1_l2") || !strcmp(f, "L1L2"), l1 = !strcmp(f, "l1") || !strcmp(f, "L1");
        cJSON_AddStringToObject(o, "class_name", l1l2 ? "L1L2" : l1 ? "L1" : "L2");
        double a = l1l2 ? 0 : 0.01, b = l1l2 ? 0 : 0.01;   /* Keras 3's defaults */
        for (int i = 0; v->kind == KD_V_CALL && i < v->n; i++) {
            const kd_value *x = v->items[i];
            double d = x->kind == KD_V_INT ? (double)x->i : x->f;
            const char *key = v->keys[i] ? v->keys[i] : i == 0 ? (l1l2 || l1 ? "l1" : "l2") : "l2";
            if (!strcmp(key, "l1")) a = d;
            else b = d;
        }
        if (l1l2 || l1) cJSON_AddNumberToObject(cfg, "l1", a);
        if (l1l2 || !l1) cJSON_AddNumberToObject(cfg, "l2", b);
    } else if (v->kind == KD_V_INT || v->kind == KD_V_FLOAT) {   /* a number: a constant initializer */
        cJSON_AddStringToObject(o, "class_name", "Constant");
        cJSON_AddNumberToObject(cfg, "value", v->kind == KD_V_INT ? (double)v->i : v->f);
    } else if (v->kind == KD_V_NAME && (!strcmp(v->s, "uniform") || !strcmp(v->s, "normal"))) {
        /* Keras' string aliases, with their own arguments: RandomUniform(-0.05, 0.05), RandomNormal(0, 0.05) */
        bool u = !strcmp(v->s, "uniform");
        cJSON_AddStringToObject(o, "class_name", u ? "RandomUniform" : "RandomNormal");
        cJSON_AddNumberToObject(cfg, u ? "minval" : "mean", u ? -0.05 : 0);
        cJSON_AddNumberToObject(cfg, u ? "maxval" : "stddev", 0.05);
        cJSON_AddNullToObject(cfg, "seed");
    } else {
        const char *cls = v->kind == KD_V_CALL && strchr(v->s, '_') == NULL && isupper((unsigned char)v->s[0]) ? v->s : camel(e, v->s);
        cJSON_AddStringToObject(o, "class_name", cls);
        for (int i = 0; v->kind == KD_V_CALL && i < v->n; i++) {
            if (!v->keys[i]) {
                problem(e, "argument '%s': %s's arguments are exported by name only", arg, v->s);
                continue;
            }
            cJSON *x = json_value(e, v->items[i], arg);
            if (x) cJSON_AddItemToObject(cfg, v->keys[i], x);
        }
        if (strcmp(cls, "Zeros") && strcmp(cls, "Ones") && strcmp(cls, "Constant")) cJSON_AddNullToObject(cfg, "seed");
    }
    cJSON_AddItemToObject(o, "config", cfg);
    keras3_origin(e, o, is_regularizer(arg) ? "keras.regularizers" : "keras.initializers", NULL);
    return o;
}

static cJSON *json_value(ex *e, const kd_value *v, const char *arg)
{
    switch (v->kind) {
    case KD_V_NONE: return cJSON_CreateNull();
    case KD_V_INT: return cJSON_CreateNumber((double)v->i);
    case KD_V_FLOAT: return cJSON_CreateNumber(v->f);
    case KD_V_BOOL: return cJSON_CreateBool(v->i != 0);
    case KD_V_STRING: return cJSON_CreateString(v->s);
    case KD_V_NAME:
        if (is_initializer(arg) || is_regularizer(arg)) return setting(e, v, arg);
        return cJSON_CreateString(v->s);
    case KD_V_CALL: return setting(e, v, arg);
    case KD_V_LIST: {
        cJSON *l = cJSON_CreateArray();
        for (int i = 0; i < v->n; i++) {
            cJSON *x = json_value(e, v->items[i], arg);
            if (x) cJSON_AddItemToArray(l, x);
        }
        return l;
    }
    default: problem(e, "argument '%s' has no Keras equivalent", arg); return NULL;
    }
}

/* Arguments Keras takes as a tuple that KDSL also takes as one int. */
static int tuple_size(const char *type, const char *arg)
{
    static const char *const tuples[] = {"kernel_size", "strides", "pool_size", "dilation_rate", "size"};
    bool tuple = false;
    for (size_t i = 0; i < sizeof tuples / sizeof *tuples; i++) tuple = tuple || !strcmp(arg, tuples[i]);
    if (!tuple) return 0;
    size_t n = strlen(type);
    return n > 2 && !strcmp(type + n - 2, "1D") ? 1 : 2;
}

static cJSON *layer_config(ex *e, const kd_layer *l);

/* A default as the layer table writes it ("true", "0", "tanh", "none"), as a value. */
static kd_value *default_value(ex *e, const char *text)
{
    kd_value *v = kd_alloc(e->a, sizeof *v);
    char *end;
    double d = strtod(text, &end);
    if (!strcmp(text, "true") || !strcmp(text, "false")) v->kind = KD_V_BOOL, v->i = !strcmp(text, "true");
    else if (!strcmp(text, "none")) v->kind = KD_V_NONE;
    else if (*text && !*end) v->kind = strpbrk(text, ".e") ? KD_V_FLOAT : KD_V_INT, v->f = d, v->i = (int64_t)d;
    else v->kind = KD_V_NAME, v->s = text;
    return v;
}

/* A wrapper's layer, Bidirectional(LSTM(8)): its call as Keras' nested
 * {"class_name": "LSTM", "config": {...}}, every argument by name, the
 * defaults filled in from the layer table. */
static cJSON *wrapped_layer(ex *e, const kd_value *call)
{
    const kd_layer_param *params = call->kind == KD_V_CALL ? kd_builtin_layer(call->s, NULL) : NULL;
    if (!params) {
        problem(e, "argument 'layer' is not a built-in layer");
        return NULL;
    }
    int n = 0;
    while (params[n].name) n++;
    const char **names = kd_alloc_array(e->a, (size_t)n + 1, sizeof *names);
    for (int i = 0; i < n; i++) names[i] = params[i].name;
    kd_layer inner = {.name = kd_snake_case(e->a, call->s), .type = call->s, .builtin = true, .trainable = true,
                      .nargs = n, .arg_names = names, .args = kd_alloc_array(e->a, (size_t)n + 1, sizeof(kd_value *))};
    for (int a = 0, pos = 0; a < call->n; a++) {
        int at = -1;
        if (!call->keys[a]) at = pos++;
        for (int i = 0; call->keys[a] && i < n; i++)
            if (!strcmp(params[i].name, call->keys[a])) at = i;
        if (at >= 0 && at < n) inner.args[at] = call->items[a];
        else if (!call->keys[a] || (strcmp(call->keys[a], "name") && strcmp(call->keys[a], "trainable")))
            problem(e, "argument 'layer': %s has no argument %s", call->s, call->keys[a] ? call->keys[a] : "there");
    }
    for (int i = 0; i < n; i++)
        if (!inner.args[i]) inner.args[i] = default_value(e, params[i].def ? params[i].def : "none");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "class_name", call->s);
    cJSON_AddItemToObject(o, "config", layer_config(e, &inner));
    return o;
}

static cJSON *layer_config(ex *e, const kd_layer *l)
{
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(cfg, "name", l->name);
    cJSON_AddBoolToObject(cfg, "trainable", l->trainable);
    cJSON_AddStringToObject(cfg, "dtype", "float32");
    for (int i = 0; i < l->nargs; i++) {
        const char *arg = l->arg_names[i];
        const kd_value *v = l->args[i];
        cJSON *x;
        int tuple = tuple_size(l->type, arg);
        if (tuple && v->kind == KD_V_INT) {
            x = cJSON_CreateArray();
            for (int k = 0; k < tuple; k++) cJSON_AddItemToArray(x, cJSON_CreateNumber((double)v->i));
        } else if (!strcmp(arg, "layer") && i == 0)
            x = wrapped_layer(e, v);
        else
            x = json_value(e, v, arg);
        if (x) cJSON_AddItemToObject(cfg, arg, x);
    }
    return cfg;
}

/* A batch shape [null, ...] as JSON. */
static cJSON *batch_shape(const ir_shape *s)
{
    cJSON *shape = cJSON_CreateArray();
    cJSON_AddItemToArray(shape, cJSON_CreateNull());
    for (int k = s->batched ? 1 : 0; k < s->rank; k++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)s->dims[k]));
    return shape;
}

/* The output shape and dtype of the input or layer called `name`. */
static const ir_shape *shape_of(const kd_model *m, const char *name, bool *i32)
{
    *i32 = false;
    for (int i = 0; i < m->ninputs; i++)
        if (!strcmp(m->input_names[i], name)) {
            *i32 = m->input_i32[i];
            return &m->input_shapes[i];
        }
    for (int i = 0; i < m->layers.len; i++)
        if (!strcmp(((const kd_layer *)m->layers.items[i])->name, name)) return &((const kd_layer *)m->layers.items[i])->out_shape;
    return NULL;
}

/* "conv2d[0][0]" -> ["conv2d", 0, 0, {}], or in Keras 3's dialect
 * {"class_name": "__keras_tensor__", "config": {"shape", "dtype", "keras_history": ["conv2d", 0, 0]}} */
static cJSON *inbound_tensor(ex *e, const char *tag)
{
    const char *b = strchr(tag, '[');
    long node = 0, tensor = 0;
    if (!b || sscanf(b, "[%ld][%ld]", &node, &tensor) != 2) {
        problem(e, "an input Keras cannot name (%s)", tag);
        return NULL;
    }
    const char *name = kd_format(e->a, "%.*s", (int)(b - tag), tag);
    cJSON *t = cJSON_CreateArray();
    cJSON_AddItemToArray(t, cJSON_CreateString(name));
    cJSON_AddItemToArray(t, cJSON_CreateNumber((double)node));
    cJSON_AddItemToArray(t, cJSON_CreateNumber((double)tensor));
    if (!e->keras3) {
        cJSON_AddItemToArray(t, cJSON_CreateObject());
        return t;
    }
    bool i32;
    const ir_shape *s = shape_of(e->m, name, &i32);
    cJSON *kt = cJSON_CreateObject(), *cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(kt, "class_name", "__keras_tensor__");
    if (s) cJSON_AddItemToObject(cfg, "shape", batch_shape(s));
    cJSON_AddStringToObject(cfg, "dtype", i32 ? "int32" : "float32");
    cJSON_AddItemToObject(cfg, "keras_history", t);
    cJSON_AddItemToObject(kt, "config", cfg);
    return kt;
}

static cJSON *endpoint(const char *name)
{
    cJSON *t = cJSON_CreateArray();
    cJSON_AddItemToArray(t, cJSON_CreateString(name));
    cJSON_AddItemToArray(t, cJSON_CreateNumber(0));
    cJSON_AddItemToArray(t, cJSON_CreateNumber(0));
    return t;
}

/* input_layers / output_layers: Keras 3 writes a model's one endpoint flat. */
static void add_endpoints(ex *e, cJSON *cfg, const char *key, cJSON *list)
{
    if (e->keras3 && cJSON_GetArraySize(list) == 1) {
        cJSON *one = cJSON_DetachItemFromArray(list, 0);
        cJSON_Delete(list);
        list = one;
    }
    cJSON_AddItemToObject(cfg, key, list);
}

char *kx_keras_config(kd_arena *a, const kd_model *m, const char *source, bool keras3, kd_diags *d)
{
    ex e = {.a = a, .d = d, .source = source, .m = m, .keras3 = keras3};
    /* only layers: every computing node of the inference graph belongs to one */
    for (int i = 0; i < m->infer->nodes.len; i++) {
        const ir_node *n = m->infer->nodes.items[i];
        if (!n->layer && n->op != IR_INPUT && n->op != IR_VAR && n->op != IR_CONST) {
            kd_error(d, n->loc, "this expression is not a layer: a Keras model is made of layers only (kdslc export)");
            return NULL;
        }
    }
    cJSON *root = cJSON_CreateObject(), *cfg = cJSON_CreateObject(), *layers = cJSON_CreateArray();
    if (keras3) cJSON_AddStringToObject(root, "module", "keras");
    cJSON_AddStringToObject(root, "class_name", "Functional");
    cJSON_AddItemToObject(root, "config", cfg);
    if (keras3) cJSON_AddStringToObject(root, "registered_name", "Functional");
    cJSON_AddStringToObject(cfg, "name", m->name);
    if (keras3) cJSON_AddBoolToObject(cfg, "trainable", true);
    cJSON_AddItemToObject(cfg, "layers", layers);
    cJSON *ins = cJSON_CreateArray(), *outs = cJSON_CreateArray();
    for (int i = 0; i < m->ninputs; i++) {
        cJSON *l = cJSON_CreateObject(), *c = cJSON_CreateObject();
        if (keras3) cJSON_AddStringToObject(l, "module", "keras.layers");
        cJSON_AddStringToObject(l, "class_name", "InputLayer");
        cJSON_AddItemToObject(c, keras3 ? "batch_shape" : "batch_input_shape", batch_shape(&m->input_shapes[i]));
        cJSON_AddStringToObject(c, "dtype", m->input_i32[i] ? "int32" : "float32");
        cJSON_AddBoolToObject(c, "sparse", false);
        if (!keras3) cJSON_AddBoolToObject(c, "ragged", false);
        cJSON_AddStringToObject(c, "name", m->input_names[i]);
        cJSON_AddItemToObject(l, "config", c);
        if (keras3) cJSON_AddNullToObject(l, "registered_name");
        cJSON_AddStringToObject(l, "name", m->input_names[i]);
        cJSON_AddItemToObject(l, "inbound_nodes", cJSON_CreateArray());
        cJSON_AddItemToArray(layers, l);
        cJSON_AddItemToArray(ins, endpoint(m->input_names[i]));
    }
    for (int i = 0; i < m->layers.len; i++) {
        const kd_layer *row = m->layers.items[i];
        e.layer = row;
        if (!row->builtin) {
            problem(&e, "a custom layer or a nested model has no Keras config kdslc can write");
            continue;
        }
        if (row->ncalls > 1) {
            problem(&e, "called %d times: shared layers are not exported yet", row->ncalls);
            continue;
        }
        cJSON *l = cJSON_CreateObject(), *node = cJSON_CreateArray(), *nodes = cJSON_CreateArray();
        if (keras3) cJSON_AddStringToObject(l, "module", "keras.layers");
        cJSON_AddStringToObject(l, "class_name", row->type);
        cJSON_AddItemToObject(l, "config", layer_config(&e, row));
        if (keras3) cJSON_AddNullToObject(l, "registered_name");
        cJSON_AddStringToObject(l, "name", row->name);
        for (int k = 0; k < row->inbound.len; k++) {
            cJSON *t = inbound_tensor(&e, row->inbound.items[k]);
            if (t) cJSON_AddItemToArray(node, t);
        }
        if (keras3) {   /* {"args": [x]} or, for a layer of a list of inputs, {"args": [[a, b]]} */
            int inputs = 1;
            kd_builtin_layer(row->type, &inputs);
            cJSON *call = cJSON_CreateObject(), *args = cJSON_CreateArray();
            if (inputs == 1 && cJSON_GetArraySize(node) == 1) {
                cJSON_AddItemToArray(args, cJSON_DetachItemFromArray(node, 0));
                cJSON_Delete(node);
            } else
                cJSON_AddItemToArray(args, node);
            cJSON_AddItemToObject(call, "args", args);
            cJSON_AddItemToObject(call, "kwargs", cJSON_CreateObject());
            node = call;
        }
        cJSON_AddItemToArray(nodes, node);
        cJSON_AddItemToObject(l, "inbound_nodes", nodes);
        cJSON_AddItemToArray(layers, l);
    }
    e.layer = NULL;
    for (int i = 0; i < m->infer->outputs.len; i++) {
        const ir_node *o = m->infer->outputs.items[i];
        if (!o->layer) problem(&e, "output %s is not a layer's output", m->output_names[i]);
        else cJSON_AddItemToArray(outs, endpoint(o->layer));
    }
    add_endpoints(&e, cfg, "input_layers", ins);
    add_endpoints(&e, cfg, "output_layers", outs);
    char *json = NULL;
    if (!e.failed) {
        char *s = cJSON_PrintUnformatted(root);
        json = s ? kd_format(a, "%s", s) : NULL;
        free(s);
    }
    cJSON_Delete(root);
    return json;
}
