/* fuzz_h5.c — kdsl's HDF5 readers in process: the legacy Keras .h5 reader
 * (kx_read_keras_h5_image) and Keras 3's model.weights.h5 reader
 * (kx_read_keras3_weights_image), on files whose contents the bytes choose.
 *
 * Why not the bytes themselves as an HDF5 file: libhdf5 is not hardened
 * against damaged files (it loops for ever, leaks or crashes on some, which
 * is why kdslc reads HDF5 in a child process, and why fuzz_keras finds two
 * inputs a second there). Fuzzing libhdf5's parser finds libhdf5's bugs,
 * which kdsl cannot fix and the child process contains. What kdsl's own
 * code must get right is what it does with what libhdf5 returns from a
 * well-formed file that lies: attributes of the wrong type, rank, count or
 * padding; strings empty, huge or with slashes; layer and weight lists
 * naming what is not there; datasets of any type, rank and shape (declared
 * large and never written); groups nested deep, linked to themselves, soft
 * and external links. So the bytes drive a generator that writes such a
 * file with libhdf5 (which writes well-formed files), and the readers read
 * it back from memory, in process, fast: each read must either return a
 * config and usable weights, or fail with one message and nothing. */
#include "fuzz_reader.h"

#include "keras_h5.h"

#include <hdf5.h>
#include <string.h>

/* The weights a read may return: 1 MiB, not the other readers' 64. The
 * checks are the same at any cap, and the generator's shapes reach past it
 * (dimensions of 1000 and 2^31), but each accepted megabyte is calloc'd,
 * checked and converted once more under ASan: at 64 MiB, on a corpus the
 * fuzzer had grown to accept tens of megabytes, each run took 1.4x the CPU. */
#define H5_MAX_BYTES ((uint64_t)1 << 20)

typedef struct gen {
    const uint8_t *p, *end;
    hid_t file, lcpl;
} gen;

static unsigned take(gen *g, unsigned n)   /* 0..n-1 from the next byte (0 once they run out) */
{
    return g->p < g->end ? (unsigned)*g->p++ % n : 0;
}

/* Names the readers look for, so that the generated files meet them. */
static const char *const names[] = {"model_weights", "layers", "vars", "0", "1", "2", "dense", "dense_1", "kernel:0",
                                    "bias:0", "optimizer", "cell", "x", "07", "dense/kernel:0", "layers/dense/vars/0"};
#define NNAMES (sizeof names / sizeof *names)

/* A string: a name, something Keras would not write, or bytes from the input. */
static void string(gen *g, char *buf, size_t cap)
{
    unsigned kind = take(g, 4);
    if (kind < 2) {
        snprintf(buf, cap, "%s", names[take(g, NNAMES)]);
        return;
    }
    if (kind == 2) {   /* a config: small JSON the config reader gets through */
        static const char seq[] = "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": [{\"class_name\": "
                                  "\"Dense\", \"config\": {\"name\": \"dense\", \"units\": 2, \"batch_input_shape\": [null, 3]}}]}}";
        static const char *const configs[] = {seq, "", "{", "not json", "{\"class_name\": \"Functional\"}"};
        const char *c = configs[take(g, 5)];
        size_t n = strlen(c) < cap ? strlen(c) : cap - 1;
        memcpy(buf, c, n);
        buf[n] = 0;
        return;
    }
    size_t n = take(g, 24);
    for (size_t i = 0; i < n && i + 1 < cap; i++) buf[i] = (char)(g->p < g->end ? *g->p++ : 'a');
    buf[n < cap ? n : cap - 1] = 0;
}

/* An attribute `name` of obj: strings (fixed or variable length, scalar or a list), or numbers. */
static void attribute(gen *g, hid_t obj, const char *name)
{
    unsigned kind = take(g, 6), count = take(g, 4);
    char strs[4][256];
    const char *ptrs[4];
    for (unsigned i = 0; i < count; i++) string(g, strs[i], sizeof strs[i]), ptrs[i] = strs[i];
    hsize_t dims[1] = {count};
    hid_t space = kind == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, dims, NULL);
    hid_t type = -1;
    const void *data = NULL;
    char fixed[4 * 256] = {0};
    if (kind <= 2) {   /* variable-length */
        type = H5Tcopy(H5T_C_S1);
        H5Tset_size(type, H5T_VARIABLE);
        if (kind == 0) ptrs[0] = count ? strs[0] : "";
        data = ptrs;
    } else if (kind <= 4) {   /* fixed-length, null- or space-padded */
        size_t len = 1 + take(g, 40);
        type = H5Tcopy(H5T_C_S1);
        H5Tset_size(type, len);
        H5Tset_strpad(type, kind == 3 ? H5T_STR_NULLPAD : H5T_STR_SPACEPAD);
        for (unsigned i = 0; i < count; i++) memcpy(fixed + i * len, strs[i], strlen(strs[i]) < len ? strlen(strs[i]) : len);
        if (count * len > sizeof fixed) count = 0;
        data = fixed;
    } else {
        type = H5Tcopy(H5T_NATIVE_DOUBLE);
        static const double zeros[4];
        data = zeros;
    }
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        if (count || kind == 0) H5Awrite(a, type, data);
        H5Aclose(a);
    }
    H5Tclose(type);
    H5Sclose(space);
}

static void dataset(gen *g, hid_t parent, const char *name)
{
    hid_t type;
    switch (take(g, 6)) {   /* the two Keras writes, and others */
    case 0: type = H5T_NATIVE_FLOAT; break;
    case 1: type = H5T_NATIVE_DOUBLE; break;
    case 2: type = H5T_NATIVE_INT; break;
    case 3: type = H5T_IEEE_F32BE; break;
    case 4: type = H5T_NATIVE_CHAR; break;
    default: type = H5T_NATIVE_LLONG; break;
    }
    int rank = (int)take(g, 11);
    hsize_t dims[10];
    double elems = 1;
    for (int i = 0; i < rank; i++) {
        unsigned k = take(g, 8);
        dims[i] = k < 6 ? k : k == 6 ? 1000 : (hsize_t)1 << 31;   /* empty, small, large, absurd */
        elems *= (double)dims[i];
    }
    hid_t space = H5Screate_simple(rank, dims, NULL);
    if (space < 0) return;
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (elems > 4096) {   /* never written: chunked, so that only its shape is in the file */
        hsize_t chunk[10];
        for (int i = 0; i < rank; i++) chunk[i] = dims[i] ? (dims[i] < 16 ? dims[i] : 16) : 1;
        H5Pset_chunk(dcpl, rank, chunk);
    }
    hid_t d = H5Dcreate2(parent, name, type, space, g->lcpl, dcpl, H5P_DEFAULT);
    if (d >= 0 && elems <= 4096 && elems > 0) {
        float v[4096];
        for (size_t i = 0; i < (size_t)elems; i++) v[i] = (float)(int8_t)take(g, 256) / 8.0f;
        if (take(g, 8) == 0) v[0] = 1.0f / 0.0f;   /* a non-finite weight now and then */
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    }
    if (d >= 0) H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(space);
}

/* A group's contents: subgroups, datasets, attributes and links, `depth` more levels at most. */
static void fill(gen *g, hid_t grp, int depth)
{
    unsigned n = take(g, 5);
    for (unsigned i = 0; i < n && g->p < g->end; i++) {
        const char *name = names[take(g, NNAMES)];
        switch (take(g, 8)) {
        case 0:
        case 1:
            if (depth > 0) {
                hid_t c = H5Gcreate2(grp, name, g->lcpl, H5P_DEFAULT, H5P_DEFAULT);
                if (c >= 0) {
                    fill(g, c, depth - 1);
                    H5Gclose(c);
                }
            }
            break;
        case 2:
        case 3: dataset(g, grp, name); break;
        case 4: {
            static const char *const attrs[] = {"layer_names", "weight_names", "model_config", "keras_version"};
            attribute(g, grp, attrs[take(g, 4)]);
            break;
        }
        case 5: H5Lcreate_hard(grp, ".", grp, name, H5P_DEFAULT, H5P_DEFAULT); break;   /* a cycle */
        case 6: H5Lcreate_soft(names[take(g, NNAMES)], grp, name, H5P_DEFAULT, H5P_DEFAULT); break;
        default: H5Lcreate_external("elsewhere.h5", "/x", grp, name, H5P_DEFAULT, H5P_DEFAULT); break;
        }
    }
}

int kdfuzz_h5(const uint8_t *data, size_t size)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    /* Every file libhdf5 creates or opens callocs its metadata cache (H5C_t,
     * 528 KB in 1.10.8), which its free lists hand back to malloc at once
     * (each list keeps 64 KB at most): a fresh mmap and ~130 page faults per
     * file, three files an input, under ASan more than half of the target's
     * time. Lists of 4 MB keep the few caches an input needs for the next. */
    static bool limits_set;
    if (!limits_set) {
        H5set_free_list_limits(16 << 20, 4 << 20, 4 << 20, 256 << 10, 16 << 20, 1 << 20);   /* the rest as default */
        limits_set = true;
    }
    gen g = {data, data + size, -1, -1};
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_core(fapl, 1 << 16, 0);
    g.file = H5Fcreate("kdsl-fuzz.h5", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (g.file < 0) return 0;
    g.lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(g.lcpl, 1);
    fill(&g, g.file, 5);
    void *image = NULL;
    ssize_t len = H5Fflush(g.file, H5F_SCOPE_GLOBAL) >= 0 ? H5Fget_file_image(g.file, NULL, 0) : -1;
    if (len > 0 && (image = malloc((size_t)len)) && H5Fget_file_image(g.file, image, (size_t)len) != len) len = -1;
    H5Pclose(g.lcpl);
    H5Fclose(g.file);
    if (len > 0 && image) {
        kx_keras_file f;
        kdh_error e;
        if (kx_read_keras_h5_image(image, (size_t)len, "fuzz.h5", H5_MAX_BYTES, &f, &e) == 0) {
            kdfuzz_check(f.config != NULL);
            for (size_t i = 0; i < f.weights.count; i++) kdfuzz_use_tensor(&f.weights.items[i]);
            kx_keras_file_free(&f);
        } else {
            kdfuzz_check_error(&e);
            kdfuzz_check(f.config == NULL && f.weights.count == 0);
        }
        kdh_tensor_list w;
        if (kx_read_keras3_weights_image(image, (size_t)len, "fuzz.weights.h5", H5_MAX_BYTES, &w, &e) == 0) {
            for (size_t i = 0; i < w.count; i++) {
                kdfuzz_check(!strncmp(w.items[i].name, "layers/", 7) && strstr(w.items[i].name, "/vars/"));
                kdfuzz_use_tensor(&w.items[i]);
            }
            kdh_list_free(&w);
        } else {
            kdfuzz_check_error(&e);
            kdfuzz_check(w.count == 0);
        }
    }
    free(image);
    return 0;
}

KDFUZZ_ENTRY(kdfuzz_h5)
