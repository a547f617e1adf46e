/* keras3_layout.c — Keras 3's places for a model's variables (keras3_layout.h).
 *
 * Keras 3's saving_lib (`_save_state`) walks the model's saveable objects
 * and gives each a group of model.weights.h5 holding a `vars` group of its
 * own variables, datasets "0", "1", ... in the order the layer created
 * them (Layer.save_own_variables: trainable ones first, as created, then
 * the others — BatchNormalization's gamma, beta, moving_mean,
 * moving_variance; a layer made with trainable=False keeps that order, its
 * variables are tracked as made and frozen after). A model's layers are the container `layers`, each
 * member named by its class in snake case with a counter per container —
 * layers/dense, layers/dense_1, layers/conv2d — not by the layer's name;
 * Sequential leaves its InputLayer out of model.layers, Functional keeps
 * it (layers/input_layer, no variables). A nested model's layers are under
 * its own group (layers/sequential/layers/dense), and a recurrent layer's
 * weights are its cell's (layers/lstm/cell/vars/0..2: kernel,
 * recurrent_kernel, bias). A layer called twice (shared) is one member.
 *
 * kdsl creates each layer's variables in Keras' order (keras_export.c
 * writes legacy .h5 files in that order too), named LAYER/VAR — prefixed
 * by the nested model's name, a recurrent cell's inside its layer's
 * (lstm/lstm_cell/kernel) — so the variables of the layer a config entry
 * names, in the model's order, are its vars/0, vars/1, ... */
#include "keras3_layout.h"

#include "builtin_layers.h"

#include <cjson/cJSON.h>
#include <string.h>

typedef struct walk {
    kd_arena *a;
    const kd_model *m;
    const char *source;
    kd_diags *d;
    kd_vec groups;   /* const char* */
    int depth;
} walk;

static const cJSON *get(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = get(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool is_model(const char *cls)
{
    return cls && (!strcmp(cls, "Sequential") || !strcmp(cls, "Functional") || !strcmp(cls, "Model"));
}

static bool is_recurrent(const char *cls)
{
    return cls && (!strcmp(cls, "LSTM") || !strcmp(cls, "GRU") || !strcmp(cls, "SimpleRNN"));
}

/* How many '/' s holds. */
static int slashes(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '/';
    return n;
}

/* The layers of a model config, as model.layers lists them; the variables
 * of kdsl's names under `prefix` ("encoder/" inside a nested model). */
static void walk_model(walk *w, const cJSON *model, const char *group, const char *prefix, const char **paths)
{
    const char *cls = str(model, "class_name");
    const cJSON *cfg = get(model, "config");
    const cJSON *layers = cJSON_IsArray(cfg) ? cfg : get(cfg, "layers");
    bool sequential = cls && !strcmp(cls, "Sequential");
    if (++w->depth > 16) return;   /* the importer refuses deeper nesting */
    kd_strmap used = {0};          /* snake-case class -> int*: its last counter */
    for (const cJSON *l = cJSON_IsArray(layers) ? layers->child : NULL; l; l = l->next) {
        const char *lcls = str(l, "class_name");
        if (!lcls || (sequential && !strcmp(lcls, "InputLayer"))) continue;
        /* a functional model rebuilt from its config is of class Functional, whatever the config called it */
        const char *base = kd_snake_case(w->a, is_model(lcls) && strcmp(lcls, "Sequential") ? "Functional" : lcls);
        int *count = kd_strmap_get(&used, base);
        const char *member = base;
        if (!count) {
            count = kd_alloc(w->a, sizeof *count);
            kd_strmap_put(w->a, &used, base, count);
        } else
            member = kd_format(w->a, "%s_%d", base, ++*count);
        const char *lgroup = kd_format(w->a, "%s%slayers/%s", group, group[0] ? "/" : "", member);
        kd_vec_push(w->a, &w->groups, (void *)lgroup);
        const char *name = str(get(l, "config"), "name");
        if (!name) name = str(l, "name");
        if (!name) continue;
        if (is_model(lcls)) {
            walk_model(w, l, lgroup, kd_format(w->a, "%s%s/", prefix, name), paths);
            continue;
        }
        const char *vars = lgroup;
        if (is_recurrent(lcls)) {
            vars = kd_format(w->a, "%s/cell", lgroup);
            kd_vec_push(w->a, &w->groups, (void *)vars);
        }
        const char *own = kd_format(w->a, "%s%s/", prefix, name);
        size_t len = strlen(own);
        int depth = is_recurrent(lcls) ? 1 : 0, k = 0;
        for (int i = 0; i < w->m->vars.len; i++) {
            const kd_var *v = w->m->vars.items[i];
            if (strncmp(v->name, own, len) || slashes(v->name + len) != depth || paths[i]) continue;
            paths[i] = kd_format(w->a, "%s/vars/%d", vars, k++);
        }
    }
    w->depth--;
}

int kx_keras3_layout_of(kd_arena *a, const char *config_json, const kd_model *m, const char *source,
                        kx_keras3_layout *out, kd_diags *d)
{
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_Parse(config_json);
    if (!root) {
        kd_error(d, (kd_loc){0}, "%s: the model config is not JSON", source);
        return 1;
    }
    walk w = {.a = a, .m = m, .source = source, .d = d};
    const char **paths = kd_alloc_array(a, (size_t)m->vars.len + 1, sizeof *paths);
    walk_model(&w, root, "", "", paths);
    cJSON_Delete(root);
    int errors = d->errors;
    for (int i = 0; i < m->vars.len; i++)
        if (!paths[i])
            kd_error(d, (kd_loc){0}, "%s: variable %s belongs to no layer of the model's Keras config", source,
                     ((const kd_var *)m->vars.items[i])->name);
    out->var_paths = paths;
    out->groups = (const char **)w.groups.items;
    out->ngroups = w.groups.len;
    return d->errors > errors ? 1 : 0;
}
