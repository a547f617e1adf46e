/* run.c — `kdslc train / evaluate / predict` (run.h): the model through the
 * pipeline and the JIT, the data through runtime/host/dataset.h, then the
 * host driver. Everything here is glue; the loop is in runtime/host/train.c. */
#include "run.h"
#include "quant_cli.h"

#include "codegen.h"
#include "driver.h"
#include "interp.h"
#include "jit.h"
#include "host/checkpoint.h"
#include "host/dist.h"
#include "host/paths.h"
#include "host/train.h"
#include "host/train_dist.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void kd_run_options_init(kd_run_options *o)
{
    memset(o, 0, sizeof *o);
    o->epochs = o->batch_size = o->threads = -1;
    o->early_stopping = o->reduce_lr = -1;
    o->learning_rate = o->validation_split = NAN;
    o->seed = -1;
    o->tty = -1;
}

static int fail(const char *fmt, const char *arg)
{
    fprintf(stderr, "kdslc: error: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    return 1;
}

static int fail_err(const kdh_error *err)
{
    fprintf(stderr, "kdslc: error: %s\n", err->msg);
    return 1;
}

/* ---- the files of a command, before any work (paths.h) ---------------------------------- */

enum { SAME_RUN = 1, SAME_WEIGHTS = 2 };   /* kdh_path_use.same_ok */

/* Splits a comma-separated list of files (--data X.npy,Y.npy, --input
 * a.npy,b.npy, -o y0.npy,y1.npy) into at most `max` names in buf (a copy of
 * the list, as long as it). The count of names, empty ones included. */
static int split_list(const char *list, char *buf, size_t size, const char **names, int max)
{
    snprintf(buf, size, "%s", list);
    int n = 0;
    for (char *p = buf, *next; p && n < max; p = next) {
        next = strchr(p, ',');
        if (next) *next++ = 0;
        names[n++] = p;
    }
    return n;
}

/* Appends the files of a list (a directory's IDX files are the reader's
 * business) to uses. */
static int list_uses(const char *list, const char *what, bool output, char *buf, size_t size, kdh_path_use *uses)
{
    if (!list || !strcmp(list, "fashion-mnist") || !strcmp(list, "fashion_mnist")) return 0;
    const char *names[2 * KDH_MAX_IO];
    int n = split_list(list, buf, size, names, 2 * KDH_MAX_IO), k = 0;
    for (int i = 0; i < n; i++)
        if (*names[i]) uses[k++] = (kdh_path_use){names[i], what, output, 0};
    return k;
}

/* Every output writable and none an input or another output: checked
 * before the model is compiled or a sample read, so that a mistake costs
 * nothing (a --save in a missing directory found after three epochs loses
 * them). The exit status, or 0. */
static int check_paths(const kd_run_options *o)
{
    kdh_path_use uses[8 + 6 * KDH_MAX_IO];
    char dbuf[8192], ibuf[8192], obuf[8192];
    int n = 0;
    uses[n++] = (kdh_path_use){o->file, "the model source", false, 0};
    uses[n++] = (kdh_path_use){o->weights, "--weights", false, SAME_WEIGHTS};
    uses[n++] = (kdh_path_use){o->resume, "--resume", false, SAME_RUN};
    n += list_uses(o->input, "--input", false, ibuf, sizeof ibuf, uses + n);
    n += list_uses(o->data, "--data", false, dbuf, sizeof dbuf, uses + n);
    uses[n++] = (kdh_path_use){o->save, "--save", true, SAME_WEIGHTS};
    uses[n++] = (kdh_path_use){o->checkpoint, "--checkpoint", true, SAME_RUN};
    uses[n++] = (kdh_path_use){o->history, "--history", true, 0};
    uses[n++] = (kdh_path_use){o->save_best, "--save-best", true, SAME_WEIGHTS};
    n += list_uses(o->output, "-o", true, obuf, sizeof obuf, uses + n);
    if (!strcmp(o->file, "-")) uses[0].path = NULL;
    kdh_error err;
    int rc = kdh_check_paths(uses, n, &err);
    if (rc == 1) fail_err(&err);
    if (rc == 2) fprintf(stderr, "kdslc: error: %s\n(run 'kdslc --help' for usage)\n", err.msg);
    return rc;
}

/* ---- losses and optimizers named on the command line ----------------------------------- */

/* The names: compiler/model.h's kd_loss_names and kd_optimizer_names, the train block's too. */

static int unknown_name(const char *what, const char *name, const char *const *known, int n, const char *list)
{
    const char *near = kd_nearest(name, known, n);
    fprintf(stderr, "kdslc: error: unknown %s '%s'", what, name);
    if (near) fprintf(stderr, "; did you mean '%s'?", near);
    fprintf(stderr, " (%s)\n(run 'kdslc --help' for usage)\n", list);
    return 2;
}

/* "categorical_crossentropy, ..." and "sgd, adam, ...": the string spelling of every row. */
static const char *loss_list(char *buf, size_t size)
{
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < KD_NLOSSES && at + 1 < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s%s", i ? ", " : "", kd_loss_names[i].snake);
    return buf;
}

static const char *optimizer_list(char *buf, size_t size)
{
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < KD_NOPTIMIZERS && at + 1 < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s%s", i ? ", " : "", kd_optimizer_names[i].snake);
    return buf;
}

/* The train block after --loss / --optimizer: Keras' compile() defaults for what is not given. */
static int apply_compile_flags(kd_model *m, const kd_run_options *o, bool need_optimizer)
{
    kd_train_config *c = &m->config;
    if (!c->present) {
        if (!o->loss || (need_optimizer && !o->optimizer)) {
            fprintf(stderr,
                    "kdslc: error: model '%s' has no train block; give %s%s%s (e.g. --loss categorical_crossentropy "
                    "--from-logits --optimizer adam), or add `train %s { loss: ... optimizer: ... }` to %s\n",
                    m->name, !o->loss ? "--loss" : "", !o->loss && need_optimizer && !o->optimizer ? " and " : "",
                    need_optimizer && !o->optimizer ? "--optimizer" : "", m->name, o->file);
            return 2;
        }
        *c = (kd_train_config){.present = true, .batch_size = 32, .epochs = 1, .validation_freq = 1, .shuffle = true,
                               .loss = {.delta = 1.0}};
        kd_optimizer_defaults(c, &kd_optimizer_names[OPT_ADAM - 1]);
        c->optimizer = OPT_NONE;
    }
    if (o->loss) {
        const kd_loss_name *l = kd_find_loss(o->loss);
        if (!l) {
            const char *known[3 * KD_NLOSSES];
            int n = kd_loss_spellings(known, false);
            char list[1024];
            return unknown_name("loss", o->loss, known, n, loss_list(list, sizeof list));
        }
        /* --loss replaces the train block's loss(es): one row for every output */
        if (c->loss.kind != l->kind) c->loss = (kd_loss_spec){.delta = 1.0};
        c->output_losses = NULL;
        c->loss.kind = l->kind;
        c->loss.from_logits = o->from_logits && (l->takes & KDH_LOSS_TAKES_LOGITS);
        if (!c->metric_accuracy) c->metric_accuracy = l->takes & (KDH_LOSS_ONEHOT | KDH_LOSS_TAKES_LOGITS);
    }
    if (o->optimizer) {
        const kd_optimizer_name *opt = kd_find_optimizer(o->optimizer);
        if (!opt) {
            const char *known[2 * KD_NOPTIMIZERS];
            int n = kd_optimizer_spellings(known, false);
            char list[1024];
            return unknown_name("optimizer", o->optimizer, known, n, optimizer_list(list, sizeof list));
        }
        if (c->optimizer != opt->kind) kd_optimizer_defaults(c, opt);
    }
    return 0;
}

/* --early-stopping, --reduce-lr-on-plateau, --save-best: Keras' callbacks at
 * their defaults on val_loss (loss when the run has no validation data),
 * in place of the train block's of the same kind. */
static void callback_flags(kd_train_config *c, const kd_run_options *o, bool has_val)
{
    const char *monitor = has_val ? "val_loss" : "loss";
    kdh_callbacks *cb = &c->callbacks;
    if (o->early_stopping >= 0) {
        cb->early_stopping = (kdh_early_stopping){.on = true, .patience = o->early_stopping,
                                                  .restore_best_weights = o->restore_best_weights};
        snprintf(cb->early_stopping.monitor, KDH_MONITOR_MAX, "%s", monitor);
    }
    if (o->reduce_lr >= 0) {
        cb->reduce_lr = (kdh_reduce_lr){.on = true, .factor = 0.1, .patience = o->reduce_lr, .min_delta = 1e-4};
        snprintf(cb->reduce_lr.monitor, KDH_MONITOR_MAX, "%s", monitor);
    }
    if (o->save_best) {
        cb->checkpoint = (kdh_model_checkpoint){.on = true, .filepath = o->save_best, .save_best_only = true};
        snprintf(cb->checkpoint.monitor, KDH_MONITOR_MAX, "%s", monitor);
    }
}

/* ---- the model's entry points ---------------------------------------------------------- */

/* The backend in the JIT's place, if any (run.h). */
static const kd_run_backend *other_backend;

void kd_run_set_backend(const kd_run_backend *b) { other_backend = b; }

typedef struct backend {
    kd_jit *jit;
    const kd_run_backend *other;   /* with its handle */
    void *handle;
} backend;

static void backend_free(backend *b)
{
    if (b->jit) kd_jit_free(b->jit);
    if (b->other && b->other->release) b->other->release(b->handle);
    memset(b, 0, sizeof *b);
}

/* Prints the compile time to info. functions: the JIT's
 * kd_jit_options.functions; the code is kept in the JIT cache unless
 * --no-cache or KDSL_CACHE_DIR= (empty). */
static int compile_fns(const lp_program *p, const kd_codegen_options *co, const kd_run_options *o, unsigned functions,
                       kdh_model_fns *fns, backend *b, FILE *info)
{
    memset(fns, 0, sizeof *fns);
    if (other_backend) {
        b->other = other_backend;
        return other_backend->compile(p, co, fns, &b->handle, info);
    }
    char dir[4096];
    /* under mpirun every rank compiles at once already: one process each */
    kd_jit_options jo = {.functions = functions,
                         .jobs = kdh_dist_size() > 1 ? 1 : 0,
                         .cache_dir = !o->no_cache && kd_jit_default_cache_dir(dir, sizeof dir) ? dir : NULL};
    char why[1024] = "";
    b->jit = kd_jit_compile(p, &jo, fns, why, sizeof why);
    if (!b->jit) return fail("JIT: %s", why[0] ? why : "compilation failed");
    const char *warning;
    bool hit = kd_jit_cache_result(b->jit, &warning) == KD_JIT_CACHE_HIT;
    if (warning) fprintf(stderr, "kdslc: warning: JIT cache: %s\n", warning);
    fprintf(info, "JIT: %s %s in %.2f s\n", hit ? "loaded the cached code of" : "compiled", p->name,
            kd_jit_compile_seconds(b->jit));
    fflush(info);
    return 0;
}

/* ---- the model as the host driver sees it ----------------------------------------------- */

static kdh_var *vars_of(kd_arena *a, const kd_vec *table)
{
    kdh_var *v = kd_alloc_array(a, (size_t)table->len + 1, sizeof *v);
    for (int i = 0; i < table->len; i++) {
        const lp_tensor_info *t = table->items[i];
        v[i].name = t->name;
        v[i].offset = t->offset;
        v[i].elems = t->elems;
        v[i].rank = t->rank;
        v[i].state = t->kind == 1;
        for (int k = 0; k < t->rank && k < KDH_MAX_RANK; k++) v[i].shape[k] = t->shape[k];
    }
    return v;
}

/* Keras' class name of the optimizer (checkpoint metadata), or "". */
static const char *optimizer_name(kd_optimizer_kind k)
{
    for (int i = 0; i < KD_NOPTIMIZERS; i++)
        if (kd_optimizer_names[i].kind == k) return kd_optimizer_names[i].class_name;
    return "";
}

/* A loss or metric written as an expression (its graph, sema_loss_graph's)
 * on a batch of nb samples: outputs y[j], labels t[j], the variables it
 * reads from params; run by the reference interpreter, in double as the
 * host's other losses. NaN when it cannot be computed. */
static double expression_value(const kd_model *km, const ir_graph *g, const float *params, const float *const *y,
                               const float *const *t, int nb)
{
    int nvars = km->vars.len, nout = km->noutputs;
    double *in[KDH_MAX_IO] = {0}, *lab[KDH_MAX_IO] = {0};
    double **vars = calloc((size_t)nvars + 1, sizeof *vars);
    double value = NAN;
    bool ok = vars != NULL;
    for (int j = 0; ok && j < nout; j++) {
        if (!y[j] || !t[j]) continue;   /* an output the expression does not read */
        int64_t k = ir_shape_elems(&km->output_shapes[j]) * nb;
        ok = (in[j] = malloc((size_t)k * sizeof(double))) && (lab[j] = malloc((size_t)k * sizeof(double)));
        for (int64_t i = 0; ok && i < k; i++) in[j][i] = y[j][i], lab[j][i] = t[j][i];
    }
    for (int i = 0; ok && i < g->nodes.len; i++) {
        const ir_node *n = g->nodes.items[i];
        if (n->op != IR_VAR || vars[n->var]) continue;
        const kd_var *v = km->vars.items[n->var];
        int64_t k = ir_shape_elems(&v->shape);
        ok = params && (vars[n->var] = malloc((size_t)k * sizeof(double))) != NULL;
        for (int64_t e = 0; ok && e < k; e++) vars[n->var][e] = params[v->offset + e];
    }
    if (ok) {
        ir_feed feed = {.batch = nb, .inputs = (const double *const *)in, .labels = (const double *const *)lab,
                        .vars = (const double *const *)vars};
        char why[256];
        ir_values *vals = ir_interp_run(g, &feed, why, sizeof why);
        if (vals) value = ir_value(vals, g->outputs.items[0])[0];
        ir_values_free(vals);
    }
    for (int j = 0; j < nout; j++) free(in[j]), free(lab[j]);
    for (int i = 0; vars && i < nvars; i++) free(vars[i]);
    free(vars);
    return value;
}

/* kdh_model.batch_loss: the whole loss (output -1) or output j's, written as an expression. */
static double custom_batch_loss(void *ctx, int output, const float *params, const float *const *y,
                                const float *const *t, int nb)
{
    const kd_model *km = ctx;
    const kd_train_config *c = &km->config;
    const ir_graph *g = output < 0 || !c->output_losses ? c->loss.graph : c->output_losses[output].graph;
    return g ? expression_value(km, g, params, y, t, nb) : NAN;
}

/* kdh_model.batch_metric: a metric written as an expression, of output 0 (no variables). */
static double custom_batch_metric(void *ctx, const void *expr, const float *y, const float *t, int nb)
{
    const float *ys[KDH_MAX_IO] = {y}, *ts[KDH_MAX_IO] = {t};
    return expression_value(ctx, expr, NULL, ys, ts, nb);
}

/* A loss as the host computes it (a row, or custom: custom_batch_loss). */
static kdh_loss_spec host_loss(const kd_loss_spec *l, double weight)
{
    _Static_assert((int)LOSS_COSINE_SIMILARITY == (int)KDH_LOSS_COSINE_SIMILARITY + 1, "LOSS_X is KDH_LOSS_X + 1");
    bool row = l->kind > LOSS_NONE && l->kind < LOSS_COUNT;
    return (kdh_loss_spec){.loss = row ? (kdh_loss_kind)(l->kind - 1) : KDH_LOSS_CATEGORICAL_XENT,
                           .from_logits = l->from_logits, .label_smoothing = l->label_smoothing, .delta = l->delta,
                           .custom = l->kind == LOSS_CUSTOM, .weight = weight};
}

static void host_model(kd_arena *a, const kd_model *km, const lp_program *p, const kdh_model_fns *fns, kdh_model *m)
{
    memset(m, 0, sizeof *m);
    m->name = p->name;
    m->max_batch = p->max_batch;
    m->input_name = p->inputs[0].name;
    m->input_rank = p->inputs[0].rank;
    for (int i = 0; i < p->inputs[0].rank; i++) m->input_shape[i] = p->inputs[0].shape[i];
    m->input_elems = p->inputs[0].elems;
    m->output_rank = p->outputs[0].rank;
    for (int i = 0; i < p->outputs[0].rank; i++) m->output_shape[i] = p->outputs[0].shape[i];
    m->output_elems = p->outputs[0].elems;
    m->label_elems = p->nlabels ? p->labels[0].elems : p->outputs[0].elems;
    kdh_io *io = kd_alloc_array(a, (size_t)(p->ninputs + p->noutputs), sizeof *io);
    for (int i = 0; i < p->ninputs + p->noutputs; i++) {
        const lp_io *l = i < p->ninputs ? &p->inputs[i] : &p->outputs[i - p->ninputs];
        io[i].name = l->name;
        io[i].rank = l->rank;
        for (int k = 0; k < l->rank && k < KDH_MAX_RANK; k++) io[i].shape[k] = l->shape[k];
        io[i].elems = l->elems;
    }
    m->ninputs = p->ninputs;
    m->noutputs = p->noutputs;
    m->inputs = io;
    m->outputs = io + p->ninputs;
    m->params = vars_of(a, &p->params);
    m->nparams = p->params.len;
    m->slots = vars_of(a, &p->slots);
    m->nslots = p->slots.len;
    m->params_size = p->params_size;
    m->opt_size = p->opt_size;
    m->grads_size = p->grads_size;
    const lp_func *pf = p->funcs[LP_F_PREDICT], *gf = p->funcs[LP_F_GRAD], *tf = p->funcs[LP_F_TRAIN_STEP];
    m->predict_arena_bytes = pf ? (size_t)pf->arena_bytes : 0;
    int64_t tb = gf ? gf->arena_bytes : 0;
    if (tf && tf->arena_bytes > tb) tb = tf->arena_bytes;
    m->train_arena_bytes = (size_t)tb;
    m->fns = *fns;
    const kd_train_config *c = &km->config;
    kdh_loss_spec one = host_loss(&c->loss, 1);
    m->loss = one.loss;
    m->from_logits = one.from_logits;
    m->label_smoothing = one.label_smoothing;
    m->delta = one.delta;
    m->whole_loss = c->loss.kind == LOSS_CUSTOM && !c->output_losses;
    bool custom = c->loss.kind == LOSS_CUSTOM;
    if (c->output_losses || c->loss_weights) {
        kdh_loss_spec *each = kd_alloc_array(a, (size_t)km->noutputs, sizeof *each);
        for (int j = 0; j < km->noutputs; j++) {
            const kd_loss_spec *l = c->output_losses ? &c->output_losses[j] : &c->loss;
            each[j] = host_loss(l, c->loss_weights ? c->loss_weights[j] : 1);
            custom |= l->kind == LOSS_CUSTOM;
        }
        m->output_losses = each;
    }
    if (custom) m->batch_loss = custom_batch_loss;
    m->batch_metric = custom_batch_metric;
    m->batch_loss_ctx = (void *)km;
    m->accuracy = c->metric_accuracy;
    m->nmetrics = c->nmetrics;
    m->metrics = c->metrics;
    m->optimizer = optimizer_name(c->optimizer);
}

/* What the data of input `in` and the labels of output `out` must look like
 * (-1: none). */
static void data_want_of(const kd_model *km, const kd_run_options *o, int in, int out, kdh_data_want *w)
{
    memset(w, 0, sizeof *w);
    w->model = km->name;
    w->normalize = o->normalize;
    w->labels = KDH_LABELS_NONE;
    if (in >= 0) {
        w->input_name = km->input_names[in];
        const ir_shape *s = &km->input_shapes[in];
        int skip = s->batched ? 1 : 0;
        w->input_rank = s->rank - skip;
        w->input_elems = 1;
        for (int i = 0; i < w->input_rank && i < KDH_MAX_RANK; i++) {
            w->input_shape[i] = s->dims[i + skip];
            w->input_elems *= s->dims[i + skip];
        }
        w->input_i32 = km->input_i32[in];
        w->input_rows = km->input_rows[in];
        w->input_rows_layer = km->input_rows_layer[in];
    }
    if (out >= 0) {
        w->output_name = km->output_names[out];
        const ir_shape *os = &km->output_shapes[out];
        int oskip = os->batched ? 1 : 0;
        int64_t oe = 1;
        for (int i = oskip; i < os->rank; i++) oe *= os->dims[i];
        const kd_train_config *c = &km->config;
        kd_loss_kind kind = c->output_losses ? c->output_losses[out].kind : c->loss.kind;
        const kd_loss_name *l = kind > LOSS_NONE && kind < LOSS_COUNT ? &kd_loss_names[kind - 1] : NULL;
        w->labels = l && (l->takes & KDH_LOSS_ONEHOT) ? KDH_LABELS_ONEHOT : KDH_LABELS_TARGETS;
        w->label_elems = oe;
    }
}

/* What the data must look like for model km: input 0, output 0's labels. */
static void data_want(const kd_model *km, const kd_run_options *o, kdh_data_want *w)
{
    data_want_of(km, o, 0, 0, w);
}

/* Loads the data of a model of several inputs or outputs (dataset.h):
 * parts[i] input i and the labels of output i (with_labels). The count of
 * parts, or -1 after the error is reported. */
static int load_parts(const kd_model *km, const kd_run_options *o, const char *spec, bool with_labels,
                      kdh_dataset *parts)
{
    int nin = km->ninputs, nlab = with_labels ? km->noutputs : 0, nparts = nin > nlab ? nin : nlab;
    kdh_data_want w[KDH_MAX_PARTS];
    for (int i = 0; i < nparts; i++) data_want_of(km, o, i < nin ? i : -1, i < nlab ? i : -1, &w[i]);
    kdh_error err;
    if (kdh_data_load_parts(spec, w, nparts, nin, nlab, parts, &err) != 0) {
        fail_err(&err);
        return -1;
    }
    return nparts;
}

/* One input and one output (train), or any (evaluate, predict). */
static int check_io(const kd_model *m, const char *cmd)
{
    if (m->noutputs < 1 || (!strcmp(cmd, "train") && (m->ninputs != 1 || m->noutputs != 1))) {
        fprintf(stderr, "kdslc: error: model '%s' has %d inputs and %d outputs; `kdslc %s` takes models with one of each\n",
                m->name, m->ninputs, m->noutputs, cmd);
        return 1;
    }
    return 0;
}

/* Every core, shared between the MPI ranks of this node. */
static int default_threads(int t)
{
    if (t > 0) return t;
    long n = sysconf(_SC_NPROCESSORS_ONLN) / kdh_dist_local_size();
    return n > 0 ? (int)n : 1;
}

/* ---- kdslc train ------------------------------------------------------------------------------ */

/* Loads the fit data: the train split, and the validation set (the test
 * split, or the last fraction when one is given; NULL for none). */
static int load_fit_data(const kd_run_options *o, const kdh_data_want *w, double split, kdh_dataset *train,
                         kdh_dataset *val, bool *has_val)
{
    kdh_error err;
    *has_val = false;
    if (kdh_data_load(o->data, "train", w, train, &err) != 0) return fail_err(&err);
    if (split > 0) {
        if (kdh_data_split(train, split, val, &err) != 0) {
            kdh_dataset_free(train);
            return fail_err(&err);
        }
        *has_val = true;
    } else if (kdh_data_has_test_split(o->data)) {
        if (kdh_data_load(o->data, "test", w, val, &err) != 0) {
            kdh_dataset_free(train);
            return fail_err(&err);
        }
        *has_val = true;
    }
    return 0;
}

/* SIGINT and SIGTERM during `kdslc train`: the first asks kdh_fit to stop
 * before its next step (the write under way finishes, so no temporary is
 * left and the last checkpoint is whole); a second one ends the process at
 * once, as the signal would have (a temporary it leaves is reclaimed by the
 * next run, atomic_file.c). */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
    if (stop_signal) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_signal = sig;
}

/* libgccjit installs its own SIGINT and SIGTERM handlers while it compiles
 * (GCC's driver, which removes its temporary files and re-raises), so ours
 * are installed again after the JIT; a signal during the compile ends the
 * process before anything is written. */
static void catch_stop_signals(bool on)
{
    /* A signal kdslc was started with ignored (nohup, a background job of a
     * script) stays ignored, as POSIX shells and GCC's driver do. */
    static const int sigs[2] = {SIGINT, SIGTERM};
    static struct sigaction before[2];
    static bool saved;
    if (on && !saved) {
        for (int i = 0; i < 2; i++) sigaction(sigs[i], NULL, &before[i]);
        saved = true;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;   /* reads and writes under way carry on */
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 2 && saved; i++)
        if (before[i].sa_handler != SIG_IGN) sigaction(sigs[i], on ? &sa : &before[i], NULL);
    if (!on) saved = false;
}

/* The exit status of a run stopped by signal sig, as the shell reports a
 * process the signal killed: 128 + its number (130, 143). */
static int stopped_by_signal(int sig, const char *what)
{
    if (!sig) sig = SIGTERM;   /* an MPI rank stopped because another one was asked to */
    fflush(stdout);
    fprintf(stderr, "kdslc: error: %s\n", what);
    return 128 + sig;
}

static int run_train(const kd_run_options *o);

/* Under mpirun, every rank runs the whole command (docs/distributed.md):
 * each compiles the model and reads the data; rank 0 alone prints the
 * progress and writes files. */
int kd_run_train(const kd_run_options *o)
{
    stop_signal = 0;
    kdh_error err;
    if (kdh_dist_init(&stop_signal, &err) != 0) return fail_err(&err);
    /* the other ranks' progress would repeat rank 0's; their errors stay on stderr */
    if (kdh_dist_rank() > 0 && !freopen("/dev/null", "w", stdout)) {
        kdh_dist_finish(1);
        return fail("%s", "cannot send a rank's progress to /dev/null");
    }
    int rc = run_train(o);
    kdh_dist_finish(rc);
    return rc;
}

static int run_train(const kd_run_options *o)
{
    int rc = check_paths(o);
    if (rc) return rc;
    catch_stop_signals(true);
    kd_session s = {0};
    rc = kd_front_end(&s, o->file, o->model);
    kdh_dataset train = {0}, val = {0};
    bool has_val = false;
    backend be = {0};
    kdh_ckpt_state ck = {0};
    if (rc != 0) goto done;
    kd_model *km = s.model;
    if ((rc = check_io(km, "train")) != 0) goto done;
    if ((rc = apply_compile_flags(km, o, true)) != 0) goto done;
    kd_train_config *c = &km->config;
    if (o->shards > 0 && !o->deterministic) {
        fail("%s", "--shards K cuts the batches of --deterministic: give --deterministic too");
        rc = 2;
        goto done;
    }
    kdh_error derr;   /* before any work: every rank says so */
    if (kdh_dp_check(o->deterministic ? (o->shards > 0 ? o->shards : 8) : 0, kdh_dist_size(), &derr) != 0) {
        rc = fail_err(&derr);
        rc = 2;
        goto done;
    }
    if (o->resume && o->weights) {
        rc = fail("%s", "--resume continues a checkpoint and --weights starts from a weights file: give one of them");
        rc = 2;
        goto done;
    }
    if ((o->reduce_lr >= 0 && c->schedule.kind != SCHEDULE_CONSTANT) || (o->restore_best_weights && o->early_stopping < 0)) {
        fail("%s", o->reduce_lr >= 0 && c->schedule.kind != SCHEDULE_CONSTANT
                       ? "--reduce-lr-on-plateau sets the learning rate, which the train block's schedule computes"
                       : "--restore-best-weights goes with --early-stopping N");
        rc = 2;
        goto done;
    }
    /* A resumed run takes the checkpoint's seed (init, shuffles, dropout) and batch size. */
    if (o->resume) {
        kdh_error err;
        if (kdh_checkpoint_peek(o->resume, &ck, &err) != 0) {
            rc = fail_err(&err);
            goto done;
        }
        if (o->seed >= 0 && (uint64_t)o->seed != ck.seed)
            fprintf(stderr, "kdslc: warning: --seed %lld differs from the checkpoint's seed %llu; using %llu\n",
                    (long long)o->seed, (unsigned long long)ck.seed, (unsigned long long)ck.seed);
        c->seed = (int64_t)ck.seed;
        if (o->batch_size > 0 && o->batch_size != ck.batch_size)
            fprintf(stderr, "kdslc: warning: --batch-size %d differs from the checkpoint's %d: the run will not "
                            "match an uninterrupted one\n",
                    o->batch_size, ck.batch_size);
        else c->batch_size = ck.batch_size;
    } else if (o->seed >= 0) {
        c->seed = o->seed;
    }
    if (o->batch_size > 0) c->batch_size = o->batch_size;
    if (!kd_check_memory(km, c->batch_size, &s.diags)) { /* before the data is read */
        rc = 1;
        goto done;
    }
    if (o->epochs >= 0) c->epochs = o->epochs;
    if (!isnan(o->learning_rate)) c->learning_rate = o->learning_rate;
    double split = !isnan(o->validation_split) ? o->validation_split : c->validation_split;

    kdh_data_want w;
    data_want(km, o, &w);
    if ((rc = load_fit_data(o, &w, split, &train, &val, &has_val)) != 0) goto done;
    callback_flags(c, o, has_val);

    /* The code and every buffer for the largest batch a step can take: no
     * more than the data holds (--batch-size 1048576 on 4 samples allocates
     * for 4). On several threads, buffers keep their bytes (kd_codegen_options). */
    int max_batch = train.n < c->batch_size ? (int)train.n : c->batch_size;
    kd_codegen_options co = {.batch = max_batch, .disjoint_arena = default_threads(o->threads) > 1};
    lp_program *p = kd_back_end(&s, &co);
    if (!p) {
        rc = 1;
        goto done;
    }
    kdh_model_fns fns;
    /* grad and apply_gradients only for the data-parallel step (train_dist.h) */
    unsigned functions = kdh_dp_wanted(&(kdh_fit_opts){.shards = o->deterministic})
                             ? 0
                             : 1u << LP_F_INIT | 1u << LP_F_PREDICT | 1u << LP_F_TRAIN_STEP;
    if ((rc = compile_fns(p, &co, o, functions, &fns, &be, stdout)) != 0) goto done;
    catch_stop_signals(true);
    if (stop_signal) {
        rc = stopped_by_signal(stop_signal, stop_signal == SIGINT ? "interrupted (SIGINT) before training started; nothing was written"
                                                                  : "terminated (SIGTERM) before training started; nothing was written");
        goto done;
    }
    kdh_model m;
    host_model(&s.arena, km, p, &fns, &m);
    printf("Train on %lld samples (%s)", (long long)train.n, train.name);
    if (has_val) printf(", validate on %lld samples (%s)", (long long)val.n, val.name);
    printf("\n");
    fflush(stdout);

    const char *slow = getenv("KDSL_TEST_SLOW_STEP_MS");
    _Static_assert((int)SCHEDULE_POLYNOMIAL == (int)KDH_LR_POLYNOMIAL && (int)SCHEDULE_COSINE == (int)KDH_LR_COSINE,
                   "kd_schedule_kind and kdh_schedule_kind agree");
    kdh_fit_opts fo = {
        .epochs = c->epochs,
        .batch_size = c->batch_size,
        .validation_freq = c->validation_freq,
        .shuffle = c->shuffle,
        .seed = (uint64_t)c->seed,
        .learning_rate = (float)c->learning_rate,
        .schedule = {.kind = (kdh_schedule_kind)c->schedule.kind,
                     .decay_steps = c->schedule.decay_steps,
                     .decay_rate = c->schedule.decay_rate,
                     .alpha = c->schedule.alpha,
                     .end_learning_rate = c->schedule.end_learning_rate,
                     .power = c->schedule.power,
                     .staircase = c->schedule.staircase},
        .threads = default_threads(o->threads),
        .shards = o->deterministic ? (o->shards > 0 ? o->shards : 8) : 0,
        .bucket_bytes = o->bucket_kb > 0 ? (size_t)o->bucket_kb << 10 : 0,
        .no_overlap = o->no_overlap,
        .weights = o->weights,
        .resume = o->resume,
        .save = o->save,
        .checkpoint = o->checkpoint,
        .history = o->history,
        .callbacks = &c->callbacks,
        .out = stdout,
        .tty = o->tty,
        .slow_step_ms = slow ? (unsigned)strtoul(slow, NULL, 10) : 0,
        .stop = &stop_signal,
    };
    kdh_history h;
    kdh_error err;
    int fit = kdh_fit(&m, &train, has_val ? &val : NULL, &fo, &h, &err);
    if (fit == KDH_FIT_STOPPED) {
        rc = stopped_by_signal(stop_signal, err.msg);
        goto done;
    }
    if (fit != 0) {
        fflush(stdout);
        rc = fail_err(&err);
        goto done;
    }
    if (kdh_dist_size() > 1) {   /* where a data-parallel run's time went (docs/distributed.md) */
        unsigned long calls;
        double secs, train_secs = 0;
        kdh_dist_stats(&calls, &secs);
        for (int i = 0; i < h.count; i++) train_secs += h.rows[i].seconds;
        unsigned long inside, after;
        kdh_dp_bucket_stats(&inside, &after);
        printf("MPI: %d ranks; rank 0 spent %.2f s of %.2f s in %lu collectives (%.3f ms each); %lu of %lu gradient "
               "buckets started inside grad\n",
               kdh_dist_size(), secs, train_secs, calls, calls ? secs * 1e3 / (double)calls : 0.0, inside,
               inside + after);
    }
    if (o->save) printf("Saved weights to %s\n", o->save);
    kdh_history_free(&h);
    rc = 0;
done:
    catch_stop_signals(false);
    kdh_history_free(&ck.history);
    kdh_dataset_free(&train);
    kdh_dataset_free(&val);
    backend_free(&be);
    kd_session_free(&s);
    return rc;
}

/* ---- kdslc evaluate / predict --------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The inference program of the model, JIT'ed, with weights loaded. */
typedef struct inference {
    kdh_model m;
    backend be;
    float *params;
    void *arena;
} inference;

/* Compiled for batches of --batch-size (default 128), or of all n samples
 * when they are fewer: --batch-size 1048576 on 4 samples allocates for 4. */
static int inference_start(kd_session *s, const kd_run_options *o, int64_t n, inference *in, FILE *info)
{
    memset(in, 0, sizeof *in);
    kd_model *km = s->model;
    int batch = o->batch_size > 0 ? o->batch_size : 128;
    if (n > 0 && n < batch) batch = (int)n;
    kd_codegen_options co = {.batch = batch, .inference_only = true};
    kq_model *q = NULL;   /* --quantize int8: its plan, before the fp32 program that gives the I/O layout */
    if (o->quantize && !(q = kd_quantize_model(s, o, o->weights))) return 1;
    lp_program *p = kd_back_end(s, &co);
    if (!p) return 1;
    kdh_model_fns fns;
    int rc = q ? 0 : compile_fns(p, &co, o, 1u << LP_F_PREDICT, &fns, &in->be, info);
    if (rc != 0) return rc;
    if (q) {
        kd_quantize_fns(q, &fns);
        fprintf(info, "int8: %s quantized, %d layers, calibrated on %d samples of %s (%s)\n", p->name, q->layers.len,
                q->samples, o->calibration, o->calibration_method ? o->calibration_method : "minmax");
    }
    host_model(&s->arena, km, p, &fns, &in->m);
    kdh_error err;
    if (!(in->params = kdh_floats(in->m.params_size, "params", &err)) ||
        !(in->arena = kdh_arena_alloc(in->m.predict_arena_bytes, &err)))
        return fail_err(&err);
    if (kdh_weights_load(o->weights, &in->m, in->params, &err) != 0) return fail_err(&err);
    return 0;
}

static void inference_free(inference *in)
{
    free(in->params);
    free(in->arena);
    backend_free(&in->be);
}

static int need_weights(const kd_run_options *o, const char *cmd)
{
    if (o->weights) return 0;
    fprintf(stderr, "kdslc: error: `kdslc %s` needs --weights W.safetensors (from `kdslc train --save W`)\n"
                    "(run 'kdslc --help' for usage)\n",
            cmd);
    return 2;
}

int kd_run_evaluate(const kd_run_options *o)
{
    int rc = need_weights(o, "evaluate");
    if (!rc) rc = kd_quantize_flags(o);
    if (rc) return rc;
    kd_session s = {0};
    inference in = {0};
    kdh_dataset d[KDH_MAX_PARTS] = {0};
    int nparts = 1;
    if ((rc = kd_front_end(&s, o->file, o->model)) != 0) goto done;
    kd_model *km = s.model;
    if ((rc = check_io(km, "evaluate")) != 0) goto done;
    if ((rc = apply_compile_flags(km, o, false)) != 0) goto done;
    kdh_error err;
    if (km->ninputs == 1 && km->noutputs == 1) {
        kdh_data_want w;
        data_want(km, o, &w);
        const char *split = kdh_data_has_test_split(o->data) ? "test" : "train";
        if (kdh_data_load(o->data, split, &w, &d[0], &err) != 0) {
            rc = fail_err(&err);
            goto done;
        }
    } else if (!o->data || (strchr(o->data, ',') == NULL && !ends_with(o->data, ".csv"))) {
        rc = fail("model '%s' has several inputs or outputs: give --data one .npy or .csv file per input, then one of "
                  "labels per output (a.npy,b.npy,y0.npy,y1.npy), or one CSV file of all their columns",
                  km->name);
        goto done;
    } else if ((nparts = load_parts(km, o, o->data, true, d)) < 0) {
        nparts = 0;
        rc = 1;
        goto done;
    }
    if ((rc = inference_start(&s, o, d[0].n, &in, stdout)) != 0) goto done;
    double loss, out_loss[KDH_MAX_IO], out_acc[KDH_MAX_IO], metric[KDH_MAX_IO * KDH_MAX_METRICS];
    int nm = in.m.nmetrics;
    double t0 = kdh_now();
    if (kdh_evaluate_metrics(&in.m, in.params, d, in.arena, &loss, out_loss, out_acc, metric, &err) != 0) {
        rc = fail_err(&err);
        goto done;
    }
    double t = kdh_now() - t0;
    printf("Evaluated %lld samples (%s) in %.2f s\n", (long long)d[0].n, d[0].name, t);
    printf("loss: %.4f", loss);
    if (km->noutputs == 1) {
        if (!isnan(out_acc[0])) printf(" - accuracy: %.4f", out_acc[0]);
        for (int i = 0; i < nm; i++) printf(" - %s: %.4f", in.m.metrics[i].name, metric[i]);
    } else {
        /* Keras' names for a model of several outputs: NAME_loss, NAME_accuracy, NAME_METRIC */
        for (int j = 0; j < km->noutputs && !in.m.whole_loss; j++)   /* an expression is one whole */
            printf(" - %s_loss: %.4f", km->output_names[j], out_loss[j]);
        for (int j = 0; j < km->noutputs; j++) {
            if (!isnan(out_acc[j])) printf(" - %s_accuracy: %.4f", km->output_names[j], out_acc[j]);
            for (int i = 0; i < nm; i++) printf(" - %s_%s: %.4f", km->output_names[j], in.m.metrics[i].name, metric[j * nm + i]);
        }
    }
    printf("\n");
    rc = 0;
done:
    kdh_data_free_parts(d, nparts);
    inference_free(&in);
    kd_session_free(&s);
    return rc;
}

/* Rows of predictions: sample i's values of each output in turn. */
typedef struct csv_out {
    int nout;
    const float *y[KDH_MAX_IO];
    int64_t k[KDH_MAX_IO];
    int64_t n;
    const char *path;
} csv_out;

static int write_csv(FILE *f, void *ctx, kdh_error *err)
{
    const csv_out *c = ctx;
    for (int64_t i = 0; i < c->n; i++) {
        bool first = true;
        for (int o = 0; o < c->nout; o++)
            for (int64_t j = 0; j < c->k[o]; j++, first = false)
                if (fprintf(f, first ? "%.9g" : ",%.9g", (double)c->y[o][i * c->k[o] + j]) < 0) goto bad;
        if (fputc('\n', f) == EOF) goto bad;
    }
    return 0;
bad:
    snprintf(err->msg, sizeof err->msg, "%.400s: write failed: %s", c->path, strerror(errno ? errno : EIO));
    return -1;
}

/* -o for a model's outputs: one file per output, or one CSV file (or
 * stdout) of every output's columns. The count of names (0: stdout), or -1
 * after the error is reported. */
static int output_files(const kd_model *km, const char *list, char *buf, size_t size, const char **names)
{
    if (!list) return 0;
    int n = split_list(list, buf, size, names, KDH_MAX_IO + 1);
    bool empty = false;
    for (int i = 0; i < n; i++) empty |= !*names[i];
    if (!empty && (n == km->noutputs || (n == 1 && ends_with(names[0], ".csv")))) return n;
    char outs[512];
    size_t at = 0;
    for (int j = 0; j < km->noutputs && at < sizeof outs; j++)
        at += (size_t)snprintf(outs + at, sizeof outs - at, "%s%s", j ? ", " : "", km->output_names[j]);
    fprintf(stderr,
            "kdslc: error: -o '%s' names %d file%s; model '%s' has %d output%s (%s): give one .npy or .csv file per "
            "output, in this order (-o y0.npy,y1.npy), or one .csv file for all their columns\n",
            list, n, n == 1 ? "" : "s", km->name, km->noutputs, km->noutputs == 1 ? "" : "s", outs);
    return -1;
}

static int write_npy(const char *path, const kdh_io *out, const float *y, int64_t n, kdh_error *err)
{
    kdh_tensor t = {0};
    t.dtype = KDH_F32;
    t.rank = 1 + out->rank;
    t.shape[0] = n;
    for (int i = 0; i < out->rank; i++) t.shape[1 + i] = out->shape[i];
    t.data = (void *)y;
    t.nbytes = (size_t)(n * out->elems) * sizeof(float);
    if (kdh_npy_write(path, &t, err) != 0) return -1;
    printf("Wrote %lld predictions of shape %s to %s\n", (long long)n,
           kdh_shape_str(out->rank, out->shape, (char[128]){0}, 128), path);
    return 0;
}

int kd_run_predict(const kd_run_options *o)
{
    int rc = need_weights(o, "predict");
    if (!rc) rc = kd_quantize_flags(o);
    if (rc) return rc;
    if (!o->input) {
        fprintf(stderr, "kdslc: error: `kdslc predict` needs --input X.npy (one file per input: --input a.npy,b.npy)\n"
                        "(run 'kdslc --help' for usage)\n");
        return 2;
    }
    if ((rc = check_paths(o)) != 0) return rc;
    kd_session s = {0};
    inference in = {0};
    kdh_dataset d[KDH_MAX_PARTS] = {0};
    int nparts = 1;
    float *y[KDH_MAX_IO] = {0};
    char obuf[8192];
    const char *opath[KDH_MAX_IO + 1];
    int nop = 0;
    if ((rc = kd_front_end(&s, o->file, o->model)) != 0) goto done;
    kd_model *km = s.model;
    if ((rc = check_io(km, "predict")) != 0) goto done;
    if ((nop = output_files(km, o->output, obuf, sizeof obuf, opath)) < 0) {
        rc = 2;
        goto done;
    }
    kdh_error err;
    if (km->ninputs == 1 && !strchr(o->input, ',')) {
        kdh_data_want w;
        data_want(km, o, &w);
        if (kdh_inputs_load(o->input, &w, &d[0], &err) != 0) {
            rc = fail_err(&err);
            goto done;
        }
    } else if ((nparts = load_parts(km, o, o->input, false, d)) < 0) {
        nparts = 0;
        rc = 1;
        goto done;
    }
    int64_t n = d[0].n;
    /* The JIT line goes to stderr when the predictions go to stdout. */
    if ((rc = inference_start(&s, o, n, &in, o->output ? stdout : stderr)) != 0) goto done;
    const kdh_model *m = &in.m;
    const float *x[KDH_MAX_IO];
    for (int i = 0; i < m->ninputs; i++) x[i] = d[i].x;
    for (int j = 0; j < m->noutputs; j++)
        if (!(y[j] = kdh_floats(n * m->outputs[j].elems, "predictions", &err))) {
            rc = fail_err(&err);
            goto done;
        }
    kdh_predict_all(m, in.params, x, n, y, in.arena);
    for (int j = 0; j < m->noutputs; j++) {
        kdh_model mj = *m;   /* output j as kdh_check_outputs' output 0 */
        mj.output_elems = m->outputs[j].elems;
        char what[700];
        if (m->noutputs == 1) snprintf(what, sizeof what, "%s", d[0].name);
        else snprintf(what, sizeof what, "%.512s (output '%s')", d[0].name, m->outputs[j].name);
        if (kdh_check_outputs(&mj, y[j], n, what, &err) != 0) {
            rc = fail_err(&err);
            goto done;
        }
    }
    csv_out c = {.nout = m->noutputs, .n = n, .path = o->output ? o->output : "<stdout>"};
    for (int j = 0; j < m->noutputs; j++) {
        c.y[j] = y[j];
        c.k[j] = m->outputs[j].elems;
    }
    if (nop == 0) {
        errno = 0;
        rc = write_csv(stdout, &c, &err) == 0 && fflush(stdout) == 0
                 ? 0
                 : fail("writing the predictions to standard output failed: %s", strerror(errno ? errno : EIO));
    } else if (nop == 1 && m->noutputs > 1) {
        rc = kdh_atomic_write(opath[0], write_csv, &c, &err) == 0 ? 0 : fail_err(&err);
    } else {
        for (int j = 0; j < m->noutputs && rc == 0; j++) {
            if (ends_with(opath[j], ".csv")) {
                csv_out cj = {.nout = 1, .y = {y[j]}, .k = {m->outputs[j].elems}, .n = n, .path = opath[j]};
                rc = kdh_atomic_write(opath[j], write_csv, &cj, &err) == 0 ? 0 : fail_err(&err);
            } else {
                rc = write_npy(opath[j], &m->outputs[j], y[j], n, &err) == 0 ? 0 : fail_err(&err);
            }
        }
    }
done:
    for (int j = 0; j < KDH_MAX_IO; j++) free(y[j]);
    kdh_data_free_parts(d, nparts);
    inference_free(&in);
    kd_session_free(&s);
    return rc;
}
