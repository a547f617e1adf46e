/* test_files.c — runtime/host file input/output: safetensors, IDX, .npy,
 * CSV, atomic replacement, finiteness checks. Fixtures are built inside
 * the tests (byte by byte where the point is the exact format), so each
 * test shows what it feeds the reader. */
#include "testutil.h"
#include "host/tensor_file.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

/* The message must mention `words`: the assertion prints both. */
#define ck_assert_err(err, words)                                                          \
    ck_assert_msg(strstr((err).msg, (words)) != NULL, "error \"%s\" lacks \"%s\"", (err).msg, \
                  (words))

/* A safetensors file: u64 LE length of json, json, data. */
static unsigned char *st_bytes(const char *json, const void *data, size_t dlen, size_t *len)
{
    size_t n = strlen(json);
    unsigned char *b = malloc(8 + n + dlen + 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(b + 8, json, n);
    if (dlen) memcpy(b + 8 + n, data, dlen);
    *len = 8 + n + dlen;
    return b;
}

/* Reads a safetensors image expected to fail; returns the message. */
static kdh_error st_fail(const char *json, size_t dlen)
{
    unsigned char *zeros = calloc(dlen ? dlen : 1, 1);
    size_t len;
    unsigned char *b = st_bytes(json, zeros, dlen, &len);
    kdh_tensor_list l;
    kdh_error err = {""};
    int rc = kdh_safetensors_read_mem(b, len, "w.safetensors", NULL, &l, &err);
    ck_assert_msg(rc == -1, "accepted bad header %s", json);
    ck_assert_msg(l.count == 0 && l.items == NULL, "failed read left tensors behind");
    ck_assert_msg(strncmp(err.msg, "w.safetensors: ", 15) == 0, "message lacks the file: %s", err.msg);
    free(b);
    free(zeros);
    return err;
}

static int count_temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp-") || strstr(e->d_name, ".kd-")) n++;   /* old and current temporaries (atomic_file.c) */
    closedir(d);
    return n;
}

static void put_f32(float *dst, const float *src, size_t n) { memcpy(dst, src, n * sizeof *src); }

/* ---- safetensors -------------------------------------------------------- */

START_TEST(st_roundtrip_exact)
{
    const char *dir = tu_tmpdir("st_roundtrip");
    const char *path = tu_path(dir, "w.safetensors");
    kdh_tensor_list l;
    kdh_error err = {""};
    kdh_list_init(&l);
    int64_t ks[] = {3, 2}, bs[] = {2}, zs[] = {0, 4};
    kdh_tensor *k = kdh_list_add(&l, "dense/kernel", KDH_F32, 2, ks, &err);
    ck_assert_ptr_nonnull(k);
    const float kv[] = {1.5f, -2.0f, 0.25f, 3e-38f, -0.0f, 1e30f};
    put_f32(k->data, kv, 6);
    kdh_tensor *b = kdh_list_add(&l, "dense/bias", KDH_F32, 1, bs, &err);
    ((float *)b->data)[0] = 0.5f;
    ((float *)b->data)[1] = -0.5f;
    kdh_tensor *st = kdh_list_add(&l, "step", KDH_I64, 0, NULL, &err);
    *(int64_t *)st->data = 1234567890123LL;
    ck_assert_ptr_nonnull(kdh_list_add(&l, "empty", KDH_U8, 2, zs, &err));
    ck_assert_ptr_null(kdh_list_add(&l, "step", KDH_F32, 0, NULL, &err));
    ck_assert_err(err, "already in the list");
    ck_assert_int_eq(kdh_list_set_meta(&l, "format", "kdsl", &err), 0);
    ck_assert_int_eq(kdh_list_set_meta(&l, "epoch", "3", &err), 0);
    ck_assert_int_eq(kdh_safetensors_write_list(path, &l, &err), 0);

    /* The exact bytes: compact JSON in our order, metadata first, spaces to 8. */
    const char *hdr = "{\"__metadata__\":{\"format\":\"kdsl\",\"epoch\":\"3\"},"
                      "\"dense/kernel\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]},"
                      "\"dense/bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]},"
                      "\"step\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[32,40]},"
                      "\"empty\":{\"dtype\":\"U8\",\"shape\":[0,4],\"data_offsets\":[40,40]}}";
    size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8, flen;
    char *file = tu_read(path, &flen);
    ck_assert_ptr_nonnull(file);
    ck_assert_uint_eq(flen, 8 + padded + 40);
    ck_assert_uint_eq((unsigned char)file[0], padded & 0xFF);
    ck_assert_uint_eq((unsigned char)file[1], padded >> 8);
    for (int i = 2; i < 8; i++) ck_assert_int_eq(file[i], 0);
    ck_assert_int_eq(memcmp(file + 8, hdr, hl), 0);
    for (size_t i = hl; i < padded; i++) ck_assert_int_eq(file[8 + i], ' ');
    ck_assert_int_eq(memcmp(file + 8 + padded, kv, 24), 0);

    kdh_tensor_list r;
    ck_assert_msg(kdh_safetensors_read(path, NULL, &r, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(r.count, 4);
    for (size_t i = 0; i < 4; i++) {
        ck_assert_str_eq(r.items[i].name, l.items[i].name);
        ck_assert_int_eq(r.items[i].dtype, l.items[i].dtype);
        ck_assert_int_eq(r.items[i].rank, l.items[i].rank);
        for (int d = 0; d < r.items[i].rank; d++) ck_assert_int_eq(r.items[i].shape[d], l.items[i].shape[d]);
        ck_assert_uint_eq(r.items[i].nbytes, l.items[i].nbytes);
        ck_assert_int_eq(memcmp(r.items[i].data, l.items[i].data, l.items[i].nbytes), 0);
    }
    ck_assert_int_eq(*(int64_t *)kdh_list_find(&r, "step")->data, 1234567890123LL);
    ck_assert_str_eq(kdh_list_get_meta(&r, "format"), "kdsl");
    ck_assert_str_eq(kdh_list_get_meta(&r, "epoch"), "3");
    ck_assert_ptr_null(kdh_list_get_meta(&r, "missing"));

    /* Writing the loaded list again gives the same bytes: deterministic. */
    const char *path2 = tu_path(dir, "w2.safetensors");
    ck_assert_int_eq(kdh_safetensors_write_list(path2, &r, &err), 0);
    size_t flen2;
    char *file2 = tu_read(path2, &flen2);
    ck_assert_uint_eq(flen2, flen);
    ck_assert_int_eq(memcmp(file, file2, flen), 0);
    ck_assert_int_eq(count_temp_files(dir), 0);

    free(file);
    free(file2);
    kdh_list_free(&r);
    kdh_list_free(&l);
}
END_TEST

/* Byte strings the reference implementation produces (its own test vectors). */
START_TEST(st_reference_writer_bytes)
{
    const char *dir = tu_tmpdir("st_reference");
    kdh_error err = {""};
    float v[6] = {0, 1, 2, 3, 4, 5};

    kdh_tensor t = {.name = "attn.0", .dtype = KDH_F32, .rank = 3, .shape = {1, 2, 3},
                    .data = v, .nbytes = sizeof v};
    const char *p = tu_path(dir, "a.safetensors");
    ck_assert_int_eq(kdh_safetensors_write(p, &t, 1, NULL, 0, &err), 0);
    const char *json = "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
    ck_assert_uint_eq(strlen(json), 64);   /* already aligned: no padding */
    size_t want_len, got_len;
    unsigned char *want = st_bytes(json, v, sizeof v, &want_len);
    char *got = tu_read(p, &got_len);
    ck_assert_uint_eq(got_len, want_len);
    ck_assert_int_eq(memcmp(got, want, want_len), 0);
    free(got);
    free(want);

    /* Shorter name: 65 bytes of JSON padded with 7 spaces to 72. */
    kdh_tensor t2 = {.name = "attn0", .dtype = KDH_F32, .rank = 4, .shape = {1, 1, 2, 3},
                     .data = v, .nbytes = sizeof v};
    p = tu_path(dir, "b.safetensors");
    ck_assert_int_eq(kdh_safetensors_write(p, &t2, 1, NULL, 0, &err), 0);
    want = st_bytes("{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}       ",
                    v, sizeof v, &want_len);
    ck_assert_uint_eq(want[0], 72);
    got = tu_read(p, &got_len);
    ck_assert_uint_eq(got_len, want_len);
    ck_assert_int_eq(memcmp(got, want, want_len), 0);
    free(got);
    free(want);

    /* No tensors: "{}" and six spaces; metadata only: 40 bytes. */
    p = tu_path(dir, "c.safetensors");
    ck_assert_int_eq(kdh_safetensors_write(p, NULL, 0, NULL, 0, &err), 0);
    got = tu_read(p, &got_len);
    ck_assert_uint_eq(got_len, 16);
    ck_assert_int_eq(memcmp(got, "\x08\0\0\0\0\0\0\0{}      ", 16), 0);
    free(got);
    kdh_meta m = {"framework", "pt"};
    ck_assert_int_eq(kdh_safetensors_write(p, NULL, 0, &m, 1, &err), 0);
    got = tu_read(p, &got_len);
    ck_assert_uint_eq(got_len, 48);
    ck_assert_int_eq(memcmp(got, "\x28\0\0\0\0\0\0\0{\"__metadata__\":{\"framework\":\"pt\"}}     ", 48), 0);
    free(got);
}
END_TEST

/* A file laid out as the Python library writes it: tensors sorted by
 * dtype alignment (I64 first) then by name, metadata first, padded. */
START_TEST(st_reads_reference_layout)
{
    const char *json = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"step\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
                       "\"dense/bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
                       "\"dense/kernel\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[16,32]},"
                       "\"mask\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[32,35]}}";
    char padded[512];
    size_t n = strlen(json);
    memcpy(padded, json, n);
    while (n % 8) padded[n++] = ' ';
    padded[n] = 0;
    unsigned char data[35];
    int64_t step = 7;
    float bias[2] = {0.1f, -0.2f}, kern[4] = {1, 2, 3, 4};
    memcpy(data, &step, 8);
    memcpy(data + 8, bias, 8);
    memcpy(data + 16, kern, 16);
    data[32] = 1; data[33] = 0; data[34] = 1;
    size_t len;
    unsigned char *b = st_bytes(padded, data, sizeof data, &len);

    const char *dir = tu_tmpdir("st_refread");
    const char *p = tu_path(dir, "ref.safetensors");
    ck_assert_int_eq(tu_write(p, b, len), 0);
    kdh_tensor_list l;
    kdh_error err = {""};
    ck_assert_msg(kdh_safetensors_read(p, NULL, &l, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(l.count, 4);
    ck_assert_str_eq(l.items[0].name, "step");   /* header order is kept */
    ck_assert_str_eq(kdh_list_get_meta(&l, "format"), "pt");
    ck_assert_int_eq(*(int64_t *)l.items[0].data, 7);
    ck_assert_int_eq(l.items[0].rank, 0);

    int64_t ks[] = {2, 2}, bs[] = {2}, wrong[] = {2, 3};
    const kdh_tensor *k = kdh_list_expect(&l, p, "dense/kernel", KDH_F32, 2, ks, &err);
    ck_assert_ptr_nonnull(k);
    ck_assert_int_eq(memcmp(k->data, kern, 16), 0);
    const kdh_tensor *bb = kdh_list_expect(&l, p, "dense/bias", KDH_F32, 1, bs, &err);
    ck_assert_float_eq(((float *)bb->data)[1], -0.2f);
    const kdh_tensor *mask = kdh_list_find(&l, "mask");
    ck_assert_int_eq(mask->dtype, KDH_BOOL);
    ck_assert_int_eq(((unsigned char *)mask->data)[2], 1);

    ck_assert_ptr_null(kdh_list_expect(&l, "ref.safetensors", "dense/kernel", KDH_F32, 2, wrong, &err));
    ck_assert_str_eq(err.msg, "ref.safetensors: tensor \"dense/kernel\" has shape [2, 2], the model expects [2, 3]");
    ck_assert_ptr_null(kdh_list_expect(&l, "ref.safetensors", "dense_1/bias", KDH_F32, 1, bs, &err));
    ck_assert_str_eq(err.msg, "ref.safetensors: no tensor \"dense_1/bias\"");
    ck_assert_ptr_null(kdh_list_expect(&l, "ref.safetensors", "step", KDH_F32, 0, NULL, &err));
    ck_assert_err(err, "has dtype I64, the model expects F32");
    kdh_list_free(&l);

    /* The reference's documentation example: unpadded 60-byte header. */
    unsigned char z[16] = {0};
    unsigned char *doc = st_bytes("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", z, 16, &len);
    ck_assert_uint_eq(doc[0], '<');
    ck_assert_int_eq(kdh_safetensors_read_mem(doc, len, "doc", NULL, &l, &err), 0);
    ck_assert_uint_eq(l.count, 1);
    ck_assert_int_eq(l.items[0].dtype, KDH_I32);
    ck_assert_uint_eq(l.items[0].nbytes, 16);
    kdh_list_free(&l);
    free(doc);
    free(b);
}
END_TEST

START_TEST(st_rejects_bad_files)
{
    kdh_error err;
    kdh_tensor_list l;
    size_t len;

    ck_assert_int_eq(kdh_safetensors_read_mem("", 0, "w.safetensors", NULL, &l, &err), -1);
    ck_assert_err(err, "empty");
    ck_assert_int_eq(kdh_safetensors_read_mem("\x10\0\0\0", 4, "w.safetensors", NULL, &l, &err), -1);
    ck_assert_err(err, "truncated header");
    /* Length field larger than the file, and one near 2^64. */
    unsigned char big[12] = {0xFF, 0xFF, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
    ck_assert_int_eq(kdh_safetensors_read_mem(big, sizeof big, "w.safetensors", NULL, &l, &err), -1);
    ck_assert_err(err, "header length 65535 exceeds the file size (12 bytes)");
    memset(big, 0xFF, 8);
    ck_assert_int_eq(kdh_safetensors_read_mem(big, sizeof big, "w.safetensors", NULL, &l, &err), -1);
    ck_assert_err(err, "header length 18446744073709551615 exceeds the file size");
    /* Not JSON at all (e.g. a .npy given by mistake), then broken JSON. */
    err = st_fail("[1, 2]", 0);
    ck_assert_err(err, "not a JSON object");
    err = st_fail("{\"a\":{\"dtype\":\"F32\",", 0);
    ck_assert_err(err, "not valid JSON");
    err = st_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4);
    ck_assert_err(err, "trailing characters");
    err = st_fail("{\"a\":\"\xff\xfe\"}", 0);
    ck_assert_err(err, "not valid UTF-8");

    /* The example from the design: offsets past the data section. */
    err = st_fail("{\"dense/kernel\":{\"dtype\":\"F32\",\"shape\":[1000],\"data_offsets\":[0,4000]}}", 3000);
    ck_assert_str_eq(err.msg, "w.safetensors: tensor \"dense/kernel\": data offsets [0, 4000) "
                              "exceed the data section (3000 bytes)");
    err = st_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24);
    ck_assert_err(err, "tensor \"a\": shape [2, 3] of F32 needs 24 bytes but data offsets [0, 20) hold 20");
    err = st_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],"
                  "\"data_offsets\":[0,16]}}", 16);
    ck_assert_err(err, "overflows 64 bits");
    err = st_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
    ck_assert_err(err, "tensor \"b\": data offsets [4, 12) overlap tensor \"a\" at [0, 8)");
    err = st_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8);
    ck_assert_err(err, "end before they begin");
    err = st_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8);
    ck_assert_err(err, "duplicate tensor \"a\"");
    err = st_fail("{\"a\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8);
    ck_assert_err(err, "unknown or unsupported dtype \"C64\"");
    err = st_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4);
    ck_assert_err(err, "shape[0] is not a non-negative integer");
    err = st_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4);
    ck_assert_err(err, "shape[0] is not a non-negative integer");
    err = st_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4);
    ck_assert_err(err, "rank 9 exceeds the maximum of 8");
    err = st_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4);
    ck_assert_err(err, "missing \"data_offsets\"");
    err = st_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,1e300]}}", 4);
    ck_assert_err(err, "data_offsets must be a list of two non-negative integers");
    err = st_fail("{\"a\":[1,2]}", 0);
    ck_assert_err(err, "entry is not a JSON object");
    err = st_fail("{\"__metadata__\":{\"step\":3}}", 0);
    ck_assert_err(err, "\"__metadata__\" entry \"step\" is not a string");
    err = st_fail("{\"__metadata__\":{},\"__metadata__\":{}}", 0);
    ck_assert_err(err, "duplicate \"__metadata__\"");

    /* Files: a directory, a missing file, a file above the size limit. */
    const char *dir = tu_tmpdir("st_bad");
    ck_assert_int_eq(kdh_safetensors_read(dir, NULL, &l, &err), -1);
    ck_assert_err(err, "is a directory");
    ck_assert_int_eq(kdh_safetensors_read(tu_path(dir, "nope.safetensors"), NULL, &l, &err), -1);
    ck_assert_err(err, "cannot open");
    /* A FIFO with no writer would block a plain open() forever. */
    const char *fifo = tu_path(dir, "fifo.safetensors");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    ck_assert_int_eq(kdh_safetensors_read(fifo, NULL, &l, &err), -1);
    ck_assert_err(err, "not a regular file");
    kdh_tensor nt;
    ck_assert_int_eq(kdh_idx_read(fifo, NULL, &nt, &err), -1);
    ck_assert_err(err, "not a regular file");
    ck_assert_int_eq(kdh_npy_read("/dev/zero", NULL, &nt, &err), -1);
    ck_assert_err(err, "/dev/zero: not a regular file");
    unsigned char *ok = st_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                                 "\0\0\x80\x3f", 4, &len);
    const char *p = tu_path(dir, "ok.safetensors");
    ck_assert_int_eq(tu_write(p, ok, len), 0);
    kdh_read_opts small = {.max_bytes = 32};
    ck_assert_int_eq(kdh_safetensors_read(p, &small, &l, &err), -1);
    ck_assert_err(err, "more than the limit of 32 bytes");
    ck_assert_int_eq(kdh_safetensors_read(p, NULL, &l, &err), 0);
    ck_assert_float_eq(((float *)l.items[0].data)[0], 1.0f);
    kdh_list_free(&l);
    free(ok);
}
END_TEST

START_TEST(st_write_rejects_bad_input)
{
    const char *dir = tu_tmpdir("st_wbad");
    const char *p = tu_path(dir, "w.safetensors");
    kdh_error err;
    float v[2] = {1, 2};
    kdh_tensor t[2] = {
        {.name = "a", .dtype = KDH_F32, .rank = 1, .shape = {2}, .data = v, .nbytes = 8},
        {.name = "a", .dtype = KDH_F32, .rank = 1, .shape = {2}, .data = v, .nbytes = 8},
    };
    ck_assert_int_eq(kdh_safetensors_write(p, t, 2, NULL, 0, &err), -1);
    ck_assert_err(err, "duplicate tensor \"a\"");
    t[1].name = "__metadata__";
    ck_assert_int_eq(kdh_safetensors_write(p, t, 2, NULL, 0, &err), -1);
    ck_assert_err(err, "cannot name a tensor");
    t[1].name = "b";
    t[1].nbytes = 4;
    ck_assert_int_eq(kdh_safetensors_write(p, t, 2, NULL, 0, &err), -1);
    ck_assert_err(err, "do not match its shape");
    ck_assert_int_eq(access(p, F_OK), -1);   /* nothing written */
    kdh_meta m[2] = {{"k", "1"}, {"k", "2"}};
    ck_assert_int_eq(kdh_safetensors_write(p, t, 1, m, 2, &err), -1);
    ck_assert_err(err, "duplicate metadata key \"k\"");
    /* Names are escaped as JSON requires and read back intact. */
    t[0].name = "quote\"back\\slash\ttab";
    ck_assert_int_eq(kdh_safetensors_write(p, t, 1, NULL, 0, &err), 0);
    kdh_tensor_list l;
    ck_assert_int_eq(kdh_safetensors_read(p, NULL, &l, &err), 0);
    ck_assert_str_eq(l.items[0].name, "quote\"back\\slash\ttab");
    kdh_list_free(&l);
    ck_assert_int_eq(count_temp_files(dir), 0);
}
END_TEST

/* Every truncation and many single-byte corruptions of a valid file:
 * the reader must either succeed or fail with a message, never crash. */
START_TEST(st_survives_mutations)
{
    const char *json = "{\"__metadata__\":{\"k\":\"v\"},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                       "\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[16,24]}}";
    unsigned char data[24] = {0};
    size_t len;
    unsigned char *good = st_bytes(json, data, sizeof data, &len);
    unsigned char *buf = malloc(len);
    kdh_tensor_list l;
    kdh_error err;
    int ok = 0, bad = 0;
    for (size_t cut = 0; cut < len; cut++) {
        err.msg[0] = 0;
        int rc = kdh_safetensors_read_mem(good, cut, "m", NULL, &l, &err);
        ck_assert_int_eq(rc, -1);   /* every proper prefix is incomplete */
        ck_assert_msg(err.msg[0], "no message for a cut at %zu", cut);
    }
    static const unsigned char vals[] = {0, 1, '"', '{', '}', '[', ']', ',', ':', '9', '-', 0x80, 0xFF};
    for (size_t i = 0; i < len; i++)
        for (size_t v = 0; v < sizeof vals; v++) {
            memcpy(buf, good, len);
            buf[i] = vals[v];
            err.msg[0] = 0;
            int rc = kdh_safetensors_read_mem(buf, len, "m", NULL, &l, &err);
            if (rc == 0) {
                ok++;
                kdh_list_free(&l);
            } else {
                ck_assert_int_eq(rc, -1);
                ck_assert_msg(err.msg[0], "no message at byte %zu", i);
                bad++;
            }
        }
    ck_assert_int_gt(bad, 0);
    ck_assert_int_gt(ok, 0);   /* data bytes may change freely */
    free(buf);
    free(good);
}
END_TEST

/* ---- atomic replacement ------------------------------------------------- */

typedef struct partial_ctx {
    int calls;
} partial_ctx;

/* Writes a lot, then fails as a full disk or a bug in a writer would. */
static int failing_writer(FILE *f, void *ctx, kdh_error *err)
{
    ((partial_ctx *)ctx)->calls++;
    char junk[4096];
    memset(junk, 'J', sizeof junk);
    for (int i = 0; i < 64; i++)
        if (fwrite(junk, 1, sizeof junk, f) != sizeof junk) break;
    snprintf(err->msg, sizeof err->msg, "injected failure");
    return -1;
}

static int good_writer(FILE *f, void *ctx, kdh_error *err)
{
    return kdh_fwrite_all(f, ctx, strlen(ctx), "x", err);
}

START_TEST(atomic_failure_keeps_old_file)
{
    const char *dir = tu_tmpdir("atomic");
    const char *p = tu_path(dir, "ckpt.safetensors");
    kdh_error err;
    float v[3] = {1, 2, 3};
    kdh_tensor t = {.name = "w", .dtype = KDH_F32, .rank = 1, .shape = {3}, .data = v, .nbytes = 12};
    ck_assert_int_eq(kdh_safetensors_write(p, &t, 1, NULL, 0, &err), 0);
    size_t before_len;
    char *before = tu_read(p, &before_len);

    partial_ctx ctx = {0};
    ck_assert_int_eq(kdh_atomic_write(p, failing_writer, &ctx, &err), -1);
    ck_assert_int_eq(ctx.calls, 1);
    ck_assert_str_eq(err.msg, "injected failure");
    size_t after_len;
    char *after = tu_read(p, &after_len);
    ck_assert_uint_eq(after_len, before_len);
    ck_assert_int_eq(memcmp(before, after, before_len), 0);
    ck_assert_int_eq(count_temp_files(dir), 0);
    free(after);

    /* An invalid checkpoint is refused before the old one is touched. */
    t.nbytes = 8;
    ck_assert_int_eq(kdh_safetensors_write(p, &t, 1, NULL, 0, &err), -1);
    after = tu_read(p, &after_len);
    ck_assert_int_eq(memcmp(before, after, before_len), 0);
    free(after);

    /* Target is a directory: refused, nothing left behind. */
    const char *sub = tu_path(dir, "sub");
    mkdir(sub, 0777);
    ck_assert_int_eq(kdh_atomic_write(sub, good_writer, "x", &err), -1);
    ck_assert_err(err, "is a directory");
    ck_assert_int_eq(count_temp_files(dir), 0);
    /* Directory does not exist. */
    ck_assert_int_eq(kdh_atomic_write(tu_path(dir, "no/such/f"), good_writer, "x", &err), -1);
    ck_assert_err(err, "cannot create a temporary file");

    /* Success replaces the content and gives a normal mode (umask applied). */
    mode_t old = umask(022);
    ck_assert_int_eq(kdh_atomic_write(p, good_writer, "new content", &err), 0);
    umask(old);
    after = tu_read(p, &after_len);
    ck_assert_str_eq(after, "new content");
    struct stat st;
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0644);
    ck_assert_int_eq(count_temp_files(dir), 0);
    free(after);
    free(before);
}
END_TEST

/* ---- IDX ---------------------------------------------------------------- */

static int gzip_file(const char *path, const void *data, size_t len)
{
    gzFile g = gzopen(path, "wb9");
    if (!g) return -1;
    int put = gzwrite(g, data, (unsigned)len);
    return (gzclose(g) == Z_OK && put == (int)len) ? 0 : -1;
}

START_TEST(idx_plain_and_gzip)
{
    const char *dir = tu_tmpdir("idx");
    /* u8 [2, 3, 2] */
    unsigned char u8[] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2,
                          0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255};
    /* f32 [3], big-endian: 1.0, -2.5, 0.0 */
    unsigned char f32[] = {0, 0, 0x0D, 1, 0, 0, 0, 3,
                           0x3F, 0x80, 0, 0, 0xC0, 0x20, 0, 0, 0, 0, 0, 0};
    /* i32 [2], big-endian: -2, 65536 */
    unsigned char i32[] = {0, 0, 0x0C, 1, 0, 0, 0, 2, 0xFF, 0xFF, 0xFF, 0xFE, 0, 1, 0, 0};
    kdh_tensor t;
    kdh_error err;
    for (int gz = 0; gz < 2; gz++) {
        const char *p = tu_path(dir, gz ? "u8.gz" : "u8");
        ck_assert_int_eq(gz ? gzip_file(p, u8, sizeof u8) : tu_write(p, u8, sizeof u8), 0);
        ck_assert_msg(kdh_idx_read(p, NULL, &t, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(t.dtype, KDH_U8);
        ck_assert_int_eq(t.rank, 3);
        ck_assert_int_eq(t.shape[0], 2);
        ck_assert_int_eq(t.shape[1], 3);
        ck_assert_int_eq(t.shape[2], 2);
        ck_assert_int_eq(memcmp(t.data, u8 + 16, 12), 0);
        kdh_tensor_free(&t);

        p = tu_path(dir, gz ? "f32.gz" : "f32");
        ck_assert_int_eq(gz ? gzip_file(p, f32, sizeof f32) : tu_write(p, f32, sizeof f32), 0);
        ck_assert_msg(kdh_idx_read(p, NULL, &t, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(t.dtype, KDH_F32);
        ck_assert_float_eq(((float *)t.data)[0], 1.0f);
        ck_assert_float_eq(((float *)t.data)[1], -2.5f);
        ck_assert_float_eq(((float *)t.data)[2], 0.0f);
        kdh_tensor_free(&t);

        p = tu_path(dir, gz ? "i32.gz" : "i32");
        ck_assert_int_eq(gz ? gzip_file(p, i32, sizeof i32) : tu_write(p, i32, sizeof i32), 0);
        ck_assert_msg(kdh_idx_read(p, NULL, &t, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(((int32_t *)t.data)[0], -2);
        ck_assert_int_eq(((int32_t *)t.data)[1], 65536);
        kdh_tensor_free(&t);
    }
    /* Two concatenated gzip members read as one stream, as gunzip does. */
    const char *p = tu_path(dir, "two.gz");
    gzFile g = gzopen(p, "wb");
    gzwrite(g, u8, 10);
    gzclose(g);
    g = gzopen(p, "ab");
    gzwrite(g, u8 + 10, sizeof u8 - 10);
    gzclose(g);
    ck_assert_msg(kdh_idx_read(p, NULL, &t, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(memcmp(t.data, u8 + 16, 12), 0);
    kdh_tensor_free(&t);
}
END_TEST

static kdh_error idx_fail(const char *dir, const char *name, const void *data, size_t len, int gz)
{
    const char *p = tu_path(dir, name);
    ck_assert_int_eq(gz ? gzip_file(p, data, len) : tu_write(p, data, len), 0);
    kdh_tensor t;
    kdh_error err = {""};
    ck_assert_msg(kdh_idx_read(p, NULL, &t, &err) == -1, "%s accepted", name);
    ck_assert_ptr_null(t.data);
    ck_assert_msg(strstr(err.msg, name) != NULL, "message lacks the file: %s", err.msg);
    return err;
}

START_TEST(idx_rejects_bad_files)
{
    const char *dir = tu_tmpdir("idx_bad");
    kdh_error err;
    unsigned char good[] = {0, 0, 8, 1, 0, 0, 0, 4, 1, 2, 3, 4};
    err = idx_fail(dir, "empty", "", 0, 0);
    ck_assert_err(err, "file is empty");
    err = idx_fail(dir, "empty.gz", "", 0, 1);
    ck_assert_err(err, "file is empty");
    err = idx_fail(dir, "short", good, 6, 0);
    ck_assert_err(err, "truncated header");
    err = idx_fail(dir, "magic", "\x1f\x8c\x08\x03\0\0\0\0", 8, 0);
    ck_assert_err(err, "not an IDX file (magic 0x1f8c0803)");
    err = idx_fail(dir, "type", "\0\0\x0A\x01\0\0\0\0", 8, 0);
    ck_assert_err(err, "unsupported IDX element type 0x0a");
    err = idx_fail(dir, "rank", "\0\0\x08\x09", 4, 0);
    ck_assert_err(err, "9 dimensions");
    err = idx_fail(dir, "size", good, sizeof good - 1, 0);
    ck_assert_err(err, "dimensions [4] of U8 need 4 data bytes but the file has 3");
    err = idx_fail(dir, "size.gz", good, sizeof good - 1, 1);
    ck_assert_err(err, "need 4 data bytes but the content ends after 3");
    err = idx_fail(dir, "extra.gz", "\0\0\x08\x01\0\0\0\x02\x01\x02\x03", 11, 1);
    ck_assert_err(err, "extra data after the 2 bytes");
    /* Dimensions whose product overflows, and a tiny gzip claiming 4 GiB. */
    err = idx_fail(dir, "huge", "\0\0\x0E\x04\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 20, 0);
    ck_assert_err(err, "need more than the limit");
    err = idx_fail(dir, "bomb.gz", "\0\0\x08\x03\0\0\x80\0\0\0\x01\0\0\0\0\x7f", 16, 1);
    ck_assert_err(err, "more than a");

    /* A gzip stream cut short, and one with a damaged byte. */
    unsigned char img[16 + 4096];
    memcpy(img, "\0\0\x08\x03\0\0\0\x04\0\0\0\x20\0\0\0\x20", 16);
    for (int i = 0; i < 4096; i++) img[16 + i] = (unsigned char)(i * 7919 % 251);
    const char *whole = tu_path(dir, "whole.gz");
    ck_assert_int_eq(gzip_file(whole, img, sizeof img), 0);
    size_t gzlen;
    char *gzb = tu_read(whole, &gzlen);
    ck_assert_uint_gt(gzlen, 100);
    for (size_t cut = gzlen / 2; cut < gzlen; cut += (gzlen - cut + 1) / 2) {
        const char *p = tu_path(dir, "cut.gz");
        ck_assert_int_eq(tu_write(p, gzb, cut), 0);
        kdh_tensor t;
        ck_assert_msg(kdh_idx_read(p, NULL, &t, &err) == -1, "cut at %zu of %zu accepted", cut, gzlen);
        ck_assert_err(err, "truncated gzip stream");
    }
    gzb[gzlen - 6] ^= 0x55;   /* inside the CRC-32 of the trailer */
    const char *p = tu_path(dir, "crc.gz");
    ck_assert_int_eq(tu_write(p, gzb, gzlen), 0);
    kdh_tensor t;
    ck_assert_int_eq(kdh_idx_read(p, NULL, &t, &err), -1);
    ck_assert_err(err, "corrupt gzip stream");
    /* Junk after the gzip stream. */
    char *junk = malloc(gzlen + 4);
    gzb[gzlen - 6] ^= 0x55;
    memcpy(junk, gzb, gzlen);
    memcpy(junk + gzlen, "JUNK", 4);
    ck_assert_int_eq(tu_write(p, junk, gzlen + 4), 0);
    ck_assert_int_eq(kdh_idx_read(p, NULL, &t, &err), -1);
    ck_assert_err(err, "unexpected data after the gzip stream");
    free(junk);
    free(gzb);
}
END_TEST

START_TEST(idx_fashion_mnist)
{
    if (access(FMNIST_DIR "/t10k-images-idx3-ubyte.gz", R_OK) != 0) {
        fprintf(stderr, "idx_fashion_mnist: skipped, %s is missing (Debian package "
                        "dataset-fashion-mnist)\n", FMNIST_DIR);
        return;
    }
    kdh_tensor img, lab;
    kdh_error err;
    ck_assert_msg(kdh_mnist_read(FMNIST_DIR, "t10k", NULL, &img, &lab, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(img.dtype, KDH_U8);
    ck_assert_int_eq(img.rank, 3);
    ck_assert_int_eq(img.shape[0], 10000);
    ck_assert_int_eq(img.shape[1], 28);
    ck_assert_int_eq(img.shape[2], 28);
    ck_assert_uint_eq(img.nbytes, 7840000);
    ck_assert_int_eq(lab.rank, 1);
    ck_assert_int_eq(lab.shape[0], 10000);
    /* Facts about this data set: balanced classes, first label 9
     * (ankle boot), first labels 9 2 1 1 6, first image's pixel sum. */
    int hist[10] = {0};
    const uint8_t *l = lab.data;
    for (int i = 0; i < 10000; i++) {
        ck_assert_int_le(l[i], 9);
        hist[l[i]]++;
    }
    for (int c = 0; c < 10; c++) ck_assert_int_eq(hist[c], 1000);
    ck_assert_int_eq(memcmp(l, "\x09\x02\x01\x01\x06", 5), 0);
    long sum = 0;
    for (int i = 0; i < 784; i++) sum += ((uint8_t *)img.data)[i];
    ck_assert_int_eq(sum, 33456);

    /* Converted to f32 for training: values kept, not scaled. */
    kdh_tensor f;
    ck_assert_int_eq(kdh_tensor_to_f32(&img, &f, &err), 0);
    ck_assert_int_eq(f.dtype, KDH_F32);
    ck_assert_uint_eq(f.nbytes, 4 * 7840000u);
    for (int i = 0; i < 784; i++) ck_assert_float_eq(((float *)f.data)[i], ((uint8_t *)img.data)[i]);
    ck_assert_int_eq(kdh_check_finite(&f, "t10k", &err), 0);
    kdh_tensor_free(&f);
    kdh_tensor_free(&img);
    kdh_tensor_free(&lab);

    ck_assert_int_eq(kdh_mnist_read(FMNIST_DIR, "nosuch", NULL, &img, &lab, &err), -1);
    ck_assert_err(err, "nosuch-images-idx3-ubyte: cannot open");
}
END_TEST

START_TEST(idx_mnist_label_checks)
{
    const char *dir = tu_tmpdir("mnist_small");
    unsigned char img[16 + 8] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2};
    unsigned char lab[8 + 2] = {0, 0, 8, 1, 0, 0, 0, 2, 3, 12};
    ck_assert_int_eq(tu_write(tu_path(dir, "train-images-idx3-ubyte"), img, sizeof img), 0);
    ck_assert_int_eq(gzip_file(tu_path(dir, "train-labels-idx1-ubyte.gz"), lab, sizeof lab), 0);
    kdh_tensor i, l;
    kdh_error err;
    ck_assert_int_eq(kdh_mnist_read(dir, "train", NULL, &i, &l, &err), -1);
    ck_assert_err(err, "label 12 at index 1 is outside 0..9");
    lab[9] = 4;
    ck_assert_int_eq(gzip_file(tu_path(dir, "train-labels-idx1-ubyte.gz"), lab, sizeof lab), 0);
    ck_assert_msg(kdh_mnist_read(dir, "train", NULL, &i, &l, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(((uint8_t *)l.data)[1], 4);
    kdh_tensor_free(&i);
    kdh_tensor_free(&l);
    lab[7] = 3;   /* 3 labels for 2 images */
    unsigned char lab3[11];
    memcpy(lab3, lab, 10);
    lab3[10] = 0;
    ck_assert_int_eq(gzip_file(tu_path(dir, "train-labels-idx1-ubyte.gz"), lab3, sizeof lab3), 0);
    ck_assert_int_eq(kdh_mnist_read(dir, "train", NULL, &i, &l, &err), -1);
    ck_assert_err(err, "3 labels for 2 images");
}
END_TEST

/* ---- npy ---------------------------------------------------------------- */

/* A .npy v1.0 image with the given header dict (padded as NumPy does). */
static unsigned char *npy_bytes(int major, const char *dict, const void *data, size_t dlen, size_t *len)
{
    size_t pre = major == 1 ? 10 : 12, n = strlen(dict);
    size_t hlen = n + 1;
    while ((pre + hlen) % 64) hlen++;
    unsigned char *b = malloc(pre + hlen + dlen + 1);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    for (size_t i = 0; i < pre - 8; i++) b[8 + i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + pre, dict, n);
    memset(b + pre + n, ' ', hlen - n - 1);
    b[pre + hlen - 1] = '\n';
    if (dlen) memcpy(b + pre + hlen, data, dlen);
    *len = pre + hlen + dlen;
    return b;
}

START_TEST(npy_roundtrip_exact)
{
    const char *dir = tu_tmpdir("npy");
    const char *p = tu_path(dir, "x.npy");
    kdh_error err;
    float v[6] = {1, -2, 3.5f, 0, 1e-20f, 7};
    kdh_tensor t = {.dtype = KDH_F32, .rank = 2, .shape = {2, 3}, .data = v, .nbytes = sizeof v};
    ck_assert_int_eq(kdh_npy_write(p, &t, &err), 0);
    size_t len;
    char *file = tu_read(p, &len);
    /* What numpy.save(np.zeros((2, 3), np.float32)) writes: 20 spare
     * spaces for the first axis, then padding to 128 bytes. */
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    ck_assert_uint_eq(len, 128 + 24);
    ck_assert_int_eq(memcmp(file, "\x93NUMPY\x01\x00\x76\x00", 10), 0);
    ck_assert_int_eq(memcmp(file + 10, dict, strlen(dict)), 0);
    for (size_t i = 10 + strlen(dict); i < 127; i++) ck_assert_int_eq(file[i], ' ');
    ck_assert_int_eq(file[127], '\n');
    ck_assert_int_eq(memcmp(file + 128, v, 24), 0);
    free(file);

    kdh_tensor r;
    ck_assert_msg(kdh_npy_read(p, NULL, &r, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(r.dtype, KDH_F32);
    ck_assert_int_eq(r.rank, 2);
    ck_assert_int_eq(r.shape[0], 2);
    ck_assert_int_eq(r.shape[1], 3);
    ck_assert_int_eq(memcmp(r.data, v, 24), 0);
    ck_assert_ptr_null(r.name);
    kdh_tensor_free(&r);

    /* A vector "(5,)" and a scalar "()", other dtypes. */
    uint8_t b5[5] = {1, 2, 3, 4, 5};
    kdh_tensor vec = {.dtype = KDH_U8, .rank = 1, .shape = {5}, .data = b5, .nbytes = 5};
    ck_assert_int_eq(kdh_npy_write(p, &vec, &err), 0);
    file = tu_read(p, &len);
    ck_assert_uint_eq(len, 128 + 5);
    ck_assert_int_eq(memcmp(file + 10, "{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }", 57), 0);
    free(file);
    ck_assert_int_eq(kdh_npy_read(p, NULL, &r, &err), 0);
    ck_assert_int_eq(r.rank, 1);
    ck_assert_int_eq(memcmp(r.data, b5, 5), 0);
    kdh_tensor_free(&r);
    double d = -0.125;
    kdh_tensor sc = {.dtype = KDH_F64, .rank = 0, .data = &d, .nbytes = 8};
    ck_assert_int_eq(kdh_npy_write(p, &sc, &err), 0);
    file = tu_read(p, &len);
    ck_assert_int_eq(memcmp(file + 10, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", 55), 0);
    ck_assert_uint_eq(len, 128 + 8);
    free(file);
    ck_assert_int_eq(kdh_npy_read(p, NULL, &r, &err), 0);
    ck_assert_int_eq(r.rank, 0);
    ck_assert_double_eq(*(double *)r.data, -0.125);
    kdh_tensor_free(&r);
    kdh_tensor bf = {.dtype = KDH_BF16, .rank = 0, .data = &d, .nbytes = 2};
    ck_assert_int_eq(kdh_npy_write(p, &bf, &err), -1);
    ck_assert_err(err, "no .npy equivalent");
    ck_assert_int_eq(count_temp_files(dir), 0);
}
END_TEST

START_TEST(npy_reads_versions_and_dtypes)
{
    kdh_tensor t;
    kdh_error err;
    size_t len;
    int64_t i8[3] = {-1, 0, 1LL << 40};
    unsigned char *b = npy_bytes(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", i8, 24, &len);
    ck_assert_msg(kdh_npy_read_mem(b, len, "i8.npy", NULL, &t, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(t.dtype, KDH_I64);
    ck_assert_int_eq(((int64_t *)t.data)[2], 1LL << 40);
    kdh_tensor_free(&t);
    free(b);
    /* Version 2.0 (4-byte length), keys in another order, double quotes,
     * no trailing comma, Python 2 long suffix. */
    double f8[2] = {0.5, -1};
    b = npy_bytes(2, "{\"shape\": (1L, 2L), \"fortran_order\": False, \"descr\": \"<f8\"}", f8, 16, &len);
    ck_assert_msg(kdh_npy_read_mem(b, len, "v2.npy", NULL, &t, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(t.dtype, KDH_F64);
    ck_assert_int_eq(t.shape[0], 1);
    ck_assert_int_eq(t.shape[1], 2);
    ck_assert_double_eq(((double *)t.data)[1], -1);
    kdh_tensor_free(&t);
    free(b);
    /* Version 3.0, bools. */
    unsigned char b1[4] = {1, 0, 0, 1};
    b = npy_bytes(3, "{'descr': '|b1', 'fortran_order': False, 'shape': (2, 2), }", b1, 4, &len);
    ck_assert_msg(kdh_npy_read_mem(b, len, "b.npy", NULL, &t, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(t.dtype, KDH_BOOL);
    ck_assert_int_eq(memcmp(t.data, b1, 4), 0);
    kdh_tensor_free(&t);
    free(b);
    /* Big-endian int32 is converted to host order. */
    unsigned char be[8] = {0, 0, 1, 0, 0xFF, 0xFF, 0xFF, 0xFF};
    b = npy_bytes(1, "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }", be, 8, &len);
    ck_assert_int_eq(kdh_npy_read_mem(b, len, "be.npy", NULL, &t, &err), 0);
    ck_assert_int_eq(((int32_t *)t.data)[0], 256);
    ck_assert_int_eq(((int32_t *)t.data)[1], -1);
    kdh_tensor_free(&t);
    free(b);
    /* Fortran order of a vector is the same bytes: accepted. */
    float f4[2] = {1, 2};
    b = npy_bytes(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", f4, 8, &len);
    ck_assert_int_eq(kdh_npy_read_mem(b, len, "fv.npy", NULL, &t, &err), 0);
    kdh_tensor_free(&t);
    free(b);
    /* Empty array: zero data bytes. */
    b = npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }", NULL, 0, &len);
    ck_assert_int_eq(kdh_npy_read_mem(b, len, "e.npy", NULL, &t, &err), 0);
    ck_assert_uint_eq(t.nbytes, 0);
    kdh_tensor_free(&t);
    free(b);
}
END_TEST

static kdh_error npy_fail(int major, const char *dict, size_t dlen)
{
    unsigned char *zeros = calloc(dlen + 1, 1);
    size_t len;
    unsigned char *b = npy_bytes(major, dict, zeros, dlen, &len);
    kdh_tensor t;
    kdh_error err = {""};
    ck_assert_msg(kdh_npy_read_mem(b, len, "x.npy", NULL, &t, &err) == -1, "accepted %s", dict);
    ck_assert_ptr_null(t.data);
    free(b);
    free(zeros);
    return err;
}

START_TEST(npy_rejects_bad_files)
{
    kdh_error err;
    kdh_tensor t;
    ck_assert_int_eq(kdh_npy_read_mem("", 0, "x.npy", NULL, &t, &err), -1);
    ck_assert_err(err, "x.npy: file is empty");
    ck_assert_int_eq(kdh_npy_read_mem("PK\x03\x04zipfile", 11, "x.npy", NULL, &t, &err), -1);
    ck_assert_err(err, "not a .npy file (wrong magic)");
    ck_assert_int_eq(kdh_npy_read_mem("\x93NUMPY\x01\x00", 8, "x.npy", NULL, &t, &err), -1);
    ck_assert_err(err, "truncated header");
    ck_assert_int_eq(kdh_npy_read_mem("\x93NUMPY\x01\x00\xff\x00{'descr'", 17, "x.npy", NULL, &t, &err), -1);
    ck_assert_err(err, "header length 255 exceeds the file size (17 bytes)");
    ck_assert_int_eq(kdh_npy_read_mem("\x93NUMPY\x04\x00\x00\x00\x00\x00", 12, "x.npy", NULL, &t, &err), -1);
    ck_assert_err(err, "unsupported .npy format version 4.0");

    err = npy_fail(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16);
    ck_assert_msg(strncmp(err.msg, "x.npy: unsupported dtype '<c8'", 30) == 0, "%s", err.msg);
    err = npy_fail(1, "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", 16);
    ck_assert_err(err, "unsupported dtype '|O'");
    err = npy_fail(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24);
    ck_assert_err(err, "fortran_order True is not supported");
    err = npy_fail(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20);
    ck_assert_err(err, "x.npy: shape [2, 3] of '<f4' needs 24 data bytes but the file has 20");
    err = npy_fail(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 28);
    ck_assert_err(err, "needs 24 data bytes but the file has 28");
    err = npy_fail(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }", 8);
    ck_assert_err(err, "overflows 64 bits");
    err = npy_fail(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 8);
    ck_assert_err(err, "dimension too large");
    err = npy_fail(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3), }", 12);
    ck_assert_err(err, "shape is not a tuple");
    err = npy_fail(1, "{'descr': '<f4', 'fortran_order': False, 'shape': [3], }", 12);
    ck_assert_err(err, "shape is a list");
    err = npy_fail(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }", 12);
    ck_assert_err(err, "expected a non-negative integer");
    err = npy_fail(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", 4);
    ck_assert_err(err, "structured dtypes are not supported");
    err = npy_fail(1, "{'descr': '<f4', 'shape': (1,), }", 4);
    ck_assert_err(err, "header lacks 'fortran_order'");
    err = npy_fail(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", 4);
    ck_assert_err(err, "unexpected key 'x'");
    err = npy_fail(1, "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }", 4);
    ck_assert_err(err, "malformed header");
    err = npy_fail(1, "'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4);
    ck_assert_err(err, "malformed header: expected '{'");
    err = npy_fail(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), } extra", 4);
    ck_assert_err(err, "unexpected text after the header");
    err = npy_fail(1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4);
    ck_assert_err(err, "duplicate 'descr'");
    err = npy_fail(1, "{'descr': '<f4, 'fortran_order': False, 'shape': (1,), }", 4);
    ck_assert_err(err, "malformed header");

    /* Every truncation of a valid file fails cleanly. */
    size_t len;
    float v[4] = {1, 2, 3, 4};
    unsigned char *b = npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", v, 16, &len);
    for (size_t cut = 0; cut < len; cut++) {
        err.msg[0] = 0;
        ck_assert_int_eq(kdh_npy_read_mem(b, cut, "x.npy", NULL, &t, &err), -1);
        ck_assert_msg(err.msg[0], "no message for a cut at %zu", cut);
    }
    ck_assert_int_eq(kdh_npy_read_mem(b, len, "x.npy", NULL, &t, &err), 0);
    kdh_tensor_free(&t);
    free(b);
}
END_TEST

/* ---- CSV ---------------------------------------------------------------- */

static kdh_error csv_fail(const char *text)
{
    kdh_tensor t;
    kdh_csv_header h;
    kdh_error err = {""};
    ck_assert_msg(kdh_csv_parse(text, strlen(text), "d.csv", &t, &h, &err) == -1, "accepted %s", text);
    ck_assert_ptr_null(t.data);
    ck_assert_uint_eq(h.count, 0);
    return err;
}

START_TEST(csv_reads_numbers)
{
    const char *dir = tu_tmpdir("csv");
    const char *p = tu_path(dir, "d.csv");
    const char *text = "\xEF\xBB\xBFx1, \"x 2\" ,y\r\n1,2.5,-3\r\n\r\n 4e2 ,\"-0.5\",.25\r\n+6,7.,1E-3";
    ck_assert_int_eq(tu_write(p, text, strlen(text)), 0);
    kdh_tensor t;
    kdh_csv_header h;
    kdh_error err;
    ck_assert_msg(kdh_csv_read(p, NULL, &t, &h, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(t.dtype, KDH_F32);
    ck_assert_int_eq(t.rank, 2);
    ck_assert_int_eq(t.shape[0], 3);
    ck_assert_int_eq(t.shape[1], 3);
    const float want[9] = {1, 2.5f, -3, 400, -0.5f, 0.25f, 6, 7, 1e-3f};
    for (int i = 0; i < 9; i++) ck_assert_float_eq(((float *)t.data)[i], want[i]);
    ck_assert_uint_eq(h.count, 3);
    ck_assert_str_eq(h.names[0], "x1");
    ck_assert_str_eq(h.names[1], "x 2");
    ck_assert_str_eq(h.names[2], "y");
    kdh_csv_header_free(&h);
    kdh_tensor_free(&t);

    /* No header: the first row is data. An empty header name is fine. */
    ck_assert_int_eq(kdh_csv_parse("1,2\n3,4\n", 8, "n.csv", &t, &h, &err), 0);
    ck_assert_int_eq(t.shape[0], 2);
    ck_assert_uint_eq(h.count, 0);
    ck_assert_float_eq(((float *)t.data)[3], 4);
    kdh_tensor_free(&t);
    ck_assert_int_eq(kdh_csv_parse(",a\n0,1\n", 7, "i.csv", &t, NULL, &err), 0);
    ck_assert_int_eq(t.shape[0], 1);
    ck_assert_int_eq(t.shape[1], 2);
    kdh_tensor_free(&t);
    /* Quoted header names may hold commas and quotes. */
    ck_assert_int_eq(kdh_csv_parse("\"a,b\",\"say \"\"hi\"\"\"\n1,2", 22, "q.csv", &t, &h, &err), 0);
    ck_assert_str_eq(h.names[0], "a,b");
    ck_assert_str_eq(h.names[1], "say \"hi\"");
    kdh_csv_header_free(&h);
    kdh_tensor_free(&t);
}
END_TEST

START_TEST(csv_rejects_bad_files)
{
    kdh_error err;
    err = csv_fail("");
    ck_assert_err(err, "d.csv: file is empty");
    err = csv_fail("a,b,c\n1,2,3\n4,5\n");
    ck_assert_str_eq(err.msg, "d.csv: line 3: 2 columns, expected 3 (as in line 1)");
    err = csv_fail("1,2\n\n3,4,5\n");
    ck_assert_str_eq(err.msg, "d.csv: line 3: 3 columns, expected 2 (as in line 1)");
    err = csv_fail("a,b\n1,2\n3,x7\n");
    ck_assert_str_eq(err.msg, "d.csv: line 3, column 2: \"x7\" is not a number");
    err = csv_fail("a,b\n1,nan\n");
    ck_assert_str_eq(err.msg, "d.csv: line 2, column 2: \"nan\" is not a finite number");
    err = csv_fail("1,2\n-Inf,2\n");
    ck_assert_str_eq(err.msg, "d.csv: line 2, column 1: \"-Inf\" is not a finite number");
    err = csv_fail("NaN,1\n1,2\n");   /* a NaN in the first row is data, not a header */
    ck_assert_err(err, "line 1, column 1: \"NaN\" is not a finite number");
    err = csv_fail("1,,3\n");
    ck_assert_str_eq(err.msg, "d.csv: line 1, column 2: empty cell");
    err = csv_fail("1,2,\n");
    ck_assert_err(err, "line 1, column 3: empty cell");
    err = csv_fail("1,1e39\n");
    ck_assert_err(err, "line 1, column 2: 1e39 is out of float32 range");
    err = csv_fail("1,2\n3,0x10\n");   /* strtod would take hex; a data file should not */
    ck_assert_str_eq(err.msg, "d.csv: line 2, column 2: \"0x10\" is not a number");
    err = csv_fail("a,b\n");
    ck_assert_err(err, "no data rows");
    err = csv_fail("a,b\n1,\"2\n");
    ck_assert_err(err, "line 2, column 2: unterminated quoted field");
    err = csv_fail("a,b\n1,\"2\"x\n");
    ck_assert_err(err, "text after a closing quote");

    const char *dir = tu_tmpdir("csv_bad");
    kdh_tensor t;
    ck_assert_int_eq(kdh_csv_read(tu_path(dir, "missing.csv"), NULL, &t, NULL, &err), -1);
    ck_assert_err(err, "missing.csv: cannot open");
}
END_TEST

/* ---- finiteness and conversion ----------------------------------------- */

START_TEST(finite_checks)
{
    kdh_error err;
    float v[12];
    for (int i = 0; i < 12; i++) v[i] = (float)i;
    kdh_tensor t = {.dtype = KDH_F32, .rank = 2, .shape = {3, 4}, .data = v, .nbytes = sizeof v};
    ck_assert_int_eq(kdh_check_finite(&t, "x.npy", &err), 0);
    v[6] = NAN;
    v[9] = INFINITY;
    ck_assert_int_eq(kdh_check_finite(&t, "x.npy", &err), -1);
    ck_assert_str_eq(err.msg, "x.npy: element 6 (index [1, 2]) is NaN");
    ck_assert_uint_eq(kdh_first_nonfinite_f32(v, 12), 6);
    v[6] = 0;
    ck_assert_int_eq(kdh_check_finite(&t, "x.npy", &err), -1);
    ck_assert_str_eq(err.msg, "x.npy: element 9 (index [2, 1]) is +inf");
    v[9] = 0;
    ck_assert_uint_eq(kdh_first_nonfinite_f32(v, 12), 12);

    double d[2] = {1, -INFINITY};
    kdh_tensor td = {.name = "dense/kernel", .dtype = KDH_F64, .rank = 1, .shape = {2}, .data = d, .nbytes = 16};
    ck_assert_int_eq(kdh_check_finite(&td, "w.safetensors", &err), -1);
    ck_assert_str_eq(err.msg, "w.safetensors: tensor \"dense/kernel\": element 1 (index [1]) is -inf");
    uint16_t h[2] = {0x3C00, 0x7E00};   /* f16 1.0, NaN */
    kdh_tensor th = {.dtype = KDH_F16, .rank = 1, .shape = {2}, .data = h, .nbytes = 4};
    ck_assert_int_eq(kdh_check_finite(&th, "h", &err), -1);
    ck_assert_err(err, "element 1 (index [1]) is NaN");
    int32_t iv[2] = {INT32_MAX, INT32_MIN};
    kdh_tensor ti = {.dtype = KDH_I32, .rank = 1, .shape = {2}, .data = iv, .nbytes = 8};
    ck_assert_int_eq(kdh_check_finite(&ti, "i", &err), 0);

    /* Conversion to f32 from a few dtypes. */
    kdh_tensor f;
    ck_assert_int_eq(kdh_tensor_to_f32(&ti, &f, &err), 0);
    ck_assert_float_eq(((float *)f.data)[1], -2147483648.0f);
    kdh_tensor_free(&f);
    h[1] = 0xC500;   /* f16 -5.0 */
    ck_assert_int_eq(kdh_tensor_to_f32(&th, &f, &err), 0);
    ck_assert_float_eq(((float *)f.data)[0], 1.0f);
    ck_assert_float_eq(((float *)f.data)[1], -5.0f);
    kdh_tensor_free(&f);
    uint16_t bf[1] = {0x4049};   /* bf16 3.140625 */
    kdh_tensor tb = {.dtype = KDH_BF16, .rank = 0, .data = bf, .nbytes = 2};
    ck_assert_int_eq(kdh_tensor_to_f32(&tb, &f, &err), 0);
    ck_assert_float_eq(((float *)f.data)[0], 3.140625f);
    kdh_tensor_free(&f);

    /* Sizes: overflow and bad ranks are refused. */
    size_t nb;
    int64_t huge[2] = {INT64_C(1) << 40, INT64_C(1) << 40}, neg[1] = {-1};
    ck_assert_int_eq(kdh_shape_bytes(KDH_F32, 2, huge, &nb), -1);
    ck_assert_int_eq(kdh_shape_bytes(KDH_F32, 1, neg, &nb), -1);
    ck_assert_int_eq(kdh_shape_bytes(KDH_F32, 9, huge, &nb), -1);
    ck_assert_int_eq(kdh_shape_bytes(KDH_F64, 2, (int64_t[]){3, 5}, &nb), 0);
    ck_assert_uint_eq(nb, 120);
    ck_assert_int_eq(kdh_tensor_alloc(&f, "x", KDH_F32, 2, huge, &err), -1);
    ck_assert_err(err, "is invalid or too large");
    kdh_dtype dt;
    ck_assert_int_eq(kdh_dtype_from_name("BF16", &dt), 0);
    ck_assert_int_eq(dt, KDH_BF16);
    ck_assert_int_eq(kdh_dtype_from_name("f32", &dt), -1);
}
END_TEST

static Suite *files_suite(void)
{
    Suite *s = suite_create("files");
    TCase *tc = tcase_create("safetensors");
    tcase_add_test(tc, st_roundtrip_exact);
    tcase_add_test(tc, st_reference_writer_bytes);
    tcase_add_test(tc, st_reads_reference_layout);
    tcase_add_test(tc, st_rejects_bad_files);
    tcase_add_test(tc, st_write_rejects_bad_input);
    tcase_add_test(tc, st_survives_mutations);
    suite_add_tcase(s, tc);
    tc = tcase_create("atomic");
    tcase_add_test(tc, atomic_failure_keeps_old_file);
    suite_add_tcase(s, tc);
    tc = tcase_create("idx");
    tcase_add_test(tc, idx_plain_and_gzip);
    tcase_add_test(tc, idx_rejects_bad_files);
    tcase_add_test(tc, idx_fashion_mnist);
    tcase_add_test(tc, idx_mnist_label_checks);
    suite_add_tcase(s, tc);
    tc = tcase_create("npy");
    tcase_add_test(tc, npy_roundtrip_exact);
    tcase_add_test(tc, npy_reads_versions_and_dtypes);
    tcase_add_test(tc, npy_rejects_bad_files);
    suite_add_tcase(s, tc);
    tc = tcase_create("csv");
    tcase_add_test(tc, csv_reads_numbers);
    tcase_add_test(tc, csv_rejects_bad_files);
    suite_add_tcase(s, tc);
    tc = tcase_create("finite");
    tcase_add_test(tc, finite_checks);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(files_suite());
}
