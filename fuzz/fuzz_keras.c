/* fuzz_keras.c — bytes as a Keras model file for `kdslc import`: an HDF5
 * file (when the bytes start with HDF5's signature) read as kdslc import
 * reads one, by kx_read_keras_h5_isolated in a child process (libhdf5
 * itself loops or crashes on some damaged files: the child may, kdslc may
 * not), else the bytes both as a TensorFlow.js model.json read from
 * memory (kx_read_tfjs_text, beside a 256-byte weights.bin shard on disk)
 * and as a model config (JSON); the config then goes through
 * kx_config_to_kdsl, and the program it writes through the whole front
 * end. The program must parse: what the importer writes is KDSL, whatever
 * the config (its checks may still fail, as for a config whose shapes do
 * not fit). Diagnostics go to /dev/null. */
#include "fuzz_reader.h"

#include "driver.h"
#include "keras_config.h"
#include "keras_h5.h"
#include "tfjs_model.h"

#include <sys/stat.h>

#include <string.h>
#include <unistd.h>

static void translate(const char *json)
{
    kd_session s = {0};
    s.diags.out = kdfuzz_devnull();
    char *text = kx_config_to_kdsl(&s.arena, json, "fuzz.h5", "2.4.0", &s.diags);
    if (text) {
        kdfuzz_check(s.diags.errors == 0);
        int rc = kd_front_end_text(&s, "fuzz.kdsl", text, strlen(text), NULL);
        kdfuzz_check(rc == 0 || rc == 1);
    } else {
        kdfuzz_check(s.diags.errors > 0);
    }
    kd_session_free(&s);
}

/* What a reader returned (rc): a config and usable weights, or an error and nothing. */
static void use_file(int rc, kx_keras_file *f, const kdh_error *e)
{
    if (rc == 0) {
        kdfuzz_check(f->config != NULL);
        for (size_t i = 0; i < f->weights.count; i++) kdfuzz_use_tensor(&f->weights.items[i]);
        translate(f->config);
        kx_keras_file_free(f);
    } else {
        kdfuzz_check_error(e);
        kdfuzz_check(f->config == NULL && f->weights.count == 0);
    }
}

int kdfuzz_keras(const uint8_t *data, size_t size)
{
    if (size >= 8 && !memcmp(data, "\x89HDF\r\n\x1a\n", 8)) {
        char path[64];
        snprintf(path, sizeof path, "/tmp/kdsl-fuzz-%d.h5", (int)getpid());
        FILE *out = fopen(path, "wb");
        if (!out) return 0;
        size_t wrote = fwrite(data, 1, size, out);
        if (fclose(out) != 0 || wrote != size) {
            unlink(path);
            return 0;
        }
        kx_keras_file f;
        kdh_error e;
        int rc = kx_read_keras_h5_isolated(path, 5, &f, &e);
        unlink(path);
        use_file(rc, &f, &e);
        return 0;
    }
    /* as model.json, named as if in a directory of its own with one shard */
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/kdsl-fuzz-tfjs-%d", (int)getpid());
        mkdir(dir, 0700);
        char shard[96];
        snprintf(shard, sizeof shard, "%s/weights.bin", dir);
        FILE *w = fopen(shard, "wb");
        static const float ones[64] = {1, 2, 3, 4};
        if (w) fwrite(ones, sizeof ones, 1, w), fclose(w);
    }
    char mpath[96];   /* model.json's text is the bytes, in memory: no file written per input */
    snprintf(mpath, sizeof mpath, "%s/model.json", dir);
    kx_keras_file f;
    kdh_error e;
    use_file(kx_read_tfjs_text((const char *)data, size, mpath, &f, &e), &f, &e);
    char *json = malloc(size + 1);
    if (!json) return 0;
    if (size) memcpy(json, data, size);
    json[size] = 0;
    translate(json);
    free(json);
    return 0;
}

KDFUZZ_ENTRY(kdfuzz_keras)
